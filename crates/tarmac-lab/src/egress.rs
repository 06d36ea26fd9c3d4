//! The egress audit: records every attempt, by any process of the lab, to reach an address
//! outside the lab, so an air-gapped run can prove it never tried.
//!
//! Without a route out of the lab, a connect to an outside address fails with
//! `ENETUNREACH` before any packet exists, so nothing could be counted. The audit gives
//! the control namespace and every host namespace:
//!
//! * a link `egress0` (TEST-NET-1 and ULA addresses, so IPv4 and IPv6 connects get a source
//!   address) carrying the default routes. It is one end of a veth pair whose other end,
//!   `egress0-sink`, sits in the same namespace and drops what arrives (the frames are not
//!   addressed to it, and a prerouting rule drops them as well). A veth rather than a
//!   `dummy` device because not every kernel has the dummy driver; the lab needs veth anyway.
//!   Nothing is created in the machine's root namespace, and no packet can leave the
//!   namespace it was sent in.
//! * an nftables table `inet tarmac_egress` whose output chain records, in dynamic sets with
//!   a packet counter per element, every destination outside the lab's /16, loopback,
//!   link-local and link-local multicast (address, protocol, port), and every DNS query
//!   (tcp/udp port 53) to any address, loopback included: a resolver lookup is an attempt
//!   to reach the outside.
//!
//! `nft` and `ip` of the machine run inside each namespace: the hosts need no nftables of
//! their own. Everything lives in the lab's namespaces, so `lab down` removes it.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::lab::{Lab, ctl_command};
use crate::plan::Plan;
use crate::{LabError, sys};

/// The link that carries the default routes while the audit runs.
pub const EGRESS_IF: &str = "egress0";
/// Its veth peer, in the same namespace, where the packets end.
pub const EGRESS_SINK: &str = "egress0-sink";
/// The nftables table (family `inet`) that records the attempts.
pub const EGRESS_TABLE: &str = "tarmac_egress";
/// `egress0`'s IPv4 address (TEST-NET-1, RFC 5737): the source of outside IPv4 connects.
pub const EGRESS_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// `egress0`'s IPv6 address (a unique local address): the source of outside IPv6 connects.
pub const EGRESS_V6: Ipv6Addr = Ipv6Addr::new(0xfd7a, 0x6c61, 0x6265, 0, 0, 0, 0, 1);
/// The name a report gives the control namespace (where the installer runs).
pub const CONTROLLER: &str = "controller";

/// Sets of the table that hold recorded destinations: (name, has a port).
const RECORD_SETS: &[(&str, bool)] = &[
    ("ports4", true),
    ("ports6", true),
    ("other4", false),
    ("other6", false),
];
/// Transport protocols with ports.
const PORT_PROTOCOLS: &str = "tcp, udp, udplite, sctp, dccp";

/// One recorded destination: what some process of one namespace tried to reach.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EgressAttempt {
    /// Destination address.
    pub address: IpAddr,
    /// Transport protocol: `tcp`, `udp`, `icmp`, `ipv6-icmp`, … (`proto N` when unnamed).
    pub protocol: String,
    /// Destination port (protocols with ports only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// A DNS query (tcp or udp port 53), recorded whatever the address, loopback included.
    pub dns: bool,
    /// Packets sent to it (a retried connect sends several).
    pub packets: u64,
}

impl fmt::Display for EgressAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dns {
            f.write_str("DNS query over ")?;
        }
        write!(f, "{} to {}", self.protocol, self.address)?;
        if let Some(port) = self.port {
            write!(f, " port {port}")?;
        }
        let s = if self.packets == 1 { "" } else { "s" };
        write!(f, " ({} packet{s})", self.packets)
    }
}

/// What one namespace (the controller's or one host's) tried to reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceEgress {
    /// [`CONTROLLER`] for the control namespace, else the host's name.
    pub name: String,
    /// The network namespace.
    pub netns: String,
    /// Every recorded destination, sorted.
    pub attempts: Vec<EgressAttempt>,
    /// Packets recorded, all destinations together.
    pub packets: u64,
}

/// Everything the egress audit of a lab has recorded since it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressReport {
    /// The lab.
    pub lab: String,
    /// The controller first, then every host in lab order.
    pub namespaces: Vec<NamespaceEgress>,
}

