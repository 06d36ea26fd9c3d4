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
//! Then fetches what is missing (each archive bounded by its pinned size and verified
//! against its sha256 before it is extracted), activates the set and
//! starts `tarmac.target`. Without setup flags it just (re)starts the current generation.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::Serialize;
use tarmac_events::Level;
use tarmac_pkg::fetch::join_url;
use tarmac_pkg::manifest;
use tarmac_pkg::{Fetcher, Pin};
use tarmac_types::{Digest, PackageId};

use crate::error::ActivateError;
use crate::lock::HostLock;
use crate::switch::SwitchReport;
use crate::{Host, generation};

/// One package of a cluster package list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListEntry {
    pub id: PackageId,
    /// sha256 and size of the archive; required to fetch from a remote repository.
    pub pin: Option<Pin>,
}

/// Parse a package list: `[{"id": "a--1", "sha256": "…", "size": 123}, …]` (what
/// `tarmac genconf` writes), pkgpanda's bare `["a--1", …]`, or an object with such an array
/// under `packages`. Duplicate ids are merged. An entry with a sha256 but no size comes from
/// an older genconf and is refused with a hint to re-run it.
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
    let mut out: BTreeMap<PackageId, Option<Pin>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let (id, pin) = match item {
            serde_json::Value::String(s) => (parse_id(i, s)?, None),
            serde_json::Value::Object(o) => {
                let id = o
                    .get("id")
                    .and_then(|v| v.as_str())
                    .ok_or(format!("entry {i}: missing `id`"))?;
                let id = parse_id(i, id)?;
                let null = |k: &str| matches!(o.get(k), None | Some(serde_json::Value::Null));
                let pin = match (null("sha256"), null("size")) {
                    (true, true) => None,
                    (false, true) => {
                        return Err(format!(
                            "entry {i} ({id}): `sha256` without `size`: this package list was written by an older `tarmac genconf`\nhint: re-run `tarmac genconf` and use the package list it writes (it gives every package's sha256 and size)"
                        ));
                    }
                    (true, false) => {
                        return Err(format!("entry {i} ({id}): `size` without `sha256`"));
                    }
                    (false, false) => {
                        let sha256 = match &o["sha256"] {
                            serde_json::Value::String(s) => s
                                .parse::<Digest>()
                                .map_err(|e| format!("entry {i} ({id}): {e}"))?,
                            _ => {
                                return Err(format!("entry {i} ({id}): `sha256` must be a string"));
                            }
                        };
                        let size = o["size"].as_u64().ok_or(format!(
                            "entry {i} ({id}): `size` must be a number of bytes"
                        ))?;
                        Some(Pin { sha256, size })
                    }
                };
                (id, pin)
            }
            _ => return Err(format!("entry {i}: expected a package id")),
        };
        let slot = out.entry(id.clone()).or_insert(None);
        match (&slot, pin) {
            (Some(a), Some(b)) if *a != b => {
                return Err(format!(
                    "{id} is listed twice with different pins ({a} and {b})"
                ));
            }
            (_, Some(b)) => *slot = Some(b),
            _ => {}
        }
    }
    Ok(out
        .into_iter()
        .map(|(id, pin)| ListEntry { id, pin })
        .collect())
}

