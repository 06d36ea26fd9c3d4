//! Edits of `config.yaml` text that keep the operator's layout: setting or removing one
//! top-level key rewrites only that key's lines (comments, order and the other keys stay as
//! they were), and secret values are masked on the way out and restored on the way in.
//!
//! `config.yaml` is a flat mapping, so a top-level entry spans from its key's line to the
//! line before the next key (trailing blank and comment lines belong to what follows).
//! Documents that do not have one key per line at column 1 (a top-level flow mapping) are
//! re-rendered from their values instead.

use std::collections::HashSet;

use crate::yaml::{self, DocError, Entry, Loc, Node, Scalar, is_yaml11_bool_word};
use serde_json::Value as Json;

/// What secret values are replaced with in text the API returns.
pub const HIDDEN: &str = crate::HIDDEN;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("config.yaml is not valid YAML (line {line}): {message}")]
    Syntax { line: u32, message: String },
}

/// The top-level entries of `text`; an empty or comment-only document has none.
fn entries(text: &str) -> Result<Vec<Entry>, EditError> {
    match yaml::parse_flat_mapping(text) {
        Ok(e) => Ok(e),
        Err(errs) => {
            if errs.iter().all(|e| matches!(e, DocError::Empty)) {
                return Ok(Vec::new());
            }
            let (line, message) = match errs.first() {
                Some(DocError::Syntax { loc, message }) => (loc.line, message.clone()),
                Some(DocError::DuplicateKey { key, loc, .. }) => {
                    (loc.line, format!("`{key}` is set twice"))
                }
                Some(DocError::NotAMapping { loc, found }) => (
                    loc.line,
                    format!("the document must be a mapping, got {found}"),
                ),
                Some(DocError::BadKey { loc, found }) => (
                    loc.line,
                    format!("parameter names must be strings, got {found}"),
                ),
                Some(DocError::UnsupportedTag { loc, tag }) => {
                    (loc.line, format!("unsupported tag {tag}"))
                }
                Some(DocError::UnknownAlias { loc }) => (loc.line, "unknown alias".into()),
                Some(DocError::MultipleDocuments { loc }) => {
                    (loc.line, "more than one document".into())
                }
                Some(DocError::Empty) | None => (1, "empty".into()),
            };
            Err(EditError::Syntax { line, message })
        }
    }
}

/// A string that reads back as the same string when written without quotes.
fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    (first.is_ascii_alphanumeric() || first == '/' || first == '.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./+:@=-".contains(c))
        && !s.ends_with(':')
        && !is_yaml11_bool_word(s)
        && matches!(yaml::resolve_plain(s), Scalar::Str(_))
}

