//! The local package store: `<root>/packages/<id>/`, one immutable directory per package.
//! Entries appear only by `rename(2)` of a fully extracted, verified temporary directory;
//! they disappear by renaming them aside first, so a crash never leaves a half package
//! under a valid id.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tarmac_types::{Digest, PackageId, PackageIdError};

use crate::extract::{self, Compression, ExtractError, ExtractTarget, Extracted, TMP_PREFIX};
use crate::fetch::{FetchError, Fetcher};
use crate::files::{FileManifest, FileManifestError, FileProblem};
use crate::layout::PKGINFO;
use crate::pkginfo::{PkgInfo, PkgInfoError};

/// A package in the store.
#[derive(Debug, Clone)]
pub struct Package {
    pub id: PackageId,
    pub path: PathBuf,
    pub info: PkgInfo,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "package {id} is not in the store {dir}\nhint: fetch it first (`tarmac-host fetch --repository-url URL {id}`) or add it (`tarmac-host add FILE`)"
    )]
    NotFound { id: PackageId, dir: PathBuf },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    PkgInfo(#[from] PkgInfoError),
    #[error("{file}: a package file is named `<id>.tar.zst` (or .tar.xz, .tar.gz)")]
    BadFileName { file: PathBuf },
    #[error("{file}: the file name is not a package id")]
    BadId {
        file: PathBuf,
        #[source]
        source: PackageIdError,
    },
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error("cannot fetch {id}")]
    Fetch {
        id: PackageId,
        #[source]
        source: FetchError,
    },
    #[error(
        "package {id} is already in the store with archive sha256 {have}, but {want} was expected\nhint: the same id names different bytes; remove the stored copy (`tarmac-host remove {id}`) if it is wrong"
    )]
    DifferentContent {
        id: PackageId,
        have: Digest,
        want: Digest,
    },
    #[error(transparent)]
    Manifest(#[from] FileManifestError),
    #[error("cannot remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Result of adding or fetching a package.
#[derive(Debug, Clone)]
pub enum Added {
    New(Box<Extracted>),
    AlreadyPresent,
}

/// The local package store.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, id: &PackageId) -> PathBuf {
        self.dir.join(id.to_string())
    }

    pub fn contains(&self, id: &PackageId) -> bool {
        self.path(id).is_dir()
    }

    /// Every package id in the store, sorted. Temporary and unrelated entries are skipped.
    pub fn list(&self) -> Result<Vec<PackageId>, StoreError> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StoreError::Read {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(|source| StoreError::Read {
                path: self.dir.clone(),
                source,
            })?;
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            if let Ok(id) = PackageId::parse(&name)
                && e.file_type().map(|t| t.is_dir()).unwrap_or(false)
            {
                out.push(id);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Load a stored package's metadata.
    pub fn load(&self, id: &PackageId) -> Result<Package, StoreError> {
        let path = self.path(id);
        if !path.is_dir() {
            return Err(StoreError::NotFound {
                id: id.clone(),
                dir: self.dir.clone(),
            });
        }
        let pi = path.join(PKGINFO);
        let bytes = fs::read(&pi).map_err(|source| StoreError::Read {
            path: pi.clone(),
            source,
        })?;
        let info = PkgInfo::parse(&bytes, &id.to_string())?;
        Ok(Package {
            id: id.clone(),
            path,
            info,
        })
    }

    fn present(&self, id: &PackageId, want: Option<Digest>) -> Result<bool, StoreError> {
        if !self.contains(id) {
            return Ok(false);
        }
        if let Some(want) = want {
            let m = FileManifest::load(&self.path(id))?;
            if m.archive_sha256 != want {
                return Err(StoreError::DifferentContent {
                    id: id.clone(),
                    have: m.archive_sha256,
                    want,
                });
            }
        }
        Ok(true)
    }

    /// Add a local archive named `<id>.tar.zst` (or .tar.xz / .tar.gz).
    pub fn add_file(
        &self,
        file: &Path,
        expected: Option<Digest>,
    ) -> Result<(PackageId, Added), StoreError> {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let (stem, compression) =
            Compression::split_file_name(name).ok_or_else(|| StoreError::BadFileName {
                file: file.to_path_buf(),
            })?;
        let id = PackageId::parse(stem).map_err(|source| StoreError::BadId {
            file: file.to_path_buf(),
            source,
        })?;
        if self.present(&id, expected)? {
            return Ok((id, Added::AlreadyPresent));
        }
        let f = fs::File::open(file).map_err(|source| StoreError::Read {
            path: file.to_path_buf(),
            source,
        })?;
        let origin = file.display().to_string();
        let ex = extract::extract_package(
            io::BufReader::with_capacity(1 << 20, f),
            compression,
            &ExtractTarget {
                store_dir: &self.dir,
                id: &id,
                origin: &origin,
                expected_sha256: expected,
            },
        )?;
        Ok((id, Added::New(Box::new(ex))))
    }

    /// Fetch `<repository>/packages/<name>/<id>.tar.zst` and extract it in one pass.
    pub fn fetch(
        &self,
        fetcher: &Fetcher,
        repository: &str,
        id: &PackageId,
        expected: Option<Digest>,
    ) -> Result<Added, StoreError> {
        if self.present(id, expected)? {
            return Ok(Added::AlreadyPresent);
        }
        let (body, compression, url) =
            fetcher
                .open_package(repository, id)
                .map_err(|source| StoreError::Fetch {
                    id: id.clone(),
                    source,
                })?;
        let ex = extract::extract_package(
            body.reader,
            compression,
            &ExtractTarget {
                store_dir: &self.dir,
                id,
                origin: &url,
                expected_sha256: expected,
            },
        )?;
        Ok(Added::New(Box::new(ex)))
    }

    /// Remove a package. Returns false when it was not there.
    pub fn remove(&self, id: &PackageId) -> Result<bool, StoreError> {
        let path = self.path(id);
        if !path.exists() {
            return Ok(false);
        }
        // Rename aside first: the id disappears atomically, the rest is cleanup.
        let aside = self
            .dir
            .join(format!("{TMP_PREFIX}rm-{id}-{}", std::process::id()));
        fs::rename(&path, &aside).map_err(|source| StoreError::Remove {
            path: path.clone(),
            source,
        })?;
        let _ = extract::fsync_dir(&self.dir);
        extract::make_writable_and_remove(&aside).map_err(|source| StoreError::Remove {
            path: aside,
            source,
        })?;
        Ok(true)
    }

    /// Remove leftovers of interrupted extractions and removals. Call with the host lock held.
    pub fn clean_temp(&self) -> Result<Vec<PathBuf>, StoreError> {
        let mut removed = Vec::new();
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
            Err(source) => {
                return Err(StoreError::Read {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let p = e.path();
                extract::make_writable_and_remove(&p).map_err(|source| StoreError::Remove {
                    path: p.clone(),
                    source,
                })?;
                removed.push(p);
            }
        }
        Ok(removed)
    }

    /// Re-hash a stored package against the manifest recorded at extraction.
    pub fn verify(&self, id: &PackageId) -> Result<Vec<FileProblem>, StoreError> {
        let path = self.path(id);
        if !path.is_dir() {
            return Err(StoreError::NotFound {
                id: id.clone(),
                dir: self.dir.clone(),
            });
        }
        Ok(FileManifest::load(&path)?.verify(&path))
    }
}