impl EgressReport {
    /// No process of the lab tried to reach an address outside it.
    pub fn is_empty(&self) -> bool {
        self.namespaces.iter().all(|n| n.attempts.is_empty())
    }

    /// Every recorded destination with the name of its namespace ([`CONTROLLER`] or a host).
    pub fn attempts(&self) -> impl Iterator<Item = (&str, &EgressAttempt)> {
        self.namespaces
            .iter()
            .flat_map(|n| n.attempts.iter().map(move |a| (n.name.as_str(), a)))
    }

    /// The destinations recorded for one namespace ([`CONTROLLER`] or a host name); empty
    /// for names the lab does not have.
    pub fn attempts_of(&self, name: &str) -> &[EgressAttempt] {
        self.namespaces
            .iter()
            .find(|n| n.name == name)
            .map_or(&[], |n| n.attempts.as_slice())
    }
}

impl fmt::Display for EgressReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.attempts().count();
        if n == 0 {
            let names: Vec<&str> = self.namespaces.iter().map(|n| n.name.as_str()).collect();
            return writeln!(
                f,
                "lab `{}`: no attempt to reach an address outside the lab (audited: {})",
                self.lab,
                names.join(", ")
            );
        }
        let s = if n == 1 { "" } else { "s" };
        writeln!(
            f,
            "lab `{}`: {n} attempt{s} to reach an address outside the lab:",
            self.lab
        )?;
        for (name, a) in self.attempts() {
            writeln!(f, "  {name}: {a}")?;
        }
        Ok(())
    }
}

/// The nftables ruleset (for `nft -f -`) of one namespace of the lab on `10.<octet>.0.0/16`.
pub fn render_nft_ruleset(octet: u8) -> String {
    let mut s = format!(
        "table inet {EGRESS_TABLE} {{\n\tcomment \"tarmac lab egress audit: every attempt to reach an address outside the lab\"\n"
    );
    let _ = write!(
        s,
        "\tset inside4 {{\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = {{ 10.{octet}.0.0/16, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/24, 255.255.255.255 }}\n\t}}\n\tset inside6 {{\n\t\ttype ipv6_addr\n\t\tflags interval\n\t\telements = {{ ::1, fe80::/10, ff02::/16 }}\n\t}}\n"
    );
    for (name, ported) in RECORD_SETS {
        let addr = if name.ends_with('4') {
            "ipv4_addr"
        } else {
            "ipv6_addr"
        };
        let port = if *ported { " . inet_service" } else { "" };
        let _ = write!(
            s,
            "\tset {name} {{\n\t\ttype {addr} . inet_proto{port}\n\t\tsize 65536\n\t\tflags dynamic\n\t}}\n"
        );
    }
    let _ = write!(
        s,
        "\tcounter attempts {{\n\t}}\n\
         \tchain output {{\n\t\ttype filter hook output priority raw; policy accept;\n\
         \t\tmeta l4proto {{ tcp, udp }} th dport 53 jump record\n\
         \t\tmeta nfproto ipv4 ip daddr != @inside4 jump record\n\
         \t\tmeta nfproto ipv6 ip6 daddr != @inside6 jump record\n\t}}\n\
         \tchain record {{\n\t\tcounter name attempts\n\
         \t\tmeta nfproto ipv4 meta l4proto {{ {PORT_PROTOCOLS} }} update @ports4 {{ ip daddr . meta l4proto . th dport counter }} return\n\
         \t\tmeta nfproto ipv6 meta l4proto {{ {PORT_PROTOCOLS} }} update @ports6 {{ ip6 daddr . meta l4proto . th dport counter }} return\n\
         \t\tmeta nfproto ipv4 update @other4 {{ ip daddr . meta l4proto counter }} return\n\
         \t\tmeta nfproto ipv6 update @other6 {{ ip6 daddr . meta l4proto counter }}\n\t}}\n\
         \tchain sink {{\n\t\ttype filter hook prerouting priority raw; policy accept;\n\
         \t\tiifname \"{EGRESS_SINK}\" drop\n\t}}\n}}\n"
    );
    s
}

