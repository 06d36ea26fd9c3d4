//! Confirm-or-revert, as data shared by `tarmac-host` and the installer.
//!
//! `tarmac-host switch --confirm-within DUR` writes a [`PendingConfirm`] to
//! `/opt/tarmac/pending.json` (atomically) **before** it activates anything. Until
//! `tarmac-host confirm --generation N` removes it, the host itself reverts to
//! [`PendingConfirm::from`]: `tarmac-confirm.service` sleeps until the deadline, and at boot
//! any record that survived a reboot is reverted before anything else runs (the checks the
//! controller ran belong to a boot that is gone, so the record can no longer be confirmed).
//!
//! `tarmac-host status --json` prints a [`HostStatus`]; the installer deserializes it.
//! Both carry `format` so that a newer installer can refuse an older host's answer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::switch::SwitchRecord;
use crate::{Generation, PackageId};

/// The version of [`PendingConfirm`] and [`HostStatus`] this code writes.
pub const FORMAT: u32 = 1;

/// The file inside the tarmac root.
pub const PENDING_FILE: &str = "pending.json";

/// The switch-log `command` of a revert made because a switch was not confirmed.
pub const REVERT_COMMAND: &str = "revert";

/// A switch waiting for its confirmation (`<root>/pending.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingConfirm {
    pub format: u32,
    /// The generation to go back to.
    pub from: Generation,
    /// The generation the switch made current. `None` while the switch is still running (the
    /// record is written first, so a crash mid-switch still reverts).
    #[serde(default)]
    pub to: Option<Generation>,
    /// When the switch was armed (UNIX seconds, wall clock).
    pub armed_unix: u64,
    /// The deadline (UNIX seconds, wall clock).
    pub deadline_unix: u64,
    /// `/proc/sys/kernel/random/boot_id` when the switch was armed: a different boot id at
    /// the guard's start means the host rebooted inside the window.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// The installer operation (`TARMAC_OPERATION`) that switched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The setup flag `cluster-package-list` as it was before the switch replaced it
    /// (`Some(None)`: there was none). `None`: the switch did not touch the setup flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_list: Option<Option<String>>,
}

impl PendingConfirm {
    /// The seconds left before the deadline at `now_unix` (0 when it passed).
    pub fn remaining_secs(&self, now_unix: u64) -> u64 {
        self.deadline_unix.saturating_sub(now_unix)
    }
}

/// Why a pending switch is reverted (written into the switch log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevertReason {
    /// The deadline passed without a confirmation.
    Deadline,
    /// The host booted with the record pending.
    Reboot,
    /// The switch's activation failed.
    ActivationFailed,
    /// Asked for (`tarmac-host revert`: the controller's checks failed).
    Requested,
}

impl RevertReason {
    pub fn word(self) -> &'static str {
        match self {
            RevertReason::Deadline => "deadline",
            RevertReason::Reboot => "reboot",
            RevertReason::ActivationFailed => "activation-failed",
            RevertReason::Requested => "requested",
        }
    }

    /// Reverted by the host on its own (not asked for by the controller).
    pub fn by_itself(self) -> bool {
        matches!(self, RevertReason::Deadline | RevertReason::Reboot)
    }
}

/// What the guard does with a pending record, decided by [`guard_decision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardDecision {
    /// Revert now, for this reason.
    Revert(RevertReason),
    /// Sleep this many seconds, then decide again.
    Wait(u64),
}

/// The rule: a record armed in another boot reverts (reboot); one whose deadline passed
/// reverts (deadline); otherwise wait for the deadline. A record without a boot id (none
/// could be read when it was armed) is judged by its deadline alone.
pub fn guard_decision(p: &PendingConfirm, now_unix: u64, boot_id: Option<&str>) -> GuardDecision {
    if let (Some(armed), Some(now)) = (p.boot_id.as_deref(), boot_id)
        && armed != now
    {
        return GuardDecision::Revert(RevertReason::Reboot);
    }
    match p.remaining_secs(now_unix) {
        0 => GuardDecision::Revert(RevertReason::Deadline),
        n => GuardDecision::Wait(n),
    }
}

/// `tarmac-host --json switch`: where the switch went and what is now pending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchOutcome {
    pub from: Option<Generation>,
    pub to: Generation,
    /// The host already ran these packages.
    pub unchanged: bool,
    pub pending: PendingConfirm,
}

/// One unit of the current generation and its `systemctl is-active` state.
pub type UnitStates = BTreeMap<String, String>;

