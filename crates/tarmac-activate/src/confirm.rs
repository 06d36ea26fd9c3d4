//! Confirm-or-revert, enforced by the host itself.
//!
//! - [`Host::switch_confirmable`] writes `<root>/pending.json` (a
//!   [`PendingConfirm`], atomically) **before** it activates, points the setup flag
//!   `cluster-package-list` at the new list (keeping the old text in the record), activates,
//!   and records the generation it reached.
//! - [`Host::confirm`] removes the record (idempotent; refuses another generation).
//! - [`Host::revert_pending`] goes back to the record's `from` with the same code as a
//!   rollback (recorded in the switch log as command `revert` with its reason and the
//!   operation `<op>/revert`), restores the setup flag, and removes the record **last**: a
//!   crash anywhere leaves the record, and running the revert again finishes it (a host
//!   already on `from` is not switched again).
//! - [`Host::confirm_guard`] is `tarmac-host confirm-guard`, run by the persistent
//!   `tarmac-confirm.service` (started by the switch, and at every boot): it reverts a record
//!   that survived a reboot or whose deadline passed, otherwise it sleeps until the deadline,
//!   returning as soon as the record is gone. The rule is
//!   [`tarmac_types::confirm::guard_decision`]. `tarmac-host setup` applies the same rule
//!   first thing at boot, under the host lock.
//!
//! Limitation: the package units are wanted by `tarmac.target` directly, so at boot they may
//! start on the unconfirmed generation before the revert stops them and starts the previous
//! one's (the revert is an ordinary switch and handles running units).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tarmac_events::Level;
use tarmac_types::confirm::{
    FORMAT, GuardDecision, HostStatus, PENDING_FILE, PendingConfirm, REVERT_COMMAND, RevertReason,
    guard_decision,
};
use tarmac_types::{Digest, Generation, PackageId};

use crate::error::ActivateError;
use crate::switch::RollbackLog;
use crate::{Host, HostLock, SwitchReport, fsutil, generation, switchlog};

/// The setup flag a switch points at its package list.
pub const SETUP_LIST_FLAG: &str = "cluster-package-list";

/// How long the guard sleeps at most before looking at the record again (a confirmation
/// ends it within this time).
pub const GUARD_POLL_SECS: u64 = 2;

/// Wall clock, boot id and sleeping: injectable so the guard is testable.
pub trait Clock {
    fn now_unix(&self) -> u64;
    fn boot_id(&self) -> Option<String>;
    fn sleep(&self, secs: u64);
}

/// The real clock: `SystemTime`, `/proc/sys/kernel/random/boot_id`, `thread::sleep`.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        generation::now_unix()
    }
    fn boot_id(&self) -> Option<String> {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }
    fn sleep(&self, secs: u64) {
        std::thread::sleep(std::time::Duration::from_secs(secs));
    }
}

/// What [`Host::confirm`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Confirmed {
    /// The record was removed: the host stays on `generation`.
    Confirmed { generation: Generation },
    /// Nothing was pending (already confirmed, or never armed).
    NothingPending { current: Option<Generation> },
}

/// What a revert did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reverted {
    pub record: PendingConfirm,
    pub reason: RevertReason,
    /// `None`: the host was already on `record.from` (an earlier revert was interrupted after
    /// its switch, or the switch never flipped).
    pub switch: Option<SwitchReport>,
}

/// What the guard did before it returned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum GuardOutcome {
    /// No record (any more): confirmed, or never armed.
    NothingPending,
    Reverted(Reverted),
}

impl Host {
    pub fn pending_path(&self) -> PathBuf {
        self.cfg.root.join(PENDING_FILE)
    }

