//! Encoding: memories in place → a snapshot, frame batch by frame batch.

use std::collections::HashMap;
use std::io::{self, Write};

use rayon::prelude::*;
use xxhash_rust::xxh3::Xxh3;

use crate::classify::{Prelim, classify};
use crate::dict::Dictionary;
use crate::format::{
    Class, Codec, END_MAGIC, FORMAT_VERSION, FRAME_MAGIC, Global, INDEX_MAGIC, MAGIC,
    MAX_FRAME_PAGES, MAX_GLOBALS, MAX_MEMORIES, Mode, PAGE_SHIFT, PAGE_SIZE, checksum,
};

/// Frames encoded together (in parallel) before they are written: what
/// bounds the encoder's memory besides one hash per page.
const BATCH_FRAMES: usize = 32;

/// A block that keeps more than this share of its size is stored as is.
const STORE_ABOVE: f64 = 0.97;

/// The previous snapshot's memories, for an incremental one.
#[derive(Clone, Copy)]
pub struct Base<'a> {
    /// The base snapshot's id ([`EncodeSummary::id`] when it was written).
    pub id: u64,
    /// Its memories, as they were when it was taken.
    pub memories: &'a [&'a [u8]],
}

/// How to encode.
#[derive(Clone, Copy)]
pub struct EncodeOptions<'a> {
    /// lz4 or zstd.
    pub mode: Mode,
    /// zstd's level in `dense` mode.
    pub zstd_level: i32,
    /// The snapshot this one is a delta of, if any.
    pub base: Option<Base<'a>>,
    /// The app's zstd dictionary (`dense` mode only).
    pub dictionary: Option<&'a Dictionary>,
}

impl Default for EncodeOptions<'_> {
    fn default() -> Self {
        Self {
            mode: Mode::Fast,
            zstd_level: 3,
            base: None,
            dictionary: None,
        }
    }
}

/// How many pages of each class a snapshot holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageCounts {
    /// All zero.
    pub zero: u64,
    /// One word repeated.
    pub fill: u64,
    /// Unchanged since the base.
    pub same: u64,
    /// Equal to an earlier page.
    pub dup: u64,
    /// Stored (compressed or not).
    pub data: u64,
    /// Stored as XOR with the base.
    pub xor: u64,
}

/// What [`encode`] wrote.
#[derive(Debug, Clone, Copy)]
pub struct EncodeSummary {
    /// The snapshot's id: its total checksum, what an incremental snapshot
    /// names as its base.
    pub id: u64,
    /// Bytes of memory encoded.
    pub input_bytes: u64,
    /// Bytes written.
    pub output_bytes: u64,
    /// Pages per class.
    pub pages: PageCounts,
}

/// Counts and hashes what goes through it.
struct Counted<W> {
    inner: W,
    written: u64,
    hash: Xxh3,
}

impl<W: Write> Counted<W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.hash.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Encodes `memories` (each a whole number of pages) and `globals` to `out`.
pub fn encode<W: Write>(
    out: W,
    memories: &[&[u8]],
    globals: &[Global],
    options: &EncodeOptions<'_>,
) -> io::Result<EncodeSummary> {
    encode_inner(out, memories, globals, options, None)
}

/// [`encode`], also listing in `changed` the pages (memory, page) that
/// differ from the base (every page, without one): what a caller keeping
/// a copy of the memory as the next base must copy.
pub fn encode_tracked<W: Write>(
    out: W,
    memories: &[&[u8]],
    globals: &[Global],
    options: &EncodeOptions<'_>,
    changed: &mut Vec<(u32, u64)>,
) -> io::Result<EncodeSummary> {
    encode_inner(out, memories, globals, options, Some(changed))
}

