//! `dwcp backup` while a node serves, `dwcp up --restore` into a fresh data
//! directory: everything comes back, secrets still sealed and opened by the
//! same key; a damaged archive, a missing key or a used data directory are
//! refused with a clear error and leave no state behind.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use common::{TestNode, data_dir, dwcp, stderr};
use serde_json::Value;

/// A node with two apps, config, a secret, a quota and some history.
fn populated(dir: &Path) -> TestNode {
    let node = TestNode::start(dir);
    node.deploy("acme/env", "env", &["--memory", "32MiB"]);
    node.deploy("acme/hello", "echo", &[]);
    node.deploy("acme/hello", "hello", &[]);
    node.cli_ok(&["config", "set", "acme/env", "GREETING=hi"]);
    let secret = dir.join("token.txt");
    std::fs::write(&secret, "s3cret\n").expect("write");
    node.cli_ok(&[
        "secrets",
        "set",
        "acme/env",
        &format!("TOKEN=@{}", secret.display()),
    ]);
    node.cli_ok(&["tenants", "quota", "acme", "--instances", "7"]);
    node
}

fn restore(data: &Path, archive: &Path) -> std::process::Output {
    common::provision_trust(data);
    Command::new(dwcp())
        .args(["up", "--http", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data)
        .arg("--restore")
        .arg(archive)
        .output()
        .expect("dwcp runs")
}

fn json(node: &TestNode, args: &[&str]) -> Value {
    serde_json::from_str(&node.cli_ok(args)).expect("JSON")
}

#[test]
fn a_backup_taken_while_serving_restores_everything() {
    let source_dir = data_dir();
    let source = populated(source_dir.path());

    // Requests go on during the backup, and all of them are served.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU32::new(0));
    let load = {
        let (stop, failures, http) = (stop.clone(), failures.clone(), source.http);
        std::thread::spawn(move || {
            let mut served = 0;
            while !stop.load(Ordering::Relaxed) {
                let reply = common::request(http, "GET", "hello.acme.localhost", "/", b"");
                if reply.status != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                served += 1;
            }
            served
        })
    };
    let archive = source_dir.path().join("node.tar");
    let out = source.cli_ok(&["backup", archive.to_str().expect("utf-8")]);
    stop.store(true, Ordering::Relaxed);
    assert!(load.join().expect("load thread") > 0);
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert!(
        out.contains("1 tenant(s), 2 app(s), 3 version(s), 1 sealed secret(s), 0 checkpoint(s)"),
        "{out}"
    );
    assert!(!source_dir.path().join("node.tar.partial").exists());
    // The links the backup read its artifacts through are gone.
    let staging = std::fs::read_dir(source_dir.path())
        .expect("data dir")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("backup-staging-")
        })
        .count();
    assert_eq!(staging, 0);
    // The secret's value is nowhere in the archive.
    let bytes = std::fs::read(&archive).expect("archive");
    assert!(!bytes.windows(6).any(|w| w == b"s3cret"));

    // Restored with the source's key, in a fresh directory.
    let target_dir = data_dir();
    std::fs::create_dir_all(target_dir.path().join("keys")).expect("mkdir");
    std::fs::copy(
        source_dir.path().join("keys/secrets.key"),
        target_dir.path().join("keys/secrets.key"),
    )
    .expect("copy key");
    let archive_arg = archive.to_str().expect("utf-8");
    let target = TestNode::start_with(target_dir.path(), &["--restore", archive_arg]);
    assert!(
        target.ready_line.contains("apps=2"),
        "{}",
        target.ready_line
    );

    for args in [
        &["apps", "--json"][..],
        &["versions", "acme/hello", "--json"],
        &["status", "acme/env", "--json"],
        &["config", "list", "acme/env", "--json"],
        &["secrets", "list", "acme/env", "--json"],
    ] {
        let (a, b) = (json(&source, args), json(&target, args));
        // `in_flight` and `serving` describe the moment, not the state.
        let strip = |mut v: Value| {
            if let Some(o) = v.as_object_mut() {
                o.remove("in_flight");
            }
            v
        };
        assert_eq!(strip(a), strip(b), "{args:?}");
    }
    let tenants = json(&target, &["tenants", "list", "--json"]);
    assert_eq!(tenants[0]["quota"]["instances"], 7);
    let env = target.request("GET", "env.acme.localhost", "/", b"").text();
    assert!(
        env.contains("GREETING=hi\n") && env.contains("TOKEN=s3cret\n"),
        "{env}"
    );
    assert_eq!(
        target
            .request("GET", "hello.acme.localhost", "/", b"")
            .text(),
        "Hello, world!\n"
    );
    let audit = json(&target, &["audit", "--json"]);
    assert!(
        audit
            .as_array()
            .expect("array")
            .iter()
            .any(|e| e["action"] == "PUT /v1/tenants/acme/quota?instances=7"),
        "{audit}"
    );
}

