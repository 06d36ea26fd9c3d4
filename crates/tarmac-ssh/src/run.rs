//! Running one wrapped command on a host: stdin feeding, output line splitting, markers,
//! deadlines and ending the remote process group.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use tarmac_events::Stream;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::host::{ExitStatus, Host, ProcEvent, TransportError};
use crate::options::Secret;
use crate::script::{self, Become, PGID_MARKER, SHA_MARKER};

/// Longest line passed on as one event; longer lines are split.
pub const MAX_LINE: usize = 16 * 1024;
/// Bytes of stdout/stderr kept in a [`RunOutput`].
pub const CAPTURE_LIMIT: usize = 1024 * 1024;
/// Lines of stderr kept for error messages.
const STDERR_TAIL: usize = 20;

/// What goes to the command's stdin.
pub enum Input {
    /// Nothing: stdin stays open (and unused) so the wrapper's watcher notices a lost channel.
    None,
    Bytes(Bytes),
    /// The file's bytes, streamed, with progress reports.
    File(PathBuf),
}

/// Where stdout goes.
pub enum OutputMode {
    Lines,
    /// Raw bytes into a writer (downloads).
    Raw(Pin<Box<dyn AsyncWrite + Send>>),
}

/// Receives what a command prints and how far stdin got.
pub trait Observer: Send + Sync {
    fn line(&self, stream: Stream, line: &str);
    fn progress(&self, _sent: u64) {}
}

/// Why waiting for a command stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Exited,
    TimedOut(Duration),
    Cancelled,
    ConnectionLost(String),
    SudoRejected,
}

#[derive(Debug, Clone)]
pub struct RunOutput {
    pub status: ExitStatus,
    pub ended: Ended,
    pub duration: Duration,
    pub pgid: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_tail: Vec<String>,
    /// The sha256 marker a download printed.
    pub sha256: Option<String>,
    /// Stdin could not be fully written (the command stopped reading).
    pub stdin_error: Option<String>,
}

/// One command to run.
pub struct RunSpec<'a> {
    pub command: &'a str,
    pub become_: Become,
    pub password: Option<&'a Secret>,
    pub input: Input,
    pub output: OutputMode,
    pub timeout: Option<Duration>,
    /// Stops the command (Ctrl-C, failure budget, stage deadline).
    pub stop: &'a CancellationToken,
    /// When `stop` fires after this instant, the command counts as timed out, not cancelled.
    pub stop_deadline: Option<Instant>,
    pub kill_grace: Duration,
}

struct Lines {
    buf: Vec<u8>,
}

impl Lines {
    fn new() -> Self {
        Lines { buf: Vec::new() }
    }

    /// Feed bytes; return complete lines (without `\n` / `\r\n`).
    fn push(&mut self, data: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in data {
            if b == b'\n' {
                out.push(take_line(&mut self.buf));
            } else {
                self.buf.push(b);
                if self.buf.len() >= MAX_LINE {
                    out.push(take_line(&mut self.buf));
                }
            }
        }
        out
    }

    fn finish(&mut self) -> Option<String> {
        if self.buf.is_empty() {
            None
        } else {
            Some(take_line(&mut self.buf))
        }
    }
}

fn take_line(buf: &mut Vec<u8>) -> String {
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    let s = String::from_utf8_lossy(buf).into_owned();
    buf.clear();
    s
}

struct Collector<'a> {
    observer: &'a dyn Observer,
    become_: Become,
    out_lines: Lines,
    err_lines: Lines,
    pgid: Option<u32>,
    pid: Option<u32>,
    sha256: Option<String>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stdout_truncated: bool,
    tail: VecDeque<String>,
    sudo_rejected: bool,
}

