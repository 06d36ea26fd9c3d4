//! Domain nouns shared by every Tarmac crate: package ids, roles, host addresses,
//! generations, stages and digests, UTC calendar text and durations with units (`time`), POSIX
//! shell quoting (`shell`), the error report both binaries print (`error_report`). Pure types and parsers; no I/O.

pub mod apt_source;
pub mod confirm;
mod digest;
pub mod error_report;
pub mod hooks;
mod host;
mod package;
mod role;
pub mod shell;
mod stage;
pub mod switch;
pub mod time;

pub use digest::{Digest, DigestError, Sha256Writer};
pub use host::{HostAddr, HostAddrError};
pub use package::{PackageId, PackageIdError, PackageName};
pub use role::{Role, RoleError};
pub use stage::{Generation, Stage};
