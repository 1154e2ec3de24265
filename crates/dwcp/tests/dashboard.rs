//! The web dashboard in a real browser: Debian's chromium, headless, driven
//! by chromedriver over the W3C WebDriver HTTP API, against a real node.
//! The page loads, takes the token, lists a deployed app, follows a
//! canary's weight as it changes, and promotes it with a confirmed click.
//!
//! chromedriver and chromium come from `DWCP_CHROMEDRIVER` and
//! `DWCP_CHROMIUM`, else `/usr/bin`; without them the test says so and
//! skips (`cargo xtask test` installs them). With
//! `DWCP_DASHBOARD_SCREENSHOT=1` it saves `docs/dashboard.png`.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{TestNode, data_dir, request, request_with};
use serde_json::{Value, json};

const HOST: &str = "shop.demo.localhost";

/// The W3C name of an element reference in WebDriver answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A program from `var`, else `/usr/bin/NAME`, if it exists.
fn tool(var: &str, name: &str) -> Option<PathBuf> {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("/usr/bin").join(name));
    path.exists().then_some(path)
}

/// A running chromedriver, killed when dropped.
struct Driver {
    child: Child,
    base: String,
    agent: ureq::Agent,
}

impl Driver {
    fn start(chromedriver: &Path) -> Driver {
        // A free port: bound, read, released; chromedriver takes it next.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            // WebDriver errors are JSON with a 4xx/5xx status: read them.
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            agent,
        };
        wait_for("chromedriver to be ready", Duration::from_secs(20), || {
            driver
                .agent
                .get(format!("{}/status", driver.base))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true)
        });
        driver
    }

    /// One WebDriver command; its `value`, or an error naming what failed.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let response = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self.agent.post(&url).send_json(body.unwrap_or(json!({}))),
        };
        let mut response = response.map_err(|e| format!("{method} {path}: {e}"))?;
        let ok = response.status().is_success();
        let answer: Value = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_json()
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if ok {
            Ok(answer["value"].clone())
        } else {
            Err(format!("{method} {path}: {}", answer["value"]))
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser session, ended when dropped.
struct Browser<'d> {
    driver: &'d Driver,
    session: String,
    _profile: tempfile::TempDir,
}

impl<'d> Browser<'d> {
    fn open(driver: &'d Driver, chromium: &Path) -> Browser<'d> {
        let profile = data_dir();
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    // The test answers confirm() itself.
                    "unhandledPromptBehavior": "ignore",
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": [
                            "--headless=new",
                            // Tests may run as root, where the sandbox cannot.
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--window-size=1280,1500",
                            format!("--user-data-dir={}", profile.path().display()),
                        ],
                    },
                },
            },
        });
        let session = driver
            .call("POST", "/session", Some(capabilities))
            .unwrap_or_else(|e| panic!("chromium does not start: {e}"));
        Browser {
            driver,
            session: session["sessionId"]
                .as_str()
                .expect("a session id")
                .to_string(),
            _profile: profile,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let path = format!("/session/{}{path}", self.session);
        self.driver.call(method, &path, body)
    }

    fn must(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, path, body)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn go(&self, url: &str) {
        self.must("POST", "/url", Some(json!({ "url": url })));
    }

    /// The element `css` selects (the first one).
    fn find(&self, css: &str) -> String {
        let found = self.must(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element id for {css}: {found}"))
            .to_string()
    }

    fn click(&self, css: &str) {
        let id = self.find(css);
        self.must("POST", &format!("/element/{id}/click"), None);
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.must(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// The text of the element `css` selects ("" when there is none).
    fn text(&self, css: &str) -> String {
        let script =
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';";
        self.must(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [css] })),
        )
        .as_str()
        .unwrap_or("")
        .to_string()
    }

    /// Waits until the text of `css` satisfies `check`; returns it.
    fn wait_text(&self, css: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        wait_for(what, Duration::from_secs(15), || {
            last = self.text(css);
            check(&last)
        });
        last
    }

    /// The PNG of the viewport.
    fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let encoded = self.must("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("base64 text"))
            .expect("a PNG in base64")
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = self.call("DELETE", "", None);
    }
}

