//! `cargo xtask bench-cluster`: what clustering costs and how fast it
//! reacts, measured on loopback with a fresh nats-server and three
//! `dwcp up` nodes (edge-a in eu-west, edge-b and edge-c in us-east):
//!
//! 1. forwarding overhead: one replica in us-east, loaded directly and
//!    through edge-a, which forwards over the peer link;
//! 2. deploy to serving everywhere: a new version deployed through edge-a,
//!    timed until edge-b and edge-c serve it;
//! 3. failover: GETs through edge-a to an app on edge-b and edge-c while
//!    edge-b is SIGKILLed: failed answers, worst latency, detection time;
//! 4. edge-cache hits against the same app served with caching off;
//! 5. live migration of a stateful key holding 64 MiB, under load: the
//!    pause against the copy (what stopping the key for the whole copy
//!    would cost), and what the clients saw.
//!
//! Latency under load is measured with `wrk` (as `cargo xtask bench`
//! does): its event loop keeps connections alive and reports a latency
//! distribution without this process's own costs in it. The failover load
//! is a plain loop of `Connection: close` requests instead, because each
//! answer must be seen (its status, its time) around the kill.
//!
//! The failover runs last since it kills a node. Every process (nats-server,
//! nodes, wrk, this task) shares one machine: the numbers are for
//! comparing, not absolute.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

mod migration;

/// How long each wrk run lasts.
const WRK_SECONDS: u32 = 10;
/// The failover load: this long before the kill, this long after.
const BEFORE_KILL: Duration = Duration::from_secs(2);
const AFTER_KILL: Duration = Duration::from_secs(5);
/// Deploy rounds of measurement 2.
const DEPLOY_ROUNDS: usize = 5;
/// The files that make nodes trust the same publisher key (as the tests'
/// `provision_trust` copies them).
const TRUST_FILES: &[&str] = &[
    "keys/root.key",
    "keys/local.key",
    "trust/root.pub",
    "trust/manifest",
];

/// Runs the benchmark; everything it started is stopped and its files
/// removed on return, error or not.
pub fn run(root: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let tools = Tools::locate(root)?;
    let mut cluster = Cluster::new(tools)?;
    let result = measure_all(&mut cluster, started);
    if result.is_err() {
        cluster.print_log_tails();
    }
    drop(cluster);
    result
}

/// Starts the cluster, runs the four measurements, prints the summary.
fn measure_all(cluster: &mut Cluster, started: Instant) -> anyhow::Result<()> {
    cluster.start_nats()?;
    cluster.start_node("edge-a", "eu-west")?;
    cluster.start_node("edge-b", "us-east")?;
    cluster.start_node("edge-c", "us-east")?;
    cluster.wait_for_members(3)?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("# DWCP cluster benchmark");
    println!();
    println!(
        "Loopback, one nats-server {} and three `dwcp up --workers 1` nodes (edge-a eu-west, \
         edge-b and edge-c us-east), all sharing this {cores}-core machine with wrk and this \
         task (and whatever else runs on it): compare the numbers, do not take them as absolute.",
        cluster.nats_url
    );
    let mut notes = Vec::new();
    // `DWCP_BENCH_CLUSTER_ONLY=migration` (or forwarding, deploy, cache,
    // failover) runs one measurement.
    let only = std::env::var("DWCP_BENCH_CLUSTER_ONLY").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let forwarding = if wanted("forwarding") {
        forwarding(cluster, &mut notes)?
    } else {
        Value::Null
    };
    let deploy = if wanted("deploy") {
        deploy_everywhere(cluster, &mut notes)?
    } else {
        Value::Null
    };
    let cache = if wanted("cache") {
        cache(cluster, &mut notes)?
    } else {
        Value::Null
    };
    let migration = if wanted("migration") {
        migration::migration(cluster, &mut notes)?
    } else {
        Value::Null
    };
    // Last: it kills edge-b.
    let failover = if wanted("failover") {
        failover(cluster, &mut notes)?
    } else {
        Value::Null
    };
    let wall = started.elapsed().as_secs_f64();
    println!();
    println!("## Notes");
    println!();
    println!("- all processes share this {cores}-core machine");
    for note in &notes {
        println!("- {note}");
    }
    println!("- wall time of the whole run: {wall:.1} s");
    println!();
    let summary = json!({
        "bench": "cluster",
        "cores": cores,
        "shared_machine": true,
        "forwarding": forwarding,
        "deploy_everywhere": deploy,
        "failover": failover,
        "cache": cache,
        "migration": migration,
        "notes": notes,
        "wall_s": round(wall, 1),
    });
    println!("{summary}");
    Ok(())
}

// ---------------------------------------------------------------------------
// Tools and processes
// ---------------------------------------------------------------------------

/// The binaries and files the benchmark runs.
struct Tools {
    dwcp: PathBuf,
    nats_server: PathBuf,
    hello: PathBuf,
    counter: PathBuf,
}

impl Tools {
    /// Finds (or, when missing, builds or installs) everything needed.
    fn locate(root: &Path) -> anyhow::Result<Tools> {
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
        let mut dwcp = target.join("release/dwcp");
        if !dwcp.exists() {
            dwcp = crate::build_dwcp(root)?;
        }
        let mut examples = root.join("target/examples");
        if !examples.join("hello.wasm").exists() || !examples.join("counter.wasm").exists() {
            examples = crate::examples(root)?;
        }
        let (hello, counter) = (examples.join("hello.wasm"), examples.join("counter.wasm"));
        let nats_server = crate::nats::install(root)?
            .into_iter()
            .find(|(key, _)| key == "DWCP_NATS_SERVER")
            .map(|(_, path)| PathBuf::from(path))
            .context("nats::install named no nats-server")?;
        if Command::new("wrk").arg("-v").output().is_err() {
            eprintln!("installing wrk");
            crate::apt::install(&["wrk"])?;
        }
        Ok(Tools {
            dwcp,
            nats_server,
            hello,
            counter,
        })
    }
}

