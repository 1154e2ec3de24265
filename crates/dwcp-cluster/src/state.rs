//! The cluster's desired state: what operators asked for (tenants, apps
//! with their versions and settings, flag documents, where replicas go),
//! in the `dwcp_state` KV bucket, and the artifacts those records name, in
//! the `dwcp_artifacts` Object Store.
//!
//! This crate moves bytes under typed keys; what a value means, and the
//! checks before a node serves it (signature, hash, compilation), belong
//! to the node. Keys carry the schema generation (`v1.`), values a `"v"`
//! field: a node ignores a value of a schema newer than it reads and says
//! so, and readers skip fields they do not know, so nodes of two adjacent
//! releases can share a cluster while it is upgraded.

use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use async_nats::jetstream::object_store::{self, ObjectStore};
use async_nats::jetstream::stream::StorageType;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncReadExt;

use crate::link::{Cluster, ClusterError};

/// The desired-state bucket.
pub const STATE_BUCKET: &str = "dwcp_state";
/// The artifacts' object store.
pub const ARTIFACTS_BUCKET: &str = "dwcp_artifacts";
/// The key prefix of this schema generation.
const PREFIX: &str = "v1";

/// What a desired-state key names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StateKey {
    /// A tenant (its quota).
    Tenant(String),
    /// An app: its record, versions and settings.
    App {
        /// The tenant.
        tenant: String,
        /// The app.
        app: String,
    },
    /// A tenant's flag document.
    Flags(String),
    /// A node's admission as its operators set it (cordoned, draining).
    Node(String),
    /// The last cache purge asked for (each put is one purge).
    Purge,
    /// Where an app's replicas are (written by the placing node).
    Placement {
        /// The tenant.
        tenant: String,
        /// The app.
        app: String,
    },
}

impl StateKey {
    /// The KV key (`v1.apps.TENANT.APP`, …). Tenant and app names are DNS
    /// labels, which are valid key tokens.
    pub fn to_key(&self) -> String {
        match self {
            StateKey::Tenant(t) => format!("{PREFIX}.tenants.{t}"),
            StateKey::App { tenant, app } => format!("{PREFIX}.apps.{tenant}.{app}"),
            StateKey::Flags(t) => format!("{PREFIX}.flags.{t}"),
            StateKey::Node(n) => format!("{PREFIX}.nodes.{n}"),
            StateKey::Purge => format!("{PREFIX}.purge"),
            StateKey::Placement { tenant, app } => format!("{PREFIX}.placement.{tenant}.{app}"),
        }
    }

    /// Reads a KV key back; `None` for keys of another generation or kind.
    pub fn parse(key: &str) -> Option<StateKey> {
        let mut parts = key.split('.');
        if parts.next()? != PREFIX {
            return None;
        }
        let kind = parts.next()?;
        if kind == "purge" {
            return parts.next().is_none().then_some(StateKey::Purge);
        }
        if kind == "nodes" {
            // Node ids may hold dots.
            let rest = key.strip_prefix(&format!("{PREFIX}.nodes."))?;
            return (!rest.is_empty()).then(|| StateKey::Node(rest.to_string()));
        }
        let a = parts.next()?.to_string();
        let b = parts.next().map(str::to_string);
        if parts.next().is_some() {
            return None;
        }
        match (kind, b) {
            ("tenants", None) => Some(StateKey::Tenant(a)),
            ("flags", None) => Some(StateKey::Flags(a)),
            ("apps", Some(app)) => Some(StateKey::App { tenant: a, app }),
            ("placement", Some(app)) => Some(StateKey::Placement { tenant: a, app }),
            _ => None,
        }
    }
}

/// A change to the desired state, as a watcher sees it.
#[derive(Debug, Clone)]
pub enum StateEvent {
    /// A key's value is now `value` (at `revision`); `None`: it was deleted.
    Changed {
        /// Which key.
        key: StateKey,
        /// Its value, or `None` when deleted.
        value: Option<Bytes>,
        /// The bucket's revision of this change.
        revision: u64,
    },
    /// Every value that existed when the watch began has been delivered.
    Current,
}

