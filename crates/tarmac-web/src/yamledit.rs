//! Edits of `config.yaml` text that keep the operator's layout: setting or removing one
//! top-level key rewrites only that key's lines (comments, order and the other keys stay as
//! they were), and secret values are masked on the way out and restored on the way in.
//!
//! `config.yaml` is a flat mapping, so a top-level entry spans from its key's line to the
//! line before the next key (trailing blank and comment lines belong to what follows).
//! Documents that do not have one key per line at column 1 (a top-level flow mapping) are
//! re-rendered from their values instead.

use serde_json::Value as Json;
use tarmac_config::yaml::{self, DocError, Entry, Scalar, is_yaml11_bool_word};

/// What secret values are replaced with in text the API returns.
pub const HIDDEN: &str = tarmac_config::HIDDEN;

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

/// Replace the value of every secret key with [`HIDDEN`]. Text that does not parse is
/// returned with every line of a secret key masked after its colon.
pub fn mask_secrets(text: &str, is_secret: &dyn Fn(&str) -> bool) -> String {
    match entries(text) {
        Ok(es) => {
            let changes: Vec<(String, Option<Json>)> = es
                .iter()
                .filter(|e| is_secret(&e.key) && !e.value.to_json().is_null())
                .map(|e| (e.key.clone(), Some(Json::String(HIDDEN.into()))))
                .collect();
            if changes.is_empty() {
                return text.to_owned();
            }
            set_keys(text, &changes).unwrap_or_default()
        }
        Err(_) => text
            .split_inclusive('\n')
            .map(|l| match l.split_once(':') {
                Some((k, _)) if is_secret(k.trim()) => format!("{k}: \"{HIDDEN}\"\n"),
                _ => l.to_owned(),
            })
            .collect(),
    }
}

/// Put the stored values back where `new_text` still has [`HIDDEN`] for a secret key. Keys
/// left hidden that have no stored value are returned as errors.
pub fn unmask_secrets(
    new_text: &str,
    old_text: &str,
    is_secret: &dyn Fn(&str) -> bool,
) -> Result<String, Vec<String>> {
    let Ok(new) = entries(new_text) else {
        return Ok(new_text.to_owned());
    };
    let old = entries(old_text).unwrap_or_default();
    let mut changes = Vec::new();
    let mut missing = Vec::new();
    for e in &new {
        if is_secret(&e.key) && e.value.to_json() == Json::String(HIDDEN.into()) {
            match old.iter().find(|o| o.key == e.key) {
                Some(o) if o.value.to_json() != Json::String(HIDDEN.into()) => {
                    changes.push((e.key.clone(), Some(o.value.to_json())));
                }
                _ => missing.push(e.key.clone()),
            }
        }
    }
    if !missing.is_empty() {
        return Err(missing);
    }
    if changes.is_empty() {
        return Ok(new_text.to_owned());
    }
    set_keys(new_text, &changes).map_err(|_| Vec::new())
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
            restored.contains("prometheus_remote_write_password: hunter2\n"),
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
}
