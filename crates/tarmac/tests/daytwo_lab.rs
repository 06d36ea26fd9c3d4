//! Day two on the lab (root needed): a 3 + 2 cluster with 3 spare hosts.
//! 1. Write keys, `backup`, delete the keys, `restore`: the keys are back.
//! 2. Add 2 agents: only they install; the masters reload prometheus and no unit restarts
//!    anywhere (main PIDs unchanged); prometheus then scrapes the new agents; the upgrade
//!    that reconciled the old hosts took a snapshot first and its journal names it.
//! 3. Remove an agent that is powered off: it is forgotten with a note; the run succeeds.
//! 4. Power a master off for good and `replace-master` it onto a spare: etcd has 3 healthy
//!    members, a key written before the failure is still there, `status` shows no drift.
//! 5. Removing one master of three (an even count remains) is refused before anything runs.
//! 6. Remove two masters, genconf failing after the membership step: the change stops there,
//!    another change is refused, `--resume` finishes it; etcd has one member, the key is
//!    still there, `status` shows no drift.
#![allow(clippy::print_stderr)]

use std::path::Path;
use std::time::Duration;

mod common;

use common::*;
use tarmac_lab::Role;

fn etcdctl(lab: &tarmac_lab::Lab, master: &str, args: &str) -> String {
    ssh(
        lab,
        master,
        &format!("ETCDCTL_API=3 /opt/tarmac/bin/etcdctl --endpoints=http://127.0.0.1:2379 {args}"),
    )
}

fn set_list(genconf: &Path, key: &str, hosts: &[String]) {
    let p = genconf.join("config.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    let next = tarmac_config::yamledit::set_keys(
        &text,
        &[(key.to_owned(), Some(serde_json::json!(hosts)))],
    )
    .unwrap();
    std::fs::write(&p, next).unwrap();
}

/// `systemctl show -p MainPID` of every tarmac unit on `host`: unit → pid.
fn pids(lab: &tarmac_lab::Lab, host: &str) -> Vec<(String, String)> {
    let out = ssh(
        lab,
        host,
        "for u in $(systemctl list-units --plain --no-legend 'tarmac-*.service' | awk '{print $1}'); do echo \"$u $(systemctl show -p MainPID --value $u)\"; done",
    );
    let mut v: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(u, p)| (u.to_owned(), p.to_owned()))
        .filter(|(u, _)| u != "tarmac-confirm.service")
        .collect();
    v.sort();
    v
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    for _ in 0..secs {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("timed out after {secs}s waiting for {what}");
}