/// `ip -n <netns> -batch` input: (when `create_link`) the veth pair `egress0` /
/// `egress0-sink`, then its addresses, both ends up, and the default routes over it. All
/// but the link creation can be run again.
pub fn render_ip_batch(create_link: bool) -> String {
    let mut s = String::new();
    if create_link {
        let _ = write!(
            s,
            "link add {EGRESS_IF} type veth peer name {EGRESS_SINK}\n\
             link set {EGRESS_IF} arp off addrgenmode none\n\
             link set {EGRESS_SINK} arp off addrgenmode none\n"
        );
    }
    let _ = write!(
        s,
        "addr replace {EGRESS_V4}/32 dev {EGRESS_IF}\n\
         addr replace {EGRESS_V6}/128 dev {EGRESS_IF} nodad\n\
         link set {EGRESS_SINK} up\n\
         link set {EGRESS_IF} up\n\
         route replace 0.0.0.0/0 dev {EGRESS_IF}\n\
         route replace ::/0 dev {EGRESS_IF}\n"
    );
    s
}

/// The recorded destinations and the packet count in `nft -j -n list table inet
/// tarmac_egress` output.
pub fn parse_nft_table(json: &str) -> Result<(Vec<EgressAttempt>, u64), String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let items = v
        .get("nftables")
        .and_then(|n| n.as_array())
        .ok_or("no `nftables` array")?;
    let mut attempts = Vec::new();
    let mut packets = None;
    let mut sets_seen = 0;
    for item in items {
        if let Some(c) = item.get("counter")
            && c.get("name").and_then(|n| n.as_str()) == Some("attempts")
        {
            packets = Some(c.get("packets").and_then(|p| p.as_u64()).unwrap_or(0));
        }
        let Some(set) = item.get("set") else { continue };
        let name = set.get("name").and_then(|n| n.as_str()).unwrap_or("");
        let Some(&(_, ported)) = RECORD_SETS.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        sets_seen += 1;
        for e in set
            .get("elem")
            .and_then(|e| e.as_array())
            .map_or(&[][..], Vec::as_slice)
        {
            attempts.push(parse_elem(e, ported).map_err(|why| format!("set {name}: {why}"))?);
        }
    }
    if sets_seen != RECORD_SETS.len() {
        return Err(format!(
            "the table has {sets_seen} of its {} sets",
            RECORD_SETS.len()
        ));
    }
    let packets = packets.ok_or("the table has no `attempts` counter")?;
    attempts.sort();
    Ok((attempts, packets))
}

/// One set element: `{"concat": [addr, proto, port]}`, or with a counter
/// `{"elem": {"val": {"concat": …}, "counter": {"packets": N, …}}}`.
fn parse_elem(e: &serde_json::Value, ported: bool) -> Result<EgressAttempt, String> {
    let (val, counter) = match e.get("elem") {
        Some(inner) => (inner.get("val").unwrap_or(inner), inner.get("counter")),
        None => (e, None),
    };
    let parts = val
        .get("concat")
        .and_then(|c| c.as_array())
        .ok_or_else(|| format!("element {val} is not a concatenation"))?;
    let want = if ported { 3 } else { 2 };
    if parts.len() != want {
        return Err(format!(
            "element {val} has {} parts, not {want}",
            parts.len()
        ));
    }
    let address: IpAddr = parts[0]
        .as_str()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("element {val}: `{}` is not an address", parts[0]))?;
    let protocol = match &parts[1] {
        serde_json::Value::Number(n) => n
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .map(protocol_name)
            .ok_or_else(|| format!("element {val}: bad protocol {n}"))?,
        serde_json::Value::String(s) => s.clone(),
        other => return Err(format!("element {val}: bad protocol {other}")),
    };
    let port = if ported {
        let p = &parts[2];
        let port = p
            .as_u64()
            .or_else(|| p.as_str().and_then(|s| s.parse().ok()))
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| format!("element {val}: `{p}` is not a port number"))?;
        Some(port)
    } else {
        None
    };
    let dns = port == Some(53) && (protocol == "tcp" || protocol == "udp");
    let packets = counter
        .and_then(|c| c.get("packets"))
        .and_then(|p| p.as_u64())
        .unwrap_or(0);
    Ok(EgressAttempt {
        address,
        protocol,
        port,
        dns,
        packets,
    })
}

