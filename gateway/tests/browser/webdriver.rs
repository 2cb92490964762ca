//! A small W3C WebDriver client (JSON over HTTP with reqwest) and the
//! set-up of chromedriver and a headless Chromium for the browser test.
//! Only the few commands the test needs; every call is bounded in time.

use anyhow::{anyhow, bail, Context};
use reqwest::{Client, Method};
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest time one WebDriver command may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long chromedriver may take to answer `/status` as ready.
const DRIVER_START: Duration = Duration::from_secs(30);

/// The key WebDriver uses for element references.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The switches Chromium runs with: headless, and nothing that reaches for
/// the network on its own (the test machine has none).
pub const CHROMIUM_ARGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
];

/// How to install what is missing.
const INSTALL_HINT: &str = "On Debian or Ubuntu: `sudo apt-get update && sudo apt-get install -y chromium chromium-driver` \
     (scripts/test.sh does this itself when run as root), or set AIRQ_CHROMIUM and AIRQ_CHROMEDRIVER to the binaries.";

/// The Chromium and chromedriver binaries.
pub struct Tools {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

impl Tools {
    /// `AIRQ_CHROMIUM` / `AIRQ_CHROMEDRIVER`, else `chromium` (or
    /// `chromium-browser`) and `chromedriver` on `PATH`. The error says
    /// what is missing and how to install it.
    pub fn find() -> Result<Tools, String> {
        let chromium = from_env_or_path("AIRQ_CHROMIUM", &["chromium", "chromium-browser"]);
        let chromedriver = from_env_or_path("AIRQ_CHROMEDRIVER", &["chromedriver"]);
        match (chromium, chromedriver) {
            (Some(chromium), Some(chromedriver)) => Ok(Tools {
                chromium,
                chromedriver,
            }),
            (chromium, chromedriver) => {
                let missing: Vec<&str> = [
                    chromium.is_none().then_some("Chromium (`chromium`)"),
                    chromedriver.is_none().then_some("chromedriver"),
                ]
                .into_iter()
                .flatten()
                .collect();
                Err(format!(
                    "the browser test drives a real headless Chromium, but {} was not found. {INSTALL_HINT}",
                    missing.join(" and ")
                ))
            }
        }
    }
}

fn from_env_or_path(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p)).filter(|p| is_executable(p));
    }
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| is_executable(p))
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn http() -> Client {
    Client::builder()
        .timeout(CALL_TIMEOUT)
        .no_proxy()
        .build()
        .expect("an HTTP client")
}

/// A running chromedriver, in its own process group, killed (with the
/// browsers it started) when dropped.
pub struct Driver {
    child: Child,
    base: String,
    http: Client,
}

impl Driver {
    /// Starts chromedriver on a free loopback port and waits until ready.
    pub async fn start(chromedriver: &Path) -> anyhow::Result<Driver> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port")?
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", chromedriver.display()))?;
        let mut driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: http(),
        };
        let deadline = Instant::now() + DRIVER_START;
        loop {
            if let Ok(Some(status)) = driver.child.try_wait() {
                bail!("chromedriver exited at start: {status}");
            }
            let ready = driver
                .http
                .get(format!("{}/status", driver.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if let Ok(r) = ready {
                let v: Value = r.json().await.unwrap_or_default();
                if v["value"]["ready"] == true {
                    return Ok(driver);
                }
            }
            if Instant::now() > deadline {
                bail!("chromedriver was not ready within {DRIVER_START:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts a headless Chromium with a fresh profile in `profile`, saving
    /// downloads to `downloads`, and a window of `width` × `height`.
    pub async fn session(
        &self,
        chromium: &Path,
        profile: &Path,
        downloads: &Path,
        (width, height): (u32, u32),
    ) -> anyhow::Result<Session> {
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push(format!("--window-size={width},{height}"));
        args.push("--lang=en-GB".into());
        args.push("--no-proxy-server".into());
        args.push("--disable-breakpad".into());
        let downloads = downloads.to_str().context("a UTF-8 download path")?;
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "timeouts": {"script": 30_000, "pageLoad": 30_000, "implicit": 0},
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": args,
                        "prefs": {
                            "download.default_directory": downloads,
                            "download.prompt_for_download": false,
                            "download.directory_upgrade": true,
                        },
                    },
                }
            }
        });
        let v = call(
            &self.http,
            Method::POST,
            &format!("{}/session", self.base),
            Some(caps),
        )
        .await
        .context("starting Chromium (new WebDriver session)")?;
        let id = v["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no session id in {v}"))?;
        let session = Session {
            http: self.http.clone(),
            base: format!("{}/session/{id}", self.base),
        };
        // Headless Chromium saves downloads only when told where.
        session
            .cdp(
                "Browser.setDownloadBehavior",
                json!({"behavior": "allow", "downloadPath": downloads}),
            )
            .await?;
        Ok(session)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and any browser it left behind.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one WebDriver command; the `value` of the answer, or its error.
