//! Preflight catches what deploy would hit (root needed): a bootstrap whose tarmac-host was
//! built against this machine's glibc (cargo's own build, not the portable one) on a Debian 11
//! host, whose glibc is older. Preflight runs the bootstrap's own tarmac-host there, fails the
//! host with the reason, and deploy is never reached. The lab is torn down even on failure.

use std::process::Command;

mod common;

use common::*;

#[test]
fn preflight_refuses_a_host_that_cannot_run_the_artifact() {
    assert!(is_root(), "this test needs root (it brings up a lab)");
    let non_portable = tarmac().with_file_name("tarmac-host");
    let needs = tarmac_build::elf_versions::read_needs(&non_portable).unwrap();
    let newest = needs.max_glibc().expect("cargo's tarmac-host links glibc");
    if newest <= tarmac_build::elf_versions::GlibcVersion([2, 31, 0]) {
        // A build machine as old as bullseye: this case cannot be made here.
        eprintln!(
            "skipped: {} needs only glibc {newest}",
            non_portable.display()
        );
        return;
    }
    let name = format!("pf{}", std::process::id() % 100000);
    let _down = Down(name.clone());
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("qs");
    let out = Command::new(tarmac())
        .args(["quickstart", "--keep", "--name", &name])
        .args(["--masters", "1", "--agents", "0", "--public-agents", "0"])
        .args(["--suites", "bullseye", "--dir"])
        .arg(&dir)
        .arg("--host-binary")
        .arg(&non_portable)
        .current_dir(workspace())
        .output()
        .unwrap();
    let t = text(&out);
    assert!(
        !out.status.success(),
        "quickstart must stop at preflight:\n{t}"
    );
    assert!(
        t.contains("that this host can run the artifact"),
        "the failing check is not named:\n{t}"
    );
    assert!(
        t.contains(&format!("GLIBC_{newest}")) || t.contains(&format!("< {newest}")),
        "the reason (glibc {newest}) is not given:\n{t}"
    );
    assert!(
        t.contains("preflight did not succeed"),
        "quickstart should stop at preflight:\n{t}"
    );
    let lab = tarmac_lab::Lab::open(&name).unwrap();
    for h in lab.hosts() {
        let current = ssh(
            &lab,
            &h.name,
            "readlink /opt/tarmac/current 2>/dev/null; ls /opt/tarmac 2>/dev/null || true",
        );
        assert_eq!(current, "", "{}: deploy was reached", h.name);
    }
}
