//! Starting installer runs from the web: one at a time, guarded by the same run lock as the
//! CLI (`genconf/state/lock`). The stages are the installer's own
//! ([`tarmac_installer::stages::Installer`]); their events go to the [`Hub`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tarmac_events::{Event, Level, Sink};
use tarmac_installer::lock::{Holder, LockError, RunLock};
use tarmac_installer::stages::{DeployOptions, Installer, PreflightOptions};
use tarmac_types::{HostAddr, Stage};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::hub::{Hub, RunChange, now_ms};
use crate::{ApiError, App};

/// What to run.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StartRequest {
    /// Only these hosts (addresses as in config.yaml); default every host.
    pub hosts: Option<Vec<String>>,
    /// Only the hosts that did not succeed in the stage's last run.
    pub retry_failed: bool,
    /// preflight: checks whose failure is reported but tolerated.
    pub ignore_checks: Vec<String>,
    /// preflight/deploy: copy artifacts over SSH instead of letting hosts pull them.
    pub push: bool,
    /// deploy: per-host deadline of install.sh; postflight: how long to wait for the checks.
    pub timeout_secs: Option<u64>,
    /// uninstall: also delete the state directories.
    pub purge: bool,
    /// uninstall: must be true (the GUI asks first).
    pub confirm: bool,
}

/// The stages the web UI can start.
pub const STARTABLE: &[Stage] = &[
    Stage::Genconf,
    Stage::Preflight,
    Stage::InstallPrereqs,
    Stage::Deploy,
    Stage::Postflight,
    Stage::Uninstall,
    Stage::Status,
];

pub fn parse_stage(s: &str) -> Option<Stage> {
    STARTABLE.iter().copied().find(|st| st.as_str() == s)
}

struct Current {
    stage: Stage,
    cancel: CancellationToken,
}

/// Who is running right now, if anyone.
#[derive(Debug, Clone, serde::Serialize, ToSchema)]
pub struct Busy {
    /// `this server` or the lock holder's command.
    pub by: String,
    #[schema(value_type = Option<String>)]
    pub stage: Option<Stage>,
    #[schema(value_type = Option<Object>)]
    pub holder: Option<Holder>,
}

#[derive(Default)]
pub struct RunManager {
    current: Mutex<Option<Current>>,
}

