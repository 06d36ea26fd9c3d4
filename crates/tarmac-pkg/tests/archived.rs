//! Role-aware extraction: a package no role of the host uses stays its verified archive
//! (checked entry by entry like any extraction), is audited as such, and is extracted in
//! place, from the re-verified archive, when a role needs it.

use std::collections::BTreeSet;
use std::path::Path;

use tarmac_pkg::extract::{Compression, ExtractError, UnsafeReason};
use tarmac_pkg::files::FileProblem;
use tarmac_pkg::store::{Added, Store, StoreError};
use tarmac_pkg::testkit::{self, Entry};
use tarmac_types::{Digest, PackageId, Role};

fn roles(r: &[Role]) -> BTreeSet<Role> {
    r.iter().copied().collect()
}

/// A master-only package laid out like the reference prometheus.
fn master_only() -> Vec<Entry> {
    vec![
        Entry::dir("./"),
        Entry::file("./buildinfo.full.json", "{}"),
        Entry::dir("./bin_master"),
        Entry::exe("./bin_master/prom", vec![3u8; 200_000]),
        Entry::dir("./check_master"),
        Entry::exe("./check_master/prom", "#!/bin/sh\n"),
        Entry::dir("./libexec"),
        Entry::exe("./libexec/start", "#!/bin/sh\n"),
        Entry::file(
            "./pkginfo.json",
            r#"{"username": "tarmac_prom", "state_directory": true}"#,
        ),
        Entry::file("./share/web/index.html", "<html>"),
        Entry::symlink("./share/web/main.html", "index.html"),
        Entry::hardlink("./share/web/copy.html", "share/web/index.html"),
        Entry::file(
            "./systemd_master/prom.service",
            "[Service]\nExecStart=/bin/true\n",
        ),
    ]
}

fn add(store: &Store, dir: &Path, name: &str, entries: &[Entry]) -> (PackageId, Added) {
    let bytes = testkit::archive(entries, Compression::Zstd);
    let p = dir.join(format!("{name}.tar.zst"));
    std::fs::write(&p, &bytes).unwrap();
    store.add_file(&p, Some(Digest::of(&bytes))).unwrap()
}

/// Every path below `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn a_package_no_role_uses_stays_its_verified_archive_until_a_role_needs_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("packages")).extracting_for(roles(&[Role::Agent]));
    let (id, added) = add(&store, tmp.path(), "prom--1", &master_only());
    let Added::New(ex) = added else {
        panic!("expected a new package")
    };
    assert!(ex.archived);
    // Only the metadata and tarmac-host's own records.
    assert_eq!(
        tree(&store.path(&id)),
        [
            ".tarmac",
            ".tarmac/archive.tar.zst",
            ".tarmac/archived.json",
            ".tarmac/files.json",
            "buildinfo.full.json",
            "pkginfo.json"
        ]
    );
    assert_eq!(
        store.archived(&id).unwrap().unwrap(),
        ["bin_master", "check_master", "systemd_master"]
    );
    let pkg = store.load(&id).unwrap();
    assert_eq!(pkg.info.username.as_deref(), Some("tarmac_prom"));
    assert!(!pkg.needs_extraction(&roles(&[Role::Agent])));
    assert!(!pkg.needs_extraction(&roles(&[Role::Agent, Role::AgentPublic])));
    assert!(pkg.needs_extraction(&roles(&[Role::Agent, Role::Master])));
    // The audit covers the archive too.
    assert_eq!(store.verify(&id).unwrap(), vec![]);
    assert_eq!(store.list().unwrap(), vec![id.clone()]);

    // A role that uses it: extracted in place, from the kept (re-verified) archive.
    assert!(store.extract(&id).unwrap());
    assert!(store.archived(&id).unwrap().is_none());
    let t = tree(&store.path(&id));
    for p in [
        "bin_master/prom",
        "check_master/prom",
        "libexec/start",
        "share/web/copy.html",
        "share/web/main.html",
        "systemd_master/prom.service",
        ".tarmac/archive.tar.zst",
    ] {
        assert!(t.contains(&p.to_owned()), "{p} missing from {t:?}");
    }
    assert!(!t.contains(&".tarmac/archived.json".to_owned()));
    assert_eq!(store.verify(&id).unwrap(), vec![]);
    assert!(!store.extract(&id).unwrap(), "already extracted");
    // Nothing else is left in the store: the archived entry went with the exchange.
    let names: Vec<String> = std::fs::read_dir(store.dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["prom--1"]);

    // Adding it again is a no-op either way.
    assert!(matches!(
        add(&store, tmp.path(), "prom--1", &master_only()).1,
        Added::AlreadyPresent
    ));
}

