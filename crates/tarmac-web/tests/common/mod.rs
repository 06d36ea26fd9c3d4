//! Headless Chromium for the browser tests: chromedriver started by the test (optionally
//! inside a lab's control network namespace), driven over WebDriver with fantoccini.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Where screenshots go: `target/e2e-artifacts/`.
pub fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    // target/debug/deps/<test> → target/
    let target = exe.ancestors().nth(3).expect("target dir").to_owned();
    let dir = target.join("e2e-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/e2e-artifacts");
    dir
}

/// `target/debug/` (where `cargo build --bins` puts tarmac and tarmac-host).
pub fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .expect("test exe")
        .ancestors()
        .nth(2)
        .expect("profile dir")
        .to_owned()
}

/// The `tarmac-host` the browser tests ship in their bootstrap: the portable build (glibc >=
/// 2.17) in `$TARMAC_PORTABLE_BIN_DIR` when it is set (scripts/test.sh builds it and sets it),
/// else the one in [`bin_dir`].
pub fn host_binary() -> PathBuf {
    match std::env::var_os("TARMAC_PORTABLE_BIN_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => {
            let p = PathBuf::from(dir).join("tarmac-host");
            assert!(
                p.is_file(),
                "TARMAC_PORTABLE_BIN_DIR is set but {} is missing\nhint: run scripts/build-portable.sh",
                p.display()
            );
            p
        }
        None => bin_dir().join("tarmac-host"),
    }
}

pub fn require_chromium() {
    assert!(
        Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
        "the browser tests need Debian's chromium and chromium-driver\nhint: apt-get install -y --no-install-recommends chromium chromium-driver"
    );
}

/// A free TCP port on loopback (of the caller's network namespace).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Start chromedriver from `cmd` (e.g. `Command::new(CHROMEDRIVER)` or the lab's
    /// `ctl_command(CHROMEDRIVER)`) on `port` and open a headless session. The caller must
    /// be in the same network namespace as chromedriver.
    pub async fn start(mut cmd: Command, port: u16, log_name: &str) -> Browser {
        require_chromium();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let log = std::fs::File::create(artifacts().join(log_name)).unwrap();
        use std::os::unix::process::CommandExt;
        let driver = cmd
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                    "--window-size=1400,1100",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last_err = String::new();
        for _ in 0..100 {
            match ClientBuilder::rustls()
                .expect("rustls")
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Browser {
                        client,
                        driver,
                        _profile: profile,
                    };
                }
                Err(e) => last_err = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("cannot open a chromedriver session at {url}: {last_err}");
    }

    pub async fn css(&self, sel: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(sel))
            .await
            .unwrap_or_else(|e| panic!("no element `{sel}`: {e}"))
    }

    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Poll `expr` (a JS expression) until it is truthy.
    pub async fn wait_for(&self, expr: &str, timeout: Duration, what: &str) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let v = self.js(&format!("return !!({expr});")).await;
            if v == Value::Bool(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                self.screenshot(&format!("timeout-{}.png", what.replace(' ', "-")))
                    .await;
                let body = self
                    .js("return document.querySelector('main').innerText")
                    .await;
                panic!(
                    "timed out waiting for {what} ({expr})\npage:\n{}",
                    body.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Replace an input's or textarea's content by typing.
    pub async fn fill(&self, sel: &str, text: &str) {
        let el = self.css(sel).await;
        el.clear().await.unwrap();
        if !text.is_empty() {
            el.send_keys(text).await.unwrap();
        }
    }

    /// Scroll the element to the middle of the window (clear of the sticky header and
    /// action bar) and click it.
    pub async fn click(&self, sel: &str) {
        let el = self.css(sel).await;
        let arg = serde_json::to_value(&el).expect("element as JSON");
        let _ = self
            .client
            .execute("arguments[0].scrollIntoView({block: 'center'});", vec![arg])
            .await;
        el.click()
            .await
            .unwrap_or_else(|e| panic!("click `{sel}`: {e}"));
    }

    /// Screenshot of the whole page into target/e2e-artifacts/.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        // Grow the window to the page so the screenshot shows all of it.
        let h = self
            .js("return Math.min(4000, Math.max(document.documentElement.scrollHeight, 900));")
            .await
            .as_u64()
            .unwrap_or(1100);
        let _ = self.client.set_window_size(1400, h as u32 + 120).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let png = self.client.screenshot().await.expect("screenshot");
        let path = artifacts().join(name);
        std::fs::write(&path, png).unwrap();
        let _ = self.client.set_window_size(1400, 1100).await;
        path
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    /// chromedriver runs in its own process group with the browsers it started: end them all.
    fn drop(&mut self) {
        let pgid = self.driver.id() as i32;
        // SAFETY: kill(2) on the process group this test created.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.driver.wait();
    }
}
