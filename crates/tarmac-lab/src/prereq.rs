//! The machine-side tools the lab needs, installed with apt-get when missing, and the
//! kernel limits booted systemd hosts need.

use std::path::Path;
use std::process::Command;

use crate::events::Progress;
use crate::sys;
use crate::{LabError, Mode};

/// (program, Debian package).
const ALWAYS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("unshare", "util-linux"),
    ("ssh", "openssh-client"),
];
const SYSTEMD: &[(&str, &str)] = &[("systemd-nspawn", "systemd-container")];
const IMAGE: &[(&str, &str)] = &[("debootstrap", "debootstrap"), ("chroot", "coreutils")];

/// Install whatever is missing for a lab in `mode` (plus debootstrap when the root image
/// still has to be built).
pub fn ensure_tools(
    mode: Mode,
    need_image_build: bool,
    keyring: Option<&Path>,
    p: &Progress<'_>,
) -> Result<(), LabError> {
    let mut wanted: Vec<(&str, &str)> = ALWAYS.to_vec();
    if mode == Mode::Systemd {
        wanted.extend_from_slice(SYSTEMD);
    }
    if need_image_build {
        wanted.extend_from_slice(IMAGE);
    }
    let mut packages: Vec<&str> = wanted
        .iter()
        .filter(|(prog, _)| !sys::have_program(prog))
        .map(|(_, pkg)| *pkg)
        .collect();
    if need_image_build
        && let Some(k) = keyring
        && !k.exists()
    {
        packages.push("debian-archive-keyring");
    }
    packages.sort_unstable();
    packages.dedup();
    if packages.is_empty() {
        return Ok(());
    }
    if !sys::have_program("apt-get") {
        let (program, package) = wanted
            .iter()
            .find(|(_, pkg)| packages.contains(pkg))
            .copied()
            .unwrap_or(("?", packages[0]));
        return Err(LabError::Missing {
            program: program.into(),
            package: package.into(),
        });
    }
    p.say(format!(
        "installing {} (apt-get --no-install-recommends)",
        packages.join(" ")
    ));
    apt_install(&packages).map_err(|e| LabError::Prerequisites {
        packages: packages.join(" "),
        source: Box::new(e),
    })
}

/// Install `nftables` when `nft` is missing (the egress audit runs the machine's `nft`
/// inside the lab's namespaces).
pub fn ensure_nft(p: &Progress<'_>) -> Result<(), LabError> {
    if sys::have_program("nft") {
        return Ok(());
    }
    if !sys::have_program("apt-get") {
        return Err(LabError::Missing {
            program: "nft".into(),
            package: "nftables".into(),
        });
    }
    p.say("installing nftables (apt-get --no-install-recommends)");
    apt_install(&["nftables"]).map_err(|e| LabError::Prerequisites {
        packages: "nftables".into(),
        source: Box::new(e),
    })
}

fn apt_install(packages: &[&str]) -> Result<(), LabError> {
    let install = || {
        let mut cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            .args([
                "-o",
                "DPkg::Lock::Timeout=300",
                "install",
                "-y",
                "--no-install-recommends",
            ])
            .args(packages);
        sys::run(&mut cmd, None)
    };
    if install().is_ok() {
        return Ok(());
    }
    // Most often the package lists are missing or stale: refresh them once and retry.
    let mut update = Command::new("apt-get");
    update.env("DEBIAN_FRONTEND", "noninteractive").args([
        "-o",
        "DPkg::Lock::Timeout=300",
        "update",
    ]);
    sys::run(&mut update, None)?;
    install().map(|_| ())
}

/// inotify instances one booted systemd host uses (systemd 5, logind 1, journald, sshd
/// sessions…), with headroom.
pub const INOTIFY_INSTANCES_PER_HOST: u64 = 12;

/// Raise `fs.inotify.max_user_instances` / `max_user_watches` for `systemd_hosts` booted
/// hosts on the machine (all labs together). Never lowers them.
pub fn ensure_inotify(systemd_hosts: usize, p: &Progress<'_>) -> Result<(), LabError> {
    let n = systemd_hosts as u64;
    let want_instances = 512 + INOTIFY_INSTANCES_PER_HOST * n;
    let want_watches = 65_536 + 4_096 * n;
    for (key, want) in [
        ("fs.inotify.max_user_instances", want_instances),
        ("fs.inotify.max_user_watches", want_watches),
    ] {
        let have = sys::sysctl_get(key).unwrap_or(0);
        if have < want {
            p.say(format!(
                "raising {key} from {have} to {want} for {systemd_hosts} systemd hosts"
            ));
            sys::sysctl_set(key, want)?;
        }
    }
    Ok(())
}

/// Raise the neighbour table's garbage-collection thresholds
/// (`net.ipv4.neigh.default.gc_thresh{1,2,3}`, shared by every namespace) for `hosts` lab
/// hosts on the machine: four entries per host, with headroom. Never lowers them.
pub fn ensure_neighbours(hosts: usize, p: &Progress<'_>) -> Result<(), LabError> {
    let n = hosts as u64;
    for (key, want) in [
        ("net.ipv4.neigh.default.gc_thresh1", 1_024 + 2 * n),
        ("net.ipv4.neigh.default.gc_thresh2", 2_048 + 4 * n),
        ("net.ipv4.neigh.default.gc_thresh3", 4_096 + 8 * n),
    ] {
        let have = sys::sysctl_get(key).unwrap_or(0);
        if have < want {
            p.say(format!(
                "raising {key} from {have} to {want} for {hosts} lab hosts"
            ));
            sys::sysctl_set(key, want)?;
        }
    }
    Ok(())
}
