//! How TCP connections to hosts are opened. Lab hosts live in network namespaces reachable only
//! from the lab's control namespace, so the connector is pluggable: [`Connector::Direct`] uses
//! the caller's namespace, [`Connector::Netns`] creates sockets inside `/run/netns/<name>`.
//!
//! A socket belongs to the namespace it was created in, whatever thread later connects it. The
//! netns connector therefore keeps one helper thread that has `setns`'d into the namespace and
//! only creates sockets (and resolves names); the connect itself runs on tokio as usual.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};

use futures::future::BoxFuture;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;

/// Opens TCP connections.
pub trait Connect: Send + Sync {
    /// Connect to `host:port` (host is an IP literal or a name). Deadlines are the caller's.
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<TcpStream>>;
}

/// The connector of a fleet.
#[derive(Clone, Default)]
pub enum Connector {
    /// Sockets in the caller's network namespace.
    #[default]
    Direct,
    /// Sockets in the named network namespace (`/run/netns/<name>`, or an absolute path).
    Netns(Arc<NetnsConnector>),
    /// Anything else.
    Custom(Arc<dyn Connect>),
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Connector::Direct => f.write_str("Direct"),
            Connector::Netns(n) => write!(f, "Netns({})", n.path.display()),
            Connector::Custom(_) => f.write_str("Custom"),
        }
    }
}

impl Connector {
    /// A connector for the namespace `name` (`/run/netns/<name>`) or an absolute path.
    pub fn netns(name: &str) -> io::Result<Connector> {
        Ok(Connector::Netns(Arc::new(NetnsConnector::new(name)?)))
    }

    pub async fn connect(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        match self {
            Connector::Direct => {
                let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
                    Ok(ip) => vec![SocketAddr::new(ip, port)],
                    Err(_) => tokio::net::lookup_host((host, port)).await?.collect(),
                };
                connect_any(addrs, |addr| async move {
                    let sock = if addr.is_ipv4() {
                        TcpSocket::new_v4()?
                    } else {
                        TcpSocket::new_v6()?
                    };
                    sock.connect(addr).await
                })
                .await
            }
            Connector::Netns(n) => n.connect(host, port).await,
            Connector::Custom(c) => c.connect(host, port).await,
        }
    }
}

async fn connect_any<F, Fut>(addrs: Vec<SocketAddr>, mut f: F) -> io::Result<TcpStream>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: Future<Output = io::Result<TcpStream>>,
{
    let mut last = io::Error::new(io::ErrorKind::NotFound, "name resolved to no addresses");
    for addr in addrs {
        match f(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

enum Request {
    Socket {
        ipv6: bool,
        reply: oneshot::Sender<io::Result<OwnedFd>>,
    },
    Resolve {
        host: String,
        port: u16,
        reply: oneshot::Sender<io::Result<Vec<SocketAddr>>>,
    },
}

/// Creates sockets inside a network namespace from a helper thread.
pub struct NetnsConnector {
    path: PathBuf,
    tx: Mutex<mpsc::Sender<Request>>,
}

impl NetnsConnector {
    pub fn new(name: &str) -> io::Result<Self> {
        let path = if name.starts_with('/') {
            PathBuf::from(name)
        } else {
            PathBuf::from("/run/netns").join(name)
        };
        let ns = std::fs::File::open(&path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open network namespace {}: {e}", path.display()),
            )
        })?;
        let (tx, rx) = mpsc::channel::<Request>();
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
        std::thread::Builder::new()
            .name("tarmac-netns".into())
            .spawn(move || {
                let entered = rustix::thread::move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&ns),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(io::Error::from);
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                if !ok {
                    return;
                }
                while let Ok(req) = rx.recv() {
                    match req {
                        Request::Socket { ipv6, reply } => {
                            let fam = if ipv6 {
                                rustix::net::AddressFamily::INET6
                            } else {
                                rustix::net::AddressFamily::INET
                            };
                            let r = rustix::net::socket_with(
                                fam,
                                rustix::net::SocketType::STREAM,
                                rustix::net::SocketFlags::CLOEXEC
                                    | rustix::net::SocketFlags::NONBLOCK,
                                None,
                            )
                            .map_err(io::Error::from);
                            let _ = reply.send(r);
                        }
                        Request::Resolve { host, port, reply } => {
                            let r = (host.as_str(), port).to_socket_addrs().map(|a| a.collect());
                            let _ = reply.send(r);
                        }
                    }
                }
            })?;
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("netns helper thread died"))?
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot enter network namespace {}: {e}", path.display()),
                )
            })?;
        Ok(Self {
            path,
            tx: Mutex::new(tx),
        })
    }

    fn send(&self, req: Request) -> io::Result<()> {
        self.tx
            .lock()
            .map_err(|_| io::Error::other("netns connector poisoned"))?
            .send(req)
            .map_err(|_| io::Error::other("netns helper thread is gone"))
    }

    async fn socket(&self, ipv6: bool) -> io::Result<TcpSocket> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Socket { ipv6, reply })?;
        let fd = rx
            .await
            .map_err(|_| io::Error::other("netns helper thread is gone"))??;
        let std = std::net::TcpStream::from(fd);
        Ok(TcpSocket::from_std_stream(std))
    }

    pub async fn connect(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let addrs = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                let (reply, rx) = oneshot::channel();
                self.send(Request::Resolve {
                    host: host.to_owned(),
                    port,
                    reply,
                })?;
                rx.await
                    .map_err(|_| io::Error::other("netns helper thread is gone"))??
            }
        };
        connect_any(addrs, |addr| async move {
            self.socket(addr.is_ipv6()).await?.connect(addr).await
        })
        .await
    }
}
