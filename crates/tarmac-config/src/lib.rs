//! Tarmac's configuration engine: `genconf/config.yaml` + a distribution's schema and
//! templates → a validated, resolved configuration with a content-derived `config_id`, and
//! the rendered files of the config packages.
//!
//! ```no_run
//! use tarmac_config::{load_genconf, render, Distribution};
//! use tarmac_types::Role;
//!
//! let dist = Distribution::load("dist/reference/config".as_ref()).unwrap();
//! match load_genconf("genconf".as_ref(), &dist) {
//!     Ok(cfg) => {
//!         let masters = cfg.hosts(Role::Master);
//!         let ssh = cfg.ssh();
//!         let files = render(&cfg).unwrap();
//!         # let _ = (masters, ssh, files);
//!     }
//!     Err(report) => eprint!("{}", report.render()),
//! }
//! ```

mod dist;
mod engine;
mod escape;
mod reference;
mod render;
mod report;
mod schema;
pub mod tls;
pub mod types;
pub mod yaml;
pub mod yamledit;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value as Json;
use tarmac_types::{Digest, HostAddr, Role};

pub use dist::{
    DistError, Distribution, FileFormat, PREFLIGHT_PORTS_PREFIX, Scope, TemplateFile, environment,
};
pub use engine::{Input, did_you_mean, flow_yaml, resolve, resolve_path};
pub use escape::{double_quote_escape, env_escape, systemd_escape};
pub use reference::{UnknownKey, closest_keys, explain, render_reference};
pub use render::{
    CONFIG_ID_PATH, EXPANDED_CONFIG_PATH, PackageFiles, RenderError, Rendered, RenderedFile,
    USER_CONFIG_PATH, render,
};
pub use report::{Diagnostic, Report};
pub use schema::{
    Derived, DerivedKind, INSTALLER_SCHEMA, Origin, Param, Rule, Schema, SchemaError,
};

/// The error types of this crate whose hints are data
/// ([`tarmac_types::error_report::Hint`]), for `ErrorReport::with_hints`.
pub const TYPED_HINTS: &[tarmac_types::error_report::AsHint] = {
    use tarmac_types::error_report::as_hint;
    &[
        as_hint::<DistError>,
        as_hint::<RenderError>,
        as_hint::<UnknownKey>,
    ]
};

/// What secret values are replaced with in copies shipped to hosts.
pub const HIDDEN: &str = "**HIDDEN**";

/// Serialise JSON canonically: object keys sorted (whatever serde_json's map order), no
/// whitespace. The input of every id.
pub fn canonical_json(v: &Json) -> String {
    fn write(v: &Json, out: &mut String) {
        match v {
            Json::Object(m) => {
                out.push('{');
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Json::String(k.clone()).to_string());
                    out.push(':');
                    write(&m[k], out);
                }
                out.push('}');
            }
            Json::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    write(v, &mut s);
    s
}

/// How the SSH installer verifies host keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// The key must already be in `known_hosts`.
    Strict,
    /// Unknown hosts are trusted and recorded; a changed key is refused.
    AcceptNew,
    /// No verification.
    Off,
}

/// The SSH installer's settings, with relative paths already resolved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SshSettings {
    pub user: String,
    /// Port for hosts listed without `:port`.
    pub port: u16,
    pub key_path: PathBuf,
    pub known_hosts: PathBuf,
    pub host_key_policy: HostKeyPolicy,
    /// `[user@]host[:port]` of a jump host.
    pub jump: Option<String>,
    pub parallelism: usize,
    pub process_timeout: Duration,
}

/// A validated configuration: every parameter's value (user, default or calculated), the
/// user's own keys, and the config id.
#[derive(Debug, Clone)]
pub struct ResolvedConfig {
    dist: Distribution,
    values: BTreeMap<String, Json>,
    user: BTreeMap<String, Json>,
    base_dir: PathBuf,
    warnings: Vec<Diagnostic>,
    config_id: Digest,
    secrets: BTreeSet<String>,
    id_key: Option<IdKey>,
}

