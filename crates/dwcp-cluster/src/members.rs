//! Membership: each node's record in the `dwcp_nodes` bucket, written with
//! a time to live and rewritten by heartbeats. The server removes a record
//! whose node stopped beating when its TTL runs out and leaves a marker that
//! every watcher receives: a dead node is noticed by all within the TTL
//! plus delivery, without any node having to decide it alone.
//!
//! Why a per-message TTL rather than timers on each node: the record's
//! absence is then one fact, the same for every node and for a node that
//! joins later; the nodes' own clocks never enter into it.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::link::{Cluster, ClusterError, NODES_BUCKET};

/// The record schema this build writes.
pub const SCHEMA: u32 = 1;

/// How often a node rewrites its record.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

/// How long a record lives without a heartbeat (whole seconds: the server's
/// per-message TTL has that resolution). With beats every 500 ms, a node is
/// gone from every view about 2 s after its last beat.
pub const RECORD_TTL: Duration = Duration::from_secs(2);

/// A node as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The schema the writer used.
    #[serde(rename = "v")]
    pub schema: u32,
    /// The node's id (`--node-id`).
    pub node: String,
    /// Its region (`--region`).
    pub region: String,
    /// Its labels (`--labels k=v,…`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `active`, `cordoned` or `draining`, as its operator set.
    #[serde(default = "active")]
    pub admission: String,
    /// Where it serves apps.
    #[serde(default)]
    pub http: String,
    /// Where its peers reach it.
    #[serde(default)]
    pub peer: String,
    /// The SHA-256 of its peer-link certificate (hex): peers accept it by that.
    #[serde(default)]
    pub peer_cert: String,
    /// Memory it can still give instances, in bytes.
    #[serde(default)]
    pub free_memory: u64,
    /// Instance slots it has free.
    #[serde(default)]
    pub free_instances: u32,
    /// Its build.
    #[serde(default)]
    pub version: String,
    /// Requests per app (`tenant/app`) that entered the cluster through it
    /// over its demand window.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub demand: BTreeMap<String, u64>,
}

fn active() -> String {
    "active".into()
}

impl NodeRecord {
    /// A record of this build's schema for `node` in `region`.
    pub fn new(node: &str, region: &str) -> NodeRecord {
        NodeRecord {
            schema: SCHEMA,
            node: node.into(),
            region: region.into(),
            labels: BTreeMap::new(),
            admission: active(),
            http: String::new(),
            peer_cert: String::new(),
            demand: BTreeMap::new(),
            peer: String::new(),
            free_memory: 0,
            free_instances: 0,
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// A change in membership, as a watcher sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberEvent {
    /// A node joined or beat (its latest record).
    Up(Box<NodeRecord>),
    /// A node left: deregistered, removed, or silent past its TTL.
    Gone(String),
}

/// This node's place in the cluster: beats until dropped or [`leave`]d.
///
/// [`leave`]: Registration::leave
pub struct Registration {
    store: kv::Store,
    node: String,
    record: watch::Sender<NodeRecord>,
    beating: tokio::task::JoinHandle<()>,
}

impl Cluster {
    /// Registers `record` and keeps it alive. Refused when a live node
    /// already holds the id (its record has not expired).
    pub async fn join(&self, record: NodeRecord) -> Result<Registration, ClusterError> {
        check_key(&record.node)?;
        let store = self.nodes_bucket().await?;
        let value = Bytes::from(serde_json::to_vec(&record)?);
        match store.create_with_ttl(&record.node, value, RECORD_TTL).await {
            Ok(_) => {}
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                return Err(ClusterError::NodeIdTaken(record.node));
            }
            Err(e) => return Err(ClusterError::js(e)),
        }
        let node = record.node.clone();
        let (tx, rx) = watch::channel(record);
        let beating = tokio::spawn(beat(self.jetstream.clone(), node.clone(), rx));
        Ok(Registration {
            store,
            node,
            record: tx,
            beating,
        })
    }

    /// Every member now (`Up` for each), then each change as it happens.
    pub async fn watch_members(
        &self,
    ) -> Result<impl futures_util::Stream<Item = MemberEvent> + Send + use<>, ClusterError> {
        let store = self.nodes_bucket().await?;
        let watch = store
            .watch_with_history(">")
            .await
            .map_err(ClusterError::js)?;
        Ok(watch.filter_map(|entry| async move {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    tracing::warn!("cluster membership watch: {e}");
                    return None;
                }
            };
            match entry.operation {
                Operation::Put => match serde_json::from_slice::<NodeRecord>(&entry.value) {
                    Ok(record) => Some(MemberEvent::Up(Box::new(record))),
                    Err(e) => {
                        tracing::warn!(node = %entry.key, "a node record this build cannot read: {e}");
                        None
                    }
                },
                Operation::Delete | Operation::Purge => Some(MemberEvent::Gone(entry.key)),
            }
        }))
    }
}

impl Registration {
    /// Changes what this node's record says (admission, capacity…); the
    /// next heartbeat carries it.
    pub fn update(&self, change: impl FnOnce(&mut NodeRecord)) {
        self.record.send_modify(change);
    }

    /// Stops beating and removes the record at once (a clean shutdown).
    pub async fn leave(self) -> Result<(), ClusterError> {
        self.beating.abort();
        self.store.purge(&self.node).await.map_err(ClusterError::js)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Without `leave`, the record expires by its TTL.
        self.beating.abort();
    }
}

/// Rewrites the record every [`HEARTBEAT`] with a fresh TTL. A failed beat
/// is logged; the next one tries again (the record survives one miss).
async fn beat(
    jetstream: async_nats::jetstream::Context,
    node: String,
    record: watch::Receiver<NodeRecord>,
) {
    let subject = format!("$KV.{NODES_BUCKET}.{node}");
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let value = match serde_json::to_vec(&*record.borrow()) {
            Ok(v) => Bytes::from(v),
            Err(e) => {
                tracing::warn!("node record: {e}");
                continue;
            }
        };
        let sent = jetstream
            .send_publish(
                subject.clone(),
                PublishMessage::build().payload(value).ttl(RECORD_TTL),
            )
            .await;
        let acked = match sent {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = acked {
            tracing::warn!(%node, "heartbeat not stored: {e}");
        }
    }
}

/// Node ids become KV keys: `[-_=.a-zA-Z0-9]`, no dot at either end.
fn check_key(node: &str) -> Result<(), ClusterError> {
    let valid = !node.is_empty()
        && !node.starts_with('.')
        && !node.ends_with('.')
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(ClusterError::JetStream(format!(
            "node id `{node}`: use letters, digits, `-`, `_`, `.` (not at either end)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_a_newer_schema_with_fields_unknown_here_still_reads() {
        let newer = r#"{"v":2,"node":"edge-1","region":"eu-west","admission":"cordoned",
            "gpu":"none","http":"10.0.0.1:8080"}"#;
        let record: NodeRecord = serde_json::from_str(newer).unwrap();
        assert_eq!(record.schema, 2);
        assert_eq!(record.admission, "cordoned");
        let older = r#"{"v":1,"node":"edge-2","region":"us-east"}"#;
        let record: NodeRecord = serde_json::from_str(older).unwrap();
        assert_eq!(record.admission, "active");
    }

    #[test]
    fn node_ids_must_be_keys() {
        for bad in ["", ".a", "a.", "a b", "a/b", "a*"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        for good in ["edge-1", "fra_2", "n.1"] {
            assert!(check_key(good).is_ok(), "{good}");
        }
    }
}
