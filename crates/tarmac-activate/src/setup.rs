//! `tarmac-host setup`: the bootstrap flow run by `tarmac-setup.service`.
//!
//! Reads `<config-dir>/setup-flags/`:
//! - `repository-url`: base URL of the repository (`http://…`, `https://…`, `file:///…` or a
//!   path); for https the caller's [`Fetcher`] trusts only the cluster CA
//!   (`repository-ca.pem`, read by `tarmac-host`);
//! - `cluster-package-list`: either the package list itself (JSON, see
//!   [`parse_package_list`]) or a list id, fetched from
//!   `<url>/package_lists/<id>.json` (or pkgpanda's `<id>.package_list.json`);
//! - optional `manifest.json` (the build's manifest) giving each package's sha256, with
//!   `manifest.json.sig` verified against `signing-key.pub` when that key is present;
//! - optional `signing-key.fingerprint` (`sha256:<hex>`, from the operator via install.sh's
//!   `--expect-key-fingerprint`): then the manifest must be signed, by exactly that key.
//!
//! Then fetches what is missing (verifying sha256 while streaming), activates the set and
//! starts `tarmac.target`. Without setup flags it just (re)starts the current generation.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::Serialize;
use tarmac_events::Level;
use tarmac_pkg::Fetcher;
use tarmac_pkg::fetch::join_url;
use tarmac_pkg::manifest;
use tarmac_types::{Digest, PackageId};

use crate::error::ActivateError;
use crate::lock::HostLock;
use crate::switch::SwitchReport;
use crate::{Host, generation};

/// One package of a cluster package list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListEntry {
    pub id: PackageId,
    pub sha256: Option<Digest>,
}

/// Parse a package list: `["a--1", …]`, `[{"id": "a--1", "sha256": "…"}, …]`, or an object
/// with such an array under `packages`. Duplicate ids are merged.
pub fn parse_package_list(bytes: &[u8]) -> Result<Vec<ListEntry>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let items = match &v {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Object(o) => match o.get("packages") {
            Some(serde_json::Value::Array(a)) => a,
            _ => return Err("expected an array, or an object with a `packages` array".into()),
        },
        _ => return Err("expected an array of package ids".into()),
    };
    let mut out: BTreeMap<PackageId, Option<Digest>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let (id, sha) = match item {
            serde_json::Value::String(s) => (s.as_str(), None),
            serde_json::Value::Object(o) => {
                let id = o
                    .get("id")
                    .and_then(|v| v.as_str())
                    .ok_or(format!("entry {i}: missing `id`"))?;
                let sha = match o.get("sha256") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => {
                        Some(s.parse::<Digest>().map_err(|e| format!("entry {i}: {e}"))?)
                    }
                    Some(_) => return Err(format!("entry {i}: `sha256` must be a string")),
                };
                (id, sha)
            }
            _ => return Err(format!("entry {i}: expected a package id")),
        };
        let id = PackageId::parse(id).map_err(|e| format!("entry {i}: {e}"))?;
        let slot = out.entry(id.clone()).or_insert(None);
        match (&slot, sha) {
            (Some(a), Some(b)) if *a != b => {
                return Err(format!("{id} is listed twice with different sha256"));
            }
            (_, Some(b)) => *slot = Some(b),
            _ => {}
        }
    }
    Ok(out
        .into_iter()
        .map(|(id, sha256)| ListEntry { id, sha256 })
        .collect())
}

/// What setup did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetupReport {
    pub repository_url: Option<String>,
    pub fetched: Vec<PackageId>,
    pub switch: Option<SwitchReport>,
}

fn setup_err(message: impl Into<String>) -> ActivateError {
    ActivateError::Setup {
        message: message.into(),
    }
}

