//! Hosts to talk to: `[user@]host[:port]` with an optional role, and ProxyJump chains.

use std::fmt;
use std::str::FromStr;

use tarmac_events::HostRef;
use tarmac_types::{HostAddr, HostAddrError, Role};

/// One host of a run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub addr: HostAddr,
    /// Login user for this host; `None` uses [`SshOptions::user`](crate::SshOptions::user).
    pub user: Option<String>,
    pub role: Option<Role>,
}

impl Target {
    pub fn new(addr: HostAddr) -> Self {
        Self {
            addr,
            user: None,
            role: None,
        }
    }

    pub fn with_role(mut self, role: Role) -> Self {
        self.role = Some(role);
        self
    }

    pub fn host_ref(&self) -> HostRef {
        HostRef {
            addr: self.addr.clone(),
            role: self.role,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("invalid user in `{0}`")]
    BadUser(String),
    #[error(transparent)]
    Addr(#[from] HostAddrError),
}

/// Parses `[user@]host[:port]` (IPv6 as `[addr]:port`).
impl FromStr for Target {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (user, rest) = match s.rsplit_once('@') {
            Some((u, r)) => {
                if u.is_empty() || u.contains(|c: char| c.is_whitespace() || c == ':' || c == '/') {
                    return Err(TargetError::BadUser(s.to_owned()));
                }
                (Some(u.to_owned()), r)
            }
            None => (None, s),
        };
        Ok(Target {
            addr: rest.parse()?,
            user,
            role: None,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        write!(f, "{}", self.addr)
    }
}

/// A ProxyJump chain: `bastion1,user@bastion2:2222` — connect to the first hop directly,
/// each next hop through the previous one, and the targets through the last.
pub fn parse_jump_chain(s: &str) -> Result<Vec<Target>, TargetError> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty() && *p != "none")
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_targets() {
        let t: Target = "10.0.0.1".parse().unwrap();
        assert_eq!(
            (t.user.as_deref(), t.addr.to_string()),
            (None, "10.0.0.1".into())
        );
        let t: Target = "core@[fd00::1]:2222".parse().unwrap();
        assert_eq!(t.user.as_deref(), Some("core"));
        assert_eq!((t.addr.host(), t.addr.port()), ("fd00::1", Some(2222)));
        assert_eq!(t.to_string(), "core@[fd00::1]:2222");
        assert!("@10.0.0.1".parse::<Target>().is_err());
        assert!("a b@10.0.0.1".parse::<Target>().is_err());
    }

    #[test]
    fn jump_chains() {
        let c = parse_jump_chain("bastion, ops@10.0.0.9:2200").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].to_string(), "ops@10.0.0.9:2200");
        assert!(parse_jump_chain("none").unwrap().is_empty());
        assert!(parse_jump_chain("").unwrap().is_empty());
    }
}
