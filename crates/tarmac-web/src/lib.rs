//! The Tarmac web installer: configure, preflight, deploy and postflight from a browser.
//!
//! One installer engine with the CLI: the GUI starts the very same stages
//! ([`tarmac_installer::stages::Installer`]) under the same run lock, and renders the same
//! typed events ([`tarmac_events::Event`]), which reach the browser over SSE
//! (`/api/v1/events`, resumable with `Last-Event-ID`). Safe by default: loopback only, a
//! one-time login URL that sets an `HttpOnly; SameSite=Strict` session cookie, a CSRF token
//! on every state-changing call, secrets never returned. The JSON API is documented by an
//! OpenAPI document generated from this code (`/api/v1/openapi.json`); the pages are plain
//! HTML/CSS/JS embedded in the binary.

pub mod api;
pub mod assets;
pub mod auth;
pub mod daytwo;
pub mod files;
pub mod hub;
pub mod runs;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};
use tarmac_config::{Distribution, Report};
use tarmac_ssh::Secret;
use tarmac_types::error_report::Hinted;
use tokio_util::sync::CancellationToken;

pub use auth::{Auth, AuthLimits, HostAllowlist};
pub use hub::Hub;
pub use runs::RunManager;

/// How the server is set up.
pub struct WebOptions {
    /// `genconf/` (absolute): config.yaml, ip-detect, ssh_key, serve/, state/.
    pub genconf_dir: PathBuf,
    /// The distribution whose schema validates config.yaml.
    pub dist: Distribution,
    /// Output of `tarmac build`, for genconf.
    pub build_dir: PathBuf,
    /// Trusted public key for genconf (the build manifest's signature).
    pub public_key: Option<PathBuf>,
    /// What install-prereqs installs, per package-manager family.
    pub prereqs: tarmac_installer::prereqs::Prereqs,
    /// Served over TLS (cookies get `Secure`).
    pub tls: bool,
    /// Events kept for SSE resumption.
    pub event_buffer: usize,
    /// The `Host` names requests may carry (see [`auth::HostAllowlist::new`]).
    pub allowed_hosts: HostAllowlist,
    /// How long login tokens and sessions live.
    pub auth_limits: AuthLimits,
}

/// Everything the handlers share.
pub struct App {
    pub opts: WebOptions,
    pub auth: Auth,
    pub hub: Arc<Hub>,
    pub runs: RunManager,
    /// Serialises read-modify-write of config.yaml and the files next to it.
    pub config_lock: tokio::sync::Mutex<()>,
    /// Password for `sudo -S` on hosts (memory only; never written or returned).
    pub sudo_password: Mutex<Option<Secret>>,
}

pub type AppState = Arc<App>;

impl App {
    pub fn new(opts: WebOptions) -> AppState {
        App::with_clock(opts, Arc::new(auth::SystemClock))
    }

    /// Like [`App::new`], with the clock login tokens and sessions are timed by.
    pub fn with_clock(opts: WebOptions, clock: Arc<dyn auth::Clock>) -> AppState {
        let hub = Hub::new(opts.event_buffer.max(100));
        let auth = Auth::with_clock(opts.tls, opts.auth_limits, clock);
        Arc::new(App {
            opts,
            auth,
            hub,
            runs: RunManager::default(),
            config_lock: tokio::sync::Mutex::new(()),
            sudo_password: Mutex::new(None),
        })
    }

    pub fn state_dir(&self) -> PathBuf {
        self.opts.genconf_dir.join("state")
    }

    pub fn config_path(&self) -> PathBuf {
        self.opts.genconf_dir.join("config.yaml")
    }

    /// The directory relative paths in config.yaml are resolved against (genconf/'s parent).
    pub fn base_dir(&self) -> PathBuf {
        match self.opts.genconf_dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        }
    }
}

/// An API error: status and JSON body `{"error": …}` (plus `errors`/`diagnostics` for an
/// invalid configuration, `busy` for a conflict).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Json,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: json!({ "error": message.into() }),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    pub fn conflict(message: impl Into<String>, busy: runs::Busy) -> Self {
        ApiError {
            status: StatusCode::CONFLICT,
            body: json!({ "error": message.into(), "busy": busy }),
        }
    }
    /// 400 with every problem of an invalid configuration, by key.
    pub fn invalid(report: &Report) -> Self {
        let v = api::Validation::from_report(report);
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({
                "error": report.to_string(),
                "errors": v.errors,
                "diagnostics": v.diagnostics,
            }),
        }
    }
    /// 400 with per-key messages.
    pub fn keys(message: impl Into<String>, errors: Vec<(String, String)>) -> Self {
        let map: serde_json::Map<String, Json> = errors
            .into_iter()
            .map(|(k, m)| (k, Json::String(m)))
            .collect();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({ "error": message.into(), "errors": map, "diagnostics": [] }),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body.to_string(),
        )
            .into_response()
    }
}

/// The whole application: pages, assets, `/login`, `/logout` and the API, behind the
/// `Host` allowlist.
pub fn router(app: AppState) -> Router {
    let protected = Router::new()
        .merge(assets::routes())
        .route("/logout", axum::routing::post(auth::logout))
        .nest("/api/v1", api::routes())
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::require_session,
        ));
    Router::new()
        .route("/login", axum::routing::get(auth::login))
        .merge(protected)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::check_host,
        ))
        .layer(axum::middleware::from_fn(auth::security_headers))
        .with_state(app)
}

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the TLS {what} {path}: {message}")]
    Tls {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("the web server stopped")]
    Serve(#[source] std::io::Error),
}

impl tarmac_types::error_report::Hint for WebError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            WebError::Tls { .. } => Some(
                "pass a PEM certificate chain with --tls-cert and its PEM private key with --tls-key"
                    .into(),
            ),
            WebError::Bind { .. } | WebError::Serve(_) => None,
        }
    }
}

