//! Real sandboxed builds of small trees (needs bubblewrap; installed when missing).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use tarmac_build::{BuildError, BuildOptions, build};
use tarmac_events::{Sink, VecSink};
use tarmac_pkg::manifest::{self, ArtifactKind, ManifestError, SecretKey};
use tarmac_types::error_report::Hint;

fn sink() -> Sink {
    Arc::new(VecSink::new())
}

fn pkg(root: &Path, name: &str, buildinfo: &str, script: &str) {
    let d = root.join("packages").join(name);
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("buildinfo.json"), buildinfo).unwrap();
    fs::write(d.join("build"), script).unwrap();
}

fn opts(root: &Path) -> BuildOptions {
    let mut o = BuildOptions::new(root.join("tree"), root.join("cache"));
    o.out = root.join("out");
    o.jobs = 2;
    o
}

fn untar(archive: &Path) -> BTreeMap<String, Vec<u8>> {
    let f = fs::File::open(archive).unwrap();
    let mut ar = tar::Archive::new(zstd::stream::read::Decoder::new(f).unwrap());
    let mut out = BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).unwrap();
        out.insert(p, buf);
    }
    out
}

#[test]
fn sandbox_contract_dependencies_and_cache_hits() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(
        tree.join("treeinfo.json"),
        r#"{"bootstrap_package_list": ["app"]}"#,
    )
    .unwrap();
    pkg(
        &tree,
        "lib",
        r#"{"environment": {"LIB_HOME": "/opt/tarmac/active/lib"}}"#,
        "install -d $PKG_PATH/bin\nprintf '#!/bin/sh\\necho hello-from-lib\\n' > $PKG_PATH/bin/hello\nchmod 755 $PKG_PATH/bin/hello\n",
    );
    pkg(
        &tree,
        "app",
        r#"{"requires": ["lib"], "single_source": {"kind": "local", "path": "input.txt"}, "username": "tarmac_app", "state_directory": true}"#,
        r#"
out=$PKG_PATH/report
{
  echo "name=$PKG_NAME version=$PKG_VERSION id=$PKG_ID path=$PKG_PATH cores=$NUM_CORES"
  echo "pwd=$(pwd)"
  hello
  cat /pkg/src/app/input.txt
  cat /pkg/extra/note
  grep LIB_HOME /opt/tarmac/environment
  if touch /usr/tarmac-build-probe 2>/dev/null; then echo "usr writable"; else echo "usr read-only"; fi
  if touch /pkg/build/probe 2>/dev/null; then echo "build dir writable"; else echo "build dir read-only"; fi
  if (exec 3<>/dev/tcp/192.0.2.1/80) 2>/dev/null; then echo "network"; else echo "no network"; fi
  { ls /home 2>/dev/null || true; } | wc -l | sed 's/^/home entries: /'
  set -o | grep -E '^(errexit|nounset|pipefail) ' | tr -s ' \t' ' '
} > "$out"
install -D -m0644 /pkg/extra/note $PKG_PATH/systemd/tarmac-app.service
"#,
    );
    fs::write(tree.join("packages/app/input.txt"), "input-bytes\n").unwrap();
    fs::create_dir_all(tree.join("packages/app/extra")).unwrap();
    fs::write(
        tree.join("packages/app/extra/note"),
        "[Service]\nExecStart=/bin/true\n",
    )
    .unwrap();

    // Without --recursive, building `app` alone needs `lib` built first.
    let mut o = opts(d.path());
    o.names = vec!["app".parse().unwrap()];
    let e = build(&o, sink()).unwrap_err();
    assert!(matches!(e, BuildError::MissingDependency { .. }), "{e}");
    assert_eq!(
        Hint::hint(&e).as_deref(),
        Some("pass --recursive to build dependencies too"),
        "{e}"
    );
    o.recursive = true;
    let r = build(&o, sink()).unwrap();
    assert_eq!(r.packages.len(), 2);
    assert!(r.packages.iter().all(|p| p.built));
    assert!(r.bootstrap.is_none(), "named builds make no bootstrap");
    let app = r
        .packages
        .iter()
        .find(|p| p.id.name().as_str() == "app")
        .unwrap();
    let files = untar(&app.path);
    let report = String::from_utf8(files["report"].clone()).unwrap();
    let id = app.id.to_string();
    for want in [
        format!(
            "name=app version={} id={id} path=/opt/tarmac/packages/{id} cores=",
            app.id.version()
        ),
        "pwd=/pkg/build".into(),
        "hello-from-lib".into(),
        "input-bytes".into(),
        "ExecStart=/bin/true".into(),
        "LIB_HOME=/opt/tarmac/active/lib".into(),
        "usr read-only".into(),
        "build dir read-only".into(),
        "no network".into(),
        "home entries: 0".into(),
        "errexit on".into(),
        "nounset on".into(),
        "pipefail on".into(),
    ] {
        assert!(report.contains(&want), "missing {want:?} in:\n{report}");
    }
    let pkginfo: serde_json::Value = serde_json::from_slice(&files["pkginfo.json"]).unwrap();
    assert_eq!(pkginfo["requires"], serde_json::json!(["lib"]));
    assert_eq!(pkginfo["username"], "tarmac_app");
    tarmac_pkg::PkgInfo::parse(&files["pkginfo.json"], "test").unwrap();
    let full: serde_json::Value = serde_json::from_slice(&files["buildinfo.full.json"]).unwrap();
    assert_eq!(full["package_id"], id);
    let lib_id = r
        .packages
        .iter()
        .find(|p| p.id.name().as_str() == "lib")
        .unwrap()
        .id
        .to_string();
    assert_eq!(full["build_ids"]["requires"], serde_json::json!([lib_id]));
    assert!(files.contains_key("files.json"));

    // Unchanged inputs: nothing is rebuilt; the whole tree now also gets a bootstrap.
    let mut o = opts(d.path());
    let r2 = build(&o, sink()).unwrap();
    assert!(r2.packages.iter().all(|p| !p.built));
    let b = r2.bootstrap.unwrap();
    assert_eq!(b.packages.len(), 2, "bootstrap holds the closure of app");
    let m = manifest::Manifest::parse_unverified(&fs::read(&b.manifest).unwrap()).unwrap();
    m.check_all(&o.out).unwrap();
    assert!(m.first(ArtifactKind::HostBinary).is_none());
    let expected = m.first(ArtifactKind::Bootstrap).unwrap();
    expected.check_file(&b.archive).unwrap();
    let mut seen = Vec::new();
    let index = manifest::read_bootstrap(
        fs::File::open(&b.archive).unwrap(),
        Some(&m.bootstrap_id),
        |member, r| {
            let mut bytes = Vec::new();
            r.read_to_end(&mut bytes)?;
            assert_eq!(
                m.package(&member.id).unwrap().sha256,
                tarmac_types::Digest::of(&bytes)
            );
            seen.push(member.id.to_string());
            Ok::<(), std::io::Error>(())
        },
    )
    .unwrap();
    assert_eq!(index.bootstrap_id, b.id);
    assert_eq!(seen.len(), 2);

    // A changed input rebuilds only what depends on it.
    fs::write(tree.join("packages/app/input.txt"), "input-bytes v2\n").unwrap();
    o.jobs = 1;
    let r3 = build(&o, sink()).unwrap();
    let built: Vec<&str> = r3
        .packages
        .iter()
        .filter(|p| p.built)
        .map(|p| p.id.name().as_str())
        .collect();
    assert_eq!(built, ["app"]);
    assert_ne!(r3.bootstrap.unwrap().id, b.id);
}

