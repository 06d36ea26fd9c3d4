//! The reference distribution on real systemd hosts of three Debian releases (a lab of 3
//! masters and 1 agent: master-1 bullseye, master-2 bookworm, master-3 trixie, agent-1
//! bullseye): build it (plus a small cluster-config package with the lab's addresses,
//! standing in for genconf's), install every host with nothing but the exported `tarmac-host`
//! binary and the package files listed in the signed manifest, activate, and require: an etcd
//! quorum of 3 started members, prometheus scraping every node, node-exporter on every
//! host, units only on the right roles, package users owning their state directories, and
//! every `check/` passing. The packages are self-contained (built once, on this machine) and
//! `tarmac-host` is the portable build, so the same artifacts run on every release. Needs
//! root and the lab. `cargo test -p tarmac-build --test lab_reference`; uses
//! `$TARMAC_HOST_BIN`, else `$TARMAC_PORTABLE_BIN_DIR/tarmac-host` (the portable build
//! scripts/test.sh makes), else what `scripts/build-portable.sh` builds.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tarmac_build::{BuildOptions, build};
use tarmac_lab::{Lab, LabGuard, LabSpec, Role, Suite, Suites};
use tarmac_pkg::manifest::{self, ArtifactKind};

const LAB: &str = "tb-refdist";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The portable tarmac-host (the bullseye hosts' glibc 2.31 cannot run a build of this
/// machine's).
fn host_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TARMAC_HOST_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let dir = match std::env::var_os("TARMAC_PORTABLE_BIN_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => {
            let script = workspace().join("scripts/build-portable.sh");
            let out = std::process::Command::new(&script)
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

fn write(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn sh(lab: &Lab, host: &str, cmd: &str) -> String {
    let out = lab.ssh(host, cmd).unwrap();
    assert!(
        out.status.success(),
        "{host}: `{cmd}` failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn copy(lab: &Lab, host: &str, src: &Path, dest: &str, mode: &str) {
    let mut c = lab.ssh_command("root", host).unwrap();
    c.arg("--").arg(format!(
        "mkdir -p \"$(dirname {dest})\" && cat > {dest}.part && chmod {mode} {dest}.part && mv {dest}.part {dest}"
    ));
    c.stdin(fs::File::open(src).unwrap()).stdout(Stdio::null());
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "copy to {host}:{dest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Poll `cmd` on `host` until it succeeds; on the deadline, fail with its last output.
fn wait_for(lab: &Lab, host: &str, cmd: &str, deadline: Duration) -> String {
    let start = Instant::now();
    loop {
        let out = lab.ssh(host, cmd).unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            return text;
        }
        assert!(
            start.elapsed() < deadline,
            "{host}: `{cmd}` still failing after {deadline:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// A package with the cluster configuration genconf would render for this lab.
fn config_package(tree: &Path, masters: &[String], all: &[String]) {
    let p = tree.join("packages/lab-config");
    write(&p.join("buildinfo.json"), "{}");
    write(
        &p.join("build"),
        "cp -r /pkg/extra/. \"$PKG_PATH/\"\nchmod 755 \"$PKG_PATH/bin/detect_ip\"\n",
    );
    let x = p.join("extra");
    write(
        &x.join("bin/detect_ip"),
        "#!/bin/sh\nset -e\nhostname -I | cut -d' ' -f1\n",
    );
    let cluster: Vec<String> = masters
        .iter()
        .map(|ip| format!("etcd-{ip}=http://{ip}:2380"))
        .collect();
    let endpoints: Vec<String> = masters
        .iter()
        .map(|ip| format!("http://{ip}:2379"))
        .collect();
    write(
        &x.join("etc_master/etcd/etcd.env"),
        &format!(
            "ETCD_DATA_DIR=/var/lib/tarmac/etcd\nETCD_INITIAL_CLUSTER={}\nETCD_INITIAL_CLUSTER_TOKEN=tarmac-lab\nETCD_INITIAL_CLUSTER_STATE=new\nTARMAC_ETCD_CLIENT_PORT=2379\nTARMAC_ETCD_PEER_PORT=2380\nTARMAC_ETCD_CLUSTER_SIZE={}\nTARMAC_ETCD_QUORUM={}\nTARMAC_ETCD_ENDPOINTS={}\n",
            cluster.join(","),
            masters.len(),
            masters.len() / 2 + 1,
            endpoints.join(",")
        ),
    );
    let nodes: Vec<String> = all.iter().map(|ip| format!("'{ip}:9100'")).collect();
    write(
        &x.join("etc_master/prometheus/prometheus.yml"),
        &format!(
            "global:\n  scrape_interval: 2s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['localhost:9090']\n  - job_name: node\n    static_configs:\n      - targets: [{}]\n",
            nodes.join(", ")
        ),
    );
    write(
        &x.join("etc_master/prometheus/prometheus.env"),
        "PROMETHEUS_LISTEN_PORT=9090\nPROMETHEUS_ARGS=\"--config.file=/opt/tarmac/etc/prometheus/prometheus.yml --web.listen-address=:9090 --storage.tsdb.path=/var/lib/tarmac/prometheus\"\n",
    );
    let eps: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    write(
        &x.join("etc/cluster/cluster.json"),
        &format!("{{\"etcd_endpoints\": [{}]}}\n", eps.join(", ")),
    );
}

#[test]
fn reference_distribution_runs_on_the_lab() {
    let _ = Lab::down(LAB);
    let suites = Suites {
        cycle: Suite::ALL.to_vec(),
        per_role: Vec::new(),
    };
    let lab = LabGuard::new(
        Lab::up_with_suites(
            &LabSpec::new(LAB, 3, 1, 0),
            &suites,
            &tarmac_events::NullSink,
        )
        .unwrap(),
    );
    // Debian 11, 12 and 13 among the masters; the agent is bullseye again.
    let versions: Vec<String> = lab
        .hosts()
        .iter()
        .map(|h| sh(&lab, &h.name, ". /etc/os-release && echo $VERSION_ID"))
        .collect();
    assert_eq!(versions, ["11", "12", "13", "11"]);
    let masters: Vec<String> = lab
        .hosts_with_role(Role::Master)
        .map(|h| h.ip.to_string())
        .collect();
    let all: Vec<String> = lab.hosts().iter().map(|h| h.ip.to_string()).collect();

    // Build: the reference tree plus the lab's configuration package, signed.
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("reference");
    copy_dir(&workspace().join("dist/reference"), &tree);
    config_package(&tree, &masters, &all);
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
    let sink: tarmac_events::Sink = Arc::new(tarmac_events::NullSink);
    let report = build(&o, sink).unwrap();
    let b = report.bootstrap.unwrap();
    let m = manifest::verify_file(&b.manifest, &public).unwrap();
    m.check_all(&o.out).unwrap();

    // Install every host from the artifacts alone.
    let host_art = m.first(ArtifactKind::HostBinary).unwrap().clone();
    let ids: Vec<String> = m.packages.iter().map(|i| i.to_string()).collect();
    std::thread::scope(|s| {
        for h in lab.hosts() {
            let (lab, m, host_art, o, ids) = (&lab, &m, &host_art, &o, &ids);
            s.spawn(move || {
                let name = h.name.as_str();
                copy(
                    lab,
                    name,
                    &o.out.join(&host_art.path),
                    "/usr/local/bin/tarmac-host",
                    "0755",
                );
                let sum = sh(lab, name, "sha256sum /usr/local/bin/tarmac-host");
                assert!(sum.starts_with(&host_art.sha256.hex()), "{name}: {sum}");
                sh(
                    lab,
                    name,
                    &format!(
                        "mkdir -p /etc/tarmac/roles && touch /etc/tarmac/roles/{}",
                        h.role
                    ),
                );
                for id in &m.packages {
                    let art = m.package(id).unwrap();
                    let dest = format!("/tmp/pkgs/{id}.tar.zst");
                    copy(lab, name, &o.out.join(&art.path), &dest, "0644");
                    sh(
                        lab,
                        name,
                        &format!("tarmac-host add {dest} --sha256 {}", art.sha256),
                    );
                }
                sh(
                    lab,
                    name,
                    &format!("tarmac-host activate {}", ids.join(" ")),
                );
            });
        }
    });

    // Units only on their roles, users own their state.
    for h in lab.hosts() {
        let n = h.name.as_str();
        wait_for(
            &lab,
            n,
            "systemctl is-active tarmac-node-exporter.service",
            Duration::from_secs(60),
        );
        let etcd_unit = lab
            .ssh(n, "systemctl cat tarmac-etcd.service")
            .unwrap()
            .status
            .success();
        assert_eq!(etcd_unit, h.role == Role::Master, "{n}: etcd unit presence");
        if h.role == Role::Master {
            wait_for(
                &lab,
                n,
                "systemctl is-active tarmac-etcd.service tarmac-prometheus.service",
                Duration::from_secs(60),
            );
            assert_eq!(
                sh(&lab, n, "stat -c %U /var/lib/tarmac/etcd"),
                "tarmac_etcd"
            );
            assert_eq!(
                sh(&lab, n, "stat -c %U /var/lib/tarmac/prometheus"),
                "tarmac_prometheus"
            );
            // etcd-start first asks the other members whether they already list this one
            // (a replaced master joins as `existing`), then execs etcd.
            wait_for(&lab, n, "pgrep -x etcd", Duration::from_secs(60));
            assert_eq!(sh(&lab, n, "ps -o user= -C etcd"), "tarmac_etcd");
        } else {
            assert!(
                !lab.ssh(n, "test -e /opt/tarmac/bin/etcd")
                    .unwrap()
                    .status
                    .success()
            );
        }
    }

    // A real quorum: three started members; a write through one master is read on another.
    let m1 = lab
        .hosts_with_role(Role::Master)
        .next()
        .unwrap()
        .name
        .clone();
    let m3 = lab
        .hosts_with_role(Role::Master)
        .nth(2)
        .unwrap()
        .name
        .clone();
    let eps: Vec<String> = masters
        .iter()
        .map(|ip| format!("http://{ip}:2379"))
        .collect();
    let ctl = format!(
        "ETCDCTL_API=3 /opt/tarmac/bin/etcdctl --endpoints={}",
        eps.join(",")
    );
    let members = wait_for(
        &lab,
        &m1,
        &format!("{ctl} member list | grep -c ', started, ' | grep -x 3"),
        Duration::from_secs(90),
    );
    assert_eq!(members.trim(), "3");
    sh(
        &lab,
        &m1,
        &format!(
            "ETCDCTL_API=3 /opt/tarmac/bin/etcdctl --endpoints=http://{}:2379 put tarmac-lab hello",
            masters[0]
        ),
    );
    let got = sh(
        &lab,
        &m3,
        &format!(
            "ETCDCTL_API=3 /opt/tarmac/bin/etcdctl --endpoints=http://{}:2379 get --print-value-only tarmac-lab",
            masters[2]
        ),
    );
    assert_eq!(got, "hello");

    // Every check of every package passes on every host (prometheus needs a scrape of
    // every node first, so poll).
    let mut results = BTreeMap::new();
    for h in lab.hosts() {
        let out = wait_for(
            &lab,
            &h.name,
            "tarmac-host check --json --timeout 20",
            Duration::from_secs(120),
        );
        results.insert(h.name.clone(), out);
    }
    let master_checks = &results[&m1];
    for check in [
        "\"etcd\"",
        "\"prometheus\"",
        "\"node-exporter\"",
        "\"node-units\"",
        "\"node-disk\"",
        "\"node-install\"",
        "\"cluster-members\"",
    ] {
        assert!(
            master_checks.contains(check),
            "{check} missing from {master_checks}"
        );
    }
    let targets = sh(
        &lab,
        &m1,
        "curl -fsS 'http://127.0.0.1:9090/api/v1/targets?state=active'",
    );
    assert_eq!(
        targets.matches("\"health\":\"up\"").count(),
        all.len() + 1,
        "{targets}"
    );

    let report = lab.down().unwrap();
    assert!(report.existed);
}
