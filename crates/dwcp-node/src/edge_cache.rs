//! The node's edge response cache: GET and HEAD answers kept where the
//! request entered, by the rules of a shared HTTP cache (RFC 9111, in
//! `dwcp_mesh::cache`), whether a local instance or another node served
//! them.
//!
//! Each app's rules come with its record: its default TTL (`apps set
//! --cache-ttl`) for responses that state no freshness of their own, and
//! whether it is stateful (then only responses whose headers ask for it
//! are kept). A response is held in memory to be stored only when its
//! headers allow storing and its body is small; any other streams through
//! untouched. `x-dwcp-cache` tells the client what happened: `hit`,
//! `revalidated`, `miss` or `bypass`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use dwcp_mesh::cache::{CacheKey, CacheStats, EdgeCache, Lookup, StorePolicy};
use dwcp_runtime::{HttpError, ResponseBody};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CACHE_CONTROL, EXPIRES, HeaderValue};
use serde::Serialize;

/// The header saying what the cache did.
pub const CACHE_HEADER: &str = "x-dwcp-cache";

/// The node's cache and each app's rules for it.
pub struct NodeCache {
    cache: Mutex<EdgeCache>,
    /// The largest body stored.
    max_body: usize,
    /// Each app's rules, by its host key (`app.tenant`, what the ingress
    /// has in hand for every request); an app without rules (unknown
    /// here) is not cached.
    policies: Mutex<HashMap<String, StorePolicy>>,
}

/// The cache's counters, as `dwcp cache stats` shows them.
#[derive(Debug, Serialize)]
pub struct CacheReport {
    /// Hits, misses, revalidations, stores, evictions, purges; entries and bytes now.
    #[serde(flatten)]
    pub stats: CacheStats,
    /// The most it holds.
    pub max_bytes: usize,
}

impl NodeCache {
    /// A cache of `max_bytes` (a body up to a quarter of it is stored).
    pub fn new(max_bytes: usize) -> NodeCache {
        NodeCache {
            cache: Mutex::new(EdgeCache::new(max_bytes)),
            max_body: max_bytes / 4,
            policies: Mutex::default(),
        }
    }

    /// Sets (or, with `None`, forgets) `tenant/app`'s rules. Entries kept
    /// under other rules go: a TTL turned off (or shortened) takes effect
    /// at once, not when they expire.
    pub fn set_policy(&self, tenant: &str, app: &str, policy: Option<StorePolicy>) {
        let key = crate::host::key_of(tenant, app);
        let before = {
            let mut policies = self.policies.lock().unwrap_or_else(|e| e.into_inner());
            match policy {
                Some(p) => policies.insert(key, p),
                None => policies.remove(&key),
            }
        };
        if before.is_some() && before != policy {
            self.purge(tenant, Some(app), None);
        }
    }

    /// Removes entries: a tenant's, an app's, or those under a path.
    pub fn purge(&self, tenant: &str, app: Option<&str>, path: Option<&str>) -> usize {
        self.lock().purge(tenant, app, path)
    }

    /// The counters and size.
    pub fn report(&self) -> CacheReport {
        CacheReport {
            stats: self.lock().stats(),
            max_bytes: self.max_body * 4,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, EdgeCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether requests with this method to the app with host key `key`
    /// (`app.tenant`) go through the cache.
    pub fn applies(&self, key: &str, method: &hyper::Method) -> Option<StorePolicy> {
        if method != hyper::Method::GET && method != hyper::Method::HEAD {
            return None;
        }
        self.policies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
    }

    /// Answers `request` from the cache, or through `upstream` (the app,
    /// here or on another node), storing what may be stored.
    pub async fn serve<F, Fut>(
        &self,
        tenant: &str,
        app: &str,
        policy: StorePolicy,
        request: hyper::Request<Incoming>,
        upstream: F,
    ) -> hyper::Response<ResponseBody>
    where
        F: FnOnce(hyper::Request<Incoming>) -> Fut,
        Fut: Future<Output = hyper::Response<ResponseBody>>,
    {
        let (mut parts, body) = request.into_parts();
        let original = parts.clone();
        let key = CacheKey::for_request(tenant, app, &parts);
        let lookup = self.lock().lookup(&key, &parts, SystemTime::now());
        let token = match lookup {
            Lookup::Fresh(hit) => return cached(hit.into_response(), "hit"),
            Lookup::Revalidate { headers, token } => {
                parts.headers.extend(headers);
                Some(token)
            }
            Lookup::Miss => None,
        };
        let response = upstream(hyper::Request::from_parts(parts, body)).await;
        let (resp_parts, body) = response.into_parts();
        if let Some(token) = token
            && resp_parts.status == hyper::StatusCode::NOT_MODIFIED
        {
            let refreshed =
                self.lock()
                    .revalidated(token, &original, &resp_parts, SystemTime::now());
            if let Some(stored) = refreshed {
                return cached(stored.into_response(), "revalidated");
            }
        }
        if !worth_holding(&resp_parts, &policy) {
            let mut response = hyper::Response::from_parts(resp_parts, body);
            mark(&mut response, "bypass");
            return response;
        }
        match hold(body, self.max_body).await {
            Held::Whole(bytes) => {
                self.lock().store(
                    key,
                    &original,
                    &resp_parts,
                    bytes.clone(),
                    &policy,
                    SystemTime::now(),
                );
                let body = Full::new(bytes)
                    .map_err(|never| match never {})
                    .boxed_unsync();
                let mut response = hyper::Response::from_parts(resp_parts, body);
                mark(&mut response, "miss");
                response
            }
            Held::TooLong(body) => {
                let mut response = hyper::Response::from_parts(resp_parts, body);
                mark(&mut response, "bypass");
                response
            }
        }
    }
}

fn cached(response: hyper::Response<Bytes>, what: &'static str) -> hyper::Response<ResponseBody> {
    let mut response =
        response.map(|b| Full::new(b).map_err(|never| match never {}).boxed_unsync());
    mark(&mut response, what);
    response
}

fn mark(response: &mut hyper::Response<ResponseBody>, what: &'static str) {
    response
        .headers_mut()
        .insert(CACHE_HEADER, HeaderValue::from_static(what));
}

/// Whether the response might be stored, judged from its head alone, so
/// that answers that cannot be stored are never held back to find out.
fn worth_holding(parts: &hyper::http::response::Parts, policy: &StorePolicy) -> bool {
    let cc = parts
        .headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
        .to_ascii_lowercase();
    if cc.contains("no-store") || cc.contains("private") {
        return false;
    }
    let explicit = cc.contains("max-age") || cc.contains("s-maxage") || cc.contains("public");
    explicit
        || (!policy.stateful
            && (policy.default_ttl.is_some() || parts.headers.contains_key(EXPIRES)))
}

enum Held {
    /// The whole body, within the limit.
    Whole(Bytes),
    /// Over the limit (or failed): what was read, then the rest, as one body.
    TooLong(ResponseBody),
}

/// Reads `body` whole if it is at most `max` bytes.
async fn hold(mut body: ResponseBody, max: usize) -> Held {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    len += data.len();
                    chunks.push(data);
                    if len > max {
                        return Held::TooLong(prefixed(chunks, body));
                    }
                }
            }
            Some(Err(e)) => {
                // What came, then the error: the client sees the body fail
                // where it failed, and nothing is stored.
                let failed = futures_util::stream::once(async move { Err::<Frame<Bytes>, _>(e) });
                return Held::TooLong(prefixed(chunks, StreamBody::new(failed).boxed_unsync()));
            }
        }
    }
    let mut whole = bytes::BytesMut::with_capacity(len);
    for c in chunks {
        whole.extend_from_slice(&c);
    }
    Held::Whole(whole.freeze())
}

