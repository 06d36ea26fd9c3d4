//! The plan of a rolling upgrade: batches and failure budgets, waves, what changes on
//! each host, and the archives it is read from.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::str::FromStr;
use tarmac_pkg::pkginfo::OnChange;

use serde::{Deserialize, Serialize};
use tarmac_types::{HostAddr, PackageId, Role};

/// `--batch`: a number of hosts or a percentage of the agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    Count(usize),
    Percent(u32),
}

/// The default `--batch` (CLI, web API and library): a tenth of the agents.
pub const DEFAULT_BATCH: &str = "10%";

impl BatchSize {
    /// [`DEFAULT_BATCH`] parsed.
    pub const DEFAULT: BatchSize = BatchSize::Percent(10);

    /// Hosts per batch out of `total` (at least 1).
    pub fn of(self, total: usize) -> usize {
        match self {
            BatchSize::Count(n) => n.max(1),
            BatchSize::Percent(p) => (total * p as usize).div_ceil(100).max(1),
        }
    }
}

impl FromStr for BatchSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match parse_count_or_percent(s)? {
            (n, false) if n > 0 => Ok(BatchSize::Count(n)),
            (p, true) if (1..=100).contains(&p) => Ok(BatchSize::Percent(p as u32)),
            _ => Err(format!(
                "`{s}`: a batch is a number ≥ 1 or a percentage 1%–100%"
            )),
        }
    }
}

/// `--max-failures`: how many agents may fail before the upgrade stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Count(usize),
    Percent(u32),
}

impl Budget {
    /// Failures tolerated out of `total` hosts.
    pub fn allowed(self, total: usize) -> usize {
        match self {
            Budget::Count(n) => n,
            Budget::Percent(p) => total * p as usize / 100,
        }
    }
}

impl FromStr for Budget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match parse_count_or_percent(s)? {
            (n, false) => Ok(Budget::Count(n)),
            (p, true) if p <= 100 => Ok(Budget::Percent(p as u32)),
            _ => Err(format!(
                "`{s}`: a failure budget is a number or a percentage 0%–100%"
            )),
        }
    }
}

fn parse_count_or_percent(s: &str) -> Result<(usize, bool), String> {
    let t = s.trim();
    let (num, pct) = match t.strip_suffix('%') {
        Some(n) => (n, true),
        None => (t, false),
    };
    num.trim()
        .parse::<usize>()
        .map(|n| (n, pct))
        .map_err(|_| format!("`{s}` is neither a number nor a percentage"))
}

/// One step of the rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wave {
    /// Masters go alone, gated on the cluster checks.
    pub masters: bool,
    pub hosts: Vec<(HostAddr, Role)>,
}

/// The order: every master alone (in config order), then agents and public agents in
/// batches of `batch`.
pub fn waves(hosts: &[(HostAddr, Role)], batch: BatchSize) -> Vec<Wave> {
    let mut out: Vec<Wave> = hosts
        .iter()
        .filter(|(_, r)| *r == Role::Master)
        .map(|h| Wave {
            masters: true,
            hosts: vec![h.clone()],
        })
        .collect();
    let others: Vec<(HostAddr, Role)> = hosts
        .iter()
        .filter(|(_, r)| *r != Role::Master)
        .cloned()
        .collect();
    let size = batch.of(others.len());
    for chunk in others.chunks(size) {
        out.push(Wave {
            masters: false,
            hosts: chunk.to_vec(),
        });
    }
    out
}

// ---------------------------------------------------------------------------------------
// The plan

/// A systemd unit shipped by a package, with the role its directory is restricted to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitFile {
    pub role: Option<Role>,
    pub name: String,
}

/// What happens to one package name on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageChange {
    pub name: String,
    pub from: Option<PackageId>,
    pub to: Option<PackageId>,
}

/// What an upgrade does on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPlan {
    pub host: HostAddr,
    pub role: Role,
    pub changes: Vec<PackageChange>,
    /// Units of new or changed packages (restarted or started by the switch), and units of
    /// unchanged packages whose watched files change (a new config package).
    pub restarts: Vec<String>,
    /// Unit → why it restarts although its package is unchanged (`etc/etcd/etcd.env changed`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub restart_reasons: BTreeMap<String, String>,
    /// Packages whose units stop for good.
    pub stops: Vec<PackageId>,
    /// Units of unchanged packages that only reload (`reload_on_change`): no restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reloads: Vec<String>,
    /// Unit → why it reloads (`etc/prometheus/prometheus.yml changed`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reload_reasons: BTreeMap<String, String>,
}

