//! Starting installer runs from the web: one at a time, guarded by the same run lock as the
//! CLI (`genconf/state/lock`). The stages are the installer's own
//! ([`tarmac_installer::stages::Installer`]); their events go to the [`Hub`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tarmac_events::{Event, HostState, Level, Sink};
use tarmac_installer::lock::{Holder, LockError, RunLock};
use tarmac_installer::stages::{DeployOptions, Installer, PreflightOptions};
use tarmac_installer::upgrade::{BatchSize, Budget, UpgradeOptions};
use tarmac_types::{HostAddr, Stage};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::hub::{Hub, RosterHost, RunChange, now_ms};
use crate::{ApiError, App};

/// What to run.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StartRequest {
    /// Only these hosts (addresses as in config.yaml); default every host.
    pub hosts: Option<Vec<String>>,
    /// Only the hosts that did not succeed in the stage's last run.
    pub retry_failed: bool,
    /// preflight: checks whose failure is reported but tolerated.
    pub ignore_checks: Vec<String>,
    /// preflight/deploy: copy artifacts over SSH instead of letting hosts pull them.
    pub push: bool,
    /// deploy: do not take a snapshot of the quorum store before the reconciling upgrade
    /// touches masters.
    #[serde(default)]
    pub no_backup: bool,
    /// deploy: per-host deadline of install.sh; postflight: how long to wait for the checks.
    pub timeout_secs: Option<u64>,
    /// uninstall: also delete the state directories.
    pub purge: bool,
    /// uninstall: must be true (the GUI asks first).
    pub confirm: bool,
}

/// A number or a percentage, as JSON `5`, `"5"` or `"10%"`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum CountOrPercent {
    Number(u64),
    Text(String),
}

impl CountOrPercent {
    fn text(&self) -> String {
        match self {
            CountOrPercent::Number(n) => n.to_string(),
            CountOrPercent::Text(t) => t.clone(),
        }
    }
}

/// Start a rolling upgrade to the package list genconf wrote last (`genconf/serve`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UpgradeRequest {
    /// Agents upgraded at once: a number ≥ 1 (`5`) or a percentage of the agents (`"10%"`,
    /// the default). Masters always go one at a time.
    #[schema(value_type = Option<String>, example = "10%")]
    pub batch: Option<CountOrPercent>,
    /// Agents that may fail before the upgrade stops: a number or a percentage (default 0).
    #[schema(value_type = Option<String>, example = "0")]
    pub max_failures: Option<CountOrPercent>,
    /// How long a switched host waits for the confirmation before it reverts by itself:
    /// `120s` (default), `2m` or seconds.
    #[schema(example = "120s")]
    pub confirm_window: Option<String>,
    /// How long node and cluster checks may take to pass after a switch (seconds, default 300).
    pub check_timeout_secs: Option<u64>,
    /// Continue the interrupted upgrade recorded in `genconf/state/upgrade.json`.
    pub resume: bool,
    /// Copy the new packages over SSH instead of letting hosts pull them over HTTP.
    pub push: bool,
    /// Do not take a snapshot of the quorum store before touching masters.
    #[serde(default)]
    pub no_backup: bool,
    /// Only these hosts (addresses as in config.yaml); default every host.
    pub hosts: Option<Vec<String>>,
}

/// Start a rolling rollback to each host's previous generation (or generation `to`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RollbackRequest {
    /// Roll back to this generation instead of each host's previous one.
    pub to: Option<u64>,
    /// Agents rolled back at once: a number ≥ 1 or a percentage of the agents (default `10%`).
    #[schema(value_type = Option<String>, example = "10%")]
    pub batch: Option<CountOrPercent>,
    /// Agents that may fail before the rollback stops: a number or a percentage (default 0).
    #[schema(value_type = Option<String>, example = "0")]
    pub max_failures: Option<CountOrPercent>,
    /// How long node and cluster checks may take to pass (seconds, default 300).
    pub check_timeout_secs: Option<u64>,
    /// Only these hosts (addresses as in config.yaml); default every host.
    pub hosts: Option<Vec<String>>,
    /// Must be true (the GUI asks first).
    pub confirm: bool,
    /// Do not take a snapshot of the quorum store before touching masters.
    #[serde(default)]
    pub no_backup: bool,
}

