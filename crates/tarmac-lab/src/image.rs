//! The hosts' shared, read-only root images: one minimal Debian per [`Suite`] built once
//! with `debootstrap --variant=minbase`, customised for the lab, and cached under
//! `/var/cache/tarmac-lab/rootfs-<suite>-<hash>/` (the hash covers the suite, the package
//! list, any extra packages a lab asks for, and the recipe, so changing either builds a new
//! image).

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::events::Progress;
use crate::suite::{self, Suite};
use crate::{LabError, sys};

/// Bump when the customisation below changes.
pub const RECIPE_VERSION: u32 = 1;

/// Packages on top of minbase.
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "iproute2",
    "procps",
    "curl",
    "ca-certificates",
    "sudo",
    "iputils-ping",
    "less",
    "netbase",
];

/// Units masked in the image: timers and services that only add noise or load in a lab,
/// and the two that cost inotify instances per host (`console-getty`, `user@`).
pub const MASKED_UNITS: &[&str] = &[
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "apt-daily.service",
    "apt-daily-upgrade.service",
    "man-db.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "dpkg-db-backup.timer",
    "systemd-timesyncd.service",
    "console-getty.service",
    "user@.service",
];

/// The unprivileged user every host has (same key as root, passwordless sudo).
pub const LAB_USER: &str = "tarmac";

const BOOT_REPORT: &str = include_str!("../assets/boot-report.sh");
const READY_UNIT: &str = include_str!("../assets/tarmac-lab-ready.service");
const SSHD_CONF: &str = include_str!("../assets/sshd.conf");
const JOURNALD_CONF: &str = include_str!("../assets/journald.conf");
const BASHRC: &str = include_str!("../assets/bashrc");
const PLAIN_INIT: &str = include_str!("../assets/plain-init.sh");

/// PID 1 of plain-mode hosts, inside the image.
pub const PLAIN_INIT_PATH: &str = "/usr/lib/tarmac-lab/plain-init";

/// Where images are cached.
pub const CACHE_DIR: &str = "/var/cache/tarmac-lab";

/// Which Debian to bootstrap, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub suite: Suite,
    pub mirror: String,
}

impl Source {
    /// `suite` from the machine's apt mirror for it (`TARMAC_LAB_MIRROR` overrides it;
    /// without a source for that suite, deb.debian.org).
    pub fn for_suite(suite: Suite) -> Source {
        let mirror = std::env::var("TARMAC_LAB_MIRROR")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| machine_mirror(suite.as_str()));
        Source { suite, mirror }
    }

    /// The keyring debootstrap verifies Debian suites with.
    pub fn keyring(&self) -> Option<PathBuf> {
        let k = PathBuf::from("/usr/share/keyrings/debian-archive-keyring.gpg");
        self.mirror.contains("debian").then_some(k)
    }
}

/// The machine's apt mirror for `suite` (the rule lives in [`tarmac_types::apt_source`],
/// shared with the offline prerequisites repository).
fn machine_mirror(suite: &str) -> String {
    tarmac_types::apt_source::machine_mirror(
        suite,
        |d| {
            fs::read_dir(d)
                .map(|rd| rd.flatten().map(|e| e.path()).collect())
                .unwrap_or_default()
        },
        sys::read_opt,
    )
}

pub use tarmac_types::apt_source::os_release_codename;

