//! Execution: the rolling run over waves of hosts (switch, checks, gates, confirm, revert),
//! its resume, and the ledger entry it leaves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tarmac_events::rows::fleet_run_id;
use tarmac_events::{Event, HostState, Level, Outcome, Phase};
use tarmac_ssh::{Exec, HostSession, StageReport, StepError, Target, Upload, UploadSource};
use tarmac_types::error_report::text_with_hint;
use tarmac_types::shell::quote;
use tarmac_types::{HostAddr, PackageId, Role, Stage};

use crate::journal::new_run_id;
use crate::ledger;
use crate::lock::RunLock;
use crate::secrets::{Secrets, deliver as deliver_secrets};
use crate::serve::ArtifactServer;
use crate::stages::{Installer, InstallerError, ServeInfo, bootstrap_listen_addr, poll_checks};
use tarmac_types::Generation;

use super::{REPOSITORY_CA_PATH, UPGRADE_DIR};

use super::plan::*;
use super::protocol::*;
use super::state::*;

/// Options of `tarmac upgrade` / `tarmac rollback`.
#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    pub batch: BatchSize,
    pub max_failures: Budget,
    /// How long a switched host waits for its confirmation before it reverts.
    pub confirm_window: Duration,
    /// How long node and cluster checks may take to pass.
    pub check_deadline: Duration,
    /// Continue the interrupted run recorded in `state/upgrade.json`.
    pub resume: bool,
    /// Copy the new packages over SSH instead of letting hosts pull them over HTTP.
    pub push: bool,
    /// `rollback --to N`.
    pub to: Option<u64>,
    /// Do not take a snapshot of the quorum store before touching masters.
    pub no_backup: bool,
}

impl Default for UpgradeOptions {
    fn default() -> Self {
        UpgradeOptions {
            batch: BatchSize::DEFAULT,
            max_failures: Budget::Count(0),
            confirm_window: Duration::from_secs(120),
            check_deadline: Duration::from_secs(300),
            resume: false,
            push: false,
            to: None,
            no_backup: false,
        }
    }
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeReport {
    pub state: UpgradeState,
    pub journals: Vec<PathBuf>,
    pub log_dir: PathBuf,
}

impl UpgradeReport {
    /// Finished, not stopped, and every host ok or unchanged (failures within the budget
    /// still make the run unsuccessful).
    pub fn succeeded(&self) -> bool {
        self.state.finished
            && self.state.stopped.is_none()
            && self.state.hosts.values().all(|s| s.is_success())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Upgrade,
    Rollback,
}

/// A host the wave switched: the generation it now runs, unconfirmed (a revert needs no
/// more: the host's pending record says where to go back to).
#[derive(Debug, Clone, Copy)]
struct Switched {
    now: Generation,
}

struct Runner<'a> {
    inst: &'a Installer,
    /// `Upgrade` (also for the plan's inspection) or `Rollback`.
    stage: Stage,
    run_id: String,
    log_dir: PathBuf,
    journals: Vec<PathBuf>,
    waves_run: u32,
}

impl Runner<'_> {
    /// One fleet over `hosts` (fresh connections), journaled.
    async fn fleet_run<F, Fut>(
        &mut self,
        what: Phase,
        hosts: &[(HostAddr, Role)],
        deadline: Option<Duration>,
        job: F,
    ) -> Result<StageReport, InstallerError>
    where
        F: Fn(HostSession) -> Fut,
        Fut: Future<Output = Result<Outcome, StepError>>,
    {
        self.fleet_run_hooked(what, hosts, deadline, None, job)
            .await
    }

    /// [`Self::fleet_run`], calling `hook` as each host finishes (the relay tree's
    /// bookkeeping).
    async fn fleet_run_hooked<F, Fut>(
        &mut self,
        what: Phase,
        hosts: &[(HostAddr, Role)],
        deadline: Option<Duration>,
        hook: Option<tarmac_ssh::FinishHook>,
        job: F,
    ) -> Result<StageReport, InstallerError>
    where
        F: Fn(HostSession) -> Fut,
        Fut: Future<Output = Result<Outcome, StepError>>,
    {
        self.waves_run += 1;
        let run_id = fleet_run_id(&self.run_id, self.waves_run, what);
        let targets: Vec<Target> = hosts
            .iter()
            .map(|(h, r)| Target::new(h.clone()).with_role(*r))
            .collect();
        let hooked;
        let inst = match hook {
            Some(h) => {
                let mut i = self.inst.clone();
                i.finish_hook = Some(h);
                hooked = i;
                &hooked
            }
            None => self.inst,
        };
        let (report, journal) = inst
            .journaled_fleet(self.stage, run_id, targets, &self.log_dir, deadline, job)
            .await?;
        self.journals.push(journal);
        Ok(report)
    }