#[test]
fn packages_a_role_uses_are_extracted_whole_in_any_entry_order() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Store::new(tmp.path().join("packages")).extracting_for(roles(&[Role::Agent]));
    let master = Store::new(tmp.path().join("packages")).extracting_for(roles(&[Role::Master]));
    // The master extracts the master-only package.
    let (id, added) = add(&master, tmp.path(), "prom--1", &master_only());
    assert!(matches!(added, Added::New(ex) if !ex.archived));
    assert!(store_has(&master, &id, "share/web/index.html"));
    // Entries before the directory that decides (unsorted archive): all of it, extracted again.
    let late = vec![
        Entry::file("./pkginfo.json", "{}"),
        Entry::file("./aaa/data", "early"),
        Entry::dir("./bin_master"),
        Entry::exe("./bin_master/m", "m"),
        Entry::exe("./bin/x", "x"),
    ];
    let (id, added) = add(&agent, tmp.path(), "late--1", &late);
    assert!(matches!(added, Added::New(ex) if !ex.archived));
    for p in ["aaa/data", "bin/x", "bin_master/m"] {
        assert!(store_has(&agent, &id, p), "{p}");
    }
    assert_eq!(agent.verify(&id).unwrap(), vec![]);
    // No special directory at all: reached by path, so used by every host.
    let data = vec![
        Entry::file("./pkginfo.json", "{}"),
        Entry::file("./share/x", "x"),
    ];
    let (id, added) = add(&agent, tmp.path(), "data--1", &data);
    assert!(matches!(added, Added::New(ex) if !ex.archived));
    assert!(store_has(&agent, &id, "share/x"));
    // An agent package on an agent.
    let node = vec![
        Entry::file("./pkginfo.json", "{}"),
        Entry::exe("./bin/node", "n"),
        Entry::file("./systemd/node.service", "[Service]\n"),
    ];
    let (id, added) = add(&agent, tmp.path(), "node--1", &node);
    assert!(matches!(added, Added::New(ex) if !ex.archived));
    assert!(store_has(&agent, &id, "bin/node"));
}

fn store_has(store: &Store, id: &PackageId, rel: &str) -> bool {
    std::fs::symlink_metadata(store.path(id).join(rel)).is_ok()
}

#[test]
fn hostile_entries_are_refused_even_where_nothing_is_extracted() {
    let cases: Vec<(Vec<Entry>, UnsafeReason)> = vec![
        (
            vec![Entry::file("./bin_master/../../evil", "x")],
            UnsafeReason::ParentComponent,
        ),
        (
            vec![Entry::symlink("./share/etc", "../../etc")],
            UnsafeReason::SymlinkEscapes {
                target: "../../etc".into(),
            },
        ),
        (
            vec![
                Entry::symlink("./share/out", "."),
                Entry::file("./share/out/x", "x"),
            ],
            UnsafeReason::ThroughSymlink {
                link: "share/out".into(),
            },
        ),
        (
            vec![Entry::Char {
                path: "./bin_master/tty".into(),
            }],
            UnsafeReason::SpecialFile {
                kind: "character device",
            },
        ),
        (
            vec![Entry::hardlink("./share/h", "etc/shadow")],
            UnsafeReason::HardlinkTarget {
                target: "etc/shadow".into(),
            },
        ),
    ];
    for (extra, want) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("packages")).extracting_for(roles(&[Role::Agent]));
        let mut entries = vec![
            Entry::file("./pkginfo.json", "{}"),
            Entry::exe("./bin_master/m", "m"),
        ];
        entries.extend(extra);
        let bytes = testkit::archive(&entries, Compression::Zstd);
        let p = tmp.path().join("evil--1.tar.zst");
        std::fs::write(&p, &bytes).unwrap();
        match store.add_file(&p, None) {
            Err(StoreError::Extract(ExtractError::Unsafe { reason, .. })) => {
                assert_eq!(reason, want)
            }
            other => panic!("expected {want:?}, got {other:?}"),
        }
        let left: Vec<_> = std::fs::read_dir(store.dir()).unwrap().flatten().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn a_tampered_kept_archive_is_reported_and_never_extracted() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("packages")).extracting_for(roles(&[Role::Agent]));
    let (id, _) = add(&store, tmp.path(), "prom--1", &master_only());
    let (archive, _) = store.archive(&id).unwrap();
    let mut bytes = std::fs::read(&archive).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&archive, &bytes).unwrap();
    let problems = store.verify(&id).unwrap();
    assert!(
        matches!(&problems[..], [FileProblem::ContentChanged { path, .. }] if path == ".tarmac/archive.tar.zst"),
        "{problems:?}"
    );
    match store.extract(&id) {
        Err(StoreError::Extract(ExtractError::HashMismatch { .. })) => {}
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
    // Still the archived package, untouched.
    assert!(store.archived(&id).unwrap().is_some());
    let names: Vec<String> = std::fs::read_dir(store.dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["prom--1"]);
}

