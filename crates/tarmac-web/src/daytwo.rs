//! Day two from the web: backup, restore, remove hosts and replace a master, run in the
//! background like every stage (same run lock, journals, events and per-host rows). After a
//! membership change this does what `tarmac remove-hosts` / `tarmac replace-master` do:
//! edit config.yaml (layout and comments kept), genconf again, install-prereqs on a fresh
//! master, deploy (install new hosts, roll the others) and postflight.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tarmac_events::Summary;
use tarmac_installer::change::{
    Change, ChangeOptions, ChangeReport, ChangeState, Regenerate, Regenerated,
};
use tarmac_installer::daytwo::{BackupOptions, DeployReport, Snapshot};
use tarmac_installer::stages::{Installer, StageRun};
use tarmac_installer::upgrade::UpgradeOptions;
use tarmac_types::{HostAddr, Role, Stage};
use utoipa::ToSchema;

use crate::hub::{RosterHost, RunChange};
use crate::runs::{RunManager, chain, genconf_now};
use crate::{ApiError, App};

/// Take a snapshot of the quorum store from a master.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BackupRequest {
    /// Keep only the newest N snapshots (older ones are deleted after this one is stored).
    pub keep: Option<usize>,
    /// Deadline of the snapshot on the host plus its download (seconds, default 600).
    pub timeout_secs: Option<u64>,
}

/// Restore a snapshot on every master.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RestoreRequest {
    /// The snapshot's name, as `GET /api/v1/snapshots` lists it.
    pub snapshot: String,
    /// How long the masters' checks may take to pass after the restore (seconds, default 300).
    pub check_timeout_secs: Option<u64>,
    /// Must be true (the GUI asks first).
    pub confirm: bool,
}

/// Remove hosts from the cluster.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RemoveHostsRequest {
    /// The hosts to remove, as config.yaml lists them.
    pub hosts: Vec<String>,
    /// Forget unreachable hosts without cleaning them.
    pub force: bool,
    /// Must be true (the GUI asks first).
    pub confirm: bool,
    /// How long node and cluster checks may take to pass during the rollout (seconds, default 300).
    pub check_timeout_secs: Option<u64>,
    /// How long a switched host waits for its confirmation before it reverts (seconds, default 120).
    pub confirm_window_secs: Option<u64>,
    /// Do not take a snapshot before the rollout touches masters.
    pub no_backup: bool,
    /// The rollout's batch size for agents: a count or a percentage (default 10%).
    pub batch: Option<String>,
}

/// Move a master's quorum membership to a fresh host.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ReplaceMasterRequest {
    /// The master to replace (dead or alive), as master_list lists it.
    pub old: String,
    /// A fresh host, not in config.yaml yet, that takes its place.
    pub new: String,
    /// Must be true (the GUI asks first).
    pub confirm: bool,
    pub check_timeout_secs: Option<u64>,
    pub confirm_window_secs: Option<u64>,
    pub no_backup: bool,
    pub batch: Option<String>,
}

/// Continue the membership change recorded in `state/change.json` (like `--resume`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ResumeChangeRequest {
    /// Must be true (the GUI asks first).
    pub confirm: bool,
    pub check_timeout_secs: Option<u64>,
    pub confirm_window_secs: Option<u64>,
    pub no_backup: bool,
    pub batch: Option<String>,
}

/// The membership change recorded in `state/change.json`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChangeView {
    /// The command it is: `remove-hosts 10.0.0.5`, `replace-master 10.0.0.1 10.0.0.9`.
    pub command: String,
    /// The next step: membership, config, genconf, prereqs, deploy, postflight or done.
    pub step: String,
    pub unfinished: bool,
    pub started_unix: u64,
    pub updated_unix: u64,
    pub forgotten: Vec<String>,
    pub missed: Vec<String>,
    pub attempts: u32,
}

impl From<&ChangeState> for ChangeView {
    fn from(s: &ChangeState) -> Self {
        let strs = |v: &[HostAddr]| v.iter().map(ToString::to_string).collect();
        ChangeView {
            command: s.change.command(),
            step: s.step.to_string(),
            unfinished: s.unfinished(),
            started_unix: s.started_unix,
            updated_unix: s.updated_unix,
            forgotten: strs(&s.forgotten),
            missed: strs(&s.missed),
            attempts: s.attempts,
        }
    }
}

