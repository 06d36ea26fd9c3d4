//! Parameter types and the checks that turn a YAML node into a typed, normalised JSON value.
//!
//! Every check returns either the normalised value or a [`Problem`]: a message in the style of
//! DC/OS gen ("Must be between 1 and 65535 inclusive"), a hint, and the location of the node
//! at fault (an item inside a list points at that item).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value as Json;
use tarmac_types::HostAddr;

use crate::yaml::{Loc, Node, Scalar, Style, quote_short};

/// A parameter type, as declared in a schema file.
#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    /// One line of text unless `multiline`.
    String {
        multiline: bool,
        min_length: usize,
        max_length: Option<usize>,
    },
    /// A whole number in `min..=max`.
    Int {
        min: i64,
        max: i64,
    },
    Bool,
    /// One of a fixed set of strings.
    Enum(Vec<String>),
    /// An IPv4 or IPv6 address.
    Ip,
    /// An address or hostname with an optional `:port` ([`HostAddr`]).
    Host,
    /// A URL with one of `schemes`, never ending in `/`.
    Url {
        schemes: Vec<String>,
    },
    /// A filesystem path.
    Path {
        absolute: bool,
    },
    /// `90s`, `10m`, `1h30m` or a bare number of seconds; normalised to e.g. `1m30s`.
    Duration {
        min: Option<Duration>,
        max: Option<Duration>,
    },
    /// `512MiB`, `2GB` or a bare number of bytes; normalised to an integer.
    Bytes {
        min: Option<u64>,
        max: Option<u64>,
    },
    /// A list, optionally of typed items.
    List {
        items: Option<Box<Type>>,
        unique: bool,
        min_items: usize,
        max_items: Option<usize>,
    },
    /// A mapping of string keys to any values.
    Dict,
}

impl Type {
    pub fn port() -> Type {
        Type::Int { min: 1, max: 65535 }
    }

    /// A short name for messages and docs (`port`, `host_list`, …).
    pub fn name(&self) -> String {
        match self {
            Type::String { .. } => "string".into(),
            Type::Int { min: 1, max: 65535 } => "port".into(),
            Type::Int { .. } => "int".into(),
            Type::Bool => "bool".into(),
            Type::Enum(_) => "enum".into(),
            Type::Ip => "ip".into(),
            Type::Host => "host".into(),
            Type::Url { .. } => "url".into(),
            Type::Path { .. } => "path".into(),
            Type::Duration { .. } => "duration".into(),
            Type::Bytes { .. } => "bytes".into(),
            Type::List { items: Some(t), .. } if **t == Type::Ip => "ip_list".into(),
            Type::List { items: Some(t), .. } if **t == Type::Host => "host_list".into(),
            Type::List { .. } => "list".into(),
            Type::Dict => "dict".into(),
        }
    }
}

/// Why a value does not fit its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    pub hint: Option<String>,
    pub loc: Loc,
}

impl Problem {
    fn new(loc: Loc, message: impl Into<String>) -> Self {
        Problem {
            message: message.into(),
            hint: None,
            loc,
        }
    }
    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The result of a successful check: the normalised value plus any warnings.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub value: Json,
    pub warnings: Vec<Problem>,
}

/// Check `node` against `ty` and normalise it.
pub fn check(ty: &Type, node: &Node) -> Result<Checked, Problem> {
    check_with(ty, node, false)
}

/// [`check`] for a secret parameter: no message, hint or warning shows any part of the value.
pub fn check_secret(ty: &Type, node: &Node) -> Result<Checked, Problem> {
    check_with(ty, node, true)
}

fn check_with(ty: &Type, node: &Node, secret: bool) -> Result<Checked, Problem> {
    let mut cx = Cx {
        secret,
        warnings: Vec::new(),
    };
    let value = check_inner(ty, node, &mut cx)?;
    Ok(Checked {
        value,
        warnings: cx.warnings,
    })
}

/// What a check needs besides the type and the node.
struct Cx {
    /// The value is secret: messages name its kind, never its text.
    secret: bool,
    warnings: Vec<Problem>,
}

impl Cx {
    /// How to show a scalar in a message: `a string ("foo")`, or `a string` when secret.
    fn describe(&self, s: &Scalar) -> String {
        if self.secret { s.kind() } else { s.describe() }
    }

