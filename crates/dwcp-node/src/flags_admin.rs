//! The admin API's feature-flag routes (`/v1/flags/TENANT…`, what
//! `dwcp flags` speaks) and OFREP, the OpenFeature Remote Evaluation
//! Protocol (`/ofrep/v1/evaluate/flags…`), on the admin address.
//!
//! A tenant's token reaches its own tenant's flags only, and evaluates its
//! own tenant's flags over OFREP. A node-wide token names the tenant to
//! evaluate with the `x-dwcp-tenant` header (what OpenFeature SDKs can be
//! configured to send) or a `?tenant=` query; neither means `default`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use dwcp_release::flags::{ErrorCode, Resolution};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::admin::{AdminState, ApiError, ApiResult, blocking};
use crate::auth::{Caller, Scope};
use crate::flags::{FlagRow, FlagsError, ImportReport};

/// The header a node-wide token names the OFREP tenant with.
pub const TENANT_HEADER: &str = "x-dwcp-tenant";

/// The flag routes and the OFREP endpoints.
pub fn routes() -> Router<Arc<AdminState>> {
    use axum::routing::{get, post};
    Router::new()
        .route(
            "/v1/flags/{tenant}",
            get(export).put(import).delete(delete_all),
        )
        .route("/v1/flags/{tenant}/flags", get(list))
        .route(
            "/v1/flags/{tenant}/flags/{key}",
            get(get_flag)
                .put(set_flag)
                .post(create_flag)
                .delete(delete_flag),
        )
        .route("/v1/flags/{tenant}/flags/{key}/enable", post(enable))
        .route("/v1/flags/{tenant}/flags/{key}/disable", post(disable))
        .route("/v1/flags/{tenant}/flags/{key}/rollout", post(rollout))
        .route("/ofrep/v1/evaluate/flags", post(ofrep_bulk))
        .route("/ofrep/v1/evaluate/flags/{key}", post(ofrep_one))
}

impl From<FlagsError> for ApiError {
    fn from(e: FlagsError) -> Self {
        let status = match &e {
            FlagsError::Invalid(_) | FlagsError::BadRequest(_) => StatusCode::BAD_REQUEST,
            FlagsError::NoFlag { .. } => StatusCode::NOT_FOUND,
            FlagsError::Exists { .. } => StatusCode::CONFLICT,
            FlagsError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

/// Checks the tenant's name, and that the caller may reach it (the token
/// middleware checks it too; this keeps the rule next to the routes).
fn tenant_of(caller: Option<&Extension<Caller>>, tenant: &str) -> Result<(), ApiError> {
    dwcp_store::validate_label(tenant)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    match caller.map(|c| &c.0.scope) {
        Some(Scope::Node) => Ok(()),
        Some(Scope::Tenant(own)) if own == tenant => Ok(()),
        Some(Scope::Tenant(own)) => Err(ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "this token is scoped to tenant {own}: it cannot reach tenant {tenant}'s flags"
            ),
        )),
        None => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "this call needs a token".into(),
        )),
    }
}

fn utf8(body: &Bytes, what: &str) -> Result<String, ApiError> {
    String::from_utf8(body.to_vec()).map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("flags refused, nothing changed: the {what} is not UTF-8 text"),
        )
    })
}

async fn export(
    State(state): State<Arc<AdminState>>,
    caller: Option<Extension<Caller>>,
    Path(tenant): Path<String>,
) -> Result<Response, ApiError> {
    tenant_of(caller.as_ref(), &tenant)?;
    let text = state.flags.export(&tenant);
    Ok(([(header::CONTENT_TYPE, "application/json")], text).into_response())
}

#[derive(Deserialize)]
struct ImportQuery {
    #[serde(default)]
    merge: bool,
}

async fn import(
    State(state): State<Arc<AdminState>>,
    caller: Option<Extension<Caller>>,
    Path(tenant): Path<String>,
    Query(q): Query<ImportQuery>,
    body: Bytes,
) -> ApiResult<ImportReport> {
    tenant_of(caller.as_ref(), &tenant)?;
    let text = utf8(&body, "document")?;
    let flags = state.flags.clone();
    let report = blocking(move || flags.import(&tenant, &text, q.merge)).await?;
    Ok(Json(report))
}

