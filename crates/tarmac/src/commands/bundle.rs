//! `tarmac bundle create|verify|extract`: the operator's one file (see `tarmac-bundle`).
//!
//! Exit codes: 0 done; 1 the bundle was refused (altered, another key, not a bundle) or could
//! not be made or unpacked.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, anyhow};
use clap::{Args, Subcommand};
use tarmac_bundle::{Meta, Trust};
use tarmac_pkg::manifest::{self, ArtifactKind, PublicKey, SecretKey};
use tarmac_types::error_report::Hinted;

use crate::progress::OutputMode;
use crate::render::HintContext as _;
use crate::source::{BUNDLE_BUILD, BUNDLE_KEY, BUNDLE_PREREQS, BuildSource};

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Write tarmac-<bootstrap id>.bundle: the portable tarmac, the signed build, its
    /// distribution, the configuration reference (and with --with-prereqs the hosts'
    /// prerequisites), signed as one file.
    Create(CreateArgs),
    /// Check a bundle offline against the key you trust: every byte, and who signed it.
    Verify(VerifyArgs),
    /// Verify a bundle, then unpack it into DIR/tarmac-<bootstrap id>/.
    Extract(ExtractArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The build to bundle [default: as for genconf: ./out, …].
    #[arg(long, value_name = "DIR", env = "TARMAC_BUILD_DIR")]
    pub build_dir: Option<PathBuf>,
    /// The ed25519 secret key the build's manifest was signed with; it signs the bundle too.
    #[arg(long, value_name = "FILE", env = "TARMAC_SIGN_KEY")]
    pub sign_key: PathBuf,
    /// The tarmac binary to ship [default: $TARMAC_PORTABLE_BIN_DIR/tarmac when set, else
    /// this binary]. It must run on every host OS (glibc >= 2.17: scripts/build-portable.sh).
    #[arg(long, value_name = "FILE")]
    pub tarmac_binary: Option<PathBuf>,
    /// Ship a tarmac that needs a newer glibc than 2.17 (it will not run everywhere).
    #[arg(long)]
    pub allow_non_portable: bool,
    /// Also carry the host prerequisites for these Debian suites (comma list, e.g.
    /// bullseye,bookworm,trixie), downloaded now, for `install-prereqs --offline`.
    #[arg(long, value_name = "SUITES", value_delimiter = ',')]
    pub with_prereqs: Vec<String>,
    /// Debian mirror for --with-prereqs [default: this machine's apt source for the suite,
    /// else deb.debian.org].
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// Directory the bundle is written to.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = OutputMode::Human)]
    pub output: OutputMode,
}

#[derive(Debug, Args)]
pub struct TrustArgs {
    /// The public key you trust (from `tarmac keygen`, received through an authenticated
    /// channel).
    #[arg(
        long,
        value_name = "FILE",
        env = "TARMAC_PUBLIC_KEY",
        required_unless_present = "key_fingerprint",
        conflicts_with = "key_fingerprint"
    )]
    pub public_key: Option<PathBuf>,
    /// Or its fingerprint, `sha256:<hex>` (as `tarmac keygen` and `bundle create` print it).
    #[arg(long, value_name = "FP")]
    pub key_fingerprint: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle file.
    pub file: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[arg(long, value_enum, default_value_t = OutputMode::Human)]
    pub output: OutputMode,
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// The bundle file.
    pub file: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Where tarmac-<bootstrap id>/ is made.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Replace an earlier extraction of the same bundle id.
    #[arg(long)]
    pub force: bool,
    #[arg(long, value_enum, default_value_t = OutputMode::Human)]
    pub output: OutputMode,
}

impl BundleCommand {
    pub fn machine_output(&self) -> bool {
        let o = match self {
            BundleCommand::Create(a) => a.output,
            BundleCommand::Verify(a) => a.output,
            BundleCommand::Extract(a) => a.output,
        };
        o == OutputMode::Json
    }
}

pub fn run(cmd: BundleCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BundleCommand::Create(a) => create(a),
        BundleCommand::Verify(a) => verify(a),
        BundleCommand::Extract(a) => extract(a),
    }
}

