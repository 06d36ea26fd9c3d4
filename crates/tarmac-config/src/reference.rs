//! The configuration reference: every key of the installer's schema and a distribution's,
//! rendered as Markdown (`docs/config-reference.md`, `tarmac config reference`), and the entry
//! of one key (`tarmac config explain KEY`). Pure: a [`Schema`] in, text out.
//!
//! Keys are listed by name within each section (installer, then distribution; parameters,
//! then calculated values), so the output only changes when a schema does.

use std::fmt::Write as _;

use serde_json::Value as Json;

use crate::engine::flow_yaml;
use crate::schema::{Derived, DerivedKind, Origin, Param, Schema};
use crate::types::{Type, format_duration};

/// A key that neither schema declares.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown configuration key `{key}`: neither the installer's schema nor the distribution's declares it"
)]
pub struct UnknownKey {
    pub key: String,
    /// The closest known keys, closest first.
    pub suggestions: Vec<String>,
}

impl tarmac_types::error_report::Hint for UnknownKey {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(hint(&self.suggestions).into())
    }
}

fn hint(suggestions: &[String]) -> String {
    let list = "`tarmac config reference` lists every key";
    if suggestions.is_empty() {
        list.to_owned()
    } else {
        let names: Vec<String> = suggestions.iter().map(|s| format!("`{s}`")).collect();
        format!("did you mean {}? ({list})", names.join(", "))
    }
}

/// The whole reference: a title, then one section per schema (the installer's, then the
/// distribution `dist_name`'s), each with its parameters and then its calculated values.
pub fn render_reference(schema: &Schema, dist_name: &str) -> String {
    let mut out = String::new();
    out.push_str("# Configuration reference\n\n");
    out.push_str(&format!(
        "<!-- Generated from the installer's schema (crates/tarmac-config/src/installer_schema.yaml) and the schema of the distribution `{dist_name}` by `tarmac config reference --out docs/config-reference.md`. Do not edit by hand. -->\n\n"
    ));
    out.push_str(
        "Every key `genconf/config.yaml` may set, and the values calculated from them. \
         `tarmac config explain KEY` prints one entry; `tarmac validate-config` checks a \
         config against these rules.\n\n\
         Durations take units (`500ms`, `90s`, `15m`, `1h30m`, `2d`, `1w`; a bare number is \
         seconds); byte sizes take `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024) or `KB`, `MB`, \
         `GB`, `TB` (powers of 1000; a bare number is bytes).\n",
    );
    for (origin, title, intro) in [
        (
            Origin::Installer,
            "Installer".to_owned(),
            "The installer's own keys, known to every distribution.".to_owned(),
        ),
        (
            Origin::Distribution,
            format!("Distribution `{dist_name}`"),
            format!("The keys of the distribution `{dist_name}` (its `config/schema.yaml`)."),
        ),
    ] {
        let params: Vec<&Param> = schema
            .params
            .values()
            .filter(|p| p.origin == origin)
            .collect();
        let derived: Vec<&Derived> = schema
            .derived
            .values()
            .filter(|d| d.origin == origin)
            .collect();
        let _ = write!(out, "\n## {title}\n\n{intro}\n");
        if !params.is_empty() {
            let _ = write!(
                out,
                "\nParameters: {}.\n",
                index(params.iter().map(|p| p.name.as_str()))
            );
        }
        if !derived.is_empty() {
            let _ = write!(
                out,
                "\nCalculated (cannot be set): {}.\n",
                index(derived.iter().map(|d| d.name.as_str()))
            );
        }
        for p in params {
            out.push('\n');
            out.push_str(&param_entry(schema, p));
        }
        for d in derived {
            out.push('\n');
            out.push_str(&derived_entry(schema, d));
        }
    }
    out
}

/// The reference entry of one key, exactly as [`render_reference`] prints it.
pub fn explain(schema: &Schema, key: &str) -> Result<String, UnknownKey> {
    if let Some(p) = schema.params.get(key) {
        Ok(param_entry(schema, p))
    } else if let Some(d) = schema.derived.get(key) {
        Ok(derived_entry(schema, d))
    } else {
        Err(UnknownKey {
            key: key.to_owned(),
            suggestions: closest_keys(schema, key, 3),
        })
    }
}

