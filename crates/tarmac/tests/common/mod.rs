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

/// The `tarmac-host` these tests ship in their bootstraps: the portable build (glibc >= 2.17)
/// in `$TARMAC_PORTABLE_BIN_DIR` when it is set (scripts/test.sh builds it and sets it), else
/// the one cargo built next to the `tarmac` under test.
pub fn host_binary() -> PathBuf {
    match std::env::var_os("TARMAC_PORTABLE_BIN_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => {
            let p = PathBuf::from(dir).join("tarmac-host");
            assert!(
                p.is_file(),
                "TARMAC_PORTABLE_BIN_DIR is set but {} is missing\nhint: run scripts/build-portable.sh",
                p.display()
            );
            p
        }
        None => tarmac().with_file_name("tarmac-host"),
    }
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

/// Kills and reaps the process it holds when dropped (also on a panic).
pub struct Reap(pub std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Set (or replace) a top-level `key: value` line in `genconf/config.yaml`.
pub fn set_key(genconf: &Path, key: &str, value: &str) {
    let p = genconf.join("config.yaml");
    let cfg = std::fs::read_to_string(&p).unwrap();
    let mut lines: Vec<String> = cfg
        .lines()
        .filter(|l| !l.starts_with(&format!("{key}:")))
        .map(str::to_owned)
        .collect();
    lines.push(format!("{key}: {value}"));
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
}

/// `tarmac quickstart --keep` of the reference distribution on a new lab `name`
/// (`masters`, `agents`, `public` hosts), working in `dir`; the lab, guarded.
pub fn quickstart(
    name: &str,
    dir: &Path,
    masters: u32,
    agents: u32,
    public: u32,
) -> tarmac_lab::LabGuard {
    quickstart_on(name, dir, masters, agents, public, None)
}

/// [`quickstart`] on the given Debian suites (`bullseye,bookworm,trixie`: cycled over hosts),
/// or the default suite with `None`.
pub fn quickstart_on(
    name: &str,
    dir: &Path,
    masters: u32,
    agents: u32,
    public: u32,
    suites: Option<&str>,
) -> tarmac_lab::LabGuard {
    quickstart_spare(name, dir, masters, agents, public, 0, suites)
}

/// [`quickstart_on`] with `spare` extra lab hosts (agents of the lab) left out of
/// config.yaml: fresh servers for day-two tests.
pub fn quickstart_spare(
    name: &str,
    dir: &Path,
    masters: u32,
    agents: u32,
    public: u32,
    spare: u32,
    suites: Option<&str>,
) -> tarmac_lab::LabGuard {
    let (m, a, p) = (masters.to_string(), agents.to_string(), public.to_string());
    let spare = spare.to_string();
    let mut cmd = Command::new(tarmac());
    cmd.args(["quickstart", "--keep", "--name", name, "--masters", &m]);
    cmd.args(["--spare", &spare]);
    if let Some(s) = suites {
        cmd.args(["--suites", s]);
    }
    let out = cmd
        .args(["--agents", &a, "--public-agents", &p, "--dir"])
        .arg(dir)
        .arg("--host-binary")
        .arg(host_binary())
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(out.status.success(), "quickstart failed:\n{}", text(&out));
    tarmac_lab::LabGuard::new(Lab::open(name).unwrap())
}

/// A quickstarted lab for a test: torn down when dropped, also when the test panics.
pub struct QuickLab {
    pub lab: tarmac_lab::LabGuard,
    /// The quickstart's working directory (keys/, build/, genconf/).
    pub dir: PathBuf,
    /// A scratch directory that lives as long as the lab.
    pub work: tempfile::TempDir,
    pub down: Down,
}

impl QuickLab {
    /// `prefix` + this process's id names the lab (unique across concurrent tests).
    pub fn up(prefix: &str, masters: u32, agents: u32, public: u32) -> QuickLab {
        QuickLab::up_on(prefix, masters, agents, public, None)
    }

    /// [`QuickLab::up`] with `spare` hosts outside the cluster (see [`quickstart_spare`]).
    pub fn up_spare(prefix: &str, masters: u32, agents: u32, public: u32, spare: u32) -> QuickLab {
        assert!(is_root(), "this test needs root (it brings up a lab)");
        let name = format!("{prefix}{}", std::process::id() % 100000);
        let down = Down(name.clone());
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("qs");
        let lab = quickstart_spare(&name, &dir, masters, agents, public, spare, None);
        QuickLab {
            lab,
            dir,
            work,
            down,
        }
    }

    /// [`QuickLab::up`] on the given Debian suites (see [`quickstart_on`]).
    pub fn up_on(
        prefix: &str,
        masters: u32,
        agents: u32,
        public: u32,
        suites: Option<&str>,
    ) -> QuickLab {
        assert!(is_root(), "this test needs root (it brings up a lab)");
        let name = format!("{prefix}{}", std::process::id() % 100000);
        let down = Down(name.clone());
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("qs");
        let lab = quickstart_on(&name, &dir, masters, agents, public, suites);
        QuickLab {
            lab,
            dir,
            work,
            down,
        }
    }
}

/// `tarmac genconf` of `genconf` from the build in `build`, inside the lab; must succeed.
pub fn regenconf(lab: &Lab, genconf: &str, build: &str) {
    let out = in_lab(
        lab,
        &["genconf", "--genconf-dir", genconf, "--build-dir", build],
    );
    assert!(out.status.success(), "genconf: {}", text(&out));
}

/// `tarmac ARGS` started in the background inside the lab (output discarded), killed and
/// reaped when the returned guard drops.
pub fn spawn_in_lab(lab: &Lab, args: &[&str]) -> Reap {
    Reap(
        in_lab_cmd(lab, args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start tarmac"),
    )
}
