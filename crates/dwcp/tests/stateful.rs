//! Stateful apps end to end, against a real `dwcp` process: one instance
//! per key, checkpoints that survive SIGKILL and SIGTERM, hibernation,
//! versions that keep their keys, a damaged checkpoint passed over, and
//! the snapshot commands.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Reply, TestNode, data_dir, read_reply};

/// A request naming `key` in `header`.
fn keyed_in(
    addr: SocketAddr,
    header: &str,
    method: &str,
    host: &str,
    path: &str,
    key: &str,
    body: &[u8],
) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{header}: {key}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    // A killed node answers nothing: an error here, not a parse failure.
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut raw)?;
    if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        return Err(std::io::Error::other("no complete response"));
    }
    Ok(read_reply(&mut std::io::Cursor::new(raw)))
}

fn keyed(node: &TestNode, method: &str, path: &str, key: &str) -> Reply {
    keyed_in(
        node.http,
        "x-dwcp-key",
        method,
        "counter.demo.localhost",
        path,
        key,
        b"",
    )
    .expect("the node answers")
}

#[test]
fn keys_have_their_own_state_and_requests_without_a_key_get_400() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("demo/counter", "counter", &["--stateful"]);
    for expected in 1..=3 {
        assert_eq!(
            keyed(&node, "POST", "/", "alice").text(),
            format!("{expected}\n")
        );
    }
    assert_eq!(keyed(&node, "POST", "/", "bob").text(), "1\n");
    assert_eq!(keyed(&node, "GET", "/", "alice").text(), "3\n");
    // A guest that traps mid-request: 500, and the key resumes from its
    // last checkpoint, without what the failed request did.
    assert_eq!(keyed(&node, "POST", "/?panic", "alice").status, 500);
    assert_eq!(keyed(&node, "POST", "/", "alice").text(), "4\n");

    let missing = node.request("POST", "counter.demo.localhost", "/", b"");
    assert_eq!(missing.status, 400);
    assert!(missing.text().contains("x-dwcp-key"), "{}", missing.text());
    let bad = keyed(&node, "GET", "/", "a\u{7f}b");
    assert_eq!(bad.status, 400);

    // A configured header.
    node.deploy("demo/kv", "kv", &["--stateful", "--key-header", "x-user"]);
    let put = keyed_in(
        node.http,
        "x-user",
        "PUT",
        "kv.demo.localhost",
        "/colour",
        "carol",
        b"blue",
    )
    .unwrap();
    assert_eq!(put.status, 204);
    let get = keyed_in(
        node.http,
        "x-user",
        "GET",
        "kv.demo.localhost",
        "/colour",
        "carol",
        b"",
    )
    .unwrap();
    assert_eq!(get.text(), "blue");
    let other = keyed_in(
        node.http,
        "x-dwcp-key",
        "GET",
        "kv.demo.localhost",
        "/colour",
        "carol",
        b"",
    )
    .unwrap();
    assert_eq!(other.status, 400, "the default header is not this app's");

    // The checkpoints are listed per key, the first full, then deltas.
    let list: serde_json::Value = serde_json::from_str(&node.cli_ok(&[
        "snapshots",
        "demo/counter",
        "--key",
        "alice",
        "--json",
    ]))
    .unwrap();
    let list = list.as_array().unwrap();
    // One per answered request (a GET changes the guest's stack and heap
    // too); none for the one that trapped.
    assert_eq!(list.len(), 5, "{list:?}");
    assert!(list[0]["base"].is_null());
    assert_eq!(list[2]["base"], list[1]["seq"]);
    let table = node.cli_ok(&["snapshots", "demo/counter"]);
    assert!(table.contains("alice") && table.contains("bob"), "{table}");
}

