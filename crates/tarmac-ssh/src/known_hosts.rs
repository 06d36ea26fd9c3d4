//! An OpenSSH-compatible `known_hosts` reader, matcher and writer.
//!
//! Supported: plain host patterns (comma lists, `*`/`?` wildcards, `!negation`), `[host]:port`
//! names, hashed names (`|1|salt|hash`, HMAC-SHA1 as written by `ssh-keygen -H` and
//! `HashKnownHosts yes`), `@cert-authority` lines (host certificates signed by a trusted CA) and
//! `@revoked` lines. Unparseable lines are skipped and reported, like OpenSSH does.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{Algorithm, Certificate, HashAlg, PublicKey};
use sha1::{Digest as _, Sha1};

/// What to do with a host key that is not in `known_hosts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Only known keys are accepted (OpenSSH `StrictHostKeyChecking yes`). The default.
    #[default]
    Strict,
    /// Unknown hosts are accepted and recorded; a changed key is still refused.
    AcceptNew,
    /// Nothing is checked. Loudly warned about; for throwaway labs only.
    Off,
}

impl std::str::FromStr for HostKeyPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "strict" | "yes" => Ok(HostKeyPolicy::Strict),
            "accept-new" => Ok(HostKeyPolicy::AcceptNew),
            "off" | "no" => Ok(HostKeyPolicy::Off),
            other => Err(format!(
                "unknown host key policy `{other}`: expected strict, accept-new or off"
            )),
        }
    }
}

impl fmt::Display for HostKeyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostKeyPolicy::Strict => "strict",
            HostKeyPolicy::AcceptNew => "accept-new",
            HostKeyPolicy::Off => "off",
        })
    }
}

/// Where a line came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    pub line: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    None,
    CertAuthority,
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Hosts {
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    Patterns(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub source: Source,
    pub marker: Marker,
    hosts: Hosts,
    pub key: PublicKey,
}

/// A line that was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub source: Source,
    pub reason: String,
}

/// The name OpenSSH looks up for `host` on `port`: the host itself on port 22, else `[host]:port`.
pub fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// `SHA256:<base64>` as printed by OpenSSH.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The key type name (`ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, …).
pub fn key_type(key: &PublicKey) -> String {
    key.algorithm().as_str().to_owned()
}

/// The result of looking a presented key up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// A line for this host has exactly this key.
    Known(Source),
    /// The key is listed as `@revoked`.
    Revoked(Source),
    /// The host is known, but with other keys (fingerprint, key type, where).
    Changed(Vec<(String, String, Source)>),
    /// Nothing about this host.
    Unknown,
}

/// The result of checking a host certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertCheck {
    /// Signed by a CA trusted for this host (`@cert-authority` line), valid now, principal matches.
    Trusted(Source),
    /// The CA or the certified key is revoked.
    Revoked(Source),
    /// No trusted CA for this host signed it.
    UntrustedCa,
    /// Trusted CA, but the certificate itself is not acceptable.
    Invalid(String),
}

/// All entries of one or more known_hosts files.
///
/// Lookups are indexed, so a fleet's known_hosts of N lines costs O(1) per host rather than
/// O(N): lines whose patterns are all plain names sit in a map from the lowercased name; only
/// lines with wildcards, negations or hashed names are scanned (OpenSSH scans every line), and
/// `@revoked` lines are kept apart. Matches come back in file order either way.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
    skipped: Vec<Skipped>,
    /// Lowercased plain name → indices of the lines naming it, in file order.
    by_name: HashMap<String, Vec<usize>>,
    /// Lines that must be matched one by one: wildcards, negations, hashed names.
    scan: Vec<usize>,
    /// `@revoked` lines.
    revoked: Vec<usize>,
}

