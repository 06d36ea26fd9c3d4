//! `tarmac-host relay`: serve this host's verified package archives to peers while a deploy
//! runs, so that they need not all pull from the bootstrap node.
//!
//! Only what the host itself verified is served: the archive each stored package was
//! extracted from (`<store>/<id>/.tarmac/archive.tar.zst`, under the repository path
//! `packages/<name>/<id>.tar.zst`) and the files named with `--file`. Peers check every byte
//! against the sha256 install.sh pinned, so a relay is a cache, never an authority. Nothing is
//! read from the request but its path, which must name one of those files exactly.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use tarmac_activate::Host;
use tarmac_pkg::Compression;
use tarmac_pkg::store::Store;
use tarmac_types::PackageId;

/// Requests served at once; more get 503 and try their next source.
const MAX_ACTIVE: usize = 64;

/// `REL=PATH` pairs of `--file`: repository-relative paths served from local files.
pub fn parse_files(specs: &[String]) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let (rel, path) = spec
            .split_once('=')
            .with_context(|| format!("--file {spec}: expected REL=PATH"))?;
        let rel = rel.trim_start_matches('/');
        if rel.is_empty()
            || rel
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
            || rel.chars().any(|c| c.is_control())
        {
            bail!("--file {spec}: `{rel}` is not a plain relative path");
        }
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            bail!("--file {spec}: the local path must be absolute");
        }
        out.insert(rel.to_owned(), path);
    }
    Ok(out)
}

/// The local file a request path names, if it is one this relay serves.
pub fn resolve(store: &Store, files: &BTreeMap<String, PathBuf>, url: &str) -> Option<PathBuf> {
    let path = url.split(['?', '#']).next()?.trim_start_matches('/');
    if let Some(p) = files.get(path) {
        return Some(p.clone());
    }
    let rest = path.strip_prefix("packages/")?;
    let (name, file) = rest.split_once('/')?;
    let (stem, c) = Compression::split_file_name(file)?;
    let id = PackageId::parse(stem).ok()?;
    if id.name().as_str() != name {
        return None;
    }
    match store.archive(&id) {
        Some((p, have)) if have == c => Some(p),
        _ => None,
    }
}

pub fn relay(host: &Host, listen: SocketAddr, files: &[String], ttl: Duration) -> Result<()> {
    let files = Arc::new(parse_files(files)?);
    let server = tiny_http::Server::http(listen).map_err(|e| {
        tarmac_types::error_report::Hinted::new(
            format!("cannot listen on {listen}: {e}"),
            "another relay may still hold the port; pick another relay_port in config.yaml",
        )
    })?;
    println!("relay listening on http://{listen} for {}s", ttl.as_secs());
    std::io::stdout().flush().ok();
    let store = Arc::new(host.store.clone());
    let deadline = Instant::now() + ttl;
    let active = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    while Instant::now() < deadline {
        let Some(req) = server
            .recv_timeout(Duration::from_millis(250))
            .context("relay: accepting a request")?
        else {
            continue;
        };
        if active.load(Ordering::SeqCst) >= MAX_ACTIVE {
            let _ = req.respond(tiny_http::Response::empty(503));
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (store, files, active, served, bytes) = (
            store.clone(),
            files.clone(),
            active.clone(),
            served.clone(),
            bytes.clone(),
        );
        std::thread::spawn(move || {
            serve_one(req, &store, &files, &served, &bytes);
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
    println!(
        "relay done: {} files, {} bytes served",
        served.load(Ordering::SeqCst),
        bytes.load(Ordering::SeqCst)
    );
    Ok(())
}

fn serve_one(
    req: tiny_http::Request,
    store: &Store,
    files: &BTreeMap<String, PathBuf>,
    served: &AtomicU64,
    bytes: &AtomicU64,
) {
    let get = matches!(
        req.method(),
        tiny_http::Method::Get | tiny_http::Method::Head
    );
    if req.url() == "/healthz" {
        let _ = req.respond(tiny_http::Response::from_string("ok\n"));
        return;
    }
    let found = get
        .then(|| resolve(store, files, req.url()))
        .flatten()
        .and_then(|p| std::fs::File::open(p).ok());
    match found {
        Some(f) => {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let what = req.url().to_owned();
            let peer = req
                .remote_addr()
                .map_or_else(|| "?".to_owned(), ToString::to_string);
            if req.respond(tiny_http::Response::from_file(f)).is_ok() {
                served.fetch_add(1, Ordering::SeqCst);
                bytes.fetch_add(len, Ordering::SeqCst);
                // One line per file served: the installer's host log is the audit of who
                // fetched what from whom.
                println!("relay served {what} ({len} bytes) to {peer}");
            }
        }
        None => {
            let status = if get { 404 } else { 405 };
            let _ = req.respond(tiny_http::Response::empty(status));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_served_from_files() {
        let ok = parse_files(&["bootstrap/tarmac-host=/opt/tarmac/tarmac-host".into()]).unwrap();
        assert_eq!(
            ok.get("bootstrap/tarmac-host"),
            Some(&PathBuf::from("/opt/tarmac/tarmac-host"))
        );
        for bad in [
            "../etc/shadow=/etc/shadow",
            "a//b=/x",
            "=/x",
            "a=rel",
            "a/./b=/x",
        ] {
            assert!(parse_files(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_name_stored_archives_exactly() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::new(t.path());
        let id = PackageId::parse("etcd--0123456789abcdef").unwrap();
        let meta = t.path().join(id.to_string()).join(".tarmac");
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(meta.join("archive.tar.zst"), b"x").unwrap();
        let files = parse_files(&["bootstrap/h=/opt/tarmac/tarmac-host".into()]).unwrap();
        let r = |u: &str| resolve(&store, &files, u);
        assert_eq!(
            r("/packages/etcd/etcd--0123456789abcdef.tar.zst"),
            Some(meta.join("archive.tar.zst"))
        );
        assert_eq!(
            r("/bootstrap/h?x=1"),
            Some(PathBuf::from("/opt/tarmac/tarmac-host"))
        );
        // Another name, another compression, unknown ids, traversal: nothing.
        for u in [
            "/packages/prometheus/etcd--0123456789abcdef.tar.zst",
            "/packages/etcd/etcd--0123456789abcdef.tar.xz",
            "/packages/etcd/etcd--ffff.tar.zst",
            "/packages/etcd/../../etc/shadow",
            "/packages/etcd/etcd--0123456789abcdef/.tarmac/archive.tar.zst",
            "/etc/passwd",
            "/",
        ] {
            assert_eq!(r(u), None, "{u}");
        }
    }
}