#[test]
fn sigkill_loses_no_acknowledged_request() {
    let dir = data_dir();
    let mut node = TestNode::start(dir.path());
    node.deploy("demo/counter", "counter", &["--stateful"]);
    let addr = node.http;
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let in_flight = Arc::new(AtomicBool::new(false));
    let client = {
        let (acked, in_flight) = (acked.clone(), in_flight.clone());
        std::thread::spawn(move || {
            for _ in 0..1000 {
                in_flight.store(true, Ordering::SeqCst);
                match keyed_in(
                    addr,
                    "x-dwcp-key",
                    "POST",
                    "counter.demo.localhost",
                    "/",
                    "k",
                    b"",
                ) {
                    Ok(reply) if reply.status == 200 => {
                        let n = acked.fetch_add(1, Ordering::SeqCst) + 1;
                        assert_eq!(reply.text(), format!("{n}\n"), "counts go up by one");
                        in_flight.store(false, Ordering::SeqCst);
                    }
                    Ok(reply) => panic!("unexpected {}: {}", reply.status, reply.text()),
                    Err(_) => return,
                }
            }
            in_flight.store(false, Ordering::SeqCst);
        })
    };
    // A moment somewhere in the run, different each time: after a number
    // of acknowledged POSTs the clock picks, plus a fraction of a request.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let target = 50 + u64::from(nanos % 900);
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.load(Ordering::SeqCst) < target && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
    std::thread::sleep(Duration::from_micros(u64::from(nanos % 700)));
    node.signal("KILL");
    node.wait_exit(Duration::from_secs(10));
    client.join().expect("the client saw consistent counts");
    let acked = acked.load(Ordering::SeqCst);
    let pending = in_flight.load(Ordering::SeqCst);
    drop(node);

    let node = TestNode::start(dir.path());
    let count: u64 = keyed(&node, "GET", "/", "k").text().trim().parse().unwrap();
    eprintln!(
        "acknowledged {acked}, in flight at the kill: {pending}, count after restart {count}"
    );
    // Durable before acknowledged: the count holds every acknowledged POST,
    // plus the one in flight if its checkpoint was written before the kill.
    assert!(
        count == acked || (pending && count == acked + 1),
        "acknowledged {acked} (one in flight: {pending}), count after restart {count}"
    );
}

#[test]
fn sigterm_checkpoints_keys_changed_since_their_last_checkpoint() {
    let dir = data_dir();
    let mut node = TestNode::start(dir.path());
    // Interval checkpoints far apart: only the shutdown one can save them.
    node.deploy(
        "demo/counter",
        "counter",
        &["--stateful", "--checkpoint", "1h"],
    );
    for _ in 0..3 {
        keyed(&node, "POST", "/", "alice");
    }
    keyed(&node, "POST", "/", "bob");
    node.signal("TERM");
    assert_eq!(node.wait_exit(Duration::from_secs(30)), Some(0));
    drop(node);
    let node = TestNode::start(dir.path());
    assert_eq!(keyed(&node, "GET", "/", "alice").text(), "3\n");
    assert_eq!(keyed(&node, "GET", "/", "bob").text(), "1\n");
    let list = node.cli_ok(&["snapshots", "demo/counter", "--key", "alice"]);
    assert!(list.contains("drain"), "{list}");
}

#[test]
fn idle_keys_hibernate_and_wake_with_their_state() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy(
        "demo/counter",
        "counter",
        &["--stateful", "--hibernate-after", "300ms"],
    );
    for key in ["a", "b", "c"] {
        keyed(&node, "POST", "/?pad=100000", key);
    }
    assert_eq!(node.metric("dwcp_live_instances"), 3.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.metric("dwcp_live_instances") > 0.0 {
        assert!(Instant::now() < deadline, "keys did not hibernate");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Woken from their checkpoints, without a compile.
    let misses = node.metric("dwcp_aot_cache_total{result=\"miss\"}");
    assert_eq!(keyed(&node, "POST", "/", "a").text(), "2\n");
    assert_eq!(keyed(&node, "GET", "/", "c").text(), "1\n");
    assert_eq!(node.metric("dwcp_aot_cache_total{result=\"miss\"}"), misses);
}

#[test]
fn the_pool_full_hibernates_the_least_recently_used_key() {
    let dir = data_dir();
    let node = TestNode::start_with(dir.path(), &["--pool-instances", "2"]);
    node.deploy("demo/counter", "counter", &["--stateful"]);
    for round in 1..=3 {
        for key in ["a", "b", "c", "d"] {
            let reply = keyed(&node, "POST", "/", key);
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert_eq!(reply.text(), format!("{round}\n"));
        }
    }
    assert!(node.metric("dwcp_live_instances") <= 2.0);
}

#[test]
fn keys_stay_on_their_version_and_new_keys_go_to_the_new_one() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("demo/counter", "counter", &["--stateful"]);
    keyed(&node, "POST", "/", "alice");
    // v2 is another program: PUT answers 204 there, 405 in the counter.
    node.deploy("demo/counter", "kv", &[]);
    assert_eq!(
        keyed(&node, "PUT", "/x", "alice").status,
        405,
        "alice stays on v1"
    );
    assert_eq!(
        keyed(&node, "PUT", "/x", "bob").status,
        204,
        "bob starts on v2"
    );
    let versions: serde_json::Value =
        serde_json::from_str(&node.cli_ok(&["versions", "demo/counter", "--json"])).unwrap();
    let keys: Vec<u64> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["keys"].as_u64().unwrap())
        .collect();
    assert_eq!(keys, vec![1, 1]);
    let table = node.cli_ok(&["versions", "demo/counter"]);
    assert!(table.contains("KEYS"), "{table}");

    // After a restart too.
    drop(node);
    let node = TestNode::start(dir.path());
    assert_eq!(keyed(&node, "GET", "/", "alice").text(), "1\n");
    assert_eq!(keyed(&node, "GET", "/x", "bob").status, 200);

    // A stateless app cannot turn stateful.
    node.deploy("demo/hello", "hello", &[]);
    let out = node.cli(&[
        "deploy",
        "demo/hello",
        common::example("hello").to_str().unwrap(),
        "--stateful",
    ]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("not a stateful app"),
        "{}",
        common::stderr(&out)
    );
}

