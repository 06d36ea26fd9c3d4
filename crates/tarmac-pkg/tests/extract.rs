//! Extraction and fetching: good archives in every compression, hostile archives refused
//! with nothing left behind, integrity checks, and resumable HTTP downloads.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tarmac_types::error_report::text_with_hint;

use tarmac_pkg::Fetcher;
use tarmac_pkg::extract::{Compression, ExtractError, Pin, UnsafeReason};
use tarmac_pkg::files::{FileEntry, FileManifest, FileProblem};
use tarmac_pkg::store::{Added, Store, StoreError};
use tarmac_pkg::testkit::{self, Entry};
use tarmac_types::{Digest, PackageId};

const PKGINFO: &str = r#"{"requires": [], "environment": {"FOO": "1"}}"#;

fn good_entries() -> Vec<Entry> {
    vec![
        Entry::dir("./"),
        Entry::file("./pkginfo.json", PKGINFO),
        Entry::dir("./bin"),
        Entry::exe("./bin/hello", "#!/bin/sh\necho hello\n"),
        Entry::dir("./lib"),
        Entry::file("./lib/libx.so.1", vec![7u8; 300_000]),
        Entry::symlink("./lib/libx.so", "libx.so.1"),
        Entry::hardlink("./lib/libx-copy.so.1", "lib/libx.so.1"),
        Entry::file("./share/doc/readme", "implicit parents"),
        Entry::Dir {
            path: "./ro".into(),
            mode: 0o555,
        },
        Entry::file("./ro/inside", "x"),
    ]
}

