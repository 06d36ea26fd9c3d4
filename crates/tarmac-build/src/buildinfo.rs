//! `buildinfo.json`, source specs and `treeinfo.json`: strict parsing with
//! did-you-mean hints for misspelled keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tarmac_pkg::hostreq::HostRequirements;
use tarmac_types::{Digest, PackageName};

/// Keys allowed in `buildinfo.json`.
pub const BUILDINFO_KEYS: &[&str] = &[
    "single_source",
    "sources",
    "requires",
    "environment",
    "state_directory",
    "username",
    "group",
    "sysctl",
    "build_script",
    "restart_on_change",
    "reload_on_change",
    "bundle_libraries",
];

/// Keys allowed in `treeinfo.json`.
pub const TREEINFO_KEYS: &[&str] = &[
    "bootstrap_package_list",
    "exclude",
    "variants",
    "host_requirements",
];

/// Environment keys a package may not set (the host owns them).
pub const RESERVED_ENV: &[&str] = &["PATH", "LD_LIBRARY_PATH"];

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("`{path}` must contain a JSON object")]
    NotObject { path: PathBuf },
    #[error("`{path}`: unknown key `{key}`{}", did_you_mean(suggestion))]
    UnknownKey {
        path: PathBuf,
        key: String,
        suggestion: Option<String>,
        allowed: Vec<String>,
    },
    #[error("`{path}`: `{key}` {problem}")]
    Invalid {
        path: PathBuf,
        key: String,
        problem: String,
        hint: Option<String>,
    },
}

impl tarmac_types::error_report::Hint for SpecError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            SpecError::UnknownKey { allowed, .. } => {
                Some(format!("allowed keys are {}", allowed.join(", ")).into())
            }
            SpecError::Invalid { hint, .. } => hint.as_deref().map(Into::into),
            SpecError::Read { .. } | SpecError::Json { .. } | SpecError::NotObject { .. } => None,
        }
    }
}

fn did_you_mean(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}

/// The closest candidate to `word`, if it is close enough to be a plausible typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = levenshtein(&word.to_ascii_lowercase(), &c.to_ascii_lowercase());
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let (d, c) = best?;
    let limit = (word.len().max(c.len()) / 3).max(2);
    // prefixes/abbreviations such as `state_dir` for `state_directory` count too
    let prefix = c.starts_with(word) && word.len() >= 4;
    (d <= limit || prefix).then(|| c.to_owned())
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A source of a package, as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A file or directory; `path` is relative to the package directory (or absolute).
    /// If the environment variable `env` is set, its value replaces `path` (how a build
    /// machine passes in an artifact such as a freshly built `tarmac-host` binary).
    Local { path: String, env: Option<String> },
    /// A git commit (`ref`, 40 hex) of the repository at `git`; `ref_origin` (a branch or
    /// tag) is informational and checked with a warning.
    Git {
        git: String,
        commit: String,
        ref_origin: Option<String>,
    },
    /// A file downloaded from `url` (http, https or file), verified with `sha256`;
    /// `extract` unpacks tar.{gz,xz,zst,bz2}/tgz/tar/zip and strips a single top directory.
    Url {
        url: String,
        sha256: Digest,
        extract: bool,
    },
    /// A Debian package fetched with `apt-get download package=version` and unpacked
    /// with `dpkg-deb -x`.
    Deb {
        package: String,
        version: String,
        sha256: Digest,
        arch: Option<String>,
    },
}

impl SourceSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::Local { .. } => "local",
            SourceSpec::Git { .. } => "git",
            SourceSpec::Url { extract: false, .. } => "url",
            SourceSpec::Url { extract: true, .. } => "url_extract",
            SourceSpec::Deb { .. } => "deb",
        }
    }

    /// The spec as canonical JSON (what goes into the package id and buildinfo.full.json).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), self.kind().into());
        match self {
            SourceSpec::Local { path, env } => {
                m.insert("path".into(), path.clone().into());
                if let Some(e) = env {
                    m.insert("env".into(), e.clone().into());
                }
            }
            SourceSpec::Git {
                git,
                commit,
                ref_origin,
            } => {
                m.insert("git".into(), git.clone().into());
                m.insert("ref".into(), commit.clone().into());
                if let Some(o) = ref_origin {
                    m.insert("ref_origin".into(), o.clone().into());
                }
            }
            SourceSpec::Url { url, sha256, .. } => {
                m.insert("url".into(), url.clone().into());
                m.insert("sha256".into(), sha256.hex().into());
            }
            SourceSpec::Deb {
                package,
                version,
                sha256,
                arch,
            } => {
                m.insert("package".into(), package.clone().into());
                m.insert("version".into(), version.clone().into());
                m.insert("sha256".into(), sha256.hex().into());
                if let Some(a) = arch {
                    m.insert("arch".into(), a.clone().into());
                }
            }
        }
        Value::Object(m)
    }
}

