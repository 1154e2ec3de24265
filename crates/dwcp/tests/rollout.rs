//! Progressive rollouts on a real node over real HTTP: the sticky split,
//! header routing, automatic promotion and abort, operator commands, undo,
//! blue-green, and a rollout that survives a restart.

mod common;

use std::time::{Duration, Instant};

use common::{TestNode, data_dir, request_with};
use serde_json::Value;

const HOST: &str = "app.demo.localhost";

/// Which example answered: `hello` says hello, `echo` answers JSON, `trap` fails.
fn served_by(node: &TestNode, user: &str, extra: &[(&str, &str)]) -> (u16, &'static str) {
    let mut headers = vec![("x-user-id", user)];
    headers.extend_from_slice(extra);
    let reply = request_with(node.http, "GET", HOST, "/", &headers);
    let who = if reply.text().contains("Hello, world!") {
        "hello"
    } else if reply.text().starts_with('{') {
        "echo"
    } else {
        "other"
    };
    (reply.status, who)
}

fn status(node: &TestNode) -> Value {
    serde_json::from_str(&node.cli_ok(&["rollout", "status", "demo/app", "--json"]))
        .expect("status is JSON")
}

fn phase(status: &Value) -> String {
    status["rollout"]["phase"]["phase"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn actions(status: &Value) -> Vec<String> {
    status["rollout"]["decisions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| d["action"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Sends requests from `users` distinct users until the rollout leaves
/// `running`, or `limit` passes; returns the final status.
fn drive_until_over(node: &TestNode, users: usize, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        for u in 0..users {
            served_by(node, &format!("user-{u}"), &[]);
        }
        let s = status(node);
        if !matches!(phase(&s).as_str(), "running" | "warming") {
            return s;
        }
        assert!(Instant::now() < deadline, "still running: {s:#}");
    }
}

#[test]
fn a_good_canary_splits_users_stickily_then_is_promoted_and_undo_goes_back() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("demo/app", "hello", &[]);
    let out = node.deploy(
        "demo/app",
        "echo",
        &[
            "--strategy",
            "canary",
            "--steps",
            "50,100",
            "--step-time",
            "1s",
            "--min-samples",
            "30",
            // `echo` is really slower than `hello` (about 1.5x at 0.03 ms);
            // only errors should decide here.
            "--max-latency-increase",
            "500",
        ],
    );
    assert!(out.contains("canary"), "{out}");

    // Half the users on each side, each staying where they are.
    let mut first = Vec::new();
    for u in 0..100 {
        first.push(served_by(&node, &format!("user-{u}"), &[]).1);
    }
    let on_canary = first.iter().filter(|w| **w == "echo").count();
    assert!(
        (25..=75).contains(&on_canary),
        "{on_canary} of 100 on the canary"
    );
    for (u, was) in first.iter().enumerate() {
        assert_eq!(
            served_by(&node, &format!("user-{u}"), &[]).1,
            *was,
            "user-{u} moved"
        );
    }
    // A tester reaches either version by name; an unknown one is refused.
    let stable_user = first
        .iter()
        .position(|w| *w == "hello")
        .expect("a stable user");
    let user = format!("user-{stable_user}");
    assert_eq!(
        served_by(&node, &user, &[("x-dwcp-version", "v2")]),
        (200, "echo")
    );
    let reply = request_with(node.http, "GET", HOST, "/", &[("x-dwcp-version", "v9")]);
    assert_eq!(reply.status, 404);
    assert!(reply.text().contains("v9"), "{}", reply.text());

    let s = drive_until_over(&node, 40, Duration::from_secs(90));
    assert_eq!(phase(&s), "promoted", "{s:#}");
    let acts = actions(&s);
    assert_eq!(acts.first().map(String::as_str), Some("start"));
    assert_eq!(acts.last().map(String::as_str), Some("promote"));
    assert!(!acts.contains(&"abort".to_string()), "{acts:?}");
    let last = &s["rollout"]["decisions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["readings"].as_array().map(Vec::len), Some(2), "{last}");
    assert_eq!(s["stable"], "v2");
    assert_eq!(s["previous"], "v1");
    for u in 0..20 {
        assert_eq!(served_by(&node, &format!("user-{u}"), &[]).1, "echo");
    }

    // Undo: the previous version serves the very next request.
    node.cli_ok(&["rollout", "undo", "demo/app"]);
    assert_eq!(served_by(&node, "anyone", &[]), (200, "hello"));
    // The version undone stays warm for another undo, but no header
    // reaches it: only the stable version and one rolling out can be named.
    assert_eq!(
        served_by(&node, "anyone", &[("x-dwcp-version", "v2")]).0,
        404
    );
    let versions = node.cli_ok(&["versions", "demo/app"]);
    assert!(
        versions.contains("v1") && versions.contains("v2"),
        "{versions}"
    );
}

#[test]
fn a_failing_canary_is_aborted_by_itself_with_the_numbers_and_an_audit_entry() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    common::deploy_trapping_canary(&node, "demo/app");
    let s = drive_until_over(&node, 60, Duration::from_secs(60));
    assert_eq!(phase(&s), "aborted", "{s:#}");
    let abort = s["rollout"]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["action"] == "abort")
        .expect("an abort decision")
        .clone();
    assert!(
        abort["reason"]
            .as_str()
            .unwrap()
            .contains("ErrorRate worse"),
        "{abort}"
    );
    let error = &abort["readings"][0];
    assert_eq!(error["metric"], "error_rate");
    assert!(error["canary"].as_f64().unwrap() > 0.9, "{error}");
    assert!(error["p_value"].as_f64().unwrap() < error["alpha"].as_f64().unwrap());
    assert_eq!(s["stable"], "v1");
    // Everyone is back on the stable version.
    for u in 0..60 {
        assert_eq!(served_by(&node, &format!("user-{u}"), &[]), (200, "hello"));
    }
    let audit = node.cli_ok(&["audit"]);
    assert!(audit.contains("rollout abort demo/app v2"), "{audit}");
    // Nothing is left to command.
    let out = node.cli(&["rollout", "promote", "demo/app"]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("no rollout in progress"),
        "{}",
        common::stderr(&out)
    );
}

#[test]
fn raising_the_weight_only_moves_users_to_the_canary_and_operators_command_it() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("demo/app", "hello", &[]);
    node.deploy("demo/app", "echo", &["--strategy", "immediate"]);
    node.deploy(
        "demo/app",
        "hello",
        &["--version", "v3", "--strategy", "immediate"],
    );
    // A split set by hand starts a canary of v2 at 10%, paused there.
    node.cli_ok(&["rollout", "set-weight", "demo/app", "10", "--version", "v2"]);
    let s = status(&node);
    assert_eq!(
        (phase(&s).as_str(), s["rollout"]["weight_percent"].as_f64()),
        ("paused", Some(10.0))
    );
    let users: Vec<String> = (0..300).map(|u| format!("user-{u}")).collect();
    let at = |node: &TestNode| -> Vec<bool> {
        users
            .iter()
            .map(|u| served_by(node, u, &[]).1 == "echo")
            .collect()
    };
    // A weight out of range is refused and changes nothing.
    let out = node.cli(&["rollout", "set-weight", "demo/app", "150"]);
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("percentage from 0 to 100"));
    assert_eq!(
        status(&node)["rollout"]["weight_percent"].as_f64(),
        Some(10.0)
    );
    let at10 = at(&node);
    node.cli_ok(&["rollout", "set-weight", "demo/app", "40"]);
    let at40 = at(&node);
    let (n10, n40) = (
        at10.iter().filter(|c| **c).count(),
        at40.iter().filter(|c| **c).count(),
    );
    assert!(
        n10 > 5 && n10 < 60 && n40 > 80 && n40 < 160,
        "{n10} then {n40} of 300"
    );
    for (u, (a, b)) in at10.iter().zip(&at40).enumerate() {
        assert!(!a || *b, "user-{u} left the canary when its weight rose");
    }
    // Another version cannot take over a rollout in progress.
    let out = node.cli(&["rollout", "set-weight", "demo/app", "50", "--version", "v1"]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("rolling out v2"),
        "{}",
        common::stderr(&out)
    );
    // Resume, pause, promote by hand.
    node.cli_ok(&["rollout", "resume", "demo/app"]);
    node.cli_ok(&["rollout", "pause", "demo/app"]);
    let out = node.cli(&["rollout", "pause", "demo/app"]);
    assert!(
        common::stderr(&out).contains("is paused"),
        "{}",
        common::stderr(&out)
    );
    node.cli_ok(&["rollout", "promote", "demo/app"]);
    let s = status(&node);
    assert_eq!(
        (phase(&s).as_str(), s["stable"].as_str()),
        ("promoted", Some("v2"))
    );
    assert_eq!(served_by(&node, "anyone", &[]).1, "echo");
    // Undo to a named version.
    node.cli_ok(&["rollout", "undo", "demo/app", "--to", "v1"]);
    assert_eq!(served_by(&node, "anyone", &[]).1, "hello");
    assert_eq!(status(&node)["stable"], "v1");
}

