//! A membership change end to end: what `tarmac remove-hosts` and `tarmac replace-master`
//! do, from the CLI and the web alike.
//!
//! 1. **membership**: the remote part ([`Installer::remove_hosts`] or
//!    [`Installer::replace_master`]: reachability, quorum gate, the membership hook,
//!    uninstall of the reachable hosts);
//! 2. **config**: config.yaml edited (layout and comments kept, written atomically);
//! 3. **genconf**: serve/ rendered again (the front end's [`Regenerate`]);
//! 4. **prereqs**: install-prereqs on a fresh master;
//! 5. **deploy**: new hosts install, the others roll to the new configuration
//!    ([`Installer::deploy_reconcile`]);
//! 6. **postflight** on every host.
//!
//! The step reached is kept in `genconf/state/change.json`, written after each step, so a run
//! that was killed or failed half-way continues where it stopped (`--resume`, or the same
//! command again); a different membership change is refused until that one is finished.
//! Each step takes the run lock itself; `state/change.lock` keeps a second change out for
//! the whole of one.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tarmac_config::ResolvedConfig;
use tarmac_events::Level;
use tarmac_types::time::now_unix;
use tarmac_types::{HostAddr, Role, Stage};

use crate::daytwo::{DayTwoError, DeployReport, RemoveReport, ReplaceReport, edited_lists};
use crate::offline::OfflineRepo;
use crate::prereqs::Prereqs;
use crate::stages::{DeployOptions, Installer, InstallerError, StageRun};
use crate::upgrade::UpgradeOptions;

/// The file that records a membership change in progress, under `genconf/state/`.
pub const CHANGE_FILE: &str = "change.json";
const CHANGE_LOCK: &str = "change.lock";

/// One membership change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Change {
    /// Uninstall `hosts` where reachable (forget the unreachable ones with `force`) and drop
    /// them from config.yaml.
    RemoveHosts { hosts: Vec<HostAddr>, force: bool },
    /// Move master `old`'s quorum membership to the fresh host `new`, which takes its place
    /// in master_list.
    ReplaceMaster { old: HostAddr, new: HostAddr },
}

impl Change {
    pub fn stage(&self) -> Stage {
        match self {
            Change::RemoveHosts { .. } => Stage::RemoveHosts,
            Change::ReplaceMaster { .. } => Stage::ReplaceMaster,
        }
    }

    /// The command line that starts it: `remove-hosts 10.0.0.5 10.0.0.6 --force`.
    pub fn command(&self) -> String {
        match self {
            Change::RemoveHosts { hosts, force } => format!(
                "remove-hosts {}{}",
                hosts
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
                if *force { " --force" } else { "" }
            ),
            Change::ReplaceMaster { old, new } => format!("replace-master {old} {new}"),
        }
    }

    /// The same change, perhaps with other flags (`--force` may be added on a rerun).
    pub fn same_as(&self, other: &Change) -> bool {
        match (self, other) {
            (Change::RemoveHosts { hosts: a, .. }, Change::RemoveHosts { hosts: b, .. }) => a == b,
            (a, b) => a == b,
        }
    }

    /// Hosts that join the cluster with this change (they need the prerequisites).
    pub fn fresh(&self) -> Vec<HostAddr> {
        match self {
            Change::RemoveHosts { .. } => Vec::new(),
            Change::ReplaceMaster { new, .. } => vec![new.clone()],
        }
    }
}

/// The next step of a change (in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeStep {
    Membership,
    Config,
    Genconf,
    Prereqs,
    Deploy,
    Postflight,
    Done,
}

impl std::fmt::Display for ChangeStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChangeStep::Membership => "membership",
            ChangeStep::Config => "config",
            ChangeStep::Genconf => "genconf",
            ChangeStep::Prereqs => "prereqs",
            ChangeStep::Deploy => "deploy",
            ChangeStep::Postflight => "postflight",
            ChangeStep::Done => "done",
        })
    }
}

