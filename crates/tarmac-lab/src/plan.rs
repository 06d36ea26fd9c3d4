//! Pure planning: names, addresses and the text files a lab writes. No I/O here, so
//! everything is unit-tested with exact strings.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tarmac_types::Role;

use crate::LabError;
use crate::suite::Suite;

/// Hosts per lab. One Linux bridge takes at most 1023 ports; we stay well below.
pub const MAX_HOSTS: usize = 1000;
/// Longest lab name: keeps netns names and machine names short and readable.
pub const MAX_NAME_LEN: usize = 24;
/// Second octet range for lab subnets `10.X.0.0/16`.
pub const SUBNET_FIRST: u8 = 64;
pub const SUBNET_COUNT: u8 = 128;
/// Interface name of a host's lab link, inside the host's network namespace.
pub const HOST_IF: &str = "host0";
/// Bridge in the control namespace.
pub const BRIDGE: &str = "br0";
/// Port the installer serves artifacts on, from the control namespace.
pub const BOOTSTRAP_PORT: u16 = 8080;

/// How a lab's hosts run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Each host boots real systemd with `systemd-nspawn -b` (`systemctl`, `journalctl` work).
    #[default]
    Systemd,
    /// Each host runs a tiny init as PID 1 and sshd only (large-N fan-out benchmarks).
    Plain,
}

impl Mode {
    /// `systemd` or `plain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Systemd => "systemd",
            Mode::Plain => "plain",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "systemd" => Ok(Mode::Systemd),
            "plain" => Ok(Mode::Plain),
            _ => Err(format!("unknown lab mode `{s}`: expected systemd or plain")),
        }
    }
}

/// One host of a lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabHost {
    /// Host name: `master-1`, `agent-2`, `public-agent-1`, … (also its hostname and ssh_config alias).
    pub name: String,
    /// Its address on the lab bridge.
    pub ip: IpAddr,
    /// Its cluster role.
    pub role: Role,
    /// Position in the lab, from 1 (names its link `vh<index>` in the control namespace).
    pub index: usize,
    /// The Debian release it runs. `None` only for a lab saved before mixed-OS labs whose
    /// one image is not named after a known suite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<Suite>,
}

impl LabHost {
    /// The network namespace that holds this host's interface (`tm-<lab>-<host>`).
    pub fn netns(&self, lab: &str) -> String {
        format!("tm-{lab}-{}", self.name)
    }

    /// The host's link in the control namespace (a bridge port).
    pub fn ctl_link(&self) -> String {
        format!("vh{}", self.index)
    }
}