/// Store entries other than what the test expects: must be none after a failure.
fn store_leftovers(store: &Path) -> Vec<String> {
    match std::fs::read_dir(store) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn add(
    store: &Store,
    dir: &Path,
    file_name: &str,
    bytes: &[u8],
) -> Result<(PackageId, Added), StoreError> {
    let p = dir.join(file_name);
    std::fs::write(&p, bytes).unwrap();
    store.add_file(&p, None)
}

#[test]
fn extracts_every_compression_and_records_a_manifest() {
    for c in Compression::ALL {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("packages"));
        let bytes = testkit::archive(&good_entries(), c);
        let name = format!("hello--1{}", c.suffix());
        let (id, added) = add(&store, tmp.path(), &name, &bytes).unwrap();
        assert_eq!(id.to_string(), "hello--1");
        let Added::New(ex) = added else {
            panic!("expected a new package")
        };
        assert_eq!(ex.info.environment["FOO"], "1");
        assert_eq!(ex.manifest.archive_sha256, Digest::of(&bytes), "{c}");
        assert_eq!(ex.manifest.archive_size, bytes.len() as u64);
        let root = store.path(&id);
        assert_eq!(
            std::fs::read_to_string(root.join("bin/hello")).unwrap(),
            "#!/bin/sh\necho hello\n"
        );
        assert_eq!(
            std::fs::read_link(root.join("lib/libx.so"))
                .unwrap()
                .to_str(),
            Some("libx.so.1")
        );
        assert_eq!(
            std::fs::read(root.join("lib/libx-copy.so.1"))
                .unwrap()
                .len(),
            300_000
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| {
            std::fs::metadata(root.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("bin/hello"), 0o755);
        assert_eq!(mode("lib/libx.so.1"), 0o644);
        assert_eq!(mode("ro"), 0o555);
        assert_eq!(mode("share"), 0o755);
        // The manifest on disk matches and the package verifies clean.
        let m = FileManifest::load(&root).unwrap();
        assert_eq!(m, ex.manifest);
        assert!(
            m.entries
                .iter()
                .any(|e| matches!(e, FileEntry::Symlink { path, .. } if path == "lib/libx.so"))
        );
        assert_eq!(store.verify(&id).unwrap(), vec![]);
        assert_eq!(store.list().unwrap(), vec![id.clone()]);
        // Adding again is a no-op, with or without the right digest; a wrong one is refused.
        assert!(matches!(
            add(&store, tmp.path(), &name, &bytes).unwrap().1,
            Added::AlreadyPresent
        ));
        let p = tmp.path().join(&name);
        assert!(matches!(
            store.add_file(&p, Some(Digest::of(b"other"))),
            Err(StoreError::DifferentContent { .. })
        ));
        // Removal works even with a read-only directory inside.
        assert!(store.remove(&id).unwrap());
        assert!(!store.remove(&id).unwrap());
        assert_eq!(store_leftovers(store.dir()), Vec::<String>::new());
    }
}

#[test]
fn verify_finds_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("packages"));
    let (id, _) = add(
        &store,
        tmp.path(),
        "hello--1.tar.zst",
        &testkit::archive(&good_entries(), Compression::Zstd),
    )
    .unwrap();
    let root = store.path(&id);
    std::fs::write(root.join("bin/hello"), "#!/bin/sh\necho pwned\n").unwrap();
    std::fs::remove_file(root.join("lib/libx.so")).unwrap();
    std::os::unix::fs::symlink("elsewhere", root.join("lib/libx.so")).unwrap();
    std::fs::write(root.join("bin/extra"), "").unwrap();
    std::fs::remove_file(root.join("share/doc/readme")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("lib/libx.so.1"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let problems = store.verify(&id).unwrap();
    let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    // The hard link shares its inode (and so its mode) with lib/libx.so.1.
    assert_eq!(problems.len(), 6, "{shown:#?}");
    assert!(matches!(&problems[0], FileProblem::Unexpected { path } if path == "bin/extra"));
    assert!(
        matches!(&problems[1], FileProblem::ContentChanged { path, .. } if path == "bin/hello")
    );
    assert!(
        matches!(&problems[2], FileProblem::ModeChanged { path, .. } if path == "lib/libx-copy.so.1")
    );
    assert!(
        matches!(&problems[3], FileProblem::TargetChanged { path, .. } if path == "lib/libx.so")
    );
    assert!(
        matches!(&problems[4], FileProblem::ModeChanged { path, .. } if path == "lib/libx.so.1")
    );
    assert!(matches!(&problems[5], FileProblem::Missing { path } if path == "share/doc/readme"));
}

fn hostile(extra: Vec<Entry>) -> Vec<u8> {
    let mut e = vec![
        Entry::dir("./"),
        Entry::file("./pkginfo.json", "{}"),
        Entry::dir("./lib"),
    ];
    e.extend(extra);
    testkit::archive(&e, Compression::Zstd)
}

#[test]
fn hostile_archives_are_refused_and_leave_nothing() {
    let cases: Vec<(&str, Vec<Entry>, UnsafeReason)> = vec![
        (
            "traversal",
            vec![Entry::file("./lib/../../evil", "x")],
            UnsafeReason::ParentComponent,
        ),
        (
            "absolute",
            vec![Entry::file("/tmp/tarmac-evil", "x")],
            UnsafeReason::AbsolutePath,
        ),
        (
            "escaping symlink",
            vec![Entry::symlink("./lib/etc", "../../etc")],
            UnsafeReason::SymlinkEscapes {
                target: "../../etc".into(),
            },
        ),
        (
            "absolute symlink",
            vec![Entry::symlink("./lib/passwd", "/etc/passwd")],
            UnsafeReason::SymlinkAbsolute {
                target: "/etc/passwd".into(),
            },
        ),
        (
            "symlink chain escaping",
            vec![
                Entry::symlink("./lib/up", ".."),
                Entry::symlink("./out", "lib/up/.."),
            ],
            UnsafeReason::SymlinkEscapes {
                target: "lib/up/..".into(),
            },
        ),
        (
            "write through symlink",
            vec![
                Entry::symlink("./lib/dir", "."),
                Entry::file("./lib/dir/x", "x"),
            ],
            UnsafeReason::ThroughSymlink {
                link: "lib/dir".into(),
            },
        ),
        (
            "hardlink outside",
            vec![Entry::hardlink("./lib/shadow", "/etc/shadow")],
            UnsafeReason::HardlinkTarget {
                target: "/etc/shadow".into(),
            },
        ),
        (
            "hardlink to a symlink",
            vec![
                Entry::symlink("./lib/l", "x"),
                Entry::hardlink("./lib/h", "lib/l"),
            ],
            UnsafeReason::HardlinkTarget {
                target: "lib/l".into(),
            },
        ),
        (
            "device",
            vec![Entry::Char {
                path: "./lib/null".into(),
            }],
            UnsafeReason::SpecialFile {
                kind: "character device",
            },
        ),
        (
            "fifo",
            vec![Entry::Fifo {
                path: "./lib/fifo".into(),
            }],
            UnsafeReason::SpecialFile { kind: "fifo" },
        ),
        (
            "setuid",
            vec![Entry::File {
                path: "./lib/su".into(),
                mode: 0o4755,
                data: b"x".to_vec(),
            }],
            UnsafeReason::SetIdBits { mode: 0o4755 },
        ),
        (
            "setgid dir",
            vec![Entry::Dir {
                path: "./lib/g".into(),
                mode: 0o2755,
            }],
            UnsafeReason::SetIdBits { mode: 0o2755 },
        ),
        (
            "duplicate",
            vec![Entry::file("./lib/a", "1"), Entry::file("./lib/a", "2")],
            UnsafeReason::Duplicate,
        ),
        (
            "reserved",
            vec![Entry::file("./.tarmac/files.json", "{}")],
            UnsafeReason::Reserved,
        ),
    ];
    for (name, entries, want) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("packages"));
        let err = add(&store, tmp.path(), "evil--1.tar.zst", &hostile(entries)).unwrap_err();
        match &err {
            StoreError::Extract(ExtractError::Unsafe {
                reason, archive, ..
            }) => {
                assert_eq!(reason, &want, "{name}");
                assert!(archive.ends_with("evil--1.tar.zst"), "{name}: {archive}");
            }
            other => panic!("{name}: unexpected error {other:?}"),
        }
        assert!(
            err.to_string().contains("refusing unsafe entry"),
            "{name}: {err}"
        );
        assert_eq!(store_leftovers(store.dir()), Vec::<String>::new(), "{name}");
        assert!(!Path::new("/tmp/tarmac-evil").exists());
    }
}

