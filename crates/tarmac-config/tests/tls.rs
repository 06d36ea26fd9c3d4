//! The `bootstrap_tls_*` keys: every per-key message, exactly, through the validation of a
//! real genconf directory.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

const HTTPS: &str = "master_list: [10.0.0.1]\nbootstrap_url: https://10.0.0.254:8443\n";
const WITH_FILES: &str = "bootstrap_tls_cert: genconf/server.pem\nbootstrap_tls_key: genconf/server.key\nbootstrap_tls_ca: genconf/ca.pem\n";

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = p.self_signed(&key).unwrap();
    Ca {
        issuer: Issuer::new(p, key),
        pem: cert.pem(),
    }
}

/// A server certificate for `names`, valid from `from` to `until` (seconds from now).
fn server(ca: &Ca, names: &[&str], from: i64, until: i64) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let at = |s: i64| {
        if s >= 0 {
            SystemTime::now() + Duration::from_secs(s as u64)
        } else {
            SystemTime::now() - Duration::from_secs((-s) as u64)
        }
    };
    p.not_before = at(from).into();
    p.not_after = at(until).into();
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

const DAY: i64 = 86_400;

fn with_files(config: &str, files: &[(&str, &str)]) -> Genconf {
    let g = Genconf::new(config);
    for (name, text) in files {
        std::fs::write(g.dir().join(name), text).unwrap();
    }
    g
}

fn errs(g: &Genconf) -> Vec<(String, String, Option<String>)> {
    match g.load() {
        Ok(_) => Vec::new(),
        Err(r) => r
            .errors
            .iter()
            .map(|d| (d.key.clone(), d.message.clone(), d.hint.clone()))
            .collect(),
    }
}

fn good(names: &[&str]) -> (Ca, String, String) {
    let ca = ca("Test CA");
    let (cert, key) = server(&ca, names, -DAY, 365 * DAY);
    (ca, cert, key)
}

fn files<'a>(ca: &'a str, cert: &'a str, key: &'a str) -> [(&'static str, &'a str); 3] {
    [("ca.pem", ca), ("server.pem", cert), ("server.key", key)]
}

#[test]
fn an_operator_certificate_that_covers_the_host_is_valid() {
    let (ca, cert, key) = good(&["10.0.0.254"]);
    let g = with_files(
        &format!("{HTTPS}{WITH_FILES}"),
        &files(&ca.pem, &cert, &key),
    );
    let cfg = g.load().unwrap();
    assert!(cfg.warnings().is_empty(), "{:?}", cfg.warnings());
    let tls = cfg.bootstrap_tls(&g.dir()).unwrap();
    assert!(!tls.generated);
    assert_eq!(tls.host, "10.0.0.254");
    assert_eq!(tls.cert, g.tmp.path().join("genconf/server.pem"));
    assert_eq!(tls.ca, g.tmp.path().join("genconf/ca.pem"));
    // A DNS name works the same way.
    let (ca, cert, key) = good(&["boot.example"]);
    let g = with_files(
        &format!("master_list: [10.0.0.1]\nbootstrap_url: https://boot.example:8443\n{WITH_FILES}"),
        &files(&ca.pem, &cert, &key),
    );
    assert_eq!(errs(&g), []);
}

#[test]
fn without_operator_files_genconf_makes_the_cluster_ca() {
    let g = Genconf::new(HTTPS);
    let cfg = g.load().unwrap();
    let tls = cfg.bootstrap_tls(Path::new("/x/genconf")).unwrap();
    assert_eq!(
        tls,
        tarmac_config::tls::BootstrapTls {
            host: "10.0.0.254".into(),
            cert: "/x/genconf/tls/server.pem".into(),
            key: "/x/genconf/tls/server.key".into(),
            ca: "/x/genconf/tls/ca.pem".into(),
            generated: true,
        }
    );
    let cfg = Genconf::new("master_list: [10.0.0.1]\nbootstrap_url: http://10.0.0.254:8080\n")
        .load()
        .unwrap();
    assert_eq!(cfg.bootstrap_tls(Path::new("/x/genconf")), None);
}

#[test]
fn tls_keys_with_an_http_url() {
    let g = Genconf::new(
        "master_list: [10.0.0.1]\nbootstrap_url: http://10.0.0.254:8080\nbootstrap_tls_ca: genconf/ca.pem\n",
    );
    assert_eq!(
        errs(&g),
        [(
            "bootstrap_tls_ca".to_owned(),
            "bootstrap_tls_ca is set, but bootstrap_url `http://10.0.0.254:8080` is not an https:// URL: nothing would use it".to_owned(),
            Some("make bootstrap_url https://…, or remove bootstrap_tls_ca".to_owned())
        )]
    );
}

