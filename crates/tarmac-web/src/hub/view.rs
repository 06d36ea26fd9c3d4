//! The aggregated state of the current run that the hub folds entries into, and the
//! lifecycle changes of runs.

use super::*;

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
pub(super) enum Touched {
    None,
    All,
    Hosts(Vec<String>),
}

impl Touched {
    pub(super) fn of_event(e: &Event, rows: &HostRows) -> Touched {
        match e {
            Event::StageStarted { hosts, .. } => {
                if rows.rolling() {
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

    pub(super) fn delta(&self, rows: &HostRows) -> Option<String> {
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
                if !self.rows.rolling() {
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
