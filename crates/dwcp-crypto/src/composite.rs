//! Hybrid ML-DSA-65 + Ed25519 signatures, laid out as the IETF LAMPS
//! composite signature draft's `id-MLDSA65-Ed25519-SHA512` (the revision
//! pinned in `docs/security.md`).
//!
//! A signature verifies only when both halves do: it stays sound as long
//! as either algorithm is unbroken. The message is pre-hashed with SHA-512
//! and wrapped with the draft's prefix, label and the caller's context, so
//! that a signature made for one purpose (an artifact) is never valid for
//! another (a key endorsement).

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use ml_dsa::{EncodedVerifyingKey, MlDsa65, Signature as MlDsaSignature, VerifyingKey};
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

/// The algorithm's name in the draft.
pub const ALGORITHM: &str = "id-MLDSA65-Ed25519-SHA512";
/// The draft's prefix of every signed message.
const PREFIX: &[u8] = b"CompositeAlgorithmSignatures2025";
/// The draft's label for this pair; also ML-DSA's context string.
const LABEL: &[u8] = b"COMPSIG-MLDSA65-Ed25519-SHA512";
const MLDSA_PUBLIC: usize = 1952;
const MLDSA_SIGNATURE: usize = 3309;
/// Bytes of a public key: ML-DSA-65's, then Ed25519's.
pub const PUBLIC_KEY_LEN: usize = MLDSA_PUBLIC + 32;
/// Bytes of a signature: ML-DSA-65's, then Ed25519's.
pub const SIGNATURE_LEN: usize = MLDSA_SIGNATURE + 64;
/// Bytes of a secret key: the ML-DSA-65 seed, then the Ed25519 seed.
pub const SECRET_KEY_LEN: usize = 64;

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The bytes are not a signature or key of this algorithm.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The ML-DSA-65 half did not verify.
    #[error("the ML-DSA-65 half of the signature does not verify")]
    MlDsa,
    /// The Ed25519 half did not verify.
    #[error("the Ed25519 half of the signature does not verify")]
    Ed25519,
    /// Neither half verified.
    #[error("neither half of the signature verifies (ML-DSA-65 nor Ed25519)")]
    Both,
    /// The context string is longer than 255 bytes.
    #[error("context longer than 255 bytes")]
    Context,
}

/// A hybrid signing key.
pub struct HybridSigningKey {
    seeds: Zeroizing<[u8; SECRET_KEY_LEN]>,
    mldsa: ml_dsa::SigningKey<MlDsa65>,
    ed: Ed25519KeyPair,
    public: HybridPublicKey,
}

/// A hybrid public key.
#[derive(Clone, PartialEq, Eq)]
pub struct HybridPublicKey {
    bytes: Vec<u8>,
}

impl std::fmt::Debug for HybridPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HybridPublicKey({})", self.key_id())
    }
}

impl HybridSigningKey {
    /// A new key from the operating system's randomness.
    pub fn generate() -> Result<Self, crate::RandomError> {
        let mut seeds = Zeroizing::new([0u8; SECRET_KEY_LEN]);
        crate::random_bytes(&mut seeds[..])?;
        Ok(Self::from_seeds(&seeds))
    }

    /// The key these seeds make (ML-DSA-65's, then Ed25519's).
    pub fn from_seeds(seeds: &[u8; SECRET_KEY_LEN]) -> Self {
        let mut mldsa_seed = ml_dsa::Seed::default();
        mldsa_seed.copy_from_slice(&seeds[..32]);
        let mldsa = ml_dsa::SigningKey::<MlDsa65>::from_seed(&mldsa_seed);
        let ed = Ed25519KeyPair::from_seed_unchecked(&seeds[32..])
            .expect("any 32 bytes are an Ed25519 seed");
        let mut bytes = Vec::with_capacity(PUBLIC_KEY_LEN);
        bytes.extend_from_slice(&mldsa.expanded_key().verifying_key().encode());
        bytes.extend_from_slice(ed.public_key().as_ref());
        Self {
            seeds: Zeroizing::new(*seeds),
            mldsa,
            ed,
            public: HybridPublicKey { bytes },
        }
    }

    /// The secret seeds, for the key file.
    pub fn seeds(&self) -> &[u8; SECRET_KEY_LEN] {
        &self.seeds
    }

    /// The public half.
    pub fn public_key(&self) -> &HybridPublicKey {
        &self.public
    }

