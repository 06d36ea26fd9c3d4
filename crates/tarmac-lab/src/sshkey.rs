//! Ed25519 keys in OpenSSH's formats, generated in-process (no `ssh-keygen` per host).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::SigningKey;
use rand::RngCore as _;

/// An ed25519 key pair rendered for OpenSSH.
#[derive(Debug, Clone)]
pub struct KeyPair {
    /// `-----BEGIN OPENSSH PRIVATE KEY-----` … (unencrypted, as `ssh-keygen -N ''` writes it).
    pub private: String,
    /// `ssh-ed25519 AAAA… comment`
    pub public: String,
}

impl KeyPair {
    /// A fresh random key pair.
    pub fn generate(comment: &str) -> KeyPair {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let check = rand::rngs::OsRng.next_u32();
        Self::from_seed(&seed, check, comment)
    }

    /// The key pair for a seed (deterministic; `check` is OpenSSH's random check word).
    pub fn from_seed(seed: &[u8; 32], check: u32, comment: &str) -> KeyPair {
        let sk = SigningKey::from_bytes(seed);
        let pk = sk.verifying_key().to_bytes();

        let mut pub_blob = Vec::new();
        put_str(&mut pub_blob, b"ssh-ed25519");
        put_str(&mut pub_blob, &pk);

        let mut secret = Vec::new();
        secret.extend_from_slice(&check.to_be_bytes());
        secret.extend_from_slice(&check.to_be_bytes());
        put_str(&mut secret, b"ssh-ed25519");
        put_str(&mut secret, &pk);
        let mut both = seed.to_vec();
        both.extend_from_slice(&pk);
        put_str(&mut secret, &both);
        put_str(&mut secret, comment.as_bytes());
        let mut pad = 1u8;
        while secret.len() % 8 != 0 {
            secret.push(pad);
            pad += 1;
        }

        let mut blob = b"openssh-key-v1\0".to_vec();
        put_str(&mut blob, b"none");
        put_str(&mut blob, b"none");
        put_str(&mut blob, b"");
        blob.extend_from_slice(&1u32.to_be_bytes());
        put_str(&mut blob, &pub_blob);
        put_str(&mut blob, &secret);

        let b64 = B64.encode(&blob);
        let mut private = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(70) {
            private.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            private.push('\n');
        }
        private.push_str("-----END OPENSSH PRIVATE KEY-----\n");
        let public = format!("ssh-ed25519 {} {comment}", B64.encode(&pub_blob));
        KeyPair { private, public }
    }

    /// `ssh-ed25519 AAAA…` without the comment (what known_hosts stores).
    pub fn public_key(&self) -> &str {
        let mut parts = self.public.splitn(3, ' ');
        let kind_len = parts.next().map_or(0, str::len);
        let key_len = parts.next().map_or(0, str::len);
        &self.public[..kind_len + 1 + key_len]
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_seed_renders_exactly() {
        let k = KeyPair::from_seed(&[7u8; 32], 0x01020304, "t");
        assert_eq!(
            k.public,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs t"
        );
        assert_eq!(
            k.public_key(),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs"
        );
        assert_eq!(
            k.private,
            "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACDqSmxj4pxSCr71UHsTLsX5lUd2rr6+e5JCHuppFEbSLAAAAIgBAgMEAQID
BAAAAAtzc2gtZWQyNTUxOQAAACDqSmxj4pxSCr71UHsTLsX5lUd2rr6+e5JCHuppFEbSLA
AAAEAHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHB+pKbGPinFIKvvVQexMuxfmV
R3auvr57kkIe6mkURtIsAAAAAXQBAgME
-----END OPENSSH PRIVATE KEY-----
"
        );
    }

    /// OpenSSH itself reads the private key and derives the same public key.
    #[test]
    fn ssh_keygen_accepts_the_private_key() {
        let Ok(out) = std::process::Command::new("ssh-keygen").arg("-?").output() else {
            panic!("ssh-keygen is needed for this test (apt-get install openssh-client)");
        };
        drop(out);
        let dir = std::env::temp_dir().join(format!("tarmac-lab-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k");
        let k = KeyPair::generate("lab@test");
        std::fs::write(&path, &k.private).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = std::process::Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), k.public);
    }
}
