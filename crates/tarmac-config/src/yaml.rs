//! A small span-aware YAML reader for `config.yaml`.
//!
//! `config.yaml` is a flat mapping of parameter names to scalars, lists and maps. We read it
//! with granit-parser's event stream (the parser underneath serde-saphyr) so that every key and
//! value keeps its line and column, and so that we know how each scalar was written: a plain
//! `yes` is not the same thing as a quoted `"yes"`. Plain scalars are resolved with the YAML 1.2
//! core schema (`yes`/`no`/`on`/`off` stay strings); callers flag YAML 1.1 booleans themselves.

use std::collections::HashMap;
use std::fmt;

use serde_saphyr::granit_parser::{self, Event, Parser, ScalarStyle, Span};

/// A 1-based line and column in the source text (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Loc {
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

fn loc_of(span: &Span) -> Loc {
    Loc {
        line: u32::try_from(span.start.line()).unwrap_or(u32::MAX),
        column: u32::try_from(span.start.col() + 1).unwrap_or(u32::MAX),
    }
}

/// How a scalar was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Quoted,
    Block,
}

/// What a scalar means under the YAML 1.2 core schema (plain scalars and explicit tags).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Scalar {
    /// A short description for messages: `a string ("foo")`, `an integer (5)`, `null`.
    pub fn describe(&self) -> String {
        match self {
            Scalar::Null => "null".to_owned(),
            Scalar::Bool(b) => format!("a boolean ({b})"),
            Scalar::Int(i) => format!("an integer ({i})"),
            Scalar::Float(f) => format!("a float ({f})"),
            Scalar::Str(s) => format!("a string ({})", quote_short(s)),
        }
    }
}

/// Quote a string for a message, cutting long values.
pub fn quote_short(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if s.chars().count() > 60 {
        out.push('…');
    }
    format!("{out:?}")
}

/// A YAML node with its location.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Scalar {
        value: Scalar,
        text: String,
        style: Style,
        loc: Loc,
    },
    Seq {
        items: Vec<Node>,
        loc: Loc,
    },
    Map {
        entries: Vec<(Node, Node)>,
        loc: Loc,
    },
}

impl Node {
    pub fn loc(&self) -> Loc {
        match self {
            Node::Scalar { loc, .. } | Node::Seq { loc, .. } | Node::Map { loc, .. } => *loc,
        }
    }

    /// A short description of the node's kind for "wrong type" messages.
    pub fn describe(&self) -> String {
        match self {
            Node::Scalar { value, .. } => value.describe(),
            Node::Seq { .. } => "a list".to_owned(),
            Node::Map { .. } => "a mapping".to_owned(),
        }
    }

    /// True for a plain scalar that YAML 1.1 (PyYAML, DC/OS) would have read as a boolean
    /// but YAML 1.2 reads as a string: `yes`, `No`, `on`, `OFF`, `y`, `n`.
    pub fn is_yaml11_bool(&self) -> bool {
        matches!(self, Node::Scalar { style: Style::Plain, value: Scalar::Str(s), .. } if is_yaml11_bool_word(s))
    }

    /// Convert to JSON (for list/dict parameters and for hashing raw user values).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Node::Scalar { value, .. } => match value {
                Scalar::Null => serde_json::Value::Null,
                Scalar::Bool(b) => (*b).into(),
                Scalar::Int(i) => (*i).into(),
                Scalar::Float(f) => {
                    serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
                }
                Scalar::Str(s) => s.clone().into(),
            },
            Node::Seq { items, .. } => items.iter().map(Node::to_json).collect(),
            Node::Map { entries, .. } => entries
                .iter()
                .map(|(k, v)| (k.key_text(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    /// The text of a scalar used as a mapping key (non-scalars are rendered as JSON).
    pub fn key_text(&self) -> String {
        match self {
            Node::Scalar { text, .. } => text.clone(),
            other => other.to_json().to_string(),
        }
    }
}

pub fn is_yaml11_bool_word(s: &str) -> bool {
    matches!(
        s,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    )
}

/// One top-level `key: value` of config.yaml.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_loc: Loc,
    pub value: Node,
}

/// Why config.yaml could not be read as a flat mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocError {
    /// Not YAML at all.
    Syntax { loc: Loc, message: String },
    /// Empty, or only comments, or `null`.
    Empty,
    /// Several `---` documents.
    MultipleDocuments { loc: Loc },
    /// The top level is a list or a scalar.
    NotAMapping { loc: Loc, found: String },
    /// A key that is not a plain string (`1: x`, `[a]: x`, `null: x`).
    BadKey { loc: Loc, found: String },
    /// The same key twice.
    DuplicateKey { key: String, loc: Loc, first: Loc },
    /// A tag Tarmac does not understand (`!!binary`, `!custom`).
    UnsupportedTag { loc: Loc, tag: String },
    /// `*alias` with no anchor.
    UnknownAlias { loc: Loc },
}

