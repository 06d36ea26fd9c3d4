//! `list`, `active`, `add`, `fetch`, `remove`: the package store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tarmac_activate::Host;
use tarmac_pkg::{Added, Fetcher, Pin};
use tarmac_types::{Digest, PackageId};

use crate::output::{ids, print_error, print_json};

/// The cluster CA in setup-flags/ (install.sh writes it for an https bootstrap_url).
pub const REPOSITORY_CA_FILE: &str = "repository-ca.pem";

/// The repository client: https trusts only the cluster CA in `ca_file` (never the system
/// store); without that file (http or file repositories) https is refused. A `--repository-ca`
/// that cannot be read is an error; the default file may be absent.
pub fn repository_fetcher(ca_file: &Path, explicit: bool) -> Result<Fetcher> {
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

pub fn list(host: &Host, json: bool) -> Result<()> {
    let ids = host.store.list()?;
    if json {
        print_json(&ids);
    } else {
        let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for id in &ids {
            let kept = if host.store.archived(id)?.is_some() {
                " (archive only: no role of this host uses it)"
            } else {
                ""
            };
            by_name
                .entry(id.name().to_string())
                .or_default()
                .push(format!("{}{kept}", id.version()));
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
    Ok(())
}

pub fn active(host: &Host, json: bool) -> Result<()> {
    let ids = host.active()?;
    if json {
        print_json(&ids);
    } else {
        for id in ids {
            println!("{id}");
        }
    }
    Ok(())
}

pub fn add(host: &Host, file: &Path, sha256: Option<String>) -> Result<()> {
    let sha = sha256.map(|s| s.parse::<Digest>()).transpose()?;
    let (lock, _) = host.lock("add")?;
    let (id, added) = host.add(&lock, file, sha)?;
    match added {
        Added::New(ex) if ex.archived => {
            println!("added {id} (kept as its verified archive: no role of this host uses it)")
        }
        Added::New(ex) => println!("added {id} ({} files)", ex.manifest.file_count()),
        Added::AlreadyPresent => println!("{id} is already in the store"),
    }
    Ok(())
}

pub struct FetchArgs {
    pub repository_url: String,
    pub sha256: Vec<String>,
    pub package_list: Option<PathBuf>,
    pub require_sha256: bool,
    pub mirrors: Vec<String>,
    pub ids: Vec<String>,
}

pub fn fetch(host: &Host, fetcher: &Fetcher, a: FetchArgs) -> Result<()> {
    let mut want: BTreeMap<PackageId, Option<Pin>> = BTreeMap::new();
    if let Some(p) = &a.package_list {
        let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
        let entries = tarmac_activate::setup::parse_package_list(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        for e in entries {
            want.insert(e.id, e.pin);
        }
    }
    for id in ids(&a.ids)? {
        want.entry(id).or_insert(None);
    }
    for s in &a.sha256 {
        let (id, pin) = s.split_once('=').context("--sha256 takes ID=SHA256:SIZE")?;
        let id = PackageId::parse(id)?;
        let pin: Pin = pin.parse()?;
        want.insert(id, Some(pin));
    }
    if want.is_empty() {
        bail!("nothing to fetch: give package ids or --package-list");
    }
    if let Some(m) = a
        .mirrors
        .iter()
        .find(|m| !(m.starts_with("http://") || m.starts_with("https://")))
    {
        bail!(
            "--mirror {m}: a mirror is the http:// or https:// URL of a peer's `tarmac-host relay`"
        );
    }
    if a.require_sha256
        && let Some((id, _)) = want.iter().find(|(_, d)| d.is_none())
    {
        bail!("no sha256 and size known for {id} (--require-sha256)");
    }
    let items: Vec<(PackageId, Option<Pin>)> = want.into_iter().collect();
    let (lock, _) = host.lock("fetch")?;
    let mut failed = 0;
    for ((id, _), r) in
        items
            .iter()
            .zip(host.fetch_from(&lock, fetcher, &a.mirrors, &a.repository_url, &items, 4))
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
    Ok(())
}

pub fn remove(host: &Host, raw: &[String]) -> Result<()> {
    let ids = ids(raw)?;
    let (lock, _) = host.lock("remove")?;
    for (id, removed) in host.remove(&lock, &ids)? {
        if removed {
            println!("removed {id}");
        } else {
            println!("{id} was not in the store");
        }
    }
    Ok(())
}
