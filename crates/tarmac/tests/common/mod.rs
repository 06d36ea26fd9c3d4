//! Helpers shared by the `tarmac` binary's lab tests: run the built binary inside a lab's
//! control namespace, read outputs, and tear labs down on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tarmac_lab::Lab;

/// The `tarmac` binary under test.
pub fn tarmac() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tarmac"))
}

/// The workspace root (the tests run `tarmac` from there, next to `dist/reference`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// stdout followed by stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `tarmac ARGS` as a command inside the lab's control namespace (where hosts are reachable).
pub fn in_lab_cmd(lab: &Lab, args: &[&str]) -> Command {
    let mut c = lab.ctl_command(tarmac());
    c.args(args)
        .current_dir(workspace())
        .env("TARMAC_DIST", workspace().join("dist/reference"));
    c
}

/// Run `tarmac ARGS` inside the lab's control namespace.
pub fn in_lab(lab: &Lab, args: &[&str]) -> Output {
    in_lab_cmd(lab, args).output().expect("run tarmac")
}

/// A shell command on a lab host as root; its trimmed stdout.
pub fn ssh(lab: &Lab, host: &str, cmd: &str) -> String {
    let o = lab.ssh(host, cmd).expect("ssh");
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// Tears the named lab down when dropped (also when the test panics).
pub struct Down(pub String);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Lab::down(&self.0);
    }
}

pub fn is_root() -> bool {
    unsafe extern "C" {
        fn geteuid() -> u32;
    }
    // SAFETY: geteuid has no preconditions.
    unsafe { geteuid() == 0 }
}