#[test]
fn truncated_wrong_hash_and_missing_pkginfo_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("packages"));
    let bytes = testkit::archive(&good_entries(), Compression::Zstd);

    let err = add(
        &store,
        tmp.path(),
        "hello--1.tar.zst",
        &bytes[..bytes.len() / 2],
    )
    .unwrap_err();
    assert!(
        matches!(err, StoreError::Extract(ExtractError::Read { .. })),
        "{err:?}"
    );
    assert_eq!(store_leftovers(store.dir()), Vec::<String>::new());

    for c in [Compression::Xz, Compression::Gzip] {
        let b = testkit::archive(&good_entries(), c);
        let name = format!("hello--1{}", c.suffix());
        let err = add(&store, tmp.path(), &name, &b[..b.len() - 40]).unwrap_err();
        assert!(
            matches!(err, StoreError::Extract(ExtractError::Read { .. })),
            "{c}: {err:?}"
        );
        assert_eq!(store_leftovers(store.dir()), Vec::<String>::new());
    }

    let p = tmp.path().join("hello--1.tar.zst");
    std::fs::write(&p, &bytes).unwrap();
    let err = store
        .add_file(&p, Some(Digest::of(b"something else")))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Extract(ExtractError::HashMismatch { .. })),
        "{err:?}"
    );
    assert!(text_with_hint(&err).contains("hint: the download was corrupted"));
    assert_eq!(store_leftovers(store.dir()), Vec::<String>::new());

    let no_info = testkit::archive(
        &[Entry::dir("./"), Entry::file("./bin/x", "x")],
        Compression::Zstd,
    );
    let err = add(&store, tmp.path(), "x--1.tar.zst", &no_info).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Extract(ExtractError::MissingPkgInfo { .. })
        ),
        "{err:?}"
    );
    let bad_info = testkit::archive(
        &[Entry::file("pkginfo.json", r#"{"username": "root"}"#)],
        Compression::Zstd,
    );
    let err = add(&store, tmp.path(), "x--1.tar.zst", &bad_info).unwrap_err();
    assert!(
        err.to_string().contains("username `root` is invalid"),
        "{err}"
    );
    assert_eq!(store_leftovers(store.dir()), Vec::<String>::new());

    let err = add(&store, tmp.path(), "x--1.tar.bz2", &bytes).unwrap_err();
    assert!(matches!(err, StoreError::BadFileName { .. }));
    let err = add(&store, tmp.path(), "x---1.tar.zst", &bytes).unwrap_err();
    assert!(matches!(err, StoreError::BadId { .. }));
}

#[test]
fn clean_temp_removes_leftovers_of_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("packages"));
    std::fs::create_dir_all(store.dir().join(".tmp-hello--1-123-abc/bin")).unwrap();
    std::fs::create_dir_all(store.dir().join("keep--1")).unwrap();
    let removed = store.clean_temp().unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(store_leftovers(store.dir()), vec!["keep--1".to_owned()]);
    assert_eq!(
        store.list().unwrap(),
        vec![PackageId::parse("keep--1").unwrap()]
    );
}

