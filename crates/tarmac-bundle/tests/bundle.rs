//! Bundles: create, verify (every single flipped byte is refused; another key is named as
//! such), extract (atomic, checked, refuses to clobber), and the sh script's payload.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use tarmac_bundle::{BundleError, Meta, Trust, create, extract, verify};
use tarmac_pkg::manifest::SecretKey;
use tarmac_types::error_report::Hint;

/// The message with its hint (a datum of the error) below it, as the report prints them.
fn with_hint(e: &BundleError) -> String {
    match e.hint() {
        Some(h) => format!("{e}\nhint: {h}"),
        None => e.to_string(),
    }
}

const BID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn stage(dir: &Path) -> PathBuf {
    let root = dir.join("stage");
    fs::create_dir_all(root.join("build/bootstrap")).unwrap();
    fs::create_dir_all(root.join("docs")).unwrap();
    fs::write(root.join("tarmac"), "#!/bin/sh\necho tarmac \"$@\"\n").unwrap();
    fs::set_permissions(root.join("tarmac"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("build/bootstrap.latest"), format!("{BID}\n")).unwrap();
    // a long path (GNU long-name records) and some binary content
    let long = format!("build/bootstrap/{BID}.{BID}.bootstrap.tar.zst");
    fs::write(
        root.join(long),
        (0..3000u32).map(|i| (i * 7) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    fs::write(root.join("docs/config-reference.md"), "# keys\n").unwrap();
    root
}

fn meta() -> Meta {
    Meta {
        bootstrap_id: BID.into(),
        distribution: "reference".into(),
        tarmac_version: "0.1.0".into(),
        prereq_suites: vec![],
    }
}

#[test]
fn a_bundle_verifies_and_extracts_to_its_files() {
    let t = tempfile::tempdir().unwrap();
    let key = SecretKey::generate();
    let c = create(&stage(t.path()), &meta(), &key, &t.path().join("out")).unwrap();
    assert_eq!(
        c.path.file_name().unwrap().to_str().unwrap(),
        format!("tarmac-{BID}.bundle")
    );
    assert_eq!(c.index.files.len(), 4);
    assert_eq!(c.index.files[0].path, "build/bootstrap.latest");
    let trust = Trust::Key(key.public());
    let v = verify(&c.path, &trust).unwrap();
    assert_eq!(v.bootstrap_id, BID);
    assert_eq!(v.signer, key.public().fingerprint());
    assert_eq!(v.file_size, c.size);
    // by fingerprint too
    verify(&c.path, &Trust::Fingerprint(key.public().fingerprint())).unwrap();

    let x = extract(&c.path, &trust, &t.path().join("site"), false).unwrap();
    assert_eq!(x.dir, t.path().join(format!("site/tarmac-{BID}")));
    assert!(!x.replaced);
    let tarmac = x.dir.join("tarmac");
    assert_eq!(
        fs::metadata(&tarmac).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(
        fs::read_to_string(x.dir.join("docs/config-reference.md")).unwrap(),
        "# keys\n"
    );
    assert_eq!(
        fs::metadata(x.dir.join("docs/config-reference.md"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    // `sha256sum -c SHA256SUMS` passes inside the extracted bundle
    let out = Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(&x.dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // nothing but the bundle directory is left in the site directory
    let names: Vec<String> = fs::read_dir(t.path().join("site"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![format!("tarmac-{BID}")]);

    // again: refused without --force, replaced with it
    let e = extract(&c.path, &trust, &t.path().join("site"), false).unwrap_err();
    assert!(matches!(e, BundleError::Exists { .. }), "{e}");
    let x2 = extract(&c.path, &trust, &t.path().join("site"), true).unwrap();
    assert!(x2.replaced);
}

#[test]
fn the_same_inputs_give_the_same_bytes() {
    let t = tempfile::tempdir().unwrap();
    let key = SecretKey::generate();
    let root = stage(t.path());
    let a = create(&root, &meta(), &key, &t.path().join("a")).unwrap();
    let b = create(&root, &meta(), &key, &t.path().join("b")).unwrap();
    assert_eq!(a.sha256, b.sha256);
    assert_eq!(fs::read(&a.path).unwrap(), fs::read(&b.path).unwrap());
}

#[test]
fn every_single_flipped_byte_is_refused_as_altered() {
    let t = tempfile::tempdir().unwrap();
    let key = SecretKey::generate();
    let c = create(&stage(t.path()), &meta(), &key, &t.path().join("out")).unwrap();
    let good = fs::read(&c.path).unwrap();
    let trust = Trust::Key(key.public());
    let bad = t.path().join("bad.bundle");
    for i in 0..good.len() {
        let mut b = good.clone();
        b[i] ^= 0x01;
        fs::write(&bad, &b).unwrap();
        match verify(&bad, &trust) {
            Err(BundleError::Altered { what, .. }) => {
                assert!(!what.is_empty());
            }
            // the first bytes are what makes it a bundle at all
            Err(BundleError::NotABundle { .. }) if i < 10 => {}
            other => panic!("byte {i} of {} flipped: {other:?}", good.len()),
        }
    }
    // a flipped byte in the body says so in words
    let mut b = good.clone();
    b[5000] ^= 0x80;
    fs::write(&bad, &b).unwrap();
    let e = with_hint(&verify(&bad, &trust).unwrap_err());
    assert!(
        e.starts_with(&format!(
            "{} was altered or damaged: its contents hash to ",
            bad.display()
        )),
        "{e}"
    );
    assert!(e.contains("hint: do not use this copy"), "{e}");
    // truncated, and extended
    fs::write(&bad, &good[..good.len() - 1]).unwrap();
    assert!(matches!(
        verify(&bad, &trust),
        Err(BundleError::Altered { .. })
    ));
    let mut longer = good.clone();
    longer.extend_from_slice(&[0u8; 512]);
    fs::write(&bad, &longer).unwrap();
    assert!(matches!(
        verify(&bad, &trust),
        Err(BundleError::Altered { .. })
    ));
    // and extract leaves nothing behind for an altered bundle
    let mut b = good.clone();
    b[6000] ^= 0x01;
    fs::write(&bad, &b).unwrap();
    let site = t.path().join("site");
    assert!(extract(&bad, &trust, &site, false).is_err());
    assert!(!site.exists() || fs::read_dir(&site).unwrap().next().is_none());
}

#[test]
fn a_bundle_signed_by_another_key_names_both_keys() {
    let t = tempfile::tempdir().unwrap();
    let signer = SecretKey::generate();
    let trusted = SecretKey::generate();
    let c = create(&stage(t.path()), &meta(), &signer, &t.path().join("out")).unwrap();
    let e = verify(&c.path, &Trust::Key(trusted.public())).unwrap_err();
    assert!(matches!(e, BundleError::OtherKey { .. }), "{e:?}");
    assert_eq!(
        with_hint(&e),
        format!(
            "{} is signed by key {}, not by the key you trust ({})\nhint: get the bundle from the publisher whose key you trust, or check that --public-key / --key-fingerprint names the right key",
            c.path.display(),
            signer.public().fingerprint(),
            trusted.public().fingerprint()
        )
    );
    let e = verify(&c.path, &Trust::Fingerprint(trusted.public().fingerprint())).unwrap_err();
    assert!(matches!(e, BundleError::OtherKey { .. }), "{e:?}");
}

#[test]
fn not_a_bundle_is_said_plainly() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("x.bundle");
    fs::write(&f, "hello").unwrap();
    let e = verify(&f, &Trust::Key(SecretKey::generate().public()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not a Tarmac bundle"), "{e}");
}

#[test]
fn the_payload_is_a_plain_tar_after_the_script() {
    let t = tempfile::tempdir().unwrap();
    let key = SecretKey::generate();
    let c = create(&stage(t.path()), &meta(), &key, &t.path().join("out")).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tail -c +4097 '{}' | tar -t -f -",
            c.path.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = list.lines().collect();
    let root = format!("tarmac-{BID}/");
    assert_eq!(lines[0], root);
    assert!(lines.contains(&format!("{root}tarmac").as_str()), "{list}");
    assert!(
        lines.contains(&format!("{root}bundle.json").as_str()),
        "{list}"
    );
    assert_eq!(lines.last().unwrap(), &format!("{root}bundle.sig"));
    // the script without arguments prints its usage and fails
    let out = Command::new("sh").arg(&c.path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let usage = String::from_utf8_lossy(&out.stderr);
    assert!(
        usage.contains(&format!("sh tarmac-{BID}.bundle verify")),
        "{usage}"
    );
    // with a verb it runs the bundle's own tarmac (here a script that echoes its arguments)
    let out = Command::new("sh")
        .arg(&c.path)
        .args(["verify", "--public-key", "k.pub"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "tarmac bundle verify {} --public-key k.pub\n",
            c.path.display()
        )
    );
}
