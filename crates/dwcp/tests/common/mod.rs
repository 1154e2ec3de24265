//! What the integration tests share: a real `dwcp up` process on free ports,
//! the CLI, and a small HTTP client over a plain socket.

#![allow(dead_code)] // Each test binary uses a different part.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The `dwcp` binary under test.
pub fn dwcp() -> &'static str {
    env!("CARGO_BIN_EXE_dwcp")
}

/// `<workspace>/target/examples/NAME.wasm`, built by `cargo xtask examples`.
pub fn example(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/examples")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask examples` first (the README's test command does)",
        path.display()
    );
    path
}

/// The files of a node's trust: its root and local publisher keys, the
/// anchor and the root-signed manifest.
const TRUST_FILES: &[&str] = &[
    "keys/root.key",
    "keys/local.key",
    "trust/root.pub",
    "trust/manifest",
];

/// Gives a fresh data directory the trust of a node started once for all
/// tests (kept in cargo's test scratch directory): a first start signs its
/// manifest with SLH-DSA, which takes seconds, and most tests are not about
/// that (`TestNode::start_first_run` is).
pub fn provision_trust(data_dir: &Path) {
    if data_dir.join("trust/root.pub").exists() {
        return;
    }
    // Named for the layout: a change to it takes a new name.
    let template = Path::new(env!("CARGO_TARGET_TMPDIR")).join("trust-template-1");
    if !template.join("trust/root.pub").exists() {
        let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch dir");
        drop(TestNode::start_first_run(scratch.path()));
        for file in TRUST_FILES {
            let to = scratch.path().join("template").join(file);
            std::fs::create_dir_all(to.parent().expect("a parent")).expect("template dir");
            std::fs::copy(scratch.path().join(file), &to).expect("a trust file");
        }
        // Whole or not at all; another test binary may have won the race.
        let _ = std::fs::rename(scratch.path().join("template"), &template);
    }
    for file in TRUST_FILES {
        let to = data_dir.join(file);
        std::fs::create_dir_all(to.parent().expect("a parent")).expect("trust dir");
        std::fs::copy(template.join(file), &to).expect("trust from the template");
    }
}

/// A running `dwcp up`, killed when dropped.
pub struct TestNode {
    pub child: Child,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub data_dir: PathBuf,
    pub ready_line: String,
    /// Where the node's own log (its stderr) goes, if not to the test's.
    pub log: Option<PathBuf>,
}

impl TestNode {
    /// Starts a node on free ports with state in `data_dir`.
    pub fn start(data_dir: &Path) -> TestNode {
        Self::start_with(data_dir, &[])
    }

    /// Starts a node with extra `dwcp up` flags.
    pub fn start_with(data_dir: &Path, flags: &[&str]) -> TestNode {
        provision_trust(data_dir);
        Self::spawn(data_dir, flags, None)
    }

    /// Starts a node as a user's first `dwcp up` does: it makes its own
    /// root and publisher keys (SLH-DSA signing: seconds).
    pub fn start_first_run(data_dir: &Path) -> TestNode {
        Self::start_first_run_with(data_dir, &[])
    }

    /// [`TestNode::start_first_run`] with extra `dwcp up` flags: a node
    /// that trusts only its own publisher key.
    pub fn start_first_run_with(data_dir: &Path, flags: &[&str]) -> TestNode {
        Self::spawn(data_dir, flags, None)
    }

    /// Starts a node whose log (stderr) goes to `node.log` in `data_dir`,
    /// for [`TestNode::log_text`].
    pub fn start_logged(data_dir: &Path, flags: &[&str]) -> TestNode {
        provision_trust(data_dir);
        Self::spawn(data_dir, flags, Some(data_dir.join("node.log")))
    }

