//! `LocalHost`: runs processes on this machine with `/bin/sh -c`, each in its own process
//! group like sshd's sessions, so the same wrappers, deadlines and transfers are exercised
//! without SSH.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tarmac_types::HostAddr;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::host::{ExitStatus, Host, ProcControl, ProcEvent, Process, TransportError};

/// This machine, presented as a host with the given address.
pub struct LocalHost {
    addr: HostAddr,
    user: String,
}

impl LocalHost {
    pub fn new(addr: HostAddr) -> Self {
        let user = if rustix::process::geteuid().is_root() {
            "root".to_owned()
        } else {
            std::env::var("USER").unwrap_or_else(|_| "nobody".into())
        };
        Self { addr, user }
    }
}

/// `TERM` → `SIGTERM`-number and back.
pub(crate) fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "HUP",
        libc::SIGINT => "INT",
        libc::SIGQUIT => "QUIT",
        libc::SIGILL => "ILL",
        libc::SIGABRT => "ABRT",
        libc::SIGKILL => "KILL",
        libc::SIGSEGV => "SEGV",
        libc::SIGPIPE => "PIPE",
        libc::SIGALRM => "ALRM",
        libc::SIGTERM => "TERM",
        libc::SIGUSR1 => "USR1",
        libc::SIGUSR2 => "USR2",
        libc::SIGBUS => "BUS",
        other => return format!("{other}"),
    };
    name.to_owned()
}

fn signal_number(name: &str) -> Option<rustix::process::Signal> {
    use rustix::process::Signal;
    Some(match name {
        "HUP" => Signal::HUP,
        "INT" => Signal::INT,
        "KILL" => Signal::KILL,
        "TERM" => Signal::TERM,
        "USR1" => Signal::USR1,
        "USR2" => Signal::USR2,
        _ => return None,
    })
}

/// A child's stdin whose `shutdown` closes the pipe (tokio's only flushes).
struct PipeIn(Option<tokio::process::ChildStdin>);

impl tokio::io::AsyncWrite for PipeIn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.0.as_mut() {
            Some(w) => std::pin::Pin::new(w).poll_write(cx, buf),
            None => std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
        }
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(w) => std::pin::Pin::new(w).poll_flush(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.0 = None;
        std::task::Poll::Ready(Ok(()))
    }
}

struct LocalControl {
    pid: Option<u32>,
}

impl ProcControl for LocalControl {
    fn signal<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ()> {
        async move {
            if let (Some(pid), Some(sig)) = (self.pid, signal_number(name))
                && let Some(pid) = rustix::process::Pid::from_raw(pid as i32)
            {
                let _ = rustix::process::kill_process(pid, sig);
            }
        }
        .boxed()
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }
}

impl Host for LocalHost {
    fn addr(&self) -> &HostAddr {
        &self.addr
    }

    fn user(&self) -> &str {
        &self.user
    }

    fn spawn<'a>(
        &'a self,
        command_line: &'a str,
    ) -> BoxFuture<'a, Result<Process, TransportError>> {
        async move {
            let mut child = Command::new("/bin/sh")
                .arg("-c")
                .arg(command_line)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .spawn()
                .map_err(|e| TransportError {
                    message: format!("cannot start /bin/sh: {e}"),
                    connection_lost: false,
                })?;
            let pid = child.id();
            let stdin = child.stdin.take().expect("piped stdin");
            let mut out = child.stdout.take().expect("piped stdout");
            let mut err = child.stderr.take().expect("piped stderr");
            let (tx, rx) = mpsc::channel::<ProcEvent>(64);
            tokio::spawn(async move {
                let tx2 = tx.clone();
                let read_out = async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    while let Ok(n) = out.read(&mut buf).await {
                        if n == 0
                            || tx2
                                .send(ProcEvent::Stdout(Bytes::copy_from_slice(&buf[..n])))
                                .await
                                .is_err()
                        {
                            break;
                        }
                    }
                };
                let tx3 = tx.clone();
                let read_err = async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    while let Ok(n) = err.read(&mut buf).await {
                        if n == 0
                            || tx3
                                .send(ProcEvent::Stderr(Bytes::copy_from_slice(&buf[..n])))
                                .await
                                .is_err()
                        {
                            break;
                        }
                    }
                };
                tokio::join!(read_out, read_err);
                let status = match child.wait().await {
                    Ok(st) => ExitStatus {
                        code: st.code().map(|c| c as u32),
                        signal: st.signal().map(signal_name),
                    },
                    Err(_) => ExitStatus::default(),
                };
                let _ = tx.send(ProcEvent::Exit(status)).await;
            });
            let events =
                futures::stream::unfold(
                    rx,
                    |mut rx| async move { rx.recv().await.map(|e| (e, rx)) },
                )
                .boxed();
            Ok(Process {
                stdin: Box::pin(PipeIn(Some(stdin))),
                events,
                control: Box::new(LocalControl { pid }),
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