/// Check a lab name: 1–24 of `a-z 0-9 -`, starting with a letter, not ending with `-`.
pub fn validate_name(name: &str) -> Result<(), LabError> {
    let bad = |why: &str| LabError::InvalidSpec {
        reason: format!(
            "lab name `{name}` {why} (use 1-{MAX_NAME_LEN} characters of a-z, 0-9 and `-`, starting with a letter)"
        ),
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(bad("has the wrong length"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) || name.ends_with('-') {
        return Err(bad(
            "must start with a lowercase letter and not end with `-`",
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(bad("has characters other than a-z, 0-9 and `-`"));
    }
    Ok(())
}

/// Name of the lab's control network namespace.
pub fn ctl_netns(lab: &str) -> String {
    format!("tm-{lab}-ctl")
}

/// The address of host number `index` (from 1) in subnet `10.<octet>.0.0/16`:
/// `10.<octet>.0.11`, `.12`, … 200 per third octet.
pub fn host_ip(octet: u8, index: usize) -> Ipv4Addr {
    let i = index - 1;
    Ipv4Addr::new(10, octet, (i / 200) as u8, (11 + i % 200) as u8)
}

/// The control namespace's address in subnet `10.<octet>.0.0/16`.
pub fn ctl_ip(octet: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, octet, 255, 1)
}

/// FNV-1a, for a stable preferred subnet per lab name.
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Pick the second octet of the lab's `10.X.0.0/16`: stable per name, skipping octets
/// other labs use. `None` when all are taken.
pub fn pick_subnet(name: &str, used: &[u8]) -> Option<u8> {
    let start = fnv1a(name) % u32::from(SUBNET_COUNT);
    (0..u32::from(SUBNET_COUNT))
        .map(|k| SUBNET_FIRST + ((start + k) % u32::from(SUBNET_COUNT)) as u8)
        .find(|o| !used.contains(o))
}

/// The hosts of a lab: masters, then agents, then public agents, numbered from 1.
pub fn plan_hosts(octet: u8, masters: usize, agents: usize, public_agents: usize) -> Vec<LabHost> {
    let groups = [
        (Role::Master, "master", masters),
        (Role::Agent, "agent", agents),
        (Role::AgentPublic, "public-agent", public_agents),
    ];
    let mut hosts = Vec::with_capacity(masters + agents + public_agents);
    for (role, prefix, count) in groups {
        for n in 1..=count {
            let index = hosts.len() + 1;
            hosts.push(LabHost {
                name: format!("{prefix}-{n}"),
                ip: IpAddr::V4(host_ip(octet, index)),
                role,
                index,
                suite: None,
            });
        }
    }
    hosts
}

/// Everything about a lab that is decided before anything is created. Saved as `lab.json`
/// before the first namespace exists, so `down` can always find what to remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub version: u32,
    pub name: String,
    pub mode: Mode,
    /// Second octet of `10.X.0.0/16`.
    pub octet: u8,
    pub dir: PathBuf,
    /// The first host's image (the only one in labs saved before mixed-OS labs).
    pub image: PathBuf,
    /// The image of every suite the lab's hosts run; absent in older state (one suite).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<Suite, PathBuf>,
    /// Packages the image has on top of the default set (normalised); absent in the state
    /// of labs from before extra packages existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_packages: Vec<String>,
    pub hosts: Vec<LabHost>,
    /// Seconds since the epoch when `up` started.
    pub created: u64,
}

impl Plan {
    /// The root image `host` runs on.
    pub fn image_of(&self, host: &LabHost) -> &Path {
        host.suite
            .and_then(|s| self.images.get(&s))
            .unwrap_or(&self.image)
    }

    /// Every image the lab uses.
    pub fn all_images(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.images.values().cloned().collect();
        if !v.contains(&self.image) {
            v.push(self.image.clone());
        }
        v
    }

    /// State saved before mixed-OS labs has one image and no suite per host: the suite is
    /// in the image's name (`rootfs-<suite>-<hash>`).
    pub fn fill_in_suites(&mut self) {
        if !self.images.is_empty() {
            return;
        }
        if let Some(suite) = crate::image::suite_of_image(&self.image) {
            self.images.insert(suite, self.image.clone());
            for h in &mut self.hosts {
                h.suite.get_or_insert(suite);
            }
        }
    }

    pub fn ctl_ip(&self) -> Ipv4Addr {
        ctl_ip(self.octet)
    }
    pub fn ctl_netns(&self) -> String {
        ctl_netns(&self.name)
    }
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }
    pub fn known_hosts_path(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }
    pub fn ssh_config_path(&self) -> PathBuf {
        self.dir.join("ssh_config")
    }
    pub fn host_dir(&self, host: &str) -> PathBuf {
        self.dir.join("hosts").join(host)
    }
    /// All network namespaces of the lab, control namespace first.
    pub fn netns_names(&self) -> Vec<String> {
        std::iter::once(self.ctl_netns())
            .chain(self.hosts.iter().map(|h| h.netns(&self.name)))
            .collect()
    }
}

/// `/etc/hosts` for every host of the lab.
pub fn render_etc_hosts(plan: &Plan) -> String {
    let mut s = String::from(
        "# Tarmac lab hosts\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    let _ = writeln!(s, "{}\tctl", plan.ctl_ip());
    for h in &plan.hosts {
        let _ = writeln!(s, "{}\t{}", h.ip, h.name);
    }
    s
}

/// The lab's ssh_config: one `Host` entry per host name, host-key checking on, the lab key.
pub fn render_ssh_config(plan: &Plan) -> String {
    let dir = plan.dir.display();
    let mut s = format!(
        "# Tarmac lab `{name}`: hosts are reachable from network namespace {ctl} only, e.g.\n#   tarmac lab ssh --name {name} HOST\n#   ip netns exec {ctl} ssh -F {dir}/ssh_config HOST\n",
        name = plan.name,
        ctl = plan.ctl_netns(),
    );
    for h in &plan.hosts {
        let _ = write!(s, "Host {}\n  HostName {}\n", h.name, h.ip);
    }
    let _ = write!(
        s,
        "Host *\n  User root\n  Port 22\n  IdentityFile {dir}/id_ed25519\n  IdentitiesOnly yes\n  UserKnownHostsFile {dir}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  CheckHostIP no\n  BatchMode yes\n  LogLevel ERROR\n  # lab hosts: the classic key exchange costs half the CPU of the post-quantum default\n  KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org,sntrup761x25519-sha512@openssh.com\n  ConnectTimeout 10\n  ServerAliveInterval 5\n  ServerAliveCountMax 3\n  ControlMaster auto\n  ControlPath {dir}/cm/%C\n  ControlPersist 60\n"
    );
    s
}

/// One known_hosts line per host: `<ip>,<name> <key type> <base64>`.
pub fn render_known_hosts(hosts: &[(&LabHost, &str)]) -> String {
    let mut s = String::new();
    for (h, key) in hosts {
        let _ = writeln!(s, "{},{} {}", h.ip, h.name, key.trim());
    }
    s
}

/// `genconf/config.yaml`: a flat skeleton the installer can be pointed at directly.
pub fn render_config_yaml(plan: &Plan) -> String {
    let list = |role: Role| -> String {
        let ips: Vec<String> = plan
            .hosts
            .iter()
            .filter(|h| h.role == role)
            .map(|h| format!("- {}\n", h.ip))
            .collect();
        if ips.is_empty() {
            " []\n".to_owned()
        } else {
            format!("\n{}", ips.concat())
        }
    };
    format!(
        "# Tarmac lab `{name}` (written by `tarmac lab up`)\ncluster_name: {name}\nbootstrap_url: http://{ctl}:{port}\nssh_user: root\nssh_port: 22\nssh_key_path: {key}\nssh_known_hosts: {kh}\nmaster_list:{m}agent_list:{a}public_agent_list:{p}",
        name = plan.name,
        ctl = plan.ctl_ip(),
        port = BOOTSTRAP_PORT,
        key = plan.key_path().display(),
        kh = plan.known_hosts_path().display(),
        m = list(Role::Master),
        a = list(Role::Agent),
        p = list(Role::AgentPublic),
    )
}

/// `ip -batch` input that creates every namespace of the lab.
pub fn render_netns_add(plan: &Plan) -> String {
    plan.netns_names()
        .iter()
        .map(|n| format!("netns add {n}\n"))
        .collect()
}

/// `ip -batch` input that deletes every namespace of the lab (run with `-force`).
pub fn render_netns_del(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("netns delete {n}\n"))
        .collect()
}

/// `ip -n <ctl> -batch` input: the bridge with the control address, and one veth per host
/// whose other end (`host0`) is created directly in the host's namespace.
pub fn render_ctl_batch(plan: &Plan) -> String {
    let mut s = format!(
        "link set lo up\nlink add {BRIDGE} type bridge\naddr add {}/16 dev {BRIDGE}\nlink set {BRIDGE} up\n",
        plan.ctl_ip()
    );
    for h in &plan.hosts {
        let _ = write!(
            s,
            "link add {l} type veth peer name {HOST_IF} netns {ns}\nlink set {l} master {BRIDGE} up\n",
            l = h.ctl_link(),
            ns = h.netns(&plan.name),
        );
    }
    s
}

/// `ip -n <host ns> -batch` input: loopback up, the host's address, its link up.
pub fn render_host_batch(host: &LabHost) -> String {
    format!(
        "link set lo up\naddr add {}/16 dev {HOST_IF}\nlink set {HOST_IF} up\n",
        host.ip
    )
}

/// Default lab directory for a name under `root`.
pub fn lab_dir(root: &Path, name: &str) -> PathBuf {
    root.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            version: 1,
            name: "demo".into(),
            mode: Mode::Systemd,
            octet: 77,
            dir: "/var/lib/tarmac-lab/demo".into(),
            image: "/var/cache/tarmac-lab/rootfs-bookworm-x".into(),
            images: BTreeMap::new(),
            extra_packages: Vec::new(),
            hosts: plan_hosts(77, 1, 2, 0),
            created: 0,
        }
    }

    #[test]
    fn state_records_extra_packages_and_reads_older_state() {
        let mut p = plan();
        p.hosts.truncate(1);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"version":1,"name":"demo","mode":"systemd","octet":77,"dir":"/var/lib/tarmac-lab/demo","image":"/var/cache/tarmac-lab/rootfs-bookworm-x","hosts":[{"name":"master-1","ip":"10.77.0.11","role":"master","index":1}],"created":0}"#
        );
        // State written before extra packages (and suites) existed reads as "none".
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), p);
        p.extra_packages = vec!["python3".into(), "python3-apt".into()];
        let json = serde_json::to_string(&p).unwrap();
        assert!(
            json.contains(r#""image":"/var/cache/tarmac-lab/rootfs-bookworm-x","extra_packages":["python3","python3-apt"],"hosts""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), p);
    }

    #[test]
    fn state_records_each_hosts_suite_and_reads_one_suite_state() {
        let mut p = plan();
        p.hosts.truncate(2);
        p.hosts[0].suite = Some(Suite::Bullseye);
        p.hosts[1].suite = Some(Suite::Trixie);
        p.image = "/c/rootfs-bullseye-a".into();
        p.images = BTreeMap::from([
            (Suite::Trixie, "/c/rootfs-trixie-b".into()),
            (Suite::Bullseye, "/c/rootfs-bullseye-a".into()),
        ]);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"version":1,"name":"demo","mode":"systemd","octet":77,"dir":"/var/lib/tarmac-lab/demo","image":"/c/rootfs-bullseye-a","images":{"bullseye":"/c/rootfs-bullseye-a","trixie":"/c/rootfs-trixie-b"},"hosts":[{"name":"master-1","ip":"10.77.0.11","role":"master","index":1,"suite":"bullseye"},{"name":"agent-1","ip":"10.77.0.12","role":"agent","index":2,"suite":"trixie"}],"created":0}"#
        );
        let mut back = serde_json::from_str::<Plan>(&json).unwrap();
        assert_eq!(back, p);
        back.fill_in_suites();
        assert_eq!(back, p, "a mixed lab's state is complete already");
        assert_eq!(p.image_of(&p.hosts[1]), Path::new("/c/rootfs-trixie-b"));
        assert_eq!(p.image_of(&p.hosts[0]), Path::new("/c/rootfs-bullseye-a"));
        assert_eq!(
            p.all_images(),
            [
                PathBuf::from("/c/rootfs-bullseye-a"),
                PathBuf::from("/c/rootfs-trixie-b")
            ]
        );

        // A lab.json from before mixed-OS labs: one image, its suite in the image's name.
        let old = r#"{"version":1,"name":"demo","mode":"systemd","octet":77,"dir":"/var/lib/tarmac-lab/demo","image":"/var/cache/tarmac-lab/rootfs-bookworm-3662dee8d8d8","hosts":[{"name":"master-1","ip":"10.77.0.11","role":"master","index":1},{"name":"agent-1","ip":"10.77.0.12","role":"agent","index":2}],"created":0}"#;
        let mut old: Plan = serde_json::from_str(old).unwrap();
        assert_eq!(old.hosts[0].suite, None);
        old.fill_in_suites();
        assert_eq!(
            old.hosts.iter().map(|h| h.suite).collect::<Vec<_>>(),
            [Some(Suite::Bookworm), Some(Suite::Bookworm)]
        );
        assert_eq!(
            old.image_of(&old.hosts[1]),
            Path::new("/var/cache/tarmac-lab/rootfs-bookworm-3662dee8d8d8")
        );
        // An image not named after a known suite: hosts keep no suite, the one image.
        let mut odd = plan();
        odd.image = "/c/rootfs-noble-x".into();
        odd.fill_in_suites();
        assert_eq!(odd.hosts[0].suite, None);
        assert_eq!(odd.image_of(&odd.hosts[0]), Path::new("/c/rootfs-noble-x"));
    }

    #[test]
    fn names_are_validated() {
        for ok in [
            "tarmac",
            "a",
            "lab-2",
            "t123456789012345678901234"[..24].as_ref(),
        ] {
            validate_name(ok).unwrap();
        }
        for bad in [
            "",
            "Tarmac",
            "1lab",
            "lab-",
            "la_b",
            "la.b",
            "abcdefghijklmnopqrstuvwxy",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_are_allocated_in_order() {
        assert_eq!(host_ip(77, 1), Ipv4Addr::new(10, 77, 0, 11));
        assert_eq!(host_ip(77, 200), Ipv4Addr::new(10, 77, 0, 210));
        assert_eq!(host_ip(77, 201), Ipv4Addr::new(10, 77, 1, 11));
        assert_eq!(host_ip(77, MAX_HOSTS), Ipv4Addr::new(10, 77, 4, 210));
        assert_eq!(ctl_ip(77), Ipv4Addr::new(10, 77, 255, 1));
        let hosts = plan_hosts(9, 2, 1, 1);
        let got: Vec<(String, String, Role, String)> = hosts
            .iter()
            .map(|h| (h.name.clone(), h.ip.to_string(), h.role, h.ctl_link()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "master-1".into(),
                    "10.9.0.11".into(),
                    Role::Master,
                    "vh1".into()
                ),
                (
                    "master-2".into(),
                    "10.9.0.12".into(),
                    Role::Master,
                    "vh2".into()
                ),
                (
                    "agent-1".into(),
                    "10.9.0.13".into(),
                    Role::Agent,
                    "vh3".into()
                ),
                (
                    "public-agent-1".into(),
                    "10.9.0.14".into(),
                    Role::AgentPublic,
                    "vh4".into()
                ),
            ]
        );
        assert_eq!(hosts[3].netns("x"), "tm-x-public-agent-1");
        assert!(format!("vh{MAX_HOSTS}").len() <= 15);
    }

    #[test]
    fn subnets_are_stable_and_skip_used_ones() {
        let a = pick_subnet("tarmac", &[]).unwrap();
        assert_eq!(pick_subnet("tarmac", &[]), Some(a));
        assert!((SUBNET_FIRST..SUBNET_FIRST + SUBNET_COUNT).contains(&a));
        let b = pick_subnet("tarmac", &[a]).unwrap();
        assert_ne!(a, b);
        let all: Vec<u8> = (SUBNET_FIRST..SUBNET_FIRST + SUBNET_COUNT).collect();
        assert_eq!(pick_subnet("tarmac", &all), None);
        assert_eq!(pick_subnet("tarmac", &all[1..]), Some(SUBNET_FIRST));
    }

    #[test]
    fn etc_hosts_exact() {
        assert_eq!(
            render_etc_hosts(&plan()),
            "# Tarmac lab hosts\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.77.255.1\tctl\n10.77.0.11\tmaster-1\n10.77.0.12\tagent-1\n10.77.0.13\tagent-2\n"
        );
    }

    #[test]
    fn ssh_config_exact() {
        assert_eq!(
            render_ssh_config(&plan()),
            "# Tarmac lab `demo`: hosts are reachable from network namespace tm-demo-ctl only, e.g.
#   tarmac lab ssh --name demo HOST
#   ip netns exec tm-demo-ctl ssh -F /var/lib/tarmac-lab/demo/ssh_config HOST
Host master-1
  HostName 10.77.0.11
Host agent-1
  HostName 10.77.0.12
Host agent-2
  HostName 10.77.0.13
Host *
  User root
  Port 22
  IdentityFile /var/lib/tarmac-lab/demo/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile /var/lib/tarmac-lab/demo/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  CheckHostIP no
  BatchMode yes
  LogLevel ERROR
  # lab hosts: the classic key exchange costs half the CPU of the post-quantum default
  KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org,sntrup761x25519-sha512@openssh.com
  ConnectTimeout 10
  ServerAliveInterval 5
  ServerAliveCountMax 3
  ControlMaster auto
  ControlPath /var/lib/tarmac-lab/demo/cm/%C
  ControlPersist 60
"
        );
    }

    #[test]
    fn known_hosts_exact() {
        let p = plan();
        let kh = render_known_hosts(&[
            (&p.hosts[0], "ssh-ed25519 AAAAone\n"),
            (&p.hosts[1], "ssh-ed25519 AAAAtwo"),
        ]);
        assert_eq!(
            kh,
            "10.77.0.11,master-1 ssh-ed25519 AAAAone\n10.77.0.12,agent-1 ssh-ed25519 AAAAtwo\n"
        );
    }

    #[test]
    fn config_yaml_exact() {
        assert_eq!(
            render_config_yaml(&plan()),
            "# Tarmac lab `demo` (written by `tarmac lab up`)
cluster_name: demo
bootstrap_url: http://10.77.255.1:8080
ssh_user: root
ssh_port: 22
ssh_key_path: /var/lib/tarmac-lab/demo/id_ed25519
ssh_known_hosts: /var/lib/tarmac-lab/demo/known_hosts
master_list:
- 10.77.0.11
agent_list:
- 10.77.0.12
- 10.77.0.13
public_agent_list: []
"
        );
    }

    #[test]
    fn ip_batches_exact() {
        let p = plan();
        assert_eq!(
            render_netns_add(&p),
            "netns add tm-demo-ctl\nnetns add tm-demo-master-1\nnetns add tm-demo-agent-1\nnetns add tm-demo-agent-2\n"
        );
        assert_eq!(
            render_netns_del(&["a".into(), "b".into()]),
            "netns delete a\nnetns delete b\n"
        );
        let ctl = render_ctl_batch(&p);
        assert!(ctl.starts_with("link set lo up\nlink add br0 type bridge\naddr add 10.77.255.1/16 dev br0\nlink set br0 up\n"));
        assert!(ctl.ends_with("link add vh3 type veth peer name host0 netns tm-demo-agent-2\nlink set vh3 master br0 up\n"));
        assert_eq!(
            render_host_batch(&p.hosts[0]),
            "link set lo up\naddr add 10.77.0.11/16 dev host0\nlink set host0 up\n"
        );
    }

    #[test]
    fn mode_parses() {
        assert_eq!("plain".parse::<Mode>().unwrap(), Mode::Plain);
        assert_eq!(Mode::default().to_string(), "systemd");
        assert!("x".parse::<Mode>().is_err());
    }
}
