//! One module per command. Each exposes `run(args) -> anyhow::Result<ExitCode>`.

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub mod build;
pub mod bundle;
pub mod config;
pub mod daytwo;
pub mod exec;
pub mod genconf;
pub mod hash_password;
pub mod history;
pub mod keygen;
pub mod lab;
pub mod quickstart;
pub mod serve;
pub mod stages;
pub mod upgrade;
pub mod validate_config;
pub mod web;

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let verbose = cli.global.verbose > 0;
    match cli.command {
        Command::Build(args) => build::run(args, cli.global.verbose > 0),
        Command::Keygen(args) => keygen::run(args),
        Command::Bundle(cmd) => bundle::run(cmd),
        Command::Lab(cmd) => lab::run(cmd),
        Command::Exec(args) => exec::run(args),
        Command::HashPassword(args) => hash_password::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Quickstart(args) => quickstart::run(args, verbose),
        Command::Preflight(args) => stages::preflight(args, verbose),
        Command::InstallPrereqs(args) => stages::install_prereqs(args, verbose),
        Command::Deploy(args) => stages::deploy(args, verbose),
        Command::Postflight(args) => stages::postflight(args, verbose),
        Command::Uninstall(args) => stages::uninstall(args, verbose),
        Command::Status(args) => stages::status(args, verbose),
        Command::History(args) => history::run(args),
        Command::Logs(args) => stages::logs(args),
        Command::Config(cmd) => config::run(cmd),
        Command::ValidateConfig(args) => validate_config::run(args),
        Command::Genconf(args) => genconf::run(args),
        Command::Web(args) => web::run(args),
        Command::Upgrade(args) => upgrade::upgrade(args, verbose),
        Command::Rollback(args) => upgrade::rollback(args, verbose),
        Command::Backup(args) => daytwo::backup(args, verbose),
        Command::Restore(args) => daytwo::restore(args, verbose),
        Command::RemoveHosts(args) => daytwo::remove_hosts(args, verbose),
        Command::ReplaceMaster(args) => daytwo::replace_master(args, verbose),
    }
}
