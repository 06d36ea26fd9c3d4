//! One mutating tarmac-host at a time: an exclusive `flock(2)` on `<root>/.lock`. The holder
//! writes its pid, start time and command into the file so a second caller can say who
//! holds it and for how long. The kernel drops the lock when the holder dies (even by
//! SIGKILL), so there are no stale locks.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use tarmac_types::time::now_unix;

use crate::error::ActivateError;

/// Proof that the host lock is held; released on drop.
#[derive(Debug)]
pub struct HostLock {
    file: File,
    path: PathBuf,
}

impl HostLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for HostLock {
    fn drop(&mut self) {
        let _ = tarmac_fsx::unlock(&self.file);
    }
}

/// Describe the holder from the lock file's contents: `pid 123, activate, for 12s`.
fn describe_holder(contents: &str) -> String {
    let mut pid = "?";
    let mut started = None;
    let mut command = "?";
    for part in contents.split_whitespace() {
        if let Some(v) = part.strip_prefix("pid=") {
            pid = v;
        } else if let Some(v) = part.strip_prefix("started=") {
            started = v.parse::<u64>().ok();
        } else if let Some(v) = part.strip_prefix("command=") {
            command = v;
        }
    }
    match started {
        Some(s) => format!(
            "pid {pid}, `{command}`, running for {}s",
            now_unix().saturating_sub(s)
        ),
        None => format!("pid {pid}"),
    }
}

/// Take the lock. With `wait`, block until it is free; otherwise fail naming the holder.
pub fn acquire(path: &Path, command: &str, wait: bool) -> Result<HostLock, ActivateError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| ActivateError::io("create the install root", dir, e))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| ActivateError::io("open the lock file", path, e))?;
    match tarmac_fsx::lock_exclusive(&file, wait) {
        Ok(true) => {}
        Ok(false) => {
            let mut s = String::new();
            let _ = file.read_to_string(&mut s);
            return Err(ActivateError::Locked {
                path: path.to_path_buf(),
                holder: describe_holder(&s),
            });
        }
        Err(err) => return Err(ActivateError::io("lock", path, err)),
    }
    let info = format!(
        "pid={} started={} command={}\n",
        std::process::id(),
        now_unix(),
        command.replace(' ', "_")
    );
    let write = file
        .set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(info.as_bytes()));
    write.map_err(|e| ActivateError::io("write the lock file", path, e))?;
    Ok(HostLock {
        file,
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_caller_is_told_who_holds_it() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("root/.lock");
        let held = acquire(&p, "activate", false).unwrap();
        let err = acquire(&p, "gc", false).unwrap_err();
        let hint = tarmac_types::error_report::Hint::hint(&err).map(|h| h.into_owned());
        let err = err.to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("`activate`, running for 0s"), "{err}");
        assert_eq!(hint.as_deref(), Some("pass --wait to wait for it"), "{err}");
        assert!(!err.contains("hint:"), "{err}");
        drop(held);
        let again = acquire(&p, "gc", false).unwrap();
        drop(again);
    }

    #[test]
    fn waiter_gets_it_when_released() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join(".lock");
        let held = acquire(&p, "activate", false).unwrap();
        let p2 = p.clone();
        let t = std::thread::spawn(move || acquire(&p2, "gc", true).map(|_| ()));
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(held);
        t.join().unwrap().unwrap();
    }
}
