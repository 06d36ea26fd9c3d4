//! The one fold from [`Event`]s to per-host rows, shared by the terminal renderer and the
//! web server (whose API hands the rows to the browser).

use std::collections::{HashMap, HashSet, VecDeque};

use serde::Serialize;
use tarmac_types::{Role, Stage};

use crate::{Event, HostState, Outcome, Phase};

/// Longest output line kept as a row's `last_line`.
pub const LAST_LINE_MAX: usize = 400;
/// Output lines kept per row for failure reports (untruncated).
pub const TAIL_LINES: usize = 5;

/// What a row says when a revert brought a host back.
pub const REVERTED_MESSAGE: &str =
    "switched, then reverted to its previous generation: the cluster checks failed";

/// Runs made of several fleets in sequence (one per wave and step): their per-host rows
/// keep each host's latest state across the fleets instead of starting over. Once such a run
/// started, every later fleet of it (an upgrade's snapshot, a remove-hosts' deploy and
/// postflight) is one more step of the same run.
pub fn is_multi_fleet(stage: Stage) -> bool {
    matches!(
        stage,
        Stage::Upgrade
            | Stage::Rollback
            | Stage::Backup
            | Stage::Restore
            | Stage::RemoveHosts
            | Stage::ReplaceMaster
    )
}

/// The fleet run ids of an upgrade or rollback are `<run id>-<NNN>-<step>` (e.g.
/// `upgrade-1700000000-1f2e-003-cluster-checks`): the whole run's id (its log directory
/// under `genconf/state/logs/`) and the step, or `None` for any other id.
pub fn split_fleet_run_id(id: &str) -> Option<(&str, &str)> {
    let b = id.as_bytes();
    // The last `-<3+ digits>-` followed by a step name of lowercase letters and dashes.
    let mut found = None;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'-' {
            let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            let j = i + 1 + digits;
            if digits >= 3
                && j + 1 < b.len()
                && b[j] == b'-'
                && b[j + 1..]
                    .iter()
                    .all(|c| c.is_ascii_lowercase() || *c == b'-')
                && b[j + 1].is_ascii_lowercase()
                && i > 0
            {
                found = Some((i, j));
            }
        }
        i += 1;
    }
    found.map(|(i, j)| (&id[..i], &id[j + 1..]))
}

/// The fleet run id of an upgrade or rollback step: `<run id>-<NNN>-<phase>`.
pub fn fleet_run_id(run_id: &str, n: u32, phase: Phase) -> String {
    format!("{run_id}-{n:03}-{phase}")
}

/// Why a host did not succeed, for a row (`None` when it did).
pub fn describe(o: &Outcome) -> Option<String> {
    match o {
        Outcome::Ok | Outcome::Unchanged | Outcome::Cancelled => None,
        Outcome::Failed {
            exit_code: Some(c),
            message,
            ..
        } => Some(format!("exit {c}: {}", message.trim())),
        Outcome::Failed {
            signal: Some(s),
            message,
            ..
        } => Some(format!("signal {s}: {}", message.trim())),
        Outcome::Failed { message, .. } => Some(message.trim().to_owned()),
        Outcome::Unreachable { message } => Some(message.clone()),
        Outcome::TimedOut { after_ms } => {
            Some(format!("timed out after {:.1}s", *after_ms as f64 / 1000.0))
        }
        Outcome::Skipped { reason } => Some(reason.clone()),
    }
}

/// One host's row.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct HostRow {
    pub host: String,
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>))]
    pub role: Option<Role>,
    /// The step running now, or the last one that ran.
    pub step: Option<String>,
    /// pending, running, ok, unchanged, failed, unreachable, timed-out, cancelled, skipped;
    /// upgrade and rollback also `reverted` (switched, then brought back) and `untouched`.
    #[serde(rename = "status")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub state: HostState,
    pub started_unix_ms: Option<u64>,
    pub duration_ms: Option<u64>,
    pub last_line: Option<String>,
    /// The step that failed.
    pub failed_step: Option<String>,
    /// Why the host did not succeed.
    pub message: Option<String>,
    /// How the host ended (the last `host_finished` that counted).
    #[serde(skip)]
    pub outcome: Option<Outcome>,
    /// The last [`TAIL_LINES`] output lines, untruncated.
    #[serde(skip)]
    pub tail: VecDeque<String>,
}

