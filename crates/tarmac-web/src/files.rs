//! Bounded, kind-checked reads of the files the API looks at.
//!
//! The API returns the contents only of the files it manages itself inside `genconf/`
//! (`genconf/ip-detect`, `genconf/ssh_known_hosts`; config.yaml with secrets masked). A
//! path key pointing anywhere else is shown as metadata (path, size, sha256) only. Every
//! read refuses what is not a regular file (`/dev/zero`, a fifo, a directory) without
//! blocking on it, and stops at a size limit, so no file can make a request slow or large.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// The most the API reads of config.yaml, ip-detect, known_hosts or an SSH key.
pub const MAX_READ: u64 = 1024 * 1024;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{} does not exist", path.display())]
    NotFound { path: PathBuf },
    #[error(
        "{} is {kind}, not a regular file",
        path.display()
    )]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error(
        "{} is {size} bytes, more than the {limit} bytes the web GUI reads",
        path.display()
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{} is not UTF-8 text", path.display())]
    NotText { path: PathBuf },
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ReadError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::NotFound { .. })
    }

    /// The message with its cause (`cannot read x: Permission denied`), then its hint
    /// (`hint: …`).
    pub fn chain(&self) -> String {
        match self {
            ReadError::Io { source, .. } => format!("{self}: {source}"),
            other => tarmac_types::error_report::text_with_hint(other),
        }
    }
}

impl tarmac_types::error_report::Hint for ReadError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            ReadError::NotRegular { .. } => Some(
                "point it at a regular file (the web GUI never reads devices, fifos or directories)"
                    .into(),
            ),
            ReadError::TooLarge { .. } => Some(
                "this is not the file you meant; point the key at the right one in config.yaml"
                    .into(),
            ),
            ReadError::NotFound { .. } | ReadError::NotText { .. } | ReadError::Io { .. } => None,
        }
    }
}

fn kind_of(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_fifo() {
        "a fifo"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Open `path` for reading without blocking (a fifo with no writer would block `open`) and
/// check that what was opened is a regular file of at most `limit` bytes. With
/// `no_follow`, a symbolic link as the last component is refused.
fn open_regular(path: &Path, limit: u64, no_follow: bool) -> Result<std::fs::File, ReadError> {
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if no_follow {
        flags |= libc::O_NOFOLLOW;
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ReadError::NotFound {
                path: path.to_owned(),
            },
            _ if source.raw_os_error() == Some(libc::ELOOP) => ReadError::NotRegular {
                path: path.to_owned(),
                kind: "a symbolic link",
            },
            _ => ReadError::Io {
                path: path.to_owned(),
                source,
            },
        })?;
    let meta = f.metadata().map_err(|source| ReadError::Io {
        path: path.to_owned(),
        source,
    })?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_owned(),
            kind: kind_of(meta.file_type()),
        });
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge {
            path: path.to_owned(),
            size: meta.len(),
            limit,
        });
    }
    Ok(f)
}

/// The bytes of a regular file of at most `limit` bytes (a file that grows past the limit
/// while it is read is refused too). `no_follow`: refuse a symbolic link.
pub fn read_bounded(path: &Path, limit: u64, no_follow: bool) -> Result<Vec<u8>, ReadError> {
    let f = open_regular(path, limit, no_follow)?;
    let mut buf = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|source| ReadError::Io {
            path: path.to_owned(),
            source,
        })?;
    if buf.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            path: path.to_owned(),
            size: buf.len() as u64,
            limit,
        });
    }
    Ok(buf)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_text(path: &Path, limit: u64, no_follow: bool) -> Result<String, ReadError> {
    String::from_utf8(read_bounded(path, limit, no_follow)?).map_err(|_| ReadError::NotText {
        path: path.to_owned(),
    })
}

/// What is shown of a file whose contents are not returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub size: u64,
    pub sha256: String,
}

/// Size and sha256 of a regular file of at most [`MAX_READ`] bytes.
pub fn metadata(path: &Path) -> Result<Meta, ReadError> {
    let bytes = read_bounded(path, MAX_READ, false)?;
    Ok(Meta {
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
    })
}

