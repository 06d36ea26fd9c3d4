//! The run journal: per run, per host, what happened. It is fed by the same event stream
//! the terminal and web UI render, and written atomically under `genconf/state/runs/`.
//! `--retry-failed` reads the last journal of a stage to pick the hosts that did not succeed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tarmac_events::{Event, EventSink, Outcome, Summary};
use tarmac_types::{HostAddr, Role, Stage};

use tarmac_fsx::write_atomic_in_private_dir as write_atomic;

/// The last lines of output kept per host in the journal (the full log is in the log file).
const TAIL_LINES: usize = 20;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub role: Option<Role>,
    /// The step running now, or the last one that ran.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub outcome: Option<Outcome>,
    /// The step that failed, when the host failed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub failed_step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tail: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub stage: Stage,
    pub started_unix: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub finished_unix: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub summary: Option<Summary>,
    pub hosts: BTreeMap<HostAddr, HostRecord>,
}

impl RunRecord {
    /// Hosts that did not succeed (failed, unreachable, timed out, cancelled, skipped or unfinished).
    pub fn unsuccessful_hosts(&self) -> Vec<HostAddr> {
        self.hosts
            .iter()
            .filter(|(_, r)| !r.outcome.as_ref().is_some_and(Outcome::is_success))
            .map(|(h, _)| h.clone())
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot write the run journal `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the run journal `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the run journal `{path}` is not valid JSON: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("no earlier `{stage}` run is recorded in `{dir}`")]
    NoPreviousRun { stage: Stage, dir: PathBuf },
}

pub use tarmac_types::time::now_unix;

/// A new run id: time-ordered and unique enough for one operator machine.
pub fn new_run_id(stage: Stage) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{:x}",
        stage.as_str(),
        now_unix(),
        (nanos as u64) ^ u64::from(std::process::id())
    )
}

/// Records events into a [`RunRecord`] and persists it (throttled, always at stage end).
pub struct Journal {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    record: RunRecord,
    last_write: Option<Instant>,
    error: Option<String>,
}

impl Journal {
    /// Start a journal for a run under `<state_dir>/runs/`.
    pub fn new(
        state_dir: &Path,
        run_id: &str,
        stage: Stage,
        hosts: &[(HostAddr, Option<Role>)],
    ) -> Self {
        let record = RunRecord {
            run_id: run_id.to_owned(),
            stage,
            started_unix: now_unix(),
            finished_unix: None,
            summary: None,
            hosts: hosts
                .iter()
                .map(|(h, role)| {
                    (
                        h.clone(),
                        HostRecord {
                            role: *role,
                            ..Default::default()
                        },
                    )
                })
                .collect(),
        };
        Journal {
            dir: state_dir.join("runs"),
            inner: Mutex::new(Inner {
                record,
                last_write: None,
                error: None,
            }),
        }
    }

    pub fn path(&self) -> PathBuf {
        let run_id = self
            .inner
            .lock()
            .map(|i| i.record.run_id.clone())
            .unwrap_or_default();
        self.dir.join(format!("{run_id}.json"))
    }

    pub fn snapshot(&self) -> RunRecord {
        self.inner.lock().expect("journal poisoned").record.clone()
    }

    /// Write now. Also records this run as the latest of its stage.
    pub fn flush(&self) -> Result<(), JournalError> {
        let mut inner = self.inner.lock().expect("journal poisoned");
        Self::write(&self.dir, &mut inner)
    }

    /// The first write error seen while recording events, if any.
    pub fn error(&self) -> Option<String> {
        self.inner.lock().ok().and_then(|i| i.error.clone())
    }

