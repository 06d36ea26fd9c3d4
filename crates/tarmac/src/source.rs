//! Where a command's build, distribution and trusted key come from.
//!
//! An operator has a build (an extracted bundle's `build/`, or `tarmac build`'s output), and
//! the build carries its distribution (`bootstrap/<bid>.distribution.tar.zst`, covered by the
//! signed manifest). Nothing here reads a source tree unless `--dist` (or `TARMAC_DIST`) names
//! one: that is for distribution authors.
//!
//! The build is, in this order: `--build-dir` / `TARMAC_BUILD_DIR`; the bundle this `tarmac`
//! binary was extracted with (`<its directory>/bundle.json`, build in `<its directory>/build`);
//! `./out` when it holds a build; the one extracted bundle in the current directory
//! (`./tarmac-*/bundle.json`). The trusted key is `--public-key` / `TARMAC_PUBLIC_KEY`, else
//! the key a bundle was verified against when it was extracted (`<bundle>/signing-key.pub`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tarmac_types::error_report::Hinted;

use crate::render::HintContext as _;
use clap::Args;
use tarmac_config::Distribution;
use tarmac_events::Sink;

/// The file an extracted bundle holds at its root (see `tarmac bundle`).
pub const BUNDLE_INDEX: &str = "bundle.json";
/// The key an extracted bundle was verified against, at its root.
pub const BUNDLE_KEY: &str = "signing-key.pub";
/// An extracted bundle's build directory.
pub const BUNDLE_BUILD: &str = "build";
/// An extracted bundle's offline prerequisites.
pub const BUNDLE_PREREQS: &str = "prereqs";

/// The build, distribution and key options a command shares.
#[derive(Debug, Clone, Default, Args)]
pub struct BuildSource {
    /// For distribution authors: read the distribution from this source tree (its root, e.g.
    /// dist/reference, or its config/ directory) instead of from the build.
    #[arg(long, value_name = "DIR", env = "TARMAC_DIST")]
    pub dist: Option<PathBuf>,
    /// The build: `tarmac build`'s output directory or an extracted bundle's build/
    /// [default: the bundle this tarmac came in, else ./out, else ./tarmac-*/ (one bundle)].
    #[arg(long, value_name = "DIR", env = "TARMAC_BUILD_DIR")]
    pub build_dir: Option<PathBuf>,
    /// Trusted public key (from `tarmac keygen`): the build manifest's signature is checked
    /// with it, and install.sh makes every host check it again [default: the key an
    /// extracted bundle was verified against].
    #[arg(long, value_name = "FILE", env = "TARMAC_PUBLIC_KEY")]
    pub public_key: Option<PathBuf>,
}

/// A build found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundBuild {
    pub dir: PathBuf,
    /// The extracted bundle it belongs to.
    pub bundle: Option<PathBuf>,
    /// How it was found, for messages.
    pub how: &'static str,
}

/// What a command reads: the distribution and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub dist: Distribution,
    /// The build it came from (`None` for a source tree given with `--dist`).
    pub build: Option<FoundBuild>,
    /// The key to check signatures with, explicit or the bundle's.
    pub public_key: Option<PathBuf>,
    /// Where the distribution was read, for messages.
    pub origin: String,
}

/// A sink that prints the libraries' notices on stderr (stdout stays for results).
pub fn notice_sink() -> Sink {
    std::sync::Arc::new(|e: tarmac_events::Event| {
        if let tarmac_events::Event::Notice { level, message } = e {
            #[allow(clippy::print_stderr)]
            match level {
                tarmac_events::Level::Warn | tarmac_events::Level::Error => {
                    eprintln!("warning: {message}")
                }
                tarmac_events::Level::Info => eprintln!("{message}"),
                tarmac_events::Level::Debug => {}
            }
        }
    })
}

/// The directory of the running `tarmac` when it sits at the root of an extracted bundle.
pub fn own_bundle() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    dir.join(BUNDLE_INDEX).is_file().then(|| dir.to_path_buf())
}

