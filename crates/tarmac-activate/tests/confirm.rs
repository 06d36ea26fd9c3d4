//! Confirm-or-revert on a temporary root (no systemctl): the pending record written with the
//! switch, confirm, refusals, the guard's rule at "boot" and at the deadline with an injected
//! clock, and a revert that is idempotent after a crash.

use std::cell::Cell;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tarmac_activate::confirm::{Clock, Confirmed, GuardOutcome};
use tarmac_activate::{ActivateError, Host, HostConfig};
use tarmac_events::NullSink;
use tarmac_pkg::testkit::{self, Entry};
use tarmac_types::confirm::{REVERT_COMMAND, RevertReason};
use tarmac_types::{Digest, Generation, PackageId};

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    host: Host,
}

/// A clock that starts at `now`, in boot `boot`, and whose sleep advances it.
struct FakeClock {
    now: Cell<u64>,
    boot: String,
    slept: Cell<u64>,
}

impl FakeClock {
    fn new(now: u64, boot: &str) -> FakeClock {
        FakeClock {
            now: Cell::new(now),
            boot: boot.into(),
            slept: Cell::new(0),
        }
    }
}

impl Clock for FakeClock {
    fn now_unix(&self) -> u64 {
        self.now.get()
    }
    fn boot_id(&self) -> Option<String> {
        Some(self.boot.clone())
    }
    fn sleep(&self, secs: u64) {
        self.now.set(self.now.get() + secs);
        self.slept.set(self.slept.get() + secs);
    }
}

fn id(s: &str) -> PackageId {
    PackageId::parse(s).unwrap()
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    fs::create_dir_all(dir.join("etc/roles")).unwrap();
    fs::write(dir.join("etc/roles/master"), "").unwrap();
    let mut cfg = HostConfig::new(dir.join("opt")).rooted_systemd();
    cfg.config_dir = dir.join("etc");
    cfg.state_dir_root = dir.join("state");
    cfg.manage_systemd = false;
    cfg.add_users = false;
    let f = Fixture {
        _tmp: tmp,
        dir,
        host: Host::new(cfg, Arc::new(NullSink)),
    };
    for (pkg, conf) in [("alpha--1", "x=1"), ("alpha--2", "x=2")] {
        let bytes = testkit::package(
            "{}",
            &[
                Entry::exe("bin/alpha", "#!/bin/sh\necho alpha\n"),
                Entry::file("etc/alpha/alpha.conf", conf),
                Entry::file("systemd/alpha.service", "[Service]\nExecStart=/bin/true\n"),
            ],
        );
        let file = f.dir.join(format!("{pkg}.tar.zst"));
        fs::write(&file, &bytes).unwrap();
        let (lock, _) = f.host.lock("add").unwrap();
        f.host.add(&lock, &file, Some(Digest::of(&bytes))).unwrap();
    }
    // Generation 1 runs alpha--1, and the setup flag names it.
    let (lock, _) = f.host.lock("activate").unwrap();
    f.host.activate(&lock, &[id("alpha--1")], "setup").unwrap();
    fs::create_dir_all(f.flags()).unwrap();
    fs::write(f.flags().join("cluster-package-list"), "[\"alpha--1\"]").unwrap();
    f
}

impl Fixture {
    fn flags(&self) -> PathBuf {
        self.dir.join("etc/setup-flags")
    }
    fn flag(&self) -> String {
        fs::read_to_string(self.flags().join("cluster-package-list")).unwrap()
    }
    /// Switch to alpha--2 with a 120 s window at t=1000 in boot `b1`.
    fn switch(&self) -> Generation {
        let (lock, _) = self.host.lock("switch").unwrap();
        let clock = FakeClock::new(1000, "b1");
        let (r, rec) = self
            .host
            .switch_confirmable(
                &lock,
                &[id("alpha--2")],
                Duration::from_secs(120),
                Some(b"[\"alpha--2\"]"),
                &clock,
            )
            .unwrap();
        assert_eq!(rec.to, Some(r.to));
        r.to
    }
    fn confirm(&self, g: Option<u64>) -> Result<Confirmed, ActivateError> {
        let (lock, _) = self.host.lock("confirm").unwrap();
        self.host.confirm(&lock, g.map(Generation))
    }
    fn guard(&self, clock: &FakeClock) -> GuardOutcome {
        self.host
            .confirm_guard(clock, &|| self.host.lock("confirm-guard").map(|(l, _)| l))
            .unwrap()
    }
    fn current(&self) -> Option<Generation> {
        self.host.current().unwrap()
    }
}

