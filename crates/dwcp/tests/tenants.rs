//! Tenants, their quotas, and changing an app's limits without a redeploy.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{TestNode, data_dir, stderr};
use serde_json::Value;

#[test]
fn tenants_are_created_listed_and_deleted_with_their_apps() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.cli_ok(&["tenants", "create", "acme"]);
    let out = node.cli(&["tenants", "create", "acme"]);
    assert!(stderr(&out).contains("exists already"), "{}", stderr(&out));
    let out = node.cli(&["tenants", "create", "Bad_Name"]);
    assert!(stderr(&out).contains("not a valid name"));

    node.deploy("acme/hello", "hello", &[]);
    node.deploy("acme/echo", "echo", &[]);
    node.deploy("other/hello", "hello", &[]);
    let tenants: Value =
        serde_json::from_str(&node.cli_ok(&["tenants", "list", "--json"])).unwrap();
    let acme = tenants
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "acme")
        .unwrap();
    assert_eq!(acme["apps"], 2);
    assert_eq!(acme["memory_per_instance_sum"], 2 * (64 << 20));

    let out = node.cli_ok(&["tenants", "delete", "acme"]);
    assert!(out.contains("2 app(s)"), "{out}");
    assert_eq!(
        node.request("GET", "hello.acme.localhost", "/", b"").status,
        404
    );
    // other/hello shares hello's artifact: it stays, echo's goes.
    assert_eq!(
        node.request("GET", "hello.other.localhost", "/", b"")
            .status,
        200
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("artifacts"))
            .unwrap()
            .count(),
        1
    );

    for args in [
        vec!["tenants", "delete", "acme"],
        vec!["status", "acme/hello"],
        vec!["versions", "acme/hello"],
        vec!["delete", "acme/hello"],
        vec!["apps", "list", "acme"],
        vec!["tenants", "quota", "acme", "--instances", "3"],
    ] {
        let out = node.cli(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr(&out).contains("no tenant `acme`"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn a_memory_quota_refuses_deploys_that_would_pass_it() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.cli_ok(&["tenants", "create", "acme"]);
    node.cli_ok(&["tenants", "quota", "acme", "--memory", "100MiB"]);
    node.deploy("acme/one", "hello", &["--memory", "64MiB"]);
    let file = common::example("hello");
    let out = node.cli(&[
        "deploy",
        "acme/two",
        file.to_str().unwrap(),
        "--memory",
        "64MiB",
    ]);
    assert!(!out.status.success());
    let msg = stderr(&out);
    assert!(msg.contains("memory quota of 104857600 bytes"), "{msg}");
    assert!(msg.contains("need 67108864"), "{msg}");
    // Nothing of the refused deploy is left.
    let apps: Value = serde_json::from_str(&node.cli_ok(&["apps", "--json"])).unwrap();
    assert_eq!(apps.as_array().unwrap().len(), 1);
    // A smaller app fits.
    node.deploy("acme/two", "hello", &["--memory", "32MiB"]);
    // Raising an app's memory past the quota is refused too, unchanged.
    let out = node.cli(&["apps", "set", "acme/two", "--memory", "64MiB"]);
    assert!(stderr(&out).contains("memory quota"), "{}", stderr(&out));
    let status: Value =
        serde_json::from_str(&node.cli_ok(&["status", "acme/two", "--json"])).unwrap();
    assert_eq!(status["limits"]["memory_bytes"], 32 << 20);
    // A quota below what the apps already need is refused, unchanged.
    let out = node.cli(&["tenants", "quota", "acme", "--memory", "64MiB"]);
    assert!(
        stderr(&out).contains("below what tenant `acme`'s 2 apps need"),
        "{}",
        stderr(&out)
    );
    let tenants: Value =
        serde_json::from_str(&node.cli_ok(&["tenants", "list", "--json"])).unwrap();
    assert_eq!(tenants[0]["quota"]["memory_bytes"], 100 << 20);
    let out = node.cli(&["tenants", "quota", "acme", "--memory", "lots"]);
    assert!(stderr(&out).contains("--memory"), "{}", stderr(&out));
}

#[test]
fn requests_beyond_the_instance_quota_get_503() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("acme/spin", "spin", &["--deadline", "3s"]);
    node.deploy("acme/hello", "hello", &[]);
    node.deploy("other/hello", "hello", &[]);
    node.cli_ok(&["tenants", "quota", "acme", "--instances", "1"]);
    let http = node.http;
    let busy =
        thread::spawn(move || common::request(http, "GET", "spin.acme.localhost", "/", b"").status);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tenants: Value =
            serde_json::from_str(&node.cli_ok(&["tenants", "list", "--json"])).unwrap();
        let acme = tenants
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "acme")
            .cloned()
            .unwrap();
        if acme["usage"]["instances"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "spin never started: {acme}");
        thread::sleep(Duration::from_millis(20));
    }
    let reply = node.request("GET", "hello.acme.localhost", "/", b"");
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(
        reply.text().contains("quota of 1 instances"),
        "{}",
        reply.text()
    );
    assert_eq!(reply.header("retry-after"), Some("1"));
    // Other tenants are not affected.
    assert_eq!(
        node.request("GET", "hello.other.localhost", "/", b"")
            .status,
        200
    );
    assert_eq!(busy.join().unwrap(), 504);
    // Once the instance is free, the tenant serves again.
    assert_eq!(
        node.request("GET", "hello.acme.localhost", "/", b"").status,
        200
    );
}

