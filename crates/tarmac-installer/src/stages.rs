//! The installer stages. Each stage: validate (the caller passes a validated config), take
//! the run lock, open a journal, connect once per host, run the stage's steps on every host
//! at once within the engine's limits, and report per host. One failing or unreachable host
//! never stops the others; the exit status is success only when every host succeeded.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tarmac_config::{HostKeyPolicy as CfgPolicy, ResolvedConfig};
use tarmac_events::{Event, EventSink, Fanout, Level, Outcome, Sink};
use tarmac_ssh::{
    Exec, Fleet, FleetContext, HostKeyPolicy, HostSession, Limits, LogDir, Secret, SshOptions,
    StageOptions, StageReport, StepError, Target, Transport, Upload, UploadSource,
    parse_jump_chain,
};
use tarmac_types::{HostAddr, PackageId, Role, Stage};
use tokio_util::sync::CancellationToken;

use crate::journal::{Journal, JournalError, last_run, new_run_id};
use crate::ledger::{self, LedgerError};
use crate::lock::{LockError, RunLock};
use crate::offline::{self, OfflineError, OfflineRepo};
use crate::plan::{self, CheckResult, Drift, HostStatus};
use crate::prereqs::Prereqs;
use crate::relay;
use crate::secrets::{self, Secrets};
use crate::serve::{ArtifactServer, ServeError};

#[derive(Debug, thiserror::Error)]
pub enum InstallerError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Offline(#[from] OfflineError),
    #[error("`{path}` is missing or unreadable: genconf has not produced the serve directory")]
    NoServe {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the package archive `{path}`")]
    BadArchive {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not a valid package list: {message}")]
    BadPackageList { path: PathBuf, message: String },
    #[error("bad `ssh_jump` value `{value}`: {message}")]
    Jump { value: String, message: String },
    #[error("cannot read the SSH key: {0}")]
    Key(tarmac_ssh::KeyError),
    #[error("bootstrap_url `{url}` cannot be served by the installer: {why}")]
    BootstrapUrl { url: String, why: String },
    #[error("no hosts selected: {0}")]
    NoHosts(String),
    /// `upgrade --resume` / `rollback --resume` with no matching interrupted run.
    #[error("--resume: {why}")]
    NotResumable { why: String, op: String },
    #[error(
        "the {op} takes a snapshot of the quorum store before it touches masters, and the snapshot failed; no host was switched"
    )]
    BackupFirst {
        op: String,
        #[source]
        source: Box<crate::daytwo::DayTwoError>,
    },
    #[error("cannot use the secret files in {}: {message}", dir.display())]
    Secrets { dir: PathBuf, message: String },
}

impl tarmac_types::error_report::Hint for InstallerError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            InstallerError::Lock(e) => e.hint(),
            InstallerError::Ledger(e) => e.hint(),
            InstallerError::Journal(e) => e.hint(),
            InstallerError::Serve(e) => e.hint(),
            InstallerError::Offline(e) => e.hint(),
            InstallerError::NoServe { .. } => Some("run `tarmac genconf` first".into()),
            InstallerError::BadArchive { .. } => {
                Some("run `tarmac genconf` again to rebuild genconf/serve".into())
            }
            InstallerError::BadPackageList { .. } | InstallerError::Secrets { .. } => {
                Some("run `tarmac genconf` again".into())
            }
            InstallerError::Key(e) => e.hint(),
            InstallerError::BootstrapUrl { .. } => Some("use an http(s)://HOST:PORT URL whose HOST is an address of this machine the hosts can reach, or --push".into()),
            InstallerError::BackupFirst { .. } => {
                Some("fix the cause (`tarmac backup` alone shows it), or pass --no-backup".into())
            }
            InstallerError::NotResumable { op, .. } => {
                Some(format!("run without --resume to start a new {op}").into())
            }
            InstallerError::Jump { .. } | InstallerError::NoHosts(_) => None,
        }
    }
}

/// What genconf wrote that the installer needs.
#[derive(Debug, Clone)]
pub struct ServeInfo {
    pub dir: PathBuf,
    pub list_id: String,
    pub packages: Vec<PackageId>,
    /// `serve/install.sh`, delivered to hosts over SSH (never fetched by them over HTTP).
    pub install_script: String,
    /// `serve/bootstrap.latest`.
    pub bootstrap_id: Option<String>,
}