/// Check and normalise the extra packages a lab asks for on top of [`PACKAGES`]: each
/// must be a Debian package name (`[a-z0-9][a-z0-9+.-]+`); the result is sorted, without
/// duplicates and without packages the image has anyway, so the same set always names the
/// same image (and an empty result is the default image).
pub fn normalize_extra_packages(names: &[String]) -> Result<Vec<String>, LabError> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let why = if name.len() < 2 {
            Some("it is shorter than two characters")
        } else if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            Some("it does not start with a lowercase letter or a digit")
        } else if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c))
        {
            Some("it has characters other than a-z, 0-9, `+`, `.` and `-`")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(LabError::BadPackage {
                name: name.clone(),
                why,
            });
        }
        if !PACKAGES.contains(&name.as_str()) {
            out.push(name.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// debootstrap's `--include=` value: [`PACKAGES`], then the extra packages.
pub fn include_list(extra: &[String]) -> String {
    let mut s = PACKAGES.join(",");
    for p in extra {
        let _ = write!(s, ",{p}");
    }
    s
}

/// Short hash naming an image: recipe version, suite, package list, extra packages
/// (normalised, see [`normalize_extra_packages`]) and customisation. Without extra packages
/// the key is the one images had before extra packages existed.
pub fn cache_key(suite: Suite, extra: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "tarmac-lab-image v{RECIPE_VERSION}\n{suite}\n{}\n{}\n",
        PACKAGES.join(","),
        MASKED_UNITS.join(",")
    ));
    if !extra.is_empty() {
        h.update(format!("extra-packages={}\n", extra.join(",")));
    }
    for part in [
        BOOT_REPORT,
        READY_UNIT,
        SSHD_CONF,
        JOURNALD_CONF,
        BASHRC,
        PLAIN_INIT,
    ] {
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())[..12].to_owned()
}

/// Path of the cached image for `suite` with the (normalised) extra packages.
pub fn image_path(suite: Suite, extra: &[String]) -> PathBuf {
    Path::new(CACHE_DIR).join(format!("rootfs-{suite}-{}", cache_key(suite, extra)))
}

/// Return the cached image with the (normalised) extra packages, building it first if
/// needed (serialised by a lock, so two concurrent `up`s build it once). `in_use`: images
/// that must survive the pruning after a build (other labs', and this lab's other suites').
pub fn ensure(
    src: &Source,
    extra: &[String],
    in_use: &[PathBuf],
    p: &Progress<'_>,
) -> Result<PathBuf, LabError> {
    let path = image_path(src.suite, extra);
    if is_complete(&path) {
        return Ok(path);
    }
    let lock_path = Path::new(CACHE_DIR).join("rootfs.lock");
    let _lock = match sys::lock(&lock_path, Duration::ZERO)? {
        Some(lock) => lock,
        None => {
            p.say("another lab is building the root image: waiting for it".to_string());
            sys::lock(&lock_path, Duration::from_secs(30 * 60))?.ok_or_else(|| LabError::Busy {
                name: "root image".into(),
                path: lock_path.clone(),
            })?
        }
    };
    if is_complete(&path) {
        return Ok(path);
    }
    let log = path.with_extension("log");
    let fail = |source: LabError| LabError::Image {
        path: path.clone(),
        suite: src.suite.to_string(),
        mirror: src.mirror.clone(),
        log: log.clone(),
        source: Box::new(source),
    };
    // Leftovers of builds that crashed.
    if let Ok(rd) = fs::read_dir(CACHE_DIR) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(".build-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    let tmp = Path::new(CACHE_DIR).join(format!(
        ".build-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("rootfs")
    ));
    let t0 = Instant::now();
    let extra_note = if extra.is_empty() {
        String::new()
    } else {
        format!(" with extra packages {}", extra.join(","))
    };
    p.say(format!(
        "building the root image once: debootstrap --variant=minbase {}{extra_note} from {} (1-2 minutes; cached in {})",
        src.suite,
        src.mirror,
        path.display()
    ));
    let result = debootstrap(src, extra, &tmp, &log).and_then(|()| customise(&tmp, &path, extra));
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(fail(e));
    }
    fs::rename(&tmp, &path)
        .map_err(LabError::io("cannot move the finished image to", &path))
        .map_err(fail)?;
    p.say(format!(
        "root image ready in {:.0} s",
        t0.elapsed().as_secs_f64()
    ));
    let defaults: Vec<PathBuf> = Suite::ALL.iter().map(|s| image_path(*s, &[])).collect();
    prune(&path, &defaults, in_use);
    Ok(path)
}

/// Remove images that no lab uses any more, except the one just built and the current
/// default image of every suite (so building an image with extra packages, or of another
/// suite, keeps the default ones, and images of older recipes go).
fn prune(keep: &Path, defaults: &[PathBuf], in_use: &[PathBuf]) {
    let Ok(rd) = fs::read_dir(CACHE_DIR) else {
        return;
    };
    for e in rd.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("rootfs-")
            && path.is_dir()
            && path != keep
            && !defaults.contains(&path)
            && !in_use.contains(&path)
        {
            let _ = fs::remove_dir_all(&path);
            let _ = fs::remove_file(path.with_extension("log"));
        }
    }
}

