//! The event hub: every event of the installer (the same [`tarmac_events::Event`]s the
//! terminal renders) and every run lifecycle change gets a monotonic id, goes into a bounded
//! ring buffer for SSE clients (resumable with `Last-Event-ID`), and is folded into the
//! aggregated state of the current run, so a reloaded page or a second tab starts from a
//! snapshot (`GET /api/v1/state`, which carries the id it is current to) plus the events
//! after it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tarmac_events::{Event, EventSink, HostRows, Level, Summary};
use tarmac_installer::plan::CheckResult;
use tarmac_types::{Role, Stage};
use tokio::sync::watch;
use utoipa::ToSchema;

/// Notices kept in the run state.
const NOTICES_MAX: usize = 100;

pub use tarmac_types::time::now_ms;

/// What an entry of the stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A `tarmac_events::Event`.
    Event,
    /// A [`RunChange`].
    Run,
}

/// One entry of the stream: its id, its JSON and the rows it changed.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: u64,
    pub kind: Kind,
    pub data: Arc<str>,
    /// A [`RowsDelta`]'s JSON: the rows of the server's fold this entry changed, so the
    /// browser shows the server's rows instead of folding events itself.
    pub rows: Option<Arc<str>>,
}

impl Entry {
    /// `{"id":N,"kind":"event","data":{…}}`, with `"rows":{…}` when it changed rows.
    pub fn to_json(&self) -> String {
        let kind = match self.kind {
            Kind::Event => "event",
            Kind::Run => "run",
        };
        match &self.rows {
            Some(rows) => format!(
                "{{\"id\":{},\"kind\":\"{kind}\",\"data\":{},\"rows\":{rows}}}",
                self.id, self.data
            ),
            None => format!(
                "{{\"id\":{},\"kind\":\"{kind}\",\"data\":{}}}",
                self.id, self.data
            ),
        }
    }
}

/// The rows one entry changed, after the server folded it in.
#[derive(Debug, Serialize)]
pub struct RowsDelta<'a> {
    /// The rows replace the whole list (a stage or run starts, a run ends).
    pub all: bool,
    /// Changed rows (`all`: every row), in list order.
    pub rows: Vec<&'a HostRow>,
    pub phase: Option<&'a str>,
    pub fleets: u32,
    /// The run's id (an upgrade's whole id, not its fleet's).
    pub run_id: Option<&'a str>,
}

/// Which rows an entry touches.
enum Touched {
    None,
    All,
    Hosts(Vec<String>),
}

impl Touched {
    fn of_event(e: &Event, rows: &HostRows) -> Touched {
        match e {
            Event::StageStarted { stage, hosts, .. } => {
                if rows.rolling() && is_multi_fleet(*stage) {
                    Touched::Hosts(hosts.iter().map(|h| h.addr.to_string()).collect())
                } else {
                    Touched::All
                }
            }
            Event::StepStarted { host, .. }
            | Event::Output { host, .. }
            | Event::StepFinished { host, .. }
            | Event::HostFinished { host, .. } => Touched::Hosts(vec![host.to_string()]),
            _ => Touched::None,
        }
    }

    fn delta(&self, rows: &HostRows) -> Option<String> {
        let (all, list) = match self {
            Touched::None => return None,
            Touched::All => (true, rows.rows().iter().collect()),
            Touched::Hosts(h) => (false, h.iter().filter_map(|h| rows.get(h)).collect()),
        };
        serde_json::to_string(&RowsDelta {
            all,
            rows: list,
            phase: rows.phase(),
            fleets: rows.fleets(),
            run_id: rows.run_id(),
        })
        .ok()
    }
}