async fn delete_all(
    State(state): State<Arc<AdminState>>,
    caller: Option<Extension<Caller>>,
    Path(tenant): Path<String>,
) -> ApiResult<Value> {
    tenant_of(caller.as_ref(), &tenant)?;
    let flags = state.flags.clone();
    let name = tenant.clone();
    let removed = blocking(move || flags.delete_all(&name)).await?;
    Ok(Json(json!({ "tenant": tenant, "removed": removed })))
}

async fn list(
    State(state): State<Arc<AdminState>>,
    caller: Option<Extension<Caller>>,
    Path(tenant): Path<String>,
) -> ApiResult<Vec<FlagRow>> {
    tenant_of(caller.as_ref(), &tenant)?;
    Ok(Json(state.flags.list(&tenant)))
}

async fn get_flag(
    State(state): State<Arc<AdminState>>,
    caller: Option<Extension<Caller>>,
    Path((tenant, key)): Path<(String, String)>,
) -> ApiResult<Value> {
    tenant_of(caller.as_ref(), &tenant)?;
    Ok(Json(state.flags.get(&tenant, &key)?))
}

async fn set_flag(
    State(state): State<Arc<AdminState>>,
    caller: Option<Extension<Caller>>,
    Path((tenant, key)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Value> {
    tenant_of(caller.as_ref(), &tenant)?;
    let text = utf8(&body, "flag")?;
    let flags = state.flags.clone();
    Ok(Json(
        blocking(move || flags.set(&tenant, &key, &text)).await?,
    ))
}

async fn create_flag(
    State(state): State<Arc<AdminState>>,
    caller: Option<Extension<Caller>>,
    Path((tenant, key)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    tenant_of(caller.as_ref(), &tenant)?;
    let flags = state.flags.clone();
    let def = blocking(move || flags.create(&tenant, &key)).await?;
    Ok((StatusCode::CREATED, Json(def)))
}

async fn delete_flag(
    State(state): State<Arc<AdminState>>,
    caller: Option<Extension<Caller>>,
    Path((tenant, key)): Path<(String, String)>,
) -> ApiResult<Value> {
    tenant_of(caller.as_ref(), &tenant)?;
    let flags = state.flags.clone();
    let deleted = key.clone();
    blocking(move || flags.delete(&tenant, &key)).await?;
    Ok(Json(json!({ "deleted": deleted })))
}

async fn enable(
    State(state): State<Arc<AdminState>>,
    caller: Option<Extension<Caller>>,
    Path((tenant, key)): Path<(String, String)>,
) -> ApiResult<Value> {
    set_enabled(state, caller, tenant, key, true).await
}

async fn disable(
    State(state): State<Arc<AdminState>>,
    caller: Option<Extension<Caller>>,
    Path((tenant, key)): Path<(String, String)>,
) -> ApiResult<Value> {
    set_enabled(state, caller, tenant, key, false).await
}

async fn set_enabled(
    state: Arc<AdminState>,
    caller: Option<Extension<Caller>>,
    tenant: String,
    key: String,
    enabled: bool,
) -> ApiResult<Value> {
    tenant_of(caller.as_ref(), &tenant)?;
    let flags = state.flags.clone();
    Ok(Json(
        blocking(move || flags.set_enabled(&tenant, &key, enabled)).await?,
    ))
}

#[derive(Deserialize)]
struct RolloutQuery {
    percent: Option<u32>,
}

async fn rollout(
    State(state): State<Arc<AdminState>>,
    caller: Option<Extension<Caller>>,
    Path((tenant, key)): Path<(String, String)>,
    Query(q): Query<RolloutQuery>,
) -> ApiResult<Value> {
    tenant_of(caller.as_ref(), &tenant)?;
    let Some(percent) = q.percent else {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "a rollout needs ?percent=P, a whole number from 0 to 100".into(),
        ));
    };
    let flags = state.flags.clone();
    Ok(Json(
        blocking(move || flags.rollout(&tenant, &key, percent)).await?,
    ))
}

// ---- OFREP ---------------------------------------------------------------

#[derive(Deserialize)]
struct OfrepQuery {
    tenant: Option<String>,
}

/// The tenant whose flags an OFREP call evaluates: a tenant token's own;
/// for a node-wide token the one named by `x-dwcp-tenant` or `?tenant=`,
/// else `default`.
fn ofrep_tenant(
    caller: Option<&Extension<Caller>>,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    let header = match headers.get(TENANT_HEADER) {
        None => None,
        Some(v) => Some(v.to_str().map(str::trim).map_err(|_| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("{TENANT_HEADER} must be a tenant name"),
            )
        })?),
    };
    let named = match (query, header) {
        (Some(q), Some(h)) if q != h => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("?tenant={q} and {TENANT_HEADER}: {h} disagree: give one of them"),
            ));
        }
        (q, h) => q.or(h),
    };
    match caller.map(|c| &c.0.scope) {
        Some(Scope::Tenant(own)) => match named {
            Some(other) if other != own => Err(ApiError(
                StatusCode::FORBIDDEN,
                format!(
                    "this token is scoped to tenant {own}: it cannot evaluate tenant {other}'s flags"
                ),
            )),
            _ => Ok(own.clone()),
        },
        Some(Scope::Node) => {
            let tenant = named.unwrap_or("default");
            dwcp_store::validate_label(tenant)
                .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
            Ok(tenant.to_string())
        }
        None => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "this call needs a token".into(),
        )),
    }
}

