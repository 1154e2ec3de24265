//! Tenants' feature flags on a real node over real HTTP: `dwcp flags`, the
//! OFREP endpoints, tenant tokens, and flags surviving a restart.

mod common;

use common::{Reply, TestNode, data_dir, request_full, stderr};
use serde_json::{Value, json};

/// A flagd flag file: a targeted boolean, a static string, a disabled flag.
const FLAGS: &str = r##"{
  "$schema": "https://flagd.dev/schema/v0/flags.json",
  "flags": {
    "new-checkout": {
      "state": "ENABLED",
      "variants": { "on": true, "off": false },
      "defaultVariant": "off",
      "targeting": {
        "if": [{ "ends_with": [{ "var": "email" }, "@example.com"] }, "on", "off"]
      }
    },
    "color": {
      "state": "ENABLED",
      "variants": { "red": "#f00", "blue": "#00f" },
      "defaultVariant": "red",
      "metadata": { "owner": "web" }
    },
    "old": {
      "state": "DISABLED",
      "variants": { "on": true, "off": false },
      "defaultVariant": "on"
    }
  }
}
"##;

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test file");
    path.to_str().expect("utf-8 path").to_string()
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `dwcp --tenant TENANT flags ARGS…`, expecting success.
fn flags(node: &TestNode, tenant: &str, args: &[&str]) -> String {
    let mut all = vec!["--tenant", tenant, "flags"];
    all.extend_from_slice(args);
    node.cli_ok(&all)
}

/// `dwcp --tenant TENANT flags ARGS…`, expecting failure; returns stderr.
fn flags_err(node: &TestNode, tenant: &str, args: &[&str]) -> String {
    let mut all = vec!["--tenant", tenant, "flags"];
    all.extend_from_slice(args);
    let out = node.cli(&all);
    assert!(!out.status.success(), "dwcp {all:?} succeeded");
    stderr(&out)
}

/// A POST to the admin API with `token` and extra headers.
fn post(node: &TestNode, token: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let auth = format!("Bearer {token}");
    let mut all = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    all.extend_from_slice(headers);
    request_full(node.admin, "POST", "localhost", path, &all, body.as_bytes())
}

/// A GET on the admin API with `token`.
fn get(node: &TestNode, token: &str, path: &str) -> Reply {
    let auth = format!("Bearer {token}");
    request_full(
        node.admin,
        "GET",
        "localhost",
        path,
        &[("authorization", &auth)],
        b"",
    )
}

/// OFREP single evaluation of `key` in `context` with the node's token,
/// for `tenant` (named by header).
fn evaluate(node: &TestNode, tenant: &str, key: &str, context: Value) -> (u16, Value) {
    let reply = post(
        node,
        &node.token(),
        &format!("/ofrep/v1/evaluate/flags/{key}"),
        &[("x-dwcp-tenant", tenant)],
        &json!({ "context": context }).to_string(),
    );
    (reply.status, json_of(&reply.text()))
}

