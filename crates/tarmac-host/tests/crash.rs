//! Crash test: `tarmac-host activate` is killed with SIGKILL at random instants and at every
//! named point of a switch (including between the symlink flip and the unit swap). After
//! `tarmac-host recover`, the host must be entirely on the old or entirely on the new
//! generation — `current`, the installed units and their wants links all agree — with no
//! journal or temporaries left, and `tarmac-host verify` must pass.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tarmac_pkg::testkit::{self, Entry};

const BIN: &str = env!("CARGO_BIN_EXE_tarmac-host");

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn cmd(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--root")
        .arg(dir.join("opt"))
        .arg("--config-dir")
        .arg(dir.join("etc"))
        .arg("--state-dir-root")
        .arg(dir.join("state"))
        .args(["--rooted-systemd", "--no-systemd", "--no-users"])
        .env_remove("TARMAC_FAILPOINTS");
    c
}

fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn package(dir: &Path, id: &str, version: &str, units: &[&str], files: usize) -> PathBuf {
    let mut entries = Vec::new();
    let name = id.split("--").next().unwrap();
    entries.push(Entry::exe(
        &format!("bin/{name}"),
        format!("#!/bin/sh\necho {id}\n"),
    ));
    for i in 0..files {
        entries.push(Entry::file(
            &format!("lib/{name}/f{i}"),
            format!("{id} {i} {version}"),
        ));
    }
    entries.push(Entry::file(&format!("etc/{name}.conf"), version));
    for u in units {
        entries.push(Entry::file(
            &format!("systemd/{u}"),
            format!("[Service]\nExecStart=/opt/tarmac/bin/{name} {version}\n"),
        ));
    }
    entries.push(Entry::file(
        &format!("systemd_master/{name}-master.service"),
        format!("[Service]\nExecStart=/bin/true {version}\n"),
    ));
    let bytes = testkit::package(
        &format!(
            r#"{{"environment": {{"{}_V": "{version}"}}}}"#,
            name.to_uppercase()
        ),
        &entries,
    );
    let p = dir.join(format!("{id}.tar.zst"));
    fs::write(&p, bytes).unwrap();
    p
}

const SET_A: [&str; 3] = ["a--1", "b--1", "c--1"];
const SET_B: [&str; 4] = ["a--2", "b--1", "c--2", "d--1"];

fn setup(dir: &Path) {
    fs::create_dir_all(dir.join("etc/roles")).unwrap();
    fs::write(dir.join("etc/roles/master"), "").unwrap();
    let specs: [(&str, &str, &[&str]); 6] = [
        ("a--1", "1", &["a.service", "a.socket"]),
        ("a--2", "2", &["a.service"]),
        ("b--1", "1", &["b.service"]),
        ("c--1", "1", &["c.service", "c-old.service"]),
        ("c--2", "2", &["c.service", "c-new.timer"]),
        ("d--1", "1", &["d.service"]),
    ];
    for (id, v, units) in specs {
        let p = package(dir, id, v, units, 150);
        run_ok(cmd(dir).arg("add").arg(p));
    }
    run_ok(cmd(dir).arg("activate").args(SET_A));
}

/// Which set the host is on after recovery; panics when it is anything but entirely A or B.
fn check_consistent(dir: &Path, context: &str) -> &'static str {
    run_ok(cmd(dir).arg("recover"));
    let opt = dir.join("opt");
    assert!(
        !opt.join("switch-journal.json").exists(),
        "{context}: journal left after recover"
    );
    let cur =
        fs::read_link(opt.join("current")).unwrap_or_else(|e| panic!("{context}: no current: {e}"));
    let gen_dir = opt.join(&cur);
    let active: serde_json::Value =
        serde_json::from_slice(&fs::read(gen_dir.join("active.json")).unwrap()).unwrap();
    let pkgs: Vec<String> = active["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let which = if pkgs == SET_A {
        "A"
    } else if pkgs == SET_B {
        "B"
    } else {
        panic!("{context}: current generation has {pkgs:?}")
    };
    // Installed units are exactly this generation's, byte for byte, and all wanted.
    let want: BTreeMap<String, Vec<u8>> = active["units"]
        .as_object()
        .unwrap()
        .keys()
        .map(|u| {
            (
                u.clone(),
                fs::read(gen_dir.join("systemd").join(u)).unwrap(),
            )
        })
        .collect();
    let ud = opt.join("rooted-systemd");
    assert!(
        !ud.join(".tarmac-staged").exists(),
        "{context}: staged units left"
    );
    let installed: BTreeSet<String> = fs::read_dir(&ud)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "tarmac.target")
        .collect();
    assert_eq!(
        installed,
        want.keys().cloned().collect::<BTreeSet<_>>(),
        "{context}: unit files ({which})"
    );
    for (u, bytes) in &want {
        assert_eq!(
            &fs::read(ud.join(u)).unwrap(),
            bytes,
            "{context}: {u} content ({which})"
        );
    }
    let wanted: BTreeSet<String> = fs::read_dir(ud.join("tarmac.target.wants"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        wanted,
        want.keys().cloned().collect::<BTreeSet<_>>(),
        "{context}: wants links ({which})"
    );
    // The links a service sees agree with the generation.
    let a_bin = fs::read_link(opt.join("bin/a")).unwrap();
    assert!(
        a_bin
            .to_string_lossy()
            .contains(if which == "A" { "a--1" } else { "a--2" }),
        "{context}"
    );
    for sub in ["packages", "generations"] {
        for e in fs::read_dir(opt.join(sub)).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            assert!(!n.starts_with(".tmp-"), "{context}: leftover {sub}/{n}");
        }
    }
    for e in fs::read_dir(&opt).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        assert!(
            !n.contains(".new-") && !n.contains(".tmp-"),
            "{context}: leftover {n}"
        );
    }
    run_ok(cmd(dir).arg("verify"));
    which
}

