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

/// An error: `error` always; `errors` (key → message) and `diagnostics` for an invalid
/// configuration; `busy` for a conflict.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub errors: Option<BTreeMap<String, String>>,
    pub diagnostics: Option<Vec<DiagnosticView>>,
    pub busy: Option<Busy>,
}

// ------------------------------------------------------------------------------------------
// info and schema

#[derive(Serialize, ToSchema)]
pub struct Info {
    pub version: String,
    pub genconf_dir: String,
    pub distribution: Option<String>,
    pub build_dir: String,
    pub signed: bool,
    pub tls: bool,
}

/// Server facts: version, directories.
#[utoipa::path(get, path = "/api/v1/info", responses((status = 200, body = Info), (status = 401, body = ErrorBody)))]
async fn info(State(app): State<AppState>) -> Json<Info> {
    Json(Info {
        version: env!("CARGO_PKG_VERSION").into(),
        genconf_dir: app.opts.genconf_dir.display().to_string(),
        distribution: app.opts.dist.dir().map(|d| d.display().to_string()),
        build_dir: app.opts.build_dir.display().to_string(),
        signed: app.opts.public_key.is_some(),
        tls: app.opts.tls,
    })
}

/// One settable parameter of the installer or the distribution.
#[derive(Serialize, ToSchema)]
pub struct ParamView {
    pub name: String,
    /// string, int, port, bool, enum, ip, host, url, path, duration, bytes, ip_list, host_list, list, dict.
    #[serde(rename = "type")]
    pub ty: String,
    pub description: String,
    #[schema(value_type = Option<Object>)]
    pub default: Option<Json_>,
    /// The default is calculated from other values.
    pub default_expr: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub example: Option<Json_>,
    /// Must be set (no default).
    pub required: bool,
    /// Needed only when this condition holds.
    pub required_when: Option<String>,
    pub optional: bool,
    /// Write-only: the API never returns its value.
    pub secret: bool,
    /// installer or distribution.
    pub origin: String,
    /// enum: the allowed values.
    pub values: Option<Vec<String>>,
    pub multiline: bool,
}

/// Every parameter config.yaml may set, with types, defaults and descriptions.
#[utoipa::path(get, path = "/api/v1/schema", responses((status = 200, body = [ParamView])))]
async fn schema(State(app): State<AppState>) -> Json<Vec<ParamView>> {
    use tarmac_config::types::Type;
    let dist = &app.opts.dist;
    let required = dist.required_params();
    let params = dist
        .schema()
        .params
        .values()
        .map(|p| ParamView {
            name: p.name.clone(),
            ty: p.ty.name(),
            description: p.description.clone(),
            default: p.default.clone(),
            default_expr: p.default_expr.clone(),
            example: p.example.clone(),
            required: required.contains(&p.name) && p.required_when.is_none(),
            required_when: p.required_when.clone(),
            optional: p.optional,
            secret: p.secret,
            origin: match p.origin {
                tarmac_config::Origin::Installer => "installer".into(),
                tarmac_config::Origin::Distribution => "distribution".into(),
            },
            values: match &p.ty {
                Type::Enum(v) => Some(v.clone()),
                _ => None,
            },
            multiline: matches!(
                p.ty,
                Type::String {
                    multiline: true,
                    ..
                }
            ),
        })
        .collect();
    Json(params)
}

// ------------------------------------------------------------------------------------------
// configuration

#[derive(Serialize, ToSchema)]
pub struct DiagnosticView {
    pub key: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub message: String,
    pub hint: Option<String>,
}

impl From<&Diagnostic> for DiagnosticView {
    fn from(d: &Diagnostic) -> Self {
        DiagnosticView {
            key: d.key.clone(),
            line: d.line,
            column: d.column,
            message: d.message.clone(),
            hint: d.hint.clone(),
        }
    }
}

/// The result of validating a configuration.
#[derive(Serialize, ToSchema)]
pub struct Validation {
    pub valid: bool,
    /// key → message (several messages for one key joined by `; `).
    pub errors: BTreeMap<String, String>,
    pub diagnostics: Vec<DiagnosticView>,
    pub warnings: Vec<DiagnosticView>,
    /// sha256 of the resolved configuration, when valid.
    pub config_id: Option<String>,
    /// Hosts by role, when valid.
    pub hosts: Option<BTreeMap<String, usize>>,
}

impl Validation {
    pub fn from_report(r: &Report) -> Self {
        Validation {
            valid: false,
            errors: r.to_json_map(),
            diagnostics: r.errors.iter().map(DiagnosticView::from).collect(),
            warnings: r.warnings.iter().map(DiagnosticView::from).collect(),
            config_id: None,
            hosts: None,
        }
    }

    /// Replace every secret value a message may quote with `**HIDDEN**`.
    pub fn scrub(mut self, secrets: &[String]) -> Self {
        if secrets.is_empty() {
            return self;
        }
        for m in self.errors.values_mut() {
            *m = yamledit::scrub(m, secrets);
        }
        for d in self.diagnostics.iter_mut().chain(self.warnings.iter_mut()) {
            d.message = yamledit::scrub(&d.message, secrets);
            d.hint = d.hint.as_deref().map(|h| yamledit::scrub(h, secrets));
        }
        self
    }