/// Up to `max` known keys closest to `key` by edit distance (ignoring case, `-` read as
/// `_`), closest first, ties by name; keys too far away to be a slip are left out.
pub fn closest_keys(schema: &Schema, key: &str, max: usize) -> Vec<String> {
    let wanted = key.to_ascii_lowercase().replace('-', "_");
    let mut scored: Vec<(usize, &str)> = schema
        .names()
        .map(|n| (strsim::levenshtein(&wanted, n), n))
        .filter(|(d, n)| *d <= (n.len() / 2).max(2))
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(max)
        .map(|(_, n)| n.to_owned())
        .collect()
}

fn index<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("[`{n}`](#{n})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Inline code, with a longer fence when the text holds a backtick.
fn code(s: &str) -> String {
    if s.contains('`') {
        format!("`` {s} ``")
    } else {
        format!("`{s}`")
    }
}

fn heading_and_description(out: &mut String, name: &str, description: &str) {
    let _ = writeln!(out, "### `{name}`\n");
    if !description.trim().is_empty() {
        let _ = writeln!(out, "{}\n", description.trim());
    }
}

fn param_entry(schema: &Schema, p: &Param) -> String {
    let mut out = String::new();
    heading_and_description(&mut out, &p.name, &p.description);
    let _ = writeln!(out, "- Type: {}", type_name(&p.ty));
    let allowed = allowed(&p.ty);
    if !allowed.is_empty() {
        let _ = writeln!(out, "- Allowed: {}", allowed.join("; "));
    }
    let required = if let Some(cond) = &p.required_when {
        format!("when {}", code(cond))
    } else if p.optional {
        "no (may stay unset)".to_owned()
    } else if p.default.is_some() || p.default_expr.is_some() {
        "no".to_owned()
    } else {
        "yes".to_owned()
    };
    let _ = writeln!(out, "- Required: {required}");
    let default = match (&p.default, &p.default_expr) {
        (Some(v), _) => code(&value_text(&p.ty, v)),
        (None, Some(expr)) => format!("calculated as {}", code(expr)),
        (None, None) => "none".to_owned(),
    };
    let _ = writeln!(out, "- Default: {default}");
    if let Some(example) = &p.example {
        let _ = writeln!(out, "- Example: {}", code(&value_text(&p.ty, example)));
    }
    let _ = writeln!(out, "- Secret: {}", secret_text(p.secret));
    rules(&mut out, schema, &p.name);
    out
}

fn derived_entry(schema: &Schema, d: &Derived) -> String {
    let mut out = String::new();
    heading_and_description(&mut out, &d.name, &d.description);
    let how = match &d.kind {
        DerivedKind::Expr(e) => format!("calculated as {}", code(e)),
        DerivedKind::Builtin(b) => format!("calculated by Tarmac (builtin {})", code(b)),
    };
    let _ = writeln!(out, "- Value: {how}; setting it in config.yaml is an error");
    let _ = writeln!(out, "- Secret: {}", secret_text(d.secret));
    rules(&mut out, schema, &d.name);
    out
}

fn secret_text(secret: bool) -> &'static str {
    if secret {
        "yes (masked as `**HIDDEN**` in the copies shipped to hosts)"
    } else {
        "no"
    }
}

/// The cross-field rules attached to `name`, in schema order.
fn rules(out: &mut String, schema: &Schema, name: &str) {
    for r in schema
        .rules
        .iter()
        .filter(|r| r.keys.iter().any(|k| k == name))
    {
        match &r.when {
            Some(w) => {
                let _ = writeln!(out, "- Rule: {} (when {})", code(&r.assert), code(w));
            }
            None => {
                let _ = writeln!(out, "- Rule: {}", code(&r.assert));
            }
        }
    }
}

fn type_name(ty: &Type) -> String {
    match ty {
        Type::List {
            items: Some(items), ..
        } if !matches!(**items, Type::Ip | Type::Host) => {
            format!("`list` of `{}`", items.name())
        }
        other => format!("`{}`", other.name()),
    }
}