/// A build-time dependency: a package name, optionally pinned to a variant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Require {
    pub name: PackageName,
    /// `None` means "whatever variant the tree selects" for plain-string requires,
    /// `Some(None)` the default variant, `Some(Some(v))` variant `v`.
    pub variant: Option<Option<String>>,
}

impl Require {
    pub fn to_json(&self) -> Value {
        match &self.variant {
            None => Value::String(self.name.to_string()),
            Some(v) => serde_json::json!({ "name": self.name.as_str(), "variant": v }),
        }
    }
}

/// A parsed `[<variant>.]buildinfo.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildInfo {
    /// Sources by name (`single_source` becomes `{<package name>: spec}`).
    pub sources: BTreeMap<String, SourceSpec>,
    pub requires: Vec<Require>,
    /// Runtime environment of the package (copied to pkginfo.json).
    pub environment: BTreeMap<String, String>,
    pub state_directory: bool,
    pub username: Option<String>,
    pub group: Option<String>,
    /// `{service: {key: value}}`
    pub sysctl: BTreeMap<String, BTreeMap<String, Value>>,
    /// The build script's file name in the package directory.
    pub build_script: String,
    /// Tree paths whose change restarts the package's units (copied to pkginfo.json).
    pub restart_on_change: Vec<String>,
    /// Tree paths whose change reloads the package's units instead (copied to pkginfo.json).
    pub reload_on_change: Vec<String>,
    /// Bundle the shared-library closure of the package's ELF files ([`crate::bundle`]).
    /// Default true, except for the `tarmac-host` package (always false: the bootstrap
    /// exports its `bin/tarmac-host` to run before any package is installed).
    pub bundle_libraries: bool,
}

fn parse_object(path: &Path, bytes: &[u8]) -> Result<Map<String, Value>, SpecError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(SpecError::NotObject {
            path: path.to_owned(),
        }),
        Err(source) => Err(SpecError::Json {
            path: path.to_owned(),
            source,
        }),
    }
}

fn check_keys(
    path: &Path,
    obj: &Map<String, Value>,
    allowed: &[&str],
    ctx: &str,
) -> Result<(), SpecError> {
    for key in obj.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(SpecError::UnknownKey {
                path: path.to_owned(),
                key: format!("{ctx}{key}"),
                suggestion: suggest(key, allowed.iter().copied()).map(|s| format!("{ctx}{s}")),
                allowed: allowed.iter().map(|s| s.to_string()).collect(),
            });
        }
    }
    Ok(())
}

fn invalid(path: &Path, key: &str, problem: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        path: path.to_owned(),
        key: key.to_owned(),
        problem: problem.into(),
        hint: None,
    }
}

fn invalid_with_hint(
    path: &Path,
    key: &str,
    problem: impl Into<String>,
    hint: impl Into<String>,
) -> SpecError {
    SpecError::Invalid {
        path: path.to_owned(),
        key: key.to_owned(),
        problem: problem.into(),
        hint: Some(hint.into()),
    }
}

fn get_str(
    path: &Path,
    obj: &Map<String, Value>,
    key: &str,
    ctx: &str,
) -> Result<Option<String>, SpecError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(invalid(
            path,
            &format!("{ctx}{key}"),
            "must be a non-empty string",
        )),
    }
}

fn req_str(
    path: &Path,
    obj: &Map<String, Value>,
    key: &str,
    ctx: &str,
) -> Result<String, SpecError> {
    get_str(path, obj, key, ctx)?
        .ok_or_else(|| invalid(path, &format!("{ctx}{key}"), "is required"))
}