    fn describe_node(&self, n: &Node) -> String {
        match n {
            Node::Scalar { value, .. } => self.describe(value),
            other => other.describe(),
        }
    }
}

/// How a control character is named in messages.
fn control_name(c: char) -> String {
    match c {
        '\n' => "a newline (\\n)".into(),
        '\r' => "a carriage return (\\r)".into(),
        '\t' => "a tab (\\t)".into(),
        '\0' => "a NUL byte (\\0)".into(),
        c => format!("the control character U+{:04X}", u32::from(c)),
    }
}

/// Refuse C0 and C1 control characters and DEL in `s`, except those in `allowed`.
fn check_controls(s: &str, loc: Loc, allowed: &[char]) -> Result<(), Problem> {
    let Some((i, c)) = s
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && !allowed.contains(c))
    else {
        return Ok(());
    };
    let hint = if allowed.contains(&'\n') {
        "remove it; only newlines and tabs may appear in this value"
    } else {
        "remove it; the value must be one line of printable text"
    };
    let what = if c == '\n' || c == '\r' {
        "Must be a single line"
    } else {
        "Must not contain control characters"
    };
    Err(Problem::new(
        loc,
        format!("{what}: found {} at character {}", control_name(c), i + 1),
    )
    .hint(hint))
}

fn null_problem(loc: Loc) -> Problem {
    Problem::new(loc, "Must not be empty (null)")
        .hint("give a value, or remove the key to use the default")
}

fn expect_scalar<'a>(
    node: &'a Node,
    what: &str,
) -> Result<(&'a Scalar, &'a str, Style, Loc), Problem> {
    match node {
        Node::Scalar {
            value: Scalar::Null,
            loc,
            ..
        } => Err(null_problem(*loc)),
        Node::Scalar {
            value,
            text,
            style,
            loc,
        } => Ok((value, text, *style, *loc)),
        other => Err(Problem::new(
            other.loc(),
            format!("Must be {what}, got {}", other.describe()),
        )),
    }
}

/// Scalars that are plain text: strings, and (for string-like types) nothing else.
fn expect_str<'a>(
    cx: &Cx,
    node: &'a Node,
    what: &str,
    example: &str,
) -> Result<(&'a str, Loc), Problem> {
    let (value, _, _, loc) = expect_scalar(node, what)?;
    match value {
        Scalar::Str(s) => Ok((s, loc)),
        other => Err(
            Problem::new(loc, format!("Must be {what}, got {}", cx.describe(other)))
                .hint(format!("quote the value, e.g. {example}")),
        ),
    }
}

