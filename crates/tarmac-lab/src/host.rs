//! One lab host: its upper layer (the files that differ per host), its launcher (a
//! process in its own namespaces and cgroup), and probes for its sshd.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd as _, RawFd};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::image::LAB_USER;
use crate::plan::{LabHost, Mode, Plan};
use crate::sshkey::KeyPair;
use crate::{LabError, sys};

/// Where a systemd host records how its boot ended (relative to its root).
pub const BOOT_STATE: &str = "var/lib/tarmac-lab-host/boot-state";

/// systemd-networkd leaves the lab's links alone (`host0`, the egress audit's pair).
pub const NETWORKD_UNMANAGED: &str = "# Tarmac lab: the lab configures these links from outside the host.\n[Match]\nName=host0 egress0 egress0-sink\n\n[Link]\nUnmanaged=yes\n";
/// …and keeps routes it did not make (the egress audit's default routes).
pub const NETWORKD_CONF: &str =
    "# Tarmac lab: keep the routes the lab set up.\n[Network]\nManageForeignRoutes=no\n";

/// Paths of one host's directory in the lab dir.
pub struct HostPaths {
    pub upper: PathBuf,
    pub work: PathBuf,
    pub root: PathBuf,
    pub console: PathBuf,
}

impl HostPaths {
    pub fn new(plan: &Plan, host: &LabHost) -> HostPaths {
        let dir = plan.host_dir(&host.name);
        HostPaths {
            upper: dir.join("upper"),
            work: dir.join("work"),
            root: dir.join("root"),
            console: dir.join("console.log"),
        }
    }
}

/// Write the per-host files into the host's upper layer; returns the host's public key.
pub fn prepare(
    plan: &Plan,
    host: &LabHost,
    lab_pub: &str,
    etc_hosts: &str,
) -> Result<KeyPair, LabError> {
    let p = HostPaths::new(plan, host);
    let lower = plan.image_of(host);
    for d in [&p.upper, &p.work, &p.root] {
        fs::create_dir_all(d).map_err(LabError::io("cannot create", d))?;
    }
    let key = KeyPair::generate(&format!("root@{}", host.name));

    let etc = sys::mkdir_like_lower(&p.upper, lower, "etc")?;
    sys::write_file(
        &etc.join("hostname"),
        format!("{}\n", host.name).as_bytes(),
        0o644,
    )?;
    sys::write_file(&etc.join("hosts"), etc_hosts.as_bytes(), 0o644)?;
    // The lab sets up the hosts' links and routes from outside (also the egress audit's
    // default routes): should something enable systemd-networkd on a host (the image does
    // not), it leaves them alone.
    let network = sys::mkdir_like_lower(&p.upper, lower, "etc/systemd/network")?;
    sys::write_file(
        &network.join("00-tarmac-lab.network"),
        NETWORKD_UNMANAGED.as_bytes(),
        0o644,
    )?;
    let networkd = sys::mkdir_like_lower(&p.upper, lower, "etc/systemd/networkd.conf.d")?;
    sys::write_file(
        &networkd.join("tarmac-lab.conf"),
        NETWORKD_CONF.as_bytes(),
        0o644,
    )?;
    let mut id = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
    sys::write_file(
        &etc.join("machine-id"),
        format!("{}\n", hex::encode(id)).as_bytes(),
        0o444,
    )?;
    let ssh = sys::mkdir_like_lower(&p.upper, lower, "etc/ssh")?;
    sys::write_file(
        &ssh.join("ssh_host_ed25519_key"),
        key.private.as_bytes(),
        0o600,
    )?;
    sys::write_file(
        &ssh.join("ssh_host_ed25519_key.pub"),
        format!("{}\n", key.public).as_bytes(),
        0o644,
    )?;

    let authorized = format!("{}\n", lab_pub.trim());
    let root_ssh = sys::mkdir_like_lower(&p.upper, lower, "root/.ssh")?;
    fs::set_permissions(&root_ssh, fs::Permissions::from_mode(0o700))
        .map_err(LabError::io("cannot chmod", &root_ssh))?;
    sys::write_file(
        &root_ssh.join("authorized_keys"),
        authorized.as_bytes(),
        0o600,
    )?;

    let home_rel = format!("home/{LAB_USER}");
    let home_lower = lower.join(&home_rel);
    let meta = fs::metadata(&home_lower).map_err(LabError::io(
        "the image has no home for the lab user",
        &home_lower,
    ))?;
    let user_ssh = sys::mkdir_like_lower(&p.upper, lower, &format!("{home_rel}/.ssh"))?;
    let keys = user_ssh.join("authorized_keys");
    sys::write_file(&keys, authorized.as_bytes(), 0o600)?;
    for path in [&user_ssh, &keys] {
        std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid()))
            .map_err(LabError::io("cannot chown", path))?;
    }
    fs::set_permissions(&user_ssh, fs::Permissions::from_mode(0o700))
        .map_err(LabError::io("cannot chmod", &user_ssh))?;
    Ok(key)
}

