//! Scale benchmark of the cluster's control plane: many simulated nodes in
//! one process against one REAL `nats-server` (JetStream on, temporary
//! store), measuring how the control plane's figures grow as nodes and
//! apps double.
//!
//! What it measures, per (nodes, apps) point, each on a fresh server:
//!
//! - join: from the first connect until every node's membership watch
//!   holds every node;
//! - load: M app records (~2 KB JSON) written by one operator client, 32
//!   puts in flight; time until the last put's ack, and until every node's
//!   desired-state watch has delivered all M;
//! - deploy: one app record rewritten K times (a round at a time); for
//!   each, the time from the put's ack until the LAST node's watch
//!   delivered that revision (p50/p99/max, nearest rank), and the server's
//!   message rates over the rounds;
//! - placement: the placing node (smallest id) places every app with
//!   `dwcp_mesh::placement::place` from its own member view and writes
//!   `v1.placement.T.A` records with compare-and-set, one at a time as the
//!   node does; compute time, write time, and time until every node saw all;
//! - steady state: nothing changes but heartbeats; the server's `/varz`
//!   counters before and after give msgs/s and bytes/s in and out, and
//!   `/proc` gives the CPU the server and this process used.
//!
//! Why a real connection per node: what grows with the cluster is the
//! server's fan-out (every heartbeat and every record goes to every node's
//! watch consumer, over every node's own TCP connection). Sharing one
//! connection among simulated nodes would let the client library batch
//! deliveries and hide exactly that cost. Each simulated node does what a
//! real node's link does (crates/dwcp-node/src/cluster.rs, desired.rs): one
//! NATS connection, a membership record kept by heartbeats every 500 ms,
//! and watches of `dwcp_nodes` and `dwcp_state` whose every event it
//! consumes and decodes. It does not fetch artifacts or start apps.
//!
//! Every node, the operator client and the server share this machine's
//! cores, so latencies are an upper bound of what separate machines see
//! (network delay aside).
//!
//! Run (needs the nats-server that `cargo xtask test` installs under
//! `target/tools`, or `DWCP_NATS_SERVER`):
//!
//! ```text
//! cargo run --release -p dwcp-cluster --example scale_sim -- [--nodes N] [--apps M] [--sweep]
//!     [--rounds K] [--steady-secs S]
//! ```
//!
//! It prints one JSON line per point, then a markdown table and how each
//! figure was measured.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::error::Error;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dwcp_cluster::local::LocalServer;
use dwcp_cluster::{
    Cluster, ClusterOptions, DesiredState, MemberEvent, NodeRecord, Registration, StateEvent,
    StateKey,
};
use dwcp_mesh::placement::{AppSpec, NodeView, place};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

type BoxError = Box<dyn Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

const USAGE: &str =
    "usage: scale_sim [--nodes N] [--apps M] [--sweep] [--rounds K] [--steady-secs S]";
/// The sweep's grid: each figure seen as nodes, then apps, double.
const SWEEP_NODES: [usize; 3] = [10, 20, 40];
const SWEEP_APPS: [usize; 3] = [500, 1000, 2000];
/// Puts in flight while loading apps, as a bulk import would pipeline.
const LOAD_IN_FLIGHT: usize = 32;
/// Pause between deploy rounds, so that each round meets a quiet cluster
/// (heartbeats aside).
const ROUND_GAP: Duration = Duration::from_millis(100);
/// Pause after a phase, so the next one starts without its backlog.
const SETTLE: Duration = Duration::from_secs(1);
/// Longest wait for every node to see something: past it, the run fails
/// rather than report a number it did not measure.
const WAIT_LIMIT: Duration = Duration::from_secs(120);
const REGIONS: [&str; 4] = ["eu-west", "us-east", "ap-south", "sa-east"];
/// Replicas per app for placement (apps in a cluster usually limit them).
const REPLICAS: u32 = 3;
const MIB: u64 = 1 << 20;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let Some(binary) = LocalServer::binary(&workspace) else {
        eprintln!(
            "no nats-server: set DWCP_NATS_SERVER, or run `cargo xtask test`, which installs it"
        );
        std::process::exit(2);
    };
    let grid = if args.sweep {
        sweep_grid()
    } else {
        vec![(args.nodes, args.apps)]
    };
    let started = Instant::now();
    let mut points = Vec::new();
    for (nodes, apps) in grid {
        eprintln!("-- {nodes} nodes, {apps} apps");
        let point = run_point(&binary, nodes, apps, &args)
            .await
            .map_err(|e| format!("{nodes} nodes, {apps} apps: {e}"))?;
        println!("{}", point.to_json());
        points.push(point);
    }
    print_report(&points, &args, started.elapsed());
    Ok(())
}

