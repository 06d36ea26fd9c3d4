//! systemd integration: unit files are **copied** into the unit directory (so a separate
//! `/opt` mount works), `tarmac.target.wants/<unit>` links pull them in, and
//! `tarmac.target` is wanted by `multi-user.target`. `systemctl` is only run when systemd is
//! managed (not with `--no-systemd`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::HostConfig;
use crate::error::ActivateError;
use crate::failpoint;
use crate::fsutil;

/// The target every package unit is wanted by.
pub const TARGET: &str = "tarmac.target";
/// The boot-time unit that runs `tarmac-host setup` (recovery first).
pub const SETUP_SERVICE: &str = "tarmac-setup.service";
/// The persistent unit that enforces a switch's confirm deadline (`tarmac-host confirm-guard`):
/// started by every confirmable switch, and at every boot.
pub const CONFIRM_SERVICE: &str = "tarmac-confirm.service";
/// Hidden directory in the unit directory where a switch stages changed units.
pub const STAGING_DIR: &str = ".tarmac-staged";

/// Write a file and fsync it (not its directory).
fn write_durable(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    f.set_permissions(fs::Permissions::from_mode(0o644))?;
    f.sync_all()
}

/// Unit names a package may never ship.
pub const RESERVED_UNITS: [&str; 5] = [
    TARGET,
    SETUP_SERVICE,
    CONFIRM_SERVICE,
    "tarmac-download.service",
    "tarmac-recover.service",
];

pub fn is_reserved(name: &str) -> bool {
    RESERVED_UNITS.contains(&name) || name.starts_with("tarmac-host")
}

/// Contents of `tarmac.target`.
pub fn target_unit() -> &'static str {
    "[Unit]\n\
     Description=Tarmac: the services of the active generation\n\
     \n\
     [Install]\n\
     WantedBy=multi-user.target\n"
}

/// Contents of `tarmac-setup.service`, running the `tarmac-host` at `binary`.
/// `setup` recovers an interrupted switch first, installs what the setup flags ask for
/// (when present), and starts `tarmac.target`.
pub fn setup_service_unit(binary: &Path) -> String {
    format!(
        "[Unit]\n\
         Description=Tarmac: recover an interrupted switch, set up and start the active generation\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={} --wait setup\n\
         TimeoutStartSec=30min\n\
         StandardOutput=journal+console\n\
         StandardError=journal+console\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        binary.display()
    )
}

/// Contents of `tarmac-confirm.service`, running the `tarmac-host` at `binary`. A plain
/// service (not ordered before `tarmac.target`: a revert starts units itself, and an
/// ordering would make it wait for its own start job). At boot it reverts a pending switch
/// that survived the reboot; after a switch it sleeps until the deadline.
pub fn confirm_service_unit(binary: &Path, root: &Path, config_dir: &Path) -> String {
    format!(
        "[Unit]\n\
         Description=Tarmac: revert a switch that is not confirmed in time\n\
         After=local-fs.target\n\
         ConditionPathExists={root}/pending.json\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={bin} --root {root} --config-dir {config} --wait confirm-guard\n\
         Restart=on-failure\n\
         RestartSec=5s\n\
         StandardOutput=journal+console\n\
         StandardError=journal+console\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        bin = binary.display(),
        root = root.display(),
        config = config_dir.display(),
    )
}

/// Runs `systemctl` (or nothing, when systemd is not managed).
pub struct Systemd<'a> {
    cfg: &'a HostConfig,
}

impl<'a> Systemd<'a> {
    pub fn new(cfg: &'a HostConfig) -> Self {
        Systemd { cfg }
    }

