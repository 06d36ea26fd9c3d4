//! Rolling upgrade and rollback of a running cluster.
//!
//! Order: masters one at a time, each gated on its node checks and then the cluster checks
//! (`tarmac-host check` on every master, polled with backoff up to a deadline); then agents
//! and public agents in batches with a failure budget. Past the budget the run stops and the
//! hosts not yet touched stay on their version.
//!
//! Per host: upload the target package list and (over SSH) the secret files of its role,
//! `tarmac-host fetch` every package with its sha256 (services keep running), then
//! `tarmac-host switch --confirm-within W`: the host records the pending confirmation on its
//! disk, points its setup flags at the new list and activates it, and goes back to its
//! previous generation by itself unless `tarmac-host confirm --generation N` comes within W
//! (also across a reboot: see `tarmac_activate::confirm`). After the checks pass the
//! installer confirms over a *new* SSH connection (a fresh fleet); a host the installer
//! cannot reach any more reverts by itself when the window ends. Host state is read as
//! `tarmac-host status --json` ([`HostStatus`]); `--resume` reports a host that reverted by
//! itself as `reverted`.
//!
//! Everything a host runs is built by the pure functions below (exact-string tests).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tarmac_events::rows::fleet_run_id;
use tarmac_events::{Event, HostState, Level, Outcome, Phase};
use tarmac_ssh::{Exec, HostSession, StageReport, StepError, Target, Upload, UploadSource};
use tarmac_types::shell::quote;
use tarmac_types::{HostAddr, PackageId, Role, Stage};

use crate::journal::new_run_id;
use crate::ledger;
use crate::lock::RunLock;
use crate::plan::HOST_BIN;
use crate::secrets::{Secrets, deliver as deliver_secrets};
use crate::serve::ArtifactServer;
use crate::stages::{Installer, InstallerError, ServeInfo, bootstrap_listen_addr, poll_checks};
use tarmac_fsx::write_atomic_in_private_dir as write_atomic;
use tarmac_types::Generation;
use tarmac_types::confirm::{HostStatus, SwitchOutcome};

/// The cluster CA on a host (for an https bootstrap_url): the only CA tarmac-host trusts for it.
pub const REPOSITORY_CA_PATH: &str = tarmac_config::tls::HOST_CA_PATH;
/// Where the target package list is uploaded on a host.
pub const UPGRADE_DIR: &str = "/etc/tarmac/upgrade";

// ---------------------------------------------------------------------------------------
// Batches and failure budgets

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

/// `tarmac-host status --json` (typed: [`HostStatus`]), with the sha256 of every file
/// under `watched` in the current generation. With `recover`, the host first finishes (or
/// undoes) a switch that was interrupted: an installer killed mid-activation drops its SSH
/// session, which stops `tarmac-host` between its commit point and starting the units. A host
/// without tarmac-host prints nothing ([`parse_host_status`] reads that as not installed).
pub fn status_command(watched: &[String], recover: bool) -> String {
    let mut s = format!("if [ -x {HOST_BIN} ]; then {HOST_BIN}");
    if recover {
        s.push_str(" --wait");
    }
    s.push_str(" --json status");
    if recover {
        s.push_str(" --recover");
    }
    for w in watched {
        let _ = write!(s, " --watched {}", quote(w));
    }
    s.push_str("; fi");
    s
}

/// Why a host's answer could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HostAnswerError {
    #[error(
        "tarmac-host printed no usable {what}: {source}\nhint: the host may run an older tarmac-host; redeploy it with `tarmac deploy`"
    )]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "tarmac-host answered in format {found}, this installer reads format {}\nhint: use a tarmac and tarmac-host of the same release",
        tarmac_types::confirm::FORMAT
    )]
    Format { found: u32 },
}