    fn notice(&self, message: String) {
        self.inst.sink.emit(Event::Notice {
            level: Level::Info,
            message,
        });
    }
}

/// `--push`: copy `ids` from `serve_dir` into the host's push repository
/// (`/var/lib/tarmac-push/packages/<name>/<id>.tar.zst`, sha256-checked by the upload), from
/// where `tarmac-host fetch` takes them as from the HTTP server.
async fn push_packages(
    host: &HostSession,
    serve_dir: &Path,
    ids: &[PackageId],
) -> Result<(), StepError> {
    let dirs: Vec<String> = ids
        .iter()
        .map(|id| quote(&format!("{}/packages/{}", crate::plan::PUSH_DIR, id.name())))
        .collect();
    if dirs.is_empty() {
        return Ok(());
    }
    host.check(
        "push: prepare",
        Exec::root(format!("mkdir -p {}", dirs.join(" "))),
    )
    .await?;
    for id in ids {
        let rel = format!("packages/{}/{id}.tar.zst", id.name());
        let src = UploadSource::file(serve_dir.join(&rel)).map_err(|e| {
            failed(
                host.addr(),
                "push",
                format!("cannot read {}: {e}", serve_dir.join(&rel).display()),
            )
        })?;
        host.upload(
            &format!("push: {rel}"),
            &Upload::new(src, format!("{}/{rel}", crate::plan::PUSH_DIR))
                .mode(0o644)
                .root(),
        )
        .await?;
    }
    Ok(())
}

/// A step that failed on the controller's side (a bad answer, a local file), for the host.
pub(crate) fn failed(host: &HostAddr, step: &str, message: String) -> StepError {
    StepError::Failed {
        host: host.clone(),
        step: step.into(),
        exit_code: None,
        signal: None,
        detail: format!("\n{message}"),
    }
}

impl Installer {
    /// The per-host plan of an upgrade to the current `genconf/serve` list (reads the hosts'
    /// active ids; changes nothing).
    pub async fn upgrade_plan(
        &self,
        batch: BatchSize,
    ) -> Result<(String, Vec<Wave>, Vec<HostPlan>), InstallerError> {
        let serve = ServeInfo::read(&self.genconf_dir)?;
        let hosts = self.selected();
        let mut archives = BTreeMap::new();
        let mut watched: Vec<String> = Vec::new();
        for id in &serve.packages {
            let p = serve
                .dir
                .join("packages")
                .join(id.name().to_string())
                .join(format!("{id}.tar.zst"));
            let info = read_archive(id, &p).map_err(|source| InstallerError::BadArchive {
                path: p.clone(),
                source,
            })?;
            for w in &info.watched {
                if !watched.contains(w) {
                    watched.push(w.clone());
                }
            }
            archives.insert(id.clone(), info);
        }
        // Secret files are not in the archives: their sha256 comes from genconf/secrets, so
        // the plan sees a changed prometheus.yml like any other watched file.
        let secrets = Secrets::read(&self.genconf_dir, &serve.packages)?;
        for (id, path, sha) in secrets.digests() {
            if let Some(a) = archives.get_mut(id) {
                a.files.insert(path.to_owned(), sha.hex());
            }
        }
        type Seen = BTreeMap<HostAddr, (Vec<PackageId>, BTreeMap<String, String>)>;
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let script = Arc::new(status_command(&watched, false));
        let mut runner = self.runner("plan");
        runner
            .fleet_run(Phase::Inspect, &hosts, None, |host| {
                let (seen, script) = (seen.clone(), script.clone());
                async move {
                    let r = host
                        .check("inspect", Exec::root(script.as_str()).quiet())
                        .await?;
                    let st = parse_host_status(&r.stdout)
                        .map_err(|e| failed(host.addr(), "inspect", text_with_hint(&e)))?
                        .unwrap_or_default();
                    seen.lock()
                        .expect("plan")
                        .insert(host.addr().clone(), (st.active, st.watched));
                    Ok(Outcome::Ok)
                }
            })
            .await?;
        let seen = std::mem::take(&mut *seen.lock().expect("plan"));
        let plans = hosts
            .iter()
            .map(|(h, r)| match seen.get(h) {
                Some((cur, now)) => host_plan(h, *r, cur, &serve.packages, &archives, Some(now)),
                // Unreachable: shown as if nothing were installed.
                None => host_plan(h, *r, &[], &serve.packages, &archives, None),
            })
            .collect();
        Ok((serve.list_id.clone(), waves(&hosts, batch), plans))
    }