/// The error types whose hints are data ([`tarmac_types::error_report::Hint`]) that the web
/// installer's errors can carry: this crate's, the installer's, genconf's and the
/// configuration's. What [`runs`] reports errors with, and what the `tarmac` binary extends.
pub static TYPED_HINTS: std::sync::LazyLock<Vec<tarmac_types::error_report::AsHint>> =
    std::sync::LazyLock::new(|| {
        use tarmac_types::error_report::as_hint;
        let mut v: Vec<tarmac_types::error_report::AsHint> = vec![
            as_hint::<WebError>,
            as_hint::<auth::BadAllowedHost>,
            as_hint::<files::ReadError>,
        ];
        v.extend_from_slice(tarmac_installer::TYPED_HINTS);
        v.extend_from_slice(tarmac_genconf::TYPED_HINTS);
        v.extend_from_slice(tarmac_config::TYPED_HINTS);
        v.extend_from_slice(tarmac_pkg::TYPED_HINTS);
        v
    });

/// A bound listener, ready to serve.
pub struct Listener {
    listener: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Listener {
    /// Bind `addr`; with `tls`, load the PEM certificate chain and key.
    pub fn bind(addr: SocketAddr, tls: Option<(&Path, &Path)>) -> Result<Listener, WebError> {
        let tls = match tls {
            Some((cert, key)) => Some(Arc::new(tls_config(cert, key)?)),
            None => None,
        };
        let listener =
            std::net::TcpListener::bind(addr).map_err(|source| WebError::Bind { addr, source })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| WebError::Bind { addr, source })?;
        Ok(Listener { listener, tls })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serve until `stop` is cancelled (then finish in-flight requests for up to 2 s).
    pub async fn serve(self, app: AppState, stop: CancellationToken) -> Result<(), WebError> {
        let handle = axum_server::Handle::new();
        let h2 = handle.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            h2.graceful_shutdown(Some(Duration::from_secs(2)));
        });
        let svc = router(app).into_make_service();
        match self.tls {
            Some(cfg) => {
                axum_server::from_tcp_rustls(
                    self.listener,
                    axum_server::tls_rustls::RustlsConfig::from_config(cfg),
                )
                .handle(handle)
                .serve(svc)
                .await
            }
            None => {
                axum_server::from_tcp(self.listener)
                    .handle(handle)
                    .serve(svc)
                    .await
            }
        }
        .map_err(WebError::Serve)
    }
}

fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, WebError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| WebError::Tls {
            what: "certificate",
            path: cert.to_owned(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(WebError::Tls {
            what: "certificate",
            path: cert.to_owned(),
            message: "no certificate in the file".into(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| WebError::Tls {
        what: "key",
        path: key.to_owned(),
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WebError::Tls {
            what: "certificate",
            path: cert.to_owned(),
            message: e.to_string(),
        })?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| WebError::Tls {
            what: "key",
            path: key.to_owned(),
            message: e.to_string(),
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Is `addr` a loopback address (safe to serve without `--allow-remote`)?
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// May the server listen on `addr`? Loopback always; anything else only with
/// `allow_remote`, and then only over TLS unless `insecure_http` says plain HTTP is meant.
/// Returns warnings for the operator.
pub fn listen_policy(
    addr: &SocketAddr,
    allow_remote: bool,
    tls: bool,
    insecure_http: bool,
) -> Result<Vec<String>, Hinted> {
    if is_loopback(addr) {
        return Ok(Vec::new());
    }
    if !allow_remote {
        return Err(Hinted::new(
            format!(
                "refusing to listen on {addr}: it is not a loopback address, and the web installer can install software on every host"
            ),
            format!(
                "pass --allow-remote (with --tls-cert/--tls-key), or reach 127.0.0.1:{port} through an SSH tunnel (ssh -L {port}:127.0.0.1:{port} <bootstrap machine>)",
                port = addr.port()
            ),
        ));
    }
    if !tls && !insecure_http {
        return Err(Hinted::new(
            format!(
                "refusing to serve {addr} over plain HTTP: the login URL and the session cookie would cross the network in clear text"
            ),
            "pass --tls-cert FILE --tls-key FILE (PEM), or add --insecure-http if this network is trusted",
        ));
    }
    let mut w = vec![format!(
        "listening on {addr}, reachable from other machines: anyone with the login URL can install software on every host"
    )];
    if !tls {
        w.push(
            "--insecure-http: the login URL and the session cookie cross the network in clear text"
                .into(),
        );
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_without_allow_remote() {
        let lo: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let lo6: SocketAddr = "[::1]:9000".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9000".parse().unwrap();
        assert_eq!(listen_policy(&lo, false, false, false), Ok(Vec::new()));
        assert_eq!(listen_policy(&lo6, false, false, false), Ok(Vec::new()));
        let err = listen_policy(&any, false, true, false).unwrap_err();
        assert!(
            err.message
                .starts_with("refusing to listen on 0.0.0.0:9000"),
            "{err}"
        );
        assert!(err.hint.starts_with("pass --allow-remote"), "{err:?}");
        assert_eq!(listen_policy(&any, true, true, false).unwrap().len(), 1);
        assert_eq!(
            listen_policy(&any, true, false, false).unwrap_err(),
            Hinted::new(
                "refusing to serve 0.0.0.0:9000 over plain HTTP: the login URL and the session cookie would cross the network in clear text",
                "pass --tls-cert FILE --tls-key FILE (PEM), or add --insecure-http if this network is trusted"
            )
        );
        let w = listen_policy(&any, true, false, true).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(
            w[1],
            "--insecure-http: the login URL and the session cookie cross the network in clear text"
        );
    }
}
