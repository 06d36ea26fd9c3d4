//! install.sh: golden text, bash syntax, argument handling, root check and the port check.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tarmac_genconf::install_sh::{InstallScript, Pinned, render};
use tarmac_types::Role;

fn sample() -> InstallScript {
    let h = |c: char| c.to_string().repeat(64);
    InstallScript {
        cluster_name: "lab".into(),
        config_id: h('c'),
        bootstrap_url: "https://10.0.0.254:8443".into(),
        bootstrap_id: h('b'),
        package_list_id: h('l'),
        host_binary: Pinned { path: format!("bootstrap/{}.tarmac-host", h('b')), sha256: h('1') },
        manifest: Pinned { path: format!("bootstrap/{}.manifest.json", h('b')), sha256: h('2') },
        signature: Some(Pinned { path: format!("bootstrap/{}.manifest.json.sig", h('b')), sha256: h('3') }),
        signing_key: Some("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAexample\n-----END PUBLIC KEY-----\n".into()),
        signing_key_fingerprint: Some(format!("sha256:{}", h('f'))),
        repository_ca: Some("-----BEGIN CERTIFICATE-----\nMIIBexampleCA\n-----END CERTIFICATE-----\n".into()),
        repository_ca_fingerprint: Some(format!("sha256:{}", h('a'))),
        repository_ca_source: Some("genconf/tls/ca.pem".into()),
        package_list_json: "[\n  {\n    \"id\": \"etcd--3.5.17\",\n    \"sha256\": \"aaaa\",\n    \"size\": 1234\n  }\n]\n".into(),
        ip_detect: "#!/bin/sh\necho 10.0.0.1\n".into(),
        ports: BTreeMap::from([
            (Role::Master, vec![2379, 2380, 9090, 9100]),
            (Role::Agent, vec![9100]),
            (Role::AgentPublic, vec![9100]),
        ]),
        setup_unit: "[Unit]\nDescription=x\n\n[Service]\nType=oneshot\nExecStart=/opt/tarmac/tarmac-host --wait setup\n".into(),
    }
}

fn write_script(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("install.sh");
    std::fs::write(&p, text).unwrap();
    p
}

fn bash(args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new("bash");
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn golden_install_sh() {
    insta::assert_snapshot!(render(&sample()).unwrap());
}

#[test]
fn unsigned_script_has_no_signature() {
    let mut s = sample();
    s.signature = None;
    s.signing_key = None;
    let t = render(&s).unwrap();
    assert!(t.contains("readonly SIGNATURE_PATH=''\n"));
    assert!(t.contains("signing_key() {\n    cat <<'TARMAC_EOF'\nTARMAC_EOF\n}"));
}

#[test]
fn https_script_carries_the_cluster_ca_and_pins_curl_to_it() {
    let t = render(&sample()).unwrap();
    assert!(t.contains(
        "repository_ca() {\n    cat <<'TARMAC_EOF'\n-----BEGIN CERTIFICATE-----\nMIIBexampleCA\n-----END CERTIFICATE-----\nTARMAC_EOF\n}"
    ));
    assert!(t.contains(&format!(
        "readonly REPOSITORY_CA_FINGERPRINT=sha256:{}\n",
        "a".repeat(64)
    )));
    assert!(t.contains("readonly REPOSITORY_CA_SOURCE=genconf/tls/ca.pem\n"));
    assert!(t.contains("CURL_OPTS=(--proto =https --proto-redir =https --cacert \"$TLS_TMP/repository-ca.pem\"\n        --capath \"$TLS_TMP/no-system-cas\")"));
    assert!(t.contains("repository_ca | write_file \"$FLAGS_DIR/repository-ca.pem\" 0644"));
    // Every curl goes through download() and so gets those options.
    let curls: Vec<&str> = t
        .lines()
        .filter(|l| {
            l.trim_start().starts_with("curl ") || l.contains("$(curl") || l.contains(" curl -")
        })
        .collect();
    assert_eq!(
        curls,
        ["    curl -fsSL \"${CURL_OPTS[@]}\" \"$@\" -o \"$dest\" \"$url\" && rc=0 || rc=$?"]
    );
    // Plain http: no CA.
    let mut s = sample();
    s.bootstrap_url = "http://10.0.0.254:8080".into();
    s.repository_ca = None;
    s.repository_ca_fingerprint = None;
    s.repository_ca_source = None;
    let t = render(&s).unwrap();
    assert!(t.contains("readonly REPOSITORY_CA_FINGERPRINT=''\n"));
    assert!(t.contains("repository_ca() {\n    cat <<'TARMAC_EOF'\nTARMAC_EOF\n}"));
}

#[test]
fn https_without_a_ca_is_refused() {
    let mut s = sample();
    s.repository_ca = None;
    s.repository_ca_fingerprint = None;
    let tmp = tempfile::tempdir().unwrap();
    let p = write_script(tmp.path(), &render(&s).unwrap());
    let cmd = format!(
        "source <(grep -v '^main \"$@\"' {}); prepare_tls",
        p.display()
    );
    let out = bash(&["-c", &cmd], None);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        text(&out.stderr),
        "error: bootstrap_url https://10.0.0.254:8443 is https, but this install.sh carries no cluster CA (run tarmac genconf again)\n"
    );
}

