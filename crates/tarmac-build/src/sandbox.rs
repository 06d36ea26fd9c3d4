//! The build sandbox: bubblewrap with the host's system directories read-only, no
//! network, and the Tarmac build contract:
//!
//! | host                         | sandbox                          | mode |
//! |------------------------------|----------------------------------|------|
//! | `/usr`, `/etc`, `/bin`, …    | same path                        | ro   |
//! | dependencies' install root   | `/opt/tarmac`                    | ro   |
//! | the package's output dir     | `$PKG_PATH` = `/opt/tarmac/packages/<id>` | rw |
//! | checked-out sources          | `/pkg/src/<source name>`         | rw   |
//! | the package directory        | `/pkg/build`                     | ro   |
//! | `<package dir>/extra`        | `/pkg/extra`                     | ro   |
//!
//! `/tmp` is a fresh tmpfs; `/home`, `/root`, `/var`, `/srv`, `/mnt` are not visible.
//! The script runs as `bash -euo pipefail /pkg/build/<script>` with a clean environment.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::sources::SourceError;

/// Top-level host directories made visible (read-only) inside the sandbox.
pub const HOST_DIRS: &[&str] = &[
    "usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32",
];

/// `LD_LIBRARY_PATH` of a build: the dependencies' merged `lib/`.
pub const LD_LIBRARY_PATH: &str = "/opt/tarmac/lib";

/// Fixed time for tools that honour it (reproducible builds).
pub const SOURCE_DATE_EPOCH: u64 = tarmac_pkg::pack::MTIME;

/// How a host top-level entry appears in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEntry {
    Dir(String),
    Symlink(String, String),
}

/// The host's top-level entries among [`HOST_DIRS`] that exist.
pub fn host_entries(root: &Path) -> Vec<HostEntry> {
    let mut out = Vec::new();
    for name in HOST_DIRS {
        let p = root.join(name);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                if let Ok(t) = fs::read_link(&p) {
                    out.push(HostEntry::Symlink(
                        (*name).to_owned(),
                        t.to_string_lossy().into_owned(),
                    ));
                }
            }
            Ok(m) if m.is_dir() => out.push(HostEntry::Dir((*name).to_owned())),
            _ => {}
        }
    }
    out
}

/// Everything one sandboxed build needs.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    pub host: Vec<HostEntry>,
    /// Becomes `/opt/tarmac` (read-only).
    pub install_root: PathBuf,
    /// Becomes `$PKG_PATH` (read-write).
    pub result: PathBuf,
    /// `/opt/tarmac/packages/<id>`
    pub pkg_path: String,
    /// Becomes `/pkg/src` (read-write).
    pub src: PathBuf,
    /// Becomes `/pkg/build` (read-only).
    pub pkg_dir: PathBuf,
    /// Becomes `/pkg/extra` (read-only), when the package has `extra/`.
    pub extra: Option<PathBuf>,
    pub script: String,
    /// Environment (sorted by the caller).
    pub env: Vec<(String, String)>,
    /// Add `--unshare-user --uid 0 --gid 0` (when not running as root).
    pub user_namespace: bool,
}

/// The exact `bwrap` argument list for `spec`.
pub fn bwrap_args(spec: &SandboxSpec) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |items: &[&dyn AsRefOs]| {
        for i in items {
            a.push(i.as_os());
        }
    };
    push(&[&"--die-with-parent", &"--new-session"]);
    push(&[
        &"--unshare-net",
        &"--unshare-ipc",
        &"--unshare-pid",
        &"--unshare-uts",
        &"--unshare-cgroup-try",
    ]);
    if spec.user_namespace {
        push(&[&"--unshare-user", &"--uid", &"0", &"--gid", &"0"]);
    }
    push(&[&"--hostname", &"tarmac-build"]);
    for e in &spec.host {
        match e {
            HostEntry::Dir(d) => {
                let p = format!("/{d}");
                push(&[&"--ro-bind", &p, &p]);
            }
            HostEntry::Symlink(name, target) => {
                let p = format!("/{name}");
                push(&[&"--symlink", target, &p]);
            }
        }
    }
    push(&[
        &"--dev",
        &"/dev",
        &"--proc",
        &"/proc",
        &"--tmpfs",
        &"/tmp",
        &"--dir",
        &"/var/tmp",
    ]);
    push(&[&"--ro-bind", &spec.install_root, &"/opt/tarmac"]);
    push(&[&"--bind", &spec.result, &spec.pkg_path]);
    push(&[&"--bind", &spec.src, &"/pkg/src"]);
    push(&[&"--ro-bind", &spec.pkg_dir, &"/pkg/build"]);
    if let Some(extra) = &spec.extra {
        push(&[&"--ro-bind", extra, &"/pkg/extra"]);
    }
    push(&[&"--chdir", &"/pkg/build", &"--clearenv"]);
    for (k, v) in &spec.env {
        push(&[&"--setenv", k, v]);
    }
    let script = format!("/pkg/build/{}", spec.script);
    push(&[&"--", &"/bin/bash", &"-euo", &"pipefail", &script]);
    a
}

