//! `tarmac serve`: serve `genconf/serve/` over HTTP, or HTTPS for an `https://` bootstrap_url
//! (with genconf's per-cluster certificate in `genconf/tls/` or the operator's
//! `bootstrap_tls_cert`), so hosts can pull by themselves. Self-install runs the pinned
//! one-liner `tarmac genconf` prints (download, check the sha256, run).
#![allow(clippy::print_stderr)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use tarmac_installer::serve::{ArtifactServer, load_tls};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The genconf directory (its `serve/` subdirectory is served).
    #[arg(long, alias = "genconf", default_value = "genconf")]
    pub genconf_dir: PathBuf,
    /// For distribution authors: validate against this source tree instead of the
    /// distribution genconf wrote into serve/.
    #[arg(long, value_name = "DIR", env = "TARMAC_DIST")]
    pub dist: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0 on bootstrap_url's port].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

/// `0.0.0.0:<port of url>` (80/443 by scheme, 8080 for a file:// URL).
fn default_listen(url: &str) -> SocketAddr {
    let port = url::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .and_then(|u| u.port_or_known_default())
        .unwrap_or(8080);
    SocketAddr::from(([0, 0, 0, 0], port))
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let dist = crate::source::load_for_stages(
        args.dist.as_deref(),
        &args.genconf_dir,
        &crate::source::notice_sink(),
    )?;
    let cfg = match tarmac_genconf::validate(&dist, &args.genconf_dir) {
        Ok(c) => c,
        Err(report) => {
            eprint!("{}", report.render());
            eprintln!("error: the configuration is invalid; nothing is served");
            return Ok(ExitCode::from(1));
        }
    };
    let dir = args.genconf_dir.join("serve");
    let tls = match cfg.bootstrap_tls(&args.genconf_dir) {
        Some(t) => Some((load_tls(&t.cert, &t.key)?, t)),
        None => None,
    };
    let listen = args
        .listen
        .unwrap_or_else(|| default_listen(cfg.bootstrap_url()));
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let server = ArtifactServer::bind(&dir, listen, tls.as_ref().map(|(c, _)| c.clone()))?;
        eprintln!(
            "serving {} on {}://{} (Ctrl-C to stop)",
            dir.display(),
            server.scheme(),
            server.addr
        );
        if let Some((_, t)) = &tls {
            eprintln!(
                "certificate {} for {}; hosts trust only the CA {}",
                t.cert.display(),
                t.host,
                t.ca.display()
            );
        }
        tokio::select! {
            r = server.wait() => r?,
            _ = tokio::signal::ctrl_c() => {}
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_on_bootstrap_urls_port() {
        assert_eq!(
            default_listen("https://10.0.0.254:8443"),
            "0.0.0.0:8443".parse().unwrap()
        );
        assert_eq!(
            default_listen("https://boot.example"),
            "0.0.0.0:443".parse().unwrap()
        );
        assert_eq!(
            default_listen("http://10.0.0.254:8080"),
            "0.0.0.0:8080".parse().unwrap()
        );
        assert_eq!(
            default_listen("file:///srv/serve"),
            "0.0.0.0:8080".parse().unwrap()
        );
    }
}