fn check_inner(ty: &Type, node: &Node, cx: &mut Cx) -> Result<Json, Problem> {
    // Every string of every type: no control characters (a multi-line string may hold
    // newlines and tabs). Lists check their items, dicts every key and string inside.
    if let Node::Scalar {
        value: Scalar::Str(s),
        loc,
        ..
    } = node
    {
        let allowed: &[char] = match ty {
            Type::String {
                multiline: true, ..
            } => &['\n', '\t'],
            _ => &[],
        };
        check_controls(s, *loc, allowed)?;
    }
    match ty {
        Type::String {
            min_length,
            max_length,
            ..
        } => {
            let (s, loc) = expect_str(cx, node, "a string", "\"my-cluster\"")?;
            let n = s.chars().count();
            if n < *min_length {
                return Err(if *min_length == 1 {
                    Problem::new(loc, "Must not be empty")
                } else {
                    Problem::new(
                        loc,
                        format!("Must be at least {min_length} characters long"),
                    )
                });
            }
            if let Some(max) = max_length
                && n > *max
            {
                return Err(Problem::new(
                    loc,
                    format!("Must be at most {max} characters long"),
                ));
            }
            if node.is_yaml11_bool() {
                cx.warnings.push(if cx.secret {
                    Problem::new(
                        loc,
                        "The value is a YAML 1.1 boolean word, read as a string (YAML 1.2), not as a boolean",
                    )
                    .hint("write it in quotes to make this explicit")
                } else {
                    Problem::new(
                        loc,
                        format!("`{s}` is read as the string {s:?} (YAML 1.2), not as a boolean"),
                    )
                    .hint(format!("write \"{s}\" in quotes to make this explicit"))
                });
            }
            Ok(Json::String(s.to_owned()))
        }
        Type::Int { min, max } => {
            let (value, _, style, loc) = expect_scalar(node, "an integer")?;
            let i = match value {
                Scalar::Int(i) => *i,
                Scalar::Str(s) if style == Style::Quoted && s.trim().parse::<i64>().is_ok() => {
                    return Err(if cx.secret {
                        Problem::new(loc, "Must be an integer, got a string")
                            .hint("write the number without quotes")
                    } else {
                        Problem::new(
                            loc,
                            format!("Must be an integer, got a string ({})", quote_short(s)),
                        )
                        .hint(format!("write {} without quotes", s.trim()))
                    });
                }
                other => {
                    return Err(Problem::new(
                        loc,
                        format!("Must be an integer, got {}", cx.describe(other)),
                    ));
                }
            };
            if i < *min || i > *max {
                return Err(Problem::new(
                    loc,
                    format!("Must be between {min} and {max} inclusive"),
                ));
            }
            Ok(Json::from(i))
        }
        Type::Bool => {
            let (value, _, _, loc) = expect_scalar(node, "true or false")?;
            match value {
                Scalar::Bool(b) => Ok(Json::Bool(*b)),
                Scalar::Str(_) if node.is_yaml11_bool() && cx.secret => Err(Problem::new(
                    loc,
                    "Must be true or false, got a YAML 1.1 boolean word, which Tarmac (YAML 1.2) reads as a string",
                )
                .hint("write true or false")),
                Scalar::Str(s) if node.is_yaml11_bool() => Err(Problem::new(
                    loc,
                    format!(
                        "Must be true or false, got `{s}`: a YAML 1.1 boolean, which Tarmac (YAML 1.2) reads as the string {s:?}"
                    ),
                )
                .hint("write true or false")),
                other => Err(Problem::new(
                    loc,
                    format!("Must be true or false, got {}", cx.describe(other)),
                )),
            }
        }
        Type::Enum(values) => {
            let (value, text, _, loc) = expect_scalar(node, "a string")?;
            let s = match value {
                Scalar::Str(s) => s.as_str(),
                _ => text,
            };
            if matches!(value, Scalar::Str(_)) && values.iter().any(|v| v == s) {
                Ok(Json::String(s.to_owned()))
            } else {
                let list = values
                    .iter()
                    .map(|v| format!("'{v}'"))
                    .collect::<Vec<_>>()
                    .join(", ");
                Err(Problem::new(
                    loc,
                    if cx.secret {
                        format!("Must be one of {list}.")
                    } else {
                        format!("Must be one of {list}. Got '{s}'.")
                    },
                ))
            }
        }
        Type::Ip => {
            let (s, loc) = expect_str(cx, node, "an IP address", "10.0.0.1")?;
            let ip: IpAddr = s.trim().parse().map_err(|_| {
                Problem::new(
                    loc,
                    if cx.secret {
                        "Invalid IP address".to_owned()
                    } else {
                        format!("Invalid IP address: {s}")
                    },
                )
            })?;
            Ok(Json::String(ip.to_string()))
        }
        Type::Host => {
            let (s, loc) = expect_str(cx, node, "a host address", "10.0.0.1")?;
            let h: HostAddr = s.parse().map_err(|e: tarmac_types::HostAddrError| {
                if cx.secret {
                    Problem::new(loc, "Invalid host address").hint(
                        "an IPv4/IPv6 address or a hostname, optionally with :port (IPv6 as [addr]:port)",
                    )
                } else {
                    Problem::new(loc, format!("Invalid host address: {s}")).hint(e.to_string())
                }
            })?;
            Ok(Json::String(h.to_string()))
        }
        Type::Url { schemes } => {
            let url_hint =
                "Should be a url (http://example.com/bar or file:///path/to/local/cache)";
            let (s, loc) = match node {
                Node::Scalar {
                    value: Scalar::Null,
                    loc,
                    ..
                } => {
                    return Err(Problem::new(*loc, url_hint));
                }
                _ => expect_str(cx, node, "a URL", "http://10.0.0.1:8080")?,
            };
            // Control characters were refused above: url::Url::parse would silently drop
            // tabs and newlines (WHATWG), and the original text would reach the templates.
            if s.trim().len() <= 1 {
                return Err(Problem::new(loc, url_hint));
            }
            if s.ends_with('/') {
                return Err(
                    Problem::new(loc, "Must not end in a '/'").hint(if cx.secret {
                        "remove the trailing '/'".to_owned()
                    } else {
                        format!("write {}", s.trim_end_matches('/'))
                    }),
                );
            }
            let parsed = url::Url::parse(s).map_err(|e| {
                let m = if cx.secret {
                    format!("Invalid URL: {e}")
                } else {
                    format!("Invalid URL {}: {e}", quote_short(s))
                };
                Problem::new(loc, m).hint(url_hint)
            })?;
            if !schemes.is_empty() && !schemes.iter().any(|x| x == parsed.scheme()) {
                return Err(Problem::new(
                    loc,
                    format!(
                        "Unsupported URL scheme '{}': must be one of {}",
                        parsed.scheme(),
                        schemes.join(", ")
                    ),
                ));
            }
            if matches!(parsed.scheme(), "http" | "https") && parsed.host_str().is_none() {
                return Err(Problem::new(
                    loc,
                    if cx.secret {
                        "URL has no host".to_owned()
                    } else {
                        format!("URL {} has no host", quote_short(s))
                    },
                ));
            }
            if parsed.query().is_some() || parsed.fragment().is_some() {
                return Err(Problem::new(
                    loc,
                    "Must not contain a query (?…) or fragment (#…)",
                ));
            }
            // Store what the parser understood (scheme and host lower-cased, default port
            // dropped, path percent-encoded), without the '/' it adds to an empty path.
            let normal = parsed.as_str();
            let normal = match normal.strip_suffix('/') {
                Some(n) if parsed.path() == "/" => n,
                _ => normal,
            };
            Ok(Json::String(normal.to_owned()))
        }
        Type::Path { absolute } => {
            let (s, loc) = expect_str(cx, node, "a path", "/etc/tarmac/x")?;
            if s.is_empty() {
                return Err(Problem::new(loc, "Must not be empty"));
            }
            if *absolute && !s.starts_with('/') {
                return Err(Problem::new(loc, "Must be an absolute filesystem path"));
            }
            Ok(Json::String(s.to_owned()))
        }
        Type::Duration { min, max } => {
            let (value, text, _, loc) = expect_scalar(node, "a duration")?;
            let d = match value {
                Scalar::Int(i) if *i >= 0 => Duration::from_secs(i.unsigned_abs()),
                Scalar::Str(s) => parse_duration(s).map_err(|m| {
                    let m = if cx.secret {
                        "Invalid duration".to_owned()
                    } else {
                        m
                    };
                    Problem::new(loc, m).hint("write a number with a unit, e.g. 90s, 10m, 1h30m")
                })?,
                _ => {
                    let m = if cx.secret {
                        "Invalid duration: must not be negative or fractional".to_owned()
                    } else {
                        format!("Invalid duration {text}: must not be negative or fractional")
                    };
                    return Err(Problem::new(loc, m)
                        .hint("write a number with a unit, e.g. 90s, 10m, 1h30m, 500ms"));
                }
            };
            if let Some(m) = min
                && d < *m
            {
                return Err(Problem::new(
                    loc,
                    format!("Must be at least {}", format_duration(*m)),
                ));
            }
            if let Some(m) = max
                && d > *m
            {
                return Err(Problem::new(
                    loc,
                    format!("Must be at most {}", format_duration(*m)),
                ));
            }
            Ok(Json::String(format_duration(d)))
        }
        Type::Bytes { min, max } => {
            let (value, text, _, loc) = expect_scalar(node, "a byte size")?;
            let n = match value {
                Scalar::Int(i) if *i >= 0 => i.unsigned_abs(),
                Scalar::Str(s) => parse_bytes(s).map_err(|m| {
                    let m = if cx.secret {
                        "Invalid byte size".to_owned()
                    } else {
                        m
                    };
                    Problem::new(loc, m).hint("write e.g. 512MiB, 2GiB, 8GB or a number of bytes")
                })?,
                Scalar::Float(_) if cx.secret => {
                    return Err(Problem::new(loc, "Fractional bytes."));
                }
                Scalar::Float(f) => {
                    return Err(Problem::new(loc, format!("Fractional bytes: {f}.")));
                }
                _ => {
                    let m = if cx.secret {
                        "Invalid byte size".to_owned()
                    } else {
                        format!("Invalid byte size: {text}")
                    };
                    return Err(Problem::new(loc, m)
                        .hint("write e.g. 512MiB, 2GiB, 8GB or a number of bytes"));
                }
            };
            if let Some(m) = min
                && n < *m
            {
                return Err(Problem::new(loc, format!("Must be at least {m} bytes")));
            }
            if let Some(m) = max
                && n > *m
            {
                return Err(Problem::new(loc, format!("Must be at most {m} bytes")));
            }
            Ok(Json::from(n))
        }
        Type::List {
            items,
            unique,
            min_items,
            max_items,
        } => {
            let list = match node {
                Node::Seq { items, .. } => items,
                Node::Scalar {
                    value: Scalar::Null,
                    loc,
                    ..
                } => {
                    return Err(null_problem(*loc).hint("write [] for an empty list"));
                }
                other => {
                    let example = match items.as_deref() {
                        Some(Type::Ip | Type::Host) => "[10.0.0.1, 10.0.0.2]",
                        _ => "[a, b]",
                    };
                    return Err(Problem::new(
                        other.loc(),
                        format!("Must be a list, got {}", cx.describe_node(other)),
                    )
                    .hint(format!(
                        "write a YAML list: {example}, or one `- item` per line"
                    )));
                }
            };
            let loc = node.loc();
            let mut out = Vec::with_capacity(list.len());
            match items.as_deref() {
                Some(t @ (Type::Ip | Type::Host)) => {
                    // Collect every bad entry into one message, like gen's validate_ip_list.
                    let mut bad = Vec::new();
                    let mut first_bad: Option<(Loc, Option<String>)> = None;
                    for (i, item) in list.iter().enumerate() {
                        if let Node::Scalar {
                            value: Scalar::Str(s),
                            loc,
                            ..
                        } = item
                        {
                            check_controls(s, *loc, &[]).map_err(|mut p| {
                                p.message = format!("Item {}: {}", i + 1, p.message);
                                p
                            })?;
                        }
                        match check_inner(t, item, cx) {
                            Ok(v) => out.push(v),
                            Err(p) => {
                                let shown = match item {
                                    _ if cx.secret => format!("item {}", i + 1),
                                    Node::Scalar { text, .. } => text.escape_debug().to_string(),
                                    other => other.to_json().to_string(),
                                };
                                bad.push(if shown.is_empty() {
                                    "\"\"".to_owned()
                                } else {
                                    shown
                                });
                                first_bad.get_or_insert((p.loc, p.hint));
                            }
                        }
                    }
                    if let Some((bad_loc, _)) = first_bad {
                        let (what, hint) = if *t == Type::Ip {
                            ("IP addresses", "each entry must be an IPv4 or IPv6 address")
                        } else {
                            (
                                "host addresses",
                                "each entry is an IPv4/IPv6 address or a hostname, optionally with :port (IPv6 as [addr]:port)",
                            )
                        };
                        return Err(Problem::new(
                            bad_loc,
                            format!("Invalid {what} in list: {}", bad.join(", ")),
                        )
                        .hint(hint));
                    }
                    if *unique {
                        let keys: Vec<String> = out
                            .iter()
                            .map(|v| host_identity(v.as_str().unwrap_or_default()))
                            .collect();
                        check_unique(cx, &keys, list, &out)?;
                    }
                }
                Some(t) => {
                    for (i, item) in list.iter().enumerate() {
                        let v = check_inner(t, item, cx).map_err(|mut p| {
                            p.message = format!("Item {}: {}", i + 1, p.message);
                            p
                        })?;
                        out.push(v);
                    }
                    if *unique {
                        let keys: Vec<String> = out.iter().map(Json::to_string).collect();
                        check_unique(cx, &keys, list, &out)?;
                    }
                }
                None => {
                    for item in list {
                        out.push(node_json(cx, item)?);
                    }
                    if *unique {
                        let keys: Vec<String> = out.iter().map(Json::to_string).collect();
                        check_unique(cx, &keys, list, &out)?;
                    }
                }
            }
            if out.len() < *min_items {
                return Err(Problem::new(
                    loc,
                    if *min_items == 1 {
                        "Must not be empty".to_owned()
                    } else {
                        format!(
                            "Must have at least {min_items} entries, found {}",
                            out.len()
                        )
                    },
                ));
            }
            if let Some(max) = max_items
                && out.len() > *max
            {
                return Err(Problem::new(
                    loc,
                    format!("Must have at most {max} entries, found {}", out.len()),
                ));
            }
            Ok(Json::Array(out))
        }
        Type::Dict => match node {
            Node::Map { .. } => node_json(cx, node),
            Node::Scalar {
                value: Scalar::Null,
                loc,
                ..
            } => Err(null_problem(*loc).hint("write {} for an empty mapping")),
            other => Err(Problem::new(
                other.loc(),
                format!("Must be a mapping, got {}", cx.describe_node(other)),
            )
            .hint("write a YAML mapping: {key: value}, or one `key: value` per indented line")),
        },
    }
}

