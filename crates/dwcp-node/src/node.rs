//! Starting and stopping a node: listeners, threads, shutdown.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use dwcp_runtime::{Runtime, RuntimeSettings};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::watch;

use crate::admin::{AdminState, router};
use crate::apps::AppTable;
use crate::control::{Control, ControlSettings};
use crate::ingress::{Ingress, route};
use crate::metrics::NodeMetrics;
use crate::startup::LoadReport;

/// Everything `dwcp up` can set.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where state, artifacts and compiled code live.
    pub data_dir: PathBuf,
    /// Where apps are served.
    pub http: SocketAddr,
    /// Where the admin API listens.
    pub admin: SocketAddr,
    /// Ingress threads, each with its own single-threaded event loop.
    pub workers: usize,
    /// Host suffix apps are addressed under: `APP.TENANT.<domain>`.
    pub domain: String,
    /// The engine's pool settings.
    pub runtime: RuntimeSettings,
    /// Largest component the admin API accepts, in bytes.
    pub max_upload: usize,
    /// How long in-flight requests may take to finish at shutdown.
    pub drain_timeout: Duration,
    /// Bytes of guest output kept per app for `dwcp logs`.
    pub log_bytes_per_app: usize,
    /// Versions kept per app unless the app says otherwise.
    pub keep_versions: u32,
    /// Apps loaded (compiled, after an upgrade) at once at start.
    pub compile_jobs: usize,
    /// How long `dwcp gc` keeps audit entries.
    pub audit_retention: Duration,
    /// `/metrics` answers without a token.
    pub metrics_public: bool,
    /// Serve HTTPS on the ingress address with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Serve the admin API over the same TLS.
    pub admin_tls: bool,
    /// The node key is replaced when it is this old (none: never by itself).
    pub node_key_rotation: Option<Duration>,
    /// The `fractional` bucketing flags are evaluated with (flagd's v2
    /// unless flags were written for v1).
    pub flags_fractional: dwcp_release::flags::FractionalVersion,
    /// Export traces of the request path to this OTLP/HTTP collector.
    pub otlp_endpoint: Option<String>,
    /// Who this node is among others.
    pub identity: crate::cluster::Identity,
    /// The cluster to join, if any.
    pub cluster: Option<crate::cluster::ClusterSettings>,
    /// How far back demand by region is counted, for placement.
    pub demand_window: Duration,
    /// The edge response cache's size in bytes (0: off).
    pub cache_bytes: usize,
    /// Where peers reach this node in a cluster (`None`: the ingress
    /// address's host, on a port of the system's choosing).
    pub peer: Option<SocketAddr>,
}

impl NodeConfig {
    /// The defaults of the contract, with state in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin: SocketAddr::from(([127, 0, 0, 1], 8081)),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            domain: "localhost".into(),
            runtime: RuntimeSettings::default(),
            max_upload: 256 << 20,
            drain_timeout: Duration::from_secs(30),
            log_bytes_per_app: dwcp_runtime::DEFAULT_LOG_BYTES,
            keep_versions: 10,
            compile_jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            audit_retention: Duration::from_secs(90 * 86_400),
            metrics_public: false,
            tls: None,
            admin_tls: false,
            node_key_rotation: Some(Duration::from_secs(30 * 86_400)),
            flags_fractional: Default::default(),
            otlp_endpoint: None,
            identity: crate::cluster::Identity {
                node_id: "node".into(),
                region: "default".into(),
                labels: Default::default(),
            },
            cluster: None,
            peer: None,
            cache_bytes: 64 << 20,
            demand_window: Duration::from_secs(300),
        }
    }
}

/// A node: start it with [`Node::start`].
pub struct Node;

