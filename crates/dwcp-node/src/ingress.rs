//! The ingress: HTTP/1.1 from clients to apps.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dwcp_runtime::{ResponseBody, text_response};
use hyper::body::Incoming;
use hyper::header::{HOST, HeaderValue, RETRY_AFTER};

use crate::apps::{AppTable, Arm, ArmCounter, LiveApp, Unavailable};
use crate::host::{app_key, split_key};
use crate::release::Routed;

/// How long a request waits for a concurrency slot before it gets 503.
const SLOT_WAIT: Duration = Duration::from_secs(1);

/// What the ingress needs to route a request.
pub struct Ingress {
    /// The live apps.
    pub apps: Arc<AppTable>,
    /// The tenants' feature flags, evaluated for each request's user.
    pub flags: Arc<crate::flags::FlagStore>,
    /// The host suffix apps are addressed under (`localhost`).
    pub domain: String,
    /// Where request spans go, when traces are on.
    pub traces: Option<Arc<crate::traces::Tracer>>,
    /// Sends requests for apps served elsewhere to a node that serves
    /// them (in a cluster).
    pub forwarder: Option<Arc<crate::peer::Forwarder>>,
    /// The edge response cache (`None`: off).
    pub cache: Option<Arc<crate::edge_cache::NodeCache>>,
    /// Counts where requests enter, for placement by demand (in a cluster).
    pub demand: Option<Arc<crate::demand::DemandCounter>>,
    /// Moves stateful apps' keys between nodes (in a cluster): answers the
    /// peer link's migration requests.
    pub migrations: Option<Arc<crate::migrate::Migrations>>,
}

/// Serves one request, in a span of its own when traces are on.
pub async fn route(
    ingress: &Ingress,
    mut request: hyper::Request<Incoming>,
    peer: IpAddr,
) -> hyper::Response<ResponseBody> {
    let Some(tracer) = &ingress.traces else {
        return serve(ingress, request, peer, None).await;
    };
    let mut span = tracer.start(&mut request);
    let response = serve(ingress, request, peer, Some(&mut span)).await;
    tracer.finish(span, response.status().as_u16());
    response
}

/// Serves one request. The whole path of a request, top to bottom.
async fn serve(
    ingress: &Ingress,
    mut request: hyper::Request<Incoming>,
    peer: IpAddr,
    mut span: Option<&mut crate::traces::RequestSpan>,
) -> hyper::Response<ResponseBody> {
    let started = Instant::now();

    // 1. Which app: `Host: APP.TENANT.<domain>` (HTTP/2 carries it in the URI).
    let host = request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())
        .unwrap_or("");
    let Some(key) = app_key(host, &ingress.domain) else {
        return text_response(
            404,
            &format!(
                "no app here: address apps as APP.TENANT.{} (Host was `{host}`)",
                ingress.domain
            ),
        );
    };
    let key = key.into_owned();
    let (tenant, app) = split_key(&key);
    if let Some(span) = span.as_deref_mut() {
        span.tenant = Some(tenant.to_string());
        span.app = Some(app.to_string());
    }

    let from_peer = request
        .extensions()
        .get::<crate::peer::FromPeer>()
        .is_some();
    if let Some(demand) = &ingress.demand
        && !from_peer
    {
        demand.record(&key);
    }
    if !from_peer {
        // Only a node says a request was sent on after a migration.
        request.headers_mut().remove(crate::peer::MOVED);
    }

    // 2. The edge cache, for GET and HEAD where the request entered.
    if let Some(cache) = &ingress.cache
        && !from_peer
        && let Some(policy) = cache.applies(&key, request.method())
    {
        return cache
            .serve(tenant, app, policy, request, |request| {
                serve_app(ingress, &key, request, peer, span, started)
            })
            .await;
    }
    serve_app(ingress, &key, request, peer, span, started).await
}