    fn write(dir: &Path, inner: &mut Inner) -> Result<(), JournalError> {
        let rec = &inner.record;
        let path = dir.join(format!("{}.json", rec.run_id));
        let body = serde_json::to_vec_pretty(rec).expect("journal serializes");
        // state/ and state/runs/ are 0700, every journal 0600 from its first byte.
        if let Some(state) = dir.parent() {
            tarmac_fsx::create_private_dir(state).map_err(|source| JournalError::Write {
                path: state.to_path_buf(),
                source,
            })?;
        }
        tarmac_fsx::create_private_dir(dir).map_err(|source| JournalError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        write_atomic(&path, &body, 0o600).map_err(|source| JournalError::Write {
            path: path.clone(),
            source,
        })?;
        let last = dir.join(format!("last-{}", rec.stage.as_str()));
        write_atomic(&last, rec.run_id.as_bytes(), 0o600)
            .map_err(|source| JournalError::Write { path: last, source })?;
        inner.last_write = Some(Instant::now());
        Ok(())
    }
}

impl EventSink for Journal {
    fn emit(&self, event: Event) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let mut force = false;
        let rec = &mut inner.record;
        match event {
            Event::StepStarted { host, step } => {
                rec.hosts.entry(host).or_default().step = Some(step);
            }
            Event::Output { host, line, .. } => {
                let r = rec.hosts.entry(host).or_default();
                r.tail.push(line);
                if r.tail.len() > TAIL_LINES {
                    let extra = r.tail.len() - TAIL_LINES;
                    r.tail.drain(..extra);
                }
            }
            Event::StepFinished {
                host,
                step,
                outcome,
                ..
            } => {
                if !outcome.is_success() {
                    rec.hosts
                        .entry(host)
                        .or_default()
                        .failed_step
                        .get_or_insert(step);
                }
            }
            Event::HostFinished {
                host,
                outcome,
                duration_ms,
            } => {
                let r = rec.hosts.entry(host).or_default();
                r.outcome = Some(outcome);
                r.duration_ms = Some(duration_ms);
            }
            Event::StageFinished { summary, .. } => {
                rec.summary = Some(summary);
                rec.finished_unix = Some(now_unix());
                force = true;
            }
            _ => return,
        }
        let due = inner
            .last_write
            .is_none_or(|t| t.elapsed() > Duration::from_millis(250));
        if (force || due)
            && let Err(e) = Self::write(&self.dir, &mut inner)
        {
            inner.error.get_or_insert(e.to_string());
        }
    }
}

/// Read the journal of the last run of `stage` under `<state_dir>/runs/`.
pub fn last_run(state_dir: &Path, stage: Stage) -> Result<RunRecord, JournalError> {
    let dir = state_dir.join("runs");
    let last = dir.join(format!("last-{}", stage.as_str()));
    let run_id = match std::fs::read_to_string(&last) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(JournalError::NoPreviousRun { stage, dir });
        }
        Err(source) => return Err(JournalError::Read { path: last, source }),
    };
    let path = dir.join(format!("{}.json", run_id.trim()));
    let body = std::fs::read(&path).map_err(|source| JournalError::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&body).map_err(|e| JournalError::Corrupt {
        path,
        message: e.to_string(),
    })
}

impl tarmac_types::error_report::Hint for JournalError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            JournalError::NoPreviousRun { stage, .. } => Some(format!(
                "run `tarmac {stage}` first; --retry-failed re-runs the hosts that did not succeed last time"
            ).into()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> HostAddr {
        s.parse().unwrap()
    }

    #[test]
    fn records_events_and_finds_failed_hosts() {
        let d = tempfile::tempdir().unwrap();
        let hosts = vec![
            (h("10.0.0.1"), Some(Role::Master)),
            (h("10.0.0.2"), Some(Role::Agent)),
        ];
        let j = Journal::new(d.path(), "deploy-1", Stage::Deploy, &hosts);
        j.emit(Event::StepStarted {
            host: h("10.0.0.1"),
            step: "install".into(),
        });
        j.emit(Event::HostFinished {
            host: h("10.0.0.1"),
            outcome: Outcome::Ok,
            duration_ms: 5,
        });
        j.emit(Event::StepFinished {
            host: h("10.0.0.2"),
            step: "connect".into(),
            outcome: Outcome::Unreachable {
                message: "no route".into(),
            },
            duration_ms: 1,
        });
        j.emit(Event::HostFinished {
            host: h("10.0.0.2"),
            outcome: Outcome::Unreachable {
                message: "no route".into(),
            },
            duration_ms: 1,
        });
        let mut s = Summary::default();
        s.add(&Outcome::Ok);
        s.add(&Outcome::Unreachable {
            message: "x".into(),
        });
        j.emit(Event::StageFinished {
            run_id: "deploy-1".into(),
            stage: Stage::Deploy,
            summary: s,
            duration_ms: 9,
        });
        let rec = last_run(d.path(), Stage::Deploy).unwrap();
        assert_eq!(rec.unsuccessful_hosts(), vec![h("10.0.0.2")]);
        assert_eq!(
            rec.hosts[&h("10.0.0.2")].failed_step.as_deref(),
            Some("connect")
        );
        assert!(rec.finished_unix.is_some());
        // Private: state/ and runs/ 0700, every journal 0600.
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let state = d.path().join("state");
        let j = Journal::new(&state, "deploy-2", Stage::Deploy, &hosts);
        j.flush().unwrap();
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join("runs")), 0o700);
        assert_eq!(mode(&state.join("runs/deploy-2.json")), 0o600);
        assert_eq!(mode(&state.join("runs/last-deploy")), 0o600);
    }

    #[test]
    fn no_previous_run_is_explained() {
        let d = tempfile::tempdir().unwrap();
        let err = last_run(d.path(), Stage::Deploy).unwrap_err().to_string();
        assert!(
            err.starts_with("no earlier `deploy` run is recorded"),
            "{err}"
        );
    }
}