/// A scalar or flow value in YAML.
fn flow(v: &Json) -> String {
    match v {
        Json::String(s) if plain_ok(s) => s.clone(),
        Json::String(s) => Json::String(s.clone()).to_string(),
        Json::Array(a) => format!("[{}]", a.iter().map(flow).collect::<Vec<_>>().join(", ")),
        Json::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", flow(&Json::String(k.clone())), flow(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// `key: value` lines for one top-level entry (lists of scalars in block style).
pub fn render_entry(key: &str, v: &Json) -> String {
    match v {
        Json::Array(a) if !a.is_empty() && a.iter().all(|x| !x.is_array() && !x.is_object()) => {
            let mut s = format!("{key}:\n");
            for x in a {
                s.push_str("- ");
                s.push_str(&flow(x));
                s.push('\n');
            }
            s
        }
        other => format!("{key}: {}\n", flow(other)),
    }
}

/// Line spans of the entries: (key, first line, end of the entry's own lines, end including
/// the trailing blank/comment lines), 0-based, end exclusive. `None` when the layout is not
/// one key per line at column 1.
fn spans(lines: &[&str], entries: &[Entry]) -> Option<Vec<(String, usize, usize, usize)>> {
    let mut starts = Vec::with_capacity(entries.len());
    for e in entries {
        if e.key_loc.column != 1 || e.key_loc.line == 0 {
            return None;
        }
        starts.push((e.key.clone(), e.key_loc.line as usize - 1));
    }
    if starts.windows(2).any(|w| w[0].1 >= w[1].1) {
        return None;
    }
    let mut out = Vec::with_capacity(starts.len());
    for (i, (key, start)) in starts.iter().enumerate() {
        let full_end = starts.get(i + 1).map_or(lines.len(), |n| n.1);
        let mut end = full_end;
        while end > start + 1 {
            let l = lines[end - 1].trim_end();
            if l.is_empty() || l.starts_with('#') {
                end -= 1;
            } else {
                break;
            }
        }
        out.push((key.clone(), *start, end, full_end));
    }
    Some(out)
}

/// Set (`Some`) or remove (`None`) top-level keys. Existing keys are rewritten in place; new
/// keys are appended in the order given.
pub fn set_keys(text: &str, changes: &[(String, Option<Json>)]) -> Result<String, EditError> {
    let entries = entries(text)?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let change_of = |key: &str| changes.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v);
    let mut out = String::with_capacity(text.len() + 64);
    match spans(&lines, &entries) {
        Some(spans) => {
            let head_end = spans.first().map_or(lines.len(), |s| s.1);
            out.extend(lines[..head_end].iter().copied());
            for (key, start, end, full_end) in &spans {
                match change_of(key) {
                    Some(Some(v)) => out.push_str(&render_entry(key, v)),
                    Some(None) => {}
                    None => {
                        out.extend(lines[*start..*end].iter().copied());
                        if !out.ends_with('\n') {
                            out.push('\n');
                        }
                    }
                }
                out.extend(lines[*end..*full_end].iter().copied());
            }
        }
        None => {
            // Unusual layout: re-render every entry from its value.
            for e in &entries {
                match change_of(&e.key) {
                    Some(Some(v)) => out.push_str(&render_entry(&e.key, v)),
                    Some(None) => {}
                    None => out.push_str(&render_entry(&e.key, &e.value.to_json())),
                }
            }
        }
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let mut added: Vec<&str> = Vec::new();
    for (key, v) in changes {
        if let Some(v) = v
            && !entries.iter().any(|e| &e.key == key)
            && !added.contains(&key.as_str())
        {
            added.push(key);
            let v = change_of(key)
                .cloned()
                .flatten()
                .unwrap_or_else(|| v.clone());
            out.push_str(&render_entry(key, &v));
        }
    }
    Ok(out)
}

/// The user's keys as JSON (file order), or `None` when the text does not parse.
pub fn values(text: &str) -> Option<Vec<(String, Json)>> {
    entries(text)
        .ok()
        .map(|es| es.into_iter().map(|e| (e.key, e.value.to_json())).collect())
}

/// Every location of a node under a secret key (what an alias to it carries too); null
/// scalars reveal nothing and are left out.
fn secret_locs(entries: &[Entry], is_secret: &dyn Fn(&str) -> bool) -> HashSet<Loc> {
    fn walk(n: &Node, out: &mut HashSet<Loc>) {
        match n {
            Node::Scalar {
                value: Scalar::Null,
                ..
            } => {}
            Node::Scalar { loc, .. } => {
                out.insert(*loc);
            }
            Node::Seq { items, loc } => {
                out.insert(*loc);
                items.iter().for_each(|i| walk(i, out));
            }
            Node::Map { entries, loc } => {
                out.insert(*loc);
                for (k, v) in entries {
                    walk(k, out);
                    walk(v, out);
                }
            }
        }
    }
    let mut out = HashSet::new();
    for e in entries.iter().filter(|e| is_secret(&e.key)) {
        walk(&e.value, &mut out);
    }
    out
}

/// The scalar texts of every secret value (longest first), to scrub from messages that
/// might quote them. Empty when the text does not parse.
pub fn secret_strings(text: &str, is_secret: &dyn Fn(&str) -> bool) -> Vec<String> {
    fn walk(n: &Node, set: &HashSet<Loc>, out: &mut Vec<String>) {
        match n {
            Node::Scalar { text, loc, .. } if set.contains(loc) && !text.trim().is_empty() => {
                out.push(text.clone());
            }
            Node::Scalar { .. } => {}
            Node::Seq { items, .. } => items.iter().for_each(|i| walk(i, set, out)),
            Node::Map { entries, .. } => entries.iter().for_each(|(_, v)| walk(v, set, out)),
        }
    }
    let Ok(es) = entries(text) else {
        return Vec::new();
    };
    let set = secret_locs(&es, is_secret);
    let mut out = Vec::new();
    for e in es.iter().filter(|e| is_secret(&e.key)) {
        walk(&e.value, &set, &mut out);
    }
    out.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    out.dedup();
    out
}

/// `s` with every secret in `secrets` replaced by [`HIDDEN`].
pub fn scrub(s: &str, secrets: &[String]) -> String {
    let mut out = s.to_owned();
    for x in secrets {
        if out.contains(x.as_str()) {
            out = out.replace(x.as_str(), HIDDEN);
        }
    }
    out
}

/// `n` as JSON with every node that is (or is an alias of) a secret replaced by [`HIDDEN`].
fn masked_json(n: &Node, secret: &HashSet<Loc>) -> Json {
    if secret.contains(&n.loc()) {
        return Json::String(HIDDEN.into());
    }
    match n {
        Node::Scalar { .. } => n.to_json(),
        Node::Seq { items, .. } => items.iter().map(|i| masked_json(i, secret)).collect(),
        Node::Map { entries, .. } => entries
            .iter()
            .map(|(k, v)| (k.key_text(), masked_json(v, secret)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

/// Does `n` hold a node whose location is in `set` and inside `[from, to)` (its own text,
/// not an alias of something elsewhere)?
fn owns_any(n: &Node, set: &HashSet<Loc>, from: Loc, to: Option<Loc>) -> bool {
    let own = |l: Loc| l >= from && to.is_none_or(|t| l < t);
    if set.contains(&n.loc()) && own(n.loc()) {
        return true;
    }
    match n {
        Node::Scalar { .. } => false,
        Node::Seq { items, .. } => items.iter().any(|i| owns_any(i, set, from, to)),
        Node::Map { entries, .. } => entries
            .iter()
            .any(|(k, v)| owns_any(k, set, from, to) || owns_any(v, set, from, to)),
    }
}

/// The keys whose text the API hides: every secret key with a value, and any other key
/// whose own text holds a value a secret takes through an alias (`x: &a v` with
/// `password: *a`). `None` when the text does not parse.
pub fn masked_keys(text: &str, is_secret: &dyn Fn(&str) -> bool) -> Option<Vec<String>> {
    let es = entries(text).ok()?;
    let secret = secret_locs(&es, is_secret);
    Some(
        es.iter()
            .enumerate()
            .filter(|(i, e)| {
                if is_secret(&e.key) {
                    return !e.value.to_json().is_null();
                }
                let to = es.get(i + 1).map(|n| n.key_loc);
                owns_any(&e.value, &secret, e.key_loc, to)
            })
            .map(|(_, e)| e.key.clone())
            .collect(),
    )
}

/// The user's keys as JSON (file order) with secrets masked from the parsed tree: a
/// secret key's value, and any value that came from a secret through an alias, is
/// [`HIDDEN`]. `None` when the text does not parse.
pub fn masked_values(text: &str, is_secret: &dyn Fn(&str) -> bool) -> Option<Vec<(String, Json)>> {
    let es = entries(text).ok()?;
    let secret = secret_locs(&es, is_secret);
    let hidden = masked_keys(text, is_secret).unwrap_or_default();
    Some(
        es.iter()
            .map(|e| {
                let v = if hidden.contains(&e.key) {
                    Json::String(HIDDEN.into())
                } else {
                    masked_json(&e.value, &secret)
                };
                (e.key.clone(), v)
            })
            .collect(),
    )
}

/// Byte offset of a 1-based line and character column in `text`.
fn offset_of(text: &str, loc: Loc) -> Option<usize> {
    let mut off = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i + 1 == loc.line as usize {
            let col = loc.column.saturating_sub(1) as usize;
            return Some(off + line.char_indices().nth(col).map_or(line.len(), |(b, _)| b));
        }
        off += line.len();
    }
    None
}

/// The anchor (`&name`) written on an entry's value, if any: between the key and the value.
fn anchor_of(text: &str, e: &Entry) -> Option<String> {
    let from = offset_of(text, e.key_loc)?;
    let to = offset_of(text, e.value.loc())?;
    let between = text.get(from..to)?;
    let after_colon = between.split_once(':')?.1;
    after_colon
        .split_whitespace()
        .find(|t| t.starts_with('&') && t.len() > 1)
        .map(str::to_owned)
}

/// One masked entry: `key: [&anchor ]"**HIDDEN**"` (the anchor is kept so aliases to it
/// still parse).
fn hidden_entry(key: &str, anchor: Option<&str>) -> String {
    format!(
        "{}: {}\"{HIDDEN}\"\n",
        flow(&Json::String(key.to_owned())),
        anchor.map(|a| format!("{a} ")).unwrap_or_default()
    )
}

/// Replace the value of every secret key with [`HIDDEN`], from the parsed tree (see
/// [`masked_keys`]); other entries keep their text (an alias `*p` shows no secret). Text
/// that does not parse is masked line by line, see [`mask_unparsed`].
pub fn mask_secrets(text: &str, is_secret: &dyn Fn(&str) -> bool) -> String {
    let (Ok(es), Some(hidden)) = (entries(text), masked_keys(text, is_secret)) else {
        return mask_unparsed(text, is_secret);
    };
    if hidden.is_empty() {
        return text.to_owned();
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    match spans(&lines, &es) {
        Some(spans) => {
            let mut out = String::with_capacity(text.len());
            let head_end = spans.first().map_or(lines.len(), |s| s.1);
            out.extend(lines[..head_end].iter().copied());
            for ((key, start, end, full_end), e) in spans.iter().zip(&es) {
                if hidden.contains(key) {
                    out.push_str(&hidden_entry(key, anchor_of(text, e).as_deref()));
                } else {
                    out.extend(lines[*start..*end].iter().copied());
                    if !out.ends_with('\n') {
                        out.push('\n');
                    }
                }
                out.extend(lines[*end..*full_end].iter().copied());
            }
            out
        }
        // A flow mapping or another unusual layout: every entry from its masked value.
        None => masked_values(text, is_secret)
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| render_entry(k, v))
            .collect(),
    }
}

/// Mask text that is not valid YAML, conservatively: a line `key: …` (the key bare or
/// quoted) of a secret key becomes `key: "**HIDDEN**"` and the lines that continue it (more
/// indented, block scalar `|` / `>` bodies, `- ` items) are dropped; any other line that
/// names a secret key (`{a: 1, x_password: v}`) is cut after that key.
pub fn mask_unparsed(text: &str, is_secret: &dyn Fn(&str) -> bool) -> String {
    fn indent(l: &str) -> usize {
        l.len() - l.trim_start_matches(' ').len()
    }
    fn unquote(k: &str) -> &str {
        let k = k.trim();
        k.strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .or_else(|| k.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
            .unwrap_or(k)
    }
    let mut out = String::with_capacity(text.len());
    // The indentation of the secret entry whose continuation lines are being dropped.
    let mut dropping: Option<usize> = None;
    for l in text.split_inclusive('\n') {
        let body = l.trim_end_matches(['\n', '\r']);
        if let Some(ind) = dropping {
            let t = body.trim_start();
            let cont = t.is_empty()
                || indent(body) > ind
                || (indent(body) == ind && (t == "-" || t.starts_with("- ")));
            if cont {
                continue;
            }
            dropping = None;
        }
        if let Some((k, _)) = body.split_once(':')
            && !k.trim().is_empty()
            && is_secret(unquote(k))
        {
            out.push_str(&format!("{k}: \"{HIDDEN}\"\n"));
            dropping = Some(indent(body));
            continue;
        }
        // A secret key somewhere inside the line (a flow mapping): cut after it.
        let mut cut = None;
        for (i, _) in body.match_indices(':') {
            let before = &body[..i];
            let start = before
                .rfind(|c: char| {
                    !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '"' | '\''))
                })
                .map_or(0, |p| p + 1);
            if is_secret(unquote(&before[start..])) {
                cut = Some(i);
                break;
            }
        }
        match cut {
            Some(i) => out.push_str(&format!("{}: \"{HIDDEN}\"\n", &body[..i])),
            None => out.push_str(l),
        }
    }
    out
}

/// Replace one entry's lines with `raw` (which ends with a newline). `None` when the layout
/// is not one key per line or the key is not there.
fn replace_entry_text(text: &str, key: &str, raw: &str) -> Option<String> {
    let es = entries(text).ok()?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let spans = spans(&lines, &es)?;
    let (_, start, end, _) = spans.iter().find(|s| s.0 == key)?;
    let mut out = String::with_capacity(text.len() + raw.len());
    out.extend(lines[..*start].iter().copied());
    out.push_str(raw);
    out.extend(lines[*end..].iter().copied());
    Some(out)
}

/// An entry's own lines, as written.
fn entry_text(text: &str, key: &str) -> Option<String> {
    let es = entries(text).ok()?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let spans = spans(&lines, &es)?;
    let (_, start, end, _) = spans.iter().find(|s| s.0 == key)?;
    let mut s: String = lines[*start..*end].concat();
    if !s.ends_with('\n') {
        s.push('\n');
    }
    Some(s)
}

/// Does `v` hold [`HIDDEN`] anywhere?
fn has_hidden(v: &Json) -> bool {
    match v {
        Json::String(s) => s == HIDDEN,
        Json::Array(a) => a.iter().any(has_hidden),
        Json::Object(m) => m.values().any(has_hidden),
        _ => false,
    }
}

/// Put the stored values back where `new_text` still shows an entry exactly as the API
/// masked it (see [`masked_values`]): the stored entry's text as it was written (anchors
/// and all) when the layout allows, else its value. A secret key left [`HIDDEN`] with no
/// stored value, or an entry whose masked parts were edited around (`[**HIDDEN**, y]`), is
/// returned as an error: the marker must never be saved as a value.
pub fn unmask_secrets(
    new_text: &str,
    old_text: &str,
    is_secret: &dyn Fn(&str) -> bool,
) -> Result<String, Vec<String>> {
    let Ok(new) = entries(new_text) else {
        return Ok(new_text.to_owned());
    };
    let old = entries(old_text).unwrap_or_default();
    let old_masked: std::collections::HashMap<String, Json> = masked_values(old_text, is_secret)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut restore = Vec::new();
    for e in &new {
        let nv = e.value.to_json();
        if !has_hidden(&nv) {
            continue;
        }
        if let (Some(o), Some(om)) = (old.iter().find(|o| o.key == e.key), old_masked.get(&e.key))
            && *om == nv
            && *om != o.value.to_json()
        {
            restore.push(o);
        }
    }
    let mut out = new_text.to_owned();
    let mut by_value = Vec::new();
    for o in restore {
        match entry_text(old_text, &o.key).and_then(|raw| replace_entry_text(&out, &o.key, &raw)) {
            Some(t) => out = t,
            None => by_value.push((o.key.clone(), Some(o.value.to_json()))),
        }
    }
    if !by_value.is_empty() {
        out = set_keys(&out, &by_value).map_err(|_| Vec::new())?;
    }
    // What still shows the marker once the stored entries are back (an alias to a restored
    // anchor no longer does).
    let missing: Vec<String> = entries(&out)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            let v = e.value.to_json();
            has_hidden(&v)
                && ((is_secret(&e.key) && v == Json::String(HIDDEN.into()))
                    || old_masked.get(&e.key).is_some_and(has_hidden))
        })
        .map(|e| e.key)
        .collect();
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CFG: &str = "# lab config\ncluster_name: demo\n\n# the masters\nmaster_list:\n- 10.0.0.1\n# second\n- 10.0.0.2\n\nbootstrap_url: http://10.0.0.254:8080\nprometheus_remote_write_password: hunter2  # keep\n";

    fn secret(k: &str) -> bool {
        k.ends_with("password")
    }

    #[test]
    fn set_replaces_in_place_and_keeps_comments() {
        let out = set_keys(
            CFG,
            &[
                ("master_list".into(), Some(json!(["10.0.0.9"]))),
                ("ssh_port".into(), Some(json!(2222))),
                ("cluster_name".into(), None),
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            "# lab config\n\n# the masters\nmaster_list:\n- 10.0.0.9\n\nbootstrap_url: http://10.0.0.254:8080\nprometheus_remote_write_password: hunter2  # keep\nssh_port: 2222\n"
        );
    }

    #[test]
    fn set_on_empty_and_comment_only_documents() {
        assert_eq!(
            set_keys("", &[("a".into(), Some(json!("x")))]).unwrap(),
            "a: x\n"
        );
        assert_eq!(
            set_keys("# hello", &[("a".into(), Some(json!([])))]).unwrap(),
            "# hello\na: []\n"
        );
    }

    #[test]
    fn values_are_quoted_when_plain_would_change_them() {
        let out = set_keys(
            "",
            &[
                ("a".into(), Some(json!("yes"))),
                ("b".into(), Some(json!("123"))),
                ("c".into(), Some(json!("*star"))),
                ("d".into(), Some(json!("has: colon"))),
                ("e".into(), Some(json!("10m"))),
                ("f".into(), Some(json!({"k": "v w"}))),
                ("g".into(), Some(json!(true))),
                ("h".into(), Some(json!(""))),
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            "a: \"yes\"\nb: \"123\"\nc: \"*star\"\nd: \"has: colon\"\ne: 10m\nf: {k: \"v w\"}\ng: true\nh: \"\"\n"
        );
        let back: std::collections::BTreeMap<String, Json> =
            values(&out).unwrap().into_iter().collect();
        assert_eq!(back["a"], json!("yes"));
        assert_eq!(back["b"], json!("123"));
        assert_eq!(back["c"], json!("*star"));
        assert_eq!(back["d"], json!("has: colon"));
        assert_eq!(back["h"], json!(""));
    }

    #[test]
    fn flow_mapping_documents_are_rerendered() {
        let out = set_keys("{a: 1, b: [x, z]}\n", &[("a".into(), Some(json!(2)))]).unwrap();
        assert_eq!(out, "a: 2\nb:\n- x\n- z\n");
    }

    #[test]
    fn syntax_errors_are_reported() {
        let e = set_keys("a: [1,\n", &[]).unwrap_err();
        assert!(matches!(e, EditError::Syntax { .. }), "{e:?}");
    }

    #[test]
    fn secrets_are_masked_and_restored() {
        let masked = mask_secrets(CFG, &secret);
        assert!(!masked.contains("hunter2"), "{masked}");
        assert!(
            masked.contains("prometheus_remote_write_password: \"**HIDDEN**\"\n"),
            "{masked}"
        );
        assert!(masked.contains("# the masters"), "{masked}");
        let edited = masked.replace("cluster_name: demo", "cluster_name: prod");
        let restored = unmask_secrets(&edited, CFG, &secret).unwrap();
        assert!(
            restored.contains("prometheus_remote_write_password: hunter2  # keep\n"),
            "{restored}"
        );
        assert!(restored.contains("cluster_name: prod"), "{restored}");
        // A hidden secret with nothing stored is an error, not the literal marker.
        let err = unmask_secrets("x_password: \"**HIDDEN**\"\n", "", &secret).unwrap_err();
        assert_eq!(err, vec!["x_password".to_owned()]);
    }

    #[test]
    fn unparsable_text_is_masked_line_by_line() {
        let masked = mask_secrets("a: [\nmy_password: s3cret\n", &secret);
        assert_eq!(masked, "a: [\nmy_password: \"**HIDDEN**\"\n");
    }

    #[test]
    fn aliases_of_secrets_are_masked_in_values_and_text() {
        let t = "a_password: &p hunter2\nsearch: [*p, x]\nm: {k: *p}\n";
        assert_eq!(
            masked_values(t, &secret).unwrap(),
            vec![
                ("a_password".to_owned(), json!("**HIDDEN**")),
                ("search".to_owned(), json!(["**HIDDEN**", "x"])),
                ("m".to_owned(), json!({"k": "**HIDDEN**"})),
            ]
        );
        assert_eq!(masked_keys(t, &secret).unwrap(), vec!["a_password"]);
        let masked = mask_secrets(t, &secret);
        assert_eq!(
            masked,
            "a_password: &p \"**HIDDEN**\"\nsearch: [*p, x]\nm: {k: *p}\n"
        );
        // Saved back: the stored entry comes back as written, anchor and all.
        let edited = masked.replace("x]", "y]");
        assert_eq!(
            unmask_secrets(&edited, t, &secret).unwrap(),
            "a_password: &p hunter2\nsearch: [*p, y]\nm: {k: *p}\n"
        );
        // The source of a secret's value is hidden too.
        let t = "shared: &s hunter2\nb_password: *s\nother: *s\n";
        assert_eq!(
            masked_keys(t, &secret).unwrap(),
            vec!["shared", "b_password"]
        );
        assert_eq!(
            mask_secrets(t, &secret),
            "shared: &s \"**HIDDEN**\"\nb_password: \"**HIDDEN**\"\nother: *s\n"
        );
        assert_eq!(
            masked_values(t, &secret).unwrap()[2],
            ("other".to_owned(), json!("**HIDDEN**"))
        );
        assert_eq!(secret_strings(t, &secret), vec!["hunter2"]);
        assert_eq!(
            scrub("got \"hunter2\"", &["hunter2".into()]),
            "got \"**HIDDEN**\""
        );
        // A one-line flow mapping is re-rendered from the masked values, and restored from
        // the stored ones.
        let flow_doc = "{a_password: &p s3cret, l: [*p]}\n";
        let masked = mask_secrets(flow_doc, &secret);
        assert_eq!(masked, "a_password: \"**HIDDEN**\"\nl:\n- \"**HIDDEN**\"\n");
        assert_eq!(
            unmask_secrets(&masked, flow_doc, &secret).unwrap(),
            "a_password: s3cret\nl:\n- s3cret\n"
        );
        // Editing around a masked alias is an error, not a literal marker.
        let t = "a_password: &p hunter2\nsearch: [*p, x]\n";
        let edited = "a_password: &p \"**HIDDEN**\"\nsearch: [\"**HIDDEN**\", y]\n";
        assert_eq!(
            unmask_secrets(edited, t, &secret).unwrap_err(),
            vec!["search".to_owned()]
        );
    }

    #[test]
    fn unparsable_block_scalars_quoted_keys_and_flow_lines() {
        let t = "a: [\nmy_password: |\n  line one\n  line two\n\n'x_password': >-\n  folded\nb: 1\n{c: 1, \"y_password\": s3cret}\nlist_password:\n- s1\n- s2\nz: 2\n";
        assert_eq!(
            mask_unparsed(t, &secret),
            "a: [\nmy_password: \"**HIDDEN**\"\n'x_password': \"**HIDDEN**\"\nb: 1\n{c: 1, \"y_password\": \"**HIDDEN**\"\nlist_password: \"**HIDDEN**\"\nz: 2\n"
        );
    }
}
