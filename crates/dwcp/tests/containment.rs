//! Misbehaving guests are stopped within their limits, alone; the
//! concurrency limit holds.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{TestNode, data_dir};

fn hello_answers(node: &TestNode) {
    let reply = node.request("GET", "hello.t.localhost", "/", b"");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "Hello, world!\n");
}

#[test]
fn every_misbehaving_guest_is_stopped_and_hello_keeps_answering() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("t/hello", "hello", &[]);
    node.deploy("t/spin", "spin", &["--deadline", "300ms"]);
    node.deploy("t/hog", "hog", &["--memory", "16MiB"]);
    node.deploy("t/trap", "trap", &[]);
    node.deploy("t/stack", "stack", &[]);
    node.deploy("t/flood", "flood", &[]);

    // spin: stopped at its deadline, 504.
    let started = Instant::now();
    let reply = node.request("GET", "spin.t.localhost", "/", b"");
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert!(reply.text().contains("deadline"));
    assert!(started.elapsed() < Duration::from_secs(5));
    hello_answers(&node);

    // hog: refused memory, 500 naming the limit.
    let reply = node.request("GET", "hog.t.localhost", "/", b"");
    assert_eq!(reply.status, 500);
    assert!(reply.text().contains("memory limit"), "{}", reply.text());
    hello_answers(&node);

    // trap and stack: 500 with the reason.
    let reply = node.request("GET", "trap.t.localhost", "/", b"");
    assert_eq!(reply.status, 500);
    assert!(reply.text().contains("trapped"), "{}", reply.text());
    let reply = node.request("GET", "stack.t.localhost", "/", b"");
    assert_eq!(reply.status, 500);
    assert!(reply.text().contains("stack"), "{}", reply.text());
    hello_answers(&node);

    // flood: cut off at the 64 MiB cap, never completed.
    let reply = node.request("GET", "flood.t.localhost", "/", b"");
    assert_eq!(reply.status, 200);
    assert!(!reply.complete, "an endless body must not look complete");
    assert!(
        reply.body.len() as u64 <= 64 << 20,
        "{} bytes",
        reply.body.len()
    );
    hello_answers(&node);

    // Each stop is counted by reason.
    let stops = |app: &str, kind: &str| {
        node.metric(&format!(
            "dwcp_guest_stops_total{{tenant=\"t\",app=\"{app}\",version=\"v1\",kind=\"{kind}\"}}"
        ))
    };
    assert_eq!(stops("spin", "deadline"), 1.0);
    assert_eq!(stops("hog", "memory_limit"), 1.0);
    assert_eq!(stops("trap", "trap"), 1.0);
    assert_eq!(stops("stack", "stack_overflow"), 1.0);
    // The flood guest is stopped by its cut-off body and its deadline.
    let flood = stops("flood", "response_too_large") + stops("flood", "deadline");
    assert!(flood >= 1.0);
}

#[test]
fn hello_keeps_answering_while_spin_burns_cpu() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("t/hello", "hello", &[]);
    node.deploy("t/spin", "spin", &["--deadline", "2s"]);
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let http = node.http;
            thread::spawn(move || common::request(http, "GET", "spin.t.localhost", "/", b"").status)
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    for _ in 0..20 {
        hello_answers(&node);
    }
    for s in spinners {
        assert_eq!(s.join().unwrap(), 504);
    }
}

#[test]
fn concurrency_limit_gives_503_with_retry_after() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy(
        "t/spin",
        "spin",
        &["--deadline", "3s", "--concurrency", "2"],
    );
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let http = node.http;
            thread::spawn(move || common::request(http, "GET", "spin.t.localhost", "/", b"").status)
        })
        .collect();
    // Wait until both requests hold their slots.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status: serde_json::Value =
            serde_json::from_str(&node.cli_ok(&["status", "t/spin", "--json"])).unwrap();
        if status["in_flight"] == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the two requests never ran: {status}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let reply = node.request("GET", "spin.t.localhost", "/", b"");
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "it waited for a slot first"
    );
    for b in busy {
        assert_eq!(b.join().unwrap(), 504);
    }
}

#[test]
fn request_body_over_the_cap_is_refused() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("t/echo", "echo", &[]);
    let big = vec![b'x'; (16 << 20) + 1];
    let reply = node.request("POST", "echo.t.localhost", "/", &big);
    assert_eq!(reply.status, 413, "{}", reply.text());
    let ok = vec![b'x'; 1 << 20];
    let reply = node.request("POST", "echo.t.localhost", "/", &ok);
    assert!(
        reply.text().contains("\"body_length\":1048576"),
        "{}",
        reply.text()
    );
}

#[test]
fn a_guest_stopped_mid_stream_leaves_a_cut_off_response() {
    use std::io::{Read, Write};
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("t/flood", "flood", &["--deadline", "300ms"]);
    let mut stream = std::net::TcpStream::connect(node.http).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: flood.t.localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    // Read a little, then stall: the guest blocks on back-pressure until its
    // deadline stops it, long before it reaches the size cap.
    let mut first = [0u8; 4096];
    let n = stream.read(&mut first).unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    thread::sleep(Duration::from_millis(1000));
    let mut raw = first[..n].to_vec();
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(k @ 1..) = stream.read(&mut buf) {
        raw.extend_from_slice(&buf[..k]);
    }
    let reply = common::read_reply(&mut std::io::Cursor::new(raw));
    assert!(
        !reply.complete,
        "a stopped stream must not end like a finished one"
    );
    assert!(
        (reply.body.len() as u64) < 64 << 20,
        "stopped by the deadline, not the cap"
    );
    let stops = node.metric(
        "dwcp_guest_stops_total{tenant=\"t\",app=\"flood\",version=\"v1\",kind=\"deadline\"}",
    );
    assert_eq!(stops, 1.0);
}
