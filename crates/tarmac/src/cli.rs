//! Command-line definitions (clap). Each command's own arguments live next to its
//! implementation in `commands/<name>.rs`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Parser, Subcommand};

use crate::commands;
use crate::commands::exec::OutputFormat;
use crate::commands::lab::{EgressCommand, LabCommand};
use crate::progress::OutputMode;

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
    /// The operator's one file: the portable tarmac, the signed build and its distribution
    /// (and offline prerequisites), signed; `create`, `verify` offline, `extract`.
    #[command(subcommand)]
    Bundle(commands::bundle::BundleCommand),
    /// Make an ed25519 key pair for signing build manifests.
    Keygen(commands::keygen::KeygenArgs),
    /// Real hosts on this machine (network namespaces + systemd-nspawn) for demos and tests.
    #[command(subcommand)]
    Lab(LabCommand),
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
    /// Take a consistent snapshot of the quorum store (the distribution's backup/ hooks) and
    /// pull it to genconf/state/backups/ with its sha256 (--list shows them).
    Backup(commands::daytwo::BackupArgs),
    /// Bring the quorum store back from a snapshot on every master, then check it.
    Restore(commands::daytwo::RestoreArgs),
    /// Take hosts out of the cluster: leave the quorum (masters), uninstall (or forget when
    /// unreachable, with --force), drop them from config.yaml, and roll the others.
    RemoveHosts(commands::daytwo::RemoveHostsArgs),
    /// Move a (dead) master's quorum membership to a fresh host, install it as a master, and
    /// roll the others to the new master list.
    ReplaceMaster(commands::daytwo::ReplaceMasterArgs),
}

/// What a command does when its genconf/ is not found by looking upward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenMissing {
    /// Fail, saying what was looked for.
    Fail,
    /// Keep `./genconf`: the command creates it (`tarmac web`).
    Create,
}

impl Cli {
    /// Fold the hidden `--json` alias into `--output json`, so commands look at `output` only.
    pub fn normalize_output(&mut self) {
        let json = OutputMode::Json;
        match &mut self.command {
            Command::ValidateConfig(a) if a.json => a.output = json,
            Command::Genconf(a) if a.json => a.output = json,
            Command::History(a) if a.json => a.output = json,
            Command::Build(a) if a.json => a.output = json,
            Command::Exec(a) if a.json => a.output = OutputFormat::Json,
            Command::Lab(LabCommand::Status(a)) if a.json => a.output = json,
            _ => {}
        }
        if let Some(c) = self.common_mut()
            && c.json
        {
            c.output = json;
        }
    }

    fn common_mut(&mut self) -> Option<&mut commands::stages::CommonArgs> {
        Some(match &mut self.command {
            Command::Preflight(a) => &mut a.common,
            Command::InstallPrereqs(a) => &mut a.common,
            Command::Deploy(a) => &mut a.common,
            Command::Postflight(a) => &mut a.common,
            Command::Uninstall(a) => &mut a.common,
            Command::Status(a) => &mut a.common,
            Command::Upgrade(a) => &mut a.common,
            Command::Rollback(a) => &mut a.common,
            Command::Backup(a) => &mut a.common,
            Command::Restore(a) => &mut a.common,
            Command::RemoveHosts(a) => &mut a.common,
            Command::ReplaceMaster(a) => &mut a.common,
            _ => return None,
        })
    }

