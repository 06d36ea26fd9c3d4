//! Typed progress events. Libraries never print: they emit [`Event`]s into an
//! [`EventSink`]. The terminal renderer, `--output json` and the web UI's SSE stream
//! are all renderers of the same events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tarmac_types::{HostAddr, PackageId, Role, Stage};

pub mod rows;
mod state;

pub use rows::{HostRow, HostRows};
pub use state::{HostState, Phase, UnknownWord};

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How one host (or one step on a host) ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Succeeded.
    Ok,
    /// Succeeded without changing anything (already in the wanted state).
    Unchanged,
    /// Ran and failed; `exit_code` when a remote command ended with one.
    Failed {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        exit_code: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        signal: Option<String>,
        message: String,
    },
    /// Could not connect or authenticate.
    Unreachable { message: String },
    /// A deadline passed; the remote process was ended.
    TimedOut { after_ms: u64 },
    /// Cancelled by the operator (Ctrl-C) before or while running.
    Cancelled,
    /// Not attempted (e.g. failure budget exhausted, or excluded).
    Skipped { reason: String },
}

impl Outcome {
    /// The outcome's one-word name (its serde tag): `ok`, `unchanged`, `failed`, …
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed { .. } => "failed",
            Outcome::Unreachable { .. } => "unreachable",
            Outcome::TimedOut { .. } => "timed_out",
            Outcome::Cancelled => "cancelled",
            Outcome::Skipped { .. } => "skipped",
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Ok | Outcome::Unchanged)
    }

    /// A short word for tables: ok, unchanged, failed, unreachable, timed-out, cancelled, skipped.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed { .. } => "failed",
            Outcome::Unreachable { .. } => "unreachable",
            Outcome::TimedOut { .. } => "timed-out",
            Outcome::Cancelled => "cancelled",
            Outcome::Skipped { .. } => "skipped",
        }
    }
}

/// Severity of a free-form notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// A host taking part in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRef {
    pub addr: HostAddr,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub role: Option<Role>,
}

/// Counts at the end of a stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub total: usize,
    pub ok: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub unreachable: usize,
    pub timed_out: usize,
    pub cancelled: usize,
    pub skipped: usize,
}

impl Summary {
    pub fn add(&mut self, o: &Outcome) {
        self.total += 1;
        match o {
            Outcome::Ok => self.ok += 1,
            Outcome::Unchanged => self.unchanged += 1,
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::Unreachable { .. } => self.unreachable += 1,
            Outcome::TimedOut { .. } => self.timed_out += 1,
            Outcome::Cancelled => self.cancelled += 1,
            Outcome::Skipped { .. } => self.skipped += 1,
        }
    }

    pub fn all_succeeded(&self) -> bool {
        self.ok + self.unchanged == self.total
    }
}

/// Everything a Tarmac library reports while it works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A stage begins on a set of hosts.
    StageStarted {
        run_id: String,
        stage: Stage,
        hosts: Vec<HostRef>,
    },
    /// A step (a named unit of work: "connect", "upload", "install", a check name…) begins on a host.
    StepStarted { host: HostAddr, step: String },
    /// One line of a remote command's output.
    Output {
        host: HostAddr,
        step: String,
        stream: Stream,
        line: String,
    },
    /// Bytes moved for a transfer on a host.
    Transfer {
        host: HostAddr,
        name: String,
        done: u64,
        total: u64,
    },
    /// A step on a host ended.
    StepFinished {
        host: HostAddr,
        step: String,
        outcome: Outcome,
        duration_ms: u64,
    },
    /// A host is done with the stage.
    HostFinished {
        host: HostAddr,
        outcome: Outcome,
        duration_ms: u64,
    },
    /// The stage is over.
    StageFinished {
        run_id: String,
        stage: Stage,
        summary: Summary,
        duration_ms: u64,
    },
    /// Package build progress (builder).
    PackageBuild { name: String, phase: BuildPhase },
    /// Package activation progress on one host (tarmac-host).
    Activation {
        phase: String,
        packages: Vec<PackageId>,
    },
    /// Lab lifecycle (tarmac lab).
    Lab { lab: String, message: String },
    /// A free-form notice.
    Notice { level: Level, message: String },
}

/// The phases of one package build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum BuildPhase {
    Fetching,
    CacheHit {
        id: PackageId,
    },
    Building {
        id: PackageId,
    },
    Built {
        id: PackageId,
        duration_ms: u64,
    },
    /// The package's ELF files were made self-contained: `libraries` (file names in the
    /// package's `tarmac-bundle/`, the dynamic loader included) were copied in from the
    /// build environment and `files` (package paths) rewritten to load them; `static_files`
    /// need no libraries and were left alone.
    Bundled {
        id: PackageId,
        libraries: Vec<String>,
        files: Vec<String>,
        static_files: Vec<String>,
    },
    Failed {
        message: String,
    },
}

/// Where events go. Implementations must be cheap and never block for long.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: Event);
}

impl<F: Fn(Event) + Send + Sync> EventSink for F {
    fn emit(&self, event: Event) {
        self(event)
    }
}

/// Discards every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&self, _event: Event) {}
}

/// Collects events in memory (tests, summaries).
#[derive(Debug, Default, Clone)]
pub struct VecSink(Arc<Mutex<Vec<Event>>>);

impl VecSink {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().expect("event sink poisoned").clone()
    }
}

impl EventSink for VecSink {
    fn emit(&self, event: Event) {
        self.0.lock().expect("event sink poisoned").push(event);
    }
}

/// Sends to several sinks.
pub struct Fanout(pub Vec<Arc<dyn EventSink>>);

impl EventSink for Fanout {
    fn emit(&self, event: Event) {
        for s in &self.0 {
            s.emit(event.clone());
        }
    }
}

/// A shareable sink handle.
pub type Sink = Arc<dyn EventSink>;

/// Milliseconds of a duration, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_is_stable() {
        let e = Event::HostFinished {
            host: "10.0.0.1".parse().unwrap(),
            outcome: Outcome::Failed {
                exit_code: Some(2),
                signal: None,
                message: "boom".into(),
            },
            duration_ms: 12,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"type":"host_finished","host":"10.0.0.1","outcome":{"status":"failed","exit_code":2,"message":"boom"},"duration_ms":12}"#
        );
        let back: Event = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn summary_counts() {
        let mut s = Summary::default();
        s.add(&Outcome::Ok);
        s.add(&Outcome::Unchanged);
        assert!(s.all_succeeded());
        s.add(&Outcome::TimedOut { after_ms: 5 });
        assert!(!s.all_succeeded());
        assert_eq!(s.timed_out, 1);
    }
}
