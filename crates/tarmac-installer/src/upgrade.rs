//! Rolling upgrade and rollback of a running cluster.
//!
//! Order: masters one at a time, each gated on its node checks and then the cluster checks
//! (`tarmac-host check` on every master, polled with backoff up to a deadline); then agents
//! and public agents in batches with a failure budget. Past the budget the run stops and the
//! hosts not yet touched stay on their version.
//!
//! Per host: upload the target package list and (over SSH) the secret files of its role,
//! `tarmac-host fetch` every package with its sha256 (services keep running), then the switch: arm a transient systemd timer that
//! rolls the host back to its previous generation unless it is confirmed, point the setup
//! flags at the new list and `tarmac-host activate` it. After the checks pass the installer
//! confirms over a *new* SSH connection (a fresh fleet); a host the installer cannot reach
//! any more reverts by itself when the window ends.
//!
//! Everything a host runs is built by the pure functions below (exact-string tests).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tarmac_events::{Event, Level, Outcome};
use tarmac_ssh::quote::quote;
use tarmac_ssh::{Exec, HostSession, StageReport, StepError, Target, Upload, UploadSource};
use tarmac_types::{HostAddr, PackageId, Role, Stage};

use crate::fsutil::write_atomic;
use crate::journal::new_run_id;
use crate::ledger;
use crate::lock::RunLock;
use crate::plan::{HOST_BIN, parse_status};
use crate::secrets::{Secrets, deliver as deliver_secrets};
use crate::serve::ArtifactServer;
use crate::stages::{Installer, InstallerError, ServeInfo, bootstrap_listen_addr, poll_checks};

/// The setup flags directory on a host.
pub const FLAGS_DIR: &str = "/etc/tarmac/setup-flags";
/// The cluster CA on a host (for an https bootstrap_url): the only CA tarmac-host trusts for it.
pub const REPOSITORY_CA_PATH: &str = tarmac_config::tls::HOST_CA_PATH;
/// Where the target package list is uploaded on a host.
pub const UPGRADE_DIR: &str = "/etc/tarmac/upgrade";
/// The transient systemd unit (timer + service) that reverts an unconfirmed switch.
pub const CONFIRM_UNIT: &str = "tarmac-confirm";

// ---------------------------------------------------------------------------------------
// Batches and failure budgets

/// `--batch`: a number of hosts or a percentage of the agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    Count(usize),
    Percent(u32),
}

impl BatchSize {
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
            if let Some(path) = a
                .watched
                .iter()
                .find_map(|w| first_difference(now, &next, w))
            {
                for u in for_role {
                    restarts.push(u.name.clone());
                    restart_reasons.insert(u.name.clone(), format!("{path} changed"));
                }
            }
        }
    }
    restarts.sort();
    HostPlan {
        host: host.clone(),
        role,
        changes,
        restarts,
        restart_reasons,
        stops,
    }
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
    /// Tree paths whose change restarts the units (`etc/<name>` + `restart_on_change`).
    pub watched: Vec<String>,
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
    out.watched = info.watched_paths(id.name().as_str());
    Ok(out)
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

// ---------------------------------------------------------------------------------------
// What a host runs

/// Active ids and the current generation (sections read by [`plan::parse_status`]), and
/// whether a switch is waiting for its confirmation (`== pending`).
pub fn inspect_script() -> String {
    format!(
        "echo '== active'; if [ -x {HOST_BIN} ]; then {HOST_BIN} active; fi; \
         echo '== generation'; readlink /opt/tarmac/current 2>/dev/null || true; \
         echo '== pending'; systemctl is-active {CONFIRM_UNIT}.timer 2>/dev/null || true"
    )
}

/// The switch step's inspection: first finish (or undo) a switch that was interrupted on
/// the host — an installer killed mid-activation drops its SSH session, which stops
/// `tarmac-host activate` between its commit point and starting the units — then
/// [`inspect_script`].
pub fn recover_and_inspect_script() -> String {
    format!(
        "if [ -e /opt/tarmac/switch-journal.json ]; then {HOST_BIN} --wait recover >&2 || exit 1; fi; {}",
        inspect_script()
    )
}

/// A switch of an earlier (interrupted) run is armed and not confirmed yet.
pub fn parse_pending(out: &str) -> bool {
    let mut inside = false;
    for line in out.lines() {
        if let Some(sec) = line.strip_prefix("== ") {
            inside = sec.trim() == "pending";
        } else if inside && line.trim() == "active" {
            return true;
        }
    }
    false
}

/// The plan's inspection: active ids and generation, then the sha256 of every file under
/// `watched` in the current generation (section `== watched`, `sha256sum` format).
pub fn plan_inspect_script(watched: &[String]) -> String {
    let mut s = inspect_script();
    if !watched.is_empty() {
        let paths: Vec<String> = watched.iter().map(|w| quote(w)).collect();
        let _ = write!(
            s,
            "; echo '== watched'; if [ -d /opt/tarmac/current ]; then cd /opt/tarmac/current && \
             find -L {} -type f -exec sha256sum {{}} + 2>/dev/null; fi; true",
            paths.join(" ")
        );
    }
    s
}

/// The `== watched` section: tree path → sha256 hex.
pub fn parse_watched(out: &str) -> BTreeMap<String, String> {
    let mut inside = false;
    let mut m = BTreeMap::new();
    for line in out.lines() {
        if let Some(sec) = line.strip_prefix("== ") {
            inside = sec.trim() == "watched";
            continue;
        }
        if inside && let Some((sum, path)) = line.split_once("  ") {
            m.insert(
                path.trim().trim_start_matches("./").to_owned(),
                sum.trim().to_owned(),
            );
        }
    }
    m
}

/// Where the target list goes on a host.
pub fn list_path(list_id: &str) -> String {
    format!("{UPGRADE_DIR}/{list_id}.package_list.json")
}

/// Download and verify every package of the list (nothing is activated; services keep running).
pub fn fetch_command(repository_url: &str, list_id: &str) -> String {
    format!(
        "{HOST_BIN} fetch --repository-url {} --package-list {} --require-sha256",
        quote(repository_url),
        list_path(list_id)
    )
}

