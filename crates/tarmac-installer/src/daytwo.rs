//! Day two: grow the cluster (deploy new hosts, then reconcile the others with a rolling
//! upgrade), remove hosts, move a dead master's quorum membership to a new host, and back
//! up and restore the quorum store through the distribution's hooks
//! (`backup/`, `restore/`, `membership/` in its packages; see `tarmac_activate::hooks`).
//!
//! Each operation takes the run lock, journals every fleet run, appends a ledger entry, and
//! is safe to run again after an interruption: membership changes are idempotent, and a
//! snapshot is only visible once its file and record are complete.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tarmac_events::{Event, Level, Outcome};
use tarmac_ssh::{Exec, HostSession, StageReport, StepError, Target, Upload, UploadSource};
use tarmac_types::hooks::{BackupAnswer, HookAnswer};
use tarmac_types::shell::quote;
use tarmac_types::{Digest, HostAddr, PackageId, Role, Stage};

use crate::journal::new_run_id;
use crate::ledger::{self, LedgerError};
use crate::lock::{LockError, RunLock};
use crate::plan::HOST_BIN;
use crate::stages::{DeployOptions, Installer, InstallerError, ServeInfo, StageRun};
use crate::upgrade::{UpgradeOptions, UpgradeReport};

/// Where snapshots are kept on the controller, under `genconf/state/`.
pub const BACKUPS_DIR: &str = "backups";
/// Where a host writes a snapshot before the controller downloads it.
pub const HOST_BACKUP_DIR: &str = "/var/lib/tarmac/.backups";
/// Where the controller uploads a snapshot for a restore.
pub const HOST_RESTORE_DIR: &str = "/var/lib/tarmac/.restore-snapshots";

#[derive(Debug, thiserror::Error)]
pub enum DayTwoError {
    #[error(transparent)]
    Installer(#[from] InstallerError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("{host} is not in config.yaml (master_list, agent_list or public_agent_list)")]
    NotInConfig { host: HostAddr },
    #[error("{host} is already in config.yaml as {role}")]
    AlreadyInConfig { host: HostAddr, role: Role },
    #[error("{host} is {role}, not a master")]
    NotAMaster { host: HostAddr, role: Role },
    #[error("refused: removing {hosts} would leave the cluster without masters")]
    LastMasters { hosts: String },
    #[error("cannot reach {hosts}; nothing was changed")]
    Unreachable { hosts: String },
    #[error("the new master {host} is unreachable: {message}")]
    NewMasterUnreachable { host: HostAddr, message: String },
    #[error(
        "refused: {action} would break the quorum: {healthy} of the remaining masters pass their checks ({names}), and a cluster of {members} members needs {quorum}"
    )]
    Quorum {
        action: String,
        healthy: usize,
        names: String,
        members: usize,
        quorum: usize,
    },
    #[error("membership {action} failed on {leader}: {message}")]
    Membership {
        action: String,
        leader: HostAddr,
        message: String,
    },
    #[error("no master could take a snapshot (tried {tried})")]
    BackupFailed { tried: String, logs: PathBuf },
    #[error("snapshot {}: {why}", path.display())]
    BadSnapshot { path: PathBuf, why: String },
    #[error(
        "snapshot {}: no such file, and no snapshot of that name in {}",
        path.display(),
        dir.display()
    )]
    NoSnapshot { path: PathBuf, dir: PathBuf },
    #[error("restore stopped in phase `{phase}`: it failed on {hosts}")]
    RestoreFailed {
        phase: String,
        hosts: String,
        logs: PathBuf,
    },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl tarmac_types::error_report::Hint for DayTwoError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        let h: std::borrow::Cow<'_, str> = match self {
            DayTwoError::Installer(e) => return e.hint(),
            DayTwoError::Lock(e) => return e.hint(),
            DayTwoError::Ledger(e) => return e.hint(),
            DayTwoError::NotInConfig { .. } => "name hosts exactly as config.yaml lists them".into(),
            DayTwoError::AlreadyInConfig { .. } => "the new master must be a host the cluster does not use yet".into(),
            DayTwoError::NotAMaster { host, .. } => format!("`tarmac remove-hosts {host}` removes agents; replace-master moves a master's etcd membership").into(),
            DayTwoError::Unreachable { .. } => "pass --force to forget unreachable hosts without cleaning them (their Tarmac files and units stay until the machines are wiped)".into(),
            DayTwoError::NewMasterUnreachable { .. } => "it must be up, with SSH, before its membership moves".into(),
            DayTwoError::Quorum { .. } => "bring the failing masters back first (`tarmac status`, `tarmac postflight`); nothing was changed".into(),
            DayTwoError::NoSnapshot { .. } => "`tarmac backup --list` shows the snapshots".into(),
            DayTwoError::BackupFailed { logs, .. } => format!("see the per-host logs in {}", logs.display()).into(),
            DayTwoError::RestoreFailed { logs, .. } => format!("the logs are in {}; each master keeps its previous data in member.pre-restore; fix the cause and run `tarmac restore` again", logs.display()).into(),
            _ => return None,
        };
        Some(h)
    }
}