/// One snapshot in `genconf/state/backups/`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SnapshotView {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub taken_unix: u64,
    /// The master it was taken on.
    pub host: String,
    /// `backup`, or the run id of the upgrade or rollback it preceded.
    pub reason: String,
    pub packages: Vec<String>,
    pub bootstrap_id: Option<String>,
    pub config_id: Option<String>,
}

impl From<&Snapshot> for SnapshotView {
    fn from(s: &Snapshot) -> Self {
        SnapshotView {
            name: s.name.clone(),
            size: s.size,
            sha256: s.sha256.clone(),
            taken_unix: s.taken_unix,
            host: s.host.to_string(),
            reason: s.reason.clone(),
            packages: s.packages.iter().map(ToString::to_string).collect(),
            bootstrap_id: s.bootstrap_id.clone(),
            config_id: s.config_id.clone(),
        }
    }
}

/// The snapshots, with the masters a restore would touch.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SnapshotsView {
    /// Oldest first.
    pub snapshots: Vec<SnapshotView>,
    /// `genconf/state/backups`.
    pub dir: String,
    /// master_list of config.yaml (empty when it is invalid).
    pub masters: Vec<String>,
    /// The last membership change (remove hosts, replace a master), finished or not.
    pub change: Option<ChangeView>,
}

/// A validated day-two operation.
#[derive(Debug, Clone)]
pub(crate) enum DayTwoJob {
    Backup(BackupOptions),
    Restore {
        file: PathBuf,
        check_deadline: Duration,
    },
    /// A membership change; `None` continues the recorded one.
    Change {
        change: Option<Change>,
        opts: ChangeOptions,
    },
}

fn secs(name: &str, v: Option<u64>, default: u64) -> Result<Duration, ApiError> {
    match v {
        Some(0) => Err(ApiError::keys(
            format!("bad `{name}`: it must be at least 1"),
            vec![(name.to_owned(), "must be at least 1 (seconds)".into())],
        )),
        Some(n) => Ok(Duration::from_secs(n)),
        None => Ok(Duration::from_secs(default)),
    }
}

fn change_options(
    app: &App,
    check: Option<u64>,
    window: Option<u64>,
    no_backup: bool,
    batch: Option<&str>,
) -> Result<ChangeOptions, ApiError> {
    let batch = match batch.map(str::trim).filter(|b| !b.is_empty()) {
        None => tarmac_installer::upgrade::BatchSize::DEFAULT,
        Some(b) => b
            .parse::<tarmac_installer::upgrade::BatchSize>()
            .map_err(|e| {
                ApiError::keys(
                    format!("bad `batch` `{b}`: {e}"),
                    vec![("batch".into(), e.to_string())],
                )
            })?,
    };
    Ok(ChangeOptions {
        rollout: UpgradeOptions {
            batch,
            check_deadline: secs("check_timeout_secs", check, 300)?,
            confirm_window: secs("confirm_window_secs", window, 120)?,
            no_backup,
            ..UpgradeOptions::default()
        },
        prereqs: app.opts.prereqs.clone(),
        ..ChangeOptions::default()
    })
}

/// The unfinished change recorded in state/change.json.
fn unfinished(i: &Installer) -> Result<Option<ChangeState>, ApiError> {
    Ok(i.recorded_change()
        .map_err(|e| ApiError::internal(chain(&e)))?
        .filter(ChangeState::unfinished))
}

/// Refuse a change while another one is unfinished; `Ok(true)` when `asked` is that one.
fn check_unfinished(i: &Installer, asked: &Change) -> Result<bool, ApiError> {
    match unfinished(i)? {
        Some(r) if r.change.same_as(asked) => Ok(true),
        Some(r) => Err(ApiError::bad_request(format!(
            "`{}` stopped at its {} step and is not finished; refusing to start `{}` before it is\nhint: finish it first (Day two → Continue the unfinished change)",
            r.change.command(),
            r.step,
            asked.command()
        ))),
        None => Ok(false),
    }
}

/// The installer over the saved configuration (400 when it is invalid).
fn installer(app: &App) -> Result<Installer, ApiError> {
    let gdir = &app.opts.genconf_dir;
    let cfg = tarmac_genconf::validate(&app.opts.dist, gdir).map_err(|r| ApiError::invalid(&r))?;
    let mut i = Installer::new(gdir, cfg, app.hub.clone() as tarmac_events::Sink);
    i.sudo_password = app.sudo_password.lock().expect("sudo poisoned").clone();
    Ok(i)
}

