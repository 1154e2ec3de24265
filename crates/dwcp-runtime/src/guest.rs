//! The host state of one instance.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

use crate::egress::EgressPolicy;
use crate::logs::GuestOutput;
use crate::metrics::{RuntimeMetrics, VersionLabels};

/// What a store holds for one guest instance: its WASI contexts, its memory
/// limiter and the deadline of the request it is serving.
pub struct GuestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: EgressHooks,
    pub(crate) limiter: MemoryLimiter,
    /// When the current request's execution deadline passes.
    pub(crate) deadline: Instant,
    /// A checkpoint being taken (stateful apps), between the guest's
    /// `capture` and the sink it calls.
    pub(crate) capture: Option<Box<crate::state::Capture>>,
    _live: LiveInstance,
}

impl GuestState {
    pub(crate) fn new(
        memory_limit: u64,
        metrics: Arc<RuntimeMetrics>,
        egress: Arc<EgressContext>,
        env: &[(String, String)],
        (stdout, stderr): (GuestOutput, GuestOutput),
    ) -> Self {
        // Like `wasmtime serve`: no arguments, no preopened directories; the
        // environment holds the app's config and secrets. stdout and stderr
        // go to the app's log (see `logs.rs`), never blocking the guest.
        let wasi = WasiCtx::builder()
            .stdout(stdout)
            .stderr(stderr)
            .envs(env)
            .build();
        metrics.live_instances.inc();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: EgressHooks(egress),
            limiter: MemoryLimiter {
                limit: memory_limit,
                used: 0,
                refused: false,
            },
            deadline: Instant::now(),
            capture: None,
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

/// Outgoing requests (`wasi:http/outgoing-handler`) go through the app's
/// egress policy: denied unless it allows them (see `egress.rs`).
struct EgressHooks(Arc<EgressContext>);

/// An app version's egress policy with what its metrics need.
pub(crate) struct EgressContext {
    pub(crate) policy: Arc<EgressPolicy>,
    pub(crate) labels: VersionLabels,
    pub(crate) metrics: Arc<RuntimeMetrics>,
}

/// What `send_request` returns: the response and a future for its body's I/O.
type Sent = Result<
    (
        hyper::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _io: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let egress = self.0.clone();
        Box::new(async move {
            // Scheme, host and port only: paths and queries carry secrets.
            let uri = request.uri();
            let uri = format!(
                "{}://{}{}",
                uri.scheme_str().unwrap_or("http"),
                uri.host().unwrap_or("?"),
                uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default()
            );
            let result = egress.policy.clone().send(request).await;
            let outcome = match &result {
                Ok(_) => "sent",
                Err(HttpError::HttpRequestDenied | HttpError::DestinationIpProhibited) => "denied",
                Err(_) => "failed",
            };
            egress.metrics.record_egress(&egress.labels, outcome);
            if let Err(e) = &result {
                tracing::info!(tenant = %egress.labels.tenant, app = %egress.labels.app, %uri, "outgoing request {outcome}: {e}");
            }
            let response = result?;
            let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, io))
        })
    }
}

/// Caps an instance's linear memories, all of them together, and remembers
/// whether it refused a growth, so that the trap that usually follows (an
/// allocation failure aborts a Rust guest) is reported as what it is.
pub(crate) struct MemoryLimiter {
    limit: u64,
    /// Bytes the instance's memories hold together. A component made of
    /// several modules has several memories; a per-memory cap would let it
    /// hold a multiple of its limit.
    used: u64,
    pub(crate) refused: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A growth that fails after this approves it stays counted: the
        // error is on the side of refusing.
        let after = (self.used - (current as u64).min(self.used)).saturating_add(desired as u64);
        let allowed = after <= self.limit;
        if allowed {
            self.used = after;
        }
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
