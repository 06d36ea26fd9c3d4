//! The local package store: `<root>/packages/<id>/`, one immutable directory per package.
//! Entries appear only by `rename(2)` of a fully extracted, verified temporary directory;
//! they disappear by renaming them aside first, so a crash never leaves a half package
//! under a valid id.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tarmac_types::{Digest, PackageId, PackageIdError, Role};

use crate::extract::{
    self, Compression, Expect, ExtractError, ExtractTarget, Extracted, Pin, Staging, TMP_PREFIX,
};
use crate::fetch::{self as fetch_mod, FetchError, Fetcher};
use crate::files::{FileManifest, FileManifestError, FileProblem};
use crate::layout::{ARCHIVED_JSON, META_DIR, PKGINFO};
use crate::pkginfo::{PkgInfo, PkgInfoError};

/// A package in the store.
#[derive(Debug, Clone)]
pub struct Package {
    pub id: PackageId,
    pub path: PathBuf,
    pub info: PkgInfo,
    /// `Some(special top-level directories)` when the package is kept as its verified
    /// archive only (no host role of the time used it); `None` when extracted.
    pub archived: Option<Vec<String>>,
}

impl Package {
    /// Kept as an archive, but used by a host with `roles`: it must be extracted
    /// ([`Store::extract`]) before it is activated.
    pub fn needs_extraction(&self, roles: &BTreeSet<Role>) -> bool {
        self.archived.as_ref().is_some_and(|special| {
            crate::layout::used_by(special.iter().map(String::as_str), roles)
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("package {id} is not in the store {dir}")]
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
        "package {id} is already in the store with archive sha256 {have}, but {want} was expected"
    )]
    DifferentContent {
        id: PackageId,
        have: Digest,
        want: Digest,
    },
    #[error("refusing to fetch {id} from {repository} without its sha256 and size")]
    Unpinned { id: PackageId, repository: String },
    #[error(transparent)]
    Manifest(#[from] FileManifestError),
    #[error("{path}: the record of an archived package is unreadable")]
    Archived {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{id}: cannot expose the staged package in {dir} (syncfs, rename)")]
    Commit {
        id: PackageId,
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl tarmac_types::error_report::Hint for StoreError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        Some(match self {
            StoreError::NotFound { id, .. } => Cow::Owned(format!(
                "fetch it first (`tarmac-host fetch --repository-url URL {id}`) or add it (`tarmac-host add FILE`)"
            )),
            StoreError::DifferentContent { id, .. } => Cow::Owned(format!(
                "the same id names different bytes; remove the stored copy (`tarmac-host remove {id}`) if it is wrong"
            )),
            StoreError::Unpinned { id, .. } => Cow::Owned(format!(
                "fetch it with the package list that pins it (`tarmac-host fetch --package-list FILE`, written by `tarmac genconf`) or pass --sha256 {id}=SHA256:SIZE"
            )),
            StoreError::PkgInfo(e) => return e.hint(),
            StoreError::Extract(e) => return e.hint(),
            _ => return None,
        })
    }
}

/// Is `repository` reached over the network (http, https, anything but `file://` or a
/// path)? Fetching from it needs every package pinned.
pub fn is_remote(repository: &str) -> bool {
    fetch_mod::local_path(repository.trim()).is_none()
}

/// Result of adding or fetching a package.
#[derive(Debug, Clone)]
pub enum Added {
    New(Box<Extracted>),
    AlreadyPresent,
}

/// The local package store. Each package is either *extracted* (its whole tree) or
/// *archived* (its verified archive, `pkginfo.json` and the list of its special directories,
/// [`crate::layout::ARCHIVED_JSON`]); both keep the archive and a file manifest.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    /// Extract only packages a host with these roles uses (the rest stay archived).
    roles: Option<BTreeSet<Role>>,
    /// Packages added go here, exposed only by [`Staging::commit`] (one flush for the set).
    staging: Option<std::sync::Arc<Staging>>,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store {
            dir: dir.into(),
            roles: None,
            staging: None,
        }
    }

    /// Packages added or fetched through the returned store are written completely but
    /// exposed only when `staging` is committed ([`Staging::commit`] with [`Self::dir`]):
    /// one `syncfs` for the whole set instead of one per package.
    pub fn staged_in(mut self, staging: std::sync::Arc<Staging>) -> Store {
        self.staging = Some(staging);
        self
    }

    /// Packages added from now on are extracted only if a host with `roles` uses them
    /// ([`crate::layout::used_by`]); the others are kept as verified archives.
    pub fn extracting_for(mut self, roles: BTreeSet<Role>) -> Store {
        self.roles = Some(roles);
        self
    }

