//! preflight, deploy and status on the fake fleet: the real stages (engine, uploads with
//! their sha256, journal, ledger) against hosts that answer the installer's scripts from
//! their in-memory state (os-release, commands, ports, generations, switch log, units).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{AGENTS, Cluster, MASTERS, NEW, OLD, PUBLIC, ids};
use tarmac_events::Outcome;
use tarmac_installer::journal::RunRecord;
use tarmac_installer::ledger::{Op, PlacedBy};
use tarmac_installer::plan::CheckResult;
use tarmac_installer::stages::{DeployOptions, PreflightOptions, StageRun};
use tarmac_installer::upgrade::{BatchSize, Budget, UpgradeOptions};
use tarmac_installer::verdict::Standing;
use tarmac_types::{HostAddr, Stage};

fn h(s: &str) -> HostAddr {
    s.parse().unwrap()
}

fn all_hosts() -> Vec<&'static str> {
    MASTERS
        .iter()
        .chain(&AGENTS)
        .chain(&PUBLIC)
        .copied()
        .collect()
}

fn no_unknown(c: &Cluster) {
    assert_eq!(c.fleet.unknown(), vec![], "commands the fake does not know");
}

/// Every host's outcome word, in config order.
fn words(run: &StageRun) -> Vec<(String, &'static str)> {
    run.report
        .hosts
        .iter()
        .map(|r| (r.target.addr.to_string(), r.outcome.word()))
        .collect()
}

fn expect_words(pairs: &[(&str, &'static str)]) -> Vec<(String, &'static str)> {
    pairs.iter().map(|(h, w)| (h.to_string(), *w)).collect()
}

fn outcome_of<'a>(run: &'a StageRun, host: &str) -> &'a Outcome {
    &run.report
        .hosts
        .iter()
        .find(|r| r.target.addr == h(host))
        .unwrap()
        .outcome
}

/// The CLI's exit classification of a stage (`tarmac::commands::exec::exit_code`): 0 all
/// succeeded, 2 some host failed, 4 only unreachable hosts. Asserted through the summary it
/// reads.
fn exit_class(run: &StageRun) -> u8 {
    let s = &run.report.summary;
    if s.all_succeeded() {
        0
    } else if s.failed + s.timed_out + s.cancelled + s.skipped > 0 {
        2
    } else {
        4
    }
}

/// The per-host verbs the fake saw, in order.
fn verbs_of(c: &Cluster, host: &str) -> Vec<String> {
    c.fleet
        .log()
        .into_iter()
        .filter(|r| r.host == host)
        .map(|r| r.verb)
        .collect()
}

fn journal(run: &StageRun) -> RunRecord {
    serde_json::from_slice(&std::fs::read(&run.journal).expect("journal written")).unwrap()
}

fn pass(name: &str, detail: &str) -> CheckResult {
    CheckResult {
        name: name.into(),
        passed: true,
        detail: detail.into(),
    }
}

/// install.sh's checks as the fake prints them, all passing.
fn script_checks() -> Vec<CheckResult> {
    [
        "for an existing installation",
        "systemd (>= 245)",
        "required commands",
        "free disk space",
        "free TCP ports (2379 9100)",
    ]
    .iter()
    .map(|n| pass(n, ""))
    .collect()
}

/// Preflight's results for a host, without the clock check's detail (the offset varies).
fn results_without_clock(checks: &[CheckResult]) -> Vec<CheckResult> {
    checks
        .iter()
        .map(|c| {
            if c.name == "clock offset" {
                assert!(c.passed, "clock offset: {c:?}");
                pass("clock offset", "")
            } else {
                c.clone()
            }
        })
        .collect()
}

fn good_results() -> Vec<CheckResult> {
    let mut v = vec![
        pass("architecture", "x86_64"),
        pass("operating system", "debian 12"),
        pass("clock offset", ""),
    ];
    v.extend(script_checks());
    v
}

