//! Upgrades that go wrong, on the lab (root needed), 3 masters + 2 agents:
//! 1. a package whose service fails to start: the first master's checks fail, the upgrade
//!    stops there, that master is rolled back, the other hosts never switch;
//! 2. the installer killed while a master waits for its confirmation: `upgrade --resume`
//!    checks and confirms that master and finishes the rest;
//! 3. `tarmac rollback` brings every host back to the generation it came from;
//! 4. the failure budget: an agent that fails with `--max-failures 0` stops the upgrade
//!    before the next agent; with `--max-failures 1` the others go on (exit code still ≠ 0);
//! 5. a host powered off and booted inside its confirm window (the installer killed too):
//!    it comes back on its previous generation by itself, and `upgrade --resume` reports it
//!    `reverted`, not `unchanged`.
#![allow(clippy::print_stderr)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::*;
use tarmac_lab::Role;

/// `tarmac build` of `tree` into the quickstart's build directory, signed with its key.
fn build(dir: &Path, tree: &Path) {
    let out = Command::new(tarmac())
        .arg("build")
        .arg("--tree")
        .arg(tree)
        .arg("--out")
        .arg(dir.join("build"))
        .arg("--sign-key")
        .arg(dir.join("keys/quickstart.key"))
        .arg("--host-binary")
        .arg(host_binary())
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(out.status.success(), "build failed:\n{}", text(&out));
}

fn upgrade_state(genconf: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(genconf.join("state/upgrade.json")).unwrap()).unwrap()
}

