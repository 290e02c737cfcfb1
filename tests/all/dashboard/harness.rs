//! The browser test's harness: Debian's `chromedriver` on a port of its
//! own (with the headless Chromium it starts, stopped as one process
//! group), a WebDriver session on the host's dashboard with the
//! page-level steps the tests take — wait for an element or its text by
//! polling, click, type, screenshot — and the host's API from outside
//! the browser.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::daemon::Host;
use crate::support::{Sandbox, free_port, repo_root, wait_for};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long any one thing may take to show: generous, for a loaded machine.
const DEADLINE: Duration = Duration::from_secs(45);

/// `chromedriver` on a port of its own, stopped when dropped.
pub struct Driver {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Driver {
    pub fn start(sandbox: &Sandbox) -> Driver {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: the dashboard test needs Debian's chromium and chromium-driver packages; \
                 run .ci/install-toolchains (CI does)"
            );
        }
        let port = free_port();
        let log = sandbox.path("chromedriver.log");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // A group of its own, with the browsers it starts: all are
            // stopped together, even when a failing test never closes its session.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}; run .ci/install-toolchains"));
        let address = format!("127.0.0.1:{port}");
        wait_for("chromedriver to listen", Duration::from_secs(30), || std::net::TcpStream::connect(&address).is_ok());
        Driver { child, url: format!("http://{address}"), log }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: signalling the process group this test started.
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Where the screenshots go: `target/dashboard/`, beside the test binary's `target/debug/deps`.
fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        exe.ancestors().nth(3).map(Path::to_owned).unwrap_or_else(|| repo_root().join("target"))
    });
    let dir = target.join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A browser on the host's dashboard, with the page-level steps the tests take.
pub struct Browser {
    pub client: Client,
    pub base: String,
    shots: PathBuf,
}

impl Browser {
    pub async fn open(driver: &Driver, base: &str, profile: &Path) -> Browser {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                    "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| {
                let log = std::fs::read_to_string(&driver.log).unwrap_or_default();
                let tail: String =
                    log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
                panic!("chromedriver could not start {CHROMIUM}: {e}\n{tail}")
            });
        Browser { client, base: base.to_owned(), shots: screenshot_dir() }
    }

    pub async fn goto(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    /// Runs `script` in the page (its arguments as `arguments[i]`).
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap_or_else(|e| panic!("running {script}: {e}"))
    }

    /// The text of the first element `css` selects, if there is one.
    pub async fn text(&self, css: &str) -> Option<String> {
        let script = "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : null;";
        self.eval(script, vec![json!(css)]).await.as_str().map(str::to_owned)
    }

    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let script = "const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null;";
        self.eval(script, vec![json!(css), json!(name)]).await.as_str().map(str::to_owned)
    }

    pub async fn count(&self, css: &str) -> usize {
        let script = "return document.querySelectorAll(arguments[0]).length;";
        self.eval(script, vec![json!(css)]).await.as_u64().unwrap_or(0) as usize
    }

    /// Polls until `probe` gives a value, failing with `what`, the page's
    /// address and its main text after the deadline.
    pub async fn until<T>(&self, what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            if Instant::now() > deadline {
                let url = self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
                let page = self.text("body").await.unwrap_or_default();
                self.screenshot("failure").await;
                panic!("timed out after {DEADLINE:?} waiting for {what}\nat {url}\npage: {page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for an element whose text satisfies `holds`; returns the text.
    pub async fn wait_text(&self, css: &str, holds: impl Fn(&str) -> bool) -> String {
        self.until(&format!("the text of {css}"), async || self.text(css).await.filter(|text| holds(text))).await
    }

    pub async fn wait_for(&self, css: &str) -> String {
        self.wait_text(css, |_| true).await
    }

    pub async fn wait_gone(&self, css: &str) {
        self.until(&format!("{css} to go"), async || (self.count(css).await == 0).then_some(())).await
    }

    /// Clicks the element `css` selects, once it is there (the page
    /// re-renders on live events: a click on a replaced element is tried again).
    pub async fn click(&self, css: &str) {
        self.until(&format!("clicking {css}"), async || {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            element.click().await.ok()
        })
        .await
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        self.wait_for(css).await;
        self.client.find(Locator::Css(css)).await.unwrap().send_keys(text).await.unwrap();
    }

    pub async fn url(&self) -> String {
        self.client.current_url().await.unwrap().to_string()
    }

    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Clears the toasts, so that the next one is the next action's.
    pub async fn clear_toasts(&self) {
        self.eval("document.getElementById('toasts').replaceChildren();", vec![]).await;
    }

    /// The run id in the newest toast's link (`#/runs/ID`).
    pub async fn toasted_run(&self) -> i64 {
        let link = self
            .until("a toast linking the new run", async || {
                self.attr("#toasts .toast:last-child [data-testid=toast-link]", "href").await
            })
            .await;
        link.rsplit('/').next().unwrap().parse().unwrap_or_else(|_| panic!("toast link {link}"))
    }

    pub async fn log_in(&self, token: &str) {
        self.goto("/").await;
        self.wait_for("#login-form").await;
        assert!(self.url().await.ends_with("/login"), "without a session / sends the browser to /login");
        self.type_into("#token", token).await;
        self.click("#login").await;
        self.wait_for("#jobs-table").await;
    }

    pub async fn log_out(&self) {
        self.click("#logout").await;
        self.wait_for("#login-form").await;
    }
}

/// The host's tokens, once it has written them, and it is ready.
pub fn ready(sandbox: &Sandbox, host: &Host) -> (String, String) {
    let read = |file: &str| {
        let path = sandbox.state().join(file);
        wait_for(&path.display().to_string(), Duration::from_secs(30), || path.exists());
        std::fs::read_to_string(path).unwrap().trim().to_owned()
    };
    let url = format!("http://{}/readyz", host.listen);
    wait_for("the host to be ready", Duration::from_secs(60), || http_get_status(&url) == Some(200));
    (read("token"), read("token.read"))
}

/// A blocking GET's status, or none if nothing answers.
fn http_get_status(url: &str) -> Option<u16> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async { reqwest::get(url).await.ok().map(|r| r.status().as_u16()) })
}

/// A POST to the API with the browser's session cookie, from outside the
/// browser: its status and error code.
pub async fn post_with_cookie(base: &str, path: &str, cookie: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(format!("{base}{path}")).header("cookie", cookie);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

pub async fn api_get(base: &str, path: &str, token: &str) -> Value {
    let answer = reqwest::Client::new().get(format!("{base}{path}")).bearer_auth(token).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 200, "GET {path}");
    answer.json().await.unwrap()
}
