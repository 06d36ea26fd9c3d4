//! A distribution's configuration: its schema merged with the installer's, its templates,
//! and the dependency analysis that decides which parameters are actually required.
//!
//! On disk (`dist/<name>/config/`):
//!
//! ```text
//! schema.yaml
//! templates/<package>/<scope>/<top-dir>/<path…>
//! ```
//!
//! `<scope>` is `common` (every host) or a role (`master`, `agent`, `agent_public`). A
//! template's file mode is 0755 when the source is executable, else 0644 (`files:` in the
//! schema overrides). A template that reads a secret (or a value calculated from one) must be
//! declared `secret: true` in `files:` — a schema error otherwise — and is then 0700/0600
//! unless `files:` says otherwise, kept out of the config package and delivered over SSH.
//! Printed values are escaped for the file's format (shell, env, systemd; see [`FileFormat`]).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::{Environment, UndefinedBehavior, Value};
use tarmac_types::shell::quote as shquote;
use tarmac_types::{Digest, PackageName, Role};

pub use crate::escape::FileFormat;
use crate::schema::{DerivedKind, INSTALLER_SCHEMA, Origin, Schema, SchemaError};

/// Derived values named `preflight_ports_<role>` list the TCP ports install.sh's preflight
/// checks are free on a host of that role.
pub const PREFLIGHT_PORTS_PREFIX: &str = "preflight_ports_";

/// Variables only templates see (set at render time).
pub const RENDER_ONLY: &[&str] = &["config_id"];

/// Where a rendered file goes: every host, or hosts of one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Common,
    Role(Role),
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "common" => Some(Scope::Common),
            "master" => Some(Scope::Role(Role::Master)),
            "agent" => Some(Scope::Role(Role::Agent)),
            "agent_public" => Some(Scope::Role(Role::AgentPublic)),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Common => "common",
            Scope::Role(r) => r.as_str(),
        }
    }

    /// The path of `rel` (e.g. `etc/etcd/etcd.env`) inside a package: role files live in
    /// role-suffixed top directories (`etc_master/etcd/etcd.env`), as pkgpanda did.
    pub fn package_path(self, rel: &str) -> String {
        match self {
            Scope::Common => rel.to_owned(),
            Scope::Role(r) => match rel.split_once('/') {
                Some((top, rest)) => format!("{top}{}/{rest}", r.dir_suffix()),
                None => format!("{rel}{}", r.dir_suffix()),
            },
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One template file.
#[derive(Debug, Clone)]
pub struct TemplateFile {
    /// `<package>/<scope>/<rel>`: the template's name in errors and in `files:`.
    pub name: String,
    pub package: PackageName,
    pub scope: Scope,
    /// Path inside the scope, e.g. `etc/etcd/etcd.env`.
    pub rel: String,
    pub source: String,
    /// Mode from the source file (0755 if executable, else 0644), before secret tightening.
    pub mode: u32,
    /// Top-level variables the template uses.
    pub vars: BTreeSet<String>,
    /// How printed values are escaped: `format:` in the schema's `files:`, else from the path.
    pub format: FileFormat,
}

/// Why a distribution's configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("template {name}: {message}")]
    TemplateLayout { name: String, message: String },
    #[error("template {name} does not parse")]
    TemplateSyntax {
        name: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("{place} uses `{var}`, which is not a parameter or derived value of the schema")]
    UnknownVariable {
        place: String,
        var: String,
        suggestion: Option<String>,
    },
    #[error("expression `{expr}` in {place} does not parse")]
    Expression {
        place: String,
        expr: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("calculation cycle in the schema: {0}")]
    Cycle(String),
    #[error("files: `{0}` names no template")]
    UnknownFile(String),
    #[error("template {name} uses `{key}`, which {why}, but the file is not declared secret")]
    SecretInPublicFile {
        name: String,
        key: String,
        why: &'static str,
    },
}

impl tarmac_types::error_report::Hint for DistError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            DistError::TemplateLayout { .. } => Some(
                "templates live in <dist>/config/templates/<package>/<common|master|agent|agent_public>/<dir>/<file>"
                    .into(),
            ),
            DistError::UnknownVariable {
                suggestion: Some(s),
                ..
            } => Some(format!("did you mean `{s}`?").into()),
            DistError::SecretInPublicFile { name, .. } => Some(
                format!(
                    "add `{name}: {{secret: true, group: <group of the service that reads it>, mode: \"0640\"}}` under `files:` in schema.yaml; secret files are not packed into the config package (served over HTTP) but delivered over SSH to the hosts of their scope"
                )
                .into(),
            ),
            _ => None,
        }
    }
}

