//! Reading artifacts from a repository: `file://` (or a plain path), `http://` and
//! `https://`.
//!
//! An https repository is trusted only through the cluster CA given to
//! [`Fetcher::with_ca_pem`] (never the system's or a built-in root store): a server whose
//! certificate that CA did not sign is refused at once, naming the URL and the CA file.
//!
//! Repository layout (pkgpanda's): `<url>/packages/<name>/<id>.tar.zst` (`.tar.xz` and
//! `.tar.gz` are tried when the zstd archive is absent).
//!
//! HTTP bodies are read as a stream that **resumes itself**: on a transport error, a server
//! error (5xx/429) or a body shorter than its `Content-Length`, it reconnects with
//! `Range: bytes=<received>-` (or skips what it already has if the server ignores ranges), up
//! to a retry budget with backoff. The consumer (hash → decompress → untar) never notices.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tarmac_types::PackageId;

use crate::extract::Compression;

/// Why a fetch failed (after all retries).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: not found (HTTP 404)")]
    NotFound { url: String },
    #[error("{url}: HTTP {status} {text}")]
    Status {
        url: String,
        status: u16,
        text: String,
    },
    #[error("{url}: request failed after {attempts} attempts")]
    Transport {
        url: String,
        attempts: u32,
        #[source]
        source: Box<ureq::Transport>,
    },
    #[error("{path}: cannot read")]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unsupported repository URL `{url}`")]
    Scheme { url: String },
    #[error("{url}: no cluster CA to check the repository's certificate against")]
    NoCa { url: String },
    #[error("{url}: certificate not signed by the cluster CA ({ca})")]
    Untrusted { url: String, ca: String },
    #[error("{url}: the server's certificate is refused: {reason} (cluster CA {ca})")]
    Certificate {
        url: String,
        ca: String,
        reason: String,
    },
    #[error("{ca}: not a usable CA certificate: {message}")]
    BadCa { ca: String, message: String },
}

impl tarmac_types::error_report::Hint for FetchError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        Some(match self {
            FetchError::Scheme { .. } => {
                Cow::Borrowed("use http://…, https://…, file:///abs/path or a plain directory path")
            }
            FetchError::NoCa { .. } => Cow::Borrowed(
                "an https repository is trusted only through the cluster CA: install.sh writes it to /etc/tarmac/setup-flags/repository-ca.pem (tarmac-host also takes --repository-ca FILE)",
            ),
            FetchError::Untrusted { .. } => Cow::Borrowed(
                "whoever answers for this URL is not the cluster's artifact server, or the server's certificate was replaced: serve genconf/serve/ with `tarmac serve` (genconf/tls/server.pem or bootstrap_tls_cert), and rerun install.sh on this host if genconf made a new CA",
            ),
            _ => return None,
        })
    }
}

impl FetchError {
    pub fn is_not_found(&self) -> bool {
        match self {
            FetchError::NotFound { .. } => true,
            FetchError::File { source, .. } => source.kind() == io::ErrorKind::NotFound,
            _ => false,
        }
    }
}

/// Retry policy and HTTP client for fetching.
#[derive(Clone)]
pub struct Fetcher {
    agent: ureq::Agent,
    /// Names the CA file of [`Fetcher::with_ca_pem`] (`None`: https is refused).
    ca: Option<Arc<str>>,
    /// Attempts per artifact (first try included), shared by the initial request and resumes.
    pub attempts: u32,
    /// First backoff; doubles each retry, capped at 8 s.
    pub backoff: Duration,
}

impl Default for Fetcher {
    fn default() -> Self {
        Fetcher::new(6, Duration::from_millis(500))
    }
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("attempts", &self.attempts)
            .field("ca", &self.ca)
            .finish()
    }
}

/// The URL of a package archive in a repository.
pub fn package_url(repository: &str, id: &PackageId, c: Compression) -> String {
    format!(
        "{}/packages/{}/{id}{}",
        repository.trim().trim_end_matches('/'),
        id.name(),
        c.suffix()
    )
}