#[test]
fn failed_build_shows_the_log_tail_and_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    pkg(
        &tree,
        "bad",
        "{}",
        "echo started > $PKG_PATH/half\necho 'compiler says: boom' >&2\nfalse\necho never\n",
    );
    let o = opts(d.path());
    let e = build(&o, sink()).unwrap_err();
    let BuildError::ScriptFailed { log, tail, .. } = &e else {
        panic!("{e}")
    };
    assert!(tail.contains("compiler says: boom"), "{tail}");
    assert!(!tail.contains("never"));
    assert_eq!(
        Hint::hint(&e).as_deref(),
        Some(format!("the full log is {}", log.display()).as_str())
    );
    assert!(log.is_file());
    assert!(
        !o.out.join("packages/bad").exists(),
        "no package after a failed build"
    );
    assert_eq!(
        fs::read_dir(o.out.join(".work")).unwrap().count(),
        0,
        "work directory removed"
    );
}

#[test]
fn invalid_outputs_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    for (script, want) in [
        (
            "install -d $PKG_PATH/systemd && touch $PKG_PATH/systemd/tarmac.target",
            "reserved unit name",
        ),
        (
            "install -d $PKG_PATH/systemd_master && touch $PKG_PATH/systemd_master/tarmac-host-x.service",
            "reserved unit name",
        ),
        (
            "ln -s /etc/passwd $PKG_PATH/passwd",
            "points outside the package",
        ),
        ("echo '{}' > $PKG_PATH/pkginfo.json", "pkginfo.json"),
        ("install -d $PKG_PATH/.tarmac", ".tarmac"),
        ("mkfifo $PKG_PATH/fifo", "FIFO"),
        ("true", "nothing into $PKG_PATH"),
    ] {
        pkg(&tree, "p", "{}", script);
        let e = build(&opts(d.path()), sink()).unwrap_err().to_string();
        assert!(e.contains(want), "{script}: {e}");
    }
}