/// A node's admin API: its address and token (cloned into threads).
#[derive(Clone)]
struct AdminApi {
    addr: SocketAddr,
    token: String,
}

impl AdminApi {
    /// GET `path` with the token; the JSON it answers.
    fn get_json(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let auth = format!("Bearer {}", self.token);
        let reply = http_get(self.addr, "localhost", path, &[("authorization", &auth)])?;
        let value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        Ok((reply.status, value))
    }
}

/// A running `dwcp up`.
struct Node {
    id: &'static str,
    child: Child,
    http: SocketAddr,
    api: AdminApi,
    data: PathBuf,
    dwcp: PathBuf,
}

impl Node {
    /// Runs the CLI against this node, as `TestNode::cli` does: the admin
    /// address and token in the environment, the data directory for the
    /// publisher key that signs deploys.
    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.dwcp)
            .args(args)
            .env("DWCP_ADMIN", format!("http://{}", self.api.addr))
            .env("DWCP_TOKEN", &self.api.token)
            .env("DWCP_DATA_DIR", &self.data)
            .output()
            .with_context(|| format!("cannot run dwcp {args:?}"))?;
        ensure_success(&out, args)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The command line [`Node::cli`] runs, for the tables.
    fn shown(&self, args: &str) -> String {
        format!("DWCP_ADMIN=http://{} dwcp {args}", self.api.addr)
    }

    /// `dwcp route status APP --json` through this node.
    fn route(&self, app: &str) -> anyhow::Result<Value> {
        let text = self.cli(&["route", "status", app, "--json"])?;
        serde_json::from_str(&text).with_context(|| format!("route status of {app}: {text}"))
    }

    /// A GET of `host` on this node's HTTP port.
    fn get(&self, host: &str) -> anyhow::Result<Reply> {
        http_get(self.http, host, "/", &[])
    }
}

