//! Domain nouns shared by every Tarmac crate: package ids, roles, host addresses,
//! generations, stages and digests, UTC calendar text and durations with units (`time`). Pure
//! types and parsers; no I/O.

pub mod apt_source;
pub mod confirm;
mod digest;
mod host;
mod package;
mod role;
mod stage;
pub mod switch;
pub mod time;

pub use digest::{Digest, DigestError, Sha256Writer};
pub use host::{HostAddr, HostAddrError};
pub use package::{PackageId, PackageIdError, PackageName};
pub use role::{Role, RoleError};
pub use stage::{Generation, Stage};
