//! The facts `tarmac-host check-host` reads off this host, to check them against the build's
//! [`HostRequirements`](tarmac_pkg::hostreq::HostRequirements).

use std::ffi::CStr;
use std::path::Path;
use std::process::Command;

use tarmac_pkg::hostreq::{HostFacts, HostRequirements};

/// Gather architecture, kernel, systemd and glibc versions, and which of `req.commands` are
/// missing from `PATH`.
pub fn gather(req: &HostRequirements) -> HostFacts {
    let (architecture, kernel) = uname();
    HostFacts {
        architecture,
        kernel,
        systemd: systemd_version(),
        glibc: glibc_version(),
        missing_commands: req
            .commands
            .iter()
            .filter(|c| !on_path(c))
            .cloned()
            .collect(),
    }
}

fn field(chars: &[libc::c_char]) -> String {
    // SAFETY: uname(2) NUL-terminates every field within its array.
    unsafe { CStr::from_ptr(chars.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn uname() -> (String, String) {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return ("unknown".into(), "unknown".into());
    }
    (field(&u.machine), field(&u.release))
}

/// The C library's version: this binary runs on glibc, so ask it directly.
fn glibc_version() -> Option<String> {
    // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
    let p = unsafe { gnu_get_libc_version() };
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null, static, NUL-terminated.
    Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

unsafe extern "C" {
    fn gnu_get_libc_version() -> *const libc::c_char;
}

/// `systemd 252 (252.22-1~deb12u1)` → 252. `None` without systemctl.
fn systemd_version() -> Option<u32> {
    let out = Command::new("systemctl").arg("--version").output().ok()?;
    parse_systemd_version(&String::from_utf8_lossy(&out.stdout))
}

/// The number after `systemd` on the first line of `systemctl --version`.
pub fn parse_systemd_version(out: &str) -> Option<u32> {
    let first = out.lines().next()?;
    let mut words = first.split_whitespace();
    if words.next()? != "systemd" {
        return None;
    }
    let v = words.next()?;
    let digits: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

fn on_path(cmd: &str) -> bool {
    if cmd.contains('/') {
        return is_executable(Path::new(cmd));
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).any(|d| is_executable(&d.join(cmd)))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_versions() {
        assert_eq!(
            parse_systemd_version("systemd 252 (252.22-1~deb12u1)\n+PAM +AUDIT\n"),
            Some(252)
        );
        assert_eq!(parse_systemd_version("systemd 219\n"), Some(219));
        assert_eq!(parse_systemd_version("bash: systemctl: not found"), None);
        assert_eq!(parse_systemd_version(""), None);
    }

    #[test]
    fn this_host_has_facts() {
        let req = HostRequirements {
            commands: vec!["sh".into(), "no-such-command-tarmac".into()],
            ..Default::default()
        };
        let f = gather(&req);
        assert_eq!(f.architecture, std::env::consts::ARCH);
        assert!(
            f.glibc.as_deref().is_some_and(|v| v.starts_with("2.")),
            "{f:?}"
        );
        assert_eq!(
            f.missing_commands,
            vec!["no-such-command-tarmac".to_owned()]
        );
    }
}