fn encode_inner<W: Write>(
    out: W,
    memories: &[&[u8]],
    globals: &[Global],
    options: &EncodeOptions<'_>,
    mut changed: Option<&mut Vec<(u32, u64)>>,
) -> io::Result<EncodeSummary> {
    if memories.len() > MAX_MEMORIES || globals.len() > MAX_GLOBALS {
        return Err(invalid(format!(
            "at most {MAX_MEMORIES} memories and {MAX_GLOBALS} globals"
        )));
    }
    if let Some(m) = memories.iter().find(|m| !m.len().is_multiple_of(PAGE_SIZE)) {
        return Err(invalid(format!(
            "a memory of {} bytes is not a whole number of pages",
            m.len()
        )));
    }
    if options.dictionary.is_some() && options.mode != Mode::Dense {
        return Err(invalid("a dictionary needs dense mode".into()));
    }
    let mut out = Counted {
        inner: out,
        written: 0,
        hash: Xxh3::new(),
    };

    let mut prelude = Vec::new();
    prelude.extend_from_slice(MAGIC);
    prelude.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    prelude.push(match options.mode {
        Mode::Fast => 0,
        Mode::Dense => 1,
    });
    prelude.push(PAGE_SHIFT);
    prelude.extend_from_slice(&u32::from(options.base.is_some()).to_le_bytes());
    prelude.extend_from_slice(&options.dictionary.map_or(0, Dictionary::id).to_le_bytes());
    prelude.extend_from_slice(&options.base.map_or(0, |b| b.id).to_le_bytes());
    prelude.extend_from_slice(&(memories.len() as u32).to_le_bytes());
    prelude.extend_from_slice(&(globals.len() as u32).to_le_bytes());
    for m in memories {
        prelude.extend_from_slice(&(m.len() as u64).to_le_bytes());
    }
    for g in globals {
        prelude.push(g.kind as u8);
        prelude.extend_from_slice(&g.bits);
    }
    let sum = checksum(&prelude);
    prelude.extend_from_slice(&sum.to_le_bytes());
    out.put(&prelude)?;

    let plan = frame_plan(memories);
    let mut seen: HashMap<u64, (u32, u64)> = HashMap::new();
    let mut index = Vec::with_capacity(plan.len());
    let mut pages = PageCounts::default();
    let compressor = Compressor::new(options);
    for batch in plan.chunks(BATCH_FRAMES) {
        // 1. Classify every page of the batch, and hash those with data.
        let prelims: Vec<Vec<(Prelim, u64)>> = batch
            .par_iter()
            .map(|f| {
                (0..f.pages)
                    .map(|i| {
                        let page = f.first + i as u64;
                        let bytes = page_of(memories[f.memory as usize], page);
                        let base = options
                            .base
                            .and_then(|b| b.memories.get(f.memory as usize))
                            .and_then(|m| page_in(m, page));
                        let prelim = classify(bytes, base);
                        let hash = if prelim == Prelim::Other {
                            xxhash_rust::xxh3::xxh3_64(bytes)
                        } else {
                            0
                        };
                        (prelim, hash)
                    })
                    .collect()
            })
            .collect();
        // 2. Duplicates of earlier pages, in page order (sequential, cheap).
        let classes: Vec<Vec<Class>> = batch
            .iter()
            .zip(prelims)
            .map(|(f, prelims)| {
                prelims
                    .into_iter()
                    .enumerate()
                    .map(|(i, (prelim, hash))| {
                        let page = f.first + i as u64;
                        let class = match prelim {
                            Prelim::Zero => Class::Zero,
                            Prelim::Fill(w) => Class::Fill(w),
                            Prelim::Same => Class::Same,
                            Prelim::Other => {
                                let bytes = page_of(memories[f.memory as usize], page);
                                match seen.get(&hash) {
                                    Some(&(m, p)) if page_of(memories[m as usize], p) == bytes => {
                                        Class::Dup { memory: m, page: p }
                                    }
                                    _ => {
                                        seen.entry(hash).or_insert((f.memory, page));
                                        let has_base = options
                                            .base
                                            .and_then(|b| b.memories.get(f.memory as usize))
                                            .and_then(|m| page_in(m, page))
                                            .is_some();
                                        if has_base { Class::Xor } else { Class::Data }
                                    }
                                }
                            }
                        };
                        count(&mut pages, class);
                        if let Some(changed) = changed.as_deref_mut()
                            && class != Class::Same
                        {
                            changed.push((f.memory, page));
                        }
                        class
                    })
                    .collect()
            })
            .collect();
        // 3. Build and compress the frames in parallel, write them in order.
        let frames: Vec<io::Result<Vec<u8>>> = batch
            .par_iter()
            .zip(classes.par_iter())
            .map(|(f, classes)| build_frame(f, classes, memories, options.base, &compressor))
            .collect();
        for (f, frame) in batch.iter().zip(frames) {
            let frame = frame?;
            index.push((out.written, *f));
            out.put(&frame)?;
        }
    }

    let index_offset = out.written;
    let mut tail = Vec::with_capacity(8 + index.len() * 24 + 8);
    tail.extend_from_slice(INDEX_MAGIC);
    tail.extend_from_slice(&(index.len() as u32).to_le_bytes());
    for (offset, f) in &index {
        tail.extend_from_slice(&offset.to_le_bytes());
        tail.extend_from_slice(&f.memory.to_le_bytes());
        tail.extend_from_slice(&f.first.to_le_bytes());
        tail.extend_from_slice(&(f.pages as u32).to_le_bytes());
    }
    let sum = checksum(&tail);
    tail.extend_from_slice(&sum.to_le_bytes());
    tail.extend_from_slice(&index_offset.to_le_bytes());
    out.put(&tail)?;
    let id = out.hash.digest();
    let mut trailer = Vec::with_capacity(16);
    trailer.extend_from_slice(&id.to_le_bytes());
    trailer.extend_from_slice(END_MAGIC);
    out.inner.write_all(&trailer)?;
    out.inner.flush()?;
    Ok(EncodeSummary {
        id,
        input_bytes: memories.iter().map(|m| m.len() as u64).sum(),
        output_bytes: out.written + trailer.len() as u64,
        pages,
    })
}

