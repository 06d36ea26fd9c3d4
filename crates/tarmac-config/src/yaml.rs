//! A small span-aware YAML reader for `config.yaml`.
//!
//! `config.yaml` is a flat mapping of parameter names to scalars, lists and maps. We read it
//! with granit-parser's event stream (the parser underneath serde-saphyr) so that every key and
//! value keeps its line and column, and so that we know how each scalar was written: a plain
//! `yes` is not the same thing as a quoted `"yes"`. Plain scalars are resolved with the YAML 1.2
//! core schema (`yes`/`no`/`on`/`off` stay strings); callers flag YAML 1.1 booleans themselves.
//!
//! Anchors (`&name`) and aliases (`*name`) are read, but their expansion has a budget for the
//! whole document ([`MAX_ALIAS_USES`], [`MAX_ALIAS_NODES`], [`MAX_ALIAS_BYTES`]): a few hundred
//! bytes of nested aliases would otherwise expand into gigabytes. Each entry records which
//! top-level keys its aliases came from, so a secret reached through an alias can be masked.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde_saphyr::granit_parser::{self, Event, Parser, ScalarStyle, Span, StructureStyle};

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
    /// The kind alone, for messages about secret values: `a string`, `an integer`, `null`.
    pub fn kind(&self) -> String {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::Int(_) => "an integer",
            Scalar::Float(_) => "a float",
            Scalar::Str(_) => "a string",
        }
        .to_owned()
    }

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

/// At most this many `*alias` uses in one config.yaml.
pub const MAX_ALIAS_USES: usize = 100;
/// At most this many nodes (scalars, lists, mappings) produced through aliases in one
/// config.yaml, counting every copy.
pub const MAX_ALIAS_NODES: usize = 10_000;
/// At most this many bytes of scalar text produced through aliases in one config.yaml.
pub const MAX_ALIAS_BYTES: usize = 1 << 20;

/// One top-level `key: value` of config.yaml.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_loc: Loc,
    pub value: Node,
    /// Where the value is written: character offsets `start..end` in the source text (an
    /// anchor or tag before the value is inside; an aliased value is the `*name` token).
    pub value_span: (usize, usize),
    /// Top-level keys whose anchors this value uses through aliases (directly, or through
    /// anchors that themselves use aliases). Empty when the value uses no alias.
    pub alias_sources: BTreeSet<String>,
}

/// Which alias budget a config.yaml exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasLimit {
    /// More than [`MAX_ALIAS_USES`] aliases.
    Uses,
    /// More than [`MAX_ALIAS_NODES`] nodes produced through aliases.
    Nodes,
    /// More than [`MAX_ALIAS_BYTES`] bytes of text produced through aliases.
    Bytes,
}

impl AliasLimit {
    /// `more than 10000 values`, for messages.
    pub fn describe(self) -> String {
        match self {
            AliasLimit::Uses => format!("more than {MAX_ALIAS_USES} aliases"),
            AliasLimit::Nodes => {
                format!("more than {MAX_ALIAS_NODES} values produced through aliases")
            }
            AliasLimit::Bytes => format!(
                "more than {} KiB of text produced through aliases",
                MAX_ALIAS_BYTES / 1024
            ),
        }
    }
}

/// Alias expansion stopped: the alias at `loc`, in the value of `key` (`None` when the
/// alias is not inside a top-level value), went over `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasBudget {
    pub key: Option<String>,
    pub loc: Loc,
    pub limit: AliasLimit,
}

impl fmt::Display for AliasBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "the alias at line {} in `{k}`", self.loc.line)?,
            None => write!(f, "the alias at line {}", self.loc.line)?,
        }
        write!(
            f,
            " takes config.yaml past {} (the limit for the whole file)",
            self.limit.describe()
        )
    }
}

/// Why config.yaml could not be read: a document error, or an alias budget exceeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    Doc(DocError),
    Alias(AliasBudget),
}

