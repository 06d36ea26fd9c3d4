use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest, shown as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sha256 `{0}`: expected 64 hex characters")]
pub struct DigestError(pub String);

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// Hash everything `reader` yields.
    pub fn of_reader(mut reader: impl Read) -> io::Result<Digest> {
        let mut w = Sha256Writer::new(io::sink());
        io::copy(&mut reader, &mut w)?;
        Ok(w.finish().0)
    }

    pub fn of_file(path: &std::path::Path) -> io::Result<Digest> {
        Digest::of_reader(std::fs::File::open(path)?)
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s2 = s.strip_prefix("sha256:").unwrap_or(s);
        let mut out = [0u8; 32];
        if s2.len() != 64 || hex::decode_to_slice(s2, &mut out).is_err() {
            return Err(DigestError(s.to_owned()));
        }
        Ok(Digest(out))
    }
}

crate::package::string_serde!(Digest);

/// A writer that hashes what passes through it (tee into sha256).
pub struct Sha256Writer<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Sha256Writer<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The digest and byte count of everything written, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        (Digest(self.hasher.finalize().into()), self.len, self.inner)
    }
}

impl<W: Write> Write for Sha256Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        assert_eq!(
            Digest::of(b"abc").hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let d: Digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            .parse()
            .unwrap();
        assert_eq!(d, Digest::of(b"abc"));
        assert!("xyz".parse::<Digest>().is_err());
    }
}
