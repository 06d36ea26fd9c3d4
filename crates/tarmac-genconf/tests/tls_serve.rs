//! HTTPS end to end on loopback (no lab): genconf makes the cluster CA and server certificate
//! for an `https://127.0.0.1:PORT` bootstrap_url, the installer's artifact server serves
//! genconf/serve/ with it, and
//! - `Fetcher` with the cluster CA fetches and verifies a package; without a CA, or with
//!   another cluster's CA, it is refused with the exact error;
//! - install.sh's own download (curl pinned to the CA it carries) works, and refuses a server
//!   whose certificate another CA signed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use tarmac_config::Distribution;
use tarmac_events::{NullSink, Sink};
use tarmac_genconf::{GenconfOptions, genconf, testkit};
use tarmac_installer::serve::{ArtifactServer, load_tls};
use tarmac_pkg::pack::PackOptions;
use tarmac_pkg::store::{Added, Store};
use tarmac_pkg::{FetchError, Fetcher};
use tarmac_types::{Digest, PackageId};

fn dist() -> Distribution {
    Distribution::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/reference/config"))
        .unwrap()
}

/// A genconf directory for `url`, genconf run on a fake build.
fn genconf_for(root: &Path, url: &str) -> (PathBuf, tarmac_genconf::GenconfReport) {
    let g = root.join("genconf");
    std::fs::create_dir_all(&g).unwrap();
    std::fs::write(
        g.join("config.yaml"),
        format!("master_list: [10.0.0.1]\nbootstrap_url: {url}\n"),
    )
    .unwrap();
    std::fs::write(g.join("ip-detect"), "#!/bin/sh\necho 10.0.0.1\n").unwrap();
    let build = root.join("out");
    std::fs::create_dir_all(&build).unwrap();
    testkit::fake_build(&build, false);
    let sink: Sink = Arc::new(NullSink);
    let report = genconf(
        &dist(),
        &GenconfOptions {
            genconf_dir: g.clone(),
            build_dir: build,
            public_key: None,
            pack: PackOptions {
                level: 3,
                workers: 1,
            },
        },
        &sink,
    )
    .unwrap();
    (g, report)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Source serve/install.sh without running main, then run `cmd`.
fn install_sh(script: &Path, cmd: &str) -> Output {
    let body: String = std::fs::read_to_string(script)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("main \"$@\""))
        .map(|l| format!("{}\n", l.strip_prefix("readonly ").unwrap_or(l)))
        .collect();
    let f = script.with_file_name("functions.sh");
    std::fs::write(&f, body).unwrap();
    Command::new("bash")
        .arg("-c")
        .arg(format!("source {}; {cmd}", f.display()))
        .output()
        .unwrap()
}