/// A started node, serving until [`RunningNode::stop`].
pub struct RunningNode {
    /// The bound ingress address.
    pub http_addr: SocketAddr,
    /// The bound admin address.
    pub admin_addr: SocketAddr,
    /// How many stored apps were loaded at start.
    pub apps_loaded: usize,
    /// How loading them went.
    pub load_report: LoadReport,
    /// The node's metrics.
    pub metrics: Arc<NodeMetrics>,
    /// Whether this start wrote a new node-wide admin token.
    pub created_admin_token: bool,
    /// Whether this start made the root and local publisher keys.
    pub created_trust: bool,
    runtime: Arc<Runtime>,
    control: Arc<Control>,
    shutdown: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl Node {
    /// Binds both addresses, loads every stored app and starts serving.
    /// Returns once the node serves.
    pub fn start(config: NodeConfig) -> anyhow::Result<RunningNode> {
        let metrics = Arc::new(NodeMetrics::default());
        let runtime = Arc::new(Runtime::new(
            config.runtime.clone(),
            config.data_dir.join("aot"),
            metrics.runtime.clone(),
        )?);
        let apps = Arc::new(AppTable::default());
        let http = TcpListener::bind(config.http)
            .with_context(|| format!("cannot listen on {} (--http)", config.http))?;
        let admin = TcpListener::bind(config.admin)
            .with_context(|| format!("cannot listen on {} (--admin)", config.admin))?;
        let http_addr = http.local_addr()?;
        let admin_addr = admin.local_addr()?;
        let control = Arc::new(
            Control::open(
                &config.data_dir,
                runtime.clone(),
                apps.clone(),
                metrics.clone(),
                ControlSettings {
                    domain: config.domain.clone(),
                    node_addrs: vec![admin_addr],
                    log_bytes: config.log_bytes_per_app,
                    keep_versions: config.keep_versions,
                    audit_retention: config.audit_retention,
                    max_upload: config.max_upload,
                    cache_bytes: config.cache_bytes,
                },
            )
            .with_context(|| {
                format!(
                    "cannot open the data directory {}",
                    config.data_dir.display()
                )
            })?,
        );
        let (shutdown, _) = watch::channel(false);
        let mut threads = Vec::new();
        control.mark_stored_loading()?;

        let (tokens, created_admin_token) = crate::auth::TokenStore::open(&config.data_dir)
            .context("cannot open the admin tokens")?;
        let (trust, created_trust) =
            crate::trust::TrustStore::open(&config.data_dir, dwcp_store::unix_now())
                .context("cannot open the node's trust manifest")?;
        let flags = Arc::new(
            crate::flags::FlagStore::open(control.clone(), config.flags_fractional)
                .context("cannot load the tenants' feature flags")?,
        );
        let trust = Arc::new(trust);
        let mut peer_link = None;
        let demand = config.cluster.as_ref().map(|_| {
            Arc::new(crate::demand::DemandCounter::new(
                &config.identity.region,
                config.demand_window.as_secs(),
            ))
        });
        let (members, publisher) = match &config.cluster {
            Some(settings) => {
                let peer_addr = config
                    .peer
                    .unwrap_or_else(|| SocketAddr::new(http_addr.ip(), 0));
                let peer_listener = TcpListener::bind(peer_addr)
                    .with_context(|| format!("cannot listen on {peer_addr} (--peer)"))?;
                let peer_addr = peer_listener.local_addr()?;
                let identity = crate::peer::PeerIdentity::generate()?;
                let fingerprint = identity.fingerprint.clone();
                let (publisher, queue) = crate::desired::publisher();
                let sync = crate::desired::Sync {
                    control: control.clone(),
                    trust: trust.clone(),
                    flags: flags.clone(),
                    publisher: publisher.clone(),
                    node_id: config.identity.node_id.clone(),
                    members: None,
                    demand_window: config.demand_window,
                    uploaded: Default::default(),
                };
                let (members, thread) = crate::cluster::join(
                    settings,
                    config.identity.clone(),
                    http_addr,
                    (peer_addr, fingerprint),
                    demand.clone(),
                    (sync, queue),
                    shutdown.subscribe(),
                )?;
                peer_link = Some((peer_listener, identity));
                threads.push(thread);
                tracing::info!(
                    node = %config.identity.node_id,
                    region = %config.identity.region,
                    cluster = %settings.url,
                    "joined the cluster"
                );
                (members, Some(publisher))
            }
            None => (
                crate::cluster::alone(config.identity.clone(), http_addr),
                None,
            ),
        };
        let admin_state = Arc::new(AdminState {
            control: control.clone(),
            metrics: metrics.clone(),
            ready: AtomicBool::new(false),
            shutdown: shutdown.subscribe(),
            tokens,
            metrics_public: config.metrics_public,
            trust,
            flags: flags.clone(),
            members,
            publisher,
            forwarder: std::sync::OnceLock::new(),
            migrations: std::sync::OnceLock::new(),
        });
        // /metrics carries each trusted key's expiry, read from the manifest.
        metrics.watch_trust(&admin_state.trust);
        if config.admin_tls && config.tls.is_none() {
            anyhow::bail!(
                "--admin-tls needs a certificate: --tls-cert/--tls-key or --tls-self-signed"
            );
        }
        let admin_tls = config.tls.clone().filter(|_| config.admin_tls);
        threads.push(spawn_admin(
            admin,
            admin_state.clone(),
            config.max_upload,
            admin_tls,
            config.node_key_rotation,
            config.drain_timeout,
            shutdown.subscribe(),
        )?);

        // Serving starts before loading: each app serves as soon as it is
        // loaded, the busiest first (see `startup.rs`).
        let traces = match &config.otlp_endpoint {
            Some(url) => {
                let (tracer, export) = crate::traces::Tracer::new(url, admin_addr.to_string())?;
                // Its own thread: it ends by itself once the ingress (every
                // sender) is gone, after posting what it holds.
                std::thread::Builder::new()
                    .name("dwcp-traces".into())
                    .spawn(move || {
                        match tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                        {
                            Ok(rt) => rt.block_on(export),
                            Err(e) => tracing::warn!("traces are not exported: {e}"),
                        }
                    })?;
                Some(tracer)
            }
            None => None,
        };
        let peer_link = match peer_link {
            Some((listener, identity)) => {
                let config = crate::peer::server_config(&identity, admin_state.members.clone())?;
                let forwarder = crate::peer::Forwarder::new(admin_state.members.clone(), identity);
                let _ = admin_state.forwarder.set(forwarder.clone());
                if let Some(publisher) = &admin_state.publisher {
                    let _ = admin_state.migrations.set(crate::migrate::Migrations::new(
                        control.clone(),
                        admin_state.members.clone(),
                        forwarder.clone(),
                        publisher.clone(),
                    ));
                }
                Some((listener, config, forwarder))
            }
            None => None,
        };
        let ingress = Arc::new(Ingress {
            apps,
            flags,
            domain: config.domain.clone(),
            traces,
            forwarder: peer_link.as_ref().map(|(_, _, f)| f.clone()),
            cache: (config.cache_bytes > 0).then(|| control.cache.clone()),
            demand: demand.clone(),
            migrations: admin_state.migrations.get().cloned(),
        });
        if let Some((listener, tls, _)) = peer_link {
            threads.push(crate::peer::spawn_listener(
                listener,
                ingress.clone(),
                tls,
                shutdown.subscribe(),
            )?);
        }
        for i in 0..config.workers.max(1) {
            let listener = http.try_clone()?;
            threads.push(spawn_ingress(
                i,
                listener,
                ingress.clone(),
                config.tls.clone(),
                shutdown.subscribe(),
                config.drain_timeout,
            )?);
        }
        threads.push(spawn_keys(
            control.clone(),
            shutdown.subscribe(),
            config.drain_timeout,
        )?);
        let load_report = control.load_all(config.compile_jobs)?;
        admin_state.ready.store(true, Ordering::Release);
        Ok(RunningNode {
            http_addr,
            admin_addr,
            apps_loaded: load_report.loaded,
            load_report,
            metrics,
            created_admin_token,
            created_trust,
            runtime,
            control,
            shutdown,
            threads,
        })
    }
}

impl RunningNode {
    /// Stops accepting, lets in-flight requests finish (up to the drain
    /// timeout) and returns when every thread has.
    pub fn stop(self) {
        let _ = self.shutdown.send(true);
        for thread in self.threads {
            let _ = thread.join();
        }
        self.control.flush_served();
        self.runtime.shutdown();
    }
}

/// How long a client has to finish a TLS handshake or send a request's
/// head: slow or idle connections cannot pile up.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves HTTP/1.1 on one connection (plain or TLS), watched for shutdown.
fn serve_http1<IO>(io: IO, peer: IpAddr, ingress: Arc<Ingress>, graceful: &GracefulShutdown)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let ingress = ingress.clone();
        async move { Ok::<_, Infallible>(route(&ingress, request, peer).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    let connection = graceful.watch(connection);
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("connection ended: {e}");
        }
    });
}