/// `tarmac-host status --json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    pub format: u32,
    /// `None`: nothing is active (tarmac is not installed here).
    pub current: Option<Generation>,
    /// The generation the current one was switched from.
    #[serde(default)]
    pub previous: Option<Generation>,
    /// The active package ids, sorted.
    #[serde(default)]
    pub active: Vec<PackageId>,
    /// A switch waiting for its confirmation.
    #[serde(default)]
    pub pending: Option<PendingConfirm>,
    /// Stored packages kept as their verified archives only (no role of this host uses
    /// them), sorted; every other stored package is extracted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archived: Vec<PackageId>,
    /// Units of the current generation → `active`, `failed`, … (empty without systemd).
    #[serde(default)]
    pub units: UnitStates,
    /// The switch-log record that made the current generation current.
    #[serde(default)]
    pub switch: Option<SwitchRecord>,
    /// Asked-for paths (`--watched`), relative to the current generation: every regular
    /// file under them → sha256 hex.
    #[serde(default)]
    pub watched: BTreeMap<String, String>,
    /// An interrupted switch was recovered before the status was read (`--recover`).
    #[serde(default)]
    pub recovered: Option<String>,
}

impl HostStatus {
    /// The host went back by itself (deadline or reboot) from a switch made by an operation
    /// whose run id starts with one of `runs`; the current generation came from that revert.
    pub fn reverted_by_itself(&self, runs: &[String]) -> Option<&SwitchRecord> {
        let rec = self.switch.as_ref()?;
        if rec.command != REVERT_COMMAND {
            return None;
        }
        let op = rec.operation.as_deref()?;
        let by_itself = rec.reason.is_some_and(RevertReason::by_itself);
        let of_run = |r: &str| {
            !r.is_empty()
                && op
                    .strip_prefix(r)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['-', '/']))
        };
        (by_itself && runs.iter().any(|r| of_run(r))).then_some(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(boot: Option<&str>) -> PendingConfirm {
        PendingConfirm {
            format: FORMAT,
            from: Generation(3),
            to: Some(Generation(4)),
            armed_unix: 1000,
            deadline_unix: 1120,
            boot_id: boot.map(str::to_owned),
            operation: Some("upgrade-1-001-switch".into()),
            setup_list: Some(None),
        }
    }

    #[test]
    fn the_guard_rule() {
        let p = pending(Some("b1"));
        assert_eq!(
            guard_decision(&p, 1000, Some("b1")),
            GuardDecision::Wait(120)
        );
        assert_eq!(
            guard_decision(&p, 1120, Some("b1")),
            GuardDecision::Revert(RevertReason::Deadline)
        );
        assert_eq!(
            guard_decision(&p, 1001, Some("b2")),
            GuardDecision::Revert(RevertReason::Reboot)
        );
        // No boot id on either side: the deadline alone.
        assert_eq!(
            guard_decision(&pending(None), 1100, Some("b2")),
            GuardDecision::Wait(20)
        );
        assert_eq!(guard_decision(&p, 1100, None), GuardDecision::Wait(20));
    }

    #[test]
    fn the_record_on_disk() {
        assert_eq!(
            serde_json::to_string(&pending(Some("b1"))).unwrap(),
            r#"{"format":1,"from":3,"to":4,"armed_unix":1000,"deadline_unix":1120,"boot_id":"b1","operation":"upgrade-1-001-switch","setup_list":null}"#
        );
        let back: PendingConfirm =
            serde_json::from_str(r#"{"format":1,"from":3,"armed_unix":1,"deadline_unix":2}"#)
                .unwrap();
        assert_eq!(back.to, None);
        assert_eq!(back.setup_list, None);
    }

    #[test]
    fn a_revert_by_itself_is_recognised() {
        let rec = |reason, op: &str| SwitchRecord {
            to: Generation(3),
            from: Some(Generation(4)),
            command: REVERT_COMMAND.into(),
            operation: Some(op.into()),
            at_unix: 5,
            reason,
        };
        let st = |r| HostStatus {
            switch: Some(r),
            ..HostStatus::default()
        };
        let runs = vec!["upgrade-1".to_owned()];
        let s = st(rec(
            Some(RevertReason::Reboot),
            "upgrade-1-001-switch/revert",
        ));
        assert!(s.reverted_by_itself(&runs).is_some());
        let s = st(rec(
            Some(RevertReason::Requested),
            "upgrade-1-001-switch/revert",
        ));
        assert!(s.reverted_by_itself(&runs).is_none());
        let s = st(rec(
            Some(RevertReason::Deadline),
            "upgrade-2-001-switch/revert",
        ));
        assert!(s.reverted_by_itself(&runs).is_none());
    }
}
