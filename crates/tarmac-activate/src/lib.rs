//! tarmac-activate: on-host activation with atomic generation switches.
//!
//! Host layout (see `docs/host-layout.md`):
//!
//! ```text
//! /opt/tarmac/packages/<id>/            immutable package store (+ .tarmac/files.json)
//! /opt/tarmac/generations/<n>/          a complete rendered state: bin lib etc include
//!                                       (link trees), active/<name>, environment,
//!                                       environment.export, active.json, systemd/<units>
//! /opt/tarmac/current -> generations/<n>   switched by one rename(2)
//! /opt/tarmac/{bin,lib,etc,include,environment,…} -> current/…
//! /opt/tarmac/switch-journal.json       only while a switch is in flight
//! /opt/tarmac/switches.jsonl            every flip of current: to, from, command, installer run
//! /opt/tarmac/.lock                     flock: one mutating tarmac-host at a time
//! /opt/tarmac/pending.json              a switch waiting for its confirmation (`confirm`)
//! ```
//!
//! [`Host`] is the API; `tarmac-host` is a thin CLI over it.

pub mod checks;
pub mod config;
pub mod confirm;
pub mod error;
pub mod failpoint;
pub mod fsutil;
pub mod generation;
pub mod hooks;
pub mod hostfacts;
pub mod lock;
pub mod pkgfiles;
pub mod plan;
pub mod render;
pub mod setup;
pub mod switch;
pub mod switchlog;
pub mod sysctl;
pub mod systemd;
pub mod users;
pub mod verify;
pub mod watch;

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;
use tarmac_events::{Level, Sink};
use tarmac_pkg::{Added, Fetcher, Pin, Store};
use tarmac_types::{Digest, Generation, PackageId, Role};

pub use config::HostConfig;
pub use error::{ActivateError, Problem};
pub use generation::GenerationInfo;
pub use lock::HostLock;
pub use switch::{RecoverReport, SwitchReport};

/// One host's tarmac installation.
pub struct Host {
    pub cfg: HostConfig,
    pub store: Store,
    sink: Sink,
}

/// What `gc` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    pub removed_generations: Vec<Generation>,
    pub removed_packages: Vec<PackageId>,
    pub kept_generations: Vec<Generation>,
}

impl Host {
    pub fn new(cfg: HostConfig, sink: Sink) -> Host {
        let store = Store::new(cfg.repository.clone());
        Host { cfg, store, sink }
    }

