//! `tarmac hash-password`: SHA-512 crypt, as DC/OS did (passlib's default rounds).

use sha_crypt::{Sha512Params, sha512_check, sha512_simple};

/// passlib's default and DC/OS's: `$6$rounds=656000$…`.
pub const ROUNDS: usize = 656_000;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is empty")]
    Empty,
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

impl tarmac_types::error_report::Hint for PasswordError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            PasswordError::Empty => Some("type a non-empty password".into()),
            PasswordError::Hash(_) => None,
        }
    }
}

/// Hash `password` with SHA-512 crypt and a random salt.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::Empty);
    }
    let params = Sha512Params::new(ROUNDS).map_err(|e| PasswordError::Hash(format!("{e:?}")))?;
    sha512_simple(password, &params).map_err(|e| PasswordError::Hash(format!("{e:?}")))
}

/// Check `password` against a `$6$…` hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    sha512_check(password, hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("hunter2").unwrap();
        assert!(h.starts_with("$6$rounds=656000$"), "{h}");
        assert!(verify_password("hunter2", &h));
        assert!(!verify_password("hunter3", &h));
        assert!(matches!(hash_password(""), Err(PasswordError::Empty)));
    }

    #[test]
    fn verifies_a_libc_crypt_vector() {
        // From the glibc/Drepper SHA-crypt test vectors.
        let h = "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.";
        assert!(verify_password("Hello world!", h));
    }
}
