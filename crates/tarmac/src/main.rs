//! `tarmac`: the operator's binary. Parses the command line, runs one command, and
//! renders errors. All work lives in the library crates; this file stays thin.

mod cli;
mod commands;
mod locate;
mod progress;
mod render;
mod source;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    let args = cli::legacy_aliases(std::env::args_os().collect());
    let matches = cli::Cli::command().get_matches_from(args);
    let mut cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cli.normalize_output();
    let json = cli.machine_output();
    render::init_tracing(cli.global.verbose);
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let result = std::env::current_dir()
        .map_err(anyhow::Error::from)
        .and_then(|cwd| cli::resolve_genconf_dir(&mut cli, &matches, &cwd, home.as_deref(), json))
        .and_then(|()| commands::run(cli));
    match result {
        Ok(code) => code,
        Err(err) => {
            // Machine output means stdout holds only JSON, failures included.
            if json {
                render::print_error_json(&err);
            } else {
                render::print_error(&err);
            }
            ExitCode::from(1)
        }
    }
}
