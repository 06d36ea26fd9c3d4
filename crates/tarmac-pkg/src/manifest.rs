//! The artifact manifest of a build and its ed25519 detached signature.
//!
//! `tarmac build` writes `bootstrap/<bootstrap_id>.manifest.json` listing every artifact
//! of the output directory (bootstrap archive, active list, the `tarmac-host` binary,
//! every package) with size and sha256, and — with `--sign-key` — a detached signature
//! `<manifest>.sig`. A host given the public key calls [`verify`] on the manifest bytes
//! and signature, then [`Artifact::check_file`] (or [`Artifact::check_bytes`] while
//! streaming) on each artifact before exposing anything.
//!
//! Keys are standard PEM: PKCS#8 for the secret key (mode 0600), SPKI for the public key,
//! so `openssl pkey -pubin -in tarmac-signing.pub -text` can read them. The signature file
//! is a small JSON document naming the key id (first 16 hex characters of the sha256 of
//! the raw 32-byte public key) and the base64 signature over the exact manifest bytes.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer as _, Verifier as _};
use serde::{Deserialize, Serialize};
use tarmac_types::{Digest, PackageId, Sha256Writer};

use crate::hostreq::HostRequirements;
use crate::pack::{PackError, write_file_atomic};

/// Version of the manifest format.
pub const MANIFEST_FORMAT: u32 = 1;

/// Suffix of the detached signature next to a manifest.
pub const SIGNATURE_SUFFIX: &str = ".sig";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{action} `{path}`")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Write(#[from] PackError),
    #[error("manifest is not valid JSON of format {MANIFEST_FORMAT}")]
    BadManifest(#[source] serde_json::Error),
    #[error("manifest has format {found}; this tarmac understands format {MANIFEST_FORMAT}")]
    UnsupportedFormat { found: u32 },
    #[error("manifest `{path}` is not signed (no `{sig}`)")]
    Unsigned { path: PathBuf, sig: PathBuf },
    #[error("signature file is malformed: {reason}")]
    BadSignatureFile { reason: String },
    #[error("manifest is signed by key {signed_by}, but the trusted public key is {trusted}")]
    WrongKey { signed_by: String, trusted: String },
    #[error(
        "manifest signature is invalid for key {key_id}: the manifest was modified after it was signed"
    )]
    BadSignature { key_id: String },
    #[error("`{text}` is not a signing-key fingerprint")]
    BadFingerprint { text: String },
    #[error(
        "the signing key is {got}, not the expected {expected}: refusing artifacts signed by another key"
    )]
    UntrustedKey { expected: String, got: String },
    #[error("`{path}` is not a valid ed25519 {what} key in PEM form: {reason}")]
    BadKey {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("manifest lists bootstrap id {listed}, but its bootstrap packages hash to {computed}")]
    BootstrapIdMismatch { listed: String, computed: String },
    #[error("artifact `{path}` is not in the manifest")]
    NotListed { path: String },
    #[error(
        "artifact `{path}`: expected {expected_size} bytes with sha256 {expected}, got {actual_size} bytes with sha256 {actual}"
    )]
    Mismatch {
        path: String,
        expected: Digest,
        actual: Digest,
        expected_size: u64,
        actual_size: u64,
    },
    #[error("refusing to overwrite `{path}`")]
    KeyExists { path: PathBuf },
}

