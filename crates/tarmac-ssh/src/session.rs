//! [`HostSession`]: one host's connection within a stage, with steps that emit events and
//! write the host's log: commands ([`Exec`]), uploads ([`Upload`]), downloads, sudo detection.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tarmac_events::{Event, Outcome, Stream, millis};
use tarmac_types::{Digest, HostAddr, Role};
use tokio::io::AsyncWrite;
use tokio_util::sync::CancellationToken;

use crate::error::StepError;
use crate::fleet::{Member, Shared};
use crate::host::Host;
use crate::logdir::HostLog;
use crate::run::{self, Ended, Input, Observer, OutputMode, RunOutput, RunSpec};
use crate::script::{self, Become, EXIT_CHECKSUM};
use crate::target::Target;

/// A stage as seen by its hosts: its name (for logs), its stop signal and deadline.
pub(crate) struct StageCtx {
    pub(crate) name: String,
    pub(crate) stop: CancellationToken,
    pub(crate) deadline: Option<Instant>,
}

impl StageCtx {
    pub(crate) fn new(name: &str, stop: CancellationToken, deadline: Option<Instant>) -> Self {
        Self {
            name: name.to_owned(),
            stop,
            deadline,
        }
    }

    fn deadline_passed(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    pub(crate) fn stopped_outcome(&self, since: Instant) -> Outcome {
        if self.deadline_passed() {
            Outcome::TimedOut {
                after_ms: millis(since.elapsed()),
            }
        } else {
            Outcome::Cancelled
        }
    }
}

/// A command to run on a host. The command line is run by the login user's shell.
#[derive(Debug, Clone)]
pub struct Exec {
    pub command: String,
    /// Run as root: through `sudo` when the login user is not root.
    pub root: bool,
    /// Overrides the fleet's default command timeout.
    pub timeout: Option<Duration>,
    /// Bytes fed on stdin (then EOF). Without it the command's stdin is `/dev/null`.
    pub stdin: Option<Bytes>,
    /// Do not emit `Output` events (lines still go to the log file).
    pub quiet: bool,
}

impl Exec {
    /// Run `command` as the login user.
    pub fn new(command: impl Into<String>) -> Self {
        Exec {
            command: command.into(),
            root: false,
            timeout: None,
            stdin: None,
            quiet: false,
        }
    }

    /// Run `command` as root (sudo for non-root users).
    pub fn root(command: impl Into<String>) -> Self {
        Exec {
            root: true,
            ..Exec::new(command)
        }
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    pub fn stdin(mut self, data: impl Into<Bytes>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub duration: Duration,
    /// Up to 1 MiB of stdout (lossy UTF-8).
    pub stdout: String,
    pub stderr: String,
    /// The last lines of stderr.
    pub stderr_tail: Vec<String>,
}

impl CommandResult {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && self.signal.is_none()
    }
}

/// A local file (or bytes) to upload, hashed once for any number of hosts.
#[derive(Debug, Clone)]
pub struct UploadSource {
    /// Shown in `Transfer` events.
    pub name: String,
    pub size: u64,
    pub sha256: Digest,
    data: SourceData,
}

#[derive(Debug, Clone)]
enum SourceData {
    File(PathBuf),
    Bytes(Bytes),
}

impl UploadSource {
    pub fn file(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let size = std::fs::metadata(&path)?.len();
        let sha256 = Digest::of_file(&path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(UploadSource {
            name,
            size,
            sha256,
            data: SourceData::File(path),
        })
    }

    pub fn bytes(name: impl Into<String>, data: impl Into<Bytes>) -> Self {
        let data = data.into();
        UploadSource {
            name: name.into(),
            size: data.len() as u64,
            sha256: Digest::of(&data),
            data: SourceData::Bytes(data),
        }
    }
}

/// An upload: `source` to `dest` on the host, replaced atomically and checked by sha256 there;
/// the temporary file is readable by its owner only until it has its final mode.
#[derive(Debug, Clone)]
pub struct Upload {
    pub source: UploadSource,
    pub dest: String,
    pub mode: u32,
    pub root: bool,
    pub timeout: Option<Duration>,
}

impl Upload {
    pub fn new(source: UploadSource, dest: impl Into<String>) -> Self {
        Upload {
            source,
            dest: dest.into(),
            mode: 0o644,
            root: false,
            timeout: None,
        }
    }
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }
    pub fn root(mut self) -> Self {
        self.root = true;
        self
    }
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }
}

/// What `sudo -n true` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SudoStatus {
    /// The login user is root.
    Root,
    Passwordless,
    NeedsPassword,
    /// No sudo, or not allowed; the message says why.
    Unavailable(String),
}

