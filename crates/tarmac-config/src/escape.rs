//! Context escaping for rendered files: every `{{ value }}` in a shell script, an environment
//! file or a systemd unit is escaped for that file's syntax, so a template author cannot
//! forget it.
//!
//! The kind of a file ([`FileFormat`]) comes from `files: {<template>: {format: …}}` in the
//! schema, else from its path ([`FileFormat::for_path`]). The minijinja environment's
//! auto-escape callback maps it to `AutoEscape::Custom(..)`, and the formatter escapes every
//! printed value that is not already safe (the output of `shquote`, `tojson`, `safe`).
//!
//! Shell and environment files are also scanned for where each `{{ … }}` stands: inside
//! `"…"` the value is escaped for double quotes (`\` before `$`, `` ` ``, `"`, `\`, the rule
//! both `sh` and systemd's `EnvironmentFile=` use), inside `'…'` it may not contain `'`,
//! elsewhere it is escaped as one word. The scan follows the template text in order; it does
//! not evaluate `{% if %}` branches, so keep quotes balanced within each branch.

use std::fmt;

use minijinja::{AutoEscape, Error, ErrorKind, Value};
use tarmac_types::shell::quote as shquote;

/// What kind of file a template renders, which decides how values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileFormat {
    /// A POSIX shell script: values are single-quoted words (`shquote`).
    Shell,
    /// `KEY=value` lines read by systemd's `EnvironmentFile=` and by `sh`: unsafe characters
    /// are backslash-escaped.
    Env,
    /// A systemd unit: `%` is doubled (no specifier expansion), control characters refused.
    Systemd,
    /// YAML, JSON or text: printed as is (YAML and JSON templates use `tojson`).
    Plain,
}

/// The custom auto-escape names minijinja carries for each format.
const SHELL: &str = "shell";
const ENV: &str = "env";
const SYSTEMD: &str = "systemd";

impl FileFormat {
    /// The name used in `files: {…: {format: …}}`.
    pub fn parse(s: &str) -> Option<FileFormat> {
        match s {
            "shell" => Some(FileFormat::Shell),
            "env" => Some(FileFormat::Env),
            "systemd" => Some(FileFormat::Systemd),
            "yaml" | "json" | "text" => Some(FileFormat::Plain),
            _ => None,
        }
    }

    /// The format of a file at `rel` (`etc/etcd/etcd.env`): `*.sh` is shell; `*.env` and
    /// files named `environment` are env files; `*.service`, `*.socket`, `*.timer`,
    /// `*.target`, `*.path`, `*.mount` and anything under a directory whose name starts
    /// with `systemd` are systemd units; everything else is plain.
    pub fn for_path(rel: &str) -> FileFormat {
        let mut parts: Vec<&str> = rel.split('/').collect();
        let name = parts.pop().unwrap_or_default();
        let ext = name.rsplit_once('.').map(|(_, e)| e);
        if ext == Some("sh") {
            FileFormat::Shell
        } else if ext == Some("env") || name == "environment" {
            FileFormat::Env
        } else if matches!(
            ext,
            Some("service" | "socket" | "timer" | "target" | "path" | "mount")
        ) || parts.iter().any(|d| d.starts_with("systemd"))
        {
            FileFormat::Systemd
        } else {
            FileFormat::Plain
        }
    }

    pub(crate) fn auto_escape(self) -> AutoEscape {
        match self {
            FileFormat::Shell => AutoEscape::Custom(SHELL),
            FileFormat::Env => AutoEscape::Custom(ENV),
            FileFormat::Systemd => AutoEscape::Custom(SYSTEMD),
            FileFormat::Plain => AutoEscape::None,
        }
    }
}

impl fmt::Display for FileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileFormat::Shell => "shell",
            FileFormat::Env => "env",
            FileFormat::Systemd => "systemd",
            FileFormat::Plain => "plain",
        })
    }
}

/// Characters that need no quoting in a shell word or an env value.
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c)
}

/// `file` names where the value goes: `an environment file`, `a shell script`.
fn refuse_controls(file: &str, s: &str) -> Result<(), Error> {
    match s.chars().find(|c| c.is_control()) {
        None => Ok(()),
        Some(c) => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "a value printed into {file} contains the control character U+{:04X}",
                u32::from(c)
            ),
        )),
    }
}

/// An env file value (systemd `EnvironmentFile=` and `sh` agree on it): every character that
/// is not safe in a shell word is preceded by a backslash. Control characters are refused.
pub fn env_escape(s: &str) -> Result<String, Error> {
    refuse_controls("an environment file", s)?;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !is_word_char(c) && c.is_ascii() {
            out.push('\\');
        }
        out.push(c);
    }
    Ok(out)
}