#[test]
fn backup_restore_grow_shrink_and_replace_a_master_on_the_lab() {
    let QuickLab {
        lab,
        dir,
        work: _work,
        down: _down,
    } = QuickLab::up_spare("d2", 3, 2, 0, 3);
    let genconf = dir.join("genconf");
    let g = genconf.to_str().unwrap();
    let b = dir.join("build");
    let b = b.to_str().unwrap();
    let masters: Vec<String> = lab
        .hosts_with_role(Role::Master)
        .map(|h| h.ip.to_string())
        .collect();
    let lab_agents: Vec<String> = lab
        .hosts_with_role(Role::Agent)
        .map(|h| h.ip.to_string())
        .collect();
    let (agents, spare) = lab_agents.split_at(2);
    let m0 = masters[0].as_str();

    // 1. Backup and restore.
    for i in 1..=3 {
        etcdctl(&lab, m0, &format!("put /day2/k{i} v{i}"));
    }
    let out = in_lab(&lab, &["backup", "--genconf-dir", g, "--keep", "2"]);
    let t = text(&out);
    assert!(out.status.success(), "backup: {t}");
    let snap_path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(Path::new(&snap_path).is_file(), "{t}");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(snap_path.replace(".tar.zst", ".json")).unwrap())
            .unwrap();
    assert_eq!(record["files"][0][0], "etcd/etcd.db", "{record}");
    assert_eq!(
        record["sha256"].as_str().unwrap(),
        tarmac_types::Digest::of(&std::fs::read(&snap_path).unwrap()).hex()
    );
    etcdctl(&lab, m0, "del --prefix /day2/");
    assert_eq!(etcdctl(&lab, m0, "get --prefix /day2/ --keys-only"), "");
    // A damaged snapshot is refused before any host is touched.
    let bad = dir.join("damaged.tar.zst");
    let mut bytes = std::fs::read(&snap_path).unwrap();
    let n = bytes.len() / 2;
    bytes[n] ^= 1;
    std::fs::write(&bad, &bytes).unwrap();
    std::fs::copy(
        snap_path.replace(".tar.zst", ".json"),
        dir.join("damaged.json"),
    )
    .unwrap();
    let out = in_lab(
        &lab,
        &[
            "restore",
            "--genconf-dir",
            g,
            "--yes",
            bad.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("it was altered or damaged"),
        "{}",
        text(&out)
    );
    let out = in_lab(&lab, &["restore", "--genconf-dir", g, "--yes", &snap_path]);
    assert!(out.status.success(), "restore: {}", text(&out));
    for m in &masters {
        assert_eq!(
            etcdctl(&lab, m, "get --prefix /day2/ --print-value-only"),
            "v1\nv2\nv3",
            "{m}"
        );
    }

    // 2. Add two agents.
    let before: Vec<_> = masters
        .iter()
        .chain(agents)
        .map(|h| (h.clone(), pids(&lab, h)))
        .collect();
    for (h, p) in &before {
        assert!(!p.is_empty(), "{h}: no tarmac units running");
    }
    let loads = |m: &str| -> u32 {
        ssh(
            &lab,
            m,
            "journalctl -u tarmac-prometheus --no-pager -o cat | grep -c 'Loading configuration file' || true",
        )
        .parse()
        .unwrap_or(0)
    };
    let loads_before: Vec<u32> = masters.iter().map(|m| loads(m)).collect();
    let mut grown: Vec<String> = agents.to_vec();
    grown.extend(spare[..2].iter().cloned());
    set_list(&genconf, "agent_list", &grown);
    regenconf(&lab, g, b);
    let new = format!("{},{}", spare[0], spare[1]);
    for stage in ["preflight", "install-prereqs"] {
        let out = in_lab(&lab, &[stage, "--genconf-dir", g, "--hosts", &new]);
        assert!(out.status.success(), "{stage}: {}", text(&out));
    }
    let out = in_lab(
        &lab,
        &["deploy", "--genconf-dir", g, "--check-timeout", "3m"],
    );
    let t = text(&out);
    assert!(out.status.success(), "deploy: {t}");
    for h in &spare[..2] {
        assert!(
            ssh(&lab, h, "/opt/tarmac/tarmac-host active").contains("node-exporter--"),
            "{h}: not installed"
        );
    }
    for (h, p) in &before {
        assert_eq!(&pids(&lab, h), p, "{h}: a unit restarted");
    }
    for (m, n) in masters.iter().zip(&loads_before) {
        assert!(
            loads(m) > *n,
            "{m}: prometheus did not reload its configuration"
        );
    }
    wait_for("prometheus to scrape the new agents", 120, || {
        let targets = ssh(&lab, m0, "curl -s http://127.0.0.1:9090/api/v1/targets");
        spare[..2].iter().all(|h| {
            targets
                .split("\"labels\"")
                .any(|t| t.contains(&format!("{h}:9100")) && t.contains("\"health\":\"up\""))
        })
    });
    let up: serde_json::Value =
        serde_json::from_slice(&std::fs::read(genconf.join("state/upgrade.json")).unwrap())
            .unwrap();
    let snapshot = up["snapshot"].as_str().unwrap_or_default().to_owned();
    assert!(snapshot.starts_with("snapshot-"), "{up}");
    assert!(
        genconf
            .join("state/backups")
            .join(format!("{snapshot}.tar.zst"))
            .is_file(),
        "{up}"
    );

    // 3. Remove an agent that is powered off.
    let gone = spare[1].as_str();
    lab.power_off(gone).unwrap();
    let out = in_lab(&lab, &["remove-hosts", "--genconf-dir", g, "--yes", gone]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("pass --force"), "{}", text(&out));
    let out = in_lab(
        &lab,
        &[
            "remove-hosts",
            "--genconf-dir",
            g,
            "--build-dir",
            b,
            "--yes",
            "--force",
            gone,
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "remove-hosts: {t}");
    assert!(
        t.contains(&format!("{gone}: forgotten (unreachable; not cleaned)")),
        "{t}"
    );
    assert!(t.contains("stay on it until the machine is wiped"), "{t}");
    let cfg = std::fs::read_to_string(genconf.join("config.yaml")).unwrap();
    assert!(!cfg.contains(gone), "{cfg}");

    // 4. Replace a dead master.
    etcdctl(&lab, m0, "put /day2/before-failure kept");
    let dead = masters[2].as_str();
    lab.power_off(dead).unwrap();
    let fresh = spare[2].as_str();
    let out = in_lab(
        &lab,
        &[
            "replace-master",
            "--genconf-dir",
            g,
            "--build-dir",
            b,
            "--yes",
            "--check-timeout",
            "4m",
            dead,
            fresh,
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "replace-master: {t}");
    let members = etcdctl(&lab, m0, "member list");
    assert_eq!(members.lines().count(), 3, "{members}");
    assert_eq!(members.matches(", started, ").count(), 3, "{members}");
    assert!(
        members.contains(&format!("http://{fresh}:2380")),
        "{members}"
    );
    assert!(
        !members.contains(&format!("http://{dead}:2380")),
        "{members}"
    );
    let eps = format!(
        "http://{}:2379,http://{}:2379,http://{fresh}:2379",
        masters[0], masters[1]
    );
    let health = etcdctl(&lab, m0, &format!("--endpoints={eps} endpoint health 2>&1"));
    for ip in [masters[0].as_str(), masters[1].as_str(), fresh] {
        assert!(
            health.contains(&format!("http://{ip}:2379 is healthy")),
            "{ip}: {health}"
        );
    }
    assert_eq!(
        etcdctl(&lab, fresh, "get /day2/before-failure --print-value-only"),
        "kept"
    );
    let out = in_lab(&lab, &["status", "--genconf-dir", g]);
    assert!(out.status.success(), "status: {}", text(&out));

    // 5. Removing one master of three would leave an even count: refused before any host
    //    is touched.
    let out = in_lab(
        &lab,
        &[
            "remove-hosts",
            "--genconf-dir",
            g,
            "--build-dir",
            b,
            "--yes",
            fresh,
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("would leave config.yaml invalid; nothing was changed"),
        "{t}"
    );
    assert!(
        t.contains("Must have 1, 3, 5, 7, or 9 masters. Found 2"),
        "{t}"
    );
    assert_eq!(etcdctl(&lab, m0, "member list").lines().count(), 3);
    assert!(!genconf.join("state/change.json").exists());

    // 6. Shrink to one master, with genconf failing half-way (a build directory that is
    //    not there): the membership step is done, `--resume` finishes the rest.
    let m1 = masters[1].as_str();
    let out = in_lab(
        &lab,
        &[
            "remove-hosts",
            "--genconf-dir",
            g,
            "--build-dir",
            "/nonexistent-build",
            "--yes",
            m1,
            fresh,
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("config.yaml was changed but genconf failed"),
        "{t}"
    );
    assert!(
        t.contains(&format!("`tarmac remove-hosts {m1} {fresh} --resume`")),
        "{t}"
    );
    let members = etcdctl(&lab, m0, "member list");
    assert_eq!(members.lines().count(), 1, "{members}");
    // Another change waits for this one.
    let out = in_lab(
        &lab,
        &[
            "remove-hosts",
            "--genconf-dir",
            g,
            "--build-dir",
            b,
            "--yes",
            &agents[0],
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is not finished"), "{}", text(&out));
    let out = in_lab(
        &lab,
        &[
            "remove-hosts",
            "--genconf-dir",
            g,
            "--build-dir",
            b,
            "--yes",
            "--resume",
            "--check-timeout",
            "4m",
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "remove-hosts --resume: {t}");
    assert!(t.contains("at its genconf step"), "{t}");
    assert!(
        !t.contains(": uninstalled"),
        "the membership step ran again: {t}"
    );
    let change: serde_json::Value =
        serde_json::from_slice(&std::fs::read(genconf.join("state/change.json")).unwrap()).unwrap();
    assert_eq!(change["step"], "done", "{change}");
    assert_eq!(change["attempts"], 2, "{change}");
    let cfg = std::fs::read_to_string(genconf.join("config.yaml")).unwrap();
    assert!(!cfg.contains(m1) && !cfg.contains(fresh), "{cfg}");
    for h in [m1, fresh] {
        assert_eq!(
            ssh(
                &lab,
                h,
                "test -e /opt/tarmac && echo present || echo absent"
            ),
            "absent",
            "{h}"
        );
    }
    assert_eq!(
        etcdctl(&lab, m0, "get /day2/before-failure --print-value-only"),
        "kept"
    );
    let out = in_lab(&lab, &["status", "--genconf-dir", g]);
    assert!(out.status.success(), "status: {}", text(&out));
}
