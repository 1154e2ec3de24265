//! Which path should carry a request that one node forwards to another:
//! direct HTTP/2 between the nodes, or NATS request/reply through the
//! cluster's NATS server? This measures both, on loopback, in one run,
//! with the same payloads and the same client pattern.
//!
//! Why these two: the nodes already hold both. Every node has a NATS
//! connection (the control plane), so request/reply over it would need no
//! extra listener, no peer certificates and no connection per peer; the
//! peer link (`dwcp-node/src/peer.rs`) is what nodes use today. The figures
//! decide whether the extra link pays for itself.
//!
//! The paths, each with one connection per side, set up as nodes do:
//!
//! - `h2+tls`: HTTP/2 on TLS 1.3, `X25519MLKEM768` only, certificates
//!   pinned both ways (`dwcp_crypto::peer_tls`), initial stream window
//!   4 MiB, connection window 16 MiB; one connection carries every request.
//! - `nats`: a real nats-server (the one `cargo xtask test` installs), a
//!   responder client subscribed to `rtt.bench.*` and a requester calling
//!   `client.request`; plaintext, as tests connect.
//! - `nats+tls`: the same through a server with a TLS block
//!   (`handshake_first`, TLS 1.3, `X25519MLKEM768` only), both clients
//!   connected by `dwcp_cluster::Cluster::connect` as a node is: the
//!   like-for-like comparison with `h2+tls`.
//!
//! The answering side (HTTP/2 server, NATS responder) runs on a thread of
//! its own with a single-threaded runtime, as the node's peer listener
//! does; the requesting side runs on the main thread, likewise. The
//! response size is named in the request (URL path, subject's last token),
//! the answer is a slice of one preallocated buffer, and the requester
//! reads the whole answer and checks its length.
//!
//! Payloads (request → response): 200 B → 1 KiB (a small API call),
//! 1 KiB → 64 KiB, 1 KiB → 1 MiB (exactly NATS's default `max_payload`).
//! Patterns: sequential (1 in flight), 500 warm-up then 5,000 round trips
//! (capped at 8 s, the table says how many ran), p50/p90/p99/max in µs;
//! and 16 in flight for 3 s: requests/s and p99. The paths take turns
//! within each shape (10 blocks of 500 round trips, 3 spans of 1 s), so a
//! burst of load from elsewhere on the machine hits all of them alike.
//! Then the hard limits are probed: a NATS answer or request of
//! `max_payload` + 1 byte, and a 16 MiB answer over HTTP/2; and each
//! nats-server's `/varz` says whether it met slow consumers.
//!
//! Everything (client, server, nats-server, and whatever else runs) shares
//! this machine's cores, so the figures are relative, not what separate
//! machines would see; NATS pays an extra process hop that a second
//! machine would turn into an extra network hop.
//!
//! Run (needs the nats-server under `target/tools`, or `DWCP_NATS_SERVER`):
//!
//! ```text
//! cargo run --release -p dwcp-cluster --example transport_rtt
//! ```
//!
//! It prints a markdown table, one JSON line with every figure, and a
//! conclusion drawn from the figures.

use std::convert::Infallible;
use std::error::Error;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dwcp_cluster::local::LocalServer;
use dwcp_cluster::{Cluster, ClusterOptions};
use dwcp_crypto::peer_tls::PeerIdentity;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

type BoxError = Box<dyn Error + Send + Sync>;
type Result<T> = std::result::Result<T, BoxError>;

const COMMAND: &str = "cargo run --release -p dwcp-cluster --example transport_rtt";
const WARMUP: usize = 500;
const ROUNDS: usize = 5_000;
/// Keeps a slow cell (1 MiB answers) from eating the run's time budget.
const SEQUENTIAL_CAP: Duration = Duration::from_secs(8);
/// The sequential phase runs in this many blocks, paths taking turns.
const SLICES: usize = 10;
const IN_FLIGHT: usize = 16;
const CONCURRENT_FOR: Duration = Duration::from_secs(3);
/// The concurrent phase runs in this many spans, paths taking turns.
const SLICES_CONCURRENT: usize = 3;
/// Monitoring on a free port, for `/varz`.
const MONITOR: &str = "http: 127.0.0.1:-1";
const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
/// The HTTP/2 streaming probe's answer: far past NATS's limit.
const STREAM_PROBE: usize = 16 * MIB;
/// Responses are slices of a buffer this long.
const BUFFER: usize = STREAM_PROBE;
/// The NATS subject prefix; the last token is the response size.
const SUBJECT: &str = "rtt.bench";
/// How long a probe that may never be answered waits.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One payload shape: request and response bodies, in bytes.
struct Case {
    name: &'static str,
    request: usize,
    response: usize,
}

