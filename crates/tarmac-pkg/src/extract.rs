//! Safe, bounded package extraction, in two steps.
//!
//! 1. [`spool`]: the compressed bytes are copied into a private (0600, already unlinked)
//!    file of the store while they are hashed. Exactly the expected number of bytes must
//!    arrive: reading stops with an error as soon as one byte more arrives, and a short
//!    stream is an error too. The sha256 is compared with the pin **before anything is
//!    decompressed**; on a mismatch nothing was ever visible in the store.
//! 2. [`extract_package`] takes only a [`Spooled`] (so only verified bytes): decompress on
//!    its own thread → untar. The decompressed size is bounded by [`unpacked_limit`] (a
//!    ratio to the compressed size), so a small archive cannot fill the disk. Every entry is
//!    checked before anything is written: absolute paths, `..`, writing through a symlink,
//!    symlinks or hardlinks that leave the package, device files and fifos, setuid/setgid
//!    bits, duplicate entries and the reserved `.tarmac/` directory are all refused with an
//!    error naming the archive and the entry.
//!
//! Extraction goes to a temporary directory next to the final one (same filesystem); the
//! file manifest is written, the filesystem is synced, and only then does one `rename(2)`
//! expose `<store>/<id>`. On any failure the temporary directory is removed: nothing is left
//! behind.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use sha2::{Digest as _, Sha256};
use tarmac_types::{Digest, PackageId, Role, Sha256Writer};

use crate::files::{FileEntry, FileManifest};
use crate::layout::{ARCHIVED_JSON, BUILDINFO_FULL, META_DIR, PKGINFO, SpecialDir};
use crate::pkginfo::{PkgInfo, PkgInfoError};

/// Compression of a package archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    Zstd,
    Xz,
    Gzip,
}

impl Compression {
    /// In the order a repository is tried: zstd first.
    pub const ALL: [Compression; 3] = [Compression::Zstd, Compression::Xz, Compression::Gzip];

    /// The file name suffix, e.g. `.tar.zst`.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::Zstd => ".tar.zst",
            Compression::Xz => ".tar.xz",
            Compression::Gzip => ".tar.gz",
        }
    }

    /// Split `etcd--1.tar.zst` into (`etcd--1`, Zstd).
    pub fn split_file_name(name: &str) -> Option<(&str, Compression)> {
        Compression::ALL
            .into_iter()
            .find_map(|c| name.strip_suffix(c.suffix()).map(|s| (s, c)))
    }

    fn decoder<'a, R: io::BufRead + 'a>(self, r: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
            Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_stream(
                r,
                liblzma::stream::Stream::new_auto_decoder(
                    XZ_MEMLIMIT,
                    liblzma::stream::CONCATENATED,
                )
                .map_err(io::Error::other)?,
            )),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        })
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Gzip => "gzip",
        })
    }
}

/// Why an archive entry was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnsafeReason {
    AbsolutePath,
    ParentComponent,
    NotUtf8,
    ThroughSymlink { link: String },
    SymlinkEscapes { target: String },
    SymlinkAbsolute { target: String },
    SymlinkLoop,
    HardlinkTarget { target: String },
    SpecialFile { kind: &'static str },
    SetIdBits { mode: u32 },
    Duplicate,
    Reserved,
    RootNotDirectory,
    Unsupported { kind: String },
}

impl fmt::Display for UnsafeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnsafeReason::AbsolutePath => f.write_str("absolute path"),
            UnsafeReason::ParentComponent => f.write_str("path contains `..`"),
            UnsafeReason::NotUtf8 => f.write_str("path is not valid UTF-8"),
            UnsafeReason::ThroughSymlink { link } => {
                write!(f, "would be written through the symlink `{link}`")
            }
            UnsafeReason::SymlinkEscapes { target } => {
                write!(f, "symlink to `{target}` points outside the package")
            }
            UnsafeReason::SymlinkAbsolute { target } => write!(
                f,
                "symlink to the absolute path `{target}` points outside the package (use a relative target)"
            ),
            UnsafeReason::SymlinkLoop => f.write_str("symlink chain too long (loop?)"),
            UnsafeReason::HardlinkTarget { target } => write!(
                f,
                "hard link to `{target}`, which is not a regular file extracted earlier from this package"
            ),
            UnsafeReason::SpecialFile { kind } => write!(f, "{kind} entries are not allowed"),
            UnsafeReason::SetIdBits { mode } => {
                write!(f, "setuid/setgid bits are not allowed (mode {mode:04o})")
            }
            UnsafeReason::Duplicate => f.write_str("appears twice in the archive"),
            UnsafeReason::Reserved => {
                write!(
                    f,
                    "`{META_DIR}/` is reserved for tarmac-host's own metadata"
                )
            }
            UnsafeReason::RootNotDirectory => f.write_str("the archive root must be a directory"),
            UnsafeReason::Unsupported { kind } => write!(f, "unsupported entry type {kind}"),
        }
    }
}