/// Open the `cgroup.procs` files of the host's cgroups (created here) in every hierarchy.
pub fn cgroup_procs(lab: &str, host: &str) -> Result<Vec<File>, LabError> {
    let mut files = Vec::new();
    for root in sys::cgroup_roots() {
        let dir = sys::lab_cgroup(&root, lab).join(host);
        fs::create_dir_all(&dir).map_err(LabError::io("cannot create cgroup", &dir))?;
        let procs = dir.join("cgroup.procs");
        files.push(
            OpenOptions::new()
                .write(true)
                .open(&procs)
                .map_err(LabError::io("cannot open", procs))?,
        );
    }
    Ok(files)
}

fn cpath(p: &Path) -> Result<CString, LabError> {
    sys::cstr(p.as_os_str()).map_err(LabError::io("path contains NUL", p))
}

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL in constant")
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `mount(2)` with C strings; `None` for NULL.
fn mount(
    src: Option<&CString>,
    target: &CString,
    fstype: Option<&CString>,
    flags: libc::c_ulong,
    data: Option<&CString>,
) -> io::Result<()> {
    let p = |s: Option<&CString>| s.map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: all pointers are NULL or valid NUL-terminated strings.
    check(unsafe { libc::mount(p(src), target.as_ptr(), p(fstype), flags, p(data).cast()) })
}

/// Detach from the spawner: the middle process exits, the grandchild goes on to exec, so
/// hosts are never children (or zombies) of the program that started them.
fn daemonize_fork() -> io::Result<()> {
    // SAFETY: fork in the single-threaded pre-exec child; the parent side only calls _exit.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(()),
        // SAFETY: _exit is async-signal-safe.
        _ => unsafe { libc::_exit(0) },
    }
}

