//! A fake fleet: hosts that answer the installer's commands the way `tarmac-host` does,
//! with per-host state in memory (generations, the pending confirmation, checks,
//! reachability, reboots). It is a [`Transport`], so the real engine (wrappers, uploads
//! with their sha256, timeouts, journals) runs unchanged; only the processes are fake.
//!
//! Every command the fake does not know fails with exit 127 and is recorded: tests assert
//! [`FakeFleet::unknown`] is empty, so nothing passes by accident.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use tarmac_installer::plan;
use tarmac_ssh::{
    ConnectError, ExitStatus, Host, ProcControl, ProcEvent, Process, SshOptions, Target, Transport,
    TransportError,
};
use tarmac_types::confirm::{FORMAT, HostStatus, PendingConfirm, RevertReason, SwitchOutcome};
use tarmac_types::switch::SwitchRecord;
use tarmac_types::{Digest, Generation, HostAddr, PackageId};
use tokio::sync::{Notify, mpsc};

const HOST_BIN: &str = "/opt/tarmac/tarmac-host";

/// What a test can make a host do.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// `tarmac-host check` fails (after a switch to a list containing this package name, or
    /// always when `checks_fail_on` is empty and this is set).
    pub checks_fail: bool,
    /// `mkdir -p /etc/tarmac/upgrade` fails (the lab's "cannot prepare its upgrade directory").
    pub prepare_fails: bool,
    /// After a successful switch the network to the host is cut: every later command and
    /// connection fails (the confirmation never arrives).
    pub cut_after_switch: bool,
    /// The installer "dies" on this tarmac-host verb (`confirm`, `check`, …): the command
    /// never answers and [`FakeFleet::killed`] fires.
    pub hang_on: Option<String>,
    /// `tarmac-host backup` fails (the quorum store is down).
    pub backup_fails: bool,
    /// install.sh (not `--preflight-only`) fails after its preflight, with this message.
    pub install_fails: Option<String>,
}

/// One host's state, as tarmac-host keeps it on disk.
#[derive(Debug, Clone)]
pub struct HostModel {
    /// Generation n (from 1) → its package ids.
    pub generations: Vec<Vec<PackageId>>,
    pub current: u64,
    /// Generation → the generation it was switched from (what a rollback goes back to).
    pub came_from: BTreeMap<u64, u64>,
    pub pending: Option<PendingConfirm>,
    pub last_switch: Option<SwitchRecord>,
    pub files: BTreeMap<String, Bytes>,
    pub reachable: bool,
    pub behaviour: Behaviour,
    pub boot: u32,
    /// The uninstall script ran.
    pub uninstalled: bool,
    /// `tarmac-host membership` calls: their arguments.
    pub membership: Vec<Vec<String>>,
    /// `/opt/tarmac/switches.jsonl`: every switch, in order (the last one is `last_switch`).
    pub switches: Vec<SwitchRecord>,
    /// `/etc/os-release`'s ID, VERSION_ID and ID_LIKE.
    pub os: (String, String, String),
    /// `uname -m`.
    pub arch: String,
    /// Commands install.sh's "required commands" check does not find.
    pub missing_commands: Vec<String>,
    /// Ports in LISTEN state (install.sh's "free TCP ports" check).
    pub listening: Vec<u16>,
    /// Units of tarmac.target and their `systemctl is-active` word.
    pub units: BTreeMap<String, String>,
    /// TARMAC_MIRRORS of each install.sh run (the relay tree's peers), in order.
    pub mirrors: Vec<String>,
    /// `tarmac-host relay` was started here (on this address).
    pub relayed_on: Option<String>,
    /// The `--mirror` peers of each `tarmac-host fetch` (space-separated), in order.
    pub fetch_mirrors: Vec<String>,
}

impl HostModel {
    /// The active packages (none when Tarmac is not installed: generation 0).
    pub fn active(&self) -> Vec<PackageId> {
        if self.current == 0 {
            return Vec::new();
        }
        self.generations[(self.current - 1) as usize].clone()
    }

    pub fn installed(&self) -> bool {
        self.current != 0
    }
}

/// Record a switch as tarmac-host does: the last one, and a line of the switch log.
fn record(h: &mut HostModel, rec: SwitchRecord) {
    h.switches.push(rec.clone());
    h.last_switch = Some(rec);
}

/// One command a host ran (its tarmac-host verb or the shell command's first word).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    pub host: String,
    pub verb: String,
}

#[derive(Default)]
struct Inner {
    hosts: BTreeMap<HostAddr, HostModel>,
    log: Vec<Ran>,
    unknown: Vec<(String, String)>,
    clock: u64,
    /// What install.sh's `BOOTSTRAP_URL` (a `file://` URL) points at: the serve directory.
    repository: Option<PathBuf>,
    /// install.sh (not `--preflight-only`) takes this long: how many run at once is measured.
    install_time: Option<Duration>,
    installing: usize,
    max_installing: usize,
}

