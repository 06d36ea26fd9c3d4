//! The reference distribution, built on this (newer) machine, runs on a Debian 11
//! "bullseye" host (glibc 2.31): one lab host, the exported `tarmac-host` adds every package
//! of the signed manifest to its store, and every shipped binary — `etcd`, `etcdctl`,
//! `prometheus`, `promtool`, `node_exporter` and `tarmac-host` — prints its version there,
//! even with the host's own libraries first on `LD_LIBRARY_PATH`. A program of the build
//! machine that is not bundled (`/usr/bin/true`, GLIBC_2.34) fails on the same host, so the
//! host really is older.
//!
//! Needs root and the lab (the bullseye image is made once with debootstrap and cached).
//! `cargo test -p tarmac-build --test lab_bundle`. The bootstrap ships `$TARMAC_HOST_BIN`,
//! else `$TARMAC_PORTABLE_BIN_DIR/tarmac-host`, else what `scripts/build-portable.sh` builds.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use tarmac_build::{BuildOptions, build};
use tarmac_lab::{Lab, LabGuard, LabSpec, Mode, Suite, Suites};
use tarmac_pkg::manifest::{self, ArtifactKind};

const LAB: &str = "tb-bundle11";
const HOST: &str = "master-1";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The portable tarmac-host (what an old host can run).
fn host_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TARMAC_HOST_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let dir = match std::env::var_os("TARMAC_PORTABLE_BIN_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => {
            let script = workspace().join("scripts/build-portable.sh");
            let out = Command::new(&script)
                .current_dir(workspace())
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .unwrap();
            assert!(out.status.success(), "{} failed", script.display());
            let stdout = String::from_utf8(out.stdout).unwrap();
            PathBuf::from(stdout.lines().last().unwrap_or_default().trim())
        }
    };
    let p = dir.join("tarmac-host");
    assert!(
        p.is_file(),
        "{} is missing\nhint: run scripts/build-portable.sh",
        p.display()
    );
    p
}