/// The name of an IP protocol number (as nftables spells it).
fn protocol_name(n: u8) -> String {
    match n {
        1 => "icmp".into(),
        2 => "igmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        33 => "dccp".into(),
        47 => "gre".into(),
        58 => "ipv6-icmp".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        n => format!("proto {n}"),
    }
}

/// (report name, netns) of every namespace the audit covers: the controller first.
fn audited(plan: &Plan) -> Vec<(String, String)> {
    std::iter::once((CONTROLLER.to_owned(), plan.ctl_netns()))
        .chain(
            plan.hosts
                .iter()
                .map(|h| (h.name.clone(), h.netns(&plan.name))),
        )
        .collect()
}

/// `nft` of the machine (root's PATH may lack /usr/sbin), run inside `netns`.
fn nft(netns: &str) -> Command {
    let program = if std::path::Path::new("/usr/sbin/nft").exists() {
        "/usr/sbin/nft"
    } else {
        "nft"
    };
    ctl_command(netns, program)
}

/// Does the table exist in `netns`?
fn table_exists(netns: &str) -> Result<bool, LabError> {
    let mut c = nft(netns);
    c.args(["list", "table", "inet", EGRESS_TABLE]);
    Ok(sys::run_unchecked(&mut c, None)?.status.success())
}

fn start_in(plan: &Plan, netns: &str) -> Result<(), LabError> {
    if !sys::netns_exists(netns) {
        return Err(LabError::NetworkGone {
            lab: plan.name.clone(),
            netns: netns.to_owned(),
        });
    }
    // The recording first, then the routes: no outside packet goes unrecorded.
    if !table_exists(netns)? {
        sys::run(
            nft(netns).args(["-f", "-"]),
            Some(&render_nft_ruleset(plan.octet)),
        )?;
    }
    let has_link = sys::run_unchecked(
        Command::new("ip").args(["-n", netns, "link", "show", "dev", EGRESS_IF]),
        None,
    )?
    .status
    .success();
    sys::run(
        Command::new("ip").args(["-n", netns, "-batch", "-"]),
        Some(&render_ip_batch(!has_link)),
    )?;
    Ok(())
}

fn report_of(lab: &str, name: &str, netns: &str) -> Result<NamespaceEgress, LabError> {
    if !sys::netns_exists(netns) {
        return Err(LabError::NetworkGone {
            lab: lab.to_owned(),
            netns: netns.to_owned(),
        });
    }
    let mut c = nft(netns);
    c.args(["-j", "-n", "list", "table", "inet", EGRESS_TABLE]);
    let out = sys::run_unchecked(&mut c, None)?;
    if !out.status.success() {
        return Err(LabError::EgressNotStarted {
            lab: lab.to_owned(),
            namespace: format!("{name} ({netns})"),
            // nft's first line says why (`No such file or directory`); then it points at the
            // command line it was given.
            stderr: String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned(),
        });
    }
    let (attempts, packets) =
        parse_nft_table(&String::from_utf8_lossy(&out.stdout)).map_err(|reason| {
            LabError::EgressUnreadable {
                namespace: format!("{name} ({netns})"),
                reason,
            }
        })?;
    Ok(NamespaceEgress {
        name: name.to_owned(),
        netns: netns.to_owned(),
        attempts,
        packets,
    })
}

impl Lab {
    /// Start the egress audit: from now on every attempt of a process in the control
    /// namespace or on a host to reach an address outside the lab (and every DNS query) is
    /// recorded, and its packets end in the namespace they were sent in. Installs
    /// `nftables` on this machine when `nft` is missing. Idempotent: a second call keeps
    /// what was recorded. Ends with the lab (`down`); nothing is created outside the lab's
    /// namespaces.
    pub fn egress_audit_start(&self) -> Result<(), LabError> {
        sys::require_root()?;
        crate::prereq::ensure_nft(&crate::events::Progress::new(
            self.name(),
            &tarmac_events::NullSink,
        ))?;
        let plan = self.plan();
        let namespaces = audited(plan);
        crate::lab::parallel(&namespaces, 8, |(_, netns)| start_in(plan, netns))?;
        Ok(())
    }

