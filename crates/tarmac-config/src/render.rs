//! Rendering a resolved configuration into config package contents.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use minijinja::Value;
use minijinja::value::{Enumerator, Object};
use tarmac_types::PackageName;

use crate::ResolvedConfig;
use crate::dist::Scope;

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub bytes: Vec<u8>,
    pub mode: u32,
    /// Declared `secret: true` in the schema's `files:`: not packed into the config package,
    /// delivered over SSH to the hosts of its scope only.
    pub secret: bool,
    /// Owner and group to give the file on the host (`files:` in the schema).
    pub owner: Option<String>,
    pub group: Option<String>,
}

impl RenderedFile {
    /// A plain file (no secret, no ownership).
    pub fn plain(bytes: Vec<u8>, mode: u32) -> RenderedFile {
        RenderedFile {
            bytes,
            mode,
            secret: false,
            owner: None,
            group: None,
        }
    }
}

/// The render context of one template: the resolved values, recording every name the
/// template (its includes, macros and `{% set %}` aliases alike) reads.
struct Tracked {
    values: Arc<BTreeMap<String, Value>>,
    read: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for Tracked {
    // Never the values (`debug()` in a template prints the context).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.values.keys()).finish()
    }
}

impl Object for Tracked {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let k = key.as_str()?;
        let v = self.values.get(k)?.clone();
        self.read.lock().expect("poisoned").insert(k.to_owned());
        Some(v)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.values
                .keys()
                .map(|k| Value::from(k.as_str()))
                .collect(),
        )
    }
}

/// Files of one config package, by scope, by path inside the scope (`etc/etcd/etcd.env`).
pub type PackageFiles = BTreeMap<Scope, BTreeMap<String, RenderedFile>>;

/// Every config package's files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub packages: BTreeMap<PackageName, PackageFiles>,
}

impl Rendered {
    /// The files of `package` as they appear inside the package archive: role files under
    /// role-suffixed top directories (`etc_master/etcd/etcd.env`). Secret files are not in
    /// the archive (see [`Rendered::secret_layout`]).
    pub fn package_layout(&self, package: &PackageName) -> BTreeMap<String, &RenderedFile> {
        self.layout(package, false)
    }

    /// The secret files of `package`, by the path they have in the package's tree
    /// (`etc_master/prometheus/prometheus.yml`): delivered over SSH to the hosts of their
    /// scope, listed (without their bytes) in the package's pkginfo.
    pub fn secret_layout(&self, package: &PackageName) -> BTreeMap<String, &RenderedFile> {
        self.layout(package, true)
    }

    fn layout(&self, package: &PackageName, secret: bool) -> BTreeMap<String, &RenderedFile> {
        let mut out = BTreeMap::new();
        if let Some(scopes) = self.packages.get(package) {
            for (scope, files) in scopes {
                for (rel, f) in files {
                    if f.secret == secret {
                        out.insert(scope.package_path(rel), f);
                    }
                }
            }
        }
        out
    }

    /// The files a host of `role` ends up with, by path below the install root
    /// (`etc/etcd/etcd.env`), across all packages. Handy for tests and `tarmac config show`.
    pub fn for_role(&self, role: tarmac_types::Role) -> BTreeMap<String, &RenderedFile> {
        let mut out = BTreeMap::new();
        for scopes in self.packages.values() {
            for (scope, files) in scopes {
                if *scope == Scope::Common || *scope == Scope::Role(role) {
                    for (rel, f) in files {
                        out.insert(rel.clone(), f);
                    }
                }
            }
        }
        out
    }
}

/// Why rendering failed (a template bug: validation already passed).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template {name} failed to render")]
    Template {
        name: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("cannot serialise the configuration copy {what}: {message}")]
    Serialise { what: String, message: String },
    #[error(
        "template {name} read `{key}`, which holds a secret value, but the file is not declared secret"
    )]
    SecretInPublicFile {
        name: String,
        key: String,
        hint: String,
    },
}

impl tarmac_types::error_report::Hint for RenderError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            RenderError::SecretInPublicFile { hint, .. } => Some(hint.as_str().into()),
            RenderError::Template { .. } | RenderError::Serialise { .. } => None,
        }
    }
}