/// The fleet: a [`Transport`] and the state of every host.
#[derive(Clone, Default)]
pub struct FakeFleet {
    inner: Arc<Mutex<Inner>>,
    killed: Arc<Notify>,
}

fn now_unix() -> u64 {
    1_700_000_000
}

impl FakeFleet {
    pub fn new() -> Self {
        Self::default()
    }

    /// A host running tarmac-host on generation 1 with `active`.
    pub fn add(&self, addr: &str, active: &[PackageId]) {
        self.add_host(addr, vec![active.to_vec()], 1);
    }

    /// A supported host (Debian 12, x86_64, every command there) without Tarmac.
    pub fn add_bare(&self, addr: &str) {
        self.add_host(addr, Vec::new(), 0);
    }

    fn add_host(&self, addr: &str, generations: Vec<Vec<PackageId>>, current: u64) {
        let mut g = self.inner.lock().unwrap();
        g.hosts.insert(
            addr.parse::<HostAddr>().unwrap(),
            HostModel {
                generations,
                current,
                came_from: BTreeMap::new(),
                pending: None,
                last_switch: None,
                files: BTreeMap::new(),
                reachable: true,
                behaviour: Behaviour::default(),
                boot: 0,
                uninstalled: false,
                membership: Vec::new(),
                switches: Vec::new(),
                os: ("debian".into(), "12".into(), String::new()),
                arch: "x86_64".into(),
                missing_commands: Vec::new(),
                listening: Vec::new(),
                units: BTreeMap::new(),
                mirrors: Vec::new(),
                fetch_mirrors: Vec::new(),
                relayed_on: None,
            },
        );
    }

    /// Change a host's state by hand (as someone on the host would).
    pub fn edit(&self, addr: &str, f: impl FnOnce(&mut HostModel)) {
        let mut g = self.inner.lock().unwrap();
        f(g.hosts.get_mut(&addr.parse::<HostAddr>().unwrap()).unwrap());
    }

    /// Someone runs `tarmac-host switch` by hand on the host (no installer operation): a new
    /// generation with `active`, recorded in its switch log without an operation.
    pub fn switch_by_hand(&self, addr: &str, active: &[PackageId]) {
        self.switch_recording(addr, active, "switch", None);
    }

    /// `tarmac-host COMMAND` on the host switches it to a new generation with `active`,
    /// recording `operation` (for `setup`: the operation flag install.sh left).
    pub fn switch_recording(
        &self,
        addr: &str,
        active: &[PackageId],
        command: &str,
        operation: Option<String>,
    ) {
        self.edit(addr, |h| {
            let from = h.current;
            let mut ids = active.to_vec();
            ids.sort();
            h.generations.push(ids);
            h.current = h.generations.len() as u64;
            h.came_from.insert(h.current, from);
            record(
                h,
                SwitchRecord {
                    to: Generation(h.current),
                    from: Some(Generation(from)),
                    command: command.into(),
                    operation,
                    at_unix: now_unix(),
                    reason: None,
                },
            );
        });
    }

    /// The directory install.sh's `file://` BOOTSTRAP_URL stands for (genconf's serve dir).
    pub fn set_repository(&self, dir: PathBuf) {
        self.inner.lock().unwrap().repository = Some(dir);
    }

    /// install.sh takes `t` on every host (so that how many run at once can be seen).
    pub fn set_install_time(&self, t: Duration) {
        self.inner.lock().unwrap().install_time = Some(t);
    }

    /// The most install.sh runs (not preflight) that were in progress at once.
    pub fn max_installing(&self) -> usize {
        self.inner.lock().unwrap().max_installing
    }

    pub fn behave(&self, addr: &str, f: impl FnOnce(&mut Behaviour)) {
        let mut g = self.inner.lock().unwrap();
        f(&mut g
            .hosts
            .get_mut(&addr.parse::<HostAddr>().unwrap())
            .unwrap()
            .behaviour);
    }

    pub fn host(&self, addr: &str) -> HostModel {
        self.inner.lock().unwrap().hosts[&addr.parse::<HostAddr>().unwrap()].clone()
    }

    pub fn set_reachable(&self, addr: &str, reachable: bool) {
        let mut g = self.inner.lock().unwrap();
        g.hosts
            .get_mut(&addr.parse::<HostAddr>().unwrap())
            .unwrap()
            .reachable = reachable;
    }

    /// The host reboots: a pending switch is reverted by the boot guard (reason `reboot`).
    pub fn reboot(&self, addr: &str) {
        let mut g = self.inner.lock().unwrap();
        let h = g.hosts.get_mut(&addr.parse::<HostAddr>().unwrap()).unwrap();
        h.boot += 1;
        revert_pending(h, RevertReason::Reboot);
    }

