//! `activate`, `swap`, `rollback`, `generations`, `gc`, `setup`, `recover`, `uninstall`:
//! generations of the host and moving between them.

use anyhow::Result;
use tarmac_activate::Host;
use tarmac_pkg::Fetcher;
use tarmac_types::time::utc;
use tarmac_types::{Generation, PackageId};

use crate::output::{ids, print_json, report_switch};

pub fn activate(host: &Host, json: bool, raw: &[String]) -> Result<()> {
    let ids = ids(raw)?;
    let (lock, _) = host.lock("activate")?;
    let r = host.activate(&lock, &ids, "activate")?;
    report_switch(json, &r);
    Ok(())
}

pub fn swap(host: &Host, json: bool, id: &str) -> Result<()> {
    let id = PackageId::parse(id)?;
    let (lock, _) = host.lock("swap")?;
    report_switch(json, &host.swap(&lock, &id)?);
    Ok(())
}

pub fn rollback(host: &Host, json: bool, to: Option<u64>, set_setup_list: bool) -> Result<()> {
    let (lock, _) = host.lock("rollback")?;
    let r = host.rollback(&lock, to.map(Generation))?;
    if set_setup_list {
        host.set_setup_list_to_active(&lock)?;
        host.discard_pending(&lock)?;
    }
    report_switch(json, &r);
    Ok(())
}

pub fn generations(host: &Host, json: bool) -> Result<()> {
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
    Ok(())
}

pub fn gc(host: &Host, json: bool, keep: usize) -> Result<()> {
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
    Ok(())
}

pub fn setup(host: &Host, json: bool, fetcher: &Fetcher) -> Result<()> {
    let (lock, recovered) = host.lock("setup")?;
    let r = host.setup(&lock, fetcher)?;
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
    Ok(())
}

pub fn recover(host: &Host, json: bool) -> Result<()> {
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
    Ok(())
}

pub fn uninstall(host: &Host, purge: bool) -> Result<()> {
    let (lock, _) = host.lock("uninstall")?;
    host.uninstall(&lock, purge)?;
    println!("uninstalled {}", host.cfg.root.display());
    Ok(())
}
