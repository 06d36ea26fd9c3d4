//! A small but real build output directory (what `tarmac build` writes), for tests and the
//! genconf benchmark: a few packages, a host binary, a bootstrap archive, and a manifest,
//! signed when asked.

use std::fs;
use std::path::{Path, PathBuf};

use tarmac_pkg::extract::Compression;
use tarmac_pkg::manifest::{self, Artifact, ArtifactKind, MANIFEST_FORMAT, Manifest, SecretKey};
use tarmac_pkg::testkit::{self as pk, Entry};
use tarmac_types::PackageId;

/// Write a build output into `out`. Returns the public key file when `sign`.
pub fn fake_build(out: &Path, sign: bool) -> Option<PathBuf> {
    let pkgs = [
        (
            "etcd--3.5.17",
            vec![
                Entry::exe("bin/etcd", "#!/bin/sh\nexec sleep infinity\n"),
                Entry::file(
                    "systemd/etcd.service",
                    "[Service]\nExecStart=/opt/tarmac/bin/etcd\n",
                ),
            ],
        ),
        (
            "node-exporter--1.8.2",
            vec![Entry::exe(
                "bin/node_exporter",
                "#!/bin/sh\nexec sleep infinity\n",
            )],
        ),
        (
            "prometheus--2.54.1",
            vec![Entry::exe(
                "bin/prometheus",
                "#!/bin/sh\nexec sleep infinity\n",
            )],
        ),
        (
            "tarmac-host--0.1.0",
            vec![Entry::exe(
                "bin/tarmac-host",
                "#!/bin/sh\necho tarmac-host\n",
            )],
        ),
    ];
    let mut artifacts = Vec::new();
    let mut ids = Vec::new();
    for (id, files) in &pkgs {
        let id = PackageId::parse(id).expect("valid id");
        let rel = manifest::package_path(&id);
        let bytes = pk::package("{}", files);
        fs::create_dir_all(out.join(&rel).parent().expect("parent")).expect("mkdir");
        fs::write(out.join(&rel), bytes).expect("write package");
        artifacts.push(Artifact::of_file(out, &rel, ArtifactKind::Package).expect("hash"));
        ids.push(id);
    }
    let bid = manifest::bootstrap_id(&ids);
    fs::create_dir_all(out.join("bootstrap")).expect("mkdir");
    let boot = format!("bootstrap/{bid}.bootstrap.tar.zst");
    fs::write(
        out.join(&boot),
        pk::archive(&[Entry::file("bootstrap.json", "{}")], Compression::Zstd),
    )
    .expect("write");
    artifacts.push(Artifact::of_file(out, &boot, ArtifactKind::Bootstrap).expect("hash"));
    let active = format!("bootstrap/{bid}.active.json");
    fs::write(out.join(&active), serde_json::to_vec(&ids).expect("json")).expect("write");
    artifacts.push(Artifact::of_file(out, &active, ArtifactKind::ActiveList).expect("hash"));
    let host = format!("bootstrap/{bid}.tarmac-host");
    fs::write(out.join(&host), "#!/bin/sh\necho tarmac-host\n").expect("write");
    artifacts.push(Artifact::of_file(out, &host, ArtifactKind::HostBinary).expect("hash"));
    let dist = format!("bootstrap/{bid}.distribution.tar.zst");
    write_distribution(&out.join(&dist));
    artifacts.push(Artifact::of_file(out, &dist, ArtifactKind::Distribution).expect("hash"));
    artifacts.sort_by(|a, b| a.path.cmp(&b.path));
    let m = Manifest {
        format: MANIFEST_FORMAT,
        bootstrap_id: bid.clone(),
        bootstrap_packages: ids.clone(),
        packages: ids,
        artifacts,
        host_requirements: Default::default(),
    };
    let mpath = out.join(format!("bootstrap/{bid}.manifest.json"));
    fs::write(&mpath, m.to_bytes()).expect("write manifest");
    fs::write(out.join("bootstrap.latest"), format!("{bid}\n")).expect("write");
    if !sign {
        return None;
    }
    let key = SecretKey::generate();
    fs::write(manifest::signature_path(&mpath), key.sign(&m.to_bytes())).expect("write sig");
    let pubp = out.join("signing.pub");
    fs::write(&pubp, key.public().to_pem()).expect("write key");
    Some(pubp)
}

/// The reference distribution's config/ packed as `tarmac build` packs it (with its
/// `distribution.json` naming it `reference`), written to `dest`.
pub fn write_distribution(dest: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/reference/config");
    let stage = tempfile::tempdir().expect("tempdir");
    copy_dir(&src, stage.path());
    fs::write(
        stage.path().join("distribution.json"),
        "{\"format\": 1, \"name\": \"reference\"}\n",
    )
    .expect("write");
    tarmac_pkg::pack::pack_dir(stage.path(), dest, &Default::default()).expect("pack");
}

fn copy_dir(src: &Path, dest: &Path) {
    for e in fs::read_dir(src).expect("read dir") {
        let e = e.expect("entry");
        let to = dest.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            fs::create_dir_all(&to).expect("mkdir");
            copy_dir(&e.path(), &to);
        } else {
            fs::copy(e.path(), &to).expect("copy");
        }
    }
}
