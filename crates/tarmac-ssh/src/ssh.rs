//! `SshHost`: one authenticated russh connection per host, a channel per process.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use russh::client::{self, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::{
    Algorithm, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate,
};
use russh::{ChannelMsg, Disconnect, Preferred, Sig};
use tarmac_events::{Event, Level, Sink};
use tarmac_types::HostAddr;
use tokio::sync::Mutex;

use crate::error::{ConnectError, HostKeyError, KeyError};
use crate::host::{ExitStatus, Host, ProcControl, ProcEvent, Process, TransportError};
use crate::known_hosts::{self, CertCheck, Check, HostKeyPolicy, KnownHosts};
use crate::options::{PassphraseFn, SshOptions};

/// Host keys: the known_hosts contents, the policy, and where new keys are recorded.
pub struct HostKeyVerifier {
    policy: HostKeyPolicy,
    known: RwLock<KnownHosts>,
    record_to: Option<PathBuf>,
    sink: Sink,
    write_lock: Mutex<()>,
}

impl HostKeyVerifier {
    pub fn load(opts: &SshOptions, sink: Sink) -> Result<Self, KeyError> {
        let mut known = KnownHosts::new();
        for p in &opts.known_hosts {
            known.add_file(p).map_err(|source| KeyError::KnownHosts {
                path: p.clone(),
                source,
            })?;
        }
        for s in known.skipped() {
            sink.emit(Event::Notice {
                level: Level::Warn,
                message: format!("known_hosts {}: line skipped: {}", s.source, s.reason),
            });
        }
        if opts.host_key_policy == HostKeyPolicy::Off {
            sink.emit(Event::Notice {
                level: Level::Warn,
                message: "HOST KEY CHECKING IS OFF: any machine answering at a host's address is \
                          trusted, so a man in the middle would go unnoticed. Use \
                          ssh_host_key_policy: accept-new or strict outside throwaway labs."
                    .into(),
            });
        }
        Ok(Self {
            policy: opts.host_key_policy,
            known: RwLock::new(known),
            record_to: opts.known_hosts.first().cloned(),
            sink,
            write_lock: Mutex::new(()),
        })
    }

    fn known(&self) -> std::sync::RwLockReadGuard<'_, KnownHosts> {
        self.known.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Algorithms to offer for `host:port`: known key types first, certificates when a CA is trusted.
    pub fn preferred(&self, host: &str, port: u16) -> Preferred {
        let known = self.known();
        let mut pref = Preferred::default();
        let first = known.known_algorithms(host, port);
        if !first.is_empty() {
            let mut keys: Vec<Algorithm> = first.clone();
            for a in Preferred::DEFAULT.key.iter() {
                if !keys.contains(a) {
                    keys.push(a.clone());
                }
            }
            // RSA keys are stored as ssh-rsa but negotiated as rsa-sha2-*: keep those first.
            if first.iter().any(|a| matches!(a, Algorithm::Rsa { .. })) {
                keys.sort_by_key(|a| match a {
                    Algorithm::Rsa { hash: Some(_) } => 0,
                    a if first.contains(a) => 1,
                    _ => 2,
                });
            }
            pref.key = Cow::Owned(keys);
        }
        if known.has_cert_authority(host, port) {
            pref.host_key_certificates = Cow::Owned(pref.key.to_vec());
        }
        if hardware_aes() {
            // With AES instructions AES-GCM costs both ends far less CPU than
            // chacha20-poly1305 (bulk uploads to many hosts are CPU-bound). Same set of
            // ciphers, only the order changes; the key exchange list is left alone.
            let mut ciphers = vec![russh::cipher::AES_256_GCM];
            ciphers.extend(
                pref.cipher
                    .iter()
                    .copied()
                    .filter(|c| *c != russh::cipher::AES_256_GCM),
            );
            pref.cipher = Cow::Owned(ciphers);
        }
        pref
    }