fn host(field: &str, s: &str) -> Result<HostAddr, ApiError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(ApiError::keys(
            format!("`{field}` is missing"),
            vec![(
                field.to_owned(),
                "give a host as config.yaml lists it".into(),
            )],
        ));
    }
    t.parse().map_err(|e| {
        ApiError::keys(
            format!("bad `{field}` `{t}`: {e}"),
            vec![(field.to_owned(), format!("{e}"))],
        )
    })
}

fn role_of(i: &Installer, h: &HostAddr) -> Option<Role> {
    i.hosts().into_iter().find(|(k, _)| k == h).map(|(_, r)| r)
}

fn names(hosts: &[HostAddr]) -> String {
    hosts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `GET /snapshots`.
pub(crate) fn list(app: &App) -> Result<SnapshotsView, ApiError> {
    let dir = app.state_dir().join(tarmac_installer::daytwo::BACKUPS_DIR);
    let (snaps, masters) = match installer(app) {
        Ok(i) => (
            i.snapshots().map_err(|e| ApiError::internal(chain(&e)))?,
            i.cfg.hosts(Role::Master),
        ),
        // The records are readable without a valid configuration.
        Err(_) => (read_records(&dir)?, Vec::new()),
    };
    let change = ChangeState::load(&app.state_dir())
        .map_err(|e| ApiError::internal(chain(&e)))?
        .as_ref()
        .map(ChangeView::from);
    Ok(SnapshotsView {
        snapshots: snaps.iter().map(SnapshotView::from).collect(),
        dir: dir.display().to_string(),
        masters: masters.iter().map(ToString::to_string).collect(),
        change,
    })
}

/// The complete snapshots in `dir` (as `Installer::snapshots` reads them), oldest first.
fn read_records(dir: &Path) -> Result<Vec<Snapshot>, ApiError> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&p) else {
            continue;
        };
        let s: Snapshot = serde_json::from_slice(&bytes).map_err(|err| {
            ApiError::internal(format!("{}: not a snapshot record: {err}", p.display()))
        })?;
        if dir.join(s.file_name()).is_file() {
            out.push(s);
        }
    }
    out.sort_by(|a, b| (a.taken_unix, &a.name).cmp(&(b.taken_unix, &b.name)));
    Ok(out)
}

pub(crate) fn start_backup(app: &Arc<App>, req: BackupRequest) -> Result<RunChange, ApiError> {
    if req.keep == Some(0) {
        return Err(ApiError::keys(
            "bad `keep`: it must be at least 1",
            vec![("keep".into(), "must be at least 1".into())],
        ));
    }
    let i = installer(app)?;
    if i.cfg.hosts(Role::Master).is_empty() {
        return Err(ApiError::bad_request("config.yaml lists no masters"));
    }
    let opts = BackupOptions {
        keep: req.keep,
        timeout: secs("timeout_secs", req.timeout_secs, 600)?,
        ..BackupOptions::default()
    };
    RunManager::start_daytwo(app, Stage::Backup, DayTwoJob::Backup(opts))
}

pub(crate) fn start_restore(app: &Arc<App>, req: RestoreRequest) -> Result<RunChange, ApiError> {
    let name = req.snapshot.trim();
    if name.is_empty() {
        return Err(ApiError::keys(
            "`snapshot` is missing",
            vec![("snapshot".into(), "name a snapshot from the list".into())],
        ));
    }
    if name.contains('/') || name.starts_with('.') {
        return Err(ApiError::bad_request(format!(
            "bad `snapshot` `{name}`: give a snapshot's name as GET /api/v1/snapshots lists it, not a path"
        )));
    }
    let check_deadline = secs("check_timeout_secs", req.check_timeout_secs, 300)?;
    let i = installer(app)?;
    let file = i.backups_dir().join(format!("{name}.tar.zst"));
    if !file.is_file() {
        return Err(ApiError::bad_request(format!(
            "no snapshot `{name}` in {}\nhint: GET /api/v1/snapshots (Day two → Snapshots) lists them",
            i.backups_dir().display()
        )));
    }
    let (file, snap) = i
        .snapshot_at(&file)
        .map_err(|e| ApiError::bad_request(chain(&e)))?;
    let masters = i.cfg.hosts(Role::Master);
    if !req.confirm {
        return Err(ApiError::bad_request(format!(
            "restore replaces the quorum store on {} ({} masters) with snapshot {}: send `confirm: true` to go ahead",
            names(&masters),
            masters.len(),
            snap.name
        )));
    }
    RunManager::start_daytwo(
        app,
        Stage::Restore,
        DayTwoJob::Restore {
            file,
            check_deadline,
        },
    )
}

