//! The per-package file manifest, recorded at extraction in `<store>/<id>/.tarmac/files.json`,
//! and the audit that re-hashes an installed package against it (`tarmac-host verify`).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tarmac_types::Digest;

use crate::layout::META_DIR;

/// Name of the manifest inside [`META_DIR`].
pub const FILES_JSON: &str = "files.json";

/// One entry of a package, path relative to the package root with `/` separators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FileEntry {
    File {
        path: String,
        mode: u32,
        size: u64,
        sha256: Digest,
    },
    Dir {
        path: String,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
}

impl FileEntry {
    pub fn path(&self) -> &str {
        match self {
            FileEntry::File { path, .. }
            | FileEntry::Dir { path, .. }
            | FileEntry::Symlink { path, .. } => path,
        }
    }
}

/// `files.json`: everything extracted from the archive, plus the archive's own digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileManifest {
    pub format: u32,
    /// sha256 of the compressed archive as fetched.
    pub archive_sha256: Digest,
    pub archive_size: u64,
    /// Sorted by path.
    pub entries: Vec<FileEntry>,
}

/// A difference between the manifest and the disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum FileProblem {
    Missing {
        path: String,
    },
    Unexpected {
        path: String,
    },
    TypeChanged {
        path: String,
        expected: &'static str,
        found: &'static str,
    },
    ContentChanged {
        path: String,
        expected: Digest,
        found: Digest,
    },
    ModeChanged {
        path: String,
        expected: String,
        found: String,
    },
    TargetChanged {
        path: String,
        expected: String,
        found: String,
    },
    Unreadable {
        path: String,
        error: String,
    },
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileProblem::Missing { path } => write!(f, "{path}: missing"),
            FileProblem::Unexpected { path } => write!(f, "{path}: not in the manifest"),
            FileProblem::TypeChanged {
                path,
                expected,
                found,
            } => {
                write!(f, "{path}: expected a {expected}, found a {found}")
            }
            FileProblem::ContentChanged {
                path,
                expected,
                found,
            } => {
                write!(
                    f,
                    "{path}: content changed (sha256 {found}, manifest says {expected})"
                )
            }
            FileProblem::ModeChanged {
                path,
                expected,
                found,
            } => {
                write!(f, "{path}: mode {found}, manifest says {expected}")
            }
            FileProblem::TargetChanged {
                path,
                expected,
                found,
            } => {
                write!(
                    f,
                    "{path}: symlink points to `{found}`, manifest says `{expected}`"
                )
            }
            FileProblem::Unreadable { path, error } => write!(f, "{path}: unreadable: {error}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileManifestError {
    #[error("cannot read the file manifest {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the file manifest {path} is corrupt")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl FileManifest {
    pub fn path_in(pkg_dir: &Path) -> PathBuf {
        pkg_dir.join(META_DIR).join(FILES_JSON)
    }

    pub fn load(pkg_dir: &Path) -> Result<FileManifest, FileManifestError> {
        let path = Self::path_in(pkg_dir);
        let bytes = fs::read(&path).map_err(|source| FileManifestError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| FileManifestError::Parse { path, source })
    }

    /// Number of regular files.
    pub fn file_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e, FileEntry::File { .. }))
            .count()
    }

    /// Re-hash `pkg_dir` and compare it with this manifest. Returns every difference, sorted
    /// by path; empty means the package is intact.
    pub fn verify(&self, pkg_dir: &Path) -> Vec<FileProblem> {
        let mut problems = Vec::new();
        let want: BTreeMap<&str, &FileEntry> = self.entries.iter().map(|e| (e.path(), e)).collect();
        for e in &self.entries {
            check_entry(pkg_dir, e, &mut problems);
        }
        let mut found = Vec::new();
        walk(pkg_dir, "", &mut found);
        for p in found {
            if !want.contains_key(p.as_str()) {
                problems.push(FileProblem::Unexpected { path: p });
            }
        }
        problems.sort_by(|a, b| problem_path(a).cmp(problem_path(b)));
        problems
    }
}

fn problem_path(p: &FileProblem) -> &str {
    match p {
        FileProblem::Missing { path }
        | FileProblem::Unexpected { path }
        | FileProblem::TypeChanged { path, .. }
        | FileProblem::ContentChanged { path, .. }
        | FileProblem::ModeChanged { path, .. }
        | FileProblem::TargetChanged { path, .. }
        | FileProblem::Unreadable { path, .. } => path,
    }
}

fn kind_of(m: &fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "directory"
    } else if t.is_file() {
        "file"
    } else {
        "special file"
    }
}

fn check_entry(root: &Path, e: &FileEntry, problems: &mut Vec<FileProblem>) {
    let path = e.path().to_owned();
    let full = root.join(&path);
    let meta = match fs::symlink_metadata(&full) {
        Ok(m) => m,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            problems.push(FileProblem::Missing { path });
            return;
        }
        Err(err) => {
            problems.push(FileProblem::Unreadable {
                path,
                error: err.to_string(),
            });
            return;
        }
    };
    let found = kind_of(&meta);
    let mode = meta.permissions().mode() & 0o7777;
    let mode_problem = |expected: u32| FileProblem::ModeChanged {
        path: path.clone(),
        expected: format!("{expected:04o}"),
        found: format!("{mode:04o}"),
    };
    match e {
        FileEntry::File {
            mode: want_mode,
            sha256,
            ..
        } => {
            if found != "file" {
                problems.push(FileProblem::TypeChanged {
                    path,
                    expected: "file",
                    found,
                });
                return;
            }
            if mode != *want_mode {
                problems.push(mode_problem(*want_mode));
            }
            match hash_file(&full) {
                Ok(d) if d == *sha256 => {}
                Ok(d) => problems.push(FileProblem::ContentChanged {
                    path,
                    expected: *sha256,
                    found: d,
                }),
                Err(err) => problems.push(FileProblem::Unreadable {
                    path,
                    error: err.to_string(),
                }),
            }
        }
        FileEntry::Dir {
            mode: want_mode, ..
        } => {
            if found != "directory" {
                problems.push(FileProblem::TypeChanged {
                    path,
                    expected: "directory",
                    found,
                });
            } else if mode != *want_mode {
                problems.push(mode_problem(*want_mode));
            }
        }
        FileEntry::Symlink { target, .. } => {
            if found != "symlink" {
                problems.push(FileProblem::TypeChanged {
                    path,
                    expected: "symlink",
                    found,
                });
                return;
            }
            match fs::read_link(&full) {
                Ok(t) if t.as_os_str() == std::ffi::OsStr::new(target) => {}
                Ok(t) => problems.push(FileProblem::TargetChanged {
                    path,
                    expected: target.clone(),
                    found: t.display().to_string(),
                }),
                Err(err) => problems.push(FileProblem::Unreadable {
                    path,
                    error: err.to_string(),
                }),
            }
        }
    }
}

fn hash_file(p: &Path) -> io::Result<Digest> {
    let mut f = fs::File::open(p)?;
    let mut w = tarmac_types::Sha256Writer::new(io::sink());
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        io::Write::write_all(&mut w, &buf[..n])?;
    }
    Ok(w.finish().0)
}

/// Every path below `dir` (relative, `/`-separated), not following symlinks, skipping
/// the reserved metadata directory at the top.
fn walk(root: &Path, rel: &str, out: &mut Vec<String>) {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let Ok(rd) = fs::read_dir(&dir) else { return };
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if rel.is_empty() && name == META_DIR {
            continue;
        }
        let p = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        out.push(p.clone());
        if is_dir {
            walk(root, &p, out);
        }
    }
}