    async fn verify(
        &self,
        host: &str,
        port: u16,
        presented: &PublicKeyOrCertificate,
    ) -> Result<(), HostKeyError> {
        let display = if port == 22 {
            host.to_owned()
        } else {
            format!("{host}:{port}")
        };
        let key: PublicKey = match presented {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => {
                let now = tarmac_types::time::now_unix();
                let verdict = self.known().check_cert(host, port, cert, now);
                match verdict {
                    CertCheck::Trusted(_) => return Ok(()),
                    CertCheck::Revoked(src) => {
                        return Err(HostKeyError::Revoked {
                            host: display,
                            presented: format!("certificate {}", cert.key_id()),
                            source_line: src.to_string(),
                        });
                    }
                    CertCheck::Invalid(reason) if self.policy != HostKeyPolicy::Off => {
                        return Err(HostKeyError::Certificate {
                            host: display,
                            reason,
                        });
                    }
                    // Not signed by a CA we trust: judge the certified key as a plain key.
                    _ => PublicKey::new(cert.public_key().clone(), ""),
                }
            }
        };
        let fp = known_hosts::fingerprint(&key);
        let key_type = known_hosts::key_type(&key);
        let check = self.known().check(host, port, &key);
        match check {
            Check::Known(_) => Ok(()),
            Check::Revoked(src) => Err(HostKeyError::Revoked {
                host: display,
                presented: fp,
                source_line: src.to_string(),
            }),
            _ if self.policy == HostKeyPolicy::Off => {
                self.sink.emit(Event::Notice {
                    level: Level::Warn,
                    message: format!(
                        "{display}: host key {fp} ({key_type}) accepted WITHOUT checking"
                    ),
                });
                Ok(())
            }
            Check::Changed(known) => {
                let file = known
                    .first()
                    .map(|(_, _, s)| s.path.display().to_string())
                    .unwrap_or_default();
                Err(HostKeyError::Changed {
                    host: display,
                    known: known
                        .iter()
                        .map(|(fp, t, src)| format!("{fp} ({t}) at {src}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    presented: fp,
                    key_type,
                    name: known_hosts::lookup_name(host, port),
                    file,
                })
            }
            Check::Unknown => match (&self.record_to, self.policy) {
                (Some(path), HostKeyPolicy::AcceptNew) => {
                    let name = known_hosts::lookup_name(host, port);
                    let _guard = self.write_lock.lock().await;
                    let (path2, name2, key2) = (path.clone(), name.clone(), key.clone());
                    let line = tokio::task::spawn_blocking(move || {
                        known_hosts::append_entry(&path2, &name2, &key2)
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
                    .map_err(|message| HostKeyError::Record {
                        host: display.clone(),
                        path: path.clone(),
                        message,
                    })?;
                    let source = known_hosts::Source {
                        path: path.clone(),
                        line,
                    };
                    self.known
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(source.clone(), &name, key);
                    self.sink.emit(Event::Notice {
                        level: Level::Info,
                        message: format!(
                            "{display}: new host key {fp} ({key_type}) recorded at {source}"
                        ),
                    });
                    Ok(())
                }
                _ => Err(HostKeyError::Unknown {
                    host: display,
                    hostname: host.to_owned(),
                    port,
                    presented: fp,
                    key_type,
                    file: self
                        .record_to
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "~/.ssh/known_hosts".into()),
                }),
            },
        }
    }
}

fn hardware_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The russh client handler: checks the host key.
pub(crate) struct ClientHandler {
    host: String,
    port: u16,
    verifier: Arc<HostKeyVerifier>,
}

#[derive(Debug)]
pub(crate) enum HandlerError {
    Ssh(russh::Error),
    HostKey(HostKeyError),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Ssh(e)
    }
}

impl client::Handler for ClientHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        self.verifier
            .verify(&self.host, self.port, key)
            .await
            .map_err(HandlerError::HostKey)?;
        Ok(true)
    }
}

/// Key material for logging in, loaded once per fleet.
pub struct Credentials {
    keys: Vec<(PathBuf, Arc<PrivateKey>)>,
    agent: Option<PathBuf>,
}