/// A loaded distribution configuration, ready to validate user configs against.
#[derive(Clone)]
pub struct Distribution {
    pub(crate) inner: Arc<Inner>,
    name: Option<Arc<str>>,
}

pub(crate) struct Inner {
    pub schema: Schema,
    pub templates: Vec<TemplateFile>,
    pub env: Environment<'static>,
    /// Dependencies of every derived value, default_expr, required_when (by name).
    pub deps: BTreeMap<String, BTreeSet<String>>,
    /// Variables of each rule (assert, when, message).
    pub rule_deps: Vec<BTreeSet<String>>,
    /// Parameters and derived values needed by the installer, the templates or the rules.
    pub used: BTreeSet<String>,
    /// All parameters and derived values in dependency order.
    pub order: Vec<String>,
    /// Names whose value depends on a secret.
    pub secret_closure: BTreeSet<String>,
    pub digest: Digest,
    pub dir: Option<PathBuf>,
    /// The installer's schema without its distribution ([`Distribution::installer_only`]):
    /// keys it does not know belong to the distribution, which is not at hand, and are
    /// neither checked nor refused.
    pub open: bool,
}

impl fmt::Debug for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Distribution")
            .field("dir", &self.inner.dir)
            .field("params", &self.inner.schema.params.len())
            .field("templates", &self.inner.templates.len())
            .field("digest", &self.inner.digest)
            .finish()
    }
}

/// The minijinja environment every schema expression and template runs in: strict undefined,
/// trailing newlines kept, printing `none` is an error, plus Tarmac's filters (`host`,
/// `url_host`, `seconds`, `millis`, `shquote`, `tojson`) and the `ip` and `shell_safe` tests.
/// No auto-escaping by default; [`Distribution`] turns on escaping per file format for its
/// templates (see [`FileFormat`]), and the formatter here does that escaping.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_formatter(|out, state, value| {
        if value.is_none() {
            return Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                "printing an unset optional value (none); guard it with {% if … %}",
            ));
        }
        match state.auto_escape() {
            minijinja::AutoEscape::Custom(kind) if !value.is_safe() => {
                let text = crate::escape::escape_for(kind, value)?;
                out.write_str(&text).map_err(minijinja::Error::from)
            }
            minijinja::AutoEscape::Custom(_) => out
                .write_str(value.as_str().unwrap_or_default())
                .map_err(minijinja::Error::from),
            _ => minijinja::escape_formatter(out, state, value),
        }
    });
    env.add_filter(
        crate::escape::IN_DOUBLE_QUOTES,
        crate::escape::filter_in_double_quotes,
    );
    env.add_filter(
        crate::escape::IN_SINGLE_QUOTES,
        crate::escape::filter_in_single_quotes,
    );
    env.add_filter("host", filter_host);
    env.add_filter("url_host", filter_url_host);
    env.add_filter("seconds", filter_seconds);
    env.add_filter("millis", filter_millis);
    env.add_filter("shquote", filter_shquote);
    env.add_test("ip", |v: &str| v.parse::<std::net::IpAddr>().is_ok());
    env.add_test("shell_safe", |v: &str| !v.is_empty() && shquote(v) == v);
    env
}

fn filter_host(v: &str) -> Result<String, minijinja::Error> {
    v.parse::<tarmac_types::HostAddr>()
        .map(|h| h.host().to_owned())
        .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string()))
}

fn filter_url_host(v: &str) -> Result<String, minijinja::Error> {
    v.parse::<tarmac_types::HostAddr>()
        .map(|h| h.url_host())
        .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string()))
}