/// Per-host rows of a run, folded from its events.
///
/// A plain stage starts over at each `stage_started`. A rolling run (an upgrade or a
/// rollback, begun with [`HostRows::begin_run`]) is several fleets in a row: rows keep each
/// host's latest state across them, a gate fleet (cluster checks) does not make an
/// untouched host `ok`, a revert fleet marks its hosts `reverted`, and the run's end
/// ([`HostRows::finish_run`]) leaves hosts no wave reached `untouched`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct HostRows {
    /// Every host of the run, in the order it was first named (config order).
    hosts: Vec<HostRow>,
    /// Upgrade and rollback: the step of the fleet running now (inspect, switch, rollback,
    /// cluster-checks, confirm, revert) and how many fleets the run has started.
    phase: Option<String>,
    fleets: u32,
    #[serde(skip)]
    index: HashMap<String, usize>,
    /// Hosts of the current gate fleet that no wave has touched yet.
    #[serde(skip)]
    gate: HashSet<String>,
    #[serde(skip)]
    rolling: bool,
    /// The whole run's id (a rolling run's fleets carry `<run id>-<NNN>-<phase>`).
    #[serde(skip)]
    run_id: Option<String>,
}

impl HostRows {
    pub fn new() -> Self {
        Self::default()
    }

    /// A run begins: rows of `roster` (host, role) start `pending`; an upgrade or rollback
    /// keeps its rows across its fleets.
    pub fn begin_run<'a>(
        &mut self,
        stage: Stage,
        roster: impl IntoIterator<Item = (&'a str, Option<Role>)>,
    ) {
        *self = HostRows {
            rolling: is_multi_fleet(stage),
            ..Default::default()
        };
        for (h, role) in roster {
            self.row(h).role = role;
        }
    }

    /// The run ended: hosts still pending or running did not finish; a rolling run that
    /// stopped early leaves its later waves untouched.
    pub fn finish_run(&mut self) {
        let rolling = self.rolling;
        self.rolling = false;
        self.phase = None;
        self.gate.clear();
        for r in &mut self.hosts {
            if rolling && r.state == HostState::Pending {
                r.state = HostState::Untouched;
            } else if !r.state.is_done() {
                r.state = HostState::Cancelled;
            }
        }
    }

    /// Rows in first-named order.
    pub fn rows(&self) -> &[HostRow] {
        &self.hosts
    }

