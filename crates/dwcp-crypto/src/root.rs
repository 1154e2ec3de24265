//! The root key: SLH-DSA-SHAKE-192s (FIPS 205), which signs the trust
//! manifest.
//!
//! A hash-based signature rests only on the hash function, the most
//! conservative assumption there is; its signatures are large (16 KB) and
//! slow to make, which suits a key that signs rarely and is verified at
//! each manifest load.

use slh_dsa::{Shake192s, Signature, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

/// The algorithm's name.
pub const ALGORITHM: &str = "SLH-DSA-SHAKE-192s";
/// Bytes of a public key.
pub const PUBLIC_KEY_LEN: usize = 48;
/// Bytes of a secret key (it holds the public key too).
pub const SECRET_KEY_LEN: usize = 96;
/// Bytes of a signature.
pub const SIGNATURE_LEN: usize = 16224;

/// Why a root signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RootError {
    /// The bytes are not a key or signature of this algorithm.
    #[error("malformed root {0}")]
    Malformed(&'static str),
    /// The signature does not verify.
    #[error("the root signature (SLH-DSA-SHAKE-192s) does not verify")]
    Invalid,
}

/// The root signing key.
pub struct RootSigningKey {
    key: SigningKey<Shake192s>,
}

/// The root public key: the node's trust anchor.
#[derive(Clone, PartialEq, Eq)]
pub struct RootPublicKey {
    key: VerifyingKey<Shake192s>,
}

impl std::fmt::Debug for RootPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RootPublicKey({})", self.key_id())
    }
}

impl RootSigningKey {
    /// A new root key from the operating system's randomness.
    pub fn generate() -> Result<Self, crate::RandomError> {
        let mut seeds = Zeroizing::new([0u8; 72]);
        crate::random_bytes(&mut seeds[..])?;
        Ok(Self {
            key: SigningKey::slh_keygen_internal(&seeds[..24], &seeds[24..48], &seeds[48..]),
        })
    }

    /// Parses a secret key's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RootError> {
        if bytes.len() != SECRET_KEY_LEN {
            return Err(RootError::Malformed("secret key (wrong length)"));
        }
        let key: SigningKey<Shake192s> =
            SigningKey::try_from(bytes).map_err(|_| RootError::Malformed("secret key"))?;
        // The bytes hold the public key too (sk_seed ‖ sk_prf ‖ pk_seed ‖
        // pk_root): derive pk_root again from the seeds, so that a damaged
        // secret is caught here rather than by a signature nobody can check.
        let derived = SigningKey::<Shake192s>::slh_keygen_internal(
            &bytes[..24],
            &bytes[24..48],
            &bytes[48..72],
        );
        if derived.to_bytes()[..] != bytes[..] {
            return Err(RootError::Malformed(
                "secret key (its public half does not match)",
            ));
        }
        Ok(Self { key })
    }

    /// The secret key's bytes.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.key.to_vec())
    }

    /// The public half.
    pub fn public_key(&self) -> RootPublicKey {
        RootPublicKey {
            key: self.key.as_ref().clone(),
        }
    }

    /// Signs `message` for the purpose `context` (FIPS 205 pure signing,
    /// hedged with fresh randomness).
    pub fn sign(&self, message: &[u8], context: &[u8]) -> Result<Vec<u8>, crate::RandomError> {
        let mut rand = [0u8; 24];
        crate::random_bytes(&mut rand)?;
        let sig = self
            .key
            .try_sign_with_context(message, context, Some(&rand))
            .map_err(|_| crate::RandomError("context longer than 255 bytes".into()))?;
        Ok(sig.to_vec())
    }
}

impl RootPublicKey {
    /// Parses a public key's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RootError> {
        let key = VerifyingKey::try_from(bytes).map_err(|_| RootError::Malformed("public key"))?;
        Ok(Self { key })
    }

    /// The key's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.key.to_vec()
    }

    /// The key's id.
    pub fn key_id(&self) -> String {
        crate::key_id(&self.to_bytes())
    }

    /// Checks a signature over `message` for the purpose `context`.
    pub fn verify(
        &self,
        message: &[u8],
        context: &[u8],
        signature: &[u8],
    ) -> Result<(), RootError> {
        let sig = Signature::try_from(signature).map_err(|_| RootError::Malformed("signature"))?;
        self.key
            .try_verify_with_context(message, context, &sig)
            .map_err(|_| RootError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_verifies_and_round_trips() {
        let key = RootSigningKey::generate().unwrap();
        let again = RootSigningKey::from_bytes(&key.to_bytes()).unwrap();
        let public = again.public_key();
        assert_eq!(public, key.public_key());
        let sig = key.sign(b"manifest", b"dwcp/trust/v1").unwrap();
        assert_eq!(sig.len(), SIGNATURE_LEN);
        let public = RootPublicKey::from_bytes(&public.to_bytes()).unwrap();
        public.verify(b"manifest", b"dwcp/trust/v1", &sig).unwrap();
        assert_eq!(
            public.verify(b"manifesT", b"dwcp/trust/v1", &sig),
            Err(RootError::Invalid)
        );
        assert!(RootPublicKey::from_bytes(&[0; 47]).is_err());
        // A flipped bit in a seed no longer makes the stored public half.
        let mut damaged = key.to_bytes().to_vec();
        damaged[3] ^= 1;
        assert!(RootSigningKey::from_bytes(&damaged).is_err());
    }
}
