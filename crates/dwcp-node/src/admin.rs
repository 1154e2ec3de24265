//! The admin API: JSON over HTTP, what the CLI speaks. Documented in
//! `docs/cli.md`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use dwcp_store::AppId;
use serde::Deserialize;

use crate::control::{Control, ControlError, DeployOptions};
use crate::metrics::NodeMetrics;
use crate::rollout_admin::StrategyQuery;

/// What the admin handlers share.
pub struct AdminState {
    pub control: Arc<Control>,
    pub metrics: Arc<NodeMetrics>,
    pub ready: AtomicBool,
    /// Turns true when the node stops: long responses (`logs --follow`) end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// The admin API's tokens.
    pub tokens: Arc<crate::auth::TokenStore>,
    /// Whether `/metrics` answers without a token.
    pub metrics_public: bool,
    /// Which publisher keys the node trusts.
    pub trust: Arc<crate::trust::TrustStore>,
    /// Each tenant's feature flags.
    pub flags: Arc<crate::flags::FlagStore>,
    /// The cluster's members as this node sees them.
    pub members: Arc<crate::cluster::Members>,
    /// Where changes made here go to reach the cluster (`None`: alone).
    pub publisher: Option<Arc<crate::desired::Publisher>>,
    /// Sends requests to other nodes (set once the ingress is built).
    pub forwarder: std::sync::OnceLock<Arc<crate::peer::Forwarder>>,
    /// Moves stateful apps' keys to other nodes (set with the forwarder,
    /// in a cluster).
    pub migrations: std::sync::OnceLock<Arc<crate::migrate::Migrations>>,
}

/// The admin API's routes; uploads up to `max_upload` bytes.
pub fn router(state: Arc<AdminState>, max_upload: usize) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/apps", get(list_apps))
        .route(
            "/v1/apps/{tenant}/{app}",
            get(app_status).delete(delete_app).patch(set_limits),
        )
        .route("/v1/apps/{tenant}/{app}/restart", post(restart_app))
        .route("/v1/apps/{tenant}/{app}/config", get(list_config))
        .route(
            "/v1/apps/{tenant}/{app}/config/{key}",
            put(set_config).delete(unset_config),
        )
        .route("/v1/apps/{tenant}/{app}/secrets", get(list_secrets))
        .route(
            "/v1/apps/{tenant}/{app}/secrets/{name}",
            put(set_secret).delete(unset_secret),
        )
        .route("/v1/tenants", get(list_tenants))
        .route(
            "/v1/tenants/{tenant}",
            post(create_tenant).delete(delete_tenant),
        )
        .route("/v1/tenants/{tenant}/quota", put(set_quota))
        .route(
            "/v1/apps/{tenant}/{app}/versions",
            get(app_versions).post(deploy),
        )
        .route(
            "/v1/apps/{tenant}/{app}/snapshots",
            get(list_snapshots).post(take_snapshots),
        )
        .route(
            "/v1/apps/{tenant}/{app}/snapshots/restore",
            post(restore_snapshots),
        )
        .route("/v1/audit", get(audit_log))
        .route("/v1/gc", post(gc))
        .merge(crate::observe::routes())
        .merge(crate::backup::routes())
        .merge(crate::auth::routes())
        .merge(crate::keys_admin::routes())
        .merge(crate::rollout_admin::routes())
        .merge(crate::flags_admin::routes())
        .merge(crate::nodes_admin::routes())
        .merge(crate::edge_cache::routes())
        .layer(DefaultBodyLimit::max(max_upload))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::desired::publish_changes,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), audit))
        // Outermost: a call without a valid token is neither run nor audited.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::require_token,
        ))
        .merge(crate::dashboard::routes())
        .with_state(state)
}

