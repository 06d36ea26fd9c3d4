//! `tarmac-host`: the on-host package tool. A thin CLI over `tarmac-activate`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod confirm_cmd;
mod hooks_cmd;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde::Serialize;
use tarmac_activate::checks::{self, CheckStatus};
use tarmac_activate::confirm::{Confirmed, GuardOutcome, SystemClock};
use tarmac_activate::{Host, HostConfig, SwitchReport, sysctl, systemd};
use tarmac_events::{Event, Level, Sink};
use tarmac_pkg::{Added, Fetcher, Pin};
use tarmac_types::confirm::RevertReason;
use tarmac_types::{Digest, Generation, PackageId};

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            print_error(&e);
            ExitCode::FAILURE
        }
    }
}

/// `error: …`, every `caused by: …`, then the `hint:` lines found anywhere in the chain.
fn print_error(err: &anyhow::Error) {
    eprint!(
        "{}",
        tarmac_types::error_report::ErrorReport::of(&**err).to_text()
    );
}

use tarmac_types::time::utc;

fn sink(verbose: bool) -> Sink {
    Arc::new(move |e: Event| match e {
        Event::Notice {
            level: Level::Warn | Level::Error,
            message,
        } => eprintln!("warning: {message}"),
        Event::Notice {
            level: Level::Info,
            message,
        } if verbose => eprintln!("{message}"),
        Event::Activation { phase, packages } if verbose => {
            eprintln!("{phase} ({} packages)", packages.len())
        }
        _ => {}
    })
}

pub(crate) fn ids(raw: &[String]) -> Result<Vec<PackageId>> {
    raw.iter()
        .map(|s| PackageId::parse(s).map_err(anyhow::Error::from))
        .collect()
}

pub(crate) fn print_json(v: &impl Serialize) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializable"));
}

pub(crate) fn report_switch(json: bool, r: &SwitchReport) {
    if json {
        print_json(r);
    } else if r.unchanged {
        println!(
            "unchanged: generation {} already runs these {} packages",
            r.to,
            r.packages.len()
        );
    } else {
        let from = r
            .from
            .map_or_else(|| "nothing".to_owned(), |g| format!("generation {g}"));
        println!(
            "switched from {from} to generation {} ({} packages; stopped {}; flip {} µs; total {} ms)",
            r.to,
            r.packages.len(),
            if r.stopped.is_empty() {
                "nothing".to_owned()
            } else {
                r.stopped.join(" ")
            },
            r.flip_us,
            r.total_ms
        );
    }
}

/// The cluster CA in setup-flags/ (install.sh writes it for an https bootstrap_url).
const REPOSITORY_CA_FILE: &str = "repository-ca.pem";