#[tokio::test]
async fn preflight_names_each_hosts_failing_check_and_tells_unreachable_from_failed() {
    let c = Cluster::bare();
    c.fleet.edit(AGENTS[0], |m| {
        m.os = ("alpine".into(), "3.19".into(), String::new())
    });
    c.fleet
        .edit(AGENTS[1], |m| m.missing_commands = vec!["sha256sum".into()]);
    c.fleet.edit(AGENTS[2], |m| m.arch = "riscv64".into());
    c.fleet.set_reachable(AGENTS[3], false);
    let (run, results) = c
        .installer()
        .preflight(&PreflightOptions::default())
        .await
        .expect("preflight runs");
    no_unknown(&c);
    assert_eq!(
        words(&run),
        expect_words(&[
            (MASTERS[0], "ok"),
            (MASTERS[1], "ok"),
            (MASTERS[2], "ok"),
            (AGENTS[0], "failed"),
            (AGENTS[1], "failed"),
            (AGENTS[2], "failed"),
            (AGENTS[3], "unreachable"),
            (PUBLIC[0], "ok"),
        ])
    );
    assert_eq!(exit_class(&run), 2);
    let failed = |msg: &str| Outcome::Failed {
        exit_code: None,
        signal: None,
        message: msg.into(),
    };
    assert_eq!(
        outcome_of(&run, AGENTS[0]),
        &failed("1 check(s) failed: operating system")
    );
    assert_eq!(
        outcome_of(&run, AGENTS[1]),
        &failed("1 check(s) failed: required commands")
    );
    assert_eq!(
        outcome_of(&run, AGENTS[2]),
        &failed("1 check(s) failed: architecture")
    );
    assert!(
        matches!(outcome_of(&run, AGENTS[3]), Outcome::Unreachable { .. }),
        "{:?}",
        outcome_of(&run, AGENTS[3])
    );
    // What each host reported, check by check; the unreachable one reported nothing.
    assert_eq!(
        results.keys().cloned().collect::<Vec<_>>(),
        [MASTERS.as_slice(), &AGENTS[..3], &PUBLIC]
            .concat()
            .iter()
            .map(|s| h(s))
            .collect::<Vec<_>>()
    );
    for host in [MASTERS[0], MASTERS[1], MASTERS[2], PUBLIC[0]] {
        assert_eq!(
            results_without_clock(&results[&h(host)]),
            good_results(),
            "{host}"
        );
    }
    let mut alpine = good_results();
    alpine[1] = CheckResult {
        name: "operating system".into(),
        passed: false,
        detail: "alpine 3.19 is not a supported distribution (Debian/Ubuntu or RHEL family)".into(),
    };
    assert_eq!(results_without_clock(&results[&h(AGENTS[0])]), alpine);
    let mut no_sha = good_results();
    no_sha[5] = CheckResult {
        name: "required commands".into(),
        passed: false,
        detail: "missing commands: sha256sum".into(),
    };
    assert_eq!(results_without_clock(&results[&h(AGENTS[1])]), no_sha);
    let mut riscv = good_results();
    riscv[0] = CheckResult {
        name: "architecture".into(),
        passed: false,
        detail: "riscv64 is not supported (x86_64 or aarch64)".into(),
    };
    assert_eq!(results_without_clock(&results[&h(AGENTS[2])]), riscv);
    // Preflight uploaded install.sh to every reachable host and installed nothing.
    for host in all_hosts() {
        let m = c.fleet.host(host);
        assert!(!m.installed(), "{host}");
        let want = if host == AGENTS[3] { 0 } else { 1 };
        assert_eq!(c.fleet.count(host, "preflight"), want, "{host}");
        assert_eq!(c.fleet.count(host, "install"), 0, "{host}");
    }
    // The journal says the same.
    let j = journal(&run);
    assert_eq!(j.stage, Stage::Preflight);
    assert_eq!(
        j.unsuccessful_hosts(),
        vec![h(AGENTS[0]), h(AGENTS[1]), h(AGENTS[2]), h(AGENTS[3])]
    );
}

