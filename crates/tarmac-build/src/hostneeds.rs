//! What each built package still needs of the host's C library.
//!
//! Every executable ELF file in a package whose program interpreter is the host's own loader
//! (`/lib…` or `/usr/lib…`) loads the host's glibc: its newest `GLIBC_x.y` symbol version is
//! that package's need. A static binary, or one rewritten to load its bundled loader and
//! libraries, needs nothing. Shared libraries (`*.so`, `*.so.N`) are not entry points and are
//! not counted. Results are cached per package id (ids are content hashes).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use tarmac_pkg::hostreq::GlibcNeed;
use tarmac_types::PackageId;

use crate::elf_versions::{self, GlibcVersion};
use crate::{BuildError, io_err};

/// Largest ELF file read into memory for scanning.
const MAX_ELF: u64 = 1 << 30;

/// Does `interp` name the host's own loader (not one bundled inside a package)?
pub fn is_host_loader(interp: &str) -> bool {
    interp.starts_with("/lib/") || interp.starts_with("/lib64/") || interp.starts_with("/usr/lib")
}

fn is_shared_library_name(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.ends_with(".so") || name.contains(".so.")
}

/// The newest glibc any entry-point ELF file of a `.tar.zst` package needs from the host.
pub fn scan_archive(archive: &Path, id: &PackageId) -> Result<Option<GlibcNeed>, BuildError> {
    let f = fs::File::open(archive).map_err(io_err("cannot open", archive))?;
    let dec = zstd::Decoder::new(f).map_err(io_err("cannot decompress", archive))?;
    let mut tar = tar::Archive::new(dec);
    let mut best: Option<(GlibcVersion, String)> = None;
    let entries = tar.entries().map_err(io_err("cannot read", archive))?;
    for entry in entries {
        let mut e = entry.map_err(io_err("cannot read", archive))?;
        if !e.header().entry_type().is_file() {
            continue;
        }
        let size = e.header().size().unwrap_or(0);
        let mode = e.header().mode().unwrap_or(0);
        if !(64..=MAX_ELF).contains(&size) || mode & 0o111 == 0 {
            continue;
        }
        let path = e
            .path()
            .map_err(io_err("cannot read", archive))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        if is_shared_library_name(&path) {
            continue;
        }
        let mut magic = [0u8; 4];
        if e.read_exact(&mut magic).is_err() || &magic != b"\x7fELF" {
            continue;
        }
        let mut data = Vec::with_capacity(size as usize);
        data.extend_from_slice(&magic);
        e.read_to_end(&mut data)
            .map_err(io_err("cannot read", archive))?;
        let Ok(needs) = elf_versions::parse_needs(Path::new(&path), &data) else {
            continue;
        };
        let Some(interp) = needs.interpreter.as_deref() else {
            continue;
        };
        if !is_host_loader(interp) {
            continue;
        }
        if let Some(v) = needs.max_glibc()
            && best.as_ref().is_none_or(|(b, _)| v > *b)
        {
            best = Some((v, path));
        }
    }
    Ok(best.map(|(v, file)| GlibcNeed {
        package: id.name().to_string(),
        file,
        version: v.to_string(),
    }))
}

/// [`scan_archive`], cached in `cache_dir/<id>.json`.
pub fn package_need(
    cache_dir: &Path,
    archive: &Path,
    id: &PackageId,
) -> Result<Option<GlibcNeed>, BuildError> {
    let cache: PathBuf = cache_dir.join(format!("{id}.json"));
    if let Ok(bytes) = fs::read(&cache)
        && let Ok(v) = serde_json::from_slice::<Option<GlibcNeed>>(&bytes)
    {
        return Ok(v);
    }
    let need = scan_archive(archive, id)?;
    fs::create_dir_all(cache_dir).map_err(io_err("cannot create", cache_dir))?;
    let bytes = serde_json::to_vec(&need).expect("need serializes");
    tarmac_pkg::pack::write_file_atomic(&cache, &bytes, 0o644)?;
    Ok(need)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loaders_and_library_names() {
        assert!(is_host_loader("/lib64/ld-linux-x86-64.so.2"));
        assert!(is_host_loader("/lib/ld-linux-aarch64.so.1"));
        assert!(!is_host_loader(
            "/opt/tarmac/packages/etcd--abc/lib/tarmac-bundle/ld-linux-x86-64.so.2"
        ));
        assert!(is_shared_library_name("lib/libc.so.6"));
        assert!(is_shared_library_name("lib/x/libfoo.so"));
        assert!(!is_shared_library_name("bin/prometheus"));
        assert!(!is_shared_library_name("bin/some.sorter"));
    }
}
