//! Day two on the command line: `backup`, `restore`, `remove-hosts` and `replace-master`
//! (and the reconciling `deploy` in `stages.rs`). The library runs them, membership changes
//! step by step with `--resume` (`tarmac_installer::change`); this module adds what only the
//! front end does: confirmations, genconf from the CLI's build, and the printed summary.
//!
//! Exit codes, as for the other stages: 0 done, 1 refused or invalid input (nothing
//! changed), 2 ran and some host failed.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tarmac_installer::change::{Change, ChangeOptions, Regenerate, Regenerated};
use tarmac_installer::daytwo::BackupOptions;
use tarmac_installer::upgrade::UpgradeOptions;
use tarmac_types::error_report::Hinted;
use tarmac_types::time::parse_flag_duration;
use tarmac_types::{HostAddr, Role, Stage};

use super::genconf::GenconfInputs;
use super::stages::{CommonArgs, prepare};
use crate::source::BuildSource;

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Keep only the newest N snapshots (older ones are deleted after this one is stored).
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    /// List the snapshots instead of taking one.
    #[arg(long)]
    pub list: bool,
    /// Deadline of the snapshot on the host plus its download.
    #[arg(long, value_name = "DUR", value_parser = parse_flag_duration, default_value = "10m")]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// A snapshot from `tarmac backup`: its .tar.zst (with the .json record next to it) or
    /// its name in genconf/state/backups/.
    pub snapshot: PathBuf,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
    /// How long the masters' checks may take to pass after the restore.
    #[arg(long, value_name = "DUR", value_parser = parse_flag_duration, default_value = "5m")]
    pub check_timeout: Duration,
}

/// The build genconf renders from again after config.yaml changed.
#[derive(Debug, Args)]
pub struct RegenArgs {
    /// The build directory [default: the bundle's, ./out, or the one ./tarmac-*/].
    #[arg(long, value_name = "DIR", env = "TARMAC_BUILD_DIR")]
    pub build_dir: Option<PathBuf>,
    /// The key the build's manifest must be signed with [default: the bundle's].
    #[arg(long, value_name = "FILE", env = "TARMAC_PUBLIC_KEY")]
    pub public_key: Option<PathBuf>,
    /// How long node and cluster checks may take to pass during the rollout.
    #[arg(long, value_name = "DUR", value_parser = parse_flag_duration, default_value = "5m")]
    pub check_timeout: Duration,
    /// The rollout's batch size for agents (a count or a percentage; masters always go one
    /// at a time).
    #[arg(long, default_value = tarmac_installer::upgrade::DEFAULT_BATCH)]
    pub batch: String,
    /// How long a switched host waits for its confirmation before it reverts.
    #[arg(long, value_name = "DUR", value_parser = parse_flag_duration, default_value = "2m")]
    pub confirm_window: Duration,
    /// Do not take a snapshot before the rollout touches masters.
    #[arg(long)]
    pub no_backup: bool,
    /// Give a fresh master its prerequisites from the offline repository (see
    /// `install-prereqs --offline`).
    #[arg(long)]
    pub offline: bool,
    /// The offline prerequisites repository (the bundle's prereqs/ directory).
    #[arg(long, value_name = "DIR", requires = "offline")]
    pub prereqs_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RemoveHostsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The hosts to remove, as config.yaml lists them.
    #[arg(required_unless_present = "resume")]
    pub remove: Vec<HostAddr>,
    /// Continue the membership change recorded in genconf/state/change.json after it was
    /// interrupted or failed (the same command again does too).
    #[arg(long)]
    pub resume: bool,
    /// Forget unreachable hosts without cleaning them.
    #[arg(long)]
    pub force: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
    #[command(flatten)]
    pub regen: RegenArgs,
}

#[derive(Debug, Args)]
pub struct ReplaceMasterArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The master to replace (dead or alive), as master_list lists it.
    #[arg(required_unless_present = "resume")]
    pub old: Option<HostAddr>,
    /// A fresh host that takes its place.
    #[arg(required_unless_present = "resume")]
    pub new: Option<HostAddr>,
    /// Continue the membership change recorded in genconf/state/change.json after it was
    /// interrupted or failed (the same command again does too).
    #[arg(long)]
    pub resume: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
    #[command(flatten)]
    pub regen: RegenArgs,
}

macro_rules! prepared {
    ($common:expr, $stage:expr, $verbose:expr) => {
        match prepare($common, $stage, $verbose)? {
            Ok(p) => p,
            Err(code) => return Ok(code),
        }
    };
}

fn confirm(yes: bool, question: &str) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Hinted::new(
            format!("{question}: this needs confirmation"),
            "pass --yes to confirm without a prompt",
        )
        .into());
    }
    eprint!("{question}? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn runs_line(runs: &[tarmac_installer::stages::StageRun]) {
    if let Some(last) = runs.last() {
        eprintln!(
            "journal: {}\nlogs:    {}",
            last.journal.display(),
            last.log_dir.display()
        );
    }
}

