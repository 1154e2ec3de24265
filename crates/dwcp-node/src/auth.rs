//! Who may call the admin API: bearer tokens, scoped to the node or to one
//! tenant, stored as hashes in `DATA_DIR/tokens.json`.
//!
//! On first start the node makes a node-wide token and writes it to
//! `DATA_DIR/admin-token` (0600) for the CLI on the same machine to find.
//! A tenant's token reaches only its own apps (`/v1/apps/TENANT/…`) and the
//! app list (filtered to them); everything else is the node's business.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::admin::{AdminState, ApiError, blocking};

/// A token store that could not be written.
fn stored_not(e: &io::Error) -> ApiError {
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("cannot store the tokens: {e}"),
    )
}

/// The file the node-wide token is written to, under the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
const TOKENS_FILE: &str = "tokens.json";

/// What a token may reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "scope", content = "tenant")]
pub enum Scope {
    /// Everything.
    Node,
    /// One tenant's apps.
    Tenant(String),
}

/// A stored token: its hash and what it is for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Short id (the hash's first 12 hex digits), for listing and revoking.
    pub id: String,
    /// SHA-256 of the token, hex.
    pub hash: String,
    /// What it reaches.
    #[serde(flatten)]
    pub scope: Scope,
    /// A name to tell tokens apart.
    pub name: String,
    /// When it was made (Unix seconds).
    pub created_at: u64,
}

/// The node's tokens.
pub struct TokenStore {
    path: PathBuf,
    tokens: Mutex<BTreeMap<String, TokenRecord>>,
}

impl TokenStore {
    /// Opens the store under `data_dir`; on first start makes the node-wide
    /// token and writes it to `admin-token`. Returns whether it did.
    pub fn open(data_dir: &Path) -> io::Result<(Arc<Self>, bool)> {
        let path = data_dir.join(TOKENS_FILE);
        let tokens: BTreeMap<String, TokenRecord> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::other(format!(
                    "{} is damaged ({e}): restore it from a backup, or delete it and {} to start over with a new node token",
                    path.display(),
                    ADMIN_TOKEN_FILE
                ))
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        let store = Arc::new(Self {
            path,
            tokens: Mutex::new(tokens),
        });
        let token_file = data_dir.join(ADMIN_TOKEN_FILE);
        let created = !token_file.exists();
        if created {
            let (token, _) =
                store.create(Scope::Node, "node (admin-token)", dwcp_store::unix_now())?;
            dwcp_store::write_private(&token_file, token.as_bytes())?;
        }
        Ok((store, created))
    }

    /// Makes a token; returns it (shown once) and its record.
    pub fn create(&self, scope: Scope, name: &str, now: u64) -> io::Result<(String, TokenRecord)> {
        let token = dwcp_crypto::tokens::generate().map_err(io::Error::other)?;
        let hash = dwcp_crypto::tokens::hash(&token);
        let record = TokenRecord {
            id: hash[..12].to_string(),
            hash,
            scope,
            name: name.to_string(),
            created_at: now,
        };
        let mut tokens = self.lock();
        let mut next = tokens.clone();
        next.insert(record.id.clone(), record.clone());
        self.save(&next)?;
        *tokens = next;
        Ok((token, record))
    }

    /// Removes a token by id; whether there was one.
    pub fn revoke(&self, id: &str) -> io::Result<bool> {
        let mut tokens = self.lock();
        if !tokens.contains_key(id) {
            return Ok(false);
        }
        let mut next = tokens.clone();
        next.remove(id);
        self.save(&next)?;
        *tokens = next;
        Ok(true)
    }

    /// Every token's record.
    pub fn list(&self) -> Vec<TokenRecord> {
        self.lock().values().cloned().collect()
    }

    /// Who `token` is, if it is one of ours.
    pub fn caller(&self, token: &str) -> Option<Caller> {
        let hash = dwcp_crypto::tokens::hash(token);
        // Looked up by id, then compared in full in constant time.
        let tokens = self.lock();
        let record = tokens.get(&hash[..12])?;
        dwcp_crypto::tokens::matches(token, &record.hash).then(|| Caller {
            scope: record.scope.clone(),
            token_id: record.id.clone(),
        })
    }

