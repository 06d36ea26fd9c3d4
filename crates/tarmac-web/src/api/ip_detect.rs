//! `/ip-detect`: the ip-detect script.

use super::*;

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
    pub(super) fn file_view(&self, text: &str, key: &str, managed: &str) -> FileView {
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

    pub(super) fn ip_detect_view(&self, text: &str) -> IpDetectView {
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

    pub(super) fn ssh_key_view(&self, text: &str) -> SshKeyView {
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
pub(super) async fn get_ip_detect(State(app): State<AppState>) -> ApiResult<Json<IpDetectView>> {
    let text = app.read_config()?.unwrap_or_default();
    Ok(Json(app.ip_detect_view(&text)))
}

/// Save the ip-detect script to genconf/ip-detect (0755) and point ip_detect_filename at it.
#[utoipa::path(put, path = "/api/v1/ip-detect", request_body = IpDetectUpdate,
    responses((status = 200, body = IpDetectView), (status = 400, body = ErrorBody)))]
pub(super) async fn put_ip_detect(
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