/// Why an archive could not be extracted. Nothing was left in the store.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("{archive}: refusing unsafe entry `{entry}`: {reason}")]
    Unsafe {
        archive: String,
        entry: String,
        reason: UnsafeReason,
    },
    #[error("{archive}: cannot read the archive (truncated or corrupt?)")]
    Read {
        archive: String,
        #[source]
        source: io::Error,
    },
    #[error("{archive}: cannot write `{entry}` under {dir}")]
    Write {
        archive: String,
        entry: String,
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{archive}: the archive has no pkginfo.json at its root")]
    MissingPkgInfo { archive: String },
    #[error(
        "{archive}: pkginfo.json declares the special directories [{}] but the archive has [{}]",
        declared.join(", "),
        found.join(", ")
    )]
    SpecialDirsMismatch {
        archive: String,
        declared: Vec<String>,
        found: Vec<String>,
    },
    #[error(transparent)]
    PkgInfo(#[from] PkgInfoError),
    #[error("{archive}: sha256 mismatch: expected {expected}, got {actual} ({size} bytes)")]
    HashMismatch {
        archive: String,
        expected: Digest,
        actual: Digest,
        size: u64,
    },
    #[error("{archive}: the archive is {announced} bytes, but the pin says {size}")]
    SizeMismatch {
        archive: String,
        announced: u64,
        size: u64,
    },
    #[error("{archive}: more than the expected {size} bytes arrived; stopped reading there")]
    TooLarge { archive: String, size: u64 },
    #[error("{archive}: the archive ended after {got} of the expected {size} bytes")]
    TooShort {
        archive: String,
        got: u64,
        size: u64,
    },
    #[error(
        "{archive}: package {id} unpacks to more than {limit} bytes from {size} compressed bytes (at most {ratio} × compressed + {slack_mib} MiB); refusing it as a decompression bomb",
        ratio = MAX_RATIO,
        slack_mib = RATIO_SLACK >> 20
    )]
    Bomb {
        archive: String,
        id: PackageId,
        size: u64,
        limit: u64,
    },
    #[error("{archive}: cannot spool the download into {dir}")]
    Spool {
        archive: String,
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{archive}: cannot create the package directory {path}")]
    Store {
        archive: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl tarmac_types::error_report::Hint for ExtractError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        Some(match self {
            ExtractError::HashMismatch { .. } => Cow::Borrowed(
                "the download was corrupted or the artifact was replaced; nothing was installed",
            ),
            ExtractError::SizeMismatch { .. } => Cow::Borrowed(
                "the artifact was replaced or the package list is stale (re-run `tarmac genconf`); nothing was downloaded",
            ),
            ExtractError::TooLarge { .. } => Cow::Borrowed(
                "the artifact was replaced or the package list is stale (re-run `tarmac genconf`); nothing was installed",
            ),
            ExtractError::TooShort { .. } => Cow::Borrowed(
                "the artifact was truncated or replaced, or the package list is stale (re-run `tarmac genconf`); nothing was installed",
            ),
            ExtractError::Bomb { id, .. } => Cow::Owned(format!(
                "nothing was installed; check what the repository serves for {id}"
            )),
            ExtractError::PkgInfo(e) => return e.hint(),
            _ => return None,
        })
    }
}

/// Where and as what to extract.
#[derive(Debug, Clone)]
pub struct ExtractTarget<'a> {
    /// The package store directory; the package lands in `<store>/<id>`.
    pub store_dir: &'a Path,
    pub id: &'a PackageId,
    /// Name shown in errors (file path or URL).
    pub origin: &'a str,
    /// Extract only if a host with these roles uses the package ([`crate::layout::used_by`]);
    /// otherwise keep it as its verified archive with `pkginfo.json`, `buildinfo.full.json`
    /// and [`ARCHIVED_JSON`]. `None` extracts every package. Either way every entry of the
    /// archive is checked as in a full extraction.
    pub scope: Option<&'a BTreeSet<Role>>,
    /// `<store>/<id>` exists (an archived package being extracted): exchange it atomically
    /// (`renameat2(RENAME_EXCHANGE)`) instead of creating it.
    pub replace: bool,
    /// Stage the package instead of exposing it: written completely under a temporary name,
    /// but synced and renamed into place only by [`Staging::commit`], with the other packages
    /// of the same set (one `syncfs` for all of them). Not used with `replace`.
    pub staging: Option<&'a Staging>,
}

/// Packages written completely under temporary names in the store and not yet exposed.
/// [`Staging::commit`] makes them durable with one `syncfs(2)` and then renames each into
/// place (fsyncing the store directory once): a set of packages costs one flush, not one per
/// package. Crash safety is the same as one by one: before the flush nothing is exposed (the
/// temporary directories are removed by recovery, [`crate::store::Store::clean_temp`]); every
/// rename happens after it, so an exposed package is always complete. Dropping a `Staging`
/// without committing removes what it holds.
#[derive(Default)]
pub struct Staging {
    staged: std::sync::Mutex<Vec<(TempDir, PathBuf)>>,
}

impl fmt::Debug for Staging {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.staged.lock().map(|v| v.len()).unwrap_or(0);
        write!(f, "Staging({n} packages)")
    }
}

impl Staging {
    pub fn new() -> Staging {
        Staging::default()
    }

    fn push(&self, tmp: TempDir, final_path: PathBuf) {
        self.staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((tmp, final_path));
    }

    /// Make every staged package durable (one `syncfs` of `store_dir`), then rename each into
    /// place and fsync `store_dir`. A package that appeared meanwhile under the same id (the
    /// same id staged twice) keeps the first copy. On error, what was not renamed is removed.
    pub fn commit(&self, store_dir: &Path) -> io::Result<()> {
        let staged = std::mem::take(&mut *self.staged.lock().unwrap_or_else(|p| p.into_inner()));
        if staged.is_empty() {
            return Ok(());
        }
        syncfs(store_dir)?;
        for (tmp, final_path) in staged {
            match fs::rename(&tmp.path, &final_path) {
                Ok(()) => tmp.disarm(),
                Err(e)
                    if final_path.is_dir()
                        && matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) =>
                {
                    drop(tmp)
                }
                Err(e) => return Err(e),
            }
        }
        fsync_dir(store_dir)
    }
}

/// What an archive must be, known before the first byte is read (from the cluster package
/// list): its sha256 and its exact size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Pin {
    pub sha256: Digest,
    pub size: u64,
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.sha256.hex(), self.size)
    }
}

/// Why a `SHA256:SIZE` pin does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pin `{text}`: {why} (expected SHA256:SIZE, e.g. `<64 hex>:123456`)")]
pub struct PinError {
    pub text: String,
    pub why: String,
}

