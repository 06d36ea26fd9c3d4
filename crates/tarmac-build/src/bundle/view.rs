//! The build sandbox's file system seen from outside it: which real path backs a sandbox
//! path, with symbolic links followed the way they resolve inside the sandbox (an absolute
//! link target is a sandbox path, not a path of the build machine).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::sandbox::HostEntry;

/// Symbolic links followed for one path before giving up (the kernel's limit).
const MAX_LINKS: usize = 40;

/// Sandbox path prefixes and the real directories behind them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// `(sandbox, real)`, longest sandbox path first.
    mounts: Vec<(PathBuf, PathBuf)>,
}

/// A path found in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The sandbox path with every symbolic link resolved.
    pub sandbox: PathBuf,
    /// The real path behind it.
    pub real: PathBuf,
}

impl View {
    /// A view of `mounts` (`(sandbox path, real path)`; sandbox paths absolute).
    pub fn new(mounts: impl IntoIterator<Item = (PathBuf, PathBuf)>) -> View {
        let mut mounts: Vec<(PathBuf, PathBuf)> = mounts.into_iter().collect();
        mounts.sort_by(|a, b| {
            b.0.components()
                .count()
                .cmp(&a.0.components().count())
                .then_with(|| a.0.cmp(&b.0))
        });
        View { mounts }
    }

    /// What a build sees (see [`crate::sandbox`]): the host's system directories at their
    /// own paths, the dependencies' install root at `/opt/tarmac`, and the package's output
    /// directory at `pkg_path`.
    pub fn for_build(
        host: &[HostEntry],
        install_root: &Path,
        pkg_path: &Path,
        result: &Path,
    ) -> View {
        let mut mounts: Vec<(PathBuf, PathBuf)> = host
            .iter()
            .map(|e| {
                let name = match e {
                    HostEntry::Dir(d) => d,
                    HostEntry::Symlink(n, _) => n,
                };
                let p = Path::new("/").join(name);
                (p.clone(), p)
            })
            .collect();
        mounts.push(("/opt/tarmac".into(), install_root.to_owned()));
        mounts.push((pkg_path.to_owned(), result.to_owned()));
        View::new(mounts)
    }

    /// The real path behind `sandbox` (no links followed), if a mount covers it.
    pub fn real(&self, sandbox: &Path) -> Option<PathBuf> {
        self.mounts.iter().find_map(|(s, r)| {
            let rest = sandbox.strip_prefix(s).ok()?;
            Some(if rest.as_os_str().is_empty() {
                r.clone()
            } else {
                r.join(rest)
            })
        })
    }

    /// True when `p` is a directory the sandbox creates to hold a mount (`/opt`).
    fn holds_mount(&self, p: &Path) -> bool {
        self.mounts.iter().any(|(s, _)| s != p && s.starts_with(p))
    }

    /// Resolve the absolute sandbox path `path`, following symbolic links; `None` when it
    /// does not exist in the sandbox (or loops).
    pub fn resolve(&self, path: &Path) -> Option<Found> {
        if !path.is_absolute() {
            return None;
        }
        let mut pending: VecDeque<OsString> = components(path);
        let mut cur = PathBuf::from("/");
        let mut links = 0;
        while let Some(c) = pending.pop_front() {
            if c == ".." {
                cur.pop();
                continue;
            }
            let next = cur.join(&c);
            let Some(real) = self.real(&next) else {
                if self.holds_mount(&next) {
                    cur = next;
                    continue;
                }
                return None;
            };
            let meta = fs::symlink_metadata(&real).ok()?;
            if meta.file_type().is_symlink() {
                links += 1;
                if links > MAX_LINKS {
                    return None;
                }
                let target = fs::read_link(&real).ok()?;
                if target.is_absolute() {
                    cur = PathBuf::from("/");
                }
                for t in components(&target).into_iter().rev() {
                    pending.push_front(t);
                }
            } else {
                if !pending.is_empty() && !meta.is_dir() {
                    return None;
                }
                cur = next;
            }
        }
        let real = self.real(&cur)?;
        Some(Found { sandbox: cur, real })
    }
}