    pub fn get(&self, host: &str) -> Option<&HostRow> {
        self.index.get(host).map(|i| &self.hosts[*i])
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// A rolling run (upgrade, rollback) is under way.
    pub fn rolling(&self) -> bool {
        self.rolling
    }

    /// The step of the rolling run's current fleet.
    pub fn phase(&self) -> Option<&str> {
        self.phase.as_deref()
    }

    /// Fleets the rolling run has started.
    pub fn fleets(&self) -> u32 {
        self.fleets
    }

    /// The run's id as the last `stage_started` gave it (a rolling run's whole id).
    pub fn run_id(&self) -> Option<&str> {
        self.run_id.as_deref()
    }

    fn row(&mut self, host: &str) -> &mut HostRow {
        let i = match self.index.get(host) {
            Some(i) => *i,
            None => {
                self.hosts.push(HostRow {
                    host: host.to_owned(),
                    ..Default::default()
                });
                self.index.insert(host.to_owned(), self.hosts.len() - 1);
                self.hosts.len() - 1
            }
        };
        &mut self.hosts[i]
    }

    /// Fold one event in, stamped with the time now.
    pub fn apply(&mut self, e: &Event) {
        self.apply_at(e, tarmac_types::time::now_ms());
    }

    /// Fold one event in; `now` (unix ms) stamps a row's start.
    pub fn apply_at(&mut self, e: &Event, now: u64) {
        match e {
            Event::StageStarted {
                run_id,
                stage,
                hosts,
            } if self.rolling => {
                // One more fleet: rows keep their state, the run keeps its whole id.
                let (whole, step) = split_fleet_run_id(run_id).unwrap_or((run_id, ""));
                self.run_id = Some(whole.to_owned());
                self.phase = (!step.is_empty()).then(|| step.to_owned());
                self.fleets += 1;
                self.gate.clear();
                let gate = step.parse::<Phase>().is_ok_and(Phase::is_gate);
                for h in hosts {
                    let key = h.addr.to_string();
                    let r = self.row(&key);
                    r.role = h.role.or(r.role);
                    if gate && r.state == HostState::Pending {
                        self.gate.insert(key);
                    } else if !gate {
                        // The host is part of this step: its earlier failure (if any) is history.
                        r.failed_step = None;
                        r.message = None;
                    }
                }
            }
            Event::StageStarted { run_id, hosts, .. } => {
                self.run_id = Some(run_id.clone());
                self.hosts.clear();
                self.index.clear();
                self.gate.clear();
                for h in hosts {
                    self.row(&h.addr.to_string()).role = h.role;
                }
            }
            Event::StepStarted { host, step } => {
                let key = host.to_string();
                let gated = self.gate.contains(&key);
                let phase = self.phase.clone();
                let r = self.row(&key);
                r.step = Some(match (&phase, gated) {
                    (Some(p), true) => format!("{p}: {step}"),
                    _ => step.clone(),
                });
                if r.state == HostState::Pending && !gated {
                    r.state = HostState::Running;
                    r.started_unix_ms = Some(now);
                }
                r.started_unix_ms.get_or_insert(now);
            }
            Event::Output { host, line, .. } => {
                let r = self.row(&host.to_string());
                let mut l: String = line.chars().take(LAST_LINE_MAX).collect();
                if l.len() < line.len() {
                    l.push('…');
                }
                r.last_line = Some(l);
                r.tail.push_back(line.clone());
                if r.tail.len() > TAIL_LINES {
                    r.tail.pop_front();
                }
            }
            Event::StepFinished {
                host,
                step,
                outcome,
                ..
            } if !outcome.is_success() => {
                self.row(&host.to_string())
                    .failed_step
                    .get_or_insert_with(|| step.clone());
            }
            Event::HostFinished {
                host,
                outcome,
                duration_ms,
            } => {
                let key = host.to_string();
                let gated = self.gate.contains(&key);
                let reverting = self.phase.as_deref() == Some(Phase::Revert.as_str());
                let r = self.row(&key);
                if gated && outcome.is_success() {
                    // An untouched host passed the cluster checks: still untouched.
                    return;
                }
                let reverted = reverting && *outcome == Outcome::Ok;
                r.state = if reverted {
                    HostState::Reverted
                } else {
                    HostState::from(outcome)
                };
                r.duration_ms = Some(*duration_ms);
                r.message = if reverted {
                    Some(REVERTED_MESSAGE.into())
                } else {
                    describe(outcome)
                };
                r.outcome = Some(outcome.clone());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_run_ids() {
        assert_eq!(
            split_fleet_run_id("upgrade-1700000000-1f2e-003-cluster-checks"),
            Some(("upgrade-1700000000-1f2e", "cluster-checks"))
        );
        assert_eq!(
            split_fleet_run_id("rollback-1700000000-123-012-rollback"),
            Some(("rollback-1700000000-123", "rollback"))
        );
        assert_eq!(split_fleet_run_id("deploy-1700000000-1f2e"), None);
        assert_eq!(split_fleet_run_id("upgrade-1700000000-123"), None);
        assert_eq!(split_fleet_run_id("-001-switch"), None);
        assert_eq!(split_fleet_run_id("up-001-"), None);
        for p in Phase::ALL {
            let id = fleet_run_id("upgrade-1700000000-1f2e", 7, p);
            let (whole, step) = split_fleet_run_id(&id).unwrap();
            assert_eq!(whole, "upgrade-1700000000-1f2e");
            assert_eq!(step.parse::<Phase>(), Ok(p));
        }
    }

    #[test]
    fn a_plain_stage_starts_over_and_keeps_a_tail() {
        let a: tarmac_types::HostAddr = "10.0.0.1".parse().unwrap();
        let mut rows = HostRows::new();
        let start = Event::StageStarted {
            run_id: "deploy-1".into(),
            stage: Stage::Deploy,
            hosts: vec![crate::HostRef {
                addr: a.clone(),
                role: Some(Role::Master),
            }],
        };
        rows.apply_at(&start, 1);
        for i in 0..7 {
            rows.apply_at(
                &Event::Output {
                    host: a.clone(),
                    step: "install".into(),
                    stream: crate::Stream::Stdout,
                    line: format!("line {i}"),
                },
                2,
            );
        }
        let r = rows.get("10.0.0.1").unwrap();
        assert_eq!(r.tail.len(), TAIL_LINES);
        assert_eq!(r.tail.back().map(String::as_str), Some("line 6"));
        assert_eq!(r.last_line.as_deref(), Some("line 6"));
        assert_eq!(r.state, HostState::Pending);
        rows.apply_at(
            &Event::HostFinished {
                host: a.clone(),
                outcome: Outcome::Ok,
                duration_ms: 3,
            },
            3,
        );
        assert_eq!(rows.get("10.0.0.1").unwrap().state, HostState::Ok);
        rows.apply_at(&start, 4);
        assert_eq!(rows.get("10.0.0.1").unwrap().state, HostState::Pending);
        assert!(rows.get("10.0.0.1").unwrap().tail.is_empty());
        assert_eq!(
            serde_json::to_value(rows.rows()).unwrap(),
            serde_json::json!([{"host":"10.0.0.1","role":"master","step":null,"status":"pending",
                "started_unix_ms":null,"duration_ms":null,"last_line":null,"failed_step":null,"message":null}])
        );
    }
}