/// A tiny HTTP/1.1 server whose behaviour per request is scripted by the test.
enum Reply {
    Status(u16),
    /// 200 with the full Content-Length but only the first `n` bytes, then close.
    Short(usize),
    /// Honour `Range: bytes=N-` with a 206 (or 200 with everything when there is no range).
    Full,
}

fn serve(body: Vec<u8>, script: Vec<Reply>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        let mut script = script.into_iter();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut range = None;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h
                    .strip_prefix("Range: bytes=")
                    .or_else(|| h.strip_prefix("range: bytes="))
                {
                    range = v.trim().trim_end_matches('-').parse::<usize>().ok();
                }
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_owned();
            log2.lock().unwrap().push(format!("{path} range={range:?}"));
            if !path.ends_with("hello--1.tar.zst") {
                let _ = write!(
                    conn,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                continue;
            }
            match script.next().unwrap_or(Reply::Full) {
                Reply::Status(s) => {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {s} Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
                Reply::Short(n) => {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(&body[..n]);
                }
                Reply::Full => {
                    let start = range.unwrap_or(0);
                    if start > 0 {
                        let _ = write!(
                            conn,
                            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len() - 1,
                            body.len(),
                            body.len() - start
                        );
                    } else {
                        let _ = write!(
                            conn,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                    }
                    let _ = conn.write_all(&body[start..]);
                }
            }
            let _ = conn.flush();
        }
    });
    (format!("http://{addr}/repo/"), log)
}

#[test]
fn http_fetch_retries_and_resumes_in_one_pass() {
    let body = testkit::archive(&good_entries(), Compression::Zstd);
    let digest = Digest::of(&body);
    let third = body.len() / 3;
    let (url, log) = serve(
        body.clone(),
        vec![
            Reply::Status(503),
            Reply::Short(third),
            Reply::Short(2 * third),
            Reply::Full,
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("packages"));
    let fetcher = Fetcher::new(6, std::time::Duration::from_millis(10));
    let id = PackageId::parse("hello--1").unwrap();
    let pin = Pin {
        sha256: digest,
        size: body.len() as u64,
    };
    let added = store.fetch(&fetcher, &url, &id, Some(pin)).unwrap();
    assert!(matches!(added, Added::New(_)));
    assert_eq!(store.verify(&id).unwrap(), vec![]);
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log,
        vec![
            "/repo/packages/hello/hello--1.tar.zst range=None".to_owned(),
            "/repo/packages/hello/hello--1.tar.zst range=None".to_owned(),
            format!("/repo/packages/hello/hello--1.tar.zst range=Some({third})"),
            format!(
                "/repo/packages/hello/hello--1.tar.zst range=Some({})",
                2 * third
            ),
        ]
    );
}

