//! OpenTelemetry traces of the request path: one server span per request,
//! with the tenant, app, version and rollout arm as attributes, exported in
//! batches over OTLP/HTTP (JSON encoding) to a collector.
//!
//! Off unless `--otlp-endpoint` is given: the ingress then pays one `Option`
//! check per request. When on, a request only fills a small struct and
//! hands it to a bounded queue; a full queue (a collector that is down or
//! slow) drops spans, counted, rather than slowing requests. A W3C
//! `traceparent` from the client continues its trace, and the guest sees
//! this span as its parent, so its own outgoing calls join the same trace.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::header::HeaderValue;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Spans waiting for export at most; more are dropped.
const QUEUE: usize = 8192;
/// Spans sent in one export request at most.
const BATCH: usize = 512;
/// How long a span waits for its batch at most.
const FLUSH: Duration = Duration::from_secs(1);

/// The W3C trace-context header.
const TRACEPARENT: &str = "traceparent";

/// A bad `--otlp-endpoint`.
#[derive(Debug, thiserror::Error)]
#[error(
    "--otlp-endpoint `{0}`: give an OTLP/HTTP collector as http://HOST:PORT (https is not supported: run a local collector)"
)]
pub struct EndpointError(String);

/// Where spans go: `http://host:port` plus the OTLP traces path.
#[derive(Debug, Clone)]
struct Endpoint {
    authority: String,
    path: String,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, EndpointError> {
        let bad = || EndpointError(url.to_string());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, format!("/{p}")),
            None => (rest, String::new()),
        };
        if authority.is_empty() || !authority.contains(':') {
            return Err(bad());
        }
        // The OTLP/HTTP convention: the base URL, to which /v1/traces is added.
        let path = if path.ends_with("/v1/traces") {
            path
        } else {
            format!("{}/v1/traces", path.trim_end_matches('/'))
        };
        Ok(Endpoint {
            authority: authority.to_string(),
            path,
        })
    }
}

/// Hands finished spans to the exporter.
pub struct Tracer {
    queue: mpsc::Sender<RequestSpan>,
    random: SystemRandom,
    /// Spans dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Spans exported (acknowledged by the collector).
    pub exported: Arc<AtomicU64>,
}

impl Tracer {
    /// A tracer exporting to `url`, and the task that exports (to spawn on
    /// a runtime that lives as long as the node).
    pub fn new(
        url: &str,
        service_instance: String,
    ) -> Result<(Arc<Tracer>, impl Future<Output = ()> + Send + 'static), EndpointError> {
        let endpoint = Endpoint::parse(url)?;
        let (queue, rx) = mpsc::channel(QUEUE);
        let exported = Arc::new(AtomicU64::new(0));
        let tracer = Arc::new(Tracer {
            queue,
            random: SystemRandom::new(),
            dropped: AtomicU64::new(0),
            exported: exported.clone(),
        });
        Ok((tracer, export(rx, endpoint, service_instance, exported)))
    }