/// `batch` as the installer takes it; the error names the field.
pub fn parse_batch(v: Option<&CountOrPercent>) -> Result<BatchSize, ApiError> {
    let t = v.map_or_else(
        || tarmac_installer::upgrade::DEFAULT_BATCH.to_owned(),
        CountOrPercent::text,
    );
    t.parse::<BatchSize>().map_err(|e| {
        ApiError::keys(
            format!("bad `batch`: {e}"),
            vec![("batch".into(), format!("{e} (e.g. 5 or 10%)"))],
        )
    })
}

fn parse_budget(v: Option<&CountOrPercent>) -> Result<Budget, ApiError> {
    let t = v.map_or_else(|| "0".to_owned(), CountOrPercent::text);
    t.parse::<Budget>().map_err(|e| {
        ApiError::keys(
            format!("bad `max_failures`: {e}"),
            vec![("max_failures".into(), format!("{e} (e.g. 0, 2 or 5%)"))],
        )
    })
}

fn check_deadline(secs: Option<u64>) -> Result<Duration, ApiError> {
    match secs {
        Some(0) => Err(ApiError::keys(
            "bad `check_timeout_secs`: it must be at least 1",
            vec![(
                "check_timeout_secs".into(),
                "must be at least 1 (seconds)".into(),
            )],
        )),
        Some(n) => Ok(Duration::from_secs(n)),
        None => Ok(Duration::from_secs(300)),
    }
}

impl UpgradeRequest {
    /// The installer's options; 400 naming the field when one is not valid.
    pub fn options(&self) -> Result<UpgradeOptions, ApiError> {
        let confirm_window = match &self.confirm_window {
            None => Duration::from_secs(120),
            Some(w) => tarmac_config::types::parse_positive_duration(w).map_err(|e| {
                ApiError::keys(
                    format!("bad `confirm_window`: {e}"),
                    vec![("confirm_window".into(), e)],
                )
            })?,
        };
        Ok(UpgradeOptions {
            batch: parse_batch(self.batch.as_ref())?,
            max_failures: parse_budget(self.max_failures.as_ref())?,
            confirm_window,
            check_deadline: check_deadline(self.check_timeout_secs)?,
            resume: self.resume,
            push: self.push,
            no_backup: self.no_backup,
            ..UpgradeOptions::default()
        })
    }
}

impl RollbackRequest {
    /// The installer's options; 400 naming the field when one is not valid.
    pub fn options(&self) -> Result<UpgradeOptions, ApiError> {
        Ok(UpgradeOptions {
            batch: parse_batch(self.batch.as_ref())?,
            max_failures: parse_budget(self.max_failures.as_ref())?,
            check_deadline: check_deadline(self.check_timeout_secs)?,
            to: self.to,
            no_backup: self.no_backup,
            ..UpgradeOptions::default()
        })
    }
}

/// What a run does.
enum Job {
    Stage(StartRequest),
    Upgrade(UpgradeOptions),
    Rollback(UpgradeOptions),
    DayTwo(crate::daytwo::DayTwoJob),
}

/// The stages the web UI can start.
pub const STARTABLE: &[Stage] = &[
    Stage::Genconf,
    Stage::Preflight,
    Stage::InstallPrereqs,
    Stage::Deploy,
    Stage::Postflight,
    Stage::Uninstall,
    Stage::Status,
];

pub fn parse_stage(s: &str) -> Option<Stage> {
    STARTABLE.iter().copied().find(|st| st.as_str() == s)
}

struct Current {
    stage: Stage,
    cancel: CancellationToken,
}

/// Who is running right now, if anyone.
#[derive(Debug, Clone, serde::Serialize, ToSchema)]
pub struct Busy {
    /// `this server` or the lock holder's command.
    pub by: String,
    #[schema(value_type = Option<String>)]
    pub stage: Option<Stage>,
    #[schema(value_type = Option<Object>)]
    pub holder: Option<Holder>,
}

