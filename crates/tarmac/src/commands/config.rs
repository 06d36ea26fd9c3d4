//! `tarmac config reference` and `tarmac config explain KEY`: the configuration reference
//! (`docs/config-reference.md`) from the installer's schema and the distribution's.
//!
//! Exit codes: 0 printed or written; 1 unknown key, or the distribution or output file could
//! not be read or written.
#![allow(clippy::print_stdout)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tarmac_types::error_report::{Hint, Hinted};

use crate::render::HintContext as _;
use crate::source::BuildSource;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the Markdown reference of every configuration key (docs/config-reference.md).
    Reference(ReferenceArgs),
    /// Print the reference entry of one key: type, default, required, secret, allowed values.
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub struct ReferenceArgs {
    #[command(flatten)]
    pub source: BuildSource,
    /// Write the reference to FILE (atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The key, e.g. `ssh_port` or `etcd_client_port`.
    pub key: String,
    #[command(flatten)]
    pub source: BuildSource,
}

pub fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Reference(args) => reference(args),
        ConfigCommand::Explain(args) => explain(args),
    }
}

fn reference(args: ReferenceArgs) -> anyhow::Result<ExitCode> {
    let dist = args.source.load(&crate::source::notice_sink())?.dist;
    let text = tarmac_config::render_reference(dist.schema(), &dist.name());
    match &args.out {
        Some(out) => tarmac_fsx::write_atomic(out, text.as_bytes(), 0o644).hint_context(
            || format!("cannot write {}", out.display()),
            "check that its directory exists and is writable",
        )?,
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .context("cannot write the reference to stdout")?,
    }
    Ok(ExitCode::SUCCESS)
}

fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let loaded = args.source.load(&crate::source::notice_sink())?;
    let entry = tarmac_config::explain(loaded.dist.schema(), args.key.trim()).map_err(|e| {
        Hinted::new(
            format!("{e}\n(distribution: {})", loaded.origin),
            Hint::hint(&e).unwrap_or_default(),
        )
    })?;
    print!("{entry}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::load_source_tree;

    fn reference_dist() -> PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/reference")
    }

    #[test]
    fn the_distribution_is_named_after_its_directory() {
        let root = load_source_tree(&reference_dist()).unwrap();
        assert_eq!(root.name(), "reference");
        let config = load_source_tree(&reference_dist().join("config/.")).unwrap();
        assert_eq!(config.name(), "reference");
        assert_eq!(config.with_name("other").name(), "other");
    }

    #[test]
    fn an_unknown_key_names_it_and_suggests_close_ones() {
        let err = explain(ExplainArgs {
            key: "ssh_prot".into(),
            source: BuildSource {
                dist: Some(reference_dist()),
                ..BuildSource::default()
            },
        })
        .unwrap_err();
        let err = crate::render::report(&err).to_text();
        assert!(
            err.starts_with("error: unknown configuration key `ssh_prot`"),
            "{err}"
        );
        assert!(err.contains("hint: did you mean `ssh_port`"), "{err}");
    }
}
