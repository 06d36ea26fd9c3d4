//! The directory layout inside a package.
//!
//! ```text
//! pkginfo.json            required
//! buildinfo.full.json     optional (recorded in the generation's active.buildinfo.full.json)
//! bin/ lib/ etc/ include/ merged into /opt/tarmac/{bin,lib,etc,include}
//! systemd/                unit files, copied to /etc/systemd/system and wanted by tarmac.target
//! <dir>_<role>/           the same, only on hosts with that role (bin_master, etc_agent,
//!                         systemd_agent_public, …)
//! check/                  executables run by `tarmac-host check`
//! backup/ restore/        day-two hooks (`tarmac-host backup`, `restore`, `membership`)
//! membership/
//! <exec dir>_<role>/      the same, only on hosts with that role (check_master, …)
//! anything else           not linked; reached as /opt/tarmac/packages/<id>/… or
//!                         /opt/tarmac/active/<name>/…
//! .tarmac/                reserved: written by tarmac-host at extraction (file manifest,
//!                         the verified archive, `archived.json` for an unextracted package)
//! ```
//!
//! **Which hosts use a package** ([`used_by`]): a host uses a package when one of its special
//! directories (the link, unit and executable directories above) applies to the host's roles,
//! or when the package has no special directory at all (its files are reached by path from
//! other packages). A host keeps every package's verified archive but extracts only the
//! packages it uses; the others stay archives until a role that uses them is added.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use tarmac_types::Role;

/// Directories merged into the install root's link trees, in a fixed order.
pub const LINK_DIRS: [&str; 4] = ["bin", "etc", "include", "lib"];
/// Directory holding systemd unit files.
pub const SYSTEMD_DIR: &str = "systemd";
/// Directory holding check executables.
pub const CHECK_DIR: &str = "check";
/// Directory holding backup executables (`backup/<name> OUTDIR`: write a consistent
/// snapshot of the package's state into the empty directory OUTDIR).
pub const BACKUP_DIR: &str = "backup";
/// Directory holding restore executables (`restore/<name> PHASE DIR`, PHASE one of
/// `stop`, `apply`, `start`, `verify`; DIR holds what `backup/` wrote).
pub const RESTORE_DIR: &str = "restore";
/// Directory holding membership executables of a quorum service (`membership/<name>
/// ACTION [MEMBER]`, ACTION one of `list`, `add`, `remove`; MEMBER a host address).
pub const MEMBERSHIP_DIR: &str = "membership";
/// Metadata file every package has.
pub const PKGINFO: &str = "pkginfo.json";
/// Optional build record.
pub const BUILDINFO_FULL: &str = "buildinfo.full.json";
/// Reserved directory written by tarmac-host inside each stored package.
pub const META_DIR: &str = ".tarmac";
/// The verified archive a package was extracted from, kept inside [`META_DIR`] as
/// `archive<suffix>` (e.g. `archive.tar.zst`): what `tarmac-host relay` serves to peers.
pub const ARCHIVE_STEM: &str = "archive";

/// Marker of a package kept as its verified archive only (inside [`META_DIR`]): the JSON list
/// of the archive's special top-level directories, so a host can tell which roles use it
/// without extracting it.
pub const ARCHIVED_JSON: &str = "archived.json";

/// Directories of executables tarmac-host runs, each also in a per-role form (`check_master`).
pub const EXEC_DIRS: [&str; 4] = [CHECK_DIR, BACKUP_DIR, RESTORE_DIR, MEMBERSHIP_DIR];

/// What a special top-level directory of a package is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DirKind {
    /// One of [`LINK_DIRS`].
    Link(&'static str),
    /// [`SYSTEMD_DIR`].
    Systemd,
    /// One of [`EXEC_DIRS`].
    Exec(&'static str),
}

impl DirKind {
    pub fn base(self) -> &'static str {
        match self {
            DirKind::Link(b) | DirKind::Exec(b) => b,
            DirKind::Systemd => SYSTEMD_DIR,
        }
    }

    fn from_base(base: &str) -> Option<DirKind> {
        if base == SYSTEMD_DIR {
            return Some(DirKind::Systemd);
        }
        if let Some(d) = EXEC_DIRS.iter().find(|d| **d == base) {
            return Some(DirKind::Exec(d));
        }
        LINK_DIRS
            .iter()
            .find(|d| **d == base)
            .map(|d| DirKind::Link(d))
    }
}

/// Does a host with `roles` use a package whose special top-level directories are named
/// `special` (`bin_master`, `check`, …; other names are ignored)? Yes when one of them applies
/// to the roles, or when there is none (see the module documentation).
pub fn used_by<'a>(special: impl IntoIterator<Item = &'a str>, roles: &BTreeSet<Role>) -> bool {
    let mut any = false;
    for name in special {
        if let Some(d) = SpecialDir::classify(name) {
            if d.applies_to(roles) {
                return true;
            }
            any = true;
        }
    }
    !any
}

/// A special directory found at the top of a package: `bin`, `systemd_master`, …
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SpecialDir {
    pub kind: DirKind,
    /// `None` for the role-independent directory.
    pub role: Option<Role>,
    /// The directory's name in the package (`bin_agent_public`).
    pub name: String,
}

impl fmt::Display for SpecialDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl SpecialDir {
    /// Classify a top-level entry name. `bin_agent_public` → Link("bin"), AgentPublic.
    pub fn classify(name: &str) -> Option<SpecialDir> {
        let (base, role) = Role::split_dir(name);
        DirKind::from_base(base).map(|kind| SpecialDir {
            kind,
            role,
            name: name.to_owned(),
        })
    }

