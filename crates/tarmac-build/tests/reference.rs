//! Build the reference distribution (`dist/reference`) from scratch twice — from two
//! different tree locations, with different parallelism — and require identical ids and
//! byte-identical outputs; every ELF file of every package (but `tarmac-host`, shipped as it
//! is) static or loading only its package's bundled loader and libraries; then a warm
//! rebuild that builds nothing, and a signed one that verifies.
//!
//! Needs bubblewrap and `apt-get download` for the pinned Debian packages. The `.deb`
//! downloads are cached in `$TARMAC_TEST_CACHE` (default: `target/tmp/tarmac-build-cache`),
//! so only the first run downloads (~37 MB). The `tarmac-host` package is built from
//! `$TARMAC_HOST_BIN`, else `$TARMAC_PORTABLE_BIN_DIR/tarmac-host` (scripts/test.sh's portable
//! build), else `target/{debug,release}/tarmac-host`, else — so the test runs
//! without it — this test binary stands in for it (same code path: the package's `local`
//! source with its `env` override).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tarmac_build::bundle::{self, BUNDLE_DIR};
use tarmac_build::{BuildOptions, build};
use tarmac_events::{BuildPhase, Event, VecSink};
use tarmac_pkg::manifest::{self, ArtifactKind};
use tarmac_types::Digest;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn host_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TARMAC_HOST_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    // The portable build (glibc >= 2.17) that scripts/test.sh makes and names.
    if let Some(dir) = std::env::var_os("TARMAC_PORTABLE_BIN_DIR").filter(|d| !d.is_empty()) {
        let p = PathBuf::from(dir).join("tarmac-host");
        assert!(
            p.is_file(),
            "TARMAC_PORTABLE_BIN_DIR is set but {} is missing\nhint: run scripts/build-portable.sh",
            p.display()
        );
        return p;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    for profile in ["debug", "release"] {
        let p = target.join(profile).join("tarmac-host");
        if p.is_file() {
            return p;
        }
    }
    std::env::current_exe().unwrap()
}

fn cache() -> PathBuf {
    std::env::var_os("TARMAC_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tarmac-build-cache"))
}

fn copy_dir(src: &Path, dest: &Path) {
    fs::create_dir_all(dest).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dest.join(e.file_name());
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            if e.file_name() != "out" {
                copy_dir(&e.path(), &to);
            }
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(e.path()).unwrap(), &to).unwrap();
        } else {
            fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// path -> sha256 of every output file (logs and scratch excluded).
fn outputs(out: &Path) -> BTreeMap<String, Digest> {
    fn walk(root: &Path, dir: &Path, acc: &mut BTreeMap<String, Digest>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == "logs" || rel == ".work" || rel == ".lock" {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), acc);
            } else {
                acc.insert(rel, Digest::of_file(&e.path()).unwrap());
            }
        }
    }
    let mut acc = BTreeMap::new();
    walk(out, out, &mut acc);
    acc
}

fn options(tree: &Path, out: &Path, jobs: usize, host: &Path) -> BuildOptions {
    let mut o = BuildOptions::new(tree, cache());
    o.out = out.to_owned();
    o.jobs = jobs;
    o.vars.insert(
        "TARMAC_HOST_BIN".into(),
        host.to_string_lossy().into_owned(),
    );
    o
}

/// Every ELF file of the package archive `archive` (id `id`) is static or loads only the
/// package's bundled loader and libraries; returns the dynamic ones.
fn check_self_contained(archive: &Path, id: &str) -> Vec<String> {
    let x = tempfile::tempdir().unwrap();
    let f = fs::File::open(archive).unwrap();
    tar::Archive::new(zstd::stream::read::Decoder::new(f).unwrap())
        .unpack(x.path())
        .unwrap();
    let mut dynamic = Vec::new();
    for (rel, info) in bundle::scan(x.path()).unwrap() {
        if rel.starts_with(&format!("{BUNDLE_DIR}/")) || info.is_static() {
            continue;
        }
        let interp = info.interpreter.clone().unwrap_or_default();
        let loader = interp.rsplit('/').next().unwrap();
        assert_eq!(
            interp,
            format!("/opt/tarmac/packages/{id}/{BUNDLE_DIR}/{loader}"),
            "{id}: {rel}"
        );
        assert!(
            info.runpath.is_empty() && info.rpath.iter().any(|r| r.ends_with(BUNDLE_DIR)),
            "{id}: {rel}: {info:?}"
        );
        assert!(
            x.path().join(BUNDLE_DIR).join(loader).is_file(),
            "{id}: {rel}"
        );
        for lib in &info.needed {
            assert!(
                x.path().join(BUNDLE_DIR).join(lib).is_file(),
                "{id}: {rel} needs {lib}, which is not bundled"
            );
        }
        dynamic.push(rel);
    }
    dynamic
}

