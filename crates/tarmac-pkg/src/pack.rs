//! Deterministic package archives and per-file integrity lists.
//!
//! [`pack_dir`] turns a directory into a `.tar.zst` whose bytes depend only on the
//! directory's content: entries are sorted by name (parents first), every mtime is
//! [`MTIME`], uid/gid are 0 with no user or group names, modes are normalized (`0755`
//! for directories and files with any execute bit, `0644` otherwise, symlinks kept as
//! links), and zstd runs at a fixed level in multi-threaded mode (whose output does not
//! depend on the number of workers). Hard links are stored as separate regular files.
//! Anything the host would refuse (device nodes, FIFOs, sockets, symlinks leaving the
//! tree, non-UTF-8 names) is refused here already.
//!
//! [`write_file_list`] writes `files.json` (see [`FileList`]) into a package directory
//! before packing, so a host can re-hash an installed package with [`verify_tree`].

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use tarmac_types::{Digest, Sha256Writer};

/// Modification time stored for every entry: 2020-01-01T00:00:00Z (not 0, which some
/// tools treat as "unset").
pub const MTIME: u64 = 1_577_836_800;

/// Name of the per-file integrity list inside a package directory.
pub const FILE_LIST: &str = "files.json";

/// Version of the [`FileList`] format.
pub const FILE_LIST_FORMAT: u32 = 1;

/// Default zstd level for packages: a good ratio at multi-threaded speed.
pub const DEFAULT_LEVEL: i32 = 12;

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{action} `{path}`")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "`{path}` is a {kind}; packages may only contain directories, regular files and symlinks"
    )]
    Unsupported { path: PathBuf, kind: &'static str },
    #[error("`{path}` has a name that is not UTF-8")]
    NonUtf8 { path: PathBuf },
    #[error("symlink `{path}` -> `{target}` points outside the package")]
    EscapingSymlink { path: String, target: String },
    #[error("`{path}` changed while it was being packed (expected {expected} bytes)")]
    Changed { path: PathBuf, expected: u64 },
    #[error("file list `{path}` is not valid")]
    BadFileList {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("file list `{path}` has format {found}, this tarmac reads format {FILE_LIST_FORMAT}")]
    FileListFormat { path: PathBuf, found: u32 },
}

impl tarmac_types::error_report::Hint for PackError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        Some(match self {
            PackError::NonUtf8 { .. } => Cow::Borrowed("rename it; package paths must be UTF-8"),
            PackError::EscapingSymlink { .. } => Cow::Borrowed(
                "use a relative target inside the package, or reference the file through /opt/tarmac at runtime from a script instead of a link",
            ),
            _ => return None,
        })
    }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PackError + use<> {
    let path = path.to_owned();
    move |source| PackError::Io {
        action,
        path,
        source,
    }
}

/// How to compress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackOptions {
    /// zstd level (1–22).
    pub level: i32,
    /// zstd worker threads (≥ 1). Output bytes do not depend on this number.
    pub workers: u32,
}

impl Default for PackOptions {
    fn default() -> Self {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        Self {
            level: DEFAULT_LEVEL,
            workers: workers.max(1),
        }
    }
}

/// The result of packing: the archive's digest and size, and what went in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packed {
    pub sha256: Digest,
    /// Compressed size in bytes.
    pub size: u64,
    /// Number of entries (directories, files, symlinks).
    pub entries: u64,
    /// Sum of regular file sizes.
    pub content_bytes: u64,
}

/// One entry of a directory tree, as it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the root, `/`-separated, no leading `./`.
    pub path: String,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File { executable: bool, size: u64 },
    Symlink { target: String },
}

impl EntryKind {
    /// The normalized mode stored in the archive.
    pub fn mode(&self) -> u32 {
        match self {
            EntryKind::Dir => 0o755,
            EntryKind::File {
                executable: true, ..
            } => 0o755,
            EntryKind::File {
                executable: false, ..
            } => 0o644,
            EntryKind::Symlink { .. } => 0o777,
        }
    }
}

/// Every entry below `root` (not `root` itself), parents before children, siblings
/// sorted by name bytes. Refuses special files, non-UTF-8 names and escaping symlinks.
pub fn walk(root: &Path) -> Result<Vec<Entry>, PackError> {
    let mut out = Vec::new();
    walk_into(root, "", &mut out)?;
    Ok(out)
}

