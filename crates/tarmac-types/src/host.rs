use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostAddrError {
    #[error("empty host address")]
    Empty,
    #[error(
        "invalid host address `{0}`: expected an IPv4/IPv6 address or hostname, optionally with `:port` (IPv6 as `[addr]:port`)"
    )]
    Invalid(String),
    #[error("invalid port in `{0}`: must be 1-65535")]
    BadPort(String),
}

/// A cluster host as written in config: `10.0.0.1`, `10.0.0.1:2222`, `[fd00::1]:22`,
/// `fd00::1` or `node-1.example.com`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostAddr {
    host: String,
    port: Option<u16>,
}

impl HostAddr {
    pub fn new(host: impl Into<String>, port: Option<u16>) -> Result<Self, HostAddrError> {
        let host = host.into();
        if host.is_empty() {
            return Err(HostAddrError::Empty);
        }
        if host.parse::<IpAddr>().is_err() && !is_hostname(&host) {
            return Err(HostAddrError::Invalid(host));
        }
        if port == Some(0) {
            return Err(HostAddrError::BadPort(host));
        }
        Ok(Self { host, port })
    }

    /// The host part without brackets or port.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    pub fn port_or(&self, default: u16) -> u16 {
        self.port.unwrap_or(default)
    }

    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// `host:port` suitable for a socket connect (IPv6 bracketed).
    pub fn socket_string(&self, default_port: u16) -> String {
        let port = self.port_or(default_port);
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }

    /// The host part as it appears in a URL (IPv6 bracketed).
    pub fn url_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

fn is_hostname(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        // an all-numeric dotted name would be a malformed IPv4 address
        && !s.split('.').all(|l| l.chars().all(|c| c.is_ascii_digit()))
}

impl fmt::Display for HostAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) if self.host.contains(':') => write!(f, "[{}]:{p}", self.host),
            Some(p) => write!(f, "{}:{p}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

impl FromStr for HostAddr {
    type Err = HostAddrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(HostAddrError::Empty);
        }
        let parse_port = |p: &str| -> Result<u16, HostAddrError> {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(HostAddrError::BadPort(s.to_owned())),
            }
        };
        if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| HostAddrError::Invalid(s.to_owned()))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(HostAddrError::Invalid(s.to_owned()));
            }
            let port = match after {
                "" => None,
                p => Some(parse_port(
                    p.strip_prefix(':')
                        .ok_or_else(|| HostAddrError::Invalid(s.to_owned()))?,
                )?),
            };
            return HostAddr::new(host, port);
        }
        if s.parse::<IpAddr>().is_ok() {
            return HostAddr::new(s, None);
        }
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => {
                let port = parse_port(p)?;
                HostAddr::new(h, Some(port)).map_err(|_| HostAddrError::Invalid(s.to_owned()))
            }
            Some(_) => Err(HostAddrError::Invalid(s.to_owned())),
            None => HostAddr::new(s, None),
        }
    }
}

crate::package::string_serde!(HostAddr);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        let a: HostAddr = "10.0.0.1".parse().unwrap();
        assert_eq!((a.host(), a.port()), ("10.0.0.1", None));
        let a: HostAddr = "10.0.0.1:2222".parse().unwrap();
        assert_eq!((a.host(), a.port()), ("10.0.0.1", Some(2222)));
        assert_eq!(a.to_string(), "10.0.0.1:2222");
        let a: HostAddr = "[fd00::1]:22".parse().unwrap();
        assert_eq!((a.host(), a.port()), ("fd00::1", Some(22)));
        assert_eq!(a.to_string(), "[fd00::1]:22");
        assert_eq!(a.socket_string(22), "[fd00::1]:22");
        let a: HostAddr = "fd00::1".parse().unwrap();
        assert_eq!((a.host(), a.port()), ("fd00::1", None));
        assert_eq!(a.socket_string(22), "[fd00::1]:22");
        let a: HostAddr = "node-1.example.com:22".parse().unwrap();
        assert_eq!(a.host(), "node-1.example.com");
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "foo bar",
            "10.0.0.1:0",
            "10.0.0.1:99999",
            "[fd00::1",
            "1.2.3",
            "-x.com",
            "a:b:c:z",
        ] {
            assert!(
                bad.parse::<HostAddr>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