    /// Starts the span of `request`: continues the client's trace if it
    /// sent one, and tells the guest that this span is its parent.
    pub fn start<B>(&self, request: &mut hyper::Request<B>) -> RequestSpan {
        let mut span_id = [0u8; 8];
        let mut trace_id = [0u8; 16];
        // The system's random source does not fail on the platforms served.
        let _ = self.random.fill(&mut span_id);
        let parent = request
            .headers()
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent);
        let parent_span = match parent {
            Some((trace, span)) => {
                trace_id = trace;
                Some(span)
            }
            None => {
                let _ = self.random.fill(&mut trace_id);
                None
            }
        };
        let ours = format!("00-{}-{}-01", hex::encode(trace_id), hex::encode(span_id));
        if let Ok(value) = HeaderValue::from_str(&ours) {
            request.headers_mut().insert(TRACEPARENT, value);
        }
        RequestSpan {
            trace_id,
            span_id,
            parent: parent_span,
            start_unix_nanos: unix_nanos(),
            started: Instant::now(),
            duration: Duration::ZERO,
            method: request.method().as_str().to_string(),
            path: request.uri().path().to_string(),
            tenant: None,
            app: None,
            version: None,
            rollout: None,
            status: 0,
        }
    }

    /// Queues a finished span; drops it if the exporter is behind.
    pub fn finish(&self, mut span: RequestSpan, status: u16) {
        span.status = status;
        span.duration = span.started.elapsed();
        if self.queue.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The `trace-id` and `parent-id` of a valid version-00 `traceparent`.
fn parse_traceparent(value: &str) -> Option<([u8; 16], [u8; 8])> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, _flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() {
        return None;
    }
    let mut t = [0u8; 16];
    let mut s = [0u8; 8];
    hex::decode_to_slice(trace, &mut t).ok()?;
    hex::decode_to_slice(span, &mut s).ok()?;
    // All-zero ids are invalid by the spec.
    (t != [0; 16] && s != [0; 8]).then_some((t, s))
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One request's span, filled in as the request goes down the path.
pub struct RequestSpan {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    start_unix_nanos: u64,
    started: Instant,
    duration: Duration,
    method: String,
    path: String,
    /// The tenant, once the host named one.
    pub tenant: Option<String>,
    /// The app, once the host named one.
    pub app: Option<String>,
    /// The version that served.
    pub version: Option<String>,
    /// During a rollout: which side served (`stable`, `canary`, or `pinned`
    /// by `x-dwcp-version`) and the canary's weight in percent.
    pub rollout: Option<(&'static str, f64)>,
    status: u16,
}

impl RequestSpan {
    /// The span in OTLP's JSON encoding.
    fn to_otlp(&self) -> Value {
        let mut attributes = vec![
            attr_str("http.request.method", &self.method),
            attr_str("url.path", &self.path),
            json!({"key": "http.response.status_code", "value": {"intValue": self.status.to_string()}}),
        ];
        for (key, value) in [
            ("dwcp.tenant", &self.tenant),
            ("dwcp.app", &self.app),
            ("dwcp.version", &self.version),
        ] {
            if let Some(v) = value {
                attributes.push(attr_str(key, v));
            }
        }
        if let Some((arm, weight)) = self.rollout {
            attributes.push(attr_str("dwcp.rollout.arm", arm));
            attributes.push(
                json!({"key": "dwcp.rollout.weight_percent", "value": {"doubleValue": weight}}),
            );
        }
        let name = match (&self.app, &self.tenant) {
            (Some(app), Some(tenant)) => format!("{} {app}.{tenant}", self.method),
            _ => self.method.clone(),
        };
        let mut span = json!({
            "traceId": hex::encode(self.trace_id),
            "spanId": hex::encode(self.span_id),
            "name": name,
            "kind": 2,
            "startTimeUnixNano": self.start_unix_nanos.to_string(),
            "endTimeUnixNano": (self.start_unix_nanos + self.duration.as_nanos() as u64).to_string(),
            "attributes": attributes,
            // Server spans are errors on 5xx only (OpenTelemetry's HTTP conventions).
            "status": {"code": if self.status >= 500 { 2 } else { 0 }},
        });
        if let Some(parent) = self.parent {
            span["parentSpanId"] = Value::from(hex::encode(parent));
        }
        span
    }
}

fn attr_str(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// Collects spans into batches and posts them; a failed post is logged
/// (once per minute at most) and its batch dropped.
async fn export(
    mut rx: mpsc::Receiver<RequestSpan>,
    endpoint: Endpoint,
    service_instance: String,
    exported: Arc<AtomicU64>,
) {
    let mut batch: Vec<RequestSpan> = Vec::with_capacity(BATCH);
    let mut last_warning: Option<Instant> = None;
    loop {
        let Some(first) = rx.recv().await else {
            return;
        };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + FLUSH;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let body = json!({
            "resourceSpans": [{
                "resource": {"attributes": [
                    attr_str("service.name", "dwcp"),
                    attr_str("service.version", env!("CARGO_PKG_VERSION")),
                    attr_str("service.instance.id", &service_instance),
                ]},
                "scopeSpans": [{
                    "scope": {"name": "dwcp-node", "version": env!("CARGO_PKG_VERSION")},
                    "spans": batch.iter().map(RequestSpan::to_otlp).collect::<Vec<_>>(),
                }],
            }],
        })
        .to_string();
        match post(&endpoint, &body).await {
            Ok(()) => {
                exported.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(
                        "could not export {} spans to http://{}{}: {e}",
                        batch.len(),
                        endpoint.authority,
                        endpoint.path
                    );
                    last_warning = Some(Instant::now());
                }
            }
        }
        batch.clear();
    }
}

/// One HTTP/1.1 POST of JSON; success is a 2xx answer.
async fn post(endpoint: &Endpoint, body: &str) -> std::io::Result<()> {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(&endpoint.authority).await?;
        let head = format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            endpoint.path,
            endpoint.authority,
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        let mut answer = Vec::new();
        // The status line is all that matters; read a little of the rest.
        let mut buf = [0u8; 1024];
        while !answer.windows(2).any(|w| w == b"\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&answer);
        let status = line.split(' ').nth(1).unwrap_or("");
        if status.starts_with('2') {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "the collector answered `{}`",
                line.lines().next().unwrap_or("nothing")
            )))
        }
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("timed out")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_the_traces_path_and_https_is_refused_plainly() {
        let e = Endpoint::parse("http://127.0.0.1:4318").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.path.as_str()),
            ("127.0.0.1:4318", "/v1/traces")
        );
        let e = Endpoint::parse("http://collector:4318/v1/traces").unwrap();
        assert_eq!(e.path, "/v1/traces");
        for bad in ["https://c:4318", "c:4318", "http://", "http://nohostport"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_valid_traceparent_is_continued_and_others_are_not() {
        let (t, s) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(hex::encode(t), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(s), "00f067aa0ba902b7");
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-zz-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }
}
