//! Thin wrappers over the system: running tools, namespaces, cgroups, processes, locks and
//! atomic file writes.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::LabError;

/// Fail with [`LabError::NotRoot`] unless we run as root.
pub fn require_root() -> Result<(), LabError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LabError::NotRoot);
    }
    Ok(())
}

/// A command line for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run a command to completion with optional stdin; error unless it exits 0.
pub fn run(cmd: &mut Command, stdin: Option<&str>) -> Result<Output, LabError> {
    let out = run_unchecked(cmd, stdin)?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: describe(cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(out)
}

/// Run a command to completion with optional stdin; any exit status is returned.
pub fn run_unchecked(cmd: &mut Command, stdin: Option<&str>) -> Result<Output, LabError> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd.spawn().map_err(|source| LabError::Spawn {
        program: program.clone(),
        source,
    })?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let input = input.to_owned();
        // A separate writer avoids a deadlock when the tool writes a lot before reading all input.
        let writer = std::thread::spawn(move || pipe.write_all(input.as_bytes()));
        let out = child
            .wait_with_output()
            .map_err(|source| LabError::Spawn { program, source })?;
        let _ = writer.join();
        return Ok(out);
    }
    child
        .wait_with_output()
        .map_err(|source| LabError::Spawn { program, source })
}