#[test]
fn a_damaged_checkpoint_is_passed_over_for_the_one_before() {
    let dir = data_dir();
    {
        let node = TestNode::start(dir.path());
        node.deploy("demo/counter", "counter", &["--stateful"]);
        for _ in 0..4 {
            keyed(&node, "POST", "/", "alice");
        }
    }
    // Append a damaged checkpoint as the newest, as a torn write would leave.
    {
        let store =
            dwcp_store::CheckpointStore::open(&dir.path().join("checkpoints.redb")).unwrap();
        let scope = dwcp_store::key_scope("demo", "counter", "alice");
        let mut latest = store.list(&scope).unwrap().pop().unwrap();
        let chain = store.chain(&scope, latest.seq).unwrap().unwrap();
        let mut damaged = chain.last().unwrap().1.clone();
        let at = damaged.len() / 2;
        damaged[at] ^= 0xff;
        latest.base = Some(latest.seq);
        latest.seq += 1;
        store.put(&scope, &latest, &damaged, 10).unwrap();
    }
    let node = TestNode::start(dir.path());
    assert_eq!(keyed(&node, "GET", "/", "alice").text(), "4\n");
    let logs = node.cli_ok(&["logs", "demo/counter"]);
    assert!(logs.contains("refused"), "{logs}");
}

#[test]
fn checkpoints_are_sealed_at_rest_and_unsealed_or_misbound_ones_are_refused() {
    let dir = data_dir();
    {
        let node = TestNode::start(dir.path());
        node.deploy("demo/counter", "counter", &["--stateful"]);
        for _ in 0..3 {
            keyed(&node, "POST", "/", "alice");
        }
    }
    let store = dwcp_store::CheckpointStore::open(&dir.path().join("checkpoints.redb")).unwrap();
    let scope = dwcp_store::key_scope("demo", "counter", "alice");
    let latest = store.list(&scope).unwrap().pop().unwrap();
    let chain = store.chain(&scope, latest.seq).unwrap().unwrap();
    assert!(
        chain
            .iter()
            .all(|(_, bytes)| dwcp_crypto::seal::is_sealed(bytes)),
        "a checkpoint is stored in the clear"
    );
    // The node's key opens them; the plaintext is a snapshot.
    let key = match dwcp_crypto::keyfile::KeyFile::parse(
        &std::fs::read(dir.path().join("keys/node-seal.key")).unwrap(),
    )
    .unwrap()
    .key
    {
        dwcp_crypto::keyfile::SecretKey::Sealing(key) => key,
        _ => panic!("not a sealing key"),
    };
    let (meta, sealed) = chain.last().unwrap();
    let binding = |app| dwcp_crypto::seal::Binding {
        tenant: "demo",
        app,
        subject: "alice",
        snapshot_id: meta.snapshot_id,
    };
    let plain = key.open(sealed, binding("counter")).unwrap();
    assert!(!dwcp_crypto::seal::is_sealed(&plain));
    // Stored in the clear, or sealed for another app, a newer checkpoint is
    // refused and the key resumes from the last good one.
    let misbound = dwcp_crypto::seal::seal(key.public_key(), &plain, binding("other")).unwrap();
    let mut next = store.list(&scope).unwrap().pop().unwrap();
    for bytes in [plain, misbound] {
        next.seq += 1;
        next.base = None;
        store.put(&scope, &next, &bytes, 10).unwrap();
    }
    drop(store);
    let node = TestNode::start(dir.path());
    assert_eq!(keyed(&node, "GET", "/", "alice").text(), "3\n");
    let logs = node.cli_ok(&["logs", "demo/counter"]);
    assert!(
        logs.contains("does not open") || logs.contains("not a sealed"),
        "{logs}"
    );
}