/// The normal and `..` components of `p` (`.` and the root dropped).
fn components(p: &Path) -> VecDeque<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A fake build machine: `/usr/lib/x/libc.so.6`, `/lib -> usr/lib`, an install root
    /// whose `lib/libdep.so` links to a dependency's package by its sandbox path, and the
    /// package's own output.
    fn machine(d: &Path) -> View {
        let host = d.join("host");
        fs::create_dir_all(host.join("usr/lib/x")).unwrap();
        fs::write(host.join("usr/lib/x/libc.so.6"), "libc").unwrap();
        symlink("libc.so.6", host.join("usr/lib/x/libc.so")).unwrap();
        symlink("usr/lib", host.join("lib")).unwrap();
        symlink("/usr/lib/../lib/x/loop", host.join("usr/lib/x/loop")).unwrap();
        let root = d.join("root");
        fs::create_dir_all(root.join("packages/dep--1/lib")).unwrap();
        fs::create_dir_all(root.join("packages/own--2")).unwrap();
        fs::create_dir_all(root.join("lib")).unwrap();
        fs::write(root.join("packages/dep--1/lib/libdep.so"), "dep").unwrap();
        symlink(
            "/opt/tarmac/packages/dep--1/lib/libdep.so",
            root.join("lib/libdep.so"),
        )
        .unwrap();
        let result = d.join("result");
        fs::create_dir_all(result.join("bin")).unwrap();
        fs::write(result.join("bin/app"), "app").unwrap();
        symlink("../../dep--1/lib/libdep.so", result.join("bin/up")).unwrap();
        View::new([
            ("/usr".into(), host.join("usr")),
            ("/lib".into(), host.join("lib")),
            ("/opt/tarmac".into(), root),
            ("/opt/tarmac/packages/own--2".into(), result),
        ])
    }

    fn resolve(v: &View, p: &str) -> Option<(String, PathBuf)> {
        v.resolve(Path::new(p))
            .map(|f| (f.sandbox.display().to_string(), f.real))
    }

    #[test]
    fn links_resolve_inside_the_sandbox() {
        let d = tempfile::tempdir().unwrap();
        let v = machine(d.path());
        let host = d.path().join("host");
        // a relative top-level link, then a relative link in the directory
        assert_eq!(
            resolve(&v, "/lib/x/libc.so"),
            Some((
                "/usr/lib/x/libc.so.6".into(),
                host.join("usr/lib/x/libc.so.6")
            ))
        );
        // an absolute link target is a sandbox path
        assert_eq!(
            resolve(&v, "/opt/tarmac/lib/libdep.so"),
            Some((
                "/opt/tarmac/packages/dep--1/lib/libdep.so".into(),
                d.path().join("root/packages/dep--1/lib/libdep.so")
            ))
        );
        // the nested mount wins, and `..` leaves it
        assert_eq!(
            resolve(&v, "/opt/tarmac/packages/own--2/bin/app"),
            Some((
                "/opt/tarmac/packages/own--2/bin/app".into(),
                d.path().join("result/bin/app")
            ))
        );
        assert_eq!(
            resolve(&v, "/opt/tarmac/packages/own--2/bin/up").map(|f| f.0),
            Some("/opt/tarmac/packages/dep--1/lib/libdep.so".into())
        );
        // `/opt` only holds a mount
        assert_eq!(
            resolve(&v, "/opt/../usr/lib/x/libc.so.6").map(|f| f.0),
            Some("/usr/lib/x/libc.so.6".into())
        );
    }

    #[test]
    fn missing_invisible_looping_and_relative_paths_are_none() {
        let d = tempfile::tempdir().unwrap();
        let v = machine(d.path());
        for p in [
            "/usr/lib/x/libm.so.6",
            "/home/user/lib.so",
            "/opt/other",
            "/usr/lib/x/loop",
            "/usr/lib/x/libc.so.6/inside",
            "usr/lib/x/libc.so.6",
        ] {
            assert_eq!(resolve(&v, p), None, "{p}");
        }
    }

    #[test]
    fn a_build_view_maps_the_contract_paths() {
        let v = View::for_build(
            &[
                HostEntry::Dir("usr".into()),
                HostEntry::Symlink("lib".into(), "usr/lib".into()),
            ],
            Path::new("/w/root"),
            Path::new("/opt/tarmac/packages/a--1"),
            Path::new("/w/result"),
        );
        let real = |p: &str| v.real(Path::new(p));
        assert_eq!(real("/usr/bin/cc"), Some("/usr/bin/cc".into()));
        assert_eq!(real("/lib"), Some("/lib".into()));
        assert_eq!(real("/opt/tarmac/lib/x"), Some("/w/root/lib/x".into()));
        assert_eq!(
            real("/opt/tarmac/packages/a--1/bin/x"),
            Some("/w/result/bin/x".into())
        );
        assert_eq!(
            real("/opt/tarmac/packages/a--10/bin/x"),
            Some("/w/root/packages/a--10/bin/x".into())
        );
        assert_eq!(real("/etc/passwd"), None);
    }
}
