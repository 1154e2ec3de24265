//! The node-to-node link: requests for apps this node does not serve go
//! to a node that does, over HTTP/2 on post-quantum TLS (see
//! `dwcp_crypto::peer_tls`: each side pins the other's certificate by the
//! fingerprint in its membership record).
//!
//! Which replica: the request's own region first, then the cheaper of two
//! drawn at random, cost being peak-EWMA latency × requests in flight
//! (`dwcp_mesh::balance`). One HTTP/2 connection per peer carries every
//! request to it. GET and HEAD are retried once on another replica when
//! the first cannot be reached or its link fails before an answer: they
//! change nothing, so trying twice is safe; other methods are not retried.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dwcp_mesh::balance::{Candidate, PeakEwma, choose};
use dwcp_runtime::{HttpError, ResponseBody, text_response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::watch;

pub use dwcp_crypto::peer_tls::PeerIdentity;

use crate::cluster::{Members, Peer};
use crate::ingress::Ingress;

/// The header a forwarded response carries: which node served it.
pub const SERVED_BY: &str = "x-dwcp-served-by";

/// The header of a peer's answer meaning "I do not serve this app now":
/// nothing ran there, so any request may go to another replica.
pub const NOT_HERE: &str = "x-dwcp-not-here";

/// The header of a request a node sent on because the app or key it names
/// is served elsewhere now (`dwcp migrate`, a placement just changed): how
/// many times it was. Twice is enough for any move to settle (the node a
/// request came from may be the one a key is moving to), so requests
/// never loop.
pub const MOVED: &str = "x-dwcp-moved";

/// How many times a request is sent on after a move.
const MAX_MOVES: u8 = 2;

/// Marks a request that came over a peer link: it is served here, or sent
/// on only after a move (counted in [`MOVED`], so never in a loop).
#[derive(Debug, Clone, Copy)]
pub struct FromPeer;

/// A GET or HEAD body kept for a retry, at most this long.
const RETRY_BODY: usize = 64 << 10;
/// How long connecting to a peer (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The latency a peer starts with, before it has answered (linkerd's).
const DEFAULT_RTT_NS: f64 = 30e6;
/// How fast old latencies fade.
const DECAY_NS: f64 = 10e9;

type PeerBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// The host the cluster's own requests name on a peer link.
const INTERNAL_HOST: &str = "dwcp-peer";

/// Sends requests to the nodes that serve what this one does not.
pub struct Forwarder {
    members: Arc<Members>,
    identity: PeerIdentity,
    links: Mutex<HashMap<String, Link>>,
    scores: Mutex<HashMap<String, PeakEwma>>,
    epoch: Instant,
    seed: AtomicU64,
    /// Requests forwarded, and retried on another replica.
    pub forwarded: AtomicU64,
    /// Retries on another replica.
    pub retried: AtomicU64,
}

/// One HTTP/2 connection to a peer, for the certificate it was made for.
struct Link {
    cert: String,
    sender: SendRequest<PeerBody>,
}

impl Forwarder {
    /// A forwarder for this node.
    pub fn new(members: Arc<Members>, identity: PeerIdentity) -> Arc<Forwarder> {
        Arc::new(Forwarder {
            members,
            identity,
            links: Mutex::default(),
            scores: Mutex::default(),
            epoch: Instant::now(),
            seed: AtomicU64::new(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id())),
            forwarded: AtomicU64::new(0),
            retried: AtomicU64::new(0),
        })
    }

    /// The nodes serving `key` (`tenant/app`) elsewhere, if it is placed
    /// on some nodes and not this one.
    pub fn replicas(&self, key: &str) -> Vec<Peer> {
        self.members.replicas_elsewhere(key)
    }

    /// Forwards `request` to one of `replicas` (not empty).
    pub async fn forward(
        &self,
        key: &str,
        replicas: Vec<Peer>,
        request: hyper::Request<Incoming>,
    ) -> hyper::Response<ResponseBody> {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        let (parts, body) = request.into_parts();
        let idempotent = parts.method == hyper::Method::GET || parts.method == hyper::Method::HEAD;
        if !idempotent {
            let Some(peer) = self.pick(&replicas, &[]) else {
                return no_replica(key);
            };
            let body = body.boxed_unsync();
            return match self
                .send(&peer, hyper::Request::from_parts(parts, body))
                .await
            {
                Ok(response) => response,
                Err(e) => unreachable_replica(key, &peer, &e),
            };
        }
        // Kept whole so that it can be sent twice.
        let body = match Limited::new(body, RETRY_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return text_response(413, "a GET or HEAD body over 64 KiB is not forwarded"),
        };
        let mut tried: Vec<String> = Vec::new();
        let mut last_error = String::new();
        for attempt in 0..2 {
            let Some(peer) = self.pick(&replicas, &tried) else {
                break;
            };
            if attempt > 0 {
                self.retried.fetch_add(1, Ordering::Relaxed);
            }
            let request = hyper::Request::from_parts(
                parts.clone(),
                Full::new(body.clone())
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            );
            match self.send(&peer, request).await {
                Ok(response) => return response,
                Err(e) => {
                    tracing::debug!(node = %peer.node, "forwarding failed: {e}");
                    last_error = e;
                    tried.push(peer.node);
                }
            }
        }
        match tried.last() {
            Some(node) => {
                let mut response = text_response(
                    502,
                    &format!("app `{key}`: no replica answered (last, {node}: {last_error})"),
                );
                response.headers_mut().insert(
                    hyper::header::RETRY_AFTER,
                    hyper::header::HeaderValue::from_static("1"),
                );
                response
            }
            None => no_replica(key),
        }
    }

    /// Forwards `request` to `node`, which serves the key it names now.
    pub async fn forward_to(
        &self,
        key: &str,
        node: &str,
        mut request: hyper::Request<Incoming>,
    ) -> hyper::Response<ResponseBody> {
        let moves = request
            .headers()
            .get(MOVED)
            .and_then(|v| v.to_str().ok()?.parse::<u8>().ok())
            .unwrap_or(0);
        if moves >= MAX_MOVES {
            // Sent on twice already: a migration is finishing; the client
            // comes back in a moment.
            let mut response = text_response(
                503,
                &format!("app `{key}`: the key is moving between nodes; retry"),
            );
            response.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from_static("1"),
            );
            return response;
        }
        let Some(peer) = self.members.peer(node) else {
            return no_replica(key);
        };
        request.headers_mut().insert(
            MOVED,
            hyper::header::HeaderValue::from(u16::from(moves) + 1),
        );
        self.forward(key, vec![peer], request).await
    }

    /// Sends one of the cluster's own requests (`POST path`, a body) to
    /// `node`; its status and whole body.
    pub async fn call(
        &self,
        node: &str,
        path: &str,
        body: Bytes,
    ) -> Result<(hyper::StatusCode, Bytes), String> {
        let peer = self
            .members
            .peer(node)
            .ok_or_else(|| format!("`{node}` is not a live member reachable over a peer link"))?;
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, INTERNAL_HOST)
            .body(
                Full::new(body)
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .map_err(|e| e.to_string())?;
        let response = self.send(&peer, request).await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{node}: the answer broke off: {e}"))?
            .to_bytes();
        Ok((status, body))
    }

    /// What this node measured of `node`: peak-EWMA latency in
    /// milliseconds and requests in flight to it.
    pub fn score_of(&self, node: &str) -> Option<(f64, u32)> {
        let now = self.now_ns();
        let mut scores = self.scores.lock().unwrap_or_else(|e| e.into_inner());
        scores
            .get_mut(node)
            .map(|s| (s.estimate_ns(now) / 1e6, s.in_flight()))
    }

    /// The replica to try: region first, then power of two choices.
    fn pick(&self, replicas: &[Peer], tried: &[String]) -> Option<Peer> {
        let left: Vec<&Peer> = replicas
            .iter()
            .filter(|p| !tried.contains(&p.node))
            .collect();
        let now = self.now_ns();
        let costs: Vec<f64> = {
            let mut scores = self.scores.lock().unwrap_or_else(|e| e.into_inner());
            left.iter()
                .map(|p| {
                    scores
                        .entry(p.node.clone())
                        .or_insert_with(|| PeakEwma::new(DEFAULT_RTT_NS, DECAY_NS, now))
                        .cost(now)
                })
                .collect()
        };
        let candidates: Vec<Candidate<'_>> = left
            .iter()
            .map(|p| Candidate {
                node: &p.node,
                region: &p.region,
            })
            .collect();
        let index = choose(&candidates, &costs, &self.members.identity.region, |n| {
            self.random(n)
        })?;
        Some(left[index].clone())
    }

    /// Sends one request to `peer`; an error when the link failed before
    /// a response head came (then nothing was served there).
    async fn send(
        &self,
        peer: &Peer,
        mut request: hyper::Request<PeerBody>,
    ) -> Result<hyper::Response<ResponseBody>, String> {
        let started = Instant::now();
        self.score(&peer.node, |s, _| s.start());
        let mut sender = self
            .link(peer)
            .await
            .inspect_err(|_| self.failed(&peer.node))?;
        // HTTP/2 carries the host in the URI's authority.
        if let Some(host) = request.headers().get(hyper::header::HOST).cloned() {
            let path = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            if let Ok(uri) = hyper::Uri::builder()
                .scheme("https")
                .authority(host.as_bytes())
                .path_and_query(path)
                .build()
            {
                *request.uri_mut() = uri;
            }
        }
        *request.version_mut() = hyper::Version::HTTP_2;
        request.headers_mut().remove(hyper::header::CONNECTION);
        request.headers_mut().remove("keep-alive");
        request
            .headers_mut()
            .remove(hyper::header::TRANSFER_ENCODING);
        request.headers_mut().remove(hyper::header::UPGRADE);
        let response = sender.send_request(request).await.map_err(|e| {
            self.drop_link(&peer.node);
            self.failed(&peer.node);
            e.to_string()
        })?;
        if response.headers().contains_key(NOT_HERE) {
            self.failed(&peer.node);
            return Err(format!("{} does not serve it now", peer.node));
        }
        let rtt = started.elapsed().as_nanos() as f64;
        self.score(&peer.node, |s, now| s.finish(rtt, now));
        let (mut parts, body) = response.into_parts();
        parts.version = hyper::Version::HTTP_11;
        // A request sent on again (after a move) names the last node.
        if let Ok(node) = hyper::header::HeaderValue::from_str(&peer.node)
            && !parts.headers.contains_key(SERVED_BY)
        {
            parts.headers.insert(SERVED_BY, node);
        }
        let body = body
            .map_err(|e| {
                tracing::debug!("forwarded body: {e}");
                HttpError::HttpProtocolError
            })
            .boxed_unsync();
        Ok(hyper::Response::from_parts(parts, body))
    }

    async fn link(&self, peer: &Peer) -> Result<SendRequest<PeerBody>, String> {
        let cached = {
            let links = self.links.lock().unwrap_or_else(|e| e.into_inner());
            links
                .get(&peer.node)
                .filter(|l| l.cert == peer.cert && !l.sender.is_closed())
                .map(|l| l.sender.clone())
        };
        if let Some(sender) = cached {
            return Ok(sender);
        }
        let config = self
            .identity
            .client_config(&peer.cert)
            .map_err(|e| e.to_string())?;
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(&peer.addr)
                .await
                .map_err(|e| format!("cannot reach {} at {}: {e}", peer.node, peer.addr))?;
            let _ = tcp.set_nodelay(true);
            let name =
                rustls::pki_types::ServerName::try_from("dwcp-peer").map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {}: {e}", peer.node))?;
            hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .initial_stream_window_size(4 << 20)
                .initial_connection_window_size(16 << 20)
                .handshake(TokioIo::new(tls))
                .await
                .map_err(|e| format!("HTTP/2 with {}: {e}", peer.node))
        };
        let (sender, connection) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| format!("{} did not answer within {CONNECT_TIMEOUT:?}", peer.node))??;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("peer link ended: {e}");
            }
        });
        self.links.lock().unwrap_or_else(|e| e.into_inner()).insert(
            peer.node.clone(),
            Link {
                cert: peer.cert.clone(),
                sender: sender.clone(),
            },
        );
        Ok(sender)
    }

    fn drop_link(&self, node: &str) {
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(node);
    }

    /// A failure weighs like a very slow answer: the peer is avoided
    /// until its estimate decays.
    fn failed(&self, node: &str) {
        self.score(node, |s, now| s.finish(1e9, now));
    }

    fn score(&self, node: &str, update: impl FnOnce(&mut PeakEwma, u64)) {
        let now = self.now_ns();
        let mut scores = self.scores.lock().unwrap_or_else(|e| e.into_inner());
        let score = scores
            .entry(node.to_string())
            .or_insert_with(|| PeakEwma::new(DEFAULT_RTT_NS, DECAY_NS, now));
        update(score, now);
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// SplitMix64 over a shared counter: uniform enough to draw two
    /// replicas, and lock-free.
    fn random(&self, below: u64) -> u64 {
        let mut z = self
            .seed
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % below.max(1)
    }
}

