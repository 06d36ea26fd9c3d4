//! The engine over `LocalHost`: real processes, the real wrappers, deadlines and transfers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tarmac_events::{Event, EventSink, Outcome, Stream, VecSink};
use tarmac_ssh::run::{self, Input, Observer, OutputMode, RunSpec};
use tarmac_ssh::script::{self, Become};
use tarmac_ssh::{
    Exec, Fleet, FleetContext, Host, LocalHost, LogDir, SshOptions, StageOptions, StepError,
    Target, Upload, UploadSource,
};
use tarmac_types::{Digest, Stage};
use tokio_util::sync::CancellationToken;

fn targets(n: usize) -> Vec<Target> {
    (1..=n)
        .map(|i| format!("127.0.0.{i}").parse().unwrap())
        .collect()
}

fn fleet(n: usize, logs: &Path) -> (Fleet, VecSink) {
    let sink = VecSink::new();
    let ctx = FleetContext::new(Arc::new(sink.clone()))
        .with_log_dir(LogDir::new(logs))
        .with_run_id("t1");
    (Fleet::local(targets(n), SshOptions::default(), ctx), sink)
}

fn pid_alive(pid: i32) -> bool {
    // A zombie is gone for our purposes.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.split_whitespace().nth(2).is_none_or(|st| st != "Z"),
        Err(_) => false,
    }
}

