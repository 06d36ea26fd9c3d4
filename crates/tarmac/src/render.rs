//! Terminal rendering: errors with their whole cause chain and hints (as text on stderr, or
//! as one JSON object on stdout when machine output was asked for; the formatting is
//! [`tarmac_types::error_report`], shared with tarmac-host), and tracing setup.
#![allow(clippy::print_stderr, clippy::print_stdout)]

pub use tarmac_types::error_report::ErrorReport;
use tarmac_types::error_report::{AsHint, as_hint};

/// The error types whose hints are data ([`tarmac_types::error_report::Hint`]); the others'
/// `hint:` lines are still taken out of their messages.
pub static TYPED_HINTS: std::sync::LazyLock<Vec<AsHint>> = std::sync::LazyLock::new(|| {
    let mut v: Vec<AsHint> = vec![as_hint::<tarmac_bundle::BundleError>];
    v.extend_from_slice(tarmac_installer::TYPED_HINTS);
    v
});

/// The report of `err`, hints taken from the error values of [`TYPED_HINTS`].
pub fn report(err: &anyhow::Error) -> ErrorReport {
    ErrorReport::with_hints(&**err, &TYPED_HINTS)
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
