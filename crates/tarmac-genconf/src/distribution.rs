//! The distribution a build carries: `bootstrap/<bid>.distribution.tar.zst`, listed (size +
//! sha256) in the build's manifest, whose signature is checked when a public key is given.
//! genconf, validate-config, the web installer and the stages read the distribution from
//! here, so an operator needs no source tree (`--dist` stays for distribution authors).

use std::io::Read;
use std::path::{Path, PathBuf};

use tarmac_config::Distribution;
use tarmac_events::Sink;
use tarmac_pkg::manifest::ArtifactKind;

use crate::{GenconfError, io_err, read_manifest};

/// The largest distribution archive read (compressed), and what it may unpack to: a schema and
/// templates are text, a few hundred KiB in practice.
pub const MAX_ARCHIVE: u64 = 16 << 20;
pub const MAX_UNPACKED: u64 = 64 << 20;

/// A distribution loaded from a build (or a bundle's build, or genconf/serve/).
#[derive(Debug, Clone)]
pub struct BuildDistribution {
    pub dist: Distribution,
    pub bootstrap_id: String,
    /// The archive it came from.
    pub archive: PathBuf,
    /// Fingerprint of the key whose signature over the manifest was checked; `None` when no
    /// key was given (integrity against the manifest only).
    pub signed_by: Option<String>,
}

/// Why a build's distribution archive is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveProblem {
    #[error("it is larger than {MAX_ARCHIVE} bytes")]
    TooLarge,
    #[error("it unpacks to more than {MAX_UNPACKED} bytes")]
    Bomb,
    #[error("it is not a zstd-compressed tar archive")]
    Format(#[source] std::io::Error),
    #[error("member `{0}` is not a regular file or directory")]
    EntryType(String),
    #[error("member `{0}` has an unsafe path")]
    Path(String),
    #[error("member `{0}` is not UTF-8 text")]
    NotText(String),
    #[error("it has no schema.yaml")]
    NoSchema,
}

/// Load the distribution of the build in `dir` (a `tarmac build` output directory, an
/// extracted bundle's `build/`, or `genconf/serve/`): the manifest's signature is checked with
/// `public_key` when one is given, then the archive's size and sha256 against the manifest.
pub fn load_build_distribution(
    dir: &Path,
    public_key: Option<&Path>,
    sink: &Sink,
) -> Result<BuildDistribution, GenconfError> {
    let build = read_manifest(dir, public_key, sink)?;
    let m = &build.manifest;
    let artifact =
        m.first(ArtifactKind::Distribution)
            .ok_or_else(|| GenconfError::NoDistribution {
                dir: dir.to_owned(),
                manifest: build.manifest_path.clone(),
            })?;
    let archive = dir.join(&artifact.path);
    if artifact.size > MAX_ARCHIVE {
        return Err(GenconfError::DistributionArchive {
            path: archive,
            source: ArchiveProblem::TooLarge,
        });
    }
    let bytes = std::fs::read(&archive).map_err(io_err("cannot read", &archive))?;
    artifact
        .check_bytes(&bytes)
        .map_err(GenconfError::Corrupt)?;
    let parts = unpack(&bytes).map_err(|source| GenconfError::DistributionArchive {
        path: archive.clone(),
        source,
    })?;
    let label = format!("{}:schema.yaml", archive.display());
    let dist = Distribution::from_parts(&label, &parts.schema, parts.templates)
        .map_err(|source| GenconfError::Distribution {
            path: archive.clone(),
            source,
        })?
        .with_name(parts.name.as_deref().unwrap_or("distribution"));
    Ok(BuildDistribution {
        dist,
        bootstrap_id: m.bootstrap_id.clone(),
        archive,
        signed_by: build.key_fingerprint.clone(),
    })
}

/// What the archive holds.
struct Parts {
    schema: String,
    templates: Vec<(String, String, u32)>,
    name: Option<String>,
}

/// Unpack the archive in memory: only regular files and directories with plain relative
/// paths, bounded in size.
fn unpack(bytes: &[u8]) -> Result<Parts, ArchiveProblem> {
    let dec = zstd::stream::read::Decoder::new(bytes).map_err(ArchiveProblem::Format)?;
    let mut ar = tar::Archive::new(dec.take(MAX_UNPACKED + 1));
    let mut schema = None;
    let mut templates = Vec::new();
    let mut name = None;
    let mut total = 0u64;
    for e in ar.entries().map_err(ArchiveProblem::Format)? {
        let mut e = e.map_err(ArchiveProblem::Format)?;
        let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let path = raw.trim_end_matches('/').to_owned();
        match e.header().entry_type() {
            tar::EntryType::Directory => continue,
            tar::EntryType::Regular => {}
            _ => return Err(ArchiveProblem::EntryType(path)),
        }
        let safe = !path.is_empty()
            && !path.starts_with('/')
            && path
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        if !safe {
            return Err(ArchiveProblem::Path(path));
        }
        total += e.size();
        if total > MAX_UNPACKED {
            return Err(ArchiveProblem::Bomb);
        }
        let mode = e.header().mode().unwrap_or(0o644);
        let mut text = String::new();
        e.read_to_string(&mut text)
            .map_err(|_| ArchiveProblem::NotText(path.clone()))?;
        if path == "schema.yaml" {
            schema = Some(text);
        } else if path == "distribution.json" {
            name = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("name")?.as_str().map(str::to_owned));
        } else if let Some(rel) = path.strip_prefix("templates/") {
            let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
            templates.push((rel.to_owned(), text, mode));
        }
        // README.md and other docs travel along; the schema's descriptions are the reference.
    }
    templates.sort();
    Ok(Parts {
        schema: schema.ok_or(ArchiveProblem::NoSchema)?,
        templates,
        name,
    })
}