    /// What the egress audit has recorded since [`Lab::egress_audit_start`], per namespace.
    /// Fails when the audit does not run in some namespace of the lab (an empty report
    /// from a lab nobody audited would prove nothing).
    pub fn egress_report(&self) -> Result<EgressReport, LabError> {
        sys::require_root()?;
        let plan = self.plan();
        let namespaces = audited(plan);
        let found = crate::lab::parallel(&namespaces, 8, |(name, netns)| {
            report_of(&plan.name, name, netns)
        })?;
        Ok(EgressReport {
            lab: plan.name.clone(),
            namespaces: found,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_ruleset_exact() {
        assert_eq!(
            render_nft_ruleset(77),
            "table inet tarmac_egress {
\tcomment \"tarmac lab egress audit: every attempt to reach an address outside the lab\"
\tset inside4 {
\t\ttype ipv4_addr
\t\tflags interval
\t\telements = { 10.77.0.0/16, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/24, 255.255.255.255 }
\t}
\tset inside6 {
\t\ttype ipv6_addr
\t\tflags interval
\t\telements = { ::1, fe80::/10, ff02::/16 }
\t}
\tset ports4 {
\t\ttype ipv4_addr . inet_proto . inet_service
\t\tsize 65536
\t\tflags dynamic
\t}
\tset ports6 {
\t\ttype ipv6_addr . inet_proto . inet_service
\t\tsize 65536
\t\tflags dynamic
\t}
\tset other4 {
\t\ttype ipv4_addr . inet_proto
\t\tsize 65536
\t\tflags dynamic
\t}
\tset other6 {
\t\ttype ipv6_addr . inet_proto
\t\tsize 65536
\t\tflags dynamic
\t}
\tcounter attempts {
\t}
\tchain output {
\t\ttype filter hook output priority raw; policy accept;
\t\tmeta l4proto { tcp, udp } th dport 53 jump record
\t\tmeta nfproto ipv4 ip daddr != @inside4 jump record
\t\tmeta nfproto ipv6 ip6 daddr != @inside6 jump record
\t}
\tchain record {
\t\tcounter name attempts
\t\tmeta nfproto ipv4 meta l4proto { tcp, udp, udplite, sctp, dccp } update @ports4 { ip daddr . meta l4proto . th dport counter } return
\t\tmeta nfproto ipv6 meta l4proto { tcp, udp, udplite, sctp, dccp } update @ports6 { ip6 daddr . meta l4proto . th dport counter } return
\t\tmeta nfproto ipv4 update @other4 { ip daddr . meta l4proto counter } return
\t\tmeta nfproto ipv6 update @other6 { ip6 daddr . meta l4proto counter }
\t}
\tchain sink {
\t\ttype filter hook prerouting priority raw; policy accept;
\t\tiifname \"egress0-sink\" drop
\t}
}
"
        );
    }

    #[test]
    fn ip_batch_exact() {
        let rest = "addr replace 192.0.2.1/32 dev egress0
addr replace fd7a:6c61:6265::1/128 dev egress0 nodad
link set egress0-sink up
link set egress0 up
route replace 0.0.0.0/0 dev egress0
route replace ::/0 dev egress0
";
        assert_eq!(render_ip_batch(false), rest);
        assert_eq!(
            render_ip_batch(true),
            format!(
                "link add egress0 type veth peer name egress0-sink
link set egress0 arp off addrgenmode none
link set egress0-sink arp off addrgenmode none
{rest}"
            )
        );
    }

    /// `nft -j -n list table inet tarmac_egress` of nftables 1.0.6, shortened.
    const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "tarmac_egress", "handle": 1}}, {"counter": {"family": "inet", "name": "attempts", "table": "tarmac_egress", "handle": 3, "packets": 13, "bytes": 760}}, {"set": {"family": "inet", "name": "inside4", "table": "tarmac_egress", "type": "ipv4_addr", "handle": 4, "flags": ["interval"], "elem": [{"prefix": {"addr": "10.77.0.0", "len": 16}}, "255.255.255.255"]}}, {"set": {"family": "inet", "name": "ports4", "table": "tarmac_egress", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 6, "size": 65536, "elem": [{"elem": {"val": {"concat": ["203.0.113.7", 6, 80]}, "counter": {"packets": 2, "bytes": 120}}}, {"elem": {"val": {"concat": ["127.0.0.1", 17, 53]}, "counter": {"packets": 8, "bytes": 456}}}]}}, {"set": {"family": "inet", "name": "ports6", "table": "tarmac_egress", "type": ["ipv6_addr", "inet_proto", "inet_service"], "handle": 7, "size": 65536, "elem": [{"concat": ["2001:db8::5", "tcp", 8443]}]}}, {"set": {"family": "inet", "name": "other4", "table": "tarmac_egress", "type": ["ipv4_addr", "inet_proto"], "handle": 8, "size": 65536, "elem": [{"elem": {"val": {"concat": ["198.51.100.3", 1]}, "counter": {"packets": 1, "bytes": 84}}}]}}, {"set": {"family": "inet", "name": "other6", "table": "tarmac_egress", "type": ["ipv6_addr", "inet_proto"], "handle": 9, "size": 65536}}]}"#;

    fn attempt(addr: &str, protocol: &str, port: Option<u16>, packets: u64) -> EgressAttempt {
        EgressAttempt {
            address: addr.parse().unwrap(),
            protocol: protocol.into(),
            port,
            dns: port == Some(53),
            packets,
        }
    }

    #[test]
    fn nft_listing_parses_into_sorted_attempts() {
        let (attempts, packets) = parse_nft_table(LISTING).unwrap();
        assert_eq!(packets, 13);
        assert_eq!(
            attempts,
            [
                attempt("127.0.0.1", "udp", Some(53), 8),
                attempt("198.51.100.3", "icmp", None, 1),
                attempt("203.0.113.7", "tcp", Some(80), 2),
                attempt("2001:db8::5", "tcp", Some(8443), 0),
            ]
        );
        assert!(attempts[0].dns && !attempts[2].dns);
    }

    #[test]
    fn nft_listing_without_the_audit_sets_is_an_error() {
        let empty = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"counter": {"name": "attempts", "packets": 0}}]}"#;
        assert_eq!(
            parse_nft_table(empty).unwrap_err(),
            "the table has 0 of its 4 sets"
        );
        assert_eq!(
            parse_nft_table("Error: No such file").unwrap_err(),
            "not JSON: expected value at line 1 column 1"
        );
        let bad = LISTING.replace("\"203.0.113.7\"", "\"nowhere\"");
        assert_eq!(
            parse_nft_table(&bad).unwrap_err(),
            r#"set ports4: element {"concat":["nowhere",6,80]}: `"nowhere"` is not an address"#
        );
    }

    fn report(attempts: Vec<EgressAttempt>) -> EgressReport {
        EgressReport {
            lab: "demo".into(),
            namespaces: vec![
                NamespaceEgress {
                    name: CONTROLLER.into(),
                    netns: "tm-demo-ctl".into(),
                    attempts: vec![],
                    packets: 0,
                },
                NamespaceEgress {
                    name: "master-1".into(),
                    netns: "tm-demo-master-1".into(),
                    packets: attempts.iter().map(|a| a.packets).sum(),
                    attempts,
                },
            ],
        }
    }

    #[test]
    fn report_names_each_attempt() {
        let empty = report(vec![]);
        assert!(empty.is_empty());
        assert_eq!(
            empty.to_string(),
            "lab `demo`: no attempt to reach an address outside the lab (audited: controller, master-1)\n"
        );
        let r = report(vec![
            attempt("127.0.0.1", "udp", Some(53), 1),
            attempt("198.51.100.3", "icmp", None, 2),
            attempt("2001:db8::5", "tcp", Some(8443), 3),
        ]);
        assert!(!r.is_empty());
        assert_eq!(
            r.to_string(),
            "lab `demo`: 3 attempts to reach an address outside the lab:
  master-1: DNS query over udp to 127.0.0.1 port 53 (1 packet)
  master-1: icmp to 198.51.100.3 (2 packets)
  master-1: tcp to 2001:db8::5 port 8443 (3 packets)
"
        );
        assert_eq!(r.attempts_of("master-1").len(), 3);
        assert!(r.attempts_of(CONTROLLER).is_empty());
        assert!(r.attempts_of("agent-9").is_empty());
        let json = serde_json::to_string(&r.namespaces[1].attempts[1]).unwrap();
        assert_eq!(
            json,
            r#"{"address":"198.51.100.3","protocol":"icmp","dns":false,"packets":2}"#
        );
    }
}
