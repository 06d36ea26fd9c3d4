//! The resolution engine: user values + schema → resolved configuration or a report of every
//! problem at once. An error in one key never causes errors in values calculated from it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use minijinja::Value as MjValue;
use serde_json::Value as Json;

use crate::ResolvedConfig;
use crate::dist::Distribution;
use crate::report::{Diagnostic, Report};
use crate::schema::{DerivedKind, Param};
use crate::types::{check, check_secret, host_identity};
use crate::yaml::{self, AliasBudget, DocError, Entry, Loc, Node, ReadError};

/// The best "did you mean" candidate for a misspelt name.
pub fn did_you_mean<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    let lower = name.to_ascii_lowercase().replace('-', "_");
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = strsim::levenshtein(&lower, c);
        let limit = (c.len() / 3).clamp(1, 3);
        if d <= limit && best.is_none_or(|(bd, bc)| d < bd || (d == bd && c < bc)) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c.to_owned())
}

#[derive(Debug, Clone)]
enum State {
    Ok(Json),
    /// Optional and unset: `none` in templates.
    Absent,
    /// In error (reported), missing (reported) or skipped because a dependency failed.
    Failed,
}

/// Everything validation needs besides the distribution.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// The text of config.yaml.
    pub text: &'a str,
    /// How to name the file in messages, e.g. `genconf/config.yaml`.
    pub file_label: String,
    /// Relative paths in the config (ip_detect_filename, ssh_key_path) are resolved against
    /// this directory: the one containing `genconf/`.
    pub base_dir: PathBuf,
}

/// Validate and resolve. Every problem is in the returned report.
pub fn resolve(dist: &Distribution, input: &Input<'_>) -> Result<ResolvedConfig, Report> {
    let mut report = Report::new(&input.file_label, input.text);
    let entries = match yaml::read_flat_mapping(input.text) {
        Err(errs) => {
            // No tree to take value spans from: hide what follows `secret_key:` on a line.
            for n in dist.inner.schema.params.keys() {
                if dist.inner.schema.is_secret(n) {
                    report.hide_key_lines(n);
                }
            }
            Err(errs)
        }
        ok => ok,
    };
    let entries = match entries {
        Ok(e) => e,
        Err(errs) => {
            for e in errs {
                report.errors.push(match e {
                    ReadError::Doc(e) => doc_error(&input.file_label, e),
                    ReadError::Alias(a) => alias_error(&input.file_label, &a),
                });
            }
            return Err(report.sorted());
        }
    };
    Resolver::new(dist, input, &mut report, &entries)
        .run()
        .map_err(|()| report.sorted())
}

fn alias_error(file: &str, a: &AliasBudget) -> Diagnostic {
    let key = a.key.as_deref().unwrap_or("config.yaml");
    Diagnostic::new(
        key,
        Some(a.loc),
        format!(
            "Too many aliases: the alias at line {} of {file} takes the file past {} (the limit for the whole file)",
            a.loc.line,
            a.limit.describe()
        ),
    )
    .hint(match &a.key {
        Some(k) => format!(
            "write the values of `{k}` out instead of using anchors (&name) and aliases (*name)"
        ),
        None => "write the values out instead of using anchors (&name) and aliases (*name)".into(),
    })
}

fn doc_error(file: &str, e: DocError) -> Diagnostic {
    let file_key = "config.yaml";
    match e {
        DocError::Syntax { loc, message } => Diagnostic::new(
            file_key,
            Some(loc),
            format!("Unable to load configuration file. Invalid YAML in {file}: {message}"),
        )
        .hint("check indentation and quoting around this line; every line is `key: value` or a list item under a key"),
        DocError::Empty => Diagnostic::new(file_key, None, format!("{file} is empty"))
            .hint("it must be a mapping of parameters, e.g. `master_list: [10.0.0.1]` and `bootstrap_url: http://10.0.0.254:8080`"),
        DocError::MultipleDocuments { loc } => Diagnostic::new(
            file_key,
            Some(loc),
            format!("{file} must contain one YAML document, found a second `---`"),
        )
        .hint("remove the second `---` and merge the documents"),
        DocError::NotAMapping { loc, found } => Diagnostic::new(
            file_key,
            Some(loc),
            format!("{file} must be a mapping of parameter names to values, got {found}"),
        )
        .hint("write one `key: value` per line at the top level"),
        DocError::BadKey { loc, found } => {
            Diagnostic::new(file_key, Some(loc), format!("Parameter names must be strings, got {found}"))
        }
        DocError::DuplicateKey { key, loc, first } => Diagnostic::new(
            &key,
            Some(loc),
            format!("`{key}` is set twice (first at line {})", first.line),
        )
        .hint("keep one of the two entries"),
        DocError::UnsupportedTag { loc, tag } => Diagnostic::new(
            file_key,
            Some(loc),
            format!("Unsupported YAML tag {tag}"),
        )
        .hint("remove the tag; only plain values, lists and mappings are used"),
        DocError::UnknownAlias { loc } => {
            Diagnostic::new(file_key, Some(loc), "Alias refers to an unknown anchor")
        }
    }
}