impl ResolvedConfig {
    pub(crate) fn new(
        dist: Distribution,
        values: BTreeMap<String, Json>,
        user: BTreeMap<String, Json>,
        base_dir: PathBuf,
        warnings: Vec<Diagnostic>,
        secrets: BTreeSet<String>,
    ) -> Self {
        let config_id = compute_config_id(&dist, &values, &user, &secrets, None);
        ResolvedConfig {
            dist,
            values,
            user,
            base_dir,
            warnings,
            config_id,
            secrets,
            id_key: None,
        }
    }

    /// sha256 over the distribution digest, every user key and every resolved value
    /// (including the ip-detect script), as canonical JSON; each secret value (declared
    /// secret or calculated from one) enters only as HMAC-SHA256 under the cluster's
    /// [`IdKey`], so a published id cannot be used to guess a secret offline. Without a key
    /// (see [`ResolvedConfig::keyed`]) secrets do not enter the id at all.
    pub fn config_id(&self) -> Digest {
        self.config_id
    }

    /// Recompute the config id with secret values keyed by `key` (what genconf publishes).
    pub fn keyed(mut self, key: &IdKey) -> Self {
        self.config_id = compute_config_id(
            &self.dist,
            &self.values,
            &self.user,
            &self.secrets,
            Some(key),
        );
        self.id_key = Some(key.clone());
        self
    }

    /// True when some secret value (declared secret, calculated from one or sharing an
    /// anchor with one) is set.
    pub fn has_secret_values(&self) -> bool {
        self.secrets.iter().any(|k| {
            self.values.get(k).is_some_and(|v| !v.is_null())
                || self.user.get(k).is_some_and(|v| !v.is_null())
        })
    }

    /// The key under which config package `package_id` lists the digests of its secret files
    /// (HMAC-SHA256, see `tarmac_pkg::secrets`): derived from the cluster's [`IdKey`] when a
    /// secret value is set, so that the published digest of a file holding a password
    /// cannot be used to guess it offline. Without secret values the file's bytes follow
    /// from published values anyway, and the key is a public function of the package id
    /// (two clusters with the same configuration then get the same config package bytes,
    /// as they get the same id).
    pub fn secret_files_key(&self, package_id: &str) -> [u8; 32] {
        const LABEL: &[u8] = b"tarmac secret files\0";
        match &self.id_key {
            Some(key) if self.has_secret_values() => {
                use hmac::Mac;
                let mut m =
                    hmac::Hmac::<sha2::Sha256>::new_from_slice(&key.0).expect("any key length");
                m.update(LABEL);
                m.update(package_id.as_bytes());
                m.finalize().into_bytes().into()
            }
            _ => {
                use sha2::Digest as _;
                let mut h = sha2::Sha256::new();
                h.update(LABEL);
                h.update(package_id.as_bytes());
                h.finalize().into()
            }
        }
    }

    pub fn distribution(&self) -> &Distribution {
        &self.dist
    }

    /// Every resolved value (unset optional parameters are `null`).
    pub fn values(&self) -> &BTreeMap<String, Json> {
        &self.values
    }

    /// The keys the user wrote, as JSON.
    pub fn user_values(&self) -> &BTreeMap<String, Json> {
        &self.user
    }