/// One frame's place: which memory, which pages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FramePlace {
    pub(crate) memory: u32,
    pub(crate) first: u64,
    pub(crate) pages: usize,
}

fn frame_plan(memories: &[&[u8]]) -> Vec<FramePlace> {
    let lengths: Vec<u64> = memories.iter().map(|m| m.len() as u64).collect();
    frame_plan_of(&lengths)
}

/// The frames of memories of these lengths, in order: what the encoder
/// writes and the decoder expects.
pub(crate) fn frame_plan_of(lengths: &[u64]) -> Vec<FramePlace> {
    let mut plan = Vec::new();
    for (m, len) in lengths.iter().enumerate() {
        let pages = len / PAGE_SIZE as u64;
        let mut first = 0;
        while first < pages {
            let n = (pages - first).min(MAX_FRAME_PAGES as u64);
            plan.push(FramePlace {
                memory: m as u32,
                first,
                pages: n as usize,
            });
            first += n;
        }
    }
    plan
}

fn page_of(memory: &[u8], page: u64) -> &[u8] {
    let start = page as usize * PAGE_SIZE;
    &memory[start..start + PAGE_SIZE]
}

fn page_in(memory: &[u8], page: u64) -> Option<&[u8]> {
    let start = (page as usize).checked_mul(PAGE_SIZE)?;
    memory.get(start..start + PAGE_SIZE)
}

fn count(pages: &mut PageCounts, class: Class) {
    match class {
        Class::Zero => pages.zero += 1,
        Class::Fill(_) => pages.fill += 1,
        Class::Same => pages.same += 1,
        Class::Dup { .. } => pages.dup += 1,
        Class::Data => pages.data += 1,
        Class::Xor => pages.xor += 1,
    }
}

/// Compresses one frame's block the way the options say.
struct Compressor {
    mode: Mode,
    level: i32,
    /// The dictionary digested once for the whole snapshot: preparing it
    /// costs more than compressing a frame with it.
    dictionary: Option<zstd::dict::EncoderDictionary<'static>>,
}

impl Compressor {
    fn new(options: &EncodeOptions<'_>) -> Self {
        Self {
            mode: options.mode,
            level: options.zstd_level,
            dictionary: options
                .dictionary
                .map(|d| zstd::dict::EncoderDictionary::copy(d.bytes(), options.zstd_level)),
        }
    }