const CASES: [Case; 3] = [
    Case {
        name: "200 B → 1 KiB",
        request: 200,
        response: KIB,
    },
    Case {
        name: "1 KiB → 64 KiB",
        request: KIB,
        response: 64 * KIB,
    },
    Case {
        name: "1 KiB → 1 MiB",
        request: KIB,
        response: MIB,
    },
];

/// A requester's end of one path. Cloning shares the connection, as
/// concurrent requests on a node share its one link to a peer.
#[derive(Clone)]
enum Transport {
    H2(SendRequest<Full<Bytes>>),
    Nats(async_nats::Client),
}

impl Transport {
    /// One round trip: sends `payload`, asks for `response` bytes back,
    /// and reads them all.
    async fn round_trip(&mut self, payload: Bytes, response: usize) -> Result<()> {
        let got = match self {
            Transport::H2(sender) => {
                let request = hyper::Request::builder()
                    .method(hyper::Method::POST)
                    .uri(format!("https://dwcp-peer/{response}"))
                    .version(hyper::Version::HTTP_2)
                    .body(Full::new(payload))?;
                let answer = sender.send_request(request).await?;
                if !answer.status().is_success() {
                    return Err(format!("HTTP/2 answer {}", answer.status()).into());
                }
                answer.into_body().collect().await?.to_bytes().len()
            }
            Transport::Nats(client) => {
                let subject = format!("{SUBJECT}.{response}");
                client.request(subject, payload).await?.payload.len()
            }
        };
        if got != response {
            return Err(format!("asked for {response} bytes, got {got}").into());
        }
        Ok(())
    }
}

/// Latency figures of one cell, in microseconds.
struct Stats {
    n: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    per_second: f64,
}

impl Stats {
    fn new(mut samples: Vec<Duration>, elapsed: Duration) -> Stats {
        samples.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        // Nearest rank: the smallest sample with at least p of them at or below.
        let rank = |p: f64| {
            let i = ((p * samples.len() as f64).ceil() as usize).max(1) - 1;
            samples.get(i).map_or(f64::NAN, |d| us(*d))
        };
        Stats {
            n: samples.len(),
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: samples.last().map_or(f64::NAN, |d| us(*d)),
            per_second: samples.len() as f64 / elapsed.as_secs_f64(),
        }
    }
}

/// One row of the table.
struct Row {
    path: &'static str,
    case: &'static Case,
    pattern: &'static str,
    stats: std::result::Result<Stats, String>,
}

/// Samples of one (path, shape, pattern) cell, gathered over several
/// slices; the first error ends the cell.
#[derive(Default)]
struct Cell {
    samples: Vec<Duration>,
    elapsed: Duration,
    error: Option<String>,
}

impl Cell {
    fn add(&mut self, slice: Result<(Vec<Duration>, Duration)>) {
        match slice {
            Ok((samples, elapsed)) => {
                self.samples.extend(samples);
                self.elapsed += elapsed;
            }
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    fn stats(self) -> std::result::Result<Stats, String> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(Stats::new(self.samples, self.elapsed)),
        }
    }
}

/// `rounds` timed round trips one after another (1 in flight).
async fn sequential(
    transport: &mut Transport,
    case: &Case,
    rounds: usize,
) -> Result<(Vec<Duration>, Duration)> {
    let payload = Bytes::from(vec![0x5a; case.request]);
    let mut samples = Vec::with_capacity(rounds);
    let started = Instant::now();
    for _ in 0..rounds {
        let sent = Instant::now();
        transport.round_trip(payload.clone(), case.response).await?;
        samples.push(sent.elapsed());
    }
    Ok((samples, started.elapsed()))
}

