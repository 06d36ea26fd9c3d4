//! HTTPS end to end on the lab (root needed): a quickstarted cluster is uninstalled, its
//! bootstrap_url switched to `https://`, genconf makes the per-cluster CA, and `tarmac deploy`
//! installs every host over HTTPS; each host pins the CA genconf made
//! (`/etc/tarmac/setup-flags/repository-ca.pem`). Then an impostor: `tarmac serve` of another
//! genconf directory (another CA) on the same address is refused by `tarmac-host` and by
//! install.sh's curl, naming the URL and the cluster CA. The lab is torn down even when the
//! test fails.

mod common;

use common::*;
use tarmac_lab::Role;

#[test]
fn deploy_over_https_pins_the_cluster_ca() {
    let QuickLab {
        lab,
        dir,
        work,
        down: _down,
    } = QuickLab::up("tls", 1, 1, 0);
    let genconf = dir.join("genconf");
    let g = genconf.to_str().unwrap();
    let build = dir.join("build");
    let b = build.to_str().unwrap();

    // http → https on the same host, another port.
    let out = in_lab(&lab, &["uninstall", "--yes", "--genconf-dir", g]);
    assert!(out.status.success(), "{}", text(&out));
    let cfg = std::fs::read_to_string(genconf.join("config.yaml")).unwrap();
    let http = cfg
        .lines()
        .find_map(|l| l.strip_prefix("bootstrap_url: "))
        .unwrap()
        .trim()
        .to_owned();
    let host = http
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let url = format!("https://{host}:8443");
    set_key(&genconf, "bootstrap_url", &url);
    let public = dir.join("keys/quickstart.pub");
    let out = in_lab(
        &lab,
        &[
            "genconf",
            "--genconf-dir",
            g,
            "--build-dir",
            b,
            "--public-key",
            public.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "genconf: {}", text(&out));
    let ca = std::fs::read_to_string(genconf.join("tls/ca.pem")).unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));

    let out = in_lab(&lab, &["deploy", "--genconf-dir", g]);
    assert!(out.status.success(), "deploy over https:\n{}", text(&out));
    let out = in_lab(
        &lab,
        &["postflight", "--genconf-dir", g, "--timeout", "300"],
    );
    assert!(out.status.success(), "{}", text(&out));
    for h in lab.hosts() {
        assert_eq!(
            ssh(&lab, &h.name, "cat /etc/tarmac/setup-flags/repository-url"),
            url,
            "{}",
            h.name
        );
        assert_eq!(
            ssh(
                &lab,
                &h.name,
                "cat /etc/tarmac/setup-flags/repository-ca.pem"
            ),
            ca.trim(),
            "{}: the pinned CA",
            h.name
        );
    }

    // An impostor on the same address: another genconf (so another CA) served by
    // `tarmac serve` with its own certificate for the same host.
    // (`genconf/` by name: config.yaml's relative paths are resolved against its parent)
    let evil = work.path().join("evil/genconf");
    std::fs::create_dir_all(&evil).unwrap();
    for f in ["config.yaml", "ip-detect"] {
        std::fs::copy(genconf.join(f), evil.join(f)).unwrap();
    }
    for f in ["ssh_key", "ssh_known_hosts"] {
        if genconf.join(f).exists() {
            std::fs::copy(genconf.join(f), evil.join(f)).unwrap();
        }
    }
    let e = evil.to_str().unwrap();
    regenconf(&lab, e, b);
    assert_ne!(
        std::fs::read_to_string(evil.join("tls/ca.pem")).unwrap(),
        ca
    );
    let _impostor = spawn_in_lab(&lab, &["serve", "--genconf-dir", e]);
    let agent = lab.hosts_with_role(Role::Agent).next().unwrap().clone();
    // tarmac-host refuses the impostor's certificate (once it listens), at once, naming the
    // URL and the CA it pins.
    // (pinned, as every remote fetch must be: the refusal to test is the certificate's)
    let zeros = "0".repeat(64);
    let cmd = format!(
        "for i in $(seq 1 60); do out=$(/opt/tarmac/tarmac-host fetch --repository-url {url} --sha256 nope--1={zeros}:1 nope--1 2>&1); case $out in *certificate*) break ;; esac; sleep 0.5; done; printf '%s\\n' \"$out\""
    );
    let out = ssh(&lab, &agent.name, &cmd);
    assert!(
        out.contains(&format!(
            "{url}/packages/nope/nope--1.tar.zst: certificate not signed by the cluster CA (/etc/tarmac/setup-flags/repository-ca.pem)"
        )),
        "{out}"
    );
    // install.sh as deploy delivered it (over SSH): its repository check refuses it too.
    let script = std::fs::read_to_string(genconf.join("serve/install.sh")).unwrap();
    let manifest = script
        .lines()
        .find_map(|l| l.strip_prefix("readonly MANIFEST_PATH="))
        .unwrap()
        .to_owned();
    let fp = script
        .lines()
        .find_map(|l| l.strip_prefix("readonly REPOSITORY_CA_FINGERPRINT="))
        .unwrap()
        .to_owned();
    assert!(fp.starts_with("sha256:"), "{fp}");
    let out = ssh(
        &lab,
        &agent.name,
        "bash /var/lib/tarmac-push/install.sh --preflight-only agent 2>&1; echo rc=$?",
    );
    assert!(out.ends_with("rc=2"), "{out}");
    assert!(
        out.contains(&format!(
            "{url}/{manifest}: certificate not signed by the cluster CA (genconf/tls/ca.pem, {fp}), or not issued for this host: refusing to download"
        )),
        "{out}"
    );
    lab.down().unwrap();
}