impl std::str::FromStr for Pin {
    type Err = PinError;
    fn from_str(text: &str) -> Result<Pin, PinError> {
        let err = |why: String| PinError {
            text: text.to_owned(),
            why,
        };
        let (sha, size) = text
            .rsplit_once(':')
            .filter(|(sha, _)| !sha.is_empty() && *sha != "sha256")
            .ok_or_else(|| err("no size".into()))?;
        let sha256 = sha.parse::<Digest>().map_err(|e| err(e.to_string()))?;
        let size = size
            .parse::<u64>()
            .map_err(|_| err(format!("`{size}` is not a size in bytes")))?;
        Ok(Pin { sha256, size })
    }
}

/// At most this many decompressed bytes per compressed byte ([`unpacked_limit`]).
pub const MAX_RATIO: u64 = 200;
/// Decompressed bytes always allowed on top of the ratio (small archives of small files).
pub const RATIO_SLACK: u64 = 32 << 20;
/// Memory the xz decoder may use (a hostile header may ask for a 1.5 GiB dictionary).
const XZ_MEMLIMIT: u64 = 256 << 20;

/// The most bytes an archive of `compressed` bytes may decompress to:
/// `MAX_RATIO × compressed + RATIO_SLACK`.
pub fn unpacked_limit(compressed: u64) -> u64 {
    compressed
        .saturating_mul(MAX_RATIO)
        .saturating_add(RATIO_SLACK)
}

/// A package that was extracted and exposed in the store (or staged for [`Staging::commit`],
/// which exposes it at `path`).
#[derive(Debug, Clone)]
pub struct Extracted {
    pub path: PathBuf,
    pub info: PkgInfo,
    pub manifest: FileManifest,
    /// Kept as its verified archive only (see [`ExtractTarget::scope`]).
    pub archived: bool,
}

/// Prefix of temporary directories in the store (removed by recovery).
pub const TMP_PREFIX: &str = ".tmp-";

/// Removes a directory tree on drop unless disarmed.
pub(crate) struct TempDir {
    pub(crate) path: PathBuf,
    armed: bool,
}

impl TempDir {
    pub(crate) fn create(parent: &Path, label: &str) -> io::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = parent.join(format!(
            "{TMP_PREFIX}{label}-{}-{nanos:08x}",
            std::process::id()
        ));
        fs::DirBuilder::new().mode(0o755).create(&path)?;
        Ok(TempDir { path, armed: true })
    }

    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.armed {
            let _ = make_writable_and_remove(&self.path);
        }
    }
}

/// `rm -rf` that first makes directories writable (packages may ship 0555 directories).
pub fn make_writable_and_remove(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Ok(m) if !m.is_dir() => {
            return match fs::remove_file(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                r => r,
            };
        }
        _ => {}
    }
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            chmod_dirs_writable(path);
            match fs::remove_dir_all(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                r => r,
            }
        }
    }
}

fn chmod_dirs_writable(path: &Path) {
    if let Ok(m) = fs::symlink_metadata(path)
        && m.is_dir()
    {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o755));
        if let Ok(rd) = fs::read_dir(path) {
            for e in rd.flatten() {
                chmod_dirs_writable(&e.path());
            }
        }
    }
}

/// fsync a directory (after creating, renaming or removing entries in it).
pub use tarmac_fsx::fsync_dir;

/// Flush everything on the filesystem holding `path` (one `syncfs(2)` instead of one fsync
/// per file: thousands of small files cost one call).
pub fn syncfs(path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = File::open(path)?;
    // SAFETY: syncfs only reads the descriptor, which stays open for the call.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads the chunks the decompression thread sends.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) if chunk.is_empty() => self.done = true,
                Ok(Ok(chunk)) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "decompression stopped early",
                    ));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

const CHUNK: usize = 1 << 20;

/// The decompressed stream passed [`unpacked_limit`].
struct Bomb {
    limit: u64,
}

/// Decompress on this thread: send decompressed chunks, then an empty chunk. Stops with
/// [`Bomb`] once more than `limit` bytes came out.
fn pump<R: Read>(
    reader: R,
    compression: Compression,
    limit: u64,
    tx: mpsc::SyncSender<io::Result<Vec<u8>>>,
) -> Result<(), Bomb> {
    let mut total = 0u64;
    let result = (|| -> io::Result<Result<(), Bomb>> {
        let mut dec = compression.decoder(io::BufReader::with_capacity(CHUNK, reader))?;
        loop {
            let mut chunk = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                let n = dec.read(&mut chunk[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            total += filled as u64;
            if total > limit {
                return Ok(Err(Bomb { limit }));
            }
            chunk.truncate(filled);
            if tx.send(Ok(chunk)).is_err() {
                return Ok(Ok(())); // the consumer gave up; its error wins
            }
        }
        let _ = tx.send(Ok(Vec::new()));
        Ok(Ok(()))
    })();
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(bomb)) => {
            let _ = tx.send(Err(io::Error::other("decompressed size limit reached")));
            Err(bomb)
        }
        Err(e) => {
            let _ = tx.send(Err(e));
            Ok(())
        }
    }
}

/// A verified archive: a private, already unlinked file in the store holding exactly the
/// pinned bytes. Only [`spool`] makes one, so [`extract_package`] only sees verified bytes.
#[derive(Debug)]
pub struct Spooled {
    file: File,
    pub sha256: Digest,
    pub size: u64,
}

/// What [`spool`] must receive.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// Exactly this many bytes (the pin's size, or a local file's own size).
    pub size: u64,
    /// The sha256 they must have, when pinned.
    pub sha256: Option<Digest>,
    /// The size the source announced (HTTP `Content-Length`, a file's length), if any.
    pub announced: Option<u64>,
}

/// The name of the kept archive inside a stored package's [`META_DIR`].
pub fn archive_file_name(c: Compression) -> String {
    format!("{}{}", crate::layout::ARCHIVE_STEM, c.suffix())
}