fn join_cgroups(fds: &[RawFd]) -> io::Result<()> {
    for fd in fds {
        // Writing "0" moves the writing process.
        // SAFETY: valid fd, 1-byte buffer.
        if unsafe { libc::write(*fd, b"0".as_ptr().cast(), 1) } != 1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Start one host. Returns once its launcher runs detached (not when it has booted).
pub fn launch(plan: &Plan, host: &LabHost, nspawn: &Path) -> Result<(), LabError> {
    let p = HostPaths::new(plan, host);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p.console)
        .map_err(LabError::io("cannot open", &p.console))?;
    let log2 = log
        .try_clone()
        .map_err(LabError::io("cannot open", &p.console))?;
    let cgroups = cgroup_procs(&plan.name, &host.name)?;
    let cg_fds: Vec<RawFd> = cgroups.iter().map(|f| f.as_raw_fd()).collect();
    let overlay_opts = c(&format!(
        "lowerdir={},upperdir={},workdir={}",
        plan.image_of(host).display(),
        p.upper.display(),
        p.work.display()
    ));
    let root = cpath(&p.root)?;
    let (overlay, tmpfs, slash) = (c("overlay"), c("tmpfs"), c("/"));
    // Plain hosts join their network namespace in the launcher; the file stays open here
    // until the fork has happened.
    let netns = match plan.mode {
        Mode::Plain => Some(sys::open_netns(&host.netns(&plan.name))?),
        Mode::Systemd => None,
    };

    let mut cmd = match plan.mode {
        Mode::Systemd => {
            let run_systemd = c("/run/systemd");
            let mode755 = c("mode=0755");
            let mut cmd = Command::new(nspawn);
            cmd.arg("--quiet")
                .arg(format!("--directory={}", p.root.display()))
                .arg(format!("--machine={}", host.name))
                .args([
                    "--register=no",
                    "--keep-unit",
                    "--boot",
                    "--console=read-only",
                    "--link-journal=no",
                ])
                .args(["--resolv-conf=off", "--timezone=off"])
                .arg(format!(
                    "--network-namespace-path={}/{}",
                    sys::NETNS_DIR,
                    host.netns(&plan.name)
                ));
            // SAFETY: the closure only makes async-signal-safe system calls on data prepared
            // before the fork.
            unsafe {
                cmd.pre_exec(move || {
                    check(libc::setsid())?;
                    join_cgroups(&cg_fds)?;
                    check(libc::unshare(libc::CLONE_NEWNS))?;
                    mount(None, &slash, None, libc::MS_REC | libc::MS_PRIVATE, None)?;
                    // nspawn keeps locks and propagation dirs in /run/systemd: keep them private.
                    mount(Some(&tmpfs), &run_systemd, Some(&tmpfs), 0, Some(&mode755))?;
                    mount(
                        Some(&overlay),
                        &root,
                        Some(&overlay),
                        0,
                        Some(&overlay_opts),
                    )?;
                    daemonize_fork()
                })
            };
            cmd
        }
        Mode::Plain => {
            let netns_fd = netns.as_ref().map_or(-1, |f| f.as_raw_fd());
            let hostname = host.name.clone().into_bytes();
            let sub = |rel: &str| cpath(&p.root.join(rel));
            let (r_proc, r_sys, r_dev, r_shm, r_run, r_sshd, r_tmp) = (
                sub("proc")?,
                sub("sys")?,
                sub("dev")?,
                sub("dev/shm")?,
                sub("run")?,
                sub("run/sshd")?,
                sub("tmp")?,
            );
            let (proc_, sysfs, dev, dot) = (c("proc"), c("sysfs"), c("/dev"), c("."));
            let (mode755, mode1777) = (c("mode=0755"), c("mode=1777"));
            // Resolved after pivot_root: the image's init script.
            let mut cmd = Command::new(crate::image::PLAIN_INIT_PATH);
            cmd.env_clear()
                .env(
                    "PATH",
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                )
                .env("HOME", "/root")
                .env("container", "tarmac-lab");
            // SAFETY: as above.
            unsafe {
                cmd.pre_exec(move || {
                    check(libc::setsid())?;
                    join_cgroups(&cg_fds)?;
                    check(libc::setns(netns_fd, libc::CLONE_NEWNET))?;
                    check(libc::unshare(
                        libc::CLONE_NEWNS
                            | libc::CLONE_NEWUTS
                            | libc::CLONE_NEWIPC
                            | libc::CLONE_NEWPID,
                    ))?;
                    mount(None, &slash, None, libc::MS_REC | libc::MS_PRIVATE, None)?;
                    mount(
                        Some(&overlay),
                        &root,
                        Some(&overlay),
                        0,
                        Some(&overlay_opts),
                    )?;
                    check(libc::sethostname(hostname.as_ptr().cast(), hostname.len()))?;
                    // The grandchild is PID 1 of the new pid namespace.
                    daemonize_fork()?;
                    mount(
                        Some(&proc_),
                        &r_proc,
                        Some(&proc_),
                        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        None,
                    )?;
                    mount(
                        Some(&sysfs),
                        &r_sys,
                        Some(&sysfs),
                        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        None,
                    )?;
                    mount(Some(&dev), &r_dev, None, libc::MS_BIND | libc::MS_REC, None)?;
                    mount(
                        Some(&tmpfs),
                        &r_shm,
                        Some(&tmpfs),
                        libc::MS_NOSUID | libc::MS_NODEV,
                        Some(&mode1777),
                    )?;
                    mount(
                        Some(&tmpfs),
                        &r_run,
                        Some(&tmpfs),
                        libc::MS_NOSUID | libc::MS_NODEV,
                        Some(&mode755),
                    )?;
                    check(libc::mkdir(r_sshd.as_ptr(), 0o755))?;
                    mount(
                        Some(&tmpfs),
                        &r_tmp,
                        Some(&tmpfs),
                        libc::MS_NOSUID | libc::MS_NODEV,
                        Some(&mode1777),
                    )?;
                    check(libc::chdir(root.as_ptr()))?;
                    check(
                        libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr())
                            as libc::c_int,
                    )?;
                    check(libc::umount2(dot.as_ptr(), libc::MNT_DETACH))?;
                    check(libc::chdir(slash.as_ptr()))?;
                    Ok(())
                })
            };
            cmd
        }
    };
    cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd.spawn().map_err(|source| LabError::Spawn {
        program: format!("{program} for host {}", host.name),
        source,
    })?;
    // The middle process exits right after the fork.
    let _ = child.wait();
    drop(cgroups);
    drop(netns);
    Ok(())
}