/// Where the masked configuration copies go inside the config package (common scope).
pub const USER_CONFIG_PATH: &str = "etc/tarmac-config/user.config.yaml";
pub const EXPANDED_CONFIG_PATH: &str = "etc/tarmac-config/expanded.config.json";
pub const CONFIG_ID_PATH: &str = "etc/tarmac-config/config-id";

/// Render every template of the distribution the configuration was resolved against, plus
/// masked copies of the configuration (`user.config.yaml`, `expanded.config.json`,
/// `config-id`) in the distribution's config package. Pure: same input, same bytes.
pub fn render(resolved: &ResolvedConfig) -> Result<Rendered, RenderError> {
    let dist = resolved.distribution();
    let inner = &dist.inner;
    let mut ctx: BTreeMap<String, Value> = resolved
        .values()
        .iter()
        .map(|(k, v)| (k.clone(), Value::from_serialize(v)))
        .collect();
    ctx.insert("config_id".into(), Value::from(resolved.config_id().hex()));
    let ctx = Arc::new(ctx);

    let mut out = Rendered::default();
    for t in &inner.templates {
        let tmpl = inner
            .env
            .get_template(&t.name)
            .map_err(|source| RenderError::Template {
                name: t.name.clone(),
                source,
            })?;
        let tracked = Arc::new(Tracked {
            values: ctx.clone(),
            read: Mutex::new(BTreeSet::new()),
        });
        let text = tmpl
            .render(Value::from_dyn_object(tracked.clone()))
            .map_err(|source| RenderError::Template {
                name: t.name.clone(),
                source,
            })?;
        let settings = inner.schema.files.get(&t.name);
        let secret = settings.is_some_and(|f| f.secret);
        if !secret {
            let read = tracked.read.lock().expect("poisoned");
            if let Some(key) = read.iter().find(|k| resolved.secret_names().contains(*k)) {
                let hint = if inner.secret_closure.contains(key) {
                    format!(
                        "declare it `{}: {{secret: true, group: <group of the service that reads it>, mode: \"0640\"}}` under `files:` in schema.yaml",
                        t.name
                    )
                } else {
                    format!(
                        "in config.yaml, `{key}` shares its value with a secret through a YAML anchor and alias (or is calculated from one); write its value out instead"
                    )
                };
                return Err(RenderError::SecretInPublicFile {
                    name: t.name.clone(),
                    key: key.clone(),
                    hint,
                });
            }
        }
        let mode = match settings.and_then(|f| f.mode) {
            Some(m) => m,
            None if secret => t.mode & 0o700,
            None => t.mode,
        };
        out.packages
            .entry(t.package.clone())
            .or_default()
            .entry(t.scope)
            .or_default()
            .insert(
                t.rel.clone(),
                RenderedFile {
                    bytes: text.into_bytes(),
                    mode,
                    secret,
                    owner: settings.and_then(|f| f.owner.clone()),
                    group: settings.and_then(|f| f.group.clone()),
                },
            );
    }

    let pkg = match &inner.schema.config_package {
        Some(p) => PackageName::new(p.as_str()).map_err(|e| RenderError::Serialise {
            what: "config_package".into(),
            message: e.to_string(),
        })?,
        None => match out.packages.keys().next() {
            Some(p) => p.clone(),
            None => PackageName::new("tarmac-config").expect("valid name"),
        },
    };
    let user_yaml = resolved
        .user_config_yaml(true)
        .map_err(|message| RenderError::Serialise {
            what: USER_CONFIG_PATH.into(),
            message,
        })?;
    let common = out
        .packages
        .entry(pkg)
        .or_default()
        .entry(Scope::Common)
        .or_default();
    common.insert(
        USER_CONFIG_PATH.into(),
        RenderedFile::plain(user_yaml.into_bytes(), 0o644),
    );
    common.insert(
        EXPANDED_CONFIG_PATH.into(),
        RenderedFile::plain(resolved.expanded_config_json(true).into_bytes(), 0o644),
    );
    common.insert(
        CONFIG_ID_PATH.into(),
        RenderedFile::plain(
            format!("{}\n", resolved.config_id().hex()).into_bytes(),
            0o644,
        ),
    );
    Ok(out)
}