trait AsRefOs {
    fn as_os(&self) -> OsString;
}
impl AsRefOs for &str {
    fn as_os(&self) -> OsString {
        (*self).into()
    }
}
impl AsRefOs for String {
    fn as_os(&self) -> OsString {
        self.into()
    }
}
impl AsRefOs for PathBuf {
    fn as_os(&self) -> OsString {
        self.as_os_str().to_owned()
    }
}

/// The build environment for a package.
pub fn build_env(
    name: &str,
    version: &str,
    id: &str,
    pkg_path: &str,
    variant: Option<&str>,
    cores: usize,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("HOME".into(), "/tmp".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("LC_ALL".into(), "C.UTF-8".into()),
        ("LD_LIBRARY_PATH".into(), LD_LIBRARY_PATH.into()),
        ("NUM_CORES".into(), cores.to_string()),
        (
            "PATH".into(),
            "/opt/tarmac/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("PKG_ID".into(), id.into()),
        ("PKG_NAME".into(), name.into()),
        ("PKG_PATH".into(), pkg_path.into()),
        ("PKG_VARIANT".into(), variant.unwrap_or("<default>").into()),
        ("PKG_VERSION".into(), version.into()),
        ("SOURCE_DATE_EPOCH".into(), SOURCE_DATE_EPOCH.to_string()),
        ("TMPDIR".into(), "/tmp".into()),
        ("TZ".into(), "UTC".into()),
    ];
    env.sort();
    env
}

/// Find `bwrap`, installing the `bubblewrap` package with apt-get when it is missing.
pub fn ensure_bwrap() -> Result<PathBuf, SourceError> {
    ensure_tool(
        "bwrap",
        "bubblewrap",
        "install bubblewrap (`apt-get install bubblewrap`); builds run sandboxed",
    )
}

/// Find `patchelf` (it rewrites the ELF files of self-contained packages), installing the
/// `patchelf` package with apt-get when it is missing.
pub fn ensure_patchelf() -> Result<PathBuf, SourceError> {
    ensure_tool(
        "patchelf",
        "patchelf",
        "install patchelf (`apt-get install patchelf`, scripts/prereqs.sh does); it makes packages self-contained, or set \"bundle_libraries\": false in buildinfo.json",
    )
}

/// Find `program` on `PATH`, else install the Debian package `package` with apt-get
/// (quietly) and look again; `hint` goes into the error.
fn ensure_tool(program: &str, package: &str, hint: &str) -> Result<PathBuf, SourceError> {
    let find = || {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match (status, find()) {
        (Ok(s), Some(p)) if s.success() => Ok(p),
        _ => Err(SourceError::MissingTool {
            program: program.into(),
            hint: hint.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bwrap_command_line() {
        let spec = SandboxSpec {
            host: vec![
                HostEntry::Dir("usr".into()),
                HostEntry::Dir("etc".into()),
                HostEntry::Symlink("bin".into(), "usr/bin".into()),
            ],
            install_root: "/w/root".into(),
            result: "/w/result".into(),
            pkg_path: "/opt/tarmac/packages/a--1".into(),
            src: "/w/src".into(),
            pkg_dir: "/tree/packages/a".into(),
            extra: Some("/tree/packages/a/extra".into()),
            script: "build".into(),
            env: vec![("PKG_ID".into(), "a--1".into())],
            user_namespace: false,
        };
        let args: Vec<String> = bwrap_args(&spec)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            args.join(" "),
            "--die-with-parent --new-session --unshare-net --unshare-ipc --unshare-pid --unshare-uts --unshare-cgroup-try \
             --hostname tarmac-build --ro-bind /usr /usr --ro-bind /etc /etc --symlink usr/bin /bin \
             --dev /dev --proc /proc --tmpfs /tmp --dir /var/tmp --ro-bind /w/root /opt/tarmac \
             --bind /w/result /opt/tarmac/packages/a--1 --bind /w/src /pkg/src --ro-bind /tree/packages/a /pkg/build \
             --ro-bind /tree/packages/a/extra /pkg/extra --chdir /pkg/build --clearenv --setenv PKG_ID a--1 \
             -- /bin/bash -euo pipefail /pkg/build/build"
        );
    }

    #[test]
    fn env_has_the_contract_variables() {
        let env = build_env("a", "v1", "a--v1", "/opt/tarmac/packages/a--v1", None, 2);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PKG_NAME"), Some("a"));
        assert_eq!(get("PKG_VERSION"), Some("v1"));
        assert_eq!(get("PKG_ID"), Some("a--v1"));
        assert_eq!(get("PKG_PATH"), Some("/opt/tarmac/packages/a--v1"));
        assert_eq!(get("NUM_CORES"), Some("2"));
        assert_eq!(get("PKG_VARIANT"), Some("<default>"));
        assert!(env.windows(2).all(|w| w[0] <= w[1]));
    }
}