#[test]
fn flags_round_trip_through_the_cli_and_survive_a_restart() {
    let dir = data_dir();
    let files = data_dir();
    let node = TestNode::start(dir.path());
    let file = write(files.path(), "flags.json", FLAGS);

    let out = flags(&node, "acme", &["import", &file]);
    assert!(out.contains("3 flag(s)"), "{out}");
    let rows = json_of(&flags(&node, "acme", &["list", "--json"]));
    let keys: Vec<&str> = rows
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|r| r["key"].as_str())
        .collect();
    assert_eq!(keys, ["color", "new-checkout", "old"]);
    assert_eq!(rows[0]["default_variant"], "red");
    assert_eq!(rows[0]["variants"], json!({"red": "#f00", "blue": "#00f"}));
    assert_eq!(rows[1]["targeting"], true);
    assert_eq!(rows[2]["state"], "DISABLED");
    let table = flags(&node, "acme", &["list"]);
    assert!(
        table.contains("new-checkout") && table.contains("DISABLED"),
        "{table}"
    );

    // Export gives back the file as imported; importing the export changes nothing.
    assert_eq!(flags(&node, "acme", &["export"]), FLAGS);
    let exported = files.path().join("exported.json");
    let exported = exported.to_str().expect("utf-8");
    flags(&node, "acme", &["export", "-o", exported]);
    let out = flags(&node, "acme", &["import", exported]);
    assert!(!out.contains("added") && !out.contains("changed"), "{out}");
    assert_eq!(flags(&node, "acme", &["export"]), FLAGS);

    // A malformed file is refused whole, with its line; nothing changes.
    let broken = FLAGS.replace(
        "\"defaultVariant\": \"red\",",
        "\"defaultVariant\": \"red\"",
    );
    let bad = write(files.path(), "broken.json", &broken);
    let err = flags_err(&node, "acme", &["import", bad.as_str()]);
    assert!(
        err.contains("line 16") && err.contains("nothing changed"),
        "{err}"
    );
    let inconsistent = FLAGS.replace(
        "\"defaultVariant\": \"red\"",
        "\"defaultVariant\": \"green\"",
    );
    let bad = write(files.path(), "inconsistent.json", &inconsistent);
    let err = flags_err(&node, "acme", &["import", bad.as_str(), "--merge"]);
    assert!(
        err.contains("line 12") && err.contains("\"green\""),
        "{err}"
    );
    let unknown_op = FLAGS.replace("ends_with", "ends_wiht");
    let bad = write(files.path(), "unknown-op.json", &unknown_op);
    let err = flags_err(&node, "acme", &["import", bad.as_str()]);
    assert!(err.contains("line 8") && err.contains("targeting"), "{err}");
    assert_eq!(flags(&node, "acme", &["export"]), FLAGS);

    // get / set / disable / enable.
    let color = json_of(&flags(&node, "acme", &["get", "color", "--json"]));
    assert_eq!(color["defaultVariant"], "red");
    assert!(flags(&node, "acme", &["get", "color"]).contains("red=\"#f00\""));
    let blue = write(
        files.path(),
        "color.json",
        r##"{"state": "ENABLED", "variants": {"red": "#f00", "blue": "#00f"}, "defaultVariant": "blue"}"##,
    );
    flags(&node, "acme", &["set", "color", &blue]);
    let color = json_of(&flags(&node, "acme", &["get", "color", "--json"]));
    assert_eq!(color["defaultVariant"], "blue");
    let bad_flag = write(
        files.path(),
        "bad-flag.json",
        "{\n  \"state\": \"ENABLED\",\n  \"variants\": {\"a\": 1}\n  \"x\": 2\n}",
    );
    let err = flags_err(&node, "acme", &["set", "color", &bad_flag]);
    assert!(err.contains("line 4"), "{err}");
    flags(&node, "acme", &["disable", "color"]);
    let (status, body) = evaluate(&node, "acme", "color", json!({}));
    assert_eq!((status, body["reason"].as_str()), (200, Some("DISABLED")));
    assert!(body.get("value").is_none(), "{body}");
    flags(&node, "acme", &["enable", "color"]);
    let (_, body) = evaluate(&node, "acme", "color", json!({}));
    assert_eq!(body["value"], "#00f");

    // create / rollout / delete.
    flags(&node, "acme", &["create", "beta"]);
    let beta = json_of(&flags(&node, "acme", &["get", "beta", "--json"]));
    assert_eq!(
        beta,
        json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"})
    );
    let err = flags_err(&node, "acme", &["create", "beta"]);
    assert!(err.contains("exists"), "{err}");
    let (_, body) = evaluate(&node, "acme", "beta", json!({"targetingKey": "u1"}));
    assert_eq!(
        (body["value"].as_bool(), body["reason"].as_str()),
        (Some(false), Some("STATIC"))
    );
    flags(&node, "acme", &["rollout", "beta", "100"]);
    let (_, body) = evaluate(&node, "acme", "beta", json!({"targetingKey": "u1"}));
    assert_eq!(
        (
            body["value"].as_bool(),
            body["variant"].as_str(),
            body["reason"].as_str()
        ),
        (Some(true), Some("on"), Some("TARGETING_MATCH"))
    );
    flags(&node, "acme", &["rollout", "beta", "0%"]);
    let (_, body) = evaluate(&node, "acme", "beta", json!({"targetingKey": "u1"}));
    assert_eq!(body["value"].as_bool(), Some(false));
    flags(&node, "acme", &["rollout", "beta", "30"]);
    let on = (0..400)
        .filter(|i| {
            let (_, body) = evaluate(
                &node,
                "acme",
                "beta",
                json!({"targetingKey": format!("user-{i}")}),
            );
            body["value"].as_bool() == Some(true)
        })
        .count();
    assert!((80..=160).contains(&on), "{on} of 400 users on at 30%");
    // The same user gets the same answer every time.
    let first = evaluate(&node, "acme", "beta", json!({"targetingKey": "user-7"})).1;
    assert_eq!(
        evaluate(&node, "acme", "beta", json!({"targetingKey": "user-7"})).1,
        first
    );
    let err = flags_err(&node, "acme", &["rollout", "color", "50"]);
    assert!(err.contains("on/off"), "{err}");
    let err = flags_err(&node, "acme", &["rollout", "beta", "150"]);
    assert!(err.contains("0 to 100"), "{err}");
    flags(&node, "acme", &["delete", "beta"]);
    let err = flags_err(&node, "acme", &["get", "beta"]);
    assert!(
        err.contains("no flag `beta`") && err.contains("404"),
        "{err}"
    );
    let err = flags_err(&node, "acme", &["delete", "beta"]);
    assert!(err.contains("no flag"), "{err}");

    // --merge adds and replaces flag by flag; a plain import replaces all.
    let more = write(
        files.path(),
        "more.json",
        r#"{"flags": {"extra": {"state": "ENABLED", "variants": {"v": 1}, "defaultVariant": "v"}}}"#,
    );
    let out = flags(&node, "acme", &["import", &more, "--merge"]);
    assert!(
        out.contains("4 flag(s)") && out.contains("added: extra"),
        "{out}"
    );
    let keys = json_of(&flags(&node, "acme", &["list", "--json"]));
    assert_eq!(keys.as_array().map(Vec::len), Some(4));
    // Other tenants are untouched.
    assert_eq!(
        json_of(&flags(&node, "other", &["list", "--json"])),
        json!([])
    );
    let before_restart = flags(&node, "acme", &["export"]);

    // Flags survive a restart.
    drop(node);
    let node = TestNode::start(dir.path());
    assert_eq!(flags(&node, "acme", &["export"]), before_restart);
    let (status, body) = evaluate(&node, "acme", "extra", json!({}));
    assert_eq!((status, body["value"].as_i64()), (200, Some(1)));

    // And go with a backup into a restored node.
    let archive = files.path().join("node.tar");
    let archive = archive.to_str().expect("utf-8");
    node.cli_ok(&["backup", archive]);
    let restored_dir = data_dir();
    std::fs::create_dir_all(restored_dir.path().join("keys")).expect("mkdir");
    std::fs::copy(
        dir.path().join("keys/secrets.key"),
        restored_dir.path().join("keys/secrets.key"),
    )
    .expect("copy the secrets key");
    let restored = TestNode::start_with(restored_dir.path(), &["--restore", archive]);
    assert_eq!(flags(&restored, "acme", &["export"]), before_restart);
    drop(restored);

    let out = flags(&node, "acme", &["import", &more]);
    assert!(
        out.contains("1 flag(s)") && out.contains("removed"),
        "{out}"
    );
}

