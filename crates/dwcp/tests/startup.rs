//! Start-up after an upgrade, when every app compiles again: apps serve as
//! they load, the busiest first, the rest answer 503 meanwhile and
//! `/readyz` says not ready until all are loaded.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestNode, data_dir, dwcp, example, request};

const APPS: usize = 30;

/// `bytes` with a custom section holding `i`: the same code, its own
/// artifact hash, its own compilation.
fn distinct(bytes: &[u8], i: usize) -> Vec<u8> {
    let name = b"dwcp-test";
    let mut out = bytes.to_vec();
    out.push(0);
    out.push((1 + name.len() + 8) as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&(i as u64).to_le_bytes());
    out
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

#[test]
fn after_an_upgrade_the_busiest_app_loads_first_and_readyz_waits_for_all() {
    let dir = data_dir();
    let hello = std::fs::read(example("hello")).expect("hello.wasm");
    {
        let node = TestNode::start(dir.path());
        for i in 0..APPS {
            let file = dir.path().join(format!("a{i:02}.wasm"));
            std::fs::write(&file, distinct(&hello, i)).expect("write");
            node.cli_ok(&[
                "deploy",
                &format!("t/a{i:02}"),
                file.to_str().expect("utf-8"),
            ]);
        }
        // a17 is the busy one; the counts are stored when the node stops.
        for _ in 0..20 {
            assert_eq!(node.request("GET", "a17.t.localhost", "/", b"").status, 200);
        }
        node.signal("TERM");
        let mut node = node;
        assert_eq!(node.wait_exit(Duration::from_secs(30)), Some(0));
    }
    // A new dwcp's engine fits none of the compiled files: as if deleted.
    std::fs::remove_dir_all(dir.path().join("aot")).expect("rm aot");

    let (http, admin) = (free_port(), free_port());
    let log = dir.path().join("node.log");
    let mut child = Command::new(dwcp())
        .args(["up", "--compile-jobs", "1", "--data-dir"])
        .arg(dir.path())
        .args(["--http", &http.to_string(), "--admin", &admin.to_string()])
        .env("DWCP_LOG", "info,dwcp_node=debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("dwcp up");
    let _kill = KillOnDrop(&mut child);

    // While it loads: not ready, and an app not loaded yet answers 503.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut saw_starting = None;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(admin).is_ok() {
            let ready = request(admin, "GET", "localhost", "/readyz", b"");
            if ready.status == 503 {
                saw_starting = Some(request(http, "GET", "a29.t.localhost", "/", b""));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let reply = saw_starting.expect("/readyz said ready before the apps were loaded");
    assert_eq!(reply.status, 503);
    assert!(reply.text().contains("is starting"), "{}", reply.text());
    assert_eq!(reply.header("retry-after"), Some("1"));

    let stdout = _kill.0.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("ready line");
    assert!(line.contains(&format!("apps={APPS} ")), "{line}");
    assert_eq!(
        request(admin, "GET", "localhost", "/readyz", b"").status,
        200
    );
    assert_eq!(
        request(http, "GET", "a29.t.localhost", "/", b"").status,
        200
    );

    let log = std::fs::read_to_string(&log).expect("log");
    let order: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("app loaded"))
        .filter_map(|l| l.split("app=").nth(1)?.split_whitespace().next())
        .collect();
    assert_eq!(order.len(), APPS, "{log}");
    assert_eq!(order[0], "a17", "the busiest app first: {order:?}");
    assert!(
        log.contains(&format!("loaded {APPS} of {APPS} apps")),
        "{log}"
    );
    assert!(log.contains("compiled=30"), "{log}");
}

struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
