//! `dwcp bench state`: what stateful keys cost, each figure beside its peer
//! measured in the same run.
//!
//! - Checkpoint pause: how long a key's requests wait while its state is
//!   captured and encoded (a delta of the previous checkpoint), for a large
//!   heap of which a request changes a few pages; the durable write (redb,
//!   synced) apart. Peers: a full snapshot of the same memory with zstd -3
//!   and with lz4, what a checkpointer without deltas pays.
//! - Wake: a hibernated key's state restored into a fresh instance of the
//!   compiled version. Peer: a fresh instance without state (the floor).
//! - Hibernated keys: a node in this process, N keys created over HTTP and
//!   left to hibernate; resident memory and checkpoint bytes per key.
//!   Peer: the same keys while live.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use dwcp_runtime::{AppLimits, AppVersion, KeyInstance, Runtime, RuntimeSettings, VersionLabels};
use dwcp_store::{CheckpointMeta, CheckpointStore};
use http_body_util::{BodyExt, Full};

use crate::cli::StateBenchArgs;

/// Runs the three measurements.
pub fn run(args: StateBenchArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.component).with_context(|| {
        format!(
            "cannot read {} (build it with `cargo xtask examples`)",
            args.component.display()
        )
    })?;
    let dir = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let settings = RuntimeSettings {
        pool_instances: 64,
        max_memory: 1 << 30,
        ..Default::default()
    };
    let runtime = Runtime::new(settings, dir.path().join("aot"), Default::default())?;
    let prepared = runtime.prepare_stateful("bench", || Ok(bytes.clone()))?;
    let labels = VersionLabels {
        tenant: "bench".into(),
        app: "state".into(),
        version: "v1".into(),
    };
    let limits = AppLimits {
        memory_bytes: 1 << 30,
        deadline_ms: 60_000,
        ..Default::default()
    };
    let version = Arc::new(AppVersion::new(&runtime, labels, prepared, limits));
    println!(
        "dwcp bench state: {} (data in {}, {})",
        args.component.display(),
        dir.path().display(),
        filesystem(dir.path())
    );
    rt.block_on(pause(&version, dir.path(), args.state_mib, args.iterations))?;
    rt.block_on(wake(&version, args.wake_mib, args.iterations))?;
    runtime.shutdown();
    if args.keys > 0 {
        hibernated_keys(&bytes, dir.path(), args.keys, args.clients)?;
    }
    Ok(())
}

