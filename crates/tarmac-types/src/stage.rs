use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A generation number on a host: `/opt/tarmac/generations/<n>`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Generation(pub u64);

impl Generation {
    pub fn next(self) -> Generation {
        Generation(self.0 + 1)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Generation {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Generation)
    }
}

/// A stage of an installer run. The CLI, the journal and the web UI all name stages with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    ValidateConfig,
    Genconf,
    Preflight,
    InstallPrereqs,
    Deploy,
    Postflight,
    Uninstall,
    Status,
    Upgrade,
    Rollback,
    Exec,
    Backup,
    Restore,
    RemoveHosts,
    ReplaceMaster,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::ValidateConfig => "validate-config",
            Stage::Genconf => "genconf",
            Stage::Preflight => "preflight",
            Stage::InstallPrereqs => "install-prereqs",
            Stage::Deploy => "deploy",
            Stage::Postflight => "postflight",
            Stage::Uninstall => "uninstall",
            Stage::Status => "status",
            Stage::Upgrade => "upgrade",
            Stage::Rollback => "rollback",
            Stage::Exec => "exec",
            Stage::Backup => "backup",
            Stage::Restore => "restore",
            Stage::RemoveHosts => "remove-hosts",
            Stage::ReplaceMaster => "replace-master",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
