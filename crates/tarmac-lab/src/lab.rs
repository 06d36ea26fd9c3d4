//! The lab lifecycle: `up`, `open`, `down`, status, and access to hosts.

use std::fs;
use std::net::IpAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};
use tarmac_types::time::now_unix;

use serde::Serialize;
use tarmac_events::EventSink;
use tarmac_types::Role;

use crate::events::Progress;
use crate::host;
use crate::plan::{self, LabHost, Mode, Plan};
use crate::sshkey::KeyPair;
use crate::suite::{Suite, Suites};
use crate::{LabError, image, prereq, sys};

/// Where labs keep their state: `/var/lib/tarmac-lab/<name>/`.
pub const STATE_ROOT: &str = "/var/lib/tarmac-lab";
/// Where a torn-down lab's console logs are kept: `/var/log/tarmac-lab/<name>/`.
pub const LOG_ROOT: &str = "/var/log/tarmac-lab";
const PLAN_FILE: &str = "lab.json";
const PLAN_VERSION: u32 = 1;
const IP_DETECT: &str = include_str!("../assets/ip-detect");

/// What to bring up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSpec {
    /// Lab name (1-24 of a-z 0-9 -): names the namespaces `tm-<name>-…` and the lab dir.
    pub name: String,
    /// Number of master hosts (`master-1` …).
    pub masters: usize,
    /// Number of agent hosts (`agent-1` …).
    pub agents: usize,
    /// Number of public agent hosts (`public-agent-1` …).
    pub public_agents: usize,
    /// How the hosts run.
    pub mode: Mode,
    /// Debian packages the hosts' image gets on top of the default set (e.g. `python3` for
    /// Ansible). Empty: the default image. Another set builds (once) and caches another
    /// image next to the default one.
    pub extra_packages: Vec<String>,
}

impl LabSpec {
    /// A systemd-mode lab spec.
    pub fn new(
        name: impl Into<String>,
        masters: usize,
        agents: usize,
        public_agents: usize,
    ) -> LabSpec {
        LabSpec {
            name: name.into(),
            masters,
            agents,
            public_agents,
            mode: Mode::Systemd,
            extra_packages: Vec::new(),
        }
    }

    /// Total number of hosts.
    pub fn total(&self) -> usize {
        self.masters + self.agents + self.public_agents
    }
}

/// A running lab (or one being torn down): its plan plus convenient accessors.
#[derive(Debug, Clone)]
pub struct Lab {
    plan: Plan,
}

/// One host's live state, from [`Lab::status`].
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    /// Host name.
    pub name: String,
    /// Its lab address.
    pub ip: IpAddr,
    /// Its role.
    pub role: Role,
    /// The host's processes are running.
    pub running: bool,
    /// sshd answers on port 22.
    pub ssh: bool,
    /// systemd hosts: what `systemctl is-system-running` said when the boot ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_state: Option<String>,
    /// The Debian release it runs (unknown only for old labs on an oddly named image).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suite: Option<Suite>,
    /// `PRETTY_NAME` of its image's os-release, e.g. `Debian GNU/Linux 11 (bullseye)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
}

/// A lab's live state.
#[derive(Debug, Clone, Serialize)]
pub struct LabStatus {
    /// Lab name.
    pub name: String,
    /// How its hosts run.
    pub mode: Mode,
    /// Packages its image has on top of the default set.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_packages: Vec<String>,
    /// Lab directory.
    pub dir: PathBuf,
    /// Control network namespace.
    pub ctl_netns: String,
    /// Control namespace address (`ctl` on the hosts).
    pub ctl_ip: IpAddr,
    /// The control namespace exists.
    pub network: bool,
    /// Every host, in lab order.
    pub hosts: Vec<HostStatus>,
}

impl LabStatus {
    /// Hosts that run and answer SSH.
    pub fn up_count(&self) -> usize {
        self.hosts.iter().filter(|h| h.running && h.ssh).count()
    }
}

/// What `down` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DownReport {
    /// The lab existed (there was something to remove).
    pub existed: bool,
    /// Processes that were ended.
    pub processes_killed: usize,
    /// Network namespaces deleted.
    pub netns_deleted: usize,
    /// How long the teardown took.
    pub duration_ms: u64,
    /// Where the hosts' console logs were kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<PathBuf>,
}

fn lab_dir(name: &str) -> PathBuf {
    plan::lab_dir(Path::new(STATE_ROOT), name)
}

fn lock_path(name: &str) -> PathBuf {
    Path::new(STATE_ROOT)
        .join(".locks")
        .join(format!("{name}.lock"))
}

fn lock_lab(name: &str, wait: Duration) -> Result<sys::Lock, LabError> {
    let path = lock_path(name);
    sys::lock(&path, wait)?.ok_or(LabError::Busy {
        name: name.to_owned(),
        path,
    })
}

fn read_plan(name: &str) -> Result<Option<Plan>, LabError> {
    let path = lab_dir(name).join(PLAN_FILE);
    let Some(text) = sys::read_opt(&path) else {
        return Ok(None);
    };
    let mut plan: Plan = serde_json::from_str(&text).map_err(|source| LabError::State {
        name: name.to_owned(),
        path,
        source,
    })?;
    plan.fill_in_suites();
    Ok(Some(plan))
}