    /// Does this directory apply on a host with `roles`?
    pub fn applies_to(&self, roles: &BTreeSet<Role>) -> bool {
        self.role.is_none_or(|r| roles.contains(&r))
    }
}

/// The special directories of an extracted package at `pkg_dir`, sorted by (kind, role).
/// A top-level symlink to a directory inside the package counts as that directory.
pub fn special_dirs(pkg_dir: &Path) -> io::Result<Vec<(SpecialDir, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(pkg_dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some(special) = SpecialDir::classify(&name) else {
            continue;
        };
        let path = entry.path();
        if std::fs::metadata(&path)
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            out.push((special, path));
        }
    }
    out.sort();
    Ok(out)
}

/// The special directories that apply on a host with `roles`: the role-independent one first,
/// then each role's, in [`Role`] order.
pub fn applicable_dirs(
    pkg_dir: &Path,
    roles: &BTreeSet<Role>,
) -> io::Result<Vec<(SpecialDir, PathBuf)>> {
    Ok(special_dirs(pkg_dir)?
        .into_iter()
        .filter(|(d, _)| d.applies_to(roles))
        .collect())
}

/// Is `name` a unit file name tarmac will install (`foo.service`, `foo@.socket`, …)?
pub fn unit_name_ok(name: &str) -> bool {
    const SUFFIXES: [&str; 8] = [
        ".service",
        ".socket",
        ".timer",
        ".path",
        ".target",
        ".mount",
        ".automount",
        ".slice",
    ];
    SUFFIXES.iter().any(|s| {
        name.strip_suffix(s).is_some_and(|stem| {
            !stem.is_empty()
                && stem.bytes().all(|c| {
                    c.is_ascii_alphanumeric()
                        || matches!(c, b'@' | b'_' | b'.' | b':' | b'-' | b'\\')
                })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify() {
        let d = SpecialDir::classify("bin_agent_public").unwrap();
        assert_eq!(
            (d.kind, d.role),
            (DirKind::Link("bin"), Some(Role::AgentPublic))
        );
        let d = SpecialDir::classify("systemd_master").unwrap();
        assert_eq!((d.kind, d.role), (DirKind::Systemd, Some(Role::Master)));
        let d = SpecialDir::classify("etc").unwrap();
        assert_eq!((d.kind, d.role), (DirKind::Link("etc"), None));
        let d = SpecialDir::classify("check_master").unwrap();
        assert_eq!(
            (d.kind, d.role),
            (DirKind::Exec("check"), Some(Role::Master))
        );
        assert_eq!(
            SpecialDir::classify("membership").unwrap().kind,
            DirKind::Exec("membership")
        );
        assert!(SpecialDir::classify("usr").is_none());
        assert!(SpecialDir::classify("bin_slave").is_none());
        assert!(SpecialDir::classify("share_master").is_none());
    }

    #[test]
    fn role_filtering() {
        let tmp = tempfile::tempdir().unwrap();
        for d in [
            "bin",
            "bin_master",
            "bin_agent",
            "systemd_agent_public",
            "lib",
            "usr",
            "check",
        ] {
            std::fs::create_dir(tmp.path().join(d)).unwrap();
        }
        std::fs::write(tmp.path().join("etc"), "a file, not a dir").unwrap();
        std::os::unix::fs::symlink("usr", tmp.path().join("include")).unwrap();
        let names = |roles: &[Role]| -> Vec<String> {
            applicable_dirs(tmp.path(), &roles.iter().copied().collect())
                .unwrap()
                .into_iter()
                .map(|(d, _)| d.name)
                .collect()
        };
        assert_eq!(
            names(&[Role::Master]),
            ["bin", "bin_master", "include", "lib", "check"]
        );
        assert_eq!(
            names(&[Role::AgentPublic]),
            ["bin", "include", "lib", "systemd_agent_public", "check"]
        );
        assert_eq!(names(&[]), ["bin", "include", "lib", "check"]);
    }

    #[test]
    fn which_hosts_use_a_package() {
        let roles = |r: &[Role]| r.iter().copied().collect::<BTreeSet<Role>>();
        let prometheus = [
            "bin_master",
            "check_master",
            "libexec",
            "share",
            "systemd_master",
        ];
        assert!(used_by(prometheus, &roles(&[Role::Master])));
        assert!(!used_by(prometheus, &roles(&[Role::Agent])));
        assert!(!used_by(
            prometheus,
            &roles(&[Role::Agent, Role::AgentPublic])
        ));
        assert!(used_by(prometheus, &roles(&[Role::Agent, Role::Master])));
        // Any role-independent special directory: every host.
        assert!(used_by(["bin_master", "check"], &roles(&[Role::Agent])));
        assert!(used_by(["etc"], &roles(&[])));
        // No special directory at all: reached by path, so every host.
        assert!(used_by(["share", "tarmac-bundle"], &roles(&[Role::Agent])));
        assert!(used_by([], &roles(&[Role::Agent])));
        assert!(!used_by(["systemd_agent_public"], &roles(&[Role::Agent])));
    }

    #[test]
    fn unit_names() {
        for ok in [
            "etcd.service",
            "a@.service",
            "x.socket",
            "t.timer",
            "m-n_o.target",
        ] {
            assert!(unit_name_ok(ok), "{ok}");
        }
        for bad in [
            "README",
            ".service",
            "a b.service",
            "x.conf",
            "../x.service",
        ] {
            assert!(!unit_name_ok(bad), "{bad}");
        }
    }
}