#[test]
fn all_three_or_none() {
    let g = Genconf::new(&format!("{HTTPS}bootstrap_tls_cert: genconf/server.pem\n"));
    let hint = Some("set bootstrap_tls_cert, bootstrap_tls_key and bootstrap_tls_ca together, or none of them (then genconf makes a per-cluster CA and certificate in genconf/tls/)".to_owned());
    assert_eq!(
        errs(&g),
        [
            (
                "bootstrap_tls_ca".to_owned(),
                "Must set bootstrap_tls_ca with bootstrap_tls_cert: the CA that signed bootstrap_tls_cert (hosts trust only this CA for bootstrap_url)".to_owned(),
                hint.clone()
            ),
            (
                "bootstrap_tls_key".to_owned(),
                "Must set bootstrap_tls_key with bootstrap_tls_cert: the private key of bootstrap_tls_cert".to_owned(),
                hint.clone()
            ),
        ]
    );
    let g = Genconf::new(&format!(
        "{HTTPS}bootstrap_tls_key: genconf/server.key\nbootstrap_tls_ca: genconf/ca.pem\n"
    ));
    assert_eq!(
        errs(&g),
        [(
            "bootstrap_tls_cert".to_owned(),
            "Must set bootstrap_tls_cert with bootstrap_tls_key and bootstrap_tls_ca: the server certificate (PEM chain) for bootstrap_url".to_owned(),
            hint
        )]
    );
}

#[test]
fn unreadable_files() {
    let g = Genconf::new(&format!("{HTTPS}{WITH_FILES}"));
    let e = errs(&g);
    assert_eq!(
        e.iter()
            .map(|(k, m, _)| (k.as_str(), m.as_str()))
            .collect::<Vec<_>>(),
        [
            (
                "bootstrap_tls_cert",
                "bootstrap_tls_cert `genconf/server.pem` cannot be read: No such file or directory (os error 2)"
            ),
            (
                "bootstrap_tls_key",
                "bootstrap_tls_key `genconf/server.key` cannot be read: No such file or directory (os error 2)"
            ),
            (
                "bootstrap_tls_ca",
                "bootstrap_tls_ca `genconf/ca.pem` cannot be read: No such file or directory (os error 2)"
            ),
        ]
    );
    assert_eq!(
        e[0].2.as_deref(),
        Some(
            "check the path (relative paths are resolved against the directory that contains genconf/) and that the file is readable"
        )
    );
    // A directory, and a file too large to be PEM (bounded read).
    let (ca, cert, _) = good(&["10.0.0.254"]);
    let g = with_files(
        &format!("{HTTPS}{WITH_FILES}"),
        &[("ca.pem", &ca.pem), ("server.pem", &cert)],
    );
    std::fs::create_dir(g.dir().join("server.key")).unwrap();
    assert_eq!(
        errs(&g)[0].1,
        "bootstrap_tls_key `genconf/server.key` cannot be read: not a regular file"
    );
    let big = "A".repeat(1024 * 1024 + 1);
    let g = with_files(
        &format!("{HTTPS}{WITH_FILES}"),
        &[
            ("ca.pem", &ca.pem),
            ("server.pem", &big),
            ("server.key", "x"),
        ],
    );
    assert_eq!(
        errs(&g)[0].1,
        "bootstrap_tls_cert `genconf/server.pem` cannot be read: larger than 1024 KiB, not a PEM file"
    );
}

#[test]
fn not_pem() {
    let g = with_files(
        &format!("{HTTPS}{WITH_FILES}"),
        &[
            ("ca.pem", "just text\n"),
            (
                "server.pem",
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            ),
            (
                "server.key",
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            ),
        ],
    );
    let e = errs(&g);
    assert_eq!(
        e.iter()
            .map(|(k, m, _)| (k.as_str(), m.as_str()))
            .collect::<Vec<_>>(),
        [
            (
                "bootstrap_tls_cert",
                "bootstrap_tls_cert `genconf/server.pem` is not a PEM certificate: no -----BEGIN CERTIFICATE----- block"
            ),
            (
                "bootstrap_tls_key",
                "bootstrap_tls_key `genconf/server.key` is not a PEM private key: no -----BEGIN PRIVATE KEY----- block (PKCS#8, RSA or EC, unencrypted)"
            ),
            (
                "bootstrap_tls_ca",
                "bootstrap_tls_ca `genconf/ca.pem` is not a PEM CA certificate: no -----BEGIN CERTIFICATE----- block"
            ),
        ]
    );
    assert_eq!(
        e[1].2.as_deref(),
        Some(
            "give the unencrypted private key in PEM (`openssl pkey -in FILE -out FILE.key` decrypts and converts it)"
        )
    );
}