impl HostPlan {
    pub fn unchanged(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Compare a host's active ids with the target list. `units` gives the units each target
/// package ships (packages absent from it ship none as far as the plan knows).
pub fn host_plan(
    host: &HostAddr,
    role: Role,
    current: &[PackageId],
    target: &[PackageId],
    archives: &BTreeMap<PackageId, ArchiveInfo>,
    watched_now: Option<&BTreeMap<String, String>>,
) -> HostPlan {
    let units = |id: &PackageId| archives.get(id).map(|a| a.units.as_slice()).unwrap_or(&[]);
    let by_name = |ids: &[PackageId]| -> BTreeMap<String, PackageId> {
        ids.iter()
            .map(|i| (i.name().to_string(), i.clone()))
            .collect()
    };
    let cur = by_name(current);
    let tgt = by_name(target);
    let mut names: Vec<&String> = cur.keys().chain(tgt.keys()).collect();
    names.sort();
    names.dedup();
    let mut changes = Vec::new();
    let mut restarts = Vec::new();
    let mut stops = Vec::new();
    for name in names {
        let (from, to) = (cur.get(name), tgt.get(name));
        if from == to {
            continue;
        }
        if let Some(t) = to {
            for u in units(t) {
                if u.role.is_none_or(|r| r == role) && !restarts.contains(&u.name) {
                    restarts.push(u.name.clone());
                }
            }
        } else if let Some(f) = from {
            stops.push(f.clone());
        }
        changes.push(PackageChange {
            name: name.clone(),
            from: from.cloned(),
            to: to.cloned(),
        });
    }
    // Unchanged packages whose watched files change on this host restart too.
    let mut restart_reasons = BTreeMap::new();
    let mut reloads = Vec::new();
    let mut reload_reasons = BTreeMap::new();
    if let Some(now) = watched_now {
        let next = target_tree(role, target, archives);
        for (name, id) in &tgt {
            if cur.get(name) != Some(id) {
                continue;
            }
            let Some(a) = archives.get(id) else { continue };
            let for_role: Vec<&UnitFile> = a
                .units
                .iter()
                .filter(|u| u.role.is_none_or(|r| r == role) && !restarts.contains(&u.name))
                .collect();
            if for_role.is_empty() {
                continue;
            }
            let rules = a.rules();
            let mut files: Vec<String> = rules
                .iter()
                .flat_map(|(w, _)| differences(now, &next, w))
                .collect();
            files.sort();
            files.dedup();
            match tarmac_pkg::pkginfo::on_change(&rules, files.iter().map(String::as_str)) {
                Some((OnChange::Restart, path)) => {
                    for u in for_role {
                        restarts.push(u.name.clone());
                        restart_reasons.insert(u.name.clone(), format!("{path} changed"));
                    }
                }
                Some((OnChange::Reload, path)) => {
                    for u in for_role {
                        reloads.push(u.name.clone());
                        reload_reasons.insert(u.name.clone(), format!("{path} changed"));
                    }
                }
                None => {}
            }
        }
    }
    restarts.sort();
    reloads.sort();
    HostPlan {
        host: host.clone(),
        role,
        changes,
        restarts,
        restart_reasons,
        stops,
        reloads,
        reload_reasons,
    }
}

/// Every file under `prefix` whose digest differs between two trees (or that only one has).
pub fn differences(
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
    prefix: &str,
) -> Vec<String> {
    let under = format!("{prefix}/");
    let inside = |k: &String| *k == prefix || k.starts_with(&under);
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).filter(|k| inside(k)).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

/// The first file under `prefix` whose digest differs between two trees (or that only one
/// has).
pub fn first_difference(
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
    prefix: &str,
) -> Option<String> {
    let under = format!("{prefix}/");
    let pick = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.iter()
            .filter(|(k, _)| *k == prefix || k.starts_with(&under))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let (x, y) = (pick(a), pick(b));
    let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().find(|k| x.get(*k) != y.get(*k)).cloned()
}

/// The merged tree a host with `role` gets from `target`: `etc/etcd/etcd.env` → sha256.
pub fn target_tree(
    role: Role,
    target: &[PackageId],
    archives: &BTreeMap<PackageId, ArchiveInfo>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for id in target {
        let Some(a) = archives.get(id) else { continue };
        for (path, digest) in &a.files {
            let Some((dir, rest)) = path.split_once('/') else {
                continue;
            };
            let (base, r) = Role::split_dir(dir);
            if r.is_none_or(|r| r == role) {
                out.insert(format!("{base}/{rest}"), digest.clone());
            }
        }
    }
    out
}

/// The `--plan` text: the order, then per host what changes.
pub fn render_plan(target_list: &str, waves: &[Wave], plans: &[HostPlan]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "upgrade to cluster package list {target_list}");
    let changed = |h: &HostAddr| {
        plans
            .iter()
            .find(|p| &p.host == h)
            .is_some_and(|p| !p.unchanged())
    };
    let _ = writeln!(s, "order:");
    let mut step = 0;
    for w in waves {
        let todo: Vec<String> = w
            .hosts
            .iter()
            .filter(|(h, _)| changed(h))
            .map(|(h, _)| h.to_string())
            .collect();
        if todo.is_empty() {
            continue;
        }
        step += 1;
        if w.masters {
            let _ = writeln!(
                s,
                "  {step}. master {} (then cluster checks on every master)",
                todo.join(", ")
            );
        } else {
            let _ = writeln!(s, "  {step}. agents {}", todo.join(", "));
        }
    }
    if step == 0 {
        let _ = writeln!(s, "  nothing to do: every host is on the target list");
    }
    for p in plans {
        if p.unchanged() {
            let _ = writeln!(s, "{} ({}): unchanged", p.host, p.role.as_str());
            continue;
        }
        let _ = writeln!(s, "{} ({}):", p.host, p.role.as_str());
        for c in &p.changes {
            match (&c.from, &c.to) {
                (Some(f), Some(t)) => {
                    let _ = writeln!(s, "  change {}: {} -> {}", c.name, f.version(), t.version());
                }
                (None, Some(t)) => {
                    let _ = writeln!(s, "  add    {t}");
                }
                (Some(f), None) => {
                    let _ = writeln!(s, "  remove {f}");
                }
                (None, None) => {}
            }
        }
        if !p.restarts.is_empty() {
            let _ = writeln!(s, "  restart: {}", p.restarts.join(", "));
            for (unit, why) in &p.restart_reasons {
                let _ = writeln!(s, "    {unit}: {why}");
            }
        }
        if !p.reloads.is_empty() {
            let _ = writeln!(s, "  reload (no restart): {}", p.reloads.join(", "));
            for (unit, why) in &p.reload_reasons {
                let _ = writeln!(s, "    {unit}: {why}");
            }
        }
        if !p.stops.is_empty() {
            let stops: Vec<String> = p.stops.iter().map(|i| i.to_string()).collect();
            let _ = writeln!(s, "  stop the units of: {}", stops.join(", "));
        }
    }
    s
}

/// What the plan needs of a target package archive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// Entries `systemd/<unit>` or `systemd_<role>/<unit>`.
    pub units: Vec<UnitFile>,
    /// Every watched tree path: `etc/<name>`, `restart_on_change`, `reload_on_change` (the
    /// host reports the digests of the files under them).
    pub watched: Vec<String>,
    /// What a change under each watched path does (empty: every `watched` path restarts).
    pub rules: Vec<(String, OnChange)>,
    /// Regular files of the tree directories (`etc_master/etcd/etcd.env`) → sha256 hex.
    pub files: BTreeMap<String, String>,
}