/// Join a path below a repository URL.
pub fn join_url(repository: &str, rel: &str) -> String {
    format!(
        "{}/{}",
        repository.trim().trim_end_matches('/'),
        rel.trim_start_matches('/')
    )
}

/// A readable artifact with its size when known.
pub struct Body {
    pub reader: Box<dyn Read + Send>,
    pub len: Option<u64>,
}

impl Fetcher {
    pub fn new(attempts: u32, backoff: Duration) -> Self {
        Fetcher {
            agent: agent_builder().build(),
            ca: None,
            attempts: attempts.max(1),
            backoff,
        }
    }

    /// Trust exactly the CA certificate(s) in `pem` for https (no system or built-in roots);
    /// `ca` names the file in errors (e.g. `/etc/tarmac/setup-flags/repository-ca.pem`).
    pub fn with_ca_pem(self, pem: &[u8], ca: &str) -> Result<Fetcher, FetchError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let bad = |message: String| FetchError::BadCa {
            ca: ca.to_owned(),
            message,
        };
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(bad("no -----BEGIN CERTIFICATE----- block".into()));
        }
        let mut roots = rustls::RootCertStore::empty();
        for c in certs {
            roots.add(c).map_err(|e| bad(e.to_string()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Fetcher {
            agent: agent_builder().tls_config(Arc::new(config)).build(),
            ca: Some(ca.into()),
            ..self
        })
    }

    /// The CA file given to [`Fetcher::with_ca_pem`].
    pub fn ca(&self) -> Option<&str> {
        self.ca.as_deref()
    }

    fn delay(&self, attempt: u32) -> Duration {
        (self.backoff * 2u32.saturating_pow(attempt.saturating_sub(1))).min(Duration::from_secs(8))
    }

    /// Open `url` (http://, file:// or a path) for streaming.
    pub fn open(&self, url: &str) -> Result<Body, FetchError> {
        let url = url.trim();
        if url.starts_with("https://") && self.ca.is_none() {
            return Err(FetchError::NoCa {
                url: url.to_owned(),
            });
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            let mut r = HttpBody {
                fetcher: self.clone(),
                url: url.to_owned(),
                inner: None,
                offset: 0,
                total: None,
                failures: 0,
            };
            r.connect()?;
            let len = r.total;
            Ok(Body {
                reader: Box::new(r),
                len,
            })
        } else {
            let path = local_path(url).ok_or_else(|| FetchError::Scheme {
                url: url.to_owned(),
            })?;
            let f = File::open(&path).map_err(|source| FetchError::File {
                path: path.clone(),
                source,
            })?;
            let len = f.metadata().ok().map(|m| m.len());
            Ok(Body {
                reader: Box::new(f),
                len,
            })
        }
    }

    /// Read a whole (small) artifact: package lists, manifests.
    pub fn get_bytes(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let mut body = self.open(url)?;
        let mut out = Vec::new();
        body.reader
            .read_to_end(&mut out)
            .map_err(|source| FetchError::File {
                path: PathBuf::from(url),
                source,
            })?;
        Ok(out)
    }

    /// Open a package archive, trying `.tar.zst`, then `.tar.xz`, then `.tar.gz`.
    pub fn open_package(
        &self,
        repository: &str,
        id: &PackageId,
    ) -> Result<(Body, Compression, String), FetchError> {
        let mut first_err = None;
        for c in Compression::ALL {
            let url = package_url(repository, id, c);
            match self.open(&url) {
                Ok(b) => return Ok((b, c, url)),
                Err(e) if e.is_not_found() => {
                    first_err.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(first_err.expect("at least one compression tried"))
    }
}

fn agent_builder() -> ureq::AgentBuilder {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(Duration::from_secs(60))
        // A redirect could leave the pinned https origin.
        .redirects(0)
}

/// The rustls certificate error inside a transport error, if that is what it is.
fn certificate_error(t: &ureq::Transport) -> Option<rustls::CertificateError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(t);
    while let Some(e) = cur {
        let found = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::InvalidCertificate(c)) = found {
            return Some(c.clone());
        }
        cur = e.source();
    }
    None
}

/// `file:///abs`, `file://rel` (relative to the working directory) or a plain path.
pub fn local_path(url: &str) -> Option<PathBuf> {
    if let Some(rest) = url.strip_prefix("file://") {
        return Some(PathBuf::from(rest));
    }
    if url.contains("://") {
        return None;
    }
    Some(PathBuf::from(url))
}

struct HttpBody {
    fetcher: Fetcher,
    url: String,
    inner: Option<Box<dyn Read + Send + Sync>>,
    offset: u64,
    total: Option<u64>,
    failures: u32,
}

impl HttpBody {
    /// (Re)connect at `self.offset`, retrying within the budget.
    fn connect(&mut self) -> Result<(), FetchError> {
        loop {
            let mut req = self
                .fetcher
                .agent
                .get(&self.url)
                .set("Accept-Encoding", "identity");
            if self.offset > 0 {
                req = req.set("Range", &format!("bytes={}-", self.offset));
            }
            let err = match req.call() {
                Ok(resp) if !matches!(resp.status(), 200 | 206) => {
                    // Redirects are not followed (they could leave the pinned https origin).
                    let to = resp
                        .header("Location")
                        .map(|l| format!(" to {l}"))
                        .unwrap_or_default();
                    return Err(FetchError::Status {
                        url: self.url.clone(),
                        status: resp.status(),
                        text: format!(
                            "{}{to}: refused (a repository serves its files, it does not redirect)",
                            resp.status_text()
                        ),
                    });
                }
                Ok(resp) => {
                    let status = resp.status();
                    let len: Option<u64> = resp
                        .header("Content-Length")
                        .and_then(|v| v.trim().parse().ok());
                    let mut reader = resp.into_reader();
                    if self.offset > 0 && status == 200 {
                        // The server ignored the range: skip what we already have.
                        let skipped =
                            io::copy(&mut (&mut reader).take(self.offset), &mut io::sink());
                        match skipped {
                            Ok(n) if n == self.offset => {}
                            _ => {
                                self.failures += 1;
                                if self.failures >= self.fetcher.attempts {
                                    return Err(FetchError::Status {
                                        url: self.url.clone(),
                                        status,
                                        text: "body shorter than on the first attempt".into(),
                                    });
                                }
                                std::thread::sleep(self.fetcher.delay(self.failures));
                                continue;
                            }
                        }
                    }
                    if self.total.is_none() {
                        self.total = match (status, len) {
                            (200, Some(l)) => Some(l),
                            (206, Some(l)) => Some(l + self.offset),
                            _ => None,
                        };
                    }
                    self.inner = Some(reader);
                    return Ok(());
                }
                Err(ureq::Error::Status(404, _)) => {
                    return Err(FetchError::NotFound {
                        url: self.url.clone(),
                    });
                }
                Err(ureq::Error::Status(status, resp))
                    if !(status >= 500 || status == 429 || status == 408) =>
                {
                    return Err(FetchError::Status {
                        url: self.url.clone(),
                        status,
                        text: resp.status_text().to_owned(),
                    });
                }
                // A refused certificate is not a transient failure: another try meets the
                // same certificate, so it fails at once.
                Err(ureq::Error::Transport(t)) => match certificate_error(&t) {
                    Some(c) => {
                        let ca = self.fetcher.ca.as_deref().unwrap_or("none").to_owned();
                        let url = self.url.clone();
                        return Err(match c {
                            rustls::CertificateError::UnknownIssuer
                            | rustls::CertificateError::BadSignature => {
                                FetchError::Untrusted { url, ca }
                            }
                            other => FetchError::Certificate {
                                url,
                                ca,
                                reason: certificate_reason(&other),
                            },
                        });
                    }
                    None => ureq::Error::Transport(t),
                },
                Err(e) => e,
            };
            self.failures += 1;
            if self.failures >= self.fetcher.attempts {
                return Err(match err {
                    ureq::Error::Status(status, resp) => FetchError::Status {
                        url: self.url.clone(),
                        status,
                        text: resp.status_text().to_owned(),
                    },
                    ureq::Error::Transport(t) => FetchError::Transport {
                        url: self.url.clone(),
                        attempts: self.failures,
                        source: Box::new(t),
                    },
                });
            }
            std::thread::sleep(self.fetcher.delay(self.failures));
        }
    }
}

fn certificate_reason(e: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match e {
        C::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "it is not for {} (it is for {})",
            expected.to_str(),
            presented
                .iter()
                .map(|p| {
                    // webpki's `DnsName("x")` / `IpAddress(x)` as DNS:x / IP:x.
                    p.strip_prefix("DnsName(\"")
                        .and_then(|n| n.strip_suffix("\")"))
                        .map(|n| format!("DNS:{n}"))
                        .or_else(|| {
                            p.strip_prefix("IpAddress(")
                                .and_then(|n| n.strip_suffix(')'))
                                .map(|n| format!("IP:{n}"))
                        })
                        .unwrap_or_else(|| p.clone())
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        C::ExpiredContext { not_after, .. } => {
            format!("it expired at {} (Unix time)", not_after.as_secs())
        }
        C::NotValidYetContext { not_before, .. } => {
            format!(
                "it is not valid before {} (Unix time)",
                not_before.as_secs()
            )
        }
        other => format!("{other:?}"),
    }
}

impl Read for HttpBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(inner) = self.inner.as_mut() else {
                return Ok(0);
            };
            let res = inner.read(buf);
            let retry_reason = match res {
                Ok(0) => match self.total {
                    Some(t) if self.offset < t => {
                        format!("connection closed after {} of {t} bytes", self.offset)
                    }
                    _ => {
                        self.inner = None;
                        return Ok(0);
                    }
                },
                Ok(n) => {
                    self.offset += n as u64;
                    return Ok(n);
                }
                Err(e) => e.to_string(),
            };
            self.inner = None;
            self.failures += 1;
            if self.failures >= self.fetcher.attempts {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{}: {retry_reason}; gave up after {} attempts",
                        self.url, self.failures
                    ),
                ));
            }
            std::thread::sleep(self.fetcher.delay(self.failures));
            // connect() counts its own failed attempts against the same budget.
            if let Err(e) = self.connect() {
                return Err(io::Error::other(format!(
                    "{}: {retry_reason}; {e}",
                    self.url
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let id = PackageId::parse("etcd--abc").unwrap();
        assert_eq!(
            package_url("http://10.0.0.1:8080/repo/ ", &id, Compression::Zstd),
            "http://10.0.0.1:8080/repo/packages/etcd/etcd--abc.tar.zst"
        );
        assert_eq!(
            package_url("file:///srv/repo", &id, Compression::Xz),
            "file:///srv/repo/packages/etcd/etcd--abc.tar.xz"
        );
        assert_eq!(local_path("file:///srv/x"), Some(PathBuf::from("/srv/x")));
        assert_eq!(local_path("/srv/x"), Some(PathBuf::from("/srv/x")));
        assert_eq!(local_path("ftp://x"), None);
    }

    #[test]
    fn https_needs_the_cluster_ca() {
        let f = Fetcher::new(1, Duration::from_millis(1));
        let e = f.open("https://127.0.0.1:1/x").err().unwrap();
        assert_eq!(
            tarmac_types::error_report::text_with_hint(&e),
            "https://127.0.0.1:1/x: no cluster CA to check the repository's certificate against\nhint: an https repository is trusted only through the cluster CA: install.sh writes it to /etc/tarmac/setup-flags/repository-ca.pem (tarmac-host also takes --repository-ca FILE)"
        );
        let e = f
            .clone()
            .with_ca_pem(b"not pem\n", "/etc/tarmac/setup-flags/repository-ca.pem")
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "/etc/tarmac/setup-flags/repository-ca.pem: not a usable CA certificate: no -----BEGIN CERTIFICATE----- block"
        );
        let e = f
            .with_ca_pem(
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "ca.pem",
            )
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .starts_with("ca.pem: not a usable CA certificate: "),
            "{e}"
        );
    }
}
