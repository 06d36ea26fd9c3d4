//! `tarmac build`: build the packages of a tree that changed, then the bootstrap
//! artifact, its manifest and (with `--sign-key`) the manifest's signature.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use tarmac_build::{BuildOptions, build};
use tarmac_types::PackageName;
use tarmac_types::error_report::Hinted;

use crate::progress::{OutputMode, Terminal};

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The package tree (a directory with treeinfo.json and packages/<name>/buildinfo.json).
    #[arg(long, default_value = ".")]
    pub tree: PathBuf,
    /// Output directory [default: <tree>/out].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Source cache (downloads, .debs, git mirrors) [default: $XDG_CACHE_HOME/tarmac or ~/.cache/tarmac].
    #[arg(long, env = "TARMAC_CACHE")]
    pub cache: Option<PathBuf>,
    /// With NAMEs: also build their missing dependencies.
    #[arg(long)]
    pub recursive: bool,
    /// Sign the manifest with this ed25519 secret key (from `tarmac keygen`).
    #[arg(long, env = "TARMAC_SIGN_KEY")]
    pub sign_key: Option<PathBuf>,
    /// The tarmac-host binary to package (sets TARMAC_HOST_BIN for the `tarmac-host` package's
    /// local source) [default: $TARMAC_PORTABLE_BIN_DIR/tarmac-host when that is set, the
    /// portable build of scripts/build-portable.sh].
    #[arg(long, env = "TARMAC_HOST_BIN")]
    pub host_binary: Option<PathBuf>,
    /// Parallel package builds [default: number of CPUs].
    #[arg(short, long)]
    pub jobs: Option<usize>,
    /// zstd level of packages (output bytes depend on it).
    #[arg(long, default_value_t = tarmac_pkg::pack::DEFAULT_LEVEL, value_parser = clap::value_parser!(i32).range(1..=22))]
    pub level: i32,
    /// Keep the work directory of a failed build.
    #[arg(long)]
    pub keep_work: bool,
    /// `human`: progress on stderr, a summary on stdout. `json`: only JSON on stdout: one
    /// JSON event per line, and any failure that stops the build as one
    /// `{"error", "causes", "hint"}` object.
    #[arg(long, value_enum, default_value_t = OutputMode::Human)]
    pub output: OutputMode,
    /// Same as `--output json`.
    #[arg(long, hide = true)]
    pub json: bool,
    /// Build only these packages (no bootstrap); default: the whole tree and the bootstrap.
    pub names: Vec<PackageName>,
}

fn default_cache() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("tarmac");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => PathBuf::from(h).join(".cache/tarmac"),
        None => PathBuf::from("/var/cache/tarmac"),
    }
}

fn absolute(p: PathBuf) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p
    } else {
        std::env::current_dir()?.join(p)
    })
}