impl tarmac_types::error_report::Hint for ManifestError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        Some(match self {
            ManifestError::UnsupportedFormat { .. } => {
                Cow::Borrowed("use a tarmac-host at least as new as the tarmac that built it")
            }
            ManifestError::Unsigned { .. } => Cow::Borrowed(
                "build with `tarmac build --sign-key <secret key>`, or install without a trusted public key",
            ),
            ManifestError::WrongKey { .. } => Cow::Borrowed(
                "pass the public key that matches the signing key (`tarmac keygen` printed its id)",
            ),
            ManifestError::BadFingerprint { .. } => Cow::Borrowed(
                "use the `sha256:<64 hex digits>` form that `tarmac keygen` and `tarmac genconf` print",
            ),
            ManifestError::UntrustedKey { .. } => Cow::Borrowed(
                "check the fingerprint you were given against `tarmac genconf`'s output; if the build key really changed, update the expected fingerprint",
            ),
            ManifestError::Mismatch { .. } => {
                Cow::Borrowed("the file is corrupt or was tampered with; fetch it again")
            }
            ManifestError::KeyExists { .. } => {
                Cow::Borrowed("pass --force to replace the existing key")
            }
            ManifestError::Write(e) => return e.hint(),
            _ => return None,
        })
    }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ManifestError + use<> {
    let path = path.to_owned();
    move |source| ManifestError::Io {
        action,
        path,
        source,
    }
}

/// What an artifact is, so an installer can find the files it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactKind {
    /// `bootstrap/<id>.bootstrap.tar.zst`
    Bootstrap,
    /// `bootstrap/<id>.active.json`
    ActiveList,
    /// `bootstrap/<id>.tarmac-host`: the raw host binary, uploaded first to every host.
    HostBinary,
    /// `packages/<name>/<id>.tar.zst`
    Package,
    /// `bootstrap/<id>.distribution.tar.zst`: the distribution's configuration (schema,
    /// templates, parameter docs) that genconf, validate-config and the web installer read.
    Distribution,
}

/// One file of the output directory, relative to its root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub path: String,
    pub kind: ArtifactKind,
    pub size: u64,
    pub sha256: Digest,
}

impl Artifact {
    /// Hash a file and describe it as an artifact at `rel_path`.
    pub fn of_file(
        root: &Path,
        rel_path: &str,
        kind: ArtifactKind,
    ) -> Result<Artifact, ManifestError> {
        let full = root.join(rel_path);
        let f = fs::File::open(&full).map_err(io_err("cannot open", &full))?;
        let (sha256, size) = hash_reader(f).map_err(io_err("cannot read", &full))?;
        Ok(Artifact {
            path: rel_path.to_owned(),
            kind,
            size,
            sha256,
        })
    }

    /// Check that `file` has this artifact's size and digest.
    pub fn check_file(&self, file: &Path) -> Result<(), ManifestError> {
        let f = fs::File::open(file).map_err(io_err("cannot open", file))?;
        let (sha256, size) = hash_reader(f).map_err(io_err("cannot read", file))?;
        self.check(sha256, size)
    }

    /// Check an already-computed digest and size (e.g. after a streaming download).
    pub fn check(&self, sha256: Digest, size: u64) -> Result<(), ManifestError> {
        if sha256 != self.sha256 || size != self.size {
            return Err(ManifestError::Mismatch {
                path: self.path.clone(),
                expected: self.sha256,
                actual: sha256,
                expected_size: self.size,
                actual_size: size,
            });
        }
        Ok(())
    }

    /// Check in-memory bytes.
    pub fn check_bytes(&self, bytes: &[u8]) -> Result<(), ManifestError> {
        self.check(Digest::of(bytes), bytes.len() as u64)
    }
}

fn hash_reader(mut r: impl Read) -> io::Result<(Digest, u64)> {
    let mut w = Sha256Writer::new(io::sink());
    io::copy(&mut r, &mut w)?;
    let (d, n, _) = w.finish();
    Ok((d, n))
}

/// The signed list of everything a build produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// [`bootstrap_id`] of `bootstrap_packages`.
    pub bootstrap_id: String,
    /// Packages inside the bootstrap archive (sorted).
    pub bootstrap_packages: Vec<PackageId>,
    /// Every package of the tree (sorted), the cluster's package list.
    pub packages: Vec<PackageId>,
    /// Every artifact (sorted by path).
    pub artifacts: Vec<Artifact>,
    /// What the build needs of a host (checked by preflight through `tarmac-host check-host`).
    #[serde(default, skip_serializing_if = "HostRequirements::is_empty")]
    pub host_requirements: HostRequirements,
}