fn spawn_activate(dir: &Path, set: &[&str], failpoints: &str) -> Child {
    let mut c = cmd(dir);
    c.arg("activate")
        .args(set)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if !failpoints.is_empty() {
        c.env("TARMAC_FAILPOINTS", failpoints);
    }
    c.spawn().unwrap()
}

fn kill(child: &mut Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

#[test]
fn sigkill_at_any_instant_leaves_old_or_new() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test seed: {seed} (set CRASH_SEED to replay)");
    let mut rng = Rng(seed);
    let mut state = check_consistent(dir, "initial");
    assert_eq!(state, "A");
    // How long an uninterrupted activation takes here, to aim the random kills.
    let t = Instant::now();
    let mut c = spawn_activate(dir, &SET_B, "");
    assert!(c.wait().unwrap().success());
    let full = t.elapsed().as_micros() as u64;
    state = check_consistent(dir, "timing run");
    assert_eq!(state, "B");

    let points_old = ["after-journal", "after-generation", "after-stop"];
    let points_new = ["after-flip", "mid-units", "after-units", "after-start"];
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut kills = 0;
    for i in 0..66 {
        let (target_set, target): (&[&str], &str) = if state == "A" {
            (&SET_B, "B")
        } else {
            (&SET_A, "A")
        };
        let context = format!("iteration {i} (seed {seed})");
        match i % 3 {
            0 => {
                // Random instant across the whole run.
                let mut c = spawn_activate(dir, target_set, "");
                std::thread::sleep(Duration::from_micros(rng.below(full + full / 2)));
                kill(&mut c);
                kills += 1;
                // Sometimes also kill the first recovery attempt.
                if rng.below(2) == 0 {
                    let mut r = cmd(dir)
                        .arg("recover")
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap();
                    std::thread::sleep(Duration::from_micros(rng.below(20_000)));
                    kill(&mut r);
                }
                state = check_consistent(dir, &context);
            }
            1 => {
                // Deterministic: die at a named point.
                let all: Vec<&str> = points_old
                    .iter()
                    .chain(points_new.iter())
                    .copied()
                    .collect();
                let point = all[rng.below(all.len() as u64) as usize];
                let mut c = spawn_activate(dir, target_set, &format!("{point}=kill"));
                let st = c.wait().unwrap();
                assert!(!st.success(), "{context}: {point} did not kill");
                kills += 1;
                state = check_consistent(dir, &format!("{context} at {point}"));
                let expect = if points_new.contains(&point) {
                    target
                } else if target == "A" {
                    "B"
                } else {
                    "A"
                };
                assert_eq!(state, expect, "{context}: killed at {point}");
            }
            _ => {
                // Between the flip and the unit swap: pause there, kill from outside.
                let mut c = spawn_activate(dir, target_set, "after-flip=sleep:5000");
                let journal = dir.join("opt/switch-journal.json");
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let flipped = fs::read_link(dir.join("opt/current"))
                        .ok()
                        .and_then(|cur| {
                            fs::read(dir.join("opt").join(cur).join("active.json")).ok()
                        })
                        .is_some_and(|b| {
                            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
                            v["packages"].as_array().unwrap().len() == target_set.len()
                        });
                    if flipped && journal.exists() {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{context}: never reached the flip"
                    );
                    std::thread::sleep(Duration::from_millis(2));
                }
                kill(&mut c);
                kills += 1;
                state = check_consistent(dir, &format!("{context} between flip and units"));
                assert_eq!(
                    state, target,
                    "{context}: the flip happened, so recovery must finish"
                );
            }
        }
        *seen.entry(state).or_default() += 1;
    }
    assert!(kills >= 50, "only {kills} kills");
    assert!(seen.len() == 2, "both outcomes must occur: {seen:?}");
    // Generations accumulate; gc keeps the host verifiable.
    run_ok(cmd(dir).args(["gc", "--keep", "2"]));
    check_consistent(dir, "after gc");
}