fn walk_into(dir: &Path, prefix: &str, out: &mut Vec<Entry>) -> Result<(), PackError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("cannot read directory", dir))? {
        let entry = entry.map_err(io_err("cannot read directory", dir))?;
        names.push(entry.file_name());
    }
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    for name in names {
        let full = dir.join(&name);
        let name = name
            .to_str()
            .ok_or_else(|| PackError::NonUtf8 { path: full.clone() })?;
        let rel = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        let meta = fs::symlink_metadata(&full).map_err(io_err("cannot stat", &full))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            out.push(Entry {
                path: rel.clone(),
                kind: EntryKind::Dir,
            });
            walk_into(&full, &rel, out)?;
        } else if ft.is_file() {
            let executable = meta.permissions().mode() & 0o111 != 0;
            out.push(Entry {
                path: rel,
                kind: EntryKind::File {
                    executable,
                    size: meta.len(),
                },
            });
        } else if ft.is_symlink() {
            let target = fs::read_link(&full).map_err(io_err("cannot read symlink", &full))?;
            let target = target
                .into_os_string()
                .into_string()
                .map_err(|_| PackError::NonUtf8 { path: full.clone() })?;
            if symlink_escapes(&rel, &target) {
                return Err(PackError::EscapingSymlink { path: rel, target });
            }
            out.push(Entry {
                path: rel,
                kind: EntryKind::Symlink { target },
            });
        } else {
            use std::os::unix::fs::FileTypeExt;
            let kind = if ft.is_block_device() {
                "block device"
            } else if ft.is_char_device() {
                "character device"
            } else if ft.is_fifo() {
                "FIFO"
            } else if ft.is_socket() {
                "socket"
            } else {
                "special file"
            };
            return Err(PackError::Unsupported { path: full, kind });
        }
    }
    Ok(())
}

/// True when a symlink at `link_path` (relative to the package root) with `target`
/// would resolve outside the root (judged lexically, as the host's extractor does).
pub fn symlink_escapes(link_path: &str, target: &str) -> bool {
    let target = Path::new(target);
    if target.is_absolute() || target.as_os_str().is_empty() {
        return true;
    }
    // depth of the directory holding the link
    let mut depth: i64 = Path::new(link_path).components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return true,
        }
    }
    false
}

/// Write the uncompressed, deterministic tar stream of `root` to `w`: `pkginfo.json` and
/// `buildinfo.full.json` first (a host reads a package's metadata, and whether its roles use
/// it, before the rest), then every entry sorted by name, parents first.
pub fn write_tar<W: Write>(root: &Path, w: W) -> Result<(W, u64, u64), PackError> {
    let mut entries = walk(root)?;
    let rank = |e: &Entry| match (&e.kind, e.path.as_str()) {
        (EntryKind::File { .. }, crate::layout::PKGINFO) => 0,
        (EntryKind::File { .. }, crate::layout::BUILDINFO_FULL) => 1,
        _ => 2,
    };
    // Stable: the rest keeps its order.
    entries.sort_by_key(rank);
    let mut builder = tar::Builder::new(w);
    let mut content = 0u64;
    let out_err = |source| PackError::Io {
        action: "cannot write archive for",
        path: root.to_owned(),
        source,
    };
    for e in &entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mode(e.kind.mode());
        match &e.kind {
            EntryKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                builder
                    .append_data(&mut h, format!("{}/", e.path), io::empty())
                    .map_err(out_err)?;
            }
            EntryKind::File { size, .. } => {
                let full = root.join(&e.path);
                let f = File::open(&full).map_err(io_err("cannot open", &full))?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(*size);
                let mut exact = ExactReader {
                    inner: f.take(*size),
                    left: *size,
                };
                builder
                    .append_data(&mut h, &e.path, &mut exact)
                    .map_err(|source| {
                        if source.kind() == io::ErrorKind::UnexpectedEof {
                            PackError::Changed {
                                path: full.clone(),
                                expected: *size,
                            }
                        } else {
                            PackError::Io {
                                action: "cannot pack",
                                path: full.clone(),
                                source,
                            }
                        }
                    })?;
                content += size;
            }
            EntryKind::Symlink { target } => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                builder
                    .append_link(&mut h, &e.path, target)
                    .map_err(out_err)?;
            }
        }
    }
    let w = builder.into_inner().map_err(out_err)?;
    Ok((w, entries.len() as u64, content))
}

