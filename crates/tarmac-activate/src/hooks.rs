//! The day-two hooks of the active packages, declared like `check/`: executables in
//! `backup/`, `restore/` and `membership/` (see [`tarmac_pkg::layout`]).
//!
//! - **backup**: `backup/<hook> OUTDIR` writes a consistent snapshot of the package's state
//!   into the empty directory `OUTDIR` (one per package). tarmac-host packs every package's
//!   directory into one `.tar.zst` snapshot file and reports its size and sha256.
//! - **restore**: `restore/<hook> PHASE DIR`, run in phases across all the hosts of the
//!   quorum (`stop` on all, then `apply` on all, `start` on all, `verify` on all); `DIR`
//!   holds what the package's backup wrote, unpacked from the snapshot.
//! - **membership**: `membership/<hook> ACTION [MEMBER]` (`list`, `add HOST`, `remove HOST`)
//!   changes a quorum service's member list; `list` prints one member address per line.
//!
//! Hooks run as root with the generation's environment, one at a time, each with a timeout;
//! a hook that fails stops the operation with its output.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use tarmac_pkg::Store;
use tarmac_pkg::layout::{BACKUP_DIR, MEMBERSHIP_DIR, RESTORE_DIR};
use tarmac_types::{PackageId, Role};

use crate::checks::{self, CheckResult, CheckSpec, CheckStatus};
use crate::error::ActivateError;

/// Which hook directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    Backup,
    Restore,
    Membership,
}

impl HookKind {
    pub fn dir(self) -> &'static str {
        match self {
            HookKind::Backup => BACKUP_DIR,
            HookKind::Restore => RESTORE_DIR,
            HookKind::Membership => MEMBERSHIP_DIR,
        }
    }
}

/// A phase of a restore, run on every host of the quorum before the next one starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestorePhase {
    /// Stop the service (all members down before any data changes).
    Stop,
    /// Replace the service's data with the snapshot's (the old data is kept aside).
    Apply,
    /// Start the service again.
    Start,
    /// Check the restored data (exit 0 when it is what the snapshot holds).
    Verify,
}

impl RestorePhase {
    pub const ALL: [RestorePhase; 4] = [
        RestorePhase::Stop,
        RestorePhase::Apply,
        RestorePhase::Start,
        RestorePhase::Verify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RestorePhase::Stop => "stop",
            RestorePhase::Apply => "apply",
            RestorePhase::Start => "start",
            RestorePhase::Verify => "verify",
        }
    }
}

impl std::str::FromStr for RestorePhase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RestorePhase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown restore phase `{s}` (stop, apply, start, verify)"))
    }
}

pub use tarmac_types::hooks::{BackupAnswer as BackupReport, HookAnswer as HookReport, HookOutput};

fn output_of(r: CheckResult) -> HookOutput {
    HookOutput {
        package: r.package,
        hook: r.check,
        duration_ms: r.duration_ms,
        output: r.output,
    }
}

/// The hooks of kind `kind` in the active packages `ids`.
pub fn list(
    store: &Store,
    ids: &[PackageId],
    roles: &BTreeSet<Role>,
    kind: HookKind,
) -> Result<Vec<CheckSpec>, ActivateError> {
    checks::list_executables(store, ids, kind.dir(), roles)
}

fn run_all(
    kind: HookKind,
    specs: &[CheckSpec],
    args_for: impl Fn(&CheckSpec) -> Vec<std::ffi::OsString>,
    timeout: Duration,
    env: &[(String, String)],
) -> Result<Vec<HookOutput>, ActivateError> {
    let mut out = Vec::new();
    for spec in specs {
        let args = args_for(spec);
        let argv: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let r = checks::run_with_args(spec, &argv, timeout, env);
        if r.status != CheckStatus::Ok {
            return Err(ActivateError::HookFailed {
                kind: kind.dir(),
                package: spec.package.clone(),
                hook: spec.check.clone(),
                status: match r.status {
                    CheckStatus::TimedOut => format!(
                        "timed out after {}",
                        tarmac_types::time::format_duration(timeout)
                    ),
                    CheckStatus::NotExecutable => "is not executable".into(),
                    _ => match r.exit_code {
                        Some(c) => format!("exited with code {c}"),
                        None => "could not run".into(),
                    },
                },
                output: r.output,
            });
        }
        out.push(output_of(r));
    }
    Ok(out)
}