impl KnownHosts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse `text` as the contents of `path`, adding its entries.
    pub fn add_text(&mut self, path: &Path, text: &str) {
        for (i, raw) in text.lines().enumerate() {
            let source = Source {
                path: path.to_owned(),
                line: i + 1,
            };
            match parse_line(raw) {
                Ok(Some((marker, hosts, key))) => self.push(Entry {
                    source,
                    marker,
                    hosts,
                    key,
                }),
                Ok(None) => {}
                Err(reason) => self.skipped.push(Skipped { source, reason }),
            }
        }
    }

    /// Read `path`; a missing file is empty.
    pub fn add_file(&mut self, path: &Path) -> io::Result<()> {
        match fs::read_to_string(path) {
            Ok(text) => {
                self.add_text(path, &text);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    fn push(&mut self, e: Entry) {
        let i = self.entries.len();
        if e.marker == Marker::Revoked {
            self.revoked.push(i);
        }
        match e.hosts.plain_names() {
            Some(names) => {
                for n in names {
                    let slot = self.by_name.entry(n).or_default();
                    if slot.last() != Some(&i) {
                        slot.push(i);
                    }
                }
            }
            None => self.scan.push(i),
        }
        self.entries.push(e);
    }

    /// The lines whose host patterns match `name`, in file order.
    fn matching(&self, name: &str) -> Vec<&Entry> {
        let exact = self
            .by_name
            .get(&name.to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut idx: Vec<usize> = exact.to_vec();
        idx.extend(
            self.scan
                .iter()
                .copied()
                .filter(|&i| self.entries[i].hosts.matches(name)),
        );
        idx.sort_unstable();
        idx.into_iter().map(|i| &self.entries[i]).collect()
    }

    fn revoked_entries(&self) -> impl Iterator<Item = &Entry> {
        self.revoked.iter().map(|&i| &self.entries[i])
    }

    /// Look up a plain host key presented by `host:port`.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> Check {
        let name = lookup_name(host, port);
        // A revoked key is refused whatever host line it is on.
        if let Some(e) = self
            .revoked_entries()
            .find(|e| e.key.key_data() == key.key_data())
        {
            return Check::Revoked(e.source.clone());
        }
        let mut others = Vec::new();
        for e in self
            .matching(&name)
            .into_iter()
            .filter(|e| e.marker == Marker::None)
        {
            if e.key.key_data() == key.key_data() {
                return Check::Known(e.source.clone());
            }
            others.push((fingerprint(&e.key), key_type(&e.key), e.source.clone()));
        }
        if others.is_empty() {
            Check::Unknown
        } else {
            Check::Changed(others)
        }
    }

    /// Check a host certificate presented by `host:port` at unix time `now`.
    pub fn check_cert(&self, host: &str, port: u16, cert: &Certificate, now: u64) -> CertCheck {
        let name = lookup_name(host, port);
        let signer = cert.signature_key();
        let certified = cert.public_key();
        if let Some(e) = self
            .revoked_entries()
            .find(|e| e.key.key_data() == signer || e.key.key_data() == certified)
        {
            return CertCheck::Revoked(e.source.clone());
        }
        let Some(ca) = self
            .matching(&name)
            .into_iter()
            .find(|e| e.marker == Marker::CertAuthority && e.key.key_data() == signer)
        else {
            return CertCheck::UntrustedCa;
        };
        if cert.cert_type() != CertType::Host {
            return CertCheck::Invalid("it is a user certificate, not a host certificate".into());
        }
        let fp = ca.key.fingerprint(HashAlg::Sha256);
        if cert.validate_at(now, [&fp]).is_err() {
            return CertCheck::Invalid(format!(
                "signature or validity period check failed (valid {}..{}, now {now})",
                cert.valid_after(),
                cert.valid_before()
            ));
        }
        if !cert.critical_options().is_empty() {
            return CertCheck::Invalid(
                "it has critical options, which host certificates must not have".into(),
            );
        }
        let principals = cert.valid_principals();
        if !principals.is_empty() && !principals.iter().any(|p| p == host) {
            return CertCheck::Invalid(format!(
                "its principals ({}) do not include {host}",
                principals.join(", ")
            ));
        }
        CertCheck::Trusted(ca.source.clone())
    }

    /// Is any `@cert-authority` line trusted for this host? (Then host certificates are asked for.)
    pub fn has_cert_authority(&self, host: &str, port: u16) -> bool {
        let name = lookup_name(host, port);
        self.matching(&name)
            .iter()
            .any(|e| e.marker == Marker::CertAuthority)
    }

    /// Key algorithms already known for this host, in file order, so the key exchange can
    /// ask for those first (as OpenSSH does) and a host with several keys is not mistaken
    /// for a changed one.
    pub fn known_algorithms(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let name = lookup_name(host, port);
        let mut out: Vec<Algorithm> = Vec::new();
        for e in self
            .matching(&name)
            .into_iter()
            .filter(|e| e.marker == Marker::None)
        {
            let alg = e.key.algorithm();
            if !out.contains(&alg) {
                out.push(alg);
            }
        }
        out
    }

    /// Add an in-memory entry (after it was written with [`append_entry`]).
    pub fn insert(&mut self, source: Source, name: &str, key: PublicKey) {
        self.push(Entry {
            source,
            marker: Marker::None,
            hosts: Hosts::Patterns(vec![name.to_owned()]),
            key,
        });
    }
}

impl Hosts {
    /// The lowercased names, when every pattern is a plain name (no wildcard, no negation, not
    /// hashed): such a line matches exactly those names.
    fn plain_names(&self) -> Option<Vec<String>> {
        match self {
            Hosts::Hashed { .. } => None,
            Hosts::Patterns(pats) => {
                if pats
                    .iter()
                    .any(|p| p.starts_with('!') || p.contains(['*', '?']))
                {
                    None
                } else {
                    Some(pats.iter().map(|p| p.to_ascii_lowercase()).collect())
                }
            }
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Hosts::Hashed { salt, hash } => hmac_sha1(salt, name.as_bytes()).as_slice() == hash,
            Hosts::Patterns(pats) => {
                let mut hit = false;
                for p in pats {
                    if let Some(neg) = p.strip_prefix('!') {
                        if wildcard_match(&neg.to_ascii_lowercase(), &name.to_ascii_lowercase()) {
                            return false;
                        }
                    } else if wildcard_match(&p.to_ascii_lowercase(), &name.to_ascii_lowercase()) {
                        hit = true;
                    }
                }
                hit
            }
        }
    }
}

type Parsed = (Marker, Hosts, PublicKey);

fn parse_line(raw: &str) -> Result<Option<Parsed>, String> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut words = line.split_whitespace();
    let mut first = words.next().unwrap_or_default();
    let marker = match first {
        "@cert-authority" => Marker::CertAuthority,
        "@revoked" => Marker::Revoked,
        m if m.starts_with('@') => return Err(format!("unknown marker `{m}`")),
        _ => Marker::None,
    };
    if marker != Marker::None {
        first = words.next().ok_or("missing host patterns")?;
    }
    let hosts = if let Some(rest) = first.strip_prefix("|1|") {
        let (salt, hash) = rest.split_once('|').ok_or("malformed hashed host name")?;
        let salt = B64
            .decode(salt)
            .map_err(|e| format!("bad salt in hashed host name: {e}"))?;
        let hash = B64
            .decode(hash)
            .map_err(|e| format!("bad hash in hashed host name: {e}"))?;
        if hash.len() != 20 {
            return Err("bad hash length in hashed host name".into());
        }
        Hosts::Hashed { salt, hash }
    } else {
        Hosts::Patterns(
            first
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    };
    let ktype = words.next().ok_or("missing key type")?;
    let kdata = words.next().ok_or("missing key data")?;
    let key = PublicKey::from_openssh(&format!("{ktype} {kdata}"))
        .map_err(|e| format!("unreadable {ktype} key: {e}"))?;
    Ok(Some((marker, hosts, key)))
}

/// OpenSSH `match_pattern`: `*` any run, `?` one character.
pub fn wildcard_match(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = s.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn hmac_sha1(key: &[u8], msg: &[u8]) -> [u8; 20] {
    const B: usize = 64;
    let mut k = [0u8; B];
    if key.len() > B {
        k[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha1::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let ih = inner.finalize();
    let mut outer = Sha1::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(ih);
    outer.finalize().into()
}

/// The line recorded for a newly accepted key.
pub fn entry_line(name: &str, key: &PublicKey) -> String {
    let mut k = key.clone();
    k.set_comment("");
    let text = k.to_openssh().unwrap_or_default();
    format!("{name} {}", text.trim_end())
}

/// Append `name key` to the known_hosts file `path` atomically: under an exclusive lock on
/// `<path>.lock`, re-read the file, skip if an identical entry appeared meanwhile, write the
/// whole new contents to a temporary file in the same directory, fsync it, and rename it over
/// `path`. Returns the line number of the entry.
pub fn append_entry(path: &Path, name: &str, key: &PublicKey) -> io::Result<usize> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)?;
    tarmac_fsx::lock_exclusive(&lock, true)?;

    let current = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mut existing = KnownHosts::new();
    existing.add_text(path, &current);
    if let Check::Known(src) = existing.check_name(name, key) {
        return Ok(src.line);
    }
    let mut text = current;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&entry_line(name, key));
    text.push('\n');
    let line = text.lines().count();

    // Keep the file's mode (0644 for a new one, as ssh writes it), from the first byte.
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o644);
    tarmac_fsx::write_atomic(path, text.as_bytes(), mode)?;
    Ok(line)
}

impl KnownHosts {
    /// Like [`check`](Self::check) with a ready-made lookup name.
    fn check_name(&self, name: &str, key: &PublicKey) -> Check {
        for e in self
            .matching(name)
            .into_iter()
            .filter(|e| e.marker == Marker::None)
        {
            if e.key.key_data() == key.key_data() {
                return Check::Known(e.source.clone());
            }
        }
        Check::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGMFa0hHScT+srzB6VWwWEVuiWel5MfJXOiTGldE6H2j";
    const FP_A: &str = "SHA256:k2jiXGqqlAabyCyLL39KO7todcmPOM0o6NpKxyvfAPI";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIItJuMUR1i/EUFIdiEkSbdyREkutHzNxsJ1QEwTyOFYT";
    const FP_B: &str = "SHA256:GAiwf2crx65eeLSQ+Rhni+rq+IkJTBSk1ghXqUKHhWY";
    const KEY_C: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMLY9ViTDN1dRjRrvVoPNLD0hTCJqrjr9TjMvU1Xylr6tBRdpf/lXGvQK3fD424TEh2zTMVUPTDaRLwW5sqgJ78=";
    const FP_C: &str = "SHA256:nt1Ml84CeyAYlYuLmGYPdyAi1H59MeumvTC+XCi+noQ";
    const CA: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEJnmHm4nip7bRDwwU+Vm8WTOywrFAESLCQlT9Lkptv5";
    // ssh-keygen -s ca -h -n node1.example.com,10.0.0.9 -V -1d:+3650d hostA.pub
    const CERT_A: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIO7WbDXtdGwvHVbI+BlYPDfBRfYe528dv7YjdMRluMDIAAAAIGMFa0hHScT+srzB6VWwWEVuiWel5MfJXOiTGldE6H2jAAAAAAAAAAAAAAACAAAACmhvc3RBLWNlcnQAAAAhAAAAEW5vZGUxLmV4YW1wbGUuY29tAAAACDEwLjAuMC45AAAAAGr/zfMAAAAAfc0icwAAAAAAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgQmeYebieKnttEPDBT5WbxZM7LCsUARIsJCVP0uSm2/kAAABTAAAAC3NzaC1lZDI1NTE5AAAAQH4e7STSwPRPFveCjEQm9WgF4YK4tiqI/wMaataZpSjQs1ffBiUw+PXvP7pHVQYETIOAkgWGt2yecaiDPdFT+gw= hostA";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    fn kh(text: &str) -> KnownHosts {
        let mut k = KnownHosts::new();
        k.add_text(Path::new("/kh"), text);
        k
    }

    fn src(line: usize) -> Source {
        Source {
            path: "/kh".into(),
            line,
        }
    }

    #[test]
    fn fingerprints_match_ssh_keygen() {
        assert_eq!(fingerprint(&key(KEY_A)), FP_A);
        assert_eq!(fingerprint(&key(KEY_B)), FP_B);
        assert_eq!(fingerprint(&key(KEY_C)), FP_C);
        assert_eq!(key_type(&key(KEY_C)), "ecdsa-sha2-nistp256");
    }

    #[test]
    fn plain_entries_and_ports() {
        let k = kh(&format!(
            "# comment\n\n10.0.0.1 {KEY_A}\n[10.0.0.2]:2222 {KEY_B} c\n"
        ));
        assert_eq!(k.check("10.0.0.1", 22, &key(KEY_A)), Check::Known(src(3)));
        assert_eq!(k.check("10.0.0.2", 2222, &key(KEY_B)), Check::Known(src(4)));
        // The same host on another port is a different name.
        assert_eq!(k.check("10.0.0.2", 22, &key(KEY_B)), Check::Unknown);
        assert_eq!(k.check("10.0.0.1", 2200, &key(KEY_A)), Check::Unknown);
        assert_eq!(
            k.check("10.0.0.1", 22, &key(KEY_B)),
            Check::Changed(vec![(FP_A.into(), "ssh-ed25519".into(), src(3))])
        );
    }

    #[test]
    fn hashed_entries_from_ssh_keygen_h() {
        // `ssh-keygen -H` of "10.0.0.1 A" and "[10.0.0.2]:2222 B".
        let k = kh(&format!(
            "|1|fdrdu78bQl6MWL3+5qsbeE2GlcM=|fPXIHOeJRmmmHDCaxL/+uAusH20= {KEY_A}\n\
             |1|fOj4y1RVAmmfamLXcJOTbqbXKUg=|2INOGrUwVDIr/BFkBBNrG4t+EM0= {KEY_B}\n"
        ));
        assert_eq!(k.check("10.0.0.1", 22, &key(KEY_A)), Check::Known(src(1)));
        assert_eq!(k.check("10.0.0.2", 2222, &key(KEY_B)), Check::Known(src(2)));
        assert_eq!(k.check("10.0.0.3", 22, &key(KEY_A)), Check::Unknown);
        assert_eq!(
            k.check("10.0.0.2", 2222, &key(KEY_A)),
            Check::Changed(vec![(FP_B.into(), "ssh-ed25519".into(), src(2))])
        );
    }

    #[test]
    fn comma_lists_wildcards_negation() {
        let k = kh(&format!(
            "node1,10.0.0.5 {KEY_A}\n10.1.*,!10.1.0.9 {KEY_B}\nn?de-x {KEY_C}\n"
        ));
        assert_eq!(k.check("node1", 22, &key(KEY_A)), Check::Known(src(1)));
        assert_eq!(k.check("10.0.0.5", 22, &key(KEY_A)), Check::Known(src(1)));
        assert_eq!(k.check("NODE1", 22, &key(KEY_A)), Check::Known(src(1)));
        assert_eq!(k.check("10.1.2.3", 22, &key(KEY_B)), Check::Known(src(2)));
        assert_eq!(k.check("10.1.0.9", 22, &key(KEY_B)), Check::Unknown);
        assert_eq!(k.check("node-x", 22, &key(KEY_C)), Check::Known(src(3)));
        assert_eq!(k.check("noode-x", 22, &key(KEY_C)), Check::Unknown);
    }

    #[test]
    fn several_key_types_and_preference() {
        let k = kh(&format!("h {KEY_C}\nh {KEY_A}\n"));
        assert_eq!(k.check("h", 22, &key(KEY_A)), Check::Known(src(2)));
        assert_eq!(
            k.known_algorithms("h", 22),
            vec![key(KEY_C).algorithm(), key(KEY_A).algorithm()]
        );
        assert!(k.known_algorithms("other", 22).is_empty());
    }

    #[test]
    fn indexed_and_scanned_lines_keep_file_order() {
        // Line 1 is scanned (wildcard), 2 indexed, 3 hashed (scanned), 4 indexed: the changed-key
        // report lists them in file order whichever way each was found.
        let k = kh(&format!(
            "10.0.0.* {KEY_C}\n10.0.0.1 {KEY_B}\n\
             |1|fdrdu78bQl6MWL3+5qsbeE2GlcM=|fPXIHOeJRmmmHDCaxL/+uAusH20= {KEY_B}\n\
             10.0.0.1,10.0.0.1 {KEY_C}\n"
        ));
        assert_eq!(
            k.check("10.0.0.1", 22, &key(KEY_A)),
            Check::Changed(vec![
                (FP_C.into(), "ecdsa-sha2-nistp256".into(), src(1)),
                (FP_B.into(), "ssh-ed25519".into(), src(2)),
                (FP_B.into(), "ssh-ed25519".into(), src(3)),
                (FP_C.into(), "ecdsa-sha2-nistp256".into(), src(4)),
            ])
        );
        assert_eq!(k.check("10.0.0.1", 22, &key(KEY_C)), Check::Known(src(1)));
        assert_eq!(k.check("10.0.0.2", 22, &key(KEY_C)), Check::Known(src(1)));
    }

    #[test]
    fn a_fleet_sized_file_finds_each_host() {
        let mut text = String::new();
        for i in 0..20_000u32 {
            let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
            text.push_str(&format!("[{ip}]:2222 {KEY_A}\n{ip} {KEY_B}\n"));
        }
        let k = kh(&text);
        // Host 19999 = 10.0.78.31: its port-22 line is line 2 × 19999 + 2.
        assert_eq!(
            k.check("10.0.78.31", 22, &key(KEY_B)),
            Check::Known(src(40_000))
        );
        assert_eq!(
            k.check("10.0.78.31", 2222, &key(KEY_A)),
            Check::Known(src(39_999))
        );
        assert_eq!(k.check("10.0.78.32", 22, &key(KEY_B)), Check::Unknown);
        assert!(!k.has_cert_authority("10.0.0.1", 22));
    }

    #[test]
    fn revoked_wins() {
        let k = kh(&format!("10.0.0.1 {KEY_A}\n@revoked * {KEY_A}\n"));
        assert_eq!(k.check("10.0.0.1", 22, &key(KEY_A)), Check::Revoked(src(2)));
    }

    #[test]
    fn bad_lines_are_skipped_with_reasons() {
        let k = kh(&format!(
            "h1 ssh-ed25519\nh2 ssh-ed25519 !!!notbase64\n@foo h {KEY_A}\nh3 {KEY_B}\n"
        ));
        assert_eq!(k.entries().len(), 1);
        let reasons: Vec<_> = k
            .skipped()
            .iter()
            .map(|s| (s.source.line, s.reason.clone()))
            .collect();
        assert_eq!(reasons[0], (1, "missing key data".into()));
        assert_eq!(reasons[1].0, 2);
        assert!(
            reasons[1].1.starts_with("unreadable ssh-ed25519 key"),
            "{reasons:?}"
        );
        assert_eq!(reasons[2], (3, "unknown marker `@foo`".into()));
    }

    #[test]
    fn cert_authority() {
        let cert = Certificate::from_openssh(CERT_A).unwrap();
        let now = cert.valid_after() + 60;
        let k = kh(&format!("@cert-authority *.example.com,10.0.0.* {CA}\n"));
        assert!(k.has_cert_authority("node1.example.com", 22));
        assert!(!k.has_cert_authority("other.org", 22));
        assert_eq!(
            k.check_cert("node1.example.com", 22, &cert, now),
            CertCheck::Trusted(src(1))
        );
        assert_eq!(
            k.check_cert("10.0.0.9", 22, &cert, now),
            CertCheck::Trusted(src(1))
        );
        assert_eq!(
            k.check_cert("node2.example.com", 22, &cert, now),
            CertCheck::Invalid(
                "its principals (node1.example.com, 10.0.0.9) do not include node2.example.com"
                    .into()
            )
        );
        assert!(matches!(
            k.check_cert("node1.example.com", 22, &cert, cert.valid_before() + 1),
            CertCheck::Invalid(m) if m.starts_with("signature or validity period check failed")
        ));
        assert_eq!(
            k.check_cert("other.org", 22, &cert, now),
            CertCheck::UntrustedCa
        );
        let k = kh(&format!("@cert-authority * {CA}\n@revoked * {CA}\n"));
        assert_eq!(
            k.check_cert("node1.example.com", 22, &cert, now),
            CertCheck::Revoked(src(2))
        );
        // A CA line is not a host key.
        let k = kh(&format!("@cert-authority * {KEY_A}\n"));
        assert_eq!(k.check("10.0.0.1", 22, &key(KEY_A)), Check::Unknown);
    }

    #[test]
    fn lookup_names() {
        assert_eq!(lookup_name("10.0.0.1", 22), "10.0.0.1");
        assert_eq!(lookup_name("10.0.0.1", 2222), "[10.0.0.1]:2222");
        assert_eq!(lookup_name("fd00::1", 2222), "[fd00::1]:2222");
        assert_eq!(
            entry_line("[fd00::1]:2222", &key(&format!("{KEY_A} comment"))),
            format!("[fd00::1]:2222 {KEY_A}")
        );
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*c", "abbbc"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(wildcard_match("[10.0.0.*]:2222", "[10.0.0.7]:2222"));
        assert!(!wildcard_match("10.0.0.*", "[10.0.0.7]:2222"));
    }

    #[test]
    fn append_is_atomic_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/known_hosts");
        assert_eq!(append_entry(&p, "10.0.0.1", &key(KEY_A)).unwrap(), 1);
        assert_eq!(append_entry(&p, "[10.0.0.2]:2222", &key(KEY_B)).unwrap(), 2);
        assert_eq!(append_entry(&p, "10.0.0.1", &key(KEY_A)).unwrap(), 1);
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            format!("10.0.0.1 {KEY_A}\n[10.0.0.2]:2222 {KEY_B}\n")
        );
        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, vec!["known_hosts", "known_hosts.lock"]);
    }
}