#[tokio::test]
async fn preflight_with_only_an_unreachable_host_is_classified_unreachable() {
    let c = Cluster::bare();
    c.fleet.set_reachable(PUBLIC[0], false);
    let (run, _) = c
        .installer()
        .preflight(&PreflightOptions::default())
        .await
        .unwrap();
    no_unknown(&c);
    let s = &run.report.summary;
    assert_eq!(
        (s.ok, s.failed, s.unreachable, s.total),
        (7, 0, 1, 8),
        "{s:?}"
    );
    assert_eq!(exit_class(&run), 4);
}

#[tokio::test]
async fn preflight_ignore_tolerates_a_named_check_and_an_installed_host_fails() {
    let c = Cluster::bare();
    c.fleet.edit(AGENTS[0], |m| {
        m.os = ("alpine".into(), "3.19".into(), String::new())
    });
    c.fleet.edit(AGENTS[1], |m| m.listening = vec![9100]);
    let (run, results) = c
        .installer()
        .preflight(&PreflightOptions {
            ignore: vec!["operating system".into()],
            ..PreflightOptions::default()
        })
        .await
        .unwrap();
    no_unknown(&c);
    assert_eq!(outcome_of(&run, AGENTS[0]), &Outcome::Ok);
    assert!(!results[&h(AGENTS[0])][1].passed);
    assert_eq!(
        outcome_of(&run, AGENTS[1]),
        &Outcome::Failed {
            exit_code: None,
            signal: None,
            message: "1 check(s) failed: free TCP ports (2379 9100)".into()
        }
    );
    assert_eq!(
        results[&h(AGENTS[1])][7],
        CheckResult {
            name: "free TCP ports (2379 9100)".into(),
            passed: false,
            detail: "in use: 9100".into(),
        }
    );
    // On a cluster that already runs Tarmac, install.sh's first check fails everywhere.
    let c = Cluster::new();
    let (run, results) = c
        .installer()
        .preflight(&PreflightOptions::default())
        .await
        .unwrap();
    no_unknown(&c);
    assert_eq!(run.report.summary.failed, 8);
    assert_eq!(
        outcome_of(&run, MASTERS[0]),
        &Outcome::Failed {
            exit_code: None,
            signal: None,
            message: "1 check(s) failed: for an existing installation".into()
        }
    );
    assert_eq!(
        results[&h(MASTERS[0])][3].detail,
        "Tarmac is already installed on this host (/opt/tarmac/current or /etc/systemd/system/tarmac.target exists).\nUninstall it first (tarmac uninstall), or upgrade instead of reinstalling."
    );
}

