//! `tarmac genconf`: a validated configuration + a build's output → `genconf/serve/`, the
//! directory hosts install from.
//!
//! ```text
//! genconf/serve/
//!   install.sh                                 bash installer (pins every download by sha256)
//!   bootstrap.latest                           bootstrap id
//!   cluster-package-list.latest                cluster package list id
//!   cluster-package-info.json                  {name: {id, filename, sha256, size}}
//!   bootstrap/<bid>.{bootstrap.tar.zst,active.json,tarmac-host,manifest.json[.sig]}
//!   packages/<name>/<id>.tar.zst               the build's packages (hard-linked or copied)
//!   packages/<cfg>/<cfg>--setup_<config_id>.tar.zst   config packages
//!   package_lists/<list_id>.package_list.json  [{"id", "sha256", "size"}, …] sorted by id
//! genconf/cluster_packages.json                same as cluster-package-info.json
//! genconf/user.config.full.yaml                0600: the config with secrets
//! genconf/expanded.config.full.json            0600: every resolved value with secrets
//! genconf/secrets/                             0700: secret files, never under serve/
//!   manifest.json                              every config package and its secret files
//!   <cfg id>/.key, <cfg id>/<path>             0600: the key of the package's digests, and
//!                                              the files (etc_master/prometheus/prometheus.yml)
//! ```
//!
//! A template declared `secret: true` in the schema's `files:` is not packed into its config
//! package: the package's pkginfo lists it (`files`, with its HMAC-SHA256 under the
//! package's key, mode, owner and group) and the installer uploads it over SSH to the hosts
//! of its scope, which refuse to activate the package without it. `secrets/` is swapped in
//! whole like `serve/`, just before it.
//!
//! Config package ids hash the resolved configuration (see [`tarmac_config::ResolvedConfig::config_id`]);
//! the cluster package list id is the sha256 of the sorted package ids, one per line (the
//! same function as the bootstrap id). Nothing carries a timestamp: running genconf twice
//! gives identical bytes. `serve/` is built next to the old one and swapped in with one
//! `renameat2(RENAME_EXCHANGE)`, so a failed run leaves the previous `serve/` untouched.

pub mod distribution;
pub mod install_sh;
pub mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use tarmac_config::{Distribution, Report, ResolvedConfig};
use tarmac_events::{Event, Level, Sink};
use tarmac_pkg::PkgInfo;
use tarmac_pkg::manifest::{self, ArtifactKind, Manifest, ManifestError, PublicKey};
use tarmac_pkg::pack::{self, PackError, PackOptions};
use tarmac_pkg::pkginfo::FileSpec;
use tarmac_pkg::secrets::{self, PackageSecrets, SecretFile, SecretsManifest};
use tarmac_types::{Digest, PackageId, PackageName, Role};

pub use install_sh::{InstallScript, InstallScriptError, Pinned};

/// What to generate from.
#[derive(Debug, Clone)]
pub struct GenconfOptions {
    /// `genconf/` (config.yaml, ip-detect; serve/ is written here).
    pub genconf_dir: PathBuf,
    /// The output directory of `tarmac build` (bootstrap.latest, bootstrap/, packages/).
    pub build_dir: PathBuf,
    /// Trusted public key: the build manifest's signature is checked with it, and install.sh
    /// ships it so every host checks it again.
    pub public_key: Option<PathBuf>,
    /// zstd settings for config packages.
    pub pack: PackOptions,
}

