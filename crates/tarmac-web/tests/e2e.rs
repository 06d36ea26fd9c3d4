//! End to end in a browser: a lab of 3 masters + 2 agents (systemd hosts), the reference
//! distribution built and signed, `tarmac web` and headless Chromium both inside the lab's
//! control network namespace (the installer reaches the hosts from there; the browser talks
//! to the server over that namespace's loopback). The cluster is configured and installed
//! through the GUI only: hosts, SSH key upload, host keys, ip-detect, save & generate,
//! preflight, deploy, postflight, done, audit, an upgrade after a configuration change (plan,
//! then the rolling upgrade) and uninstall. Every stage's table must turn green on every host.
//! Screenshots of every page go to target/e2e-artifacts/.
//!
//! Needs root, `cargo build --bins` (target/debug/tarmac and tarmac-host) and Debian's
//! chromium + chromium-driver. The bootstrap ships `$TARMAC_PORTABLE_BIN_DIR/tarmac-host`
//! when that is set (scripts/test.sh), else target/debug/tarmac-host.

#![allow(clippy::print_stderr)] // progress lines with timings help when a lab run is slow

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Browser, CHROMEDRIVER, artifacts, bin_dir, free_port, host_binary, require_chromium};
use tarmac_lab::{Lab, LabGuard, LabSpec, Mode, Role};

const WEB_PORT: u16 = 9000;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the e2e test needs root (it brings up a lab)"
    );
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Keys and build output are kept under target/ between runs: a second build is a cache hit.
fn build_reference(tarmac: &Path, host_bin: &Path, work: &Path) -> (PathBuf, PathBuf) {
    let keys = work.join("keys");
    if !keys.join("e2e.key").exists() {
        run(
            Command::new(tarmac)
                .args(["keygen", "--name", "e2e", "--dir"])
                .arg(&keys),
            "tarmac keygen",
        );
    }
    let build = work.join("build");
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/reference");
    run(
        Command::new(tarmac)
            .arg("build")
            .arg("--tree")
            .arg(&dist)
            .arg("--out")
            .arg(&build)
            .arg("--sign-key")
            .arg(keys.join("e2e.key"))
            .arg("--host-binary")
            .arg(host_bin),
        "tarmac build",
    );
    (build, keys.join("e2e.pub"))
}