/// The repository client: https trusts only the cluster CA in `ca_file` (never the system
/// store); without that file (http or file repositories) https is refused. A `--repository-ca`
/// that cannot be read is an error; the default file may be absent.
fn repository_fetcher(ca_file: &std::path::Path, explicit: bool) -> Result<Fetcher> {
    let fetcher = Fetcher::default();
    match std::fs::read(ca_file) {
        Ok(pem) => Ok(fetcher.with_ca_pem(&pem, &ca_file.display().to_string())?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(fetcher),
        Err(e) => Err(anyhow::Error::from(e).context(format!(
            "cannot read the repository CA {}",
            ca_file.display()
        ))),
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let g = &cli.global;
    let mut cfg = HostConfig::new(&g.root);
    if let Some(r) = &g.repository {
        cfg.repository = r.clone();
    }
    cfg.config_dir = g.config_dir.clone();
    cfg.state_dir_root = g.state_dir_root.clone();
    if g.rooted_systemd {
        cfg = cfg.rooted_systemd();
    }
    cfg.manage_systemd = !g.no_systemd;
    cfg.add_users = !g.no_users;
    cfg.wait_for_lock = g.wait;
    let json = g.json;
    let ca_file = g
        .repository_ca
        .clone()
        .unwrap_or_else(|| cfg.setup_flags_dir().join(REPOSITORY_CA_FILE));
    let fetcher = repository_fetcher(&ca_file, g.repository_ca.is_some())?;
    let host = Host::new(cfg, sink(g.verbose));

    match cli.command {
        Command::List => {
            let ids = host.store.list()?;
            if json {
                print_json(&ids);
            } else {
                let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for id in &ids {
                    by_name
                        .entry(id.name().to_string())
                        .or_default()
                        .push(id.version().to_owned());
                }
                for (name, versions) in by_name {
                    if versions.len() == 1 {
                        println!("{name}--{}", versions[0]);
                    } else {
                        println!("{name}:");
                        for v in versions {
                            println!("  {v}");
                        }
                    }
                }
            }
        }
        Command::Active => {
            let ids = host.active()?;
            if json {
                print_json(&ids);
            } else {
                for id in ids {
                    println!("{id}");
                }
            }
        }
        Command::Add { file, sha256 } => {
            let sha = sha256.map(|s| s.parse::<Digest>()).transpose()?;
            let (lock, _) = host.lock("add")?;
            let (id, added) = host.add(&lock, &file, sha)?;
            match added {
                Added::New(ex) => println!("added {id} ({} files)", ex.manifest.file_count()),
                Added::AlreadyPresent => println!("{id} is already in the store"),
            }
        }
        Command::Fetch {
            repository_url,
            sha256,
            package_list,
            require_sha256,
            ids: raw,
        } => {
            let mut want: BTreeMap<PackageId, Option<Pin>> = BTreeMap::new();
            if let Some(p) = &package_list {
                let bytes =
                    std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
                let entries = tarmac_activate::setup::parse_package_list(&bytes)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
                for e in entries {
                    want.insert(e.id, e.pin);
                }
            }
            for id in ids(&raw)? {
                want.entry(id).or_insert(None);
            }
            for s in &sha256 {
                let (id, pin) = s.split_once('=').context("--sha256 takes ID=SHA256:SIZE")?;
                let id = PackageId::parse(id)?;
                let pin: Pin = pin.parse()?;
                want.insert(id, Some(pin));
            }
            if want.is_empty() {
                bail!("nothing to fetch: give package ids or --package-list");
            }
            if require_sha256 && let Some((id, _)) = want.iter().find(|(_, d)| d.is_none()) {
                bail!("no sha256 and size known for {id} (--require-sha256)");
            }
            let items: Vec<(PackageId, Option<Pin>)> = want.into_iter().collect();
            let (lock, _) = host.lock("fetch")?;
            let mut failed = 0;
            for ((id, _), r) in
                items
                    .iter()
                    .zip(host.fetch(&lock, &fetcher, &repository_url, &items, 4))
            {
                match r {
                    Ok(Added::New(_)) => println!("fetched {id}"),
                    Ok(Added::AlreadyPresent) => println!("{id} is already in the store"),
                    Err(e) => {
                        failed += 1;
                        print_error(&anyhow::Error::from(e).context(format!("cannot fetch {id}")));
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} of {} packages could not be fetched", items.len());
            }
        }
        Command::Remove { ids: raw } => {
            let ids = ids(&raw)?;
            let (lock, _) = host.lock("remove")?;
            for (id, removed) in host.remove(&lock, &ids)? {
                if removed {
                    println!("removed {id}");
                } else {
                    println!("{id} was not in the store");
                }
            }
        }
        Command::Activate { ids: raw } => {
            let ids = ids(&raw)?;
            let (lock, _) = host.lock("activate")?;
            let r = host.activate(&lock, &ids, "activate")?;
            report_switch(json, &r);
        }
        Command::Swap { id } => {
            let id = PackageId::parse(&id)?;
            let (lock, _) = host.lock("swap")?;
            report_switch(json, &host.swap(&lock, &id)?);
        }
        Command::Rollback { to, set_setup_list } => {
            let (lock, _) = host.lock("rollback")?;
            let r = host.rollback(&lock, to.map(Generation))?;
            if set_setup_list {
                host.set_setup_list_to_active(&lock)?;
                host.discard_pending(&lock)?;
            }
            report_switch(json, &r);
        }
        Command::Switch {
            ids: raw,
            confirm_within,
            setup_list,
        } => return confirm_cmd::switch(&host, json, &raw, confirm_within, setup_list),
        Command::Confirm { generation } => {
            let (lock, _) = host.lock("confirm")?;
            let r = host.confirm(&lock, generation.map(Generation))?;
            if json {
                print_json(&r);
            } else {
                match r {
                    Confirmed::Confirmed { generation } => {
                        println!("confirmed generation {generation}")
                    }
                    Confirmed::NothingPending { .. } => println!("nothing to confirm"),
                }
            }
        }
        Command::Revert => {
            let (lock, _) = host.lock("revert")?;
            let r = host.revert_pending(&lock, RevertReason::Requested)?;
            confirm_cmd::report_revert(json, r.as_ref());
        }
        Command::Status { watched, recover } => {
            let recovered = if recover {
                let (_lock, r) = host.lock("status")?;
                r.action
            } else {
                None
            };
            let mut st = host.status(&watched)?;
            st.recovered = recovered;
            if json {
                print_json(&st);
            } else {
                confirm_cmd::print_status(&st);
            }
        }
        Command::ConfirmGuard => {
            let r =
                host.confirm_guard(&SystemClock, &|| host.lock("confirm-guard").map(|(l, _)| l))?;
            match r {
                GuardOutcome::Reverted(r) => confirm_cmd::report_revert(json, Some(&r)),
                GuardOutcome::NothingPending => {
                    if json {
                        print_json(&r);
                    } else {
                        println!("nothing pending");
                    }
                }
            }
        }
        Command::Generations => {
            let gens = host.generations()?;
            if json {
                print_json(&gens);
            } else {
                for g in gens {
                    println!(
                        "{}{:>4}  {}  {:<9} {} packages",
                        if g.current { "*" } else { " " },
                        g.generation,
                        utc(g.created_unix),
                        g.command,
                        g.packages.len(),
                    );
                }
            }
        }
        Command::Gc { keep } => {
            let (lock, _) = host.lock("gc")?;
            let r = host.gc(&lock, keep)?;
            if json {
                print_json(&r);
            } else {
                println!(
                    "removed {} generations and {} packages; kept generations {:?}",
                    r.removed_generations.len(),
                    r.removed_packages.len(),
                    r.kept_generations.iter().map(|g| g.0).collect::<Vec<_>>()
                );
            }
        }
        Command::Backup { out, timeout } => return hooks_cmd::backup(&host, &out, timeout, json),
        Command::Restore {
            from,
            phase,
            sha256,
            timeout,
        } => {
            return hooks_cmd::restore(&host, &from, phase, sha256.as_deref(), timeout, json);
        }
        Command::Membership {
            action,
            member,
            timeout,
        } => {
            let mut args = vec![action.clone()];
            match (action.as_str(), member) {
                ("list", None) => {}
                ("list", Some(_)) => bail!("`membership list` takes no member"),
                (_, Some(m)) => args.push(m),
                (a, None) => bail!("`membership {a}` needs the member's host address"),
            }
            return hooks_cmd::membership(&host, &args, timeout, json);
        }
        Command::Check { list, timeout } => {
            let active = host.active()?;
            let specs = checks::list_checks(&host.store, &active)?;
            if list {
                if json {
                    print_json(&specs);
                } else {
                    let mut last: Option<&PackageId> = None;
                    for s in &specs {
                        if last != Some(&s.package) {
                            println!("{}", s.package);
                            last = Some(&s.package);
                        }
                        println!(
                            " - {}{}",
                            s.check,
                            if s.executable {
                                ""
                            } else {
                                " (not executable)"
                            }
                        );
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            let env = checks::read_environment(&host.cfg.root.join("environment"));
            let results = checks::run_checks(&specs, timeout, &env);
            let failed = results
                .iter()
                .filter(|r| r.status != CheckStatus::Ok)
                .count();
            if json {
                print_json(&results);
            } else {
                for r in &results {
                    let label = match r.status {
                        CheckStatus::Ok => "ok",
                        CheckStatus::Failed => "FAILED",
                        CheckStatus::TimedOut => "TIMED OUT",
                        CheckStatus::NotExecutable => "NOT EXECUTABLE",
                        CheckStatus::Error => "ERROR",
                    };
                    println!(
                        "{label:<14} {} {} ({} ms)",
                        r.package, r.check, r.duration_ms
                    );
                    if r.status != CheckStatus::Ok {
                        for line in r
                            .output
                            .lines()
                            .rev()
                            .take(20)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                        {
                            println!("    {line}");
                        }
                    }
                }
                println!(
                    "{} of {} checks passed",
                    results.len() - failed,
                    results.len()
                );
            }
            if failed > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Setup => {
            let (lock, recovered) = host.lock("setup")?;
            let r = host.setup(&lock, &fetcher)?;
            if json {
                print_json(&serde_json::json!({"recovered": recovered, "setup": r}));
            } else {
                if let Some(a) = &recovered.action {
                    println!("recovery: interrupted switch {a}");
                }
                for id in &r.fetched {
                    println!("fetched {id}");
                }
                match &r.switch {
                    Some(s) => report_switch(false, s),
                    None => println!("no setup flags; started the current generation"),
                }
            }
        }
        Command::Verify => {
            let r = host.verify()?;
            if json {
                print_json(&r);
            } else {
                for p in &r.packages {
                    for problem in &p.problems {
                        println!("{}: {problem}", p.id);
                    }
                }
                for h in &r.host {
                    println!("host: {h}");
                }
                let files: usize = r.packages.iter().map(|p| p.files).sum();
                println!(
                    "{}: {} packages, {files} files, generation {}",
                    if r.ok { "ok" } else { "FAILED" },
                    r.packages.len(),
                    r.current
                        .map_or_else(|| "none".to_owned(), |g| g.to_string())
                );
            }
            if !r.ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Uninstall { purge } => {
            let (lock, _) = host.lock("uninstall")?;
            host.uninstall(&lock, purge)?;
            println!("uninstalled {}", host.cfg.root.display());
        }
        Command::Recover => {
            let (_lock, r) = host.lock("recover")?;
            if json {
                print_json(&r);
            } else {
                match &r.action {
                    Some(a) => println!(
                        "interrupted switch to generation {} {a}",
                        r.to.map_or_else(|| "?".to_owned(), |g| g.to_string())
                    ),
                    None => println!("nothing to recover"),
                }
                if !r.removed_temporaries.is_empty() {
                    println!("removed {} temporary entries", r.removed_temporaries.len());
                }
            }
        }
        Command::ApplySysctl { service } => {
            let conf_path = host
                .cfg
                .root
                .join(tarmac_activate::plan::SERVICE_CONFIGURATION);
            let conf = sysctl::read_conf(&conf_path)
                .with_context(|| format!("cannot read {}", conf_path.display()))?;
            for (key, res) in sysctl::apply(&conf, Some(&service)) {
                if let Err(e) = res {
                    eprintln!("warning: sysctl {key}: {e}");
                }
            }
        }
        Command::CheckHost { manifest } => return check_host(&manifest, json),
        Command::PrintSetupUnit { binary } => {
            let binary = match binary {
                Some(b) => b,
                None => std::env::current_exe().context("cannot find this binary's path")?,
            };
            print!("{}", systemd::setup_service_unit(&binary));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `check-host`: this host's facts against the manifest's host requirements.
fn check_host(manifest: &std::path::Path, json: bool) -> Result<ExitCode> {
    use tarmac_pkg::hostreq;
    let bytes = std::fs::read(manifest)
        .with_context(|| format!("cannot read the build manifest {}", manifest.display()))?;
    let m = tarmac_pkg::manifest::Manifest::parse_unverified(&bytes)
        .with_context(|| format!("{} is not a usable build manifest", manifest.display()))?;
    let req = &m.host_requirements;
    let facts = tarmac_activate::hostfacts::gather(req);
    let unmet = hostreq::check(req, &facts);
    if json {
        #[derive(Serialize)]
        struct Out<'a> {
            facts: &'a hostreq::HostFacts,
            unmet: Vec<String>,
        }
        print_json(&Out {
            facts: &facts,
            unmet: unmet.iter().map(|u| u.to_string()).collect(),
        });
    } else if unmet.is_empty() {
        println!(
            "this host can run bootstrap {}: {} kernel {}, systemd {}, glibc {}",
            m.bootstrap_id.get(..12).unwrap_or(&m.bootstrap_id),
            facts.architecture,
            facts.kernel,
            facts
                .systemd
                .map_or_else(|| "none".to_owned(), |v| v.to_string()),
            facts.glibc.as_deref().unwrap_or("none"),
        );
    } else {
        for u in &unmet {
            println!("{u}");
        }
    }
    // 3, not 1: install.sh tells "requirements not met" from "tarmac-host failed to run".
    Ok(if unmet.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