/// An OFREP error body.
fn failure(key: Option<&str>, code: &str, details: String) -> Value {
    let mut body = Map::new();
    if let Some(key) = key {
        body.insert("key".into(), Value::from(key));
    }
    body.insert("errorCode".into(), Value::from(code));
    body.insert("errorDetails".into(), Value::from(details));
    Value::Object(body)
}

/// The evaluation context of an OFREP request body (`{"context": {...}}`);
/// no body or no context is an empty one.
#[allow(clippy::result_large_err)]
fn context_of(body: &Bytes, key: Option<&str>) -> Result<Value, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    let request: Value = serde_json::from_slice(body).map_err(|e| {
        let details = format!(
            "the request body is not JSON ({e}): send {{\"context\": {{\"targetingKey\": \"…\"}}}}"
        );
        (
            StatusCode::BAD_REQUEST,
            Json(failure(key, "PARSE_ERROR", details)),
        )
            .into_response()
    })?;
    let invalid = |what: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(failure(
                key,
                "INVALID_CONTEXT",
                format!("{what}: send {{\"context\": {{\"targetingKey\": \"…\", …}}}}"),
            )),
        )
            .into_response()
    };
    match request {
        Value::Object(mut fields) => match fields.remove("context") {
            None | Some(Value::Null) => Ok(Value::Object(Map::new())),
            Some(context @ Value::Object(_)) => Ok(context),
            Some(_) => Err(invalid("the context must be a JSON object")),
        },
        _ => Err(invalid("the request body must be a JSON object")),
    }
}

/// What an error code means here, for `errorDetails`.
fn details(code: ErrorCode, key: &str, tenant: &str) -> String {
    match code {
        ErrorCode::FlagNotFound => format!("no flag `{key}` in tenant `{tenant}`"),
        ErrorCode::ParseError => {
            format!("flag `{key}`'s targeting cannot be evaluated: fix it with `dwcp flags set`")
        }
        ErrorCode::TypeMismatch => format!("flag `{key}`'s value has another type"),
        ErrorCode::General => format!(
            "flag `{key}`'s targeting chose no variant it has, or gave something other than a variant name"
        ),
    }
}

