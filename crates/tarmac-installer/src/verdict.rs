//! `status`'s judgement of one host, as a pure function: which target it should be on (from
//! the ledger's [`Expectation`]), whether it is there, on the interim target of an unfinished
//! run, or drifted, and which operation put it where it is.

use serde::{Deserialize, Serialize};
use tarmac_events::Outcome;
use tarmac_types::PackageId;

use crate::ledger::{Entry, Expectation, Op, PlacedBy, placed_by};
use crate::plan::{Drift, HostStatus};

/// Where a host stands against the cluster's target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Standing {
    /// On the target.
    OnTarget,
    /// On the target an unfinished upgrade or rollback started from: expected for now.
    Interim,
    /// On neither.
    Drift,
    /// Nothing installed.
    NotInstalled,
    /// The ledger's last operation left no known target (e.g. `rollback --to N`): packages
    /// are not compared.
    NoTarget,
}

/// The verdict on one host.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub standing: Standing,
    pub drift: Drift,
    pub placed_by: PlacedBy,
}

/// The packages status compares with: the ledger's target, or when the ledger has recorded
/// no operation yet, genconf's current list (`fallback`); nothing after an uninstall of the
/// whole cluster. `None`: the last operation left no known target.
pub fn expected_packages<'a>(
    x: &'a Expectation,
    fallback: &'a [PackageId],
    entries: &[Entry],
) -> Option<&'a [PackageId]> {
    match (&x.target, x.set_by) {
        (Some(t), _) => Some(&t.packages),
        (None, None) => Some(fallback),
        (None, Some(seq)) => entries
            .iter()
            .any(|e| e.seq == seq && e.op == Op::Uninstall)
            .then_some(&[][..]),
    }
}

