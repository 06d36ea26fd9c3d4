//! tarmac-fsx: the filesystem steps every Tarmac crate shares, written once.
//!
//! - [`write_atomic`] / [`AtomicFile`]: THE atomic write. The temporary file is created next
//!   to its destination with `O_CREAT|O_EXCL|O_NOFOLLOW` and its final mode before the first
//!   byte (a secret file is never readable by anyone else, not even while it is written), then
//!   written, fsynced, renamed over the destination, and the directory is fsynced. Readers see
//!   the old or the new content, never a mix; a crash leaves at most a temporary file that
//!   [`is_temp_name`] recognises.
//! - [`write_new`]: the same, for a file that must not exist yet (published with `link(2)`).
//! - [`write_atomic_in_private_dir`]: [`write_atomic`] after creating missing parents 0700.
//! - [`create_private_dir`]: `mkdir -p` whose new directories are 0700, and the leaf 0700.
//! - [`open_private_append`]: a 0600 append-only log file.
//! - [`lock_exclusive`] / [`unlock`]: `flock(2)` on an open file.
//! - [`fsync_dir`].
//!
//! This crate uses nothing of Tarmac; every crate may use it. Errors are plain `io::Error`s:
//! callers wrap them with the path in their own error types.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The tag in temporary file names: `.<name>.tmp-<pid>-<n>`.
const TMP_TAG: &str = ".tmp-";

/// A file being written atomically. Nothing is visible at the destination until
/// [`AtomicFile::commit`]; dropping it uncommitted removes the temporary file.
#[derive(Debug)]
pub struct AtomicFile {
    file: File,
    tmp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    committed: bool,
}

fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `.<name>.tmp-<pid>-<n>` next to `path`.
fn temp_sibling(path: &Path, n: u64) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or(path.as_os_str()));
    name.push(format!("{TMP_TAG}{}-{n}", std::process::id()));
    dir_of(path).join(name)
}

static SEQ: AtomicU64 = AtomicU64::new(0);

