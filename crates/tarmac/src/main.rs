//! `tarmac`: the operator's binary. Parses the command line, runs one command, and
//! renders errors. All work lives in the library crates; this file stays thin.

mod cli;
mod commands;
mod progress;
mod render;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::legacy_aliases(std::env::args_os().collect());
    let cli = cli::Cli::parse_from(args);
    render::init_tracing(cli.global.verbose);
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            render::print_error(&err);
            ExitCode::from(1)
        }
    }
}