/// A run's lifecycle, as the web server sees it (the engine's events say what happens on
/// the hosts; these say when a run was accepted and how it ended, including errors that
/// happen before any host is contacted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RunChange {
    /// A run was accepted and is starting.
    Started {
        #[schema(value_type = String)]
        stage: Stage,
        /// Hosts selected (`null`: every host of config.yaml).
        hosts: Option<Vec<String>>,
        retry: bool,
        /// For a retry: the run whose failed hosts are re-run (its other hosts keep their result).
        base_run_id: Option<String>,
        started_unix_ms: u64,
        /// Upgrade and rollback: every host the run may touch, shown `pending` until its wave
        /// starts (those runs start one fleet per wave, each with only the wave's hosts).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        roster: Vec<RosterHost>,
    },
    /// The run ended: with a summary when the stage ran, with an error when it could not.
    Finished {
        #[schema(value_type = String)]
        stage: Stage,
        ok: bool,
        #[schema(value_type = Option<Object>)]
        summary: Option<Summary>,
        error: Option<String>,
        /// preflight: every host's check results.
        #[schema(value_type = Option<Object>)]
        checks: Option<BTreeMap<String, Vec<CheckResult>>>,
        /// status: the audit report; genconf: what genconf wrote.
        #[schema(value_type = Option<Object>)]
        report: Option<Json>,
        finished_unix_ms: u64,
    },
}

/// A host of a run's roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RosterHost {
    pub host: String,
    #[schema(value_type = Option<String>)]
    pub role: Option<Role>,
}

pub use tarmac_events::HostRow;
pub use tarmac_events::rows::{is_multi_fleet, split_fleet_run_id};

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct NoticeRow {
    #[schema(value_type = String)]
    pub level: Level,
    pub message: String,
    pub unix_ms: u64,
}

/// The aggregated state of the current (or last) run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct RunView {
    /// idle (no run since the server started), running, finished, error.
    pub state: String,
    #[schema(value_type = Option<String>)]
    pub stage: Option<Stage>,
    pub run_id: Option<String>,
    pub retry: bool,
    /// For a retry: the run whose failed hosts are re-run.
    pub base_run_id: Option<String>,
    pub started_unix_ms: Option<u64>,
    pub finished_unix_ms: Option<u64>,
    #[schema(value_type = Option<Object>)]
    pub summary: Option<Summary>,
    /// Why the run could not start or stopped early.
    pub error: Option<String>,
    /// Every host of the run, in config order (masters, agents, public agents), and for
    /// upgrade and rollback the step of the fleet running now (`phase`) and how many fleets
    /// the run has started (`fleets`): the fold shared with the terminal.
    #[serde(flatten)]
    pub rows: HostRows,
    #[schema(value_type = Object)]
    pub checks: BTreeMap<String, Vec<CheckResult>>,
    #[schema(value_type = Option<Object>)]
    pub report: Option<Json>,
    pub notices: Vec<NoticeRow>,
}

impl RunView {
    pub fn idle() -> Self {
        RunView {
            state: "idle".into(),
            ..Default::default()
        }
    }

    /// This view is of an upgrade or rollback started by this server.
    fn multi_fleet(&self) -> bool {
        self.state == "running" && self.rows.rolling()
    }

    /// Fold one engine event in.
    pub fn apply(&mut self, e: &Event, now: u64) {
        self.rows.apply_at(e, now);
        match e {
            Event::StageStarted { stage, .. } => {
                self.run_id = self.rows.run_id().map(str::to_owned);
                if !(self.rows.rolling() && is_multi_fleet(*stage)) {
                    self.stage = Some(*stage);
                }
            }
            // A multi-fleet run's summary is the whole run's, set when it finishes.
            Event::StageFinished { summary, .. } if !self.multi_fleet() => {
                self.summary = Some(summary.clone());
            }
            Event::Notice { level, message } => {
                self.notices.push(NoticeRow {
                    level: *level,
                    message: message.clone(),
                    unix_ms: now,
                });
                if self.notices.len() > NOTICES_MAX {
                    self.notices.remove(0);
                }
            }
            _ => {}
        }
    }

