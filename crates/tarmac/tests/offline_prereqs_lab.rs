//! Air-gapped prerequisites on one Debian 12 lab host (root needed): after quickstart, curl is
//! removed from the host; preflight with the offline repository says install-prereqs
//! --offline will install it, and install-prereqs --offline brings it back from the uploaded
//! repository alone. The lab is torn down even when the test fails.

mod common;

use common::*;
use tarmac_installer::offline::{self, DownloadSpec};

#[test]
fn install_prereqs_offline_brings_curl_back() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("prereqs");
    let sink: tarmac_events::Sink = std::sync::Arc::new(tarmac_events::NullSink);
    offline::download(&DownloadSpec::new(&["bookworm"]), &repo, &sink).unwrap();
    let r = repo.to_str().unwrap();

    let QuickLab {
        lab,
        dir,
        work: _w,
        down: _down,
    } = QuickLab::up_on("offp", 1, 0, 0, Some("bookworm"));
    let genconf = dir.join("genconf");
    let g = genconf.to_str().unwrap();
    let host = lab.hosts()[0].name.clone();

    ssh(&lab, &host, "dpkg -r --force-depends curl >/dev/null 2>&1");
    assert_eq!(ssh(&lab, &host, "command -v curl || true"), "");

    // Preflight names what install-prereqs --offline will install.
    let out = in_lab(&lab, &["preflight", "--genconf-dir", g, "--prereqs-dir", r]);
    let t = text(&out);
    assert!(
        t.contains("install-prereqs --offline will install curl"),
        "preflight does not say curl will be installed:\n{t}"
    );

    // The host gets it back from the uploaded repository; its own apt lists are untouched.
    let lists_before = ssh(&lab, &host, "ls -l /var/lib/apt/lists | md5sum");
    let out = in_lab(
        &lab,
        &[
            "install-prereqs",
            "--genconf-dir",
            g,
            "--offline",
            "--prereqs-dir",
            r,
        ],
    );
    assert!(
        out.status.success(),
        "install-prereqs --offline:\n{}",
        text(&out)
    );
    assert_eq!(ssh(&lab, &host, "command -v curl"), "/usr/bin/curl");
    assert_eq!(
        ssh(&lab, &host, "ls -l /var/lib/apt/lists | md5sum"),
        lists_before
    );
    assert_eq!(
        ssh(
            &lab,
            &host,
            "ls /var/lib/tarmac-push/prereqs 2>/dev/null || true"
        ),
        "",
        "the uploaded repository is removed"
    );

    // Without --prereqs-dir, --offline refuses before touching a host.
    let out = in_lab(&lab, &["install-prereqs", "--genconf-dir", g, "--offline"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--prereqs-dir"), "{}", text(&out));
}
