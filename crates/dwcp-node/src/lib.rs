//! A DWCP node: the ingress that serves apps, the admin API that manages
//! them, and the control logic between the two.
//!
//! A request's whole path reads top to bottom in [`ingress::route`]:
//! host → tenant/app lookup → version → concurrency slot → instance →
//! response → metrics. Everything that changes what is served (deploy,
//! delete, start-up) goes through [`Control`], which writes the state store
//! first and switches the [`AppTable`] last, so that what is served is
//! always what is stored.

mod admin;
mod apps;
mod auth;
mod backup;
pub mod cluster;
mod control;
mod dashboard;
mod demand;
mod desired;
mod edge_cache;
mod experiments;
pub mod flags;
mod flags_admin;
mod gc;
mod host;
pub mod ingress;
mod keyed_control;
mod keys_admin;
mod metrics;
mod migrate;
mod node;
mod nodes_admin;
mod observe;
mod peer;
mod release;
mod rollout_admin;
mod rollouts;
mod seal;
mod secrets;
mod startup;
mod stateful;
mod telemetry;
mod tenants;
mod tls_listener;
pub mod traces;
mod trust;

pub use apps::{AppTable, LiveApp};
pub use auth::{ADMIN_TOKEN_FILE, Scope, TokenRecord};
pub use backup::{BACKUP_FORMAT, BackupManifest, BackupSource, read_manifest, restore};
pub use control::{
    AppStatus, AppSummary, Control, ControlError, ControlSettings, DeployOptions, DeployOutcome,
    TenantSummary, VersionInfo,
};
pub use gc::GcReport;
pub use host::app_key;
pub use keys_admin::{KEY_ID_HEADER, SIGNATURE_HEADER};
pub use metrics::NodeMetrics;
pub use node::{Node, NodeConfig, RunningNode};
pub use seal::{CheckpointSeal, SEAL_KEY};
pub use secrets::SecretBox;
pub use startup::LoadReport;
pub use stateful::{KeyCheckpoint, KeyedApp, MAX_KEY_LEN};
pub use tenants::{QuotaExceeded, TenantGate, TenantSlot, TenantUsage};
pub use trust::{LOCAL_PUBLISHER, RESERVED_NAMES, TrustStore, publisher_key_path, read_key_file};