#[test]
fn bash_syntax_is_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write_script(tmp.path(), &render(&sample()).unwrap());
    let out = bash(&["-n", p.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn arguments_and_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write_script(tmp.path(), &render(&sample()).unwrap());
    let p = p.to_str().unwrap();
    let out = bash(&[p, "--help"], None);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("Usage: install.sh [OPTIONS] ROLE..."));
    let out = bash(&[p], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("error: at least one role must be given: master, agent or agent_public")
    );
    let out = bash(&[p, "boss"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: unknown role: boss (expected master, agent or agent_public)\n"
    );
    let out = bash(&[p, "--frobnicate", "agent"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).ends_with("error: unknown option: --frobnicate\n"));
    let out = bash(&[p, "-p", "-d", "agent"], None);
    assert_eq!(out.status.code(), Some(1));
    // Piped into `bash -s`, as `curl … | sudo bash -s -- agent` does.
    let script = render(&sample()).unwrap();
    let out = bash(&["-s", "--", "slave_publik"], Some(&script));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: unknown role: slave_publik (expected master, agent or agent_public)\n"
    );
}

#[test]
fn root_is_required() {
    let script = render(&sample()).unwrap();
    let is_root = text(&Command::new("id").arg("-u").output().unwrap().stdout).trim() == "0";
    let out = if is_root {
        // Drop to nobody for this one run.
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "bash",
            "-s",
            "--",
            "agent",
        ]);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    } else {
        bash(&["-s", "--", "agent"], Some(&script))
    };
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "error: This script must be run as root\n"
    );
}