impl Host {
    /// The package list the setup flags ask for, with sha256s where known.
    pub fn setup_package_list(
        &self,
        fetcher: &Fetcher,
    ) -> Result<Option<(String, Vec<ListEntry>)>, ActivateError> {
        let flags = self.cfg.setup_flags_dir();
        let url_file = flags.join("repository-url");
        let list_file = flags.join("cluster-package-list");
        if !url_file.exists() && !list_file.exists() {
            return Ok(None);
        }
        let read = |p: &Path| {
            fs::read_to_string(p)
                .map_err(|e| ActivateError::io("read", p, e))
                .map(|s| s.trim().to_owned())
        };
        let url = read(&url_file)?;
        let list_text = read(&list_file)?;
        let mut entries = if list_text.starts_with('[') || list_text.starts_with('{') {
            parse_package_list(list_text.as_bytes())
                .map_err(|e| setup_err(format!("{}: {e}", list_file.display())))?
        } else {
            let mut last = None;
            let mut found = None;
            for name in [
                format!("package_lists/{list_text}.json"),
                format!("package_lists/{list_text}.package_list.json"),
            ] {
                let u = join_url(&url, &name);
                match fetcher.get_bytes(&u) {
                    Ok(b) => {
                        found = Some((u, b));
                        break;
                    }
                    Err(e) if e.is_not_found() => last = Some(e),
                    Err(e) => {
                        return Err(ActivateError::SetupSource {
                            what: u,
                            source: Box::new(e),
                        });
                    }
                }
            }
            let Some((u, bytes)) = found else {
                return Err(ActivateError::SetupSource {
                    what: format!("package list {list_text}"),
                    source: Box::new(last.expect("tried at least one")),
                });
            };
            parse_package_list(&bytes).map_err(|e| setup_err(format!("{u}: {e}")))?
        };
        let manifest_path = flags.join("manifest.json");
        if manifest_path.exists() {
            let bytes = fs::read(&manifest_path)
                .map_err(|e| ActivateError::io("read", &manifest_path, e))?;
            let key_path = flags.join("signing-key.pub");
            let expected = expected_fingerprint(&flags)?;
            if expected.is_some() && !key_path.exists() {
                return Err(setup_err(format!(
                    "{} names the trusted signing key, but there is no {}: refusing an unsigned manifest",
                    flags.join(FINGERPRINT_FLAG).display(),
                    key_path.display()
                )));
            }
            let m = if key_path.exists() {
                let key = manifest::PublicKey::read(&key_path).map_err(|e| {
                    ActivateError::SetupSource {
                        what: key_path.display().to_string(),
                        source: Box::new(e),
                    }
                })?;
                if let Some(want) = &expected {
                    manifest::check_fingerprint(&key, want).map_err(|e| {
                        ActivateError::SetupSource {
                            what: key_path.display().to_string(),
                            source: Box::new(e),
                        }
                    })?;
                }
                let sig_path = manifest::signature_path(&manifest_path);
                let sig =
                    fs::read(&sig_path).map_err(|e| ActivateError::io("read", &sig_path, e))?;
                manifest::verify(&bytes, &sig, &key).map_err(|e| ActivateError::SetupSource {
                    what: manifest_path.display().to_string(),
                    source: Box::new(e),
                })?
            } else {
                self.notice(
                    Level::Warn,
                    format!(
                        "{}: no signing-key.pub; manifest signature not checked",
                        manifest_path.display()
                    ),
                );
                manifest::Manifest::parse_unverified(&bytes).map_err(|e| {
                    ActivateError::SetupSource {
                        what: manifest_path.display().to_string(),
                        source: Box::new(e),
                    }
                })?
            };
            for e in &mut entries {
                match (m.package(&e.id), e.sha256) {
                    (Ok(a), None) => e.sha256 = Some(a.sha256),
                    (Ok(a), Some(s)) if a.sha256 != s => {
                        return Err(setup_err(format!(
                            "{}: the package list says sha256 {s}, the manifest says {}",
                            e.id, a.sha256
                        )));
                    }
                    _ => {}
                }
            }
        }
        Ok(Some((url, entries)))
    }

    /// The bootstrap flow. See the module documentation.
    pub fn setup(&self, lock: &HostLock, fetcher: &Fetcher) -> Result<SetupReport, ActivateError> {
        let Some((url, entries)) = self.setup_package_list(fetcher)? else {
            if generation::current(&self.cfg)?.is_none() {
                return Err(setup_err(format!(
                    "no setup flags in {} and nothing is active\nhint: install.sh writes repository-url and cluster-package-list there",
                    self.cfg.setup_flags_dir().display()
                )));
            }
            let sd = self.systemd();
            sd.install_target()?;
            sd.daemon_reload()?;
            sd.start_target()?;
            return Ok(SetupReport {
                repository_url: None,
                fetched: Vec::new(),
                switch: None,
            });
        };
        let missing: Vec<(PackageId, Option<Digest>)> = entries
            .iter()
            .filter(|e| !self.store.contains(&e.id))
            .map(|e| (e.id.clone(), e.sha256))
            .collect();
        let mut fetched = Vec::new();
        for ((id, _), r) in missing
            .iter()
            .zip(self.fetch(lock, fetcher, &url, &missing, 4))
        {
            r?;
            fetched.push(id.clone());
        }
        let ids: Vec<PackageId> = entries.iter().map(|e| e.id.clone()).collect();
        let report = self.activate(lock, &ids, "setup")?;
        if report.unchanged {
            let sd = self.systemd();
            sd.install_target()?;
            sd.daemon_reload()?;
            sd.start_target()?;
        }
        Ok(SetupReport {
            repository_url: Some(url),
            fetched,
            switch: Some(report),
        })
    }
}

/// The operator's expected signing-key fingerprint, when install.sh was given one
/// (`--expect-key-fingerprint`): `setup` then refuses a manifest signed by any other key.
pub const FINGERPRINT_FLAG: &str = "signing-key.fingerprint";

fn expected_fingerprint(flags: &Path) -> Result<Option<String>, ActivateError> {
    let path = flags.join(FINGERPRINT_FLAG);
    match fs::read_to_string(&path) {
        Ok(text) => {
            manifest::parse_fingerprint(&text)
                .map(Some)
                .map_err(|e| ActivateError::SetupSource {
                    what: path.display().to_string(),
                    source: Box::new(e),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ActivateError::io("read", &path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_lists() {
        let d = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let l = parse_package_list(br#"["b--2", "a--1", "a--1"]"#).unwrap();
        assert_eq!(
            l.iter().map(|e| e.id.to_string()).collect::<Vec<_>>(),
            ["a--1", "b--2"]
        );
        let l = parse_package_list(
            format!(r#"{{"packages": [{{"id": "a--1", "sha256": "{d}"}}, "b--2"]}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(l[0].sha256.unwrap().hex(), d);
        assert_eq!(l[1].sha256, None);
        assert!(
            parse_package_list(b"[\"a---1\"]")
                .unwrap_err()
                .contains("entry 0")
        );
        assert!(parse_package_list(b"{\"x\": 1}").is_err());
        assert!(parse_package_list(br#"[{"id": "a--1", "sha256": "zz"}]"#).is_err());
    }
}
