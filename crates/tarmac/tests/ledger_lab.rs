//! The cluster ledger on the lab (root needed): quickstart 1 master + 1 agent (genconf and
//! deploy entries), a config-only `upgrade`, then `rollback`. `status` is then clean against
//! the rolled-back target and every host names the rollback entry; `history` lists genconf,
//! deploy, genconf, upgrade, rollback in order; `status --at <upgrade>` reports drift. A
//! switch made by hand with `tarmac-host` is reported as a change outside the installer, and
//! an edited or truncated ledger is refused with a clear error.
#![allow(clippy::print_stderr)]

mod common;

use common::*;
use tarmac_lab::Role;

fn history_json(lab: &tarmac_lab::Lab, g: &str) -> Vec<serde_json::Value> {
    let out = in_lab(lab, &["history", "--genconf-dir", g, "--output", "json"]);
    assert!(out.status.success(), "history failed:\n{}", text(&out));
    serde_json::from_slice(&out.stdout).expect("history --output json is a JSON array")
}

#[test]
fn deploy_upgrade_rollback_status_and_history() {
    if !is_root() {
        eprintln!("skipped: the lab needs root");
        return;
    }
    let QuickLab {
        lab,
        dir,
        work: _work,
        down: _down,
    } = QuickLab::up("ldg", 1, 1, 0);
    let genconf = dir.join("genconf");
    let g = genconf.to_str().unwrap();
    let build = dir.join("build");
    let b = build.to_str().unwrap();
    let agent = lab.hosts_with_role(Role::Agent).next().unwrap().clone();

    set_key(&genconf, "etcd_snapshot_count", "20000");
    regenconf(&lab, g, b);
    let out = in_lab(&lab, &["upgrade", "--genconf-dir", g, "--batch", "1"]);
    assert!(out.status.success(), "upgrade failed:\n{}", text(&out));
    let out = in_lab(&lab, &["rollback", "--genconf-dir", g]);
    assert!(out.status.success(), "rollback failed:\n{}", text(&out));

    // History: the operations in order, the rollback back on the deploy's target.
    let entries = history_json(&lab, g);
    let ops: Vec<&str> = entries.iter().map(|e| e["op"].as_str().unwrap()).collect();
    assert_eq!(
        ops,
        ["genconf", "deploy", "genconf", "upgrade", "rollback"],
        "{entries:#?}"
    );
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(i as u64 + 1));
        assert_eq!(e["complete"].as_bool(), Some(true), "{e:#}");
    }
    let list = |e: &serde_json::Value, k: &str| e[k]["list_id"].as_str().unwrap().to_owned();
    let (deploy, upgrade, rollback) = (&entries[1], &entries[3], &entries[4]);
    assert_eq!(list(rollback, "target_after"), list(deploy, "target_after"));
    assert_eq!(
        list(rollback, "target_before"),
        list(upgrade, "target_after")
    );
    assert_ne!(list(upgrade, "target_after"), list(deploy, "target_after"));
    for h in lab.hosts() {
        let ip = h.ip.to_string();
        assert_eq!(rollback["hosts"][&ip].as_str(), Some("ok"), "{rollback:#}");
    }
    let out = in_lab(&lab, &["history", "--genconf-dir", g]);
    let human = text(&out);
    assert!(out.status.success(), "{human}");
    assert!(
        human.contains("rollback") && human.contains("complete"),
        "{human}"
    );
    let out = in_lab(&lab, &["history", "--genconf-dir", g, "show", "5"]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.starts_with("entry 5: rollback"), "{shown}");
    for h in lab.hosts() {
        assert!(shown.contains(&h.ip.to_string()), "{shown}");
    }

    // Status: clean against the rolled-back target; each host names the rollback entry.
    let out = in_lab(&lab, &["status", "--genconf-dir", g]);
    let st = text(&out);
    assert!(
        out.status.success(),
        "a rolled-back cluster must be clean:\n{st}"
    );
    assert!(st.contains("set by ledger entry 5"), "{st}");
    assert!(
        st.contains("note: genconf rendered"),
        "the newer genconf is pending:\n{st}"
    );
    let out = in_lab(&lab, &["status", "--genconf-dir", g, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for h in lab.hosts() {
        let placed = &report["hosts"][h.ip.to_string()]["placed_by"];
        assert_eq!(placed["kind"], "entry", "{}: {placed}", h.name);
        assert_eq!(placed["seq"], 5, "{}: {placed}", h.name);
        assert_eq!(placed["op"], "rollback", "{}: {placed}", h.name);
    }
    // Against the upgrade's target, the same hosts are drift.
    let out = in_lab(&lab, &["status", "--genconf-dir", g, "--at", "4"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("as of ledger entry 4"),
        "{}",
        text(&out)
    );

    // A switch by hand is a change outside the installer.
    let gens = ssh(&lab, &agent.name, "ls /opt/tarmac/generations");
    let other = gens
        .split_whitespace()
        .find(|g| {
            *g != ssh(
                &lab,
                &agent.name,
                "basename $(readlink /opt/tarmac/current)",
            )
        })
        .expect("the agent keeps its upgraded generation")
        .to_owned();
    ssh(
        &lab,
        &agent.name,
        &format!("/opt/tarmac/tarmac-host --wait rollback --to {other} >/dev/null 2>&1 && echo ok"),
    );
    let out = in_lab(&lab, &["status", "--genconf-dir", g]);
    let st = text(&out);
    assert_eq!(out.status.code(), Some(2), "{st}");
    let row = st
        .lines()
        .find(|l| l.starts_with(&agent.ip.to_string()))
        .unwrap_or_else(|| panic!("no row for the agent:\n{st}"));
    assert!(row.contains("tarmac-host rollback (by hand)"), "{st}");
    assert!(row.contains("CHANGED OUTSIDE THE INSTALLER"), "{st}");

    // An edited ledger, then a truncated one, are refused; the original verifies again.
    let path = genconf.join("state/ledger.jsonl");
    let original = std::fs::read_to_string(&path).unwrap();
    let edited = original.replacen("\"complete\":true", "\"complete\":false", 2);
    std::fs::write(&path, &edited).unwrap();
    let out = in_lab(&lab, &["history", "--genconf-dir", g]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("is damaged at line 2")
            && text(&out).contains("does not follow entry 1"),
        "{}",
        text(&out)
    );
    let out = in_lab(&lab, &["status", "--genconf-dir", g]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("damaged"), "{}", text(&out));
    let lines: Vec<&str> = original.lines().collect();
    std::fs::write(&path, lines[..3].join("\n") + "\n").unwrap();
    let out = in_lab(&lab, &["history", "--genconf-dir", g]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is truncated"), "{}", text(&out));
    std::fs::write(&path, &original).unwrap();
    assert_eq!(history_json(&lab, g).len(), 5);
    lab.down().unwrap();
}
