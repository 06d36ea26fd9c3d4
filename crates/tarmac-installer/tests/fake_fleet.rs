//! The upgrade engine on the fake fleet: the cases of the lab's `upgrade_lab` and
//! `upgrade_failures_lab` (order, gates, failure budget, revert, lost confirmation, reboot in
//! the confirm window, `--resume`, rollback, unchanged hosts, ledger), without root or VMs, in
//! milliseconds. The fake answers as tarmac-host does, with the same JSON types.

mod common;

use std::time::Duration;

use common::{AGENTS, Cluster, MASTERS, NEW, OLD, PUBLIC, ids};
use tarmac_installer::ledger::Op;
use tarmac_installer::upgrade::{BatchSize, Budget, UpgradeOptions, UpgradeReport};
use tarmac_types::confirm::RevertReason;

fn opts(batch: usize, budget: usize) -> UpgradeOptions {
    UpgradeOptions {
        batch: BatchSize::Count(batch),
        max_failures: Budget::Count(budget),
        check_deadline: Duration::from_millis(600),
        ..UpgradeOptions::default()
    }
}

fn all_hosts() -> Vec<&'static str> {
    MASTERS
        .iter()
        .chain(&AGENTS)
        .chain(&PUBLIC)
        .copied()
        .collect()
}

/// Index of the first `verb` of `host` in the fleet's log.
fn at(c: &Cluster, host: &str, verb: &str) -> usize {
    c.fleet
        .log()
        .iter()
        .position(|r| r.host == host && r.verb == verb)
        .unwrap_or_else(|| panic!("{host} never ran {verb}"))
}

fn last_at(c: &Cluster, host: &str, verb: &str) -> usize {
    c.fleet
        .log()
        .iter()
        .rposition(|r| r.host == host && r.verb == verb)
        .unwrap_or_else(|| panic!("{host} never ran {verb}"))
}

fn no_unknown(c: &Cluster) {
    assert_eq!(c.fleet.unknown(), vec![], "commands the fake does not know");
}

async fn upgrade(c: &Cluster, o: &UpgradeOptions) -> UpgradeReport {
    c.installer().upgrade(o).await.expect("upgrade runs")
}

/// Runs `upgrade` until a host reaches its `hang_on` verb, then drops it (the installer is
/// killed there: no cleanup, upgrade.json says unfinished).
async fn upgrade_killed(c: &Cluster, o: &UpgradeOptions) {
    let inst = c.installer();
    tokio::select! {
        r = inst.upgrade(o) => panic!("the upgrade finished instead of being killed: {r:?}"),
        () = c.fleet.killed() => {}
    }
}

#[tokio::test]
async fn masters_one_at_a_time_then_batches_and_every_host_confirmed() {
    let c = Cluster::new();
    let r = upgrade(&c, &opts(2, 0)).await;
    assert!(r.succeeded(), "{:?}", r.state);
    for h in all_hosts() {
        assert_eq!(c.word(h), "ok", "{h}");
        let m = c.fleet.host(h);
        assert_eq!(m.current, 2, "{h}");
        assert_eq!(m.active(), ids(&NEW), "{h}");
        assert_eq!(m.pending, None, "{h}: left unconfirmed");
        assert_eq!(c.fleet.count(h, "switch"), 1, "{h}");
        assert_eq!(c.fleet.count(h, "confirm"), 1, "{h}");
        // The list was uploaded before fetch and switch.
        assert!(
            m.files
                .contains_key("/etc/tarmac/upgrade/list-new.package_list.json")
        );
        assert!(at(&c, h, "upload") < at(&c, h, "fetch"));
        assert!(at(&c, h, "fetch") < at(&c, h, "switch"));
        assert!(at(&c, h, "switch") < at(&c, h, "confirm"));
    }
    // Waves: each master alone, confirmed (after the cluster checks on every master) before
    // the next one switches; then agents and public agents two at a time.
    let waves: Vec<Vec<&str>> = vec![
        vec![MASTERS[0]],
        vec![MASTERS[1]],
        vec![MASTERS[2]],
        vec![AGENTS[0], AGENTS[1]],
        vec![AGENTS[2], AGENTS[3]],
        vec![PUBLIC[0]],
    ];
    for pair in waves.windows(2) {
        let done = pair[0].iter().map(|h| at(&c, h, "confirm")).max().unwrap();
        let next = pair[1].iter().map(|h| at(&c, h, "switch")).min().unwrap();
        assert!(
            done < next,
            "wave {:?} switched before {:?} was confirmed",
            pair[1],
            pair[0]
        );
    }
    // The cluster gate: after master 2's own checks, every master ran checks before its
    // confirmation.
    let m2_confirm = at(&c, MASTERS[1], "confirm");
    let m2_switch = at(&c, MASTERS[1], "switch");
    for m in MASTERS {
        let checks: Vec<usize> = c
            .fleet
            .log()
            .iter()
            .enumerate()
            .filter(|(_, r)| r.host == m && r.verb == "check")
            .map(|(i, _)| i)
            .collect();
        assert!(
            checks.iter().any(|i| *i > m2_switch && *i < m2_confirm),
            "{m}: no cluster check between master 2's switch and its confirmation"
        );
    }
    // One complete ledger entry naming every host.
    let entries = c.installer().ledger().read().unwrap();
    let last = entries.last().expect("a ledger entry");
    assert_eq!(last.op, Op::Upgrade);
    assert!(last.complete);
    assert_eq!(last.runs.len(), 1);
    assert_eq!(last.hosts.len(), all_hosts().len());
    assert!(last.hosts.values().all(|w| w == "ok"), "{:?}", last.hosts);
    assert_eq!(
        last.target_after.as_ref().map(|t| t.list_id.as_str()),
        Some("list-new")
    );
    // One journal per fleet run.
    assert!(r.journals.len() >= 6 * 2, "{:?}", r.journals);
    no_unknown(&c);
}

