//! The cluster ledger: `genconf/state/ledger.jsonl`, one JSON entry per line, appended by
//! every operation that changes what the cluster should run (genconf) or does run (deploy,
//! upgrade, rollback, uninstall).
//!
//! Integrity: every entry carries the sha256 of the line before it (`prev_sha256`), so an
//! edited entry breaks the chain at the next one; `ledger.head` records the sequence number and
//! sha256 of the last entry, so a truncated ledger (entries removed from the end, or the file
//! removed) is detected too.
//!
//! Crash safety: an append rewrites the ledger with [`tarmac_fsx::write_atomic`] (temp file,
//! fsync, rename, directory fsync), then the head the same way, under the run lock. A crash
//! leaves the old ledger, or the new ledger with the old head: [`Ledger::read`] accepts a head
//! exactly one entry behind (and the next append moves it), nothing else.
//!
//! Hosts agree: the installer runs every host command that switches generations with
//! `TARMAC_OPERATION=<run id>`, and `tarmac-host` records it in its switch log, so `status`
//! can name the entry that put each host where it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tarmac_types::switch::SwitchRecord;
use tarmac_types::{Digest, HostAddr, PackageId};

use crate::lock::RunLock;

/// The ledger file inside `genconf/state/`.
pub const LEDGER_FILE: &str = "ledger.jsonl";
/// The head file inside `genconf/state/`.
pub const HEAD_FILE: &str = "ledger.head";

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// A new target was rendered (`genconf/serve`): what the cluster *should* run.
    Genconf,
    Deploy,
    Upgrade,
    Rollback,
    Uninstall,
    /// A snapshot of the quorum store was taken (moves no host).
    Backup,
    /// The quorum store was restored from a snapshot (moves no host's packages).
    Restore,
    /// Hosts left the cluster (uninstalled, or forgotten when unreachable).
    RemoveHosts,
    /// A master's quorum membership moved to a new host.
    ReplaceMaster,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Genconf => "genconf",
            Op::Deploy => "deploy",
            Op::Upgrade => "upgrade",
            Op::Rollback => "rollback",
            Op::Uninstall => "uninstall",
            Op::Backup => "backup",
            Op::Restore => "restore",
            Op::RemoveHosts => "remove-hosts",
            Op::ReplaceMaster => "replace-master",
        }
    }

    /// Does this operation change what the hosts run? (Day-two operations record what they
    /// did; the deploy and upgrade they lead to move the hosts.)
    pub fn moves_hosts(self) -> bool {
        matches!(
            self,
            Op::Deploy | Op::Upgrade | Op::Rollback | Op::Uninstall
        )
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A cluster target: a package list (genconf's id) and its packages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub list_id: String,
    pub packages: Vec<PackageId>,
}

impl Target {
    /// The first 12 characters of the list id, for humans.
    pub fn short(&self) -> &str {
        &self.list_id[..self.list_id.len().min(12)]
    }
}

/// One operation, as appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// 1, 2, 3, … in file order.
    pub seq: u64,
    /// sha256 of the previous entry's line (64 zeros for the first).
    pub prev_sha256: String,
    /// RFC 3339 UTC time the operation finished.
    pub at: String,
    /// `user@machine` of the operator.
    pub who: String,
    /// The command line, as run.
    pub command: Vec<String>,
    pub op: Op,
    /// The run ids whose host changes this entry covers (a resumed upgrade names the
    /// interrupted run too). Empty for genconf.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<String>,
    /// The cluster's target before and after (`None`: none known / nothing installed).
    #[serde(default)]
    pub target_before: Option<Target>,
    #[serde(default)]
    pub target_after: Option<Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_id: Option<String>,
    /// Every selected host reached the outcome the operation wanted.
    pub complete: bool,
    /// Host → outcome word (`ok`, `unchanged`, `failed`, `reverted`, `untouched`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<HostAddr, String>,
}