fn spawn_ingress(
    index: usize,
    listener: TcpListener,
    ingress: Arc<Ingress>,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) -> anyhow::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    // One single-threaded event loop per thread: a request stays on the
    // thread that accepted it, with no work stealing between cores.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread =
        std::thread::Builder::new()
            .name(format!("dwcp-ingress-{index}"))
            .spawn(move || {
                rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("ingress cannot use its listener: {e}");
                        return;
                    }
                };
                let graceful = Arc::new(GracefulShutdown::new());
                let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let (stream, peer) = match accepted {
                                Ok((stream, peer)) => (stream, peer.ip()),
                                Err(e) => {
                                    // Out of file descriptors and the like:
                                    // back off rather than spin.
                                    tracing::warn!("accept failed: {e}");
                                    tokio::time::sleep(Duration::from_millis(10)).await;
                                    continue;
                                }
                            };
                            let _ = stream.set_nodelay(true);
                            let ingress = ingress.clone();
                            match &acceptor {
                                None => serve_http1(stream, peer, ingress, &graceful),
                                Some(acceptor) => {
                                    // The handshake runs on the connection's own
                                    // task, under the same 10 s as a request head.
                                    let handshake = acceptor.accept(stream);
                                    let graceful = graceful.clone();
                                    tokio::spawn(async move {
                                        match tokio::time::timeout(HEAD_TIMEOUT, handshake).await {
                                            Ok(Ok(tls)) => serve_http1(tls, peer, ingress, &graceful),
                                            Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                                            Err(_) => tracing::debug!("TLS handshake timed out"),
                                        }
                                    });
                                }
                            }
                        }
                        _ = shutdown.changed() => break,
                    }
                }
                drop(listener);
                let mut graceful = graceful;
                let drained = async move {
                    // Handshakes in flight hold a handle for up to
                    // HEAD_TIMEOUT; then every connection is watched.
                    let graceful = loop {
                        match Arc::try_unwrap(graceful) {
                            Ok(g) => break g,
                            Err(shared) => {
                                graceful = shared;
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                    };
                    graceful.shutdown().await
                };
                if tokio::time::timeout(drain, drained).await.is_err() {
                    tracing::warn!("requests still in flight after {drain:?}; closing them");
                }
            });
            })?;
    Ok(thread)
}