    /// The pending record, if any.
    pub fn pending(&self) -> Result<Option<PendingConfirm>, ActivateError> {
        let p = self.pending_path();
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|source| ActivateError::PendingRecord { path: p, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ActivateError::io("read", &p, e)),
        }
    }

    fn write_pending(&self, rec: &PendingConfirm) -> Result<(), ActivateError> {
        let p = self.pending_path();
        let bytes = serde_json::to_vec_pretty(rec).expect("a pending record serializes");
        fsutil::write_atomic(&p, &bytes, 0o600).map_err(|e| ActivateError::io("write", &p, e))
    }

    fn remove_pending(&self) -> Result<(), ActivateError> {
        let p = self.pending_path();
        fsutil::remove_file_if_exists(&p).map_err(|e| ActivateError::io("remove", &p, e))?;
        fsutil::fsync_dir(&self.cfg.root).map_err(|e| ActivateError::io("fsync", &self.cfg.root, e))
    }

    fn setup_list_path(&self) -> PathBuf {
        self.cfg.setup_flags_dir().join(SETUP_LIST_FLAG)
    }

    /// Point the setup flag at `text` (`None`: remove it), atomically.
    fn write_setup_list(&self, text: Option<&[u8]>) -> Result<(), ActivateError> {
        let p = self.setup_list_path();
        match text {
            Some(t) => {
                let dir = self.cfg.setup_flags_dir();
                std::fs::create_dir_all(&dir).map_err(|e| ActivateError::io("create", &dir, e))?;
                fsutil::write_atomic(&p, t, 0o644).map_err(|e| ActivateError::io("write", &p, e))
            }
            None => fsutil::remove_file_if_exists(&p)
                .map(|_| ())
                .map_err(|e| ActivateError::io("remove", &p, e)),
        }
    }

    /// Point the setup flag at the active packages (`tarmac-host rollback --set-setup-list`),
    /// so that a reboot stays where the rollback went.
    pub fn set_setup_list_to_active(&self, _lock: &HostLock) -> Result<(), ActivateError> {
        let ids = self.active()?;
        let text = serde_json::to_vec_pretty(&ids).expect("ids serialize");
        self.write_setup_list(Some(&text))
    }

    /// Activate `ids` and arm a revert to the current generation unless
    /// [`Host::confirm`] runs within `window`. With `setup_list`, the setup flag
    /// `cluster-package-list` becomes that text (the revert restores the old one). A failed
    /// activation reverts at once.
    ///
    /// A switch while another one is pending keeps that one's `from` (and saved setup flag):
    /// the revert goes back to the last confirmed state.
    pub fn switch_confirmable(
        &self,
        lock: &HostLock,
        ids: &[PackageId],
        window: std::time::Duration,
        setup_list: Option<&[u8]>,
        clock: &dyn Clock,
    ) -> Result<(SwitchReport, PendingConfirm), ActivateError> {
        self.cfg.check_root()?;
        let cur = self.current()?.ok_or(ActivateError::NothingActive)?;
        let earlier = self.pending()?;
        let saved_list = match setup_list {
            None => None,
            Some(_) => Some(match std::fs::read(self.setup_list_path()) {
                Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(ActivateError::io("read", &self.setup_list_path(), e)),
            }),
        };
        let now = clock.now_unix();
        let mut rec = PendingConfirm {
            format: FORMAT,
            from: earlier.as_ref().map_or(cur, |p| p.from),
            to: None,
            armed_unix: now,
            deadline_unix: now.saturating_add(window.as_secs().max(1)),
            boot_id: clock.boot_id(),
            operation: switchlog::operation(&self.cfg, "activate"),
            setup_list: match &earlier {
                Some(p) if p.setup_list.is_some() => p.setup_list.clone(),
                _ => saved_list,
            },
        };
        // First the record: a crash from here on reverts.
        self.write_pending(&rec)?;
        let switched = self
            .write_setup_list_if(setup_list)
            .and_then(|()| self.activate(lock, ids, "activate"));
        match switched {
            Ok(report) => {
                rec.to = Some(report.to);
                self.write_pending(&rec)?;
                Ok((report, rec))
            }
            Err(e) => {
                self.notice(
                    Level::Error,
                    format!("the switch failed: reverting to generation {}", rec.from),
                );
                if let Err(undo) = self.revert_pending(lock, RevertReason::ActivationFailed) {
                    self.notice(Level::Error, format!("the revert failed too: {undo}"));
                }
                Err(e)
            }
        }
    }

    fn write_setup_list_if(&self, text: Option<&[u8]>) -> Result<(), ActivateError> {
        match text {
            Some(t) => self.write_setup_list(Some(t)),
            None => Ok(()),
        }
    }

    /// Keep the switch: remove the pending record. With `generation`, refuse when the
    /// pending switch is to another one, or when the host is no longer on it (it reverted).
    /// Confirming again is fine.
    pub fn confirm(
        &self,
        _lock: &HostLock,
        generation: Option<Generation>,
    ) -> Result<Confirmed, ActivateError> {
        let cur = self.current()?;
        let too_late = |asked: Generation| ActivateError::ConfirmTooLate {
            asked,
            current: cur,
            reverted: self
                .last_switch(cur)
                .is_some_and(|r| r.command == REVERT_COMMAND),
        };
        let Some(p) = self.pending()? else {
            return match generation {
                Some(g) if cur != Some(g) => Err(too_late(g)),
                _ => Ok(Confirmed::NothingPending { current: cur }),
            };
        };
        // `to` is unset when the switch was killed before it could record where it got (an
        // installer killed mid-switch drops its SSH session). Under the lock, which recovered
        // that switch first, the switch is over: it got to the current generation unless that
        // is still `from` (then there is nothing to keep, and the setup flag already names the
        // new list, so only a revert is right).
        let Some(to) = p.to.or(cur.filter(|c| *c != p.from)) else {
            return Err(ActivateError::ConfirmMismatch {
                asked: generation.or(cur).unwrap_or_default(),
                pending: None,
            });
        };
        if let Some(g) = generation {
            if to != g {
                return Err(ActivateError::ConfirmMismatch {
                    asked: g,
                    pending: Some(to),
                });
            }
            if cur != Some(g) {
                return Err(too_late(g));
            }
        }
        self.remove_pending()?;
        Ok(Confirmed::Confirmed { generation: to })
    }

    /// Drop a pending record without reverting (an explicit rollback decided instead).
    pub fn discard_pending(
        &self,
        _lock: &HostLock,
    ) -> Result<Option<PendingConfirm>, ActivateError> {
        let p = self.pending()?;
        if p.is_some() {
            self.remove_pending()?;
        }
        Ok(p)
    }

    /// Go back to the pending record's `from` now, restore the setup flag, then remove the
    /// record. `Ok(None)`: nothing was pending. Safe to run again after a crash.
    pub fn revert_pending(
        &self,
        lock: &HostLock,
        reason: RevertReason,
    ) -> Result<Option<Reverted>, ActivateError> {
        let Some(rec) = self.pending()? else {
            return Ok(None);
        };
        let switch = if self.current()? == Some(rec.from) {
            None
        } else {
            let log = RollbackLog {
                command: REVERT_COMMAND.into(),
                reason: Some(reason),
                operation: rec.operation.as_ref().map(|o| format!("{o}/revert")),
            };
            Some(self.rollback_logged(lock, Some(rec.from), log)?)
        };
        crate::failpoint::hit("revert-after-switch");
        if let Some(list) = &rec.setup_list {
            self.write_setup_list(list.as_deref().map(str::as_bytes))?;
        }
        // Last: until here a crash leaves the record, and the next guard finishes the revert.
        self.remove_pending()?;
        self.notice(
            Level::Warn,
            format!(
                "reverted to generation {} ({}): the switch to {} was not confirmed",
                rec.from,
                reason.word(),
                rec.to.map_or_else(|| "?".to_owned(), |g| g.to_string()),
            ),
        );
        Ok(Some(Reverted {
            record: rec,
            reason,
            switch,
        }))
    }

    /// At boot (`tarmac-host setup`, `confirm-guard`'s first look): revert a record that
    /// survived a reboot or whose deadline passed; leave one that is still waiting.
    pub fn enforce_pending(
        &self,
        lock: &HostLock,
        clock: &dyn Clock,
    ) -> Result<Option<Reverted>, ActivateError> {
        let Some(rec) = self.pending()? else {
            return Ok(None);
        };
        match guard_decision(&rec, clock.now_unix(), clock.boot_id().as_deref()) {
            GuardDecision::Revert(reason) => self.revert_pending(lock, reason),
            GuardDecision::Wait(_) => Ok(None),
        }
    }

    /// `tarmac-host confirm-guard`: until no record is pending, sleep (without the lock, so
    /// `confirm` can run) and revert when [`guard_decision`] says so. `lock` takes the host
    /// lock (and recovers an interrupted switch) when a revert is due.
    pub fn confirm_guard(
        &self,
        clock: &dyn Clock,
        lock: &dyn Fn() -> Result<HostLock, ActivateError>,
    ) -> Result<GuardOutcome, ActivateError> {
        loop {
            let Some(rec) = self.pending()? else {
                return Ok(GuardOutcome::NothingPending);
            };
            match guard_decision(&rec, clock.now_unix(), clock.boot_id().as_deref()) {
                GuardDecision::Wait(secs) => clock.sleep(secs.min(GUARD_POLL_SECS)),
                GuardDecision::Revert(_) => {
                    let l = lock()?;
                    // Decide again under the lock: a confirmation may have just won.
                    return Ok(match self.enforce_pending(&l, clock)? {
                        Some(r) => GuardOutcome::Reverted(r),
                        None => GuardOutcome::NothingPending,
                    });
                }
            }
        }
    }

    fn last_switch(&self, cur: Option<Generation>) -> Option<tarmac_types::switch::SwitchRecord> {
        let text = std::fs::read_to_string(switchlog::path(&self.cfg)).ok()?;
        switchlog::explaining(&switchlog::parse(&text), cur?).cloned()
    }

    /// `tarmac-host status`: generations, the pending record, units, the switch that made
    /// the current generation current, and the sha256 of every file under `watched`
    /// (paths relative to the generation, symlinks followed). Read-only.
    pub fn status(&self, watched: &[String]) -> Result<HostStatus, ActivateError> {
        let current = self.current()?;
        let (previous, active) = match current {
            Some(g) => (
                generation::read_meta(&self.cfg, g)
                    .ok()
                    .and_then(|m| m.previous),
                generation::read_active(&self.cfg, g)?.packages,
            ),
            None => (None, Vec::new()),
        };
        let mut units = BTreeMap::new();
        let sd = self.systemd();
        for u in generation::unit_names(&self.cfg, current)? {
            if let Some(state) = sd.is_active(&u) {
                units.insert(u, state);
            }
        }
        let mut files = BTreeMap::new();
        if let Some(g) = current {
            let base = self.cfg.generation_dir(g);
            for w in watched {
                hash_tree(&base, &base.join(w.trim_start_matches('/')), &mut files);
            }
        }
        let mut archived = Vec::new();
        for id in self.store.list()? {
            if self.store.archived(&id)?.is_some() {
                archived.push(id);
            }
        }
        Ok(HostStatus {
            format: FORMAT,
            current,
            previous,
            active,
            pending: self.pending()?,
            archived,
            units,
            switch: self.last_switch(current),
            watched: files,
            recovered: None,
        })
    }
}

/// Every regular file under `path` (following symlinks, like `find -L`) → sha256 hex, keyed
/// by its path relative to `base`. Unreadable entries are skipped.
fn hash_tree(base: &Path, path: &Path, out: &mut BTreeMap<String, String>) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let Ok(rd) = std::fs::read_dir(path) else {
            return;
        };
        let mut names: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        names.sort();
        for p in names {
            hash_tree(base, &p, out);
        }
    } else if meta.is_file()
        && let Ok(mut f) = std::fs::File::open(path)
        && let Ok(d) = Digest::of_reader(&mut f)
        && let Ok(rel) = path.strip_prefix(base)
    {
        out.insert(rel.to_string_lossy().into_owned(), d.hex());
    }
}