/// `state/change.json`: the change and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeState {
    pub change: Change,
    /// The next step to run (`done` when finished).
    pub step: ChangeStep,
    pub started_unix: u64,
    pub updated_unix: u64,
    /// Hosts the membership step took out of the cluster (uninstalled or forgotten): they
    /// leave config.yaml.
    #[serde(default)]
    pub gone: Vec<HostAddr>,
    /// Unreachable hosts forgotten without cleaning.
    #[serde(default)]
    pub forgotten: Vec<HostAddr>,
    /// Hosts to remove whose uninstall failed: they stay in config.yaml.
    #[serde(default)]
    pub missed: Vec<HostAddr>,
    /// The journal of every fleet run so far, in order.
    #[serde(default)]
    pub journals: Vec<PathBuf>,
    /// How often this change was started (1, then one more per resume).
    #[serde(default)]
    pub attempts: u32,
}

impl ChangeState {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(CHANGE_FILE)
    }

    /// The recorded change, if any.
    pub fn load(state_dir: &Path) -> Result<Option<ChangeState>, ChangeError> {
        let path = Self::path(state_dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ChangeError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ChangeError::BadState {
                path,
                why: e.to_string(),
            })
    }

    fn save(&mut self, state_dir: &Path) -> Result<(), ChangeError> {
        self.updated_unix = now_unix();
        let path = Self::path(state_dir);
        let body = serde_json::to_vec_pretty(self).expect("change state serializes");
        tarmac_fsx::write_atomic(&path, &body, 0o600).map_err(|source| ChangeError::Io {
            action: "write",
            path,
            source,
        })
    }

    /// Unfinished: a run of it stopped before `done`.
    pub fn unfinished(&self) -> bool {
        self.step != ChangeStep::Done
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    DayTwo(#[from] DayTwoError),
    #[error(transparent)]
    Installer(#[from] InstallerError),
    #[error(
        "`{recorded}` stopped at its {step} step and is not finished; refusing to start `{asked}` before it is"
    )]
    Unfinished {
        recorded: String,
        step: ChangeStep,
        asked: String,
        path: PathBuf,
    },
    #[error("--resume: no unfinished membership change is recorded in {}", path.display())]
    NothingToResume { path: PathBuf },
    #[error(
        "another membership change is running on this genconf/ ({})",
        path.display()
    )]
    Busy { path: PathBuf },
    #[error("{}: not a membership change record: {why}", path.display())]
    BadState { path: PathBuf, why: String },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot edit {}: {message}", path.display())]
    Edit { path: PathBuf, message: String },
    #[error(
        "refused: `{command}` would leave config.yaml invalid; nothing was changed:\n{message}"
    )]
    WouldBeInvalid { command: String, message: String },
    #[error("config.yaml was changed but genconf failed: {message}")]
    Regenerate { message: String, command: String },
    #[error("install-prereqs failed on the new host {hosts} (journal {})", journal.display())]
    Prereqs {
        hosts: String,
        journal: PathBuf,
        command: String,
    },
}

impl ChangeError {
    /// Refused before anything changed on a host or in config.yaml (the other errors come
    /// after some step did something: `--resume` continues from there).
    pub fn changed_nothing(&self) -> bool {
        match self {
            ChangeError::DayTwo(e) => e.changed_nothing(),
            ChangeError::Unfinished { .. }
            | ChangeError::NothingToResume { .. }
            | ChangeError::Busy { .. }
            | ChangeError::BadState { .. }
            | ChangeError::WouldBeInvalid { .. } => true,
            _ => false,
        }
    }
}

impl tarmac_types::error_report::Hint for ChangeError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        let h: std::borrow::Cow<'_, str> = match self {
            ChangeError::DayTwo(e) => return e.hint(),
            ChangeError::Installer(e) => return e.hint(),
            ChangeError::Unfinished { recorded, path, .. } => format!(
                "finish it first: `tarmac {} --resume` (its progress is in {})",
                recorded.split(' ').next().unwrap_or(recorded),
                path.display()
            )
            .into(),
            ChangeError::NothingToResume { .. } => {
                "run the command with its hosts, without --resume".into()
            }
            ChangeError::Busy { .. } => "wait for it to finish".into(),
            ChangeError::WouldBeInvalid { .. } => "change the cluster so that the result is valid (for example add a master first, so that an odd number remains), then run it again".into(),
            ChangeError::BadState { path, .. } => format!(
                "the file is written by tarmac only; if it was damaged, look at the ledger (`tarmac ledger`) and remove {} to start afresh",
                path.display()
            )
            .into(),
            ChangeError::Regenerate { command, .. } => format!(
                "fix the cause, then run `tarmac {command} --resume` (config.yaml already has the change)"
            )
            .into(),
            ChangeError::Prereqs { command, .. } => {
                format!("fix the new host, then run `tarmac {command} --resume`").into()
            }
            _ => return None,
        };
        Some(h)
    }
}

