//! The `tarmac-host` command line: exact listing output, JSON listings, error messages with
//! hints and exit codes.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use tarmac_pkg::testkit::{self, Entry};

const BIN: &str = env!("CARGO_BIN_EXE_tarmac-host");

fn host(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--root")
        .arg(dir.join("opt"))
        .arg("--config-dir")
        .arg(dir.join("etc"))
        .arg("--state-dir-root")
        .arg(dir.join("state"))
        .args(["--rooted-systemd", "--no-systemd", "--no-users"])
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn add(dir: &Path, id: &str, pkginfo: &str, entries: &[Entry]) {
    let p = dir.join(format!("{id}.tar.zst"));
    fs::write(&p, testkit::package(pkginfo, entries)).unwrap();
    let o = host(dir, &["add", p.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn listings_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    add(dir, "mesos--0.22.0", "{}", &[Entry::exe("bin/mesos", "x")]);
    add(dir, "mesos--0.23.0", "{}", &[Entry::exe("bin/mesos", "y")]);
    add(dir, "mesos-config--ffdd", r#"{"requires": ["mesos"]}"#, &[]);
    add(dir, "mesos-config--justmesos", "{}", &[]);
    add(
        dir,
        "other--1",
        "{}",
        &[Entry::exe("bin/mesos", "conflict")],
    );

    let o = host(dir, &["list"]);
    assert_eq!(
        stdout(&o),
        "mesos:\n  0.22.0\n  0.23.0\nmesos-config:\n  ffdd\n  justmesos\nother--1\n"
    );
    let o = host(dir, &["list", "--json"]);
    let v: Vec<String> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.len(), 5);

    let o = host(dir, &["active"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "");

    let o = host(dir, &["activate", "mesos--0.22.0", "mesos-config--ffdd"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with(
            "switched from nothing to generation 1 (2 packages; stopped nothing; flip "
        ),
        "{}",
        stdout(&o)
    );
    let o = host(dir, &["activate", "mesos-config--ffdd", "mesos--0.22.0"]);
    assert_eq!(
        stdout(&o),
        "unchanged: generation 1 already runs these 2 packages\n"
    );
    let o = host(dir, &["active"]);
    assert_eq!(stdout(&o), "mesos--0.22.0\nmesos-config--ffdd\n");
    let o = host(dir, &["active", "--json"]);
    assert_eq!(
        stdout(&o),
        "[\n  \"mesos--0.22.0\",\n  \"mesos-config--ffdd\"\n]\n"
    );

    // A conflict: the error lists the problem, and the hint comes last.
    let o = host(dir, &["activate", "mesos--0.22.0", "other--1"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "error: the package set cannot be activated (1 problem):\n  - `bin/mesos` is provided by both mesos--0.22.0 (bin/mesos) and other--1 (bin/mesos)\nhint: nothing on the host was changed\n"
    );
    let o = host(dir, &["swap", "mesos-config--justmesos"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = host(dir, &["generations", "--json"]);
    let g: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(g.as_array().unwrap().len(), 2);
    assert_eq!(g[1]["current"], true);
    assert_eq!(g[1]["packages"][1], "mesos-config--justmesos");

    let o = host(dir, &["remove", "mesos--0.22.0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with(
            "error: refusing to remove mesos--0.22.0: it is used by generation(s) 1, 2 (active)"
        ),
        "{}",
        stderr(&o)
    );
    let o = host(dir, &["remove", "mesos--0.23.0", "absent--1"]);
    assert_eq!(
        stdout(&o),
        "removed mesos--0.23.0\nabsent--1 was not in the store\n"
    );

    let o = host(dir, &["activate", "not-an-id"]);
    assert!(
        stderr(&o).starts_with("error: invalid package id `not-an-id`"),
        "{}",
        stderr(&o)
    );
    let o = host(dir, &["activate", "missing--1"]);
    assert!(
        stderr(&o).contains("hint: fetch them first"),
        "{}",
        stderr(&o)
    );

    let o = host(dir, &["verify", "--json"]);
    assert!(o.status.success(), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    // Tamper with a stored file: verify fails and says where.
    fs::write(dir.join("opt/packages/mesos--0.22.0/bin/mesos"), "evil").unwrap();
    let o = host(dir, &["verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("mesos--0.22.0: bin/mesos: content changed"),
        "{}",
        stdout(&o)
    );

    let o = host(
        dir,
        &["print-setup-unit", "--binary", "/usr/local/bin/tarmac-host"],
    );
    assert!(stdout(&o).contains("ExecStart=/usr/local/bin/tarmac-host --wait setup\n"));

    let o = host(dir, &["uninstall"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!dir.join("opt").exists());
}

#[test]
fn downloads_are_pinned_and_checked_before_extraction() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bytes = testkit::package("{}", &[Entry::exe("bin/tool", "x")]);
    let file = dir.join("tool--1.tar.zst");
    fs::write(&file, &bytes).unwrap();
    let good = tarmac_types::Digest::of(&bytes);
    let wrong = tarmac_types::Digest::of(b"wrong");

    // add --sha256: hashed before anything is extracted; nothing is left in the store.
    let o = host(
        dir,
        &["add", file.to_str().unwrap(), "--sha256", &wrong.hex()],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "error: {}: sha256 mismatch: expected {wrong}, got {good} ({} bytes)\nhint: the download was corrupted or the artifact was replaced; nothing was installed\n",
            file.display(),
            bytes.len()
        )
    );
    let store = dir.join("opt/packages");
    assert_eq!(fs::read_dir(&store).map(|d| d.count()).unwrap_or(0), 0);

    // An unpinned fetch from an http repository is refused (no request is made).
    let o = host(
        dir,
        &["fetch", "--repository-url", "http://127.0.0.1:9", "tool--1"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "error: cannot fetch tool--1\n  caused by: refusing to fetch tool--1 from http://127.0.0.1:9 without its sha256 and size\nhint: fetch it with the package list that pins it (`tarmac-host fetch --package-list FILE`, written by `tarmac genconf`) or pass --sha256 tool--1=SHA256:SIZE\nerror: 1 of 1 packages could not be fetched\n"
    );

    // --sha256 needs the size too.
    let o = host(
        dir,
        &[
            "fetch",
            "--repository-url",
            "http://127.0.0.1:9",
            "--sha256",
            &format!("tool--1={good}"),
        ],
    );
    assert_eq!(
        stderr(&o),
        format!(
            "error: invalid pin `{good}`: no size (expected SHA256:SIZE, e.g. `<64 hex>:123456`)\n"
        )
    );

    // A package list from an older genconf (no sizes) says how to fix it.
    let list = dir.join("old.json");
    fs::write(
        &list,
        format!(r#"[{{"id": "tool--1", "sha256": "{good}"}}]"#),
    )
    .unwrap();
    let o = host(
        dir,
        &[
            "fetch",
            "--repository-url",
            "http://127.0.0.1:9",
            "--package-list",
            list.to_str().unwrap(),
        ],
    );
    assert_eq!(
        stderr(&o),
        format!(
            "error: {}: entry 0 (tool--1): `sha256` without `size`: this package list was written by an older `tarmac genconf`\nhint: re-run `tarmac genconf` and use the package list it writes (it gives every package's sha256 and size)\n",
            list.display()
        )
    );

    // Pinned (sha256 and size) from a local repository: fetched.
    let repo = dir.join("repo");
    fs::create_dir_all(repo.join("packages/tool")).unwrap();
    fs::write(repo.join("packages/tool/tool--1.tar.zst"), &bytes).unwrap();
    let o = host(
        dir,
        &[
            "fetch",
            "--repository-url",
            repo.to_str().unwrap(),
            "--require-sha256",
            "--sha256",
            &format!("tool--1={good}:{}", bytes.len()),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "fetched tool--1\n");
}

/// A manifest (format as the builder writes it) asking `req` of the host.
fn manifest_with(dir: &Path, req: serde_json::Value) -> std::path::PathBuf {
    let ids: Vec<tarmac_types::PackageId> = vec!["etcd--1".parse().unwrap()];
    let m = serde_json::json!({
        "format": tarmac_pkg::manifest::MANIFEST_FORMAT,
        "bootstrap_id": tarmac_pkg::manifest::bootstrap_id(&ids),
        "bootstrap_packages": ["etcd--1"],
        "packages": ["etcd--1"],
        "artifacts": [],
        "host_requirements": req,
    });
    let p = dir.join("manifest.json");
    fs::write(&p, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    p
}

#[test]
fn check_host_names_every_unmet_requirement_and_exits_3() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // This machine meets a modest set: exit 0 and a one-line summary.
    let ok = manifest_with(
        dir,
        serde_json::json!({"architectures": [std::env::consts::ARCH], "min_kernel": "2.6", "commands": ["sh"],
                           "glibc": [{"package": "etcd", "file": "bin/etcd", "version": "2.17"}]}),
    );
    let o = host(dir, &["check-host", "--manifest", ok.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).starts_with("this host can run bootstrap "),
        "{}",
        stdout(&o)
    );
    // A glibc no host has, an architecture that is not this one, a missing command.
    let bad = manifest_with(
        dir,
        serde_json::json!({"architectures": ["riscv128"], "commands": ["tarmac-no-such-command"],
                           "glibc": [{"package": "prometheus", "file": "bin/prometheus", "version": "99.0"}]}),
    );
    let o = host(dir, &["check-host", "--manifest", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let lines: Vec<String> = stdout(&o).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        lines[0],
        format!(
            "architecture {} is not one this build runs on (riscv128)",
            std::env::consts::ARCH
        )
    );
    assert!(
        lines[1].starts_with("glibc 2.")
            && lines[1].ends_with(" < 99.0 needed by prometheus (bin/prometheus)"),
        "{}",
        lines[1]
    );
    assert_eq!(
        lines[2],
        "missing command: tarmac-no-such-command (install-prereqs or the host's package manager provides them)"
    );
    // JSON form.
    let o = host(
        dir,
        &["--json", "check-host", "--manifest", bad.to_str().unwrap()],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["unmet"].as_array().unwrap().len(), 3);
    assert_eq!(v["facts"]["architecture"], std::env::consts::ARCH);
    // A manifest that is not one: exit 1 with the file named.
    fs::write(dir.join("junk.json"), "{").unwrap();
    let o = host(
        dir,
        &[
            "check-host",
            "--manifest",
            dir.join("junk.json").to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("junk.json is not a usable build manifest"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_agent_keeps_a_master_only_package_archived_unless_extract_all_is_set() {
    for (env, extracted) in [(None, false), (Some("1"), true), (Some("0"), false)] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::create_dir_all(dir.join("etc/roles")).unwrap();
        fs::write(dir.join("etc/roles/agent"), "").unwrap();
        let p = dir.join("db--1.tar.zst");
        fs::write(
            &p,
            testkit::package("{}", &[Entry::exe("bin_master/db", "d")]),
        )
        .unwrap();
        let mut c = Command::new(BIN);
        c.arg("--root")
            .arg(dir.join("opt"))
            .arg("--config-dir")
            .arg(dir.join("etc"))
            .args(["--no-systemd", "--no-users", "add"])
            .arg(&p);
        match env {
            Some(v) => c.env("TARMAC_EXTRACT_ALL", v),
            None => c.env_remove("TARMAC_EXTRACT_ALL"),
        };
        let o = c.output().unwrap();
        assert!(o.status.success(), "{env:?}: {}", stderr(&o));
        let archived_word = stdout(&o).contains("kept as its verified archive");
        assert_eq!(archived_word, !extracted, "{env:?}: {}", stdout(&o));
        assert_eq!(
            dir.join("opt/packages/db--1/bin_master/db").exists(),
            extracted,
            "TARMAC_EXTRACT_ALL={env:?}"
        );
    }
}