/// Reads exactly `left` bytes, failing with `UnexpectedEof` if the source is shorter.
struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Pack `root` into `out` (a `.tar.zst`), atomically: a temporary file in the same
/// directory is written, fsynced and renamed; the directory is fsynced.
pub fn pack_dir(root: &Path, out: &Path, opts: &PackOptions) -> Result<Packed, PackError> {
    let mut entries = 0;
    let mut content = 0;
    // Artifacts are public (hashes and signatures protect them).
    let (sha256, size) = write_atomic(out, 0o644, |file| {
        let hashing = Sha256Writer::new(BufWriter::with_capacity(1 << 20, file));
        let mut enc = zstd::stream::write::Encoder::new(hashing, opts.level)
            .map_err(io_err("cannot start zstd for", out))?;
        enc.multithread(opts.workers.max(1))
            .map_err(io_err("cannot enable zstd threads for", out))?;
        enc.include_checksum(true)
            .map_err(io_err("cannot configure zstd for", out))?;
        let (enc, n, c) = write_tar(root, enc)?;
        entries = n;
        content = c;
        let hashing = enc
            .finish()
            .map_err(io_err("cannot finish zstd stream of", out))?;
        let (digest, len, buf) = hashing.finish();
        buf.into_inner().map_err(|e| PackError::Io {
            action: "cannot write",
            path: out.to_owned(),
            source: e.into_error(),
        })?;
        Ok((digest, len))
    })?;
    Ok(Packed {
        sha256,
        size,
        entries,
        content_bytes: content,
    })
}

/// Create `path` atomically with `mode` from the first byte ([`tarmac_fsx::AtomicFile`]):
/// `fill` writes a temporary file next to it, which is then fsynced, renamed over `path`, and
/// the directory fsynced. On any error nothing is left and `path` is untouched.
pub fn write_atomic<T>(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut File) -> Result<T, PackError>,
) -> Result<T, PackError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tarmac_fsx::AtomicFile::create(path, mode)
        .map_err(io_err("cannot create a temporary file in", dir))?;
    let value = fill(tmp.file_mut())?;
    tmp.commit()
        .map_err(io_err("cannot write (fsync, rename into place)", path))?;
    Ok(value)
}

/// Write `bytes` to `path` atomically (see [`write_atomic`]) with the given mode.
pub fn write_file_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PackError> {
    write_atomic(path, mode, |f| {
        f.write_all(bytes).map_err(io_err("cannot write", path))
    })
}

/// fsync a directory (so a rename in it is durable).
pub fn fsync_dir(dir: &Path) -> Result<(), PackError> {
    tarmac_fsx::fsync_dir(dir).map_err(io_err("cannot fsync directory", dir))
}

/// The integrity list of a package directory (`files.json`): every entry but the list
/// itself, with normalized modes and, for files, size and sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileList {
    pub format: u32,
    pub files: Vec<FileRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: String,
    #[serde(flatten)]
    pub kind: FileKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FileKind {
    Dir,
    File {
        /// `"0755"` or `"0644"`.
        mode: String,
        size: u64,
        sha256: Digest,
    },
    Symlink {
        target: String,
    },
}

impl FileList {
    /// Compute the list for `root` (excluding a top-level `files.json`).
    pub fn compute(root: &Path) -> Result<FileList, PackError> {
        let mut files = Vec::new();
        for e in walk(root)? {
            if e.path == FILE_LIST {
                continue;
            }
            let kind = match &e.kind {
                EntryKind::Dir => FileKind::Dir,
                EntryKind::Symlink { target } => FileKind::Symlink {
                    target: target.clone(),
                },
                EntryKind::File { size, .. } => {
                    let full = root.join(&e.path);
                    let sha256 = Digest::of_file(&full).map_err(io_err("cannot hash", &full))?;
                    FileKind::File {
                        mode: format!("{:04o}", e.kind.mode()),
                        size: *size,
                        sha256,
                    }
                }
            };
            files.push(FileRecord { path: e.path, kind });
        }
        Ok(FileList {
            format: FILE_LIST_FORMAT,
            files,
        })
    }

    /// Canonical bytes: pretty JSON with a trailing newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("file list serializes");
        v.push(b'\n');
        v
    }

    pub fn read(root: &Path) -> Result<FileList, PackError> {
        let path = root.join(FILE_LIST);
        let bytes = fs::read(&path).map_err(io_err("cannot read", &path))?;
        let list: FileList =
            serde_json::from_slice(&bytes).map_err(|source| PackError::BadFileList {
                path: path.clone(),
                source,
            })?;
        if list.format != FILE_LIST_FORMAT {
            return Err(PackError::FileListFormat {
                path,
                found: list.format,
            });
        }
        Ok(list)
    }
}

/// Compute and write `root/files.json` (mode 0644). Returns the list.
pub fn write_file_list(root: &Path) -> Result<FileList, PackError> {
    let list = FileList::compute(root)?;
    write_file_atomic(&root.join(FILE_LIST), &list.to_bytes(), 0o644)?;
    Ok(list)
}

