//! `tarmac config reference` and `tarmac config explain KEY`: the configuration reference
//! (`docs/config-reference.md`) from the installer's schema and the distribution's.
//!
//! Exit codes: 0 printed or written; 1 unknown key, or the distribution or output file could
//! not be read or written.
#![allow(clippy::print_stdout)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, anyhow};
use clap::{Args, Subcommand};
use tarmac_config::Distribution;

use crate::commands::validate_config::load_distribution;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the Markdown reference of every configuration key (docs/config-reference.md).
    Reference(ReferenceArgs),
    /// Print the reference entry of one key: type, default, required, secret, allowed values.
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub struct DistArg {
    /// The distribution (its root, e.g. dist/reference, or its config/ directory).
    #[arg(
        long,
        value_name = "DIR",
        env = "TARMAC_DIST",
        default_value = "dist/reference"
    )]
    pub dist: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReferenceArgs {
    #[command(flatten)]
    pub dist: DistArg,
    /// Write the reference to FILE (atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The key, e.g. `ssh_port` or `etcd_client_port`.
    pub key: String,
    #[command(flatten)]
    pub dist: DistArg,
}

pub fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Reference(args) => reference(args),
        ConfigCommand::Explain(args) => explain(args),
    }
}

fn reference(args: ReferenceArgs) -> anyhow::Result<ExitCode> {
    let dist = load_distribution(&args.dist.dist)?;
    let text = tarmac_config::render_reference(dist.schema(), &dist_name(&dist));
    match &args.out {
        Some(out) => tarmac_fsx::write_atomic(out, text.as_bytes(), 0o644).with_context(|| {
            format!(
                "cannot write {}\nhint: check that its directory exists and is writable",
                out.display()
            )
        })?,
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .context("cannot write the reference to stdout")?,
    }
    Ok(ExitCode::SUCCESS)
}

fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let dist = load_distribution(&args.dist.dist)?;
    let entry = tarmac_config::explain(dist.schema(), args.key.trim()).map_err(|e| {
        anyhow!(
            "{e}\n(distribution: {})",
            dist.dir().unwrap_or(Path::new("?")).display()
        )
    })?;
    print!("{entry}");
    Ok(ExitCode::SUCCESS)
}

/// The distribution's name: the directory holding its `config/` (`dist/reference` →
/// `reference`), however the path was spelt.
pub fn dist_name(dist: &Distribution) -> String {
    let Some(dir) = dist.dir() else {
        return "distribution".to_owned();
    };
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let root = if dir.file_name().is_some_and(|n| n == "config") {
        dir.parent().unwrap_or(&dir)
    } else {
        &dir
    };
    root.file_name().map_or_else(
        || "distribution".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_dist() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/reference")
    }

    #[test]
    fn the_distribution_is_named_after_its_directory() {
        let root = load_distribution(&reference_dist()).unwrap();
        assert_eq!(dist_name(&root), "reference");
        let config = load_distribution(&reference_dist().join("config/.")).unwrap();
        assert_eq!(dist_name(&config), "reference");
    }

    #[test]
    fn an_unknown_key_names_it_and_suggests_close_ones() {
        let err = explain(ExplainArgs {
            key: "ssh_prot".into(),
            dist: DistArg {
                dist: reference_dist(),
            },
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("unknown configuration key `ssh_prot`"),
            "{err}"
        );
        assert!(err.contains("hint: did you mean `ssh_port`"), "{err}");
    }
}
