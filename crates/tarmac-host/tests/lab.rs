//! On real systemd hosts (a lab of one master and one agent): the agent installs through
//! the boot-time path (`tarmac-setup.service` + setup flags + a file:// repository), the
//! master with `tarmac-host add/activate`. A real service runs only on the role its unit
//! is for; `swap` restarts only the changed package's unit; `rollback`, `check`, `verify`
//! and `uninstall` work. Needs root (the lab). Run with `cargo test -p tarmac-host --test lab`.

use std::fs;
use std::path::Path;
use std::process::Stdio;

use tarmac_lab::{Lab, LabGuard, LabSpec, Mode};
use tarmac_pkg::testkit::{self, Entry};
use tarmac_types::Digest;

const BIN: &str = env!("CARGO_BIN_EXE_tarmac-host");

/// The `tarmac-host` copied onto the lab hosts: the portable build (glibc >= 2.17) in
/// `$TARMAC_PORTABLE_BIN_DIR` when it is set (scripts/test.sh builds it from this same tree
/// and sets it), else the binary cargo built for this test.
fn shipped_binary() -> std::path::PathBuf {
    match std::env::var_os("TARMAC_PORTABLE_BIN_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => {
            let p = std::path::PathBuf::from(dir).join("tarmac-host");
            assert!(
                p.is_file(),
                "TARMAC_PORTABLE_BIN_DIR is set but {} is missing\nhint: run scripts/build-portable.sh",
                p.display()
            );
            p
        }
        None => BIN.into(),
    }
}