#[test]
fn certificate_for_another_host() {
    let (ca, cert, key) = good(&["10.0.0.9", "boot.example"]);
    let g = with_files(
        &format!("{HTTPS}{WITH_FILES}"),
        &files(&ca.pem, &cert, &key),
    );
    assert_eq!(
        errs(&g),
        [(
            "bootstrap_tls_cert".to_owned(),
            "the certificate in bootstrap_tls_cert `genconf/server.pem` does not cover bootstrap_url's host 10.0.0.254: it is for IP:10.0.0.9, DNS:boot.example".to_owned(),
            Some("issue the certificate with subjectAltName IP:10.0.0.254 (the host of bootstrap_url), or change bootstrap_url".to_owned())
        )]
    );
}

#[test]
fn expired_and_not_yet_valid() {
    let ca = ca("Test CA");
    // rcgen writes whole seconds; the expiry date is printed in UTC.
    let (cert, key) = server(&ca, &["10.0.0.254"], -30 * DAY, -DAY);
    let g = with_files(
        &format!("{HTTPS}{WITH_FILES}"),
        &files(&ca.pem, &cert, &key),
    );
    let e = errs(&g);
    assert_eq!(e.len(), 1, "{e:?}");
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - DAY as u64;
    let want = |s: u64| {
        format!(
            "the certificate in bootstrap_tls_cert `genconf/server.pem` expired on {}",
            tarmac_config::tls::utc(s)
        )
    };
    assert!(
        e[0].1 == want(secs) || e[0].1 == want(secs - 1),
        "{}",
        e[0].1
    );
    assert_eq!(
        e[0].2.as_deref(),
        Some("renew the certificate (and check this machine's clock)")
    );
    let (cert, key) = server(&ca, &["10.0.0.254"], 10 * DAY, 20 * DAY);
    let g = with_files(
        &format!("{HTTPS}{WITH_FILES}"),
        &files(&ca.pem, &cert, &key),
    );
    let e = errs(&g);
    assert!(
        e[0].1.starts_with(
            "the certificate in bootstrap_tls_cert `genconf/server.pem` is not valid before "
        ),
        "{e:?}"
    );
    // Expiring within 30 days: valid, with a warning.
    let (cert, key) = server(&ca, &["10.0.0.254"], -DAY, 10 * DAY);
    let g = with_files(
        &format!("{HTTPS}{WITH_FILES}"),
        &files(&ca.pem, &cert, &key),
    );
    let cfg = g.load().unwrap();
    assert_eq!(cfg.warnings().len(), 1);
    assert_eq!(cfg.warnings()[0].key, "bootstrap_tls_cert");
    assert!(
        cfg.warnings()[0]
            .message
            .ends_with(", in less than 30 days"),
        "{}",
        cfg.warnings()[0].message
    );
}

#[test]
fn signed_by_another_ca() {
    let (_, cert, key) = good(&["10.0.0.254"]);
    let other = ca("Other CA");
    let g = with_files(
        &format!("{HTTPS}{WITH_FILES}"),
        &files(&other.pem, &cert, &key),
    );
    assert_eq!(
        errs(&g),
        [(
            "bootstrap_tls_cert".to_owned(),
            "the certificate in bootstrap_tls_cert `genconf/server.pem` is not signed by bootstrap_tls_ca `genconf/ca.pem`".to_owned(),
            Some("set bootstrap_tls_ca to the CA that issued it (with a chain, the CA at its top), or bootstrap_tls_cert to a certificate bootstrap_tls_ca `genconf/ca.pem` issued".to_owned())
        )]
    );
}

#[test]
fn key_of_another_certificate() {
    let (ca, cert, _) = good(&["10.0.0.254"]);
    let other_key = KeyPair::generate().unwrap().serialize_pem();
    let g = with_files(
        &format!("{HTTPS}{WITH_FILES}"),
        &files(&ca.pem, &cert, &other_key),
    );
    assert_eq!(
        errs(&g),
        [(
            "bootstrap_tls_key".to_owned(),
            "bootstrap_tls_key `genconf/server.key` is not the private key of the certificate in bootstrap_tls_cert `genconf/server.pem`".to_owned(),
            Some("give the key the certificate was issued for".to_owned())
        )]
    );
}