/// JSON of an untyped node; floats and nulls are allowed inside lists and dicts but
/// non-string keys and control characters are not.
fn node_json(cx: &Cx, node: &Node) -> Result<Json, Problem> {
    match node {
        Node::Map { entries, .. } => {
            let mut m = serde_json::Map::new();
            for (k, v) in entries {
                match k {
                    Node::Scalar {
                        value: Scalar::Str(s),
                        loc,
                        ..
                    } => {
                        check_controls(s, *loc, &[])?;
                        m.insert(s.clone(), node_json(cx, v)?);
                    }
                    other => {
                        return Err(Problem::new(
                            other.loc(),
                            format!(
                                "Mapping keys must be strings, got {}",
                                cx.describe_node(other)
                            ),
                        ));
                    }
                }
            }
            Ok(Json::Object(m))
        }
        Node::Seq { items, .. } => items
            .iter()
            .map(|i| node_json(cx, i))
            .collect::<Result<_, _>>(),
        Node::Scalar {
            value: Scalar::Str(s),
            loc,
            ..
        } => {
            check_controls(s, *loc, &[])?;
            Ok(Json::String(s.clone()))
        }
        scalar => Ok(scalar.to_json()),
    }
}

/// Two host entries are the same host when their host parts are equal (ports ignored;
/// IPv6 compared by value).
pub fn host_identity(entry: &str) -> String {
    match entry.parse::<HostAddr>() {
        Ok(h) => match h.ip() {
            Some(ip) => ip.to_string(),
            None => h.host().to_ascii_lowercase(),
        },
        Err(_) => entry.to_owned(),
    }
}

