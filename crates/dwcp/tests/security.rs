//! Security at the node's edges: admin tokens, signed artifacts, HTTPS.
//! Each test starts a real node on free ports.

mod common;

use common::{TestNode, data_dir, request, request_with};

fn get(node: &TestNode, path: &str, token: Option<&str>) -> common::Reply {
    match token {
        Some(t) => {
            let auth = format!("Bearer {t}");
            request_with(
                node.admin,
                "GET",
                "localhost",
                path,
                &[("authorization", &auth)],
            )
        }
        None => request(node.admin, "GET", "localhost", path, b""),
    }
}

#[test]
fn every_admin_call_but_health_needs_a_token() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("admin-token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = node.token();

    for path in ["/healthz", "/readyz"] {
        assert_eq!(get(&node, path, None).status, 200, "{path}");
    }
    for path in ["/v1/apps", "/v1/tenants", "/metrics", "/v1/audit"] {
        let reply = get(&node, path, None);
        assert_eq!(reply.status, 401, "{path}: {}", reply.text());
        assert!(reply.text().contains("needs a token"), "{}", reply.text());
        assert_eq!(get(&node, path, Some("dwcp_wrong")).status, 401, "{path}");
        assert_eq!(get(&node, path, Some(&token)).status, 200, "{path}");
    }
    // The CLI finds the token in the data directory by itself.
    node.cli_ok(&["apps", "list"]);
    let out = node.cli(&["--token", "dwcp_wrong", "apps", "list"]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("not valid"),
        "{}",
        common::stderr(&out)
    );
}

#[test]
fn metrics_can_be_public() {
    let dir = data_dir();
    let node = TestNode::start_with(dir.path(), &["--metrics-public"]);
    assert_eq!(get(&node, "/metrics", None).status, 200);
    assert_eq!(get(&node, "/v1/apps", None).status, 401);
}

#[test]
fn a_tenant_token_reaches_its_own_apps_only_until_revoked() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("acme/hello", "hello", &[]);
    node.deploy("other/hello", "hello", &[]);
    let out = node.cli_ok(&[
        "tokens", "create", "--tenant", "acme", "--name", "ci", "--json",
    ]);
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let token = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    // Stored hashed: the token itself is nowhere on disk.
    let stored = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
    assert!(!stored.contains(&token) && stored.contains(&id));

    let apps = get(&node, "/v1/apps", Some(&token));
    assert_eq!(apps.status, 200);
    assert!(
        apps.text().contains("acme") && !apps.text().contains("other"),
        "{}",
        apps.text()
    );
    assert_eq!(get(&node, "/v1/apps/acme/hello", Some(&token)).status, 200);
    for path in [
        "/v1/apps/other/hello",
        "/v1/tenants",
        "/v1/audit",
        "/metrics",
        "/v1/tokens",
    ] {
        let reply = get(&node, path, Some(&token));
        assert_eq!(reply.status, 403, "{path}: {}", reply.text());
        assert!(
            reply.text().contains("scoped to tenant acme"),
            "{}",
            reply.text()
        );
    }
    // The CLI with the tenant's token: its app, not the other's.
    node.cli_ok(&["--token", &token, "status", "acme/hello"]);
    assert!(
        !node
            .cli(&["--token", &token, "delete", "other/hello"])
            .status
            .success()
    );
    assert_eq!(
        get(&node, "/v1/apps/other/hello", Some(&node.token())).status,
        200
    );

    // Changes are audited with the token that made them.
    node.cli_ok(&["--token", &token, "restart", "acme/hello"]);
    let audit = node.admin_get("/v1/audit");
    assert!(audit.contains(&format!("\"token\":\"{id}\"")), "{audit}");

    let listed = node.cli_ok(&["tokens", "list"]);
    assert!(
        listed.contains(&id) && listed.contains("tenant acme"),
        "{listed}"
    );
    node.cli_ok(&["tokens", "revoke", &id]);
    assert_eq!(get(&node, "/v1/apps", Some(&token)).status, 401);
}
