//! `tarmac web` (also `tarmac --web`): the web installer. Serves the pages and the JSON API
//! on 127.0.0.1:9000 by default and prints a one-time login URL. The GUI runs the same
//! installer stages as the CLI, under the same run lock.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use tarmac_web::{App, Listener, WebOptions};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct WebArgs {
    /// Address to listen on. Anything but loopback also needs --allow-remote.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Allow listening on a non-loopback address (anyone who can reach it and has the login
    /// URL can install); needs --tls-cert/--tls-key, or --insecure-http.
    #[arg(long)]
    pub allow_remote: bool,
    /// With --allow-remote: serve plain HTTP without TLS (the login URL and the session
    /// cookie cross the network in clear text).
    #[arg(long, requires = "allow_remote")]
    pub insecure_http: bool,
    /// Another host name browsers may use to reach the server (the `Host` header is checked:
    /// the bound address, and localhost/127.0.0.1/[::1] for loopback, are always allowed).
    /// Repeatable.
    #[arg(long, value_name = "NAME")]
    pub allowed_host: Vec<String>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// config.yaml, ip-detect, ssh_key, serve/ and state/ (the directory is created if missing),
    /// the distribution and the build genconf uses.
    #[command(flatten)]
    pub inputs: super::genconf::GenconfInputs,
}

pub fn run(args: WebArgs) -> anyhow::Result<ExitCode> {
    let warnings = tarmac_web::listen_policy(
        &args.listen,
        args.allow_remote,
        args.tls_cert.is_some(),
        args.insecure_http,
    )?;
    let loaded = args.inputs.source.load(&crate::source::notice_sink())?;
    let build = match &loaded.build {
        Some(b) => b.clone(),
        None => args.inputs.source.build()?,
    };
    let dist = loaded.dist;
    let genconf_dir = std::path::absolute(&args.inputs.genconf_dir)?;
    std::fs::create_dir_all(&genconf_dir)
        .with_context(|| format!("cannot create {}", genconf_dir.display()))?;
    let tls = args.tls_cert.as_deref().zip(args.tls_key.as_deref());
    let listener = Listener::bind(args.listen, tls)?;
    let local = listener.local_addr()?;
    let allowed_hosts = tarmac_web::HostAllowlist::new(local, &args.allowed_host)?;
    let opts = WebOptions {
        genconf_dir: genconf_dir.clone(),
        dist,
        build_dir: std::path::absolute(&build.dir)?,
        public_key: loaded
            .public_key
            .as_deref()
            .map(std::path::absolute)
            .transpose()?,
        prereqs: tarmac_installer::prereqs::Prereqs::standard(),
        tls: listener.is_tls(),
        event_buffer: 20_000,
        allowed_hosts,
        auth_limits: tarmac_web::AuthLimits::default(),
    };
    let app = App::new(opts);
    let scheme = if listener.is_tls() { "https" } else { "http" };
    let shown = if local.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), local.port())
    } else {
        local
    };
    let url = move |token: &str| format!("{scheme}://{shown}/login?token={token}");
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "Tarmac web installer for {} (pid {})",
        genconf_dir.display(),
        std::process::id()
    );
    let ttl_min = app.auth.limits.login_token_ttl.as_secs() / 60;
    println!(
        "Open this URL in a browser (it works once, within {ttl_min} minutes; `kill -USR1 {}` prints a new one):",
        std::process::id()
    );
    println!("  {}", url(&app.auth.new_login_token()));
    use std::io::Write as _;
    std::io::stdout().flush()?;

    let rt = tokio::runtime::Runtime::new()?;
    let stop = CancellationToken::new();
    let _ = tarmac_ssh::raise_nofile_limit();
    rt.block_on(async {
        let app2 = app.clone();
        let stop2 = stop.clone();
        tokio::spawn(async move {
            let mut usr1 =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
                {
                    Ok(s) => s,
                    Err(_) => return,
                };
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            loop {
                tokio::select! {
                    _ = usr1.recv() => {
                        println!(
                            "New login URL (it works once, within {ttl_min} minutes):\n  {}",
                            url(&app2.auth.new_login_token())
                        );
                        let _ = std::io::stdout().flush();
                    }
                    _ = tokio::signal::ctrl_c() => break,
                    _ = term.recv() => break,
                }
            }
            if app2.runs.cancel() {
                eprintln!("\nstopping: cancelling the run in progress…");
                for _ in 0..300 {
                    if !app2.runs.in_progress() {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
            stop2.cancel();
        });
        listener.serve(app, stop).await
    })?;
    Ok(ExitCode::SUCCESS)
}