/// One request to a key, which must succeed; its body.
pub(crate) async fn call(
    key: &mut KeyInstance,
    method: &str,
    path: &str,
) -> anyhow::Result<String> {
    let request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://localhost{path}"))
        .body(
            Full::new(Bytes::new())
                .map_err(|never| -> wasmtime_wasi_http::Error { match never {} }),
        )?;
    let response = match key.serve(request).await {
        Ok(r) => r,
        Err(r) => bail!("the guest failed: {}", r.status()),
    };
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("body: {e}"))?
        .to_bytes();
    if !status.is_success() {
        bail!("{status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

async fn pause(
    version: &Arc<AppVersion>,
    dir: &std::path::Path,
    mib: u64,
    iterations: u32,
) -> anyhow::Result<()> {
    let mut key = version.key_instance().await?;
    call(&mut key, "POST", &format!("/?pad={}", mib << 20)).await?;
    let full = key.checkpoint(true).await?;
    let store = CheckpointStore::open(&dir.join("checkpoints.redb"))?;
    let mut meta = CheckpointMeta {
        seq: 1,
        version: "v1".into(),
        artifact_sha256: "bench".into(),
        base: None,
        snapshot_id: full.summary.id,
        bytes: full.bytes.len() as u64,
        memory_bytes: full.summary.input_bytes,
        taken_at: 0,
        reason: "bench".into(),
        resources: false,
    };
    store.put("bench/state/k", &meta, &full.bytes, 5)?;
    let (mut pauses, mut writes, mut sizes) = (Vec::new(), Vec::new(), 0u64);
    for _ in 0..iterations {
        call(&mut key, "POST", "/").await?;
        let started = Instant::now();
        let delta = key.checkpoint(false).await?;
        pauses.push(started.elapsed());
        sizes += delta.bytes.len() as u64;
        meta.base = delta.delta.then_some(meta.seq);
        meta.seq += 1;
        meta.snapshot_id = delta.summary.id;
        let started = Instant::now();
        store.put("bench/state/k", &meta, &delta.bytes, 5)?;
        writes.push(started.elapsed());
    }
    // Full snapshots, after the deltas (the first one also warmed up).
    let mut fulls = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        key.checkpoint(true).await?;
        fulls.push(started.elapsed());
    }
    let full_time = Duration::from_secs_f64(percentile(&mut fulls, 0.5) / 1e3);
    drop(key);

    // The peers, on the memory the full checkpoint holds (median of 5).
    let (image, _) =
        dwcp_runtime::state::decode_chain(&[full.bytes.as_slice()], &Default::default())
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    // The examples have one memory; several would be measured as one.
    let memory = &image.memories.concat();
    let timed = |f: &dyn Fn() -> usize| {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..5 {
            let started = Instant::now();
            size = f();
            times.push(started.elapsed());
        }
        (
            Duration::from_secs_f64(percentile(&mut times, 0.5) / 1e3),
            size,
        )
    };
    let (zstd_time, zstd_size) = timed(&|| zstd::bulk::compress(memory, 3).map_or(0, |c| c.len()));
    let (lz4_time, lz4_size) = timed(&|| lz4_flex::block::compress(memory).len());
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p50 = percentile(&mut pauses, 0.5);
    let p99 = percentile(&mut pauses, 0.99);
    println!();
    println!(
        "checkpoint pause, {} MiB of memory, a request changing <= 16 pages ({iterations} checkpoints):",
        memory.len() >> 20
    );
    println!(
        "  dwcp delta (capture + encode)      p50 {p50:>8.2} ms  p99 {p99:>8.2} ms  {:>10} bytes each",
        sizes / u64::from(iterations.max(1))
    );
    println!(
        "  durable write (redb commit+sync)   p50 {:>8.2} ms  p99 {:>8.2} ms",
        percentile(&mut writes, 0.5),
        percentile(&mut writes, 0.99)
    );
    println!(
        "  dwcp full snapshot (fast), median of 5 {:>8.2} ms            {:>10} bytes",
        ms(full_time),
        full.bytes.len()
    );
    println!(
        "  peer: zstd -3, whole memory, median    {:>8.2} ms            {zstd_size:>10} bytes   ({:.0}x the delta's p50)",
        ms(zstd_time),
        ms(zstd_time) / p50.max(1e-9)
    );
    println!(
        "  peer: lz4, whole memory, median        {:>8.2} ms            {lz4_size:>10} bytes   ({:.0}x the delta's p50)",
        ms(lz4_time),
        ms(lz4_time) / p50.max(1e-9)
    );
    Ok(())
}

async fn wake(version: &Arc<AppVersion>, mib: u64, iterations: u32) -> anyhow::Result<()> {
    let mut key = version.key_instance().await?;
    // The guest's own memory (its 1 MiB stack, its data) counts: the heap
    // buffer makes up the rest.
    let pad = (mib << 20).saturating_sub(1 << 20);
    call(&mut key, "POST", &format!("/?pad={pad}")).await?;
    let count = call(&mut key, "GET", "/").await?;
    let snapshot = key.checkpoint(true).await?;
    let memory = key.memory_bytes();
    drop(key);
    let (mut wakes, mut fresh) = (Vec::new(), Vec::new());
    for i in 0..iterations + 20 {
        let started = Instant::now();
        let mut key = version.key_instance().await?;
        key.restore(&[snapshot.bytes.as_slice()]).await?;
        let woke = started.elapsed();
        if i == 0 && call(&mut key, "GET", "/").await? != count {
            bail!("a woken key answered another count");
        }
        drop(key);
        let started = Instant::now();
        let key = version.key_instance().await?;
        let instantiated = started.elapsed();
        drop(key);
        // The first ones fault in the pool's slots and the code.
        if i >= 20 {
            wakes.push(woke);
            fresh.push(instantiated);
        }
    }
    let p50 = percentile(&mut wakes, 0.5);
    let floor = percentile(&mut fresh, 0.5);
    println!();
    println!(
        "wake from hibernation, {:.2} MiB of memory ({} bytes snapshot, {iterations} wakes):",
        memory as f64 / (1 << 20) as f64,
        snapshot.bytes.len()
    );
    println!(
        "  dwcp wake (instantiate + restore)  p50 {p50:>8.3} ms  p99 {:>8.3} ms",
        percentile(&mut wakes, 0.99)
    );
    println!(
        "  peer: fresh instance, no state     p50 {floor:>8.3} ms  p99 {:>8.3} ms   (wake = {:.1}x)",
        percentile(&mut fresh, 0.99),
        p50 / floor.max(1e-9)
    );
    Ok(())
}

/// Resident memory of this process, from /proc.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn filesystem(path: &std::path::Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, fs) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(point)
                .then(|| (point.len(), fs.to_string()))
        })
        .max()
        .map_or_else(|| "filesystem unknown".into(), |(_, fs)| format!("on {fs}"))
}

