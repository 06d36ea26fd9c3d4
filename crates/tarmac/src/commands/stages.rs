//! The installer stages on the command line: preflight, install-prereqs, deploy,
//! postflight, uninstall, status and logs. Each validates the configuration first (and stops
//! with the per-key errors), then runs on every host at once and exits 0 only when every
//! host succeeded.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tarmac_installer::ledger::PlacedBy;
use tarmac_installer::offline::{self, OfflineRepo};
use tarmac_installer::stages::{
    DeployOptions, Installer, PreflightOptions, StageRun, StatusReport,
};
use tarmac_ssh::Selector;
use tarmac_types::error_report::Hinted;
use tarmac_types::time::parse_flag_duration;
use tarmac_types::{HostAddr, Stage};

use crate::progress::{OutputMode, Terminal};
use crate::render::HintContext as _;

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Directory holding config.yaml, ip-detect, serve/ and state/.
    #[arg(
        long,
        alias = "genconf",
        value_name = "DIR",
        default_value = "genconf",
        global = true
    )]
    pub genconf_dir: PathBuf,
    /// For distribution authors: validate against this source tree instead of the
    /// distribution genconf wrote into genconf/serve/ (which is what the hosts get).
    #[arg(long, value_name = "DIR", env = "TARMAC_DIST", global = true)]
    pub dist: Option<PathBuf>,
    /// Only these hosts: a comma list of addresses, globs or roles (`@master`).
    #[arg(long, value_name = "SELECTOR", global = true)]
    pub hosts: Option<String>,
    /// Re-run the stage only on the hosts that did not succeed in its last run.
    #[arg(long, global = true)]
    pub retry_failed: bool,
    /// `human`: progress bars and failures on stderr, tables on stdout. `json`: only JSON on
    /// stdout: one JSON event per line for preflight, install-prereqs, deploy, postflight,
    /// uninstall, upgrade and rollback; the whole report as one JSON document for status;
    /// and any failure that stops the command as one `{"error", "causes", "hint"}` object.
    #[arg(long, value_enum, default_value_t = OutputMode::Human, global = true)]
    pub output: OutputMode,
    /// Same as `--output json`.
    #[arg(long, hide = true, global = true)]
    pub json: bool,
    /// Read the sudo password for non-root SSH users from stdin (never echoed or logged).
    #[arg(long, global = true)]
    pub sudo_password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct PreflightArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Report this check's failure but do not fail the host for it (repeatable).
    #[arg(long = "ignore-check", value_name = "NAME")]
    pub ignore: Vec<String>,
    /// Copy install.sh over SSH instead of serving it (hosts cannot reach this machine).
    #[arg(long)]
    pub push: bool,
    /// Serve artifacts on this address instead of bootstrap_url's.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// An offline prerequisites repository (the bundle's prereqs/): report, per host, the
    /// missing prerequisites it does not carry for the host's OS.
    #[arg(long, value_name = "DIR")]
    pub prereqs_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Copy the artifacts over SSH instead of letting hosts pull them over HTTP.
    #[arg(long)]
    pub push: bool,
    /// Serve artifacts on this address instead of bootstrap_url's.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Per-host deadline for install.sh (e.g. 15m, 1h30m; a bare number is seconds).
    #[arg(long, value_name = "DUR", value_parser = parse_flag_duration, default_value = "15m")]
    pub timeout: Duration,
    /// Hosts already installed on an older package list (the configuration changed: hosts
    /// were added) roll to the new one with a confirm-or-revert upgrade in batches of this
    /// size (a count or a percentage; masters always go one at a time).
    #[arg(long, default_value = tarmac_installer::upgrade::DEFAULT_BATCH)]
    pub batch: String,
    /// How long a switched host waits for its confirmation before it reverts.
    #[arg(long, value_name = "DUR", value_parser = parse_flag_duration, default_value = "2m")]
    pub confirm_window: Duration,
    /// How long node and cluster checks may take to pass during that upgrade.
    #[arg(long, value_name = "DUR", value_parser = parse_flag_duration, default_value = "5m")]
    pub check_timeout: Duration,
    /// Do not take a snapshot of the quorum store before that upgrade touches masters.
    #[arg(long)]
    pub no_backup: bool,
    /// Continue the reconciling upgrade of an interrupted deploy (state/upgrade.json), so a
    /// host that reverted by itself meanwhile is found; new hosts install either way.
    #[arg(long)]
    pub resume: bool,
}