    fn from_result(r: &Result<ResolvedConfig, Report>) -> Self {
        match r {
            Ok(cfg) => Validation {
                valid: true,
                errors: BTreeMap::new(),
                diagnostics: Vec::new(),
                warnings: cfg.warnings().iter().map(DiagnosticView::from).collect(),
                config_id: Some(cfg.config_id().hex()),
                hosts: Some(
                    Role::ALL
                        .iter()
                        .map(|r| (r.as_str().to_owned(), cfg.hosts(*r).len()))
                        .collect(),
                ),
            },
            Err(rep) => Validation::from_report(rep),
        }
    }
}

/// config.yaml as the API shows it: secrets masked.
#[derive(Serialize, ToSchema)]
pub struct ConfigView {
    /// config.yaml with every secret value replaced by `**HIDDEN**` (empty when there is none).
    pub yaml: String,
    pub exists: bool,
    /// The keys config.yaml sets, secrets masked; null when it is not valid YAML.
    #[schema(value_type = Option<Object>)]
    pub values: Option<BTreeMap<String, Json_>>,
    /// Secret parameters that have a value (which is never returned).
    pub secrets_set: Vec<String>,
    pub validation: Validation,
    pub ssh_key: SshKeyView,
    pub known_hosts: KnownHostsView,
    pub ip_detect: IpDetectView,
    pub sudo_password_set: bool,
}

/// A change to config.yaml: either the whole text (`yaml`, the raw editor; `**HIDDEN**` keeps
/// a secret's stored value) or some keys (`set`, the form; null removes a key, `**HIDDEN**`
/// keeps a secret).
#[derive(Deserialize, ToSchema, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigUpdate {
    pub yaml: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub set: Option<serde_json::Map<String, Json_>>,
}

impl App {
    fn is_secret(&self, key: &str) -> bool {
        self.opts.dist.schema().is_secret(key)
    }