struct Resolver<'a> {
    dist: &'a Distribution,
    input: &'a Input<'a>,
    report: &'a mut Report,
    user: BTreeMap<&'a str, &'a Entry>,
    states: HashMap<String, State>,
    ctx: BTreeMap<String, MjValue>,
    /// Names whose values must not be shown: see [`secret_values`].
    secrets: BTreeSet<String>,
}

/// The names whose values are secret in this configuration: the distribution's secrets and
/// what is calculated from them, plus every key that shares a value with one of them through
/// an anchor and alias (in either direction), and what is calculated from those.
fn secret_values(dist: &Distribution, entries: &[Entry]) -> BTreeSet<String> {
    let mut out = dist.inner.secret_closure.clone();
    loop {
        let before = out.len();
        for e in entries {
            if out.contains(&e.key) {
                out.extend(e.alias_sources.iter().cloned());
            } else if e.alias_sources.iter().any(|k| out.contains(k)) {
                out.insert(e.key.clone());
            }
        }
        if out.len() == before {
            break;
        }
    }
    let user: BTreeSet<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    for n in &dist.inner.order {
        if !user.contains(n.as_str())
            && dist
                .inner
                .deps
                .get(n)
                .is_some_and(|d| d.iter().any(|x| out.contains(x)))
        {
            out.insert(n.clone());
        }
    }
    out
}

impl<'a> Resolver<'a> {
    fn new(
        dist: &'a Distribution,
        input: &'a Input<'a>,
        report: &'a mut Report,
        entries: &'a [Entry],
    ) -> Self {
        let user = entries.iter().map(|e| (e.key.as_str(), e)).collect();
        let secrets = secret_values(dist, entries);
        for e in entries {
            if secrets.contains(&e.key) {
                report.hide(e.value_span);
            }
        }
        Resolver {
            dist,
            input,
            report,
            user,
            states: HashMap::new(),
            ctx: BTreeMap::new(),
            secrets,
        }
    }

    fn error(&mut self, key: &str, loc: Option<Loc>, message: String, hint: Option<String>) {
        let mut d = Diagnostic::new(key, loc, message);
        d.hint = hint;
        self.report.errors.push(d);
    }

    fn set(&mut self, name: &str, state: State) {
        match &state {
            State::Ok(v) => {
                self.ctx.insert(name.to_owned(), MjValue::from_serialize(v));
            }
            State::Absent => {
                self.ctx.insert(name.to_owned(), MjValue::from(()));
            }
            State::Failed => {}
        }
        self.states.insert(name.to_owned(), state);
    }

    fn deps_ok(&self, name: &str) -> bool {
        self.dist
            .inner
            .deps
            .get(name)
            .into_iter()
            .flatten()
            .all(|d| self.ready(d))
    }

    fn ready(&self, name: &str) -> bool {
        matches!(self.states.get(name), Some(State::Ok(_) | State::Absent))
    }

    fn eval(&self, expr: &str) -> Result<MjValue, minijinja::Error> {
        let env = &self.dist.inner.env;
        env.compile_expression(expr)?.eval(&self.ctx)
    }

