//! End to end on a mixed lab of Debian 11, 12 and 13 hosts (root needed): quickstart (build →
//! lab → genconf → preflight →
//! deploy → postflight → status) on 3 masters + 2 agents + 1 public agent, then failure cases:
//! a host whose link is down during deploy, `--retry-failed`, a broken config, a tampered
//! artifact, and an uninstall that leaves the hosts clean. The lab is torn down even when the
//! test fails.

use std::path::{Path, PathBuf};

mod common;

use common::*;
use tarmac_lab::Role;

#[test]
fn installer_end_to_end_on_the_lab() {
    let QuickLab {
        lab,
        dir,
        work,
        down: _down,
    } = QuickLab::up_on("e2e", 3, 2, 1, Some("bullseye,bookworm,trixie")); // 1. the whole pipeline on Debian 11, 12 and 13 hosts, keeping the lab
    let genconf = dir.join("genconf");
    let g = genconf.to_str().unwrap();

    // The hosts really are Debian 11, 12 and 13.
    let mut releases: Vec<String> = lab
        .hosts()
        .iter()
        .map(|h| ssh(&lab, &h.name, ". /etc/os-release; echo $VERSION_ID"))
        .collect();
    releases.sort();
    releases.dedup();
    assert_eq!(releases, ["11", "12", "13"], "the lab is not mixed");

    // 2. Services run on the right roles only.
    for h in lab.hosts() {
        let etcd = ssh(
            &lab,
            &h.name,
            "systemctl is-active tarmac-etcd.service || true",
        );
        let prom = ssh(
            &lab,
            &h.name,
            "systemctl is-active tarmac-prometheus.service || true",
        );
        let node = ssh(
            &lab,
            &h.name,
            "systemctl is-active tarmac-node-exporter.service || true",
        );
        assert_eq!(node, "active", "{}: node-exporter", h.name);
        // prometheus.yml (it may hold the remote-write password) came over SSH: root and
        // prometheus's group only, on the masters only.
        let yml = ssh(
            &lab,
            &h.name,
            "stat -L -c '%a %U:%G' /opt/tarmac/etc/prometheus/prometheus.yml 2>/dev/null; ls /etc/tarmac/secrets 2>/dev/null | wc -l",
        );
        if h.role == Role::Master {
            assert_eq!(yml, "640 root:tarmac_prometheus\n1", "{}", h.name);
        } else {
            assert_eq!(yml, "0", "{}: no secret files on {:?}", h.name, h.role);
        }
        if h.role == Role::Master {
            assert_eq!(etcd, "active", "{}: etcd", h.name);
            assert_eq!(prom, "active", "{}: prometheus", h.name);
        } else {
            assert_ne!(
                etcd, "active",
                "{}: etcd must not run on {:?}",
                h.name, h.role
            );
            assert_ne!(
                prom, "active",
                "{}: prometheus must not run on {:?}",
                h.name, h.role
            );
        }
    }

    // 3. Deploy again: every host unchanged.
    let out = in_lab(&lab, &["deploy", "--genconf-dir", g]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("unchanged"), "{}", text(&out));

    // 4. A host whose link is down during deploy: others succeed, it is named, exit != 0;
    //    --retry-failed finishes it once the link is back.
    let agents: Vec<_> = lab.hosts_with_role(Role::Agent).cloned().collect();
    let (a1, a2) = (&agents[0], &agents[1]);
    let sel = format!("{},{}", a1.ip, a2.ip);
    let out = in_lab(
        &lab,
        &["uninstall", "--yes", "--genconf-dir", g, "--hosts", &sel],
    );
    assert!(out.status.success(), "{}", text(&out));
    lab.host_link(&a2.name, false).unwrap();
    let out = in_lab(&lab, &["deploy", "--genconf-dir", g]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains(&a2.ip.to_string()) && t.contains("unreachable"),
        "{t}"
    );
    assert!(t.contains("5 of 6 hosts ok"), "{t}");
    lab.host_link(&a2.name, true).unwrap();
    let out = in_lab(&lab, &["deploy", "--retry-failed", "--genconf-dir", g]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("1 of 1 hosts ok"), "{t}");
    let out = in_lab(
        &lab,
        &["postflight", "--genconf-dir", g, "--timeout", "300"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = in_lab(&lab, &["status", "--genconf-dir", g]);
    assert!(out.status.success(), "status shows drift:\n{}", text(&out));

    // 5. A broken config: stopped before any host is touched.
    let bad = work.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(genconf.join("ip-detect"), bad.join("ip-detect")).unwrap();
    let cfg = std::fs::read_to_string(genconf.join("config.yaml")).unwrap();
    std::fs::write(
        bad.join("config.yaml"),
        cfg.replace("ssh_port: 22", "ssh_port: 70000"),
    )
    .unwrap();
    let out = in_lab(&lab, &["deploy", "--genconf-dir", bad.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("ssh_port") && t.contains("no host was touched"),
        "{t}"
    );
    assert!(
        !bad.join("state").exists(),
        "no run may start on a broken config"
    );

    // 6. A tampered artifact on the server is refused by the host.
    let out = in_lab(
        &lab,
        &[
            "uninstall",
            "--yes",
            "--genconf-dir",
            g,
            "--hosts",
            &a1.ip.to_string(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let pkg = find_package(&genconf.join("serve/packages"), "node-exporter");
    let original = std::fs::read(&pkg).unwrap();
    let mut tampered = original.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0xff;
    std::fs::write(&pkg, &tampered).unwrap();
    let out = in_lab(
        &lab,
        &["deploy", "--genconf-dir", g, "--hosts", &a1.ip.to_string()],
    );
    std::fs::write(&pkg, &original).unwrap();
    let t = text(&out);
    assert_ne!(
        out.status.code(),
        Some(0),
        "a tampered package must be refused:\n{t}"
    );
    assert!(
        t.to_lowercase().contains("sha256"),
        "the refusal should name the hash check:\n{t}"
    );
    assert_ne!(
        ssh(
            &lab,
            &a1.name,
            "systemctl is-active tarmac-node-exporter.service || true"
        ),
        "active"
    );

    // 7. Uninstall leaves every host clean.
    let out = in_lab(&lab, &["uninstall", "--yes", "--genconf-dir", g]);
    assert!(out.status.success(), "{}", text(&out));
    for h in lab.hosts() {
        let left = ssh(
            &lab,
            &h.name,
            // (tarmac-lab-* units belong to the lab itself, not to the installed cluster)
            "ls -d /opt/tarmac /etc/tarmac /var/lib/tarmac-push /etc/systemd/system/tarmac* 2>/dev/null | grep -v '/tarmac-lab-'; systemctl list-units --all --no-legend 'tarmac*' | grep -v -e tarmac-lab- -e 'not-found' || true",
        );
        assert_eq!(left, "", "{} is not clean after uninstall", h.name);
    }
    lab.down().unwrap();
}

fn find_package(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .unwrap_or_else(|| panic!("no package in {}", d.display()))
}