impl Manifest {
    /// Canonical bytes (pretty JSON, trailing newline) — the bytes that get signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serializes");
        v.push(b'\n');
        v
    }

    /// Parse without any signature check (for tools that only display it).
    pub fn parse_unverified(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        #[derive(Deserialize)]
        struct Head {
            format: u32,
        }
        let head: Head = serde_json::from_slice(bytes).map_err(ManifestError::BadManifest)?;
        if head.format != MANIFEST_FORMAT {
            return Err(ManifestError::UnsupportedFormat { found: head.format });
        }
        let m: Manifest = serde_json::from_slice(bytes).map_err(ManifestError::BadManifest)?;
        let computed = bootstrap_id(&m.bootstrap_packages);
        if computed != m.bootstrap_id {
            return Err(ManifestError::BootstrapIdMismatch {
                listed: m.bootstrap_id,
                computed,
            });
        }
        Ok(m)
    }

    pub fn artifact(&self, path: &str) -> Result<&Artifact, ManifestError> {
        self.artifacts
            .iter()
            .find(|a| a.path == path)
            .ok_or_else(|| ManifestError::NotListed {
                path: path.to_owned(),
            })
    }

    /// The first artifact of a kind (bootstrap, active list, host binary).
    pub fn first(&self, kind: ArtifactKind) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.kind == kind)
    }

    /// The artifact of a package id (`packages/<name>/<id>.tar.zst`).
    pub fn package(&self, id: &PackageId) -> Result<&Artifact, ManifestError> {
        self.artifact(&package_path(id))
    }

    /// Check every artifact below `root` (a build output directory or a mirror of it).
    pub fn check_all(&self, root: &Path) -> Result<(), ManifestError> {
        for a in &self.artifacts {
            a.check_file(&root.join(&a.path))?;
        }
        Ok(())
    }
}

/// Where a package lives in an output directory / repository.
pub fn package_path(id: &PackageId) -> String {
    format!("packages/{}/{id}.tar.zst", id.name())
}

/// The bootstrap id: sha256 (hex) over the sorted package ids, one per line.
pub fn bootstrap_id(ids: &[PackageId]) -> String {
    let mut ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    ids.sort();
    ids.dedup();
    let mut text = String::new();
    for id in ids {
        text.push_str(&id);
        text.push('\n');
    }
    Digest::of(text.as_bytes()).hex()
}

/// An ed25519 secret key.
pub struct SecretKey(ed25519_dalek::SigningKey);

