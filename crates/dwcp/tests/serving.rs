//! Deploy, route by host, switch versions, list, delete: through the real
//! binary and real sockets.

mod common;

use common::{TestNode, data_dir};
use serde_json::Value;

#[test]
fn hello_is_served_by_host_name() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    let out = node.deploy("demo/hello", "hello", &[]);
    assert!(out.contains("deployed demo/hello v1"), "{out}");
    assert!(out.contains("created tenant demo"), "{out}");

    let reply = node.request("GET", "hello.demo.localhost", "/", b"");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "Hello, world!\n");

    // Case and port do not matter.
    let reply = node.request("GET", "HELLO.Demo.localhost:8080", "/", b"");
    assert_eq!(reply.text(), "Hello, world!\n");

    let reply = node.request("GET", "nosuch.demo.localhost", "/", b"");
    assert_eq!(reply.status, 404);
    assert!(reply.text().contains("nosuch"), "{}", reply.text());
    let reply = node.request("GET", "example.com", "/", b"");
    assert_eq!(reply.status, 404);
}

#[test]
fn echo_sees_method_path_headers_and_body() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("acme/echo", "echo", &[]);
    let reply = node.request("PUT", "echo.acme.localhost", "/a/b?c=d", b"twelve bytes");
    assert_eq!(reply.status, 200);
    let json: Value = serde_json::from_slice(&reply.body).expect("echo answers JSON");
    assert_eq!(json["method"], "PUT");
    assert_eq!(json["path"], "/a/b?c=d");
    assert_eq!(json["body_length"], 12);
    assert_eq!(json["authority"], "echo.acme.localhost");
    assert!(json["headers"].is_object());
}

#[test]
fn a_new_version_takes_over_and_listings_show_it() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("demo/app", "hello", &[]);
    assert_eq!(
        node.request("GET", "app.demo.localhost", "/", b"").text(),
        "Hello, world!\n"
    );
    let out = node.deploy(
        "demo/app",
        "echo",
        &["--memory", "32MiB", "--concurrency", "7"],
    );
    assert!(out.contains("v2"), "{out}");
    let reply = node.request("GET", "app.demo.localhost", "/", b"");
    assert!(
        reply.text().contains("\"method\":\"GET\""),
        "{}",
        reply.text()
    );

    // A named version; a taken name is refused.
    node.deploy("demo/app", "hello", &["--version", "beta"]);
    let out = node.cli(&[
        "deploy",
        "demo/app",
        common::example("hello").to_str().unwrap(),
        "--version",
        "beta",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already has a version `beta`"));

    let versions: Value =
        serde_json::from_str(&node.cli_ok(&["versions", "demo/app", "--json"])).unwrap();
    let names: Vec<&str> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["v1", "v2", "beta"]);
    assert_eq!(versions[2]["active"], true);
    assert_eq!(
        versions[0]["sha256"], versions[2]["sha256"],
        "same bytes, same address"
    );

    let status: Value =
        serde_json::from_str(&node.cli_ok(&["status", "demo/app", "--json"])).unwrap();
    assert_eq!(status["active_version"], "beta");
    assert_eq!(
        status["limits"]["memory_bytes"],
        32 << 20,
        "limits carry over"
    );
    assert_eq!(status["limits"]["concurrency"], 7);
    assert_eq!(status["host"], "app.demo.localhost");

    node.deploy("other/hello", "hello", &[]);
    let all: Value = serde_json::from_str(&node.cli_ok(&["apps", "--json"])).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);
    let demo: Value =
        serde_json::from_str(&node.cli_ok(&["apps", "list", "demo", "--json"])).unwrap();
    assert_eq!(demo.as_array().unwrap().len(), 1);
    assert_eq!(demo[0]["app"], "app");
    assert_eq!(demo[0]["serving"], true);
    let table = node.cli_ok(&["apps"]);
    assert!(
        table.contains("TENANT") && table.contains("other"),
        "{table}"
    );
    let out = node.cli(&["apps", "list", "nosuch"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tenant `nosuch`"));
}

#[test]
fn delete_stops_serving_and_removes_files() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("demo/hello", "hello", &[]);
    node.deploy("demo/echo", "echo", &[]);
    node.deploy("demo/hello2", "hello", &[]);
    let out = node.cli_ok(&["delete", "demo/hello"]);
    assert!(out.contains("deleted demo/hello"), "{out}");
    assert_eq!(
        node.request("GET", "hello.demo.localhost", "/", b"").status,
        404
    );
    // hello2 shares the artifact: it must survive the delete.
    assert_eq!(
        node.request("GET", "hello2.demo.localhost", "/", b"")
            .status,
        200
    );
    let count = |sub: &str| std::fs::read_dir(dir.path().join(sub)).unwrap().count();
    assert_eq!(count("artifacts"), 2);
    node.cli_ok(&["delete", "demo/hello2"]);
    assert_eq!(count("artifacts"), 1);
    // The AOT cache keeps a code file and its checksum per artifact.
    assert_eq!(count("aot"), 2);

    let out = node.cli(&["delete", "demo/hello"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no app `demo/hello`"));
    let out = node.cli(&["status", "Demo/Hello"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid name"));
}