#[tokio::test]
async fn deploy_installs_every_host_within_the_parallelism_and_records_journal_and_ledger() {
    let c = Cluster::bare();
    c.config_line("ssh_parallelism: 2");
    c.fleet.set_install_time(Duration::from_millis(60));
    let run = c
        .installer()
        .deploy(&DeployOptions::default())
        .await
        .expect("deploy runs");
    no_unknown(&c);
    assert_eq!(
        words(&run),
        all_hosts()
            .into_iter()
            .map(|h| (h.to_owned(), "ok"))
            .collect::<Vec<_>>()
    );
    // ssh_parallelism: 2 hosts at a time, and it was reached.
    assert_eq!(c.fleet.max_installing(), 2);
    let run_id = run.report.run_id.clone();
    for host in all_hosts() {
        let m = c.fleet.host(host);
        assert_eq!((m.current, m.active()), (1, ids(&NEW)), "{host}");
        // inspect, prepare and upload install.sh, run it, verify.
        assert_eq!(
            verbs_of(&c, host),
            ["active", "mkdir", "upload", "install", "active"],
            "{host}"
        );
        // install.sh ran with the run's operation: its switch log names the deploy.
        assert_eq!(m.switches.len(), 1, "{host}");
        assert_eq!(m.switches[0].operation.as_deref(), Some(run_id.as_str()));
        assert_eq!(
            m.files
                .get("/var/lib/tarmac-push/install.sh")
                .map(|b| b.to_vec()),
            Some(
                std::fs::read(c.genconf().join("serve/install.sh"))
                    .unwrap()
                    .to_vec()
            ),
            "{host}: the uploaded install.sh"
        );
    }
    let j = journal(&run);
    assert_eq!(
        (j.run_id.as_str(), j.stage),
        (run_id.as_str(), Stage::Deploy)
    );
    assert_eq!(j.hosts.len(), 8);
    for (host, r) in &j.hosts {
        assert_eq!(r.outcome, Some(Outcome::Ok), "{host}");
        assert_eq!(r.step.as_deref(), Some("verify"), "{host}");
    }
    let entries = c.installer().ledger().read().unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!((e.seq, e.op, e.complete), (1, Op::Deploy, true));
    assert_eq!(e.runs, vec![run_id]);
    assert_eq!(e.target_before, None);
    let after = e.target_after.as_ref().unwrap();
    assert_eq!(
        (after.list_id.as_str(), &after.packages),
        ("list-new", &ids(&NEW))
    );
    assert_eq!(
        e.hosts,
        all_hosts()
            .into_iter()
            .map(|x| (h(x), "ok".to_owned()))
            .collect::<BTreeMap<_, _>>()
    );
}

#[tokio::test]
async fn deploy_retries_only_the_failed_host_and_a_second_deploy_changes_nothing() {
    let c = Cluster::bare();
    c.fleet.behave(AGENTS[1], |b| {
        b.install_fails = Some("curl: (22) The requested URL returned error: 404".into())
    });
    let run = c
        .installer()
        .deploy(&DeployOptions::default())
        .await
        .unwrap();
    no_unknown(&c);
    let mut want: Vec<(String, &str)> = all_hosts()
        .into_iter()
        .map(|h| (h.to_owned(), "ok"))
        .collect();
    want[4].1 = "failed";
    assert_eq!(words(&run), want);
    assert_eq!(exit_class(&run), 2);
    assert!(!c.fleet.host(AGENTS[1]).installed());
    let e = &c.installer().ledger().read().unwrap()[0];
    assert!(!e.complete);
    assert_eq!(e.hosts[&h(AGENTS[1])], "failed");
    let j = journal(&run);
    assert_eq!(
        j.hosts[&h(AGENTS[1])].failed_step.as_deref(),
        Some("install")
    );

    // --retry-failed: the hosts the last deploy did not finish, and only those.
    let inst = c.installer();
    let retry = inst.failed_last_time(Stage::Deploy).unwrap();
    assert_eq!(retry, vec![h(AGENTS[1])]);
    c.fleet.behave(AGENTS[1], |b| b.install_fails = None);
    c.fleet.clear_log();
    let run = inst
        .deploy(&DeployOptions {
            only: Some(retry),
            ..DeployOptions::default()
        })
        .await
        .unwrap();
    no_unknown(&c);
    assert_eq!(words(&run), expect_words(&[(AGENTS[1], "ok")]));
    assert_eq!(
        c.fleet
            .log()
            .iter()
            .map(|r| r.host.as_str())
            .collect::<std::collections::BTreeSet<_>>(),
        [AGENTS[1]].into_iter().collect()
    );
    assert_eq!(c.fleet.host(AGENTS[1]).active(), ids(&NEW));
    let entries = c.installer().ledger().read().unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries[1].complete);
    assert_eq!(
        entries[1].hosts,
        BTreeMap::from([(h(AGENTS[1]), "ok".to_owned())])
    );

    // Deploy again: every host is on the list already, nothing is uploaded or installed.
    c.fleet.clear_log();
    let run = c
        .installer()
        .deploy(&DeployOptions::default())
        .await
        .unwrap();
    no_unknown(&c);
    assert_eq!(
        words(&run),
        all_hosts()
            .into_iter()
            .map(|h| (h.to_owned(), "unchanged"))
            .collect::<Vec<_>>()
    );
    for host in all_hosts() {
        assert_eq!(verbs_of(&c, host), ["active"], "{host}");
        assert_eq!(c.fleet.host(host).current, 1, "{host}");
    }
}