impl ServeInfo {
    pub fn read(genconf_dir: &Path) -> Result<ServeInfo, InstallerError> {
        let dir = genconf_dir.join("serve");
        let latest = dir.join("cluster-package-list.latest");
        let list_id = std::fs::read_to_string(&latest)
            .map_err(|source| InstallerError::NoServe {
                path: latest.clone(),
                source,
            })?
            .trim()
            .to_owned();
        let path = dir
            .join("package_lists")
            .join(format!("{list_id}.package_list.json"));
        let body = std::fs::read(&path).map_err(|source| InstallerError::NoServe {
            path: path.clone(),
            source,
        })?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| InstallerError::BadPackageList {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let mut packages = Vec::new();
        for item in v.as_array().into_iter().flatten() {
            let id = item
                .get("id")
                .and_then(|i| i.as_str())
                .or(item.as_str())
                .unwrap_or_default();
            packages.push(
                PackageId::parse(id).map_err(|e| InstallerError::BadPackageList {
                    path: path.clone(),
                    message: e.to_string(),
                })?,
            );
        }
        packages.sort();
        let script_path = dir.join("install.sh");
        let install_script =
            std::fs::read_to_string(&script_path).map_err(|source| InstallerError::NoServe {
                path: script_path.clone(),
                source,
            })?;
        let bootstrap_id = std::fs::read_to_string(dir.join("bootstrap.latest"))
            .ok()
            .map(|s| s.trim().to_owned());
        Ok(ServeInfo {
            dir,
            list_id,
            packages,
            install_script,
            bootstrap_id,
        })
    }

    /// The cluster target this serve directory holds.
    pub fn target(&self) -> ledger::Target {
        ledger::Target {
            list_id: self.list_id.clone(),
            packages: self.packages.clone(),
        }
    }

    /// The config id, from the config packages' `setup_<config id>` versions.
    pub fn config_id(&self) -> Option<String> {
        self.packages.iter().find_map(|p| {
            p.to_string()
                .split_once("--setup_")
                .map(|(_, c)| c.to_owned())
        })
    }
}

/// What a stage that moves hosts appends to the ledger when it ends.
#[derive(Debug, Clone)]
pub(crate) struct LedgerPlan {
    pub op: ledger::Op,
    pub target_before: Option<ledger::Target>,
    pub target_after: Option<ledger::Target>,
    pub bootstrap_id: Option<String>,
    pub config_id: Option<String>,
}

/// Everything a stage needs: the validated configuration and where to report.
#[derive(Clone)]
pub struct Installer {
    pub genconf_dir: PathBuf,
    pub cfg: ResolvedConfig,
    pub sink: Sink,
    pub cancel: CancellationToken,
    /// Password for `sudo -S` on hosts that need one (never logged).
    pub sudo_password: Option<Secret>,
    /// Restrict the run to these hosts (`--hosts`).
    pub only: Option<Vec<HostAddr>>,
    /// How hosts are reached: `None` is SSH with [`Installer::ssh_options`]; anything else
    /// (see [`Installer::with_transport`]) opens every stage's hosts instead.
    pub transport: Option<Arc<dyn Transport>>,
    /// Told when each host of the next stage is done (the deploy's relay tree).
    pub(crate) finish_hook: Option<tarmac_ssh::FinishHook>,
}

/// A finished stage: the engine's report plus per-host details the stage collected.
#[derive(Debug, Clone)]
pub struct StageRun {
    pub report: StageReport,
    pub journal: PathBuf,
    pub log_dir: PathBuf,
}

impl StageRun {
    pub fn all_succeeded(&self) -> bool {
        self.report.all_succeeded()
    }
}

fn policy(p: CfgPolicy) -> HostKeyPolicy {
    match p {
        CfgPolicy::Strict => HostKeyPolicy::Strict,
        CfgPolicy::AcceptNew => HostKeyPolicy::AcceptNew,
        CfgPolicy::Off => HostKeyPolicy::Off,
    }
}

impl Installer {
    pub fn new(genconf_dir: &Path, cfg: ResolvedConfig, sink: Sink) -> Self {
        Installer {
            genconf_dir: genconf_dir.to_owned(),
            cfg,
            sink,
            cancel: CancellationToken::new(),
            sudo_password: None,
            only: None,
            transport: None,
            finish_hook: None,
        }
    }