/// `chunks` followed by what is left of `rest`.
fn prefixed(chunks: Vec<Bytes>, rest: ResponseBody) -> ResponseBody {
    let prefix = futures_util::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, HttpError>(Frame::data(c))),
    );
    let rest = http_body_util::BodyStream::new(rest);
    StreamBody::new(futures_util::StreamExt::chain(prefix, rest)).boxed_unsync()
}

/// An app's rules from its record.
pub fn policy_of(record: &dwcp_store::AppRecord) -> StorePolicy {
    StorePolicy {
        default_ttl: record.cache_ttl_ms.map(Duration::from_millis),
        stateful: record.stateful.is_some(),
    }
}

/// `GET /v1/cache` and `POST /v1/cache/purge`.
pub fn routes() -> axum::Router<std::sync::Arc<crate::admin::AdminState>> {
    axum::Router::new()
        .route("/v1/cache", axum::routing::get(stats))
        .route("/v1/cache/purge", axum::routing::post(purge))
}

async fn stats(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<crate::admin::AdminState>>,
) -> axum::Json<CacheReport> {
    axum::Json(state.control.cache.report())
}

/// What a purge covers: everything, a tenant, an app, or a path under it.
#[derive(Debug, Clone, Default, serde::Deserialize, Serialize, PartialEq)]
pub struct PurgeScope {
    /// The tenant (none: every tenant).
    pub tenant: Option<String>,
    /// The app (needs the tenant).
    pub app: Option<String>,
    /// Paths starting with this (needs the app).
    pub path: Option<String>,
}

impl PurgeScope {
    /// Removes what the scope covers from `cache`; how many entries.
    pub fn apply(&self, cache: &NodeCache, tenants: &[String]) -> usize {
        match &self.tenant {
            Some(t) => cache.purge(t, self.app.as_deref(), self.path.as_deref()),
            None => tenants.iter().map(|t| cache.purge(t, None, None)).sum(),
        }
    }
}

async fn purge(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<crate::admin::AdminState>>,
    axum::extract::Query(scope): axum::extract::Query<PurgeScope>,
) -> Result<axum::Json<serde_json::Value>, (hyper::StatusCode, String)> {
    let bad = |why: &str| (hyper::StatusCode::BAD_REQUEST, why.to_string());
    if scope.app.is_some() && scope.tenant.is_none() {
        return Err(bad("an app purge names its tenant (TENANT/APP)"));
    }
    if scope.path.is_some() && scope.app.is_none() {
        return Err(bad("--path needs TENANT/APP"));
    }
    if scope.path.as_deref().is_some_and(|p| !p.starts_with('/')) {
        return Err(bad("--path starts with `/`"));
    }
    let tenants: Vec<String> = state
        .control
        .state
        .tenants()
        .map_err(|e| (hyper::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let removed = scope.apply(&state.control.cache, &tenants);
    // Every other node purges too, when it hears of it.
    if let Some(publisher) = &state.publisher {
        publisher.purge(scope.clone());
    }
    Ok(axum::Json(serde_json::json!({
        "removed_here": removed,
        "cluster": state.publisher.is_some(),
    })))
}