impl AtomicFile {
    /// Create the temporary file for `path` with `mode` (exactly, whatever the umask) before
    /// anything is written to it. The parent directory must exist.
    pub fn create(path: &Path, mode: u32) -> io::Result<AtomicFile> {
        let mode = mode & 0o7777;
        let mut attempts = 0;
        loop {
            let tmp = temp_sibling(path, SEQ.fetch_add(1, Ordering::Relaxed));
            // The umask can only narrow `mode`; the fchmod below (on the still empty file) sets
            // exactly `mode`, never anything wider.
            let res = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp);
            match res {
                Ok(file) => {
                    trace(|| format!("create_new {} {mode:04o}", name_of(&tmp)));
                    let f = AtomicFile {
                        file,
                        dir: dir_of(path).to_path_buf(),
                        path: path.to_path_buf(),
                        tmp,
                        committed: false,
                    };
                    f.file.set_permissions(fs::Permissions::from_mode(mode))?;
                    trace(|| format!("fchmod {mode:04o}"));
                    return Ok(f);
                }
                // A leftover of a dead process with our pid: take the next name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 64 => {
                    attempts += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn file_mut(&mut self) -> &mut File {
        &mut self.file
    }

    /// Where the bytes are being written until the commit.
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// fsync the file, rename it over the destination, fsync the directory.
    pub fn commit(mut self) -> io::Result<()> {
        self.file.sync_all()?;
        trace(|| "fsync file".to_owned());
        fs::rename(&self.tmp, &self.path)?;
        self.committed = true;
        trace(|| format!("rename {} {}", name_of(&self.tmp), name_of(&self.path)));
        fsync_dir(&self.dir)?;
        trace(|| "fsync dir".to_owned());
        Ok(())
    }

    /// Like [`AtomicFile::commit`], but the destination must not exist: the file is published
    /// with `link(2)` (an error of kind `AlreadyExists` when something is there, which is left
    /// untouched), then the temporary name is removed and the directory fsynced.
    pub fn commit_new(self) -> io::Result<()> {
        self.file.sync_all()?;
        trace(|| "fsync file".to_owned());
        fs::hard_link(&self.tmp, &self.path)?;
        trace(|| format!("link {} {}", name_of(&self.tmp), name_of(&self.path)));
        // Drop removes the temporary name; the destination keeps the inode.
        let dir = self.dir.clone();
        drop(self);
        fsync_dir(&dir)?;
        trace(|| "fsync dir".to_owned());
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        trace(|| format!("write {n}"));
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Write `bytes` to `path` atomically with `mode` from the first byte (see [`AtomicFile`]).
/// The parent directory must exist. On any error the destination is untouched and no
/// temporary file is left.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut f = AtomicFile::create(path, mode)?;
    f.write_all(bytes)?;
    f.commit()
}

/// Create `path`, which must not exist, with `bytes` and `mode` from the first byte: written
/// and fsynced under a temporary name, then published whole with one link
/// ([`AtomicFile::commit_new`]). An existing `path` is an `AlreadyExists` error and is left as
/// it is; no temporary file is left either way.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut f = AtomicFile::create(path, mode)?;
    f.write_all(bytes)?;
    f.commit_new()
}

/// Write `bytes` to `path` atomically (see [`write_atomic`]), first creating its missing parent
/// directories 0700 ([`create_private_dir`]); an existing parent keeps its mode. What the
/// controller writes (journals, keys, config) is private by default.
pub fn write_atomic_in_private_dir(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = dir_of(path);
    if !dir.is_dir() {
        create_private_dir(dir)?;
    }
    write_atomic(path, bytes, mode)
}

/// Is `name` a temporary file left by [`AtomicFile`] (`.<name>.tmp-<pid>-<n>`, or the older
/// `.<name>.tmp-<pid>`)? Recovery code removes these.
pub fn is_temp_name(name: &str) -> bool {
    if !name.starts_with('.') {
        return false;
    }
    let Some((_, tail)) = name.rsplit_once(TMP_TAG) else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match tail.split_once('-') {
        Some((pid, n)) => digits(pid) && digits(n),
        None => digits(tail),
    }
}

/// fsync a directory, so that entries created, renamed or removed in it are durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Create `dir` and any missing parents with mode 0700, and make `dir` itself 0700 if it
/// already existed (it is a directory Tarmac owns and keeps private). Existing parents are
/// left as they are. A symlink at `dir` is followed for creation but never chmodded.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = fs::symlink_metadata(dir)?;
    if meta.is_dir() && meta.permissions().mode() & 0o7777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Open `path` for appending, creating it 0600 (with `O_NOFOLLOW`). An existing file with
/// wider permissions (written by an older version) is narrowed to 0600 before use.
pub fn open_private_append(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    if f.metadata()?.permissions().mode() & 0o7777 != 0o600 {
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

/// Take an exclusive `flock(2)` on `file`. With `wait`, block until it is free; otherwise
/// return `Ok(false)` at once when another open file description holds it. The kernel
/// releases the lock when the file is closed or the process dies.
pub fn lock_exclusive(file: &File, wait: bool) -> io::Result<bool> {
    loop {
        let res = if wait {
            file.lock()
        } else {
            match file.try_lock() {
                Ok(()) => Ok(()),
                Err(fs::TryLockError::WouldBlock) => return Ok(false),
                Err(fs::TryLockError::Error(e)) => Err(e),
            }
        };
        match res {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Release a lock taken with [`lock_exclusive`] (closing the file does too).
pub fn unlock(file: &File) -> io::Result<()> {
    file.unlock()
}

fn name_of(p: &Path) -> String {
    String::from_utf8_lossy(p.file_name().map(|n| n.as_bytes()).unwrap_or_default()).into_owned()
}

#[cfg(test)]
thread_local! {
    static TRACE: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Record a step of the write sequence (tests read it back; a no-op otherwise).
#[inline]
fn trace(_step: impl FnOnce() -> String) {
    #[cfg(test)]
    TRACE.with(|t| t.borrow_mut().push(_step()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn the_write_sequence_is_exact() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("key");
        TRACE.with(|t| t.borrow_mut().clear());
        write_atomic(&p, b"secret", 0o600).unwrap();
        let steps = TRACE.with(|t| t.borrow().clone());
        let pid = std::process::id();
        let tmp = steps[0]
            .strip_prefix("create_new ")
            .and_then(|s| s.strip_suffix(" 0600"))
            .unwrap_or_else(|| panic!("{steps:?}"))
            .to_owned();
        assert!(tmp.starts_with(&format!(".key.tmp-{pid}-")), "{tmp}");
        assert!(is_temp_name(&tmp), "{tmp}");
        assert_eq!(
            steps,
            vec![
                format!("create_new {tmp} 0600"),
                "fchmod 0600".to_owned(),
                "write 6".to_owned(),
                "fsync file".to_owned(),
                format!("rename {tmp} key"),
                "fsync dir".to_owned(),
            ]
        );
        assert_eq!(fs::read(&p).unwrap(), b"secret");
        assert_eq!(mode(&p), 0o600);
    }

    #[test]
    fn replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        write_atomic(&p, b"one", 0o644).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(mode(&p), 0o600);
        write_atomic(&p, b"three", 0o755).unwrap();
        assert_eq!(mode(&p), 0o755);
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["a.json"]);
    }

    #[test]
    fn write_new_publishes_once_and_never_clobbers() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ca.key");
        TRACE.with(|t| t.borrow_mut().clear());
        write_new(&p, b"first", 0o600).unwrap();
        let steps = TRACE.with(|t| t.borrow().clone());
        assert_eq!(steps[1], "fchmod 0600", "{steps:?}");
        assert!(steps[4].starts_with("link "), "{steps:?}");
        assert_eq!(steps.last().map(String::as_str), Some("fsync dir"));
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert_eq!(mode(&p), 0o600);
        let err = write_new(&p, b"second", 0o600).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temp files left"
        );
    }

    #[test]
    fn write_in_private_dir_creates_private_parents_only() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b.json");
        write_atomic_in_private_dir(&p, b"one", 0o600).unwrap();
        write_atomic_in_private_dir(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(&d.path().join("a")), 0o700);
        assert_eq!(
            fs::read_dir(d.path().join("a")).unwrap().count(),
            1,
            "no temp files left"
        );
        // An existing parent keeps its mode.
        fs::set_permissions(d.path().join("a"), fs::Permissions::from_mode(0o755)).unwrap();
        write_atomic_in_private_dir(&p, b"three", 0o644).unwrap();
        assert_eq!(mode(&d.path().join("a")), 0o755);
        assert_eq!(mode(&p), 0o644);
    }

    #[test]
    fn dropped_uncommitted_leaves_the_old_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"old", 0o644).unwrap();
        {
            let mut f = AtomicFile::create(&p, 0o644).unwrap();
            f.write_all(b"half").unwrap();
            assert!(f.temp_path().exists());
        }
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_parent_is_an_error_naming_nothing_written() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("no/such/dir/f");
        let err = write_atomic(&p, b"x", 0o600).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn does_not_write_through_a_planted_symlink() {
        // An attacker who guesses the next temp name and plants a symlink there gains
        // nothing: O_EXCL|O_NOFOLLOW refuses it and the next name is taken.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("key");
        let victim = d.path().join("victim");
        fs::write(&victim, b"untouched").unwrap();
        let next = SEQ.load(Ordering::Relaxed);
        for n in next..next + 4 {
            std::os::unix::fs::symlink(&victim, temp_sibling(&p, n)).unwrap();
        }
        write_atomic(&p, b"secret", 0o600).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(fs::read(&p).unwrap(), b"secret");
    }

    #[test]
    fn temp_names() {
        assert!(is_temp_name(".run.json.tmp-123-0"));
        assert!(is_temp_name(".run.json.tmp-123"));
        assert!(is_temp_name(".a.tmp-1-99"));
        assert!(!is_temp_name("run.json.tmp-123-0"));
        assert!(!is_temp_name(".run.json.tmp-"));
        assert!(!is_temp_name(".run.json.tmp-12a"));
        assert!(!is_temp_name(".run.json.tmp-1-"));
        assert!(!is_temp_name(".run.json.tmp-1-2-3"));
        assert!(!is_temp_name(".run.json"));
    }

    #[test]
    fn private_dirs() {
        let d = tempfile::tempdir().unwrap();
        let leaf = d.path().join("state/logs/run-1");
        create_private_dir(&leaf).unwrap();
        assert_eq!(mode(&d.path().join("state")), 0o700);
        assert_eq!(mode(&d.path().join("state/logs")), 0o700);
        assert_eq!(mode(&leaf), 0o700);
        // An existing leaf made by an older version is narrowed; its parents are not touched.
        let old = d.path().join("old");
        fs::create_dir(&old).unwrap();
        fs::set_permissions(&old, fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(old.join("runs")).unwrap();
        fs::set_permissions(old.join("runs"), fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&old.join("runs")).unwrap();
        assert_eq!(mode(&old.join("runs")), 0o700);
        assert_eq!(mode(&old), 0o755);
        // A file in the way is an error.
        fs::write(d.path().join("file"), b"").unwrap();
        assert!(create_private_dir(&d.path().join("file")).is_err());
    }

    #[test]
    fn private_append() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("host.log");
        {
            let mut f = open_private_append(&p).unwrap();
            f.write_all(b"one\n").unwrap();
        }
        assert_eq!(mode(&p), 0o600);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        {
            let mut f = open_private_append(&p).unwrap();
            f.write_all(b"two\n").unwrap();
        }
        assert_eq!(mode(&p), 0o600);
        assert_eq!(fs::read(&p).unwrap(), b"one\ntwo\n");
        let link = d.path().join("link.log");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(
            open_private_append(&link).is_err(),
            "never through a symlink"
        );
    }

    #[test]
    fn flock_excludes_other_descriptions() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let open = || {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&p)
                .unwrap()
        };
        let a = open();
        let b = open();
        assert!(lock_exclusive(&a, false).unwrap());
        assert!(!lock_exclusive(&b, false).unwrap());
        unlock(&a).unwrap();
        assert!(lock_exclusive(&b, false).unwrap());
        let t = std::thread::spawn(move || lock_exclusive(&a, true).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(30));
        drop(b);
        assert!(t.join().unwrap());
    }
}
