//! The host state of one instance.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

use crate::metrics::RuntimeMetrics;

/// What a store holds for one guest instance: its WASI contexts, its memory
/// limiter and the deadline of the request it is serving.
pub struct GuestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: DenyEgress,
    pub(crate) limiter: MemoryLimiter,
    /// When the current request's execution deadline passes.
    pub(crate) deadline: Instant,
    _live: LiveInstance,
}

impl GuestState {
    pub(crate) fn new(memory_limit: u64, metrics: Arc<RuntimeMetrics>) -> Self {
        // Like `wasmtime serve`: the guest's stdout and stderr go to the
        // node's, no arguments, no preopened directories. Through tokio's
        // handles, whose writes run off the event loop: a guest writing to
        // a full pipe must not stall the other requests of its thread.
        let wasi = WasiCtx::builder()
            .stdout(tokio::io::stdout())
            .stderr(tokio::io::stderr())
            .build();
        metrics.live_instances.inc();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: DenyEgress,
            limiter: MemoryLimiter {
                limit: memory_limit,
                refused: false,
            },
            deadline: Instant::now(),
            _live: LiveInstance(metrics),
        }
    }
}

impl GuestState {
    /// Whether the guest left no resource behind (request, response,
    /// body, stream): only such an instance may serve another request.
    pub(crate) fn is_clean(&self) -> bool {
        self.table.is_empty()
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Refuses every outgoing request a guest makes (`wasi:http/outgoing-handler`).
///
/// Until a per-app egress policy exists, letting guests call out would let
/// any tenant reach the node's loopback-only admin API or the network
/// behind the node. So the guest gets `HTTP-request-denied`, as it will for
/// any destination a policy does not allow.
struct DenyEgress;

/// What `send_request` returns: the response and a future for its body's I/O.
type Sent = Result<
    (
        hyper::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

impl WasiHttpHooks for DenyEgress {
    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _io: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        tracing::debug!(uri = %request.uri(), "outgoing request denied");
        Box::new(async { Err(HttpError::HttpRequestDenied) })
    }
}

/// Caps an instance's linear memory and remembers whether it refused a
/// growth, so that the trap that usually follows (an allocation failure
/// aborts a Rust guest) is reported as what it is.
pub(crate) struct MemoryLimiter {
    limit: u64,
    pub(crate) refused: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired as u64 <= self.limit;
        self.refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any
        // real guest and keeps a hostile one from exhausting host memory.
        Ok(desired <= 1_000_000)
    }
}

/// Counts an instance in the live-instances gauge for as long as it exists.
struct LiveInstance(Arc<RuntimeMetrics>);

impl Drop for LiveInstance {
    fn drop(&mut self) {
        self.0.live_instances.dec();
    }
}
