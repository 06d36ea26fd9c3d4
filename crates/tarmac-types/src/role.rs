use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The role a cluster host plays. Role-suffixed package directories
/// (`bin_master`, `systemd_agent_public`, …) are applied only on hosts of that role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Master,
    Agent,
    AgentPublic,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}`: expected one of master, agent, agent_public")]
pub struct RoleError(pub String);

impl Role {
    pub const ALL: [Role; 3] = [Role::Master, Role::Agent, Role::AgentPublic];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Agent => "agent",
            Role::AgentPublic => "agent_public",
        }
    }

    /// The directory suffix this role selects, e.g. `_agent_public`.
    pub fn dir_suffix(self) -> &'static str {
        match self {
            Role::Master => "_master",
            Role::Agent => "_agent",
            Role::AgentPublic => "_agent_public",
        }
    }

    /// Split a package directory name such as `bin_agent_public` into (`bin`, Some(AgentPublic)).
    /// `_agent_public` is tried before `_agent`, so `bin_agent_public` is never read as role `agent`.
    pub fn split_dir(dir: &str) -> (&str, Option<Role>) {
        for role in [Role::AgentPublic, Role::Agent, Role::Master] {
            if let Some(base) = dir.strip_suffix(role.dir_suffix())
                && !base.is_empty()
            {
                return (base, Some(role));
            }
        }
        (dir, None)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = RoleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "master" => Ok(Role::Master),
            "agent" | "slave" => Ok(Role::Agent),
            "agent_public" | "public_agent" | "slave_public" => Ok(Role::AgentPublic),
            other => Err(RoleError(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_dirs() {
        assert_eq!(
            Role::split_dir("bin_agent_public"),
            ("bin", Some(Role::AgentPublic))
        );
        assert_eq!(Role::split_dir("bin_agent"), ("bin", Some(Role::Agent)));
        assert_eq!(
            Role::split_dir("systemd_master"),
            ("systemd", Some(Role::Master))
        );
        assert_eq!(Role::split_dir("etc"), ("etc", None));
        assert_eq!(Role::split_dir("_master"), ("_master", None));
    }

    #[test]
    fn parse() {
        assert_eq!("agent_public".parse::<Role>().unwrap(), Role::AgentPublic);
        assert_eq!("slave".parse::<Role>().unwrap(), Role::Agent);
        assert!("boss".parse::<Role>().is_err());
    }
}
