//! `tarmac build`: builds packages of a tree reproducibly in a sandbox and rolls them up
//! into one signed bootstrap artifact.
//!
//! Output directory (`--out`, default `<tree>/out`), servable as a repository:
//! ```text
//! packages/<name>/<id>.tar.zst                   every package (input-addressed id)
//! bootstrap/<bootstrap_id>.bootstrap.tar.zst     bootstrap.json + packages/<id>.tar.zst
//! bootstrap/<bootstrap_id>.active.json           JSON list of the bootstrap's package ids
//! bootstrap/<bootstrap_id>.tarmac-host           the raw host binary (if the tree has `tarmac-host`)
//! bootstrap/<bootstrap_id>.manifest.json         every artifact with size + sha256
//! bootstrap/<bootstrap_id>.manifest.json.sig     ed25519 detached signature (--sign-key)
//! bootstrap.latest                               the last bootstrap id
//! complete.latest.json                           {"bootstrap": id, "packages": [ids]}
//! logs/<id>.log                                  build logs
//! ```

pub mod bootstrap;
pub mod builder;
pub mod buildinfo;
pub mod bundle;
pub mod elf_versions;
pub mod hash;
pub mod hostneeds;
pub mod sandbox;
pub mod sources;
pub mod tree;

use std::path::PathBuf;

pub use bootstrap::BootstrapReport;
pub use builder::{BuildOptions, BuildReport, PackageReport, build, compute_ids};
pub use buildinfo::{BuildInfo, SourceSpec, SpecError, TreeInfo};
pub use tarmac_pkg::manifest::{BootstrapIndex, BootstrapMember};
pub use tree::{Plan, Tree, TreeError};

/// Identifies how ids are computed; bump when the hashing or the build contract changes.
/// 2: ELF files get their shared-library closure bundled (`bundle`).
pub const BUILDER_FORMAT: &str = "tarmac-build/2";

/// Unit names a package may not ship (the host owns them).
pub const RESERVED_UNITS: &[&str] = &[
    "tarmac.target",
    "tarmac-setup.service",
    "tarmac-download.service",
    "tarmac-recover.service",
];

/// Unit names starting with this are reserved too (as tarmac-activate checks them).
pub const RESERVED_UNIT_PREFIX: &str = "tarmac-host";

/// Files the builder writes into every package; a build script may not create them.
pub const RESERVED_FILES: &[&str] = &[
    "pkginfo.json",
    "buildinfo.full.json",
    tarmac_pkg::pack::FILE_LIST,
    ".tarmac",
    bundle::BUNDLE_DIR,
];

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("package `{package}`, source `{source_name}`")]
    Source {
        package: String,
        source_name: String,
        #[source]
        source: sources::SourceError,
    },
    #[error("package `{package}`")]
    Hash {
        package: String,
        #[source]
        source: hash::HashError,
    },
    #[error("package `{package}`: build script `{script}` not found in `{dir}`")]
    NoBuildScript {
        package: String,
        script: String,
        dir: PathBuf,
    },
    #[error("build of `{id}` failed ({status}); last lines of `{log}`:\n{tail}")]
    ScriptFailed {
        id: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("build of `{id}` produced an invalid package: {problem}")]
    BadOutput { id: String, problem: String },
    #[error(
        "build of `{id}` produced an invalid package: `{file}` changed after it was built (recorded sha256 {recorded}, now {now})"
    )]
    ChangedOutput {
        id: String,
        file: PathBuf,
        recorded: String,
        now: String,
    },
    #[error("package `{name}` is not in the tree{}", .suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownPackage {
        name: String,
        suggestion: Option<String>,
    },
    #[error("`{package}` needs `{dependency}` ({id}), which is not built yet")]
    MissingDependency {
        package: String,
        dependency: String,
        id: String,
    },
    #[error(transparent)]
    Pack(#[from] tarmac_pkg::pack::PackError),
    #[error(transparent)]
    Manifest(#[from] tarmac_pkg::manifest::ManifestError),
    #[error("{action} `{path}`")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Sandbox(sources::SourceError),
    #[error("cannot make `{id}` self-contained")]
    Bundle {
        id: String,
        #[source]
        source: bundle::BundleError,
    },
}

impl tarmac_types::error_report::Hint for BuildError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            BuildError::Tree(e) => e.hint(),
            BuildError::Sandbox(e) => e.hint(),
            BuildError::ScriptFailed { log, .. } => {
                Some(format!("the full log is {}", log.display()).into())
            }
            BuildError::MissingDependency { .. } => {
                Some("pass --recursive to build dependencies too".into())
            }
            BuildError::ChangedOutput { .. } => Some("delete the file to rebuild it".into()),
            BuildError::Pack(e) => e.hint(),
            BuildError::Manifest(e) => e.hint(),
            _ => None,
        }
    }
}

/// The error types of this crate whose hints are data
/// ([`tarmac_types::error_report::Hint`]), for `ErrorReport::with_hints`.
pub const TYPED_HINTS: &[tarmac_types::error_report::AsHint] = {
    use tarmac_types::error_report::as_hint;
    &[
        as_hint::<BuildError>,
        as_hint::<TreeError>,
        as_hint::<SpecError>,
        as_hint::<sources::SourceError>,
        as_hint::<elf_versions::ElfError>,
        as_hint::<bundle::BundleError>,
    ]
};

pub(crate) fn io_err(
    action: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> BuildError + use<> {
    let path = path.to_owned();
    move |source| BuildError::Io {
        action,
        path,
        source,
    }
}
