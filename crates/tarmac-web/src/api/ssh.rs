//! `/ssh-key`, `/known-hosts` and `/sudo-password`: the SSH settings that are files or secrets.

use super::*;

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
pub(super) async fn get_ssh_key(State(app): State<AppState>) -> ApiResult<Json<SshKeyView>> {
    let text = app.read_config()?.unwrap_or_default();
    Ok(Json(app.ssh_key_view(&text)))
}

/// Upload the SSH private key: stored 0600 as genconf/ssh_key, ssh_key_path set to it.
#[utoipa::path(put, path = "/api/v1/ssh-key", request_body = SshKeyUpload,
    responses((status = 200, body = SshKeyView), (status = 400, body = ErrorBody)))]
pub(super) async fn put_ssh_key(
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

#[derive(Deserialize, ToSchema)]
pub struct KnownHostsUpdate {
    /// known_hosts lines (`host[,host…] key-type base64-key`, as `ssh-keyscan` prints them).
    pub text: String,
}

impl App {
    pub(super) fn known_hosts_view(&self, text: &str) -> KnownHostsView {
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
pub(super) async fn get_known_hosts(
    State(app): State<AppState>,
) -> ApiResult<Json<KnownHostsView>> {
    let text = app.read_config()?.unwrap_or_default();
    Ok(Json(app.known_hosts_view(&text)))
}

/// Save host keys as genconf/ssh_known_hosts (0644) and point ssh_known_hosts at it. Every
/// line must parse; with `ssh_host_key_policy: strict` (the default) every host must be in it.
#[utoipa::path(put, path = "/api/v1/known-hosts", request_body = KnownHostsUpdate,
    responses((status = 200, body = KnownHostsView), (status = 400, body = ErrorBody)))]
pub(super) async fn put_known_hosts(
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
pub(super) async fn put_sudo_password(
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