/// The suite an image was built for, from its name (`rootfs-<suite>-<hash>`): how labs
/// saved before mixed-OS labs (one image, no suite per host) are read.
pub fn suite_of_image(path: &Path) -> Option<Suite> {
    let name = path.file_name()?.to_str()?.strip_prefix("rootfs-")?;
    let (suite, _hash) = name.rsplit_once('-')?;
    Suite::parse(suite, "the image name").ok()
}

/// `PRETTY_NAME` of an image's `/etc/os-release` (a symlink into `/usr/lib` is followed
/// inside the image, never on the machine).
pub fn pretty_name(image: &Path) -> Option<String> {
    let mut rel = PathBuf::from("etc/os-release");
    for _ in 0..8 {
        let path = image.join(&rel);
        match fs::read_link(&path) {
            Ok(target) if target.is_absolute() => {
                rel = target.strip_prefix("/").ok()?.to_path_buf();
            }
            Ok(target) => rel = rel.parent()?.join(target),
            Err(_) => {
                let text = sys::read_opt(&path)
                    .or_else(|| sys::read_opt(&image.join("usr/lib/os-release")))?;
                return suite::os_release_pretty_name(&text);
            }
        }
        // `..` is resolved against the image root, never above it.
        let mut clean = PathBuf::new();
        for c in rel.components() {
            match c {
                std::path::Component::ParentDir => {
                    clean.pop();
                }
                std::path::Component::Normal(n) => clean.push(n),
                _ => {}
            }
        }
        rel = clean;
    }
    None
}

/// A finished image: the final directory only appears by rename after the build.
fn is_complete(path: &Path) -> bool {
    path.join("etc/tarmac-lab-image").is_file()
}

/// debootstrap's arguments: minbase plus [`PACKAGES`] and the extra packages, into `dir`.
pub fn debootstrap_args(
    src: &Source,
    keyring: Option<&Path>,
    extra: &[String],
    dir: &Path,
) -> Vec<String> {
    let mut args = vec![
        "--variant=minbase".to_owned(),
        format!("--include={}", include_list(extra)),
    ];
    if let Some(k) = keyring {
        args.push(format!("--keyring={}", k.display()));
    }
    args.extend([
        src.suite.to_string(),
        dir.display().to_string(),
        src.mirror.clone(),
    ]);
    args
}

fn debootstrap(src: &Source, extra: &[String], dir: &Path, log: &Path) -> Result<(), LabError> {
    fs::create_dir_all(dir).map_err(LabError::io("cannot create", dir))?;
    let logf = fs::File::create(log).map_err(LabError::io("cannot create", log))?;
    let logf2 = logf.try_clone().map_err(LabError::io("cannot open", log))?;
    let keyring = src.keyring().filter(|k| k.exists());
    let mut cmd = Command::new("debootstrap");
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .args(debootstrap_args(src, keyring.as_deref(), extra, dir))
        .stdin(Stdio::null())
        .stdout(logf)
        .stderr(logf2);
    let status = cmd.status().map_err(|source| LabError::Spawn {
        program: "debootstrap".into(),
        source,
    })?;
    if !status.success() {
        let tail = sys::read_opt(log).map(|t| {
            t.lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        });
        return Err(LabError::Command {
            command: sys::describe(&cmd),
            status: status.to_string(),
            stderr: tail.unwrap_or_default(),
        });
    }
    Ok(())
}

fn write(root: &Path, rel: &str, text: &str, mode: u32) -> Result<(), LabError> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(LabError::io("cannot create", parent))?;
    }
    sys::write_file(&path, text.as_bytes(), mode)
}

fn link(root: &Path, rel: &str, target: &str) -> Result<(), LabError> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(LabError::io("cannot create", parent))?;
    }
    let _ = fs::remove_file(&path);
    symlink(target, &path).map_err(LabError::io("cannot create symlink", path))
}