/// What genconf produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GenconfReport {
    pub serve_dir: PathBuf,
    pub bootstrap_url: String,
    pub config_id: String,
    pub bootstrap_id: String,
    pub cluster_package_list_id: String,
    pub config_packages: Vec<PackageId>,
    /// Every package of the cluster (sorted).
    pub packages: Vec<PackageId>,
    /// True when the manifest signature was checked.
    pub signed: bool,
    /// sha256 of `serve/install.sh`: what an operator checks before running a downloaded copy.
    pub install_sh_sha256: String,
    /// `sha256:<hex>` of the trusted signing key (with `--public-key`).
    pub signing_key_fingerprint: Option<String>,
    /// For an https bootstrap_url: `sha256:<hex>` of the CA certificate the hosts pin.
    pub repository_ca_fingerprint: Option<String>,
    /// For an https bootstrap_url: curl's `--pinnedpubkey` for the artifact server's
    /// certificate (the self-install one-liner uses it before the host has the CA).
    pub server_key_pin: Option<String>,
    /// `genconf/secrets`: the secret files the installer delivers over SSH.
    pub secrets_dir: PathBuf,
    /// How many secret files the config packages have (all roles).
    pub secret_files: usize,
    pub duration_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GenconfError {
    #[error("{0}")]
    Invalid(Box<Report>),
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no build output at {dir}: {missing} is missing")]
    NoBuild { dir: PathBuf, missing: String },
    #[error("the build manifest {path} is not usable")]
    Manifest {
        path: PathBuf,
        #[source]
        source: ManifestError,
    },
    #[error(
        "the build at {dir} carries no distribution configuration ({manifest} lists no distribution artifact)"
    )]
    NoDistribution { dir: PathBuf, manifest: PathBuf },
    #[error("the distribution archive {path} is not usable")]
    DistributionArchive {
        path: PathBuf,
        #[source]
        source: distribution::ArchiveProblem,
    },
    #[error("the distribution in {path} does not load")]
    Distribution {
        path: PathBuf,
        #[source]
        source: tarmac_config::DistError,
    },
    #[error("the build output does not match its manifest")]
    Corrupt(#[source] ManifestError),
    #[error("the build has no tarmac-host binary (bootstrap/<id>.tarmac-host)")]
    NoHostBinary,
    #[error("the config package `{0}` has the name of a package of the build")]
    NameClash(String),
    #[error("rendering the config packages failed")]
    Render(#[from] tarmac_config::RenderError),
    #[error("packing a config package failed")]
    Pack(#[from] PackError),
    #[error("writing install.sh failed")]
    InstallScript(#[from] InstallScriptError),
    #[error("preparing TLS for the https bootstrap_url failed")]
    Tls(#[from] tls::TlsError),
    #[error("another `tarmac genconf` is running on {path}")]
    Locked { path: PathBuf },
}

impl tarmac_types::error_report::Hint for GenconfError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(match self {
            GenconfError::NoBuild { .. } => "run `tarmac build` first, or pass --build-dir <the build's output directory>".into(),
            GenconfError::NoDistribution { .. } => "rebuild it with this tarmac (`tarmac build` packs the tree's config/ into the build), or, as the distribution's author, pass --dist <DIR>".into(),
            GenconfError::NoHostBinary => "build the tarmac-host package (tarmac build --host-binary …)".into(),
            GenconfError::NameClash(name) => format!("rename the template directory dist/…/config/templates/{name}").into(),
            GenconfError::Locked { .. } => "wait for it to finish".into(),
            _ => return None,
        })
    }
}

/// The error types of this crate whose hints are data
/// ([`tarmac_types::error_report::Hint`]), for `ErrorReport::with_hints`.
pub const TYPED_HINTS: &[tarmac_types::error_report::AsHint] = {
    use tarmac_types::error_report::as_hint;
    &[
        as_hint::<GenconfError>,
        as_hint::<InstallScriptError>,
        as_hint::<tls::TlsError>,
    ]
};

pub(crate) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> GenconfError + 'a {
    move |source| GenconfError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Validate `genconf/config.yaml` and write `genconf/serve/`.
pub fn genconf(
    dist: &Distribution,
    opts: &GenconfOptions,
    sink: &Sink,
) -> Result<GenconfReport, GenconfError> {
    let started = Instant::now();
    let gdir = &opts.genconf_dir;
    let _lock = lock(gdir)?;

    let cfg =
        tarmac_config::load_genconf(gdir, dist).map_err(|r| GenconfError::Invalid(Box::new(r)))?;
    for w in cfg.warnings() {
        sink.emit(Event::Notice {
            level: Level::Warn,
            message: format!("{}: {}", w.key, w.message),
        });
    }
    let rendered = cfg.render()?;

    // The certificate for an https bootstrap_url (made once in genconf/tls/, or the
    // operator's), before anything is written to serve/.
    let cluster_tls = tls::prepare(&cfg, gdir)?;
    if let Some(t) = &cluster_tls
        && t.issued
    {
        sink.emit(Event::Notice {
            level: Level::Info,
            message: format!(
                "made the TLS certificate for {} in {} (cluster CA {})",
                t.files.host,
                t.files.cert.display(),
                t.ca_fingerprint
            ),
        });
    }

    // The build.
    let build = read_build(&opts.build_dir, opts.public_key.as_deref(), sink)?;
    let m = &build.manifest;

    // A fresh serve dir next to the old one, and a fresh secrets dir (0700 from the start).
    let tmp = tempfile::Builder::new()
        .prefix(".serve.")
        .tempdir_in(gdir)
        .map_err(io_err("cannot create a temporary directory in", gdir))?;
    let out = tmp.path();
    let secrets_tmp = tempfile::Builder::new()
        .prefix(".secrets.")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir_in(gdir)
        .map_err(io_err("cannot create a temporary directory in", gdir))?;
    let mut secrets_manifest = SecretsManifest {
        format: secrets::MANIFEST_FORMAT,
        packages: BTreeMap::new(),
    };

    // 1. The build's artifacts, hard-linked when possible.
    for a in &m.artifacts {
        link_or_copy(&opts.build_dir.join(&a.path), &out.join(&a.path))?;
    }
    let manifest_rel = format!("bootstrap/{}.manifest.json", m.bootstrap_id);
    link_or_copy(&build.manifest_path, &out.join(&manifest_rel))?;
    let sig_rel = format!("{manifest_rel}{}", manifest::SIGNATURE_SUFFIX);
    let has_sig = build.signature_path.is_file();
    if has_sig {
        link_or_copy(&build.signature_path, &out.join(&sig_rel))?;
    }

    // 2. Config packages.
    let build_names: BTreeSet<&str> = m.packages.iter().map(|p| p.name().as_str()).collect();
    let cid = cfg.config_id().hex();
    let mut list: BTreeMap<PackageId, (Digest, u64)> = BTreeMap::new();
    for p in &m.packages {
        let a = m.package(p).map_err(GenconfError::Corrupt)?;
        list.insert(p.clone(), (a.sha256, a.size));
    }
    let mut config_packages = Vec::new();
    for name in rendered.packages.keys() {
        if build_names.contains(name.as_str()) {
            return Err(GenconfError::NameClash(name.to_string()));
        }
        let id = PackageId::from_parts(name, &format!("setup_{cid}"))
            .map_err(|e| GenconfError::NameClash(e.to_string()))?;
        let key = cfg.secret_files_key(&id.to_string());
        let (sha, size) = pack_config_package(&rendered, name, &id, out, &opts.pack, &key)?;
        let files = write_secret_files(&rendered, name, &id, secrets_tmp.path(), &key)?;
        sink.emit(Event::Notice {
            level: Level::Info,
            message: if files.is_empty() {
                format!("config package {id} ({size} bytes)")
            } else {
                format!(
                    "config package {id} ({size} bytes; {} secret file(s) kept out of it, in {}, delivered over SSH)",
                    files.len(),
                    gdir.join("secrets").join(id.to_string()).display()
                )
            },
        });
        secrets_manifest
            .packages
            .insert(id.to_string(), PackageSecrets { files });
        list.insert(id.clone(), (sha, size));
        config_packages.push(id);
    }

    // 3. The cluster package list and its id.
    let ids: Vec<PackageId> = list.keys().cloned().collect();
    let list_id = manifest::bootstrap_id(&ids);
    let list_json = package_list_json(&list);
    write(
        out,
        &format!("package_lists/{list_id}.package_list.json"),
        list_json.as_bytes(),
        0o644,
    )?;
    let info = cluster_package_info(&list);
    write(out, "cluster-package-info.json", info.as_bytes(), 0o644)?;
    write(out, "bootstrap.latest", m.bootstrap_id.as_bytes(), 0o644)?;
    write(
        out,
        "cluster-package-list.latest",
        list_id.as_bytes(),
        0o644,
    )?;

    // 4. install.sh.
    let host = m
        .first(ArtifactKind::HostBinary)
        .ok_or(GenconfError::NoHostBinary)?;
    let pin = |path: &str, sha: Digest| Pinned {
        path: path.to_owned(),
        sha256: sha.hex(),
    };
    let script = InstallScript {
        cluster_name: cfg.cluster_name().to_owned(),
        config_id: cid.clone(),
        bootstrap_url: cfg.bootstrap_url().to_owned(),
        bootstrap_id: m.bootstrap_id.clone(),
        package_list_id: list_id.clone(),
        host_binary: pin(&host.path, host.sha256),
        manifest: pin(&manifest_rel, Digest::of(&build.manifest_bytes)),
        signature: if has_sig && build.key_pem.is_some() {
            let sig = fs::read(&build.signature_path)
                .map_err(io_err("cannot read", &build.signature_path))?;
            Some(pin(&sig_rel, Digest::of(&sig)))
        } else {
            None
        },
        signing_key: if has_sig { build.key_pem.clone() } else { None },
        signing_key_fingerprint: if has_sig {
            build.key_fingerprint.clone()
        } else {
            None
        },
        repository_ca: cluster_tls.as_ref().map(|t| t.ca_pem.clone()),
        repository_ca_fingerprint: cluster_tls.as_ref().map(|t| t.ca_fingerprint.clone()),
        repository_ca_source: cluster_tls.as_ref().map(|t| {
            if t.files.generated {
                format!(
                    "genconf/{}/{}",
                    tarmac_config::tls::TLS_DIR,
                    tarmac_config::tls::CA_CERT_FILE
                )
            } else {
                cfg.get_str(tarmac_config::tls::CA_KEY)
                    .unwrap_or_default()
                    .to_owned()
            }
        }),
        package_list_json: list_json.clone(),
        ip_detect: cfg.ip_detect_script().to_owned(),
        ports: Role::ALL
            .iter()
            .map(|r| (*r, cfg.preflight_ports(*r)))
            .collect(),
        setup_unit: tarmac_activate::systemd::setup_service_unit(Path::new(
            install_sh::HOST_BINARY_ON_HOST,
        )),
    };
    let text = install_sh::render(&script)?;
    write(out, "install.sh", text.as_bytes(), 0o755)?;
    let install_sh_sha256 = Digest::of(text.as_bytes()).hex();

    // 5. Copies outside serve/ (not served): the unmasked configuration, 0600.
    write_private(gdir, "cluster_packages.json", info.as_bytes(), 0o644)?;
    let full_yaml = cfg.user_config_yaml(false).unwrap_or_default();
    write_private(gdir, "user.config.full.yaml", full_yaml.as_bytes(), 0o600)?;
    write_private(
        gdir,
        "expanded.config.full.json",
        cfg.expanded_config_json(false).as_bytes(),
        0o600,
    )?;

    // 6. Swap them in: secrets first, so that an installer reading the new serve/ always
    // finds its secret files.
    write_new_private(
        &secrets_tmp.path().join(secrets::MANIFEST_FILE),
        secrets_manifest.to_json().as_bytes(),
    )?;
    let secrets_dir = gdir.join("secrets");
    swap_into_place(secrets_tmp, &secrets_dir)?;
    let serve = gdir.join("serve");
    swap_into_place(tmp, &serve)?;

    let report = GenconfReport {
        serve_dir: serve,
        bootstrap_url: cfg.bootstrap_url().to_owned(),
        config_id: cid,
        bootstrap_id: m.bootstrap_id.clone(),
        cluster_package_list_id: list_id,
        config_packages,
        packages: ids,
        signed: build.key_pem.is_some() && has_sig,
        install_sh_sha256,
        signing_key_fingerprint: script.signing_key_fingerprint.clone(),
        repository_ca_fingerprint: script.repository_ca_fingerprint.clone(),
        server_key_pin: cluster_tls.as_ref().map(|t| t.server_pin.clone()),
        secret_files: secrets_manifest
            .packages
            .values()
            .map(|p| p.files.len())
            .sum(),
        secrets_dir,
        duration_ms: tarmac_events::millis(started.elapsed()),
    };
    Ok(report)
}

/// The self-install one-liner genconf prints: download install.sh, check it against the
/// sha256 the operator got from genconf (an authenticated channel), then run it with the
/// expected signing-key fingerprint. Never `curl | bash`: whoever answers for bootstrap_url
/// would get root. For an https bootstrap_url the host does not have the cluster CA yet, so
/// curl pins the artifact server's public key instead (`server_key_pin`, `sha256//…`; curl's
/// `--insecure` only skips the CA lookup, the pin is still enforced); install.sh then trusts
/// only the CA it carries.
pub fn self_install_command(
    bootstrap_url: &str,
    install_sh_sha256: &str,
    fingerprint: Option<&str>,
    server_key_pin: Option<&str>,
    role: &str,
) -> String {
    let url = format!("{}/install.sh", bootstrap_url.trim_end_matches('/'));
    let expect = fingerprint
        .map(|f| format!(" --expect-key-fingerprint {f}"))
        .unwrap_or_default();
    let pin = server_key_pin
        .map(|p| {
            format!(
                " --proto =https --insecure --pinnedpubkey {}",
                tarmac_types::shell::quote(p)
            )
        })
        .unwrap_or_default();
    format!(
        "curl -fsSL{pin} -o tarmac-install.sh {url} && echo '{install_sh_sha256}  tarmac-install.sh' | sha256sum -c - && sudo bash tarmac-install.sh{expect} {role}",
        url = tarmac_types::shell::quote(&url),
    )
}

/// Validate only (what `tarmac validate-config` does), for callers holding a distribution.
pub fn validate(dist: &Distribution, genconf_dir: &Path) -> Result<ResolvedConfig, Report> {
    tarmac_config::load_genconf(genconf_dir, dist)
}

pub(crate) struct Build {
    manifest: Manifest,
    manifest_path: PathBuf,
    manifest_bytes: Vec<u8>,
    signature_path: PathBuf,
    key_pem: Option<String>,
    key_fingerprint: Option<String>,
}

fn read_build(dir: &Path, public_key: Option<&Path>, sink: &Sink) -> Result<Build, GenconfError> {
    let build = read_manifest(dir, public_key, sink)?;
    build
        .manifest
        .check_all(dir)
        .map_err(GenconfError::Corrupt)?;
    Ok(build)
}

/// The build's manifest (its signature checked with `public_key` when given), without
/// hashing its artifacts.
pub(crate) fn read_manifest(
    dir: &Path,
    public_key: Option<&Path>,
    sink: &Sink,
) -> Result<Build, GenconfError> {
    let latest = dir.join("bootstrap.latest");
    let bid = match fs::read_to_string(&latest) {
        Ok(s) => s.trim().to_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(GenconfError::NoBuild {
                dir: dir.to_owned(),
                missing: "bootstrap.latest".into(),
            });
        }
        Err(e) => return Err(io_err("cannot read", &latest)(e)),
    };
    let manifest_path = dir.join(format!("bootstrap/{bid}.manifest.json"));
    let manifest_bytes = match fs::read(&manifest_path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(GenconfError::NoBuild {
                dir: dir.to_owned(),
                missing: format!("bootstrap/{bid}.manifest.json"),
            });
        }
        Err(e) => return Err(io_err("cannot read", &manifest_path)(e)),
    };
    let signature_path = manifest::signature_path(&manifest_path);
    let mf_err = |source| GenconfError::Manifest {
        path: manifest_path.clone(),
        source,
    };
    let (manifest, key_pem, key_fingerprint) = match public_key {
        Some(k) => {
            let key = PublicKey::read(k).map_err(mf_err)?;
            let m = manifest::verify_file(&manifest_path, &key).map_err(mf_err)?;
            (m, Some(key.to_pem()), Some(key.fingerprint()))
        }
        None => {
            if signature_path.is_file() {
                sink.emit(Event::Notice {
                    level: Level::Warn,
                    message: format!(
                        "{} is signed but no --public-key was given: neither genconf nor the hosts will check the signature",
                        manifest_path.display()
                    ),
                });
            }
            (
                Manifest::parse_unverified(&manifest_bytes).map_err(mf_err)?,
                None,
                None,
            )
        }
    };
    if manifest.bootstrap_id != bid {
        return Err(mf_err(ManifestError::BootstrapIdMismatch {
            listed: manifest.bootstrap_id.clone(),
            computed: bid,
        }));
    }
    Ok(Build {
        manifest,
        manifest_path,
        manifest_bytes,
        signature_path,
        key_pem,
        key_fingerprint,
    })
}

