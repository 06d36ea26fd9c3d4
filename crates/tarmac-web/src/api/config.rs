//! `/config` and `/config/validate`: reading, writing and validating genconf/config.yaml.

use super::*;

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
    pub(super) fn is_secret(&self, key: &str) -> bool {
        self.opts.dist.schema().is_secret(key)
    }

    pub(super) fn read_config(&self) -> ApiResult<Option<String>> {
        match files::read_text(&self.config_path(), MAX_READ, false) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(ApiError::internal(e.chain())),
        }
    }

    pub(super) fn validate_text(&self, text: &str) -> Result<ResolvedConfig, Report> {
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
    pub(super) fn candidate(&self, upd: &ConfigUpdate, current: &str) -> ApiResult<String> {
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
    pub(super) fn check_path_keys(&self, new: &str, old: &str) -> ApiResult<()> {
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
    pub(super) fn genconf_name(&self) -> String {
        self.opts
            .genconf_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "genconf".into())
    }

    pub(super) fn candidate_text(&self, upd: &ConfigUpdate, current: &str) -> ApiResult<String> {
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
    pub(super) fn path_param(&self, text: &str, name: &str) -> Option<PathBuf> {
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
    pub(super) fn genconf_rel(&self, file: &str) -> String {
        let name = self.genconf_name();
        let rel = format!("{name}/{file}");
        if resolve_path(&self.base_dir(), &rel) == self.opts.genconf_dir.join(file) {
            rel
        } else {
            self.opts.genconf_dir.join(file).display().to_string()
        }
    }

    pub(super) fn config_view(&self) -> ApiResult<ConfigView> {
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

    pub(super) async fn write_config(&self, text: &str) -> ApiResult<()> {
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
    pub(super) async fn set_config_keys(
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
pub(super) async fn get_config(State(app): State<AppState>) -> ApiResult<Json<ConfigView>> {
    let _g = app.config_lock.lock().await;
    app.config_view().map(Json)
}

/// Validate and save config.yaml (atomically). Nothing is written when it is invalid.
#[utoipa::path(put, path = "/api/v1/config", request_body = ConfigUpdate,
    responses((status = 200, body = ConfigView), (status = 400, description = "invalid: `errors` by key", body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn put_config(
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
pub(super) async fn validate_config(
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
