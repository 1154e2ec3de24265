//! Key files: one JSON object per key, the secret in base64.
//!
//! A key file carries its public key and id beside the secret so that a
//! person can tell which key a file holds (`dwcp keys list`), and so that a
//! damaged file is caught: the public key is derived again from the secret
//! on every load and must match. Writing them (atomically, 0600) is the
//! caller's job; this module is bytes in, bytes out.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::composite::{self, HybridSigningKey};
use crate::root::{self, RootSigningKey};
use crate::seal::{self, SealingKey};

const FORMAT: &str = "dwcp-key/1";

/// What a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyRole {
    /// Signs artifacts.
    Publisher,
    /// A node's identity.
    Node,
    /// Signs the trust manifest.
    Root,
}

impl std::fmt::Display for KeyRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyRole::Publisher => "publisher",
            KeyRole::Node => "node",
            KeyRole::Root => "root",
        })
    }
}

/// A secret key of either kind.
pub enum SecretKey {
    /// ML-DSA-65 + Ed25519 (publishers, nodes).
    Hybrid(HybridSigningKey),
    /// SLH-DSA-SHAKE-192s (the root).
    Root(RootSigningKey),
    /// X-Wing (a node's sealing key).
    Sealing(SealingKey),
}

impl SecretKey {
    /// The public key's bytes.
    pub fn public_bytes(&self) -> Vec<u8> {
        match self {
            SecretKey::Hybrid(k) => k.public_key().as_bytes().to_vec(),
            SecretKey::Root(k) => k.public_key().to_bytes(),
            SecretKey::Sealing(k) => k.public_key().to_vec(),
        }
    }

    /// The algorithm's name.
    pub fn algorithm(&self) -> &'static str {
        match self {
            SecretKey::Hybrid(_) => composite::ALGORITHM,
            SecretKey::Root(_) => root::ALGORITHM,
            SecretKey::Sealing(_) => seal::ALGORITHM,
        }
    }
}

/// A key file's content.
pub struct KeyFile {
    /// What the key is for.
    pub role: KeyRole,
    /// The publisher's or node's name (`root` for the root).
    pub name: String,
    /// When it was made (Unix seconds).
    pub created_at: u64,
    /// The key.
    pub key: SecretKey,
}

/// Why a key file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Not JSON of the expected shape.
    #[error("not a DWCP key file ({0})")]
    Syntax(String),
    /// Another format version.
    #[error("key file format {0:?} is not {FORMAT:?}")]
    Format(String),
    /// A field's value is wrong.
    #[error("its {0} is damaged")]
    Field(&'static str),
    /// The public key is not the secret's.
    #[error("its public key does not match its secret key: the file is damaged")]
    Mismatch,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    format: String,
    role: KeyRole,
    name: String,
    algorithm: String,
    key_id: String,
    created_at: u64,
    public_key: String,
    secret_key: String,
}

impl KeyFile {
    /// The key's id.
    pub fn key_id(&self) -> String {
        crate::key_id(&self.key.public_bytes())
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let secret = match &self.key {
            SecretKey::Hybrid(k) => Zeroizing::new(k.seeds().to_vec()),
            SecretKey::Root(k) => k.to_bytes(),
            SecretKey::Sealing(k) => Zeroizing::new(k.seed().to_vec()),
        };
        let stored = Zeroizing::new(Stored {
            format: FORMAT.into(),
            role: self.role,
            name: self.name.clone(),
            algorithm: self.key.algorithm().into(),
            key_id: self.key_id(),
            created_at: self.created_at,
            public_key: B64.encode(self.key.public_bytes()),
            secret_key: B64.encode(&secret[..]),
        });
        let mut out = serde_json::to_vec_pretty(&*stored).expect("a key file serializes");
        out.push(b'\n');
        Zeroizing::new(out)
    }

    /// Parses a file's bytes, checking that its parts agree.
    pub fn parse(bytes: &[u8]) -> Result<Self, KeyFileError> {
        let stored: Stored =
            serde_json::from_slice(bytes).map_err(|e| KeyFileError::Syntax(e.to_string()))?;
        let stored = Zeroizing::new(stored);
        if stored.format != FORMAT {
            return Err(KeyFileError::Format(stored.format.clone()));
        }
        let secret = Zeroizing::new(
            B64.decode(&stored.secret_key)
                .map_err(|_| KeyFileError::Field("secret key"))?,
        );
        let key = match (stored.role, stored.algorithm.as_str()) {
            (KeyRole::Root, root::ALGORITHM) => SecretKey::Root(
                RootSigningKey::from_bytes(&secret)
                    .map_err(|_| KeyFileError::Field("secret key"))?,
            ),
            (KeyRole::Publisher | KeyRole::Node, composite::ALGORITHM) => {
                let seeds: [u8; composite::SECRET_KEY_LEN] = secret[..]
                    .try_into()
                    .map_err(|_| KeyFileError::Field("secret key"))?;
                SecretKey::Hybrid(HybridSigningKey::from_seeds(&seeds))
            }
            (KeyRole::Node, seal::ALGORITHM) => {
                let seed: [u8; 32] = secret[..]
                    .try_into()
                    .map_err(|_| KeyFileError::Field("secret key"))?;
                SecretKey::Sealing(SealingKey::from_seed(&seed))
            }
            _ => return Err(KeyFileError::Field("algorithm")),
        };
        let public = B64
            .decode(&stored.public_key)
            .map_err(|_| KeyFileError::Field("public key"))?;
        if public != key.public_bytes() || stored.key_id != crate::key_id(&public) {
            return Err(KeyFileError::Mismatch);
        }
        Ok(Self {
            role: stored.role,
            name: stored.name.clone(),
            created_at: stored.created_at,
            key,
        })
    }
}

impl zeroize::Zeroize for Stored {
    fn zeroize(&mut self) {
        self.secret_key.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_catches_damage() {
        let file = KeyFile {
            role: KeyRole::Publisher,
            name: "acme".into(),
            created_at: 1,
            key: SecretKey::Hybrid(HybridSigningKey::generate().unwrap()),
        };
        let bytes = file.to_bytes();
        let back = KeyFile::parse(&bytes).unwrap();
        assert_eq!(back.key_id(), file.key_id());
        assert_eq!(back.name, "acme");

        assert!(matches!(KeyFile::parse(b"{"), Err(KeyFileError::Syntax(_))));
        // A flipped character in the secret: the public key no longer matches.
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let at = text.find("\"secret_key\": \"").unwrap() + 16;
        let mut damaged = text.into_bytes();
        damaged[at] = if damaged[at] == b'A' { b'B' } else { b'A' };
        assert!(matches!(
            KeyFile::parse(&damaged),
            Err(KeyFileError::Mismatch)
        ));
    }
}
