//! `switch`, `confirm`, `revert`, `status`, `confirm-guard`: the confirm-or-revert commands.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use tarmac_activate::Host;
use tarmac_activate::confirm::{Confirmed, GuardOutcome, Reverted, SystemClock};
use tarmac_types::Generation;
use tarmac_types::confirm::{HostStatus, RevertReason, SwitchOutcome};
use tarmac_types::time::{format_duration, utc};

use crate::output::{ids, print_json, report_switch};

/// `tarmac-host switch IDS --confirm-within DUR [--setup-list FILE]`: the switch, then the
/// guard that enforces the deadline (`tarmac-confirm.service`). A guard that cannot be
/// started reverts the switch at once: an unguarded switch would never go back.
pub fn switch(
    host: &Host,
    json: bool,
    raw: &[String],
    window: Duration,
    setup_list: Option<PathBuf>,
) -> Result<ExitCode> {
    let ids = ids(raw)?;
    let list = setup_list
        .map(|p| std::fs::read(&p).with_context(|| format!("cannot read {}", p.display())))
        .transpose()?;
    let (lock, _) = host.lock("switch")?;
    let (report, pending) =
        host.switch_confirmable(&lock, &ids, window, list.as_deref(), &SystemClock)?;
    if host.cfg.manage_systemd {
        let armed = std::env::current_exe()
            .context("cannot find this binary's path")
            .and_then(|bin| Ok(host.systemd().arm_confirm_guard(&bin)?));
        if let Err(e) = armed {
            let _ = host.revert_pending(&lock, RevertReason::ActivationFailed);
            return Err(e.context(format!(
                "cannot start {}: reverted to generation {}",
                tarmac_activate::systemd::CONFIRM_SERVICE,
                pending.from
            )));
        }
    }
    if json {
        print_json(&SwitchOutcome {
            from: report.from,
            to: report.to,
            unchanged: report.unchanged,
            pending,
        });
    } else {
        report_switch(false, &report);
        println!(
            "confirm within {} (before {}): tarmac-host confirm --generation {}",
            format_duration(window),
            utc(pending.deadline_unix),
            report.to
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn report_revert(json: bool, r: Option<&Reverted>) {
    if json {
        print_json(&r);
        return;
    }
    match r {
        None => println!("nothing pending: nothing to revert"),
        Some(r) => println!(
            "reverted to generation {} ({}){}",
            r.record.from,
            r.reason.word(),
            if r.switch.is_none() {
                " (the host was already on it)"
            } else {
                ""
            }
        ),
    }
}

pub fn print_status(st: &HostStatus) {
    let gen_text = |g: Option<Generation>| g.map_or_else(|| "none".to_owned(), |g| g.to_string());
    println!(
        "generation {} (previous {})",
        gen_text(st.current),
        gen_text(st.previous)
    );
    match &st.pending {
        Some(p) => println!(
            "pending: switch from {} to {}, reverts at {} unless confirmed",
            p.from,
            gen_text(p.to),
            utc(p.deadline_unix)
        ),
        None => println!("pending: nothing"),
    }
    if let Some(r) = &st.switch {
        println!(
            "made current by `{}`{}{}",
            r.command,
            r.operation
                .as_deref()
                .map(|o| format!(" for {o}"))
                .unwrap_or_default(),
            r.reason
                .map(|r| format!(" ({})", r.word()))
                .unwrap_or_default()
        );
    }
    if !st.archived.is_empty() {
        println!(
            "kept as verified archives (no role here uses them): {}",
            st.archived
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for (u, s) in &st.units {
        println!("  {u}: {s}");
    }
    for (p, d) in &st.watched {
        println!("  {d}  {p}");
    }
}

pub fn confirm(host: &Host, json: bool, generation: Option<u64>) -> Result<()> {
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
    Ok(())
}

pub fn revert(host: &Host, json: bool) -> Result<()> {
    let (lock, _) = host.lock("revert")?;
    let r = host.revert_pending(&lock, RevertReason::Requested)?;
    report_revert(json, r.as_ref());
    Ok(())
}

pub fn status(host: &Host, json: bool, watched: &[String], recover: bool) -> Result<()> {
    let recovered = if recover {
        let (_lock, r) = host.lock("status")?;
        r.action
    } else {
        None
    };
    let mut st = host.status(watched)?;
    st.recovered = recovered;
    if json {
        print_json(&st);
    } else {
        print_status(&st);
    }
    Ok(())
}

pub fn confirm_guard(host: &Host, json: bool) -> Result<()> {
    let r = host.confirm_guard(&SystemClock, &|| host.lock("confirm-guard").map(|(l, _)| l))?;
    match r {
        GuardOutcome::Reverted(r) => report_revert(json, Some(&r)),
        GuardOutcome::NothingPending => {
            if json {
                print_json(&r);
            } else {
                println!("nothing pending");
            }
        }
    }
    Ok(())
}