    fn selected(&self) -> Vec<(HostAddr, Role)> {
        self.hosts()
            .into_iter()
            .filter(|(h, _)| self.only.as_ref().is_none_or(|o| o.contains(h)))
            .collect()
    }

    fn runner(&self, op: &str) -> Runner<'_> {
        let stage = if op == "rollback" {
            Stage::Rollback
        } else {
            Stage::Upgrade
        };
        let run_id = new_run_id(stage).replacen(stage.as_str(), op, 1);
        Runner {
            inst: self,
            stage,
            log_dir: self.state_dir().join("logs").join(&run_id),
            run_id,
            journals: Vec::new(),
            waves_run: 0,
        }
    }

    /// `tarmac upgrade`: roll the cluster to the current `genconf/serve` package list.
    pub async fn upgrade(&self, opts: &UpgradeOptions) -> Result<UpgradeReport, InstallerError> {
        self.rolling(Op::Upgrade, opts).await
    }

    /// `tarmac rollback`: bring the hosts back to their previous generation (or `opts.to`).
    pub async fn rollback(&self, opts: &UpgradeOptions) -> Result<UpgradeReport, InstallerError> {
        self.rolling(Op::Rollback, opts).await
    }

    async fn rolling(
        &self,
        op: Op,
        opts: &UpgradeOptions,
    ) -> Result<UpgradeReport, InstallerError> {
        let opname = if op == Op::Upgrade {
            "upgrade"
        } else {
            "rollback"
        };
        let _lock = RunLock::acquire(&self.state_dir(), &format!("tarmac {opname}"))?;
        let hosts = self.selected();
        if hosts.is_empty() {
            return Err(InstallerError::NoHosts(
                "none of the selected hosts is in config.yaml".into(),
            ));
        }
        let serve = if op == Op::Upgrade {
            Some(ServeInfo::read(&self.genconf_dir)?)
        } else {
            None
        };
        let target = match (&serve, opts.to) {
            (Some(s), _) => s.list_id.clone(),
            (None, Some(n)) => n.to_string(),
            (None, None) => "previous".to_owned(),
        };
        // The ledger must verify before anything moves; it also says where a rollback goes.
        let book = self.ledger();
        let entries = book.read()?;
        let target_before = ledger::expectation(&entries, None).target;
        let target_after = match (&serve, opts.to) {
            (Some(s), _) => Some(s.target()),
            (None, None) => ledger::rollback_target(&entries),
            // `rollback --to N`: generation N is per host; the ledger cannot name its target.
            (None, Some(_)) => None,
        };
        let previous = UpgradeState::load(&self.state_dir());
        if opts.resume {
            match &previous {
                Some(p) if p.finished => {
                    return Err(InstallerError::NotResumable {
                        why: format!(
                            "the last `{} {}` finished; there is nothing to resume",
                            p.operation, p.target
                        ),
                        op: opname.to_owned(),
                    });
                }
                Some(p) if p.operation == opname && p.target == target => {}
                Some(p) => {
                    return Err(InstallerError::NotResumable {
                        why: format!(
                            "the interrupted run was `{} {}`, not `{opname} {target}`",
                            p.operation, p.target
                        ),
                        op: opname.to_owned(),
                    });
                }
                None => {
                    return Err(InstallerError::NotResumable {
                        why: format!(
                            "no interrupted run in {}",
                            UpgradeState::path(&self.state_dir()).display()
                        ),
                        op: opname.to_owned(),
                    });
                }
            }
        }
        let mut state = UpgradeState {
            operation: opname.to_owned(),
            target: target.clone(),
            ..UpgradeState::default()
        };
        for (h, _) in &hosts {
            let prior = previous
                .as_ref()
                .filter(|_| opts.resume)
                .and_then(|p| p.hosts.get(&h.to_string()))
                .cloned();
            state
                .hosts
                .insert(h.to_string(), prior.unwrap_or(HostState::Untouched));
        }
        if opts.resume {
            state.run_ids = previous
                .as_ref()
                .map(|p| p.run_ids.clone())
                .unwrap_or_default();
        }
        let mut runner = self.runner(opname);
        state.run_ids.push(runner.run_id.clone());
        state.save(&self.state_dir())?;

        // A snapshot of the quorum store before any master moves (one per operation: a
        // resume keeps the first one's).
        let resumed_snapshot = previous
            .as_ref()
            .filter(|_| opts.resume)
            .and_then(|p| p.snapshot.clone());
        if let Some(s) = resumed_snapshot {
            state.snapshot = Some(s);
            state.save(&self.state_dir())?;
        } else if hosts.iter().any(|(_, r)| *r == Role::Master) && !opts.no_backup {
            let bo = crate::daytwo::BackupOptions {
                reason: runner.run_id.clone(),
                ..Default::default()
            };
            match self.backup_locked(&bo).await {
                Ok((run, snap)) => {
                    runner.journals.push(run.journal);
                    state.snapshot = Some(snap.name);
                    state.save(&self.state_dir())?;
                }
                Err(source) => {
                    return Err(InstallerError::BackupFirst {
                        op: opname.to_owned(),
                        source: Box::new(source),
                    });
                }
            }
        }

        let server = match &serve {
            Some(s) if self.is_served() && !opts.push => {
                let url = self.cfg.bootstrap_url().to_owned();
                let addr = bootstrap_listen_addr(&url)
                    .map_err(|why| InstallerError::BootstrapUrl { url, why })?;
                Some(ArtifactServer::bind(&s.dir, addr, self.server_tls()?)?)
            }
            _ => None,
        };
        let result = self
            .roll(op, opts, serve.as_ref(), &hosts, &mut state, &mut runner)
            .await;
        if let Some(s) = server {
            s.stop().await;
        }
        if result.is_ok() {
            state.finished = true;
            state.save(&self.state_dir())?;
        }
        // One ledger entry per run that got to move hosts, finished or not (a run killed
        // before this line is covered by the entry of its `--resume`).
        let moved = state.hosts.values().any(|w| *w != HostState::Untouched);
        if result.is_ok() || moved {
            let report = UpgradeReport {
                state: state.clone(),
                journals: Vec::new(),
                log_dir: PathBuf::new(),
            };
            let complete = result.is_ok() && report.succeeded();
            let hosts_words = hosts
                .iter()
                .filter_map(|(h, _)| {
                    state
                        .hosts
                        .get(&h.to_string())
                        .map(|w| (h.clone(), w.to_string()))
                })
                .collect();
            let appended = book.append(
                &_lock,
                ledger::NewEntry {
                    op: if op == Op::Upgrade {
                        ledger::Op::Upgrade
                    } else {
                        ledger::Op::Rollback
                    },
                    runs: state.run_ids.clone(),
                    target_before,
                    target_after,
                    bootstrap_id: serve.as_ref().and_then(|s| s.bootstrap_id.clone()),
                    config_id: serve.as_ref().and_then(|s| s.config_id()),
                    complete,
                    hosts: hosts_words,
                },
            );
            if let Err(e) = appended {
                result?;
                return Err(e.into());
            }
        }
        result?;
        Ok(UpgradeReport {
            state,
            journals: runner.journals,
            log_dir: runner.log_dir,
        })
    }

    async fn roll(
        &self,
        op: Op,
        opts: &UpgradeOptions,
        serve: Option<&ServeInfo>,
        hosts: &[(HostAddr, Role)],
        state: &mut UpgradeState,
        runner: &mut Runner<'_>,
    ) -> Result<(), InstallerError> {
        let all_waves = waves(hosts, opts.batch);
        let agents = hosts.iter().filter(|(_, r)| *r != Role::Master).count();
        let allowed = opts.max_failures.allowed(agents);
        let masters: Vec<(HostAddr, Role)> = self
            .hosts()
            .into_iter()
            .filter(|(_, r)| *r == Role::Master)
            .collect();
        // Checks must pass early enough to confirm before the host reverts by itself.
        let check_deadline = if op == Op::Upgrade {
            opts.check_deadline.min(opts.confirm_window.mul_f64(0.75))
        } else {
            opts.check_deadline
        };
        // What every host of an upgrade is switched to (built once for all waves).
        let switch = match op {
            Op::Upgrade => Some(self.switch_job(
                opts,
                serve.expect("upgrade has a serve dir"),
                check_deadline,
                state,
            )?),
            Op::Rollback => None,
        };
        // With the peer relay, every host still to do takes the new packages before the
        // first wave switches: the bootstrap node sends K copies, not one per host.
        if let (Some(job), Some((fanout, port)), false) = (&switch, self.cfg.relay(), opts.push) {
            let todo: Vec<(HostAddr, Role)> = all_waves
                .iter()
                .filter_map(|w| still_to_do(w, state, opts.resume))
                .flat_map(|w| w.hosts)
                .collect();
            if !todo.is_empty() && !self.cancel.is_cancelled() {
                prefetch(runner, job, &todo, fanout, port).await?;
            }
        }
        let mut agent_failures = 0usize;
        for (i, wave) in all_waves.iter().enumerate() {
            if self.cancel.is_cancelled() {
                state.stopped = Some("interrupted".into());
                break;
            }
            let Some(wave) = still_to_do(wave, state, opts.resume) else {
                continue;
            };
            let names: Vec<String> = wave.hosts.iter().map(|(h, _)| h.to_string()).collect();
            runner.notice(format!(
                "{}: step {} of {}: {}",
                op.word(),
                i + 1,
                all_waves.len(),
                names.join(", ")
            ));
            let moved = match &switch {
                Some(job) => switch_wave(runner, &wave, job).await?,
                None => rollback_wave(runner, &wave, opts.to, check_deadline).await?,
            };
            let (mut ok_hosts, mut wave_failures) = record_wave(state, &moved);
            // Masters: the whole cluster must be healthy before the next one.
            if wave.masters && wave_failures == 0 && !ok_hosts.is_empty() {
                let healthy = cluster_checks(runner, &masters, check_deadline).await?;
                if !healthy {
                    wave_failures += ok_hosts.len();
                    if op == Op::Upgrade {
                        self.revert_hosts(runner, &ok_hosts, &moved.switched)
                            .await?;
                        for (h, _) in &ok_hosts {
                            state.hosts.insert(h.to_string(), HostState::Reverted);
                        }
                    }
                    ok_hosts.clear();
                }
            }
            // Confirm over new connections.
            if op == Op::Upgrade && !ok_hosts.is_empty() {
                for h in confirm_wave(runner, &ok_hosts, &moved.switched).await? {
                    wave_failures += 1;
                    state.hosts.insert(h.to_string(), HostState::Unconfirmed);
                }
            }
            state.save(&self.state_dir())?;
            if let Some(stop) =
                over_budget(&wave, &names, wave_failures, &mut agent_failures, allowed)
            {
                state.stopped = Some(stop);
                break;
            }
        }
        if let Some(s) = &state.stopped {
            self.sink.emit(Event::Notice {
                level: Level::Error,
                message: s.clone(),
            });
        }
        Ok(())
    }

    /// The switch every host of an upgrade gets: the list, where packages come from, the
    /// confirm window, the secrets and the CA.
    fn switch_job(
        &self,
        opts: &UpgradeOptions,
        serve: &ServeInfo,
        check_deadline: Duration,
        state: &UpgradeState,
    ) -> Result<Arc<SwitchJob>, InstallerError> {
        let url = if opts.push {
            format!("file://{}", crate::plan::PUSH_DIR)
        } else {
            self.cfg.bootstrap_url().to_owned()
        };
        // https: the CA the hosts pin, refreshed over SSH (the operator may have changed
        // bootstrap_tls_* since the install).
        let repo_ca = if opts.push {
            None
        } else {
            self.repository_ca()?
        };
        Ok(Arc::new(SwitchJob {
            expected: serve.packages.clone(),
            list_file: serve
                .dir
                .join("package_lists")
                .join(format!("{}.package_list.json", serve.list_id)),
            list_id: serve.list_id.clone(),
            url,
            window: opts.confirm_window,
            push_from: opts.push.then(|| serve.dir.clone()),
            repo_ca,
            secrets: Secrets::read(&self.genconf_dir, &serve.packages)?,
            check_deadline,
            prior_runs: if opts.resume {
                state.run_ids.clone()
            } else {
                Vec::new()
            },
        }))
    }

    async fn revert_hosts(
        &self,
        runner: &mut Runner<'_>,
        hosts: &[(HostAddr, Role)],
        sw: &BTreeMap<HostAddr, Switched>,
    ) -> Result<(), InstallerError> {
        let sw = Arc::new(sw.clone());
        runner
            .fleet_run(Phase::Revert, hosts, None, |host| {
                let sw = sw.clone();
                async move {
                    if !sw.contains_key(host.addr()) {
                        return Ok(Outcome::Unchanged);
                    }
                    host.check(
                        "revert",
                        Exec::root(revert_command()).timeout(Duration::from_secs(600)),
                    )
                    .await?;
                    Ok(Outcome::Ok)
                }
            })
            .await?;
        Ok(())
    }
}