/// One flag's result as OFREP writes it: `{key, value, reason, variant,
/// metadata}`, without `value` when the caller's code default applies (a
/// disabled flag), or `{key, errorCode, errorDetails}`.
fn evaluation(key: &str, tenant: &str, r: Resolution) -> Result<Value, (ErrorCode, Value)> {
    if let Some(code) = r.error {
        let body = failure(Some(key), code.as_str(), details(code, key, tenant));
        return Err((code, body));
    }
    let mut body = Map::new();
    body.insert("key".into(), Value::from(key));
    if let Some(value) = r.value {
        body.insert("value".into(), value);
    }
    body.insert("reason".into(), Value::from(r.reason.as_str()));
    if let Some(variant) = r.variant {
        body.insert("variant".into(), Value::from(variant));
    }
    body.insert("metadata".into(), Value::Object(r.metadata));
    Ok(Value::Object(body))
}

async fn ofrep_one(
    State(state): State<Arc<AdminState>>,
    caller: Option<Extension<Caller>>,
    Path(key): Path<String>,
    Query(q): Query<OfrepQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tenant = ofrep_tenant(caller.as_ref(), q.tenant.as_deref(), &headers)?;
    let context = match context_of(&body, Some(&key)) {
        Ok(context) => context,
        Err(response) => return Ok(response),
    };
    let resolution = state.flags.evaluate(&tenant, &key, &context);
    Ok(match evaluation(&key, &tenant, resolution) {
        Ok(body) => Json(body).into_response(),
        Err((ErrorCode::FlagNotFound, body)) => (StatusCode::NOT_FOUND, Json(body)).into_response(),
        Err((_, body)) => (StatusCode::BAD_REQUEST, Json(body)).into_response(),
    })
}

async fn ofrep_bulk(
    State(state): State<Arc<AdminState>>,
    caller: Option<Extension<Caller>>,
    Query(q): Query<OfrepQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tenant = ofrep_tenant(caller.as_ref(), q.tenant.as_deref(), &headers)?;
    let context = match context_of(&body, None) {
        Ok(context) => context,
        Err(response) => return Ok(response),
    };
    let flags: Vec<Value> = state
        .flags
        .evaluate_all(&tenant, &context)
        .into_iter()
        .map(|(key, r)| evaluation(&key, &tenant, r).unwrap_or_else(|(_, body)| body))
        .collect();
    let body = json!({ "flags": flags }).to_string();
    // The ETag names this answer, so a client polling with If-None-Match
    // gets 304 while nothing it would see has changed.
    let etag = format!("\"{}\"", &dwcp_store::sha256_hex(body.as_bytes())[..32]);
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let etag = HeaderValue::from_str(&etag)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(scope: Scope) -> Option<Extension<Caller>> {
        Some(Extension(Caller {
            scope,
            token_id: "t".into(),
        }))
    }

    #[test]
    fn ofrep_tenants_follow_the_token() {
        let none = HeaderMap::new();
        let mut named = HeaderMap::new();
        named.insert(TENANT_HEADER, HeaderValue::from_static("beta"));
        let acme = caller(Scope::Tenant("acme".into()));
        let node = caller(Scope::Node);
        let tenant = |c: &Option<Extension<Caller>>, q: Option<&str>, h: &HeaderMap| {
            ofrep_tenant(c.as_ref(), q, h).map_err(|e| e.0)
        };
        assert_eq!(tenant(&acme, None, &none), Ok("acme".into()));
        assert_eq!(tenant(&acme, Some("acme"), &none), Ok("acme".into()));
        assert_eq!(tenant(&acme, None, &named), Err(StatusCode::FORBIDDEN));
        assert_eq!(tenant(&node, None, &none), Ok("default".into()));
        assert_eq!(tenant(&node, None, &named), Ok("beta".into()));
        assert_eq!(tenant(&node, Some("gamma"), &none), Ok("gamma".into()));
        assert_eq!(
            tenant(&node, Some("gamma"), &named),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(tenant(&None, None, &none), Err(StatusCode::UNAUTHORIZED));
    }
}
