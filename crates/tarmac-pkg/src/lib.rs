//! tarmac-pkg: the package format.
//!
//! - [`pkginfo`]: the `pkginfo.json` model and its validation.
//! - [`layout`]: directories inside a package (`bin/`, `systemd_master/`, `check/`, …).
//! - [`extract`]: bounded, verified-before-extracted downloads (spool + sha256, then
//!   decompress → untar with a ratio bound, atomically exposed).
//! - [`fetch`]: reading from a repository over `file://` or resumable `http://`.
//! - [`store`]: the local package store `<root>/packages/<id>/`.
//! - [`files`]: the per-package file manifest and the audit against it.
//! - [`secrets`]: secret files delivered over SSH instead of in the archive.

pub mod extract;
pub mod fetch;
pub mod files;
pub mod hostreq;
pub mod layout;
pub mod manifest;
pub mod pack;
pub mod pkginfo;
pub mod secrets;
pub mod store;
#[doc(hidden)]
pub mod testkit;

pub use extract::{Compression, ExtractError, Extracted, Pin};
pub use fetch::{FetchError, Fetcher};
pub use pkginfo::{PkgInfo, PkgInfoError};
pub use store::{Added, Package, Store, StoreError};

/// The error types of this crate whose hints are data
/// ([`tarmac_types::error_report::Hint`]), for `ErrorReport::with_hints`.
pub const TYPED_HINTS: &[tarmac_types::error_report::AsHint] = {
    use tarmac_types::error_report::as_hint;
    &[
        as_hint::<ExtractError>,
        as_hint::<StoreError>,
        as_hint::<FetchError>,
        as_hint::<pack::PackError>,
        as_hint::<PkgInfoError>,
        as_hint::<manifest::ManifestError>,
        as_hint::<manifest::BootstrapError>,
    ]
};
