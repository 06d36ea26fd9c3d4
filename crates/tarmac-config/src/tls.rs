//! TLS for an `https://` bootstrap_url: which certificate the artifact server presents, which
//! CA the hosts pin, and the checks of an operator's certificate (`bootstrap_tls_cert`,
//! `bootstrap_tls_key`, `bootstrap_tls_ca`).
//!
//! Without an operator certificate, `tarmac genconf` makes a per-cluster CA and a server
//! certificate under `genconf/tls/` ([`TLS_DIR`]); hosts trust only that CA (install.sh
//! carries it as `/etc/tarmac/setup-flags/repository-ca.pem`), never the system store. The
//! checks here are the ones the hosts' TLS client makes (rustls' webpki verifier), so a
//! certificate that passes validation is one the hosts accept.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, RootCertStore};
use tarmac_types::Digest;

pub use rustls::pki_types;

/// `genconf/tls/`: the generated cluster CA and server certificate.
pub const TLS_DIR: &str = "tls";
/// The cluster CA certificate (public; install.sh carries it).
pub const CA_CERT_FILE: &str = "ca.pem";
/// The cluster CA's private key (0600, never leaves the controller).
pub const CA_KEY_FILE: &str = "ca.key";
/// The artifact server's certificate, signed by the cluster CA.
pub const SERVER_CERT_FILE: &str = "server.pem";
/// The artifact server's private key (0600).
pub const SERVER_KEY_FILE: &str = "server.key";
/// Where install.sh puts the CA on a host; `tarmac-host` trusts only it for the repository.
pub const HOST_CA_PATH: &str = "/etc/tarmac/setup-flags/repository-ca.pem";

/// Largest PEM file read (certificates and keys are a few KiB).
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The config keys of an operator certificate.
pub const CERT_KEY: &str = "bootstrap_tls_cert";
pub const KEY_KEY: &str = "bootstrap_tls_key";
pub const CA_KEY: &str = "bootstrap_tls_ca";

/// The certificate the artifact server presents for an https bootstrap_url, and the CA the
/// hosts pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapTls {
    /// bootstrap_url's host (an IP address without brackets, or a DNS name).
    pub host: String,
    /// PEM certificate chain, server certificate first.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
    /// PEM certificate of the CA that signed `cert`.
    pub ca: PathBuf,
    /// True for the per-cluster CA genconf makes (`genconf/tls/`), false for an operator's.
    pub generated: bool,
}

impl BootstrapTls {
    /// The generated files below `genconf_dir`.
    pub fn generated(genconf_dir: &Path, host: &str) -> BootstrapTls {
        let d = genconf_dir.join(TLS_DIR);
        BootstrapTls {
            host: host.to_owned(),
            cert: d.join(SERVER_CERT_FILE),
            key: d.join(SERVER_KEY_FILE),
            ca: d.join(CA_CERT_FILE),
            generated: true,
        }
    }
}

/// The host of an `http(s)://` URL: an IP address without brackets, or a DNS name.
pub fn url_host(url: &str) -> Option<String> {
    let u = url::Url::parse(url.trim()).ok()?;
    match u.host()? {
        url::Host::Domain(d) => Some(d.to_owned()),
        url::Host::Ipv4(a) => Some(a.to_string()),
        url::Host::Ipv6(a) => Some(a.to_string()),
    }
}

/// Is `url` an `https://` URL?
pub fn is_https(url: &str) -> bool {
    url.trim()
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// Read a PEM file, at most [`MAX_PEM_BYTES`]. The error is the reason only (the caller names
/// the file and key).
pub fn read_pem_file(path: &Path) -> Result<Vec<u8>, String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut out = Vec::new();
    f.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() as u64 > MAX_PEM_BYTES {
        return Err(format!(
            "larger than {} KiB, not a PEM file",
            MAX_PEM_BYTES / 1024
        ));
    }
    Ok(out)
}

/// Every `CERTIFICATE` block of a PEM text (other blocks are ignored); at least one.
pub fn parse_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no -----BEGIN CERTIFICATE----- block".into());
    }
    Ok(certs)
}

/// The first private key of a PEM text (PKCS#8, PKCS#1 RSA or SEC1 EC, unencrypted).
pub fn parse_private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pki_types::pem::Error::NoItemsFound => {
            "no -----BEGIN PRIVATE KEY----- block (PKCS#8, RSA or EC, unencrypted)".to_owned()
        }
        e => format!("not valid PEM: {e}"),
    })
}

