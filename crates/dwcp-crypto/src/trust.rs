//! The trust manifest: which publisher and node keys this platform trusts,
//! for how long, and which it has revoked; signed by the root key.
//!
//! Every decision is a function of the manifest and a time the caller
//! passes in. A manifest carries a serial that grows with every change, for
//! the day manifests travel between nodes: a node will then refuse an older
//! one handed to it (a rollback that would bring a revoked key back). A
//! node does not compare serials of its own file: whoever can write its
//! data directory can do worse.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::composite::{self, HybridPublicKey, HybridSigningKey, SignatureError};
use crate::keyfile::KeyRole;
use crate::root::{RootError, RootPublicKey, RootSigningKey};

/// The context of the root's signature over a manifest.
pub const MANIFEST_CONTEXT: &[u8] = b"dwcp/trust-manifest/v1";
/// The context of an old key's signature over its successor.
pub const ENDORSE_CONTEXT: &[u8] = b"dwcp/key-endorse/v1";
/// The context of a publisher's signature over an artifact statement.
pub const ARTIFACT_CONTEXT: &[u8] = b"dwcp/artifact/v1";
/// The context of an old root's signature over its successor.
pub const ROOT_ENDORSE_CONTEXT: &[u8] = b"dwcp/root-endorse/v1";
/// How long a rotated key stays accepted beside its successor, by default.
pub const DEFAULT_OVERLAP_SECS: u64 = 24 * 3600;

const FORMAT: u32 = 1;

/// The manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustManifest {
    /// The format's version.
    pub format: u32,
    /// Grows by one with every change.
    pub serial: u64,
    /// When this serial was made (Unix seconds).
    pub issued_at: u64,
    /// The id of the root key that signs it.
    pub root_key_id: String,
    /// The keys, in the order they were added.
    pub keys: Vec<TrustedKey>,
}

/// One key of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedKey {
    /// The key's id.
    pub key_id: String,
    /// What it may sign.
    pub role: KeyRole,
    /// The publisher's or node's name.
    pub name: String,
    /// Its algorithm.
    pub algorithm: String,
    /// Its public key, base64.
    pub public_key: String,
    /// Accepted from (Unix seconds).
    pub not_before: u64,
    /// Accepted until (Unix seconds, exclusive); none: until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<u64>,
    /// Revoked at (Unix seconds): refused from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
    /// Why it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_reason: Option<String>,
    /// The key it succeeds, when it came from a rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    /// The predecessor's signature over this key (base64), checked when
    /// the rotation was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endorsement: Option<String>,
}

/// Where a key stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyStatus {
    /// Accepted.
    Active,
    /// Accepted until its successor takes over alone.
    Overlap,
    /// Not yet accepted.
    NotYetValid,
    /// Its validity ended.
    Expired,
    /// Revoked.
    Revoked,
}

impl KeyStatus {
    /// Whether a signature by a key in this state is accepted.
    pub fn accepted(self) -> bool {
        matches!(self, KeyStatus::Active | KeyStatus::Overlap)
    }
}

impl std::fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyStatus::Active => "active",
            KeyStatus::Overlap => "overlap",
            KeyStatus::NotYetValid => "not-yet-valid",
            KeyStatus::Expired => "expired",
            KeyStatus::Revoked => "revoked",
        })
    }
}

/// Why the manifest refused something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// No such key in the manifest.
    #[error("key {0} is not trusted (not in the trust manifest)")]
    Untrusted(String),
    /// The key is there but not accepted now.
    #[error("key {key_id} ({name}) is {status}")]
    NotAccepted {
        /// The key.
        key_id: String,
        /// Its name.
        name: String,
        /// Its state.
        status: KeyStatus,
    },
    /// The key may not sign this.
    #[error("key {key_id} is a {role} key, not a {wanted} key")]
    Role {
        /// The key.
        key_id: String,
        /// What it is.
        role: KeyRole,
        /// What was needed.
        wanted: KeyRole,
    },
    /// A hybrid signature failed.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The root's signature over the manifest failed.
    #[error("the trust manifest: {0}")]
    Root(#[from] RootError),
    /// The manifest cannot be read.
    #[error("the trust manifest is damaged: {0}")]
    Damaged(String),
    /// A change that makes no sense.
    #[error("{0}")]
    Refused(String),
}

