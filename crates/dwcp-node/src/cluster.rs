//! This node among others: its identity (id, region, labels), and with
//! `--cluster` its record in the cluster (joined at start, kept by
//! heartbeats, left at shutdown) and every member as seen from here.
//!
//! Without `--cluster` the node is a cluster of one: the same view with
//! itself alone, so `dwcp nodes` and the dashboard read one shape.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use dwcp_cluster::{Cluster, ClusterOptions, MemberEvent, NodeRecord};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
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
    /// The hub's JetStream domain, for a node attached to a leaf server.
    pub domain: Option<String>,
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
    /// Where its peers reach it (empty: alone).
    pub peer: String,
    /// Its build.
    pub version: String,
    /// Whether it is the node answering.
    #[serde(rename = "self")]
    pub this: bool,
}

/// Where an app's replicas are, as the placing node decided.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Placed {
    /// The nodes holding one.
    pub nodes: Vec<String>,
    /// Why, one line per decision.
    pub reasons: Vec<String>,
    /// The node that decided.
    #[serde(default)]
    pub decided_by: String,
    /// When (Unix seconds).
    #[serde(default)]
    pub decided_at: u64,
    /// A stateful app's keys served apart from the rest (on `nodes[0]`),
    /// where `dwcp migrate --key` moved them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, String>,
    /// The record's revision in the cluster (0: not written yet).
    #[serde(skip)]
    pub revision: u64,
}

impl Placed {
    /// Whether `node` serves the app, or some of its keys.
    pub fn holds(&self, node: &str) -> bool {
        self.nodes.iter().any(|n| n == node) || self.keys.values().any(|n| n == node)
    }

    /// Which node serves which of a stateful app's keys (it has one
    /// replica); `None` before it is placed.
    pub fn owner_table(&self) -> Option<crate::stateful::OwnerTable> {
        Some(crate::stateful::OwnerTable {
            all: self.nodes.first()?.clone(),
            keys: self.keys.clone(),
        })
    }
}

/// A node a request can be forwarded to.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its id.
    pub node: String,
    /// Its region.
    pub region: String,
    /// Its peer-link address.
    pub addr: String,
    /// Its peer-link certificate's SHA-256.
    pub cert: String,
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
    /// Where each limited app's replicas are, by `tenant/app`.
    placement: Mutex<HashMap<String, Placed>>,
    /// Nodes their operators cordoned or drained, by id.
    admission: Mutex<HashMap<String, String>>,
}

impl Members {
    /// `active`, `cordoned` or `draining`: as its operators set it.
    pub fn admission(&self, node: &str) -> String {
        self.admission
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .cloned()
            .unwrap_or_else(|| "active".into())
    }

    pub(crate) fn set_admission(&self, node: &str, admission: Option<String>) {
        let mut map = self.admission.lock().unwrap_or_else(|e| e.into_inner());
        match admission {
            Some(a) if a != "active" => map.insert(node.to_string(), a),
            _ => map.remove(node),
        };
    }

    /// Whether `node` is a live member (this node included).
    pub fn is_live(&self, node: &str) -> bool {
        node == self.identity.node_id
            || self
                .view
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(node)
    }

    /// Every live member, this node first.
    pub fn list(&self) -> Vec<MemberView> {
        let view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = vec![MemberView {
            node: self.identity.node_id.clone(),
            region: self.identity.region.clone(),
            labels: self.identity.labels.clone(),
            admission: self.admission(&self.identity.node_id),
            http: self.http.clone(),
            peer: view
                .get(&self.identity.node_id)
                .map(|r| r.peer.clone())
                .unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").into(),
            this: true,
        }];
        out.extend(
            view.values()
                .filter(|r| r.node != self.identity.node_id)
                .map(|r| MemberView {
                    node: r.node.clone(),
                    region: r.region.clone(),
                    labels: r.labels.clone(),
                    admission: self.admission(&r.node),
                    http: r.http.clone(),
                    peer: r.peer.clone(),
                    version: r.version.clone(),
                    this: false,
                }),
        );
        out
    }

