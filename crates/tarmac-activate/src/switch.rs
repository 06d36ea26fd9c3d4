//! The switch between generations, its journal, and recovery.
//!
//! ```text
//! 1. journal {from, to, stage: prepared, stop: [...]}      (atomic write)
//! 2. write generations/<to>                                 (new generations only)
//! 3. users, state directories, owner/group/mode of pkginfo `files` (additive, harmless if undone)
//! 4. systemctl stop <units removed or changed>
//! 5. rename(current.new -> current) + fsync(root)          ← the commit point
//! 6. copy units of <to> into the unit dir, drop removed ones; journal stage: units_installed
//! 7. daemon-reload, sysctl, systemctl start tarmac.target
//! 8. remove the journal
//! ```
//!
//! `recover` reads the journal: if `current` already points at `to`, it finishes steps 6–8;
//! if it still points at `from`, it undoes: restores `from`'s units, drops the new
//! generation (if this switch created it) and restarts `tarmac.target`. Every step is
//! idempotent, so a crash during recovery is recovered by the next run.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tarmac_events::{Event, Level};
use tarmac_types::{Generation, PackageId};

use crate::error::ActivateError;
use crate::generation::{self, GenerationMeta};
use crate::lock::HostLock;
use crate::plan::Plan;
use crate::{Host, failpoint, fsutil, sysctl, users, watch};
use tarmac_pkg::pkginfo::OnChange;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalStage {
    Prepared,
    UnitsInstalled,
}

/// `<root>/switch-journal.json`: present only while a switch is in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub from: Option<Generation>,
    pub to: Generation,
    /// This switch created `to` (so undoing removes it).
    pub created: bool,
    pub stage: JournalStage,
    /// Units stopped before the flip (removed, or their package or content changed).
    pub stop: Vec<String>,
    /// Units reloaded after the start (only files under their `reload_on_change` changed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reload: Vec<String>,
    /// Units of `from`.
    pub from_units: Vec<String>,
    pub command: String,
    pub pid: u32,
}

/// What a switch did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwitchReport {
    pub from: Option<Generation>,
    pub to: Generation,
    /// Nothing to do: the host already runs this set.
    pub unchanged: bool,
    pub packages: Vec<PackageId>,
    pub stopped: Vec<String>,
    /// Units reloaded after the start instead of restarted (`reload_on_change`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reloaded: Vec<String>,
    /// The rename of `current` plus the fsync of the root, in microseconds.
    pub flip_us: u64,
    /// From stopping the first unit to `systemctl start tarmac.target` returning (ms):
    /// the longest a changed service can be down.
    pub downtime_ms: u64,
    pub total_ms: u64,
    /// Where the downtime went: `stop`, `flip`, `units`, `reload`, `start` (ms).
    pub phases_ms: BTreeMap<String, u64>,
}

/// What recovery found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecoverReport {
    /// `finished` or `undone`, when a switch was interrupted.
    pub action: Option<String>,
    pub from: Option<Generation>,
    pub to: Option<Generation>,
    pub removed_temporaries: Vec<PathBuf>,
}

/// Where to switch to.
pub enum Target {
    New {
        plan: Box<Plan>,
        command: String,
    },
    Existing {
        generation: Generation,
        plan: Box<Plan>,
        /// How the switch log names it: `rollback`, or `revert` with its reason and the
        /// operation of the switch it undoes.
        log: RollbackLog,
    },
}

/// The switch-log fields of a switch back to an existing generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackLog {
    pub command: String,
    pub reason: Option<tarmac_types::confirm::RevertReason>,
    /// `None`: the operation of the environment (`TARMAC_OPERATION`).
    pub operation: Option<String>,
}

impl RollbackLog {
    pub fn rollback() -> RollbackLog {
        RollbackLog {
            command: "rollback".into(),
            reason: None,
            operation: None,
        }
    }
}

