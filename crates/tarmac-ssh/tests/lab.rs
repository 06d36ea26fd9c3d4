//! The SSH engine against real lab hosts (systemd containers with sshd, host-key checking on).
//! Needs root; every test brings up its own uniquely named lab and tears it down on drop.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tarmac_events::{Event, Level, Outcome, VecSink};
use tarmac_lab::{Lab, LabGuard, LabSpec, Mode};
use tarmac_ssh::{
    ConnectError, Connector, Exec, Fleet, FleetContext, HostKeyError, HostKeyPolicy, LogDir,
    Secret, SshOptions, StageOptions, StepError, SudoStatus, Target, Upload, UploadSource,
};
use tarmac_types::{Digest, Stage};

fn up(name: &str, masters: usize, agents: usize) -> LabGuard {
    let spec = LabSpec {
        name: name.into(),
        masters,
        agents,
        public_agents: 0,
        mode: Mode::Systemd,
        extra_packages: Vec::new(),
    };
    // A leftover from an earlier, killed run must not get in the way.
    let _ = Lab::down(name);
    LabGuard::new(Lab::up(&spec, &tarmac_events::NullSink).expect("lab up"))
}

fn targets(lab: &Lab) -> Vec<Target> {
    lab.hosts()
        .iter()
        .map(|h| Target::new(h.ip.to_string().parse().unwrap()).with_role(h.role))
        .collect()
}

fn opts(lab: &Lab) -> SshOptions {
    SshOptions {
        identity_files: vec![lab.key_path()],
        use_agent: false,
        known_hosts: vec![lab.known_hosts_path()],
        connect_timeout: Duration::from_secs(5),
        connector: Connector::netns(&lab.ctl_netns()).unwrap(),
        ..SshOptions::default()
    }
}

fn ctx(sink: &VecSink, logs: &std::path::Path) -> FleetContext {
    FleetContext::new(Arc::new(sink.clone())).with_log_dir(LogDir::new(logs))
}

fn ip(lab: &Lab, name: &str) -> String {
    lab.host(name).unwrap().ip.to_string()
}