fn ensure_success(out: &Output, args: &[&str]) -> anyhow::Result<()> {
    if !out.status.success() {
        bail!(
            "dwcp {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The nats-server, the nodes and their directory: killed and removed
/// when dropped, so that an error anywhere leaves nothing behind.
struct Cluster {
    tools: Tools,
    dir: PathBuf,
    nats: Option<Child>,
    nats_url: String,
    nodes: Vec<Node>,
}

impl Cluster {
    fn new(tools: Tools) -> anyhow::Result<Cluster> {
        let dir = std::env::temp_dir().join(format!("dwcp-bench-cluster-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Cluster {
            tools,
            dir,
            nats: None,
            nats_url: String::new(),
            nodes: Vec::new(),
        })
    }

    /// A fresh nats-server with JetStream on free ports; waits for its
    /// `/healthz` (JetStream ready) before any node connects.
    fn start_nats(&mut self) -> anyhow::Result<()> {
        let dir = self.dir.join("nats");
        std::fs::create_dir_all(&dir)?;
        let log = std::fs::File::create(dir.join("nats.log"))?;
        let child = Command::new(&self.tools.nats_server)
            .args(["-a", "127.0.0.1", "-js", "-p", "-1", "-m", "-1", "-sd"])
            .arg(dir.join("store"))
            .arg("--ports_file_dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.tools.nats_server.display()))?;
        let ports = dir.join(format!("nats-server_{}.ports", child.id()));
        self.nats = Some(child);
        let ports: Value = poll(Duration::from_secs(10), "nats-server's ports file", || {
            Ok(std::fs::read_to_string(&ports)
                .ok()
                .and_then(|text| serde_json::from_str(&text).ok()))
        })?;
        let port_of = |kind: &str| -> anyhow::Result<u16> {
            let url = ports[kind][0].as_str().context("no such port")?;
            let port = url.rsplit(':').next().unwrap_or_default();
            port.parse()
                .with_context(|| format!("nats-server's {kind} URL {url}"))
        };
        let client = port_of("nats")?;
        let monitor = SocketAddr::from(([127, 0, 0, 1], port_of("monitoring")?));
        poll(Duration::from_secs(10), "nats-server's /healthz", || {
            Ok(http_get(monitor, "localhost", "/healthz", &[])
                .ok()
                .filter(|r| r.status == 200))
        })?;
        self.nats_url = format!("nats://127.0.0.1:{client}");
        eprintln!("nats-server up at {}", self.nats_url);
        Ok(())
    }

    /// Starts a node; every node after the first gets the first's trust
    /// files, so a deploy signed through any node verifies on all.
    fn start_node(&mut self, id: &'static str, region: &str) -> anyhow::Result<()> {
        let data = self.dir.join(id);
        std::fs::create_dir_all(&data)?;
        if let Some(first) = self.nodes.first() {
            copy_trust(&first.data, &data)?;
        }
        let log = std::fs::File::create(data.join("node.log"))?;
        let mut up = Command::new(&self.tools.dwcp);
        up.args(["up", "--http", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(["--workers", "1", "--cluster", &self.nats_url])
            .args(["--node-id", id, "--region", region, "--data-dir"])
            .arg(&data)
            // The CLI's variables of the caller must not steer the node.
            .env_remove("DWCP_ADMIN")
            .env_remove("DWCP_TOKEN")
            .env_remove("DWCP_DATA_DIR")
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = up.spawn().context("cannot start dwcp up")?;
        let line = match ready_line(&mut child) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e.context(format!("{id} did not start")));
            }
        };
        let node = node_from_ready(id, child, &line, data, &self.tools.dwcp);
        self.nodes.push(node?);
        eprintln!("{id} ({region}) up: {}", line.trim());
        Ok(())
    }

    /// Waits until the first node sees `count` members.
    fn wait_for_members(&self, count: usize) -> anyhow::Result<()> {
        let a = self.node("edge-a")?;
        poll(Duration::from_secs(15), "every node in the cluster", || {
            let (_, nodes) = a.api.get_json("/v1/nodes")?;
            let seen = nodes["nodes"].as_array().map_or(0, Vec::len);
            Ok((seen == count).then_some(()))
        })
    }

    fn node(&self, id: &str) -> anyhow::Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .with_context(|| format!("no node {id}"))
    }

    /// SIGKILLs a node (no goodbye to the cluster); the instant of the kill.
    fn kill(&mut self, id: &str) -> anyhow::Result<Instant> {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.id == id)
            .with_context(|| format!("no node {id}"))?;
        let at = Instant::now();
        // `Child::kill` is SIGKILL on Unix.
        node.child
            .kill()
            .with_context(|| format!("cannot kill {id}"))?;
        let _ = node.child.wait();
        Ok(at)
    }

    /// The end of each node's log, to tell why a run failed.
    fn print_log_tails(&self) {
        for node in &self.nodes {
            let log = std::fs::read_to_string(node.data.join("node.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- last lines of {}'s log ---", node.id);
            for line in &lines[lines.len().saturating_sub(15)..] {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        if let Some(nats) = &mut self.nats {
            let _ = nats.kill();
            let _ = nats.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn copy_trust(from: &Path, to: &Path) -> anyhow::Result<()> {
    for file in TRUST_FILES {
        let target = to.join(file);
        std::fs::create_dir_all(target.parent().context("a trust file's directory")?)?;
        std::fs::copy(from.join(file), &target)
            .with_context(|| format!("cannot copy the trust file {file}"))?;
    }
    Ok(())
}

/// The node's first stdout line, `… ready … http=… admin=…`. Read in a
/// thread: a node stuck before it must not hang the benchmark. The thread
/// then drains stdout so that the node never writes into a closed pipe.
fn ready_line(child: &mut Child) -> anyhow::Result<String> {
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    // A first start signs the node's trust manifest with SLH-DSA: seconds.
    let line = rx
        .recv_timeout(Duration::from_secs(90))
        .context("no ready line within 90 s")?;
    ensure!(line.contains("ready"), "no ready line, got {line:?}");
    Ok(line)
}

fn node_from_ready(
    id: &'static str,
    child: Child,
    line: &str,
    data: PathBuf,
    dwcp: &Path,
) -> anyhow::Result<Node> {
    let addr = |key: &str| -> anyhow::Result<SocketAddr> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|a| a.strip_prefix("http://"))
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("no {key} in the ready line {line:?}"))
    };
    let (http, admin) = (addr("http=")?, addr("admin=")?);
    let token = std::fs::read_to_string(data.join("admin-token"))
        .context("dwcp up wrote no admin-token")?
        .trim()
        .to_string();
    Ok(Node {
        id,
        child,
        http,
        api: AdminApi { addr: admin, token },
        data,
        dwcp: dwcp.to_path_buf(),
    })
}

/// Calls `check` every 20 ms until it gives a value, for at most `limit`.
fn poll<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if started.elapsed() > limit {
            bail!("waited {limit:?} for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `node` answers `host` with 200, served by `served_by`
/// (`None`: by itself, no `x-dwcp-served-by`).
fn until_served(node: &Node, host: &str, served_by: Option<&str>) -> anyhow::Result<()> {
    let what = format!("{host} answered 200 on {} by {served_by:?}", node.id);
    poll(Duration::from_secs(20), &what, || {
        let reply = node.get(host)?;
        Ok((reply.status == 200 && reply.header("x-dwcp-served-by") == served_by).then_some(()))
    })
}

/// The node ids among a route status's replicas, sorted.
fn replica_nodes(route: &Value) -> Vec<String> {
    let mut nodes: Vec<String> = route["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["node"].as_str().map(str::to_string))
        .collect();
    nodes.sort();
    nodes
}

// ---------------------------------------------------------------------------
// HTTP over a plain socket (no client library: one request, one connection)
// ---------------------------------------------------------------------------

/// An HTTP answer.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 GET with `Connection: close`, read to its end.
fn http_get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Reply> {
    http_request(addr, "GET", host, path, headers)
}

/// One HTTP/1.1 request without a body, `Connection: close`, read to its end.
fn http_request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Reply> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("cannot connect {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let extra: String = headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer of {addr}"))?;
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> anyhow::Result<Reply> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("no response head in {:?}", String::from_utf8_lossy(raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    let rest = &raw[split + 4..];
    reply.body = match reply.header("transfer-encoding") {
        Some(te) if te.contains("chunked") => dechunk(rest),
        _ => rest.to_vec(),
    };
    Ok(reply)
}

/// A chunked body's data (what arrived of it).
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&rest[..eol]);
        let Ok(size) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        rest = &rest[eol + 2..];
        if size == 0 || rest.len() < size {
            break;
        }
        body.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
    body
}

// ---------------------------------------------------------------------------
// wrk
// ---------------------------------------------------------------------------

/// What one wrk run reported; latencies in microseconds.
struct WrkRun {
    command: String,
    requests: u64,
    rps: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    non_2xx: u64,
    socket_errors: u64,
}

impl WrkRun {
    fn json(&self) -> Value {
        json!({
            "command": self.command,
            "requests": self.requests,
            "rps": round(self.rps, 0),
            "p50_us": round(self.p50, 1),
            "p90_us": round(self.p90, 1),
            "p99_us": round(self.p99, 1),
            "max_us": round(self.max, 1),
            "non_2xx": self.non_2xx,
            "socket_errors": self.socket_errors,
        })
    }

    /// Flags what wrk saw fail: each answer should have been a 200.
    fn check(&self, what: &str, notes: &mut Vec<String>) {
        if self.non_2xx > 0 || self.socket_errors > 0 {
            notes.push(format!(
                "{what}: wrk saw {} non-2xx answers and {} socket errors",
                self.non_2xx, self.socket_errors
            ));
        }
    }
}

/// `wrk -t1 -cCONNS -dWRK_SECONDSs --latency -H 'Host: HOST' http://ADDR/`.
fn wrk(addr: SocketAddr, host: &str, conns: u32) -> anyhow::Result<WrkRun> {
    let args = [
        "-t1".to_string(),
        format!("-c{conns}"),
        format!("-d{WRK_SECONDS}s"),
        "--latency".to_string(),
        "-H".to_string(),
        format!("Host: {host}"),
        format!("http://{addr}/"),
    ];
    let command =
        format!("wrk -t1 -c{conns} -d{WRK_SECONDS}s --latency -H 'Host: {host}' http://{addr}/");
    eprintln!("running {command}");
    let out = Command::new("wrk")
        .args(&args)
        .output()
        .context("cannot run wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(out.status.success(), "{command} failed: {text}");
    parse_wrk(&text, command).with_context(|| format!("wrk's output: {text}"))
}

fn parse_wrk(text: &str, command: String) -> anyhow::Result<WrkRun> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let words_after = |prefix: &str| -> Option<Vec<&str>> {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|rest| rest.split_whitespace().collect())
    };
    let percentile = |p: &str| -> anyhow::Result<f64> {
        let words = words_after(p).with_context(|| format!("no {p} line"))?;
        micros(words.first().context("an empty percentile line")?)
    };
    // `Latency   AVG   STDEV   MAX   +/-`
    let latency = words_after("Latency ").context("no Latency line")?;
    let requests = lines
        .iter()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .context("no `N requests in` line")?;
    let rps = words_after("Requests/sec:")
        .and_then(|w| w.first().and_then(|n| n.parse().ok()))
        .context("no Requests/sec line")?;
    let non_2xx = words_after("Non-2xx or 3xx responses:")
        .and_then(|w| w.first().and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    // `Socket errors: connect 0, read 0, write 0, timeout 0`
    let socket_errors = words_after("Socket errors:").map_or(0, |w| {
        w.iter()
            .filter_map(|n| n.trim_end_matches(',').parse::<u64>().ok())
            .sum()
    });
    Ok(WrkRun {
        command,
        requests,
        rps,
        p50: percentile("50%")?,
        p90: percentile("90%")?,
        p99: percentile("99%")?,
        max: micros(latency.get(2).context("no max latency")?)?,
        non_2xx,
        socket_errors,
    })
}

/// wrk's `12.34us`, `1.20ms`, `2.00s` or `1.00m`, in microseconds.
fn micros(text: &str) -> anyhow::Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().with_context(|| format!("{text:?}"))?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        other => bail!("unknown unit {other:?} in {text:?}"),
    };
    Ok(number * scale)
}

// ---------------------------------------------------------------------------
// 1. Forwarding overhead
// ---------------------------------------------------------------------------

/// The same app loaded on the node that holds it and through edge-a, which
/// has no replica and forwards each request over the peer link.
fn forwarding(cluster: &Cluster, notes: &mut Vec<String>) -> anyhow::Result<Value> {
    let host = "fwd.demo.localhost";
    let a = cluster.node("edge-a")?;
    let hello = path_str(&cluster.tools.hello)?;
    let deploy = ["deploy", "demo/fwd", hello, "--replicas", "1"];
    a.cli(&[&deploy[..], &["--region", "us-east"]].concat())?;
    let route = poll(Duration::from_secs(20), "demo/fwd placed", || {
        let route = a.route("demo/fwd").ok();
        Ok(route.filter(|r| replica_nodes(r).len() == 1))
    })?;
    let holder_id = replica_nodes(&route).remove(0);
    let holder = cluster.node(&holder_id)?;
    until_served(holder, host, None)?;
    until_served(a, host, Some(&holder_id))?;

    let mut table = String::new();
    let _ = writeln!(
        table,
        "\n## 1. Forwarding overhead\n\n`{}` (hello.wasm) holds its one replica on {holder_id}; \
         edge-a has none and forwards over the peer link (answers carry \
         `x-dwcp-served-by: {holder_id}`, checked before the runs). Latencies in µs.\n",
        a.shown("deploy demo/fwd target/examples/hello.wasm --replicas 1 --region us-east")
    );
    table.push_str(
        "| path | command | requests | req/s | p50 | p90 | p99 | max | non-2xx / socket errors |\n",
    );
    table.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    let mut pairs = serde_json::Map::new();
    let forwarded_before = forwarded_count(a, "demo/fwd")?;
    let mut forwarded_requests = 0;
    for conns in [1, 8] {
        let local = wrk(holder.http, host, conns)?;
        let remote = wrk(a.http, host, conns)?;
        local.check(&format!("local -c{conns}"), notes);
        remote.check(&format!("forwarded -c{conns}"), notes);
        forwarded_requests += remote.requests;
        let local_name = format!("local on {holder_id}, -c{conns}");
        let remote_name = format!("edge-a → {holder_id}, -c{conns}");
        wrk_row(&mut table, &local_name, &local);
        wrk_row(&mut table, &remote_name, &remote);
        let (d50, d99) = (remote.p50 - local.p50, remote.p99 - local.p99);
        let _ = writeln!(
            table,
            "| forwarded − local, -c{conns} | | | {:.0} | **{d50:+.0}** | {:+.0} | **{d99:+.0}** | | |",
            remote.rps - local.rps,
            remote.p90 - local.p90
        );
        if conns == 1 && remote.p99 > 1000.0 {
            notes.push(format!(
                "forwarded p99 at -c1 is {:.0} µs, above 1 ms",
                remote.p99
            ));
        }
        pairs.insert(
            format!("c{conns}"),
            json!({
                "local": local.json(),
                "forwarded": remote.json(),
                "diff_p50_us": round(d50, 1),
                "diff_p99_us": round(d99, 1),
            }),
        );
    }
    let forwarded = forwarded_count(a, "demo/fwd")? - forwarded_before;
    let _ = writeln!(
        table,
        "\nedge-a's forwarder counted {forwarded} forwarded requests over the runs \
         (wrk through edge-a completed {forwarded_requests})."
    );
    if forwarded < forwarded_requests {
        notes.push(format!(
            "edge-a forwarded {forwarded} requests but wrk completed {forwarded_requests} through it"
        ));
    }
    print!("{table}");
    pairs.insert("holder".into(), holder_id.into());
    pairs.insert("forwarded_by_edge_a".into(), forwarded.into());
    Ok(Value::Object(pairs))
}

/// The node's forwarder counter (`route status`'s `forwarded`).
fn forwarded_count(node: &Node, app: &str) -> anyhow::Result<u64> {
    let route = node.route(app)?;
    route["forwarded"]
        .as_u64()
        .with_context(|| format!("no `forwarded` in {route}"))
}

fn wrk_row(table: &mut String, name: &str, run: &WrkRun) {
    let _ = writeln!(
        table,
        "| {name} | `{}` | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} / {} |",
        run.command,
        run.requests,
        run.rps,
        run.p50,
        run.p90,
        run.p99,
        run.max,
        run.non_2xx,
        run.socket_errors
    );
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

// ---------------------------------------------------------------------------
// 2. Deploy to serving everywhere
// ---------------------------------------------------------------------------

/// One deploy round's times, in milliseconds.
struct Round {
    version: String,
    command: f64,
    from_start: f64,
    from_return: f64,
    per_node: Vec<(String, f64)>,
}

/// Deploys new versions through edge-a and times until edge-b and edge-c
/// both serve each (their admin API says so: active version and serving).
fn deploy_everywhere(cluster: &Cluster, notes: &mut Vec<String>) -> anyhow::Result<Value> {
    let a = cluster.node("edge-a")?;
    let watchers = [cluster.node("edge-b")?, cluster.node("edge-c")?];
    let mut rounds = Vec::new();
    for n in 1..=DEPLOY_ROUNDS {
        rounds.push(deploy_round(cluster, a, &watchers, &format!("v{n}"))?);
    }
    let from_start: Vec<f64> = rounds.iter().map(|r| r.from_start).collect();
    let from_return: Vec<f64> = rounds.iter().map(|r| r.from_return).collect();
    let mut table = String::new();
    let _ = writeln!(
        table,
        "\n## 2. Deploy to serving everywhere (3 nodes)\n\n\
         Each round: `{}` (default replicas: every node), then `GET /v1/apps/demo/everywhere` \
         on edge-b's and edge-c's admin API every 5 ms until both say \
         `active_version: vN` and `serving: true`. Times in ms.\n",
        a.shown("deploy demo/everywhere target/examples/hello.wasm --version vN")
    );
    table.push_str(
        "| round | deploy command took | from its start to both serving | from its return | per node (from start) |\n",
    );
    table.push_str("|---|---:|---:|---:|---|\n");
    for r in &rounds {
        let per_node: Vec<String> = r
            .per_node
            .iter()
            .map(|(id, ms)| format!("{id} {ms:.0}"))
            .collect();
        let _ = writeln!(
            table,
            "| {} | {:.0} | {:.0} | {:.0} | {} |",
            r.version,
            r.command,
            r.from_start,
            r.from_return,
            per_node.join(", ")
        );
    }
    let _ = writeln!(
        table,
        "| **p50 / max** | | **{:.0} / {:.0}** | **{:.0} / {:.0}** | |",
        percentile(&from_start, 50.0),
        max(&from_start),
        percentile(&from_return, 50.0),
        max(&from_return)
    );
    print!("{table}");
    if rounds.iter().any(|r| r.from_return > 1000.0) {
        notes.push("a deploy took over 1 s after its command returned to serve everywhere".into());
    }
    Ok(json!({
        "rounds": rounds.iter().map(|r| json!({
            "version": r.version,
            "command_ms": round(r.command, 1),
            "from_start_ms": round(r.from_start, 1),
            "from_return_ms": round(r.from_return, 1),
            "per_node_from_start_ms": r.per_node.iter()
                .map(|(id, ms)| (id.clone(), json!(round(*ms, 1))))
                .collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>(),
        "from_start_ms": {"p50": round(percentile(&from_start, 50.0), 1), "max": round(max(&from_start), 1)},
        "from_return_ms": {"p50": round(percentile(&from_return, 50.0), 1), "max": round(max(&from_return), 1)},
    }))
}

fn deploy_round(
    cluster: &Cluster,
    a: &Node,
    watchers: &[&Node],
    version: &str,
) -> anyhow::Result<Round> {
    let hello = path_str(&cluster.tools.hello)?;
    eprintln!("deploying demo/everywhere {version}");
    let start = Instant::now();
    a.cli(&["deploy", "demo/everywhere", hello, "--version", version])?;
    let returned = start.elapsed();
    let mut done: Vec<Option<Duration>> = vec![None; watchers.len()];
    while done.iter().any(Option::is_none) {
        for (node, when) in watchers.iter().zip(done.iter_mut()) {
            if when.is_none() && serves_version(node, "demo/everywhere", version)? {
                *when = Some(start.elapsed());
            }
        }
        ensure!(
            start.elapsed() < Duration::from_secs(30),
            "{version} not serving on every node after 30 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let per_node: Vec<(String, f64)> = watchers
        .iter()
        .zip(&done)
        .map(|(n, d)| (n.id.to_string(), ms(d.unwrap_or_default())))
        .collect();
    let all = done.iter().flatten().max().copied().unwrap_or_default();
    Ok(Round {
        version: version.into(),
        command: ms(returned),
        from_start: ms(all),
        from_return: ms(all.saturating_sub(returned)),
        per_node,
    })
}

/// Whether `node`'s admin API says it serves `version` of `app` now.
fn serves_version(node: &Node, app: &str, version: &str) -> anyhow::Result<bool> {
    let (status, value) = node.api.get_json(&format!("/v1/apps/{app}"))?;
    Ok(status == 200 && value["active_version"] == version && value["serving"] == true)
}

// ---------------------------------------------------------------------------
// 3. Failover after SIGKILL
// ---------------------------------------------------------------------------

/// One request of the failover load.
struct Sample {
    /// When it ended, from the start of the load.
    end: Duration,
    latency: Duration,
    /// The status, or why there was none.
    outcome: Result<u16, String>,
}

/// GETs through edge-a to an app on edge-b and edge-c; edge-b is SIGKILLed
/// mid-way. Every GET should still be answered (retried on edge-c).
fn failover(cluster: &mut Cluster, notes: &mut Vec<String>) -> anyhow::Result<Value> {
    let host = "fo.demo.localhost";
    let (a_http, a_api, retried_before) = prepare_failover(cluster)?;
    let start = Instant::now();
    let load = std::thread::spawn(move || failover_load(a_http, host, start));
    std::thread::sleep(BEFORE_KILL.saturating_sub(start.elapsed()));
    let killed = cluster.kill("edge-b")?;
    let killed_at = killed - start;
    eprintln!("edge-b SIGKILLed");
    let watched = watch_route(&a_api, "demo/fo", "edge-b", killed);
    let samples = load
        .join()
        .map_err(|_| anyhow::anyhow!("the load thread panicked"))?;
    let (dead, gone) = watched?;
    let retried = route_counter(&a_api, "demo/fo", "retried")? - retried_before;
    let report = FailoverReport::new(&samples, killed_at, dead, gone, retried);
    report.print(cluster.node("edge-a")?);
    report.check(notes);
    Ok(report.json())
}

/// Deploys demo/fo on edge-b and edge-c and waits until edge-a forwards to
/// it; edge-a's address, admin API and `retried` counter.
fn prepare_failover(cluster: &Cluster) -> anyhow::Result<(SocketAddr, AdminApi, u64)> {
    let a = cluster.node("edge-a")?;
    let hello = path_str(&cluster.tools.hello)?;
    a.cli(&[
        "deploy",
        "demo/fo",
        hello,
        "--replicas",
        "2",
        "--region",
        "us-east",
    ])?;
    poll(
        Duration::from_secs(20),
        "demo/fo on edge-b and edge-c",
        || {
            let route = a.route("demo/fo").ok();
            Ok(route.filter(|r| replica_nodes(r) == ["edge-b", "edge-c"]))
        },
    )?;
    for id in ["edge-b", "edge-c"] {
        until_served(cluster.node(id)?, "fo.demo.localhost", None)?;
    }
    poll(Duration::from_secs(20), "edge-a forwarding demo/fo", || {
        let reply = a.get("fo.demo.localhost")?;
        Ok((reply.status == 200 && reply.header("x-dwcp-served-by").is_some()).then_some(()))
    })?;
    let retried = route_counter(&a.api, "demo/fo", "retried")?;
    Ok((a.http, a.api.clone(), retried))
}

/// A counter of `route status` (`forwarded`, `retried`), read from the
/// admin API directly.
fn route_counter(api: &AdminApi, app: &str, name: &str) -> anyhow::Result<u64> {
    let (_, route) = api.get_json(&format!("/v1/apps/{app}/route"))?;
    route[name]
        .as_u64()
        .with_context(|| format!("no `{name}` in {route}"))
}

/// Sequential `Connection: close` GETs through edge-a for the whole
/// failover window: each answer's status and time is kept.
fn failover_load(addr: SocketAddr, host: &str, start: Instant) -> Vec<Sample> {
    let mut samples = Vec::new();
    while start.elapsed() < BEFORE_KILL + AFTER_KILL {
        let sent = Instant::now();
        let outcome = http_get(addr, host, "/", &[])
            .map(|r| r.status)
            .map_err(|e| format!("{e:#}"));
        samples.push(Sample {
            end: start.elapsed(),
            latency: sent.elapsed(),
            outcome,
        });
    }
    samples
}

/// Polls edge-a's route status of `app` (admin API directly, every 10 ms:
/// a CLI process per poll would blur the times) from the kill on; the
/// times until `node` is reported not alive and until it is gone from the
/// replicas.
fn watch_route(
    api: &AdminApi,
    app: &str,
    node: &str,
    killed: Instant,
) -> anyhow::Result<(Option<Duration>, Option<Duration>)> {
    let mut dead = None;
    while killed.elapsed() < Duration::from_secs(20) {
        let (status, route) = api.get_json(&format!("/v1/apps/{app}/route"))?;
        ensure!(status == 200, "route status of {app}: {status} {route}");
        let replica = route["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["node"] == node);
        match replica {
            None => return Ok((dead.or(Some(killed.elapsed())), Some(killed.elapsed()))),
            Some(r) if r["alive"] == false && dead.is_none() => dead = Some(killed.elapsed()),
            Some(_) => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok((dead, None))
}

/// What the failover load saw.
struct FailoverReport {
    sent: usize,
    after_kill: usize,
    non_200: Vec<String>,
    errors: Vec<String>,
    p50_before: f64,
    max_before: f64,
    p50_after: f64,
    max_after: f64,
    killed_at: f64,
    dead: Option<f64>,
    gone: Option<f64>,
    retried: u64,
}

impl FailoverReport {
    fn new(
        samples: &[Sample],
        killed_at: Duration,
        dead: Option<Duration>,
        gone: Option<Duration>,
        retried: u64,
    ) -> FailoverReport {
        // A request still in flight at the kill counts as after it.
        let (before, after): (Vec<&Sample>, Vec<&Sample>) =
            samples.iter().partition(|s| s.end < killed_at);
        let latencies =
            |set: &[&Sample]| -> Vec<f64> { set.iter().map(|s| ms(s.latency)).collect() };
        let describe = |s: &Sample, what: String| {
            format!(
                "at {:.3} s after the kill: {what}",
                ms(s.end.abs_diff(killed_at)) / 1e3
            )
        };
        let non_200 = samples
            .iter()
            .filter_map(|s| match &s.outcome {
                Ok(200) | Err(_) => None,
                Ok(status) => Some(describe(s, status.to_string())),
            })
            .collect();
        let errors = samples
            .iter()
            .filter_map(|s| s.outcome.as_ref().err().map(|e| describe(s, e.clone())))
            .collect();
        let (before_ms, after_ms) = (latencies(&before), latencies(&after));
        FailoverReport {
            sent: samples.len(),
            after_kill: after.len(),
            non_200,
            errors,
            p50_before: percentile(&before_ms, 50.0),
            max_before: max(&before_ms),
            p50_after: percentile(&after_ms, 50.0),
            max_after: max(&after_ms),
            killed_at: ms(killed_at),
            dead: dead.map(ms),
            gone: gone.map(ms),
            retried,
        }
    }

    fn print(&self, a: &Node) {
        let shown = |d: Option<f64>| d.map_or("not within 20 s".to_string(), |d| format!("{d:.0}"));
        let mut table = String::new();
        let _ = writeln!(
            table,
            "\n## 3. Failover after SIGKILL\n\n`{}`; then sequential `GET / HTTP/1.1` with \
             `Host: fo.demo.localhost` and `Connection: close` to edge-a (http://{}) for {} s, \
             `kill -KILL` of edge-b at {:.0} ms; edge-a's `GET /v1/apps/demo/fo/route` \
             (what `{}` shows) polled every 10 ms from the kill on. Times in ms.\n",
            a.shown("deploy demo/fo target/examples/hello.wasm --replicas 2 --region us-east"),
            a.http,
            (BEFORE_KILL + AFTER_KILL).as_secs(),
            self.killed_at,
            a.shown("route status demo/fo --json"),
        );
        table.push_str("| figure | value |\n|---|---:|\n");
        let rows = [
            ("requests sent", self.sent.to_string()),
            ("of them ended after the kill", self.after_kill.to_string()),
            ("non-200 answers", self.non_200.len().to_string()),
            (
                "requests with no answer (connection errors)",
                self.errors.len().to_string(),
            ),
            (
                "p50 latency before the kill",
                format!("{:.2}", self.p50_before),
            ),
            (
                "max latency before the kill",
                format!("{:.2}", self.max_before),
            ),
            (
                "p50 latency after the kill",
                format!("{:.2}", self.p50_after),
            ),
            (
                "**max latency after the kill**",
                format!("**{:.2}**", self.max_after),
            ),
            (
                "kill → edge-b not alive in edge-a's route status",
                shown(self.dead),
            ),
            (
                "**kill → edge-b gone from edge-a's replicas**",
                format!("**{}**", shown(self.gone)),
            ),
            (
                "GETs edge-a retried on another replica",
                self.retried.to_string(),
            ),
        ];
        for (name, value) in rows {
            let _ = writeln!(table, "| {name} | {value} |");
        }
        for failure in self.non_200.iter().chain(&self.errors).take(5) {
            let _ = writeln!(table, "\nfailed: {failure}");
        }
        print!("{table}");
    }

    fn check(&self, notes: &mut Vec<String>) {
        if !self.non_200.is_empty() || !self.errors.is_empty() {
            notes.push(format!(
                "failover: {} non-200 answers and {} failed requests out of {} (expected none)",
                self.non_200.len(),
                self.errors.len(),
                self.sent
            ));
        }
        if self.gone.is_none() {
            notes.push("failover: edge-b was still among the replicas 20 s after the kill".into());
        }
    }

    fn json(&self) -> Value {
        json!({
            "requests": self.sent,
            "after_kill": self.after_kill,
            "non_200": self.non_200.len(),
            "errors": self.errors.len(),
            "failures": self.non_200.iter().chain(&self.errors).take(5).collect::<Vec<_>>(),
            "p50_before_ms": round(self.p50_before, 2),
            "max_before_ms": round(self.max_before, 2),
            "p50_after_ms": round(self.p50_after, 2),
            "max_after_ms": round(self.max_after, 2),
            "killed_at_ms": round(self.killed_at, 1),
            "kill_to_not_alive_ms": self.dead.map(|d| round(d, 1)),
            "kill_to_gone_ms": self.gone.map(|d| round(d, 1)),
            "retried": self.retried,
        })
    }
}

// ---------------------------------------------------------------------------
// 4. Edge cache
// ---------------------------------------------------------------------------

/// An app on every node loaded through edge-a: with a cache TTL (hits),
/// then with caching off (served locally by edge-a's replica).
fn cache(cluster: &Cluster, notes: &mut Vec<String>) -> anyhow::Result<Value> {
    let host = "cached.demo.localhost";
    let a = cluster.node("edge-a")?;
    a.cli(&["deploy", "demo/cached", path_str(&cluster.tools.hello)?])?;
    until_served(a, host, None)?;

    let on = ["apps", "set", "demo/cached", "--cache-ttl", "60s"];
    a.cli(&on)?;
    let curl = format!(
        "curl -sD - -o /dev/null -H 'Host: {host}' http://{}/",
        a.http
    );
    until_cache(a, host, "hit")?;
    let hits = wrk(a.http, host, 1)?;
    hits.check("cache hits", notes);

    let off = ["apps", "set", "demo/cached", "--cache-ttl", "off"];
    a.cli(&off)?;
    // Changing the TTL drops the app's entries: the first answer after
    // `off` must not be a hit (reported if it is); a purge follows anyway,
    // so that the measurement starts from an empty cache whatever happened.
    let right_after_off = cache_header(a, host)?;
    if right_after_off != "bypass" {
        notes.push(format!(
            "cache: right after `--cache-ttl off` edge-a still answered `x-dwcp-cache: \
             {right_after_off}`, not `bypass`: the TTL change did not drop its entries; \
             purged with `dwcp cache purge demo/cached` before measuring"
        ));
    }
    let purge = ["cache", "purge", "demo/cached"];
    a.cli(&purge)?;
    let outcome_off = until_cache(a, host, "bypass")?;
    let uncached = wrk(a.http, host, 1)?;
    uncached.check("caching off", notes);

    let mut table = String::new();
    let _ = writeln!(
        table,
        "\n## 4. Edge-cache hits vs caching off (served locally by edge-a)\n\n\
         `{}` (a replica on every node); `{}`, then `{curl}` until it shows \
         `x-dwcp-cache: hit`; later `{}` (the next answer said `x-dwcp-cache: \
         {right_after_off}`), `{}` and the same curl until `x-dwcp-cache: {outcome_off}` \
         (no `x-dwcp-served-by`: edge-a's own replica). Latencies in µs.\n",
        a.shown("deploy demo/cached target/examples/hello.wasm"),
        a.shown(&on.join(" ")),
        a.shown(&off.join(" ")),
        a.shown(&purge.join(" ")),
    );
    table.push_str(
        "| case | command | requests | req/s | p50 | p90 | p99 | max | non-2xx / socket errors |\n",
    );
    table.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    wrk_row(&mut table, "cache hit (--cache-ttl 60s)", &hits);
    wrk_row(&mut table, "caching off (--cache-ttl off)", &uncached);
    let _ = writeln!(
        table,
        "| hit − off | | | {:.0} | **{:+.0}** | {:+.0} | **{:+.0}** | | |",
        hits.rps - uncached.rps,
        hits.p50 - uncached.p50,
        hits.p90 - uncached.p90,
        hits.p99 - uncached.p99
    );
    print!("{table}");
    Ok(json!({
        "hit": hits.json(),
        "off": uncached.json(),
        "off_cache_header": outcome_off,
        "cache_header_right_after_off": right_after_off,
        "diff_p50_us": round(hits.p50 - uncached.p50, 1),
        "diff_p99_us": round(hits.p99 - uncached.p99, 1),
    }))
}

/// Runs curl against edge-a until its `x-dwcp-cache` says `want` (with a
/// 200 served by edge-a itself); the header as seen.
fn until_cache(a: &Node, host: &str, want: &str) -> anyhow::Result<String> {
    let started = Instant::now();
    loop {
        let seen = cache_header(a, host)?;
        if seen == want {
            return Ok(seen);
        }
        ensure!(
            started.elapsed() < Duration::from_secs(20),
            "x-dwcp-cache from {host} still `{seen}` after 20 s, not `{want}`"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One curl GET through edge-a: its `x-dwcp-cache` header. The answer must
/// be a 200 from edge-a's own replica.
fn cache_header(a: &Node, host: &str) -> anyhow::Result<String> {
    let out = Command::new("curl")
        .args(["-sD", "-", "-o", "/dev/null", "-H"])
        .arg(format!("Host: {host}"))
        .arg(format!("http://{}/", a.http))
        .output()
        .context("cannot run curl")?;
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    ensure!(
        head.starts_with("http/1.1 200") && !head.contains("x-dwcp-served-by"),
        "not a 200 from edge-a itself: {head}"
    );
    Ok(head
        .lines()
        .find_map(|l| l.strip_prefix("x-dwcp-cache:"))
        .map_or("none", str::trim)
        .to_string())
}

// ---------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile (0 for no values).
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}
