//! Source fetching (into a shared, verified cache) and checkout into a build's `src/`.
//!
//! Cache layout (default `~/.cache/tarmac`, `--cache DIR`):
//! ```text
//! url/<sha256>/<file name>          downloads, content-addressed by their declared sha256
//! url/<sha256>/<file name>.corrupt  a download whose hash did not match (kept for inspection)
//! deb/<package>_<version>_<arch>.deb (+ .corrupt)
//! git/<sha256(url)[..16]>.git       bare mirrors
//! locks/                            one lock file per cache entry
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use tarmac_events::{Event, Level, Sink};
use tarmac_types::{Digest, Sha256Writer};

use crate::buildinfo::SourceSpec;
use crate::hash::tree_digest;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{action} `{path}`")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("local source `{path}` does not exist")]
    LocalMissing { path: PathBuf, env: Option<String> },
    #[error(
        "checksum mismatch for {what}: expected sha256 {expected}, got {actual}; the file was kept as `{corrupt}`"
    )]
    ChecksumMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
        corrupt: PathBuf,
    },
    #[error("cannot download `{url}`: {message}")]
    Download { url: String, message: String },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
        hint: Option<String>,
    },
    #[error("`{program}` is not installed")]
    MissingTool { program: String, hint: String },
    #[error(
        "cannot extract `{path}`: unsupported archive type (use .tar, .tar.gz, .tgz, .tar.xz, .txz, .tar.zst, .tar.bz2 or .zip)"
    )]
    UnknownArchive { path: PathBuf },
    #[error("cannot extract `{path}`")]
    Extract {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Hash(#[from] crate::hash::HashError),
}

impl tarmac_types::error_report::Hint for SourceError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            SourceError::LocalMissing { env: Some(e), .. } => {
                Some(format!("build it first, or set {e} to the file to use").into())
            }
            SourceError::ChecksumMismatch { .. } => Some(
                "if the new file is right, update `sha256` in buildinfo.json; otherwise delete the .corrupt file and retry"
                    .into(),
            ),
            SourceError::Command { hint, .. } => hint.as_deref().map(Into::into),
            SourceError::MissingTool { hint, .. } => Some(hint.as_str().into()),
            _ => None,
        }
    }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SourceError + use<> {
    let path = path.to_owned();
    move |source| SourceError::Io {
        action,
        path,
        source,
    }
}

/// Where a `local` source resolves: `env[spec.env]` if set, else relative to `pkg_dir`.
pub fn resolve_local(
    path: &str,
    env: Option<&str>,
    pkg_dir: &Path,
    vars: &BTreeMap<String, String>,
) -> PathBuf {
    if let Some(v) = env.and_then(|e| vars.get(e)).filter(|v| !v.is_empty()) {
        return PathBuf::from(v);
    }
    pkg_dir.join(path)
}

/// The checksum of a source that goes into the package id. Cheap: only `local` sources
/// are read (hashed); the others are identified by their declared digest or commit.
pub fn source_checksum(
    spec: &SourceSpec,
    pkg_dir: &Path,
    vars: &BTreeMap<String, String>,
) -> Result<String, SourceError> {
    Ok(match spec {
        SourceSpec::Local { path, env } => {
            let p = resolve_local(path, env.as_deref(), pkg_dir, vars);
            if fs::symlink_metadata(&p).is_err() {
                return Err(SourceError::LocalMissing {
                    path: p,
                    env: env.clone(),
                });
            }
            tree_digest(&p)?.hex()
        }
        SourceSpec::Git { commit, .. } => commit.clone(),
        SourceSpec::Url { sha256, .. } | SourceSpec::Deb { sha256, .. } => sha256.hex(),
    })
}

/// The shared source cache.
#[derive(Debug, Clone)]
pub struct SourceCache {
    pub dir: PathBuf,
}