    /// Reach the hosts through `transport` instead of SSH (the options of config.yaml's
    /// `ssh_*` still apply to what runs over it: user, timeouts, limits).
    pub fn with_transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// The fleet of every stage: SSH, or the injected transport.
    pub(crate) fn fleet(
        &self,
        targets: Vec<Target>,
        ctx: FleetContext,
    ) -> Result<Fleet, InstallerError> {
        let opts = self.ssh_options()?;
        match &self.transport {
            Some(t) => Ok(Fleet::with_transport(targets, opts, ctx, t.clone())),
            None => Fleet::new(targets, opts, ctx).map_err(InstallerError::Key),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.genconf_dir.join("state")
    }

    /// Every host of the cluster with its role.
    pub fn hosts(&self) -> Vec<(HostAddr, Role)> {
        self.cfg.all_hosts()
    }

    /// The hosts a stage restricted to `only` runs on, within `--hosts` ([`Self::only`]).
    fn within_hosts(&self, only: Option<Vec<HostAddr>>) -> Option<Vec<HostAddr>> {
        match (only, &self.only) {
            (Some(a), Some(b)) => Some(a.into_iter().filter(|h| b.contains(h)).collect()),
            (a, b) => a.or_else(|| b.clone()),
        }
    }

    fn targets(&self, only: Option<&[HostAddr]>) -> Vec<Target> {
        self.hosts()
            .into_iter()
            .filter(|(h, _)| only.is_none_or(|o| o.contains(h)))
            .map(|(h, r)| Target::new(h).with_role(r))
            .collect()
    }

    pub fn ssh_options(&self) -> Result<SshOptions, InstallerError> {
        let s = self.cfg.ssh();
        let mut o = SshOptions {
            user: s.user.clone(),
            port: s.port,
            ..SshOptions::default()
        };
        if !s.key_path.as_os_str().is_empty() {
            o.identity_files = vec![s.key_path.clone()];
        }
        if !s.known_hosts.as_os_str().is_empty() {
            o.known_hosts = vec![s.known_hosts.clone()];
        }
        o.host_key_policy = policy(s.host_key_policy);
        if let Some(j) = s.jump.as_deref().filter(|j| !j.trim().is_empty()) {
            o.jump = parse_jump_chain(j).map_err(|e| InstallerError::Jump {
                value: j.to_owned(),
                message: e.to_string(),
            })?;
        }
        if !s.process_timeout.is_zero() {
            o.command_timeout = Some(s.process_timeout);
        }
        o.limits = Limits::parallel(s.parallelism.max(1));
        o.sudo_password = self.sudo_password.clone();
        Ok(o)
    }

    /// Lock, journal, connect and run `job` on the selected hosts.
    async fn stage<F, Fut>(
        &self,
        stage: Stage,
        only: Option<Vec<HostAddr>>,
        deadline: Option<Duration>,
        job: F,
    ) -> Result<StageRun, InstallerError>
    where
        F: Fn(HostSession) -> Fut,
        Fut: Future<Output = Result<Outcome, StepError>>,
    {
        self.ledgered_stage(stage, only, deadline, None, job).await
    }

    /// [`Self::stage`], appending a ledger entry under the same lock when `ledger` is given.
    async fn ledgered_stage<F, Fut>(
        &self,
        stage: Stage,
        only: Option<Vec<HostAddr>>,
        deadline: Option<Duration>,
        ledger: Option<LedgerPlan>,
        job: F,
    ) -> Result<StageRun, InstallerError>
    where
        F: Fn(HostSession) -> Fut,
        Fut: Future<Output = Result<Outcome, StepError>>,
    {
        let only = self.within_hosts(only);
        let _lock = RunLock::acquire(&self.state_dir(), &format!("tarmac {stage}"))?;
        let targets = self.targets(only.as_deref());
        if targets.is_empty() {
            return Err(InstallerError::NoHosts(match &only {
                Some(_) => "none of the selected hosts is in config.yaml".into(),
                None => "config.yaml lists no hosts".into(),
            }));
        }
        let run_id = new_run_id(stage);
        let log_dir = self.state_dir().join("logs").join(&run_id);
        // The ledger must verify before anything moves.
        let book = ledger::Ledger::new(&self.state_dir());
        if ledger.is_some() {
            book.read()?;
        }
        let (report, journal) = self
            .journaled_fleet(stage, run_id.clone(), targets, &log_dir, deadline, job)
            .await?;
        if let Some(plan) = ledger {
            let hosts = report
                .hosts
                .iter()
                .map(|h| (h.target.addr.clone(), h.outcome.word().to_owned()))
                .collect();
            book.append(
                &_lock,
                ledger::NewEntry {
                    op: plan.op,
                    runs: vec![run_id],
                    target_before: plan.target_before,
                    target_after: plan.target_after,
                    bootstrap_id: plan.bootstrap_id,
                    config_id: plan.config_id,
                    complete: report.all_succeeded(),
                    hosts,
                },
            )?;
        }
        Ok(StageRun {
            report,
            journal,
            log_dir,
        })
    }

    /// Run `job` on `targets` as one fleet: fresh connections, events to the sink and to a
    /// run journal `run_id` (written atomically), logs under `log_dir`. Returns the report
    /// and the journal's path.
    pub(crate) async fn journaled_fleet<F, Fut>(
        &self,
        stage: Stage,
        run_id: String,
        targets: Vec<Target>,
        log_dir: &Path,
        deadline: Option<Duration>,
        job: F,
    ) -> Result<(StageReport, PathBuf), InstallerError>
    where
        F: Fn(HostSession) -> Fut,
        Fut: Future<Output = Result<Outcome, StepError>>,
    {
        let journal = Arc::new(Journal::new(
            &self.state_dir(),
            &run_id,
            stage,
            &targets
                .iter()
                .map(|t| (t.addr.clone(), t.role))
                .collect::<Vec<_>>(),
        ));
        let sink: Sink = Arc::new(Fanout(vec![
            self.sink.clone(),
            journal.clone() as Arc<dyn EventSink>,
        ]));
        let ctx = FleetContext::new(sink)
            .with_log_dir(LogDir::new(log_dir))
            .with_cancel(self.cancel.clone())
            .with_run_id(run_id);
        let fleet = self.fleet(targets, ctx)?;
        let report = fleet
            .run_all(
                stage,
                StageOptions {
                    deadline,
                    only: None,
                    // One stage per fleet: a host's connection is freed as soon as its job
                    // ends, so sockets and memory follow the hosts at work, not the fleet.
                    release: true,
                    on_finish: self.finish_hook.clone(),
                },
                job,
            )
            .await;
        fleet.close().await;
        journal.flush()?;
        if let Some(e) = journal.error() {
            self.sink.emit(Event::Notice {
                level: Level::Warn,
                message: e,
            });
        }
        Ok((report, journal.path()))
    }

    /// The cluster's ledger.
    pub fn ledger(&self) -> ledger::Ledger {
        ledger::Ledger::new(&self.state_dir())
    }

    /// The target the ledger says the hosts are on (`None`: no operation recorded yet).
    pub fn deployed_target(&self) -> Result<Option<ledger::Target>, InstallerError> {
        Ok(ledger::expectation(&self.ledger().read()?, None).target)
    }

    /// Hosts to run on for `--retry-failed`: those that did not succeed in the last run of `stage`.
    pub fn failed_last_time(&self, stage: Stage) -> Result<Vec<HostAddr>, InstallerError> {
        Ok(last_run(&self.state_dir(), stage)?.unsuccessful_hosts())
    }

    /// Start the artifact server on bootstrap_url's address (pull mode).
    fn serve(
        &self,
        serve: &ServeInfo,
        listen: Option<SocketAddr>,
    ) -> Result<ArtifactServer, InstallerError> {
        let url = self.cfg.bootstrap_url().to_owned();
        let addr = match listen {
            Some(a) => a,
            None => bootstrap_listen_addr(&url).map_err(|why| InstallerError::BootstrapUrl {
                url: url.clone(),
                why,
            })?,
        };
        Ok(ArtifactServer::bind(&serve.dir, addr, self.server_tls()?)?)
    }

    /// The artifact server's certificate for an https bootstrap_url (`None` for http).
    pub(crate) fn server_tls(&self) -> Result<Option<crate::serve::TlsConfig>, InstallerError> {
        match self.cfg.bootstrap_tls(&self.genconf_dir) {
            Some(t) => Ok(Some(crate::serve::load_tls(&t.cert, &t.key)?)),
            None => Ok(None),
        }
    }

    /// The PEM of the CA the hosts pin for an https bootstrap_url (`None` for http).
    pub(crate) fn repository_ca(&self) -> Result<Option<String>, InstallerError> {
        let Some(t) = self.cfg.bootstrap_tls(&self.genconf_dir) else {
            return Ok(None);
        };
        std::fs::read_to_string(&t.ca).map(Some).map_err(|e| {
            InstallerError::Serve(ServeError::Tls {
                what: "CA certificate",
                path: t.ca.clone(),
                message: e.to_string(),
                hint:
                    "run `tarmac genconf` (it makes genconf/tls/ca.pem), or check bootstrap_tls_ca"
                        .into(),
            })
        })
    }

    /// Does the installer serve bootstrap_url itself (http or https, unless `bootstrap_serve`
    /// is false: an external store)?
    pub(crate) fn is_served(&self) -> bool {
        let u = self.cfg.bootstrap_url();
        self.cfg.bootstrap_serve() && (u.starts_with("http://") || tarmac_config::tls::is_https(u))
    }

    /// preflight: install.sh `--preflight-only` for each host's role, plus OS, architecture,
    /// clock offset and sudo. `ignore` names checks whose failure is reported but tolerated.
    pub async fn preflight(
        &self,
        opts: &PreflightOptions,
    ) -> Result<(StageRun, BTreeMap<HostAddr, Vec<CheckResult>>), InstallerError> {
        let serve = ServeInfo::read(&self.genconf_dir)?;
        let server = if self.is_served() && !opts.push {
            Some(self.serve(&serve, opts.listen)?)
        } else {
            None
        };
        let results: Arc<std::sync::Mutex<BTreeMap<HostAddr, Vec<CheckResult>>>> = Arc::default();
        let ignore = opts.ignore.clone();
        let push = opts.push;
        let serve = Arc::new(serve);
        let offline_repo = opts.offline.clone().map(Arc::new);
        let run = self
            .stage(Stage::Preflight, opts.only.clone(), None, |host| {
                let results = results.clone();
                let ignore = ignore.clone();
                let serve = serve.clone();
                let offline_repo = offline_repo.clone();
                async move {
                    let role = host.role().unwrap_or(Role::Agent);
                    let mut checks = Vec::new();
                    if host.user() != "root" {
                        let st = host.sudo_status().await?;
                        checks.push(CheckResult {
                            name: "sudo".into(),
                            passed: !matches!(st, tarmac_ssh::SudoStatus::Unavailable(_)),
                            detail: format!("{st:?}"),
                        });
                    }
                    let sent = SystemTime::now();
                    let r = host
                        .run("host checks", Exec::new(plan::host_checks_script()))
                        .await?;
                    let rtt = sent.elapsed().unwrap_or_default();
                    checks.extend(plan::parse_checks(&r.stdout));
                    if let Some(remote) = plan::parse_clock(&r.stdout) {
                        let local_mid =
                            sent.duration_since(UNIX_EPOCH).unwrap_or_default() + rtt / 2;
                        checks.push(plan::clock_check(remote - local_mid.as_secs_f64(), 10.0));
                    }
                    upload_install_script(&host, &serve, push).await?;
                    let r = host
                        .run(
                            "install.sh --preflight-only",
                            Exec::root(plan::install_command(role, true)),
                        )
                        .await?;
                    let mut script_checks = plan::parse_checks(&r.stdout);
                    if script_checks.is_empty() && !r.success() {
                        script_checks.push(CheckResult {
                            name: "install.sh".into(),
                            passed: false,
                            detail: r.stderr_tail.join("\n"),
                        });
                    }
                    checks.extend(script_checks);
                    if let Some(repo) = &offline_repo {
                        checks.push(offline_prereqs_check(&host, repo).await?);
                    }
                    let failed: Vec<&CheckResult> = checks
                        .iter()
                        .filter(|c| {
                            !c.passed && !ignore.iter().any(|i| c.name.contains(i.as_str()))
                        })
                        .collect();
                    let outcome = if failed.is_empty() {
                        Outcome::Ok
                    } else {
                        Outcome::Failed {
                            exit_code: None,
                            signal: None,
                            message: format!(
                                "{} check(s) failed: {}",
                                failed.len(),
                                failed
                                    .iter()
                                    .map(|c| c.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        }
                    };
                    results
                        .lock()
                        .expect("results")
                        .insert(host.addr().clone(), checks);
                    Ok(outcome)
                }
            })
            .await;
        if let Some(s) = server {
            s.stop().await;
        }
        let run = run?;
        let results = std::mem::take(&mut *results.lock().expect("results"));
        Ok((run, results))
    }

    /// install-prereqs: detect apt/dnf/yum/zypper and install that family's prerequisites.
    pub async fn install_prereqs(
        &self,
        only: Option<Vec<HostAddr>>,
        prereqs: &Prereqs,
    ) -> Result<StageRun, InstallerError> {
        let script = prereqs.script();
        self.stage(Stage::InstallPrereqs, only, None, |host| {
            let script = script.clone();
            async move {
                host.check(
                    "install prerequisites",
                    Exec::root(script).timeout(Duration::from_secs(900)),
                )
                .await?;
                Ok(Outcome::Ok)
            }
        })
        .await
    }

    /// install-prereqs --offline: on each host, detect its OS, upload only its suite's files of
    /// the offline repository over SSH (sha256-checked by the engine, and again on the host
    /// before apt sees them), and install the prerequisites with that directory as apt's only
    /// source: no host contacts a network repository. A host whose suite the repository does
    /// not carry, or without apt, fails with what the repository carries and a hint.
    pub async fn install_prereqs_offline(
        &self,
        only: Option<Vec<HostAddr>>,
        prereqs: &Prereqs,
        repo: &OfflineRepo,
    ) -> Result<StageRun, InstallerError> {
        let probe = offline::probe_script(prereqs);
        let packages = Arc::new(prereqs.apt.clone());
        let repo = Arc::new(repo.clone());
        self.stage(Stage::InstallPrereqs, only, None, |host| {
            let probe = probe.clone();
            let packages = packages.clone();
            let repo = repo.clone();
            async move {
                let r = host.check("detect OS", Exec::root(probe).quiet()).await?;
                let found = offline::parse_probe(&r.stdout);
                let (suite, index) =
                    offline::suite_for_host(&host.addr().to_string(), repo.index(), &found)
                        .map_err(|why| {
                            step_failed(
                                host.addr().clone(),
                                "detect OS".into(),
                                None,
                                tarmac_types::error_report::text_with_hint(&why),
                                Vec::new(),
                            )
                        })?;
                host.check(
                    "upload prerequisites: prepare",
                    Exec::root(offline::prepare_remote_command()),
                )
                .await?;
                for (path, f) in repo.files(suite) {
                    let src = UploadSource::file(&path).map_err(|e| {
                        step_failed(
                            host.addr().clone(),
                            "upload prerequisites".into(),
                            None,
                            format!("cannot read {}: {e}", path.display()),
                            Vec::new(),
                        )
                    })?;
                    host.upload(
                        &format!("upload prerequisites: {suite}/{}", f.name),
                        &Upload::new(src, format!("{}/repo/{}", offline::REMOTE_DIR, f.name))
                            .mode(0o644)
                            .root(),
                    )
                    .await?;
                }
                host.check(
                    "install prerequisites (offline)",
                    Exec::root(offline::offline_install_script(index, &packages))
                        .timeout(Duration::from_secs(900)),
                )
                .await?;
                Ok(Outcome::Ok)
            }
        })
        .await
    }

    /// deploy: every host installs from install.sh (pull from the installer's HTTP server, or
    /// `push` over SSH), after the installer uploaded the secret files of its role over SSH
    /// (see [`crate::secrets`]). A host already on the target package list is `unchanged`.
    pub async fn deploy(&self, opts: &DeployOptions) -> Result<StageRun, InstallerError> {
        self.deploy_inner(opts, false).await.map(|(run, _)| run)
    }

    /// [`Self::deploy`]; with `reconcile`, a host that already runs another package list is
    /// left alone (`unchanged`) and returned, for the rolling upgrade that follows
    /// ([`Self::deploy_reconcile`]).
    pub(crate) async fn deploy_inner(
        &self,
        opts: &DeployOptions,
        reconcile: bool,
    ) -> Result<(StageRun, Vec<HostAddr>), InstallerError> {
        let behind: Arc<std::sync::Mutex<Vec<HostAddr>>> = Arc::default();
        let serve = ServeInfo::read(&self.genconf_dir)?;
        let secrets = Arc::new(Secrets::read(&self.genconf_dir, &serve.packages)?);
        let server = if self.is_served() && !opts.push {
            Some(self.serve(&serve, opts.listen)?)
        } else {
            None
        };
        let expected = Arc::new(serve.packages.clone());
        let push = opts.push;
        let timeout = opts.timeout;
        let plan = LedgerPlan {
            op: ledger::Op::Deploy,
            target_before: self.deployed_target()?,
            target_after: Some(serve.target()),
            bootstrap_id: serve.bootstrap_id.clone(),
            config_id: serve.config_id(),
        };
        let serve = Arc::new(serve);
        // The peer relay: a tree over the hosts of this run, in the stage's order.
        let mut this = self.clone();
        let tree = self.cfg.relay().map(|(fanout, port)| {
            let order: Vec<HostAddr> = self
                .targets(self.within_hosts(opts.only.clone()).as_deref())
                .into_iter()
                .map(|t| t.addr)
                .collect();
            Arc::new(relay::RelayTree::new(&order, fanout, port))
        });
        if let Some(t) = &tree {
            let t = t.clone();
            this.finish_hook = Some(tarmac_ssh::FinishHook(Arc::new(move |h, _| t.finished(h))));
        }
        let relay_ttl = timeout.max(Duration::from_secs(300))
            * u32::try_from(tree.as_ref().map_or(1, |t| t.depth()) + 1).unwrap_or(u32::MAX);
        let run = this
            .ledgered_stage(Stage::Deploy, opts.only.clone(), None, Some(plan), |host| {
                let expected = expected.clone();
                let serve = serve.clone();
                let secrets = secrets.clone();
                let behind = behind.clone();
                let tree = tree.clone();
                async move {
                    let role = host.role().unwrap_or(Role::Agent);
                    let active = host.check("inspect", Exec::root(plan::active_command())).await?;
                    let active = plan::parse_active(&active.stdout);
                    // A host already on the list holds the archives too: it relays as well.
                    let relay_for_children = |tree: Option<Arc<relay::RelayTree>>| {
                        let host = host.clone();
                        let script = serve.install_script.clone();
                        async move {
                            if let Some(t) = tree.filter(|t| t.has_children(host.addr())) {
                                relay::serve_children(&host, &t, &script, relay_ttl).await;
                            }
                        }
                    };
                    if active == *expected {
                        relay_for_children(tree).await;
                        return Ok(Outcome::Unchanged);
                    }
                    if !active.is_empty() && reconcile {
                        behind.lock().expect("deploy").push(host.addr().clone());
                        return Ok(Outcome::Unchanged);
                    }
                    if !active.is_empty() {
                        return Err(step_failed(host.addr().clone(), "inspect".into(), None, "Tarmac is installed here with another package list: use `tarmac upgrade` (or `tarmac uninstall` first)".into(), Vec::new()));
                    }
                    upload_install_script(&host, &serve, push).await?;
                    if push {
                        push_files(&host, &serve.dir).await?;
                    }
                    // The secret files of this host's role, over SSH, before tarmac-host
                    // activates the config package (it refuses to without them).
                    secrets::deliver(&host, &secrets, role).await?;
                    let mirrors = match &tree {
                        Some(t) => t.sources(host.addr()).await,
                        None => Vec::new(),
                    };
                    host.check(
                        "install",
                        Exec::root(plan::with_mirrors(
                            &mirrors,
                            &plan::with_operation(
                                host.run_id(),
                                &plan::install_command(role, false),
                            ),
                        ))
                        .timeout(timeout),
                    )
                    .await?;
                    let active = host.check("verify", Exec::root(plan::active_command())).await?;
                    if plan::parse_active(&active.stdout) != *expected {
                        return Err(step_failed(host.addr().clone(), "verify".into(), None, "after install.sh the active packages differ from the cluster package list".into(), Vec::new()));
                    }
                    relay_for_children(tree).await;
                    Ok(Outcome::Ok)
                }
            })
            .await;
        if let Some(s) = server {
            s.stop().await;
        }
        let mut behind = std::mem::take(&mut *behind.lock().expect("deploy"));
        behind.sort();
        Ok((run?, behind))
    }

    /// postflight: poll node checks on every host (and cluster checks on masters) with backoff
    /// until they pass or `deadline` passes. The deadline is the stage's, not the per-command timeout.
    pub async fn postflight(
        &self,
        only: Option<Vec<HostAddr>>,
        deadline: Duration,
    ) -> Result<StageRun, InstallerError> {
        self.stage(
            Stage::Postflight,
            only,
            Some(deadline + Duration::from_secs(30)),
            |host| async move {
                poll_checks(&host, deadline).await?;
                Ok(Outcome::Ok)
            },
        )
        .await
    }

    /// uninstall: stop and remove everything Tarmac put on the hosts.
    pub async fn uninstall(
        &self,
        only: Option<Vec<HostAddr>>,
        purge: bool,
    ) -> Result<StageRun, InstallerError> {
        let script = plan::uninstall_script(purge);
        let before = self.deployed_target()?;
        let whole = only.is_none() && self.only.is_none();
        let plan = LedgerPlan {
            op: ledger::Op::Uninstall,
            target_after: if whole { None } else { before.clone() },
            target_before: before,
            bootstrap_id: None,
            config_id: None,
        };
        self.ledgered_stage(Stage::Uninstall, only, None, Some(plan), |host| {
            let script = script.clone();
            async move {
                host.check("uninstall", Exec::root(script)).await?;
                Ok(Outcome::Ok)
            }
        })
        .await
    }

    /// status: every host's active packages, generation, units and failed checks compared
    /// with the target the cluster ledger says it should be on (entry `at`'s, or the latest),
    /// or genconf's package list while the ledger is empty. A host with drift, or one changed
    /// behind the installer's back, is reported as failed; a host still on the target an
    /// unfinished upgrade or rollback started from is expected for now.
    pub async fn status(
        &self,
        only: Option<Vec<HostAddr>>,
        at: Option<u64>,
    ) -> Result<(StageRun, StatusReport), InstallerError> {
        let serve = ServeInfo::read(&self.genconf_dir).ok();
        let entries = self.ledger().read()?;
        if let Some(n) = at
            && !entries.iter().any(|e| e.seq == n)
        {
            return Err(LedgerError::NoEntry {
                seq: n,
                count: entries.len() as u64,
            }
            .into());
        }
        let expectation = ledger::expectation(&entries, at);
        let fallback = serve
            .as_ref()
            .map(|s| s.packages.clone())
            .unwrap_or_default();
        let shared = Arc::new((expectation.clone(), fallback, entries));
        let hosts: Arc<std::sync::Mutex<BTreeMap<HostAddr, HostStatusReport>>> = Arc::default();
        let run = self
            .stage(Stage::Status, only, None, |host| {
                let shared = shared.clone();
                let hosts = hosts.clone();
                async move {
                    let r = host
                        .check("status", Exec::root(plan::status_script()).quiet())
                        .await?;
                    let st = plan::parse_status(&r.stdout);
                    let (x, fallback, entries) = &*shared;
                    let v = crate::verdict::judge(x, fallback, entries, &st);
                    hosts.lock().expect("status").insert(
                        host.addr().clone(),
                        HostStatusReport {
                            role: host.role(),
                            status: st,
                            drift: v.drift,
                            standing: v.standing,
                            placed_by: v.placed_by,
                        },
                    );
                    Ok(v.outcome)
                }
            })
            .await?;
        let x = expectation;
        let report = StatusReport {
            package_list_id: x.target.as_ref().map(|t| t.list_id.clone()).or_else(|| {
                x.set_by
                    .is_none()
                    .then(|| serve.as_ref().map(|s| s.list_id.clone()))
                    .flatten()
            }),
            target_set_by: x.set_by,
            at,
            interim_list_id: x.interim.map(|t| t.list_id),
            resume: x.resume,
            pending: x.pending.map(|(seq, t)| (seq, t.list_id)),
            hosts: std::mem::take(&mut *hosts.lock().expect("status")),
        };
        Ok((run, report))
    }
}

/// Poll `tarmac-host check` on a host (node checks; cluster checks on masters) with backoff
/// until it passes or `deadline` passes. The deadline is the caller's, independent of the
/// per-command timeout; cancellation ends the wait at once.
pub(crate) async fn poll_checks(host: &HostSession, deadline: Duration) -> Result<(), StepError> {
    let started = Instant::now();
    let cmd = format!("{} check", plan::HOST_BIN);
    let mut delay = Duration::from_millis(500);
    loop {
        let r = host
            .run(
                "checks",
                Exec::root(cmd.clone())
                    .timeout(Duration::from_secs(120))
                    .quiet(),
            )
            .await?;
        if r.success() {
            return Ok(());
        }
        if started.elapsed() + delay >= deadline {
            let mut tail: Vec<String> =
                r.stdout.lines().rev().take(10).map(str::to_owned).collect();
            tail.reverse();
            tail.extend(r.stderr_tail.iter().cloned());
            return Err(step_failed(
                host.addr().clone(),
                "checks".into(),
                r.exit_code,
                format!("checks still failing after {}s", deadline.as_secs()),
                tail,
            ));
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = host.stop_token().cancelled() => {
                return Err(StepError::Cancelled { host: host.addr().clone(), step: "checks".into() });
            }
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Preflight's check of the host's missing prerequisites against the offline repository
/// (see [`offline::preflight_check`]).
async fn offline_prereqs_check(
    host: &HostSession,
    repo: &OfflineRepo,
) -> Result<CheckResult, StepError> {
    let prereqs = Prereqs::standard();
    let r = host
        .run(
            "offline prerequisites",
            Exec::root(offline::probe_script(&prereqs)).quiet(),
        )
        .await?;
    if !r.success() {
        return Ok(CheckResult {
            name: offline::CHECK_NAME.into(),
            passed: false,
            detail: format!(
                "cannot probe the host's prerequisites as root: {}",
                r.stderr_tail.join("\n")
            ),
        });
    }
    let found = offline::parse_probe(&r.stdout);
    Ok(offline::preflight_check(
        &host.addr().to_string(),
        &found,
        repo.index(),
        &prereqs,
    ))
}

/// A failed step with a reason and the last output lines.
fn step_failed(
    host: HostAddr,
    step: String,
    exit_code: Option<i32>,
    message: String,
    tail: Vec<String>,
) -> StepError {
    let mut detail = format!("\n{message}");
    for l in tail {
        detail.push_str("\n    ");
        detail.push_str(&l);
    }
    StepError::Failed {
        host,
        step,
        exit_code,
        signal: None,
        detail,
    }
}

/// Upload install.sh over the authenticated SSH channel (sha256-checked by the engine) to
/// [`plan::PUSH_DIR`], readable only by root. install.sh carries every sha256 pin and the
/// trusted signing key, so it must never come from the network the artifacts cross; with
/// `--push` its URL points at the pushed copy of the serve directory.
async fn upload_install_script(
    host: &HostSession,
    serve: &ServeInfo,
    push: bool,
) -> Result<(), StepError> {
    let script = if push {
        plan::pushed_install_script(&serve.install_script)
    } else {
        serve.install_script.clone()
    };
    host.check(
        "upload install.sh: prepare",
        Exec::root(plan::prepare_push_dir_command()),
    )
    .await?;
    host.upload(
        "upload install.sh",
        &Upload::new(
            UploadSource::bytes("install.sh", script),
            format!("{}/install.sh", plan::PUSH_DIR),
        )
        .mode(0o700)
        .root(),
    )
    .await?;
    Ok(())
}

/// Copy the serve directory's files (all but install.sh, see [`upload_install_script`]) to
/// the host for `--push`. Uploads are sha256-checked by the engine.
async fn push_files(host: &HostSession, serve_dir: &Path) -> Result<(), StepError> {
    for rel in walk(serve_dir) {
        if rel == "install.sh" {
            continue;
        }
        let src = UploadSource::file(serve_dir.join(&rel)).map_err(|e| {
            step_failed(
                host.addr().clone(),
                "push".into(),
                None,
                format!("cannot read {}: {e}", serve_dir.join(&rel).display()),
                Vec::new(),
            )
        })?;
        host.upload(
            &format!("push: {rel}"),
            &Upload::new(src, format!("{}/{rel}", plan::PUSH_DIR))
                .mode(0o644)
                .root(),
        )
        .await?;
    }
    Ok(())
}

/// Every regular file below `dir`, as sorted relative paths.
fn walk(dir: &Path) -> Vec<String> {
    fn go(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => go(base, &p, out),
                Ok(t) if t.is_file() => {
                    if let Ok(rel) = p.strip_prefix(base) {
                        out.push(rel.to_string_lossy().into_owned());
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    go(dir, dir, &mut out);
    out.sort();
    out
}

/// The socket address to serve on for an `http(s)://host:port` bootstrap URL (port 80 or 443
/// when none is given).
pub fn bootstrap_listen_addr(url: &str) -> Result<SocketAddr, String> {
    let (rest, default_port) = match url.strip_prefix("http://") {
        Some(r) => (r, 80),
        None => match url.strip_prefix("https://") {
            Some(r) => (r, 443),
            None => {
                return Err("only http:// and https:// URLs can be served by the installer".into());
            }
        },
    };
    let hostport = rest.split('/').next().unwrap_or_default();
    let with_port = if hostport.starts_with('[') {
        if hostport.contains("]:") {
            hostport.to_owned()
        } else {
            format!("{hostport}:{default_port}")
        }
    } else if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:{default_port}")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{hostport}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{hostport}` has no address"))
}

#[derive(Debug, Clone, Default)]
pub struct PreflightOptions {
    pub only: Option<Vec<HostAddr>>,
    pub ignore: Vec<String>,
    pub push: bool,
    pub listen: Option<SocketAddr>,
    /// Check the hosts' missing prerequisites against this offline repository.
    pub offline: Option<OfflineRepo>,
}

#[derive(Debug, Clone)]
pub struct DeployOptions {
    pub only: Option<Vec<HostAddr>>,
    pub push: bool,
    pub listen: Option<SocketAddr>,
    /// Per-host deadline of install.sh (download + activation).
    pub timeout: Duration,
}

impl Default for DeployOptions {
    fn default() -> Self {
        DeployOptions {
            only: None,
            push: false,
            listen: None,
            timeout: Duration::from_secs(900),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostStatusReport {
    pub role: Option<Role>,
    pub status: HostStatus,
    /// Against the target the host is expected on (the interim one while a run is unfinished).
    pub drift: Drift,
    pub standing: crate::verdict::Standing,
    /// The operation that put the host on its current generation.
    pub placed_by: ledger::PlacedBy,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// The package list the hosts are compared with.
    pub package_list_id: Option<String>,
    /// The ledger entry that set it (`None`: the ledger is empty; genconf's list is used).
    pub target_set_by: Option<u64>,
    /// `status --at N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
    /// An unfinished upgrade or rollback: hosts on this list are expected for now.
    pub interim_list_id: Option<String>,
    /// The run to resume.
    pub resume: Option<String>,
    /// A newer list rendered by genconf (ledger entry, list id) but not rolled out yet.
    pub pending: Option<(u64, String)>,
    pub hosts: BTreeMap<HostAddr, HostStatusReport>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addr_from_url() {
        assert_eq!(
            bootstrap_listen_addr("http://127.0.0.1:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            bootstrap_listen_addr("http://127.0.0.1/x").unwrap(),
            "127.0.0.1:80".parse().unwrap()
        );
        assert_eq!(
            bootstrap_listen_addr("http://[::1]:9").unwrap(),
            "[::1]:9".parse().unwrap()
        );
        assert_eq!(
            bootstrap_listen_addr("https://127.0.0.1:8443").unwrap(),
            "127.0.0.1:8443".parse().unwrap()
        );
        assert_eq!(
            bootstrap_listen_addr("https://127.0.0.1").unwrap(),
            "127.0.0.1:443".parse().unwrap()
        );
        assert_eq!(
            bootstrap_listen_addr("ftp://x").unwrap_err(),
            "only http:// and https:// URLs can be served by the installer"
        );
    }
}