/// Polls `check` every 200 ms until it holds; panics naming `what` after `limit`.
fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rollout(node: &TestNode) -> Value {
    serde_json::from_str(&node.cli_ok(&["rollout", "status", "demo/shop", "--json"]))
        .expect("status is JSON")
}

#[test]
fn the_dashboard_shows_a_rollout_live_and_promotes_it() {
    let (Some(chromedriver), Some(chromium)) = (
        tool("DWCP_CHROMEDRIVER", "chromedriver"),
        tool("DWCP_CHROMIUM", "chromium"),
    ) else {
        eprintln!(
            "NOTICE: skipping the dashboard browser test: no chromedriver or chromium \
             (apt-get install chromium chromium-driver, or set DWCP_CHROMEDRIVER and DWCP_CHROMIUM)"
        );
        return;
    };
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("demo/shop", "hello", &[]);
    // Long steps: nothing moves but what the test does.
    node.deploy(
        "demo/shop",
        "echo",
        &[
            "--strategy",
            "canary",
            "--steps",
            "10,50",
            "--step-time",
            "1h",
        ],
    );

    // The page needs no token and lets nothing inline run; the data does.
    let page = request(node.admin, "GET", "localhost", "/ui", b"");
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let csp = page.header("content-security-policy").unwrap_or("");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let script = request(node.admin, "GET", "localhost", "/ui/app.js", b"");
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let data = request(node.admin, "GET", "localhost", "/v1/apps", b"");
    assert_eq!(data.status, 401, "the API still wants a token");

    // Traffic from many users for the whole test: both versions get some.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        let http = node.http;
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let user = format!("user-{}", n % 97);
                request_with(http, "GET", HOST, "/", &[("x-user-id", &user)]);
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let driver = Driver::start(&chromedriver);
    let browser = Browser::open(&driver, &chromium);
    browser.go(&format!("http://{}/ui", node.admin));
    browser.type_into("#token", &node.token());
    browser.click("#login-submit");
    browser.wait_text("#apps", "the app listed", |t| t.contains("demo/shop"));
    let weight = browser.wait_text("#rollout-weight", "the first step's weight", |t| t == "10%");
    assert_eq!(weight, "10%");
    // The new version's requests arrive with the node's once-a-second look.
    browser.wait_text(
        "#rollout-live tbody tr:nth-child(2) td:nth-child(3)",
        "the new version's requests",
        |t| t.parse::<u64>().is_ok_and(|n| n > 0),
    );
    browser.wait_text("#chart-rps", "the requests chart", |t| {
        !t.is_empty() && !t.contains("no requests yet")
    });

    node.cli_ok(&["rollout", "set-weight", "demo/shop", "30"]);
    browser.wait_text("#rollout-weight", "the new weight", |t| t == "30%");
    browser.wait_text("#rollout-phase", "the pause", |t| t.contains("paused"));
    browser.wait_text("#rollout-decisions", "the decision", |t| {
        t.contains("set weight")
    });

    if std::env::var_os("DWCP_DASHBOARD_SCREENSHOT").is_some_and(|v| v == "1") {
        // Time for the charts to draw some history.
        std::thread::sleep(Duration::from_secs(30));
        let png = browser.screenshot();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/dashboard.png");
        std::fs::write(&out, png).expect("docs/dashboard.png written");
        eprintln!("wrote {}", out.display());
    }

    browser.click("button[data-action=promote]");
    // The click opened confirm(): accept it.
    wait_for("the confirm dialog", Duration::from_secs(10), || {
        browser.call("GET", "/alert/text", None).is_ok()
    });
    let question = browser.must("GET", "/alert/text", None);
    assert!(
        question.as_str().unwrap_or("").contains("Promote"),
        "{question}"
    );
    browser.must("POST", "/alert/accept", None);
    browser.wait_text("#action-result", "the result", |t| t.contains("done"));
    let status = rollout(&node);
    assert_eq!(
        status["rollout"]["phase"]["phase"], "promoted",
        "{status:#}"
    );
    assert_eq!(status["stable"], "v2", "{status:#}");
    browser.wait_text("#rollout-phase", "the page to follow", |t| t == "promoted");

    stop.store(true, Ordering::Relaxed);
    traffic.join().expect("traffic thread");
}