impl Credentials {
    /// Load the key files. An encrypted key needs a passphrase from `opts.passphrase`; without
    /// one it is skipped when an agent is available, else it is an error naming the file.
    pub fn load(opts: &SshOptions, sink: &Sink) -> Result<Self, KeyError> {
        let agent = if opts.use_agent {
            opts.agent_socket.clone().or_else(|| {
                std::env::var_os("SSH_AUTH_SOCK")
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
            })
        } else {
            None
        };
        let mut keys = Vec::new();
        for path in &opts.identity_files {
            match load_key(path, opts.passphrase.as_ref()) {
                Ok(k) => keys.push((path.clone(), Arc::new(k))),
                Err(KeyError::Encrypted { path }) if agent.is_some() => sink.emit(Event::Notice {
                    level: Level::Warn,
                    message: format!(
                        "SSH key {} is encrypted and no passphrase was given; using ssh-agent instead",
                        path.display()
                    ),
                }),
                Err(e) => return Err(e),
            }
        }
        if keys.is_empty() && agent.is_none() {
            return Err(KeyError::NoMethod);
        }
        Ok(Self { keys, agent })
    }
}

pub(crate) fn load_key(
    path: &PathBuf,
    passphrase: Option<&PassphraseFn>,
) -> Result<PrivateKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|e| KeyError::Unreadable {
        path: path.clone(),
        message: e.to_string(),
    })?;
    match russh::keys::decode_secret_key(&text, None) {
        Ok(k) => Ok(k),
        Err(russh::keys::Error::KeyIsEncrypted) => {
            let Some(pass) = passphrase.and_then(|f| f(path)) else {
                return Err(KeyError::Encrypted { path: path.clone() });
            };
            russh::keys::decode_secret_key(&text, Some(pass.expose()))
                .map_err(|_| KeyError::WrongPassphrase { path: path.clone() })
        }
        Err(e) => Err(KeyError::Unreadable {
            path: path.clone(),
            message: e.to_string(),
        }),
    }
}

/// One authenticated SSH connection.
pub struct SshHost {
    addr: HostAddr,
    user: String,
    handle: Handle<ClientHandler>,
    /// Keeps the jump connection this one runs through alive.
    _via: Option<Arc<SshHost>>,
}

/// How to reach the SSH port of a host: directly or through a jump connection.
pub(crate) enum Route<'a> {
    Direct,
    Via(&'a Arc<SshHost>),
}

impl SshHost {
    /// Connect, verify the host key and log in. No retries, no deadline (the caller's).
    pub(crate) async fn connect(
        addr: &HostAddr,
        user: &str,
        opts: &SshOptions,
        route: Route<'_>,
        verifier: &Arc<HostKeyVerifier>,
        creds: &Credentials,
    ) -> Result<SshHost, ConnectError> {
        let host_s = addr.to_string();
        let port = addr.port_or(opts.port);
        let config = Arc::new(client::Config {
            nodelay: true,
            keepalive_interval: opts.keepalive,
            keepalive_max: 3,
            preferred: verifier.preferred(addr.host(), port),
            ..Default::default()
        });
        let handler = ClientHandler {
            host: addr.host().to_owned(),
            port,
            verifier: verifier.clone(),
        };
        let map_handshake = |e: HandlerError| match e {
            HandlerError::HostKey(k) => ConnectError::HostKey(k),
            HandlerError::Ssh(source) => ConnectError::Handshake {
                host: host_s.clone(),
                source,
            },
        };
        let (handle, via) = match route {
            Route::Direct => {
                let stream = opts
                    .connector
                    .connect(addr.host(), port)
                    .await
                    .map_err(|source| ConnectError::Tcp {
                        host: host_s.clone(),
                        source,
                    })?;
                let _ = stream.set_nodelay(true);
                (
                    client::connect_stream(config, stream, handler)
                        .await
                        .map_err(map_handshake)?,
                    None,
                )
            }
            Route::Via(jump) => {
                let ch = jump
                    .handle
                    .channel_open_direct_tcpip(addr.host(), port as u32, "127.0.0.1", 0)
                    .await
                    .map_err(|e| ConnectError::Jump {
                        host: host_s.clone(),
                        jump: jump.addr.to_string(),
                        message: e.to_string(),
                    })?;
                let stream = ch.into_stream();
                (
                    client::connect_stream(config, stream, handler)
                        .await
                        .map_err(map_handshake)?,
                    Some(jump.clone()),
                )
            }
        };
        let mut handle = handle;
        authenticate(&mut handle, &host_s, user, creds).await?;
        Ok(SshHost {
            addr: addr.clone(),
            user: user.to_owned(),
            handle,
            _via: via,
        })
    }
}

