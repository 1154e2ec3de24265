//! Connecting to the cluster's NATS servers, and the buckets DWCP keeps there.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream::StorageType};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The bucket of node records (memory storage: liveness only).
pub const NODES_BUCKET: &str = "dwcp_nodes";

/// How to reach the cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `tls://HOST:PORT` (post-quantum TLS) or `nats://HOST:PORT` (plaintext).
    pub url: String,
    /// PEM certificates of the CA that signed the servers' certificates
    /// (`--cluster-ca`); none: the servers must be signed by one of the
    /// public roots, which a cluster's are not, so give it.
    pub ca_pem: Option<Vec<u8>>,
    /// How this client names itself to the servers (`dwcp-NODE`).
    pub name: String,
    /// Replicas of each bucket (3 on a 3-server cluster).
    pub replicas: usize,
    /// The JetStream domain holding the cluster's state, when the server
    /// this node connects to is a leaf node of it (an edge site reaching
    /// its hub's `hub` domain); `None`: the server's own JetStream.
    pub domain: Option<String>,
}

/// What went wrong between a node and its cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The URL is not one this build speaks.
    #[error("--cluster `{0}`: give tls://HOST:PORT (or nats://HOST:PORT, plaintext, for tests)")]
    Url(String),
    /// The CA file holds no certificate.
    #[error("--cluster-ca holds no PEM certificate")]
    Ca,
    /// TLS could not be set up.
    #[error("cluster TLS: {0}")]
    Tls(String),
    /// The servers could not be reached.
    #[error("cannot reach the cluster at {url}: {source}")]
    Connect {
        /// Where.
        url: String,
        /// Why.
        source: async_nats::ConnectError,
    },
    /// A JetStream call failed.
    #[error("cluster state: {0}")]
    JetStream(String),
    /// This node's id is held by a live node.
    #[error("node id `{0}` is already in the cluster (alive): give this node another --node-id")]
    NodeIdTaken(String),
    /// A record could not be encoded or decoded.
    #[error("a cluster record is not valid JSON: {0}")]
    Record(#[from] serde_json::Error),
}

impl ClusterError {
    pub(crate) fn js(e: impl std::fmt::Display) -> Self {
        ClusterError::JetStream(e.to_string())
    }
}

/// A connection to the cluster, with its JetStream context.
#[derive(Clone)]
pub struct Cluster {
    /// The NATS client.
    pub client: async_nats::Client,
    /// Its JetStream context.
    pub jetstream: jetstream::Context,
    replicas: usize,
}

impl Cluster {
    /// Connects; with `tls://` only `X25519MLKEM768` is offered, so a
    /// server that cannot do post-quantum key exchange is refused.
    pub async fn connect(options: &ClusterOptions) -> Result<Cluster, ClusterError> {
        let url = &options.url;
        let connect = async_nats::ConnectOptions::new()
            .name(&options.name)
            .connection_timeout(Duration::from_secs(3));
        let connect = if let Some(rest) = url.strip_prefix("tls://") {
            if rest.is_empty() {
                return Err(ClusterError::Url(url.clone()));
            }
            let config = tls_config(options.ca_pem.as_deref())?;
            connect
                .tls_client_config((*config).clone())
                .tls_first()
                .require_tls(true)
        } else if url.starts_with("nats://") {
            connect
        } else {
            return Err(ClusterError::Url(url.clone()));
        };
        let client =
            connect
                .connect(url.as_str())
                .await
                .map_err(|source| ClusterError::Connect {
                    url: url.clone(),
                    source,
                })?;
        let jetstream = match &options.domain {
            Some(domain) => jetstream::with_domain(client.clone(), domain),
            None => jetstream::new(client.clone()),
        };
        Ok(Cluster {
            client,
            jetstream,
            replicas: options.replicas.max(1),
        })
    }

    /// Replicas of each bucket.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// The node records' bucket, created if missing: per-message TTLs on,
    /// one value per node, in memory (liveness need not survive the servers).
    pub async fn nodes_bucket(&self) -> Result<kv::Store, ClusterError> {
        self.jetstream
            .create_or_update_key_value(kv::Config {
                bucket: NODES_BUCKET.into(),
                description: "DWCP nodes: one record per live node, kept by heartbeats".into(),
                history: 1,
                storage: StorageType::Memory,
                num_replicas: self.replicas,
                // Markers of expired records are kept this long, so that
                // watchers see a node go rather than miss it.
                limit_markers: Some(Duration::from_secs(60)),
                ..Default::default()
            })
            .await
            .map_err(ClusterError::js)
    }
}

/// The client side of the node-to-cluster link: TLS 1.3, `X25519MLKEM768`
/// only, the servers verified against `ca_pem`.
fn tls_config(ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, ClusterError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = ca_pem {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|_| ClusterError::Ca)?;
        if certs.is_empty() {
            return Err(ClusterError::Ca);
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| ClusterError::Tls(e.to_string()))?;
        }
    }
    dwcp_crypto::tls::node_link_client_config(roots).map_err(|e| ClusterError::Tls(e.to_string()))
}
