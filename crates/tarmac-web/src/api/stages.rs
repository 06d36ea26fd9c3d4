//! `/state`, `/stages/…`, `/upgrade`, `/upgrade/plan`, `/rollback` and `/run/cancel`: starting and stopping runs.

use super::*;

/// The last run of a stage, from its journal.
#[derive(Serialize, ToSchema)]
pub struct StageResult {
    pub run_id: String,
    pub started_unix: u64,
    pub finished_unix: Option<u64>,
    #[schema(value_type = Option<Object>)]
    pub summary: Option<tarmac_events::Summary>,
    /// Every host succeeded.
    pub ok: bool,
    /// Hosts that did not succeed.
    pub unsuccessful: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ServeView {
    pub package_list_id: String,
    pub packages: Vec<String>,
    /// Whether serve/ was generated from the configuration saved now (its config package
    /// carries the config id); null when config.yaml is invalid or no package carries an id.
    pub matches_config: Option<bool>,
}

/// Everything a page needs to draw itself; `seq` is the last event id it includes.
#[derive(Serialize, ToSchema)]
pub struct StateView {
    pub seq: u64,
    pub now_unix_ms: u64,
    pub run: RunView,
    /// Who runs now (this server, or another tarmac process holding the lock).
    pub busy: Option<Busy>,
    /// The last run of every stage (preflight, install-prereqs, deploy, postflight, uninstall, status).
    pub stages: BTreeMap<String, StageResult>,
    /// What genconf last wrote (null before genconf).
    pub serve: Option<ServeView>,
    /// The last upgrade or rollback (`genconf/state/upgrade.json`), null before the first.
    pub upgrade: Option<UpgradeView>,
    /// Upgrade and rollback `batch` when none is given (the CLI's `--batch` default too).
    pub default_batch: &'static str,
}

/// One host of the last upgrade or rollback.
#[derive(Serialize, ToSchema)]
pub struct UpgradeHost {
    pub host: String,
    /// From config.yaml (null when the host is not in it any more).
    pub role: Option<String>,
    /// ok, unchanged, failed, reverted, unconfirmed, untouched, unreachable, timed-out, cancelled.
    #[schema(value_type = String)]
    pub status: HostState,
}

/// The last upgrade or rollback, as `genconf/state/upgrade.json` records it.
#[derive(Serialize, ToSchema)]
pub struct UpgradeView {
    /// upgrade or rollback.
    pub operation: String,
    /// The target package list id (upgrade) or generation (`previous` for a plain rollback).
    pub target: String,
    pub finished: bool,
    /// Why it stopped early.
    pub stopped: Option<String>,
    /// Its run id (the log directory under genconf/state/logs/), when its journals are found.
    pub run_id: Option<String>,
    pub started_unix: Option<u64>,
    pub hosts: Vec<UpgradeHost>,
}

/// The newest run of `operation` (upgrade / rollback) from its fleets' journals: its whole
/// run id and when it started.
pub(super) fn last_rolling_run(state_dir: &Path, operation: &str) -> Option<(String, u64)> {
    let prefix = format!("{operation}-");
    let mut best: Option<(String, u64)> = None;
    for e in std::fs::read_dir(state_dir.join("runs")).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".json") else {
            continue;
        };
        let Some((whole, _)) = split_fleet_run_id(id) else {
            continue;
        };
        if !whole.starts_with(&prefix) {
            continue;
        }
        let started = std::fs::read(e.path())
            .ok()
            .and_then(|b| serde_json::from_slice::<RunRecord>(&b).ok())
            .map_or(0, |r| r.started_unix);
        let newer = match &best {
            None => true,
            Some((w, s)) => (started, whole) > (*s, w.as_str()),
        };
        if newer {
            best = Some((whole.to_owned(), started));
        }
    }
    best
}