/// `IN_FLIGHT` requesters on one shared connection for `span`.
async fn concurrent(
    transport: &Transport,
    case: &Case,
    span: Duration,
) -> Result<(Vec<Duration>, Duration)> {
    let payload = Bytes::from(vec![0x5a; case.request]);
    let response = case.response;
    let started = Instant::now();
    let deadline = started + span;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let mut transport = transport.clone();
        let payload = payload.clone();
        tasks.spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                transport.round_trip(payload.clone(), response).await?;
                samples.push(sent.elapsed());
            }
            Ok::<_, BoxError>(samples)
        });
    }
    let mut samples = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        samples.extend(joined??);
    }
    // Until the last answer came: requests started before the deadline count.
    Ok((samples, started.elapsed()))
}

/// A single-threaded runtime, as every runtime of a node is.
fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The peer listener, on its own thread: TLS that admits only `client`'s
/// certificate, then HTTP/2 with the node's windows.
fn spawn_h2_server(server: PeerIdentity, client: &str, body: Bytes) -> Result<SocketAddr> {
    let member = client.to_string();
    let config = server.server_config(Arc::new(move |fingerprint| fingerprint == member))?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let rt = runtime()?;
    std::thread::Builder::new()
        .name("h2-server".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return eprintln!("h2 server: {e}"),
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                while let Ok((stream, _)) = listener.accept().await {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_h2(acceptor.clone(), stream, body.clone()));
                }
            });
        })?;
    Ok(addr)
}

async fn serve_h2(acceptor: tokio_rustls::TlsAcceptor, stream: tokio::net::TcpStream, body: Bytes) {
    let tls = match acceptor.accept(stream).await {
        Ok(tls) => tls,
        Err(e) => return eprintln!("h2 server: TLS refused: {e}"),
    };
    let service = hyper::service::service_fn(move |request| {
        let body = body.clone();
        async move { Ok::<_, Infallible>(answer_h2(request, &body).await) }
    });
    let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .serve_connection(TokioIo::new(tls), service)
        .await;
    if let Err(e) = served {
        eprintln!("h2 server: connection ended: {e}");
    }
}

/// Reads the request whole (as the serving app would), then answers with
/// as many bytes as its path names.
async fn answer_h2(
    request: hyper::Request<Incoming>,
    body: &Bytes,
) -> hyper::Response<Full<Bytes>> {
    let size = response_size(request.uri().path().trim_start_matches('/'), body.len());
    let read = request.into_body().collect().await;
    match (size, read) {
        (Some(n), Ok(_)) => hyper::Response::new(Full::new(body.slice(..n))),
        _ => {
            let mut bad = hyper::Response::new(Full::new(Bytes::new()));
            *bad.status_mut() = hyper::StatusCode::BAD_REQUEST;
            bad
        }
    }
}

/// The response size a request names, if it is one the buffer holds.
fn response_size(text: &str, limit: usize) -> Option<usize> {
    text.parse::<usize>().ok().filter(|n| *n <= limit)
}

/// The requester's end of the peer link, as `Forwarder::link` makes it.
async fn connect_h2(
    addr: SocketAddr,
    client: PeerIdentity,
    server: &str,
) -> Result<(SendRequest<Full<Bytes>>, String)> {
    let config = client.client_config(server)?;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("dwcp-peer")?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    // What was negotiated, so the report shows it is the post-quantum link.
    let session = tls.get_ref().1;
    let negotiated = format!(
        "{:?}, {:?}",
        session.protocol_version(),
        session.negotiated_key_exchange_group().map(|g| g.name())
    );
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .handshake(TokioIo::new(tls))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("h2 client: connection ended: {e}");
        }
    });
    Ok((sender, negotiated))
}

