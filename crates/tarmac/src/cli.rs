//! Command-line definitions (clap). Each command's own arguments live next to its
//! implementation in `commands/<name>.rs`.

use std::ffi::OsString;

use clap::{Args, Parser, Subcommand};

use crate::commands;

#[derive(Debug, Parser)]
#[command(name = "tarmac", version, about = "Build, install, upgrade and audit a cluster on many hosts")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Real hosts on this machine (network namespaces + systemd-nspawn) for demos and tests.
    #[command(subcommand)]
    Lab(commands::lab::LabCommand),
    /// Hash a password with SHA-512 crypt (prompt without echo, or stdin).
    HashPassword(commands::hash_password::HashPasswordArgs),
    /// Serve genconf/serve/ over HTTP so hosts can install by themselves.
    Serve(commands::serve::ServeArgs),
}

/// The original DC/OS installer took its actions as flags (`--genconf`, `--deploy`, …).
/// Rewrite the first such flag into the matching subcommand so old muscle memory works.
pub fn legacy_aliases(mut args: Vec<OsString>) -> Vec<OsString> {
    const ALIASES: &[(&str, &str)] = &[
        ("--genconf", "genconf"),
        ("--preflight", "preflight"),
        ("--deploy", "deploy"),
        ("--postflight", "postflight"),
        ("--uninstall", "uninstall"),
        ("--install-prereqs", "install-prereqs"),
        ("--validate-config", "validate-config"),
        ("--hash-password", "hash-password"),
        ("--web", "web"),
    ];
    if let Some(pos) = args.iter().skip(1).position(|a| {
        a.to_str().is_some_and(|s| ALIASES.iter().any(|(flag, _)| *flag == s))
    }) {
        let pos = pos + 1;
        let flag = args[pos].to_str().unwrap_or_default().to_owned();
        let sub = ALIASES.iter().find(|(f, _)| *f == flag).map(|(_, s)| *s).unwrap_or_default();
        args.remove(pos);
        args.insert(1, sub.into());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn legacy_flags_become_subcommands() {
        assert_eq!(legacy_aliases(v(&["tarmac", "--genconf"])), v(&["tarmac", "genconf"]));
        assert_eq!(
            legacy_aliases(v(&["tarmac", "-v", "--deploy", "--yes"])),
            v(&["tarmac", "deploy", "-v", "--yes"])
        );
        assert_eq!(legacy_aliases(v(&["tarmac", "lab", "up"])), v(&["tarmac", "lab", "up"]));
    }
}