/// Turn the debootstrap tree into a lab host image that will live at `final_path`.
fn customise(root: &Path, final_path: &Path, extra: &[String]) -> Result<(), LabError> {
    // The unprivileged user (authorized_keys are per lab, written into each host's upper layer).
    sys::run(
        Command::new("chroot").arg(root).args([
            "useradd",
            "--create-home",
            "--shell",
            "/bin/bash",
            "--user-group",
            LAB_USER,
        ]),
        None,
    )?;
    write(
        root,
        &format!("etc/sudoers.d/{LAB_USER}"),
        &format!("{LAB_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n"),
        0o440,
    )?;

    // sshd: one ed25519 host key per host (written per host), no shared host keys.
    if let Ok(rd) = fs::read_dir(root.join("etc/ssh")) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    write(
        root,
        "etc/ssh/sshd_config.d/00-tarmac-lab.conf",
        SSHD_CONF,
        0o644,
    )?;
    if !root
        .join("etc/systemd/system/multi-user.target.wants/ssh.service")
        .exists()
    {
        link(
            root,
            "etc/systemd/system/multi-user.target.wants/ssh.service",
            "/lib/systemd/system/ssh.service",
        )?;
    }

    // systemd: quiet, cheap, and a boot report the lab reads from outside.
    for unit in MASKED_UNITS {
        link(root, &format!("etc/systemd/system/{unit}"), "/dev/null")?;
    }
    write(
        root,
        "etc/systemd/journald.conf.d/tarmac-lab.conf",
        JOURNALD_CONF,
        0o644,
    )?;
    write(root, "usr/lib/tarmac-lab/boot-report", BOOT_REPORT, 0o755)?;
    write(
        root,
        PLAIN_INIT_PATH.trim_start_matches('/'),
        PLAIN_INIT,
        0o755,
    )?;
    write(
        root,
        "etc/systemd/system/tarmac-lab-ready.service",
        READY_UNIT,
        0o644,
    )?;
    link(
        root,
        "etc/systemd/system/multi-user.target.wants/tarmac-lab-ready.service",
        "/etc/systemd/system/tarmac-lab-ready.service",
    )?;

    // Identity and small files every host overrides or needs.
    write(root, "etc/machine-id", "", 0o444)?;
    write(root, "etc/hostname", "localhost\n", 0o644)?;
    let _ = fs::remove_file(root.join("etc/resolv.conf"));
    write(
        root,
        "etc/resolv.conf",
        "# Tarmac lab: no DNS; lab names come from /etc/hosts.\n",
        0o644,
    )?;
    write(root, "root/.bashrc", BASHRC, 0o644)?;

    // No apt caches or package lists in the image.
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        if let Ok(rd) = fs::read_dir(root.join(dir)) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
    for f in [
        "var/cache/apt/pkgcache.bin",
        "var/cache/apt/srcpkgcache.bin",
    ] {
        let _ = fs::remove_file(root.join(f));
    }
    for needed in [
        "usr/sbin/sshd",
        "lib/systemd/systemd",
        "usr/bin/sudo",
        "usr/bin/curl",
        "bin/bash",
    ] {
        if !root.join(needed).exists() {
            return Err(LabError::InvalidSpec {
                reason: format!("the image has no /{needed}"),
            });
        }
    }
    write(
        root,
        "etc/tarmac-lab-image",
        &image_marker(final_path, extra),
        0o644,
    )
}