/// One host within a stage. Cheap to clone; all clones share the host's one connection.
#[derive(Clone)]
pub struct HostSession {
    shared: Arc<Shared>,
    member: Arc<Member>,
    stage: Arc<StageCtx>,
    log: Option<Arc<HostLog>>,
}

struct StepObserver<'a> {
    session: &'a HostSession,
    step: &'a str,
    quiet: bool,
    transfer: Option<(&'a str, u64)>,
}

impl Observer for StepObserver<'_> {
    fn line(&self, stream: Stream, line: &str) {
        let tag = match stream {
            Stream::Stdout => "out| ",
            Stream::Stderr => "err| ",
        };
        self.session.log_line(&format!("{tag}{line}"));
        if !self.quiet {
            self.session.shared.ctx.sink.emit(Event::Output {
                host: self.session.addr().clone(),
                step: self.step.to_owned(),
                stream,
                line: line.to_owned(),
            });
        }
    }

    fn progress(&self, sent: u64) {
        if let Some((name, total)) = self.transfer {
            self.session.shared.ctx.sink.emit(Event::Transfer {
                host: self.session.addr().clone(),
                name: name.to_owned(),
                done: sent,
                total,
            });
        }
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl HostSession {
    pub(crate) fn new(shared: Arc<Shared>, member: Arc<Member>, stage: Arc<StageCtx>) -> Self {
        let log = shared
            .ctx
            .log_dir
            .as_ref()
            .map(|d| Arc::new(d.host_log(&stage.name, &member.target.addr)));
        HostSession {
            shared,
            member,
            stage,
            log,
        }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    pub fn target(&self) -> &Target {
        &self.member.target
    }

    pub fn addr(&self) -> &HostAddr {
        &self.member.target.addr
    }

    /// The run this session belongs to (the fleet context's run id).
    pub fn run_id(&self) -> &str {
        &self.shared.ctx.run_id
    }

    pub fn role(&self) -> Option<Role> {
        self.member.target.role
    }

    /// The login user.
    pub fn user(&self) -> String {
        self.member
            .target
            .user
            .clone()
            .unwrap_or_else(|| self.shared.opts.user.clone())
    }

    /// The stage's stop signal (cancelled on Ctrl-C or at the stage deadline).
    pub fn stop_token(&self) -> &CancellationToken {
        &self.stage.stop
    }

    /// Emit an event on the fleet's sink.
    pub fn emit(&self, event: Event) {
        self.shared.ctx.sink.emit(event);
    }

    /// Where this host's log for the stage goes, if logs are kept.
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref().map(HostLog::path)
    }

    pub(crate) fn log_line(&self, text: &str) {
        if let Some(l) = &self.log {
            let _ = l.line(text);
        }
    }

    fn log_header(&self, text: &str) {
        if let Some(l) = &self.log {
            let _ = l.header(text);
        }
    }

    pub(crate) fn close_log(&self) {
        if let Some(l) = &self.log {
            let _ = l.close();
        }
    }

    fn stopped(&self, step: &str) -> StepError {
        if self.stage.deadline_passed() {
            StepError::TimedOut {
                host: self.addr().clone(),
                step: step.to_owned(),
                after: self.stage.deadline.map(|d| d.elapsed()).unwrap_or_default(),
            }
        } else {
            StepError::Cancelled {
                host: self.addr().clone(),
                step: step.to_owned(),
            }
        }
    }

    /// The host's connection, set up on first use (once per fleet, or again after
    /// [`HostSession::release`]; failures are kept).
    pub async fn connect(&self) -> Result<Arc<dyn Host>, StepError> {
        let cell = self.member.cell();
        if let Some(r) = cell.get() {
            return r.clone().map_err(|source| StepError::Unreachable {
                host: self.addr().clone(),
                source,
            });
        }
        let fut = cell.get_or_init(|| async {
            // A slot among the connections open at once (`Limits::open`), held until the
            // connection is released.
            if self.member.reconnectable {
                let Ok(permit) = self.shared.open_sem.clone().acquire_owned().await else {
                    return Err(Arc::new(crate::error::ConnectError::Cancelled {
                        host: self.addr().to_string(),
                    }));
                };
                *self
                    .member
                    .open_permit
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(permit);
            }
            let t0 = Instant::now();
            self.emit(Event::StepStarted {
                host: self.addr().clone(),
                step: "connect".into(),
            });
            self.log_header(&format!("step connect: {}@{}", self.user(), self.addr()));
            let r = self
                .shared
                .connect_target(&self.member.target)
                .await
                .map_err(Arc::new);
            if r.is_err() {
                // No connection, no slot held.
                self.member
                    .open_permit
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
            }
            let outcome = match &r {
                Ok(_) => Outcome::Ok,
                Err(e) => Outcome::Unreachable {
                    message: e.to_string(),
                },
            };
            self.log_line(&format!(
                "== connect: {}",
                match &r {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => format!("unreachable: {e}"),
                }
            ));
            self.emit(Event::StepFinished {
                host: self.addr().clone(),
                step: "connect".into(),
                outcome,
                duration_ms: millis(t0.elapsed()),
            });
            r
        });
        tokio::select! {
            r = fut => r.clone().map_err(|source| StepError::Unreachable { host: self.addr().clone(), source }),
            _ = self.stage.stop.cancelled() => Err(self.stopped("connect")),
        }
    }

    /// Close this host's connection now and free its slot among the open connections; a
    /// later step connects again.
    pub async fn release(&self) {
        self.member.release().await;
    }

    /// Probe sudo once per host (`sudo -n true`); cached for the fleet.
    pub async fn sudo_status(&self) -> Result<SudoStatus, StepError> {
        if self.user() == "root" {
            return Ok(SudoStatus::Root);
        }
        if let Some(s) = self.member.sudo.get() {
            return Ok(s.clone());
        }
        let out = self
            .exec_raw(
                "sudo-check",
                script::SUDO_PROBE,
                Become::No,
                Input::None,
                OutputMode::Lines,
                Some(Duration::from_secs(30)),
                true,
                None,
                None,
            )
            .await?;
        let err = lossy(&out.stderr);
        let status = if out.status.code == Some(0) {
            SudoStatus::Passwordless
        } else if err.contains("password is required") {
            SudoStatus::NeedsPassword
        } else if out.status.code == Some(127) || err.contains("not found") {
            SudoStatus::Unavailable("sudo is not installed".into())
        } else {
            SudoStatus::Unavailable(err.trim().to_owned())
        };
        let _ = self.member.sudo.set(status.clone());
        Ok(status)
    }

    async fn become_for(&self, root: bool) -> Result<Become, StepError> {
        if !root || self.user() == "root" {
            return Ok(Become::No);
        }
        if self.shared.opts.sudo_password.is_none() {
            // No password to give: plain `sudo -n`; a password prompt fails fast and clearly.
            return Ok(Become::Sudo);
        }
        match self.sudo_status().await? {
            SudoStatus::Root => Ok(Become::No),
            SudoStatus::Passwordless => Ok(Become::Sudo),
            SudoStatus::NeedsPassword => Ok(Become::SudoPassword),
            SudoStatus::Unavailable(m) => Err(StepError::Sudo {
                host: self.addr().clone(),
                message: m,
                hint: None,
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn exec_raw(
        &self,
        step: &str,
        command: &str,
        become_: Become,
        input: Input,
        output: OutputMode,
        timeout: Option<Duration>,
        quiet: bool,
        transfer: Option<(&str, u64)>,
        until: Option<&CancellationToken>,
    ) -> Result<RunOutput, StepError> {
        if self.stage.stop.is_cancelled() {
            return Err(self.stopped(step));
        }
        let host = self.connect().await?;
        // A service command (`until`) waits on other hosts: it must not hold one of the
        // stage's command permits, which those hosts need.
        let _permit = match until {
            Some(_) => None,
            None => Some(tokio::select! {
                p = self.shared.command_sem.acquire() => p.map_err(|_| self.stopped(step))?,
                _ = self.stage.stop.cancelled() => return Err(self.stopped(step)),
            }),
        };
        let stop = self.stage.stop.child_token();
        let _until = until.map(|u| {
            let (u, stop) = (u.clone(), stop.clone());
            AbortOnDrop(tokio::spawn(async move {
                u.cancelled().await;
                stop.cancel();
            }))
        });
        let _channel = tokio::select! {
            p = self.member.channels.acquire() => p.map_err(|_| self.stopped(step))?,
            _ = self.stage.stop.cancelled() => return Err(self.stopped(step)),
        };
        let observer = StepObserver {
            session: self,
            step,
            quiet,
            transfer,
        };
        let spec = RunSpec {
            command,
            become_,
            password: self.shared.opts.sudo_password.as_ref(),
            input,
            output,
            timeout,
            stop: &stop,
            stop_deadline: self.stage.deadline,
            kill_grace: self.shared.opts.kill_grace,
        };
        let out =
            run::run(&*host, spec, &observer)
                .await
                .map_err(|e| StepError::ConnectionLost {
                    host: self.addr().clone(),
                    step: step.to_owned(),
                    message: e.message,
                })?;
        match &out.ended {
            Ended::Exited => {}
            Ended::TimedOut(after) => {
                return Err(StepError::TimedOut {
                    host: self.addr().clone(),
                    step: step.to_owned(),
                    after: *after,
                });
            }
            // Ended as asked: a service's normal end.
            Ended::Cancelled
                if until.is_some_and(CancellationToken::is_cancelled)
                    && !self.stage.stop.is_cancelled() => {}
            Ended::Cancelled => return Err(self.stopped(step)),
            Ended::ConnectionLost(m) => {
                return Err(StepError::ConnectionLost {
                    host: self.addr().clone(),
                    step: step.to_owned(),
                    message: m.clone(),
                });
            }
            Ended::SudoRejected => {
                return Err(StepError::Sudo {
                    host: self.addr().clone(),
                    message: format!("the sudo password for {} was rejected", self.user()),
                    hint: None,
                });
            }
        }
        if become_ != Become::No && out.pgid.is_none() && out.status.code != Some(0) {
            return Err(sudo_error(self.addr(), &self.user(), &out));
        }
        Ok(out)
    }

    fn finish_step(&self, step: &str, t0: Instant, outcome: Outcome) {
        self.log_line(&format!(
            "== {step}: {} in {:?}",
            match &outcome {
                Outcome::Failed { message, .. } => format!("failed: {message}"),
                o => o.label().to_owned(),
            },
            t0.elapsed()
        ));
        self.emit(Event::StepFinished {
            host: self.addr().clone(),
            step: step.to_owned(),
            outcome,
            duration_ms: millis(t0.elapsed()),
        });
    }

    /// Run a command. A non-zero exit is a result, not an error (see [`check`](Self::check));
    /// errors are timeouts, cancellation, a lost connection and sudo problems.
    pub async fn run(&self, step: &str, exec: Exec) -> Result<CommandResult, StepError> {
        self.run_inner(step, exec, None).await
    }

    /// Run a long-lived service command (a relay, say) until `until` is cancelled, which ends
    /// it on the host like any cancelled command; that end is `Ok`. It holds no command
    /// permit, since what it waits for may need them; the stage's own cancellation and
    /// deadline still end it as a failure.
    pub async fn run_until(
        &self,
        step: &str,
        exec: Exec,
        until: &CancellationToken,
    ) -> Result<CommandResult, StepError> {
        self.run_inner(step, exec, Some(until)).await
    }

    async fn run_inner(
        &self,
        step: &str,
        exec: Exec,
        until: Option<&CancellationToken>,
    ) -> Result<CommandResult, StepError> {
        let t0 = Instant::now();
        self.emit(Event::StepStarted {
            host: self.addr().clone(),
            step: step.to_owned(),
        });
        self.log_header(&format!(
            "step {step}: $ {}{}",
            exec.command,
            if exec.root { "  (as root)" } else { "" }
        ));
        let r = async {
            let become_ = self.become_for(exec.root).await?;
            let input = match &exec.stdin {
                Some(b) => Input::Bytes(b.clone()),
                None => Input::None,
            };
            let timeout = exec.timeout.or(self.shared.opts.command_timeout);
            self.exec_raw(
                step,
                &exec.command,
                become_,
                input,
                OutputMode::Lines,
                timeout,
                exec.quiet,
                None,
                until,
            )
            .await
        }
        .await;
        match r {
            Ok(out) => {
                let res = CommandResult {
                    exit_code: out.status.code.map(|c| c as i32),
                    signal: out.status.signal.clone(),
                    duration: out.duration,
                    stdout: lossy(&out.stdout),
                    stderr: lossy(&out.stderr),
                    stderr_tail: out.stderr_tail.clone(),
                };
                let outcome = if res.success() {
                    Outcome::Ok
                } else {
                    failed_outcome(self.addr(), step, &res).outcome()
                };
                self.finish_step(step, t0, outcome);
                Ok(res)
            }
            Err(e) => {
                self.finish_step(step, t0, e.outcome());
                Err(e)
            }
        }
    }

    /// Run a command that must succeed: a non-zero exit is a [`StepError::Failed`] carrying
    /// the last lines of stderr.
    pub async fn check(&self, step: &str, exec: Exec) -> Result<CommandResult, StepError> {
        let res = self.run(step, exec).await?;
        if res.success() {
            Ok(res)
        } else {
            Err(failed_outcome(self.addr(), step, &res))
        }
    }

    /// Upload a file; `dest` is replaced only after the sha256 of what arrived matched.
    pub async fn upload(&self, step: &str, up: &Upload) -> Result<(), StepError> {
        let t0 = Instant::now();
        self.emit(Event::StepStarted {
            host: self.addr().clone(),
            step: step.to_owned(),
        });
        self.log_header(&format!(
            "step {step}: upload {} ({} bytes, sha256 {}) to {}",
            up.source.name, up.source.size, up.source.sha256, up.dest
        ));
        let r = async {
            let become_ = self.become_for(up.root).await?;
            let _permit = tokio::select! {
                p = self.shared.transfer_sem.acquire() => p.map_err(|_| self.stopped(step))?,
                _ = self.stage.stop.cancelled() => return Err(self.stopped(step)),
            };
            let cmd = script::upload(&up.dest, &up.source.sha256, up.mode);
            let input = match &up.source.data {
                SourceData::File(p) => Input::File(p.clone()),
                SourceData::Bytes(b) => Input::Bytes(b.clone()),
            };
            self.emit(Event::Transfer {
                host: self.addr().clone(),
                name: up.source.name.clone(),
                done: 0,
                total: up.source.size,
            });
            let out = self
                .exec_raw(
                    step,
                    &cmd,
                    become_,
                    input,
                    OutputMode::Lines,
                    up.timeout,
                    false,
                    Some((&up.source.name, up.source.size)),
                    None,
                )
                .await?;
            match out.status.code {
                Some(0) => Ok(()),
                Some(EXIT_CHECKSUM) => Err(StepError::Transfer {
                    host: self.addr().clone(),
                    step: step.to_owned(),
                    message: format!(
                        "{} arrived corrupted (sha256 mismatch); {} was left unchanged",
                        up.source.name, up.dest
                    ),
                }),
                _ => Err(StepError::Transfer {
                    host: self.addr().clone(),
                    step: step.to_owned(),
                    message: format!(
                        "cannot write {}: {}{}",
                        up.dest,
                        out.stderr_tail.join("; "),
                        out.stdin_error
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    ),
                }),
            }
        }
        .await;
        self.finish_step(
            step,
            t0,
            match &r {
                Ok(()) => Outcome::Ok,
                Err(e) => e.outcome(),
            },
        );
        r
    }

    /// Download `remote` into `local` (written to a temporary file next to it, checked
    /// against the sha256 computed on the host, fsynced, renamed). Returns the digest.
    pub async fn download(
        &self,
        step: &str,
        remote: &str,
        local: &Path,
        root: bool,
    ) -> Result<Digest, StepError> {
        let t0 = Instant::now();
        self.emit(Event::StepStarted {
            host: self.addr().clone(),
            step: step.to_owned(),
        });
        self.log_header(&format!(
            "step {step}: download {remote} to {}",
            local.display()
        ));
        let r = self.download_inner(step, remote, local, root).await;
        self.finish_step(
            step,
            t0,
            match &r {
                Ok(_) => Outcome::Ok,
                Err(e) => e.outcome(),
            },
        );
        r
    }

    async fn download_inner(
        &self,
        step: &str,
        remote: &str,
        local: &Path,
        root: bool,
    ) -> Result<Digest, StepError> {
        let local_err = |message: String| StepError::Local {
            path: local.to_owned(),
            message,
        };
        let become_ = self.become_for(root).await?;
        let _permit = tokio::select! {
            p = self.shared.transfer_sem.acquire() => p.map_err(|_| self.stopped(step))?,
            _ = self.stage.stop.cancelled() => return Err(self.stopped(step)),
        };
        let dir = local
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| local_err(format!("cannot create directory: {e}")))?;
        let name = local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tarmac-tmp.{}", std::process::id()));
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| local_err(format!("cannot create file: {e}")))?;
        let (writer, state) = HashingWriter::new(file);
        let cmd = script::download(remote);
        let result = self
            .exec_raw(
                step,
                &cmd,
                become_,
                Input::Bytes(Bytes::new()),
                OutputMode::Raw(Box::pin(writer)),
                None,
                true,
                None,
                None,
            )
            .await;
        let cleanup = || {
            let _ = std::fs::remove_file(&tmp);
        };
        let out = match result {
            Ok(o) => o,
            Err(e) => {
                cleanup();
                return Err(e);
            }
        };
        let (digest, size) = state.finish();
        if out.status.code != Some(0) {
            cleanup();
            return Err(StepError::Transfer {
                host: self.addr().clone(),
                step: step.to_owned(),
                message: format!("cannot read {remote}: {}", out.stderr_tail.join("; ")),
            });
        }
        if let Some(e) = out
            .stdin_error
            .filter(|e| e.starts_with("writing the local file"))
        {
            cleanup();
            return Err(local_err(e));
        }
        if out.sha256.as_deref() != Some(digest.hex().as_str()) {
            cleanup();
            return Err(StepError::Transfer {
                host: self.addr().clone(),
                step: step.to_owned(),
                message: format!(
                    "{remote} arrived corrupted or changed while being read (host sha256 {}, received {} bytes with sha256 {digest})",
                    out.sha256.as_deref().unwrap_or("missing"),
                    size
                ),
            });
        }
        if let Ok(f) = tokio::fs::File::open(&tmp).await {
            let _ = f.sync_all().await;
        }
        tokio::fs::rename(&tmp, local).await.map_err(|e| {
            cleanup();
            local_err(format!("cannot rename into place: {e}"))
        })?;
        self.emit(Event::Transfer {
            host: self.addr().clone(),
            name: name.clone(),
            done: size,
            total: size,
        });
        Ok(digest)
    }
}

fn failed_outcome(host: &HostAddr, step: &str, res: &CommandResult) -> StepError {
    let tail: Vec<&str> = res
        .stderr_tail
        .iter()
        .rev()
        .take(5)
        .rev()
        .map(String::as_str)
        .collect();
    StepError::Failed {
        host: host.clone(),
        step: step.to_owned(),
        exit_code: res.exit_code,
        signal: res.signal.clone(),
        detail: if tail.is_empty() {
            String::new()
        } else {
            format!("\n{}", tail.join("\n"))
        },
    }
}

fn sudo_error(host: &HostAddr, user: &str, out: &RunOutput) -> StepError {
    let err = out.stderr_tail.join("\n");
    let hint = if err.contains("password is required") {
        Some(format!(
            "allow passwordless sudo for {user} on the host, or give the sudo password (tarmac exec --ask-become-pass, or TARMAC_BECOME_PASSWORD)"
        ))
    } else if err.contains("tty") {
        Some("sudo on this host requires a terminal (Defaults requiretty); remove requiretty for this user".to_owned())
    } else if out.status.code == Some(127) || err.contains("not found") {
        Some(format!(
            "install sudo on the host or log in as root (ssh_user: root) instead of {user}"
        ))
    } else {
        None
    };
    StepError::Sudo {
        host: host.clone(),
        message: if err.is_empty() {
            format!("exit code {:?}", out.status.code)
        } else {
            err
        },
        hint,
    }
}

/// Hashes what passes through it into a shared state readable after the writer is gone.
struct HashingWriter<W> {
    inner: W,
    state: Arc<std::sync::Mutex<(Sha256, u64)>>,
}

struct HashState(Arc<std::sync::Mutex<(Sha256, u64)>>);

impl HashState {
    fn finish(&self) -> (Digest, u64) {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (Digest(g.0.clone().finalize().into()), g.1)
    }
}

impl<W> HashingWriter<W> {
    fn new(inner: W) -> (Self, HashState) {
        let state = Arc::new(std::sync::Mutex::new((Sha256::new(), 0)));
        (
            HashingWriter {
                inner,
                state: state.clone(),
            },
            HashState(state),
        )
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for HashingWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                let mut g = this.state.lock().unwrap_or_else(|e| e.into_inner());
                g.0.update(&buf[..n]);
                g.1 += n as u64;
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
