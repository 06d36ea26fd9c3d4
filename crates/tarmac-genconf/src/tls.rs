//! The per-cluster CA and server certificate for an `https://` bootstrap_url.
//!
//! ```text
//! genconf/tls/            0700
//!   ca.key                0600  the cluster CA's private key (never leaves this machine)
//!   ca.pem                0644  the cluster CA: install.sh carries it, hosts trust only it
//!   server.key            0600  the artifact server's key
//!   server.pem            0644  the artifact server's certificate, signed by ca.key
//! ```
//!
//! Made once and reused, like `genconf/config-id.key`: the CA stays as long as `ca.key`
//! does; the server certificate is issued again (by the same CA, so installed hosts keep
//! trusting it) when it no longer covers bootstrap_url's host, expires within 30 days, or is
//! not signed by the CA. Keys are 0600 from their first byte.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tarmac_config::ResolvedConfig;
use tarmac_config::tls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tarmac_config::tls::{self as ctls, BootstrapTls};

/// How long the cluster CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(20 * 365 * 86_400);
/// How long a server certificate is valid.
pub const SERVER_VALIDITY: Duration = Duration::from_secs(2 * 365 * 86_400);
/// A server certificate expiring within this is issued again.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);

/// The CA's subject. Never change it: server certificates issued later name it as their
/// issuer, and installed hosts match it against the CA they pinned.
const CA_COMMON_NAME: &str = "Tarmac cluster CA";
const ORGANIZATION: &str = "Tarmac";

/// What the hosts pin for an https bootstrap_url.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTls {
    pub files: BootstrapTls,
    /// The CA certificate(s), PEM: install.sh writes it to
    /// [`tarmac_config::tls::HOST_CA_PATH`].
    pub ca_pem: String,
    /// `sha256:<hex>` of the (first) CA certificate.
    pub ca_fingerprint: String,
    /// curl's `--pinnedpubkey` for the server certificate (`sha256//<base64>`): the
    /// self-install one-liner pins it before the host has the CA.
    pub server_pin: String,
    /// True when this run issued a new server certificate (or a new CA).
    pub issued: bool,
}

/// The `--pinnedpubkey` of the first certificate in `cert`.
fn server_pin(cert: &Path) -> Result<String, TlsError> {
    let bad = |message: String| TlsError::Bad {
        path: cert.to_owned(),
        message,
        hint: "run `tarmac validate-config`".into(),
    };
    let bytes = ctls::read_pem_file(cert).map_err(bad)?;
    let certs = ctls::parse_certificates(&bytes).map_err(bad)?;
    ctls::spki_pin(&certs[0]).map_err(bad)
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {message}")]
    Bad {
        path: PathBuf,
        message: String,
        hint: String,
    },
    #[error("cannot make the TLS certificate for {host}: {message}")]
    Generate { host: String, message: String },
}

impl tarmac_types::error_report::Hint for TlsError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            TlsError::Bad { hint, .. } => Some(hint.as_str().into()),
            TlsError::Io { .. } | TlsError::Generate { .. } => None,
        }
    }
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> TlsError + 'a {
    move |source| TlsError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The TLS material for `cfg`'s bootstrap_url: `None` for http/file URLs; the operator's
/// CA (already validated with the config) or the generated per-cluster CA, made or renewed
/// here.
pub fn prepare(cfg: &ResolvedConfig, genconf_dir: &Path) -> Result<Option<ClusterTls>, TlsError> {
    let Some(files) = cfg.bootstrap_tls(genconf_dir) else {
        return Ok(None);
    };
    if files.generated {
        return ensure_generated(genconf_dir, &files.host, SystemTime::now()).map(Some);
    }
    let bytes = ctls::read_pem_file(&files.ca).map_err(|message| TlsError::Bad {
        path: files.ca.clone(),
        message,
        hint: "bootstrap_tls_ca must stay readable: genconf copies it into install.sh".into(),
    })?;
    let certs = ctls::parse_certificates(&bytes).map_err(|message| TlsError::Bad {
        path: files.ca.clone(),
        message,
        hint: "run `tarmac validate-config`".into(),
    })?;
    Ok(Some(ClusterTls {
        ca_pem: pem_text(&certs),
        ca_fingerprint: ctls::fingerprint(&certs[0]),
        server_pin: server_pin(&files.cert)?,
        files,
        issued: false,
    }))
}