/// The desired state's bucket and artifact store.
#[derive(Clone)]
pub struct DesiredState {
    kv: kv::Store,
    artifacts: ObjectStore,
}

/// Objects are sent in chunks of this size (below NATS's 1 MiB payload).
const CHUNK: usize = 512 << 10;

impl DesiredState {
    /// Opens (creating when missing) the bucket and the store.
    pub async fn open(cluster: &Cluster) -> Result<DesiredState, ClusterError> {
        let kv = cluster
            .jetstream
            .create_or_update_key_value(kv::Config {
                bucket: STATE_BUCKET.into(),
                description: "DWCP desired state: tenants, apps, flags, placement".into(),
                history: 8,
                storage: StorageType::File,
                num_replicas: cluster.replicas(),
                max_value_size: 4 << 20,
                ..Default::default()
            })
            .await
            .map_err(ClusterError::js)?;
        let artifacts = match cluster.jetstream.get_object_store(ARTIFACTS_BUCKET).await {
            Ok(store) => store,
            Err(_) => cluster
                .jetstream
                .create_object_store(object_store::Config {
                    bucket: ARTIFACTS_BUCKET.into(),
                    description: Some("DWCP artifacts by SHA-256".into()),
                    storage: StorageType::File,
                    num_replicas: cluster.replicas(),
                    ..Default::default()
                })
                .await
                .map_err(ClusterError::js)?,
        };
        Ok(DesiredState { kv, artifacts })
    }

    /// Writes `value` under `key`; returns the new revision.
    pub async fn put(&self, key: &StateKey, value: Vec<u8>) -> Result<u64, ClusterError> {
        self.kv
            .put(key.to_key(), Bytes::from(value))
            .await
            .map_err(ClusterError::js)
    }

    /// Writes `value` under `key` only if the key is still at `revision`
    /// (0: only if absent); `Ok(None)` when someone wrote it first.
    pub async fn put_if(
        &self,
        key: &StateKey,
        value: Vec<u8>,
        revision: u64,
    ) -> Result<Option<u64>, ClusterError> {
        let written = if revision == 0 {
            self.kv
                .create(key.to_key(), Bytes::from(value))
                .await
                .map_err(|e| {
                    (
                        e.kind() == kv::CreateErrorKind::AlreadyExists,
                        e.to_string(),
                    )
                })
        } else {
            self.kv
                .update(key.to_key(), Bytes::from(value), revision)
                .await
                .map_err(|e| {
                    (
                        e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                        e.to_string(),
                    )
                })
        };
        match written {
            Ok(revision) => Ok(Some(revision)),
            Err((true, _)) => Ok(None),
            Err((false, e)) => Err(ClusterError::JetStream(e)),
        }
    }

    /// The value under `key` and its revision, if it has one.
    pub async fn get(&self, key: &StateKey) -> Result<Option<(Bytes, u64)>, ClusterError> {
        let entry = self
            .kv
            .entry(key.to_key())
            .await
            .map_err(ClusterError::js)?;
        Ok(entry
            .filter(|e| e.operation == Operation::Put)
            .map(|e| (e.value, e.revision)))
    }

    /// Deletes `key` (watchers see it go).
    pub async fn delete(&self, key: &StateKey) -> Result<(), ClusterError> {
        self.kv.delete(key.to_key()).await.map_err(ClusterError::js)
    }

    /// Every live key of this schema generation.
    pub async fn keys(&self) -> Result<Vec<StateKey>, ClusterError> {
        let keys = self.kv.keys().await.map_err(ClusterError::js)?;
        let keys: Vec<String> = keys.filter_map(|k| async move { k.ok() }).collect().await;
        Ok(keys.iter().filter_map(|k| StateKey::parse(k)).collect())
    }

    /// Stores an artifact under its SHA-256 (lowercase hex), unless it is
    /// there already: artifacts are addressed by content, so a second put
    /// of the same hash would store the same bytes again.
    pub async fn put_artifact(&self, sha256: &str, bytes: &[u8]) -> Result<(), ClusterError> {
        let name = artifact_name(sha256);
        if let Ok(info) = self.artifacts.info(&name).await
            && !info.deleted
            && info.size == bytes.len()
        {
            return Ok(());
        }
        let meta = object_store::ObjectMetadata {
            name,
            chunk_size: Some(CHUNK),
            ..Default::default()
        };
        let mut reader = bytes;
        self.artifacts
            .put(meta, &mut reader)
            .await
            .map(drop)
            .map_err(ClusterError::js)
    }

