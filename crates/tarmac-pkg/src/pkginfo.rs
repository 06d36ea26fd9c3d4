//! `pkginfo.json`: what a package declares about itself at activation time.
//!
//! ```json
//! { "requires": ["openssl", {"name": "python", "variant": null}],
//!   "environment": {"ETCD_DATA_DIR": "/var/lib/tarmac/etcd"},
//!   "state_directory": true, "username": "tarmac_etcd", "group": "tarmac_etcd",
//!   "sysctl": {"etcd": {"vm.swappiness": 1}},
//!   "files": {"etc/etcd/peer.conf": {"group": "tarmac_etcd", "mode": "0640"},
//!             "etc_master/prometheus/prometheus.yml":
//!               {"secret": true, "hmac_sha256": "…", "group": "tarmac_prometheus", "mode": "0640"}} }
//! ```
//!
//! `files` gives files of the package's tree an owner, group and mode, applied on the host
//! at activation once the package users exist. A `secret` file is not in the package at all:
//! it is delivered over SSH to `/etc/tarmac/secrets/<id>/<path>` (see
//! [`crate::secrets`]), checked against `hmac_sha256`, and linked into the tree like a
//! package file.
//!
//! Parsing checks each field's shape and syntax; set-level rules (missing requirements,
//! reserved or repeated environment keys, sysctl conflicts) are checked at activation,
//! where the whole set is known.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;
use tarmac_types::{Digest, PackageName, Role};

/// A requirement on another package, by name (the variant is informative only).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Require {
    pub name: PackageName,
    /// `Some(None)` for `{"name": …, "variant": null}`, `None` for a bare name.
    pub variant: Option<Option<String>>,
}

impl fmt::Display for Require {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.variant {
            Some(Some(v)) => write!(f, "{} (variant {v})", self.name),
            _ => write!(f, "{}", self.name),
        }
    }
}

impl Serialize for Require {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match &self.variant {
            None => s.collect_str(&self.name),
            Some(v) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("name", &self.name)?;
                m.serialize_entry("variant", v)?;
                m.end()
            }
        }
    }
}

/// A sysctl value: pkgpanda accepted integers and strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum SysctlValue {
    Int(i64),
    Str(String),
}

impl fmt::Display for SysctlValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SysctlValue::Int(i) => write!(f, "{i}"),
            SysctlValue::Str(s) => f.write_str(s),
        }
    }
}

/// The parsed `pkginfo.json`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct PkgInfo {
    pub requires: Vec<Require>,
    /// Runtime environment the package adds to `/opt/tarmac/environment`.
    pub environment: BTreeMap<String, String>,
    /// Create `<state-dir-root>/<name>` at activation.
    pub state_directory: bool,
    /// System user the package runs as (created with `useradd --system`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Primary group of `username` (only valid together with it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `{service: {key: value}}`, applied for `<service>.service` units the package ships.
    pub sysctl: BTreeMap<String, BTreeMap<String, SysctlValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Paths of the merged tree (`etc/cluster`, `bin/detect_ip`) whose content change
    /// restarts this package's units even when the package itself did not change (a new
    /// config package from genconf, say). `etc/<name>` is always watched; see
    /// [`PkgInfo::watched_paths`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restart_on_change: Vec<String>,
    /// Paths of the merged tree whose content change makes the package's units *reload*
    /// (`systemctl reload`, the unit's `ExecReload`) instead of restart, when nothing else
    /// the package watches changed (prometheus re-reads `etc/prometheus` on SIGHUP). A
    /// changed file follows the most specific path covering it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reload_on_change: Vec<String>,
    /// Per-file owner, group and mode, and the secret files the package expects, by path
    /// in the package's tree (`etc_master/prometheus/prometheus.yml`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, FileSpec>,
    /// The special top-level directories of the package's archive (`bin_master`,
    /// `systemd`, …; see [`crate::layout`]), as the builder found them. With it (and
    /// `pkginfo.json` first in the archive, as tarmac builds them) a host whose roles use none
    /// of them keeps the verified archive without decompressing the rest; a full extraction
    /// checks the claim against the archive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub special_dirs: Option<Vec<String>>,
}

/// One entry of pkginfo's `files`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct FileSpec {
    /// `root` or a package user; unset = root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Unset = root's group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Permission bits; unset = the file's mode in the package (0600 for a secret file).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_mode"
    )]
    pub mode: Option<u32>,
    /// Delivered outside the package (over SSH), never in its archive.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    /// A secret file's HMAC-SHA256 under the package's secret key
    /// ([`crate::secrets::digest`]); a plain sha256 of a file holding a password would let
    /// anyone who reads the package guess the password offline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hmac_sha256: Option<Digest>,
}

