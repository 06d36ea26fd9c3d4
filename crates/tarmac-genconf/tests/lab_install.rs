//! The "advanced install" path on real systemd hosts, without the SSH installer: build the
//! reference distribution (signed), `tarmac genconf` on the lab's genconf/, `tarmac serve` in
//! the lab's control namespace, then on every host `curl …/install.sh | bash -s -- <role>`.
//! Requires: a healthy etcd quorum of 3 started members, node-exporter on every host,
//! prometheus scraping every node and every etcd, config files only on the right roles,
//! and a second install.sh run refused by the preflight.
//!
//! Needs root and the lab. Prerequisite: `cargo build -p tarmac -p tarmac-host`; the bootstrap
//! ships `$TARMAC_PORTABLE_BIN_DIR/tarmac-host` when that is set (scripts/test.sh).
//! `cargo test -p tarmac-genconf --test lab_install`

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tarmac_build::{BuildOptions, build};
use tarmac_config::Distribution;
use tarmac_genconf::{GenconfOptions, genconf};
use tarmac_lab::{Lab, LabGuard, LabSpec, Role};
use tarmac_pkg::manifest;
use tarmac_pkg::pack::PackOptions;

const LAB: &str = "gc-install";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn target_bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let p = target.join("debug").join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build -p tarmac -p tarmac-host` first",
        p.display()
    );
    p
}

/// The `tarmac-host` the bootstrap ships: the portable build (glibc >= 2.17) in
/// `$TARMAC_PORTABLE_BIN_DIR` when it is set (scripts/test.sh builds it and sets it), else
/// `target/debug/tarmac-host`.
fn host_binary() -> PathBuf {
    match std::env::var_os("TARMAC_PORTABLE_BIN_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => {
            let p = PathBuf::from(dir).join("tarmac-host");
            assert!(
                p.is_file(),
                "TARMAC_PORTABLE_BIN_DIR is set but {} is missing\nhint: run scripts/build-portable.sh",
                p.display()
            );
            p
        }
        None => target_bin("tarmac-host"),
    }
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

fn run(lab: &Lab, host: &str, cmd: &str) -> (i32, String) {
    let out = lab.ssh(host, cmd).unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn sh(lab: &Lab, host: &str, cmd: &str) -> String {
    let (code, text) = run(lab, host, cmd);
    assert_eq!(code, 0, "{host}: `{cmd}` failed:\n{text}");
    text.trim().to_owned()
}

fn wait_for(lab: &Lab, host: &str, cmd: &str, deadline: Duration) -> String {
    let start = Instant::now();
    loop {
        let (code, text) = run(lab, host, cmd);
        if code == 0 {
            return text;
        }
        assert!(
            start.elapsed() < deadline,
            "{host}: `{cmd}` still failing after {deadline:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// `tarmac serve` in the control namespace; killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `bytes` as a `printf` format that prints exactly them.
fn printf_arg(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:03o}")).collect()
}

/// What an operator does before the self-install of a host: copy the secret files of its
/// role (genconf/secrets, never served) over SSH to /etc/tarmac/secrets/<id>/, root, 0600.
fn deliver_secrets(lab: &Lab, host: &str, role: Role, gdir: &Path) {
    let dir = gdir.join("secrets");
    let m =
        tarmac_pkg::secrets::SecretsManifest::parse(&fs::read(dir.join("manifest.json")).unwrap())
            .unwrap();
    for (id, p) in &m.packages {
        let files: Vec<&str> = p
            .files
            .iter()
            .filter(|f| f.applies_to(role))
            .map(|f| f.path.as_str())
            .collect();
        if files.is_empty() {
            continue;
        }
        for rel in std::iter::once(".key").chain(files) {
            let dest = format!("/etc/tarmac/secrets/{id}/{rel}");
            let parent = dest.rsplit_once('/').unwrap().0;
            let bytes = fs::read(dir.join(id).join(rel)).unwrap();
            sh(
                lab,
                host,
                &format!(
                    "umask 077 && mkdir -p {parent} && printf '{}' > {dest}",
                    printf_arg(&bytes)
                ),
            );
        }
    }
}

#[test]
fn curl_install_sh_brings_up_the_reference_cluster() {
    let _ = Lab::down(LAB);
    let lab =
        LabGuard::new(Lab::up(&LabSpec::new(LAB, 3, 2, 0), &tarmac_events::NullSink).unwrap());

    // A signed build of the reference distribution.
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("reference");
    copy_dir(&workspace().join("dist/reference"), &tree);
    let cache = std::env::var_os("TARMAC_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tarmac-build-cache"));
    let mut o = BuildOptions::new(&tree, cache);
    o.out = d.path().join("out");
    o.pack.level = 3;
    o.vars.insert(
        "TARMAC_HOST_BIN".into(),
        host_binary().to_string_lossy().into_owned(),
    );
    let key = d.path().join("k.key");
    let public = d.path().join("k.pub");
    manifest::keygen(&key, &public, false).unwrap();
    o.sign_key = Some(key);
    let sink: tarmac_events::Sink = Arc::new(tarmac_events::NullSink);
    build(&o, sink.clone()).unwrap();

    // genconf on the lab's own genconf/ (config.yaml listing the hosts, ip-detect), with
    // fast scrapes so the test need not wait long.
    let gdir = d.path().join("genconf");
    copy_dir(&lab.dir().join("genconf"), &gdir);
    let mut config = fs::read_to_string(gdir.join("config.yaml")).unwrap();
    config.push_str("prometheus_scrape_interval: 2s\nprometheus_scrape_timeout: 1s\n");
    fs::write(gdir.join("config.yaml"), &config).unwrap();
    let dist = Distribution::load(&workspace().join("dist/reference/config")).unwrap();
    let opts = GenconfOptions {
        genconf_dir: gdir.clone(),
        build_dir: o.out.clone(),
        public_key: Some(public),
        pack: PackOptions {
            level: 3,
            workers: 2,
        },
    };
    let report = genconf(&dist, &opts, &sink).unwrap();
    assert!(report.signed);
    let cfg = tarmac_config::load_genconf(&gdir, &dist).unwrap();
    let url = cfg.bootstrap_url().to_owned();
    let listen = url.trim_start_matches("http://").to_owned();

    // Serve it from the control namespace.
    let _server = Server(
        lab.ctl_command(target_bin("tarmac"))
            .args(["serve", "--genconf-dir"])
            .arg(&gdir)
            .arg("--dist")
            .arg(workspace().join("dist/reference"))
            .args(["--listen", &listen])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let m1 = lab
        .hosts_with_role(Role::Master)
        .next()
        .unwrap()
        .name
        .clone();
    wait_for(
        &lab,
        &m1,
        &format!("curl -fsS -o /dev/null {url}/install.sh"),
        Duration::from_secs(20),
    );

    // The preflight alone, as an agent.
    let a1 = lab
        .hosts_with_role(Role::Agent)
        .next()
        .unwrap()
        .name
        .clone();
    let pre = sh(
        &lab,
        &a1,
        &format!("curl -fsSL {url}/install.sh | bash -s -- --preflight-only agent"),
    );
    assert!(pre.contains("Preflight checks passed"), "{pre}");
    assert!(pre.contains("free TCP ports (9100)"), "{pre}");

    // Install every host at once, each pulling by itself (the masters' secret prometheus.yml
    // is not in what `tarmac serve` hands out: copied over SSH first, as genconf says).
    for h in lab.hosts() {
        deliver_secrets(&lab, &h.name, h.role, &gdir);
    }
    std::thread::scope(|s| {
        for h in lab.hosts() {
            let (lab, url) = (&lab, &url);
            s.spawn(move || {
                let out = sh(
                    lab,
                    &h.name,
                    &format!("curl -fsSL {url}/install.sh | bash -s -- {}", h.role),
                );
                assert!(out.contains("Tarmac is installed"), "{}: {out}", h.name);
            });
        }
    });

    // Roles and config files land where they belong.
    let masters: Vec<String> = lab
        .hosts_with_role(Role::Master)
        .map(|h| h.ip.to_string())
        .collect();
    for h in lab.hosts() {
        let n = h.name.as_str();
        sh(&lab, n, &format!("test -e /etc/tarmac/roles/{}", h.role));
        assert_eq!(sh(&lab, n, "/opt/tarmac/bin/detect_ip"), h.ip.to_string());
        assert_eq!(
            sh(&lab, n, "cat /opt/tarmac/etc/tarmac-config/config-id"),
            report.config_id
        );
        let has_etcd_env = run(&lab, n, "test -e /opt/tarmac/etc/etcd/etcd.env").0 == 0;
        assert_eq!(
            has_etcd_env,
            h.role == Role::Master,
            "{n}: etcd.env presence"
        );
        // The secret prometheus.yml: root and prometheus's group only, masters only.
        let prom = run(
            &lab,
            n,
            "stat -L -c '%a %U:%G' /opt/tarmac/etc/prometheus/prometheus.yml",
        );
        if h.role == Role::Master {
            assert_eq!(
                (prom.0, prom.1.trim()),
                (0, "640 root:tarmac_prometheus"),
                "{n}"
            );
        } else {
            assert_ne!(prom.0, 0, "{n} has prometheus.yml: {}", prom.1);
            assert_ne!(run(&lab, n, "test -e /etc/tarmac/secrets").0, 0, "{n}");
        }
        wait_for(
            &lab,
            n,
            "systemctl is-active tarmac-node-exporter.service",
            Duration::from_secs(60),
        );
    }

    // A real quorum, configured by genconf: 3 started members, a write read elsewhere.
    let eps: Vec<String> = masters
        .iter()
        .map(|ip| format!("http://{ip}:2379"))
        .collect();
    let ctl = format!(
        "ETCDCTL_API=3 /opt/tarmac/bin/etcdctl --endpoints={}",
        eps.join(",")
    );
    wait_for(
        &lab,
        &m1,
        &format!("{ctl} member list | grep -c ', started, ' | grep -x 3"),
        Duration::from_secs(90),
    );
    let m3 = lab
        .hosts_with_role(Role::Master)
        .nth(2)
        .unwrap()
        .name
        .clone();
    sh(
        &lab,
        &m1,
        &format!(
            "ETCDCTL_API=3 /opt/tarmac/bin/etcdctl --endpoints=http://{}:2379 put genconf hello",
            masters[0]
        ),
    );
    let got = sh(
        &lab,
        &m3,
        &format!(
            "ETCDCTL_API=3 /opt/tarmac/bin/etcdctl --endpoints=http://{}:2379 get --print-value-only genconf",
            masters[2]
        ),
    );
    assert_eq!(got, "hello");
    let token = sh(
        &lab,
        &m1,
        "grep ^ETCD_INITIAL_CLUSTER_TOKEN= /opt/tarmac/etc/etcd/etcd.env",
    );
    assert_eq!(
        token,
        format!("ETCD_INITIAL_CLUSTER_TOKEN=tarmac-etcd-{LAB}")
    );

    // Prometheus scrapes itself, 3 etcds and 5 node exporters.
    let want = 1 + masters.len() + lab.hosts().len();
    wait_for(
        &lab,
        &m1,
        &format!(
            "test \"$(curl -fsS 'http://127.0.0.1:9090/api/v1/targets?state=active' | grep -o '\"health\":\"up\"' | wc -l)\" = {want}"
        ),
        Duration::from_secs(60),
    );

    // Running install.sh again is refused by the preflight (exit 2), nothing changes.
    let (code, text) = run(
        &lab,
        &a1,
        &format!("curl -fsSL {url}/install.sh | bash -s -- agent"),
    );
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("Tarmac is already installed on this host"),
        "{text}"
    );

    let down = lab.down().unwrap();
    assert!(down.existed);
}