/// Bring the host back to generation `prev` unless it is already there, and restore the
/// setup flags saved by the switch. Run by the confirm timer, or at once when checks fail.
/// The switch log records the rollback as `<op>/revert`.
pub fn revert_script(prev: u64, op: &str) -> String {
    let op = quote(&format!("{op}/revert"));
    format!(
        "cur=$(basename \"$(readlink /opt/tarmac/current)\"); \
         if [ \"$cur\" != {prev} ]; then TARMAC_OPERATION={op} {HOST_BIN} --wait rollback --to {prev} || exit 1; fi; \
         if [ -f {FLAGS_DIR}/cluster-package-list.prev ]; then \
         mv -f {FLAGS_DIR}/cluster-package-list.prev {FLAGS_DIR}/cluster-package-list; fi"
    )
}

/// The switch: arm the revert timer (`window` seconds), point the setup flags at the new
/// list (keeping the old one for the revert), activate it and print `GEN <n>`. A failed
/// activation reverts at once.
pub fn switch_script(
    prev: u64,
    window: Duration,
    list_id: &str,
    ids: &[PackageId],
    op: &str,
) -> String {
    let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    let revert = revert_script(prev, op);
    format!(
        "set -e\n\
         systemctl stop {CONFIRM_UNIT}.timer {CONFIRM_UNIT}.service 2>/dev/null || true\n\
         systemctl reset-failed {CONFIRM_UNIT}.timer {CONFIRM_UNIT}.service 2>/dev/null || true\n\
         mkdir -p {UPGRADE_DIR} && printf '%s\\n' {revert_q} > {UPGRADE_DIR}/revert.sh\n\
         systemd-run --quiet --unit={CONFIRM_UNIT} --description='Tarmac: revert to generation {prev} unless confirmed' --timer-property=AccuracySec=1s --on-active={secs}s /bin/sh {UPGRADE_DIR}/revert.sh\n\
         if [ -f {FLAGS_DIR}/cluster-package-list ] && [ ! -f {FLAGS_DIR}/cluster-package-list.prev ]; then cp -p {FLAGS_DIR}/cluster-package-list {FLAGS_DIR}/cluster-package-list.prev; fi\n\
         cp {list} {FLAGS_DIR}/cluster-package-list.new && mv -f {FLAGS_DIR}/cluster-package-list.new {FLAGS_DIR}/cluster-package-list\n\
         if ! {HOST_BIN} --wait activate {ids}; then\n  \
           echo 'activation failed: reverting to generation {prev}' >&2\n  \
           systemctl stop {CONFIRM_UNIT}.timer 2>/dev/null || true\n  \
           {revert}\n  \
           exit 1\n\
         fi\n\
         echo \"GEN $(basename \"$(readlink /opt/tarmac/current)\")\"\n",
        secs = window.as_secs().max(1),
        revert_q = quote(&revert),
        list = list_path(list_id),
        ids = ids.join(" "),
    )
}

/// Confirm generation `generation`: disarm the timer; fails when the host already reverted
/// (or is reverting).
pub fn confirm_script(generation: u64) -> String {
    format!(
        "systemctl stop {CONFIRM_UNIT}.timer 2>/dev/null || true\n\
         if systemctl is-active --quiet {CONFIRM_UNIT}.service; then echo 'too late: the host is reverting itself' >&2; exit 3; fi\n\
         cur=$(basename \"$(readlink /opt/tarmac/current)\")\n\
         if [ \"$cur\" != {generation} ]; then echo \"too late: the host reverted to generation $cur\" >&2; exit 3; fi\n\
         rm -f {FLAGS_DIR}/cluster-package-list.prev\n\
         systemctl reset-failed {CONFIRM_UNIT}.service 2>/dev/null || true\n\
         echo confirmed\n"
    )
}

/// Disarm the timer and revert at once (checks failed). `prev` unknown (a switch left
/// pending by an interrupted run): run the revert script that switch saved.
pub fn revert_now_script(prev: Option<u64>, op: &str) -> String {
    match prev {
        Some(prev) => format!(
            "systemctl stop {CONFIRM_UNIT}.timer 2>/dev/null || true\n{}\n",
            revert_script(prev, op)
        ),
        None => format!(
            "systemctl stop {CONFIRM_UNIT}.timer 2>/dev/null || true\n/bin/sh {UPGRADE_DIR}/revert.sh\n"
        ),
    }
}

/// `tarmac rollback`: back to the previous generation (or `to`), with the setup flags
/// pointing at what is then active so that a reboot stays there.
pub fn rollback_script(to: Option<u64>) -> String {
    let to = to.map(|n| format!(" --to {n}")).unwrap_or_default();
    format!(
        "set -e\n\
         systemctl stop {CONFIRM_UNIT}.timer 2>/dev/null || true\n\
         {HOST_BIN} --wait rollback{to}\n\
         {HOST_BIN} --json active > {FLAGS_DIR}/cluster-package-list.new\n\
         mv -f {FLAGS_DIR}/cluster-package-list.new {FLAGS_DIR}/cluster-package-list\n\
         rm -f {FLAGS_DIR}/cluster-package-list.prev\n\
         echo \"GEN $(basename \"$(readlink /opt/tarmac/current)\")\"\n"
    )
}

/// `GEN <n>` from the switch's output.
pub fn parse_generation(out: &str) -> Option<u64> {
    out.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("GEN ")?.trim().parse().ok())
}

// ---------------------------------------------------------------------------------------
// The run journal (resume)

/// `genconf/state/upgrade.json`: what the last upgrade or rollback did, per host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeState {
    pub operation: String,
    /// Target package list id (upgrade) or generation (`rollback --to`).
    pub target: String,
    pub finished: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Host → ok | unchanged | failed | reverted | untouched.
    pub hosts: BTreeMap<String, String>,
    /// The run ids this operation has used so far (an interrupted run, then its resumes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_ids: Vec<String>,
}