fn check_unique(cx: &Cx, keys: &[String], nodes: &[Node], values: &[Json]) -> Result<(), Problem> {
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut order = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let e = counts.entry(k.as_str()).or_insert((0, i));
        e.0 += 1;
        if e.0 == 2 {
            order.push((k.as_str(), i));
        }
    }
    if order.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = order
        .iter()
        .map(|(k, _)| {
            let (n, first) = counts[k];
            let shown = match values[first].as_str() {
                _ if cx.secret => format!("item {}", first + 1),
                Some(s) => s.to_owned(),
                None => values[first].to_string(),
            };
            format!("{shown} appears {n} times")
        })
        .collect();
    let loc = nodes[order[0].1].loc();
    Err(Problem::new(
        loc,
        format!("List cannot contain duplicates: {}", parts.join(", ")),
    )
    .hint("remove the repeated entries"))
}

pub use tarmac_types::time::{format_duration, parse_duration};

/// A duration given on the command line or to the API (`120s`, `2m`, `1h30m`, `500ms`, bare
/// seconds): [`parse_duration`], and more than zero.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let d = parse_duration(t)
        .map_err(|e| format!("`{t}` is not a duration (e.g. 120s, 2m, 1h30m): {e}"))?;
    if d.is_zero() {
        return Err(format!("`{t}`: the duration must be positive"));
    }
    Ok(d)
}

