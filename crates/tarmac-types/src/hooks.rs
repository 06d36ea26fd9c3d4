//! The day-two hooks' answers, as data shared by `tarmac-host` and the installer:
//! `tarmac-host backup --json` prints a [`BackupAnswer`], `tarmac-host restore --json` and
//! `tarmac-host membership --json` print a [`HookAnswer`].

use serde::{Deserialize, Serialize};

use crate::PackageId;

/// One hook that ran, with its output (stdout and stderr, the last 64 KiB).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookOutput {
    pub package: PackageId,
    pub hook: String,
    pub duration_ms: u64,
    pub output: String,
}

/// What `tarmac-host backup` made: one `.tar.zst` snapshot file on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupAnswer {
    pub file: String,
    pub size: u64,
    pub sha256: String,
    /// The packages whose hooks wrote into the snapshot.
    pub packages: Vec<PackageId>,
    /// Every file of the snapshot (`<package name>/<path>`) with its size.
    pub files: Vec<(String, u64)>,
    pub hooks: Vec<HookOutput>,
}

/// What a restore phase or a membership action ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookAnswer {
    /// `restore` or `membership`.
    pub kind: String,
    pub args: Vec<String>,
    pub hooks: Vec<HookOutput>,
}

impl HookAnswer {
    /// Non-empty, trimmed output lines of every hook (a membership `list`: one member each).
    pub fn lines(&self) -> Vec<String> {
        self.hooks
            .iter()
            .flat_map(|h| h.output.lines())
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}
