//! This node among others: its identity (id, region, labels), and with
//! `--cluster` its record in the cluster (joined at start, kept by
//! heartbeats, left at shutdown) and every member as seen from here.
//!
//! Without `--cluster` the node is a cluster of one: the same view with
//! itself alone, so `dwcp nodes` and the dashboard read one shape.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use dwcp_cluster::{Cluster, ClusterOptions, MemberEvent, NodeRecord};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::watch;

/// Who this node is.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Its id (`--node-id`, default the host name).
    pub node_id: String,
    /// Its region (`--region`, default `default`).
    pub region: String,
    /// Its labels (`--labels k=v,…`).
    pub labels: BTreeMap<String, String>,
}

/// How to join a cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `tls://HOST:PORT` or `nats://HOST:PORT`.
    pub url: String,
    /// The CA of the servers' certificates (`--cluster-ca`), PEM.
    pub ca_pem: Option<Vec<u8>>,
}

/// A member as `dwcp nodes` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    /// Its id.
    pub node: String,
    /// Its region.
    pub region: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// `active`, `cordoned` or `draining`.
    pub admission: String,
    /// Where it serves apps.
    pub http: String,
    /// Its build.
    pub version: String,
    /// Whether it is the node answering.
    #[serde(rename = "self")]
    pub this: bool,
}

/// The members as this node sees them.
pub struct Members {
    /// This node.
    pub identity: Identity,
    /// The cluster's URL, if in one.
    pub cluster: Option<String>,
    http: String,
    view: Mutex<BTreeMap<String, NodeRecord>>,
    connected: AtomicBool,
}

impl Members {
    /// Every live member, this node first.
    pub fn list(&self) -> Vec<MemberView> {
        let mut out = vec![MemberView {
            node: self.identity.node_id.clone(),
            region: self.identity.region.clone(),
            labels: self.identity.labels.clone(),
            admission: "active".into(),
            http: self.http.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            this: true,
        }];
        let view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        out.extend(
            view.values()
                .filter(|r| r.node != self.identity.node_id)
                .map(|r| MemberView {
                    node: r.node.clone(),
                    region: r.region.clone(),
                    labels: r.labels.clone(),
                    admission: r.admission.clone(),
                    http: r.http.clone(),
                    version: r.version.clone(),
                    this: false,
                }),
        );
        out
    }

    /// Whether the link to the cluster is up (always true for a node alone).
    pub fn connected(&self) -> bool {
        self.cluster.is_none() || self.connected.load(Ordering::Relaxed)
    }

    fn apply(&self, event: MemberEvent) {
        let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            MemberEvent::Up(record) => {
                view.insert(record.node.clone(), record);
            }
            MemberEvent::Gone(node) => {
                if view.remove(&node).is_some() {
                    tracing::info!(%node, "a node left the cluster");
                }
            }
        }
    }
}

/// The members of a node alone.
pub fn alone(identity: Identity, http: SocketAddr) -> std::sync::Arc<Members> {
    std::sync::Arc::new(Members {
        identity,
        cluster: None,
        http: http.to_string(),
        view: Mutex::new(BTreeMap::new()),
        connected: AtomicBool::new(true),
    })
}

/// Joins the cluster (returns once joined, or why not) and keeps the view
/// of its members on a thread of its own until `shutdown`, when the node
/// leaves at once rather than waiting for its record to expire.
pub fn join(
    settings: &ClusterSettings,
    identity: Identity,
    http: SocketAddr,
    sync: (crate::desired::Sync, crate::desired::PublishQueue),
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(std::sync::Arc<Members>, JoinHandle<()>)> {
    let members = std::sync::Arc::new(Members {
        identity: identity.clone(),
        cluster: Some(settings.url.clone()),
        http: http.to_string(),
        view: Mutex::new(BTreeMap::new()),
        connected: AtomicBool::new(false),
    });
    let options = ClusterOptions {
        url: settings.url.clone(),
        ca_pem: settings.ca_pem.clone(),
        name: format!("dwcp-{}", identity.node_id),
        replicas: 1,
    };
    let mut record = NodeRecord::new(&identity.node_id, &identity.region);
    record.labels = identity.labels.clone();
    record.http = http.to_string();
    let (joined_tx, joined_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    let view = members.clone();
    let thread = std::thread::Builder::new()
        .name("dwcp-cluster".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = joined_tx.send(Err(e.into()));
                    return;
                }
            };
            rt.block_on(async move {
                let joined = async {
                    let cluster = Cluster::connect(&options).await?;
                    let registration = cluster.join(record).await?;
                    let events = cluster.watch_members().await?;
                    let desired = dwcp_cluster::DesiredState::open(&cluster).await?;
                    let changes = desired.watch().await?;
                    anyhow::Ok((cluster, registration, events, desired, changes))
                };
                let (cluster, registration, events, desired, changes) = match joined.await {
                    Ok(parts) => parts,
                    Err(e) => {
                        let _ = joined_tx.send(Err(e));
                        return;
                    }
                };
                view.connected.store(true, Ordering::Relaxed);
                let _ = joined_tx.send(Ok(()));
                let (sync, queue) = sync;
                let syncing = tokio::spawn(sync.run(desired, changes, queue));
                let mut events = Box::pin(events);
                loop {
                    tokio::select! {
                        event = events.next() => match event {
                            Some(event) => view.apply(event),
                            None => break,
                        },
                        _ = shutdown.changed() => break,
                    }
                }
                syncing.abort();
                // Deregister: peers see this node go now, not in 2 s.
                match tokio::time::timeout(Duration::from_secs(2), registration.leave()).await {
                    Ok(Ok(())) => tracing::info!("left the cluster"),
                    Ok(Err(e)) => tracing::warn!("leaving the cluster: {e}"),
                    Err(_) => tracing::warn!(
                        "leaving the cluster timed out; the record expires by itself"
                    ),
                }
                drop(cluster);
            });
        })?;
    match joined_rx.recv_timeout(Duration::from_secs(15)) {
        Ok(Ok(())) => Ok((members, thread)),
        Ok(Err(e)) => Err(e).context("cannot join the cluster"),
        Err(_) => anyhow::bail!(
            "cannot join the cluster at {}: no answer within 15 s",
            settings.url
        ),
    }
}