impl From<DocError> for ReadError {
    fn from(e: DocError) -> Self {
        ReadError::Doc(e)
    }
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

/// Parse a whole config.yaml text into its top-level entries, in file order. An exceeded
/// alias budget is reported as [`DocError::Syntax`] (its message names the key and line);
/// use [`read_flat_mapping`] to tell it apart.
pub fn parse_flat_mapping(text: &str) -> Result<Vec<Entry>, Vec<DocError>> {
    read_flat_mapping(text).map_err(|errs| {
        errs.into_iter()
            .map(|e| match e {
                ReadError::Doc(d) => d,
                ReadError::Alias(a) => DocError::Syntax {
                    loc: a.loc,
                    message: format!(
                        "{a}; write the values out instead of using anchors (&name) and aliases (*name)"
                    ),
                },
            })
            .collect()
    })
}

/// [`parse_flat_mapping`], with an exceeded alias budget as its own error.
pub fn read_flat_mapping(text: &str) -> Result<Vec<Entry>, Vec<ReadError>> {
    let (root, tops) = read_document(text).map_err(|e| vec![e])?;
    let Some(root) = root else {
        return Err(vec![DocError::Empty.into()]);
    };
    let entries = match root {
        Node::Map { entries, .. } => entries,
        Node::Scalar {
            value: Scalar::Null,
            ..
        } => return Err(vec![DocError::Empty.into()]),
        other => {
            return Err(vec![
                DocError::NotAMapping {
                    loc: other.loc(),
                    found: other.describe(),
                }
                .into(),
            ]);
        }
    };
    let mut out = Vec::with_capacity(entries.len());
    let mut errors = Vec::new();
    let mut seen: HashMap<String, Loc> = HashMap::new();
    for ((k, v), top) in entries.into_iter().zip(
        tops.into_iter()
            .map(Some)
            .chain(std::iter::repeat_with(|| None)),
    ) {
        let top = top.unwrap_or_default();
        let key = match &k {
            Node::Scalar {
                value: Scalar::Str(s),
                ..
            } => s.clone(),
            other => {
                errors.push(
                    DocError::BadKey {
                        loc: other.loc(),
                        found: other.describe(),
                    }
                    .into(),
                );
                continue;
            }
        };
        if let Some(first) = seen.get(&key) {
            errors.push(
                DocError::DuplicateKey {
                    key,
                    loc: k.loc(),
                    first: *first,
                }
                .into(),
            );
            continue;
        }
        seen.insert(key.clone(), k.loc());
        let mut alias_sources = top.alias_sources;
        alias_sources.remove(&key);
        out.push(Entry {
            key,
            key_loc: k.loc(),
            value: v,
            value_span: top.span,
            alias_sources,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Parse one YAML document into a node tree (`None` when the stream holds no document).
/// Alias expansion has the same budget as in [`read_flat_mapping`]; going over it is a
/// [`DocError::Syntax`].
pub fn parse_single_document(text: &str) -> Result<Option<Node>, DocError> {
    read_document(text)
        .map(|(root, _)| root)
        .map_err(|e| match e {
            ReadError::Doc(d) => d,
            ReadError::Alias(a) => DocError::Syntax {
                loc: a.loc,
                message: a.to_string(),
            },
        })
}

/// What the builder learnt about one value of the root mapping.
#[derive(Debug, Default)]
struct TopValue {
    span: (usize, usize),
    alias_sources: BTreeSet<String>,
}

fn read_document(text: &str) -> Result<(Option<Node>, Vec<TopValue>), ReadError> {
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
    Ok((b.root, b.tops))
}

enum Frame {
    Seq {
        items: Vec<Node>,
        loc: Loc,
        anchor: usize,
        flow: bool,
    },
    Map {
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
        loc: Loc,
        anchor: usize,
        flow: bool,
    },
}

/// An anchored node and what copying it costs.
struct Anchored {
    node: Node,
    nodes: usize,
    bytes: usize,
    /// The top-level key it was defined in, plus the sources of the aliases used so far in
    /// that key's value (an over-approximation: safe for masking).
    sources: BTreeSet<String>,
}

/// Number of nodes and bytes of scalar text in `node`.
fn weight(node: &Node) -> (usize, usize) {
    match node {
        Node::Scalar { text, .. } => (1, text.len()),
        Node::Seq { items, .. } => items.iter().fold((1, 0), |(n, b), i| {
            let (n2, b2) = weight(i);
            (n + n2, b + b2)
        }),
        Node::Map { entries, .. } => entries.iter().fold((1, 0), |(n, b), (k, v)| {
            let (n1, b1) = weight(k);
            let (n2, b2) = weight(v);
            (n + n1 + n2, b + b1 + b2)
        }),
    }
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Anchored>,
    root: Option<Node>,
    documents: usize,
    alias_uses: usize,
    alias_nodes: usize,
    alias_bytes: usize,
    /// One per completed value of the root mapping, in order.
    tops: Vec<TopValue>,
    /// The value of the root mapping being read: where it started, the furthest end seen.
    cur: Option<TopValue>,
}

impl Builder {
    /// True when the next node pushed is a value of the root mapping.
    fn at_top_value(&self) -> bool {
        matches!(
            self.stack.as_slice(),
            [Frame::Map {
                pending_key: Some(_),
                ..
            }]
        )
    }

    /// The key of the root mapping whose value is being read.
    fn top_key(&self) -> Option<String> {
        match self.stack.first() {
            Some(Frame::Map {
                pending_key: Some(k),
                ..
            }) => Some(k.key_text()),
            _ => None,
        }
    }

    /// A node (or collection) starts at `span`.
    fn start(&mut self, span: &Span) {
        if self.at_top_value() {
            self.cur = Some(TopValue {
                span: (span.start.index(), span.end.index()),
                alias_sources: BTreeSet::new(),
            });
        }
        self.extend(span);
    }

    fn extend(&mut self, span: &Span) {
        if let Some(c) = &mut self.cur {
            c.span.1 = c.span.1.max(span.end.index());
        }
    }

    fn register_anchor(&mut self, anchor: usize, node: &Node) {
        if anchor == 0 {
            return;
        }
        let (nodes, bytes) = weight(node);
        let mut sources: BTreeSet<String> = self.top_key().into_iter().collect();
        if let Some(c) = &self.cur {
            sources.extend(c.alias_sources.iter().cloned());
        }
        self.anchors.insert(
            anchor,
            Anchored {
                node: node.clone(),
                nodes,
                bytes,
                sources,
            },
        );
    }

    fn alias(&mut self, id: usize, span: &Span) -> Result<Node, ReadError> {
        let loc = loc_of(span);
        let a = self
            .anchors
            .get(&id)
            .ok_or(DocError::UnknownAlias { loc })?;
        self.alias_uses += 1;
        self.alias_nodes = self.alias_nodes.saturating_add(a.nodes);
        self.alias_bytes = self.alias_bytes.saturating_add(a.bytes);
        let limit = if self.alias_uses > MAX_ALIAS_USES {
            Some(AliasLimit::Uses)
        } else if self.alias_nodes > MAX_ALIAS_NODES {
            Some(AliasLimit::Nodes)
        } else if self.alias_bytes > MAX_ALIAS_BYTES {
            Some(AliasLimit::Bytes)
        } else {
            None
        };
        if let Some(limit) = limit {
            return Err(ReadError::Alias(AliasBudget {
                key: self.top_key(),
                loc,
                limit,
            }));
        }
        let node = a.node.clone();
        let sources = a.sources.clone();
        if let Some(c) = &mut self.cur {
            c.alias_sources.extend(sources);
        }
        Ok(node)
    }

    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<(), ReadError> {
        match event {
            Event::DocumentStart(..) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(DocError::MultipleDocuments { loc: loc_of(span) }.into());
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
                                        // No value in the message: it may be a secret.
                                        tag: format!(
                                            "!!{0} on a value that is not a YAML 1.2 {0}",
                                            core.unwrap_or("")
                                        ),
                                    }
                                    .into());
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
                                }
                                .into());
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
                self.start(span);
                self.register_anchor(anchor, &node);
                self.push(node);
            }
            Event::Alias(id) => {
                self.start(span);
                let node = self.alias(id, span)?;
                self.push(node);
            }
            Event::SequenceStart(style, anchor, tag) => {
                check_collection_tag(tag.as_deref(), "seq", span)?;
                self.start(span);
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    loc: loc_of(span),
                    anchor,
                    flow: style == StructureStyle::Flow,
                });
            }
            Event::MappingStart(style, anchor, tag) => {
                check_collection_tag(tag.as_deref(), "map", span)?;
                self.start(span);
                self.stack.push(Frame::Map {
                    entries: Vec::new(),
                    pending_key: None,
                    loc: loc_of(span),
                    anchor,
                    flow: style == StructureStyle::Flow,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor, flow) = match self.stack.pop() {
                    Some(Frame::Seq {
                        items,
                        loc,
                        anchor,
                        flow,
                    }) => (Node::Seq { items, loc }, anchor, flow),
                    Some(Frame::Map {
                        entries,
                        loc,
                        anchor,
                        flow,
                        ..
                    }) => (Node::Map { entries, loc }, anchor, flow),
                    None => return Ok(()),
                };
                // A block collection's end event sits where the next token starts.
                if flow {
                    self.extend(span);
                }
                self.register_anchor(anchor, &node);
                self.push(node);
            }
            Event::UnresolvedAlias(_) => {
                return Err(DocError::UnknownAlias { loc: loc_of(span) }.into());
            }
            _ => {}
        }
        Ok(())
    }

    fn push(&mut self, node: Node) {
        if self.at_top_value() {
            self.tops.push(self.cur.take().unwrap_or_default());
        }
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

    /// The "billion laughs" document: 341 bytes, nine levels of aliases, 9^10 scalars.
    fn alias_bomb() -> String {
        let mut text = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
        for w in names.windows(2) {
            let refs = vec![format!("*{}", w[0]); 9].join(",");
            text.push_str(&format!("{}: &{} [{refs}]\n", w[1], w[1]));
        }
        text
    }

    #[test]
    fn alias_bomb_stops_at_the_budget() {
        let text = alias_bomb();
        assert_eq!(text.len(), 341);
        let started = std::time::Instant::now();
        let err = read_flat_mapping(&text).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
        assert_eq!(
            err,
            vec![ReadError::Alias(AliasBudget {
                key: Some("e".into()),
                loc: Loc { line: 5, column: 8 },
                limit: AliasLimit::Nodes,
            })]
        );
        assert_eq!(
            parse_flat_mapping(&text).unwrap_err(),
            vec![DocError::Syntax {
                loc: Loc { line: 5, column: 8 },
                message: "the alias at line 5 in `e` takes config.yaml past more than 10000 values produced through aliases (the limit for the whole file); write the values out instead of using anchors (&name) and aliases (*name)".into(),
            }]
        );
    }

    #[test]
    fn deep_anchor_chain_stops_at_the_number_of_aliases() {
        let mut text = String::from("k0: &k0 x\n");
        for i in 1..=150 {
            text.push_str(&format!("k{i}: &k{i} [*k{}]\n", i - 1));
        }
        let err = read_flat_mapping(&text).unwrap_err();
        assert_eq!(
            err,
            vec![ReadError::Alias(AliasBudget {
                key: Some("k101".into()),
                loc: Loc {
                    line: 102,
                    column: 14
                },
                limit: AliasLimit::Uses,
            })]
        );
    }

    #[test]
    fn big_anchored_text_is_bounded_in_bytes() {
        let big = "x".repeat(300 * 1024);
        let text = format!("a: &a {big}\nb: [*a, *a, *a, *a]\n");
        let err = read_flat_mapping(&text).unwrap_err();
        assert!(
            matches!(&err[..], [ReadError::Alias(AliasBudget { key: Some(k), limit: AliasLimit::Bytes, .. })] if k == "b"),
            "{err:?}"
        );
    }

    #[test]
    fn single_alias_and_its_sources() {
        let text = "a: &p [1, 2]\nb: *p\nc: {x: &q s, y: [*p]}\nd: *q\n";
        let e = read_flat_mapping(text).unwrap();
        assert_eq!(e[1].value.to_json(), serde_json::json!([1, 2]));
        assert_eq!(e[3].value.to_json(), serde_json::json!("s"));
        assert!(e[0].alias_sources.is_empty());
        assert_eq!(e[1].alias_sources, BTreeSet::from(["a".to_owned()]));
        assert_eq!(e[2].alias_sources, BTreeSet::from(["a".to_owned()]));
        // `q` was defined in c before c used the alias from a.
        assert_eq!(e[3].alias_sources, BTreeSet::from(["c".to_owned()]));
        let e = read_flat_mapping("a: &p s\nc: &q [*p]\nd: *q\n").unwrap();
        assert_eq!(
            e[2].alias_sources,
            BTreeSet::from(["a".to_owned(), "c".to_owned()])
        );
    }

    #[test]
    fn value_spans() {
        let text = "a: &p hunter2\nlist:\n  - x\n  - 'y'\nm: {k: v, l: [1, 2]}\nb: |\n  one\n  two\nc: 1\n";
        let e = read_flat_mapping(text).unwrap();
        let chars: Vec<char> = text.chars().collect();
        let span = |i: usize| -> String {
            let (s, t) = e[i].value_span;
            chars[s..t].iter().collect()
        };
        assert_eq!(span(0), "hunter2");
        assert_eq!(span(1), "- x\n  - 'y'");
        assert_eq!(span(2), "{k: v, l: [1, 2]}");
        assert_eq!(span(3), "one\n  two\n");
        assert_eq!(span(4), "1");
    }
}