/// genconf again from the edited config.yaml: the front end's part (it knows where the
/// build and the distribution are). It renders serve/ under the run lock, records the new
/// target in the ledger and returns the configuration the rest of the change runs with.
pub trait Regenerate: Send + Sync {
    /// Validate `config_yaml` (config.yaml as the change will write it) against the
    /// distribution's rules; the message names the key and says what is wrong.
    fn check(&self, config_yaml: &str) -> Result<(), String>;
    fn regenerate(&self) -> Result<Regenerated, String>;
}

/// What genconf rendered.
#[derive(Debug, Clone)]
pub struct Regenerated {
    pub cfg: ResolvedConfig,
    pub config_id: String,
    pub cluster_package_list_id: String,
}

/// How a change runs (the default gives a fresh master the standard prerequisites).
#[derive(Debug, Clone, Default)]
pub struct ChangeOptions {
    /// The rollout after genconf (batch, windows, deadlines, `no_backup`); `resume` is set
    /// by the change itself.
    pub rollout: UpgradeOptions,
    /// What install-prereqs gives a fresh master.
    pub prereqs: Prereqs,
    /// Install the prerequisites from this offline repository instead of the network.
    pub offline: Option<OfflineRepo>,
    /// Continue the recorded change (`None` as the change then means "whichever it is").
    pub resume: bool,
}

/// What a change did in this run (steps done by an earlier run are not repeated).
#[derive(Debug, Clone)]
pub struct ChangeReport {
    pub state: ChangeState,
    /// This run continued an earlier one.
    pub resumed: bool,
    pub removed: Option<RemoveReport>,
    pub replaced: Option<ReplaceReport>,
    /// `replace-master` found the membership already moved (config.yaml had NEW).
    pub already_replaced: bool,
    /// config.yaml's changed keys and their new values.
    pub edited: Vec<(String, Option<serde_json::Value>)>,
    pub regenerated: Option<(String, String)>,
    pub prereqs: Option<StageRun>,
    pub deploy: Option<DeployReport>,
    pub postflight: Option<StageRun>,
}

impl ChangeReport {
    /// Finished, every host removed or replaced, the rollout and postflight green.
    pub fn succeeded(&self) -> bool {
        self.state.step == ChangeStep::Done && self.state.missed.is_empty()
    }
}

/// config.yaml with `changes` (layout and comments kept), written atomically with its mode.
pub fn edit_config_yaml(
    path: &Path,
    changes: &[(String, Option<serde_json::Value>)],
) -> Result<(), ChangeError> {
    if changes.is_empty() {
        return Ok(());
    }
    let io = |action: &'static str| {
        let path = path.to_path_buf();
        move |source| ChangeError::Io {
            action,
            path,
            source,
        }
    };
    let text = std::fs::read_to_string(path).map_err(io("read"))?;
    let next =
        tarmac_config::yamledit::set_keys(&text, changes).map_err(|e| ChangeError::Edit {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .map_err(io("stat"))?
            .permissions()
            .mode()
            & 0o7777
    };
    tarmac_fsx::write_atomic(path, next.as_bytes(), mode).map_err(io("write"))
}