/// What switching one host of an upgrade needs (shared by every wave).
struct SwitchJob {
    expected: Vec<PackageId>,
    list_file: PathBuf,
    list_id: String,
    url: String,
    window: Duration,
    push_from: Option<PathBuf>,
    repo_ca: Option<String>,
    secrets: Secrets,
    check_deadline: Duration,
    /// `--resume`: the runs before this one (a host they switched may have reverted by itself).
    prior_runs: Vec<String>,
}

/// What a wave did to its hosts.
struct WaveRun {
    report: StageReport,
    /// Hosts switched (or found switched) and not yet confirmed.
    switched: BTreeMap<HostAddr, Switched>,
    /// Hosts found reverted by themselves (resume), reported `reverted`.
    self_reverted: Vec<HostAddr>,
}

/// Collects, from every host job of a wave, what it switched.
#[derive(Default)]
struct WaveLog {
    switched: Mutex<BTreeMap<HostAddr, Switched>>,
    self_reverted: Mutex<Vec<HostAddr>>,
}

impl WaveLog {
    fn switched(&self, host: &HostAddr, now: Generation) {
        self.switched
            .lock()
            .expect("switched")
            .insert(host.clone(), Switched { now });
    }

    fn finish(&self, report: StageReport) -> WaveRun {
        WaveRun {
            report,
            switched: std::mem::take(&mut *self.switched.lock().expect("switched")),
            self_reverted: std::mem::take(&mut *self.self_reverted.lock().expect("reverted")),
        }
    }
}

