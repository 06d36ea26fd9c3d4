//! pkginfo `files`: per-file owner, group and mode, and secret files.
//!
//! A secret file is not in its package: `tarmac deploy`/`upgrade` upload it over SSH to
//! `<config-dir>/secrets/<package id>/<path>` (root, 0600) with the package's key
//! (`.key`). Planning a generation checks every secret file of the host's roles against the
//! HMAC-SHA256 its pkginfo lists and links it into the tree like a package file; a missing or
//! different one is a [`Problem`]. Once the package users exist (before the switch), every
//! listed file gets its owner, group and mode — e.g. `root:tarmac_prometheus 0640` — and the
//! directories above a secret file become 0711 (traversable, not listable). A generation
//! keeps pointing at its own package id's secrets, so a rollback finds them until the
//! package is garbage-collected (which removes them).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tarmac_pkg::Package;
use tarmac_pkg::pkginfo::{FileSpec, tree_path};
use tarmac_pkg::secrets;
use tarmac_types::{PackageId, Role};

use crate::config::HostConfig;
use crate::error::{ActivateError, Problem};
use crate::plan::{TreeNode, UserPlan};
use crate::users;

/// A file that gets an owner, group and mode at activation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePlan {
    pub package: PackageId,
    /// Path in the package's tree (`etc_master/prometheus/prometheus.yml`).
    pub path: String,
    /// The file on disk: in the package store, or in the secrets directory.
    pub file: PathBuf,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub mode: u32,
    pub secret: bool,
}

/// The directory holding package `id`'s secret files on this host.
pub fn secrets_dir_of(cfg: &HostConfig, id: &PackageId) -> PathBuf {
    cfg.secrets_dir().join(id.to_string())
}

/// Read a package's secret key file.
fn read_key(file: &Path) -> Result<[u8; 32], String> {
    let text = fs::read_to_string(file).map_err(|e| e.to_string())?;
    secrets::parse_key(&text)
}

/// Read a regular file without following a symlink at its path.
fn read_regular(file: &Path) -> io::Result<Vec<u8>> {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(file)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut b = Vec::new();
    f.read_to_end(&mut b)?;
    Ok(b)
}

