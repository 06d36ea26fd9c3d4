//! One module per command. Each exposes `run(args) -> anyhow::Result<ExitCode>`.

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub mod hash_password;
pub mod lab;
pub mod serve;

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Lab(cmd) => lab::run(cmd),
        Command::HashPassword(args) => hash_password::run(args),
        Command::Serve(args) => serve::run(args),
    }
}