pub(crate) fn start_remove(app: &Arc<App>, req: RemoveHostsRequest) -> Result<RunChange, ApiError> {
    let opts = change_options(
        app,
        req.check_timeout_secs,
        req.confirm_window_secs,
        req.no_backup,
        req.batch.as_deref(),
    )?;
    if req.hosts.is_empty() {
        return Err(ApiError::keys(
            "`hosts` is empty",
            vec![("hosts".into(), "pick the hosts to remove".into())],
        ));
    }
    let i = installer(app)?;
    let mut hosts: Vec<HostAddr> = Vec::new();
    for s in &req.hosts {
        let h = host("hosts", s)?;
        if !hosts.contains(&h) {
            hosts.push(h);
        }
    }
    let change = Change::RemoveHosts {
        hosts: hosts.clone(),
        force: req.force,
    };
    // The same change again continues it: its hosts may have left config.yaml already.
    if !check_unfinished(&i, &change)? {
        for h in &hosts {
            if role_of(&i, h).is_none() {
                return Err(ApiError::keys(
                    format!(
                        "host `{h}` is not in config.yaml (master_list, agent_list or public_agent_list)"
                    ),
                    vec![("hosts".into(), format!("`{h}` is not in config.yaml"))],
                ));
            }
        }
        let masters = i.cfg.hosts(Role::Master);
        if !masters.is_empty() && masters.iter().all(|m| hosts.contains(m)) {
            return Err(ApiError::bad_request(format!(
                "refused: removing {} would leave the cluster without masters",
                names(&masters)
            )));
        }
    }
    if !req.confirm {
        return Err(ApiError::bad_request(format!(
            "remove-hosts uninstalls {} where reachable{}: send `confirm: true` to go ahead",
            names(&hosts),
            if req.force {
                " and forgets the unreachable ones without cleaning them"
            } else {
                ""
            }
        )));
    }
    RunManager::start_daytwo(
        app,
        Stage::RemoveHosts,
        DayTwoJob::Change {
            change: Some(change),
            opts,
        },
    )
}

pub(crate) fn start_replace(
    app: &Arc<App>,
    req: ReplaceMasterRequest,
) -> Result<RunChange, ApiError> {
    let opts = change_options(
        app,
        req.check_timeout_secs,
        req.confirm_window_secs,
        req.no_backup,
        req.batch.as_deref(),
    )?;
    let old = host("old", &req.old)?;
    let new = host("new", &req.new)?;
    if old == new {
        return Err(ApiError::keys(
            "`old` and `new` are the same host",
            vec![("new".into(), "the new master must be another host".into())],
        ));
    }
    let i = installer(app)?;
    let change = Change::ReplaceMaster {
        old: old.clone(),
        new: new.clone(),
    };
    if !check_unfinished(&i, &change)? {
        match (role_of(&i, &old), role_of(&i, &new)) {
            // Run again after the membership moved: roll out.
            (None, Some(Role::Master)) => {}
            (None, _) => {
                return Err(ApiError::keys(
                    format!("host `{old}` is not in config.yaml's master_list"),
                    vec![("old".into(), format!("`{old}` is not in config.yaml"))],
                ));
            }
            (Some(r), _) if r != Role::Master => {
                return Err(ApiError::keys(
                    format!("`{old}` is {r}, not a master; remove agents with remove-hosts"),
                    vec![("old".into(), format!("`{old}` is {r}, not a master"))],
                ));
            }
            (_, Some(r)) => {
                return Err(ApiError::keys(
                    format!(
                        "`{new}` is already in config.yaml as {r}: the new master must be a host the cluster does not use yet"
                    ),
                    vec![(
                        "new".into(),
                        format!("`{new}` is already in config.yaml as {r}"),
                    )],
                ));
            }
            _ => {}
        }
    }
    if !req.confirm {
        return Err(ApiError::bad_request(format!(
            "replace-master moves {old}'s quorum membership to {new} and installs {new} as a master: send `confirm: true` to go ahead"
        )));
    }
    RunManager::start_daytwo(
        app,
        Stage::ReplaceMaster,
        DayTwoJob::Change {
            change: Some(change),
            opts,
        },
    )
}