/// An error as the API reports it: a status and `{"error": "..."}`.
pub(crate) struct ApiError(pub StatusCode, pub String);

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let status = match &e {
            ControlError::Name(_) | ControlError::BadOption(_) => StatusCode::BAD_REQUEST,
            ControlError::Deploy(dwcp_runtime::DeployError::Io(_)) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ControlError::Deploy(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ControlError::NoApp(_) | ControlError::NoTenant(_) | ControlError::NotFound(_) => {
                StatusCode::NOT_FOUND
            }
            ControlError::VersionExists(..)
            | ControlError::TenantExists(_)
            | ControlError::OverQuota(_)
            | ControlError::StoredNotServing(_) => StatusCode::CONFLICT,
            ControlError::Store(_) | ControlError::Io(_) | ControlError::Secret(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.1 });
        (self.0, axum::Json(body)).into_response()
    }
}

pub(crate) type ApiResult<T> = Result<axum::Json<T>, ApiError>;

/// Runs `work` on the blocking pool (file writes, SLH-DSA signatures),
/// its error turned into the API's.
pub(crate) async fn blocking<T: Send + 'static, E: Into<ApiError> + Send + 'static>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(Into::into)
}

async fn readyz(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

#[derive(Deserialize)]
struct TenantQuery {
    tenant: Option<String>,
}

async fn list_apps(
    State(state): State<Arc<AdminState>>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Vec<crate::AppSummary>> {
    // A tenant's token lists its own apps, whatever it asked for.
    let tenant = match caller.as_ref().map(|c| &c.0.scope) {
        Some(crate::auth::Scope::Tenant(own)) => Some(own.as_str()),
        _ => q.tenant.as_deref(),
    };
    Ok(axum::Json(state.control.list(tenant)?))
}

pub(crate) fn app_id(tenant: &str, app: &str) -> Result<AppId, ApiError> {
    AppId::new(tenant, app).map_err(|e| ControlError::from(e).into())
}

async fn app_status(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app)): Path<(String, String)>,
) -> ApiResult<crate::AppStatus> {
    Ok(axum::Json(state.control.status(&app_id(&tenant, &app)?)?))
}

async fn app_versions(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app)): Path<(String, String)>,
) -> ApiResult<Vec<crate::VersionInfo>> {
    Ok(axum::Json(state.control.versions(&app_id(&tenant, &app)?)?))
}

async fn delete_app(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let record = state.control.delete(&app_id(&tenant, &app)?).await?;
    Ok(axum::Json(serde_json::json!({
        "tenant": record.tenant,
        "app": record.app,
        "deleted_versions": record.versions.len(),
    })))
}

/// Query of a deploy: sizes and durations in the CLI's own forms
/// (`64MiB`, `1s`), so that `curl` users write what CLI users do.
#[derive(Deserialize)]
struct DeployQuery {
    version: Option<String>,
    memory: Option<String>,
    deadline: Option<String>,
    concurrency: Option<u32>,
    reuse: Option<u32>,
    preinit: Option<String>,
    #[serde(default)]
    stateful: bool,
    key_header: Option<String>,
    checkpoint: Option<String>,
    keep_checkpoints: Option<u32>,
    hibernate_after: Option<String>,
    replicas: Option<u32>,
    region: Option<String>,
}