#[test]
fn the_record_is_written_with_the_switch_and_confirm_clears_it() {
    let f = fixture();
    let to = f.switch();
    assert_eq!(to, Generation(2));
    let rec = f.host.pending().unwrap().expect("pending");
    assert_eq!((rec.from, rec.to), (Generation(1), Some(Generation(2))));
    assert_eq!((rec.armed_unix, rec.deadline_unix), (1000, 1120));
    assert_eq!(rec.boot_id.as_deref(), Some("b1"));
    assert_eq!(rec.setup_list, Some(Some("[\"alpha--1\"]".into())));
    assert_eq!(f.flag(), "[\"alpha--2\"]");
    let on_disk: serde_json::Value =
        serde_json::from_slice(&fs::read(f.host.pending_path()).unwrap()).unwrap();
    assert_eq!(on_disk["format"], 1);
    assert_eq!(on_disk["deadline_unix"], 1120);

    let st = f.host.status(&["etc/alpha".into()]).unwrap();
    assert_eq!(st.current, Some(Generation(2)));
    assert_eq!(st.previous, Some(Generation(1)));
    assert_eq!(st.active, vec![id("alpha--2")]);
    assert_eq!(st.pending.as_ref().map(|p| p.from), Some(Generation(1)));
    assert_eq!(
        st.watched.get("etc/alpha/alpha.conf").map(String::as_str),
        Some(Digest::of(b"x=2").hex().as_str())
    );

    // The wrong generation is refused and changes nothing.
    let e = f.confirm(Some(3)).unwrap_err();
    assert!(
        matches!(
            e,
            ActivateError::ConfirmMismatch {
                asked: Generation(3),
                pending: Some(Generation(2))
            }
        ),
        "{e}"
    );
    assert!(f.host.pending().unwrap().is_some());
    assert_eq!(
        f.confirm(Some(2)).unwrap(),
        Confirmed::Confirmed {
            generation: Generation(2)
        }
    );
    assert!(f.host.pending().unwrap().is_none());
    // Idempotent; the guard then has nothing to do, even long after the deadline.
    assert_eq!(
        f.confirm(Some(2)).unwrap(),
        Confirmed::NothingPending {
            current: Some(Generation(2))
        }
    );
    assert_eq!(
        f.guard(&FakeClock::new(99_999, "b2")),
        GuardOutcome::NothingPending
    );
    assert_eq!(f.current(), Some(Generation(2)));
    assert_eq!(f.flag(), "[\"alpha--2\"]");
}

#[test]
fn a_record_that_survived_a_reboot_reverts_at_boot() {
    let f = fixture();
    f.switch();
    // "Boot": another boot id, well inside the window.
    let (lock, _) = f.host.lock("setup").unwrap();
    let r = f
        .host
        .enforce_pending(&lock, &FakeClock::new(1010, "b2"))
        .unwrap()
        .expect("reverted");
    drop(lock);
    assert_eq!(r.reason, RevertReason::Reboot);
    assert_eq!(f.current(), Some(Generation(1)));
    assert!(f.host.pending().unwrap().is_none());
    assert_eq!(f.flag(), "[\"alpha--1\"]");
    // Audited: the switch log says revert, why, and for which operation.
    let st = f.host.status(&[]).unwrap();
    let rec = st.switch.expect("a switch record");
    assert_eq!(rec.command, REVERT_COMMAND);
    assert_eq!(rec.reason, Some(RevertReason::Reboot));
    assert_eq!((rec.from, rec.to), (Some(Generation(2)), Generation(1)));
    // Too late to confirm now.
    let e = f.confirm(Some(2)).unwrap_err();
    assert!(
        matches!(e, ActivateError::ConfirmTooLate { reverted: true, .. }),
        "{e}"
    );
}

#[test]
fn an_expired_record_reverts_and_a_future_one_waits() {
    let f = fixture();
    f.switch();
    // Same boot, inside the window: enforce leaves it.
    let (lock, _) = f.host.lock("setup").unwrap();
    assert!(
        f.host
            .enforce_pending(&lock, &FakeClock::new(1100, "b1"))
            .unwrap()
            .is_none()
    );
    drop(lock);
    assert_eq!(f.current(), Some(Generation(2)));
    // The guard sleeps until the deadline, then reverts.
    let clock = FakeClock::new(1100, "b1");
    match f.guard(&clock) {
        GuardOutcome::Reverted(r) => assert_eq!(r.reason, RevertReason::Deadline),
        other => panic!("{other:?}"),
    }
    assert_eq!(clock.now_unix(), 1120);
    assert_eq!(clock.slept.get(), 20);
    assert_eq!(f.current(), Some(Generation(1)));
    assert_eq!(f.flag(), "[\"alpha--1\"]");
    // An expired record at boot in the same boot (a container keeps its boot id) reverts too.
    f.switch();
    let (lock, _) = f.host.lock("setup").unwrap();
    let r = f
        .host
        .enforce_pending(&lock, &FakeClock::new(5000, "b1"))
        .unwrap()
        .expect("reverted");
    assert_eq!(r.reason, RevertReason::Deadline);
}

