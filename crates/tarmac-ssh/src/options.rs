//! Options of a fleet: login, authentication, host keys, jump hosts, deadlines and limits.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::connector::Connector;
use crate::known_hosts::HostKeyPolicy;
use crate::target::Target;

/// A password or passphrase. Never shown by `Debug`, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; only for handing it to the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Asked for the passphrase of an encrypted key file; `None` gives up on that key.
pub type PassphraseFn = Arc<dyn Fn(&Path) -> Option<Secret> + Send + Sync>;

/// The environment variable read for key passphrases by [`passphrase_from_env`].
pub const PASSPHRASE_ENV: &str = "TARMAC_SSH_PASSPHRASE";

/// A passphrase source reading [`PASSPHRASE_ENV`].
pub fn passphrase_from_env() -> PassphraseFn {
    Arc::new(|_| std::env::var(PASSPHRASE_ENV).ok().map(Secret::new))
}

/// Concurrency limits, one per resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections being set up at once (TCP + key exchange + authentication).
    pub connect: usize,
    /// Commands running at once, over all hosts.
    pub commands: usize,
    /// Uploads/downloads running at once, over all hosts.
    pub transfers: usize,
    /// Channels open at once on one connection (sshd `MaxSessions` defaults to 10).
    pub channels_per_host: usize,
    /// Connections open at once, over all hosts. A stage over more hosts than this closes
    /// each host's connection when its job ends, so the controller's sockets (and memory)
    /// stay bounded by this, not by the fleet's size.
    pub open: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect: 100,
            commands: 500,
            transfers: 50,
            channels_per_host: 8,
            open: 4096,
        }
    }
}

impl Limits {
    /// Limits for `n` hosts at once (`--parallel N`, `ssh_parallelism`).
    pub fn parallel(n: usize) -> Self {
        let n = n.max(1);
        Limits {
            connect: n.min(200),
            commands: n,
            transfers: n.min(50),
            ..Limits::default()
        }
    }

    /// Shrink the limits so the process cannot run out of file descriptors: every connection
    /// holds one socket, every running step one log file, plus headroom for the process.
    /// Open connections get half of what is left (a socket and a log file each); the
    /// concurrency limits a third.
    pub fn fit_fd_limit(self, nofile: u64) -> Self {
        let spare = nofile.saturating_sub(128);
        let budget = usize::try_from(spare / 3).unwrap_or(usize::MAX).max(4);
        let open_budget = usize::try_from(spare / 2).unwrap_or(usize::MAX).max(4);
        let commands = self.commands.min(budget);
        Limits {
            connect: self.connect.min(budget),
            commands,
            transfers: self.transfers.min(budget),
            channels_per_host: self.channels_per_host.max(1),
            // Never fewer open connections than commands may run at once.
            open: self.open.max(commands).min(open_budget).max(1),
        }
    }
}

/// Everything needed to reach and log into hosts.
#[derive(Clone)]
pub struct SshOptions {
    /// Default login user (`ssh_user`); a [`Target`] may override it.
    pub user: String,
    /// Default port (`ssh_port`) for hosts written without one.
    pub port: u16,
    /// Private key files (`ssh_key_path`), tried in order before the agent.
    pub identity_files: Vec<PathBuf>,
    /// Use ssh-agent (at `agent_socket`, else `SSH_AUTH_SOCK` when it is set).
    pub use_agent: bool,
    /// The agent's socket; `None` reads `SSH_AUTH_SOCK`.
    pub agent_socket: Option<PathBuf>,
    /// Passphrases for encrypted key files. Without one, an encrypted key is an error that
    /// names the file (unless an agent can be used instead).
    pub passphrase: Option<PassphraseFn>,
    /// known_hosts files; new keys are recorded in the first (`accept-new`).
    pub known_hosts: Vec<PathBuf>,
    pub host_key_policy: HostKeyPolicy,
    /// ProxyJump chain (`ssh_jump`), empty for direct connections.
    pub jump: Vec<Target>,
    /// Time allowed to get an authenticated connection to one host, retries included.
    pub connect_timeout: Duration,
    /// Default per-command timeout (`Exec::timeout` overrides).
    pub command_timeout: Option<Duration>,
    /// Keepalive interval on idle connections (dead hosts are noticed after 3 unanswered).
    pub keepalive: Option<Duration>,
    /// Password for `sudo` when the login user is not root and sudo needs one.
    pub sudo_password: Option<Secret>,
    /// Time a process group gets between TERM and KILL when a command is ended.
    pub kill_grace: Duration,
    pub connector: Connector,
    pub limits: Limits,
}

impl fmt::Debug for SshOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshOptions")
            .field("user", &self.user)
            .field("port", &self.port)
            .field("identity_files", &self.identity_files)
            .field("use_agent", &self.use_agent)
            .field("agent_socket", &self.agent_socket)
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<callback>"),
            )
            .field("known_hosts", &self.known_hosts)
            .field("host_key_policy", &self.host_key_policy)
            .field("jump", &self.jump)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("sudo_password", &self.sudo_password)
            .field("connector", &self.connector)
            .field("limits", &self.limits)
            .finish()
    }
}

impl Default for SshOptions {
    fn default() -> Self {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/root".into());
        SshOptions {
            user: "root".into(),
            port: 22,
            identity_files: Vec::new(),
            use_agent: true,
            agent_socket: None,
            passphrase: Some(passphrase_from_env()),
            known_hosts: vec![
                home.join(".ssh/known_hosts"),
                "/etc/ssh/ssh_known_hosts".into(),
            ],
            host_key_policy: HostKeyPolicy::Strict,
            jump: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            command_timeout: None,
            keepalive: Some(Duration::from_secs(15)),
            sudo_password: None,
            kill_grace: Duration::from_secs(2),
            connector: Connector::Direct,
            limits: Limits::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2")),
            "Secret(<redacted>)"
        );
        let o = SshOptions {
            sudo_password: Some(Secret::new("hunter2")),
            ..Default::default()
        };
        assert!(!format!("{o:?}").contains("hunter2"));
    }

    #[test]
    fn limits_fit_fds() {
        let l = Limits::parallel(1000).fit_fd_limit(1024);
        assert_eq!(
            (l.connect, l.commands, l.transfers, l.open),
            (200, 298, 50, 448)
        );
        let l = Limits::parallel(50).fit_fd_limit(1 << 20);
        assert_eq!(
            (l.connect, l.commands, l.transfers, l.open),
            (50, 50, 50, 4096)
        );
        let l = Limits::parallel(5000).fit_fd_limit(1 << 20);
        assert_eq!((l.commands, l.open), (5000, 5000));
    }
}