fn lock(gdir: &Path) -> Result<fs::File, GenconfError> {
    fs::create_dir_all(gdir).map_err(io_err("cannot create", gdir))?;
    let path = gdir.join(".genconf.lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err("cannot open", &path))?;
    match tarmac_fsx::lock_exclusive(&f, false) {
        Ok(true) => Ok(f),
        Ok(false) => Err(GenconfError::Locked { path }),
        Err(e) => Err(io_err("cannot lock", &path)(e)),
    }
}

/// Hard-link `src` to `dest` when `src` is world-readable (serve/ is served by whatever web
/// server the operator runs), else copy it and make the copy 0644.
fn link_or_copy(src: &Path, dest: &Path) -> Result<(), GenconfError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(p) = dest.parent() {
        fs::create_dir_all(p).map_err(io_err("cannot create", p))?;
    }
    let meta = fs::metadata(src).map_err(io_err("cannot stat", src))?;
    if meta.permissions().mode() & 0o004 != 0 && fs::hard_link(src, dest).is_ok() {
        return Ok(());
    }
    fs::copy(src, dest).map_err(io_err("cannot copy", src))?;
    let mode = if meta.permissions().mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    };
    fs::set_permissions(dest, fs::Permissions::from_mode(mode))
        .map_err(io_err("cannot chmod", dest))?;
    Ok(())
}