/// Copy the compressed archive from `reader` into a private, unlinked temporary file of
/// the store while hashing it, reading at most `expect.size + 1` bytes; then check size and
/// sha256. Nothing is decompressed here, and nothing is left on any error.
pub fn spool<R: Read>(
    mut reader: R,
    store_dir: &Path,
    id: &PackageId,
    origin: &str,
    expect: Expect,
) -> Result<Spooled, ExtractError> {
    let size = expect.size;
    if let Some(announced) = expect.announced
        && announced != size
    {
        return Err(ExtractError::SizeMismatch {
            archive: origin.to_owned(),
            announced,
            size,
        });
    }
    let spool_err = |source| ExtractError::Spool {
        archive: origin.to_owned(),
        dir: store_dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(store_dir).map_err(spool_err)?;
    let mut file = private_unlinked_file(store_dir, id).map_err(spool_err)?;
    let mut hasher = Sha256::new();
    let mut got = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        // Never ask for more than one byte past the expected size.
        let want = (size.saturating_add(1) - got).min(buf.len() as u64) as usize;
        let n = match reader.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(ExtractError::Read {
                    archive: origin.to_owned(),
                    source,
                });
            }
        };
        if n == 0 {
            break;
        }
        got += n as u64;
        if got > size {
            return Err(ExtractError::TooLarge {
                archive: origin.to_owned(),
                size,
            });
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(spool_err)?;
    }
    if got < size {
        return Err(ExtractError::TooShort {
            archive: origin.to_owned(),
            got,
            size,
        });
    }
    let sha256 = Digest(hasher.finalize().into());
    if let Some(expected) = expect.sha256
        && expected != sha256
    {
        return Err(ExtractError::HashMismatch {
            archive: origin.to_owned(),
            expected,
            actual: sha256,
            size,
        });
    }
    file.rewind().map_err(spool_err)?;
    Ok(Spooled { file, sha256, size })
}

/// A 0600 file in `dir` with no name: its bytes are reachable only through the returned
/// descriptor and vanish with it, even on a crash. `O_TMPFILE` where the filesystem has it
/// (so the verified bytes can later be linked into the package as its kept archive, not
/// copied: [`keep_archive`]); else created with `O_EXCL|O_NOFOLLOW` and unlinked at once.
fn private_unlinked_file(dir: &Path, id: &PackageId) -> io::Result<File> {
    if let Ok(f) = OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
    {
        return Ok(f);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let path = dir.join(format!(
        "{TMP_PREFIX}{id}-{}-{nanos:08x}.spool",
        std::process::id()
    ));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)?;
    fs::remove_file(&path)?;
    Ok(file)
}

/// Split an archive path into checked components (`./a//b` → `a/b`). Empty means the root.
fn normalize(raw: &[u8]) -> Result<String, UnsafeReason> {
    let s = std::str::from_utf8(raw).map_err(|_| UnsafeReason::NotUtf8)?;
    if s.starts_with('/') {
        return Err(UnsafeReason::AbsolutePath);
    }
    let mut parts = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(UnsafeReason::ParentComponent),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map(|(p, _)| p).unwrap_or("")
}

/// Follow `path` through the symlinks recorded in `entries`, never above the package root.
/// Dangling links are fine; leaving the package is not.
fn resolve_inside(entries: &BTreeMap<String, FileEntry>, path: &str) -> Result<(), UnsafeReason> {
    let mut todo: VecDeque<String> = path.split('/').map(str::to_owned).collect();
    let mut cur: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                if cur.pop().is_none() {
                    return Err(UnsafeReason::SymlinkEscapes {
                        target: symlink_target(entries, path),
                    });
                }
            }
            _ => {
                cur.push(c);
                let p = cur.join("/");
                if let Some(FileEntry::Symlink { target, .. }) = entries.get(&p) {
                    hops += 1;
                    if hops > 40 {
                        return Err(UnsafeReason::SymlinkLoop);
                    }
                    if target.starts_with('/') {
                        return Err(UnsafeReason::SymlinkAbsolute {
                            target: target.clone(),
                        });
                    }
                    cur.pop();
                    for t in target.split('/').rev() {
                        todo.push_front(t.to_owned());
                    }
                }
            }
        }
    }
    Ok(())
}

fn symlink_target(entries: &BTreeMap<String, FileEntry>, path: &str) -> String {
    match entries.get(path) {
        Some(FileEntry::Symlink { target, .. }) => target.clone(),
        _ => path.to_owned(),
    }
}

struct Extractor<'a> {
    root: &'a Path,
    archive: &'a str,
    entries: BTreeMap<String, FileEntry>,
    symlinks: HashSet<String>,
    dir_modes: Vec<(String, u32)>,
    buf: Vec<u8>,
    /// [`ExtractTarget::scope`]: write only once an entry of a special directory these roles
    /// use shows the package is used.
    decide: Option<&'a BTreeSet<Role>>,
    /// Entries are written (always without `decide`).
    writing: bool,
    /// Some entry was checked but not written.
    skipped: bool,
    /// Checked, not written (so not in the file manifest).
    unwritten: HashSet<String>,
    /// The special top-level directories seen.
    special: BTreeSet<String>,
    /// pkginfo.json's `special_dirs`, once it was read.
    declared: Option<Vec<String>>,
}

/// What the extractor does after an entry.
enum Flow {
    Next,
    /// pkginfo.json declares special directories none of these roles uses: the package stays
    /// an archive, and the rest of it is not decompressed.
    Unused,
    /// Entries were skipped before the package turned out to be used: extract it again,
    /// all of it (rare: archives are sorted, so `bin/` and the like come first).
    Redo,
}