/// An ed25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.public().key_id())
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl SecretKey {
    pub fn generate() -> SecretKey {
        SecretKey(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub fn to_pem(&self) -> String {
        self.0
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .expect("ed25519 key encodes")
            .to_string()
    }

    pub fn from_pem(pem: &str, path: &Path) -> Result<SecretKey, ManifestError> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map(SecretKey)
            .map_err(|e| ManifestError::BadKey {
                path: path.to_owned(),
                what: "secret",
                reason: e.to_string(),
            })
    }

    pub fn read(path: &Path) -> Result<SecretKey, ManifestError> {
        let pem = fs::read_to_string(path).map_err(io_err("cannot read secret key", path))?;
        SecretKey::from_pem(&pem, path)
    }

    /// Sign `manifest_bytes`; returns the bytes of the detached signature file.
    pub fn sign(&self, manifest_bytes: &[u8]) -> Vec<u8> {
        let sig = self.0.sign(manifest_bytes);
        let file = SignatureFile {
            algorithm: "ed25519".into(),
            key_id: self.public().key_id(),
            signature: base64::engine::general_purpose::STANDARD.encode(sig.to_bytes()),
        };
        let mut v = serde_json::to_vec_pretty(&file).expect("signature serializes");
        v.push(b'\n');
        v
    }
}

impl PublicKey {
    /// First 16 hex characters of the sha256 of the raw public key.
    pub fn key_id(&self) -> String {
        Digest::of(self.0.as_bytes()).hex()[..16].to_owned()
    }

    /// `sha256:<64 hex>` of the raw public key: what operators compare out of band
    /// (`install.sh --expect-key-fingerprint`, `setup-flags/signing-key.fingerprint`).
    pub fn fingerprint(&self) -> String {
        format!("sha256:{}", Digest::of(self.0.as_bytes()).hex())
    }

    pub fn to_pem(&self) -> String {
        self.0
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .expect("ed25519 key encodes")
    }

    pub fn from_pem(pem: &str, path: &Path) -> Result<PublicKey, ManifestError> {
        ed25519_dalek::VerifyingKey::from_public_key_pem(pem)
            .map(PublicKey)
            .map_err(|e| ManifestError::BadKey {
                path: path.to_owned(),
                what: "public",
                reason: e.to_string(),
            })
    }

    pub fn read(path: &Path) -> Result<PublicKey, ManifestError> {
        let pem = fs::read_to_string(path).map_err(io_err("cannot read public key", path))?;
        PublicKey::from_pem(&pem, path)
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    algorithm: String,
    key_id: String,
    signature: String,
}

/// Write a new key pair: `secret` (PKCS#8 PEM, mode 0600) and `public` (SPKI PEM, 0644).
/// Refuses to overwrite either file unless `force`.
pub fn keygen(secret: &Path, public: &Path, force: bool) -> Result<PublicKey, ManifestError> {
    if !force {
        for p in [secret, public] {
            if p.exists() {
                return Err(ManifestError::KeyExists { path: p.to_owned() });
            }
        }
    }
    let key = SecretKey::generate();
    write_file_atomic(secret, key.to_pem().as_bytes(), 0o600)?;
    write_file_atomic(public, key.public().to_pem().as_bytes(), 0o644)?;
    Ok(key.public())
}

/// Verify a detached signature over the exact manifest bytes with the trusted key, then
/// parse the manifest. Tampering, a different key or a malformed file are errors.
pub fn verify(
    manifest_bytes: &[u8],
    sig_bytes: &[u8],
    key: &PublicKey,
) -> Result<Manifest, ManifestError> {
    verify_detached(manifest_bytes, sig_bytes, key)?;
    Manifest::parse_unverified(manifest_bytes)
}

/// The key id a detached signature file (from [`SecretKey::sign`]) names, unverified.
pub fn signature_key_id(sig_bytes: &[u8]) -> Result<String, ManifestError> {
    let sig: SignatureFile =
        serde_json::from_slice(sig_bytes).map_err(|e| ManifestError::BadSignatureFile {
            reason: e.to_string(),
        })?;
    Ok(sig.key_id)
}

/// Verify a detached signature file (from [`SecretKey::sign`]) over `bytes` with `key`.
pub fn verify_detached(
    bytes: &[u8],
    sig_bytes: &[u8],
    key: &PublicKey,
) -> Result<(), ManifestError> {
    let sig: SignatureFile =
        serde_json::from_slice(sig_bytes).map_err(|e| ManifestError::BadSignatureFile {
            reason: e.to_string(),
        })?;
    if sig.algorithm != "ed25519" {
        return Err(ManifestError::BadSignatureFile {
            reason: format!(
                "unsupported algorithm `{}` (expected ed25519)",
                sig.algorithm
            ),
        });
    }
    let trusted = key.key_id();
    if sig.key_id != trusted {
        return Err(ManifestError::WrongKey {
            signed_by: sig.key_id,
            trusted,
        });
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(sig.signature.trim())
        .map_err(|e| ManifestError::BadSignatureFile {
            reason: format!("signature: {e}"),
        })?;
    let raw: [u8; 64] = raw
        .try_into()
        .map_err(|v: Vec<u8>| ManifestError::BadSignatureFile {
            reason: format!("signature is {} bytes, expected 64", v.len()),
        })?;
    let signature = ed25519_dalek::Signature::from_bytes(&raw);
    key.0
        .verify(bytes, &signature)
        .map_err(|_| ManifestError::BadSignature { key_id: trusted })
}

/// Read `manifest` and `<manifest>.sig` and [`verify`] them. A missing signature file is
/// [`ManifestError::Unsigned`].
pub fn verify_file(manifest: &Path, key: &PublicKey) -> Result<Manifest, ManifestError> {
    let bytes = fs::read(manifest).map_err(io_err("cannot read manifest", manifest))?;
    let sig_path = signature_path(manifest);
    let sig = match fs::read(&sig_path) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ManifestError::Unsigned {
                path: manifest.to_owned(),
                sig: sig_path,
            });
        }
        Err(e) => return Err(io_err("cannot read signature", &sig_path)(e)),
    };
    verify(&bytes, &sig, key)
}

