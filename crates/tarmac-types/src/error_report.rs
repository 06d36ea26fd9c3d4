//! The error report both binaries print (`tarmac` and `tarmac-host`): an error's message, its
//! cause chain and the `hint:` lines collected from anywhere in the chain, shown last. Pure
//! formatting; printing is the binaries' job.

use serde::Serialize;

/// An error split for display: the top message, every cause below it, and the `hint:`
/// lines found anywhere in the chain (taken out of the messages that carried them).
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct ErrorReport {
    pub error: String,
    pub causes: Vec<String>,
    /// Every hint of the chain, one per line; `null` when there is none.
    pub hint: Option<String>,
}

impl ErrorReport {
    /// Split `err` and its `source()` chain (the order `anyhow::Error::chain` walks).
    pub fn of(err: &(dyn std::error::Error + 'static)) -> Self {
        let mut hints = Vec::new();
        let mut error = String::new();
        let mut causes = Vec::new();
        let chain = std::iter::successors(Some(err), |e| e.source());
        for (i, cause) in chain.enumerate() {
            let text = cause.to_string();
            let mut body = Vec::new();
            for line in text.lines() {
                match line.trim_start().strip_prefix("hint:") {
                    Some(h) => hints.push(h.trim().to_owned()),
                    None => body.push(line),
                }
            }
            let body = body.join("\n");
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

    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
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

    #[test]
    fn blank_causes_are_skipped() {
        let err = E("top", Some(Box::new(E("hint: only a hint", None))));
        assert_eq!(
            ErrorReport::of(&err).to_text(),
            "error: top\nhint: only a hint\n"
        );
    }
}