fn no_hooks(kind: HookKind, ids: &[PackageId]) -> ActivateError {
    ActivateError::NoHooks {
        kind: kind.dir(),
        active: ids
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn private_dir(path: &Path) -> Result<(), ActivateError> {
    fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(path)
        .map_err(|e| ActivateError::io("create", path, e))
}

/// Run every backup hook into a private work directory next to `out`, then pack the
/// directories into `out` (`.tar.zst`, mode 0600, written to a temporary name and renamed).
pub fn backup(
    store: &Store,
    ids: &[PackageId],
    roles: &BTreeSet<Role>,
    env: &[(String, String)],
    out: &Path,
    timeout: Duration,
) -> Result<BackupReport, ActivateError> {
    let specs = list(store, ids, roles, HookKind::Backup)?;
    if specs.is_empty() {
        return Err(no_hooks(HookKind::Backup, ids));
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    private_dir(parent)?;
    let work = tempfile::Builder::new()
        .prefix(".tarmac-backup-")
        .tempdir_in(parent)
        .map_err(|e| ActivateError::io("create a work directory in", parent, e))?;
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o700))
        .map_err(|e| ActivateError::io("chmod", work.path(), e))?;
    let mut packages: Vec<PackageId> = Vec::new();
    for s in &specs {
        if !packages.contains(&s.package) {
            packages.push(s.package.clone());
            private_dir(&work.path().join(s.package.name().as_str()))?;
        }
    }
    let hooks = run_all(
        HookKind::Backup,
        &specs,
        |s| vec![work.path().join(s.package.name().as_str()).into_os_string()],
        timeout,
        env,
    )?;
    // Pack: regular files and directories only, sorted, with fixed metadata.
    let mut files = Vec::new();
    let tmp = tempfile::Builder::new()
        .prefix(".tarmac-backup-")
        .suffix(".part")
        .tempfile_in(parent)
        .map_err(|e| ActivateError::io("create", parent, e))?;
    {
        let enc = zstd::Encoder::new(tmp.as_file(), 3)
            .map_err(|e| ActivateError::io("compress", out, e))?;
        let mut tar = tar::Builder::new(enc);
        let mut stack = vec![PathBuf::new()];
        let mut entries = Vec::new();
        while let Some(rel) = stack.pop() {
            let abs = work.path().join(&rel);
            let mut names: Vec<_> = fs::read_dir(&abs)
                .map_err(|e| ActivateError::io("read", &abs, e))?
                .flatten()
                .map(|e| e.file_name())
                .collect();
            names.sort();
            for n in names.into_iter().rev() {
                let r = rel.join(&n);
                let meta = fs::symlink_metadata(work.path().join(&r))
                    .map_err(|e| ActivateError::io("stat", &work.path().join(&r), e))?;
                if meta.is_dir() {
                    entries.push((r.clone(), true));
                    stack.push(r);
                } else if meta.is_file() {
                    entries.push((r, false));
                } else {
                    return Err(ActivateError::Setup {
                        message: format!(
                            "backup: {} is neither a file nor a directory; backup hooks may write only regular files",
                            work.path().join(&r).display()
                        ),
                    });
                }
            }
        }
        entries.sort();
        for (rel, is_dir) in entries {
            let abs = work.path().join(&rel);
            let mut h = tar::Header::new_gnu();
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            if is_dir {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o700);
                h.set_size(0);
                tar.append_data(&mut h, &rel, io::empty())
                    .map_err(|e| ActivateError::io("pack", &abs, e))?;
            } else {
                let f = fs::File::open(&abs).map_err(|e| ActivateError::io("read", &abs, e))?;
                let len = f
                    .metadata()
                    .map_err(|e| ActivateError::io("stat", &abs, e))?
                    .len();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o600);
                h.set_size(len);
                tar.append_data(&mut h, &rel, f)
                    .map_err(|e| ActivateError::io("pack", &abs, e))?;
                files.push((rel.to_string_lossy().into_owned(), len));
            }
        }
        let enc = tar
            .into_inner()
            .map_err(|e| ActivateError::io("pack", out, e))?;
        enc.finish()
            .map_err(|e| ActivateError::io("compress", out, e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| ActivateError::io("fsync", tmp.path(), e))?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o600))
        .map_err(|e| ActivateError::io("chmod", tmp.path(), e))?;
    let (size, sha256) = hash_file(tmp.path())?;
    tmp.persist(out)
        .map_err(|e| ActivateError::io("rename into place", out, e.error))?;
    tarmac_fsx::fsync_dir(parent).map_err(|e| ActivateError::io("fsync", parent, e))?;
    Ok(BackupReport {
        file: out.display().to_string(),
        size,
        sha256,
        packages,
        files,
        hooks,
    })
}

/// Size and sha256 of a file.
pub fn hash_file(path: &Path) -> Result<(u64, String), ActivateError> {
    let mut f = fs::File::open(path).map_err(|e| ActivateError::io("read", path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| ActivateError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size, hex::encode(h.finalize())))
}

