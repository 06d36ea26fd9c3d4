//! The record `tarmac-host` appends to `/opt/tarmac/switches.jsonl` before every flip of
//! `current`, and the pure rules that read it back (the installer's status reads the same
//! lines over SSH).

use serde::{Deserialize, Serialize};

use crate::Generation;

/// One flip of `current`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchRecord {
    pub to: Generation,
    #[serde(default)]
    pub from: Option<Generation>,
    /// `activate`, `swap`, `setup`, `rollback`, `revert`.
    pub command: String,
    /// The installer's run id, or `None` when `tarmac-host` ran without one (by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    pub at_unix: u64,
    /// Why a revert (command `revert`) went back: see [`crate::confirm::RevertReason`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<crate::confirm::RevertReason>,
}

/// Every well-formed record of `text`, in order.
pub fn parse(text: &str) -> Vec<SwitchRecord> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The record that made `current` current.
pub fn explaining(records: &[SwitchRecord], current: Generation) -> Option<&SwitchRecord> {
    records.iter().rev().find(|r| r.to == current)
}
