//! Activation on a temporary root with rooted systemd units and no systemctl: layout,
//! role directories, environment files, swap, rollback, validation, gc, remove, setup,
//! checks, uninstall.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tarmac_activate::{ActivateError, Host, HostConfig, Problem};
use tarmac_events::NullSink;
use tarmac_pkg::testkit::{self, Entry};
use tarmac_types::error_report::Hint;
use tarmac_types::{Digest, Generation, PackageId};

/// The message with its hint (a datum of the error) below it, as the report prints them.
fn with_hint(e: &ActivateError) -> String {
    match e.hint() {
        Some(h) => format!("{e}\nhint: {h}"),
        None => e.to_string(),
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    host: Host,
}

fn fixture(roles: &[&str]) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    fs::create_dir_all(dir.join("etc/roles")).unwrap();
    for r in roles {
        fs::write(dir.join("etc/roles").join(r), "").unwrap();
    }
    let mut cfg = HostConfig::new(dir.join("opt")).rooted_systemd();
    cfg.config_dir = dir.join("etc");
    cfg.state_dir_root = dir.join("state");
    cfg.manage_systemd = false;
    cfg.add_users = false;
    let host = Host::new(cfg, Arc::new(NullSink));
    Fixture {
        _tmp: tmp,
        dir,
        host,
    }
}

fn id(s: &str) -> PackageId {
    PackageId::parse(s).unwrap()
}

impl Fixture {
    /// Put a package built from `entries` (plus pkginfo) into the store.
    fn add(&self, pkg: &str, pkginfo: &str, entries: &[Entry]) -> Digest {
        let bytes = testkit::package(pkginfo, entries);
        let file = self.dir.join(format!("{pkg}.tar.zst"));
        fs::write(&file, &bytes).unwrap();
        let (lock, _) = self.host.lock("add").unwrap();
        self.host
            .add(&lock, &file, Some(Digest::of(&bytes)))
            .unwrap();
        Digest::of(&bytes)
    }

    fn activate(&self, ids: &[&str]) -> Result<tarmac_activate::SwitchReport, ActivateError> {
        let (lock, _) = self.host.lock("activate").unwrap();
        let ids: Vec<PackageId> = ids.iter().map(|s| id(s)).collect();
        self.host.activate(&lock, &ids, "activate")
    }

    fn root(&self) -> &Path {
        &self.host.cfg.root
    }

    fn units(&self) -> PathBuf {
        self.host.cfg.unit_dir.clone()
    }
}

fn service(name: &str, text: &str) -> Entry {
    Entry::file(
        &format!("systemd/{name}"),
        format!("[Service]\nExecStart={text}\n"),
    )
}

/// Everything below `dir` as `path -> kind:detail`, for before/after comparisons.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("link:{}", fs::read_link(&p).unwrap().display()),
                );
            } else if m.is_dir() {
                out.insert(rel.clone(), "dir".into());
                walk(base, &p, out);
            } else {
                out.insert(rel, format!("file:{}", Digest::of(&fs::read(&p).unwrap())));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out.retain(|k, _| !k.ends_with(".lock"));
    out
}

fn base_set(f: &Fixture) {
    f.add(
        "alpha--1",
        r#"{"environment": {"ALPHA_HOME": "/opt/tarmac/active/alpha", "ALPHA_MSG": "it's one"}, "state_directory": true}"#,
        &[
            Entry::exe("bin/alpha", "#!/bin/sh\necho alpha 1\n"),
            Entry::exe("bin_master/alpha-master", "m"),
            Entry::exe("bin_agent/alpha-agent", "a"),
            Entry::file("lib/libalpha.so.1", "elf"),
            Entry::symlink("lib/libalpha.so", "libalpha.so.1"),
            Entry::file("etc/alpha/alpha.conf", "x=1"),
            service("alpha.service", "/opt/tarmac/bin/alpha"),
            Entry::file("systemd_master/alpha-master.service", "[Service]\nExecStart=/bin/true\n"),
            Entry::file("systemd_agent/alpha-agent.service", "[Service]\nExecStart=/bin/true\n"),
            Entry::exe("check/alpha-ok", "#!/bin/sh\necho ALPHA_MSG=\"$ALPHA_MSG\"\n"),
        ],
    );
    f.add(
        "alpha--2",
        r#"{"environment": {"ALPHA_HOME": "/opt/tarmac/active/alpha"}, "state_directory": true}"#,
        &[
            Entry::exe("bin/alpha", "#!/bin/sh\necho alpha 2\n"),
            Entry::file("etc/alpha/alpha.conf", "x=2"),
            service("alpha.service", "/opt/tarmac/bin/alpha --v2"),
        ],
    );
    f.add(
        "beta--1",
        r#"{"requires": ["alpha"], "environment": {"BETA": "b"}}"#,
        &[
            Entry::exe("bin/beta", "#!/bin/sh\necho beta\n"),
            Entry::file("etc/beta.conf", "b"),
            Entry::file("lib/beta/data", "d"),
            service("beta.service", "/opt/tarmac/bin/beta"),
        ],
    );
}