fn trust(args: &TrustArgs) -> anyhow::Result<Trust> {
    match (&args.public_key, &args.key_fingerprint) {
        (Some(k), _) => Ok(Trust::Key(PublicKey::read(k)?)),
        (None, Some(fp)) => Ok(Trust::Fingerprint(manifest::parse_fingerprint(fp)?)),
        (None, None) => Err(Hinted::new(
            "no trusted key",
            "pass --public-key FILE or --key-fingerprint sha256:<hex>, received through a channel you trust",
        )
        .into()),
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let t = trust(&args.trust)?;
    let v = tarmac_bundle::verify(&args.file, &t)?;
    if args.output == OutputMode::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "file": args.file, "name": v.name, "bootstrap_id": v.bootstrap_id,
                "signer": v.signer, "size": v.file_size, "body_sha256": v.body_sha256,
            }))?
        );
    } else {
        println!(
            "{}: good. Signed by {} (the key you trust); every one of its {} bytes checked.",
            args.file.display(),
            v.signer,
            v.file_size
        );
        println!("  bootstrap {}", v.bootstrap_id);
    }
    Ok(ExitCode::SUCCESS)
}

fn extract(args: ExtractArgs) -> anyhow::Result<ExitCode> {
    let t = trust(&args.trust)?;
    let x = tarmac_bundle::extract(&args.file, &t, &args.dir, args.force)?;
    // The key it was verified against is the key its later commands trust.
    tarmac_fsx::write_atomic(
        &x.dir.join(BUNDLE_KEY),
        x.verified.signer_key.as_bytes(),
        0o644,
    )
    .with_context(|| format!("cannot write {}", x.dir.join(BUNDLE_KEY).display()))?;
    if args.output == OutputMode::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "dir": x.dir, "bootstrap_id": x.index.bootstrap_id, "signer": x.verified.signer,
                "distribution": x.index.distribution, "prereq_suites": x.index.prereq_suites,
                "replaced": x.replaced,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rel = x
        .dir
        .strip_prefix(std::env::current_dir().unwrap_or_default())
        .map_or_else(|_| x.dir.clone(), |r| Path::new(".").join(r));
    println!(
        "{}: good, signed by {}. Unpacked into {}{}",
        args.file.display(),
        x.verified.signer,
        x.dir.display(),
        if x.replaced {
            " (replacing the earlier one)"
        } else {
            ""
        }
    );
    println!(
        "  distribution {}, bootstrap {}",
        x.index.distribution, x.index.bootstrap_id
    );
    if !x.index.prereq_suites.is_empty() {
        println!(
            "  host prerequisites for {} (install-prereqs --offline)",
            x.index.prereq_suites.join(", ")
        );
    }
    println!(
        "Next, next to your genconf/: {}/tarmac validate-config, then genconf, preflight, deploy, postflight (or {}/tarmac web).",
        rel.display(),
        rel.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The tarmac binary to ship.
fn tarmac_binary(args: &CreateArgs) -> anyhow::Result<PathBuf> {
    if let Some(b) = &args.tarmac_binary {
        return Ok(b.clone());
    }
    if let Some(dir) = std::env::var_os("TARMAC_PORTABLE_BIN_DIR").filter(|d| !d.is_empty()) {
        let b = PathBuf::from(dir).join("tarmac");
        if b.is_file() {
            return Ok(b);
        }
    }
    std::env::current_exe().context("cannot find this tarmac binary")
}

fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let sink = crate::source::notice_sink();
    let source = BuildSource {
        build_dir: args.build_dir.clone(),
        ..BuildSource::default()
    };
    let build = source.build()?;
    let key = SecretKey::read(&args.sign_key)?;
    let public = key.public();

    // The build: its manifest signed by this key, every artifact intact.
    let latest = build.dir.join("bootstrap.latest");
    let bid = std::fs::read_to_string(&latest)
        .hint_context(
            || {
                format!(
                    "no build at {}: cannot read {}",
                    build.dir.display(),
                    latest.display()
                )
            },
            "run `tarmac build --sign-key KEY` first, or pass --build-dir",
        )?
        .trim()
        .to_owned();
    let manifest_rel = format!("bootstrap/{bid}.manifest.json");
    let manifest_path = build.dir.join(&manifest_rel);
    let m = manifest::verify_file(&manifest_path, &public).hint_context(
        || {
            format!(
                "the build's manifest {} is not signed by {} ({})",
                manifest_path.display(),
                args.sign_key.display(),
                public.fingerprint()
            )
        },
        format!(
            "bundle a build made with `tarmac build --sign-key {}`",
            args.sign_key.display()
        ),
    )?;
    m.check_all(&build.dir).with_context(|| {
        format!(
            "the build at {} does not match its manifest",
            build.dir.display()
        )
    })?;
    if m.first(ArtifactKind::Distribution).is_none() {
        return Err(Hinted::new(
            format!(
                "the build at {} carries no distribution configuration",
                build.dir.display()
            ),
            "rebuild it with this tarmac (`tarmac build` packs the tree's config/)",
        )
        .into());
    }

    // The tarmac to ship.
    let binary = tarmac_binary(&args)?;
    match tarmac_build::elf_versions::check_portable(
        &binary,
        tarmac_build::elf_versions::GLIBC_BASELINE,
    ) {
        Ok(_) => {}
        Err(e @ tarmac_build::elf_versions::ElfError::NotPortable { .. })
            if !args.allow_non_portable =>
        {
            return Err(e).hint_context(
                || format!("{} would not run at every site", binary.display()),
                "build the portable one with scripts/build-portable.sh and pass --tarmac-binary (or set TARMAC_PORTABLE_BIN_DIR), or --allow-non-portable",
            );
        }
        Err(e @ tarmac_build::elf_versions::ElfError::NotPortable { .. }) => {
            eprintln!(
                "warning: {}",
                tarmac_types::error_report::text_with_hint(&e)
            );
        }
        Err(e) => return Err(anyhow!(e).context(format!("cannot check {}", binary.display()))),
    }

    // Stage the bundle's root next to where it is written.
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let stage = tempfile::Builder::new()
        .prefix(".tarmac-bundle-stage.")
        .tempdir_in(&args.out)
        .with_context(|| {
            format!(
                "cannot create a staging directory in {}",
                args.out.display()
            )
        })?;
    let root = stage.path();
    // A copy, not a link: its mode in the bundle is 0755 whatever the source's is.
    let bin = root.join(tarmac_bundle::BINARY);
    std::fs::copy(&binary, &bin)
        .with_context(|| format!("cannot copy {} into the bundle", binary.display()))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", bin.display()))?;
    }
    let bdir = root.join(BUNDLE_BUILD);
    let mut rels: Vec<String> = m.artifacts.iter().map(|a| a.path.clone()).collect();
    rels.push(manifest_rel.clone());
    rels.push(format!("{manifest_rel}{}", manifest::SIGNATURE_SUFFIX));
    rels.push("bootstrap.latest".into());
    for rel in &rels {
        place(&build.dir.join(rel), &bdir.join(rel))?;
    }
    std::fs::write(root.join(BUNDLE_KEY), public.to_pem())
        .with_context(|| format!("cannot write {}", root.join(BUNDLE_KEY).display()))?;
    // The distribution, read back the way the operator's tarmac will read it.
    let dist = tarmac_genconf::distribution::load_build_distribution(
        &bdir,
        Some(&root.join(BUNDLE_KEY)),
        &sink,
    )?
    .dist;
    std::fs::create_dir_all(root.join("docs"))?;
    std::fs::write(
        root.join("docs/config-reference.md"),
        tarmac_config::render_reference(dist.schema(), &dist.name()),
    )?;
    std::fs::write(
        root.join("README.txt"),
        readme(
            &bid,
            &dist.name(),
            &public.fingerprint(),
            &args.with_prereqs,
        ),
    )?;
    let mut suites: Vec<String> = args
        .with_prereqs
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    suites.sort();
    suites.dedup();
    if !suites.is_empty() {
        download_prereqs(
            &suites,
            args.mirror.clone(),
            &root.join(BUNDLE_PREREQS),
            &sink,
        )?;
    }
    let meta = Meta {
        bootstrap_id: bid.clone(),
        distribution: dist.name(),
        tarmac_version: env!("CARGO_PKG_VERSION").to_owned(),
        prereq_suites: suites.clone(),
    };
    let c = tarmac_bundle::create(root, &meta, &key, &args.out)?;
    drop(stage);
    let sums = c.path.with_extension("bundle.sha256");
    let file_name = c
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tarmac_fsx::write_atomic(
        &sums,
        format!("{}  {file_name}\n", c.sha256).as_bytes(),
        0o644,
    )
    .with_context(|| format!("cannot write {}", sums.display()))?;
    if args.output == OutputMode::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "file": c.path, "size": c.size, "sha256": c.sha256, "sha256_file": sums,
                "bootstrap_id": bid, "distribution": meta.distribution,
                "key_fingerprint": public.fingerprint(), "prereq_suites": suites,
                "files": c.index.files.len(),
            }))?
        );
    } else {
        println!(
            "Wrote {} ({:.1} MB, {} files)",
            c.path.display(),
            c.size as f64 / 1e6,
            c.index.files.len()
        );
        println!("  sha256      {} (also in {})", c.sha256, sums.display());
        println!("  signed by   {}", public.fingerprint());
        println!("  bootstrap   {bid}");
        if !suites.is_empty() {
            println!("  prereqs     {}", suites.join(", "));
        }
        println!(
            "Give operators the file and, through a channel they trust, the key fingerprint (or public key). At the site:"
        );
        println!(
            "  sh {file_name} extract --key-fingerprint {}",
            public.fingerprint()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Hard-link `src` to `dest` (making its directory), or copy it when linking fails.
fn place(src: &Path, dest: &Path) -> anyhow::Result<()> {
    if let Some(p) = dest.parent() {
        std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
    }
    if std::fs::hard_link(src, dest).is_err() {
        std::fs::copy(src, dest)
            .with_context(|| format!("cannot copy {} into the bundle", src.display()))?;
    }
    Ok(())
}

fn download_prereqs(
    suites: &[String],
    mirror: Option<String>,
    dest: &Path,
    sink: &tarmac_events::Sink,
) -> anyhow::Result<()> {
    let spec = tarmac_installer::offline::DownloadSpec {
        mirror,
        ..tarmac_installer::offline::DownloadSpec::new(
            &suites.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };
    let repo = tarmac_installer::offline::download(&spec, dest, sink)
        .context("cannot download the host prerequisites for the bundle")?;
    repo.verify()
        .context("the downloaded host prerequisites do not check out")?;
    Ok(())
}

/// README.txt at the bundle's root.
fn readme(bid: &str, dist: &str, fingerprint: &str, suites: &[String]) -> String {
    let root = tarmac_bundle::root_name(bid);
    let prereqs = if suites.is_empty() {
        "This bundle carries no host prerequisites: hosts install them from their own\nrepositories (`tarmac install-prereqs`), or have them already.\n".to_owned()
    } else {
        format!(
            "prereqs/ carries the host prerequisites for Debian {}: `install-prereqs --offline`\ninstalls them from here, and no host contacts a repository.\n",
            suites.join(", ")
        )
    };
    format!(
        "Tarmac bundle {root}
distribution {dist}, signed by {fingerprint}

  tarmac                  the portable tarmac (runs on any x86_64 Linux with glibc >= 2.17)
  build/                  the signed build: packages, bootstrap, manifest, distribution
  docs/config-reference.md  every configuration key
  signing-key.pub         the key this bundle was verified against when it was extracted
  bundle.json, SHA256SUMS what the bundle holds (sha256sum -c SHA256SUMS)

Next to a genconf/ directory holding config.yaml and ip-detect:

  ./{root}/tarmac validate-config
  ./{root}/tarmac genconf
  ./{root}/tarmac preflight
  ./{root}/tarmac deploy
  ./{root}/tarmac postflight

or ./{root}/tarmac web for the same in a browser.

{prereqs}"
    )
}
