//! Config values and secrets reach guests as environment variables without
//! a redeploy; secrets are sealed at rest and never shown.

mod common;

use common::{TestNode, data_dir, stderr};
use serde_json::Value;

fn env_of(node: &TestNode) -> String {
    let reply = node.request("GET", "env.t.localhost", "/", b"");
    assert_eq!(reply.status, 200);
    reply.text()
}

#[test]
fn config_and_secrets_reach_new_instances_without_a_redeploy() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("t/env", "env", &[]);
    assert!(!env_of(&node).contains("GREETING"));

    node.cli_ok(&["config", "set", "t/env", "GREETING=hello there"]);
    assert!(
        env_of(&node).contains("GREETING=hello there\n"),
        "{}",
        env_of(&node)
    );
    assert_eq!(
        node.cli_ok(&["config", "get", "t/env", "GREETING"]),
        "hello there\n"
    );
    let all: Value =
        serde_json::from_str(&node.cli_ok(&["config", "list", "t/env", "--json"])).unwrap();
    assert_eq!(all["GREETING"], "hello there");

    let secret_file = dir.path().join("token.txt");
    std::fs::write(&secret_file, "s3cr3t-value-42\n").unwrap();
    let assignment = format!("API_TOKEN=@{}", secret_file.display());
    node.cli_ok(&["secrets", "set", "t/env", &assignment]);
    assert!(
        env_of(&node).contains("API_TOKEN=s3cr3t-value-42\n"),
        "{}",
        env_of(&node)
    );
    // Names only, never values.
    let listed = node.cli_ok(&["secrets", "list", "t/env"]);
    assert_eq!(listed, "API_TOKEN\n");
    let status = node.cli_ok(&["status", "t/env", "--json"]);
    assert!(!status.contains("s3cr3t"), "{status}");
    // Sealed at rest: the state file holds no plaintext.
    let state = std::fs::read(dir.path().join("state.redb")).unwrap();
    assert!(
        !state.windows(15).any(|w| w == b"s3cr3t-value-42"),
        "plaintext in state.redb"
    );
    let key = dir.path().join("keys/secrets.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Survives a restart of the node.
    drop(node);
    let node = TestNode::start(dir.path());
    let env = env_of(&node);
    assert!(
        env.contains("API_TOKEN=s3cr3t-value-42\n") && env.contains("GREETING=hello there\n"),
        "{env}"
    );

    node.cli_ok(&["secrets", "unset", "t/env", "API_TOKEN"]);
    node.cli_ok(&["config", "unset", "t/env", "GREETING"]);
    let env = env_of(&node);
    assert!(
        !env.contains("API_TOKEN") && !env.contains("GREETING"),
        "{env}"
    );
}

#[test]
fn bad_config_and_secrets_are_refused_and_change_nothing() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("t/env", "env", &[]);
    node.cli_ok(&["config", "set", "t/env", "KEEP=1"]);
    let missing = dir.path().join("nope.txt");
    for (args, expected) in [
        (
            vec![
                "secrets",
                "set",
                "t/env",
                &format!("X=@{}", missing.display()),
            ],
            "cannot read the secret file",
        ),
        (
            vec!["secrets", "set", "t/env", "X=plain-value"],
            "NAME=@FILE or NAME=-",
        ),
        (vec!["config", "set", "t/env", "NOEQUALS"], "KEY=VALUE"),
        (vec!["config", "set", "t/env", "1BAD=x"], "not a valid name"),
        (
            vec!["config", "set", "t/env", "BAD-NAME=x"],
            "not a valid name",
        ),
        (
            vec!["config", "unset", "t/env", "ABSENT"],
            "has no config `ABSENT`",
        ),
        (
            vec!["secrets", "unset", "t/env", "ABSENT"],
            "has no secret `ABSENT`",
        ),
        (
            vec!["config", "set", "nosuch/env", "A=b"],
            "no tenant `nosuch`",
        ),
        (
            vec!["config", "get", "t/env", "ABSENT"],
            "has no config `ABSENT`",
        ),
    ] {
        let out = node.cli(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let all: Value =
        serde_json::from_str(&node.cli_ok(&["config", "list", "t/env", "--json"])).unwrap();
    assert_eq!(all, serde_json::json!({ "KEEP": "1" }));
    assert_eq!(node.cli_ok(&["secrets", "list", "t/env"]), "");
}

#[test]
fn an_app_whose_secret_no_longer_opens_is_held_back_until_fixed() {
    let dir = data_dir();
    let secret_file = dir.path().join("token.txt");
    std::fs::write(&secret_file, "v1").unwrap();
    {
        let node = TestNode::start(dir.path());
        node.deploy("t/env", "env", &[]);
        node.deploy("t/hello", "hello", &[]);
        node.cli_ok(&[
            "secrets",
            "set",
            "t/env",
            &format!("TOKEN=@{}", secret_file.display()),
        ]);
    }
    // The node's key is lost and replaced: the sealed value cannot open.
    std::fs::write(dir.path().join("keys/secrets.key"), [7u8; 32]).unwrap();
    let node = TestNode::start(dir.path());
    assert!(node.ready_line.contains("apps=1"), "{}", node.ready_line);
    assert_eq!(
        node.request("GET", "hello.t.localhost", "/", b"").status,
        200
    );
    let held = node.request("GET", "env.t.localhost", "/", b"");
    assert_eq!(held.status, 503);
    assert!(held.text().contains("failed to load"), "{}", held.text());
    assert_eq!(held.header("retry-after"), Some("60"));
    // A change that does not fix it is stored, and says the app still does not serve.
    let out = node.cli(&["config", "set", "t/env", "MODE=x"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the change is stored, but the app still does not serve"),
        "{}",
        stderr(&out)
    );
    assert_eq!(node.cli_ok(&["config", "get", "t/env", "MODE"]), "x\n");
    // Setting the secret again (sealed under the new key) brings it back.
    node.cli_ok(&[
        "secrets",
        "set",
        "t/env",
        &format!("TOKEN=@{}", secret_file.display()),
    ]);
    assert!(env_of(&node).contains("TOKEN=v1\n"));
}