/// Is `program` on PATH (or an existing absolute path)?
pub fn have_program(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|d| {
            let p = d.join(program);
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Where `ip netns` keeps its namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Open a named network namespace.
pub fn open_netns(name: &str) -> Result<File, LabError> {
    let path = Path::new(NETNS_DIR).join(name);
    File::open(&path).map_err(LabError::io("cannot open network namespace", path))
}

/// Move the calling thread into the network namespace open at `ns`.
pub fn setns_net(ns: &File) -> io::Result<()> {
    // SAFETY: setns on a valid fd; affects only the calling thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// (device, inode) of a namespace file, to compare with `/proc/<pid>/ns/net`.
pub fn ns_id(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Names of the network namespaces that exist.
pub fn netns_exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

/// The cgroup hierarchies in which the lab tracks its processes: on hybrid systems the
/// `name=systemd` v1 hierarchy and the unified (v2) one; on pure v2 the single one.
pub fn cgroup_roots() -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    if base.join("cgroup.controllers").exists() {
        return vec![base.to_path_buf()];
    }
    let mut roots = Vec::new();
    if base.join("systemd/cgroup.procs").exists() {
        roots.push(base.join("systemd"));
    }
    if base.join("unified/cgroup.procs").exists() {
        roots.push(base.join("unified"));
    }
    roots
}

/// Directory of a lab's cgroup subtree under one hierarchy root.
pub fn lab_cgroup(root: &Path, lab: &str) -> PathBuf {
    root.join("tarmac-lab").join(lab)
}

/// Every pid in the cgroup subtree at `dir`.
pub fn cgroup_pids(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(s) = fs::read_to_string(d.join("cgroup.procs")) {
            pids.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(rd) = fs::read_dir(&d) {
            stack.extend(
                rd.flatten()
                    .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                    .map(|e| e.path()),
            );
        }
    }
    pids
}

/// Is any process left in the subtree at `dir` (in any hierarchy we track)?
pub fn cgroup_populated(dir: &Path) -> bool {
    if let Ok(ev) = fs::read_to_string(dir.join("cgroup.events")) {
        return ev.lines().any(|l| l.trim() == "populated 1");
    }
    !cgroup_pids(dir).is_empty()
}

/// Send `sig` to a process; true when it existed.
pub fn kill(pid: i32, sig: i32) -> bool {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// SIGKILL everything in the cgroup subtrees `dirs` until they are empty (or `timeout`).
/// Returns how many processes were there.
pub fn kill_cgroups(dirs: &[PathBuf], timeout: Duration) -> usize {
    let found = dirs
        .iter()
        .flat_map(|d| cgroup_pids(d))
        .collect::<std::collections::HashSet<i32>>()
        .len();
    // cgroup v2 (also the unified hierarchy of hybrid systems): one write kills the whole
    // subtree, including processes forking right now; `cgroup.events` says when it is empty.
    let v2: Vec<&PathBuf> = dirs
        .iter()
        .filter(|d| d.join("cgroup.kill").exists())
        .collect();
    let deadline = Instant::now() + timeout;
    loop {
        for d in &v2 {
            let _ = fs::write(d.join("cgroup.kill"), "1");
        }
        let v2_empty = v2.iter().all(|d| !cgroup_populated(d));
        if v2.is_empty() || v2_empty {
            // Every process is in every hierarchy: an empty v2 subtree means the v1 ones
            // are empty too; without v2, signal each pid.
            let pids: Vec<i32> = dirs.iter().flat_map(|d| cgroup_pids(d)).collect();
            if pids.is_empty() {
                return found;
            }
            for p in pids {
                kill(p, libc::SIGKILL);
            }
        }
        if Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Remove a cgroup subtree (deepest first). Returns directories that could not be removed.
pub fn remove_cgroup_tree(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = fs::read_dir(&d) {
            stack.extend(
                rd.flatten()
                    .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                    .map(|e| e.path()),
            );
        }
        all.push(d);
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    let mut left = Vec::new();
    for d in all {
        if !d.exists() {
            continue;
        }
        let mut ok = false;
        for _ in 0..50 {
            match fs::remove_dir(&d) {
                Ok(()) => {
                    ok = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    ok = true;
                    break;
                }
                // EBUSY while the last killed processes are still exiting.
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        if !ok {
            left.push(d);
        }
    }
    left
}

/// Pids (other than us and our ancestors) whose network namespace is one of `ids`.
pub fn pids_in_netns(ids: &[(u64, u64)]) -> Vec<i32> {
    if ids.is_empty() {
        return Vec::new();
    }
    let spared = self_and_ancestors();
    let mut pids = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return pids;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if spared.contains(&pid) {
            continue;
        }
        if let Some(id) = ns_id(&e.path().join("ns/net"))
            && ids.contains(&id)
        {
            pids.push(pid);
        }
    }
    pids
}

fn self_and_ancestors() -> Vec<i32> {
    let mut out = Vec::new();
    let mut pid = std::process::id() as i32;
    while pid > 1 && out.len() < 64 {
        out.push(pid);
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            break;
        };
        // The command name may contain spaces and parentheses: the ppid follows the last `)`.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            break;
        };
        pid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
    }
    out
}

/// Mount points (in our mount namespace) at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

fn unescape_mount_path(s: &str) -> PathBuf {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

/// Lazily unmount a path.
pub fn umount_lazy(path: &Path) -> io::Result<()> {
    let c = cstr(path.as_os_str())?;
    // SAFETY: valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A NUL-terminated copy of an OS string.
pub fn cstr(s: &OsStr) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(s))
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Write a file atomically with `mode` from its first byte (tarmac-fsx's write: temp file
/// in the same directory, fsync, rename, fsync of the directory).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), LabError> {
    tarmac_fsx::write_atomic(path, contents, mode).map_err(LabError::io("cannot write", path))
}

/// Write a file (not atomically: used for files inside a fresh, not yet used directory).
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), LabError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(LabError::io("cannot create", path))?;
    f.write_all(contents)
        .map_err(LabError::io("cannot write", path))?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(LabError::io("cannot chmod", path))
}

/// An exclusive `flock` on a file, released on drop.
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    /// Delete the lock file, then release the lock.
    pub fn remove(self) {
        let _ = fs::remove_file(&self.path);
        drop(self.file);
    }
}

/// Take an exclusive lock on `path`, waiting up to `wait`. `Ok(None)` on timeout.
/// The holder may delete the file ([`Lock::remove`]): lockers that then find a different
/// (or no) file at the path retry on the new one.
pub fn lock(path: &Path, wait: Duration) -> Result<Option<Lock>, LabError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(LabError::io("cannot create", dir))?;
    }
    let deadline = Instant::now() + wait;
    loop {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(LabError::io("cannot open lock file", path))?;
        if tarmac_fsx::lock_exclusive(&file, false).map_err(LabError::io("cannot lock", path))? {
            let same = match (file.metadata(), fs::metadata(path)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            if same {
                let _ = file.set_len(0);
                let _ = writeln!(file, "{}", std::process::id());
                return Ok(Some(Lock {
                    file,
                    path: path.to_path_buf(),
                }));
            }
            continue; // removed by its previous holder: lock the new file
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(LabError::Io {
                action: "cannot lock",
                path: path.to_path_buf(),
                source: err,
            });
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Read a small file to a string, `None` if it does not exist.
pub fn read_opt(path: &Path) -> Option<String> {
    let mut s = String::new();
    File::open(path).ok()?.read_to_string(&mut s).ok()?;
    Some(s)
}

/// Create `upper/rel` and its missing parents, copying owner and mode of the same
/// directory in `lower` (so the overlay does not change, say, `/home/tarmac`'s owner).
pub fn mkdir_like_lower(upper: &Path, lower: &Path, rel: &str) -> Result<PathBuf, LabError> {
    let mut cur_upper = upper.to_path_buf();
    let mut cur_lower = lower.to_path_buf();
    for comp in Path::new(rel.trim_start_matches('/')).components() {
        cur_upper.push(comp);
        cur_lower.push(comp);
        if cur_upper.is_dir() {
            continue;
        }
        fs::create_dir(&cur_upper).map_err(LabError::io("cannot create", &cur_upper))?;
        let (mode, uid, gid) = match fs::metadata(&cur_lower) {
            Ok(m) if m.is_dir() => (m.mode() & 0o7777, m.uid(), m.gid()),
            _ => (0o755, 0, 0),
        };
        fs::set_permissions(&cur_upper, fs::Permissions::from_mode(mode))
            .map_err(LabError::io("cannot chmod", &cur_upper))?;
        std::os::unix::fs::chown(&cur_upper, Some(uid), Some(gid))
            .map_err(LabError::io("cannot chown", &cur_upper))?;
    }
    Ok(cur_upper)
}

/// Read a sysctl under /proc/sys (dotted name).
pub fn sysctl_get(name: &str) -> Option<u64> {
    read_opt(&sysctl_path(name))?.trim().parse().ok()
}

/// Write a sysctl under /proc/sys (dotted name).
pub fn sysctl_set(name: &str, value: u64) -> Result<(), LabError> {
    let path = sysctl_path(name);
    fs::write(&path, value.to_string()).map_err(LabError::io("cannot set sysctl", path))
}

fn sysctl_path(name: &str) -> PathBuf {
    Path::new("/proc/sys").join(name.replace('.', "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape_mount_path("/a\\040b/c"), PathBuf::from("/a b/c"));
        assert_eq!(unescape_mount_path("/plain"), PathBuf::from("/plain"));
    }

    #[test]
    fn ancestors_include_self() {
        assert_eq!(self_and_ancestors()[0], std::process::id() as i32);
    }
}
