//! `tarmac bundle` from the command line, as an operator meets it (no lab): a signed build
//! becomes one file; `sh FILE verify` accepts it, refuses one flipped byte and another key
//! with their own messages; `sh FILE extract` unpacks it; and the extracted tarmac validates a
//! genconf/ and explains keys from a directory far from any source tree, with no --dist.

use std::path::Path;
use std::process::{Command, Output};

mod common;

use common::*;

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run")
}

fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed:\n{}", text(&o));
    text(&o)
}

/// keys/ + a signed build of the reference distribution in `dir/out`.
fn signed_build(dir: &Path) {
    ok(
        run(Command::new(tarmac())
            .args(["keygen", "--name", "rel", "--dir"])
            .arg(dir.join("keys"))),
        "keygen",
    );
    ok(
        run(Command::new(tarmac())
            .arg("build")
            .arg("--tree")
            .arg(workspace().join("dist/reference"))
            .arg("--out")
            .arg(dir.join("out"))
            .arg("--sign-key")
            .arg(dir.join("keys/rel.key"))
            .arg("--host-binary")
            .arg(host_binary())),
        "build",
    );
}

#[test]
fn an_operator_gets_one_file_that_verifies_extracts_and_runs_alone() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    signed_build(dir);
    // this test runs the bundle's tarmac on this machine only: the cargo build will do
    let o = run(Command::new(tarmac())
        .args([
            "bundle",
            "create",
            "--allow-non-portable",
            "--output",
            "json",
        ])
        .arg("--build-dir")
        .arg(dir.join("out"))
        .arg("--sign-key")
        .arg(dir.join("keys/rel.key"))
        .arg("--tarmac-binary")
        .arg(tarmac())
        .arg("--out")
        .arg(dir.join("dl")));
    assert!(o.status.success(), "bundle create failed:\n{}", text(&o));
    let created: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let file = Path::new(created["file"].as_str().unwrap()).to_path_buf();
    let bid = created["bootstrap_id"].as_str().unwrap();
    assert_eq!(
        file.file_name().unwrap().to_str().unwrap(),
        format!("tarmac-{bid}.bundle")
    );
    let fp = created["key_fingerprint"].as_str().unwrap().to_owned();

    // The site: the bundle, the key, and genconf/ — nothing else.
    let site = dir.join("site");
    std::fs::create_dir_all(site.join("genconf")).unwrap();
    let local = site.join(file.file_name().unwrap());
    std::fs::copy(&file, &local).unwrap();
    std::fs::copy(dir.join("keys/rel.pub"), site.join("signing.pub")).unwrap();
    std::fs::write(
        site.join("genconf/config.yaml"),
        "cluster_name: site\nmaster_list: [10.0.0.1]\nagent_list: [10.0.1.1]\nbootstrap_url: http://10.0.0.254:8080\nresolvers: [10.0.0.53]\nssh_user: root\nssh_key_path: genconf/ssh_key\n",
    )
    .unwrap();
    std::fs::write(site.join("genconf/ip-detect"), "#!/bin/sh\necho 10.0.0.1\n").unwrap();
    let sh = |args: &[&str]| {
        let mut c = Command::new("sh");
        c.arg(local.file_name().unwrap())
            .args(args)
            .current_dir(&site)
            .env_remove("TARMAC_DIST")
            .env_remove("TARMAC_BUILD_DIR")
            .env_remove("TARMAC_PUBLIC_KEY");
        run(&mut c)
    };

    let good = ok(sh(&["verify", "--public-key", "signing.pub"]), "verify");
    assert!(good.contains(": good. Signed by "), "{good}");
    ok(
        sh(&["verify", "--key-fingerprint", &fp]),
        "verify by fingerprint",
    );

    // One flipped byte: refused as altered.
    let bytes = std::fs::read(&local).unwrap();
    let mut bad = bytes.clone();
    let i = bytes.len() * 2 / 3;
    bad[i] ^= 0x10;
    std::fs::write(&local, &bad).unwrap();
    let o = sh(&["verify", "--public-key", "signing.pub"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t1 = text(&o);
    assert!(t1.contains("was altered or damaged"), "{t1}");
    assert!(t1.contains("hint: do not use this copy"), "{t1}");
    std::fs::write(&local, &bytes).unwrap();

    // Another key: refused as such, naming both keys.
    ok(
        run(Command::new(tarmac())
            .args(["keygen", "--name", "other", "--dir"])
            .arg(&site)),
        "keygen other",
    );
    let o = sh(&["verify", "--public-key", "other.pub"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t2 = text(&o);
    assert!(
        t2.contains(&format!("is signed by key {fp}, not by the key you trust")),
        "{t2}"
    );
    assert!(!t2.contains("altered"), "{t2}");
    std::fs::remove_file(site.join("other.pub")).unwrap();
    std::fs::remove_file(site.join("other.key")).unwrap();

    // Extract, then the extracted tarmac works from here, reading only the bundle.
    ok(sh(&["extract", "--public-key", "signing.pub"]), "extract");
    let root = site.join(format!("tarmac-{bid}"));
    assert!(root.join("build/bootstrap.latest").is_file());
    assert!(root.join("docs/config-reference.md").is_file());
    let bundled = |args: &[&str]| {
        let mut c = Command::new(root.join("tarmac"));
        c.args(args)
            .current_dir(&site)
            .env_remove("TARMAC_DIST")
            .env_remove("TARMAC_BUILD_DIR")
            .env_remove("TARMAC_PUBLIC_KEY");
        run(&mut c)
    };
    let v = ok(bundled(&["validate-config"]), "validate-config");
    assert!(
        v.contains("genconf/config.yaml is valid: 1 master, 1 agent"),
        "{v}"
    );
    let v = ok(
        bundled(&["validate-config", "--output", "json"]),
        "validate json",
    );
    assert_eq!(v.trim(), "{}");
    let e = ok(
        bundled(&["config", "explain", "etcd_client_port"]),
        "explain",
    );
    assert!(e.contains("### `etcd_client_port`"), "{e}");
    let g = ok(bundled(&["genconf"]), "genconf");
    assert!(
        g.contains("manifest signature   checked, and checked again on every host"),
        "the bundle's key is the trusted key: {g}"
    );
    // The web installer starts from the bundle too, and answers.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut web = Command::new(root.join("tarmac"));
    web.args(["web", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(&site)
        .env_remove("TARMAC_DIST")
        .env_remove("TARMAC_BUILD_DIR")
        .env_remove("TARMAC_PUBLIC_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = Reap(web.spawn().unwrap());
    let mut answered = false;
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read as _, Write as _};
            s.write_all(b"GET /login HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                .unwrap();
            let mut r = String::new();
            let _ = s.read_to_string(&mut r);
            answered = r.starts_with("HTTP/1.");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(child);
    assert!(
        answered,
        "tarmac web from the bundle did not answer on port {port}"
    );

    // An invalid key in JSON mode: JSON on stdout, per key.
    std::fs::write(
        site.join("genconf/config.yaml"),
        "cluster_name: site\nmaster_list: [10.0.0.1]\nbootstrap_url: http://10.0.0.254:8080\nssh_prot: 22\n",
    )
    .unwrap();
    let o = bundled(&["validate-config", "--output", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(j.get("ssh_prot").is_some(), "{j}");

    // A second bundle directory makes ./tarmac-* ambiguous for a tarmac outside the bundle,
    // but the bundle's own tarmac still uses its own build.
    std::fs::create_dir_all(site.join("tarmac-other/build")).unwrap();
    std::fs::write(site.join("tarmac-other/bundle.json"), "{}").unwrap();
    let o = run(Command::new(tarmac())
        .arg("validate-config")
        .current_dir(&site)
        .env_remove("TARMAC_DIST")
        .env_remove("TARMAC_BUILD_DIR"));
    assert!(
        text(&o).contains("several extracted bundles"),
        "{}",
        text(&o)
    );
    // with nothing around, the error says what was looked for
    let empty = dir.join("empty");
    std::fs::create_dir_all(empty.join("genconf")).unwrap();
    std::fs::write(empty.join("genconf/config.yaml"), "cluster_name: x\n").unwrap();
    let o = run(Command::new(tarmac())
        .arg("validate-config")
        .current_dir(&empty)
        .env_remove("TARMAC_DIST")
        .env_remove("TARMAC_BUILD_DIR"));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("no build found: looked for"),
        "{}",
        text(&o)
    );
}