#[test]
fn http_fetch_gives_up_and_reports_not_found() {
    let body = testkit::archive(&good_entries(), Compression::Zstd);
    let pin = Some(Pin {
        sha256: Digest::of(&body),
        size: body.len() as u64,
    });
    let (url, _log) = serve(body.clone(), (0..10).map(|_| Reply::Status(500)).collect());
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("packages"));
    let fetcher = Fetcher::new(3, std::time::Duration::from_millis(5));
    let id = PackageId::parse("hello--1").unwrap();
    let err = store.fetch(&fetcher, &url, &id, pin).unwrap_err();
    assert!(
        format!("{err:?}").contains("status: 500") || err_chain(&err).contains("HTTP 500"),
        "{}",
        err_chain(&err)
    );
    let missing = PackageId::parse("nope--1").unwrap();
    let (url, log) = serve(body, vec![]);
    let err = store.fetch(&fetcher, &url, &missing, pin).unwrap_err();
    assert!(
        err_chain(&err).contains("not found (HTTP 404)"),
        "{}",
        err_chain(&err)
    );
    // .tar.zst, then .tar.xz and .tar.gz were tried.
    assert_eq!(log.lock().unwrap().len(), 3);
    assert_eq!(store_leftovers(store.dir()), Vec::<String>::new());
}

#[test]
fn wrong_hash_over_http_exposes_nothing() {
    let body = testkit::archive(&good_entries(), Compression::Zstd);
    let size = body.len() as u64;
    let (url, _log) = serve(body, vec![]);
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("packages"));
    let id = PackageId::parse("hello--1").unwrap();
    let pin = Pin {
        sha256: Digest::of(b"x"),
        size,
    };
    let err = store
        .fetch(&Fetcher::default(), &url, &id, Some(pin))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Extract(ExtractError::HashMismatch { .. })),
        "{err:?}"
    );
    assert_eq!(store_leftovers(store.dir()), Vec::<String>::new());
}

#[test]
fn file_repository_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("packages/hello")).unwrap();
    std::fs::write(
        repo.join("packages/hello/hello--1.tar.xz"),
        testkit::archive(&good_entries(), Compression::Xz),
    )
    .unwrap();
    let store = Store::new(tmp.path().join("packages"));
    let id = PackageId::parse("hello--1").unwrap();
    let url = format!("file://{}", repo.display());
    assert!(matches!(
        store.fetch(&Fetcher::default(), &url, &id, None).unwrap(),
        Added::New(_)
    ));
    let mut s = String::new();
    std::fs::File::open(store.path(&id).join("bin/hello"))
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert!(s.contains("hello"));
}

fn err_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(" / ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

// --- Bounded, verified-before-extracted downloads -------------------------------------

/// A `<id>.tar.zst` holding pkginfo.json and `zeros` bytes of zeros, built as a stream
/// (never `zeros` bytes in memory).
fn zstd_bomb(zeros: u64) -> Vec<u8> {
    let enc = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
    let mut b = tar::Builder::new(enc);
    let mut h = tar::Header::new_gnu();
    h.set_size(PKGINFO.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "pkginfo.json", PKGINFO.as_bytes())
        .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(zeros);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "zeros", std::io::repeat(0).take(zeros))
        .unwrap();
    b.into_inner().unwrap().finish().unwrap()
}

/// Bytes of every file under `dir` (files vanishing mid-walk count as 0).
fn tree_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.path().symlink_metadata() {
            Ok(m) if m.is_dir() => tree_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Run `f` while another thread measures the store; returns f's result and the most bytes
/// ever seen in the store.
fn watching_store<T>(store: &Path, f: impl FnOnce() -> T) -> (T, u64) {
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (done, store) = (done.clone(), store.to_path_buf());
        std::thread::spawn(move || {
            let mut max = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(tree_bytes(&store));
            }
            max.max(tree_bytes(&store))
        })
    };
    let out = f();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    (out, watcher.join().unwrap())
}