#[test]
fn second_activation_fails_naming_the_holder_or_waits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    let mut slow = spawn_activate(dir, &SET_B, "after-generation=sleep:1500");
    let journal = dir.join("opt/switch-journal.json");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !journal.exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = cmd(dir).arg("activate").args(SET_A).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("pid {}", slow.id())) && err.contains("`activate`, running for"),
        "{err}"
    );
    assert!(err.contains("hint: pass --wait"), "{err}");
    // With --wait the second one runs after the first.
    let out = cmd(dir)
        .arg("--wait")
        .arg("activate")
        .args(SET_A)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(slow.wait().unwrap().success());
    assert_eq!(check_consistent(dir, "after waiting"), "A");
}

/// A confirmable switch to B, then its revert killed at every named point of the revert's
/// own switch and right after it (before the pending record is removed): the host is
/// entirely A or B, the record is still there, and `revert` run again ends on A with the
/// record gone and the setup flag restored.
#[test]
fn a_revert_killed_anywhere_finishes_when_run_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    let flags = dir.join("etc/setup-flags");
    fs::create_dir_all(&flags).unwrap();
    let list_a = serde_json::to_string(&SET_A).unwrap();
    let list_b = dir.join("list-b.json");
    fs::write(flags.join("cluster-package-list"), &list_a).unwrap();
    fs::write(&list_b, serde_json::to_string(&SET_B).unwrap()).unwrap();
    let pending = dir.join("opt/pending.json");
    for point in [
        "after-journal",
        "after-generation",
        "after-stop",
        "after-flip",
        "after-units",
        "revert-after-switch",
    ] {
        let out = run_ok(
            cmd(dir)
                .args([
                    "--json",
                    "switch",
                    "--confirm-within",
                    "10m",
                    "--setup-list",
                ])
                .arg(&list_b)
                .args(SET_B),
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["pending"]["to"], v["to"], "{out}");
        assert_eq!(check_consistent(dir, point), "B");
        assert!(pending.exists());
        let st = cmd(dir)
            .arg("revert")
            .env("TARMAC_FAILPOINTS", format!("{point}=kill"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(!st.success(), "{point}: the failpoint did not fire");
        run_ok(cmd(dir).arg("recover"));
        check_consistent(dir, point);
        assert!(
            pending.exists(),
            "{point}: record removed before the revert finished"
        );
        run_ok(cmd(dir).arg("revert"));
        assert_eq!(check_consistent(dir, point), "A", "{point}");
        assert!(!pending.exists(), "{point}");
        assert_eq!(
            fs::read_to_string(flags.join("cluster-package-list")).unwrap(),
            list_a,
            "{point}"
        );
        // The status says who put the host there.
        let st: serde_json::Value =
            serde_json::from_str(&run_ok(cmd(dir).args(["--json", "status"]))).unwrap();
        assert_eq!(st["pending"], serde_json::Value::Null, "{point}");
        assert_eq!(st["switch"]["command"], "revert", "{point}: {st}");
        assert_eq!(st["switch"]["reason"], "requested", "{point}: {st}");
    }
}

/// A fetch stages every package and exposes the set after one flush: killed at any instant,
/// then recovered, each package is either absent or complete (verify passes), nothing
/// temporary is left, and fetching again completes the set.
#[test]
fn a_fetch_killed_at_any_instant_exposes_only_complete_packages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::create_dir_all(dir.join("etc/roles")).unwrap();
    fs::write(dir.join("etc/roles/master"), "").unwrap();
    let ids = ["f--1", "g--1", "h--1", "i--1", "j--1", "k--1"];
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    for id in ids {
        let p = package(&src, id, "1", &[&format!("{}.service", &id[..1])], 300);
        let name = id.split("--").next().unwrap();
        let d = dir.join("repo/packages").join(name);
        fs::create_dir_all(&d).unwrap();
        fs::rename(&p, d.join(p.file_name().unwrap())).unwrap();
    }
    let repo = format!("file://{}", dir.join("repo").display());
    let fetch = |dir: &Path| {
        let mut c = cmd(dir);
        c.args(["fetch", "--repository-url", &repo])
            .args(ids)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let store = dir.join("opt/packages");
    let wipe = || {
        let _ = tarmac_pkg::extract::make_writable_and_remove(&store);
    };
    let t = Instant::now();
    assert!(fetch(dir).status().unwrap().success());
    let full = t.elapsed().as_micros() as u64;
    wipe();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("fetch crash seed: {seed}");
    let mut rng = Rng(seed);
    let mut outcomes = BTreeSet::new();
    for i in 0..20 {
        let mut c = fetch(dir).spawn().unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(full + full / 4)));
        kill(&mut c);
        run_ok(cmd(dir).arg("recover"));
        let present: Vec<String> = match fs::read_dir(&store) {
            Ok(rd) => rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        for n in &present {
            assert!(!n.starts_with('.'), "iteration {i}: leftover {n}");
        }
        // Every exposed package is complete: verify re-hashes each file and the archive.
        run_ok(cmd(dir).arg("verify"));
        outcomes.insert(present.len());
        assert!(fetch(dir).status().unwrap().success(), "iteration {i}");
        run_ok(cmd(dir).arg("verify"));
        assert_eq!(fs::read_dir(&store).unwrap().count(), ids.len());
        wipe();
    }
    eprintln!("packages exposed when killed: {outcomes:?}");
}
