//! `tarmac lab …` (placeholder: the lab issue fills this in).

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Show running labs.
    Status,
}

pub fn run(cmd: LabCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LabCommand::Status => Ok(ExitCode::SUCCESS),
    }
}
