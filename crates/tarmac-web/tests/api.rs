//! API tests: the real router, in process, against a temporary genconf/ and the reference
//! distribution's schema. No lab needed (the one run that connects goes to a silent
//! listener on 127.0.0.1).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use tarmac_config::Distribution;
use tarmac_events::{Event, EventSink, Level};
use tarmac_web::auth::ManualClock;
use tarmac_web::{App, AppState, AuthLimits, HostAllowlist, WebOptions, router};
use tower::ServiceExt;

const PASSWORD: &str = "s3cret-Pa55word-xyzzy";

fn dist() -> Distribution {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/reference");
    Distribution::load(&Distribution::config_dir_of(&root).expect("dist/reference/config"))
        .expect("load dist")
}

struct T {
    app: AppState,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
    genconf: PathBuf,
    cookie: String,
    csrf: String,
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl T {
    async fn new() -> T {
        T::with_buffer(1000).await
    }

    async fn with_buffer(event_buffer: usize) -> T {
        T::build(event_buffer, false).await
    }

    async fn build(event_buffer: usize, tls: bool) -> T {
        T::build_with(event_buffer, tls, AuthLimits::default()).await
    }

    async fn build_with(event_buffer: usize, tls: bool, auth_limits: AuthLimits) -> T {
        let dir = tempfile::tempdir().unwrap();
        let genconf = dir.path().join("genconf");
        std::fs::create_dir_all(&genconf).unwrap();
        let clock = Arc::new(ManualClock::default());
        let opts = WebOptions {
            genconf_dir: genconf.clone(),
            dist: dist(),
            build_dir: dir.path().join("out"),
            public_key: None,
            prereqs: tarmac_installer::prereqs::Prereqs {
                apt: vec!["curl".into()],
                rpm: vec!["curl".into()],
                zypper: vec!["curl".into()],
            },
            tls,
            event_buffer,
            allowed_hosts: HostAllowlist::new("127.0.0.1:9000".parse().unwrap(), &[]).unwrap(),
            auth_limits,
        };
        let app = App::with_clock(opts, clock.clone());
        let mut t = T {
            app,
            clock,
            _dir: dir,
            genconf,
            cookie: String::new(),
            csrf: String::new(),
        };
        // Log in through the real route.
        let token = t.app.auth.new_login_token();
        let r = t
            .raw(
                Request::get(format!("/login?token={token}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        t.cookie = set.split(';').next().unwrap().to_owned();
        // The page carries the CSRF token.
        let page = t.get("/").await;
        assert_eq!(page.status, StatusCode::OK);
        let html = page.text();
        let i = html
            .find("name=\"csrf-token\" content=\"")
            .expect("csrf meta")
            + 27;
        t.csrf = html[i..i + 64].to_owned();
        // A second use of the token is refused.
        let again = t
            .raw(
                Request::get(format!("/login?token={token}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(again.status, StatusCode::UNAUTHORIZED);
        t
    }

    /// Send a request; one without a `Host` gets the server's own (`127.0.0.1:9000`), as
    /// a browser would send.
    async fn raw(&self, mut req: Request<Body>) -> Resp {
        if !req.headers().contains_key(header::HOST) {
            req.headers_mut()
                .insert(header::HOST, "127.0.0.1:9000".parse().unwrap());
        }
        let r = router(self.app.clone()).oneshot(req).await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.into_body().collect().await.unwrap().to_bytes().to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    fn req(&self, method: &str, path: &str) -> axum::http::request::Builder {
        self.req_to("127.0.0.1:9000", method, path)
    }

    /// A request with the session cookie, sent to `host`.
    fn req_to(&self, host: &str, method: &str, path: &str) -> axum::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, host)
            .header(header::COOKIE, &self.cookie)
    }

    async fn get(&self, path: &str) -> Resp {
        self.raw(self.req("GET", path).body(Body::empty()).unwrap())
            .await
    }

    async fn send(&self, method: &str, path: &str, body: Value) -> Resp {
        self.raw(
            self.req(method, path)
                .header("x-tarmac-csrf", &self.csrf)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.genconf.join(name), text).unwrap();
    }

    fn config(&self) -> String {
        std::fs::read_to_string(self.genconf.join("config.yaml")).unwrap_or_default()
    }
}

fn keygen(path: &Path) -> String {
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
    std::fs::read_to_string(path).unwrap()
}

const IP_DETECT: &str = "#!/bin/sh\necho 127.0.0.1\n";

fn valid_config(master: &str) -> String {
    format!("cluster_name: web-test\nbootstrap_url: http://127.0.0.1:1\nmaster_list:\n- {master}\n")
}

/// Every route of the API and the pages.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/assets/app.js"),
    ("GET", "/assets/app.css"),
    ("GET", "/api/v1/info"),
    ("GET", "/api/v1/schema"),
    ("GET", "/api/v1/config"),
    ("PUT", "/api/v1/config"),
    ("POST", "/api/v1/config/validate"),
    ("GET", "/api/v1/ip-detect"),
    ("PUT", "/api/v1/ip-detect"),
    ("GET", "/api/v1/ssh-key"),
    ("PUT", "/api/v1/ssh-key"),
    ("GET", "/api/v1/known-hosts"),
    ("PUT", "/api/v1/known-hosts"),
    ("PUT", "/api/v1/sudo-password"),
    ("GET", "/api/v1/state"),
    ("POST", "/api/v1/stages/preflight"),
    ("POST", "/api/v1/stages/deploy"),
    ("POST", "/api/v1/stages/postflight"),
    ("POST", "/api/v1/stages/uninstall"),
    ("POST", "/api/v1/stages/genconf"),
    ("POST", "/api/v1/stages/deploy/retry"),
    ("POST", "/api/v1/upgrade"),
    ("POST", "/api/v1/rollback"),
    ("POST", "/api/v1/upgrade/plan"),
    ("GET", "/api/v1/snapshots"),
    ("POST", "/api/v1/backup"),
    ("POST", "/api/v1/restore"),
    ("POST", "/api/v1/remove-hosts"),
    ("POST", "/api/v1/replace-master"),
    ("POST", "/api/v1/change/resume"),
    ("POST", "/logout"),
    ("POST", "/api/v1/run/cancel"),
    ("GET", "/api/v1/runs"),
    ("GET", "/api/v1/history"),
    ("GET", "/api/v1/runs/deploy-1"),
    ("GET", "/api/v1/runs/deploy-1/logs/10.0.0.1"),
    ("GET", "/api/v1/logs/archive"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/cluster"),
    ("GET", "/api/v1/openapi.json"),
];

#[tokio::test]
async fn every_route_requires_a_session() {
    let t = T::new().await;
    for (method, path) in ROUTES {
        for cookie in [None, Some("tarmac_session=0000"), Some("other=1")] {
            let mut b = Request::builder()
                .method(*method)
                .uri(*path)
                .header("x-tarmac-csrf", &t.csrf);
            if let Some(c) = cookie {
                b = b.header(header::COOKIE, c);
            }
            let r = t.raw(b.body(Body::from("{}")).unwrap()).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {cookie:?}: {}",
                r.text()
            );
            if path.starts_with("/api/") {
                assert!(
                    r.json()["error"]
                        .as_str()
                        .unwrap()
                        .contains("authentication required")
                );
            }
        }
    }
    // Nothing was written by the refused calls.
    assert!(!t.genconf.join("config.yaml").exists());
    // The login route itself needs a valid token.
    let r = t
        .raw(
            Request::get("/login?token=nope")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Security headers on everything.
    let r = t.get("/api/v1/info").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    assert!(
        r.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(r.headers[header::REFERRER_POLICY], "no-referrer");
}

#[tokio::test]
async fn state_changing_calls_need_the_csrf_token_and_same_origin() {
    let t = T::new().await;
    let body = json!({"set": {"cluster_name": "x"}}).to_string();
    let no_header = t
        .req("PUT", "/api/v1/config")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.clone()))
        .unwrap();
    assert_eq!(t.raw(no_header).await.status, StatusCode::FORBIDDEN);
    let wrong = t
        .req("PUT", "/api/v1/config")
        .header("x-tarmac-csrf", "0".repeat(64))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.clone()))
        .unwrap();
    assert_eq!(t.raw(wrong).await.status, StatusCode::FORBIDDEN);
    let cross = t
        .req("PUT", "/api/v1/config")
        .header("x-tarmac-csrf", &t.csrf)
        .header(header::HOST, "127.0.0.1:9000")
        .header(header::ORIGIN, "http://evil.example")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.clone()))
        .unwrap();
    assert_eq!(t.raw(cross).await.status, StatusCode::FORBIDDEN);
    for (method, path) in ROUTES.iter().filter(|(m, _)| *m != "GET") {
        let r = t
            .raw(t.req(method, path).body(Body::from("{}")).unwrap())
            .await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{method} {path} without CSRF header"
        );
    }
    assert!(!t.genconf.join("config.yaml").exists(), "nothing written");
    let same = t
        .req("POST", "/api/v1/config/validate")
        .header("x-tarmac-csrf", &t.csrf)
        .header(header::HOST, "127.0.0.1:9000")
        .header(header::ORIGIN, "http://127.0.0.1:9000")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    assert_eq!(t.raw(same).await.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_config_is_refused_with_errors_per_key_and_not_written() {
    let t = T::new().await;
    t.write("ip-detect", IP_DETECT);
    t.write("config.yaml", &valid_config("127.0.0.1"));
    let before = t.config();
    let r = t.send("PUT", "/api/v1/config", json!({"set": {"ssh_port": "asdf", "master_list": ["10.0.0.1", "10.0.0.2"], "cluster_nmae": "typo"}})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let v = r.json();
    assert_eq!(
        v["errors"]["ssh_port"],
        "Must be an integer, got a string (\"asdf\")"
    );
    assert_eq!(
        v["errors"]["master_list"],
        "Must have 1, 3, 5, 7, or 9 masters. Found 2"
    );
    assert_eq!(
        v["errors"]["cluster_nmae"],
        "Unknown parameter `cluster_nmae`"
    );
    let diag = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["key"] == "cluster_nmae")
        .unwrap()
        .clone();
    assert_eq!(diag["hint"], "did you mean `cluster_name`?");
    assert!(diag["line"].as_u64().is_some(), "{diag}");
    assert_eq!(
        t.config(),
        before,
        "an invalid configuration is not written"
    );

    // The raw editor: YAML errors are reported with their line.
    let r = t
        .send(
            "PUT",
            "/api/v1/config",
            json!({"yaml": "master_list: [10.0.0.1\n"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["errors"]["config.yaml"]
            .as_str()
            .unwrap()
            .contains("Invalid YAML")
    );
    assert_eq!(t.config(), before);

    // Validate never writes and answers 200 with the problems.
    let r = t
        .send(
            "POST",
            "/api/v1/config/validate",
            json!({"set": {"ssh_port": 70000}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["valid"], false);
    assert!(
        v["errors"]["ssh_port"].as_str().unwrap().contains("65535"),
        "{v}"
    );
    let r = t
        .send(
            "POST",
            "/api/v1/config/validate",
            json!({"set": {"ssh_port": 2222}}),
        )
        .await;
    assert_eq!(r.json()["valid"], true, "{}", r.text());
    assert_eq!(t.config(), before);

    // A valid change is written (in place, keeping the rest), 0600.
    let r = t
        .send(
            "PUT",
            "/api/v1/config",
            json!({"set": {"ssh_port": 2222, "cluster_name": null}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        t.config(),
        "bootstrap_url: http://127.0.0.1:1\nmaster_list:\n- 127.0.0.1\nssh_port: 2222\n"
    );
    let mode = std::fs::metadata(t.genconf.join("config.yaml"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(r.json()["validation"]["valid"], true);

    // Stages validate first: an invalid config on disk means 400 and no run.
    t.write("config.yaml", "master_list: [not an ip!]\n");
    let r = t.send("POST", "/api/v1/stages/preflight", json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.json()["errors"]["master_list"].is_string());
    assert_eq!(t.get("/api/v1/state").await.json()["run"]["state"], "idle");
}

#[tokio::test]
async fn secrets_are_never_returned() {
    let t = T::new().await;
    t.write("ip-detect", IP_DETECT);
    let cfg = format!(
        "{}prometheus_remote_write_url: http://127.0.0.1:1/w\nprometheus_remote_write_username: u\nprometheus_remote_write_password: {PASSWORD}\n",
        valid_config("127.0.0.1")
    );
    t.write("config.yaml", &cfg);
    let key = keygen(&t._dir.path().join("k"));
    let r = t
        .send("PUT", "/api/v1/ssh-key", json!({"private_key": key}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(
        r.json()["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    let r = t
        .send(
            "PUT",
            "/api/v1/sudo-password",
            json!({"password": "sudo-Secret-123"}),
        )
        .await;
    assert_eq!(r.json()["set"], true);

    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    for path in [
        "/api/v1/config",
        "/api/v1/ssh-key",
        "/api/v1/known-hosts",
        "/api/v1/state",
        "/api/v1/ip-detect",
        "/api/v1/cluster",
        "/api/v1/openapi.json",
        "/api/v1/schema",
        "/",
    ] {
        let r = t.get(path).await;
        let text = r.text();
        assert!(
            !text.contains(PASSWORD),
            "{path} returned the password: {text}"
        );
        assert!(
            !text.contains("sudo-Secret-123"),
            "{path} returned the sudo password"
        );
        assert!(
            !text.contains(&key_body[..40]),
            "{path} returned the SSH key"
        );
    }
    let v = t.get("/api/v1/config").await.json();
    assert_eq!(
        v["values"]["prometheus_remote_write_password"],
        "**HIDDEN**"
    );
    assert!(
        v["yaml"]
            .as_str()
            .unwrap()
            .contains("prometheus_remote_write_password: \"**HIDDEN**\"")
    );
    assert_eq!(
        v["secrets_set"],
        json!(["prometheus_remote_write_password"])
    );
    assert_eq!(v["sudo_password_set"], true);
    assert_eq!(v["ssh_key"]["present"], true);

    // Saving the masked text back keeps the stored secret; editing something else too.
    let yaml = v["yaml"]
        .as_str()
        .unwrap()
        .replace("cluster_name: web-test", "cluster_name: renamed");
    let r = t.send("PUT", "/api/v1/config", json!({"yaml": yaml})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(!r.text().contains(PASSWORD));
    let on_disk = t.config();
    assert!(
        on_disk.contains(&format!("prometheus_remote_write_password: {PASSWORD}")),
        "{on_disk}"
    );
    assert!(on_disk.contains("cluster_name: renamed"));
    let r = t.send("PUT", "/api/v1/config", json!({"set": {"prometheus_remote_write_password": "**HIDDEN**", "cluster_name": "again"}})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(t.config().contains(PASSWORD));
    // A hidden marker with nothing stored is an error, never the literal value.
    std::fs::write(t.genconf.join("config.yaml"), valid_config("127.0.0.1")).unwrap();
    let r = t.send("PUT", "/api/v1/config", json!({"yaml": format!("{}prometheus_remote_write_password: \"**HIDDEN**\"\n", valid_config("127.0.0.1"))})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["errors"]["prometheus_remote_write_password"].is_string());
    // Errors never echo the secret either.
    t.write("config.yaml", &cfg);
    let r = t
        .send(
            "POST",
            "/api/v1/config/validate",
            json!({"set": {"prometheus_remote_write_url": null}}),
        )
        .await;
    assert!(!r.text().contains(PASSWORD), "{}", r.text());
}

#[tokio::test]
async fn ssh_key_upload_is_checked_and_stored_0600() {
    let t = T::new().await;
    t.write("config.yaml", &valid_config("127.0.0.1"));
    let r = t
        .send(
            "PUT",
            "/api/v1/ssh-key",
            json!({"private_key": "not a key"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["errors"]["ssh_key_path"]
            .as_str()
            .unwrap()
            .starts_with("Not a usable private key")
    );
    assert!(!t.genconf.join("ssh_key").exists());
    let enc = t._dir.path().join("enc");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "pass phrase", "-f"])
        .arg(&enc)
        .status()
        .unwrap();
    assert!(st.success());
    let r = t
        .send(
            "PUT",
            "/api/v1/ssh-key",
            json!({"private_key": std::fs::read_to_string(&enc).unwrap()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["errors"]["ssh_key_path"]
            .as_str()
            .unwrap()
            .contains("passphrase")
    );

    let key = keygen(&t._dir.path().join("k"));
    let r = t
        .send("PUT", "/api/v1/ssh-key", json!({"private_key": key}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let stored = t.genconf.join("ssh_key");
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), key);
    assert_eq!(
        std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let v = r.json();
    assert_eq!(v["path"], stored.display().to_string());
    assert!(v.get("private_key").is_none());
    // The default ssh_key_path is genconf/ssh_key already: config.yaml is left alone.
    assert_eq!(t.config(), valid_config("127.0.0.1"));
    // With another path configured, ssh_key_path is pointed at the upload.
    t.write(
        "config.yaml",
        &format!("{}ssh_key_path: /elsewhere/id\n", valid_config("127.0.0.1")),
    );
    let r = t
        .send("PUT", "/api/v1/ssh-key", json!({"private_key": key}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        t.config().contains("ssh_key_path: genconf/ssh_key\n"),
        "{}",
        t.config()
    );

    // ip-detect goes next to it, executable.
    let r = t
        .send("PUT", "/api/v1/ip-detect", json!({"script": IP_DETECT}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        std::fs::metadata(t.genconf.join("ip-detect"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert_eq!(t.get("/api/v1/ip-detect").await.json()["script"], IP_DETECT);
    assert_eq!(
        t.get("/api/v1/config").await.json()["validation"]["valid"],
        true
    );
}

/// A TCP listener that accepts and never speaks: SSH connections to it hang.
fn silent_listener() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

async fn wait_state(t: &T, want: &str) -> Value {
    for _ in 0..300 {
        let s = t.get("/api/v1/state").await.json();
        if s["run"]["state"] == want {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "run never reached `{want}`: {}",
        t.get("/api/v1/state").await.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_conflict() {
    let t = T::new().await;
    t.write("ip-detect", IP_DETECT);
    let (_silent, port) = silent_listener();
    t.write(
        "config.yaml",
        &format!(
            "{}process_timeout: 60s\n",
            valid_config(&format!("127.0.0.1:{port}"))
        ),
    );
    keygen(&t.genconf.join("ssh_key"));

    // A CLI run holds the lock: 409 with the holder.
    let lock = tarmac_installer::lock::RunLock::acquire(&t.genconf.join("state"), "tarmac deploy")
        .unwrap();
    let r = t.send("POST", "/api/v1/stages/status", json!({})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    let v = r.json();
    assert_eq!(v["busy"]["holder"]["pid"], std::process::id());
    assert_eq!(v["busy"]["holder"]["command"], "tarmac deploy");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("another tarmac run holds")
    );
    assert_eq!(
        t.get("/api/v1/state").await.json()["busy"]["by"],
        "tarmac deploy"
    );
    drop(lock);

    // Our own run in flight (stuck connecting to a silent host): a second start is 409.
    let r = t.send("POST", "/api/v1/stages/status", json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.json()["state"], "started");
    let r2 = t.send("POST", "/api/v1/stages/preflight", json!({})).await;
    assert_eq!(r2.status, StatusCode::CONFLICT, "{}", r2.text());
    assert_eq!(r2.json()["busy"]["by"], "this server");
    assert_eq!(r2.json()["busy"]["stage"], "status");
    // And a CLI run would be refused by the same lock.
    let s = wait_state(&t, "running").await;
    assert_eq!(s["busy"]["by"], "this server");
    for _ in 0..100 {
        if tarmac_installer::lock::RunLock::acquire(&t.genconf.join("state"), "tarmac preflight")
            .is_err()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        tarmac_installer::lock::RunLock::acquire(&t.genconf.join("state"), "tarmac preflight")
            .is_err()
    );

    // Cancel: the run ends, the lock is free, the host is not ok.
    assert_eq!(
        t.send("POST", "/api/v1/run/cancel", json!({})).await.status,
        StatusCode::ACCEPTED
    );
    let s = wait_state(&t, "finished").await;
    assert_eq!(s["run"]["hosts"][0]["host"], format!("127.0.0.1:{port}"));
    assert_ne!(s["run"]["hosts"][0]["status"], "ok");
    assert!(s["busy"].is_null(), "{s}");
    assert_eq!(
        s["default_batch"],
        tarmac_installer::upgrade::DEFAULT_BATCH,
        "{s}"
    );
    assert_eq!(s["stages"]["status"]["ok"], false);
    assert_eq!(
        t.send("POST", "/api/v1/run/cancel", json!({})).await.status,
        StatusCode::CONFLICT
    );

    // Uninstall needs confirmation; retry needs something to retry.
    let r = t.send("POST", "/api/v1/stages/uninstall", json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"].as_str().unwrap().contains("confirm"));
    let r = t
        .send("POST", "/api/v1/stages/deploy/retry", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("no earlier `deploy` run"),
        "{}",
        r.text()
    );
    let r = t.send("POST", "/api/v1/stages/nonsense", json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Errors before any host is contacted end the run with the message (no serve/ yet).
    let r = t.send("POST", "/api/v1/stages/deploy", json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let s = wait_state(&t, "error").await;
    assert!(
        s["run"]["error"]
            .as_str()
            .unwrap()
            .contains("tarmac genconf"),
        "{s}"
    );
}

/// Read SSE frames until `pred` holds on what was read (or panic after a while).
async fn read_sse(body: Body, pred: impl Fn(&str) -> bool) -> String {
    let mut body = body;
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !pred(&text) {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("SSE timed out")
            .expect("stream ended")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    text
}

fn notice(i: usize) -> Event {
    Event::Notice {
        level: Level::Info,
        message: format!("n{i}"),
    }
}

#[tokio::test]
async fn sse_resumes_with_last_event_id() {
    let t = T::with_buffer(100).await;
    for i in 1..=5 {
        t.app.hub.emit(notice(i));
    }
    // Resume after id 3: ids 4 and 5, in one batch whose id is the last.
    let req = t
        .req("GET", "/api/v1/events")
        .header("last-event-id", "3")
        .body(Body::empty())
        .unwrap();
    let resp = router(t.app.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let text = read_sse(resp.into_body(), |s| s.contains("\n\n")).await;
    assert!(text.contains("event: batch\n"), "{text}");
    assert!(text.contains("id: 5\n"), "{text}");
    assert!(
        text.contains(
            r#"{"id":4,"kind":"event","data":{"type":"notice","level":"info","message":"n4"}}"#
        ),
        "{text}"
    );
    assert!(text.contains(r#""id":5"#), "{text}");
    assert!(!text.contains(r#""id":3"#), "{text}");

    // Live events follow, with their ids; `?after=` works like the header.
    let req = t
        .req("GET", "/api/v1/events?after=5")
        .body(Body::empty())
        .unwrap();
    let resp = router(t.app.clone()).oneshot(req).await.unwrap();
    let hub = t.app.hub.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        hub.emit(notice(6));
    });
    let text = read_sse(resp.into_body(), |s| s.contains("id: 6\n")).await;
    assert!(text.contains("\"n6\""), "{text}");
    assert!(!text.contains("\"n5\""), "{text}");

    // Too old (evicted from the ring) or from another server: reset, then live.
    for i in 7..=300 {
        t.app.hub.emit(notice(i));
    }
    for last in ["3", "99999"] {
        let req = t
            .req("GET", "/api/v1/events")
            .header("last-event-id", last)
            .body(Body::empty())
            .unwrap();
        let resp = router(t.app.clone()).oneshot(req).await.unwrap();
        let text = read_sse(resp.into_body(), |s| s.contains("\n\n")).await;
        assert!(text.starts_with("event: reset\n"), "{text}");
        assert!(text.contains("id: 300\n"), "{text}");
    }
    // The snapshot says which id it is current to.
    assert_eq!(t.get("/api/v1/state").await.json()["seq"], 300);
}

#[tokio::test]
async fn history_is_the_verified_ledger() {
    use tarmac_installer::ledger::{Ledger, NewEntry, Op, Target};
    let t = T::new().await;
    let state = t.genconf.join("state");
    let r = t.get("/api/v1/history").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"entries": []}));
    let ledger = Ledger::new(&state);
    {
        let lock = tarmac_installer::lock::RunLock::acquire(&state, "test").unwrap();
        for op in [Op::Genconf, Op::Deploy] {
            ledger
                .append(
                    &lock,
                    NewEntry {
                        op,
                        runs: vec![],
                        target_before: None,
                        target_after: Some(Target {
                            list_id: "abc".into(),
                            packages: vec![],
                        }),
                        bootstrap_id: None,
                        config_id: None,
                        complete: true,
                        hosts: Default::default(),
                    },
                )
                .unwrap();
        }
    }
    let v = t.get("/api/v1/history").await.json();
    let ops: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["genconf", "deploy"]);
    let path = state.join("ledger.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replacen("\"complete\":true", "\"complete\":false", 1),
    )
    .unwrap();
    let r = t.get("/api/v1/history").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let msg = r.json()["error"].as_str().unwrap().to_owned();
    assert!(msg.contains("is damaged at line 2"), "{msg}");
}

#[tokio::test]
async fn logs_runs_and_archive() {
    let t = T::new().await;
    let state = t.genconf.join("state");
    std::fs::create_dir_all(state.join("runs")).unwrap();
    std::fs::create_dir_all(state.join("logs/deploy-1/deploy")).unwrap();
    std::fs::write(
        state.join("runs/deploy-1.json"),
        json!({"run_id": "deploy-1", "stage": "deploy", "started_unix": 5, "finished_unix": 9,
               "summary": {"total": 2, "ok": 1, "unchanged": 0, "failed": 1, "unreachable": 0, "timed_out": 0, "cancelled": 0, "skipped": 0},
               "hosts": {"10.0.0.1": {"role": "master", "outcome": {"status": "ok"}},
                         "10.0.0.2": {"role": "agent", "failed_step": "install", "outcome": {"status": "failed", "message": "boom"}, "tail": ["last words"]}}})
        .to_string(),
    )
    .unwrap();
    std::fs::write(state.join("runs/last-deploy"), "deploy-1").unwrap();
    std::fs::write(
        state.join("logs/deploy-1/deploy/10.0.0.2.log"),
        "the full log\n",
    )
    .unwrap();

    let r = t.get("/api/v1/runs/deploy-1/logs/10.0.0.2").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "the full log\n");
    assert_eq!(
        t.get("/api/v1/runs/deploy-1/logs/10.0.0.9").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.get("/api/v1/runs/..%2Fx/logs/10.0.0.2").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.get("/api/v1/runs/nope").await.status,
        StatusCode::NOT_FOUND
    );
    let list = t.get("/api/v1/runs").await.json();
    assert_eq!(list[0]["run_id"], "deploy-1");
    assert_eq!(list[0]["hosts"], 2);
    let run = t.get("/api/v1/runs/deploy-1").await.json();
    assert_eq!(run["hosts"]["10.0.0.2"]["failed_step"], "install");
    let st = t.get("/api/v1/state").await.json();
    assert_eq!(st["stages"]["deploy"]["ok"], false);
    assert_eq!(st["stages"]["deploy"]["unsuccessful"], json!(["10.0.0.2"]));

    let r = t.get("/api/v1/logs/archive").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains(".tar.zst")
    );
    let tar_bytes = zstd::decode_all(&r.body[..]).unwrap();
    let mut ar = tar::Archive::new(&tar_bytes[..]);
    let mut names = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        if name == "logs/deploy-1/deploy/10.0.0.2.log" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            assert_eq!(s, "the full log\n");
        }
        names.push(name);
    }
    assert!(
        names.contains(&"runs/deploy-1.json".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"logs/deploy-1/deploy/10.0.0.2.log".to_owned()),
        "{names:?}"
    );
}

#[tokio::test]
async fn openapi_documents_every_route() {
    let t = T::new().await;
    let doc = t.get("/api/v1/openapi.json").await.json();
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/info",
        "/api/v1/schema",
        "/api/v1/config",
        "/api/v1/config/validate",
        "/api/v1/ip-detect",
        "/api/v1/ssh-key",
        "/api/v1/sudo-password",
        "/api/v1/state",
        "/api/v1/stages/{stage}",
        "/api/v1/stages/{stage}/retry",
        "/api/v1/upgrade",
        "/api/v1/upgrade/plan",
        "/api/v1/rollback",
        "/api/v1/snapshots",
        "/api/v1/backup",
        "/api/v1/restore",
        "/api/v1/remove-hosts",
        "/api/v1/replace-master",
        "/api/v1/change/resume",
        "/api/v1/run/cancel",
        "/api/v1/runs",
        "/api/v1/history",
        "/api/v1/runs/{run_id}",
        "/api/v1/runs/{run_id}/logs/{host}",
        "/api/v1/logs/archive",
        "/api/v1/events",
        "/api/v1/cluster",
        "/api/v1/openapi.json",
    ] {
        assert!(paths.contains_key(p), "{p} is not documented");
    }
    assert!(paths["/api/v1/config"]["put"]["responses"]["400"].is_object());
    assert!(paths["/api/v1/stages/{stage}"]["post"]["responses"]["409"].is_object());
    assert!(doc["components"]["schemas"]["ConfigView"].is_object());
    assert!(paths["/api/v1/upgrade"]["post"]["responses"]["409"].is_object());
    assert!(paths["/api/v1/upgrade/plan"]["post"]["responses"]["200"].is_object());
    for s in [
        "UpgradeRequest",
        "RollbackRequest",
        "PlanView",
        "UpgradeView",
        "BackupRequest",
        "RestoreRequest",
        "RemoveHostsRequest",
        "ReplaceMasterRequest",
        "SnapshotsView",
    ] {
        assert!(doc["components"]["schemas"][s].is_object(), "{s}");
    }
    // The schema endpoint shows the distribution's parameters with their secrecy.
    let schema = t.get("/api/v1/schema").await.json();
    let pw = schema
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "prometheus_remote_write_password")
        .unwrap();
    assert_eq!(pw["secret"], true);
    assert_eq!(pw["origin"], "distribution");
    let ml = schema
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "master_list")
        .unwrap();
    assert_eq!(ml["type"], "host_list");
    assert_eq!(ml["required"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let st = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(st.success());
    let listener =
        tarmac_web::Listener::bind("127.0.0.1:0".parse().unwrap(), Some((&cert, &key))).unwrap();
    assert!(listener.is_tls());
    let addr = listener.local_addr().unwrap();
    let t = T::build(100, true).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(listener.serve(t.app.clone(), stop.clone()));
    let token = t.app.auth.new_login_token();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-D", "-", "--noproxy", "*"])
            .arg(format!("https://{addr}/login?token={token}"))
            .output()
            .expect("curl")
    })
    .await
    .unwrap();
    let headers = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        headers.starts_with("http/2 303") || headers.starts_with("http/1.1 303"),
        "{headers}"
    );
    assert!(
        headers.contains("set-cookie: tarmac_session=") && headers.contains("; secure"),
        "{headers}"
    );
    stop.cancel();
    server.await.unwrap().unwrap();
    assert!(
        tarmac_web::Listener::bind("127.0.0.1:0".parse().unwrap(), Some((&key, &key))).is_err(),
        "a key is not a certificate"
    );
}

/// `(status, error, errors)` of a refused call.
fn refused(r: &Resp) -> (StatusCode, String, Value) {
    let v = r.json();
    (
        r.status,
        v["error"].as_str().unwrap_or_default().to_owned(),
        v["errors"].clone(),
    )
}

#[tokio::test]
async fn upgrade_and_rollback_options_are_checked_by_field() {
    let t = T::new().await;
    // Options are checked before anything else (no config.yaml yet).
    for (path, body, field, words) in [
        (
            "/api/v1/upgrade",
            json!({"batch": "0"}),
            "batch",
            "a batch is a number ≥ 1",
        ),
        (
            "/api/v1/upgrade",
            json!({"batch": "abc"}),
            "batch",
            "neither a number nor a percentage",
        ),
        (
            "/api/v1/upgrade",
            json!({"batch": 0}),
            "batch",
            "a batch is a number ≥ 1",
        ),
        (
            "/api/v1/upgrade",
            json!({"batch": "101%"}),
            "batch",
            "1%–100%",
        ),
        (
            "/api/v1/upgrade",
            json!({"max_failures": "x"}),
            "max_failures",
            "neither a number nor a percentage",
        ),
        (
            "/api/v1/upgrade",
            json!({"confirm_window": "soon"}),
            "confirm_window",
            "not a duration",
        ),
        (
            "/api/v1/upgrade",
            json!({"confirm_window": "0s"}),
            "confirm_window",
            "must be positive",
        ),
        (
            "/api/v1/upgrade",
            json!({"check_timeout_secs": 0}),
            "check_timeout_secs",
            "at least 1",
        ),
        (
            "/api/v1/rollback",
            json!({"batch": "0", "confirm": true}),
            "batch",
            "a batch is a number ≥ 1",
        ),
        (
            "/api/v1/rollback",
            json!({"max_failures": "200%", "confirm": true}),
            "max_failures",
            "0%–100%",
        ),
    ] {
        let r = t.send("POST", path, body.clone()).await;
        let (status, error, errors) = refused(&r);
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{path} {body}: {}",
            r.text()
        );
        assert!(
            error.contains(&format!("bad `{field}`")),
            "{path} {body}: {error}"
        );
        assert!(
            errors[field].as_str().unwrap_or_default().contains(words),
            "{path} {body}: {errors}"
        );
    }
    let r = t
        .send("POST", "/api/v1/upgrade/plan", json!({"batch": "abc"}))
        .await;
    let (status, error, errors) = refused(&r);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(error.contains("bad `batch`"), "{error}");
    assert!(errors["batch"].is_string());
    // An unknown option is refused, not ignored.
    let r = t
        .send("POST", "/api/v1/upgrade", json!({"batchsize": 5}))
        .await;
    assert!(r.status.is_client_error(), "{}", r.text());
    assert!(r.text().contains("batchsize"), "{}", r.text());
    // A rollback must be confirmed.
    let r = t.send("POST", "/api/v1/rollback", json!({})).await;
    let (status, error, _) = refused(&r);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error.contains("confirm: true"), "{error}");
    // Nothing ran, nothing was written.
    assert_eq!(t.get("/api/v1/state").await.json()["run"]["state"], "idle");
    assert!(!t.genconf.join("state/upgrade.json").exists());
}

#[tokio::test]
async fn upgrade_and_plan_need_genconf_serve() {
    let t = T::new().await;
    t.write("ip-detect", IP_DETECT);
    t.write("config.yaml", &valid_config("127.0.0.1:1"));
    keygen(&t.genconf.join("ssh_key"));
    let r = t
        .send("POST", "/api/v1/upgrade", json!({"batch": "50%"}))
        .await;
    let (status, error, _) = refused(&r);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(
        error.contains("genconf has not produced the serve directory"),
        "{error}"
    );
    assert!(error.contains("Save & generate"), "{error}");
    let r = t
        .send("POST", "/api/v1/upgrade/plan", json!({"batch": 2}))
        .await;
    let (status, plan_error, _) = refused(&r);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(plan_error, error);
    // A host that is not in config.yaml is named (checked after the serve dir exists, so
    // fake one: the plan needs only the latest list id and the list).
    let serve = t.genconf.join("serve");
    std::fs::create_dir_all(serve.join("package_lists")).unwrap();
    std::fs::write(serve.join("cluster-package-list.latest"), "abc\n").unwrap();
    std::fs::write(serve.join("package_lists/abc.package_list.json"), "[]").unwrap();
    std::fs::write(serve.join("install.sh"), "#!/bin/bash\n").unwrap();
    let r = t
        .send(
            "POST",
            "/api/v1/upgrade/plan",
            json!({"hosts": ["10.9.9.9"]}),
        )
        .await;
    let (status, error, _) = refused(&r);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(error, "host `10.9.9.9` is not in config.yaml");
    // An invalid configuration is refused by key, like a stage.
    t.write("config.yaml", "cluster_name: x\n");
    let r = t.send("POST", "/api/v1/upgrade/plan", json!({})).await;
    let (status, _, errors) = refused(&r);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(errors["master_list"].is_string(), "{errors}");
    assert_eq!(t.get("/api/v1/state").await.json()["run"]["state"], "idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_runs_like_a_stage_with_lock_conflict_and_cancel() {
    let t = T::new().await;
    t.write("ip-detect", IP_DETECT);
    let (_silent, port) = silent_listener();
    let master = format!("127.0.0.1:{port}");
    t.write(
        "config.yaml",
        &format!("{}process_timeout: 60s\n", valid_config(&master)),
    );
    keygen(&t.genconf.join("ssh_key"));

    // A CLI run holds the lock: 409 with the holder.
    let lock = tarmac_installer::lock::RunLock::acquire(&t.genconf.join("state"), "tarmac upgrade")
        .unwrap();
    let r = t
        .send("POST", "/api/v1/rollback", json!({"confirm": true}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert_eq!(r.json()["busy"]["holder"]["command"], "tarmac upgrade");
    drop(lock);

    // Started: every host of the run is in the roster, pending until its wave starts.
    let r = t
        .send(
            "POST",
            "/api/v1/rollback",
            json!({"confirm": true, "batch": 2, "max_failures": "10%", "check_timeout_secs": 30, "no_backup": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let v = r.json();
    assert_eq!(v["state"], "started");
    assert_eq!(v["stage"], "rollback");
    assert_eq!(v["roster"], json!([{"host": master, "role": "master"}]));
    let s = wait_state(&t, "running").await;
    assert_eq!(s["run"]["stage"], "rollback");
    assert_eq!(s["run"]["hosts"][0]["host"], master);
    assert_eq!(s["run"]["hosts"][0]["role"], "master");
    assert_eq!(s["busy"]["by"], "this server");
    assert_eq!(s["busy"]["stage"], "rollback");
    // One run at a time, and the CLI is locked out too.
    let r2 = t.send("POST", "/api/v1/stages/status", json!({})).await;
    assert_eq!(r2.status, StatusCode::CONFLICT, "{}", r2.text());
    assert_eq!(r2.json()["busy"]["stage"], "rollback");
    let r3 = t
        .send("POST", "/api/v1/rollback", json!({"confirm": true}))
        .await;
    assert_eq!(r3.status, StatusCode::CONFLICT, "{}", r3.text());
    let mut locked = false;
    for _ in 0..100 {
        if tarmac_installer::lock::RunLock::acquire(&t.genconf.join("state"), "tarmac rollback")
            .is_err()
        {
            locked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(locked, "the run lock was never taken");
    // The first wave's fleet runs (stuck connecting to the silent master).
    for _ in 0..100 {
        let s = t.get("/api/v1/state").await.json();
        if s["run"]["fleets"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = t.get("/api/v1/state").await.json();
    assert_eq!(s["run"]["fleets"], 1, "{s}");
    assert_eq!(s["run"]["phase"], "rollback", "{s}");
    let run_id = s["run"]["run_id"].as_str().unwrap().to_owned();
    assert!(run_id.starts_with("rollback-"), "{run_id}");
    assert!(
        hub_split(&run_id).is_none(),
        "the live view shows the whole run's id: {run_id}"
    );

    // Cancel: the run ends, the lock is free, the host did not roll back.
    assert_eq!(
        t.send("POST", "/api/v1/run/cancel", json!({})).await.status,
        StatusCode::ACCEPTED
    );
    let s = wait_state(&t, "finished").await;
    assert_eq!(s["run"]["stage"], "rollback");
    assert_ne!(s["run"]["hosts"][0]["status"], "ok", "{s}");
    assert_ne!(s["run"]["hosts"][0]["status"], "running", "{s}");
    assert!(s["run"]["summary"]["total"] == 1, "{s}");
    assert_eq!(s["run"]["report"]["state"]["operation"], "rollback", "{s}");
    assert!(s["busy"].is_null(), "{s}");
    // The last rollback is in the state, with its run id (for the logs).
    assert_eq!(s["upgrade"]["operation"], "rollback", "{s}");
    assert_eq!(s["upgrade"]["run_id"], run_id.as_str(), "{s}");
    assert_eq!(s["upgrade"]["hosts"][0]["host"], master);
    assert_eq!(s["upgrade"]["hosts"][0]["role"], "master");
    assert_ne!(s["upgrade"]["hosts"][0]["status"], "ok");
    // The host's log of the whole run is there.
    let r = t.get(&format!("/api/v1/runs/{run_id}/logs/{master}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().contains("host finished"), "{}", r.text());
}

/// `split_fleet_run_id` as the crate exports it.
fn hub_split(id: &str) -> Option<(&str, &str)> {
    tarmac_web::hub::split_fleet_run_id(id)
}

#[tokio::test]
async fn upgrade_logs_are_found_from_the_run_and_its_fleets() {
    let t = T::new().await;
    let state = t.genconf.join("state");
    std::fs::create_dir_all(state.join("runs")).unwrap();
    std::fs::create_dir_all(state.join("logs/upgrade-1700000000-ab/upgrade")).unwrap();
    for (id, host) in [
        ("upgrade-1700000000-ab-001-switch", "10.0.0.1"),
        ("upgrade-1700000000-ab-002-cluster-checks", "10.0.0.1"),
        ("upgrade-1700000000-ab-004-switch", "10.0.0.2"),
    ] {
        std::fs::write(
            state.join(format!("runs/{id}.json")),
            json!({"run_id": id, "stage": "upgrade", "started_unix": 1_700_000_000u64,
                   "hosts": {host: {"role": "master", "outcome": {"status": "ok"}}}})
            .to_string(),
        )
        .unwrap();
    }
    for host in ["10.0.0.1", "10.0.0.2"] {
        std::fs::write(
            state.join(format!("logs/upgrade-1700000000-ab/upgrade/{host}.log")),
            format!("log of {host}\n"),
        )
        .unwrap();
    }
    std::fs::write(
        state.join("upgrade.json"),
        json!({"operation": "upgrade", "target": "abc", "finished": false, "stopped": "interrupted",
               "hosts": {"10.0.0.1": "ok", "10.0.0.2": "untouched"}})
        .to_string(),
    )
    .unwrap();
    for (path, want) in [
        // From a fleet's journal, for a host of that fleet and for one of another fleet.
        (
            "upgrade-1700000000-ab-001-switch/logs/10.0.0.1",
            "log of 10.0.0.1\n",
        ),
        (
            "upgrade-1700000000-ab-001-switch/logs/10.0.0.2",
            "log of 10.0.0.2\n",
        ),
        // From the whole run's id (the live view's), which has no journal of its own.
        ("upgrade-1700000000-ab/logs/10.0.0.2", "log of 10.0.0.2\n"),
    ] {
        let r = t.get(&format!("/api/v1/runs/{path}")).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
        assert_eq!(r.text(), want, "{path}");
    }
    for path in [
        "upgrade-1700000000-ab/logs/10.0.0.9",
        "upgrade-1700000000-ab/logs/..",
        "upgrade-1700000000-zz/logs/10.0.0.1",
        "upgrade-1700000000-ab-001-switch/logs/10.0.0.9",
    ] {
        let r = t.get(&format!("/api/v1/runs/{path}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text());
    }
    let st = t.get("/api/v1/state").await.json();
    assert_eq!(
        st["upgrade"],
        json!({"operation": "upgrade", "target": "abc", "finished": false, "stopped": "interrupted",
               "run_id": "upgrade-1700000000-ab", "started_unix": 1_700_000_000u64,
               "hosts": [{"host": "10.0.0.1", "role": null, "status": "ok"},
                         {"host": "10.0.0.2", "role": null, "status": "untouched"}]})
    );
    // Upgrade fleets are not stages of their own.
    assert!(st["stages"].get("upgrade").is_none());
}

/// sha256 of a file, as the API reports it.
fn sha256_hex(path: &Path) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

#[tokio::test]
async fn path_keys_outside_genconf_are_refused_and_only_metadata_is_shown() {
    let t = T::new().await;
    t.write("ip-detect", IP_DETECT);
    t.write("config.yaml", &valid_config("127.0.0.1"));
    let key = keygen(&t.genconf.join("ssh_key"));
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let before = t.config();
    let refusals = [
        (
            "ssh_known_hosts",
            "genconf/ssh_key",
            "`genconf/ssh_key` is the SSH private key: point ssh_known_hosts at its own file inside genconf/",
        ),
        (
            "ssh_known_hosts",
            "/etc/passwd",
            "`/etc/passwd` must be inside genconf/ when set from the web GUI; edit config.yaml on the controller to point elsewhere",
        ),
        (
            "ip_detect_filename",
            "genconf/../genconf/config.yaml",
            "`genconf/../genconf/config.yaml` is config.yaml itself: point ip_detect_filename at its own file inside genconf/",
        ),
        (
            "ip_detect_filename",
            "genconf/../../x",
            "`genconf/../../x` must be inside genconf/ when set from the web GUI; edit config.yaml on the controller to point elsewhere",
        ),
        (
            "ssh_key_path",
            "genconf/user.config.full.yaml",
            "`genconf/user.config.full.yaml` is a file genconf writes with every secret in clear: point ssh_key_path at its own file inside genconf/",
        ),
        (
            "ssh_known_hosts",
            "genconf/state/runs/x.json",
            "`genconf/state/runs/x.json` is output of the installer (state/ and serve/): point ssh_known_hosts at its own file inside genconf/",
        ),
    ];
    for (key_name, value, message) in refusals {
        let r = t
            .send("PUT", "/api/v1/config", json!({"set": {key_name: value}}))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{value}: {}", r.text());
        assert_eq!(
            r.json(),
            json!({
                "error": "path parameters set from the web GUI must name files inside genconf/",
                "errors": {key_name: message},
                "diagnostics": [],
            })
        );
        // The raw editor and the as-you-type validation say the same.
        let yaml = format!("{}{key_name}: {value}\n", valid_config("127.0.0.1"));
        let r = t.send("PUT", "/api/v1/config", json!({"yaml": yaml})).await;
        assert_eq!(r.json()["errors"][key_name], message);
        let r = t
            .send("POST", "/api/v1/config/validate", json!({"yaml": yaml}))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["valid"], false);
        assert_eq!(r.json()["errors"][key_name], message);
    }
    assert_eq!(t.config(), before, "nothing written");
    // Inside genconf/ is fine.
    let r = t
        .send(
            "PUT",
            "/api/v1/config",
            json!({"set": {"ssh_known_hosts": "genconf/hosts.known"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    // A config.yaml edited on the controller to point elsewhere: metadata only, never the
    // contents; saving other keys still works.
    t.write(
        "config.yaml",
        &format!(
            "{}ssh_known_hosts: /etc/passwd\nip_detect_filename: genconf/ssh_key\n",
            valid_config("127.0.0.1")
        ),
    );
    let passwd = Path::new("/etc/passwd");
    let kh = t.get("/api/v1/known-hosts").await.json();
    assert_eq!(
        kh,
        json!({
            "path": "/etc/passwd",
            "present": true,
            "entries": 0,
            "text": null,
            "managed": false,
            "size": std::fs::metadata(passwd).unwrap().len(),
            "sha256": sha256_hex(passwd),
            "problem": "ssh_known_hosts points outside genconf/ssh_known_hosts: the web GUI shows only its size and sha256 (save from here to use genconf/ssh_known_hosts)",
        })
    );
    let ip = t.get("/api/v1/ip-detect").await.json();
    let key_path = t.genconf.join("ssh_key");
    assert_eq!(
        ip,
        json!({
            "path": key_path.display().to_string(),
            "present": true,
            "script": null,
            "managed": false,
            "size": key.len(),
            "sha256": sha256_hex(&key_path),
            "problem": "ip_detect_filename points outside genconf/ip-detect: the web GUI shows only its size and sha256 (save from here to use genconf/ip-detect)",
        })
    );
    for path in ["/api/v1/config", "/api/v1/known-hosts", "/api/v1/ip-detect"] {
        let text = t.get(path).await.text();
        assert!(
            !text.contains(&key_body[..40]),
            "{path} returned the SSH key"
        );
        assert!(!text.contains("root:x:0:0"), "{path} returned /etc/passwd");
    }
    let r = t
        .send(
            "PUT",
            "/api/v1/config",
            json!({"set": {"cluster_name": "still-saves"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(t.config().contains("ssh_known_hosts: /etc/passwd"));
    // The managed files are shown in full.
    let r = t
        .send("PUT", "/api/v1/ip-detect", json!({"script": IP_DETECT}))
        .await;
    assert_eq!(r.json()["script"], IP_DETECT, "{}", r.text());
    assert_eq!(r.json()["managed"], true);
}

#[tokio::test]
async fn dev_zero_and_non_regular_files_are_refused_quickly() {
    let t = T::new().await;
    t.write(
        "config.yaml",
        &format!(
            "{}ssh_known_hosts: /dev/zero\nip_detect_filename: /dev/zero\nssh_key_path: /dev/zero\n",
            valid_config("127.0.0.1")
        ),
    );
    let started = std::time::Instant::now();
    let v = t.get("/api/v1/config").await.json();
    let hint = "/dev/zero is a character device, not a regular file\nhint: point it at a regular file (the web GUI never reads devices, fifos or directories)";
    assert_eq!(v["known_hosts"]["problem"], hint);
    assert_eq!(v["known_hosts"]["text"], Value::Null);
    assert_eq!(v["ip_detect"]["problem"], hint);
    assert_eq!(v["ssh_key"]["problem"], hint);
    assert_eq!(t.get("/api/v1/known-hosts").await.json()["problem"], hint);
    assert_eq!(t.get("/api/v1/ip-detect").await.json()["problem"], hint);
    // A directory, and a file over the 1 MiB limit.
    std::fs::create_dir(t.genconf.join("ssh_known_hosts")).unwrap();
    t.write("ip-detect", &"#".repeat(1024 * 1024 + 1));
    t.write("config.yaml", &valid_config("127.0.0.1"));
    let v = t.get("/api/v1/config").await.json();
    let gdir = t.genconf.display();
    assert_eq!(
        v["known_hosts"]["problem"],
        format!(
            "{gdir}/ssh_known_hosts is a directory, not a regular file\nhint: point it at a regular file (the web GUI never reads devices, fifos or directories)"
        )
    );
    assert_eq!(
        v["ip_detect"]["problem"],
        format!(
            "{gdir}/ip-detect is 1048577 bytes, more than the 1048576 bytes the web GUI reads\nhint: this is not the file you meant; point the key at the right one in config.yaml"
        )
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn masking_covers_aliases_and_unparsable_text() {
    let t = T::new().await;
    t.write("ip-detect", IP_DETECT);
    let cfg = format!(
        "{}prometheus_remote_write_url: http://127.0.0.1:1/w\nprometheus_remote_write_username: u\nprometheus_remote_write_password: &p hunter2SECRET\ndns_search: [*p, example.com]\n",
        valid_config("127.0.0.1")
    );
    t.write("config.yaml", &cfg);
    let v = t.get("/api/v1/config").await.json();
    assert_eq!(
        v["values"],
        json!({
            "cluster_name": "web-test",
            "bootstrap_url": "http://127.0.0.1:1",
            "master_list": ["127.0.0.1"],
            "prometheus_remote_write_url": "http://127.0.0.1:1/w",
            "prometheus_remote_write_username": "u",
            "prometheus_remote_write_password": "**HIDDEN**",
            "dns_search": ["**HIDDEN**", "example.com"],
        })
    );
    assert_eq!(
        v["yaml"],
        format!(
            "{}prometheus_remote_write_url: http://127.0.0.1:1/w\nprometheus_remote_write_username: u\nprometheus_remote_write_password: &p \"**HIDDEN**\"\ndns_search: [*p, example.com]\n",
            valid_config("127.0.0.1")
        )
    );
    assert!(
        !t.get("/api/v1/config")
            .await
            .text()
            .contains("hunter2SECRET")
    );
    // The masked text saved back keeps the secret and its anchor.
    let yaml = v["yaml"]
        .as_str()
        .unwrap()
        .replace("cluster_name: web-test", "cluster_name: renamed");
    let r = t.send("PUT", "/api/v1/config", json!({"yaml": yaml})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(!r.text().contains("hunter2SECRET"), "{}", r.text());
    assert_eq!(
        t.config(),
        cfg.replace("cluster_name: web-test", "cluster_name: renamed")
    );

    // A message that would quote a secret (a type error through an alias) does not.
    let bad = format!(
        "{}prometheus_remote_write_url: http://127.0.0.1:1/w\nprometheus_remote_write_username: u\nprometheus_remote_write_password: &p hunter2SECRET\nssh_port: *p\n",
        valid_config("127.0.0.1")
    );
    let r = t
        .send("POST", "/api/v1/config/validate", json!({"yaml": bad}))
        .await;
    assert_eq!(r.json()["valid"], false, "{}", r.text());
    assert!(r.json()["errors"]["ssh_port"].is_string(), "{}", r.text());
    assert!(!r.text().contains("hunter2SECRET"), "{}", r.text());
    let r = t.send("PUT", "/api/v1/config", json!({"yaml": bad})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(!r.text().contains("hunter2SECRET"), "{}", r.text());
    // A secret taken from another key through an alias hides that key too.
    let cfg = format!(
        "{}shared: &s hunter2SECRET\nprometheus_remote_write_username: u\nprometheus_remote_write_password: *s\n",
        valid_config("127.0.0.1")
    );
    t.write("config.yaml", &cfg);
    let text = t.get("/api/v1/config").await.text();
    assert!(!text.contains("hunter2SECRET"), "{text}");

    // Unparsable text: quoted keys and block scalars are masked too.
    t.write(
        "config.yaml",
        "master_list: [\n\"prometheus_remote_write_password\": |\n  hunter2SECRET\n  more\ncluster_name: x\n",
    );
    let v = t.get("/api/v1/config").await.json();
    assert_eq!(
        v["yaml"],
        "master_list: [\n\"prometheus_remote_write_password\": \"**HIDDEN**\"\ncluster_name: x\n"
    );
    assert_eq!(v["values"], Value::Null);
}

#[tokio::test]
async fn login_tokens_expire() {
    let t = T::new().await;
    let token = t.app.auth.new_login_token();
    t.clock.advance(tarmac_web::auth::LOGIN_TOKEN_TTL);
    let r = t
        .raw(
            Request::get(format!("/login?token={token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.get(header::SET_COOKIE).is_none());
    assert!(
        r.text().contains("<p>This login link has expired. Open the login URL that <code>tarmac web</code> printed on the terminal where it runs. A login URL works once, within 10 minutes of being printed. To get a new one, send the server <code>SIGUSR1</code> (<code>kill -USR1 &lt;pid&gt;</code>) and it prints a fresh URL, or run <code>tarmac web</code> again.</p>"),
        "{}",
        r.text()
    );
    // A fresh one works.
    let token = t.app.auth.new_login_token();
    t.clock.advance(Duration::from_secs(599));
    let r = t
        .raw(
            Request::get(format!("/login?token={token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn sessions_end_when_idle_and_at_their_lifetime() {
    let limits = AuthLimits {
        login_token_ttl: Duration::from_secs(600),
        session_idle: Duration::from_secs(100),
        session_lifetime: Duration::from_secs(250),
    };
    let t = T::build_with(100, false, limits).await;
    for _ in 0..2 {
        t.clock.advance(Duration::from_secs(90));
        assert_eq!(t.get("/api/v1/info").await.status, StatusCode::OK);
    }
    t.clock.advance(Duration::from_secs(69));
    assert_eq!(t.get("/api/v1/info").await.status, StatusCode::OK, "249 s");
    t.clock.advance(Duration::from_secs(1));
    let r = t.get("/api/v1/info").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "the absolute lifetime");
    // Idle: a new session left alone for 100 s.
    let t = T::build_with(100, false, limits).await;
    t.clock.advance(Duration::from_secs(100));
    assert_eq!(t.get("/").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logout_ends_the_session_and_its_event_stream() {
    let t = T::new().await;
    let events = router(t.app.clone())
        .oneshot(
            t.req("GET", "/api/v1/events?after=0")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    // Without the CSRF header: refused, still signed in.
    let r = t
        .raw(t.req("POST", "/logout").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(t.get("/api/v1/info").await.status, StatusCode::OK);
    let r = t.send("POST", "/logout", json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"signed_out": true}));
    assert_eq!(
        r.headers[header::SET_COOKIE],
        "tarmac_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
    );
    assert_eq!(t.get("/api/v1/info").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(t.get("/").await.status, StatusCode::UNAUTHORIZED);
    // The open stream ends too (it rechecks its session every few seconds).
    let ended = tokio::time::timeout(Duration::from_secs(15), events.into_body().collect()).await;
    assert!(ended.is_ok(), "the event stream outlived its session");
}

#[tokio::test]
async fn requests_for_other_host_names_are_refused() {
    let t = T::new().await;
    for host in ["evil.example", "evil.example:9000", "127.0.0.2:9000"] {
        for path in ["/api/v1/info", "/", "/login?token=x"] {
            let r = t
                .raw(t.req_to(host, "GET", path).body(Body::empty()).unwrap())
                .await;
            assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST, "{host} {path}");
            let name = host.split(':').next().unwrap();
            assert_eq!(
                r.text(),
                format!(
                    "This Tarmac web installer does not answer to the host {host:?} (it answers to 127.0.0.1, [::1], localhost).\nhint: open the URL `tarmac web` printed, or start it with --allowed-host {name} if that is the name you reach it by\n"
                )
            );
            assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
        }
    }
    for host in ["localhost:9000", "127.0.0.1:8000", "[::1]:9000"] {
        let r = t
            .raw(
                t.req_to(host, "GET", "/api/v1/info")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{host}");
    }
}

#[tokio::test]
async fn the_upgrade_plan_is_a_post_that_needs_the_csrf_header() {
    let t = T::new().await;
    t.write("ip-detect", IP_DETECT);
    t.write("config.yaml", &valid_config("127.0.0.1:1"));
    let r = t.get("/api/v1/upgrade/plan").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = t
        .raw(
            t.req("POST", "/api/v1/upgrade/plan")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.json(),
        json!({"error": "missing or wrong X-Tarmac-CSRF header"})
    );
}

/// config.yaml with two masters and two agents (nothing listens at these addresses; every
/// request below is refused before a host is contacted).
fn daytwo_config() -> String {
    "cluster_name: web-test\nbootstrap_url: http://127.0.0.1:1\nmaster_list:\n- 10.9.0.1\n- 10.9.0.2\n- 10.9.0.4\nagent_list:\n- 10.9.0.11\n- 10.9.0.12\n".to_owned()
}

/// A snapshot as `tarmac backup` stores it: `<name>.tar.zst` and its `<name>.json` record.
fn put_snapshot(genconf: &Path, name: &str, taken_unix: u64, body: &[u8]) {
    let dir = genconf
        .join("state")
        .join(tarmac_installer::daytwo::BACKUPS_DIR);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.tar.zst"));
    std::fs::write(&file, body).unwrap();
    let snap = tarmac_installer::daytwo::Snapshot {
        name: name.to_owned(),
        size: body.len() as u64,
        sha256: tarmac_types::Digest::of_file(&file).unwrap().hex(),
        taken_unix,
        host: "10.9.0.1".parse().unwrap(),
        packages: Vec::new(),
        files: vec![("member/snap/db".into(), 3)],
        bootstrap_id: None,
        config_id: Some("c0ffee".into()),
        reason: "backup".into(),
    };
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_vec(&snap).unwrap(),
    )
    .unwrap();
}

fn error_of(r: &Resp) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn snapshots_lists_the_backup_records() {
    let t = T::new().await;
    // No backups directory yet: an empty list, not an error.
    let r = t.get("/api/v1/snapshots").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["snapshots"], json!([]));

    t.write("config.yaml", &daytwo_config());
    t.write("ip-detect", IP_DETECT);
    put_snapshot(&t.genconf, "snap-2", 2_000, b"newer");
    put_snapshot(&t.genconf, "snap-1", 1_000, b"older");
    // A record whose archive is missing is not a snapshot (an interrupted backup).
    put_snapshot(&t.genconf, "half", 3_000, b"x");
    std::fs::remove_file(t.genconf.join("state/backups/half.tar.zst")).unwrap();
    // Other files are ignored.
    std::fs::write(t.genconf.join("state/backups/notes.txt"), "hi").unwrap();

    let v = t.get("/api/v1/snapshots").await.json();
    let names: Vec<&str> = v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["snap-1", "snap-2"], "{v}");
    assert_eq!(v["snapshots"][1]["size"], 5);
    assert_eq!(v["snapshots"][1]["host"], "10.9.0.1");
    assert_eq!(v["snapshots"][1]["taken_unix"], 2_000);
    assert_eq!(v["snapshots"][1]["reason"], "backup");
    assert_eq!(v["snapshots"][1]["config_id"], "c0ffee");
    assert_eq!(v["masters"], json!(["10.9.0.1", "10.9.0.2", "10.9.0.4"]));
    assert!(v["dir"].as_str().unwrap().ends_with("state/backups"), "{v}");
}

#[tokio::test]
async fn restore_validates_the_snapshot_and_needs_confirm() {
    let t = T::new().await;
    t.write("config.yaml", &daytwo_config());
    t.write("ip-detect", IP_DETECT);
    put_snapshot(&t.genconf, "snap-1", 1_000, b"older");

    let r = t
        .send(
            "POST",
            "/api/v1/restore",
            json!({"snapshot": "nope", "confirm": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(error_of(&r).contains("no snapshot `nope`"), "{}", r.text());

    let r = t
        .send("POST", "/api/v1/restore", json!({"confirm": true}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.json()["errors"]["snapshot"].is_string(), "{}", r.text());

    // Only names, never paths (the web does not restore arbitrary files).
    let r = t
        .send(
            "POST",
            "/api/v1/restore",
            json!({"snapshot": "../backups/snap-1", "confirm": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(error_of(&r).contains("not a path"), "{}", r.text());

    // Known, but not confirmed: the refusal names the snapshot and the masters.
    let r = t
        .send("POST", "/api/v1/restore", json!({"snapshot": "snap-1"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let e = error_of(&r);
    assert!(e.contains("confirm: true"), "{e}");
    assert!(
        e.contains("snap-1") && e.contains("10.9.0.1, 10.9.0.2, 10.9.0.4"),
        "{e}"
    );

    // A damaged archive is refused before anything starts.
    std::fs::write(t.genconf.join("state/backups/snap-1.tar.zst"), b"OLDER").unwrap();
    let r = t
        .send(
            "POST",
            "/api/v1/restore",
            json!({"snapshot": "snap-1", "confirm": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(error_of(&r).contains("altered or damaged"), "{}", r.text());
    // Nothing was started.
    assert_eq!(t.get("/api/v1/state").await.json()["busy"], Value::Null);
}

#[tokio::test]
async fn remove_hosts_validates_its_input() {
    let t = T::new().await;
    t.write("config.yaml", &daytwo_config());
    t.write("ip-detect", IP_DETECT);
    let post = |b: Value| t.send("POST", "/api/v1/remove-hosts", b);

    let r = post(json!({"hosts": [], "confirm": true})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(error_of(&r).contains("`hosts` is empty"), "{}", r.text());

    let r = post(json!({"hosts": ["10.9.0.11", "10.9.9.9"], "confirm": true})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(
        error_of(&r).contains("`10.9.9.9` is not in config.yaml"),
        "{}",
        r.text()
    );
    assert!(r.json()["errors"]["hosts"].is_string(), "{}", r.text());

    let r = post(json!({"hosts": ["not a host!"], "confirm": true})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());

    let r = post(json!({"hosts": ["10.9.0.1", "10.9.0.2", "10.9.0.4"], "confirm": true})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(error_of(&r).contains("without masters"), "{}", r.text());

    let r = post(json!({"hosts": ["10.9.0.11"], "force": true})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let e = error_of(&r);
    assert!(
        e.contains("confirm: true") && e.contains("10.9.0.11"),
        "{e}"
    );
    assert!(e.contains("without cleaning"), "{e}");

    let r = post(json!({"hosts": ["10.9.0.11"], "confirm": true, "nonsense": 1})).await;
    assert!(r.status.is_client_error(), "{}", r.text());

    // Nothing ran and config.yaml is untouched.
    assert_eq!(t.config(), daytwo_config());
    assert_eq!(t.get("/api/v1/state").await.json()["busy"], Value::Null);
}

#[tokio::test]
async fn replace_master_validates_its_input() {
    let t = T::new().await;
    t.write("config.yaml", &daytwo_config());
    t.write("ip-detect", IP_DETECT);
    let post = |b: Value| t.send("POST", "/api/v1/replace-master", b);

    // NEW already in config.yaml.
    let r = post(json!({"old": "10.9.0.1", "new": "10.9.0.11", "confirm": true})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(
        error_of(&r).contains("`10.9.0.11` is already in config.yaml as agent"),
        "{}",
        r.text()
    );
    assert!(r.json()["errors"]["new"].is_string(), "{}", r.text());
    let r = post(json!({"old": "10.9.0.1", "new": "10.9.0.2", "confirm": true})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(error_of(&r).contains("as master"), "{}", r.text());

    // OLD unknown, or not a master.
    let r = post(json!({"old": "10.9.9.9", "new": "10.9.0.3", "confirm": true})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(error_of(&r).contains("not in config.yaml"), "{}", r.text());
    let r = post(json!({"old": "10.9.0.11", "new": "10.9.0.3", "confirm": true})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(error_of(&r).contains("not a master"), "{}", r.text());

    // Missing fields, the same host twice, no confirmation.
    let r = post(json!({"old": "10.9.0.1", "confirm": true})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.json()["errors"]["new"].is_string(), "{}", r.text());
    let r = post(json!({"old": "10.9.0.1", "new": "10.9.0.1", "confirm": true})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let r = post(json!({"old": "10.9.0.1", "new": "10.9.0.3"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let e = error_of(&r);
    assert!(e.contains("confirm: true") && e.contains("10.9.0.3"), "{e}");

    let r = t.send("POST", "/api/v1/backup", json!({"keep": 0})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.json()["errors"]["keep"].is_string(), "{}", r.text());

    assert_eq!(t.config(), daytwo_config());
    assert_eq!(t.get("/api/v1/state").await.json()["busy"], Value::Null);
}

#[tokio::test]
async fn an_unfinished_membership_change_is_shown_refuses_others_and_can_be_resumed() {
    let t = T::new().await;
    t.write("config.yaml", &daytwo_config());
    t.write("ip-detect", IP_DETECT);
    // Nothing recorded: nothing to resume.
    let r = t
        .send("POST", "/api/v1/change/resume", json!({"confirm": true}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(
        error_of(&r).contains("no unfinished membership change"),
        "{}",
        r.text()
    );
    assert_eq!(
        t.get("/api/v1/snapshots").await.json()["change"],
        Value::Null
    );

    // A remove-hosts that stopped at genconf.
    std::fs::create_dir_all(t.genconf.join("state")).unwrap();
    std::fs::write(
        t.genconf.join("state/change.json"),
        json!({
            "change": {"op": "remove-hosts", "hosts": ["10.9.0.11"], "force": false},
            "step": "genconf", "started_unix": 1000, "updated_unix": 1010,
            "gone": ["10.9.0.11"], "attempts": 1
        })
        .to_string(),
    )
    .unwrap();
    let v = t.get("/api/v1/snapshots").await.json();
    assert_eq!(v["change"]["command"], "remove-hosts 10.9.0.11", "{v}");
    assert_eq!(v["change"]["step"], "genconf", "{v}");
    assert_eq!(v["change"]["unfinished"], true, "{v}");

    // Another change is refused, naming the unfinished one.
    let r = t
        .send(
            "POST",
            "/api/v1/remove-hosts",
            json!({"hosts": ["10.9.0.12"], "confirm": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let e = error_of(&r);
    assert!(
        e.contains("`remove-hosts 10.9.0.11` stopped at its genconf step and is not finished"),
        "{e}"
    );
    // Resume needs a confirmation and a valid batch.
    let r = t.send("POST", "/api/v1/change/resume", json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(
        error_of(&r).contains("continues `remove-hosts 10.9.0.11` at its genconf step"),
        "{}",
        r.text()
    );
    let r = t
        .send(
            "POST",
            "/api/v1/change/resume",
            json!({"confirm": true, "batch": "lots"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.json()["errors"]["batch"].is_string(), "{}", r.text());
    assert_eq!(t.get("/api/v1/state").await.json()["busy"], Value::Null);
}
