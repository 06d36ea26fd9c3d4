//! `tarmac serve`: serve `genconf/serve/` over HTTP so hosts can pull by themselves
//! ("advanced install": `curl http://BOOTSTRAP/install.sh | sudo bash -s -- agent`).
#![allow(clippy::print_stderr)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use tarmac_installer::serve::ArtifactServer;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The genconf directory (its `serve/` subdirectory is served).
    #[arg(long, alias = "genconf", default_value = "genconf")]
    pub genconf_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let dir = args.genconf_dir.join("serve");
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let server = ArtifactServer::bind(&dir, args.listen)?;
        eprintln!(
            "serving {} on http://{} (Ctrl-C to stop)",
            dir.display(),
            server.addr
        );
        tokio::select! {
            r = server.wait() => r?,
            _ = tokio::signal::ctrl_c() => {}
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