fn ssh_out(lab: &Lab, host: &str, cmd: &str) -> String {
    let o = lab.ssh(host, cmd).unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// No process of `host` has `needle` in its command line (waits up to 5 s for stragglers).
async fn gone(lab: &Lab, host: &str, needle: &str) -> bool {
    for _ in 0..25 {
        let ps = ssh_out(lab, host, "ps -eo args");
        if !ps.lines().any(|l| l.contains(needle)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_runs_steps_transfers_and_deadlines_on_lab_hosts() {
    let lab = up("sshfleet", 2, 3);
    let logs = tempfile::tempdir().unwrap();
    let sink = VecSink::new();
    let fleet = Fleet::connect(targets(&lab), opts(&lab), ctx(&sink, logs.path()))
        .await
        .unwrap();

    // Several steps per host over one connection: the client port never changes.
    let report = fleet
        .run_all(Stage::Preflight, StageOptions::default(), |h| async move {
            let a = h
                .check("conn-1", Exec::new("echo $SSH_CONNECTION; hostname"))
                .await?;
            let b = h.check("conn-2", Exec::new("echo $SSH_CONNECTION")).await?;
            assert_eq!(
                a.stdout.lines().next(),
                b.stdout.lines().next(),
                "a second connection was opened"
            );
            assert!(
                a.stdout.lines().nth(1).unwrap().contains('-'),
                "{}",
                a.stdout
            );
            Ok(Outcome::Ok)
        })
        .await;
    assert_eq!(report.summary.ok, 5, "{report:?}");
    let names: Vec<String> = sink
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Output { step, line, .. } if step == "conn-1" && !line.contains(' ') => {
                Some(line.clone())
            }
            _ => None,
        })
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(
        names,
        ["agent-1", "agent-2", "agent-3", "master-1", "master-2"]
    );
    let log = std::fs::read_to_string(
        logs.path()
            .join(format!("preflight/{}.log", ip(&lab, "agent-2"))),
    )
    .unwrap();
    assert!(log.contains("out| agent-2"), "{log}");

    // Upload 5 MB to every host; the host's own sha256sum agrees.
    let dir = tempfile::tempdir().unwrap();
    let payload: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let src = dir.path().join("payload.bin");
    std::fs::write(&src, &payload).unwrap();
    let source = UploadSource::file(&src).unwrap();
    let want = Digest::of(&payload).hex();
    let report = fleet
        .run_all(Stage::Deploy, StageOptions::default(), |h| {
            let source = source.clone();
            let want = want.clone();
            async move {
                h.upload("put", &Upload::new(source, "/opt/tarmac/incoming/payload.bin").mode(0o640)).await?;
                let r = h.check("verify", Exec::new("sha256sum /opt/tarmac/incoming/payload.bin; stat -c %a /opt/tarmac/incoming/payload.bin")).await?;
                assert!(r.stdout.starts_with(&want), "{}", r.stdout);
                assert!(r.stdout.ends_with("640\n"), "{}", r.stdout);
                Ok(Outcome::Ok)
            }
        })
        .await;
    assert_eq!(report.summary.ok, 5, "{report:?}");

    // Download.
    let m1: tarmac_types::HostAddr = ip(&lab, "master-1").parse().unwrap();
    let s = fleet.session("status", &m1).unwrap();
    let local = dir.path().join("hostname");
    let d = s
        .download("fetch", "/etc/hostname", &local, false)
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&local).unwrap(), "master-1\n");
    assert_eq!(d, Digest::of(b"master-1\n"));

    // A command past its timeout is ended on the host, children included; the others finish.
    let slow = ip(&lab, "agent-1");
    let report = fleet
        .run_all(Stage::Exec, StageOptions::default(), |h| {
            let slow = slow.clone();
            async move {
                let cmd = if h.addr().host() == slow {
                    "sleep 301 & sleep 302; echo never"
                } else {
                    "true"
                };
                h.check("maybe-slow", Exec::new(cmd).timeout(Duration::from_secs(2)))
                    .await?;
                Ok(Outcome::Ok)
            }
        })
        .await;
    assert_eq!(
        (report.summary.ok, report.summary.timed_out),
        (4, 1),
        "{report:?}"
    );
    assert!(matches!(
        report
            .hosts
            .iter()
            .find(|h| h.target.addr.host() == slow)
            .unwrap()
            .outcome,
        Outcome::TimedOut { .. }
    ));
    assert!(
        gone(&lab, "agent-1", "sleep 30").await,
        "the timed-out command still runs on agent-1"
    );

    // A stage deadline ends every host still working.
    let report = fleet
        .run_all(
            Stage::Exec,
            StageOptions {
                deadline: Some(Duration::from_secs(2)),
                ..Default::default()
            },
            |h| async move {
                h.check("long", Exec::new("sleep 303")).await?;
                Ok(Outcome::Ok)
            },
        )
        .await;
    assert_eq!(report.summary.timed_out, 5, "{report:?}");
    for h in ["master-1", "agent-3"] {
        assert!(
            gone(&lab, h, "sleep 303").await,
            "stage deadline left a process on {h}"
        );
    }

    // If the controller goes away mid-command, the host ends the command by itself.
    let s2 = fleet.session("exec", &m1).unwrap();
    let running = tokio::spawn(async move { s2.run("orphan", Exec::new("sleep 304")).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(ssh_out(&lab, "master-1", "ps -eo args").contains("sleep 304"));
    fleet.close().await;
    let r = running.await.unwrap();
    assert!(matches!(r, Err(StepError::ConnectionLost { .. })), "{r:?}");
    assert!(
        gone(&lab, "master-1", "sleep 304").await,
        "a command outlived its connection"
    );
    drop(lab);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_key_and_unreachable_host_do_not_stop_the_others() {
    let lab = up("sshkeys", 1, 3);
    let dir = tempfile::tempdir().unwrap();
    // agent-1's line carries agent-2's key: to us, agent-1's key has changed.
    let kh = std::fs::read_to_string(lab.known_hosts_path()).unwrap();
    let key_of = |name: &str| {
        kh.lines()
            .find(|l| {
                l.split(',')
                    .nth(1)
                    .unwrap_or("")
                    .starts_with(&format!("{name} "))
            })
            .unwrap()
            .split_once(' ')
            .unwrap()
            .1
            .to_owned()
    };
    let (a1, a2) = (ip(&lab, "agent-1"), ip(&lab, "agent-2"));
    let tampered: String = kh
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{a1},")) {
                format!("{a1},agent-1 {}\n", key_of("agent-2"))
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let kh_path = dir.path().join("known_hosts");
    std::fs::write(&kh_path, &tampered).unwrap();
    // agent-3's link goes down.
    let a3 = lab.host("agent-3").unwrap().clone();
    let st = std::process::Command::new("ip")
        .args(["-n", &lab.host_netns(&a3), "link", "set", "host0", "down"])
        .status()
        .unwrap();
    assert!(st.success());

    let sink = VecSink::new();
    let o = SshOptions {
        known_hosts: vec![kh_path.clone()],
        connect_timeout: Duration::from_secs(3),
        ..opts(&lab)
    };
    let fleet = Fleet::new(targets(&lab), o, ctx(&sink, dir.path())).unwrap();
    let report = fleet
        .run_all(Stage::Exec, StageOptions::default(), |h| async move {
            h.check("hello", Exec::new("true")).await?;
            Ok(Outcome::Ok)
        })
        .await;
    assert_eq!(
        (report.summary.ok, report.summary.unreachable),
        (2, 2),
        "{report:?}"
    );
    let msg = |addr: &str| match &report
        .hosts
        .iter()
        .find(|h| h.target.addr.host() == addr)
        .unwrap()
        .outcome
    {
        Outcome::Unreachable { message } => message.clone(),
        o => panic!("{o:?}"),
    };
    let fp = |key: &str| {
        tarmac_ssh::known_hosts::fingerprint(&russh::keys::PublicKey::from_openssh(key).unwrap())
    };
    let changed = msg(&a1);
    assert!(
        changed.contains(&format!(
            "host key for {a1} has CHANGED: {} (ssh-ed25519) at {}:2 is recorded",
            fp(&key_of("agent-2")),
            kh_path.display()
        )) && changed.contains(&format!(
            "but the host presented {} (ssh-ed25519)",
            fp(&key_of("agent-1"))
        )),
        "{changed}"
    );
    assert!(
        changed.contains(&format!(
            "hint: if {a1} was reinstalled, remove the old key with `ssh-keygen -R {a1} -f"
        )),
        "{changed}"
    );
    let down = msg(&a3.ip.to_string());
    assert!(
        down.contains("no SSH connection to") || down.contains("cannot connect to"),
        "{down}"
    );
    fleet.close().await;

    // accept-new records unknown hosts (atomically) and still refuses the changed key.
    let fresh = dir.path().join("fresh_known_hosts");
    std::fs::write(&fresh, format!("{a1},agent-1 {}\n", key_of("agent-2"))).unwrap();
    let o = SshOptions {
        known_hosts: vec![fresh.clone()],
        host_key_policy: HostKeyPolicy::AcceptNew,
        ..opts(&lab)
    };
    let up_targets: Vec<Target> = targets(&lab)
        .into_iter()
        .filter(|t| t.addr.host() != a3.ip.to_string())
        .collect();
    let fleet = Fleet::new(up_targets.clone(), o, ctx(&sink, dir.path())).unwrap();
    let report = fleet
        .run_all(Stage::Exec, StageOptions::default(), |h| async move {
            h.check("hello", Exec::new("true")).await?;
            Ok(Outcome::Ok)
        })
        .await;
    assert_eq!(
        (report.summary.ok, report.summary.unreachable),
        (2, 1),
        "{report:?}"
    );
    fleet.close().await;
    let recorded = std::fs::read_to_string(&fresh).unwrap();
    assert_eq!(recorded.lines().count(), 3, "{recorded}");
    assert!(
        recorded.contains(&format!("{a2} {}", key_of("agent-2"))),
        "{recorded}"
    );

    // Strict mode now accepts what accept-new recorded, and refuses a host it never saw.
    let o = SshOptions {
        known_hosts: vec![fresh.clone()],
        ..opts(&lab)
    };
    let m1 = ip(&lab, "master-1");
    let fleet = Fleet::new(vec![m1.parse().unwrap()], o.clone(), ctx(&sink, dir.path())).unwrap();
    let s = fleet.session("exec", &m1.parse().unwrap()).unwrap();
    assert!(s.check("ok", Exec::new("true")).await.is_ok());
    fleet.close().await;
    std::fs::write(&fresh, "").unwrap();
    let fleet = Fleet::new(vec![m1.parse().unwrap()], o, ctx(&sink, dir.path())).unwrap();
    let err = fleet
        .session("exec", &m1.parse().unwrap())
        .unwrap()
        .connect()
        .await
        .err()
        .unwrap();
    match err {
        StepError::Unreachable { source, .. } => {
            assert!(
                matches!(*source, ConnectError::HostKey(HostKeyError::Unknown { .. })),
                "{source}"
            );
            assert!(
                source
                    .to_string()
                    .starts_with(&format!("host key for {m1} is not known (SHA256:")),
                "{source}"
            );
        }
        e => panic!("{e:?}"),
    }

    // Policy off: connects, and says so loudly.
    let sink2 = VecSink::new();
    let o = SshOptions {
        known_hosts: vec![dir.path().join("none")],
        host_key_policy: HostKeyPolicy::Off,
        ..opts(&lab)
    };
    let fleet = Fleet::new(vec![m1.parse().unwrap()], o, ctx(&sink2, dir.path())).unwrap();
    assert!(
        fleet
            .session("exec", &m1.parse().unwrap())
            .unwrap()
            .check("ok", Exec::new("true"))
            .await
            .is_ok()
    );
    fleet.close().await;
    assert!(sink2.events().iter().any(|e| matches!(e, Event::Notice { level: Level::Warn, message } if message.starts_with("HOST KEY CHECKING IS OFF"))));
    drop(lab);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jump_host_reaches_hosts_the_controller_cannot() {
    let lab = up("sshjump", 1, 3);
    let ctl_ip = lab.ctl_ip().to_string();
    let bastion = ip(&lab, "master-1");
    // The agents drop everything to the controller: only the bastion is reachable from here.
    for h in ["agent-1", "agent-2", "agent-3"] {
        let host = lab.host(h).unwrap().clone();
        let st = std::process::Command::new("ip")
            .args([
                "-n",
                &lab.host_netns(&host),
                "route",
                "add",
                "blackhole",
                &format!("{ctl_ip}/32"),
            ])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let agents: Vec<Target> = targets(&lab)
        .into_iter()
        .filter(|t| t.addr.host() != bastion)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let sink = VecSink::new();

    let direct = SshOptions {
        connect_timeout: Duration::from_secs(2),
        ..opts(&lab)
    };
    let fleet = Fleet::new(agents.clone(), direct, ctx(&sink, dir.path())).unwrap();
    let report = fleet
        .run_all(Stage::Exec, StageOptions::default(), |h| async move {
            h.check("hello", Exec::new("true")).await?;
            Ok(Outcome::Ok)
        })
        .await;
    assert_eq!(
        report.summary.unreachable, 3,
        "the agents should not be reachable directly: {report:?}"
    );

    let via = SshOptions {
        jump: vec![bastion.parse().unwrap()],
        ..opts(&lab)
    };
    let fleet = Fleet::new(agents, via, ctx(&sink, dir.path())).unwrap();
    let report = fleet
        .run_all(Stage::Exec, StageOptions::default(), |h| async move {
            let r = h
                .check("from", Exec::new("echo ${SSH_CONNECTION%% *}; hostname"))
                .await?;
            Ok(if r.stdout.lines().next() == Some(h.addr().host()) {
                Outcome::Failed {
                    exit_code: None,
                    signal: None,
                    message: "not via bastion".into(),
                }
            } else {
                Outcome::Ok
            })
        })
        .await;
    assert_eq!(report.summary.ok, 3, "{report:?}");
    // All three came through the bastion's address.
    let froms: Vec<String> = sink
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Output { step, line, .. } if step == "from" && line.starts_with("10.") => {
                Some(line.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(froms, vec![bastion.clone(); 3]);
    // One connection to the bastion (from this process) carries them all.
    let ss = std::process::Command::new("ss")
        .args([
            "-N",
            &lab.ctl_netns(),
            "-Htnp",
            "state",
            "established",
            "dst",
            &format!("{bastion}:22"),
        ])
        .output()
        .unwrap();
    let ss = String::from_utf8_lossy(&ss.stdout).into_owned();
    let me = format!("pid={},", std::process::id());
    assert_eq!(ss.lines().filter(|l| l.contains(&me)).count(), 1, "{ss}");
    fleet.close().await;
    drop(lab);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sudo_for_non_root_users() {
    let lab = up("sshsudo", 1, 1);
    let dir = tempfile::tempdir().unwrap();
    // `tarmac` has passwordless sudo; `pwuser` needs its password.
    let setup = "useradd -m -s /bin/bash pwuser && echo pwuser:s3cret | chpasswd \
                 && echo 'pwuser ALL=(ALL) ALL' > /etc/sudoers.d/pwuser \
                 && mkdir -p ~pwuser/.ssh && cp /root/.ssh/authorized_keys ~pwuser/.ssh/ && chown -R pwuser ~pwuser/.ssh && echo ok";
    assert_eq!(ssh_out(&lab, "agent-1", setup).trim(), "ok");
    let m1: tarmac_types::HostAddr = ip(&lab, "master-1").parse().unwrap();
    let a1: tarmac_types::HostAddr = ip(&lab, "agent-1").parse().unwrap();
    let sink = VecSink::new();

    // Key types: RSA, ECDSA, an encrypted ed25519 key with its passphrase, and ssh-agent.
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut pubs = String::new();
    for k in ["id_rsa", "id_ecdsa", "id_ed25519_encrypted"] {
        pubs.push_str(&std::fs::read_to_string(data.join(format!("{k}.pub"))).unwrap());
    }
    let add = format!("printf '%s' '{pubs}' >> /root/.ssh/authorized_keys && echo ok");
    assert_eq!(ssh_out(&lab, "master-1", &add).trim(), "ok");
    for (key, pass) in [
        ("id_rsa", None),
        ("id_ecdsa", None),
        ("id_ed25519_encrypted", Some("pass phrase")),
    ] {
        let o = SshOptions {
            identity_files: vec![data.join(key)],
            passphrase: pass.map(|p| {
                Arc::new(move |_: &std::path::Path| Some(Secret::new(p)))
                    as tarmac_ssh::PassphraseFn
            }),
            ..opts(&lab)
        };
        let fleet = Fleet::new(vec![Target::new(m1.clone())], o, ctx(&sink, dir.path())).unwrap();
        let r = fleet
            .session("exec", &m1)
            .unwrap()
            .check("key", Exec::new("true"))
            .await;
        assert!(r.is_ok(), "{key}: {r:?}");
        fleet.close().await;
    }
    // A key the host does not accept: the error names user, host and what was tried.
    let o = SshOptions {
        identity_files: vec![data.join("id_rsa")],
        ..opts(&lab)
    };
    let fleet = Fleet::new(vec![Target::new(a1.clone())], o, ctx(&sink, dir.path())).unwrap();
    let e = fleet
        .session("exec", &a1)
        .unwrap()
        .connect()
        .await
        .err()
        .unwrap();
    assert!(
        e.to_string().contains(&format!(
            "authentication as `root` on {a1} failed (tried: key {})",
            data.join("id_rsa").display()
        )),
        "{e}"
    );
    // ssh-agent holding the lab key.
    let sock = dir.path().join("agent.sock");
    let _agent = KillOnDrop(
        std::process::Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..50 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let added = std::process::Command::new("ssh-add")
        .arg(lab.key_path())
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    let o = SshOptions {
        identity_files: vec![],
        use_agent: true,
        agent_socket: Some(sock.clone()),
        ..opts(&lab)
    };
    let fleet = Fleet::new(targets(&lab), o, ctx(&sink, dir.path())).unwrap();
    let report = fleet
        .run_all(Stage::Exec, StageOptions::default(), |h| async move {
            h.check("agent", Exec::new("true")).await?;
            Ok(Outcome::Ok)
        })
        .await;
    fleet.close().await;
    assert_eq!(report.summary.ok, 2, "{report:?}");

    let o = SshOptions {
        user: "tarmac".into(),
        ..opts(&lab)
    };
    let fleet = Fleet::new(targets(&lab), o, ctx(&sink, dir.path())).unwrap();
    let s = fleet.session("preflight", &m1).unwrap();
    assert_eq!(s.sudo_status().await.unwrap(), SudoStatus::Passwordless);
    assert_eq!(
        s.check("whoami", Exec::new("id -un")).await.unwrap().stdout,
        "tarmac\n"
    );
    assert_eq!(
        s.check("root", Exec::root("id -un")).await.unwrap().stdout,
        "root\n"
    );
    // Ended on timeout even though it runs as root.
    let e = s
        .run(
            "slow",
            Exec::root("sleep 305").timeout(Duration::from_secs(1)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StepError::TimedOut { .. }), "{e:?}");
    assert!(
        gone(&lab, "master-1", "sleep 305").await,
        "root process survived the timeout"
    );
    fleet.close().await;

    let t = |pw: Option<&str>| {
        let o = SshOptions {
            user: "pwuser".into(),
            sudo_password: pw.map(Secret::new),
            ..opts(&lab)
        };
        Fleet::new(vec![Target::new(a1.clone())], o, ctx(&sink, dir.path())).unwrap()
    };
    let fleet = t(None);
    let s = fleet.session("preflight", &a1).unwrap();
    assert_eq!(s.sudo_status().await.unwrap(), SudoStatus::NeedsPassword);
    let e = s.check("root", Exec::root("id -un")).await.unwrap_err();
    assert!(
        e.to_string().contains("sudo: a password is required"),
        "{e}"
    );
    assert!(
        tarmac_types::error_report::text_with_hint(&e)
            .contains("hint: allow passwordless sudo for pwuser"),
        "{e}"
    );
    fleet.close().await;

    let fleet = t(Some("s3cret"));
    let s = fleet.session("exec", &a1).unwrap();
    let r = s
        .check("root", Exec::root("id -un; cat").stdin("data on stdin\n"))
        .await
        .unwrap();
    assert_eq!(r.stdout, "root\ndata on stdin\n");
    let e = s
        .run(
            "slow",
            Exec::root("sleep 306").timeout(Duration::from_secs(1)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StepError::TimedOut { .. }), "{e:?}");
    assert!(
        gone(&lab, "agent-1", "sleep 306").await,
        "root process survived the timeout"
    );
    fleet.close().await;

    let fleet = t(Some("wrong"));
    let e = fleet
        .session("exec", &a1)
        .unwrap()
        .check("root", Exec::root("id -un"))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("sudo on {a1} failed: the sudo password for pwuser was rejected")
    );
    fleet.close().await;

    // The password never reaches a log file.
    for entry in walk(dir.path()) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(!text.contains("s3cret"), "password in {}", entry.display());
    }
    drop(lab);
}

fn walk(p: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
