//! `tarmac history`: the cluster ledger (`genconf/state/ledger.jsonl`), verified; one line per
//! entry, or one entry's per-host detail with `show N`.
//!
//! Exit codes: 0 shown, 1 the ledger is damaged or truncated (or no such entry).
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use tarmac_installer::ledger::{Ledger, render_entry, render_history};

use crate::progress::OutputMode;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Directory holding config.yaml and state/.
    #[arg(
        long,
        alias = "genconf",
        value_name = "DIR",
        default_value = "genconf",
        global = true
    )]
    pub genconf_dir: PathBuf,
    /// `human`: a table (or one entry in full). `json`: only JSON on stdout: the entries as
    /// written (one entry for `show N`), or for any failure one `{"error", "causes", "hint"}`
    /// object.
    #[arg(long, value_enum, default_value_t = OutputMode::Human, global = true)]
    pub output: OutputMode,
    /// Same as `--output json`.
    #[arg(long, hide = true, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<HistoryCommand>,
}

#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// One entry in full: command, targets, ids, and every host's outcome.
    Show {
        /// The entry's number (the `#` column of `tarmac history`).
        n: u64,
    },
}

pub fn run(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let ledger = Ledger::new(&args.genconf_dir.join("state"));
    match args.command {
        None => {
            let entries = ledger.read()?;
            match args.output {
                OutputMode::Human => print!("{}", render_history(&entries)),
                OutputMode::Json => println!("{}", serde_json::to_string_pretty(&entries)?),
            }
        }
        Some(HistoryCommand::Show { n }) => {
            let e = ledger.entry(n)?;
            match args.output {
                OutputMode::Human => print!("{}", render_entry(&e)),
                OutputMode::Json => println!("{}", serde_json::to_string_pretty(&e)?),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