impl TrustManifest {
    /// An empty manifest of `root`.
    pub fn new(root: &RootPublicKey, now: u64) -> Self {
        Self {
            format: FORMAT,
            serial: 0,
            issued_at: now,
            root_key_id: root.key_id(),
            keys: Vec::new(),
        }
    }

    /// The entry of `key_id`.
    pub fn get(&self, key_id: &str) -> Option<&TrustedKey> {
        self.keys.iter().find(|k| k.key_id == key_id)
    }

    /// Where `key` stands at `now`.
    pub fn status(&self, key: &TrustedKey, now: u64) -> KeyStatus {
        if key.revoked_at.is_some_and(|t| t <= now) {
            KeyStatus::Revoked
        } else if now < key.not_before {
            KeyStatus::NotYetValid
        } else if key.not_after.is_some_and(|t| now >= t) {
            KeyStatus::Expired
        } else if key.not_after.is_some()
            && self
                .keys
                .iter()
                .any(|k| k.replaces.as_deref() == Some(&key.key_id))
        {
            KeyStatus::Overlap
        } else {
            KeyStatus::Active
        }
    }

    /// Checks that `signature` over `message` (for `context`) was made by
    /// `key_id`, a key of `role` accepted at `now`; both halves verify.
    pub fn verify(
        &self,
        role: KeyRole,
        key_id: &str,
        message: &[u8],
        context: &[u8],
        signature: &[u8],
        now: u64,
    ) -> Result<&TrustedKey, TrustError> {
        let key = self
            .get(key_id)
            .ok_or_else(|| TrustError::Untrusted(key_id.into()))?;
        if key.role != role {
            return Err(TrustError::Role {
                key_id: key_id.into(),
                role: key.role,
                wanted: role,
            });
        }
        let status = self.status(key, now);
        if !status.accepted() {
            return Err(TrustError::NotAccepted {
                key_id: key_id.into(),
                name: key.name.clone(),
                status,
            });
        }
        public_key(key)?.verify(message, context, signature)?;
        Ok(key)
    }

    /// Adds a key, accepted from `now` until `not_after` (none: until
    /// revoked).
    pub fn trust(
        &mut self,
        role: KeyRole,
        name: &str,
        public: &HybridPublicKey,
        now: u64,
        not_after: Option<u64>,
    ) -> Result<&TrustedKey, TrustError> {
        if role == KeyRole::Root {
            return Err(TrustError::Refused(
                "the root key signs the manifest; it is not listed in it".into(),
            ));
        }
        let key_id = public.key_id();
        if self.get(&key_id).is_some() {
            return Err(TrustError::Refused(format!(
                "key {key_id} is already in the manifest"
            )));
        }
        self.keys.push(TrustedKey {
            key_id,
            role,
            name: name.into(),
            algorithm: composite::ALGORITHM.into(),
            public_key: B64.encode(public.as_bytes()),
            not_before: now,
            not_after,
            revoked_at: None,
            revoked_reason: None,
            replaces: None,
            endorsement: None,
        });
        self.bump(now);
        Ok(self.keys.last().expect("just pushed"))
    }

    /// Revokes `key_id` at `now`: refused from this moment.
    pub fn revoke(&mut self, key_id: &str, now: u64, reason: &str) -> Result<(), TrustError> {
        let key = self
            .keys
            .iter_mut()
            .find(|k| k.key_id == key_id)
            .ok_or_else(|| TrustError::Untrusted(key_id.into()))?;
        if key.revoked_at.is_some() {
            return Err(TrustError::Refused(format!(
                "key {key_id} is already revoked"
            )));
        }
        key.revoked_at = Some(now);
        key.revoked_reason = Some(reason.into());
        self.bump(now);
        Ok(())
    }