impl Op {
    fn word(self) -> &'static str {
        match self {
            Op::Upgrade => "upgrade",
            Op::Rollback => "rollback",
        }
    }
}

/// `--resume`: the wave without the hosts the interrupted run finished (a rollback would
/// otherwise go back one more generation); `None` when nothing is left.
fn still_to_do(wave: &Wave, state: &UpgradeState, resume: bool) -> Option<Wave> {
    let hosts: Vec<(HostAddr, Role)> = wave
        .hosts
        .iter()
        .filter(|(h, _)| {
            !(resume
                && state
                    .hosts
                    .get(&h.to_string())
                    .is_some_and(|s| s.is_success()))
        })
        .cloned()
        .collect();
    (!hosts.is_empty()).then_some(Wave {
        masters: wave.masters,
        hosts,
    })
}

/// Every host's word into `state`; the hosts that moved (outcome ok) and the failures.
fn record_wave(state: &mut UpgradeState, moved: &WaveRun) -> (Vec<(HostAddr, Role)>, usize) {
    let mut ok_hosts = Vec::new();
    let mut failures = 0;
    for hr in &moved.report.hosts {
        let label = if moved.self_reverted.contains(&hr.target.addr) {
            HostState::Reverted
        } else {
            HostState::from(&hr.outcome)
        };
        state.hosts.insert(hr.target.addr.to_string(), label);
        if !hr.outcome.is_success() {
            failures += 1;
        } else if hr.outcome == Outcome::Ok {
            ok_hosts.push((
                hr.target.addr.clone(),
                hr.target.role.unwrap_or(Role::Agent),
            ));
        }
    }
    (ok_hosts, failures)
}