    /// The confirm window of the host passes: its guard reverts (reason `deadline`).
    pub fn expire(&self, addr: &str) {
        let mut g = self.inner.lock().unwrap();
        let h = g.hosts.get_mut(&addr.parse::<HostAddr>().unwrap()).unwrap();
        revert_pending(h, RevertReason::Deadline);
    }

    /// Every command run so far, in order.
    pub fn log(&self) -> Vec<Ran> {
        self.inner.lock().unwrap().log.clone()
    }

    /// Hosts in the order they ran `verb` (first time each).
    pub fn order_of(&self, verb: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.log() {
            if r.verb == verb && !out.contains(&r.host) {
                out.push(r.host);
            }
        }
        out
    }

    pub fn count(&self, host: &str, verb: &str) -> usize {
        self.log()
            .iter()
            .filter(|r| r.host == host && r.verb == verb)
            .count()
    }

    pub fn clear_log(&self) {
        self.inner.lock().unwrap().log.clear();
    }

    /// Commands no part of the fake understood (must stay empty).
    pub fn unknown(&self) -> Vec<(String, String)> {
        self.inner.lock().unwrap().unknown.clone()
    }

    /// Fires when a host reached its `hang_on` verb (the installer is "killed" there).
    pub async fn killed(&self) {
        self.killed.notified().await
    }
}

fn revert_pending(h: &mut HostModel, reason: RevertReason) -> bool {
    let Some(p) = h.pending.take() else {
        return false;
    };
    let from = h.current;
    h.current = p.from.0;
    record(
        h,
        SwitchRecord {
            to: p.from,
            from: Some(Generation(from)),
            command: tarmac_types::confirm::REVERT_COMMAND.into(),
            operation: p.operation.map(|o| format!("{o}/revert")),
            at_unix: now_unix(),
            reason: Some(reason),
        },
    );
    true
}

impl Transport for FakeFleet {
    fn open<'a>(
        &'a self,
        target: &'a Target,
        _opts: &'a SshOptions,
    ) -> BoxFuture<'a, Result<Arc<dyn Host>, ConnectError>> {
        async move {
            let g = self.inner.lock().unwrap();
            match g.hosts.get(&target.addr) {
                Some(h) if h.reachable => Ok(Arc::new(FakeHost {
                    addr: target.addr.clone(),
                    fleet: self.clone(),
                }) as Arc<dyn Host>),
                Some(_) => Err(ConnectError::Other {
                    host: target.addr.to_string(),
                    message: "no route to host (fake)".into(),
                }),
                None => Err(ConnectError::Other {
                    host: target.addr.to_string(),
                    message: "not in the fake fleet".into(),
                }),
            }
        }
        .boxed()
    }
}

struct FakeHost {
    addr: HostAddr,
    fleet: FakeFleet,
}

/// Split a POSIX shell line into words (quotes and backslashes; enough for the engine's
/// wrapper and the installer's commands).
pub fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in it.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = it.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = it.next() {
                                cur.push(n);
                            }
                        }
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = it.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// The command inside the engine's wrapper (`… /bin/sh -c WRAPPER tarmac CMD w`).
fn unwrap_command(line: &str) -> String {
    let w = shell_words(line);
    match w.iter().position(|x| x == "tarmac") {
        Some(i) if w.first().map(String::as_str) == Some("exec") && i + 1 < w.len() => {
            w[i + 1].clone()
        }
        _ => line.to_owned(),
    }
}

/// What a fake command answers.
struct Answer {
    code: u32,
    stdout: String,
    stderr: String,
    /// The connection goes away instead of answering.
    lost: bool,
    hang: bool,
    /// Counted as an install in progress for this long before answering.
    installing: Option<Duration>,
}

impl Answer {
    fn ok(stdout: impl Into<String>) -> Self {
        Answer {
            code: 0,
            stdout: stdout.into(),
            stderr: String::new(),
            lost: false,
            hang: false,
            installing: None,
        }
    }
    fn fail(code: u32, stderr: impl Into<String>) -> Self {
        Answer {
            code,
            stdout: String::new(),
            stderr: stderr.into(),
            lost: false,
            hang: false,
            installing: None,
        }
    }
}

fn arg<'a>(w: &'a [String], flag: &str) -> Option<&'a str> {
    w.iter()
        .position(|x| x == flag)
        .and_then(|i| w.get(i + 1))
        .map(String::as_str)
}

