//! A/B experiments on a real node over real HTTP: the split, exposures and
//! conversions per version, the results' verdict and sample-ratio check,
//! stopping, and counts that survive a restart.

mod common;

use common::{TestNode, data_dir, request_with};
use serde_json::Value;

fn results(node: &TestNode) -> Value {
    serde_json::from_str(&node.cli_ok(&["experiment", "results", "demo/shop", "--json"]))
        .expect("results are JSON")
}

fn send(node: &TestNode, users: std::ops::Range<u32>) -> (u32, u32) {
    let (mut ok, mut failed) = (0, 0);
    for u in users {
        let user = format!("user-{u}");
        let reply = request_with(
            node.http,
            "GET",
            "shop.demo.localhost",
            "/",
            &[("x-user-id", &user)],
        );
        if reply.status == 200 {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    (ok, failed)
}

#[test]
fn an_experiment_counts_each_version_and_calls_the_worse_one_worse() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    // v1 fails 5% of requests, v2 (stable) 0.5%; a 2xx is the conversion.
    node.deploy("demo/shop", "broken", &[]);
    node.deploy("demo/shop", "flaky", &[]);
    let out = node.cli_ok(&[
        "experiment",
        "start",
        "demo/shop",
        "v1",
        "--split",
        "50",
        "--conversion",
        "status:2xx",
    ]);
    assert!(out.contains("against v2 (control)"), "{out}");
    // A rollout cannot start while the split is the experiment's.
    let refused = node.cli(&[
        "rollout",
        "start",
        "demo/shop",
        "v1",
        "--strategy",
        "canary",
    ]);
    assert!(!refused.status.success());
    assert!(common::stderr(&refused).contains("experiment"));

    let (ok, failed) = send(&node, 0..4_000);
    let r = results(&node);
    let (c, t) = (&r["results"]["control"], &r["results"]["treatment"]);
    let exposures = c["exposures"].as_u64().unwrap() + t["exposures"].as_u64().unwrap();
    let conversions = c["conversions"].as_u64().unwrap() + t["conversions"].as_u64().unwrap();
    assert_eq!(exposures, 4_000, "every request is one exposure: {r:#}");
    assert_eq!(
        conversions,
        u64::from(ok),
        "every 2xx is a conversion ({failed} failed)"
    );
    let share = t["exposures"].as_f64().unwrap() / 4_000.0;
    assert!((0.44..=0.56).contains(&share), "treatment share {share}");
    assert_eq!(r["results"]["srm"]["mismatch"], false, "{r:#}");
    assert_eq!(r["results"]["verdict"], "treatment_worse", "{r:#}");
    let interval = &r["results"]["interval"];
    assert!(interval["upper"].as_f64().unwrap() < 0.0, "{interval}");

    // The unit is the user: the same users again add no exposure.
    send(&node, 0..300);
    let again = results(&node);
    let total = |r: &Value| {
        r["results"]["control"]["exposures"].as_u64().unwrap()
            + r["results"]["treatment"]["exposures"].as_u64().unwrap()
    };
    assert_eq!(total(&again), 4_000);

    // Stopped: everyone is on the control; the results stay, and no longer grow.
    node.cli_ok(&["experiment", "stop", "demo/shop"]);
    let stopped = results(&node);
    assert_eq!(stopped["running"], false);
    send(&node, 4_000..4_300);
    let later = results(&node);
    assert_eq!(later["results"], stopped["results"]);
    let out = node.cli(&["experiment", "stop", "demo/shop"]);
    assert!(common::stderr(&out).contains("runs no experiment"));
}

#[test]
fn counts_survive_a_restart_and_bad_experiments_are_refused() {
    let dir = data_dir();
    let counted = {
        let node = TestNode::start(dir.path());
        node.deploy("demo/shop", "hello", &[]);
        node.deploy("demo/shop", "echo", &["--strategy", "immediate"]);
        for bad in [
            vec!["v2"],                   // the control itself
            vec!["v9"],                   // not stored
            vec!["v1", "--split", "100"], // no control left
            vec!["v1", "--conversion", "clicks"],
        ] {
            let mut args = vec!["experiment", "start", "demo/shop"];
            args.extend(bad.iter().copied());
            let out = node.cli(&args);
            assert!(!out.status.success(), "{bad:?} was accepted");
        }
        node.cli_ok(&["experiment", "start", "demo/shop", "v1", "--split", "20"]);
        send(&node, 0..500);
        // Stored once a second by the node itself: wait for it, no results call.
        std::thread::sleep(std::time::Duration::from_millis(2_500));
        500
    };
    let node = TestNode::start(dir.path());
    let r = results(&node);
    assert_eq!(r["running"], true);
    let exposures = r["results"]["control"]["exposures"].as_u64().unwrap()
        + r["results"]["treatment"]["exposures"].as_u64().unwrap();
    assert_eq!(exposures, counted, "{r:#}");
    assert_eq!(r["split_percent"], 20.0);
    // No conversion header was ever set: nothing converted.
    assert_eq!(r["results"]["treatment"]["conversions"], 0);
}

#[test]
fn an_experiment_over_a_flags_variants_counts_the_users_each_variant_got() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("demo/shop", "flaky", &[]);
    let files = data_dir();
    let flag = files.path().join("flags.json");
    std::fs::write(
        &flag,
        r#"{"flags": {"checkout": {
            "state": "ENABLED",
            "variants": {"old": false, "new": true, "beta": true},
            "defaultVariant": "old",
            "targeting": {"fractional": [["old", 40], ["new", 40], ["beta", 20]]}
        }}}"#,
    )
    .unwrap();
    node.cli_ok(&[
        "--tenant",
        "demo",
        "flags",
        "import",
        flag.to_str().unwrap(),
    ]);
    // Three variants: the treatment must be named; unknown variants are refused.
    for bad in [
        vec!["--flag", "checkout"],
        vec!["--flag", "checkout", "--treatment", "nope"],
        vec!["--flag", "nosuch", "--treatment", "new"],
    ] {
        let mut args = vec!["experiment", "start", "demo/shop"];
        args.extend(bad.iter().copied());
        assert!(!node.cli(&args).status.success(), "{bad:?} was accepted");
    }
    node.cli_ok(&[
        "experiment",
        "start",
        "demo/shop",
        "--flag",
        "checkout",
        "--treatment",
        "new",
        "--conversion",
        "status:2xx",
    ]);
    let (ok, _) = send(&node, 0..2_000);
    let r = results(&node);
    assert_eq!(r["flag"], "checkout");
    let c = r["results"]["control"]["exposures"].as_u64().unwrap();
    let t = r["results"]["treatment"]["exposures"].as_u64().unwrap();
    // `beta` users (about 20%) are in neither arm.
    assert!(c + t < 2_000 && c + t > 1_400, "{c} + {t}");
    assert!((c as f64 / (c + t) as f64 - 0.5).abs() < 0.08, "{c} vs {t}");
    assert_eq!(r["results"]["srm"]["mismatch"], false, "{r:#}");
    let conversions = r["results"]["control"]["conversions"].as_u64().unwrap()
        + r["results"]["treatment"]["conversions"].as_u64().unwrap();
    assert!(
        conversions <= u64::from(ok) && conversions + 30 >= c + t,
        "{r:#}"
    );
}
