//! Rolling upgrade and rollback of a running cluster.
//!
//! Order: masters one at a time, each gated on its node checks and then the cluster checks
//! (`tarmac-host check` on every master, polled with backoff up to a deadline); then agents
//! and public agents in batches with a failure budget. Past the budget the run stops and the
//! hosts not yet touched stay on their version.
//!
//! Per host: upload the target package list and (over SSH) the secret files of its role,
//! `tarmac-host fetch` every package with its sha256 (services keep running), then
//! `tarmac-host switch --confirm-within W`: the host records the pending confirmation on its
//! disk, points its setup flags at the new list and activates it, and goes back to its
//! previous generation by itself unless `tarmac-host confirm --generation N` comes within W
//! (also across a reboot: see `tarmac_activate::confirm`). After the checks pass the
//! installer confirms over a *new* SSH connection (a fresh fleet); a host the installer
//! cannot reach any more reverts by itself when the window ends. Host state is read as
//! `tarmac-host status --json` ([`HostStatus`](tarmac_types::confirm::HostStatus)); `--resume` reports a host that reverted by
//! itself as `reverted`.
//!
//! Modules: [`plan`] (batches, budgets, waves, per-host plans, archives), [`protocol`] (every
//! command a host runs, as pure functions with exact-string tests, and the parsers of their
//! answers), `state` (upgrade.json, for `--resume`) and `run` (the rolling execution). Their
//! public items are re-exported here.

pub mod plan;
pub mod protocol;
pub(crate) mod run;
mod state;

pub use plan::*;
pub use protocol::*;
pub use run::{UpgradeOptions, UpgradeReport};
pub use state::UpgradeState;

