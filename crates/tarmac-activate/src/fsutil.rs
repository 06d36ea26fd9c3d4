//! Small durable filesystem steps: atomic file writes (tarmac-fsx's), atomic symlink
//! replacement, fsync of directories.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use tarmac_fsx::fsync_dir;
pub use tarmac_pkg::extract::{make_writable_and_remove, syncfs};

pub use tarmac_fsx::write_atomic;

/// Is `name` a temporary made by [`write_atomic`] (see [`tarmac_fsx::is_temp_name`]) or by
/// [`replace_symlink`] (`.<name>.new-<pid>`)?
pub fn is_temp_name(name: &str) -> bool {
    tarmac_fsx::is_temp_name(name)
        || (name.starts_with('.')
            && name
                .rsplit_once(".new-")
                .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())))
}

fn sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{tag}-{}", std::process::id()))
}

/// Point the symlink `link` at `target` atomically (create a temp link, rename over), then
/// fsync the directory. This is the generation switch: one rename(2).
pub fn replace_symlink(target: &Path, link: &Path) -> io::Result<()> {
    let tmp = sibling(link, "new");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    if let Err(e) = fs::rename(&tmp, link) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fsync_dir(link.parent().unwrap_or(Path::new(".")))
}

/// Remove a file or symlink; missing is fine.
pub fn remove_file_if_exists(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Is `path` a symlink (not following it)?
pub fn is_symlink(path: &Path) -> bool {
    fs::symlink_metadata(path)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
}
