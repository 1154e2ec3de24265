//! The Wasm runtime of a DWCP node: compiles `wasi:http/proxy` components once,
//! instantiates them in microseconds and serves HTTP requests with them, each
//! instance inside its app's limits.
//!
//! - [`Runtime`] owns the wasmtime [`Engine`](wasmtime::Engine) (pooling
//!   allocator, copy-on-write memory images, epoch interruption), the
//!   [`Linker`](wasmtime::component::Linker) with what a guest may import
//!   (`wasi:http` plus the `wasi:cli` interfaces `wasmtime serve -Scli`
//!   offers), and the [`AotCache`].
//! - [`Runtime::prepare`] turns the bytes of an upload into a ready
//!   [`ProxyPre`](wasmtime_wasi_http::p2::bindings::ProxyPre), refusing
//!   anything that is not a `wasi:http/proxy` component this node can link,
//!   with an error that names the problem ([`DeployError`]).
//! - [`AppVersion`] serves requests with one prepared version: a fresh
//!   instance per request (or one reused up to N times), under the app's
//!   memory limit and execution deadline, with its response capped in size.
//!
//! Why the engine is set up the way it is, and where a request's time goes,
//! is written down in `docs/architecture.md` and `docs/performance.md`.

mod aot;
mod body;
mod deploy;
mod egress;
mod engine;
mod guest;
mod keyed;
mod logs;
mod metrics;
mod preinit;
mod serve;
pub mod state;
mod stats;

pub use aot::{AotCache, AotFile, CacheOutcome};
pub use body::{HttpError, ResponseBody, text_response};
pub use deploy::{DeployError, Prepared, check_component_bytes};
pub use egress::{EgressPolicy, HostRule, MAX_EGRESS_RESPONSE, parse_cidr};
pub use engine::{Runtime, RuntimeSettings};
pub use guest::GuestState;
pub use keyed::{DELTAS_PER_FULL, KeyError, KeyInstance, MAX_DELTAS};
pub use logs::{AppLog, DEFAULT_LOG_BYTES, LogLine, LogStream};
pub use metrics::TrapKind;
pub use metrics::{RuntimeMetrics, VersionLabels};
pub use preinit::{DEFAULT_INIT_FUNC, INIT_DEADLINE};
pub use serve::AppVersion;
pub use stats::{AppStats, StatsSummary};

/// Re-exported so that callers can name limits without depending on the store.
pub use dwcp_store::AppLimits;