pub fn run(args: BuildArgs, verbose: bool) -> anyhow::Result<ExitCode> {
    let tree = absolute(args.tree)?;
    // The build carries the distribution's configuration: refuse one that does not load
    // here rather than at the operator's genconf.
    if tree
        .join(tarmac_build::bootstrap::DISTRIBUTION_DIR)
        .join("schema.yaml")
        .is_file()
    {
        crate::source::load_source_tree(&tree).with_context(|| {
            format!(
                "the distribution configuration in {}/config does not load, so it cannot go into the build",
                tree.display()
            )
        })?;
    }
    let mut opts = BuildOptions::new(&tree, absolute(args.cache.unwrap_or_else(default_cache))?);
    if let Some(out) = args.out {
        opts.out = absolute(out)?;
    }
    opts.names = args.names;
    opts.recursive = args.recursive;
    opts.sign_key = args.sign_key.map(absolute).transpose()?;
    opts.keep_work = args.keep_work;
    opts.pack.level = args.level;
    if let Some(j) = args.jobs {
        opts.jobs = j.max(1);
    }
    opts.vars = std::env::vars().collect();
    let host_binary = match args.host_binary {
        Some(h) => Some(h),
        None => portable_host_binary(std::env::var_os("TARMAC_PORTABLE_BIN_DIR"))?,
    };
    if let Some(h) = host_binary {
        opts.vars.insert(
            "TARMAC_HOST_BIN".into(),
            absolute(h)?.to_string_lossy().into_owned(),
        );
    }
    let term = Arc::new(Terminal::new(args.output, verbose));
    let report = build(&opts, term)?;
    if args.output == OutputMode::Json {
        let packages: Vec<serde_json::Value> = report
            .packages
            .iter()
            .map(|p| {
                serde_json::json!({
                    "id": p.id, "built": p.built, "size": p.size, "sha256": p.sha256,
                    "path": p.path, "duration_ms": p.duration_ms,
                })
            })
            .collect();
        let bootstrap = report.bootstrap.as_ref().map(|b| {
            serde_json::json!({
                "id": b.id, "packages": b.packages, "archive": b.archive, "active": b.active,
                "host_binary": b.host_binary, "manifest": b.manifest, "signature": b.signature,
                "key_id": b.key_id, "created": b.created,
            })
        });
        println!(
            "{}",
            serde_json::json!({
                "type": "build_report", "packages": packages, "bootstrap": bootstrap,
                "duration_ms": report.duration_ms,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    let built = report.packages.iter().filter(|p| p.built).count();
    println!(
        "{} packages ({} built, {} up to date) in {:.1}s",
        report.packages.len(),
        built,
        report.packages.len() - built,
        report.duration_ms as f64 / 1000.0
    );
    for p in &report.packages {
        println!(
            "  {:<9} {:>10}  {}",
            if p.built { "built" } else { "cached" },
            human(p.size),
            p.id
        );
    }
    if let Some(b) = &report.bootstrap {
        println!(
            "bootstrap {} ({} packages, {})",
            b.id,
            b.packages.len(),
            human(b.archive_size)
        );
        println!("  archive   {}", b.archive.display());
        println!("  active    {}", b.active.display());
        if let Some(h) = &b.host_binary {
            println!("  host bin  {}", h.display());
        }
        println!("  manifest  {}", b.manifest.display());
        match (&b.signature, &b.key_id) {
            (Some(s), Some(k)) => println!("  signature {} (key {k})", s.display()),
            _ => println!("  signature none (unsigned; pass --sign-key to sign)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `$TARMAC_PORTABLE_BIN_DIR/tarmac-host` (the portable build scripts/build-portable.sh names)
/// when that variable is set and not empty; an error when it names no such file.
fn portable_host_binary(dir: Option<std::ffi::OsString>) -> anyhow::Result<Option<PathBuf>> {
    let Some(dir) = dir.filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let p = PathBuf::from(dir).join("tarmac-host");
    if !p.is_file() {
        return Err(Hinted::new(
            format!(
                "TARMAC_PORTABLE_BIN_DIR is set but {} does not exist",
                p.display()
            ),
            "run scripts/build-portable.sh (it prints the directory), or pass --host-binary",
        )
        .into());
    }
    Ok(Some(p))
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_portable_build_is_the_default_host_binary() {
        assert_eq!(portable_host_binary(None).unwrap(), None);
        assert_eq!(portable_host_binary(Some("".into())).unwrap(), None);
        let d = tempfile::tempdir().unwrap();
        let e = portable_host_binary(Some(d.path().into())).unwrap_err();
        assert_eq!(
            crate::render::report(&e).to_text(),
            format!(
                "error: TARMAC_PORTABLE_BIN_DIR is set but {}/tarmac-host does not exist\nhint: run scripts/build-portable.sh (it prints the directory), or pass --host-binary\n",
                d.path().display()
            )
        );
        std::fs::write(d.path().join("tarmac-host"), "bin").unwrap();
        assert_eq!(
            portable_host_binary(Some(d.path().into())).unwrap(),
            Some(d.path().join("tarmac-host"))
        );
    }
}