    /// Is the stored package `id` kept as an archive only? The special top-level
    /// directories of its archive, then.
    pub fn archived(&self, id: &PackageId) -> Result<Option<Vec<String>>, StoreError> {
        let path = self.path(id).join(META_DIR).join(ARCHIVED_JSON);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StoreError::Archived { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Read { path, source }),
        }
    }

    /// Extract an archived package in place, from its kept archive, re-verified against the
    /// sha256 and size recorded when it was fetched. The archived entry and the extracted one
    /// trade places in one `renameat2(RENAME_EXCHANGE)`. Returns false when it was extracted
    /// already.
    pub fn extract(&self, id: &PackageId) -> Result<bool, StoreError> {
        if self.archived(id)?.is_none() {
            if !self.contains(id) {
                return Err(StoreError::NotFound {
                    id: id.clone(),
                    dir: self.dir.clone(),
                });
            }
            return Ok(false);
        }
        let m = FileManifest::load(&self.path(id))?;
        let Some((file, compression)) = self.archive(id) else {
            return Err(StoreError::Read {
                path: self.path(id).join(META_DIR),
                source: io::Error::new(io::ErrorKind::NotFound, "the kept archive is missing"),
            });
        };
        let origin = file.display().to_string();
        let read_err = |source| StoreError::Read {
            path: file.clone(),
            source,
        };
        let f = fs::File::open(&file).map_err(read_err)?;
        let announced = f.metadata().map_err(read_err)?.len();
        let spooled = extract::spool(
            f,
            &self.dir,
            id,
            &origin,
            Expect {
                size: m.archive_size,
                sha256: Some(m.archive_sha256),
                announced: Some(announced),
            },
        )?;
        extract::extract_package(
            spooled,
            compression,
            &ExtractTarget {
                store_dir: &self.dir,
                id,
                origin: &origin,
                scope: None,
                replace: true,
                staging: None,
            },
        )?;
        Ok(true)
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
        let archived = self.archived(id)?;
        Ok(Package {
            id: id.clone(),
            path,
            info,
            archived,
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

    /// Add a local archive named `<id>.tar.zst` (or .tar.xz / .tar.gz). Exactly the file's
    /// size (taken from the open file) is read into a private spool and hashed; with
    /// `expected`, a wrong sha256 is refused before anything is decompressed.
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
        let read_err = |source| StoreError::Read {
            path: file.to_path_buf(),
            source,
        };
        let f = fs::File::open(file).map_err(read_err)?;
        let size = f.metadata().map_err(read_err)?.len();
        let origin = file.display().to_string();
        let spooled = extract::spool(
            f,
            &self.dir,
            &id,
            &origin,
            Expect {
                size,
                sha256: expected,
                announced: None,
            },
        )?;
        let ex = extract::extract_package(
            spooled,
            compression,
            &ExtractTarget {
                store_dir: &self.dir,
                id: &id,
                origin: &origin,
                scope: self.roles.as_ref(),
                replace: false,
                staging: self.staging.as_deref(),
            },
        )?;
        Ok((id, Added::New(Box::new(ex))))
    }

    /// Fetch `<repository>/packages/<name>/<id>.tar.zst`: spool exactly the pinned size,
    /// verify the sha256, then extract. A remote (http/https) repository needs a pin
    /// ([`StoreError::Unpinned`] otherwise); a local one (`file://`, a path) may be read
    /// unpinned, bounded by the file's own size.
    pub fn fetch(
        &self,
        fetcher: &Fetcher,
        repository: &str,
        id: &PackageId,
        pin: Option<Pin>,
    ) -> Result<Added, StoreError> {
        if self.present(id, pin.map(|p| p.sha256))? {
            return Ok(Added::AlreadyPresent);
        }
        let unpinned = || StoreError::Unpinned {
            id: id.clone(),
            repository: repository.trim().to_owned(),
        };
        if pin.is_none() && is_remote(repository) {
            return Err(unpinned());
        }
        let (body, compression, url) =
            fetcher
                .open_package(repository, id)
                .map_err(|source| StoreError::Fetch {
                    id: id.clone(),
                    source,
                })?;
        let size = match (pin, body.len) {
            (Some(p), _) => p.size,
            (None, Some(len)) => len,
            (None, None) => return Err(unpinned()),
        };
        let spooled = extract::spool(
            body.reader,
            &self.dir,
            id,
            &url,
            Expect {
                size,
                sha256: pin.map(|p| p.sha256),
                announced: body.len,
            },
        )?;
        let ex = extract::extract_package(
            spooled,
            compression,
            &ExtractTarget {
                store_dir: &self.dir,
                id,
                origin: &url,
                scope: self.roles.as_ref(),
                replace: false,
                staging: self.staging.as_deref(),
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

    /// Remove leftovers of interrupted downloads, extractions and removals. Call with the
    /// host lock held.
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
        let manifest = FileManifest::load(&path)?;
        let mut problems = manifest.verify(&path);
        problems.extend(self.verify_archive(id, &manifest)?);
        Ok(problems)
    }

    /// Is the kept archive (what relays serve, what an archived package is) still the one
    /// `manifest` recorded? An archived package must have it; an extracted one stored by an
    /// older version may have none.
    pub fn verify_archive(
        &self,
        id: &PackageId,
        manifest: &FileManifest,
    ) -> Result<Option<FileProblem>, StoreError> {
        let path = self.path(id);
        let Some((archive, _)) = self.archive(id) else {
            return Ok(self.archived(id)?.map(|_| FileProblem::Missing {
                path: format!(
                    "{META_DIR}/{}",
                    extract::archive_file_name(Compression::Zstd)
                ),
            }));
        };
        let rel = archive
            .strip_prefix(&path)
            .unwrap_or(&archive)
            .display()
            .to_string();
        Ok(match Digest::of_file(&archive) {
            Ok(d) if d == manifest.archive_sha256 => None,
            Ok(found) => Some(FileProblem::ContentChanged {
                path: rel,
                expected: manifest.archive_sha256,
                found,
            }),
            Err(e) => Some(FileProblem::Unreadable {
                path: rel,
                error: e.to_string(),
            }),
        })
    }

    /// The verified archive a stored package was extracted from, when it was kept (packages
    /// stored by older versions have none), and its compression.
    pub fn archive(&self, id: &PackageId) -> Option<(PathBuf, Compression)> {
        let meta = self.path(id).join(META_DIR);
        Compression::ALL.into_iter().find_map(|c| {
            let p = meta.join(extract::archive_file_name(c));
            p.is_file().then_some((p, c))
        })
    }
}