    pub fn systemd(&self) -> systemd::Systemd<'_> {
        systemd::Systemd::new(&self.cfg)
    }

    /// Take the host lock and recover any interrupted switch: the start of every mutating
    /// command.
    pub fn lock(&self, command: &str) -> Result<(HostLock, RecoverReport), ActivateError> {
        let lock = lock::acquire(&self.cfg.lock_path(), command, self.cfg.wait_for_lock)?;
        let report = self.recover(&lock)?;
        Ok((lock, report))
    }

    pub fn current(&self) -> Result<Option<Generation>, ActivateError> {
        generation::current(&self.cfg)
    }

    /// The roles of the current generation (what its checks and hooks run for); without
    /// one, the host's configured roles.
    pub fn active_roles(&self) -> Result<BTreeSet<Role>, ActivateError> {
        match self.current()? {
            Some(g) => Ok(generation::read_active(&self.cfg, g)?
                .roles
                .into_iter()
                .collect()),
            None => self.cfg.roles(),
        }
    }

    /// Package ids of the current generation, sorted.
    pub fn active(&self) -> Result<Vec<PackageId>, ActivateError> {
        match self.current()? {
            Some(g) => Ok(generation::read_active(&self.cfg, g)?.packages),
            None => Ok(Vec::new()),
        }
    }

    pub fn generations(&self) -> Result<Vec<GenerationInfo>, ActivateError> {
        let cur = self.current()?;
        let mut out = Vec::new();
        for g in generation::list(&self.cfg)? {
            let meta = generation::read_meta(&self.cfg, g)?;
            let active = generation::read_active(&self.cfg, g)?;
            out.push(GenerationInfo {
                generation: g,
                current: Some(g) == cur,
                created_unix: meta.created_unix,
                command: meta.command,
                packages: active.packages,
            });
        }
        Ok(out)
    }

    fn managed_units(&self) -> Result<BTreeSet<String>, ActivateError> {
        let mut names = generation::unit_names(&self.cfg, self.current()?)?;
        if let Ok(rd) = std::fs::read_dir(self.cfg.wants_dir()) {
            names.extend(
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
        Ok(names)
    }

    /// The store as packages are added to it on this host: extracting only those its roles
    /// use, unless `extract_all` or the host has no role yet.
    pub fn adding_store(&self) -> Result<Store, ActivateError> {
        let roles = self.cfg.roles()?;
        Ok(if self.cfg.extract_all || roles.is_empty() {
            self.store.clone()
        } else {
            self.store.clone().extracting_for(roles)
        })
    }

    /// Extract the archived packages among `ids` that a host with `roles` uses (a role was
    /// added, or they were fetched under other roles). Returns the ids extracted.
    pub fn extract_used(
        &self,
        _lock: &HostLock,
        ids: &[PackageId],
        roles: &BTreeSet<Role>,
    ) -> Result<Vec<PackageId>, ActivateError> {
        let mut done = Vec::new();
        for id in ids {
            if !self.store.contains(id) {
                continue; // reported by the plan, with every other missing one
            }
            if self.store.load(id)?.needs_extraction(roles) {
                self.store.extract(id)?;
                self.notice(
                    Level::Info,
                    format!("{id}: extracted from its kept archive (this host's roles use it)"),
                );
                done.push(id.clone());
            }
        }
        Ok(done)
    }

    /// Validate `ids` for this host and build the plan; nothing is written.
    pub fn plan(&self, ids: &[PackageId]) -> Result<plan::Plan, ActivateError> {
        let packages = plan::load_packages(&self.store, ids)?;
        let roles = self.cfg.roles()?;
        plan::plan(&self.cfg, packages, &roles, &self.managed_units()?)
    }

    /// Activate exactly `ids` (all already in the store).
    pub fn activate(
        &self,
        lock: &HostLock,
        ids: &[PackageId],
        command: &str,
    ) -> Result<SwitchReport, ActivateError> {
        self.cfg.check_root()?;
        self.extract_used(lock, ids, &self.cfg.roles()?)?;
        let plan = self.plan(ids)?;
        if let Some(cur) = self.current()? {
            let active = generation::read_active(&self.cfg, cur)?;
            let roles: Vec<_> = plan.roles.iter().copied().collect();
            if active.packages == plan.ids() && active.roles == roles {
                return Ok(SwitchReport {
                    from: Some(cur),
                    to: cur,
                    unchanged: true,
                    packages: active.packages,
                    stopped: Vec::new(),
                    reloaded: Vec::new(),
                    flip_us: 0,
                    downtime_ms: 0,
                    total_ms: 0,
                    phases_ms: Default::default(),
                });
            }
        }
        self.switch_to(
            lock,
            switch::Target::New {
                plan: Box::new(plan),
                command: command.to_owned(),
            },
        )
    }

    /// Replace the active package with the same name as `id` by `id`.
    pub fn swap(&self, lock: &HostLock, id: &PackageId) -> Result<SwitchReport, ActivateError> {
        let mut ids = self.active()?;
        let Some(slot) = ids.iter_mut().find(|a| a.name() == id.name()) else {
            return Err(ActivateError::NotActive {
                name: id.name().clone(),
            });
        };
        *slot = id.clone();
        self.activate(lock, &ids, "swap")
    }

    /// Switch back to the previous generation (the highest below the current one) or `to`.
    pub fn rollback(
        &self,
        lock: &HostLock,
        to: Option<Generation>,
    ) -> Result<SwitchReport, ActivateError> {
        self.rollback_logged(lock, to, switch::RollbackLog::rollback())
    }

    /// [`Host::rollback`], recorded in the switch log as `log` says.
    pub(crate) fn rollback_logged(
        &self,
        lock: &HostLock,
        to: Option<Generation>,
        log: switch::RollbackLog,
    ) -> Result<SwitchReport, ActivateError> {
        self.cfg.check_root()?;
        let cur = self.current()?.ok_or(ActivateError::NothingActive)?;
        let gens = generation::list(&self.cfg)?;
        let target = match to {
            Some(g) if gens.contains(&g) => g,
            Some(g) => return Err(ActivateError::NoSuchGeneration { generation: g }),
            // The generation this one was switched from (so a generation that was itself
            // rolled back never comes back); without it, the newest one below.
            None => match generation::read_meta(&self.cfg, cur)
                .ok()
                .and_then(|m| m.previous)
                .filter(|p| gens.contains(p) && *p != cur)
            {
                Some(p) => p,
                None => *gens
                    .iter()
                    .rev()
                    .find(|g| **g < cur)
                    .ok_or(ActivateError::NoPreviousGeneration { current: cur })?,
            },
        };
        let active = generation::read_active(&self.cfg, target)?;
        if target == cur {
            return Ok(SwitchReport {
                from: Some(cur),
                to: cur,
                unchanged: true,
                packages: active.packages,
                stopped: Vec::new(),
                reloaded: Vec::new(),
                flip_us: 0,
                downtime_ms: 0,
                total_ms: 0,
                phases_ms: Default::default(),
            });
        }
        // Re-validate against today's host (users, foreign units) before touching anything.
        let roles = active.roles.iter().copied().collect();
        self.extract_used(lock, &active.packages, &roles)?;
        let packages = plan::load_packages(&self.store, &active.packages)?;
        let plan = plan::plan(&self.cfg, packages, &roles, &self.managed_units()?)?;
        self.switch_to(
            lock,
            switch::Target::Existing {
                generation: target,
                plan: Box::new(plan),
                log,
            },
        )
    }

    /// Add a local archive to the store.
    pub fn add(
        &self,
        _lock: &HostLock,
        file: &Path,
        sha256: Option<Digest>,
    ) -> Result<(PackageId, Added), ActivateError> {
        Ok(self.adding_store()?.add_file(file, sha256)?)
    }

    /// Fetch packages from a repository, up to `parallel` at a time. Returns one result
    /// per id, in order. A remote repository needs every package pinned (sha256 and size);
    /// see [`Store::fetch`].
    pub fn fetch(
        &self,
        lock: &HostLock,
        fetcher: &Fetcher,
        repository: &str,
        items: &[(PackageId, Option<Pin>)],
        parallel: usize,
    ) -> Vec<Result<Added, ActivateError>> {
        self.fetch_from(lock, fetcher, &[], repository, items, parallel)
    }

    /// [`Self::fetch`], trying each of `mirrors` (peers that already hold the packages,
    /// `tarmac-host relay`) before `repository`. Only pinned packages come from a mirror, and
    /// a mirror that fails or serves other bytes is passed over for the next one: the pin,
    /// not the source, is what is trusted.
    pub fn fetch_from(
        &self,
        _lock: &HostLock,
        fetcher: &Fetcher,
        mirrors: &[String],
        repository: &str,
        items: &[(PackageId, Option<Pin>)],
        parallel: usize,
    ) -> Vec<Result<Added, ActivateError>> {
        // Unreadable roles: extract everything (activation reports the roles directory).
        // Every package is staged and the set is flushed once (one syncfs, then the renames).
        let staging = std::sync::Arc::new(tarmac_pkg::extract::Staging::new());
        let store = self
            .adding_store()
            .unwrap_or_else(|_| self.store.clone())
            .staged_in(staging.clone());
        let store = &store;
        // A peer that is gone should not cost the whole retry budget of each package.
        let mut mirror_fetcher = fetcher.clone();
        mirror_fetcher.attempts = 2;
        let mirror_fetcher = &mirror_fetcher;
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<std::sync::Mutex<Option<Result<Added, ActivateError>>>> =
            items.iter().map(|_| std::sync::Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for _ in 0..parallel.clamp(1, 16).min(items.len().max(1)) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some((id, pin)) = items.get(i) else { break };
                        if pin.is_none() && !tarmac_pkg::store::is_remote(repository) {
                            self.notice(
                                Level::Warn,
                                format!("{id}: no sha256 given; the download is not verified"),
                            );
                        }
                        let from_mirror = pin.is_some().then(|| {
                            mirrors.iter().find_map(|m| {
                                match store.fetch(mirror_fetcher, m, id, *pin) {
                                    Ok(a) => Some(a),
                                    Err(e) => {
                                        self.notice(
                                            Level::Warn,
                                            format!("{id}: not from mirror {m} ({e}); trying the next source"),
                                        );
                                        None
                                    }
                                }
                            })
                        });
                        let r = match from_mirror.flatten() {
                            Some(a) => Ok(a),
                            None => store
                                .fetch(fetcher, repository, id, *pin)
                                .map_err(ActivateError::from),
                        };
                        *results[i].lock().expect("poisoned") = Some(r);
                    }
                });
            }
        });
        let committed = staging.commit(store.dir());
        results
            .into_iter()
            .zip(items)
            .map(|(m, (id, _))| {
                let r = m
                    .into_inner()
                    .expect("poisoned")
                    .expect("every item fetched");
                match (&committed, r) {
                    (Err(e), Ok(Added::New(_))) => {
                        Err(ActivateError::from(tarmac_pkg::store::StoreError::Commit {
                            id: id.clone(),
                            dir: store.dir().to_owned(),
                            source: std::io::Error::new(e.kind(), e.to_string()),
                        }))
                    }
                    (_, r) => r,
                }
            })
            .collect()
    }

    /// Remove packages from the store. Refuses packages used by any generation.
    pub fn remove(
        &self,
        _lock: &HostLock,
        ids: &[PackageId],
    ) -> Result<Vec<(PackageId, bool)>, ActivateError> {
        let cur = self.current()?;
        let mut used: Vec<(Generation, Vec<PackageId>)> = Vec::new();
        for g in generation::list(&self.cfg)? {
            used.push((g, generation::read_active(&self.cfg, g)?.packages));
        }
        for id in ids {
            let gens: Vec<Generation> = used
                .iter()
                .filter(|(_, p)| p.contains(id))
                .map(|(g, _)| *g)
                .collect();
            if !gens.is_empty() {
                let active = cur.is_some_and(|c| gens.contains(&c));
                return Err(ActivateError::PackageInUse {
                    id: id.clone(),
                    generations: gens,
                    active,
                });
            }
        }
        let mut out = Vec::new();
        for id in ids {
            out.push((id.clone(), self.store.remove(id)?));
            pkgfiles::remove_secrets(&self.cfg, id)?;
        }
        Ok(out)
    }

    /// Keep the newest `keep` generations (and always the current one); remove the rest,
    /// and the packages only they used. Packages never activated are kept.
    pub fn gc(&self, _lock: &HostLock, keep: usize) -> Result<GcReport, ActivateError> {
        self.cfg.check_root()?;
        let cur = self.current()?;
        let gens = generation::list(&self.cfg)?;
        let mut kept: BTreeSet<Generation> = gens.iter().rev().take(keep.max(1)).copied().collect();
        kept.extend(cur);
        let mut kept_pkgs = BTreeSet::new();
        let mut dropped_pkgs = BTreeSet::new();
        let mut report = GcReport::default();
        for g in &gens {
            let pkgs = generation::read_active(&self.cfg, *g)
                .map(|a| a.packages)
                .unwrap_or_default();
            if kept.contains(g) {
                kept_pkgs.extend(pkgs);
                report.kept_generations.push(*g);
            } else {
                dropped_pkgs.extend(pkgs);
            }
        }
        let gdir = self.cfg.generations_dir();
        for g in gens.iter().filter(|g| !kept.contains(g)) {
            let dir = self.cfg.generation_dir(*g);
            let aside = gdir.join(format!(
                "{}gc-{g}-{}",
                tarmac_pkg::extract::TMP_PREFIX,
                std::process::id()
            ));
            std::fs::rename(&dir, &aside).map_err(|e| ActivateError::io("remove", &dir, e))?;
            fsutil::make_writable_and_remove(&aside)
                .map_err(|e| ActivateError::io("remove", &aside, e))?;
            report.removed_generations.push(*g);
        }
        let _ = fsutil::fsync_dir(&gdir);
        for id in dropped_pkgs.difference(&kept_pkgs) {
            if self.store.remove(id)? {
                report.removed_packages.push(id.clone());
            }
            // Its secret files go with it (a kept generation keeps its own).
            pkgfiles::remove_secrets(&self.cfg, id)?;
        }
        Ok(report)
    }

    /// Stop and remove every tarmac unit, then the install root and the secret files
    /// (`<config-dir>/secrets`). With `purge`, also the state directories and the
    /// configuration directory.
    pub fn uninstall(&self, _lock: &HostLock, purge: bool) -> Result<(), ActivateError> {
        self.cfg.check_root()?;
        let sd = self.systemd();
        let mut units = self.managed_units()?;
        if let Some(j) = self.read_journal()? {
            units.extend(j.from_units);
            units.extend(generation::unit_names(&self.cfg, Some(j.to)).unwrap_or_default());
        }
        let units: Vec<String> = units.into_iter().collect();
        // The confirm guard first: it must not revert while everything is being removed.
        sd.stop(&[systemd::CONFIRM_SERVICE.to_owned()])?;
        sd.stop(&units)?;
        sd.sync_units(&Default::default(), &units.iter().cloned().collect())?;
        let ud = &self.cfg.unit_dir;
        for p in [
            ud.join("multi-user.target.wants").join(systemd::TARGET),
            ud.join("multi-user.target.wants")
                .join(systemd::SETUP_SERVICE),
            ud.join("multi-user.target.wants")
                .join(systemd::CONFIRM_SERVICE),
            ud.join(systemd::TARGET),
            ud.join(systemd::SETUP_SERVICE),
            ud.join(systemd::CONFIRM_SERVICE),
        ] {
            fsutil::remove_file_if_exists(&p).map_err(|e| ActivateError::io("remove", &p, e))?;
        }
        let _ = std::fs::remove_dir(self.cfg.wants_dir());
        sd.daemon_reload()?;
        fsutil::make_writable_and_remove(&self.cfg.root)
            .map_err(|e| ActivateError::io("remove", &self.cfg.root, e))?;
        let secrets = self.cfg.secrets_dir();
        fsutil::make_writable_and_remove(&secrets)
            .map_err(|e| ActivateError::io("remove", &secrets, e))?;
        if !self.cfg.repository.starts_with(&self.cfg.root) && self.cfg.repository.is_absolute() {
            fsutil::make_writable_and_remove(&self.cfg.repository)
                .map_err(|e| ActivateError::io("remove", &self.cfg.repository, e))?;
        }
        if purge {
            for dir in [&self.cfg.state_dir_root, &self.cfg.config_dir] {
                let probe = HostConfig {
                    root: dir.clone(),
                    ..self.cfg.clone()
                };
                probe.check_root()?;
                fsutil::make_writable_and_remove(dir)
                    .map_err(|e| ActivateError::io("remove", dir, e))?;
            }
        }
        Ok(())
    }
}