/// `<manifest>.sig`
/// Normalise an operator-supplied key fingerprint to `sha256:<64 lower-case hex>`.
pub fn parse_fingerprint(text: &str) -> Result<String, ManifestError> {
    let t = text.trim().to_ascii_lowercase();
    let hex = t.strip_prefix("sha256:").unwrap_or(&t);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(format!("sha256:{hex}"))
    } else {
        Err(ManifestError::BadFingerprint {
            text: text.trim().to_owned(),
        })
    }
}

/// Check that `key` is the key the operator expects (`expected` from
/// [`parse_fingerprint`]).
pub fn check_fingerprint(key: &PublicKey, expected: &str) -> Result<(), ManifestError> {
    let got = key.fingerprint();
    if got == expected {
        Ok(())
    } else {
        Err(ManifestError::UntrustedKey {
            expected: expected.to_owned(),
            got,
        })
    }
}

pub fn signature_path(manifest: &Path) -> PathBuf {
    let mut s = manifest.as_os_str().to_owned();
    s.push(SIGNATURE_SUFFIX);
    PathBuf::from(s)
}

/// Format of `bootstrap.json`.
pub const BOOTSTRAP_FORMAT: u32 = 1;

/// The first member of a bootstrap archive: what the archive holds.
pub const BOOTSTRAP_INDEX: &str = "bootstrap.json";

/// `bootstrap.json` inside `<bootstrap_id>.bootstrap.tar.zst`.
///
/// The archive is a deterministic tar (zstd) of `bootstrap.json` followed by
/// `packages/<id>.tar.zst` for every package, sorted by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapIndex {
    pub format: u32,
    pub bootstrap_id: String,
    pub packages: Vec<BootstrapMember>,
}

/// One package inside a bootstrap archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapMember {
    pub id: PackageId,
    /// `packages/<id>.tar.zst` inside the archive.
    pub path: String,
    pub size: u64,
    pub sha256: Digest,
}

/// Problems specific to reading a bootstrap archive.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("cannot read the bootstrap archive")]
    Read(#[source] io::Error),
    #[error("the bootstrap archive does not start with {BOOTSTRAP_INDEX} (found `{found}`)")]
    NoIndex { found: String },
    #[error("{BOOTSTRAP_INDEX} is invalid")]
    BadIndex(#[source] serde_json::Error),
    #[error("{BOOTSTRAP_INDEX} has format {found}; this tarmac reads format {BOOTSTRAP_FORMAT}")]
    Format { found: u32 },
    #[error("{BOOTSTRAP_INDEX} names bootstrap {listed}, but its packages hash to {computed}")]
    IdMismatch { listed: String, computed: String },
    #[error("bootstrap id {found} is not the expected {expected}")]
    NotExpected { expected: String, found: String },
    #[error("`{path}` in the bootstrap archive is not listed in {BOOTSTRAP_INDEX}")]
    Unlisted { path: String },
    #[error(
        "bootstrap member `{path}`: expected {expected_size} bytes with sha256 {expected}, got {actual_size} bytes with sha256 {actual}"
    )]
    Mismatch {
        path: String,
        expected: Digest,
        actual: Digest,
        expected_size: u64,
        actual_size: u64,
    },
    #[error("bootstrap member `{path}` is listed but missing from the archive")]
    Missing { path: String },
    #[error("bootstrap member `{path}`")]
    Visit {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl tarmac_types::error_report::Hint for BootstrapError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        Some(match self {
            BootstrapError::Mismatch { .. } => {
                Cow::Borrowed("the bootstrap archive is corrupt or was tampered with")
            }
            _ => return None,
        })
    }
}