#[test]
fn snapshot_and_restore_commands() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy(
        "demo/counter",
        "counter",
        &["--stateful", "--checkpoint", "1h"],
    );
    keyed(&node, "POST", "/", "alice");
    keyed(&node, "POST", "/", "alice");
    let taken: serde_json::Value = serde_json::from_str(&node.cli_ok(&[
        "snapshot",
        "demo/counter",
        "--key",
        "alice",
        "--json",
    ]))
    .unwrap();
    let seq = taken[0]["seq"].as_u64().unwrap();
    assert_eq!(taken[0]["reason"], "manual");
    for _ in 0..3 {
        keyed(&node, "POST", "/", "alice");
    }
    assert_eq!(keyed(&node, "GET", "/", "alice").text(), "5\n");
    // Back to the snapshot: the 3 POSTs since are undone.
    node.cli_ok(&[
        "restore",
        "demo/counter",
        "--key",
        "alice",
        &seq.to_string(),
    ]);
    assert_eq!(keyed(&node, "GET", "/", "alice").text(), "2\n");
    // Restoring without a number takes the latest: unsaved changes go.
    keyed(&node, "POST", "/", "alice");
    node.cli_ok(&["restore", "demo/counter", "--key", "alice"]);
    assert_eq!(keyed(&node, "GET", "/", "alice").text(), "2\n");

    let out = node.cli(&["restore", "demo/counter", "--key", "nobody"]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("no checkpoint"),
        "{}",
        common::stderr(&out)
    );
    let out = node.cli(&["snapshots", "demo/hello"]);
    assert!(!out.status.success());
}

#[test]
fn a_guest_that_keeps_host_resources_stays_live_instead_of_hibernating() {
    // Rust's standard library caches its stdout and stderr streams: handles
    // a checkpoint cannot carry. Such a key is not hibernated, and keeps
    // printing.
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy(
        "demo/logger",
        "logger",
        &["--stateful", "--hibernate-after", "200ms"],
    );
    let get = || {
        keyed_in(
            node.http,
            "x-dwcp-key",
            "GET",
            "logger.demo.localhost",
            "/?lines=2",
            "k",
            b"",
        )
        .unwrap()
    };
    assert_eq!(get().status, 200);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        node.metric("dwcp_live_instances"),
        1.0,
        "the key stayed live"
    );
    assert_eq!(get().status, 200);
    let logs = node.cli_ok(&["logs", "demo/logger"]);
    assert_eq!(logs.matches("line 2 of 2").count(), 2, "{logs}");
    assert!(logs.contains("host resources"), "{logs}");
    let snapshots: serde_json::Value =
        serde_json::from_str(&node.cli_ok(&["snapshots", "demo/logger", "--json"])).unwrap();
    assert_eq!(snapshots[0]["resources"], true);
}

#[test]
fn live_keys_count_in_their_tenants_instance_quota() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("demo/counter", "counter", &["--stateful"]);
    node.cli_ok(&["tenants", "quota", "demo", "--instances", "2"]);
    // Two keys live: the quota is full; a third key makes room by
    // hibernating the least recently used one, and every count holds.
    for round in 1..=2 {
        for key in ["a", "b", "c"] {
            let reply = keyed(&node, "POST", "/", key);
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert_eq!(reply.text(), format!("{round}\n"));
        }
    }
    assert!(node.metric("dwcp_live_instances") <= 2.0);
}

#[test]
fn bad_stateful_options_are_refused_with_the_reason_and_change_nothing() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    let file = common::example("counter");
    let file = file.to_str().unwrap();
    for (flags, reason) in [
        (vec!["--checkpoint", "soon"], "--checkpoint `soon`"),
        (vec!["--checkpoint", "0s"], "positive duration"),
        (
            vec!["--key-header", "bad header"],
            "not a valid header name",
        ),
        (vec!["--keep-checkpoints", "0"], "between 1 and 1000"),
        (
            vec!["--hibernate-after", "later"],
            "--hibernate-after `later`",
        ),
    ] {
        let mut args = vec!["deploy", "demo/counter", file, "--stateful"];
        args.extend(flags.iter());
        let out = node.cli(&args);
        assert!(!out.status.success(), "{flags:?} was accepted");
        assert!(
            common::stderr(&out).contains(reason),
            "{flags:?}: {}",
            common::stderr(&out)
        );
    }
    let out = node.cli(&["apps", "--json"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "[]",
        "nothing was deployed"
    );
}
