//! The encoder and decoder stream: a memory is encoded to a file and
//! decoded back from it with a bounded amount of memory besides the memory
//! itself (not a second copy of it). Measured with a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufReader, BufWriter, Seek};
use std::sync::atomic::{AtomicUsize, Ordering};

use dwcp_snapshot::{
    DecodeLimits, EncodeOptions, MemorySink, Mode, PAGE_SIZE, decode_into, encode, no_dictionaries,
};

/// Counts the bytes allocated now and the most ever allocated at once.
struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = NOW.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            let now = NOW.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        NOW.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most allocated at once while `f` ran, beyond what was allocated
/// before it.
fn extra_peak(f: impl FnOnce()) -> usize {
    let before = NOW.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    f();
    PEAK.load(Ordering::Relaxed) - before
}

/// One memory, handed to the decoder as the sink (so that its size is not
/// counted as the decoder's).
struct Preallocated(Vec<u8>);

impl MemorySink for Preallocated {
    fn prepare(&mut self, lengths: &[u64]) -> Result<(Vec<&mut [u8]>, bool), String> {
        if lengths != [self.0.len() as u64] {
            return Err("unexpected lengths".into());
        }
        Ok((vec![self.0.as_mut_slice()], false))
    }
}

#[test]
fn a_large_memory_is_encoded_and_decoded_without_a_second_copy() {
    const SIZE: usize = 512 << 20;
    const BOUND: usize = 96 << 20;
    // A heap of 512 MiB: every fourth page holds data that compresses, one
    // in 64 noise, the rest zero.
    let mut memory = vec![0u8; SIZE];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for (i, page) in memory.chunks_exact_mut(PAGE_SIZE).enumerate() {
        if i % 64 == 1 {
            for b in page.iter_mut() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                *b = rng as u8;
            }
        } else if i % 4 == 0 {
            for (j, w) in page.chunks_exact_mut(8).enumerate() {
                w.copy_from_slice(&((i * 512 + j) as u64 % 977).to_le_bytes());
            }
        }
    }
    let mut file = tempfile::tempfile().expect("temp file");
    for mode in [Mode::Fast, Mode::Dense] {
        file.set_len(0).expect("truncate");
        file.rewind().expect("rewind");
        let encoding = extra_peak(|| {
            let options = EncodeOptions {
                mode,
                ..Default::default()
            };
            encode(BufWriter::new(&mut file), &[&memory], &[], &options).expect("encode");
        });
        eprintln!(
            "{mode:?}: encoding 512 MiB allocated at most {} MiB besides",
            encoding >> 20
        );
        assert!(
            encoding < BOUND,
            "{mode:?}: encoding 512 MiB took {} MiB besides",
            encoding >> 20
        );

        file.rewind().expect("rewind");
        let mut sink = Preallocated(vec![0xffu8; SIZE]);
        let decoding = extra_peak(|| {
            decode_into(
                BufReader::new(&mut file),
                &mut sink,
                None,
                &no_dictionaries,
                &DecodeLimits::default(),
            )
            .expect("decode");
        });
        eprintln!(
            "{mode:?}: decoding 512 MiB allocated at most {} MiB besides",
            decoding >> 20
        );
        assert!(
            decoding < BOUND,
            "{mode:?}: decoding 512 MiB took {} MiB besides",
            decoding >> 20
        );
        assert!(sink.0 == memory, "{mode:?}: round trip");
    }
}