/// Stream a (decompressed or `.tar.zst`) bootstrap archive: read and check
/// `bootstrap.json` (its id must equal `expected_id` when given, e.g. from the verified
/// manifest), then call `visit` with each member and a reader of its bytes. Each member's
/// size and sha256 are checked as it streams; a mismatch is an error *after* `visit`
/// returns, so `visit` must not expose what it wrote until this function returns `Ok`
/// (extract into a temporary location, then commit). Members `visit` does not read fully
/// are drained and checked all the same.
pub fn read_bootstrap<R, F, E>(
    archive: R,
    expected_id: Option<&str>,
    mut visit: F,
) -> Result<BootstrapIndex, BootstrapError>
where
    R: Read,
    F: FnMut(&BootstrapMember, &mut dyn Read) -> Result<(), E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let dec = zstd::stream::read::Decoder::new(archive).map_err(BootstrapError::Read)?;
    let mut ar = tar::Archive::new(dec);
    let mut entries = ar.entries().map_err(BootstrapError::Read)?;
    let mut first = match entries.next() {
        Some(e) => e.map_err(BootstrapError::Read)?,
        None => {
            return Err(BootstrapError::NoIndex {
                found: "(empty archive)".into(),
            });
        }
    };
    let first_path = first
        .path()
        .map_err(BootstrapError::Read)?
        .to_string_lossy()
        .into_owned();
    if first_path != BOOTSTRAP_INDEX {
        return Err(BootstrapError::NoIndex { found: first_path });
    }
    let mut buf = Vec::new();
    first.read_to_end(&mut buf).map_err(BootstrapError::Read)?;
    let index: BootstrapIndex = serde_json::from_slice(&buf).map_err(BootstrapError::BadIndex)?;
    if index.format != BOOTSTRAP_FORMAT {
        return Err(BootstrapError::Format {
            found: index.format,
        });
    }
    let ids: Vec<PackageId> = index.packages.iter().map(|m| m.id.clone()).collect();
    let computed = bootstrap_id(&ids);
    if computed != index.bootstrap_id {
        return Err(BootstrapError::IdMismatch {
            listed: index.bootstrap_id,
            computed,
        });
    }
    if let Some(expected) = expected_id
        && expected != index.bootstrap_id
    {
        return Err(BootstrapError::NotExpected {
            expected: expected.to_owned(),
            found: index.bootstrap_id,
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for e in entries {
        let mut e = e.map_err(BootstrapError::Read)?;
        let path = e
            .path()
            .map_err(BootstrapError::Read)?
            .to_string_lossy()
            .into_owned();
        if e.header().entry_type().is_dir() {
            continue;
        }
        let member = index
            .packages
            .iter()
            .find(|m| m.path == path)
            .ok_or_else(|| BootstrapError::Unlisted { path: path.clone() })?;
        let mut hashing = HashingReader {
            inner: &mut e,
            hasher: Sha256Writer::new(io::sink()),
        };
        visit(member, &mut hashing).map_err(|err| BootstrapError::Visit {
            path: path.clone(),
            source: err.into(),
        })?;
        io::copy(&mut hashing, &mut io::sink()).map_err(BootstrapError::Read)?;
        let (actual, actual_size, _) = hashing.hasher.finish();
        if actual != member.sha256 || actual_size != member.size {
            return Err(BootstrapError::Mismatch {
                path,
                expected: member.sha256,
                actual,
                expected_size: member.size,
                actual_size,
            });
        }
        seen.insert(path);
    }
    if let Some(m) = index.packages.iter().find(|m| !seen.contains(&m.path)) {
        return Err(BootstrapError::Missing {
            path: m.path.clone(),
        });
    }
    Ok(index)
}

struct HashingReader<'a, R> {
    inner: &'a mut R,
    hasher: Sha256Writer<io::Sink>,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        io::Write::write_all(&mut self.hasher, &buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> PackageId {
        s.parse().unwrap()
    }

    fn sample(dir: &Path) -> Manifest {
        fs::create_dir_all(dir.join("packages/a")).unwrap();
        fs::write(dir.join("packages/a/a--1.tar.zst"), b"package a").unwrap();
        let ids = vec![id("a--1")];
        Manifest {
            format: MANIFEST_FORMAT,
            bootstrap_id: bootstrap_id(&ids),
            bootstrap_packages: ids.clone(),
            packages: ids,
            artifacts: vec![
                Artifact::of_file(dir, "packages/a/a--1.tar.zst", ArtifactKind::Package).unwrap(),
            ],
            host_requirements: HostRequirements::default(),
        }
    }

    #[test]
    fn bootstrap_id_is_order_independent() {
        let a = bootstrap_id(&[id("b--2"), id("a--1")]);
        assert_eq!(a, bootstrap_id(&[id("a--1"), id("b--2")]));
        assert_eq!(a, Digest::of(b"a--1\nb--2\n").hex());
        assert_ne!(a, bootstrap_id(&[id("a--1"), id("b--3")]));
    }

    #[test]
    fn sign_and_verify_roundtrip() {
        let d = tempfile::tempdir().unwrap();
        let m = sample(d.path());
        let key = SecretKey::generate();
        let bytes = m.to_bytes();
        let sig = key.sign(&bytes);
        let back = verify(&bytes, &sig, &key.public()).unwrap();
        assert_eq!(back, m);
        back.check_all(d.path()).unwrap();
        back.package(&id("a--1")).unwrap();
    }

    #[test]
    fn tampered_manifest_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let key = SecretKey::generate();
        let bytes = sample(d.path()).to_bytes();
        let sig = key.sign(&bytes);
        let mut bad = bytes.clone();
        let pos = bad.iter().position(|&b| b == b'9').unwrap(); // the size "9"
        bad[pos] = b'8';
        let err = verify(&bad, &sig, &key.public()).unwrap_err();
        assert!(matches!(err, ManifestError::BadSignature { .. }), "{err}");
        assert!(err.to_string().contains("modified after it was signed"));
    }

    #[test]
    fn wrong_key_is_refused_with_both_ids() {
        let d = tempfile::tempdir().unwrap();
        let bytes = sample(d.path()).to_bytes();
        let signer = SecretKey::generate();
        let other = SecretKey::generate();
        let sig = signer.sign(&bytes);
        let err = verify(&bytes, &sig, &other.public()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&signer.public().key_id()) && text.contains(&other.public().key_id())
        );
        // a forged key id with the other key's signature still fails cryptographically
        let mut forged: serde_json::Value = serde_json::from_slice(&sig).unwrap();
        forged["key_id"] = other.public().key_id().into();
        let err = verify(
            &bytes,
            &serde_json::to_vec(&forged).unwrap(),
            &other.public(),
        )
        .unwrap_err();
        assert!(matches!(err, ManifestError::BadSignature { .. }));
        assert!(matches!(
            verify(&bytes, b"garbage", &other.public()),
            Err(ManifestError::BadSignatureFile { .. })
        ));
    }

    #[test]
    fn wrong_artifact_hash_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let m = sample(d.path());
        fs::write(d.path().join("packages/a/a--1.tar.zst"), b"package b").unwrap();
        let err = m.check_all(d.path()).unwrap_err();
        assert!(matches!(err, ManifestError::Mismatch { .. }));
        let text = err.to_string();
        assert!(text.contains(&m.artifacts[0].sha256.hex()), "{text}");
        assert!(text.contains(&Digest::of(b"package b").hex()), "{text}");
    }

    #[test]
    fn unsigned_manifest_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("x.manifest.json");
        fs::write(&path, sample(d.path()).to_bytes()).unwrap();
        let err = verify_file(&path, &SecretKey::generate().public()).unwrap_err();
        assert!(matches!(err, ManifestError::Unsigned { .. }));
        assert!(
            tarmac_types::error_report::text_with_hint(&err)
                .contains("hint: build with `tarmac build --sign-key")
        );
    }

    #[test]
    fn bootstrap_id_must_match_packages() {
        let d = tempfile::tempdir().unwrap();
        let mut m = sample(d.path());
        m.bootstrap_id = bootstrap_id(&[id("z--9")]);
        let key = SecretKey::generate();
        let bytes = m.to_bytes();
        let err = verify(&bytes, &key.sign(&bytes), &key.public()).unwrap_err();
        assert!(matches!(err, ManifestError::BootstrapIdMismatch { .. }));
    }

    fn bootstrap_archive(dir: &Path, members: &[(&str, &[u8])], tamper: bool) -> Vec<u8> {
        let stage = dir.join("stage");
        fs::create_dir_all(stage.join("packages")).unwrap();
        let mut index = BootstrapIndex {
            format: BOOTSTRAP_FORMAT,
            bootstrap_id: String::new(),
            packages: vec![],
        };
        for (id, bytes) in members {
            let path = format!("packages/{id}.tar.zst");
            fs::write(
                stage.join(&path),
                if tamper { b"x" as &[u8] } else { bytes },
            )
            .unwrap();
            index.packages.push(BootstrapMember {
                id: id.parse().unwrap(),
                path,
                size: bytes.len() as u64,
                sha256: Digest::of(bytes),
            });
        }
        let ids: Vec<PackageId> = index.packages.iter().map(|m| m.id.clone()).collect();
        index.bootstrap_id = bootstrap_id(&ids);
        fs::write(
            stage.join(BOOTSTRAP_INDEX),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
        let out = dir.join("b.tar.zst");
        crate::pack::pack_dir(
            &stage,
            &out,
            &crate::pack::PackOptions {
                level: 3,
                workers: 1,
            },
        )
        .unwrap();
        fs::read(out).unwrap()
    }

    #[test]
    fn bootstrap_members_are_streamed_and_checked() {
        let d = tempfile::tempdir().unwrap();
        let bytes = bootstrap_archive(d.path(), &[("a--1", b"aaa"), ("b--2", b"bbbb")], false);
        let mut got = Vec::new();
        let index = read_bootstrap(&bytes[..], None, |m, r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v)?;
            got.push((m.id.to_string(), v));
            Ok::<(), io::Error>(())
        })
        .unwrap();
        assert_eq!(
            got,
            vec![
                ("a--1".into(), b"aaa".to_vec()),
                ("b--2".into(), b"bbbb".to_vec())
            ]
        );
        let e =
            read_bootstrap(&bytes[..], Some("other"), |_, _| Ok::<(), io::Error>(())).unwrap_err();
        assert!(matches!(e, BootstrapError::NotExpected { .. }));
        read_bootstrap(&bytes[..], Some(&index.bootstrap_id), |_, _| {
            Ok::<(), io::Error>(())
        })
        .unwrap();

        let d2 = tempfile::tempdir().unwrap();
        let bad = bootstrap_archive(d2.path(), &[("a--1", b"aaa")], true);
        let e = read_bootstrap(&bad[..], None, |_, _| Ok::<(), io::Error>(())).unwrap_err();
        assert!(matches!(e, BootstrapError::Mismatch { .. }), "{e}");
    }

    #[test]
    fn keygen_writes_pem_files_with_modes() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let (s, p) = (d.path().join("k.key"), d.path().join("k.pub"));
        let public = keygen(&s, &p, false).unwrap();
        assert_eq!(
            fs::metadata(&s).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            fs::read_to_string(&s)
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        assert!(
            fs::read_to_string(&p)
                .unwrap()
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
        assert_eq!(PublicKey::read(&p).unwrap(), public);
        assert_eq!(SecretKey::read(&s).unwrap().public(), public);
        assert!(matches!(
            keygen(&s, &p, false),
            Err(ManifestError::KeyExists { .. })
        ));
        keygen(&s, &p, true).unwrap();
        assert!(matches!(
            PublicKey::read(&s),
            Err(ManifestError::BadKey { .. })
        ));
    }
}