/// Which recorded change this run continues, or the fresh state of `asked`.
fn pick(
    recorded: Option<ChangeState>,
    asked: Option<&Change>,
    resume: bool,
    path: &Path,
) -> Result<(ChangeState, bool), ChangeError> {
    let recorded = recorded.filter(ChangeState::unfinished);
    match (recorded, asked) {
        (Some(r), None) if resume => Ok((r, true)),
        // The same command again continues it, with or without --resume (and takes the
        // flags given now).
        (Some(mut r), Some(a)) if r.change.same_as(a) => {
            r.change = a.clone();
            Ok((r, true))
        }
        (Some(r), a) => Err(ChangeError::Unfinished {
            recorded: r.change.command(),
            step: r.step,
            asked: a.map_or_else(|| "--resume".to_owned(), Change::command),
            path: path.to_path_buf(),
        }),
        (None, _) if resume => Err(ChangeError::NothingToResume {
            path: path.to_path_buf(),
        }),
        (None, None) => Err(ChangeError::NothingToResume {
            path: path.to_path_buf(),
        }),
        (None, Some(a)) => {
            let now = now_unix();
            Ok((
                ChangeState {
                    change: a.clone(),
                    step: ChangeStep::Membership,
                    started_unix: now,
                    updated_unix: now,
                    gone: Vec::new(),
                    forgotten: Vec::new(),
                    missed: Vec::new(),
                    journals: Vec::new(),
                    attempts: 0,
                },
                false,
            ))
        }
    }
}

fn host_lists(inst: &Installer) -> Vec<(Role, Vec<HostAddr>)> {
    Role::ALL.iter().map(|r| (*r, inst.cfg.hosts(*r))).collect()
}

fn swap_of(change: &Change) -> Option<(&HostAddr, &HostAddr)> {
    match change {
        Change::ReplaceMaster { old, new } => Some((old, new)),
        Change::RemoveHosts { .. } => None,
    }
}

fn journals(runs: &[StageRun]) -> impl Iterator<Item = PathBuf> + '_ {
    runs.iter().map(|r| r.journal.clone())
}

impl Installer {
    /// The membership change recorded in `state/change.json`, if any.
    pub fn recorded_change(&self) -> Result<Option<ChangeState>, ChangeError> {
        ChangeState::load(&self.state_dir())
    }