impl DeployQuery {
    /// The stateful settings a deploy asks for (`None`: not `--stateful`).
    fn stateful(&self) -> Result<Option<dwcp_store::StatefulSettings>, ControlError> {
        if !self.stateful {
            if self.key_header.is_some()
                || self.checkpoint.is_some()
                || self.keep_checkpoints.is_some()
                || self.hibernate_after.is_some()
            {
                return Err(ControlError::BadOption(
                    "--key-header, --checkpoint, --keep-checkpoints and --hibernate-after go with --stateful".into(),
                ));
            }
            return Ok(None);
        }
        let duration = |flag: &str, d: &str| {
            humantime::parse_duration(d)
                .map(|d| d.as_millis() as u64)
                .map_err(|e| {
                    ControlError::BadOption(format!(
                        "{flag} `{d}`: {e} (write it as `5s` or `10m`)"
                    ))
                })
        };
        let mut settings = dwcp_store::StatefulSettings::default();
        if let Some(header) = &self.key_header {
            let header = header.to_ascii_lowercase();
            if hyper::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err(ControlError::BadOption(format!(
                    "--key-header `{header}` is not a valid header name"
                )));
            }
            settings.key_header = header;
        }
        match self.checkpoint.as_deref() {
            None | Some("request") => {}
            Some(every) => {
                let ms = duration("--checkpoint", every)?;
                if ms == 0 {
                    return Err(ControlError::BadOption(
                        "--checkpoint must be `request` or a positive duration".into(),
                    ));
                }
                settings.checkpoint_interval_ms = Some(ms);
            }
        }
        if let Some(keep) = self.keep_checkpoints {
            if keep == 0 || keep > 1000 {
                return Err(ControlError::BadOption(
                    "--keep-checkpoints must be between 1 and 1000".into(),
                ));
            }
            settings.keep = keep;
        }
        if let Some(after) = &self.hibernate_after {
            settings.hibernate_after_ms = duration("--hibernate-after", after)?.max(1);
        }
        Ok(Some(settings))
    }

    fn options(self) -> Result<DeployOptions, ControlError> {
        let stateful = self.stateful()?;
        let memory_bytes = self
            .memory
            .map(|m| parse_size(&m).map_err(|e| format!("--memory: {e}")))
            .transpose()
            .map_err(ControlError::BadOption)?;
        let deadline_ms = self
            .deadline
            .map(|d| {
                humantime::parse_duration(&d)
                    .map(|d| d.as_millis() as u64)
                    .map_err(|e| format!("--deadline `{d}`: {e} (write it as `500ms` or `2s`)"))
            })
            .transpose()
            .map_err(ControlError::BadOption)?;
        let regions = self
            .region
            .map(|r| {
                r.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .map(|r: Vec<String>| if r == ["any"] { Vec::new() } else { r });
        Ok(DeployOptions {
            stateful,
            replicas: self.replicas,
            regions,
            version: self.version,
            memory_bytes,
            deadline_ms,
            concurrency: self.concurrency,
            reuse: self.reuse,
            preinit: self.preinit.filter(|f| !f.is_empty()),
            ..DeployOptions::default()
        })
    }
}

/// Parses a size such as `64MiB`, `1GiB`, `512k` or `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("size `{s}`: {e} (write it as `64MiB` or `1GiB`)"))
}

async fn deploy(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app)): Path<(String, String)>,
    Query(q): Query<DeployQuery>,
    Query(release): Query<StrategyQuery>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let id = app_id(&tenant, &app)?;
    let mut options = q.options()?;
    (options.strategy, options.analysis) = release.parse()?;
    // Hashed once here, on the blocking pool (uploads reach 256 MiB); the
    // signature covers this hash, and the deploy stores the artifact under it.
    let to_hash = body.clone();
    let sha256 = blocking(move || Ok::<_, ApiError>(dwcp_store::sha256_hex(&to_hash))).await?;
    let signed_by = crate::keys_admin::check_upload(
        &state,
        &headers,
        &tenant,
        &app,
        options.version.as_deref(),
        &sha256,
    )?;
    let signature = headers
        .get(crate::keys_admin::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim()
        .to_string();
    options.uploaded = Some(crate::control::Uploaded {
        sha256,
        key_id: signed_by,
        signature,
    });
    let outcome = state.control.deploy(&id, body.to_vec(), options).await?;
    Ok((StatusCode::CREATED, axum::Json(outcome)))
}

/// Query of `PATCH /v1/apps/T/A`: the limits to change, and egress rules
/// to add (comma-separated).
#[derive(Deserialize)]
struct LimitsQuery {
    memory: Option<String>,
    deadline: Option<String>,
    concurrency: Option<u32>,
    reuse: Option<u32>,
    allow_host: Option<String>,
    allow_private: Option<String>,
    clear_egress: Option<bool>,
    keep_versions: Option<u32>,
    user_header: Option<String>,
    user_cookie: Option<String>,
    replicas: Option<u32>,
    pin_region: Option<String>,
    cache_ttl: Option<String>,
}