impl FileSpec {
    /// The mode the file gets on the host, given its mode in the package (`None` for a
    /// secret file, which has none).
    pub fn effective_mode(&self, in_package: Option<u32>) -> u32 {
        self.mode
            .or(in_package)
            .unwrap_or(if self.secret { 0o600 } else { 0o644 })
    }
}

fn serialize_mode<S: serde::Serializer>(m: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    match m {
        Some(m) => s.serialize_str(&format!("{m:04o}")),
        None => s.serialize_none(),
    }
}

/// Where a `files` path lands: (`etc/prometheus/prometheus.yml`, Some(Master)) for
/// `etc_master/prometheus/prometheus.yml`. `None` when the path is not below one of the
/// link directories (`bin`, `etc`, `include`, `lib`, optionally role-suffixed).
pub fn tree_path(path: &str) -> Option<(String, Option<Role>)> {
    let (top, rest) = path.split_once('/')?;
    let (base, role) = Role::split_dir(top);
    if !crate::layout::LINK_DIRS.contains(&base) || rest.is_empty() {
        return None;
    }
    Some((format!("{base}/{rest}"), role))
}

/// A `files` path: relative, `/`-separated, below a link directory, no empty, `.` or `..`
/// components.
pub fn check_file_path(path: &str) -> Result<(), &'static str> {
    if path.starts_with('/') {
        return Err("it must be relative to the package root (no leading `/`)");
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == ".." || c.contains('\0'))
    {
        return Err("it has an empty, `.` or `..` component");
    }
    if tree_path(path).is_none() {
        return Err(
            "it must be a file below bin/, etc/, include/ or lib/ (optionally role-suffixed, like etc_master/)",
        );
    }
    Ok(())
}

/// Why a `pkginfo.json` was rejected. `origin` names the file or archive it came from.
#[derive(Debug, thiserror::Error)]
pub enum PkgInfoError {
    #[error("{origin}: pkginfo.json is not valid JSON")]
    Json {
        origin: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{origin}: pkginfo.json must be a JSON object")]
    NotObject { origin: String },
    #[error(
        "{origin}: pkginfo.json `special_dirs` names `{name}`, which is not a special directory (bin, lib, etc, systemd, check, … with an optional _<role>)"
    )]
    BadSpecialDir { origin: String, name: String },
    #[error("{origin}: pkginfo.json field `{field}` must be {expected}")]
    WrongType {
        origin: String,
        field: String,
        expected: &'static str,
    },
    #[error("{origin}: requires[{index}] = {value} is invalid: {reason}")]
    BadRequire {
        origin: String,
        index: usize,
        value: String,
        reason: String,
    },
    #[error("{origin}: environment key `{key}` is invalid: must match ^[A-Za-z_][A-Za-z0-9_]*$")]
    BadEnvKey { origin: String, key: String },
    #[error("{origin}: environment value of `{key}` contains a newline or NUL byte")]
    BadEnvValue { origin: String, key: String },
    #[error(
        "{origin}: username `{username}` is invalid: must match ^tarmac_[a-z0-9_]+$ (at most 32 characters)"
    )]
    BadUsername { origin: String, username: String },
    #[error(
        "{origin}: group `{group}` is invalid: a service may join only a package group (^tarmac_[a-z0-9_]+$) or systemd-journal, never a host group such as disk, shadow or adm"
    )]
    BadGroup { origin: String, group: String },
    #[error("{origin}: `group` ({group}) is set without `username`")]
    GroupWithoutUser { origin: String, group: String },
    #[error("{origin}: {key}[{index}] = `{path}` is invalid: {reason}")]
    BadRestartPath {
        origin: String,
        key: &'static str,
        index: usize,
        path: String,
        reason: &'static str,
    },
    #[error("{origin}: files[\"{path}\"] is invalid: {reason}")]
    BadFile {
        origin: String,
        path: String,
        reason: String,
    },
    #[error("{origin}: sysctl service name `{service}` is invalid")]
    BadSysctlService { origin: String, service: String },
    #[error("{origin}: sysctl key `{key}` of service `{service}` is invalid: {reason}")]
    BadSysctl {
        origin: String,
        service: String,
        key: String,
        reason: &'static str,
    },
}

