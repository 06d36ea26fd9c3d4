//! The operator's bundle: one file, `tarmac-<bootstrap id>.bundle`, that holds everything a
//! site needs — the portable `tarmac`, the build (whose manifest is signed), its
//! distribution, the configuration reference and, optionally, offline prerequisites — and
//! is signed as a whole.
//!
//! ```text
//! bytes 0..4096        a POSIX sh script (`sh FILE verify|extract …` runs the bundle's tarmac)
//! bytes 4096..         a tar stream of tarmac-<bid>/…:
//!                        tarmac, bundle.json (every file: size, sha256), SHA256SUMS, …
//!                        tarmac-<bid>/bundle.sig   1024 bytes: the signature block
//!                        two zero blocks (end of archive)
//! ```
//!
//! The signature block signs the sha256 and size of every byte before its own tar header
//! (script, headers, contents, padding), and the last 2560 bytes are checked to be exactly the
//! block's header, the block and the end of archive. So one changed byte anywhere is found.
//! The block carries the signer's public key; a bundle is accepted only when that key is the
//! one the operator trusts (`--public-key` or `--key-fingerprint`), and the signature holds.

use std::fs;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tarmac_pkg::manifest::{self, ManifestError, PublicKey, SecretKey};
use tarmac_types::Digest;

/// Format of `bundle.json` and of the signature block.
pub const FORMAT: u32 = 1;
/// Where the tar stream starts (the script before it is padded to this size).
pub const PAYLOAD_OFFSET: u64 = 4096;
/// The bundle's index, at its root.
pub const INDEX: &str = "bundle.json";
/// `sha256sum -c` input for every file, at its root.
pub const SUMS: &str = "SHA256SUMS";
/// The portable tarmac binary, at its root.
pub const BINARY: &str = "tarmac";
/// The signature block's member name (under the root).
pub const SIG_MEMBER: &str = "bundle.sig";
const SIG_DATA: usize = 1024;
const BLOCK: u64 = 512;
/// Signature header + block + end of archive.
const TRAILER: u64 = BLOCK + SIG_DATA as u64 + 2 * BLOCK;
/// mtime of every member (reproducible bytes).
const MTIME: u64 = tarmac_pkg::pack::MTIME;

/// `tarmac-<bid>`: the bundle's root directory.
pub fn root_name(bootstrap_id: &str) -> String {
    format!("tarmac-{bootstrap_id}")
}

/// `tarmac-<bid>.bundle`: the bundle's file name.
pub fn file_name(bootstrap_id: &str) -> String {
    format!("tarmac-{bootstrap_id}.bundle")
}

/// `bundle.json`: what the bundle holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleIndex {
    pub format: u32,
    /// `tarmac-<bid>`.
    pub name: String,
    pub bootstrap_id: String,
    /// The distribution's name.
    pub distribution: String,
    /// Version of the tarmac inside.
    pub tarmac_version: String,
    /// Fingerprint of the signing key (the build manifest's and the bundle's).
    pub key_fingerprint: String,
    /// Debian suites whose prerequisites are in `prereqs/`.
    #[serde(default)]
    pub prereq_suites: Vec<String>,
    /// Every file but bundle.json and SHA256SUMS, sorted by path.
    pub files: Vec<FileEntry>,
}

/// One file of the bundle, relative to its root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: Digest,
    #[serde(default)]
    pub executable: bool,
}

/// What a bundle is made from besides its files.
#[derive(Debug, Clone)]
pub struct Meta {
    pub bootstrap_id: String,
    pub distribution: String,
    pub tarmac_version: String,
    pub prereq_suites: Vec<String>,
}

/// The key an operator trusts.
#[derive(Debug, Clone)]
pub enum Trust {
    Key(PublicKey),
    /// `sha256:<hex>` (see [`manifest::parse_fingerprint`]).
    Fingerprint(String),
}

impl Trust {
    fn fingerprint(&self) -> String {
        match self {
            Trust::Key(k) => k.fingerprint(),
            Trust::Fingerprint(f) => f.clone(),
        }
    }
}