#[test]
fn blue_green_switches_after_its_check_and_refuses_a_version_that_fails_it() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("demo/app", "hello", &[]);
    let out = node.deploy("demo/app", "echo", &["--strategy", "blue-green"]);
    assert!(out.contains("checked, then switched"), "{out}");
    assert_eq!(served_by(&node, "u", &[]).1, "echo");
    let s = status(&node);
    assert_eq!(phase(&s), "promoted");
    let reason = s["rollout"]["decisions"][1]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("warm-up check"), "{reason}");

    let out = node.cli(&[
        "deploy",
        "demo/app",
        common::example("trap").to_str().unwrap(),
        "--strategy",
        "blue-green",
    ]);
    assert!(!out.status.success(), "a failing version was switched to");
    let err = common::stderr(&out);
    assert!(
        err.contains("does not serve") && err.contains("v2 still serves"),
        "{err}"
    );
    assert_eq!(served_by(&node, "u", &[]).1, "echo");
}

#[test]
fn a_rollout_and_its_split_survive_a_restart() {
    let dir = data_dir();
    let users: Vec<String> = (0..100).map(|u| format!("user-{u}")).collect();
    let before = {
        let node = TestNode::start(dir.path());
        node.deploy("demo/app", "hello", &[]);
        node.cli_ok(&[
            "apps",
            "set",
            "demo/app",
            "--strategy",
            "canary",
            "--step-time",
            "1h",
        ]);
        // The app's default strategy applies to a deploy that names none.
        node.deploy("demo/app", "echo", &[]);
        node.cli_ok(&["rollout", "set-weight", "demo/app", "30"]);
        users
            .iter()
            .map(|u| served_by(&node, u, &[]).1)
            .collect::<Vec<_>>()
    };
    let node = TestNode::start(dir.path());
    let s = status(&node);
    assert_eq!(
        (phase(&s).as_str(), s["rollout"]["weight_percent"].as_f64()),
        ("paused", Some(30.0))
    );
    let after: Vec<_> = users.iter().map(|u| served_by(&node, u, &[]).1).collect();
    assert_eq!(
        before, after,
        "users kept their versions across the restart"
    );
    let app: Value = serde_json::from_str(&node.cli_ok(&["status", "demo/app", "--json"])).unwrap();
    assert_eq!(app["split"]["kind"], "rollout", "{app}");
    assert_eq!(
        (
            app["split"]["version"].as_str(),
            app["split"]["percent"].as_f64()
        ),
        (Some("v2"), Some(30.0))
    );
    assert!(
        node.cli_ok(&["status", "demo/app"])
            .contains("30% of users on v2")
    );
}