    /// Signs `message` for the purpose `context` (at most 255 bytes).
    pub fn sign(&self, message: &[u8], context: &[u8]) -> Result<Vec<u8>, SignatureError> {
        let m_prime = message_representative(message, context)?;
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        // Hedged ML-DSA (FIPS 204's default): fresh randomness per signature.
        let mldsa = self
            .mldsa
            .expanded_key()
            .sign_randomized(&m_prime, LABEL, &mut rng)
            .map_err(|_| SignatureError::Context)?;
        let ed = self.ed.sign(&m_prime);
        let mut out = Vec::with_capacity(SIGNATURE_LEN);
        out.extend_from_slice(&mldsa.encode());
        out.extend_from_slice(ed.as_ref());
        Ok(out)
    }
}

impl HybridPublicKey {
    /// Parses a public key's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SignatureError> {
        if bytes.len() != PUBLIC_KEY_LEN {
            return Err(SignatureError::Malformed("public key (wrong length)"));
        }
        Ok(Self {
            bytes: bytes.to_vec(),
        })
    }

    /// The key's bytes: ML-DSA-65's public key, then Ed25519's.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The key's id.
    pub fn key_id(&self) -> String {
        crate::key_id(&self.bytes)
    }

    /// Checks `signature` over `message` for the purpose `context`: both
    /// halves must verify.
    pub fn verify(
        &self,
        message: &[u8],
        context: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        if signature.len() != SIGNATURE_LEN {
            return Err(SignatureError::Malformed("signature (wrong length)"));
        }
        let m_prime = message_representative(message, context)?;
        let (mldsa_sig, ed_sig) = signature.split_at(MLDSA_SIGNATURE);
        let (mldsa_pk, ed_pk) = self.bytes.split_at(MLDSA_PUBLIC);
        let encoded = EncodedVerifyingKey::<MlDsa65>::try_from(mldsa_pk)
            .map_err(|_| SignatureError::Malformed("public key"))?;
        let mldsa_ok = match MlDsaSignature::<MlDsa65>::try_from(mldsa_sig) {
            Ok(sig) => {
                VerifyingKey::<MlDsa65>::decode(&encoded).verify_with_context(&m_prime, LABEL, &sig)
            }
            Err(_) => false,
        };
        let ed_ok = UnparsedPublicKey::new(&ED25519, ed_pk)
            .verify(&m_prime, ed_sig)
            .is_ok();
        match (mldsa_ok, ed_ok) {
            (true, true) => Ok(()),
            (false, true) => Err(SignatureError::MlDsa),
            (true, false) => Err(SignatureError::Ed25519),
            (false, false) => Err(SignatureError::Both),
        }
    }
}

/// The draft's M': prefix ‖ label ‖ len(ctx) ‖ ctx ‖ SHA-512(M).
fn message_representative(message: &[u8], context: &[u8]) -> Result<Vec<u8>, SignatureError> {
    let len = u8::try_from(context.len()).map_err(|_| SignatureError::Context)?;
    let mut out = Vec::with_capacity(PREFIX.len() + LABEL.len() + 1 + context.len() + 64);
    out.extend_from_slice(PREFIX);
    out.extend_from_slice(LABEL);
    out.push(len);
    out.extend_from_slice(context);
    out.extend_from_slice(&Sha512::digest(message));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_and_refuses_each_half_tampered() {
        let key = HybridSigningKey::generate().unwrap();
        let public = key.public_key().clone();
        let sig = key.sign(b"artifact", b"dwcp/test").unwrap();
        assert_eq!(sig.len(), SIGNATURE_LEN);
        assert_eq!(public.as_bytes().len(), PUBLIC_KEY_LEN);
        public.verify(b"artifact", b"dwcp/test", &sig).unwrap();
        // Another message, another context: both halves fail.
        assert_eq!(
            public.verify(b"artifacT", b"dwcp/test", &sig),
            Err(SignatureError::Both)
        );
        assert_eq!(
            public.verify(b"artifact", b"dwcp/other", &sig),
            Err(SignatureError::Both)
        );
        let mut bad = sig.clone();
        bad[10] ^= 1;
        assert_eq!(
            public.verify(b"artifact", b"dwcp/test", &bad),
            Err(SignatureError::MlDsa)
        );
        let mut bad = sig.clone();
        bad[SIGNATURE_LEN - 1] ^= 1;
        assert_eq!(
            public.verify(b"artifact", b"dwcp/test", &bad),
            Err(SignatureError::Ed25519)
        );
        assert!(matches!(
            public.verify(b"artifact", b"dwcp/test", &sig[1..]),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn the_same_seeds_make_the_same_key() {
        let seeds = [7u8; SECRET_KEY_LEN];
        let a = HybridSigningKey::from_seeds(&seeds);
        let b = HybridSigningKey::from_seeds(&seeds);
        assert_eq!(a.public_key(), b.public_key());
        let sig = a.sign(b"m", b"").unwrap();
        b.public_key().verify(b"m", b"", &sig).unwrap();
        // The key id names the whole public key.
        assert_eq!(a.public_key().key_id().len(), 16);
    }
}
