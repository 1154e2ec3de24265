//! Property tests: any memory round-trips; no input, however hostile,
//! makes the decoder panic or allocate beyond its limits. A short run is
//! part of the test command (`PROPTEST_CASES` sets the count); the long
//! runs are in docs/performance.md.

use dwcp_snapshot::{
    Base, DecodeLimits, EncodeOptions, Mode, PAGE_SIZE, PageReader, decode, encode, no_dictionaries,
};
use proptest::prelude::*;

/// A page as heaps have them.
fn page() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![0u8; PAGE_SIZE]),
        any::<u8>().prop_map(|b| vec![b; PAGE_SIZE]),
        (any::<u64>(), any::<u8>()).prop_map(|(w, at)| {
            let mut p = w.to_le_bytes().repeat(PAGE_SIZE / 8);
            p[at as usize] ^= 1;
            p
        }),
        proptest::collection::vec(any::<u8>(), PAGE_SIZE),
        proptest::collection::vec(0u8..4, PAGE_SIZE),
    ]
}

fn memory() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(page(), 0..40).prop_map(|pages| pages.concat())
}

fn limits() -> DecodeLimits {
    DecodeLimits {
        max_memory_bytes: 1 << 24,
        max_total_bytes: 1 << 25,
    }
}

/// Recomputes every checksum after a mutation, where the layout can still
/// be walked: so that mutations reach the parser behind the checksums.
fn reseal(bytes: &mut [u8]) {
    let h = |b: &[u8]| xxhash_rust::xxh3::xxh3_64(b).to_le_bytes();
    let u32_at = |b: &[u8], at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let Some(memories) = u32_at(bytes, 32) else {
        return;
    };
    let Some(globals) = u32_at(bytes, 36) else {
        return;
    };
    let prelude = 40 + memories.min(64) * 8 + globals.min(65_536) * 17;
    if prelude + 8 > bytes.len() {
        return;
    }
    let sum = h(&bytes[..prelude]);
    bytes[prelude..prelude + 8].copy_from_slice(&sum);
    let mut pos = prelude + 8;
    while bytes.get(pos..pos + 4) == Some(b"FRM1") {
        let (Some(table), Some(payload)) = (u32_at(bytes, pos + 21), u32_at(bytes, pos + 25))
        else {
            return;
        };
        let body = pos + 41;
        let Some(end) = body.checked_add(table).and_then(|e| e.checked_add(payload)) else {
            return;
        };
        if end > bytes.len() {
            return;
        }
        let sum = h(&bytes[body..end]);
        bytes[pos + 33..pos + 41].copy_from_slice(&sum);
        pos = end;
    }
    let Some(count) = u32_at(bytes, pos + 4) else {
        return;
    };
    let entries_end = pos + 8 + count.min(1 << 20) * 24;
    if entries_end + 8 + 8 + 16 != bytes.len() {
        return;
    }
    let sum = h(&bytes[pos..entries_end]);
    bytes[entries_end..entries_end + 8].copy_from_slice(&sum);
    let total_at = bytes.len() - 16;
    let sum = h(&bytes[..total_at]);
    bytes[total_at..total_at + 8].copy_from_slice(&sum);
}

proptest! {
    #[test]
    fn any_memories_round_trip(a in memory(), b in memory(), dense in any::<bool>()) {
        let options = EncodeOptions {
            mode: if dense { Mode::Dense } else { Mode::Fast },
            ..Default::default()
        };
        let mut bytes = Vec::new();
        encode(&mut bytes, &[&a, &b], &[], &options).unwrap();
        let (_, out) = decode(&bytes, None, &no_dictionaries, &limits()).unwrap();
        prop_assert_eq!(out, vec![a, b]);
    }

    #[test]
    fn any_change_round_trips_incrementally(
        before in memory(),
        after in memory(),
    ) {
        let mut full = Vec::new();
        let id = encode(&mut full, &[&before], &[], &EncodeOptions::default()).unwrap().id;
        let base = [before.as_slice()];
        let options = EncodeOptions {
            base: Some(Base { id, memories: &base }),
            ..Default::default()
        };
        let mut delta = Vec::new();
        encode(&mut delta, &[&after], &[], &options).unwrap();
        let (_, out) = decode(&delta, Some((id, vec![before])), &no_dictionaries, &limits()).unwrap();
        prop_assert_eq!(out, vec![after]);
    }

    #[test]
    fn random_bytes_are_refused_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert!(decode(&bytes, None, &no_dictionaries, &limits()).is_err());
        let _ = PageReader::open(&bytes, &no_dictionaries, &limits());
    }

    #[test]
    fn mutated_snapshots_never_panic(
        before in memory(),
        a in memory(),
        b in memory(),
        dense in any::<bool>(),
        incremental in any::<bool>(),
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        // Two memories (so that duplicates may cross them), full or
        // incremental, lz4 or zstd: every path of the decoder.
        let mut full = Vec::new();
        let base_id = encode(&mut full, &[&before, &before], &[], &EncodeOptions::default())
            .unwrap()
            .id;
        let base = [before.as_slice(), before.as_slice()];
        let options = EncodeOptions {
            mode: if dense { Mode::Dense } else { Mode::Fast },
            base: incremental.then_some(Base { id: base_id, memories: &base }),
            ..Default::default()
        };
        let mut bytes = Vec::new();
        encode(&mut bytes, &[&a, &b], &[], &options).unwrap();
        for (at, value) in &mutations {
            let i = at.index(bytes.len());
            bytes[i] = *value;
        }
        if let Some(cut) = cut {
            let len = cut.index(bytes.len() + 1);
            bytes.truncate(len);
        }
        reseal(&mut bytes);
        // Whatever it decodes to (a mutation may hit a value, not a
        // structure), it must not panic, and what it returns stays within
        // the limits.
        let onto = incremental.then(|| (base_id, vec![before.clone(), before.clone()]));
        if let Ok((_, memories)) = decode(&bytes, onto, &no_dictionaries, &limits()) {
            let total: usize = memories.iter().map(Vec::len).sum();
            prop_assert!(total as u64 <= limits().max_total_bytes);
        }
        if let Ok(reader) = PageReader::open(&bytes, &no_dictionaries, &limits()) {
            for (m, len) in reader.info().memory_lengths.clone().into_iter().enumerate() {
                for p in 0..(len / PAGE_SIZE as u64).min(8) {
                    let _ = reader.page(m as u32, p, Some(&base));
                }
            }
        }
    }
}

#[test]
fn resealing_lets_mutations_reach_the_parser() {
    let a = vec![1u8; 8 * PAGE_SIZE];
    let mut bytes = Vec::new();
    encode(&mut bytes, &[&a], &[], &EncodeOptions::default()).unwrap();
    let mut same = bytes.clone();
    reseal(&mut same);
    assert_eq!(same, bytes, "resealing an intact snapshot changes nothing");
    // The first frame's first class byte (after the 48-byte prelude with one
    // memory, and the 41-byte frame header) set to a class that does not exist.
    let class_at = 40 + 8 + 8 + 41;
    bytes[class_at] = 9;
    reseal(&mut bytes);
    let err = decode(&bytes, None, &no_dictionaries, &limits()).unwrap_err();
    assert!(err.to_string().contains("unknown page class 9"), "{err}");
}