async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    host: &str,
    user: &str,
    creds: &Credentials,
) -> Result<(), ConnectError> {
    let mut tried = Vec::new();
    let hs = |source: russh::Error| ConnectError::Handshake {
        host: host.to_owned(),
        source,
    };
    for (path, key) in &creds.keys {
        let hash = if matches!(key.algorithm(), Algorithm::Rsa { .. }) {
            handle
                .best_supported_rsa_hash()
                .await
                .map_err(hs)?
                .flatten()
        } else {
            None
        };
        let res = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key.clone(), hash))
            .await
            .map_err(hs)?;
        if res.success() {
            return Ok(());
        }
        tried.push(format!("key {}", path.display()));
    }
    if let Some(sock) = &creds.agent {
        match AgentClient::connect_uds(sock).await {
            Ok(mut agent) => {
                let ids = agent.request_identities().await.unwrap_or_default();
                if ids.is_empty() {
                    tried.push("ssh-agent (no identities)".into());
                }
                for id in ids {
                    let key = match &id {
                        russh::keys::agent::AgentIdentity::PublicKey { key, .. } => key.clone(),
                        russh::keys::agent::AgentIdentity::Certificate { .. } => continue,
                    };
                    let hash = if matches!(key.algorithm(), Algorithm::Rsa { .. }) {
                        handle
                            .best_supported_rsa_hash()
                            .await
                            .map_err(hs)?
                            .flatten()
                    } else {
                        None
                    };
                    let fp = known_hosts::fingerprint(&key);
                    match handle
                        .authenticate_publickey_with(user, key, hash, &mut agent)
                        .await
                    {
                        Ok(r) if r.success() => return Ok(()),
                        Ok(_) => tried.push(format!("agent key {fp}")),
                        Err(e) => tried.push(format!("agent key {fp} ({e:?})")),
                    }
                }
            }
            Err(e) => tried.push(format!("ssh-agent ({e})")),
        }
    }
    Err(ConnectError::Auth {
        host: host.to_owned(),
        user: user.to_owned(),
        tried: if tried.is_empty() {
            "nothing".into()
        } else {
            tried.join(", ")
        },
    })
}

struct SshControl {
    write: russh::ChannelWriteHalf<client::Msg>,
}

fn sig_of(name: &str) -> Sig {
    match name {
        "TERM" => Sig::TERM,
        "KILL" => Sig::KILL,
        "HUP" => Sig::HUP,
        "INT" => Sig::INT,
        "USR1" => Sig::USR1,
        other => Sig::Custom(other.to_owned()),
    }
}

fn sig_name(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT".into(),
        Sig::ALRM => "ALRM".into(),
        Sig::FPE => "FPE".into(),
        Sig::HUP => "HUP".into(),
        Sig::ILL => "ILL".into(),
        Sig::INT => "INT".into(),
        Sig::KILL => "KILL".into(),
        Sig::PIPE => "PIPE".into(),
        Sig::QUIT => "QUIT".into(),
        Sig::SEGV => "SEGV".into(),
        Sig::TERM => "TERM".into(),
        Sig::USR1 => "USR1".into(),
        Sig::Custom(s) => s.clone(),
    }
}

impl ProcControl for SshControl {
    fn signal<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ()> {
        async move {
            let _ = self.write.signal(sig_of(name)).await;
        }
        .boxed()
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        async move {
            let _ = self.write.close().await;
        }
        .boxed()
    }
}

impl Host for SshHost {
    fn addr(&self) -> &HostAddr {
        &self.addr
    }

    fn user(&self) -> &str {
        &self.user
    }