/// Stateful apps' keys: idle ones hibernated and interval checkpoints
/// taken, on a thread of their own; at shutdown, every changed key is
/// checkpointed (waiting for requests in flight, up to the drain timeout).
fn spawn_keys(
    control: Arc<Control>,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) -> anyhow::Result<JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name("dwcp-keys".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut last_interval = std::collections::HashMap::new();
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tokio::select! {
                        _ = tick.tick() => control.maintain_keys(&mut last_interval).await,
                        _ = shutdown.changed() => break,
                    }
                }
                match tokio::time::timeout(drain, control.drain_keys()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("checkpointed {n} keys at shutdown"),
                    Err(_) => tracing::warn!(
                        "keys still busy after {drain:?}; their last checkpoints stand"
                    ),
                }
            });
        })?;
    Ok(thread)
}

/// How often rollouts in progress are looked at.
const ROLLOUT_LOOK: Duration = Duration::from_secs(1);

/// Replaces the node key whenever it is `period` old; the old one stays
/// accepted for the default overlap.
async fn rotate_node_key_on_schedule(
    trust: Arc<crate::trust::TrustStore>,
    period: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let check = (period / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(check);
    let mut said_no_root = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = dwcp_store::unix_now();
        if !trust.node_key_due(now, period.as_secs()) {
            continue;
        }
        let trust = trust.clone();
        let rotated = tokio::task::spawn_blocking(move || {
            trust.rotate_node_key(now, dwcp_crypto::trust::DEFAULT_OVERLAP_SECS)
        })
        .await;
        match rotated {
            Ok(Ok(_)) => {}
            // The root kept offline: said once, not every minute.
            Ok(Err(crate::trust::TrustStoreError::NoRootKey)) if said_no_root => {}
            Ok(Err(e @ crate::trust::TrustStoreError::NoRootKey)) => {
                said_no_root = true;
                tracing::warn!("the node key is due for rotation but {e}");
            }
            Ok(Err(e)) => tracing::warn!("the node key is due for rotation but: {e}"),
            Err(e) => tracing::warn!("node key rotation task failed: {e}"),
        }
    }
}

