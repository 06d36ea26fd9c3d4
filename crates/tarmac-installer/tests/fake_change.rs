//! Membership changes end to end on the fake fleet (no root): the steps in order, the
//! record in `state/change.json`, a failed genconf continued with `--resume` without
//! running the membership step again, and a second change refused while one is unfinished.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{AGENTS, Cluster, MASTERS};
use tarmac_installer::change::{
    Change, ChangeError, ChangeOptions, ChangeState, ChangeStep, Regenerate, Regenerated,
};
use tarmac_types::HostAddr;

fn h(s: &str) -> HostAddr {
    s.parse().unwrap()
}

/// genconf as the fake sees it: serve a new list and validate config.yaml again. Fails
/// the first `fail` times.
struct FakeRegen {
    cluster: Arc<Cluster>,
    fail: AtomicUsize,
    calls: AtomicUsize,
}

/// The reference distribution's rule on the number of masters, enough for the fake.
fn odd_masters(text: &str) -> Result<(), String> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with("master_list:"));
    let first = lines.next().ok_or("no master_list")?;
    let flow = first.trim_start_matches("master_list:").trim();
    let n = if flow.is_empty() {
        // A block list: `- host` lines.
        lines
            .take_while(|l| l.trim_start().starts_with("- "))
            .count()
    } else {
        flow.matches(',').count() + 1
    };
    if n % 2 == 1 {
        Ok(())
    } else {
        Err(format!(
            "genconf/config.yaml:2: master_list: Must have 1, 3, 5, 7, or 9 masters. Found {n}"
        ))
    }
}

impl Regenerate for FakeRegen {
    fn check(&self, config_yaml: &str) -> Result<(), String> {
        odd_masters(config_yaml)
    }

    fn regenerate(&self) -> Result<Regenerated, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err("genconf/config.yaml: ssh_port: must be a number (fake)".into());
        }
        self.cluster.serve("list-after-change", &common::NEW);
        Ok(Regenerated {
            cfg: self.cluster.installer().cfg,
            config_id: "cfg-after".into(),
            cluster_package_list_id: "list-after-change".into(),
        })
    }
}

fn regen(c: &Arc<Cluster>, fail: usize) -> Arc<FakeRegen> {
    Arc::new(FakeRegen {
        cluster: c.clone(),
        fail: AtomicUsize::new(fail),
        calls: AtomicUsize::new(0),
    })
}

fn config(c: &Cluster) -> String {
    std::fs::read_to_string(c.genconf().join("config.yaml")).unwrap()
}

#[tokio::test]
async fn removing_an_agent_runs_every_step_and_a_failed_genconf_resumes_without_repeating_the_membership()
 {
    let c = Arc::new(Cluster::new());
    let gone = AGENTS[1];
    let change = Change::RemoveHosts {
        hosts: vec![h(gone)],
        force: false,
    };
    let r = regen(&c, 1);
    let err = c
        .installer()
        .change(Some(&change), &ChangeOptions::default(), r.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, ChangeError::Regenerate { .. }), "{err}");
    assert_eq!(
        tarmac_types::error_report::text_with_hint(&err),
        format!(
            "config.yaml was changed but genconf failed: genconf/config.yaml: ssh_port: must be a number (fake)\nhint: fix the cause, then run `tarmac remove-hosts {gone} --resume` (config.yaml already has the change)"
        )
    );
    // The host is uninstalled and out of config.yaml; the record stops at genconf.
    assert!(c.fleet.host(gone).uninstalled);
    assert!(!config(&c).contains(gone), "{}", config(&c));
    let st = ChangeState::load(&c.genconf().join("state"))
        .unwrap()
        .unwrap();
    assert_eq!(st.step, ChangeStep::Genconf);
    assert_eq!(st.gone, vec![h(gone)]);
    assert_eq!(st.attempts, 1);
    assert_eq!(c.fleet.count(gone, "uninstall"), 1);

    // Another change waits for this one.
    let other = Change::RemoveHosts {
        hosts: vec![h(AGENTS[0])],
        force: false,
    };
    let err = c
        .installer()
        .change(Some(&other), &ChangeOptions::default(), r.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ChangeError::Unfinished {
                step: ChangeStep::Genconf,
                ..
            }
        ),
        "{err}"
    );
    assert!(!c.fleet.host(AGENTS[0]).uninstalled);

    // --resume: genconf, deploy (rolls the others), postflight; no second uninstall.
    c.fleet.clear_log();
    let opts = ChangeOptions {
        resume: true,
        ..ChangeOptions::default()
    };
    let rep = c.installer().change(None, &opts, r.clone()).await.unwrap();
    assert!(rep.resumed);
    assert!(rep.removed.is_none(), "the membership step ran again");
    assert_eq!(c.fleet.count(gone, "uninstall"), 0);
    assert_eq!(r.calls.load(Ordering::SeqCst), 2);
    assert!(rep.succeeded(), "{:?}", rep.state);
    assert_eq!(rep.state.step, ChangeStep::Done);
    assert_eq!(rep.state.attempts, 2);
    let d = rep.deploy.as_ref().expect("deploy ran");
    assert!(d.succeeded());
    assert!(!d.behind.contains(&h(gone)));
    assert_eq!(
        d.behind.len(),
        MASTERS.len() + AGENTS.len() - 1 + common::PUBLIC.len()
    );
    assert!(rep.postflight.as_ref().unwrap().all_succeeded());
    // Nobody talked to the removed host after its uninstall.
    assert!(
        c.fleet.log().iter().all(|ran| ran.host != gone),
        "{:?}",
        c.fleet.log()
    );
    assert!(c.fleet.unknown().is_empty(), "{:?}", c.fleet.unknown());

    // Finished: --resume has nothing to do, and a new change may start.
    let err = c.installer().change(None, &opts, r).await.unwrap_err();
    assert!(matches!(err, ChangeError::NothingToResume { .. }), "{err}");
}