/// Read a package archive (`.tar.zst`) for the plan: its units, watched paths and the
/// digests of its tree files.
pub fn read_archive(id: &PackageId, path: &Path) -> std::io::Result<ArchiveInfo> {
    let file = std::fs::File::open(path)?;
    let dec = zstd::stream::read::Decoder::new(file)?;
    let mut ar = tar::Archive::new(dec);
    let mut out = ArchiveInfo::default();
    let mut info = tarmac_pkg::pkginfo::PkgInfo::default();
    for e in ar.entries()? {
        let mut e = e?;
        let p = e.path()?.into_owned();
        let parts: Vec<String> = p
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        if !e.header().entry_type().is_file() {
            continue;
        }
        if let [dir, name] = parts.as_slice()
            && let Some(role) = unit_dir_role(dir)
        {
            out.units.push(UnitFile {
                role,
                name: name.clone(),
            });
        } else if let [name] = parts.as_slice()
            && name == "pkginfo.json"
        {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut b)?;
            info = tarmac_pkg::pkginfo::PkgInfo::parse(&b, &format!("{id}"))
                .map_err(std::io::Error::other)?;
        } else if parts.len() > 1
            && tarmac_pkg::pkginfo::WATCH_ROOTS.contains(&Role::split_dir(&parts[0]).0)
        {
            let d = tarmac_types::Digest::of_reader(&mut e)?;
            out.files.insert(parts.join("/"), d.hex());
        }
    }
    out.units.sort_by(|a, b| a.name.cmp(&b.name));
    out.rules = info.watch_rules(id.name().as_str());
    out.watched = out.rules.iter().map(|(p, _)| p.clone()).collect();
    out.watched.dedup();
    Ok(out)
}

impl ArchiveInfo {
    /// [`ArchiveInfo::rules`], or every watched path restarting when none were read.
    pub fn rules(&self) -> Vec<(String, OnChange)> {
        if self.rules.is_empty() {
            self.watched
                .iter()
                .map(|w| (w.clone(), OnChange::Restart))
                .collect()
        } else {
            self.rules.clone()
        }
    }
}

/// `systemd` → Some(None), `systemd_master` → Some(Some(Master)), anything else → None.
fn unit_dir_role(dir: &str) -> Option<Option<Role>> {
    match dir {
        "systemd" => Some(None),
        "systemd_master" => Some(Some(Role::Master)),
        "systemd_agent" => Some(Some(Role::Agent)),
        "systemd_agent_public" => Some(Some(Role::AgentPublic)),
        _ => None,
    }
}
