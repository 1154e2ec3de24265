//! Sealing: snapshots encrypted to one recipient node's public key.
//!
//! X-Wing (X25519 + ML-KEM-768, draft-connolly-cfrg-xwing-kem) gives a
//! fresh 32-byte secret per sealed object; HKDF-SHA256 turns it into an
//! AES-256-GCM key bound to what the object is (tenant, app, subject such
//! as a stateful app's key, snapshot id, recipient). A store or broker holding sealed bytes sees only
//! ciphertext; opening with any other binding, or after any change to a
//! byte, fails.
//!
//! Layout: `DWCPSEAL` ‖ version (1) ‖ recipient key id (8) ‖ X-Wing
//! ciphertext (1120) ‖ AES-256-GCM ciphertext and tag. The header is the
//! AEAD's associated data. Each object has its own key, so the nonce is
//! fixed (zero).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};
use x_wing::kem::{Decapsulate, Decapsulator, KeyExport};
use x_wing::{CIPHERTEXT_SIZE, Ciphertext, DecapsulationKey};
use zeroize::Zeroizing;

/// The KEM's name.
pub const ALGORITHM: &str = "X-Wing";
const MAGIC: &[u8; 8] = b"DWCPSEAL";
const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 8;
const HEADER_LEN: usize = MAGIC.len() + 1 + KEY_ID_LEN + CIPHERTEXT_SIZE;
const TAG_LEN: usize = 16;
/// Bytes a sealed object has beyond its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// What a sealed object is: opening with another binding fails.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// The app.
    pub app: &'a str,
    /// What within the app it is: a stateful app's key.
    pub subject: &'a str,
    /// The snapshot's id.
    pub snapshot_id: u64,
}

/// Why a sealed object could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Not a sealed object.
    #[error("not a sealed snapshot (bad header)")]
    Malformed,
    /// Sealed to another key.
    #[error("sealed to key {0}, not to this node's key")]
    OtherRecipient(String),
    /// Tampered with, or opened with the wrong binding.
    #[error(
        "the sealed snapshot does not open: it was altered, or belongs to another tenant, app or snapshot"
    )]
    Tampered,
    /// No randomness.
    #[error("{0}")]
    Random(String),
}

/// A node's sealing key pair.
pub struct SealingKey {
    secret: DecapsulationKey,
    public: Vec<u8>,
}

impl SealingKey {
    /// A new key pair.
    pub fn generate() -> Result<Self, crate::RandomError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        crate::random_bytes(&mut seed[..])?;
        Ok(Self::from_seed(&seed))
    }

    /// The key pair of a 32-byte seed (X-Wing's secret key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let secret = DecapsulationKey::from(*seed);
        let public = secret.encapsulation_key().to_bytes().to_vec();
        Self { secret, public }
    }

    /// The seed, for the key file.
    pub fn seed(&self) -> &[u8; 32] {
        self.secret.as_bytes()
    }

    /// The public key (1216 bytes), which senders seal to.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// The public key's id.
    pub fn key_id(&self) -> String {
        crate::key_id(&self.public)
    }

    /// Opens an object sealed to this key.
    pub fn open(&self, sealed: &[u8], binding: Binding<'_>) -> Result<Vec<u8>, SealError> {
        if sealed.len() < OVERHEAD || &sealed[..MAGIC.len()] != MAGIC || sealed[8] != VERSION {
            return Err(SealError::Malformed);
        }
        let kid = &sealed[9..9 + KEY_ID_LEN];
        let own = hex::decode(self.key_id()).expect("a key id is hex");
        if kid != own.as_slice() {
            return Err(SealError::OtherRecipient(hex::encode(kid)));
        }
        let (header, body) = sealed.split_at(HEADER_LEN);
        let ct =
            Ciphertext::try_from(&header[9 + KEY_ID_LEN..]).map_err(|_| SealError::Malformed)?;
        let shared = Zeroizing::new(self.secret.decapsulate(&ct));
        let key = aead_key(&shared, binding, kid)?;
        let mut out = body.to_vec();
        let plain_len = key
            .open_in_place(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(header),
                &mut out,
            )
            .map_err(|_| SealError::Tampered)?
            .len();
        out.truncate(plain_len);
        Ok(out)
    }
}

/// Seals `plain` to the holder of `recipient` (an X-Wing public key).
pub fn seal(recipient: &[u8], plain: &[u8], binding: Binding<'_>) -> Result<Vec<u8>, SealError> {
    let (ct, shared) = encapsulate(recipient)?;
    let kid = hex::decode(crate::key_id(recipient)).expect("a key id is hex");
    let mut out = Vec::with_capacity(plain.len() + OVERHEAD);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&kid);
    out.extend_from_slice(&ct);
    let key = aead_key(&shared[..], binding, &kid)?;
    // Encrypted where it will stay: one copy of the plaintext, no more.
    out.extend_from_slice(plain);
    let (header, body) = out.split_at_mut(HEADER_LEN);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(&*header),
            body,
        )
        .map_err(|_| SealError::Random("AES-256-GCM refused to seal".into()))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// X-Wing encapsulation (draft-connolly-cfrg-xwing-kem-06, section 5.3)
