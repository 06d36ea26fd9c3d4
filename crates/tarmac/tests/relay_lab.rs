//! The deploy's peer relay on the lab (root needed). A quickstarted 1 + 3 cluster is
//! uninstalled and deployed again with `relay_fanout: 1`: a chain master-1 → agent-1 →
//! agent-2 → agent-3, in which only master-1 downloads from bootstrap_url. agent-1's relay
//! port is taken beforehand, so its relay cannot start: agent-2 must fall back to its
//! grandparent (master-1) and agent-3 still gets agent-2's. Every host installs, postflight
//! passes, each host's archives verify, the relays served packages to their children, and none is left
//! listening once the deploy is over. The lab is torn down even when the test fails.

mod common;

use std::path::Path;

use common::*;

/// Every per-host log of the last `op` run (`deploy`, `upgrade`) for `ip`, joined.
fn run_log(genconf: &Path, op: &str, ip: &str) -> String {
    let logs = genconf.join("state/logs");
    let mut runs: Vec<_> = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{op}-"))
        })
        .collect();
    runs.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let run = runs.last().unwrap_or_else(|| panic!("no {op} run"));
    // <run>/<stage or fleet>/<host>.log
    let mut out = String::new();
    for stage in std::fs::read_dir(run).unwrap().flatten() {
        for e in std::fs::read_dir(stage.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{ip}."))
            {
                out.push_str(&std::fs::read_to_string(e.path()).unwrap());
            }
        }
    }
    assert!(!out.is_empty(), "no log for {ip} in {}", run.display());
    out
}

fn deploy_log(genconf: &Path, ip: &str) -> String {
    run_log(genconf, "deploy", ip)
}

/// Something answers on `ip`'s relay port (curl exit 7 is "connection refused").
fn relay_answers(lab: &tarmac_lab::Lab, ip: &str) -> bool {
    let o = lab
        .ctl_command("curl")
        .args([
            "-s",
            "--max-time",
            "2",
            &format!("http://{ip}:8089/healthz"),
        ])
        .output()
        .unwrap();
    o.status.code() != Some(7)
}

/// `ip`'s relay served a whole archive to `child`.
fn served(log: &str, child: &str) -> bool {
    log.lines().any(|l| {
        l.contains("relay served /packages/")
            && l.contains(".tar.zst (")
            && l.contains(&format!("to {child}:"))
    })
}

#[test]
fn deploy_through_a_relay_chain_with_a_broken_link() {
    let QuickLab {
        lab,
        dir,
        work: _work,
        down: _down,
    } = QuickLab::up("rly", 1, 3, 0);
    let genconf = dir.join("genconf");
    let g = genconf.to_str().unwrap();
    let build = dir.join("build");
    let b = build.to_str().unwrap();

    let out = in_lab(&lab, &["uninstall", "--yes", "--genconf-dir", g]);
    assert!(out.status.success(), "{}", text(&out));
    set_key(&genconf, "relay_fanout", "1");
    set_key(&genconf, "relay_port", "8089");
    regenconf(&lab, g, b);

    let hosts: Vec<(String, String)> = lab
        .hosts()
        .iter()
        .map(|h| (h.name.clone(), h.ip.to_string()))
        .collect();
    assert_eq!(
        hosts.iter().map(|h| h.0.as_str()).collect::<Vec<_>>(),
        ["master-1", "agent-1", "agent-2", "agent-3"]
    );
    // agent-1's relay port is taken: its relay fails, and its child must go elsewhere.
    let blocker = ssh(
        &lab,
        "agent-1",
        "systemd-run --unit tarmac-test-blocker -p Type=simple systemd-socket-activate -l 8089 /bin/true && sleep 1 && systemctl is-active tarmac-test-blocker",
    );
    assert_eq!(blocker, "active");

    let out = in_lab(&lab, &["deploy", "--genconf-dir", g]);
    let t = text(&out);
    assert!(out.status.success(), "deploy with the relay:\n{t}");
    let out = in_lab(
        &lab,
        &["postflight", "--genconf-dir", g, "--timeout", "300"],
    );
    assert!(out.status.success(), "{}", text(&out));

    let url = |i: usize| format!("http://{}:8089", hosts[i].1);
    let mirrors = |name: &str| {
        ssh(
            &lab,
            name,
            "cat /etc/tarmac/setup-flags/repository-mirrors 2>/dev/null || echo none",
        )
    };
    // master-1 pulled from bootstrap_url; agent-1 from master-1; agent-2 found agent-1 gone
    // and took master-1; agent-3 had agent-2, then master-1 above it.
    assert_eq!(mirrors("master-1"), "none");
    assert_eq!(mirrors("agent-1"), url(0));
    assert_eq!(mirrors("agent-2"), url(0));
    assert_eq!(mirrors("agent-3"), format!("{}\n{}", url(2), url(0)));

    // The relays that ran served whole archives, and said so; agent-1's could not listen.
    for i in [0, 2] {
        let log = deploy_log(&genconf, &hosts[i].1);
        let child = &hosts[i + 1].1;
        assert!(
            served(&log, child),
            "{}: no package served to {child} in\n{log}",
            hosts[i].0
        );
    }
    assert!(
        deploy_log(&genconf, &hosts[1].1).contains("cannot listen on"),
        "agent-1's relay should have failed to bind"
    );
    assert!(t.contains("its peers fetch elsewhere"), "{t}");

    for (name, ip) in &hosts {
        // Every archive kept and verified.
        let v = lab.ssh(name, "/opt/tarmac/tarmac-host verify").unwrap();
        assert!(v.status.success(), "{name}: {}", text(&v));
        let n = ssh(
            &lab,
            name,
            "ls /opt/tarmac/packages/*/.tarmac/archive.tar.zst | wc -l",
        );
        assert_ne!(n, "0", "{name} kept no archive");
        // No relay outlives the deploy (agent-1's port is the blocker's).
        if name != "agent-1" {
            assert!(!relay_answers(&lab, ip), "{name} still serves on 8089");
        }
    }

    // The upgrade's prefetch goes through the same tree before any host switches: the
    // changed package reaches agent-1 and agent-2 from master-1 (agent-1's relay still
    // cannot listen) and agent-3 from agent-2. Every host ends on the new list.
    set_key(&genconf, "etcd_snapshot_count", "20000");
    regenconf(&lab, g, b);
    let out = in_lab(&lab, &["upgrade", "--genconf-dir", g]);
    let t = text(&out);
    assert!(out.status.success(), "upgrade with the relay:\n{t}");
    assert!(t.contains("prefetch on 4 hosts"), "{t}");
    let m1 = run_log(&genconf, "upgrade", &hosts[0].1);
    for child in [&hosts[1].1, &hosts[2].1] {
        assert!(
            served(&m1, child),
            "master-1 served nothing to {child}:\n{m1}"
        );
    }
    let a2 = run_log(&genconf, "upgrade", &hosts[2].1);
    assert!(
        served(&a2, &hosts[3].1),
        "agent-2 served nothing to agent-3:\n{a2}"
    );
    // Every host on the new list (status exits non-zero on drift).
    let out = in_lab(&lab, &["status", "--genconf-dir", g]);
    assert!(
        out.status.success(),
        "status after the upgrade:\n{}",
        text(&out)
    );
    for (name, ip) in &hosts {
        let v = lab.ssh(name, "/opt/tarmac/tarmac-host verify").unwrap();
        assert!(v.status.success(), "{name}: {}", text(&v));
        if name != "agent-1" {
            assert!(
                !relay_answers(&lab, ip),
                "{name} still serves after the upgrade"
            );
        }
    }
}