/// `/etc/tarmac-lab-image` of a finished image: recipe, packages and the image's name.
pub fn image_marker(final_path: &Path, extra: &[String]) -> String {
    let mut s = format!("recipe={RECIPE_VERSION}\npackages={}\n", PACKAGES.join(","));
    if !extra.is_empty() {
        let _ = writeln!(s, "extra-packages={}", extra.join(","));
    }
    let _ = writeln!(
        s,
        "key={}",
        final_path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn cache_key_is_stable_and_names_the_suite() {
        assert_eq!(
            cache_key(Suite::Bookworm, &[]),
            cache_key(Suite::Bookworm, &[])
        );
        assert_ne!(
            cache_key(Suite::Bookworm, &[]),
            cache_key(Suite::Trixie, &[])
        );
        let p = image_path(Suite::Bookworm, &[]);
        assert!(
            p.to_string_lossy()
                .starts_with("/var/cache/tarmac-lab/rootfs-bookworm-")
        );
        assert_eq!(cache_key(Suite::Bookworm, &[]).len(), 12);
    }

    #[test]
    fn default_cache_key_is_unchanged_by_extra_packages_support() {
        // The key images had before extra packages existed: existing caches stay valid.
        let mut h = Sha256::new();
        h.update(format!(
            "tarmac-lab-image v{RECIPE_VERSION}\nbookworm\n{}\n{}\n",
            PACKAGES.join(","),
            MASKED_UNITS.join(",")
        ));
        for part in [
            BOOT_REPORT,
            READY_UNIT,
            SSHD_CONF,
            JOURNALD_CONF,
            BASHRC,
            PLAIN_INIT,
        ] {
            h.update(part.as_bytes());
        }
        let before = hex::encode(h.finalize())[..12].to_owned();
        assert_eq!(cache_key(Suite::Bookworm, &[]), before);
        // The recipe as of this change (update when the recipe or an asset changes).
        assert_eq!(cache_key(Suite::Bookworm, &[]), "3662dee8d8d8");
    }

    #[test]
    fn extra_packages_name_another_image() {
        let py = strings(&["python3"]);
        let two = strings(&["python3", "python3-apt"]);
        assert_ne!(
            cache_key(Suite::Bookworm, &py),
            cache_key(Suite::Bookworm, &[])
        );
        assert_ne!(
            cache_key(Suite::Bookworm, &py),
            cache_key(Suite::Bookworm, &two)
        );
        assert_eq!(
            cache_key(Suite::Bookworm, &py),
            cache_key(Suite::Bookworm, &py)
        );
        assert_eq!(
            image_path(Suite::Bookworm, &py),
            PathBuf::from(format!(
                "/var/cache/tarmac-lab/rootfs-bookworm-{}",
                cache_key(Suite::Bookworm, &py)
            ))
        );
    }

    #[test]
    fn extra_packages_are_sorted_deduplicated_and_skip_base_packages() {
        assert_eq!(
            normalize_extra_packages(&strings(&[
                "python3-apt",
                "python3",
                "curl",
                "python3",
                "libstdc++6",
                "g++-12",
                "0ad",
            ]))
            .unwrap(),
            strings(&["0ad", "g++-12", "libstdc++6", "python3", "python3-apt"])
        );
        assert_eq!(
            normalize_extra_packages(&strings(&["sudo", "curl"])).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(normalize_extra_packages(&[]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn bad_extra_package_names_are_refused_by_name() {
        for (bad, msg) in [
            (
                "Python3",
                "extra package `Python3` is not a Debian package name: it does not start with a lowercase letter or a digit",
            ),
            (
                "p",
                "extra package `p` is not a Debian package name: it is shorter than two characters",
            ),
            (
                "-x",
                "extra package `-x` is not a Debian package name: it does not start with a lowercase letter or a digit",
            ),
            (
                "python3 curl",
                "extra package `python3 curl` is not a Debian package name: it has characters other than a-z, 0-9, `+`, `.` and `-`",
            ),
            (
                "python3,curl",
                "extra package `python3,curl` is not a Debian package name: it has characters other than a-z, 0-9, `+`, `.` and `-`",
            ),
            (
                "vim:amd64",
                "extra package `vim:amd64` is not a Debian package name: it has characters other than a-z, 0-9, `+`, `.` and `-`",
            ),
        ] {
            let e = normalize_extra_packages(&strings(&["python3", bad])).unwrap_err();
            assert_eq!(
                tarmac_types::error_report::text_with_hint(&e),
                format!(
                    "{msg}\nhint: give package names as apt knows them (a-z, 0-9, `+`, `.`, `-`; at least two characters, starting with a letter or digit), separated by commas, e.g. `--extra-packages python3,python3-apt`"
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn debootstrap_argv() {
        let src = Source {
            suite: Suite::Bookworm,
            mirror: "http://deb.debian.org/debian".into(),
        };
        let dir = Path::new("/var/cache/tarmac-lab/.build-rootfs-bookworm-abc");
        assert_eq!(
            debootstrap_args(
                &src,
                Some(Path::new("/usr/share/keyrings/debian-archive-keyring.gpg")),
                &[],
                dir
            ),
            [
                "--variant=minbase",
                "--include=systemd,systemd-sysv,dbus,openssh-server,iproute2,procps,curl,ca-certificates,sudo,iputils-ping,less,netbase",
                "--keyring=/usr/share/keyrings/debian-archive-keyring.gpg",
                "bookworm",
                "/var/cache/tarmac-lab/.build-rootfs-bookworm-abc",
                "http://deb.debian.org/debian",
            ]
        );
        assert_eq!(
            debootstrap_args(&src, None, &strings(&["python3", "python3-apt"]), dir),
            [
                "--variant=minbase",
                "--include=systemd,systemd-sysv,dbus,openssh-server,iproute2,procps,curl,ca-certificates,sudo,iputils-ping,less,netbase,python3,python3-apt",
                "bookworm",
                "/var/cache/tarmac-lab/.build-rootfs-bookworm-abc",
                "http://deb.debian.org/debian",
            ]
        );
    }

    #[test]
    fn suite_is_read_from_the_image_name() {
        assert_eq!(
            suite_of_image(Path::new(
                "/var/cache/tarmac-lab/rootfs-bullseye-0123456789ab"
            )),
            Some(Suite::Bullseye)
        );
        assert_eq!(
            suite_of_image(&image_path(Suite::Trixie, &strings(&["python3"]))),
            Some(Suite::Trixie)
        );
        assert_eq!(
            suite_of_image(Path::new("/var/cache/tarmac-lab/rootfs-noble-0123")),
            None
        );
        assert_eq!(suite_of_image(Path::new("/x/other")), None);
    }

    #[test]
    fn pretty_name_follows_os_release_links_inside_the_image() {
        let dir = std::env::temp_dir().join(format!("tarmac-lab-osr-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("etc")).unwrap();
        fs::create_dir_all(dir.join("usr/lib")).unwrap();
        fs::write(
            dir.join("usr/lib/os-release"),
            "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nVERSION_CODENAME=trixie\n",
        )
        .unwrap();
        symlink("../usr/lib/os-release", dir.join("etc/os-release")).unwrap();
        assert_eq!(
            pretty_name(&dir).as_deref(),
            Some("Debian GNU/Linux 13 (trixie)")
        );
        // An absolute link resolves in the image, not on the machine.
        fs::remove_file(dir.join("etc/os-release")).unwrap();
        symlink("/usr/lib/os-release", dir.join("etc/os-release")).unwrap();
        assert_eq!(
            pretty_name(&dir).as_deref(),
            Some("Debian GNU/Linux 13 (trixie)")
        );
        fs::remove_file(dir.join("etc/os-release")).unwrap();
        fs::write(
            dir.join("etc/os-release"),
            "PRETTY_NAME=\"Debian GNU/Linux 11 (bullseye)\"\n",
        )
        .unwrap();
        assert_eq!(
            pretty_name(&dir).as_deref(),
            Some("Debian GNU/Linux 11 (bullseye)")
        );
        assert_eq!(pretty_name(&dir.join("missing")), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn image_marker_names_packages_and_final_image() {
        let path = Path::new("/var/cache/tarmac-lab/rootfs-bookworm-0123456789ab");
        assert_eq!(
            image_marker(path, &[]),
            "recipe=1\npackages=systemd,systemd-sysv,dbus,openssh-server,iproute2,procps,curl,ca-certificates,sudo,iputils-ping,less,netbase\nkey=rootfs-bookworm-0123456789ab\n"
        );
        assert_eq!(
            image_marker(path, &strings(&["python3"])),
            "recipe=1\npackages=systemd,systemd-sysv,dbus,openssh-server,iproute2,procps,curl,ca-certificates,sudo,iputils-ping,less,netbase\nextra-packages=python3\nkey=rootfs-bookworm-0123456789ab\n"
        );
    }
}
