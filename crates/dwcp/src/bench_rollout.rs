//! `dwcp bench rollout`: canary rollouts on a node in this process under a
//! steady load of distinct users, then the same analysis driven by seeded
//! simulations for its error rates.
//!
//! Live: `flaky` (fails 0.5%) serves as v1; a canary of `broken` (fails 5%)
//! must be aborted by itself — how long it took and how many requests
//! failed beyond the baseline are the figures — then a canary of `flaky`
//! again must be promoted, never aborted. Simulated: 1,000 good and 1,000
//! bad rollouts of `dwcp_release::simulate` with the same strategy and
//! analysis, for the false-abort rate and the detection-time distribution
//! that a few live runs cannot give.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dwcp_release::analysis::AnalysisConfig;
use dwcp_release::rollout::Strategy;
use dwcp_release::simulate::{SimConfig, SimSummary, simulate, summarize};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use serde_json::Value;

use crate::cli::RolloutBenchArgs;

const HOST: &str = "shop.bench.localhost";
const APP: &str = "/v1/apps/bench/shop";

/// Requests and failures counted by the load generator.
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    failed: AtomicU64,
}

impl Tally {
    fn read(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Runs the benchmark and prints its figures.
pub fn run(args: RolloutBenchArgs) -> anyhow::Result<()> {
    let step = humantime::parse_duration(&args.step_time)
        .with_context(|| format!("--step-time `{}`", args.step_time))?;
    let strategy = canary(step);
    if !args.skip_live {
        live(&args, &args.step_time)?;
    }
    simulated(&args, strategy)
}

/// The default canary's steps with `step` at each.
fn canary(step: Duration) -> Strategy {
    match Strategy::default_canary() {
        Strategy::Canary { steps, .. } => Strategy::Canary {
            steps,
            step_secs: step.as_secs().max(1),
        },
        other => other,
    }
}

fn live(args: &RolloutBenchArgs, step_time: &str) -> anyhow::Result<()> {
    let read = |name: &str| {
        let path = args.examples.join(format!("{name}.wasm"));
        std::fs::read(&path).with_context(|| {
            format!(
                "cannot read {} (build it with `cargo xtask examples`)",
                path.display()
            )
        })
    };
    let (flaky, broken) = (read("flaky")?, read("broken")?);
    let dir = tempfile::tempdir()?;
    let (node, client) = crate::bench::node_in_process(dir.path())?;
    let _: Value = client.upload(&format!("{APP}/versions?version=v1"), flaky.clone())?;

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (tally, stop, addr) = (tally.clone(), stop.clone(), node.http_addr);
        let (rate, connections) = (args.rate, args.connections);
        std::thread::spawn(move || generate_load(addr, rate, connections, &tally, &stop))
    };
    // The baseline's own failure rate, measured before any rollout.
    std::thread::sleep(Duration::from_secs(2));
    let (r0, f0) = tally.read();
    std::thread::sleep(Duration::from_secs(args.baseline_secs));
    let (r1, f1) = tally.read();
    let baseline = (f1 - f0) as f64 / (r1 - r0).max(1) as f64;
    let offered = (r1 - r0) as f64 / args.baseline_secs as f64;

    let bad = rollout(&client, &tally, &broken, "v2", step_time, args.max_secs)?;
    let good = rollout(&client, &tally, &flaky, "v3", step_time, args.max_secs)?;
    stop.store(true, Ordering::Relaxed);
    load.join()
        .map_err(|_| anyhow::anyhow!("the load generator panicked"))??;
    node.stop();

    println!(
        "live: {offered:.0} req/s of distinct users (asked {}), flaky v1 failing {:.2}% before the rollouts; canary steps 1/5/25/50/100% of {step_time} each, default analysis",
        args.rate,
        baseline * 100.0
    );
    let excess = |o: &Outcome| (o.failed as f64 - baseline * o.requests as f64).max(0.0);
    println!(
        "  canary of broken (5%):  {} after {:.1} s; {} requests in that time, {} failed, {:.0} beyond the baseline's rate = {:.3}% of all requests",
        o_phase(&bad),
        bad.secs,
        bad.requests,
        bad.failed,
        excess(&bad),
        excess(&bad) * 100.0 / bad.requests.max(1) as f64
    );
    println!(
        "  canary of flaky (0.5%): {} after {:.1} s ({} requests, {} failed)",
        o_phase(&good),
        good.secs,
        good.requests,
        good.failed
    );
    if bad.phase != "aborted" || good.phase != "promoted" {
        bail!(
            "the live rollouts did not end as they must: broken {}, flaky {}",
            bad.phase,
            good.phase
        );
    }
    Ok(())
}

fn o_phase(o: &Outcome) -> String {
    match o.phase.as_str() {
        "aborted" => "aborted by itself".into(),
        "promoted" => "promoted".into(),
        other => format!("still {other} (not ended)"),
    }
}

/// How one live rollout ended.
struct Outcome {
    phase: String,
    secs: f64,
    requests: u64,
    failed: u64,
}

/// Deploys `bytes` as `version` by the default canary and waits until the
/// rollout ends (or `max_secs`).
fn rollout(
    client: &crate::signing::SignedClient,
    tally: &Tally,
    bytes: &[u8],
    version: &str,
    step_time: &str,
    max_secs: u64,
) -> anyhow::Result<Outcome> {
    let (r0, f0) = tally.read();
    let started = Instant::now();
    let _: Value = client.upload(
        &format!(
            "{APP}/versions?version={version}&strategy=canary&step={}",
            crate::commands::percent_encode(step_time)
        ),
        bytes.to_vec(),
    )?;
    let phase = loop {
        let status: Value = client.get(&format!("{APP}/rollout"))?;
        let phase = status["rollout"]["phase"]["phase"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if phase == "aborted" || phase == "promoted" || started.elapsed().as_secs() >= max_secs {
            break phase;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (r1, f1) = tally.read();
    Ok(Outcome {
        phase,
        secs: started.elapsed().as_secs_f64(),
        requests: r1 - r0,
        failed: f1 - f0,
    })
}

/// Sends `rate` requests a second over `connections` keep-alive
/// connections, each from the next of a stream of distinct users, until
/// `stop`.
fn generate_load(
    addr: SocketAddr,
    rate: u64,
    connections: u64,
    tally: &Arc<Tally>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let next_user = Arc::new(AtomicU64::new(0));
        let connections = connections.clamp(1, rate.max(1));
        let period = Duration::from_secs_f64(connections as f64 / rate.max(1) as f64);
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (tally, stop, next_user) = (tally.clone(), stop.clone(), next_user.clone());
            tasks.push(tokio::spawn(async move {
                connection(addr, period, &tally, &stop, &next_user).await
            }));
        }
        for task in tasks {
            task.await??;
        }
        anyhow::Ok(())
    })
}

/// One connection's share of the load; reconnects when the node closes it.
async fn connection(
    addr: SocketAddr,
    period: Duration,
    tally: &Tally,
    stop: &AtomicBool,
    next_user: &AtomicU64,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    'reconnect: while !stop.load(Ordering::Relaxed) {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let user = next_user.fetch_add(1, Ordering::Relaxed);
            let request = hyper::Request::get("/")
                .header(hyper::header::HOST, HOST)
                .header("x-user-id", format!("user-{user}"))
                .body(Empty::<Bytes>::new())?;
            if sender.ready().await.is_err() {
                continue 'reconnect;
            }
            let Ok(response) = sender.send_request(request).await else {
                continue 'reconnect;
            };
            let status = response.status().as_u16();
            // The whole body, so the connection can carry the next request.
            let complete = response.into_body().collect().await.is_ok();
            tally.requests.fetch_add(1, Ordering::Relaxed);
            if status >= 500 || !complete {
                tally.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

fn simulated(args: &RolloutBenchArgs, strategy: Strategy) -> anyhow::Result<()> {
    let analysis = AnalysisConfig::default();
    let config = |canary_error_rate: f64| SimConfig {
        requests_per_sec: args.rate,
        stable_error_rate: 0.005,
        canary_error_rate,
        stable_latency_ms: 1.0,
        canary_latency_ms: 1.0,
        latency_sigma: 0.5,
        strategy: strategy.clone(),
        analysis,
        max_secs: 3_600,
    };
    let runs = |c: &SimConfig| -> SimSummary {
        let outcomes: Vec<_> = (0..args.simulations)
            .map(|seed| simulate(seed, c))
            .collect();
        summarize(&outcomes)
    };
    let started = Instant::now();
    let good = runs(&config(0.005));
    let bad = runs(&config(0.05));
    println!(
        "simulated ({} seeded rollouts each, {} req/s, same steps; analysis α = {} over both metrics, error tolerance {} points, latency tolerance {}%, at least {} requests a side; {:.1} s):",
        args.simulations,
        args.rate,
        analysis.alpha,
        analysis.error_tolerance * 100.0,
        analysis.latency_tolerance * 100.0,
        analysis.min_samples,
        started.elapsed().as_secs_f64()
    );
    println!(
        "  good canary (0.5% vs 0.5%): {} promoted, {} aborted = false-abort rate {:.2}%",
        good.promoted,
        good.aborted,
        good.abort_rate * 100.0
    );
    let detection = bad
        .secs_to_abort
        .map(|p| {
            format!(
                "p50 {} s, p90 {} s, p99 {} s, max {} s",
                p.p50, p.p90, p.p99, p.max
            )
        })
        .unwrap_or_else(|| "never".into());
    println!(
        "  bad canary (5% vs 0.5%):   {} aborted, {} promoted; time to abort {detection}; failed beyond the baseline {:.3}% of all requests",
        bad.aborted,
        bad.promoted,
        bad.failed_beyond_baseline_share * 100.0
    );
    Ok(())
}