/// Only the CERTIFICATE blocks of a CA file, re-encoded (comments, keys and other blocks
/// an operator's file may hold stay out of install.sh).
fn pem_text(certs: &[CertificateDer<'_>]) -> String {
    certs
        .iter()
        .map(|c| pem_encode("CERTIFICATE", c.as_ref()))
        .collect()
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// Make (or reuse) `genconf/tls/` for `host` at time `now`.
pub fn ensure_generated(
    genconf_dir: &Path,
    host: &str,
    now: SystemTime,
) -> Result<ClusterTls, TlsError> {
    let files = BootstrapTls::generated(genconf_dir, host);
    let dir = genconf_dir.join(ctls::TLS_DIR);
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err("cannot create", &dir)(e)),
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err("cannot chmod", &dir))?;
    let ca_key_path = dir.join(ctls::CA_KEY_FILE);
    let gen_err = |message: String| TlsError::Generate {
        host: host.to_owned(),
        message,
    };
    let mut issued = false;

    // 1. The CA key: made once. Its certificate can always be made again from it (same key
    // and subject: hosts that pinned the old certificate accept what the new one signs).
    let ca_key = match read_optional(&ca_key_path)? {
        Some(pem) => KeyPair::from_pem(&pem).map_err(|e| TlsError::Bad {
            path: ca_key_path.clone(),
            message: format!("not a usable private key: {e}"),
            hint: "restore genconf/tls/ from a backup, or delete genconf/tls/ to make a new cluster CA (then run `tarmac genconf` and reinstall or upgrade every host, which pinned the old one)".into(),
        })?,
        None => {
            let k = KeyPair::generate().map_err(|e| gen_err(e.to_string()))?;
            write_new_private(&ca_key_path, k.serialize_pem().as_bytes())?;
            issued = true;
            k
        }
    };
    let ca_params = ca_params(now);
    let ca_pem = match read_optional(&files.ca)? {
        Some(pem) if ca_matches_key(&pem, &ca_key) => pem,
        _ => {
            let cert = ca_params
                .self_signed(&ca_key)
                .map_err(|e| gen_err(e.to_string()))?;
            write_atomic(&files.ca, cert.pem().as_bytes(), 0o644)?;
            issued = true;
            cert.pem()
        }
    };
    let ca_certs =
        ctls::parse_certificates(ca_pem.as_bytes()).map_err(|message| TlsError::Bad {
            path: files.ca.clone(),
            message,
            hint: "delete it: genconf makes it again from ca.key".into(),
        })?;

    // 2. The server certificate: reused while it is good for `host` until RENEW_BEFORE.
    let renew_at = UnixTime::since_unix_epoch(
        (now + RENEW_BEFORE)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    let current_ok = match (read_optional(&files.cert)?, read_optional(&files.key)?) {
        (Some(cert), Some(key)) => {
            match (
                ctls::parse_certificates(cert.as_bytes()),
                ctls::parse_private_key(key.as_bytes()),
            ) {
                (Ok(chain), Ok(k)) => {
                    ctls::key_matches(&chain, &k).is_ok()
                        && ctls::verify_server_chain(&chain, &ca_certs, host, renew_at).is_ok()
                }
                _ => false,
            }
        }
        _ => false,
    };
    if !current_ok {
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().map_err(|e| gen_err(e.to_string()))?;
        let mut p = CertificateParams::new(vec![host.to_owned()])
            .map_err(|e| gen_err(format!("`{host}` is not usable in a certificate: {e}")))?;
        p.distinguished_name = dn(host);
        p.not_before = (now - Duration::from_secs(3600)).into();
        p.not_after = (now + SERVER_VALIDITY).into();
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        let cert = p
            .signed_by(&key, &issuer)
            .map_err(|e| gen_err(e.to_string()))?;
        // The key first: a crash in between leaves a mismatch, which the next run renews.
        write_atomic(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
        write_atomic(&files.cert, cert.pem().as_bytes(), 0o644)?;
        issued = true;
    }
    Ok(ClusterTls {
        ca_fingerprint: ctls::fingerprint(&ca_certs[0]),
        server_pin: server_pin(&files.cert)?,
        ca_pem,
        files,
        issued,
    })
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, common_name);
    dn
}

fn ca_params(now: SystemTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(CA_COMMON_NAME);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = (now - Duration::from_secs(3600)).into();
    p.not_after = (now + CA_VALIDITY).into();
    p
}

/// Does the CA certificate `pem` carry `key`'s public key?
fn ca_matches_key(pem: &str, key: &KeyPair) -> bool {
    let Ok(certs) = ctls::parse_certificates(pem.as_bytes()) else {
        return false;
    };
    let Ok(der) = PrivateKeyDer::try_from(key.serialize_der()) else {
        return false;
    };
    ctls::key_matches(&certs[..1], &der).is_ok()
}

fn read_optional(path: &Path) -> Result<Option<String>, TlsError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("cannot read", path)(e)),
    }
}

/// Create `path` (which must not exist) with mode 0600 from the first byte; published with
/// one link so a reader never sees a partial key ([`tarmac_fsx::write_new`]).
fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    tarmac_fsx::write_new(path, bytes, 0o600).map_err(io_err("cannot create", path))
}