    /// Fold a lifecycle change in.
    pub fn apply_run(&mut self, c: &RunChange) {
        match c {
            RunChange::Started {
                stage,
                retry,
                base_run_id,
                started_unix_ms,
                roster,
                ..
            } => {
                *self = RunView {
                    state: "running".into(),
                    stage: Some(*stage),
                    retry: *retry,
                    base_run_id: base_run_id.clone(),
                    started_unix_ms: Some(*started_unix_ms),
                    ..Default::default()
                };
                self.rows
                    .begin_run(*stage, roster.iter().map(|h| (h.host.as_str(), h.role)));
            }
            RunChange::Finished {
                ok: _,
                summary,
                error,
                checks,
                report,
                finished_unix_ms,
                ..
            } => {
                self.state = if error.is_some() {
                    "error".into()
                } else {
                    "finished".into()
                };
                self.finished_unix_ms = Some(*finished_unix_ms);
                if summary.is_some() {
                    self.summary = summary.clone();
                }
                self.error = error.clone();
                if let Some(c) = checks {
                    self.checks = c.clone();
                }
                self.report = report.clone();
                self.rows.finish_run();
            }
        }
    }
}

/// Result of asking for the entries after an id.
#[derive(Debug)]
pub enum Since {
    Entries(Vec<Entry>),
    /// Some of the entries asked for are no longer buffered (or the id is from another
    /// server): the client must reload the snapshot. `seq` is the current id.
    Gap {
        seq: u64,
    },
}

struct Inner {
    seq: u64,
    ring: VecDeque<Entry>,
    view: RunView,
}

pub struct Hub {
    inner: Mutex<Inner>,
    tx: watch::Sender<u64>,
    capacity: usize,
}

impl Hub {
    pub fn new(capacity: usize) -> Arc<Hub> {
        let (tx, _) = watch::channel(0);
        Arc::new(Hub {
            inner: Mutex::new(Inner {
                seq: 0,
                ring: VecDeque::with_capacity(capacity.min(4096)),
                view: RunView::idle(),
            }),
            tx,
            capacity: capacity.max(1),
        })
    }

    fn push(&self, kind: Kind, data: String, fold: impl FnOnce(&mut RunView) -> Touched) {
        let seq = {
            let mut g = self.inner.lock().expect("hub poisoned");
            g.seq += 1;
            let id = g.seq;
            let rows = fold(&mut g.view).delta(&g.view.rows).map(Arc::from);
            if g.ring.len() == self.capacity {
                g.ring.pop_front();
            }
            g.ring.push_back(Entry {
                id,
                kind,
                data: data.into(),
                rows,
            });
            id
        };
        self.tx.send_replace(seq);
    }

    /// Record a lifecycle change.
    pub fn run_change(&self, c: RunChange) {
        let data = serde_json::to_string(&c).unwrap_or_else(|_| "{}".into());
        self.push(Kind::Run, data, |v| {
            v.apply_run(&c);
            Touched::All
        });
    }

    /// The current state and the id it includes every entry up to.
    pub fn snapshot(&self) -> (u64, RunView) {
        let g = self.inner.lock().expect("hub poisoned");
        (g.seq, g.view.clone())
    }

    pub fn seq(&self) -> u64 {
        self.inner.lock().expect("hub poisoned").seq
    }

    /// Entries with an id greater than `after`.
    pub fn since(&self, after: u64) -> Since {
        let g = self.inner.lock().expect("hub poisoned");
        if after > g.seq {
            return Since::Gap { seq: g.seq };
        }
        if after == g.seq {
            return Since::Entries(Vec::new());
        }
        let first = g.ring.front().map_or(g.seq + 1, |e| e.id);
        if after + 1 < first {
            return Since::Gap { seq: g.seq };
        }
        let skip = (after + 1 - first) as usize;
        Since::Entries(g.ring.iter().skip(skip).cloned().collect())
    }

    /// Wakes up whenever an entry is added.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}

impl EventSink for Hub {
    fn emit(&self, event: Event) {
        let data = match serde_json::to_string(&event) {
            Ok(d) => d,
            Err(_) => return,
        };
        let now = now_ms();
        self.push(Kind::Event, data, |v| {
            v.apply(&event, now);
            Touched::of_event(&event, &v.rows)
        });
    }
}

#[cfg(test)]
mod tests {
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
            (phase, fleets, run_id) =
                (d["phase"].clone(), d["fleets"].clone(), d["run_id"].clone());
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
}
