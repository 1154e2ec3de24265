//! Serving requests with one version of an app.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Body;
use wasmtime::component::Resource;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::Error as HttpError;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

use crate::body::{CappedBody, ResponseBody, text_response};
use crate::deploy::Prepared;
use crate::egress::EgressPolicy;
use crate::engine::Runtime;
use crate::guest::{EgressContext, GuestState};
use crate::logs::{AppLog, DEFAULT_LOG_BYTES, LogStream};
use crate::metrics::{RuntimeMetrics, TrapKind, VersionLabels};
use crate::state::StateLayout;
use crate::stats::AppStats;
use dwcp_store::AppLimits;

/// The error an epoch callback raises when a request's deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("execution deadline passed")]
struct DeadlineExceeded;

/// An instance kept for further requests (`--reuse N`).
pub(crate) struct Instance {
    pub(crate) store: Store<GuestState>,
    pub(crate) proxy: Proxy,
    served: u32,
    idle_since: Instant,
}

/// An idle instance older than this is dropped rather than reused.
const IDLE_TTL: Duration = Duration::from_secs(30);

/// Why no instance could be created for a request.
pub(crate) enum InstantiateError {
    /// The node's instance pool is full.
    PoolFull,
    /// The guest was stopped while it initialised.
    Stopped(TrapKind, String),
}

/// One version of an app, ready to serve: the pre-linked component, the
/// limits it runs under and, with `reuse > 1`, instances kept warm.
pub struct AppVersion {
    labels: VersionLabels,
    pre: ProxyPre<GuestState>,
    limits: AppLimits,
    metrics: Arc<RuntimeMetrics>,
    idle: Mutex<Vec<Instance>>,
    /// Idle instances of every version of the node, against its budget:
    /// each holds a pool slot and its resident memory, which other apps may
    /// need more than this one needs a warm instance.
    idle_total: Arc<AtomicUsize>,
    idle_budget: usize,
    egress: Arc<EgressContext>,
    /// Environment variables of every instance: the app's config and secrets.
    env: Arc<[(String, String)]>,
    /// Where its guests' output goes; shared by the app's versions.
    log: Arc<AppLog>,
    /// The app's recent activity; shared by its versions.
    stats: Arc<AppStats>,
    /// For a stateful app's version: what a checkpoint of it holds.
    pub(crate) state: Option<StateLayout>,
    /// The SHA-256 of the artifact it runs (empty when not given).
    artifact: Arc<str>,
}

impl AppVersion {
    /// Wraps a prepared component for serving under `limits`.
    pub fn new(
        runtime: &Runtime,
        labels: VersionLabels,
        prepared: Prepared,
        limits: AppLimits,
    ) -> Self {
        let labels_for_egress = labels.clone();
        let log = Arc::new(AppLog::new(&labels.tenant, &labels.app, DEFAULT_LOG_BYTES));
        Self {
            labels,
            pre: prepared.pre,
            limits,
            metrics: runtime.metrics.clone(),
            idle: Mutex::new(Vec::new()),
            idle_total: runtime.idle_total.clone(),
            idle_budget: runtime.settings.pool_instances as usize / 2,
            egress: Arc::new(EgressContext {
                policy: Arc::new(EgressPolicy::default()),
                labels: labels_for_egress,
                metrics: runtime.metrics.clone(),
            }),
            env: Arc::new([]),
            log,
            stats: Arc::default(),
            state: prepared.state,
            artifact: Arc::from(""),
        }
    }

    /// The same component with new limits (or the same ones: a restart),
    /// without the idle instances of this one.
    pub fn renewed(&self, limits: AppLimits) -> Self {
        Self {
            labels: self.labels.clone(),
            pre: self.pre.clone(),
            limits,
            metrics: self.metrics.clone(),
            idle: Mutex::new(Vec::new()),
            idle_total: self.idle_total.clone(),
            idle_budget: self.idle_budget,
            egress: self.egress.clone(),
            env: self.env.clone(),
            log: self.log.clone(),
            stats: self.stats.clone(),
            state: self.state.clone(),
            artifact: self.artifact.clone(),
        }
    }

    /// The same version writing to the app's log and stats, which outlive
    /// its versions (by default it has its own).
    pub fn with_telemetry(mut self, log: Arc<AppLog>, stats: Arc<AppStats>) -> Self {
        self.log = log;
        self.stats = stats;
        self
    }

