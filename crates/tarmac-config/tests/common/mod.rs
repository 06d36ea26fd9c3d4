//! Helpers shared by the integration tests: a genconf directory in a temp dir, validated
//! against the reference distribution.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tarmac_config::{Distribution, Input, Report, ResolvedConfig, resolve};

pub const IP_DETECT: &str =
    "#!/bin/sh\nset -e\nip -4 route get 1.1.1.1 | sed -n 's/.* src \\([0-9.]*\\).*/\\1/p'\n";

pub const SAMPLE: &str = "\
cluster_name: lab
master_list: [10.0.0.1, 10.0.0.2, 10.0.0.3]
agent_list:
  - 10.0.1.1
  - 10.0.1.2:2222
public_agent_list: ['[fd00::7]:22']
bootstrap_url: http://10.0.0.254:8080
resolvers: [10.0.0.53]
dns_search: [lab.example]
";

pub fn dist_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/reference/config")
}

pub fn dist() -> Distribution {
    static D: OnceLock<Distribution> = OnceLock::new();
    D.get_or_init(|| Distribution::load(&dist_dir()).expect("reference distribution loads"))
        .clone()
}

pub struct Genconf {
    pub tmp: tempfile::TempDir,
}

impl Genconf {
    pub fn new(config: &str) -> Self {
        Self::with_ip_detect(config, Some(IP_DETECT))
    }

    pub fn with_ip_detect(config: &str, ip_detect: Option<&str>) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let g = tmp.path().join("genconf");
        std::fs::create_dir(&g).unwrap();
        std::fs::write(g.join("config.yaml"), config).unwrap();
        if let Some(s) = ip_detect {
            std::fs::write(g.join("ip-detect"), s).unwrap();
        }
        Genconf { tmp }
    }

    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("genconf")
    }

    /// Validate with the file labelled `genconf/config.yaml` (stable messages).
    pub fn load(&self) -> Result<ResolvedConfig, Report> {
        let text = std::fs::read_to_string(self.dir().join("config.yaml")).unwrap();
        resolve(
            &dist(),
            &Input {
                text: &text,
                file_label: "genconf/config.yaml".into(),
                base_dir: self.tmp.path().to_owned(),
            },
        )
    }
}

/// Validate `config` (with a valid ip-detect script) and return `{key: message}`.
pub fn errors(config: &str) -> std::collections::BTreeMap<String, String> {
    match Genconf::new(config).load() {
        Ok(_) => Default::default(),
        Err(r) => r.to_json_map(),
    }
}

/// The sample config with `line` appended (later keys must not repeat earlier ones).
pub fn sample_plus(line: &str) -> String {
    format!("{SAMPLE}{line}\n")
}

/// The sample config with key `key` replaced by `line` (or removed when `line` is empty).
pub fn sample_with(key: &str, line: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for l in SAMPLE.lines() {
        if l.starts_with(&format!("{key}:")) {
            skipping = true;
            if !line.is_empty() {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        if skipping && (l.starts_with(' ') || l.starts_with('-')) {
            continue;
        }
        skipping = false;
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// Errors as (key, "line:col" or "-", message).
pub fn diags(config: &str) -> Vec<(String, String, String)> {
    match Genconf::new(config).load() {
        Ok(_) => Vec::new(),
        Err(r) => r
            .errors
            .iter()
            .map(|d| {
                let at = d.loc().map_or_else(|| "-".to_owned(), |l| l.to_string());
                (d.key.clone(), at, d.message.clone())
            })
            .collect(),
    }
}

pub fn d(key: &str, at: &str, message: &str) -> (String, String, String) {
    (key.to_owned(), at.to_owned(), message.to_owned())
}