/// `sha256:<hex>` of a certificate's DER bytes (what `openssl x509 -fingerprint -sha256`
/// shows, without the colons).
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    format!("sha256:{}", Digest::of(cert.as_ref()).hex())
}

/// curl's `--pinnedpubkey` value for a certificate: `sha256//<base64 of the sha256 of its
/// DER SubjectPublicKeyInfo>` (what the self-install one-liner pins before the host has the
/// cluster CA).
pub fn spki_pin(cert: &CertificateDer<'_>) -> Result<String, String> {
    use base64::Engine;
    let parsed = rustls::server::ParsedCertificate::try_from(cert).map_err(|e| e.to_string())?;
    let spki = parsed.subject_public_key_info();
    Ok(format!(
        "sha256//{}",
        base64::engine::general_purpose::STANDARD.encode(Digest::of(spki.as_ref()).0)
    ))
}

/// Why a server certificate would be refused by the hosts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertProblem {
    #[error("is not signed by the CA")]
    NotSignedByCa,
    #[error("expired on {not_after}")]
    Expired { not_after: String },
    #[error("is not valid before {not_before}")]
    NotYetValid { not_before: String },
    #[error("does not cover {host}: it is for {presented}")]
    WrongHost { host: String, presented: String },
    #[error("`{host}` is not a host name or IP address a certificate can be checked for")]
    BadHost { host: String },
    #[error("is not a usable server certificate: {0}")]
    Other(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The root store holding exactly `ca` (every certificate of the CA file).
pub fn root_store(ca: &[CertificateDer<'static>]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in ca {
        roots
            .add(c.clone())
            .map_err(|e| format!("not a usable CA certificate: {e}"))?;
    }
    Ok(roots)
}

/// Check `chain` (server certificate first, then intermediates) the way the hosts will: signed
/// by `ca`, valid at `now`, and covering `host`.
pub fn verify_server_chain(
    chain: &[CertificateDer<'static>],
    ca: &[CertificateDer<'static>],
    host: &str,
    now: UnixTime,
) -> Result<(), CertProblem> {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(CertProblem::Other("no certificate".into()));
    };
    let roots = root_store(ca).map_err(CertProblem::Other)?;
    let name = ServerName::try_from(host.to_owned()).map_err(|_| CertProblem::BadHost {
        host: host.to_owned(),
    })?;
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| CertProblem::Other(e.to_string()))?;
    match verifier.verify_server_cert(leaf, intermediates, &name, &[], now) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InvalidCertificate(e)) => Err(cert_problem(e, host)),
        Err(e) => Err(CertProblem::Other(e.to_string())),
    }
}

/// The [`CertProblem`] of a rustls certificate error (also used for what a client saw).
pub fn cert_problem(e: CertificateError, host: &str) -> CertProblem {
    match e {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            CertProblem::NotSignedByCa
        }
        CertificateError::ExpiredContext { not_after, .. } => CertProblem::Expired {
            not_after: utc(not_after.as_secs()),
        },
        CertificateError::NotValidYetContext { not_before, .. } => CertProblem::NotYetValid {
            not_before: utc(not_before.as_secs()),
        },
        CertificateError::NotValidForNameContext { presented, .. } => CertProblem::WrongHost {
            host: host.to_owned(),
            presented: if presented.is_empty() {
                "no names at all (no subjectAltName)".into()
            } else {
                presented
                    .iter()
                    .map(|p| pretty_name(p))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        },
        CertificateError::NotValidForName => CertProblem::WrongHost {
            host: host.to_owned(),
            presented: "other names".into(),
        },
        other => CertProblem::Other(format!("{other:?}")),
    }
}

/// webpki's `DnsName("a.example")` / `IpAddress(10.0.0.1)` as `DNS:a.example` / `IP:10.0.0.1`.
fn pretty_name(p: &str) -> String {
    if let Some(n) = p
        .strip_prefix("DnsName(\"")
        .and_then(|s| s.strip_suffix("\")"))
    {
        return format!("DNS:{n}");
    }
    if let Some(n) = p
        .strip_prefix("IpAddress(")
        .and_then(|s| s.strip_suffix(')'))
    {
        return format!("IP:{n}");
    }
    p.to_owned()
}

/// Is `key` the private key of `chain`'s first certificate?
pub fn key_matches(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'_>,
) -> Result<(), String> {
    let signing = rustls::crypto::ring::sign::any_supported_type(key)
        .map_err(|e| format!("not a usable private key: {e}"))?;
    match rustls::sign::CertifiedKey::new(chain.to_vec(), signing).keys_match() {
        Ok(()) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err("mismatch".into())
        }
        Err(e) => Err(e.to_string()),
    }
}

