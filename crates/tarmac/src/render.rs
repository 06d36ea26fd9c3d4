//! Terminal rendering: errors with their whole cause chain and hints (as text on stderr, or
//! as one JSON object on stdout when machine output was asked for; the formatting is
//! [`tarmac_types::error_report`], shared with tarmac-host), and tracing setup.
#![allow(clippy::print_stderr, clippy::print_stdout)]

use std::borrow::Cow;
use std::fmt;

pub use tarmac_types::error_report::ErrorReport;
use tarmac_types::error_report::{AsHint, Hint, as_hint};

/// The error types whose hints are data ([`tarmac_types::error_report::Hint`]); the others'
/// `hint:` lines are still taken out of their messages.
pub static TYPED_HINTS: std::sync::LazyLock<Vec<AsHint>> = std::sync::LazyLock::new(|| {
    let mut v: Vec<AsHint> = vec![
        as_hint::<HintedContext>,
        as_hint::<tarmac_bundle::BundleError>,
        as_hint::<tarmac_lab::LabError>,
    ];
    // the web's list holds the installer's, genconf's and the configuration's
    v.extend_from_slice(&tarmac_web::TYPED_HINTS);
    v.extend_from_slice(tarmac_build::TYPED_HINTS);
    v
});

/// A context message with a hint, over the error it explains: what
/// [`HintContext::hint_context`] makes. (anyhow's own context link is of a private type, so
/// a [`tarmac_types::error_report::Hinted`] given as context would not be seen as one.)
#[derive(Debug)]
pub struct HintedContext {
    message: String,
    hint: String,
    source: anyhow::Error,
}

impl fmt::Display for HintedContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HintedContext {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

impl Hint for HintedContext {
    fn hint(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.hint))
    }
}

/// `with_context` for a message that has a hint.
pub trait HintContext<T> {
    fn hint_context(
        self,
        message: impl FnOnce() -> String,
        hint: impl Into<String>,
    ) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> HintContext<T> for Result<T, E> {
    fn hint_context(
        self,
        message: impl FnOnce() -> String,
        hint: impl Into<String>,
    ) -> anyhow::Result<T> {
        self.map_err(|e| {
            anyhow::Error::new(HintedContext {
                message: message(),
                hint: hint.into(),
                source: e.into(),
            })
        })
    }
}

/// The report of `err`, hints taken from the error values of [`TYPED_HINTS`].
pub fn report(err: &anyhow::Error) -> ErrorReport {
    ErrorReport::with_hints(&**err, &TYPED_HINTS)
}

/// The one-string form of `err` (for an error handed on as a message): every message of the
/// chain joined by `: ` (as `{err:#}`), each followed by its typed hint as `hint: …` lines.
pub fn chain_text(err: &anyhow::Error) -> String {
    err.chain()
        .map(|link| {
            let mut s = link.to_string();
            let hint = std::iter::once(as_hint::<tarmac_types::error_report::Hinted> as AsHint)
                .chain(TYPED_HINTS.iter().copied())
                .find_map(|f| f(link))
                .and_then(|h| h.hint());
            for l in hint.iter().flat_map(|h| h.lines()) {
                s.push_str("\nhint: ");
                s.push_str(l.trim());
            }
            s
        })
        .collect::<Vec<_>>()
        .join(": ")
}

/// Print `error: …`, every `caused by: …`, then every hint of the chain.
pub fn print_error(err: &anyhow::Error) {
    eprint!("{}", report(err).to_text());
}

/// Print the error as one JSON object on stdout (see [`ErrorReport::to_json`]).
pub fn print_error_json(err: &anyhow::Error) {
    println!("{}", report(err).to_json());
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

    #[test]
    fn an_anyhow_chain_reports_its_context_causes_and_hints() {
        let err = Err::<(), _>(anyhow!("inner\nhint: do this"))
            .context("outer")
            .unwrap_err();
        assert_eq!(
            ErrorReport::of(&*err).to_text(),
            "error: outer\n  caused by: inner\nhint: do this\n"
        );
    }

    #[test]
    fn a_hinted_context_gives_its_hint_after_the_causes() {
        let err = Err::<(), _>(tarmac_lab::LabError::NotFound { name: "x".into() })
            .hint_context(|| "cannot look at lab `x`".to_owned(), "retry")
            .unwrap_err();
        assert_eq!(
            report(&err).to_text(),
            "error: cannot look at lab `x`\n  caused by: no lab named `x`\nhint: retry\nhint: `tarmac lab status` lists the labs on this machine\n"
        );
        assert_eq!(
            chain_text(&err),
            "cannot look at lab `x`\nhint: retry: no lab named `x`\nhint: `tarmac lab status` lists the labs on this machine"
        );
    }

    #[test]
    fn a_bundle_error_gives_its_hint_as_data() {
        let err = anyhow::Error::new(tarmac_bundle::BundleError::Exists {
            dir: "/tmp/hint: x".into(),
        })
        .context("cannot extract");
        assert_eq!(
            report(&err).to_text(),
            "error: cannot extract\n  caused by: /tmp/hint: x already holds another extraction of this bundle's id\nhint: pass --force to replace it, or extract with --dir elsewhere\n"
        );
    }
}