fn write(root: &Path, rel: &str, bytes: &[u8], mode: u32) -> Result<(), GenconfError> {
    let path = root.join(rel);
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).map_err(io_err("cannot create", p))?;
    }
    pack::write_file_atomic(&path, bytes, mode)?;
    Ok(())
}

/// A file of `genconf/` outside `serve/` (the `*.full.*` copies hold secrets): written
/// atomically with `mode` from its first byte. Unchanged content is not rewritten, but its
/// mode is still set (a copy left wider by an older version is narrowed).
fn write_private(gdir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<(), GenconfError> {
    let path = gdir.join(name);
    if fs::read(&path).ok().as_deref() == Some(bytes) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(io_err("cannot chmod", &path))?;
        return Ok(());
    }
    tarmac_fsx::write_atomic(&path, bytes, mode).map_err(io_err("cannot write", &path))
}

/// The pkginfo of a config package: `files` lists the owner, group and mode of every file
/// the schema gives them, and every secret file with its digest under `key`.
pub fn config_pkginfo(
    rendered: &tarmac_config::Rendered,
    name: &PackageName,
    key: &[u8; 32],
) -> PkgInfo {
    let mut files = BTreeMap::new();
    for (path, f) in rendered.package_layout(name) {
        if f.owner.is_some() || f.group.is_some() {
            files.insert(
                path,
                FileSpec {
                    owner: f.owner.clone(),
                    group: f.group.clone(),
                    mode: Some(f.mode),
                    ..FileSpec::default()
                },
            );
        }
    }
    for (path, f) in rendered.secret_layout(name) {
        files.insert(
            path,
            FileSpec {
                owner: f.owner.clone(),
                group: f.group.clone(),
                mode: Some(f.mode),
                secret: true,
                hmac_sha256: Some(secrets::digest(key, &f.bytes)),
            },
        );
    }
    PkgInfo {
        files,
        ..PkgInfo::default()
    }
}