impl FakeFleet {
    fn answer(&self, addr: &HostAddr, command: &str, stdin: &[u8]) -> Answer {
        let mut g = self.inner.lock().unwrap();
        let inner = &mut *g;
        let host = addr.to_string();
        let Some(h) = inner.hosts.get_mut(addr) else {
            return Answer::fail(255, "no such host");
        };
        if !h.reachable {
            return Answer {
                lost: true,
                ..Answer::fail(255, "")
            };
        }
        // `export TARMAC_MIRRORS=<peers>` first (plan::with_mirrors), then the rest.
        let (mirrors, command) = match command.split_once('\n') {
            Some((first, rest)) if first.starts_with("export TARMAC_MIRRORS=") => (
                shell_words(&first["export ".len()..])
                    .first()
                    .and_then(|kv| kv.split_once('=').map(|(_, v)| v.to_owned())),
                rest,
            ),
            _ => (None, command),
        };
        // `export TARMAC_OPERATION=<run>` then the command (plan::with_operation).
        let (operation, body) = match command.split_once('\n') {
            Some((first, rest)) if first.starts_with("export TARMAC_OPERATION=") => (
                shell_words(&first["export ".len()..])
                    .first()
                    .and_then(|kv| kv.split_once('=').map(|(_, v)| v.to_owned())),
                rest,
            ),
            _ => (None, command),
        };
        let mut log = |verb: &str| {
            inner.log.push(Ran {
                host: host.clone(),
                verb: verb.to_owned(),
            })
        };
        let w = shell_words(body);
        // The relay tree: the cluster address, the relay (runs until ended), its readiness.
        if body == plan::DETECT_IP {
            log("detect_ip");
            return Answer::ok(format!("{}\n", addr.host()));
        }
        if w.first().map(String::as_str) == Some("exec")
            && w.get(2).map(String::as_str) == Some("relay")
        {
            log("relay");
            h.relayed_on = arg(&w, "--listen").map(str::to_owned);
            return Answer {
                hang: true,
                ..Answer::ok("")
            };
        }
        if body.contains("/healthz") {
            log("relay-ready");
            return Answer::ok("");
        }
        // status: `if [ -x BIN ]; then BIN [--wait] --json status [--recover] …; fi`
        if body.starts_with(&format!("if [ -x {HOST_BIN} ]; then {HOST_BIN}"))
            && w.iter().any(|x| x.trim_end_matches(';') == "status")
        {
            log("status");
            let watched: BTreeMap<String, String> = w
                .iter()
                .enumerate()
                .filter(|(_, x)| *x == "--watched")
                .filter_map(|(i, _)| w.get(i + 1))
                .map(|p| (p.trim_end_matches(";").to_owned(), Digest::of(b"").hex()))
                .collect();
            let previous = h.came_from.get(&h.current).copied().map(Generation);
            let st = HostStatus {
                format: FORMAT,
                current: Some(Generation(h.current)),
                previous,
                active: h.active(),
                pending: h.pending.clone(),
                units: BTreeMap::new(),
                switch: h.last_switch.clone(),
                watched,
                recovered: None,
                archived: Vec::new(),
            };
            return Answer::ok(serde_json::to_string(&st).unwrap());
        }
        // Preflight's own host checks (plan::host_checks_script), from the host's os-release
        // and architecture, as the script's `case`s decide.
        if body == plan::host_checks_script() {
            log("host-checks");
            return Answer::ok(host_checks(h));
        }
        // deploy's inspect and verify (plan::active_command).
        if body == plan::active_command() {
            log("active");
            let mut out = String::new();
            for id in h.active() {
                out.push_str(&format!("{id}\n"));
            }
            return Answer::ok(out);
        }
        // status (plan::status_script): its sections, from the host's state.
        if body == plan::status_script() {
            log("status");
            return Answer::ok(status_sections(h));
        }
        // The uploaded install.sh: `bash PUSH_DIR/install.sh [--preflight-only] ROLE`.
        let script = format!("{}/install.sh", plan::PUSH_DIR);
        if w.first().map(String::as_str) == Some("bash") && w.get(1) == Some(&script) {
            let preflight_only = w.get(2).map(String::as_str) == Some("--preflight-only");
            log(if preflight_only {
                "preflight"
            } else {
                "install"
            });
            let Some(text) = h.files.get(&script).cloned() else {
                return Answer::fail(127, format!("bash: {script}: No such file or directory"));
            };
            let text = String::from_utf8_lossy(&text).into_owned();
            let (checks, failed) = install_sh_preflight(h);
            if preflight_only || failed > 0 {
                let mut a = if failed > 0 {
                    Answer::fail(2, format!("{failed} preflight check(s) failed"))
                } else {
                    Answer::ok("")
                };
                a.stdout = checks;
                return a;
            }
            h.mirrors.push(mirrors.clone().unwrap_or_default());
            if let Some(why) = h.behaviour.install_fails.clone() {
                return Answer {
                    stdout: checks,
                    ..Answer::fail(1, why)
                };
            }
            let ids = match install_sh_packages(&text, inner.repository.as_deref()) {
                Ok(ids) => ids,
                Err(e) => return Answer::fail(1, e),
            };
            h.generations.push(ids);
            h.current = h.generations.len() as u64;
            record(
                h,
                SwitchRecord {
                    to: Generation(h.current),
                    from: None,
                    command: "setup".into(),
                    operation: Some(
                        operation.unwrap_or_else(|| tarmac_installer::ledger::SELF_INSTALL.into()),
                    ),
                    at_unix: now_unix(),
                    reason: None,
                },
            );
            return Answer {
                installing: inner.install_time,
                ..Answer::ok(checks + "Tarmac is installed\n")
            };
        }
        // secrets::prepare_script: `cd -- BASE`, then one sha256 test per file; print
        // `tarmac-secret-need|PATH` for each file the host lacks or has other bytes of.
        if body.starts_with("[ -d /etc/tarmac ] || mkdir -p -m 0755 -- /etc/tarmac || exit 1\n") {
            log("secrets-check");
            let mut lines = body.lines().skip(1);
            let base = lines
                .next()
                .map(shell_words)
                .and_then(|w| {
                    w.iter()
                        .position(|x| x == "cd")
                        .and_then(|i| w.get(i + 2).cloned())
                })
                .unwrap_or_default();
            let mut out = String::new();
            for l in lines {
                let w = shell_words(l);
                let want = w
                    .iter()
                    .position(|x| x == "=")
                    .and_then(|i| w.get(i + 1))
                    .cloned()
                    .unwrap_or_default();
                let Some(path) = w.last().and_then(|x| x.strip_prefix("tarmac-secret-need|"))
                else {
                    continue;
                };
                let have = h
                    .files
                    .get(&format!("{base}/{path}"))
                    .map(|b| Digest::of(b).hex());
                if have.as_deref() != Some(want.as_str()) {
                    out.push_str(&format!("tarmac-secret-need|{path}\n"));
                }
            }
            return Answer::ok(out);
        }
        // The engine's upload script: stdin into the file after `mv -f -- "$t"`.
        if body.starts_with("mkdir -p -- ") && body.contains("cat >\"$t\"") {
            let dest = body
                .rsplit_once("mv -f -- \"$t\" ")
                .map(|(_, r)| r.split(" || ").next().unwrap_or_default())
                .map(|d| shell_words(d).concat())
                .unwrap_or_default();
            log("upload");
            let want = body
                .split("if [ \"$s\" != ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .unwrap_or_default();
            if Digest::of(stdin).hex() != want {
                return Answer::fail(76, "checksum mismatch (fake)");
            }
            h.files.insert(dest, Bytes::copy_from_slice(stdin));
            return Answer::ok("");
        }
        // prereqs::Prereqs::script: the first package manager found installs the list.
        if body.starts_with("set -e\nif command -v ") && body.contains("package manager: ") {
            log("install-prereqs");
            if h.missing_commands.iter().any(|c| c == "apt-get") {
                return Answer::fail(3, "no supported package manager on this host (fake)");
            }
            return Answer::ok("package manager: apt\nprerequisites installed\n");
        }
        // The reachability probe of remove-hosts / replace-master.
        if body.trim() == "true" {
            log("reach");
            return Answer::ok("");
        }
        // plan::uninstall_script.
        if body.starts_with(&format!(
            "set -u\nif [ -x {HOST_BIN} ]; then {HOST_BIN} uninstall"
        )) {
            log("uninstall");
            h.uninstalled = true;
            return Answer::ok("tarmac removed\n");
        }
        // backup: `mkdir -p -m 0700 DIR && BIN --json backup --out FILE`.
        if body.contains(&format!("{HOST_BIN} --json backup --out ")) {
            log("backup");
            if h.behaviour.backup_fails {
                return Answer::fail(
                    1,
                    "backup hook etcd of etcd--1 exited with code 1:\nError: context deadline exceeded",
                );
            }
            let out = arg(&w, "--out").unwrap_or_default().to_owned();
            let data = format!("fake etcd snapshot of {host}\n");
            h.files
                .insert(out.clone(), Bytes::copy_from_slice(data.as_bytes()));
            let answer = tarmac_types::hooks::BackupAnswer {
                file: out,
                size: data.len() as u64,
                sha256: Digest::of(data.as_bytes()).hex(),
                packages: Vec::new(),
                files: vec![("etcd/etcd.db".into(), data.len() as u64)],
                hooks: Vec::new(),
            };
            return Answer::ok(serde_json::to_string(&answer).unwrap());
        }
        // The engine's download script: `cat -- FILE || exit $?; …sha256 trailer on stderr`.
        if w.first().map(String::as_str) == Some("cat")
            && w.get(1).map(String::as_str) == Some("--")
        {
            log("download");
            let path = w.get(2).cloned().unwrap_or_default();
            return match h.files.get(&path) {
                Some(b) => Answer {
                    stderr: format!("\u{1e}tarmac-sha256:{}", Digest::of(b).hex()),
                    ..Answer::ok(String::from_utf8_lossy(b).into_owned())
                },
                None => Answer::fail(1, format!("cat: {path}: No such file or directory")),
            };
        }
        if w.first().map(String::as_str) == Some("rm") && w.get(1).map(String::as_str) == Some("-f")
        {
            log("rm");
            for p in &w[2..] {
                h.files.remove(p);
            }
            return Answer::ok("");
        }
        if w.first().map(String::as_str) == Some("mkdir")
            && w.get(1).map(String::as_str) == Some("-p")
        {
            log("mkdir");
            if h.behaviour.prepare_fails && w.iter().any(|x| x == "/etc/tarmac/upgrade") {
                return Answer::fail(
                    1,
                    "mkdir: cannot create directory '/etc/tarmac/upgrade': Read-only file system",
                );
            }
            return Answer::ok("");
        }
        if w.first().map(String::as_str) == Some("rm")
            && w.get(1).map(String::as_str) == Some("-rf")
        {
            log("rm");
            return Answer::ok("");
        }
        if w.first().map(String::as_str) != Some(HOST_BIN) {
            inner.unknown.push((host.clone(), command.to_owned()));
            return Answer::fail(127, format!("fake host: unknown command: {command}"));
        }
        let verb = w
            .iter()
            .skip(1)
            .find(|x| !x.starts_with("--"))
            .cloned()
            .unwrap_or_default();
        log(&verb);
        if h.behaviour.hang_on.as_deref() == Some(verb.as_str()) {
            h.behaviour.hang_on = None;
            return Answer {
                hang: true,
                ..Answer::ok("")
            };
        }
        match verb.as_str() {
            "fetch" => {
                let list = arg(&w, "--package-list").unwrap_or_default();
                if !h.files.contains_key(list) {
                    return Answer::fail(1, format!("tarmac-host: cannot read {list}"));
                }
                let peers: Vec<&str> = w
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| *x == "--mirror")
                    .filter_map(|(i, _)| w.get(i + 1).map(String::as_str))
                    .collect();
                h.fetch_mirrors.push(peers.join(" "));
                Answer::ok("")
            }
            "switch" => {
                let list = arg(&w, "--setup-list").unwrap_or_default().to_owned();
                if !h.files.contains_key(&list) {
                    return Answer::fail(1, format!("tarmac-host: cannot read {list}"));
                }
                let secs: u64 = arg(&w, "--confirm-within")
                    .and_then(|s| s.trim_end_matches('s').parse().ok())
                    .unwrap_or(0);
                let i = w.iter().position(|x| x == "--setup-list").unwrap() + 2;
                let mut ids: Vec<PackageId> = w[i..]
                    .iter()
                    .map(|s| PackageId::parse(s).unwrap())
                    .collect();
                ids.sort();
                let from = h.current;
                h.generations.push(ids);
                let to = h.generations.len() as u64;
                h.current = to;
                h.came_from.insert(to, from);
                let pending = PendingConfirm {
                    format: FORMAT,
                    from: Generation(from),
                    to: Some(Generation(to)),
                    armed_unix: now_unix(),
                    deadline_unix: now_unix() + secs,
                    boot_id: Some(format!("boot-{}", h.boot)),
                    operation: operation.clone(),
                    setup_list: Some(Some(list)),
                };
                h.pending = Some(pending.clone());
                record(
                    h,
                    SwitchRecord {
                        to: Generation(to),
                        from: Some(Generation(from)),
                        command: "switch".into(),
                        operation,
                        at_unix: now_unix(),
                        reason: None,
                    },
                );
                if h.behaviour.cut_after_switch {
                    h.reachable = false;
                }
                Answer::ok(
                    serde_json::to_string(&SwitchOutcome {
                        from: Some(Generation(from)),
                        to: Generation(to),
                        unchanged: false,
                        pending,
                    })
                    .unwrap(),
                )
            }
            "check" => {
                if h.behaviour.checks_fail {
                    Answer {
                        stdout: "node-exporter: failed\n".into(),
                        ..Answer::fail(1, "1 check failing")
                    }
                } else {
                    Answer::ok("all checks pass\n")
                }
            }
            "confirm" => {
                let n: u64 = arg(&w, "--generation")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                match &h.pending {
                    Some(p) if p.to == Some(Generation(n)) => {
                        h.pending = None;
                        Answer::ok("")
                    }
                    Some(_) => Answer::fail(
                        1,
                        "tarmac-host: the pending switch is to another generation",
                    ),
                    None => Answer::fail(
                        1,
                        "tarmac-host: nothing to confirm: the host already reverted",
                    ),
                }
            }
            "revert" => {
                if revert_pending(h, RevertReason::Requested) {
                    Answer::ok("")
                } else {
                    Answer::fail(1, "tarmac-host: no pending switch to revert")
                }
            }
            "rollback" => {
                let to = match arg(&w, "--to").and_then(|s| s.parse::<u64>().ok()) {
                    Some(n) => n,
                    None => match h.came_from.get(&h.current) {
                        Some(n) => *n,
                        None => return Answer::fail(1, "tarmac-host: no previous generation"),
                    },
                };
                if to == 0 || to as usize > h.generations.len() {
                    return Answer::fail(1, format!("tarmac-host: no generation {to}"));
                }
                let from = h.current;
                h.current = to;
                h.pending = None;
                record(
                    h,
                    SwitchRecord {
                        to: Generation(to),
                        from: Some(Generation(from)),
                        command: "rollback".into(),
                        operation,
                        at_unix: now_unix(),
                        reason: None,
                    },
                );
                Answer::ok(format!("{{\"from\":{from},\"to\":{to}}}"))
            }
            "membership" => {
                let args: Vec<String> = w
                    .iter()
                    .skip_while(|x| x.as_str() != "membership")
                    .skip(1)
                    .cloned()
                    .collect();
                h.membership.push(args);
                Answer::ok(r#"{"kind":"membership","args":[],"hooks":[]}"#)
            }
            _ => {
                inner.unknown.push((host.clone(), command.to_owned()));
                Answer::fail(
                    127,
                    format!("fake host: unknown tarmac-host command: {verb}"),
                )
            }
        }
    }
}

/// A stdin that keeps what is written and tells when it is closed.
struct FakeStdin {
    buf: Arc<Mutex<Vec<u8>>>,
    closed: Option<tokio::sync::oneshot::Sender<()>>,
}

impl tokio::io::AsyncWrite for FakeStdin {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.buf.lock().unwrap().extend_from_slice(b);
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some(tx) = self.closed.take() {
            let _ = tx.send(());
        }
        Poll::Ready(Ok(()))
    }
}

