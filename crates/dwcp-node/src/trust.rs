//! The node's trust: the root public key it anchors on, the root-signed
//! manifest of trusted publisher keys, and (on a node that holds it) the
//! root key that signs changes to that manifest.
//!
//! Files, under the data directory:
//! - `trust/root.pub`: the root public key (base64), the anchor;
//! - `trust/manifest`: the manifest's JSON as signed, then the root's
//!   signature in an armored block, in one file so that a crash between two
//!   writes cannot leave a manifest without its signature;
//! - `keys/root.key`: the root key (0600), where this node signs changes;
//! - `keys/local.key`: the local publisher key `dwcp up` made on first
//!   start and trusted, which the CLI on this machine signs with by default;
//! - `trust/root-endorsements`: each root rotation, the old root's
//!   signature over the new one, so that a client pinned to an older
//!   anchor can follow to the current one;
//! - `keys/node.key`: the node's identity (a hybrid key, trusted in the
//!   manifest as a node key), rotated on a schedule: the new key is
//!   endorsed by the old one and both are accepted during the overlap.
//!
//! Every change is made on a copy, signed, written atomically and only then
//! swapped in: what the node checks against is always what is on disk.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use dwcp_crypto::composite::{HybridPublicKey, HybridSigningKey};
use dwcp_crypto::keyfile::{KeyFile, KeyRole, SecretKey};
use dwcp_crypto::root::{RootPublicKey, RootSigningKey};
use dwcp_crypto::trust::{RootEndorsement, SignedManifest, TrustError, TrustManifest, TrustedKey};

/// The local publisher's name and key file.
pub const LOCAL_PUBLISHER: &str = "local";
/// Names a publisher key may not take: files the node keeps beside them.
pub const RESERVED_NAMES: &[&str] = &["local", "root", "node", "node-seal", "secrets"];
const ROOT_PUB: &str = "trust/root.pub";
const MANIFEST: &str = "trust/manifest";
const ROOT_KEY: &str = "keys/root.key";
const NODE_KEY: &str = "keys/node.key";
const ROOT_ENDORSEMENTS: &str = "trust/root-endorsements";
/// The node's identity key's name in the manifest.
pub const NODE_KEY_NAME: &str = "node";
const SIG_BEGIN: &str = "-----BEGIN DWCP ROOT SIGNATURE-----\n";
const SIG_END: &str = "-----END DWCP ROOT SIGNATURE-----\n";

/// The path of publisher `name`'s key file under `data_dir`.
pub fn publisher_key_path(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("keys").join(format!("{name}.key"))
}

/// What the node trusts.
pub struct TrustStore {
    data_dir: PathBuf,
    root: RwLock<RootPublicKey>,
    manifest: RwLock<TrustManifest>,
    /// A change being signed: until it is written, an upload must pass it
    /// too, so that a revocation holds from the second it is asked for
    /// (signing takes seconds) while a new key is trusted only once stored.
    pending: RwLock<Option<TrustManifest>>,
    /// Changes one at a time (each is read, change, sign, write).
    changing: Mutex<()>,
    /// Node key rotations one at a time (each spans two files and a change).
    rotating: Mutex<()>,
}

/// Why a trust operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TrustStoreError {
    /// The manifest refused it.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// The request is malformed.
    #[error("{0}")]
    BadInput(String),
    /// This node does not hold the root key.
    #[error(
        "this node holds no root key ({ROOT_KEY}): change the trust manifest on the node that does"
    )]
    NoRootKey,
}

impl From<io::Error> for TrustStoreError {
    fn from(e: io::Error) -> Self {
        TrustStoreError::Io(e.to_string())
    }
}

impl TrustStore {
    /// Opens the node's trust; on first start makes a root key and a local
    /// publisher key, trusts the latter and says so. Returns whether it did.
    pub fn open(data_dir: &Path, now: u64) -> Result<(Self, bool), TrustStoreError> {
        let root_pub = data_dir.join(ROOT_PUB);
        if !root_pub.exists() {
            return Ok((Self::bootstrap(data_dir, now)?, true));
        }
        finish_root_rotation(data_dir)?;
        let damaged = |what: &str, e: &dyn std::fmt::Display| {
            TrustStoreError::Io(format!(
                "{} is damaged ({e}): restore the data directory's trust/ from a backup",
                data_dir.join(what).display()
            ))
        };
        let text = std::fs::read_to_string(&root_pub)?;
        let bytes = B64.decode(text.trim()).map_err(|e| damaged(ROOT_PUB, &e))?;
        let root = RootPublicKey::from_bytes(&bytes).map_err(|e| damaged(ROOT_PUB, &e))?;
        let signed = read_manifest(&data_dir.join(MANIFEST)).map_err(|e| damaged(MANIFEST, &e))?;
        let manifest = signed.open(&root).map_err(|e| damaged(MANIFEST, &e))?;
        let store = Self {
            data_dir: data_dir.to_path_buf(),
            root: RwLock::new(root),
            manifest: RwLock::new(manifest),
            pending: RwLock::new(None),
            changing: Mutex::new(()),
            rotating: Mutex::new(()),
        };
        store.finish_node_rotation()?;
        if !data_dir.join(NODE_KEY).exists() {
            // A data directory from before node keys: make one now.
            let public = make_node_key(data_dir, now)?.public_key().clone();
            store.change(|m| {
                m.trust(KeyRole::Node, NODE_KEY_NAME, &public, now, None)
                    .map(|_| ())
            })?;
        }
        Ok((store, false))
    }