#[derive(Debug, Args)]
pub struct InstallPrereqsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Install from an offline prerequisites repository (--prereqs-dir) uploaded over SSH:
    /// no host contacts a network repository.
    #[arg(long)]
    pub offline: bool,
    /// The offline prerequisites repository (the bundle's prereqs/ directory).
    #[arg(long, value_name = "DIR", requires = "offline")]
    pub prereqs_dir: Option<PathBuf>,
}

/// Where the offline prerequisites repository is: `--prereqs-dir`, else the `prereqs/` of the
/// bundle this tarmac runs from (or the one extracted here), when it carries one. The one
/// place that decides it (preflight and install-prereqs --offline both ask here).
pub(crate) fn prereqs_dir(flag: Option<&Path>) -> Option<PathBuf> {
    flag.map(Path::to_owned).or_else(|| {
        let bundle = crate::source::BuildSource::default().build().ok()?.bundle?;
        let dir = bundle.join(crate::source::BUNDLE_PREREQS);
        dir.join(offline::INDEX_FILE).is_file().then_some(dir)
    })
}

/// Open the offline repository at [`prereqs_dir`], checking every file's sha256 (`None`: none
/// given).
pub(crate) fn open_prereqs(flag: Option<&Path>) -> anyhow::Result<Option<OfflineRepo>> {
    let Some(dir) = prereqs_dir(flag) else {
        return Ok(None);
    };
    let repo = OfflineRepo::open(&dir)?;
    repo.verify()?;
    Ok(Some(repo))
}

#[derive(Debug, Args)]
pub struct PostflightArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// How long to wait for every check to pass (e.g. 15m, 90s; a bare number is seconds).
    #[arg(long, value_name = "DUR", value_parser = parse_flag_duration, default_value = "15m")]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
    /// Also delete the state directories (/var/lib/tarmac).
    #[arg(long)]
    pub purge: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Compare the hosts with the target of ledger entry N (`tarmac history` lists them)
    /// instead of the latest.
    #[arg(long, value_name = "N")]
    pub at: Option<u64>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[arg(long, alias = "genconf", value_name = "DIR", default_value = "genconf")]
    pub genconf_dir: PathBuf,
    /// Write every run's journal and host logs into this .tar.zst for support.
    #[arg(long, value_name = "FILE")]
    pub archive: PathBuf,
}

pub(crate) struct Prepared {
    pub(crate) installer: Installer,
    pub(crate) only: Option<Vec<HostAddr>>,
    pub(crate) rt: tokio::runtime::Runtime,
}

pub(crate) fn prepare(
    common: &CommonArgs,
    stage: Stage,
    verbose: bool,
) -> anyhow::Result<Result<Prepared, ExitCode>> {
    prepare_with(common, stage, verbose, common.output)
}