#[test]
fn a_revert_interrupted_after_its_switch_finishes_on_the_next_run() {
    let f = fixture();
    f.switch();
    // The revert's switch happened (a rollback to 1), then the process died: the record and
    // the new setup flag are still there.
    let (lock, _) = f.host.lock("rollback").unwrap();
    f.host.rollback(&lock, Some(Generation(1))).unwrap();
    assert!(f.host.pending().unwrap().is_some());
    assert_eq!(f.flag(), "[\"alpha--2\"]");
    let r = f
        .host
        .revert_pending(&lock, RevertReason::Deadline)
        .unwrap()
        .expect("reverted");
    assert!(r.switch.is_none(), "not switched twice");
    assert_eq!(f.current(), Some(Generation(1)));
    assert_eq!(f.flag(), "[\"alpha--1\"]");
    assert!(f.host.pending().unwrap().is_none());
    // Again: nothing to do.
    assert!(
        f.host
            .revert_pending(&lock, RevertReason::Deadline)
            .unwrap()
            .is_none()
    );
    assert_eq!(f.current(), Some(Generation(1)));
}

#[test]
fn a_failed_revert_keeps_the_record() {
    let f = fixture();
    f.switch();
    // Generation 1 is gone (say, damaged): the revert cannot switch, so the record stays
    // for the next try instead of silently leaving the host on the unconfirmed generation.
    let g1 = f.host.cfg.generation_dir(Generation(1));
    fs::rename(&g1, f.dir.join("g1-aside")).unwrap();
    let (lock, _) = f.host.lock("revert").unwrap();
    assert!(
        f.host
            .revert_pending(&lock, RevertReason::Requested)
            .is_err()
    );
    assert!(f.host.pending().unwrap().is_some());
    fs::rename(f.dir.join("g1-aside"), &g1).unwrap();
    assert!(
        f.host
            .revert_pending(&lock, RevertReason::Requested)
            .unwrap()
            .is_some()
    );
    assert_eq!(f.current(), Some(Generation(1)));
    assert!(f.host.pending().unwrap().is_none());
}

#[test]
fn a_failed_activation_reverts_at_once() {
    let f = fixture();
    let (lock, _) = f.host.lock("switch").unwrap();
    let e = f.host.switch_confirmable(
        &lock,
        &[id("missing--9")],
        Duration::from_secs(60),
        Some(b"[\"missing--9\"]"),
        &FakeClock::new(1000, "b1"),
    );
    assert!(e.is_err());
    assert_eq!(f.current(), Some(Generation(1)));
    assert!(f.host.pending().unwrap().is_none());
    assert_eq!(f.flag(), "[\"alpha--1\"]");
}

#[test]
fn a_switch_killed_before_it_recorded_its_generation_can_still_be_confirmed() {
    let f = fixture();
    f.switch();
    // As if the switch died right after its flip: the record has no `to`.
    let mut rec = f.host.pending().unwrap().unwrap();
    rec.to = None;
    fs::write(f.host.pending_path(), serde_json::to_vec(&rec).unwrap()).unwrap();
    let e = f.confirm(Some(3)).unwrap_err();
    assert!(
        matches!(
            e,
            ActivateError::ConfirmMismatch {
                pending: Some(Generation(2)),
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        f.confirm(Some(2)).unwrap(),
        Confirmed::Confirmed {
            generation: Generation(2)
        }
    );
    // Died before its flip: the host is still on `from`; nothing can be confirmed.
    f.switch();
    let (lock, _) = f.host.lock("rollback").unwrap();
    f.host.rollback(&lock, Some(Generation(2))).unwrap();
    drop(lock);
    let mut rec = f.host.pending().unwrap().unwrap();
    assert_eq!(rec.from, Generation(2));
    rec.to = None;
    fs::write(f.host.pending_path(), serde_json::to_vec(&rec).unwrap()).unwrap();
    let e = f.confirm(Some(2)).unwrap_err();
    assert!(
        matches!(e, ActivateError::ConfirmMismatch { pending: None, .. }),
        "{e}"
    );
    assert!(f.host.pending().unwrap().is_some());
}
