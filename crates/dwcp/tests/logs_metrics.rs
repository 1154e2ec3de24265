//! `dwcp logs` and `dwcp metrics` against a real node: guests' output kept
//! per app and followed live, the node's log rate-limited, the activity
//! summary counting what was served.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use common::{TestNode, data_dir, dwcp, stderr};
use serde_json::Value;

const LOGGER: &str = "logger.demo.localhost";

#[test]
fn guest_output_is_kept_per_app_with_its_version_and_the_node_stops() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("demo/logger", "logger", &[]);
    node.deploy("demo/trap", "trap", &[]);
    assert_eq!(node.request("GET", LOGGER, "/a?lines=2", b"").status, 200);
    node.deploy("demo/logger", "logger", &["--version", "two"]);
    let between = SystemTime::now();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(node.request("GET", LOGGER, "/b", b"").status, 200);
    assert_eq!(
        node.request("GET", "trap.demo.localhost", "/", b"").status,
        500
    );

    let all = node.cli_ok(&["logs", "demo/logger"]);
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 5, "{all}");
    assert!(lines[0].contains(" v1 ") && lines[0].ends_with("stdout| line 1 of 2"));
    assert!(lines[2].contains(" v1 ") && lines[2].ends_with("stderr| served /a?lines=2"));
    assert!(lines[4].contains(" two ") && lines[4].ends_with("served /b"));

    // --since a time: only what came after; --json: one object per line.
    let since = humantime::format_rfc3339_millis(between).to_string();
    let json = node.cli_ok(&["logs", "demo/logger", "--since", &since, "--json"]);
    let objects: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let texts: Vec<&str> = objects.iter().filter_map(|o| o["text"].as_str()).collect();
    assert_eq!(texts, ["line 1 of 1", "served /b"]);
    assert_eq!(objects[1]["stream"], "stderr");
    assert_eq!(objects[1]["version"], "two");
    assert!(
        node.cli_ok(&["logs", "demo/logger", "--since", "1h"])
            .lines()
            .count()
            == 5
    );

    // Why the node stopped a guest is in its app's log.
    let trap = node.cli_ok(&["logs", "demo/trap"]);
    assert!(trap.contains("node| stopped (trap)"), "{trap}");

    // Bad input: an app that does not exist, a --since that is neither.
    let out = node.cli(&["logs", "demo/nosuch"]);
    assert!(
        stderr(&out).contains("no app `demo/nosuch`"),
        "{}",
        stderr(&out)
    );
    let out = node.cli(&["logs", "demo/logger", "--since", "yesterday"]);
    assert!(
        stderr(&out).contains("--since `yesterday`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn follow_prints_lines_as_they_come_and_ends_with_the_app() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("demo/logger", "logger", &[]);
    let mut follower = Command::new(dwcp())
        .args(["--admin", &format!("http://{}", node.admin)])
        .env("DWCP_DATA_DIR", dir.path())
        .args(["logs", "demo/logger", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dwcp logs runs");
    let stdout = follower.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The follower may connect after the first request: send until a line arrives.
    let first = (0..50).find_map(|_| {
        node.request("GET", LOGGER, "/live", b"");
        rx.recv_timeout(Duration::from_millis(200)).ok()
    });
    assert!(
        first.is_some_and(|l| l.ends_with("line 1 of 1")),
        "no line followed"
    );
    // Deleting the app ends the follow.
    node.cli_ok(&["delete", "demo/logger"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = follower.try_wait().expect("try_wait") {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = follower.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.is_some_and(|s| s.success()), "follow did not end");
}

#[test]
fn the_ring_and_the_node_log_stay_bounded() {
    let dir = data_dir();
    let node = TestNode::start_logged(dir.path(), &["--log-buffer", "32KiB"]);
    node.deploy("demo/logger", "logger", &["--deadline", "5s"]);
    let reply = node.request("GET", LOGGER, "/?lines=5000", b"");
    assert_eq!(reply.text(), "logged 5000 lines\n");

    let kept = node.cli_ok(&["logs", "demo/logger"]);
    let lines: Vec<&str> = kept.lines().collect();
    assert!(lines.len() < 1000, "{} lines kept in 32 KiB", lines.len());
    assert!(lines[lines.len() - 2].ends_with("line 5000 of 5000"));

    // The node's log got at most 100 of them per second (the burst may
    // straddle two), and says so once the next second's first line comes.
    std::thread::sleep(Duration::from_millis(1100));
    node.request("GET", LOGGER, "/", b"");
    // The node writes its log from a thread of its own: give it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut log = node.log_text();
    while !log.contains("kept out of the node's log") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        log = node.log_text();
    }
    let guest_lines = log.lines().filter(|l| l.contains(" of 5000")).count();
    assert!(
        (1..=200).contains(&guest_lines),
        "{guest_lines} guest lines in the node log"
    );
    assert!(log.contains("kept out of the node's log"), "{log}");
    assert!(log.contains("app=logger version=v1 stream=\"stdout\""));
}

#[test]
fn metrics_summarise_requests_errors_latency_and_cold_starts() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("demo/hello", "hello", &[]);
    node.deploy("demo/warm", "hello", &["--reuse", "100"]);
    node.deploy("demo/trap", "trap", &[]);
    for _ in 0..20 {
        assert_eq!(
            node.request("GET", "hello.demo.localhost", "/", b"").status,
            200
        );
        assert_eq!(
            node.request("GET", "warm.demo.localhost", "/", b"").status,
            200
        );
    }
    for _ in 0..3 {
        node.request("GET", "trap.demo.localhost", "/", b"");
    }

    let all: Value = serde_json::from_str(&node.cli_ok(&["metrics", "--json"])).expect("JSON");
    let app = |name: &str| -> Value {
        all.as_array()
            .expect("an array")
            .iter()
            .find(|a| a["app"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {all}"))
    };
    let hello = app("hello");
    assert_eq!(hello["requests"], 20);
    assert_eq!(hello["cold_starts"], 20);
    assert_eq!(hello["errors"], 0);
    assert_eq!(hello["window_seconds"], 300);
    let p50 = hello["p50_ms"].as_f64().expect("a p50");
    let p99 = hello["p99_ms"].as_f64().expect("a p99");
    assert!(p50 > 0.0 && p50 <= p99, "{hello}");
    // Reused instances are not cold starts.
    let warm = app("warm");
    assert_eq!(warm["requests"], 20);
    assert!(warm["cold_starts"].as_u64().expect("a count") < 5, "{warm}");
    let trap = app("trap");
    assert_eq!(
        (trap["errors"].clone(), trap["error_rate"].clone()),
        (3.into(), 1.0.into())
    );

    // One app, a shorter window, the table.
    let one: Value =
        serde_json::from_str(&node.cli_ok(&["metrics", "demo/hello", "--window", "1m", "--json"]))
            .expect("JSON");
    assert_eq!(one[0]["window_seconds"], 60);
    assert_eq!(one[0]["requests"], 20);
    let table = node.cli_ok(&["metrics"]);
    assert!(
        table.contains("demo/trap") && table.contains("3 (100.0%)"),
        "{table}"
    );

    let out = node.cli(&["metrics", "--window", "1h"]);
    assert!(stderr(&out).contains("from `10s` to `15m`"));
    let out = node.cli(&["metrics", "nosuch/app"]);
    assert!(
        stderr(&out).contains("no tenant `nosuch`"),
        "{}",
        stderr(&out)
    );
}