    /// The node key's entry in the manifest.
    pub fn node_key(&self) -> Option<TrustedKey> {
        let id = match read_key_file(&self.data_dir.join(NODE_KEY)).ok()?.key {
            SecretKey::Hybrid(key) => key.public_key().key_id(),
            _ => return None,
        };
        self.manifest().get(&id).cloned()
    }

    /// Whether the node key is older than `period` at `now`.
    pub fn node_key_due(&self, now: u64, period: u64) -> bool {
        self.node_key()
            .is_some_and(|k| k.not_before.saturating_add(period) <= now)
    }

    /// Replaces the node key by a new one it endorses; both are accepted
    /// for `overlap` seconds. The new key is written beside the old one
    /// first and takes its place once the manifest trusts it.
    pub fn rotate_node_key(&self, now: u64, overlap: u64) -> Result<TrustedKey, TrustStoreError> {
        let _one = self.rotating.lock().unwrap_or_else(|e| e.into_inner());
        if !self.data_dir.join(ROOT_KEY).exists() {
            return Err(TrustStoreError::NoRootKey);
        }
        // A rotation left half done is settled before another starts.
        self.finish_node_rotation()?;
        let path = self.data_dir.join(NODE_KEY);
        let old = read_hybrid_key(&path, "node")?;
        let new = HybridSigningKey::generate().map_err(|e| TrustStoreError::Io(e.to_string()))?;
        let endorsement =
            dwcp_crypto::trust::endorse(&old, KeyRole::Node, NODE_KEY_NAME, new.public_key())
                .map_err(|e| TrustStoreError::Trust(e.into()))?;
        let next = next_path(&path);
        write_key(&next, KeyRole::Node, NODE_KEY_NAME, &new, now)?;
        let old_id = old.public_key().key_id();
        let entry = self.change(|m| {
            m.rotate(&old_id, new.public_key(), &endorsement, now, overlap)
                .cloned()
        })?;
        self.finish_node_rotation()?;
        tracing::info!(old = %old_id, new = %entry.key_id, "rotated the node key");
        Ok(entry)
    }

    /// A rotation interrupted between writing the new key and moving it
    /// in place is finished (the manifest trusts it) or undone.
    fn finish_node_rotation(&self) -> Result<(), TrustStoreError> {
        let path = self.data_dir.join(NODE_KEY);
        let next = next_path(&path);
        if !next.exists() {
            return Ok(());
        }
        let trusted = match read_key_file(&next)?.key {
            SecretKey::Hybrid(key) => self.manifest().get(&key.public_key().key_id()).is_some(),
            _ => false,
        };
        if trusted {
            if path.exists() {
                std::fs::copy(&path, PathBuf::from(format!("{}.prev", path.display())))?;
            }
            std::fs::rename(&next, &path)?;
        } else {
            std::fs::remove_file(&next)?;
        }
        Ok(())
    }