impl tarmac_types::error_report::Hint for PkgInfoError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        Some(match self {
            PkgInfoError::BadRequire { .. } => Cow::Borrowed(
                "a requirement is a package name (`\"openssl\"`) or `{\"name\": \"openssl\", \"variant\": null}`, never an id",
            ),
            PkgInfoError::BadUsername { .. } => Cow::Borrowed(
                "package users are prefixed `tarmac_` so a package can never take over an existing account",
            ),
            PkgInfoError::BadRestartPath { .. } => Cow::Borrowed(
                "give paths of the active tree such as `etc/cluster` or `bin/detect_ip`",
            ),
            PkgInfoError::BadFile { .. } => Cow::Borrowed(
                "an entry looks like `\"etc/x.conf\": {\"group\": \"tarmac_x\", \"mode\": \"0640\"}`, or for a secret file `{\"secret\": true, \"hmac_sha256\": \"<64 hex>\", \"group\": …, \"mode\": …}`",
            ),
            _ => return None,
        })
    }
}

/// Username rule: `^tarmac_[a-z0-9_]+$`, at most 32 characters (the useradd limit).
pub fn username_ok(u: &str) -> bool {
    u.len() <= 32
        && u.strip_prefix("tarmac_").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// Group rule: `^[a-z_][a-z0-9_-]*$`, at most 32 characters.
/// The group a package's service user may join: its own kind (`tarmac_*`, created by
/// activation) or `systemd-journal` (to read its logs). A host group (`disk`, `shadow`, `adm`,
/// `docker`, …) would hand the service that group's privileges on every host.
pub fn service_group_ok(g: &str) -> bool {
    group_ok(g) && (username_ok(g) || g == "systemd-journal")
}

pub fn group_ok(g: &str) -> bool {
    let mut b = g.bytes();
    g.len() <= 32
        && b.next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == b'_')
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

/// Environment key rule: `^[A-Za-z_][A-Za-z0-9_]*$`.
pub fn env_key_ok(k: &str) -> bool {
    let mut b = k.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn sysctl_service_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'@' | b'_' | b'.' | b':' | b'-'))
}