#[tokio::test]
async fn deploy_on_an_installed_fleet_refuses_and_reconcile_upgrades_without_reinstalling() {
    let c = Cluster::new(); // every host on OLD; genconf serves NEW
    let run = c
        .installer()
        .deploy(&DeployOptions::default())
        .await
        .unwrap();
    no_unknown(&c);
    assert_eq!(run.report.summary.failed, 8);
    match outcome_of(&run, MASTERS[0]) {
        Outcome::Failed { message, .. } => assert!(
            message.ends_with("\nTarmac is installed here with another package list: use `tarmac upgrade` (or `tarmac uninstall` first)"),
            "{message}"
        ),
        o => panic!("{o:?}"),
    }
    for host in all_hosts() {
        assert_eq!(verbs_of(&c, host), ["active"], "{host}");
    }

    c.fleet.clear_log();
    let up = UpgradeOptions {
        batch: BatchSize::Count(2),
        max_failures: Budget::Count(0),
        check_deadline: Duration::from_millis(600),
        ..UpgradeOptions::default()
    };
    let r = c
        .installer()
        .deploy_reconcile(&DeployOptions::default(), &up)
        .await
        .expect("deploy reconciles");
    no_unknown(&c);
    let mut behind: Vec<HostAddr> = all_hosts().into_iter().map(h).collect();
    behind.sort();
    assert_eq!(r.behind, behind);
    assert_eq!(
        words(&r.install),
        all_hosts()
            .into_iter()
            .map(|h| (h.to_owned(), "unchanged"))
            .collect::<Vec<_>>()
    );
    assert!(r.upgrade.as_ref().expect("an upgrade ran").succeeded());
    for host in all_hosts() {
        let m = c.fleet.host(host);
        assert_eq!((m.current, m.active()), (2, ids(&NEW)), "{host}");
        assert_eq!(c.fleet.count(host, "install"), 0, "{host}: reinstalled");
        assert_eq!(c.fleet.count(host, "switch"), 1, "{host}");
        assert_eq!(c.fleet.count(host, "confirm"), 1, "{host}");
    }
    let ops: Vec<Op> = c
        .installer()
        .ledger()
        .read()
        .unwrap()
        .iter()
        .map(|e| e.op)
        .collect();
    assert_eq!(ops, vec![Op::Deploy, Op::Deploy, Op::Upgrade]);
}

