//! What operators plug DWCP into: OpenTelemetry traces to a collector, JSON
//! logs, shell completions, and a settings file that keeps commands short.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestNode, data_dir, dwcp, request_with, stderr};
use serde_json::Value;

/// An OTLP/HTTP receiver on loopback: keeps every JSON body posted to
/// /v1/traces and answers 200, as a collector does.
fn collector() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream);
            let (mut request_line, mut length) = (String::new(), 0usize);
            reader.read_line(&mut request_line).unwrap_or(0);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let ok = request_line.starts_with("POST /v1/traces ");
            if let (true, Ok(v)) = (ok, serde_json::from_slice::<Value>(&body)) {
                kept.lock().unwrap().push(v);
            }
            let status = if ok { "200 OK" } else { "404 Not Found" };
            let _ = write!(
                reader.into_inner(),
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n"
            );
        }
    });
    (url, bodies)
}

fn spans(bodies: &[Value]) -> Vec<Value> {
    bodies
        .iter()
        .flat_map(|b| b["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|r| r["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|s| s["spans"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

#[test]
fn request_spans_reach_an_otlp_collector_with_tenant_app_version_and_rollout() {
    let (url, bodies) = collector();
    let dir = data_dir();
    let node = TestNode::start_with(dir.path(), &["--otlp-endpoint", &url]);
    node.deploy("demo/hello", "hello", &[]);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let reply = request_with(
        node.http,
        "GET",
        "hello.demo.localhost",
        "/",
        &[("traceparent", &format!("00-{trace}-{parent}-01"))],
    );
    assert_eq!(reply.status, 200);
    // A canary at 50%: among 40 users, some reach it (all miss it with
    // probability 2^-40).
    node.deploy(
        "demo/hello",
        "echo",
        &[
            "--version",
            "v2",
            "--strategy",
            "canary",
            "--steps",
            "50",
            "--step-time",
            "1h",
        ],
    );
    for user in 0..40 {
        let id = format!("user-{user}");
        let reply = request_with(
            node.http,
            "GET",
            "hello.demo.localhost",
            "/",
            &[("x-user-id", &id)],
        );
        assert_eq!(reply.status, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let (ours, canary) = loop {
        let all = spans(&bodies.lock().unwrap());
        let ours = all.iter().find(|s| s["traceId"] == trace).cloned();
        let canary = all
            .iter()
            .find(|s| {
                attribute(s, "dwcp.rollout.arm").is_some_and(|a| a["stringValue"] == "canary")
            })
            .cloned();
        if let (Some(o), Some(c)) = (&ours, &canary) {
            break (o.clone(), c.clone());
        }
        assert!(Instant::now() < deadline, "spans seen: {all:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // The client's trace is continued, under its span.
    assert_eq!(ours["parentSpanId"], parent);
    assert_eq!(ours["kind"], 2);
    assert_eq!(
        attribute(&ours, "dwcp.tenant").unwrap()["stringValue"],
        "demo"
    );
    assert_eq!(
        attribute(&ours, "dwcp.app").unwrap()["stringValue"],
        "hello"
    );
    assert_eq!(
        attribute(&ours, "dwcp.version").unwrap()["stringValue"],
        "v1"
    );
    assert_eq!(
        attribute(&ours, "http.response.status_code").unwrap()["intValue"],
        "200"
    );
    let start: u128 = ours["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u128 = ours["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(end >= start);
    // During the rollout: which side served and the step's weight.
    assert_eq!(
        attribute(&canary, "dwcp.rollout.arm").unwrap()["stringValue"],
        "canary"
    );
    assert_eq!(
        attribute(&canary, "dwcp.rollout.weight_percent").unwrap()["doubleValue"],
        50.0
    );
    assert_eq!(
        attribute(&canary, "dwcp.version").unwrap()["stringValue"],
        "v2"
    );
}

#[test]
fn a_bad_otlp_endpoint_is_refused_at_start() {
    let dir = data_dir();
    let out = common::up_refused(dir.path(), &["--otlp-endpoint", "https://collector:4318"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("run a local collector"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = data_dir();
    let node = TestNode::start_logged(dir.path(), &["--log-format", "json"]);
    node.deploy("demo/hello", "hello", &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = node.log_text();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let deployed = lines.iter().any(|l| l.contains("deployed"));
        if deployed {
            for line in lines {
                let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                assert!(
                    v["level"].is_string() && v["timestamp"].is_string(),
                    "{line}"
                );
            }
            break;
        }
        assert!(Instant::now() < deadline, "no deploy line in {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, mark) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef dwcp"),
        ("fish", "complete -c dwcp"),
    ] {
        let out = Command::new(dwcp())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(mark), "{shell}");
        assert!(
            text.contains("rollout"),
            "{shell}: subcommands are completed"
        );
    }
}

#[test]
fn a_settings_file_gives_the_admin_url_and_tenant_and_flags_beat_it() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("demo/hello", "hello", &[]);
    let settings = dir.path().join("config.toml");
    std::fs::write(
        &settings,
        format!(
            "admin = \"http://{}\"\ntenant = \"demo\"\ntoken = \"{}\"\n",
            node.admin,
            node.token()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&settings, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let cli = |args: &[&str]| {
        Command::new(dwcp())
            .env("DWCP_CONFIG", &settings)
            .env_remove("DWCP_ADMIN")
            .env_remove("DWCP_TOKEN")
            .env_remove("DWCP_TENANT")
            .args(args)
            .output()
            .unwrap()
    };
    // No --admin, no tenant: both from the file.
    let out = cli(&["status", "hello"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello"));
    // A flag beats the file.
    let out = cli(&["--admin", "http://127.0.0.1:9", "status", "hello"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("127.0.0.1:9"), "{}", stderr(&out));
    // A file others can read, holding a token: a warning saying what to do.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&settings, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = cli(&["status", "hello"]);
        assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    }
    // A damaged file names itself and what it may hold; a named one must exist.
    std::fs::write(&settings, "admin = [oops\n").unwrap();
    let out = cli(&["status", "hello"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("config.toml") && stderr(&out).contains("admin, token, tenant"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(&settings).unwrap();
    let out = cli(&["status", "hello"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
}
