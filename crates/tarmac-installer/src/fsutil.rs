//! Small filesystem helpers on tarmac-fsx: atomic writes of controller files.

use std::io;
use std::path::Path;

pub use tarmac_fsx::create_private_dir;

/// Write `bytes` to `path` atomically with `mode` from the first byte (see
/// [`tarmac_fsx::write_atomic`]), creating missing parent directories 0700 first: what the
/// installer writes on the controller (journals, keys, config) is private by default.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        create_private_dir(dir)?;
    }
    tarmac_fsx::write_atomic(path, bytes, mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_and_replaces_creating_private_parents() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(&d.path().join("a")), 0o700);
        assert_eq!(
            fs::read_dir(p.parent().unwrap()).unwrap().count(),
            1,
            "no temp files left"
        );
        // An existing parent keeps its mode.
        fs::set_permissions(d.path().join("a"), fs::Permissions::from_mode(0o755)).unwrap();
        write_atomic(&p, b"three", 0o644).unwrap();
        assert_eq!(mode(&d.path().join("a")), 0o755);
        assert_eq!(mode(&p), 0o644);
    }
}
