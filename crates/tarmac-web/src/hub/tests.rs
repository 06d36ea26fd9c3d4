use super::*;
use tarmac_events::{HostRef, Outcome};

fn h(s: &str) -> tarmac_types::HostAddr {
    s.parse().unwrap()
}

#[test]
fn folds_events_into_rows() {
    let hub = Hub::new(100);
    hub.run_change(RunChange::Started {
        stage: Stage::Deploy,
        hosts: None,
        retry: false,
        base_run_id: None,
        started_unix_ms: 1,
        roster: Vec::new(),
    });
    hub.emit(Event::StageStarted {
        run_id: "deploy-1".into(),
        stage: Stage::Deploy,
        hosts: vec![
            HostRef {
                addr: h("10.0.0.1"),
                role: Some(Role::Master),
            },
            HostRef {
                addr: h("10.0.0.2"),
                role: Some(Role::Agent),
            },
        ],
    });
    hub.emit(Event::StepStarted {
        host: h("10.0.0.1"),
        step: "install".into(),
    });
    hub.emit(Event::Output {
        host: h("10.0.0.1"),
        step: "install".into(),
        stream: tarmac_events::Stream::Stdout,
        line: "hello".into(),
    });
    hub.emit(Event::StepFinished {
        host: h("10.0.0.2"),
        step: "connect".into(),
        outcome: Outcome::Unreachable {
            message: "no route".into(),
        },
        duration_ms: 3,
    });
    hub.emit(Event::HostFinished {
        host: h("10.0.0.2"),
        outcome: Outcome::Unreachable {
            message: "no route".into(),
        },
        duration_ms: 3,
    });
    let (seq, v) = hub.snapshot();
    assert_eq!(seq, 6);
    assert_eq!(v.run_id.as_deref(), Some("deploy-1"));
    assert_eq!(v.rows.rows()[0].state.as_str(), "running");
    assert_eq!(v.rows.rows()[0].last_line.as_deref(), Some("hello"));
    assert_eq!(v.rows.rows()[1].state.as_str(), "unreachable");
    assert_eq!(v.rows.rows()[1].failed_step.as_deref(), Some("connect"));
    assert_eq!(v.rows.rows()[1].message.as_deref(), Some("no route"));
    hub.run_change(RunChange::Finished {
        stage: Stage::Deploy,
        ok: false,
        summary: None,
        error: Some("stopped".into()),
        checks: None,
        report: None,
        finished_unix_ms: 9,
    });
    let (_, v) = hub.snapshot();
    assert_eq!(v.state, "error");
    assert_eq!(v.rows.rows()[0].state.as_str(), "cancelled");
}

fn started(hub: &Hub, stage: Stage, roster: &[(&str, Role)]) {
    hub.run_change(RunChange::Started {
        stage,
        hosts: None,
        retry: false,
        base_run_id: None,
        started_unix_ms: 1,
        roster: roster
            .iter()
            .map(|(a, r)| RosterHost {
                host: (*a).to_owned(),
                role: Some(*r),
            })
            .collect(),
    });
}

/// One fleet of an upgrade: every host runs `step` and ends with its outcome.
fn fleet(hub: &Hub, stage: Stage, run_id: &str, hosts: &[(&str, Outcome)]) {
    hub.emit(Event::StageStarted {
        run_id: run_id.into(),
        stage,
        hosts: hosts
            .iter()
            .map(|(a, _)| HostRef {
                addr: h(a),
                role: None,
            })
            .collect(),
    });
    let mut summary = Summary::default();
    for (a, o) in hosts {
        hub.emit(Event::StepStarted {
            host: h(a),
            step: "check".into(),
        });
        if !o.is_success() {
            hub.emit(Event::StepFinished {
                host: h(a),
                step: "fetch".into(),
                outcome: o.clone(),
                duration_ms: 1,
            });
        }
        hub.emit(Event::HostFinished {
            host: h(a),
            outcome: o.clone(),
            duration_ms: 5,
        });
        summary.add(o);
    }
    hub.emit(Event::StageFinished {
        run_id: run_id.into(),
        stage,
        summary,
        duration_ms: 5,
    });
}

