//! State survives: a node killed with SIGKILL comes back serving every app
//! without compiling anything; a corrupt cache file is recompiled; SIGTERM
//! lets in-flight requests finish.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{TestNode, data_dir};

#[test]
fn sigkill_then_restart_serves_every_app_from_the_aot_cache() {
    let dir = data_dir();
    {
        let node = TestNode::start(dir.path());
        node.deploy("demo/hello", "hello", &[]);
        node.deploy("demo/echo", "echo", &["--memory", "8MiB"]);
        node.deploy("acme/hello", "hello", &[]);
        assert_eq!(node.metric("dwcp_aot_cache_total{result=\"miss\"}"), 2.0);
        node.signal("KILL");
    }
    let node = TestNode::start(dir.path());
    assert!(node.ready_line.contains("apps=3"), "{}", node.ready_line);
    assert_eq!(
        node.request("GET", "hello.demo.localhost", "/", b"").text(),
        "Hello, world!\n"
    );
    assert_eq!(
        node.request("GET", "hello.acme.localhost", "/", b"").status,
        200
    );
    assert_eq!(
        node.request("GET", "echo.demo.localhost", "/", b"").status,
        200
    );
    assert_eq!(node.metric("dwcp_aot_cache_total{result=\"hit\"}"), 3.0);
    assert_eq!(node.metric("dwcp_aot_cache_total{result=\"miss\"}"), 0.0);
    assert_eq!(
        node.metric("dwcp_aot_cache_total{result=\"recompiled\"}"),
        0.0
    );
    let status: serde_json::Value =
        serde_json::from_str(&node.cli_ok(&["status", "demo/echo", "--json"])).unwrap();
    assert_eq!(
        status["limits"]["memory_bytes"],
        8 << 20,
        "limits survive too"
    );
}

#[test]
fn a_corrupt_cache_file_is_recompiled_not_run() {
    let dir = data_dir();
    {
        let node = TestNode::start(dir.path());
        node.deploy("demo/hello", "hello", &[]);
    }
    let aot = dir.path().join("aot");
    let code = std::fs::read_dir(&aot)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("a compiled file");
    let mut bytes = std::fs::read(&code).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&code, bytes).unwrap();

    let node = TestNode::start(dir.path());
    assert_eq!(
        node.metric("dwcp_aot_cache_total{result=\"recompiled\"}"),
        1.0
    );
    assert_eq!(
        node.request("GET", "hello.demo.localhost", "/", b"").text(),
        "Hello, world!\n"
    );
}

#[test]
fn files_left_by_an_interrupted_deploy_are_swept() {
    let dir = data_dir();
    {
        let node = TestNode::start(dir.path());
        node.deploy("demo/hello", "hello", &[]);
    }
    // What a crash between writing the artifact and committing the state
    // leaves: an artifact no app refers to.
    let stray = dir
        .path()
        .join("artifacts")
        .join(format!("{}.wasm", "ab".repeat(32)));
    std::fs::write(&stray, b"stray").unwrap();
    let node = TestNode::start(dir.path());
    assert!(!stray.exists(), "the stray artifact was swept");
    assert_eq!(
        node.request("GET", "hello.demo.localhost", "/", b"").status,
        200
    );
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits_0() {
    let dir = data_dir();
    let mut node = TestNode::start(dir.path());
    // The guest waits for the rest of the body: give it time enough.
    node.deploy("demo/echo", "echo", &["--deadline", "30s"]);
    // Start a request whose body is only half sent.
    let mut stream = TcpStream::connect(node.http).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(
            b"POST / HTTP/1.1\r\nHost: echo.demo.localhost\r\nContent-Length: 10\r\n\r\nhello",
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    node.signal("TERM");
    // New connections are refused while the old one finishes.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(node.http).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stream.write_all(b"world").unwrap();
    let reply = common::read_reply(&mut stream);
    assert_eq!(reply.status, 200);
    assert!(
        reply.text().contains("\"body_length\":10"),
        "{}",
        reply.text()
    );
    assert_eq!(node.wait_exit(Duration::from_secs(10)), Some(0));
}