    pub fn get(&self, name: &str) -> Option<&Json> {
        self.values.get(name)
    }

    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.values.get(name).and_then(Json::as_str)
    }

    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// The hosts of one role, in config order.
    pub fn hosts(&self, role: Role) -> Vec<HostAddr> {
        let key = match role {
            Role::Master => "master_list",
            Role::Agent => "agent_list",
            Role::AgentPublic => "public_agent_list",
        };
        self.values
            .get(key)
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str()?.parse().ok())
            .collect()
    }

    /// Every host with its role: masters, then agents, then public agents.
    pub fn all_hosts(&self) -> Vec<(HostAddr, Role)> {
        Role::ALL
            .iter()
            .flat_map(|r| self.hosts(*r).into_iter().map(move |h| (h, *r)))
            .collect()
    }

    pub fn bootstrap_url(&self) -> &str {
        self.get_str("bootstrap_url").unwrap_or_default()
    }

    /// Does tarmac serve bootstrap_url itself (`bootstrap_serve`, default true)? False when
    /// it is a store the operator publishes genconf/serve/ to.
    pub fn bootstrap_serve(&self) -> bool {
        !matches!(self.get("bootstrap_serve"), Some(Json::Bool(false)))
    }

    /// The certificate the artifact server presents and the CA the hosts pin, for an
    /// `https://` bootstrap_url (`None` for http and file URLs): the operator's
    /// `bootstrap_tls_*` files, else the per-cluster ones genconf makes in `genconf_dir/tls/`.
    pub fn bootstrap_tls(&self, genconf_dir: &Path) -> Option<tls::BootstrapTls> {
        let url = self.bootstrap_url();
        if !tls::is_https(url) {
            return None;
        }
        let host = tls::url_host(url)?;
        match (
            self.path(tls::CERT_KEY),
            self.path(tls::KEY_KEY),
            self.path(tls::CA_KEY),
        ) {
            (Some(cert), Some(key), Some(ca)) => Some(tls::BootstrapTls {
                host,
                cert,
                key,
                ca,
                generated: false,
            }),
            _ => Some(tls::BootstrapTls::generated(genconf_dir, &host)),
        }
    }

    pub fn cluster_name(&self) -> &str {
        self.get_str("cluster_name").unwrap_or_default()
    }

    /// The ip-detect script's text.
    pub fn ip_detect_script(&self) -> &str {
        self.get_str("ip_detect_contents").unwrap_or_default()
    }

    /// TCP ports that must be free on a host of `role` (the distribution's
    /// `preflight_ports_<role>` derived value; empty when it declares none).
    pub fn preflight_ports(&self, role: Role) -> Vec<u16> {
        let mut v: Vec<u16> = self
            .get(&format!("{PREFLIGHT_PORTS_PREFIX}{}", role.as_str()))
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| u16::try_from(p.as_i64()?).ok())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The deploy's peer relay: `(fanout, port)` when `relay_fanout` is on.
    /// Both defaults live in the installer schema.
    pub fn relay(&self) -> Option<(usize, u16)> {
        let fanout = usize::try_from(self.get("relay_fanout")?.as_i64()?).ok()?;
        let port = u16::try_from(self.get("relay_port")?.as_i64()?).ok()?;
        (fanout > 0).then_some((fanout, port))
    }

    /// A path parameter resolved against the directory containing genconf/.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        self.get_str(name).map(|p| resolve_path(&self.base_dir, p))
    }

    fn duration(&self, name: &str) -> Duration {
        self.get_str(name)
            .and_then(|s| types::parse_duration(s).ok())
            .unwrap_or_default()
    }

    /// SSH installer settings.
    pub fn ssh(&self) -> SshSettings {
        let int = |n: &str| self.get(n).and_then(Json::as_i64).unwrap_or_default();
        SshSettings {
            user: self.get_str("ssh_user").unwrap_or("root").to_owned(),
            port: u16::try_from(int("ssh_port")).unwrap_or(22),
            key_path: self.path("ssh_key_path").unwrap_or_default(),
            known_hosts: self.path("ssh_known_hosts").unwrap_or_default(),
            host_key_policy: match self.get_str("ssh_host_key_policy") {
                Some("strict") => HostKeyPolicy::Strict,
                Some("off") => HostKeyPolicy::Off,
                Some("accept-new") => HostKeyPolicy::AcceptNew,
                _ => HostKeyPolicy::Strict,
            },
            jump: self.get_str("ssh_jump").map(str::to_owned),
            parallelism: usize::try_from(int("ssh_parallelism")).unwrap_or(1).max(1),
            process_timeout: self.duration("process_timeout"),
        }
    }

    /// Names whose values are secret: declared secret, calculated from a secret, or sharing
    /// a value with a secret key through a YAML anchor and alias (in either direction).
    pub fn secret_names(&self) -> &BTreeSet<String> {
        &self.secrets
    }

    fn mask(&self, map: &BTreeMap<String, Json>, masked: bool) -> BTreeMap<String, Json> {
        map.iter()
            .map(|(k, v)| {
                if masked && self.secret_names().contains(k) && !v.is_null() {
                    (k.clone(), Json::String(HIDDEN.to_owned()))
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect()
    }

    /// The user's keys as YAML (sorted); secrets as `**HIDDEN**` when `masked`.
    pub fn user_config_yaml(&self, masked: bool) -> Result<String, String> {
        serde_saphyr::to_string(&self.mask(&self.user, masked)).map_err(|e| e.to_string())
    }

    /// Every resolved value as pretty JSON with sorted keys; secrets as `**HIDDEN**` when
    /// `masked`.
    pub fn expanded_config_json(&self, masked: bool) -> String {
        let m = self.mask(&self.values, masked);
        let mut s = serde_json::to_string_pretty(&sorted_json(
            &serde_json::to_value(m).unwrap_or_default(),
        ))
        .unwrap_or_default();
        s.push('\n');
        s
    }

    /// Render the distribution's templates; see [`render`].
    pub fn render(&self) -> Result<Rendered, RenderError> {
        render(self)
    }
}

/// The per-cluster key that keys secret values into the config id
/// (`genconf/config-id.key`, 0600, made once by the first validation). Keep it with the
/// genconf directory: a new key gives new config ids (and so new config packages) for the
/// same configuration.
#[derive(Clone)]
pub struct IdKey([u8; 32]);

impl std::fmt::Debug for IdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdKey(**HIDDEN**)")
    }
}