#[tokio::test]
async fn a_master_whose_checks_fail_is_reverted_and_the_rollout_stops() {
    let c = Cluster::new();
    c.fleet.behave(MASTERS[0], |b| b.checks_fail = true);
    let r = upgrade(&c, &opts(2, 5)).await;
    assert!(!r.succeeded());
    let stopped = r.state.stopped.clone().unwrap_or_default();
    assert!(
        stopped.contains("stopped before touching the other hosts"),
        "{stopped}"
    );
    assert_eq!(c.word(MASTERS[0]), "failed");
    let m = c.fleet.host(MASTERS[0]);
    assert_eq!(m.current, 1, "not back on its old generation");
    assert_eq!(m.active(), ids(&OLD));
    assert_eq!(m.pending, None);
    let rec = m.last_switch.expect("a revert record");
    assert_eq!(rec.command, "revert");
    assert_eq!(rec.reason, Some(RevertReason::Requested));
    assert_eq!(
        c.fleet.count(MASTERS[0], "confirm"),
        0,
        "a failing host was confirmed"
    );
    for h in all_hosts().into_iter().skip(1) {
        assert_eq!(c.word(h), "untouched", "{h}");
        assert_eq!(c.fleet.count(h, "switch"), 0, "{h} was switched");
        assert_eq!(c.gen_of(h), 1, "{h}");
    }
    let last = c.installer().ledger().read().unwrap().pop().unwrap();
    assert!(!last.complete);
    no_unknown(&c);
}

#[tokio::test]
async fn the_failure_budget_stops_the_rollout() {
    let c = Cluster::new();
    // The first agent cannot prepare its upgrade directory.
    c.fleet.behave(AGENTS[0], |b| b.prepare_fails = true);
    let r = upgrade(&c, &opts(1, 0)).await;
    let stopped = r.state.stopped.clone().unwrap_or_default();
    assert!(stopped.contains("more than the budget of 0"), "{stopped}");
    for m in MASTERS {
        assert_eq!(c.word(m), "ok", "{m}");
        assert_eq!(c.active_of(m), ids(&NEW), "{m}");
    }
    assert_eq!(c.word(AGENTS[0]), "failed");
    assert_eq!(c.fleet.count(AGENTS[0], "switch"), 0);
    assert_eq!(c.active_of(AGENTS[0]), ids(&OLD));
    for h in AGENTS.iter().skip(1).chain(&PUBLIC) {
        assert_eq!(c.word(h), "untouched", "{h}");
        assert_eq!(c.fleet.count(h, "status"), 0, "{h} was touched");
        assert_eq!(c.active_of(h), ids(&OLD), "{h}");
    }
    no_unknown(&c);
}

