//! The distribution a build carries: loaded from the build alone (signature checked when a
//! key is given), identical to the source tree's, and refused when altered, signed by another
//! key, missing or hostile.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use tarmac_config::Distribution;
use tarmac_events::Sink;
use tarmac_genconf::GenconfError;
use tarmac_genconf::distribution::load_build_distribution;
use tarmac_genconf::testkit::fake_build;
use tarmac_pkg::manifest::{self, Artifact, ArtifactKind, Manifest, SecretKey};

fn sink() -> Sink {
    Arc::new(|_| {})
}

fn source() -> Distribution {
    Distribution::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/reference/config"))
        .unwrap()
}

fn manifest_of(out: &Path) -> (std::path::PathBuf, Manifest) {
    let bid = fs::read_to_string(out.join("bootstrap.latest")).unwrap();
    let p = out.join(format!("bootstrap/{}.manifest.json", bid.trim()));
    let m = Manifest::parse_unverified(&fs::read(&p).unwrap()).unwrap();
    (p, m)
}

#[test]
fn the_build_carries_the_same_distribution_as_the_source_tree() {
    let t = tempfile::tempdir().unwrap();
    let key = fake_build(t.path(), true).unwrap();
    let d = load_build_distribution(t.path(), Some(&key), &sink()).unwrap();
    assert_eq!(
        d.dist.digest(),
        source().digest(),
        "same schema and templates"
    );
    assert_eq!(d.dist.name(), "reference");
    assert!(d.signed_by.unwrap().starts_with("sha256:"));
    assert_eq!(d.dist.dir(), None, "nothing is read from a source tree");
    // without a key: integrity against the manifest only
    let d = load_build_distribution(t.path(), None, &sink()).unwrap();
    assert_eq!(d.signed_by, None);
}

#[test]
fn a_manifest_signed_by_another_key_is_refused() {
    let t = tempfile::tempdir().unwrap();
    fake_build(t.path(), true).unwrap();
    let other = t.path().join("other.pub");
    fs::write(&other, SecretKey::generate().public().to_pem()).unwrap();
    let e = load_build_distribution(t.path(), Some(&other), &sink()).unwrap_err();
    assert!(matches!(e, GenconfError::Manifest { .. }), "{e:?}");
}

#[test]
fn an_altered_distribution_archive_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let key = fake_build(t.path(), true).unwrap();
    let (_, m) = manifest_of(t.path());
    let a = m.first(ArtifactKind::Distribution).unwrap();
    let p = t.path().join(&a.path);
    let mut b = fs::read(&p).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 1;
    fs::write(&p, b).unwrap();
    let e = load_build_distribution(t.path(), Some(&key), &sink()).unwrap_err();
    assert!(matches!(e, GenconfError::Corrupt(_)), "{e:?}");
}

#[test]
fn a_build_without_a_distribution_says_how_to_get_one() {
    let t = tempfile::tempdir().unwrap();
    fake_build(t.path(), false);
    let (p, mut m) = manifest_of(t.path());
    m.artifacts.retain(|a| a.kind != ArtifactKind::Distribution);
    fs::write(&p, m.to_bytes()).unwrap();
    let e = tarmac_types::error_report::text_with_hint(
        &load_build_distribution(t.path(), None, &sink()).unwrap_err(),
    );
    assert!(
        e.starts_with(&format!(
            "the build at {} carries no distribution configuration",
            t.path().display()
        )),
        "{e}"
    );
    assert!(e.contains("hint: rebuild it with this tarmac"), "{e}");
}

/// Replace the distribution archive with `bytes` and re-pin it in an unsigned manifest (what
/// a compromised builder could publish).
fn swap_archive(out: &Path, bytes: &[u8]) {
    let (p, mut m) = manifest_of(out);
    let rel = m.first(ArtifactKind::Distribution).unwrap().path.clone();
    fs::write(out.join(&rel), bytes).unwrap();
    let fresh = Artifact::of_file(out, &rel, ArtifactKind::Distribution).unwrap();
    for a in &mut m.artifacts {
        if a.path == rel {
            *a = fresh.clone();
        }
    }
    fs::write(&p, m.to_bytes()).unwrap();
    let _ = fs::remove_file(manifest::signature_path(&p));
}

fn tar_zst(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    let raw = b.into_inner().unwrap();
    zstd::encode_all(raw.as_slice(), 3).unwrap()
}

#[test]
fn hostile_archives_are_refused_by_name() {
    let t = tempfile::tempdir().unwrap();
    fake_build(t.path(), false);
    let file = |b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // set the name bytes directly: `set_path` refuses `..`
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    // a path out of the archive
    swap_archive(
        t.path(),
        &tar_zst(|b| {
            file(b, "schema.yaml", b"params: {}\n");
            file(b, "../../etc/evil", b"x");
        }),
    );
    let e = load_build_distribution(t.path(), None, &sink()).unwrap_err();
    let chain = format!("{e}: {}", std::error::Error::source(&e).unwrap());
    assert!(
        chain.contains("member `../../etc/evil` has an unsafe path"),
        "{chain}"
    );
    // a symlink
    swap_archive(
        t.path(),
        &tar_zst(|b| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, "schema.yaml", "/etc/shadow").unwrap();
        }),
    );
    let e = load_build_distribution(t.path(), None, &sink()).unwrap_err();
    let chain = format!("{e}: {}", std::error::Error::source(&e).unwrap());
    assert!(
        chain.contains("member `schema.yaml` is not a regular file or directory"),
        "{chain}"
    );
    // no schema at all
    swap_archive(t.path(), &tar_zst(|b| file(b, "README.md", b"hi\n")));
    let e = load_build_distribution(t.path(), None, &sink()).unwrap_err();
    let chain = format!("{e}: {}", std::error::Error::source(&e).unwrap());
    assert!(chain.contains("it has no schema.yaml"), "{chain}");
    // not an archive
    swap_archive(t.path(), b"not zstd");
    let e = load_build_distribution(t.path(), None, &sink()).unwrap_err();
    assert!(
        matches!(e, GenconfError::DistributionArchive { .. }),
        "{e:?}"
    );
}
