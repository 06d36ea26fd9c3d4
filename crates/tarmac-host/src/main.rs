//! `tarmac-host`: the on-host package tool. A thin CLI over `tarmac-activate`; each command
//! group lives in its own module.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod audit_cmd;
mod cli;
mod confirm_cmd;
mod generation_cmd;
mod hooks_cmd;
mod output;
mod relay_cmd;
mod store_cmd;
mod system_cmd;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use tarmac_activate::{Host, HostConfig};

use cli::{Cli, Command, Global};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            output::print_error(&e);
            ExitCode::FAILURE
        }
    }
}

/// The host configuration the global flags describe.
fn host_config(g: &Global) -> HostConfig {
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
    cfg.extract_all = g.extract_all;
    cfg
}

fn run(cli: Cli) -> Result<ExitCode> {
    let g = &cli.global;
    let cfg = host_config(g);
    let json = g.json;
    let ca_file = g
        .repository_ca
        .clone()
        .unwrap_or_else(|| cfg.setup_flags_dir().join(store_cmd::REPOSITORY_CA_FILE));
    let fetcher = store_cmd::repository_fetcher(&ca_file, g.repository_ca.is_some())?;
    let host = Host::new(cfg, output::sink(g.verbose));

    match cli.command {
        Command::List => store_cmd::list(&host, json)?,
        Command::Active => store_cmd::active(&host, json)?,
        Command::Add { file, sha256 } => store_cmd::add(&host, &file, sha256)?,
        Command::Fetch {
            repository_url,
            sha256,
            package_list,
            require_sha256,
            mirrors,
            ids,
        } => store_cmd::fetch(
            &host,
            &fetcher,
            store_cmd::FetchArgs {
                repository_url,
                sha256,
                package_list,
                require_sha256,
                mirrors,
                ids,
            },
        )?,
        Command::Remove { ids } => store_cmd::remove(&host, &ids)?,
        Command::Activate { ids } => generation_cmd::activate(&host, json, &ids)?,
        Command::Swap { id } => generation_cmd::swap(&host, json, &id)?,
        Command::Rollback { to, set_setup_list } => {
            generation_cmd::rollback(&host, json, to, set_setup_list)?
        }
        Command::Switch {
            ids,
            confirm_within,
            setup_list,
        } => return confirm_cmd::switch(&host, json, &ids, confirm_within, setup_list),
        Command::Confirm { generation } => confirm_cmd::confirm(&host, json, generation)?,
        Command::Revert => confirm_cmd::revert(&host, json)?,
        Command::Status { watched, recover } => {
            confirm_cmd::status(&host, json, &watched, recover)?
        }
        Command::ConfirmGuard => confirm_cmd::confirm_guard(&host, json)?,
        Command::Generations => generation_cmd::generations(&host, json)?,
        Command::Gc { keep } => generation_cmd::gc(&host, json, keep)?,
        Command::Check { list, timeout } => {
            return audit_cmd::check(&host, json, list, timeout);
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
                ("list", Some(_)) => anyhow::bail!("`membership list` takes no member"),
                (_, Some(m)) => args.push(m),
                (a, None) => anyhow::bail!("`membership {a}` needs the member's host address"),
            }
            return hooks_cmd::membership(&host, &args, timeout, json);
        }
        Command::Setup => generation_cmd::setup(&host, json, &fetcher)?,
        Command::Verify => return audit_cmd::verify(&host, json),
        Command::Uninstall { purge } => generation_cmd::uninstall(&host, purge)?,
        Command::Recover => generation_cmd::recover(&host, json)?,
        Command::ApplySysctl { service } => system_cmd::apply_sysctl(&host, &service)?,
        Command::CheckHost { manifest } => return audit_cmd::check_host(&manifest, json),
        Command::PrintSetupUnit { binary } => system_cmd::print_setup_unit(binary)?,
        Command::Relay { listen, files, ttl } => relay_cmd::relay(&host, listen, &files, ttl)?,
    }
    Ok(ExitCode::SUCCESS)
}