#[tokio::test]
async fn within_the_budget_the_rollout_goes_on() {
    let c = Cluster::new();
    c.fleet.behave(AGENTS[0], |b| b.prepare_fails = true);
    let r = upgrade(&c, &opts(1, 1)).await;
    assert_eq!(r.state.stopped, None);
    assert!(r.state.finished);
    assert!(
        !r.succeeded(),
        "a failed host within the budget still fails the run"
    );
    assert_eq!(c.word(AGENTS[0]), "failed");
    for h in AGENTS.iter().skip(1).chain(&PUBLIC) {
        assert_eq!(c.word(h), "ok", "{h}");
        assert_eq!(c.active_of(h), ids(&NEW), "{h}");
    }
    no_unknown(&c);
}

#[tokio::test]
async fn an_agent_whose_checks_fail_reverts_and_its_wave_mates_are_confirmed() {
    let c = Cluster::new();
    c.fleet.behave(AGENTS[1], |b| b.checks_fail = true);
    let r = upgrade(&c, &opts(2, 1)).await;
    assert_eq!(r.state.stopped, None);
    assert_eq!(c.word(AGENTS[1]), "failed");
    let a = c.fleet.host(AGENTS[1]);
    assert_eq!((a.current, a.pending.clone()), (1, None));
    assert_eq!(a.last_switch.unwrap().command, "revert");
    assert!(at(&c, AGENTS[1], "revert") > last_at(&c, AGENTS[1], "check"));
    assert_eq!(c.fleet.count(AGENTS[1], "confirm"), 0);
    assert_eq!(c.word(AGENTS[0]), "ok");
    assert_eq!(c.fleet.host(AGENTS[0]).pending, None);
    assert_eq!(c.active_of(AGENTS[0]), ids(&NEW));
    no_unknown(&c);
}

#[tokio::test]
async fn a_host_lost_after_its_switch_is_never_confirmed_and_reverts_by_itself() {
    let c = Cluster::new();
    c.fleet.behave(AGENTS[0], |b| b.cut_after_switch = true);
    let r = upgrade(&c, &opts(1, 1)).await;
    assert_eq!(r.state.stopped, None);
    assert!(!r.succeeded());
    let word = c.word(AGENTS[0]);
    assert_ne!(word, "ok");
    assert_eq!(c.fleet.count(AGENTS[0], "confirm"), 0);
    // Switched, waiting for a confirmation that cannot come.
    let a = c.fleet.host(AGENTS[0]);
    assert_eq!(a.current, 2);
    assert!(a.pending.is_some());
    // The window passes: the host's guard goes back.
    c.fleet.expire(AGENTS[0]);
    let a = c.fleet.host(AGENTS[0]);
    assert_eq!((a.current, a.active()), (1, ids(&OLD)));
    assert_eq!(a.last_switch.unwrap().reason, Some(RevertReason::Deadline));
    // The other agents went on.
    for h in AGENTS.iter().skip(1) {
        assert_eq!(c.word(h), "ok", "{h}");
    }
    // Back on the network, a new upgrade switches only that host; the others are unchanged
    // and not touched beyond the inspection.
    c.fleet.set_reachable(AGENTS[0], true);
    c.fleet.behave(AGENTS[0], |b| b.cut_after_switch = false);
    c.fleet.clear_log();
    let r = upgrade(&c, &opts(2, 0)).await;
    assert!(r.succeeded(), "{:?}", r.state);
    assert_eq!(c.word(AGENTS[0]), "ok");
    assert_eq!(c.gen_of(AGENTS[0]), 3);
    for h in all_hosts().into_iter().filter(|h| *h != AGENTS[0]) {
        assert_eq!(c.word(h), "unchanged", "{h}");
        assert_eq!(c.fleet.count(h, "switch"), 0, "{h}");
        assert_eq!(c.fleet.count(h, "upload"), 0, "{h}");
        assert_eq!(c.fleet.count(h, "confirm"), 0, "{h}");
        assert_eq!(c.gen_of(h), 2, "{h}");
    }
    no_unknown(&c);
}

