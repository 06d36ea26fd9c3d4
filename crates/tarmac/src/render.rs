//! Terminal rendering: errors with their whole cause chain and hints (as text on stderr, or
//! as one JSON object on stdout when machine output was asked for), and tracing setup.
#![allow(clippy::print_stderr, clippy::print_stdout)]

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
    pub fn of(err: &anyhow::Error) -> Self {
        let mut hints = Vec::new();
        let mut error = String::new();
        let mut causes = Vec::new();
        for (i, cause) in err.chain().enumerate() {
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

/// Print `error: …`, every `caused by: …`, then any `hint: …` lines found in the chain.
pub fn print_error(err: &anyhow::Error) {
    eprint!("{}", ErrorReport::of(err).to_text());
}

/// Print the error as one JSON object on stdout (see [`ErrorReport::to_json`]).
pub fn print_error_json(err: &anyhow::Error) {
    println!("{}", ErrorReport::of(err).to_json());
}

pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,tarmac=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TARMAC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::{Context as _, anyhow};

    fn chain() -> anyhow::Error {
        Err::<(), _>(anyhow!(
            "no distribution configuration at dist/reference: expected dist/reference/config/schema.yaml\nhint: pass --dist <DIR> or set TARMAC_DIST"
        ))
        .context("cannot validate genconf/config.yaml")
        .unwrap_err()
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
            ErrorReport::of(&anyhow!("genconf/state is locked by pid 7")).to_json(),
            r#"{"error":"genconf/state is locked by pid 7","causes":[],"hint":null}"#
        );
    }

    #[test]
    fn json_escapes_and_joins_several_hints() {
        let err = anyhow!("bad \"key\"\n  at line 2\nhint: one\n  hint: two");
        assert_eq!(
            ErrorReport::of(&err).to_json(),
            r#"{"error":"bad \"key\"\n  at line 2","causes":[],"hint":"one\ntwo"}"#
        );
    }

    #[test]
    fn text_is_unchanged() {
        assert_eq!(
            ErrorReport::of(&chain()).to_text(),
            "error: cannot validate genconf/config.yaml\n  caused by: no distribution configuration at dist/reference: expected dist/reference/config/schema.yaml\nhint: pass --dist <DIR> or set TARMAC_DIST\n"
        );
    }
}