async fn call(
    http: &Client,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut req = http.request(method.clone(), url);
    req = match body {
        Some(b) => req.json(&b),
        None if method == Method::POST => req.json(&json!({})),
        None => req,
    };
    let r = req
        .send()
        .await
        .with_context(|| format!("WebDriver {method} {url}"))?;
    let status = r.status();
    let v: Value = r
        .json()
        .await
        .with_context(|| format!("WebDriver {method} {url}: answer not JSON"))?;
    let value = v.get("value").cloned().unwrap_or(Value::Null);
    if !status.is_success() || value.get("error").is_some_and(|e| !e.is_null()) {
        bail!(
            "WebDriver {method} {url}: {status} {}: {}",
            value["error"].as_str().unwrap_or("?"),
            value["message"].as_str().unwrap_or("")
        );
    }
    Ok(value)
}

/// An element of the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Element {
    fn reference(&self) -> Value {
        json!({ ELEMENT_KEY: self.0 })
    }
}

/// One browser session.
pub struct Session {
    http: Client,
    base: String,
}

impl Session {
    async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        call(&self.http, method, &format!("{}{path}", self.base), body).await
    }

    /// A Chrome DevTools Protocol command, through chromedriver.
    pub async fn cdp(&self, cmd: &str, params: Value) -> anyhow::Result<Value> {
        self.cmd(
            Method::POST,
            "/goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
        .await
        .with_context(|| format!("CDP {cmd}"))
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.cmd(Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .map(drop)
    }

    pub async fn current_url(&self) -> anyhow::Result<String> {
        let v = self.cmd(Method::GET, "/url", None).await?;
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("URL not a string: {v}"))
    }

    pub async fn set_window_size(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.cmd(
            Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await
        .map(drop)
    }

    pub async fn find(&self, css: &str) -> anyhow::Result<Element> {
        let v = self
            .cmd(
                Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await
            .with_context(|| format!("finding {css}"))?;
        element(&v)
    }

    pub async fn find_all(&self, css: &str) -> anyhow::Result<Vec<Element>> {
        let v = self
            .cmd(
                Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await
            .with_context(|| format!("finding {css}"))?;
        v.as_array()
            .ok_or_else(|| anyhow!("not a list: {v}"))?
            .iter()
            .map(element)
            .collect()
    }

    pub async fn click(&self, e: &Element) -> anyhow::Result<()> {
        self.cmd(Method::POST, &format!("/element/{}/click", e.0), None)
            .await
            .map(drop)
    }

    pub async fn clear(&self, e: &Element) -> anyhow::Result<()> {
        self.cmd(Method::POST, &format!("/element/{}/clear", e.0), None)
            .await
            .map(drop)
    }

    /// Types `text` into `e` (focusing it first); `\u{E007}` is Enter.
    pub async fn send_keys(&self, e: &Element, text: &str) -> anyhow::Result<()> {
        self.cmd(
            Method::POST,
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        )
        .await
        .map(drop)
    }

    pub async fn text(&self, e: &Element) -> anyhow::Result<String> {
        let v = self
            .cmd(Method::GET, &format!("/element/{}/text", e.0), None)
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    pub async fn attr(&self, e: &Element, name: &str) -> anyhow::Result<Option<String>> {
        let v = self
            .cmd(
                Method::GET,
                &format!("/element/{}/attribute/{name}", e.0),
                None,
            )
            .await?;
        Ok(v.as_str().map(str::to_owned))
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn exec(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        self.cmd(
            Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
        .context("running a script in the page")
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> anyhow::Result<Vec<u8>> {
        let v = self.cmd(Method::GET, "/screenshot", None).await?;
        let text = v.as_str().ok_or_else(|| anyhow!("no screenshot data"))?;
        base64_decode(text).ok_or_else(|| anyhow!("screenshot is not base64"))
    }

    /// Ends the session (Chromium quits). Errors are ignored: this runs in
    /// clean-up, and the driver's drop kills what is left.
    pub async fn close(&self) {
        let _ = self.cmd(Method::DELETE, "", None).await;
    }
}

fn element(v: &Value) -> anyhow::Result<Element> {
    v.get(ELEMENT_KEY)
        .and_then(Value::as_str)
        .map(|id| Element(id.to_owned()))
        .ok_or_else(|| anyhow!("not an element: {v}"))
}

/// Passes an element to a script (`arguments[i]`).
pub fn arg(e: &Element) -> Value {
    e.reference()
}

/// Standard base64 (with padding) to bytes.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let clean: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let body = clean
        .strip_suffix(b"==")
        .or_else(|| clean.strip_suffix(b"="));
    let body = body.unwrap_or(&clean);
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("").unwrap(), b"");
    assert_eq!(base64_decode("YQ==").unwrap(), b"a");
    assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
    assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
    assert_eq!(base64_decode("aGVsbG8gd29ybGQ=").unwrap(), b"hello world");
    assert!(base64_decode("a$==").is_none());
}
