//! Guests' outgoing HTTP: denied by default, allowed by host name, and even
//! then never into loopback, private networks or the node's admin API
//! unless a CIDR says so.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;

use common::{TestNode, data_dir};
use serde_json::Value;

/// A plain HTTP server on loopback answering `upstream says hi` to anything.
fn upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\nConnection: close\r\n\r\nupstream says hi",
            );
        }
    });
    port
}

fn fetch(node: &TestNode, url: &str) -> common::Reply {
    node.request("GET", "fetch.t.localhost", &format!("/?url={url}"), b"")
}

#[test]
fn egress_is_denied_by_default_and_opened_by_host_and_cidr() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    let port = upstream();
    node.deploy("t/fetch", "fetch", &[]);
    let url = format!("http://localhost:{port}/x");

    // Denied by default.
    let reply = fetch(&node, &url);
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(
        reply.text().contains("HttpRequestDenied"),
        "{}",
        reply.text()
    );

    // Allowed by name, but localhost is loopback: still refused.
    node.cli_ok(&["apps", "set", "t/fetch", "--allow-host", "localhost"]);
    let reply = fetch(&node, &url);
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(
        reply.text().contains("DestinationIpProhibited"),
        "{}",
        reply.text()
    );

    // Not the admin API either, though `localhost` is listed.
    let admin = format!("http://localhost:{}/v1/apps", node.admin.port());
    let reply = fetch(&node, &admin);
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(
        reply.text().contains("DestinationIpProhibited"),
        "{}",
        reply.text()
    );

    // An explicit CIDR opens loopback for this app.
    let out = node.cli_ok(&["apps", "set", "t/fetch", "--allow-private", "127.0.0.1/32"]);
    assert!(out.contains("localhost (private: 127.0.0.1/32)"), "{out}");
    let reply = fetch(&node, &url);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "200\nupstream says hi");

    // The admin API stays out of reach even with loopback open.
    let reply = fetch(&node, &admin);
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(
        reply.text().contains("DestinationIpProhibited"),
        "{}",
        reply.text()
    );

    // A host not listed stays denied.
    let reply = fetch(&node, &format!("http://127.0.0.1:{port}/x"));
    assert!(
        reply.text().contains("HttpRequestDenied"),
        "{}",
        reply.text()
    );

    // The rules survive a restart of the node; clearing them denies again.
    drop(node);
    let node = TestNode::start(dir.path());
    assert_eq!(fetch(&node, &url).status, 200);
    node.cli_ok(&["apps", "set", "t/fetch", "--clear-egress"]);
    let reply = fetch(&node, &url);
    assert!(
        reply.text().contains("HttpRequestDenied"),
        "{}",
        reply.text()
    );

    let series = |outcome: &str| {
        node.metric(&format!(
            "dwcp_egress_requests_total{{tenant=\"t\",app=\"fetch\",outcome=\"{outcome}\"}}"
        ))
    };
    assert_eq!(
        series("denied"),
        1.0,
        "after the restart: the cleared rules' refusal"
    );
    assert_eq!(series("sent"), 1.0);
}

#[test]
fn malformed_rules_are_refused_and_change_nothing() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("t/fetch", "fetch", &[]);
    node.cli_ok(&["apps", "set", "t/fetch", "--allow-host", "api.example.com"]);
    for (flag, value) in [
        ("--allow-host", "not a host"),
        ("--allow-host", "api.example.com:99999"),
        ("--allow-host", "*."),
        ("--allow-private", "10.0.0.0/33"),
        ("--allow-private", "localhost"),
    ] {
        let out = node.cli(&["apps", "set", "t/fetch", flag, value]);
        assert!(!out.status.success(), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
    let status: Value =
        serde_json::from_str(&node.cli_ok(&["status", "t/fetch", "--json"])).unwrap();
    assert_eq!(
        status["egress"]["allow_hosts"],
        serde_json::json!(["api.example.com"])
    );
    assert_eq!(status["egress"]["allow_private"], serde_json::json!([]));
}