pub(super) fn upgrade_view(app: &App) -> Option<UpgradeView> {
    let state_dir = app.state_dir();
    let st = UpgradeState::load(&state_dir)?;
    let roles: BTreeMap<String, String> =
        tarmac_genconf::validate(&app.opts.dist, &app.opts.genconf_dir)
            .map(|cfg| {
                cfg.all_hosts()
                    .into_iter()
                    .map(|(h, r)| (h.to_string(), r.as_str().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
    let last = last_rolling_run(&state_dir, &st.operation);
    Some(UpgradeView {
        hosts: st
            .hosts
            .iter()
            .map(|(h, s)| UpgradeHost {
                host: h.clone(),
                role: roles.get(h).cloned(),
                status: *s,
            })
            .collect(),
        operation: st.operation,
        target: st.target,
        finished: st.finished,
        stopped: st.stopped,
        run_id: last.as_ref().map(|(id, _)| id.clone()),
        started_unix: last.map(|(_, s)| s),
    })
}

pub(super) fn stage_results(state_dir: &Path) -> BTreeMap<String, StageResult> {
    let mut out = BTreeMap::new();
    for st in [
        Stage::Preflight,
        Stage::InstallPrereqs,
        Stage::Deploy,
        Stage::Postflight,
        Stage::Uninstall,
        Stage::Status,
    ] {
        if let Ok(rec) = last_run(state_dir, st) {
            let unsuccessful: Vec<String> = rec
                .unsuccessful_hosts()
                .iter()
                .map(ToString::to_string)
                .collect();
            out.insert(
                st.as_str().to_owned(),
                StageResult {
                    run_id: rec.run_id.clone(),
                    started_unix: rec.started_unix,
                    finished_unix: rec.finished_unix,
                    ok: rec.finished_unix.is_some()
                        && unsuccessful.is_empty()
                        && !rec.hosts.is_empty(),
                    summary: rec.summary.clone(),
                    unsuccessful,
                },
            );
        }
    }
    out
}

/// The current run (per host: role, step, status, elapsed, last output line), who is busy,
/// and the last result of every stage.
#[utoipa::path(get, path = "/api/v1/state", responses((status = 200, body = StateView)))]
pub(super) async fn get_state(State(app): State<AppState>) -> ApiResult<Json<StateView>> {
    let (seq, run) = app.hub.snapshot();
    let busy = app.runs.busy(&app.state_dir())?;
    let app2 = app.clone();
    let (stages, serve, upgrade) = tokio::task::spawn_blocking(move || {
        let serve = ServeInfo::read(&app2.opts.genconf_dir).ok().map(|s| {
            let packages: Vec<String> = s.packages.iter().map(ToString::to_string).collect();
            let current = tarmac_genconf::validate(&app2.opts.dist, &app2.opts.genconf_dir).ok();
            let matches_config = current.and_then(|cfg| {
                let id = cfg.config_id().hex();
                packages
                    .iter()
                    .any(|p| p.contains("setup_"))
                    .then(|| packages.iter().any(|p| p.contains(&id)))
            });
            ServeView {
                package_list_id: s.list_id,
                packages,
                matches_config,
            }
        });
        (stage_results(&app2.state_dir()), serve, upgrade_view(&app2))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(StateView {
        default_batch: tarmac_installer::upgrade::DEFAULT_BATCH,
        seq,
        now_unix_ms: now_ms(),
        run,
        busy,
        stages,
        serve,
        upgrade,
    }))
}

/// Start a stage: genconf, preflight, install-prereqs, deploy, postflight, uninstall (needs
/// `confirm: true`) or status. The configuration is validated first.
#[utoipa::path(post, path = "/api/v1/stages/{stage}", request_body = StartRequest,
    params(("stage" = String, Path, description = "genconf | preflight | install-prereqs | deploy | postflight | uninstall | status")),
    responses((status = 202, body = RunChange), (status = 400, description = "invalid configuration (`errors` by key) or request", body = ErrorBody),
        (status = 409, description = "another run holds the lock", body = ErrorBody)))]
pub(super) async fn start_stage(
    State(app): State<AppState>,
    UrlPath(stage): UrlPath<String>,
    body: Option<Json<StartRequest>>,
) -> ApiResult<(StatusCode, Json<RunChange>)> {
    let stage =
        parse_stage(&stage).ok_or_else(|| ApiError::not_found(format!("no stage `{stage}`")))?;
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let app2 = app.clone();
    let started = tokio::task::spawn_blocking(move || RunManager::start(&app2, stage, req))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

/// Re-run a stage on the hosts that did not succeed in its last run.
#[utoipa::path(post, path = "/api/v1/stages/{stage}/retry",
    params(("stage" = String, Path, description = "preflight | install-prereqs | deploy | postflight | uninstall | status")),
    responses((status = 202, body = RunChange), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn retry_stage(
    State(app): State<AppState>,
    UrlPath(stage): UrlPath<String>,
) -> ApiResult<(StatusCode, Json<RunChange>)> {
    let stage =
        parse_stage(&stage).ok_or_else(|| ApiError::not_found(format!("no stage `{stage}`")))?;
    let req = StartRequest {
        retry_failed: true,
        confirm: true,
        ..Default::default()
    };
    let app2 = app.clone();
    let started = tokio::task::spawn_blocking(move || RunManager::start(&app2, stage, req))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

/// Start a rolling upgrade to the package list genconf wrote last: masters one at a time,
/// each gated on the cluster checks, then agents in batches with a failure budget; every
/// switched host reverts by itself unless confirmed within `confirm_window`. The run's events
/// (one fleet per wave and step, `stage: upgrade`) stream on `/events` like any stage's.
#[utoipa::path(post, path = "/api/v1/upgrade", request_body = UpgradeRequest,
    responses((status = 202, body = RunChange),
        (status = 400, description = "a bad option (`errors` names the field), an invalid configuration or no genconf/serve yet", body = ErrorBody),
        (status = 409, description = "another run holds the lock", body = ErrorBody)))]
pub(super) async fn start_upgrade(
    State(app): State<AppState>,
    body: Option<Json<UpgradeRequest>>,
) -> ApiResult<(StatusCode, Json<RunChange>)> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let app2 = app.clone();
    let started = tokio::task::spawn_blocking(move || RunManager::start_upgrade(&app2, req))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

/// Start a rolling rollback of the hosts to their previous generation (or `to`), in the
/// upgrade's order. Needs `confirm: true`.
#[utoipa::path(post, path = "/api/v1/rollback", request_body = RollbackRequest,
    responses((status = 202, body = RunChange),
        (status = 400, description = "not confirmed, a bad option (`errors` names the field) or an invalid configuration", body = ErrorBody),
        (status = 409, description = "another run holds the lock", body = ErrorBody)))]
pub(super) async fn start_rollback(
    State(app): State<AppState>,
    body: Option<Json<RollbackRequest>>,
) -> ApiResult<(StatusCode, Json<RunChange>)> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let app2 = app.clone();
    let started = tokio::task::spawn_blocking(move || RunManager::start_rollback(&app2, req))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

/// Which plan to compute.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PlanRequest {
    /// Agents per batch: a number (`5`) or a percentage (`"10%"`, the default).
    #[schema(value_type = Option<String>, example = "10%")]
    pub batch: Option<CountOrPercent>,
    /// Only these hosts (addresses as in config.yaml); default every host.
    pub hosts: Option<Vec<String>>,
}

/// One step of the rollout.
#[derive(Serialize, ToSchema)]
pub struct PlanWave {
    /// A master alone, gated on the cluster checks; else a batch of agents.
    pub masters: bool,
    pub hosts: Vec<String>,
}

/// What happens to one package on a host (`from` null: added; `to` null: removed).
#[derive(Serialize, ToSchema)]
pub struct PlanChange {
    pub name: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// What the upgrade does on one host.
#[derive(Serialize, ToSchema)]
pub struct PlanHost {
    pub host: String,
    pub role: String,
    pub unchanged: bool,
    pub changes: Vec<PlanChange>,
    /// Units restarted or started by the switch.
    pub restarts: Vec<String>,
    /// Unit → why it restarts although its package is unchanged (`etc/etcd/etcd.env changed`).
    pub restart_reasons: BTreeMap<String, String>,
    /// Packages whose units stop for good.
    pub stops: Vec<String>,
    /// Why the host's active packages could not be read (the plan then assumes nothing is
    /// installed there).
    pub error: Option<String>,
}

/// The upgrade plan: the order and, per host, what changes.
#[derive(Serialize, ToSchema)]
pub struct PlanView {
    /// The cluster package list the upgrade goes to.
    pub package_list_id: String,
    pub waves: Vec<PlanWave>,
    pub hosts: Vec<PlanHost>,
    /// The same plan as `tarmac upgrade --plan` prints it.
    pub text: String,
}

/// Hosts the plan could not inspect, with why.
#[derive(Default)]
pub(super) struct PlanSink(std::sync::Mutex<BTreeMap<String, String>>);

impl tarmac_events::EventSink for PlanSink {
    fn emit(&self, event: tarmac_events::Event) {
        if let tarmac_events::Event::HostFinished { host, outcome, .. } = event
            && !outcome.is_success()
        {
            let why = match &outcome {
                tarmac_events::Outcome::Failed { message, .. }
                | tarmac_events::Outcome::Unreachable { message } => message.trim().to_owned(),
                other => other.label().to_owned(),
            };
            if let Ok(mut g) = self.0.lock() {
                g.insert(host.to_string(), why);
            }
        }
    }
}

/// The upgrade plan (like `tarmac upgrade --plan`): reads every host's active packages over
/// SSH and compares them with the package list genconf wrote last. Changes nothing on the
/// hosts (with `ssh_host_key_policy: accept-new` it may record host keys); its events do not
/// go to the live view. A POST, so it needs the CSRF header like every call that connects
/// to hosts.
#[utoipa::path(post, path = "/api/v1/upgrade/plan", request_body = PlanRequest,
    responses((status = 200, body = PlanView),
        (status = 400, description = "a bad option (`errors` names the field), an invalid configuration or no genconf/serve yet", body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub(super) async fn upgrade_plan(
    State(app): State<AppState>,
    body: Option<Json<PlanRequest>>,
) -> ApiResult<Json<PlanView>> {
    let q = body.map(|Json(b)| b).unwrap_or_default();
    let batch = parse_batch(q.batch.as_ref())?;
    let hosts: Option<Vec<String>> = q.hosts.map(|h| {
        h.into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let sink = std::sync::Arc::new(PlanSink::default());
    let app2 = app.clone();
    let sink2 = sink.clone();
    let installer = tokio::task::spawn_blocking(move || -> ApiResult<Installer> {
        let gdir = &app2.opts.genconf_dir;
        let cfg =
            tarmac_genconf::validate(&app2.opts.dist, gdir).map_err(|r| ApiError::invalid(&r))?;
        ServeInfo::read(gdir).map_err(|e| no_serve(&e))?;
        let mut installer = Installer::new(gdir, cfg, sink2 as tarmac_events::Sink);
        installer.sudo_password = app2.sudo_password.lock().expect("sudo poisoned").clone();
        installer.only = select_hosts(&installer, hosts.as_deref())?;
        Ok(installer)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let (list_id, waves, plans) = installer
        .upgrade_plan(batch)
        .await
        .map_err(|e| ApiError::bad_request(chain(&e)))?;
    let text = render_plan(&list_id, &waves, &plans);
    let errors = std::mem::take(&mut *sink.0.lock().expect("plan sink poisoned"));
    Ok(Json(PlanView {
        package_list_id: list_id,
        waves: waves
            .iter()
            .map(|w| PlanWave {
                masters: w.masters,
                hosts: w.hosts.iter().map(|(h, _)| h.to_string()).collect(),
            })
            .collect(),
        hosts: plans
            .iter()
            .map(|p| PlanHost {
                host: p.host.to_string(),
                role: p.role.as_str().to_owned(),
                unchanged: p.unchanged(),
                changes: p
                    .changes
                    .iter()
                    .map(|c| PlanChange {
                        name: c.name.clone(),
                        from: c.from.as_ref().map(ToString::to_string),
                        to: c.to.as_ref().map(ToString::to_string),
                    })
                    .collect(),
                restarts: p.restarts.clone(),
                restart_reasons: p.restart_reasons.clone(),
                stops: p.stops.iter().map(ToString::to_string).collect(),
                error: errors.get(&p.host.to_string()).cloned(),
            })
            .collect(),
        text,
    }))
}

/// Stop the run in flight (running commands are ended; hosts not started are skipped).
#[utoipa::path(post, path = "/api/v1/run/cancel", responses((status = 202), (status = 409, body = ErrorBody)))]
pub(super) async fn cancel_run(State(app): State<AppState>) -> ApiResult<StatusCode> {
    if app.runs.cancel() {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::new(StatusCode::CONFLICT, "no run in progress"))
    }
}
