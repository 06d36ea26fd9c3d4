//! genconf end to end on a fake (but real-format) build output: layout, determinism,
//! atomicity, ids.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tarmac_config::Distribution;
use tarmac_events::{NullSink, Sink};
use tarmac_genconf::{GenconfError, GenconfOptions, genconf, testkit};
use tarmac_pkg::pack::PackOptions;

const CONFIG: &str = "\
cluster_name: lab
master_list: [10.0.0.1, 10.0.0.2, 10.0.0.3]
agent_list: [10.0.1.1, 10.0.1.2]
bootstrap_url: http://10.0.0.254:8080
";
const IP_DETECT: &str = "#!/bin/sh\necho 10.0.0.1\n";

fn dist() -> Distribution {
    Distribution::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/reference/config"))
        .unwrap()
}

struct Fixture {
    tmp: tempfile::TempDir,
    public_key: Option<PathBuf>,
}

impl Fixture {
    fn new(sign: bool) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let g = tmp.path().join("genconf");
        std::fs::create_dir(&g).unwrap();
        std::fs::write(g.join("config.yaml"), CONFIG).unwrap();
        std::fs::write(g.join("ip-detect"), IP_DETECT).unwrap();
        let build = tmp.path().join("out");
        std::fs::create_dir(&build).unwrap();
        let public_key = testkit::fake_build(&build, sign);
        Fixture { tmp, public_key }
    }

    fn opts(&self) -> GenconfOptions {
        GenconfOptions {
            genconf_dir: self.tmp.path().join("genconf"),
            build_dir: self.tmp.path().join("out"),
            public_key: self.public_key.clone(),
            pack: PackOptions {
                level: 3,
                workers: 1,
            },
        }
    }

    fn run(&self) -> Result<tarmac_genconf::GenconfReport, GenconfError> {
        let sink: Sink = Arc::new(NullSink);
        genconf(&dist(), &self.opts(), &sink)
    }

    fn serve(&self) -> PathBuf {
        self.tmp.path().join("genconf/serve")
    }
}