impl DayTwoError {
    /// A refusal before anything ran on a host (bad input, unreachable hosts without
    /// `--force`, the quorum gate).
    pub fn changed_nothing(&self) -> bool {
        matches!(
            self,
            DayTwoError::NotInConfig { .. }
                | DayTwoError::AlreadyInConfig { .. }
                | DayTwoError::NotAMaster { .. }
                | DayTwoError::LastMasters { .. }
                | DayTwoError::Unreachable { .. }
                | DayTwoError::NewMasterUnreachable { .. }
                | DayTwoError::Quorum { .. }
                | DayTwoError::Lock(_)
        )
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DayTwoError {
    let path = path.to_path_buf();
    move |source| DayTwoError::Io {
        action,
        path,
        source,
    }
}

use crate::upgrade::run::failed as fail;

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// ⌊n/2⌋+1 members must agree in a quorum of `n`.
pub fn quorum(members: usize) -> usize {
    members / 2 + 1
}

// ---------------------------------------------------------------------------------------
// Host commands (pure)

/// `tarmac-host backup` into `remote`, JSON answer.
pub fn backup_command(remote: &str) -> String {
    format!(
        "mkdir -p -m 0700 {dir} && {HOST_BIN} --json backup --out {}",
        quote(remote),
        dir = quote(HOST_BACKUP_DIR)
    )
}

/// One restore phase with the uploaded snapshot (its sha256 checked on the host).
pub fn restore_command(remote: &str, phase: &str, sha256: &str) -> String {
    format!(
        "{HOST_BIN} --json restore --from {} --phase {} --sha256 {}",
        quote(remote),
        quote(phase),
        quote(sha256)
    )
}

/// `tarmac-host membership ACTION [MEMBER]`, JSON answer.
pub fn membership_command(action: &str, member: Option<&HostAddr>) -> String {
    match member {
        Some(m) => format!(
            "{HOST_BIN} --json membership {} {}",
            quote(action),
            quote(&m.to_string())
        ),
        None => format!("{HOST_BIN} --json membership {}", quote(action)),
    }
}

/// The host's checks, once.
pub fn checks_command() -> String {
    format!("{HOST_BIN} check")
}

// ---------------------------------------------------------------------------------------
// Snapshots on the controller

/// One snapshot of the quorum store: `<name>.tar.zst` plus this record as `<name>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub taken_unix: u64,
    /// The master it was taken on.
    pub host: HostAddr,
    pub packages: Vec<PackageId>,
    pub files: Vec<(String, u64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_id: Option<String>,
    /// Why it was taken: `backup`, or the run id of the upgrade or rollback it preceded.
    pub reason: String,
}

impl Snapshot {
    pub fn file_name(&self) -> String {
        format!("{}.tar.zst", self.name)
    }
}

/// Options of `tarmac backup`.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Keep only the newest N snapshots (older ones are deleted after a successful backup).
    pub keep: Option<usize>,
    /// Per-host deadline of the backup hook plus the download.
    pub timeout: Duration,
    /// Recorded in the snapshot: `backup`, or the operation it precedes.
    pub reason: String,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            keep: None,
            timeout: Duration::from_secs(600),
            reason: "backup".into(),
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub snapshot: Snapshot,
    pub runs: Vec<StageRun>,
}

/// What `tarmac deploy` did: installed the new hosts, then upgraded the hosts that were
/// already installed on another package list (a new configuration), if any.
#[derive(Debug, Clone)]
pub struct DeployReport {
    pub install: StageRun,
    pub behind: Vec<HostAddr>,
    pub upgrade: Option<UpgradeReport>,
}

impl DeployReport {
    pub fn succeeded(&self) -> bool {
        self.install.all_succeeded() && self.upgrade.as_ref().is_none_or(|u| u.succeeded())
    }
}

/// What `tarmac remove-hosts` did.
#[derive(Debug, Clone, Default)]
pub struct RemoveReport {
    /// Uninstalled over SSH.
    pub cleaned: Vec<HostAddr>,
    /// Unreachable, forgotten with `--force`: nothing on them was cleaned.
    pub forgotten: Vec<HostAddr>,
    /// Masters whose quorum membership was removed.
    pub members_removed: Vec<HostAddr>,
    pub runs: Vec<StageRun>,
}

/// What the membership part of `tarmac replace-master` did.
#[derive(Debug, Clone)]
pub struct ReplaceReport {
    pub old: HostAddr,
    pub new: HostAddr,
    /// The master that ran the membership hooks.
    pub leader: HostAddr,
    /// The old master answered over SSH (it is then uninstalled).
    pub old_reachable: bool,
    pub runs: Vec<StageRun>,
}

impl Installer {
    pub fn backups_dir(&self) -> PathBuf {
        self.state_dir().join(BACKUPS_DIR)
    }