impl Extractor<'_> {
    fn unsafe_entry(&self, entry: &str, reason: UnsafeReason) -> ExtractError {
        ExtractError::Unsafe {
            archive: self.archive.to_owned(),
            entry: entry.to_owned(),
            reason,
        }
    }

    fn write_err(&self, entry: &str, source: io::Error) -> ExtractError {
        ExtractError::Write {
            archive: self.archive.to_owned(),
            entry: entry.to_owned(),
            dir: self.root.to_path_buf(),
            source,
        }
    }

    /// Make sure every parent of `path` is a directory we created (never a symlink); when
    /// not `write`ing, only in the record.
    fn ensure_parents(&mut self, path: &str, write: bool) -> Result<(), ExtractError> {
        let parent = parent_of(path);
        if parent.is_empty() {
            return Ok(());
        }
        let mut prefix = String::new();
        for c in parent.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(c);
            if self.symlinks.contains(&prefix) {
                return Err(self.unsafe_entry(
                    path,
                    UnsafeReason::ThroughSymlink {
                        link: prefix.clone(),
                    },
                ));
            }
            match self.entries.get(&prefix) {
                Some(FileEntry::Dir { .. }) => {}
                Some(_) => {
                    return Err(self.write_err(
                        path,
                        io::Error::new(
                            io::ErrorKind::NotADirectory,
                            format!("`{prefix}` is a file"),
                        ),
                    ));
                }
                None => {
                    if write {
                        fs::DirBuilder::new()
                            .mode(0o755)
                            .create(self.root.join(&prefix))
                            .map_err(|e| self.write_err(path, e))?;
                    } else {
                        self.unwritten.insert(prefix.clone());
                    }
                    self.entries.insert(
                        prefix.clone(),
                        FileEntry::Dir {
                            path: prefix.clone(),
                            mode: 0o755,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// Should this entry be written? Decides, for a scoped extraction, whether the package
    /// is used (see [`ExtractTarget::scope`]).
    fn decide(&mut self, path: &str, kind: tar::EntryType) -> Option<bool> {
        let top = path.split('/').next().unwrap_or_default();
        let special = SpecialDir::classify(top);
        if special.is_some() {
            self.special.insert(top.to_owned());
        }
        let Some(roles) = self.decide else {
            return Some(true);
        };
        if self.writing {
            return Some(true);
        }
        if special.is_some_and(|d| d.applies_to(roles)) {
            if self.skipped {
                return None;
            }
            self.writing = true;
            return Some(true);
        }
        if path == PKGINFO || path == BUILDINFO_FULL {
            // Metadata is always written; an odd one (a link) takes the plain way.
            return matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous)
                .then_some(true);
        }
        self.skipped = true;
        Some(false)
    }

    fn entry<R: Read>(&mut self, mut e: tar::Entry<'_, R>) -> Result<Flow, ExtractError> {
        use tar::EntryType as T;
        let raw = e.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = e.header().entry_type();
        if matches!(
            kind,
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink
        ) {
            return Ok(Flow::Next);
        }
        let path = normalize(&raw).map_err(|r| self.unsafe_entry(&shown, r))?;
        let mode = e.header().mode().map_err(|source| ExtractError::Read {
            archive: self.archive.to_owned(),
            source,
        })?;
        if mode & 0o6000 != 0 {
            return Err(self.unsafe_entry(
                &shown,
                UnsafeReason::SetIdBits {
                    mode: mode & 0o7777,
                },
            ));
        }
        // Group and other never get write access to anything in the store: a world-writable
        // binary or config in an immutable, verified package would be neither.
        let mode = mode & 0o1755;
        if path.is_empty() {
            return if kind == T::Directory {
                Ok(Flow::Next)
            } else {
                Err(self.unsafe_entry(&shown, UnsafeReason::RootNotDirectory))
            };
        }
        if path == META_DIR || path.starts_with(&format!("{META_DIR}/")) {
            return Err(self.unsafe_entry(&path, UnsafeReason::Reserved));
        }
        match kind {
            T::Char => {
                return Err(self.unsafe_entry(
                    &path,
                    UnsafeReason::SpecialFile {
                        kind: "character device",
                    },
                ));
            }
            T::Block => {
                return Err(self.unsafe_entry(
                    &path,
                    UnsafeReason::SpecialFile {
                        kind: "block device",
                    },
                ));
            }
            T::Fifo => {
                return Err(self.unsafe_entry(&path, UnsafeReason::SpecialFile { kind: "fifo" }));
            }
            T::Regular | T::Continuous | T::Directory | T::Symlink | T::Link => {}
            other => {
                return Err(self.unsafe_entry(
                    &path,
                    UnsafeReason::Unsupported {
                        kind: format!("{other:?}"),
                    },
                ));
            }
        }
        if let Some(prev) = self.entries.get(&path) {
            let both_dirs = kind == T::Directory && matches!(prev, FileEntry::Dir { .. });
            if !both_dirs {
                return Err(self.unsafe_entry(&path, UnsafeReason::Duplicate));
            }
        }
        if let (Some(roles), Some(declared), false) = (self.decide, &self.declared, self.writing)
            && path != PKGINFO
            && path != BUILDINFO_FULL
        {
            if crate::layout::used_by(declared.iter().map(String::as_str), roles) {
                self.writing = true;
            } else {
                return Ok(Flow::Unused);
            }
        }
        let Some(write) = self.decide(&path, kind) else {
            return Ok(Flow::Redo);
        };
        self.ensure_parents(&path, write)?;
        let full = self.root.join(&path);
        if !write {
            self.unwritten.insert(path.clone());
        }
        match kind {
            T::Directory => {
                if write && !self.entries.contains_key(&path) {
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&full)
                        .map_err(|err| self.write_err(&path, err))?;
                }
                if write {
                    self.dir_modes.push((path.clone(), mode));
                }
                self.entries
                    .insert(path.clone(), FileEntry::Dir { path, mode });
            }
            T::Regular | T::Continuous if !write => {
                // Checked like every entry; its bytes are decompressed past, not kept.
                let size = e.header().size().map_err(|source| ExtractError::Read {
                    archive: self.archive.to_owned(),
                    source,
                })?;
                self.entries.insert(
                    path.clone(),
                    FileEntry::File {
                        path,
                        mode: mode & 0o777,
                        size,
                        sha256: Digest([0; 32]),
                    },
                );
            }
            T::Regular | T::Continuous => {
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&full)
                    .map_err(|err| self.write_err(&path, err))?;
                let mut w = Sha256Writer::new(file);
                let mut size = 0u64;
                loop {
                    let n = match e.read(&mut self.buf) {
                        Ok(n) => n,
                        Err(source) => {
                            return Err(ExtractError::Read {
                                archive: self.archive.to_owned(),
                                source,
                            });
                        }
                    };
                    if n == 0 {
                        break;
                    }
                    w.write_all(&self.buf[..n])
                        .map_err(|err| self.write_err(&path, err))?;
                    size += n as u64;
                }
                let (sha256, _, file) = w.finish();
                file.set_permissions(fs::Permissions::from_mode(mode & 0o777))
                    .map_err(|err| self.write_err(&path, err))?;
                if path == PKGINFO {
                    // A bad pkginfo.json is reported once the archive is read.
                    self.declared = fs::read(&full)
                        .ok()
                        .and_then(|b| PkgInfo::parse(&b, self.archive).ok())
                        .and_then(|i| i.special_dirs);
                }
                let mode = mode & 0o777;
                self.entries.insert(
                    path.clone(),
                    FileEntry::File {
                        path,
                        mode,
                        size,
                        sha256,
                    },
                );
            }
            T::Symlink => {
                let target_raw = e
                    .link_name_bytes()
                    .map(|b| b.into_owned())
                    .unwrap_or_default();
                let target = std::str::from_utf8(&target_raw)
                    .map_err(|_| self.unsafe_entry(&path, UnsafeReason::NotUtf8))?
                    .to_owned();
                if target.is_empty() {
                    return Err(self.unsafe_entry(
                        &path,
                        UnsafeReason::SymlinkEscapes {
                            target: String::new(),
                        },
                    ));
                }
                if target.starts_with('/') {
                    return Err(self.unsafe_entry(&path, UnsafeReason::SymlinkAbsolute { target }));
                }
                // Lexical check now; the full chain is checked once every link is known.
                let mut depth = parent_of(&path)
                    .split('/')
                    .filter(|c| !c.is_empty())
                    .count();
                for c in target.split('/') {
                    match c {
                        "" | "." => {}
                        ".." if depth == 0 => {
                            return Err(
                                self.unsafe_entry(&path, UnsafeReason::SymlinkEscapes { target })
                            );
                        }
                        ".." => depth -= 1,
                        _ => depth += 1,
                    }
                }
                if write {
                    std::os::unix::fs::symlink(&target, &full)
                        .map_err(|err| self.write_err(&path, err))?;
                }
                self.symlinks.insert(path.clone());
                self.entries
                    .insert(path.clone(), FileEntry::Symlink { path, target });
            }
            T::Link => {
                let target_raw = e
                    .link_name_bytes()
                    .map(|b| b.into_owned())
                    .unwrap_or_default();
                let shown_target = String::from_utf8_lossy(&target_raw).into_owned();
                let bad = |t: String| UnsafeReason::HardlinkTarget { target: t };
                let target = normalize(&target_raw)
                    .map_err(|_| self.unsafe_entry(&path, bad(shown_target.clone())))?;
                let Some(FileEntry::File {
                    mode, size, sha256, ..
                }) = self.entries.get(&target).cloned()
                else {
                    return Err(self.unsafe_entry(&path, bad(shown_target)));
                };
                if write {
                    fs::hard_link(self.root.join(&target), &full)
                        .map_err(|err| self.write_err(&path, err))?;
                }
                self.entries.insert(
                    path.clone(),
                    FileEntry::File {
                        path,
                        mode,
                        size,
                        sha256,
                    },
                );
            }
            _ => unreachable!("filtered above"),
        }
        Ok(Flow::Next)
    }

    fn finish(&mut self) -> Result<(), ExtractError> {
        let links: Vec<String> = self.symlinks.iter().cloned().collect();
        for l in links {
            resolve_inside(&self.entries, &l).map_err(|r| self.unsafe_entry(&l, r))?;
        }
        // Deepest first, so a read-only parent never blocks a child.
        self.dir_modes.sort_by(|a, b| b.0.cmp(&a.0));
        for (p, mode) in std::mem::take(&mut self.dir_modes) {
            fs::set_permissions(self.root.join(&p), fs::Permissions::from_mode(mode))
                .map_err(|err| self.write_err(&p, err))?;
        }
        Ok(())
    }
}

/// Extract a verified archive (see [`spool`]) into `<store>/<id>`, atomically. The
/// decompressed stream may be at most [`unpacked_limit`] of the archive's size.
pub fn extract_package(
    archive_file: Spooled,
    compression: Compression,
    target: &ExtractTarget<'_>,
) -> Result<Extracted, ExtractError> {
    let archive = target.origin;
    let final_path = target.store_dir.join(target.id.to_string());
    let store_err = |path: &Path, source| ExtractError::Store {
        archive: archive.to_owned(),
        path: path.to_path_buf(),
        source,
    };
    let Spooled {
        file,
        sha256: digest,
        size,
    } = archive_file;
    fs::create_dir_all(target.store_dir).map_err(|e| store_err(target.store_dir, e))?;
    let tmp = TempDir::create(target.store_dir, &target.id.to_string())
        .map_err(|e| store_err(target.store_dir, e))?;

    let limit = unpacked_limit(size);
    // A second handle on the spooled archive: kept in the package once it is extracted.
    let mut keep = file
        .try_clone()
        .map_err(|e| store_err(target.store_dir, e))?;
    let (tx, rx) = mpsc::sync_channel(4);
    let (result, pumped) = std::thread::scope(|s| {
        let producer = s.spawn(move || pump(file, compression, limit, tx));
        let mut input = ChannelReader {
            rx,
            buf: Vec::new(),
            pos: 0,
            done: false,
        };
        let mut ex = Extractor {
            root: &tmp.path,
            archive,
            entries: BTreeMap::new(),
            symlinks: HashSet::new(),
            dir_modes: Vec::new(),
            buf: vec![0u8; 256 * 1024],
            decide: target.scope,
            writing: target.scope.is_none(),
            skipped: false,
            unwritten: HashSet::new(),
            special: BTreeSet::new(),
            declared: None,
        };
        let result = (|| -> Result<_, ExtractError> {
            let read_err = |source| ExtractError::Read {
                archive: archive.to_owned(),
                source,
            };
            let mut unused = false;
            {
                let mut ar = tar::Archive::new(&mut input);
                for e in ar.entries().map_err(read_err)? {
                    match ex.entry(e.map_err(read_err)?)? {
                        Flow::Next => {}
                        Flow::Redo => return Ok(None),
                        Flow::Unused => {
                            unused = true;
                            break;
                        }
                    }
                }
            }
            if unused {
                // Kept as the verified archive; its entries are checked when a role needs it.
                ex.finish()?;
                let special = ex
                    .declared
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                let unwritten = std::mem::take(&mut ex.unwritten);
                ex.entries.retain(|p, _| !unwritten.contains(p));
                return Ok(Some((ex.entries, true, special)));
            }
            // Let the decompressor reach the end: a corrupt tail is still an error.
            io::copy(&mut input, &mut io::sink()).map_err(read_err)?;
            ex.finish()?;
            // What pkginfo.json declares must be what the archive has (the declaration lets
            // hosts skip the rest of packages their roles do not use).
            if let Some(declared) = &ex.declared
                && !declared.iter().eq(ex.special.iter())
            {
                return Err(ExtractError::SpecialDirsMismatch {
                    archive: archive.to_owned(),
                    declared: declared.clone(),
                    found: ex.special.iter().cloned().collect(),
                });
            }
            // Not used by these roles: stays an archive. Used, but with entries skipped
            // before that was known (or no special directory at all): all of it again.
            let archived = ex.decide.is_some() && !ex.writing && !ex.special.is_empty();
            if ex.skipped && !archived {
                return Ok(None);
            }
            let unwritten = std::mem::take(&mut ex.unwritten);
            ex.entries.retain(|p, _| !unwritten.contains(p));
            Ok(Some((ex.entries, archived, ex.special)))
        })();
        drop(input); // unblocks the producer if we stopped early
        (
            result,
            producer.join().expect("decompression thread panicked"),
        )
    });
    // A bomb explains whatever the untar saw after the cut: report it first.
    if let Err(Bomb { limit }) = pumped {
        return Err(ExtractError::Bomb {
            archive: archive.to_owned(),
            id: target.id.clone(),
            size,
            limit,
        });
    }
    let Some((entries, archived, special)) = result? else {
        drop(tmp);
        keep.rewind().map_err(|e| store_err(target.store_dir, e))?;
        let again = Spooled {
            file: keep,
            sha256: digest,
            size,
        };
        let all = ExtractTarget {
            scope: None,
            ..target.clone()
        };
        return extract_package(again, compression, &all);
    };
    let info = match entries.get(PKGINFO) {
        Some(FileEntry::File { .. }) => {
            let bytes = fs::read(tmp.path.join(PKGINFO)).map_err(|e| ExtractError::Read {
                archive: archive.to_owned(),
                source: e,
            })?;
            PkgInfo::parse(&bytes, archive)?
        }
        _ => {
            return Err(ExtractError::MissingPkgInfo {
                archive: archive.to_owned(),
            });
        }
    };
    let manifest = FileManifest {
        format: 1,
        archive_sha256: digest,
        archive_size: size,
        entries: entries.into_values().collect(),
    };
    let meta = tmp.path.join(META_DIR);
    let mut write_meta = || -> io::Result<()> {
        fs::DirBuilder::new().mode(0o755).create(&meta)?;
        // The verified archive itself, for peers (`tarmac-host relay`); in the same syncfs
        // and rename as the package, so a package is never without it.
        keep_archive(&mut keep, &meta.join(archive_file_name(compression)))?;
        let mut bytes = serde_json::to_vec(&manifest)?;
        bytes.push(b'\n');
        let mut f = File::create(meta.join(crate::files::FILES_JSON))?;
        f.write_all(&bytes)?;
        if archived {
            let mut bytes = serde_json::to_vec(&special)?;
            bytes.push(b'\n');
            File::create(meta.join(ARCHIVED_JSON))?.write_all(&bytes)?;
        }
        if target.staging.is_none() || target.replace {
            syncfs(&tmp.path)?;
        }
        Ok(())
    };
    write_meta().map_err(|e| store_err(&meta, e))?;
    if let Some(staging) = target.staging.filter(|_| !target.replace) {
        staging.push(tmp, final_path.clone());
    } else if target.replace {
        // The archived package and the extracted one trade places in one step; what was
        // there is then removed under the temporary name (recovery removes it after a crash).
        exchange(&tmp.path, &final_path).map_err(|e| store_err(&final_path, e))?;
        fsync_dir(target.store_dir).map_err(|e| store_err(target.store_dir, e))?;
        drop(tmp);
    } else {
        fs::rename(&tmp.path, &final_path).map_err(|e| store_err(&final_path, e))?;
        tmp.disarm();
        fsync_dir(target.store_dir).map_err(|e| store_err(target.store_dir, e))?;
    }
    Ok(Extracted {
        path: final_path,
        info,
        manifest,
        archived,
    })
}

/// Give the spooled (verified, nameless) archive the name `dest`, mode 0644: linked when the
/// spool is an `O_TMPFILE` (no second copy of the bytes is written), else copied.
fn keep_archive(spool: &mut File, dest: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let cdest = std::ffi::CString::new(dest.as_os_str().as_bytes()).map_err(io::Error::other)?;
    spool.set_permissions(fs::Permissions::from_mode(0o644))?;
    let fd = spool.as_raw_fd();
    // SAFETY: valid descriptor and NUL-terminated paths that outlive the calls.
    let linked = unsafe {
        libc::linkat(
            fd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            cdest.as_ptr(),
            libc::AT_EMPTY_PATH,
        ) == 0
    } || {
        // Without CAP_DAC_READ_SEARCH, through /proc.
        let proc =
            std::ffi::CString::new(format!("/proc/self/fd/{fd}")).map_err(io::Error::other)?;
        unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                proc.as_ptr(),
                libc::AT_FDCWD,
                cdest.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            ) == 0
        }
    };
    if linked {
        return Ok(());
    }
    spool.rewind()?;
    let mut a = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(dest)?;
    io::copy(spool, &mut a)?;
    Ok(())
}