/// A lock on one cache entry (released on drop).
struct EntryLock(#[allow(dead_code)] File);

impl SourceCache {
    pub fn new(dir: impl Into<PathBuf>) -> SourceCache {
        SourceCache { dir: dir.into() }
    }

    fn lock(&self, key: &str) -> Result<EntryLock, SourceError> {
        let dir = self.dir.join("locks");
        fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
        let path = dir.join(format!("{key}.lock"));
        let f = File::create(&path).map_err(io_err("cannot create lock", &path))?;
        tarmac_fsx::lock_exclusive(&f, true).map_err(io_err("cannot lock", &path))?;
        Ok(EntryLock(f))
    }

    /// Fetch (if needed) and verify a source, then place it into `dest` (which must not
    /// exist). `pkg_dir` resolves relative local paths and relative `file://` URLs.
    pub fn checkout(
        &self,
        spec: &SourceSpec,
        label: &str,
        pkg_dir: &Path,
        vars: &BTreeMap<String, String>,
        dest: &Path,
        sink: &Sink,
    ) -> Result<(), SourceError> {
        fs::create_dir_all(dest).map_err(io_err("cannot create", dest))?;
        match spec {
            SourceSpec::Local { path, env } => {
                let src = resolve_local(path, env.as_deref(), pkg_dir, vars);
                let meta = fs::symlink_metadata(&src).map_err(|_| SourceError::LocalMissing {
                    path: src.clone(),
                    env: env.clone(),
                })?;
                if meta.is_dir() {
                    copy_tree(&src, dest)?;
                } else {
                    let name = src
                        .file_name()
                        .map(|n| n.to_owned())
                        .unwrap_or_else(|| "file".into());
                    copy_entry(&src, &dest.join(name))?;
                }
            }
            SourceSpec::Url {
                url,
                sha256,
                extract,
            } => {
                let file = self.fetch_url(url, *sha256, label, pkg_dir)?;
                if *extract {
                    extract_archive(&file, dest)?;
                } else {
                    let name = file.file_name().expect("cached file has a name");
                    copy_entry(&file, &dest.join(name))?;
                }
            }
            SourceSpec::Deb {
                package,
                version,
                sha256,
                arch,
            } => {
                let file = self.fetch_deb(package, version, arch.as_deref(), *sha256, label)?;
                run(
                    Command::new("dpkg-deb").arg("-x").arg(&file).arg(dest),
                    Some("dpkg-deb is part of dpkg (Debian-family build machines)"),
                )?;
            }
            SourceSpec::Git {
                git,
                commit,
                ref_origin,
            } => {
                let mirror = self.fetch_git(git, commit, pkg_dir)?;
                if let Some(origin) = ref_origin {
                    let out = Command::new("git")
                        .arg("-C")
                        .arg(&mirror)
                        .args([
                            "rev-parse",
                            "--verify",
                            "--quiet",
                            &format!("{origin}^{{commit}}"),
                        ])
                        .output();
                    if let Ok(o) = out {
                        let got = String::from_utf8_lossy(&o.stdout).trim().to_owned();
                        if got != *commit {
                            sink.emit(Event::Notice {
                                level: Level::Warn,
                                message: format!("{label}: ref_origin `{origin}` is at {got:.12}, but ref pins {commit:.12}; building the pinned commit"),
                            });
                        }
                    }
                }
                fs::remove_dir(dest).map_err(io_err("cannot prepare", dest))?;
                run(
                    Command::new("git")
                        .args(["clone", "--quiet", "--no-checkout"])
                        .arg(&mirror)
                        .arg(dest),
                    None,
                )?;
                run(
                    Command::new("git")
                        .arg("-C")
                        .arg(dest)
                        .args(["checkout", "--quiet", "--detach", commit]),
                    None,
                )?;
            }
        }
        Ok(())
    }

    /// Download `url` into the cache (once), verified against `sha256`.
    pub fn fetch_url(
        &self,
        url: &str,
        sha256: Digest,
        label: &str,
        pkg_dir: &Path,
    ) -> Result<PathBuf, SourceError> {
        let name = url_file_name(url);
        let dir = self.dir.join("url").join(sha256.hex());
        let target = dir.join(&name);
        let _lock = self.lock(&format!("url-{}", sha256.hex()))?;
        if target.exists() {
            verify_or_quarantine(&target, sha256, &format!("{label} ({url}, cached)"))?;
            return Ok(target);
        }
        fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .tempfile_in(&dir)
            .map_err(io_err("cannot create a temporary file in", &dir))?;
        let (actual, _) = download(url, pkg_dir, tmp.as_file_mut())?;
        tmp.as_file()
            .sync_all()
            .map_err(io_err("cannot fsync", tmp.path()))?;
        if actual != sha256 {
            let corrupt = dir.join(format!("{name}.corrupt"));
            tmp.persist(&corrupt).map_err(|e| SourceError::Io {
                action: "cannot keep",
                path: corrupt.clone(),
                source: e.error,
            })?;
            return Err(SourceError::ChecksumMismatch {
                what: format!("{label} ({url})"),
                expected: sha256,
                actual,
                corrupt,
            });
        }
        tmp.persist(&target).map_err(|e| SourceError::Io {
            action: "cannot store",
            path: target.clone(),
            source: e.error,
        })?;
        Ok(target)
    }

    /// `apt-get download package=version` into the cache (once), verified against `sha256`.
    pub fn fetch_deb(
        &self,
        package: &str,
        version: &str,
        arch: Option<&str>,
        sha256: Digest,
        label: &str,
    ) -> Result<PathBuf, SourceError> {
        let arch = match arch {
            Some(a) => a.to_owned(),
            None => {
                let o = Command::new("dpkg")
                    .arg("--print-architecture")
                    .output()
                    .map_err(|_| SourceError::MissingTool {
                        program: "dpkg".into(),
                        hint: "deb sources need a Debian-family build machine".into(),
                    })?;
                String::from_utf8_lossy(&o.stdout).trim().to_owned()
            }
        };
        let safe = |s: &str| s.replace([':', '/'], "_");
        let dir = self.dir.join("deb");
        let target = dir.join(format!(
            "{}_{}_{}.deb",
            safe(package),
            safe(version),
            safe(&arch)
        ));
        let what = format!("{label} (deb {package}={version} {arch})");
        let _lock = self.lock(&format!("deb-{}", sha256.hex()))?;
        if target.exists() {
            verify_or_quarantine(&target, sha256, &what)?;
            return Ok(target);
        }
        fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
        let tmp = tempfile::Builder::new()
            .prefix(".apt-")
            .tempdir_in(&dir)
            .map_err(io_err("cannot create a temporary directory in", &dir))?;
        // apt's download sandbox user (_apt) cannot write to a 0700 temp dir
        let _ = fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o777));
        let spec = format!("{package}:{arch}={version}");
        let mut cmd = Command::new("apt-get");
        cmd.current_dir(tmp.path())
            .args(["download", "-q", "-o", "Debug::NoLocking=1", &spec]);
        run(
            &mut cmd,
            Some(&format!(
                "make sure `apt-cache policy {package}` lists version {version} (run `apt-get update`), or bump the pinned version and sha256 in buildinfo.json"
            )),
        )?;
        let debs: Vec<PathBuf> = fs::read_dir(tmp.path())
            .map_err(io_err("cannot read", tmp.path()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "deb"))
            .collect();
        let [got] = debs.as_slice() else {
            return Err(SourceError::Download {
                url: spec,
                message: format!("apt-get download produced {} .deb files", debs.len()),
            });
        };
        let actual = Digest::of_file(got).map_err(io_err("cannot hash", got))?;
        if actual != sha256 {
            let corrupt = PathBuf::from(format!("{}.corrupt", target.display()));
            fs::rename(got, &corrupt).map_err(io_err("cannot keep", &corrupt))?;
            return Err(SourceError::ChecksumMismatch {
                what,
                expected: sha256,
                actual,
                corrupt,
            });
        }
        File::open(got)
            .and_then(|f| f.sync_all())
            .map_err(io_err("cannot fsync", got))?;
        fs::rename(got, &target).map_err(io_err("cannot store", &target))?;
        Ok(target)
    }

    /// Make sure the bare mirror of `url` has `commit`; returns the mirror path.
    pub fn fetch_git(
        &self,
        url: &str,
        commit: &str,
        pkg_dir: &Path,
    ) -> Result<PathBuf, SourceError> {
        let url = resolve_git_url(url, pkg_dir);
        let key = Digest::of(url.as_bytes()).hex()[..16].to_owned();
        let dir = self.dir.join("git");
        let mirror = dir.join(format!("{key}.git"));
        let _lock = self.lock(&format!("git-{key}"))?;
        fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
        if !mirror.exists() {
            let tmp = tempfile::Builder::new()
                .prefix(".clone-")
                .tempdir_in(&dir)
                .map_err(io_err("cannot create a temporary directory in", &dir))?;
            let dest = tmp.path().join("m.git");
            run(
                Command::new("git")
                    .args(["clone", "--quiet", "--mirror", &url])
                    .arg(&dest),
                None,
            )?;
            fs::rename(&dest, &mirror).map_err(io_err("cannot store", &mirror))?;
        }
        let has = |m: &Path| {
            Command::new("git")
                .arg("-C")
                .arg(m)
                .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !has(&mirror) {
            run(
                Command::new("git")
                    .arg("-C")
                    .arg(&mirror)
                    .args(["remote", "update", "--prune"]),
                None,
            )?;
            if !has(&mirror) {
                return Err(SourceError::Command {
                    command: format!("git fetch {url}"),
                    status: "commit not found".into(),
                    stderr: format!("commit {commit} is not in {url}"),
                    hint: Some("push the commit, or fix `ref` in buildinfo.json".into()),
                });
            }
        }
        Ok(mirror)
    }
}

