//! Lab integration tests: real hosts on this machine. They need root; each brings up its
//! own lab with a unique name and tears it down through a guard, even on failure.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tarmac_events::VecSink;
use tarmac_lab::{Lab, LabError, LabGuard, LabSpec, Mode, Role, Suite, Suites};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the lab tests need root (they create namespaces, mounts and cgroups)"
    );
}

/// A lab name unique to this test run.
fn unique(tag: &str) -> String {
    format!("t{tag}{}", std::process::id() % 100_000)
}

fn up(name: &str, masters: usize, agents: usize, public_agents: usize, mode: Mode) -> LabGuard {
    require_root();
    let spec = LabSpec {
        name: name.into(),
        masters,
        agents,
        public_agents,
        mode,
        extra_packages: Vec::new(),
    };
    let sink = VecSink::new();
    match Lab::up(&spec, &sink) {
        Ok(lab) => LabGuard::new(lab),
        Err(e) => panic!("lab up failed: {e}\nevents: {:#?}", sink.events()),
    }
}

/// Run `cmd` on `host`; (exit code, trimmed stdout).
fn sh(lab: &Lab, host: &str, cmd: &str) -> (i32, String) {
    let out = lab.ssh(host, cmd).unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

/// `cmd` must succeed on `host`; returns its stdout.
fn ok(lab: &Lab, host: &str, cmd: &str) -> String {
    let out = lab.ssh(host, cmd).unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` on {host}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    [
        "/sys/fs/cgroup/tarmac-lab",
        "/sys/fs/cgroup/systemd/tarmac-lab",
        "/sys/fs/cgroup/unified/tarmac-lab",
    ]
    .iter()
    .map(|d| Path::new(d).join(name))
    .collect()
}

fn pids_under(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    if let Ok(s) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(s.lines().filter_map(|l| l.parse::<i32>().ok()));
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                pids.extend(pids_under(&e.path()));
            }
        }
    }
    pids
}

/// The lab's processes (launchers and everything in its hosts).
fn lab_pids(name: &str) -> Vec<i32> {
    cgroup_dirs(name)
        .iter()
        .flat_map(|d| pids_under(d))
        .collect()
}

fn netns_of(name: &str) -> Vec<String> {
    let prefix = format!("tm-{name}-");
    std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Nothing of lab `name` is left: namespaces, cgroups, mounts, directory, processes.
fn assert_clean(name: &str, dir: &Path, old_pids: &[i32]) {
    assert_eq!(
        netns_of(name),
        Vec::<String>::new(),
        "network namespaces left"
    );
    for d in cgroup_dirs(name) {
        assert!(!d.exists(), "cgroup {} left", d.display());
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir_s = dir.to_string_lossy();
    assert!(
        !mounts
            .lines()
            .any(|l| l.contains(&*dir_s) || l.contains(&format!("tm-{name}-"))),
        "mounts left:\n{mounts}"
    );
    assert!(!dir.exists(), "lab dir {} left", dir.display());
    for pid in old_pids {
        // Gone, or a zombie waiting for its (unrelated) parent to reap it.
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            let state = stat
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next().unwrap_or('?'))
                .unwrap_or('?');
            assert_eq!(state, 'Z', "process {pid} of the lab still runs: {stat}");
        }
    }
}

fn tcp_from_ctl(lab_name: &str, ip: IpAddr) -> bool {
    let name = lab_name.to_owned();
    std::thread::spawn(move || {
        tarmac_lab::enter_ctl_netns(&name).unwrap();
        TcpStream::connect_timeout(&SocketAddr::new(ip, 22), Duration::from_secs(1)).is_ok()
    })
    .join()
    .unwrap()
}

#[test]
fn three_systemd_hosts_are_isolated_real_hosts() {
    let name = unique("iso");
    let lab = up(&name, 1, 1, 1, Mode::Systemd);
    let names: Vec<String> = lab.hosts().iter().map(|h| h.name.clone()).collect();
    assert_eq!(names, ["master-1", "agent-1", "public-agent-1"]);
    assert_eq!(
        lab.hosts().iter().map(|h| h.role).collect::<Vec<_>>(),
        [Role::Master, Role::Agent, Role::AgentPublic]
    );

    // SSH to every host, by name and by IP, with host-key checking on; real systemd booted.
    let mut machine_ids = Vec::new();
    for h in lab.hosts() {
        assert_eq!(ok(&lab, &h.name, "hostname"), h.name);
        assert_eq!(ok(&lab, &h.ip.to_string(), "hostname"), h.name);
        assert_eq!(ok(&lab, &h.name, "systemctl is-system-running"), "running");
        assert_eq!(ok(&lab, &h.name, "systemd-detect-virt"), "systemd-nspawn");
        assert_eq!(
            ok(
                &lab,
                &h.name,
                &format!("ip -4 -o addr show dev host0 | grep -c ' {}/16 '", h.ip)
            ),
            "1"
        );
        machine_ids.push(ok(&lab, &h.name, "cat /etc/machine-id"));
        // The non-root user has the same key and passwordless sudo.
        let out = lab
            .ssh_as(Lab::USER, &h.name, "id -un; sudo -n id -u")
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "tarmac\n0\n");
    }
    machine_ids.sort();
    machine_ids.dedup();
    assert_eq!(machine_ids.len(), 3, "every host has its own machine-id");

    // Host-key checking is really on: without the lab's known_hosts, ssh refuses.
    let out = lab
        .ctl_command("ssh")
        .arg("-F")
        .arg(lab.ssh_config_path())
        .args([
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ControlMaster=no",
            "-o",
            "ControlPath=none",
            "master-1",
            "true",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Host key verification failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A file under /opt/tarmac on one host is invisible on the others and on the machine.
    let marker = format!("/opt/tarmac/lab-test-{name}");
    ok(
        &lab,
        "master-1",
        &format!("mkdir -p /opt/tarmac && echo A > {marker}"),
    );
    assert_eq!(ok(&lab, "master-1", &format!("cat {marker}")), "A");
    for other in ["agent-1", "public-agent-1"] {
        assert_eq!(
            sh(&lab, other, &format!("test -e {marker}")).0,
            1,
            "{marker} leaked to {other}"
        );
    }
    assert!(
        !Path::new(&marker).exists(),
        "{marker} leaked to the machine"
    );

    // A unit started with systemctl on one host runs there only.
    ok(
        &lab,
        "agent-1",
        "systemd-run --unit=tarmac-lab-probe sleep 300",
    );
    assert_eq!(
        ok(&lab, "agent-1", "systemctl is-active tarmac-lab-probe"),
        "active"
    );
    for other in ["master-1", "public-agent-1"] {
        let (code, state) = sh(&lab, other, "systemctl is-active tarmac-lab-probe");
        assert_ne!(code, 0);
        assert_eq!(state, "inactive", "unit state on {other}");
    }
    assert_eq!(
        sh(&lab, "master-1", "pgrep -x sleep").0,
        1,
        "agent-1's sleep is visible on master-1"
    );

    // The lab dir: key, known_hosts, ssh_config, genconf skeleton, ip-detect.
    let dir = lab.dir().to_path_buf();
    let known_hosts = std::fs::read_to_string(lab.known_hosts_path()).unwrap();
    for h in lab.hosts() {
        let served = ok(
            &lab,
            &h.name,
            "cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub",
        );
        assert!(
            known_hosts.contains(&format!("{},{} {served}\n", h.ip, h.name)),
            "{known_hosts}"
        );
    }
    let config = std::fs::read_to_string(lab.config_yaml_path()).unwrap();
    let ip = |n: usize| lab.hosts()[n].ip;
    assert!(
        config.contains(&format!(
            "master_list:\n- {}\nagent_list:\n- {}\npublic_agent_list:\n- {}\n",
            ip(0),
            ip(1),
            ip(2)
        )),
        "{config}"
    );
    assert!(config.contains(&format!("ssh_key_path: {}\n", lab.key_path().display())));
    assert!(config.contains(&format!("bootstrap_url: http://{}:8080\n", lab.ctl_ip())));
    let out = lab
        .ssh_command("root", "agent-1")
        .unwrap()
        .args(["--", "bash", "-s"])
        .stdin(std::fs::File::open(dir.join("genconf/ip-detect")).unwrap())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        ip(1).to_string()
    );
    assert_eq!(
        ok(&lab, "agent-1", "getent hosts ctl | cut -d' ' -f1"),
        lab.ctl_ip().to_string()
    );

    // Attach by name; status sees every host up; the name is taken.
    let again = Lab::open(&name).unwrap();
    assert_eq!(again.hosts(), lab.hosts());
    assert_eq!(again.status().unwrap().up_count(), 3);
    let dup = Lab::up(
        &LabSpec::new(name.clone(), 1, 0, 0),
        &tarmac_events::NullSink,
    );
    assert!(
        matches!(dup, Err(LabError::AlreadyExists { .. })),
        "{dup:?}"
    );

    // Pull a host's cable and put it back.
    assert!(tcp_from_ctl(&name, ip(2)));
    lab.host_link("public-agent-1", false).unwrap();
    assert!(!tcp_from_ctl(&name, ip(2)));
    lab.host_link("public-agent-1", true).unwrap();
    let t0 = Instant::now();
    while !tcp_from_ctl(&name, ip(2)) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "public-agent-1 unreachable after link up"
        );
    }

    // Down leaves nothing behind.
    let pids = lab_pids(&name);
    assert!(
        pids.len() > 10,
        "expected the hosts' processes in the lab cgroups, got {pids:?}"
    );
    let report = lab.down().unwrap();
    assert!(report.existed);
    assert_eq!(report.netns_deleted, 4);
    assert_clean(&name, &dir, &pids);
    // A second down is a no-op.
    assert!(!Lab::down(&name).unwrap().existed);
}

/// One lab, three Debian releases: each host boots its own suite's systemd.
#[test]
fn mixed_suites_boot_real_systemd_hosts() {
    require_root();
    let name = unique("mix");
    let spec = LabSpec::new(name.clone(), 1, 1, 1);
    let suites: Suites = "bullseye,bookworm,trixie".parse().unwrap();
    let sink = VecSink::new();
    let lab = match Lab::up_with_suites(&spec, &suites, &sink) {
        Ok(lab) => LabGuard::new(lab),
        Err(e) => panic!("lab up failed: {e}\nevents: {:#?}", sink.events()),
    };
    let expected = [
        (
            "master-1",
            Suite::Bullseye,
            "11",
            "Debian GNU/Linux 11 (bullseye)",
        ),
        (
            "agent-1",
            Suite::Bookworm,
            "12",
            "Debian GNU/Linux 12 (bookworm)",
        ),
        (
            "public-agent-1",
            Suite::Trixie,
            "13",
            "Debian GNU/Linux 13 (trixie)",
        ),
    ];
    // Every host over SSH with host-key checking on: systemd booted, its own release.
    for (host, suite, version, pretty) in expected {
        let state = ok(&lab, host, "systemctl is-system-running");
        assert_eq!(
            state,
            "running",
            "{host} ({suite}): failed units: {}",
            sh(&lab, host, "systemctl --failed --no-legend --plain").1
        );
        assert_eq!(ok(&lab, host, "systemd-detect-virt"), "systemd-nspawn");
        assert_eq!(
            ok(
                &lab,
                host,
                ". /etc/os-release && echo \"$VERSION_CODENAME $VERSION_ID $PRETTY_NAME\""
            ),
            format!("{suite} {version} {pretty}")
        );
        let out = lab.ssh_as(Lab::USER, host, "sudo -n id -u").unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "0\n", "{host}");
        let h = lab.host(host).unwrap();
        assert_eq!(h.suite, Some(suite));
        assert!(
            lab.image_of(h)
                .to_string_lossy()
                .starts_with(&format!("/var/cache/tarmac-lab/rootfs-{suite}-")),
            "{host}: {}",
            lab.image_of(h).display()
        );
    }
    // systemd versions differ: really three releases, not one image three times.
    let versions: Vec<String> = expected
        .iter()
        .map(|(h, ..)| ok(&lab, h, "systemctl --version | head -1 | cut -d' ' -f2"))
        .collect();
    assert_eq!(
        versions
            .iter()
            .map(|v| v.parse::<u32>().is_ok())
            .collect::<Vec<_>>(),
        [true, true, true],
        "{versions:?}"
    );
    assert!(
        versions[0] < versions[1] && versions[1] < versions[2],
        "{versions:?}"
    );
    assert_eq!(lab.images().len(), 3);

    // lab.json records each host's suite; status shows each host's OS.
    let again = Lab::open(&name).unwrap();
    assert_eq!(again.hosts(), lab.hosts());
    let status = again.status().unwrap();
    assert_eq!(status.up_count(), 3);
    let got: Vec<(String, Option<Suite>, Option<String>)> = status
        .hosts
        .iter()
        .map(|h| (h.name.clone(), h.suite, h.os.clone()))
        .collect();
    assert_eq!(
        got,
        expected
            .iter()
            .map(|(h, s, _, p)| ((*h).to_owned(), Some(*s), Some((*p).to_owned())))
            .collect::<Vec<_>>()
    );
    let json = std::fs::read_to_string(lab.dir().join("lab.json")).unwrap();
    assert!(json.contains("\"suite\": \"trixie\""), "{json}");

    // The genconf skeleton is the same as for a one-suite lab.
    let config = std::fs::read_to_string(lab.config_yaml_path()).unwrap();
    let ip = |n: usize| lab.hosts()[n].ip;
    assert!(
        config.contains(&format!(
            "master_list:\n- {}\nagent_list:\n- {}\npublic_agent_list:\n- {}\n",
            ip(0),
            ip(1),
            ip(2)
        )),
        "{config}"
    );

    let dir = lab.dir().to_path_buf();
    let pids = lab_pids(&name);
    lab.down().unwrap();
    assert_clean(&name, &dir, &pids);
}

#[test]
fn two_labs_run_side_by_side() {
    let a_name = unique("sa");
    let b_name = unique("sb");
    let a = up(&a_name, 1, 0, 0, Mode::Systemd);
    let b = up(&b_name, 1, 1, 0, Mode::Plain);
    assert_ne!(a.ctl_ip(), b.ctl_ip());
    assert_ne!(a.hosts()[0].ip, b.hosts()[0].ip);
    assert_ne!(a.dir(), b.dir());
    assert_eq!(ok(&a, "master-1", "systemctl is-system-running"), "running");
    assert_eq!(ok(&b, "master-1", "hostname"), "master-1");
    assert_eq!(ok(&b, "agent-1", "hostname"), "agent-1");
    // Plain hosts: sshd under a tiny init, own pid namespace, no systemd.
    assert_eq!(ok(&b, "agent-1", "ps -o comm= -p 1"), "plain-init");
    // The labs' networks are separate.
    let b_ip = b.hosts()[0].ip;
    assert_ne!(
        sh(&a, "master-1", &format!("ping -c1 -W1 {b_ip}")).0,
        0,
        "lab A reaches lab B"
    );
    assert!(!tcp_from_ctl(&a_name, b_ip));
    // Tearing one down leaves the other running.
    let b_dir = b.dir().to_path_buf();
    let b_pids = lab_pids(&b_name);
    b.down().unwrap();
    assert_clean(&b_name, &b_dir, &b_pids);
    assert_eq!(ok(&a, "master-1", "systemctl is-system-running"), "running");
    assert_eq!(Lab::open(&a_name).unwrap().status().unwrap().up_count(), 1);
}

const CHILD_ENV: &str = "TARMAC_LAB_TEST_INTERRUPTED_UP";

/// `down` cleans up after an `up` that was killed half-way.
#[test]
fn down_cleans_up_after_an_interrupted_up() {
    if let Ok(name) = std::env::var(CHILD_ENV) {
        // Child: start a lab; the parent kills us while it comes up.
        let _ = Lab::up(&LabSpec::new(name, 2, 2, 0), &tarmac_events::NullSink);
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    require_root();
    let name = unique("int");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "down_cleans_up_after_an_interrupted_up",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as its first host runs.
    let t0 = Instant::now();
    while lab_pids(&name).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "the child never started a host"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child exited before starting a host"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let dir = Path::new(tarmac_lab::STATE_ROOT).join(&name);
    assert!(
        !netns_of(&name).is_empty(),
        "the interrupted up left its namespaces"
    );
    let pids = lab_pids(&name);
    let report = Lab::down(&name).unwrap();
    assert!(report.existed);
    assert_clean(&name, &dir, &pids);
}

/// `program args` in the machine's root network namespace: (exit code, stdout + stderr).
fn in_root_ns(program: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(program).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The egress audit records what the controller and the hosts try outside the lab (and
/// DNS lookups), nothing inside it, and leaves nothing in the machine's root namespace.
#[test]
fn egress_audit_records_every_attempt_to_leave_the_lab() {
    let name = unique("eg");
    let lab = up(&name, 1, 0, 0, Mode::Systemd);
    let host = "master-1";

    // The hosts' systemd leaves the links and routes alone: networkd does not run, and
    // would not manage them if something enabled it.
    let (_, networkd) = sh(&lab, host, "systemctl is-enabled systemd-networkd.service");
    assert_ne!(networkd, "enabled", "networkd runs on the lab hosts");
    assert_eq!(
        ok(
            &lab,
            host,
            "grep -h -e Unmanaged -e ManageForeignRoutes /etc/systemd/network/00-tarmac-lab.network /etc/systemd/networkd.conf.d/tarmac-lab.conf"
        ),
        "Unmanaged=yes\nManageForeignRoutes=no"
    );

    // No report before the audit runs: an empty one would prove nothing.
    let err = lab.egress_report().unwrap_err();
    assert!(
        matches!(err, LabError::EgressNotStarted { .. }),
        "report before start: {err}"
    );
    let text = tarmac_types::error_report::text_with_hint(&err);
    assert!(text.contains("tarmac lab egress start"), "{text}");

    lab.egress_audit_start().unwrap();
    lab.egress_audit_start().unwrap(); // idempotent
    let report = lab.egress_report().unwrap();
    assert!(report.is_empty(), "{report}");
    assert_eq!(
        report.to_string(),
        format!(
            "lab `{name}`: no attempt to reach an address outside the lab (audited: controller, master-1)\n"
        )
    );
    // Nothing in the machine's root namespace.
    let (rc, said) = in_root_ns("ip", &["link", "show", "dev", tarmac_lab::EGRESS_IF]);
    assert_ne!(rc, 0, "egress0 in the root namespace: {said}");
    let (rc, said) = in_root_ns("nft", &["list", "table", "inet", tarmac_lab::EGRESS_TABLE]);
    assert_ne!(rc, 0, "the audit table in the root namespace: {said}");
    // The host's routes: the lab /16 on host0, the default over egress0.
    assert_eq!(
        ok(
            &lab,
            host,
            "ip route show default; ip -6 route show default"
        ),
        "default dev egress0 scope link \ndefault dev egress0 metric 1024 pref medium"
    );

    // Inside the lab: host -> controller, controller -> host (ssh itself): not recorded.
    let (rc, _) = sh(&lab, host, "curl -sS -m 2 http://ctl:8080/");
    assert_eq!(rc, 7, "nothing listens on ctl:8080: connection refused");
    let (rc, _) = sh(&lab, host, "curl -sS -m 2 http://127.0.0.1:9/");
    assert_eq!(rc, 7);
    assert!(lab.egress_report().unwrap().is_empty());

    // Outside: the host tries an address and a name; the controller an address.
    let (rc, _) = sh(&lab, host, "curl -sS -m 2 http://203.0.113.7/");
    assert_eq!(rc, 28, "the connect went nowhere and timed out");
    let (rc, said) = sh(&lab, host, "getent hosts example.org");
    assert_ne!(rc, 0, "example.org resolved: {said}");
    let (rc, _) = sh(&lab, host, "curl -sS -m 2 'http://[2001:db8::7]:8443/'");
    assert_eq!(rc, 28);
    let out = lab
        .ctl_command("curl")
        .args(["-sS", "-m", "2", "http://198.51.100.9:8080/"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(28), "{out:?}");

    let report = lab.egress_report().unwrap();
    assert!(!report.is_empty());
    let controller: Vec<String> = report
        .attempts_of(tarmac_lab::CONTROLLER)
        .iter()
        .map(|a| format!("{} {}/{:?} dns={}", a.address, a.protocol, a.port, a.dns))
        .collect();
    assert_eq!(
        controller,
        ["198.51.100.9 tcp/Some(8080) dns=false"],
        "{report}"
    );
    let on_host = report.attempts_of(host);
    let (dns, other): (Vec<_>, Vec<_>) = on_host.iter().partition(|a| a.dns);
    let other: Vec<String> = other
        .iter()
        .map(|a| format!("{} {}/{:?}", a.address, a.protocol, a.port))
        .collect();
    assert_eq!(
        other,
        ["203.0.113.7 tcp/Some(80)", "2001:db8::7 tcp/Some(8443)"],
        "{report}"
    );
    assert!(!dns.is_empty(), "the lookup of example.org: {report}");
    assert!(dns.iter().all(|a| a.port == Some(53)), "{report}");
    assert!(on_host.iter().all(|a| a.packets >= 1), "{report}");
    let text = report.to_string();
    for want in [
        "controller: tcp to 198.51.100.9 port 8080 (",
        "master-1: tcp to 203.0.113.7 port 80 (",
        "master-1: DNS query over ",
    ] {
        assert!(text.contains(want), "`{want}` missing in:\n{text}");
    }

    // Down removes it all; nothing was ever in the root namespace.
    let dir = lab.dir().to_path_buf();
    let pids = lab_pids(&name);
    lab.down().unwrap();
    assert_clean(&name, &dir, &pids);
    let (rc, _) = in_root_ns("ip", &["link", "show", "dev", tarmac_lab::EGRESS_IF]);
    assert_ne!(rc, 0);
}
