//! Sealing secrets at rest.
//!
//! One 256-bit key per node, `keys/secrets.key` in the data directory
//! (mode 0600), made on first start. Each secret is sealed with
//! ChaCha20-Poly1305 under a fresh random nonce, with `tenant/app/NAME` as
//! associated data: a sealed value copied to another app or name does not
//! open. The state file holds only sealed values; backups of it stay sealed.

use std::io;
use std::path::Path;

use dwcp_store::{SealedSecret, write_atomically};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Seals and opens an app's secrets with the node's key.
pub struct SecretBox {
    key: LessSafeKey,
    rng: SystemRandom,
    fingerprint: String,
}

/// Where the key lives under a data directory.
pub const SECRETS_KEY: &str = "keys/secrets.key";

/// Names a key without revealing it: a backup records which key sealed
/// its secrets, so a restore can say which key it needs.
pub fn key_fingerprint(key: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"dwcp secrets key fingerprint\0");
    ctx.update(key);
    hex::encode(&ctx.finish().as_ref()[..8])
}

impl SecretBox {
    /// Loads the node's secrets key from `keys/secrets.key` under
    /// `data_dir`, creating it if there is none yet.
    pub fn open_or_create(data_dir: &Path) -> io::Result<Self> {
        let path = data_dir.join(SECRETS_KEY);
        let rng = SystemRandom::new();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut key = vec![0u8; 32];
                rng.fill(&mut key)
                    .map_err(|_| io::Error::other("no randomness for the secrets key"))?;
                std::fs::create_dir_all(data_dir.join("keys"))?;
                write_atomically(&path, &key)?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                }
                key
            }
            Err(e) => return Err(e),
        };
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a 32-byte key", path.display()),
            )
        })?;
        Ok(Self {
            key: LessSafeKey::new(key),
            rng,
            fingerprint: key_fingerprint(&bytes),
        })
    }

    /// The key's fingerprint (see [`key_fingerprint`]).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Seals `value`, bound to `context` (`tenant/app/NAME`).
    pub fn seal(&self, context: &str, value: &[u8]) -> io::Result<SealedSecret> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| io::Error::other("no randomness for a nonce"))?;
        let mut sealed = value.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| io::Error::other("cannot seal the secret"))?;
        Ok(SealedSecret {
            nonce: hex::encode(nonce),
            sealed: hex::encode(sealed),
        })
    }

    /// Opens a sealed value bound to `context`.
    pub fn open(&self, context: &str, secret: &SealedSecret) -> Result<Vec<u8>, String> {
        let fail = || {
            format!(
                "secret {context} cannot be opened with this node's key (keys/secrets.key replaced or the state edited?)"
            )
        };
        let nonce: [u8; NONCE_LEN] = hex::decode(&secret.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(fail)?;
        let mut sealed = hex::decode(&secret.sealed).map_err(|_| fail())?;
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| fail())?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_binding() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = SecretBox::open_or_create(dir.path()).unwrap();
        let sealed = secrets.seal("t/a/TOKEN", b"hunter2").unwrap();
        assert!(!sealed.sealed.contains(&hex::encode(b"hunter2")));
        assert_eq!(secrets.open("t/a/TOKEN", &sealed).unwrap(), b"hunter2");
        assert!(
            secrets.open("t/b/TOKEN", &sealed).is_err(),
            "bound to its app"
        );
        let mut tampered = sealed.clone();
        let mut bytes = hex::decode(&tampered.sealed).unwrap();
        bytes[0] ^= 1;
        tampered.sealed = hex::encode(bytes);
        assert!(secrets.open("t/a/TOKEN", &tampered).is_err());
        // The same key after a restart; another node's key does not open it.
        let again = SecretBox::open_or_create(dir.path()).unwrap();
        assert_eq!(again.open("t/a/TOKEN", &sealed).unwrap(), b"hunter2");
        let other = SecretBox::open_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert!(other.open("t/a/TOKEN", &sealed).is_err());
    }
}