    fn run(mut self) -> Result<ResolvedConfig, ()> {
        let schema = &self.dist.inner.schema;
        // 1. Every user key: known, settable, well-typed.
        let entries: Vec<&Entry> = self.user.values().copied().collect();
        for e in &entries {
            if let Some(p) = schema.params.get(&e.key) {
                let checked = if self.secrets.contains(&e.key) {
                    check_secret(&p.ty, &e.value)
                } else {
                    check(&p.ty, &e.value)
                };
                match checked {
                    Ok(c) => {
                        for w in c.warnings {
                            let mut d = Diagnostic::new(&e.key, Some(w.loc), w.message);
                            d.hint = w.hint;
                            self.report.warnings.push(d);
                        }
                        self.set(&e.key, State::Ok(c.value));
                    }
                    Err(p) => {
                        self.error(&e.key, Some(p.loc), p.message, p.hint);
                        self.set(&e.key, State::Failed);
                    }
                }
            } else if schema.derived.contains_key(&e.key) {
                self.error(
                    &e.key,
                    Some(e.key_loc),
                    format!(
                        "{} must be calculated, but was explicitly set in the configuration. Remove it from the configuration.",
                        e.key
                    ),
                    Some(match schema.derived[&e.key].description.as_str() {
                        "" => "delete this line".to_owned(),
                        d => format!("delete this line; {} is {}", e.key, lower_first(d)),
                    }),
                );
            } else if self.dist.inner.open {
                // A key of the distribution, which is not at hand: not ours to judge, unless
                // it looks like a misspelt installer key.
                if let Some(s) = did_you_mean(&e.key, schema.params.keys().map(String::as_str)) {
                    let mut d = Diagnostic::new(
                        &e.key,
                        Some(e.key_loc),
                        format!("`{}` is not an installer parameter", e.key),
                    );
                    d.hint = Some(format!("did you mean `{s}`?"));
                    self.report.warnings.push(d);
                }
            } else {
                let hint = match did_you_mean(&e.key, schema.params.keys().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => match self.dist.dir() {
                        Some(d) => format!(
                            "remove it; the parameters of this distribution are in {}/schema.yaml",
                            d.display()
                        ),
                        None => "remove it; it is not a parameter of this distribution".to_owned(),
                    },
                };
                self.error(
                    &e.key,
                    Some(e.key_loc),
                    format!("Unknown parameter `{}`", e.key),
                    Some(hint),
                );
            }
        }

        // 2. Defaults, requirements and derived values in dependency order.
        let order = self.dist.inner.order.clone();
        for name in &order {
            if let Some(p) = schema.params.get(name) {
                if self.states.contains_key(name) {
                    continue; // set by the user
                }
                let state = self.param_without_value(p);
                self.set(name, state);
            } else if let Some(d) = schema.derived.get(name) {
                if !self.dist.inner.used.contains(name) {
                    continue;
                }
                if !self.deps_ok(name) {
                    self.set(name, State::Failed);
                    continue;
                }
                let state = match &d.kind {
                    DerivedKind::Expr(e) => match self.eval(e) {
                        Ok(v) if v.is_undefined() => {
                            self.error(
                                name,
                                None,
                                format!("Could not calculate {name}: the expression is undefined"),
                                Some("this is a bug in the distribution's schema".into()),
                            );
                            State::Failed
                        }
                        Ok(v) => match serde_json::to_value(&v) {
                            Ok(j) => State::Ok(j),
                            Err(err) => {
                                self.error(
                                    name,
                                    None,
                                    format!("Could not calculate {name}: {err}"),
                                    None,
                                );
                                State::Failed
                            }
                        },
                        Err(err) => {
                            self.error(
                                name,
                                None,
                                format!("Could not calculate {name}: {}", mj_message(&err)),
                                Some("this is a bug in the distribution's schema".into()),
                            );
                            State::Failed
                        }
                    },
                    DerivedKind::Builtin(b) if b == "ip_detect" => self.ip_detect(name),
                    DerivedKind::Builtin(_) => State::Failed,
                };
                self.set(name, state);
            }
        }

        // 3. Hosts may appear in only one list.
        self.cross_list_duplicates();

        // 3b. An operator's certificate for an https bootstrap_url: readable, PEM, matching
        // key, signed by its CA, valid now and for bootstrap_url's host.
        self.bootstrap_tls();
        // 3c. An external store (bootstrap_serve: false) is reached over http://.
        self.external_store();

        // 4. Cross-field rules, skipped when any value they use is in error.
        for (i, rule) in schema.rules.iter().enumerate() {
            if !self.dist.inner.rule_deps[i].iter().all(|d| self.ready(d)) {
                continue;
            }
            if let Some(w) = &rule.when {
                match self.eval(w) {
                    Ok(v) if !v.is_true() => continue,
                    Ok(_) => {}
                    Err(err) => {
                        let key = rule.keys[0].clone();
                        self.error(
                            &key,
                            None,
                            format!("Could not evaluate rule `{w}`: {}", mj_message(&err)),
                            None,
                        );
                        continue;
                    }
                }
            }
            let ok = match self.eval(&rule.assert) {
                Ok(v) => v.is_true(),
                Err(err) => {
                    let key = rule.keys[0].clone();
                    self.error(
                        &key,
                        None,
                        format!(
                            "Could not evaluate rule `{}`: {}",
                            rule.assert,
                            mj_message(&err)
                        ),
                        Some("this is a bug in the distribution's schema".into()),
                    );
                    continue;
                }
            };
            if ok {
                continue;
            }
            let env = &self.dist.inner.env;
            let message = env
                .render_str(&rule.message, &self.ctx)
                .unwrap_or_else(|e| {
                    format!(
                        "{} (message failed to render: {})",
                        rule.message,
                        mj_message(&e)
                    )
                });
            let hint = rule
                .hint
                .as_ref()
                .map(|h| env.render_str(h, &self.ctx).unwrap_or_else(|_| h.clone()));
            // Point at the key itself when the user set it, else at the first value the
            // rule uses that the user did set (the likely culprit).
            let fallback = self
                .transitive_deps(&self.dist.inner.rule_deps[i])
                .iter()
                .filter_map(|d| self.user.get(d.as_str()))
                .map(|e| e.value.loc())
                .min();
            for k in &rule.keys {
                let loc = self
                    .user
                    .get(k.as_str())
                    .map(|e| e.value.loc())
                    .or(fallback);
                self.error(k, loc, message.clone(), hint.clone());
            }
        }

        if !self.report.errors.is_empty() {
            return Err(());
        }

        // 5. The resolved configuration.
        let mut values = BTreeMap::new();
        for (name, st) in &self.states {
            match st {
                State::Ok(v) => {
                    values.insert(name.clone(), v.clone());
                }
                State::Absent => {
                    values.insert(name.clone(), Json::Null);
                }
                State::Failed => {}
            }
        }
        let user: BTreeMap<String, Json> = self
            .user
            .iter()
            .map(|(k, e)| ((*k).to_owned(), e.value.to_json()))
            .collect();
        Ok(ResolvedConfig::new(
            self.dist.clone(),
            values,
            user,
            self.input.base_dir.clone(),
            std::mem::take(&mut self.report.warnings),
            std::mem::take(&mut self.secrets),
        ))
    }

