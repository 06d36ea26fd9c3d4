//! Staged adds: a set of packages is written completely, then exposed together after one
//! flush (`Staging::commit`); nothing is visible before the commit, and a staging dropped
//! without a commit leaves nothing behind.

use std::path::Path;
use std::sync::Arc;

use tarmac_pkg::extract::{Compression, Staging};
use tarmac_pkg::store::{Added, Store};
use tarmac_pkg::testkit::{self, Entry};
use tarmac_types::{Digest, PackageId};

fn package(n: u8) -> Vec<Entry> {
    vec![
        Entry::dir("./"),
        Entry::file("./pkginfo.json", "{}"),
        Entry::exe("./bin/tool", vec![n; 50_000]),
        Entry::file("./etc/conf", format!("n = {n}\n")),
    ]
}

fn write_archive(dir: &Path, name: &str, entries: &[Entry]) -> (std::path::PathBuf, Digest) {
    let bytes = testkit::archive(entries, Compression::Zstd);
    let p = dir.join(format!("{name}.tar.zst"));
    std::fs::write(&p, &bytes).unwrap();
    (p, Digest::of(&bytes))
}

/// Names in the store directory, sorted (temporary ones included).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn staged_packages_appear_together_at_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("packages");
    let staging = Arc::new(Staging::new());
    let store = Store::new(&dir).staged_in(staging.clone());
    let mut ids = Vec::new();
    for n in 1..=3u8 {
        let (p, sha) = write_archive(tmp.path(), &format!("p{n}--1"), &package(n));
        let (id, added) = store.add_file(&p, Some(sha)).unwrap();
        assert!(matches!(added, Added::New(_)));
        ids.push(id);
    }
    // Written, not exposed: only temporary names, which recovery would remove.
    let before = names(&dir);
    assert_eq!(before.len(), 3, "{before:?}");
    assert!(before.iter().all(|n| n.starts_with(".tmp-")), "{before:?}");
    assert!(Store::new(&dir).list().unwrap().is_empty());

    staging.commit(&dir).unwrap();
    let plain = Store::new(&dir);
    assert_eq!(plain.list().unwrap(), ids);
    for (i, id) in ids.iter().enumerate() {
        assert!(plain.verify(id).unwrap().is_empty());
        let conf = std::fs::read_to_string(plain.path(id).join("etc/conf")).unwrap();
        assert_eq!(conf, format!("n = {}\n", i + 1));
    }
    assert_eq!(names(&dir).len(), 3);
    // A second commit has nothing left to do.
    staging.commit(&dir).unwrap();
}

#[test]
fn the_same_id_staged_twice_keeps_one_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("packages");
    let staging = Arc::new(Staging::new());
    let store = Store::new(&dir).staged_in(staging.clone());
    let (p, sha) = write_archive(tmp.path(), "p--1", &package(7));
    store.add_file(&p, Some(sha)).unwrap();
    store.add_file(&p, Some(sha)).unwrap();
    staging.commit(&dir).unwrap();
    let id = PackageId::parse("p--1").unwrap();
    assert_eq!(names(&dir), ["p--1"]);
    assert!(Store::new(&dir).verify(&id).unwrap().is_empty());
}

#[test]
fn a_staging_dropped_without_commit_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("packages");
    {
        let staging = Arc::new(Staging::new());
        let store = Store::new(&dir).staged_in(staging.clone());
        let (p, sha) = write_archive(tmp.path(), "p--1", &package(1));
        store.add_file(&p, Some(sha)).unwrap();
        assert_eq!(names(&dir).len(), 1);
    }
    assert!(names(&dir).is_empty(), "{:?}", names(&dir));
}