/// Replace `path` atomically with `mode` from the first byte ([`tarmac_fsx::write_atomic`]).
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    tarmac_fsx::write_atomic(path, bytes, mode).map_err(io_err("cannot write", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn now() -> SystemTime {
        SystemTime::now()
    }

    fn at(t: SystemTime) -> UnixTime {
        UnixTime::since_unix_epoch(t.duration_since(SystemTime::UNIX_EPOCH).unwrap())
    }

    fn check(g: &Path, host: &str, t: SystemTime) -> Result<(), ctls::CertProblem> {
        let d = g.join("tls");
        let chain = ctls::parse_certificates(&fs::read(d.join("server.pem")).unwrap()).unwrap();
        let ca = ctls::parse_certificates(&fs::read(d.join("ca.pem")).unwrap()).unwrap();
        ctls::verify_server_chain(&chain, &ca, host, at(t))
    }

    #[test]
    fn makes_a_ca_and_a_server_certificate_once() {
        let tmp = tempfile::tempdir().unwrap();
        let g = tmp.path();
        let a = ensure_generated(g, "10.0.0.254", now()).unwrap();
        assert!(a.issued);
        assert!(a.ca_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(a.ca_fingerprint.starts_with("sha256:"));
        let mode = |n: &str| fs::metadata(g.join("tls").join(n)).unwrap().mode() & 0o7777;
        assert_eq!(mode(""), 0o700);
        assert_eq!(mode("ca.key"), 0o600);
        assert_eq!(mode("server.key"), 0o600);
        assert_eq!(mode("ca.pem"), 0o644);
        assert_eq!(mode("server.pem"), 0o644);
        check(g, "10.0.0.254", now()).unwrap();
        let server = fs::read(g.join("tls/server.pem")).unwrap();
        // Reused as it is.
        let b = ensure_generated(g, "10.0.0.254", now()).unwrap();
        assert!(!b.issued);
        assert_eq!(b.ca_pem, a.ca_pem);
        assert_eq!(fs::read(g.join("tls/server.pem")).unwrap(), server);
        // No temporary files left.
        let mut names: Vec<String> = fs::read_dir(g.join("tls"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["ca.key", "ca.pem", "server.key", "server.pem"]);
    }

    #[test]
    fn a_new_host_gets_a_new_certificate_from_the_same_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let g = tmp.path();
        let a = ensure_generated(g, "10.0.0.254", now()).unwrap();
        let b = ensure_generated(g, "boot.example", now()).unwrap();
        assert!(b.issued);
        assert_eq!(a.ca_pem, b.ca_pem);
        check(g, "boot.example", now()).unwrap();
        assert_eq!(
            check(g, "10.0.0.254", now()),
            Err(ctls::CertProblem::WrongHost {
                host: "10.0.0.254".into(),
                presented: "DNS:boot.example".into()
            })
        );
        // IPv6 hosts too.
        ensure_generated(g, "fd00::1", now()).unwrap();
        check(g, "fd00::1", now()).unwrap();
    }

    #[test]
    fn renews_before_expiry_and_after_losing_the_ca_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        let g = tmp.path();
        let a = ensure_generated(g, "10.0.0.254", now()).unwrap();
        let later = now() + SERVER_VALIDITY - Duration::from_secs(86_400);
        let b = ensure_generated(g, "10.0.0.254", later).unwrap();
        assert!(b.issued);
        assert_eq!(a.ca_pem, b.ca_pem);
        check(g, "10.0.0.254", later + Duration::from_secs(300 * 86_400)).unwrap();
        // ca.pem deleted: made again from ca.key, and a certificate it signs is accepted by
        // hosts that pinned the old ca.pem.
        let old_ca = ctls::parse_certificates(a.ca_pem.as_bytes()).unwrap();
        fs::remove_file(g.join("tls/ca.pem")).unwrap();
        fs::remove_file(g.join("tls/server.pem")).unwrap();
        let c = ensure_generated(g, "10.0.0.254", now()).unwrap();
        assert!(c.issued);
        let chain = ctls::parse_certificates(&fs::read(g.join("tls/server.pem")).unwrap()).unwrap();
        ctls::verify_server_chain(&chain, &old_ca, "10.0.0.254", at(now())).unwrap();
    }

    #[test]
    fn a_broken_ca_key_is_explained() {
        let tmp = tempfile::tempdir().unwrap();
        let g = tmp.path();
        fs::create_dir(g.join("tls")).unwrap();
        fs::write(g.join("tls/ca.key"), "garbage").unwrap();
        let e = tarmac_types::error_report::text_with_hint(
            &ensure_generated(g, "10.0.0.254", now()).unwrap_err(),
        );
        assert!(
            e.starts_with(&format!(
                "{}: not a usable private key: ",
                g.join("tls/ca.key").display()
            )),
            "{e}"
        );
        assert!(e.ends_with("\nhint: restore genconf/tls/ from a backup, or delete genconf/tls/ to make a new cluster CA (then run `tarmac genconf` and reinstall or upgrade every host, which pinned the old one)"), "{e}");
    }

    #[test]
    fn pem_encoding_wraps_at_64() {
        let s = pem_encode("CERTIFICATE", &[0u8; 60]);
        assert_eq!(
            s,
            "-----BEGIN CERTIFICATE-----\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\nAAAAAAAAAAAAAAAA\n-----END CERTIFICATE-----\n"
        );
    }
}