#[test]
fn https_repository_is_pinned_to_the_cluster_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("https://127.0.0.1:{port}");
    let (g, report) = genconf_for(&tmp.path().join("a"), &url);
    let tls_dir = g.join("tls");
    let ca_pem = std::fs::read(tls_dir.join("ca.pem")).unwrap();
    assert!(report.repository_ca_fingerprint.is_some());

    // install.sh carries exactly genconf/tls/ca.pem.
    let script = std::fs::read_to_string(g.join("serve/install.sh")).unwrap();
    assert!(script.contains(&format!(
        "repository_ca() {{\n    cat <<'TARMAC_EOF'\n{}TARMAC_EOF\n}}",
        text(&ca_pem)
    )));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let tls = load_tls(&tls_dir.join("server.pem"), &tls_dir.join("server.key")).unwrap();
    let server = ArtifactServer::start(&g.join("serve"), listener, Some(tls)).unwrap();
    assert_eq!(server.scheme(), "https");

    // A package, with the sha256 genconf listed.
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(g.join("serve/cluster-package-info.json")).unwrap())
            .unwrap();
    let id = PackageId::parse("etcd--3.5.17").unwrap();
    let sha: Digest = info["etcd"]["sha256"].as_str().unwrap().parse().unwrap();
    let size = info["etcd"]["size"]
        .as_u64()
        .expect("cluster-package-info.json lists the size");
    let pin = tarmac_pkg::extract::Pin { sha256: sha, size };
    let ca_label = tls_dir.join("ca.pem").display().to_string();
    let pinned = Fetcher::new(2, std::time::Duration::from_millis(10))
        .with_ca_pem(&ca_pem, &ca_label)
        .unwrap();
    let store = Store::new(tmp.path().join("store"));
    assert!(matches!(
        store.fetch(&pinned, &url, &id, Some(pin)).unwrap(),
        Added::New(_)
    ));
    assert_eq!(store.verify(&id).unwrap(), vec![]);

    // No CA: refused before connecting.
    let pkg_url = format!("{url}/packages/etcd/etcd--3.5.17.tar.zst");
    let err = Fetcher::default().open(&pkg_url).err().unwrap();
    assert!(matches!(err, FetchError::NoCa { .. }), "{err:?}");
    assert_eq!(
        tarmac_types::error_report::text_with_hint(&err),
        format!(
            "{pkg_url}: no cluster CA to check the repository's certificate against\nhint: an https repository is trusted only through the cluster CA: install.sh writes it to /etc/tarmac/setup-flags/repository-ca.pem (tarmac-host also takes --repository-ca FILE)"
        )
    );

    // Another cluster's CA: refused at once (no retries), naming the URL and the CA file.
    let other = tmp.path().join("b/genconf");
    std::fs::create_dir_all(&other).unwrap();
    let other_tls =
        tarmac_genconf::tls::ensure_generated(&other, "127.0.0.1", std::time::SystemTime::now())
            .unwrap();
    let other_label = other.join("tls/ca.pem").display().to_string();
    let wrong = Fetcher::new(6, std::time::Duration::from_secs(5))
        .with_ca_pem(
            &std::fs::read(other.join("tls/ca.pem")).unwrap(),
            &other_label,
        )
        .unwrap();
    let started = std::time::Instant::now();
    let err = wrong.open(&pkg_url).err().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    assert_eq!(
        tarmac_types::error_report::text_with_hint(&err),
        format!(
            "{pkg_url}: certificate not signed by the cluster CA ({other_label})\nhint: whoever answers for this URL is not the cluster's artifact server, or the server's certificate was replaced: serve genconf/serve/ with `tarmac serve` (genconf/tls/server.pem or bootstrap_tls_cert), and rerun install.sh on this host if genconf made a new CA"
        )
    );
    let other_store = Store::new(tmp.path().join("store2"));
    assert!(other_store.fetch(&wrong, &url, &id, Some(pin)).is_err());
    assert!(!other_store.contains(&id));

    // The right CA but the wrong name: the certificate is for 127.0.0.1, not localhost.
    let by_name = format!("https://localhost:{port}/packages/etcd/etcd--3.5.17.tar.zst");
    let err = pinned.open(&by_name).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{by_name}: the server's certificate is refused: it is not for localhost (it is for IP:127.0.0.1) (cluster CA {ca_label})"
        )
    );

    // install.sh: curl pinned to the CA the script carries.
    let script_path = g.join("serve/install.sh");
    let host_path = script
        .lines()
        .find_map(|l| l.strip_prefix("readonly HOST_BINARY_PATH="))
        .unwrap()
        .to_owned();
    let host_sha = script
        .lines()
        .find_map(|l| l.strip_prefix("readonly HOST_BINARY_SHA256="))
        .unwrap()
        .to_owned();
    let dest = tmp.path().join("tarmac-host");
    let out = install_sh(
        &script_path,
        &format!(
            "prepare_tls; fetch {host_path} {} {host_sha}",
            dest.display()
        ),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        b"#!/bin/sh\necho tarmac-host\n"
    );
    // The same script handed another CA (as if the server were an impostor's).
    let fp = report.repository_ca_fingerprint.clone().unwrap();
    let dest2 = tmp.path().join("tarmac-host.2");
    let out = install_sh(
        &script_path,
        &format!(
            "repository_ca() {{ cat {}; }}; prepare_tls; fetch {host_path} {} {host_sha}",
            other.join("tls/ca.pem").display(),
            dest2.display()
        ),
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{url}/{host_path}: certificate not signed by the cluster CA (genconf/tls/ca.pem, {fp}), or not issued for this host: refusing to download\n"
        )),
        "{stderr}"
    );
    assert!(
        stderr.ends_with(&format!("error: cannot download {url}/{host_path}\n")),
        "{stderr}"
    );
    assert!(!dest2.exists());
    // Plain http to the https port is not a fallback: the TLS server answers nothing usable.
    let out = install_sh(
        &script_path,
        &format!(
            "BOOTSTRAP_URL=http://127.0.0.1:{port}; prepare_tls; download http://127.0.0.1:{port}/{host_path} {} --max-time 5",
            tmp.path().join("x").display()
        ),
    );
    assert_ne!(out.status.code(), Some(0));

    // The self-install one-liner, before the host has the CA: curl pins the server's key.
    let pin = report.server_key_pin.clone().unwrap();
    assert!(pin.starts_with("sha256//"), "{pin}");
    let line = tarmac_genconf::self_install_command(
        &url,
        &report.install_sh_sha256,
        None,
        Some(&pin),
        "agent",
    );
    let download = line.split(" && ").next().unwrap().to_owned();
    assert_eq!(
        download,
        format!(
            "curl -fsSL --proto =https --insecure --pinnedpubkey {} -o tarmac-install.sh {url}/install.sh",
            tarmac_types::shell::quote(&pin)
        )
    );
    let cwd = tmp.path().join("self-install");
    std::fs::create_dir_all(&cwd).unwrap();
    let check = line.split(" && ").take(2).collect::<Vec<_>>().join(" && ");
    let out = Command::new("bash")
        .arg("-c")
        .arg(&check)
        .current_dir(&cwd)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(cwd.join("tarmac-install.sh")).unwrap(),
        script
    );
    // An impostor's key (another cluster's server certificate) fails the pin: curl exit 90.
    let wrong_pin = download.replace(&pin, &other_tls.server_pin);
    assert_ne!(wrong_pin, download);
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("{wrong_pin} -o wrong.sh"))
        .current_dir(&cwd)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(90), "{}", text(&out.stderr));

    rt.block_on(server.stop());
}

#[test]
fn http_bootstrap_url_makes_no_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let (g, report) = genconf_for(tmp.path(), "http://10.0.0.254:8080");
    assert_eq!(report.repository_ca_fingerprint, None);
    assert!(!g.join("tls").exists());
    let script = std::fs::read_to_string(g.join("serve/install.sh")).unwrap();
    assert!(script.contains("readonly REPOSITORY_CA_FINGERPRINT=''\n"));
}
