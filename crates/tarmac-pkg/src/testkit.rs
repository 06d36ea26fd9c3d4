//! Building package archives entry by entry, for tests and benchmarks — including hostile
//! ones (absolute paths, `..`, escaping links, device nodes) that a real builder never makes.
//! Real packages are built by the builder (`tarmac build`).

use std::io::Write;

use crate::extract::Compression;

/// One archive entry, written verbatim (no path checks).
#[derive(Debug, Clone)]
pub enum Entry {
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Dir {
        path: String,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
    Hardlink {
        path: String,
        target: String,
    },
    Char {
        path: String,
    },
    Fifo {
        path: String,
    },
}

impl Entry {
    pub fn file(path: &str, data: impl AsRef<[u8]>) -> Entry {
        Entry::File {
            path: path.to_owned(),
            mode: 0o644,
            data: data.as_ref().to_vec(),
        }
    }
    pub fn exe(path: &str, data: impl AsRef<[u8]>) -> Entry {
        Entry::File {
            path: path.to_owned(),
            mode: 0o755,
            data: data.as_ref().to_vec(),
        }
    }
    pub fn dir(path: &str) -> Entry {
        Entry::Dir {
            path: path.to_owned(),
            mode: 0o755,
        }
    }
    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry::Symlink {
            path: path.to_owned(),
            target: target.to_owned(),
        }
    }
    pub fn hardlink(path: &str, target: &str) -> Entry {
        Entry::Hardlink {
            path: path.to_owned(),
            target: target.to_owned(),
        }
    }
}

fn set_name(field: &mut [u8], value: &str) {
    let b = value.as_bytes();
    assert!(b.len() < field.len(), "test entry name too long: {value}");
    field.fill(0);
    field[..b.len()].copy_from_slice(b);
}

/// An uncompressed tar of `entries`, in order.
pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        let (path, data): (&str, &[u8]) = match e {
            Entry::File { path, mode, data } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                (path, data)
            }
            Entry::Dir { path, mode } => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                (path, &[])
            }
            Entry::Symlink { path, target } | Entry::Hardlink { path, target } => {
                h.set_entry_type(if matches!(e, Entry::Symlink { .. }) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_mode(0o777);
                h.set_size(0);
                set_name(&mut h.as_old_mut().linkname, target);
                (path, &[])
            }
            Entry::Char { path } => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0o600);
                h.set_size(0);
                (path, &[])
            }
            Entry::Fifo { path } => {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_mode(0o600);
                h.set_size(0);
                (path, &[])
            }
        };
        set_name(&mut h.as_old_mut().name, path);
        h.set_cksum();
        b.append(&h, data).expect("write to memory");
    }
    b.into_inner().expect("finish tar")
}

/// Compress a tar stream.
pub fn compress(tar: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::Zstd => zstd::encode_all(tar, 3).expect("zstd"),
        Compression::Xz => {
            let mut w = liblzma::write::XzEncoder::new(Vec::new(), 6);
            w.write_all(tar).expect("xz");
            w.finish().expect("xz")
        }
        Compression::Gzip => {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            w.write_all(tar).expect("gz");
            w.finish().expect("gz")
        }
    }
}

/// A compressed archive of `entries`.
pub fn archive(entries: &[Entry], c: Compression) -> Vec<u8> {
    compress(&tar(entries), c)
}

/// A well-formed package: `pkginfo.json` plus `files` (parent directories implied).
pub fn package(pkginfo: &str, files: &[Entry]) -> Vec<u8> {
    let mut all = vec![Entry::dir("./"), Entry::file("./pkginfo.json", pkginfo)];
    all.extend(files.iter().cloned());
    archive(&all, Compression::Zstd)
}
