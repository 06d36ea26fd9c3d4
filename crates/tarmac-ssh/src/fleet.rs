//! The fan-out API: a [`Fleet`] of hosts, one connection each (set up lazily or with
//! [`Fleet::connect_all`]), and [`Fleet::run_all`] to run a job on every host at once.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tarmac_events::{Event, Level, Outcome, Sink, Summary, millis};
use tarmac_types::{HostAddr, Stage};
use tokio::sync::{OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::error::{ConnectError, KeyError, StepError};
use crate::host::{Host, Transport};
use crate::local::LocalHost;
use crate::logdir::LogDir;
use crate::options::{Limits, SshOptions};
use crate::session::{HostSession, StageCtx, SudoStatus};
use crate::ssh::{Credentials, HostKeyVerifier, Route, SshHost};
use crate::target::Target;

/// Connection attempts per host (fast failures only; all within the connect timeout).
const MAX_CONNECT_ATTEMPTS: u32 = 5;

/// Where a fleet reports and keeps things.
#[derive(Clone)]
pub struct FleetContext {
    pub sink: Sink,
    /// Per-host per-stage log files; `None` keeps no files.
    pub log_dir: Option<LogDir>,
    /// Cancelling it (Ctrl-C) stops new work and ends running commands.
    pub cancel: CancellationToken,
    pub run_id: String,
}

impl FleetContext {
    pub fn new(sink: Sink) -> Self {
        Self {
            sink,
            log_dir: None,
            cancel: CancellationToken::new(),
            run_id: format!(
                "run-{}",
                crate::logdir::humantime_utc(std::time::SystemTime::now())
            ),
        }
    }

    pub fn with_log_dir(mut self, dir: LogDir) -> Self {
        self.log_dir = Some(dir);
        self
    }

    pub fn with_cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    pub fn with_run_id(mut self, id: impl Into<String>) -> Self {
        self.run_id = id.into();
        self
    }
}

pub(crate) type HostCell = OnceCell<Result<Arc<dyn Host>, Arc<ConnectError>>>;

pub(crate) struct Member {
    pub(crate) target: Target,
    /// The host's connection, made on first use. [`Member::release`] puts a fresh cell here,
    /// so that a later use connects again.
    host: std::sync::Mutex<Arc<HostCell>>,
    /// The slot of `Shared::open_sem` an open SSH connection holds.
    pub(crate) open_permit: std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
    /// False for hosts handed over already connected: they cannot be reconnected.
    pub(crate) reconnectable: bool,
    pub(crate) sudo: OnceCell<SudoStatus>,
    pub(crate) channels: Semaphore,
}

impl Member {
    /// The current connection cell (connected, failed, or not yet tried).
    pub(crate) fn cell(&self) -> Arc<HostCell> {
        self.host.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Close the host's connection, if one is open, and free its slot; the next use
    /// connects again. A failed connection stays failed (later steps fail fast), and a
    /// host handed over connected is kept.
    pub(crate) async fn release(&self) {
        if !self.reconnectable {
            return;
        }
        let old = {
            let mut cur = self.host.lock().unwrap_or_else(|e| e.into_inner());
            match cur.get() {
                Some(Ok(_)) => std::mem::replace(&mut *cur, Arc::new(OnceCell::new())),
                _ => return,
            }
        };
        if let Some(Ok(h)) = old.get() {
            h.close().await;
        }
        drop(old);
        self.open_permit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

pub(crate) enum Backend {
    Ssh {
        verifier: Arc<HostKeyVerifier>,
        creds: Arc<Credentials>,
        jumps: Vec<OnceCell<Result<Arc<SshHost>, Arc<ConnectError>>>>,
    },
    Prepared,
    Transport(Arc<dyn Transport>),
}

pub(crate) struct Shared {
    pub(crate) opts: SshOptions,
    pub(crate) ctx: FleetContext,
    pub(crate) limits: Limits,
    pub(crate) connect_sem: Semaphore,
    pub(crate) command_sem: Semaphore,
    pub(crate) transfer_sem: Semaphore,
    /// One permit per open connection (`Limits::open`).
    pub(crate) open_sem: Arc<Semaphore>,
    pub(crate) backend: Backend,
}

/// Options of one [`Fleet::run_all`].
#[derive(Debug, Clone, Default)]
pub struct StageOptions {
    /// Overall deadline of the stage; hosts still working then are ended and marked timed out.
    pub deadline: Option<Duration>,
    /// Only these hosts (default: all).
    pub only: Option<Vec<HostAddr>>,
    /// Close each host's connection as soon as its job ends (its sockets and memory are
    /// freed at once). Always done when the stage has more hosts than `Limits::open`;
    /// otherwise connections stay open for a later stage on the same fleet.
    pub release: bool,
    /// Called once for every host of the stage when it is done, whatever its outcome
    /// (unreachable and never-started hosts included): for jobs that wait on each other.
    pub on_finish: Option<FinishHook>,
}

/// See [`StageOptions::on_finish`].
#[derive(Clone)]
pub struct FinishHook(pub Arc<FinishFn>);

/// What a [`FinishHook`] calls: the host, and how it ended.
pub type FinishFn = dyn Fn(&HostAddr, &Outcome) + Send + Sync;

impl std::fmt::Debug for FinishHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FinishHook")
    }
}

/// How one host did in a stage.
#[derive(Debug, Clone, PartialEq)]
pub struct HostResult {
    pub target: Target,
    pub outcome: Outcome,
    pub duration: Duration,
}

/// The result of [`Fleet::run_all`].
#[derive(Debug, Clone)]
pub struct StageReport {
    pub run_id: String,
    pub stage: Stage,
    /// In the fleet's host order.
    pub hosts: Vec<HostResult>,
    pub summary: Summary,
    pub duration: Duration,
}

impl StageReport {
    pub fn all_succeeded(&self) -> bool {
        self.summary.all_succeeded()
    }
}

/// Hosts and one connection per host.
pub struct Fleet {
    shared: Arc<Shared>,
    members: Vec<Arc<Member>>,
}

impl Fleet {
    /// Prepare SSH connections to `targets` (nothing is connected yet). Loads key files and
    /// known_hosts once, raises `RLIMIT_NOFILE` and sizes the limits from it.
    pub fn new(
        targets: Vec<Target>,
        opts: SshOptions,
        ctx: FleetContext,
    ) -> Result<Fleet, KeyError> {
        let verifier = Arc::new(HostKeyVerifier::load(&opts, ctx.sink.clone())?);
        let creds = Arc::new(Credentials::load(&opts, &ctx.sink)?);
        let jumps = opts.jump.iter().map(|_| OnceCell::new()).collect();
        Ok(Self::build(
            targets,
            opts,
            ctx,
            Backend::Ssh {
                verifier,
                creds,
                jumps,
            },
            |_| None,
        ))
    }

    /// [`Fleet::new`], then connect every host (see [`Fleet::connect_all`]).
    pub async fn connect(
        targets: Vec<Target>,
        opts: SshOptions,
        ctx: FleetContext,
    ) -> Result<Fleet, KeyError> {
        let fleet = Fleet::new(targets, opts, ctx)?;
        fleet.connect_all().await;
        Ok(fleet)
    }

    /// Every target runs on this machine through [`LocalHost`] (tests, demos).
    pub fn local(targets: Vec<Target>, opts: SshOptions, ctx: FleetContext) -> Fleet {
        Self::build(targets, opts, ctx, Backend::Prepared, |t| {
            Some(Arc::new(LocalHost::new(t.addr.clone())) as Arc<dyn Host>)
        })
    }

    /// Hosts opened by `transport` (lazily, once each, like SSH connections).
    pub fn with_transport(
        targets: Vec<Target>,
        opts: SshOptions,
        ctx: FleetContext,
        transport: Arc<dyn Transport>,
    ) -> Fleet {
        Self::build(targets, opts, ctx, Backend::Transport(transport), |_| None)
    }

    /// A fleet over already connected hosts of any transport.
    pub fn from_hosts(
        hosts: Vec<(Target, Arc<dyn Host>)>,
        opts: SshOptions,
        ctx: FleetContext,
    ) -> Fleet {
        let (targets, hs): (Vec<_>, Vec<_>) = hosts.into_iter().unzip();
        let mut it = hs.into_iter();
        Self::build(targets, opts, ctx, Backend::Prepared, move |_| it.next())
    }

    fn build(
        targets: Vec<Target>,
        opts: SshOptions,
        ctx: FleetContext,
        backend: Backend,
        mut prepared: impl FnMut(&Target) -> Option<Arc<dyn Host>>,
    ) -> Fleet {
        let nofile = crate::rlimit::raise_nofile_limit();
        let limits = opts.limits.fit_fd_limit(nofile);
        if limits != opts.limits {
            ctx.sink.emit(Event::Notice {
                level: Level::Info,
                message: format!(
                    "limited concurrency to {} connects / {} commands / {} transfers (open file limit {nofile})",
                    limits.connect, limits.commands, limits.transfers
                ),
            });
        }
        let members = targets
            .into_iter()
            .map(|target| {
                let (host, reconnectable) = match prepared(&target) {
                    Some(h) => (OnceCell::new_with(Some(Ok(h))), false),
                    None => (OnceCell::new(), true),
                };
                Arc::new(Member {
                    target,
                    host: std::sync::Mutex::new(Arc::new(host)),
                    open_permit: std::sync::Mutex::new(None),
                    reconnectable,
                    sudo: OnceCell::new(),
                    channels: Semaphore::new(limits.channels_per_host),
                })
            })
            .collect();
        let shared = Arc::new(Shared {
            connect_sem: Semaphore::new(limits.connect),
            command_sem: Semaphore::new(limits.commands),
            transfer_sem: Semaphore::new(limits.transfers),
            open_sem: Arc::new(Semaphore::new(limits.open)),
            limits,
            opts,
            ctx,
            backend,
        });
        Fleet { shared, members }
    }

    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.members.iter().map(|m| &m.target)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn limits(&self) -> Limits {
        self.shared.limits
    }

    pub fn cancel_token(&self) -> &CancellationToken {
        &self.shared.ctx.cancel
    }

    pub fn run_id(&self) -> &str {
        &self.shared.ctx.run_id
    }

    /// Connect every host at once (bounded by the connect limit). Each host gets `connect`
    /// step events; failures are kept and reported as unreachable by later stages.
    pub async fn connect_all(&self) -> Vec<(HostAddr, Result<(), Arc<ConnectError>>)> {
        let ctx = Arc::new(StageCtx::new(
            "connect",
            self.shared.ctx.cancel.child_token(),
            None,
        ));
        let mut futs: FuturesUnordered<_> = self
            .members
            .iter()
            .map(|m| {
                let s = HostSession::new(self.shared.clone(), m.clone(), ctx.clone());
                async move {
                    let r = s.connect().await.map(|_| ()).map_err(|e| match e {
                        StepError::Unreachable { source, .. } => source,
                        StepError::Cancelled { .. } | StepError::TimedOut { .. } => {
                            Arc::new(ConnectError::Cancelled {
                                host: s.addr().to_string(),
                            })
                        }
                        other => Arc::new(ConnectError::Other {
                            host: s.addr().to_string(),
                            message: other.to_string(),
                        }),
                    });
                    (s.addr().clone(), r)
                }
            })
            .collect();
        let mut out = Vec::with_capacity(self.members.len());
        while let Some(r) = futs.next().await {
            out.push(r);
        }
        out
    }

    /// A session on one host for ad-hoc steps, logged under `stage`.
    pub fn session(&self, stage: &str, addr: &HostAddr) -> Option<HostSession> {
        let m = self.members.iter().find(|m| &m.target.addr == addr)?;
        let ctx = Arc::new(StageCtx::new(
            stage,
            self.shared.ctx.cancel.child_token(),
            None,
        ));
        Some(HostSession::new(self.shared.clone(), m.clone(), ctx))
    }

    /// Run `job` on every host (or `opts.only`) at once. Each host connects (once per fleet),
    /// then runs its job; a host that is unreachable, fails or times out never stalls the
    /// others. Emits `StageStarted`, per-step events, `HostFinished` and `StageFinished`.
    ///
    /// The job gets a [`HostSession`] and returns the host's outcome; a [`StepError`] from
    /// `?` becomes the matching outcome (failed, timed out, unreachable, cancelled).
    pub async fn run_all<F, Fut>(&self, stage: Stage, opts: StageOptions, job: F) -> StageReport
    where
        F: Fn(HostSession) -> Fut,
        Fut: Future<Output = Result<Outcome, StepError>>,
    {
        let started = Instant::now();
        let stop = self.shared.ctx.cancel.child_token();
        let deadline = opts.deadline.map(|d| started + d);
        let ctx = Arc::new(StageCtx::new(stage.as_str(), stop.clone(), deadline));
        let timer = deadline.map(|d| {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await;
                stop.cancel();
            })
        });
        let members: Vec<(usize, Arc<Member>)> = self
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| {
                opts.only
                    .as_ref()
                    .is_none_or(|o| o.contains(&m.target.addr))
            })
            .map(|(i, m)| (i, m.clone()))
            .collect();
        let release = opts.release || members.len() > self.shared.limits.open;
        let sink = &self.shared.ctx.sink;
        sink.emit(Event::StageStarted {
            run_id: self.shared.ctx.run_id.clone(),
            stage,
            hosts: members.iter().map(|(_, m)| m.target.host_ref()).collect(),
        });
        let job = &job;
        let on_finish = &opts.on_finish;
        let mut futs: FuturesUnordered<_> = members
            .iter()
            .map(|(i, m)| {
                let session = HostSession::new(self.shared.clone(), m.clone(), ctx.clone());
                let ctx = ctx.clone();
                async move {
                    let t0 = Instant::now();
                    let outcome = if ctx.stop.is_cancelled() {
                        ctx.stopped_outcome(t0)
                    } else {
                        match session.connect().await {
                            Err(e) => e.outcome(),
                            Ok(_) => match job(session.clone()).await {
                                Ok(o) => o,
                                Err(e) => e.outcome(),
                            },
                        }
                    };
                    let duration = t0.elapsed();
                    session.log_line(&format!(
                        "== host finished: {} in {:?}",
                        outcome_text(&outcome),
                        duration
                    ));
                    session.close_log();
                    if release {
                        session.release().await;
                    }
                    if let Some(h) = on_finish {
                        (h.0)(session.addr(), &outcome);
                    }
                    session.shared().ctx.sink.emit(Event::HostFinished {
                        host: session.addr().clone(),
                        outcome: outcome.clone(),
                        duration_ms: millis(duration),
                    });
                    (
                        *i,
                        HostResult {
                            target: session.target().clone(),
                            outcome,
                            duration,
                        },
                    )
                }
            })
            .collect();
        let mut results = Vec::with_capacity(members.len());
        while let Some(r) = futs.next().await {
            results.push(r);
        }
        if let Some(t) = timer {
            t.abort();
        }
        results.sort_by_key(|(i, _)| *i);
        let hosts: Vec<HostResult> = results.into_iter().map(|(_, r)| r).collect();
        let mut summary = Summary::default();
        for h in &hosts {
            summary.add(&h.outcome);
        }
        let duration = started.elapsed();
        sink.emit(Event::StageFinished {
            run_id: self.shared.ctx.run_id.clone(),
            stage,
            summary: summary.clone(),
            duration_ms: millis(duration),
        });
        StageReport {
            run_id: self.shared.ctx.run_id.clone(),
            stage,
            hosts,
            summary,
            duration,
        }
    }

    /// Close every connection.
    pub async fn close(&self) {
        let futs: FuturesUnordered<_> = self
            .members
            .iter()
            .map(|m| async move {
                if m.reconnectable {
                    m.release().await;
                } else if let Some(Ok(h)) = m.cell().get() {
                    h.close().await;
                }
            })
            .collect();
        futs.collect::<Vec<_>>().await;
        if let Backend::Ssh { jumps, .. } = &self.shared.backend {
            for j in jumps.iter().rev() {
                if let Some(Ok(h)) = j.get() {
                    h.close().await;
                }
            }
        }
    }
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Failed { message, .. } => format!("failed: {message}"),
        Outcome::Unreachable { message } => format!("unreachable: {message}"),
        Outcome::TimedOut { after_ms } => format!("timed out after {after_ms} ms"),
        Outcome::Skipped { reason } => format!("skipped: {reason}"),
        other => other.label().to_owned(),
    }
}