fn sysctl_key_ok(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(['.', '/'])
        && !k.contains("..")
        && k.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'/'))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl PkgInfo {
    /// Parse and check `pkginfo.json`. Unknown keys are ignored (forward compatibility),
    /// as pkgpanda did; the builder rejects unknown keys in `buildinfo.json` instead.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<PkgInfo, PkgInfoError> {
        let origin = origin.to_owned();
        let v: Value = serde_json::from_slice(bytes).map_err(|source| PkgInfoError::Json {
            origin: origin.clone(),
            source,
        })?;
        let Value::Object(obj) = v else {
            return Err(PkgInfoError::NotObject { origin });
        };
        let wrong = |field: &str, expected: &'static str| PkgInfoError::WrongType {
            origin: origin.clone(),
            field: field.to_owned(),
            expected,
        };
        let mut info = PkgInfo::default();

        match obj.get("requires") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (index, item) in items.iter().enumerate() {
                    info.requires.push(parse_require(item).map_err(|reason| {
                        PkgInfoError::BadRequire {
                            origin: origin.clone(),
                            index,
                            value: item.to_string(),
                            reason,
                        }
                    })?);
                }
            }
            Some(_) => return Err(wrong("requires", "an array")),
        }

        match obj.get("environment") {
            None | Some(Value::Null) => {}
            Some(Value::Object(env)) => {
                for (k, v) in env {
                    let Value::String(s) = v else {
                        return Err(wrong(&format!("environment.{k}"), "a string"));
                    };
                    if !env_key_ok(k) {
                        return Err(PkgInfoError::BadEnvKey {
                            origin,
                            key: k.clone(),
                        });
                    }
                    if s.contains(['\n', '\r', '\0']) {
                        return Err(PkgInfoError::BadEnvValue {
                            origin,
                            key: k.clone(),
                        });
                    }
                    info.environment.insert(k.clone(), s.clone());
                }
            }
            Some(_) => return Err(wrong("environment", "an object of strings")),
        }

        match obj.get("state_directory") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => info.state_directory = *b,
            Some(_) => return Err(wrong("state_directory", "a boolean")),
        }

        match obj.get("username") {
            None | Some(Value::Null) => {}
            Some(Value::String(u)) if username_ok(u) => info.username = Some(u.clone()),
            Some(Value::String(u)) => {
                return Err(PkgInfoError::BadUsername {
                    origin,
                    username: u.clone(),
                });
            }
            Some(_) => return Err(wrong("username", "a string")),
        }

        match obj.get("group") {
            None | Some(Value::Null) => {}
            Some(Value::String(g)) if service_group_ok(g) => info.group = Some(g.clone()),
            Some(Value::String(g)) => {
                return Err(PkgInfoError::BadGroup {
                    origin,
                    group: g.clone(),
                });
            }
            Some(_) => return Err(wrong("group", "a string")),
        }
        if let (Some(group), None) = (&info.group, &info.username) {
            return Err(PkgInfoError::GroupWithoutUser {
                origin,
                group: group.clone(),
            });
        }

        match obj.get("sysctl") {
            None | Some(Value::Null) => {}
            Some(Value::Object(services)) => {
                for (service, keys) in services {
                    if !sysctl_service_ok(service) {
                        return Err(PkgInfoError::BadSysctlService {
                            origin,
                            service: service.clone(),
                        });
                    }
                    let Value::Object(keys) = keys else {
                        return Err(wrong(&format!("sysctl.{service}"), "an object"));
                    };
                    let mut out = BTreeMap::new();
                    for (key, value) in keys {
                        let bad = |reason| PkgInfoError::BadSysctl {
                            origin: origin.clone(),
                            service: service.clone(),
                            key: key.clone(),
                            reason,
                        };
                        if !sysctl_key_ok(key) {
                            return Err(bad("keys look like `vm.swappiness`"));
                        }
                        let value = match value {
                            Value::Number(n) => {
                                SysctlValue::Int(n.as_i64().ok_or_else(|| bad("not an integer"))?)
                            }
                            Value::String(s) if !s.contains(['\n', '\0']) => {
                                SysctlValue::Str(s.clone())
                            }
                            Value::String(_) => return Err(bad("value contains a newline")),
                            _ => return Err(bad("value must be an integer or a string")),
                        };
                        out.insert(key.clone(), value);
                    }
                    info.sysctl.insert(service.clone(), out);
                }
            }
            Some(_) => return Err(wrong("sysctl", "an object")),
        }

        match obj.get("variant") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => info.variant = Some(s.clone()),
            Some(_) => return Err(wrong("variant", "a string")),
        }

        match obj.get("special_dirs") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                let mut dirs = Vec::new();
                for item in items {
                    let Value::String(name) = item else {
                        return Err(wrong("special_dirs", "an array of strings"));
                    };
                    if crate::layout::SpecialDir::classify(name).is_none() {
                        return Err(PkgInfoError::BadSpecialDir {
                            origin,
                            name: name.clone(),
                        });
                    }
                    dirs.push(name.clone());
                }
                dirs.sort();
                dirs.dedup();
                info.special_dirs = Some(dirs);
            }
            Some(_) => return Err(wrong("special_dirs", "an array of strings")),
        }

        for key in ["restart_on_change", "reload_on_change"] {
            let mut paths = Vec::new();
            match obj.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for (index, item) in items.iter().enumerate() {
                        let Value::String(path) = item else {
                            return Err(wrong(&format!("{key}[{index}]"), "a string"));
                        };
                        if let Err(reason) = check_watch_path(path) {
                            return Err(PkgInfoError::BadRestartPath {
                                origin,
                                key,
                                index,
                                path: path.clone(),
                                reason,
                            });
                        }
                        paths.push(path.trim_end_matches('/').to_owned());
                    }
                }
                Some(_) => return Err(wrong(key, "an array of paths")),
            }
            match key {
                "restart_on_change" => info.restart_on_change = paths,
                _ => info.reload_on_change = paths,
            }
        }
        if let Some((index, path)) = info
            .reload_on_change
            .iter()
            .enumerate()
            .find(|(_, p)| info.restart_on_change.contains(p))
        {
            return Err(PkgInfoError::BadRestartPath {
                origin,
                key: "reload_on_change",
                index,
                path: path.clone(),
                reason: "it is in restart_on_change too; list each path once",
            });
        }

        match obj.get("files") {
            None | Some(Value::Null) => {}
            Some(Value::Object(files)) => {
                for (path, spec) in files {
                    let spec =
                        parse_file_spec(path, spec).map_err(|reason| PkgInfoError::BadFile {
                            origin: origin.clone(),
                            path: path.clone(),
                            reason,
                        })?;
                    info.files.insert(path.clone(), spec);
                }
            }
            Some(_) => return Err(wrong("files", "an object of paths")),
        }
        Ok(info)
    }

    /// The tree paths whose change restarts the units of package `name`: `etc/<name>`
    /// (where a config package puts a service's settings) plus `restart_on_change`.
    pub fn watched_paths(&self, name: &str) -> Vec<String> {
        let mut out = vec![format!("etc/{name}")];
        for p in &self.restart_on_change {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    }

    /// Every watched path of package `name` with what its change does: the restart paths
    /// of [`PkgInfo::watched_paths`] and the `reload_on_change` ones.
    pub fn watch_rules(&self, name: &str) -> Vec<(String, OnChange)> {
        let mut out: Vec<(String, OnChange)> = self
            .watched_paths(name)
            .into_iter()
            .map(|p| (p, OnChange::Restart))
            .collect();
        for p in &self.reload_on_change {
            out.push((p.clone(), OnChange::Reload));
        }
        out
    }
}