    /// Whether the operator asked for machine output (`--output json` or `--json`): then
    /// stdout carries only JSON, errors included. Call after [`Cli::normalize_output`].
    pub fn machine_output(&self) -> bool {
        let json = OutputMode::Json;
        match &self.command {
            Command::ValidateConfig(a) => a.output == json,
            Command::Genconf(a) => a.output == json,
            Command::History(a) => a.output == json,
            Command::Build(a) => a.output == json,
            Command::Bundle(b) => b.machine_output(),
            Command::Exec(a) => a.output == OutputFormat::Json,
            Command::Lab(LabCommand::Status(a)) => a.output == json,
            Command::Lab(LabCommand::Egress(
                EgressCommand::Start(a) | EgressCommand::Report(a),
            )) => a.output == json,
            Command::Preflight(a) => a.common.output == json,
            Command::InstallPrereqs(a) => a.common.output == json,
            Command::Deploy(a) => a.common.output == json,
            Command::Postflight(a) => a.common.output == json,
            Command::Uninstall(a) => a.common.output == json,
            Command::Status(a) => a.common.output == json,
            Command::Upgrade(a) => a.common.output == json,
            Command::Rollback(a) => a.common.output == json,
            Command::Backup(a) => a.common.output == json,
            Command::Restore(a) => a.common.output == json,
            Command::RemoveHosts(a) => a.common.output == json,
            Command::ReplaceMaster(a) => a.common.output == json,
            _ => false,
        }
    }

    /// The `--genconf-dir` of a command that needs an existing genconf/, and what to do when
    /// none is found.
    pub fn genconf_dir_mut(&mut self) -> Option<(&mut PathBuf, WhenMissing)> {
        let fail = WhenMissing::Fail;
        Some(match &mut self.command {
            Command::ValidateConfig(a) => (&mut a.genconf_dir, fail),
            Command::Genconf(a) => (&mut a.inputs.genconf_dir, fail),
            Command::History(a) => (&mut a.genconf_dir, fail),
            Command::Logs(a) => (&mut a.genconf_dir, fail),
            Command::Exec(a) => (&mut a.genconf_dir, fail),
            Command::Web(a) => (&mut a.inputs.genconf_dir, WhenMissing::Create),
            Command::Preflight(a) => (&mut a.common.genconf_dir, fail),
            Command::InstallPrereqs(a) => (&mut a.common.genconf_dir, fail),
            Command::Deploy(a) => (&mut a.common.genconf_dir, fail),
            Command::Postflight(a) => (&mut a.common.genconf_dir, fail),
            Command::Uninstall(a) => (&mut a.common.genconf_dir, fail),
            Command::Status(a) => (&mut a.common.genconf_dir, fail),
            Command::Upgrade(a) => (&mut a.common.genconf_dir, fail),
            Command::Rollback(a) => (&mut a.common.genconf_dir, fail),
            Command::Backup(a) => (&mut a.common.genconf_dir, fail),
            Command::Restore(a) => (&mut a.common.genconf_dir, fail),
            Command::RemoveHosts(a) => (&mut a.common.genconf_dir, fail),
            Command::ReplaceMaster(a) => (&mut a.common.genconf_dir, fail),
            _ => return None,
        })
    }
}

/// Whether `--genconf-dir` (or its alias) was typed, at any level of the subcommands.
pub fn genconf_dir_given(m: &ArgMatches) -> bool {
    let here = m.try_get_raw("genconf_dir").is_ok_and(|v| v.is_some())
        && m.value_source("genconf_dir") == Some(ValueSource::CommandLine);
    here || m
        .subcommand()
        .is_some_and(|(_, sub)| genconf_dir_given(sub))
}