#[test]
fn a_stateful_app_refuses_a_split_and_bad_strategies_are_refused() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("demo/counter", "counter", &["--stateful"]);
    let out = node.cli(&[
        "deploy",
        "demo/counter",
        common::example("counter").to_str().unwrap(),
        "--strategy",
        "canary",
    ]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("stateful"),
        "{}",
        common::stderr(&out)
    );
    let versions: Value =
        serde_json::from_str(&node.cli_ok(&["versions", "demo/counter", "--json"])).unwrap();
    assert_eq!(
        versions.as_array().map(Vec::len),
        Some(1),
        "nothing was added: {versions}"
    );
    node.deploy("demo/app", "hello", &[]);
    for bad in [
        vec!["--steps", "50,10"],
        vec!["--strategy", "immediate", "--steps", "5"],
        vec!["--min-samples", "0"],
    ] {
        let mut args = vec!["deploy", "demo/app"];
        let file = common::example("echo");
        args.push(file.to_str().unwrap());
        args.extend(bad.iter().copied());
        let out = node.cli(&args);
        assert!(!out.status.success(), "{bad:?} accepted");
    }
}

fn seen(node: &TestNode) -> (u64, u64) {
    let s = status(node);
    let live = &s["rollout"]["live"];
    (
        live["stable"]["requests"].as_u64().unwrap_or(0),
        live["canary"]["requests"].as_u64().unwrap_or(0),
    )
}