/// What a change of a watched file does to a package's running units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnChange {
    /// `systemctl reload` (the unit's `ExecReload`).
    Reload,
    /// Stop before the switch, start after it.
    Restart,
}

/// What changed files do under `rules` (from [`PkgInfo::watch_rules`]). Each file follows
/// the most specific path covering it (a `reload_on_change` path equal to the implicit
/// `etc/<name>` wins over it); then `Restart` if any file says restart, else `Reload` if
/// any says reload; with the first file that decided.
pub fn on_change<'a>(
    rules: &[(String, OnChange)],
    changed: impl IntoIterator<Item = &'a str>,
) -> Option<(OnChange, String)> {
    let under = |file: &str, prefix: &str| {
        file == prefix
            || file
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    let mut found: Option<(OnChange, String)> = None;
    for file in changed {
        // The most specific (longest) rule covering the file decides for it; a reload path
        // equal to the implicit `etc/<name>` overrides it.
        let Some(action) = rules
            .iter()
            .filter(|(p, _)| under(file, p))
            .max_by_key(|(p, a)| (p.len(), *a == OnChange::Reload))
            .map(|(_, a)| *a)
        else {
            continue;
        };
        match &found {
            Some((a, _)) if *a >= action => {}
            _ => found = Some((action, file.to_owned())),
        }
    }
    found
}

/// The top directories of the merged tree a watched path may be under.
pub const WATCH_ROOTS: &[&str] = &["bin", "lib", "etc", "include"];

/// A `restart_on_change` path: relative, `/`-separated, under one of [`WATCH_ROOTS`], no
/// `.` or `..` components.
pub fn check_watch_path(path: &str) -> Result<(), &'static str> {
    let p = path.trim_end_matches('/');
    if p.is_empty() {
        return Err("it is empty");
    }
    if p.starts_with('/') {
        return Err("it must be relative to the install root (no leading `/`)");
    }
    let mut parts = p.split('/');
    let first = parts.next().unwrap_or_default();
    if !WATCH_ROOTS.contains(&first) {
        return Err("it must start with bin/, lib/, etc/ or include/");
    }
    if p.split('/')
        .any(|c| c.is_empty() || c == "." || c == ".." || c.contains('\0'))
    {
        return Err("it has an empty, `.` or `..` component");
    }
    Ok(())
}

fn parse_file_spec(path: &str, v: &Value) -> Result<FileSpec, String> {
    check_file_path(path).map_err(str::to_owned)?;
    let Value::Object(o) = v else {
        return Err(format!("expected an object, found {}", type_name(v)));
    };
    let mut spec = FileSpec::default();
    let string = |k: &str| -> Result<Option<&str>, String> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!(
                "`{k}` must be a string, found {}",
                type_name(other)
            )),
        }
    };
    for k in o.keys() {
        if !["owner", "group", "mode", "secret", "hmac_sha256"].contains(&k.as_str()) {
            return Err(format!("unknown key `{k}`"));
        }
    }
    if let Some(u) = string("owner")? {
        if u != "root" && !username_ok(u) {
            return Err(format!(
                "owner `{u}` must be `root` or a package user (^tarmac_[a-z0-9_]+$)"
            ));
        }
        spec.owner = Some(u.to_owned());
    }
    if let Some(g) = string("group")? {
        if !group_ok(g) {
            return Err(format!("group `{g}` must match ^[a-z_][a-z0-9_-]*$"));
        }
        spec.group = Some(g.to_owned());
    }
    if let Some(m) = string("mode")? {
        let mode = u32::from_str_radix(m, 8)
            .ok()
            .filter(|_| !m.is_empty() && m.len() <= 4)
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                format!("mode `{m}` must be octal permission bits like \"0640\" (no setuid, setgid or sticky)")
            })?;
        spec.mode = Some(mode);
    }
    match o.get("secret") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => spec.secret = *b,
        Some(other) => {
            return Err(format!(
                "`secret` must be a boolean, found {}",
                type_name(other)
            ));
        }
    }
    if let Some(h) = string("hmac_sha256")? {
        spec.hmac_sha256 = Some(h.parse::<Digest>().map_err(|e| e.to_string())?);
    }
    match (spec.secret, spec.hmac_sha256.is_some()) {
        (true, false) => return Err("a secret file needs `hmac_sha256`".into()),
        (false, true) => return Err("`hmac_sha256` is only for secret files".into()),
        _ => {}
    }
    if spec.secret && spec.mode.is_some_and(|m| m & 0o007 != 0) {
        return Err(format!(
            "mode {:04o} gives other users access to a secret file",
            spec.mode.unwrap_or_default()
        ));
    }
    Ok(spec)
}

