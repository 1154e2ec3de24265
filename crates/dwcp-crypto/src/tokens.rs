//! Admin API bearer tokens: 256 random bits, kept only as their SHA-256.
//!
//! A token is high-entropy, so a plain hash (no salt, no slow KDF) is
//! enough to make a stolen store useless; comparing hashes in constant
//! time leaves no timing signal.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Every token starts with this, so that a leaked one is easy to spot.
pub const PREFIX: &str = "dwcp_";

/// A new token.
pub fn generate() -> Result<String, crate::RandomError> {
    let mut bytes = [0u8; 32];
    crate::random_bytes(&mut bytes)?;
    Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// What is stored of a token: its SHA-256, hex.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` is the one `stored` is the hash of, in constant time.
pub fn matches(token: &str, stored: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(hash(token).as_bytes(), stored.as_bytes())
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_its_hash_only() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert!(a.starts_with(PREFIX) && a.len() > 40);
        assert!(matches(&a, &hash(&a)));
        assert!(!matches(&b, &hash(&a)));
        assert!(!matches("", &hash(&a)));
    }
}