#[tokio::test]
async fn killed_while_a_master_waits_for_its_confirmation_then_resume_confirms_it() {
    let c = Cluster::new();
    c.fleet
        .behave(MASTERS[1], |b| b.hang_on = Some("confirm".into()));
    upgrade_killed(&c, &opts(2, 0)).await;
    let st = tarmac_installer::upgrade::UpgradeState::load(&c.genconf().join("state")).unwrap();
    assert!(!st.finished);
    assert_eq!(c.word(MASTERS[0]), "ok");
    let m = c.fleet.host(MASTERS[1]);
    assert_eq!(m.current, 2, "switched");
    assert!(m.pending.is_some(), "and waiting for its confirmation");
    for h in all_hosts().into_iter().skip(2) {
        assert_eq!(c.fleet.count(h, "switch"), 0, "{h}");
    }
    // A plain run refuses nothing, but --resume is what picks up: master 1 is not touched.
    let mut o = opts(2, 0);
    o.resume = true;
    let r = upgrade(&c, &o).await;
    assert!(r.succeeded(), "{:?}", r.state);
    assert_eq!(r.state.run_ids.len(), 2);
    assert_eq!(
        c.fleet.count(MASTERS[0], "status"),
        1,
        "master 1 inspected again"
    );
    assert_eq!(
        c.fleet.count(MASTERS[1], "switch"),
        1,
        "master 2 switched again"
    );
    assert_eq!(c.fleet.count(MASTERS[1], "confirm"), 2);
    assert_eq!(c.fleet.host(MASTERS[1]).pending, None);
    for h in all_hosts() {
        assert_eq!(c.word(h), "ok", "{h}");
        assert_eq!((c.gen_of(h), c.active_of(h)), (2, ids(&NEW)), "{h}");
    }
    let last = c.installer().ledger().read().unwrap().pop().unwrap();
    assert!(last.complete);
    assert_eq!(
        last.runs, r.state.run_ids,
        "the entry covers the interrupted run too"
    );
    // Nothing left to resume.
    let e = c.installer().upgrade(&o).await.unwrap_err();
    let e = tarmac_types::error_report::text_with_hint(&e);
    assert!(
        e.contains("nothing to resume")
            && e.ends_with("\nhint: run without --resume to start a new upgrade"),
        "{e}"
    );
    no_unknown(&c);
}

#[tokio::test]
async fn a_reboot_inside_the_confirm_window_is_reported_reverted_on_resume() {
    let c = Cluster::new();
    c.fleet
        .behave(AGENTS[1], |b| b.hang_on = Some("confirm".into()));
    upgrade_killed(&c, &opts(1, 5)).await;
    assert!(c.fleet.host(AGENTS[1]).pending.is_some());
    // The host reboots while nobody will confirm: its boot guard goes back.
    c.fleet.reboot(AGENTS[1]);
    let a = c.fleet.host(AGENTS[1]);
    assert_eq!((a.current, a.active()), (1, ids(&OLD)));
    let rec = a.last_switch.unwrap();
    assert_eq!(rec.reason, Some(RevertReason::Reboot));
    assert!(rec.operation.unwrap().ends_with("/revert"));
    let mut o = opts(1, 5);
    o.resume = true;
    let r = upgrade(&c, &o).await;
    assert!(!r.succeeded());
    assert_eq!(
        c.word(AGENTS[1]),
        "reverted",
        "not unchanged, not switched again"
    );
    assert_eq!(
        c.fleet.count(AGENTS[1], "switch"),
        1,
        "resume must not switch it again"
    );
    assert_eq!(c.gen_of(AGENTS[1]), 1);
    assert_eq!(c.word(AGENTS[0]), "ok");
    for h in AGENTS.iter().skip(2).chain(&PUBLIC) {
        assert_eq!(c.word(h), "ok", "{h}");
    }
    let last = c.installer().ledger().read().unwrap().pop().unwrap();
    assert!(!last.complete);
    assert_eq!(
        last.hosts
            .get(&AGENTS[1].parse().unwrap())
            .map(String::as_str),
        Some("reverted")
    );
    no_unknown(&c);
}