/// The answer of [`status_command`]: `None` when tarmac-host is not installed.
pub fn parse_host_status(stdout: &str) -> Result<Option<HostStatus>, HostAnswerError> {
    if stdout.trim().is_empty() {
        return Ok(None);
    }
    let st: HostStatus = serde_json::from_str(stdout).map_err(|source| HostAnswerError::Json {
        what: "status",
        source,
    })?;
    if st.format != tarmac_types::confirm::FORMAT {
        return Err(HostAnswerError::Format { found: st.format });
    }
    Ok(Some(st))
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

/// The switch: `tarmac-host switch` activates `ids`, makes the uploaded list the setup flag,
/// and reverts by itself (also across a reboot) unless confirmed within `window`; a failed
/// activation reverts at once. Prints a [`SwitchOutcome`].
pub fn switch_command(window: Duration, list_id: &str, ids: &[PackageId]) -> String {
    let ids: Vec<String> = ids.iter().map(|i| quote(&i.to_string())).collect();
    format!(
        "{HOST_BIN} --wait --json switch --confirm-within {}s --setup-list {} {}",
        window.as_secs().max(1),
        list_path(list_id),
        ids.join(" ")
    )
}

/// The switch's answer.
pub fn parse_switch(stdout: &str) -> Result<SwitchOutcome, HostAnswerError> {
    let out: SwitchOutcome =
        serde_json::from_str(stdout).map_err(|source| HostAnswerError::Json {
            what: "switch outcome",
            source,
        })?;
    if out.pending.format != tarmac_types::confirm::FORMAT {
        return Err(HostAnswerError::Format {
            found: out.pending.format,
        });
    }
    Ok(out)
}

/// Keep generation `generation`; fails (exit 1, with the reason) when the host already
/// reverted or the pending switch is to another generation.
pub fn confirm_command(generation: Generation) -> String {
    format!("{HOST_BIN} --wait confirm --generation {generation}")
}

/// Revert the pending switch now (checks failed). The host knows where to go back to; the
/// switch log records it as `<op>/revert`.
pub fn revert_command() -> String {
    format!("{HOST_BIN} --wait revert")
}

/// `tarmac rollback`: back to the previous generation (or `to`), with the setup flags
/// pointing at what is then active so that a reboot stays there. Prints a switch report.
pub fn rollback_command(to: Option<u64>) -> String {
    let to = to.map(|n| format!(" --to {n}")).unwrap_or_default();
    format!("{HOST_BIN} --wait --json rollback{to} --set-setup-list")
}

/// The generation a rollback reached (`to` of its JSON report).
pub fn parse_rollback(stdout: &str) -> Result<Generation, HostAnswerError> {
    #[derive(Deserialize)]
    struct Report {
        to: Generation,
    }
    serde_json::from_str::<Report>(stdout)
        .map(|r| r.to)
        .map_err(|source| HostAnswerError::Json {
            what: "rollback report",
            source,
        })
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
    /// Host → ok | unchanged | failed | reverted | unconfirmed | untouched | …
    pub hosts: BTreeMap<String, HostState>,
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
            batch: BatchSize::DEFAULT,
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
            && self.state.hosts.values().all(|s| s.is_success())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Upgrade,
    Rollback,
}

/// A host the wave switched: the generation it now runs, unconfirmed (a revert needs no
/// more: the host's pending record says where to go back to).
#[derive(Debug, Clone, Copy)]
struct Switched {
    now: Generation,
}

struct Runner<'a> {
    inst: &'a Installer,
    /// `Upgrade` (also for the plan's inspection) or `Rollback`.
    stage: Stage,
    run_id: String,
    log_dir: PathBuf,
    journals: Vec<PathBuf>,
    waves_run: u32,
}

