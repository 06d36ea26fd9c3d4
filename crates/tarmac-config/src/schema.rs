//! Schema files: the installer's own parameters (embedded) and a distribution's
//! `config/schema.yaml`, merged into one [`Schema`].
//!
//! Format (version 1):
//!
//! ```yaml
//! format: 1
//! config_package: tarmac-config        # where the masked config copies go (default: first package)
//! parameters:
//!   etcd_client_port:
//!     type: port                       # string int port bool enum ip host url path duration bytes
//!                                      # list dict ip_list host_list
//!     default: 2379                    # or default_expr: "<minijinja expression>"
//!     description: Port etcd serves clients on.
//!     example: 2379                    # shown in "Must set" hints
//!     # required_when: "<expr>"        # needed only when this is true (no default allowed)
//!     # optional: true                 # may stay unset (then `none`)
//!     # secret: true                   # masked as **HIDDEN** in copies shipped to hosts
//!     # min/max (int, duration, bytes), values (enum), items/unique/min_items/max_items
//!     # (list), schemes (url), absolute (path), multiline/max_length (string)
//! derived:
//!   etcd_quorum:
//!     expr: "num_masters // 2 + 1"     # cannot be set by the user
//! rules:
//!   - assert: "num_masters in [1, 3, 5, 7, 9]"
//!     keys: [master_list]              # the error is attached to these keys
//!     message: "Must have 1, 3, 5, 7, or 9 masters. Found {{ num_masters }}"
//!     hint: "…"
//!     # when: "<expr>"                 # the rule applies only when this is true
//! files:
//!   # A file that reads a secret (or a value calculated from one) must say `secret: true`:
//!   # it is not put in the config package (which is served over HTTP to anyone) but
//!   # delivered over SSH to the hosts of its scope only, readable by root and `group`.
//!   tarmac-config/master/etc/prometheus/prometheus.yml: {secret: true, group: tarmac_prometheus, mode: "0640"}
//!   tarmac-config/common/bin/detect_ip: {format: shell}  # how values are escaped, when the
//!                                      # path does not say (shell env systemd yaml json text)
//!   # owner/group (set on the host at activation, once the package users exist) and mode work
//!   # for any file; a secret file's mode never gives other users access.
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;

use crate::types::{Type, parse_bytes, parse_duration};

/// The installer's own parameters, shared by every distribution.
pub const INSTALLER_SCHEMA: &str = include_str!("installer_schema.yaml");

/// Where a parameter was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Installer,
    Distribution,
}

/// One user-settable parameter.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub ty: Type,
    pub description: String,
    pub example: Option<Json>,
    pub default: Option<Json>,
    pub default_expr: Option<String>,
    pub required_when: Option<String>,
    pub optional: bool,
    pub secret: bool,
    pub origin: Origin,
}

/// How a derived value is computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DerivedKind {
    /// A minijinja expression over other values.
    Expr(String),
    /// Computed by Tarmac itself (e.g. `ip_detect_contents` from the ip-detect file).
    Builtin(String),
}

/// A value calculated from others; setting it in config.yaml is an error.
#[derive(Debug, Clone)]
pub struct Derived {
    pub name: String,
    pub kind: DerivedKind,
    pub description: String,
    pub secret: bool,
    pub origin: Origin,
}

/// A cross-field rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub assert: String,
    pub when: Option<String>,
    pub keys: Vec<String>,
    pub message: String,
    pub hint: Option<String>,
    pub origin: Origin,
}

/// Per-file settings for rendered templates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileSettings {
    pub mode: Option<u32>,
    /// How printed values are escaped, when the path does not say (`shell`, `env`,
    /// `systemd`, `yaml`, `json`, `text`).
    pub format: Option<crate::escape::FileFormat>,
    /// The file holds secret values: delivered over SSH to the hosts of its scope, never
    /// packed into the (served) config package. Required for any template that reads a
    /// secret.
    pub secret: bool,
    /// Owner on the host (`root` or a package user `tarmac_…`), set at activation.
    pub owner: Option<String>,
    /// Group on the host (e.g. the service's `tarmac_prometheus`), set at activation.
    pub group: Option<String>,
}