impl UpgradeState {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("upgrade.json")
    }

    pub fn load(state_dir: &Path) -> Option<UpgradeState> {
        let b = std::fs::read(Self::path(state_dir)).ok()?;
        serde_json::from_slice(&b).ok()
    }

    fn save(&self, state_dir: &Path) -> Result<(), InstallerError> {
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        let path = Self::path(state_dir);
        tarmac_fsx::create_private_dir(state_dir)
            .and_then(|()| write_atomic(&path, &bytes, 0o600))
            .map_err(|source| InstallerError::NoServe { path, source })
    }
}

// ---------------------------------------------------------------------------------------
// Execution

/// Options of `tarmac upgrade` / `tarmac rollback`.
#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    pub batch: BatchSize,
    pub max_failures: Budget,
    /// How long a switched host waits for its confirmation before it reverts.
    pub confirm_window: Duration,
    /// How long node and cluster checks may take to pass.
    pub check_deadline: Duration,
    /// Continue the interrupted run recorded in `state/upgrade.json`.
    pub resume: bool,
    /// Copy the new packages over SSH instead of letting hosts pull them over HTTP.
    pub push: bool,
    /// `rollback --to N`.
    pub to: Option<u64>,
}

impl Default for UpgradeOptions {
    fn default() -> Self {
        UpgradeOptions {
            batch: BatchSize::Count(1),
            max_failures: Budget::Count(0),
            confirm_window: Duration::from_secs(120),
            check_deadline: Duration::from_secs(300),
            resume: false,
            push: false,
            to: None,
        }
    }
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeReport {
    pub state: UpgradeState,
    pub journals: Vec<PathBuf>,
    pub log_dir: PathBuf,
}

impl UpgradeReport {
    /// Finished, not stopped, and every host ok or unchanged (failures within the budget
    /// still make the run unsuccessful).
    pub fn succeeded(&self) -> bool {
        self.state.finished
            && self.state.stopped.is_none()
            && self
                .state
                .hosts
                .values()
                .all(|s| s == "ok" || s == "unchanged")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Upgrade,
    Rollback,
}

/// A host the wave switched: its generations before and after.
#[derive(Debug, Clone, Copy)]
struct Switched {
    /// None: switched by an interrupted run (its saved revert script knows where to go).
    prev: Option<u64>,
    now: u64,
}

struct Runner<'a> {
    inst: &'a Installer,
    /// `Upgrade` (also for the plan's inspection) or `Rollback`.
    stage: Stage,
    run_id: String,
    log_dir: PathBuf,
    journals: Vec<PathBuf>,
    waves_run: usize,
}

impl Runner<'_> {
    /// One fleet over `hosts` (fresh connections), journaled.
    async fn fleet_run<F, Fut>(
        &mut self,
        what: &str,
        hosts: &[(HostAddr, Role)],
        deadline: Option<Duration>,
        job: F,
    ) -> Result<StageReport, InstallerError>
    where
        F: Fn(HostSession) -> Fut,
        Fut: Future<Output = Result<Outcome, StepError>>,
    {
        self.waves_run += 1;
        let run_id = format!("{}-{:03}-{what}", self.run_id, self.waves_run);
        let targets: Vec<Target> = hosts
            .iter()
            .map(|(h, r)| Target::new(h.clone()).with_role(*r))
            .collect();
        let (report, journal) = self
            .inst
            .journaled_fleet(self.stage, run_id, targets, &self.log_dir, deadline, job)
            .await?;
        self.journals.push(journal);
        Ok(report)
    }

    fn notice(&self, message: String) {
        self.inst.sink.emit(Event::Notice {
            level: Level::Info,
            message,
        });
    }
}

/// `--push`: copy `ids` from `serve_dir` into the host's push repository
/// (`/var/lib/tarmac-push/packages/<name>/<id>.tar.zst`, sha256-checked by the upload), from
/// where `tarmac-host fetch` takes them as from the HTTP server.
async fn push_packages(
    host: &HostSession,
    serve_dir: &Path,
    ids: &[PackageId],
) -> Result<(), StepError> {
    let dirs: Vec<String> = ids
        .iter()
        .map(|id| quote(&format!("{}/packages/{}", crate::plan::PUSH_DIR, id.name())))
        .collect();
    if dirs.is_empty() {
        return Ok(());
    }
    host.check(
        "push: prepare",
        Exec::root(format!("mkdir -p {}", dirs.join(" "))),
    )
    .await?;
    for id in ids {
        let rel = format!("packages/{}/{id}.tar.zst", id.name());
        let src = UploadSource::file(serve_dir.join(&rel)).map_err(|e| {
            failed(
                host.addr(),
                "push",
                format!("cannot read {}: {e}", serve_dir.join(&rel).display()),
            )
        })?;
        host.upload(
            &format!("push: {rel}"),
            &Upload::new(src, format!("{}/{rel}", crate::plan::PUSH_DIR))
                .mode(0o644)
                .root(),
        )
        .await?;
    }
    Ok(())
}

fn failed(host: &HostAddr, step: &str, message: String) -> StepError {
    StepError::Failed {
        host: host.clone(),
        step: step.into(),
        exit_code: None,
        signal: None,
        detail: format!("\n{message}"),
    }
}