/// A master-only package as tarmac builds it: pkginfo.json (declaring its special
/// directories) and buildinfo.full.json first, then `rest`.
fn declared(special: &str, rest: Vec<Entry>) -> Vec<Entry> {
    let mut v = vec![
        Entry::dir("./"),
        Entry::file(
            "./pkginfo.json",
            format!(r#"{{"username": "tarmac_prom", "special_dirs": {special}}}"#),
        ),
        Entry::file("./buildinfo.full.json", "{}"),
    ];
    v.extend(rest);
    v
}

#[test]
fn a_declared_unused_package_is_kept_without_reading_past_its_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Store::new(tmp.path().join("packages")).extracting_for(roles(&[Role::Agent]));
    // An unsafe entry after the metadata: an agent never reads that far; the entries are
    // checked when a role needs the package.
    let entries = declared(
        r#"["bin_master", "systemd_master"]"#,
        vec![
            Entry::exe("./bin_master/prom", vec![3u8; 100_000]),
            Entry::symlink("./bin_master/escape", "../../../etc/shadow"),
            Entry::file("./systemd_master/prom.service", "[Service]\n"),
        ],
    );
    let (id, added) = add(&agent, tmp.path(), "prom--1", &entries);
    let Added::New(ex) = added else {
        panic!("expected a new package")
    };
    assert!(ex.archived);
    assert_eq!(
        agent.archived(&id).unwrap().unwrap(),
        ["bin_master", "systemd_master"]
    );
    assert_eq!(
        agent.load(&id).unwrap().info.username.as_deref(),
        Some("tarmac_prom")
    );
    assert!(tree(&agent.path(&id)).contains(&"buildinfo.full.json".to_owned()));
    assert_eq!(agent.verify(&id).unwrap(), vec![]);
    // Becoming a master: the full extraction checks every entry, and refuses.
    let err = agent.extract(&id).unwrap_err();
    assert!(
        matches!(
            &err,
            StoreError::Extract(ExtractError::Unsafe {
                reason: UnsafeReason::SymlinkEscapes { .. },
                ..
            })
        ),
        "{err:?}"
    );
    // …and leaves the archived package as it was.
    assert!(agent.archived(&id).unwrap().is_some());
    assert_eq!(agent.verify(&id).unwrap(), vec![]);
}

#[test]
fn a_declared_used_package_is_extracted_at_once_and_the_declaration_is_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("packages");
    let master = Store::new(&dir).extracting_for(roles(&[Role::Master]));
    let good = declared(
        r#"["bin_master"]"#,
        vec![
            Entry::file("./share/doc", "d"),
            Entry::exe("./bin_master/prom", "p"),
        ],
    );
    // `share/` comes before `bin_master/` here, yet nothing is extracted twice: the
    // declaration says at once that a master uses it.
    let (id, added) = add(&master, tmp.path(), "prom--1", &good);
    assert!(matches!(added, Added::New(ref ex) if !ex.archived));
    assert!(master.path(&id).join("share/doc").is_file());
    assert!(master.path(&id).join("bin_master/prom").is_file());

    // A declaration the archive does not match is refused, by an agent as by a master.
    let lying = declared(r#"["bin"]"#, vec![Entry::exe("./bin_master/prom", "p")]);
    for (who, store) in [
        (
            "master",
            Store::new(&dir).extracting_for(roles(&[Role::Master])),
        ),
        (
            "agent",
            Store::new(&dir).extracting_for(roles(&[Role::Agent])),
        ),
        ("any", Store::new(&dir)),
    ] {
        let bytes = testkit::archive(&lying, Compression::Zstd);
        let p = tmp.path().join("liar--1.tar.zst");
        std::fs::write(&p, &bytes).unwrap();
        let err = store.add_file(&p, Some(Digest::of(&bytes))).unwrap_err();
        assert!(
            matches!(&err, StoreError::Extract(ExtractError::SpecialDirsMismatch { declared, found, .. })
                if declared == &["bin"] && found == &["bin_master"]),
            "{who}: {err:?}"
        );
        assert!(
            !store.contains(&PackageId::parse("liar--1").unwrap()),
            "{who}"
        );
    }
    // An unknown name in the declaration is a pkginfo.json error.
    let odd = declared(r#"["share"]"#, vec![Entry::file("./share/doc", "d")]);
    let bytes = testkit::archive(&odd, Compression::Zstd);
    let p = tmp.path().join("odd--1.tar.zst");
    std::fs::write(&p, &bytes).unwrap();
    let err = master.add_file(&p, Some(Digest::of(&bytes))).unwrap_err();
    assert!(
        err.to_string().contains("`special_dirs` names `share`"),
        "{err}"
    );
}
