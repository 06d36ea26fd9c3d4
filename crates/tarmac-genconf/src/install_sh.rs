//! The bash install script served as `genconf/serve/install.sh`.

use std::collections::BTreeMap;

use serde::Serialize;
use tarmac_types::Role;

/// The template (minijinja). See the header of the rendered script for usage and exit codes.
pub const TEMPLATE: &str = include_str!("install.sh.j2");

/// Where install.sh puts the host binary; tarmac-setup.service runs it.
pub const HOST_BINARY_ON_HOST: &str = "/opt/tarmac/tarmac-host";

/// Oldest systemd the script accepts.
pub const MIN_SYSTEMD_VERSION: u32 = 232;

/// Free space install.sh wants below /opt (KiB).
pub const MIN_FREE_KIB: u64 = 1024 * 1024;

/// A file install.sh downloads from bootstrap_url and pins by sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pinned {
    /// Path below bootstrap_url, e.g. `bootstrap/<id>.tarmac-host`.
    pub path: String,
    pub sha256: String,
}

/// Everything baked into install.sh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstallScript {
    pub cluster_name: String,
    pub config_id: String,
    pub bootstrap_url: String,
    pub bootstrap_id: String,
    pub package_list_id: String,
    pub host_binary: Pinned,
    pub manifest: Pinned,
    pub signature: Option<Pinned>,
    /// PEM of the trusted signing key (only with a signature).
    pub signing_key: Option<String>,
    /// `sha256:<hex>` of that key, checked against the operator's `--expect-key-fingerprint`.
    pub signing_key_fingerprint: Option<String>,
    /// For an https bootstrap_url: the PEM of the cluster CA, the only CA curl and
    /// tarmac-host trust for it (written to `/etc/tarmac/setup-flags/repository-ca.pem`).
    pub repository_ca: Option<String>,
    /// `sha256:<hex>` of that CA certificate (shown in errors).
    pub repository_ca_fingerprint: Option<String>,
    /// Where the CA came from, for messages: `genconf/tls/ca.pem` or the operator's file.
    pub repository_ca_source: Option<String>,
    /// The cluster package list (JSON, every package with its sha256).
    pub package_list_json: String,
    /// The operator's ip-detect script (run by the preflight).
    pub ip_detect: String,
    /// TCP ports that must be free, by role.
    pub ports: BTreeMap<Role, Vec<u16>>,
    /// `tarmac-setup.service` as tarmac-host expects it.
    pub setup_unit: String,
}

/// Why the script could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum InstallScriptError {
    #[error(
        "{what} contains a line `TARMAC_EOF`, which would end install.sh's here-document early"
    )]
    Delimiter { what: String },
    #[error(
        "{what} contains a control character (newline, tab, NUL …), which install.sh cannot hold outside a here-document: {value:?}"
    )]
    ControlCharacter { what: String, value: String },
    #[error("install.sh template failed to render")]
    Template(#[from] minijinja::Error),
}

impl tarmac_types::error_report::Hint for InstallScriptError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            InstallScriptError::Delimiter { what } => {
                Some(format!("change that line of {what}").into())
            }
            InstallScriptError::ControlCharacter { what, .. } => {
                Some(format!("remove it from {what}").into())
            }
            InstallScriptError::Template(_) => None,
        }
    }
}

fn with_newline(s: &str) -> String {
    if s.is_empty() || s.ends_with('\n') {
        s.to_owned()
    } else {
        format!("{s}\n")
    }
}

/// Render install.sh. Pure: same input, same bytes.
pub fn render(s: &InstallScript) -> Result<String, InstallScriptError> {
    let blocks = [
        ("the package list", Some(&s.package_list_json)),
        ("the ip-detect script", Some(&s.ip_detect)),
        ("the signing key", s.signing_key.as_ref()),
        ("the repository CA", s.repository_ca.as_ref()),
        ("the setup unit", Some(&s.setup_unit)),
    ];
    for (what, text) in blocks {
        if text.is_some_and(|t| t.lines().any(|l| l == "TARMAC_EOF")) {
            return Err(InstallScriptError::Delimiter {
                what: what.to_owned(),
            });
        }
    }
    let scalars = [
        ("cluster_name", s.cluster_name.as_str()),
        ("the config id", s.config_id.as_str()),
        ("bootstrap_url", s.bootstrap_url.as_str()),
        ("the bootstrap id", s.bootstrap_id.as_str()),
        ("the package list id", s.package_list_id.as_str()),
        ("the host binary path", s.host_binary.path.as_str()),
        ("the manifest path", s.manifest.path.as_str()),
        (
            "the signature path",
            s.signature.as_ref().map_or("", |p| p.path.as_str()),
        ),
        (
            "the signing key fingerprint",
            s.signing_key_fingerprint.as_deref().unwrap_or(""),
        ),
        (
            "the repository CA fingerprint",
            s.repository_ca_fingerprint.as_deref().unwrap_or(""),
        ),
        (
            "the repository CA file name",
            s.repository_ca_source.as_deref().unwrap_or(""),
        ),
    ];
    for (what, value) in scalars {
        if value.chars().any(char::is_control) {
            return Err(InstallScriptError::ControlCharacter {
                what: what.to_owned(),
                value: value.to_owned(),
            });
        }
    }
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.add_filter("shquote", |v: minijinja::Value| match v.as_str() {
        Some(s) => tarmac_types::shell::quote(s),
        None => tarmac_types::shell::quote(&v.to_string()),
    });
    let ports: BTreeMap<&str, &Vec<u16>> = s.ports.iter().map(|(r, p)| (r.as_str(), p)).collect();
    let empty = Vec::new();
    let ctx = minijinja::context! {
        cluster_name => s.cluster_name,
        config_id => s.config_id,
        bootstrap_url => s.bootstrap_url,
        bootstrap_id => s.bootstrap_id,
        package_list_id => s.package_list_id,
        host_binary => s.host_binary,
        manifest => s.manifest,
        signature => s.signature,
        signing_key => s.signing_key.as_deref().map(with_newline),
        signing_key_fingerprint => s.signing_key_fingerprint,
        repository_ca => s.repository_ca.as_deref().map(with_newline),
        repository_ca_fingerprint => s.repository_ca_fingerprint,
        repository_ca_source => s.repository_ca_source,
        package_list_json => with_newline(&s.package_list_json),
        ip_detect => with_newline(&s.ip_detect),
        setup_unit => with_newline(&s.setup_unit),
        ports => minijinja::context! {
            master => ports.get("master").copied().unwrap_or(&empty),
            agent => ports.get("agent").copied().unwrap_or(&empty),
            agent_public => ports.get("agent_public").copied().unwrap_or(&empty),
        },
        min_systemd_version => MIN_SYSTEMD_VERSION,
        min_free_kib => MIN_FREE_KIB,
    };
    Ok(env.render_str(TEMPLATE, ctx)?)
}