/// Why the run stops after this wave, if it does: any master failure, or agents past the
/// failure budget.
fn over_budget(
    wave: &Wave,
    names: &[String],
    wave_failures: usize,
    agent_failures: &mut usize,
    allowed: usize,
) -> Option<String> {
    if wave_failures == 0 {
        return None;
    }
    if wave.masters {
        return Some(format!(
            "master {} failed: stopped before touching the other hosts",
            names.join(", ")
        ));
    }
    *agent_failures += wave_failures;
    (*agent_failures > allowed).then(|| {
        format!(
            "{agent_failures} agent(s) failed, more than the budget of {allowed}: stopped",
            agent_failures = *agent_failures
        )
    })
}

/// One upgrade wave: every host switched (see [`upgrade_host`]).
async fn switch_wave(
    runner: &mut Runner<'_>,
    wave: &Wave,
    job: &Arc<SwitchJob>,
) -> Result<WaveRun, InstallerError> {
    let log = Arc::new(WaveLog::default());
    let report = runner
        .fleet_run(Phase::Switch, &wave.hosts, None, |host| {
            upgrade_host(host, job.clone(), log.clone())
        })
        .await?;
    Ok(log.finish(report))
}

/// Revert `host`'s pending switch after its checks failed (best effort: a host the installer
/// cannot reach reverts by itself when its window ends), and pass the failure on.
async fn revert_after(host: &HostSession, e: StepError) -> Result<Outcome, StepError> {
    let _ = host
        .run(
            "revert",
            Exec::root(revert_command()).timeout(Duration::from_secs(600)),
        )
        .await;
    Err(e)
}