/// Lay out one config package in a staging dir and pack it deterministically. Secret files
/// are not in it (only listed in its pkginfo).
fn pack_config_package(
    rendered: &tarmac_config::Rendered,
    name: &PackageName,
    id: &PackageId,
    out: &Path,
    opts: &PackOptions,
    key: &[u8; 32],
) -> Result<(Digest, u64), GenconfError> {
    let stage = tempfile::Builder::new()
        .prefix(".stage.")
        .tempdir_in(out)
        .map_err(io_err("cannot create a staging directory in", out))?;
    let root = stage.path();
    let mut pkginfo = serde_json::to_vec_pretty(&config_pkginfo(rendered, name, key))
        .expect("pkginfo serializes");
    pkginfo.push(b'\n');
    write(root, tarmac_pkg::layout::PKGINFO, &pkginfo, 0o644)?;
    for (path, f) in rendered.package_layout(name) {
        write(root, &path, &f.bytes, f.mode)?;
    }
    pack::write_file_list(root)?;
    let dest = out.join(manifest::package_path(id));
    if let Some(p) = dest.parent() {
        fs::create_dir_all(p).map_err(io_err("cannot create", p))?;
    }
    let packed = pack::pack_dir(root, &dest, opts)?;
    Ok((packed.sha256, packed.size))
}

