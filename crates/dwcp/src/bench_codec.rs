//! `dwcp bench codec`: the snapshot codec against zstd and lz4 on the same
//! bytes in the same run, full snapshots and incremental series apart.
//!
//! The corpus is real heaps: `heapgen`, a Rust guest (a core module), is
//! run in wasmtime and its linear memory copied between calls; and the
//! `kv` and `counter` example components, deployed stateful in this
//! process, their memory captured by DWCP's own checkpoints. Or any raw
//! memory images given on the command line, successive images of one
//! instance in order.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dwcp_snapshot::{
    Base, DecodeLimits, Dictionary, EncodeOptions, Mode, PAGE_SIZE, decode, encode,
};
use serde::Serialize;

use crate::cli::CodecArgs;

/// One series: successive images of one instance.
struct Series {
    name: String,
    images: Vec<Vec<u8>>,
}

/// One codec's result over a set of inputs.
#[derive(Debug, Clone, Serialize)]
struct Row {
    codec: String,
    input_bytes: u64,
    output_bytes: u64,
    ratio: f64,
    encode_mb_s: f64,
    decode_mb_s: f64,
}

#[derive(Default)]
struct Totals {
    input: u64,
    output: u64,
    encode: Duration,
    decode: Duration,
}

impl Totals {
    fn row(&self, codec: &str) -> Row {
        let mb = self.input as f64 / 1e6;
        Row {
            codec: codec.into(),
            input_bytes: self.input,
            output_bytes: self.output,
            ratio: self.input as f64 / self.output.max(1) as f64,
            encode_mb_s: mb / self.encode.as_secs_f64().max(1e-9),
            decode_mb_s: mb / self.decode.as_secs_f64().max(1e-9),
        }
    }
}

/// Runs `f` until 0.3 s have passed (at most 20 times); the time of one run.
fn timed<T>(mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<(T, Duration)> {
    let started = Instant::now();
    let mut runs = 0u32;
    loop {
        let out = f()?;
        runs += 1;
        if started.elapsed() >= Duration::from_millis(300) || runs >= 20 {
            return Ok((out, started.elapsed() / runs));
        }
    }
}

/// A codec under test: how it encodes an image (given the one before, for
/// incremental runs) and decodes it back.
trait Codec {
    fn name(&self) -> &str;
    fn encode(&self, image: &[u8], previous: Option<&[u8]>) -> anyhow::Result<Vec<u8>>;
    fn decode(&self, bytes: &[u8], previous: Option<&[u8]>, len: usize) -> anyhow::Result<Vec<u8>>;
}

/// DWCP's codec; with `previous`, an incremental snapshot against it.
struct Dwcp {
    name: &'static str,
    mode: Mode,
    level: i32,
    dictionary: Option<Dictionary>,
}

/// The id the bench gives a base: any fixed value, the decoder checks it.
const BASE_ID: u64 = 1;

impl Codec for Dwcp {
    fn name(&self) -> &str {
        self.name
    }

    fn encode(&self, image: &[u8], previous: Option<&[u8]>) -> anyhow::Result<Vec<u8>> {
        let base_memories = previous.map(|p| [p]);
        let options = EncodeOptions {
            mode: self.mode,
            zstd_level: self.level,
            base: base_memories.as_ref().map(|m| Base {
                id: BASE_ID,
                memories: m,
            }),
            dictionary: self.dictionary.as_ref(),
        };
        let mut out = Vec::new();
        encode(&mut out, &[image], &[], &options)?;
        Ok(out)
    }

    fn decode(&self, bytes: &[u8], previous: Option<&[u8]>, _: usize) -> anyhow::Result<Vec<u8>> {
        let dict = self.dictionary.clone();
        let find = move |id: u64| dict.clone().filter(|d| d.id() == id);
        let base = previous.map(|p| (BASE_ID, vec![p.to_vec()]));
        let (_, mut memories) = decode(bytes, base, &find, &DecodeLimits::default())?;
        memories.pop().context("no memory decoded")
    }
}

struct Zstd {
    name: &'static str,
    level: i32,
    /// `--patch-from`: the previous image as a reference prefix, with a
    /// window that spans it and long-distance matching.
    patch: bool,
}

impl Codec for Zstd {
    fn name(&self) -> &str {
        self.name
    }

    fn encode(&self, image: &[u8], previous: Option<&[u8]>) -> anyhow::Result<Vec<u8>> {
        let mut c = zstd::bulk::Compressor::new(self.level)?;
        if let (true, Some(prev)) = (self.patch, previous) {
            use zstd::zstd_safe::CParameter;
            c.set_parameter(CParameter::WindowLog(window_log(
                image.len().max(prev.len()),
            )))?;
            c.set_parameter(CParameter::EnableLongDistanceMatching(true))?;
            c.context_mut()
                .ref_prefix(prev)
                .map_err(|e| anyhow::anyhow!("zstd ref_prefix: {e}"))?;
            return Ok(c.compress(image)?);
        }
        Ok(c.compress(image)?)
    }

    fn decode(&self, bytes: &[u8], previous: Option<&[u8]>, len: usize) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len);
        if let (true, Some(prev)) = (self.patch, previous) {
            use zstd::zstd_safe::{DCtx, DParameter};
            let zstd_err = |e| anyhow::anyhow!("zstd: {}", zstd::zstd_safe::get_error_name(e));
            let mut d = DCtx::create();
            d.set_parameter(DParameter::WindowLogMax(window_log(len.max(prev.len()))))
                .map_err(zstd_err)?;
            d.ref_prefix(prev).map_err(zstd_err)?;
            d.decompress(&mut out, bytes).map_err(zstd_err)?;
            return Ok(out);
        }
        zstd::bulk::Decompressor::new()?.decompress_to_buffer(bytes, &mut out)?;
        Ok(out)
    }
}