/// A node's connection to NATS; retried briefly, as the server may still
/// be starting after its port file appears.
async fn connect_nats(options: &ClusterOptions) -> Result<async_nats::Client> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Cluster::connect(options).await {
            Ok(cluster) => return Ok(cluster.client),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn nats_options(url: &str, ca_pem: Option<&str>, name: &str) -> ClusterOptions {
    ClusterOptions {
        url: url.into(),
        ca_pem: ca_pem.map(|p| p.as_bytes().to_vec()),
        name: name.into(),
        replicas: 1,
        domain: None,
    }
}

/// The responder, on its own thread (it stands for the serving node):
/// answers each request with as many bytes as the subject names. Errors
/// in answering (such as an answer over `max_payload`) go to `failures`.
fn spawn_responder(
    options: ClusterOptions,
    body: Bytes,
    failures: Arc<Mutex<Vec<String>>>,
) -> Result<()> {
    let (ready, is_ready) = std::sync::mpsc::channel::<std::result::Result<(), String>>();
    let rt = runtime()?;
    std::thread::Builder::new()
        .name("nats-responder".into())
        .spawn(move || {
            rt.block_on(async move {
                let subscribed = async {
                    let client = connect_nats(&options).await?;
                    let subscription = client.subscribe(format!("{SUBJECT}.*")).await?;
                    // The server has the subscription before any request.
                    client.flush().await?;
                    Ok::<_, BoxError>((client, subscription))
                }
                .await;
                let (client, mut subscription) = match subscribed {
                    Ok(s) => s,
                    Err(e) => return drop(ready.send(Err(e.to_string()))),
                };
                let _ = ready.send(Ok(()));
                while let Some(message) = subscription.next().await {
                    if let Err(e) = answer_nats(&client, message, &body).await {
                        failures
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(e.to_string());
                    }
                }
            });
        })?;
    is_ready.recv_timeout(Duration::from_secs(15))??;
    Ok(())
}

async fn answer_nats(
    client: &async_nats::Client,
    message: async_nats::Message,
    body: &Bytes,
) -> Result<()> {
    let token = message.subject.rsplit('.').next().unwrap_or_default();
    let size = response_size(token, body.len()).ok_or("no response size in the subject")?;
    let reply = message.reply.ok_or("a request without a reply subject")?;
    client.publish(reply, body.slice(..size)).await?;
    Ok(())
}

/// A nats-server with a TLS block as a cluster's servers have: TLS first,
/// 1.3 only, `X25519MLKEM768` only; its certificate (PEM) is the CA.
fn start_tls_server(binary: &Path, dir: &Path) -> Result<(LocalServer, String)> {
    let (cert, key) = dwcp_crypto::tls::self_signed(&["127.0.0.1", "localhost"])?;
    std::fs::write(dir.join("cert.pem"), &cert)?;
    std::fs::write(dir.join("key.pem"), &key)?;
    let block = format!(
        "tls {{\n cert_file: \"{}\"\n key_file: \"{}\"\n handshake_first: true\n min_version: \"1.3\"\n curve_preferences: [\"X25519MLKEM768\"]\n}}\n{MONITOR}",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    );
    Ok((LocalServer::start(binary, dir, &block, "tls")?, cert))
}

/// What happens at and past the hard limits of each path.
async fn probe_limits(paths: &mut [(&'static str, Transport)]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (name, transport) in paths.iter_mut() {
        match transport {
            Transport::Nats(client) => {
                let limit = client.server_info().max_payload;
                found.push((format!("{name}: server max_payload"), format!("{limit} B")));
                let over = limit + 1;
                let answer = probe(transport, KIB, over).await;
                found.push((format!("{name}: answer of {over} B"), answer));
                let request = probe(transport, over, KIB).await;
                found.push((format!("{name}: request of {over} B"), request));
            }
            Transport::H2(_) => {
                let answer = probe(transport, KIB, STREAM_PROBE).await;
                found.push((format!("{name}: answer of {STREAM_PROBE} B"), answer));
            }
        }
    }
    found
}

/// One round trip with a deadline: "ok in …" or what went wrong.
async fn probe(transport: &mut Transport, request: usize, response: usize) -> String {
    let payload = Bytes::from(vec![0x5a; request]);
    let started = Instant::now();
    match tokio::time::timeout(PROBE_TIMEOUT, transport.round_trip(payload, response)).await {
        Ok(Ok(())) => format!("ok in {:.1} ms", started.elapsed().as_secs_f64() * 1e3),
        Ok(Err(e)) => format!("failed: {e}"),
        Err(_) => format!("no answer within {PROBE_TIMEOUT:?}"),
    }
}

fn fmt_us(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{v:.0}")
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "| path | request → response | pattern | n | p50 µs | p90 µs | p99 µs | max µs | req/s |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        match &row.stats {
            Ok(s) => println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |",
                row.path,
                row.case.name,
                row.pattern,
                s.n,
                fmt_us(s.p50),
                fmt_us(s.p90),
                fmt_us(s.p99),
                fmt_us(s.max),
                s.per_second
            ),
            Err(e) => println!(
                "| {} | {} | {} | failed: {e} | | | | | |",
                row.path, row.case.name, row.pattern
            ),
        }
    }
}