/// [`prepare`], showing progress as `progress` (which may differ from `--output`: status
/// prints its report as JSON but its progress for people, on stderr).
fn prepare_with(
    common: &CommonArgs,
    stage: Stage,
    verbose: bool,
    progress: OutputMode,
) -> anyhow::Result<Result<Prepared, ExitCode>> {
    let dist = crate::source::load_for_stages(
        common.dist.as_deref(),
        &common.genconf_dir,
        &crate::source::notice_sink(),
    )?;
    let cfg = match tarmac_genconf::validate(&dist, &common.genconf_dir) {
        Ok(c) => c,
        Err(report) if common.output == OutputMode::Json => {
            return Err(anyhow::anyhow!("{report}")).hint_context(
                || "the configuration is invalid; no host was touched".to_owned(),
                "`tarmac validate-config --output json` gives every key's mistake",
            );
        }
        Err(report) => {
            eprint!("{}", report.render());
            eprintln!("error: the configuration is invalid; no host was touched");
            return Ok(Err(ExitCode::from(1)));
        }
    };
    let _ = tarmac_ssh::raise_nofile_limit();
    let sink = Arc::new(Terminal::new(progress, verbose));
    let mut installer = Installer::new(&common.genconf_dir, cfg, sink);
    if common.sudo_password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the sudo password")?;
        installer.sudo_password =
            Some(tarmac_ssh::Secret::new(line.trim_end_matches(['\r', '\n'])));
    }
    let mut only: Option<Vec<HostAddr>> = None;
    if let Some(sel) = &common.hosts {
        let selector = Selector::parse(sel).with_context(|| format!("bad --hosts `{sel}`"))?;
        let hosts: Vec<HostAddr> = installer
            .hosts()
            .into_iter()
            .filter(|(h, r)| selector.matches(&tarmac_ssh::Target::new(h.clone()).with_role(*r)))
            .map(|(h, _)| h)
            .collect();
        if hosts.is_empty() {
            bail!(
                "--hosts `{sel}` matches no host in {}",
                common.genconf_dir.join("config.yaml").display()
            );
        }
        only = Some(hosts);
    }
    if common.retry_failed {
        let failed = installer.failed_last_time(stage)?;
        if failed.is_empty() {
            eprintln!("every host succeeded in the last {stage} run; nothing to retry");
            return Ok(Err(ExitCode::SUCCESS));
        }
        only = Some(match only {
            Some(o) => failed.into_iter().filter(|h| o.contains(h)).collect(),
            None => failed,
        });
    }
    let rt = tokio::runtime::Runtime::new()?;
    let cancel = installer.cancel.clone();
    rt.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: stopping new work and ending running commands…");
            cancel.cancel();
        }
    });
    Ok(Ok(Prepared {
        installer,
        only,
        rt,
    }))
}

fn finish(run: &StageRun) -> ExitCode {
    eprintln!(
        "journal: {}\nlogs:    {}",
        run.journal.display(),
        run.log_dir.display()
    );
    if run.all_succeeded() {
        ExitCode::SUCCESS
    } else {
        eprintln!("hint: fix the hosts above, then re-run with --retry-failed");
        ExitCode::from(2)
    }
}

macro_rules! prepared {
    ($common:expr, $stage:expr, $verbose:expr) => {
        match prepare($common, $stage, $verbose)? {
            Ok(p) => p,
            Err(code) => return Ok(code),
        }
    };
}

pub fn preflight(args: PreflightArgs, verbose: bool) -> anyhow::Result<ExitCode> {
    let offline = open_prereqs(args.prereqs_dir.as_deref())?;
    let p = prepared!(&args.common, Stage::Preflight, verbose);
    let opts = PreflightOptions {
        only: p.only.clone(),
        ignore: args.ignore,
        push: args.push,
        listen: args.listen,
        offline,
    };
    let (run, checks) = p.rt.block_on(p.installer.preflight(&opts))?;
    if args.common.output == OutputMode::Human {
        let mut out = std::io::stdout().lock();
        for (host, checks) in &checks {
            let bad = checks.iter().filter(|c| !c.passed).count();
            writeln!(out, "{host}: {} checks, {bad} failed", checks.len())?;
            for c in checks {
                let mark = if c.passed { "PASS" } else { "FAIL" };
                writeln!(out, "  {mark}  {}", c.name)?;
                // The offline check's notes say what install-prereqs --offline will install.
                if !c.passed || (c.name == offline::CHECK_NAME && c.detail.starts_with("note: ")) {
                    for l in c.detail.lines() {
                        writeln!(out, "        {l}")?;
                    }
                }
            }
        }
    }
    Ok(finish(&run))
}

/// `--offline` without the offline prerequisites repository.
pub(crate) fn no_offline_repository() -> anyhow::Error {
    Hinted::new(
        "--offline needs the offline prerequisites repository",
        "run the tarmac of a bundle made with `bundle create --with-prereqs SUITES` (it finds its prereqs/), or pass --prereqs-dir DIR",
    )
    .into()
}

pub fn install_prereqs(args: InstallPrereqsArgs, verbose: bool) -> anyhow::Result<ExitCode> {
    let offline = if args.offline {
        match open_prereqs(args.prereqs_dir.as_deref())? {
            Some(r) => Some(r),
            None => return Err(no_offline_repository()),
        }
    } else {
        None
    };
    let p = prepared!(&args.common, Stage::InstallPrereqs, verbose);
    let prereqs = tarmac_installer::prereqs::Prereqs::standard();
    let run = match &offline {
        Some(repo) => p.rt.block_on(p.installer.install_prereqs_offline(
            p.only.clone(),
            &prereqs,
            repo,
        ))?,
        None => {
            p.rt.block_on(p.installer.install_prereqs(p.only.clone(), &prereqs))?
        }
    };
    Ok(finish(&run))
}