#[test]
fn limits_change_without_a_redeploy_and_restart_recycles_instances() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("demo/hello", "hello", &["--reuse", "100"]);
    for _ in 0..3 {
        assert_eq!(
            node.request("GET", "hello.demo.localhost", "/", b"").status,
            200
        );
    }
    let instances = || {
        node.metric("dwcp_instantiate_seconds_count{tenant=\"demo\",app=\"hello\",version=\"v1\"}")
    };
    assert_eq!(instances(), 1.0, "one instance served all three");
    let out = node.cli_ok(&["restart", "demo/hello"]);
    assert!(out.contains("restarted demo/hello"), "{out}");
    assert_eq!(
        node.request("GET", "hello.demo.localhost", "/", b"").status,
        200
    );
    assert_eq!(instances(), 2.0, "a fresh instance after the restart");

    let out = node.cli_ok(&[
        "apps",
        "set",
        "demo/hello",
        "--memory",
        "32MiB",
        "--concurrency",
        "3",
        "--reuse",
        "1",
    ]);
    assert!(out.contains("concurrency 3"), "{out}");
    let status: Value =
        serde_json::from_str(&node.cli_ok(&["status", "demo/hello", "--json"])).unwrap();
    assert_eq!(status["limits"]["memory_bytes"], 32 << 20);
    assert_eq!(status["limits"]["concurrency"], 3);
    assert_eq!(status["active_version"], "v1", "no new version");
    for _ in 0..2 {
        assert_eq!(
            node.request("GET", "hello.demo.localhost", "/", b"").status,
            200
        );
    }
    assert_eq!(instances(), 4.0, "reuse 1: an instance per request");

    // The new limit is enforced: spin with a short deadline set afterwards.
    node.deploy("demo/spin", "spin", &[]);
    node.cli_ok(&["apps", "set", "demo/spin", "--deadline", "200ms"]);
    let started = Instant::now();
    assert_eq!(
        node.request("GET", "spin.demo.localhost", "/", b"").status,
        504
    );
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    for (args, expected) in [
        (vec!["apps", "set", "demo/hello"], "nothing to set"),
        (
            vec!["apps", "set", "demo/hello", "--concurrency", "0"],
            "--concurrency",
        ),
        (
            vec!["apps", "set", "demo/nosuch", "--reuse", "2"],
            "no app `demo/nosuch`",
        ),
        (vec!["restart", "demo/nosuch"], "no app `demo/nosuch`"),
    ] {
        let out = node.cli(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // Limits survive a restart of the node.
    drop(node);
    let node = TestNode::start(dir.path());
    let status: Value =
        serde_json::from_str(&node.cli_ok(&["status", "demo/hello", "--json"])).unwrap();
    assert_eq!(status["limits"]["concurrency"], 3);
}
