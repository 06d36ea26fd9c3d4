//! The bootstrap artifact, the active list, the manifest and its signature.
//!
//! `<bootstrap_id>.bootstrap.tar.zst` holds, in this order:
//! ```text
//! bootstrap.json                 BootstrapIndex: every member with size + sha256
//! packages/<id>.tar.zst          the packages of bootstrap_package_list's closure
//! ```
//! Next to it, `<bootstrap_id>.distribution.tar.zst` packs the tree's `config/` directory
//! (schema.yaml, templates/, README.md): the distribution genconf, validate-config and the web
//! installer read, listed in the signed manifest like every other artifact, so an operator
//! needs no source tree.
//!
//! A host needs only `tarmac-host`: it verifies the archive against the signed manifest,
//! reads `bootstrap.json`, and adds every `packages/<id>.tar.zst` (checking each against
//! the index) exactly as it would add a downloaded package.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use tarmac_events::{Event, Level, Sink};
use tarmac_pkg::manifest::{
    self, Artifact, ArtifactKind, BOOTSTRAP_FORMAT, BOOTSTRAP_INDEX, BootstrapIndex,
    BootstrapMember, MANIFEST_FORMAT, Manifest, SecretKey,
};
use tarmac_pkg::pack::{self, PackOptions, write_file_atomic};
use tarmac_types::{PackageId, PackageName};

use crate::builder::{BuildOptions, PackageReport};
use crate::hash::pretty_json;
use crate::tree::{Plan, Tree};
use crate::{BuildError, io_err};

/// Name of the package whose `bin/tarmac-host` is exported as a raw artifact.
pub const HOST_PACKAGE: &str = "tarmac-host";

/// The tree's directory that holds the distribution's configuration (schema.yaml, templates/).
pub const DISTRIBUTION_DIR: &str = "config";

/// The member of the distribution archive that names the distribution (`{"name": …}`).
pub const DISTRIBUTION_INFO: &str = "distribution.json";

/// Where the distribution's configuration archive of bootstrap `bid` lives in a build.
pub fn distribution_path(bid: &str) -> String {
    format!("bootstrap/{bid}.distribution.tar.zst")
}

/// What `make` produced (paths are absolute).
#[derive(Debug, Clone)]
pub struct BootstrapReport {
    pub id: String,
    pub packages: Vec<PackageId>,
    pub archive: PathBuf,
    pub archive_size: u64,
    pub active: PathBuf,
    pub host_binary: Option<PathBuf>,
    pub manifest: PathBuf,
    pub signature: Option<PathBuf>,
    /// Key id of the signing key.
    pub key_id: Option<String>,
    /// False when the archive already existed.
    pub created: bool,
}