#[test]
fn restores_that_cannot_be_right_are_refused_and_leave_no_state() {
    let source_dir = data_dir();
    let source = populated(source_dir.path());
    let archive = source_dir.path().join("node.tar");
    source.cli_ok(&["backup", archive.to_str().expect("utf-8")]);
    drop(source);

    // No key: the error says which one to bring.
    let fresh = data_dir();
    let out = restore(fresh.path(), &archive);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("holds 1 sealed secret(s): copy keys/secrets.key"),
        "{}",
        stderr(&out)
    );
    assert!(!fresh.path().join("state.redb").exists());

    // Another node's key.
    let other = data_dir();
    TestNode::start(other.path());
    let out = restore(other.path(), &archive);
    assert!(
        stderr(&out).contains("already holds a node's state"),
        "{}",
        stderr(&out)
    );
    let keyed = data_dir();
    std::fs::create_dir_all(keyed.path().join("keys")).expect("mkdir");
    std::fs::copy(
        other.path().join("keys/secrets.key"),
        keyed.path().join("keys/secrets.key"),
    )
    .expect("copy");
    let out = restore(keyed.path(), &archive);
    assert!(
        stderr(&out).contains("sealed with another key"),
        "{}",
        stderr(&out)
    );

    // A damaged archive: cut short, or an artifact's bytes changed.
    std::fs::copy(
        source_dir.path().join("keys/secrets.key"),
        keyed.path().join("keys/secrets.key"),
    )
    .expect("copy");
    let bytes = std::fs::read(&archive).expect("read");
    let cut = source_dir.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let out = restore(keyed.path(), &cut);
    assert!(stderr(&out).contains("is damaged"), "{}", stderr(&out));
    assert!(!keyed.path().join("state.redb").exists());

    let mut flipped = bytes.clone();
    let wasm = flipped
        .windows(4)
        .rposition(|w| w == b"\0asm")
        .expect("a component in the archive");
    flipped[wasm + 100] ^= 0xff;
    let tampered = source_dir.path().join("tampered.tar");
    std::fs::write(&tampered, &flipped).expect("write");
    let out = restore(keyed.path(), &tampered);
    assert!(
        stderr(&out).contains("does not match its hash"),
        "{}",
        stderr(&out)
    );
    assert!(!keyed.path().join("state.redb").exists());

    // Not an archive at all.
    let out = restore(keyed.path(), &source_dir.path().join("token.txt"));
    assert!(!out.status.success());
    assert!(!keyed.path().join("state.redb").exists());

    // And the good one still restores there.
    let node = TestNode::start_with(
        keyed.path(),
        &["--restore", archive.to_str().expect("utf-8")],
    );
    assert!(node.ready_line.contains("apps=2"));
}

#[test]
fn a_backup_that_cannot_be_taken_leaves_no_file() {
    let dir = data_dir();
    let archive = dir.path().join("node.tar");
    let out = Command::new(dwcp())
        .args(["--admin", "http://127.0.0.1:9", "backup"])
        .arg(&archive)
        .output()
        .expect("dwcp runs");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot reach the admin API"),
        "{}",
        stderr(&out)
    );
    assert!(!archive.exists());
    assert!(!dir.path().join("node.tar.partial").exists());
}

#[test]
fn a_backup_carries_the_state_of_stateful_keys() {
    let source_dir = data_dir();
    let source = TestNode::start(source_dir.path());
    source.deploy("demo/counter", "counter", &["--stateful"]);
    let post = |node: &TestNode, key: &str| {
        let reply = common::request_with(
            node.http,
            "POST",
            "counter.demo.localhost",
            "/",
            &[("x-dwcp-key", key)],
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.text()
    };
    for _ in 0..3 {
        post(&source, "alice");
    }
    post(&source, "bob");
    let archive = source_dir.path().join("node.tar");
    let out = source.cli_ok(&["backup", archive.to_str().expect("utf-8")]);
    assert!(out.contains("4 checkpoint(s)"), "{out}");
    drop(source);

    let target_dir = data_dir();
    let archive_arg = archive.to_str().expect("utf-8");
    // The checkpoints are sealed to the source node's key: without it, the
    // restore refuses and says which key to bring.
    let out = restore(target_dir.path(), &archive);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("copy keys/node-seal.key"),
        "{}",
        stderr(&out)
    );
    std::fs::copy(
        source_dir.path().join("keys/node-seal.key"),
        target_dir.path().join("keys/node-seal.key"),
    )
    .expect("copy the sealing key");
    let target = TestNode::start_with(target_dir.path(), &["--restore", archive_arg]);
    assert_eq!(post(&target, "alice"), "4\n");
    assert_eq!(post(&target, "bob"), "2\n");
}