fn no_replica(key: &str) -> hyper::Response<ResponseBody> {
    let mut response = text_response(
        503,
        &format!("app `{key}` has no reachable replica in the cluster now; retry shortly"),
    );
    response.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("1"),
    );
    response
}

fn unreachable_replica(key: &str, peer: &Peer, error: &str) -> hyper::Response<ResponseBody> {
    text_response(
        502,
        &format!(
            "app `{key}`: its replica on {} could not be reached ({error}); not retried, as the method may change state",
            peer.node
        ),
    )
}

/// The peer listener's TLS: clients must be live members.
pub fn server_config(
    identity: &PeerIdentity,
    members: Arc<Members>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    Ok(identity.server_config(Arc::new(move |fingerprint| {
        members.is_member_cert(fingerprint)
    }))?)
}

/// Serves requests from peers: HTTP/2 over the peer link's TLS, each one
/// routed as a client's would be, but never forwarded again.
pub fn spawn_listener(
    listener: std::net::TcpListener,
    ingress: Arc<Ingress>,
    config: Arc<rustls::ServerConfig>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name("dwcp-peer".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("the peer link cannot use its listener: {e}");
                        return;
                    }
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((stream, addr)) = accepted else {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            };
                            let _ = stream.set_nodelay(true);
                            let acceptor = acceptor.clone();
                            let ingress = ingress.clone();
                            tokio::spawn(serve_peer(acceptor, stream, addr, ingress));
                        }
                        _ = shutdown.changed() => break,
                    }
                }
            });
        })?;
    Ok(thread)
}

/// Whether `request` is one of the cluster's own (to `INTERNAL_HOST`).
fn is_internal(request: &hyper::Request<Incoming>) -> bool {
    let host = request.uri().host().or_else(|| {
        request
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    host == Some(INTERNAL_HOST) && request.uri().path().starts_with(crate::migrate::INTERNAL)
}

async fn serve_peer(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    ingress: Arc<Ingress>,
) {
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::warn!(%addr, "peer link refused: {e}");
            return;
        }
        Err(_) => return,
    };
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let ingress = ingress.clone();
        async move {
            // The cluster's own requests name a host no app has, so a
            // client's request (forwarded here) can never be taken for one.
            if let Some(migrations) = &ingress.migrations
                && is_internal(&request)
            {
                return Ok(migrations.serve_internal(request).await);
            }
            request.extensions_mut().insert(FromPeer);
            Ok::<_, std::convert::Infallible>(
                crate::ingress::route(&ingress, request, addr.ip()).await,
            )
        }
    });
    let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .serve_connection(TokioIo::new(tls), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(%addr, "peer connection ended: {e}");
    }
}