pub use tarmac_types::time::utc;

/// One per-key finding of [`check_operator_tls`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub key: &'static str,
    pub message: String,
    pub hint: Option<String>,
    /// A warning (e.g. the certificate expires soon) rather than an error.
    pub warning: bool,
}

impl Finding {
    fn error(key: &'static str, message: String, hint: impl Into<Option<String>>) -> Finding {
        Finding {
            key,
            message,
            hint: hint.into(),
            warning: false,
        }
    }
}

/// One configured PEM file: the value written in config.yaml and the file's bytes.
#[derive(Debug, Clone)]
pub struct PemInput {
    pub value: String,
    pub bytes: Result<Vec<u8>, String>,
}

/// Certificates expiring within this many days are warned about.
pub const EXPIRY_WARNING_DAYS: u64 = 30;

/// Check the `bootstrap_tls_*` keys. Pure: the files are read by the caller. `https_host` is
/// bootstrap_url's host when it is an https URL, else `None`.
pub fn check_operator_tls(
    bootstrap_url: &str,
    https_host: Option<&str>,
    cert: Option<&PemInput>,
    key: Option<&PemInput>,
    ca: Option<&PemInput>,
    now: UnixTime,
) -> Vec<Finding> {
    let set = [(CERT_KEY, cert), (KEY_KEY, key), (CA_KEY, ca)];
    let mut out = Vec::new();
    let Some(host) = https_host else {
        for (k, v) in set {
            if v.is_some() {
                out.push(Finding::error(
                    k,
                    format!(
                        "{k} is set, but bootstrap_url `{bootstrap_url}` is not an https:// URL: nothing would use it"
                    ),
                    format!("make bootstrap_url https://…, or remove {k}"),
                ));
            }
        }
        return out;
    };
    if set.iter().all(|(_, v)| v.is_none()) {
        return out; // genconf makes the cluster CA
    }
    let all_three = "set bootstrap_tls_cert, bootstrap_tls_key and bootstrap_tls_ca together, or none of them (then genconf makes a per-cluster CA and certificate in genconf/tls/)".to_owned();
    let (Some(cert), Some(key), Some(ca)) = (cert, key, ca) else {
        for (k, v) in set {
            if v.is_none() {
                let why = match k {
                    CERT_KEY => "the server certificate (PEM chain) for bootstrap_url",
                    KEY_KEY => "the private key of bootstrap_tls_cert",
                    _ => {
                        "the CA that signed bootstrap_tls_cert (hosts trust only this CA for bootstrap_url)"
                    }
                };
                let given: Vec<&str> = set
                    .iter()
                    .filter(|(_, v)| v.is_some())
                    .map(|(k, _)| *k)
                    .collect();
                out.push(Finding::error(
                    k,
                    format!("Must set {k} with {}: {why}", given.join(" and ")),
                    all_three.clone(),
                ));
            }
        }
        return out;
    };
    let what = |k: &str, v: &PemInput| format!("{k} `{}`", v.value);
    let read = |k: &'static str, v: &PemInput, out: &mut Vec<Finding>| match &v.bytes {
        Ok(b) => Some(b.clone()),
        Err(e) => {
            out.push(Finding::error(
                k,
                format!("{} cannot be read: {e}", what(k, v)),
                "check the path (relative paths are resolved against the directory that contains genconf/) and that the file is readable".to_owned(),
            ));
            None
        }
    };
    let pem_hint = |kind: &str| {
        Some(format!(
            "{kind} (`openssl x509 -in FILE -noout -text` shows a certificate; convert DER with `openssl x509 -inform der -in FILE -out FILE.pem`)"
        ))
    };
    let cert_bytes = read(CERT_KEY, cert, &mut out);
    let key_bytes = read(KEY_KEY, key, &mut out);
    let ca_bytes = read(CA_KEY, ca, &mut out);
    let chain = cert_bytes.and_then(|b| match parse_certificates(&b) {
        Ok(c) => Some(c),
        Err(e) => {
            out.push(Finding::error(
                CERT_KEY,
                format!("{} is not a PEM certificate: {e}", what(CERT_KEY, cert)),
                pem_hint("give the server certificate first, then any intermediates, in PEM"),
            ));
            None
        }
    });
    let private = key_bytes.and_then(|b| match parse_private_key(&b) {
        Ok(k) => Some(k),
        Err(e) => {
            out.push(Finding::error(
                KEY_KEY,
                format!("{} is not a PEM private key: {e}", what(KEY_KEY, key)),
                Some(
                    "give the unencrypted private key in PEM (`openssl pkey -in FILE -out FILE.key` decrypts and converts it)"
                        .to_owned(),
                ),
            ));
            None
        }
    });
    let anchors = ca_bytes.and_then(|b| {
        match parse_certificates(&b).and_then(|c| root_store(&c).map(|_| c)) {
            Ok(c) => Some(c),
            Err(e) => {
                out.push(Finding::error(
                    CA_KEY,
                    format!("{} is not a PEM CA certificate: {e}", what(CA_KEY, ca)),
                    pem_hint(
                        "give the certificate of the CA that signed bootstrap_tls_cert in PEM",
                    ),
                ));
                None
            }
        }
    });
    if let (Some(chain), Some(private)) = (&chain, &private)
        && let Err(e) = key_matches(chain, private)
    {
        let message = if e == "mismatch" {
            format!(
                "{} is not the private key of the certificate in {}",
                what(KEY_KEY, key),
                what(CERT_KEY, cert)
            )
        } else {
            format!("{}: {e}", what(KEY_KEY, key))
        };
        out.push(Finding::error(
            KEY_KEY,
            message,
            Some("give the key the certificate was issued for".to_owned()),
        ));
    }
    if let (Some(chain), Some(anchors)) = (&chain, &anchors) {
        match verify_server_chain(chain, anchors, host, now) {
            Ok(()) => {
                let soon = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                    now.as_secs() + EXPIRY_WARNING_DAYS * 86_400,
                ));
                if let Err(CertProblem::Expired { not_after }) =
                    verify_server_chain(chain, anchors, host, soon)
                {
                    out.push(Finding {
                        key: CERT_KEY,
                        message: format!(
                            "the certificate in {} expires on {not_after}, in less than {EXPIRY_WARNING_DAYS} days",
                            what(CERT_KEY, cert)
                        ),
                        hint: Some(
                            "renew it, run `tarmac genconf` and restart the artifact server before then"
                                .to_owned(),
                        ),
                        warning: true,
                    });
                }
            }
            Err(p) => {
                let hint = match &p {
                    CertProblem::NotSignedByCa => format!(
                        "set bootstrap_tls_ca to the CA that issued it (with a chain, the CA at its top), or bootstrap_tls_cert to a certificate {} issued",
                        what(CA_KEY, ca)
                    ),
                    CertProblem::Expired { .. } | CertProblem::NotYetValid { .. } => {
                        "renew the certificate (and check this machine's clock)".to_owned()
                    }
                    CertProblem::WrongHost { .. } | CertProblem::BadHost { .. } => format!(
                        "issue the certificate with subjectAltName {} (the host of bootstrap_url), or change bootstrap_url",
                        if host.parse::<std::net::IpAddr>().is_ok() {
                            format!("IP:{host}")
                        } else {
                            format!("DNS:{host}")
                        }
                    ),
                    CertProblem::Other(_) => {
                        "give a TLS server certificate (extendedKeyUsage serverAuth)".to_owned()
                    }
                };
                let message = match &p {
                    CertProblem::NotSignedByCa => format!(
                        "the certificate in {} is not signed by {}",
                        what(CERT_KEY, cert),
                        what(CA_KEY, ca)
                    ),
                    CertProblem::WrongHost { presented, .. } => format!(
                        "the certificate in {} does not cover bootstrap_url's host {host}: it is for {presented}",
                        what(CERT_KEY, cert)
                    ),
                    p => format!("the certificate in {} {p}", what(CERT_KEY, cert)),
                };
                out.push(Finding::error(CERT_KEY, message, Some(hint)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_urls() {
        assert_eq!(
            url_host("https://10.0.0.254:8443").as_deref(),
            Some("10.0.0.254")
        );
        assert_eq!(
            url_host("https://[fd00::1]:8443/x").as_deref(),
            Some("fd00::1")
        );
        assert_eq!(
            url_host("https://Boot.Example:8443").as_deref(),
            Some("boot.example")
        );
        assert_eq!(url_host("file:///srv"), None);
        assert!(is_https("HTTPS://x"));
        assert!(!is_https("http://x"));
    }

    #[test]
    fn names_and_dates() {
        assert_eq!(pretty_name("DnsName(\"a.example\")"), "DNS:a.example");
        assert_eq!(pretty_name("IpAddress(10.0.0.1)"), "IP:10.0.0.1");
        assert_eq!(pretty_name("DirectoryName"), "DirectoryName");
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20Z");
    }
}