#[tokio::test]
async fn status_is_clean_after_deploy_and_names_each_change_behind_the_installers_back() {
    let c = Cluster::bare();
    let run = c
        .installer()
        .deploy(&DeployOptions::default())
        .await
        .unwrap();
    assert!(run.all_succeeded());
    let (srun, report) = c.installer().status(None, None).await.unwrap();
    no_unknown(&c);
    assert_eq!(exit_class(&srun), 0);
    assert_eq!(report.package_list_id.as_deref(), Some("list-new"));
    assert_eq!(report.target_set_by, Some(1));
    for host in all_hosts() {
        let r = &report.hosts[&h(host)];
        assert_eq!(r.standing, Standing::OnTarget, "{host}");
        assert!(r.drift.is_clean(), "{host}: {:?}", r.drift);
        assert_eq!(
            r.placed_by,
            PlacedBy::Entry {
                seq: 1,
                op: Op::Deploy,
                revert: false
            },
            "{host}"
        );
        assert_eq!(r.status.generation.as_deref(), Some("1"), "{host}");
        assert_eq!(outcome_of(&srun, host), &Outcome::Ok, "{host}");
    }

    // Behind the installer's back: a new generation with the same packages, one with the
    // old packages, a unit that stopped, a check that fails.
    c.fleet.switch_by_hand(AGENTS[0], &ids(&NEW));
    c.fleet.switch_by_hand(AGENTS[1], &ids(&OLD));
    c.fleet.edit(MASTERS[1], |m| {
        m.units = BTreeMap::from([
            ("etcd.service".into(), "failed".into()),
            ("exporter.service".into(), "active".into()),
        ])
    });
    c.fleet.behave(PUBLIC[0], |b| b.checks_fail = true);
    let (srun, report) = c.installer().status(None, None).await.unwrap();
    no_unknown(&c);
    assert_eq!(exit_class(&srun), 2);
    let failed = |m: &str| Outcome::Failed {
        exit_code: None,
        signal: None,
        message: m.into(),
    };
    assert_eq!(
        outcome_of(&srun, AGENTS[0]),
        &failed(
            "drift: changed outside the installer: `tarmac-host switch` run outside the installer"
        )
    );
    assert_eq!(
        outcome_of(&srun, AGENTS[1]),
        &failed(
            "drift: 1 package(s) missing; 1 unexpected package(s); changed outside the installer: `tarmac-host switch` run outside the installer"
        )
    );
    assert_eq!(
        outcome_of(&srun, MASTERS[1]),
        &failed("drift: units not active: etcd.service (failed)")
    );
    assert_eq!(
        outcome_of(&srun, PUBLIC[0]),
        &failed("drift: failed checks: exporter/node-exporter")
    );
    let a0 = &report.hosts[&h(AGENTS[0])];
    assert_eq!(
        (a0.standing.clone(), a0.status.generation.as_deref()),
        (Standing::OnTarget, Some("2"))
    );
    let a1 = &report.hosts[&h(AGENTS[1])];
    assert_eq!(a1.standing, Standing::Drift);
    assert_eq!(a1.drift.missing, ids(&["app--2"]));
    assert_eq!(a1.drift.unexpected, ids(&["app--1"]));
    for host in [MASTERS[0], MASTERS[2], AGENTS[2], AGENTS[3]] {
        assert_eq!(outcome_of(&srun, host), &Outcome::Ok, "{host}");
    }
}