const BOMB_ZEROS: u64 = 100 << 20;

#[test]
fn a_small_archive_with_a_wrong_hash_writes_nothing_into_the_store() {
    let bomb = zstd_bomb(BOMB_ZEROS);
    assert!(bomb.len() < 16 * 1024, "{} bytes", bomb.len());
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("packages"));
    std::fs::create_dir_all(store.dir()).unwrap();
    let file = tmp.path().join("bomb--1.tar.zst");
    std::fs::write(&file, &bomb).unwrap();
    let wrong = Digest::of(b"not the bomb");

    // `tarmac-host add FILE --sha256 X`: hashed before anything is decompressed.
    let (res, max) = watching_store(store.dir(), || store.add_file(&file, Some(wrong)));
    let err = res.unwrap_err();
    assert_eq!(
        text_with_hint(&err),
        format!(
            "{}: sha256 mismatch: expected {wrong}, got {} ({} bytes)\nhint: the download was corrupted or the artifact was replaced; nothing was installed",
            file.display(),
            Digest::of(&bomb),
            bomb.len()
        )
    );
    assert_eq!(max, 0, "decompressed bytes appeared in the store");
    assert_eq!(store_leftovers(store.dir()), Vec::<String>::new());

    // The same over HTTP, pinned with the right size and a wrong hash.
    let size = bomb.len() as u64;
    let (url, _log) = serve_as("bomb--1", bomb.clone());
    let id = PackageId::parse("bomb--1").unwrap();
    let pin = Pin {
        sha256: wrong,
        size,
    };
    let (res, max) = watching_store(store.dir(), || {
        store.fetch(&Fetcher::default(), &url, &id, Some(pin))
    });
    assert!(
        matches!(
            res,
            Err(StoreError::Extract(ExtractError::HashMismatch { .. }))
        ),
        "{res:?}"
    );
    assert_eq!(max, 0, "decompressed bytes appeared in the store");
    assert_eq!(store_leftovers(store.dir()), Vec::<String>::new());
}

#[test]
fn a_decompression_bomb_with_the_right_hash_is_refused() {
    let bomb = zstd_bomb(BOMB_ZEROS);
    let size = bomb.len() as u64;
    let limit = tarmac_pkg::extract::unpacked_limit(size);
    assert!(limit < BOMB_ZEROS);
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("packages"));
    std::fs::create_dir_all(store.dir()).unwrap();
    let (url, _log) = serve_as("bomb--1", bomb.clone());
    let id = PackageId::parse("bomb--1").unwrap();
    let pin = Pin {
        sha256: Digest::of(&bomb),
        size,
    };
    let (res, max) = watching_store(store.dir(), || {
        store.fetch(&Fetcher::default(), &url, &id, Some(pin))
    });
    let err = res.unwrap_err();
    assert_eq!(
        text_with_hint(&err),
        format!(
            "{url}packages/bomb/bomb--1.tar.zst: package bomb--1 unpacks to more than {limit} bytes from {size} compressed bytes (at most 200 × compressed + 32 MiB); refusing it as a decompression bomb\nhint: nothing was installed; check what the repository serves for bomb--1"
        )
    );
    assert!(max <= limit, "{max} bytes in the store, limit {limit}");
    assert_eq!(store_leftovers(store.dir()), Vec::<String>::new());

    // A local add (unpinned) is bounded the same way.
    let file = tmp.path().join("bomb--1.tar.zst");
    std::fs::write(&file, &bomb).unwrap();
    let err = store.add_file(&file, None).unwrap_err();
    assert!(
        matches!(err, StoreError::Extract(ExtractError::Bomb { .. })),
        "{err:?}"
    );
    assert_eq!(store_leftovers(store.dir()), Vec::<String>::new());
}

/// Serve `body` as `<repo>/packages/<name>/<id>.tar.zst` (200, with Content-Length).
fn serve_as(id: &str, body: Vec<u8>) -> (String, Arc<Mutex<Vec<String>>>) {
    serve_raw(id, vec![(body.clone(), Some(body.len()))])
}