    /// What the node has logged so far (nodes from [`TestNode::start_logged`]).
    pub fn log_text(&self) -> String {
        let path = self.log.as_ref().expect("a node started with start_logged");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    fn spawn(data_dir: &Path, flags: &[&str], log: Option<PathBuf>) -> TestNode {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let stderr = match &log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("node log")),
            None => Stdio::inherit(),
        };
        let mut child = up_command(data_dir, flags)
            .env("DWCP_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("dwcp starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        assert!(line.contains("ready"), "no ready line, got {line:?}");
        let addr = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|a| {
                    a.strip_prefix("http://")
                        .or_else(|| a.strip_prefix("https://"))
                })
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        };
        TestNode {
            http: addr("http="),
            admin: addr("admin="),
            child,
            data_dir: data_dir.to_path_buf(),
            ready_line: line.clone(),
            log,
        }
    }

    /// Runs the CLI against this node.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(dwcp())
            .arg("--admin")
            .arg(format!("http://{}", self.admin))
            // Where the CLI finds the admin token (and the publisher key).
            .env("DWCP_DATA_DIR", &self.data_dir)
            .args(args)
            .output()
            .expect("dwcp runs")
    }

    /// Runs the CLI and expects success; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "dwcp {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `dwcp deploy TENANT/APP examples/NAME.wasm FLAGS…`, expecting success.
    pub fn deploy(&self, app: &str, example_name: &str, flags: &[&str]) -> String {
        let file = example(example_name);
        let mut args = vec!["deploy", app, file.to_str().expect("utf-8 path")];
        args.extend_from_slice(flags);
        self.cli_ok(&args)
    }

    /// A request to an app by host name.
    pub fn request(&self, method: &str, host: &str, path: &str, body: &[u8]) -> Reply {
        request(self.http, method, host, path, body)
    }

    /// The node-wide admin token `dwcp up` wrote.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin-token"))
            .expect("dwcp up wrote admin-token")
            .trim()
            .to_string()
    }

    /// GET on the admin API with the node's token; returns the body.
    pub fn admin_get(&self, path: &str) -> String {
        let auth = format!("Bearer {}", self.token());
        let reply = request_with(
            self.admin,
            "GET",
            "localhost",
            path,
            &[("authorization", &auth)],
        );
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
        reply.text()
    }

    /// The value of one metric series (0 when absent).
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.admin_get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Sends a signal to the node.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the node to exit (up to `timeout`); returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `dwcp up` in `data_dir` (its trust provisioned) with `flags`, run to its
/// end: for starts that must be refused.
pub fn up_refused(data_dir: &Path, flags: &[&str]) -> Output {
    provision_trust(data_dir);
    up_command(data_dir, flags).output().expect("dwcp runs")
}

/// `dwcp up` on free ports with `data_dir` and `flags`.
fn up_command(data_dir: &Path, flags: &[&str]) -> Command {
    let mut command = Command::new(dwcp());
    command
        .args([
            "up",
            "--http",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(flags);
    command
}

/// Deploys `hello` as `app`, then `trap` (every request a 500) as a
/// canary at 20% with an hour a step: its analysis aborts it once it has
/// 30 requests a side.
pub fn deploy_trapping_canary(node: &TestNode, app: &str) {
    node.deploy(app, "hello", &[]);
    node.deploy(
        app,
        "trap",
        &[
            "--strategy",
            "canary",
            "--steps",
            "20,100",
            "--step-time",
            "1h",
            "--min-samples",
            "30",
        ],
    );
}

/// An HTTP response, or what arrived of one.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the body ended cleanly (false: the connection was cut).
    pub complete: bool,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close`; reads the whole answer.
pub fn request(addr: SocketAddr, method: &str, host: &str, path: &str, body: &[u8]) -> Reply {
    request_full(addr, method, host, path, &[], body)
}

/// [`request`] with more headers and no body.
pub fn request_with(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    request_full(addr, method, host, path, headers, b"")
}

/// A request with headers and a body.
pub fn request_full(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("send head");
    // A server may answer (413) and close before taking the whole body.
    let _ = stream.write_all(body);
    read_reply(&mut stream)
}

/// Reads a response from `stream` until the server closes it.
pub fn read_reply(stream: &mut impl Read) -> Reply {
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let clean = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    parse_reply(&raw, clean)
}

fn parse_reply(raw: &[u8], clean: bool) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let (body, complete) = if chunked {
        dechunk(rest)
    } else {
        let len = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok());
        match len {
            Some(len) => (rest[..rest.len().min(len)].to_vec(), rest.len() >= len),
            None => (rest.to_vec(), clean),
        }
    };
    Reply {
        status,
        headers,
        body,
        complete,
    }
}

/// Decodes a chunked body; `complete` only if the final chunk arrived.
fn dechunk(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let size_text = String::from_utf8_lossy(&rest[..eol]).into_owned();
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            return (body, false);
        };
        rest = &rest[eol + 2..];
        if size == 0 {
            return (body, true);
        }
        if rest.len() < size {
            body.extend_from_slice(rest);
            return (body, false);
        }
        body.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
}

/// What a finished CLI run wrote to stderr.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh temporary data directory.
pub fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}