#[tokio::test]
async fn rollback_goes_back_to_where_each_host_came_from() {
    let c = Cluster::new();
    // A broken upgrade that master 1 reverted, then a good one.
    c.fleet.behave(MASTERS[0], |b| b.checks_fail = true);
    upgrade(&c, &opts(4, 0)).await;
    assert_eq!(c.gen_of(MASTERS[0]), 1);
    c.fleet.behave(MASTERS[0], |b| b.checks_fail = false);
    let r = upgrade(&c, &opts(4, 0)).await;
    assert!(r.succeeded(), "{:?}", r.state);
    assert_eq!(c.gen_of(MASTERS[0]), 3, "generation 2 was the reverted one");
    assert_eq!(c.gen_of(MASTERS[1]), 2);
    // Rollback: every host back to generation 1 (not to the broken one in between).
    let r = c.installer().rollback(&opts(4, 0)).await.unwrap();
    let failures: Vec<String> = c
        .events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            tarmac_events::Event::StepFinished {
                host,
                step,
                outcome: tarmac_events::Outcome::Failed { message, .. },
                ..
            } => Some(format!("{host} {step}: {message}")),
            _ => None,
        })
        .collect();
    assert!(r.succeeded(), "{:?}\n{failures:#?}", r.state);
    for h in all_hosts() {
        assert_eq!(c.word(h), "ok", "{h}");
        assert_eq!((c.gen_of(h), c.active_of(h)), (1, ids(&OLD)), "{h}");
        assert_eq!(c.fleet.count(h, "rollback"), 1, "{h}");
    }
    let last = c.installer().ledger().read().unwrap().pop().unwrap();
    assert_eq!(last.op, Op::Rollback);
    assert!(last.complete);
    // `rollback --resume` after a finished rollback says so.
    let mut o = opts(4, 0);
    o.resume = true;
    let e = c.installer().rollback(&o).await.unwrap_err().to_string();
    assert!(e.contains("--resume"), "{e}");
    no_unknown(&c);
}

#[tokio::test]
async fn an_unreachable_host_fails_alone() {
    let c = Cluster::new();
    c.fleet.set_reachable(AGENTS[2], false);
    let r = upgrade(&c, &opts(2, 1)).await;
    assert_eq!(r.state.stopped, None);
    assert_eq!(c.word(AGENTS[2]), "unreachable");
    assert_eq!(c.word(AGENTS[3]), "ok", "its wave mate");
    assert_eq!(c.gen_of(AGENTS[2]), 1);
    no_unknown(&c);
}

#[tokio::test]
async fn the_fake_refuses_commands_it_does_not_know() {
    use std::sync::Arc;
    use tarmac_ssh::{Exec, Fleet, FleetContext, SshOptions, Target};
    let c = Cluster::new();
    let sink: tarmac_events::Sink = c.events.clone();
    let fleet = Fleet::with_transport(
        vec![Target::new(AGENTS[0].parse().unwrap())],
        SshOptions::default(),
        FleetContext::new(sink),
        Arc::new(c.fleet.clone()),
    );
    let s = fleet.session("t", &AGENTS[0].parse().unwrap()).unwrap();
    let r = s
        .run("x", Exec::root("systemctl restart everything"))
        .await
        .unwrap();
    assert_eq!(r.exit_code, Some(127));
    assert!(r.stderr.contains("unknown command"), "{}", r.stderr);
    let r = s
        .run("y", Exec::root("/opt/tarmac/tarmac-host frobnicate"))
        .await
        .unwrap();
    assert_eq!(r.exit_code, Some(127));
    assert_eq!(c.fleet.unknown().len(), 2);
}

#[tokio::test]
async fn an_upgrade_that_touches_masters_takes_a_snapshot_first() {
    let c = Cluster::new();
    let r = upgrade(&c, &opts(2, 0)).await;
    assert!(r.succeeded(), "{:?}", r.state);
    no_unknown(&c);
    let name = r
        .state
        .snapshot
        .clone()
        .expect("upgrade.json names its snapshot");
    let dir = c.genconf().join("state/backups");
    let data = std::fs::read(dir.join(format!("{name}.tar.zst"))).unwrap();
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    assert_eq!(
        record["sha256"],
        tarmac_types::Digest::of(&data).hex(),
        "{record}"
    );
    assert_eq!(record["reason"], r.state.run_ids[0], "{record}");
    // One master took it, before any host switched; the host's copy was removed.
    let backups: Vec<String> = c.fleet.order_of("backup");
    assert_eq!(backups.len(), 1, "{backups:?}");
    let first_switch = c
        .fleet
        .log()
        .iter()
        .position(|r| r.verb == "switch")
        .unwrap();
    assert!(at(&c, &backups[0], "download") < first_switch);
    assert!(
        c.fleet
            .host(&backups[0])
            .files
            .keys()
            .all(|k| !k.contains(".backups"))
    );
    // The snapshot belongs to the upgrade: its ledger entry is the upgrade's.
    let ops: Vec<Op> = c
        .installer()
        .ledger()
        .read()
        .unwrap()
        .iter()
        .map(|e| e.op)
        .collect();
    assert_eq!(ops.last(), Some(&Op::Upgrade), "{ops:?}");
}