/// Parse `512MiB`, `2GB`, `64k`, `1024`. Decimal units k/KB/M/MB/G/GB/T/TB (powers of 1000),
/// binary units Ki/KiB/Mi/MiB/Gi/GiB/Ti/TiB (powers of 1024); case-insensitive.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    if num.is_empty() {
        return Err(format!("Invalid byte size {}", quote_short(s)));
    }
    if num.contains('.') {
        return Err(format!("Fractional bytes: {num}."));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("Invalid byte size {}", quote_short(s)))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "ki" | "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mi" | "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gi" | "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "ti" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "Unit '{unit}' not in ['B', 'KB', 'KiB', 'MB', 'MiB', 'GB', 'GiB', 'TB', 'TiB'] in byte size {}",
                quote_short(s)
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("Byte size {} is too large", quote_short(s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_flat_mapping;

    fn node(v: &str) -> Node {
        parse_flat_mapping(&format!("k: {v}\n"))
            .unwrap()
            .remove(0)
            .value
    }

    fn err(t: &Type, v: &str) -> String {
        check(t, &node(v)).unwrap_err().message
    }

    fn ok(t: &Type, v: &str) -> Json {
        check(t, &node(v)).unwrap().value
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(
            parse_duration("3hour").unwrap_err(),
            "Unit 'hour' not in ['ms', 's', 'm', 'h', 'd', 'w'] in duration \"3hour\""
        );
        let t = Type::Duration {
            min: None,
            max: None,
        };
        assert_eq!(ok(&t, "120"), Json::from("2m"));
        assert_eq!(
            parse_positive_duration(" 2m "),
            Ok(Duration::from_secs(120))
        );
        assert_eq!(parse_positive_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_positive_duration("250ms"),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(
            parse_positive_duration("0s"),
            Err("`0s`: the duration must be positive".to_owned())
        );
        assert_eq!(
            parse_positive_duration("soon"),
            Err("`soon` is not a duration (e.g. 120s, 2m, 1h30m): Invalid duration \"soon\": expected a number followed by a unit (ms, s, m, h, d, w)".to_owned())
        );
        assert!(parse_positive_duration("-5").is_err());
        assert_eq!(ok(&t, "15d"), Json::from("15d"));
    }

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("64MB").unwrap(), 64_000_000);
        assert_eq!(parse_bytes("1gb").unwrap(), 1_000_000_000);
        assert_eq!(
            parse_bytes("64.5MB").unwrap_err(),
            "Fractional bytes: 64.5."
        );
        let t = Type::Bytes {
            min: None,
            max: None,
        };
        assert_eq!(ok(&t, "4096"), Json::from(4096));
    }

    #[test]
    fn scalar_messages() {
        assert_eq!(
            err(&Type::port(), "70000"),
            "Must be between 1 and 65535 inclusive"
        );
        assert_eq!(
            err(&Type::port(), "1.5"),
            "Must be an integer, got a float (1.5)"
        );
        assert_eq!(
            err(&Type::port(), "'22'"),
            "Must be an integer, got a string (\"22\")"
        );
        assert_eq!(err(&Type::port(), "~"), "Must not be empty (null)");
        assert_eq!(
            err(&Type::Bool, "yes"),
            "Must be true or false, got `yes`: a YAML 1.1 boolean, which Tarmac (YAML 1.2) reads as the string \"yes\""
        );
        assert_eq!(
            err(&Type::Enum(vec!["strict".into(), "off".into()]), "loose"),
            "Must be one of 'strict', 'off'. Got 'loose'."
        );
        assert_eq!(
            ok(&Type::Enum(vec!["strict".into(), "off".into()]), "off"),
            Json::from("off")
        );
        let s = Type::String {
            multiline: false,
            min_length: 1,
            max_length: None,
        };
        assert_eq!(err(&s, "[a]"), "Must be a string, got a list");
        assert_eq!(check(&s, &node("on")).unwrap().warnings.len(), 1);
    }

    #[test]
    fn lists() {
        let ips = Type::List {
            items: Some(Box::new(Type::Ip)),
            unique: true,
            min_items: 0,
            max_items: None,
        };
        assert_eq!(
            err(&ips, "[foo, 10.0.0.1, bar]"),
            "Invalid IP addresses in list: foo, bar"
        );
        assert_eq!(
            err(&ips, "[10.0.0.1, 10.0.0.2, 10.0.0.1]"),
            "List cannot contain duplicates: 10.0.0.1 appears 2 times"
        );
        let hosts = Type::List {
            items: Some(Box::new(Type::Host)),
            unique: true,
            min_items: 0,
            max_items: None,
        };
        assert_eq!(
            ok(&hosts, "['10.0.0.1:2222', 'fd00::1', node-1]"),
            serde_json::json!(["10.0.0.1:2222", "fd00::1", "node-1"])
        );
        assert_eq!(
            err(&hosts, "['10.0.0.1:2222', 10.0.0.1]"),
            "List cannot contain duplicates: 10.0.0.1:2222 appears 2 times"
        );
        assert_eq!(
            err(&hosts, "10.0.0.1"),
            "Must be a list, got a string (\"10.0.0.1\")"
        );
    }
}