/// The boot state a systemd host reported (`running`, `degraded unit…`), if any yet.
pub fn boot_state(plan: &Plan, host: &LabHost) -> Option<String> {
    sys::read_opt(&HostPaths::new(plan, host).upper.join(BOOT_STATE)).map(|s| s.trim().to_owned())
}

/// Is the host's launcher (and so the host) still alive?
pub fn alive(plan: &Plan, host: &LabHost) -> bool {
    sys::cgroup_roots()
        .iter()
        .any(|r| sys::cgroup_populated(&sys::lab_cgroup(r, &plan.name).join(&host.name)))
}

/// Last lines of the host's console log.
pub fn console_tail(plan: &Plan, host: &LabHost, lines: usize) -> String {
    let text = sys::read_opt(&HostPaths::new(plan, host).console).unwrap_or_default();
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Does something answer with an SSH banner on `ip:22`? Call from inside the lab's
/// control namespace.
pub fn ssh_banner(ip: IpAddr, timeout: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&SocketAddr::new(ip, 22), timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 4 {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf[..got].starts_with(b"SSH-")
}

/// Probe many addresses for an SSH banner from inside the control namespace `ctl`,
/// with a few threads. Returns one bool per address.
pub fn probe_ssh(ctl: &str, ips: &[IpAddr], timeout: Duration) -> Result<Vec<bool>, LabError> {
    if ips.is_empty() {
        return Ok(Vec::new());
    }
    let ns = sys::open_netns(ctl)?;
    let threads = ips.len().clamp(1, 16);
    let chunk = ips.len().div_ceil(threads);
    let results: Vec<Result<Vec<bool>, LabError>> = std::thread::scope(|s| {
        let handles: Vec<_> = ips
            .chunks(chunk)
            .map(|part| {
                let ns = &ns;
                s.spawn(move || -> Result<Vec<bool>, LabError> {
                    sys::setns_net(ns).map_err(LabError::sys(format!(
                        "cannot enter network namespace {ctl}"
                    )))?;
                    Ok(part.iter().map(|ip| ssh_banner(*ip, timeout)).collect())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Ok(Vec::new())))
            .collect()
    });
    let mut out = Vec::with_capacity(ips.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}