fn get_sha256(path: &Path, obj: &Map<String, Value>, ctx: &str) -> Result<Digest, SpecError> {
    let s = req_str(path, obj, "sha256", ctx).map_err(|_| {
        invalid_with_hint(
            path,
            &format!("{ctx}sha256"),
            "is required (64 hex characters)",
            "compute it with `sha256sum <file>`; downloads are never trusted without a checksum",
        )
    })?;
    s.parse().map_err(|_| {
        invalid(
            path,
            &format!("{ctx}sha256"),
            format!("`{s}` is not a sha256 (64 hex characters)"),
        )
    })
}

/// Parse one source spec (the value of `single_source` or of a `sources` entry).
pub fn parse_source(path: &Path, ctx: &str, v: &Value) -> Result<SourceSpec, SpecError> {
    let Value::Object(obj) = v else {
        return Err(invalid(
            path,
            ctx.trim_end_matches('.'),
            "must be an object with a `kind`",
        ));
    };
    const KINDS: &[&str] = &["local", "git", "url", "url_extract", "deb"];
    let kind = req_str(path, obj, "kind", ctx)?;
    let spec = match kind.as_str() {
        "local" => {
            check_keys(path, obj, &["kind", "path", "env"], ctx)?;
            SourceSpec::Local {
                path: req_str(path, obj, "path", ctx)?,
                env: get_str(path, obj, "env", ctx)?,
            }
        }
        "git" => {
            check_keys(path, obj, &["kind", "git", "ref", "ref_origin"], ctx)?;
            let commit = req_str(path, obj, "ref", ctx)?;
            if commit.len() != 40 || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid_with_hint(
                    path,
                    &format!("{ctx}ref"),
                    format!("`{commit}` must be a full 40-hex commit id"),
                    "put the branch or tag in `ref_origin` and its commit (`git rev-parse <branch>`) in `ref`",
                ));
            }
            SourceSpec::Git {
                git: req_str(path, obj, "git", ctx)?,
                commit: commit.to_ascii_lowercase(),
                ref_origin: get_str(path, obj, "ref_origin", ctx)?,
            }
        }
        "url" | "url_extract" => {
            check_keys(path, obj, &["kind", "url", "sha256"], ctx)?;
            let url = req_str(path, obj, "url", ctx)?;
            if !(url.starts_with("http://")
                || url.starts_with("https://")
                || url.starts_with("file://"))
            {
                return Err(invalid(
                    path,
                    &format!("{ctx}url"),
                    format!("`{url}` must start with http://, https:// or file://"),
                ));
            }
            SourceSpec::Url {
                url,
                sha256: get_sha256(path, obj, ctx)?,
                extract: kind == "url_extract",
            }
        }
        "deb" => {
            check_keys(
                path,
                obj,
                &["kind", "package", "version", "sha256", "arch"],
                ctx,
            )?;
            SourceSpec::Deb {
                package: req_str(path, obj, "package", ctx)?,
                version: req_str(path, obj, "version", ctx)?,
                sha256: get_sha256(path, obj, ctx)?,
                arch: get_str(path, obj, "arch", ctx)?,
            }
        }
        other => {
            return Err(invalid(
                path,
                &format!("{ctx}kind"),
                format!(
                    "`{other}` is not a source kind{}; use one of {}",
                    did_you_mean(&suggest(other, KINDS.iter().copied())),
                    KINDS.join(", ")
                ),
            ));
        }
    };
    Ok(spec)
}

fn valid_user(s: &str) -> bool {
    s.strip_prefix("tarmac_").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    }) && s.len() <= 32
}

fn valid_group(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && cs.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && s.len() <= 32
}