#[test]
fn ofrep_evaluates_a_tenants_flags_for_its_token_only() {
    let dir = data_dir();
    let files = data_dir();
    let node = TestNode::start(dir.path());
    flags(
        &node,
        "acme",
        &["import", &write(files.path(), "flags.json", FLAGS)],
    );
    let token = node.token();

    // Single evaluation: value, variant, reason, metadata.
    let (status, body) = evaluate(
        &node,
        "acme",
        "new-checkout",
        json!({"targetingKey": "u1", "email": "ann@example.com"}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"key": "new-checkout", "value": true, "variant": "on", "reason": "TARGETING_MATCH", "metadata": {}})
    );
    let (_, body) = evaluate(
        &node,
        "acme",
        "new-checkout",
        json!({"email": "bob@elsewhere.org"}),
    );
    assert_eq!(
        (body["value"].as_bool(), body["variant"].as_str()),
        (Some(false), Some("off"))
    );
    let (_, body) = evaluate(&node, "acme", "color", json!({}));
    assert_eq!(
        body,
        json!({"key": "color", "value": "#f00", "variant": "red", "reason": "STATIC", "metadata": {"owner": "web"}})
    );
    let (status, body) = evaluate(&node, "acme", "old", json!({}));
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"key": "old", "reason": "DISABLED", "metadata": {}})
    );

    // Errors: unknown flag 404, a context that is not an object or a body
    // that is not JSON 400.
    let (status, body) = evaluate(&node, "acme", "nope", json!({}));
    assert_eq!(status, 404);
    assert_eq!(
        (body["key"].as_str(), body["errorCode"].as_str()),
        (Some("nope"), Some("FLAG_NOT_FOUND"))
    );
    assert!(
        body["errorDetails"]
            .as_str()
            .is_some_and(|d| d.contains("acme"))
    );
    let (status, body) = evaluate(&node, "acme", "color", json!("a string"));
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (400, Some("INVALID_CONTEXT"))
    );
    let reply = post(
        &node,
        &token,
        "/ofrep/v1/evaluate/flags/color?tenant=acme",
        &[],
        "{not json",
    );
    assert_eq!(reply.status, 400);
    assert_eq!(json_of(&reply.text())["errorCode"], "PARSE_ERROR");
    // The node-wide token names the tenant; `default` has no such flag.
    let reply = post(&node, &token, "/ofrep/v1/evaluate/flags/color", &[], "{}");
    assert_eq!(reply.status, 404, "{}", reply.text());

    // Bulk evaluation: every flag, by the query's tenant; ETag and 304.
    let context = json!({"context": {"targetingKey": "u2", "email": "cy@example.com"}}).to_string();
    let reply = post(
        &node,
        &token,
        "/ofrep/v1/evaluate/flags?tenant=acme",
        &[],
        &context,
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let bulk = json_of(&reply.text());
    let flags_out = bulk["flags"].as_array().expect("flags");
    assert_eq!(flags_out.len(), 3);
    let find = |key: &str| {
        flags_out
            .iter()
            .find(|f| f["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("no {key} in {bulk}"))
    };
    assert_eq!(find("new-checkout")["value"], true);
    assert_eq!(find("color")["reason"], "STATIC");
    assert_eq!(find("old")["reason"], "DISABLED");
    let etag = reply.header("etag").expect("an ETag").to_string();
    let again = post(
        &node,
        &token,
        "/ofrep/v1/evaluate/flags?tenant=acme",
        &[("if-none-match", &etag)],
        &context,
    );
    assert_eq!(again.status, 304);
    let reply = post(
        &node,
        &token,
        "/ofrep/v1/evaluate/flags",
        &[("x-dwcp-tenant", "acme")],
        "[]",
    );
    assert_eq!(
        (
            reply.status,
            json_of(&reply.text())["errorCode"]
                .as_str()
                .map(str::to_string)
        ),
        (400, Some("INVALID_CONTEXT".into()))
    );

    // A tenant's token reaches its own flags, never another tenant's.
    let created = node.cli_ok(&["tokens", "create", "--tenant", "beta", "--json"]);
    let beta_token = json_of(&created)["token"]
        .as_str()
        .expect("a token")
        .to_string();
    assert_eq!(get(&node, &beta_token, "/v1/flags/acme").status, 403);
    assert_eq!(
        get(&node, &beta_token, "/v1/flags/acme/flags/color").status,
        403
    );
    let reply = post(&node, &beta_token, "/v1/flags/acme/flags/sneaky", &[], "");
    assert_eq!(reply.status, 403);
    let reply = post(
        &node,
        &beta_token,
        "/ofrep/v1/evaluate/flags/color",
        &[("x-dwcp-tenant", "acme")],
        "{}",
    );
    assert_eq!(reply.status, 403, "{}", reply.text());
    let reply = post(
        &node,
        &beta_token,
        "/ofrep/v1/evaluate/flags?tenant=acme",
        &[],
        "{}",
    );
    assert_eq!(reply.status, 403);
    // Without naming a tenant it evaluates its own: beta has no `color`.
    let reply = post(
        &node,
        &beta_token,
        "/ofrep/v1/evaluate/flags/color",
        &[],
        "{}",
    );
    assert_eq!(reply.status, 404);
    // Its own flags it manages and evaluates.
    let out = node.cli_ok(&[
        "--token",
        &beta_token,
        "--tenant",
        "beta",
        "flags",
        "create",
        "dark-mode",
    ]);
    assert!(out.contains("created flag dark-mode"), "{out}");
    assert_eq!(get(&node, &beta_token, "/v1/flags/beta").status, 200);
    let reply = post(&node, &beta_token, "/ofrep/v1/evaluate/flags", &[], "{}");
    let bulk = json_of(&reply.text());
    assert_eq!(
        bulk["flags"],
        json!([{"key": "dark-mode", "value": false, "variant": "off", "reason": "STATIC", "metadata": {}}])
    );
    assert!(!flags(&node, "acme", &["list"]).contains("dark-mode"));
    let out = node.cli(&["--token", &beta_token, "--tenant", "acme", "flags", "list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
}

#[test]
fn apps_receive_their_tenants_flags_for_the_requests_user_and_never_a_forged_header() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    let files = data_dir();
    node.deploy("acme/echo", "echo", &[]);
    node.deploy("other/echo", "echo", &[]);
    flags(
        &node,
        "acme",
        &["import", &write(files.path(), "flags.json", FLAGS)],
    );
    flags(&node, "acme", &["create", "beta"]);
    flags(&node, "acme", &["rollout", "beta", "50"]);
    // What the guest saw, from `echo`'s JSON of the request headers.
    let seen = |host: &str, headers: &[(&str, &str)]| -> Option<Value> {
        let reply = request_full(node.http, "GET", host, "/", headers, b"");
        assert_eq!(reply.status, 200, "{}", reply.text());
        let echo: Value = serde_json::from_str(&reply.text()).expect("echo answers JSON");
        let headers = echo["headers"].clone();
        let value = match &headers {
            Value::Object(map) => map.get("x-dwcp-flags").cloned(),
            Value::Array(list) => list
                .iter()
                .find(|h| h[0] == "x-dwcp-flags")
                .map(|h| h[1].clone()),
            _ => None,
        }?;
        let text = match value {
            Value::String(s) => s,
            Value::Array(values) => values[0].as_str()?.to_string(),
            _ => return None,
        };
        serde_json::from_str(&text).ok()
    };
    let forged = ("x-dwcp-flags", r#"{"color":"forged"}"#);
    let alice = seen("echo.acme.localhost", &[("x-user-id", "alice"), forged])
        .expect("the app got its tenant's flags");
    assert_eq!(alice["color"], "#f00", "{alice}");
    assert_eq!(alice["new-checkout"], false, "{alice}");
    assert!(
        alice.get("old").is_none(),
        "a disabled flag has no value: {alice}"
    );
    // The split flag is sticky per user and splits users.
    let mut on = 0;
    for u in 0..200 {
        let user = format!("user-{u}");
        let first = seen("echo.acme.localhost", &[("x-user-id", &user)]).expect("flags");
        let again = seen("echo.acme.localhost", &[("x-user-id", &user)]).expect("flags");
        assert_eq!(first["beta"], again["beta"], "{user} flipped");
        on += usize::from(first["beta"] == true);
    }
    assert!(
        (60..=140).contains(&on),
        "{on} of 200 users have beta on at 50%"
    );
    // Another tenant's app gets none of them, and not the forged one either.
    assert_eq!(seen("echo.other.localhost", &[forged]), None);
}

#[test]
fn the_fractional_bucketing_is_a_node_setting_v2_by_default() {
    use dwcp_release::flags::{EvalOptions, FlagSet, FractionalVersion};
    const SPLIT: &str = r#"{"flags": {"ab": {
        "state": "ENABLED",
        "variants": {"a": "a", "b": "b"},
        "defaultVariant": "a",
        "targeting": {"fractional": [["a", 50], ["b", 50]]}
    }}}"#;
    let set = FlagSet::parse(SPLIT).unwrap();
    let users: Vec<String> = (0..64).map(|u| format!("user-{u}")).collect();
    let expected = |fractional| -> Vec<String> {
        let options = EvalOptions {
            fractional,
            now_unix_secs: None,
        };
        users
            .iter()
            .map(|u| {
                let r = set.evaluate("ab", &json!({ "targetingKey": u }), &options);
                r.variant.unwrap().to_string()
            })
            .collect()
    };
    let (v1, v2) = (
        expected(FractionalVersion::V1),
        expected(FractionalVersion::V2),
    );
    assert_ne!(v1, v2, "the two bucketings differ for some of these users");
    for (flags, want) in [(&[][..], &v2), (&["--flags-fractional", "v1"][..], &v1)] {
        let dir = data_dir();
        let node = TestNode::start_with(dir.path(), flags);
        let files = data_dir();
        node.cli_ok(&[
            "--tenant",
            "acme",
            "flags",
            "import",
            &write(files.path(), "ab.json", SPLIT),
        ]);
        let got: Vec<String> = users
            .iter()
            .map(|u| {
                let (status, body) = evaluate(&node, "acme", "ab", json!({ "targetingKey": u }));
                assert_eq!(status, 200, "{body}");
                body["variant"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(&got, want, "{flags:?}");
    }
}