    /// The same version, knowing the artifact it runs (what a stateful
    /// key's checkpoints are bound to).
    pub fn with_artifact(mut self, sha256: &str) -> Self {
        self.artifact = Arc::from(sha256);
        self
    }

    /// The SHA-256 of the artifact it runs, if it was given.
    pub fn artifact(&self) -> &str {
        &self.artifact
    }

    /// Whether it is a stateful app's version (one instance per key).
    pub fn is_stateful(&self) -> bool {
        self.state.is_some()
    }

    /// The app's log its guests write to.
    pub fn log(&self) -> &Arc<AppLog> {
        &self.log
    }

    /// The app's recent activity.
    pub fn stats(&self) -> &Arc<AppStats> {
        &self.stats
    }

    /// The same version with these environment variables in new instances.
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Self {
        self.env = env.into();
        self
    }

    /// The same version under another egress policy (deny-all by default).
    pub fn with_egress(mut self, policy: EgressPolicy) -> Self {
        self.egress = Arc::new(EgressContext {
            policy: Arc::new(policy),
            labels: self.labels.clone(),
            metrics: self.metrics.clone(),
        });
        self
    }

    /// Tenant, app and version.
    pub fn labels(&self) -> &VersionLabels {
        &self.labels
    }

    /// The limits its instances run under.
    pub fn limits(&self) -> &AppLimits {
        &self.limits
    }

    /// Creates one instance and drops it; returns the time instantiation
    /// took. For benchmarks.
    pub async fn instantiate_only(&self) -> Result<Duration, String> {
        let started = Instant::now();
        let instance = self.instantiate().await.map_err(|e| match e {
            InstantiateError::PoolFull => "the instance pool is full".to_string(),
            InstantiateError::Stopped(_, detail) => detail,
        })?;
        let elapsed = started.elapsed();
        drop(instance);
        Ok(elapsed)
    }

    async fn instantiate(&self) -> Result<Instance, InstantiateError> {
        self.instantiate_with_handle()
            .await
            .map(|(instance, _)| instance)
    }