    /// Records the rotation of `old_key_id` to `new`: `endorsement` is the
    /// old key's signature over the new one ([`endorsement_message`]). Both
    /// are accepted until `now + overlap`, then only the new one.
    pub fn rotate(
        &mut self,
        old_key_id: &str,
        new: &HybridPublicKey,
        endorsement: &[u8],
        now: u64,
        overlap: u64,
    ) -> Result<&TrustedKey, TrustError> {
        let old = self
            .get(old_key_id)
            .ok_or_else(|| TrustError::Untrusted(old_key_id.into()))?
            .clone();
        let status = self.status(&old, now);
        if !status.accepted() {
            return Err(TrustError::NotAccepted {
                key_id: old.key_id,
                name: old.name,
                status,
            });
        }
        public_key(&old)?.verify(
            &endorsement_message(old.role, &old.name, new),
            ENDORSE_CONTEXT,
            endorsement,
        )?;
        let end = now.saturating_add(overlap);
        let role = old.role;
        let name = old.name.clone();
        // The successor is valid no longer than the key it replaces.
        let not_after = old.not_after;
        self.trust(role, &name, new, now, not_after)?;
        if let Some(entry) = self.keys.iter_mut().find(|k| k.key_id == old_key_id) {
            entry.not_after = Some(entry.not_after.map_or(end, |t| t.min(end)));
        }
        let entry = self.keys.last_mut().expect("just added");
        entry.replaces = Some(old_key_id.into());
        entry.endorsement = Some(B64.encode(endorsement));
        Ok(self.keys.last().expect("just added"))
    }

    /// Signs the manifest with the root key.
    pub fn sign(&self, root: &RootSigningKey) -> Result<SignedManifest, TrustError> {
        if root.public_key().key_id() != self.root_key_id {
            return Err(TrustError::Refused(format!(
                "the manifest names root key {}, not {}",
                self.root_key_id,
                root.public_key().key_id()
            )));
        }
        let mut bytes = serde_json::to_vec_pretty(self).expect("a manifest serializes");
        bytes.push(b'\n');
        let signature = root
            .sign(&bytes, MANIFEST_CONTEXT)
            .map_err(|e| TrustError::Refused(e.to_string()))?;
        Ok(SignedManifest { bytes, signature })
    }

    /// Moves the manifest to a new root (after a root rotation): it names
    /// the new root and gets a new serial; the keys stay as they are.
    pub fn rebase(&mut self, root: &RootPublicKey, now: u64) {
        self.root_key_id = root.key_id();
        self.bump(now);
    }

    fn bump(&mut self, now: u64) {
        self.serial += 1;
        self.issued_at = now;
    }
}

/// A manifest's exact bytes and the root's signature over them.
pub struct SignedManifest {
    /// The manifest as signed (JSON).
    pub bytes: Vec<u8>,
    /// The root's SLH-DSA signature.
    pub signature: Vec<u8>,
}

impl SignedManifest {
    /// Checks the root's signature and parses the manifest.
    pub fn open(&self, root: &RootPublicKey) -> Result<TrustManifest, TrustError> {
        root.verify(&self.bytes, MANIFEST_CONTEXT, &self.signature)?;
        let manifest: TrustManifest =
            serde_json::from_slice(&self.bytes).map_err(|e| TrustError::Damaged(e.to_string()))?;
        if manifest.format != FORMAT {
            return Err(TrustError::Damaged(format!(
                "format {} is not {FORMAT}",
                manifest.format
            )));
        }
        if manifest.root_key_id != root.key_id() {
            return Err(TrustError::Damaged("it names another root key".into()));
        }
        Ok(manifest)
    }
}

/// A trusted key's public key.
pub fn public_key(key: &TrustedKey) -> Result<HybridPublicKey, TrustError> {
    let bytes = B64
        .decode(&key.public_key)
        .map_err(|_| TrustError::Damaged(format!("key {}'s public key", key.key_id)))?;
    let public = HybridPublicKey::from_bytes(&bytes)?;
    if public.key_id() != key.key_id {
        return Err(TrustError::Damaged(format!(
            "key {}'s id does not match its public key",
            key.key_id
        )));
    }
    Ok(public)
}

/// What an old key signs to endorse its successor.
pub fn endorsement_message(role: KeyRole, name: &str, new: &HybridPublicKey) -> Vec<u8> {
    fields(&[role.to_string().as_bytes(), name.as_bytes(), new.as_bytes()])
}

/// Endorses `new` as the successor of `old`.
pub fn endorse(
    old: &HybridSigningKey,
    role: KeyRole,
    name: &str,
    new: &HybridPublicKey,
) -> Result<Vec<u8>, SignatureError> {
    old.sign(&endorsement_message(role, name, new), ENDORSE_CONTEXT)
}