/// When `--genconf-dir` was not given and `./genconf` does not exist, use the nearest
/// parent's `genconf/` that holds a config.yaml (saying so on stderr unless `quiet`), or
/// fail naming what was looked for. An explicit `--genconf-dir` is used as given.
pub fn resolve_genconf_dir(
    cli: &mut Cli,
    matches: &ArgMatches,
    cwd: &Path,
    home: Option<&Path>,
    quiet: bool,
) -> anyhow::Result<()> {
    if genconf_dir_given(matches) {
        return Ok(());
    }
    let Some((dir, when_missing)) = cli.genconf_dir_mut() else {
        return Ok(());
    };
    if cwd.join(&*dir).exists() {
        return Ok(());
    }
    let stop = crate::locate::search_stop(cwd, home);
    match crate::locate::find_genconf(cwd, &stop) {
        Some(found) => {
            if !quiet {
                #[allow(clippy::print_stderr)]
                {
                    eprintln!("using genconf/ at {}", found.display());
                }
            }
            *dir = found;
            Ok(())
        }
        None if when_missing == WhenMissing::Create => Ok(()),
        None => Err(crate::locate::not_found(&stop)),
    }
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

    fn normalized(a: &[&str]) -> (Cli, ArgMatches) {
        use clap::{CommandFactory, FromArgMatches};
        let m = Cli::command().try_get_matches_from(v(a)).unwrap();
        let mut cli = Cli::from_arg_matches(&m).unwrap();
        cli.normalize_output();
        (cli, m)
    }

    #[test]
    fn json_is_a_hidden_alias_of_output_json_everywhere() {
        for a in [
            &["tarmac", "validate-config", "--json"][..],
            &["tarmac", "validate-config", "--output", "json"],
            &["tarmac", "genconf", "--json"],
            &["tarmac", "status", "--json"],
            &["tarmac", "status", "--output", "json"],
            &["tarmac", "deploy", "--output", "json"],
            &["tarmac", "upgrade", "--json"],
            &["tarmac", "history", "--output", "json"],
            &["tarmac", "history", "show", "2", "--json"],
            &["tarmac", "lab", "status", "--json"],
            &["tarmac", "lab", "status", "--output", "json"],
            &["tarmac", "build", "--json"],
            &["tarmac", "exec", "--json", "--", "true"],
        ] {
            assert!(normalized(a).0.machine_output(), "{a:?}");
        }
        for a in [
            &["tarmac", "validate-config"][..],
            &["tarmac", "status", "--output", "human"],
            &["tarmac", "exec", "--output", "human", "--", "true"],
            &["tarmac", "config", "reference"],
        ] {
            assert!(!normalized(a).0.machine_output(), "{a:?}");
        }
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("validate-config")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("--output <OUTPUT>"), "{help}");
        assert!(!help.contains("--json"), "{help}");
    }

    #[test]
    fn an_explicit_genconf_dir_is_seen_at_any_level() {
        assert!(!genconf_dir_given(&normalized(&["tarmac", "status"]).1));
        assert!(genconf_dir_given(
            &normalized(&["tarmac", "status", "--genconf-dir", "g"]).1
        ));
        assert!(genconf_dir_given(
            &normalized(&["tarmac", "history", "show", "1", "--genconf-dir", "g"]).1
        ));
        assert!(genconf_dir_given(
            &normalized(&["tarmac", "genconf", "--genconf", "g"]).1
        ));
        assert!(!genconf_dir_given(&normalized(&["tarmac", "history"]).1));
    }

    #[test]
    fn genconf_dir_is_looked_for_upward_unless_given() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("genconf")).unwrap();
        std::fs::write(root.join("genconf/config.yaml"), "").unwrap();
        let deep = root.join("x/y");
        std::fs::create_dir_all(&deep).unwrap();
        let (mut cli, m) = normalized(&["tarmac", "validate-config"]);
        resolve_genconf_dir(&mut cli, &m, &deep, Some(root), true).unwrap();
        let Command::ValidateConfig(a) = &cli.command else {
            panic!()
        };
        assert_eq!(a.genconf_dir, root.join("genconf"));
        // Given: used as is.
        let (mut cli, m) = normalized(&["tarmac", "validate-config", "--genconf-dir", "genconf"]);
        resolve_genconf_dir(&mut cli, &m, &deep, Some(root), true).unwrap();
        let Command::ValidateConfig(a) = &cli.command else {
            panic!()
        };
        assert_eq!(a.genconf_dir, PathBuf::from("genconf"));
        // Nothing found: the error names the stop; web keeps ./genconf (it creates it).
        let (mut cli, m) = normalized(&["tarmac", "deploy"]);
        let err = resolve_genconf_dir(&mut cli, &m, &deep, Some(&deep), true).unwrap_err();
        let text = crate::render::report(&err).to_text();
        assert!(
            text.contains(&format!(
                "in every parent up to {}\nhint: create genconf/config.yaml",
                deep.display()
            )),
            "{text}"
        );
        let (mut cli, m) = normalized(&["tarmac", "web"]);
        resolve_genconf_dir(&mut cli, &m, &deep, Some(&deep), true).unwrap();
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