/// Unpack a snapshot made by [`backup`] into `dest` (which must be empty): only regular
/// files and directories with plain relative paths, at most `limit` bytes in all.
pub fn unpack_snapshot(
    snapshot: &Path,
    dest: &Path,
    limit: u64,
) -> Result<Vec<String>, ActivateError> {
    let bad = |why: String| ActivateError::Setup {
        message: format!("snapshot {}: {why}", snapshot.display()),
    };
    let f = fs::File::open(snapshot).map_err(|e| ActivateError::io("read", snapshot, e))?;
    let dec = zstd::Decoder::new(f).map_err(|e| ActivateError::io("decompress", snapshot, e))?;
    let mut ar = tar::Archive::new(dec);
    let mut total = 0u64;
    let mut packages = Vec::new();
    for entry in ar
        .entries()
        .map_err(|e| ActivateError::io("read", snapshot, e))?
    {
        let mut entry = entry.map_err(|e| ActivateError::io("read", snapshot, e))?;
        let path = entry
            .path()
            .map_err(|e| ActivateError::io("read", snapshot, e))?
            .into_owned();
        if path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
            || path.as_os_str().is_empty()
        {
            return Err(bad(format!(
                "member `{}` is not a plain relative path",
                path.display()
            )));
        }
        let target = dest.join(&path);
        match entry.header().entry_type() {
            tar::EntryType::Directory => private_dir(&target)?,
            tar::EntryType::Regular => {
                let size = entry
                    .header()
                    .size()
                    .map_err(|e| ActivateError::io("read", snapshot, e))?;
                total = total.saturating_add(size);
                if total > limit {
                    return Err(bad(format!("unpacks to more than {limit} bytes")));
                }
                if let Some(p) = target.parent() {
                    private_dir(p)?;
                }
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&target)
                    .map_err(|e| ActivateError::io("create", &target, e))?;
                let n = io::copy(&mut (&mut entry).take(size), &mut out)
                    .map_err(|e| ActivateError::io("write", &target, e))?;
                if n != size {
                    return Err(bad(format!("member `{}` is truncated", path.display())));
                }
                out.flush()
                    .map_err(|e| ActivateError::io("write", &target, e))?;
            }
            other => {
                return Err(bad(format!(
                    "member `{}` is a {other:?}; snapshots hold only files and directories",
                    path.display()
                )));
            }
        }
        if let Some(Component::Normal(top)) = path.components().next() {
            let top = top.to_string_lossy().into_owned();
            if !packages.contains(&top) {
                packages.push(top);
            }
        }
    }
    Ok(packages)
}

/// The most a snapshot may unpack to.
pub const SNAPSHOT_UNPACK_LIMIT: u64 = 64 << 30;

/// Run phase `phase` of every restore hook, with the snapshot unpacked into a private
/// directory under `work_parent`.
pub fn restore(
    store: &Store,
    ids: &[PackageId],
    roles: &BTreeSet<Role>,
    env: &[(String, String)],
    snapshot: &Path,
    phase: RestorePhase,
    work_parent: &Path,
    timeout: Duration,
) -> Result<HookReport, ActivateError> {
    let specs = list(store, ids, roles, HookKind::Restore)?;
    if specs.is_empty() {
        return Err(no_hooks(HookKind::Restore, ids));
    }
    private_dir(work_parent)?;
    let work = tempfile::Builder::new()
        .prefix(".tarmac-restore-")
        .tempdir_in(work_parent)
        .map_err(|e| ActivateError::io("create a work directory in", work_parent, e))?;
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o700))
        .map_err(|e| ActivateError::io("chmod", work.path(), e))?;
    let present = unpack_snapshot(snapshot, work.path(), SNAPSHOT_UNPACK_LIMIT)?;
    for s in &specs {
        if !present.iter().any(|p| p == s.package.name().as_str()) {
            return Err(ActivateError::Setup {
                message: format!(
                    "snapshot {} holds no data for package {} (it has: {}); it was taken from another distribution",
                    snapshot.display(),
                    s.package.name(),
                    if present.is_empty() {
                        "nothing".to_owned()
                    } else {
                        present.join(", ")
                    }
                ),
            });
        }
    }
    let hooks = run_all(
        HookKind::Restore,
        &specs,
        |s| {
            vec![
                phase.as_str().into(),
                work.path().join(s.package.name().as_str()).into_os_string(),
            ]
        },
        timeout,
        env,
    )?;
    Ok(HookReport {
        kind: HookKind::Restore.dir().into(),
        args: vec![phase.as_str().into()],
        hooks,
    })
}

/// Run every membership hook with `args` (`list`, `add HOST`, `remove HOST`).
pub fn membership(
    store: &Store,
    ids: &[PackageId],
    roles: &BTreeSet<Role>,
    env: &[(String, String)],
    args: &[String],
    timeout: Duration,
) -> Result<HookReport, ActivateError> {
    let specs = list(store, ids, roles, HookKind::Membership)?;
    if specs.is_empty() {
        return Err(no_hooks(HookKind::Membership, ids));
    }
    let hooks = run_all(
        HookKind::Membership,
        &specs,
        |_| args.iter().map(Into::into).collect(),
        timeout,
        env,
    )?;
    Ok(HookReport {
        kind: HookKind::Membership.dir().into(),
        args: args.to_vec(),
        hooks,
    })
}
