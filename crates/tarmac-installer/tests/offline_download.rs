//! Really downloads bookworm's prerequisite closure from the Debian archive (through apt's
//! normal client, in a private root) and checks the flat repository it makes.

use std::sync::{Arc, Mutex};

use tarmac_events::{Event, EventSink, Sink};
use tarmac_installer::offline::{self, DownloadSpec, OfflineRepo};
use tarmac_types::Digest;

#[derive(Default)]
struct Collect(Mutex<Vec<Event>>);

impl EventSink for Collect {
    fn emit(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

#[test]
fn bookworm_closure_downloads_into_a_flat_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("prereqs");
    let events = Arc::new(Collect::default());
    let sink: Sink = events.clone();
    let repo = offline::download(&DownloadSpec::new(&["bookworm"]), &dest, &sink).unwrap();

    // Nothing but the repository is left next to it (no temporary directory).
    let left: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["prereqs".to_owned()]);
    let mut top: Vec<String> = std::fs::read_dir(&dest)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, vec!["bookworm".to_owned(), "prereqs.json".to_owned()]);

    // The index on disk is the one returned, and every file matches it.
    let opened = OfflineRepo::open(&dest).unwrap();
    assert_eq!(opened.index(), repo.index());
    opened.verify().unwrap();
    let suite = opened.suite("bookworm").unwrap();
    for (path, f) in opened.files("bookworm") {
        let d = Digest::of_file(&path).unwrap();
        assert_eq!(d.hex(), f.sha256, "{}", f.name);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), f.size);
    }
    // Every requested prerequisite and its dependencies are there.
    for p in &suite.requested {
        assert!(opened.carries("bookworm", p), "{p} missing");
    }
    for p in ["libc6", "libcurl4", "openssl"] {
        assert!(opened.carries("bookworm", p), "{p} missing");
    }
    assert!(!opened.carries("bookworm", "systemd"));
    assert!(!opened.carries("trixie", "curl"));

    // The Packages index lists curl at its flat file name, with its sha256.
    let packages = std::fs::read_to_string(dest.join("bookworm/Packages")).unwrap();
    let curl = offline::stanzas(&packages)
        .find(|s| offline::field(s, "Package") == Some("curl"))
        .expect("Packages lists curl");
    let curl_file = suite
        .files
        .iter()
        .find(|f| f.package.as_deref() == Some("curl"))
        .unwrap();
    assert_eq!(
        offline::field(curl, "Filename"),
        Some(format!("./{}", curl_file.name).as_str())
    );
    assert_eq!(
        offline::field(curl, "SHA256"),
        Some(curl_file.sha256.as_str())
    );
    let debs = suite.files.iter().filter(|f| f.package.is_some()).count();
    assert_eq!(offline::stanzas(&packages).count(), debs);
    let release = std::fs::read_to_string(dest.join("bookworm/Release")).unwrap();
    assert!(release.contains(&format!(
        " {} {} Packages\n",
        Digest::of(packages.as_bytes()).hex(),
        packages.len()
    )));
    // Progress was reported as notices.
    let notices = events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::Notice { .. }))
        .count();
    assert!(notices >= 3, "{notices}");

    // apt itself accepts the repository as its only source and resolves curl from it
    // (simulation against an empty dpkg status: no network, nothing installed).
    let root = tmp.path().join("check");
    for d in ["lists/partial", "parts", "dpkg"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("dpkg/status"), "").unwrap();
    std::fs::write(
        root.join("sources.list"),
        format!(
            "deb [trusted=yes] file:{} ./\n",
            dest.join("bookworm").display()
        ),
    )
    .unwrap();
    let r = root.display();
    let opts = [
        format!("Dir::Etc::SourceList={r}/sources.list"),
        format!("Dir::Etc::SourceParts={r}/parts"),
        format!("Dir::State::Lists={r}/lists"),
        format!("Dir::State::status={r}/dpkg/status"),
        "Dir::Cache::pkgcache=".into(),
        "Dir::Cache::srcpkgcache=".into(),
        "Acquire::Languages=none".into(),
        "APT::Sandbox::User=root".into(),
        format!("Dir::Cache={r}/cache"),
        format!("Dir::Log={r}/log"),
    ];
    let apt = |args: &[&str]| {
        let mut c = std::process::Command::new("apt-get");
        for o in &opts {
            c.arg("-o").arg(o);
        }
        c.env("APT_CONFIG", "/dev/null");
        let out = c.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "apt-get {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    apt(&["-q", "update"]);
    let sim = apt(&["-s", "--no-install-recommends", "install", "curl", "passwd"]);
    assert!(sim.contains("Inst curl "), "{sim}");
}
