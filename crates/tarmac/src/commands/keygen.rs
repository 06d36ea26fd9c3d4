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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_key_directory_is_private_and_the_secret_key_0600() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("keys/signing");
        run(KeygenArgs {
            dir: dir.clone(),
            name: "k".into(),
            force: false,
        })
        .unwrap();
        assert_eq!(mode(&d.path().join("keys")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("k.key")), 0o600);
        assert_eq!(mode(&dir.join("k.pub")), 0o644);
        // An existing directory is used as it is.
        let shared = d.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        run(KeygenArgs {
            dir: shared.clone(),
            name: "k".into(),
            force: false,
        })
        .unwrap();
        assert_eq!(mode(&shared), 0o755);
        assert_eq!(mode(&shared.join("k.key")), 0o600);
    }
}
