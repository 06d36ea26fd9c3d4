//! Command-line definitions (clap). Each command's own arguments live next to its
//! implementation in `commands/<name>.rs`.

use std::ffi::OsString;

use clap::{Args, Parser, Subcommand};

use crate::commands;

#[derive(Debug, Parser)]
#[command(
    name = "tarmac",
    version,
    about = "Build, install, upgrade and audit a cluster on many hosts"
)]
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
    /// Build the packages of a tree that changed, the bootstrap artifact and its signed manifest.
    Build(commands::build::BuildArgs),
    /// Make an ed25519 key pair for signing build manifests.
    Keygen(commands::keygen::KeygenArgs),
    /// Real hosts on this machine (network namespaces + systemd-nspawn) for demos and tests.
    #[command(subcommand)]
    Lab(commands::lab::LabCommand),
    /// Run a shell command on the cluster's hosts over SSH, with a per-host result table.
    Exec(commands::exec::ExecArgs),
    /// Hash a password with SHA-512 crypt (prompt without echo, or stdin).
    HashPassword(commands::hash_password::HashPasswordArgs),
    /// Serve genconf/serve/ over HTTP so hosts can install by themselves.
    Serve(commands::serve::ServeArgs),
    /// The whole job end to end on the built-in lab: build, lab up, genconf, preflight,
    /// deploy, postflight, status (and lab down unless --keep).
    Quickstart(commands::quickstart::QuickstartArgs),
    /// Check every host before installing (role-aware; a table per host and check).
    Preflight(commands::stages::PreflightArgs),
    /// Install the packages hosts need before deploy (apt, dnf or yum).
    InstallPrereqs(commands::stages::InstallPrereqsArgs),
    /// Install the cluster on every host (hosts pull from this machine, or --push).
    Deploy(commands::stages::DeployArgs),
    /// Wait until every node and cluster check passes.
    Postflight(commands::stages::PostflightArgs),
    /// Stop and remove Tarmac from every host.
    Uninstall(commands::stages::UninstallArgs),
    /// Audit every host against the cluster package list (drift, units, checks).
    Status(commands::stages::StatusArgs),
    /// The cluster ledger: every genconf, deploy, upgrade, rollback and uninstall, verified.
    History(commands::history::HistoryArgs),
    /// Bundle the installer's journals and per-host logs for support.
    Logs(commands::stages::LogsArgs),
    /// The configuration reference: every key's type, default and rules (`reference`), or
    /// one key's (`explain KEY`).
    #[command(subcommand)]
    Config(commands::config::ConfigCommand),
    /// Check genconf/config.yaml against the distribution's schema and explain every mistake.
    ValidateConfig(commands::validate_config::ValidateConfigArgs),
    /// Validate genconf/config.yaml and write genconf/serve/: config packages, package list, install.sh.
    Genconf(commands::genconf::GenconfArgs),
    /// The web installer: configure, preflight, deploy and postflight from a browser.
    Web(commands::web::WebArgs),
    /// Roll the cluster to genconf's current package list: masters one at a time behind the
    /// cluster checks, then agents in batches; every switch reverts itself unless confirmed.
    Upgrade(commands::upgrade::UpgradeArgs),
    /// Bring hosts back to their previous generation (or --to N), with the same order and gates.
    Rollback(commands::upgrade::RollbackArgs),
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
        a.to_str()
            .is_some_and(|s| ALIASES.iter().any(|(flag, _)| *flag == s))
    }) {
        let pos = pos + 1;
        let flag = args[pos].to_str().unwrap_or_default().to_owned();
        let sub = ALIASES
            .iter()
            .find(|(f, _)| *f == flag)
            .map(|(_, s)| *s)
            .unwrap_or_default();
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

    fn parse(a: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(v(a))
    }

    #[test]
    fn duration_flags_take_units_or_bare_seconds() {
        use std::time::Duration;
        let Command::Deploy(d) = parse(&["tarmac", "deploy"]).unwrap().command else {
            panic!("not deploy")
        };
        assert_eq!(d.timeout, Duration::from_secs(900));
        let Command::Postflight(p) = parse(&["tarmac", "postflight", "--timeout", "1h30m"])
            .unwrap()
            .command
        else {
            panic!("not postflight")
        };
        assert_eq!(p.timeout, Duration::from_secs(5400));
        let Command::Upgrade(u) = parse(&[
            "tarmac",
            "upgrade",
            "--check-timeout",
            "300",
            "--confirm-window",
            "500ms",
        ])
        .unwrap()
        .command
        else {
            panic!("not upgrade")
        };
        assert_eq!(u.check_timeout, Duration::from_secs(300));
        assert_eq!(u.confirm_window, Duration::from_millis(500));
        let Command::Rollback(r) = parse(&["tarmac", "rollback"]).unwrap().command else {
            panic!("not rollback")
        };
        assert_eq!(r.check_timeout, Duration::from_secs(300));
        let Command::Exec(e) = parse(&["tarmac", "exec", "--deadline", "2m", "--", "true"])
            .unwrap()
            .command
        else {
            panic!("not exec")
        };
        assert_eq!(e.deadline, Some(Duration::from_secs(120)));
        assert_eq!(e.connect_timeout, Duration::from_secs(10));
    }

    #[test]
    fn a_bad_duration_flag_says_what_to_type() {
        let err = parse(&["tarmac", "deploy", "--timeout", "10x"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(r#"invalid duration "10x": unknown unit "x" (units: ms, s, m, h, d, w); use e.g. 90s, 15m, 1h"#),
            "{err}"
        );
    }

    #[test]
    fn duration_defaults_are_shown_with_units() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("deploy")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("[default: 15m]"), "{help}");
    }

    #[test]
    fn legacy_flags_become_subcommands() {
        assert_eq!(
            legacy_aliases(v(&["tarmac", "--genconf"])),
            v(&["tarmac", "genconf"])
        );
        assert_eq!(
            legacy_aliases(v(&["tarmac", "-v", "--deploy", "--yes"])),
            v(&["tarmac", "deploy", "-v", "--yes"])
        );
        assert_eq!(
            legacy_aliases(v(&["tarmac", "lab", "up"])),
            v(&["tarmac", "lab", "up"])
        );
    }
}
