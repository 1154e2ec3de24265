//! The admin API's keys and trust routes, and the check of a deploy's
//! signature.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use dwcp_crypto::keyfile::KeyRole;
use dwcp_crypto::trust::{KeyStatus, TrustError, TrustedKey};
use serde::{Deserialize, Serialize};

use crate::admin::{AdminState, ApiError, blocking};
use crate::trust::{TrustStoreError, parse_public_key};

/// Header carrying the id of the publisher key that signed an upload.
pub const KEY_ID_HEADER: &str = "x-dwcp-key-id";
/// Header carrying the upload's signature (base64).
pub const SIGNATURE_HEADER: &str = "x-dwcp-signature";

pub(crate) fn routes() -> axum::Router<Arc<AdminState>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v1/keys", get(list_keys).post(trust_key))
        .route("/v1/keys/{id}/revoke", post(revoke_key))
        .route("/v1/keys/{id}/rotate", post(rotate_key))
        .route("/v1/trust", get(signed_manifest))
        .route("/v1/node/rotate-key", post(rotate_node_key))
        .route("/v1/root/rotate", post(rotate_root))
}

impl From<TrustStoreError> for ApiError {
    fn from(e: TrustStoreError) -> Self {
        let status = match &e {
            TrustStoreError::Trust(TrustError::Untrusted(_)) => StatusCode::NOT_FOUND,
            TrustStoreError::Trust(_) => StatusCode::UNPROCESSABLE_ENTITY,
            TrustStoreError::NoRootKey => StatusCode::CONFLICT,
            TrustStoreError::BadInput(_) => StatusCode::BAD_REQUEST,
            TrustStoreError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

/// Checks an upload's signature: the statement binds the artifact's
/// SHA-256 to tenant, app and version. Returns the signing key's id.
pub(crate) fn check_upload(
    state: &AdminState,
    headers: &HeaderMap,
    tenant: &str,
    app: &str,
    version: Option<&str>,
    sha256: &str,
) -> Result<String, ApiError> {
    let refused = |why: String| ApiError(StatusCode::FORBIDDEN, format!("artifact refused: {why}"));
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(key_id), Some(signature)) = (header(KEY_ID_HEADER), header(SIGNATURE_HEADER)) else {
        return Err(refused(
            "it is not signed (the CLI signs with --key FILE, else DATA_DIR/keys/local.key)".into(),
        ));
    };
    let Some(version) = version else {
        return Err(refused(
            "a signed upload names its version (?version=)".into(),
        ));
    };
    let signature = B64
        .decode(signature.trim())
        .map_err(|_| refused("the signature is not base64".into()))?;
    let statement = dwcp_crypto::trust::artifact_statement(tenant, app, version, sha256);
    match state
        .trust
        .verify_artifact(&statement, key_id, &signature, dwcp_store::unix_now())
    {
        Ok(key) => Ok(key.key_id),
        Err(TrustError::Signature(e)) => Err(refused(format!(
            "its signature by key {key_id} does not match {tenant}/{app} {version} sha256:{sha256} ({e}): tampered with, or signed for another app or version"
        ))),
        Err(e) => Err(refused(e.to_string())),
    }
}

/// A key as `dwcp keys list` shows it.
#[derive(Serialize)]
struct KeyRow {
    #[serde(flatten)]
    key: TrustedKey,
    status: KeyStatus,
}

#[derive(Serialize)]
struct KeysView {
    root_key_id: String,
    root_algorithm: &'static str,
    serial: u64,
    issued_at: u64,
    keys: Vec<KeyRow>,
}

async fn list_keys(State(state): State<Arc<AdminState>>) -> Json<KeysView> {
    let manifest = state.trust.manifest();
    let now = dwcp_store::unix_now();
    let keys = manifest
        .keys
        .iter()
        .map(|k| KeyRow {
            key: k.clone(),
            status: manifest.status(k, now),
        })
        .collect();
    Json(KeysView {
        root_key_id: manifest.root_key_id.clone(),
        root_algorithm: dwcp_crypto::root::ALGORITHM,
        serial: manifest.serial,
        issued_at: manifest.issued_at,
        keys,
    })
}

#[derive(Deserialize)]
struct TrustBody {
    role: KeyRole,
    name: String,
    public_key: String,
    /// Unix seconds; none: until revoked.
    not_after: Option<u64>,
}

async fn trust_key(
    State(state): State<Arc<AdminState>>,
    Json(body): Json<TrustBody>,
) -> Result<impl IntoResponse, ApiError> {
    let public = parse_public_key(&body.public_key)?;
    let trust = state.trust.clone();
    let key = blocking(move || {
        trust.change(|m| {
            m.trust(
                body.role,
                &body.name,
                &public,
                dwcp_store::unix_now(),
                body.not_after,
            )
            .cloned()
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(key)))
}

#[derive(Deserialize)]
struct RevokeQuery {
    reason: Option<String>,
}

async fn revoke_key(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    Query(q): Query<RevokeQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let trust = state.trust.clone();
    let reason = q.reason.unwrap_or_else(|| "revoked by the operator".into());
    let key_id = id.clone();
    blocking(move || trust.change(|m| m.revoke(&key_id, dwcp_store::unix_now(), &reason))).await?;
    Ok(Json(serde_json::json!({ "revoked": id })))
}

#[derive(Deserialize)]
struct RotateBody {
    public_key: String,
    endorsement: String,
    overlap_secs: Option<u64>,
}

async fn rotate_key(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    Json(body): Json<RotateBody>,
) -> Result<impl IntoResponse, ApiError> {
    let public = parse_public_key(&body.public_key)?;
    let endorsement = B64.decode(body.endorsement.trim()).map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "the endorsement is not base64".into(),
        )
    })?;
    let overlap = body
        .overlap_secs
        .unwrap_or(dwcp_crypto::trust::DEFAULT_OVERLAP_SECS);
    let trust = state.trust.clone();
    let key = blocking(move || {
        trust.change(|m| {
            m.rotate(&id, &public, &endorsement, dwcp_store::unix_now(), overlap)
                .cloned()
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(key)))
}

#[derive(Deserialize)]
struct OverlapQuery {
    overlap_secs: Option<u64>,
}

async fn rotate_node_key(
    State(state): State<Arc<AdminState>>,
    Query(q): Query<OverlapQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let trust = state.trust.clone();
    let overlap = q
        .overlap_secs
        .unwrap_or(dwcp_crypto::trust::DEFAULT_OVERLAP_SECS);
    let key = blocking(move || trust.rotate_node_key(dwcp_store::unix_now(), overlap)).await?;
    Ok((StatusCode::CREATED, Json(key)))
}

async fn rotate_root(State(state): State<Arc<AdminState>>) -> Result<impl IntoResponse, ApiError> {
    let trust = state.trust.clone();
    let id = blocking(move || trust.rotate_root(dwcp_store::unix_now())).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "root_key_id": id })),
    ))
}

#[derive(Serialize)]
struct SignedView {
    root_public_key: String,
    manifest: String,
    signature: String,
    root_endorsements: Vec<dwcp_crypto::trust::RootEndorsement>,
}

async fn signed_manifest(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<SignedView>, ApiError> {
    let signed = state.trust.signed_manifest()?;
    Ok(Json(SignedView {
        root_public_key: B64.encode(state.trust.root().to_bytes()),
        root_endorsements: state.trust.root_endorsements()?,
        manifest: String::from_utf8_lossy(&signed.bytes).into_owned(),
        signature: B64.encode(&signed.signature),
    }))
}