/// Why a secret file does not match what its package lists, if it does not.
fn secret_mismatch(key: &[u8; 32], spec: &FileSpec, file: &Path) -> Option<String> {
    match read_regular(file) {
        Ok(bytes) if Some(secrets::digest(key, &bytes)) == spec.hmac_sha256 => None,
        Ok(_) => Some("does not match the package (its hmac-sha256 differs)".into()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Some("is missing".into()),
        Err(e) => Some(format!("cannot be read ({e})")),
    }
}

/// Does a user exist, or will this plan create it?
fn user_known(name: &str, users: &[UserPlan]) -> bool {
    name == "root" || users.iter().any(|u| u.username == name) || users::lookup_user(name).is_some()
}

/// Does a group exist, or will this plan create it (a package user's own group)?
fn group_known(name: &str, users: &[UserPlan]) -> bool {
    users
        .iter()
        .any(|u| u.username == name && u.group.as_deref().is_none_or(|g| g == name))
        || users::lookup_group(name).is_some()
}

/// Put `key` → `node` into the tree with real directories above it; a conflict with
/// another provider is a problem.
fn insert_link(
    tree: &mut BTreeMap<String, TreeNode>,
    key: &str,
    target: PathBuf,
    by: String,
    problems: &mut Vec<Problem>,
) {
    let parts: Vec<&str> = key.split('/').collect();
    for i in 1..parts.len() {
        let dir = parts[..i].join("/");
        match tree.get(&dir) {
            None => {
                tree.insert(dir, TreeNode::Dir { by: by.clone() });
            }
            Some(TreeNode::Dir { .. }) => {}
            Some(TreeNode::Link { by: first, .. }) => {
                problems.push(Problem::FileConflict {
                    path: dir,
                    first: first.clone(),
                    second: by,
                });
                return;
            }
        }
    }
    match tree.get(key) {
        None => {
            tree.insert(key.to_owned(), TreeNode::Link { target, by });
        }
        Some(TreeNode::Dir { by: first } | TreeNode::Link { by: first, .. }) => {
            problems.push(Problem::FileConflict {
                path: key.to_owned(),
                first: first.clone(),
                second: by,
            });
        }
    }
}

/// Check `packages`' pkginfo `files` for a host with `roles`, link the secret files into
/// `tree`, and return what to chown/chmod at activation.
pub fn plan_files(
    cfg: &HostConfig,
    packages: &[Package],
    roles: &BTreeSet<Role>,
    users: &[UserPlan],
    tree: &mut BTreeMap<String, TreeNode>,
    problems: &mut Vec<Problem>,
) -> Vec<FilePlan> {
    let mut out = Vec::new();
    for p in packages {
        if p.archived.is_some() {
            continue; // no role of this host uses it, so none of its files apply
        }
        let dir = secrets_dir_of(cfg, &p.id);
        let mut key: Option<Option<[u8; 32]>> = None;
        for (path, spec) in &p.info.files {
            let Some((tree_key, role)) = tree_path(path) else {
                continue; // refused when pkginfo was parsed
            };
            if role.is_some_and(|r| !roles.contains(&r)) {
                continue;
            }
            let in_package = p.path.join(path);
            let file = if spec.secret {
                if fs::symlink_metadata(&in_package).is_ok() {
                    problems.push(Problem::SecretInPackage {
                        package: p.id.clone(),
                        path: path.clone(),
                    });
                    continue;
                }
                let key_file = dir.join(secrets::KEY_FILE);
                let k = *key.get_or_insert_with(|| match read_key(&key_file) {
                    Ok(k) => Some(k),
                    Err(reason) => {
                        problems.push(Problem::SecretKeyMissing {
                            package: p.id.clone(),
                            file: key_file.clone(),
                            reason,
                        });
                        None
                    }
                });
                let Some(k) = k else { continue };
                let file = dir.join(path);
                if let Some(reason) = secret_mismatch(&k, spec, &file) {
                    problems.push(Problem::SecretFile {
                        package: p.id.clone(),
                        path: path.clone(),
                        file,
                        reason,
                    });
                    continue;
                }
                insert_link(
                    tree,
                    &tree_key,
                    file.clone(),
                    format!("{} ({path}, secret)", p.id),
                    problems,
                );
                file
            } else {
                match fs::symlink_metadata(&in_package) {
                    Ok(m) if m.is_file() => in_package,
                    _ => {
                        problems.push(Problem::BadFileEntry {
                            package: p.id.clone(),
                            path: path.clone(),
                            reason: "is not a regular file of the package".into(),
                        });
                        continue;
                    }
                }
            };
            if let Some(o) = spec.owner.as_deref().filter(|o| !user_known(o, users)) {
                problems.push(Problem::FileOwnerMissing {
                    package: p.id.clone(),
                    path: path.clone(),
                    owner: o.to_owned(),
                });
            }
            if let Some(g) = spec.group.as_deref().filter(|g| !group_known(g, users)) {
                problems.push(Problem::FileGroupMissing {
                    package: p.id.clone(),
                    path: path.clone(),
                    group: g.to_owned(),
                });
            }
            let packaged_mode = if spec.secret {
                None
            } else {
                fs::metadata(&file)
                    .ok()
                    .map(|m| m.permissions().mode() & 0o777)
            };
            out.push(FilePlan {
                package: p.id.clone(),
                path: path.clone(),
                mode: spec.effective_mode(packaged_mode),
                file,
                owner: spec.owner.clone(),
                group: spec.group.clone(),
                secret: spec.secret,
            });
        }
    }
    out
}

fn ids_of(f: &FilePlan) -> Result<(u32, u32), ActivateError> {
    let uid = match f.owner.as_deref() {
        None | Some("root") => 0,
        Some(u) => {
            users::lookup_user(u)
                .ok_or_else(|| ActivateError::Invalid {
                    problems: vec![Problem::FileOwnerMissing {
                        package: f.package.clone(),
                        path: f.path.clone(),
                        owner: u.to_owned(),
                    }],
                })?
                .uid
        }
    };
    let gid = match f.group.as_deref() {
        None => 0,
        Some(g) => {
            users::lookup_group(g)
                .ok_or_else(|| ActivateError::Invalid {
                    problems: vec![Problem::FileGroupMissing {
                        package: f.package.clone(),
                        path: f.path.clone(),
                        group: g.to_owned(),
                    }],
                })?
                .gid
        }
    };
    Ok((uid, gid))
}

/// Give every planned file its owner, group and mode (after the users exist). The mode is
/// first narrowed to the owner's bits, so that no one ever has more access than the final
/// mode grants; directories above secret files become 0711, and the configuration directory
/// gets the search (x) bits for group and others.
pub fn apply(cfg: &HostConfig, files: &[FilePlan]) -> Result<(), ActivateError> {
    for f in files {
        let (uid, gid) = ids_of(f)?;
        let err = |what: &'static str| {
            let file = f.file.clone();
            move |e: io::Error| ActivateError::io(what, &file, e)
        };
        let h = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&f.file)
            .map_err(err("open"))?;
        let meta = h.metadata().map_err(err("stat"))?;
        if !meta.is_file() {
            return Err(err("chown")(io::Error::other("not a regular file")));
        }
        if meta.uid() != uid || meta.gid() != gid || meta.permissions().mode() & 0o7777 != f.mode {
            h.set_permissions(fs::Permissions::from_mode(
                meta.permissions().mode() & f.mode & 0o700,
            ))
            .map_err(err("chmod"))?;
            std::os::unix::fs::fchown(&h, Some(uid), Some(gid)).map_err(err("chown"))?;
            h.set_permissions(fs::Permissions::from_mode(f.mode))
                .map_err(err("chmod"))?;
        }
        if f.secret {
            // The configuration directory must be traversable too (it is 0755 when
            // install.sh made it; an upload before that may have left it tighter).
            let cd = &cfg.config_dir;
            let m = fs::metadata(cd).map_err(|e| ActivateError::io("stat", cd, e))?;
            if m.permissions().mode() & 0o011 != 0o011 {
                fs::set_permissions(
                    cd,
                    fs::Permissions::from_mode(m.permissions().mode() & 0o7777 | 0o011),
                )
                .map_err(|e| ActivateError::io("chmod", cd, e))?;
            }
            let top = cfg.secrets_dir();
            let mut d = f.file.parent();
            while let Some(dir) = d {
                if !dir.starts_with(&top) {
                    break;
                }
                fs::set_permissions(dir, fs::Permissions::from_mode(0o711))
                    .map_err(|e| ActivateError::io("chmod", dir, e))?;
                if dir == top {
                    break;
                }
                d = dir.parent();
            }
        }
    }
    Ok(())
}