impl Collector<'_> {
    fn stdout_lines(&mut self, data: &[u8]) {
        keep(&mut self.stdout, data, &mut self.stdout_truncated);
        for l in self.out_lines.push(data) {
            self.observer.line(Stream::Stdout, &l);
        }
    }

    fn stderr_bytes(&mut self, data: &[u8]) {
        let lines = self.err_lines.push(data);
        for l in lines {
            self.stderr_line(l);
        }
    }

    fn stderr_line(&mut self, l: String) {
        if self.pgid.is_none() {
            if let Some(n) = l.strip_prefix(PGID_MARKER) {
                let mut it = n.split_whitespace().map(|x| x.parse::<u32>().ok());
                self.pgid = it.next().flatten();
                self.pid = it.next().flatten().or(self.pgid);
                return;
            }
            if self.become_ == Become::SudoPassword
                && (l.contains("Sorry, try again") || l.contains("incorrect password"))
            {
                self.sudo_rejected = true;
            }
        }
        if let Some(s) = l.strip_prefix(SHA_MARKER) {
            self.sha256 = Some(s.trim().to_owned());
            return;
        }
        let mut dummy = false;
        keep(&mut self.stderr, l.as_bytes(), &mut dummy);
        keep(&mut self.stderr, b"\n", &mut dummy);
        if self.tail.len() == STDERR_TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(l.clone());
        self.observer.line(Stream::Stderr, &l);
    }

    fn flush(&mut self) {
        if let Some(l) = self.out_lines.finish() {
            self.observer.line(Stream::Stdout, &l);
        }
        if let Some(l) = self.err_lines.finish() {
            self.stderr_line(l);
        }
    }
}

fn keep(buf: &mut Vec<u8>, data: &[u8], truncated: &mut bool) {
    let room = CAPTURE_LIMIT.saturating_sub(buf.len());
    if data.len() > room {
        *truncated = true;
    }
    buf.extend_from_slice(&data[..data.len().min(room)]);
}

async fn feed(
    mut stdin: Pin<Box<dyn AsyncWrite + Send>>,
    password: Option<String>,
    input: Input,
    observer: &dyn Observer,
) -> (Pin<Box<dyn AsyncWrite + Send>>, Option<String>) {
    let res: std::io::Result<()> = async {
        if let Some(p) = password {
            stdin.write_all(format!("{p}\n").as_bytes()).await?;
            stdin.flush().await?;
        }
        match input {
            Input::None => return Ok(()),
            Input::Bytes(b) => {
                stdin.write_all(&b).await?;
                observer.progress(b.len() as u64);
            }
            Input::File(path) => {
                let mut f = tokio::fs::File::open(&path).await?;
                let mut buf = vec![0u8; 256 * 1024];
                let mut sent = 0u64;
                let mut last_report = Instant::now();
                loop {
                    let n = f.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    stdin.write_all(&buf[..n]).await?;
                    sent += n as u64;
                    if last_report.elapsed() >= Duration::from_millis(250) {
                        observer.progress(sent);
                        last_report = Instant::now();
                    }
                }
                observer.progress(sent);
            }
        }
        stdin.flush().await?;
        stdin.shutdown().await?;
        Ok(())
    }
    .await;
    (stdin, res.err().map(|e| e.to_string()))
}

