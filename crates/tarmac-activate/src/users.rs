//! Package users (`useradd --system`) and state directories.
//!
//! A state directory is created once and chowned when it is created or when its owner is
//! not the package's user (a changed `username`); an unchanged directory is never walked,
//! so activation cost does not grow with the data a service keeps.

use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use crate::error::ActivateError;

/// A user as the system knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub uid: u32,
    pub gid: u32,
}

/// A group as the system knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub gid: u32,
    pub members: Vec<String>,
}

/// Look a user up through NSS (`getpwnam_r`).
pub fn lookup_user(name: &str) -> Option<UserInfo> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: passwd is plain data; the out pointers reference live locals and `buf`
    // outlives every use of the strings it backs.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() {
            return None;
        }
        Some(UserInfo {
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        })
    }
}

/// Look a group up through NSS (`getgrnam_r`).
pub fn lookup_group(name: &str) -> Option<GroupInfo> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: as in lookup_user; gr_mem is a NULL-terminated array of C strings in `buf`.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() {
            return None;
        }
        let mut members = Vec::new();
        let mut p = grp.gr_mem;
        while !p.is_null() && !(*p).is_null() {
            members.push(CStr::from_ptr(*p).to_string_lossy().into_owned());
            p = p.add(1);
        }
        Some(GroupInfo {
            gid: grp.gr_gid,
            members,
        })
    }
}

/// The `useradd` command pkgpanda ran, adapted: a system user with no login shell, home
/// at the install root, in `group` when it differs from the user name, else in its own group.
pub fn useradd_command(username: &str, group: Option<&str>, home: &Path) -> Vec<String> {
    let mut cmd: Vec<String> = [
        "useradd",
        "--system",
        "--home-dir",
        &home.display().to_string(),
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "Tarmac system user",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    match group {
        Some(g) if g != username => {
            cmd.push("--gid".into());
            cmd.push(g.into());
        }
        _ => cmd.push("--user-group".into()),
    }
    cmd.push(username.into());
    cmd
}

/// Make sure `username` exists, creating it when allowed. Returns its ids.
pub fn ensure_user(
    username: &str,
    group: Option<&str>,
    home: &Path,
) -> Result<UserInfo, ActivateError> {
    if let Some(u) = lookup_user(username) {
        return Ok(u);
    }
    let cmd = useradd_command(username, group, home);
    let out = Command::new(&cmd[0])
        .args(&cmd[1..])
        .output()
        .map_err(|e| ActivateError::UserAdd {
            username: username.to_owned(),
            command: cmd.join(" "),
            output: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(ActivateError::UserAdd {
            username: username.to_owned(),
            command: cmd.join(" "),
            output: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    lookup_user(username).ok_or_else(|| ActivateError::UserAdd {
        username: username.to_owned(),
        command: cmd.join(" "),
        output: "useradd succeeded but the user cannot be looked up".into(),
    })
}

/// What [`ensure_state_dir`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateDirAction {
    Unchanged,
    Created,
    Rechowned,
}

/// Create `dir` (0755) if missing; give it to `owner` when created or when its owner differs
/// (then recursively, since the previous owner's files must follow).
pub fn ensure_state_dir(
    dir: &Path,
    owner: Option<&UserInfo>,
) -> Result<StateDirAction, ActivateError> {
    let io_err = |what: &str, e: io::Error| ActivateError::io(what.to_owned(), dir, e);
    let created = match fs::DirBuilder::new()
        .recursive(false)
        .mode(0o755)
        .create(dir)
    {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(p) = dir.parent() {
                fs::create_dir_all(p)
                    .map_err(|e| io_err("create the parent of the state directory", e))?;
            }
            fs::DirBuilder::new()
                .mode(0o755)
                .create(dir)
                .map_err(|e| io_err("create the state directory", e))?;
            true
        }
        Err(e) => return Err(io_err("create the state directory", e)),
    };
    let Some(owner) = owner else {
        return Ok(if created {
            StateDirAction::Created
        } else {
            StateDirAction::Unchanged
        });
    };
    if created {
        std::os::unix::fs::chown(dir, Some(owner.uid), Some(owner.gid))
            .map_err(|e| io_err("chown the state directory", e))?;
        return Ok(StateDirAction::Created);
    }
    let meta = fs::metadata(dir).map_err(|e| io_err("stat the state directory", e))?;
    if meta.uid() == owner.uid {
        return Ok(StateDirAction::Unchanged);
    }
    chown_tree(dir, owner.uid, owner.gid).map_err(|e| io_err("chown the state directory", e))?;
    Ok(StateDirAction::Rechowned)
}

fn chown_tree(p: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
    let meta = fs::symlink_metadata(p)?;
    if meta.is_dir() {
        for e in fs::read_dir(p)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn useradd_commands() {
        assert_eq!(
            useradd_command("tarmac_etcd", None, Path::new("/opt/tarmac")).join(" "),
            "useradd --system --home-dir /opt/tarmac --no-create-home --shell /usr/sbin/nologin --comment Tarmac system user --user-group tarmac_etcd"
        );
        assert_eq!(
            useradd_command(
                "tarmac_x",
                Some("systemd-journal"),
                Path::new("/opt/tarmac")
            )
            .join(" "),
            "useradd --system --home-dir /opt/tarmac --no-create-home --shell /usr/sbin/nologin --comment Tarmac system user --gid systemd-journal tarmac_x"
        );
        assert_eq!(
            useradd_command("tarmac_x", Some("tarmac_x"), Path::new("/r"))
                .last()
                .unwrap(),
            "tarmac_x"
        );
    }

    #[test]
    fn lookups() {
        assert_eq!(lookup_user("root").unwrap().uid, 0);
        assert!(lookup_user("tarmac_surely_missing").is_none());
        assert_eq!(lookup_group("root").unwrap().gid, 0);
        assert!(lookup_group("tarmac_surely_missing").is_none());
    }

    #[test]
    fn state_dir_is_not_rechowned_when_unchanged() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("state/etcd");
        let me = UserInfo { uid: 0, gid: 0 };
        assert_eq!(
            ensure_state_dir(&d, Some(&me)).unwrap(),
            StateDirAction::Created
        );
        assert_eq!(
            ensure_state_dir(&d, Some(&me)).unwrap(),
            StateDirAction::Unchanged
        );
        let nobody = lookup_user("nobody").unwrap();
        fs::write(d.join("data"), "x").unwrap();
        assert_eq!(
            ensure_state_dir(&d, Some(&nobody)).unwrap(),
            StateDirAction::Rechowned
        );
        assert_eq!(fs::metadata(d.join("data")).unwrap().uid(), nobody.uid);
        assert_eq!(
            ensure_state_dir(&d, None).unwrap(),
            StateDirAction::Unchanged
        );
    }
}