/// Write the secret files of config package `id` (and its key, when it has any) below
/// `dir/<id>/`: directories 0700, files 0600 from their first byte. Returns their manifest
/// entries.
fn write_secret_files(
    rendered: &tarmac_config::Rendered,
    name: &PackageName,
    id: &PackageId,
    dir: &Path,
    key: &[u8; 32],
) -> Result<Vec<SecretFile>, GenconfError> {
    let mut out = Vec::new();
    let base = dir.join(id.to_string());
    for (path, f) in rendered.secret_layout(name) {
        let dest = base.join(&path);
        write_new_private(&dest, &f.bytes)?;
        out.push(SecretFile {
            role: tarmac_pkg::pkginfo::tree_path(&path).and_then(|(_, r)| r),
            path,
            sha256: Digest::of(&f.bytes),
            hmac_sha256: secrets::digest(key, &f.bytes),
            size: f.bytes.len() as u64,
            mode: format!("{:04o}", f.mode),
            owner: f.owner.clone(),
            group: f.group.clone(),
        });
    }
    if !out.is_empty() {
        write_new_private(
            &base.join(secrets::KEY_FILE),
            secrets::key_text(key).as_bytes(),
        )?;
    }
    Ok(out)
}

/// Create `path` (which must not exist) with mode 0600 before its first byte, its missing
/// parents 0700, and fsync it.
fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), GenconfError> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(p) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(p)
            .map_err(io_err("cannot create", p))?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err("cannot create", path))?;
    f.write_all(bytes).map_err(io_err("cannot write", path))?;
    f.sync_all().map_err(io_err("cannot fsync", path))
}