/// Find the build (see the module docs), without reading it. `explicit` is `--build-dir`.
pub fn find_build(
    explicit: Option<&Path>,
    own_bundle: Option<&Path>,
    cwd: &Path,
) -> anyhow::Result<FoundBuild> {
    if let Some(dir) = explicit {
        let bundle = dir
            .parent()
            .filter(|p| p.join(BUNDLE_INDEX).is_file())
            .map(Path::to_path_buf);
        return Ok(FoundBuild {
            dir: dir.to_path_buf(),
            bundle,
            how: "--build-dir",
        });
    }
    if let Some(b) = own_bundle {
        return Ok(FoundBuild {
            dir: b.join(BUNDLE_BUILD),
            bundle: Some(b.to_path_buf()),
            how: "the bundle this tarmac came in",
        });
    }
    let out = cwd.join("out");
    if out.join("bootstrap.latest").is_file() {
        return Ok(FoundBuild {
            dir: out,
            bundle: None,
            how: "./out",
        });
    }
    let mut bundles: Vec<PathBuf> = std::fs::read_dir(cwd)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("tarmac-"))
                        && p.join(BUNDLE_INDEX).is_file()
                })
                .collect()
        })
        .unwrap_or_default();
    bundles.sort();
    match bundles.len() {
        1 => {
            let b = bundles.remove(0);
            Ok(FoundBuild {
                dir: b.join(BUNDLE_BUILD),
                bundle: Some(b),
                how: "the extracted bundle in this directory",
            })
        }
        0 => Err(Hinted::new(
            format!(
                "no build found: looked for --build-dir / TARMAC_BUILD_DIR, a bundle.json next to this tarmac binary, {}/out/bootstrap.latest and {}/tarmac-*/bundle.json",
                cwd.display(),
                cwd.display()
            ),
            "extract the bundle here (`sh tarmac-<id>.bundle extract --public-key KEY`) and run its tarmac, or pass --build-dir DIR",
        )
        .into()),
        _ => Err(Hinted::new(
            format!(
                "several extracted bundles in {}: {}",
                cwd.display(),
                bundles
                    .iter()
                    .filter_map(|b| b.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "run the tarmac inside the one you want (./tarmac-<id>/tarmac …), or pass --build-dir tarmac-<id>/build",
        )
        .into()),
    }
}

impl BuildSource {
    /// The trusted key: explicit, else the found bundle's.
    pub fn key_for(&self, build: Option<&FoundBuild>) -> Option<PathBuf> {
        self.public_key.clone().or_else(|| {
            build
                .and_then(|b| b.bundle.as_ref())
                .map(|b| b.join(BUNDLE_KEY))
                .filter(|k| k.is_file())
        })
    }

    /// The build this command uses (found, not read).
    pub fn build(&self) -> anyhow::Result<FoundBuild> {
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        find_build(self.build_dir.as_deref(), own_bundle().as_deref(), &cwd)
    }

    /// Load the distribution: from `--dist` (a source tree), else from the build, its
    /// manifest's signature checked with the trusted key when there is one.
    pub fn load(&self, sink: &Sink) -> anyhow::Result<Loaded> {
        if let Some(dir) = &self.dist {
            let dist = load_source_tree(dir)?;
            let build = self.build().ok();
            let public_key = self.key_for(build.as_ref());
            return Ok(Loaded {
                dist,
                build,
                public_key,
                origin: format!("the source tree {}", dir.display()),
            });
        }
        let build = self.build()?;
        let public_key = self.key_for(Some(&build));
        let loaded = tarmac_genconf::distribution::load_build_distribution(
            &build.dir,
            public_key.as_deref(),
            sink,
        )
        .with_context(|| {
            format!(
                "cannot read the distribution of the build at {} ({})",
                build.dir.display(),
                build.how
            )
        })?;
        Ok(Loaded {
            dist: loaded.dist,
            origin: format!(
                "the build at {} (bootstrap {}{})",
                build.dir.display(),
                &loaded.bootstrap_id[..12.min(loaded.bootstrap_id.len())],
                if loaded.signed_by.is_some() {
                    ", signature checked"
                } else {
                    ""
                }
            ),
            build: Some(build),
            public_key,
        })
    }
}

/// The distribution the stages validate against: the one genconf put into `genconf/serve/`
/// (it is what the hosts get), else `--dist`, else the build's.
pub fn load_for_stages(
    dist: Option<&Path>,
    genconf_dir: &Path,
    sink: &Sink,
) -> anyhow::Result<Distribution> {
    if let Some(dir) = dist {
        return load_source_tree(dir);
    }
    let serve = genconf_dir.join("serve");
    if serve.join("bootstrap.latest").is_file() {
        return tarmac_genconf::distribution::load_build_distribution(&serve, None, sink)
            .map(|l| l.dist)
            .hint_context(
                || {
                    format!(
                        "cannot read the distribution genconf wrote into {}",
                        serve.display()
                    )
                },
                "run `tarmac genconf` again",
            );
    }
    BuildSource::default()
        .load(sink)
        .map(|l| l.dist)
        .with_context(|| {
            format!(
                "{} has no genconf output yet, and no build was found",
                serve.display()
            )
        })
}

/// Load a distribution's source tree (its root or its `config/` directory).
pub fn load_source_tree(dist: &Path) -> anyhow::Result<Distribution> {
    let dir = Distribution::config_dir_of(dist).ok_or_else(|| {
        Hinted::new(
            format!(
                "no distribution configuration at {}: expected {}/config/schema.yaml or {}/schema.yaml",
                dist.display(),
                dist.display(),
                dist.display()
            ),
            "--dist is for distribution authors; without it the distribution is read from the build",
        )
    })?;
    Distribution::load(&dir)
        .with_context(|| format!("cannot load the distribution at {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_in(dir: &Path, name: &str) -> PathBuf {
        let b = dir.join(name);
        std::fs::create_dir_all(b.join(BUNDLE_BUILD)).unwrap();
        std::fs::write(b.join(BUNDLE_INDEX), "{}").unwrap();
        b
    }

    #[test]
    fn an_explicit_build_dir_wins() {
        let t = tempfile::tempdir().unwrap();
        let b = bundle_in(t.path(), "tarmac-abc");
        let f = find_build(Some(&b.join("build")), None, t.path()).unwrap();
        assert_eq!(f.dir, b.join("build"));
        assert_eq!(f.bundle, Some(b), "a bundle's build/ keeps its bundle");
        assert_eq!(f.how, "--build-dir");
    }

    #[test]
    fn the_own_bundle_comes_before_the_current_directory() {
        let t = tempfile::tempdir().unwrap();
        let own = bundle_in(t.path(), "elsewhere");
        std::fs::create_dir_all(t.path().join("out")).unwrap();
        std::fs::write(t.path().join("out/bootstrap.latest"), "x").unwrap();
        let f = find_build(None, Some(&own), t.path()).unwrap();
        assert_eq!(f.dir, own.join("build"));
        let f = find_build(None, None, t.path()).unwrap();
        assert_eq!(f.dir, t.path().join("out"));
        assert_eq!(f.bundle, None);
    }

    #[test]
    fn one_extracted_bundle_in_the_current_directory_is_found() {
        let t = tempfile::tempdir().unwrap();
        let b = bundle_in(t.path(), "tarmac-0123");
        let f = find_build(None, None, t.path()).unwrap();
        assert_eq!(f.dir, b.join("build"));
        bundle_in(t.path(), "tarmac-4567");
        let e = find_build(None, None, t.path()).unwrap_err().to_string();
        assert!(
            e.contains("several extracted bundles") && e.contains("tarmac-0123, tarmac-4567"),
            "{e}"
        );
    }

    #[test]
    fn nothing_found_says_what_was_looked_for() {
        let t = tempfile::tempdir().unwrap();
        let e = crate::render::report(&find_build(None, None, t.path()).unwrap_err()).to_text();
        let d = t.path().display();
        assert_eq!(
            e,
            format!(
                "error: no build found: looked for --build-dir / TARMAC_BUILD_DIR, a bundle.json next to this tarmac binary, {d}/out/bootstrap.latest and {d}/tarmac-*/bundle.json\nhint: extract the bundle here (`sh tarmac-<id>.bundle extract --public-key KEY`) and run its tarmac, or pass --build-dir DIR\n"
            )
        );
    }

    #[test]
    fn the_bundle_key_is_the_default_key() {
        let t = tempfile::tempdir().unwrap();
        let b = bundle_in(t.path(), "tarmac-abc");
        let found = find_build(None, Some(&b), t.path()).unwrap();
        let src = BuildSource::default();
        assert_eq!(src.key_for(Some(&found)), None, "no key file, no key");
        std::fs::write(b.join(BUNDLE_KEY), "k").unwrap();
        assert_eq!(src.key_for(Some(&found)), Some(b.join(BUNDLE_KEY)));
        let explicit = BuildSource {
            public_key: Some("/k.pub".into()),
            ..BuildSource::default()
        };
        assert_eq!(explicit.key_for(Some(&found)), Some("/k.pub".into()));
    }
}
