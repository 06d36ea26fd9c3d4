//! The `tarmac` and `tarmac-host` binaries Tarmac ships run on every x86_64 Linux with glibc
//! 2.17 or newer: read the portable build's ELF files and fail on any `GLIBC_` symbol
//! version above 2.17, any library outside glibc, or another program interpreter.
//!
//! Reads `$TARMAC_PORTABLE_BIN_DIR` (scripts/test.sh sets it); when that is unset, builds
//! them with `scripts/build-portable.sh` (zig from PyPI + cargo-zigbuild: slow the first
//! time) and reads what it prints.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tarmac_build::elf_versions::{GLIBC_BASELINE, X86_64_INTERPRETER, check_portable};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn portable_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TARMAC_PORTABLE_BIN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let script = workspace().join("scripts/build-portable.sh");
    let out = Command::new(&script)
        .current_dir(workspace())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed ({})",
        script.display(),
        out.status
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let dir = stdout.lines().last().unwrap_or_default().trim();
    assert!(!dir.is_empty(), "{} printed no directory", script.display());
    PathBuf::from(dir)
}

#[test]
fn shipped_binaries_need_nothing_newer_than_glibc_2_17() {
    let dir = portable_dir();
    for name in ["tarmac", "tarmac-host"] {
        let file = dir.join(name);
        assert!(
            file.is_file(),
            "{} is missing\nhint: run scripts/build-portable.sh",
            file.display()
        );
        let needs = check_portable(&file, GLIBC_BASELINE).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            needs.interpreter.as_deref(),
            Some(X86_64_INTERPRETER),
            "{name}"
        );
        assert!(
            needs.needed.iter().any(|n| n == "libc.so.6"),
            "{name}: {needs:?}"
        );
        let max = needs
            .max_glibc()
            .expect("a glibc binary has GLIBC_ versions");
        assert!(max <= GLIBC_BASELINE, "{name} needs glibc {max}");
    }
}
