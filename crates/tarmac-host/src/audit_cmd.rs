//! `check`, `verify`, `check-host`: auditing the host and its packages.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use tarmac_activate::Host;
use tarmac_activate::checks::{self, CheckStatus};
use tarmac_types::PackageId;

use crate::output::print_json;

pub fn check(host: &Host, json: bool, list: bool, timeout: Duration) -> Result<ExitCode> {
    let active = host.active()?;
    let specs = checks::list_checks(&host.store, &active, &host.active_roles()?)?;
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
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub fn verify(host: &Host, json: bool) -> Result<ExitCode> {
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
        let archived = r.packages.iter().filter(|p| p.archived).count();
        println!(
            "{}: {} packages ({archived} kept as verified archives only), {files} files, generation {}",
            if r.ok { "ok" } else { "FAILED" },
            r.packages.len(),
            r.current
                .map_or_else(|| "none".to_owned(), |g| g.to_string())
        );
    }
    Ok(if r.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `check-host`: this host's facts against the manifest's host requirements.
pub fn check_host(manifest: &Path, json: bool) -> Result<ExitCode> {
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