fn window_log(len: usize) -> u32 {
    (usize::BITS - len.next_power_of_two().leading_zeros()).clamp(20, 30)
}

struct Lz4;

impl Codec for Lz4 {
    fn name(&self) -> &str {
        "lz4"
    }

    fn encode(&self, image: &[u8], _: Option<&[u8]>) -> anyhow::Result<Vec<u8>> {
        Ok(lz4_flex::block::compress(image))
    }

    fn decode(&self, bytes: &[u8], _: Option<&[u8]>, len: usize) -> anyhow::Result<Vec<u8>> {
        Ok(lz4_flex::block::decompress(bytes, len)?)
    }
}

/// Encodes and decodes `image` with `codec`, checks the round trip, adds
/// to `totals`.
fn measure(
    codec: &dyn Codec,
    image: &[u8],
    previous: Option<&[u8]>,
    totals: &mut Totals,
) -> anyhow::Result<()> {
    let (bytes, encode_time) = timed(|| codec.encode(image, previous))?;
    let (decoded, decode_time) = timed(|| codec.decode(&bytes, previous, image.len()))?;
    if decoded != image {
        bail!("{} did not round-trip", codec.name());
    }
    totals.input += image.len() as u64;
    totals.output += bytes.len() as u64;
    totals.encode += encode_time;
    totals.decode += decode_time;
    Ok(())
}