/// A value in a systemd unit: `%` doubled so specifiers are not expanded; control characters
/// (a newline would start a new directive) are refused.
pub fn systemd_escape(s: &str) -> Result<String, Error> {
    refuse_controls("a systemd unit", s)?;
    Ok(s.replace('%', "%%"))
}

/// Text inside `"…"` in shell or env files: `\` before `$`, `` ` ``, `"` and `\`.
pub fn double_quote_escape(s: &str) -> Result<String, Error> {
    refuse_controls("a shell script or environment file", s)?;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '$' | '`' | '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    Ok(out)
}

/// Text inside `'…'`: nothing is special, so `'` cannot appear.
pub fn single_quote_check(s: &str) -> Result<String, Error> {
    refuse_controls("a shell script or environment file", s)?;
    if s.contains('\'') {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "a value printed inside '…' contains a single quote; write the value outside the quotes (it is quoted for you)",
        ));
    }
    Ok(s.to_owned())
}

fn text_of(v: &Value) -> String {
    match v.as_str() {
        Some(s) => s.to_owned(),
        None => v.to_string(),
    }
}

/// Escape `value` for the custom auto-escape `kind` (see [`FileFormat::auto_escape`]).
pub(crate) fn escape_for(kind: &str, value: &Value) -> Result<String, Error> {
    let s = text_of(value);
    match kind {
        SHELL => {
            refuse_controls("a shell script", &s)?;
            Ok(shquote(&s))
        }
        ENV => env_escape(&s),
        SYSTEMD => systemd_escape(&s),
        other => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("no escaping for format `{other}`"),
        )),
    }
}

/// Filter names the scan inserts around `{{ … }}` inside quotes.
pub(crate) const IN_DOUBLE_QUOTES: &str = "tarmac_in_double_quotes";
pub(crate) const IN_SINGLE_QUOTES: &str = "tarmac_in_single_quotes";

pub(crate) fn filter_in_double_quotes(v: Value) -> Result<Value, Error> {
    if v.is_safe() {
        return Ok(v);
    }
    Ok(Value::from_safe_string(double_quote_escape(&text_of(&v))?))
}

pub(crate) fn filter_in_single_quotes(v: Value) -> Result<Value, Error> {
    if v.is_safe() {
        return Ok(v);
    }
    Ok(Value::from_safe_string(single_quote_check(&text_of(&v))?))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    Bare,
    Double,
    Single,
    Comment,
}

/// End (exclusive) of a `{{`/`{%`/`{#` block starting at `i`, skipping string literals.
fn block_end(b: &[u8], i: usize, close: &[u8; 2], strings: bool) -> usize {
    let mut j = i + 2;
    while j + 1 < b.len() {
        if strings && (b[j] == b'"' || b[j] == b'\'') {
            let q = b[j];
            j += 1;
            while j < b.len() && b[j] != q {
                if b[j] == b'\\' {
                    j += 1;
                }
                j += 1;
            }
            j += 1;
            continue;
        }
        if &b[j..j + 2] == close {
            return j + 2;
        }
        j += 1;
    }
    b.len()
}

