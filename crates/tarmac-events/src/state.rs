//! The words for how a host stands in a run: one typed vocabulary for the installer's
//! upgrade state (`state/upgrade.json`), the web API's rows and the terminal.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Outcome;

/// How one host stands in a run. The wire strings (serde, [`HostState::as_str`], `Display`,
/// `FromStr`) are the words journals and the web API have always used.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub enum HostState {
    /// Not started yet.
    #[default]
    Pending,
    /// A step is running on it.
    Running,
    Ok,
    Unchanged,
    Failed,
    Unreachable,
    TimedOut,
    Cancelled,
    Skipped,
    /// Upgrade and rollback: switched, then brought back to its previous generation.
    Reverted,
    /// Upgrade and rollback: switched, but its confirmation did not land.
    Unconfirmed,
    /// Upgrade and rollback: never touched (an earlier wave stopped the run).
    Untouched,
    /// A journal's host that has no outcome (the run was killed).
    Unfinished,
}

impl HostState {
    /// Every state, in declaration order.
    pub const ALL: [HostState; 13] = [
        HostState::Pending,
        HostState::Running,
        HostState::Ok,
        HostState::Unchanged,
        HostState::Failed,
        HostState::Unreachable,
        HostState::TimedOut,
        HostState::Cancelled,
        HostState::Skipped,
        HostState::Reverted,
        HostState::Unconfirmed,
        HostState::Untouched,
        HostState::Unfinished,
    ];

    /// The wire word: `pending`, `running`, `ok`, …, `timed-out`, …
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Pending => "pending",
            HostState::Running => "running",
            HostState::Ok => "ok",
            HostState::Unchanged => "unchanged",
            HostState::Failed => "failed",
            HostState::Unreachable => "unreachable",
            HostState::TimedOut => "timed-out",
            HostState::Cancelled => "cancelled",
            HostState::Skipped => "skipped",
            HostState::Reverted => "reverted",
            HostState::Unconfirmed => "unconfirmed",
            HostState::Untouched => "untouched",
            HostState::Unfinished => "unfinished",
        }
    }

    /// Ok or unchanged.
    pub fn is_success(self) -> bool {
        matches!(self, HostState::Ok | HostState::Unchanged)
    }

    /// Neither pending nor running.
    pub fn is_done(self) -> bool {
        !matches!(self, HostState::Pending | HostState::Running)
    }
}

impl From<&Outcome> for HostState {
    fn from(o: &Outcome) -> Self {
        match o {
            Outcome::Ok => HostState::Ok,
            Outcome::Unchanged => HostState::Unchanged,
            Outcome::Failed { .. } => HostState::Failed,
            Outcome::Unreachable { .. } => HostState::Unreachable,
            Outcome::TimedOut { .. } => HostState::TimedOut,
            Outcome::Cancelled => HostState::Cancelled,
            Outcome::Skipped { .. } => HostState::Skipped,
        }
    }
}

impl fmt::Display for HostState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that is not a [`HostState`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownWord(pub String);

impl fmt::Display for UnknownWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown word `{}`", self.0)
    }
}

impl std::error::Error for UnknownWord {}

impl FromStr for HostState {
    type Err = UnknownWord;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HostState::ALL
            .into_iter()
            .find(|h| h.as_str() == s)
            .ok_or_else(|| UnknownWord(s.to_owned()))
    }
}

/// The step of an upgrade or rollback that one of its fleets runs (the last part of the
/// fleet's run id, `<run id>-<NNN>-<phase>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub enum Phase {
    Inspect,
    /// Every host takes the new packages (through the peer relay) before any wave switches:
    /// a gate, since nothing changes what the host runs.
    Prefetch,
    Switch,
    Rollback,
    /// Checks every master without changing it: hosts no wave touched keep their row.
    ClusterChecks,
    Confirm,
    Revert,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Inspect,
        Phase::Prefetch,
        Phase::Switch,
        Phase::Rollback,
        Phase::ClusterChecks,
        Phase::Confirm,
        Phase::Revert,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Inspect => "inspect",
            Phase::Prefetch => "prefetch",
            Phase::Switch => "switch",
            Phase::Rollback => "rollback",
            Phase::ClusterChecks => "cluster-checks",
            Phase::Confirm => "confirm",
            Phase::Revert => "revert",
        }
    }

    /// A step that checks hosts without changing them.
    pub fn is_gate(self) -> bool {
        matches!(self, Phase::ClusterChecks | Phase::Prefetch)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Phase {
    type Err = UnknownWord;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownWord(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_host_state_round_trips() {
        for s in HostState::ALL {
            let w = s.as_str();
            assert_eq!(s.to_string(), w);
            assert_eq!(w.parse::<HostState>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{w}\""));
            assert_eq!(
                serde_json::from_str::<HostState>(&format!("\"{w}\"")).unwrap(),
                s
            );
        }
        // Exhaustive: a new variant must be added to ALL (this match fails to compile).
        for s in HostState::ALL {
            match s {
                HostState::Pending
                | HostState::Running
                | HostState::Ok
                | HostState::Unchanged
                | HostState::Failed
                | HostState::Unreachable
                | HostState::TimedOut
                | HostState::Cancelled
                | HostState::Skipped
                | HostState::Reverted
                | HostState::Unconfirmed
                | HostState::Untouched
                | HostState::Unfinished => {}
            }
        }
        let mut words: Vec<_> = HostState::ALL.iter().map(|s| s.as_str()).collect();
        words.sort_unstable();
        words.dedup();
        assert_eq!(words.len(), HostState::ALL.len());
        assert!("timed_out".parse::<HostState>().is_err());
        assert!("".parse::<HostState>().is_err());
    }

    #[test]
    fn outcomes_map_to_their_labels() {
        for o in [
            Outcome::Ok,
            Outcome::Unchanged,
            Outcome::Failed {
                exit_code: None,
                signal: None,
                message: String::new(),
            },
            Outcome::Unreachable {
                message: String::new(),
            },
            Outcome::TimedOut { after_ms: 1 },
            Outcome::Cancelled,
            Outcome::Skipped {
                reason: String::new(),
            },
        ] {
            assert_eq!(HostState::from(&o).as_str(), o.label());
            assert_eq!(HostState::from(&o).is_success(), o.is_success());
        }
    }

    #[test]
    fn every_phase_round_trips() {
        for p in Phase::ALL {
            match p {
                Phase::Inspect
                | Phase::Prefetch
                | Phase::Switch
                | Phase::Rollback
                | Phase::ClusterChecks
                | Phase::Confirm
                | Phase::Revert => {}
            }
            let w = p.as_str();
            assert_eq!(p.to_string(), w);
            assert_eq!(w.parse::<Phase>(), Ok(p));
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{w}\""));
            assert_eq!(
                serde_json::from_str::<Phase>(&format!("\"{w}\"")).unwrap(),
                p
            );
        }
        assert!("cluster_checks".parse::<Phase>().is_err());
    }
}