#[derive(Default)]
pub struct RunManager {
    current: Mutex<Option<Current>>,
}

/// The lock's holder when someone else (e.g. a CLI run) holds it. Only called with the
/// manager's mutex held and no run of ours in flight, so it never races our own runs.
fn probe(state_dir: &Path) -> Result<Option<Busy>, ApiError> {
    match RunLock::acquire(state_dir, "tarmac web (probe)") {
        Ok(_lock) => Ok(None),
        Err(LockError::Held { holder, .. }) => Ok(Some(Busy {
            by: holder.command.clone(),
            stage: None,
            holder: Some(holder),
        })),
        Err(LockError::HeldUnknown { .. }) => Ok(Some(Busy {
            by: "another tarmac run".into(),
            stage: None,
            holder: None,
        })),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

/// Resets the manager when the run task ends, even by panic.
struct Slot {
    app: Arc<App>,
    stage: Stage,
    finished: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.finished {
            self.app.hub.run_change(RunChange::Finished {
                stage: self.stage,
                ok: false,
                summary: None,
                error: Some("the run ended unexpectedly (internal error)".into()),
                checks: None,
                report: None,
                finished_unix_ms: now_ms(),
            });
        }
        if let Ok(mut g) = self.app.runs.current.lock() {
            *g = None;
        }
    }
}

/// An error with its causes, one per line, then its hints (`hint: …`).
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let r = tarmac_types::error_report::ErrorReport::with_hints(e, &crate::TYPED_HINTS);
    let mut s = r.error.clone();
    for c in &r.causes {
        s.push_str("\ncaused by: ");
        s.push_str(c);
    }
    for h in r.hint.iter().flat_map(|h| h.lines()) {
        s.push_str("\nhint: ");
        s.push_str(h);
    }
    s
}

impl RunManager {
    pub fn busy(&self, state_dir: &Path) -> Result<Option<Busy>, ApiError> {
        let g = self.current.lock().expect("runs poisoned");
        if let Some(c) = g.as_ref() {
            return Ok(Some(Busy {
                by: "this server".into(),
                stage: Some(c.stage),
                holder: None,
            }));
        }
        probe(state_dir)
    }

    /// A run started from this server is in flight.
    pub fn in_progress(&self) -> bool {
        self.current.lock().map(|g| g.is_some()).unwrap_or(false)
    }

    /// Cancel the run in flight; false when there is none.
    pub fn cancel(&self) -> bool {
        match self.current.lock().expect("runs poisoned").as_ref() {
            Some(c) => {
                c.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Validate, select hosts, claim the slot and start `stage` in the background.
    pub fn start(app: &Arc<App>, stage: Stage, req: StartRequest) -> Result<RunChange, ApiError> {
        if stage == Stage::Uninstall && !req.confirm {
            return Err(ApiError::bad_request(
                "uninstall removes Tarmac from the hosts: send `confirm: true` to go ahead",
            ));
        }
        let hosts = req.hosts.clone();
        Self::launch(app, stage, hosts.as_deref(), Job::Stage(req))
    }

    /// Start a rolling upgrade to genconf's latest package list (checked to exist first).
    pub fn start_upgrade(app: &Arc<App>, req: UpgradeRequest) -> Result<RunChange, ApiError> {
        let opts = req.options()?;
        if let Err(e) = tarmac_installer::stages::ServeInfo::read(&app.opts.genconf_dir) {
            return Err(no_serve(&e));
        }
        Self::launch(
            app,
            Stage::Upgrade,
            req.hosts.as_deref(),
            Job::Upgrade(opts),
        )
    }

    /// Start a rolling rollback (needs `confirm: true`).
    pub fn start_rollback(app: &Arc<App>, req: RollbackRequest) -> Result<RunChange, ApiError> {
        let opts = req.options()?;
        if !req.confirm {
            return Err(ApiError::bad_request(
                "rollback switches the hosts back to an earlier generation: send `confirm: true` to go ahead",
            ));
        }
        Self::launch(
            app,
            Stage::Rollback,
            req.hosts.as_deref(),
            Job::Rollback(opts),
        )
    }

    /// Start a day-two operation (validated by the caller, see [`crate::daytwo`]).
    pub(crate) fn start_daytwo(
        app: &Arc<App>,
        stage: Stage,
        job: crate::daytwo::DayTwoJob,
    ) -> Result<RunChange, ApiError> {
        Self::launch(app, stage, None, Job::DayTwo(job))
    }

    fn launch(
        app: &Arc<App>,
        stage: Stage,
        hosts: Option<&[String]>,
        job: Job,
    ) -> Result<RunChange, ApiError> {
        let gdir = app.opts.genconf_dir.clone();
        let cfg =
            tarmac_genconf::validate(&app.opts.dist, &gdir).map_err(|r| ApiError::invalid(&r))?;
        let mut installer = Installer::new(&gdir, cfg, app.hub.clone() as Sink);
        installer.sudo_password = app.sudo_password.lock().expect("sudo poisoned").clone();
        let mut only = select_hosts(&installer, hosts)?;
        let mut base_run_id = None;
        let retry_failed = matches!(&job, Job::Stage(r) if r.retry_failed);
        if retry_failed {
            if stage == Stage::Genconf {
                return Err(ApiError::bad_request(
                    "genconf runs on this machine only; there is nothing to retry",
                ));
            }
            let last = tarmac_installer::journal::last_run(&installer.state_dir(), stage)
                .map_err(|e| ApiError::bad_request(chain(&e)))?;
            base_run_id = Some(last.run_id.clone());
            let failed = last.unsuccessful_hosts();
            let failed: Vec<HostAddr> = match only {
                Some(o) => failed.into_iter().filter(|h| o.contains(h)).collect(),
                None => failed,
            };
            if failed.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "every host succeeded in the last {stage} run; nothing to retry"
                )));
            }
            only = Some(failed);
        }