    fn bootstrap(data_dir: &Path, now: u64) -> Result<Self, TrustStoreError> {
        let random = |e: dwcp_crypto::RandomError| TrustStoreError::Io(e.to_string());
        // A root key put there beforehand (provisioning) is used as it is.
        let root_path = data_dir.join(ROOT_KEY);
        let root = if root_path.exists() {
            read_root_key(&root_path)?
        } else {
            let root = RootSigningKey::generate().map_err(random)?;
            write_root_key(&root_path, &root, now)?;
            root
        };
        let local_path = publisher_key_path(data_dir, LOCAL_PUBLISHER);
        let local = if local_path.exists() {
            read_hybrid_key(&local_path, "publisher")?
        } else {
            let key = HybridSigningKey::generate().map_err(random)?;
            let file = KeyFile {
                role: KeyRole::Publisher,
                name: LOCAL_PUBLISHER.into(),
                created_at: now,
                key: SecretKey::Hybrid(HybridSigningKey::from_seeds(key.seeds())),
            };
            dwcp_store::write_private(&local_path, &file.to_bytes())?;
            key
        };
        let node = make_node_key(data_dir, now)?;
        let mut manifest = TrustManifest::new(&root.public_key(), now);
        manifest.trust(
            KeyRole::Publisher,
            LOCAL_PUBLISHER,
            local.public_key(),
            now,
            None,
        )?;
        manifest.trust(KeyRole::Node, NODE_KEY_NAME, node.public_key(), now, None)?;
        let signed = manifest.sign(&root)?;
        write_manifest(&data_dir.join(MANIFEST), &signed)?;
        // The anchor last: a start interrupted before it starts over.
        let public = B64.encode(root.public_key().to_bytes()) + "\n";
        dwcp_store::write_atomically(&data_dir.join(ROOT_PUB), public.as_bytes())?;
        tracing::info!(
            root = %root.public_key().key_id(),
            publisher = %local.public_key().key_id(),
            "first start: made a root key ({ROOT_KEY}) and the local publisher key {} and trusted it; the CLI on this machine signs deploys with it",
            local_path.display()
        );
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            root: RwLock::new(root.public_key()),
            manifest: RwLock::new(manifest),
            pending: RwLock::new(None),
            changing: Mutex::new(()),
            rotating: Mutex::new(()),
        })
    }

    /// The manifest as it stands.
    pub fn manifest(&self) -> TrustManifest {
        self.manifest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The root public key.
    pub fn root(&self) -> RootPublicKey {
        self.root.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every root rotation this node made, oldest first.
    pub fn root_endorsements(&self) -> Result<Vec<RootEndorsement>, TrustStoreError> {
        read_endorsements(&self.data_dir)
    }

    /// Replaces the root key: a new one, endorsed by the old one (the
    /// endorsement kept in `trust/root-endorsements`, so that a client
    /// holding the old anchor can follow), signs the manifest from now on.
    /// The new key and anchor are written beside the old ones first; a
    /// start finishes a rotation a crash interrupted, or undoes it.
    pub fn rotate_root(&self, now: u64) -> Result<String, TrustStoreError> {
        let _one = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let root_path = self.data_dir.join(ROOT_KEY);
        if !root_path.exists() {
            return Err(TrustStoreError::NoRootKey);
        }
        let old = read_root_key(&root_path)?;
        let io = |e: dwcp_crypto::RandomError| TrustStoreError::Io(e.to_string());
        let new = RootSigningKey::generate().map_err(io)?;
        let new_public = new.public_key();
        let endorsement = RootEndorsement {
            old_key_id: old.public_key().key_id(),
            new_public_key: B64.encode(new_public.to_bytes()),
            signature: B64.encode(
                old.sign(
                    &new_public.to_bytes(),
                    dwcp_crypto::trust::ROOT_ENDORSE_CONTEXT,
                )
                .map_err(io)?,
            ),
            at: now,
        };
        write_root_key(&next_path(&root_path), &new, now)?;
        let anchor = B64.encode(new_public.to_bytes()) + "\n";
        dwcp_store::write_atomically(&next_path(&self.data_dir.join(ROOT_PUB)), anchor.as_bytes())?;
        let mut endorsements = read_endorsements(&self.data_dir)?;
        endorsements.push(endorsement);
        let mut text = serde_json::to_vec_pretty(&endorsements)
            .map_err(|e| TrustStoreError::Io(e.to_string()))?;
        text.push(b'\n');
        dwcp_store::write_atomically(&self.data_dir.join(ROOT_ENDORSEMENTS), &text)?;
        let mut next = self.manifest();
        next.rebase(&new_public, now);
        self.sign_and_store(&new, &next)?;
        finish_root_rotation(&self.data_dir)?;
        *self.manifest.write().unwrap_or_else(|e| e.into_inner()) = next;
        *self.root.write().unwrap_or_else(|e| e.into_inner()) = new_public.clone();
        tracing::info!(old = %old.public_key().key_id(), new = %new_public.key_id(), "rotated the root key");
        Ok(new_public.key_id())
    }

    /// The signed manifest as stored (for `dwcp verify` to check itself).
    pub fn signed_manifest(&self) -> Result<SignedManifest, TrustStoreError> {
        Ok(read_manifest(&self.data_dir.join(MANIFEST))?)
    }

    /// Checks a publisher's signature over an artifact's statement.
    pub fn verify_artifact(
        &self,
        statement: &[u8],
        key_id: &str,
        signature: &[u8],
        now: u64,
    ) -> Result<TrustedKey, TrustError> {
        let check = |manifest: &TrustManifest| {
            manifest
                .verify(
                    KeyRole::Publisher,
                    key_id,
                    statement,
                    dwcp_crypto::trust::ARTIFACT_CONTEXT,
                    signature,
                    now,
                )
                .cloned()
        };
        let key = check(&self.manifest.read().unwrap_or_else(|e| e.into_inner()))?;
        if let Some(pending) = &*self.pending.read().unwrap_or_else(|e| e.into_inner()) {
            check(pending)?;
        }
        Ok(key)
    }

    /// Applies `change` to a copy of the manifest, signs it with the root
    /// key, writes it and swaps it in. Slow: SLH-DSA signing takes seconds.
    pub fn change<T>(
        &self,
        change: impl FnOnce(&mut TrustManifest) -> Result<T, TrustError>,
    ) -> Result<T, TrustStoreError> {
        let _one = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let root_path = self.data_dir.join(ROOT_KEY);
        if !root_path.exists() {
            return Err(TrustStoreError::NoRootKey);
        }
        let root = read_root_key(&root_path)?;
        let mut next = self.manifest();
        let out = change(&mut next)?;
        *self.pending.write().unwrap_or_else(|e| e.into_inner()) = Some(next.clone());
        let stored = self.sign_and_store(&root, &next);
        if stored.is_ok() {
            *self.manifest.write().unwrap_or_else(|e| e.into_inner()) = next;
        }
        *self.pending.write().unwrap_or_else(|e| e.into_inner()) = None;
        stored.map(|()| out)
    }

    /// Signs `manifest`, checks the signature opens under `root`'s public
    /// key (a damaged root key must not replace a good manifest) and writes
    /// it.
    fn sign_and_store(
        &self,
        root: &RootSigningKey,
        manifest: &TrustManifest,
    ) -> Result<(), TrustStoreError> {
        let signed = manifest.sign(root)?;
        signed.open(&root.public_key())?;
        write_manifest(&self.data_dir.join(MANIFEST), &signed)?;
        Ok(())
    }
}

/// Finishes a root rotation a crash interrupted (the manifest is already
/// signed by the new root: move the new key and anchor in place), or
/// undoes one that never got that far.
fn finish_root_rotation(data_dir: &Path) -> Result<(), TrustStoreError> {
    let (key, anchor) = (data_dir.join(ROOT_KEY), data_dir.join(ROOT_PUB));
    let (next_key, next_anchor) = (next_path(&key), next_path(&anchor));
    if !next_anchor.exists() {
        if next_key.exists() {
            std::fs::remove_file(&next_key)?;
        }
        return Ok(());
    }
    let signed_by_next = std::fs::read_to_string(&next_anchor)
        .ok()
        .and_then(|text| B64.decode(text.trim()).ok())
        .and_then(|bytes| RootPublicKey::from_bytes(&bytes).ok())
        .zip(read_manifest(&data_dir.join(MANIFEST)).ok())
        .is_some_and(|(root, signed)| signed.open(&root).is_ok());
    if signed_by_next {
        if next_key.exists() {
            std::fs::copy(&key, PathBuf::from(format!("{}.prev", key.display())))?;
            std::fs::rename(&next_key, &key)?;
        }
        std::fs::rename(&next_anchor, &anchor)?;
    } else {
        std::fs::remove_file(&next_anchor)?;
        if next_key.exists() {
            std::fs::remove_file(&next_key)?;
        }
    }
    Ok(())
}

fn read_endorsements(data_dir: &Path) -> Result<Vec<RootEndorsement>, TrustStoreError> {
    let path = data_dir.join(ROOT_ENDORSEMENTS);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| TrustStoreError::Io(format!("{} is damaged: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

fn next_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.next", path.display()))
}

/// Writes a hybrid key's file (0600).
fn write_key(
    path: &Path,
    role: KeyRole,
    name: &str,
    key: &HybridSigningKey,
    now: u64,
) -> Result<(), TrustStoreError> {
    let file = KeyFile {
        role,
        name: name.into(),
        created_at: now,
        key: SecretKey::Hybrid(HybridSigningKey::from_seeds(key.seeds())),
    };
    Ok(dwcp_store::write_private(path, &file.to_bytes())?)
}

/// Makes the node's identity key and writes its file.
fn make_node_key(data_dir: &Path, now: u64) -> Result<HybridSigningKey, TrustStoreError> {
    let node = HybridSigningKey::generate().map_err(|e| TrustStoreError::Io(e.to_string()))?;
    write_key(
        &data_dir.join(NODE_KEY),
        KeyRole::Node,
        NODE_KEY_NAME,
        &node,
        now,
    )?;
    Ok(node)
}

/// The root key in `path`.
fn read_root_key(path: &Path) -> Result<RootSigningKey, TrustStoreError> {
    match read_key_file(path)?.key {
        SecretKey::Root(root) => Ok(root),
        _ => Err(TrustStoreError::Io(format!(
            "{} is not a root key",
            path.display()
        ))),
    }
}

/// The hybrid key (a `what` key) in `path`.
fn read_hybrid_key(path: &Path, what: &str) -> Result<HybridSigningKey, TrustStoreError> {
    match read_key_file(path)?.key {
        SecretKey::Hybrid(key) => Ok(key),
        _ => Err(TrustStoreError::Io(format!(
            "{} is not a {what} key",
            path.display()
        ))),
    }
}

/// Writes the root key's file (0600).
fn write_root_key(path: &Path, root: &RootSigningKey, now: u64) -> Result<(), TrustStoreError> {
    let copy = RootSigningKey::from_bytes(&root.to_bytes())
        .map_err(|e| TrustStoreError::Io(e.to_string()))?;
    let file = KeyFile {
        role: KeyRole::Root,
        name: "root".into(),
        created_at: now,
        key: SecretKey::Root(copy),
    };
    Ok(dwcp_store::write_private(path, &file.to_bytes())?)
}

/// Reads and checks a key file, naming it in any error.
pub fn read_key_file(path: &Path) -> Result<KeyFile, TrustStoreError> {
    let bytes = std::fs::read(path)
        .map_err(|e| TrustStoreError::Io(format!("cannot read {}: {e}", path.display())))?;
    KeyFile::parse(&bytes).map_err(|e| TrustStoreError::Io(format!("{}: {e}", path.display())))
}

/// A public key from its base64.
pub fn parse_public_key(b64: &str) -> Result<HybridPublicKey, TrustStoreError> {
    let bytes = B64
        .decode(b64.trim())
        .map_err(|_| TrustStoreError::BadInput("the public key is not base64".into()))?;
    HybridPublicKey::from_bytes(&bytes).map_err(|e| TrustStoreError::BadInput(e.to_string()))
}

fn write_manifest(path: &Path, signed: &SignedManifest) -> io::Result<()> {
    let mut bytes = signed.bytes.clone();
    bytes.extend_from_slice(SIG_BEGIN.as_bytes());
    let sig = B64.encode(&signed.signature);
    for line in sig.as_bytes().chunks(76) {
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(SIG_END.as_bytes());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    dwcp_store::write_atomically(path, &bytes)
}

fn read_manifest(path: &Path) -> io::Result<SignedManifest> {
    let text = std::fs::read_to_string(path)?;
    let (manifest, rest) = text
        .split_once(SIG_BEGIN)
        .ok_or_else(|| io::Error::other("no root signature block"))?;
    let sig = rest
        .strip_suffix(SIG_END)
        .ok_or_else(|| io::Error::other("the root signature block is not closed"))?;
    let sig: String = sig.lines().collect();
    let signature = B64
        .decode(sig)
        .map_err(|_| io::Error::other("the root signature is not base64"))?;
    Ok(SignedManifest {
        bytes: manifest.as_bytes().to_vec(),
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_trusts_the_local_key_and_a_reopen_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let (store, created) = TrustStore::open(dir.path(), 100).unwrap();
        assert!(created);
        let local = read_key_file(&publisher_key_path(dir.path(), LOCAL_PUBLISHER)).unwrap();
        let SecretKey::Hybrid(key) = local.key else {
            panic!("a publisher key")
        };
        let statement = dwcp_crypto::trust::artifact_statement("t", "a", "v1", "ab");
        let sig = key
            .sign(&statement, dwcp_crypto::trust::ARTIFACT_CONTEXT)
            .unwrap();
        let id = key.public_key().key_id();
        store.verify_artifact(&statement, &id, &sig, 100).unwrap();

        let (again, created) = TrustStore::open(dir.path(), 200).unwrap();
        assert!(!created);
        again.verify_artifact(&statement, &id, &sig, 200).unwrap();

        // A manifest edited on disk (even a space) no longer opens.
        let path = dir.path().join(MANIFEST);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"local\"", "\"l0cal\"", 1)).unwrap();
        let Err(err) = TrustStore::open(dir.path(), 300) else {
            panic!("an edited manifest opened")
        };
        assert!(err.to_string().contains("damaged"), "{err}");
    }
}