    fn param_without_value(&mut self, p: &Param) -> State {
        if let Some(d) = &p.default {
            return State::Ok(d.clone());
        }
        if let Some(expr) = &p.default_expr {
            if !self.deps_ok(&p.name) {
                return State::Failed;
            }
            return match self.eval(expr) {
                Ok(v) => {
                    let j = serde_json::to_value(&v).unwrap_or(Json::Null);
                    let node = crate::schema::json_to_node(&j);
                    let checked = if self.secrets.contains(&p.name) {
                        check_secret(&p.ty, &node)
                    } else {
                        check(&p.ty, &node)
                    };
                    match checked {
                        Ok(c) => State::Ok(c.value),
                        Err(e) => {
                            self.error(
                                &p.name,
                                None,
                                format!(
                                    "The calculated default of {} is invalid: {}",
                                    p.name, e.message
                                ),
                                Some(format!("set {} explicitly", p.name)),
                            );
                            State::Failed
                        }
                    }
                }
                Err(err) => {
                    self.error(
                        &p.name,
                        None,
                        format!(
                            "Could not calculate the default of {}: {}",
                            p.name,
                            mj_message(&err)
                        ),
                        Some(format!("set {} explicitly", p.name)),
                    );
                    State::Failed
                }
            };
        }
        if p.optional || !self.dist.inner.used.contains(&p.name) {
            return State::Absent;
        }
        let mut why = None;
        if let Some(cond) = &p.required_when {
            if !self.deps_ok(&p.name) {
                return State::Failed;
            }
            match self.eval(cond) {
                Ok(v) if !v.is_true() => return State::Absent,
                Ok(_) => why = Some(cond.clone()),
                Err(err) => {
                    self.error(
                        &p.name,
                        None,
                        format!(
                            "Could not evaluate required_when of {}: {}",
                            p.name,
                            mj_message(&err)
                        ),
                        None,
                    );
                    return State::Failed;
                }
            }
        }
        let mut hint = match &p.example {
            Some(ex) => format!(
                "add `{}: {}` to {}",
                p.name,
                flow_yaml(ex),
                self.input.file_label
            ),
            None => format!("add `{}: …` to {}", p.name, self.input.file_label),
        };
        if let Some(w) = why {
            hint.push_str(&format!(" (required because `{w}`)"));
        }
        if !p.description.is_empty() {
            hint.push_str(&format!("; {}: {}", p.name, p.description));
        }
        self.error(
            &p.name.clone(),
            None,
            format!("Must set {}, no way to calculate value.", p.name),
            Some(hint),
        );
        State::Failed
    }