/// Serve `id`'s archive with scripted (bytes, Content-Length) replies, then 404s.
fn serve_raw(
    id: &str,
    replies: Vec<(Vec<u8>, Option<usize>)>,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    let want = format!("/{id}.tar.zst");
    std::thread::spawn(move || {
        let mut replies = replies.into_iter();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_owned();
            log2.lock().unwrap().push(path.clone());
            match replies.next().filter(|_| path.ends_with(&want)) {
                Some((bytes, len)) => {
                    let len = len
                        .map(|l| format!("Content-Length: {l}\r\n"))
                        .unwrap_or_default();
                    let _ = write!(conn, "HTTP/1.1 200 OK\r\n{len}Connection: close\r\n\r\n");
                    let _ = conn.write_all(&bytes);
                }
                None => {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
            let _ = conn.flush();
        }
    });
    (format!("http://{addr}/repo/"), log)
}

#[test]
fn a_download_larger_or_smaller_than_its_pin_is_cut_off() {
    let body = testkit::archive(&good_entries(), Compression::Zstd);
    let size = body.len() as u64;
    let pin = Pin {
        sha256: Digest::of(&body),
        size,
    };
    let id = PackageId::parse("hello--1").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("packages"));
    let fetcher = Fetcher::new(1, std::time::Duration::from_millis(5));

    // No Content-Length, and 8 MiB more than the pin: reading stops one byte past it.
    let mut long = body.clone();
    long.extend(std::iter::repeat_n(0u8, 8 << 20));
    let (url, _) = serve_raw("hello--1", vec![(long, None)]);
    let err = store.fetch(&fetcher, &url, &id, Some(pin)).unwrap_err();
    assert_eq!(
        text_with_hint(&err),
        format!(
            "{url}packages/hello/hello--1.tar.zst: more than the expected {size} bytes arrived; stopped reading there\nhint: the artifact was replaced or the package list is stale (re-run `tarmac genconf`); nothing was installed"
        )
    );
    assert_eq!(store_leftovers(store.dir()), Vec::<String>::new());

    // A Content-Length that disagrees with the pin: refused before the body is read.
    let (url, _) = serve_raw("hello--1", vec![(body.clone(), Some(body.len() + 1))]);
    let err = store.fetch(&fetcher, &url, &id, Some(pin)).unwrap_err();
    assert_eq!(
        text_with_hint(&err),
        format!(
            "{url}packages/hello/hello--1.tar.zst: the archive is {} bytes, but the pin says {size}\nhint: the artifact was replaced or the package list is stale (re-run `tarmac genconf`); nothing was downloaded",
            size + 1
        )
    );

    // Fewer bytes than pinned (no Content-Length to tell): refused too.
    let (url, _) = serve_raw("hello--1", vec![(body[..body.len() - 10].to_vec(), None)]);
    let err = store.fetch(&fetcher, &url, &id, Some(pin)).unwrap_err();
    assert_eq!(
        text_with_hint(&err),
        format!(
            "{url}packages/hello/hello--1.tar.zst: the archive ended after {} of the expected {size} bytes\nhint: the artifact was truncated or replaced, or the package list is stale (re-run `tarmac genconf`); nothing was installed",
            size - 10
        )
    );
    assert_eq!(store_leftovers(store.dir()), Vec::<String>::new());

    // A local repository file of another size than the pin.
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("packages/hello")).unwrap();
    let file = repo.join("packages/hello/hello--1.tar.zst");
    std::fs::write(&file, &body[..100]).unwrap();
    let err = store
        .fetch(&fetcher, repo.to_str().unwrap(), &id, Some(pin))
        .unwrap_err();
    assert_eq!(
        text_with_hint(&err),
        format!(
            "{}: the archive is 100 bytes, but the pin says {size}\nhint: the artifact was replaced or the package list is stale (re-run `tarmac genconf`); nothing was downloaded",
            file.display()
        )
    );

    // The right bytes still work.
    let (url, _) = serve_as("hello--1", body.clone());
    assert!(matches!(
        store.fetch(&fetcher, &url, &id, Some(pin)).unwrap(),
        Added::New(_)
    ));
    assert_eq!(store.verify(&id).unwrap(), vec![]);
    assert_eq!(store_leftovers(store.dir()), vec!["hello--1".to_owned()]);
}

