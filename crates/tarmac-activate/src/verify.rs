//! `tarmac-host verify`: the host's audit. Every stored package is re-hashed against the
//! file manifest recorded when it was extracted; the current generation is checked for
//! completeness (links resolve, stable links point through `current`, the installed units
//! are exactly the generation's copies, and the files its pkginfo `files` lists — secret files
//! included — have their digest, owner, group and mode); every kept generation must still
//! have its packages.

use std::fs;
use std::path::Path;

use serde::Serialize;
use tarmac_pkg::files::{FileManifest, FileProblem};
use tarmac_types::{Generation, PackageId};

use crate::config::{STABLE_LINKS, TREE_DIRS};
use crate::error::ActivateError;
use crate::{Host, generation};

/// One package's audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageAudit {
    pub id: PackageId,
    /// Kept as its verified archive only (no role of this host uses it).
    pub archived: bool,
    pub files: usize,
    pub problems: Vec<String>,
}

/// The whole audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub current: Option<Generation>,
    pub packages: Vec<PackageAudit>,
    /// Problems of the host layout (generations, links, units, journal).
    pub host: Vec<String>,
}

fn dangling_links(dir: &Path, rel: &str, out: &mut Vec<String>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let name = format!("{rel}/{}", e.file_name().to_string_lossy());
        match e.file_type() {
            Ok(t) if t.is_symlink() => {
                // The link points at a package entry; the entry itself may be a (dangling) link.
                if let Ok(target) = fs::read_link(&p)
                    && fs::symlink_metadata(&target).is_err()
                {
                    out.push(format!("{name} -> {} is dangling", target.display()));
                }
            }
            Ok(t) if t.is_dir() => dangling_links(&p, &name, out),
            _ => {}
        }
    }
}

impl Host {
    pub fn verify(&self) -> Result<VerifyReport, ActivateError> {
        let cfg = &self.cfg;
        let mut packages = Vec::new();
        for id in self.store.list()? {
            let dir = self.store.path(&id);
            let pkg = self.store.load(&id).ok();
            let archived = pkg.as_ref().is_some_and(|p| p.archived.is_some());
            let audit = match FileManifest::load(&dir) {
                Ok(m) => PackageAudit {
                    id: id.clone(),
                    archived,
                    files: m.file_count(),
                    problems: m
                        .verify(&dir)
                        .into_iter()
                        .chain(match self.store.verify_archive(&id, &m) {
                            Ok(p) => p,
                            Err(e) => Some(FileProblem::Unreadable {
                                path: tarmac_pkg::layout::META_DIR.into(),
                                error: e.to_string(),
                            }),
                        })
                        // pkginfo `files` may set a mode other than the archive's.
                        .filter(|p| match (p, &pkg) {
                            (FileProblem::ModeChanged { path, found, .. }, Some(pkg)) => {
                                crate::pkgfiles::declared_mode(pkg, path)
                                    .is_none_or(|m| format!("{m:04o}") != *found)
                            }
                            _ => true,
                        })
                        .map(|p| p.to_string())
                        .collect(),
                },
                Err(e) => PackageAudit {
                    id: id.clone(),
                    archived,
                    files: 0,
                    problems: vec![e.to_string()],
                },
            };
            packages.push(audit);
        }
        let mut host = Vec::new();
        if let Some(j) = self.read_journal()? {
            host.push(format!(
                "an interrupted switch to generation {} is pending (pid {}); run `tarmac-host recover`",
                j.to, j.pid
            ));
        }
        let current = generation::current(cfg)?;
        let gens = generation::list(cfg)?;
        match current {
            None if !gens.is_empty() => {
                host.push("generations exist but `current` is missing".into())
            }
            None => {}
            Some(g) => {
                if !generation::looks_complete(cfg, g) {
                    host.push(format!("generation {g} is incomplete"));
                } else {
                    let dir = cfg.generation_dir(g);
                    let mut dangling = Vec::new();
                    for t in TREE_DIRS.iter().chain(["active"].iter()) {
                        dangling_links(&dir.join(t), t, &mut dangling);
                    }
                    host.extend(dangling);
                    for name in STABLE_LINKS {
                        let want = Path::new("current").join(name);
                        if fs::read_link(cfg.root.join(name)).ok().as_deref()
                            != Some(want.as_path())
                        {
                            host.push(format!(
                                "{} does not point to {}",
                                cfg.root.join(name).display(),
                                want.display()
                            ));
                        }
                    }
                    let want = generation::unit_files(cfg, Some(g))?;
                    let mut others = std::collections::BTreeSet::new();
                    if let Ok(rd) = fs::read_dir(cfg.wants_dir()) {
                        others.extend(
                            rd.flatten()
                                .map(|e| e.file_name().to_string_lossy().into_owned()),
                        );
                    }
                    host.extend(self.systemd().drift(&want, &others));
                    if let Ok(a) = generation::read_active(cfg, g) {
                        let pkgs: Vec<_> = a
                            .packages
                            .iter()
                            .filter_map(|id| self.store.load(id).ok())
                            .collect();
                        let roles = a.roles.iter().copied().collect();
                        for p in pkgs.iter().filter(|p| p.needs_extraction(&roles)) {
                            host.push(format!(
                                "generation {g} uses {} on this host's roles, but it is only an archive; run `tarmac-host activate` (or `setup`) to extract it",
                                p.id
                            ));
                        }
                        host.extend(crate::pkgfiles::audit(cfg, &pkgs, &roles));
                    }
                }
            }
        }
        for g in gens {
            match generation::read_active(cfg, g) {
                Ok(a) => {
                    for id in a.packages.iter().filter(|id| !self.store.contains(id)) {
                        host.push(format!(
                            "generation {g} uses {id}, which is not in the store"
                        ));
                    }
                }
                Err(e) => host.push(e.to_string()),
            }
        }
        let ok = host.is_empty() && packages.iter().all(|p| p.problems.is_empty());
        Ok(VerifyReport {
            ok,
            current,
            packages,
            host,
        })
    }
}
