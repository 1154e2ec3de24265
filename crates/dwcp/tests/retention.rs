//! Retention and `dwcp gc` against a real node: old versions go on deploy
//! with their files, `gc` sweeps what nothing uses, `--dry-run` changes
//! nothing, old audit entries go.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{TestNode, data_dir, stderr};
use serde_json::Value;

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn versions(node: &TestNode, app: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(&node.cli_ok(&["versions", app, "--json"])).expect("JSON");
    v.as_array()
        .expect("array")
        .iter()
        .map(|v| v["version"].as_str().expect("name").to_string())
        .collect()
}

#[test]
fn deploys_keep_the_newest_versions_and_remove_the_files_of_the_others() {
    let dir = data_dir();
    let node = TestNode::start_with(dir.path(), &["--keep-versions", "3"]);
    // Five different components: five artifacts.
    for example in ["hello", "echo", "env", "trap", "logger"] {
        node.deploy("demo/app", example, &[]);
    }
    assert_eq!(versions(&node, "demo/app"), ["v3", "v4", "v5"]);
    assert_eq!(files(&dir.path().join("artifacts")).len(), 3);
    // Two files (code and checksum) per compiled artifact.
    assert_eq!(files(&dir.path().join("aot")).len(), 6);
    assert_eq!(
        node.request("GET", "app.demo.localhost", "/", b"").status,
        200
    );

    // An artifact another app still uses stays.
    node.deploy("demo/other", "env", &[]);
    node.cli_ok(&["apps", "set", "demo/app", "--keep-versions", "1"]);
    // The serving version and the one before it (an undo's target) stay.
    assert_eq!(versions(&node, "demo/app"), ["v4", "v5"]);
    let artifacts = files(&dir.path().join("artifacts"));
    assert_eq!(artifacts.len(), 3, "{artifacts:?}");
    assert!(
        node.cli_ok(&["status", "demo/app"])
            .contains("(of 2 stored, 1 kept)")
    );

    let out = node.cli(&["apps", "set", "demo/app", "--keep-versions", "0"]);
    assert!(stderr(&out).contains("at least 1"), "{}", stderr(&out));
    assert_eq!(versions(&node, "demo/app"), ["v4", "v5"]);
}

#[test]
fn gc_sweeps_what_nothing_uses_and_a_dry_run_changes_nothing() {
    let dir = data_dir();
    let node = TestNode::start_with(dir.path(), &["--audit-retention", "1s"]);
    node.deploy("demo/hello", "hello", &[]);
    let artifacts = dir.path().join("artifacts");
    let aot = dir.path().join("aot");
    // What an interrupted deploy and an older `dwcp` leave behind.
    let orphan = format!("{}.wasm", "ab".repeat(32));
    std::fs::write(artifacts.join(&orphan), b"\0asm").expect("write");
    let hello = files(&artifacts)
        .into_iter()
        .find(|f| *f != orphan)
        .expect("hello's artifact");
    let hash = hello.trim_end_matches(".wasm");
    let stale = format!("{hash}-0000000000000000.cwasm");
    std::fs::write(aot.join(&stale), vec![0u8; 4096]).expect("write");
    std::thread::sleep(Duration::from_millis(1100));

    let before = (files(&artifacts), files(&aot));
    let dry: Value =
        serde_json::from_str(&node.cli_ok(&["gc", "--dry-run", "--json"])).expect("JSON");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["artifacts"], serde_json::json!(["ab".repeat(32)]));
    assert_eq!(dry["compiled"], serde_json::json!([stale]));
    assert!(dry["audit_entries"].as_u64().expect("count") >= 1);
    assert_eq!(dry["bytes"], 4 + 4096);
    assert_eq!((files(&artifacts), files(&aot)), before);

    let text = node.cli_ok(&["gc"]);
    assert!(
        text.contains("removed 0 version(s), 1 artifact(s), 1 compiled file(s)"),
        "{text}"
    );
    assert!(!artifacts.join(&orphan).exists());
    assert!(!aot.join(&stale).exists());
    assert_eq!(files(&artifacts), [hello]);
    // The app serves on, from its own compiled code.
    assert_eq!(
        node.request("GET", "hello.demo.localhost", "/", b"").text(),
        "Hello, world!\n"
    );
    // Old audit entries are gone; the gc itself is the newest.
    let audit: Value = serde_json::from_str(&node.cli_ok(&["audit", "--json"])).expect("JSON");
    let actions: Vec<&str> = audit
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        !actions.iter().any(|a| a.contains("/versions")),
        "{actions:?}"
    );
    assert!(actions.last().is_some_and(|a| a.starts_with("POST /v1/gc")));

    let again: Value = serde_json::from_str(&node.cli_ok(&["gc", "--json"])).expect("JSON");
    assert_eq!(again["bytes"], 0);
}

#[test]
fn bad_retention_settings_are_refused_at_start() {
    let dir = data_dir();
    for (flag, value, expected) in [
        ("--keep-versions", "0", "at least 1"),
        (
            "--audit-retention",
            "forever",
            "--audit-retention `forever`",
        ),
    ] {
        let out = std::process::Command::new(common::dwcp())
            .args(["up", "--http", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path())
            .args([flag, value])
            .output()
            .expect("dwcp runs");
        assert!(!out.status.success());
        assert!(stderr(&out).contains(expected), "{}", stderr(&out));
    }
}