impl Installer {
    /// The per-host plan of an upgrade to the current `genconf/serve` list (reads the hosts'
    /// active ids; changes nothing).
    pub async fn upgrade_plan(
        &self,
        batch: BatchSize,
    ) -> Result<(String, Vec<Wave>, Vec<HostPlan>), InstallerError> {
        let serve = ServeInfo::read(&self.genconf_dir)?;
        let hosts = self.selected();
        let mut archives = BTreeMap::new();
        let mut watched: Vec<String> = Vec::new();
        for id in &serve.packages {
            let p = serve
                .dir
                .join("packages")
                .join(id.name().to_string())
                .join(format!("{id}.tar.zst"));
            let info = read_archive(id, &p).map_err(|source| InstallerError::BadArchive {
                path: p.clone(),
                source,
            })?;
            for w in &info.watched {
                if !watched.contains(w) {
                    watched.push(w.clone());
                }
            }
            archives.insert(id.clone(), info);
        }
        // Secret files are not in the archives: their sha256 comes from genconf/secrets, so
        // the plan sees a changed prometheus.yml like any other watched file.
        let secrets = Secrets::read(&self.genconf_dir, &serve.packages)?;
        for (id, path, sha) in secrets.digests() {
            if let Some(a) = archives.get_mut(id) {
                a.files.insert(path.to_owned(), sha.hex());
            }
        }
        type Seen = BTreeMap<HostAddr, (Vec<PackageId>, BTreeMap<String, String>)>;
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let script = Arc::new(plan_inspect_script(&watched));
        let mut runner = self.runner("plan");
        runner
            .fleet_run("inspect", &hosts, None, |host| {
                let (seen, script) = (seen.clone(), script.clone());
                async move {
                    let r = host
                        .check("inspect", Exec::root(script.as_str()).quiet())
                        .await?;
                    seen.lock().expect("plan").insert(
                        host.addr().clone(),
                        (parse_status(&r.stdout).active, parse_watched(&r.stdout)),
                    );
                    Ok(Outcome::Ok)
                }
            })
            .await?;
        let seen = std::mem::take(&mut *seen.lock().expect("plan"));
        let plans = hosts
            .iter()
            .map(|(h, r)| match seen.get(h) {
                Some((cur, now)) => host_plan(h, *r, cur, &serve.packages, &archives, Some(now)),
                // Unreachable: shown as if nothing were installed.
                None => host_plan(h, *r, &[], &serve.packages, &archives, None),
            })
            .collect();
        Ok((serve.list_id.clone(), waves(&hosts, batch), plans))
    }

    fn selected(&self) -> Vec<(HostAddr, Role)> {
        self.hosts()
            .into_iter()
            .filter(|(h, _)| self.only.as_ref().is_none_or(|o| o.contains(h)))
            .collect()
    }