    fn read_config(&self) -> ApiResult<Option<String>> {
        match files::read_text(&self.config_path(), MAX_READ, false) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(ApiError::internal(e.chain())),
        }
    }

    fn validate_text(&self, text: &str) -> Result<ResolvedConfig, Report> {
        resolve(
            &self.opts.dist,
            &Input {
                text,
                file_label: self.config_path().display().to_string(),
                base_dir: self.base_dir(),
            },
        )
    }

    /// The text an update would produce: at most [`MAX_READ`] bytes, and path parameters
    /// it changes name files inside genconf/ (see [`App::check_path_keys`]).
    fn candidate(&self, upd: &ConfigUpdate, current: &str) -> ApiResult<String> {
        let text = self.candidate_text(upd, current)?;
        if text.len() as u64 > MAX_READ {
            return Err(ApiError::keys(
                "config.yaml is too large",
                vec![(
                    "config.yaml".into(),
                    format!(
                        "config.yaml would be {} bytes; the web GUI keeps it under {MAX_READ} bytes",
                        text.len()
                    ),
                )],
            ));
        }
        self.check_path_keys(&text, current)?;
        Ok(text)
    }

    /// Path parameters set from the web GUI must name files inside genconf/ that are not
    /// the installer's own secrets or output. Only keys whose resolved path changes are
    /// checked, so a config.yaml edited on the controller to point elsewhere still saves.
    fn check_path_keys(&self, new: &str, old: &str) -> ApiResult<()> {
        use tarmac_config::types::Type;
        let gname = self.genconf_name();
        let mut errors = Vec::new();
        for p in self.opts.dist.schema().params.values() {
            if !matches!(p.ty, Type::Path { .. }) {
                continue;
            }
            let name = p.name.as_str();
            let Some(to) = self.path_param(new, name) else {
                continue;
            };
            let from = self.path_param(old, name);
            if from.as_deref().map(files::normalize) == Some(files::normalize(&to)) {
                continue;
            }
            let shown = yamledit::values(new)
                .and_then(|v| v.into_iter().find(|(k, _)| k == name))
                .and_then(|(_, v)| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| to.display().to_string());
            let problem = match files::inside(&self.opts.genconf_dir, &to) {
                None => Some(format!(
                    "`{shown}` must be inside {gname}/ when set from the web GUI; edit config.yaml on the controller to point elsewhere"
                )),
                Some(rel) => reserved_file(&rel, name).map(|what| {
                    format!("`{shown}` is {what}: point {name} at its own file inside {gname}/")
                }),
            };
            if let Some(m) = problem {
                errors.push((name.to_owned(), m));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::keys(
                format!("path parameters set from the web GUI must name files inside {gname}/"),
                errors,
            ))
        }
    }

    /// The name genconf/ has (`genconf`).
    fn genconf_name(&self) -> String {
        self.opts
            .genconf_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "genconf".into())
    }

    fn candidate_text(&self, upd: &ConfigUpdate, current: &str) -> ApiResult<String> {
        let secret = |k: &str| self.is_secret(k);
        match (&upd.yaml, &upd.set) {
            (Some(y), None) => yamledit::unmask_secrets(y, current, &secret).map_err(|keys| {
                ApiError::keys(
                    "secret values are hidden; type them again",
                    keys.into_iter()
                        .map(|k| {
                            (
                                k,
                                "This secret has no stored value: type it instead of **HIDDEN**"
                                    .to_owned(),
                            )
                        })
                        .collect(),
                )
            }),
            (None, Some(set)) => {
                let hidden = yamledit::masked_keys(current, &secret).unwrap_or_default();
                let changes: Vec<(String, Option<Json_>)> = set
                    .iter()
                    .filter(|(k, v)| {
                        !((secret(k) || hidden.contains(k)) && v.as_str() == Some(HIDDEN))
                    })
                    .map(|(k, v)| (k.clone(), if v.is_null() { None } else { Some(v.clone()) }))
                    .collect();
                yamledit::set_keys(current, &changes).map_err(|e| {
                    ApiError::keys(
                        e.to_string(),
                        vec![(
                            "config.yaml".into(),
                            format!("{e}; fix it in the YAML editor first"),
                        )],
                    )
                })
            }
            _ => Err(ApiError::bad_request(
                "send exactly one of `yaml` (the whole file) or `set` (some keys)",
            )),
        }
    }

    /// A path parameter as the installer resolves it: the user's value or the schema default.
    fn path_param(&self, text: &str, name: &str) -> Option<PathBuf> {
        let user = yamledit::values(text)
            .and_then(|v| v.into_iter().find(|(k, _)| k == name).map(|(_, v)| v));
        let v = user.or_else(|| {
            self.opts
                .dist
                .schema()
                .params
                .get(name)
                .and_then(|p| p.default.clone())
        })?;
        Some(resolve_path(&self.base_dir(), v.as_str()?))
    }

    /// `genconf_dir/<file>` written relative to the base dir, as config.yaml names it.
    fn genconf_rel(&self, file: &str) -> String {
        let name = self.genconf_name();
        let rel = format!("{name}/{file}");
        if resolve_path(&self.base_dir(), &rel) == self.opts.genconf_dir.join(file) {
            rel
        } else {
            self.opts.genconf_dir.join(file).display().to_string()
        }
    }

    fn config_view(&self) -> ApiResult<ConfigView> {
        let text = self.read_config()?;
        let exists = text.is_some();
        let text = text.unwrap_or_default();
        let secret = |k: &str| self.is_secret(k);
        // Masked from the parsed tree: aliases of secrets are hidden too.
        let values: Option<BTreeMap<String, Json_>> =
            yamledit::masked_values(&text, &secret).map(|vs| vs.into_iter().collect());
        let secrets_set = yamledit::values(&text)
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, v)| secret(k) && !v.is_null())
            .map(|(k, _)| k)
            .collect();
        let validation = if exists {
            Validation::from_result(&self.validate_text(&text))
                .scrub(&yamledit::secret_strings(&text, &secret))
        } else {
            let mut r = Report::new(&self.config_path().display().to_string(), "");
            r.errors.push(Diagnostic::new(
                "config.yaml",
                None,
                "There is no config.yaml yet: fill in the form and save.",
            ));
            Validation::from_report(&r)
        };
        Ok(ConfigView {
            yaml: yamledit::mask_secrets(&text, &secret),
            exists,
            values,
            secrets_set,
            validation,
            ssh_key: self.ssh_key_view(&text),
            known_hosts: self.known_hosts_view(&text),
            ip_detect: self.ip_detect_view(&text),
            sudo_password_set: self
                .sudo_password
                .lock()
                .map(|g| g.is_some())
                .unwrap_or(false),
        })
    }

    async fn write_config(&self, text: &str) -> ApiResult<()> {
        let path = self.config_path();
        let body = text.as_bytes().to_vec();
        tokio::task::spawn_blocking(move || {
            tarmac_fsx::write_atomic_in_private_dir(&path, &body, 0o600).map_err(|e| (path, e))
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|(p, e)| ApiError::internal(format!("cannot write {}: {e}", p.display())))
    }

    /// Set some keys without validating the rest (used when a file next to config.yaml is
    /// uploaded). Returns a note when config.yaml could not be updated.
    async fn set_config_keys(
        &self,
        changes: &[(String, Option<Json_>)],
    ) -> ApiResult<Option<String>> {
        let text = self.read_config()?.unwrap_or_default();
        match yamledit::set_keys(&text, changes) {
            Ok(new) if new == text => Ok(None),
            Ok(new) => self.write_config(&new).await.map(|()| None),
            Err(e) => Ok(Some(format!(
                "{e}: set {} yourself",
                changes
                    .iter()
                    .map(|c| c.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

/// config.yaml (secrets masked), its validation and the files next to it.
#[utoipa::path(get, path = "/api/v1/config", responses((status = 200, body = ConfigView), (status = 401, body = ErrorBody)))]
async fn get_config(State(app): State<AppState>) -> ApiResult<Json<ConfigView>> {
    let _g = app.config_lock.lock().await;
    app.config_view().map(Json)
}

/// Validate and save config.yaml (atomically). Nothing is written when it is invalid.
#[utoipa::path(put, path = "/api/v1/config", request_body = ConfigUpdate,
    responses((status = 200, body = ConfigView), (status = 400, description = "invalid: `errors` by key", body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn put_config(
    State(app): State<AppState>,
    Json(upd): Json<ConfigUpdate>,
) -> ApiResult<Json<ConfigView>> {
    let _g = app.config_lock.lock().await;
    let current = app.read_config()?.unwrap_or_default();
    let text = app.candidate(&upd, &current)?;
    app.validate_text(&text).map_err(|r| {
        let secrets = yamledit::secret_strings(&text, &|k: &str| app.is_secret(k));
        let v = Validation::from_report(&r).scrub(&secrets);
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: serde_json::json!({
                "error": yamledit::scrub(&r.to_string(), &secrets),
                "errors": v.errors,
                "diagnostics": v.diagnostics,
            }),
        }
    })?;
    app.write_config(&text).await?;
    app.config_view().map(Json)
}

/// Validate a change without saving it (the form and editor call this as the operator types).
#[utoipa::path(post, path = "/api/v1/config/validate", request_body = ConfigUpdate,
    responses((status = 200, body = Validation), (status = 400, body = ErrorBody)))]
async fn validate_config(
    State(app): State<AppState>,
    Json(upd): Json<ConfigUpdate>,
) -> ApiResult<Json<Validation>> {
    let current = {
        let _g = app.config_lock.lock().await;
        app.read_config()?.unwrap_or_default()
    };
    let text = match app.candidate(&upd, &current) {
        Ok(t) => t,
        Err(e) if e.status == StatusCode::BAD_REQUEST && e.body.get("errors").is_some() => {
            let errors: BTreeMap<String, String> =
                serde_json::from_value(e.body["errors"].clone()).unwrap_or_default();
            return Ok(Json(Validation {
                valid: false,
                diagnostics: errors
                    .iter()
                    .map(|(k, m)| DiagnosticView {
                        key: k.clone(),
                        line: None,
                        column: None,
                        message: m.clone(),
                        hint: None,
                    })
                    .collect(),
                errors,
                warnings: Vec::new(),
                config_id: None,
                hosts: None,
            }));
        }
        Err(e) => return Err(e),
    };
    let app2 = app.clone();
    let v = tokio::task::spawn_blocking(move || {
        let secrets = yamledit::secret_strings(&text, &|k: &str| app2.is_secret(k));
        Validation::from_result(&app2.validate_text(&text)).scrub(&secrets)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(v))
}

/// The ip-detect script. Its text is returned only when `ip_detect_filename` names
/// genconf/ip-detect (the file this API writes); a file elsewhere is shown by size and
/// sha256 only.
#[derive(Serialize, ToSchema)]
pub struct IpDetectView {
    pub path: Option<String>,
    pub present: bool,
    /// The script (not a secret), when it is genconf/ip-detect.
    pub script: Option<String>,
    /// `ip_detect_filename` names genconf/ip-detect.
    pub managed: bool,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    /// Why the script is not shown or cannot be used.
    pub problem: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct IpDetectUpdate {
    pub script: String,
}

impl App {
    /// What the API may show of the file path parameter `key` names: its text only when
    /// it is `genconf/<managed>` (not through a symbolic link); else size and sha256.
    fn file_view(&self, text: &str, key: &str, managed: &str) -> FileView {
        let Some(path) = self.path_param(text, key) else {
            return FileView::default();
        };
        let is_managed =
            files::normalize(&path) == files::normalize(&self.opts.genconf_dir.join(managed));
        let mut v = FileView {
            path: Some(path.display().to_string()),
            managed: is_managed,
            ..FileView::default()
        };
        match files::read_bounded(&path, MAX_READ, is_managed) {
            Ok(bytes) => {
                use sha2::Digest as _;
                v.present = true;
                v.size = Some(bytes.len() as u64);
                v.sha256 = Some(hex::encode(sha2::Sha256::digest(&bytes)));
                match String::from_utf8(bytes) {
                    Ok(t) => v.text = Some(t),
                    Err(_) => v.problem = Some(format!("{} is not UTF-8 text", path.display())),
                }
                if !is_managed {
                    v.problem = Some(format!(
                        "{key} points outside {g}/{managed}: the web GUI shows only its size and sha256 (save from here to use {g}/{managed})",
                        g = self.genconf_name()
                    ));
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                v.present = true;
                v.problem = Some(e.chain());
            }
        }
        v
    }

    fn ip_detect_view(&self, text: &str) -> IpDetectView {
        let f = self.file_view(text, "ip_detect_filename", "ip-detect");
        IpDetectView {
            path: f.path,
            present: f.present,
            script: f.text.filter(|_| f.managed),
            managed: f.managed,
            size: f.size,
            sha256: f.sha256,
            problem: f.problem,
        }
    }

    fn ssh_key_view(&self, text: &str) -> SshKeyView {
        let path = self.path_param(text, "ssh_key_path");
        let read = |p: &PathBuf| files::read_text(p, MAX_READ, false);
        let (present, fingerprint, problem) = match path.as_ref().map(read) {
            Some(Ok(k)) => match russh::keys::decode_secret_key(&k, None) {
                Ok(key) => (
                    true,
                    Some(
                        key.public_key()
                            .fingerprint(russh::keys::HashAlg::Sha256)
                            .to_string(),
                    ),
                    None,
                ),
                Err(e) => (true, None, Some(format!("cannot read the key: {e}"))),
            },
            Some(Err(e)) if e.is_not_found() => (false, None, None),
            Some(Err(e)) => (true, None, Some(e.chain())),
            None => (false, None, None),
        };
        SshKeyView {
            path: path.map(|p| p.display().to_string()),
            present,
            fingerprint,
            problem,
            note: None,
        }
    }
}

/// The ip-detect script hosts run to find their cluster address.
#[utoipa::path(get, path = "/api/v1/ip-detect", responses((status = 200, body = IpDetectView)))]
async fn get_ip_detect(State(app): State<AppState>) -> ApiResult<Json<IpDetectView>> {
    let text = app.read_config()?.unwrap_or_default();
    Ok(Json(app.ip_detect_view(&text)))
}

/// Save the ip-detect script to genconf/ip-detect (0755) and point ip_detect_filename at it.
#[utoipa::path(put, path = "/api/v1/ip-detect", request_body = IpDetectUpdate,
    responses((status = 200, body = IpDetectView), (status = 400, body = ErrorBody)))]
async fn put_ip_detect(
    State(app): State<AppState>,
    Json(upd): Json<IpDetectUpdate>,
) -> ApiResult<Json<IpDetectView>> {
    if upd.script.trim().is_empty() {
        return Err(ApiError::keys(
            "the script is empty",
            vec![(
                "ip_detect_filename".into(),
                "The ip-detect script is empty".into(),
            )],
        ));
    }
    let mut script = upd.script.replace("\r\n", "\n");
    if !script.ends_with('\n') {
        script.push('\n');
    }
    let _g = app.config_lock.lock().await;
    let path = app.opts.genconf_dir.join("ip-detect");
    tarmac_fsx::write_atomic_in_private_dir(&path, script.as_bytes(), 0o755)
        .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", path.display())))?;
    let text = app.read_config()?.unwrap_or_default();
    if app.path_param(&text, "ip_detect_filename").as_deref() != Some(path.as_path()) {
        app.set_config_keys(&[(
            "ip_detect_filename".into(),
            Some(Json_::String(app.genconf_rel("ip-detect"))),
        )])
        .await?;
    }
    let text = app.read_config()?.unwrap_or_default();
    Ok(Json(app.ip_detect_view(&text)))
}

/// The SSH key: where it is and its fingerprint. The key itself is never returned.
#[derive(Serialize, ToSchema)]
pub struct SshKeyView {
    pub path: Option<String>,
    pub present: bool,
    /// SHA256 fingerprint of the public key.
    pub fingerprint: Option<String>,
    pub problem: Option<String>,
    pub note: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct SshKeyUpload {
    /// The private key (OpenSSH or PEM, no passphrase). Write-only.
    pub private_key: String,
}

/// SSH key status (never the key).
#[utoipa::path(get, path = "/api/v1/ssh-key", responses((status = 200, body = SshKeyView)))]
async fn get_ssh_key(State(app): State<AppState>) -> ApiResult<Json<SshKeyView>> {
    let text = app.read_config()?.unwrap_or_default();
    Ok(Json(app.ssh_key_view(&text)))
}

/// Upload the SSH private key: stored 0600 as genconf/ssh_key, ssh_key_path set to it.
#[utoipa::path(put, path = "/api/v1/ssh-key", request_body = SshKeyUpload,
    responses((status = 200, body = SshKeyView), (status = 400, body = ErrorBody)))]
async fn put_ssh_key(
    State(app): State<AppState>,
    Json(up): Json<SshKeyUpload>,
) -> ApiResult<Json<SshKeyView>> {
    let mut key = up.private_key.replace("\r\n", "\n");
    if !key.ends_with('\n') {
        key.push('\n');
    }
    if let Err(e) = russh::keys::decode_secret_key(&key, None) {
        let msg = match e {
            russh::keys::Error::KeyIsEncrypted => "The key has a passphrase: upload a key without one (or decrypt a copy with `ssh-keygen -p`)".to_owned(),
            other => format!("Not a usable private key: {other}"),
        };
        return Err(ApiError::keys(
            "the SSH key is not usable",
            vec![("ssh_key_path".into(), msg)],
        ));
    }
    let _g = app.config_lock.lock().await;
    let path = app.opts.genconf_dir.join("ssh_key");
    tarmac_fsx::write_atomic_in_private_dir(&path, key.as_bytes(), 0o600)
        .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", path.display())))?;
    let text = app.read_config()?.unwrap_or_default();
    let mut note = None;
    if app.path_param(&text, "ssh_key_path").as_deref() != Some(path.as_path()) {
        note = app
            .set_config_keys(&[(
                "ssh_key_path".into(),
                Some(Json_::String(app.genconf_rel("ssh_key"))),
            )])
            .await?;
    }
    let text = app.read_config()?.unwrap_or_default();
    let mut v = app.ssh_key_view(&text);
    v.note = note;
    Ok(Json(v))
}

/// The known_hosts file host keys are verified against (public keys: not secret). Its
/// text is returned only when `ssh_known_hosts` names genconf/ssh_known_hosts (the file
/// this API writes); a file elsewhere is shown by size, sha256 and entry count only.
#[derive(Serialize, ToSchema)]
pub struct KnownHostsView {
    pub path: Option<String>,
    pub present: bool,
    /// Host keys in the file.
    pub entries: usize,
    /// The file, when it is genconf/ssh_known_hosts.
    pub text: Option<String>,
    /// `ssh_known_hosts` names genconf/ssh_known_hosts.
    pub managed: bool,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    /// Why the text is not shown or the file cannot be used.
    pub problem: Option<String>,
}

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

#[derive(Deserialize, ToSchema)]
pub struct KnownHostsUpdate {
    /// known_hosts lines (`host[,host…] key-type base64-key`, as `ssh-keyscan` prints them).
    pub text: String,
}

impl App {
    fn known_hosts_view(&self, text: &str) -> KnownHostsView {
        let f = self.file_view(text, "ssh_known_hosts", "ssh_known_hosts");
        let entries = match (&f.path, &f.text) {
            (Some(p), Some(b)) => {
                let mut k = tarmac_ssh::known_hosts::KnownHosts::new();
                k.add_text(Path::new(p), b);
                k.entries().len()
            }
            _ => 0,
        };
        KnownHostsView {
            path: f.path,
            present: f.present,
            entries,
            text: f.text.filter(|_| f.managed),
            managed: f.managed,
            size: f.size,
            sha256: f.sha256,
            problem: f.problem,
        }
    }
}

/// The known_hosts file.
#[utoipa::path(get, path = "/api/v1/known-hosts", responses((status = 200, body = KnownHostsView)))]
async fn get_known_hosts(State(app): State<AppState>) -> ApiResult<Json<KnownHostsView>> {
    let text = app.read_config()?.unwrap_or_default();
    Ok(Json(app.known_hosts_view(&text)))
}

/// Save host keys as genconf/ssh_known_hosts (0644) and point ssh_known_hosts at it. Every
/// line must parse; with `ssh_host_key_policy: strict` (the default) every host must be in it.
#[utoipa::path(put, path = "/api/v1/known-hosts", request_body = KnownHostsUpdate,
    responses((status = 200, body = KnownHostsView), (status = 400, body = ErrorBody)))]
async fn put_known_hosts(
    State(app): State<AppState>,
    Json(upd): Json<KnownHostsUpdate>,
) -> ApiResult<Json<KnownHostsView>> {
    let mut body = upd.text.replace("\r\n", "\n");
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let path = app.opts.genconf_dir.join("ssh_known_hosts");
    let mut k = tarmac_ssh::known_hosts::KnownHosts::new();
    k.add_text(&path, &body);
    if let Some(bad) = k.skipped().first() {
        return Err(ApiError::keys(
            "not a known_hosts file",
            vec![(
                "ssh_known_hosts".into(),
                format!("{}: {}", bad.source, bad.reason),
            )],
        ));
    }
    if k.entries().is_empty() {
        return Err(ApiError::keys(
            "no host keys",
            vec![(
                "ssh_known_hosts".into(),
                "No host keys found: paste lines as `ssh-keyscan HOST` prints them".into(),
            )],
        ));
    }
    let _g = app.config_lock.lock().await;
    tarmac_fsx::write_atomic_in_private_dir(&path, body.as_bytes(), 0o644)
        .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", path.display())))?;
    let text = app.read_config()?.unwrap_or_default();
    if app.path_param(&text, "ssh_known_hosts").as_deref() != Some(path.as_path()) {
        app.set_config_keys(&[(
            "ssh_known_hosts".into(),
            Some(Json_::String(app.genconf_rel("ssh_known_hosts"))),
        )])
        .await?;
    }
    let text = app.read_config()?.unwrap_or_default();
    Ok(Json(app.known_hosts_view(&text)))
}

#[derive(Deserialize, ToSchema)]
pub struct SudoPassword {
    /// The sudo password for a non-root ssh_user (null forgets it). Kept in memory only.
    pub password: Option<String>,
}

/// Set the sudo password used with a non-root ssh_user (memory only, write-only).
#[utoipa::path(put, path = "/api/v1/sudo-password", request_body = SudoPassword,
    responses((status = 200, description = "`{\"set\": bool}`")))]
async fn put_sudo_password(
    State(app): State<AppState>,
    Json(p): Json<SudoPassword>,
) -> Json<Json_> {
    let set = p.password.as_ref().is_some_and(|s| !s.is_empty());
    *app.sudo_password.lock().expect("sudo poisoned") = p
        .password
        .filter(|s| !s.is_empty())
        .map(tarmac_ssh::Secret::new);
    Json(serde_json::json!({ "set": set }))
}

// ------------------------------------------------------------------------------------------
// runs

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
fn last_rolling_run(state_dir: &Path, operation: &str) -> Option<(String, u64)> {
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

fn upgrade_view(app: &App) -> Option<UpgradeView> {
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

fn stage_results(state_dir: &Path) -> BTreeMap<String, StageResult> {
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
async fn get_state(State(app): State<AppState>) -> ApiResult<Json<StateView>> {
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
async fn start_stage(
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
async fn retry_stage(
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
async fn start_upgrade(
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
async fn start_rollback(
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
struct PlanSink(std::sync::Mutex<BTreeMap<String, String>>);

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
async fn upgrade_plan(
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
async fn cancel_run(State(app): State<AppState>) -> ApiResult<StatusCode> {
    if app.runs.cancel() {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::new(StatusCode::CONFLICT, "no run in progress"))
    }
}

#[derive(Serialize, ToSchema)]
pub struct RunListItem {
    pub run_id: String,
    pub stage: String,
    pub started_unix: u64,
    pub finished_unix: Option<u64>,
    #[schema(value_type = Option<Object>)]
    pub summary: Option<tarmac_events::Summary>,
    pub hosts: usize,
}

/// The most the API reads of one run journal (a journal of 10,000 hosts is a few MB).
const MAX_JOURNAL: u64 = 64 * 1024 * 1024;

fn safe_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.starts_with('.')
}

fn read_journal(state_dir: &Path, run_id: &str) -> ApiResult<RunRecord> {
    if !safe_id(run_id) {
        return Err(ApiError::not_found("no such run"));
    }
    let path = state_dir.join("runs").join(format!("{run_id}.json"));
    let body = files::read_bounded(&path, MAX_JOURNAL, true).map_err(|e| {
        if e.is_not_found() {
            ApiError::not_found(format!("no run `{run_id}`"))
        } else {
            ApiError::internal(e.chain())
        }
    })?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))
}

/// Every recorded run, newest first.
#[utoipa::path(get, path = "/api/v1/runs", responses((status = 200, body = [RunListItem])))]
async fn list_runs(State(app): State<AppState>) -> ApiResult<Json<Vec<RunListItem>>> {
    let dir = app.state_dir().join("runs");
    let list = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let Ok(body) = std::fs::read(&p) else {
                continue;
            };
            let Ok(rec) = serde_json::from_slice::<RunRecord>(&body) else {
                continue;
            };
            out.push(RunListItem {
                run_id: rec.run_id,
                stage: rec.stage.as_str().to_owned(),
                started_unix: rec.started_unix,
                finished_unix: rec.finished_unix,
                summary: rec.summary,
                hosts: rec.hosts.len(),
            });
        }
        out.sort_by(|a, b| {
            b.started_unix
                .cmp(&a.started_unix)
                .then(b.run_id.cmp(&a.run_id))
        });
        out
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(list))
}

/// The cluster ledger (`genconf/state/ledger.jsonl`), verified: every genconf, deploy,
/// upgrade, rollback and uninstall, oldest first. A damaged or truncated ledger is a 409 whose
/// error says which line and how to recover.
#[utoipa::path(get, path = "/api/v1/history",
    responses((status = 200, description = "the ledger entries, oldest first"), (status = 409, body = ErrorBody)))]
async fn history(State(app): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let state = app.state_dir();
    let entries =
        tokio::task::spawn_blocking(move || tarmac_installer::ledger::Ledger::new(&state).read())
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, chain(&e)))?;
    Ok(Json(serde_json::json!({ "entries": entries })))
}

/// One run's journal: per host, role, last step, outcome, failing step, last output lines.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}", params(("run_id" = String, Path)),
    responses((status = 200, description = "the run journal (genconf/state/runs/<run_id>.json)"), (status = 404, body = ErrorBody)))]