impl Runner<'_> {
    /// One fleet over `hosts` (fresh connections), journaled.
    async fn fleet_run<F, Fut>(
        &mut self,
        what: Phase,
        hosts: &[(HostAddr, Role)],
        deadline: Option<Duration>,
        job: F,
    ) -> Result<StageReport, InstallerError>
    where
        F: Fn(HostSession) -> Fut,
        Fut: Future<Output = Result<Outcome, StepError>>,
    {
        self.waves_run += 1;
        let run_id = fleet_run_id(&self.run_id, self.waves_run, what);
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
        let script = Arc::new(status_command(&watched, false));
        let mut runner = self.runner("plan");
        runner
            .fleet_run(Phase::Inspect, &hosts, None, |host| {
                let (seen, script) = (seen.clone(), script.clone());
                async move {
                    let r = host
                        .check("inspect", Exec::root(script.as_str()).quiet())
                        .await?;
                    let st = parse_host_status(&r.stdout)
                        .map_err(|e| failed(host.addr(), "inspect", e.to_string()))?
                        .unwrap_or_default();
                    seen.lock()
                        .expect("plan")
                        .insert(host.addr().clone(), (st.active, st.watched));
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
                .insert(h.to_string(), prior.unwrap_or(HostState::Untouched));
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
        let moved = state.hosts.values().any(|w| *w != HostState::Untouched);
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
                        .map(|w| (h.clone(), w.to_string()))
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
                        && state
                            .hosts
                            .get(&h.to_string())
                            .is_some_and(|s| s.is_success()))
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
            // Hosts found reverted by themselves (resume), reported `reverted`.
            let self_reverted: Arc<Mutex<Vec<HostAddr>>> = Arc::default();
            let prior_runs: Arc<Vec<String>> = Arc::new(if opts.resume {
                state.run_ids.clone()
            } else {
                Vec::new()
            });
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
                        .fleet_run(Phase::Switch, &wave.hosts, None, |host| {
                            let (expected, list_file, list_id, url, switched, push_from, repo_ca, secrets) =
                                (expected.clone(), list_file.clone(), list_id.clone(), url.clone(), switched.clone(), push_from.clone(), repo_ca.clone(), secrets.clone());
                            let (self_reverted, prior_runs) = (self_reverted.clone(), prior_runs.clone());
                            async move {
                                let role = host.role().unwrap_or(Role::Agent);
                                let r = host.check("inspect", Exec::root(status_command(&[], true)).quiet().timeout(Duration::from_secs(600))).await?;
                                let st = parse_host_status(&r.stdout)
                                    .map_err(|e| failed(host.addr(), "inspect", e.to_string()))?;
                                let Some(st) = st.filter(|s| s.current.is_some()) else {
                                    return Err(failed(host.addr(), "inspect", "Tarmac is not installed here\nhint: install it with `tarmac deploy`".into()));
                                };
                                let cur = st.current.expect("checked above");
                                // --resume: a host the interrupted run switched that went back by
                                // itself (its confirm deadline passed, or it rebooted inside the
                                // window) is reported reverted, not switched again.
                                if let Some(rec) = st.reverted_by_itself(&prior_runs) {
                                    self_reverted.lock().expect("reverted").push(host.addr().clone());
                                    return Err(failed(host.addr(), "inspect", format!(
                                        "the host reverted by itself to generation {cur} ({}) after switch {}: it was not confirmed in time",
                                        rec.reason.map_or("?", |r| r.word()),
                                        rec.operation.as_deref().unwrap_or("?"),
                                    )));
                                }
                                if st.active == *expected {
                                    if st.pending.is_none() {
                                        return Ok(Outcome::Unchanged);
                                    }
                                    // An interrupted run switched this host and never confirmed
                                    // it: check it, and confirm below (or revert now).
                                    switched.lock().expect("switched").insert(host.addr().clone(), Switched { now: cur });
                                    if let Err(e) = poll_checks(&host, check_deadline).await {
                                        let _ = host.run("revert", Exec::root(revert_command()).timeout(Duration::from_secs(600))).await;
                                        return Err(e);
                                    }
                                    return Ok(Outcome::Ok);
                                }
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
                                    .check("switch", Exec::root(crate::plan::with_operation(host.run_id(), &switch_command(window, &list_id, &expected))).timeout(Duration::from_secs(600)))
                                    .await?;
                                let out = parse_switch(&r.stdout)
                                    .map_err(|e| failed(host.addr(), "switch", e.to_string()))?;
                                switched.lock().expect("switched").insert(host.addr().clone(), Switched { now: out.to });
                                if let Err(e) = poll_checks(&host, check_deadline).await {
                                    let _ = host.run("revert", Exec::root(revert_command()).timeout(Duration::from_secs(600))).await;
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
                        .fleet_run(Phase::Rollback, &wave.hosts, None, |host| {
                            let switched = switched.clone();
                            async move {
                                let r = host
                                    .check(
                                        "inspect",
                                        Exec::root(status_command(&[], false)).quiet(),
                                    )
                                    .await?;
                                let cur = parse_host_status(&r.stdout)
                                    .map_err(|e| failed(host.addr(), "inspect", e.to_string()))?
                                    .and_then(|s| s.current);
                                if cur.is_some() && cur.map(|g| g.0) == to {
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
                                            &rollback_command(to),
                                        ))
                                        .timeout(Duration::from_secs(600)),
                                    )
                                    .await?;
                                let now = parse_rollback(&r.stdout).unwrap_or(prev);
                                switched
                                    .lock()
                                    .expect("switched")
                                    .insert(host.addr().clone(), Switched { now });
                                poll_checks(&host, check_deadline).await?;
                                Ok(Outcome::Ok)
                            }
                        })
                        .await?
                }
            };
            let mut ok_hosts: Vec<(HostAddr, Role)> = Vec::new();
            let mut wave_failures = 0;
            let self_reverted = std::mem::take(&mut *self_reverted.lock().expect("reverted"));
            for hr in &report.hosts {
                let label = if self_reverted.contains(&hr.target.addr) {
                    HostState::Reverted
                } else {
                    HostState::from(&hr.outcome)
                };
                state.hosts.insert(hr.target.addr.to_string(), label);
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
                    .fleet_run(Phase::ClusterChecks, &masters, None, |host| async move {
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
                            state.hosts.insert(h.to_string(), HostState::Reverted);
                        }
                    }
                    ok_hosts.clear();
                }
            }
            // Confirm over new connections.
            if op == Op::Upgrade && !ok_hosts.is_empty() {
                let sw = Arc::new(switched.lock().expect("switched").clone());
                let confirm = runner
                    .fleet_run(Phase::Confirm, &ok_hosts, None, |host| {
                        let sw = sw.clone();
                        async move {
                            let Some(s) = sw.get(host.addr()).copied() else {
                                return Ok(Outcome::Unchanged);
                            };
                            host.check("confirm", Exec::root(confirm_command(s.now)))
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
                            .insert(hr.target.addr.to_string(), HostState::Unconfirmed);
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
            .fleet_run(Phase::Revert, hosts, None, |host| {
                let sw = sw.clone();
                async move {
                    if !sw.contains_key(host.addr()) {
                        return Ok(Outcome::Unchanged);
                    }
                    host.check(
                        "revert",
                        Exec::root(revert_command()).timeout(Duration::from_secs(600)),
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
        assert_eq!(DEFAULT_BATCH.parse::<BatchSize>(), Ok(BatchSize::DEFAULT));
        assert_eq!(UpgradeOptions::default().batch, BatchSize::DEFAULT);
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
        assert_eq!(
            status_command(&["etc/etcd".into(), "bin/detect ip".into()], false),
            "if [ -x /opt/tarmac/tarmac-host ]; then /opt/tarmac/tarmac-host --json status --watched etc/etcd --watched 'bin/detect ip'; fi"
        );
        let st = parse_host_status(
            r#"{"format":1,"current":3,"previous":2,"active":["a--1"],"pending":null,
                "units":{"a.service":"active"},"switch":null,
                "watched":{"etc/etcd/etcd.env":"0123"}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(st.current, Some(Generation(3)));
        assert_eq!(st.active, vec![id("a--1")]);
        assert_eq!(st.watched["etc/etcd/etcd.env"], "0123");
        // No tarmac-host: nothing printed, not installed.
        assert_eq!(parse_host_status("\n").unwrap(), None);
        let e = parse_host_status(r#"{"format":2,"current":null}"#).unwrap_err();
        assert!(e.to_string().contains("format 2"), "{e}");
        assert!(parse_host_status("== active\n").is_err());
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
            switch_command(Duration::from_secs(120), "abc", &[id("a--1"), id("b--2")]),
            "/opt/tarmac/tarmac-host --wait --json switch --confirm-within 120s --setup-list /etc/tarmac/upgrade/abc.package_list.json a--1 b--2"
        );
        assert_eq!(
            status_command(&[], true),
            "if [ -x /opt/tarmac/tarmac-host ]; then /opt/tarmac/tarmac-host --wait --json status --recover; fi"
        );
        assert_eq!(
            confirm_command(Generation(4)),
            "/opt/tarmac/tarmac-host --wait confirm --generation 4"
        );
        assert_eq!(revert_command(), "/opt/tarmac/tarmac-host --wait revert");
        assert_eq!(
            rollback_command(Some(2)),
            "/opt/tarmac/tarmac-host --wait --json rollback --to 2 --set-setup-list"
        );
        assert_eq!(
            rollback_command(None),
            "/opt/tarmac/tarmac-host --wait --json rollback --set-setup-list"
        );
        let out = parse_switch(
            r#"{"from":3,"to":4,"unchanged":false,"pending":{"format":1,"from":3,"to":4,
                "armed_unix":10,"deadline_unix":130,"boot_id":"b"}}"#,
        )
        .unwrap();
        assert_eq!((out.to, out.pending.from), (Generation(4), Generation(3)));
        assert!(parse_switch("GEN 4\n").is_err());
        assert_eq!(
            parse_rollback(r#"{"from":4,"to":3,"unchanged":false}"#).unwrap(),
            Generation(3)
        );
    }

    #[test]
    fn host_commands_parse_in_sh() {
        for s in [
            switch_command(Duration::from_secs(5), "abc", &[id("a--1")]),
            confirm_command(Generation(2)),
            revert_command(),
            rollback_command(None),
            status_command(&["etc/a".into()], true),
            crate::plan::with_operation("op", &switch_command(Duration::from_secs(5), "abc", &[])),
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