    /// Where `tenant/app`'s replicas are, if it is placed on some nodes only.
    pub fn placement(&self, key: &str) -> Option<Placed> {
        self.placement
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Every placement known, by `tenant/app`.
    pub fn placements(&self) -> HashMap<String, Placed> {
        self.placement
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records at once who serves a stateful app's keys after a migration
    /// this node took part in (the cluster's record follows).
    pub(crate) fn set_owner_table(&self, key: &str, table: &crate::stateful::OwnerTable) {
        let mut map = self.placement.lock().unwrap_or_else(|e| e.into_inner());
        let placed = map.entry(key.to_string()).or_default();
        placed.nodes = vec![table.all.clone()];
        placed.keys = table.keys.clone();
    }

    pub(crate) fn set_placement(&self, key: &str, placed: Option<Placed>) {
        let mut map = self.placement.lock().unwrap_or_else(|e| e.into_inner());
        match placed {
            Some(p) => map.insert(key.to_string(), p),
            None => map.remove(key),
        };
    }

    /// The live members other than this node that hold a replica of
    /// `tenant/app` and can be reached over a peer link.
    pub fn replicas_elsewhere(&self, key: &str) -> Vec<Peer> {
        let Some(placed) = self.placement(key) else {
            return Vec::new();
        };
        placed.nodes.iter().filter_map(|n| self.peer(n)).collect()
    }

    /// Live members with the admission `active`, and their regions.
    pub fn schedulable(&self) -> Vec<(String, String)> {
        self.node_views()
            .into_iter()
            .filter(|v| v.schedulable)
            .map(|v| (v.id, v.region))
            .collect()
    }

    /// `node`, if it is a live member other than this one that can be
    /// reached over a peer link.
    pub fn peer(&self, node: &str) -> Option<Peer> {
        if node == self.identity.node_id {
            return None;
        }
        let view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        view.get(node)
            .filter(|r| !r.peer.is_empty() && !r.peer_cert.is_empty())
            .map(|r| Peer {
                node: r.node.clone(),
                region: r.region.clone(),
                addr: r.peer.clone(),
                cert: r.peer_cert.clone(),
            })
    }

    /// Whether a peer-link certificate is a live member's.
    pub fn is_member_cert(&self, fingerprint: &str) -> bool {
        let view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        view.values().any(|r| r.peer_cert == fingerprint)
    }

    /// Whether this node places replicas: the live member with the
    /// smallest id does, so that one node writes each decision. Two nodes
    /// that briefly both think so write with compare-and-set.
    pub fn is_leader(&self) -> bool {
        let view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        view.keys()
            .filter(|n| **n != self.identity.node_id)
            .all(|n| *n > self.identity.node_id)
    }

    /// Requests for `tenant/app` per region over the demand window, as the
    /// members' last heartbeats carry them.
    pub fn demand(&self, key: &str) -> BTreeMap<String, u64> {
        let view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for r in view.values() {
            if let Some(n) = r.demand.get(key) {
                *out.entry(r.region.clone()).or_default() += n;
            }
        }
        out
    }

    /// Every live member as placement sees it, this node included.
    pub fn node_views(&self) -> Vec<dwcp_mesh::placement::NodeView> {
        let view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = view
            .values()
            .map(|r| (r, self.admission(&r.node)))
            .map(|(r, admission)| dwcp_mesh::placement::NodeView {
                id: r.node.clone(),
                region: r.region.clone(),
                schedulable: admission == "active",
                keeps_work: admission != "draining",
                free_memory: r.free_memory,
                free_instances: r.free_instances,
            })
            .collect();
        if !view.contains_key(&self.identity.node_id) {
            // Before this node's first beat comes back through the watch.
            out.push(dwcp_mesh::placement::NodeView {
                id: self.identity.node_id.clone(),
                region: self.identity.region.clone(),
                schedulable: self.admission(&self.identity.node_id) == "active",
                keeps_work: self.admission(&self.identity.node_id) != "draining",
                free_memory: u64::MAX,
                free_instances: u32::MAX,
            });
        }
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
                view.insert(record.node.clone(), *record);
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
        placement: Mutex::default(),
        admission: Mutex::default(),
    })
}

/// Joins the cluster (returns once joined, or why not) and keeps the view
/// of its members on a thread of its own until `shutdown`, when the node
/// leaves at once rather than waiting for its record to expire.
pub fn join(
    settings: &ClusterSettings,
    identity: Identity,
    http: SocketAddr,
    peer: (SocketAddr, String),
    demand: Option<std::sync::Arc<crate::demand::DemandCounter>>,
    sync: (crate::desired::Sync, crate::desired::PublishQueue),
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(std::sync::Arc<Members>, JoinHandle<()>)> {
    let members = std::sync::Arc::new(Members {
        identity: identity.clone(),
        cluster: Some(settings.url.clone()),
        http: http.to_string(),
        view: Mutex::new(BTreeMap::new()),
        connected: AtomicBool::new(false),
        placement: Mutex::default(),
        admission: Mutex::default(),
    });
    let options = ClusterOptions {
        url: settings.url.clone(),
        ca_pem: settings.ca_pem.clone(),
        name: format!("dwcp-{}", identity.node_id),
        replicas: 1,
        domain: settings.domain.clone(),
    };
    let mut record = NodeRecord::new(&identity.node_id, &identity.region);
    record.labels = identity.labels.clone();
    record.http = http.to_string();
    record.peer = peer.0.to_string();
    record.peer_cert = peer.1;
    let control = sync.0.control.clone();
    (record.free_memory, record.free_instances) = control.free_capacity();
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
                let (mut sync, queue) = sync;
                sync.members = Some(view.clone());
                let syncing = tokio::spawn(sync.run(desired, changes, queue));
                // Free capacity rides on the heartbeats, for placement.
                let mut capacity = tokio::time::interval(Duration::from_secs(1));
                let mut events = Box::pin(events);
                loop {
                    tokio::select! {
                        event = events.next() => match event {
                            Some(event) => view.apply(event),
                            // The servers went away (a leaf's hub down, say):
                            // this node serves on, and watches again.
                            None => {
                                tokio::time::sleep(Duration::from_secs(1)).await;
                                match cluster.watch_members().await {
                                    Ok(again) => events = Box::pin(again),
                                    Err(e) => tracing::debug!("membership watch: {e}"),
                                }
                            }
                        },
                        _ = capacity.tick() => {
                            let (memory, instances) = control.free_capacity();
                            let demand = demand.as_ref().map(|d| d.totals()).unwrap_or_default();
                            registration.update(|r| {
                                r.free_memory = memory;
                                r.free_instances = instances;
                                r.demand = demand;
                            });
                        }
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
