//! `dwcp deploy --preinit`: the component's initialization export runs once
//! at deploy and every instance starts from the state it left.

mod common;

use common::{TestNode, data_dir, stderr};
use serde_json::Value;

#[test]
fn a_preinitialized_component_answers_the_same_from_built_in_state() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("t/plain", "heavy-init", &[]);
    node.deploy("t/pre", "heavy-init", &["--preinit"]);
    for host in ["plain.t.localhost", "pre.t.localhost"] {
        // The last prime below 10 million, and the one-thousandth.
        let reply = node.request("GET", host, "/?n=664579", b"");
        assert_eq!(reply.text(), "prime 664579 is 9999991\n", "{host}");
        let reply = node.request("GET", host, "/?n=1000", b"");
        assert_eq!(reply.text(), "prime 1000 is 7919\n", "{host}");
    }
    let versions: Value =
        serde_json::from_str(&node.cli_ok(&["versions", "t/pre", "--json"])).expect("JSON");
    assert_eq!(versions[0]["preinit"], "wizer-initialize");
    // What was uploaded is recorded beside what is served.
    let uploaded = std::fs::read(common::example("heavy-init")).expect("read");
    let source = dwcp_store::sha256_hex(&uploaded);
    assert_eq!(versions[0]["source_sha256"], source.as_str());
    assert_ne!(versions[0]["sha256"], source.as_str());
    assert!(
        node.cli_ok(&["versions", "t/pre"])
            .contains("wizer-initialize")
    );
    let plain: Value =
        serde_json::from_str(&node.cli_ok(&["versions", "t/plain", "--json"])).expect("JSON");
    assert_eq!(plain[0]["preinit"], Value::Null);
    // The table is in the artifact now: 664,579 primes of 4 bytes.
    assert!(versions[0]["size"].as_u64().expect("size") > 2_600_000);

    // The pre-initialized artifact is what is stored: it serves after a restart.
    drop(node);
    let node = TestNode::start(dir.path());
    assert_eq!(
        node.request("GET", "pre.t.localhost", "/?n=1000", b"")
            .text(),
        "prime 1000 is 7919\n"
    );
}

#[test]
fn components_without_the_export_are_refused_and_nothing_is_deployed() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    for (example, flag, expected) in [
        (
            "hello",
            "--preinit",
            "exports no function `wizer-initialize`",
        ),
        (
            "heavy-init",
            "--preinit=warm-up",
            "exports no function `warm-up`",
        ),
        (
            "heavy-init",
            "--preinit=fail-initialize",
            "`fail-initialize` failed",
        ),
    ] {
        let file = common::example(example);
        let out = node.cli(&["deploy", "t/app", file.to_str().expect("utf-8"), flag]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(expected), "{}", stderr(&out));
        assert!(stderr(&out).contains("HTTP 422"), "{}", stderr(&out));
    }
    let apps: Value = serde_json::from_str(&node.cli_ok(&["apps", "--json"])).expect("JSON");
    assert_eq!(apps, serde_json::json!([]));
}
