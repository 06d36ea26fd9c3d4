//! Errors of the SSH engine. Each names the host (and file, key, step) it is about; where the
//! operator can act, the type gives a hint ([`Hint`]), shown after the message.

use std::borrow::Cow;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tarmac_events::Outcome;
use tarmac_types::HostAddr;
use tarmac_types::error_report::{Hint, text_with_hint};

/// A host key was not acceptable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HostKeyError {
    #[error(
        "host key for {host} has CHANGED: {known} is recorded, but the host presented {presented} ({key_type})"
    )]
    Changed {
        host: String,
        /// `SHA256:… (type) at file:line`, for every recorded key.
        known: String,
        presented: String,
        key_type: String,
        name: String,
        file: String,
    },
    #[error(
        "host key for {host} is not known ({presented}, {key_type}) and host key checking is strict"
    )]
    Unknown {
        host: String,
        hostname: String,
        port: u16,
        presented: String,
        key_type: String,
        file: String,
    },
    #[error("host key {presented} of {host} is marked @revoked at {source_line}")]
    Revoked {
        host: String,
        presented: String,
        source_line: String,
    },
    #[error("host certificate of {host} is not acceptable: {reason}")]
    Certificate { host: String, reason: String },
    #[error("cannot record the host key of {host} in {path}: {message}")]
    Record {
        host: String,
        path: PathBuf,
        message: String,
    },
}

/// A host could not be reached or logged into.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {host}: {source}")]
    Tcp {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "no SSH connection to {host} within {}s",
        after.as_secs_f64()
    )]
    Timeout { host: String, after: Duration },
    #[error("SSH handshake with {host} failed: {source}")]
    Handshake {
        host: String,
        #[source]
        source: russh::Error,
    },
    #[error(transparent)]
    HostKey(#[from] HostKeyError),
    #[error("authentication as `{user}` on {host} failed (tried: {tried})")]
    Auth {
        host: String,
        user: String,
        tried: String,
    },
    #[error("cannot reach {host} through jump host {jump}: {message}")]
    Jump {
        host: String,
        jump: String,
        message: String,
    },
    #[error("connecting to {host} was cancelled")]
    Cancelled { host: String },
    #[error("cannot connect to {host}: {message}")]
    Other { host: String, message: String },
}

impl ConnectError {
    /// Worth another attempt (refused, reset, dropped during the handshake: sshd's
    /// `MaxStartups` drops, a host still booting). Timeouts, host keys and
    /// authentication failures are final.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectError::Tcp { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::NetworkUnreachable
                    | io::ErrorKind::UnexpectedEof
            ),
            ConnectError::Handshake { source, .. } => matches!(
                source,
                russh::Error::Disconnect
                    | russh::Error::HUP
                    | russh::Error::IO(_)
                    | russh::Error::Version
                    | russh::Error::KexInit
            ),
            ConnectError::Jump { .. } => true,
            _ => false,
        }
    }
}