/// File name of the [`IdKey`] inside `genconf/`.
pub const ID_KEY_FILE: &str = "config-id.key";

impl IdKey {
    pub fn from_bytes(bytes: [u8; 32]) -> IdKey {
        IdKey(bytes)
    }

    /// Read `<genconf_dir>/config-id.key`, or create it (random, 0600 from the first byte,
    /// published with one atomic link so two concurrent runs agree on one key).
    pub fn load_or_create(genconf_dir: &Path) -> Result<IdKey, String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = genconf_dir.join(ID_KEY_FILE);
        let parse = |text: &str| -> Result<IdKey, String> {
            let bytes = hex::decode(text.trim()).map_err(|_| {
                format!("{} is not 64 hex digits: restore it from a backup of genconf/, or delete it to start new config ids", path.display())
            })?;
            let arr: [u8; 32] = bytes.try_into().map_err(|_| {
                format!("{} is not 64 hex digits: restore it from a backup of genconf/, or delete it to start new config ids", path.display())
            })?;
            Ok(IdKey(arr))
        };
        match std::fs::read_to_string(&path) {
            Ok(t) => return parse(&t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
        let mut key = [0u8; 32];
        rand::RngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut key)
            .map_err(|e| format!("no randomness for {}: {e}", path.display()))?;
        let tmp = genconf_dir.join(format!(".{ID_KEY_FILE}.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)?;
            f.write_all(format!("{}\n", hex::encode(key)).as_bytes())?;
            f.sync_all()?;
            Ok(())
        };
        let published = write().and_then(|()| std::fs::hard_link(&tmp, &path));
        let _ = std::fs::remove_file(&tmp);
        match published {
            Ok(()) => {
                if let Ok(d) = std::fs::File::open(genconf_dir) {
                    let _ = d.sync_all();
                }
                Ok(IdKey(key))
            }
            // Another run made it first: use that one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let t = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                parse(&t)
            }
            Err(e) => Err(format!("cannot create {}: {e}", path.display())),
        }
    }

    fn mac(&self, value: &Json) -> String {
        use hmac::Mac;
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0).expect("any key length");
        m.update(canonical_json(value).as_bytes());
        hex::encode(m.finalize().into_bytes())
    }
}