/// Names of the labs on this machine (those with a state file), sorted.
fn list_names() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(STATE_ROOT)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join(PLAN_FILE).is_file())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn all_plans() -> Vec<Plan> {
    list_names()
        .iter()
        .filter_map(|n| read_plan(n).ok().flatten())
        .collect()
}

/// Check the spec; returns the normalised extra packages.
fn validate(spec: &LabSpec) -> Result<Vec<String>, LabError> {
    plan::validate_name(&spec.name)?;
    let extra = image::normalize_extra_packages(&spec.extra_packages)?;
    let total = spec.total();
    if total == 0 {
        return Err(LabError::InvalidSpec {
            reason: "a lab needs at least one host".into(),
        });
    }
    if total > plan::MAX_HOSTS {
        return Err(LabError::InvalidSpec {
            reason: format!(
                "{total} hosts asked for; a lab holds at most {} (one bridge; run several labs for more)",
                plan::MAX_HOSTS
            ),
        });
    }
    Ok(extra)
}

/// How long `up` waits for the hosts: generous, grows with the number of hosts.
fn boot_timeout(spec: &LabSpec) -> Duration {
    if let Some(s) = std::env::var("TARMAC_LAB_BOOT_TIMEOUT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        return Duration::from_secs(s);
    }
    let per_host_ms = if spec.mode == Mode::Systemd {
        1500
    } else {
        300
    };
    Duration::from_secs(120) + Duration::from_millis(per_host_ms * spec.total() as u64)
}

/// Which suite each host of `spec` runs, in lab order.
fn host_suites(spec: &LabSpec, suites: &Suites, default: Suite) -> Vec<Suite> {
    let hosts = plan::plan_hosts(0, spec.masters, spec.agents, spec.public_agents);
    suites.assign(&hosts, default)
}

/// The distinct suites, in order of first use.
fn distinct(suites: &[Suite]) -> Vec<Suite> {
    let mut out: Vec<Suite> = Vec::new();
    for s in suites {
        if !out.contains(s) {
            out.push(*s);
        }
    }
    out
}

impl Lab {
    /// Bring up a lab: check/install prerequisites, build or reuse the root image, create
    /// the network, start every host and wait until all accept SSH (systemd hosts: until
    /// their boot has finished). On failure everything created is torn down again. Every
    /// host runs the default suite ([`Suite::machine_default`]).
    pub fn up(spec: &LabSpec, sink: &dyn EventSink) -> Result<Lab, LabError> {
        Self::up_with_suites(spec, &Suites::default(), sink)
    }

    /// [`Lab::up`] with hosts of several Debian releases: `suites` says which host runs
    /// which (hosts it does not name run the default suite). Each suite's image is built
    /// once and cached.
    pub fn up_with_suites(
        spec: &LabSpec,
        suites: &Suites,
        sink: &dyn EventSink,
    ) -> Result<Lab, LabError> {
        let t0 = Instant::now();
        let p = Progress::new(&spec.name, sink);
        sys::require_root()?;
        let extra = validate(spec)?;
        let assigned = host_suites(spec, suites, Suite::machine_default()?);
        let sources: Vec<image::Source> = distinct(&assigned)
            .into_iter()
            .map(image::Source::for_suite)
            .collect();
        let missing: Vec<&image::Source> = sources
            .iter()
            .filter(|src| {
                !image::image_path(src.suite, &extra)
                    .join("etc/tarmac-lab-image")
                    .is_file()
            })
            .collect();
        let keyring = missing.iter().find_map(|src| src.keyring());
        prereq::ensure_tools(spec.mode, !missing.is_empty(), keyring.as_deref(), &p)?;

        fs::create_dir_all(STATE_ROOT).map_err(LabError::io("cannot create", STATE_ROOT))?;
        let lock = lock_lab(&spec.name, Duration::from_secs(10))?;
        let result = Self::up_locked(spec, &extra, &assigned, &sources, &p, t0);
        // Nothing of the lab is left after a failure: drop its lock file too.
        if result.is_err() && !lab_dir(&spec.name).join(PLAN_FILE).exists() {
            lock.remove();
        }
        result
    }

