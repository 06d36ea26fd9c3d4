//! Golden files of the reference distribution's config packages, determinism of the config
//! id, and secret masking.

mod common;

use common::*;
use tarmac_config::{EXPANDED_CONFIG_PATH, HIDDEN, Rendered, Scope, USER_CONFIG_PATH};
use tarmac_types::{PackageName, Role};

fn dump(r: &Rendered) -> String {
    let mut out = String::new();
    for (pkg, scopes) in &r.packages {
        for (scope, files) in scopes {
            for (path, f) in files {
                let secret = if f.secret { " secret" } else { "" };
                let group = f
                    .group
                    .as_deref()
                    .map(|g| format!(" group {g}"))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "===== {pkg} {scope} {path} ({:04o}{secret}{group})\n{}\n",
                    f.mode,
                    String::from_utf8_lossy(&f.bytes)
                ));
            }
        }
    }
    out
}

#[test]
fn golden_reference_config_packages() {
    let cfg = Genconf::new(SAMPLE).load().unwrap();
    let r = cfg.render().unwrap();
    insta::assert_snapshot!("reference_sample", dump(&r));
}

#[test]
fn single_master_with_remote_write() {
    let cfg = Genconf::new(
        "master_list: ['fd00::1']\nbootstrap_url: file:///opt/tarmac_install_tmp\n\
         prometheus_remote_write_url: https://metrics.example.com/api/v1/write\n\
         prometheus_remote_write_username: bob\nprometheus_remote_write_password: s3cret\n\
         node_exporter_systemd_collector: false\n",
    )
    .load()
    .unwrap();
    let r = cfg.render().unwrap();
    let master = r.for_role(Role::Master);
    let prom = master["etc/prometheus/prometheus.yml"];
    insta::assert_snapshot!(
        "ipv6_remote_write_prometheus",
        String::from_utf8_lossy(&prom.bytes)
    );
    // It holds a secret: a secret file, readable by root and the prometheus user's group.
    assert_eq!(prom.mode, 0o640);
    assert!(prom.secret);
    assert_eq!(prom.group.as_deref(), Some("tarmac_prometheus"));
    assert_eq!(prom.owner, None);
    let etcd = String::from_utf8_lossy(&master["etc/etcd/etcd.env"].bytes).into_owned();
    // Escaped for EnvironmentFile= and `sh` alike (`[` would be a glob in sh).
    assert!(
        etcd.contains("ETCD_INITIAL_CLUSTER=etcd-fd00::1=http://\\[fd00::1\\]:2380\n"),
        "{etcd}"
    );
    let ne =
        String::from_utf8_lossy(&master["etc/node-exporter/node-exporter.env"].bytes).into_owned();
    assert!(
        ne.contains("NODE_EXPORTER_ARGS=\"--web.listen-address=:9100\"\n"),
        "{ne}"
    );
}

#[test]
fn role_layout_in_packages() {
    let cfg = Genconf::new(SAMPLE).load().unwrap();
    let r = cfg.render().unwrap();
    let pkg = PackageName::new("tarmac-config").unwrap();
    let layout: Vec<(String, u32)> = r
        .package_layout(&pkg)
        .into_iter()
        .map(|(p, f)| (p, f.mode))
        .collect();
    assert_eq!(
        layout,
        [
            ("bin/detect_ip".to_owned(), 0o755),
            ("etc/cluster/cluster.json".to_owned(), 0o644),
            ("etc/dns/resolv.conf".to_owned(), 0o644),
            ("etc/node-exporter/node-exporter.env".to_owned(), 0o644),
            ("etc/tarmac-config/config-id".to_owned(), 0o644),
            ("etc/tarmac-config/expanded.config.json".to_owned(), 0o644),
            ("etc/tarmac-config/user.config.yaml".to_owned(), 0o644),
            ("etc_master/etcd/etcd.env".to_owned(), 0o644),
            ("etc_master/prometheus/prometheus.env".to_owned(), 0o644),
        ]
    );
    // The secret file is not in the package's archive, only in its secret layout.
    let secret: Vec<(String, u32)> = r
        .secret_layout(&pkg)
        .into_iter()
        .map(|(p, f)| (p, f.mode))
        .collect();
    assert_eq!(
        secret,
        [("etc_master/prometheus/prometheus.yml".to_owned(), 0o640)]
    );
    // Agents get no master files.
    assert!(!r.for_role(Role::Agent).contains_key("etc/etcd/etcd.env"));
    assert_eq!(
        r.packages[&pkg].keys().copied().collect::<Vec<_>>(),
        [Scope::Common, Scope::Role(Role::Master)]
    );
    // The ip-detect script is shipped byte for byte.
    assert_eq!(
        r.for_role(Role::Agent)["bin/detect_ip"].bytes,
        IP_DETECT.as_bytes()
    );
}

#[test]
fn same_input_same_bytes_and_id() {
    let a = Genconf::new(SAMPLE).load().unwrap();
    let b = Genconf::new(SAMPLE).load().unwrap();
    assert_eq!(a.config_id(), b.config_id());
    assert_eq!(a.render().unwrap(), b.render().unwrap());
    // Comments, key order and flow vs block style do not matter.
    let reordered = format!(
        "# my cluster\nbootstrap_url: http://10.0.0.254:8080\n{}",
        SAMPLE.replace("bootstrap_url: http://10.0.0.254:8080\n", "")
    );
    let c = Genconf::new(&reordered).load().unwrap();
    assert_eq!(c.config_id(), a.config_id());
}

