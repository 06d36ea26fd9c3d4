//! The attacker on the cluster network (root needed): a hostile server answers for
//! `bootstrap_url`, while the installer's own server listens elsewhere (`deploy --listen`).
//! It serves a hostile install.sh, a hostile tarmac-host binary, and tampered packages and
//! bootstrap archive. No host may run the attacker's code or activate its bytes; deploy fails
//! naming each host and the sha256 mismatch. The documented self-install one-liner refuses the
//! hostile install.sh before running it. The lab is torn down even when the test fails.

use std::path::Path;
use std::process::Stdio;

mod common;

use common::*;

/// Every host must show no trace of the attacker and no activated cluster.
fn assert_untouched(lab: &tarmac_lab::Lab, when: &str) {
    for h in lab.hosts() {
        let pwned = ssh(lab, &h.name, "ls /tmp/tarmac-pwned* 2>/dev/null || true");
        assert_eq!(pwned, "", "{when}: {} ran the attacker's code", h.name);
        let current = ssh(
            lab,
            &h.name,
            "readlink /opt/tarmac/current 2>/dev/null || true",
        );
        assert_eq!(current, "", "{when}: {} activated something", h.name);
        let target = ssh(
            lab,
            &h.name,
            "systemctl is-active tarmac.target 2>/dev/null || true",
        );
        assert_ne!(target, "active", "{when}: {} started tarmac.target", h.name);
    }
}

