//! `tarmac history`: the cluster ledger (`genconf/state/ledger.jsonl`), verified; one line per
//! entry, or one entry's per-host detail with `show N`.
//!
//! Exit codes: 0 shown, 1 the ledger is damaged or truncated (or no such entry).
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use tarmac_installer::ledger::{Ledger, render_entry, render_history};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Output {
    #[default]
    Human,
    Json,
}

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
    /// `human` (a table) or `json` (the entries as written).
    #[arg(long, value_enum, default_value_t = Output::Human, global = true)]
    pub output: Output,
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
                Output::Human => print!("{}", render_history(&entries)),
                Output::Json => println!("{}", serde_json::to_string_pretty(&entries)?),
            }
        }
        Some(HistoryCommand::Show { n }) => {
            let e = ledger.entry(n)?;
            match args.output {
                Output::Human => print!("{}", render_entry(&e)),
                Output::Json => println!("{}", serde_json::to_string_pretty(&e)?),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