fn json_line(
    rows: &[Row],
    limits: &[(String, String)],
    notes: &[String],
    wall: Duration,
) -> serde_json::Value {
    let results: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let mut v = json!({
                "path": row.path,
                "request_bytes": row.case.request,
                "response_bytes": row.case.response,
                "pattern": row.pattern,
            });
            match &row.stats {
                Ok(s) => {
                    v["n"] = json!(s.n);
                    v["p50_us"] = json!(s.p50.round());
                    v["p90_us"] = json!(s.p90.round());
                    v["p99_us"] = json!(s.p99.round());
                    v["max_us"] = json!(s.max.round());
                    v["req_per_s"] = json!(s.per_second.round());
                }
                Err(e) => v["error"] = json!(e),
            }
            v
        })
        .collect();
    let limits: serde_json::Map<String, serde_json::Value> =
        limits.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    json!({
        "bench": "transport_rtt",
        "command": COMMAND,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "warmup": WARMUP,
        "rounds": ROUNDS,
        "in_flight": IN_FLIGHT,
        "concurrent_secs": CONCURRENT_FOR.as_secs_f64(),
        "results": results,
        "limits": limits,
        "notes": notes,
        "wall_secs": (wall.as_secs_f64() * 10.0).round() / 10.0,
    })
}

fn find<'a>(rows: &'a [Row], path: &str, case: &str, pattern: &str) -> Option<&'a Stats> {
    rows.iter()
        .find(|r| r.path == path && r.case.name == case && r.pattern == pattern)
        .and_then(|r| r.stats.as_ref().ok())
}

/// "h2+tls 2.1× lower" style comparison of two figures (lower is better
/// unless `higher_better`).
/// Within 10 % is called even: runs on a shared machine vary more.
fn versus(h2: f64, other: f64, higher_better: bool) -> String {
    match winner(h2, other, higher_better) {
        Some((path, ratio)) => format!("{path} by {ratio:.1}×"),
        None => "even, within 10 %".into(),
    }
}

/// Which path is better and by what factor; `None` when within 10 %.
fn winner(h2: f64, other: f64, higher_better: bool) -> Option<(&'static str, f64)> {
    let h2_better = if higher_better {
        h2 >= other
    } else {
        h2 <= other
    };
    let ratio = h2.max(other) / h2.min(other);
    if !ratio.is_finite() || ratio < 1.1 {
        return None;
    }
    Some((if h2_better { "h2+tls" } else { "NATS" }, ratio))
}

/// How often each path won, over every (shape, NATS variant) pair.
fn tally(rows: &[Row]) -> String {
    let mut counts = [[0usize; 3]; 3];
    type Figure = fn(&Stats) -> f64;
    let figures: [(&str, Figure, bool); 3] = [
        ("seq", |s| s.p50, false),
        ("seq", |s| s.p99, false),
        ("c16", |s| s.per_second, true),
    ];
    for case in &CASES {
        for nats in ["nats+tls", "nats"] {
            for (i, (pattern, figure, higher)) in figures.iter().enumerate() {
                let (Some(h), Some(n)) = (
                    find(rows, "h2+tls", case.name, pattern),
                    find(rows, nats, case.name, pattern),
                ) else {
                    continue;
                };
                let slot = match winner(figure(h), figure(n), *higher) {
                    Some(("h2+tls", _)) => 0,
                    Some(_) => 1,
                    None => 2,
                };
                counts[i][slot] += 1;
            }
        }
    }
    let say = |c: [usize; 3]| format!("h2+tls {}, NATS {}, even {}", c[0], c[1], c[2]);
    format!(
        "Over the 3 shapes × 2 NATS variants, better 1-in-flight p50: {}; better 1-in-flight p99: {}; more 16-in-flight throughput: {}.",
        say(counts[0]),
        say(counts[1]),
        say(counts[2])
    )
}