#[test]
fn reference_distribution_builds_reproducibly() {
    let d = tempfile::tempdir().unwrap();
    let tree_a = d.path().join("a/reference");
    let tree_b = d.path().join("somewhere/else/reference");
    copy_dir(&workspace().join("dist/reference"), &tree_a);
    copy_dir(&workspace().join("dist/reference"), &tree_b);
    // A private copy: other builds may replace target/*/tarmac-host while this test runs.
    let host = d.path().join("tarmac-host");
    fs::copy(host_binary(), &host).unwrap();
    let sink: tarmac_events::Sink = Arc::new(tarmac_events::NullSink);

    let out_a = d.path().join("out-a");
    let out_b = d.path().join("out-b");
    let events = VecSink::new();
    let ra = build(
        &options(&tree_a, &out_a, 2, &host),
        Arc::new(events.clone()),
    )
    .unwrap();
    let rb = build(&options(&tree_b, &out_b, 1, &host), sink.clone()).unwrap();

    let ids = |r: &tarmac_build::BuildReport| {
        r.packages
            .iter()
            .map(|p| p.id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&ra), ids(&rb));
    let names: Vec<&str> = ra.packages.iter().map(|p| p.id.name().as_str()).collect();
    for want in [
        "etcd",
        "node-exporter",
        "prometheus",
        "tarmac-checks",
        "tarmac-host",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let (ba, bb) = (
        ra.bootstrap.as_ref().unwrap(),
        rb.bootstrap.as_ref().unwrap(),
    );
    assert_eq!(ba.id, bb.id);
    let (oa, ob) = (outputs(&out_a), outputs(&out_b));
    assert_eq!(oa, ob, "two builds from scratch differ");
    assert!(oa.len() >= 5 + 4, "{oa:#?}");

    // Self-contained: Debian's Go binaries are dynamically linked against its glibc, so
    // each of those packages bundles the C library and the loader.
    let mut bundled: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in events.events() {
        if let Event::PackageBuild {
            name,
            phase: BuildPhase::Bundled { libraries, .. },
        } = e
        {
            bundled.insert(name, libraries);
        }
    }
    let mut dynamic: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &ra.packages {
        let name = p.id.name().to_string();
        if name != "tarmac-host" {
            dynamic.insert(name, check_self_contained(&p.path, &p.id.to_string()));
        }
    }
    let want = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        dynamic,
        BTreeMap::from([
            (
                "etcd".into(),
                want(&["bin_master/etcd", "bin_master/etcdctl"])
            ),
            ("node-exporter".into(), want(&["bin/node_exporter"])),
            (
                "prometheus".into(),
                want(&["bin_master/prometheus", "bin_master/promtool"])
            ),
            ("tarmac-checks".into(), vec![]),
        ])
    );
    for name in ["etcd", "node-exporter", "prometheus"] {
        let libs = bundled
            .get(name)
            .unwrap_or_else(|| panic!("{name}: no Bundled event"));
        for lib in ["libc.so.6", "ld-linux-x86-64.so.2"] {
            assert!(libs.contains(&lib.to_owned()), "{name}: {libs:?}");
        }
    }
    assert!(!bundled.contains_key("tarmac-host"), "{bundled:?}");

    // Warm: nothing rebuilt, same bootstrap.
    let rw = build(&options(&tree_a, &out_a, 2, &host), sink.clone()).unwrap();
    assert!(rw.packages.iter().all(|p| !p.built));
    assert!(!rw.bootstrap.as_ref().unwrap().created);
    assert_eq!(outputs(&out_a), oa);

    // Signed: the manifest verifies and covers every artifact.
    let key = d.path().join("sign.key");
    let public = manifest::keygen(&key, &d.path().join("sign.pub"), false).unwrap();
    let mut o = options(&tree_a, &out_a, 2, &host);
    o.sign_key = Some(key);
    let b = build(&o, sink).unwrap().bootstrap.unwrap();
    let m = manifest::verify_file(&b.manifest, &public).unwrap();
    m.check_all(&out_a).unwrap();
    assert_eq!(m.bootstrap_id, ba.id);
    assert_eq!(m.packages.len(), 5);
    for kind in [
        ArtifactKind::Bootstrap,
        ArtifactKind::ActiveList,
        ArtifactKind::HostBinary,
        ArtifactKind::Distribution,
    ] {
        assert!(m.first(kind).is_some(), "{kind:?}");
    }
    let exported = m.first(ArtifactKind::HostBinary).unwrap();
    assert_eq!(exported.sha256, Digest::of_file(&host).unwrap());
}
