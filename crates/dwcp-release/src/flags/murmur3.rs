//! MurmurHash3, x86 32-bit variant.
//!
//! flagd's `fractional` operator buckets users by this hash, so it must be
//! bit-for-bit the reference algorithm (seed 0, little-endian blocks):
//! a different hash would silently move users between variants.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// Hashes `data` with MurmurHash3 x86_32 and the given seed.
pub fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    let (blocks, tail) = data.as_chunks::<4>();
    let mut h = seed;
    for block in blocks {
        h ^= scramble(u32::from_le_bytes(*block));
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, byte) in tail.iter().enumerate() {
            k |= u32::from(*byte) << (8 * i);
        }
        h ^= scramble(k);
    }
    // The reference mixes in the length modulo 2^32; truncation is intended.
    h ^= data.len() as u32;
    finalize(h)
}

fn scramble(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

/// The final avalanche, so that every input bit affects every output bit.
fn finalize(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::murmur3_32;

    #[test]
    fn known_values() {
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"hello", 0), 0x248b_fa47);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog", 0),
            0x2e4f_f723
        );
    }

    #[test]
    fn seed_and_tail_lengths_matter() {
        assert_eq!(murmur3_32(b"", 1), 0x514e_28b7);
        assert_ne!(murmur3_32(b"a", 0), murmur3_32(b"a\0", 0));
    }

    /// The keys flagd's testbed found by exhaustive search so that they hash
    /// to the bucketing boundaries (fractional.feature, "hash edge cases").
    #[test]
    fn flagd_boundary_preimages() {
        assert_eq!(murmur3_32(b"ejOoVL", 0), 0);
        assert_eq!(murmur3_32(b"bY9fO-", 0), 1);
        assert_eq!(murmur3_32(b"SI7p-", 0), 0x7fff_ffff);
        assert_eq!(murmur3_32(b"6LvT0", 0), 0x8000_0000);
        assert_eq!(murmur3_32(b"ceQdGm", 0), 0xffff_ffff);
    }
}