/// The functions of the script without running main.
fn functions(dir: &Path) -> PathBuf {
    let t = render(&sample()).unwrap();
    // Drop the call to main, and `readonly` so tests can point the functions elsewhere.
    let body: String = t
        .lines()
        .filter(|l| !l.starts_with("main \"$@\""))
        .map(|l| format!("{}\n", l.strip_prefix("readonly ").unwrap_or(l)))
        .collect();
    let p = dir.join("functions.sh");
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn busy_ports_are_found_whatever_their_hex_digits() {
    // DC/OS compared lower-case hex with /proc's upper case, so 443, 5050, 8080… (hex with
    // letters) were never seen as busy. Listen on ports with letters in hex and without.
    let tmp = tempfile::tempdir().unwrap();
    let f = functions(tmp.path());
    let mut listeners = Vec::new();
    for candidate in [
        47_806u16, /* 0xBABE */
        44_015,    /* 0xABEF */
        12_345,    /* 0x3039 */
        0,
    ] {
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", candidate)) {
            listeners.push(l);
        }
    }
    assert!(!listeners.is_empty());
    let busy: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port().to_string())
        .collect();
    let free = {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let ports = format!("{} {free}", busy.join(" "));
    let cmd = format!("source {}; check_ports '{ports}'", f.display());
    let out = bash(&["-c", &cmd], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let first = text(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(first, format!("TCP ports in use: {}", busy.join(" ")));
    let out = bash(
        &[
            "-c",
            &format!("source {}; check_ports '{free}'", f.display()),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    drop(listeners);
}

#[test]
fn preflight_lists_every_failure_and_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let f = functions(tmp.path());
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    // A repository that does not exist, a port in use, an ip-detect that fails.
    let cmd = format!(
        "source {}; ROLES=(agent); PORTS_AGENT={port}; BOOTSTRAP_URL=file:///nonexistent; \
         ip_detect_script() {{ printf '#!/bin/sh\\nexit 3\\n'; }}; preflight",
        f.display()
    );
    let out = bash(&["-c", &cmd], None);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("Checking ip-detect"), "{stdout}");
    assert!(stdout.contains("ip-detect exited with 3"), "{stdout}");
    assert!(
        stdout.contains(&format!("TCP ports in use: {port}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("cannot read /nonexistent/bootstrap/"),
        "{stdout}"
    );
    assert!(text(&out.stderr).contains("preflight check(s) failed"));
}

#[test]
fn fetch_verifies_sha256() {
    let tmp = tempfile::tempdir().unwrap();
    let f = functions(tmp.path());
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("bootstrap")).unwrap();
    std::fs::write(repo.join("bootstrap/x"), b"hello\n").unwrap();
    let good = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    let dest = tmp.path().join("dest");
    let run = |sha: &str| {
        let cmd = format!(
            "source {}; BOOTSTRAP_URL=file://{}; fetch bootstrap/x {} {sha}",
            f.display(),
            repo.display(),
            dest.display()
        );
        bash(&["-c", &cmd], None)
    };
    let out = run(good);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&dest).unwrap(), b"hello\n");
    std::fs::remove_file(&dest).unwrap();
    let bad = "0".repeat(64);
    let out = run(&bad);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains(&format!(
        "sha256 mismatch for file://{}/bootstrap/x: expected {bad}, got {good}",
        repo.display()
    )));
    assert!(!dest.exists());
}

#[test]
fn control_characters_in_values_are_refused() {
    let mut s = sample();
    s.bootstrap_url = "http://10.0.0.254:8080/x\ntouch PWNED;true".into();
    let e = render(&s).unwrap_err();
    assert_eq!(
        tarmac_types::error_report::text_with_hint(&e),
        "bootstrap_url contains a control character (newline, tab, NUL …), which install.sh cannot hold outside a here-document: \"http://10.0.0.254:8080/x\\ntouch PWNED;true\"\nhint: remove it from bootstrap_url"
    );
}

/// Run the script with `args` as if root (a fake `id` first on PATH): only for paths that
/// stop before the preflight, so nothing on this machine is touched.
fn run_as_root(args: &[&str], env: &[(&str, &str)]) -> Option<Output> {
    let tmp = tempfile::tempdir().unwrap();
    let p = write_script(tmp.path(), &render(&sample()).unwrap());
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("id"), "#!/bin/sh\necho 0\n").unwrap();
    std::fs::set_permissions(
        bin.join("id"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new("bash");
    c.arg(&p)
        .args(args)
        .env_remove("TARMAC_EXPECT_KEY_FINGERPRINT")
        .env("PATH", path);
    for (k, v) in env {
        c.env(k, v);
    }
    Some(c.output().unwrap())
}

#[test]
fn an_unexpected_signing_key_is_refused_before_anything_runs() {
    let other = format!("sha256:{}", "e".repeat(64));
    for (args, env) in [
        (
            vec!["--expect-key-fingerprint", other.as_str(), "agent"],
            vec![],
        ),
        (
            vec![],
            vec![("TARMAC_EXPECT_KEY_FINGERPRINT", other.as_str())],
        ),
    ] {
        let mut a = args.clone();
        if a.is_empty() {
            a.push("agent");
        }
        let Some(out) = run_as_root(&a, &env) else {
            return;
        };
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stderr),
            format!(
                "error: this install.sh trusts signing key sha256:{}, not the expected {other}: refusing to install (was it made for another build, or tampered with?)\n",
                "f".repeat(64)
            )
        );
        assert!(
            !text(&out.stdout).contains("preflight"),
            "{}",
            text(&out.stdout)
        );
    }
}

#[test]
fn expect_key_fingerprint_needs_a_value() {
    let Some(out) = run_as_root(&["agent", "--expect-key-fingerprint"], &[]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: --expect-key-fingerprint needs a value (sha256:…)\n"
    );
}