/// What a publisher signs for an artifact: its SHA-256 bound to tenant,
/// app and version (the file itself is not hashed again).
pub fn artifact_statement(tenant: &str, app: &str, version: &str, sha256_hex: &str) -> Vec<u8> {
    fields(&[
        b"dwcp-artifact/1",
        tenant.as_bytes(),
        app.as_bytes(),
        version.as_bytes(),
        sha256_hex.as_bytes(),
    ])
}

/// One root rotation: the old root's signature over its successor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootEndorsement {
    /// The old root's id.
    pub old_key_id: String,
    /// The new root's public key, base64.
    pub new_public_key: String,
    /// The old root's SLH-DSA signature over the new public key, base64.
    pub signature: String,
    /// When (Unix seconds).
    pub at: u64,
}

/// Follows root rotations from `pinned` (the root a client trusts) to the
/// root `current`: each endorsement must be signed by the root before it.
/// Returns how many rotations it followed.
pub fn follow_root_rotations(
    pinned: &RootPublicKey,
    current: &RootPublicKey,
    endorsements: &[RootEndorsement],
) -> Result<usize, TrustError> {
    let mut at = pinned.clone();
    let mut followed = 0;
    for e in endorsements {
        if at == *current {
            break;
        }
        if e.old_key_id != at.key_id() {
            continue;
        }
        let new = B64
            .decode(&e.new_public_key)
            .map_err(|_| TrustError::Damaged("a root endorsement's key is not base64".into()))?;
        let signature = B64.decode(&e.signature).map_err(|_| {
            TrustError::Damaged("a root endorsement's signature is not base64".into())
        })?;
        at.verify(&new, ROOT_ENDORSE_CONTEXT, &signature)?;
        at = RootPublicKey::from_bytes(&new)?;
        followed += 1;
    }
    if at == *current {
        Ok(followed)
    } else {
        Err(TrustError::Refused(format!(
            "no chain of root rotations leads from root {} to root {}",
            pinned.key_id(),
            current.key_id()
        )))
    }
}

