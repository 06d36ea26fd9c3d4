//! Secret files: files of a package's tree that are not in its archive (which is served
//! over HTTP to anyone) but delivered over SSH to the hosts whose roles read them.
//!
//! ```text
//! controller: genconf/secrets/                          0700, written by `tarmac genconf`
//!               manifest.json                           0600 [`SecretsManifest`]
//!               <package id>/.key                       0600 the package's secret key (hex)
//!               <package id>/<path>                     0600 e.g. etc_master/prometheus/prometheus.yml
//! host:       /etc/tarmac/secrets/<package id>/.key     0600 root, uploaded over SSH
//!             /etc/tarmac/secrets/<package id>/<path>   0600 root until activation, then the
//!                                                       owner/group/mode of pkginfo `files`
//! ```
//!
//! The package's pkginfo lists each secret file with its HMAC-SHA256 under the package's
//! key ([`digest`]), so the host can check what it received, while a reader of the
//! (public) package cannot test guesses of a password the file holds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tarmac_types::{Digest, Role};

/// Where secret files live on a host: `<config dir>/secrets` (`/etc/tarmac/secrets`).
pub const HOST_SECRETS_DIR: &str = "/etc/tarmac/secrets";
/// The package's secret key inside `<secrets dir>/<package id>/`.
pub const KEY_FILE: &str = ".key";
/// The list of secret files inside `genconf/secrets/`.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Format of [`SecretsManifest`].
pub const MANIFEST_FORMAT: u32 = 1;

/// HMAC-SHA256 of `bytes` under `key`: the digest pkginfo lists for a secret file.
pub fn digest(key: &[u8; 32], bytes: &[u8]) -> Digest {
    use hmac::Mac;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    m.update(bytes);
    Digest(m.finalize().into_bytes().into())
}

/// The text of a key file: 64 hex digits and a newline.
pub fn key_text(key: &[u8; 32]) -> String {
    format!("{}\n", hex::encode(key))
}

/// Read a key file's text.
pub fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    let t = text.trim();
    if t.len() != 64 || hex::decode_to_slice(t, &mut out).is_err() {
        return Err("not 64 hex digits".into());
    }
    Ok(out)
}

/// `genconf/secrets/manifest.json`: every config package genconf made (also those without
/// secret files, so a missing entry means a stale directory) and its secret files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretsManifest {
    pub format: u32,
    /// Package id → its secret files.
    pub packages: BTreeMap<String, PackageSecrets>,
}

/// The secret files of one package.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageSecrets {
    pub files: Vec<SecretFile>,
}

/// One secret file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretFile {
    /// Path in the package's tree (`etc_master/prometheus/prometheus.yml`).
    pub path: String,
    /// The role whose hosts get it; `None`: every host.
    pub role: Option<Role>,
    pub sha256: Digest,
    pub hmac_sha256: Digest,
    pub size: u64,
    /// Octal, e.g. `0640`.
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl SecretFile {
    /// Does a host with `role` get this file?
    pub fn applies_to(&self, role: Role) -> bool {
        self.role.is_none_or(|r| r == role)
    }
}

impl SecretsManifest {
    pub fn parse(bytes: &[u8]) -> Result<SecretsManifest, String> {
        let m: SecretsManifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if m.format != MANIFEST_FORMAT {
            return Err(format!(
                "unsupported format {} (this Tarmac reads {MANIFEST_FORMAT})",
                m.format
            ));
        }
        for (id, p) in &m.packages {
            for f in &p.files {
                crate::pkginfo::check_file_path(&f.path)
                    .map_err(|why| format!("{id}: `{}`: {why}", f.path))?;
            }
        }
        Ok(m)
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("manifest serializes");
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_hmac_sha256() {
        // RFC 4231 test case 2 has a short key; HMAC pads any key to the block size, so a
        // 32-byte key "Jefe" + zeros gives the same MAC.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            digest(&key, b"what do ya want for nothing?").hex(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(digest(&key, b"a"), Digest::of(b"a"));
    }

    #[test]
    fn keys_and_manifest() {
        let key = [7u8; 32];
        let text = key_text(&key);
        assert_eq!(text, format!("{}\n", "07".repeat(32)));
        assert_eq!(parse_key(&text).unwrap(), key);
        assert_eq!(parse_key("abc").unwrap_err(), "not 64 hex digits");
        let m = SecretsManifest {
            format: MANIFEST_FORMAT,
            packages: [(
                "cfg--setup_1".to_owned(),
                PackageSecrets {
                    files: vec![SecretFile {
                        path: "etc_master/p/p.yml".into(),
                        role: Some(Role::Master),
                        sha256: Digest::of(b"x"),
                        hmac_sha256: digest(&key, b"x"),
                        size: 1,
                        mode: "0640".into(),
                        owner: None,
                        group: Some("tarmac_p".into()),
                    }],
                },
            )]
            .into(),
        };
        let back = SecretsManifest::parse(m.to_json().as_bytes()).unwrap();
        assert_eq!(back, m);
        assert!(back.packages["cfg--setup_1"].files[0].applies_to(Role::Master));
        assert!(!back.packages["cfg--setup_1"].files[0].applies_to(Role::Agent));
        let bad = m.to_json().replace("etc_master/p/p.yml", "../p.yml");
        assert_eq!(
            SecretsManifest::parse(bad.as_bytes()).unwrap_err(),
            "cfg--setup_1: `../p.yml`: it has an empty, `.` or `..` component"
        );
        assert_eq!(
            SecretsManifest::parse(br#"{"format": 2, "packages": {}}"#).unwrap_err(),
            "unsupported format 2 (this Tarmac reads 1)"
        );
    }
}