/// The last `limit` bytes of a regular file (for logs), and its whole size.
pub fn read_tail(path: &Path, limit: u64) -> Result<(Vec<u8>, u64), ReadError> {
    use std::io::{Seek, SeekFrom};
    let mut f = open_regular(path, u64::MAX, false)?;
    let io = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let size = f.metadata().map_err(io)?.len();
    let start = size.saturating_sub(limit);
    f.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut buf = Vec::new();
    f.take(limit).read_to_end(&mut buf).map_err(io)?;
    Ok((buf, size))
}

/// `path` with `.` and `..` resolved lexically (no file system access).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    out.push(c);
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// `path` relative to `dir` when it is inside it, both lexically and after resolving the
/// symbolic links of the part that exists (a link inside `dir` pointing out is outside).
pub fn inside(dir: &Path, path: &Path) -> Option<PathBuf> {
    let dir = normalize(dir);
    let path = normalize(path);
    let rel = path.strip_prefix(&dir).ok()?.to_owned();
    if rel.as_os_str().is_empty() {
        return None;
    }
    let real_dir = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
    // The longest existing ancestor (or the path itself), resolved.
    let mut existing = path.clone();
    let mut rest = PathBuf::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            let real = real.join(&rest);
            return real.starts_with(&real_dir).then_some(rel);
        }
        let name = existing.file_name().map(ToOwned::to_owned)?;
        rest = Path::new(&name).join(&rest);
        if !existing.pop() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn devices_fifos_dirs_and_big_files_are_refused_quickly() {
        let t = Instant::now();
        let e = read_bounded(Path::new("/dev/zero"), MAX_READ, false).unwrap_err();
        assert_eq!(
            e.chain(),
            "/dev/zero is a character device, not a regular file\nhint: point it at a regular file (the web GUI never reads devices, fifos or directories)"
        );
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) on a path in our temp dir.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_bounded(&fifo, MAX_READ, false).unwrap_err();
        assert!(
            matches!(e, ReadError::NotRegular { kind: "a fifo", .. }),
            "{e}"
        );
        let e = read_bounded(d.path(), MAX_READ, false).unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::NotRegular {
                    kind: "a directory",
                    ..
                }
            ),
            "{e}"
        );
        let big = d.path().join("big");
        std::fs::write(&big, vec![b'x'; MAX_READ as usize + 1]).unwrap();
        let e = read_bounded(&big, MAX_READ, false).unwrap_err();
        assert_eq!(
            e.chain(),
            format!(
                "{} is 1048577 bytes, more than the 1048576 bytes the web GUI reads\nhint: this is not the file you meant; point the key at the right one in config.yaml",
                big.display()
            )
        );
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&big, &link).unwrap();
        let e = read_bounded(&link, MAX_READ, true).unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::NotRegular {
                    kind: "a symbolic link",
                    ..
                }
            ),
            "{e}"
        );
        assert!(t.elapsed().as_secs() < 5, "bounded time: {:?}", t.elapsed());
        let (tail, size) = read_tail(&big, 10).unwrap();
        assert_eq!((tail.len(), size), (10, MAX_READ + 1));
        assert!(
            read_bounded(&d.path().join("none"), 1, false)
                .unwrap_err()
                .is_not_found()
        );
    }

    #[test]
    fn inside_is_lexical_and_follows_links() {
        let d = tempfile::tempdir().unwrap();
        let g = d.path().join("genconf");
        std::fs::create_dir(&g).unwrap();
        assert_eq!(
            inside(&g, &g.join("ip-detect")),
            Some(PathBuf::from("ip-detect"))
        );
        assert_eq!(
            inside(&g, &g.join("new/dir/x")),
            Some(PathBuf::from("new/dir/x"))
        );
        assert_eq!(inside(&g, &g.join("../etc/passwd")), None);
        assert_eq!(inside(&g, Path::new("/etc/passwd")), None);
        assert_eq!(inside(&g, &g), None);
        std::os::unix::fs::symlink("/etc", g.join("out")).unwrap();
        assert_eq!(inside(&g, &g.join("out/passwd")), None);
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    }
}