    fn save(&self, tokens: &BTreeMap<String, TokenRecord>) -> io::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(tokens).map_err(io::Error::other)?;
        bytes.push(b'\n');
        dwcp_store::write_private(&self.path, &bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, TokenRecord>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The admin API's token routes (node tokens only: the middleware keeps
/// tenant tokens out).
pub(crate) fn routes() -> axum::Router<Arc<AdminState>> {
    use axum::routing::{delete, get};
    axum::Router::new()
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{id}", delete(revoke_token))
}

#[derive(Deserialize)]
struct CreateQuery {
    tenant: Option<String>,
    name: Option<String>,
}

/// A token just made: the only time it is shown.
#[derive(Serialize)]
struct CreatedToken {
    token: String,
    #[serde(flatten)]
    record: TokenRecord,
}

async fn create_token(
    State(state): State<Arc<AdminState>>,
    axum::extract::Query(q): axum::extract::Query<CreateQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let scope = match q.tenant {
        Some(tenant) => {
            dwcp_store::AppId::new(&tenant, "x")
                .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
            Scope::Tenant(tenant)
        }
        None => Scope::Node,
    };
    let name = q.name.unwrap_or_default();
    let tokens = state.tokens.clone();
    let (token, record) = blocking(move || {
        tokens
            .create(scope, &name, dwcp_store::unix_now())
            .map_err(|e| stored_not(&e))
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedToken { token, record }),
    ))
}

async fn list_tokens(State(state): State<Arc<AdminState>>) -> axum::Json<Vec<TokenRecord>> {
    axum::Json(state.tokens.list())
}

async fn revoke_token(
    State(state): State<Arc<AdminState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let tokens = state.tokens.clone();
    let id_for_task = id.clone();
    let removed = blocking(move || tokens.revoke(&id_for_task).map_err(|e| stored_not(&e))).await?;
    if !removed {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no token {id} (`dwcp tokens list`)"),
        ));
    }
    Ok(axum::Json(serde_json::json!({ "revoked": id })))
}

/// The caller of an admin request, as its token says.
#[derive(Debug, Clone)]
pub struct Caller {
    /// What it may reach.
    pub scope: Scope,
    /// Its token's id (in the audit log).
    pub token_id: String,
}

/// Checks the bearer token of every admin request but `/healthz`,
/// `/readyz` and (with `--metrics-public`) `/metrics`, and keeps tenant
/// tokens to their tenant.
pub(crate) async fn require_token(
    State(state): State<Arc<AdminState>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    if path == "/healthz" || path == "/readyz" || (path == "/metrics" && state.metrics_public) {
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return unauthorized(
            "this call needs a token: `Authorization: Bearer TOKEN` (the CLI reads DWCP_TOKEN, --token, or DATA_DIR/admin-token)",
        );
    };
    let Some(caller) = state.tokens.caller(token) else {
        return unauthorized("the token is not valid on this node (revoked, or from another node)");
    };
    if let Scope::Tenant(tenant) = &caller.scope
        && !tenant_may_call(tenant, request.method(), path)
    {
        return ApiError(
            StatusCode::FORBIDDEN,
            format!("this token is scoped to tenant {tenant}: it cannot reach {path}"),
        )
        .into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// What a tenant's token may reach: its own apps, and the app list.
fn tenant_may_call(tenant: &str, method: &axum::http::Method, path: &str) -> bool {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("v1"), Some("apps"), None) => method == axum::http::Method::GET,
        (Some("v1"), Some("apps"), Some(t)) => t == tenant,
        (Some("v1"), Some("flags"), Some(t)) => t == tenant,
        // OFREP evaluates the token's own tenant's flags (flags_admin.rs).
        (Some("ofrep"), _, _) => true,
        _ => false,
    }
}

fn unauthorized(reason: &str) -> Response {
    let mut response = ApiError(StatusCode::UNAUTHORIZED, reason.into()).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_tokens_reach_their_own_apps_only() {
        let get = axum::http::Method::GET;
        let post = axum::http::Method::POST;
        assert!(tenant_may_call("acme", &get, "/v1/apps"));
        assert!(!tenant_may_call("acme", &post, "/v1/apps"));
        assert!(tenant_may_call(
            "acme",
            &post,
            "/v1/apps/acme/shop/versions"
        ));
        assert!(!tenant_may_call("acme", &get, "/v1/apps/other/shop"));
        assert!(!tenant_may_call("acme", &get, "/v1/tenants"));
        assert!(!tenant_may_call("acme", &post, "/v1/tenants/acme/quota"));
        assert!(!tenant_may_call("acme", &get, "/v1/audit"));
        assert!(!tenant_may_call("acme", &get, "/metrics"));
        assert!(tenant_may_call("acme", &get, "/v1/flags/acme/flags"));
        assert!(!tenant_may_call("acme", &get, "/v1/flags/other"));
        assert!(tenant_may_call("acme", &post, "/ofrep/v1/evaluate/flags"));
    }

    #[test]
    fn tokens_are_stored_hashed_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (store, created) = TokenStore::open(dir.path()).unwrap();
        assert!(created);
        let node = std::fs::read_to_string(dir.path().join(ADMIN_TOKEN_FILE)).unwrap();
        assert_eq!(store.caller(&node).map(|c| c.scope), Some(Scope::Node));
        let (tenant, record) = store.create(Scope::Tenant("acme".into()), "ci", 1).unwrap();
        let stored = std::fs::read_to_string(dir.path().join(TOKENS_FILE)).unwrap();
        assert!(!stored.contains(&tenant) && !stored.contains(&node));
        use std::os::unix::fs::PermissionsExt;
        for file in [TOKENS_FILE, ADMIN_TOKEN_FILE] {
            let mode = std::fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }

        let (again, created) = TokenStore::open(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(
            again.caller(&tenant).map(|c| c.scope),
            Some(Scope::Tenant("acme".into()))
        );
        assert!(again.revoke(&record.id).unwrap());
        assert_eq!(again.caller(&tenant).map(|c| c.scope), None);
        assert_eq!(again.caller("dwcp_nonsense").map(|c| c.scope), None);
    }
}
