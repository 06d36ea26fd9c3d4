//! `tarmac upgrade` and `tarmac rollback`: rolling, quorum-aware, confirm-or-revert.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tarmac_installer::upgrade::{BatchSize, Budget, UpgradeOptions, UpgradeReport, render_plan};
use tarmac_types::Stage;
use tarmac_types::time::parse_flag_duration;

use crate::commands::stages::{CommonArgs, prepare};

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Print per host which packages change, which units restart and the order; touch nothing.
    #[arg(long)]
    pub plan: bool,
    /// Agents upgraded at once: a number or a percentage of the agents.
    #[arg(long, default_value = tarmac_installer::upgrade::DEFAULT_BATCH)]
    pub batch: String,
    /// Agents that may fail before the upgrade stops: a number or a percentage.
    #[arg(long, default_value = "0")]
    pub max_failures: String,
    /// Continue the upgrade recorded in genconf/state/upgrade.json after the installer was killed.
    #[arg(long)]
    pub resume: bool,
    /// How long a switched host waits for the installer's confirmation before it reverts
    /// by itself (e.g. 2m, 90s; a bare number is seconds).
    #[arg(long, value_name = "DUR", value_parser = parse_flag_duration, default_value = "2m")]
    pub confirm_window: Duration,
    /// How long node and cluster checks may take to pass after a switch (e.g. 5m, 90s; a
    /// bare number is seconds).
    #[arg(long, value_name = "DUR", value_parser = parse_flag_duration, default_value = "5m")]
    pub check_timeout: Duration,
    /// Copy the new packages over SSH instead of letting hosts pull them over HTTP
    /// (hosts cannot reach this machine).
    #[arg(long)]
    pub push: bool,
    /// Do not take a snapshot of the quorum store before touching masters (by default an
    /// upgrade whose hosts include masters takes one first and stops if it fails).
    #[arg(long)]
    pub no_backup: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Roll back to this generation instead of the previous one.
    #[arg(long)]
    pub to: Option<u64>,
    /// Agents rolled back at once: a number or a percentage of the agents.
    #[arg(long, default_value = tarmac_installer::upgrade::DEFAULT_BATCH)]
    pub batch: String,
    /// Agents that may fail before the rollback stops: a number or a percentage.
    #[arg(long, default_value = "0")]
    pub max_failures: String,
    /// How long node and cluster checks may take to pass after a switch (e.g. 5m, 90s; a
    /// bare number is seconds).
    #[arg(long, value_name = "DUR", value_parser = parse_flag_duration, default_value = "5m")]
    pub check_timeout: Duration,
    /// Do not take a snapshot of the quorum store before touching masters.
    #[arg(long)]
    pub no_backup: bool,
}

fn options(
    batch: &str,
    max_failures: &str,
    check_timeout: Duration,
) -> anyhow::Result<UpgradeOptions> {
    Ok(UpgradeOptions {
        batch: batch
            .parse::<BatchSize>()
            .map_err(|e| anyhow::anyhow!("--batch {e}"))?,
        max_failures: max_failures
            .parse::<Budget>()
            .map_err(|e| anyhow::anyhow!("--max-failures {e}"))?,
        check_deadline: check_timeout,
        ..UpgradeOptions::default()
    })
}

pub fn upgrade(args: UpgradeArgs, verbose: bool) -> anyhow::Result<ExitCode> {
    let mut opts = options(&args.batch, &args.max_failures, args.check_timeout)?;
    opts.confirm_window = args.confirm_window;
    opts.resume = args.resume;
    opts.push = args.push;
    opts.no_backup = args.no_backup;
    let mut p = match prepare(&args.common, Stage::Upgrade, verbose)? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    p.installer.only = p.only.clone();
    if args.plan {
        let (list, waves, plans) = p.rt.block_on(p.installer.upgrade_plan(opts.batch))?;
        print!("{}", render_plan(&list, &waves, &plans));
        return Ok(ExitCode::SUCCESS);
    }
    let report = p.rt.block_on(p.installer.upgrade(&opts))?;
    Ok(finish("upgrade", &report))
}

pub fn rollback(args: RollbackArgs, verbose: bool) -> anyhow::Result<ExitCode> {
    let mut opts = options(&args.batch, &args.max_failures, args.check_timeout)?;
    opts.to = args.to;
    opts.no_backup = args.no_backup;
    let mut p = match prepare(&args.common, Stage::Rollback, verbose)? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    p.installer.only = p.only.clone();
    let report = p.rt.block_on(p.installer.rollback(&opts))?;
    Ok(finish("rollback", &report))
}

fn finish(what: &str, r: &UpgradeReport) -> ExitCode {
    for (host, st) in &r.state.hosts {
        println!("{host}: {st}");
    }
    if let Some(s) = &r.state.snapshot {
        eprintln!("snapshot taken first: {s}");
    }
    eprintln!(
        "journal: {}",
        tarmac_installer::upgrade::UpgradeState::path(
            r.log_dir
                .parent()
                .and_then(|p| p.parent())
                .unwrap_or(&r.log_dir)
        )
        .display()
    );
    eprintln!("logs:    {}", r.log_dir.display());
    if r.succeeded() {
        eprintln!("{what} finished");
        ExitCode::SUCCESS
    } else {
        if let Some(s) = &r.state.stopped {
            eprintln!("{what} stopped: {s}");
        }
        eprintln!(
            "hint: hosts not listed as ok/unchanged kept (or went back to) their previous generation; fix the cause, then re-run `tarmac {what}`"
        );
        ExitCode::from(2)
    }
}