pub(crate) fn start_resume(
    app: &Arc<App>,
    req: ResumeChangeRequest,
) -> Result<RunChange, ApiError> {
    let mut opts = change_options(
        app,
        req.check_timeout_secs,
        req.confirm_window_secs,
        req.no_backup,
        req.batch.as_deref(),
    )?;
    opts.resume = true;
    let i = installer(app)?;
    let Some(recorded) = unfinished(&i)? else {
        return Err(ApiError::bad_request(format!(
            "no unfinished membership change is recorded in {}",
            ChangeState::path(&i.state_dir()).display()
        )));
    };
    if !req.confirm {
        return Err(ApiError::bad_request(format!(
            "this continues `{}` at its {} step: send `confirm: true` to go ahead",
            recorded.change.command(),
            recorded.step
        )));
    }
    RunManager::start_daytwo(
        app,
        recorded.change.stage(),
        DayTwoJob::Change { change: None, opts },
    )
}

impl DayTwoJob {
    /// The hosts shown from the start of the run.
    pub(crate) fn roster(&self, i: &Installer) -> Vec<RosterHost> {
        let row = |h: &HostAddr| RosterHost {
            host: h.to_string(),
            role: role_of(i, h),
        };
        match self {
            DayTwoJob::Backup(_) | DayTwoJob::Restore { .. } => {
                i.cfg.hosts(Role::Master).iter().map(row).collect()
            }
            DayTwoJob::Change { change, .. } => {
                let change = change
                    .clone()
                    .or_else(|| i.recorded_change().ok().flatten().map(|s| s.change));
                match change {
                    Some(Change::RemoveHosts { hosts, .. }) => hosts.iter().map(row).collect(),
                    Some(Change::ReplaceMaster { old, new }) => vec![
                        row(&old),
                        RosterHost {
                            host: new.to_string(),
                            role: Some(Role::Master),
                        },
                    ],
                    None => Vec::new(),
                }
            }
        }
    }
}

/// How a day-two run ended.
pub(crate) struct Outcome {
    pub ok: bool,
    pub summary: Option<Summary>,
    pub error: Option<String>,
    pub report: Option<Value>,
}

fn run_json(r: &StageRun) -> Value {
    json!({
        "journal": r.journal.display().to_string(),
        "log_dir": r.log_dir.display().to_string(),
        "summary": serde_json::to_value(&r.report.summary).ok(),
        "ok": r.all_succeeded(),
    })
}

/// What deploy (install + reconcile) did, for the run's `report`.
pub(crate) fn deploy_report_json(r: &DeployReport) -> Value {
    json!({
        "install": run_json(&r.install),
        "behind": r.behind.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "upgrade": r.upgrade.as_ref().and_then(|u| serde_json::to_value(u).ok()),
        "ok": r.succeeded(),
    })
}

fn notice(app: &App, level: tarmac_events::Level, message: String) {
    tarmac_events::EventSink::emit(&*app.hub, tarmac_events::Event::Notice { level, message });
}

/// genconf from the saved config.yaml (the GUI's genconf), then the configuration validated
/// again for the rest of the change.
struct WebRegen(Arc<App>);

impl Regenerate for WebRegen {
    fn check(&self, config_yaml: &str) -> Result<(), String> {
        tarmac_config::resolve_genconf_text(
            &self.0.opts.genconf_dir,
            &self.0.opts.dist,
            config_yaml,
        )
        .map(drop)
        .map_err(|report| report.render())
    }

    fn regenerate(&self) -> Result<Regenerated, String> {
        let r = genconf_now(&self.0)?;
        let cfg = tarmac_genconf::validate(&self.0.opts.dist, &self.0.opts.genconf_dir)
            .map_err(|report| report.render())?;
        Ok(Regenerated {
            cfg,
            config_id: r.config_id,
            cluster_package_list_id: r.cluster_package_list_id,
        })
    }
}