/// The conclusion, from the figures only.
fn conclude(rows: &[Row], limits: &[(String, String)]) -> Vec<String> {
    let mut lines = Vec::new();
    for case in &CASES {
        let h2_seq = find(rows, "h2+tls", case.name, "seq");
        let h2_c = find(rows, "h2+tls", case.name, "c16");
        for nats in ["nats+tls", "nats"] {
            match (h2_seq, find(rows, nats, case.name, "seq")) {
                (Some(h), Some(n)) => lines.push(format!(
                    "{}, 1 in flight, h2+tls vs {nats}: p50 {} vs {} µs ({}), p99 {} vs {} µs ({}).",
                    case.name,
                    fmt_us(h.p50),
                    fmt_us(n.p50),
                    versus(h.p50, n.p50, false),
                    fmt_us(h.p99),
                    fmt_us(n.p99),
                    versus(h.p99, n.p99, false),
                )),
                _ => lines.push(format!(
                    "{}, 1 in flight, h2+tls vs {nats}: no comparison (a path failed).",
                    case.name
                )),
            }
            match (h2_c, find(rows, nats, case.name, "c16")) {
                (Some(h), Some(n)) => lines.push(format!(
                    "{}, 16 in flight, h2+tls vs {nats}: {:.0} vs {:.0} req/s (more throughput: {}), p99 {} vs {} µs ({}).",
                    case.name,
                    h.per_second,
                    n.per_second,
                    versus(h.per_second, n.per_second, true),
                    fmt_us(h.p99),
                    fmt_us(n.p99),
                    versus(h.p99, n.p99, false),
                )),
                _ => lines.push(format!(
                    "{}, 16 in flight, h2+tls vs {nats}: no comparison (a path failed).",
                    case.name
                )),
            }
        }
    }
    lines.push(tally(rows));
    for (what, outcome) in limits {
        lines.push(format!("Limit: {what}: {outcome}."));
    }
    lines.push(
        "NATS carries each message whole (client and server buffer all of it, up to max_payload); HTTP/2 streams a body in flow-controlled frames of any length.".into(),
    );
    lines
}