/// Loading key files failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("SSH key {path} is encrypted and no passphrase was given")]
    Encrypted { path: PathBuf },
    #[error("wrong passphrase for SSH key {path}")]
    WrongPassphrase { path: PathBuf },
    #[error("cannot read SSH key {path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("no way to authenticate: no usable key file and no ssh-agent")]
    NoMethod,
    #[error("cannot read known_hosts file {path}: {source}")]
    KnownHosts {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A step on one host did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StepError {
    #[error("{host} is unreachable: {source}")]
    Unreachable {
        host: HostAddr,
        #[source]
        source: Arc<ConnectError>,
    },
    #[error("`{step}` failed on {host}: {}{detail}", status_text(*exit_code, signal.as_deref()))]
    Failed {
        host: HostAddr,
        step: String,
        exit_code: Option<i32>,
        signal: Option<String>,
        /// The last lines of stderr (or a reason), prefixed with a newline when not empty.
        detail: String,
    },
    #[error("`{step}` on {host} timed out after {}s; its processes were ended", after.as_secs_f64())]
    TimedOut {
        host: HostAddr,
        step: String,
        after: Duration,
    },
    #[error("`{step}` on {host} was cancelled")]
    Cancelled { host: HostAddr, step: String },
    #[error("lost the connection to {host} during `{step}`: {message}")]
    ConnectionLost {
        host: HostAddr,
        step: String,
        message: String,
    },
    #[error("sudo on {host} failed: {message}")]
    Sudo {
        host: HostAddr,
        message: String,
        /// What to do about it, when known.
        hint: Option<String>,
    },
    #[error("transfer `{step}` to/from {host} failed: {message}")]
    Transfer {
        host: HostAddr,
        step: String,
        message: String,
    },
    #[error("{message}: {path}")]
    Local { path: PathBuf, message: String },
}

fn status_text(code: Option<i32>, signal: Option<&str>) -> String {
    match (code, signal) {
        (_, Some(s)) => format!("killed by signal {s}"),
        (Some(c), None) => format!("exit code {c}"),
        (None, None) => "no exit status".into(),
    }
}

impl StepError {
    /// The outcome to report for a host whose step ended with this error.
    pub fn outcome(&self) -> Outcome {
        match self {
            StepError::Unreachable { source, .. } => Outcome::Unreachable {
                message: text_with_hint(&**source),
            },
            StepError::ConnectionLost { message, .. } => Outcome::Unreachable {
                message: format!("connection lost: {message}"),
            },
            StepError::Failed {
                exit_code, signal, ..
            } => Outcome::Failed {
                exit_code: *exit_code,
                signal: signal.clone(),
                message: self.to_string(),
            },
            StepError::TimedOut { after, .. } => Outcome::TimedOut {
                after_ms: tarmac_events::millis(*after),
            },
            StepError::Cancelled { .. } => Outcome::Cancelled,
            StepError::Sudo { .. } | StepError::Transfer { .. } | StepError::Local { .. } => {
                Outcome::Failed {
                    exit_code: None,
                    signal: None,
                    message: text_with_hint(self),
                }
            }
        }
    }
}

impl Hint for HostKeyError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        match self {
            HostKeyError::Changed { host, name, file, .. } => Some(format!(
                "if {host} was reinstalled, remove the old key with `ssh-keygen -R {name} -f {file}` and connect again; otherwise someone may be intercepting the connection"
            ).into()),
            HostKeyError::Unknown { hostname, port, file, .. } => Some(format!(
                "check the fingerprint and add the key to {file} (e.g. `ssh-keyscan -p {port} {hostname} >> {file}`), or set ssh_host_key_policy: accept-new to record keys on first contact"
            ).into()),
            _ => None,
        }
    }
}

impl Hint for ConnectError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        match self {
            ConnectError::Timeout { .. } => Some(
                "check that the host is up and its SSH port is reachable from here (firewall, routing, ssh_port)".into(),
            ),
            ConnectError::HostKey(e) => e.hint(),
            ConnectError::Auth { user, .. } => Some(format!(
                "check ssh_user and ssh_key_path, and that the public key is in ~{user}/.ssh/authorized_keys on the host"
            ).into()),
            _ => None,
        }
    }
}

impl Hint for KeyError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        match self {
            KeyError::Encrypted { path } => Some(format!(
                "load it into ssh-agent (`ssh-add {}`), or give the passphrase in the environment variable TARMAC_SSH_PASSPHRASE",
                path.display()
            ).into()),
            KeyError::NoMethod => {
                Some("set ssh_key_path, or start ssh-agent and set SSH_AUTH_SOCK".into())
            }
            _ => None,
        }
    }
}

/// Only [`StepError::Sudo`] has a hint of its own; an unreachable host's hint is its
/// [`ConnectError`]'s, the next link of the chain.
impl Hint for StepError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        match self {
            StepError::Sudo { hint: Some(h), .. } => Some(h.as_str().into()),
            _ => None,
        }
    }
}
