//! Day two on the command line: `backup`, `restore`, `remove-hosts` and `replace-master`
//! (and the reconciling `deploy` in `stages.rs`). The library does the remote work; this
//! module adds what only the front end does: confirmations, the config.yaml edit and the
//! re-render of genconf/serve/ between the membership change and the rollout.
//!
//! Exit codes, as for the other stages: 0 done, 1 refused or invalid input (nothing
//! changed), 2 ran and some host failed.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tarmac_installer::daytwo::{BackupOptions, edited_lists};
use tarmac_installer::stages::{DeployOptions, Installer};
use tarmac_installer::upgrade::UpgradeOptions;
use tarmac_types::time::parse_flag_duration;
use tarmac_types::{HostAddr, Role, Stage};

use super::genconf::GenconfInputs;
use super::stages::{CommonArgs, Prepared, prepare};
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
    /// How long a switched host waits for its confirmation before it reverts.
    #[arg(long, value_name = "DUR", value_parser = parse_flag_duration, default_value = "2m")]
    pub confirm_window: Duration,
    /// Do not take a snapshot before the rollout touches masters.
    #[arg(long)]
    pub no_backup: bool,
}

#[derive(Debug, Args)]
pub struct RemoveHostsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The hosts to remove, as config.yaml lists them.
    #[arg(required = true)]
    pub remove: Vec<HostAddr>,
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
    pub old: HostAddr,
    /// A fresh host that takes its place.
    pub new: HostAddr,
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
        bail!("{question}: this needs confirmation\nhint: pass --yes to confirm without a prompt");
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

/// Write config.yaml with `changes` (layout and comments kept), atomically.
fn edit_config(
    genconf_dir: &Path,
    changes: &[(String, Option<serde_json::Value>)],
) -> anyhow::Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let path = genconf_dir.join("config.yaml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let next = tarmac_config::yamledit::set_keys(&text, changes)
        .map_err(|e| anyhow::anyhow!("cannot edit {}: {e}", path.display()))?;
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&path)?.permissions().mode() & 0o7777
    };
    tarmac_fsx::write_atomic(&path, next.as_bytes(), mode)
        .with_context(|| format!("cannot write {}", path.display()))?;
    for (k, v) in changes {
        eprintln!(
            "{}: {k} = {}",
            path.display(),
            v.as_ref().map_or("(removed)".to_owned(), |v| v.to_string())
        );
    }
    Ok(())
}

fn lists(inst: &Installer) -> Vec<(Role, Vec<HostAddr>)> {
    Role::ALL.iter().map(|r| (*r, inst.cfg.hosts(*r))).collect()
}

/// After config.yaml changed: genconf again, then `deploy` (new hosts install, the others
/// roll to the new configuration), then postflight on everyone.
fn regenerate_and_roll(
    common: &CommonArgs,
    regen: &RegenArgs,
    fresh: &[HostAddr],
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    let inputs = GenconfInputs {
        genconf_dir: common.genconf_dir.clone(),
        source: BuildSource {
            dist: common.dist.clone(),
            build_dir: regen.build_dir.clone(),
            public_key: regen.public_key.clone(),
        },
    };
    match super::genconf::render(&inputs)? {
        Ok(r) => eprintln!(
            "genconf: config {} → cluster package list {}",
            r.config_id, r.cluster_package_list_id
        ),
        Err(e) => {
            return Err(anyhow::Error::from(e).context(
                "config.yaml was changed but genconf failed; fix the cause, then run `tarmac genconf` and `tarmac deploy`",
            ));
        }
    }
    let p: Prepared = prepared!(common, Stage::Deploy, verbose);
    if !fresh.is_empty() {
        // A fresh host gets the prerequisites first, as `install-prereqs` gives them.
        let prereqs = tarmac_installer::prereqs::Prereqs::standard();
        let run =
            p.rt.block_on(p.installer.install_prereqs(Some(fresh.to_vec()), &prereqs))?;
        if !run.all_succeeded() {
            eprintln!(
                "install-prereqs journal: {}\nhint: fix the new host, then run `tarmac deploy`",
                run.journal.display()
            );
            return Ok(ExitCode::from(2));
        }
    }
    let up = UpgradeOptions {
        check_deadline: regen.check_timeout,
        confirm_window: regen.confirm_window,
        no_backup: regen.no_backup,
        ..UpgradeOptions::default()
    };
    let report =
        p.rt.block_on(p.installer.deploy_reconcile(&DeployOptions::default(), &up))?;
    super::stages::print_deploy(&report);
    if !report.succeeded() {
        return Ok(ExitCode::from(2));
    }
    let post =
        p.rt.block_on(p.installer.postflight(None, regen.check_timeout))?;
    eprintln!("postflight journal: {}", post.journal.display());
    Ok(if post.all_succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

pub fn remove_hosts(args: RemoveHostsArgs, verbose: bool) -> anyhow::Result<ExitCode> {
    let p = prepared!(&args.common, Stage::RemoveHosts, verbose);
    let names = args
        .remove
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if !confirm(
        args.yes,
        &format!("Remove {names} from the cluster (uninstalling them where reachable)"),
    )? {
        eprintln!("aborted; no host was touched");
        return Ok(ExitCode::from(1));
    }
    let report =
        p.rt.block_on(p.installer.remove_hosts(&args.remove, args.force))?;
    for h in &report.members_removed {
        println!("{h}: removed from the quorum");
    }
    for h in &report.cleaned {
        println!("{h}: uninstalled");
    }
    for h in &report.forgotten {
        println!("{h}: forgotten (unreachable; not cleaned)");
    }
    let gone: Vec<HostAddr> = report
        .cleaned
        .iter()
        .chain(&report.forgotten)
        .cloned()
        .collect();
    let missed: Vec<&HostAddr> = args.remove.iter().filter(|h| !gone.contains(h)).collect();
    edit_config(
        &args.common.genconf_dir,
        &edited_lists(&lists(&p.installer), &gone, None),
    )?;
    drop(p);
    if !missed.is_empty() {
        eprintln!(
            "error: {} could not be uninstalled and stay in config.yaml\nhint: see the log above; fix them and run `tarmac remove-hosts` again (or --force)",
            missed
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let code = regenerate_and_roll(&args.common, &args.regen, &[], verbose)?;
    Ok(if missed.is_empty() {
        code
    } else {
        ExitCode::from(2)
    })
}

pub fn replace_master(args: ReplaceMasterArgs, verbose: bool) -> anyhow::Result<ExitCode> {
    let p = prepared!(&args.common, Stage::ReplaceMaster, verbose);
    if !confirm(
        args.yes,
        &format!(
            "Move master {}'s quorum membership to {} and install {} as a master",
            args.old, args.new, args.new
        ),
    )? {
        eprintln!("aborted; no host was touched");
        return Ok(ExitCode::from(1));
    }
    match p
        .rt
        .block_on(p.installer.replace_master(&args.old, &args.new))?
    {
        Some(r) => {
            println!(
                "{}: etcd membership moved to {} (hooks ran on {})",
                r.old, r.new, r.leader
            );
            if !r.old_reachable {
                println!("{}: unreachable; not cleaned", r.old);
            }
        }
        None => eprintln!(
            "{} already replaced {} in config.yaml: continuing with the rollout",
            args.new, args.old
        ),
    }
    edit_config(
        &args.common.genconf_dir,
        &edited_lists(&lists(&p.installer), &[], Some((&args.old, &args.new))),
    )?;
    drop(p);
    regenerate_and_roll(
        &args.common,
        &args.regen,
        std::slice::from_ref(&args.new),
        verbose,
    )
}
