//! Unpack a bootstrap archive the way a host does, for benchmarks and manual checks:
//! stream the archive, check every member against `bootstrap.json`, and extract each
//! package into `<dest>/<id>/`.
//!
//! `cargo run --release -p tarmac-build --example unpack_bootstrap -- ARCHIVE DEST`
#![allow(clippy::print_stdout)]

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(archive), Some(dest)) = (args.next(), args.next()) else {
        return Err("usage: unpack_bootstrap ARCHIVE DEST".into());
    };
    let dest = PathBuf::from(dest);
    fs::create_dir_all(&dest)?;
    let started = Instant::now();
    let mut bytes = 0u64;
    let index =
        tarmac_pkg::manifest::read_bootstrap(fs::File::open(&archive)?, None, |member, r| {
            let dir = dest.join(member.id.to_string());
            let counting = Counting { inner: r, n: 0 };
            let dec = zstd::stream::read::Decoder::new(counting)?;
            let mut ar = tar::Archive::new(dec);
            ar.unpack(&dir)?;
            bytes += ar.into_inner().finish().into_inner().n;
            Ok::<(), std::io::Error>(())
        })?;
    println!(
        "{} packages, {} compressed bytes, {:.3}s",
        index.packages.len(),
        bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}
