//! Snapshots decode to what was encoded, in both modes, full and
//! incremental, whole and page by page; damaged ones are refused.

use dwcp_snapshot::{
    Base, DecodeError, DecodeLimits, Dictionary, EncodeOptions, Global, GlobalKind, Mode,
    PAGE_SIZE, PageReader, decode, encode, no_dictionaries,
};

/// A heap-like memory: zero pages, filled pages, repeated pages, text-like
/// data and some noise.
fn heap(pages: usize, seed: u64) -> Vec<u8> {
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut mem = vec![0u8; pages * PAGE_SIZE];
    for (i, page) in mem.chunks_exact_mut(PAGE_SIZE).enumerate() {
        match i % 7 {
            0 | 1 => {}
            2 => page.fill(0xab),
            3 => {
                for (j, b) in page.iter_mut().enumerate() {
                    *b = b"the quick brown fox jumps over the lazy dog "[j % 44];
                }
            }
            4 => {
                for w in page.chunks_exact_mut(8) {
                    w.copy_from_slice(&(next() % 1000).to_le_bytes());
                }
            }
            5 => {
                for b in page.iter_mut() {
                    *b = next() as u8;
                }
            }
            _ => {
                for w in page.chunks_exact_mut(16) {
                    w[..8].copy_from_slice(&(i as u64).to_le_bytes());
                }
            }
        }
    }
    mem
}

fn globals() -> Vec<Global> {
    let mut bits = [0u8; 16];
    bits[..4].copy_from_slice(&42i32.to_le_bytes());
    vec![
        Global {
            kind: GlobalKind::I32,
            bits,
        },
        Global {
            kind: GlobalKind::V128,
            bits: [7; 16],
        },
    ]
}

fn snapshot(memories: &[&[u8]], options: &EncodeOptions<'_>) -> (Vec<u8>, u64) {
    let mut out = Vec::new();
    let summary = encode(&mut out, memories, &globals(), options).expect("encode");
    assert_eq!(summary.output_bytes, out.len() as u64);
    (out, summary.id)
}

#[test]
fn full_snapshots_round_trip_in_both_modes() {
    let a = heap(700, 1);
    let b = heap(64, 2);
    for mode in [Mode::Fast, Mode::Dense] {
        let options = EncodeOptions {
            mode,
            ..Default::default()
        };
        let (bytes, _) = snapshot(&[&a, &b], &options);
        assert!(bytes.len() < a.len() / 2, "{mode:?}: {} bytes", bytes.len());
        let (info, memories) =
            decode(&bytes, None, &no_dictionaries, &DecodeLimits::default()).expect("decode");
        assert_eq!(memories, vec![a.clone(), b.clone()]);
        assert_eq!(info.globals, globals());
        assert_eq!(info.mode, mode);
    }
}

#[test]
fn incremental_snapshots_apply_onto_their_base() {
    let before = heap(300, 3);
    let mut after = before.clone();
    // A few fields change, one page moves, memory grows by 16 pages.
    for i in (0..after.len()).step_by(50_000) {
        after[i] = after[i].wrapping_add(1);
    }
    after.extend(heap(16, 4));
    let (full, full_id) = snapshot(&[&before], &EncodeOptions::default());
    let base = [before.as_slice()];
    let options = EncodeOptions {
        base: Some(Base {
            id: full_id,
            memories: &base,
        }),
        ..Default::default()
    };
    let (delta, _) = snapshot(&[&after], &options);
    assert!(
        delta.len() * 10 < full.len(),
        "{} vs {}",
        delta.len(),
        full.len()
    );

    let limits = DecodeLimits::default();
    let (_, restored) = decode(
        &delta,
        Some((full_id, vec![before.clone()])),
        &no_dictionaries,
        &limits,
    )
    .expect("decode onto the base");
    assert_eq!(restored, vec![after.clone()]);
    // Without its base, or onto another one, it is refused.
    assert!(matches!(
        decode(&delta, None, &no_dictionaries, &limits),
        Err(DecodeError::NeedsBase(_))
    ));
    assert!(matches!(
        decode(
            &delta,
            Some((full_id ^ 1, vec![before])),
            &no_dictionaries,
            &limits
        ),
        Err(DecodeError::NeedsBase(_))
    ));
}