    fn spawn<'a>(
        &'a self,
        command_line: &'a str,
    ) -> BoxFuture<'a, Result<Process, TransportError>> {
        async move {
            let lost = self.handle.is_closed();
            let ch = self
                .handle
                .channel_open_session()
                .await
                .map_err(|e| TransportError {
                    message: format!("cannot open a channel: {e}"),
                    connection_lost: lost || self.handle.is_closed(),
                })?;
            ch.exec(true, command_line)
                .await
                .map_err(|e| TransportError {
                    message: format!("cannot start the command: {e}"),
                    connection_lost: self.handle.is_closed(),
                })?;
            let (read, write) = ch.split();
            let stdin = Box::pin(write.make_writer());
            let events = futures::stream::unfold(read, |mut read| async move {
                loop {
                    let ev = match read.wait().await? {
                        ChannelMsg::Data { data } => ProcEvent::Stdout(data),
                        ChannelMsg::ExtendedData { data, ext: 1 } => ProcEvent::Stderr(data),
                        ChannelMsg::ExitStatus { exit_status } => ProcEvent::Exit(ExitStatus {
                            code: Some(exit_status),
                            signal: None,
                        }),
                        ChannelMsg::ExitSignal { signal_name, .. } => ProcEvent::Exit(ExitStatus {
                            code: None,
                            signal: Some(sig_name(&signal_name)),
                        }),
                        ChannelMsg::Failure => ProcEvent::Refused,
                        ChannelMsg::Close => return None,
                        _ => continue,
                    };
                    return Some((ev, read));
                }
            })
            .boxed();
            Ok(Process {
                stdin,
                events,
                control: Box::new(SshControl { write }),
            })
        }
        .boxed()
    }

    fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                self.handle.disconnect(Disconnect::ByApplication, "", "en"),
            )
            .await;
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name)
    }

    fn pass(p: &'static str) -> PassphraseFn {
        Arc::new(move |_| Some(crate::Secret::new(p)))
    }

    #[test]
    fn key_files() {
        assert!(matches!(
            load_key(&data("id_rsa"), None).unwrap().algorithm(),
            Algorithm::Rsa { .. }
        ));
        assert!(matches!(
            load_key(&data("id_ecdsa"), None).unwrap().algorithm(),
            Algorithm::Ecdsa { .. }
        ));
        let p = data("id_ed25519_encrypted");
        let e = load_key(&p, None).unwrap_err();
        assert_eq!(
            tarmac_types::error_report::text_with_hint(&e),
            format!(
                "SSH key {0} is encrypted and no passphrase was given\nhint: load it into ssh-agent \
                 (`ssh-add {0}`), or give the passphrase in the environment variable TARMAC_SSH_PASSPHRASE",
                p.display()
            )
        );
        let none: PassphraseFn = Arc::new(|_| None);
        assert!(matches!(
            load_key(&p, Some(&none)),
            Err(KeyError::Encrypted { .. })
        ));
        assert_eq!(
            load_key(&p, Some(&pass("wrong"))).unwrap_err().to_string(),
            format!("wrong passphrase for SSH key {}", p.display())
        );
        assert_eq!(
            load_key(&p, Some(&pass("pass phrase")))
                .unwrap()
                .algorithm(),
            Algorithm::Ed25519
        );
        assert!(matches!(
            load_key(&data("nope"), None),
            Err(KeyError::Unreadable { .. })
        ));
    }

    #[test]
    fn credentials_need_a_method() {
        let opts = SshOptions {
            use_agent: false,
            ..SshOptions::default()
        };
        let sink: Sink = Arc::new(tarmac_events::NullSink);
        assert!(matches!(
            Credentials::load(&opts, &sink),
            Err(KeyError::NoMethod)
        ));
        // An encrypted key without a passphrase is skipped (with a warning) when an agent can sign.
        let opts = SshOptions {
            identity_files: vec![data("id_ed25519_encrypted")],
            passphrase: None,
            agent_socket: Some("/nonexistent/agent.sock".into()),
            ..SshOptions::default()
        };
        let vs = tarmac_events::VecSink::new();
        let sink: Sink = Arc::new(vs.clone());
        let c = Credentials::load(&opts, &sink).unwrap();
        assert!(c.keys.is_empty());
        assert_eq!(vs.events().len(), 1);
        let opts = SshOptions {
            use_agent: false,
            ..opts
        };
        assert!(matches!(
            Credentials::load(&opts, &sink),
            Err(KeyError::Encrypted { .. })
        ));
    }
}