fn main() {
    if let Err(e) = run() {
        eprintln!("transport_rtt: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let wall = Instant::now();
    dwcp_crypto::tls::install_default_provider();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let binary = LocalServer::binary(&workspace).ok_or(
        "no nats-server: set DWCP_NATS_SERVER, or run `cargo xtask test`, which installs it",
    )?;
    let body = Bytes::from(vec![0xa5; BUFFER]);
    let mut notes = Vec::new();

    // (a) the peer link.
    let server = PeerIdentity::generate()?;
    let client = PeerIdentity::generate()?;
    let server_fp = server.fingerprint.clone();
    let addr = spawn_h2_server(server, &client.fingerprint, body.clone())?;

    // (b) NATS, plaintext and TLS, each with its responder.
    let plain_dir = tempfile::tempdir()?;
    let plain = LocalServer::start(&binary, plain_dir.path(), MONITOR, "nats")?;
    let tls_dir = tempfile::tempdir()?;
    let tls = start_tls_server(&binary, tls_dir.path());
    let failures = Arc::new(Mutex::new(Vec::new()));
    spawn_responder(
        nats_options(&plain.url, None, "rtt-responder"),
        body.clone(),
        failures.clone(),
    )?;
    let tls = match tls {
        Ok((server, ca)) => {
            let options = nats_options(&server.url, Some(&ca), "rtt-responder-tls");
            match spawn_responder(options, body.clone(), failures.clone()) {
                Ok(()) => Some((server, ca)),
                Err(e) => {
                    notes.push(format!("nats+tls skipped: responder: {e}"));
                    None
                }
            }
        }
        Err(e) => {
            notes.push(format!("nats+tls skipped: server: {e}"));
            None
        }
    };

    let rt = runtime()?;
    let (rows, limits) = rt.block_on(async {
        let (sender, negotiated) = connect_h2(addr, client, &server_fp).await?;
        notes.push(format!("h2+tls negotiated {negotiated}"));
        let mut paths: Vec<(&'static str, Transport)> = vec![("h2+tls", Transport::H2(sender))];
        let requester = connect_nats(&nats_options(&plain.url, None, "rtt-requester")).await?;
        paths.push(("nats", Transport::Nats(requester)));
        if let Some((server, ca)) = &tls {
            let options = nats_options(&server.url, Some(ca), "rtt-requester-tls");
            match connect_nats(&options).await {
                Ok(requester) => paths.push(("nats+tls", Transport::Nats(requester))),
                Err(e) => notes.push(format!("nats+tls skipped: requester: {e}")),
            }
        }
        let rows = measure(&mut paths).await;
        let limits = probe_limits(&mut paths).await;
        Ok::<_, BoxError>((rows, limits))
    })?;
    let answered: Vec<String> = failures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
        .collect();
    for failure in answered {
        notes.push(format!("NATS responder could not answer: {failure}"));
    }
    // Read before the servers stop, to explain any long NATS tail.
    let mut servers = vec![("nats", &plain)];
    if let Some((server, _)) = &tls {
        servers.push(("nats+tls", server));
    }
    for (name, server) in servers {
        match slow_consumers(server) {
            Ok(count) => notes.push(format!("{name}: server's /varz slow_consumers = {count}")),
            Err(e) => notes.push(format!("{name}: /varz unreadable: {e}")),
        }
    }
    let wall = wall.elapsed();

    println!("## transport_rtt: forwarding a request, HTTP/2 peer link vs NATS request/reply\n");
    println!("command: `{COMMAND}`\n");
    println!(
        "loopback, {} cores shared by requester, responder and nats-server (and anything else running); seq = 1 in flight, {WARMUP} warm-up then up to {ROUNDS} round trips (at most {SEQUENTIAL_CAP:?}); c16 = {IN_FLIGHT} in flight for {CONCURRENT_FOR:?}; percentiles by nearest rank\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    print_table(&rows);
    println!();
    for note in &notes {
        println!("note: {note}");
    }
    println!("\n### conclusion (from the figures above)\n");
    for line in conclude(&rows, &limits) {
        println!("- {line}");
    }
    println!("\nwall time: {:.1} s\n", wall.as_secs_f64());
    println!("{}", json_line(&rows, &limits, &notes, wall));
    Ok(())
}

/// Every cell. The paths take turns in slices (`SLICES` blocks of
/// round trips, `SLICES_CONCURRENT` spans of the concurrent phase) so that a change
/// in the shared machine's load falls on all of them alike rather than on
/// whichever path happened to run then.
async fn measure(paths: &mut [(&'static str, Transport)]) -> Vec<Row> {
    let mut rows = Vec::new();
    for case in &CASES {
        let mut seq: Vec<Cell> = paths.iter().map(|_| Cell::default()).collect();
        let mut c16: Vec<Cell> = paths.iter().map(|_| Cell::default()).collect();
        for ((_, transport), cell) in paths.iter_mut().zip(&mut seq) {
            if let Err(e) = sequential(transport, case, WARMUP).await {
                cell.error = Some(format!("warm-up: {e}"));
            }
        }
        for _ in 0..SLICES {
            for ((_, transport), cell) in paths.iter_mut().zip(&mut seq) {
                if cell.error.is_none() && cell.elapsed < SEQUENTIAL_CAP {
                    cell.add(sequential(transport, case, ROUNDS / SLICES).await);
                }
            }
        }
        for _ in 0..SLICES_CONCURRENT {
            for ((_, transport), cell) in paths.iter().zip(&mut c16) {
                if cell.error.is_none() {
                    let span = CONCURRENT_FOR / SLICES_CONCURRENT as u32;
                    cell.add(concurrent(transport, case, span).await);
                }
            }
        }
        for (((name, _), seq), c16) in paths.iter().zip(seq).zip(c16) {
            for (pattern, cell) in [("seq", seq), ("c16", c16)] {
                rows.push(Row {
                    path: name,
                    case,
                    pattern,
                    stats: cell.stats(),
                });
            }
        }
    }
    rows
}

/// The server's `slow_consumers` count from its `/varz` (a client it
/// had to cut off or stall for not reading fast enough), to explain
/// tails. `Err` when the monitoring endpoint cannot be read.
fn slow_consumers(server: &LocalServer) -> Result<u64> {
    server.varz()?["slow_consumers"]
        .as_u64()
        .ok_or_else(|| "no slow_consumers in /varz".into())
}