/// Run `spec` on `host`. Returns `Err` only when the process could not be started.
pub async fn run(
    host: &dyn Host,
    spec: RunSpec<'_>,
    observer: &dyn Observer,
) -> Result<RunOutput, TransportError> {
    let started = Instant::now();
    let watch = matches!(spec.input, Input::None) && matches!(spec.output, OutputMode::Lines);
    let line = script::wrap(spec.command, spec.become_, watch);
    let proc = host.spawn(&line).await?;
    let mut events = proc.events;
    let control = proc.control;
    let password = if spec.become_.needs_password_line() {
        spec.password.map(|p| p.expose().to_owned())
    } else {
        None
    };
    let mut feeding = Box::pin(feed(proc.stdin, password, spec.input, observer));
    let mut held_stdin = None;
    let mut stdin_error = None;
    let mut raw_out = match spec.output {
        OutputMode::Raw(w) => Some(w),
        OutputMode::Lines => None,
    };
    let mut c = Collector {
        observer,
        become_: spec.become_,
        out_lines: Lines::new(),
        err_lines: Lines::new(),
        pgid: None,
        pid: None,
        sha256: None,
        stdout: Vec::new(),
        stderr: Vec::new(),
        stdout_truncated: false,
        tail: VecDeque::new(),
        sudo_rejected: false,
    };
    let deadline = spec
        .timeout
        .map(|t| tokio::time::Instant::from_std(started + t));
    let mut status = None;
    let mut ended = None;
    let mut raw_error = None;
    loop {
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = spec.stop.cancelled() => {
                ended = Some(match spec.stop_deadline {
                    Some(d) if Instant::now() >= d => Ended::TimedOut(started.elapsed()),
                    _ => Ended::Cancelled,
                });
                break;
            }
            _ = timer => {
                ended = Some(Ended::TimedOut(spec.timeout.unwrap_or_default()));
                break;
            }
            (w, err) = &mut feeding, if held_stdin.is_none() && stdin_error.is_none() => {
                held_stdin = Some(w);
                if err.is_some() { stdin_error = err; }
            }
            ev = events.next() => match ev {
                Some(ProcEvent::Stdout(b)) => match raw_out.as_mut() {
                    Some(w) => {
                        if raw_error.is_none()
                            && let Err(e) = w.write_all(&b).await
                        {
                            raw_error = Some(e.to_string());
                        }
                    }
                    None => c.stdout_lines(&b),
                },
                Some(ProcEvent::Stderr(b)) => {
                    c.stderr_bytes(&b);
                    if c.sudo_rejected {
                        ended = Some(Ended::SudoRejected);
                        break;
                    }
                }
                Some(ProcEvent::Exit(st)) => status = Some(st),
                Some(ProcEvent::Refused) => {
                    ended = Some(Ended::ConnectionLost("the host refused to run the command".into()));
                    break;
                }
                None => break,
            },
        }
    }
    c.flush();

    let ended = match ended {
        Some(e) => {
            // Stop it: signal over the channel, end the process group from a second channel,
            // then close the channel (which also triggers the wrapper's watcher).
            if !matches!(e, Ended::ConnectionLost(_)) {
                control.signal("TERM").await;
                if let (Some(pgid), Some(pid)) = (c.pgid, c.pid) {
                    kill_group(
                        host,
                        pgid,
                        pid,
                        spec.become_,
                        spec.password,
                        spec.kill_grace,
                    )
                    .await;
                }
            }
            control.close().await;
            // Give the channel a moment to report the final status.
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while let Some(ev) = events.next().await {
                    if let ProcEvent::Exit(st) = ev {
                        status = Some(st);
                    }
                }
            })
            .await;
            e
        }
        None if status.is_none() => {
            if host.is_closed() {
                Ended::ConnectionLost("the connection closed before the command finished".into())
            } else {
                Ended::ConnectionLost("the channel closed without an exit status".into())
            }
        }
        None => Ended::Exited,
    };
    if let Some(w) = raw_out.as_mut()
        && let Err(e) = w.flush().await
    {
        raw_error.get_or_insert(e.to_string());
    }
    drop(held_stdin);
    drop(feeding);
    if let Some(e) = raw_error {
        stdin_error.get_or_insert(format!("writing the local file: {e}"));
    }
    Ok(RunOutput {
        status: status.unwrap_or_default(),
        ended,
        duration: started.elapsed(),
        pgid: c.pgid,
        stdout: c.stdout,
        stderr: c.stderr,
        stdout_truncated: c.stdout_truncated,
        stderr_tail: c.tail.into_iter().collect(),
        sha256: c.sha256,
        stdin_error,
    })
}

struct Quiet;
impl Observer for Quiet {
    fn line(&self, _stream: Stream, _line: &str) {}
}

async fn kill_group(
    host: &dyn Host,
    pgid: u32,
    pid: u32,
    become_: Become,
    password: Option<&Secret>,
    grace: Duration,
) {
    let cmd = script::kill_group(pgid, pid, grace);
    let line = script::wrap(&cmd, become_, false);
    let Ok(proc) = host.spawn(&line).await else {
        return;
    };
    let password = if become_.needs_password_line() {
        password.map(|p| p.expose().to_owned())
    } else {
        None
    };
    let mut events = proc.events;
    let (_stdin, _) = feed(proc.stdin, password, Input::Bytes(Bytes::new()), &Quiet).await;
    let _ = tokio::time::timeout(grace + Duration::from_secs(5), async {
        while events.next().await.is_some() {}
    })
    .await;
    proc.control.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_splitting() {
        let mut l = Lines::new();
        assert_eq!(l.push(b"a\r\nb"), vec!["a"]);
        assert_eq!(l.push(b"c\n\n"), vec!["bc", ""]);
        assert_eq!(l.push(b"tail"), Vec::<String>::new());
        assert_eq!(l.finish(), Some("tail".into()));
        assert_eq!(l.finish(), None);
        let long = vec![b'x'; MAX_LINE + 10];
        let out = l.push(&long);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), MAX_LINE);
        assert_eq!(l.finish().unwrap().len(), 10);
        assert_eq!(l.push(&[0xff, b'\n']), vec!["\u{fffd}"]);
    }
}