fn copy_dir(src: &Path, dest: &Path) {
    fs::create_dir_all(dest).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dest.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            if e.file_name() != "out" {
                copy_dir(&e.path(), &to);
            }
        } else {
            fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// Run `cmd` on the host; (success, stdout + stderr).
fn run(lab: &Lab, cmd: &str) -> (bool, String) {
    let out = lab.ssh(HOST, cmd).unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn sh(lab: &Lab, cmd: &str) -> String {
    let (ok, text) = run(lab, cmd);
    assert!(ok, "{HOST}: `{cmd}` failed:\n{text}");
    text
}

fn copy(lab: &Lab, src: &Path, dest: &str, mode: &str) {
    let mut c = lab.ssh_command("root", HOST).unwrap();
    c.arg("--").arg(format!(
        "mkdir -p \"$(dirname {dest})\" && cat > {dest}.part && chmod {mode} {dest}.part && mv {dest}.part {dest}"
    ));
    c.stdin(fs::File::open(src).unwrap()).stdout(Stdio::null());
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "copy to {HOST}:{dest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn reference_binaries_run_on_a_bullseye_host() {
    // Build first: a build failure then leaves no lab behind.
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("reference");
    copy_dir(&workspace().join("dist/reference"), &tree);
    let host_bin = d.path().join("tarmac-host");
    fs::copy(host_binary(), &host_bin).unwrap();
    let cache = std::env::var_os("TARMAC_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tarmac-build-cache"));
    let mut o = BuildOptions::new(&tree, cache);
    o.out = d.path().join("out");
    o.pack.level = 3;
    o.vars.insert(
        "TARMAC_HOST_BIN".into(),
        host_bin.to_string_lossy().into_owned(),
    );
    let key = d.path().join("k.key");
    let public = manifest::keygen(&key, &d.path().join("k.pub"), false).unwrap();
    o.sign_key = Some(key);
    let b = build(&o, Arc::new(tarmac_events::NullSink))
        .unwrap()
        .bootstrap
        .unwrap();
    let m = manifest::verify_file(&b.manifest, &public).unwrap();
    m.check_all(&o.out).unwrap();
    let id_of = |name: &str| {
        m.packages
            .iter()
            .find(|i| i.name().as_str() == name)
            .unwrap_or_else(|| panic!("no {name} in the manifest"))
            .to_string()
    };

    let _ = Lab::down(LAB);
    let spec = LabSpec {
        mode: Mode::Plain,
        ..LabSpec::new(LAB, 1, 0, 0)
    };
    let lab = LabGuard::new(
        Lab::up_with_suites(
            &spec,
            &Suites::single(Suite::Bullseye),
            &tarmac_events::NullSink,
        )
        .unwrap(),
    );

    // The host is Debian 11 with glibc 2.31; this machine's own programs do not run there.
    let os = sh(&lab, "cat /etc/os-release");
    assert!(os.contains("VERSION_ID=\"11\""), "{os}");
    let glibc = sh(&lab, "ldd --version | head -n1");
    assert!(glibc.trim_end().ends_with(" 2.31"), "{glibc}");
    let true_bin = fs::canonicalize("/usr/bin/true").unwrap();
    copy(&lab, &true_bin, "/tmp/build-machine-true", "0755");
    let (ok, text) = run(&lab, "/tmp/build-machine-true");
    assert!(
        !ok && text.contains("GLIBC_2.34' not found"),
        "the build machine's unbundled /usr/bin/true should fail on bullseye: {text}"
    );

    // The exported tarmac-host adds every package (verified, extracted to the store).
    let host_art = m.first(ArtifactKind::HostBinary).unwrap();
    copy(
        &lab,
        &o.out.join(&host_art.path),
        "/usr/local/bin/tarmac-host",
        "0755",
    );
    let version = sh(&lab, "tarmac-host --version");
    assert!(version.starts_with("tarmac-host "), "{version}");
    for id in &m.packages {
        let art = m.package(id).unwrap();
        let dest = format!("/tmp/pkgs/{id}.tar.zst");
        copy(&lab, &o.out.join(&art.path), &dest, "0644");
        sh(
            &lab,
            &format!("tarmac-host add {dest} --sha256 {}", art.sha256),
        );
    }

    // Every shipped binary runs, with the host's libraries first on LD_LIBRARY_PATH.
    let etcd = id_of("etcd");
    let prom = id_of("prometheus");
    let node = id_of("node-exporter");
    let pkgs = "/opt/tarmac/packages";
    for (cmd, want) in [
        (
            format!("{pkgs}/{etcd}/bin_master/etcd --version"),
            "etcd Version: 3.4.23",
        ),
        (
            format!("ETCDCTL_API=3 {pkgs}/{etcd}/bin_master/etcdctl version"),
            "etcdctl version: 3.4.23",
        ),
        (
            format!("{pkgs}/{prom}/bin_master/prometheus --version"),
            "prometheus, version 2.42.0",
        ),
        (
            format!("{pkgs}/{prom}/bin_master/promtool --version"),
            "promtool, version 2.42.0",
        ),
        (
            format!("{pkgs}/{node}/bin/node_exporter --version"),
            "node_exporter, version 1.5.0",
        ),
        (
            format!("{pkgs}/{}/bin/tarmac-host --version", id_of("tarmac-host")),
            "tarmac-host ",
        ),
    ] {
        let out = sh(
            &lab,
            &format!("env LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu {cmd}"),
        );
        assert!(out.contains(want), "`{cmd}`: {out}");
    }
    // and they load the bundled C library, not the host's
    let maps = sh(
        &lab,
        &format!(
            "{pkgs}/{node}/bin/node_exporter --web.listen-address=127.0.0.1:19100 >/dev/null 2>&1 & \
             pid=$!; sleep 1; grep -o '/[^ ]*libc.so.6' /proc/$pid/maps | sort -u; kill $pid"
        ),
    );
    assert_eq!(
        maps.trim(),
        format!("{pkgs}/{node}/tarmac-bundle/libc.so.6"),
        "{maps}"
    );

    let report = lab.down().unwrap();
    assert!(report.existed);
}