pub fn backup(args: BackupArgs, verbose: bool) -> anyhow::Result<ExitCode> {
    let p = prepared!(&args.common, Stage::Backup, verbose);
    if args.list {
        let all = p.installer.snapshots()?;
        if all.is_empty() {
            println!("no snapshots in {}", p.installer.backups_dir().display());
        }
        for s in all {
            println!(
                "{}  {}  {:>10} bytes  sha256 {}  from {}  ({})",
                s.name,
                tarmac_types::time::utc(s.taken_unix),
                s.size,
                s.sha256,
                s.host,
                s.reason
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let opts = BackupOptions {
        keep: args.keep,
        timeout: args.timeout,
        ..BackupOptions::default()
    };
    let (run, snap) = p.rt.block_on(p.installer.backup(&opts))?;
    println!(
        "{}",
        p.installer.backups_dir().join(snap.file_name()).display()
    );
    eprintln!(
        "snapshot {} from {}: {} bytes, sha256 {}",
        snap.name, snap.host, snap.size, snap.sha256
    );
    runs_line(std::slice::from_ref(&run));
    Ok(ExitCode::SUCCESS)
}

pub fn restore(args: RestoreArgs, verbose: bool) -> anyhow::Result<ExitCode> {
    let p = prepared!(&args.common, Stage::Restore, verbose);
    let (file, snap) = p.installer.snapshot_at(&args.snapshot)?;
    let masters = p.installer.cfg.hosts(Role::Master);
    if !confirm(
        args.yes,
        &format!(
            "Replace the quorum store on {} masters with snapshot {} (taken {} on {})",
            masters.len(),
            snap.name,
            tarmac_types::time::utc(snap.taken_unix),
            snap.host
        ),
    )? {
        eprintln!("aborted; no host was touched");
        return Ok(ExitCode::from(1));
    }
    let report =
        p.rt.block_on(p.installer.restore(&file, args.check_timeout))?;
    eprintln!(
        "restored {} on {} and every master's checks pass",
        report.snapshot.name,
        masters
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    runs_line(&report.runs);
    Ok(ExitCode::SUCCESS)
}

/// genconf again from the CLI's build and distribution (`tarmac genconf`'s code), then the
/// configuration validated again for the rest of the change.
struct CliRegen {
    inputs: GenconfInputs,
    dist: Option<PathBuf>,
}

impl Regenerate for CliRegen {
    fn check(&self, config_yaml: &str) -> Result<(), String> {
        let gdir = &self.inputs.genconf_dir;
        let dist = crate::source::load_for_stages(
            self.dist.as_deref(),
            gdir,
            &crate::source::notice_sink(),
        )
        .map_err(|e| crate::render::chain_text(&e))?;
        tarmac_config::resolve_genconf_text(gdir, &dist, config_yaml)
            .map(drop)
            .map_err(|report| report.render())
    }

    fn regenerate(&self) -> Result<Regenerated, String> {
        let chain = |e: anyhow::Error| crate::render::chain_text(&e);
        let r = match super::genconf::render(&self.inputs).map_err(chain)? {
            Ok(r) => r,
            Err(e) => return Err(chain(anyhow::Error::from(e))),
        };
        let gdir = &self.inputs.genconf_dir;
        let dist = crate::source::load_for_stages(
            self.dist.as_deref(),
            gdir,
            &crate::source::notice_sink(),
        )
        .map_err(chain)?;
        let cfg = tarmac_genconf::validate(&dist, gdir).map_err(|report| report.render())?;
        Ok(Regenerated {
            cfg,
            config_id: r.config_id,
            cluster_package_list_id: r.cluster_package_list_id,
        })
    }
}

fn change_options(regen: &RegenArgs, resume: bool) -> anyhow::Result<ChangeOptions> {
    let offline = if regen.offline {
        match super::stages::open_prereqs(regen.prereqs_dir.as_deref())? {
            Some(r) => Some(r),
            None => return Err(super::stages::no_offline_repository()),
        }
    } else {
        None
    };
    Ok(ChangeOptions {
        rollout: UpgradeOptions {
            batch: regen
                .batch
                .parse()
                .map_err(|e| anyhow::anyhow!("--batch {e}"))?,
            check_deadline: regen.check_timeout,
            confirm_window: regen.confirm_window,
            no_backup: regen.no_backup,
            ..UpgradeOptions::default()
        },
        offline,
        resume,
        ..ChangeOptions::default()
    })
}

/// Run a membership change (or `--resume` the recorded one) and say what it did.
fn run_change(
    common: &CommonArgs,
    regen: &RegenArgs,
    change: Option<Change>,
    resume: bool,
    yes: bool,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    let opts = change_options(regen, resume)?;
    let stage = change.as_ref().map_or(Stage::RemoveHosts, Change::stage);
    let p = prepared!(common, stage, verbose);
    let recorded = p.installer.recorded_change()?.filter(|s| s.unfinished());
    let continuing = match (&recorded, &change) {
        (Some(r), None) => Some(r),
        (Some(r), Some(c)) if r.change.same_as(c) => Some(r),
        _ => None,
    };
    let question = match (continuing, &change) {
        (Some(r), _) => format!(
            "Continue `tarmac {}` at its {} step",
            r.change.command(),
            r.step
        ),
        (None, Some(Change::RemoveHosts { hosts, force })) => format!(
            "Remove {} from the cluster (uninstalling them where reachable{})",
            names(hosts),
            if *force {
                ", forgetting the unreachable ones"
            } else {
                ""
            }
        ),
        (None, Some(Change::ReplaceMaster { old, new })) => {
            format!("Move master {old}'s quorum membership to {new} and install {new} as a master")
        }
        // The library says there is nothing to resume.
        (None, None) => String::new(),
    };
    if !question.is_empty() && !confirm(yes, &question)? {
        eprintln!("aborted; no host was touched");
        return Ok(ExitCode::from(1));
    }
    let cli_regen = CliRegen {
        inputs: GenconfInputs {
            genconf_dir: common.genconf_dir.clone(),
            source: BuildSource {
                dist: common.dist.clone(),
                build_dir: regen.build_dir.clone(),
                public_key: regen.public_key.clone(),
            },
        },
        dist: common.dist.clone(),
    };
    let report = match p.rt.block_on(p.installer.change(
        change.as_ref(),
        &opts,
        std::sync::Arc::new(cli_regen),
    )) {
        Ok(r) => r,
        Err(e) if e.changed_nothing() => return Err(e.into()),
        // After something changed: exit 2 like a run where a host failed (1 means nothing
        // changed), and say how to go on.
        Err(e) => {
            let command = change
                .as_ref()
                .or(recorded.as_ref().map(|r| &r.change))
                .map(Change::command)
                .unwrap_or_default();
            // Those two hints already say it.
            let says_resume = matches!(
                e,
                tarmac_installer::change::ChangeError::Regenerate { .. }
                    | tarmac_installer::change::ChangeError::Prereqs { .. }
            );
            crate::render::print_error(&anyhow::Error::from(e));
            if !command.is_empty() && !says_resume {
                eprintln!(
                    "the change is recorded in genconf/state/change.json; after fixing the cause: tarmac {} --resume",
                    command.split(' ').next().unwrap_or_default()
                );
            }
            return Ok(ExitCode::from(2));
        }
    };
    if let Some(r) = &report.removed {
        for h in &r.members_removed {
            println!("{h}: removed from the quorum");
        }
        for h in &r.cleaned {
            println!("{h}: uninstalled");
        }
        for h in &r.forgotten {
            println!("{h}: forgotten (unreachable; not cleaned)");
        }
    }
    if let Some(r) = &report.replaced {
        println!(
            "{}: etcd membership moved to {} (hooks ran on {})",
            r.old, r.new, r.leader
        );
        if !r.old_reachable {
            println!("{}: unreachable; not cleaned", r.old);
        }
    }
    if let (true, Change::ReplaceMaster { old, new }) =
        (report.already_replaced, &report.state.change)
    {
        eprintln!("{new} already replaced {old} in config.yaml: continuing with the rollout");
    }
    if let Some(d) = &report.deploy {
        super::stages::print_deploy(d);
    }
    if let Some(post) = &report.postflight {
        eprintln!("postflight journal: {}", post.journal.display());
    }
    let command = report.state.change.command();
    if report.state.unfinished() {
        eprintln!(
            "error: `tarmac {command}` stopped at its {} step\nhint: fix the hosts above, then run `tarmac {} --resume`",
            report.state.step,
            command.split(' ').next().unwrap_or_default()
        );
        return Ok(ExitCode::from(2));
    }
    if !report.state.missed.is_empty() {
        eprintln!(
            "error: {} could not be uninstalled and stay in config.yaml\nhint: see the log above; fix them and run `tarmac remove-hosts` again (or --force)",
            names(&report.state.missed)
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

fn names(hosts: &[HostAddr]) -> String {
    hosts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn remove_hosts(args: RemoveHostsArgs, verbose: bool) -> anyhow::Result<ExitCode> {
    let change = (!args.remove.is_empty()).then(|| Change::RemoveHosts {
        hosts: args.remove.clone(),
        force: args.force,
    });
    run_change(
        &args.common,
        &args.regen,
        change,
        args.resume,
        args.yes,
        verbose,
    )
}

pub fn replace_master(args: ReplaceMasterArgs, verbose: bool) -> anyhow::Result<ExitCode> {
    let change = match (args.old, args.new) {
        (Some(old), Some(new)) => Some(Change::ReplaceMaster { old, new }),
        _ => None,
    };
    run_change(
        &args.common,
        &args.regen,
        change,
        args.resume,
        args.yes,
        verbose,
    )
}