#[tokio::test]
async fn a_failed_snapshot_stops_the_upgrade_before_any_switch_unless_no_backup() {
    let c = Cluster::new();
    for m in MASTERS {
        c.fleet.behave(m, |b| b.backup_fails = true);
    }
    let err = c
        .installer()
        .upgrade(&opts(2, 0))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("the upgrade takes a snapshot of the quorum store before it touches masters, and the snapshot failed; no host was switched"),
        "{err}"
    );
    assert_eq!(c.fleet.count(MASTERS[0], "backup"), 1);
    for h in all_hosts() {
        assert_eq!(c.fleet.count(h, "switch"), 0, "{h}");
        assert_eq!(c.fleet.host(h).current, 1, "{h}");
    }
    let r = upgrade(
        &c,
        &UpgradeOptions {
            no_backup: true,
            ..opts(2, 0)
        },
    )
    .await;
    assert!(r.succeeded(), "{:?}", r.state);
    assert_eq!(r.state.snapshot, None);
    // An agents-only upgrade needs no snapshot.
    no_unknown(&c);
}

#[tokio::test]
async fn with_the_relay_every_host_prefetches_through_the_tree_before_the_first_switch() {
    let c = Cluster::new();
    c.config_line("relay_fanout: 1");
    c.config_line("relay_port: 8089");
    // A chain in wave order: m1 → m2 → m3 → a1 → a2 → a3 → a4 → p1. a1 cannot prepare its
    // upgrade directory: its prefetch fails (a warning), a2 falls back past it, and a1's own
    // wave fails it (within the budget of 1).
    c.fleet.behave(AGENTS[0], |b| b.prepare_fails = true);
    let r = tokio::time::timeout(Duration::from_secs(30), upgrade(&c, &opts(2, 1)))
        .await
        .expect("no host waits forever on a parent that is gone");
    no_unknown(&c);
    assert_eq!(r.state.stopped, None);
    assert_eq!(c.word(AGENTS[0]), "failed");
    let first_switch = all_hosts()
        .iter()
        .filter(|h| **h != AGENTS[0])
        .map(|h| at(&c, h, "switch"))
        .min()
        .unwrap();
    let url = |h: &str| format!("http://{h}:8089");
    let expect_first = [
        (MASTERS[0], String::new()),
        (MASTERS[1], url(MASTERS[0])),
        (
            MASTERS[2],
            format!("{} {}", url(MASTERS[1]), url(MASTERS[0])),
        ),
        // a1's parent is m3 (a1 itself never fetched).
        (
            AGENTS[1],
            format!("{} {}", url(MASTERS[2]), url(MASTERS[1])),
        ),
        // a3: its parent, then the nearest ancestor still serving (past the failed a1).
        (AGENTS[2], format!("{} {}", url(AGENTS[1]), url(MASTERS[2]))),
        (AGENTS[3], format!("{} {}", url(AGENTS[2]), url(AGENTS[1]))),
        (PUBLIC[0], format!("{} {}", url(AGENTS[3]), url(AGENTS[2]))),
    ];
    for (h, peers) in expect_first {
        assert_eq!(c.word(h), "ok", "{h}");
        assert_eq!(c.active_of(h), ids(&NEW), "{h}");
        // The prefetch (from peers), before any host switched; then the wave's own fetch
        // (the packages are there already) from bootstrap_url alone.
        assert!(at(&c, h, "fetch") < first_switch, "{h} prefetched late");
        assert_eq!(c.fleet.host(h).fetch_mirrors, [peers, String::new()], "{h}");
    }
    // Hosts with children relayed; the last of the chain and the failed one did not.
    for h in [
        MASTERS[0], MASTERS[1], MASTERS[2], AGENTS[1], AGENTS[2], AGENTS[3],
    ] {
        assert_eq!(c.fleet.host(h).relayed_on, Some(format!("{h}:8089")), "{h}");
        assert!(at(&c, h, "relay") < first_switch, "{h}");
    }
    for h in [AGENTS[0], PUBLIC[0]] {
        assert_eq!(c.fleet.host(h).relayed_on, None, "{h}");
    }
    assert_eq!(c.fleet.count(AGENTS[0], "switch"), 0);
    let warned = c.events.0.lock().unwrap().iter().any(|e| {
        matches!(e, tarmac_events::Event::Notice { message, .. }
            if message.contains(AGENTS[0]) && message.contains("prefetch failed"))
    });
    assert!(warned, "no warning for the failed prefetch");
}