impl BuildInfo {
    /// Parse the bytes of `[<variant>.]buildinfo.json` of package `name`.
    pub fn parse(
        path: &Path,
        name: &PackageName,
        variant: Option<&str>,
        bytes: &[u8],
    ) -> Result<BuildInfo, SpecError> {
        let obj = parse_object(path, bytes)?;
        for reserved in ["name", "variant"] {
            if obj.contains_key(reserved) {
                return Err(invalid(
                    path,
                    reserved,
                    "must not be set: it comes from the directory and file name",
                ));
            }
        }
        check_keys(path, &obj, BUILDINFO_KEYS, "")?;

        let mut sources = BTreeMap::new();
        match (obj.get("single_source"), obj.get("sources")) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    path,
                    "sources",
                    "and `single_source` are mutually exclusive",
                ));
            }
            (Some(s), None) => {
                sources.insert(name.to_string(), parse_source(path, "single_source.", s)?);
            }
            (None, Some(Value::Object(m))) => {
                for (src_name, s) in m {
                    if src_name.is_empty()
                        || src_name.starts_with('.')
                        || !src_name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._-+@".contains(c))
                    {
                        return Err(invalid(
                            path,
                            &format!("sources.{src_name}"),
                            "is not a valid source name (letters, digits, . _ - + @)",
                        ));
                    }
                    sources.insert(
                        src_name.clone(),
                        parse_source(path, &format!("sources.{src_name}."), s)?,
                    );
                }
            }
            (None, Some(_)) => {
                return Err(invalid(path, "sources", "must be an object {name: source}"));
            }
            (None, None) => {}
        }

        let mut requires = Vec::new();
        match obj.get("requires") {
            None => {}
            Some(Value::Array(items)) => {
                for item in items {
                    let bad = |why: &str| invalid(path, "requires", format!("entry {item} {why}"));
                    let r = match item {
                        Value::String(s) => {
                            if tarmac_types::PackageId::is_id(s) {
                                return Err(bad(
                                    "is a package id; requires name packages, not versions",
                                ));
                            }
                            Require {
                                name: s.parse().map_err(|e| bad(&format!("is invalid: {e}")))?,
                                variant: None,
                            }
                        }
                        Value::Object(o) => {
                            check_keys(path, o, &["name", "variant"], "requires[].")?;
                            let n = o
                                .get("name")
                                .and_then(Value::as_str)
                                .ok_or_else(|| bad("needs a `name`"))?;
                            let v = match o.get("variant") {
                                Some(Value::Null) => None,
                                Some(Value::String(s)) => Some(s.clone()),
                                _ => {
                                    return Err(bad(
                                        "needs `variant` (a string, or null for the default)",
                                    ));
                                }
                            };
                            Require {
                                name: n.parse().map_err(|e| bad(&format!("is invalid: {e}")))?,
                                variant: Some(v),
                            }
                        }
                        _ => return Err(bad("must be a name or {\"name\", \"variant\"}")),
                    };
                    if r.name.as_str() == name.as_str() {
                        return Err(bad("is the package itself"));
                    }
                    requires.push(r);
                }
            }
            Some(_) => return Err(invalid(path, "requires", "must be a list")),
        }

        let mut environment = BTreeMap::new();
        match obj.get("environment") {
            None => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    if RESERVED_ENV.contains(&k.as_str()) {
                        return Err(invalid(
                            path,
                            &format!("environment.{k}"),
                            "is reserved: the host sets PATH and LD_LIBRARY_PATH",
                        ));
                    }
                    if k.is_empty()
                        || k.starts_with(|c: char| c.is_ascii_digit())
                        || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(invalid(
                            path,
                            &format!("environment.{k}"),
                            "is not a valid environment variable name",
                        ));
                    }
                    let v = v.as_str().ok_or_else(|| {
                        invalid(path, &format!("environment.{k}"), "must be a string")
                    })?;
                    environment.insert(k.clone(), v.to_owned());
                }
            }
            Some(_) => return Err(invalid(path, "environment", "must be an object of strings")),
        }

        let state_directory = match obj.get("state_directory") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid(path, "state_directory", "must be true or false")),
        };
        let username = get_str(path, &obj, "username", "")?;
        if let Some(u) = &username
            && !valid_user(u)
        {
            return Err(invalid(
                path,
                "username",
                format!("`{u}` must match ^tarmac_[a-z0-9_]+$ (at most 32 characters)"),
            ));
        }
        let group = get_str(path, &obj, "group", "")?;
        if let Some(g) = &group {
            if username.is_none() {
                return Err(invalid(path, "group", "needs `username` too"));
            }
            if !valid_group(g) {
                return Err(invalid(
                    path,
                    "group",
                    format!("`{g}` must match ^[a-z_][a-z0-9_-]*$"),
                ));
            }
        }
        let mut sysctl = BTreeMap::new();
        match obj.get("sysctl") {
            None => {}
            Some(Value::Object(services)) => {
                for (svc, kv) in services {
                    let Value::Object(kv) = kv else {
                        return Err(invalid(
                            path,
                            &format!("sysctl.{svc}"),
                            "must be an object {key: value}",
                        ));
                    };
                    let mut m = BTreeMap::new();
                    for (k, v) in kv {
                        if !(v.is_string() || v.is_i64() || v.is_u64()) {
                            return Err(invalid(
                                path,
                                &format!("sysctl.{svc}.{k}"),
                                "must be a string or an integer",
                            ));
                        }
                        m.insert(k.clone(), v.clone());
                    }
                    sysctl.insert(svc.clone(), m);
                }
            }
            Some(_) => {
                return Err(invalid(
                    path,
                    "sysctl",
                    "must be an object {service: {key: value}}",
                ));
            }
        }
        let default_script = match variant {
            Some(v) => format!("{v}.build"),
            None => "build".to_owned(),
        };
        let build_script = get_str(path, &obj, "build_script", "")?.unwrap_or(default_script);
        if build_script.contains('/') || build_script.starts_with('.') {
            return Err(invalid(
                path,
                "build_script",
                "must be a file name in the package directory",
            ));
        }
        let watch_list = |key: &str| -> Result<Vec<String>, SpecError> {
            let mut out = Vec::new();
            match obj.get(key) {
                None => {}
                Some(Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        let k = format!("{key}[{i}]");
                        let Some(p) = item.as_str() else {
                            return Err(invalid(path, &k, "must be a string"));
                        };
                        tarmac_pkg::pkginfo::check_watch_path(p).map_err(|why| {
                            invalid(
                                path,
                                &k,
                                format!(
                                    "`{p}`: {why} (paths of the active tree, e.g. `etc/cluster`)"
                                ),
                            )
                        })?;
                        out.push(p.trim_end_matches('/').to_owned());
                    }
                }
                Some(_) => {
                    return Err(invalid(
                        path,
                        key,
                        "must be a list of paths such as [\"etc/cluster\", \"bin/detect_ip\"]",
                    ));
                }
            }
            Ok(out)
        };
        let restart_on_change = watch_list("restart_on_change")?;
        let reload_on_change = watch_list("reload_on_change")?;
        if let Some(p) = reload_on_change
            .iter()
            .find(|p| restart_on_change.contains(p))
        {
            return Err(invalid(
                path,
                "reload_on_change",
                format!("`{p}` is in restart_on_change too; list each path once"),
            ));
        }
        let is_host = name.as_str() == crate::bootstrap::HOST_PACKAGE;
        let bundle_libraries = match obj.get("bundle_libraries") {
            None => !is_host,
            Some(Value::Bool(true)) if is_host => {
                return Err(invalid_with_hint(
                    path,
                    "bundle_libraries",
                    format!(
                        "must be false for `{}`: the bootstrap exports its bin/tarmac-host to run before any package is installed, so it cannot load libraries from one",
                        crate::bootstrap::HOST_PACKAGE
                    ),
                    "ship a portable tarmac-host instead (scripts/build-portable.sh, glibc >= 2.17)",
                ));
            }
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid(path, "bundle_libraries", "must be true or false")),
        };
        Ok(BuildInfo {
            sources,
            requires,
            environment,
            state_directory,
            username,
            group,
            sysctl,
            build_script,
            restart_on_change,
            reload_on_change,
            bundle_libraries,
        })
    }

    /// The `pkginfo.json` this package gets (requires as written).
    pub fn pkginfo_json(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "requires".into(),
            Value::Array(self.requires.iter().map(Require::to_json).collect()),
        );
        m.insert(
            "environment".into(),
            serde_json::to_value(&self.environment).expect("map"),
        );
        m.insert("state_directory".into(), self.state_directory.into());
        if let Some(u) = &self.username {
            m.insert("username".into(), u.clone().into());
        }
        if let Some(g) = &self.group {
            m.insert("group".into(), g.clone().into());
        }
        m.insert(
            "sysctl".into(),
            serde_json::to_value(&self.sysctl).expect("map"),
        );
        if !self.restart_on_change.is_empty() {
            m.insert(
                "restart_on_change".into(),
                serde_json::to_value(&self.restart_on_change).expect("list"),
            );
        }
        if !self.reload_on_change.is_empty() {
            m.insert(
                "reload_on_change".into(),
                serde_json::to_value(&self.reload_on_change).expect("list"),
            );
        }
        Value::Object(m)
    }
}