    fn up_locked(
        spec: &LabSpec,
        extra: &[String],
        assigned: &[Suite],
        sources: &[image::Source],
        p: &Progress<'_>,
        t0: Instant,
    ) -> Result<Lab, LabError> {
        let dir = lab_dir(&spec.name);
        if dir.join(PLAN_FILE).exists() || sys::netns_exists(&plan::ctl_netns(&spec.name)) {
            return Err(LabError::AlreadyExists {
                name: spec.name.clone(),
                dir,
            });
        }
        if dir.exists() {
            // Half-created before the plan was saved (nothing else exists yet).
            fs::remove_dir_all(&dir).map_err(LabError::io("cannot remove stale", &dir))?;
        }
        // Other labs' images, and this lab's other suites', survive the pruning after a build.
        let mut in_use: Vec<PathBuf> = all_plans().iter().flat_map(Plan::all_images).collect();
        in_use.extend(sources.iter().map(|s| image::image_path(s.suite, extra)));
        let mut images = std::collections::BTreeMap::new();
        for src in sources {
            images.insert(src.suite, image::ensure(src, extra, &in_use, p)?);
        }

        let plan = {
            let _alloc = lock_lab(".alloc", Duration::from_secs(30))?;
            let used: Vec<u8> = all_plans().iter().map(|p| p.octet).collect();
            let octet =
                plan::pick_subnet(&spec.name, &used).ok_or_else(|| LabError::InvalidSpec {
                    reason: "every lab subnet 10.64-191.0.0/16 is in use".into(),
                })?;
            let mut hosts = plan::plan_hosts(octet, spec.masters, spec.agents, spec.public_agents);
            for (h, s) in hosts.iter_mut().zip(assigned) {
                h.suite = Some(*s);
            }
            let plan = Plan {
                version: PLAN_VERSION,
                name: spec.name.clone(),
                mode: spec.mode,
                octet,
                dir: dir.clone(),
                image: images[&assigned[0]].clone(),
                images,
                extra_packages: extra.to_vec(),
                hosts,
                created: now_unix(),
            };
            fs::create_dir_all(&dir).map_err(LabError::io("cannot create", &dir))?;
            let json = serde_json::to_string_pretty(&plan).expect("plan serialises");
            sys::write_atomic(&dir.join(PLAN_FILE), json.as_bytes(), 0o644)?;
            plan
        };
        p.say(format!(
            "{} {} hosts (masters {}, agents {}, public agents {}) on 10.{}.0.0/16, Debian {}",
            plan.hosts.len(),
            plan.mode,
            spec.masters,
            spec.agents,
            spec.public_agents,
            plan.octet,
            suite_summary(assigned)
        ));
        match bring_up(&plan, spec, p, t0) {
            Ok(()) => Ok(Lab { plan }),
            Err(e) => {
                p.say("up failed: tearing the lab down again".to_string());
                if let Err(td) = teardown(&plan.name, Some(&plan), p) {
                    p.say(format!("teardown after the failure also failed: {td}"));
                }
                Err(e)
            }
        }
    }

    /// Attach to an existing lab by name.
    pub fn open(name: &str) -> Result<Lab, LabError> {
        plan::validate_name(name)?;
        match read_plan(name)? {
            Some(plan) => Ok(Lab { plan }),
            None => Err(LabError::NotFound {
                name: name.to_owned(),
            }),
        }
    }

    /// Every lab on this machine.
    pub fn list() -> Vec<Lab> {
        all_plans().into_iter().map(|plan| Lab { plan }).collect()
    }

    /// Tear a lab down: kill all its processes, delete its namespaces and cgroups, remove
    /// its directory (console logs are kept in `/var/log/tarmac-lab/<name>/`). Works on
    /// half-created labs too, and is a no-op for names that do not exist.
    pub fn down(name: &str) -> Result<DownReport, LabError> {
        Self::down_with(name, &tarmac_events::NullSink)
    }

    /// [`Lab::down`] with progress events.
    pub fn down_with(name: &str, sink: &dyn EventSink) -> Result<DownReport, LabError> {
        sys::require_root()?;
        plan::validate_name(name)?;
        let p = Progress::new(name, sink);
        let lock = lock_lab(name, Duration::from_secs(60))?;
        let plan = read_plan(name).unwrap_or(None);
        let report = teardown(name, plan.as_ref(), &p)?;
        lock.remove();
        Ok(report)
    }

    pub(crate) fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The lab's name.
    pub fn name(&self) -> &str {
        &self.plan.name
    }

    /// How its hosts run.
    pub fn mode(&self) -> Mode {
        self.plan.mode
    }

    /// Packages its image has on top of the default set (normalised: sorted, no
    /// duplicates, none of the default packages).
    pub fn extra_packages(&self) -> &[String] {
        &self.plan.extra_packages
    }

    /// The root image its first host runs on (the only one unless the lab mixes suites).
    pub fn image(&self) -> &Path {
        &self.plan.image
    }

    /// The root image `host` runs on.
    pub fn image_of(&self, host: &LabHost) -> &Path {
        self.plan.image_of(host)
    }

    /// Every root image the lab's hosts run on.
    pub fn images(&self) -> Vec<PathBuf> {
        self.plan.all_images()
    }

    /// The hosts: masters, agents, public agents.
    pub fn hosts(&self) -> &[LabHost] {
        &self.plan.hosts
    }

    /// The hosts with one role.
    pub fn hosts_with_role(&self, role: Role) -> impl Iterator<Item = &LabHost> {
        self.plan.hosts.iter().filter(move |h| h.role == role)
    }

    /// Find a host by name or IP.
    pub fn host(&self, name_or_ip: &str) -> Result<&LabHost, LabError> {
        let ip = name_or_ip.parse::<IpAddr>().ok();
        self.plan
            .hosts
            .iter()
            .find(|h| h.name == name_or_ip || Some(h.ip) == ip)
            .ok_or_else(|| LabError::UnknownHost {
                lab: self.plan.name.clone(),
                host: name_or_ip.to_owned(),
            })
    }

    /// The lab directory (`id_ed25519`, `known_hosts`, `ssh_config`, `genconf/`, `hosts/`).
    pub fn dir(&self) -> &Path {
        &self.plan.dir
    }

    /// The lab's private SSH key (its public half is authorized for root and `tarmac`).
    pub fn key_path(&self) -> PathBuf {
        self.plan.key_path()
    }

    /// known_hosts with every host's key, by IP and by name.
    pub fn known_hosts_path(&self) -> PathBuf {
        self.plan.known_hosts_path()
    }