/// Waits for the once-a-second look to have seen `total` requests.
fn wait_seen(node: &TestNode, total: u64) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, c) = seen(node);
        if s + c >= total {
            return (s, c);
        }
        assert!(
            Instant::now() < deadline,
            "the look saw {s} + {c} of {total}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_analysis_keeps_its_totals_across_a_restart_and_a_canary_that_cannot_load_is_aborted() {
    let dir = data_dir();
    let canary_flags = [
        "--strategy",
        "canary",
        "--steps",
        "50,100",
        "--step-time",
        "1h",
        "--min-samples",
        "100000",
    ];
    {
        let node = TestNode::start(dir.path());
        node.deploy("demo/app", "hello", &[]);
        node.deploy("demo/app", "echo", &canary_flags);
        for u in 0..200 {
            served_by(&node, &format!("user-{u}"), &[]);
        }
        // Testers' requests do not count.
        served_by(&node, "tester", &[("x-dwcp-version", "v2")]);
        assert_eq!(wait_seen(&node, 200).0 + wait_seen(&node, 200).1, 200);
    }
    {
        let node = TestNode::start(dir.path());
        for u in 200..300 {
            served_by(&node, &format!("user-{u}"), &[]);
        }
        let (s, c) = wait_seen(&node, 300);
        assert_eq!(s + c, 300, "the 200 before the restart are still counted");
        assert_eq!(phase(&status(&node)), "running");
    }
    // The canary's files vanish (a disk fault): the next start cannot load
    // it, and the rollout is aborted by itself with the reason.
    let sha: String = {
        let node = TestNode::start(dir.path());
        let versions: Value =
            serde_json::from_str(&node.cli_ok(&["versions", "demo/app", "--json"])).unwrap();
        versions
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["version"] == "v2")
            .and_then(|v| v["sha256"].as_str())
            .unwrap()
            .to_string()
    };
    std::fs::remove_file(dir.path().join("artifacts").join(format!("{sha}.wasm"))).unwrap();
    for entry in std::fs::read_dir(dir.path().join("aot")).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&sha)
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    let node = TestNode::start(dir.path());
    let deadline = Instant::now() + Duration::from_secs(20);
    while phase(&status(&node)) != "aborted" {
        assert!(Instant::now() < deadline, "{:#}", status(&node));
        std::thread::sleep(Duration::from_millis(200));
    }
    let s = status(&node);
    let reason = s["rollout"]["decisions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("cannot serve"), "{reason}");
    assert_eq!(served_by(&node, "user-1", &[]), (200, "hello"));
}