    /// Every complete snapshot, oldest first.
    pub fn snapshots(&self) -> Result<Vec<Snapshot>, DayTwoError> {
        let dir = self.backups_dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("read", &dir)(e)),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let text = std::fs::read(&p).map_err(io("read", &p))?;
            let s: Snapshot =
                serde_json::from_slice(&text).map_err(|err| DayTwoError::BadSnapshot {
                    path: p.clone(),
                    why: format!("its record is not valid JSON: {err}"),
                })?;
            if dir.join(s.file_name()).is_file() {
                out.push(s);
            }
        }
        out.sort_by(|a, b| (a.taken_unix, &a.name).cmp(&(b.taken_unix, &b.name)));
        Ok(out)
    }

    /// The record of the snapshot at `path` (a `.tar.zst` with its `.json` next to it, or a
    /// snapshot name in the backups directory).
    pub fn snapshot_at(&self, path: &Path) -> Result<(PathBuf, Snapshot), DayTwoError> {
        let file = if path.is_file() {
            path.to_path_buf()
        } else {
            let by_name = self
                .backups_dir()
                .join(format!("{}.tar.zst", path.display()));
            if by_name.is_file() {
                by_name
            } else {
                return Err(DayTwoError::NoSnapshot {
                    path: path.to_path_buf(),
                    dir: self.backups_dir(),
                });
            }
        };
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".tar.zst"))
            .ok_or_else(|| DayTwoError::BadSnapshot {
                path: file.clone(),
                why: "a snapshot file is named <name>.tar.zst".into(),
            })?
            .to_owned();
        let record = file.with_file_name(format!("{name}.json"));
        let text = std::fs::read(&record).map_err(|e| DayTwoError::BadSnapshot {
            path: file.clone(),
            why: format!(
                "its record {} cannot be read ({e}); a snapshot is the .tar.zst together with its .json",
                record.display()
            ),
        })?;
        let snap: Snapshot =
            serde_json::from_slice(&text).map_err(|e| DayTwoError::BadSnapshot {
                path: record.clone(),
                why: format!("not a snapshot record: {e}"),
            })?;
        let digest = Digest::of_file(&file).map_err(io("read", &file))?;
        let size = std::fs::metadata(&file).map_err(io("stat", &file))?.len();
        if digest.hex() != snap.sha256 || size != snap.size {
            return Err(DayTwoError::BadSnapshot {
                path: file,
                why: format!(
                    "it has {size} bytes and sha256 {}, but its record says {} bytes and sha256 {}: it was altered or damaged",
                    digest.hex(),
                    snap.size,
                    snap.sha256
                ),
            });
        }
        Ok((file, snap))
    }

    fn masters(&self) -> Vec<HostAddr> {
        self.cfg.hosts(Role::Master)
    }

    fn role_of(&self, host: &HostAddr) -> Option<Role> {
        self.hosts()
            .into_iter()
            .find(|(h, _)| h == host)
            .map(|(_, r)| r)
    }

    /// One journaled fleet run under an already held lock.
    async fn day2_fleet<F, Fut>(
        &self,
        stage: Stage,
        run_id: String,
        hosts: &[HostAddr],
        deadline: Option<Duration>,
        job: F,
    ) -> Result<StageRun, DayTwoError>
    where
        F: Fn(HostSession) -> Fut,
        Fut: Future<Output = Result<Outcome, StepError>>,
    {
        let targets: Vec<Target> = hosts
            .iter()
            .map(|h| {
                let t = Target::new(h.clone());
                match self.role_of(h) {
                    Some(r) => t.with_role(r),
                    None => t,
                }
            })
            .collect();
        let log_dir = self.state_dir().join("logs").join(&run_id);
        let (report, journal) = self
            .journaled_fleet(stage, run_id, targets, &log_dir, deadline, job)
            .await?;
        Ok(StageRun {
            report,
            journal,
            log_dir,
        })
    }

    pub(crate) fn notice(&self, level: Level, message: String) {
        self.sink.emit(Event::Notice { level, message });
    }

    fn ledger_entry(
        &self,
        lock: &RunLock,
        op: ledger::Op,
        runs: &[&StageRun],
        complete: bool,
    ) -> Result<(), DayTwoError> {
        let serve = ServeInfo::read(&self.genconf_dir).ok();
        let mut hosts = BTreeMap::new();
        for r in runs {
            for h in &r.report.hosts {
                hosts.insert(h.target.addr.clone(), h.outcome.word().to_owned());
            }
        }
        let target = self.deployed_target()?;
        self.ledger().append(
            lock,
            ledger::NewEntry {
                op,
                runs: runs.iter().map(|r| r.report.run_id.clone()).collect(),
                target_before: target.clone(),
                target_after: target,
                bootstrap_id: serve.as_ref().and_then(|s| s.bootstrap_id.clone()),
                config_id: serve.as_ref().and_then(|s| s.config_id()),
                complete,
                hosts,
            },
        )?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Backup and restore

    /// `tarmac backup`: one consistent snapshot from the first master that can take one,
    /// pulled to `genconf/state/backups/` with its sha256 (checked against the host's),
    /// size and time; then a ledger entry, then `--keep` pruning.
    pub async fn backup(&self, opts: &BackupOptions) -> Result<(StageRun, Snapshot), DayTwoError> {
        let lock = RunLock::acquire(&self.state_dir(), "tarmac backup")?;
        let (run, snap) = self.backup_locked(opts).await?;
        self.ledger_entry(&lock, ledger::Op::Backup, &[&run], true)?;
        if let Some(keep) = opts.keep {
            self.prune_snapshots(keep.max(1))?;
        }
        Ok((run, snap))
    }

    /// [`Self::backup`] for a caller that holds the run lock (the upgrade takes one first).
    pub async fn backup_locked(
        &self,
        opts: &BackupOptions,
    ) -> Result<(StageRun, Snapshot), DayTwoError> {
        let masters = self.masters();
        if masters.is_empty() {
            return Err(InstallerError::NoHosts("config.yaml lists no masters".into()).into());
        }
        let dir = self.backups_dir();
        tarmac_fsx::create_private_dir(&self.state_dir()).map_err(io("create", &dir))?;
        tarmac_fsx::create_private_dir(&dir).map_err(io("create", &dir))?;
        let serve = ServeInfo::read(&self.genconf_dir).ok();
        let now = tarmac_types::time::now_unix();
        let stamp = tarmac_types::time::utc(now)
            .replace(['-', ':'], "")
            .replace(' ', "T");
        let name = format!(
            "snapshot-{stamp}-{}",
            &Digest::of(format!("{now}{}", std::process::id()).as_bytes()).hex()[..8]
        );
        // Masters take turns; the first that succeeds ends the search.
        let turn = Arc::new(tokio::sync::Mutex::new(None::<Snapshot>));
        let shared = Arc::new((
            name.clone(),
            dir.clone(),
            opts.reason.clone(),
            serve.as_ref().and_then(|s| s.bootstrap_id.clone()),
            serve.as_ref().and_then(|s| s.config_id()),
        ));
        let run_id = new_run_id(Stage::Backup);
        let run = self
            .day2_fleet(
                Stage::Backup,
                run_id,
                &masters,
                Some(opts.timeout),
                |host| {
                    let turn = turn.clone();
                    let shared = shared.clone();
                    async move {
                        let mut taken = turn.lock().await;
                        if taken.is_some() {
                            return Ok(Outcome::Unchanged);
                        }
                        let (name, dir, reason, bid, cid) = &*shared;
                        let remote = format!("{HOST_BACKUP_DIR}/{name}.tar.zst");
                        let r = host
                            .check("backup", Exec::root(backup_command(&remote)))
                            .await?;
                        let answer: BackupAnswer = serde_json::from_str(&r.stdout).map_err(|e| {
                            fail(host.addr(), "backup", format!("tarmac-host answered with something that is not a backup report ({e}): {}", r.stdout.trim()))
                        })?;
                        let part = dir.join(format!(".{name}.tar.zst.part"));
                        let got = host.download("download", &remote, &part, true).await?;
                        let _ = host
                            .run("clean up", Exec::root(format!("rm -f {}", quote(&remote))).quiet())
                            .await;
                        if got.hex() != answer.sha256 {
                            let _ = std::fs::remove_file(&part);
                            return Err(fail(host.addr(), "download", format!("the downloaded snapshot has sha256 {}, the host reported {}", got.hex(), answer.sha256)));
                        }
                        let snap = Snapshot {
                            name: name.clone(),
                            size: answer.size,
                            sha256: answer.sha256.clone(),
                            taken_unix: tarmac_types::time::now_unix(),
                            host: host.addr().clone(),
                            packages: answer.packages.clone(),
                            files: answer.files.clone(),
                            bootstrap_id: bid.clone(),
                            config_id: cid.clone(),
                            reason: reason.clone(),
                        };
                        let file = dir.join(snap.file_name());
                        std::fs::rename(&part, &file).map_err(|e| fail(host.addr(), "store", format!("cannot rename {} to {}: {e}", part.display(), file.display())))?;
                        let record = dir.join(format!("{name}.json"));
                        let body = serde_json::to_vec_pretty(&snap).expect("snapshot serializes");
                        // The record last: a snapshot without one is not listed.
                        tarmac_fsx::write_atomic(&record, &body, 0o600).map_err(|e| fail(host.addr(), "store", format!("cannot write {}: {e}", record.display())))?;
                        *taken = Some(snap);
                        Ok(Outcome::Ok)
                    }
                },
            )
            .await?;
        let snap = turn.lock().await.take();
        match snap {
            Some(s) => {
                self.notice(
                    Level::Info,
                    format!(
                        "snapshot {} from {}: {} bytes, sha256 {}",
                        s.name, s.host, s.size, s.sha256
                    ),
                );
                Ok((run, s))
            }
            None => Err(DayTwoError::BackupFailed {
                tried: join(&masters),
                logs: run.log_dir.clone(),
            }),
        }
    }

    /// Delete all but the newest `keep` snapshots.
    pub fn prune_snapshots(&self, keep: usize) -> Result<Vec<String>, DayTwoError> {
        let all = self.snapshots()?;
        let mut removed = Vec::new();
        if all.len() <= keep {
            return Ok(removed);
        }
        let dir = self.backups_dir();
        for s in &all[..all.len() - keep] {
            // The record first: a half-deleted snapshot is never listed.
            let record = dir.join(format!("{}.json", s.name));
            std::fs::remove_file(&record).map_err(io("remove", &record))?;
            let file = dir.join(s.file_name());
            std::fs::remove_file(&file).map_err(io("remove", &file))?;
            removed.push(s.name.clone());
        }
        if !removed.is_empty() {
            self.notice(
                Level::Info,
                format!("removed older snapshots: {}", removed.join(", ")),
            );
        }
        Ok(removed)
    }

    /// `tarmac restore SNAPSHOT`: upload the snapshot to every master (sha256-checked), then
    /// run the restore hooks phase by phase on all of them (stop, apply, start, verify), then
    /// the masters' checks. Every master must be reachable: a quorum store is restored whole.
    pub async fn restore(
        &self,
        snapshot: &Path,
        check_deadline: Duration,
    ) -> Result<RestoreReport, DayTwoError> {
        let (file, snap) = self.snapshot_at(snapshot)?;
        let masters = self.masters();
        if masters.is_empty() {
            return Err(InstallerError::NoHosts("config.yaml lists no masters".into()).into());
        }
        let lock = RunLock::acquire(&self.state_dir(), "tarmac restore")?;
        let base = new_run_id(Stage::Restore);
        let remote = Arc::new(format!("{HOST_RESTORE_DIR}/{}", snap.file_name()));
        let mut runs = Vec::new();
        // Upload.
        let src = Arc::new(file.clone());
        let run = self
            .day2_fleet(
                Stage::Restore,
                format!("{base}-upload"),
                &masters,
                None,
                |host| {
                    let (remote, src) = (remote.clone(), src.clone());
                    async move {
                        host.check(
                            "prepare",
                            Exec::root(format!("mkdir -p -m 0700 {}", quote(HOST_RESTORE_DIR))),
                        )
                        .await?;
                        let source = UploadSource::file(src.as_path()).map_err(|e| {
                            fail(
                                host.addr(),
                                "upload",
                                format!("cannot read {}: {e}", src.display()),
                            )
                        })?;
                        host.upload(
                            "upload",
                            &Upload::new(source, remote.as_str()).mode(0o600).root(),
                        )
                        .await?;
                        Ok(Outcome::Ok)
                    }
                },
            )
            .await?;
        let ok = run.all_succeeded();
        let failed_hosts = failed(&run.report);
        let logs = run.log_dir.clone();
        runs.push(run);
        if !ok {
            self.ledger_entry(
                &lock,
                ledger::Op::Restore,
                &runs.iter().collect::<Vec<_>>(),
                false,
            )?;
            return Err(DayTwoError::RestoreFailed {
                phase: "upload".into(),
                hosts: failed_hosts,
                logs,
            });
        }
        for phase in ["stop", "apply", "start", "verify"] {
            let cmd = Arc::new(restore_command(&remote, phase, &snap.sha256));
            let run = self
                .day2_fleet(
                    Stage::Restore,
                    format!("{base}-{phase}"),
                    &masters,
                    None,
                    |host| {
                        let cmd = cmd.clone();
                        async move {
                            host.check(
                                phase,
                                Exec::root(cmd.as_str()).timeout(Duration::from_secs(900)),
                            )
                            .await?;
                            Ok(Outcome::Ok)
                        }
                    },
                )
                .await?;
            let ok = run.all_succeeded();
            let failed_hosts = failed(&run.report);
            let logs = run.log_dir.clone();
            runs.push(run);
            if !ok {
                self.ledger_entry(
                    &lock,
                    ledger::Op::Restore,
                    &runs.iter().collect::<Vec<_>>(),
                    false,
                )?;
                return Err(DayTwoError::RestoreFailed {
                    phase: phase.into(),
                    hosts: failed_hosts,
                    logs,
                });
            }
        }
        // The masters' own checks, then the uploaded copies go.
        let remote2 = remote.clone();
        let run = self
            .day2_fleet(
                Stage::Restore,
                format!("{base}-checks"),
                &masters,
                Some(check_deadline + Duration::from_secs(30)),
                |host| {
                    let remote = remote2.clone();
                    async move {
                        crate::stages::poll_checks(&host, check_deadline).await?;
                        host.check("clean up", Exec::root(format!("rm -f {}", quote(&remote))))
                            .await?;
                        Ok(Outcome::Ok)
                    }
                },
            )
            .await?;
        let ok = run.all_succeeded();
        let failed_hosts = failed(&run.report);
        let logs = run.log_dir.clone();
        runs.push(run);
        self.ledger_entry(
            &lock,
            ledger::Op::Restore,
            &runs.iter().collect::<Vec<_>>(),
            ok,
        )?;
        if !ok {
            return Err(DayTwoError::RestoreFailed {
                phase: "checks".into(),
                hosts: failed_hosts,
                logs,
            });
        }
        Ok(RestoreReport {
            snapshot: snap,
            runs,
        })
    }

    // -----------------------------------------------------------------------------------
    // Grow

    /// `tarmac deploy` on a running cluster: install the hosts that have nothing installed,
    /// then roll the hosts already installed on another package list (the new configuration
    /// lists the new hosts) with a confirm-or-revert upgrade, so they change only where
    /// their files change (prometheus reloads; nothing restarts for a new agent).
    pub async fn deploy_reconcile(
        &self,
        opts: &DeployOptions,
        upgrade: &UpgradeOptions,
    ) -> Result<DeployReport, DayTwoError> {
        let (install, behind) = self.deploy_inner(opts, true).await?;
        if behind.is_empty() || !install.all_succeeded() {
            if !behind.is_empty() {
                self.notice(
                    Level::Warn,
                    format!(
                        "not upgrading {} to the new configuration: the install failed on some hosts; fix them and run `tarmac deploy` again",
                        join(&behind)
                    ),
                );
            }
            return Ok(DeployReport {
                install,
                behind,
                upgrade: None,
            });
        }
        self.notice(
            Level::Info,
            format!(
                "{} already run Tarmac on an older package list: rolling them to the new one",
                join(&behind)
            ),
        );
        let mut inst = self.clone();
        inst.only = Some(behind.clone());
        let mut upgrade = upgrade.clone();
        // `--resume` continues the rollout only when the recorded one is an unfinished
        // upgrade to this same list; anything else starts a new one.
        if upgrade.resume {
            let target = ServeInfo::read(&self.genconf_dir)?.list_id;
            upgrade.resume = crate::upgrade::UpgradeState::load(&self.state_dir())
                .is_some_and(|s| !s.finished && s.operation == "upgrade" && s.target == target);
        }
        let up = inst.upgrade(&upgrade).await?;
        Ok(DeployReport {
            install,
            behind,
            upgrade: Some(up),
        })
    }

    // -----------------------------------------------------------------------------------
    // Shrink and replace

    /// Which of `hosts` answer over SSH within `deadline` (one `true` each).
    async fn reachable(
        &self,
        stage: Stage,
        run_id: String,
        hosts: &[HostAddr],
        deadline: Duration,
    ) -> Result<(StageRun, BTreeMap<HostAddr, Result<(), String>>), DayTwoError> {
        let run = self
            .day2_fleet(stage, run_id, hosts, Some(deadline), |host| async move {
                host.check("reach", Exec::new("true").timeout(deadline))
                    .await?;
                Ok(Outcome::Ok)
            })
            .await?;
        let m = run
            .report
            .hosts
            .iter()
            .map(|h| {
                (
                    h.target.addr.clone(),
                    if h.outcome.is_success() {
                        Ok(())
                    } else {
                        Err(describe(&h.outcome))
                    },
                )
            })
            .collect();
        Ok((run, m))
    }

    /// Uninstall Tarmac from `hosts` (the uninstall stage's script; state directories stay).
    async fn uninstall_hosts(
        &self,
        stage: Stage,
        run_id: String,
        hosts: &[HostAddr],
    ) -> Result<StageRun, DayTwoError> {
        let script = Arc::new(crate::plan::uninstall_script(false));
        self.day2_fleet(stage, run_id, hosts, None, |host| {
            let script = script.clone();
            async move {
                host.check("uninstall", Exec::root(script.as_str())).await?;
                Ok(Outcome::Ok)
            }
        })
        .await
    }

    /// The masters among `candidates` whose checks pass now (one try each).
    async fn healthy(
        &self,
        stage: Stage,
        run_id: String,
        candidates: &[HostAddr],
    ) -> Result<(StageRun, Vec<HostAddr>), DayTwoError> {
        if candidates.is_empty() {
            return Err(InstallerError::NoHosts("no remaining masters".into()).into());
        }
        let run = self
            .day2_fleet(
                stage,
                run_id,
                candidates,
                Some(Duration::from_secs(150)),
                |host| async move {
                    host.check(
                        "checks",
                        Exec::root(checks_command())
                            .timeout(Duration::from_secs(120))
                            .quiet(),
                    )
                    .await?;
                    Ok(Outcome::Ok)
                },
            )
            .await?;
        let ok = candidates
            .iter()
            .filter(|c| {
                run.report
                    .hosts
                    .iter()
                    .any(|h| &h.target.addr == *c && h.outcome.is_success())
            })
            .cloned()
            .collect();
        Ok((run, ok))
    }

    /// Run a membership action on `leader`.
    async fn membership(
        &self,
        stage: Stage,
        run_id: String,
        leader: &HostAddr,
        action: &'static str,
        member: &HostAddr,
    ) -> Result<StageRun, DayTwoError> {
        let cmd = Arc::new(membership_command(action, Some(member)));
        let answer: Arc<Mutex<Option<String>>> = Arc::default();
        let run = self
            .day2_fleet(
                stage,
                run_id,
                std::slice::from_ref(leader),
                Some(Duration::from_secs(180)),
                |host| {
                    let (cmd, answer) = (cmd.clone(), answer.clone());
                    async move {
                        let r = host
                            .check(
                                &format!("membership {action}"),
                                Exec::root(cmd.as_str()).timeout(Duration::from_secs(150)),
                            )
                            .await?;
                        if let Ok(a) = serde_json::from_str::<HookAnswer>(&r.stdout) {
                            *answer.lock().expect("membership") = Some(a.lines().join("; "));
                        }
                        Ok(Outcome::Ok)
                    }
                },
            )
            .await?;
        if !run.all_succeeded() {
            return Err(DayTwoError::Membership {
                action: format!("{action} {member}"),
                leader: leader.clone(),
                message: format!("see the log in {}", run.log_dir.display()),
            });
        }
        if let Some(a) = answer
            .lock()
            .expect("membership")
            .take()
            .filter(|a| !a.is_empty())
        {
            self.notice(Level::Info, format!("{leader}: {a}"));
        }
        Ok(run)
    }

    /// The quorum gate: the masters that stay (`remaining`) must include `quorum(members)`
    /// that pass their checks; returns the first healthy one (to run membership hooks on).
    async fn quorum_gate(
        &self,
        stage: Stage,
        base: &str,
        action: &str,
        remaining: &[HostAddr],
        members: usize,
        runs: &mut Vec<StageRun>,
    ) -> Result<HostAddr, DayTwoError> {
        let (run, healthy) = self
            .healthy(stage, format!("{base}-gate"), remaining)
            .await?;
        runs.push(run);
        let need = quorum(members);
        if healthy.len() < need || healthy.is_empty() {
            return Err(DayTwoError::Quorum {
                action: action.into(),
                healthy: healthy.len(),
                names: if healthy.is_empty() {
                    "none".into()
                } else {
                    join(&healthy)
                },
                members,
                quorum: need,
            });
        }
        Ok(healthy[0].clone())
    }

    /// `tarmac remove-hosts`: uninstall the reachable hosts, forget the unreachable ones
    /// (only with `force`), and take removed masters out of the quorum first (through the
    /// distribution's membership hook, behind the quorum gate). The caller then drops the
    /// hosts from config.yaml and reconciles the others.
    pub async fn remove_hosts(
        &self,
        hosts: &[HostAddr],
        force: bool,
    ) -> Result<RemoveReport, DayTwoError> {
        let mut roles = Vec::new();
        for h in hosts {
            match self.role_of(h) {
                Some(r) => roles.push((h.clone(), r)),
                None => return Err(DayTwoError::NotInConfig { host: h.clone() }),
            }
        }
        let masters = self.masters();
        let removed_masters: Vec<HostAddr> = roles
            .iter()
            .filter(|(_, r)| *r == Role::Master)
            .map(|(h, _)| h.clone())
            .collect();
        let remaining: Vec<HostAddr> = masters
            .iter()
            .filter(|m| !removed_masters.contains(m))
            .cloned()
            .collect();
        if !removed_masters.is_empty() && remaining.is_empty() {
            return Err(DayTwoError::LastMasters {
                hosts: join(&removed_masters),
            });
        }
        let lock = RunLock::acquire(&self.state_dir(), "tarmac remove-hosts")?;
        let base = new_run_id(Stage::RemoveHosts);
        let mut report = RemoveReport::default();
        let (run, reach) = self
            .reachable(
                Stage::RemoveHosts,
                format!("{base}-reach"),
                hosts,
                Duration::from_secs(30),
            )
            .await?;
        report.runs.push(run);
        let unreachable: Vec<HostAddr> = hosts
            .iter()
            .filter(|h| reach.get(*h).is_none_or(|r| r.is_err()))
            .cloned()
            .collect();
        if !unreachable.is_empty() && !force {
            return Err(DayTwoError::Unreachable {
                hosts: unreachable
                    .iter()
                    .map(|h| match reach.get(h) {
                        Some(Err(e)) => format!("{h} ({e})"),
                        _ => h.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if !removed_masters.is_empty() {
            // After the removal the quorum has `remaining.len()` members.
            let leader = self
                .quorum_gate(
                    Stage::RemoveHosts,
                    &base,
                    &format!("removing {}", join(&removed_masters)),
                    &remaining,
                    remaining.len(),
                    &mut report.runs,
                )
                .await?;
            for (i, m) in removed_masters.iter().enumerate() {
                let run = self
                    .membership(
                        Stage::RemoveHosts,
                        format!("{base}-member-{}", i + 1),
                        &leader,
                        "remove",
                        m,
                    )
                    .await?;
                report.runs.push(run);
                report.members_removed.push(m.clone());
            }
        }
        let reachable: Vec<HostAddr> = hosts
            .iter()
            .filter(|h| !unreachable.contains(h))
            .cloned()
            .collect();
        if !reachable.is_empty() {
            let run = self
                .uninstall_hosts(Stage::RemoveHosts, format!("{base}-uninstall"), &reachable)
                .await?;
            for h in &run.report.hosts {
                if h.outcome.is_success() {
                    report.cleaned.push(h.target.addr.clone());
                }
            }
            report.runs.push(run);
        }
        report.forgotten = unreachable;
        for h in &report.forgotten {
            self.notice(
                Level::Warn,
                format!(
                    "{h} was unreachable and is forgotten without cleaning: /opt/tarmac, /etc/tarmac, its units and state directories stay on it until the machine is wiped (or run `tarmac uninstall --hosts {h}` while it is still in config.yaml)"
                ),
            );
        }
        let complete = report.cleaned.len() + report.forgotten.len() == hosts.len();
        self.ledger_entry(
            &lock,
            ledger::Op::RemoveHosts,
            &report.runs.iter().collect::<Vec<_>>(),
            complete,
        )?;
        Ok(report)
    }

    /// The membership part of `tarmac replace-master OLD NEW`: NEW must answer over SSH;
    /// the remaining masters must hold a quorum of the current size; then OLD's member is
    /// removed and NEW's added (both idempotent), and OLD is uninstalled when it answers.
    /// The caller then puts NEW in OLD's place in config.yaml and deploys.
    ///
    /// Run again after an interruption: when OLD is no longer in config.yaml and NEW is, the
    /// membership already moved and this returns at once.
    pub async fn replace_master(
        &self,
        old: &HostAddr,
        new: &HostAddr,
    ) -> Result<Option<ReplaceReport>, DayTwoError> {
        let masters = self.masters();
        match (self.role_of(old), self.role_of(new)) {
            (None, Some(Role::Master)) => return Ok(None),
            (None, _) => return Err(DayTwoError::NotInConfig { host: old.clone() }),
            (Some(r), _) if r != Role::Master => {
                return Err(DayTwoError::NotAMaster {
                    host: old.clone(),
                    role: r,
                });
            }
            (_, Some(r)) => {
                return Err(DayTwoError::AlreadyInConfig {
                    host: new.clone(),
                    role: r,
                });
            }
            _ => {}
        }
        let lock = RunLock::acquire(&self.state_dir(), "tarmac replace-master")?;
        let base = new_run_id(Stage::ReplaceMaster);
        let mut runs = Vec::new();
        let (run, reach) = self
            .reachable(
                Stage::ReplaceMaster,
                format!("{base}-reach"),
                &[old.clone(), new.clone()],
                Duration::from_secs(30),
            )
            .await?;
        runs.push(run);
        if let Some(Err(message)) = reach.get(new) {
            return Err(DayTwoError::NewMasterUnreachable {
                host: new.clone(),
                message: message.clone(),
            });
        }
        let old_reachable = matches!(reach.get(old), Some(Ok(())));
        let remaining: Vec<HostAddr> = masters.iter().filter(|m| *m != old).cloned().collect();
        // While NEW has not started, the quorum has the same size with one member down.
        let leader = self
            .quorum_gate(
                Stage::ReplaceMaster,
                &base,
                &format!("replacing {old} with {new}"),
                &remaining,
                masters.len(),
                &mut runs,
            )
            .await?;
        runs.push(
            self.membership(
                Stage::ReplaceMaster,
                format!("{base}-remove"),
                &leader,
                "remove",
                old,
            )
            .await?,
        );
        runs.push(
            self.membership(
                Stage::ReplaceMaster,
                format!("{base}-add"),
                &leader,
                "add",
                new,
            )
            .await?,
        );
        if old_reachable {
            let run = self
                .uninstall_hosts(
                    Stage::ReplaceMaster,
                    format!("{base}-uninstall"),
                    std::slice::from_ref(old),
                )
                .await?;
            runs.push(run);
        } else {
            self.notice(
                Level::Warn,
                format!(
                    "{old} is unreachable: its etcd membership was removed, but nothing on it was cleaned; wipe it before it comes back on the network"
                ),
            );
        }
        self.ledger_entry(
            &lock,
            ledger::Op::ReplaceMaster,
            &runs.iter().collect::<Vec<_>>(),
            true,
        )?;
        Ok(Some(ReplaceReport {
            old: old.clone(),
            new: new.clone(),
            leader,
            old_reachable,
            runs,
        }))
    }
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Failed { message, .. } | Outcome::Unreachable { message } => {
            format!("{}: {}", o.label(), message.trim())
        }
        _ => o.label().to_owned(),
    }
}

fn failed(r: &StageReport) -> String {
    let bad: Vec<String> = r
        .hosts
        .iter()
        .filter(|h| !h.outcome.is_success())
        .map(|h| format!("{} ({})", h.target.addr, describe(&h.outcome)))
        .collect();
    if bad.is_empty() {
        "no host".into()
    } else {
        bad.join(", ")
    }
}

/// config.yaml's host lists with `remove` dropped and `(old, new)` swapped in place; the
/// changed keys with their new values (for `tarmac_config::yamledit::set_keys`).
pub fn edited_lists(
    lists: &[(Role, Vec<HostAddr>)],
    remove: &[HostAddr],
    swap: Option<(&HostAddr, &HostAddr)>,
) -> Vec<(String, Option<serde_json::Value>)> {
    let mut out = Vec::new();
    for (role, hosts) in lists {
        let next: Vec<&HostAddr> = hosts
            .iter()
            .filter(|h| !remove.contains(h))
            .map(|h| match swap {
                Some((old, new)) if h == old => new,
                _ => h,
            })
            .collect();
        if next.len() != hosts.len() || next.iter().zip(hosts).any(|(a, b)| *a != b) {
            let key = match role {
                Role::Master => "master_list",
                Role::Agent => "agent_list",
                Role::AgentPublic => "public_agent_list",
            };
            out.push((
                key.to_owned(),
                Some(serde_json::Value::Array(
                    next.iter()
                        .map(|h| serde_json::Value::String(h.to_string()))
                        .collect(),
                )),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> HostAddr {
        s.parse().unwrap()
    }

    #[test]
    fn host_commands() {
        assert_eq!(
            backup_command("/var/lib/tarmac/.backups/s.tar.zst"),
            "mkdir -p -m 0700 /var/lib/tarmac/.backups && /opt/tarmac/tarmac-host --json backup --out /var/lib/tarmac/.backups/s.tar.zst"
        );
        assert_eq!(
            restore_command("/x/s it.tar.zst", "apply", "ab12"),
            "/opt/tarmac/tarmac-host --json restore --from '/x/s it.tar.zst' --phase apply --sha256 ab12"
        );
        assert_eq!(
            membership_command("remove", Some(&h("10.0.0.3"))),
            "/opt/tarmac/tarmac-host --json membership remove 10.0.0.3"
        );
        assert_eq!(
            membership_command("list", None),
            "/opt/tarmac/tarmac-host --json membership list"
        );
    }

    #[test]
    fn quorum_sizes() {
        assert_eq!([1, 2, 3, 4, 5].map(quorum), [1, 2, 2, 3, 3], "⌊n/2⌋+1");
    }

    #[test]
    fn list_edits() {
        let lists = vec![
            (
                Role::Master,
                vec![h("10.0.0.1"), h("10.0.0.2"), h("10.0.0.3")],
            ),
            (Role::Agent, vec![h("10.0.0.4"), h("10.0.0.5")]),
            (Role::AgentPublic, vec![]),
        ];
        assert_eq!(
            edited_lists(&lists, &[], Some((&h("10.0.0.2"), &h("10.0.0.9")))),
            vec![(
                "master_list".to_owned(),
                Some(serde_json::json!(["10.0.0.1", "10.0.0.9", "10.0.0.3"]))
            )]
        );
        assert_eq!(
            edited_lists(&lists, &[h("10.0.0.5")], None),
            vec![(
                "agent_list".to_owned(),
                Some(serde_json::json!(["10.0.0.4"]))
            )]
        );
        assert!(edited_lists(&lists, &[h("10.9.9.9")], None).is_empty());
    }
}