    /// ssh_config for `ssh -F` (host-key checking on).
    pub fn ssh_config_path(&self) -> PathBuf {
        self.plan.ssh_config_path()
    }

    /// `genconf/config.yaml` skeleton listing the hosts by role.
    pub fn config_yaml_path(&self) -> PathBuf {
        self.plan.dir.join("genconf/config.yaml")
    }

    /// Name of the control network namespace (where hosts are reachable).
    pub fn ctl_netns(&self) -> String {
        self.plan.ctl_netns()
    }

    /// The control namespace's address on the lab bridge (`ctl` in the hosts' /etc/hosts).
    pub fn ctl_ip(&self) -> IpAddr {
        IpAddr::V4(self.plan.ctl_ip())
    }

    /// Name of a host's network namespace.
    pub fn host_netns(&self, host: &LabHost) -> String {
        host.netns(&self.plan.name)
    }

    /// A `Command` for `program` that runs inside the control namespace.
    pub fn ctl_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        ctl_command(&self.plan.ctl_netns(), program)
    }

    /// Run `cmd` (a shell command line) on a host as root over SSH, host-key checking on.
    /// Returns the output whatever the exit status; errors only when ssh cannot be started.
    pub fn ssh(&self, host: &str, cmd: &str) -> Result<Output, LabError> {
        self.ssh_as("root", host, cmd)
    }

    /// Like [`Lab::ssh`], as another user (e.g. [`Lab::USER`], who has passwordless sudo).
    pub fn ssh_as(&self, user: &str, host: &str, cmd: &str) -> Result<Output, LabError> {
        let mut c = self.ssh_command(user, host)?;
        c.arg("--").arg(cmd);
        sys::run_unchecked(&mut c, None)
    }

    /// An `ssh` `Command` (inside the control namespace, lab ssh_config) to `host` as `user`;
    /// append the remote command yourself.
    pub fn ssh_command(&self, user: &str, host: &str) -> Result<Command, LabError> {
        let h = self.host(host)?;
        let mut c = self.ctl_command("ssh");
        c.arg("-F")
            .arg(self.ssh_config_path())
            .arg("-l")
            .arg(user)
            .arg(&h.name);
        Ok(c)
    }

    /// The non-root user on every host (same key as root, passwordless sudo).
    pub const USER: &'static str = image::LAB_USER;

    /// Cut (`up = false`) or restore a host's network link, as if its cable were pulled.
    pub fn host_link(&self, host: &str, up: bool) -> Result<(), LabError> {
        let h = self.host(host)?;
        let mut c = Command::new("ip");
        c.args([
            "-n",
            &self.ctl_netns(),
            "link",
            "set",
            &h.ctl_link(),
            if up { "up" } else { "down" },
        ]);
        sys::run(&mut c, None).map(|_| ())
    }

    /// Pull the host's power: SIGKILL every process of the host (its cgroup subtree), with
    /// no shutdown. Its disk (the overlay's upper directory) stays as it was.
    pub fn power_off(&self, host: &str) -> Result<(), LabError> {
        sys::require_root()?;
        let h = self.host(host)?;
        let dirs: Vec<PathBuf> = sys::cgroup_roots()
            .iter()
            .map(|r| sys::lab_cgroup(r, &self.plan.name).join(&h.name))
            .collect();
        sys::kill_cgroups(&dirs, Duration::from_secs(20));
        if host::alive(&self.plan, h) {
            return Err(LabError::HostPower {
                host: h.name.clone(),
                reason: "its processes are still there 20 s after SIGKILL".into(),
            });
        }
        // A fresh cgroup for the next boot (the container's own sub-cgroups go too).
        for d in &dirs {
            sys::remove_cgroup_tree(d);
        }
        Ok(())
    }

    /// Boot a host that is powered off (see [`Lab::power_off`]) and wait until it has booted
    /// and accepts SSH, up to `timeout`.
    pub fn boot(&self, host: &str, timeout: Duration) -> Result<(), LabError> {
        sys::require_root()?;
        let h = self.host(host)?;
        if host::alive(&self.plan, h) {
            return Err(LabError::HostPower {
                host: h.name.clone(),
                reason: "it is running; power it off first".into(),
            });
        }
        let state = host::HostPaths::new(&self.plan, h)
            .upper
            .join(host::BOOT_STATE);
        let _ = fs::remove_file(&state);
        let nspawn =
            which("systemd-nspawn").unwrap_or_else(|| PathBuf::from("/usr/bin/systemd-nspawn"));
        host::launch(&self.plan, h, &nspawn)?;
        let t0 = Instant::now();
        loop {
            let booted = self.plan.mode == Mode::Plain || host::boot_state(&self.plan, h).is_some();
            if booted
                && host::probe_ssh(&self.plan.ctl_netns(), &[h.ip], Duration::from_millis(300))?
                    .first()
                    .copied()
                    .unwrap_or(false)
            {
                return Ok(());
            }
            if !host::alive(&self.plan, h) || t0.elapsed() > timeout {
                return Err(LabError::HostPower {
                    host: h.name.clone(),
                    reason: format!(
                        "it did not come up within {} s; console:\n{}",
                        timeout.as_secs(),
                        host::console_tail(&self.plan, h, 20)
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Move the calling thread into the control namespace (threads it creates afterwards
    /// inherit it), so in-process code can open sockets to the hosts.
    pub fn enter_ctl_netns(&self) -> Result<(), LabError> {
        enter_ctl_netns(&self.plan.name)
    }

    /// Live state: which hosts run and answer SSH.
    pub fn status(&self) -> Result<LabStatus, LabError> {
        let network = sys::netns_exists(&self.ctl_netns());
        let running: Vec<bool> = self
            .plan
            .hosts
            .iter()
            .map(|h| host::alive(&self.plan, h))
            .collect();
        let ssh = if network {
            let ips: Vec<IpAddr> = self.plan.hosts.iter().map(|h| h.ip).collect();
            host::probe_ssh(&self.ctl_netns(), &ips, Duration::from_millis(500))?
        } else {
            vec![false; self.plan.hosts.len()]
        };
        let os_names: std::collections::BTreeMap<PathBuf, Option<String>> = self
            .plan
            .all_images()
            .into_iter()
            .map(|img| {
                let name = image::pretty_name(&img);
                (img, name)
            })
            .collect();
        let hosts = self
            .plan
            .hosts
            .iter()
            .zip(running)
            .zip(ssh)
            .map(|((h, running), ssh)| HostStatus {
                name: h.name.clone(),
                ip: h.ip,
                role: h.role,
                running,
                ssh,
                boot_state: (self.plan.mode == Mode::Systemd)
                    .then(|| host::boot_state(&self.plan, h))
                    .flatten(),
                suite: h.suite,
                os: os_names.get(self.plan.image_of(h)).cloned().flatten(),
            })
            .collect();
        Ok(LabStatus {
            name: self.plan.name.clone(),
            mode: self.plan.mode,
            extra_packages: self.plan.extra_packages.clone(),
            dir: self.plan.dir.clone(),
            ctl_netns: self.ctl_netns(),
            ctl_ip: self.ctl_ip(),
            network,
            hosts,
        })
    }
}

/// `bookworm` for a one-suite lab; `bullseye ×2, trixie ×1` for a mixed one.
fn suite_summary(assigned: &[Suite]) -> String {
    let kinds = distinct(assigned);
    if kinds.len() == 1 {
        return kinds[0].to_string();
    }
    kinds
        .iter()
        .map(|k| format!("{k} ×{}", assigned.iter().filter(|s| *s == k).count()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A `Command` for `program` that runs inside network namespace `netns`.
pub fn ctl_command(netns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    let path = Path::new(sys::NETNS_DIR).join(netns);
    // SAFETY: open + setns are plain system calls; the CString is prepared before the fork.
    let cpath = sys::cstr(path.as_os_str()).unwrap_or_default();
    unsafe {
        c.pre_exec(move || {
            let fd = libc::open(cpath.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let rc = libc::setns(fd, libc::CLONE_NEWNET);
            libc::close(fd);
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    c
}

/// Move the calling thread into lab `name`'s control namespace (`/run/netns/tm-<name>-ctl`).
/// Threads created afterwards by this thread start there too.
pub fn enter_ctl_netns(name: &str) -> Result<(), LabError> {
    let ns_name = plan::ctl_netns(name);
    let ns = sys::open_netns(&ns_name)?;
    sys::setns_net(&ns).map_err(LabError::sys(format!(
        "cannot enter network namespace {ns_name}"
    )))
}

/// Tears a lab down when dropped (also when a test panics).
#[derive(Debug)]
pub struct LabGuard {
    lab: Option<Lab>,
}

impl LabGuard {
    /// Guard `lab`.
    pub fn new(lab: Lab) -> LabGuard {
        LabGuard { lab: Some(lab) }
    }

    /// Tear down now and report how it went.
    pub fn down(mut self) -> Result<DownReport, LabError> {
        match self.lab.take() {
            Some(lab) => Lab::down(lab.name()),
            None => Ok(DownReport::default()),
        }
    }
}

impl std::ops::Deref for LabGuard {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        self.lab.as_ref().expect("lab is present until down")
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Some(lab) = self.lab.take()
            && let Err(e) = Lab::down(lab.name())
        {
            tracing::error!(lab = lab.name(), error = %e, "lab teardown failed");
        }
    }
}

// ---------------------------------------------------------------------------------------
// up

fn bring_up(plan: &Plan, spec: &LabSpec, p: &Progress<'_>, t0: Instant) -> Result<(), LabError> {
    let dir = &plan.dir;
    for d in ["hosts", "cm", "genconf"] {
        let d = dir.join(d);
        fs::create_dir_all(&d).map_err(LabError::io("cannot create", &d))?;
    }
    let lab_key = KeyPair::generate(&format!("tarmac-lab@{}", plan.name));
    sys::write_atomic(&plan.key_path(), lab_key.private.as_bytes(), 0o600)?;
    sys::write_atomic(
        &dir.join("id_ed25519.pub"),
        format!("{}\n", lab_key.public).as_bytes(),
        0o644,
    )?;

    // The kernel's neighbour (ARP) table is one for all namespaces: a lab's control
    // namespace holds an entry per host and each host one per peer, so past a few hundred
    // hosts the default thresholds (512/1024) make entries thrash and hosts unreachable.
    let all_hosts: usize = all_plans()
        .iter()
        .filter(|o| o.name != plan.name)
        .map(|o| o.hosts.len())
        .sum::<usize>()
        + plan.hosts.len();
    prereq::ensure_neighbours(all_hosts, p)?;
    if plan.mode == Mode::Systemd {
        let others: usize = all_plans()
            .iter()
            .filter(|o| o.name != plan.name && o.mode == Mode::Systemd)
            .map(|o| o.hosts.len())
            .sum();
        prereq::ensure_inotify(others + plan.hosts.len(), p)?;
    }

    // Per-host files (keys, identity) in each upper layer.
    let etc_hosts = plan::render_etc_hosts(plan);
    let keys = parallel(&plan.hosts, 4, |h| {
        host::prepare(plan, h, &lab_key.public, &etc_hosts)
    })?;
    let pairs: Vec<(&LabHost, &str)> = plan
        .hosts
        .iter()
        .zip(keys.iter().map(KeyPair::public_key))
        .collect();
    sys::write_atomic(
        &plan.known_hosts_path(),
        plan::render_known_hosts(&pairs).as_bytes(),
        0o644,
    )?;
    sys::write_atomic(
        &plan.ssh_config_path(),
        plan::render_ssh_config(plan).as_bytes(),
        0o644,
    )?;
    sys::write_atomic(
        &dir.join("genconf/config.yaml"),
        plan::render_config_yaml(plan).as_bytes(),
        0o644,
    )?;
    sys::write_atomic(&dir.join("genconf/ip-detect"), IP_DETECT.as_bytes(), 0o755)?;

    // Network: namespaces, bridge + veths, host addresses.
    let t_net = Instant::now();
    sys::run(
        Command::new("ip").args(["-batch", "-"]),
        Some(&plan::render_netns_add(plan)),
    )?;
    sys::run(
        Command::new("ip").args(["-n", &plan.ctl_netns(), "-batch", "-"]),
        Some(&plan::render_ctl_batch(plan)),
    )?;
    parallel(&plan.hosts, 8, |h| {
        sys::run(
            Command::new("ip").args(["-n", &h.netns(&plan.name), "-batch", "-"]),
            Some(&plan::render_host_batch(h)),
        )
        .map(|_| ())
    })?;
    p.say(format!(
        "network ready in {:.1} s ({} namespaces, bridge in {})",
        t_net.elapsed().as_secs_f64(),
        plan.hosts.len() + 1,
        plan.ctl_netns()
    ));

    // Hosts.
    let nspawn =
        which("systemd-nspawn").unwrap_or_else(|| PathBuf::from("/usr/bin/systemd-nspawn"));
    if plan.mode == Mode::Systemd {
        // nspawn runs with a private tmpfs over it; the mount point itself must exist.
        fs::create_dir_all("/run/systemd")
            .map_err(LabError::io("cannot create", "/run/systemd"))?;
    }
    let t_start = Instant::now();
    for h in &plan.hosts {
        host::launch(plan, h, &nspawn)?;
    }
    p.say(format!(
        "started {} hosts in {:.1} s; waiting for them to boot",
        plan.hosts.len(),
        t_start.elapsed().as_secs_f64()
    ));

    let states = wait_ready(plan, boot_timeout(spec), p)?;
    verify_ssh(plan)?;

    let total = plan.hosts.len();
    let summary = if plan.mode == Mode::Systemd {
        let degraded: Vec<String> = plan
            .hosts
            .iter()
            .zip(&states)
            .filter(|(_, s)| !s.starts_with("running"))
            .map(|(h, s)| format!("{} ({})", h.name, s.trim()))
            .collect();
        if degraded.is_empty() {
            format!("all {total} hosts running (systemctl is-system-running) and accepting ssh")
        } else {
            format!(
                "{} hosts running, {} degraded with sshd up: {}",
                total - degraded.len(),
                degraded.len(),
                degraded.join(", ")
            )
        }
    } else {
        format!("all {total} hosts accepting ssh")
    };
    p.say(format!(
        "{summary}; up in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Run `f` over `items` on `threads` threads, keeping order; the first error wins.
pub(crate) fn parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R, LabError> + Sync,
) -> Result<Vec<R>, LabError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let chunk = items.len().div_ceil(threads.max(1));
    let parts: Vec<Result<Vec<R>, LabError>> = std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(f).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker thread panicked"))
            .collect()
    });
    let mut out = Vec::with_capacity(items.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Wait until every host answers SSH (systemd hosts: and has reported the end of its
/// boot). Fails early when a host's processes are gone. Returns each host's boot state.
fn wait_ready(plan: &Plan, timeout: Duration, p: &Progress<'_>) -> Result<Vec<String>, LabError> {
    let t0 = Instant::now();
    let n = plan.hosts.len();
    let mut state: Vec<Option<String>> = vec![None; n];
    let mut ssh_ok = vec![false; n];
    let mut dead: Vec<usize> = Vec::new();
    let mut last_report = Instant::now();
    loop {
        // Booted (systemd) or started (plain) hosts whose sshd has not answered yet.
        let mut to_probe = Vec::new();
        for (i, h) in plan.hosts.iter().enumerate() {
            if plan.mode == Mode::Systemd && state[i].is_none() {
                state[i] = host::boot_state(plan, h);
            }
            let booted = plan.mode == Mode::Plain || state[i].is_some();
            if booted && !ssh_ok[i] {
                to_probe.push(i);
            }
        }
        if !to_probe.is_empty() {
            let ips: Vec<IpAddr> = to_probe.iter().map(|&i| plan.hosts[i].ip).collect();
            for (k, ok) in host::probe_ssh(&plan.ctl_netns(), &ips, Duration::from_millis(300))?
                .into_iter()
                .enumerate()
            {
                ssh_ok[to_probe[k]] = ok;
            }
        }
        let ready = (0..n)
            .filter(|&i| ssh_ok[i] && (plan.mode == Mode::Plain || state[i].is_some()))
            .count();
        // A state other than running/degraded (e.g. "maintenance") is a failed boot.
        let bad_state: Vec<usize> = (0..n)
            .filter(|&i| {
                state[i]
                    .as_deref()
                    .is_some_and(|s| !(s.starts_with("running") || s.starts_with("degraded")))
            })
            .collect();
        if ready == n && bad_state.is_empty() {
            return Ok(state.into_iter().map(Option::unwrap_or_default).collect());
        }
        for (i, h) in plan.hosts.iter().enumerate() {
            let done = ssh_ok[i] && (plan.mode == Mode::Plain || state[i].is_some());
            if !done && !dead.contains(&i) && !host::alive(plan, h) {
                dead.push(i);
            }
        }
        let timed_out = t0.elapsed() > timeout;
        if !dead.is_empty() || !bad_state.is_empty() || timed_out {
            let mut failed: Vec<usize> = dead.clone();
            failed.extend(&bad_state);
            if timed_out {
                failed.extend(
                    (0..n).filter(|&i| {
                        !(ssh_ok[i] && (plan.mode == Mode::Plain || state[i].is_some()))
                    }),
                );
            }
            failed.sort_unstable();
            failed.dedup();
            let details: Vec<String> = failed
                .iter()
                .take(5)
                .map(|&i| {
                    let h = &plan.hosts[i];
                    let why = if dead.contains(&i) {
                        "its processes exited".to_owned()
                    } else if let Some(s) = &state[i] {
                        format!("boot ended `{s}`")
                    } else {
                        format!("not up after {} s", timeout.as_secs())
                    };
                    let tail = host::console_tail(plan, h, 6)
                        .lines()
                        .map(|l| format!("    | {l}"))
                        .collect::<Vec<_>>()
                        .join("\n");
                    format!(
                        "  {} ({}): {why}{}",
                        h.name,
                        h.ip,
                        if tail.is_empty() {
                            String::new()
                        } else {
                            format!("\n{tail}")
                        }
                    )
                })
                .collect();
            let more = if failed.len() > 5 {
                format!("\n  … and {} more", failed.len() - 5)
            } else {
                String::new()
            };
            return Err(LabError::Boot {
                lab: plan.name.clone(),
                failed: failed.len(),
                total: n,
                details: format!("{}{more}", details.join("\n")),
                logs: Path::new(LOG_ROOT).join(&plan.name),
            });
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            p.say(format!(
                "{ready}/{n} hosts up after {:.0} s",
                t0.elapsed().as_secs_f64()
            ));
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Log in over SSH (lab ssh_config, host-key checking on) to the first host of each role,
/// as root and as the lab user: proves keys, known_hosts and sudo are right.
fn verify_ssh(plan: &Plan) -> Result<(), LabError> {
    let lab = Lab { plan: plan.clone() };
    let mut sample: Vec<&LabHost> = Vec::new();
    for role in Role::ALL {
        if let Some(h) = plan.hosts.iter().find(|h| h.role == role) {
            sample.push(h);
        }
    }
    let results = parallel(&sample, sample.len(), |h: &&LabHost| {
        let root = lab.ssh(&h.name, "hostname")?;
        let user = lab.ssh_as(Lab::USER, &h.name, "sudo -n true && echo ok")?;
        Ok(((*h).clone(), root, user))
    })?;
    for (h, root, user) in results {
        let name = String::from_utf8_lossy(&root.stdout).trim().to_owned();
        if !root.status.success() || name != h.name {
            return Err(LabError::Command {
                command: format!("ssh root@{} hostname", h.name),
                status: root.status.to_string(),
                stderr: format!(
                    "{}{}",
                    String::from_utf8_lossy(&root.stderr),
                    if name.is_empty() {
                        String::new()
                    } else {
                        format!(" (said `{name}`)")
                    }
                ),
            });
        }
        if !user.status.success() || String::from_utf8_lossy(&user.stdout).trim() != "ok" {
            return Err(LabError::Command {
                command: format!("ssh {}@{} sudo -n true", Lab::USER, h.name),
                status: user.status.to_string(),
                stderr: String::from_utf8_lossy(&user.stderr).into_owned(),
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// down

fn teardown(name: &str, plan: Option<&Plan>, p: &Progress<'_>) -> Result<DownReport, LabError> {
    let t0 = Instant::now();
    let dir = lab_dir(name);
    let mut netns: Vec<String> = plan.map(Plan::netns_names).unwrap_or_default();
    let ctl = plan::ctl_netns(name);
    if !netns.contains(&ctl) {
        netns.insert(0, ctl);
    }
    let cgroups: Vec<PathBuf> = sys::cgroup_roots()
        .iter()
        .map(|r| sys::lab_cgroup(r, name))
        .filter(|d| d.exists())
        .collect();
    let existing_netns: Vec<String> = netns
        .iter()
        .filter(|n| sys::netns_exists(n))
        .cloned()
        .collect();
    let existed = dir.exists() || !cgroups.is_empty() || !existing_netns.is_empty();
    if !existed {
        return Ok(DownReport {
            existed: false,
            duration_ms: t0.elapsed().as_millis() as u64,
            ..DownReport::default()
        });
    }
    p.say(format!(
        "tearing down ({} namespaces)",
        existing_netns.len()
    ));

    // 1. Every process of every host: the cgroup subtree holds launchers and all they started.
    let mut killed = sys::kill_cgroups(&cgroups, Duration::from_secs(20));
    // 2. Anything else living in the lab's namespaces (ssh ControlMasters, `lab exec` jobs…).
    let ns_ids: Vec<(u64, u64)> = existing_netns
        .iter()
        .filter_map(|n| sys::ns_id(&Path::new(sys::NETNS_DIR).join(n)))
        .collect();
    for _ in 0..100 {
        let pids = sys::pids_in_netns(&ns_ids);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            if sys::kill(pid, libc::SIGKILL) {
                killed += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // 3. Namespaces.
    if !existing_netns.is_empty() {
        let _ = sys::run_unchecked(
            Command::new("ip").args(["-force", "-batch", "-"]),
            Some(&plan::render_netns_del(&existing_netns)),
        );
    }
    // 4. Cgroups.
    let mut leftovers: Vec<String> = Vec::new();
    for cg in &cgroups {
        leftovers.extend(
            sys::remove_cgroup_tree(cg)
                .iter()
                .map(|d| format!("cgroup {}", d.display())),
        );
        if let Some(parent) = cg.parent() {
            let _ = fs::remove_dir(parent); // `tarmac-lab/` when no other lab uses it
        }
    }
    // 5. Mounts (only if something mounted inside the lab dir in our namespace).
    for m in sys::mounts_under(&dir) {
        if let Err(e) = sys::umount_lazy(&m) {
            leftovers.push(format!("mount {} ({e})", m.display()));
        }
    }
    // 6. Keep the console logs, remove the lab dir.
    let logs = keep_logs(name, &dir);
    if dir.exists()
        && let Err(e) = remove_lab_dir(&dir)
    {
        leftovers.push(format!("directory {} ({e})", dir.display()));
    }
    leftovers.extend(
        netns
            .iter()
            .filter(|n| sys::netns_exists(n))
            .map(|n| format!("netns {n}")),
    );
    let report = DownReport {
        existed: true,
        processes_killed: killed,
        netns_deleted: existing_netns.len(),
        duration_ms: t0.elapsed().as_millis() as u64,
        logs,
    };
    if !leftovers.is_empty() {
        return Err(LabError::Leftovers {
            name: name.to_owned(),
            leftovers: leftovers.join(", "),
        });
    }
    p.say(format!(
        "down in {:.1} s: {} processes ended, {} namespaces deleted",
        t0.elapsed().as_secs_f64(),
        report.processes_killed,
        report.netns_deleted
    ));
    Ok(report)
}

/// Remove the lab dir; the host dirs in parallel (many small files per host).
fn remove_lab_dir(dir: &Path) -> std::io::Result<()> {
    let hosts: Vec<PathBuf> = fs::read_dir(dir.join("hosts"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    let _ = parallel(&hosts, 4, |h| {
        let _ = fs::remove_dir_all(h);
        Ok(())
    });
    fs::remove_dir_all(dir)
}

/// Keep the console logs of the `keep - 1` most recently torn-down labs (making room for one more).
fn prune_logs(keep: usize) {
    let Ok(rd) = fs::read_dir(LOG_ROOT) else {
        return;
    };
    let mut dirs: Vec<(SystemTime, PathBuf)> = rd
        .flatten()
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    for (_, d) in dirs.iter().skip(keep.saturating_sub(1)) {
        let _ = fs::remove_dir_all(d);
    }
}

fn keep_logs(name: &str, dir: &Path) -> Option<PathBuf> {
    let hosts = dir.join("hosts");
    let rd = fs::read_dir(&hosts).ok()?;
    prune_logs(30);
    let dest = Path::new(LOG_ROOT).join(name);
    let _ = fs::remove_dir_all(&dest);
    fs::create_dir_all(&dest).ok()?;
    for e in rd.flatten() {
        let console = e.path().join("console.log");
        if console.is_file() {
            let to = dest.join(format!("{}.log", e.file_name().to_string_lossy()));
            if fs::rename(&console, &to).is_err() {
                let _ = fs::copy(&console, &to);
            }
        }
    }
    Some(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_are_summarised_and_assigned_in_lab_order() {
        let spec = LabSpec::new("x", 2, 1, 1);
        let s: Suites = "bullseye,trixie".parse().unwrap();
        let assigned = host_suites(&spec, &s, Suite::Bookworm);
        assert_eq!(
            assigned,
            [
                Suite::Bullseye,
                Suite::Trixie,
                Suite::Bullseye,
                Suite::Trixie
            ]
        );
        assert_eq!(distinct(&assigned), [Suite::Bullseye, Suite::Trixie]);
        assert_eq!(suite_summary(&assigned), "bullseye ×2, trixie ×2");
        let one = host_suites(&spec, &Suites::default(), Suite::Bookworm);
        assert_eq!(suite_summary(&one), "bookworm");
    }
}
