//! Generations: `<root>/generations/<n>/`, each a complete rendered state, written once
//! (temp dir, syncfs, rename) and never modified. `<root>/current` points at one of them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tarmac_pkg::extract::TMP_PREFIX;
use tarmac_types::{Generation, PackageId};

use crate::config::{HostConfig, STABLE_LINKS, TREE_DIRS};
use crate::error::ActivateError;
use crate::fsutil;
use crate::plan::{Plan, SERVICE_CONFIGURATION, TreeNode};
use crate::render::{self, ActiveJson, EnvSection};

/// Unit copies inside a generation.
pub const UNITS_DIR: &str = "systemd";
pub const GENERATION_JSON: &str = "generation.json";

/// `generation.json`: when and how a generation was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationMeta {
    pub generation: Generation,
    pub created_unix: u64,
    /// The command that made it (`activate`, `swap`, `setup`).
    pub command: String,
    /// The generation that was current when it was made.
    pub previous: Option<Generation>,
}

/// A generation as listed by `tarmac-host generations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GenerationInfo {
    pub generation: Generation,
    pub current: bool,
    pub created_unix: u64,
    pub command: String,
    pub packages: Vec<PackageId>,
}

fn io_err(action: &str, path: &Path) -> impl FnOnce(io::Error) -> ActivateError + use<> {
    let (action, path) = (action.to_owned(), path.to_path_buf());
    move |e| ActivateError::Io {
        action,
        path,
        source: e,
    }
}

/// Write `plan` as generation `g`. Nothing is visible until the final rename.
pub fn write(
    cfg: &HostConfig,
    plan: &Plan,
    g: Generation,
    meta: &GenerationMeta,
) -> Result<PathBuf, ActivateError> {
    let gens = cfg.generations_dir();
    fs::create_dir_all(&gens).map_err(io_err("create", &gens))?;
    let tmp = gens.join(format!("{TMP_PREFIX}{g}-{}", std::process::id()));
    fsutil::make_writable_and_remove(&tmp).map_err(io_err("remove", &tmp))?;
    let res = write_into(cfg, plan, &tmp, meta);
    if let Err(e) = res {
        let _ = fsutil::make_writable_and_remove(&tmp);
        return Err(e);
    }
    let dest = cfg.generation_dir(g);
    fs::rename(&tmp, &dest).map_err(io_err("rename into place", &dest))?;
    fsutil::fsync_dir(&gens).map_err(io_err("fsync", &gens))?;
    Ok(dest)
}

fn write_into(
    cfg: &HostConfig,
    plan: &Plan,
    dir: &Path,
    meta: &GenerationMeta,
) -> Result<(), ActivateError> {
    fs::create_dir(dir).map_err(io_err("create", dir))?;
    for (rel, node) in &plan.tree {
        let p = dir.join(rel);
        match node {
            TreeNode::Dir { .. } => fs::create_dir(&p).map_err(io_err("create", &p))?,
            TreeNode::Link { target, .. } => {
                std::os::unix::fs::symlink(target, &p).map_err(io_err("link", &p))?
            }
        }
    }
    let active = dir.join("active");
    fs::create_dir(&active).map_err(io_err("create", &active))?;
    for p in &plan.packages {
        let l = active.join(p.id.name().as_str());
        std::os::unix::fs::symlink(&p.path, &l).map_err(io_err("link", &l))?;
    }
    let sections: Vec<EnvSection<'_>> = plan
        .packages
        .iter()
        .map(|p| EnvSection {
            id: &p.id,
            vars: &p.info.environment,
        })
        .collect();
    let mut buildinfo = serde_json::Map::new();
    for p in &plan.packages {
        let bi = p.path.join(tarmac_pkg::layout::BUILDINFO_FULL);
        let v = match fs::read(&bi) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null),
            Err(_) => serde_json::Value::Null,
        };
        buildinfo.insert(p.id.name().to_string(), v);
    }
    let active_json = ActiveJson {
        packages: plan.ids(),
        roles: plan.roles.iter().copied().collect(),
        units: plan
            .units
            .iter()
            .map(|(n, u)| (n.clone(), u.package.clone()))
            .collect(),
    };
    let files: [(&str, String); 6] = [
        ("environment", render::environment(&cfg.root, &sections)),
        (
            "environment.export",
            render::environment_export(&cfg.root, &sections),
        ),
        ("active.json", render::pretty(&active_json)),
        ("active.buildinfo.full.json", render::pretty(&buildinfo)),
        (
            SERVICE_CONFIGURATION,
            render::service_configuration(&plan.sysctl),
        ),
        (GENERATION_JSON, render::pretty(meta)),
    ];
    for (name, text) in files {
        let p = dir.join(name);
        fs::write(&p, text).map_err(io_err("write", &p))?;
    }
    let units = dir.join(UNITS_DIR);
    fs::create_dir(&units).map_err(io_err("create", &units))?;
    for (name, u) in &plan.units {
        let p = units.join(name);
        fs::copy(&u.source, &p).map_err(io_err("copy a unit to", &p))?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).map_err(io_err("chmod", &p))?;
    }
    fsutil::syncfs(dir).map_err(io_err("sync", dir))
}

