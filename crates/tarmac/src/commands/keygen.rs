//! `tarmac keygen`: an ed25519 key pair for signing build manifests.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory for the key files.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Base name: writes <name>.key (secret, mode 0600) and <name>.pub.
    #[arg(long, default_value = "tarmac-signing")]
    pub name: String,
    /// Replace existing key files.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    // A new key directory is private (0700); an existing one is left as it is (the secret
    // key itself is 0600 from its first byte).
    if !args.dir.is_dir() {
        tarmac_fsx::create_private_dir(&args.dir)
            .with_context(|| format!("cannot create {}", args.dir.display()))?;
    }
    let secret = args.dir.join(format!("{}.key", args.name));
    let public = args.dir.join(format!("{}.pub", args.name));
    let key = tarmac_pkg::manifest::keygen(&secret, &public, args.force)?;
    println!("key id      {}", key.key_id());
    println!(
        "secret key  {} (keep it private: tarmac build --sign-key {})",
        secret.display(),
        secret.display()
    );
    println!(
        "public key  {} (give it to hosts to verify the manifest)",
        public.display()
    );
    Ok(ExitCode::SUCCESS)
}