    fn runner(&self, op: &str) -> Runner<'_> {
        let stage = if op == "rollback" {
            Stage::Rollback
        } else {
            Stage::Upgrade
        };
        let run_id = new_run_id(stage).replacen(stage.as_str(), op, 1);
        Runner {
            inst: self,
            stage,
            log_dir: self.state_dir().join("logs").join(&run_id),
            run_id,
            journals: Vec::new(),
            waves_run: 0,
        }
    }

    /// `tarmac upgrade`: roll the cluster to the current `genconf/serve` package list.
    pub async fn upgrade(&self, opts: &UpgradeOptions) -> Result<UpgradeReport, InstallerError> {
        self.rolling(Op::Upgrade, opts).await
    }

    /// `tarmac rollback`: bring the hosts back to their previous generation (or `opts.to`).
    pub async fn rollback(&self, opts: &UpgradeOptions) -> Result<UpgradeReport, InstallerError> {
        self.rolling(Op::Rollback, opts).await
    }

    async fn rolling(
        &self,
        op: Op,
        opts: &UpgradeOptions,
    ) -> Result<UpgradeReport, InstallerError> {
        let opname = if op == Op::Upgrade {
            "upgrade"
        } else {
            "rollback"
        };
        let _lock = RunLock::acquire(&self.state_dir(), &format!("tarmac {opname}"))?;
        let hosts = self.selected();
        if hosts.is_empty() {
            return Err(InstallerError::NoHosts(
                "none of the selected hosts is in config.yaml".into(),
            ));
        }
        let serve = if op == Op::Upgrade {
            Some(ServeInfo::read(&self.genconf_dir)?)
        } else {
            None
        };
        let target = match (&serve, opts.to) {
            (Some(s), _) => s.list_id.clone(),
            (None, Some(n)) => n.to_string(),
            (None, None) => "previous".to_owned(),
        };
        // The ledger must verify before anything moves; it also says where a rollback goes.
        let book = self.ledger();
        let entries = book.read()?;
        let target_before = ledger::expectation(&entries, None).target;
        let target_after = match (&serve, opts.to) {
            (Some(s), _) => Some(s.target()),
            (None, None) => ledger::rollback_target(&entries),
            // `rollback --to N`: generation N is per host; the ledger cannot name its target.
            (None, Some(_)) => None,
        };
        let previous = UpgradeState::load(&self.state_dir());
        if opts.resume {
            match &previous {
                Some(p) if p.finished => {
                    return Err(InstallerError::NoHosts(format!(
                        "--resume: the last `{} {}` finished; there is nothing to resume\nhint: run without --resume to start a new {opname}",
                        p.operation, p.target
                    )));
                }
                Some(p) if p.operation == opname && p.target == target => {}
                Some(p) => {
                    return Err(InstallerError::NoHosts(format!(
                        "--resume: the interrupted run was `{} {}`, not `{opname} {target}`\nhint: run without --resume to start a new {opname}",
                        p.operation, p.target
                    )));
                }
                None => {
                    return Err(InstallerError::NoHosts(format!(
                        "--resume: no interrupted run in {}",
                        UpgradeState::path(&self.state_dir()).display()
                    )));
                }
            }
        }
        let mut state = UpgradeState {
            operation: opname.to_owned(),
            target: target.clone(),
            ..UpgradeState::default()
        };
        for (h, _) in &hosts {
            let prior = previous
                .as_ref()
                .filter(|_| opts.resume)
                .and_then(|p| p.hosts.get(&h.to_string()))
                .cloned();
            state
                .hosts
                .insert(h.to_string(), prior.unwrap_or_else(|| "untouched".into()));
        }
        if opts.resume {
            state.run_ids = previous
                .as_ref()
                .map(|p| p.run_ids.clone())
                .unwrap_or_default();
        }
        let mut runner = self.runner(opname);
        state.run_ids.push(runner.run_id.clone());
        state.save(&self.state_dir())?;

        let server = match &serve {
            Some(s) if self.is_served() && !opts.push => {
                let url = self.cfg.bootstrap_url().to_owned();
                let addr = bootstrap_listen_addr(&url)
                    .map_err(|why| InstallerError::BootstrapUrl { url, why })?;
                Some(ArtifactServer::bind(&s.dir, addr, self.server_tls()?)?)
            }
            _ => None,
        };
        let result = self
            .roll(op, opts, serve.as_ref(), &hosts, &mut state, &mut runner)
            .await;
        if let Some(s) = server {
            s.stop().await;
        }
        if result.is_ok() {
            state.finished = true;
            state.save(&self.state_dir())?;
        }
        // One ledger entry per run that got to move hosts, finished or not (a run killed
        // before this line is covered by the entry of its `--resume`).
        let moved = state.hosts.values().any(|w| w != "untouched");
        if result.is_ok() || moved {
            let report = UpgradeReport {
                state: state.clone(),
                journals: Vec::new(),
                log_dir: PathBuf::new(),
            };
            let complete = result.is_ok() && report.succeeded();
            let hosts_words = hosts
                .iter()
                .filter_map(|(h, _)| {
                    state
                        .hosts
                        .get(&h.to_string())
                        .map(|w| (h.clone(), w.clone()))
                })
                .collect();
            let appended = book.append(
                &_lock,
                ledger::NewEntry {
                    op: if op == Op::Upgrade {
                        ledger::Op::Upgrade
                    } else {
                        ledger::Op::Rollback
                    },
                    runs: state.run_ids.clone(),
                    target_before,
                    target_after,
                    bootstrap_id: serve.as_ref().and_then(|s| s.bootstrap_id.clone()),
                    config_id: serve.as_ref().and_then(|s| s.config_id()),
                    complete,
                    hosts: hosts_words,
                },
            );
            if let Err(e) = appended {
                result?;
                return Err(e.into());
            }
        }
        result?;
        Ok(UpgradeReport {
            state,
            journals: runner.journals,
            log_dir: runner.log_dir,
        })
    }

    async fn roll(
        &self,
        op: Op,
        opts: &UpgradeOptions,
        serve: Option<&ServeInfo>,
        hosts: &[(HostAddr, Role)],
        state: &mut UpgradeState,
        runner: &mut Runner<'_>,
    ) -> Result<(), InstallerError> {
        let all_waves = waves(hosts, opts.batch);
        let agents = hosts.iter().filter(|(_, r)| *r != Role::Master).count();
        let allowed = opts.max_failures.allowed(agents);
        let masters: Vec<(HostAddr, Role)> = self
            .hosts()
            .into_iter()
            .filter(|(_, r)| *r == Role::Master)
            .collect();
        // Checks must pass early enough to confirm before the host reverts by itself.
        let check_deadline = if op == Op::Upgrade {
            opts.check_deadline.min(opts.confirm_window.mul_f64(0.75))
        } else {
            opts.check_deadline
        };
        let mut agent_failures = 0usize;
        for (i, wave) in all_waves.iter().enumerate() {
            if self.cancel.is_cancelled() {
                state.stopped = Some("interrupted".into());
                break;
            }
            // --resume: hosts the interrupted run finished are not touched again (a rollback
            // would otherwise go back one more generation).
            let todo: Vec<(HostAddr, Role)> = wave
                .hosts
                .iter()
                .filter(|(h, _)| {
                    !(opts.resume
                        && matches!(
                            state.hosts.get(&h.to_string()).map(String::as_str),
                            Some("ok" | "unchanged")
                        ))
                })
                .cloned()
                .collect();
            if todo.is_empty() {
                continue;
            }
            let wave = &Wave {
                masters: wave.masters,
                hosts: todo,
            };
            let names: Vec<String> = wave.hosts.iter().map(|(h, _)| h.to_string()).collect();
            runner.notice(format!(
                "{}: step {} of {}: {}",
                if op == Op::Upgrade {
                    "upgrade"
                } else {
                    "rollback"
                },
                i + 1,
                all_waves.len(),
                names.join(", ")
            ));
            let switched: Arc<Mutex<BTreeMap<HostAddr, Switched>>> = Arc::default();
            let report = match op {
                Op::Upgrade => {
                    let serve = serve.expect("upgrade has a serve dir");
                    let expected = Arc::new(serve.packages.clone());
                    let list_file = serve
                        .dir
                        .join("package_lists")
                        .join(format!("{}.package_list.json", serve.list_id));
                    let list_id = serve.list_id.clone();
                    let url = if opts.push {
                        format!("file://{}", crate::plan::PUSH_DIR)
                    } else {
                        self.cfg.bootstrap_url().to_owned()
                    };
                    let window = opts.confirm_window;
                    let push_from = opts.push.then(|| serve.dir.clone());
                    // https: the CA the hosts pin, refreshed over SSH (the operator may have
                    // changed bootstrap_tls_* since the install).
                    let repo_ca = if opts.push {
                        None
                    } else {
                        self.repository_ca()?
                    };
                    let secrets = Arc::new(Secrets::read(&self.genconf_dir, &serve.packages)?);
                    runner
                        .fleet_run("switch", &wave.hosts, None, |host| {
                            let (expected, list_file, list_id, url, switched, push_from, repo_ca, secrets) =
                                (expected.clone(), list_file.clone(), list_id.clone(), url.clone(), switched.clone(), push_from.clone(), repo_ca.clone(), secrets.clone());
                            async move {
                                let role = host.role().unwrap_or(Role::Agent);
                                let r = host.check("inspect", Exec::root(recover_and_inspect_script()).quiet().timeout(Duration::from_secs(600))).await?;
                                let st = parse_status(&r.stdout);
                                let cur = st.generation.as_deref().and_then(|g| g.parse::<u64>().ok());
                                if st.active == *expected {
                                    if !parse_pending(&r.stdout) {
                                        return Ok(Outcome::Unchanged);
                                    }
                                    // An interrupted run switched this host and never confirmed
                                    // it: check it, and confirm below (or revert now).
                                    let Some(now) = cur else {
                                        return Err(failed(host.addr(), "inspect", "a confirmation is pending but /opt/tarmac/current is unreadable".into()));
                                    };
                                    switched.lock().expect("switched").insert(host.addr().clone(), Switched { prev: None, now });
                                    if let Err(e) = poll_checks(&host, check_deadline).await {
                                        let _ = host.run("revert", Exec::root(revert_now_script(None, host.run_id())).timeout(Duration::from_secs(600))).await;
                                        return Err(e);
                                    }
                                    return Ok(Outcome::Ok);
                                }
                                let Some(prev) = cur else {
                                    return Err(failed(host.addr(), "inspect", "Tarmac is not installed here\nhint: install it with `tarmac deploy`".into()));
                                };
                                host.check("prepare", Exec::root(format!("mkdir -p {UPGRADE_DIR}"))).await?;
                                let src = UploadSource::file(&list_file)
                                    .map_err(|e| failed(host.addr(), "upload list", format!("cannot read {}: {e}", list_file.display())))?;
                                host.upload("upload package list", &Upload::new(src, list_path(&list_id)).mode(0o644).root()).await?;
                                if let Some(pem) = repo_ca {
                                    host.upload("upload repository CA", &Upload::new(UploadSource::bytes("repository-ca.pem", pem), REPOSITORY_CA_PATH).mode(0o644).root()).await?;
                                }
                                if let Some(dir) = &push_from {
                                    let missing: Vec<PackageId> = expected.iter().filter(|id| !st.active.contains(id)).cloned().collect();
                                    push_packages(&host, dir, &missing).await?;
                                }
                                // Secret files of this host's role, over SSH, before the switch.
                                deliver_secrets(&host, &secrets, role).await?;
                                host.check("fetch", Exec::root(fetch_command(&url, &list_id)).timeout(Duration::from_secs(900))).await?;
                                if push_from.is_some() {
                                    host.check("push: clean up", Exec::root(format!("rm -rf {}/packages", crate::plan::PUSH_DIR))).await?;
                                }
                                let r = host
                                    .check("switch", Exec::root(crate::plan::with_operation(host.run_id(), &switch_script(prev, window, &list_id, &expected, host.run_id()))).timeout(Duration::from_secs(600)))
                                    .await?;
                                let now = parse_generation(&r.stdout)
                                    .ok_or_else(|| failed(host.addr(), "switch", "the switch did not report the new generation".into()))?;
                                switched.lock().expect("switched").insert(host.addr().clone(), Switched { prev: Some(prev), now });
                                if let Err(e) = poll_checks(&host, check_deadline).await {
                                    let _ = host.run("revert", Exec::root(revert_now_script(Some(prev), host.run_id())).timeout(Duration::from_secs(600))).await;
                                    return Err(e);
                                }
                                Ok(Outcome::Ok)
                            }
                        })
                        .await?
                }
                Op::Rollback => {
                    let to = opts.to;
                    runner
                        .fleet_run("rollback", &wave.hosts, None, |host| {
                            let switched = switched.clone();
                            async move {
                                let r = host
                                    .check("inspect", Exec::root(inspect_script()).quiet())
                                    .await?;
                                let st = parse_status(&r.stdout);
                                let cur =
                                    st.generation.as_deref().and_then(|g| g.parse::<u64>().ok());
                                if cur.is_some() && cur == to {
                                    return Ok(Outcome::Unchanged);
                                }
                                let Some(prev) = cur else {
                                    return Err(failed(
                                        host.addr(),
                                        "inspect",
                                        "Tarmac is not installed here".into(),
                                    ));
                                };
                                let r = host
                                    .check(
                                        "rollback",
                                        Exec::root(crate::plan::with_operation(
                                            host.run_id(),
                                            &rollback_script(to),
                                        ))
                                        .timeout(Duration::from_secs(600)),
                                    )
                                    .await?;
                                let now = parse_generation(&r.stdout).unwrap_or(prev);
                                switched.lock().expect("switched").insert(
                                    host.addr().clone(),
                                    Switched {
                                        prev: Some(prev),
                                        now,
                                    },
                                );
                                poll_checks(&host, check_deadline).await?;
                                Ok(Outcome::Ok)
                            }
                        })
                        .await?
                }
            };
            let mut ok_hosts: Vec<(HostAddr, Role)> = Vec::new();
            let mut wave_failures = 0;
            for hr in &report.hosts {
                let label = hr.outcome.label();
                state
                    .hosts
                    .insert(hr.target.addr.to_string(), label.to_owned());
                if hr.outcome.is_success() {
                    if hr.outcome == Outcome::Ok {
                        ok_hosts.push((
                            hr.target.addr.clone(),
                            hr.target.role.unwrap_or(Role::Agent),
                        ));
                    }
                } else {
                    wave_failures += 1;
                }
            }
            // Masters: the whole cluster must be healthy before the next one.
            if wave.masters && wave_failures == 0 && !ok_hosts.is_empty() {
                let gate = runner
                    .fleet_run("cluster-checks", &masters, None, |host| async move {
                        poll_checks(&host, check_deadline).await?;
                        Ok(Outcome::Ok)
                    })
                    .await?;
                if !gate.all_succeeded() {
                    wave_failures += ok_hosts.len();
                    let sw = switched.lock().expect("switched").clone();
                    if op == Op::Upgrade {
                        self.revert_hosts(runner, &ok_hosts, &sw).await?;
                        for (h, _) in &ok_hosts {
                            state.hosts.insert(h.to_string(), "reverted".into());
                        }
                    }
                    ok_hosts.clear();
                }
            }
            // Confirm over new connections.
            if op == Op::Upgrade && !ok_hosts.is_empty() {
                let sw = Arc::new(switched.lock().expect("switched").clone());
                let confirm = runner
                    .fleet_run("confirm", &ok_hosts, None, |host| {
                        let sw = sw.clone();
                        async move {
                            let Some(s) = sw.get(host.addr()).copied() else {
                                return Ok(Outcome::Unchanged);
                            };
                            host.check("confirm", Exec::root(confirm_script(s.now)))
                                .await?;
                            Ok(Outcome::Ok)
                        }
                    })
                    .await?;
                for hr in &confirm.hosts {
                    if !hr.outcome.is_success() {
                        wave_failures += 1;
                        state
                            .hosts
                            .insert(hr.target.addr.to_string(), "unconfirmed".into());
                    }
                }
            }
            state.save(&self.state_dir())?;
            if wave_failures > 0 {
                if wave.masters {
                    state.stopped = Some(format!(
                        "master {} failed: stopped before touching the other hosts",
                        names.join(", ")
                    ));
                    break;
                }
                agent_failures += wave_failures;
                if agent_failures > allowed {
                    state.stopped = Some(format!(
                        "{agent_failures} agent(s) failed, more than the budget of {allowed}: stopped"
                    ));
                    break;
                }
            }
        }
        if let Some(s) = &state.stopped {
            self.sink.emit(Event::Notice {
                level: Level::Error,
                message: s.clone(),
            });
        }
        Ok(())
    }

    async fn revert_hosts(
        &self,
        runner: &mut Runner<'_>,
        hosts: &[(HostAddr, Role)],
        sw: &BTreeMap<HostAddr, Switched>,
    ) -> Result<(), InstallerError> {
        let sw = Arc::new(sw.clone());
        runner
            .fleet_run("revert", hosts, None, |host| {
                let sw = sw.clone();
                async move {
                    let Some(s) = sw.get(host.addr()).copied() else {
                        return Ok(Outcome::Unchanged);
                    };
                    host.check(
                        "revert",
                        Exec::root(revert_now_script(s.prev, host.run_id()))
                            .timeout(Duration::from_secs(600)),
                    )
                    .await?;
                    Ok(Outcome::Ok)
                }
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> PackageId {
        PackageId::parse(s).unwrap()
    }

    fn h(s: &str) -> HostAddr {
        s.parse().unwrap()
    }

    #[test]
    fn batches_and_budgets() {
        assert_eq!("10%".parse::<BatchSize>().unwrap().of(50), 5);
        assert_eq!("10%".parse::<BatchSize>().unwrap().of(3), 1);
        assert_eq!("3".parse::<BatchSize>().unwrap().of(50), 3);
        assert!("0".parse::<BatchSize>().is_err());
        assert!("x".parse::<BatchSize>().is_err());
        assert_eq!("2".parse::<Budget>().unwrap().allowed(50), 2);
        assert_eq!("10%".parse::<Budget>().unwrap().allowed(50), 5);
        assert_eq!("10%".parse::<Budget>().unwrap().allowed(9), 0);
        assert!("101%".parse::<Budget>().is_err());
    }

    #[test]
    fn masters_alone_then_batches() {
        let hosts = vec![
            (h("10.0.0.4"), Role::Agent),
            (h("10.0.0.1"), Role::Master),
            (h("10.0.0.2"), Role::Master),
            (h("10.0.0.5"), Role::AgentPublic),
            (h("10.0.0.6"), Role::Agent),
        ];
        let w = waves(&hosts, BatchSize::Count(2));
        let shape: Vec<(bool, Vec<String>)> = w
            .iter()
            .map(|w| {
                (
                    w.masters,
                    w.hosts.iter().map(|(h, _)| h.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (true, vec!["10.0.0.1".to_owned()]),
                (true, vec!["10.0.0.2".to_owned()]),
                (false, vec!["10.0.0.4".to_owned(), "10.0.0.5".to_owned()]),
                (false, vec!["10.0.0.6".to_owned()]),
            ]
        );
    }

    #[test]
    fn plan_text() {
        let cur = vec![
            id("etcd--3.5"),
            id("etcd-config--setup_aaa"),
            id("node-exporter--1"),
            id("old--1"),
        ];
        let tgt = vec![
            id("etcd--3.5"),
            id("etcd-config--setup_bbb"),
            id("new--2"),
            id("node-exporter--1"),
        ];
        let unit = |role, name: &str| UnitFile {
            role,
            name: name.into(),
        };
        let files = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let mut archives = BTreeMap::new();
        archives.insert(
            id("etcd--3.5"),
            ArchiveInfo {
                units: vec![unit(Some(Role::Master), "etcd.service")],
                watched: vec!["etc/etcd".into(), "bin/detect_ip".into()],
                files: files(&[("bin_master/etcd", "e1")]),
            },
        );
        archives.insert(
            id("etcd-config--setup_bbb"),
            ArchiveInfo {
                watched: vec!["etc/etcd-config".into()],
                files: files(&[
                    ("etc_master/etcd/etcd.env", "env2"),
                    ("etc/node-exporter/ne.env", "ne1"),
                    ("bin/detect_ip", "ip1"),
                ]),
                ..ArchiveInfo::default()
            },
        );
        archives.insert(
            id("node-exporter--1"),
            ArchiveInfo {
                units: vec![unit(None, "node-exporter.service")],
                watched: vec!["etc/node-exporter".into()],
                files: BTreeMap::new(),
            },
        );
        archives.insert(
            id("new--2"),
            ArchiveInfo {
                units: vec![unit(None, "new.service")],
                ..ArchiveInfo::default()
            },
        );
        // The master's current generation: etcd.env differs, node-exporter's env does not.
        let now = files(&[
            ("etc/etcd/etcd.env", "env1"),
            ("etc/node-exporter/ne.env", "ne1"),
            ("bin/detect_ip", "ip1"),
        ]);
        let m = host_plan(
            &h("10.0.0.1"),
            Role::Master,
            &cur,
            &tgt,
            &archives,
            Some(&now),
        );
        let a = host_plan(&h("10.0.0.4"), Role::Agent, &tgt, &tgt, &archives, None);
        let hosts = vec![(h("10.0.0.1"), Role::Master), (h("10.0.0.4"), Role::Agent)];
        let text = render_plan("abc123", &waves(&hosts, BatchSize::Count(10)), &[m, a]);
        assert_eq!(
            text,
            "upgrade to cluster package list abc123\n\
             order:\n  \
               1. master 10.0.0.1 (then cluster checks on every master)\n\
             10.0.0.1 (master):\n  \
               change etcd-config: setup_aaa -> setup_bbb\n  \
               add    new--2\n  \
               remove old--1\n  \
               restart: etcd.service, new.service\n    \
                 etcd.service: etc/etcd/etcd.env changed\n  \
               stop the units of: old--1\n\
             10.0.0.4 (agent): unchanged\n"
        );
    }

    #[test]
    fn archive_for_the_plan() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("etcd--1.tar.zst");
        let enc = zstd::stream::write::Encoder::new(std::fs::File::create(&path).unwrap(), 3)
            .unwrap()
            .auto_finish();
        let mut b = tar::Builder::new(enc);
        let mut add = |name: &str, body: &[u8]| {
            let mut hd = tar::Header::new_gnu();
            hd.set_size(body.len() as u64);
            hd.set_mode(0o644);
            hd.set_cksum();
            b.append_data(&mut hd, name, body).unwrap();
        };
        add(
            "pkginfo.json",
            br#"{"restart_on_change": ["bin/detect_ip"]}"#,
        );
        add("systemd_master/etcd.service", b"[Service]\n");
        add("etc_master/etcd/defaults.env", b"A=1\n");
        add("share/doc/etcd/copyright", b"x");
        b.into_inner().unwrap();
        let a = read_archive(&id("etcd--1"), &path).unwrap();
        assert_eq!(
            a.units,
            vec![UnitFile {
                role: Some(Role::Master),
                name: "etcd.service".into()
            }]
        );
        assert_eq!(a.watched, ["etc/etcd", "bin/detect_ip"]);
        assert_eq!(
            a.files.keys().collect::<Vec<_>>(),
            ["etc_master/etcd/defaults.env"]
        );
        assert_eq!(
            a.files["etc_master/etcd/defaults.env"],
            tarmac_types::Digest::of(b"A=1\n").hex()
        );
        let t = target_tree(
            Role::Master,
            &[id("etcd--1")],
            &[(id("etcd--1"), a.clone())].into(),
        );
        assert!(t.contains_key("etc/etcd/defaults.env"));
        assert!(
            target_tree(Role::Agent, &[id("etcd--1")], &[(id("etcd--1"), a)].into()).is_empty()
        );
    }

    #[test]
    fn watched_files_and_trees() {
        let out = "== active\na--1\n== generation\ngenerations/3\n== watched\n\
                   0123  etc/etcd/etcd.env\nabcd  bin/detect_ip\n";
        let w = parse_watched(out);
        assert_eq!(w.len(), 2);
        assert_eq!(w["etc/etcd/etcd.env"], "0123");
        assert_eq!(
            plan_inspect_script(&["etc/etcd".into(), "bin/detect ip".into()]),
            format!(
                "{}; echo '== watched'; if [ -d /opt/tarmac/current ]; then cd /opt/tarmac/current && find -L etc/etcd 'bin/detect ip' -type f -exec sha256sum {{}} + 2>/dev/null; fi; true",
                inspect_script()
            )
        );
        let a: BTreeMap<String, String> = [("etc/x/a".to_owned(), "1".to_owned())].into();
        let b: BTreeMap<String, String> = [
            ("etc/x/a".to_owned(), "1".to_owned()),
            ("etc/xy/b".to_owned(), "2".to_owned()),
        ]
        .into();
        assert_eq!(first_difference(&a, &b, "etc/x"), None);
        assert_eq!(first_difference(&a, &b, "etc/xy"), Some("etc/xy/b".into()));
    }

    #[test]
    fn host_scripts() {
        assert_eq!(
            fetch_command("http://10.0.0.254:8080", "abc"),
            "/opt/tarmac/tarmac-host fetch --repository-url http://10.0.0.254:8080 --package-list /etc/tarmac/upgrade/abc.package_list.json --require-sha256"
        );
        assert_eq!(
            revert_script(3, "upgrade-1-a-001-switch"),
            "cur=$(basename \"$(readlink /opt/tarmac/current)\"); if [ \"$cur\" != 3 ]; then TARMAC_OPERATION=upgrade-1-a-001-switch/revert /opt/tarmac/tarmac-host --wait rollback --to 3 || exit 1; fi; if [ -f /etc/tarmac/setup-flags/cluster-package-list.prev ]; then mv -f /etc/tarmac/setup-flags/cluster-package-list.prev /etc/tarmac/setup-flags/cluster-package-list; fi"
        );
        let s = switch_script(
            3,
            Duration::from_secs(120),
            "abc",
            &[id("a--1"), id("b--2")],
            "op",
        );
        assert!(s.contains("printf '%s\\n' 'cur=$(basename"), "{s}");
        assert!(s.contains("systemd-run --quiet --unit=tarmac-confirm --description='Tarmac: revert to generation 3 unless confirmed' --timer-property=AccuracySec=1s --on-active=120s /bin/sh /etc/tarmac/upgrade/revert.sh\n"), "{s}");
        assert!(
            s.contains("if ! /opt/tarmac/tarmac-host --wait activate a--1 b--2; then"),
            "{s}"
        );
        assert!(s.contains("cp /etc/tarmac/upgrade/abc.package_list.json /etc/tarmac/setup-flags/cluster-package-list.new"), "{s}");
        assert!(confirm_script(4).contains("if [ \"$cur\" != 4 ]; then"));
        assert_eq!(parse_generation("x\nGEN 7\n"), Some(7));
        assert!(parse_pending("== active\na--1\n== pending\nactive\n"));
        assert!(recover_and_inspect_script().starts_with(
            "if [ -e /opt/tarmac/switch-journal.json ]; then /opt/tarmac/tarmac-host --wait recover >&2 || exit 1; fi; echo '== active'"
        ));
        assert!(!parse_pending("== active\nactive\n== pending\ninactive\n"));
        assert_eq!(
            revert_now_script(None, "op"),
            "systemctl stop tarmac-confirm.timer 2>/dev/null || true\n/bin/sh /etc/tarmac/upgrade/revert.sh\n"
        );
        assert_eq!(parse_generation("nothing"), None);
        assert_eq!(
            rollback_script(Some(2)).lines().nth(2),
            Some("/opt/tarmac/tarmac-host --wait rollback --to 2")
        );
    }

    #[test]
    fn switch_script_runs_in_sh() {
        // The generated script must at least parse.
        let s = switch_script(3, Duration::from_secs(5), "abc", &[id("a--1")], "op");
        let st = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(&s)
            .status()
            .unwrap();
        assert!(st.success());
        for s in [
            confirm_script(2),
            revert_now_script(Some(1), "op"),
            revert_now_script(None, "op"),
            rollback_script(None),
            inspect_script(),
            recover_and_inspect_script(),
            plan_inspect_script(&["etc/a".into()]),
        ] {
            let st = std::process::Command::new("sh")
                .arg("-n")
                .arg("-c")
                .arg(&s)
                .status()
                .unwrap();
            assert!(st.success(), "{s}");
        }
    }
}