impl Shared {
    /// Connect `target` (SSH backend), retrying fast failures with backoff, all within the
    /// connect timeout.
    pub(crate) async fn connect_target(
        &self,
        target: &Target,
    ) -> Result<Arc<dyn Host>, ConnectError> {
        if let Backend::Transport(t) = &self.backend {
            let _permit =
                self.connect_sem
                    .acquire()
                    .await
                    .map_err(|_| ConnectError::Cancelled {
                        host: target.addr.to_string(),
                    })?;
            return t.open(target, &self.opts).await;
        }
        let Backend::Ssh {
            verifier,
            creds,
            jumps,
        } = &self.backend
        else {
            return Err(ConnectError::Other {
                host: target.addr.to_string(),
                message: "no transport for this host".into(),
            });
        };
        let user = target
            .user
            .clone()
            .unwrap_or_else(|| self.opts.user.clone());
        // The jump chain, each hop through the previous one, shared by all targets.
        let mut via: Option<Arc<SshHost>> = None;
        for (i, cell) in jumps.iter().enumerate() {
            let hop = &self.opts.jump[i];
            let prev = via.clone();
            let r = cell
                .get_or_init(|| async {
                    let hop_user = hop.user.clone().unwrap_or_else(|| self.opts.user.clone());
                    let mut hop_opts = self.opts.clone();
                    hop_opts.port = 22;
                    self.retrying(&hop.addr, || async {
                        let route = match &prev {
                            Some(p) => Route::Via(p),
                            None => Route::Direct,
                        };
                        SshHost::connect(&hop.addr, &hop_user, &hop_opts, route, verifier, creds)
                            .await
                    })
                    .await
                    .map(Arc::new)
                    .map_err(Arc::new)
                })
                .await;
            match r {
                Ok(h) => via = Some(h.clone()),
                Err(e) => {
                    return Err(ConnectError::Jump {
                        host: target.addr.to_string(),
                        jump: hop.to_string(),
                        message: e.to_string(),
                    });
                }
            }
        }
        let _permit = self
            .connect_sem
            .acquire()
            .await
            .map_err(|_| ConnectError::Cancelled {
                host: target.addr.to_string(),
            })?;
        let host = self
            .retrying(&target.addr, || async {
                let route = match &via {
                    Some(p) => Route::Via(p),
                    None => Route::Direct,
                };
                SshHost::connect(&target.addr, &user, &self.opts, route, verifier, creds).await
            })
            .await?;
        Ok(Arc::new(host))
    }

    async fn retrying<T, F, Fut>(&self, addr: &HostAddr, mut f: F) -> Result<T, ConnectError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ConnectError>>,
    {
        let timeout = self.opts.connect_timeout;
        let deadline = Instant::now() + timeout;
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, f()).await {
                Err(_) => {
                    return Err(ConnectError::Timeout {
                        host: addr.to_string(),
                        after: timeout,
                    });
                }
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => {
                    let jitter = Duration::from_millis(rand::random::<u64>() % 100);
                    let wait = backoff + jitter;
                    if !e.is_retryable()
                        || attempt >= MAX_CONNECT_ATTEMPTS
                        || Instant::now() + wait >= deadline
                    {
                        return Err(e);
                    }
                    self.ctx.sink.emit(Event::Notice {
                        level: Level::Debug,
                        message: format!(
                            "{addr}: connect attempt {attempt} failed ({e}); retrying in {wait:?}"
                        ),
                    });
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}