#[test]
fn any_change_changes_the_id() {
    let base = Genconf::new(SAMPLE).load().unwrap().config_id();
    // The ip-detect script.
    let g = Genconf::with_ip_detect(SAMPLE, Some("#!/bin/sh\necho 10.0.0.9\n"));
    assert_ne!(g.load().unwrap().config_id(), base);
    // Any user key, even one set to its default value.
    let g = Genconf::new(&sample_plus("ssh_port: 22"));
    let with_default = g.load().unwrap();
    assert_ne!(with_default.config_id(), base);
    // A key used only by the SSH installer.
    let g = Genconf::new(&sample_plus("ssh_parallelism: 10"));
    assert_ne!(g.load().unwrap().config_id(), base);
    // A host.
    let g = Genconf::new(&sample_with(
        "public_agent_list",
        "public_agent_list: ['[fd00::8]:22']",
    ));
    assert_ne!(g.load().unwrap().config_id(), base);
}

#[test]
fn secrets_are_masked_in_shipped_copies() {
    let cfg = Genconf::new(&sample_plus(
        "prometheus_remote_write_url: https://m.example.com/w\nprometheus_remote_write_username: bob\nprometheus_remote_write_password: hunter2",
    ))
    .load()
    .unwrap();
    let r = cfg.render().unwrap();
    let common = r.for_role(Role::Agent);
    for path in [USER_CONFIG_PATH, EXPANDED_CONFIG_PATH] {
        let text = String::from_utf8_lossy(&common[path].bytes).into_owned();
        assert!(
            !text.contains("hunter2"),
            "{path} leaks the secret:\n{text}"
        );
        assert!(text.contains(HIDDEN), "{path}:\n{text}");
    }
    assert!(cfg.user_config_yaml(false).unwrap().contains("hunter2"));
    assert!(cfg.expanded_config_json(false).contains("hunter2"));
    assert!(
        cfg.secret_names()
            .contains("prometheus_remote_write_password")
    );
}

#[test]
fn host_lists_and_ssh_settings() {
    let g = Genconf::new(&sample_plus(
        "ssh_user: admin\nssh_key_path: keys/id_ed25519",
    ));
    let cfg = g.load().unwrap();
    let hosts: Vec<String> = cfg
        .all_hosts()
        .iter()
        .map(|(h, r)| format!("{h} {r}"))
        .collect();
    assert_eq!(
        hosts,
        [
            "10.0.0.1 master",
            "10.0.0.2 master",
            "10.0.0.3 master",
            "10.0.1.1 agent",
            "10.0.1.2:2222 agent",
            "[fd00::7]:22 agent_public"
        ]
    );
    let ssh = cfg.ssh();
    assert_eq!(ssh.user, "admin");
    assert_eq!(ssh.port, 22);
    // Relative paths are relative to the directory holding genconf/.
    assert_eq!(ssh.key_path, g.tmp.path().join("keys/id_ed25519"));
    assert_eq!(
        ssh.known_hosts,
        g.tmp.path().join("genconf/ssh_known_hosts")
    );
    assert_eq!(ssh.host_key_policy, tarmac_config::HostKeyPolicy::Strict);
    assert_eq!(ssh.parallelism, 50);
    assert_eq!(ssh.process_timeout, std::time::Duration::from_secs(600));
    assert_eq!(cfg.bootstrap_url(), "http://10.0.0.254:8080");
}

#[test]
fn secrets_enter_the_config_id_only_through_the_cluster_key() {
    use tarmac_config::{ID_KEY_FILE, IdKey};
    let with = |pw: &str| {
        sample_plus(&format!(
            "prometheus_remote_write_url: https://m.example.com/w\nprometheus_remote_write_username: bob\nprometheus_remote_write_password: {pw}"
        ))
    };
    let (a, b) = (
        Genconf::new(&with("Winter2024!")),
        Genconf::new(&with("hunter2")),
    );
    // Unkeyed, the secret does not enter the id at all: nothing to guess from.
    assert_eq!(a.load().unwrap().config_id(), b.load().unwrap().config_id());
    // Keyed, a changed secret changes the id; a different cluster key gives other ids.
    let k1 = IdKey::from_bytes([1; 32]);
    let k2 = IdKey::from_bytes([2; 32]);
    let a1 = a.load().unwrap().keyed(&k1).config_id();
    assert_ne!(a1, b.load().unwrap().keyed(&k1).config_id());
    assert_ne!(a1, a.load().unwrap().keyed(&k2).config_id());
    assert_eq!(a1, a.load().unwrap().keyed(&k1).config_id());
    // load_genconf makes the key once (0600) and reuses it: same config, same id.
    let first = tarmac_config::load_genconf(&a.dir(), &dist())
        .unwrap()
        .config_id();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(a.dir().join(ID_KEY_FILE))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let again = tarmac_config::load_genconf(&a.dir(), &dist())
        .unwrap()
        .config_id();
    assert_eq!(first, again);
    // A damaged key is a clear error, not a silent new id.
    std::fs::write(a.dir().join(ID_KEY_FILE), "nope\n").unwrap();
    let err = tarmac_config::load_genconf(&a.dir(), &dist()).unwrap_err();
    assert!(
        err.render().contains("config-id.key is not 64 hex digits"),
        "{}",
        err.render()
    );
}
