//! The final mode is exact whatever the umask (its own test binary: the umask is
//! process-wide).

use std::fs;
use std::os::unix::fs::PermissionsExt;

#[test]
fn mode_is_exact_under_any_umask() {
    let d = tempfile::tempdir().unwrap();
    // SAFETY: umask has no memory-safety preconditions; this binary has one test.
    let old = unsafe { libc::umask(0o077) };
    let p = d.path().join("install.sh");
    tarmac_fsx::write_atomic(&p, b"#!/bin/sh\n", 0o755).unwrap();
    let priv_dir = d.path().join("state");
    tarmac_fsx::create_private_dir(&priv_dir).unwrap();
    // SAFETY: as above.
    unsafe { libc::umask(0o000) };
    let q = d.path().join("key");
    tarmac_fsx::write_atomic(&q, b"secret", 0o600).unwrap();
    let log = tarmac_fsx::open_private_append(&d.path().join("host.log")).unwrap();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&p), 0o755);
    assert_eq!(mode(&q), 0o600);
    assert_eq!(mode(&priv_dir), 0o700);
    assert_eq!(log.metadata().unwrap().permissions().mode() & 0o7777, 0o600);
}
