//! zstd dictionaries trained per app from its own earlier snapshots.

use crate::format::PAGE_SIZE;

/// A zstd dictionary and its id (the xxh3-64 of its bytes).
#[derive(Clone)]
pub struct Dictionary {
    id: u64,
    bytes: Vec<u8>,
}

/// The largest dictionary [`Dictionary::train`] makes.
pub const DICTIONARY_SIZE: usize = 112 << 10;

impl Dictionary {
    /// Wraps dictionary bytes as stored.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self {
            id: xxhash_rust::xxh3::xxh3_64(&bytes),
            bytes,
        }
    }

    /// Trains a dictionary from the pages of earlier memories of one app:
    /// pages that are neither zero nor repeats of an earlier sample, up to
    /// 8 MiB of them. `None` when there is too little to learn from.
    pub fn train(memories: &[&[u8]]) -> Option<Self> {
        let mut seen = std::collections::HashSet::new();
        let mut samples: Vec<&[u8]> = Vec::new();
        'outer: for memory in memories {
            for page in memory.chunks_exact(PAGE_SIZE) {
                if samples.len() >= 2048 {
                    break 'outer;
                }
                if page.iter().all(|&b| b == 0) {
                    continue;
                }
                if seen.insert(xxhash_rust::xxh3::xxh3_64(page)) {
                    samples.push(page);
                }
            }
        }
        if samples.len() < 16 {
            return None;
        }
        let bytes = zstd::dict::from_samples(&samples, DICTIONARY_SIZE).ok()?;
        Some(Self::from_bytes(bytes))
    }

    /// Its id, as snapshots record it.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Its bytes, as the store keeps them.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Dictionary({:016x}, {} bytes)",
            self.id,
            self.bytes.len()
        )
    }
}
