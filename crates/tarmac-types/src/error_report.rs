//! The error report both binaries print (`tarmac` and `tarmac-host`): an error's message, its
//! cause chain and the hints collected from anywhere in the chain, shown last. Pure
//! formatting; printing is the binaries' job.
//!
//! Hints are data on the error values: an error type implements [`Hint`] and the binary
//! names it in the [`AsHint`] list it passes to [`ErrorReport::with_hints`]; the message of a
//! link that gives a typed hint is never searched for `hint:` text. [`Hinted`] gives any
//! message a hint. Other links (types nobody named, or a named type's variant without a
//! hint, such as a `#[error(transparent)]` wrapper of an unconverted error) still have their
//! `hint:` lines taken out of the message text: the fallback for error types not converted yet.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;

use serde::Serialize;

/// What an error suggests doing about it, shown as `hint: …` after the cause chain.
pub trait Hint {
    /// One hint per line, or `None`.
    fn hint(&self) -> Option<Cow<'_, str>>;
}

/// Sees whether a link of a chain is of a type that carries its hint as data.
pub type AsHint = for<'a> fn(&'a (dyn Error + 'static)) -> Option<&'a dyn Hint>;

/// The [`AsHint`] of the error type `T`: `as_hint::<MyError>`.
pub fn as_hint<'a, T: Hint + Error + 'static>(
    e: &'a (dyn Error + 'static),
) -> Option<&'a dyn Hint> {
    e.downcast_ref::<T>().map(|t| t as &dyn Hint)
}

/// A message with a hint, for errors that have no type of their own
/// (`anyhow::Error::new(Hinted::new(msg, hint))`). Always recognized by [`ErrorReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hinted {
    pub message: String,
    pub hint: String,
}

impl Hinted {
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Hinted {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for Hinted {}

impl Hint for Hinted {
    fn hint(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.hint))
    }
}

/// `e`'s message followed by a `hint: …` line for each line of its [`Hint`]: the one-string
/// form, for places that show an error as a single text (per-host outcomes, logs).
pub fn text_with_hint<E: fmt::Display + Hint + ?Sized>(e: &E) -> String {
    let mut s = e.to_string();
    if let Some(h) = e.hint() {
        for l in h.lines() {
            s.push_str("\nhint: ");
            s.push_str(l.trim());
        }
    }
    s
}

/// An error split for display: the top message, every cause below it, and the hints of
/// every link of the chain.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct ErrorReport {
    pub error: String,
    pub causes: Vec<String>,
    /// Every hint of the chain, one per line; `null` when there is none.
    pub hint: Option<String>,
}