/// One host of an upgrade: inspect (finishing an interrupted switch), upload the list, the
/// CA and its secrets, fetch, switch, and its node checks. The confirmation comes later.
async fn upgrade_host(
    host: HostSession,
    job: Arc<SwitchJob>,
    log: Arc<WaveLog>,
) -> Result<Outcome, StepError> {
    let role = host.role().unwrap_or(Role::Agent);
    let r = host
        .check(
            "inspect",
            Exec::root(status_command(&[], true))
                .quiet()
                .timeout(Duration::from_secs(600)),
        )
        .await?;
    let st = parse_host_status(&r.stdout)
        .map_err(|e| failed(host.addr(), "inspect", text_with_hint(&e)))?;
    let Some(st) = st.filter(|s| s.current.is_some()) else {
        return Err(failed(
            host.addr(),
            "inspect",
            "Tarmac is not installed here\nhint: install it with `tarmac deploy`".into(),
        ));
    };
    let cur = st.current.expect("checked above");
    // --resume: a host the interrupted run switched that went back by itself (its confirm
    // deadline passed, or it rebooted inside the window) is reported reverted, not switched
    // again.
    if let Some(rec) = st.reverted_by_itself(&job.prior_runs) {
        log.self_reverted
            .lock()
            .expect("reverted")
            .push(host.addr().clone());
        return Err(failed(
            host.addr(),
            "inspect",
            format!(
                "the host reverted by itself to generation {cur} ({}) after switch {}: it was not confirmed in time",
                rec.reason.map_or("?", |r| r.word()),
                rec.operation.as_deref().unwrap_or("?"),
            ),
        ));
    }
    if st.active == job.expected {
        if st.pending.is_none() {
            return Ok(Outcome::Unchanged);
        }
        // An interrupted run switched this host and never confirmed it: check it, and
        // confirm later (or revert now).
        log.switched(host.addr(), cur);
        if let Err(e) = poll_checks(&host, job.check_deadline).await {
            return revert_after(&host, e).await;
        }
        return Ok(Outcome::Ok);
    }
    upload_list(&host, &job).await?;
    if let Some(dir) = &job.push_from {
        let missing: Vec<PackageId> = job
            .expected
            .iter()
            .filter(|id| !st.active.contains(id))
            .cloned()
            .collect();
        push_packages(&host, dir, &missing).await?;
    }
    // Secret files of this host's role, over SSH, before the switch.
    deliver_secrets(&host, &job.secrets, role).await?;
    host.check(
        "fetch",
        Exec::root(fetch_command(&job.url, &job.list_id)).timeout(Duration::from_secs(900)),
    )
    .await?;
    if job.push_from.is_some() {
        host.check(
            "push: clean up",
            Exec::root(format!("rm -rf {}/packages", crate::plan::PUSH_DIR)),
        )
        .await?;
    }
    let r = host
        .check(
            "switch",
            Exec::root(crate::plan::with_operation(
                host.run_id(),
                &switch_command(job.window, &job.list_id, &job.expected),
            ))
            .timeout(Duration::from_secs(600)),
        )
        .await?;
    let out =
        parse_switch(&r.stdout).map_err(|e| failed(host.addr(), "switch", text_with_hint(&e)))?;
    log.switched(host.addr(), out.to);
    if let Err(e) = poll_checks(&host, job.check_deadline).await {
        return revert_after(&host, e).await;
    }
    Ok(Outcome::Ok)
}

/// The package list (with its pins) and the repository CA, over SSH: what `tarmac-host
/// fetch` needs to take the packages from anywhere and trust only the pinned bytes.
async fn upload_list(host: &HostSession, job: &SwitchJob) -> Result<(), StepError> {
    host.check("prepare", Exec::root(format!("mkdir -p {UPGRADE_DIR}")))
        .await?;
    let src = UploadSource::file(&job.list_file).map_err(|e| {
        failed(
            host.addr(),
            "upload list",
            format!("cannot read {}: {e}", job.list_file.display()),
        )
    })?;
    host.upload(
        "upload package list",
        &Upload::new(src, list_path(&job.list_id)).mode(0o644).root(),
    )
    .await?;
    if let Some(pem) = &job.repo_ca {
        host.upload(
            "upload repository CA",
            &Upload::new(
                UploadSource::bytes("repository-ca.pem", pem.clone()),
                REPOSITORY_CA_PATH,
            )
            .mode(0o644)
            .root(),
        )
        .await?;
    }
    Ok(())
}