// ---------------------------------------------------------------- arguments

struct Args {
    nodes: usize,
    apps: usize,
    sweep: bool,
    rounds: usize,
    steady: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        nodes: 20,
        apps: 1000,
        sweep: false,
        rounds: 20,
        steady: Duration::from_secs(10),
    };
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        match arg.as_str() {
            "--sweep" => args.sweep = true,
            "--nodes" => args.nodes = number(given.next(), &arg)?,
            "--apps" => args.apps = number(given.next(), &arg)?,
            "--rounds" => args.rounds = number(given.next(), &arg)?,
            "--steady-secs" => {
                args.steady = Duration::from_secs(number(given.next(), &arg)? as u64)
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(args)
}

/// A positive whole number for `flag`.
fn number(value: Option<String>, flag: &str) -> Result<usize, String> {
    value
        .as_deref()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{flag} takes a positive number\n{USAGE}"))
}

/// Every (nodes, apps) of the grid, nodes outer: each figure can be read
/// as apps double at a node count, or nodes double at an app count.
fn sweep_grid() -> Vec<(usize, usize)> {
    let mut grid: Vec<(usize, usize)> = Vec::new();
    for nodes in SWEEP_NODES {
        for apps in SWEEP_APPS {
            grid.push((nodes, apps));
        }
    }
    grid
}

// ---------------------------------------------------------------- one point

/// Every figure of one (nodes, apps) point.
struct Point {
    nodes: usize,
    apps: usize,
    join_ms: f64,
    load: Load,
    deploy: Deploy,
    placement: Placed,
    steady: Rates,
    health: Health,
    wall_s: f64,
}

async fn run_point(binary: &Path, nodes: usize, apps: usize, args: &Args) -> Res<Point> {
    let wall = Instant::now();
    let server = start_server(binary)?;
    let operator = connect(&server.url, "dwcp-operator").await?;
    // The buckets exist before the nodes come, so that N nodes opening them
    // at once measure joining rather than a race to create them.
    let desired = DesiredState::open(&operator).await?;
    let (sim, join_ms) = start_nodes(&server.url, nodes).await?;
    eprintln!("   joined: every node sees {nodes} members after {join_ms:.0} ms");
    let load = load_apps(&desired, &sim, apps).await?;
    eprintln!("   loaded: {:.0} ms", load.converge_ms);
    tokio::time::sleep(SETTLE).await;
    let deploy = deploy_rounds(&server, &desired, &sim, args.rounds).await?;
    eprintln!("   deploy: p50 {:.1} ms", deploy.p50_ms);
    let placement = place_all(&sim, apps).await?;
    eprintln!("   placed: {:.0} ms", placement.converge_ms);
    tokio::time::sleep(SETTLE).await;
    let steady = measure(&server, args.steady).await?;
    let health = health(&sim, nodes);
    // Nodes first (their tasks hold connections), then the server and its
    // directory.
    drop(sim);
    drop(operator);
    drop(server);
    Ok(Point {
        nodes,
        apps,
        join_ms,
        load,
        deploy,
        placement,
        steady,
        health,
        wall_s: wall.elapsed().as_secs_f64(),
    })
}

/// Connects (the operator and each node alike), retrying until JetStream
/// answers: it starts just after the server's port opens.
async fn connect(url: &str, name: &str) -> Res<Cluster> {
    let options = ClusterOptions {
        url: url.into(),
        ca_pem: None,
        name: name.into(),
        replicas: 1,
        domain: None,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tried = match Cluster::connect(&options).await {
            Ok(cluster) => cluster.nodes_bucket().await.map(|_| cluster),
            Err(e) => Err(e),
        };
        match tried {
            Ok(cluster) => return Ok(cluster),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

// ---------------------------------------------------------------- the server

/// The nats-server of one point, with its monitoring endpoint.
struct Server {
    // Declared first so that it is dropped (killed) before its directory
    // is removed.
    local: Arc<LocalServer>,
    _dir: tempfile::TempDir,
    url: String,
    pid: u32,
}

fn start_server(binary: &Path) -> Res<Server> {
    let dir = tempfile::tempdir()?;
    // A random monitoring port, for `/varz`.
    let local = LocalServer::start(binary, dir.path(), "http: 127.0.0.1:-1", "nats")?;
    Ok(Server {
        url: local.url.clone(),
        pid: local.pid(),
        local: Arc::new(local),
        _dir: dir,
    })
}

/// The server's counters and both processes' CPU time at one instant.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    in_msgs: u64,
    out_msgs: u64,
    in_bytes: u64,
    out_bytes: u64,
    mem_bytes: u64,
    server_cpu_s: Option<f64>,
    sim_cpu_s: Option<f64>,
}

async fn sample(server: &Server) -> Res<Sample> {
    let local = server.local.clone();
    let varz = tokio::task::spawn_blocking(move || local.varz()).await??;
    let count = |field: &str| varz[field].as_u64().unwrap_or(0);
    Ok(Sample {
        at: Instant::now(),
        in_msgs: count("in_msgs"),
        out_msgs: count("out_msgs"),
        in_bytes: count("in_bytes"),
        out_bytes: count("out_bytes"),
        mem_bytes: count("mem"),
        server_cpu_s: cpu_seconds(&server.pid.to_string()),
        sim_cpu_s: cpu_seconds("self"),
    })
}

/// User plus system CPU seconds of a process (`self` or a pid), from
/// `/proc`; `None` where there is no `/proc`.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is the
    // first, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks())
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux when unknown).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Rates between two samples.
#[derive(Clone, Copy)]
struct Rates {
    secs: f64,
    in_msgs: f64,
    out_msgs: f64,
    in_bytes: f64,
    out_bytes: f64,
    server_cpu_pct: Option<f64>,
    sim_cpu_pct: Option<f64>,
    server_mem_mb: f64,
}

fn rates(before: &Sample, after: &Sample) -> Rates {
    let secs = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
    let per_s = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
    let cpu = |a: Option<f64>, b: Option<f64>| Some((a? - b?) / secs * 100.0);
    Rates {
        secs,
        in_msgs: per_s(after.in_msgs, before.in_msgs),
        out_msgs: per_s(after.out_msgs, before.out_msgs),
        in_bytes: per_s(after.in_bytes, before.in_bytes),
        out_bytes: per_s(after.out_bytes, before.out_bytes),
        server_cpu_pct: cpu(after.server_cpu_s, before.server_cpu_s),
        sim_cpu_pct: cpu(after.sim_cpu_s, before.sim_cpu_s),
        server_mem_mb: after.mem_bytes as f64 / MIB as f64,
    }
}

/// The server's rates over `window` with nothing changing (heartbeats only).
async fn measure(server: &Server, window: Duration) -> Res<Rates> {
    let before = sample(server).await?;
    tokio::time::sleep(window).await;
    let after = sample(server).await?;
    Ok(rates(&before, &after))
}

// ---------------------------------------------------------------- simulated nodes

/// What a node's watches have delivered so far, with when each count or
/// the revision last grew (stamped by the node itself, so the waiting side
/// adds no delay of its own).
#[derive(Clone, Copy)]
struct Progress {
    members: usize,
    members_at: Instant,
    member_events: u64,
    /// `Gone` events: a member missing its TTL under load shows here.
    gone: u64,
    apps: usize,
    apps_at: Instant,
    placements: usize,
    placements_at: Instant,
    revision: u64,
    revision_at: Instant,
    state_events: u64,
    /// Values that did not decode as JSON (should stay 0).
    bad_values: u64,
}

impl Progress {
    fn new(now: Instant) -> Progress {
        Progress {
            members: 0,
            members_at: now,
            member_events: 0,
            gone: 0,
            apps: 0,
            apps_at: now,
            placements: 0,
            placements_at: now,
            revision: 0,
            revision_at: now,
            state_events: 0,
            bad_values: 0,
        }
    }
}

type View = Arc<Mutex<BTreeMap<String, NodeRecord>>>;

/// One simulated node: its own connection, registration and watches.
struct SimNode {
    id: String,
    state: DesiredState,
    view: View,
    progress: watch::Receiver<Progress>,
    tasks: Vec<JoinHandle<()>>,
    _registration: Registration,
}

impl Drop for SimNode {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn node_id(i: usize) -> String {
    format!("node-{i:03}")
}

/// A record the size of a real node's (addresses, certificate hash,
/// capacity, labels): heartbeats carry it, so its size is in bytes/s.
fn node_record(i: usize) -> NodeRecord {
    let mut record = NodeRecord::new(&node_id(i), REGIONS[i % REGIONS.len()]);
    record.labels.insert("tier".into(), "standard".into());
    record.http = format!("10.0.{}.{}:8080", i / 250, i % 250 + 1);
    record.peer = format!("10.0.{}.{}:7443", i / 250, i % 250 + 1);
    record.peer_cert = format!("{:064x}", (i as u128 + 1) * 0x9e37_79b9_7f4a_7c15);
    // Different free memory per node, so placement has choices to make.
    record.free_memory = 8192 * MIB - (i as u64 % 17) * 256 * MIB;
    record.free_instances = 200;
    record
}

/// Starts `count` nodes at once (as a cluster's nodes boot independently)
/// and waits until each sees all; returns them and that time in ms.
async fn start_nodes(url: &str, count: usize) -> Res<(Vec<SimNode>, f64)> {
    let start = Instant::now();
    let starting: Vec<JoinHandle<Res<SimNode>>> = (0..count)
        .map(|i| tokio::spawn(start_node(url.to_string(), i)))
        .collect();
    let mut nodes = Vec::with_capacity(count);
    for node in starting {
        nodes.push(node.await??);
    }
    let last = wait_all(&nodes, |p| p.members >= count, |p| p.members_at, "join").await?;
    Ok((nodes, ms(last.duration_since(start))))
}

async fn start_node(url: String, i: usize) -> Res<SimNode> {
    let id = node_id(i);
    let cluster = connect(&url, &format!("dwcp-{id}")).await?;
    let state = DesiredState::open(&cluster).await?;
    let (progress, receiver) = watch::channel(Progress::new(Instant::now()));
    let progress = Arc::new(progress);
    let view = View::default();
    let members = cluster.watch_members().await?;
    let changes = state.watch().await?;
    let tasks = vec![
        tokio::spawn(follow_members(members, view.clone(), progress.clone())),
        tokio::spawn(follow_state(changes, progress)),
    ];
    let registration = cluster.join(node_record(i)).await?;
    Ok(SimNode {
        id,
        state,
        view,
        progress: receiver,
        tasks,
        _registration: registration,
    })
}

/// Keeps the member view as a node does (every heartbeat is an `Up`).
async fn follow_members(
    events: impl Stream<Item = MemberEvent>,
    view: View,
    progress: Arc<watch::Sender<Progress>>,
) {
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let gone = matches!(event, MemberEvent::Gone(_));
        let count = {
            let mut view = view.lock().unwrap_or_else(|e| e.into_inner());
            match event {
                MemberEvent::Up(record) => view.insert(record.node.clone(), *record).is_some(),
                MemberEvent::Gone(node) => view.remove(&node).is_some(),
            };
            view.len()
        };
        let now = Instant::now();
        // Wake waiters only when the count changes, not on each heartbeat.
        progress.send_if_modified(|p| {
            p.member_events += 1;
            p.gone += u64::from(gone);
            let grew = p.members != count;
            if grew {
                p.members = count;
                p.members_at = now;
            }
            grew || gone
        });
    }
}

/// Consumes the desired state as a node does: every value decoded, the
/// latest revision of each key kept.
async fn follow_state(
    events: impl Stream<Item = StateEvent>,
    progress: Arc<watch::Sender<Progress>>,
) {
    let mut events = std::pin::pin!(events);
    let mut seen: HashMap<StateKey, u64> = HashMap::new();
    while let Some(event) = events.next().await {
        let StateEvent::Changed {
            key,
            value,
            revision,
        } = event
        else {
            continue;
        };
        let bad = value
            .as_deref()
            .is_some_and(|v| serde_json::from_slice::<Value>(v).is_err());
        let new_key = match value {
            Some(_) => seen.insert(key.clone(), revision).is_none(),
            None => {
                seen.remove(&key);
                false
            }
        };
        let now = Instant::now();
        progress.send_modify(|p| {
            p.state_events += 1;
            p.bad_values += u64::from(bad);
            match (&key, new_key) {
                (StateKey::App { .. }, true) => {
                    p.apps += 1;
                    p.apps_at = now;
                }
                (StateKey::Placement { .. }, true) => {
                    p.placements += 1;
                    p.placements_at = now;
                }
                _ => {}
            }
            if revision > p.revision {
                p.revision = revision;
                p.revision_at = now;
            }
        });
    }
}

/// Waits until `done` holds on every node; returns the latest of the
/// nodes' own `at` stamps for it. Exact because each phase waits for all
/// nodes before the next writes anything, so no later event moves a stamp.
async fn wait_all(
    nodes: &[SimNode],
    done: impl Fn(&Progress) -> bool,
    at: impl Fn(&Progress) -> Instant,
    phase: &str,
) -> Res<Instant> {
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    let mut last: Option<Instant> = None;
    for node in nodes {
        let mut receiver = node.progress.clone();
        let progress = tokio::time::timeout_at(deadline, receiver.wait_for(|p| done(p)))
            .await
            .map_err(|_| {
                format!(
                    "{phase}: {} not there within {} s",
                    node.id,
                    WAIT_LIMIT.as_secs()
                )
            })?
            .map(|p| *p)
            .map_err(|_| format!("{phase}: {}'s watches ended", node.id))?;
        last = last.max(Some(at(&progress)));
    }
    last.ok_or_else(|| format!("{phase}: no nodes").into())
}

// ---------------------------------------------------------------- records

fn app_key(i: usize) -> StateKey {
    StateKey::App {
        tenant: format!("t{}", i % 50),
        app: format!("a{i}"),
    }
}

/// An app record shaped like the node's (`AppEntry`: schema, origin, the
/// app's record with its versions and settings), about 2 KB, `version`
/// changing with each deploy.
fn app_value(i: usize, version: usize) -> Vec<u8> {
    let versions: Vec<Value> = (1..=version.min(3))
        .map(|v| {
            json!({
                "version": format!("v{v}"),
                "sha256": format!("{:064x}", (i * 31 + v) as u128 * 0x2545_f491_4f6c_dd1d),
                "size": 1_843_200 + v * 4096,
                "deployed_at": 1_760_000_000 + v * 60,
                "signed_by": "publisher-2026-01",
                // Stands in for the signature (base64) a signed version carries.
                "signature": "A".repeat(300),
            })
        })
        .collect();
    let record = json!({
        "v": 1,
        "origin": "node-000",
        "record": {
            "tenant": format!("t{}", i % 50),
            "app": format!("a{i}"),
            "active": format!("v{}", version.min(3)),
            "versions": versions,
            "limits": {"memory_bytes": 64 * MIB, "fuel": 10_000_000_000u64, "timeout_ms": 30_000,
                       "max_instances": 64, "max_body_bytes": 10 * MIB},
            "created_at": 1_760_000_000,
            "egress": {"allow": ["api.example.com", "cdn.example.net"]},
            "config": {"LOG_LEVEL": "info", "REGION_HINT": "eu-west", "FEATURE_SET": "standard",
                       "DEPLOY_ROUND": version.to_string()},
            "release": {"strategy": "canary", "steps": [5, 25, 50, 100], "step_secs": 60},
            "placement": {"replicas": REPLICAS},
        },
    });
    let mut bytes = serde_json::to_vec(&record).unwrap_or_default();
    pad_to(&mut bytes, 2048);
    bytes
}

/// Grows a JSON object to about `size` bytes with a note field, so every
/// deploy round writes a record of the same size whatever its versions.
fn pad_to(bytes: &mut Vec<u8>, size: usize) {
    let overhead = r#","note":"""#.len() + 1;
    if bytes.len() + overhead < size && bytes.last() == Some(&b'}') {
        bytes.pop();
        let note = "x".repeat(size - bytes.len() - overhead);
        bytes.extend_from_slice(format!(r#","note":"{note}"}}"#).as_bytes());
    }
}

// ---------------------------------------------------------------- phases

struct Load {
    value_bytes: usize,
    write_ms: f64,
    converge_ms: f64,
}

/// Writes the M app records and waits until every node has them all.
async fn load_apps(desired: &DesiredState, nodes: &[SimNode], apps: usize) -> Res<Load> {
    let start = Instant::now();
    let mut puts = futures_util::stream::iter(0..apps)
        .map(|i| {
            let desired = desired.clone();
            async move { desired.put(&app_key(i), app_value(i, 1)).await }
        })
        .buffer_unordered(LOAD_IN_FLIGHT);
    while let Some(put) = puts.next().await {
        put?;
    }
    let written = Instant::now();
    let last = wait_all(nodes, |p| p.apps >= apps, |p| p.apps_at, "load").await?;
    Ok(Load {
        value_bytes: app_value(0, 1).len(),
        write_ms: ms(written.duration_since(start)),
        converge_ms: ms(last.duration_since(start)),
    })
}

struct Deploy {
    rounds: usize,
    ack_p50_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    from_put_p50_ms: f64,
    from_put_max_ms: f64,
    rates: Rates,
    /// Server messages and bytes out over the rounds.
    out_msgs: u64,
    out_bytes: u64,
}

/// Rewrites one app K times; per round, from the put's ack to the last
/// node's delivery of that revision.
async fn deploy_rounds(
    server: &Server,
    desired: &DesiredState,
    nodes: &[SimNode],
    rounds: usize,
) -> Res<Deploy> {
    let key = app_key(0);
    let mut after_ack = Vec::with_capacity(rounds);
    let mut from_put = Vec::with_capacity(rounds);
    let mut acks = Vec::with_capacity(rounds);
    let before = sample(server).await?;
    for round in 0..rounds {
        let value = app_value(0, round + 2);
        let put = Instant::now();
        let revision = desired.put(&key, value).await?;
        let ack = Instant::now();
        let last = wait_all(
            nodes,
            |p| p.revision >= revision,
            |p| p.revision_at,
            "deploy",
        )
        .await?;
        // A node may see the revision before the writer has its ack: then
        // the figure is negative, and reported so.
        after_ack.push(signed_ms(ack, last));
        from_put.push(ms(last.saturating_duration_since(put)));
        acks.push(ms(ack.duration_since(put)));
        tokio::time::sleep(ROUND_GAP).await;
    }
    let after = sample(server).await?;
    Ok(Deploy {
        rounds,
        ack_p50_ms: percentile(&mut acks, 50.0),
        p50_ms: percentile(&mut after_ack, 50.0),
        p99_ms: percentile(&mut after_ack, 99.0),
        max_ms: percentile(&mut after_ack, 100.0),
        from_put_p50_ms: percentile(&mut from_put, 50.0),
        from_put_max_ms: percentile(&mut from_put, 100.0),
        rates: rates(&before, &after),
        out_msgs: after.out_msgs.saturating_sub(before.out_msgs),
        out_bytes: after.out_bytes.saturating_sub(before.out_bytes),
    })
}

struct Placed {
    record_bytes: usize,
    compute_ms: f64,
    write_ms: f64,
    converge_ms: f64,
    /// Distinct nodes holding at least one replica.
    nodes_used: usize,
}

/// The placing node's pass: every app placed from its member view, each
/// decision written with compare-and-set (create: none was placed yet).
async fn place_all(nodes: &[SimNode], apps: usize) -> Res<Placed> {
    // The live member with the smallest id places, as on real nodes.
    let leader = nodes
        .iter()
        .min_by(|a, b| a.id.cmp(&b.id))
        .ok_or("no nodes")?;
    let start = Instant::now();
    let views = node_views(&leader.view);
    let decisions: Vec<(StateKey, Vec<u8>, Vec<String>)> = (0..apps)
        .map(|i| decide(i, &views, &leader.id))
        .collect::<Res<_>>()?;
    let computed = Instant::now();
    for (key, bytes, _) in &decisions {
        if leader.state.put_if(key, bytes.clone(), 0).await?.is_none() {
            return Err(format!("{}: another writer placed it first", key.to_key()).into());
        }
    }
    let written = Instant::now();
    let last = wait_all(
        nodes,
        |p| p.placements >= apps,
        |p| p.placements_at,
        "placement",
    )
    .await?;
    let used: HashSet<&String> = decisions.iter().flat_map(|(_, _, n)| n).collect();
    Ok(Placed {
        record_bytes: decisions.first().map_or(0, |(_, b, _)| b.len()),
        compute_ms: ms(computed.duration_since(start)),
        write_ms: ms(written.duration_since(computed)),
        converge_ms: ms(last.duration_since(start)),
        nodes_used: used.len(),
    })
}

/// The members as placement sees them (all active in this simulation).
fn node_views(view: &View) -> Vec<NodeView> {
    let view = view.lock().unwrap_or_else(|e| e.into_inner());
    view.values()
        .map(|r| NodeView {
            id: r.node.clone(),
            region: r.region.clone(),
            schedulable: true,
            keeps_work: true,
            free_memory: r.free_memory,
            free_instances: r.free_instances,
        })
        .collect()
}

/// One app's placement record as the node writes it (`PlacementEntry`).
fn decide(i: usize, views: &[NodeView], leader: &str) -> Res<(StateKey, Vec<u8>, Vec<String>)> {
    let spec = AppSpec {
        replicas: REPLICAS,
        pin_regions: Vec::new(),
        memory_bytes: 64 * MIB,
    };
    let decided = place(&spec, views, &[]);
    let StateKey::App { tenant, app } = app_key(i) else {
        return Err("app_key names an app".into());
    };
    let record = json!({
        "v": 1,
        "nodes": decided.nodes,
        "reasons": decided.reasons,
        "decided_by": leader,
        "decided_at": SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
    });
    Ok((
        StateKey::Placement { tenant, app },
        serde_json::to_vec(&record)?,
        decided.nodes,
    ))
}

/// Whether the cluster stayed whole: a member expiring, a node's view
/// short of N, or an undecodable value would make the figures suspect.
struct Health {
    gone_events: u64,
    min_members: usize,
    bad_values: u64,
    member_events: u64,
    state_events: u64,
}

fn health(nodes: &[SimNode], count: usize) -> Health {
    let all: Vec<Progress> = nodes.iter().map(|n| *n.progress.borrow()).collect();
    Health {
        gone_events: all.iter().map(|p| p.gone).sum(),
        min_members: all.iter().map(|p| p.members).min().unwrap_or(count),
        bad_values: all.iter().map(|p| p.bad_values).sum(),
        member_events: all.iter().map(|p| p.member_events).sum(),
        state_events: all.iter().map(|p| p.state_events).sum(),
    }
}

// ---------------------------------------------------------------- numbers

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `to - from` in ms, negative when `to` came first.
fn signed_ms(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(d) => ms(d),
        None => -ms(from.duration_since(to)),
    }
}

/// Nearest-rank percentile (with 20 samples, p99 is the largest).
fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn pct(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |x| format!("{x:.0}"))
}

impl Point {
    fn to_json(&self) -> Value {
        let rates = |r: &Rates| {
            json!({
                "secs": round1(r.secs),
                "in_msgs_per_s": round1(r.in_msgs),
                "out_msgs_per_s": round1(r.out_msgs),
                "in_bytes_per_s": r.in_bytes.round(),
                "out_bytes_per_s": r.out_bytes.round(),
                "server_cpu_pct": r.server_cpu_pct.map(round1),
                "sim_cpu_pct": r.sim_cpu_pct.map(round1),
                "server_mem_mb": round1(r.server_mem_mb),
            })
        };
        json!({
            "nodes": self.nodes,
            "apps": self.apps,
            "join_all_see_all_ms": round1(self.join_ms),
            "load": {
                "value_bytes": self.load.value_bytes,
                "in_flight": LOAD_IN_FLIGHT,
                "last_ack_ms": round1(self.load.write_ms),
                "all_nodes_have_all_ms": round1(self.load.converge_ms),
            },
            "deploy": {
                "rounds": self.deploy.rounds,
                "put_ack_p50_ms": round1(self.deploy.ack_p50_ms),
                "ack_to_last_node_p50_ms": round1(self.deploy.p50_ms),
                "ack_to_last_node_p99_ms": round1(self.deploy.p99_ms),
                "ack_to_last_node_max_ms": round1(self.deploy.max_ms),
                "put_to_last_node_p50_ms": round1(self.deploy.from_put_p50_ms),
                "put_to_last_node_max_ms": round1(self.deploy.from_put_max_ms),
                "server": rates(&self.deploy.rates),
                // What one deploy costs the server beyond heartbeats: the
                // rounds' traffic less the steady rate over as long.
                "out_msgs_per_round_above_heartbeats": round1(self.deploy_excess(self.deploy.out_msgs, self.steady.out_msgs)),
                "out_bytes_per_round_above_heartbeats": self.deploy_excess(self.deploy.out_bytes, self.steady.out_bytes).round(),
            },
            "placement": {
                "record_bytes": self.placement.record_bytes,
                "replicas": REPLICAS,
                "compute_ms": round1(self.placement.compute_ms),
                "write_ms": round1(self.placement.write_ms),
                "all_nodes_have_all_ms": round1(self.placement.converge_ms),
                "distinct_nodes_used": self.placement.nodes_used,
            },
            "steady": rates(&self.steady),
            "health": {
                "member_gone_events": self.health.gone_events,
                "min_members_seen_at_end": self.health.min_members,
                "undecodable_values": self.health.bad_values,
                "member_events_consumed": self.health.member_events,
                "state_events_consumed": self.health.state_events,
            },
            "point_wall_s": round1(self.wall_s),
        })
    }

    fn deploy_excess(&self, total: u64, steady_per_s: f64) -> f64 {
        let baseline = steady_per_s * self.deploy.rates.secs;
        (total as f64 - baseline) / self.deploy.rounds.max(1) as f64
    }

    fn row(&self) -> String {
        let (d, p, s, w) = (
            &self.deploy,
            &self.placement,
            &self.steady,
            &self.deploy.rates,
        );
        format!(
            "| {} | {} | {:.0} | {:.0} / {:.0} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} | {:.0} / {:.0} | {:.0} / {:.0} | {} / {} | {:.0} | {} |",
            self.nodes,
            self.apps,
            self.join_ms,
            self.load.write_ms,
            self.load.converge_ms,
            d.p50_ms,
            d.p99_ms,
            d.max_ms,
            d.from_put_p50_ms,
            d.from_put_max_ms,
            p.compute_ms,
            p.write_ms,
            p.converge_ms,
            s.in_msgs,
            s.out_msgs,
            s.in_bytes / 1024.0,
            s.out_bytes / 1024.0,
            w.in_msgs,
            w.out_msgs,
            pct(s.server_cpu_pct),
            pct(s.sim_cpu_pct),
            s.server_mem_mb,
            self.health.gone_events,
        )
    }
}

fn print_report(points: &[Point], args: &Args, wall: Duration) {
    println!();
    println!(
        "| nodes | apps | join: all see all (ms) | load: last ack / all nodes have all (ms) | deploy: ack → last node p50 / p99 / max (ms) | deploy: put → last node p50 / max (ms) | placement: compute / written / all nodes have all (ms) | steady msgs/s in / out | steady KiB/s in / out | deploy-window msgs/s in / out | steady CPU % server / nodes | server RSS (MiB) | member Gone events |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for point in points {
        println!("{}", point.row());
    }
    println!();
    println!(
        "How measured (all on one machine, {} cores shared by the nats-server, the operator client and every simulated node: latencies are an upper bound):",
        cores()
    );
    println!(
        "- each point: a fresh nats-server with JetStream in a temporary directory; each simulated node has its own NATS connection, joins with a heartbeat every 500 ms (2 s TTL), and watches dwcp_nodes and dwcp_state, decoding every value;"
    );
    println!(
        "- join: first connect → the last node's view holds all N members (stamped by that node when its view grew);"
    );
    println!(
        "- load: M app records of {} bytes from one client, {LOAD_IN_FLIGHT} puts in flight; last ack, and the last node's delivery of its M-th app, both from the first put;",
        points.first().map_or(0, |p| p.load.value_bytes)
    );
    println!(
        "- deploy: {} rounds of rewriting one app record, {} ms apart; per round the put's ack (and, apart, the put's start) → the latest delivery of that revision among the N nodes; negative: every node had it before the writer had its ack; p99 is nearest-rank, so with fewer than 100 rounds it is the max; the msgs/s are /varz over all rounds, heartbeats included;",
        args.rounds,
        ROUND_GAP.as_millis()
    );
    println!(
        "- placement: node-000 (smallest id) places every app ({REPLICAS} replicas, 64 MiB) with dwcp_mesh::placement::place from its member view, then writes the records one by one with compare-and-set; compute, then writes, then the last node's delivery of its M-th placement, from the start of the pass;"
    );
    println!(
        "- steady: /varz in_msgs, out_msgs, in_bytes, out_bytes over {} s with nothing changing but heartbeats; CPU from /proc (100 % = one core); RSS is the server's /varz mem;",
        args.steady.as_secs()
    );
    println!(
        "- member Gone events: nodes seen to expire during the run (0 means no heartbeat was late past its TTL)."
    );
    println!();
    println!(
        "wall time: {:.1} s for {} point(s)",
        wall.as_secs_f64(),
        points.len()
    );
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
