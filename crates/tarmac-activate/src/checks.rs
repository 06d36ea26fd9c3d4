//! `tarmac-host check`: run the `check/` executables of the active packages, in parallel,
//! each with a timeout, with the generation's environment; one JSON result per check.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use std::collections::BTreeSet;
use tarmac_pkg::Store;
use tarmac_pkg::layout::CHECK_DIR;
use tarmac_types::{PackageId, Role};

use crate::error::ActivateError;

/// A check found in an active package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckSpec {
    pub package: PackageId,
    pub check: String,
    pub path: PathBuf,
    pub executable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Ok,
    Failed,
    TimedOut,
    NotExecutable,
    Error,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub package: PackageId,
    pub check: String,
    pub status: CheckStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    /// Combined stdout and stderr (the last 64 KiB).
    pub output: String,
}

/// Every file in `check/` (and `check_<role>/` for each of `roles`) of each package, sorted
/// by package id then name.
pub fn list_checks(
    store: &Store,
    ids: &[PackageId],
    roles: &BTreeSet<Role>,
) -> Result<Vec<CheckSpec>, ActivateError> {
    list_executables(store, ids, CHECK_DIR, roles)
}

/// Every file in directory `base` (`check`, `backup`, …) and in `<base>_<role>` for each of
/// `roles` (`check_master`) of each package, sorted by package id, then directory (the
/// role-independent one first), then name.
pub fn list_executables(
    store: &Store,
    ids: &[PackageId],
    base: &str,
    roles: &BTreeSet<Role>,
) -> Result<Vec<CheckSpec>, ActivateError> {
    let mut out = Vec::new();
    let mut ids = ids.to_vec();
    ids.sort();
    let dirs: Vec<String> = std::iter::once(base.to_owned())
        .chain(roles.iter().map(|r| format!("{base}{}", r.dir_suffix())))
        .collect();
    for (id, dir) in ids.iter().flat_map(|id| dirs.iter().map(move |d| (id, d))) {
        let dir = store.path(id).join(dir);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let meta = std::fs::metadata(&path).map_err(|e| ActivateError::io("stat", &path, e))?;
            if meta.is_dir() {
                continue;
            }
            let executable = meta.permissions().mode() & 0o111 != 0;
            out.push(CheckSpec {
                package: (*id).clone(),
                check: name,
                path,
                executable,
            });
        }
    }
    Ok(out)
}

/// Parse an `environment` file (KEY=VALUE lines, as rendered by tarmac-host).
pub fn read_environment(path: &Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
                None => v.to_owned(),
            };
            (k.to_owned(), v)
        })
        .collect()
}

const OUTPUT_LIMIT: usize = 64 * 1024;

fn run_one(spec: &CheckSpec, timeout: Duration, env: &[(String, String)]) -> CheckResult {
    run_with_args(spec, &[], timeout, env)
}

/// Run one executable with `args`, the environment `env`, stdin closed, killed (its whole
/// process group) after `timeout`.
pub fn run_with_args(
    spec: &CheckSpec,
    args: &[&std::ffi::OsStr],
    timeout: Duration,
    env: &[(String, String)],
) -> CheckResult {
    let start = Instant::now();
    let result = |status, exit_code, output: String| CheckResult {
        package: spec.package.clone(),
        check: spec.check.clone(),
        status,
        exit_code,
        duration_ms: tarmac_events::millis(start.elapsed()),
        output,
    };
    if !spec.executable {
        return result(
            CheckStatus::NotExecutable,
            None,
            format!("{} is not executable", spec.path.display()),
        );
    }
    let (mut reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return result(CheckStatus::Error, None, e.to_string()),
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return result(CheckStatus::Error, None, e.to_string()),
    };
    let mut cmd = Command::new(&spec.path);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return result(
                CheckStatus::Error,
                None,
                format!("cannot run {}: {e}", spec.path.display()),
            );
        }
    };
    drop(cmd); // close our copies of the pipe's write end
    let collector = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        while let Ok(n) = reader.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > 2 * OUTPUT_LIMIT {
                buf.drain(..buf.len() - OUTPUT_LIMIT);
            }
        }
        if buf.len() > OUTPUT_LIMIT {
            buf.drain(..buf.len() - OUTPUT_LIMIT);
        }
        String::from_utf8_lossy(&buf).into_owned()
    });
    let deadline = start + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                // SAFETY: signalling the child's process group; no memory is involved.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    let output = collector.join().unwrap_or_default();
    match status {
        None => result(CheckStatus::TimedOut, None, output),
        Some(s) if s.success() => result(CheckStatus::Ok, Some(0), output),
        Some(s) => result(CheckStatus::Failed, s.code(), output),
    }
}

/// Run every check concurrently; results come back in the order of `specs`.
pub fn run_checks(
    specs: &[CheckSpec],
    timeout: Duration,
    env: &[(String, String)],
) -> Vec<CheckResult> {
    std::thread::scope(|s| {
        let handles: Vec<_> = specs
            .iter()
            .map(|spec| s.spawn(move || run_one(spec, timeout, env)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("check thread panicked"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, name: &str, body: &str, mode: u32) -> CheckSpec {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        CheckSpec {
            package: PackageId::parse("p--1").unwrap(),
            check: name.into(),
            path,
            executable: mode & 0o111 != 0,
        }
    }

    #[test]
    fn statuses() {
        let tmp = tempfile::tempdir().unwrap();
        let specs = vec![
            spec(tmp.path(), "ok", "#!/bin/sh\necho fine $GREETING\n", 0o755),
            spec(
                tmp.path(),
                "fail",
                "#!/bin/sh\necho bad >&2\nexit 3\n",
                0o755,
            ),
            spec(
                tmp.path(),
                "slow",
                "#!/bin/sh\nsleep 30 &\nsleep 30\n",
                0o755,
            ),
            spec(tmp.path(), "noexec", "#!/bin/sh\n", 0o644),
        ];
        let env = vec![("GREETING".to_owned(), "hello".to_owned())];
        let r = run_checks(&specs, Duration::from_millis(500), &env);
        assert_eq!(r[0].status, CheckStatus::Ok);
        assert_eq!(r[0].output, "fine hello\n");
        assert_eq!(
            (r[1].status, r[1].exit_code),
            (CheckStatus::Failed, Some(3))
        );
        assert_eq!(r[1].output, "bad\n");
        assert_eq!(r[2].status, CheckStatus::TimedOut);
        assert_eq!(r[3].status, CheckStatus::NotExecutable);
    }

    #[test]
    fn environment_parsing() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("environment");
        std::fs::write(&p, "# header\nPATH=/opt/tarmac/bin:/usr/bin\n\n# package: x--1\nQ=\"say \\\"hi\\\"\"\nE=\n").unwrap();
        assert_eq!(
            read_environment(&p),
            vec![
                ("PATH".to_owned(), "/opt/tarmac/bin:/usr/bin".to_owned()),
                ("Q".to_owned(), "say \"hi\"".to_owned()),
                ("E".to_owned(), String::new()),
            ]
        );
    }
}