#[test]
fn every_page_is_read_from_its_frame_full_and_incremental() {
    let a = heap(600, 5);
    let mut b = heap(40, 6);
    // A page of the second memory repeats one of the first: a dup across memories.
    b[..PAGE_SIZE].copy_from_slice(&a[3 * PAGE_SIZE..4 * PAGE_SIZE]);
    let limits = DecodeLimits::default();
    let check = |bytes: &[u8], memories: &[&[u8]], base: Option<&[&[u8]]>| {
        let reader = PageReader::open(bytes, &no_dictionaries, &limits).expect("open");
        for (m, memory) in memories.iter().enumerate() {
            for (p, page) in memory.chunks_exact(PAGE_SIZE).enumerate() {
                assert_eq!(
                    reader.page(m as u32, p as u64, base).expect("page"),
                    page,
                    "memory {m} page {p}"
                );
            }
            let pages = (memory.len() / PAGE_SIZE) as u64;
            assert!(reader.page(m as u32, pages, base).is_err());
        }
        assert!(reader.page(memories.len() as u32, 0, base).is_err());
    };
    let (full, id) = snapshot(&[&a, &b], &EncodeOptions::default());
    check(&full, &[&a, &b], None);

    let mut a2 = a.clone();
    for i in (0..a2.len()).step_by(30_000) {
        a2[i] ^= 0x11;
    }
    let base = [a.as_slice(), b.as_slice()];
    let options = EncodeOptions {
        base: Some(Base {
            id,
            memories: &base,
        }),
        ..Default::default()
    };
    let (delta, _) = snapshot(&[&a2, &b], &options);
    check(&delta, &[&a2, &b], Some(&base));
    // Delta pages need the base.
    let reader = PageReader::open(&delta, &no_dictionaries, &limits).expect("open");
    assert!(matches!(
        reader.page(0, 0, None),
        Err(DecodeError::NeedsBase(_))
    ));
}

#[test]
fn a_dictionary_is_named_and_needed() {
    let earlier = heap(200, 6);
    let dict = Dictionary::train(&[&earlier]).expect("enough to train on");
    let now = heap(200, 7);
    let options = EncodeOptions {
        mode: Mode::Dense,
        dictionary: Some(&dict),
        ..Default::default()
    };
    let (bytes, _) = snapshot(&[&now], &options);
    let limits = DecodeLimits::default();
    let id = dict.id();
    assert!(matches!(
        decode(&bytes, None, &no_dictionaries, &limits),
        Err(DecodeError::NeedsDictionary(d)) if d == id
    ));
    let find = |want: u64| (want == id).then(|| dict.clone());
    let (_, memories) = decode(&bytes, None, &find, &limits).expect("decode");
    assert_eq!(memories, vec![now]);
}

#[test]
fn every_damaged_byte_and_every_truncation_is_refused() {
    let a = heap(40, 8);
    let (bytes, _) = snapshot(&[&a], &EncodeOptions::default());
    let limits = DecodeLimits::default();
    for i in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[i] ^= 0x5a;
        assert!(
            decode(&damaged, None, &no_dictionaries, &limits).is_err(),
            "a flipped byte at {i} went unnoticed"
        );
    }
    for len in (0..bytes.len()).step_by(7) {
        assert!(decode(&bytes[..len], None, &no_dictionaries, &limits).is_err());
    }
}

#[test]
fn limits_are_checked_before_anything_is_allocated() {
    let a = heap(64, 9);
    let (bytes, _) = snapshot(&[&a], &EncodeOptions::default());
    let small = DecodeLimits {
        max_memory_bytes: 32 * PAGE_SIZE as u64,
        max_total_bytes: 1 << 30,
    };
    assert!(matches!(
        decode(&bytes, None, &no_dictionaries, &small),
        Err(DecodeError::Limit(_))
    ));
}
