//! One installer run at a time per `genconf/` directory.
//!
//! The lock is an `flock` on `genconf/state/lock`, so a crashed run never leaves a lock
//! behind (the kernel drops it with the process). The file also records who holds it, so a
//! second run can say which process, on which machine, since when.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tarmac_types::time::now_unix;

/// Who holds the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub command: String,
    pub since_unix: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another tarmac run holds `{path}`: pid {pid} on {host} (`{command}`), running for {age}",
        pid = holder.pid, host = holder.host, command = holder.command, age = human_age(holder.since_unix)
    )]
    Held { path: PathBuf, holder: Holder },
    #[error("another tarmac run holds `{path}` (holder unknown)")]
    HeldUnknown { path: PathBuf },
    #[error("cannot open the run lock `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A held run lock; released on drop.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

pub fn human_age(since_unix: u64) -> String {
    let s = now_unix().saturating_sub(since_unix);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

impl RunLock {
    /// Take the lock at `<state_dir>/lock` without waiting.
    pub fn acquire(state_dir: &Path, command: &str) -> Result<RunLock, LockError> {
        let path = state_dir.join("lock");
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        // genconf/state holds journals and host logs: private.
        tarmac_fsx::create_private_dir(state_dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io)?;
        if !tarmac_fsx::lock_exclusive(&file, false).map_err(io)? {
            let mut s = String::new();
            let _ = file.read_to_string(&mut s);
            return Err(match serde_json::from_str::<Holder>(&s) {
                Ok(holder) => LockError::Held { path, holder },
                Err(_) => LockError::HeldUnknown { path },
            });
        }
        let holder = Holder {
            pid: std::process::id(),
            host: hostname(),
            command: command.to_owned(),
            since_unix: now_unix(),
        };
        let body = serde_json::to_vec(&holder).unwrap_or_default();
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&body).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(RunLock { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = tarmac_fsx::unlock(&self.file);
    }
}

impl tarmac_types::error_report::Hint for LockError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            LockError::Held { holder, .. } => Some(
                format!(
                    "wait for it to finish, or stop it (kill {}) if it is stuck",
                    holder.pid
                )
                .into(),
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_run_is_refused_with_holder() {
        let d = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(d.path(), "tarmac deploy").unwrap();
        let err = RunLock::acquire(d.path(), "tarmac preflight").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("`tarmac deploy`"), "{msg}");
        assert!(
            tarmac_types::error_report::text_with_hint(&err).contains("\nhint: wait for it"),
            "{msg}"
        );
        drop(lock);
        RunLock::acquire(d.path(), "tarmac preflight").unwrap();
    }

    #[test]
    fn ages() {
        assert_eq!(human_age(now_unix() - 5), "5s");
        assert_eq!(human_age(now_unix() - 125), "2m5s");
        assert_eq!(human_age(now_unix() - 3700), "1h1m");
    }
}
