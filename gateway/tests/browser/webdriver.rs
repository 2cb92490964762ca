//! Setting up chromedriver and a headless Chromium for the browser test;
//! the WebDriver commands themselves go through `fantoccini`.
//!
//! What stays here is what fantoccini does not do, being a client only:
//! - finding Chromium and chromedriver (`AIRQ_CHROMIUM` /
//!   `AIRQ_CHROMEDRIVER`, else `PATH`), with a failure that says how to
//!   install them;
//! - running chromedriver on a free loopback port, in its own process
//!   group so that dropping it also kills any browser it left behind;
//! - the capabilities Chromium starts with: its switches (this machine has
//!   no network, and Chromium misbehaves without them) and where downloads
//!   go;
//! - [`cdp`]: chromedriver's own endpoint for DevTools commands, a vendor
//!   extension that fantoccini leaves to `issue_cmd`.

use anyhow::{bail, Context};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::ClientBuilder;
use hyper_util::client::legacy::connect::HttpConnector;
// fantoccini's command trait is written in the `url` and `http` crates'
// types; reqwest re-exports the same ones, which spares two dependencies.
use reqwest::{Method, Url};
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long chromedriver may take to answer `/status` as ready.
const DRIVER_START: Duration = Duration::from_secs(30);

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

/// A running chromedriver, in its own process group, killed (with the
/// browsers it started) when dropped.
pub struct Driver {
    child: Child,
    base: String,
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
        };
        // fantoccini needs a session to ask `/status`, and there is none
        // before chromedriver is up: a plain HTTP client asks instead.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .build()
            .context("an HTTP client")?;
        let deadline = Instant::now() + DRIVER_START;
        loop {
            if let Ok(Some(status)) = driver.child.try_wait() {
                bail!("chromedriver exited at start: {status}");
            }
            let ready = http.get(format!("{}/status", driver.base)).send().await;
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
    ) -> anyhow::Result<fantoccini::Client> {
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push(format!("--window-size={width},{height}"));
        args.push("--lang=en-GB".into());
        args.push("--no-proxy-server".into());
        args.push("--disable-breakpad".into());
        let downloads = downloads.to_str().context("a UTF-8 download path")?;
        let caps = json!({
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
        });
        let Value::Object(caps) = caps else {
            unreachable!("json!({{..}}) is an object")
        };
        // chromedriver listens on loopback: plain HTTP, no TLS.
        let browser = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.base)
            .await
            .context("starting Chromium (new WebDriver session)")?;
        // Headless Chromium saves downloads only when told where.
        cdp(
            &browser,
            "Browser.setDownloadBehavior",
            json!({"behavior": "allow", "downloadPath": downloads}),
        )
        .await?;
        Ok(browser)
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

/// A Chrome DevTools Protocol command, through chromedriver; the command's
/// result.
pub async fn cdp(browser: &fantoccini::Client, cmd: &str, params: Value) -> anyhow::Result<Value> {
    browser
        .issue_cmd(Cdp {
            body: json!({"cmd": cmd, "params": params}),
        })
        .await
        .with_context(|| format!("CDP {cmd}"))
}

/// `url::ParseError`, named through reqwest's `Url`.
type UrlError = <Url as std::str::FromStr>::Err;

/// `POST /session/{id}/goog/cdp/execute`.
#[derive(Debug)]
struct Cdp {
    body: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(&self, base: &Url, session_id: Option<&str>) -> Result<Url, UrlError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &Url) -> (Method, Option<String>) {
        (Method::POST, Some(self.body.to_string()))
    }
}
