//! `/snapshots`, `/backup`, `/restore`, `/remove-hosts`, `/replace-master` and
//! `/change/resume`: day two.

use super::*;
use crate::daytwo::{
    self as d2, BackupRequest, RemoveHostsRequest, ReplaceMasterRequest, RestoreRequest,
    ResumeChangeRequest, SnapshotsView,
};

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
}

/// The snapshots of the quorum store in `genconf/state/backups/` (their `.json` records
/// whose `.tar.zst` is there), oldest first, and the masters a restore would touch.
#[utoipa::path(get, path = "/api/v1/snapshots", responses((status = 200, body = SnapshotsView)))]
pub(super) async fn list_snapshots(State(app): State<AppState>) -> ApiResult<Json<SnapshotsView>> {
    let app2 = app.clone();
    Ok(Json(blocking(move || d2::list(&app2)).await?))
}

/// Take a snapshot of the quorum store from the first master that can (like `tarmac
/// backup`); `keep` prunes older snapshots afterwards.
#[utoipa::path(post, path = "/api/v1/backup", request_body = BackupRequest,
    responses((status = 202, body = RunChange), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn start_backup(
    State(app): State<AppState>,
    body: Option<Json<BackupRequest>>,
) -> ApiResult<(StatusCode, Json<RunChange>)> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let app2 = app.clone();
    let started = blocking(move || d2::start_backup(&app2, req)).await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

/// Restore a snapshot (by name) on every master (like `tarmac restore`). Needs `confirm: true`.
#[utoipa::path(post, path = "/api/v1/restore", request_body = RestoreRequest,
    responses((status = 202, body = RunChange),
        (status = 400, description = "not confirmed, no such snapshot, or a damaged one", body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(super) async fn start_restore(
    State(app): State<AppState>,
    body: Option<Json<RestoreRequest>>,
) -> ApiResult<(StatusCode, Json<RunChange>)> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let app2 = app.clone();
    let started = blocking(move || d2::start_restore(&app2, req)).await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

/// Remove hosts (like `tarmac remove-hosts`): uninstall the reachable ones (with `force`,
/// forget the unreachable ones without cleaning them), take removed masters out of the
/// quorum, drop them from config.yaml, genconf, deploy (rolls the others) and postflight.
/// Needs `confirm: true`.
#[utoipa::path(post, path = "/api/v1/remove-hosts", request_body = RemoveHostsRequest,
    responses((status = 202, body = RunChange),
        (status = 400, description = "not confirmed, a host not in config.yaml, or every master", body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(super) async fn start_remove_hosts(
    State(app): State<AppState>,
    body: Option<Json<RemoveHostsRequest>>,
) -> ApiResult<(StatusCode, Json<RunChange>)> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let app2 = app.clone();
    let started = blocking(move || d2::start_remove(&app2, req)).await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

/// Replace a master (like `tarmac replace-master`): move OLD's quorum membership to NEW,
/// swap them in config.yaml, genconf, install-prereqs on NEW, deploy and postflight.
/// Needs `confirm: true`.
#[utoipa::path(post, path = "/api/v1/replace-master", request_body = ReplaceMasterRequest,
    responses((status = 202, body = RunChange),
        (status = 400, description = "not confirmed, OLD not a master, or NEW already in config.yaml", body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(super) async fn start_replace_master(
    State(app): State<AppState>,
    body: Option<Json<ReplaceMasterRequest>>,
) -> ApiResult<(StatusCode, Json<RunChange>)> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let app2 = app.clone();
    let started = blocking(move || d2::start_replace(&app2, req)).await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

/// Continue the membership change recorded in `state/change.json` (like `tarmac
/// remove-hosts --resume` / `replace-master --resume`) from the step it stopped at.
/// `GET /api/v1/snapshots` shows it as `change`. Needs `confirm: true`.
#[utoipa::path(post, path = "/api/v1/change/resume", request_body = ResumeChangeRequest,
    responses((status = 202, body = RunChange),
        (status = 400, description = "not confirmed, or no unfinished change", body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(super) async fn resume_change(
    State(app): State<AppState>,
    body: Option<Json<ResumeChangeRequest>>,
) -> ApiResult<(StatusCode, Json<RunChange>)> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let app2 = app.clone();
    let started = blocking(move || d2::start_resume(&app2, req)).await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}