fn filter_seconds(v: Value) -> Result<u64, minijinja::Error> {
    if let Some(i) = v.as_i64() {
        return u64::try_from(i).map_err(|_| {
            minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, "negative duration")
        });
    }
    let s = v.as_str().unwrap_or_default();
    crate::types::parse_duration(s)
        .map(|d| d.as_secs())
        .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e))
}

fn filter_millis(v: Value) -> Result<u64, minijinja::Error> {
    if let Some(i) = v.as_i64() {
        return u64::try_from(i).map(|s| s * 1000).map_err(|_| {
            minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, "negative duration")
        });
    }
    let s = v.as_str().unwrap_or_default();
    crate::types::parse_duration(s)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e))
}

/// `shquote`: the result is safe (not escaped again in shell files).
fn filter_shquote(v: Value) -> Value {
    Value::from_safe_string(match v.as_str() {
        Some(s) => shquote(s),
        None => shquote(&v.to_string()),
    })
}

/// The top-level names an expression uses, minus globals.
fn expr_vars(
    env: &Environment<'static>,
    place: &str,
    expr: &str,
) -> Result<BTreeSet<String>, DistError> {
    let compiled = env
        .compile_expression(expr)
        .map_err(|source| DistError::Expression {
            place: place.to_owned(),
            expr: expr.to_owned(),
            source,
        })?;
    Ok(without_globals(env, compiled.undeclared_variables(false)))
}

fn template_vars(
    env: &Environment<'static>,
    src: &str,
) -> Result<BTreeSet<String>, minijinja::Error> {
    let t = env.template_from_str(src)?;
    Ok(without_globals(env, t.undeclared_variables(false)))
}

fn without_globals(env: &Environment<'static>, vars: HashSet<String>) -> BTreeSet<String> {
    let globals: HashSet<&str> = env.globals().map(|(k, _)| k).collect();
    vars.into_iter()
        .filter(|v| !globals.contains(v.as_str()))
        .collect()
}

impl Distribution {
    /// Load `<dir>/schema.yaml` and `<dir>/templates/`. `dir` is a distribution's `config/`
    /// directory, e.g. `dist/reference/config`.
    pub fn load(dir: &Path) -> Result<Distribution, DistError> {
        let schema_path = dir.join("schema.yaml");
        let schema_text =
            std::fs::read_to_string(&schema_path).map_err(|source| DistError::Io {
                path: schema_path.clone(),
                source,
            })?;
        let tdir = dir.join("templates");
        let mut files = Vec::new();
        if tdir.exists() {
            walk(&tdir, &mut files).map_err(|source| DistError::Io {
                path: tdir.clone(),
                source,
            })?;
        }
        files.sort();
        let mut raw = Vec::new();
        for f in files {
            let rel = f
                .strip_prefix(&tdir)
                .unwrap_or(&f)
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::metadata(&f).map_err(|source| DistError::Io {
                path: f.clone(),
                source,
            })?;
            let source = std::fs::read_to_string(&f).map_err(|source| DistError::Io {
                path: f.clone(),
                source,
            })?;
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            raw.push((rel, source, mode));
        }
        let mut d = Self::from_parts(&schema_path.display().to_string(), &schema_text, raw)?;
        if let Some(inner) = Arc::get_mut(&mut d.inner) {
            inner.dir = Some(dir.to_owned());
        }
        Ok(d)
    }

