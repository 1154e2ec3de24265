//! `heapgen`: a Rust guest whose heap the snapshot codec is measured on.
//! A core module with no imports; the host calls its exports and reads its
//! linear memory between calls, as a checkpoint would.
//!
//! - `kv_fill(n)`, `kv_churn(updates, inserts, seed)`: a key-value store
//!   (`HashMap<u64, String>`, values like `user-42:alice@example.com:…`).
//! - `counters_fill(n)`, `counters_bump(k, seed)`: a large table of
//!   counters, of which a few change between checkpoints.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

type Map = HashMap<u64, String, BuildHasherDefault<std::collections::hash_map::DefaultHasher>>;

thread_local! {
    static KV: RefCell<Map> = RefCell::new(Map::default());
    static COUNTERS: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

fn value(key: u64, version: u32) -> String {
    const NAMES: [&str; 8] = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ];
    format!(
        "user-{key}:{}@example.com:v{version}:{}",
        NAMES[(key % 8) as usize],
        "x".repeat((key % 17) as usize)
    )
}

/// A small PRNG: the guest has no randomness and needs none.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[unsafe(no_mangle)]
pub extern "C" fn kv_fill(n: u32) {
    KV.with(|kv| {
        let mut kv = kv.borrow_mut();
        for key in 0..u64::from(n) {
            kv.insert(key, value(key, 0));
        }
    });
}

#[unsafe(no_mangle)]
pub extern "C" fn kv_churn(updates: u32, inserts: u32, seed: u32) {
    KV.with(|kv| {
        let mut kv = kv.borrow_mut();
        let mut rng = u64::from(seed) | 1;
        let len = kv.len().max(1) as u64;
        for _ in 0..updates {
            let key = next(&mut rng) % len;
            kv.insert(key, value(key, seed));
        }
        for i in 0..u64::from(inserts) {
            let key = len + u64::from(seed) * 1_000_000 + i;
            kv.insert(key, value(key, seed));
        }
    });
}

#[unsafe(no_mangle)]
pub extern "C" fn counters_fill(n: u32) {
    COUNTERS.with(|c| *c.borrow_mut() = vec![0; n as usize]);
}

#[unsafe(no_mangle)]
pub extern "C" fn counters_bump(k: u32, seed: u32) {
    COUNTERS.with(|c| {
        let mut c = c.borrow_mut();
        let mut rng = u64::from(seed) | 1;
        let len = c.len().max(1) as u64;
        for _ in 0..k {
            let i = (next(&mut rng) % len) as usize;
            if let Some(v) = c.get_mut(i) {
                *v += 1;
            }
        }
    });
}
