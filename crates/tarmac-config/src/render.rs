//! Rendering a resolved configuration into config package contents.

use std::collections::BTreeMap;

use tarmac_types::PackageName;

use crate::ResolvedConfig;
use crate::dist::Scope;

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub bytes: Vec<u8>,
    pub mode: u32,
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
    /// role-suffixed top directories (`etc_master/etcd/etcd.env`).
    pub fn package_layout(&self, package: &PackageName) -> BTreeMap<String, &RenderedFile> {
        let mut out = BTreeMap::new();
        if let Some(scopes) = self.packages.get(package) {
            for (scope, files) in scopes {
                for (rel, f) in files {
                    out.insert(scope.package_path(rel), f);
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
    let mut ctx: BTreeMap<String, minijinja::Value> = resolved
        .values()
        .iter()
        .map(|(k, v)| (k.clone(), minijinja::Value::from_serialize(v)))
        .collect();
    ctx.insert(
        "config_id".into(),
        minijinja::Value::from(resolved.config_id().hex()),
    );

    let mut out = Rendered::default();
    for t in &inner.templates {
        let tmpl = inner
            .env
            .get_template(&t.name)
            .map_err(|source| RenderError::Template {
                name: t.name.clone(),
                source,
            })?;
        let text = tmpl.render(&ctx).map_err(|source| RenderError::Template {
            name: t.name.clone(),
            source,
        })?;
        let uses_secret = t.vars.iter().any(|v| resolved.secret_names().contains(v));
        let mode = match inner.schema.files.get(&t.name).and_then(|f| f.mode) {
            Some(m) => m,
            None if uses_secret => t.mode & 0o700,
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
        RenderedFile {
            bytes: user_yaml.into_bytes(),
            mode: 0o644,
        },
    );
    common.insert(
        EXPANDED_CONFIG_PATH.into(),
        RenderedFile {
            bytes: resolved.expanded_config_json(true).into_bytes(),
            mode: 0o644,
        },
    );
    common.insert(
        CONFIG_ID_PATH.into(),
        RenderedFile {
            bytes: format!("{}\n", resolved.config_id().hex()).into_bytes(),
            mode: 0o644,
        },
    );
    Ok(out)
}
