//! A simulated fleet for measuring the controller (`bench/controller-scale.sh`): one russh
//! server on `LISTEN` (default 0.0.0.0:2222) that answers as every host, so a config.yaml
//! listing 10,000 loopback addresses (127.x.y.z, all routed to `lo`) gives 10,000 real SSH
//! connections (key exchange, public-key login, channels) with nothing behind them.
//!
//! Every command exits 0 with no output (what the installer's preflight and `tarmac exec
//! true` accept), except the engine's upload script, which is answered after the client
//! closed its stdin (the file's bytes are read and dropped). Prints `ready` when it listens,
//! then counts connections and commands on stderr every 10 s until killed.
//!
//! Logins are accepted from loopback peers only.
//!
//! Usage: `sim_fleet HOST_KEY_FILE [LISTEN]` (an OpenSSH private key, e.g. from
//! `ssh-keygen -t ed25519 -N '' -f key`). Any client key is accepted: this is a
//! simulator for benchmarks, never a server for real use.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use russh::server::{Auth, Msg, Server as _, Session};
use russh::{Channel, ChannelId};

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    commands: AtomicU64,
    upload_bytes: AtomicU64,
}

#[derive(Clone)]
struct Sim {
    counters: Arc<Counters>,
    /// Channels waiting for the client's EOF (uploads).
    waiting: HashSet<ChannelId>,
    /// The client connected from loopback (anything else is refused).
    loopback: bool,
}

impl russh::server::Server for Sim {
    type Handler = Self;
    fn new_client(&mut self, peer: Option<std::net::SocketAddr>) -> Self {
        self.counters.connections.fetch_add(1, Ordering::Relaxed);
        Sim {
            counters: self.counters.clone(),
            waiting: HashSet::new(),
            loopback: peer.is_some_and(|p| p.ip().is_loopback()),
        }
    }
}

fn finish(channel: ChannelId, session: &mut Session) -> Result<(), russh::Error> {
    session.exit_status_request(channel, 0)?;
    session.eof(channel)?;
    session.close(channel)
}

impl russh::server::Handler for Sim {
    type Error = russh::Error;

    async fn auth_publickey(
        &mut self,
        _user: &str,
        _key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.loopback {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.counters.commands.fetch_add(1, Ordering::Relaxed);
        session.channel_success(channel)?;
        // The engine's upload script (tarmac_ssh::script::upload) streams the file on stdin.
        if data.windows(9).any(|w| w == b"cat >\"$t\"") {
            self.waiting.insert(channel);
            return Ok(());
        }
        finish(channel, session)
    }

    async fn data(
        &mut self,
        _channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.counters
            .upload_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.waiting.remove(&channel) {
            finish(channel, session)?;
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let key_file = args
        .next()
        .ok_or("usage: sim_fleet HOST_KEY_FILE [LISTEN]")?;
    let listen = args.next().unwrap_or_else(|| "0.0.0.0:2222".into());
    let key =
        russh::keys::load_secret_key(&key_file, None).map_err(|e| format!("{key_file}: {e}"))?;
    let config = Arc::new(russh::server::Config {
        keys: vec![key],
        auth_rejection_time: Duration::from_millis(10),
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: Some(Duration::from_secs(3600)),
        ..Default::default()
    });
    let counters = Arc::new(Counters::default());
    let c = counters.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            eprintln!(
                "sim_fleet: {} connections, {} commands, {} upload bytes",
                c.connections.load(Ordering::Relaxed),
                c.commands.load(Ordering::Relaxed),
                c.upload_bytes.load(Ordering::Relaxed)
            );
        }
    });
    let socket = tokio::net::TcpListener::bind(&listen).await?;
    println!("ready {listen}");
    let mut sim = Sim {
        counters,
        waiting: HashSet::new(),
        loopback: false,
    };
    sim.run_on_socket(config, &socket).await?;
    Ok(())
}