/// A config package with a master-only secret file (like the reference distribution's
/// prometheus.yml): genconf's secrets directory and manifest, and the list serving it.
fn with_secret(c: &Cluster) -> (String, Vec<u8>, Vec<u8>) {
    use tarmac_pkg::secrets::{PackageSecrets, SecretFile, SecretsManifest, digest, key_text};
    use tarmac_types::{Digest, Role};
    let id = "tarmac-config--setup_abc".to_owned();
    let key = [7u8; 32];
    let body = b"scrape_configs: []\n# password: hunter2\n".to_vec();
    let dir = c.genconf().join("secrets").join(&id);
    std::fs::create_dir_all(dir.join("etc_master/prometheus")).unwrap();
    std::fs::write(dir.join(".key"), key_text(&key)).unwrap();
    std::fs::write(dir.join("etc_master/prometheus/prometheus.yml"), &body).unwrap();
    let manifest = SecretsManifest {
        format: tarmac_pkg::secrets::MANIFEST_FORMAT,
        packages: BTreeMap::from([(
            id.clone(),
            PackageSecrets {
                files: vec![SecretFile {
                    path: "etc_master/prometheus/prometheus.yml".into(),
                    role: Some(Role::Master),
                    sha256: Digest::of(&body),
                    hmac_sha256: digest(&key, &body),
                    size: body.len() as u64,
                    mode: "0640".into(),
                    owner: None,
                    group: None,
                }],
            },
        )]),
    };
    std::fs::write(
        c.genconf().join("secrets/manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    c.serve("list-secret", &["app--2", "exporter--1", &id]);
    (id, key_text(&key).into_bytes(), body)
}

#[tokio::test]
async fn deploy_delivers_each_roles_secret_files_once_before_install_sh() {
    let c = Cluster::bare();
    let (id, key, body) = with_secret(&c);
    let run = c
        .installer()
        .deploy(&DeployOptions::default())
        .await
        .unwrap();
    no_unknown(&c);
    assert!(run.all_succeeded(), "{:?}", words(&run));
    let key_path = format!("/etc/tarmac/secrets/{id}/.key");
    let file_path = format!("/etc/tarmac/secrets/{id}/etc_master/prometheus/prometheus.yml");
    for host in all_hosts() {
        let m = c.fleet.host(host);
        let secrets: BTreeMap<String, Vec<u8>> = m
            .files
            .iter()
            .filter(|(p, _)| p.starts_with("/etc/tarmac/secrets/"))
            .map(|(p, b)| (p.clone(), b.to_vec()))
            .collect();
        if MASTERS.contains(&host) {
            assert_eq!(
                secrets,
                BTreeMap::from([
                    (key_path.clone(), key.clone()),
                    (file_path.clone(), body.clone())
                ]),
                "{host}"
            );
            // Checked, uploaded (install.sh, the key, the file), then install.sh ran.
            assert_eq!(
                verbs_of(&c, host),
                [
                    "active",
                    "mkdir",
                    "upload",
                    "secrets-check",
                    "upload",
                    "upload",
                    "install",
                    "active"
                ],
                "{host}"
            );
        } else {
            assert_eq!(secrets, BTreeMap::new(), "{host}: got a master's secret");
            assert_eq!(
                verbs_of(&c, host),
                ["active", "mkdir", "upload", "install", "active"],
                "{host}"
            );
        }
    }
    // A master that lost its file and was uninstalled by hand gets only what it lacks.
    c.fleet.edit(MASTERS[0], |m| {
        m.files.remove(&file_path);
        m.current = 0;
    });
    c.fleet.clear_log();
    let run = c
        .installer()
        .deploy(&DeployOptions::default())
        .await
        .unwrap();
    no_unknown(&c);
    assert_eq!(outcome_of(&run, MASTERS[0]), &Outcome::Ok);
    assert_eq!(
        verbs_of(&c, MASTERS[0]),
        [
            "active",
            "mkdir",
            "upload",
            "secrets-check",
            "upload",
            "install",
            "active"
        ]
    );
    assert_eq!(
        c.fleet
            .host(MASTERS[0])
            .files
            .get(&file_path)
            .map(|b| b.to_vec()),
        Some(body)
    );
}

/// bench/upgrade.sh's all-at-once path: every host runs `tarmac-host setup` on a new list
/// behind the installer (recording the operation flag install.sh left: the deploy's run).
/// status then reports drift against the ledger's target; a `tarmac upgrade` switches
/// nothing, records the new list, and status is clean.
#[tokio::test]
async fn an_upgrade_after_an_out_of_band_switch_records_it_and_status_is_clean() {
    let c = Cluster::bare();
    let deploy = c
        .installer()
        .deploy(&DeployOptions::default())
        .await
        .unwrap();
    assert!(deploy.all_succeeded());
    let newer = ["app--3", "exporter--1"];
    c.serve("list-3", &newer);
    for host in all_hosts() {
        c.fleet.switch_recording(
            host,
            &ids(&newer),
            "setup",
            Some(deploy.report.run_id.clone()),
        );
    }
    let (srun, report) = c.installer().status(None, None).await.unwrap();
    no_unknown(&c);
    assert_eq!(report.package_list_id.as_deref(), Some("list-new"));
    assert_eq!(srun.report.summary.failed, 8);
    assert_eq!(
        outcome_of(&srun, AGENTS[0]),
        &Outcome::Failed {
            exit_code: None,
            signal: None,
            message: "drift: 1 package(s) missing; 1 unexpected package(s)".into()
        }
    );
    c.fleet.clear_log();
    let up = c
        .installer()
        .upgrade(&UpgradeOptions {
            check_deadline: Duration::from_millis(600),
            no_backup: true,
            ..UpgradeOptions::default()
        })
        .await
        .unwrap();
    no_unknown(&c);
    assert!(up.succeeded());
    for host in all_hosts() {
        assert_eq!(c.word(host), "unchanged", "{host}");
        assert_eq!(c.fleet.count(host, "switch"), 0, "{host}");
    }
    let (srun, report) = c.installer().status(None, None).await.unwrap();
    assert_eq!(report.package_list_id.as_deref(), Some("list-3"));
    assert_eq!(exit_class(&srun), 0, "{:?}", words(&srun));
}

#[tokio::test]
async fn deploy_through_the_relay_tree_falls_back_past_unreachable_and_failed_parents() {
    let c = Cluster::bare();
    c.config_line("ssh_parallelism: 2");
    c.config_line("relay_fanout: 2");
    c.config_line("relay_port: 8089");
    c.fleet.set_install_time(Duration::from_millis(20));
    // The tree over the config order, k = 2: 10.0.0.1 and 10.0.0.2 pull from bootstrap_url;
    // 10.0.0.3 and 10.0.1.1 under 10.0.0.1; 10.0.1.2 and 10.0.1.3 under 10.0.0.2;
    // 10.0.1.4 and 10.0.2.1 under 10.0.0.3.
    c.fleet.set_reachable("10.0.0.2", false);
    c.fleet.behave("10.0.0.3", |b| {
        b.install_fails = Some("disk full".into());
    });
    let run = tokio::time::timeout(
        Duration::from_secs(30),
        c.installer().deploy(&DeployOptions::default()),
    )
    .await
    .expect("no host waits forever on a parent that is gone")
    .expect("deploy runs");
    no_unknown(&c);
    assert_eq!(
        words(&run),
        expect_words(&[
            ("10.0.0.1", "ok"),
            ("10.0.0.2", "unreachable"),
            ("10.0.0.3", "failed"),
            ("10.0.1.1", "ok"),
            ("10.0.1.2", "ok"),
            ("10.0.1.3", "ok"),
            ("10.0.1.4", "ok"),
            ("10.0.2.1", "ok"),
        ])
    );
    let peer = "http://10.0.0.1:8089";
    for (host, mirrors) in [
        ("10.0.0.1", ""),
        ("10.0.0.3", peer),
        ("10.0.1.1", peer),
        // Under the unreachable 10.0.0.2, which has no parent: bootstrap_url.
        ("10.0.1.2", ""),
        ("10.0.1.3", ""),
        // Under the failed 10.0.0.3: its parent, 10.0.0.1.
        ("10.0.1.4", peer),
        ("10.0.2.1", peer),
    ] {
        assert_eq!(c.fleet.host(host).mirrors, [mirrors], "{host}");
    }
    // Only hosts with children that installed relay; the relay is ended with the deploy.
    assert_eq!(
        c.fleet.host("10.0.0.1").relayed_on.as_deref(),
        Some("10.0.0.1:8089")
    );
    for host in ["10.0.0.3", "10.0.1.1", "10.0.1.4"] {
        assert_eq!(c.fleet.host(host).relayed_on, None, "{host}");
    }
    // The relay and its readiness probe run at once: either may reach the host first.
    let mut v = verbs_of(&c, "10.0.0.1");
    v[6..].sort();
    assert_eq!(
        v,
        [
            "active",
            "mkdir",
            "upload",
            "install",
            "active",
            "detect_ip",
            "relay",
            "relay-ready"
        ]
    );
    // The relay's end is a normal end: 10.0.0.1 is ok, and its journal names the relay.
    assert!(matches!(outcome_of(&run, "10.0.0.1"), Outcome::Ok));
}