/// Parse a whole config.yaml text into its top-level entries, in file order.
pub fn parse_flat_mapping(text: &str) -> Result<Vec<Entry>, Vec<DocError>> {
    let root = parse_single_document(text).map_err(|e| vec![e])?;
    let Some(root) = root else {
        return Err(vec![DocError::Empty]);
    };
    let entries = match root {
        Node::Map { entries, .. } => entries,
        Node::Scalar {
            value: Scalar::Null,
            ..
        } => return Err(vec![DocError::Empty]),
        other => {
            return Err(vec![DocError::NotAMapping {
                loc: other.loc(),
                found: other.describe(),
            }]);
        }
    };
    let mut out = Vec::with_capacity(entries.len());
    let mut errors = Vec::new();
    let mut seen: HashMap<String, Loc> = HashMap::new();
    for (k, v) in entries {
        let key = match &k {
            Node::Scalar {
                value: Scalar::Str(s),
                ..
            } => s.clone(),
            other => {
                errors.push(DocError::BadKey {
                    loc: other.loc(),
                    found: other.describe(),
                });
                continue;
            }
        };
        if let Some(first) = seen.get(&key) {
            errors.push(DocError::DuplicateKey {
                key,
                loc: k.loc(),
                first: *first,
            });
            continue;
        }
        seen.insert(key.clone(), k.loc());
        out.push(Entry {
            key,
            key_loc: k.loc(),
            value: v,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Parse one YAML document into a node tree (`None` when the stream holds no document).
pub fn parse_single_document(text: &str) -> Result<Option<Node>, DocError> {
    let mut b = Builder::default();
    for ev in Parser::new_from_str(text) {
        let (event, span) = ev.map_err(|e| DocError::Syntax {
            loc: Loc {
                line: u32::try_from(e.marker().line()).unwrap_or(u32::MAX),
                column: u32::try_from(e.marker().col() + 1).unwrap_or(u32::MAX),
            },
            message: e.info(),
        })?;
        b.event(event, &span)?;
    }
    Ok(b.root)
}

enum Frame {
    Seq {
        items: Vec<Node>,
        loc: Loc,
        anchor: usize,
    },
    Map {
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
        loc: Loc,
        anchor: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    documents: usize,
}

impl Builder {
    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<(), DocError> {
        match event {
            Event::DocumentStart(..) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(DocError::MultipleDocuments { loc: loc_of(span) });
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let loc = loc_of(span);
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Style::Quoted,
                    ScalarStyle::Literal | ScalarStyle::Folded => Style::Block,
                };
                let value = match tag {
                    Some(tag) => {
                        let core = if tag.is_yaml_core_schema() {
                            Some(tag.suffix())
                        } else {
                            None
                        };
                        match core {
                            Some("str") => Scalar::Str(text.to_string()),
                            Some("null") | Some("bool") | Some("int") | Some("float") => {
                                let v = resolve_plain(&text);
                                let ok = matches!(
                                    (core, &v),
                                    (Some("null"), Scalar::Null)
                                        | (Some("bool"), Scalar::Bool(_))
                                        | (Some("int"), Scalar::Int(_))
                                        | (Some("float"), Scalar::Float(_) | Scalar::Int(_))
                                );
                                if !ok {
                                    return Err(DocError::UnsupportedTag {
                                        loc,
                                        tag: format!(
                                            "!!{} on {}",
                                            core.unwrap_or(""),
                                            quote_short(&text)
                                        ),
                                    });
                                }
                                match (core, v) {
                                    (Some("float"), Scalar::Int(i)) => Scalar::Float(i as f64),
                                    (_, v) => v,
                                }
                            }
                            _ => {
                                return Err(DocError::UnsupportedTag {
                                    loc,
                                    tag: format!("{}{}", tag.handle(), tag.suffix()),
                                });
                            }
                        }
                    }
                    None if style == Style::Plain => resolve_plain(&text),
                    None => Scalar::Str(text.to_string()),
                };
                let node = Node::Scalar {
                    value,
                    text: text.into_owned(),
                    style,
                    loc,
                };
                if anchor != 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push(node);
            }
            Event::Alias(id) => {
                let node = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or(DocError::UnknownAlias { loc: loc_of(span) })?;
                self.push(node);
            }
            Event::SequenceStart(_, anchor, tag) => {
                check_collection_tag(tag.as_deref(), "seq", span)?;
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    loc: loc_of(span),
                    anchor,
                });
            }
            Event::MappingStart(_, anchor, tag) => {
                check_collection_tag(tag.as_deref(), "map", span)?;
                self.stack.push(Frame::Map {
                    entries: Vec::new(),
                    pending_key: None,
                    loc: loc_of(span),
                    anchor,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { items, loc, anchor }) => (Node::Seq { items, loc }, anchor),
                    Some(Frame::Map {
                        entries,
                        loc,
                        anchor,
                        ..
                    }) => (Node::Map { entries, loc }, anchor),
                    None => return Ok(()),
                };
                if anchor != 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push(node);
            }
            Event::UnresolvedAlias(_) => return Err(DocError::UnknownAlias { loc: loc_of(span) }),
            _ => {}
        }
        Ok(())
    }

    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

fn check_collection_tag(
    tag: Option<&granit_parser::Tag>,
    expected: &str,
    span: &Span,
) -> Result<(), DocError> {
    match tag {
        None => Ok(()),
        Some(t) if t.is_yaml_core_schema() && t.suffix() == expected => Ok(()),
        Some(t) => Err(DocError::UnsupportedTag {
            loc: loc_of(span),
            tag: format!("{}{}", t.handle(), t.suffix()),
        }),
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
pub fn resolve_plain(s: &str) -> Scalar {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        _ => {}
    }
    let bytes = s.as_bytes();
    let (neg, digits) = match bytes.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
        if let Ok(i) = s.parse::<i64>() {
            return Scalar::Int(i);
        }
        // Too large for i64: keep it a float-ish number so type checks call it out.
        if let Ok(f) = s.parse::<f64>() {
            return Scalar::Float(f);
        }
    }
    if !neg && s.len() > 2 {
        let radix = match &s[..2] {
            "0x" => Some(16),
            "0o" => Some(8),
            _ => None,
        };
        if let Some(r) = radix
            && let Ok(i) = i64::from_str_radix(&s[2..], r)
        {
            return Scalar::Int(i);
        }
    }
    if is_core_float(s)
        && let Ok(f) = s.parse::<f64>()
    {
        return Scalar::Float(f);
    }
    Scalar::Str(s.to_owned())
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_core_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let f = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - f;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        let e = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == e {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_schema() {
        assert_eq!(resolve_plain("yes"), Scalar::Str("yes".into()));
        assert_eq!(resolve_plain("true"), Scalar::Bool(true));
        assert_eq!(resolve_plain("~"), Scalar::Null);
        assert_eq!(resolve_plain("22"), Scalar::Int(22));
        assert_eq!(resolve_plain("-3"), Scalar::Int(-3));
        assert_eq!(resolve_plain("0x1f"), Scalar::Int(31));
        assert_eq!(resolve_plain("1.5"), Scalar::Float(1.5));
        assert_eq!(resolve_plain("1e3"), Scalar::Float(1000.0));
        assert_eq!(resolve_plain("10.0.0.1"), Scalar::Str("10.0.0.1".into()));
        assert_eq!(resolve_plain("15s"), Scalar::Str("15s".into()));
    }

    #[test]
    fn locations_and_styles() {
        let text = "a: 1\nlist:\n  - x\n  - 'y'\nb: yes\n";
        let e = parse_flat_mapping(text).unwrap();
        assert_eq!(e[0].key, "a");
        assert_eq!(e[0].key_loc, Loc { line: 1, column: 1 });
        assert_eq!(e[0].value.loc(), Loc { line: 1, column: 4 });
        let Node::Seq { items, .. } = &e[1].value else {
            panic!()
        };
        assert_eq!(items[1].loc(), Loc { line: 4, column: 5 });
        assert!(!items[1].is_yaml11_bool());
        assert!(e[2].value.is_yaml11_bool());
    }

    #[test]
    fn document_errors() {
        assert_eq!(parse_flat_mapping(""), Err(vec![DocError::Empty]));
        assert_eq!(
            parse_flat_mapping("# only a comment\n"),
            Err(vec![DocError::Empty])
        );
        assert!(matches!(
            parse_flat_mapping("- a\n").unwrap_err()[0],
            DocError::NotAMapping { .. }
        ));
        assert!(matches!(
            parse_flat_mapping("a: 1\na: 2\n").unwrap_err()[0],
            DocError::DuplicateKey {
                first: Loc { line: 1, column: 1 },
                ..
            }
        ));
        assert!(matches!(
            parse_flat_mapping("a: [\n").unwrap_err()[0],
            DocError::Syntax { .. }
        ));
        let anchors = parse_flat_mapping("a: &x [1, 2]\nb: *x\n").unwrap();
        assert_eq!(anchors[1].value.to_json(), serde_json::json!([1, 2]));
    }
}
