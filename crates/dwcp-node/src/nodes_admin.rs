//! `GET /v1/nodes`, `/v1/nodes/{node}` and `/v1/cluster/health`: the
//! members as this node sees them (itself alone without `--cluster`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::admin::AdminState;

/// The routes.
pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/v1/nodes", get(list))
        .route("/v1/nodes/{node}", get(one).delete(remove))
        .route("/v1/nodes/{node}/{admission}", post(admit))
        .route("/v1/cluster/health", get(health))
        .route("/v1/apps/{tenant}/{app}/route", get(route_status))
        .route("/v1/apps/{tenant}/{app}/migrate", post(migrate))
}

type Refusal = (StatusCode, String);

fn in_cluster(state: &AdminState) -> Result<&crate::desired::Publisher, Refusal> {
    state.publisher.as_deref().ok_or((
        StatusCode::CONFLICT,
        "this node is not in a cluster (start it with `dwcp up --cluster URL`)".into(),
    ))
}

/// `cordon` (no new work), `drain` (its work moves away), `uncordon`.
async fn admit(
    State(state): State<Arc<AdminState>>,
    Path((node, action)): Path<(String, String)>,
) -> Result<Json<Value>, Refusal> {
    let publisher = in_cluster(&state)?;
    let admission = match action.as_str() {
        "cordon" => Some("cordoned"),
        "drain" => Some("draining"),
        "uncordon" => None,
        other => {
            return Err((
                StatusCode::NOT_FOUND,
                format!("no node action `{other}`: cordon, uncordon or drain"),
            ));
        }
    };
    if !state.members.is_live(&node) {
        return Err((
            StatusCode::NOT_FOUND,
            format!("no live node `{node}` in this cluster (`dwcp nodes` lists them)"),
        ));
    }
    // Seen here at once; every other node through the cluster.
    state
        .members
        .set_admission(&node, admission.map(str::to_string));
    publisher.set_admission(&node, admission);
    // Stateful apps' keys move by migration, so that they keep their state.
    let migrating = match (admission, state.migrations.get()) {
        (Some("draining"), Some(migrations)) => migrations.move_off(&node),
        _ => Vec::new(),
    };
    Ok(Json(json!({
        "node": node,
        "admission": admission.unwrap_or("active"),
        "migrating": migrating,
    })))
}

/// Forgets a node that is gone: its admission record goes, and placement
/// no longer counts it. A live node is refused: stop it first.
async fn remove(
    State(state): State<Arc<AdminState>>,
    Path(node): Path<String>,
) -> Result<Json<Value>, Refusal> {
    let publisher = in_cluster(&state)?;
    if state.members.is_live(&node) {
        return Err((
            StatusCode::CONFLICT,
            format!(
                "`{node}` is alive: drain it (`dwcp nodes drain {node}`), stop it, then remove it"
            ),
        ));
    }
    state.members.set_admission(&node, None);
    publisher.set_admission(&node, None);
    Ok(Json(json!({ "removed": node })))
}

/// Moves a stateful app's keys (or one) to another node, live.
async fn migrate(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app)): Path<(String, String)>,
    Json(request): Json<crate::migrate::MigrateRequest>,
) -> Result<Json<crate::migrate::MigrationReport>, Refusal> {
    in_cluster(&state)?;
    let id = dwcp_store::AppId::new(&tenant, &app)
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let migrations = state.migrations.get().ok_or((
        StatusCode::CONFLICT,
        "this node has no peer link, so it cannot move keys".to_string(),
    ))?;
    Ok(Json(migrations.migrate(&id, request).await?))
}

/// Where an app's replicas are, why, and how they answer from here.
async fn route_status(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app)): Path<(String, String)>,
) -> Result<Json<Value>, Refusal> {
    let id = dwcp_store::AppId::new(&tenant, &app)
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let record = state
        .control
        .state
        .app(&tenant, &app)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .ok_or((StatusCode::NOT_FOUND, format!("no app {id}")))?;
    let key = format!("{tenant}/{app}");
    let members = state.members.list();
    let placed = state.members.placement(&key);
    let holders: Vec<String> = match &placed {
        Some(p) => p.nodes.clone(),
        None if record.placement_spec().is_everywhere() => {
            members.iter().map(|m| m.node.clone()).collect()
        }
        None => Vec::new(),
    };
    let forwarder = state.forwarder.get();
    let replicas: Vec<Value> = holders
        .iter()
        .map(|node| {
            let member = members.iter().find(|m| &m.node == node);
            let score = forwarder.and_then(|f| f.score_of(node));
            json!({
                "node": node,
                "region": member.map(|m| m.region.clone()),
                "alive": member.is_some(),
                "self": member.is_some_and(|m| m.this),
                "latency_ms": score.map(|s| s.0),
                "in_flight": score.map(|s| s.1),
                "serving": member.is_some_and(|m| m.this)
                    .then(|| state.control.apps.get_app(&tenant, &app).is_some()),
            })
        })
        .collect();
    let mut regions: BTreeMap<String, usize> = BTreeMap::new();
    for r in &replicas {
        if let Some(region) = r["region"].as_str() {
            *regions.entry(region.to_string()).or_default() += 1;
        }
    }
    Ok(Json(json!({
        "app": key,
        "spec": {
            "replicas": record.placement_spec().replicas,
            "regions": record.placement_spec().regions,
            "everywhere": record.placement_spec().is_everywhere(),
        },
        "replicas": replicas,
        "regions": regions,
        "reasons": placed.as_ref().map(|p| p.reasons.clone()).unwrap_or_default(),
        "decided_by": placed.as_ref().map(|p| p.decided_by.clone()),
        "decided_at": placed.as_ref().map(|p| p.decided_at),
        "forwarded": forwarder.map(|f| f.forwarded.load(std::sync::atomic::Ordering::Relaxed)),
        "retried": forwarder.map(|f| f.retried.load(std::sync::atomic::Ordering::Relaxed)),
    })))
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