fn sh(lab: &Lab, host: &str, cmd: &str) -> String {
    let out = lab.ssh(host, cmd).unwrap();
    assert!(
        out.status.success(),
        "{host}: `{cmd}` failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn sh_status(lab: &Lab, host: &str, cmd: &str) -> (bool, String) {
    let out = lab.ssh(host, cmd).unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

/// Copy a local file to `dest` on `host` (through ssh's stdin).
fn copy(lab: &Lab, host: &str, src: &Path, dest: &str, mode: &str) {
    let mut c = lab.ssh_command("root", host).unwrap();
    c.arg("--")
        .arg(format!("mkdir -p \"$(dirname {dest})\" && cat > {dest}.part && chmod {mode} {dest}.part && mv {dest}.part {dest}"));
    c.stdin(fs::File::open(src).unwrap()).stdout(Stdio::null());
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "copy to {host}:{dest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn demo(version: &str) -> Vec<u8> {
    testkit::package(
        &format!(
            r#"{{"environment": {{"DEMO_VERSION": "{version}"}}, "state_directory": true, "username": "tarmac_demo"}}"#
        ),
        &[
            Entry::exe(
                "bin/tarmac-demo",
                "#!/bin/sh\necho \"$DEMO_VERSION $(id -un)\" > /var/lib/tarmac/demo/version\nexec sleep infinity\n",
            ),
            Entry::file(
                "systemd_master/tarmac-demo.service",
                format!(
                    "[Unit]\nDescription=Tarmac demo service\n\n[Service]\nUser=tarmac_demo\nEnvironmentFile=/opt/tarmac/environment\nExecStart=/opt/tarmac/packages/demo--{version}/bin/tarmac-demo\n"
                ),
            ),
            Entry::exe(
                "check/demo-running",
                "#!/bin/sh\nif [ -e /opt/tarmac/etc/roles/master ] || systemctl cat tarmac-demo.service >/dev/null 2>&1; then systemctl is-active tarmac-demo.service; else echo not on this role; fi\n",
            ),
        ],
    )
}

fn common() -> Vec<u8> {
    testkit::package(
        "{}",
        &[Entry::file(
            "systemd/tarmac-common.service",
            "[Unit]\nDescription=Tarmac common service\n\n[Service]\nExecStart=/bin/sleep infinity\n",
        )],
    )
}

#[test]
fn real_hosts_activate_swap_rollback_uninstall() {
    let name = format!("th{}", std::process::id() % 100_000);
    let spec = LabSpec {
        name,
        masters: 1,
        agents: 1,
        public_agents: 0,
        mode: Mode::Systemd,
        extra_packages: Vec::new(),
    };
    let lab = LabGuard::new(Lab::up(&spec, &tarmac_events::NullSink).expect("lab up"));
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let mut list = Vec::new();
    for (id, bytes) in [
        ("demo--1", demo("1")),
        ("demo--2", demo("2")),
        ("common--1", common()),
    ] {
        let pname = id.split("--").next().unwrap();
        fs::create_dir_all(repo.join("packages").join(pname)).unwrap();
        fs::write(repo.join(format!("packages/{pname}/{id}.tar.zst")), &bytes).unwrap();
        if id != "demo--2" {
            list.push(serde_json::json!({"id": id, "sha256": Digest::of(&bytes).hex(), "size": bytes.len()}));
        }
    }
    let list_file = tmp.path().join("list.json");
    fs::write(&list_file, serde_json::to_vec(&list).unwrap()).unwrap();
    let master = lab
        .hosts_with_role(tarmac_lab::Role::Master)
        .next()
        .unwrap()
        .name
        .clone();
    let agent = lab
        .hosts_with_role(tarmac_lab::Role::Agent)
        .next()
        .unwrap()
        .name
        .clone();

    for h in [&master, &agent] {
        copy(
            &lab,
            h,
            &shipped_binary(),
            "/usr/local/bin/tarmac-host",
            "755",
        );
        for id in ["demo--1", "demo--2", "common--1"] {
            let pname = id.split("--").next().unwrap();
            let rel = format!("packages/{pname}/{id}.tar.zst");
            copy(
                &lab,
                h,
                &repo.join(&rel),
                &format!("/srv/repo/{rel}"),
                "644",
            );
        }
    }

    // Agent: the boot-time path, as install.sh sets it up.
    copy(
        &lab,
        &agent,
        &list_file,
        "/etc/tarmac/setup-flags/cluster-package-list",
        "644",
    );
    sh(
        &lab,
        &agent,
        "mkdir -p /etc/tarmac/roles && touch /etc/tarmac/roles/agent && echo file:///srv/repo > /etc/tarmac/setup-flags/repository-url",
    );
    sh(
        &lab,
        &agent,
        "tarmac-host print-setup-unit > /etc/systemd/system/tarmac-setup.service && systemctl daemon-reload && systemctl enable --now tarmac-setup.service",
    );
    assert_eq!(
        sh(&lab, &agent, "systemctl is-active tarmac-common.service"),
        "active"
    );
    assert_eq!(sh(&lab, &agent, "tarmac-host active"), "common--1\ndemo--1");
    let (_, state) = sh_status(&lab, &agent, "systemctl is-active tarmac-demo.service");
    assert_ne!(
        state, "active",
        "the master-only service must not run on an agent"
    );
    assert!(
        !sh_status(
            &lab,
            &agent,
            "test -e /etc/systemd/system/tarmac-demo.service"
        )
        .0
    );
    assert_eq!(
        sh(&lab, &agent, "systemctl is-enabled tarmac.target"),
        "enabled"
    );

    // Master: by hand.
    sh(
        &lab,
        &master,
        "mkdir -p /etc/tarmac/roles && touch /etc/tarmac/roles/master",
    );
    sh(
        &lab,
        &master,
        "tarmac-host fetch --repository-url file:///srv/repo demo--1 demo--2 common--1",
    );
    sh(&lab, &master, "tarmac-host activate demo--1 common--1");
    assert_eq!(
        sh(
            &lab,
            &master,
            "systemctl is-active tarmac-demo.service tarmac-common.service"
        ),
        "active\nactive"
    );
    sh(
        &lab,
        &master,
        "for i in $(seq 50); do test -s /var/lib/tarmac/demo/version && break; sleep 0.1; done",
    );
    assert_eq!(
        sh(&lab, &master, "cat /var/lib/tarmac/demo/version"),
        "1 tarmac_demo"
    );
    assert_eq!(
        sh(&lab, &master, "stat -c %U /var/lib/tarmac/demo"),
        "tarmac_demo"
    );
    let common_pid = sh(
        &lab,
        &master,
        "systemctl show -p MainPID --value tarmac-common.service",
    );
    let demo_pid = sh(
        &lab,
        &master,
        "systemctl show -p MainPID --value tarmac-demo.service",
    );
    assert_eq!(
        sh(
            &lab,
            &master,
            "tarmac-host check --json | grep -c '\"status\": \"ok\"'"
        ),
        "1"
    );

    // Swap: only the changed package's unit restarts.
    sh(
        &lab,
        &master,
        "rm -f /var/lib/tarmac/demo/version && tarmac-host swap demo--2",
    );
    sh(
        &lab,
        &master,
        "for i in $(seq 50); do test -s /var/lib/tarmac/demo/version && break; sleep 0.1; done",
    );
    assert_eq!(
        sh(&lab, &master, "cat /var/lib/tarmac/demo/version"),
        "2 tarmac_demo"
    );
    assert_ne!(
        sh(
            &lab,
            &master,
            "systemctl show -p MainPID --value tarmac-demo.service"
        ),
        demo_pid
    );
    assert_eq!(
        sh(
            &lab,
            &master,
            "systemctl show -p MainPID --value tarmac-common.service"
        ),
        common_pid
    );
    assert_eq!(
        sh(&lab, &master, "readlink /opt/tarmac/current"),
        "generations/2"
    );

    // Rollback.
    sh(
        &lab,
        &master,
        "rm -f /var/lib/tarmac/demo/version && tarmac-host rollback",
    );
    sh(
        &lab,
        &master,
        "for i in $(seq 50); do test -s /var/lib/tarmac/demo/version && break; sleep 0.1; done",
    );
    assert_eq!(
        sh(&lab, &master, "cat /var/lib/tarmac/demo/version"),
        "1 tarmac_demo"
    );
    assert_eq!(
        sh(&lab, &master, "readlink /opt/tarmac/current"),
        "generations/1"
    );
    assert_eq!(
        sh(
            &lab,
            &master,
            "systemctl show -p MainPID --value tarmac-common.service"
        ),
        common_pid
    );
    sh(&lab, &master, "tarmac-host verify");
    sh(&lab, &agent, "tarmac-host verify");

    // Uninstall: everything tarmac put there is gone, services stopped.
    for h in [&master, &agent] {
        sh(&lab, h, "tarmac-host uninstall");
        let (_, s) = sh_status(&lab, h, "systemctl is-active tarmac-common.service");
        assert_ne!(s, "active", "{h}");
        assert!(!sh_status(&lab, h, "test -e /opt/tarmac || test -e /etc/systemd/system/tarmac.target || test -e /etc/systemd/system/tarmac-common.service || test -e /etc/systemd/system/tarmac-setup.service").0, "{h}");
        assert!(
            !sh_status(&lab, h, "pgrep -f 'sleep infinity'").0,
            "{h}: service processes left"
        );
    }
    lab.down().expect("lab down");
}