/// A bundle that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub name: String,
    pub bootstrap_id: String,
    /// Fingerprint of the key that signed it (the trusted one).
    pub signer: String,
    pub signer_key: String,
    pub body_size: u64,
    pub body_sha256: Digest,
    pub file_size: u64,
}

/// A bundle written by [`create`].
#[derive(Debug, Clone)]
pub struct Created {
    pub path: PathBuf,
    pub size: u64,
    /// sha256 of the whole file: what an operator may also pin out of band.
    pub sha256: Digest,
    pub index: BundleIndex,
}

/// A bundle unpacked by [`extract`].
#[derive(Debug, Clone)]
pub struct Extracted {
    pub dir: PathBuf,
    pub verified: Verified,
    pub index: BundleIndex,
    /// An earlier extraction was replaced (`force`).
    pub replaced: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{file} is not a Tarmac bundle: {why}")]
    NotABundle { file: PathBuf, why: String },
    #[error("{file} was altered or damaged: {what}")]
    Altered { file: PathBuf, what: String },
    #[error("{file} is signed by key {signer}, not by the key you trust ({trusted})")]
    OtherKey {
        file: PathBuf,
        signer: String,
        trusted: String,
    },
    #[error("{file}: member `{member}` {why}")]
    Unsafe {
        file: PathBuf,
        member: String,
        why: String,
    },
    #[error("{dir} already holds another extraction of this bundle's id")]
    Exists { dir: PathBuf },
    #[error("cannot bundle {path}: {why}")]
    Staging { path: PathBuf, why: String },
    #[error(transparent)]
    Key(#[from] ManifestError),
}

impl tarmac_types::error_report::Hint for BundleError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(
            match self {
                BundleError::NotABundle { .. } => "a bundle is the tarmac-<id>.bundle file `tarmac bundle create` wrote",
                BundleError::Altered { .. } => "do not use this copy; fetch the bundle again from where it was published and check it again",
                BundleError::OtherKey { .. } => "get the bundle from the publisher whose key you trust, or check that --public-key / --key-fingerprint names the right key",
                BundleError::Exists { .. } => "pass --force to replace it, or extract with --dir elsewhere",
                BundleError::Key(e) => return e.hint(),
                _ => return None,
            }
            .into(),
        )
    }
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BundleError + 'a {
    move |source| BundleError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The sh script the bundle starts with, padded to [`PAYLOAD_OFFSET`] bytes.
pub fn script(name: &str) -> Vec<u8> {
    let text = format!(
        r#"#!/bin/sh
# {name}.bundle: a Tarmac bundle. One file: the portable tarmac, the signed build, its
# distribution and the configuration reference (and offline prerequisites when built
# with them). Nothing else is needed at the site, and nothing is downloaded.
#
#   sh {name}.bundle verify  --public-key KEY | --key-fingerprint FP
#   sh {name}.bundle extract --public-key KEY | --key-fingerprint FP [--dir DIR] [--force]
#
# verify checks the signature over every byte of this file; extract checks it, then unpacks
# into DIR/{name}/. The checker is the tarmac inside this file: to trust nothing in it,
# run `tarmac bundle verify THIS-FILE --public-key KEY` with a tarmac you already trust.
set -eu
name={name}
payload={PAYLOAD_OFFSET}
case "${{1:-}}" in
  verify|extract) ;;
  *) sed -n '2,11p' "$0" | sed 's/^# \{{0,1\}}//' >&2; exit 2 ;;