fn parse_require(v: &Value) -> Result<Require, String> {
    let name = |s: &str| -> Result<PackageName, String> {
        if s.contains("--") {
            return Err(format!("`{s}` is a package id; requires takes names"));
        }
        PackageName::new(s).map_err(|e| e.to_string())
    };
    match v {
        Value::String(s) => Ok(Require {
            name: name(s)?,
            variant: None,
        }),
        Value::Object(o) => {
            for k in o.keys() {
                if k != "name" && k != "variant" {
                    return Err(format!("unknown key `{k}`"));
                }
            }
            let n = match o.get("name") {
                Some(Value::String(s)) => name(s)?,
                Some(_) => return Err("`name` must be a string".into()),
                None => return Err("`name` is missing".into()),
            };
            let variant = match o.get("variant") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Null) => None,
                Some(_) => return Err("`variant` must be a string or null".into()),
                None => return Err("`variant` is missing (use null for the default)".into()),
            };
            Ok(Require {
                name: n,
                variant: Some(variant),
            })
        }
        other => Err(format!(
            "expected a string or an object, found {}",
            type_name(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<PkgInfo, PkgInfoError> {
        PkgInfo::parse(s.as_bytes(), "x--1")
    }

    #[test]
    fn full_example() {
        let i = parse(
            r#"{"requires": ["openssl", {"name": "python", "variant": null}, {"name":"a","variant":"v2"}],
                "environment": {"FOO": "bar baz", "_X1": ""},
                "state_directory": true, "username": "tarmac_etcd", "group": "systemd-journal",
                "sysctl": {"etcd": {"vm.swappiness": 1, "net.core.somaxconn": "1024"}},
                "future_key": 3}"#,
        )
        .unwrap();
        assert_eq!(i.requires.len(), 3);
        assert_eq!(i.requires[0].to_string(), "openssl");
        assert_eq!(i.requires[2].to_string(), "a (variant v2)");
        assert_eq!(i.environment["FOO"], "bar baz");
        assert!(i.state_directory);
        assert_eq!(i.username.as_deref(), Some("tarmac_etcd"));
        assert_eq!(i.sysctl["etcd"]["vm.swappiness"], SysctlValue::Int(1));
        assert_eq!(i.sysctl["etcd"]["net.core.somaxconn"].to_string(), "1024");
        assert_eq!(
            serde_json::to_string(&i.requires).unwrap(),
            r#"["openssl",{"name":"python","variant":null},{"name":"a","variant":"v2"}]"#
        );
    }

    #[test]
    fn empty_object_is_defaults() {
        assert_eq!(parse("{}").unwrap(), PkgInfo::default());
    }

    #[test]
    fn reload_on_change_follows_the_most_specific_path() {
        let i = parse(
            r#"{"restart_on_change": ["etc/cluster"], "reload_on_change": ["etc/prometheus"]}"#,
        )
        .unwrap();
        assert_eq!(i.reload_on_change, ["etc/prometheus"]);
        let rules = i.watch_rules("prometheus");
        let f = |files: &[&str]| on_change(&rules, files.iter().copied());
        assert_eq!(
            f(&["etc/prometheus/prometheus.yml"]),
            Some((OnChange::Reload, "etc/prometheus/prometheus.yml".into()))
        );
        assert_eq!(
            f(&["etc/prometheus/prometheus.yml", "etc/cluster/cluster.json"]),
            Some((OnChange::Restart, "etc/cluster/cluster.json".into()))
        );
        assert_eq!(f(&["etc/prometheusx/a", "bin/x"]), None);
        // Without reload_on_change, etc/<name> restarts.
        let plain = PkgInfo::default().watch_rules("prometheus");
        assert_eq!(
            on_change(&plain, ["etc/prometheus/prometheus.yml"]),
            Some((OnChange::Restart, "etc/prometheus/prometheus.yml".into()))
        );
        // A more specific restart path inside a reload path restarts.
        let i = parse(r#"{"restart_on_change": ["etc/prometheus/prometheus.env"], "reload_on_change": ["etc/prometheus"]}"#).unwrap();
        assert_eq!(
            on_change(
                &i.watch_rules("prometheus"),
                ["etc/prometheus/prometheus.env"]
            ),
            Some((OnChange::Restart, "etc/prometheus/prometheus.env".into()))
        );
        let e = parse(r#"{"restart_on_change": ["etc/a"], "reload_on_change": ["etc/a"]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "x--1: reload_on_change[0] = `etc/a` is invalid: it is in restart_on_change too"
            ),
            "{e}"
        );
    }

    #[test]
    fn restart_on_change_paths() {
        let i = parse(r#"{"restart_on_change": ["etc/cluster/", "bin/detect_ip", "etc/etcd"]}"#)
            .unwrap();
        assert_eq!(
            i.restart_on_change,
            ["etc/cluster", "bin/detect_ip", "etc/etcd"]
        );
        assert_eq!(
            i.watched_paths("etcd"),
            ["etc/etcd", "etc/cluster", "bin/detect_ip"]
        );
        assert_eq!(PkgInfo::default().watched_paths("x"), ["etc/x"]);
        for (bad, why) in [
            (
                "/etc/x",
                "it must be relative to the install root (no leading `/`)",
            ),
            ("var/x", "it must start with bin/, lib/, etc/ or include/"),
            ("etc/../x", "it has an empty, `.` or `..` component"),
            ("etc//x", "it has an empty, `.` or `..` component"),
            ("", "it is empty"),
        ] {
            let e = parse(&format!(r#"{{"restart_on_change": ["etc/a", "{bad}"]}}"#)).unwrap_err();
            assert_eq!(
                tarmac_types::error_report::text_with_hint(&e),
                format!(
                    "x--1: restart_on_change[1] = `{bad}` is invalid: {why}\nhint: give paths of the active tree such as `etc/cluster` or `bin/detect_ip`"
                )
            );
        }
        assert_eq!(
            parse(r#"{"restart_on_change": "etc/a"}"#)
                .unwrap_err()
                .to_string(),
            "x--1: pkginfo.json field `restart_on_change` must be an array of paths"
        );
    }

    #[test]
    fn rejects() {
        let cases: &[(&str, &str)] = &[
            ("[]", "must be a JSON object"),
            ("{", "not valid JSON"),
            (r#"{"requires": ["foo--1"]}"#, "is a package id"),
            (r#"{"requires": [{"name": "x"}]}"#, "`variant` is missing"),
            (r#"{"requires": [{"variant": null}]}"#, "`name` is missing"),
            (r#"{"requires": [3]}"#, "found a number"),
            (r#"{"requires": "x"}"#, "must be an array"),
            (r#"{"requires": [".x"]}"#, "invalid package name"),
            (r#"{"environment": {"A-B": "x"}}"#, "environment key `A-B`"),
            (
                r#"{"environment": {"A": 1}}"#,
                "`environment.A` must be a string",
            ),
            (r#"{"environment": {"A": "x\ny"}}"#, "newline"),
            (r#"{"state_directory": "yes"}"#, "must be a boolean"),
            (r#"{"username": "root"}"#, "username `root` is invalid"),
            (r#"{"username": "tarmac_"}"#, "is invalid"),
            (r#"{"username": "tarmac_Etcd"}"#, "is invalid"),
            (
                r#"{"username": "tarmac_a", "group": "Bad"}"#,
                "group `Bad` is invalid",
            ),
            (r#"{"group": "tarmac_adm"}"#, "without `username`"),
            (
                r#"{"username": "tarmac_a", "group": "disk"}"#,
                "group `disk` is invalid: a service may join only a package group (^tarmac_[a-z0-9_]+$) or systemd-journal, never a host group such as disk, shadow or adm",
            ),
            (r#"{"sysctl": {"svc": {"vm.x": 1.5}}}"#, "not an integer"),
            (r#"{"sysctl": {"svc": {"../x": 1}}}"#, "invalid"),
            (
                r#"{"sysctl": {"svc": 1}}"#,
                "`sysctl.svc` must be an object",
            ),
            (r#"{"sysctl": {"a b": {}}}"#, "service name `a b`"),
        ];
        for (input, want) in cases {
            let err = parse(input).expect_err(input).to_string();
            assert!(
                err.contains(want),
                "{input}: {err:?} should contain {want:?}"
            );
            assert!(err.starts_with("x--1: "), "{err}");
        }
    }

    #[test]
    fn files_entries() {
        let h = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let i = parse(&format!(
            r#"{{"files": {{"etc/x.conf": {{"group": "tarmac_x", "mode": "0640"}},
                "etc_master/p/p.yml": {{"secret": true, "hmac_sha256": "{h}", "owner": "root", "group": "tarmac_p", "mode": "640"}}}}}}"#
        ))
        .unwrap();
        assert_eq!(i.files["etc/x.conf"].mode, Some(0o640));
        assert!(!i.files["etc/x.conf"].secret);
        let p = &i.files["etc_master/p/p.yml"];
        assert!(p.secret);
        assert_eq!(p.hmac_sha256.unwrap().hex(), h);
        assert_eq!(p.effective_mode(None), 0o640);
        assert_eq!(
            FileSpec {
                secret: true,
                ..FileSpec::default()
            }
            .effective_mode(None),
            0o600
        );
        assert_eq!(FileSpec::default().effective_mode(Some(0o755)), 0o755);
        // Serialises back to the same shape (mode as an octal string).
        assert_eq!(
            serde_json::to_string(&i.files).unwrap(),
            format!(
                r#"{{"etc/x.conf":{{"group":"tarmac_x","mode":"0640"}},"etc_master/p/p.yml":{{"owner":"root","group":"tarmac_p","mode":"0640","secret":true,"hmac_sha256":"{h}"}}}}"#
            )
        );
        assert_eq!(
            tree_path("etc_master/p/p.yml"),
            Some(("etc/p/p.yml".into(), Some(Role::Master)))
        );
        assert_eq!(tree_path("bin/x"), Some(("bin/x".into(), None)));
        assert_eq!(tree_path("systemd/x.service"), None);
        let hint = "\nhint: an entry looks like `\"etc/x.conf\": {\"group\": \"tarmac_x\", \"mode\": \"0640\"}`, or for a secret file `{\"secret\": true, \"hmac_sha256\": \"<64 hex>\", \"group\": …, \"mode\": …}`";
        for (entry, path, reason) in [
            (
                r#""etc/a": {"secret": true}"#,
                "etc/a",
                "a secret file needs `hmac_sha256`",
            ),
            (
                &format!(r#""etc/a": {{"hmac_sha256": "{h}"}}"#),
                "etc/a",
                "`hmac_sha256` is only for secret files",
            ),
            (
                &format!(r#""etc/a": {{"secret": true, "hmac_sha256": "{h}", "mode": "0644"}}"#),
                "etc/a",
                "mode 0644 gives other users access to a secret file",
            ),
            (
                r#""etc/a": {"mode": "4755"}"#,
                "etc/a",
                "mode `4755` must be octal permission bits like \"0640\" (no setuid, setgid or sticky)",
            ),
            (
                r#""etc/a": {"mode": "rw"}"#,
                "etc/a",
                "mode `rw` must be octal permission bits like \"0640\" (no setuid, setgid or sticky)",
            ),
            (
                r#""etc/a": {"owner": "www-data"}"#,
                "etc/a",
                "owner `www-data` must be `root` or a package user (^tarmac_[a-z0-9_]+$)",
            ),
            (
                r#""etc/a": {"group": "Adm"}"#,
                "etc/a",
                "group `Adm` must match ^[a-z_][a-z0-9_-]*$",
            ),
            (
                r#""etc/a": {"colour": "red"}"#,
                "etc/a",
                "unknown key `colour`",
            ),
            (
                r#""etc/a": "0640""#,
                "etc/a",
                "expected an object, found a string",
            ),
            (
                r#""etc/../a": {}"#,
                "etc/../a",
                "it has an empty, `.` or `..` component",
            ),
            (
                r#""/etc/a": {}"#,
                "/etc/a",
                "it must be relative to the package root (no leading `/`)",
            ),
            (
                r#""pkginfo.json": {}"#,
                "pkginfo.json",
                "it must be a file below bin/, etc/, include/ or lib/ (optionally role-suffixed, like etc_master/)",
            ),
        ] {
            assert_eq!(
                tarmac_types::error_report::text_with_hint(
                    &parse(&format!(r#"{{"files": {{{entry}}}}}"#)).unwrap_err()
                ),
                format!("x--1: files[\"{path}\"] is invalid: {reason}{hint}"),
                "{entry}"
            );
        }
    }

    #[test]
    fn name_rules() {
        assert!(username_ok("tarmac_etcd_2"));
        assert!(!username_ok("dcos_etcd"));
        assert!(!username_ok(&format!("tarmac_{}", "a".repeat(30))));
        assert!(group_ok("systemd-journal"));
        assert!(service_group_ok("systemd-journal"));
        assert!(service_group_ok("tarmac_etcd"));
        assert!(!service_group_ok("shadow"));
        assert!(!service_group_ok("disk"));
        assert!(group_ok("_x"));
        assert!(!group_ok("1x"));
        assert!(env_key_ok("A_1"));
        assert!(!env_key_ok("1A"));
        assert!(!env_key_ok(""));
    }
}