async fn set_limits(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app)): Path<(String, String)>,
    Query(q): Query<LimitsQuery>,
    Query(release): Query<StrategyQuery>,
) -> ApiResult<crate::AppStatus> {
    let id = app_id(&tenant, &app)?;
    let list = |v: Option<String>| -> Vec<String> {
        v.map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
    };
    let mut options = DeployQuery {
        version: None,
        memory: q.memory,
        deadline: q.deadline,
        concurrency: q.concurrency,
        reuse: q.reuse,
        preinit: None,
        stateful: false,
        key_header: None,
        checkpoint: None,
        keep_checkpoints: None,
        hibernate_after: None,
        replicas: q.replicas,
        region: q.pin_region,
    }
    .options()?;
    (options.strategy, options.analysis) = release.parse()?;
    options.user_header = q.user_header;
    options.user_cookie = q.user_cookie;
    options.allow_hosts = list(q.allow_host);
    options.allow_private = list(q.allow_private);
    options.clear_egress = q.clear_egress.unwrap_or(false);
    options.keep_versions = q.keep_versions;
    options.cache_ttl_ms = match q.cache_ttl.as_deref() {
        None => None,
        Some("off" | "0") => Some(0),
        Some(d) => Some(
            humantime::parse_duration(d)
                .map_err(|e| {
                    ControlError::BadOption(format!(
                        "--cache-ttl `{d}`: {e} (write it as `30s` or `5m`, or `off`)"
                    ))
                })?
                .as_millis() as u64,
        ),
    };
    Ok(axum::Json(state.control.set_limits(&id, options).await?))
}

/// Query of the snapshot endpoints: one key, or all; one checkpoint.
#[derive(Deserialize)]
struct SnapshotQuery {
    key: Option<String>,
    seq: Option<u64>,
}

async fn list_snapshots(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app)): Path<(String, String)>,
    Query(q): Query<SnapshotQuery>,
) -> ApiResult<Vec<crate::KeyCheckpoint>> {
    let id = app_id(&tenant, &app)?;
    Ok(axum::Json(
        state.control.list_snapshots(&id, q.key.as_deref())?,
    ))
}

async fn take_snapshots(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app)): Path<(String, String)>,
    Query(q): Query<SnapshotQuery>,
) -> ApiResult<Vec<crate::KeyCheckpoint>> {
    let id = app_id(&tenant, &app)?;
    Ok(axum::Json(
        state.control.snapshot_keys(&id, q.key.as_deref()).await?,
    ))
}

async fn restore_snapshots(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app)): Path<(String, String)>,
    Query(q): Query<SnapshotQuery>,
) -> ApiResult<Vec<crate::KeyCheckpoint>> {
    let id = app_id(&tenant, &app)?;
    Ok(axum::Json(
        state
            .control
            .restore_keys(&id, q.key.as_deref(), q.seq)
            .await?,
    ))
}

async fn restart_app(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let id = app_id(&tenant, &app)?;
    state.control.restart(&id).await?;
    Ok(axum::Json(
        serde_json::json!({ "tenant": id.tenant, "app": id.app, "restarted": true }),
    ))
}

async fn list_tenants(
    State(state): State<Arc<AdminState>>,
) -> ApiResult<Vec<crate::TenantSummary>> {
    Ok(axum::Json(state.control.tenants()?))
}

async fn create_tenant(
    State(state): State<Arc<AdminState>>,
    Path(tenant): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let record = state.control.create_tenant(&tenant).await?;
    Ok((StatusCode::CREATED, axum::Json(record)))
}

async fn delete_tenant(
    State(state): State<Arc<AdminState>>,
    Path(tenant): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let apps = state.control.delete_tenant(&tenant).await?;
    // Its flags went with it in the store; the node stops evaluating them.
    state.flags.forget(&tenant);
    Ok(axum::Json(
        serde_json::json!({ "tenant": tenant, "deleted_apps": apps }),
    ))
}

/// Query of `PUT /v1/tenants/T/quota`: the whole quota; a field left out
/// means no limit.
#[derive(Deserialize)]
struct QuotaQuery {
    memory: Option<String>,
    instances: Option<u32>,
}