async fn wait_gone(pid: i32) -> bool {
    for _ in 0..100 {
        if !pid_alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn runs_on_every_host_with_events_and_logs() {
    let logs = tempfile::tempdir().unwrap();
    let (fleet, sink) = fleet(5, logs.path());
    let report = fleet
        .run_all(Stage::Exec, StageOptions::default(), |h| async move {
            let r = h
                .check(
                    "hello",
                    Exec::new("echo hello; echo oops >&2; printf 'no newline'"),
                )
                .await?;
            assert_eq!(r.stdout, "hello\nno newline");
            assert_eq!(r.stderr, "oops\n");
            assert_eq!(r.exit_code, Some(0));
            Ok(Outcome::Ok)
        })
        .await;
    assert_eq!(report.summary.ok, 5, "{report:?}");
    assert_eq!(report.hosts[0].target.addr.to_string(), "127.0.0.1");
    let events = sink.events();
    let outputs: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Output {
                host,
                step,
                stream,
                line,
            } if host.to_string() == "127.0.0.3" => Some((step.clone(), *stream, line.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(outputs.len(), 3);
    assert!(outputs.contains(&("hello".into(), Stream::Stdout, "hello".into())));
    assert!(outputs.contains(&("hello".into(), Stream::Stderr, "oops".into())));
    assert!(outputs.contains(&("hello".into(), Stream::Stdout, "no newline".into())));
    assert!(matches!(events.first(), Some(Event::StageStarted { hosts, .. }) if hosts.len() == 5));
    assert!(matches!(events.last(), Some(Event::StageFinished { summary, .. }) if summary.ok == 5));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(
                e,
                Event::HostFinished {
                    outcome: Outcome::Ok,
                    ..
                }
            ))
            .count(),
        5
    );
    let log = std::fs::read_to_string(logs.path().join("exec/127.0.0.2.log")).unwrap();
    assert!(
        log.contains("step hello: $ echo hello; echo oops >&2; printf 'no newline'"),
        "{log}"
    );
    assert!(
        log.contains("out| hello\n") && log.contains("err| oops\n"),
        "{log}"
    );
    assert!(log.contains("== host finished: ok"), "{log}");
    // The pgid marker is consumed, never shown.
    assert!(!log.contains("tarmac-pgid"), "{log}");
}

#[tokio::test]
async fn a_failing_host_does_not_sink_the_others() {
    let logs = tempfile::tempdir().unwrap();
    let (fleet, _sink) = fleet(4, logs.path());
    let report = fleet
        .run_all(Stage::Exec, StageOptions::default(), |h| async move {
            let code = if h.addr().host() == "127.0.0.2" { 3 } else { 0 };
            h.check("maybe", Exec::new(format!("echo bad >&2; exit {code}")))
                .await?;
            Ok(Outcome::Ok)
        })
        .await;
    assert_eq!((report.summary.ok, report.summary.failed), (3, 1));
    match &report.hosts[1].outcome {
        Outcome::Failed {
            exit_code, message, ..
        } => {
            assert_eq!(*exit_code, Some(3));
            assert_eq!(message, "`maybe` failed on 127.0.0.2: exit code 3\nbad");
        }
        o => panic!("{o:?}"),
    }
}

#[tokio::test]
async fn a_timed_out_command_is_ended_with_its_children() {
    let logs = tempfile::tempdir().unwrap();
    let (fleet, _sink) = fleet(1, logs.path());
    let pidfile = logs.path().join("child.pid");
    let cmd = format!(
        "sleep 300 & echo $! > {}; trap '' TERM; wait",
        pidfile.display()
    );
    let s = fleet
        .session("exec", &"127.0.0.1".parse().unwrap())
        .unwrap();
    let err = s
        .run("sleepy", Exec::new(cmd).timeout(Duration::from_millis(500)))
        .await
        .unwrap_err();
    assert!(matches!(err, StepError::TimedOut { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "`sleepy` on 127.0.0.1 timed out after 0.5s; its processes were ended"
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        wait_gone(pid).await,
        "child {pid} of the timed-out command survived"
    );
}

#[tokio::test]
async fn stage_deadline_and_cancellation() {
    let logs = tempfile::tempdir().unwrap();
    let (fleet, _sink) = fleet(3, logs.path());
    let report = fleet
        .run_all(
            Stage::Exec,
            StageOptions {
                deadline: Some(Duration::from_millis(700)),
                ..Default::default()
            },
            |h| async move {
                if h.addr().host() != "127.0.0.1" {
                    h.check("slow", Exec::new("sleep 60")).await?;
                }
                Ok(Outcome::Ok)
            },
        )
        .await;
    assert_eq!(
        (report.summary.ok, report.summary.timed_out),
        (1, 2),
        "{report:?}"
    );

    let token = CancellationToken::new();
    let sink = VecSink::new();
    let ctx = FleetContext::new(Arc::new(sink.clone())).with_cancel(token.clone());
    let fleet = Fleet::local(targets(3), SshOptions::default(), ctx);
    let t2 = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        t2.cancel();
    });
    let report = fleet
        .run_all(Stage::Exec, StageOptions::default(), |h| async move {
            h.check("first", Exec::new("sleep 60")).await?;
            h.check("never", Exec::new("true")).await?;
            Ok(Outcome::Ok)
        })
        .await;
    assert_eq!(report.summary.cancelled, 3, "{report:?}");
    // Nothing was started after the cancellation.
    assert!(
        !sink
            .events()
            .iter()
            .any(|e| matches!(e, Event::StepStarted { step, .. } if step == "never"))
    );
}

#[tokio::test]
async fn uploads_are_atomic_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (fleet, sink) = fleet(3, &dir.path().join("logs"));
    let src = dir.path().join("payload.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let source = UploadSource::file(&src).unwrap();
    assert_eq!(source.sha256, Digest::of(&data));
    let root = dir.path().to_owned();
    let report = fleet
        .run_all(Stage::Deploy, StageOptions::default(), |h| {
            let source = source.clone();
            let root = root.clone();
            async move {
                let dest = root.join(format!("out/{}/payload.bin", h.addr().host()));
                h.upload(
                    "put",
                    &Upload::new(source, dest.to_str().unwrap()).mode(0o600),
                )
                .await?;
                Ok(Outcome::Ok)
            }
        })
        .await;
    assert_eq!(report.summary.ok, 3, "{report:?}");
    for t in targets(3) {
        let p = dir
            .path()
            .join(format!("out/{}/payload.bin", t.addr.host()));
        assert_eq!(std::fs::read(&p).unwrap(), data);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let leftovers: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary files left behind");
    }
    let last = sink
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Transfer { done, total, .. } => Some((done, total)),
            _ => None,
        })
        .next_back()
        .unwrap();
    assert_eq!(last, (data.len() as u64, data.len() as u64));

    // Bytes that do not match the announced sha256 never replace the destination.
    let dest = dir.path().join("keep.txt");
    std::fs::write(&dest, "original").unwrap();
    let host = LocalHost::new("127.0.0.1".parse().unwrap());
    let cmd = script::upload(
        dest.to_str().unwrap(),
        &Digest::of(b"something else"),
        0o644,
    );
    let stop = CancellationToken::new();
    let out = run::run(
        &host,
        RunSpec {
            command: &cmd,
            become_: Become::No,
            password: None,
            input: Input::Bytes("tampered".into()),
            output: OutputMode::Lines,
            timeout: Some(Duration::from_secs(10)),
            stop: &stop,
            stop_deadline: None,
            kill_grace: Duration::from_secs(1),
        },
        &Quiet,
    )
    .await
    .unwrap();
    assert_eq!(out.status.code, Some(script::EXIT_CHECKSUM));
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "original");
    assert_eq!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("tarmac-tmp"))
            .count(),
        0
    );
}