pub use tarmac_types::time::now_unix;

/// The generation `current` points at, if any.
pub fn current(cfg: &HostConfig) -> Result<Option<Generation>, ActivateError> {
    let link = cfg.current_link();
    match fs::read_link(&link) {
        Ok(t) => parse_target(&t)
            .map(Some)
            .ok_or_else(|| ActivateError::BadGeneration {
                generation: Generation(0),
                reason: format!(
                    "{} points at {}, not generations/<n>",
                    link.display(),
                    t.display()
                ),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ActivateError::io("read", &link, e)),
    }
}

fn parse_target(t: &Path) -> Option<Generation> {
    let s = t.to_str()?;
    s.strip_prefix("generations/")?.parse().ok()
}

/// The relative target `current` gets for generation `g`.
pub fn link_target(g: Generation) -> PathBuf {
    PathBuf::from(format!("generations/{g}"))
}

/// All complete generations, ascending.
pub fn list(cfg: &HostConfig) -> Result<Vec<Generation>, ActivateError> {
    let dir = cfg.generations_dir();
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ActivateError::io("read", &dir, e)),
    };
    let mut out: Vec<Generation> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    out.sort();
    Ok(out)
}

/// Remove unfinished generation directories and stray temp links in the root.
pub fn clean_temp(cfg: &HostConfig) -> Result<Vec<PathBuf>, ActivateError> {
    let mut removed = Vec::new();
    let gens = cfg.generations_dir();
    if let Ok(rd) = fs::read_dir(&gens) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let p = e.path();
                fsutil::make_writable_and_remove(&p).map_err(io_err("remove", &p))?;
                removed.push(p);
            }
        }
    }
    if let Ok(rd) = fs::read_dir(&cfg.root) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if fsutil::is_temp_name(&n) {
                let p = e.path();
                fsutil::remove_file_if_exists(&p).map_err(io_err("remove", &p))?;
                removed.push(p);
            }
        }
    }
    Ok(removed)
}

pub fn read_active(cfg: &HostConfig, g: Generation) -> Result<ActiveJson, ActivateError> {
    let p = cfg.generation_dir(g).join("active.json");
    let bytes = fs::read(&p).map_err(io_err("read", &p))?;
    serde_json::from_slice(&bytes).map_err(|e| ActivateError::BadGeneration {
        generation: g,
        reason: format!("active.json: {e}"),
    })
}

pub fn read_meta(cfg: &HostConfig, g: Generation) -> Result<GenerationMeta, ActivateError> {
    let p = cfg.generation_dir(g).join(GENERATION_JSON);
    let bytes = fs::read(&p).map_err(io_err("read", &p))?;
    serde_json::from_slice(&bytes).map_err(|e| ActivateError::BadGeneration {
        generation: g,
        reason: format!("{GENERATION_JSON}: {e}"),
    })
}

/// Unit name → the generation's own copy of it.
pub fn unit_files(
    cfg: &HostConfig,
    g: Option<Generation>,
) -> Result<BTreeMap<String, PathBuf>, ActivateError> {
    let Some(g) = g else {
        return Ok(BTreeMap::new());
    };
    let dir = cfg.generation_dir(g).join(UNITS_DIR);
    Ok(read_active(cfg, g)?
        .units
        .into_keys()
        .map(|n| (n.clone(), dir.join(&n)))
        .collect())
}

pub fn unit_names(
    cfg: &HostConfig,
    g: Option<Generation>,
) -> Result<BTreeSet<String>, ActivateError> {
    Ok(unit_files(cfg, g)?.into_keys().collect())
}

/// Make `<root>/{bin,lib,etc,include,environment,…}` point through `current`.
/// Refuses to replace anything that is not already such a link.
pub fn ensure_stable_links(cfg: &HostConfig) -> Result<(), ActivateError> {
    for name in STABLE_LINKS {
        let link = cfg.root.join(name);
        let want = PathBuf::from("current").join(name);
        match fs::read_link(&link) {
            Ok(t) if t == want => continue,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => {
                return Err(ActivateError::BadGeneration {
                    generation: Generation(0),
                    reason: format!(
                        "{} exists and is not a tarmac link; move it away",
                        link.display()
                    ),
                });
            }
        }
        fsutil::replace_symlink(&want, &link).map_err(io_err("link", &link))?;
    }
    Ok(())
}

/// Check (before any change) that the stable names are free or already tarmac's links.
pub fn stable_links_blocked(cfg: &HostConfig) -> Vec<PathBuf> {
    STABLE_LINKS
        .iter()
        .map(|n| cfg.root.join(n))
        .filter(|p| fs::symlink_metadata(p).is_ok() && !fsutil::is_symlink(p))
        .collect()
}

/// Check that the tree directories of a generation exist (sanity for old generations).
pub fn looks_complete(cfg: &HostConfig, g: Generation) -> bool {
    let d = cfg.generation_dir(g);
    TREE_DIRS.iter().all(|t| d.join(t).is_dir()) && d.join("active.json").is_file()
}
