//! An external store as bootstrap_url (root needed): a quickstarted cluster is uninstalled,
//! genconf/serve/ is published to a real S3-compatible server (s3s-fs, through its S3 API:
//! CreateBucket, PutObject) in the lab's control namespace, and `bootstrap_url` points at the
//! bucket's prefix with `bootstrap_serve: false`. `tarmac deploy` then installs every host from
//! the store, tarmac serving nothing itself; postflight passes. Then the store is made hostile:
//! one package object is replaced, and the next deploy refuses it, naming the sha256 it pinned
//! over SSH. The lab and the store are torn down even when the test fails.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// The s3s-fs binary: `TARMAC_S3S_FS` (scripts/test.sh installs it), else its cache.
fn s3s_fs() -> PathBuf {
    let p = std::env::var_os("TARMAC_S3S_FS")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/cache/tarmac-tools/s3s-fs/bin/s3s-fs".into());
    assert!(
        p.is_file(),
        "no S3-compatible server at {}\nhint: run scripts/test.sh (it installs s3s-fs), or \
         cargo install s3s-fs --version 0.14.1 --locked --features binary --root \
         /var/cache/tarmac-tools/s3s-fs",
        p.display()
    );
    p
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// `curl ARGS` in the lab's control namespace; must succeed.
fn curl(lab: &tarmac_lab::Lab, args: &[&str]) {
    let out = lab
        .ctl_command("curl")
        .args(["-fsS", "--max-time", "60"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {args:?}: {}", text(&out));
}

/// PutObject of every file of genconf/serve/ under `base` (`http://STORE/BUCKET/PREFIX`).
fn publish(lab: &tarmac_lab::Lab, serve: &Path, base: &str) -> Vec<String> {
    let mut all = Vec::new();
    files(serve, &mut all);
    let mut keys = Vec::new();
    for f in all {
        let rel = f.strip_prefix(serve).unwrap().to_str().unwrap().to_owned();
        curl(lab, &["-T", f.to_str().unwrap(), &format!("{base}/{rel}")]);
        keys.push(rel);
    }
    keys
}

#[test]
fn deploy_from_an_s3_compatible_store() {
    let s3s = s3s_fs();
    let QuickLab {
        lab,
        dir,
        work,
        down: _down,
    } = QuickLab::up("s3", 1, 1, 0);
    let genconf = dir.join("genconf");
    let g = genconf.to_str().unwrap();
    let build = dir.join("build");
    let b = build.to_str().unwrap();

    let out = in_lab(&lab, &["uninstall", "--yes", "--genconf-dir", g]);
    assert!(out.status.success(), "{}", text(&out));

    // The store: s3s-fs on the control namespace's address, its objects under work/s3.
    let ctl = lab.ctl_ip().to_string();
    let root = work.path().join("s3");
    std::fs::create_dir_all(&root).unwrap();
    let log = std::fs::File::create(work.path().join("s3s-fs.log")).unwrap();
    let _store = Reap(
        lab.ctl_command(&s3s)
            .args(["--host", &ctl, "--port", "9000"])
            .arg(&root)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start s3s-fs"),
    );
    let endpoint = format!("http://{ctl}:9000");
    let mut up = false;
    for _ in 0..100 {
        let o = lab
            .ctl_command("curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "2", &endpoint])
            .output()
            .unwrap();
        if o.status.code() != Some(7) {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        up,
        "s3s-fs did not listen on {endpoint}: {}",
        std::fs::read_to_string(work.path().join("s3s-fs.log")).unwrap_or_default()
    );
    curl(&lab, &["-X", "PUT", &format!("{endpoint}/tarmac")]);

    let base = format!("{endpoint}/tarmac/clusters/c1");
    set_key(&genconf, "bootstrap_url", &base);
    set_key(&genconf, "bootstrap_serve", "false");
    regenconf(&lab, g, b);
    let keys = publish(&lab, &genconf.join("serve"), &base);
    assert!(keys.iter().any(|k| k.ends_with(".tar.zst")), "{keys:?}");

    let out = in_lab(&lab, &["deploy", "--genconf-dir", g]);
    assert!(
        out.status.success(),
        "deploy from the store:\n{}",
        text(&out)
    );
    let out = in_lab(
        &lab,
        &["postflight", "--genconf-dir", g, "--timeout", "300"],
    );
    assert!(out.status.success(), "{}", text(&out));
    for h in lab.hosts() {
        assert_eq!(
            ssh(&lab, &h.name, "cat /etc/tarmac/setup-flags/repository-url"),
            base,
            "{}",
            h.name
        );
    }
    // `tarmac exec` reaches the same hosts with the installer's SSH settings of config.yaml.
    let out = in_lab(
        &lab,
        &[
            "exec",
            "--genconf-dir",
            g,
            "--role",
            "master",
            "--",
            "cat /etc/tarmac/setup-flags/repository-url",
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "exec: {t}");
    assert!(t.contains(&base), "{t}");
    assert!(t.contains("1 ok"), "{t}");
    // The objects came through the S3 API into the store's own layout.
    assert!(root.join("tarmac/clusters/c1").is_dir());

    // A hostile store: one package replaced. The pinned sha256 refuses it.
    let out = in_lab(&lab, &["uninstall", "--yes", "--genconf-dir", g]);
    assert!(out.status.success(), "{}", text(&out));
    let victim = keys
        .iter()
        .find(|k| k.ends_with(".tar.zst") && k.contains("packages/"))
        .unwrap_or_else(|| panic!("no package among {keys:?}"));
    // Same size, other bytes: only the sha256 pin can tell.
    let size = std::fs::metadata(genconf.join("serve").join(victim))
        .unwrap()
        .len();
    let evil = work.path().join("evil.tar.zst");
    std::fs::write(&evil, vec![0x5a; usize::try_from(size).unwrap()]).unwrap();
    curl(
        &lab,
        &["-T", evil.to_str().unwrap(), &format!("{base}/{victim}")],
    );
    let out = in_lab(&lab, &["deploy", "--genconf-dir", g]);
    let t = text(&out);
    assert!(
        !out.status.success(),
        "deploy took a tampered package:\n{t}"
    );
    let file = victim.rsplit('/').next().unwrap();
    assert!(t.contains("sha256") && t.contains(file), "{t}");
    let id = file.trim_end_matches(".tar.zst");
    for h in lab.hosts() {
        assert_eq!(
            ssh(
                &lab,
                &h.name,
                &format!("test -e /opt/tarmac/packages/{id} && echo stored || echo absent")
            ),
            "absent",
            "{} stored the tampered {id}",
            h.name
        );
    }
}