/// Flip one byte in the middle of every file below `dir` whose name ends with `suffix`.
fn tamper_all(dir: &Path, suffix: &str) -> usize {
    let mut n = 0;
    for e in walk(dir) {
        if e.to_string_lossy().ends_with(suffix) {
            let mut b = std::fs::read(&e).unwrap();
            let mid = b.len() / 2;
            b[mid] ^= 0x5a;
            std::fs::write(&e, b).unwrap();
            n += 1;
        }
    }
    n
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A plain HTTP server (python3's) for `dir` inside the lab's control namespace.
fn serve_in_lab(lab: &tarmac_lab::Lab, dir: &Path, port: u16) -> Reap {
    let child = lab
        .ctl_command("python3")
        .args(["-m", "http.server", "--bind"])
        .arg(lab.ctl_ip().to_string())
        .arg(port.to_string())
        .arg("--directory")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 http.server");
    let reap = Reap(child);
    // wait until it answers
    for _ in 0..100 {
        let ok = lab
            .ctl_command("curl")
            .args(["-fsS", "-o", "/dev/null"])
            .arg(format!("http://{}:{port}/", lab.ctl_ip()))
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return reap;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the attacker's server did not start on port {port}");
}

const HOSTILE_SCRIPT: &str = "#!/bin/sh\ntouch /tmp/tarmac-pwned-$(basename \"$0\")\necho pwned\n";

#[test]
fn an_attacker_answering_for_bootstrap_url_runs_nothing_and_activates_nothing() {
    let QuickLab {
        lab,
        dir,
        work,
        down: _down,
    } = QuickLab::up("atk", 1, 1, 0);
    let genconf = dir.join("genconf");
    let g = genconf.to_str().unwrap();
    let build = dir.join("build");
    let b = build.to_str().unwrap();
    let public = dir.join("keys/quickstart.pub");

    // Start from clean hosts.
    let out = in_lab(&lab, &["uninstall", "--yes", "--genconf-dir", g]);
    assert!(out.status.success(), "{}", text(&out));

    // bootstrap_url now names the attacker's port; the installer's own server listens on
    // another one, which no host is told about.
    let (atk_port, own_port) = (18_443u16, 18_444u16);
    let url = format!("http://{}:{atk_port}", lab.ctl_ip());
    set_key(&genconf, "bootstrap_url", &url);
    let out = in_lab(
        &lab,
        &[
            "genconf",
            "--json",
            "--genconf-dir",
            g,
            "--build-dir",
            b,
            "--public-key",
            public.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "genconf: {}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let install_sha = report["install_sh_sha256"].as_str().unwrap().to_owned();
    let fingerprint = report["signing_key_fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();

    // The attacker's tree: the real serve/ with a hostile install.sh and tarmac-host, and every
    // package and the bootstrap archive tampered.
    let atk = work.path().join("attacker");
    copy_tree(&genconf.join("serve"), &atk);
    std::fs::write(atk.join("install.sh"), HOSTILE_SCRIPT).unwrap();
    let host_bins: Vec<_> = walk(&atk.join("bootstrap"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tarmac-host"))
        .collect();
    assert!(!host_bins.is_empty(), "no tarmac-host artifact in serve/");
    for p in &host_bins {
        std::fs::write(p, HOSTILE_SCRIPT).unwrap();
    }
    assert!(tamper_all(&atk.join("packages"), ".tar.zst") >= 3);
    assert_eq!(tamper_all(&atk.join("bootstrap"), ".bootstrap.tar.zst"), 1);
    let server = serve_in_lab(&lab, &atk, atk_port);

    // 1. Deploy with a hostile tarmac-host: every host refuses it (install.sh came over SSH
    //    with the pins), names the mismatch, runs nothing.
    let listen = format!("{}:{own_port}", lab.ctl_ip());
    let out = in_lab(&lab, &["deploy", "--genconf-dir", g, "--listen", &listen]);
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "deploy must fail:\n{t}");
    for h in lab.hosts() {
        assert!(t.contains(&h.ip.to_string()), "{} is not named:\n{t}", h.ip);
    }
    assert!(
        t.contains("sha256 mismatch"),
        "the mismatch is not named:\n{t}"
    );
    assert!(
        t.contains("tarmac-host"),
        "the refused file is not named:\n{t}"
    );
    assert_untouched(&lab, "hostile tarmac-host");

    // 2. The genuine tarmac-host and manifest, but tampered packages: tarmac-host setup
    //    refuses every archive before it is activated.
    for p in &host_bins {
        let name = p.file_name().unwrap();
        std::fs::copy(genconf.join("serve/bootstrap").join(name), p).unwrap();
    }
    let out = in_lab(&lab, &["deploy", "--genconf-dir", g, "--listen", &listen]);
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "deploy must fail:\n{t}");
    for h in lab.hosts() {
        assert!(t.contains(&h.ip.to_string()), "{} is not named:\n{t}", h.ip);
    }
    assert!(
        t.to_lowercase().contains("sha256"),
        "the refusal should name the hash check:\n{t}"
    );
    assert_untouched(&lab, "tampered packages");
    for h in lab.hosts() {
        let stored = ssh(
            &lab,
            &h.name,
            "ls /opt/tarmac/packages 2>/dev/null | grep -v '^\\.' || true",
        );
        assert_eq!(stored, "", "{}: tampered bytes reached the store", h.name);
    }

    // 3. The documented self-install one-liner against the attacker: sha256sum -c refuses the
    //    hostile install.sh before bash ever sees it.
    let one_liner =
        tarmac_genconf::self_install_command(&url, &install_sha, Some(&fingerprint), None, "agent");
    let agent = lab.hosts_with_role(tarmac_lab::Role::Agent).next().unwrap();
    let o = lab
        .ssh(&agent.name, &format!("cd /root && {one_liner}"))
        .unwrap();
    let t = text(&o);
    assert!(!o.status.success(), "the one-liner must fail:\n{t}");
    assert!(t.contains("FAILED"), "sha256sum -c should say FAILED:\n{t}");
    assert!(!t.contains("pwned"), "the hostile script ran:\n{t}");
    assert_untouched(&lab, "self-install one-liner");

    // 4. The same one-liner against the genuine server works (the pins are right, not just
    //    refusing everything): serve the real serve/ on the attacker's port.
    drop(server);
    let _real = serve_in_lab(&lab, &genconf.join("serve"), atk_port);
    let o = lab
        .ssh(&agent.name, &format!("cd /root && {one_liner}"))
        .unwrap();
    let t = text(&o);
    assert!(
        o.status.success(),
        "the genuine one-liner must install:\n{t}"
    );
    assert_eq!(
        ssh(
            &lab,
            &agent.name,
            "systemctl is-active tarmac.target || true"
        ),
        "active"
    );
    lab.down().unwrap();
}
