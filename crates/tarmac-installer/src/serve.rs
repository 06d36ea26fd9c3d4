//! The artifact server: serves `genconf/serve/` over HTTP (range requests, many concurrent
//! clients) so hosts pull the bootstrap and packages themselves.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::services::ServeDir;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("nothing to serve: `{dir}` does not exist\nhint: run `tarmac genconf` first")]
    NoServeDir { dir: PathBuf },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running artifact server.
pub struct ArtifactServer {
    pub addr: SocketAddr,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ArtifactServer {
    /// Serve `dir` on `listener` (bound by the caller, e.g. inside a lab's network namespace).
    pub fn start(dir: &Path, listener: std::net::TcpListener) -> Result<Self, ServeError> {
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
        let listener =
            TcpListener::from_std(listener).map_err(|source| ServeError::Bind { addr, source })?;
        let app = Router::new().fallback_service(ServeDir::new(dir));
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(c.cancelled_owned())
                .await
        });
        Ok(ArtifactServer { addr, cancel, task })
    }

    /// Bind `addr` and serve `dir`.
    pub fn bind(dir: &Path, addr: SocketAddr) -> Result<Self, ServeError> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|source| ServeError::Bind { addr, source })?;
        Self::start(dir, listener)
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
        let srv = ArtifactServer::bind(d.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
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
        let err = ArtifactServer::bind(
            Path::new("/nonexistent/serve"),
            "127.0.0.1:0".parse().unwrap(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("run `tarmac genconf` first"), "{err}");
    }
}
