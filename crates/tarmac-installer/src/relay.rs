//! The deploy's peer relay (`relay_fanout: K`): a K-ary tree over the stage's hosts, in
//! their order. The first K hosts pull from bootstrap_url; every other host waits for its
//! parent, then fetches from it (and its grandparent), falling back to bootstrap_url. A host
//! that has installed serves its verified archives (`tarmac-host relay`) until every host
//! below it is done, and no longer: the relay runs over the host's SSH session and ends with
//! it. Peers are caches, never authorities: every byte is checked against the pins install.sh
//! brought over SSH. The bootstrap node sends K copies instead of one per host.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::Duration;

use tarmac_events::{Event, Level};
use tarmac_ssh::{Exec, HostSession};
use tarmac_types::HostAddr;
use tarmac_types::shell::quote;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Where a host of the tree stands, as its children see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// Not yet installed (children wait).
    Pending,
    /// Serving its archives at this base URL.
    Serving(String),
    /// Failed, unreachable, has no relay, or done: children go elsewhere.
    Gone,
}

/// The tree's shape: host `i`'s parent and children, for `n` hosts and fan-out `k`.
/// Hosts `0..k` hang off the bootstrap node; the children of `i` are `k + i·k ..`.
pub fn parent(i: usize, k: usize) -> Option<usize> {
    (i >= k).then(|| (i - k) / k)
}

pub fn children(i: usize, k: usize, n: usize) -> Range<usize> {
    let start = (k + i * k).min(n);
    start..(start + k).min(n)
}

/// How many hosts are below each host of the tree.
pub fn descendants(k: usize, n: usize) -> Vec<usize> {
    let mut d = vec![0; n];
    for i in (0..n).rev() {
        if let Some(p) = parent(i, k) {
            d[p] += 1 + d[i];
        }
    }
    d
}

/// Levels of the tree (1 for `n <= k`).
pub fn depth(n: usize, k: usize) -> usize {
    let mut d = 0;
    let mut i = n.saturating_sub(1);
    loop {
        d += 1;
        match parent(i, k) {
            Some(p) => i = p,
            None => return d,
        }
    }
}

pub struct RelayTree {
    index: HashMap<HostAddr, usize>,
    fanout: usize,
    port: u16,
    peers: Vec<watch::Sender<Peer>>,
    /// Hosts below each host not yet done: a host relays until its whole subtree is done,
    /// since a child whose parent is gone falls back to the grandparent.
    pending: Vec<watch::Sender<usize>>,
}

