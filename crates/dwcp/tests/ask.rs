//! `dwcp ask` end to end: what it understood, offline; the plan it runs
//! through a real node's admin API; what it refuses to run.

mod common;

use std::process::Command;

use common::{TestNode, data_dir, dwcp, stderr};

#[test]
fn dry_run_json_needs_no_node_and_has_the_contract_shape() {
    let out = Command::new(dwcp())
        .args(["--admin", "http://127.0.0.1:9"])
        .args(["ask", "--dry-run", "--json", "list the apps of tenant acme"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["intent"], "list_apps");
    assert_eq!(v["slots"], serde_json::json!({"tenant": "acme"}));
    assert!(v["confidence"].as_f64().unwrap() > 0.5);

    let out = Command::new(dwcp())
        .args(["ask", "--dry-run", "--json", "Book a flight to Berlin."])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["intent"], "none");
    assert_eq!(v["suggestions"].as_array().unwrap().len(), 3);
}

#[test]
fn a_plan_runs_through_the_admin_api_and_destructive_ones_wait_for_yes() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("demo/hello", "hello", &[]);

    let listed = node.cli_ok(&["ask", "list the apps of tenant demo"]);
    assert!(listed.contains("plan: dwcp apps list demo"), "{listed}");
    assert!(listed.contains("hello"), "{listed}");

    let limits = node.cli_ok(&[
        "ask",
        "set the memory limit of hello for tenant demo to 32MB",
    ]);
    assert!(
        limits.contains("plan: dwcp apps set demo/hello --memory 32MiB"),
        "{limits}"
    );
    let status = node.cli_ok(&["status", "demo/hello", "--json"]);
    assert!(status.contains("33554432"), "the limit was set: {status}");

    // Destructive, no terminal, no --yes: refused, nothing deleted.
    let out = node.cli(&["ask", "delete the hello app of tenant demo"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert!(node.cli_ok(&["apps", "list", "demo"]).contains("hello"));

    let deleted = node.cli_ok(&["ask", "--yes", "delete the hello app of tenant demo"]);
    assert!(
        deleted.contains("plan: dwcp delete demo/hello"),
        "{deleted}"
    );
    assert!(!node.cli_ok(&["apps", "list", "demo"]).contains("hello"));
}

#[test]
fn what_this_build_cannot_do_or_did_not_understand_runs_nothing() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("demo/hello", "hello", &[]);

    let out = node.cli(&["ask", "--yes", "drain node edge-1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cluster"), "{}", stderr(&out));

    let out = node.cli(&["ask", "tell me a joke"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("closest"), "{}", stderr(&out));

    // A required slot missing and no terminal to ask on: said, not guessed.
    let out = node.cli(&["ask", "--yes", "delete the app"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("say which app"), "{}", stderr(&out));
    assert!(node.cli_ok(&["apps", "list", "demo"]).contains("hello"));
}
