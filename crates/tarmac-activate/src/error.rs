//! Typed errors. Validation problems are collected (all of them, not the first) before
//! anything on the host is touched.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tarmac_pkg::StoreError;
use tarmac_types::error_report::Hint;
use tarmac_types::{Generation, PackageId, PackageName, RoleError};

/// One reason a package set cannot be activated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    RepeatedName {
        name: PackageName,
        ids: Vec<PackageId>,
    },
    MissingRequire {
        package: PackageId,
        requires: String,
    },
    ReservedEnvKey {
        package: PackageId,
        key: String,
    },
    DuplicateEnvKey {
        key: String,
        first: PackageId,
        second: PackageId,
    },
    SysctlConflict {
        key: String,
        first: PackageId,
        first_value: String,
        second: PackageId,
        second_value: String,
    },
    SysctlWithoutService {
        package: PackageId,
    },
    /// Kept as its archive only, but this host's roles use it.
    NotExtracted {
        package: PackageId,
    },
    /// Two packages (or two directories of one package) provide the same path.
    FileConflict {
        path: String,
        first: String,
        second: String,
    },
    /// A package provides a path tarmac-host generates itself.
    ReservedPath {
        package: PackageId,
        path: String,
    },
    ReservedUnit {
        package: PackageId,
        unit: String,
    },
    BadUnit {
        package: PackageId,
        path: String,
        reason: String,
    },
    DuplicateUnit {
        unit: String,
        first: PackageId,
        second: PackageId,
    },
    /// A unit with this name exists in the unit directory and was not put there by tarmac.
    ForeignUnit {
        unit: String,
        path: PathBuf,
    },
    UserConflict {
        username: String,
        first: PackageId,
        second: PackageId,
    },
    UserMissing {
        package: PackageId,
        username: String,
    },
    GroupMissing {
        package: PackageId,
        group: String,
    },
    UserNotInGroup {
        package: PackageId,
        username: String,
        group: String,
    },
    /// A secret file of the host's roles is missing or differs from what its package lists.
    SecretFile {
        package: PackageId,
        path: String,
        file: PathBuf,
        reason: String,
    },
    /// The key of a package's secret files is missing or unreadable.
    SecretKeyMissing {
        package: PackageId,
        file: PathBuf,
        reason: String,
    },
    /// A package ships a file its pkginfo declares secret.
    SecretInPackage {
        package: PackageId,
        path: String,
    },
    BadFileEntry {
        package: PackageId,
        path: String,
        reason: String,
    },
    FileOwnerMissing {
        package: PackageId,
        path: String,
        owner: String,
    },
    FileGroupMissing {
        package: PackageId,
        path: String,
        group: String,
    },
}