/// The web server, ended (SIGTERM, then SIGKILL) on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.0.id() as i32;
        // SAFETY: signalling the child this test started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        for _ in 0..50 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn gui_configures_and_deploys_a_lab() {
    require_root();
    require_chromium();
    let t0 = Instant::now();
    let bins = bin_dir();
    let (tarmac, host_bin) = (bins.join("tarmac"), host_binary());
    assert!(
        tarmac.exists() && host_bin.exists(),
        "{} and {} are needed\nhint: cargo build --bins",
        tarmac.display(),
        host_bin.display()
    );
    let target = artifacts().parent().unwrap().to_owned();
    let (build, public_key) = build_reference(&tarmac, &host_bin, &target.join("e2e-web"));
    eprintln!(
        "[{:>5.1}s] reference distribution built",
        t0.elapsed().as_secs_f64()
    );

    let name = format!("tw{}", std::process::id() % 100_000);
    let lab = Lab::up(
        &LabSpec {
            mode: Mode::Systemd,
            ..LabSpec::new(&name, 3, 2, 0)
        },
        &tarmac_events::NullSink,
    )
    .unwrap_or_else(|e| panic!("lab up: {e}"));
    let lab = LabGuard::new(lab);
    eprintln!("[{:>5.1}s] lab `{name}` up", t0.elapsed().as_secs_f64());

    // genconf/ starts empty: everything is entered in the browser.
    let work = tempfile::tempdir().unwrap();
    let genconf = work.path().join("genconf");
    let dist = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../dist/reference")
        .canonicalize()
        .unwrap();
    let mut child = lab
        .ctl_command(&tarmac)
        .arg("web")
        .arg("--listen")
        .arg(format!("127.0.0.1:{WEB_PORT}"))
        .arg("--genconf-dir")
        .arg(&genconf)
        .arg("--dist")
        .arg(&dist)
        .arg("--build-dir")
        .arg(&build)
        .arg("--public-key")
        .arg(&public_key)
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(artifacts().join("e2e-tarmac-web.stderr.log")).unwrap())
        .spawn()
        .expect("start tarmac web");
    let stdout = child.stdout.take().unwrap();
    let _server = Server(child);
    let login = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.trim().starts_with("http://").then(|| l.trim().to_owned()))
        .expect("tarmac web printed no login URL");
    assert!(
        login.starts_with(&format!("http://127.0.0.1:{WEB_PORT}/login?token=")),
        "{login}"
    );

    let masters: Vec<String> = lab
        .hosts_with_role(Role::Master)
        .map(|h| h.ip.to_string())
        .collect();
    let agents: Vec<String> = lab
        .hosts_with_role(Role::Agent)
        .map(|h| h.ip.to_string())
        .collect();
    let key_path = lab.key_path();
    let known_hosts = std::fs::read_to_string(lab.known_hosts_path()).unwrap();
    let ip_detect = std::fs::read_to_string(lab.dir().join("genconf/ip-detect")).unwrap();
    let bootstrap_url = format!("http://{}:8080", lab.ctl_ip());
    let lab_name = name.clone();
    let lab_name2 = name.clone();
    let ctl_driver = lab.ctl_command(CHROMEDRIVER);

    // The browser side runs on a thread inside the control namespace.
    let browser = std::thread::spawn(move || {
        tarmac_lab::enter_ctl_netns(&lab_name).expect("enter the lab's control namespace");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(drive(GuiInput {
            login,
            masters,
            agents,
            key_path,
            known_hosts,
            ip_detect,
            bootstrap_url,
            ctl_driver,
            lab_name: lab_name2,
            t0,
        }))
    });
    let result = browser.join();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }

    let cfg = std::fs::read_to_string(genconf.join("config.yaml")).unwrap();
    assert!(
        cfg.contains(&format!(
            "bootstrap_url: {}\n",
            format_args!("http://{}:8080", lab.ctl_ip())
        )),
        "{cfg}"
    );
    eprintln!("[{:>5.1}s] done", t0.elapsed().as_secs_f64());
    drop(lab);
}

struct GuiInput {
    login: String,
    masters: Vec<String>,
    agents: Vec<String>,
    key_path: PathBuf,
    known_hosts: String,
    ip_detect: String,
    bootstrap_url: String,
    ctl_driver: Command,
    lab_name: String,
    t0: Instant,
}

const UI: Duration = Duration::from_secs(30);

/// Click `button` on the stage page and wait until the run it starts ends; returns every
/// row's (host, status), failed first as the table shows them.
async fn start_and_wait(
    b: &Browser,
    stage: &str,
    button: &str,
    timeout: Duration,
) -> Vec<(String, String)> {
    b.wait_for(
        &format!("document.querySelector('main').dataset.page === '{stage}' && !document.querySelector('{button}').disabled"),
        UI,
        &format!("{stage} {button} enabled"),
    )
    .await;
    b.click(button).await;
    b.wait_for(
        "document.querySelector('main').dataset.runState === 'running'",
        UI,
        &format!("{stage} running"),
    )
    .await;
    b.wait_for(
        "['finished', 'error'].includes(document.querySelector('main').dataset.runState)",
        timeout,
        &format!("{stage} finished"),
    )
    .await;
    // The journal-backed stage result arrives right after the run ends.
    b.wait_for(
        "document.querySelector('main').dataset.stageOk === 'true' || document.querySelector('#run-status').textContent.includes('not ok') || document.querySelector('main').dataset.runState === 'error'",
        UI,
        &format!("{stage} result"),
    )
    .await;
    let rows = b
        .js("return [...document.querySelectorAll('#hosts tbody tr:not([hidden]):not(#empty-row)')].map(r => [r.dataset.host, r.dataset.status])")
        .await;
    serde_json::from_value(rows).unwrap()
}