    fn ip_detect(&mut self, name: &str) -> State {
        let Some(State::Ok(Json::String(file))) = self.states.get("ip_detect_filename").cloned()
        else {
            return State::Failed;
        };
        let loc = self.user.get("ip_detect_filename").map(|e| e.value.loc());
        let path = resolve_path(&self.input.base_dir, &file);
        let hint = Some(format!(
            "write a script that prints this host's IP address to {file} (samples in dist/reference/config/README.md), or point ip_detect_filename at one"
        ));
        let fail = |s: &mut Self, msg: String| {
            s.error(name, loc, msg, hint.clone());
            State::Failed
        };
        match std::fs::metadata(&path) {
            Err(_) => fail(self, format!("ip-detect script `{file}` must exist")),
            Ok(m) if !m.is_file() => fail(self, format!("ip-detect script `{file}` is not a file")),
            Ok(_) => match std::fs::read(&path) {
                Err(e) => fail(
                    self,
                    format!("ip-detect script `{file}` cannot be read: {e}"),
                ),
                Ok(bytes) => match String::from_utf8(bytes) {
                    Err(_) => fail(self, format!("ip-detect script `{file}` is not UTF-8 text")),
                    Ok(s) if s.trim().is_empty() => {
                        fail(self, format!("ip-detect script `{file}` is empty"))
                    }
                    Ok(s) => State::Ok(Json::String(s)),
                },
            },
        }
    }

    fn external_store(&mut self) {
        if !matches!(
            self.states.get("bootstrap_serve"),
            Some(State::Ok(Json::Bool(false)))
        ) {
            return;
        }
        let Some(State::Ok(Json::String(url))) = self.states.get("bootstrap_url").cloned() else {
            return;
        };
        if url.starts_with("http://") {
            return;
        }
        let loc = self.user.get("bootstrap_serve").map(|e| e.value.loc());
        let mut d = Diagnostic::new(
            "bootstrap_serve",
            loc,
            format!(
                "bootstrap_serve is false, but bootstrap_url `{url}` is not an http:// URL: an external store is reached over http:// (hosts pin every file's sha256, which install.sh brings over SSH)"
            ),
        );
        d.hint = Some(if url.starts_with("https://") {
            "give the store's plain-http endpoint as bootstrap_url, or remove bootstrap_serve and let tarmac serve https itself".into()
        } else {
            "remove bootstrap_serve: a file:// bootstrap_url is never served".into()
        });
        self.report.errors.push(d);
    }

    fn bootstrap_tls(&mut self) {
        use crate::tls;
        if !self.dist.inner.schema.params.contains_key(tls::CERT_KEY) {
            return;
        }
        let Some(State::Ok(Json::String(url))) = self.states.get("bootstrap_url").cloned() else {
            return;
        };
        let mut inputs: Vec<Option<tls::PemInput>> = Vec::new();
        for k in [tls::CERT_KEY, tls::KEY_KEY, tls::CA_KEY] {
            match self.states.get(k) {
                Some(State::Ok(Json::String(v))) => inputs.push(Some(tls::PemInput {
                    value: v.clone(),
                    bytes: tls::read_pem_file(&resolve_path(&self.input.base_dir, v)),
                })),
                Some(State::Failed) => return,
                _ => inputs.push(None),
            }
        }
        let host = if tls::is_https(&url) {
            match tls::url_host(&url) {
                Some(h) => Some(h),
                None => return,
            }
        } else {
            None
        };
        let findings = tls::check_operator_tls(
            &url,
            host.as_deref(),
            inputs[0].as_ref(),
            inputs[1].as_ref(),
            inputs[2].as_ref(),
            rustls::pki_types::UnixTime::now(),
        );
        let url_loc = self.user.get("bootstrap_url").map(|e| e.value.loc());
        for f in findings {
            let loc = self.user.get(f.key).map(|e| e.value.loc()).or(url_loc);
            let mut d = Diagnostic::new(f.key, loc, f.message);
            d.hint = f.hint;
            if f.warning {
                self.report.warnings.push(d);
            } else {
                self.report.errors.push(d);
            }
        }
    }