#[test]
fn broken_upgrade_resume_rollback_and_budget_on_the_lab() {
    let QuickLab {
        lab,
        dir,
        work,
        down: _down,
    } = QuickLab::up("upf", 3, 2, 0);
    let genconf = dir.join("genconf");
    let g = genconf.to_str().unwrap();
    let b = dir.join("build");
    let b = b.to_str().unwrap();
    let masters: Vec<_> = lab.hosts_with_role(Role::Master).cloned().collect();
    let agents: Vec<_> = lab.hosts_with_role(Role::Agent).cloned().collect();
    let names: Vec<String> = lab.hosts().iter().map(|h| h.name.clone()).collect();
    let gen_of = |h: &str| ssh(&lab, h, "basename $(readlink /opt/tarmac/current)");
    let active_of = |h: &str| ssh(&lab, h, "/opt/tarmac/tarmac-host active");
    let timer_of = |h: &str| {
        ssh(
            &lab,
            h,
            "if [ -e /opt/tarmac/pending.json ]; then echo active; else echo inactive; fi",
        )
    };
    let idx = |h: &str| names.iter().position(|n| n == h).unwrap();
    let gen0: Vec<String> = names.iter().map(|h| gen_of(h)).collect();
    let active0: Vec<String> = names.iter().map(|h| active_of(h)).collect();

    // 1. node-exporter's service now fails to start (every role runs it).
    let broken = work.path().join("broken");
    let st = Command::new("cp")
        .arg("-a")
        .arg(workspace().join("dist/reference"))
        .arg(&broken)
        .status()
        .unwrap();
    assert!(st.success());
    let unit = broken.join("packages/node-exporter/extra/tarmac-node-exporter.service");
    let text_unit = std::fs::read_to_string(&unit).unwrap();
    assert!(text_unit.contains("[Service]\n"));
    std::fs::write(
        &unit,
        text_unit.replace("[Service]\n", "[Service]\nExecStartPre=/bin/false\n"),
    )
    .unwrap();
    build(&dir, &broken);
    regenconf(&lab, g, b);
    let out = in_lab(
        &lab,
        &[
            "upgrade",
            "--genconf-dir",
            g,
            "--batch",
            "1",
            "--check-timeout",
            "20",
            "--confirm-window",
            "60s",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("stopped before touching the other hosts"), "{t}");
    let st = upgrade_state(&genconf);
    assert_eq!(st["hosts"][masters[0].ip.to_string()], "failed", "{st}");
    for h in masters[1..].iter().chain(&agents) {
        assert_eq!(st["hosts"][h.ip.to_string()], "untouched", "{st}");
    }
    for (i, h) in names.iter().enumerate() {
        assert_eq!(gen_of(h), gen0[i], "{h}: not on its old generation");
        assert_eq!(active_of(h), active0[i], "{h}");
        assert_eq!(
            timer_of(h),
            "inactive",
            "{h}: pending confirmation left behind"
        );
    }
    // The reverted master runs its old node-exporter again.
    let m0 = &masters[0].name;
    let mut healthy = false;
    for _ in 0..60 {
        if ssh(
            &lab,
            m0,
            "/opt/tarmac/tarmac-host check >/dev/null 2>&1 && echo ok",
        ) == "ok"
        {
            healthy = true;
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(healthy, "{m0}: checks fail after the revert");

    // 2. A good change; the installer is killed while the second master waits for its
    // confirmation; --resume confirms it and finishes.
    build(&dir, &workspace().join("dist/reference"));
    set_key(&genconf, "etcd_snapshot_count", "20000");
    regenconf(&lab, g, b);
    let m1 = &masters[1].name;
    let mut child = spawn_in_lab(
        &lab,
        &[
            "upgrade",
            "--genconf-dir",
            g,
            "--batch",
            "1",
            "--confirm-window",
            "300s",
        ],
    );
    let t0 = Instant::now();
    // Switched (its current generation moved) and waiting for the confirmation.
    while timer_of(m1) != "active" || gen_of(m1) == gen0[idx(m1)] {
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "{m1} never armed its confirmation"
        );
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the upgrade ended before {m1} switched"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(child); // SIGKILL: no cleanup, the run lock is left behind by a dead pid.
    let out = in_lab(&lab, &["upgrade", "--genconf-dir", g, "--resume"]);
    assert!(out.status.success(), "resume failed:\n{}", text(&out));
    let new_active = active_of(m0);
    assert_ne!(new_active, active0[idx(m0)]);
    let gen1: Vec<String> = names.iter().map(|h| gen_of(h)).collect();
    for (i, h) in names.iter().enumerate() {
        assert_eq!(active_of(h), new_active, "{h}: not on the new list");
        assert_ne!(gen1[i], gen0[i], "{h}");
        assert_eq!(
            timer_of(h),
            "inactive",
            "{h}: pending confirmation left behind"
        );
    }
    let out = in_lab(&lab, &["status", "--genconf-dir", g]);
    assert!(out.status.success(), "status shows drift:\n{}", text(&out));

    // 3. Rollback: every host back to the generation it came from (not to the reverted
    // broken one that sits in between on the first master).
    let out = in_lab(&lab, &["rollback", "--genconf-dir", g, "--batch", "2"]);
    assert!(out.status.success(), "rollback failed:\n{}", text(&out));
    for (i, h) in names.iter().enumerate() {
        assert_eq!(gen_of(h), gen0[i], "{h}: not back on its first generation");
        assert_eq!(active_of(h), active0[i], "{h}");
    }
    let out = in_lab(&lab, &["rollback", "--genconf-dir", g, "--resume"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("--resume"), "{}", text(&out));

    // 4. The failure budget: the first agent cannot prepare its upgrade directory.
    let a0 = &agents[0].name;
    let a1 = &agents[1].name;
    ssh(
        &lab,
        a0,
        "rm -rf /etc/tarmac/upgrade && touch /etc/tarmac/upgrade",
    );
    let out = in_lab(
        &lab,
        &[
            "upgrade",
            "--genconf-dir",
            g,
            "--batch",
            "1",
            "--max-failures",
            "0",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("more than the budget of 0"), "{t}");
    for m in &masters {
        assert_eq!(active_of(&m.name), new_active, "{}", m.name);
    }
    assert_eq!(active_of(a0), active0[idx(a0)]);
    assert_eq!(
        active_of(a1),
        active0[idx(a1)],
        "{a1} was touched past the budget"
    );
    let st = upgrade_state(&genconf);
    assert_eq!(st["hosts"][agents[0].ip.to_string()], "failed", "{st}");
    assert_eq!(st["hosts"][agents[1].ip.to_string()], "untouched", "{st}");

    let out = in_lab(
        &lab,
        &[
            "upgrade",
            "--genconf-dir",
            g,
            "--batch",
            "1",
            "--max-failures",
            "1",
        ],
    );
    let t = text(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a failed host must fail the run:\n{t}"
    );
    assert!(!t.contains("budget"), "{t}");
    assert_eq!(
        active_of(a1),
        new_active,
        "{a1} not upgraded within the budget"
    );
    assert_eq!(active_of(a0), active0[idx(a0)]);
    ssh(&lab, a0, "rm -f /etc/tarmac/upgrade");
    // The last one with --push: the packages go over SSH, no HTTP server.
    let out = in_lab(&lab, &["upgrade", "--genconf-dir", g, "--push"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(active_of(a0), new_active);
    assert_eq!(
        ssh(&lab, a0, "ls /var/lib/tarmac-push/packages 2>&1 || true"),
        "ls: cannot access '/var/lib/tarmac-push/packages': No such file or directory"
    );

    // 5. Reboot inside the confirm window.
    let prev_gen = gen_of(a1);
    let prev_active = active_of(a1);
    set_key(&genconf, "etcd_snapshot_count", "30000");
    regenconf(&lab, g, b);
    let a1_ip = agents[1].ip.to_string();
    let mut child = spawn_in_lab(
        &lab,
        &[
            "upgrade",
            "--genconf-dir",
            g,
            "--hosts",
            &a1_ip,
            "--confirm-window",
            "90s",
        ],
    );
    let t0 = Instant::now();
    while timer_of(a1) != "active" || gen_of(a1) == prev_gen {
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "{a1} never armed its confirmation"
        );
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the upgrade ended before {a1} switched"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(child); // the installer dies with the host: nobody will confirm
    lab.power_off(a1).unwrap();
    lab.boot(a1, Duration::from_secs(180)).unwrap();
    let t0 = Instant::now();
    while gen_of(a1) != prev_gen || timer_of(a1) != "inactive" {
        if t0.elapsed() > Duration::from_secs(150) {
            let diag = ssh(
                &lab,
                a1,
                "systemctl status --no-pager tarmac-confirm.service tarmac-setup.service 2>&1; journalctl --no-pager -b -n 80 -u tarmac-confirm.service -u tarmac-setup.service 2>&1; /opt/tarmac/tarmac-host status 2>&1",
            );
            panic!(
                "{a1} did not go back to generation {prev_gen} after the reboot (on {}):\n{diag}",
                gen_of(a1)
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(active_of(a1), prev_active);
    let log = ssh(&lab, a1, "tail -n 1 /opt/tarmac/switches.jsonl");
    assert!(log.contains("\"command\":\"revert\""), "{log}");
    assert!(
        log.contains("\"reason\":\"reboot\"") || log.contains("\"reason\":\"deadline\""),
        "{log}"
    );
    let out = in_lab(
        &lab,
        &["upgrade", "--genconf-dir", g, "--hosts", &a1_ip, "--resume"],
    );
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("reverted by itself"), "{t}");
    let st = upgrade_state(&genconf);
    assert_eq!(st["hosts"][a1_ip.as_str()], "reverted", "{st}");
    assert_eq!(gen_of(a1), prev_gen, "resume must not switch it again");
    lab.down().unwrap();
}