fn parse_id(i: usize, s: &str) -> Result<PackageId, String> {
    PackageId::parse(s).map_err(|e| format!("entry {i}: {e}"))
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
    /// The package list the setup flags ask for, with pins (sha256 and size) where known.
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
                let Ok(a) = m.package(&e.id) else { continue };
                let listed = Pin {
                    sha256: a.sha256,
                    size: a.size,
                };
                match e.pin {
                    None => e.pin = Some(listed),
                    Some(p) if p != listed => {
                        return Err(setup_err(format!(
                            "{}: the package list says sha256 {} ({} bytes), the manifest says {} ({} bytes)",
                            e.id, p.sha256, p.size, a.sha256, a.size
                        )));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(Some((url, entries)))
    }

    /// Peers to fetch from before repository-url (`repository-mirrors`, one http:// URL per
    /// line, written by install.sh for this run only; absent: none).
    pub fn mirrors(&self) -> Result<Vec<String>, ActivateError> {
        let path = self.cfg.setup_flags_dir().join(MIRRORS_FLAG);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("http://"))
                .map(str::to_owned)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(ActivateError::io("read", &path, e)),
        }
    }

    /// The bootstrap flow. See the module documentation.
    pub fn setup(&self, lock: &HostLock, fetcher: &Fetcher) -> Result<SetupReport, ActivateError> {
        // At boot, before the flags are read: a switch still unconfirmed from before the
        // reboot (or past its deadline) goes back, and restores the flags it replaced.
        self.enforce_pending(lock, &crate::confirm::SystemClock)?;
        let Some((url, entries)) = self.setup_package_list(fetcher)? else {
            if generation::current(&self.cfg)?.is_none() {
                return Err(ActivateError::NoSetupFlags {
                    dir: self.cfg.setup_flags_dir(),
                });
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
        let missing: Vec<(PackageId, Option<Pin>)> = entries
            .iter()
            .filter(|e| !self.store.contains(&e.id))
            .map(|e| (e.id.clone(), e.pin))
            .collect();
        let mirrors = self.mirrors()?;
        let mut fetched = Vec::new();
        for ((id, _), r) in missing
            .iter()
            .zip(self.fetch_from(lock, fetcher, &mirrors, &url, &missing, 4))
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

/// Peers tried before repository-url (see [`Host::mirrors`]).
pub const MIRRORS_FLAG: &str = "repository-mirrors";

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
        assert_eq!(l[0].pin, None);
        let l = parse_package_list(
            format!(r#"{{"packages": [{{"id": "a--1", "sha256": "{d}", "size": 8351}}, "b--2"]}}"#)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(l[0].pin.unwrap().to_string(), format!("{d}:8351"));
        assert_eq!(l[1].pin, None);
        assert_eq!(
            parse_package_list(b"[\"a---1\"]").unwrap_err(),
            "entry 0: invalid package version `-1` in `a---1`: must match ^[a-zA-Z0-9@_+:.]+$ (no `-`)"
        );
        assert_eq!(
            parse_package_list(b"{\"x\": 1}").unwrap_err(),
            "expected an array, or an object with a `packages` array"
        );
        assert_eq!(
            parse_package_list(br#"[{"id": "a--1", "sha256": "zz", "size": 1}]"#).unwrap_err(),
            "entry 0 (a--1): invalid sha256 `zz`: expected 64 hex characters"
        );
        // A list from an older genconf (sha256, no size): refused with the fix.
        assert_eq!(
            parse_package_list(format!(r#"[{{"id": "a--1", "sha256": "{d}"}}]"#).as_bytes())
                .unwrap_err(),
            "entry 0 (a--1): `sha256` without `size`: this package list was written by an older `tarmac genconf`\nhint: re-run `tarmac genconf` and use the package list it writes (it gives every package's sha256 and size)"
        );
        assert_eq!(
            parse_package_list(br#"[{"id": "a--1", "size": 3}]"#).unwrap_err(),
            "entry 0 (a--1): `size` without `sha256`"
        );
        assert_eq!(
            parse_package_list(
                format!(r#"[{{"id": "a--1", "sha256": "{d}", "size": -3}}]"#).as_bytes()
            )
            .unwrap_err(),
            "entry 0 (a--1): `size` must be a number of bytes"
        );
        assert_eq!(
            parse_package_list(
                format!(r#"[{{"id": "a--1", "sha256": "{d}", "size": 3}}, {{"id": "a--1", "sha256": "{d}", "size": 4}}]"#)
                    .as_bytes()
            )
            .unwrap_err(),
            format!("a--1 is listed twice with different pins ({d}:3 and {d}:4)")
        );
    }
}