/// The cluster CA on a host (for an https bootstrap_url): the only CA tarmac-host trusts for it.
pub const REPOSITORY_CA_PATH: &str = tarmac_config::tls::HOST_CA_PATH;
/// Where the target package list is uploaded on a host.
pub const UPGRADE_DIR: &str = "/etc/tarmac/upgrade";

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use tarmac_types::{Generation, HostAddr, PackageId, Role};

    use super::*;

    fn id(s: &str) -> PackageId {
        PackageId::parse(s).unwrap()
    }

    fn h(s: &str) -> HostAddr {
        s.parse().unwrap()
    }

    #[test]
    fn batches_and_budgets() {
        assert_eq!("10%".parse::<BatchSize>().unwrap().of(50), 5);
        assert_eq!(DEFAULT_BATCH.parse::<BatchSize>(), Ok(BatchSize::DEFAULT));
        assert_eq!(UpgradeOptions::default().batch, BatchSize::DEFAULT);
        assert_eq!("10%".parse::<BatchSize>().unwrap().of(3), 1);
        assert_eq!("3".parse::<BatchSize>().unwrap().of(50), 3);
        assert!("0".parse::<BatchSize>().is_err());
        assert!("x".parse::<BatchSize>().is_err());
        assert_eq!("2".parse::<Budget>().unwrap().allowed(50), 2);
        assert_eq!("10%".parse::<Budget>().unwrap().allowed(50), 5);
        assert_eq!("10%".parse::<Budget>().unwrap().allowed(9), 0);
        assert!("101%".parse::<Budget>().is_err());
    }

    #[test]
    fn masters_alone_then_batches() {
        let hosts = vec![
            (h("10.0.0.4"), Role::Agent),
            (h("10.0.0.1"), Role::Master),
            (h("10.0.0.2"), Role::Master),
            (h("10.0.0.5"), Role::AgentPublic),
            (h("10.0.0.6"), Role::Agent),
        ];
        let w = waves(&hosts, BatchSize::Count(2));
        let shape: Vec<(bool, Vec<String>)> = w
            .iter()
            .map(|w| {
                (
                    w.masters,
                    w.hosts.iter().map(|(h, _)| h.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (true, vec!["10.0.0.1".to_owned()]),
                (true, vec!["10.0.0.2".to_owned()]),
                (false, vec!["10.0.0.4".to_owned(), "10.0.0.5".to_owned()]),
                (false, vec!["10.0.0.6".to_owned()]),
            ]
        );
    }

    #[test]
    fn a_new_agent_reloads_prometheus_and_restarts_nothing() {
        use tarmac_pkg::pkginfo::OnChange;
        let files = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let mut archives = BTreeMap::new();
        archives.insert(
            id("prometheus--2"),
            ArchiveInfo {
                units: vec![UnitFile {
                    role: Some(Role::Master),
                    name: "tarmac-prometheus.service".into(),
                }],
                watched: vec![
                    "etc/prometheus".into(),
                    "etc/prometheus/prometheus.yml".into(),
                ],
                rules: vec![
                    ("etc/prometheus".into(), OnChange::Restart),
                    ("etc/prometheus/prometheus.yml".into(), OnChange::Reload),
                ],
                files: BTreeMap::new(),
            },
        );
        let cfg = |v: &str, yml: &str, env: &str| {
            (
                id(&format!("tarmac-config--setup_{v}")),
                ArchiveInfo {
                    files: files(&[
                        ("etc_master/prometheus/prometheus.yml", yml),
                        ("etc_master/prometheus/prometheus.env", env),
                    ]),
                    ..ArchiveInfo::default()
                },
            )
        };
        for (i, a) in [cfg("b", "yml2", "env1"), cfg("c", "yml2", "env2")] {
            archives.insert(i, a);
        }
        let now = files(&[
            ("etc/prometheus/prometheus.yml", "yml1"),
            ("etc/prometheus/prometheus.env", "env1"),
        ]);
        let cur = [id("prometheus--2"), id("tarmac-config--setup_a")];
        let h: HostAddr = "10.0.0.1".parse().unwrap();
        let p = host_plan(
            &h,
            Role::Master,
            &cur,
            &[id("prometheus--2"), id("tarmac-config--setup_b")],
            &archives,
            Some(&now),
        );
        assert_eq!(p.restarts, Vec::<String>::new());
        assert_eq!(p.reloads, ["tarmac-prometheus.service"]);
        assert_eq!(
            p.reload_reasons["tarmac-prometheus.service"],
            "etc/prometheus/prometheus.yml changed"
        );
        let text = render_plan(
            "L",
            &waves(&[(h.clone(), Role::Master)], BatchSize::DEFAULT),
            &[p],
        );
        assert!(
            text.contains("  reload (no restart): tarmac-prometheus.service\n    tarmac-prometheus.service: etc/prometheus/prometheus.yml changed\n"),
            "{text}"
        );
        // prometheus.env (under the restart path only) changed too: a restart, no reload.
        let p = host_plan(
            &h,
            Role::Master,
            &cur,
            &[id("prometheus--2"), id("tarmac-config--setup_c")],
            &archives,
            Some(&now),
        );
        assert_eq!(p.restarts, ["tarmac-prometheus.service"]);
        assert!(p.reloads.is_empty());
    }

    #[test]
    fn plan_text() {
        let cur = vec![
            id("etcd--3.5"),
            id("etcd-config--setup_aaa"),
            id("node-exporter--1"),
            id("old--1"),
        ];
        let tgt = vec![
            id("etcd--3.5"),
            id("etcd-config--setup_bbb"),
            id("new--2"),
            id("node-exporter--1"),
        ];
        let unit = |role, name: &str| UnitFile {
            role,
            name: name.into(),
        };
        let files = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let mut archives = BTreeMap::new();
        archives.insert(
            id("etcd--3.5"),
            ArchiveInfo {
                units: vec![unit(Some(Role::Master), "etcd.service")],
                watched: vec!["etc/etcd".into(), "bin/detect_ip".into()],
                rules: Vec::new(),
                files: files(&[("bin_master/etcd", "e1")]),
            },
        );
        archives.insert(
            id("etcd-config--setup_bbb"),
            ArchiveInfo {
                watched: vec!["etc/etcd-config".into()],
                rules: Vec::new(),
                files: files(&[
                    ("etc_master/etcd/etcd.env", "env2"),
                    ("etc/node-exporter/ne.env", "ne1"),
                    ("bin/detect_ip", "ip1"),
                ]),
                ..ArchiveInfo::default()
            },
        );
        archives.insert(
            id("node-exporter--1"),
            ArchiveInfo {
                units: vec![unit(None, "node-exporter.service")],
                watched: vec!["etc/node-exporter".into()],
                rules: Vec::new(),
                files: BTreeMap::new(),
            },
        );
        archives.insert(
            id("new--2"),
            ArchiveInfo {
                units: vec![unit(None, "new.service")],
                ..ArchiveInfo::default()
            },
        );
        // The master's current generation: etcd.env differs, node-exporter's env does not.
        let now = files(&[
            ("etc/etcd/etcd.env", "env1"),
            ("etc/node-exporter/ne.env", "ne1"),
            ("bin/detect_ip", "ip1"),
        ]);
        let m = host_plan(
            &h("10.0.0.1"),
            Role::Master,
            &cur,
            &tgt,
            &archives,
            Some(&now),
        );
        let a = host_plan(&h("10.0.0.4"), Role::Agent, &tgt, &tgt, &archives, None);
        let hosts = vec![(h("10.0.0.1"), Role::Master), (h("10.0.0.4"), Role::Agent)];
        let text = render_plan("abc123", &waves(&hosts, BatchSize::Count(10)), &[m, a]);
        assert_eq!(
            text,
            "upgrade to cluster package list abc123\n\
             order:\n  \
               1. master 10.0.0.1 (then cluster checks on every master)\n\
             10.0.0.1 (master):\n  \
               change etcd-config: setup_aaa -> setup_bbb\n  \
               add    new--2\n  \
               remove old--1\n  \
               restart: etcd.service, new.service\n    \
                 etcd.service: etc/etcd/etcd.env changed\n  \
               stop the units of: old--1\n\
             10.0.0.4 (agent): unchanged\n"
        );
    }

    #[test]
    fn archive_for_the_plan() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("etcd--1.tar.zst");
        let enc = zstd::stream::write::Encoder::new(std::fs::File::create(&path).unwrap(), 3)
            .unwrap()
            .auto_finish();
        let mut b = tar::Builder::new(enc);
        let mut add = |name: &str, body: &[u8]| {
            let mut hd = tar::Header::new_gnu();
            hd.set_size(body.len() as u64);
            hd.set_mode(0o644);
            hd.set_cksum();
            b.append_data(&mut hd, name, body).unwrap();
        };
        add(
            "pkginfo.json",
            br#"{"restart_on_change": ["bin/detect_ip"]}"#,
        );
        add("systemd_master/etcd.service", b"[Service]\n");
        add("etc_master/etcd/defaults.env", b"A=1\n");
        add("share/doc/etcd/copyright", b"x");
        b.into_inner().unwrap();
        let a = read_archive(&id("etcd--1"), &path).unwrap();
        assert_eq!(
            a.units,
            vec![UnitFile {
                role: Some(Role::Master),
                name: "etcd.service".into()
            }]
        );
        assert_eq!(a.watched, ["etc/etcd", "bin/detect_ip"]);
        assert_eq!(
            a.files.keys().collect::<Vec<_>>(),
            ["etc_master/etcd/defaults.env"]
        );
        assert_eq!(
            a.files["etc_master/etcd/defaults.env"],
            tarmac_types::Digest::of(b"A=1\n").hex()
        );
        let t = target_tree(
            Role::Master,
            &[id("etcd--1")],
            &[(id("etcd--1"), a.clone())].into(),
        );
        assert!(t.contains_key("etc/etcd/defaults.env"));
        assert!(
            target_tree(Role::Agent, &[id("etcd--1")], &[(id("etcd--1"), a)].into()).is_empty()
        );
    }

    #[test]
    fn watched_files_and_trees() {
        assert_eq!(
            status_command(&["etc/etcd".into(), "bin/detect ip".into()], false),
            "if [ -x /opt/tarmac/tarmac-host ]; then /opt/tarmac/tarmac-host --json status --watched etc/etcd --watched 'bin/detect ip'; fi"
        );
        let st = parse_host_status(
            r#"{"format":1,"current":3,"previous":2,"active":["a--1"],"pending":null,
                "units":{"a.service":"active"},"switch":null,
                "watched":{"etc/etcd/etcd.env":"0123"}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(st.current, Some(Generation(3)));
        assert_eq!(st.active, vec![id("a--1")]);
        assert_eq!(st.watched["etc/etcd/etcd.env"], "0123");
        // No tarmac-host: nothing printed, not installed.
        assert_eq!(parse_host_status("\n").unwrap(), None);
        let e = parse_host_status(r#"{"format":2,"current":null}"#).unwrap_err();
        assert!(e.to_string().contains("format 2"), "{e}");
        assert!(parse_host_status("== active\n").is_err());
        let a: BTreeMap<String, String> = [("etc/x/a".to_owned(), "1".to_owned())].into();
        let b: BTreeMap<String, String> = [
            ("etc/x/a".to_owned(), "1".to_owned()),
            ("etc/xy/b".to_owned(), "2".to_owned()),
        ]
        .into();
        assert_eq!(first_difference(&a, &b, "etc/x"), None);
        assert_eq!(first_difference(&a, &b, "etc/xy"), Some("etc/xy/b".into()));
    }

    #[test]
    fn host_scripts() {
        assert_eq!(
            fetch_command("http://10.0.0.254:8080", "abc"),
            "/opt/tarmac/tarmac-host fetch --repository-url http://10.0.0.254:8080 --package-list /etc/tarmac/upgrade/abc.package_list.json --require-sha256"
        );
        assert_eq!(
            fetch_command_from(
                "http://10.0.0.254:8080",
                "abc",
                &["http://10.0.0.5:8089".into(), "http://10.0.0.1:8089".into()]
            ),
            "/opt/tarmac/tarmac-host fetch --repository-url http://10.0.0.254:8080 --package-list /etc/tarmac/upgrade/abc.package_list.json --require-sha256 --mirror http://10.0.0.5:8089 --mirror http://10.0.0.1:8089"
        );
        assert_eq!(
            switch_command(Duration::from_secs(120), "abc", &[id("a--1"), id("b--2")]),
            "/opt/tarmac/tarmac-host --wait --json switch --confirm-within 120s --setup-list /etc/tarmac/upgrade/abc.package_list.json a--1 b--2"
        );
        assert_eq!(
            status_command(&[], true),
            "if [ -x /opt/tarmac/tarmac-host ]; then /opt/tarmac/tarmac-host --wait --json status --recover; fi"
        );
        assert_eq!(
            confirm_command(Generation(4)),
            "/opt/tarmac/tarmac-host --wait confirm --generation 4"
        );
        assert_eq!(revert_command(), "/opt/tarmac/tarmac-host --wait revert");
        assert_eq!(
            rollback_command(Some(2)),
            "/opt/tarmac/tarmac-host --wait --json rollback --to 2 --set-setup-list"
        );
        assert_eq!(
            rollback_command(None),
            "/opt/tarmac/tarmac-host --wait --json rollback --set-setup-list"
        );
        let out = parse_switch(
            r#"{"from":3,"to":4,"unchanged":false,"pending":{"format":1,"from":3,"to":4,
                "armed_unix":10,"deadline_unix":130,"boot_id":"b"}}"#,
        )
        .unwrap();
        assert_eq!((out.to, out.pending.from), (Generation(4), Generation(3)));
        assert!(parse_switch("GEN 4\n").is_err());
        assert_eq!(
            parse_rollback(r#"{"from":4,"to":3,"unchanged":false}"#).unwrap(),
            Generation(3)
        );
    }

    #[test]
    fn host_commands_parse_in_sh() {
        for s in [
            switch_command(Duration::from_secs(5), "abc", &[id("a--1")]),
            confirm_command(Generation(2)),
            revert_command(),
            rollback_command(None),
            status_command(&["etc/a".into()], true),
            crate::plan::with_operation("op", &switch_command(Duration::from_secs(5), "abc", &[])),
        ] {
            let st = std::process::Command::new("sh")
                .arg("-n")
                .arg("-c")
                .arg(&s)
                .status()
                .unwrap();
            assert!(st.success(), "{s}");
        }
    }
}