/// Runs the benchmark.
pub fn run(args: CodecArgs) -> anyhow::Result<()> {
    let series = if args.files.is_empty() {
        eprintln!("taking the corpus from {}…", args.guest.display());
        let mut series = corpus(&args.guest)?;
        series.extend(stateful_corpus(&args.examples)?);
        series
    } else {
        vec![Series {
            name: "images given".into(),
            images: args
                .files
                .iter()
                .map(|f| read_image(f))
                .collect::<anyhow::Result<_>>()?,
        }]
    };
    for s in &series {
        eprintln!(
            "  {}: {} images of {} MiB",
            s.name,
            s.images.len(),
            s.images.first().map_or(0, |i| i.len() >> 20)
        );
    }

    let peers: Vec<Box<dyn Codec>> = vec![
        Box::new(Zstd {
            name: "zstd-3",
            level: 3,
            patch: false,
        }),
        Box::new(Zstd {
            name: "zstd-19",
            level: 19,
            patch: false,
        }),
        Box::new(Lz4),
    ];
    let patch = Zstd {
        name: "zstd-19-patch",
        level: 19,
        patch: true,
    };
    let names = ["fast", "dense", "zstd-3", "zstd-19", "zstd-19-patch", "lz4"];
    let mut full: Vec<Totals> = names.iter().map(|_| Totals::default()).collect();
    let mut incremental: Vec<Totals> = names.iter().map(|_| Totals::default()).collect();
    for s in &series {
        // The app's dictionary is trained on its first snapshot and used
        // for the ones after it, as a node would.
        let dictionary = Dictionary::train(&[&s.images[0]]);
        let fast = Dwcp {
            name: "fast",
            mode: Mode::Fast,
            level: 0,
            dictionary: None,
        };
        let dense_first = Dwcp {
            name: "dense",
            mode: Mode::Dense,
            level: args.dense_level,
            dictionary: None,
        };
        let dense = Dwcp {
            name: "dense",
            mode: Mode::Dense,
            level: args.dense_level,
            dictionary,
        };
        for (i, image) in s.images.iter().enumerate() {
            eprintln!("  {} image {i}", s.name);
            let dense_now: &dyn Codec = if i == 0 { &dense_first } else { &dense };
            let ours: [&dyn Codec; 2] = [&fast, dense_now];
            for (codec, totals) in ours.iter().zip(&mut full) {
                measure(*codec, image, None, totals)?;
            }
            // Slots: zstd-3, zstd-19, lz4 (zstd-19-patch has no full run).
            for (codec, slot) in peers.iter().zip([2, 3, 5]) {
                if !(args.no_slow_peers && slot == 3) {
                    measure(codec.as_ref(), image, None, &mut full[slot])?;
                }
            }
            let Some(previous) = i.checked_sub(1).map(|p| s.images[p].as_slice()) else {
                continue;
            };
            for (codec, totals) in ours.iter().zip(&mut incremental) {
                measure(*codec, image, Some(previous), totals)?;
            }
            if !args.no_slow_peers {
                measure(&patch, image, Some(previous), &mut incremental[4])?;
            }
            // zstd-3, zstd-19 and lz4 have no delta: they compress the image.
            for (codec, slot) in peers.iter().zip([2, 3, 5]) {
                if !(args.no_slow_peers && slot == 3) {
                    measure(codec.as_ref(), image, None, &mut incremental[slot])?;
                }
            }
        }
    }
    let rows = |totals: &[Totals]| -> Vec<Row> {
        names
            .iter()
            .zip(totals)
            .filter(|(_, t)| t.input > 0)
            .map(|(n, t)| t.row(n))
            .collect()
    };
    let full = rows(&full);
    let incremental = rows(&incremental);
    print_rows("full snapshots (each image alone)", &full);
    print_rows(
        "incremental (each image given the one before; zstd-3, zstd-19 and lz4 compress the image)",
        &incremental,
    );
    let zeros = vec![0u8; 256 << 20];
    let (_, took) = timed(|| {
        Dwcp {
            name: "fast",
            mode: Mode::Fast,
            level: 0,
            dictionary: None,
        }
        .encode(&zeros, None)
    })?;
    println!(
        "\nzero pages: 256 MiB encoded in {:.1} ms ({:.1} GB/s)",
        took.as_secs_f64() * 1e3,
        zeros.len() as f64 / 1e9 / took.as_secs_f64()
    );
    if let Some(path) = &args.json {
        let json = serde_json::json!({ "full": full, "incremental": incremental });
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("written to {}", path.display());
    }
    Ok(())
}

fn print_rows(title: &str, rows: &[Row]) {
    println!("\n{title}:");
    println!(
        "{:<15} {:>14} {:>12} {:>8} {:>12} {:>12}",
        "codec", "input bytes", "output", "ratio", "encode MB/s", "decode MB/s"
    );
    for r in rows {
        println!(
            "{:<15} {:>14} {:>12} {:>8.1} {:>12.0} {:>12.0}",
            r.codec, r.input_bytes, r.output_bytes, r.ratio, r.encode_mb_s, r.decode_mb_s
        );
    }
}

/// A raw memory image, padded with zeros to whole pages.
fn read_image(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut bytes =
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let padded = bytes.len().div_ceil(PAGE_SIZE) * PAGE_SIZE;
    bytes.resize(padded, 0);
    Ok(bytes)
}

fn wasm_error(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("heapgen: {e:#}")
}

