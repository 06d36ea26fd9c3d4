//! `apply-sysctl`, `print-setup-unit`: helpers the systemd units run.

use std::path::PathBuf;

use anyhow::{Context, Result};
use tarmac_activate::{Host, sysctl, systemd};

pub fn apply_sysctl(host: &Host, service: &str) -> Result<()> {
    let conf_path = host
        .cfg
        .root
        .join(tarmac_activate::plan::SERVICE_CONFIGURATION);
    let conf = sysctl::read_conf(&conf_path)
        .with_context(|| format!("cannot read {}", conf_path.display()))?;
    for (key, res) in sysctl::apply(&conf, Some(service)) {
        if let Err(e) = res {
            eprintln!("warning: sysctl {key}: {e}");
        }
    }
    Ok(())
}

pub fn print_setup_unit(binary: Option<PathBuf>) -> Result<()> {
    let binary = match binary {
        Some(b) => b,
        None => std::env::current_exe().context("cannot find this binary's path")?,
    };
    print!("{}", systemd::setup_service_unit(&binary));
    Ok(())
}