    /// An instance, with the component instance behind it (what a stateful
    /// key's state access is looked up in).
    pub(crate) async fn instantiate_with_handle(
        &self,
    ) -> Result<(Instance, wasmtime::component::Instance), InstantiateError> {
        let started = Instant::now();
        let state = GuestState::new(
            self.limits.memory_bytes,
            self.metrics.clone(),
            self.egress.clone(),
            &self.env,
            self.log.streams(&self.labels),
        );
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limiter);
        // Every epoch tick a running guest checks its deadline: past it the
        // guest traps; before it, it yields so that other requests on the
        // same thread get their turn.
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Err(DeadlineExceeded.into())
            } else {
                // tokio's `yield_now` lets the event loop poll for I/O
                // before the guest resumes, so requests waiting on sockets
                // are not starved by a guest that computes.
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });
        self.arm_deadline(&mut store);
        let instantiated = tokio::time::timeout(
            self.deadline(),
            self.pre.instance_pre().instantiate_async(&mut store),
        )
        .await;
        let handle = match instantiated {
            Ok(Ok(handle)) => handle,
            Ok(Err(e))
                if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                    .is_some() =>
            {
                return Err(InstantiateError::PoolFull);
            }
            Ok(Err(e)) => {
                return Err(InstantiateError::Stopped(
                    classify(&e, &store),
                    describe(&e),
                ));
            }
            Err(_) => {
                return Err(InstantiateError::Stopped(
                    TrapKind::deadline,
                    "execution deadline passed while initialising".into(),
                ));
            }
        };
        let proxy = match Proxy::new(&mut store, &handle) {
            Ok(proxy) => proxy,
            Err(e) => return Err(InstantiateError::Stopped(TrapKind::trap, describe(&e))),
        };
        self.metrics
            .observe_instantiate(&self.labels, started.elapsed().as_secs_f64());
        Ok((
            Instance {
                store,
                proxy,
                served: 0,
                idle_since: started,
            },
            handle,
        ))
    }

    pub(crate) fn arm_deadline(&self, store: &mut Store<GuestState>) {
        store.data_mut().deadline = Instant::now() + self.deadline();
        store.set_epoch_deadline(1);
    }

    pub(crate) fn deadline(&self) -> Duration {
        Duration::from_millis(self.limits.deadline_ms)
    }

    /// Serves one request. `permit` (what the request holds: the app's
    /// concurrency slot, the tenant's share) is dropped when the guest has
    /// finished, including a streamed body.
    pub async fn handle<B, P>(
        self: Arc<Self>,
        request: hyper::Request<B>,
        permit: P,
    ) -> hyper::Response<ResponseBody>
    where
        P: Send + 'static,
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<HttpError>,
    {
        let limits = self.limits;
        let request = match cap_request(request, &limits) {
            Ok(request) => request,
            Err(too_large) => return *too_large,
        };

        let mut instance = match self.take_idle() {
            Some(mut instance) => {
                self.arm_deadline(&mut instance.store);
                instance
            }
            None => match self.instantiate().await {
                Ok(instance) => {
                    self.stats.cold_start();
                    instance
                }
                Err(InstantiateError::PoolFull) => {
                    tracing::warn!(tenant = %self.labels.tenant, app = %self.labels.app, "the node's instance pool is full (`dwcp up --pool-instances`)");
                    let mut response =
                        text_response(503, "the node has no free instance slot; retry later");
                    response.headers_mut().insert(
                        hyper::header::RETRY_AFTER,
                        hyper::header::HeaderValue::from_static("1"),
                    );
                    return response;
                }
                Err(InstantiateError::Stopped(kind, detail)) => {
                    self.report_stop(kind, &detail);
                    return self.failure_response(kind);
                }
            },
        };

        let (req, out, receiver) = match pass_request(&mut instance.store, request) {
            Ok(handles) => handles,
            Err(refused) => return *refused,
        };

        // Set when the guest is stopped, before its store (and with it the
        // body channel) is dropped: a body it was streaming then ends in an
        // error, so the client sees a cut-off response, not a short one.
        let stopped = Arc::new(AtomicBool::new(false));
        let stopped_in_task = stopped.clone();
        let version = self.clone();
        let task = tokio::spawn(async move {
            let _permit = permit;
            let call = instance.proxy.wasi_http_incoming_handler().call_handle(
                &mut instance.store,
                req,
                out,
            );
            let stop = match tokio::time::timeout(version.deadline(), call).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some((classify(&e, &instance.store), describe(&e))),
                Err(_) => Some((TrapKind::deadline, "execution deadline passed".into())),
            };
            match stop {
                None => {
                    version.recycle(instance);
                    None
                }
                Some((kind, detail)) => {
                    stopped_in_task.store(true, Ordering::Release);
                    version.report_stop(kind, &detail);
                    drop(instance);
                    Some(kind)
                }
            }
        });

        match receiver.await {
            Ok(Ok(response)) => {
                let cap = limits.max_response_body;
                let version = self.clone();
                response.map(move |body| {
                    CappedBody::new(body, cap, move || {
                        version.report_stop(
                            TrapKind::response_too_large,
                            &format!("response body passed its cap of {cap} bytes; cut off"),
                        );
                        HttpError::HttpResponseBodySize(Some(cap))
                    })
                    .failing_if(stopped)
                    .boxed_unsync()
                })
            }
            Ok(Err(code)) => text_response(500, &format!("the app failed the request: {code:?}")),
            Err(_) => match task.await {
                Ok(Some(kind)) => self.failure_response(kind),
                Ok(None) => {
                    self.report_stop(
                        TrapKind::no_response,
                        "the guest returned without a response",
                    );
                    text_response(500, "the app returned without sending a response")
                }
                Err(e) => text_response(500, &format!("the app's task failed: {e}")),
            },
        }
    }

    /// The response to a request whose guest was stopped before answering.
    pub fn failure_response(&self, kind: TrapKind) -> hyper::Response<ResponseBody> {
        match kind {
            TrapKind::deadline => text_response(
                504,
                &format!(
                    "the app ran past its execution deadline of {} ms",
                    self.limits.deadline_ms
                ),
            ),
            TrapKind::memory_limit => text_response(
                500,
                &format!(
                    "the app exceeded its memory limit of {} bytes",
                    self.limits.memory_bytes
                ),
            ),
            TrapKind::stack_overflow => text_response(500, "the app overflowed its stack"),
            _ => text_response(500, "the app trapped"),
        }
    }

    pub(crate) fn report_stop(&self, kind: TrapKind, detail: &str) {
        self.metrics.record_stop(&self.labels, kind);
        tracing::warn!(
            tenant = %self.labels.tenant,
            app = %self.labels.app,
            version = %self.labels.version,
            reason = ?kind,
            "guest stopped: {detail}"
        );
        let version: Arc<str> = self.labels.version.as_str().into();
        self.log.push(
            &version,
            LogStream::Node,
            format!("stopped ({kind:?}): {detail}"),
        );
    }

    /// Keeps a healthy instance for another request if the app allows reuse
    /// and the guest left nothing behind.
    fn recycle(&self, mut instance: Instance) {
        instance.served += 1;
        if instance.served >= self.limits.reuse || !instance.store.data().is_clean() {
            return;
        }
        instance.idle_since = Instant::now();
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.limits.concurrency as usize
            && self.idle_total.load(Ordering::Relaxed) < self.idle_budget
        {
            self.idle_total.fetch_add(1, Ordering::Relaxed);
            idle.push(instance);
        }
    }

    /// The most recently used idle instance, if one is fresh enough; stale
    /// ones are dropped on the way.
    fn take_idle(&self) -> Option<Instance> {
        let mut idle = self.idle.lock().ok()?;
        let before = idle.len();
        idle.retain(|i| i.idle_since.elapsed() < IDLE_TTL);
        let taken = idle.pop();
        let left = before - idle.len();
        self.idle_total.fetch_sub(left, Ordering::Relaxed);
        taken
    }
}

