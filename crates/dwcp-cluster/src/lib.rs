//! The edge cluster's link to NATS JetStream: the only crate that speaks
//! NATS. The decisions (who is alive, where replicas go) are pure and live
//! in `dwcp-mesh`; this crate moves their inputs and outputs.
//!
//! - [`link`]: a connection to the cluster's NATS servers, over TLS 1.3 with
//!   `X25519MLKEM768` as the only key exchange (`tls://`; `nats://` is
//!   plaintext, for tests), server verified against `--cluster-ca`.
//! - [`members`]: each node's record in the `dwcp_nodes` bucket, kept alive
//!   by heartbeats carrying a per-message TTL: a node that stops beating is
//!   removed by the server itself within the TTL, and every node watching
//!   the bucket sees it go. A node deregisters on shutdown.
//! - [`state`]: the desired state (tenants, apps, flags, placement) in the
//!   `dwcp_state` bucket, watched by every node, and the artifacts it names
//!   in the `dwcp_artifacts` object store.
//!
//! - [`local`]: a nats-server process on loopback, for tests and trials.
//!
//! Records are JSON with a schema version (`"v"`), and readers ignore fields
//! they do not know, so nodes of two adjacent releases can share a cluster.

pub mod link;
pub mod local;
pub mod members;
pub mod state;

pub use link::{Cluster, ClusterError, ClusterOptions};
pub use members::{MemberEvent, NodeRecord, Registration};
pub use state::{DesiredState, StateEvent, StateKey};