    /// Fetches the artifact stored under `sha256`, refusing one larger
    /// than `max` bytes. The store checks its own digest at the end; the
    /// caller still checks the SHA-256 the record names.
    pub async fn get_artifact(&self, sha256: &str, max: usize) -> Result<Vec<u8>, ClusterError> {
        let name = artifact_name(sha256);
        let info = self
            .artifacts
            .info(&name)
            .await
            .map_err(|e| ClusterError::JetStream(format!("artifact sha256:{sha256}: {e}")))?;
        if info.size > max {
            return Err(ClusterError::JetStream(format!(
                "artifact sha256:{sha256} is {} bytes, over this node's limit of {max}",
                info.size
            )));
        }
        let mut object = self
            .artifacts
            .get(&name)
            .await
            .map_err(|e| ClusterError::JetStream(format!("artifact sha256:{sha256}: {e}")))?;
        let mut bytes = Vec::with_capacity(info.size);
        tokio::time::timeout(Duration::from_secs(60), object.read_to_end(&mut bytes))
            .await
            .map_err(|_| {
                ClusterError::JetStream(format!("artifact sha256:{sha256}: no data in 60 s"))
            })?
            .map_err(|e| ClusterError::JetStream(format!("artifact sha256:{sha256}: {e}")))?;
        Ok(bytes)
    }

    /// Every value now, then every change, with [`StateEvent::Current`]
    /// once the values that existed at the start have all come.
    pub async fn watch(
        &self,
    ) -> Result<impl Stream<Item = StateEvent> + Send + use<>, ClusterError> {
        // An empty bucket delivers nothing to mark the end of its
        // (empty) history: then the start is current at once.
        let empty = self
            .kv
            .stream
            .get_info()
            .await
            .map_err(ClusterError::js)?
            .state
            .messages
            == 0;
        let watch = self
            .kv
            .watch_with_history(format!("{PREFIX}.>"))
            .await
            .map_err(ClusterError::js)?;
        let mut current = empty;
        let start = futures_util::stream::iter(empty.then_some(StateEvent::Current));
        let changes = watch.filter_map(|entry| async move {
            match entry {
                Ok(e) => Some(e),
                Err(err) => {
                    tracing::warn!("desired-state watch: {err}");
                    None
                }
            }
        });
        let changes = changes.flat_map(move |e| {
            let mut out = Vec::with_capacity(2);
            if let Some(key) = StateKey::parse(&e.key) {
                let value = (e.operation == Operation::Put).then_some(e.value);
                out.push(StateEvent::Changed {
                    key,
                    value,
                    revision: e.revision,
                });
            }
            if !current && e.delta == 0 {
                current = true;
                out.push(StateEvent::Current);
            }
            futures_util::stream::iter(out)
        });
        Ok(start.chain(changes))
    }
}

/// Object names allow `[-/_=.a-zA-Z0-9]`.
fn artifact_name(sha256: &str) -> String {
    format!("sha256-{sha256}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_as_what_they_name() {
        let keys = [
            StateKey::Tenant("acme".into()),
            StateKey::Flags("acme".into()),
            StateKey::Node("edge.1".into()),
            StateKey::Purge,
            StateKey::App {
                tenant: "acme".into(),
                app: "shop-1".into(),
            },
            StateKey::Placement {
                tenant: "acme".into(),
                app: "shop-1".into(),
            },
        ];
        for key in keys {
            assert_eq!(StateKey::parse(&key.to_key()), Some(key.clone()));
        }
        for other in [
            "v2.apps.a.b",
            "v1.apps.a",
            "v1.apps.a.b.c",
            "v1.nope.a",
            "x",
        ] {
            assert_eq!(StateKey::parse(other), None, "{other}");
        }
    }
}