struct NoControl;

impl ProcControl for NoControl {
    fn signal<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, ()> {
        async {}.boxed()
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }
}

impl Host for FakeHost {
    fn addr(&self) -> &HostAddr {
        &self.addr
    }

    fn user(&self) -> &str {
        "root"
    }

    fn spawn<'a>(
        &'a self,
        command_line: &'a str,
    ) -> BoxFuture<'a, Result<Process, TransportError>> {
        async move {
            if !self.fleet.host(&self.addr.to_string()).reachable {
                return Err(TransportError {
                    message: "connection reset by peer (fake)".into(),
                    connection_lost: true,
                });
            }
            let command = unwrap_command(command_line);
            // Commands that read stdin (uploads) answer after EOF; the others at once.
            let reads_stdin = command_line.ends_with(" -");
            let buf = Arc::new(Mutex::new(Vec::new()));
            let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
            let (tx, mut rx) = mpsc::channel::<ProcEvent>(16);
            let fleet = self.fleet.clone();
            let addr = self.addr.clone();
            let input = buf.clone();
            tokio::spawn(async move {
                if reads_stdin {
                    let _ = closed_rx.await;
                }
                let data = std::mem::take(&mut *input.lock().unwrap());
                let a = fleet.answer(&addr, &command, &data);
                if let Some(t) = a.installing {
                    {
                        let mut g = fleet.inner.lock().unwrap();
                        g.installing += 1;
                        g.max_installing = g.max_installing.max(g.installing);
                    }
                    tokio::time::sleep(t).await;
                    fleet.inner.lock().unwrap().installing -= 1;
                }
                if a.hang {
                    fleet.killed.notify_one();
                    std::future::pending::<()>().await;
                }
                if a.lost {
                    return; // the stream ends without an exit: the connection is gone
                }
                let _ = tx
                    .send(ProcEvent::Stderr(Bytes::from_static(
                        "\u{1e}tarmac-pgid:4242 4242\n".as_bytes(),
                    )))
                    .await;
                if !a.stdout.is_empty() {
                    let _ = tx.send(ProcEvent::Stdout(Bytes::from(a.stdout))).await;
                }
                if !a.stderr.is_empty() {
                    let _ = tx
                        .send(ProcEvent::Stderr(Bytes::from(a.stderr + "\n")))
                        .await;
                }
                let _ = tx
                    .send(ProcEvent::Exit(ExitStatus {
                        code: Some(a.code),
                        signal: None,
                    }))
                    .await;
            });
            let events = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
            Ok(Process {
                stdin: Box::pin(FakeStdin {
                    buf,
                    closed: Some(closed_tx),
                }),
                events: Box::pin(events),
                control: Box::new(NoControl),
            })
        }
        .boxed()
    }

    fn is_closed(&self) -> bool {
        false
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }
}