fn compute_config_id(
    dist: &Distribution,
    values: &BTreeMap<String, Json>,
    user: &BTreeMap<String, Json>,
    secrets: &BTreeSet<String>,
    key: Option<&IdKey>,
) -> Digest {
    // The distribution's secrets and what is calculated from them, plus keys that share a
    // value with a secret through an anchor and alias in this configuration.
    let secret: BTreeSet<&String> = dist.inner.secret_closure.iter().chain(secrets).collect();
    let hide = |m: &BTreeMap<String, Json>| -> BTreeMap<String, Json> {
        m.iter()
            .map(|(k, v)| {
                if secret.contains(k) && !v.is_null() {
                    let keyed = match key {
                        Some(key) => serde_json::json!({ "hmac-sha256": key.mac(v) }),
                        None => serde_json::json!({ "secret": "not in the id" }),
                    };
                    (k.clone(), keyed)
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect()
    };
    let doc = serde_json::json!({
        "format": 2,
        "distribution": dist.digest().hex(),
        "user": hide(user),
        "values": hide(values),
    });
    Digest::of(canonical_json(&doc).as_bytes())
}

/// Rebuild a JSON value with object keys inserted in sorted order (stable output even if
/// serde_json preserves insertion order).
fn sorted_json(v: &Json) -> Json {
    match v {
        Json::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Json::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted_json(&m[k])))
                    .collect(),
            )
        }
        Json::Array(a) => Json::Array(a.iter().map(sorted_json).collect()),
        other => other.clone(),
    }
}

/// Read and validate `<genconf_dir>/config.yaml` against `dist`. Relative paths in the
/// config are resolved against the parent of `genconf_dir` (DC/OS's `genconf/ip-detect`).
/// `text` validated as if it were `genconf_dir`'s config.yaml (paths relative to where
/// genconf/ is), without reading or writing anything there: what an edit of config.yaml
/// would give, checked before it is made.
pub fn resolve_genconf_text(
    genconf_dir: &Path,
    dist: &Distribution,
    text: &str,
) -> Result<ResolvedConfig, Report> {
    let base_dir = match genconf_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    resolve(
        dist,
        &Input {
            text,
            file_label: genconf_dir.join("config.yaml").display().to_string(),
            base_dir,
        },
    )
}

/// The installer's keys of `<genconf_dir>/config.yaml` (hosts, `ssh_*`, `bootstrap_*`),
/// checked against the installer's schema alone: what a command needs to reach the hosts
/// when no build is at hand. The distribution's keys are passed over.
/// Nothing is written (no config-id key is made).
pub fn load_installer_settings(genconf_dir: &Path) -> Result<ResolvedConfig, Report> {
    let text = read_config(genconf_dir)?;
    resolve_genconf_text(genconf_dir, &Distribution::installer_only(), &text)
}

/// The text of `<genconf_dir>/config.yaml`, or the report of why it cannot be read.
fn read_config(genconf_dir: &Path) -> Result<String, Report> {
    let path = genconf_dir.join("config.yaml");
    let label = path.display().to_string();
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(t),
        Err(e) => {
            let mut r = Report::new(&label, "");
            let d = if e.kind() == std::io::ErrorKind::NotFound {
                Diagnostic::new("config.yaml", None, format!("No config file found at {label}."))
                    .hint(format!(
                        "create it with at least master_list and bootstrap_url, and put the ip-detect script next to it ({})",
                        genconf_dir.join("ip-detect").display()
                    ))
            } else {
                Diagnostic::new(
                    "config.yaml",
                    None,
                    format!("Failed to open config file at {label}: {e}."),
                )
            };
            r.errors.push(d);
            Err(r)
        }
    }
}

pub fn load_genconf(genconf_dir: &Path, dist: &Distribution) -> Result<ResolvedConfig, Report> {
    let label = genconf_dir.join("config.yaml").display().to_string();
    let text = read_config(genconf_dir)?;
    let resolved = resolve_genconf_text(genconf_dir, dist, &text)?;
    match IdKey::load_or_create(genconf_dir) {
        Ok(key) => Ok(resolved.keyed(&key)),
        Err(message) => {
            let mut r = Report::new(&label, "");
            r.errors.push(Diagnostic::new(ID_KEY_FILE, None, message));
            Err(r)
        }
    }
}