#[test]
fn signed_manifest_verifies_and_tampering_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    pkg(
        &tree,
        "tarmac-host",
        "{}",
        "install -d $PKG_PATH/bin\nprintf '#!/bin/sh\\necho host\\n' > $PKG_PATH/bin/tarmac-host\nchmod 755 $PKG_PATH/bin/tarmac-host\n",
    );
    pkg(&tree, "other", "{}", "echo data > $PKG_PATH/data\n");
    let key = d.path().join("k.key");
    let public = manifest::keygen(&key, &d.path().join("k.pub"), false).unwrap();
    let mut o = opts(d.path());
    o.sign_key = Some(key);
    let b = build(&o, sink()).unwrap().bootstrap.unwrap();
    assert_eq!(b.key_id.as_deref(), Some(public.key_id().as_str()));
    let m = manifest::verify_file(&b.manifest, &public).unwrap();
    m.check_all(&o.out).unwrap();
    let host = m.first(ArtifactKind::HostBinary).unwrap();
    assert_eq!(
        fs::read(o.out.join(&host.path)).unwrap(),
        b"#!/bin/sh\necho host\n"
    );

    // wrong key
    let other = SecretKey::generate().public();
    assert!(matches!(
        manifest::verify_file(&b.manifest, &other),
        Err(ManifestError::WrongKey { .. })
    ));
    // a tampered package fails its sha256
    let pkg_art = m
        .artifacts
        .iter()
        .find(|a| a.kind == ArtifactKind::Package)
        .unwrap();
    let path = o.out.join(&pkg_art.path);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        m.check_all(&o.out),
        Err(ManifestError::Mismatch { .. })
    ));
    // ... and the builder refuses to sign it into a new manifest
    let e = build(&o, sink()).unwrap_err().to_string();
    assert!(e.contains("changed after it was built"), "{e}");
    // a tampered manifest fails the signature
    let mut mb = fs::read(&b.manifest).unwrap();
    let pos = mb.iter().position(|c| *c == b'a').unwrap();
    mb[pos] = b'b';
    fs::write(&b.manifest, &mb).unwrap();
    assert!(matches!(
        manifest::verify_file(&b.manifest, &public),
        Err(ManifestError::BadSignature { .. })
    ));
    // an unsigned rebuild removes the stale signature, and hosts refuse it as unsigned
    fs::remove_file(&path).unwrap();
    o.sign_key = None;
    let b2 = build(&o, sink()).unwrap().bootstrap.unwrap();
    assert!(b2.signature.is_none());
    assert!(matches!(
        manifest::verify_file(&b2.manifest, &public),
        Err(ManifestError::Unsigned { .. })
    ));
}