/// For a shell or env template: wrap every `{{ … }}` that stands inside `"…"` or `'…'` in the
/// matching escaping filter. Other templates are returned unchanged. Lines stay where they
/// are (error locations keep pointing at the author's text).
pub(crate) fn quote_aware_source(format: FileFormat, src: &str) -> String {
    if !matches!(format, FileFormat::Shell | FileFormat::Env) {
        return src.to_owned();
    }
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len() + 64);
    let mut state = Quote::Bare;
    let mut word_start = true;
    let mut line_start = true;
    let mut last = 0usize;
    let mut i = 0usize;
    while i < b.len() {
        if b[i] == b'{' && i + 1 < b.len() && matches!(b[i + 1], b'{' | b'%' | b'#') {
            let (end, expr) = match b[i + 1] {
                b'{' => (block_end(b, i, b"}}", true), true),
                b'%' => (block_end(b, i, b"%}", true), false),
                _ => (block_end(b, i, b"#}", false), false),
            };
            if expr && matches!(state, Quote::Double | Quote::Single) {
                let filter = if state == Quote::Double {
                    IN_DOUBLE_QUOTES
                } else {
                    IN_SINGLE_QUOTES
                };
                let mut open = i + 2;
                if open < end && matches!(b[open], b'-' | b'+') {
                    open += 1;
                }
                let mut close = end.saturating_sub(2).max(open);
                if close > open && matches!(b[close - 1], b'-' | b'+') {
                    close -= 1;
                }
                out.push_str(&src[last..open]);
                out.push_str(" (");
                out.push_str(&src[open..close]);
                out.push_str(") | ");
                out.push_str(filter);
                out.push(' ');
                last = close;
            }
            if expr {
                word_start = false;
                line_start = false;
            }
            i = end;
            continue;
        }
        let c = b[i];
        match state {
            Quote::Bare => match c {
                b'\'' => state = Quote::Single,
                b'"' => state = Quote::Double,
                b'\\' => i += 1,
                b'#' if format == FileFormat::Shell && word_start => state = Quote::Comment,
                b'#' | b';' if format == FileFormat::Env && line_start => state = Quote::Comment,
                _ => {}
            },
            Quote::Double => match c {
                b'"' => state = Quote::Bare,
                b'\\' => i += 1,
                _ => {}
            },
            Quote::Single => {
                if c == b'\'' {
                    state = Quote::Bare;
                }
            }
            Quote::Comment => {
                if c == b'\n' {
                    state = Quote::Bare;
                }
            }
        }
        if c == b'\n' {
            line_start = true;
            word_start = true;
        } else if c == b' ' || c == b'\t' {
            word_start = true;
        } else {
            line_start = false;
            word_start = matches!(c, b';' | b'&' | b'|' | b'(' | b')');
        }
        i += 1;
    }
    out.push_str(&src[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NASTY: &str = "a b$HOME`id`\"q\"'s'%n\\";

    #[test]
    fn escapers() {
        assert_eq!(shquote(NASTY), r#"'a b$HOME`id`"q"'\''s'\''%n\'"#);
        assert_eq!(shquote("plain-1.2"), "plain-1.2");
        assert_eq!(
            env_escape(NASTY).unwrap(),
            r#"a\ b\$HOME\`id\`\"q\"\'s\'%n\\"#
        );
        assert_eq!(systemd_escape(NASTY).unwrap(), "a b$HOME`id`\"q\"'s'%%n\\");
        assert_eq!(
            double_quote_escape(NASTY).unwrap(),
            r#"a b\$HOME\`id\`\"q\"'s'%n\\"#
        );
        assert!(single_quote_check(NASTY).is_err());
        for f in [env_escape, systemd_escape, double_quote_escape] {
            assert!(f("a\nb").is_err());
        }
    }

    #[test]
    fn formats_from_paths() {
        assert_eq!(FileFormat::for_path("bin/start.sh"), FileFormat::Shell);
        assert_eq!(FileFormat::for_path("etc/etcd/etcd.env"), FileFormat::Env);
        assert_eq!(FileFormat::for_path("etc/environment"), FileFormat::Env);
        assert_eq!(
            FileFormat::for_path("dcos.target.wants/etcd.service"),
            FileFormat::Systemd
        );
        assert_eq!(
            FileFormat::for_path("etc/systemd/system/x.conf"),
            FileFormat::Systemd
        );
        assert_eq!(FileFormat::for_path("etc/p/p.yml"), FileFormat::Plain);
        assert_eq!(FileFormat::for_path("bin/detect_ip"), FileFormat::Plain);
    }

    #[test]
    fn values_inside_quotes_get_the_quote_filter() {
        let src = "# it's {{ a }}\nA=\"x {{ b }}\" {{ c }} '{{- d -}}' \"{{ e | tojson }}\"\n";
        assert_eq!(
            quote_aware_source(FileFormat::Shell, src),
            "# it's {{ a }}\nA=\"x {{ ( b ) | tarmac_in_double_quotes }}\" {{ c }} '{{- ( d ) | tarmac_in_single_quotes -}}' \"{{ ( e | tojson ) | tarmac_in_double_quotes }}\"\n"
        );
        // Env files: comments only at the start of a line; quotes in tags do not count.
        let src = "; {{ a }}\nA=\"{% if x == '\"' %}{{ b }}{% endif %}\"\nB={{ \"}}\" }}\n";
        assert_eq!(
            quote_aware_source(FileFormat::Env, src),
            "; {{ a }}\nA=\"{% if x == '\"' %}{{ ( b ) | tarmac_in_double_quotes }}{% endif %}\"\nB={{ \"}}\" }}\n"
        );
        assert_eq!(
            quote_aware_source(FileFormat::Plain, "\"{{ a }}\""),
            "\"{{ a }}\""
        );
    }
}