async fn set_quota(
    State(state): State<Arc<AdminState>>,
    Path(tenant): Path<String>,
    Query(q): Query<QuotaQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let memory_bytes = q
        .memory
        .map(|m| parse_size(&m).map_err(|e| format!("--memory: {e}")))
        .transpose()
        .map_err(ControlError::BadOption)?;
    let quota = dwcp_store::TenantQuota {
        memory_bytes,
        instances: q.instances,
    };
    Ok(axum::Json(state.control.set_quota(&tenant, quota).await?))
}

async fn list_config(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app)): Path<(String, String)>,
) -> ApiResult<std::collections::BTreeMap<String, String>> {
    Ok(axum::Json(state.control.config(&app_id(&tenant, &app)?)?))
}

/// The value is the request body, never the URL: URLs end up in logs.
async fn set_config(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app, key)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let id = app_id(&tenant, &app)?;
    let value = String::from_utf8(body.to_vec())
        .map_err(|_| ControlError::BadOption(format!("config `{key}` is not UTF-8 text")))?;
    state.control.set_config(&id, &key, Some(value)).await?;
    Ok(axum::Json(serde_json::json!({ "key": key })))
}

async fn unset_config(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app, key)): Path<(String, String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let id = app_id(&tenant, &app)?;
    state.control.set_config(&id, &key, None).await?;
    Ok(axum::Json(serde_json::json!({ "key": key })))
}

async fn list_secrets(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app)): Path<(String, String)>,
) -> ApiResult<Vec<String>> {
    Ok(axum::Json(
        state.control.secret_names(&app_id(&tenant, &app)?)?,
    ))
}

async fn set_secret(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app, name)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let id = app_id(&tenant, &app)?;
    state
        .control
        .set_secret(&id, &name, Some(body.to_vec()))
        .await?;
    Ok(axum::Json(serde_json::json!({ "name": name })))
}

async fn unset_secret(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app, name)): Path<(String, String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let id = app_id(&tenant, &app)?;
    state.control.set_secret(&id, &name, None).await?;
    Ok(axum::Json(serde_json::json!({ "name": name })))
}

/// Appends every admin action (anything but a read) to the audit log with
/// its outcome. Values (config, secrets, components) travel in bodies, so
/// the method and URL logged here never hold a secret.
async fn audit(
    State(state): State<Arc<AdminState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().clone();
    // Reads change nothing; OFREP evaluations are POSTs that read too
    // (auditing each would be a disk commit per flag lookup).
    let reads = method == axum::http::Method::GET
        || method == axum::http::Method::HEAD
        || request.uri().path().starts_with("/ofrep/");
    if reads {
        return next.run(request).await;
    }
    let action = format!("{method} {}", request.uri());
    let token = request
        .extensions()
        .get::<crate::auth::Caller>()
        .map(|c| c.token_id.clone());
    // In a task of its own: a client that hangs up mid-deploy drops this
    // future, but the deploy goes on, and so must its audit entry.
    let task = tokio::spawn(async move {
        let response = next.run(request).await;
        let status = response.status().as_u16();
        let control = state.control.clone();
        let _ = tokio::task::spawn_blocking(move || control.audit(action, token, status)).await;
        response
    });
    match task.await {
        Ok(response) => response,
        Err(e) => ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("admin task failed: {e}"),
        )
        .into_response(),
    }
}

#[derive(Deserialize)]
struct SinceQuery {
    /// Unix seconds.
    since: Option<u64>,
}

async fn audit_log(
    State(state): State<Arc<AdminState>>,
    Query(q): Query<SinceQuery>,
) -> ApiResult<Vec<dwcp_store::AuditEntry>> {
    Ok(axum::Json(state.control.audit_since(q.since.unwrap_or(0))?))
}

#[derive(Deserialize)]
struct GcQuery {
    #[serde(default)]
    dry_run: bool,
}

async fn gc(
    State(state): State<Arc<AdminState>>,
    Query(q): Query<GcQuery>,
) -> ApiResult<crate::GcReport> {
    Ok(axum::Json(state.control.gc(q.dry_run).await?))
}
