//! Input hashing: canonical JSON and directory digests.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tarmac_types::Digest;

/// Canonical JSON: object keys sorted by bytes, no whitespace. Independent of
/// serde_json's `preserve_order` feature.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).expect("string serializes"));
                out.push(':');
                write_canonical(&m[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).expect("scalar serializes")),
    }
}

/// Pretty JSON with sorted keys and a trailing newline (files we write into packages).
pub fn pretty_json(v: &Value) -> Vec<u8> {
    // Re-parse the canonical form: serde_json's default Map is sorted; when a dependency
    // enables `preserve_order`, the canonical string keeps the sorted insertion order.
    let sorted: Value = serde_json::from_str(&canonical_json(v)).expect("canonical json parses");
    let mut b = serde_json::to_vec_pretty(&sorted).expect("json serializes");
    b.push(b'\n');
    b
}

#[derive(Debug, thiserror::Error)]
#[error("cannot hash `{path}`")]
pub struct HashError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Digest of a file or directory tree: names, types, executable bits, file contents
/// and symlink targets — not mtimes, owners or other mode bits (what git tracks).
/// Moving the tree elsewhere does not change it.
pub fn tree_digest(path: &Path) -> Result<Digest, HashError> {
    let mut text = String::new();
    add_entry(path, "", &mut text)?;
    Ok(Digest::of(text.as_bytes()))
}

fn add_entry(full: &Path, rel: &str, text: &mut String) -> Result<(), HashError> {
    let err = |source| HashError {
        path: full.to_owned(),
        source,
    };
    let meta = fs::symlink_metadata(full).map_err(err)?;
    let ft = meta.file_type();
    let name = serde_json::to_string(rel).expect("string serializes");
    if ft.is_symlink() {
        let target = fs::read_link(full).map_err(err)?;
        let target = serde_json::to_string(&target.to_string_lossy()).expect("string");
        text.push_str(&format!("l {name} {target}\n"));
    } else if ft.is_file() {
        let exec = meta.permissions().mode() & 0o111 != 0;
        let d = Digest::of_file(full).map_err(err)?;
        text.push_str(&format!("f {name} {} {d}\n", if exec { "x" } else { "-" }));
    } else if ft.is_dir() {
        text.push_str(&format!("d {name}\n"));
        let mut names: Vec<_> = fs::read_dir(full)
            .map_err(err)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(err)?;
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        for n in names {
            let child_rel = if rel.is_empty() {
                n.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", n.to_string_lossy())
            };
            add_entry(&full.join(&n), &child_rel, text)?;
        }
    } else {
        return Err(err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "special files (devices, FIFOs, sockets) cannot be build inputs",
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn canonical_json_sorts_keys() {
        let v = serde_json::json!({"b": [1, {"z": true, "a": null}], "a": "x\n"});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":"x\n","b":[1,{"a":null,"z":true}]}"#
        );
    }

    #[test]
    fn tree_digest_tracks_content_modes_links_not_location() {
        let a = tempfile::tempdir().unwrap();
        let mk = |root: &Path| {
            fs::create_dir_all(root.join("d/e")).unwrap();
            fs::write(root.join("d/f"), b"x").unwrap();
            symlink("f", root.join("d/l")).unwrap();
        };
        mk(a.path());
        let b = tempfile::tempdir().unwrap();
        mk(&b.path().join("elsewhere").join("deeper"));
        let base = tree_digest(a.path()).unwrap();
        assert_eq!(
            base,
            tree_digest(&b.path().join("elsewhere/deeper")).unwrap()
        );
        fs::set_permissions(a.path().join("d/f"), fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            base,
            tree_digest(a.path()).unwrap(),
            "non-exec mode bits are ignored"
        );
        fs::set_permissions(a.path().join("d/f"), fs::Permissions::from_mode(0o755)).unwrap();
        let exec = tree_digest(a.path()).unwrap();
        assert_ne!(base, exec);
        fs::write(a.path().join("d/f"), b"y").unwrap();
        assert_ne!(exec, tree_digest(a.path()).unwrap());
        fs::remove_file(a.path().join("d/l")).unwrap();
        symlink("g", a.path().join("d/l")).unwrap();
        let relinked = tree_digest(a.path()).unwrap();
        fs::create_dir(a.path().join("empty")).unwrap();
        assert_ne!(relinked, tree_digest(a.path()).unwrap(), "empty dirs count");
    }
}