#[tokio::test]
async fn replace_master_installs_prereqs_on_the_new_host_and_swaps_it_in_place() {
    let c = Arc::new(Cluster::new());
    let fresh = "10.0.9.9";
    c.fleet.add_bare(fresh);
    c.fleet.set_reachable(MASTERS[2], false);
    let change = Change::ReplaceMaster {
        old: h(MASTERS[2]),
        new: h(fresh),
    };
    let rep = c
        .installer()
        .change(Some(&change), &ChangeOptions::default(), regen(&c, 0))
        .await
        .unwrap();
    assert_eq!(rep.state.step, ChangeStep::Done, "{:#?}", rep.deploy);
    // NEW was installed (not upgraded); the others rolled.
    let d0 = rep.deploy.as_ref().unwrap();
    assert!(!d0.behind.contains(&h(fresh)), "{d0:?}");
    assert!(c.fleet.host(fresh).current > 0);
    assert_eq!(rep.state.forgotten, vec![h(MASTERS[2])]);
    let replaced = rep.replaced.as_ref().unwrap();
    assert!(!replaced.old_reachable);
    // config.yaml: NEW in OLD's place, in order.
    let cfg = config(&c);
    assert!(
        cfg.contains(&format!(
            "master_list:\n- {}\n- {}\n- {fresh}\n",
            MASTERS[0], MASTERS[1]
        )),
        "{cfg}"
    );
    assert_eq!(c.fleet.count(fresh, "install-prereqs"), 1);
    assert!(rep.prereqs.as_ref().unwrap().all_succeeded());
    let d = rep.deploy.as_ref().unwrap();
    assert!(d.succeeded(), "{d:?}");
    assert!(rep.succeeded());
}

#[tokio::test]
async fn a_change_that_would_leave_an_invalid_config_is_refused_before_any_host_is_touched() {
    let c = Arc::new(Cluster::new());
    let before = config(&c);
    let change = Change::RemoveHosts {
        hosts: vec![h(MASTERS[2])],
        force: false,
    };
    let err = c
        .installer()
        .change(Some(&change), &ChangeOptions::default(), regen(&c, 0))
        .await
        .unwrap_err();
    assert_eq!(
        tarmac_types::error_report::text_with_hint(&err),
        format!(
            "refused: `remove-hosts {}` would leave config.yaml invalid; nothing was changed:\ngenconf/config.yaml:2: master_list: Must have 1, 3, 5, 7, or 9 masters. Found 2\nhint: change the cluster so that the result is valid (for example add a master first, so that an odd number remains), then run it again",
            MASTERS[2]
        )
    );
    assert!(c.fleet.log().is_empty(), "{:?}", c.fleet.log());
    assert_eq!(config(&c), before);
    assert!(
        ChangeState::load(&c.genconf().join("state"))
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_refused_change_leaves_no_record_and_the_same_hosts_with_force_go_ahead() {
    let c = Arc::new(Cluster::new());
    let gone = AGENTS[2];
    c.fleet.set_reachable(gone, false);
    let plain = Change::RemoveHosts {
        hosts: vec![h(gone)],
        force: false,
    };
    let err = c
        .installer()
        .change(Some(&plain), &ChangeOptions::default(), regen(&c, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ChangeError::DayTwo(tarmac_installer::daytwo::DayTwoError::Unreachable { .. })
        ),
        "{err}"
    );
    assert!(
        ChangeState::load(&c.genconf().join("state"))
            .unwrap()
            .is_none()
    );
    // With --force: forgotten, then genconf fails (the fake's first call); the record
    // keeps `force`, and the same hosts without --force continue it.
    let forced = Change::RemoveHosts {
        hosts: vec![h(gone)],
        force: true,
    };
    let r = regen(&c, 1);
    let err = c
        .installer()
        .change(Some(&forced), &ChangeOptions::default(), r.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, ChangeError::Regenerate { .. }), "{err}");
    let st = ChangeState::load(&c.genconf().join("state"))
        .unwrap()
        .unwrap();
    assert_eq!(st.forgotten, vec![h(gone)]);
    assert_eq!(st.step, ChangeStep::Genconf);
    let again = c
        .installer()
        .change(Some(&plain), &ChangeOptions::default(), r)
        .await
        .unwrap();
    assert!(again.resumed);
    assert!(again.succeeded(), "{:?}", again.state);
    assert_eq!(again.state.attempts, 2);
    assert!(!config(&c).contains(gone));
}