/// A parsed `treeinfo.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeInfo {
    /// Packages whose closure goes into the bootstrap archive; empty = every package.
    pub bootstrap_package_list: Vec<PackageName>,
    /// Packages of the tree that are not built.
    pub exclude: Vec<PackageName>,
    /// The variant used for a package (absent = the default `buildinfo.json`).
    pub variants: BTreeMap<PackageName, String>,
    /// What the distribution needs of a host (architecture, kernel, systemd, commands); the
    /// builder adds each package's glibc need and signs the result into the manifest.
    pub host_requirements: HostRequirements,
}

impl TreeInfo {
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<TreeInfo, SpecError> {
        let obj = parse_object(path, bytes)?;
        check_keys(path, &obj, TREEINFO_KEYS, "")?;
        let names = |key: &str| -> Result<Vec<PackageName>, SpecError> {
            match obj.get(key) {
                None => Ok(Vec::new()),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .ok_or_else(|| invalid(path, key, "must be a list of package names"))?
                            .parse()
                            .map_err(|e| invalid(path, key, format!("{e}")))
                    })
                    .collect(),
                Some(_) => Err(invalid(path, key, "must be a list of package names")),
            }
        };
        let bootstrap_package_list = names("bootstrap_package_list")?;
        let exclude = names("exclude")?;
        if let Some(both) = bootstrap_package_list.iter().find(|n| exclude.contains(n)) {
            return Err(invalid(
                path,
                "exclude",
                format!("lists `{both}`, which is also in bootstrap_package_list"),
            ));
        }
        let mut variants = BTreeMap::new();
        match obj.get("variants") {
            None => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let n: PackageName = k
                        .parse()
                        .map_err(|e| invalid(path, "variants", format!("{e}")))?;
                    let v = v.as_str().ok_or_else(|| {
                        invalid(path, &format!("variants.{k}"), "must be a variant name")
                    })?;
                    variants.insert(n, v.to_owned());
                }
            }
            Some(_) => {
                return Err(invalid(
                    path,
                    "variants",
                    "must be an object {package: variant}",
                ));
            }
        }
        let host_requirements = match obj.get("host_requirements") {
            None => HostRequirements::default(),
            Some(v) => {
                let r: HostRequirements = serde_json::from_value(v.clone())
                    .map_err(|e| invalid(path, "host_requirements", e.to_string()))?;
                if !r.glibc.is_empty() {
                    return Err(invalid(
                        path,
                        "host_requirements.glibc",
                        "is computed by the builder from the packages' ELF files; remove it",
                    ));
                }
                if let Some(k) = &r.min_kernel
                    && !k.starts_with(|c: char| c.is_ascii_digit())
                {
                    return Err(invalid(
                        path,
                        "host_requirements.min_kernel",
                        format!("must be a version such as \"4.19\", got {k:?}"),
                    ));
                }
                r
            }
        };
        Ok(TreeInfo {
            bootstrap_package_list,
            exclude,
            variants,
            host_requirements,
        })
    }
}

