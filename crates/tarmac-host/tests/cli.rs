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