    fn systemctl(&self, args: &[&str], tolerated: &[i32]) -> Result<(), ActivateError> {
        if !self.cfg.manage_systemd {
            return Ok(());
        }
        let out = Command::new("systemctl").args(args).output().map_err(|e| {
            ActivateError::Systemctl {
                args: args.join(" "),
                status: "not run".into(),
                output: e.to_string(),
            }
        })?;
        let code = out.status.code();
        if out.status.success() || code.is_some_and(|c| tolerated.contains(&c)) {
            return Ok(());
        }
        let mut output = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if output.is_empty() {
            output = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
        Err(ActivateError::Systemctl {
            args: args.join(" "),
            status: code.map_or_else(|| "killed".to_owned(), |c| format!("exit code {c}")),
            output,
        })
    }

    /// Stop `units` with one `systemctl stop` (so sockets and services go together).
    /// Exit code 5 (not loaded) is fine.
    pub fn stop(&self, units: &[String]) -> Result<(), ActivateError> {
        if units.is_empty() {
            return Ok(());
        }
        let mut args = vec!["stop"];
        args.extend(units.iter().map(String::as_str));
        self.systemctl(&args, &[5])
    }

    /// `systemctl reload-or-restart UNIT`: the unit's `ExecReload`, or a restart when it
    /// has none (the new files must take effect either way).
    pub fn reload_or_restart(&self, unit: &str) -> Result<(), ActivateError> {
        self.systemctl(&["reload-or-restart", unit], &[])
    }

    pub fn daemon_reload(&self) -> Result<(), ActivateError> {
        self.systemctl(&["daemon-reload"], &[])
    }

    pub fn start_target(&self) -> Result<(), ActivateError> {
        self.systemctl(&["start", TARGET], &[])
    }

    /// Names and states of the tarmac units (`systemctl is-active` style), for reports.
    pub fn is_active(&self, unit: &str) -> Option<String> {
        if !self.cfg.manage_systemd {
            return None;
        }
        let out = Command::new("systemctl")
            .args(["is-active", unit])
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Write `tarmac.target` and enable it (the `multi-user.target.wants` link), if needed.
    pub fn install_target(&self) -> Result<(), ActivateError> {
        let dir = &self.cfg.unit_dir;
        let wants = dir.join("multi-user.target.wants");
        for d in [dir, &wants, &self.cfg.wants_dir()] {
            fs::create_dir_all(d).map_err(|e| ActivateError::io("create", d, e))?;
        }
        let path = dir.join(TARGET);
        if fs::read(&path).ok().as_deref() != Some(target_unit().as_bytes()) {
            fsutil::write_atomic(&path, target_unit().as_bytes(), 0o644)
                .map_err(|e| ActivateError::io("write", &path, e))?;
        }
        let link = wants.join(TARGET);
        if fs::read_link(&link).ok().as_deref() != Some(path.as_path()) {
            fsutil::replace_symlink(&path, &link)
                .map_err(|e| ActivateError::io("link", &link, e))?;
        }
        Ok(())
    }

    /// Write `tarmac-confirm.service` for `binary`, enable it for boot, and (re)start it
    /// without waiting (the guard outlives the command that armed it).
    pub fn arm_confirm_guard(&self, binary: &Path) -> Result<(), ActivateError> {
        let dir = &self.cfg.unit_dir;
        let wants = dir.join("multi-user.target.wants");
        for d in [dir, &wants] {
            fs::create_dir_all(d).map_err(|e| ActivateError::io("create", d, e))?;
        }
        let path = dir.join(CONFIRM_SERVICE);
        let text = confirm_service_unit(binary, &self.cfg.root, &self.cfg.config_dir);
        let changed = fs::read(&path).ok().as_deref() != Some(text.as_bytes());
        if changed {
            fsutil::write_atomic(&path, text.as_bytes(), 0o644)
                .map_err(|e| ActivateError::io("write", &path, e))?;
        }
        let link = wants.join(CONFIRM_SERVICE);
        if fs::read_link(&link).ok().as_deref() != Some(path.as_path()) {
            fsutil::replace_symlink(&path, &link)
                .map_err(|e| ActivateError::io("link", &link, e))?;
        }
        if changed {
            self.daemon_reload()?;
        }
        self.systemctl(&["restart", "--no-block", CONFIRM_SERVICE], &[])
    }

    fn staging_dir(&self) -> PathBuf {
        self.cfg.unit_dir.join(STAGING_DIR)
    }

    /// Before a switch (outside the downtime window): write the units of `want` that differ
    /// from the installed ones into `<unit_dir>/.tarmac-staged/` and make them durable, so
    /// that after the flip [`Systemd::sync_units`] only renames. systemd ignores hidden
    /// entries in its unit directories.
    pub fn stage_units(&self, want: &BTreeMap<String, PathBuf>) -> Result<(), ActivateError> {
        let staging = self.staging_dir();
        fsutil::make_writable_and_remove(&staging)
            .map_err(|e| ActivateError::io("remove", &staging, e))?;
        fs::create_dir_all(&staging).map_err(|e| ActivateError::io("create", &staging, e))?;
        for (name, src) in want {
            let bytes = fs::read(src).map_err(|e| ActivateError::io("read", src, e))?;
            if fs::read(self.cfg.unit_dir.join(name)).ok().as_ref() == Some(&bytes) {
                continue;
            }
            let p = staging.join(name);
            write_durable(&p, &bytes).map_err(|e| ActivateError::io("write", &p, e))?;
        }
        fsutil::fsync_dir(&staging).map_err(|e| ActivateError::io("fsync", &staging, e))
    }

    /// Make the unit directory hold exactly `want` (name → file to copy) among tarmac's
    /// units, removing `others` not in `want`. Idempotent: a re-run after a crash finishes
    /// the job. Each unit file is replaced by a rename (of its staged copy when
    /// [`Systemd::stage_units`] prepared one), each directory fsynced once at the end.
    pub fn sync_units(
        &self,
        want: &BTreeMap<String, PathBuf>,
        others: &BTreeSet<String>,
    ) -> Result<(), ActivateError> {
        let dir = &self.cfg.unit_dir;
        let wants = self.cfg.wants_dir();
        let staging = self.staging_dir();
        fs::create_dir_all(&wants).map_err(|e| ActivateError::io("create", &wants, e))?;
        for (i, (name, src)) in want.iter().enumerate() {
            let dest = dir.join(name);
            let bytes = fs::read(src).map_err(|e| ActivateError::io("read", src, e))?;
            if fs::read(&dest).ok().as_ref() != Some(&bytes) {
                let staged = staging.join(name);
                let from = if fs::read(&staged).ok().as_ref() == Some(&bytes) {
                    staged
                } else {
                    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
                    write_durable(&tmp, &bytes).map_err(|e| ActivateError::io("write", &tmp, e))?;
                    tmp
                };
                fs::rename(&from, &dest).map_err(|e| ActivateError::io("install", &dest, e))?;
            }
            let link = wants.join(name);
            if fs::read_link(&link).ok().as_deref() != Some(dest.as_path()) {
                let tmp = wants.join(format!(".{name}.new-{}", std::process::id()));
                let _ = fs::remove_file(&tmp);
                std::os::unix::fs::symlink(&dest, &tmp)
                    .map_err(|e| ActivateError::io("link", &tmp, e))?;
                fs::rename(&tmp, &link).map_err(|e| ActivateError::io("link", &link, e))?;
            }
            if i == 0 {
                failpoint::hit("mid-units");
            }
        }
        for name in others.iter().filter(|n| !want.contains_key(*n)) {
            for p in [wants.join(name), dir.join(name)] {
                fsutil::remove_file_if_exists(&p)
                    .map_err(|e| ActivateError::io("remove", &p, e))?;
            }
        }
        for d in [dir, &wants] {
            fsutil::fsync_dir(d).map_err(|e| ActivateError::io("fsync", d, e))?;
        }
        let _ = fsutil::make_writable_and_remove(&staging);
        Ok(())
    }

    /// Remove temporaries of interrupted atomic writes (`.<unit>.tmp-<pid>`,
    /// `.<unit>.new-<pid>`) from the unit and wants directories.
    pub fn clean_temp(&self) -> Result<Vec<PathBuf>, ActivateError> {
        let mut removed = Vec::new();
        let staging = self.staging_dir();
        if staging.exists() {
            fsutil::make_writable_and_remove(&staging)
                .map_err(|e| ActivateError::io("remove", &staging, e))?;
            removed.push(staging);
        }
        for d in [self.cfg.unit_dir.clone(), self.cfg.wants_dir()] {
            let Ok(rd) = fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if fsutil::is_temp_name(&n) {
                    let p = e.path();
                    fsutil::remove_file_if_exists(&p)
                        .map_err(|e| ActivateError::io("remove", &p, e))?;
                    removed.push(p);
                }
            }
        }
        Ok(removed)
    }

    /// Which of `want` differ from what is installed (content or wants link), for `verify`.
    pub fn drift(
        &self,
        want: &BTreeMap<String, PathBuf>,
        others: &BTreeSet<String>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let wants = self.cfg.wants_dir();
        for (name, src) in want {
            let dest = self.cfg.unit_dir.join(name);
            match (fs::read(src), fs::read(&dest)) {
                (Ok(a), Ok(b)) if a == b => {}
                (_, Err(_)) => out.push(format!(
                    "unit {name} is not installed at {}",
                    dest.display()
                )),
                _ => out.push(format!(
                    "unit {} differs from the generation's copy",
                    dest.display()
                )),
            }
            if fs::read_link(wants.join(name)).ok().as_deref() != Some(dest.as_path()) {
                out.push(format!(
                    "{}/{name} does not link to {}",
                    wants.display(),
                    dest.display()
                ));
            }
        }
        for name in others.iter().filter(|n| !want.contains_key(*n)) {
            if fs::symlink_metadata(self.cfg.unit_dir.join(name)).is_ok()
                || fs::symlink_metadata(wants.join(name)).is_ok()
            {
                out.push(format!(
                    "unit {name} of another generation is still installed"
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_texts() {
        assert_eq!(
            setup_service_unit(Path::new("/usr/local/bin/tarmac-host")),
            "[Unit]\nDescription=Tarmac: recover an interrupted switch, set up and start the active generation\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/local/bin/tarmac-host --wait setup\nTimeoutStartSec=30min\nStandardOutput=journal+console\nStandardError=journal+console\n\n[Install]\nWantedBy=multi-user.target\n"
        );
        assert!(target_unit().contains("WantedBy=multi-user.target"));
        assert!(is_reserved("tarmac.target"));
        assert!(is_reserved("tarmac-host-revert.timer"));
        assert!(!is_reserved("etcd.service"));
    }
}