    fn cross_list_duplicates(&mut self) {
        let lists = ["master_list", "agent_list", "public_agent_list"];
        let mut ids: Vec<(&str, Vec<String>)> = Vec::new();
        for l in lists {
            match self.states.get(l) {
                Some(State::Ok(Json::Array(a))) => ids.push((
                    l,
                    a.iter()
                        .map(|v| host_identity(v.as_str().unwrap_or_default()))
                        .collect(),
                )),
                _ => return,
            }
        }
        for i in 0..ids.len() {
            for j in (i + 1)..ids.len() {
                let (a, ai) = &ids[i];
                let (b, bi) = &ids[j];
                let bset: BTreeSet<&String> = bi.iter().collect();
                let dups: Vec<&String> = ai.iter().filter(|x| bset.contains(x)).collect();
                if dups.is_empty() {
                    continue;
                }
                let shown: Vec<&str> = dups.iter().map(|s| s.as_str()).collect();
                let message = format!(
                    "{a} and {b} cannot contain duplicates: {}",
                    shown.join(", ")
                );
                let hint =
                    Some("a host has exactly one role: keep it in one of the lists".to_owned());
                for (key, list_ids) in [(*a, ai), (*b, bi)] {
                    let pos = list_ids.iter().position(|x| x == dups[0]);
                    let loc = self.item_loc(key, pos);
                    self.error(key, loc, message.clone(), hint.clone());
                }
            }
        }
    }

    /// `names` plus everything they are calculated from.
    fn transitive_deps(&self, names: &BTreeSet<String>) -> BTreeSet<String> {
        let mut out = names.clone();
        let mut stack: Vec<String> = names.iter().cloned().collect();
        while let Some(n) = stack.pop() {
            for d in self.dist.inner.deps.get(&n).into_iter().flatten() {
                if out.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        out
    }

    fn item_loc(&self, key: &str, pos: Option<usize>) -> Option<Loc> {
        let e = self.user.get(key)?;
        match (&e.value, pos) {
            (Node::Seq { items, .. }, Some(p)) => items.get(p).map(Node::loc),
            (n, _) => Some(n.loc()),
        }
    }
}

/// Resolve a path from config.yaml: absolute as is, relative against `base`.
pub fn resolve_path(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

fn mj_message(e: &minijinja::Error) -> String {
    let mut s = e
        .detail()
        .map_or_else(|| e.kind().to_string(), str::to_owned);
    if e.detail().is_some() {
        s = format!("{}: {s}", e.kind());
    }
    s
}

/// A JSON value in YAML flow style for hints: `[10.0.0.1, 10.0.0.2]`, `http://x`.
pub fn flow_yaml(v: &Json) -> String {
    match v {
        Json::String(s) => {
            let plain = !s.is_empty()
                && !yaml::is_yaml11_bool_word(s)
                && matches!(yaml::resolve_plain(s), yaml::Scalar::Str(_))
                && !s.contains([
                    ':', '#', ',', '[', ']', '{', '}', '&', '*', '!', '|', '>', '\'', '"', '%',
                    '@', '`',
                ])
                || (s.starts_with("http") || s.starts_with("file:")) && !s.contains(' ');
            if plain {
                s.clone()
            } else {
                Json::String(s.clone()).to_string()
            }
        }
        Json::Array(a) => format!(
            "[{}]",
            a.iter().map(flow_yaml).collect::<Vec<_>>().join(", ")
        ),
        Json::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{k}: {}", flow_yaml(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) if !s.starts_with("IP") => f.to_lowercase().chain(c).collect(),
        _ => s.to_owned(),
    }
}