impl Drop for AppVersion {
    fn drop(&mut self) {
        let idle = self.idle.get_mut().map_or(0, |idle| idle.len());
        self.idle_total.fetch_sub(idle, Ordering::Relaxed);
    }
}

/// The response a guest sets, as wasi:http hands it over.
pub(crate) type GuestResponse = Result<hyper::Response<HyperOutgoingBody>, ErrorCode>;

/// What [`pass_request`] gives: the guest's two handles, and the receiver
/// of its response.
pub(crate) type PassedRequest = (
    Resource<HostIncomingRequest>,
    Resource<HostResponseOutparam>,
    tokio::sync::oneshot::Receiver<GuestResponse>,
);

/// A request and its response-outparam, put in the guest's store (the
/// handles `incoming-handler.handle` takes), and where the response will
/// arrive; or the 400 for a request that cannot be passed on.
pub(crate) fn pass_request<B>(
    store: &mut Store<GuestState>,
    request: hyper::Request<B>,
) -> Result<PassedRequest, Box<hyper::Response<ResponseBody>>>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<HttpError>,
{
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let http = store.data_mut();
    http.http()
        .new_incoming_request(Scheme::Http, request)
        .and_then(|req| Ok((req, http.http().new_response_outparam(sender)?, receiver)))
        .map_err(|e| {
            Box::new(text_response(
                400,
                &format!("cannot pass the request on: {e}"),
            ))
        })
}

/// A request body as a guest reads it: its errors as wasi:http's, capped.
pub(crate) type CappedRequestBody<B> =
    CappedBody<http_body_util::combinators::MapErr<B, fn(<B as Body>::Error) -> HttpError>>;

/// The request with its body capped at the app's limit (the body fails
/// past it), or the 413 its declared length already earns.
pub(crate) fn cap_request<B>(
    request: hyper::Request<B>,
    limits: &AppLimits,
) -> Result<hyper::Request<CappedRequestBody<B>>, Box<hyper::Response<ResponseBody>>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<HttpError>,
{
    let declared = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limits.max_request_body) {
        return Err(Box::new(text_response(
            413,
            &format!(
                "request body larger than this app's limit of {} bytes",
                limits.max_request_body
            ),
        )));
    }
    let cap = limits.max_request_body;
    let into: fn(B::Error) -> HttpError = Into::into;
    Ok(request.map(move |body| {
        CappedBody::new(body.map_err(into), cap, move || {
            HttpError::HttpRequestBodySize(Some(cap))
        })
    }))
}

/// One line on what stopped a guest: the trap, not the whole Wasm backtrace.
pub(crate) fn describe(error: &wasmtime::Error) -> String {
    match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => error.root_cause().to_string(),
    }
}

/// Names what stopped a guest, from the error its call ended with.
pub(crate) fn classify(error: &wasmtime::Error, store: &Store<GuestState>) -> TrapKind {
    if error.downcast_ref::<DeadlineExceeded>().is_some() {
        TrapKind::deadline
    } else if store.data().limiter.refused {
        TrapKind::memory_limit
    } else if error.downcast_ref::<Trap>() == Some(&Trap::StackOverflow) {
        TrapKind::stack_overflow
    } else {
        TrapKind::trap
    }
}