impl RelayTree {
    pub fn new(hosts: &[HostAddr], fanout: usize, port: u16) -> RelayTree {
        let k = fanout.max(1);
        let n = hosts.len();
        RelayTree {
            index: hosts
                .iter()
                .enumerate()
                .map(|(i, h)| (h.clone(), i))
                .collect(),
            fanout: k,
            port,
            peers: (0..n).map(|_| watch::channel(Peer::Pending).0).collect(),
            pending: descendants(k, n)
                .into_iter()
                .map(|d| watch::channel(d).0)
                .collect(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn depth(&self) -> usize {
        depth(self.peers.len(), self.fanout)
    }

    fn parent_of(&self, host: &HostAddr) -> Option<usize> {
        parent(*self.index.get(host)?, self.fanout)
    }

    pub fn has_children(&self, host: &HostAddr) -> bool {
        self.index
            .get(host)
            .is_some_and(|&i| !children(i, self.fanout, self.peers.len()).is_empty())
    }

    /// The peers `host` should try first: the nearest two of its ancestors that serve,
    /// nearest first (its parent, then the grandparent, past any that are gone). Each
    /// ancestor is waited for until it serves or is gone, so a host whose parent failed early
    /// still gets the ancestor above it rather than bootstrap_url. Ancestors never wait for
    /// their descendants, so this ends. Empty for the first K hosts, and when every ancestor
    /// is gone.
    pub async fn sources(&self, host: &HostAddr) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = self.parent_of(host);
        while let Some(a) = at {
            if out.len() == 2 {
                break;
            }
            let mut rx = self.peers[a].subscribe();
            let state = rx
                .wait_for(|s| *s != Peer::Pending)
                .await
                .map(|s| s.clone())
                .unwrap_or(Peer::Gone);
            if let Peer::Serving(url) = state {
                out.push(url);
            }
            at = parent(a, self.fanout);
        }
        out
    }

    pub fn serving(&self, host: &HostAddr, url: String) {
        if let Some(&i) = self.index.get(host) {
            self.peers[i].send_replace(Peer::Serving(url));
        }
    }

    pub fn gone(&self, host: &HostAddr) {
        if let Some(&i) = self.index.get(host) {
            self.peers[i].send_replace(Peer::Gone);
        }
    }

    /// `host` is done, whatever its outcome (called for every host of the stage).
    pub fn finished(&self, host: &HostAddr) {
        self.gone(host);
        let mut at = self.parent_of(host);
        while let Some(p) = at {
            self.pending[p].send_modify(|n| *n = n.saturating_sub(1));
            at = parent(p, self.fanout);
        }
    }

    /// Until every host below `host` is done.
    pub async fn children_done(&self, host: &HostAddr) {
        if let Some(&i) = self.index.get(host) {
            let _ = self.pending[i].subscribe().wait_for(|n| *n == 0).await;
        }
    }
}

/// `tarmac-host relay` serving this host's archives, plus `files` (repository path, local
/// path), on `listen` for at most `ttl`.
pub fn relay_command(listen: SocketAddr, files: &[(String, String)], ttl: Duration) -> String {
    let mut cmd = format!(
        "exec {} relay --listen {} --for {}s",
        crate::plan::HOST_BIN,
        quote(&listen.to_string()),
        ttl.as_secs().max(1)
    );
    for (rel, path) in files {
        cmd.push_str(&format!(" --file {}", quote(&format!("{rel}={path}"))));
    }
    cmd
}

/// Succeeds once the relay at `url` answers (up to about 10 s).
pub fn ready_command(url: &str) -> String {
    format!(
        "for i in $(seq 100); do curl -fsS -o /dev/null --max-time 2 {}/healthz && exit 0; sleep 0.1; done; echo 'the relay did not answer' >&2; exit 1",
        quote(url)
    )
}

/// The repository path of the tarmac-host binary install.sh fetches
/// (`readonly HOST_BINARY_PATH=…`), if the script names one.
pub fn host_binary_path(install_script: &str) -> Option<String> {
    let v = install_script
        .lines()
        .find_map(|l| l.strip_prefix("readonly HOST_BINARY_PATH="))?
        .trim()
        .trim_matches('\'');
    let ok = !v.is_empty()
        && v.split('/').all(|c| !c.is_empty() && c != ".." && c != ".")
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
    ok.then(|| v.to_owned())
}

/// Serve this host's archives to its children until they are all done. Never fails the
/// host: a relay that cannot start is reported, and the children go elsewhere.
pub async fn serve_children(
    host: &HostSession,
    tree: &RelayTree,
    install_script: &str,
    ttl: Duration,
) {
    let addr = host.addr().clone();
    let warn = |message: String| {
        host.emit(Event::Notice {
            level: Level::Warn,
            message: format!("{addr}: {message}; its peers fetch elsewhere"),
        })
    };
    let ip = match host
        .check("relay address", Exec::new(crate::plan::DETECT_IP))
        .await
    {
        Ok(r) => match r.stdout.trim().parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                warn(format!(
                    "detect_ip printed `{}`, not an address: no relay",
                    r.stdout.trim()
                ));
                tree.gone(&addr);
                return;
            }
        },
        Err(e) => {
            warn(format!("no relay ({e})"));
            tree.gone(&addr);
            return;
        }
    };
    let listen = SocketAddr::new(ip, tree.port());
    let url = format!("http://{listen}");
    let files: Vec<(String, String)> = host_binary_path(install_script)
        .map(|rel| (rel, crate::plan::HOST_BIN.to_owned()))
        .into_iter()
        .collect();
    let until = CancellationToken::new();
    let relay = host.run_until(
        "relay",
        // Its own lifetime, not process_timeout: a root serves until its whole subtree is done.
        Exec::new(relay_command(listen, &files, ttl)).timeout(ttl + Duration::from_secs(60)),
        &until,
    );
    tokio::pin!(relay);
    let serve = async {
        host.check("relay ready", Exec::new(ready_command(&url)))
            .await?;
        tree.serving(&addr, url.clone());
        tree.children_done(&addr).await;
        Ok::<(), tarmac_ssh::StepError>(())
    };
    tokio::select! {
        r = &mut relay => {
            tree.gone(&addr);
            match r {
                Ok(res) => warn(format!("the relay on {url} ended early: {}", res.stderr_tail.join(" | "))),
                Err(e) => warn(format!("the relay on {url} failed: {e}")),
            }
        }
        r = serve => {
            tree.gone(&addr);
            if let Err(e) = r {
                warn(format!("the relay on {url} did not come up: {e}"));
            }
            until.cancel();
            let _ = relay.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_shape() {
        // k = 2 over 7 hosts: 0,1 from bootstrap; 2,3 under 0; 4,5 under 1; 6 under 2.
        let k = 2;
        let parents: Vec<Option<usize>> = (0..7).map(|i| parent(i, k)).collect();
        assert_eq!(
            parents,
            [None, None, Some(0), Some(0), Some(1), Some(1), Some(2)]
        );
        assert_eq!(children(0, k, 7), 2..4);
        assert_eq!(children(2, k, 7), 6..7);
        assert_eq!(children(3, k, 7), 7..7);
        for n in 1..200 {
            for k in 1..12 {
                for i in 0..n {
                    for c in children(i, k, n) {
                        assert_eq!(parent(c, k), Some(i), "n {n} k {k} i {i}");
                    }
                }
            }
        }
        assert_eq!(descendants(2, 7), [3, 2, 1, 0, 0, 0, 0]);
        assert_eq!(descendants(1, 4), [3, 2, 1, 0]);
        assert_eq!(depth(10, 10), 1);
        assert_eq!(depth(11, 10), 2);
        assert_eq!(depth(110, 10), 2);
        assert_eq!(depth(111, 10), 3);
        assert_eq!(depth(10_000, 10), 4);
        assert_eq!(depth(4, 1), 4);
    }

    #[test]
    fn commands() {
        let l: SocketAddr = "10.0.0.11:8089".parse().unwrap();
        assert_eq!(
            relay_command(
                l,
                &[(
                    "bootstrap/x.tarmac-host".into(),
                    "/opt/tarmac/tarmac-host".into()
                )],
                Duration::from_secs(600)
            ),
            "exec /opt/tarmac/tarmac-host relay --listen 10.0.0.11:8089 --for 600s --file bootstrap/x.tarmac-host=/opt/tarmac/tarmac-host"
        );
        assert_eq!(
            host_binary_path("x\nreadonly HOST_BINARY_PATH=bootstrap/ab.tarmac-host\n").as_deref(),
            Some("bootstrap/ab.tarmac-host")
        );
        assert_eq!(host_binary_path("readonly HOST_BINARY_PATH='../x'\n"), None);
        assert_eq!(host_binary_path("readonly HOST_BINARY_PATH='a;b'\n"), None);
    }

    fn h(i: u8) -> HostAddr {
        format!("10.0.0.{i}").parse().unwrap()
    }

    #[tokio::test]
    async fn children_wait_for_their_parent_and_skip_the_gone() {
        let hosts: Vec<HostAddr> = (1..=7).map(h).collect();
        let t = std::sync::Arc::new(RelayTree::new(&hosts, 2, 8089));
        // Roots have no peers.
        assert!(t.sources(&h(1)).await.is_empty());
        // 10.0.0.3's parent is 10.0.0.1: it waits until that one is resolved.
        let waiting = tokio::spawn({
            let t = t.clone();
            async move { t.sources(&h(3)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        t.serving(&h(1), "http://10.0.0.1:8089".into());
        assert_eq!(waiting.await.unwrap(), ["http://10.0.0.1:8089"]);
        // 10.0.0.7 under 10.0.0.3 (gone) under 10.0.0.1 (serving): the grandparent.
        t.gone(&h(3));
        assert_eq!(t.sources(&h(7)).await, ["http://10.0.0.1:8089"]);
        // Both serving: parent first.
        t.serving(&h(3), "http://10.0.0.3:8089".into());
        assert_eq!(
            t.sources(&h(7)).await,
            ["http://10.0.0.3:8089", "http://10.0.0.1:8089"]
        );
        // A host relays until each host below it is finished, whatever the outcome: 10.0.0.1
        // has 10.0.0.3, 10.0.0.4 and (under 10.0.0.3) 10.0.0.7.
        let done = tokio::spawn({
            let t = t.clone();
            async move { t.children_done(&h(1)).await }
        });
        t.finished(&h(3));
        t.finished(&h(4));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !done.is_finished(),
            "10.0.0.7 may still fall back to 10.0.0.1"
        );
        t.finished(&h(7));
        done.await.unwrap();
        assert!(t.has_children(&h(3)) && !t.has_children(&h(7)));
    }
}
