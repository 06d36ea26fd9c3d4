//! The artifact server: serves `genconf/serve/` over HTTP or HTTPS (range requests, many
//! concurrent clients) so hosts pull the bootstrap and packages themselves.
//!
//! For an `https://` bootstrap_url it presents the certificate of
//! [`tarmac_config::ResolvedConfig::bootstrap_tls`] (genconf's per-cluster one in
//! `genconf/tls/`, or the operator's `bootstrap_tls_cert`) with rustls.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio_util::sync::CancellationToken;
use tower_http::services::ServeDir;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("nothing to serve: `{dir}` does not exist")]
    NoServeDir { dir: PathBuf },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use the TLS {what} {path}: {message}")]
    Tls {
        what: &'static str,
        path: PathBuf,
        message: String,
        hint: String,
    },
}

/// A rustls server configuration for the artifact server.
pub type TlsConfig = Arc<rustls::ServerConfig>;

/// Load a PEM certificate chain and its PEM private key (what genconf wrote to
/// `genconf/tls/server.{pem,key}`, or `bootstrap_tls_cert`/`bootstrap_tls_key`).
pub fn load_tls(cert: &Path, key: &Path) -> Result<TlsConfig, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let hint = |p: &Path| {
        if p.parent().and_then(Path::file_name) == Some(std::ffi::OsStr::new("tls")) {
            "run `tarmac genconf`: for an https bootstrap_url it makes genconf/tls/".to_owned()
        } else {
            "check bootstrap_tls_cert and bootstrap_tls_key (`tarmac validate-config`)".to_owned()
        }
    };
    let tls_err = |what: &'static str, path: &Path, message: String| ServeError::Tls {
        what,
        path: path.to_owned(),
        message,
        hint: hint(path),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_err("certificate", cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_err(
            "certificate",
            cert,
            "no -----BEGIN CERTIFICATE----- block".into(),
        ));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err("key", key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("certificate", cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| tls_err("key", key, e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Read size of the artifact server (see [`ArtifactServer::bind`]).
const SERVE_CHUNK: usize = 256 << 10;

/// A running artifact server.
pub struct ArtifactServer {
    pub addr: SocketAddr,
    /// Serving HTTPS?
    pub tls: bool,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ArtifactServer {
    /// Serve `dir` on `listener` (bound by the caller, e.g. inside a lab's network namespace),
    /// over HTTPS with `tls`.
    pub fn start(
        dir: &Path,
        listener: std::net::TcpListener,
        tls: Option<TlsConfig>,
    ) -> Result<Self, ServeError> {
        if !dir.is_dir() {
            return Err(ServeError::NoServeDir {
                dir: dir.to_owned(),
            });
        }
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| ServeError::Bind { addr, source })?;
        let app = Router::new()
            // 256 KiB reads instead of 64 KiB: every host downloads megabytes (the tarmac-host
            // binary at preflight, the archives at deploy), and each read is a round trip to
            // the blocking pool. On 200 lab hosts 1 MiB took preflight from 9.8 to 8.2 ms of
            // controller CPU per host, but held 1 MB per download in flight; 256 KiB is the
            // middle.
            .fallback_service(ServeDir::new(dir).with_buf_chunk_size(SERVE_CHUNK))
            .into_make_service();
        let cancel = CancellationToken::new();
        let handle = axum_server::Handle::new();
        let (c, h) = (cancel.clone(), handle.clone());
        tokio::spawn(async move {
            c.cancelled().await;
            h.graceful_shutdown(Some(Duration::from_secs(2)));
        });
        let is_tls = tls.is_some();
        let task = match tls {
            Some(cfg) => {
                let server = axum_server::from_tcp_rustls(
                    listener,
                    axum_server::tls_rustls::RustlsConfig::from_config(cfg),
                )
                .handle(handle);
                tokio::spawn(async move { server.serve(app).await })
            }
            None => {
                let server = axum_server::from_tcp(listener).handle(handle);
                tokio::spawn(async move { server.serve(app).await })
            }
        };
        Ok(ArtifactServer {
            addr,
            tls: is_tls,
            cancel,
            task,
        })
    }

    /// Bind `addr` and serve `dir` (over HTTPS with `tls`).
    pub fn bind(dir: &Path, addr: SocketAddr, tls: Option<TlsConfig>) -> Result<Self, ServeError> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|source| ServeError::Bind { addr, source })?;
        Self::start(dir, listener, tls)
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// Stop serving and wait for the server task.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }

    /// Run until the task ends (e.g. `tarmac serve` in the foreground).
    pub async fn wait(self) -> std::io::Result<()> {
        self.task.await.unwrap_or(Ok(()))
    }
}

impl tarmac_types::error_report::Hint for ServeError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            ServeError::NoServeDir { .. } => Some("run `tarmac genconf` first".into()),
            ServeError::Tls { hint, .. } => Some(hint.as_str().into()),
            ServeError::Bind { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, req: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_files_with_ranges() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("install.sh"), "0123456789").unwrap();
        let srv = ArtifactServer::bind(d.path(), "127.0.0.1:0".parse().unwrap(), None).unwrap();
        let addr = srv.addr;
        let full = get(
            addr,
            "GET /install.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(full.starts_with("HTTP/1.1 200"), "{full}");
        assert!(full.ends_with("0123456789"));
        let part = get(
            addr,
            "GET /install.sh HTTP/1.1\r\nHost: x\r\nRange: bytes=4-\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(part.starts_with("HTTP/1.1 206"), "{part}");
        assert!(part.ends_with("456789"));
        let missing = get(
            addr,
            "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        srv.stop().await;
    }

    #[test]
    fn missing_dir_is_explained() {
        let err = tarmac_types::error_report::text_with_hint(
            &ArtifactServer::bind(
                Path::new("/nonexistent/serve"),
                "127.0.0.1:0".parse().unwrap(),
                None,
            )
            .err()
            .unwrap(),
        );
        assert!(err.contains("run `tarmac genconf` first"), "{err}");
    }

    #[test]
    fn missing_certificate_is_explained() {
        let d = tempfile::tempdir().unwrap();
        let cert = d.path().join("tls/server.pem");
        let err = tarmac_types::error_report::text_with_hint(
            &load_tls(&cert, &d.path().join("tls/server.key"))
                .err()
                .unwrap(),
        );
        assert!(
            err.starts_with(&format!(
                "cannot use the TLS certificate {}: ",
                cert.display()
            )),
            "{err}"
        );
        assert!(
            err.ends_with(
                "\nhint: run `tarmac genconf`: for an https bootstrap_url it makes genconf/tls/"
            ),
            "{err}"
        );
    }
}