    /// Build from in-memory parts: the distribution schema text and templates as
    /// (`<package>/<scope>/<rel>`, source, mode).
    pub fn from_parts(
        schema_name: &str,
        schema_text: &str,
        templates: Vec<(String, String, u32)>,
    ) -> Result<Distribution, DistError> {
        let mut schema = Schema::default();
        schema.add_file("installer schema", INSTALLER_SCHEMA, Origin::Installer)?;
        schema.add_file(schema_name, schema_text, Origin::Distribution)?;
        let mut env = environment();

        // Templates.
        let mut tfiles = Vec::new();
        let mut digest_parts = BTreeMap::new();
        for (name, source, mode) in templates {
            let layout = |message: &str| DistError::TemplateLayout {
                name: name.clone(),
                message: message.to_owned(),
            };
            let mut parts = name.splitn(3, '/');
            let (Some(pkg), Some(scope), Some(rel)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(layout("expected <package>/<scope>/<dir>/<file>"));
            };
            let package = PackageName::new(pkg).map_err(|e| layout(&e.to_string()))?;
            let scope = Scope::parse(scope).ok_or_else(|| {
                layout(&format!(
                    "unknown scope `{scope}`: use common, master, agent or agent_public"
                ))
            })?;
            let Some((top, _)) = rel.split_once('/') else {
                return Err(layout(
                    "files must be inside a directory (e.g. etc/ or bin/) so role directories can be formed",
                ));
            };
            if Role::split_dir(top).1.is_some() {
                return Err(layout(&format!(
                    "directory `{top}` already has a role suffix; put it under the {} scope instead",
                    Role::split_dir(top).1.map_or("", Role::as_str)
                )));
            }
            let vars =
                template_vars(&env, &source).map_err(|source| DistError::TemplateSyntax {
                    name: name.clone(),
                    source,
                })?;
            digest_parts.insert(
                name.clone(),
                serde_json::json!({"mode": mode, "sha256": Digest::of(source.as_bytes()).hex()}),
            );
            let format = schema
                .files
                .get(&name)
                .and_then(|f| f.format)
                .unwrap_or_else(|| FileFormat::for_path(rel));
            tfiles.push(TemplateFile {
                package,
                scope,
                rel: rel.to_owned(),
                source: source.clone(),
                mode,
                vars,
                name: name.clone(),
                format,
            });
        }
        let formats: BTreeMap<String, FileFormat> =
            tfiles.iter().map(|t| (t.name.clone(), t.format)).collect();
        env.set_auto_escape_callback(move |name| {
            formats
                .get(name)
                .map_or(minijinja::AutoEscape::None, |f| f.auto_escape())
        });
        for t in &tfiles {
            env.add_template_owned(
                t.name.clone(),
                crate::escape::quote_aware_source(t.format, &t.source),
            )
            .map_err(|source| DistError::TemplateSyntax {
                name: t.name.clone(),
                source,
            })?;
        }
        for path in schema.files.keys() {
            if !tfiles.iter().any(|t| &t.name == path) {
                return Err(DistError::UnknownFile(path.clone()));
            }
        }

        let known: BTreeSet<String> = schema.names().map(str::to_owned).collect();
        let unknown = |place: &str,
                       vars: &BTreeSet<String>,
                       allow_render_only: bool|
         -> Result<(), DistError> {
            for v in vars {
                if known.contains(v) || (allow_render_only && RENDER_ONLY.contains(&v.as_str())) {
                    continue;
                }
                return Err(DistError::UnknownVariable {
                    place: place.to_owned(),
                    var: v.clone(),
                    suggestion: crate::engine::did_you_mean(v, known.iter().map(String::as_str)),
                });
            }
            Ok(())
        };

        // Dependencies of calculated things.
        let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (name, p) in &schema.params {
            let mut d = BTreeSet::new();
            for (what, e) in [
                ("default_expr", &p.default_expr),
                ("required_when", &p.required_when),
            ] {
                if let Some(e) = e {
                    let place = format!("{what} of `{name}`");
                    let v = expr_vars(&env, &place, e)?;
                    unknown(&place, &v, false)?;
                    d.extend(v);
                }
            }
            deps.insert(name.clone(), d);
        }
        for (name, dv) in &schema.derived {
            let d = match &dv.kind {
                DerivedKind::Expr(e) => {
                    let place = format!("derived value `{name}`");
                    let v = expr_vars(&env, &place, e)?;
                    unknown(&place, &v, false)?;
                    v
                }
                DerivedKind::Builtin(b) if b == "ip_detect" => {
                    ["ip_detect_filename".to_owned()].into()
                }
                DerivedKind::Builtin(_) => BTreeSet::new(),
            };
            deps.insert(name.clone(), d);
        }
        let mut rule_deps = Vec::new();
        for r in &schema.rules {
            let place = format!("rule `{}`", r.assert);
            let mut v = expr_vars(&env, &place, &r.assert)?;
            if let Some(w) = &r.when {
                v.extend(expr_vars(&env, &place, w)?);
            }
            v.extend(
                template_vars(&env, &r.message).map_err(|source| DistError::Expression {
                    place: place.clone(),
                    expr: r.message.clone(),
                    source,
                })?,
            );
            if let Some(h) = &r.hint {
                v.extend(
                    template_vars(&env, h).map_err(|source| DistError::Expression {
                        place: place.clone(),
                        expr: h.clone(),
                        source,
                    })?,
                );
            }
            unknown(&place, &v, false)?;
            rule_deps.push(v);
        }
        for t in &tfiles {
            unknown(&format!("template {}", t.name), &t.vars, true)?;
        }

        // Dependency order (cycles are a schema bug).
        let order = topo_order(&deps)?;

        // What is used: installer parameters, template and rule variables, and their deps.
        let mut used: BTreeSet<String> = schema
            .params
            .values()
            .filter(|p| p.origin == Origin::Installer)
            .map(|p| p.name.clone())
            .collect();
        used.insert("ip_detect_contents".to_owned());
        // Values the installer itself reads (install.sh preflight ports).
        used.extend(
            schema
                .derived
                .keys()
                .filter(|n| n.starts_with(PREFLIGHT_PORTS_PREFIX))
                .cloned(),
        );
        for t in &tfiles {
            used.extend(t.vars.iter().filter(|v| known.contains(*v)).cloned());
        }
        for r in &rule_deps {
            used.extend(r.iter().cloned());
        }
        let mut stack: Vec<String> = used.iter().cloned().collect();
        while let Some(n) = stack.pop() {
            for d in deps.get(&n).into_iter().flatten() {
                if used.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }

        // Secrets propagate to everything computed from them.
        let mut secret_closure: BTreeSet<String> = known
            .iter()
            .filter(|n| schema.is_secret(n))
            .cloned()
            .collect();
        for n in &order {
            if deps
                .get(n)
                .is_some_and(|d| d.iter().any(|x| secret_closure.contains(x)))
                && schema.derived.contains_key(n)
            {
                secret_closure.insert(n.clone());
            }
        }

        // Every template reading a secret, or anything calculated from one (a derived value,
        // a calculated default), must be a secret file. This is the static check, with a
        // clear message when the distribution loads; rendering checks again with the values
        // a template actually read (see render.rs), so nothing escapes through `{% set %}`,
        // macros or `{% include %}`.
        let mut maybe_secret: BTreeSet<String> = known
            .iter()
            .filter(|n| schema.is_secret(n))
            .cloned()
            .collect();
        for n in &order {
            if deps
                .get(n)
                .is_some_and(|d| d.iter().any(|x| maybe_secret.contains(x)))
            {
                maybe_secret.insert(n.clone());
            }
        }
        for t in &tfiles {
            if schema.files.get(&t.name).is_some_and(|f| f.secret) {
                continue;
            }
            if let Some(key) = t.vars.iter().find(|v| maybe_secret.contains(*v)) {
                return Err(DistError::SecretInPublicFile {
                    name: t.name.clone(),
                    key: key.clone(),
                    why: if schema.is_secret(key) {
                        "is secret"
                    } else {
                        "is calculated from a secret"
                    },
                });
            }
        }

        let digest_doc = serde_json::json!({
            "installer_schema": Digest::of(INSTALLER_SCHEMA.as_bytes()).hex(),
            "schema": Digest::of(schema_text.as_bytes()).hex(),
            "templates": digest_parts,
        });
        let digest = Digest::of(crate::canonical_json(&digest_doc).as_bytes());

        Ok(Distribution {
            inner: Arc::new(Inner {
                schema,
                templates: tfiles,
                env,
                deps,
                rule_deps,
                used,
                order,
                secret_closure,
                digest,
                dir: None,
                open: false,
            }),
            name: None,
        })
    }

    /// The installer's own keys alone (hosts, `ssh_*`, `bootstrap_*`, timeouts): for a
    /// command that reaches the hosts before any build exists (`tarmac exec`). Keys of the
    /// distribution are passed over, neither checked nor refused.
    pub fn installer_only() -> Distribution {
        let mut d =
            Distribution::from_parts("no distribution", "format: 1\nparameters: {}\n", Vec::new())
                .expect("the installer schema is valid on its own");
        if let Some(inner) = Arc::get_mut(&mut d.inner) {
            inner.open = true;
        }
        d
    }

    /// The config directory of a distribution given either the distribution root
    /// (`dist/reference`, holding `config/schema.yaml`) or the config directory itself.
    pub fn config_dir_of(path: &Path) -> Option<PathBuf> {
        if path.join("schema.yaml").is_file() {
            Some(path.to_owned())
        } else if path.join("config/schema.yaml").is_file() {
            Some(path.join("config"))
        } else {
            None
        }
    }

    pub fn schema(&self) -> &Schema {
        &self.inner.schema
    }

    pub fn templates(&self) -> &[TemplateFile] {
        &self.inner.templates
    }

    /// A digest of the installer schema, the distribution schema and every template
    /// (name, mode, bytes). Part of every config id.
    pub fn digest(&self) -> Digest {
        self.inner.digest
    }

    /// Parameters and derived values something actually needs.
    pub fn used(&self) -> &BTreeSet<String> {
        &self.inner.used
    }

    /// Parameters that must be set in config.yaml (no default of any kind and used, ignoring
    /// `required_when` conditions).
    pub fn required_params(&self) -> BTreeSet<String> {
        self.inner
            .schema
            .params
            .values()
            .filter(|p| {
                p.default.is_none()
                    && p.default_expr.is_none()
                    && !p.optional
                    && self.inner.used.contains(&p.name)
            })
            .map(|p| p.name.clone())
            .collect()
    }

    /// The distribution's name: set by whoever loaded it ([`Distribution::with_name`]; a build
    /// records its tree's directory name), else the directory holding its `config/`.
    pub fn name(&self) -> String {
        if let Some(n) = &self.name {
            return n.to_string();
        }
        let Some(dir) = self.dir() else {
            return "distribution".to_owned();
        };
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
        let root = if dir.file_name().is_some_and(|n| n == "config") {
            dir.parent().unwrap_or(&dir)
        } else {
            &dir
        };
        root.file_name().map_or_else(
            || "distribution".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    /// The same distribution under another name.
    pub fn with_name(mut self, name: &str) -> Distribution {
        self.name = Some(name.into());
        self
    }

    /// The distribution's config directory, when loaded from disk.
    pub fn dir(&self) -> Option<&Path> {
        self.inner.dir.as_deref()
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let ft = e.file_type()?;
        if ft.is_dir() {
            walk(&e.path(), out)?;
        } else if ft.is_file() || ft.is_symlink() {
            out.push(e.path());
        }
    }
    Ok(())
}

fn topo_order(deps: &BTreeMap<String, BTreeSet<String>>) -> Result<Vec<String>, DistError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Temp,
        Done,
    }
    fn visit(
        n: &str,
        deps: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
        out: &mut Vec<String>,
    ) -> Result<(), DistError> {
        match marks.get(n) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Temp) => {
                let start = path.iter().position(|p| p == n).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(n.to_owned());
                return Err(DistError::Cycle(cycle.join(" -> ")));
            }
            None => {}
        }
        marks.insert(n.to_owned(), Mark::Temp);
        path.push(n.to_owned());
        for d in deps.get(n).into_iter().flatten() {
            visit(d, deps, marks, path, out)?;
        }
        path.pop();
        marks.insert(n.to_owned(), Mark::Done);
        out.push(n.to_owned());
        Ok(())
    }
    let mut marks = BTreeMap::new();
    let mut out = Vec::new();
    for n in deps.keys() {
        visit(n, deps, &mut marks, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}
