//! The wasmtime engine, the linker and the epoch ticker.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::aot::AotCache;
use crate::guest::GuestState;
use crate::metrics::RuntimeMetrics;

/// How the engine's instance pool is sized; settings of `dwcp up`.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Instances come from the pooling allocator (false: wasmtime's
    /// on-demand allocator, `wasmtime serve`'s default; benchmarks compare).
    pub pooling: bool,
    /// Component instances alive at once, across all apps.
    pub pool_instances: u32,
    /// The largest linear memory any app may be given, in bytes.
    pub max_memory: u64,
    /// Bytes of each linear memory kept resident (reset with a `memset`
    /// rather than returned to the kernel) when an instance is recycled.
    pub keep_resident: usize,
    /// Largest Wasm stack of one instance, in bytes.
    pub max_wasm_stack: usize,
    /// How often the epoch advances: the granularity of deadlines and of
    /// the time slices a busy guest gets before yielding to other requests.
    pub epoch_tick: Duration,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            pooling: true,
            pool_instances: 1000,
            max_memory: 4 << 30,
            keep_resident: 16 << 20,
            max_wasm_stack: 512 << 10,
            epoch_tick: Duration::from_millis(1),
        }
    }
}

/// The engine, linker and AOT cache every app of a node shares.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<GuestState>,
    /// The same plus `dwcp:state/sink`, for stateful apps' instrumented
    /// components (others cannot reach it).
    pub(crate) stateful_linker: Linker<GuestState>,
    pub(crate) aot: AotCache,
    pub(crate) metrics: Arc<RuntimeMetrics>,
    pub(crate) settings: RuntimeSettings,
    /// Idle (`--reuse`) instances across all versions; at most half the
    /// pool may sit idle.
    pub(crate) idle_total: Arc<AtomicUsize>,
    ticker: EpochTicker,
}

impl Runtime {
    /// Builds the engine and starts its epoch ticker; compiled components are
    /// cached in `aot_dir`.
    pub fn new(
        settings: RuntimeSettings,
        aot_dir: impl Into<PathBuf>,
        metrics: Arc<RuntimeMetrics>,
    ) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config(&settings))
            .map_err(|e| anyhow::anyhow!("cannot configure wasmtime: {e:#}"))?;
        let mut linker = Linker::new(&engine);
        // Exactly what `wasmtime serve -Scli` links: the wasi:cli world's
        // interfaces and wasi:http.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .map_err(|e| anyhow::anyhow!("cannot link WASI: {e:#}"))?;
        let mut stateful_linker = linker.clone();
        crate::state::add_sink_to_linker(&mut stateful_linker)
            .map_err(|e| anyhow::anyhow!("cannot link dwcp:state/sink: {e:#}"))?;
        let aot = AotCache::open(aot_dir, &engine)?;
        let ticker = EpochTicker::start(engine.clone(), settings.epoch_tick)
            .map_err(|e| anyhow::anyhow!("cannot start the epoch thread: {e}"))?;
        Ok(Self {
            engine,
            linker,
            stateful_linker,
            aot,
            metrics,
            settings,
            idle_total: Arc::new(AtomicUsize::new(0)),
            ticker,
        })
    }

    /// The settings the engine was built with.
    pub fn settings(&self) -> &RuntimeSettings {
        &self.settings
    }

    /// The AOT cache.
    pub fn aot_cache(&self) -> &AotCache {
        &self.aot
    }

    /// The metrics the runtime records.
    pub fn metrics(&self) -> &Arc<RuntimeMetrics> {
        &self.metrics
    }

    /// Stops the epoch ticker; running guests will no longer be interrupted.
    pub fn shutdown(&self) {
        self.ticker.stop();
    }
}

fn engine_config(settings: &RuntimeSettings) -> Config {
    let mut pool = PoolingAllocationConfig::new();
    let n = settings.pool_instances;
    // A Rust wasm32-wasip2 component holds one memory, a few core instances
    // (the program and the canonical-ABI shims) and a few tables.
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .total_memories(n.saturating_mul(2))
        // A module may define several memories (multi-memory is on); the
        // pool's default allows one.
        .max_memories_per_module(4)
        .total_tables(n.saturating_mul(4))
        .total_stacks(n)
        .max_memory_size(settings.max_memory as usize)
        // Recycling a slot is where `wasmtime serve` spends much of its time:
        // madvise(DONTNEED) and the TLB shootdowns it causes. Keeping the
        // first pages resident (reset by memset, only the dirty ones where
        // the kernel can tell them with PAGEMAP_SCAN) avoids both the syscall
        // and the copy-on-write faults on the next instance.
        .linear_memory_keep_resident(settings.keep_resident)
        .table_keep_resident(1 << 16)
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .max_wasm_stack(settings.max_wasm_stack)
        .memory_init_cow(true)
        .allocation_strategy(if settings.pooling {
            InstanceAllocationStrategy::Pooling(pool)
        } else {
            InstanceAllocationStrategy::OnDemand
        });
    config
}

/// Advances the engine's epoch every tick on a thread of its own.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        thread::Builder::new()
            .name("dwcp-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    thread::sleep(tick);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self { stop })
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop();
    }
}