#[test]
fn activate_swap_rollback_on_master() {
    let f = fixture(&["master"]);
    base_set(&f);
    let root = f.root().to_path_buf();
    let store = f.host.store.dir().to_path_buf();

    let r = f.activate(&["beta--1", "alpha--1"]).unwrap();
    assert_eq!((r.from, r.to, r.unchanged), (None, Generation(1), false));
    assert_eq!(
        fs::read_link(root.join("current")).unwrap(),
        PathBuf::from("generations/1")
    );
    for n in [
        "bin",
        "lib",
        "etc",
        "include",
        "environment",
        "environment.export",
        "active",
        "active.json",
    ] {
        assert_eq!(
            fs::read_link(root.join(n)).unwrap(),
            PathBuf::from("current").join(n),
            "{n}"
        );
    }
    // Merged trees with role directories: master only.
    let link = |p: &str| fs::read_link(root.join(p)).unwrap();
    assert_eq!(link("bin/alpha"), store.join("alpha--1/bin/alpha"));
    assert_eq!(
        link("bin/alpha-master"),
        store.join("alpha--1/bin_master/alpha-master")
    );
    assert!(!root.join("bin/alpha-agent").exists());
    assert_eq!(
        link("lib/libalpha.so"),
        store.join("alpha--1/lib/libalpha.so")
    );
    assert_eq!(
        fs::read_to_string(root.join("lib/libalpha.so")).unwrap(),
        "elf"
    );
    assert!(
        fs::symlink_metadata(root.join("lib/beta"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(
        link("etc/alpha/alpha.conf"),
        store.join("alpha--1/etc/alpha/alpha.conf")
    );
    assert_eq!(link("active/alpha"), store.join("alpha--1"));
    assert_eq!(
        fs::read_to_string(root.join("environment")).unwrap(),
        format!(
            "# Tarmac provided environment variables\n\
             LD_LIBRARY_PATH={r}/lib\n\
             PATH={r}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
             \n\
             # package: alpha--1\n\
             ALPHA_HOME=/opt/tarmac/active/alpha\n\
             ALPHA_MSG=\"it's one\"\n\
             \n\
             # package: beta--1\n\
             BETA=b\n\
             \n",
            r = root.display()
        )
    );
    assert_eq!(
        fs::read_to_string(root.join("active.json")).unwrap(),
        "{\n  \"packages\": [\n    \"alpha--1\",\n    \"beta--1\"\n  ],\n  \"roles\": [\n    \"master\"\n  ],\n  \"units\": {\n    \"alpha-master.service\": \"alpha--1\",\n    \"alpha.service\": \"alpha--1\",\n    \"beta.service\": \"beta--1\"\n  }\n}\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("etc/tarmac-service-configuration.json")).unwrap(),
        "{\n  \"sysctl\": {}\n}\n"
    );
    // Units copied (not linked) and wanted by tarmac.target.
    let ud = f.units();
    for u in ["alpha.service", "alpha-master.service", "beta.service"] {
        assert!(fs::symlink_metadata(ud.join(u)).unwrap().is_file(), "{u}");
        assert_eq!(
            fs::read_link(ud.join("tarmac.target.wants").join(u)).unwrap(),
            ud.join(u)
        );
    }
    assert!(!ud.join("alpha-agent.service").exists());
    assert_eq!(
        fs::read_link(ud.join("multi-user.target.wants/tarmac.target")).unwrap(),
        ud.join("tarmac.target")
    );
    assert!(f.dir.join("state/alpha").is_dir());
    assert!(!f.dir.join("state/beta").exists());
    assert!(f.host.verify().unwrap().ok);

    // Same set again: nothing to do.
    assert!(f.activate(&["alpha--1", "beta--1"]).unwrap().unchanged);

    // Swap alpha: only alpha's changed/removed units stop.
    let (lock, _) = f.host.lock("swap").unwrap();
    let r = f.host.swap(&lock, &id("alpha--2")).unwrap();
    drop(lock);
    assert_eq!(r.to, Generation(2));
    assert_eq!(
        r.stopped,
        vec![
            "alpha-master.service".to_owned(),
            "alpha.service".to_owned()
        ]
    );
    assert_eq!(link("bin/alpha"), store.join("alpha--2/bin/alpha"));
    assert!(!root.join("bin/alpha-master").exists());
    assert!(!ud.join("alpha-master.service").exists());
    assert!(!ud.join("tarmac.target.wants/alpha-master.service").exists());
    assert_eq!(
        fs::read_to_string(ud.join("alpha.service")).unwrap(),
        "[Service]\nExecStart=/opt/tarmac/bin/alpha --v2\n"
    );
    assert_eq!(
        f.host.active().unwrap(),
        vec![id("alpha--2"), id("beta--1")]
    );
    assert!(f.host.verify().unwrap().ok);

    // Swap of a name that is not active.
    let (lock, _) = f.host.lock("swap").unwrap();
    assert!(matches!(
        f.host.swap(&lock, &id("gamma--1")),
        Err(ActivateError::NotActive { .. })
    ));
    // Rollback: back to generation 1, no new generation.
    let r = f.host.rollback(&lock, None).unwrap();
    assert_eq!((r.from, r.to), (Some(Generation(2)), Generation(1)));
    assert_eq!(link("bin/alpha"), store.join("alpha--1/bin/alpha"));
    assert!(ud.join("alpha-master.service").is_file());
    assert!(matches!(
        f.host.rollback(&lock, None),
        Err(ActivateError::NoPreviousGeneration { .. })
    ));
    let r = f.host.rollback(&lock, Some(Generation(2))).unwrap();
    assert_eq!(r.to, Generation(2));
    assert!(matches!(
        f.host.rollback(&lock, Some(Generation(9))),
        Err(ActivateError::NoSuchGeneration { .. })
    ));
    let gens = f.host.generations().unwrap();
    assert_eq!(
        gens.iter()
            .map(|g| (g.generation.0, g.current))
            .collect::<Vec<_>>(),
        vec![(1, false), (2, true)]
    );
    assert_eq!(gens[1].command, "swap");

    // Remove refuses packages generations use; gc drops generation 1 and alpha--1.
    let err = f.host.remove(&lock, &[id("alpha--1")]).unwrap_err();
    assert!(err.to_string().contains("used by generation(s) 1"), "{err}");
    let err = f.host.remove(&lock, &[id("alpha--2")]).unwrap_err();
    assert!(err.to_string().contains("(active)"), "{err}");
    let gc = f.host.gc(&lock, 1).unwrap();
    assert_eq!(gc.removed_generations, vec![Generation(1)]);
    assert_eq!(gc.removed_packages, vec![id("alpha--1")]);
    assert_eq!(
        f.host.store.list().unwrap(),
        vec![id("alpha--2"), id("beta--1")]
    );
    assert!(f.host.verify().unwrap().ok);

    // Uninstall removes units and the root, keeps the state directories.
    f.host.uninstall(&lock, false).unwrap();
    drop(lock);
    assert!(!root.exists());
    assert!(f.dir.join("state/alpha").is_dir());
}

#[test]
fn config_package_changes_restart_the_units_that_read_them() {
    let f = fixture(&["master"]);
    f.add(
        "svc--1",
        r#"{"restart_on_change": ["etc/cluster"]}"#,
        &[service("svc.service", "/bin/true")],
    );
    f.add("other--1", "{}", &[service("other.service", "/bin/true")]);
    let cfg = |v: &str, env: &str, cluster: &str| {
        f.add(
            &format!("cfg--setup_{v}"),
            "{}",
            &[
                Entry::file("etc/svc/svc.env", env),
                Entry::file("etc/cluster/cluster.json", cluster),
            ],
        );
    };
    cfg("a", "X=1\n", "{}");
    cfg("b", "X=2\n", "{}");
    cfg("c", "X=2\n", "{\"n\": 2}");
    cfg("d", "X=2\n", "{\"n\": 2}");
    let set = |v: &str| {
        f.activate(&["svc--1", "other--1", &format!("cfg--setup_{v}")])
            .unwrap()
    };
    set("a");
    // etc/svc (always watched by svc) changed: svc restarts, other does not.
    assert_eq!(set("b").stopped, vec!["svc.service".to_owned()]);
    // etc/cluster is in svc's restart_on_change.
    assert_eq!(set("c").stopped, vec!["svc.service".to_owned()]);
    // A new config package with the same bytes restarts nothing.
    let r = set("d");
    assert!(!r.unchanged);
    assert!(r.stopped.is_empty(), "{:?}", r.stopped);
    // Rolling back to generation 1 brings X=1 back: svc restarts again.
    let (lock, _) = f.host.lock("rollback").unwrap();
    let r = f.host.rollback(&lock, Some(Generation(1))).unwrap();
    assert_eq!(r.stopped, vec!["svc.service".to_owned()]);
    drop(lock);
    // A new switch from generation 1, then a plain rollback: back to 1 (the generation it
    // was switched from), not to 4, the newest one below.
    assert_eq!(set("b").to, Generation(5));
    let (lock, _) = f.host.lock("rollback").unwrap();
    let r = f.host.rollback(&lock, None).unwrap();
    assert_eq!((r.from, r.to), (Some(Generation(5)), Generation(1)));
}

#[test]
fn reload_on_change_reloads_instead_of_restarting() {
    let f = fixture(&["master"]);
    f.add(
        "svc--1",
        r#"{"reload_on_change": ["etc/svc/scrape"], "restart_on_change": ["etc/cluster"]}"#,
        &[service("svc.service", "/bin/true")],
    );
    let cfg = |v: &str, scrape: &str, env: &str, cluster: &str| {
        f.add(
            &format!("cfg--setup_{v}"),
            "{}",
            &[
                Entry::file("etc/svc/scrape/targets.yml", scrape),
                Entry::file("etc/svc/svc.env", env),
                Entry::file("etc/cluster/cluster.json", cluster),
            ],
        );
    };
    cfg("a", "a\n", "X=1\n", "{}");
    cfg("b", "a b\n", "X=1\n", "{}");
    cfg("c", "a b c\n", "X=2\n", "{}");
    cfg("d", "a\n", "X=2\n", "{\"n\": 1}");
    let set = |v: &str| f.activate(&["svc--1", &format!("cfg--setup_{v}")]).unwrap();
    set("a");
    // Only the reload path changed: svc reloads, nothing stops.
    let r = set("b");
    assert!(r.stopped.is_empty(), "{:?}", r.stopped);
    assert_eq!(r.reloaded, vec!["svc.service".to_owned()]);
    // etc/svc/svc.env (etc/<name>, restart) changed as well: a restart, no reload.
    let r = set("c");
    assert_eq!(r.stopped, vec!["svc.service".to_owned()]);
    assert!(r.reloaded.is_empty(), "{:?}", r.reloaded);
    // A restart_on_change path changed together with the reload path: restart.
    let r = set("d");
    assert_eq!(r.stopped, vec!["svc.service".to_owned()]);
    assert!(r.reloaded.is_empty());
}

#[test]
fn roles_select_directories() {
    let f = fixture(&["agent_public"]);
    base_set(&f);
    f.activate(&["alpha--1", "beta--1"]).unwrap();
    let root = f.root();
    assert!(!root.join("bin/alpha-master").exists());
    assert!(!root.join("bin/alpha-agent").exists());
    assert!(f.units().join("alpha.service").is_file());
    assert!(!f.units().join("alpha-master.service").exists());
    assert!(!f.units().join("alpha-agent.service").exists());

    let f = fixture(&["slave"]); // pkgpanda's name for an agent
    base_set(&f);
    f.activate(&["alpha--1", "beta--1"]).unwrap();
    assert!(f.root().join("bin/alpha-agent").exists());
    assert!(f.units().join("alpha-agent.service").is_file());
}

#[test]
fn validation_reports_every_problem_and_touches_nothing() {
    let f = fixture(&["master"]);
    base_set(&f);
    f.activate(&["alpha--1", "beta--1"]).unwrap();
    f.add(
        "dup--1",
        r#"{"environment": {"BETA": "again", "PATH": "/x"}}"#,
        &[Entry::exe("bin/beta", "other beta")],
    );
    f.add(
        "sys--1",
        r#"{"requires": ["nothere", {"name": "alsonot", "variant": null}], "sysctl": {"sys": {"vm.swappiness": 1}}}"#,
        &[service("sys.service", "/bin/true"), Entry::file("etc/tarmac-service-configuration.json", "{}")],
    );
    f.add(
        "sys2--1",
        r#"{"sysctl": {"sys2": {"vm.swappiness": "10"}}}"#,
        &[service("sys2.service", "/bin/true")],
    );
    f.add(
        "nosvc--1",
        r#"{"sysctl": {"x": {"kernel.pid_max": 1}}}"#,
        &[],
    );
    f.add(
        "units--1",
        "{}",
        &[
            service("tarmac.target", ""),
            service("README", ""),
            service("beta.service", "/bin/false"),
            service("ssh-foreign.service", "/bin/false"),
            Entry::file("bin/alpha/inside", "a dir where alpha has a file"),
        ],
    );
    fs::write(f.units().join("ssh-foreign.service"), "not ours").unwrap();
    let before = snapshot(&f.dir);
    let err = f
        .activate(&[
            "alpha--1", "alpha--2", "beta--1", "dup--1", "sys--1", "sys2--1", "nosvc--1",
            "units--1",
        ])
        .unwrap_err();
    let ActivateError::Invalid { problems } = &err else {
        panic!("{err}")
    };
    let text = with_hint(&err);
    let has = |p: &dyn Fn(&Problem) -> bool| problems.iter().any(p);
    assert!(
        has(&|p| matches!(p, Problem::RepeatedName { name, .. } if name.as_str() == "alpha")),
        "{text}"
    );
    assert!(
        has(&|p| matches!(p, Problem::MissingRequire { requires, .. } if requires == "nothere")),
        "{text}"
    );
    assert!(
        has(&|p| matches!(p, Problem::MissingRequire { requires, .. } if requires == "alsonot")),
        "{text}"
    );
    assert!(
        has(&|p| matches!(p, Problem::ReservedEnvKey { key, .. } if key == "PATH")),
        "{text}"
    );
    assert!(
        has(&|p| matches!(p, Problem::DuplicateEnvKey { key, .. } if key == "BETA")),
        "{text}"
    );
    assert!(
        has(&|p| matches!(p, Problem::SysctlConflict { key, .. } if key == "vm.swappiness")),
        "{text}"
    );
    assert!(
        has(
            &|p| matches!(p, Problem::SysctlWithoutService { package } if package.to_string() == "nosvc--1")
        ),
        "{text}"
    );
    assert!(
        has(&|p| matches!(p, Problem::FileConflict { path, .. } if path == "bin/beta")),
        "{text}"
    );
    assert!(
        has(&|p| matches!(p, Problem::FileConflict { path, .. } if path == "bin/alpha")),
        "{text}"
    );
    assert!(
        has(&|p| matches!(p, Problem::ReservedPath { .. })),
        "{text}"
    );
    assert!(
        has(&|p| matches!(p, Problem::ReservedUnit { unit, .. } if unit == "tarmac.target")),
        "{text}"
    );
    assert!(
        has(&|p| matches!(p, Problem::BadUnit { path, .. } if path == "systemd/README")),
        "{text}"
    );
    assert!(
        has(&|p| matches!(p, Problem::DuplicateUnit { unit, .. } if unit == "beta.service")),
        "{text}"
    );
    assert!(
        has(&|p| matches!(p, Problem::ForeignUnit { unit, .. } if unit == "ssh-foreign.service")),
        "{text}"
    );
    assert!(
        text.contains("`bin/beta` is provided by both beta--1 (bin/beta) and dup--1 (bin/beta)"),
        "{text}"
    );
    assert!(
        text.ends_with("hint: nothing on the host was changed"),
        "{text}"
    );
    assert_eq!(
        snapshot(&f.dir),
        before,
        "validation must not change the host"
    );

    // Missing packages are named, all of them.
    let err = f
        .activate(&["alpha--1", "zeta--1", "omega--1"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("omega--1, zeta--1"), "{err}");
    assert_eq!(snapshot(&f.dir), before);
}

#[test]
fn file_conflict_between_role_dirs_of_one_package() {
    let f = fixture(&["master"]);
    f.add(
        "x--1",
        "{}",
        &[Entry::exe("bin/x", "1"), Entry::exe("bin_master/x", "2")],
    );
    let err = f.activate(&["x--1"]).unwrap_err().to_string();
    assert!(
        err.contains("`bin/x` is provided by both x--1 (bin/x) and x--1 (bin_master/x)"),
        "{err}"
    );
    assert!(!f.root().join("current").exists());
    assert!(!f.root().join("generations/1").exists());
}

#[test]
fn sysctl_goes_to_the_service_configuration() {
    let f = fixture(&["agent"]);
    f.add(
        "k--1",
        r#"{"sysctl": {"k": {"vm.swappiness": 1}, "k-master": {"vm.max_map_count": 262144}}}"#,
        &[
            service("k.service", "/bin/true"),
            Entry::file("systemd_master/k-master.service", "[Service]\n"),
        ],
    );
    f.activate(&["k--1"]).unwrap();
    assert_eq!(
        fs::read_to_string(f.root().join("etc/tarmac-service-configuration.json")).unwrap(),
        "{\n  \"sysctl\": {\n    \"k\": {\n      \"vm.swappiness\": 1\n    }\n  }\n}\n"
    );
}

#[test]
fn checks_run_with_the_generation_environment() {
    let f = fixture(&["master"]);
    base_set(&f);
    f.activate(&["alpha--1", "beta--1"]).unwrap();
    let specs = tarmac_activate::checks::list_checks(
        &f.host.store,
        &f.host.active().unwrap(),
        &f.host.active_roles().unwrap(),
    )
    .unwrap();
    assert_eq!(specs.len(), 1);
    let env = tarmac_activate::checks::read_environment(&f.root().join("environment"));
    let r = tarmac_activate::checks::run_checks(&specs, std::time::Duration::from_secs(10), &env);
    assert_eq!(r[0].status, tarmac_activate::checks::CheckStatus::Ok);
    assert_eq!(r[0].output, "ALPHA_MSG=it's one\n");
}

#[test]
fn setup_fetches_verifies_and_activates() {
    let f = fixture(&["master"]);
    let repo = f.dir.join("repo");
    let mut list = Vec::new();
    for (pkg, info) in [
        ("alpha--1", r#"{"state_directory": false}"#),
        ("beta--1", r#"{"requires": ["alpha"]}"#),
    ] {
        let pid = id(pkg);
        let bytes = testkit::package(info, &[Entry::exe(&format!("bin/{}", pid.name()), "x")]);
        fs::create_dir_all(repo.join("packages").join(pid.name().as_str())).unwrap();
        fs::write(
            repo.join(format!("packages/{}/{pkg}.tar.zst", pid.name())),
            &bytes,
        )
        .unwrap();
        list.push(
            serde_json::json!({"id": pkg, "sha256": Digest::of(&bytes).hex(), "size": bytes.len()}),
        );
    }
    let flags = f.dir.join("etc/setup-flags");
    fs::create_dir_all(&flags).unwrap();
    fs::write(
        flags.join("repository-url"),
        format!("file://{}\n", repo.display()),
    )
    .unwrap();
    // A list id: fetched from <url>/package_lists/<id>.json.
    fs::create_dir_all(repo.join("package_lists")).unwrap();
    fs::write(
        repo.join("package_lists/abc.json"),
        serde_json::to_vec(&list).unwrap(),
    )
    .unwrap();
    fs::write(flags.join("cluster-package-list"), "abc\n").unwrap();
    let fetcher = tarmac_pkg::Fetcher::default();
    let (lock, _) = f.host.lock("setup").unwrap();
    let r = f.host.setup(&lock, &fetcher).unwrap();
    assert_eq!(r.fetched, vec![id("alpha--1"), id("beta--1")]);
    assert_eq!(r.switch.as_ref().unwrap().to, Generation(1));
    // Again: nothing fetched, nothing switched.
    let r = f.host.setup(&lock, &fetcher).unwrap();
    assert!(r.fetched.is_empty() && r.switch.unwrap().unchanged);

    // A wrong digest in the list: refused before anything is exposed.
    let bytes = testkit::package("{}", &[]);
    list[0] = serde_json::json!({"id": "gamma--1", "sha256": Digest::of(b"nope").hex(), "size": bytes.len()});
    fs::create_dir_all(repo.join("packages/gamma")).unwrap();
    fs::write(repo.join("packages/gamma/gamma--1.tar.zst"), bytes).unwrap();
    fs::write(
        flags.join("cluster-package-list"),
        serde_json::to_vec(&list).unwrap(),
    )
    .unwrap();
    let err = f.host.setup(&lock, &fetcher).unwrap_err();
    assert!(format!("{err}").contains("sha256 mismatch"), "{err}");
    assert!(!f.host.store.contains(&id("gamma--1")));
    assert_eq!(
        f.host.active().unwrap(),
        vec![id("alpha--1"), id("beta--1")]
    );
}

#[test]
fn uninstall_refuses_dangerous_roots() {
    for root in ["/", "/opt", "/etc", "relative/dir"] {
        let cfg = HostConfig::new(root);
        assert!(
            matches!(cfg.check_root(), Err(ActivateError::DangerousRoot { .. })),
            "{root}"
        );
    }
    assert!(HostConfig::new("/opt/tarmac").check_root().is_ok());
}

#[test]
fn second_activation_waits_or_names_the_holder() {
    let f = fixture(&["master"]);
    let (_held, _) = f.host.lock("activate").unwrap();
    let err = f.host.lock("gc").unwrap_err().to_string();
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
}

/// A group this process may give files to: `daemon` as root, else its own primary group.
fn test_group() -> String {
    if unsafe { libc::geteuid() } == 0 {
        return "daemon".into();
    }
    let out = std::process::Command::new("id")
        .arg("-gn")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

const SECRET_KEY: [u8; 32] = [9; 32];
const SECRET: &[u8] = b"password: hunter2\n";

/// A config package whose pkginfo expects the secret `etc_master/svc/svc.yml` (group, 0640)
/// and gives its plain `etc/svc/plain.conf` a group and mode.
fn add_config_package(f: &Fixture, pkg: &str, secret: &[u8], group: &str) {
    let hmac = tarmac_pkg::secrets::digest(&SECRET_KEY, secret).hex();
    f.add(
        pkg,
        &format!(
            r#"{{"files": {{"etc_master/svc/svc.yml": {{"secret": true, "hmac_sha256": "{hmac}", "group": "{group}", "mode": "0640"}},
                "etc/svc/plain.conf": {{"group": "{group}", "mode": "0640"}}}}}}"#
        ),
        &[
            Entry::file("etc/svc/plain.conf", "plain"),
            Entry::file("etc_master/svc/svc.env", "X=1"),
        ],
    );
}

/// Deliver a secret file (and the key) as `tarmac deploy` does: root, 0600, dirs 0700.
fn deliver(f: &Fixture, pkg: &str, bytes: &[u8]) {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = f.dir.join("etc/secrets").join(pkg);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir.join("etc_master/svc"))
        .unwrap();
    fs::write(dir.join(".key"), tarmac_pkg::secrets::key_text(&SECRET_KEY)).unwrap();
    fs::write(dir.join("etc_master/svc/svc.yml"), bytes).unwrap();
    for p in [dir.join(".key"), dir.join("etc_master/svc/svc.yml")] {
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    }
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn secret_files_are_checked_linked_and_restricted() {
    use std::os::unix::fs::MetadataExt;
    let group = test_group();
    let gid = tarmac_activate::users::lookup_group(&group).unwrap().gid;
    let f = fixture(&["master"]);
    add_config_package(&f, "cfg--setup_1", SECRET, &group);
    let dir = f.dir.display().to_string();
    let shown = |e: ActivateError| with_hint(&e).replace(&dir, "<dir>");

    // Nothing delivered: refused, naming the package, the file and what to do.
    assert_eq!(
        shown(f.activate(&["cfg--setup_1"]).unwrap_err()),
        "the package set cannot be activated (1 problem):\n  \
         - cfg--setup_1: the key of its secret files (<dir>/etc/secrets/cfg--setup_1/.key) is unusable (No such file or directory (os error 2)): re-run deploy/upgrade from the controller (secrets are delivered over SSH)\n\
         hint: nothing on the host was changed"
    );
    // Other bytes than the package lists: refused.
    deliver(&f, "cfg--setup_1", b"password: guess\n");
    assert_eq!(
        shown(f.activate(&["cfg--setup_1"]).unwrap_err()),
        "the package set cannot be activated (1 problem):\n  \
         - cfg--setup_1: secret file `etc_master/svc/svc.yml` (<dir>/etc/secrets/cfg--setup_1/etc_master/svc/svc.yml) does not match the package (its hmac-sha256 differs): re-run deploy/upgrade from the controller (secrets are delivered over SSH)\n\
         hint: nothing on the host was changed"
    );
    fs::remove_file(
        f.dir
            .join("etc/secrets/cfg--setup_1/etc_master/svc/svc.yml"),
    )
    .unwrap();
    assert!(
        shown(f.activate(&["cfg--setup_1"]).unwrap_err())
            .contains("- cfg--setup_1: secret file `etc_master/svc/svc.yml` (<dir>/etc/secrets/cfg--setup_1/etc_master/svc/svc.yml) is missing: re-run deploy/upgrade")
    );
    assert!(f.host.current().unwrap().is_none());

    // The right bytes: linked into the tree, then root:<group> 0640 with traversable
    // (not listable) directories above it, up to the configuration directory (here made
    // 0700, as an upload before install.sh could leave it).
    deliver(&f, "cfg--setup_1", SECRET);
    fs::set_permissions(f.dir.join("etc"), fs::Permissions::from_mode(0o700)).unwrap();
    f.activate(&["cfg--setup_1"]).unwrap();
    let secret = f
        .dir
        .join("etc/secrets/cfg--setup_1/etc_master/svc/svc.yml");
    let linked = f.root().join("etc/svc/svc.yml");
    assert_eq!(fs::read(&linked).unwrap(), SECRET);
    assert_eq!(
        fs::canonicalize(&linked).unwrap(),
        fs::canonicalize(&secret).unwrap()
    );
    let m = fs::metadata(&secret).unwrap();
    assert_eq!(
        (mode(&secret), m.uid(), m.gid()),
        (0o640, unsafe { libc::geteuid() }, gid)
    );
    for d in [
        "etc/secrets",
        "etc/secrets/cfg--setup_1",
        "etc/secrets/cfg--setup_1/etc_master",
        "etc/secrets/cfg--setup_1/etc_master/svc",
    ] {
        assert_eq!(mode(&f.dir.join(d)), 0o711, "{d}");
    }
    assert_eq!(mode(&f.dir.join("etc/secrets/cfg--setup_1/.key")), 0o600);
    assert_eq!(mode(&f.dir.join("etc")), 0o711);
    // A plain file of the package gets its group and mode in the store.
    let plain = f
        .host
        .store
        .path(&id("cfg--setup_1"))
        .join("etc/svc/plain.conf");
    assert_eq!(
        (mode(&plain), fs::metadata(&plain).unwrap().gid()),
        (0o640, gid)
    );
    // The audit is clean (the declared mode is not a store problem) ...
    let v = f.host.verify().unwrap();
    assert!(v.ok, "{v:?}");
    // ... until the secret is readable by others or changed.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
    let v = f.host.verify().unwrap();
    assert_eq!(
        v.host
            .iter()
            .map(|h| h.replace(&dir, "<dir>"))
            .collect::<Vec<_>>(),
        [
            "cfg--setup_1: `etc_master/svc/svc.yml` (<dir>/etc/secrets/cfg--setup_1/etc_master/svc/svc.yml) has mode 0644, pkginfo says 0640",
            "cfg--setup_1: secret file `etc_master/svc/svc.yml` (<dir>/etc/secrets/cfg--setup_1/etc_master/svc/svc.yml) is readable by other users (mode 0644)",
        ]
    );
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(&secret, "password: changed\n").unwrap();
    let v = f.host.verify().unwrap();
    assert_eq!(v.host.len(), 1, "{v:?}");
    assert!(v.host[0].ends_with("does not match the package (its hmac-sha256 differs): re-run deploy/upgrade from the controller (secrets are delivered over SSH)"), "{v:?}");
    fs::write(&secret, SECRET).unwrap();

    // A new config package: the old generation keeps its own secret; rollback finds it;
    // gc of the old package removes it.
    add_config_package(&f, "cfg--setup_2", b"password: two\n", &group);
    deliver(&f, "cfg--setup_2", b"password: two\n");
    f.activate(&["cfg--setup_2"]).unwrap();
    assert_eq!(
        fs::read(f.root().join("etc/svc/svc.yml")).unwrap(),
        b"password: two\n"
    );
    {
        let (lock, _) = f.host.lock("rollback").unwrap();
        f.host.rollback(&lock, None).unwrap();
    }
    assert_eq!(fs::read(f.root().join("etc/svc/svc.yml")).unwrap(), SECRET);
    f.activate(&["cfg--setup_2"]).unwrap();
    {
        let (lock, _) = f.host.lock("gc").unwrap();
        let r = f.host.gc(&lock, 1).unwrap();
        assert_eq!(r.removed_packages, vec![id("cfg--setup_1")]);
    }
    assert!(!f.dir.join("etc/secrets/cfg--setup_1").exists());
    assert!(f.dir.join("etc/secrets/cfg--setup_2").exists());
    // uninstall removes every secret.
    {
        let (lock, _) = f.host.lock("uninstall").unwrap();
        f.host.uninstall(&lock, false).unwrap();
    }
    assert!(!f.dir.join("etc/secrets").exists());
}

#[test]
fn an_agent_needs_no_master_secret_and_a_package_cannot_ship_one() {
    let group = test_group();
    let f = fixture(&["agent"]);
    add_config_package(&f, "cfg--setup_1", SECRET, &group);
    // Nothing delivered, and nothing needed: the secret is a master file.
    f.activate(&["cfg--setup_1"]).unwrap();
    assert!(!f.root().join("etc/svc/svc.yml").exists());
    assert!(f.root().join("etc/svc/plain.conf").exists());
    assert!(!f.dir.join("etc/secrets").exists());

    // A package carrying the bytes of a file its pkginfo calls secret, and files entries
    // naming users and groups nobody has.
    let hmac = tarmac_pkg::secrets::digest(&SECRET_KEY, b"x").hex();
    f.add(
        "bad--1",
        &format!(
            r#"{{"files": {{"etc/bad/s": {{"secret": true, "hmac_sha256": "{hmac}"}},
                "etc/bad/o": {{"owner": "tarmac_nobody_here"}},
                "etc/bad/g": {{"group": "tarmac_nogroup_here"}},
                "etc/bad/absent": {{"mode": "0600"}}}}}}"#
        ),
        &[
            Entry::file("etc/bad/s", "x"),
            Entry::file("etc/bad/o", "o"),
            Entry::file("etc/bad/g", "g"),
        ],
    );
    let e = with_hint(&f.activate(&["bad--1"]).unwrap_err());
    assert_eq!(
        e,
        "the package set cannot be activated (4 problems):\n  \
         - bad--1: pkginfo files[\"etc/bad/absent\"] is not a regular file of the package\n  \
         - bad--1: `etc/bad/g` is to belong to group `tarmac_nogroup_here`, which does not exist and is not the own group of a package user in the set\n  \
         - bad--1: `etc/bad/o` is to be owned by `tarmac_nobody_here`, which does not exist and is not a user of a package in the set\n  \
         - bad--1 ships `etc/bad/s` in its archive, but its pkginfo declares it a secret file (secret files are delivered over SSH, never inside a package)\n\
         hint: nothing on the host was changed"
    );
}

