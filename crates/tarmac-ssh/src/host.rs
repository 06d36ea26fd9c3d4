//! The transport: a host that can start processes. Everything above it (commands with
//! deadlines, sudo, uploads, downloads, logs, events) is shared by every transport.

use std::pin::Pin;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use std::sync::Arc;

use tarmac_types::HostAddr;
use tokio::io::AsyncWrite;

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExitStatus {
    pub code: Option<u32>,
    /// Signal name without `SIG` (`TERM`, `KILL`).
    pub signal: Option<String>,
}

/// What a running process reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcEvent {
    Stdout(Bytes),
    Stderr(Bytes),
    Exit(ExitStatus),
    /// The host refused to start the command.
    Refused,
}

/// Best-effort controls of a running process.
pub trait ProcControl: Send + Sync {
    /// Send a signal (`TERM`, `KILL`, …) to the process.
    fn signal<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ()>;
    /// Close the channel / stop waiting for the process.
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// A started process: its stdin, its events (ending when the channel closes), its controls.
pub struct Process {
    /// Shutting it down sends EOF. Dropping it must not end the process.
    pub stdin: Pin<Box<dyn AsyncWrite + Send>>,
    pub events: BoxStream<'static, ProcEvent>,
    pub control: Box<dyn ProcControl>,
}

/// A transport failure (not a command failure).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TransportError {
    pub message: String,
    /// The connection itself is gone (not only this channel).
    pub connection_lost: bool,
}

/// One connected host. `SshHost` holds one authenticated SSH connection and opens a channel per
/// process; `LocalHost` runs processes on this machine (tests, demos).
pub trait Host: Send + Sync {
    fn addr(&self) -> &HostAddr;
    /// The login user commands run as (before sudo).
    fn user(&self) -> &str;
    /// Start `command_line` under the user's shell (`$SHELL -c`).
    fn spawn<'a>(&'a self, command_line: &'a str)
    -> BoxFuture<'a, Result<Process, TransportError>>;
    fn is_closed(&self) -> bool;
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// Where a fleet's hosts come from: SSH by default ([`crate::Fleet::new`]); any other
/// transport (a fake fleet in tests, a container runtime, …) through
/// [`crate::Fleet::with_transport`]. Called once per target, on first use, within the
/// fleet's connect limit; an error makes the host unreachable for the fleet's stages.
pub trait Transport: Send + Sync {
    fn open<'a>(
        &'a self,
        target: &'a crate::Target,
        opts: &'a crate::SshOptions,
    ) -> BoxFuture<'a, Result<Arc<dyn Host>, crate::ConnectError>>;
}