/// What a type accepts beyond its name: ranges, choices, schemes, lengths.
fn allowed(ty: &Type) -> Vec<String> {
    let mut out = Vec::new();
    match ty {
        Type::String {
            multiline,
            min_length,
            max_length,
        } => {
            match (min_length, max_length) {
                (min, Some(max)) => out.push(format!("{min} to {max} characters")),
                (0, None) => out.push("may be empty".to_owned()),
                (1, None) => {}
                (min, None) => out.push(format!("at least {min} characters")),
            }
            if *multiline {
                out.push("may span several lines".to_owned());
            }
        }
        Type::Int { min, max } => match (*min, *max) {
            (i64::MIN, i64::MAX) => {}
            (min, i64::MAX) => out.push(format!("at least {min}")),
            (i64::MIN, max) => out.push(format!("at most {max}")),
            (min, max) => out.push(format!("{min} to {max}")),
        },
        Type::Bool => out.push("`true` or `false`".to_owned()),
        Type::Enum(values) => out.push(format!(
            "one of {}",
            values
                .iter()
                .map(|v| code(v))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Type::Url { schemes } => out.push(format!(
            "a URL with scheme {}, not ending in `/`",
            schemes
                .iter()
                .map(|s| code(s))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Type::Path { absolute: true } => out.push("an absolute path".to_owned()),
        Type::Duration { min, max } => match (min, max) {
            (None, None) => {}
            (Some(min), None) => out.push(format!("at least {}", format_duration(*min))),
            (None, Some(max)) => out.push(format!("at most {}", format_duration(*max))),
            (Some(min), Some(max)) => out.push(format!(
                "{} to {}",
                format_duration(*min),
                format_duration(*max)
            )),
        },
        Type::Bytes { min, max } => match (min, max) {
            (None, None) => {}
            (Some(min), None) => out.push(format!("at least {}", format_bytes(*min))),
            (None, Some(max)) => out.push(format!("at most {}", format_bytes(*max))),
            (Some(min), Some(max)) => {
                out.push(format!("{} to {}", format_bytes(*min), format_bytes(*max)));
            }
        },
        Type::List {
            items,
            unique,
            min_items,
            max_items,
        } => {
            match (min_items, max_items) {
                (0, None) => {}
                (min, None) => out.push(format!("at least {min} {}", plural(*min, "item"))),
                (0, Some(max)) => out.push(format!("at most {max} {}", plural(*max, "item"))),
                (min, Some(max)) => out.push(format!("{min} to {max} items")),
            }
            if *unique {
                out.push("no duplicates".to_owned());
            }
            if let Some(items) = items {
                let each = allowed(items);
                if !each.is_empty() {
                    out.push(format!("each item: {}", each.join(", ")));
                }
            }
        }
        Type::Ip | Type::Host | Type::Path { absolute: false } | Type::Dict => {}
    }
    out
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

/// A value as it would be written in config.yaml (byte sizes with their largest exact unit).
fn value_text(ty: &Type, v: &Json) -> String {
    match (ty, v) {
        (Type::Bytes { .. }, Json::Number(n)) => match n.as_u64() {
            Some(b) => format_bytes(b),
            None => n.to_string(),
        },
        _ => flow_yaml(v),
    }
}

/// `2GiB`, `64MiB`, `1500KB`, `1000`: the largest unit that divides the size exactly.
fn format_bytes(b: u64) -> String {
    const UNITS: [(&str, u64); 8] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("TB", 1_000_000_000_000),
        ("GB", 1_000_000_000),
        ("MB", 1_000_000),
        ("KB", 1000),
    ];
    if b == 0 {
        return "0".to_owned();
    }
    for (unit, size) in UNITS {
        if b.is_multiple_of(size) {
            return format!("{}{unit}", b / size);
        }
    }
    b.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_use_their_largest_exact_unit() {
        assert_eq!(format_bytes(2 << 30), "2GiB");
        assert_eq!(format_bytes(64 << 20), "64MiB");
        assert_eq!(format_bytes(1_500_000), "1500KB");
        assert_eq!(format_bytes(1024 * 1000), "1000KiB");
        assert_eq!(format_bytes(999), "999");
        assert_eq!(format_bytes(0), "0");
        for b in [2u64 << 30, 64 << 20, 1_500_000, 999] {
            assert_eq!(crate::types::parse_bytes(&format_bytes(b)), Ok(b));
        }
    }

    #[test]
    fn code_spans_survive_backticks() {
        assert_eq!(code("a"), "`a`");
        assert_eq!(code("a`b"), "`` a`b ``");
    }
}