fn package_list_json(list: &BTreeMap<PackageId, (Digest, u64)>) -> String {
    let entries: Vec<serde_json::Value> = list
        .iter()
        .map(|(id, (sha, size))| {
            serde_json::json!({"id": id.to_string(), "sha256": sha.hex(), "size": size})
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&entries).expect("list serializes");
    s.push('\n');
    s
}

fn cluster_package_info(list: &BTreeMap<PackageId, (Digest, u64)>) -> String {
    let mut info = serde_json::Map::new();
    for (id, (sha, size)) in list {
        info.insert(
            id.name().to_string(),
            serde_json::json!({
                "filename": manifest::package_path(id),
                "id": id.to_string(),
                "sha256": sha.hex(),
                "size": size,
            }),
        );
    }
    let mut s =
        serde_json::to_string_pretty(&serde_json::Value::Object(info)).expect("info serializes");
    s.push('\n');
    s
}

/// Put the finished `tmp` at `serve`: one atomic exchange when `serve` exists, then the old
/// tree is deleted. On any failure before the exchange, `serve` is untouched.
fn swap_into_place(tmp: tempfile::TempDir, serve: &Path) -> Result<(), GenconfError> {
    let tmp_path = tmp.keep();
    let parent = serve.parent().unwrap_or(Path::new("."));
    let result = if serve.exists() {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &tmp_path,
            rustix::fs::CWD,
            serve,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| io_err("cannot swap in", serve)(e.into()))
    } else {
        fs::rename(&tmp_path, serve).map_err(io_err("cannot rename into place", serve))
    };
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp_path);
        return Err(e);
    }
    pack::fsync_dir(parent)?;
    // tmp_path now holds the previous serve/ (or nothing).
    let _ = fs::remove_dir_all(&tmp_path);
    Ok(())
}

#[doc(hidden)]
pub mod testkit;

#[cfg(test)]
mod tests {
    #[test]
    fn self_install_one_liners() {
        let sha = "ab".repeat(32);
        assert_eq!(
            super::self_install_command(
                "http://10.0.0.254:8080",
                &sha,
                Some("sha256:ff"),
                None,
                "agent"
            ),
            format!(
                "curl -fsSL -o tarmac-install.sh http://10.0.0.254:8080/install.sh && echo '{sha}  tarmac-install.sh' | sha256sum -c - && sudo bash tarmac-install.sh --expect-key-fingerprint sha256:ff agent"
            )
        );
        assert_eq!(
            super::self_install_command(
                "https://10.0.0.254:8443/",
                &sha,
                None,
                Some("sha256//AbC+/="),
                "master"
            ),
            format!(
                "curl -fsSL --proto =https --insecure --pinnedpubkey sha256//AbC+/= -o tarmac-install.sh https://10.0.0.254:8443/install.sh && echo '{sha}  tarmac-install.sh' | sha256sum -c - && sudo bash tarmac-install.sh master"
            )
        );
    }
}