/// The lock's holder when someone else (e.g. a CLI run) holds it. Only called with the
/// manager's mutex held and no run of ours in flight, so it never races our own runs.
fn probe(state_dir: &Path) -> Result<Option<Busy>, ApiError> {
    match RunLock::acquire(state_dir, "tarmac web (probe)") {
        Ok(_lock) => Ok(None),
        Err(LockError::Held { holder, .. }) => Ok(Some(Busy {
            by: holder.command.clone(),
            stage: None,
            holder: Some(holder),
        })),
        Err(LockError::HeldUnknown { .. }) => Ok(Some(Busy {
            by: "another tarmac run".into(),
            stage: None,
            holder: None,
        })),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

/// Resets the manager when the run task ends, even by panic.
struct Slot {
    app: Arc<App>,
    stage: Stage,
    finished: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.finished {
            self.app.hub.run_change(RunChange::Finished {
                stage: self.stage,
                ok: false,
                summary: None,
                error: Some("the run ended unexpectedly (internal error)".into()),
                checks: None,
                report: None,
                finished_unix_ms: now_ms(),
            });
        }
        if let Ok(mut g) = self.app.runs.current.lock() {
            *g = None;
        }
    }
}

/// An error with its causes, one per line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str("\ncaused by: ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

impl RunManager {
    pub fn busy(&self, state_dir: &Path) -> Result<Option<Busy>, ApiError> {
        let g = self.current.lock().expect("runs poisoned");
        if let Some(c) = g.as_ref() {
            return Ok(Some(Busy {
                by: "this server".into(),
                stage: Some(c.stage),
                holder: None,
            }));
        }
        probe(state_dir)
    }

    /// A run started from this server is in flight.
    pub fn in_progress(&self) -> bool {
        self.current.lock().map(|g| g.is_some()).unwrap_or(false)
    }

    /// Cancel the run in flight; false when there is none.
    pub fn cancel(&self) -> bool {
        match self.current.lock().expect("runs poisoned").as_ref() {
            Some(c) => {
                c.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Validate, select hosts, claim the slot and start `stage` in the background.
    pub fn start(app: &Arc<App>, stage: Stage, req: StartRequest) -> Result<RunChange, ApiError> {
        if stage == Stage::Uninstall && !req.confirm {
            return Err(ApiError::bad_request(
                "uninstall removes Tarmac from the hosts: send `confirm: true` to go ahead",
            ));
        }
        let gdir = app.opts.genconf_dir.clone();
        let cfg =
            tarmac_genconf::validate(&app.opts.dist, &gdir).map_err(|r| ApiError::invalid(&r))?;
        let mut installer = Installer::new(&gdir, cfg, app.hub.clone() as Sink);
        installer.sudo_password = app.sudo_password.lock().expect("sudo poisoned").clone();
        let mut only: Option<Vec<HostAddr>> = None;
        let mut base_run_id = None;
        if let Some(list) = &req.hosts {
            let known = installer.hosts();
            let mut sel = Vec::new();
            for h in list {
                let addr: HostAddr = h
                    .parse()
                    .map_err(|e| ApiError::bad_request(format!("bad host `{h}`: {e}")))?;
                if !known.iter().any(|(k, _)| *k == addr) {
                    return Err(ApiError::bad_request(format!(
                        "host `{h}` is not in config.yaml"
                    )));
                }
                sel.push(addr);
            }
            if sel.is_empty() {
                return Err(ApiError::bad_request("`hosts` is empty"));
            }
            only = Some(sel);
        }
        if req.retry_failed {
            if stage == Stage::Genconf {
                return Err(ApiError::bad_request(
                    "genconf runs on this machine only; there is nothing to retry",
                ));
            }
            let last = tarmac_installer::journal::last_run(&installer.state_dir(), stage)
                .map_err(|e| ApiError::bad_request(chain(&e)))?;
            base_run_id = Some(last.run_id.clone());
            let failed = last.unsuccessful_hosts();
            let failed: Vec<HostAddr> = match only {
                Some(o) => failed.into_iter().filter(|h| o.contains(h)).collect(),
                None => failed,
            };
            if failed.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "every host succeeded in the last {stage} run; nothing to retry"
                )));
            }
            only = Some(failed);
        }

        let cancel = installer.cancel.clone();
        {
            let mut g = app.runs.current.lock().expect("runs poisoned");
            if let Some(c) = g.as_ref() {
                return Err(ApiError::conflict(
                    format!(
                        "a {} run started from this server is in progress; wait for it to finish or cancel it",
                        c.stage
                    ),
                    Busy {
                        by: "this server".into(),
                        stage: Some(c.stage),
                        holder: None,
                    },
                ));
            }
            if let Some(b) = probe(&gdir.join("state"))? {
                let msg = match &b.holder {
                    Some(h) => format!(
                        "another tarmac run holds {}: pid {} on {} (`{}`), running for {}",
                        gdir.join("state/lock").display(),
                        h.pid,
                        h.host,
                        h.command,
                        tarmac_installer::lock::human_age(h.since_unix)
                    ),
                    None => format!(
                        "another tarmac run holds {}",
                        gdir.join("state/lock").display()
                    ),
                };
                return Err(ApiError::conflict(msg, b));
            }
            *g = Some(Current { stage, cancel });
        }
        let started = RunChange::Started {
            stage,
            hosts: only
                .as_ref()
                .map(|o| o.iter().map(ToString::to_string).collect()),
            retry: req.retry_failed,
            base_run_id,
            started_unix_ms: now_ms(),
        };
        app.hub.run_change(started.clone());
        let slot = Slot {
            app: app.clone(),
            stage,
            finished: false,
        };
        tokio::spawn(run(slot, installer, stage, only, req));
        Ok(started)
    }
}