/// Create (or reuse) the bootstrap archive and active list, export the host binary,
/// write the manifest over every artifact, sign it, and update the `*.latest` pointers.
pub fn make(
    opts: &BuildOptions,
    tree: &Tree,
    plan: &Plan,
    reports: &BTreeMap<PackageName, PackageReport>,
    sink: &Sink,
) -> Result<BootstrapReport, BuildError> {
    let roots: Vec<PackageName> = if tree.info.bootstrap_package_list.is_empty() {
        plan.nodes.keys().cloned().collect()
    } else {
        tree.info.bootstrap_package_list.clone()
    };
    let members: Vec<&PackageReport> = plan
        .closure(roots.iter())
        .iter()
        .map(|n| &reports[n])
        .collect();
    let mut ids: Vec<PackageId> = members.iter().map(|r| r.id.clone()).collect();
    ids.sort();
    let bid = manifest::bootstrap_id(&ids);
    let out = &opts.out;
    let bdir = out.join("bootstrap");
    fs::create_dir_all(&bdir).map_err(io_err("cannot create", &bdir))?;

    let archive_rel = format!("bootstrap/{bid}.bootstrap.tar.zst");
    let archive = out.join(&archive_rel);
    let created = !archive.is_file();
    if created {
        sink.emit(Event::Notice {
            level: Level::Info,
            message: format!("creating bootstrap {bid} ({} packages)", ids.len()),
        });
        let work_root = out.join(".work");
        fs::create_dir_all(&work_root).map_err(io_err("cannot create", &work_root))?;
        let stage = tempfile::Builder::new()
            .prefix("bootstrap-")
            .tempdir_in(&work_root)
            .map_err(io_err("cannot create a work directory in", &work_root))?;
        let pdir = stage.path().join("packages");
        fs::create_dir(&pdir).map_err(io_err("cannot create", &pdir))?;
        let mut index = BootstrapIndex {
            format: BOOTSTRAP_FORMAT,
            bootstrap_id: bid.clone(),
            packages: Vec::new(),
        };
        let mut sorted = members.clone();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        for r in sorted {
            let rel = format!("packages/{}.tar.zst", r.id);
            let dest = stage.path().join(&rel);
            if fs::hard_link(&r.path, &dest).is_err() {
                fs::copy(&r.path, &dest).map_err(io_err("cannot copy", &r.path))?;
            }
            index.packages.push(BootstrapMember {
                id: r.id.clone(),
                path: rel,
                size: r.size,
                sha256: r.sha256,
            });
        }
        let json = serde_json::to_value(&index).expect("index serializes");
        fs::write(stage.path().join(BOOTSTRAP_INDEX), pretty_json(&json))
            .map_err(io_err("cannot write", stage.path()))?;
        pack::pack_dir(
            stage.path(),
            &archive,
            &PackOptions {
                level: opts.bootstrap_level,
                workers: opts.pack.workers,
            },
        )?;
    }

    let active_rel = format!("bootstrap/{bid}.active.json");
    let active = out.join(&active_rel);
    let active_json = serde_json::to_value(&ids).expect("ids serialize");
    write_file_atomic(&active, &pretty_json(&active_json), 0o644)?;

    let mut artifacts = vec![
        Artifact::of_file(out, &archive_rel, ArtifactKind::Bootstrap)?,
        Artifact::of_file(out, &active_rel, ArtifactKind::ActiveList)?,
    ];

    // The distribution's configuration, when the tree has one (reproducible bytes, so an
    // unchanged config/ rewrites the same file).
    let config_dir = tree.root.join(DISTRIBUTION_DIR);
    if config_dir.join("schema.yaml").is_file() {
        let rel = distribution_path(&bid);
        let work_root = out.join(".work");
        fs::create_dir_all(&work_root).map_err(io_err("cannot create", &work_root))?;
        let stage = tempfile::Builder::new()
            .prefix("distribution-")
            .tempdir_in(&work_root)
            .map_err(io_err("cannot create a work directory in", &work_root))?;
        copy_tree(&config_dir, stage.path())?;
        let name = tree
            .root
            .file_name()
            .map_or_else(|| "distribution".into(), |n| n.to_string_lossy());
        let doc = serde_json::json!({ "format": 1, "name": name });
        fs::write(stage.path().join(DISTRIBUTION_INFO), pretty_json(&doc))
            .map_err(io_err("cannot write", stage.path()))?;
        pack::pack_dir(
            stage.path(),
            &out.join(&rel),
            &PackOptions {
                level: opts.pack.level,
                workers: opts.pack.workers,
            },
        )?;
        artifacts.push(Artifact::of_file(out, &rel, ArtifactKind::Distribution)?);
    }

    let host_binary = match members
        .iter()
        .find(|r| r.id.name().as_str() == HOST_PACKAGE)
    {
        Some(r) => {
            let rel = format!("bootstrap/{bid}.tarmac-host");
            let dest = out.join(&rel);
            if !dest.is_file() {
                export_host_binary(&r.path, &dest)?;
                if let Some(message) = portability_warning(&dest) {
                    sink.emit(Event::Notice {
                        level: Level::Warn,
                        message,
                    });
                }
            }
            artifacts.push(Artifact::of_file(out, &rel, ArtifactKind::HostBinary)?);
            Some(dest)
        }
        None => None,
    };

    let mut all: Vec<&PackageReport> = reports.values().collect();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    for r in &all {
        artifacts.push(Artifact {
            path: manifest::package_path(&r.id),
            kind: ArtifactKind::Package,
            size: r.size,
            sha256: r.sha256,
        });
    }
    artifacts.sort_by(|a, b| a.path.cmp(&b.path));
    let mut host_requirements = tree.info.host_requirements.clone();
    let needs_cache = out.join(".work/host-needs");
    for r in &all {
        if let Some(need) = crate::hostneeds::package_need(&needs_cache, &r.path, &r.id)? {
            host_requirements.glibc.push(need);
        }
    }
    host_requirements.glibc.sort();
    if let Some(n) = host_requirements.max_glibc() {
        sink.emit(Event::Notice {
            level: Level::Info,
            message: format!(
                "hosts need glibc {} or newer ({} loads the host's C library: {}); bundle its libraries to lift this",
                n.version, n.package, n.file
            ),
        });
    }
    let m = Manifest {
        format: MANIFEST_FORMAT,
        bootstrap_id: bid.clone(),
        bootstrap_packages: ids.clone(),
        packages: all.iter().map(|r| r.id.clone()).collect(),
        artifacts,
        host_requirements,
    };
    let manifest_path = bdir.join(format!("{bid}.manifest.json"));
    let bytes = m.to_bytes();
    write_file_atomic(&manifest_path, &bytes, 0o644)?;
    let sig_path = manifest::signature_path(&manifest_path);
    let (signature, key_id) = match &opts.sign_key {
        Some(key) => {
            let key = SecretKey::read(key)?;
            write_file_atomic(&sig_path, &key.sign(&bytes), 0o644)?;
            (Some(sig_path), Some(key.public().key_id()))
        }
        None => {
            // a signature of an older manifest would now fail as "tampered"
            match fs::remove_file(&sig_path) {
                Ok(()) => sink.emit(Event::Notice {
                    level: Level::Warn,
                    message: format!(
                        "removed the stale signature {}; the manifest is unsigned",
                        sig_path.display()
                    ),
                }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("cannot remove", &sig_path)(e)),
            }
            (None, None)
        }
    };

    write_file_atomic(
        &out.join("bootstrap.latest"),
        format!("{bid}\n").as_bytes(),
        0o644,
    )?;
    let complete = serde_json::json!({"bootstrap": bid, "packages": m.packages});
    write_file_atomic(
        &out.join("complete.latest.json"),
        &pretty_json(&complete),
        0o644,
    )?;

    let archive_size = fs::metadata(&archive)
        .map_err(io_err("cannot stat", &archive))?
        .len();
    Ok(BootstrapReport {
        id: bid,
        packages: ids,
        archive,
        archive_size,
        active,
        host_binary,
        manifest: manifest_path,
        signature,
        key_id,
        created,
    })
}