pub fn deploy(args: DeployArgs, verbose: bool) -> anyhow::Result<ExitCode> {
    let p = prepared!(&args.common, Stage::Deploy, verbose);
    let opts = DeployOptions {
        only: p.only.clone(),
        push: args.push,
        listen: args.listen,
        timeout: args.timeout,
    };
    let up = tarmac_installer::upgrade::UpgradeOptions {
        batch: args
            .batch
            .parse()
            .map_err(|e| anyhow::anyhow!("--batch {e}"))?,
        confirm_window: args.confirm_window,
        check_deadline: args.check_timeout,
        push: args.push,
        no_backup: args.no_backup,
        resume: args.resume,
        ..Default::default()
    };
    let report = p.rt.block_on(p.installer.deploy_reconcile(&opts, &up))?;
    print_deploy(&report);
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        if !report.install.all_succeeded() {
            eprintln!("hint: fix the hosts above, then re-run with --retry-failed");
        }
        ExitCode::from(2)
    })
}

/// The journal and logs of a deploy, and of the upgrade that reconciled the hosts already
/// installed, if one ran.
pub(crate) fn print_deploy(r: &tarmac_installer::daytwo::DeployReport) {
    eprintln!(
        "journal: {}\nlogs:    {}",
        r.install.journal.display(),
        r.install.log_dir.display()
    );
    if let Some(u) = &r.upgrade {
        for (host, st) in &u.state.hosts {
            println!("{host}: {st}");
        }
        eprintln!(
            "upgrade of the installed hosts: logs {}",
            u.log_dir.display()
        );
        if let Some(s) = &u.state.stopped {
            eprintln!("upgrade stopped: {s}");
        }
    }
}

pub fn postflight(args: PostflightArgs, verbose: bool) -> anyhow::Result<ExitCode> {
    let p = prepared!(&args.common, Stage::Postflight, verbose);
    let run =
        p.rt.block_on(p.installer.postflight(p.only.clone(), args.timeout))?;
    Ok(finish(&run))
}

pub fn uninstall(args: UninstallArgs, verbose: bool) -> anyhow::Result<ExitCode> {
    let p = prepared!(&args.common, Stage::Uninstall, verbose);
    if !args.yes {
        let n = p
            .only
            .as_ref()
            .map_or_else(|| p.installer.hosts().len(), Vec::len);
        if !std::io::stdin().is_terminal() {
            return Err(Hinted::new(
                format!("uninstall removes Tarmac from {n} hosts and needs confirmation"),
                "pass --yes to confirm without a prompt",
            )
            .into());
        }
        eprint!(
            "Remove Tarmac and stop its services on {n} hosts{}? [y/N] ",
            if args.purge {
                ", deleting state directories"
            } else {
                ""
            }
        );
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("aborted; no host was touched");
            return Ok(ExitCode::from(1));
        }
    }
    let run =
        p.rt.block_on(p.installer.uninstall(p.only.clone(), args.purge))?;
    Ok(finish(&run))
}

pub fn status(args: StatusArgs, verbose: bool) -> anyhow::Result<ExitCode> {
    // The report is the machine output: progress stays human, on stderr.
    let json = args.common.output == OutputMode::Json;
    let p = match prepare_with(&args.common, Stage::Status, verbose, OutputMode::Human)? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let (run, report) = p.rt.block_on(p.installer.status(p.only.clone(), args.at))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_status(&report)?;
    }
    Ok(if run.all_succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn print_status(r: &StatusReport) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    write!(out, "{}", render_status(r))?;
    Ok(())
}