fn resolve_git_url(url: &str, pkg_dir: &Path) -> String {
    let is_remote = url.contains("://") || url.contains('@');
    if !is_remote && !Path::new(url).is_absolute() {
        return pkg_dir.join(url).to_string_lossy().into_owned();
    }
    url.to_owned()
}

fn url_file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let name = path.rsplit('/').next().unwrap_or("");
    if name.is_empty() || name == ".." || name == "." {
        "download".into()
    } else {
        name.to_owned()
    }
}

fn verify_or_quarantine(file: &Path, expected: Digest, what: &str) -> Result<(), SourceError> {
    let actual = Digest::of_file(file).map_err(io_err("cannot hash", file))?;
    if actual != expected {
        let corrupt = PathBuf::from(format!("{}.corrupt", file.display()));
        fs::rename(file, &corrupt).map_err(io_err("cannot keep", &corrupt))?;
        return Err(SourceError::ChecksumMismatch {
            what: what.to_owned(),
            expected,
            actual,
            corrupt,
        });
    }
    Ok(())
}

/// Stream `url` into `out`, hashing on the way. `file://` paths that are relative are
/// resolved against `base`.
fn download(url: &str, base: &Path, out: &mut File) -> Result<(Digest, u64), SourceError> {
    let mut w = Sha256Writer::new(out);
    if let Some(p) = url.strip_prefix("file://") {
        let path = if p.starts_with('/') {
            PathBuf::from(p)
        } else {
            base.join(p)
        };
        let mut f = File::open(&path).map_err(|e| SourceError::Download {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
        io::copy(&mut f, &mut w).map_err(|e| SourceError::Download {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
    } else {
        let mut last = String::new();
        let mut ok = false;
        for attempt in 0..3 {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_millis(500 * attempt));
            }
            match ureq::get(url).call() {
                Ok(resp) => {
                    let expected: Option<u64> =
                        resp.header("content-length").and_then(|v| v.parse().ok());
                    let mut r = resp.into_reader();
                    let mut buf = vec![0u8; 1 << 16];
                    let mut n_total = 0u64;
                    let res: io::Result<()> = (|| {
                        loop {
                            let n = r.read(&mut buf)?;
                            if n == 0 {
                                return Ok(());
                            }
                            w.write_all(&buf[..n])?;
                            n_total += n as u64;
                        }
                    })();
                    match res {
                        Ok(()) if expected.is_none_or(|e| e == n_total) => {
                            ok = true;
                            break;
                        }
                        Ok(()) => {
                            last =
                                format!("short read: {n_total} of {} bytes", expected.unwrap_or(0))
                        }
                        Err(e) => last = e.to_string(),
                    }
                    // restart from scratch
                    let (_, _, f) = w.finish();
                    f.set_len(0).map_err(|e| SourceError::Download {
                        url: url.to_owned(),
                        message: e.to_string(),
                    })?;
                    use std::io::Seek;
                    f.seek(io::SeekFrom::Start(0))
                        .map_err(|e| SourceError::Download {
                            url: url.to_owned(),
                            message: e.to_string(),
                        })?;
                    w = Sha256Writer::new(f);
                }
                Err(ureq::Error::Status(code, _)) if code < 500 => {
                    return Err(SourceError::Download {
                        url: url.to_owned(),
                        message: format!("HTTP {code}"),
                    });
                }
                Err(e) => last = e.to_string(),
            }
        }
        if !ok {
            return Err(SourceError::Download {
                url: url.to_owned(),
                message: last,
            });
        }
    }
    let (d, n, _) = w.finish();
    Ok((d, n))
}

/// Run a command, capturing stderr for the error message.
pub(crate) fn run(cmd: &mut Command, missing_hint: Option<&str>) -> Result<String, SourceError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            SourceError::MissingTool {
                program: program.clone(),
                hint: missing_hint.unwrap_or("install it").to_owned(),
            }
        } else {
            SourceError::Io {
                action: "cannot run",
                path: PathBuf::from(&program),
                source: e,
            }
        }
    })?;
    if !out.status.success() {
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(SourceError::Command {
            command: format!("{program} {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: tail.join("\n"),
            hint: missing_hint
                .filter(|_| program == "apt-get")
                .map(str::to_owned),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Copy a file or symlink (keeping the executable bit).
fn copy_entry(src: &Path, dest: &Path) -> Result<(), SourceError> {
    let meta = fs::symlink_metadata(src).map_err(io_err("cannot stat", src))?;
    if meta.file_type().is_symlink() {
        let t = fs::read_link(src).map_err(io_err("cannot read link", src))?;
        symlink(&t, dest).map_err(io_err("cannot create link", dest))?;
    } else {
        fs::copy(src, dest).map_err(io_err("cannot copy", src))?;
        let mode = if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        fs::set_permissions(dest, fs::Permissions::from_mode(mode))
            .map_err(io_err("cannot chmod", dest))?;
    }
    Ok(())
}

/// Copy the contents of directory `src` into existing directory `dest`.
pub(crate) fn copy_tree(src: &Path, dest: &Path) -> Result<(), SourceError> {
    for e in fs::read_dir(src).map_err(io_err("cannot read", src))? {
        let e = e.map_err(io_err("cannot read", src))?;
        let from = e.path();
        let to = dest.join(e.file_name());
        let ft = e.file_type().map_err(io_err("cannot stat", &from))?;
        if ft.is_dir() {
            fs::create_dir(&to).map_err(io_err("cannot create", &to))?;
            copy_tree(&from, &to)?;
        } else if ft.is_file() || ft.is_symlink() {
            copy_entry(&from, &to)?;
        }
    }
    Ok(())
}

/// Extract an archive into `dest`; if it holds a single top-level directory, its
/// contents become `dest`'s contents (like `tar --strip-components=1`).
pub fn extract_archive(file: &Path, dest: &Path) -> Result<(), SourceError> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let parent = dest.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".extract-")
        .tempdir_in(parent)
        .map_err(io_err("cannot create a temporary directory in", parent))?;
    let ex = |e| SourceError::Extract {
        path: file.to_owned(),
        source: e,
    };
    let open = || File::open(file).map_err(io_err("cannot open", file));
    let untar = |r: Box<dyn Read>| -> Result<(), SourceError> {
        let mut ar = tar::Archive::new(r);
        ar.set_preserve_permissions(true);
        ar.unpack(tmp.path()).map_err(ex)
    };
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        untar(Box::new(flate2::read::GzDecoder::new(open()?)))?;
    } else if name.ends_with(".tar.xz") || name.ends_with(".txz") {
        untar(Box::new(liblzma::read::XzDecoder::new(open()?)))?;
    } else if name.ends_with(".tar.zst") || name.ends_with(".tzst") {
        untar(Box::new(
            zstd::stream::read::Decoder::new(open()?).map_err(ex)?,
        ))?;
    } else if name.ends_with(".tar") {
        untar(Box::new(open()?))?;
    } else if name.ends_with(".tar.bz2") || name.ends_with(".tbz2") {
        run(
            Command::new("tar")
                .arg("-xjf")
                .arg(file)
                .arg("-C")
                .arg(tmp.path()),
            Some("install tar and bzip2"),
        )?;
    } else if name.ends_with(".zip") {
        run(
            Command::new("unzip")
                .arg("-q")
                .arg(file)
                .arg("-d")
                .arg(tmp.path()),
            Some("apt-get install unzip"),
        )?;
    } else {
        return Err(SourceError::UnknownArchive {
            path: file.to_owned(),
        });
    }
    let entries: Vec<PathBuf> = fs::read_dir(tmp.path())
        .map_err(io_err("cannot read", tmp.path()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let root = match entries.as_slice() {
        [single] if fs::symlink_metadata(single).is_ok_and(|m| m.is_dir()) => single.clone(),
        _ => tmp.path().to_owned(),
    };
    for e in fs::read_dir(&root).map_err(io_err("cannot read", &root))? {
        let e = e.map_err(io_err("cannot read", &root))?;
        let to = dest.join(e.file_name());
        fs::rename(e.path(), &to).map_err(io_err("cannot move", &to))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn sink() -> Sink {
        Arc::new(tarmac_events::NullSink)
    }

    #[test]
    fn url_sources_are_verified_cached_and_quarantined() {
        let d = tempfile::tempdir().unwrap();
        let pkg = d.path().join("pkg");
        fs::create_dir_all(&pkg).unwrap();
        fs::write(pkg.join("data.txt"), b"hello").unwrap();
        let cache = SourceCache::new(d.path().join("cache"));
        let good = Digest::of(b"hello");
        let spec = SourceSpec::Url {
            url: "file://data.txt".into(),
            sha256: good,
            extract: false,
        };
        let dest = d.path().join("src1");
        cache
            .checkout(&spec, "pkg/src", &pkg, &BTreeMap::new(), &dest, &sink())
            .unwrap();
        assert_eq!(fs::read(dest.join("data.txt")).unwrap(), b"hello");
        // served from the cache even after the original disappears
        fs::remove_file(pkg.join("data.txt")).unwrap();
        cache
            .checkout(
                &spec,
                "pkg/src",
                &pkg,
                &BTreeMap::new(),
                &d.path().join("src2"),
                &sink(),
            )
            .unwrap();

        fs::write(pkg.join("data.txt"), b"evil").unwrap();
        let wrong = Digest::of(b"expected");
        let spec = SourceSpec::Url {
            url: "file://data.txt".into(),
            sha256: wrong,
            extract: false,
        };
        let err = cache
            .checkout(
                &spec,
                "pkg/src",
                &pkg,
                &BTreeMap::new(),
                &d.path().join("src3"),
                &sink(),
            )
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&wrong.hex()) && text.contains(&Digest::of(b"evil").hex()),
            "{text}"
        );
        let SourceError::ChecksumMismatch { corrupt, .. } = err else {
            panic!()
        };
        assert!(corrupt.ends_with("data.txt.corrupt"));
        assert_eq!(fs::read(corrupt).unwrap(), b"evil");
    }

    #[test]
    fn url_extract_strips_single_top_dir() {
        let d = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o755);
        b.append_data(&mut h, "top-1.0/bin/bar", &b"abc"[..])
            .unwrap();
        let gz = b.into_inner().unwrap().finish().unwrap();
        fs::write(d.path().join("x.tar.gz"), &gz).unwrap();
        let spec = SourceSpec::Url {
            url: "file://x.tar.gz".into(),
            sha256: Digest::of(&gz),
            extract: true,
        };
        let cache = SourceCache::new(d.path().join("cache"));
        let dest = d.path().join("out");
        cache
            .checkout(&spec, "t", d.path(), &BTreeMap::new(), &dest, &sink())
            .unwrap();
        assert_eq!(fs::read(dest.join("bin/bar")).unwrap(), b"abc");
        assert_eq!(
            fs::metadata(dest.join("bin/bar"))
                .unwrap()
                .permissions()
                .mode()
                & 0o111,
            0o111
        );
    }

    #[test]
    fn local_sources_and_env_override() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("f"), b"1").unwrap();
        fs::write(d.path().join("g"), b"2").unwrap();
        let spec = SourceSpec::Local {
            path: "f".into(),
            env: Some("F_BIN".into()),
        };
        let mut vars = BTreeMap::new();
        let a = source_checksum(&spec, d.path(), &vars).unwrap();
        vars.insert(
            "F_BIN".into(),
            d.path().join("g").to_string_lossy().into_owned(),
        );
        let b = source_checksum(&spec, d.path(), &vars).unwrap();
        assert_ne!(a, b);
        let cache = SourceCache::new(d.path().join("cache"));
        cache
            .checkout(&spec, "t", d.path(), &vars, &d.path().join("o"), &sink())
            .unwrap();
        assert_eq!(fs::read(d.path().join("o/g")).unwrap(), b"2");
        vars.insert("F_BIN".into(), "/nonexistent/x".into());
        let e = tarmac_types::error_report::text_with_hint(
            &source_checksum(&spec, d.path(), &vars).unwrap_err(),
        );
        assert!(e.contains("hint: build it first, or set F_BIN"), "{e}");
    }

    #[test]
    fn git_sources_use_a_mirror() {
        let d = tempfile::tempdir().unwrap();
        let repo = d.path().join("repo");
        let git = |args: &[&str]| {
            let o = Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args(args)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        };
        fs::create_dir_all(&repo).unwrap();
        git(&["init", "-q", "-b", "main"]);
        fs::write(repo.join("a"), b"v1").unwrap();
        git(&["add", "a"]);
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            "1",
        ]);
        let c1 = git(&["rev-parse", "HEAD"]);
        fs::write(repo.join("a"), b"v2").unwrap();
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-am",
            "2",
        ]);
        let cache = SourceCache::new(d.path().join("cache"));
        let spec = SourceSpec::Git {
            git: format!("file://{}", repo.display()),
            commit: c1.clone(),
            ref_origin: Some("main".into()),
        };
        let vs = tarmac_events::VecSink::new();
        let s: Sink = Arc::new(vs.clone());
        cache
            .checkout(
                &spec,
                "t",
                d.path(),
                &BTreeMap::new(),
                &d.path().join("o"),
                &s,
            )
            .unwrap();
        assert_eq!(fs::read(d.path().join("o/a")).unwrap(), b"v1");
        assert!(vs.events().iter().any(|e| matches!(
            e,
            Event::Notice {
                level: Level::Warn,
                ..
            }
        )));
        let bad = SourceSpec::Git {
            git: format!("file://{}", repo.display()),
            commit: "0".repeat(40),
            ref_origin: None,
        };
        assert!(
            cache
                .checkout(
                    &bad,
                    "t",
                    d.path(),
                    &BTreeMap::new(),
                    &d.path().join("o2"),
                    &s
                )
                .is_err()
        );
    }
}