/// The prefetch (`relay_fanout`): a relay tree over `hosts`, in wave order. Each host takes
/// the new packages from its parent (or grandparent, falling back to bootstrap_url), then
/// serves them to its own children until its whole subtree is done, and no longer. Nothing
/// switches here, and a host whose prefetch fails only warns: its wave fetches again.
async fn prefetch(
    runner: &mut Runner<'_>,
    job: &Arc<SwitchJob>,
    hosts: &[(HostAddr, Role)],
    fanout: usize,
    port: u16,
) -> Result<(), InstallerError> {
    let order: Vec<HostAddr> = hosts.iter().map(|(h, _)| h.clone()).collect();
    let tree = Arc::new(crate::relay::RelayTree::new(&order, fanout, port));
    runner.notice(format!(
        "upgrade: prefetch on {} hosts through a relay tree (fan-out {fanout}, {} levels)",
        hosts.len(),
        tree.depth()
    ));
    let fetch_timeout = Duration::from_secs(900);
    let ttl = fetch_timeout * u32::try_from(tree.depth() + 1).unwrap_or(u32::MAX);
    let hook = {
        let t = tree.clone();
        tarmac_ssh::FinishHook(Arc::new(move |h, _| t.finished(h)))
    };
    runner
        .fleet_run_hooked(Phase::Prefetch, hosts, None, Some(hook), |host| {
            let tree = tree.clone();
            let job = job.clone();
            async move {
                let fetched = async {
                    upload_list(&host, &job).await?;
                    let mirrors = tree.sources(host.addr()).await;
                    host.check(
                        "fetch",
                        Exec::root(fetch_command_from(&job.url, &job.list_id, &mirrors))
                            .timeout(fetch_timeout),
                    )
                    .await
                }
                .await;
                match fetched {
                    Ok(_) if tree.has_children(host.addr()) => {
                        crate::relay::serve_children(&host, &tree, "", ttl).await;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tree.gone(host.addr());
                        host.emit(Event::Notice {
                            level: Level::Warn,
                            message: format!(
                                "{}: prefetch failed ({e}); its wave fetches again",
                                host.addr()
                            ),
                        });
                    }
                }
                // A gate: the host's row stays as it was (nothing switched).
                Ok(Outcome::Ok)
            }
        })
        .await?;
    Ok(())
}

/// One rollback wave: every host back one generation (or to `to`), then its node checks.
async fn rollback_wave(
    runner: &mut Runner<'_>,
    wave: &Wave,
    to: Option<u64>,
    check_deadline: Duration,
) -> Result<WaveRun, InstallerError> {
    let log = Arc::new(WaveLog::default());
    let report = runner
        .fleet_run(Phase::Rollback, &wave.hosts, None, |host| {
            rollback_host(host, to, check_deadline, log.clone())
        })
        .await?;
    Ok(log.finish(report))
}

async fn rollback_host(
    host: HostSession,
    to: Option<u64>,
    check_deadline: Duration,
    log: Arc<WaveLog>,
) -> Result<Outcome, StepError> {
    let r = host
        .check("inspect", Exec::root(status_command(&[], false)).quiet())
        .await?;
    let cur = parse_host_status(&r.stdout)
        .map_err(|e| failed(host.addr(), "inspect", text_with_hint(&e)))?
        .and_then(|s| s.current);
    if cur.is_some() && cur.map(|g| g.0) == to {
        return Ok(Outcome::Unchanged);
    }
    let Some(prev) = cur else {
        return Err(failed(
            host.addr(),
            "inspect",
            "Tarmac is not installed here".into(),
        ));
    };
    let r = host
        .check(
            "rollback",
            Exec::root(crate::plan::with_operation(
                host.run_id(),
                &rollback_command(to),
            ))
            .timeout(Duration::from_secs(600)),
        )
        .await?;
    let now = parse_rollback(&r.stdout).unwrap_or(prev);
    log.switched(host.addr(), now);
    poll_checks(&host, check_deadline).await?;
    Ok(Outcome::Ok)
}

/// The cluster gate after a master: the checks of every master pass.
async fn cluster_checks(
    runner: &mut Runner<'_>,
    masters: &[(HostAddr, Role)],
    check_deadline: Duration,
) -> Result<bool, InstallerError> {
    let gate = runner
        .fleet_run(Phase::ClusterChecks, masters, None, |host| async move {
            poll_checks(&host, check_deadline).await?;
            Ok(Outcome::Ok)
        })
        .await?;
    Ok(gate.all_succeeded())
}

/// Confirm the switched hosts of a wave over new connections; the hosts that could not be
/// confirmed.
async fn confirm_wave(
    runner: &mut Runner<'_>,
    hosts: &[(HostAddr, Role)],
    switched: &BTreeMap<HostAddr, Switched>,
) -> Result<Vec<HostAddr>, InstallerError> {
    let sw = Arc::new(switched.clone());
    let confirm = runner
        .fleet_run(Phase::Confirm, hosts, None, |host| {
            let sw = sw.clone();
            async move {
                let Some(s) = sw.get(host.addr()).copied() else {
                    return Ok(Outcome::Unchanged);
                };
                host.check("confirm", Exec::root(confirm_command(s.now)))
                    .await?;
                Ok(Outcome::Ok)
            }
        })
        .await?;
    Ok(confirm
        .hosts
        .iter()
        .filter(|hr| !hr.outcome.is_success())
        .map(|hr| hr.target.addr.clone())
        .collect())
}