#[test]
fn backup_restore_and_membership_hooks() {
    use tarmac_activate::hooks::{self, RestorePhase};
    let f = fixture(&["master"]);
    let log = f.dir.join("hook.log");
    let data = f.dir.join("kv-data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("db"), "k=v1\n").unwrap();
    let d = data.display();
    let l = log.display();
    f.add(
        "kv--1",
        "{}",
        &[
            Entry::exe(
                "backup/kv",
                format!("#!/bin/sh\nset -e\necho \"backup $1\" >> {l}\ncp {d}/db \"$1/db\"\nmkdir \"$1/sub\"\necho meta > \"$1/sub/meta\"\n"),
            ),
            Entry::exe(
                "restore/kv",
                format!("#!/bin/sh\nset -e\necho \"restore $1\" >> {l}\ncase $1 in apply) cp \"$2/db\" {d}/db ;; verify) cmp \"$2/db\" {d}/db ;; esac\n"),
            ),
            Entry::exe(
                "membership/kv",
                format!("#!/bin/sh\necho \"member $*\" >> {l}\n[ \"$1\" = list ] && printf '10.0.0.1\\n10.0.0.2\\n'\n[ \"$1\" = remove ] && [ \"$2\" = bad ] && {{ echo no such member >&2; exit 4; }}\nexit 0\n"),
            ),
        ],
    );
    f.add("plain--1", "{}", &[Entry::file("etc/plain/x", "x")]);
    f.activate(&["kv--1", "plain--1"]).unwrap();
    let active = f.host.active().unwrap();
    let roles = f.host.active_roles().unwrap();
    let env: Vec<(String, String)> = Vec::new();
    let t = std::time::Duration::from_secs(10);

    let out = f.dir.join("backups/snap.tar.zst");
    let b = hooks::backup(&f.host.store, &active, &roles, &env, &out, t).unwrap();
    assert_eq!(b.packages, vec![id("kv--1")]);
    assert_eq!(
        b.files,
        vec![("kv/db".to_owned(), 5), ("kv/sub/meta".to_owned(), 5)]
    );
    let (size, sha) = hooks::hash_file(&out).unwrap();
    assert_eq!((b.size, b.sha256.clone()), (size, sha));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // No work directories are left next to the snapshot.
    assert_eq!(fs::read_dir(out.parent().unwrap()).unwrap().count(), 1);

    fs::write(data.join("db"), "k=v2\n").unwrap();
    for phase in RestorePhase::ALL {
        hooks::restore(
            &f.host.store,
            &active,
            &roles,
            &env,
            &out,
            phase,
            &f.dir.join("work"),
            t,
        )
        .unwrap();
    }
    assert_eq!(fs::read_to_string(data.join("db")).unwrap(), "k=v1\n");
    assert_eq!(fs::read_dir(f.dir.join("work")).unwrap().count(), 0);

    let m = hooks::membership(&f.host.store, &active, &roles, &env, &["list".into()], t).unwrap();
    assert_eq!(m.lines(), ["10.0.0.1", "10.0.0.2"]);
    let err = hooks::membership(
        &f.host.store,
        &active,
        &roles,
        &env,
        &["remove".into(), "bad".into()],
        t,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "membership hook kv of kv--1 exited with code 4:\nno such member"
    );
    let log_text = fs::read_to_string(&log).unwrap();
    assert!(log_text.starts_with("backup /"), "{log_text}");
    assert!(log_text.contains("restore stop\nrestore apply\nrestore start\nrestore verify\nmember list\nmember remove bad\n"), "{log_text}");

    // A snapshot with a hostile member is refused before any hook runs.
    let evil = f.dir.join("evil.tar.zst");
    {
        let mut tar =
            tar::Builder::new(zstd::Encoder::new(fs::File::create(&evil).unwrap(), 1).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_link_name("/etc/passwd").unwrap();
        h.set_size(0);
        tar.append_data(&mut h, "kv/db", std::io::empty()).unwrap();
        tar.into_inner().unwrap().finish().unwrap();
    }
    let before = fs::read_to_string(&log).unwrap();
    let err = hooks::restore(
        &f.host.store,
        &active,
        &roles,
        &env,
        &evil,
        RestorePhase::Apply,
        &f.dir.join("work"),
        t,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("is a Symlink; snapshots hold only files and directories"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&log).unwrap(), before);

    // No package has a hook: a clear error.
    let g = fixture(&["agent"]);
    g.add("plain--1", "{}", &[Entry::file("etc/plain/x", "x")]);
    g.activate(&["plain--1"]).unwrap();
    let err = hooks::backup(
        &g.host.store,
        &g.host.active().unwrap(),
        &g.host.active_roles().unwrap(),
        &env,
        &g.dir.join("s"),
        t,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("no active package has a backup/ hook (active: plain--1)"),
        "{err}"
    );
}

/// A master-only package on an agent stays an archive: activation needs nothing from it, its
/// checks do not run, verify and status say so. Adding the master role extracts it in place
/// at the next activation; its units, checks and `_master` hooks then apply.
#[test]
fn an_agent_keeps_master_only_packages_as_archives_until_it_becomes_a_master() {
    let f = fixture(&["agent"]);
    f.add(
        "db--1",
        r#"{"state_directory": true}"#,
        &[
            Entry::exe("bin_master/db", "#!/bin/sh\necho db\n"),
            Entry::exe("check_master/db", "#!/bin/sh\necho db ok\n"),
            Entry::exe("membership_master/db", "#!/bin/sh\necho 10.0.0.9\n"),
            Entry::file("libexec/db-start", "x"),
            Entry::file(
                "systemd_master/db.service",
                "[Service]\nExecStart=/bin/true\n",
            ),
        ],
    );
    f.add(
        "node--1",
        "{}",
        &[
            Entry::exe("bin/node", "n"),
            Entry::exe("check/node", "#!/bin/sh\necho node ok\n"),
            service("node.service", "/bin/true"),
        ],
    );
    let db = id("db--1");
    assert!(f.host.store.archived(&db).unwrap().is_some());
    assert!(!f.host.store.path(&db).join("bin_master").exists());
    assert!(f.host.store.archived(&id("node--1")).unwrap().is_none());
    f.activate(&["db--1", "node--1"]).unwrap();
    assert!(fs::symlink_metadata(f.root().join("bin/node")).is_ok());
    assert!(!f.units().join("db.service").exists());
    assert!(f.units().join("node.service").exists());
    // The package's state directory is made on every host, as before.
    assert!(f.host.cfg.state_dir_root.join("db").is_dir());
    let checks = tarmac_activate::checks::list_checks(
        &f.host.store,
        &f.host.active().unwrap(),
        &f.host.active_roles().unwrap(),
    )
    .unwrap();
    assert_eq!(
        checks.iter().map(|c| c.check.as_str()).collect::<Vec<_>>(),
        ["node"]
    );
    let v = f.host.verify().unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(
        v.packages
            .iter()
            .map(|p| (p.id.to_string(), p.archived))
            .collect::<Vec<_>>(),
        [("db--1".to_owned(), true), ("node--1".to_owned(), false)]
    );
    assert_eq!(f.host.status(&[]).unwrap().archived, vec![db.clone()]);

    // The host becomes a master too: the next activation extracts db first.
    fs::write(f.dir.join("etc/roles/master"), "").unwrap();
    f.activate(&["db--1", "node--1"]).unwrap();
    assert!(f.host.store.archived(&db).unwrap().is_none());
    assert!(fs::symlink_metadata(f.root().join("bin/db")).is_ok());
    assert!(f.units().join("db.service").exists());
    let roles = f.host.active_roles().unwrap();
    let active = f.host.active().unwrap();
    let checks = tarmac_activate::checks::list_checks(&f.host.store, &active, &roles).unwrap();
    assert_eq!(
        checks.iter().map(|c| c.check.as_str()).collect::<Vec<_>>(),
        ["db", "node"]
    );
    let env = Vec::new();
    let m = tarmac_activate::hooks::membership(
        &f.host.store,
        &active,
        &roles,
        &env,
        &["list".into()],
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(m.lines(), ["10.0.0.9"]);
    let v = f.host.verify().unwrap();
    assert!(v.ok, "{v:?}");
    assert!(v.packages.iter().all(|p| !p.archived));
    assert!(f.host.status(&[]).unwrap().archived.is_empty());

    // Back to the agent-only generation: nothing needs extracting, db stays extracted.
    let (lock, _) = f.host.lock("rollback").unwrap();
    f.host.rollback(&lock, None).unwrap();
    assert!(!f.units().join("db.service").exists());
}

/// `extract_all` (tarmac-host --extract-all) keeps the old behaviour: everything extracted.
#[test]
fn extract_all_extracts_packages_no_role_uses() {
    let mut f = fixture(&["agent"]);
    f.host = Host::new(
        HostConfig {
            extract_all: true,
            ..f.host.cfg.clone()
        },
        Arc::new(NullSink),
    );
    f.add("db--1", "{}", &[Entry::exe("bin_master/db", "d")]);
    assert!(f.host.store.archived(&id("db--1")).unwrap().is_none());
    assert!(
        f.host
            .store
            .path(&id("db--1"))
            .join("bin_master/db")
            .exists()
    );
}
