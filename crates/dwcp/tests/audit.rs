//! Every admin action lands in the audit log with its outcome; reads do
//! not, and secret values never do.

mod common;

use common::{TestNode, data_dir};
use serde_json::Value;

#[test]
fn admin_actions_are_audited_with_their_outcome() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("t/env", "env", &[]);
    let secret = dir.path().join("s.txt");
    std::fs::write(&secret, "do-not-log-me").unwrap();
    node.cli_ok(&[
        "secrets",
        "set",
        "t/env",
        &format!("TOKEN=@{}", secret.display()),
    ]);
    node.cli_ok(&["apps", "list"]);
    let refused = node.cli(&["tenants", "create", "t"]);
    assert!(!refused.status.success());

    let entries: Value = serde_json::from_str(&node.cli_ok(&["audit", "--json"])).unwrap();
    let actions: Vec<(String, u64)> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(actions.len(), 3, "{actions:?}");
    assert!(
        actions[0].0.starts_with("POST /v1/apps/t/env/versions"),
        "{actions:?}"
    );
    assert_eq!(actions[0].1, 201);
    assert_eq!(
        actions[1],
        ("PUT /v1/apps/t/env/secrets/TOKEN".to_string(), 200)
    );
    assert_eq!(actions[2], ("POST /v1/tenants/t".to_string(), 409));
    assert!(!entries.to_string().contains("do-not-log-me"));

    // Kept across restarts; `--since` filters.
    drop(node);
    let node = TestNode::start(dir.path());
    let all: Value = serde_json::from_str(&node.cli_ok(&["audit", "--json"])).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 3);
    let table = node.cli_ok(&["audit", "--since", "1h"]);
    assert!(
        table.contains("POST /v1/tenants/t") && table.contains("409"),
        "{table}"
    );
    let out = node.cli(&["audit", "--since", "yesterday-ish"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since"));
}