/// `renameat2(a, b, RENAME_EXCHANGE)`: swap two existing paths atomically. Called through
/// `syscall(2)`, since the glibc the portable binaries link against (2.17) has no wrapper
/// (Linux has the call since 3.15). On a file system without RENAME_EXCHANGE the swap takes
/// three renames (`b` aside, `a` to `b`, the old `b` to `a`): a crash between the first two
/// leaves the package absent until it is fetched again, never half-written.
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let ca = std::ffi::CString::new(a.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let cb = std::ffi::CString::new(b.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
        return Err(e);
    }
    let mut aside = a.as_os_str().to_owned();
    aside.push(".old");
    let aside = PathBuf::from(aside);
    fs::rename(b, &aside)?;
    if let Err(e) = fs::rename(a, b) {
        let _ = fs::rename(&aside, b);
        return Err(e);
    }
    fs::rename(&aside, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(p: &str, t: &str) -> (String, FileEntry) {
        (
            p.to_owned(),
            FileEntry::Symlink {
                path: p.to_owned(),
                target: t.to_owned(),
            },
        )
    }
    fn dir(p: &str) -> (String, FileEntry) {
        (
            p.to_owned(),
            FileEntry::Dir {
                path: p.to_owned(),
                mode: 0o755,
            },
        )
    }

    #[test]
    fn pins_parse_and_print() {
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let pin: Pin = format!("{hex}:8351").parse().unwrap();
        assert_eq!(pin.size, 8351);
        assert_eq!(pin.sha256.hex(), hex);
        assert_eq!(pin.to_string(), format!("{hex}:8351"));
        assert_eq!(format!("sha256:{hex}:12").parse::<Pin>().unwrap().size, 12);
        assert_eq!(
            hex.parse::<Pin>().unwrap_err().to_string(),
            format!("invalid pin `{hex}`: no size (expected SHA256:SIZE, e.g. `<64 hex>:123456`)")
        );
        assert_eq!(
            format!("sha256:{hex}")
                .parse::<Pin>()
                .unwrap_err()
                .to_string(),
            format!(
                "invalid pin `sha256:{hex}`: no size (expected SHA256:SIZE, e.g. `<64 hex>:123456`)"
            )
        );
        assert_eq!(
            format!("{hex}:-1").parse::<Pin>().unwrap_err().to_string(),
            format!(
                "invalid pin `{hex}:-1`: `-1` is not a size in bytes (expected SHA256:SIZE, e.g. `<64 hex>:123456`)"
            )
        );
        assert_eq!(
            "abc:1".parse::<Pin>().unwrap_err().to_string(),
            "invalid pin `abc:1`: invalid sha256 `abc`: expected 64 hex characters (expected SHA256:SIZE, e.g. `<64 hex>:123456`)"
        );
    }

    #[test]
    fn the_unpacked_limit() {
        assert_eq!(unpacked_limit(0), 32 << 20);
        assert_eq!(unpacked_limit(8351), 8351 * 200 + (32 << 20));
        assert_eq!(unpacked_limit(u64::MAX), u64::MAX);
    }

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize(b"./a//b/./c").unwrap(), "a/b/c");
        assert_eq!(normalize(b"./").unwrap(), "");
        assert_eq!(normalize(b"/etc/passwd"), Err(UnsafeReason::AbsolutePath));
        assert_eq!(normalize(b"a/../../x"), Err(UnsafeReason::ParentComponent));
        assert_eq!(normalize(b"a\xff"), Err(UnsafeReason::NotUtf8));
    }

    #[test]
    fn symlink_chains() {
        let entries: BTreeMap<_, _> = [
            dir("lib"),
            sym("lib/a", "b/c"),
            sym("lib/b", ".."),
            sym("lib/ok", "../bin/x"),
            sym("up", "lib/b/.."),
            sym("loop1", "loop2"),
            sym("loop2", "loop1"),
        ]
        .into_iter()
        .collect();
        assert!(resolve_inside(&entries, "lib/ok").is_ok());
        assert!(resolve_inside(&entries, "lib/b").is_ok());
        // lib/a -> lib/b/c -> (lib/b -> ..) -> c : inside
        assert!(resolve_inside(&entries, "lib/a").is_ok());
        // up -> lib/b/.. -> ./.. : escapes
        assert!(matches!(
            resolve_inside(&entries, "up"),
            Err(UnsafeReason::SymlinkEscapes { .. })
        ));
        assert_eq!(
            resolve_inside(&entries, "loop1"),
            Err(UnsafeReason::SymlinkLoop)
        );
    }
}