async fn run(
    mut slot: Slot,
    mut installer: Installer,
    stage: Stage,
    only: Option<Vec<HostAddr>>,
    req: StartRequest,
) {
    let app = slot.app.clone();
    let hub: &Hub = &app.hub;
    let mut checks = None;
    let mut report = None;
    installer.only = None;
    let result: Result<Option<tarmac_events::Summary>, String> = match stage {
        Stage::Genconf => {
            let app2 = app.clone();
            let gdir = app.opts.genconf_dir.clone();
            let joined = tokio::task::spawn_blocking(move || {
                let _lock = RunLock::acquire(&gdir.join("state"), "tarmac web: genconf")
                    .map_err(|e| chain(&e))?;
                let opts = tarmac_genconf::GenconfOptions {
                    genconf_dir: gdir.clone(),
                    build_dir: app2.opts.build_dir.clone(),
                    public_key: app2.opts.public_key.clone(),
                    pack: tarmac_pkg::pack::PackOptions::default(),
                };
                let sink: Sink = app2.hub.clone();
                tarmac_genconf::genconf(&app2.opts.dist, &opts, &sink).map_err(|e| match e {
                    tarmac_genconf::GenconfError::Invalid(r) => r.render(),
                    other => chain(&other),
                })
            })
            .await;
            match joined {
                Ok(Ok(r)) => {
                    hub.emit_notice(
                        Level::Info,
                        format!(
                            "genconf wrote {} (cluster package list {})",
                            r.serve_dir.display(),
                            r.cluster_package_list_id
                        ),
                    );
                    report = serde_json::to_value(&r).ok();
                    Ok(None)
                }
                Ok(Err(e)) => Err(e),
                Err(e) => Err(format!("genconf failed: {e}")),
            }
        }
        Stage::Preflight => {
            let opts = PreflightOptions {
                only,
                ignore: req.ignore_checks.clone(),
                push: req.push,
                listen: None,
            };
            match installer.preflight(&opts).await {
                Ok((run, c)) => {
                    checks = Some(
                        c.into_iter()
                            .map(|(h, v)| (h.to_string(), v))
                            .collect::<BTreeMap<_, _>>(),
                    );
                    Ok(Some(run.report.summary.clone()))
                }
                Err(e) => Err(chain(&e)),
            }
        }
        Stage::InstallPrereqs => installer
            .install_prereqs(only, &app.opts.prereqs_apt, &app.opts.prereqs_dnf)
            .await
            .map(|r| Some(r.report.summary.clone()))
            .map_err(|e| chain(&e)),
        Stage::Deploy => {
            let mut opts = DeployOptions {
                only,
                push: req.push,
                ..DeployOptions::default()
            };
            if let Some(t) = req.timeout_secs {
                opts.timeout = Duration::from_secs(t);
            }
            installer
                .deploy(&opts)
                .await
                .map(|r| Some(r.report.summary.clone()))
                .map_err(|e| chain(&e))
        }
        Stage::Postflight => installer
            .postflight(only, Duration::from_secs(req.timeout_secs.unwrap_or(900)))
            .await
            .map(|r| Some(r.report.summary.clone()))
            .map_err(|e| chain(&e)),
        Stage::Uninstall => installer
            .uninstall(only, req.purge)
            .await
            .map(|r| Some(r.report.summary.clone()))
            .map_err(|e| chain(&e)),
        Stage::Status => match installer.status(only).await {
            Ok((run, r)) => {
                report = serde_json::to_value(&r).ok();
                Ok(Some(run.report.summary.clone()))
            }
            Err(e) => Err(chain(&e)),
        },
        other => Err(format!("{other} cannot be started from the web UI")),
    };
    let (ok, summary, error) = match result {
        Ok(Some(s)) => (s.all_succeeded(), Some(s), None),
        Ok(None) => (true, None, None),
        Err(e) => (false, None, Some(e)),
    };
    hub.run_change(RunChange::Finished {
        stage,
        ok,
        summary,
        error,
        checks,
        report,
        finished_unix_ms: now_ms(),
    });
    slot.finished = true;
}

impl Hub {
    fn emit_notice(&self, level: Level, message: String) {
        tarmac_events::EventSink::emit(self, Event::Notice { level, message });
    }
}