/// The stage passed on every host: a green table and the next stage unlocked.
async fn assert_green(
    b: &Browser,
    stage: &str,
    rows: &[(String, String)],
    hosts: usize,
    t0: Instant,
) {
    let ok = b
        .js("return document.querySelector('main').dataset.stageOk")
        .await;
    let shot = b.screenshot(&format!("e2e-{stage}.png")).await;
    if ok != "true" {
        let text = b
            .js("return document.querySelector('main').innerText")
            .await;
        panic!(
            "{stage} did not pass on every host (screenshot {}):\n{}",
            shot.display(),
            text.as_str().unwrap_or_default()
        );
    }
    assert_eq!(rows.len(), hosts, "{stage}: {rows:?}");
    assert!(
        rows.iter().all(|(_, s)| s == "ok" || s == "unchanged"),
        "{stage}: {rows:?}"
    );
    assert_eq!(
        b.js("return document.querySelector('#next-stage').disabled")
            .await,
        false,
        "{stage}: next stage unlocked"
    );
    eprintln!(
        "[{:>5.1}s] {stage}: {} hosts green",
        t0.elapsed().as_secs_f64(),
        rows.len()
    );
}

async fn drive(input: GuiInput) {
    let GuiInput {
        login,
        masters,
        agents,
        key_path,
        known_hosts,
        ip_detect,
        bootstrap_url,
        ctl_driver,
        lab_name,
        t0,
    } = input;
    let lab = Lab::open(&lab_name).unwrap();
    let b = Browser::start(ctl_driver, free_port(), "chromedriver-e2e.log").await;
    b.client.goto(&login).await.unwrap();
    b.css("#f-master_list").await;

    // Configure.
    b.fill("#f-master_list", &masters.join("\n")).await;
    b.fill("#f-agent_list", &agents.join("\n")).await;
    b.fill("#f-cluster_name", "gui-e2e").await;
    b.fill("#f-bootstrap_url", &bootstrap_url).await;
    b.fill("#f-ssh_user", "root").await;
    b.css("#ssh-key-file")
        .await
        .send_keys(&key_path.display().to_string())
        .await
        .unwrap();
    b.click("#ssh-key-upload").await;
    b.wait_for(
        "document.querySelector('#ssh-key-status').textContent.includes('SHA256:')",
        UI,
        "key stored",
    )
    .await;
    b.fill("#known-hosts-text", &known_hosts).await;
    b.click("#known-hosts-save").await;
    b.wait_for(
        "document.querySelector('#known-hosts-status').textContent.includes('host keys in')",
        UI,
        "known hosts saved",
    )
    .await;
    b.fill("#ip-detect-text", &ip_detect).await;
    b.click("#ip-detect-save").await;
    b.wait_for(
        "document.querySelector('#ip-detect-status').textContent.startsWith('Saved at')",
        UI,
        "ip-detect saved",
    )
    .await;
    b.wait_for(
        "document.querySelector('main').dataset.valid === 'true'",
        UI,
        "valid configuration",
    )
    .await;
    b.click("#save-genconf").await;
    b.wait_for(
        "document.querySelector('#genconf-status').dataset.state === 'ok'",
        Duration::from_secs(120),
        "genconf",
    )
    .await;
    // A change after genconf makes serve/ out of date: the stages stay locked until it is
    // generated again.
    b.fill("#f-cluster_name", "gui-e2e-cluster").await;
    b.click("#save").await;
    b.wait_for(
        "document.querySelector('#genconf-status').dataset.state === 'stale'",
        UI,
        "serve/ out of date",
    )
    .await;
    assert_eq!(
        b.js("return document.querySelector('#next-stage').disabled")
            .await,
        true
    );
    b.click("#save-genconf").await;
    b.wait_for(
        "document.querySelector('#genconf-status').dataset.state === 'ok'",
        Duration::from_secs(120),
        "genconf again",
    )
    .await;
    b.screenshot("e2e-configure.png").await;
    eprintln!(
        "[{:>5.1}s] configured and generated",
        t0.elapsed().as_secs_f64()
    );

    let hosts = masters.len() + agents.len();
    b.click("#next-stage").await;
    let rows = start_and_wait(&b, "preflight", "#run-stage", Duration::from_secs(120)).await;
    assert_green(&b, "preflight", &rows, hosts, t0).await;

    // Deploy with one agent's cable pulled: the others install, the failed host comes first
    // with its error, deploy stays locked; with the cable back, "retry failed hosts" finishes it.
    b.click("#next-stage").await;
    let cut = agents.last().unwrap().clone();
    lab.host_link(&cut, false).unwrap();
    let rows = start_and_wait(&b, "deploy", "#run-stage", Duration::from_secs(240)).await;
    lab.host_link(&cut, true).unwrap();
    b.screenshot("e2e-deploy-one-host-down.png").await;
    assert_eq!(rows.len(), hosts, "{rows:?}");
    assert_eq!(rows[0].0, cut, "the failed host comes first: {rows:?}");
    assert!(
        !matches!(
            rows[0].1.as_str(),
            "ok" | "unchanged" | "running" | "pending"
        ),
        "{rows:?}"
    );
    assert!(rows[1..].iter().all(|(_, s)| s == "ok"), "{rows:?}");
    assert_eq!(
        b.js("return document.querySelector('main').dataset.stageOk")
            .await,
        "false"
    );
    assert_eq!(
        b.js("return document.querySelector('#next-stage').disabled")
            .await,
        true,
        "postflight stays locked"
    );
    let err = b
        .js("return document.querySelector('#hosts tbody tr').children[5].textContent")
        .await;
    assert!(
        !err.as_str().unwrap_or_default().is_empty(),
        "the failed host shows its error"
    );
    assert_eq!(
        b.js("return document.querySelector('#retry-failed').textContent")
            .await,
        "Retry 1 failed host"
    );
    eprintln!(
        "[{:>5.1}s] deploy: {cut} failed as expected ({})",
        t0.elapsed().as_secs_f64(),
        rows[0].1
    );
    let rows = start_and_wait(&b, "deploy", "#retry-failed", Duration::from_secs(240)).await;
    assert_green(&b, "deploy", &rows, hosts, t0).await;
    // One host's full log is one click away.
    b.click("#hosts tbody tr:not([hidden]) button.host-log")
        .await;
    b.wait_for("document.querySelector('#log-text') && !document.querySelector('#log-text').textContent.startsWith('Loading') && document.querySelector('#log-text').textContent.length > 20", UI, "host log").await;
    b.screenshot("e2e-deploy-host-log.png").await;
    b.click("#modal-close").await;

    b.click("#next-stage").await;
    let rows = start_and_wait(&b, "postflight", "#run-stage", Duration::from_secs(240)).await;
    assert_green(&b, "postflight", &rows, hosts, t0).await;

    // Done: what is where, prometheus on the first master, the log archive.
    b.click("#next-stage").await;
    b.wait_for(
        "document.querySelector('main').dataset.healthy === 'true'",
        UI,
        "done page",
    )
    .await;
    let links = b
        .js("return [...document.querySelectorAll('.links a')].map(a => a.getAttribute('href'))")
        .await;
    let links: Vec<String> = serde_json::from_value(links).unwrap();
    assert!(
        links.contains(&format!("http://{}:9090/", masters[0])),
        "{links:?}"
    );
    assert!(
        links.contains(&"/api/v1/logs/archive".to_owned()),
        "{links:?}"
    );
    let rows = b
        .js("return document.querySelectorAll('table.hosts tbody tr').length")
        .await;
    assert_eq!(rows.as_u64(), Some(hosts as u64));
    // The archive downloads with the session (fetch from the page).
    let size = b
        .js("return fetch('/api/v1/logs/archive').then(r => r.ok ? r.arrayBuffer().then(b => b.byteLength) : -r.status)")
        .await;
    assert!(size.as_i64().unwrap_or(0) > 1000, "log archive: {size}");
    b.screenshot("e2e-done.png").await;
    eprintln!("[{:>5.1}s] done page", t0.elapsed().as_secs_f64());

    // What the GUI did is on the hosts: the services run on the right roles only.
    let services = |want_installed: bool| {
        for h in lab.hosts() {
            let out = lab
                .ssh(&h.name, "systemctl is-active tarmac-node-exporter.service; systemctl is-active tarmac-etcd.service; test -e /opt/tarmac && echo present || echo absent")
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 3, "{}: {text}", h.name);
            if want_installed {
                assert_eq!(lines[0], "active", "node-exporter on {}", h.name);
                assert_eq!(
                    lines[1] == "active",
                    h.role == Role::Master,
                    "etcd on {} ({:?}): {}",
                    h.name,
                    h.role,
                    lines[1]
                );
                assert_eq!(lines[2], "present", "{}", h.name);
            } else {
                assert_ne!(lines[0], "active", "node-exporter still runs on {}", h.name);
                assert_ne!(lines[1], "active", "etcd still runs on {}", h.name);
                assert_eq!(lines[2], "absent", "/opt/tarmac left on {}", h.name);
            }
        }
    };
    services(true);

    // Audit from the Done page: no drift anywhere.
    b.click("a[href='#/status']").await;
    let rows = start_and_wait(&b, "status", "#run-stage", Duration::from_secs(120)).await;
    assert_eq!(rows.len(), hosts, "{rows:?}");
    assert!(
        rows.iter().all(|(_, s)| s == "ok"),
        "status shows drift: {rows:?}"
    );
    b.screenshot("e2e-status.png").await;

    // Upgrade after a configuration change: a new etcd_snapshot_count means new config
    // packages; generate again, look at the plan, roll it out from the Upgrade page.
    let page = |hash: &str| login.replace(&login[login.find("/login").unwrap()..], hash);
    b.client.goto(&page("/#/configure")).await.unwrap();
    b.wait_for(
        "document.querySelector('main').dataset.page === 'configure' && document.querySelector('#genconf-status code')",
        UI,
        "configure page",
    )
    .await;
    let old_list = b
        .js("return document.querySelector('#genconf-status code').textContent")
        .await;
    let old_list = old_list.as_str().unwrap().to_owned();
    b.fill("#f-etcd_snapshot_count", "5000").await;
    b.click("#save-genconf").await;
    b.wait_for(
        &format!("document.querySelector('#genconf-status').dataset.state === 'ok' && document.querySelector('#genconf-status code').textContent !== '{old_list}'"),
        Duration::from_secs(120),
        "genconf after the change",
    )
    .await;
    b.client.goto(&page("/#/upgrade")).await.unwrap();
    b.wait_for(
        "document.querySelector('main').dataset.page === 'upgrade' && !document.querySelector('#run-stage').disabled && !document.querySelector('#show-plan').disabled",
        UI,
        "upgrade page",
    )
    .await;
    b.fill("#opt-batch", "1").await;
    b.click("#show-plan").await;
    b.wait_for(
        "document.querySelector('#plan-start')",
        Duration::from_secs(60),
        "upgrade plan",
    )
    .await;
    let plan = b
        .js("return document.querySelector('#plan-text').textContent")
        .await;
    let plan = plan.as_str().unwrap_or_default().to_owned();
    assert!(
        plan.starts_with("upgrade to cluster package list "),
        "{plan}"
    );
    for m in &masters {
        assert!(
            plan.contains(&format!("master {m} (then cluster checks on every master)")),
            "{plan}"
        );
    }
    assert!(plan.contains("  change "), "{plan}");
    // The same plan as JSON: per host what changes and why units restart.
    let pj = b
        .js("return fetch('/api/v1/upgrade/plan', {method: 'POST', headers: {'Content-Type': 'application/json', 'X-Tarmac-CSRF': document.querySelector('meta[name=\"csrf-token\"]').content}, body: JSON.stringify({batch: 1})}).then(r => r.json())")
        .await;
    assert_eq!(pj["waves"].as_array().map(Vec::len), Some(hosts), "{pj}");
    assert_eq!(pj["waves"][0]["masters"], true, "{pj}");
    let first = &pj["hosts"][0];
    assert_eq!(first["host"], masters[0].as_str(), "{pj}");
    assert_eq!(first["unchanged"], false, "{pj}");
    assert!(first["error"].is_null(), "{pj}");
    assert!(
        first["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "tarmac-config"),
        "{pj}"
    );
    assert_eq!(pj["text"].as_str(), Some(plan.as_str()));
    b.screenshot("e2e-upgrade-plan.png").await;
    b.click("#plan-start").await;
    b.wait_for(
        "document.querySelector('main').dataset.runState === 'running'",
        UI,
        "upgrade running",
    )
    .await;
    b.wait_for(
        "['finished', 'error'].includes(document.querySelector('main').dataset.runState)",
        Duration::from_secs(900),
        "upgrade finished",
    )
    .await;
    b.wait_for(
        "document.querySelector('main').dataset.stageOk === 'true' || document.querySelector('#run-status').textContent.includes('not ok') || document.querySelector('main').dataset.runState === 'error'",
        UI,
        "upgrade result",
    )
    .await;
    let shot = b.screenshot("e2e-upgrade.png").await;
    let rows: Vec<(String, String)> = serde_json::from_value(
        b.js("return [...document.querySelectorAll('#hosts tbody tr:not([hidden]):not(#empty-row)')].map(r => [r.dataset.host, r.dataset.status])")
            .await,
    )
    .unwrap();
    if b.js("return document.querySelector('main').dataset.stageOk")
        .await
        != "true"
    {
        let text = b
            .js("return document.querySelector('main').innerText")
            .await;
        panic!(
            "the upgrade did not pass on every host (screenshot {}):\n{}",
            shot.display(),
            text.as_str().unwrap_or_default()
        );
    }
    assert_eq!(rows.len(), hosts, "{rows:?}");
    assert!(rows.iter().all(|(_, s)| s == "ok"), "{rows:?}");
    // The whole run's log of a host is one click away.
    b.click("#hosts tbody tr:not([hidden]) button.host-log")
        .await;
    b.wait_for("document.querySelector('#log-text') && document.querySelector('#log-text').textContent.includes('== host finished')", UI, "upgrade host log").await;
    b.click("#modal-close").await;
    for h in lab.hosts_with_role(Role::Master) {
        let out = lab
            .ssh(&h.name, "grep -Rh '^ETCD_SNAPSHOT_COUNT=' /opt/tarmac/etc/")
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "ETCD_SNAPSHOT_COUNT=5000",
            "{}",
            h.name
        );
    }
    services(true);
    eprintln!(
        "[{:>5.1}s] upgraded after a config change",
        t0.elapsed().as_secs_f64()
    );

    // Day two from the GUI: back up, delete a key, restore it; then remove an agent, with the
    // rollout options of the page.
    let etcdctl = |args: &str| {
        let out = lab
            .ssh(
                &lab.hosts_with_role(Role::Master).next().unwrap().name,
                &format!(
                    "ETCDCTL_API=3 /opt/tarmac/bin/etcdctl --endpoints=http://127.0.0.1:2379 {args}"
                ),
            )
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    etcdctl("put /gui/kept yes");
    b.client.goto(&page("/#/daytwo")).await.unwrap();
    b.wait_for(
        "document.querySelector('main').dataset.page === 'daytwo' && document.querySelector('#dt-backup') && document.querySelector('#dt-batch')",
        UI,
        "day two page",
    )
    .await;
    let before = b
        .js("return document.querySelectorAll('#snapshot-rows tr[data-name]').length")
        .await
        .as_u64()
        .unwrap_or(0);
    // Click `button`, then wait for the run it starts to end. The run is told from the one
    // shown before by its id: a quick run (a backup) may be over before the page is polled.
    let day_two_run = |what: &'static str, button: &'static str, secs: u64| {
        let b = &b;
        async move {
            let before = b
                .js("return document.querySelector('main').dataset.runId || ''")
                .await;
            let before = before.as_str().unwrap_or_default().to_owned();
            b.click(button).await;
            b.wait_for(
                &format!(
                    "(document.querySelector('main').dataset.runId || '') !== {before:?} || document.querySelector('main').dataset.runState === 'running'"
                ),
                UI,
                &format!("{what} started"),
            )
            .await;
            b.wait_for(
                "['finished', 'error'].includes(document.querySelector('main').dataset.runState)",
                Duration::from_secs(secs),
                &format!("{what} finished"),
            )
            .await;
            let state = b
                .js("return document.querySelector('main').dataset.runState")
                .await;
            if state != "finished"
                || b.js("return document.querySelector('#run-error').hidden")
                    .await
                    != true
            {
                let shot = b.screenshot(&format!("e2e-daytwo-{what}.png")).await;
                let text = b
                    .js("return document.querySelector('main').innerText")
                    .await;
                panic!(
                    "{what} did not succeed (screenshot {}):\n{}",
                    shot.display(),
                    text.as_str().unwrap_or_default()
                );
            }
        }
    };
    day_two_run("backup", "#dt-backup", 300).await;
    b.click("#snapshots-card .table-head button").await;
    b.wait_for(
        &format!(
            "document.querySelectorAll('#snapshot-rows tr[data-name]').length === {}",
            before + 1
        ),
        UI,
        "the new snapshot listed",
    )
    .await;
    etcdctl("del /gui/kept");
    assert_eq!(etcdctl("get /gui/kept --print-value-only"), "");
    // The newest snapshot is the first row.
    b.click("#snapshot-rows tr[data-name] button.restore").await;
    b.wait_for(
        "document.querySelector('#dt-confirm')",
        UI,
        "restore confirmation",
    )
    .await;
    day_two_run("restore", "#dt-confirm", 600).await;
    assert_eq!(etcdctl("get /gui/kept --print-value-only"), "yes");
    eprintln!(
        "[{:>5.1}s] backup and restore from the GUI",
        t0.elapsed().as_secs_f64()
    );

    let removed = agents.last().unwrap().clone();
    b.fill("#dt-batch", "1").await;
    b.fill("#dt-check-timeout", "240").await;
    b.click("#dt-remove").await;
    b.wait_for(
        "document.querySelector('#dt-hosts input')",
        UI,
        "remove-hosts dialog",
    )
    .await;
    b.click(&format!("#dt-hosts input[value='{removed}']"))
        .await;
    b.click("#dt-remove-next").await;
    b.wait_for(
        "document.querySelector('#dt-confirm')",
        UI,
        "remove confirmation",
    )
    .await;
    day_two_run("remove-hosts", "#dt-confirm", 900).await;
    b.screenshot("e2e-daytwo.png").await;
    let removed_host = lab
        .hosts()
        .iter()
        .find(|h| h.ip.to_string() == removed)
        .unwrap()
        .name
        .clone();
    let out = lab
        .ssh(
            &removed_host,
            "test -e /opt/tarmac && echo present || echo absent",
        )
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "absent");
    // The change is recorded finished: no banner.
    b.click("#snapshots-card .table-head button").await;
    b.wait_for(
        "document.querySelector('#change-banner').hidden === true",
        UI,
        "no unfinished change",
    )
    .await;
    let snaps = b
        .js("return fetch('/api/v1/snapshots').then(r => r.json())")
        .await;
    assert_eq!(snaps["change"]["step"], "done", "{snaps}");
    assert_eq!(
        snaps["change"]["command"],
        format!("remove-hosts {removed}").as_str(),
        "{snaps}"
    );
    eprintln!(
        "[{:>5.1}s] removed {removed} from the GUI",
        t0.elapsed().as_secs_f64()
    );
    let hosts = hosts - 1;

    // Uninstall asks first, then leaves the hosts clean.
    b.client.goto(&page("/#/uninstall")).await.unwrap();
    b.wait_for("document.querySelector('main').dataset.page === 'uninstall' && !document.querySelector('#run-stage').disabled", UI, "uninstall page").await;
    b.click("#opt-purge").await;
    b.click("#run-stage").await;
    let question = b
        .client
        .get_alert_text()
        .await
        .expect("a confirmation dialog");
    assert!(
        question.contains("Remove Tarmac") && question.contains("deleting the state directories"),
        "{question}"
    );
    b.client.accept_alert().await.unwrap();
    b.wait_for(
        "document.querySelector('main').dataset.runState === 'running'",
        UI,
        "uninstall running",
    )
    .await;
    b.wait_for(
        "document.querySelector('main').dataset.runState === 'finished'",
        Duration::from_secs(120),
        "uninstall finished",
    )
    .await;
    b.wait_for(
        &format!("document.querySelector('#run-status').textContent.includes('{hosts} of {hosts} hosts ok')"),
        UI,
        "uninstall ok",
    )
    .await;
    b.screenshot("e2e-uninstall.png").await;
    services(false);
    eprintln!(
        "[{:>5.1}s] audited and uninstalled",
        t0.elapsed().as_secs_f64()
    );
    b.close().await;
}
