//! tarmac-ssh: the SSH fan-out engine.
//!
//! One authenticated connection per host (russh, in process), reused for every command and
//! transfer of a run, many channels per connection. Host keys are checked against OpenSSH
//! `known_hosts` files; ProxyJump chains run over one shared connection per bastion; commands
//! run under a wrapper that lets the engine end the whole remote process group on a deadline
//! or Ctrl-C; uploads are streamed and checked by sha256 on the host before they replace the
//! destination. Nothing here prints: progress goes out as [`tarmac_events::Event`]s, and
//! every step's output is also kept in `<log dir>/<stage>/<host>.log`.
//!
//! ```no_run
//! # async fn demo(targets: Vec<tarmac_ssh::Target>, sink: tarmac_events::Sink) -> Result<(), Box<dyn std::error::Error>> {
//! use tarmac_ssh::{Exec, Fleet, FleetContext, SshOptions, StageOptions};
//! use tarmac_events::Outcome;
//! use tarmac_types::Stage;
//!
//! let fleet = Fleet::connect(targets, SshOptions::default(), FleetContext::new(sink)).await?;
//! let report = fleet
//!     .run_all(Stage::Preflight, StageOptions::default(), |host| async move {
//!         host.check("kernel", Exec::new("uname -r")).await?;
//!         host.check("disk", Exec::root("test -w /opt")).await?;
//!         Ok(Outcome::Ok)
//!     })
//!     .await;
//! assert!(report.all_succeeded());
//! fleet.close().await;
//! # Ok(()) }
//! ```

mod connector;
mod error;
mod fleet;
mod host;
pub mod known_hosts;
mod local;
mod logdir;
mod options;
mod rlimit;
pub mod run;
pub mod script;
pub mod selector;
mod session;
mod ssh;
mod target;

pub use connector::{Connect, Connector, NetnsConnector};
pub use error::{ConnectError, HostKeyError, KeyError, StepError};
pub use fleet::{FinishHook, Fleet, FleetContext, HostResult, StageOptions, StageReport};
pub use host::{ExitStatus, Host, ProcControl, ProcEvent, Process, Transport, TransportError};
pub use known_hosts::HostKeyPolicy;
pub use local::LocalHost;
pub use logdir::{HostLog, LogDir};
pub use options::{Limits, PASSPHRASE_ENV, PassphraseFn, Secret, SshOptions, passphrase_from_env};
pub use rlimit::raise_nofile_limit;
pub use selector::{Selector, SelectorError};
pub use session::{CommandResult, Exec, HostSession, SudoStatus, Upload, UploadSource};
pub use ssh::SshHost;
pub use target::{Target, TargetError, parse_jump_chain};