/// The human status report: the target and where it came from, then one row per host.
pub fn render_status(r: &StatusReport) -> String {
    use std::fmt::Write as _;
    use tarmac_installer::verdict::Standing;
    let mut out = String::new();
    let source = match (r.target_set_by, r.at) {
        (Some(n), Some(_)) => format!(" (as of ledger entry {n}, --at)"),
        (Some(n), None) => format!(" (set by ledger entry {n})"),
        (None, _) => " (genconf's list; the ledger records no operation yet)".to_owned(),
    };
    let _ = writeln!(
        out,
        "cluster target: {}{source}",
        r.package_list_id.as_deref().unwrap_or("none known")
    );
    if let (Some(list), Some(run)) = (&r.interim_list_id, &r.resume) {
        let _ = writeln!(
            out,
            "unfinished run {run}: hosts still on {list} are expected for now
hint: finish it with `tarmac upgrade --resume` (or `tarmac rollback --resume`)"
        );
    }
    if let Some((n, list)) = &r.pending {
        let _ = writeln!(
            out,
            "note: genconf rendered {list} (ledger entry {n}), which is not the cluster's target; `tarmac upgrade` rolls it out"
        );
    }
    let _ = writeln!(
        out,
        "{:<22} {:<13} {:>4} {:>8}  {:<6} {:<28} DRIFT",
        "HOST", "ROLE", "GEN", "PACKAGES", "UNITS", "PLACED BY"
    );
    for (host, h) in &r.hosts {
        let active_units = h
            .status
            .units
            .values()
            .filter(|s| s.as_str() == "active")
            .count();
        let mut v = Vec::new();
        match h.standing {
            Standing::Interim => v.push("expected for now (unfinished run)".to_owned()),
            Standing::NoTarget => v.push("not compared (no known target)".to_owned()),
            Standing::NotInstalled if !h.drift.missing.is_empty() => {
                v.push("not installed".to_owned())
            }
            _ => {}
        }
        if !h.drift.missing.is_empty() && h.standing != Standing::NotInstalled {
            v.push(format!("missing {}", h.drift.missing.len()));
        }
        if !h.drift.unexpected.is_empty() {
            v.push(format!("unexpected {}", h.drift.unexpected.len()));
        }
        if !h.drift.inactive_units.is_empty() {
            v.push(format!("units: {}", h.drift.inactive_units.join(" ")));
        }
        if !h.status.failed_checks.is_empty() {
            v.push(format!("checks: {}", h.status.failed_checks.join(" ")));
        }
        if h.placed_by.is_outside() {
            v.push("CHANGED OUTSIDE THE INSTALLER".to_owned());
        }
        let drift = if v.is_empty() {
            "none".to_owned()
        } else {
            v.join("; ")
        };
        let placed = match &h.placed_by {
            PlacedBy::Entry { seq, op, revert } => {
                format!("#{seq} {op}{}", if *revert { " (reverted)" } else { "" })
            }
            PlacedBy::UnfinishedRun { run } => format!("run {run}"),
            PlacedBy::SelfInstall => "self-install".to_owned(),
            PlacedBy::Outside { command } => format!("tarmac-host {command} (by hand)"),
            PlacedBy::Unknown => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<22} {:<13} {:>4} {:>8}  {:<6} {:<28} {}",
            host.to_string(),
            h.role.map(|r| r.as_str()).unwrap_or("-"),
            h.status.generation.as_deref().unwrap_or("-"),
            h.status.active.len(),
            format!("{active_units}/{}", h.status.units.len()),
            placed,
            drift
        );
    }
    out
}

pub fn logs(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let state = args.genconf_dir.join("state");
    if !state.is_dir() {
        return Err(Hinted::new(
            format!("no runs recorded in {}", state.display()),
            "logs are kept after preflight/deploy/postflight runs",
        )
        .into());
    }
    write_archive(&state, &args.archive)?;
    eprintln!("wrote {}", args.archive.display());
    Ok(ExitCode::SUCCESS)
}

/// Bundle `state/runs` and `state/logs` into a .tar.zst (atomically, 0600 from the first
/// byte: journals and host logs are private).
pub fn write_archive(state: &Path, out: &Path) -> anyhow::Result<()> {
    let f = tarmac_fsx::AtomicFile::create(out, 0o600)
        .with_context(|| format!("cannot create a temporary file for {}", out.display()))?;
    tarmac_installer::support::write_log_archive(state, f.file())
        .with_context(|| format!("cannot write {}", out.display()))?;
    f.commit()
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}
