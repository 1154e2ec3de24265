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

/// A one-shot OpenAI-compatible endpoint on loopback that answers every
/// chat completion with `content`, and hands back the request it got.
fn chat_endpoint(content: &'static str) -> (String, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let answer = serde_json::json!({"choices": [{"message": {"role": "assistant", "content": content}}]})
            .to_string();
        let mut stream = reader.into_inner();
        write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
            answer.len()
        )
        .unwrap();
        format!("{head}{}", String::from_utf8_lossy(&body))
    });
    (url, handle)
}

/// `dwcp ask --dry-run --json --llm URL TEXT`.
fn ask_with_llm(url: &str, text: &str) -> std::process::Output {
    Command::new(dwcp())
        .args(["ask", "--dry-run", "--json", "--llm", url, text])
        .output()
        .unwrap()
}

#[test]
fn llm_is_asked_only_when_unsure_and_its_answer_is_held_to_the_spec() {
    // Unsure offline (a joke is `none`): the endpoint's answer, inside the
    // spec, is taken.
    let (url, server) = chat_endpoint(r#"{"intent": "list_tenants", "slots": {}}"#);
    let out = ask_with_llm(&url, "Tell me a joke.");
    let request = server.join().unwrap();
    assert!(
        request.starts_with("POST /v1/chat/completions"),
        "{request}"
    );
    assert!(
        request.contains("list_tenants"),
        "the spec is in the prompt"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["intent"], "list_tenants", "{v}");

    // An answer outside the spec is refused: the offline answer stands.
    let (url, server) = chat_endpoint(r#"{"intent": "format_all_disks", "slots": {}}"#);
    let out = ask_with_llm(&url, "Tell me a joke.");
    server.join().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["intent"], "none");
    assert!(stderr(&out).contains("not in the spec"), "{}", stderr(&out));

    // Sure offline: the endpoint is never called (nothing listens there).
    let out = ask_with_llm("http://127.0.0.1:9/v1", "list the apps of tenant acme");
    assert!(out.status.success());
    assert!(!stderr(&out).contains("--llm"), "{}", stderr(&out));
}
