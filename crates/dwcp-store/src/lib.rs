//! Durable node state for a single DWCP node.
//!
//! Two stores live in the data directory:
//!
//! - [`StateStore`]: tenants and apps (with their versions and limits) in one
//!   redb file, `state.redb`. Every change is one ACID transaction, so a node
//!   killed mid-deploy comes back with the app as it was before or after the
//!   deploy, never in between.
//! - [`BlobStore`]: artifacts stored content-addressed by SHA-256 under
//!   `artifacts/`, written to a temporary file, synced and renamed into place,
//!   so a reader never sees a partial file.
//!
//! - [`CheckpointStore`]: snapshots of stateful apps' keys, in
//!   `checkpoints.redb`, apart from the control state.
//!
//! Records are serialized as JSON inside redb values. JSON costs a little
//! space, but a field added later (with a serde default) reads old records
//! without a migration, which matters more for a store that outlives releases.

mod blobs;
mod checkpoints;
mod names;
mod records;
mod state;

pub use blobs::{BlobStore, sha256_hex, write_atomically, write_private};
pub use checkpoints::{Chain, CheckpointMeta, CheckpointStore, key_scope};
pub use names::{AppId, NameError, validate_label};
pub use records::{
    AppLimits, AppRecord, ArmTotals, AuditEntry, ConversionRule, EgressSettings, ExperimentRecord,
    PlacementSpec, ReleaseSettings, RolloutRecord, SealedSecret, StatefulSettings, TenantQuota,
    TenantRecord, VersionRecord, unix_now,
};
pub use state::{StateExport, StateStore, StoreError};