/// What a caller fills in; [`Ledger::append`] adds the sequence number, chain and time.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub op: Op,
    pub runs: Vec<String>,
    pub target_before: Option<Target>,
    pub target_after: Option<Target>,
    pub bootstrap_id: Option<String>,
    pub config_id: Option<String>,
    pub complete: bool,
    pub hosts: BTreeMap<HostAddr, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Head {
    seq: u64,
    sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot {action} the cluster ledger `{path}`")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the cluster ledger `{path}` is damaged at line {line}: {why}")]
    Damaged {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("the cluster ledger `{path}` is truncated: {why}")]
    Truncated { path: PathBuf, why: String },
    #[error("the cluster ledger has no entry {seq} (it has {count})")]
    NoEntry { seq: u64, count: u64 },
}

/// `sha256` of a line (without its newline).
fn line_sha(line: &str) -> String {
    Digest::of(line.as_bytes()).hex()
}

const ZERO_SHA: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The ledger of one `genconf/state/` directory.
#[derive(Debug, Clone)]
pub struct Ledger {
    state_dir: PathBuf,
}

impl Ledger {
    pub fn new(state_dir: &Path) -> Ledger {
        Ledger {
            state_dir: state_dir.to_path_buf(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.state_dir.join(LEDGER_FILE)
    }

    fn head_path(&self) -> PathBuf {
        self.state_dir.join(HEAD_FILE)
    }

    /// Every entry, verified (chain and head). An empty or absent ledger is `[]`.
    pub fn read(&self) -> Result<Vec<Entry>, LedgerError> {
        Ok(self.read_raw()?.0)
    }

    /// The entries and the text of the ledger file, verified.
    fn read_raw(&self) -> Result<(Vec<Entry>, String), LedgerError> {
        let path = self.path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(LedgerError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        let head =
            match std::fs::read_to_string(self.head_path()) {
                Ok(h) => Some(serde_json::from_str::<Head>(h.trim()).map_err(|e| {
                    LedgerError::Damaged {
                        path: self.head_path(),
                        line: 1,
                        why: format!("not a ledger head: {e}"),
                    }
                })?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => {
                    return Err(LedgerError::Io {
                        action: "read",
                        path: self.head_path(),
                        source,
                    });
                }
            };
        let entries = verify(&path, &text, head.as_ref())?;
        Ok((entries, text))
    }

    /// Append one entry under the run lock; returns it as written.
    pub fn append(&self, _lock: &RunLock, new: NewEntry) -> Result<Entry, LedgerError> {
        let (entries, mut text) = self.read_raw()?;
        let prev_sha256 = text
            .lines()
            .last()
            .map(line_sha)
            .unwrap_or_else(|| ZERO_SHA.to_owned());
        let entry = Entry {
            seq: entries.last().map_or(1, |e| e.seq + 1),
            prev_sha256,
            at: now_rfc3339(),
            who: who(),
            command: std::env::args().collect(),
            op: new.op,
            runs: new.runs,
            target_before: new.target_before,
            target_after: new.target_after,
            bootstrap_id: new.bootstrap_id,
            config_id: new.config_id,
            complete: new.complete,
            hosts: new.hosts,
        };
        let line = serde_json::to_string(&entry).expect("a ledger entry serializes");
        text.push_str(&line);
        text.push('\n');
        let io = |action, path: PathBuf| {
            move |source| LedgerError::Io {
                action,
                path,
                source,
            }
        };
        tarmac_fsx::create_private_dir(&self.state_dir)
            .map_err(io("create the directory of", self.path()))?;
        tarmac_fsx::write_atomic(&self.path(), text.as_bytes(), 0o600)
            .map_err(io("write", self.path()))?;
        let head = Head {
            seq: entry.seq,
            sha256: line_sha(&line),
        };
        let head = serde_json::to_string(&head).expect("a head serializes") + "\n";
        tarmac_fsx::write_atomic(&self.head_path(), head.as_bytes(), 0o600)
            .map_err(io("write", self.head_path()))?;
        Ok(entry)
    }

    /// Record a genconf run (under the run lock genconf holds while it writes `serve/`):
    /// a new entry only when the rendered package list differs from the last one recorded,
    /// so re-running genconf on the same config adds nothing.
    pub fn record_genconf(
        &self,
        lock: &RunLock,
        target: Target,
        bootstrap_id: &str,
        config_id: &str,
    ) -> Result<Option<Entry>, LedgerError> {
        let entries = self.read()?;
        let last = latest_genconf(&entries).and_then(|e| e.target_after.as_ref());
        if last.is_some_and(|t| t.list_id == target.list_id) {
            return Ok(None);
        }
        self.append(
            lock,
            NewEntry {
                op: Op::Genconf,
                runs: vec![],
                target_before: last.cloned(),
                target_after: Some(target),
                bootstrap_id: Some(bootstrap_id.to_owned()),
                config_id: Some(config_id.to_owned()),
                complete: true,
                hosts: BTreeMap::new(),
            },
        )
        .map(Some)
    }

    /// Entry `seq`.
    pub fn entry(&self, seq: u64) -> Result<Entry, LedgerError> {
        let entries = self.read()?;
        let count = entries.len() as u64;
        entries
            .into_iter()
            .find(|e| e.seq == seq)
            .ok_or(LedgerError::NoEntry { seq, count })
    }
}

/// Check the chain of `text` and that `head` names its last entry (or the one before it: a
/// crash between the two writes of an append).
fn verify(path: &Path, text: &str, head: Option<&Head>) -> Result<Vec<Entry>, LedgerError> {
    let damaged = |line: usize, why: String| LedgerError::Damaged {
        path: path.to_path_buf(),
        line,
        why,
    };
    if !text.is_empty() && !text.ends_with('\n') {
        let n = text.lines().count();
        return Err(damaged(n, "the last line is incomplete".into()));
    }
    let mut entries: Vec<Entry> = Vec::new();
    let mut prev = ZERO_SHA.to_owned();
    let mut shas = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let e: Entry = serde_json::from_str(line)
            .map_err(|err| damaged(n, format!("not a ledger entry: {err}")))?;
        if e.seq != n as u64 {
            return Err(damaged(
                n,
                format!("entry number {} where {n} belongs", e.seq),
            ));
        }
        if e.prev_sha256 != prev {
            return Err(damaged(
                n,
                format!(
                    "it does not follow entry {}: the entry before it was edited, removed or reordered",
                    n - 1
                ),
            ));
        }
        prev = line_sha(line);
        shas.push(prev.clone());
        entries.push(e);
    }
    let truncated = |why: String| LedgerError::Truncated {
        path: path.to_path_buf(),
        why,
    };
    let count = entries.len() as u64;
    match head {
        None if count <= 1 => {}
        None => {
            return Err(truncated(format!(
                "its head file {HEAD_FILE} is missing beside {count} entries"
            )));
        }
        Some(h) => {
            let ok = |seq: u64| {
                seq >= 1 && seq <= count && shas[(seq - 1) as usize] == h.sha256 && seq == h.seq
            };
            if h.seq > count {
                return Err(truncated(format!(
                    "its head records entry {} but the ledger ends at entry {count}",
                    h.seq
                )));
            }
            if !(ok(count) || (count >= 1 && ok(count - 1))) {
                return Err(truncated(format!(
                    "its head records entry {} (sha256 {}…), which is not the last entry {count}",
                    h.seq,
                    &h.sha256[..h.sha256.len().min(12)]
                )));
            }
        }
    }
    Ok(entries)
}

fn now_rfc3339() -> String {
    tarmac_types::time::rfc3339_of(std::time::SystemTime::now())
}

fn who() -> String {
    let user = std::env::var("SUDO_USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .unwrap_or_else(|| format!("uid {}", unsafe_uid()));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

fn unsafe_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

// ---------------------------------------------------------------------------------------
// What the cluster is meant to run, from the entries.

/// What `status` compares each host with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// The target the hosts should be on (`None`: the ledger knows none).
    pub target: Option<Target>,
    /// A partial upgrade or rollback: hosts still on this target are expected for now.
    pub interim: Option<Target>,
    /// The entry that set the target.
    pub set_by: Option<u64>,
    /// The run to resume when the last operation did not finish.
    pub resume: Option<String>,
    /// genconf's latest rendered target, when it is not the hosts' target (not rolled out
    /// yet, or rolled back from): what `tarmac upgrade` would roll out.
    pub pending: Option<(u64, Target)>,
}

/// The expectation after the entries `..=upto` (all when `None`).
///
/// The hosts' target is the `target_after` of the last operation that moves hosts; a
/// rollback's `target_after` is the target the undone operation started from. An incomplete
/// upgrade or rollback leaves both its targets expected.
pub fn expectation(entries: &[Entry], upto: Option<u64>) -> Expectation {
    let entries: Vec<&Entry> = entries
        .iter()
        .filter(|e| upto.is_none_or(|n| e.seq <= n))
        .collect();
    let mut x = Expectation {
        target: None,
        interim: None,
        set_by: None,
        resume: None,
        pending: None,
    };
    let mut last_genconf: Option<&Entry> = None;
    for e in &entries {
        if e.op == Op::Genconf {
            last_genconf = Some(e);
            continue;
        }
        if !e.op.moves_hosts() {
            continue;
        }
        x.target = e.target_after.clone();
        x.set_by = Some(e.seq);
        x.interim = None;
        x.resume = None;
        if !e.complete && matches!(e.op, Op::Upgrade | Op::Rollback) {
            x.interim = e.target_before.clone();
            x.resume = e.runs.last().cloned();
        }
    }
    if let Some(g) = last_genconf
        && let Some(t) = &g.target_after
        && x.target.as_ref().is_none_or(|cur| cur.list_id != t.list_id)
    {
        x.pending = Some((g.seq, t.clone()));
    }
    x
}

/// The target a rollback goes back to: the hosts' target before the operation that set the
/// current one. Walks the stack of targets the host-moving operations built (deploy and
/// upgrade push, rollback pops).
pub fn rollback_target(entries: &[Entry]) -> Option<Target> {
    let mut stack: Vec<Target> = Vec::new();
    for e in entries {
        match e.op {
            Op::Genconf | Op::Backup | Op::Restore | Op::RemoveHosts | Op::ReplaceMaster => {}
            // A deploy onto a running cluster (new hosts, then the others upgraded) moves it
            // forward like an upgrade; a first deploy starts the stack.
            Op::Deploy if e.target_before.is_some() && stack.last() == e.target_before.as_ref() => {
                if let Some(t) = &e.target_after
                    && stack.last() != Some(t)
                {
                    stack.push(t.clone());
                }
            }
            Op::Deploy => {
                stack.clear();
                stack.extend(e.target_after.clone());
            }
            Op::Upgrade => {
                if let Some(t) = &e.target_after
                    && stack.last() != Some(t)
                {
                    stack.push(t.clone());
                }
            }
            Op::Rollback => {
                stack.pop();
            }
            Op::Uninstall => stack.clear(),
        }
    }
    if stack.len() >= 2 {
        stack.get(stack.len() - 2).cloned()
    } else {
        None
    }
}

/// The latest target genconf rendered (or `None`).
pub fn latest_genconf(entries: &[Entry]) -> Option<&Entry> {
    entries.iter().rev().find(|e| e.op == Op::Genconf)
}

/// Which operation put a host on its current generation, from the host's switch record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PlacedBy {
    /// A ledger entry's run (`revert`: the run's own confirm-or-revert took the host back).
    Entry { seq: u64, op: Op, revert: bool },
    /// An installer run that has no ledger entry (still running, or interrupted: resume it).
    UnfinishedRun { run: String },
    /// `install.sh` run on the host by hand (the documented self-install).
    SelfInstall,
    /// `tarmac-host` run without the installer: the host was changed behind its back.
    Outside { command: String },
    /// The host keeps no switch log, or no record explains its generation.
    Unknown,
}

impl PlacedBy {
    /// Is this a change the installer did not make?
    pub fn is_outside(&self) -> bool {
        matches!(self, PlacedBy::Outside { .. })
    }

    pub fn describe(&self) -> String {
        match self {
            PlacedBy::Entry {
                seq,
                op,
                revert: false,
            } => format!("ledger entry {seq} ({op})"),
            PlacedBy::Entry {
                seq,
                op,
                revert: true,
            } => {
                format!("ledger entry {seq} ({op}, reverted by its confirm window)")
            }
            PlacedBy::UnfinishedRun { run } => {
                format!("run {run}, which has no ledger entry (interrupted or still running)")
            }
            PlacedBy::SelfInstall => "a self-install (install.sh run on the host)".to_owned(),
            PlacedBy::Outside { command } => {
                format!("`tarmac-host {command}` run outside the installer")
            }
            PlacedBy::Unknown => "unknown (the host keeps no switch record for it)".to_owned(),
        }
    }
}

/// Does the operation `op` (a host command's `TARMAC_OPERATION`) belong to run `run`? It is
/// the run id itself or a step of it: `<run>-NNN-<what>` (upgrade waves).
fn of_run(op: &str, run: &str) -> bool {
    match op.strip_prefix(run) {
        Some("") => true,
        Some(rest) => {
            let Some(rest) = rest.strip_prefix('-') else {
                return false;
            };
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            digits > 0 && (rest.len() == digits || rest.as_bytes()[digits] == b'-')
        }
        None => false,
    }
}

/// Which operation put a host where it is, from the record that made its generation current.
pub fn placed_by(entries: &[Entry], record: Option<&SwitchRecord>) -> PlacedBy {
    let Some(rec) = record else {
        return PlacedBy::Unknown;
    };
    let Some(op) = rec.operation.as_deref() else {
        return PlacedBy::Outside {
            command: rec.command.clone(),
        };
    };
    if op == SELF_INSTALL {
        return PlacedBy::SelfInstall;
    }
    let (base, revert) = match op.strip_suffix("/revert") {
        Some(b) => (b, true),
        None => (op, false),
    };
    entries
        .iter()
        .rev()
        .find(|e| e.runs.iter().any(|r| of_run(base, r)))
        .map(|e| PlacedBy::Entry {
            seq: e.seq,
            op: e.op,
            revert,
        })
        .unwrap_or_else(|| PlacedBy::UnfinishedRun {
            run: base.to_owned(),
        })
}

/// The operation install.sh records when nobody set `TARMAC_OPERATION`.
pub const SELF_INSTALL: &str = "self-install";

/// One line per entry, for `tarmac history`.
pub fn render_history(entries: &[Entry]) -> String {
    let mut out = String::new();
    if entries.is_empty() {
        out.push_str("the cluster ledger is empty\n");
        return out;
    }
    out.push_str(&format!(
        "{:>4}  {:<24}  {:<10}  {:<27}  {:<9}  {}\n",
        "#", "when (UTC)", "operation", "target", "result", "by"
    ));
    for e in entries {
        let target = match (&e.target_before, &e.target_after) {
            (Some(b), Some(a)) if b.list_id != a.list_id => {
                format!("{} → {}", b.short(), a.short())
            }
            (_, Some(a)) => a.short().to_owned(),
            (Some(b), None) => format!("{} → none", b.short()),
            (None, None) => "–".to_owned(),
        };
        let result = if e.op == Op::Genconf {
            "rendered".to_owned()
        } else if e.complete {
            "complete".to_owned()
        } else {
            "partial".to_owned()
        };
        out.push_str(&format!(
            "{:>4}  {:<24}  {:<10}  {:<27}  {:<9}  {}\n",
            e.seq, e.at, e.op, target, result, e.who
        ));
    }
    out
}

/// The detail of one entry, for `tarmac history show N`.
pub fn render_entry(e: &Entry) -> String {
    let mut out = format!("entry {}: {} at {} by {}\n", e.seq, e.op, e.at, e.who);
    out.push_str(&format!("  command    {}\n", e.command.join(" ")));
    if !e.runs.is_empty() {
        out.push_str(&format!("  runs       {}\n", e.runs.join(", ")));
    }
    let t = |t: &Option<Target>| {
        t.as_ref()
            .map(|t| format!("{} ({} packages)", t.list_id, t.packages.len()))
            .unwrap_or_else(|| "none".into())
    };
    out.push_str(&format!("  before     {}\n", t(&e.target_before)));
    out.push_str(&format!("  after      {}\n", t(&e.target_after)));
    if let Some(b) = &e.bootstrap_id {
        out.push_str(&format!("  bootstrap  {b}\n"));
    }
    if let Some(c) = &e.config_id {
        out.push_str(&format!("  config     {c}\n"));
    }
    if e.op != Op::Genconf {
        out.push_str(&format!(
            "  result     {}\n",
            if e.complete { "complete" } else { "partial" }
        ));
    }
    for (h, o) in &e.hosts {
        out.push_str(&format!("    {h:<24} {o}\n"));
    }
    out.push_str(&format!("  previous   sha256 {}\n", e.prev_sha256));
    out
}

impl tarmac_types::error_report::Hint for LedgerError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(match self {
            LedgerError::Damaged { .. } => "the ledger is append-only; restore it from a backup of genconf/state/ (an edited or reordered entry cannot be repaired)".into(),
            LedgerError::Truncated { .. } => "entries were removed from its end; restore genconf/state/ledger.jsonl from a backup".into(),
            LedgerError::NoEntry { .. } => "`tarmac history` lists the entries".into(),
            LedgerError::Io { .. } => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: &str) -> Target {
        Target {
            list_id: id.into(),
            packages: vec![PackageId::parse(&format!("etcd--{id}")).unwrap()],
        }
    }

    fn new(op: Op, before: Option<&str>, after: Option<&str>, complete: bool) -> NewEntry {
        NewEntry {
            op,
            runs: if op == Op::Genconf {
                vec![]
            } else {
                vec![format!("{op}-1")]
            },
            target_before: before.map(target),
            target_after: after.map(target),
            bootstrap_id: None,
            config_id: None,
            complete,
            hosts: BTreeMap::new(),
        }
    }

    fn ledger() -> (tempfile::TempDir, Ledger, RunLock) {
        let d = tempfile::tempdir().unwrap();
        let l = Ledger::new(d.path());
        let lock = RunLock::acquire(d.path(), "test").unwrap();
        (d, l, lock)
    }

    #[test]
    fn appends_chain_and_read_back() {
        let (_d, l, lock) = ledger();
        assert!(l.read().unwrap().is_empty());
        l.append(&lock, new(Op::Genconf, None, Some("a"), true))
            .unwrap();
        l.append(&lock, new(Op::Deploy, None, Some("a"), true))
            .unwrap();
        let e3 = l
            .append(&lock, new(Op::Upgrade, Some("a"), Some("b"), true))
            .unwrap();
        assert_eq!(e3.seq, 3);
        let all = l.read().unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].prev_sha256, ZERO_SHA);
        let text = std::fs::read_to_string(l.path()).unwrap();
        assert_eq!(all[1].prev_sha256, line_sha(text.lines().next().unwrap()));
        assert_eq!(l.entry(2).unwrap().op, Op::Deploy);
        assert!(matches!(
            l.entry(9),
            Err(LedgerError::NoEntry { seq: 9, count: 3 })
        ));
    }

    #[test]
    fn an_edited_entry_is_detected() {
        let (_d, l, lock) = ledger();
        for _ in 0..3 {
            l.append(&lock, new(Op::Deploy, None, Some("a"), true))
                .unwrap();
        }
        let text = std::fs::read_to_string(l.path()).unwrap();
        std::fs::write(
            l.path(),
            text.replacen("\"complete\":true", "\"complete\":false", 1),
        )
        .unwrap();
        let err = l.read().unwrap_err().to_string();
        assert!(
            err.contains("is damaged at line 2: it does not follow entry 1"),
            "{err}"
        );
    }

    #[test]
    fn a_truncated_ledger_is_detected() {
        let (_d, l, lock) = ledger();
        for _ in 0..3 {
            l.append(&lock, new(Op::Deploy, None, Some("a"), true))
                .unwrap();
        }
        let text = std::fs::read_to_string(l.path()).unwrap();
        let first: String = text.lines().take(1).map(|l| format!("{l}\n")).collect();
        std::fs::write(l.path(), &first).unwrap();
        let err = l.read().unwrap_err().to_string();
        assert!(
            err.contains("is truncated: its head records entry 3 but the ledger ends at entry 1"),
            "{err}"
        );
        std::fs::remove_file(l.path()).unwrap();
        assert!(l.read().unwrap_err().to_string().contains("truncated"));
        std::fs::write(l.path(), text).unwrap();
        std::fs::remove_file(l.state_dir.join(HEAD_FILE)).unwrap();
        let err = l.read().unwrap_err().to_string();
        assert!(
            err.contains("head file ledger.head is missing beside 3 entries"),
            "{err}"
        );
    }

    #[test]
    fn a_crash_between_the_two_writes_is_accepted_and_repaired() {
        let (_d, l, lock) = ledger();
        l.append(&lock, new(Op::Deploy, None, Some("a"), true))
            .unwrap();
        l.append(&lock, new(Op::Deploy, None, Some("a"), true))
            .unwrap();
        let head1 = std::fs::read_to_string(l.state_dir.join(HEAD_FILE)).unwrap();
        l.append(&lock, new(Op::Deploy, None, Some("a"), true))
            .unwrap();
        // the ledger has 3 entries, the head still names entry 2
        let text = std::fs::read_to_string(l.path()).unwrap();
        let two: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
        let head2 = format!(
            "{}\n",
            serde_json::to_string(&Head {
                seq: 2,
                sha256: line_sha(two.lines().nth(1).unwrap())
            })
            .unwrap()
        );
        std::fs::write(l.state_dir.join(HEAD_FILE), &head2).unwrap();
        assert_eq!(l.read().unwrap().len(), 3);
        l.append(&lock, new(Op::Deploy, None, Some("a"), true))
            .unwrap();
        assert_eq!(l.read().unwrap().len(), 4);
        // two behind is truncation
        std::fs::write(l.state_dir.join(HEAD_FILE), head1).unwrap();
        assert!(matches!(l.read(), Err(LedgerError::Truncated { .. })));
    }

    #[test]
    fn an_incomplete_last_line_is_damage() {
        let (_d, l, lock) = ledger();
        l.append(&lock, new(Op::Deploy, None, Some("a"), true))
            .unwrap();
        let mut text = std::fs::read_to_string(l.path()).unwrap();
        text.push_str("{\"seq\":2,");
        std::fs::write(l.path(), text).unwrap();
        let err = l.read().unwrap_err().to_string();
        assert!(
            err.contains("damaged at line 2: the last line is incomplete"),
            "{err}"
        );
    }

    fn entries(specs: &[(Op, Option<&str>, Option<&str>, bool)]) -> Vec<Entry> {
        let (_d, l, lock) = ledger();
        for (op, b, a, c) in specs {
            l.append(&lock, new(*op, *b, *a, *c)).unwrap();
        }
        l.read().unwrap()
    }

    #[test]
    fn the_target_follows_deploy_upgrade_and_rollback() {
        use Op::*;
        let e = entries(&[
            (Genconf, None, Some("a"), true),
            (Deploy, None, Some("a"), true),
            (Genconf, Some("a"), Some("b"), true),
        ]);
        let x = expectation(&e, None);
        assert_eq!(x.target, Some(target("a")));
        assert_eq!(x.set_by, Some(2));
        assert_eq!(x.pending.as_ref().map(|p| p.0), Some(3));
        let e = entries(&[
            (Genconf, None, Some("a"), true),
            (Deploy, None, Some("a"), true),
            (Genconf, Some("a"), Some("b"), true),
            (Upgrade, Some("a"), Some("b"), true),
        ]);
        assert_eq!(rollback_target(&e), Some(target("a")));
        let x = expectation(&e, None);
        assert_eq!((x.target, x.pending), (Some(target("b")), None));
        assert_eq!(expectation(&e, Some(2)).target, Some(target("a")));
        let e = entries(&[
            (Deploy, None, Some("a"), true),
            (Upgrade, Some("a"), Some("b"), true),
            (Rollback, Some("b"), Some("a"), true),
        ]);
        let x = expectation(&e, None);
        assert_eq!(
            (x.target, x.set_by, x.interim),
            (Some(target("a")), Some(3), None)
        );
        assert_eq!(rollback_target(&e), None, "nothing below the deploy");
        let mut g = e.clone();
        g.insert(0, entries(&[(Genconf, None, Some("b"), true)]).remove(0));
        for (i, x) in g.iter_mut().enumerate() {
            x.seq = i as u64 + 1;
        }
        assert_eq!(
            expectation(&g, None).pending,
            Some((1, target("b"))),
            "rolled back from genconf's target: still what upgrade would roll out"
        );
        let e = entries(&[
            (Deploy, None, Some("a"), true),
            (Upgrade, Some("a"), Some("b"), false),
        ]);
        let x = expectation(&e, None);
        assert_eq!(x.target, Some(target("b")));
        assert_eq!(x.interim, Some(target("a")));
        assert_eq!(x.resume.as_deref(), Some("upgrade-1"));
    }

    /// Run by [`a_sigkill_mid_append_leaves_a_ledger_that_verifies`] in a child process:
    /// appends as fast as it can until killed.
    #[test]
    #[ignore = "a child process of the SIGKILL test"]
    fn append_forever_child() {
        let Ok(dir) = std::env::var("TARMAC_LEDGER_CHILD_DIR") else {
            return;
        };
        let dir = PathBuf::from(dir);
        let l = Ledger::new(&dir);
        let lock = RunLock::acquire(&dir, "child").unwrap();
        loop {
            let mut e = new(Op::Upgrade, Some("a"), Some("b"), true);
            for i in 0..50 {
                e.hosts.insert(
                    format!("10.0.0.{i}").parse::<HostAddr>().unwrap(),
                    "ok".into(),
                );
            }
            l.append(&lock, e).unwrap();
        }
    }

    #[test]
    fn a_sigkill_mid_append_leaves_a_ledger_that_verifies() {
        let d = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let mut last = 0;
        for round in 0..8u64 {
            let mut child = std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "ledger::tests::append_forever_child",
                    "--ignored",
                    "--nocapture",
                ])
                .env("TARMAC_LEDGER_CHILD_DIR", d.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(150 + 37 * round));
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            child.wait().unwrap();
            let entries = Ledger::new(d.path())
                .read()
                .expect("the ledger verifies after SIGKILL");
            assert!(entries.len() >= last, "entries were lost");
            last = entries.len();
        }
        assert!(last > 0, "the child appended nothing");
    }

    #[test]
    fn which_entry_placed_a_host() {
        use tarmac_types::switch::SwitchRecord;
        let e = entries(&[
            (Op::Deploy, None, Some("a"), true),
            (Op::Upgrade, Some("a"), Some("b"), true),
        ]);
        let rec = |op: Option<&str>| SwitchRecord {
            to: tarmac_types::Generation(2),
            from: None,
            command: "activate".into(),
            operation: op.map(str::to_owned),
            at_unix: 0,
            reason: None,
        };
        let p = |op| placed_by(&e, Some(&rec(op)));
        assert_eq!(
            p(Some("upgrade-1-002-switch")),
            PlacedBy::Entry {
                seq: 2,
                op: Op::Upgrade,
                revert: false
            }
        );
        assert_eq!(
            p(Some("upgrade-1-002-switch/revert")),
            PlacedBy::Entry {
                seq: 2,
                op: Op::Upgrade,
                revert: true
            }
        );
        assert_eq!(
            p(Some("deploy-1")),
            PlacedBy::Entry {
                seq: 1,
                op: Op::Deploy,
                revert: false
            }
        );
        assert_eq!(
            p(Some("upgrade-10")),
            PlacedBy::UnfinishedRun {
                run: "upgrade-10".into()
            }
        );
        assert_eq!(p(Some("self-install")), PlacedBy::SelfInstall);
        assert_eq!(
            p(None),
            PlacedBy::Outside {
                command: "activate".into()
            }
        );
        assert_eq!(placed_by(&e, None), PlacedBy::Unknown);
        assert_eq!(
            p(None).describe(),
            "`tarmac-host activate` run outside the installer"
        );
    }

    #[test]
    fn history_renders() {
        use Op::*;
        let mut e = entries(&[
            (Deploy, None, Some("aaaaaaaaaaaaaaaa"), true),
            (
                Upgrade,
                Some("aaaaaaaaaaaaaaaa"),
                Some("bbbbbbbbbbbbbbbb"),
                false,
            ),
        ]);
        for x in &mut e {
            x.at = "2026-12-02T19:00:00.000Z".into();
            x.who = "root@ctl".into();
        }
        assert_eq!(
            render_history(&e),
            "   #  when (UTC)                operation   target                       result     by\n   \
             1  2026-12-02T19:00:00.000Z  deploy      aaaaaaaaaaaa                 complete   root@ctl\n   \
             2  2026-12-02T19:00:00.000Z  upgrade     aaaaaaaaaaaa → bbbbbbbbbbbb  partial    root@ctl\n"
        );
    }
}