/// Checkpoints of the `kv` and `counter` components, as a node takes them:
/// each image is the memory a full checkpoint holds, decoded.
fn stateful_corpus(examples: &Path) -> anyhow::Result<Vec<Series>> {
    use crate::bench_state::call;
    use dwcp_runtime::{AppLimits, AppVersion, KeyInstance, Runtime, RuntimeSettings};
    let dir = tempfile::tempdir()?;
    let settings = RuntimeSettings {
        pool_instances: 8,
        max_memory: 1 << 30,
        ..Default::default()
    };
    let runtime = Runtime::new(settings, dir.path(), Default::default())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let version = |name: &str| -> anyhow::Result<Option<Arc<AppVersion>>> {
        let path = examples.join(format!("{name}.wasm"));
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!(
                "  {} is missing: its series is left out (`cargo xtask examples`)",
                path.display()
            );
            return Ok(None);
        };
        let prepared = runtime.prepare_stateful(name, || Ok(bytes))?;
        let labels = dwcp_runtime::VersionLabels {
            tenant: "bench".into(),
            app: name.into(),
            version: "v1".into(),
        };
        let limits = AppLimits {
            memory_bytes: 1 << 30,
            deadline_ms: 60_000,
            ..Default::default()
        };
        Ok(Some(Arc::new(AppVersion::new(
            &runtime, labels, prepared, limits,
        ))))
    };
    async fn image(key: &mut KeyInstance) -> anyhow::Result<Vec<u8>> {
        let checkpoint = key.checkpoint(true).await?;
        let (image, _) =
            dwcp_runtime::state::decode_chain(&[checkpoint.bytes.as_slice()], &Default::default())
                .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        // The examples have one memory; several are measured as one.
        Ok(image.memories.concat())
    }
    let mut out = Vec::new();
    if let Some(kv) = version("kv")? {
        let images = rt.block_on(async {
            let mut key = kv.key_instance().await?;
            call(&mut key, "POST", "/fill?n=100000").await?;
            let mut images = vec![image(&mut key).await?];
            for round in 1..=5 {
                let churn = format!("/churn?updates=500&inserts=200&seed={round}");
                call(&mut key, "POST", &churn).await?;
                images.push(image(&mut key).await?);
            }
            anyhow::Ok(images)
        })?;
        out.push(Series {
            name: "kv component (100k entries), checkpointed".into(),
            images,
        });
    }
    if let Some(counter) = version("counter")? {
        let images = rt.block_on(async {
            let mut key = counter.key_instance().await?;
            call(&mut key, "POST", &format!("/?pad={}", 32 << 20)).await?;
            let mut images = vec![image(&mut key).await?];
            for _ in 0..3 {
                call(&mut key, "POST", "/").await?;
                images.push(image(&mut key).await?);
            }
            anyhow::Ok(images)
        })?;
        out.push(Series {
            name: "counter component (32 MiB heap), checkpointed".into(),
            images,
        });
    }
    runtime.shutdown();
    Ok(out)
}

/// Runs heapgen and copies its memory between calls.
fn corpus(guest: &Path) -> anyhow::Result<Vec<Series>> {
    use wasmtime::{Engine, Instance, Module, Store};
    let engine = Engine::default();
    let module = Module::from_file(&engine, guest).map_err(|e| {
        anyhow::anyhow!(
            "cannot load {} ({e:#}): build it with `cargo xtask examples`",
            guest.display()
        )
    })?;
    let run = |name: &str, steps: &[(&str, &[i32])]| -> anyhow::Result<Series> {
        let mut store = Store::new(&engine, ());
        let instance = Instance::new(&mut store, &module, &[]).map_err(wasm_error)?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .context("heapgen exports no memory")?;
        let mut images = Vec::new();
        for (export, params) in steps {
            let func = instance
                .get_func(&mut store, export)
                .with_context(|| format!("heapgen exports no {export}"))?;
            let params: Vec<wasmtime::Val> = params.iter().map(|&p| p.into()).collect();
            func.call(&mut store, &params, &mut [])
                .map_err(wasm_error)?;
            images.push(memory.data(&store).to_vec());
        }
        Ok(Series {
            name: name.into(),
            images,
        })
    };
    // The issue's own example: 100k entries, then 500 updates and 200
    // inserts between snapshots.
    let mut kv: Vec<(&str, &[i32])> = vec![("kv_fill", &[100_000])];
    let churn: [[i32; 3]; 5] = [
        [500, 200, 1],
        [500, 200, 2],
        [500, 200, 3],
        [500, 200, 4],
        [500, 200, 5],
    ];
    for c in &churn {
        kv.push(("kv_churn", c));
    }
    // A large table of counters, 1,000 bumped between snapshots.
    let mut counters: Vec<(&str, &[i32])> = vec![("counters_fill", &[4 << 20])];
    let bumps: [[i32; 2]; 3] = [[1000, 1], [1000, 2], [1000, 3]];
    for b in &bumps {
        counters.push(("counters_bump", b));
    }
    Ok(vec![
        run("kv (HashMap, 100k entries)", &kv)?,
        run("counters (4M u64)", &counters)?,
    ])
}