/// What plan::host_checks_script prints on `h`.
fn host_checks(h: &HostModel) -> String {
    let (id, version, like) = &h.os;
    let mut out = String::new();
    match h.arch.as_str() {
        "x86_64" | "aarch64" => out.push_str(&format!("tarmac-check|architecture|ok|{}\n", h.arch)),
        a => out.push_str(&format!(
            "tarmac-check|architecture|fail|{a} is not supported (x86_64 or aarch64)\n"
        )),
    }
    let os = format!("{id} {version}");
    let family = format!("{id} {like}");
    let supported = [
        "debian", "ubuntu", "rhel", "fedora", "centos", "rocky", "alma",
    ]
    .iter()
    .any(|f| family.contains(f));
    if supported {
        out.push_str(&format!("tarmac-check|operating system|ok|{os}\n"));
    } else {
        out.push_str(&format!(
            "tarmac-check|operating system|fail|{os} is not a supported distribution (Debian/Ubuntu or RHEL family)\n"
        ));
    }
    // The host's clock: the controller's (the fake has no skew).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    out.push_str(&format!("tarmac-clock|{now:.6}\n"));
    out
}

/// install.sh's preflight on `h` (the checks that depend on the fake's state; the others
/// pass): its output lines and how many failed.
fn install_sh_preflight(h: &HostModel) -> (String, usize) {
    let mut out = String::from("Running preflight checks\n");
    let mut failed = 0;
    let mut check = |name: &str, problem: Option<String>| match problem {
        None => out.push_str(&format!("{:<58} PASS\n", format!("Checking {name}"))),
        Some(p) => {
            failed += 1;
            out.push_str(&format!("{:<58} FAIL\n", format!("Checking {name}")));
            for l in p.lines() {
                out.push_str(&format!("    {l}\n"));
            }
        }
    };
    check(
        "for an existing installation",
        h.installed().then(|| {
            "Tarmac is already installed on this host (/opt/tarmac/current or /etc/systemd/system/tarmac.target exists).\nUninstall it first (tarmac uninstall), or upgrade instead of reinstalling.".to_owned()
        }),
    );
    check("systemd (>= 245)", None);
    check(
        "required commands",
        (!h.missing_commands.is_empty())
            .then(|| format!("missing commands: {}", h.missing_commands.join(" "))),
    );
    check("free disk space", None);
    check(
        "free TCP ports (2379 9100)",
        (!h.listening.is_empty()).then(|| {
            format!(
                "in use: {}",
                h.listening
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }),
    );
    if failed == 0 {
        out.push_str("Preflight checks passed\n");
    }
    (out, failed)
}

/// The package ids install.sh installs: its `PACKAGE_LIST_ID`'s list in the repository its
/// `file://` BOOTSTRAP_URL names (the fake's repository directory).
fn install_sh_packages(
    script: &str,
    repository: Option<&std::path::Path>,
) -> Result<Vec<PackageId>, String> {
    let var = |name: &str| {
        script.lines().find_map(|l| {
            l.strip_prefix(&format!("readonly {name}="))
                .map(|v| shell_words(v).concat())
        })
    };
    let url = var("BOOTSTRAP_URL").ok_or("install.sh has no BOOTSTRAP_URL")?;
    if !url.starts_with("file://") {
        return Err(format!(
            "the fake serves only file:// repositories, not {url}"
        ));
    }
    let list = var("PACKAGE_LIST_ID").ok_or("install.sh has no PACKAGE_LIST_ID")?;
    let dir = repository.ok_or("the fake fleet has no repository (set_repository)")?;
    let path = dir.join(format!("package_lists/{list}.package_list.json"));
    let body = std::fs::read(&path)
        .map_err(|e| format!("curl: (37) Couldn't open file {}: {e}", path.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    let mut ids: Vec<PackageId> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            PackageId::parse(
                i.get("id")
                    .and_then(|x| x.as_str())
                    .or(i.as_str())
                    .unwrap_or(""),
            )
            .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    ids.sort();
    Ok(ids)
}

/// What plan::status_script prints on `h`.
fn status_sections(h: &HostModel) -> String {
    let mut out = String::from("== active\n");
    for id in h.active() {
        out.push_str(&format!("{id}\n"));
    }
    out.push_str("== generation\n");
    if h.installed() {
        out.push_str(&format!("/opt/tarmac/generations/{}\n", h.current));
    }
    out.push_str("== units\n");
    for (u, st) in &h.units {
        out.push_str(&format!("{u} {st}\n"));
    }
    out.push_str("== checks\n");
    if h.installed() {
        let checks: Vec<serde_json::Value> = if h.behaviour.checks_fail {
            vec![
                serde_json::json!({"package": "exporter--1", "check": "node-exporter", "ok": false}),
            ]
        } else {
            Vec::new()
        };
        out.push_str(&serde_json::json!({ "checks": checks }).to_string());
        out.push('\n');
    }
    out.push_str("== switches\n");
    if h.switches.is_empty() {
        out.push_str("none\n");
    }
    for r in &h.switches {
        out.push_str(&serde_json::to_string(r).unwrap());
        out.push('\n');
    }
    out
}