/// Read and parse a JSON spec file.
pub fn read_file(path: &Path) -> Result<Vec<u8>, SpecError> {
    std::fs::read(path).map_err(|source| SpecError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tarmac_types::error_report::text_with_hint;

    fn parse(json: &str) -> Result<BuildInfo, SpecError> {
        BuildInfo::parse(
            Path::new("pkg/buildinfo.json"),
            &"pkg".parse().unwrap(),
            None,
            json.as_bytes(),
        )
    }

    const SHA: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn empty_file_is_defaults() {
        let b = parse("").unwrap();
        assert_eq!(b.build_script, "build");
        assert!(b.sources.is_empty() && b.requires.is_empty() && !b.state_directory);
        let v =
            BuildInfo::parse(Path::new("x"), &"pkg".parse().unwrap(), Some("ee"), b"{}").unwrap();
        assert_eq!(v.build_script, "ee.build");
    }

    #[test]
    fn bundle_libraries_defaults_on_except_for_tarmac_host() {
        assert!(parse("{}").unwrap().bundle_libraries);
        assert!(
            !parse(r#"{"bundle_libraries": false}"#)
                .unwrap()
                .bundle_libraries
        );
        assert_eq!(
            parse(r#"{"bundle_libraries": "no"}"#)
                .unwrap_err()
                .to_string(),
            "`pkg/buildinfo.json`: `bundle_libraries` must be true or false"
        );
        // not in pkginfo.json: hosts have nothing to do with it
        assert!(
            parse("{}")
                .unwrap()
                .pkginfo_json()
                .get("bundle_libraries")
                .is_none()
        );
        let host = |json: &str| {
            BuildInfo::parse(
                Path::new("tarmac-host/buildinfo.json"),
                &"tarmac-host".parse().unwrap(),
                None,
                json.as_bytes(),
            )
        };
        assert!(!host("{}").unwrap().bundle_libraries);
        assert!(
            !host(r#"{"bundle_libraries": false}"#)
                .unwrap()
                .bundle_libraries
        );
        assert_eq!(
            text_with_hint(&host(r#"{"bundle_libraries": true}"#).unwrap_err()),
            "`tarmac-host/buildinfo.json`: `bundle_libraries` must be false for `tarmac-host`: the bootstrap exports its bin/tarmac-host to run before any package is installed, so it cannot load libraries from one\nhint: ship a portable tarmac-host instead (scripts/build-portable.sh, glibc >= 2.17)"
        );
    }

    #[test]
    fn restart_on_change_goes_to_pkginfo() {
        let b = parse(r#"{"restart_on_change": ["etc/cluster/", "bin/detect_ip"]}"#).unwrap();
        assert_eq!(b.restart_on_change, ["etc/cluster", "bin/detect_ip"]);
        assert_eq!(
            b.pkginfo_json()["restart_on_change"],
            serde_json::json!(["etc/cluster", "bin/detect_ip"])
        );
        assert!(
            parse("{}")
                .unwrap()
                .pkginfo_json()
                .get("restart_on_change")
                .is_none()
        );
        let e = parse(r#"{"restart_on_change": ["/etc/x"]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("restart_on_change[0]"), "{e}");
        assert!(
            e.contains("`/etc/x`: it must be relative to the install root"),
            "{e}"
        );
    }

    #[test]
    fn misspelled_keys_get_did_you_mean() {
        let e = text_with_hint(&parse(r#"{"requieres": []}"#).unwrap_err());
        assert_eq!(
            e,
            "`pkg/buildinfo.json`: unknown key `requieres` (did you mean `requires`?)\nhint: allowed keys are single_source, sources, requires, environment, state_directory, username, group, sysctl, build_script, restart_on_change, reload_on_change, bundle_libraries"
        );
        let e = parse(r#"{"state_dir": true}"#).unwrap_err().to_string();
        assert!(e.contains("(did you mean `state_directory`?)"), "{e}");
        let e = parse(r#"{"user": "tarmac_x"}"#).unwrap_err().to_string();
        assert!(e.contains("unknown key `user`"), "{e}");
        let e = parse(
            r#"{"single_source": {"kind": "deb", "pakage": "x", "version": "1", "sha256": "x"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(
                "unknown key `single_source.pakage` (did you mean `single_source.package`?)"
            ),
            "{e}"
        );
        let e = parse(r#"{"single_source": {"kind": "gti"}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`gti` is not a source kind (did you mean `git`?)"),
            "{e}"
        );
        let e = parse(r#"{"name": "x"}"#).unwrap_err().to_string();
        assert!(e.contains("`name` must not be set"), "{e}");
    }

    #[test]
    fn sources_are_parsed_and_validated() {
        let b = parse(&format!(
            r#"{{"sources": {{
                "bin": {{"kind": "local", "path": "../x", "env": "X_BIN"}},
                "repo": {{"kind": "git", "git": "file:///r", "ref": "{c}", "ref_origin": "main"}},
                "tgz": {{"kind": "url_extract", "url": "https://e.invalid/a.tgz", "sha256": "{SHA}"}},
                "etcd": {{"kind": "deb", "package": "etcd-server", "version": "3.4.23-4+b4", "sha256": "{SHA}"}}
            }}}}"#,
            c = "a".repeat(40)
        ))
        .unwrap();
        assert_eq!(b.sources.len(), 4);
        assert_eq!(b.sources["tgz"].kind(), "url_extract");
        assert_eq!(
            b.sources["etcd"].to_json(),
            serde_json::json!({"kind": "deb", "package": "etcd-server", "version": "3.4.23-4+b4", "sha256": SHA})
        );
        let e = text_with_hint(
            &parse(r#"{"single_source": {"kind": "url", "url": "https://x/y"}}"#).unwrap_err(),
        );
        assert!(
            e.contains("`single_source.sha256` is required") && e.contains("hint: compute it"),
            "{e}"
        );
        let e = parse(r#"{"single_source": {"kind": "git", "git": "x", "ref": "main"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be a full 40-hex commit id"), "{e}");
        let e = parse(&format!(
            r#"{{"single_source": {{"kind": "url", "url": "ftp://x", "sha256": "{SHA}"}}}}"#
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("must start with http://"), "{e}");
        let e = parse(r#"{"single_source": {"kind": "local", "path": "x"}, "sources": {}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mutually exclusive"), "{e}");
        let b = parse(r#"{"single_source": {"kind": "local", "path": "x"}}"#).unwrap();
        assert!(b.sources.contains_key("pkg"));
    }

    #[test]
    fn requires_users_env_sysctl() {
        let b = parse(
            r#"{"requires": ["a", {"name": "b", "variant": "x"}, {"name": "c", "variant": null}],
                "username": "tarmac_pkg", "group": "systemd-journal", "state_directory": true,
                "environment": {"FOO": "1"}, "sysctl": {"tarmac-pkg.service": {"vm.swappiness": 1}}}"#,
        )
        .unwrap();
        assert_eq!(b.requires[1].variant, Some(Some("x".into())));
        assert_eq!(b.requires[2].variant, Some(None));
        assert_eq!(
            b.pkginfo_json(),
            serde_json::json!({
                "requires": ["a", {"name": "b", "variant": "x"}, {"name": "c", "variant": null}],
                "environment": {"FOO": "1"}, "state_directory": true, "username": "tarmac_pkg",
                "group": "systemd-journal", "sysctl": {"tarmac-pkg.service": {"vm.swappiness": 1}}
            })
        );
        for bad in [
            r#"{"requires": ["a--1"]}"#,
            r#"{"requires": "a"}"#,
            r#"{"requires": ["pkg"]}"#,
            r#"{"requires": [{"name": "b"}]}"#,
            r#"{"username": "etcd"}"#,
            r#"{"group": "x"}"#,
            r#"{"environment": {"PATH": "/x"}}"#,
            r#"{"environment": {"A": 1}}"#,
            r#"{"state_directory": "yes"}"#,
            r#"{"sysctl": {"s": {"k": 1.5}}}"#,
            r#"{"build_script": "../x"}"#,
            r#"[1]"#,
            r#"{"#,
        ] {
            assert!(parse(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn treeinfo() {
        let p = Path::new("treeinfo.json");
        let t = TreeInfo::parse(
            p,
            br#"{"bootstrap_package_list": ["a"], "exclude": ["b"], "variants": {"c": "ee"}}"#,
        )
        .unwrap();
        assert_eq!(t.variants[&"c".parse().unwrap()], "ee");
        let e = TreeInfo::parse(p, br#"{"bootstrap_packages": []}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("(did you mean `bootstrap_package_list`?)"),
            "{e}"
        );
        assert!(
            TreeInfo::parse(p, br#"{"bootstrap_package_list": ["a"], "exclude": ["a"]}"#).is_err()
        );
        assert_eq!(TreeInfo::parse(p, b"").unwrap(), TreeInfo::default());
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("enviroment", BUILDINFO_KEYS.iter().copied()).as_deref(),
            Some("environment")
        );
        assert_eq!(suggest("zzz", BUILDINFO_KEYS.iter().copied()), None);
        assert_eq!(
            suggest("single-source", BUILDINFO_KEYS.iter().copied()).as_deref(),
            Some("single_source")
        );
    }
}