/// Serves a request for the app with key `key`: here, or on a node of the
/// cluster that serves it.
async fn serve_app(
    ingress: &Ingress,
    key: &str,
    mut request: hyper::Request<Incoming>,
    peer: IpAddr,
    span: Option<&mut crate::traces::RequestSpan>,
    started: Instant,
) -> hyper::Response<ResponseBody> {
    let Some(app) = ingress.apps.get(key) else {
        // Served by other nodes of the cluster: one of them answers.
        let from_peer = request
            .extensions()
            .get::<crate::peer::FromPeer>()
            .is_some();
        if let Some(forwarder) = &ingress.forwarder {
            let (tenant, app) = split_key(key);
            let id = format!("{tenant}/{app}");
            let replicas = forwarder.replicas(&id);
            let idempotent = matches!(*request.method(), hyper::Method::GET | hyper::Method::HEAD);
            match replicas.first() {
                Some(_) if !from_peer => return forwarder.forward(&id, replicas, request).await,
                // A peer that sent it here has not seen the app move yet
                // (a migration just ended). It retries a GET or HEAD on
                // another replica itself (below: "not here"); any other
                // request it cannot send twice goes on from here.
                Some(next) if !idempotent => {
                    return forwarder.forward_to(&id, &next.node, request).await;
                }
                _ => {}
            }
        }
        let (tenant, app) = split_key(key);
        if request
            .extensions()
            .get::<crate::peer::FromPeer>()
            .is_some()
        {
            // Placed here but not serving yet (or no longer): the
            // forwarding node tries another replica.
            let mut response = text_response(
                503,
                &format!("app `{tenant}/{app}` does not serve on this node now"),
            );
            response
                .headers_mut()
                .insert(crate::peer::NOT_HERE, HeaderValue::from_static("1"));
            return response;
        }
        // A loading app is back in moments; a failed one waits for its
        // operator, so clients are asked to come back much later.
        let (reason, retry) = match ingress.apps.unavailable(key) {
            None => return text_response(404, &format!("no app `{app}` in tenant `{tenant}`")),
            Some(Unavailable::Loading) => ("is starting on this node; retry shortly", "1"),
            Some(Unavailable::Failed) => (
                "failed to load on this node (its operator can see why in `dwcp status` and the node's log)",
                "60",
            ),
        };
        let mut response = text_response(503, &format!("app `{tenant}/{app}` {reason}"));
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static(retry));
        return response;
    };

    // 2. Which version: the stable one, or the canary for its share of
    //    users (sticky by user key), or the one `x-dwcp-version` names.
    let (arm, routed) = match crate::release::pick(&app, request.headers(), peer) {
        Ok(picked) => picked,
        Err(reason) => return text_response(404, &reason),
    };
    let version = arm.version.clone();
    if let Some(span) = span {
        span.version = Some(version.labels().version.clone());
        if let Some(canary) = &app.canary {
            let side = match routed {
                Routed::Header => "pinned",
                Routed::Split if std::ptr::eq(arm, &canary.arm) => "canary",
                Routed::Split => "stable",
            };
            span.rollout = Some((side, f64::from(canary.weight_bp) / 100.0));
        }
    }

    // The tenant's flags, evaluated for this user, travel with the request;
    // a client's own `x-dwcp-flags` never reaches the app. An experiment
    // counts the user (once) as exposed to this version.
    let tenant = &version.labels().tenant;
    let counted = app.conversion.is_some() && routed == Routed::Split;
    // The user key only when something needs it: most requests skip it.
    let (flags, exposure) = if counted || ingress.flags.has_flags(tenant) {
        let user = app.users.user_key(request.headers(), peer);
        let flags = ingress.flags.header_for(tenant, &user);
        let exposure = counted
            .then(|| crate::experiments::exposed_counter(&app, arm, &ingress.flags, tenant, &user))
            .flatten();
        (flags, exposure)
    } else {
        (None, None)
    };
    request.headers_mut().remove(crate::flags::FLAGS_HEADER);
    if let Some(flags) = flags {
        request
            .headers_mut()
            .insert(crate::flags::FLAGS_HEADER, flags);
    }

    // 3. A concurrency slot, waiting up to a second for one.
    // The common case takes a free slot without arming a timer.
    let permit = match app.slots.clone().try_acquire_owned() {
        Ok(permit) => Ok(permit),
        Err(_) => tokio::time::timeout(SLOT_WAIT, app.slots.clone().acquire_owned())
            .await
            .map_err(|_| ())
            .and_then(|r| r.map_err(|_| ())),
    };
    let permit = match permit {
        Ok(permit) => permit,
        Err(()) => {
            let mut response = text_response(
                503,
                &format!(
                    "app at its concurrency limit of {}; retry later",
                    version.limits().concurrency
                ),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            arm.observe(503, started.elapsed().as_secs_f64(), routed);
            return response;
        }
    };

    // 4. Room in the tenant's quota, without waiting: a tenant at its quota
    //    is at it because of its own load. (A stateful app's key holds its
    //    share for as long as its instance lives: see `stateful.rs`.)
    if let Some(keyed) = &app.keyed {
        let served = keyed.clone().handle(request, version.clone()).await;
        drop(permit);
        let mut response = match served {
            crate::stateful::Served::Here(response) => response,
            // Its key moved (`dwcp migrate`): served, and counted, there.
            crate::stateful::Served::Elsewhere(node, request) => {
                let (tenant, app) = split_key(key);
                let id = format!("{tenant}/{app}");
                return match &ingress.forwarder {
                    Some(forwarder) => forwarder.forward_to(&id, &node, request).await,
                    None => text_response(503, &format!("app `{id}`: its key is on {node}")),
                };
            }
        };
        record(&app, arm, routed, exposure.as_ref(), started, &mut response);
        return response;
    }
    let share = match app.tenant.try_enter(version.limits().memory_bytes) {
        Ok(share) => share,
        Err(full) => {
            let tenant = &version.labels().tenant;
            let reason = full.describe();
            let mut response = text_response(
                503,
                &format!("tenant `{tenant}` is at {reason}; retry later"),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            arm.observe(503, started.elapsed().as_secs_f64(), routed);
            return response;
        }
    };

    // 5. An instance serves it, within the app's limits.
    let mut response = version.handle(request, (permit, share)).await;

    // 6. Metrics, per version (a rollout's analysis reads them), and an
    //    experiment's exposure and conversion.
    record(&app, arm, routed, exposure.as_ref(), started, &mut response);
    response
}

/// Records a served response: the experiment's exposure and conversion
/// (removing a conversion header), then the version's metrics.
fn record(
    app: &LiveApp,
    arm: &Arm,
    routed: Routed,
    exposure: Option<&(Arc<ArmCounter>, u64)>,
    started: Instant,
    response: &mut hyper::Response<ResponseBody>,
) {
    if let (Some(rule), Some((counter, user))) = (&app.conversion, exposure) {
        crate::experiments::count_exposure(rule, counter, *user, response);
    }
    let status = response.status().as_u16();
    arm.observe(status, started.elapsed().as_secs_f64(), routed);
}