impl ErrorReport {
    /// Split `err` and its `source()` chain (the order `anyhow::Error::chain` walks), with
    /// only [`Hinted`] known to carry its hint as data.
    pub fn of(err: &(dyn Error + 'static)) -> Self {
        Self::with_hints(err, &[])
    }

    /// Split `err` and its chain; a link whose type one of `typed` recognizes (or a
    /// [`Hinted`]) and that has a [`Hint`] gives it, its message kept whole. Other links
    /// have their `hint:` lines taken out of their text.
    pub fn with_hints(err: &(dyn Error + 'static), typed: &[AsHint]) -> Self {
        let mut hints = Vec::new();
        let mut error = String::new();
        let mut causes = Vec::new();
        let chain = std::iter::successors(Some(err), |&e| e.source());
        for (i, cause) in chain.enumerate() {
            let text = cause.to_string();
            let known = std::iter::once(as_hint::<Hinted> as AsHint)
                .chain(typed.iter().copied())
                .find_map(|f| f(cause));
            let body = match known.and_then(|h| h.hint()) {
                Some(h) => {
                    hints.extend(h.lines().map(|l| l.trim().to_owned()));
                    text
                }
                // No typed hint (or a type nobody named, or a transparent wrapper of one):
                // the fallback takes `hint:` lines out of the text.
                None => {
                    let mut body = Vec::new();
                    for line in text.lines() {
                        match line.trim_start().strip_prefix("hint:") {
                            Some(h) => hints.push(h.trim().to_owned()),
                            None => body.push(line),
                        }
                    }
                    body.join("\n")
                }
            };
            if i == 0 {
                error = body;
            } else if !body.trim().is_empty() {
                causes.push(body);
            }
        }
        ErrorReport {
            error,
            causes,
            hint: (!hints.is_empty()).then(|| hints.join("\n")),
        }
    }

    /// `error: …`, every `  caused by: …`, then every `hint: …`, one per line.
    pub fn to_text(&self) -> String {
        let mut out = format!("error: {}\n", self.error);
        for c in &self.causes {
            out.push_str(&format!("  caused by: {c}\n"));
        }
        for h in self.hint.iter().flat_map(|h| h.lines()) {
            out.push_str(&format!("hint: {h}\n"));
        }
        out
    }

    /// `{"error": "…", "causes": […], "hint": "…" | null}` on one line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"error":"cannot render the error as JSON","causes":[],"hint":null}"#.to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    /// A message with an optional cause, like `anyhow`'s `context`.
    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl fmt::Display for E {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for E {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    fn chain() -> E {
        E(
            "cannot validate genconf/config.yaml",
            Some(Box::new(E(
                "no distribution configuration at dist/reference: expected dist/reference/config/schema.yaml\nhint: pass --dist <DIR> or set TARMAC_DIST",
                None,
            ))),
        )
    }

    #[test]
    fn json_has_the_top_message_the_causes_and_the_hint_taken_out() {
        assert_eq!(
            ErrorReport::of(&chain()).to_json(),
            r#"{"error":"cannot validate genconf/config.yaml","causes":["no distribution configuration at dist/reference: expected dist/reference/config/schema.yaml"],"hint":"pass --dist <DIR> or set TARMAC_DIST"}"#
        );
    }

    #[test]
    fn json_without_causes_or_hint_says_null() {
        assert_eq!(
            ErrorReport::of(&E("genconf/state is locked by pid 7", None)).to_json(),
            r#"{"error":"genconf/state is locked by pid 7","causes":[],"hint":null}"#
        );
    }

    #[test]
    fn json_escapes_and_joins_several_hints() {
        let err = E("bad \"key\"\n  at line 2\nhint: one\n  hint: two", None);
        assert_eq!(
            ErrorReport::of(&err).to_json(),
            r#"{"error":"bad \"key\"\n  at line 2","causes":[],"hint":"one\ntwo"}"#
        );
    }

    #[test]
    fn text_is_error_causes_then_hints() {
        assert_eq!(
            ErrorReport::of(&chain()).to_text(),
            "error: cannot validate genconf/config.yaml\n  caused by: no distribution configuration at dist/reference: expected dist/reference/config/schema.yaml\nhint: pass --dist <DIR> or set TARMAC_DIST\n"
        );
    }

    /// An error type that carries its hint as data, with a message naming a path that
    /// contains `hint:`.
    #[derive(Debug)]
    struct Typed {
        path: &'static str,
        hint: Option<&'static str>,
    }

    impl fmt::Display for Typed {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "cannot read\n{}", self.path)
        }
    }

    impl Error for Typed {}

    impl Hint for Typed {
        fn hint(&self) -> Option<Cow<'_, str>> {
            self.hint.map(Cow::Borrowed)
        }
    }

    #[test]
    fn a_typed_hint_is_shown_after_the_causes() {
        let err = Typed {
            path: "/etc/x",
            hint: Some("run `tarmac genconf` first"),
        };
        let r = ErrorReport::with_hints(&err, &[as_hint::<Typed>]);
        assert_eq!(
            r.to_text(),
            "error: cannot read\n/etc/x\nhint: run `tarmac genconf` first\n"
        );
        assert_eq!(
            r.to_json(),
            r#"{"error":"cannot read\n/etc/x","causes":[],"hint":"run `tarmac genconf` first"}"#
        );
    }

    #[test]
    fn hint_text_in_a_typed_message_is_not_a_hint() {
        let err = Typed {
            path: "hint: a/dir named so/config.yaml",
            hint: Some("check the path"),
        };
        let r = ErrorReport::with_hints(&err, &[as_hint::<Typed>]);
        assert_eq!(r.error, "cannot read\nhint: a/dir named so/config.yaml");
        assert_eq!(r.hint.as_deref(), Some("check the path"));
    }

    #[test]
    fn a_typed_link_without_a_hint_falls_back_to_its_text() {
        // e.g. a `#[error(transparent)]` variant wrapping an error not converted yet.
        let err = Typed {
            path: "/x\nhint: fetch it first",
            hint: None,
        };
        let r = ErrorReport::with_hints(&err, &[as_hint::<Typed>]);
        assert_eq!(r.error, "cannot read\n/x");
        assert_eq!(r.hint.as_deref(), Some("fetch it first"));
    }

    #[test]
    fn hinted_gives_any_message_a_hint_below_its_context() {
        #[derive(Debug)]
        struct Ctx(Hinted);
        impl fmt::Display for Ctx {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("cannot fetch a--1")
            }
        }
        impl Error for Ctx {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let err = Ctx(Hinted::new(
            "404 from hint:8080/a--1",
            "check the repository URL",
        ));
        assert_eq!(
            ErrorReport::of(&err).to_text(),
            "error: cannot fetch a--1\n  caused by: 404 from hint:8080/a--1\nhint: check the repository URL\n"
        );
    }

    #[test]
    fn blank_causes_are_skipped() {
        let err = E("top", Some(Box::new(E("hint: only a hint", None))));
        assert_eq!(
            ErrorReport::of(&err).to_text(),
            "error: top\nhint: only a hint\n"
        );
    }

    #[test]
    fn text_with_hint_appends_one_hint_line_per_line() {
        let err = Typed {
            path: "/x",
            hint: Some("one\n  two"),
        };
        assert_eq!(
            text_with_hint(&err),
            "cannot read\n/x\nhint: one\nhint: two"
        );
        let bare = Typed {
            path: "/x",
            hint: None,
        };
        assert_eq!(text_with_hint(&bare), "cannot read\n/x");
    }
}