        let cancel = installer.cancel.clone();
        {
            let mut g = app.runs.current.lock().expect("runs poisoned");
            if let Some(c) = g.as_ref() {
                return Err(ApiError::conflict(
                    format!(
                        "a {} run started from this server is in progress; wait for it to finish or cancel it",
                        c.stage
                    ),
                    Busy {
                        by: "this server".into(),
                        stage: Some(c.stage),
                        holder: None,
                    },
                ));
            }
            if let Some(b) = probe(&gdir.join("state"))? {
                let msg = match &b.holder {
                    Some(h) => format!(
                        "another tarmac run holds {}: pid {} on {} (`{}`), running for {}",
                        gdir.join("state/lock").display(),
                        h.pid,
                        h.host,
                        h.command,
                        tarmac_installer::lock::human_age(h.since_unix)
                    ),
                    None => format!(
                        "another tarmac run holds {}",
                        gdir.join("state/lock").display()
                    ),
                };
                return Err(ApiError::conflict(msg, b));
            }
            *g = Some(Current { stage, cancel });
        }
        // Upgrade and rollback show every host they may touch from the start.
        let roster = match &job {
            Job::Stage(_) => Vec::new(),
            Job::DayTwo(j) => j.roster(&installer),
            Job::Upgrade(_) | Job::Rollback(_) => installer
                .hosts()
                .into_iter()
                .filter(|(h, _)| only.as_ref().is_none_or(|o| o.contains(h)))
                .map(|(h, r)| RosterHost {
                    host: h.to_string(),
                    role: Some(r),
                })
                .collect(),
        };
        let started = RunChange::Started {
            stage,
            hosts: only
                .as_ref()
                .map(|o| o.iter().map(ToString::to_string).collect()),
            retry: retry_failed,
            base_run_id,
            started_unix_ms: now_ms(),
            roster,
        };
        app.hub.run_change(started.clone());
        let slot = Slot {
            app: app.clone(),
            stage,
            finished: false,
        };
        match job {
            Job::Stage(req) => {
                tokio::spawn(run(slot, installer, stage, only, req));
            }
            Job::Upgrade(opts) => {
                tokio::spawn(run_rolling(slot, installer, false, only, opts));
            }
            Job::Rollback(opts) => {
                tokio::spawn(run_rolling(slot, installer, true, only, opts));
            }
            Job::DayTwo(j) => {
                tokio::spawn(run_daytwo(slot, installer, j));
            }
        }
        Ok(started)
    }
}

