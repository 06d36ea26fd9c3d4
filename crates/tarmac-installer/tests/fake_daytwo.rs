//! Day-two operations on the fake fleet (no root): the reachability probe and `--force`,
//! the quorum gate in front of the membership hook, and what runs where.

mod common;

use common::{AGENTS, Cluster, MASTERS};
use tarmac_installer::daytwo::DayTwoError;
use tarmac_types::HostAddr;

fn h(s: &str) -> HostAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn an_unreachable_agent_needs_force_and_is_then_forgotten_not_cleaned() {
    let c = Cluster::new();
    c.fleet.set_reachable(AGENTS[0], false);
    let err = c
        .installer()
        .remove_hosts(&[h(AGENTS[0])], false)
        .await
        .unwrap_err();
    assert!(matches!(err, DayTwoError::Unreachable { .. }), "{err}");
    let text = tarmac_types::error_report::text_with_hint(&err);
    assert!(text.contains("pass --force"), "{text}");
    let r = c
        .installer()
        .remove_hosts(&[h(AGENTS[0]), h(AGENTS[1])], true)
        .await
        .unwrap();
    assert_eq!(r.forgotten, vec![h(AGENTS[0])]);
    assert_eq!(r.cleaned, vec![h(AGENTS[1])]);
    assert!(r.members_removed.is_empty());
    assert!(c.fleet.host(AGENTS[1]).uninstalled);
    assert!(!c.fleet.host(AGENTS[0]).uninstalled);
    // No master was asked anything: agents are not quorum members.
    for m in MASTERS {
        assert_eq!(c.fleet.count(m, "membership"), 0, "{m}");
    }
    assert!(c.fleet.unknown().is_empty(), "{:?}", c.fleet.unknown());
    let last = c.installer().ledger().read().unwrap().pop().unwrap();
    assert_eq!(last.op, tarmac_installer::ledger::Op::RemoveHosts);
    assert!(last.complete);
}

#[tokio::test]
async fn removing_a_master_goes_through_the_quorum_gate_and_the_membership_hook() {
    let c = Cluster::new();
    // 3 → 2 members: quorum 2; both remaining masters must pass their checks.
    c.fleet.behave(MASTERS[1], |b| b.checks_fail = true);
    let err = c
        .installer()
        .remove_hosts(&[h(MASTERS[2])], false)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            DayTwoError::Quorum {
                healthy: 1,
                members: 2,
                quorum: 2,
                ..
            }
        ),
        "{text}"
    );
    assert!(
        text.starts_with(&format!("refused: removing {} would break the quorum: 1 of the remaining masters pass their checks ({})", MASTERS[2], MASTERS[0])),
        "{text}"
    );
    assert!(!c.fleet.host(MASTERS[2]).uninstalled, "nothing may change");
    assert!(c.fleet.host(MASTERS[0]).membership.is_empty());

    c.fleet.behave(MASTERS[1], |b| b.checks_fail = false);
    let r = c
        .installer()
        .remove_hosts(&[h(MASTERS[2])], false)
        .await
        .unwrap();
    assert_eq!(r.members_removed, vec![h(MASTERS[2])]);
    assert_eq!(r.cleaned, vec![h(MASTERS[2])]);
    // The hook ran once, on a healthy remaining master, before the uninstall.
    let leader_calls: Vec<_> = MASTERS[..2]
        .iter()
        .flat_map(|m| c.fleet.host(m).membership)
        .collect();
    assert_eq!(
        leader_calls,
        vec![vec!["remove".to_owned(), MASTERS[2].to_owned()]]
    );
    let log = c.fleet.log();
    let member = log.iter().position(|r| r.verb == "membership").unwrap();
    let uninstall = log.iter().position(|r| r.verb == "uninstall").unwrap();
    assert!(member < uninstall);
    // Every master at once is refused before anything runs.
    let all: Vec<HostAddr> = MASTERS.iter().map(|m| h(m)).collect();
    let err = c.installer().remove_hosts(&all, true).await.unwrap_err();
    assert!(matches!(err, DayTwoError::LastMasters { .. }), "{err}");
}

#[tokio::test]
async fn replace_master_moves_the_membership_of_a_dead_master() {
    let c = Cluster::new();
    let fresh = "10.0.9.9";
    c.fleet.add(fresh, &[]);
    c.fleet.set_reachable(MASTERS[2], false);
    // NEW already in the cluster, OLD not a master: refused by name.
    let err = c
        .installer()
        .replace_master(&h(MASTERS[2]), &h(AGENTS[0]))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{} is already in config.yaml as agent", AGENTS[0])),
        "{err}"
    );
    let err = c
        .installer()
        .replace_master(&h(AGENTS[0]), &h(fresh))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{} is agent, not a master", AGENTS[0])),
        "{err}"
    );
    // An unreachable NEW is refused.
    c.fleet.set_reachable(fresh, false);
    let err = c
        .installer()
        .replace_master(&h(MASTERS[2]), &h(fresh))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DayTwoError::NewMasterUnreachable { .. }),
        "{err}"
    );
    c.fleet.set_reachable(fresh, true);
    let r = c
        .installer()
        .replace_master(&h(MASTERS[2]), &h(fresh))
        .await
        .unwrap()
        .expect("the membership moved");
    assert!(!r.old_reachable);
    let calls = c.fleet.host(r.leader.to_string().as_str()).membership;
    assert_eq!(
        calls,
        vec![
            vec!["remove".to_owned(), MASTERS[2].to_owned()],
            vec!["add".to_owned(), fresh.to_owned()],
        ]
    );
    assert!(c.fleet.unknown().is_empty(), "{:?}", c.fleet.unknown());
}