    /// Compresses `block` into `out` (cleared first); `Stored` means it did
    /// not pay, and the block is to be stored as it is (`out` unused).
    fn compress(&self, block: &[u8], out: &mut Vec<u8>) -> io::Result<Codec> {
        out.clear();
        let codec = match (self.mode, &self.dictionary) {
            (Mode::Fast, _) => {
                // Into a buffer the thread keeps: a fresh megabyte per frame
                // is a megabyte of page faults.
                out.resize(lz4_flex::block::get_maximum_output_size(block.len()), 0);
                let n = lz4_flex::block::compress_into(block, out)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                out.truncate(n);
                Codec::Lz4
            }
            (Mode::Dense, None) => {
                *out = zstd::bulk::compress(block, self.level)?;
                Codec::Zstd
            }
            (Mode::Dense, Some(dict)) => {
                let mut c = zstd::bulk::Compressor::with_prepared_dictionary(dict)?;
                *out = c.compress(block)?;
                Codec::ZstdDict
            }
        };
        if out.len() as f64 > block.len() as f64 * STORE_ABOVE {
            Ok(Codec::Stored)
        } else {
            Ok(codec)
        }
    }
}

thread_local! {
    /// Per-thread buffers of `build_frame`: the frame's pages before
    /// compression, and after.
    static SCRATCH: std::cell::RefCell<(Vec<u8>, Vec<u8>)> = const {
        std::cell::RefCell::new((Vec::new(), Vec::new()))
    };
}

fn build_frame(
    place: &FramePlace,
    classes: &[Class],
    memories: &[&[u8]],
    base: Option<Base<'_>>,
    compressor: &Compressor,
) -> io::Result<Vec<u8>> {
    SCRATCH.with_borrow_mut(|(block, packed)| {
        build_frame_with(place, classes, memories, base, compressor, block, packed)
    })
}

fn build_frame_with(
    place: &FramePlace,
    classes: &[Class],
    memories: &[&[u8]],
    base: Option<Base<'_>>,
    compressor: &Compressor,
    block: &mut Vec<u8>,
    packed: &mut Vec<u8>,
) -> io::Result<Vec<u8>> {
    let memory = memories[place.memory as usize];
    let mut table = Vec::with_capacity(classes.len() * 2);
    Class::write_table(classes, &mut table);
    block.clear();
    for (i, class) in classes.iter().enumerate() {
        let page = place.first + i as u64;
        match class {
            Class::Data => block.extend_from_slice(page_of(memory, page)),
            Class::Xor => {
                let old = base
                    .and_then(|b| b.memories.get(place.memory as usize))
                    .and_then(|m| page_in(m, page))
                    .ok_or_else(|| invalid("xor page without a base page".into()))?;
                block.extend(page_of(memory, page).iter().zip(old).map(|(a, b)| a ^ b));
            }
            _ => {}
        }
    }
    let (codec, payload): (Codec, &[u8]) = if block.is_empty() {
        (Codec::Stored, &[])
    } else {
        match compressor.compress(block, packed)? {
            Codec::Stored => (Codec::Stored, block.as_slice()),
            codec => (codec, packed.as_slice()),
        }
    };
    let table_len = table.len();
    let mut hash = Xxh3::new();
    hash.update(&table);
    hash.update(payload);
    let sum = hash.digest();
    let mut frame = Vec::with_capacity(crate::format::FRAME_HEADER_LEN + table_len + payload.len());
    frame.extend_from_slice(FRAME_MAGIC);
    frame.extend_from_slice(&place.memory.to_le_bytes());
    frame.extend_from_slice(&place.first.to_le_bytes());
    frame.extend_from_slice(&(place.pages as u32).to_le_bytes());
    frame.push(codec as u8);
    frame.extend_from_slice(&(table_len as u32).to_le_bytes());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&(block.len() as u32).to_le_bytes());
    frame.extend_from_slice(&sum.to_le_bytes());
    frame.extend_from_slice(&table);
    frame.extend_from_slice(payload);
    Ok(frame)
}
