//! Upgrade on the lab (root needed): deploy the reference distribution on 3 masters +
//! 2 agents, change an etcd setting, genconf, `upgrade --plan`, then `upgrade` while a probe
//! writes and reads an etcd key every 100 ms; every host ends on the new package list and
//! `status` shows no drift. Then a lost confirmation: the controller's link to an agent is
//! cut right after its switch, and the agent reverts by itself when the window ends.
#![allow(clippy::print_stderr)]

use std::time::{Duration, Instant};

mod common;

use common::*;
use tarmac_lab::{Lab, Role};

/// The probe's failure intervals, from the first failed tick to the next success (or the
/// last tick), and the number of ticks.
fn failure_intervals(log: &str) -> (usize, Vec<(f64, f64)>) {
    let mut ticks = 0;
    let mut out = Vec::new();
    let mut fail_start: Option<f64> = None;
    let mut last = 0.0;
    for l in log.lines() {
        let mut it = l.split_whitespace();
        let (Some(ts), Some(ok)) = (it.next().and_then(|t| t.parse::<f64>().ok()), it.next())
        else {
            continue;
        };
        ticks += 1;
        last = ts;
        match (ok == "1", fail_start) {
            (false, None) => fail_start = Some(ts),
            (true, Some(s)) => {
                out.push((s, ts));
                fail_start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = fail_start {
        out.push((s, last));
    }
    (ticks, out)
}

/// When the host's etcd main process started, in Unix seconds (its monotonic start time
/// moved onto the realtime clock on the host itself).
fn etcd_started(lab: &Lab, host: &str) -> f64 {
    let out = ssh(
        lab,
        host,
        "m=$(systemctl show -p ExecMainStartTimestampMonotonic --value tarmac-etcd.service); \
         awk -v m=\"$m\" -v now=\"$(date +%s.%N)\" -v up=\"$(cut -d' ' -f1 /proc/uptime)\" \
         'BEGIN { printf \"%.3f\", now - up + m / 1e6 }'",
    );
    out.parse()
        .unwrap_or_else(|_| panic!("{host}: cannot read etcd's start time: {out:?}"))
}

#[test]
fn upgrade_and_lost_confirmation_on_the_lab() {
    let QuickLab {
        lab,
        dir,
        work: _work,
        down: _down,
    } = QuickLab::up("upg", 3, 2, 0);
    let genconf = dir.join("genconf");
    let g = genconf.to_str().unwrap();
    let build = dir.join("build");
    let b = build.to_str().unwrap();
    let masters: Vec<_> = lab.hosts_with_role(Role::Master).cloned().collect();
    let agents: Vec<_> = lab.hosts_with_role(Role::Agent).cloned().collect();
    let gen_of = |h: &str| ssh(&lab, h, "basename $(readlink /opt/tarmac/current)");
    let before: Vec<String> = lab.hosts().iter().map(|h| gen_of(&h.name)).collect();
    let old_active = ssh(&lab, &masters[0].name, "/opt/tarmac/tarmac-host active");

    // A changed etcd setting → a new config package and cluster package list.
    set_key(&genconf, "etcd_snapshot_count", "20000");
    regenconf(&lab, g, b);

    // --plan touches nothing and names the change on every host.
    let out = in_lab(&lab, &["upgrade", "--plan", "--genconf-dir", g]);
    let plan = text(&out);
    assert!(out.status.success(), "{plan}");
    assert!(plan.contains("1. master"), "{plan}");
    assert!(plan.contains("change tarmac-config"), "{plan}");
    // Only the config package changes, yet etcd restarts on the masters, and the plan says why.
    assert!(
        plan.contains("tarmac-etcd.service: etc/etcd/etcd.env changed"),
        "{plan}"
    );
    for h in lab.hosts() {
        assert!(plan.contains(&format!("{} (", h.ip)), "{plan}");
    }
    let after_plan: Vec<String> = lab.hosts().iter().map(|h| gen_of(&h.name)).collect();
    assert_eq!(before, after_plan, "--plan must not touch any host");

    // The probe: put + range on the first master that answers, every 100 ms.
    let eps: Vec<String> = masters
        .iter()
        .map(|m| format!("http://{}:2379", m.ip))
        .collect();
    let probe = format!(
        "i=0; while true; do i=$((i+1)); v=$(printf %s $i | base64); ok=0; for ep in {eps}; do \
         if curl -fsS -m 1 -X POST $ep/v3/kv/put -d \"{{\\\"key\\\":\\\"cHJvYmU=\\\",\\\"value\\\":\\\"$v\\\"}}\" >/dev/null 2>&1 && \
         curl -fsS -m 1 -X POST $ep/v3/kv/range -d '{{\"key\":\"cHJvYmU=\"}}' 2>/dev/null | grep -q \"$v\"; then ok=1; break; fi; done; \
         echo \"$(date +%s.%N) $ok\" >> /root/probe.log; sleep 0.1; done",
        eps = eps.join(" ")
    );
    let probe_host = &agents[0].name;
    ssh(
        &lab,
        probe_host,
        &format!(
            "rm -f /root/probe.log; systemd-run --quiet --unit=upgrade-probe /bin/bash -c '{}'",
            probe.replace('\'', "'\\''")
        ),
    );

    let etcd_before: Vec<f64> = masters
        .iter()
        .map(|m| etcd_started(&lab, &m.name))
        .collect();
    let t0 = Instant::now();
    let out = in_lab(
        &lab,
        &[
            "upgrade",
            "--genconf-dir",
            g,
            "--batch",
            "1",
            "--confirm-window",
            "120s",
        ],
    );
    let upgrade_secs = t0.elapsed().as_secs_f64();
    ssh(&lab, probe_host, "systemctl stop upgrade-probe");
    assert!(out.status.success(), "upgrade failed:\n{}", text(&out));
    let log = ssh(&lab, probe_host, "cat /root/probe.log");
    let (ticks, failures) = failure_intervals(&log);
    let longest = failures.iter().map(|(s, e)| e - s).fold(0.0f64, f64::max);
    eprintln!(
        "upgrade of 3 masters + 2 agents: {upgrade_secs:.1}s; probe ticks {ticks}, {} failure interval(s), longest {longest:.3}s",
        failures.len()
    );
    assert!(ticks > 10, "the probe did not run:\n{log}");
    // The changed etcd setting lives in the config package only: etcd restarted anyway
    // (it watches etc/etcd), on one master at a time, in the rolling order.
    let etcd_after: Vec<f64> = masters
        .iter()
        .map(|m| etcd_started(&lab, &m.name))
        .collect();
    for ((m, b), a) in masters.iter().zip(&etcd_before).zip(&etcd_after) {
        assert!(a > b, "{}: etcd did not restart for its new config", m.name);
    }
    assert!(
        etcd_after.windows(2).all(|w| w[0] < w[1]),
        "masters restarted out of order: {etcd_after:?}"
    );
    // No write failed across two members' restarts: each failure interval overlaps at most
    // one restart (give or take the probe's 1 s request timeout).
    for (s, e) in &failures {
        let during = etcd_after
            .iter()
            .filter(|r| **r >= s - 2.0 && **r <= e + 1.0)
            .count();
        assert!(
            during <= 1,
            "writes failed from {s:.3} to {e:.3}, across {during} etcd restarts {etcd_after:?}:\n{log}"
        );
    }

    let new_active = ssh(&lab, &masters[0].name, "/opt/tarmac/tarmac-host active");
    assert_ne!(old_active, new_active);
    for (h, b) in lab.hosts().iter().zip(&before) {
        assert_ne!(
            &gen_of(&h.name),
            b,
            "{} is still on its old generation",
            h.name
        );
        assert_eq!(
            ssh(&lab, &h.name, "/opt/tarmac/tarmac-host active"),
            new_active,
            "{}",
            h.name
        );
        assert_eq!(
            ssh(
                &lab,
                &h.name,
                "if [ -e /opt/tarmac/pending.json ]; then echo active; else echo inactive; fi"
            ),
            "inactive",
            "{}: pending confirmation left behind",
            h.name
        );
    }
    let out = in_lab(&lab, &["status", "--genconf-dir", g]);
    assert!(out.status.success(), "status shows drift:\n{}", text(&out));
    // Re-running is a no-op.
    let out = in_lab(&lab, &["upgrade", "--genconf-dir", g]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("unchanged"), "{}", text(&out));

    // Lost confirmation: cut the agent's link as soon as its switch has armed the timer.
    let agent = &agents[1];
    let prev_gen = gen_of(&agent.name);
    let prev_flag = ssh(
        &lab,
        &agent.name,
        "sha256sum < /etc/tarmac/setup-flags/cluster-package-list",
    );
    set_key(&genconf, "etcd_snapshot_count", "30000");
    regenconf(&lab, g, b);
    let mut child = spawn_in_lab(
        &lab,
        &[
            "upgrade",
            "--genconf-dir",
            g,
            "--hosts",
            &agent.ip.to_string(),
            "--confirm-window",
            "20s",
        ],
    );
    let armed = Instant::now();
    loop {
        assert!(
            armed.elapsed() < Duration::from_secs(120),
            "the switch never armed its confirmation"
        );
        if ssh(
            &lab,
            &agent.name,
            "if [ -e /opt/tarmac/pending.json ]; then echo active; else echo inactive; fi",
        ) == "active"
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let armed = Instant::now();
    lab.host_link(&agent.name, false).unwrap();
    // The installer cannot confirm; wait past the window (plus the rollback itself).
    let mut code = None;
    while armed.elapsed() < Duration::from_secs(45) {
        if let Some(st) = child.0.try_wait().unwrap() {
            code = st.code();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(child);
    lab.host_link(&agent.name, true).unwrap();
    assert_ne!(
        code,
        Some(0),
        "the upgrade cannot have succeeded without the agent"
    );
    let mut reverted = false;
    for _ in 0..60 {
        if gen_of(&agent.name) == prev_gen {
            reverted = true;
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    if !reverted {
        let diag = ssh(
            &lab,
            &agent.name,
            "systemctl status --no-pager tarmac-confirm.service 2>&1; journalctl --no-pager -n 60 -u tarmac-confirm.service 2>&1; /opt/tarmac/tarmac-host status 2>&1; /opt/tarmac/tarmac-host generations 2>&1",
        );
        panic!(
            "{} did not revert by itself (now on {}, was on {prev_gen}; installer exit {code:?}):\n{diag}",
            agent.name,
            gen_of(&agent.name)
        );
    }
    assert_eq!(
        ssh(
            &lab,
            &agent.name,
            "sha256sum < /etc/tarmac/setup-flags/cluster-package-list"
        ),
        prev_flag
    );
    assert_eq!(
        ssh(&lab, &agent.name, "/opt/tarmac/tarmac-host active"),
        new_active
    );
    lab.down().unwrap();
}