/// Why the exported host binary at `file` would not run on every host with the glibc
/// baseline (hosts run it before any package is installed, so it cannot bundle libraries);
/// `None` when it would, or when it is not an x86-64 ELF file at all (another platform's
/// build is its builder's business).
fn portability_warning(file: &Path) -> Option<String> {
    use crate::elf_versions::{ElfError, GLIBC_BASELINE, check_portable};
    match check_portable(file, GLIBC_BASELINE) {
        Err(e @ ElfError::NotPortable { .. }) => Some(format!(
            "the bootstrap's tarmac-host will not run on every host: {}",
            tarmac_types::error_report::text_with_hint(&e)
        )),
        _ => None,
    }
}

/// Copy the regular files and directories of `src` into `dest` (which exists), keeping the
/// executable bit; anything else (a symlink, a device) is refused, as the archive could not
/// carry it faithfully.
fn copy_tree(src: &Path, dest: &Path) -> Result<(), BuildError> {
    for e in fs::read_dir(src).map_err(io_err("cannot read", src))? {
        let e = e.map_err(io_err("cannot read", src))?;
        let from = e.path();
        let to = dest.join(e.file_name());
        let ft = e.file_type().map_err(io_err("cannot stat", &from))?;
        if ft.is_dir() {
            fs::create_dir(&to).map_err(io_err("cannot create", &to))?;
            copy_tree(&from, &to)?;
        } else if ft.is_file() {
            fs::copy(&from, &to).map_err(io_err("cannot copy", &from))?;
        } else {
            return Err(BuildError::BadOutput {
                id: from.display().to_string(),
                problem: "the distribution's config/ may hold only regular files and directories"
                    .into(),
            });
        }
    }
    Ok(())
}

/// Copy `bin/tarmac-host` out of the package archive into `dest` (mode 0755).
fn export_host_binary(package: &Path, dest: &Path) -> Result<(), BuildError> {
    let f = fs::File::open(package).map_err(io_err("cannot open", package))?;
    let dec = zstd::stream::read::Decoder::new(f).map_err(io_err("cannot read", package))?;
    let mut ar = tar::Archive::new(dec);
    for e in ar.entries().map_err(io_err("cannot read", package))? {
        let mut e = e.map_err(io_err("cannot read", package))?;
        let p = e
            .path()
            .map_err(io_err("cannot read", package))?
            .to_string_lossy()
            .into_owned();
        if p == "bin/tarmac-host" {
            let mut buf = Vec::new();
            e.read_to_end(&mut buf)
                .map_err(io_err("cannot read", package))?;
            write_file_atomic(dest, &buf, 0o755)?;
            return Ok(());
        }
    }
    Err(BuildError::BadOutput {
        id: package.display().to_string(),
        problem: "package `tarmac-host` has no bin/tarmac-host".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_binary_needing_a_newer_glibc_gets_a_warning() {
        let d = tempfile::tempdir().unwrap();
        let script = d.path().join("script");
        fs::write(&script, "#!/bin/sh\n").unwrap();
        assert_eq!(portability_warning(&script), None);
        // this machine's own programs need glibc 2.34 (the test suite runs on Debian 12+)
        let w = portability_warning(Path::new("/usr/bin/true")).unwrap();
        assert!(
            w.starts_with("the bootstrap's tarmac-host will not run on every host: `/usr/bin/true` does not run on every host with glibc 2.17; it needs:\n"),
            "{w}"
        );
        assert!(w.contains("GLIBC_2.34 (of libc.so.6)"), "{w}");
        assert!(
            w.ends_with(
                "hint: build it with scripts/build-portable.sh (links against glibc 2.17 with zig)"
            ),
            "{w}"
        );
    }
}