/// Fields, each preceded by its length (u32, big-endian): no two lists of
/// fields encode the same.
fn fields(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (RootSigningKey, TrustManifest, HybridSigningKey) {
        let root = RootSigningKey::generate().unwrap();
        let mut manifest = TrustManifest::new(&root.public_key(), 100);
        let publisher = HybridSigningKey::generate().unwrap();
        manifest
            .trust(
                KeyRole::Publisher,
                "acme",
                publisher.public_key(),
                100,
                None,
            )
            .unwrap();
        (root, manifest, publisher)
    }

    #[test]
    fn a_trusted_key_verifies_until_revoked() {
        let (_, mut manifest, publisher) = setup();
        let id = publisher.public_key().key_id();
        let statement = artifact_statement("t", "a", "v1", "00");
        let sig = publisher.sign(&statement, ARTIFACT_CONTEXT).unwrap();
        manifest
            .verify(
                KeyRole::Publisher,
                &id,
                &statement,
                ARTIFACT_CONTEXT,
                &sig,
                150,
            )
            .unwrap();
        // Not as a node key, not for another statement, not before its time.
        assert!(matches!(
            manifest.verify(KeyRole::Node, &id, &statement, ARTIFACT_CONTEXT, &sig, 150),
            Err(TrustError::Role { .. })
        ));
        let other = artifact_statement("t", "a", "v2", "00");
        assert!(matches!(
            manifest.verify(KeyRole::Publisher, &id, &other, ARTIFACT_CONTEXT, &sig, 150),
            Err(TrustError::Signature(SignatureError::Both))
        ));
        assert!(matches!(
            manifest.verify(
                KeyRole::Publisher,
                &id,
                &statement,
                ARTIFACT_CONTEXT,
                &sig,
                99
            ),
            Err(TrustError::NotAccepted {
                status: KeyStatus::NotYetValid,
                ..
            })
        ));
        let serial = manifest.serial;
        manifest.revoke(&id, 200, "leaked").unwrap();
        assert_eq!(manifest.serial, serial + 1);
        assert!(matches!(
            manifest.verify(
                KeyRole::Publisher,
                &id,
                &statement,
                ARTIFACT_CONTEXT,
                &sig,
                200
            ),
            Err(TrustError::NotAccepted {
                status: KeyStatus::Revoked,
                ..
            })
        ));
        let stranger = HybridSigningKey::generate().unwrap();
        assert!(matches!(
            manifest.verify(
                KeyRole::Publisher,
                &stranger.public_key().key_id(),
                &statement,
                ARTIFACT_CONTEXT,
                &stranger.sign(&statement, ARTIFACT_CONTEXT).unwrap(),
                150
            ),
            Err(TrustError::Untrusted(_))
        ));
    }

    #[test]
    fn a_rotation_overlaps_then_only_the_new_key_is_accepted() {
        let (_, mut manifest, old) = setup();
        let new = HybridSigningKey::generate().unwrap();
        let endorsement = endorse(&old, KeyRole::Publisher, "acme", new.public_key()).unwrap();
        // An endorsement by someone else is refused.
        let stranger = HybridSigningKey::generate().unwrap();
        let forged = endorse(&stranger, KeyRole::Publisher, "acme", new.public_key()).unwrap();
        assert!(
            manifest
                .rotate(
                    &old.public_key().key_id(),
                    new.public_key(),
                    &forged,
                    1000,
                    50
                )
                .is_err()
        );
        manifest
            .rotate(
                &old.public_key().key_id(),
                new.public_key(),
                &endorsement,
                1000,
                50,
            )
            .unwrap();
        let old_entry = manifest.get(&old.public_key().key_id()).unwrap().clone();
        let new_entry = manifest.get(&new.public_key().key_id()).unwrap().clone();
        assert_eq!(manifest.status(&old_entry, 1049), KeyStatus::Overlap);
        assert_eq!(manifest.status(&old_entry, 1050), KeyStatus::Expired);
        assert_eq!(manifest.status(&new_entry, 1000), KeyStatus::Active);
        assert_eq!(new_entry.name, "acme");

        // A key valid until 2000, rotated at 1990 with an overlap of 50:
        // the old one ends at 2000 as before, and so does its successor.
        let (_, mut manifest, old) = setup();
        let old_id = old.public_key().key_id();
        manifest.keys[0].not_after = Some(2000);
        let new = HybridSigningKey::generate().unwrap();
        let endorsement = endorse(&old, KeyRole::Publisher, "acme", new.public_key()).unwrap();
        let entry = manifest
            .rotate(&old_id, new.public_key(), &endorsement, 1990, 50)
            .unwrap()
            .clone();
        assert_eq!(entry.not_after, Some(2000));
        assert_eq!(manifest.get(&old_id).unwrap().not_after, Some(2000));
    }

    #[test]
    fn root_rotations_are_followed_only_along_valid_endorsements() {
        let (a, b, c) = (
            RootSigningKey::generate().unwrap(),
            RootSigningKey::generate().unwrap(),
            RootSigningKey::generate().unwrap(),
        );
        let endorse = |old: &RootSigningKey, new: &RootSigningKey| RootEndorsement {
            old_key_id: old.public_key().key_id(),
            new_public_key: B64.encode(new.public_key().to_bytes()),
            signature: B64.encode(
                old.sign(&new.public_key().to_bytes(), ROOT_ENDORSE_CONTEXT)
                    .unwrap(),
            ),
            at: 0,
        };
        let chain = [endorse(&a, &b), endorse(&b, &c)];
        let (pa, pc) = (a.public_key(), c.public_key());
        assert_eq!(follow_root_rotations(&pa, &pc, &chain), Ok(2));
        assert_eq!(follow_root_rotations(&pc, &pc, &[]), Ok(0));
        // A link signed by a key other than the root before it breaks the chain.
        let mut forged = endorse(&c, &b);
        forged.old_key_id = pa.key_id();
        assert!(follow_root_rotations(&pa, &pc, &[forged, chain[1].clone()]).is_err());
    }

    #[test]
    fn a_signed_manifest_opens_only_intact_and_with_its_root() {
        let (root, manifest, _) = setup();
        let signed = manifest.sign(&root).unwrap();
        assert_eq!(signed.open(&root.public_key()).unwrap(), manifest);
        let mut tampered = SignedManifest {
            bytes: signed.bytes.clone(),
            signature: signed.signature.clone(),
        };
        let at = tampered.bytes.len() / 2;
        tampered.bytes[at] ^= 1;
        assert!(matches!(
            tampered.open(&root.public_key()),
            Err(TrustError::Root(RootError::Invalid))
        ));
        let other = RootSigningKey::generate().unwrap();
        assert!(signed.open(&other.public_key()).is_err());
        assert!(manifest.sign(&other).is_err());
    }
}
