//! Per-host, per-stage log files: `<dir>/<stage>/<host>.log`.
//!
//! Every step writes a header (`== step … $ command`), its output lines prefixed with the
//! stream, and a footer with the result. Files are appended to, so a re-run of a stage keeps
//! the earlier attempt above the new one. Passwords never reach these files: they travel on
//! stdin, never in a command line. Directories are created 0700 and files 0600 (command output
//! can still be sensitive).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use tarmac_types::HostAddr;

/// The root of a run's logs.
#[derive(Debug, Clone)]
pub struct LogDir {
    root: PathBuf,
}

impl LogDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<stage>/<host>.log` (characters other than `[A-Za-z0-9._-]` become `_`).
    pub fn path(&self, stage: &str, host: &HostAddr) -> PathBuf {
        self.root
            .join(file_part(stage))
            .join(format!("{}.log", file_part(&host.to_string())))
    }

    /// A writer for one host in one stage; the file is opened on first use.
    pub fn host_log(&self, stage: &str, host: &HostAddr) -> HostLog {
        HostLog {
            path: self.path(stage, host),
            file: Mutex::new(None),
        }
    }
}

fn file_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One host's log file in one stage.
#[derive(Debug)]
pub struct HostLog {
    path: PathBuf,
    file: Mutex<Option<BufWriter<File>>>,
}

impl HostLog {
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<F: FnOnce(&mut BufWriter<File>) -> io::Result<()>>(&self, f: F) -> io::Result<()> {
        let mut guard = self
            .file
            .lock()
            .map_err(|_| io::Error::other("log writer poisoned"))?;
        if guard.is_none() {
            // Logs hold command output: 0700 directories, 0600 files from the first byte.
            if let Some(dir) = self.path.parent() {
                tarmac_fsx::create_private_dir(dir)?;
            }
            let file = tarmac_fsx::open_private_append(&self.path)?;
            *guard = Some(BufWriter::new(file));
        }
        f(guard.as_mut().expect("opened above"))
    }

    /// Write one line (a newline is added).
    pub fn line(&self, text: &str) -> io::Result<()> {
        self.with(|w| writeln!(w, "{text}"))
    }

    /// Write a header line with a UTC timestamp.
    pub fn header(&self, text: &str) -> io::Result<()> {
        let now = humantime_utc(SystemTime::now());
        self.with(|w| writeln!(w, "== {now} {text}"))
    }

    /// Flush and close the file (it is reopened on the next write).
    pub fn close(&self) -> io::Result<()> {
        let mut guard = self
            .file
            .lock()
            .map_err(|_| io::Error::other("log writer poisoned"))?;
        if let Some(mut w) = guard.take() {
            w.flush()?;
        }
        Ok(())
    }
}

impl Drop for HostLog {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn humantime_utc(t: SystemTime) -> String {
    tarmac_types::time::rfc3339_of(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn paths() {
        let l = LogDir::new("/logs/run-1");
        assert_eq!(
            l.path("deploy", &"10.0.0.1:2222".parse().unwrap()),
            PathBuf::from("/logs/run-1/deploy/10.0.0.1_2222.log")
        );
        assert_eq!(
            l.path("exec", &"[fd00::1]:22".parse().unwrap()),
            PathBuf::from("/logs/run-1/exec/_fd00__1__22.log")
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            humantime_utc(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            humantime_utc(SystemTime::UNIX_EPOCH + Duration::from_millis(1_709_251_199_123)),
            "2024-02-29T23:59:59.123Z"
        );
    }

    #[test]
    fn writes_and_appends_privately() {
        use std::fs;
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let l = LogDir::new(d.path().join("logs/run-1"));
        let h: HostAddr = "10.0.0.1".parse().unwrap();
        let log = l.host_log("exec", &h);
        log.line("one").unwrap();
        log.close().unwrap();
        log.line("two").unwrap();
        drop(log);
        let path = l.path("exec", &h);
        assert_eq!(fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        for dir in ["logs", "logs/run-1", "logs/run-1/exec"] {
            assert_eq!(mode(&d.path().join(dir)), 0o700, "{dir}");
        }
    }
}
