//! A file written 0600 is never observable with wider permission bits: another thread
//! watches the directory while secrets are written and stats every entry it sees,
//! temporary files included.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[test]
fn secret_files_are_never_wider_than_0600() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_path_buf();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let dir = dir.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let (mut seen_tmp, mut wide) = (0u64, Vec::new());
            while !done.load(Ordering::Relaxed) {
                for e in fs::read_dir(&dir).unwrap().flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    // The entry may be renamed away between readdir and stat: skip those.
                    let Ok(m) = fs::symlink_metadata(e.path()) else {
                        continue;
                    };
                    if tarmac_fsx::is_temp_name(&name) {
                        seen_tmp += 1;
                    }
                    let mode = m.permissions().mode() & 0o7777;
                    if mode != 0o600 {
                        wide.push(format!("{name} {mode:04o} ({} bytes)", m.len()));
                    }
                }
            }
            (seen_tmp, wide)
        })
    };
    let secret = vec![b'k'; 256 * 1024];
    for i in 0..150 {
        tarmac_fsx::write_atomic(&dir.join(format!("key-{}", i % 3)), &secret, 0o600).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let (seen_tmp, wide) = watcher.join().unwrap();
    assert_eq!(wide, Vec::<String>::new());
    assert!(
        seen_tmp > 0,
        "the watcher never saw a temporary file: the test did not observe anything"
    );
}