/// What every problem with a secret file tells the operator to do.
pub const SECRETS_HINT: &str =
    "re-run deploy/upgrade from the controller (secrets are delivered over SSH)";

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::RepeatedName { name, ids } => {
                let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
                write!(f, "repeated name `{name}`: {}", ids.join(", "))
            }
            Problem::MissingRequire { package, requires } => {
                write!(
                    f,
                    "{package} requires `{requires}`, which is not in the set"
                )
            }
            Problem::ReservedEnvKey { package, key } => write!(
                f,
                "{package}: environment key `{key}` is reserved (tarmac-host sets PATH and LD_LIBRARY_PATH)"
            ),
            Problem::DuplicateEnvKey { key, first, second } => {
                write!(
                    f,
                    "environment key `{key}` is set by both {first} and {second}"
                )
            }
            Problem::SysctlConflict {
                key,
                first,
                first_value,
                second,
                second_value,
            } => write!(
                f,
                "sysctl `{key}` conflicts: {first} wants {first_value}, {second} wants {second_value}"
            ),
            Problem::SysctlWithoutService { package } => write!(
                f,
                "{package} declares sysctl settings but ships no .service unit they could apply to"
            ),
            Problem::NotExtracted { package } => write!(
                f,
                "{package} is kept as its verified archive only, but this host's roles use it (`tarmac-host activate` extracts it first)"
            ),
            Problem::FileConflict {
                path,
                first,
                second,
            } => {
                write!(f, "`{path}` is provided by both {first} and {second}")
            }
            Problem::ReservedPath { package, path } => {
                write!(
                    f,
                    "{package} provides `{path}`, which tarmac-host generates itself"
                )
            }
            Problem::ReservedUnit { package, unit } => {
                write!(
                    f,
                    "{package} ships the unit `{unit}`, whose name is reserved for tarmac-host"
                )
            }
            Problem::BadUnit {
                package,
                path,
                reason,
            } => write!(f, "{package}: `{path}`: {reason}"),
            Problem::DuplicateUnit {
                unit,
                first,
                second,
            } => {
                write!(f, "unit `{unit}` is shipped by both {first} and {second}")
            }
            Problem::ForeignUnit { unit, path } => write!(
                f,
                "unit `{unit}` already exists at {} and was not installed by tarmac-host",
                path.display()
            ),
            Problem::UserConflict {
                username,
                first,
                second,
            } => write!(
                f,
                "user `{username}` is declared by {first} and {second} with different groups"
            ),
            Problem::UserMissing { package, username } => write!(
                f,
                "{package} runs as `{username}`, which does not exist and may not be created here (manual_host_users)"
            ),
            Problem::GroupMissing { package, group } => {
                write!(f, "{package}: group `{group}` does not exist")
            }
            Problem::UserNotInGroup {
                package,
                username,
                group,
            } => {
                write!(
                    f,
                    "{package}: existing user `{username}` is not in group `{group}`"
                )
            }
            Problem::SecretFile {
                package,
                path,
                file,
                reason,
            } => write!(
                f,
                "{package}: secret file `{path}` ({}) {reason}: {SECRETS_HINT}",
                file.display()
            ),
            Problem::SecretKeyMissing {
                package,
                file,
                reason,
            } => write!(
                f,
                "{package}: the key of its secret files ({}) is unusable ({reason}): {SECRETS_HINT}",
                file.display()
            ),
            Problem::SecretInPackage { package, path } => write!(
                f,
                "{package} ships `{path}` in its archive, but its pkginfo declares it a secret file (secret files are delivered over SSH, never inside a package)"
            ),
            Problem::BadFileEntry {
                package,
                path,
                reason,
            } => write!(f, "{package}: pkginfo files[\"{path}\"] {reason}"),
            Problem::FileOwnerMissing {
                package,
                path,
                owner,
            } => write!(
                f,
                "{package}: `{path}` is to be owned by `{owner}`, which does not exist and is not a user of a package in the set"
            ),
            Problem::FileGroupMissing {
                package,
                path,
                group,
            } => write!(
                f,
                "{package}: `{path}` is to belong to group `{group}`, which does not exist and is not the own group of a package user in the set"
            ),
        }
    }
}