/// The rows a browser that saw every entry holds (app.js applyRows), and the snapshot's.
fn replayed_and_snapshot(hub: &Hub) -> (Json, Json) {
    let Since::Entries(entries) = hub.since(0) else {
        panic!("gap")
    };
    let mut rows: Vec<Json> = Vec::new();
    let (mut phase, mut fleets, mut run_id) = (Json::Null, Json::Null, Json::Null);
    for en in entries {
        let en: Json = serde_json::from_str(&en.to_json()).unwrap();
        let Some(d) = en.get("rows") else { continue };
        if d["all"] == true {
            rows.clear();
        }
        for r in d["rows"].as_array().unwrap() {
            match rows.iter_mut().find(|b| b["host"] == r["host"]) {
                Some(b) => *b = r.clone(),
                None => rows.push(r.clone()),
            }
        }
        (phase, fleets, run_id) = (d["phase"].clone(), d["fleets"].clone(), d["run_id"].clone());
    }
    let v = serde_json::to_value(hub.snapshot().1).unwrap();
    (
        serde_json::json!({"hosts": rows, "phase": phase, "fleets": fleets, "run_id": run_id}),
        serde_json::json!({"hosts": v["hosts"], "phase": v["phase"], "fleets": v["fleets"], "run_id": v["run_id"]}),
    )
}

fn statuses(hub: &Hub) -> Vec<(String, String)> {
    let (replayed, snapshot) = replayed_and_snapshot(hub);
    assert_eq!(
        replayed, snapshot,
        "the rows streamed to the browser are the snapshot's"
    );
    hub.snapshot()
        .1
        .rows
        .rows()
        .iter()
        .map(|r| (r.host.clone(), r.state.to_string()))
        .collect()
}

