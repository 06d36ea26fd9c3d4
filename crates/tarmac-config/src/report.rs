//! Validation reports: every problem with its key, location and hint, rendered for a
//! terminal (with the offending source line) or as `{key: message}` JSON.

use std::collections::BTreeMap;
use std::fmt;

use crate::yaml::Loc;

/// One problem (or warning) about one key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// The parameter at fault; `config.yaml` for problems with the file as a whole.
    pub key: String,
    /// Where in config.yaml, when the key or value is in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(key: &str, loc: Option<Loc>, message: impl Into<String>) -> Self {
        Diagnostic {
            key: key.to_owned(),
            line: loc.map(|l| l.line),
            column: loc.map(|l| l.column),
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn loc(&self) -> Option<Loc> {
        Some(Loc {
            line: self.line?,
            column: self.column?,
        })
    }
}

/// The outcome of validating one config.yaml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// How the file is named in messages, e.g. `genconf/config.yaml`.
    pub file: String,
    /// The file's text (for source excerpts).
    pub source: String,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl Report {
    pub fn new(file: &str, source: &str) -> Self {
        Report {
            file: file.to_owned(),
            source: source.to_owned(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Errors in file order; errors without a location (missing keys) last, by key.
    pub fn sorted(mut self) -> Self {
        let k = |d: &Diagnostic| {
            (
                d.line.is_none(),
                d.line,
                d.column,
                d.key.clone(),
                d.message.clone(),
            )
        };
        self.errors.sort_by_key(k);
        self.warnings.sort_by_key(k);
        self.errors.dedup();
        self
    }

    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// `{key: message}` as DC/OS printed it; several messages for one key are joined by `; `.
    pub fn to_json_map(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        for e in &self.errors {
            out.entry(e.key.clone())
                .and_modify(|m| {
                    m.push_str("; ");
                    m.push_str(&e.message);
                })
                .or_insert_with(|| e.message.clone());
        }
        out
    }

    /// The report for a terminal: each problem as
    ///
    /// ```text
    /// error: master_list: Invalid host addresses in list: foo
    ///   --> genconf/config.yaml:2:15
    ///    |
    ///  2 | master_list: [foo]
    ///    |               ^
    ///    = hint: each entry is …
    /// ```
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (kind, list) in [("error", &self.errors), ("warning", &self.warnings)] {
            for d in list {
                self.render_one(&mut out, kind, d);
            }
        }
        out
    }

    fn render_one(&self, out: &mut String, kind: &str, d: &Diagnostic) {
        use std::fmt::Write as _;
        if d.key == "config.yaml" {
            let _ = writeln!(out, "{kind}: {}", d.message);
        } else {
            let _ = writeln!(out, "{kind}: {}: {}", d.key, d.message);
        }
        match d.loc() {
            Some(loc) => {
                let _ = writeln!(out, "  --> {}:{}:{}", self.file, loc.line, loc.column);
                if let Some(line) = self.source.lines().nth(loc.line.saturating_sub(1) as usize) {
                    let num = loc.line.to_string();
                    let pad = " ".repeat(num.len());
                    let caret_pad: String = line
                        .chars()
                        .take(loc.column.saturating_sub(1) as usize)
                        .map(|c| if c == '\t' { '\t' } else { ' ' })
                        .collect();
                    let _ = writeln!(out, " {pad} |");
                    let _ = writeln!(out, " {num} | {line}");
                    let _ = writeln!(out, " {pad} | {caret_pad}^");
                }
            }
            None => {
                let _ = writeln!(out, "  --> {}", self.file);
            }
        }
        if let Some(h) = &d.hint {
            let _ = writeln!(out, "  = hint: {h}");
        }
        out.push('\n');
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "{} has {n} configuration error{}",
            self.file,
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for Report {}