/// `hosts` checked against config.yaml (`None`: every host).
pub fn select_hosts(
    installer: &Installer,
    hosts: Option<&[String]>,
) -> Result<Option<Vec<HostAddr>>, ApiError> {
    let Some(list) = hosts else {
        return Ok(None);
    };
    let known = installer.hosts();
    let mut sel = Vec::new();
    for h in list {
        let addr: HostAddr = h
            .parse()
            .map_err(|e| ApiError::bad_request(format!("bad host `{h}`: {e}")))?;
        if !known.iter().any(|(k, _)| *k == addr) {
            return Err(ApiError::bad_request(format!(
                "host `{h}` is not in config.yaml"
            )));
        }
        sel.push(addr);
    }
    if sel.is_empty() {
        return Err(ApiError::bad_request("`hosts` is empty"));
    }
    Ok(Some(sel))
}

/// 400 for a missing or unreadable `genconf/serve` (upgrade and plan need it).
pub fn no_serve(e: &(dyn std::error::Error + 'static)) -> ApiError {
    ApiError::bad_request(format!(
        "{}\nhint: in the web GUI, Configure → Save & generate writes genconf/serve/",
        chain(e)
    ))
}

/// The upgrade state's per-host words (`UpgradeState::hosts`) as a run summary.
fn summary_of(hosts: &BTreeMap<String, HostState>) -> tarmac_events::Summary {
    let mut s = tarmac_events::Summary::default();
    for st in hosts.values() {
        s.total += 1;
        match st {
            HostState::Ok => s.ok += 1,
            HostState::Unchanged => s.unchanged += 1,
            HostState::Unreachable => s.unreachable += 1,
            HostState::TimedOut => s.timed_out += 1,
            HostState::Cancelled => s.cancelled += 1,
            HostState::Untouched | HostState::Skipped => s.skipped += 1,
            HostState::Failed
            | HostState::Reverted
            | HostState::Unconfirmed
            | HostState::Pending
            | HostState::Running
            | HostState::Unfinished => s.failed += 1,
        }
    }
    s
}

async fn run_rolling(
    mut slot: Slot,
    mut installer: Installer,
    rollback: bool,
    only: Option<Vec<HostAddr>>,
    opts: UpgradeOptions,
) {
    let app = slot.app.clone();
    let stage = slot.stage;
    installer.only = only;
    let result = if rollback {
        installer.rollback(&opts).await
    } else {
        installer.upgrade(&opts).await
    };
    let change = match result {
        Ok(r) => RunChange::Finished {
            stage,
            ok: r.succeeded(),
            summary: Some(summary_of(&r.state.hosts)),
            error: None,
            checks: None,
            report: serde_json::to_value(&r).ok(),
            finished_unix_ms: now_ms(),
        },
        Err(e) => RunChange::Finished {
            stage,
            ok: false,
            summary: None,
            error: Some(chain(&e)),
            checks: None,
            report: None,
            finished_unix_ms: now_ms(),
        },
    };
    app.hub.run_change(change);
    slot.finished = true;
}

async fn run_daytwo(mut slot: Slot, installer: Installer, job: crate::daytwo::DayTwoJob) {
    let app = slot.app.clone();
    let stage = slot.stage;
    let out = crate::daytwo::run(&app, installer, job).await;
    app.hub.run_change(RunChange::Finished {
        stage,
        ok: out.ok,
        summary: out.summary,
        error: out.error,
        checks: None,
        report: out.report,
        finished_unix_ms: now_ms(),
    });
    slot.finished = true;
}

/// genconf from config.yaml under the run lock, with its ledger entry (the GUI's genconf
/// stage and the re-render after a day-two edit of config.yaml).
pub(crate) fn genconf_now(app: &Arc<App>) -> Result<tarmac_genconf::GenconfReport, String> {
    let gdir = app.opts.genconf_dir.clone();
    let lock =
        RunLock::acquire(&gdir.join("state"), "tarmac web: genconf").map_err(|e| chain(&e))?;
    let opts = tarmac_genconf::GenconfOptions {
        genconf_dir: gdir.clone(),
        build_dir: app.opts.build_dir.clone(),
        public_key: app.opts.public_key.clone(),
        pack: tarmac_pkg::pack::PackOptions::default(),
    };
    let sink: Sink = app.hub.clone();
    let r = tarmac_genconf::genconf(&app.opts.dist, &opts, &sink).map_err(|e| match e {
        tarmac_genconf::GenconfError::Invalid(r) => r.render(),
        other => chain(&other),
    })?;
    tarmac_installer::ledger::Ledger::new(&gdir.join("state"))
        .record_genconf(
            &lock,
            tarmac_installer::ledger::Target {
                list_id: r.cluster_package_list_id.clone(),
                packages: r.packages.clone(),
            },
            &r.bootstrap_id,
            &r.config_id,
        )
        .map_err(|e| chain(&e))?;
    Ok(r)
}

async fn run(
    mut slot: Slot,
    mut installer: Installer,
    stage: Stage,
    only: Option<Vec<HostAddr>>,
    req: StartRequest,
) {
    let app = slot.app.clone();
    let hub: &Hub = &app.hub;
    let mut checks = None;
    let mut report = None;
    installer.only = None;
    let result: Result<Option<tarmac_events::Summary>, String> = match stage {
        Stage::Genconf => {
            let app2 = app.clone();
            let joined = tokio::task::spawn_blocking(move || genconf_now(&app2)).await;
            match joined {
                Ok(Ok(r)) => {
                    hub.emit_notice(
                        Level::Info,
                        format!(
                            "genconf wrote {} (cluster package list {})",
                            r.serve_dir.display(),
                            r.cluster_package_list_id
                        ),
                    );
                    report = serde_json::to_value(&r).ok();
                    Ok(None)
                }
                Ok(Err(e)) => Err(e),
                Err(e) => Err(format!("genconf failed: {e}")),
            }
        }
        Stage::Preflight => {
            let opts = PreflightOptions {
                only,
                ignore: req.ignore_checks.clone(),
                push: req.push,
                listen: None,
                // The web GUI runs online preflight; the offline repository is a CLI flag.
                offline: None,
            };
            match installer.preflight(&opts).await {
                Ok((run, c)) => {
                    checks = Some(
                        c.into_iter()
                            .map(|(h, v)| (h.to_string(), v))
                            .collect::<BTreeMap<_, _>>(),
                    );
                    Ok(Some(run.report.summary.clone()))
                }
                Err(e) => Err(chain(&e)),
            }
        }
        Stage::InstallPrereqs => installer
            .install_prereqs(only, &app.opts.prereqs)
            .await
            .map(|r| Some(r.report.summary.clone()))
            .map_err(|e| chain(&e)),
        Stage::Deploy => {
            let mut opts = DeployOptions {
                only,
                push: req.push,
                ..DeployOptions::default()
            };
            if let Some(t) = req.timeout_secs {
                opts.timeout = Duration::from_secs(t);
            }
            // As `tarmac deploy`: install the new hosts, then roll the installed ones that
            // are on another package list (a membership change) with confirm-or-revert.
            let up = UpgradeOptions {
                push: req.push,
                no_backup: req.no_backup,
                ..UpgradeOptions::default()
            };
            match installer.deploy_reconcile(&opts, &up).await {
                Ok(r) => {
                    report = Some(crate::daytwo::deploy_report_json(&r));
                    let mut s = r.install.report.summary.clone();
                    if let Some(u) = &r.upgrade {
                        let us = summary_of(&u.state.hosts);
                        if !u.succeeded() && us.failed == 0 {
                            s.failed += 1;
                        } else {
                            s.failed += us.failed;
                        }
                        s.unreachable += us.unreachable;
                        s.timed_out += us.timed_out;
                    }
                    Ok(Some(s))
                }
                Err(e) => Err(chain(&e)),
            }
        }
        Stage::Postflight => installer
            .postflight(only, Duration::from_secs(req.timeout_secs.unwrap_or(900)))
            .await
            .map(|r| Some(r.report.summary.clone()))
            .map_err(|e| chain(&e)),
        Stage::Uninstall => installer
            .uninstall(only, req.purge)
            .await
            .map(|r| Some(r.report.summary.clone()))
            .map_err(|e| chain(&e)),
        Stage::Status => match installer.status(only, None).await {
            Ok((run, r)) => {
                report = serde_json::to_value(&r).ok();
                Ok(Some(run.report.summary.clone()))
            }
            Err(e) => Err(chain(&e)),
        },
        other => Err(format!("{other} cannot be started from the web UI")),
    };
    let (ok, summary, error) = match result {
        Ok(Some(s)) => (s.all_succeeded(), Some(s), None),
        Ok(None) => (true, None, None),
        Err(e) => (false, None, Some(e)),
    };
    hub.run_change(RunChange::Finished {
        stage,
        ok,
        summary,
        error,
        checks,
        report,
        finished_unix_ms: now_ms(),
    });
    slot.finished = true;
}

impl Hub {
    fn emit_notice(&self, level: Level, message: String) {
        tarmac_events::EventSink::emit(self, Event::Notice { level, message });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_name_the_bad_field() {
        let bad = |r: UpgradeRequest| r.options().unwrap_err().body.to_string();
        assert_eq!(
            bad(UpgradeRequest {
                batch: Some(CountOrPercent::Text("abc".into())),
                ..Default::default()
            }),
            r#"{"diagnostics":[],"error":"bad `batch`: `abc` is neither a number nor a percentage","errors":{"batch":"`abc` is neither a number nor a percentage (e.g. 5 or 10%)"}}"#
        );
        assert_eq!(
            bad(UpgradeRequest {
                batch: Some(CountOrPercent::Number(0)),
                ..Default::default()
            }),
            r#"{"diagnostics":[],"error":"bad `batch`: `0`: a batch is a number ≥ 1 or a percentage 1%–100%","errors":{"batch":"`0`: a batch is a number ≥ 1 or a percentage 1%–100% (e.g. 5 or 10%)"}}"#
        );
        let o = UpgradeRequest {
            batch: Some(CountOrPercent::Number(3)),
            max_failures: Some(CountOrPercent::Text("20%".into())),
            confirm_window: Some("2m".into()),
            check_timeout_secs: Some(60),
            resume: true,
            push: true,
            no_backup: true,
            hosts: None,
        }
        .options()
        .unwrap();
        assert_eq!(o.batch, BatchSize::Count(3));
        assert!(o.no_backup);
        assert_eq!(o.max_failures, Budget::Percent(20));
        assert_eq!(o.confirm_window, Duration::from_secs(120));
        assert!(o.push && o.resume);
        assert_eq!(o.check_deadline, Duration::from_secs(60));
        assert!(o.resume);
        assert_eq!(o.to, None);
        // Defaults as the CLI's.
        let d = RollbackRequest {
            to: Some(4),
            ..Default::default()
        }
        .options()
        .unwrap();
        assert_eq!(d.batch, BatchSize::Percent(10));
        assert_eq!(d.max_failures, Budget::Count(0));
        assert_eq!(d.check_deadline, Duration::from_secs(300));
        assert_eq!(d.to, Some(4));
    }

    #[test]
    fn upgrade_state_words_as_a_summary() {
        let hosts: BTreeMap<String, HostState> = [
            ("a", "ok"),
            ("b", "unchanged"),
            ("c", "failed"),
            ("d", "reverted"),
            ("e", "unconfirmed"),
            ("f", "untouched"),
            ("g", "unreachable"),
            ("h", "timed-out"),
            ("i", "cancelled"),
        ]
        .iter()
        .map(|(h, s)| ((*h).to_owned(), s.parse().unwrap()))
        .collect();
        let s = summary_of(&hosts);
        assert_eq!(
            (
                s.total,
                s.ok,
                s.unchanged,
                s.failed,
                s.unreachable,
                s.timed_out,
                s.cancelled,
                s.skipped
            ),
            (9, 1, 1, 3, 1, 1, 1, 1)
        );
    }
}