esac
case "$0" in /*) self=$0 ;; *) self=$PWD/${{0#./}} ;; esac
tmp=$(mktemp -d "${{TMPDIR:-/tmp}}/tarmac-bundle.XXXXXX")
trap 'rm -rf "$tmp"' EXIT HUP INT TERM
tail -c +$((payload + 1)) "$self" | tar -x -f - -C "$tmp" "$name/tarmac"
cmd=$1
shift
status=0
"$tmp/$name/tarmac" bundle "$cmd" "$self" "$@" || status=$?
exit $status
"#
    );
    let mut b = text.into_bytes();
    assert!(
        b.len() < PAYLOAD_OFFSET as usize,
        "the bundle script outgrew its {PAYLOAD_OFFSET} bytes"
    );
    b.resize(PAYLOAD_OFFSET as usize, b'\n');
    b
}

/// The bytes the signature covers: what the bundle is and its body's digest.
fn signed_message(name: &str, bootstrap_id: &str, body_size: u64, body: &Digest) -> Vec<u8> {
    format!("tarmac-bundle format {FORMAT}\nname {name}\nbootstrap {bootstrap_id}\nbody {body_size} {body}\n")
        .into_bytes()
}

/// The signature block (padded with spaces to [`SIG_DATA`] bytes).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SigBlock {
    format: u32,
    name: String,
    bootstrap_id: String,
    body_size: u64,
    body_sha256: Digest,
    /// The signer's public key (PEM); trusted only when it is the operator's key.
    public_key: String,
    /// The detached signature file over [`signed_message`].
    signature: String,
}

fn sig_header(name: &str) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_path(format!("{name}/{SIG_MEMBER}"))
        .expect("a bundle name fits a tar header");
    h.set_size(SIG_DATA as u64);
    h.set_mode(0o644);
    h.set_mtime(MTIME);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    h
}

/// Hashes and counts what is written through it.
struct HashCount<W> {
    inner: W,
    hasher: Sha256,
    n: u64,
}

impl<W: Write> Write for HashCount<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Every regular file under `root` (relative, sorted), refusing anything else.
fn walk(root: &Path, rel: &str, out: &mut Vec<(String, PathBuf, bool)>) -> Result<(), BundleError> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .map_err(io_err("cannot read", &dir))?
        .collect::<Result<_, _>>()
        .map_err(io_err("cannot read", &dir))?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let meta = fs::metadata(e.path()).map_err(io_err("cannot stat", &e.path()))?;
        if e.file_type()
            .map_err(io_err("cannot stat", &e.path()))?
            .is_symlink()
            && meta.is_dir()
        {
            return Err(BundleError::Staging {
                path: e.path(),
                why: "a symlink to a directory cannot be bundled".into(),
            });
        }
        if meta.is_dir() {
            walk(root, &r, out)?;
        } else if meta.is_file() {
            out.push((r, e.path(), meta.permissions().mode() & 0o111 != 0));
        } else {
            return Err(BundleError::Staging {
                path: e.path(),
                why: "only regular files and directories can be bundled".into(),
            });
        }
    }
    Ok(())
}

/// Write `out_dir/tarmac-<bid>.bundle` from `root`, a directory laid out as the bundle's
/// root (its `tarmac` binary, `build/`, …), signed with `key`. `bundle.json` and
/// `SHA256SUMS` are computed here. The file is written next to its final name and renamed.
pub fn create(
    root: &Path,
    meta: &Meta,
    key: &SecretKey,
    out_dir: &Path,
) -> Result<Created, BundleError> {
    let name = root_name(&meta.bootstrap_id);
    let mut files = Vec::new();
    walk(root, "", &mut files)?;
    files.retain(|(r, _, _)| r != INDEX && r != SUMS);
    files.sort();
    if !files.iter().any(|(r, _, x)| r == BINARY && *x) {
        return Err(BundleError::Staging {
            path: root.join(BINARY),
            why: "the bundle needs its executable tarmac binary at its root".into(),
        });
    }
    let mut entries = Vec::new();
    for (rel, path, executable) in &files {
        let f = fs::File::open(path).map_err(io_err("cannot open", path))?;
        let (sha256, size) = {
            let mut w = tarmac_types::Sha256Writer::new(io::sink());
            io::copy(&mut io::BufReader::new(f), &mut w).map_err(io_err("cannot read", path))?;
            let (d, n, _) = w.finish();
            (d, n)
        };
        entries.push(FileEntry {
            path: rel.clone(),
            size,
            sha256,
            executable: *executable,
        });
    }
    let index = BundleIndex {
        format: FORMAT,
        name: name.clone(),
        bootstrap_id: meta.bootstrap_id.clone(),
        distribution: meta.distribution.clone(),
        tarmac_version: meta.tarmac_version.clone(),
        key_fingerprint: key.public().fingerprint(),
        prereq_suites: meta.prereq_suites.clone(),
        files: entries,
    };
    let mut index_json = serde_json::to_vec_pretty(&index).expect("index serializes");
    index_json.push(b'\n');
    let sums: String = index
        .files
        .iter()
        .map(|f| format!("{}  {}\n", f.sha256, f.path))
        .collect();

    fs::create_dir_all(out_dir).map_err(io_err("cannot create", out_dir))?;
    let dest = out_dir.join(file_name(&meta.bootstrap_id));
    let tmp = tempfile::Builder::new()
        .prefix(".tarmac-bundle.")
        .tempfile_in(out_dir)
        .map_err(io_err("cannot create a temporary file in", out_dir))?;
    let werr = io_err("cannot write", tmp.path());
    let file = tmp
        .as_file()
        .try_clone()
        .map_err(io_err("cannot write", &dest))?;
    let mut w = HashCount {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        n: 0,
    };
    w.write_all(&script(&name))
        .map_err(io_err("cannot write", &dest))?;
    let mut b = tar::Builder::new(w);
    b.mode(tar::HeaderMode::Deterministic);
    let header = |size: u64, mode: u32, kind: tar::EntryType| {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(kind);
        h
    };
    // Directories first (so `tar -x` makes them 0755), then tarmac, the index, the sums,
    // and the rest: the shell script finds tarmac early.
    let mut dirs: Vec<String> = vec![String::new()];
    for f in &index.files {
        let mut p = f.path.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            dirs.push(parent.to_owned());
            p = parent;
        }
    }
    dirs.sort();
    dirs.dedup();
    let path_of = |rel: &str| {
        if rel.is_empty() {
            format!("{name}/")
        } else {
            format!("{name}/{rel}")
        }
    };
    let e = |e: io::Error| BundleError::Io {
        action: "cannot write",
        path: dest.clone(),
        source: e,
    };
    for d in &dirs {
        let mut h = header(0, 0o755, tar::EntryType::Directory);
        let p = if d.is_empty() {
            path_of("")
        } else {
            format!("{}/", path_of(d))
        };
        b.append_data(&mut h, p, io::empty()).map_err(e)?;
    }
    let mut order: Vec<&FileEntry> = index.files.iter().collect();
    order.sort_by_key(|f| (f.path != BINARY, f.path.clone()));
    let (first, rest) = order.split_at(1);
    for f in first {
        append_file(&mut b, &header, root, &path_of(&f.path), f).map_err(e)?;
    }
    let mut h = header(index_json.len() as u64, 0o644, tar::EntryType::Regular);
    b.append_data(&mut h, path_of(INDEX), index_json.as_slice())
        .map_err(e)?;
    let mut h = header(sums.len() as u64, 0o644, tar::EntryType::Regular);
    b.append_data(&mut h, path_of(SUMS), sums.as_bytes())
        .map_err(e)?;
    for f in rest {
        append_file(&mut b, &header, root, &path_of(&f.path), f).map_err(e)?;
    }
    // The signature over everything so far.
    let hc = b.get_mut();
    let body_size = hc.n;
    let body_sha256 = Digest(hc.hasher.clone().finalize().into());
    let sig = key.sign(&signed_message(
        &name,
        &meta.bootstrap_id,
        body_size,
        &body_sha256,
    ));
    let block = SigBlock {
        format: FORMAT,
        name: name.clone(),
        bootstrap_id: meta.bootstrap_id.clone(),
        body_size,
        body_sha256,
        public_key: key.public().to_pem(),
        signature: String::from_utf8(sig).expect("signature files are JSON text"),
    };
    let mut data = serde_json::to_vec(&block).expect("signature block serializes");
    assert!(data.len() <= SIG_DATA, "signature block outgrew its size");
    data.resize(SIG_DATA, b' ');
    let h = sig_header(&name);
    b.append(&h, data.as_slice()).map_err(e)?;
    let mut hc = b.into_inner().map_err(e)?;
    hc.flush().map_err(e)?;
    let size = hc.n;
    let HashCount { inner, hasher, .. } = hc;
    let sha256 = Digest(hasher.finalize().into());
    drop(inner);
    tmp.as_file().sync_all().map_err(werr)?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644))
        .map_err(io_err("cannot set the mode of", tmp.path()))?;
    tmp.persist(&dest)
        .map_err(|e| io_err("cannot rename into place", &dest)(e.error))?;
    if let Ok(d) = fs::File::open(out_dir) {
        let _ = d.sync_all();
    }
    Ok(Created {
        path: dest,
        size,
        sha256,
        index,
    })
}

fn append_file<W: Write>(
    b: &mut tar::Builder<W>,
    header: &impl Fn(u64, u32, tar::EntryType) -> tar::Header,
    root: &Path,
    path: &str,
    f: &FileEntry,
) -> io::Result<()> {
    let src = root.join(&f.path);
    let file = fs::File::open(&src)?;
    let len = file.metadata()?.len();
    if len != f.size {
        return Err(io::Error::other(format!(
            "{} changed while it was being bundled",
            src.display()
        )));
    }
    let mode = if f.executable { 0o755 } else { 0o644 };
    let mut h = header(f.size, mode, tar::EntryType::Regular);
    b.append_data(&mut h, path, file.take(f.size))
}

/// Check `file` against the trusted key, reading it once. Nothing in it is run or unpacked.
pub fn verify(file: &Path, trust: &Trust) -> Result<Verified, BundleError> {
    let not = |why: &str| BundleError::NotABundle {
        file: file.to_owned(),
        why: why.to_owned(),
    };
    let altered = |what: &str| BundleError::Altered {
        file: file.to_owned(),
        what: what.to_owned(),
    };
    let mut f = fs::File::open(file).map_err(io_err("cannot open", file))?;
    let file_size = f.metadata().map_err(io_err("cannot stat", file))?.len();
    let mut head = [0u8; 10];
    let n = f.read(&mut head).map_err(io_err("cannot read", file))?;
    if n < 10 || &head != b"#!/bin/sh\n" {
        return Err(not("it does not start with the bundle's sh script"));
    }
    if file_size < PAYLOAD_OFFSET + TRAILER + BLOCK {
        return Err(altered("it is too short to hold a signature (truncated?)"));
    }
    let body_size = file_size - TRAILER;
    f.seek(SeekFrom::Start(body_size))
        .map_err(io_err("cannot read", file))?;
    let mut trailer = vec![0u8; TRAILER as usize];
    f.read_exact(&mut trailer)
        .map_err(io_err("cannot read", file))?;
    let data = &trailer[BLOCK as usize..BLOCK as usize + SIG_DATA];
    let block: SigBlock = std::str::from_utf8(data)
        .ok()
        .and_then(|t| serde_json::from_str(t.trim_end_matches(' ')).ok())
        .ok_or_else(|| {
            altered("its signature block does not parse (the end of the file changed)")
        })?;
    let mut expected = sig_header(&block.name).as_bytes().to_vec();
    let mut padded = serde_json::to_vec(&block).expect("block serializes");
    padded.resize(SIG_DATA, b' ');
    expected.extend_from_slice(&padded);
    expected.resize(TRAILER as usize, 0);
    if expected != trailer {
        return Err(altered("the bytes around its signature block changed"));
    }
    if block.format != FORMAT {
        return Err(altered(&format!(
            "its signature block says format {}, this tarmac reads format {FORMAT} (damaged, or made by another tarmac version)",
            block.format
        )));
    }
    if block.body_size != body_size {
        return Err(altered(&format!(
            "it is {file_size} bytes, its signature is for a {} byte body (truncated or extended?)",
            block.body_size
        )));
    }
    // The body, hashed once.
    f.seek(SeekFrom::Start(0))
        .map_err(io_err("cannot read", file))?;
    let mut w = tarmac_types::Sha256Writer::new(io::sink());
    let copied = io::copy(
        &mut io::BufReader::with_capacity(1 << 20, (&f).take(body_size)),
        &mut w,
    )
    .map_err(io_err("cannot read", file))?;
    let (digest, _, _) = w.finish();
    if copied != body_size || digest != block.body_sha256 {
        return Err(altered(&format!(
            "its contents hash to {digest}, but it was signed as {}",
            block.body_sha256
        )));
    }
    // The signer's key: consistent with the signature, then the trusted one.
    let pem_path = PathBuf::from(format!("{}:{SIG_MEMBER}", file.display()));
    let signer = PublicKey::from_pem(&block.public_key, &pem_path)
        .map_err(|_| altered("the signer's public key in its signature block does not parse"))?;
    let named = manifest::signature_key_id(block.signature.as_bytes())
        .map_err(|_| altered("its signature does not parse"))?;
    if named != signer.key_id() {
        return Err(altered(
            "its signature names another key than the one it carries",
        ));
    }
    let trusted = trust.fingerprint();
    if signer.fingerprint() != trusted {
        return Err(BundleError::OtherKey {
            file: file.to_owned(),
            signer: signer.fingerprint(),
            trusted,
        });
    }
    manifest::verify_detached(
        &signed_message(&block.name, &block.bootstrap_id, body_size, &digest),
        block.signature.as_bytes(),
        &signer,
    )
    .map_err(|_| altered("its signature does not verify"))?;
    Ok(Verified {
        name: block.name,
        bootstrap_id: block.bootstrap_id,
        signer: signer.fingerprint(),
        signer_key: block.public_key,
        body_size,
        body_sha256: digest,
        file_size,
    })
}

/// Reads `limit` bytes of its inner reader through a hasher, then yields whatever follows
/// unhashed.
struct HashPrefix<R> {
    inner: R,
    hasher: Sha256,
    left: u64,
}

impl<R: Read> Read for HashPrefix<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let h = (n as u64).min(self.left) as usize;
        self.hasher.update(&buf[..h]);
        self.left -= h as u64;
        Ok(n)
    }
}

/// [`verify`] `file`, then unpack it into `dest_parent/tarmac-<bid>/` (written next to it and
/// renamed into place): every member is checked against `bundle.json`, and the bytes read
/// are hashed again and must be the verified ones, so a file changed between the two reads
/// leaves nothing behind. An existing extraction is replaced only with `force`.
pub fn extract(
    file: &Path,
    trust: &Trust,
    dest_parent: &Path,
    force: bool,
) -> Result<Extracted, BundleError> {
    let verified = verify(file, trust)?;
    let name = verified.name.clone();
    let final_dir = dest_parent.join(&name);
    if final_dir.exists() && !force {
        return Err(BundleError::Exists { dir: final_dir });
    }
    fs::create_dir_all(dest_parent).map_err(io_err("cannot create", dest_parent))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-"))
        .tempdir_in(dest_parent)
        .map_err(io_err(
            "cannot create a temporary directory in",
            dest_parent,
        ))?;
    let mut f = fs::File::open(file).map_err(io_err("cannot open", file))?;
    let mut script_bytes = vec![0u8; PAYLOAD_OFFSET as usize];
    f.read_exact(&mut script_bytes)
        .map_err(io_err("cannot read", file))?;
    let mut hasher = Sha256::new();
    hasher.update(&script_bytes);
    let reader = HashPrefix {
        inner: io::BufReader::with_capacity(1 << 20, f),
        hasher,
        left: verified.body_size - PAYLOAD_OFFSET,
    };
    let mut ar = tar::Archive::new(reader);
    let unsafe_member = |member: &str, why: &str| BundleError::Unsafe {
        file: file.to_owned(),
        member: member.to_owned(),
        why: why.to_owned(),
    };
    let mut index: Option<BundleIndex> = None;
    let mut seen: Vec<(String, u64, Digest)> = Vec::new();
    let prefix = format!("{name}/");
    let mut saw_sig = false;
    for entry in ar.entries().map_err(io_err("cannot read", file))? {
        let mut entry = entry.map_err(io_err("cannot read", file))?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if path == format!("{prefix}{SIG_MEMBER}") {
            saw_sig = true;
            break;
        }
        let Some(rel) = path.strip_prefix(&prefix) else {
            return Err(unsafe_member(&path, &format!("is outside {prefix}")));
        };
        let rel = rel.trim_end_matches('/').to_owned();
        if !rel.is_empty()
            && (rel.starts_with('/')
                || rel
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == ".."))
        {
            return Err(unsafe_member(&path, "has an unsafe path"));
        }
        let target = if rel.is_empty() {
            tmp.path().to_path_buf()
        } else {
            tmp.path().join(&rel)
        };
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                if !rel.is_empty() {
                    fs::create_dir_all(&target).map_err(io_err("cannot create", &target))?;
                }
            }
            tar::EntryType::Regular => {
                let exec = entry.header().mode().unwrap_or(0o644) & 0o111 != 0;
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
                }
                let out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(if exec { 0o755 } else { 0o644 })
                    .open(&target)
                    .map_err(io_err("cannot create", &target))?;
                let mut w = tarmac_types::Sha256Writer::new(BufWriter::new(out));
                io::copy(&mut entry, &mut w).map_err(io_err("cannot read", file))?;
                let (d, n, mut inner) = w.finish();
                inner.flush().map_err(io_err("cannot write", &target))?;
                if rel == INDEX {
                    let text = fs::read(&target).map_err(io_err("cannot read", &target))?;
                    let ix: BundleIndex = serde_json::from_slice(&text)
                        .map_err(|e| unsafe_member(&path, &format!("does not parse: {e}")))?;
                    if ix.name != name || ix.bootstrap_id != verified.bootstrap_id {
                        return Err(unsafe_member(&path, "names another bundle"));
                    }
                    index = Some(ix);
                } else if rel != SUMS {
                    seen.push((rel, n, d));
                }
            }
            _ => return Err(unsafe_member(&path, "is not a regular file or directory")),
        }
    }
    if !saw_sig {
        return Err(BundleError::Altered {
            file: file.to_owned(),
            what: "its archive ends before its signature block".into(),
        });
    }
    let reader = ar.into_inner();
    if reader.left != 0 || Digest(reader.hasher.finalize().into()) != verified.body_sha256 {
        return Err(BundleError::Altered {
            file: file.to_owned(),
            what: "it changed while it was being unpacked".into(),
        });
    }
    let index = index.ok_or_else(|| unsafe_member(INDEX, "is missing"))?;
    seen.sort();
    let listed: Vec<(String, u64, Digest)> = index
        .files
        .iter()
        .map(|f| (f.path.clone(), f.size, f.sha256))
        .collect();
    if seen != listed {
        return Err(unsafe_member(
            INDEX,
            "does not list exactly the files the bundle holds",
        ));
    }
    // Sync, then into place.
    let _ = tarmac_pkg::extract::syncfs(tmp.path());
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
        .map_err(io_err("cannot set the mode of", tmp.path()))?;
    let mut replaced = false;
    if final_dir.exists() {
        let old = tempfile::Builder::new()
            .prefix(&format!(".{name}.old-"))
            .tempdir_in(dest_parent)
            .map_err(io_err(
                "cannot create a temporary directory in",
                dest_parent,
            ))?;
        let aside = old.path().join("x");
        fs::rename(&final_dir, &aside).map_err(io_err("cannot move aside", &final_dir))?;
        replaced = true;
        let kept = tmp.keep();
        fs::rename(&kept, &final_dir).map_err(io_err("cannot rename into place", &final_dir))?;
        drop(old);
    } else {
        let kept = tmp.keep();
        fs::rename(&kept, &final_dir).map_err(io_err("cannot rename into place", &final_dir))?;
    }
    if let Ok(d) = fs::File::open(dest_parent) {
        let _ = d.sync_all();
    }
    Ok(Extracted {
        dir: final_dir,
        verified,
        index,
        replaced,
    })
}