/// The merged schema: installer parameters plus the distribution's.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    pub params: BTreeMap<String, Param>,
    pub derived: BTreeMap<String, Derived>,
    pub rules: Vec<Rule>,
    pub files: BTreeMap<String, FileSettings>,
    pub config_package: Option<String>,
}

/// A schema file that is not well-formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: `{name}`: {message}")]
    Entry {
        file: String,
        name: String,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    format: u32,
    #[serde(default)]
    config_package: Option<String>,
    #[serde(default)]
    parameters: BTreeMap<String, ParamSpec>,
    #[serde(default)]
    derived: BTreeMap<String, DerivedSpec>,
    #[serde(default)]
    rules: Vec<RuleSpec>,
    #[serde(default)]
    files: BTreeMap<String, FileSpecEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamSpec {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    example: Option<Json>,
    #[serde(default)]
    default: Option<Json>,
    #[serde(default)]
    default_expr: Option<String>,
    #[serde(default)]
    required_when: Option<String>,
    #[serde(default)]
    optional: bool,
    #[serde(default)]
    secret: bool,
    #[serde(default)]
    min: Option<Json>,
    #[serde(default)]
    max: Option<Json>,
    #[serde(default)]
    values: Option<Vec<String>>,
    #[serde(default)]
    items: Option<String>,
    #[serde(default)]
    unique: Option<bool>,
    #[serde(default)]
    min_items: Option<usize>,
    #[serde(default)]
    max_items: Option<usize>,
    #[serde(default)]
    schemes: Option<Vec<String>>,
    #[serde(default)]
    absolute: bool,
    #[serde(default)]
    multiline: bool,
    #[serde(default)]
    min_length: Option<usize>,
    #[serde(default)]
    max_length: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DerivedSpec {
    #[serde(default)]
    expr: Option<String>,
    #[serde(default)]
    builtin: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    secret: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    assert: String,
    #[serde(default)]
    when: Option<String>,
    keys: Vec<String>,
    message: String,
    #[serde(default)]
    hint: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpecEntry {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    secret: bool,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    group: Option<String>,
}

/// Builtin derived values Tarmac knows how to compute.
pub const BUILTINS: &[&str] = &["ip_detect"];

impl Schema {
    /// Parse one schema file and merge it into `self`. Names may not repeat across files.
    pub fn add_file(&mut self, file: &str, text: &str, origin: Origin) -> Result<(), SchemaError> {
        let spec: FileSpec = serde_saphyr::from_str(text).map_err(|e| SchemaError::Syntax {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
        let entry_err = |name: &str, message: String| SchemaError::Entry {
            file: file.to_owned(),
            name: name.to_owned(),
            message,
        };
        if spec.format != 1 {
            return Err(SchemaError::Syntax {
                file: file.to_owned(),
                message: format!(
                    "unsupported schema format {}: this Tarmac reads format 1",
                    spec.format
                ),
            });
        }
        for (name, p) in spec.parameters {
            check_name(&name).map_err(|m| entry_err(&name, m))?;
            if self.params.contains_key(&name) || self.derived.contains_key(&name) {
                return Err(entry_err(
                    &name,
                    "declared twice (the installer already declares it?)".into(),
                ));
            }
            let param = build_param(&name, p, origin).map_err(|m| entry_err(&name, m))?;
            self.params.insert(name, param);
        }
        for (name, d) in spec.derived {
            check_name(&name).map_err(|m| entry_err(&name, m))?;
            if self.params.contains_key(&name) || self.derived.contains_key(&name) {
                return Err(entry_err(&name, "declared twice".into()));
            }
            let kind = match (d.expr, d.builtin) {
                (Some(e), None) => DerivedKind::Expr(e),
                (None, Some(b)) if BUILTINS.contains(&b.as_str()) => DerivedKind::Builtin(b),
                (None, Some(b)) => {
                    return Err(entry_err(
                        &name,
                        format!("unknown builtin `{b}` (known: {})", BUILTINS.join(", ")),
                    ));
                }
                _ => {
                    return Err(entry_err(
                        &name,
                        "needs exactly one of `expr` or `builtin`".into(),
                    ));
                }
            };
            self.derived.insert(
                name.clone(),
                Derived {
                    name,
                    kind,
                    description: d.description,
                    secret: d.secret,
                    origin,
                },
            );
        }
        for r in spec.rules {
            if r.keys.is_empty() {
                return Err(entry_err(
                    &r.assert,
                    "a rule needs at least one key in `keys`".into(),
                ));
            }
            self.rules.push(Rule {
                assert: r.assert,
                when: r.when,
                keys: r.keys,
                message: r.message,
                hint: r.hint,
                origin,
            });
        }
        for (path, f) in spec.files {
            let mode = match f.mode {
                None => None,
                Some(m) => Some(
                    u32::from_str_radix(m.trim_start_matches("0o"), 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| {
                            entry_err(
                                &path,
                                format!("mode `{m}` is not an octal mode like \"0644\""),
                            )
                        })?,
                ),
            };
            let format = match f.format {
                None => None,
                Some(name) => Some(crate::escape::FileFormat::parse(&name).ok_or_else(|| {
                    entry_err(
                        &path,
                        format!(
                            "format `{name}` is not one of shell, env, systemd, yaml, json, text"
                        ),
                    )
                })?),
            };
            if f.secret
                && let Some(m) = mode
                && m & 0o7000 != 0
            {
                return Err(entry_err(
                    &path,
                    format!("mode `{m:04o}`: a secret file cannot be setuid, setgid or sticky"),
                ));
            }
            if f.secret
                && let Some(m) = mode
                && m & 0o007 != 0
            {
                return Err(entry_err(
                    &path,
                    format!(
                        "mode `{m:04o}` gives other users access to a secret file: use 0600, or 0640 with `group:` set to the group of the service that reads it"
                    ),
                ));
            }
            if let Some(o) = &f.owner
                && !owner_ok(o)
            {
                return Err(entry_err(
                    &path,
                    format!(
                        "owner `{o}` is not `root` or a package user (tarmac_[a-z0-9_]+, at most 32 characters)"
                    ),
                ));
            }
            if let Some(g) = &f.group
                && !group_ok(g)
            {
                return Err(entry_err(
                    &path,
                    format!(
                        "group `{g}` is not a group name (^[a-z_][a-z0-9_-]*$, at most 32 characters)"
                    ),
                ));
            }
            self.files.insert(
                path,
                FileSettings {
                    mode,
                    format,
                    secret: f.secret,
                    owner: f.owner,
                    group: f.group,
                },
            );
        }
        if spec.config_package.is_some() {
            self.config_package = spec.config_package;
        }
        // Rule keys must name known values.
        for r in &self.rules {
            for k in &r.keys {
                if !self.params.contains_key(k) && !self.derived.contains_key(k) {
                    return Err(entry_err(
                        k,
                        format!("rule `{}` names an unknown key", r.assert),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every name a template or expression may use.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params
            .keys()
            .chain(self.derived.keys())
            .map(String::as_str)
    }

    pub fn is_secret(&self, name: &str) -> bool {
        self.params.get(name).is_some_and(|p| p.secret)
            || self.derived.get(name).is_some_and(|d| d.secret)
    }
}

/// `root`, or a package user: `^tarmac_[a-z0-9_]+$`, at most 32 characters (the rule of
/// pkginfo's `username`).
pub fn owner_ok(u: &str) -> bool {
    u == "root"
        || u.len() <= 32
            && u.strip_prefix("tarmac_").is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            })
}

/// A group name: `^[a-z_][a-z0-9_-]*$`, at most 32 characters (pkginfo's `group` rule).
pub fn group_ok(g: &str) -> bool {
    let mut b = g.bytes();
    g.len() <= 32
        && b.next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == b'_')
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err("names must match ^[a-z][a-z0-9_]*$".into())
    }
}

fn json_i64(v: &Option<Json>, what: &str) -> Result<Option<i64>, String> {
    match v {
        None => Ok(None),
        Some(Json::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("`{what}` must be an integer")),
        Some(other) => Err(format!("`{what}` must be an integer, got {other}")),
    }
}

fn json_duration(v: &Option<Json>, what: &str) -> Result<Option<Duration>, String> {
    match v {
        None => Ok(None),
        Some(Json::Number(n)) => n
            .as_u64()
            .map(|s| Some(Duration::from_secs(s)))
            .ok_or_else(|| format!("`{what}` must be a duration")),
        Some(Json::String(s)) => parse_duration(s)
            .map(Some)
            .map_err(|e| format!("`{what}`: {e}")),
        Some(other) => Err(format!("`{what}` must be a duration, got {other}")),
    }
}

fn json_bytes(v: &Option<Json>, what: &str) -> Result<Option<u64>, String> {
    match v {
        None => Ok(None),
        Some(Json::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("`{what}` must be a byte size")),
        Some(Json::String(s)) => parse_bytes(s)
            .map(Some)
            .map_err(|e| format!("`{what}`: {e}")),
        Some(other) => Err(format!("`{what}` must be a byte size, got {other}")),
    }
}

/// Turn a type name plus options into a [`Type`].
fn build_type(name: &str, p: &ParamSpec) -> Result<Type, String> {
    let list = |items: Option<Type>| -> Result<Type, String> {
        Ok(Type::List {
            items: items.map(Box::new),
            unique: p.unique.unwrap_or(true),
            min_items: p.min_items.unwrap_or(0),
            max_items: p.max_items,
        })
    };
    Ok(match name {
        "string" => Type::String {
            multiline: p.multiline,
            min_length: p.min_length.unwrap_or(1),
            max_length: p.max_length,
        },
        "int" => Type::Int {
            min: json_i64(&p.min, "min")?.unwrap_or(i64::MIN),
            max: json_i64(&p.max, "max")?.unwrap_or(i64::MAX),
        },
        "port" => Type::Int {
            min: json_i64(&p.min, "min")?.unwrap_or(1),
            max: json_i64(&p.max, "max")?.unwrap_or(65535),
        },
        "bool" => Type::Bool,
        "enum" => match &p.values {
            Some(v) if !v.is_empty() => Type::Enum(v.clone()),
            _ => return Err("type enum needs `values`".into()),
        },
        "ip" => Type::Ip,
        "host" => Type::Host,
        "url" => Type::Url {
            schemes: p
                .schemes
                .clone()
                .unwrap_or_else(|| vec!["http".into(), "https".into()]),
        },
        "path" => Type::Path {
            absolute: p.absolute,
        },
        "duration" => Type::Duration {
            min: json_duration(&p.min, "min")?,
            max: json_duration(&p.max, "max")?,
        },
        "bytes" => Type::Bytes {
            min: json_bytes(&p.min, "min")?,
            max: json_bytes(&p.max, "max")?,
        },
        "ip_list" => list(Some(Type::Ip))?,
        "host_list" => list(Some(Type::Host))?,
        "list" => {
            let items = match p.items.as_deref() {
                None | Some("any") => None,
                Some(i @ ("list" | "dict" | "ip_list" | "host_list")) => {
                    return Err(format!("list items of type `{i}` are not supported"));
                }
                Some(i) => Some(build_type(
                    i,
                    &ParamSpec {
                        min: None,
                        max: None,
                        values: p.values.clone(),
                        ..clone_opts(p)
                    },
                )?),
            };
            list(items)?
        }
        "dict" => Type::Dict,
        other => {
            return Err(format!(
                "unknown type `{other}` (known: string, int, port, bool, enum, ip, host, url, path, duration, bytes, list, dict, ip_list, host_list)"
            ));
        }
    })
}

fn clone_opts(p: &ParamSpec) -> ParamSpec {
    ParamSpec {
        ty: p.ty.clone(),
        description: String::new(),
        example: None,
        default: None,
        default_expr: None,
        required_when: None,
        optional: false,
        secret: false,
        min: p.min.clone(),
        max: p.max.clone(),
        values: p.values.clone(),
        items: None,
        unique: None,
        min_items: None,
        max_items: None,
        schemes: p.schemes.clone(),
        absolute: p.absolute,
        multiline: p.multiline,
        min_length: p.min_length,
        max_length: p.max_length,
    }
}

fn build_param(name: &str, p: ParamSpec, origin: Origin) -> Result<Param, String> {
    let ty = build_type(&p.ty, &p)?;
    let defaults = [
        p.default.is_some(),
        p.default_expr.is_some(),
        p.optional,
        p.required_when.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if defaults > 1 {
        return Err(
            "use at most one of `default`, `default_expr`, `optional`, `required_when`".into(),
        );
    }
    // A literal default must itself be valid.
    let default = match p.default {
        None => None,
        Some(d) => {
            let node = json_to_node(&d);
            let checked = crate::types::check(&ty, &node)
                .map_err(|e| format!("default {d} is invalid: {}", e.message))?;
            Some(checked.value)
        }
    };
    Ok(Param {
        name: name.to_owned(),
        ty,
        description: p.description,
        example: p.example,
        default,
        default_expr: p.default_expr,
        required_when: p.required_when,
        optional: p.optional,
        secret: p.secret,
        origin,
    })
}

/// A JSON value as a YAML node (quoted strings, so no YAML 1.1 warnings).
pub fn json_to_node(v: &Json) -> crate::yaml::Node {
    use crate::yaml::{Loc, Node, Scalar, Style};
    let loc = Loc::default();
    let scalar = |value: Scalar, text: String, style: Style| Node::Scalar {
        value,
        text,
        style,
        loc,
    };
    match v {
        Json::Null => scalar(Scalar::Null, String::new(), Style::Plain),
        Json::Bool(b) => scalar(Scalar::Bool(*b), b.to_string(), Style::Plain),
        Json::Number(n) => match n.as_i64() {
            Some(i) => scalar(Scalar::Int(i), i.to_string(), Style::Plain),
            None => scalar(
                Scalar::Float(n.as_f64().unwrap_or(f64::NAN)),
                n.to_string(),
                Style::Plain,
            ),
        },
        Json::String(s) => scalar(Scalar::Str(s.clone()), s.clone(), Style::Quoted),
        Json::Array(a) => Node::Seq {
            items: a.iter().map(json_to_node).collect(),
            loc,
        },
        Json::Object(m) => Node::Map {
            entries: m
                .iter()
                .map(|(k, v)| {
                    (
                        scalar(Scalar::Str(k.clone()), k.clone(), Style::Quoted),
                        json_to_node(v),
                    )
                })
                .collect(),
            loc,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installer_schema_parses() {
        let mut s = Schema::default();
        s.add_file("installer", INSTALLER_SCHEMA, Origin::Installer)
            .unwrap();
        assert_eq!(s.params["ssh_port"].ty, Type::port());
        assert!(s.params["master_list"].default.is_none());
        assert!(matches!(
            s.derived["ip_detect_contents"].kind,
            DerivedKind::Builtin(_)
        ));
    }

    #[test]
    fn bad_defaults_are_caught() {
        let mut s = Schema::default();
        let e = s
            .add_file(
                "x.yaml",
                "format: 1\nparameters:\n  p: {type: port, default: 70000}\n",
                Origin::Distribution,
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.yaml: `p`: default 70000 is invalid: Must be between 1 and 65535 inclusive"
        );
        let e = s
            .add_file(
                "x.yaml",
                "format: 1\nparameters:\n  p: {type: nope}\n",
                Origin::Distribution,
            )
            .unwrap_err();
        assert!(e.to_string().contains("unknown type `nope`"), "{e}");
    }
}
