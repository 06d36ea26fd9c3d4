//! Browser tests without a lab: the real server in process on loopback, headless Chromium
//! through chromedriver. The Configure page (validation as you type, uploads, save, the YAML
//! editor) and a stage page fed 10,000 hosts' events (pagination, filters, failed first,
//! batched renders, state after a reload). Screenshots go to target/e2e-artifacts/.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Browser, CHROMEDRIVER, free_port};
use tarmac_config::Distribution;
use tarmac_events::{Event, EventSink, HostRef, Outcome, Summary};
use tarmac_types::{HostAddr, Role, Stage};
use tarmac_web::hub::RunChange;
use tarmac_web::{App, AuthLimits, HostAllowlist, Listener, WebOptions};

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_page_and_ten_thousand_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let genconf = dir.path().join("genconf");
    std::fs::create_dir_all(&genconf).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/reference");
    let dist = Distribution::load(&Distribution::config_dir_of(&root).unwrap()).unwrap();
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), None).unwrap();
    let app = App::new(WebOptions {
        genconf_dir: genconf.clone(),
        dist,
        build_dir: dir.path().join("out"),
        public_key: None,
        prereqs: tarmac_installer::prereqs::Prereqs::none(),
        tls: false,
        event_buffer: 50_000,
        allowed_hosts: HostAllowlist::new(listener.local_addr().unwrap(), &[]).unwrap(),
        auth_limits: AuthLimits::default(),
    });
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(listener.serve(app.clone(), stop.clone()));

    let port = free_port();
    let b = Browser::start(
        Command::new(CHROMEDRIVER),
        port,
        "chromedriver-browser-test.log",
    )
    .await;

    // Without the login URL: the sign-in page, no API.
    b.client.goto(&format!("{base}/")).await.unwrap();
    let body = b.js("return document.body.innerText").await;
    assert!(
        body.as_str()
            .unwrap()
            .contains("Sign in to the Tarmac installer"),
        "{body}"
    );

    // Log in: the Configure page with the empty config's problems.
    b.client
        .goto(&format!(
            "{base}/login?token={}",
            app.auth.new_login_token()
        ))
        .await
        .unwrap();
    b.css("#f-master_list").await;
    b.wait_for(
        "document.querySelector('#valid-state').textContent.includes('problem')",
        T,
        "initial validation",
    )
    .await;
    b.screenshot("browser-configure-empty.png").await;

    // Errors appear next to the field as you type.
    b.fill("#f-master_list", "10.0.0.1\n10.0.0.2").await;
    b.wait_for(
        "document.querySelector('.err[data-for=\"master_list\"]').textContent.includes('Must have 1, 3, 5, 7, or 9 masters. Found 2')",
        T,
        "master count error",
    )
    .await;
    b.fill("#f-ssh_port", "abc").await;
    b.wait_for("document.querySelector('.err[data-for=\"ssh_port\"]').textContent.includes('Must be an integer')", T, "port error").await;
    b.fill("#f-bootstrap_url", "ftp://x").await;
    b.wait_for(
        "document.querySelector('.err[data-for=\"bootstrap_url\"]').textContent.length > 0",
        T,
        "url error",
    )
    .await;
    b.screenshot("browser-configure-errors.png").await;
    // Save refuses an invalid configuration.
    b.click("#save").await;
    b.wait_for("!document.querySelector('#toast').hidden && document.querySelector('#toast').textContent.startsWith('Not saved')", T, "save refused").await;
    assert!(!genconf.join("config.yaml").exists());

    // Fix everything: one master, port 2222, an http bootstrap URL, the key, ip-detect.
    b.fill("#f-master_list", "10.0.0.1").await;
    b.fill("#f-ssh_port", "2222").await;
    b.fill("#f-bootstrap_url", "http://10.0.0.254:8080").await;
    b.fill("#f-cluster_name", "browser test").await;
    let key = dir.path().join("id_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    b.css("#ssh-key-file")
        .await
        .send_keys(&key.display().to_string())
        .await
        .unwrap();
    b.click("#ssh-key-upload").await;
    b.wait_for(
        "document.querySelector('#ssh-key-status').textContent.includes('SHA256:')",
        T,
        "key stored",
    )
    .await;
    b.fill("#ip-detect-text", "#!/bin/sh\necho 10.0.0.1\n")
        .await;
    b.click("#ip-detect-save").await;
    b.wait_for(
        "document.querySelector('#ip-detect-status').textContent.startsWith('Saved at')",
        T,
        "ip-detect saved",
    )
    .await;
    b.wait_for(
        "document.querySelector('main').dataset.valid === 'true'",
        T,
        "valid config",
    )
    .await;
    b.click("#save").await;
    b.wait_for(
        "document.querySelector('#toast').textContent.startsWith('Saved')",
        T,
        "saved",
    )
    .await;
    let saved = std::fs::read_to_string(genconf.join("config.yaml")).unwrap();
    for want in [
        "master_list:\n- 10.0.0.1\n",
        "ssh_port: 2222\n",
        "bootstrap_url: http://10.0.0.254:8080\n",
        "cluster_name: \"browser test\"\n",
    ] {
        assert!(saved.contains(want), "missing {want:?} in\n{saved}");
    }
    assert!(
        !saved.contains("BEGIN OPENSSH"),
        "the key is not in config.yaml"
    );
    assert_eq!(
        std::fs::read_to_string(genconf.join("ssh_key")).unwrap(),
        std::fs::read_to_string(&key).unwrap()
    );
    b.wait_for(
        "document.querySelector('#valid-state').textContent.startsWith('✓ valid')",
        T,
        "valid state",
    )
    .await;
    b.screenshot("browser-configure-valid.png").await;

    // The YAML editor: a typo is reported with its line as you type.
    b.click("#tab-yaml").await;
    b.wait_for(
        "document.querySelector('#yaml-text').value.includes('ssh_port: 2222')",
        T,
        "yaml text",
    )
    .await;
    b.css("#yaml-text")
        .await
        .send_keys("\nclustr_name: typo\n")
        .await
        .unwrap();
    b.wait_for("document.querySelector('#yaml-diags').textContent.includes('Unknown parameter `clustr_name`')", T, "yaml diag").await;
    let diag = b
        .js("return document.querySelector('#yaml-diags').textContent")
        .await;
    assert!(
        diag.as_str().unwrap().contains("line 7:1")
            && diag
                .as_str()
                .unwrap()
                .contains("did you mean `cluster_name`?"),
        "{diag}"
    );
    b.screenshot("browser-configure-yaml.png").await;

    // A run on N hosts, fed as engine events: every 83rd fails, the last 3 still run.
    const N: usize = 10_000;
    let agents_end = N * 9 / 10;
    let fails = |i: usize| i % 83 == 5;
    let failed = (0..N - 3).filter(|&i| fails(i)).count();
    let agent_failed = (3..agents_end).filter(|&i| fails(i)).count();
    let agent_bar = format!("{}/{} ok", agents_end - 3 - agent_failed, agents_end - 3);
    let hosts: Vec<(HostAddr, Role)> = (0..N)
        .map(|i| {
            let role = if i < 3 {
                Role::Master
            } else if i < agents_end {
                Role::Agent
            } else {
                Role::AgentPublic
            };
            (
                format!("10.1.{}.{}", i / 250, i % 250 + 1).parse().unwrap(),
                role,
            )
        })
        .collect();
    let hub = app.hub.clone();
    hub.run_change(RunChange::Started {
        stage: Stage::Preflight,
        hosts: None,
        retry: false,
        base_run_id: None,
        started_unix_ms: tarmac_web::hub::now_ms(),
        roster: Vec::new(),
    });
    hub.emit(Event::StageStarted {
        run_id: "preflight-10000".into(),
        stage: Stage::Preflight,
        hosts: hosts
            .iter()
            .map(|(h, r)| HostRef {
                addr: h.clone(),
                role: Some(*r),
            })
            .collect(),
    });
    b.click("#steps a[data-page=preflight]").await;
    b.wait_for(
        "document.querySelectorAll('#hosts tbody tr:not([hidden]):not(#empty-row)').length === 50",
        T,
        "first page",
    )
    .await;
    let renders_before = b
        .js("return window.performance.now()")
        .await
        .as_f64()
        .unwrap();
    b.js("window.__renders = 0; const u = window.update; window.update = function() { window.__renders++; return u(); };").await;
    let mut summary = Summary::default();
    for (i, (h, _)) in hosts.iter().enumerate() {
        hub.emit(Event::StepStarted {
            host: h.clone(),
            step: "host checks".into(),
        });
        hub.emit(Event::Output {
            host: h.clone(),
            step: "host checks".into(),
            stream: tarmac_events::Stream::Stdout,
            line: format!("Checking disk on {h} … PASS"),
        });
        if i >= N - 3 {
            continue; // still running
        }
        let outcome = if fails(i) {
            Outcome::Failed {
                exit_code: Some(1),
                signal: None,
                message: "1 check(s) failed: ports".into(),
            }
        } else {
            Outcome::Ok
        };
        if !outcome.is_success() {
            hub.emit(Event::StepFinished {
                host: h.clone(),
                step: "install.sh --preflight-only".into(),
                outcome: outcome.clone(),
                duration_ms: 5,
            });
        }
        summary.add(&outcome);
        hub.emit(Event::HostFinished {
            host: h.clone(),
            outcome,
            duration_ms: 1234,
        });
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    b.wait_for(
        &format!("document.querySelector('#bars').textContent.includes('{agent_bar}')"),
        T,
        "agent bar",
    )
    .await;
    let failed_rows = format!(
        "document.querySelectorAll('#hosts tbody tr:not([hidden])[data-status=\"failed\"]').length === {}",
        failed.min(50)
    );
    b.wait_for(&failed_rows, T, "failed first").await;
    let first = b
        .js("return document.querySelector('#hosts tbody tr').dataset.status")
        .await;
    assert_eq!(first, "failed", "failed hosts come first");
    let pager = b
        .js("return document.querySelector('#pager').textContent")
        .await;
    assert!(
        pager.as_str().unwrap().contains(&format!("1–50 of {N}")),
        "{pager}"
    );
    // Renders are batched: never more than one per 100 ms (plus a few from the clicks).
    let elapsed = b
        .js("return window.performance.now()")
        .await
        .as_f64()
        .unwrap()
        - renders_before;
    let renders = b.js("return window.__renders").await.as_f64().unwrap();
    assert!(
        renders <= elapsed / 100.0 + 3.0,
        "{renders} renders in {elapsed} ms"
    );
    // Filters.
    b.css("#flt-status")
        .await
        .select_by_value("bad")
        .await
        .unwrap();
    b.wait_for(
        &format!("document.querySelectorAll('#hosts tbody tr:not([hidden]):not(#empty-row)').length === {}", failed.min(50)),
        T,
        "status filter",
    )
    .await;
    b.css("#flt-status")
        .await
        .select_by_value("running")
        .await
        .unwrap();
    b.wait_for("document.querySelectorAll('#hosts tbody tr:not([hidden])[data-status=\"running\"]').length === 3", T, "running filter").await;
    b.css("#flt-status")
        .await
        .select_by_value("")
        .await
        .unwrap();
    b.css("#flt-role")
        .await
        .select_by_value("master")
        .await
        .unwrap();
    b.wait_for(
        "document.querySelectorAll('#hosts tbody tr:not([hidden]):not(#empty-row)').length === 3",
        T,
        "role filter",
    )
    .await;
    b.css("#flt-role").await.select_by_value("").await.unwrap();
    // Wait for the cleared filter to render before paging (a click racing the select's
    // change can be swallowed).
    b.wait_for(
        "document.querySelectorAll('#hosts tbody tr:not([hidden]):not(#empty-row)').length === 50 && !document.querySelector('#pager').textContent.includes('(of')",
        T,
        "role filter cleared",
    )
    .await;
    b.click("#pager-next").await;
    b.wait_for(
        &format!("document.querySelector('#pager').textContent.includes('51–100 of {N}')"),
        T,
        "page 2",
    )
    .await;
    b.screenshot("browser-preflight-10000-hosts.png").await;

    // A reload (or a second tab) starts from the server's state: the same table.
    b.client.refresh().await.unwrap();
    b.wait_for(&failed_rows, T, "state after reload").await;
    let running = b
        .js("return document.querySelector('main').dataset.runState")
        .await;
    assert_eq!(running, "running");
    // The stage ends; the page follows live.
    for (h, _) in &hosts[N - 3..] {
        summary.add(&Outcome::Ok);
        hub.emit(Event::HostFinished {
            host: h.clone(),
            outcome: Outcome::Ok,
            duration_ms: 2000,
        });
    }
    hub.emit(Event::StageFinished {
        run_id: "preflight-10000".into(),
        stage: Stage::Preflight,
        summary: summary.clone(),
        duration_ms: 3000,
    });
    hub.run_change(RunChange::Finished {
        stage: Stage::Preflight,
        ok: false,
        summary: Some(summary),
        error: None,
        checks: None,
        report: None,
        finished_unix_ms: tarmac_web::hub::now_ms(),
    });
    b.wait_for(
        "document.querySelector('main').dataset.runState === 'finished'",
        T,
        "finished",
    )
    .await;
    b.wait_for(
        &format!(
            "document.querySelector('#run-status').textContent.includes('{} of {N} hosts ok')",
            N - failed
        ),
        T,
        "summary line",
    )
    .await;
    assert_eq!(
        b.js("return document.querySelector('#next-stage').disabled")
            .await,
        true,
        "deploy stays locked"
    );
    b.screenshot("browser-preflight-finished.png").await;

    // An upgrade: one fleet per wave and step. The page keeps every host's latest state: the
    // master switched in wave 1 stays ok while wave 2 runs, untouched hosts stay pending
    // (also through the cluster checks of every master), as the server's view does.
    let (m1, m2, a1): (HostAddr, HostAddr, HostAddr) = (
        "10.2.0.1".parse().unwrap(),
        "10.2.0.2".parse().unwrap(),
        "10.2.0.3".parse().unwrap(),
    );
    hub.run_change(RunChange::Started {
        stage: Stage::Upgrade,
        hosts: None,
        retry: false,
        base_run_id: None,
        started_unix_ms: tarmac_web::hub::now_ms(),
        roster: [(&m1, Role::Master), (&m2, Role::Master), (&a1, Role::Agent)]
            .iter()
            .map(|(h, r)| tarmac_web::hub::RosterHost {
                host: h.to_string(),
                role: Some(*r),
            })
            .collect(),
    });
    b.js("location.hash = '#/upgrade'").await;
    let rows_are = |want: &'static str| {
        format!(
            "[...document.querySelectorAll('#hosts tbody tr:not([hidden]):not(#empty-row)')].map(r => r.dataset.host + '=' + r.dataset.status).sort().join(' ') === '{want}'"
        )
    };
    b.wait_for(
        &rows_are("10.2.0.1=pending 10.2.0.2=pending 10.2.0.3=pending"),
        T,
        "upgrade roster",
    )
    .await;
    let run = "upgrade-1700000000-ab";
    let fleet = |id: &str, hosts: &[&HostAddr], finish: bool| {
        hub.emit(Event::StageStarted {
            run_id: format!("{run}-{id}"),
            stage: Stage::Upgrade,
            hosts: hosts
                .iter()
                .map(|h| HostRef {
                    addr: (*h).clone(),
                    role: None,
                })
                .collect(),
        });
        for h in hosts {
            hub.emit(Event::StepStarted {
                host: (*h).clone(),
                step: "check".into(),
            });
            if finish {
                hub.emit(Event::HostFinished {
                    host: (*h).clone(),
                    outcome: Outcome::Ok,
                    duration_ms: 10,
                });
            }
        }
    };
    fleet("001-switch", &[&m1], true);
    fleet("002-cluster-checks", &[&m1, &m2], true);
    fleet("003-confirm", &[&m1], true);
    fleet("004-switch", &[&m2], false);
    let mid = rows_are("10.2.0.1=ok 10.2.0.2=running 10.2.0.3=pending");
    b.wait_for(&mid, T, "wave 2 running").await;
    let status = b
        .js("return document.querySelector('#run-status').textContent")
        .await;
    assert!(
        status
            .as_str()
            .unwrap()
            .contains("1 of 3 hosts upgraded · switch"),
        "{status}"
    );
    assert!(status.as_str().unwrap().contains(run), "{status}");
    b.screenshot("browser-upgrade-wave-2.png").await;
    // The server's snapshot agrees.
    b.client.refresh().await.unwrap();
    b.wait_for(&mid, T, "wave 2 after reload").await;
    // Wave 2 fails its host: the run stops, the agent was never touched.
    hub.emit(Event::HostFinished {
        host: m2.clone(),
        outcome: Outcome::Failed {
            exit_code: Some(1),
            signal: None,
            message: "fetch failed".into(),
        },
        duration_ms: 10,
    });
    hub.run_change(RunChange::Finished {
        stage: Stage::Upgrade,
        ok: false,
        summary: None,
        error: None,
        checks: None,
        report: Some(serde_json::json!({"state": {"operation": "upgrade", "target": "x", "finished": true,
            "stopped": "master 10.2.0.2 failed: stopped before touching the other hosts", "hosts": {}}})),
        finished_unix_ms: tarmac_web::hub::now_ms(),
    });
    b.wait_for(
        &rows_are("10.2.0.1=ok 10.2.0.2=failed 10.2.0.3=untouched"),
        T,
        "upgrade stopped",
    )
    .await;
    b.wait_for(
        "document.querySelector('#run-error').textContent.includes('upgrade stopped: master 10.2.0.2 failed')",
        T,
        "why it stopped",
    )
    .await;
    b.screenshot("browser-upgrade-stopped.png").await;

    // Sign out: the session ends, the sign-in page shows, the API answers 401.
    b.click("#logout").await;
    b.wait_for(
        "document.body.innerText.includes('Sign in to the Tarmac installer')",
        T,
        "signed out",
    )
    .await;
    let status = b
        .js("return fetch('/api/v1/info').then(r => r.status)")
        .await;
    assert_eq!(status, 401);

    b.close().await;
    stop.cancel();
    server.await.unwrap().unwrap();
}