impl Host {
    pub fn read_journal(&self) -> Result<Option<Journal>, ActivateError> {
        let p = self.cfg.journal_path();
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|source| ActivateError::Journal { path: p, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ActivateError::io("read", &p, e)),
        }
    }

    fn write_journal(&self, j: &Journal) -> Result<(), ActivateError> {
        let p = self.cfg.journal_path();
        let bytes = serde_json::to_vec_pretty(j).expect("journal serializes");
        fsutil::write_atomic(&p, &bytes, 0o644).map_err(|e| ActivateError::io("write", &p, e))
    }

    fn remove_journal(&self) -> Result<(), ActivateError> {
        let p = self.cfg.journal_path();
        fsutil::remove_file_if_exists(&p).map_err(|e| ActivateError::io("remove", &p, e))?;
        fsutil::fsync_dir(&self.cfg.root).map_err(|e| ActivateError::io("fsync", &self.cfg.root, e))
    }

    fn next_generation(&self, current: Option<Generation>) -> Result<Generation, ActivateError> {
        let max = generation::list(&self.cfg)?
            .into_iter()
            .chain(current)
            .max();
        Ok(max.map_or(Generation(1), Generation::next))
    }

    fn phase(&self, phase: &str, packages: Vec<PackageId>) {
        self.sink.emit(Event::Activation {
            phase: phase.to_owned(),
            packages,
        });
    }

    pub(crate) fn notice(&self, level: Level, message: String) {
        self.sink.emit(Event::Notice { level, message });
    }

    /// Users, state directories and file ownership of `plan` (additive: safe before the
    /// flip).
    fn ensure_users_and_state(&self, plan: &Plan) -> Result<(), ActivateError> {
        let mut ids = BTreeMap::new();
        for u in &plan.users {
            let info = if self.cfg.manual_users() {
                users::lookup_user(&u.username).ok_or_else(|| ActivateError::Invalid {
                    problems: vec![crate::Problem::UserMissing {
                        package: u.package.clone(),
                        username: u.username.clone(),
                    }],
                })?
            } else {
                users::ensure_user(&u.username, u.group.as_deref(), &self.cfg.root)?
            };
            ids.insert(u.username.clone(), info);
        }
        if self.cfg.manage_state_dirs {
            for s in &plan.state_dirs {
                let owner = s.username.as_ref().and_then(|u| ids.get(u));
                users::ensure_state_dir(&s.path, owner)?;
            }
        }
        // Owner, group and mode of pkginfo `files` (secret files: root:<service> 0640, …).
        crate::pkgfiles::apply(&self.cfg, &plan.files)
    }

    /// Switch to `target`. The caller validated it (a [`Plan`] exists only when valid).
    pub(crate) fn switch_to(
        &self,
        _lock: &HostLock,
        target: Target,
    ) -> Result<SwitchReport, ActivateError> {
        let t0 = Instant::now();
        let cfg = &self.cfg;
        let from = generation::current(cfg)?;
        let from_units = generation::unit_files(cfg, from)?;
        let from_owner = match from {
            Some(g) => generation::read_active(cfg, g)?.units,
            None => BTreeMap::new(),
        };
        let (to, created, plan, command, log) = match target {
            Target::New { plan, command } => {
                (self.next_generation(from)?, true, plan, command, None)
            }
            Target::Existing {
                generation,
                plan,
                log,
            } => (generation, false, plan, log.command.clone(), Some(log)),
        };
        // Which running units must stop: removed, moved to another package, or changed.
        let new_units: BTreeMap<String, PathBuf> = if created {
            plan.units
                .iter()
                .map(|(n, u)| (n.clone(), u.source.clone()))
                .collect()
        } else {
            generation::unit_files(cfg, Some(to))?
        };
        let mut stop = Vec::new();
        for (name, old_copy) in &from_units {
            let changed = match new_units.get(name) {
                None => true,
                Some(src) => {
                    from_owner.get(name) != plan.units.get(name).map(|u| &u.package)
                        || fs::read(old_copy).ok() != fs::read(src).ok()
                }
            };
            if changed {
                stop.push(name.clone());
            }
        }
        // Units whose package is unchanged but whose watched files (a config package's
        // `etc/<name>`, say) changed restart too.
        // Those whose package asks for it (`reload_on_change`) reload instead, after the
        // flip and the start.
        let mut reload = Vec::new();
        if let Some(f) = from {
            let previous: Vec<String> = from_units.keys().cloned().collect();
            for r in watch::restarts(&cfg.generation_dir(f), &plan, &previous, &stop) {
                match r.action {
                    OnChange::Restart => {
                        self.notice(
                            Level::Info,
                            format!("restarting {}: {} changed", r.unit, r.path),
                        );
                        stop.push(r.unit);
                    }
                    OnChange::Reload => {
                        self.notice(
                            Level::Info,
                            format!("reloading {}: {} changed", r.unit, r.path),
                        );
                        reload.push(r.unit);
                    }
                }
            }
            stop.sort();
            reload.sort();
        }
        let blocked = generation::stable_links_blocked(cfg);
        if !blocked.is_empty() {
            return Err(ActivateError::BadGeneration {
                generation: to,
                reason: format!(
                    "{} exist and are not tarmac links; move them away first",
                    blocked
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }

        let mut journal = Journal {
            from,
            to,
            created,
            stage: JournalStage::Prepared,
            stop: stop.clone(),
            reload: reload.clone(),
            from_units: from_units.keys().cloned().collect(),
            command: command.clone(),
            pid: std::process::id(),
        };
        self.write_journal(&journal)?;
        failpoint::hit("after-journal");
        let phases = std::cell::RefCell::new(BTreeMap::new());
        let before_flip = || -> Result<Instant, ActivateError> {
            if created {
                let meta = GenerationMeta {
                    generation: to,
                    created_unix: generation::now_unix(),
                    command,
                    previous: from,
                };
                generation::write(cfg, &plan, to, &meta)?;
            }
            self.phase("generation-ready", plan.ids());
            failpoint::hit("after-generation");
            self.ensure_users_and_state(&plan)?;
            generation::ensure_stable_links(cfg)?;
            self.systemd()
                .stage_units(&generation::unit_files(cfg, Some(to))?)?;

            let t_down = Instant::now();
            if !stop.is_empty() {
                self.phase("stopping", plan.ids());
                self.systemd().stop(&stop)?;
            }
            phases
                .borrow_mut()
                .insert("stop".into(), tarmac_events::millis(t_down.elapsed()));
            Ok(t_down)
        };
        let t_down = match before_flip() {
            Ok(t) => t,
            Err(e) => {
                // Nothing is committed: put the host back now rather than at the next run.
                if let Err(undo) = self.undo_switch(&journal) {
                    self.notice(
                        Level::Error,
                        format!("undoing the failed switch failed too: {undo}"),
                    );
                }
                return Err(e);
            }
        };
        failpoint::hit("after-stop");
        // Before the flip: the record of who moved `current` is never missing for a
        // generation that became current (a record whose flip did not happen is skipped).
        if let Err(e) = crate::switchlog::append(
            cfg,
            &crate::switchlog::SwitchRecord {
                to,
                from,
                command: journal.command.clone(),
                operation: log
                    .as_ref()
                    .and_then(|l| l.operation.clone())
                    .or_else(|| crate::switchlog::operation(cfg, &journal.command)),
                at_unix: generation::now_unix(),
                reason: log.as_ref().and_then(|l| l.reason),
            },
        ) {
            if let Err(undo) = self.undo_switch(&journal) {
                self.notice(
                    Level::Error,
                    format!("undoing the failed switch failed too: {undo}"),
                );
            }
            return Err(e);
        }
        let t_flip = Instant::now();
        let link = cfg.current_link();
        if let Err(e) = fsutil::replace_symlink(&generation::link_target(to), &link) {
            // Only undo if the rename itself did not happen (an fsync error after it leaves
            // the journal for recovery, which finishes the switch).
            if generation::current(cfg).ok().flatten() == from
                && let Err(undo) = self.undo_switch(&journal)
            {
                self.notice(
                    Level::Error,
                    format!("undoing the failed switch failed too: {undo}"),
                );
            }
            return Err(ActivateError::io("switch", &link, e));
        }
        let flip_us = u64::try_from(t_flip.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.phase("switched", plan.ids());
        failpoint::hit("after-flip");
        let mut phases = phases.into_inner();
        phases.insert("flip".into(), flip_us / 1000);
        self.complete_switch(&mut journal, &plan.sysctl, false, &mut phases)?;
        let downtime_ms = tarmac_events::millis(t_down.elapsed());
        self.phase("started", plan.ids());
        Ok(SwitchReport {
            from,
            to,
            unchanged: false,
            packages: plan.ids(),
            stopped: stop,
            reloaded: reload,
            flip_us,
            downtime_ms,
            total_ms: tarmac_events::millis(t0.elapsed()),
            phases_ms: phases,
        })
    }

    /// Units of other generations that may be installed: the journal's plus whatever is
    /// linked from `tarmac.target.wants` (only tarmac puts links there).
    fn installed_unit_names(&self, extra: &[String]) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = extra.iter().cloned().collect();
        if let Ok(rd) = fs::read_dir(self.cfg.wants_dir()) {
            names.extend(
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
        names
    }

    /// Steps 6–8, shared by a live switch and recovery.
    fn complete_switch(
        &self,
        j: &mut Journal,
        sysctls: &BTreeMap<String, BTreeMap<String, tarmac_pkg::pkginfo::SysctlValue>>,
        recovering: bool,
        phases: &mut BTreeMap<String, u64>,
    ) -> Result<(), ActivateError> {
        let sd = self.systemd();
        let t = Instant::now();
        if j.stage < JournalStage::UnitsInstalled {
            if recovering {
                sd.stop(&j.stop)?;
            }
            let want = generation::unit_files(&self.cfg, Some(j.to))?;
            let others = self.installed_unit_names(&j.from_units);
            sd.sync_units(&want, &others)?;
            j.stage = JournalStage::UnitsInstalled;
            self.write_journal(j)?;
            failpoint::hit("after-units");
        }
        sd.install_target()?;
        phases.insert("units".into(), tarmac_events::millis(t.elapsed()));
        let t = Instant::now();
        sd.daemon_reload()?;
        phases.insert("reload".into(), tarmac_events::millis(t.elapsed()));
        let t = Instant::now();
        if self.cfg.manage_systemd {
            for (key, res) in sysctl::apply(sysctls, None) {
                if let Err(e) = res {
                    self.notice(Level::Warn, format!("sysctl {key}: {e}"));
                }
            }
        }
        sd.start_target()?;
        phases.insert("start".into(), tarmac_events::millis(t.elapsed()));
        failpoint::hit("after-start");
        if !j.reload.is_empty() {
            let t = Instant::now();
            for unit in &j.reload {
                if let Err(e) = sd.reload_or_restart(unit) {
                    self.notice(Level::Warn, format!("{unit}: {e}"));
                }
            }
            phases.insert("reload_units".into(), tarmac_events::millis(t.elapsed()));
        }
        self.remove_journal()
    }

    /// Undo a switch that did not reach its commit point: `from`'s units back in place,
    /// the new generation (if this switch made it) removed, `tarmac.target` restarted.
    fn undo_switch(&self, j: &Journal) -> Result<(), ActivateError> {
        let sd = self.systemd();
        let want = generation::unit_files(&self.cfg, j.from)?;
        let mut others = self.installed_unit_names(&j.from_units);
        if let Ok(names) = generation::unit_names(&self.cfg, Some(j.to)) {
            others.extend(names);
        }
        sd.sync_units(&want, &others)?;
        if j.created {
            let dir = self.cfg.generation_dir(j.to);
            let aside = self.cfg.generations_dir().join(format!(
                "{}{}-undo-{}",
                tarmac_pkg::extract::TMP_PREFIX,
                j.to,
                std::process::id()
            ));
            if dir.exists() {
                fs::rename(&dir, &aside).map_err(|e| ActivateError::io("remove", &dir, e))?;
                fsutil::fsync_dir(&self.cfg.generations_dir())
                    .map_err(|e| ActivateError::io("fsync", &self.cfg.generations_dir(), e))?;
                fsutil::make_writable_and_remove(&aside)
                    .map_err(|e| ActivateError::io("remove", &aside, e))?;
            }
        }
        if j.from.is_some() {
            generation::ensure_stable_links(&self.cfg)?;
            sd.install_target()?;
            sd.daemon_reload()?;
            sd.start_target()?;
        } else {
            sd.daemon_reload()?;
        }
        self.remove_journal()?;
        Ok(())
    }

    /// Finish or undo an interrupted switch, and remove temporaries. Idempotent.
    pub fn recover(&self, _lock: &HostLock) -> Result<RecoverReport, ActivateError> {
        let mut removed = self.store.clean_temp()?;
        removed.extend(generation::clean_temp(&self.cfg)?);
        removed.extend(self.systemd().clean_temp()?);
        let Some(mut j) = self.read_journal()? else {
            if generation::current(&self.cfg)?.is_some() {
                generation::ensure_stable_links(&self.cfg)?;
            }
            return Ok(RecoverReport {
                action: None,
                from: None,
                to: None,
                removed_temporaries: removed,
            });
        };
        let cur = generation::current(&self.cfg)?;
        let action = if cur == Some(j.to) {
            generation::ensure_stable_links(&self.cfg)?;
            let conf = read_sysctl_conf(&self.cfg.generation_dir(j.to));
            self.complete_switch(&mut j, &conf, true, &mut BTreeMap::new())?;
            "finished"
        } else if cur == j.from {
            self.undo_switch(&j)?;
            "undone"
        } else {
            return Err(ActivateError::Unrecoverable {
                from: j.from,
                to: j.to,
                current: cur,
                journal: self.cfg.journal_path(),
            });
        };
        self.notice(
            Level::Warn,
            format!(
                "recovered an interrupted `{}` (pid {}): switch from {} to {} {action}",
                j.command,
                j.pid,
                j.from
                    .map_or_else(|| "nothing".to_owned(), |g| format!("generation {g}")),
                j.to
            ),
        );
        Ok(RecoverReport {
            action: Some(action.to_owned()),
            from: j.from,
            to: Some(j.to),
            removed_temporaries: removed,
        })
    }
}

fn read_sysctl_conf(
    gen_dir: &std::path::Path,
) -> BTreeMap<String, BTreeMap<String, tarmac_pkg::pkginfo::SysctlValue>> {
    sysctl::read_conf(&gen_dir.join(crate::plan::SERVICE_CONFIGURATION)).unwrap_or_default()
}