/// Why an activation-side operation failed. Hints are data ([`Hint`]), not in the message.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("{}", invalid_message(problems))]
    Invalid { problems: Vec<Problem> },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "not in the package store {}: {}",
        dir.display(),
        ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
    )]
    MissingPackages { ids: Vec<PackageId>, dir: PathBuf },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unknown role file in {}", dir.display())]
    UnknownRole {
        dir: PathBuf,
        #[source]
        source: RoleError,
    },
    #[error(
        "another tarmac-host ({holder}) holds {}",
        path.display()
    )]
    Locked { path: PathBuf, holder: String },
    #[error("no package named `{name}` is active, so there is nothing to swap it with")]
    NotActive { name: PackageName },
    #[error("nothing is active on this host yet")]
    NothingActive,
    #[error("generation {generation} does not exist")]
    NoSuchGeneration { generation: Generation },
    #[error(
        "the pending switch is to generation {}, not {asked}",
        pending.map_or_else(|| "?".to_owned(), |g| g.to_string())
    )]
    ConfirmMismatch {
        asked: Generation,
        pending: Option<Generation>,
    },
    #[error(
        "too late to confirm generation {asked}: the host is on generation {}{}",
        current.map_or_else(|| "none".to_owned(), |g| g.to_string()),
        if *reverted { " (it reverted the unconfirmed switch)" } else { "" }
    )]
    ConfirmTooLate {
        asked: Generation,
        current: Option<Generation>,
        reverted: bool,
    },
    #[error("the pending-confirmation record {} is unreadable", path.display())]
    PendingRecord {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("there is no generation before {current} to roll back to")]
    NoPreviousGeneration { current: Generation },
    #[error(
        "refusing to remove {id}: it is used by generation(s) {}{}",
        join(generations),
        if *active { " (active)" } else { "" }
    )]
    PackageInUse {
        id: PackageId,
        generations: Vec<Generation>,
        active: bool,
    },
    #[error("refusing to operate on {}: not a dedicated install root", root.display())]
    DangerousRoot { root: PathBuf },
    #[error("`systemctl {args}` failed ({status}): {output}")]
    Systemctl {
        args: String,
        status: String,
        output: String,
    },
    #[error("cannot create user `{username}`: `{command}` failed: {output}")]
    UserAdd {
        username: String,
        command: String,
        output: String,
    },
    #[error("the switch journal {} is unreadable", path.display())]
    Journal {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "interrupted switch from {from:?} to {to} cannot be recovered: `current` points at {current:?}"
    )]
    Unrecoverable {
        from: Option<Generation>,
        to: Generation,
        current: Option<Generation>,
        journal: PathBuf,
    },
    #[error("generation {generation} is damaged: {reason}")]
    BadGeneration {
        generation: Generation,
        reason: String,
    },
    #[error("setup: {message}")]
    Setup { message: String },
    #[error(
        "{kind} hook {hook} of {package} {status}{}",
        if output.trim().is_empty() { String::new() } else { format!(":\n{}", output.trim_end()) }
    )]
    HookFailed {
        kind: &'static str,
        package: PackageId,
        hook: String,
        status: String,
        output: String,
    },
    #[error("no active package has a {kind}/ hook (active: {active})")]
    NoHooks { kind: &'static str, active: String },
    #[error("setup: no setup flags in {} and nothing is active", dir.display())]
    NoSetupFlags { dir: PathBuf },
    #[error("setup: cannot use {what}")]
    SetupSource {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn join(gens: &[Generation]) -> String {
    gens.iter()
        .map(|g| g.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn invalid_message(problems: &[Problem]) -> String {
    let mut s = format!(
        "the package set cannot be activated ({} problem{}):",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        s.push_str("\n  - ");
        s.push_str(&p.to_string());
    }
    s
}

impl Hint for ActivateError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        let h: Cow<'_, str> = match self {
            ActivateError::Invalid { .. } => "nothing on the host was changed".into(),
            ActivateError::MissingPackages { .. } => "fetch them first (`tarmac-host fetch --repository-url URL ID…`) or add them (`tarmac-host add FILE`)".into(),
            ActivateError::Locked { .. } => "pass --wait to wait for it".into(),
            ActivateError::NothingActive => {
                "run `tarmac-host activate ID…` or `tarmac-host setup`".into()
            }
            ActivateError::NoSuchGeneration { .. } => "`tarmac-host generations` lists them".into(),
            ActivateError::ConfirmMismatch { .. } => {
                "`tarmac-host status` shows what is pending".into()
            }
            ActivateError::PendingRecord { .. } => {
                "inspect it; `tarmac-host revert` goes back to the generation it names".into()
            }
            ActivateError::PackageInUse { active: false, .. } => {
                "`tarmac-host gc --keep 1` drops old generations first".into()
            }
            ActivateError::Unrecoverable { journal, .. } => format!(
                "inspect {} and `tarmac-host generations`",
                journal.display()
            )
            .into(),
            ActivateError::NoHooks { kind, .. } => format!(
                "the distribution's packages must ship executables in {kind}/ (see docs/packages.md)"
            )
            .into(),
            ActivateError::NoSetupFlags { .. } => {
                "install.sh writes repository-url and cluster-package-list there".into()
            }
            ActivateError::Store(e) => return e.hint(),
            _ => return None,
        };
        Some(h)
    }
}

impl ActivateError {
    pub fn io(action: impl Into<String>, path: &Path, source: io::Error) -> ActivateError {
        ActivateError::Io {
            action: action.into(),
            path: path.to_path_buf(),
            source,
        }
    }
}
