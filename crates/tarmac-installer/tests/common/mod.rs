//! Helpers of the integration tests: a genconf directory with a serve directory and config,
//! and the fake fleet.
#![allow(dead_code)]

pub mod fake;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tarmac_config::{Distribution, Input, resolve};
use tarmac_events::{Event, EventSink, Sink};
use tarmac_installer::stages::Installer;
use tarmac_types::PackageId;

pub const MASTERS: [&str; 3] = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];
pub const AGENTS: [&str; 4] = ["10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4"];
pub const PUBLIC: [&str; 1] = ["10.0.2.1"];

pub fn ids(s: &[&str]) -> Vec<PackageId> {
    s.iter().map(|i| PackageId::parse(i).unwrap()).collect()
}

#[derive(Default)]
pub struct Collect(pub Mutex<Vec<Event>>);

impl EventSink for Collect {
    fn emit(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

/// A cluster of 3 masters, 4 agents and 1 public agent, every host on `old` (generation 1),
/// and a genconf whose serve directory holds the list `list_id` of `new`.
pub struct Cluster {
    pub tmp: tempfile::TempDir,
    pub fleet: fake::FakeFleet,
    pub events: Arc<Collect>,
}

pub const OLD: [&str; 2] = ["app--1", "exporter--1"];
pub const NEW: [&str; 2] = ["app--2", "exporter--1"];

impl Cluster {
    pub fn new() -> Self {
        Self::with_hosts(|fleet, h| fleet.add(h, &ids(&OLD)))
    }

    /// The same cluster before `deploy`: no host has Tarmac yet.
    pub fn bare() -> Self {
        Self::with_hosts(|fleet, h| fleet.add_bare(h))
    }

    fn with_hosts(add: impl Fn(&fake::FakeFleet, &str)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let g = tmp.path().join("genconf");
        std::fs::create_dir_all(g.join("serve/package_lists")).unwrap();
        std::fs::create_dir_all(g.join("secrets")).unwrap();
        std::fs::write(
            g.join("config.yaml"),
            format!(
                "cluster_name: fake\nmaster_list: [{}]\nagent_list: [{}]\npublic_agent_list: [{}]\nbootstrap_url: file:///srv/tarmac\n",
                MASTERS.join(", "),
                AGENTS.join(", "),
                PUBLIC.join(", ")
            ),
        )
        .unwrap();
        std::fs::write(
            g.join("secrets/manifest.json"),
            r#"{"format":1,"packages":{}}"#,
        )
        .unwrap();
        std::fs::write(g.join("ip-detect"), "#!/bin/sh\necho 10.0.0.1\n").unwrap();
        let fleet = fake::FakeFleet::new();
        fleet.set_repository(g.join("serve"));
        for h in MASTERS.iter().chain(&AGENTS).chain(&PUBLIC) {
            add(&fleet, h);
        }
        let c = Cluster {
            tmp,
            fleet,
            events: Arc::default(),
        };
        c.serve("list-new", &NEW);
        c
    }

    pub fn genconf(&self) -> PathBuf {
        self.tmp.path().join("genconf")
    }

    /// Make `list_id` with `packages` the served list.
    pub fn serve(&self, list_id: &str, packages: &[&str]) {
        let s = self.genconf().join("serve");
        let body = serde_json::to_string(packages).unwrap();
        std::fs::write(
            s.join(format!("package_lists/{list_id}.package_list.json")),
            body,
        )
        .unwrap();
        std::fs::write(s.join("cluster-package-list.latest"), list_id).unwrap();
        // genconf renders install.sh for the list it serves.
        std::fs::write(
            s.join("install.sh"),
            format!(
                "#!/bin/bash\nreadonly BOOTSTRAP_URL='file:///srv/tarmac'\nreadonly PACKAGE_LIST_ID='{list_id}'\n"
            ),
        )
        .unwrap();
    }

    /// Add a line to config.yaml (before [`Self::installer`]).
    pub fn config_line(&self, line: &str) {
        let p = self.genconf().join("config.yaml");
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str(line);
        text.push('\n');
        std::fs::write(p, text).unwrap();
    }

    pub fn installer(&self) -> Installer {
        let dist =
            Distribution::from_parts("schema.yaml", "format: 1\nparameters: {}\n", vec![]).unwrap();
        let text = std::fs::read_to_string(self.genconf().join("config.yaml")).unwrap();
        let cfg = resolve(
            &dist,
            &Input {
                text: &text,
                file_label: "genconf/config.yaml".into(),
                base_dir: self.tmp.path().to_owned(),
            },
        )
        .unwrap_or_else(|r| {
            panic!(
                "{}",
                r.to_json_map()
                    .into_iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        let sink: Sink = self.events.clone();
        Installer::new(&self.genconf(), cfg, sink).with_transport(Arc::new(self.fleet.clone()))
    }

    /// `upgrade.json`'s word for every host.
    pub fn words(&self) -> Vec<(String, String)> {
        let st = tarmac_installer::upgrade::UpgradeState::load(&self.genconf().join("state"))
            .expect("upgrade.json");
        st.hosts
            .iter()
            .map(|(h, w)| (h.clone(), w.to_string()))
            .collect()
    }

    pub fn word(&self, host: &str) -> String {
        self.words()
            .into_iter()
            .find(|(h, _)| h == host)
            .map(|(_, w)| w)
            .unwrap_or_else(|| panic!("{host} not in upgrade.json"))
    }

    pub fn gen_of(&self, host: &str) -> u64 {
        self.fleet.host(host).current
    }

    pub fn active_of(&self, host: &str) -> Vec<PackageId> {
        self.fleet.host(host).active()
    }
}