/// POSTs to `keys` on one keep-alive connection.
fn post_keys(addr: SocketAddr, keys: std::ops::Range<u64>) -> anyhow::Result<()> {
    let stream = TcpStream::connect(addr)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    for k in keys {
        write!(
            writer,
            "POST / HTTP/1.1\r\nHost: counter.bench.localhost\r\nx-dwcp-key: key-{k}\r\nContent-Length: 0\r\n\r\n"
        )?;
        let mut status = String::new();
        reader.read_line(&mut status)?;
        if !status.starts_with("HTTP/1.1 200") {
            bail!("key-{k}: {}", status.trim());
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse()?;
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
    }
    Ok(())
}

fn live_instances(admin: SocketAddr) -> anyhow::Result<f64> {
    let mut stream = TcpStream::connect(admin)?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("dwcp_live_instances ")?.parse().ok())
        .unwrap_or(0.0))
}

fn hibernated_keys(
    component: &[u8],
    dir: &std::path::Path,
    keys: u64,
    clients: u64,
) -> anyhow::Result<()> {
    let node_dir = dir.join("node");
    let (node, client) = crate::bench::node_in_process(&node_dir)?;
    let _: serde_json::Value = client.upload(
        "/v1/apps/bench/counter/versions?stateful=true&hibernate_after=2s",
        component.to_vec(),
    )?;
    // One key first: the code is mapped and the first slot faulted in.
    post_keys(node.http_addr, 0..1)?;
    std::thread::sleep(Duration::from_secs(3));
    let before = rss_bytes();
    let started = Instant::now();
    let clients = clients.clamp(1, keys);
    let per = keys.div_ceil(clients);
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let addr = node.http_addr;
            let range = (1 + c * per)..(1 + ((c + 1) * per).min(keys));
            std::thread::spawn(move || post_keys(addr, range))
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
    }
    let created = started.elapsed();
    let live = live_instances(node.admin_addr)?;
    let peak = rss_bytes();
    let deadline = Instant::now() + Duration::from_secs(600);
    while live_instances(node.admin_addr)? > 0.0 {
        if Instant::now() > deadline {
            bail!("keys did not hibernate within 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let after = rss_bytes();
    let disk = std::fs::metadata(node_dir.join("checkpoints.redb"))?.len();
    node.stop();
    println!();
    println!(
        "hibernated keys: {keys} keys created over HTTP in {:.1} s ({:.0} keys/s, each a wake, a request, a durable checkpoint)",
        created.as_secs_f64(),
        keys as f64 / created.as_secs_f64()
    );
    println!(
        "  resident memory per hibernated key   {:>10.0} bytes   ({} MiB for all)",
        after.saturating_sub(before) as f64 / keys as f64,
        after.saturating_sub(before) >> 20
    );
    println!(
        "  checkpoint bytes per key on disk     {:>10.0} bytes   (checkpoints.redb: {} MiB)",
        disk as f64 / keys as f64,
        disk >> 20
    );
    if live > 0.0 {
        println!(
            "  peer: resident memory per live key   {:>10.0} bytes   ({live} live when the last request answered)",
            peak.saturating_sub(before) as f64 / live
        );
    }
    Ok(())
}