#[test]
fn an_unpinned_remote_fetch_is_refused_before_any_request() {
    let body = testkit::archive(&good_entries(), Compression::Zstd);
    let (url, log) = serve_as("hello--1", body);
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("packages"));
    let id = PackageId::parse("hello--1").unwrap();
    let err = store
        .fetch(&Fetcher::default(), &url, &id, None)
        .unwrap_err();
    assert_eq!(
        text_with_hint(&err),
        format!(
            "refusing to fetch hello--1 from {url} without its sha256 and size\nhint: fetch it with the package list that pins it (`tarmac-host fetch --package-list FILE`, written by `tarmac genconf`) or pass --sha256 hello--1=SHA256:SIZE"
        )
    );
    assert_eq!(log.lock().unwrap().len(), 0);
    assert_eq!(store_leftovers(store.dir()), Vec::<String>::new());
}

#[test]
fn clean_temp_removes_a_leftover_spool_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("packages"));
    std::fs::create_dir_all(store.dir()).unwrap();
    std::fs::write(store.dir().join(".tmp-hello--1-9-00ab.spool"), b"x").unwrap();
    assert_eq!(store.clean_temp().unwrap().len(), 1);
    assert_eq!(store_leftovers(store.dir()), Vec::<String>::new());
}

#[test]
fn group_and_other_write_bits_never_reach_the_store() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("packages"));
    let entries = vec![
        Entry::File {
            path: "pkginfo.json".into(),
            mode: 0o644,
            data: b"{}".to_vec(),
        },
        Entry::Dir {
            path: "share".into(),
            mode: 0o777,
        },
        Entry::File {
            path: "bin/tool".into(),
            mode: 0o777,
            data: b"#!/bin/sh\n".to_vec(),
        },
        Entry::File {
            path: "etc/tool.conf".into(),
            mode: 0o666,
            data: b"x=1\n".to_vec(),
        },
    ];
    let bytes = testkit::archive(&entries, Compression::Zstd);
    let (id, _) = add(&store, tmp.path(), "modes--1.tar.zst", &bytes).unwrap();
    let root = store.path(&id);
    let mode = |p: &str| {
        std::fs::symlink_metadata(root.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("bin/tool"), 0o755);
    assert_eq!(mode("etc/tool.conf"), 0o644);
    assert_eq!(mode("share"), 0o755);
}

#[test]
fn the_verified_archive_is_kept_for_peers_and_audited() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new(tmp.path().join("packages"));
    for (i, c) in Compression::ALL.into_iter().enumerate() {
        let bytes = testkit::archive(&good_entries(), c);
        let name = format!("hello--{i}{}", c.suffix());
        let (id, _) = add(&store, tmp.path(), &name, &bytes).unwrap();
        let (kept, kc) = store.archive(&id).expect("archive kept");
        assert_eq!(kc, c);
        assert_eq!(
            kept,
            store
                .path(&id)
                .join(".tarmac")
                .join(format!("archive{}", c.suffix()))
        );
        assert_eq!(
            std::fs::read(&kept).unwrap(),
            bytes,
            "{c:?}: the same bytes"
        );
        assert!(store.verify(&id).unwrap().is_empty());
    }
    // A changed archive (what a relay would serve) is found by verify.
    let id = PackageId::parse("hello--0").unwrap();
    let (kept, _) = store.archive(&id).unwrap();
    let mut b = std::fs::read(&kept).unwrap();
    b[0] ^= 1;
    std::fs::write(&kept, b).unwrap();
    let problems = store.verify(&id).unwrap();
    assert!(
        matches!(&problems[..], [FileProblem::ContentChanged { path, .. }] if path == ".tarmac/archive.tar.zst"),
        "{problems:?}"
    );
}