/// Judge one host.
pub fn judge(
    x: &Expectation,
    fallback: &[PackageId],
    entries: &[Entry],
    st: &HostStatus,
) -> Verdict {
    let expected = expected_packages(x, fallback, entries);
    let drift = Drift::of(expected.unwrap_or(&[]), st);
    let packages_ok = drift.missing.is_empty() && drift.unexpected.is_empty();
    let interim_ok = x.interim.as_ref().is_some_and(|t| {
        Drift::of(&t.packages, st).missing.is_empty()
            && Drift::of(&t.packages, st).unexpected.is_empty()
    });
    let standing = if st.active.is_empty() {
        Standing::NotInstalled
    } else if expected.is_none() {
        Standing::NoTarget
    } else if packages_ok {
        Standing::OnTarget
    } else if interim_ok {
        Standing::Interim
    } else {
        Standing::Drift
    };
    let placed = if st.active.is_empty() {
        PlacedBy::Unknown
    } else {
        placed_by(entries, st.switch.as_ref())
    };
    let mut why = Vec::new();
    match standing {
        Standing::NotInstalled if expected.is_some_and(|e| !e.is_empty()) => {
            why.push("not installed".to_owned())
        }
        Standing::Drift => {
            if !drift.missing.is_empty() {
                why.push(format!("{} package(s) missing", drift.missing.len()));
            }
            if !drift.unexpected.is_empty() {
                why.push(format!("{} unexpected package(s)", drift.unexpected.len()));
            }
        }
        _ => {}
    }
    if !drift.inactive_units.is_empty() {
        why.push(format!(
            "units not active: {}",
            drift.inactive_units.join(", ")
        ));
    }
    if !st.failed_checks.is_empty() {
        why.push(format!("failed checks: {}", st.failed_checks.join(", ")));
    }
    if placed.is_outside() {
        why.push(format!(
            "changed outside the installer: {}",
            placed.describe()
        ));
    }
    let outcome = if why.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Failed {
            exit_code: None,
            signal: None,
            message: format!("drift: {}", why.join("; ")),
        }
    };
    // Report the drift against the target the host is expected on for now.
    let drift = match (&standing, &x.interim) {
        (Standing::Interim, Some(t)) => Drift::of(&t.packages, st),
        _ => drift,
    };
    Verdict {
        outcome,
        standing,
        drift,
        placed_by: placed,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ledger::{Target, expectation};
    use tarmac_types::Generation;
    use tarmac_types::switch::SwitchRecord;

    fn id(s: &str) -> PackageId {
        PackageId::parse(s).unwrap()
    }

    fn target(list: &str, ids: &[&str]) -> Target {
        Target {
            list_id: list.into(),
            packages: ids.iter().map(|s| id(s)).collect(),
        }
    }

    fn entry(
        seq: u64,
        op: Op,
        before: Option<Target>,
        after: Option<Target>,
        complete: bool,
    ) -> Entry {
        Entry {
            seq,
            prev_sha256: String::new(),
            at: String::new(),
            who: String::new(),
            command: vec![],
            op,
            runs: vec![format!("{op}-{seq}")],
            target_before: before,
            target_after: after,
            bootstrap_id: None,
            config_id: None,
            complete,
            hosts: BTreeMap::new(),
        }
    }

    fn host(ids: &[&str], op: Option<&str>) -> HostStatus {
        HostStatus {
            active: ids.iter().map(|s| id(s)).collect(),
            generation: Some("2".into()),
            units: BTreeMap::from([("etcd.service".into(), "active".into())]),
            failed_checks: vec![],
            switch: Some(SwitchRecord {
                to: Generation(2),
                from: Some(Generation(1)),
                command: "activate".into(),
                operation: op.map(str::to_owned),
                at_unix: 0,
                reason: None,
            }),
            switch_log: true,
        }
    }

    #[test]
    fn a_rolled_back_cluster_is_clean_and_names_the_rollback() {
        let a = target("a", &["etcd--1"]);
        let b = target("b", &["etcd--2"]);
        let e = vec![
            entry(1, Op::Deploy, None, Some(a.clone()), true),
            entry(2, Op::Upgrade, Some(a.clone()), Some(b.clone()), true),
            entry(3, Op::Rollback, Some(b.clone()), Some(a.clone()), true),
        ];
        let x = expectation(&e, None);
        let v = judge(
            &x,
            &b.packages,
            &e,
            &host(&["etcd--1"], Some("rollback-3-001-rollback")),
        );
        assert_eq!(v.outcome, Outcome::Ok);
        assert_eq!(v.standing, Standing::OnTarget);
        assert_eq!(
            v.placed_by,
            PlacedBy::Entry {
                seq: 3,
                op: Op::Rollback,
                revert: false
            }
        );
        // --at 2: the same host is drift against the upgrade's target
        let x2 = expectation(&e, Some(2));
        let v = judge(
            &x2,
            &b.packages,
            &e,
            &host(&["etcd--1"], Some("rollback-3")),
        );
        assert_eq!(v.standing, Standing::Drift);
        assert!(matches!(&v.outcome, Outcome::Failed { message, .. }
            if message == "drift: 1 package(s) missing; 1 unexpected package(s)"));
    }

    #[test]
    fn a_partial_upgrade_is_expected_for_now_and_a_hand_switch_is_not() {
        let a = target("a", &["etcd--1"]);
        let b = target("b", &["etcd--2"]);
        let e = vec![
            entry(1, Op::Deploy, None, Some(a.clone()), true),
            entry(2, Op::Upgrade, Some(a.clone()), Some(b.clone()), false),
        ];
        let x = expectation(&e, None);
        assert_eq!(x.resume.as_deref(), Some("upgrade-2"));
        let v = judge(&x, &[], &e, &host(&["etcd--1"], Some("deploy-1")));
        assert_eq!((v.outcome, v.standing), (Outcome::Ok, Standing::Interim));
        assert!(v.drift.missing.is_empty());
        let v = judge(&x, &[], &e, &host(&["etcd--2"], None));
        assert_eq!(v.standing, Standing::OnTarget);
        assert!(matches!(&v.outcome, Outcome::Failed { message, .. }
            if message == "drift: changed outside the installer: `tarmac-host activate` run outside the installer"));
        let v = judge(
            &x,
            &[],
            &e,
            &host(&["etcd--3"], Some("upgrade-2-001-switch")),
        );
        assert_eq!(v.standing, Standing::Drift);
    }

    #[test]
    fn an_empty_ledger_compares_with_genconf_and_an_uninstalled_cluster_expects_nothing() {
        let fallback = vec![id("etcd--1")];
        let x = expectation(&[], None);
        let v = judge(
            &x,
            &fallback,
            &[],
            &host(&["etcd--1"], Some("self-install")),
        );
        assert_eq!((v.outcome, v.standing), (Outcome::Ok, Standing::OnTarget));
        assert_eq!(v.placed_by, PlacedBy::SelfInstall);
        let a = target("a", &["etcd--1"]);
        let e = vec![
            entry(1, Op::Deploy, None, Some(a.clone()), true),
            entry(2, Op::Uninstall, Some(a), None, true),
        ];
        let x = expectation(&e, None);
        let mut gone = host(&[], None);
        gone.units.clear();
        gone.switch = None;
        let v = judge(&x, &fallback, &e, &gone);
        assert_eq!(
            (v.outcome, v.standing),
            (Outcome::Ok, Standing::NotInstalled)
        );
        let v = judge(&x, &fallback, &e, &host(&["etcd--1"], Some("deploy-1")));
        assert_eq!(v.standing, Standing::Drift);
    }
}