/// What `verify` finds wrong with the planned files of the current generation: a secret
/// that is missing or changed, or an owner, group or mode that differs.
pub fn audit(cfg: &HostConfig, packages: &[Package], roles: &BTreeSet<Role>) -> Vec<String> {
    let mut out = Vec::new();
    for p in packages {
        if p.archived.is_some() {
            continue; // no role of this host uses it, so none of its files apply
        }
        let dir = secrets_dir_of(cfg, &p.id);
        let key = read_key(&dir.join(secrets::KEY_FILE));
        for (path, spec) in &p.info.files {
            let Some((_, role)) = tree_path(path) else {
                continue;
            };
            if role.is_some_and(|r| !roles.contains(&r)) {
                continue;
            }
            let file = if spec.secret {
                dir.join(path)
            } else {
                p.path.join(path)
            };
            if spec.secret {
                let why = match &key {
                    Ok(k) => secret_mismatch(k, spec, &file),
                    Err(e) => Some(format!(
                        "cannot be checked: its key {} is unusable ({e})",
                        dir.join(secrets::KEY_FILE).display()
                    )),
                };
                if let Some(why) = why {
                    out.push(format!(
                        "{}: secret file `{path}` ({}) {why}: re-run deploy/upgrade from the controller (secrets are delivered over SSH)",
                        p.id,
                        file.display()
                    ));
                    continue;
                }
            }
            let Ok(meta) = fs::symlink_metadata(&file) else {
                out.push(format!(
                    "{}: `{path}` ({}) is missing",
                    p.id,
                    file.display()
                ));
                continue;
            };
            let mode = meta.permissions().mode() & 0o7777;
            let want_mode = spec.mode.unwrap_or(if spec.secret { 0o600 } else { mode });
            if mode != want_mode {
                out.push(format!(
                    "{}: `{path}` ({}) has mode {mode:04o}, pkginfo says {want_mode:04o}",
                    p.id,
                    file.display()
                ));
            }
            if spec.secret && mode & 0o007 != 0 {
                out.push(format!(
                    "{}: secret file `{path}` ({}) is readable by other users (mode {mode:04o})",
                    p.id,
                    file.display()
                ));
            }
            let want_uid = match spec.owner.as_deref() {
                None | Some("root") => Some(0),
                Some(u) => users::lookup_user(u).map(|u| u.uid),
            };
            let want_gid = match spec.group.as_deref() {
                None => Some(0),
                Some(g) => users::lookup_group(g).map(|g| g.gid),
            };
            if want_uid != Some(meta.uid()) || want_gid != Some(meta.gid()) {
                out.push(format!(
                    "{}: `{path}` ({}) is owned by {}:{}, pkginfo says {}:{}",
                    p.id,
                    file.display(),
                    meta.uid(),
                    meta.gid(),
                    spec.owner.as_deref().unwrap_or("root"),
                    spec.group.as_deref().unwrap_or("root"),
                ));
            }
        }
    }
    out
}

/// The mode a file of `package` may have in the store other than its archive's: the mode
/// its pkginfo `files` sets (for `verify`, which compares the store with the archive).
pub fn declared_mode(package: &Package, path: &str) -> Option<u32> {
    package
        .info
        .files
        .get(path)
        .filter(|s| !s.secret)
        .and_then(|s| s.mode)
}

/// Remove package `id`'s secret files (gc, remove).
pub fn remove_secrets(cfg: &HostConfig, id: &PackageId) -> Result<(), ActivateError> {
    let dir = secrets_dir_of(cfg, id);
    crate::fsutil::make_writable_and_remove(&dir).map_err(|e| ActivateError::io("remove", &dir, e))
}