struct Quiet;
impl Observer for Quiet {
    fn line(&self, _: Stream, _: &str) {}
}

#[tokio::test]
async fn downloads_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (fleet, _sink) = fleet(1, &dir.path().join("logs"));
    let remote = dir.path().join("remote.log");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 256) as u8).collect();
    std::fs::write(&remote, &data).unwrap();
    let s = fleet
        .session("status", &"127.0.0.1".parse().unwrap())
        .unwrap();
    let local = dir.path().join("got/remote.log");
    let d = s
        .download("fetch", remote.to_str().unwrap(), &local, false)
        .await
        .unwrap();
    assert_eq!(d, Digest::of(&data));
    assert_eq!(std::fs::read(&local).unwrap(), data);
    let err = s
        .download("fetch", "/nonexistent/file", &dir.path().join("x"), false)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("cannot read /nonexistent/file"),
        "{err}"
    );
    assert!(!dir.path().join("x").exists());
}

/// When the channel goes away while the command runs (controller killed, connection lost),
/// the wrapper's watcher ends the command's process group.
#[tokio::test]
async fn a_lost_channel_ends_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let host = LocalHost::new("127.0.0.1".parse().unwrap());
    let line = script::wrap(
        &format!("sleep 300 & echo $! > {}; wait", pidfile.display()),
        Become::No,
        true,
    );
    let mut proc = host.spawn(&line).await.unwrap();
    // Wait for the marker: the wrapper is running.
    let mut pgid = None;
    while pgid.is_none() {
        match proc.events.next().await.unwrap() {
            tarmac_ssh::ProcEvent::Stderr(b) => {
                let s = String::from_utf8_lossy(&b).into_owned();
                pgid = s
                    .strip_prefix(script::PGID_MARKER)
                    .map(|p| p.split_whitespace().next().unwrap().parse::<i32>().unwrap());
            }
            e => panic!("unexpected {e:?}"),
        }
    }
    for _ in 0..100 {
        if pidfile.exists() && !std::fs::read_to_string(&pidfile).unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let child: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid_alive(child));
    drop(proc.stdin); // the channel closes
    assert!(wait_gone(child).await, "the command outlived its channel");
    assert!(pgid.is_some());
    // A finished command's leftovers are not touched by the watcher (only a lost channel ends things).
    let line = script::wrap(
        &format!(
            "setsid sleep 5 >/dev/null 2>&1 & echo $! > {}",
            pidfile.display()
        ),
        Become::No,
        true,
    );
    let proc = host.spawn(&line).await.unwrap();
    let mut events = proc.events;
    while events.next().await.is_some() {}
    drop(proc.stdin);
    let daemon: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        pid_alive(daemon),
        "a detached process of a finished command was killed"
    );
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(daemon).unwrap(),
        rustix::process::Signal::KILL,
    );
}

#[tokio::test]
async fn stdin_and_exit_signal() {
    let logs = tempfile::tempdir().unwrap();
    let (fleet, _sink) = fleet(1, logs.path());
    let s = fleet
        .session("exec", &"127.0.0.1".parse().unwrap())
        .unwrap();
    let r = s
        .run("cat", Exec::new("tr a-z A-Z").stdin("hello\n"))
        .await
        .unwrap();
    assert_eq!(r.stdout, "HELLO\n");
    let r = s.run("selfkill", Exec::new("kill -KILL $$")).await.unwrap();
    assert_eq!((r.exit_code, r.signal.as_deref()), (None, Some("KILL")));
    assert!(!r.success());
}

#[test]
fn sink_is_object_safe() {
    let s: Arc<dyn EventSink> = Arc::new(VecSink::new());
    s.emit(Event::Notice {
        level: tarmac_events::Level::Info,
        message: "x".into(),
    });
}

/// A transport over `LocalHost` that counts the connections open at once.
struct Counting {
    open: Arc<std::sync::atomic::AtomicUsize>,
    peak: Arc<std::sync::atomic::AtomicUsize>,
    opened: Arc<std::sync::atomic::AtomicUsize>,
}

struct CountedHost {
    inner: LocalHost,
    open: Arc<std::sync::atomic::AtomicUsize>,
    closed: std::sync::atomic::AtomicBool,
}

