//! A real headless browser for the tests: Debian's `chromium` driven by its `chromedriver`
//! through the W3C WebDriver protocol. The client is the handful of WebDriver calls the board
//! tests need, spoken as JSON over reqwest (already a dependency), rather than a WebDriver
//! crate and its HTTP stack compiled for eight calls.
//!
//! `Driver::start` runs chromedriver on a free loopback port and stops it on drop; each
//! `Browser` is a session with a fresh profile folder, closed on drop. Outside CI a missing
//! browser is a skip said aloud (`helpers::program`); under CI it is a failure.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use super::helpers::{free_port, program};

/// The key W3C WebDriver uses for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Only one browser runs at a time: the machine has two cores, shared.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Driver {
    child: Child,
    base: String,
    chromium: std::path::PathBuf,
    client: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    /// chromedriver on a free port, ready; None (said aloud) when the browser is missing
    /// outside CI.
    pub async fn start() -> Option<Driver> {
        let chromium = program("chromium")?;
        let chromedriver = program("chromedriver")?;
        let port = free_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            chromium,
            client: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = driver
                .client
                .get(format!("{}/status", driver.base))
                .send()
                .await
                .ok();
            if let Some(r) = ready
                && let Ok(v) = r.json_value().await
                && v["value"]["ready"] == json!(true)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(driver)
    }

    /// A new browser session with a fresh profile and the given window size (at least 500
    /// wide: headless Chromium's narrowest window).
    pub async fn browser(&self, width: u32, height: u32) -> Browser {
        self.session(width, height, json!({})).await
    }

    /// A session that emulates a phone's screen (`width` × `height` CSS pixels).
    pub async fn phone(&self, width: u32, height: u32) -> Browser {
        self.session(
            width.max(500),
            height,
            json!({"deviceMetrics": {"width": width, "height": height, "pixelRatio": 1.0, "mobile": true}}),
        )
        .await
    }

    async fn session(&self, width: u32, height: u32, mobile: Value) -> Browser {
        let profile = tempfile::tempdir().expect("profile folder");
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--hide-scrollbars".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut options = json!({"binary": self.chromium, "args": args});
        if mobile.as_object().is_some_and(|m| !m.is_empty()) {
            options["mobileEmulation"] = mobile;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options,
        }}});
        let v = post(&self.client, &format!("{}/session", self.base), &caps).await;
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Browser {
            client: self.client.clone(),
            url: format!("{}/session/{id}", self.base),
            _profile: profile,
        }
    }
}

trait JsonValue {
    async fn json_value(self) -> reqwest::Result<Value>;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> reqwest::Result<Value> {
        let bytes = self.bytes().await?;
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Value {
    client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("WebDriver POST {url}: {e}"))
        .json_value()
        .await
        .expect("WebDriver answer")
}

async fn get(client: &reqwest::Client, url: &str) -> Value {
    client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("WebDriver GET {url}: {e}"))
        .json_value()
        .await
        .expect("WebDriver answer")
}

/// One WebDriver session.
pub struct Browser {
    client: reqwest::Client,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Close the session (and its chromium) without an async context.
        let url = self.url.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    let _ = reqwest::Client::new().delete(url).send().await;
                });
            }
        })
        .join();
    }
}

fn ok(v: Value, what: &str) -> Value {
    if v["value"].get("error").is_some() {
        panic!("WebDriver {what}: {}", v["value"]);
    }
    v["value"].clone()
}

impl Browser {
    pub async fn goto(&self, url: &str) {
        ok(
            post(
                &self.client,
                &format!("{}/url", self.url),
                &json!({"url": url}),
            )
            .await,
            "navigate",
        );
    }

    /// Runs a script in the page and returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        ok(
            post(
                &self.client,
                &format!("{}/execute/sync", self.url),
                &json!({"script": script, "args": []}),
            )
            .await,
            "execute",
        )
    }

    /// The text content of the first element matching `css`, or None.
    pub async fn text(&self, css: &str) -> Option<String> {
        let v = self
            .eval(&format!(
                "var e = document.querySelector({}); return e ? e.textContent : null;",
                json!(css)
            ))
            .await;
        v.as_str().map(str::to_string)
    }

    /// The page's visible text.
    pub async fn body_text(&self) -> String {
        self.eval("return document.body.innerText;")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn current_url(&self) -> String {
        ok(get(&self.client, &format!("{}/url", self.url)).await, "url")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn element(&self, css: &str) -> String {
        let v = ok(
            post(
                &self.client,
                &format!("{}/element", self.url),
                &json!({"using": "css selector", "value": css}),
            )
            .await,
            "find element",
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    /// Types `text` into the element matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        ok(
            post(
                &self.client,
                &format!("{}/element/{e}/value", self.url),
                &json!({"text": text}),
            )
            .await,
            "send keys",
        );
    }

    pub async fn click(&self, css: &str) {
        let e = self.element(css).await;
        ok(
            post(
                &self.client,
                &format!("{}/element/{e}/click", self.url),
                &json!({}),
            )
            .await,
            "click",
        );
    }

    /// The text of an open alert dialog, if a script opened one.
    pub async fn alert_text(&self) -> Option<String> {
        let v = get(&self.client, &format!("{}/alert/text", self.url)).await;
        v["value"].as_str().map(str::to_string)
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let v = ok(
            get(&self.client, &format!("{}/screenshot", self.url)).await,
            "screenshot",
        );
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 screenshot"))
            .expect("a PNG")
    }

    /// Waits up to `limit` for `script` to return true; returns how long it took.
    pub async fn wait_for(&self, script: &str, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        loop {
            if self.eval(script).await == json!(true) {
                return Some(start.elapsed());
            }
            if start.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
