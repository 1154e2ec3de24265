//! Checkpoints sealed at rest to this node's X-Wing key
//! (`keys/node-seal.key`, made on first start).
//!
//! Each checkpoint is sealed on its own, bound to its tenant, app, key
//! and snapshot id: the checkpoint store, a backup archive or anything else
//! that holds them sees ciphertext, and a checkpoint altered, or moved to
//! another app or key, does not open. An unsealed checkpoint is refused like a
//! damaged one.

use std::io;
use std::path::Path;

use dwcp_crypto::keyfile::{KeyFile, KeyRole, SecretKey};
use dwcp_crypto::seal::{Binding, SealError, SealingKey};

/// The node's sealing key, under the data directory.
pub const SEAL_KEY: &str = "keys/node-seal.key";

/// Seals and opens this node's checkpoints.
pub struct CheckpointSeal {
    key: SealingKey,
}

impl CheckpointSeal {
    /// Reads the node's sealing key, making it on first start. With
    /// checkpoints already stored, a missing key is an error: a new one
    /// would open none of them, and what it sealed next would not open
    /// once the old key came back.
    pub fn open_or_create(data_dir: &Path, has_checkpoints: bool) -> io::Result<Self> {
        let path = data_dir.join(SEAL_KEY);
        match std::fs::read(&path) {
            Ok(bytes) => match KeyFile::parse(&bytes) {
                Ok(KeyFile {
                    key: SecretKey::Sealing(key),
                    ..
                }) => Ok(Self { key }),
                Ok(_) => Err(io::Error::other(format!(
                    "{} is not a sealing key",
                    path.display()
                ))),
                Err(e) => Err(io::Error::other(format!(
                    "{}: {e}; restore it from a backup of the data directory (the checkpoints sealed to it cannot be opened without it)",
                    path.display()
                ))),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound && has_checkpoints => {
                Err(io::Error::other(format!(
                    "{} is missing, and checkpoints.redb holds checkpoints sealed to it: copy it back from the node's backup of keys/ (or move checkpoints.redb away to start the keys over)",
                    path.display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = SealingKey::generate().map_err(io::Error::other)?;
                let file = KeyFile {
                    role: KeyRole::Node,
                    name: "node-seal".into(),
                    created_at: dwcp_store::unix_now(),
                    key: SecretKey::Sealing(SealingKey::from_seed(key.seed())),
                };
                dwcp_store::write_private(&path, &file.to_bytes())?;
                Ok(Self { key })
            }
            Err(e) => Err(e),
        }
    }

    /// The sealing key's id (which a sealed checkpoint names).
    pub fn key_id(&self) -> String {
        self.key.key_id()
    }

    /// Seals a checkpoint of `tenant/app`'s key `subject`.
    pub fn seal(
        &self,
        tenant: &str,
        app: &str,
        subject: &str,
        snapshot_id: u64,
        plain: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        dwcp_crypto::seal::seal(
            self.key.public_key(),
            plain,
            Binding {
                tenant,
                app,
                subject,
                snapshot_id,
            },
        )
    }

    /// Opens each checkpoint of a chain of `tenant/app`'s key `subject`;
    /// the reason, naming the checkpoint, if one does not open.
    pub fn open_chain(
        &self,
        tenant: &str,
        app: &str,
        subject: &str,
        chain: &[(dwcp_store::CheckpointMeta, Vec<u8>)],
    ) -> Result<Vec<Vec<u8>>, String> {
        chain
            .iter()
            .map(|(meta, sealed)| {
                self.open(tenant, app, subject, meta.snapshot_id, sealed)
                    .map_err(|e| format!("checkpoint {}: {e}", meta.seq))
            })
            .collect()
    }

    /// Opens a checkpoint of `tenant/app`'s key `subject` sealed to this node.
    pub fn open(
        &self,
        tenant: &str,
        app: &str,
        subject: &str,
        snapshot_id: u64,
        sealed: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        self.key.open(
            sealed,
            Binding {
                tenant,
                app,
                subject,
                snapshot_id,
            },
        )
    }
}
