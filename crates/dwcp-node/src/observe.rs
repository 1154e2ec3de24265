//! The admin API's views of what apps are doing: their guests' logs
//! (`dwcp logs`) and a summary of their recent requests (`dwcp metrics`).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dwcp_runtime::StatsSummary;
use dwcp_store::AppId;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use crate::admin::{AdminState, ApiError, ApiResult, app_id};
use crate::control::{Control, ControlError};

/// The routes of this module.
pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/v1/apps/{tenant}/{app}/logs", get(logs))
        .route("/v1/metrics", get(summary))
}

#[derive(Deserialize)]
struct LogsQuery {
    /// Unix milliseconds; lines written before are left out.
    since: Option<u64>,
    /// Keep the response open and send lines as they are written.
    #[serde(default)]
    follow: bool,
}

/// Newline-delimited JSON, one `dwcp_runtime::LogLine` per line.
async fn logs(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app)): Path<(String, String)>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let id = app_id(&tenant, &app)?;
    let log = state.control.app_log(&id)?;
    // Subscribed before the backlog is read: a line written in between is
    // in both, and skipped by its sequence number, rather than in neither.
    let follower = q.follow.then(|| log.follow());
    let backlog = log.since(q.since.unwrap_or(0));
    drop(log);
    // Lines up to here were sent with the backlog; followers get lines in
    // order, so anything at or below it is a duplicate.
    let backlog_end = backlog.last().map_or(0, |l| l.seq);
    let mut body = String::new();
    for line in &backlog {
        push_json_line(&mut body, line.as_ref());
    }
    let content_type = [(header::CONTENT_TYPE, "application/x-ndjson")];
    let Some(follower) = follower else {
        return Ok((content_type, body).into_response());
    };
    let shutdown = state.shutdown.clone();
    let first = futures_util::stream::once(async move { Ok::<_, Infallible>(Bytes::from(body)) });
    // Ends when the node stops or the app is deleted (its log, and with it
    // the sender, dropped).
    let live = futures_util::stream::unfold(
        (follower, shutdown),
        move |(mut follower, mut shutdown)| async move {
            loop {
                let line = tokio::select! {
                    line = follower.recv() => line,
                    _ = shutdown.wait_for(|stopping| *stopping) => return None,
                };
                let mut out = String::new();
                match line {
                    Ok(line) if line.seq <= backlog_end => continue,
                    Ok(line) => push_json_line(&mut out, line.as_ref()),
                    Err(RecvError::Lagged(n)) => push_json_line(
                        &mut out,
                        &serde_json::json!({ "skipped": n, "reason": "reader too slow" }),
                    ),
                    Err(RecvError::Closed) => return None,
                }
                let item = Ok::<_, Infallible>(Bytes::from(out));
                return Some((item, (follower, shutdown)));
            }
        },
    );
    use futures_util::StreamExt;
    Ok((content_type, Body::from_stream(first.chain(live))).into_response())
}

fn push_json_line(out: &mut String, value: &impl Serialize) {
    // Serializing a LogLine or a json! value cannot fail.
    if let Ok(json) = serde_json::to_string(value) {
        out.push_str(&json);
        out.push('\n');
    }
}

#[derive(Deserialize)]
struct SummaryQuery {
    tenant: Option<String>,
    app: Option<String>,
    /// Seconds (default 300, at most 900).
    window: Option<u64>,
}

/// One line of `dwcp metrics`.
#[derive(Debug, Serialize)]
pub struct AppActivity {
    /// The tenant.
    pub tenant: String,
    /// The app.
    pub app: String,
    /// The version serving now.
    pub active_version: String,
    /// Its requests over the window.
    #[serde(flatten)]
    pub summary: StatsSummary,
}

async fn summary(
    State(state): State<Arc<AdminState>>,
    Query(q): Query<SummaryQuery>,
) -> ApiResult<Vec<AppActivity>> {
    let window = q.window.unwrap_or(300);
    let activity = match (q.tenant, q.app) {
        (Some(tenant), Some(app)) => vec![state.control.activity(&app_id(&tenant, &app)?, window)?],
        (tenant, None) => state.control.activity_all(tenant.as_deref(), window)?,
        (None, Some(_)) => {
            return Err(ControlError::BadOption("`app` needs `tenant`".into()).into());
        }
    };
    Ok(axum::Json(activity))
}

impl Control {
    /// The log of a stored app.
    pub fn app_log(&self, id: &AppId) -> Result<Arc<dwcp_runtime::AppLog>, ControlError> {
        self.record(id)?;
        Ok(self.telemetry.for_app(&id.tenant, &id.app).log)
    }

    /// The recent activity of one app.
    pub fn activity(&self, id: &AppId, window: u64) -> Result<AppActivity, ControlError> {
        let record = self.record(id)?;
        Ok(AppActivity {
            summary: self
                .telemetry
                .for_app(&id.tenant, &id.app)
                .stats
                .summary(window),
            active_version: record.active,
            tenant: record.tenant,
            app: record.app,
        })
    }

    /// The recent activity of every app, or of `tenant`'s.
    pub fn activity_all(
        &self,
        tenant: Option<&str>,
        window: u64,
    ) -> Result<Vec<AppActivity>, ControlError> {
        Ok(self
            .list(tenant)?
            .into_iter()
            .map(|a| AppActivity {
                summary: self
                    .telemetry
                    .for_app(&a.tenant, &a.app)
                    .stats
                    .summary(window),
                active_version: a.active_version,
                tenant: a.tenant,
                app: a.app,
            })
            .collect())
    }
}
