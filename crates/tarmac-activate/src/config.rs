//! Where things live on a host, and what tarmac-host may touch.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tarmac_types::{Generation, Role};

use crate::error::ActivateError;

/// Default install root.
pub const DEFAULT_ROOT: &str = "/opt/tarmac";
/// Default configuration directory (roles in `roles/`, bootstrap flags in `setup-flags/`).
pub const DEFAULT_CONFIG_DIR: &str = "/etc/tarmac";
/// Default parent of package state directories.
pub const DEFAULT_STATE_DIR_ROOT: &str = "/var/lib/tarmac";
/// Where unit files are copied on a real host.
pub const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";
/// With `--rooted-systemd`, units go to `<root>/ROOTED_SYSTEMD_DIR` instead.
pub const ROOTED_SYSTEMD_DIR: &str = "rooted-systemd";
/// The link trees merged from packages, in the install root and in each generation.
pub const TREE_DIRS: [&str; 4] = ["bin", "etc", "include", "lib"];
/// Names in the install root that point through `current`.
pub const STABLE_LINKS: [&str; 9] = [
    "active",
    "active.buildinfo.full.json",
    "active.json",
    "bin",
    "environment",
    "environment.export",
    "etc",
    "include",
    "lib",
];

/// Everything that decides how a host is laid out and managed.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Install root, `/opt/tarmac`.
    pub root: PathBuf,
    /// Package store, `<root>/packages` unless `--repository`.
    pub repository: PathBuf,
    /// `/etc/tarmac`.
    pub config_dir: PathBuf,
    /// `/var/lib/tarmac`.
    pub state_dir_root: PathBuf,
    /// Where units are copied: `/etc/systemd/system`, or `<root>/rooted-systemd`.
    pub unit_dir: PathBuf,
    /// Run `systemctl` (false with `--no-systemd`: units are still copied).
    pub manage_systemd: bool,
    /// Create missing package users with `useradd` (false when
    /// `<config-dir>/manual_host_users` exists, or with `--no-users`: users must exist).
    pub add_users: bool,
    /// Create and chown state directories.
    pub manage_state_dirs: bool,
    /// Wait for the host lock instead of failing.
    pub wait_for_lock: bool,
    /// Extract every fetched package, even those no role of this host uses (by default
    /// they are kept as verified archives; `tarmac_pkg::layout::used_by`).
    pub extract_all: bool,
}

impl HostConfig {
    /// Defaults for a real host under `root`.
    pub fn new(root: impl Into<PathBuf>) -> HostConfig {
        let root = root.into();
        HostConfig {
            repository: root.join("packages"),
            root,
            config_dir: PathBuf::from(DEFAULT_CONFIG_DIR),
            state_dir_root: PathBuf::from(DEFAULT_STATE_DIR_ROOT),
            unit_dir: PathBuf::from(SYSTEM_UNIT_DIR),
            manage_systemd: true,
            add_users: true,
            manage_state_dirs: true,
            wait_for_lock: false,
            extract_all: false,
        }
    }

    /// Put systemd units under the root (tests, build sandboxes).
    pub fn rooted_systemd(mut self) -> HostConfig {
        self.unit_dir = self.root.join(ROOTED_SYSTEMD_DIR);
        self
    }

    pub fn generations_dir(&self) -> PathBuf {
        self.root.join("generations")
    }

    pub fn generation_dir(&self, g: Generation) -> PathBuf {
        self.generations_dir().join(g.to_string())
    }

    pub fn current_link(&self) -> PathBuf {
        self.root.join("current")
    }

    pub fn lock_path(&self) -> PathBuf {
        self.root.join(".lock")
    }

    pub fn journal_path(&self) -> PathBuf {
        self.root.join("switch-journal.json")
    }

    pub fn roles_dir(&self) -> PathBuf {
        self.config_dir.join("roles")
    }

    pub fn setup_flags_dir(&self) -> PathBuf {
        self.config_dir.join("setup-flags")
    }

    /// `<config-dir>/secrets`: secret files delivered over SSH, by package id.
    pub fn secrets_dir(&self) -> PathBuf {
        self.config_dir.join("secrets")
    }

    /// `<unit_dir>/tarmac.target.wants`.
    pub fn wants_dir(&self) -> PathBuf {
        self.unit_dir
            .join(format!("{}.wants", crate::systemd::TARGET))
    }

    /// The roles of this host: the file names in `<config-dir>/roles/` (`master`, `agent`,
    /// `agent_public`; pkgpanda's `slave`/`slave_public` are accepted). Dotfiles are ignored.
    pub fn roles(&self) -> Result<BTreeSet<Role>, ActivateError> {
        let dir = self.roles_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
            Err(source) => return Err(ActivateError::io("read the roles directory", &dir, source)),
        };
        let mut roles = BTreeSet::new();
        for e in rd {
            let e =
                e.map_err(|source| ActivateError::io("read the roles directory", &dir, source))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let role = name
                .parse::<Role>()
                .map_err(|source| ActivateError::UnknownRole {
                    dir: dir.clone(),
                    source,
                })?;
            roles.insert(role);
        }
        Ok(roles)
    }

    /// True when users must exist already (`<config-dir>/manual_host_users`).
    pub fn manual_users(&self) -> bool {
        !self.add_users || self.config_dir.join("manual_host_users").exists()
    }

    /// Refuse roots that would make `uninstall` or `gc` destroy the system.
    pub fn check_root(&self) -> Result<(), ActivateError> {
        let r = &self.root;
        let bad = !r.is_absolute()
            || r.components().count() < 2
            || [
                Path::new("/"),
                Path::new("/etc"),
                Path::new("/usr"),
                Path::new("/var"),
                Path::new("/opt"),
            ]
            .contains(&r.as_path());
        if bad {
            return Err(ActivateError::DangerousRoot { root: r.clone() });
        }
        Ok(())
    }
}