impl Host for CountedHost {
    fn addr(&self) -> &tarmac_types::HostAddr {
        self.inner.addr()
    }
    fn user(&self) -> &str {
        self.inner.user()
    }
    fn spawn<'a>(
        &'a self,
        command_line: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<tarmac_ssh::Process, tarmac_ssh::TransportError>>
    {
        self.inner.spawn(command_line)
    }
    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn close(&self) -> futures::future::BoxFuture<'_, ()> {
        use futures::FutureExt;
        async move {
            if !self.closed.swap(true, std::sync::atomic::Ordering::SeqCst) {
                self.open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        .boxed()
    }
}

impl tarmac_ssh::Transport for Counting {
    fn open<'a>(
        &'a self,
        target: &'a Target,
        _opts: &'a SshOptions,
    ) -> futures::future::BoxFuture<'a, Result<Arc<dyn Host>, tarmac_ssh::ConnectError>> {
        use futures::FutureExt;
        use std::sync::atomic::Ordering::SeqCst;
        async move {
            let now = self.open.fetch_add(1, SeqCst) + 1;
            self.peak.fetch_max(now, SeqCst);
            self.opened.fetch_add(1, SeqCst);
            Ok(Arc::new(CountedHost {
                inner: LocalHost::new(target.addr.clone()),
                open: self.open.clone(),
                closed: false.into(),
            }) as Arc<dyn Host>)
        }
        .boxed()
    }
}

fn counting_fleet(n: usize, open: usize, logs: &Path) -> (Fleet, Arc<Counting>) {
    let t = Arc::new(Counting {
        open: Arc::default(),
        peak: Arc::default(),
        opened: Arc::default(),
    });
    let ctx = FleetContext::new(Arc::new(VecSink::new()))
        .with_log_dir(LogDir::new(logs))
        .with_run_id("t-open");
    let opts = SshOptions {
        limits: tarmac_ssh::Limits {
            open,
            ..tarmac_ssh::Limits::parallel(open)
        },
        ..SshOptions::default()
    };
    (Fleet::with_transport(targets(n), opts, ctx, t.clone()), t)
}

/// More hosts than `Limits::open`: every host still runs, but never more connections are
/// open at once than the limit, and none is left open.
#[tokio::test]
async fn open_connections_stay_within_the_limit() {
    use std::sync::atomic::Ordering::SeqCst;
    let logs = tempfile::tempdir().unwrap();
    let (fleet, t) = counting_fleet(40, 3, logs.path());
    let report = fleet
        .run_all(Stage::Exec, StageOptions::default(), |h| async move {
            h.check("work", Exec::new("sleep 0.02")).await?;
            Ok(Outcome::Ok)
        })
        .await;
    assert_eq!(report.summary.ok, 40, "{report:?}");
    assert!(t.peak.load(SeqCst) <= 3, "peak {}", t.peak.load(SeqCst));
    assert_eq!(t.opened.load(SeqCst), 40);
    assert_eq!(t.open.load(SeqCst), 0, "connections left open");
}

/// Within the limit, connections stay open for the next stage unless `release` is asked;
/// with `release` each is closed when its host is done, and a later stage reconnects.
#[tokio::test]
async fn release_frees_connections_and_later_stages_reconnect() {
    use std::sync::atomic::Ordering::SeqCst;
    let logs = tempfile::tempdir().unwrap();
    let (fleet, t) = counting_fleet(5, 100, logs.path());
    let job = |h: tarmac_ssh::HostSession| async move {
        h.check("work", Exec::new("true")).await?;
        Ok(Outcome::Ok)
    };
    let r = fleet
        .run_all(Stage::Exec, StageOptions::default(), job)
        .await;
    assert_eq!(r.summary.ok, 5);
    assert_eq!(
        (t.open.load(SeqCst), t.opened.load(SeqCst)),
        (5, 5),
        "kept for reuse"
    );
    let r = fleet
        .run_all(Stage::Exec, StageOptions::default(), job)
        .await;
    assert_eq!(r.summary.ok, 5);
    assert_eq!(t.opened.load(SeqCst), 5, "the second stage reused them");
    let release = StageOptions {
        release: true,
        ..Default::default()
    };
    let r = fleet.run_all(Stage::Exec, release.clone(), job).await;
    assert_eq!(r.summary.ok, 5);
    assert_eq!(t.open.load(SeqCst), 0, "released when done");
    let r = fleet.run_all(Stage::Exec, release, job).await;
    assert_eq!(r.summary.ok, 5);
    assert_eq!(t.opened.load(SeqCst), 10, "reconnected after release");
    fleet.close().await;
    assert_eq!(t.open.load(SeqCst), 0);
}
