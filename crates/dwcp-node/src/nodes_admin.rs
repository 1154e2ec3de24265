//! `GET /v1/nodes`, `/v1/nodes/{node}` and `/v1/cluster/health`: the
//! members as this node sees them (itself alone without `--cluster`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::admin::AdminState;

/// The routes.
pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/v1/nodes", get(list))
        .route("/v1/nodes/{node}", get(one))
        .route("/v1/cluster/health", get(health))
}

async fn list(State(state): State<Arc<AdminState>>) -> Json<Value> {
    let m = &state.members;
    Json(json!({
        "cluster": m.cluster,
        "this_node": m.identity.node_id,
        "nodes": m.list(),
    }))
}

async fn one(
    State(state): State<Arc<AdminState>>,
    Path(node): Path<String>,
) -> Result<Json<Value>, (StatusCode, String)> {
    let members = state.members.list();
    let Some(found) = members.into_iter().find(|m| m.node == node) else {
        return Err((
            StatusCode::NOT_FOUND,
            format!("no live node `{node}` in this cluster (`dwcp nodes` lists them)"),
        ));
    };
    let mut out = serde_json::to_value(&found).unwrap_or(Value::Null);
    if found.this {
        // This node can say more about itself than the record carries.
        out["apps"] = json!(state.control.list(None).map_or(0, |apps| apps.len()));
        out["ready"] = json!(state.ready.load(std::sync::atomic::Ordering::Acquire));
    }
    Ok(Json(out))
}

async fn health(State(state): State<Arc<AdminState>>) -> Json<Value> {
    let m = &state.members;
    let nodes = m.list();
    let mut regions: BTreeMap<String, usize> = BTreeMap::new();
    for n in &nodes {
        *regions.entry(n.region.clone()).or_default() += 1;
    }
    let not_active = nodes.iter().filter(|n| n.admission != "active").count();
    let connected = m.connected();
    Json(json!({
        "cluster": m.cluster,
        "connected": connected,
        "healthy": connected && state.ready.load(std::sync::atomic::Ordering::Acquire),
        "nodes": nodes.len(),
        "not_active": not_active,
        "regions": regions,
        "this_node": m.identity.node_id,
    }))
}
