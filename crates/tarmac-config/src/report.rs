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
    /// Character ranges of `source` that [`Report::render`] shows as `**HIDDEN**`.
    hidden: Vec<(usize, usize)>,
    /// Keys whose values are hidden line by line (when the text has no tree to take spans from).
    hidden_keys: Vec<String>,
}

impl Report {
    pub fn new(file: &str, source: &str) -> Self {
        Report {
            file: file.to_owned(),
            source: source.to_owned(),
            errors: Vec::new(),
            warnings: Vec::new(),
            hidden: Vec::new(),
            hidden_keys: Vec::new(),
        }
    }

    /// Show the characters `span.0..span.1` of the source (a secret value) as `**HIDDEN**`
    /// in [`Report::render`].
    pub fn hide(&mut self, span: (usize, usize)) {
        if span.0 < span.1 {
            self.hidden.push(span);
            self.hidden.sort_unstable();
        }
    }

    /// In [`Report::render`], show everything after `key:` on a source line as `**HIDDEN**`
    /// (for text that does not parse, where values have no spans).
    pub fn hide_key_lines(&mut self, key: &str) {
        self.hidden_keys.push(key.to_owned());
    }

    /// Source line `line` (1-based) with hidden parts replaced, and where character column
    /// `column` (1-based) of the original line ends up in it.
    fn masked_line(&self, line: u32, column: u32) -> Option<(String, usize)> {
        let idx = line.checked_sub(1)? as usize;
        let mut start = 0usize;
        let mut text = None;
        for (i, l) in self.source.split_inclusive('\n').enumerate() {
            if i == idx {
                text = Some(l.trim_end_matches('\n').trim_end_matches('\r'));
                break;
            }
            start += l.chars().count();
        }
        let chars: Vec<char> = text?.chars().collect();
        let end = start + chars.len();
        let hidden = self
            .hidden
            .iter()
            .map(|&(s, t)| (s.max(start), t.min(end)))
            .filter(|(s, t)| s < t)
            .map(|(s, t)| (s - start, t - start));
        // Display position of every original column (and of the end of the line).
        let mut out: Vec<char> = Vec::with_capacity(chars.len());
        let mut map = vec![0usize; chars.len() + 1];
        let mut j = 0usize;
        for (s, t) in hidden {
            // Keep the indentation of a continuation line.
            let s = (s..t).find(|&k| !chars[k].is_whitespace()).unwrap_or(t);
            if s < j || s == t {
                continue;
            }
            while j < s {
                map[j] = out.len();
                out.push(chars[j]);
                j += 1;
            }
            let p = out.len();
            out.extend(crate::HIDDEN.chars());
            while j < t {
                map[j] = p;
                j += 1;
            }
        }
        while j < chars.len() {
            map[j] = out.len();
            out.push(chars[j]);
            j += 1;
        }
        map[chars.len()] = out.len();
        let caret = map[(column.saturating_sub(1) as usize).min(chars.len())];
        let (line, cut) = self.hide_key_values(out.into_iter().collect());
        Some((line, cut.map_or(caret, |c| caret.min(c))))
    }

    /// Everything after `key:` of a hidden key, when the source has no spans; with the
    /// character position where the hidden part starts.
    fn hide_key_values(&self, line: String) -> (String, Option<usize>) {
        for key in &self.hidden_keys {
            let mut from = 0;
            while let Some(pos) = line[from..].find(key.as_str()) {
                let at = from + pos;
                from = at + key.len();
                let before_ok = line[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|c| c.is_whitespace() || "{,'\"".contains(c));
                let rest = line[from..].trim_start_matches(['\'', '"']).trim_start();
                if before_ok && rest.starts_with(':') && !rest[1..].trim().is_empty() {
                    let colon = line.len() - rest.len();
                    let kept = &line[..=colon];
                    let cut = kept.chars().count() + 1;
                    return (format!("{kept} {}", crate::HIDDEN), Some(cut));
                }
            }
        }
        (line, None)
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
                if let Some((line, caret)) = self.masked_line(loc.line, loc.column) {
                    let num = loc.line.to_string();
                    let pad = " ".repeat(num.len());
                    let caret_pad: String = line
                        .chars()
                        .take(caret)
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
