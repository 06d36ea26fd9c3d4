//! The JSON API under `/api/v1`. Every route needs a session; state-changing routes also
//! need the CSRF header (see [`crate::auth`]). The OpenAPI document is generated from the
//! annotations here and served at `/api/v1/openapi.json`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json_;
use tarmac_config::{Diagnostic, Input, Report, ResolvedConfig, resolve, resolve_path};
use tarmac_installer::journal::{RunRecord, last_run};
use tarmac_installer::stages::{Installer, ServeInfo};
use tarmac_installer::upgrade::{UpgradeState, render_plan};
use tarmac_types::{Role, Stage};
use utoipa::{OpenApi, ToSchema};

use crate::files::{self, MAX_READ};
use crate::hub::{RunChange, RunView, Since, now_ms, split_fleet_run_id};
use crate::runs::{
    Busy, CountOrPercent, RollbackRequest, RunManager, StartRequest, UpgradeRequest, chain,
    no_serve, parse_batch, parse_stage, select_hosts,
};
use crate::{ApiError, App, AppState};
use tarmac_config::yamledit::{self, HIDDEN};
use tarmac_events::HostState;

mod cluster;
mod config;
mod daytwo;
mod events;
mod info;
mod ip_detect;
mod journal;
mod ssh;
mod stages;

use self::cluster::*;
pub use self::config::Validation;
use self::config::*;
use self::daytwo::*;
use self::events::*;
use self::info::*;
use self::ip_detect::*;
use self::journal::*;
/// The journal view's rows of a run (what `/api/v1/runs/{run_id}` serves as `rows`).
pub use self::journal::{RunJournal, journal_rows};
use self::ssh::*;
use self::stages::*;

type ApiResult<T> = Result<T, ApiError>;

/// What `rel` (a path inside genconf/) is when a path parameter `key` may not name it.
fn reserved_file(rel: &Path, key: &str) -> Option<&'static str> {
    let first = rel.components().next()?.as_os_str().to_str().unwrap_or("");
    let name = rel.file_name()?.to_str().unwrap_or("");
    if rel == Path::new("config.yaml") {
        Some("config.yaml itself")
    } else if rel == Path::new("ssh_key") && key != "ssh_key_path" {
        Some("the SSH private key")
    } else if matches!(first, "state" | "serve") {
        Some("output of the installer (state/ and serve/)")
    } else if name.contains(".full.") {
        Some("a file genconf writes with every secret in clear")
    } else {
        None
    }
}

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/", get(|| async { axum::response::Redirect::to("/") }))
        .route("/info", get(info))
        .route("/schema", get(schema))
        .route("/config", get(get_config).put(put_config))
        .route("/config/validate", post(validate_config))
        .route("/ip-detect", get(get_ip_detect).put(put_ip_detect))
        .route("/ssh-key", get(get_ssh_key).put(put_ssh_key))
        .route("/known-hosts", get(get_known_hosts).put(put_known_hosts))
        .route("/sudo-password", put(put_sudo_password))
        .route("/state", get(get_state))
        .route("/stages/{stage}", post(start_stage))
        .route("/stages/{stage}/retry", post(retry_stage))
        .route("/upgrade", post(start_upgrade))
        .route("/upgrade/plan", post(upgrade_plan))
        .route("/rollback", post(start_rollback))
        .route("/snapshots", get(list_snapshots))
        .route("/backup", post(start_backup))
        .route("/restore", post(start_restore))
        .route("/remove-hosts", post(start_remove_hosts))
        .route("/replace-master", post(start_replace_master))
        .route("/change/resume", post(resume_change))
        .route("/run/cancel", post(cancel_run))
        .route("/runs", get(list_runs))
        .route("/history", get(history))
        .route("/runs/{run_id}", get(get_run))
        .route("/runs/{run_id}/logs/{host}", get(host_log))
        .route("/logs/archive", get(logs_archive))
        .route("/events", get(events))
        .route("/cluster", get(cluster))
        .route("/openapi.json", get(openapi))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tarmac web installer API",
        description = "Configure, preflight, deploy, postflight, upgrade, roll back and uninstall a Tarmac cluster. Every route needs the session cookie set by the login URL `tarmac web` prints; PUT/POST also need the `X-Tarmac-CSRF` header (the page's `<meta name=csrf-token>`). Secrets are write-only."
    ),
    paths(
        info,
        schema,
        get_config,
        put_config,
        validate_config,
        get_ip_detect,
        put_ip_detect,
        get_ssh_key,
        put_ssh_key,
        get_known_hosts,
        put_known_hosts,
        put_sudo_password,
        get_state,
        start_stage,
        retry_stage,
        start_upgrade,
        upgrade_plan,
        start_rollback,
        list_snapshots,
        start_backup,
        start_restore,
        start_remove_hosts,
        start_replace_master,
        resume_change,
        cancel_run,
        list_runs,
        history,
        get_run,
        host_log,
        logs_archive,
        events,
        cluster,
        openapi
    ),
    components(schemas(
        Info,
        ParamView,
        ConfigView,
        ConfigUpdate,
        Validation,
        DiagnosticView,
        IpDetectView,
        IpDetectUpdate,
        SshKeyView,
        SshKeyUpload,
        KnownHostsView,
        KnownHostsUpdate,
        SudoPassword,
        StateView,
        StageResult,
        ServeView,
        StartRequest,
        UpgradeRequest,
        RollbackRequest,
        crate::daytwo::BackupRequest,
        crate::daytwo::RestoreRequest,
        crate::daytwo::RemoveHostsRequest,
        crate::daytwo::ReplaceMasterRequest,
        crate::daytwo::ResumeChangeRequest,
        crate::daytwo::ChangeView,
        crate::daytwo::SnapshotsView,
        crate::daytwo::SnapshotView,
        PlanRequest,
        PlanView,
        PlanWave,
        PlanHost,
        PlanChange,
        UpgradeView,
        UpgradeHost,
        crate::hub::RosterHost,
        RunChange,
        RunView,
        crate::hub::HostRow,
        crate::hub::NoticeRow,
        Busy,
        RunListItem,
        ClusterView,
        ClusterHost,
        Link,
        ErrorBody
    ))
)]
pub struct ApiDoc;

/// What [`App::file_view`] found.
#[derive(Default)]
struct FileView {
    path: Option<String>,
    present: bool,
    managed: bool,
    /// Read (bounded) wherever the file is; returned only when `managed`.
    text: Option<String>,
    size: Option<u64>,
    sha256: Option<String>,
    problem: Option<String>,
}

/// An error: `error` always; `errors` (key → message) and `diagnostics` for an invalid
/// configuration; `busy` for a conflict.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub errors: Option<BTreeMap<String, String>>,
    pub diagnostics: Option<Vec<DiagnosticView>>,
    pub busy: Option<Busy>,
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", responses((status = 200, description = "OpenAPI 3.1 document")))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
