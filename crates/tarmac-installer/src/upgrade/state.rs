//! The run journal of an upgrade or rollback (`genconf/state/upgrade.json`), read by
//! `--resume`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tarmac_events::HostState;

use crate::stages::InstallerError;
use tarmac_fsx::write_atomic_in_private_dir as write_atomic;

/// `genconf/state/upgrade.json`: what the last upgrade or rollback did, per host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeState {
    pub operation: String,
    /// Target package list id (upgrade) or generation (`rollback --to`).
    pub target: String,
    pub finished: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Host → ok | unchanged | failed | reverted | unconfirmed | untouched | …
    pub hosts: BTreeMap<String, HostState>,
    /// The run ids this operation has used so far (an interrupted run, then its resumes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_ids: Vec<String>,
    /// The snapshot of the quorum store this operation took before it touched masters
    /// (its name in `state/backups/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

impl UpgradeState {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("upgrade.json")
    }

    pub fn load(state_dir: &Path) -> Option<UpgradeState> {
        let b = std::fs::read(Self::path(state_dir)).ok()?;
        serde_json::from_slice(&b).ok()
    }

    pub(super) fn save(&self, state_dir: &Path) -> Result<(), InstallerError> {
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        let path = Self::path(state_dir);
        tarmac_fsx::create_private_dir(state_dir)
            .and_then(|()| write_atomic(&path, &bytes, 0o600))
            .map_err(|source| InstallerError::NoServe { path, source })
    }
}
