//! The operator's section of the README, verbatim, air-gapped (root needed).
//!
//! Where the cluster is built (this machine, with its network): a signed build of the
//! reference distribution and `tarmac bundle create --with-prereqs` for the lab's Debian
//! releases. At the "site": a lab of a bullseye master and a bookworm agent, curl removed from
//! the agent, every attempt to leave the lab recorded (controller and hosts; nothing routes
//! out), and an empty directory holding only the bundle, the public key and genconf/. There
//! the README's `operator-steps` block runs as written, outside the source tree, with no
//! TARMAC_* variables. It must succeed, the agent must have curl again from the bundle, and
//! the egress report must be empty. The lab is torn down even when the test fails.

use std::path::Path;
use std::process::{Command, Output};

mod common;

use common::*;

/// The shell block after `<!-- operator-steps -->` in README.md.
fn operator_steps() -> String {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let (_, after) = readme
        .split_once("<!-- operator-steps -->")
        .expect("README.md has an <!-- operator-steps --> block");
    let body = after
        .trim_start()
        .strip_prefix("```sh\n")
        .expect("the operator-steps marker is followed by a ```sh block");
    let (block, _) = body.split_once("\n```").expect("the block ends");
    block.to_owned()
}

fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed:\n{}", text(&o));
    text(&o)
}

fn portable_tarmac() -> std::path::PathBuf {
    let t = host_binary().with_file_name("tarmac");
    assert!(
        std::env::var_os("TARMAC_PORTABLE_BIN_DIR").is_some() && t.is_file(),
        "this test ships the portable tarmac and tarmac-host to bullseye hosts\nhint: export TARMAC_PORTABLE_BIN_DIR=$(scripts/build-portable.sh)"
    );
    t
}

#[test]
fn the_readme_operator_steps_install_a_cluster_from_the_bundle_alone_air_gapped() {
    assert!(is_root(), "this test needs root (it brings up a lab)");
    let steps = operator_steps();
    assert!(steps.contains("install-prereqs --offline"), "{steps}");
    let name = format!("op{}", std::process::id() % 100000);
    let _down = Down(name.clone());
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // Where the cluster is built.
    ok(
        Command::new(tarmac())
            .args(["keygen", "--name", "release", "--dir"])
            .arg(w.join("keys"))
            .output()
            .unwrap(),
        "keygen",
    );
    ok(
        Command::new(tarmac())
            .arg("build")
            .arg("--tree")
            .arg(workspace().join("dist/reference"))
            .arg("--out")
            .arg(w.join("out"))
            .arg("--sign-key")
            .arg(w.join("keys/release.key"))
            .arg("--host-binary")
            .arg(host_binary())
            .output()
            .unwrap(),
        "build",
    );
    let created = ok(
        Command::new(tarmac())
            .args(["bundle", "create", "--with-prereqs", "bullseye,bookworm"])
            .arg("--build-dir")
            .arg(w.join("out"))
            .arg("--sign-key")
            .arg(w.join("keys/release.key"))
            .arg("--tarmac-binary")
            .arg(portable_tarmac())
            .arg("--out")
            .arg(w.join("dl"))
            .output()
            .unwrap(),
        "bundle create",
    );
    let bundle = std::fs::read_dir(w.join("dl"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "bundle"))
        .unwrap_or_else(|| panic!("no .bundle written:\n{created}"));

    // The site.
    ok(
        Command::new(tarmac())
            .args([
                "lab",
                "up",
                "--name",
                &name,
                "--masters",
                "1",
                "--agents",
                "1",
            ])
            .args(["--public-agents", "0", "--suites", "bullseye,bookworm"])
            .output()
            .unwrap(),
        "lab up",
    );
    let lab = tarmac_lab::LabGuard::new(tarmac_lab::Lab::open(&name).unwrap());
    let agent = lab
        .hosts()
        .iter()
        .find(|h| h.name.starts_with("agent"))
        .unwrap()
        .name
        .clone();
    ssh(&lab, &agent, "dpkg -r --force-depends curl >/dev/null 2>&1");
    assert_eq!(ssh(&lab, &agent, "command -v curl || true"), "");
    lab.egress_audit_start().unwrap();
    assert!(lab.egress_report().unwrap().is_empty());

    let site = w.join("site");
    std::fs::create_dir_all(site.join("genconf")).unwrap();
    std::fs::copy(&bundle, site.join(bundle.file_name().unwrap())).unwrap();
    std::fs::copy(w.join("keys/release.pub"), site.join("signing.pub")).unwrap();
    for f in ["config.yaml", "ip-detect"] {
        std::fs::copy(
            lab.dir().join("genconf").join(f),
            site.join("genconf").join(f),
        )
        .unwrap();
    }
    assert_outside_source_tree(&site);

    let out = lab
        .ctl_command("bash")
        .args(["-euo", "pipefail", "-c", &steps])
        .current_dir(&site)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", &site)
        .env("LANG", "C.UTF-8")
        .output()
        .unwrap();
    let t = text(&out);
    let report = lab.egress_report().unwrap();
    assert!(
        out.status.success(),
        "the README's operator steps failed:\n{t}\n{report}"
    );
    assert!(
        report.is_empty(),
        "something tried to leave the lab:\n{report}\n--- output:\n{t}"
    );
    assert!(t.contains(": good. Signed by "), "{t}");
    assert_eq!(ssh(&lab, &agent, "command -v curl"), "/usr/bin/curl");
    for h in lab.hosts() {
        let cur = ssh(&lab, &h.name, "readlink /opt/tarmac/current || true");
        assert!(!cur.is_empty(), "{} has no active generation:\n{t}", h.name);
    }
    let etcd = ssh(
        &lab,
        &lab.hosts()[0].name.clone(),
        "systemctl is-active tarmac-etcd.service || true",
    );
    assert!(etcd.lines().any(|l| l == "active"), "etcd: {etcd}\n{t}");
}

/// The site directory is not inside the source tree, and the operator's steps never name it.
fn assert_outside_source_tree(site: &Path) {
    assert!(
        !site.starts_with(workspace()),
        "{} is inside the source tree",
        site.display()
    );
}
