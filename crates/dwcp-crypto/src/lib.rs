//! DWCP's cryptography: keys and their files, hybrid post-quantum
//! signatures, the trust manifest, admin tokens, sealing and TLS
//! configurations.
//!
//! Nothing here reads a clock or a file: callers pass the time and the
//! bytes, so that every decision (is this key trusted *now*?) is a pure
//! function that tests can drive. The layouts and the reasons behind them
//! are in `docs/security.md`.

pub mod composite;
pub mod keyfile;
pub mod peer_tls;
pub mod root;
pub mod seal;
pub mod tls;
pub mod tokens;
pub mod trust;

/// A key's id: the first 16 hex digits of the SHA-256 of its public key.
pub fn key_id(public_key: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(public_key)[..8])
}

/// Fills `bytes` from the operating system's random source.
pub fn random_bytes(bytes: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(bytes).map_err(|e| RandomError(e.to_string()))
}

/// The operating system gave no randomness.
#[derive(Debug, thiserror::Error)]
#[error("no randomness from the operating system: {0}")]
pub struct RandomError(String);