    /// Run `change` (or, with `opts.resume` and `None`, the recorded one) from the step it
    /// reached. `self` must be over the current config.yaml; after genconf the rest of the
    /// change runs over the configuration `regen` returns.
    pub async fn change(
        &self,
        change: Option<&Change>,
        opts: &ChangeOptions,
        regen: Arc<dyn Regenerate>,
    ) -> Result<ChangeReport, ChangeError> {
        let state_dir = self.state_dir();
        tarmac_fsx::create_private_dir(&state_dir).map_err(|source| ChangeError::Io {
            action: "create",
            path: state_dir.clone(),
            source,
        })?;
        let _guard = change_lock(&state_dir)?;
        let path = ChangeState::path(&state_dir);
        let (mut st, resumed) = pick(ChangeState::load(&state_dir)?, change, opts.resume, &path)?;
        st.attempts += 1;
        if resumed {
            self.notice(
                Level::Info,
                format!(
                    "continuing `{}` at its {} step (started {})",
                    st.change.command(),
                    st.step,
                    tarmac_types::time::utc(st.started_unix)
                ),
            );
        }
        st.save(&state_dir)?;
        let mut report = ChangeReport {
            state: st.clone(),
            resumed,
            removed: None,
            replaced: None,
            already_replaced: false,
            edited: Vec::new(),
            regenerated: None,
            prereqs: None,
            deploy: None,
            postflight: None,
        };
        let command = st.change.command();
        let mut inst = self.clone();

        if st.step == ChangeStep::Membership {
            // The configuration this change leaves must be valid before any host is
            // touched (etcd wants an odd number of masters, for one).
            let cfg_path = inst.genconf_dir.join("config.yaml");
            let text = std::fs::read_to_string(&cfg_path).map_err(|source| ChangeError::Io {
                action: "read",
                path: cfg_path.clone(),
                source,
            })?;
            let planned = match &st.change {
                Change::RemoveHosts { hosts, .. } => hosts.clone(),
                Change::ReplaceMaster { .. } => Vec::new(),
            };
            let edits = edited_lists(&host_lists(&inst), &planned, swap_of(&st.change));
            let next = tarmac_config::yamledit::set_keys(&text, &edits).map_err(|e| {
                ChangeError::Edit {
                    path: cfg_path.clone(),
                    message: e.to_string(),
                }
            })?;
            let r = regen.clone();
            tokio::task::spawn_blocking(move || r.check(&next))
                .await
                .map_err(|e| ChangeError::WouldBeInvalid {
                    command: command.clone(),
                    message: e.to_string(),
                })?
                .map_err(|message| {
                    // Nothing happened: the record goes so another change may start.
                    let _ = std::fs::remove_file(&path);
                    ChangeError::WouldBeInvalid {
                        command: command.clone(),
                        message,
                    }
                })?;
            // A refusal changed nothing: the record goes, so that another change may start.
            let refused = |e: DayTwoError| {
                if !resumed && e.changed_nothing() {
                    let _ = std::fs::remove_file(&path);
                }
                ChangeError::DayTwo(e)
            };
            match &st.change {
                Change::RemoveHosts { hosts, force } => {
                    let r = inst.remove_hosts(hosts, *force).await.map_err(refused)?;
                    st.gone = r.cleaned.iter().chain(&r.forgotten).cloned().collect();
                    st.forgotten = r.forgotten.clone();
                    st.missed = hosts
                        .iter()
                        .filter(|h| !st.gone.contains(h))
                        .cloned()
                        .collect();
                    st.journals.extend(journals(&r.runs));
                    report.removed = Some(r);
                }
                Change::ReplaceMaster { old, new } => {
                    match inst.replace_master(old, new).await.map_err(refused)? {
                        Some(r) => {
                            if !r.old_reachable {
                                st.forgotten = vec![old.clone()];
                            }
                            st.journals.extend(journals(&r.runs));
                            report.replaced = Some(r);
                        }
                        None => report.already_replaced = true,
                    }
                }
            }
            st.step = ChangeStep::Config;
            st.save(&state_dir)?;
        }

        if st.step == ChangeStep::Config {
            let edits = edited_lists(&host_lists(&inst), &st.gone, swap_of(&st.change));
            let cfg_path = inst.genconf_dir.join("config.yaml");
            edit_config_yaml(&cfg_path, &edits)?;
            for (k, v) in &edits {
                self.notice(
                    Level::Info,
                    format!(
                        "{}: {k} = {}",
                        cfg_path.display(),
                        v.as_ref()
                            .map_or_else(|| "(removed)".to_owned(), ToString::to_string)
                    ),
                );
            }
            report.edited = edits;
            st.step = ChangeStep::Genconf;
            st.save(&state_dir)?;
        }

        if st.step == ChangeStep::Genconf {
            let r = regen.clone();
            let done = tokio::task::spawn_blocking(move || r.regenerate())
                .await
                .map_err(|e| ChangeError::Regenerate {
                    message: e.to_string(),
                    command: command.clone(),
                })?
                .map_err(|message| ChangeError::Regenerate {
                    message,
                    command: command.clone(),
                })?;
            self.notice(
                Level::Info,
                format!(
                    "genconf: config {} → cluster package list {}",
                    done.config_id, done.cluster_package_list_id
                ),
            );
            inst.cfg = done.cfg;
            report.regenerated = Some((done.config_id, done.cluster_package_list_id));
            st.step = ChangeStep::Prereqs;
            st.save(&state_dir)?;
        }

        if st.step == ChangeStep::Prereqs {
            let fresh = st.change.fresh();
            if !fresh.is_empty() {
                let run = match &opts.offline {
                    Some(repo) => {
                        inst.install_prereqs_offline(Some(fresh.clone()), &opts.prereqs, repo)
                            .await?
                    }
                    None => {
                        inst.install_prereqs(Some(fresh.clone()), &opts.prereqs)
                            .await?
                    }
                };
                st.journals.push(run.journal.clone());
                let ok = run.all_succeeded();
                let journal = run.journal.clone();
                report.prereqs = Some(run);
                if !ok {
                    st.save(&state_dir)?;
                    return Err(ChangeError::Prereqs {
                        hosts: fresh
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                        journal,
                        command,
                    });
                }
            }
            st.step = ChangeStep::Deploy;
            st.save(&state_dir)?;
        }

        if st.step == ChangeStep::Deploy {
            let mut up = opts.rollout.clone();
            // A rollout this change began and that was cut off continues (confirmations
            // lost meanwhile are found); anything else starts afresh.
            up.resume = resumed;
            let d = inst
                .deploy_reconcile(&DeployOptions::default(), &up)
                .await?;
            st.journals.push(d.install.journal.clone());
            let ok = d.succeeded();
            report.deploy = Some(d);
            if !ok {
                st.save(&state_dir)?;
                report.state = st;
                return Ok(report);
            }
            st.step = ChangeStep::Postflight;
            st.save(&state_dir)?;
        }

        if st.step == ChangeStep::Postflight {
            let post = inst.postflight(None, opts.rollout.check_deadline).await?;
            st.journals.push(post.journal.clone());
            let ok = post.all_succeeded();
            report.postflight = Some(post);
            if ok {
                st.step = ChangeStep::Done;
            }
            st.save(&state_dir)?;
        }
        report.state = st;
        Ok(report)
    }
}