/// The run's `report` of a membership change.
fn change_json(r: &ChangeReport) -> Value {
    let strs = |v: &[HostAddr]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    let mut steps: Vec<Value> = Vec::new();
    if let Some(rm) = &r.removed {
        for run in &rm.runs {
            steps.push(json!({"step": "remove-hosts", "run": run_json(run)}));
        }
        steps.push(json!({
            "members_removed": names(&rm.members_removed),
            "cleaned": strs(&rm.cleaned),
            "forgotten": strs(&rm.forgotten),
            "missed": strs(&r.state.missed),
        }));
    }
    if let Some(rp) = &r.replaced {
        for run in &rp.runs {
            steps.push(json!({"step": "replace-master", "run": run_json(run)}));
        }
    }
    if let Some((config_id, list)) = &r.regenerated {
        steps.push(
            json!({"step": "genconf", "config_id": config_id, "cluster_package_list_id": list}),
        );
    }
    if let Some(run) = &r.prereqs {
        steps.push(json!({"step": "install-prereqs", "run": run_json(run)}));
    }
    if let Some(d) = &r.deploy {
        steps.push(json!({"step": "deploy", "report": deploy_report_json(d)}));
    }
    if let Some(run) = &r.postflight {
        steps.push(json!({"step": "postflight", "run": run_json(run)}));
    }
    json!({
        "steps": steps,
        "change": ChangeView::from(&r.state),
        "resumed": r.resumed,
    })
}

/// Run `job` to its end (the caller reports it on the hub).
pub(crate) async fn run(app: &Arc<App>, installer: Installer, job: DayTwoJob) -> Outcome {
    let mut steps: Vec<Value> = Vec::new();
    let r: Result<(bool, Option<Summary>), String> = match &job {
        DayTwoJob::Backup(opts) => match installer.backup(opts).await {
            Ok((run, snap)) => {
                notice(
                    app,
                    tarmac_events::Level::Info,
                    format!(
                        "snapshot {} from {}: {} bytes, sha256 {}",
                        snap.name, snap.host, snap.size, snap.sha256
                    ),
                );
                steps.push(json!({"step": "backup", "run": run_json(&run), "snapshot": SnapshotView::from(&snap)}));
                Ok((run.all_succeeded(), Some(run.report.summary.clone())))
            }
            Err(e) => Err(chain(&e)),
        },
        DayTwoJob::Restore {
            file,
            check_deadline,
        } => match installer.restore(file, *check_deadline).await {
            Ok(rep) => {
                for run in &rep.runs {
                    steps.push(json!({"step": "restore", "run": run_json(run)}));
                }
                steps.push(json!({"snapshot": SnapshotView::from(&rep.snapshot)}));
                let ok = rep.runs.iter().all(StageRun::all_succeeded);
                Ok((ok, rep.runs.last().map(|r| r.report.summary.clone())))
            }
            Err(e) => Err(chain(&e)),
        },
        DayTwoJob::Change { change, opts } => {
            let regen: Arc<dyn Regenerate> = Arc::new(WebRegen(app.clone()));
            match installer.change(change.as_ref(), opts, regen).await {
                Err(e) => Err(chain(&e)),
                Ok(rep) => {
                    let json = change_json(&rep);
                    let summary = rep
                        .postflight
                        .as_ref()
                        .map(|p| p.report.summary.clone())
                        .or_else(|| {
                            rep.deploy
                                .as_ref()
                                .map(|d| d.install.report.summary.clone())
                        });
                    let outcome = if rep.state.unfinished() {
                        Err(format!(
                            "`{}` stopped at its {} step\nhint: fix the hosts, then continue it (Day two → Continue the unfinished change)",
                            rep.state.change.command(),
                            rep.state.step
                        ))
                    } else if !rep.state.missed.is_empty() {
                        Err(format!(
                            "{} could not be uninstalled and stay in config.yaml\nhint: see the host logs; fix them and remove them again (or with force)",
                            names(&rep.state.missed)
                        ))
                    } else {
                        Ok((true, summary))
                    };
                    return match outcome {
                        Ok((ok, summary)) => Outcome {
                            ok,
                            summary,
                            error: None,
                            report: Some(json),
                        },
                        Err(e) => Outcome {
                            ok: false,
                            summary: None,
                            error: Some(e),
                            report: Some(json),
                        },
                    };
                }
            }
        }
    };
    let report = Some(json!({ "steps": steps }));
    match r {
        Ok((ok, summary)) => Outcome {
            ok,
            summary,
            error: None,
            report,
        },
        Err(e) => Outcome {
            ok: false,
            summary: None,
            error: Some(e),
            report,
        },
    }
}