/// on aws-lc-rs's ML-KEM-768 and X25519, about three times faster than the
/// `x-wing` crate's on this path, which every checkpoint takes; opening
/// uses the `x-wing` crate, whose known answers the vector tests check, so
/// every seal is also a cross-check of the two.
fn encapsulate(recipient: &[u8]) -> Result<(Vec<u8>, Zeroizing<[u8; 32]>), SealError> {
    use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
    use aws_lc_rs::kem::{EncapsulationKey as MlKemKey, ML_KEM_768};
    const ML_KEM_PUBLIC: usize = 1184;
    if recipient.len() != x_wing::ENCAPSULATION_KEY_SIZE {
        return Err(SealError::Malformed);
    }
    let (pk_m, pk_x) = recipient.split_at(ML_KEM_PUBLIC);
    let random = |_| SealError::Random("no randomness for the encapsulation".into());
    let (ct_m, ss_m) = MlKemKey::new(&ML_KEM_768, pk_m)
        .map_err(|_| SealError::Malformed)?
        .encapsulate()
        .map_err(random)?;
    let sk_x = EphemeralPrivateKey::generate(&X25519, &aws_lc_rs::rand::SystemRandom::new())
        .map_err(random)?;
    let ct_x = sk_x.compute_public_key().map_err(random)?;
    let ss_x = agreement::agree_ephemeral(
        sk_x,
        UnparsedPublicKey::new(&X25519, pk_x),
        SealError::Malformed,
        |ss_x| Ok(Zeroizing::new(ss_x.to_vec())),
    )?;
    // SHA3-256(ss_M ‖ ss_X ‖ ct_X ‖ pk_X ‖ label), the draft's combiner.
    let mut combiner = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA3_256);
    for part in [ss_m.as_ref(), &ss_x[..], ct_x.as_ref(), pk_x, XWING_LABEL] {
        combiner.update(part);
    }
    let mut shared = Zeroizing::new([0u8; 32]);
    shared.copy_from_slice(combiner.finish().as_ref());
    let mut ct = Vec::with_capacity(CIPHERTEXT_SIZE);
    ct.extend_from_slice(ct_m.as_ref());
    ct.extend_from_slice(ct_x.as_ref());
    Ok((ct, shared))
}

/// The X-Wing draft's label, the combiner's last input.
const XWING_LABEL: &[u8] = br"\.//^\";

/// Whether `bytes` look like a sealed object (its magic).
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

struct AeadKeyLen;

impl KeyType for AeadKeyLen {
    fn len(&self) -> usize {
        32
    }
}

fn aead_key(shared: &[u8], binding: Binding<'_>, kid: &[u8]) -> Result<LessSafeKey, SealError> {
    let id = binding.snapshot_id.to_be_bytes();
    let mut info = Vec::new();
    for part in [
        b"dwcp-seal/v1".as_slice(),
        binding.tenant.as_bytes(),
        binding.app.as_bytes(),
        binding.subject.as_bytes(),
        &id,
        kid,
    ] {
        info.extend_from_slice(&(part.len() as u32).to_be_bytes());
        info.extend_from_slice(part);
    }
    let info = [info.as_slice()];
    let prk = Salt::new(HKDF_SHA256, &[]).extract(shared);
    let okm = prk
        .expand(&info, AeadKeyLen)
        .map_err(|_| SealError::Tampered)?;
    let mut key = Zeroizing::new([0u8; 32]);
    okm.fill(&mut key[..]).map_err(|_| SealError::Tampered)?;
    let unbound = UnboundKey::new(&AES_256_GCM, &key[..]).map_err(|_| SealError::Tampered)?;
    Ok(LessSafeKey::new(unbound))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BINDING: Binding<'static> = Binding {
        tenant: "acme",
        app: "shop",
        subject: "alice",
        snapshot_id: 42,
    };

    #[test]
    fn opens_only_intact_with_its_binding_and_key() {
        let key = SealingKey::generate().unwrap();
        let plain = vec![7u8; 100_000];
        let sealed = seal(key.public_key(), &plain, BINDING).unwrap();
        assert_eq!(sealed.len(), plain.len() + OVERHEAD);
        assert!(is_sealed(&sealed));
        assert_eq!(key.open(&sealed, BINDING).unwrap(), plain);
        // The plaintext is nowhere in the sealed bytes.
        assert!(!sealed.windows(64).any(|w| w == &plain[..64]));

        for at in [0, 9, 20, HEADER_LEN - 1, HEADER_LEN + 5, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 1;
            assert!(
                key.open(&bad, BINDING).is_err(),
                "a flipped byte at {at} opened"
            );
        }
        for other in [
            Binding {
                tenant: "evil",
                ..BINDING
            },
            Binding {
                app: "other",
                ..BINDING
            },
            Binding {
                subject: "bob",
                ..BINDING
            },
            Binding {
                snapshot_id: 43,
                ..BINDING
            },
        ] {
            assert_eq!(key.open(&sealed, other), Err(SealError::Tampered));
        }
        let stranger = SealingKey::generate().unwrap();
        assert!(matches!(
            stranger.open(&sealed, BINDING),
            Err(SealError::OtherRecipient(_))
        ));
        assert_eq!(
            key.open(&sealed[..OVERHEAD - 1], BINDING),
            Err(SealError::Malformed)
        );
        let again = SealingKey::from_seed(key.seed());
        assert_eq!(again.open(&sealed, BINDING).unwrap(), plain);
    }
}
