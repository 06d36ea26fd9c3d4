//! `tarmac-host backup`, `restore` and `membership`: the active packages' day-two hooks
//! (`tarmac_activate::hooks`), run under the host lock so no switch moves underneath them.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use tarmac_activate::Host;
use tarmac_activate::checks::read_environment;
use tarmac_activate::hooks::{self, HookOutput, RestorePhase};

use crate::output::print_json;

fn env(host: &Host) -> Vec<(String, String)> {
    read_environment(&host.cfg.root.join("environment"))
}

fn print_outputs(hooks: &[HookOutput]) {
    for h in hooks {
        println!("ok {} {} ({} ms)", h.package, h.hook, h.duration_ms);
        for line in h.output.lines() {
            println!("    {line}");
        }
    }
}

pub(crate) fn backup(host: &Host, out: &Path, timeout: Duration, json: bool) -> Result<ExitCode> {
    let (_lock, _) = host.lock("backup")?;
    let active = host.active()?;
    let r = hooks::backup(
        &host.store,
        &active,
        &host.active_roles()?,
        &env(host),
        out,
        timeout,
    )?;
    if json {
        print_json(&r);
    } else {
        print_outputs(&r.hooks);
        println!(
            "snapshot {}: {} bytes, sha256 {}, {} files from {}",
            r.file,
            r.size,
            r.sha256,
            r.files.len(),
            r.packages
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn restore(
    host: &Host,
    from: &Path,
    phase: RestorePhase,
    sha256: Option<&str>,
    timeout: Duration,
    json: bool,
) -> Result<ExitCode> {
    if let Some(want) = sha256 {
        let (_, got) = hooks::hash_file(from)?;
        if !got.eq_ignore_ascii_case(want) {
            return Err(tarmac_types::error_report::Hinted::new(
                format!(
                    "snapshot {} has sha256 {got}, not {want}: it was altered or damaged",
                    from.display()
                ),
                "copy the snapshot again from the controller",
            )
            .into());
        }
    }
    let (_lock, _) = host.lock("restore")?;
    let active = host.active()?;
    let work = host.cfg.state_dir_root.join(".tarmac-restore");
    let r = hooks::restore(
        &host.store,
        &active,
        &host.active_roles()?,
        &env(host),
        from,
        phase,
        &work,
        timeout,
    )?;
    if json {
        print_json(&r);
    } else {
        print_outputs(&r.hooks);
        println!("restore {}: done", phase.as_str());
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn membership(
    host: &Host,
    args: &[String],
    timeout: Duration,
    json: bool,
) -> Result<ExitCode> {
    let (_lock, _) = host.lock("membership")?;
    let active = host.active()?;
    let r = hooks::membership(
        &host.store,
        &active,
        &host.active_roles()?,
        &env(host),
        args,
        timeout,
    )?;
    if json {
        print_json(&r);
    } else {
        for l in r.lines() {
            println!("{l}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