/// A difference between an installed package directory and its `files.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Mismatch {
    Missing {
        path: String,
    },
    Unexpected {
        path: String,
    },
    Modified {
        path: String,
        expected: String,
        found: String,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Missing { path } => write!(f, "missing: {path}"),
            Mismatch::Unexpected { path } => write!(f, "not part of the package: {path}"),
            Mismatch::Modified {
                path,
                expected,
                found,
            } => {
                write!(f, "modified: {path} (expected {expected}, found {found})")
            }
        }
    }
}

fn describe(k: &FileKind) -> String {
    match k {
        FileKind::Dir => "directory".into(),
        FileKind::File { mode, size, sha256 } => {
            format!("file {mode} {size} bytes sha256 {sha256}")
        }
        FileKind::Symlink { target } => format!("symlink -> {target}"),
    }
}

/// Re-hash `root` against its `files.json`. An empty result means intact.
pub fn verify_tree(root: &Path) -> Result<Vec<Mismatch>, PackError> {
    let expected = FileList::read(root)?;
    let actual = FileList::compute(root)?;
    let want: BTreeMap<&str, &FileKind> = expected
        .files
        .iter()
        .map(|r| (r.path.as_str(), &r.kind))
        .collect();
    let have: BTreeMap<&str, &FileKind> = actual
        .files
        .iter()
        .map(|r| (r.path.as_str(), &r.kind))
        .collect();
    let mut out = Vec::new();
    for (path, w) in &want {
        match have.get(path) {
            None => out.push(Mismatch::Missing {
                path: (*path).to_owned(),
            }),
            Some(h) if h != w => out.push(Mismatch::Modified {
                path: (*path).to_owned(),
                expected: describe(w),
                found: describe(h),
            }),
            Some(_) => {}
        }
    }
    for path in have.keys() {
        if !want.contains_key(path) {
            out.push(Mismatch::Unexpected {
                path: (*path).to_owned(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("bin")).unwrap();
        fs::create_dir_all(r.join("etc/deep/er")).unwrap();
        fs::write(r.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(r.join("bin/tool"), fs::Permissions::from_mode(0o4750)).unwrap();
        fs::write(r.join("etc/a.conf"), b"a=1\n").unwrap();
        fs::set_permissions(r.join("etc/a.conf"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(r.join("etc/deep/er/x"), vec![7u8; 300_000]).unwrap();
        fs::write(r.join("pkginfo.json"), b"{}").unwrap();
        symlink("../bin/tool", r.join("etc/tool-link")).unwrap();
        let long = "l".repeat(120);
        fs::create_dir_all(r.join(&long)).unwrap();
        fs::write(r.join(&long).join("f".repeat(100)), b"long").unwrap();
        d
    }

    fn pack_bytes(root: &Path, workers: u32) -> (Vec<u8>, Packed) {
        let out = tempfile::tempdir().unwrap();
        let p = out.path().join("x.tar.zst");
        let packed = pack_dir(root, &p, &PackOptions { level: 3, workers }).unwrap();
        (fs::read(&p).unwrap(), packed)
    }

    #[test]
    fn archive_is_deterministic_across_trees_times_and_workers() {
        let a = tree();
        let b = tree();
        // different mtimes and creation order must not matter
        let f = File::options()
            .write(true)
            .open(b.path().join("etc/a.conf"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(5))
            .unwrap();
        let (x, px) = pack_bytes(a.path(), 1);
        let (y, py) = pack_bytes(b.path(), 2);
        let (z, _) = pack_bytes(b.path(), 3);
        assert_eq!(x, y);
        assert_eq!(y, z);
        assert_eq!(px, py);
        assert_eq!(px.sha256, Digest::of(&x));
        assert_eq!(px.size, x.len() as u64);
    }

    #[test]
    fn multi_job_zstd_output_is_independent_of_workers() {
        // Larger than several zstd-MT jobs, so the workers really split the input.
        let d = tempfile::tempdir().unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let data: Vec<u8> = (0..40_000_000u32)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i % 3 == 0 {
                    (x % 7) as u8
                } else {
                    b'a' + (i % 23) as u8
                }
            })
            .collect();
        fs::write(d.path().join("big"), &data).unwrap();
        drop(data);
        let (a, _) = pack_bytes(d.path(), 1);
        let (b, _) = pack_bytes(d.path(), 2);
        let (c, _) = pack_bytes(d.path(), 4);
        assert!(a == b && b == c, "zstd-MT output differs by worker count");
    }

    #[test]
    fn archive_headers_are_normalized() {
        let a = tree();
        let (bytes, _) = pack_bytes(a.path(), 2);
        let dec = zstd::stream::read::Decoder::new(&bytes[..]).unwrap();
        let mut ar = tar::Archive::new(dec);
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!(h.mtime().unwrap(), MTIME);
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            assert_eq!(h.username().unwrap(), Some(""));
            assert_eq!(h.groupname().unwrap(), Some(""));
            let path = e.path().unwrap().to_string_lossy().into_owned();
            seen.push((path, h.mode().unwrap(), h.entry_type()));
        }
        let get = |p: &str| {
            seen.iter()
                .find(|s| s.0 == p)
                .unwrap_or_else(|| panic!("{p}"))
        };
        assert_eq!(get("bin/tool").1, 0o755); // setuid and group bits dropped
        assert_eq!(get("etc/a.conf").1, 0o644);
        assert_eq!(get("etc/").1, 0o755);
        assert!(get("etc/tool-link").2.is_symlink());
        assert!(seen.iter().any(|s| s.0.ends_with(&"f".repeat(100))));
        // The metadata first, then parents before children, siblings sorted.
        let names: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            &names[..5],
            &["pkginfo.json", "bin/", "bin/tool", "etc/", "etc/a.conf"]
        );
    }

    #[test]
    fn refuses_escaping_symlinks_and_fifos() {
        let d = tempfile::tempdir().unwrap();
        symlink("/etc/passwd", d.path().join("abs")).unwrap();
        assert!(matches!(
            walk(d.path()),
            Err(PackError::EscapingSymlink { .. })
        ));
        fs::remove_file(d.path().join("abs")).unwrap();
        fs::create_dir(d.path().join("sub")).unwrap();
        symlink("../../x", d.path().join("sub/up")).unwrap();
        assert!(matches!(
            walk(d.path()),
            Err(PackError::EscapingSymlink { .. })
        ));
        fs::remove_file(d.path().join("sub/up")).unwrap();
        let c = std::ffi::CString::new(d.path().join("fifo").to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(matches!(
            walk(d.path()),
            Err(PackError::Unsupported { kind: "FIFO", .. })
        ));
    }

    #[test]
    fn symlink_escape_rules() {
        assert!(!symlink_escapes("a/b", "c"));
        assert!(!symlink_escapes("a/b", "../c"));
        assert!(symlink_escapes("a/b", "../../c"));
        assert!(!symlink_escapes("a/b", "./x/../../c"));
        assert!(symlink_escapes("b", "../c"));
        assert!(symlink_escapes("b", "/c"));
        assert!(symlink_escapes("b", ""));
    }

    #[test]
    fn file_list_detects_tampering() {
        let a = tree();
        let list = write_file_list(a.path()).unwrap();
        assert!(!list.files.iter().any(|f| f.path == FILE_LIST));
        assert_eq!(verify_tree(a.path()).unwrap(), vec![]);
        let rec = list.files.iter().find(|f| f.path == "bin/tool").unwrap();
        assert!(matches!(&rec.kind, FileKind::File { mode, size: 18, .. } if mode == "0755"));

        fs::write(a.path().join("etc/a.conf"), b"a=2\n").unwrap();
        fs::remove_file(a.path().join("pkginfo.json")).unwrap();
        fs::write(a.path().join("bin/extra"), b"").unwrap();
        fs::set_permissions(a.path().join("bin/tool"), fs::Permissions::from_mode(0o644)).unwrap();
        let m = verify_tree(a.path()).unwrap();
        let text: Vec<String> = m.iter().map(|m| m.to_string()).collect();
        assert_eq!(m.len(), 4, "{text:#?}");
        assert!(text.iter().any(|t| t.starts_with("modified: etc/a.conf")));
        assert!(
            text.iter()
                .any(|t| t.starts_with("modified: bin/tool (expected file 0755"))
        );
        assert!(text.contains(&"missing: pkginfo.json".to_owned()));
        assert!(text.contains(&"not part of the package: bin/extra".to_owned()));
    }

    #[test]
    fn file_list_json_shape() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("bin")).unwrap();
        fs::write(d.path().join("bin/x"), b"abc").unwrap();
        symlink("x", d.path().join("bin/y")).unwrap();
        let list = FileList::compute(d.path()).unwrap();
        let json = String::from_utf8(list.to_bytes()).unwrap();
        assert_eq!(
            json,
            r#"{
  "format": 1,
  "files": [
    {
      "path": "bin",
      "type": "dir"
    },
    {
      "path": "bin/x",
      "type": "file",
      "mode": "0644",
      "size": 3,
      "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    },
    {
      "path": "bin/y",
      "type": "symlink",
      "target": "x"
    }
  ]
}
"#
        );
    }
}