fn st(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[test]
fn upgrade_rows_keep_each_hosts_latest_state_across_fleets() {
    let hub = Hub::new(1000);
    started(
        &hub,
        Stage::Upgrade,
        &[
            ("10.0.0.1", Role::Master),
            ("10.0.0.2", Role::Master),
            ("10.0.0.3", Role::Agent),
            ("10.0.0.4", Role::Agent),
        ],
    );
    let all_pending = st(&[
        ("10.0.0.1", "pending"),
        ("10.0.0.2", "pending"),
        ("10.0.0.3", "pending"),
        ("10.0.0.4", "pending"),
    ]);
    assert_eq!(statuses(&hub), all_pending);
    assert_eq!(hub.snapshot().1.rows.rows()[2].role, Some(Role::Agent));
    let run = "upgrade-1700000000-1f2e";
    let u = Stage::Upgrade;
    fleet(
        &hub,
        u,
        &format!("{run}-001-switch"),
        &[("10.0.0.1", Outcome::Ok)],
    );
    // The gate checks every master: the untouched one stays pending.
    fleet(
        &hub,
        u,
        &format!("{run}-002-cluster-checks"),
        &[("10.0.0.1", Outcome::Ok), ("10.0.0.2", Outcome::Ok)],
    );
    fleet(
        &hub,
        u,
        &format!("{run}-003-confirm"),
        &[("10.0.0.1", Outcome::Ok)],
    );
    assert_eq!(
        statuses(&hub),
        st(&[
            ("10.0.0.1", "ok"),
            ("10.0.0.2", "pending"),
            ("10.0.0.3", "pending"),
            ("10.0.0.4", "pending"),
        ])
    );
    let v = hub.snapshot().1;
    assert_eq!(v.run_id.as_deref(), Some(run));
    assert_eq!(v.rows.phase(), Some("confirm"));
    assert_eq!(v.rows.fleets(), 3);
    assert_eq!(
        v.rows.rows()[1].step.as_deref(),
        Some("cluster-checks: check")
    );
    // Wave 2 runs: the host switched in wave 1 stays ok.
    hub.emit(Event::StageStarted {
        run_id: format!("{run}-004-switch"),
        stage: u,
        hosts: vec![HostRef {
            addr: h("10.0.0.2"),
            role: Some(Role::Master),
        }],
    });
    hub.emit(Event::StepStarted {
        host: h("10.0.0.2"),
        step: "fetch".into(),
    });
    assert_eq!(
        statuses(&hub),
        st(&[
            ("10.0.0.1", "ok"),
            ("10.0.0.2", "running"),
            ("10.0.0.3", "pending"),
            ("10.0.0.4", "pending"),
        ])
    );
    assert_eq!(
        hub.snapshot().1.rows.rows()[1].step.as_deref(),
        Some("fetch")
    );
    hub.emit(Event::HostFinished {
        host: h("10.0.0.2"),
        outcome: Outcome::Ok,
        duration_ms: 5,
    });
    fleet(
        &hub,
        u,
        &format!("{run}-005-cluster-checks"),
        &[("10.0.0.1", Outcome::Ok), ("10.0.0.2", Outcome::Ok)],
    );
    fleet(
        &hub,
        u,
        &format!("{run}-006-confirm"),
        &[("10.0.0.2", Outcome::Ok)],
    );
    let boom = Outcome::Failed {
        exit_code: Some(1),
        signal: None,
        message: "no space left".into(),
    };
    fleet(
        &hub,
        u,
        &format!("{run}-007-switch"),
        &[("10.0.0.3", Outcome::Ok), ("10.0.0.4", boom)],
    );
    fleet(
        &hub,
        u,
        &format!("{run}-008-confirm"),
        &[("10.0.0.3", Outcome::Ok)],
    );
    // A fleet's summary is not the run's.
    assert_eq!(hub.snapshot().1.summary, None);
    hub.run_change(RunChange::Finished {
        stage: u,
        ok: false,
        summary: None,
        error: None,
        checks: None,
        report: None,
        finished_unix_ms: 9,
    });
    let v = hub.snapshot().1;
    assert_eq!(
        statuses(&hub),
        st(&[
            ("10.0.0.1", "ok"),
            ("10.0.0.2", "ok"),
            ("10.0.0.3", "ok"),
            ("10.0.0.4", "failed"),
        ])
    );
    assert_eq!(v.stage, Some(Stage::Upgrade));
    assert_eq!(v.state, "finished");
    assert_eq!(v.rows.rows()[3].failed_step.as_deref(), Some("fetch"));
    assert_eq!(
        v.rows.rows()[3].message.as_deref(),
        Some("exit 1: no space left")
    );
    assert_eq!(v.rows.phase(), None);
}

#[test]
fn rollback_keeps_its_stage_and_marks_reverted_and_untouched_hosts() {
    let hub = Hub::new(1000);
    started(
        &hub,
        Stage::Rollback,
        &[
            ("10.0.0.1", Role::Master),
            ("10.0.0.2", Role::Master),
            ("10.0.0.3", Role::Agent),
        ],
    );
    let run = "rollback-1700000000-77";
    // Fleets may still say `upgrade` (older installers) or `rollback`.
    fleet(
        &hub,
        Stage::Upgrade,
        &format!("{run}-001-rollback"),
        &[("10.0.0.1", Outcome::Ok)],
    );
    assert_eq!(hub.snapshot().1.stage, Some(Stage::Rollback));
    let bad = Outcome::Failed {
        exit_code: None,
        signal: None,
        message: "etcd: no quorum".into(),
    };
    fleet(
        &hub,
        Stage::Rollback,
        &format!("{run}-002-cluster-checks"),
        &[("10.0.0.1", Outcome::Ok), ("10.0.0.2", bad)],
    );
    fleet(
        &hub,
        Stage::Rollback,
        &format!("{run}-003-revert"),
        &[("10.0.0.1", Outcome::Ok)],
    );
    hub.run_change(RunChange::Finished {
        stage: Stage::Rollback,
        ok: false,
        summary: None,
        error: None,
        checks: None,
        report: None,
        finished_unix_ms: 9,
    });
    let v = hub.snapshot().1;
    assert_eq!(
        statuses(&hub),
        st(&[
            ("10.0.0.1", "reverted"),
            ("10.0.0.2", "failed"),
            ("10.0.0.3", "untouched"),
        ])
    );
    assert_eq!(v.stage, Some(Stage::Rollback));
    assert_eq!(v.run_id.as_deref(), Some(run));
    assert_eq!(v.rows.rows()[1].message.as_deref(), Some("etcd: no quorum"));
}

#[test]
fn resume_and_gaps() {
    let hub = Hub::new(3);
    for _ in 0..5 {
        hub.emit(Event::Notice {
            level: Level::Info,
            message: "x".into(),
        });
    }
    // Ring holds ids 3, 4, 5.
    match hub.since(2) {
        Since::Entries(e) => {
            assert_eq!(e.iter().map(|e| e.id).collect::<Vec<_>>(), vec![3, 4, 5])
        }
        Since::Gap { .. } => panic!("2 is resumable"),
    }
    match hub.since(4) {
        Since::Entries(e) => assert_eq!(e.iter().map(|e| e.id).collect::<Vec<_>>(), vec![5]),
        Since::Gap { .. } => panic!("4 is resumable"),
    }
    assert!(matches!(hub.since(5), Since::Entries(e) if e.is_empty()));
    assert!(matches!(hub.since(1), Since::Gap { seq: 5 }));
    assert!(matches!(hub.since(99), Since::Gap { seq: 5 }));
    let e = match hub.since(4) {
        Since::Entries(e) => e,
        Since::Gap { .. } => unreachable!(),
    };
    assert_eq!(
        e[0].to_json(),
        r#"{"id":5,"kind":"event","data":{"type":"notice","level":"info","message":"x"}}"#
    );
}