fn spawn_admin(
    listener: TcpListener,
    state: Arc<AdminState>,
    max_upload: usize,
    tls: Option<Arc<rustls::ServerConfig>>,
    node_key_rotation: Option<Duration>,
    drain: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let trust = state.trust.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let state_for_flush = state.clone();
    let app = router(state, max_upload);
    let thread = std::thread::Builder::new()
        .name("dwcp-admin".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("admin API cannot use its listener: {e}");
                        return;
                    }
                };
                // Request counts reach the store once a minute (they order
                // the loading at the next start; losing a minute is fine).
                let control = state_for_flush.control.clone();
                let mut flush_stop = shutdown.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(60));
                    tick.tick().await;
                    loop {
                        tokio::select! {
                            _ = tick.tick() => {}
                            _ = flush_stop.changed() => return,
                        }
                        let control = control.clone();
                        let _ = tokio::task::spawn_blocking(move || control.flush_served()).await;
                    }
                });
                if let Some(period) = node_key_rotation {
                    tokio::spawn(rotate_node_key_on_schedule(trust, period, shutdown.clone()));
                }
                // Rollouts in progress are looked at once a second.
                let control = state_for_flush.control.clone();
                let mut rollout_stop = shutdown.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(ROLLOUT_LOOK);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            _ = tick.tick() => {}
                            _ = rollout_stop.changed() => return,
                        }
                        control.tick_rollouts().await;
                    }
                });
                let mut drain_signal = shutdown.clone();
                let stop = async move {
                    let _ = shutdown.changed().await;
                };
                let served = async move {
                    match tls {
                        None => axum::serve(listener, app).with_graceful_shutdown(stop).await,
                        Some(config) => {
                            match crate::tls_listener::TlsListener::new(listener, config, HEAD_TIMEOUT) {
                                Ok(listener) => {
                                    axum::serve(listener, app).with_graceful_shutdown(stop).await
                                }
                                Err(e) => Err(e),
                            }
                        }
                    }
                };
                // A connection that stays open (a stalled backup reader, a slow
                // upload) must not hold the node's stop past the drain timeout.
                let served = tokio::select! {
                    served = served => served,
                    _ = async {
                        let _ = drain_signal.changed().await;
                        tokio::time::sleep(drain).await;
                    } => {
                        tracing::warn!("admin connections still open after {drain:?}; closing them");
                        Ok(())
                    }
                };
                if let Err(e) = served {
                    tracing::error!("admin API failed: {e}");
                }
            });
        })?;
    Ok(thread)
}