/// `state/change.lock`, held for the whole change (each step takes the run lock itself).
fn change_lock(state_dir: &Path) -> Result<std::fs::File, ChangeError> {
    let path = state_dir.join(CHANGE_LOCK);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|source| ChangeError::Io {
            action: "open",
            path: path.clone(),
            source,
        })?;
    match tarmac_fsx::lock_exclusive(&file, false) {
        Ok(true) => Ok(file),
        Ok(false) => Err(ChangeError::Busy { path }),
        Err(source) => Err(ChangeError::Io {
            action: "lock",
            path,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> HostAddr {
        s.parse().unwrap()
    }

    fn rm(hosts: &[&str]) -> Change {
        Change::RemoveHosts {
            hosts: hosts.iter().map(|s| h(s)).collect(),
            force: false,
        }
    }

    #[test]
    fn commands_read_like_the_cli() {
        assert_eq!(
            rm(&["10.0.0.5", "10.0.0.6"]).command(),
            "remove-hosts 10.0.0.5 10.0.0.6"
        );
        let r = Change::ReplaceMaster {
            old: h("10.0.0.1"),
            new: h("10.0.0.9"),
        };
        assert_eq!(r.command(), "replace-master 10.0.0.1 10.0.0.9");
        assert_eq!(r.fresh(), vec![h("10.0.0.9")]);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"op":"replace-master","old":"10.0.0.1","new":"10.0.0.9"}"#
        );
    }

    #[test]
    fn pick_continues_the_same_change_and_refuses_another() {
        let p = Path::new("/g/state/change.json");
        let (mut st, resumed) = pick(None, Some(&rm(&["10.0.0.5"])), false, p).unwrap();
        assert!(!resumed);
        assert_eq!(st.step, ChangeStep::Membership);
        st.step = ChangeStep::Deploy;
        // Same command, no --resume: continues.
        let (again, resumed) = pick(Some(st.clone()), Some(&rm(&["10.0.0.5"])), false, p).unwrap();
        assert!(resumed);
        assert_eq!(again.step, ChangeStep::Deploy);
        // --resume alone: continues.
        assert_eq!(
            pick(Some(st.clone()), None, true, p).unwrap().0.step,
            ChangeStep::Deploy
        );
        // Another change: refused, naming both and how to finish.
        let e = pick(Some(st.clone()), Some(&rm(&["10.0.0.6"])), false, p).unwrap_err();
        assert_eq!(
            tarmac_types::error_report::text_with_hint(&e),
            "`remove-hosts 10.0.0.5` stopped at its deploy step and is not finished; refusing to start `remove-hosts 10.0.0.6` before it is\nhint: finish it first: `tarmac remove-hosts --resume` (its progress is in /g/state/change.json)"
        );
        // A finished record does not count.
        st.step = ChangeStep::Done;
        let (fresh, resumed) = pick(Some(st.clone()), Some(&rm(&["10.0.0.6"])), false, p).unwrap();
        assert!(!resumed);
        assert_eq!(fresh.change, rm(&["10.0.0.6"]));
        let e = pick(Some(st), None, true, p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--resume: no unfinished membership change is recorded in /g/state/change.json"
        );
    }
}