/// Every file below `dir` with its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn serve_layout() {
    let f = Fixture::new(true);
    let r = f.run().unwrap();
    assert!(r.signed);
    let files: Vec<String> = tree(&f.serve())
        .into_keys()
        .map(|p| {
            p.replace(&r.bootstrap_id, "<bid>")
                .replace(&r.config_id, "<cid>")
                .replace(&r.cluster_package_list_id, "<lid>")
        })
        .collect();
    assert_eq!(
        files,
        [
            "bootstrap.latest",
            "bootstrap/<bid>.active.json",
            "bootstrap/<bid>.bootstrap.tar.zst",
            "bootstrap/<bid>.distribution.tar.zst",
            "bootstrap/<bid>.manifest.json",
            "bootstrap/<bid>.manifest.json.sig",
            "bootstrap/<bid>.tarmac-host",
            "cluster-package-info.json",
            "cluster-package-list.latest",
            "install.sh",
            "package_lists/<lid>.package_list.json",
            "packages/etcd/etcd--3.5.17.tar.zst",
            "packages/node-exporter/node-exporter--1.8.2.tar.zst",
            "packages/prometheus/prometheus--2.54.1.tar.zst",
            "packages/tarmac-config/tarmac-config--setup_<cid>.tar.zst",
            "packages/tarmac-host/tarmac-host--0.1.0.tar.zst",
        ]
    );
    assert_eq!(r.config_packages.len(), 1);
    assert_eq!(
        r.config_packages[0].to_string(),
        format!("tarmac-config--setup_{}", r.config_id)
    );
    assert_eq!(r.packages.len(), 5);
    // The list id hashes the sorted ids; the list carries every sha256.
    let list: serde_json::Value = serde_json::from_slice(
        &std::fs::read(f.serve().join(format!(
            "package_lists/{}.package_list.json",
            r.cluster_package_list_id
        )))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 5);
    // Every entry pins its archive: sha256 and exact size, as tarmac-host reads them.
    let entries = tarmac_activate::setup::parse_package_list(
        &std::fs::read(f.serve().join(format!(
            "package_lists/{}.package_list.json",
            r.cluster_package_list_id
        )))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(entries.len(), 5);
    for e in &entries {
        let archive =
            std::fs::read(f.serve().join(tarmac_pkg::manifest::package_path(&e.id))).unwrap();
        let pin = e.pin.unwrap_or_else(|| panic!("{} has no pin", e.id));
        assert_eq!(pin.sha256, tarmac_types::Digest::of(&archive), "{}", e.id);
        assert_eq!(pin.size, archive.len() as u64, "{}", e.id);
    }
    assert_eq!(
        tarmac_pkg::manifest::bootstrap_id(&r.packages),
        r.cluster_package_list_id
    );
    // Private copies stay out of serve/ and are 0600.
    use std::os::unix::fs::PermissionsExt;
    let full = f.tmp.path().join("genconf/expanded.config.full.json");
    assert_eq!(
        std::fs::metadata(&full).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(f.serve().join("install.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    // The config package is a valid package with the role layout.
    let pkg = std::fs::read(f.serve().join(format!(
        "packages/tarmac-config/tarmac-config--setup_{}.tar.zst",
        r.config_id
    )))
    .unwrap();
    let tar = zstd_decode(&pkg);
    let mut names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    for want in [
        "pkginfo.json",
        "files.json",
        "bin/detect_ip",
        "etc_master/etcd/etcd.env",
        "etc/node-exporter/node-exporter.env",
    ] {
        assert!(
            names
                .iter()
                .any(|n| n.trim_start_matches("./").trim_end_matches('/') == want),
            "{want} not in {names:?}"
        );
    }
}

fn zstd_decode(b: &[u8]) -> Vec<u8> {
    zstd::stream::decode_all(b).unwrap()
}

#[test]
fn twice_gives_identical_bytes() {
    let f = Fixture::new(true);
    let a = f.run().unwrap();
    let first = tree(&f.serve());
    let b = f.run().unwrap();
    assert_eq!(a.config_id, b.config_id);
    assert_eq!(a.cluster_package_list_id, b.cluster_package_list_id);
    assert_eq!(first, tree(&f.serve()));
    // A second fixture (other temp dir, other signing key) gives the same config package.
    let g = Fixture::new(false);
    let c = g.run().unwrap();
    assert_eq!(c.config_id, a.config_id);
    let name = format!(
        "packages/tarmac-config/tarmac-config--setup_{}.tar.zst",
        a.config_id
    );
    assert_eq!(tree(&g.serve())[&name], first[&name]);
}

#[test]
fn editing_ip_detect_or_any_key_changes_ids() {
    let f = Fixture::new(false);
    let a = f.run().unwrap();
    std::fs::write(
        f.tmp.path().join("genconf/ip-detect"),
        "#!/bin/sh\necho 10.9.9.9\n",
    )
    .unwrap();
    let b = f.run().unwrap();
    assert_ne!(a.config_id, b.config_id);
    assert_ne!(a.cluster_package_list_id, b.cluster_package_list_id);
    std::fs::write(
        f.tmp.path().join("genconf/config.yaml"),
        format!("{CONFIG}ssh_parallelism: 10\n"),
    )
    .unwrap();
    let c = f.run().unwrap();
    assert_ne!(c.config_id, b.config_id);
    // The old config package is gone from serve/ (serve/ is regenerated whole).
    assert!(
        !f.serve()
            .join(format!(
                "packages/tarmac-config/tarmac-config--setup_{}.tar.zst",
                a.config_id
            ))
            .exists()
    );
}

#[test]
fn a_failed_genconf_leaves_serve_intact() {
    let f = Fixture::new(false);
    f.run().unwrap();
    let before = tree(&f.serve());
    // Invalid configuration.
    std::fs::write(
        f.tmp.path().join("genconf/config.yaml"),
        "master_list: [10.0.0.1, 10.0.0.2]\nbootstrap_url: http://x\n",
    )
    .unwrap();
    match f.run() {
        Err(GenconfError::Invalid(r)) => {
            assert_eq!(
                r.to_json_map()["master_list"],
                "Must have 1, 3, 5, 7, or 9 masters. Found 2"
            );
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert_eq!(tree(&f.serve()), before);
    // A corrupt build artifact.
    std::fs::write(f.tmp.path().join("genconf/config.yaml"), CONFIG).unwrap();
    let pkg = f.tmp.path().join("out/packages/etcd/etcd--3.5.17.tar.zst");
    std::fs::remove_file(&pkg).unwrap(); // break the hard link, then write other bytes
    std::fs::write(&pkg, b"not a package").unwrap();
    assert!(matches!(f.run(), Err(GenconfError::Corrupt(_))));
    assert_eq!(tree(&f.serve()), before);
    // No temporary directories are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(f.tmp.path().join("genconf"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".serve"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn missing_build_and_wrong_key() {
    let f = Fixture::new(true);
    let mut o = f.opts();
    o.build_dir = f.tmp.path().join("nope");
    let sink: Sink = Arc::new(NullSink);
    let e = genconf(&dist(), &o, &sink).unwrap_err();
    assert!(e.to_string().starts_with("no build output at"), "{e}");
    // A different trusted key: the signature check fails.
    let other = tempfile::tempdir().unwrap();
    let key = testkit::fake_build(other.path(), true).unwrap();
    let mut o = f.opts();
    o.public_key = Some(key);
    assert!(matches!(
        genconf(&dist(), &o, &sink),
        Err(GenconfError::Manifest { .. })
    ));
}

/// Every file below `dir`, with package archives (`.tar.zst`) decompressed, as one byte
/// string per path.
fn served_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    tree(dir)
        .into_iter()
        .map(|(p, b)| {
            let b = if p.ends_with(".tar.zst") {
                zstd_decode(&b)
            } else {
                b
            };
            (p, b)
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn secret_files_stay_out_of_serve_and_the_config_package() {
    const PASSWORD: &str = "hunter2SECRET";
    let f = Fixture::new(true);
    std::fs::write(
        f.tmp.path().join("genconf/config.yaml"),
        format!(
            "{CONFIG}prometheus_remote_write_url: https://m.example.com/w\nprometheus_remote_write_username: bob\nprometheus_remote_write_password: {PASSWORD}\n"
        ),
    )
    .unwrap();
    let r = f.run().unwrap();
    assert_eq!(r.secret_files, 1);
    let id = r.config_packages[0].to_string();
    let secrets = f.tmp.path().join("genconf/secrets");
    assert_eq!(r.secrets_dir, secrets);
    let file = secrets
        .join(&id)
        .join("etc_master/prometheus/prometheus.yml");
    let bytes = std::fs::read(&file).unwrap();
    assert!(contains(&bytes, PASSWORD.as_bytes()));
    let sha = tarmac_types::Digest::of(&bytes).hex();

    // Nothing served holds the password, nor the plain sha256 of the file holding it (a
    // reader could test guesses against it).
    for (path, b) in served_bytes(&f.serve()) {
        assert!(
            !contains(&b, PASSWORD.as_bytes()),
            "{path} holds the secret"
        );
        assert!(!contains(&b, sha.as_bytes()), "{path} holds its sha256");
    }
    // The config package does not contain the file; its pkginfo lists it, keyed.
    let pkg = zstd_decode(
        &std::fs::read(
            f.serve()
                .join(format!("packages/tarmac-config/{id}.tar.zst")),
        )
        .unwrap(),
    );
    let mut pkginfo = None;
    for e in tar::Archive::new(&pkg[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().display().to_string();
        assert!(!p.contains("prometheus.yml"), "{p} is in the archive");
        if p.trim_start_matches("./") == "pkginfo.json" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            pkginfo = Some(s);
        }
    }
    let info = tarmac_pkg::PkgInfo::parse(pkginfo.unwrap().as_bytes(), &id).unwrap();
    let spec = &info.files["etc_master/prometheus/prometheus.yml"];
    assert!(spec.secret);
    assert_eq!(spec.mode, Some(0o640));
    assert_eq!(spec.group.as_deref(), Some("tarmac_prometheus"));
    let key = tarmac_pkg::secrets::parse_key(
        &std::fs::read_to_string(secrets.join(&id).join(".key")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        spec.hmac_sha256,
        Some(tarmac_pkg::secrets::digest(&key, &bytes))
    );

    // The secrets dir: 0700 directories, 0600 files, and a manifest naming the role.
    for p in [
        secrets.clone(),
        secrets.join(&id),
        file.parent().unwrap().to_owned(),
    ] {
        assert_eq!(mode_of(&p), 0o700, "{}", p.display());
    }
    for p in [
        file.clone(),
        secrets.join(&id).join(".key"),
        secrets.join("manifest.json"),
    ] {
        assert_eq!(mode_of(&p), 0o600, "{}", p.display());
    }
    let m = tarmac_pkg::secrets::SecretsManifest::parse(
        &std::fs::read(secrets.join("manifest.json")).unwrap(),
    )
    .unwrap();
    let files = &m.packages[&id].files;
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].path, "etc_master/prometheus/prometheus.yml");
    assert_eq!(files[0].role, Some(tarmac_types::Role::Master));
    assert_eq!(files[0].sha256.hex(), sha);
    assert_eq!(files[0].mode, "0640");

    // A new password: a new config package id, and the old secrets are gone with the old
    // serve/.
    std::fs::write(
        f.tmp.path().join("genconf/config.yaml"),
        format!(
            "{CONFIG}prometheus_remote_write_url: https://m.example.com/w\nprometheus_remote_write_username: bob\nprometheus_remote_write_password: other\n"
        ),
    )
    .unwrap();
    let r2 = f.run().unwrap();
    assert_ne!(r2.config_id, r.config_id);
    assert!(!secrets.join(&id).exists());
    assert!(secrets.join(r2.config_packages[0].to_string()).is_dir());
    let leftovers: Vec<_> = std::fs::read_dir(f.tmp.path().join("genconf"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".secrets") || n.starts_with(".serve"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