async fn get_run(
    State(app): State<AppState>,
    UrlPath(run_id): UrlPath<String>,
) -> ApiResult<Json<RunRecord>> {
    read_journal(&app.state_dir(), &run_id).map(Json)
}

/// A host's full log of one run (text/plain).
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/logs/{host}", params(("run_id" = String, Path), ("host" = String, Path)),
    responses((status = 200, content_type = "text/plain", body = String), (status = 404, body = ErrorBody)))]
async fn host_log(
    State(app): State<AppState>,
    UrlPath((run_id, host)): UrlPath<(String, String)>,
) -> ApiResult<Response> {
    let path = log_path(&app.state_dir(), &run_id, &host)?;
    let body = tokio::task::spawn_blocking(move || match files::read_tail(&path, MAX_READ) {
        Ok((tail, size)) if size > tail.len() as u64 => {
            let mut b = format!(
                "(log truncated: the last {} of {size} bytes; `tarmac logs --archive FILE` or the log archive has all of it)\n",
                tail.len()
            )
            .into_bytes();
            b.extend_from_slice(&tail);
            Ok(b)
        }
        Ok((tail, _)) => Ok(tail),
        Err(e) if e.is_not_found() => Ok(b"(no output was logged for this host)\n".to_vec()),
        Err(e) => Err(ApiError::internal(e.chain())),
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

/// Where a host's log of a run is. An upgrade or rollback logs every fleet of the run into
/// one file per host under the whole run's id: it is found from that id (the live view's)
/// or from any of its fleets' journal ids.
fn log_path(state_dir: &Path, run_id: &str, host: &str) -> ApiResult<PathBuf> {
    let logs = state_dir.join("logs");
    let not_part = || ApiError::not_found(format!("host `{host}` is not part of run `{run_id}`"));
    let rolling = |whole: &str| -> ApiResult<PathBuf> {
        let addr: tarmac_types::HostAddr = host.parse().map_err(|_| not_part())?;
        let dir = tarmac_ssh::LogDir::new(logs.join(whole));
        [Stage::Upgrade, Stage::Rollback]
            .iter()
            .map(|st| dir.path(st.as_str(), &addr))
            .find(|p| p.is_file())
            .ok_or_else(not_part)
    };
    match read_journal(state_dir, run_id) {
        Ok(rec) => {
            let in_run = rec.hosts.keys().find(|h| h.to_string() == host);
            if let Some(addr) = in_run {
                let p = tarmac_ssh::LogDir::new(logs.join(run_id)).path(rec.stage.as_str(), addr);
                if p.exists() || split_fleet_run_id(run_id).is_none() {
                    return Ok(p);
                }
            }
            match split_fleet_run_id(run_id) {
                Some((whole, _)) if matches!(rec.stage, Stage::Upgrade | Stage::Rollback) => {
                    rolling(whole)
                }
                _ => Err(not_part()),
            }
        }
        // The whole run of an upgrade or rollback has no journal of its own, only logs.
        Err(e) => {
            if safe_id(run_id) && logs.join(run_id).is_dir() {
                rolling(run_id)
            } else {
                Err(e)
            }
        }
    }
}

/// Every run journal and host log as one .tar.zst, for support.
#[utoipa::path(get, path = "/api/v1/logs/archive",
    responses((status = 200, content_type = "application/zstd", description = "tar.zst of genconf/state/runs and genconf/state/logs")))]
async fn logs_archive(State(app): State<AppState>) -> ApiResult<Response> {
    let state = app.state_dir();
    let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let mut f = tempfile::tempfile()?;
        tarmac_installer::support::write_log_archive(&state, &f)?;
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(0))?;
        Ok(f)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(format!("cannot build the log archive: {e}")))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let name = format!("tarmac-logs-{}.tar.zst", now_ms() / 1000);
    Ok((
        [
            (header::CONTENT_TYPE, "application/zstd".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// How often an idle event stream checks that its session is still valid.
const SESSION_RECHECK: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
struct EventsQuery {
    after: Option<u64>,
}

/// Live events (SSE). Each message (`event: batch`) carries a JSON array of
/// `{"id", "kind": "event"|"run", "data"}` entries: `event` data is a `tarmac_events::Event`
/// (the same stream the terminal renders), `run` data a [`RunChange`]. An entry that changed
/// host rows also carries `"rows": {"all", "rows", "phase", "fleets", "run_id"}` (a
/// [`crate::hub::RowsDelta`]): the server's rows, which the browser shows as they are
/// (`all`: they replace the whole list). The message id is the
/// last entry's id; reconnecting with `Last-Event-ID` (or `?after=`) resumes after it. When
/// the entries asked for are no longer buffered, an `event: reset` tells the client to reload
/// `/api/v1/state`. At most ~10 messages per second per client.
#[utoipa::path(get, path = "/api/v1/events", params(("after" = Option<u64>, Query, description = "resume after this id (like Last-Event-ID)")),
    responses((status = 200, content_type = "text/event-stream", description = "SSE stream")))]
async fn events(
    State(app): State<AppState>,
    axum::Extension(session): axum::Extension<crate::auth::Session>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let hub = app.hub.clone();
    let auth_app = app.clone();
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .or(q.after)
        .unwrap_or_else(|| hub.seq());
    let rx = hub.subscribe();
    let min_gap = Duration::from_millis(100);
    let stream = futures::stream::unfold(
        (hub, rx, after, None::<Instant>, (auth_app, session.id)),
        move |(hub, mut rx, mut after, last, who)| async move {
            loop {
                // The stream ends with its session (logout, idle, lifetime).
                if !who.0.auth.is_live(&who.1) {
                    return None;
                }
                if let Some(t) = last {
                    let since = t.elapsed();
                    if since < min_gap {
                        tokio::time::sleep(min_gap - since).await;
                    }
                }
                rx.borrow_and_update();
                match hub.since(after) {
                    Since::Gap { seq } => {
                        after = seq;
                        let ev = SseEvent::default()
                            .event("reset")
                            .id(seq.to_string())
                            .data(format!("{{\"seq\":{seq}}}"));
                        return Some((Ok(ev), (hub, rx, after, Some(Instant::now()), who)));
                    }
                    Since::Entries(v) if !v.is_empty() => {
                        after = v.last().map_or(after, |e| e.id);
                        let mut data = String::with_capacity(v.len() * 128);
                        data.push('[');
                        for (i, e) in v.iter().enumerate() {
                            if i > 0 {
                                data.push(',');
                            }
                            data.push_str(&e.to_json());
                        }
                        data.push(']');
                        let ev = SseEvent::default()
                            .event("batch")
                            .id(after.to_string())
                            .data(data);
                        return Some((Ok(ev), (hub, rx, after, Some(Instant::now()), who)));
                    }
                    Since::Entries(_) => {
                        tokio::select! {
                            changed = rx.changed() => if changed.is_err() {
                                return None;
                            },
                            () = tokio::time::sleep(SESSION_RECHECK) => {}
                        }
                    }
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[derive(Serialize, ToSchema)]
pub struct ClusterHost {
    pub host: String,
    pub role: String,
    /// Outcome of the host's last deploy / postflight (ok, unchanged, failed, …).
    pub deploy: Option<String>,
    pub postflight: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Link {
    pub name: String,
    pub url: String,
}

/// What is installed where.
#[derive(Serialize, ToSchema)]
pub struct ClusterView {
    pub cluster_name: String,
    pub hosts: Vec<ClusterHost>,
    pub package_list_id: Option<String>,
    pub packages: Vec<String>,
    pub links: Vec<Link>,
}

/// The installed cluster: hosts by role with their last deploy/postflight outcome, the
/// package list, and links to the cluster's services (prometheus on the first master).
#[utoipa::path(get, path = "/api/v1/cluster", responses((status = 200, body = ClusterView), (status = 400, body = ErrorBody)))]
async fn cluster(State(app): State<AppState>) -> ApiResult<Json<ClusterView>> {
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || {
        let cfg = tarmac_genconf::validate(&app2.opts.dist, &app2.opts.genconf_dir)
            .map_err(|r| ApiError::invalid(&r))?;
        let state = app2.state_dir();
        let outcome = |st: Stage| -> BTreeMap<String, String> {
            last_run(&state, st)
                .map(|r| {
                    r.hosts
                        .iter()
                        .map(|(h, rec)| {
                            (
                                h.to_string(),
                                rec.outcome
                                    .as_ref()
                                    .map_or(HostState::Unfinished, HostState::from)
                                    .to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let (dep, post) = (outcome(Stage::Deploy), outcome(Stage::Postflight));
        let hosts = cfg
            .all_hosts()
            .into_iter()
            .map(|(h, r)| {
                let k = h.to_string();
                ClusterHost {
                    role: r.as_str().to_owned(),
                    deploy: dep.get(&k).cloned(),
                    postflight: post.get(&k).cloned(),
                    host: k,
                }
            })
            .collect();
        let serve = ServeInfo::read(&app2.opts.genconf_dir).ok();
        let mut links = Vec::new();
        if let (Some(m), Some(port)) = (
            cfg.hosts(Role::Master).first(),
            cfg.get("prometheus_port").and_then(Json_::as_i64),
        ) {
            links.push(Link {
                name: "Prometheus (first master)".into(),
                url: format!("http://{}:{port}/", m.url_host()),
            });
            links.push(Link {
                name: "Prometheus targets".into(),
                url: format!("http://{}:{port}/targets", m.url_host()),
            });
        }
        Ok(Json(ClusterView {
            cluster_name: cfg.cluster_name().to_owned(),
            hosts,
            package_list_id: serve.as_ref().map(|s| s.list_id.clone()),
            packages: serve
                .map(|s| s.packages.iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
            links,
        }))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", responses((status = 200, description = "OpenAPI 3.1 document")))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
