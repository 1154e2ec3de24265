//! Decoding: a snapshot → memories, every length checked before it is used.

use std::io::{self, Read};

use rayon::prelude::*;
use xxhash_rust::xxh3::Xxh3;

use zstd::dict::DecoderDictionary;

use crate::dict::Dictionary;
use crate::encode::FramePlace;
use crate::format::{
    Class, Codec, END_MAGIC, FORMAT_VERSION, FRAME_HEADER_LEN, FRAME_MAGIC, Global, INDEX_MAGIC,
    MAGIC, MAX_CLASS_ENTRY, MAX_FRAME_PAGES, MAX_GLOBALS, MAX_MEMORIES, Mode, PAGE_SHIFT,
    PAGE_SIZE, Reader, TRAILER_LEN, checksum,
};

/// Frames read before they are decoded together, in parallel.
const BATCH_FRAMES: usize = 32;

/// Why a snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// It ends too early.
    #[error("snapshot truncated")]
    Truncated,
    /// A field holds what no encoder writes.
    #[error("snapshot malformed: {0}")]
    Malformed(String),
    /// A checksum does not match: the bytes were damaged.
    #[error("snapshot damaged: the {0} checksum does not match")]
    Checksum(&'static str),
    /// It is larger than the caller allows.
    #[error("snapshot over a limit: {0}")]
    Limit(String),
    /// It is a delta of a base the caller did not give.
    #[error("snapshot needs its base: {0}")]
    NeedsBase(String),
    /// It was compressed with a dictionary the caller does not have.
    #[error("snapshot needs zstd dictionary {0:016x}")]
    NeedsDictionary(u64),
    /// The sink could not provide memory.
    #[error("cannot restore into memory: {0}")]
    Sink(String),
    /// Reading failed.
    #[error("cannot read the snapshot: {0}")]
    Io(#[from] io::Error),
}

/// What a decoder may be asked to allocate.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// The largest memory.
    pub max_memory_bytes: u64,
    /// All memories together.
    pub max_total_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_memory_bytes: 4 << 30,
            max_total_bytes: 16 << 30,
        }
    }
}

/// What the prelude says.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotInfo {
    /// lz4 or zstd.
    pub mode: Mode,
    /// The base's id, for an incremental snapshot.
    pub base_id: Option<u64>,
    /// The dictionary's id, if one was used.
    pub dictionary_id: Option<u64>,
    /// Each memory's length in bytes.
    pub memory_lengths: Vec<u64>,
    /// The globals.
    pub globals: Vec<Global>,
}

/// The memory an incremental snapshot is applied onto.
#[derive(Debug, Clone)]
pub struct BaseInfo {
    /// The base snapshot's id.
    pub id: u64,
    /// Its memories' lengths (the destination holds their contents).
    pub lengths: Vec<u64>,
}

/// Where decoded memories go: the instance's own memories, or vectors.
pub trait MemorySink {
    /// Memories of exactly these lengths to write into, and whether they
    /// are all zero (fresh; zero pages are then not written). For an
    /// incremental snapshot they must hold the base's contents.
    fn prepare(&mut self, lengths: &[u64]) -> Result<(Vec<&mut [u8]>, bool), String>;
}

/// Vectors as a sink: resized to the lengths, contents kept (a base).
impl MemorySink for Vec<Vec<u8>> {
    fn prepare(&mut self, lengths: &[u64]) -> Result<(Vec<&mut [u8]>, bool), String> {
        let size = |len: u64| usize::try_from(len).map_err(|_| "memory too large".to_string());
        let fresh = self.is_empty();
        if fresh {
            // `vec![0; n]` asks the allocator for zeroed memory, which the
            // kernel hands out lazily: pages the snapshot leaves zero are
            // never touched.
            for &len in lengths {
                self.push(vec![0u8; size(len)?]);
            }
        } else {
            self.resize_with(lengths.len(), Vec::new);
            for (m, &len) in self.iter_mut().zip(lengths) {
                m.resize(size(len)?, 0);
            }
        }
        Ok((self.iter_mut().map(Vec::as_mut_slice).collect(), fresh))
    }
}

/// The dictionary a snapshot names, digested once for all its frames.
fn prepared_dictionary(
    id: Option<u64>,
    dictionaries: Dictionaries<'_>,
) -> Result<Option<DecoderDictionary<'static>>, DecodeError> {
    let Some(id) = id else { return Ok(None) };
    let dict = dictionaries(id).ok_or(DecodeError::NeedsDictionary(id))?;
    if dict.id() != id {
        return Err(DecodeError::NeedsDictionary(id));
    }
    Ok(Some(DecoderDictionary::copy(dict.bytes())))
}

/// Finds dictionaries by id.
pub type Dictionaries<'a> = &'a dyn Fn(u64) -> Option<Dictionary>;

/// No dictionaries.
pub fn no_dictionaries(_: u64) -> Option<Dictionary> {
    None
}

/// A reader that hashes what it reads and counts it.
struct Hashing<R> {
    inner: R,
    hash: Xxh3,
    read: u64,
}

impl<R: Read> Hashing<R> {
    fn exact(&mut self, n: usize) -> Result<Vec<u8>, DecodeError> {
        let mut buf = vec![0u8; n];
        self.inner.read_exact(&mut buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                DecodeError::Truncated
            } else {
                DecodeError::Io(e)
            }
        })?;
        self.hash.update(&buf);
        self.read += n as u64;
        Ok(buf)
    }
}

/// The fixed part of a prelude.
struct PreludeHead {
    mode: Mode,
    base_id: Option<u64>,
    dictionary_id: Option<u64>,
    memories: usize,
    globals: usize,
}

fn parse_prelude(fixed: &[u8]) -> Result<PreludeHead, DecodeError> {
    let mut r = Reader::new(fixed);
    if r.bytes(8)? != MAGIC {
        return Err(DecodeError::Malformed(
            "not a DWCP snapshot (bad magic)".into(),
        ));
    }
    let version = r.u16()?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::Malformed(format!(
            "format version {version}; this build reads {FORMAT_VERSION}"
        )));
    }
    let mode = match r.u8()? {
        0 => Mode::Fast,
        1 => Mode::Dense,
        m => return Err(DecodeError::Malformed(format!("unknown mode {m}"))),
    };
    if r.u8()? != PAGE_SHIFT {
        return Err(DecodeError::Malformed("unsupported page size".into()));
    }
    let flags = r.u32()?;
    let dict = r.u64()?;
    let base = r.u64()?;
    let memories = r.u32()? as usize;
    let globals = r.u32()? as usize;
    if flags & !1 != 0 || (flags & 1 == 1) != (base != 0) {
        return Err(DecodeError::Malformed("bad flags".into()));
    }
    if memories > MAX_MEMORIES || globals > MAX_GLOBALS {
        return Err(DecodeError::Limit(format!(
            "{memories} memories and {globals} globals"
        )));
    }
    Ok(PreludeHead {
        mode,
        base_id: (base != 0).then_some(base),
        dictionary_id: (dict != 0).then_some(dict),
        memories,
        globals,
    })
}

/// The variable part of the prelude, checked against `limits`, with the
/// fixed part: everything the prelude says.
fn parse_prelude_rest(
    head: &PreludeHead,
    rest: &[u8],
    limits: &DecodeLimits,
) -> Result<SnapshotInfo, DecodeError> {
    let (memories, globals) = (head.memories, head.globals);
    let mut r = Reader::new(rest);
    let mut lengths = Vec::with_capacity(memories);
    let mut total = 0u64;
    for _ in 0..memories {
        let len = r.u64()?;
        if !len.is_multiple_of(PAGE_SIZE as u64) {
            return Err(DecodeError::Malformed(format!(
                "memory length {len} is not whole pages"
            )));
        }
        if len > limits.max_memory_bytes {
            return Err(DecodeError::Limit(format!(
                "a memory of {len} bytes (limit {})",
                limits.max_memory_bytes
            )));
        }
        total = total.saturating_add(len);
        lengths.push(len);
    }
    if total > limits.max_total_bytes {
        return Err(DecodeError::Limit(format!(
            "{total} bytes of memory (limit {})",
            limits.max_total_bytes
        )));
    }
    let mut out = Vec::with_capacity(globals);
    for _ in 0..globals {
        let kind = Global::kind_from_byte(r.u8()?)?;
        out.push(Global {
            kind,
            bits: r.array()?,
        });
    }
    Ok(SnapshotInfo {
        mode: head.mode,
        base_id: head.base_id,
        dictionary_id: head.dictionary_id,
        memory_lengths: lengths,
        globals: out,
    })
}

/// A frame read and checked, not decoded yet.
struct RawFrame {
    place: FramePlace,
    codec: Codec,
    classes: Vec<Class>,
    payload: Vec<u8>,
    raw_len: usize,
}

/// Decodes a snapshot from `input` into `sink`. For an incremental
/// snapshot, `base` names the base the sink's memories hold. Frames are
/// read a batch at a time and decoded in parallel straight into the sink,
/// so after an error the sink's memories hold part of the snapshot: throw
/// them away (restore the previous good snapshot into fresh memory).
pub fn decode_into<R: Read>(
    input: R,
    sink: &mut dyn MemorySink,
    base: Option<&BaseInfo>,
    dictionaries: Dictionaries<'_>,
    limits: &DecodeLimits,
) -> Result<SnapshotInfo, DecodeError> {
    let mut input = Hashing {
        inner: input,
        hash: Xxh3::new(),
        read: 0,
    };
    let fixed = input.exact(40)?;
    let head = parse_prelude(&fixed)?;
    let rest = input.exact(head.memories * 8 + head.globals * 17)?;
    let info = parse_prelude_rest(&head, &rest, limits)?;
    let (base_id, dictionary_id) = (head.base_id, head.dictionary_id);
    let lengths = info.memory_lengths.clone();
    let expected = [fixed, rest].concat();
    let sum = input.exact(8)?;
    if checksum(&expected).to_le_bytes() != sum[..] {
        return Err(DecodeError::Checksum("prelude"));
    }
    let base_lengths = match (base_id, base) {
        (None, _) => None,
        (Some(id), Some(b)) if b.id == id => Some(b.lengths.clone()),
        (Some(id), _) => {
            return Err(DecodeError::NeedsBase(format!(
                "it is a delta of snapshot {id:016x}"
            )));
        }
    };
    let dictionary = prepared_dictionary(dictionary_id, dictionaries)?;

    let (mut dest, zeroed) = sink.prepare(&lengths).map_err(DecodeError::Sink)?;
    if dest.len() != lengths.len() || dest.iter().zip(&lengths).any(|(d, &l)| d.len() as u64 != l) {
        return Err(DecodeError::Sink("memories of the wrong size".into()));
    }
    let ctx = FrameContext {
        base_lengths: base_lengths.as_deref(),
        lengths: &lengths,
        zeroed,
        dictionary: dictionary.as_ref(),
    };
    let plan = crate::encode::frame_plan_of(&lengths);
    let mut offsets = Vec::with_capacity(plan.len());
    for batch in plan.chunks(BATCH_FRAMES) {
        let mut frames = Vec::with_capacity(batch.len());
        for place in batch {
            offsets.push(input.read);
            frames.push(read_frame(&mut input, place, info.mode)?);
        }
        decode_batch(&mut dest, &frames, &ctx)?;
    }

    // The index must list exactly the frames read.
    let index_offset = input.read;
    let head = input.exact(8)?;
    let mut r = Reader::new(&head);
    if r.bytes(4)? != INDEX_MAGIC || r.u32()? as usize != plan.len() {
        return Err(DecodeError::Malformed("bad index".into()));
    }
    let entries = input.exact(plan.len() * 24)?;
    let mut r = Reader::new(&entries);
    for (place, offset) in plan.iter().zip(&offsets) {
        if r.u64()? != *offset
            || r.u32()? != place.memory
            || r.u64()? != place.first
            || r.u32()? as usize != place.pages
        {
            return Err(DecodeError::Malformed(
                "the index does not match the frames".into(),
            ));
        }
    }
    let sum = input.exact(8)?;
    if checksum(&[head, entries].concat()).to_le_bytes() != sum[..] {
        return Err(DecodeError::Checksum("index"));
    }
    let stored_offset = input.exact(8)?;
    if stored_offset != index_offset.to_le_bytes() {
        return Err(DecodeError::Malformed("bad index offset".into()));
    }
    let total = input.hash.digest();
    let mut tail = [0u8; 16];
    input
        .inner
        .read_exact(&mut tail)
        .map_err(|_| DecodeError::Truncated)?;
    if tail[..8] != total.to_le_bytes() {
        return Err(DecodeError::Checksum("total"));
    }
    if &tail[8..] != END_MAGIC {
        return Err(DecodeError::Malformed("bad end magic".into()));
    }
    Ok(info)
}

fn read_frame<R: Read>(
    input: &mut Hashing<R>,
    place: &FramePlace,
    mode: Mode,
) -> Result<RawFrame, DecodeError> {
    let head = input.exact(FRAME_HEADER_LEN)?;
    let mut r = Reader::new(&head);
    if r.bytes(4)? != FRAME_MAGIC {
        return Err(DecodeError::Malformed("bad frame magic".into()));
    }
    let (memory, first, pages) = (r.u32()?, r.u64()?, r.u32()? as usize);
    if memory != place.memory || first != place.first || pages != place.pages {
        return Err(DecodeError::Malformed(format!(
            "frame out of order: memory {memory} page {first} where memory {} page {} was due",
            place.memory, place.first
        )));
    }
    let codec = Codec::from_byte(r.u8()?)?;
    let fits = match mode {
        Mode::Fast => matches!(codec, Codec::Stored | Codec::Lz4),
        Mode::Dense => codec != Codec::Lz4,
    };
    if !fits {
        return Err(DecodeError::Malformed(format!(
            "a {codec:?} frame in a {mode:?} snapshot"
        )));
    }
    let table_len = r.u32()? as usize;
    let payload_len = r.u32()? as usize;
    let raw_len = r.u32()? as usize;
    let sum = r.u64()?;
    let max_raw = pages * PAGE_SIZE;
    if table_len > pages * MAX_CLASS_ENTRY
        || raw_len > max_raw
        || !raw_len.is_multiple_of(PAGE_SIZE)
        || payload_len > max_raw + max_raw / 8 + 1024
    {
        return Err(DecodeError::Malformed("frame lengths out of bounds".into()));
    }
    let body = input.exact(table_len + payload_len)?;
    if checksum(&body) != sum {
        return Err(DecodeError::Checksum("frame"));
    }
    let (table, payload) = body.split_at(table_len);
    let mut r = Reader::new(table);
    let mut classes = Vec::with_capacity(pages);
    while classes.len() < pages {
        let (class, n) = Class::read_run(&mut r)?;
        if n > (pages - classes.len()) as u64 {
            return Err(DecodeError::Malformed(
                "a run of pages past the frame's end".into(),
            ));
        }
        classes.extend(std::iter::repeat_n(class, n as usize));
    }
    if !r.is_empty() {
        return Err(DecodeError::Malformed(
            "class table longer than its pages".into(),
        ));
    }
    if classes.iter().filter(|c| c.has_data()).count() * PAGE_SIZE != raw_len {
        return Err(DecodeError::Malformed(
            "payload size does not match the classes".into(),
        ));
    }
    Ok(RawFrame {
        place: *place,
        codec,
        classes,
        payload: payload.to_vec(),
        raw_len,
    })
}

struct FrameContext<'a> {
    base_lengths: Option<&'a [u64]>,
    lengths: &'a [u64],
    zeroed: bool,
    dictionary: Option<&'a DecoderDictionary<'static>>,
}

/// Decompresses a frame's payload into exactly `raw_len` bytes.
pub(crate) fn unpack(
    codec: Codec,
    payload: &[u8],
    raw_len: usize,
    dictionary: Option<&DecoderDictionary<'static>>,
) -> Result<Vec<u8>, DecodeError> {
    let bad = |what: &str| DecodeError::Malformed(format!("frame payload: {what}"));
    let block = match codec {
        Codec::Stored => payload.to_vec(),
        Codec::Lz4 => {
            let mut out = vec![0u8; raw_len];
            let n = lz4_flex::block::decompress_into(payload, &mut out)
                .map_err(|e| bad(&e.to_string()))?;
            out.truncate(n);
            out
        }
        Codec::Zstd | Codec::ZstdDict => {
            let mut d = match (codec, dictionary) {
                (Codec::ZstdDict, Some(dict)) => {
                    zstd::bulk::Decompressor::with_prepared_dictionary(dict)?
                }
                (Codec::ZstdDict, None) => {
                    return Err(DecodeError::Malformed(
                        "a frame uses a dictionary the prelude does not name".into(),
                    ));
                }
                _ => zstd::bulk::Decompressor::new()?,
            };
            let mut out = Vec::with_capacity(raw_len);
            d.decompress_to_buffer(payload, &mut out)
                .map_err(|e| bad(&e.to_string()))?;
            out
        }
    };
    if block.len() != raw_len {
        return Err(bad("wrong decompressed size"));
    }
    Ok(block)
}

fn decode_batch(
    dest: &mut [&mut [u8]],
    frames: &[RawFrame],
    ctx: &FrameContext<'_>,
) -> Result<(), DecodeError> {
    // Every frame's region of the destination, borrowed apart.
    {
        let mut regions: Vec<&mut [u8]> = Vec::with_capacity(frames.len());
        // Per memory: what is left of it after the frames taken so far,
        // and where that rest starts. Frames come in page order.
        let mut rests: Vec<(usize, &mut [u8])> = dest.iter_mut().map(|m| (0, &mut **m)).collect();
        for f in frames {
            let (offset, rest) = &mut rests[f.place.memory as usize];
            let start = f.place.first as usize * PAGE_SIZE - *offset;
            let len = f.place.pages * PAGE_SIZE;
            let (_, from) = std::mem::take(rest).split_at_mut(start);
            let (region, after) = from.split_at_mut(len);
            regions.push(region);
            *rest = after;
            *offset += start + len;
        }
        regions
            .par_iter_mut()
            .zip(frames.par_iter())
            .try_for_each(|(region, f)| decode_frame(region, f, ctx))?;
    }
    // Duplicates point strictly earlier: copy them in page order.
    for f in frames {
        for (i, class) in f.classes.iter().enumerate() {
            if let Class::Dup { memory, page } = *class {
                let here = (f.place.memory, f.place.first + i as u64);
                copy_page(dest, (memory, page), here, ctx.lengths)?;
            }
        }
    }
    Ok(())
}

fn decode_frame(
    region: &mut [u8],
    f: &RawFrame,
    ctx: &FrameContext<'_>,
) -> Result<(), DecodeError> {
    let block = unpack(f.codec, &f.payload, f.raw_len, ctx.dictionary)?;
    let mut data = block.chunks_exact(PAGE_SIZE);
    let base_len = ctx
        .base_lengths
        .map(|b| b.get(f.place.memory as usize).copied().unwrap_or(0));
    for (i, (class, page)) in f
        .classes
        .iter()
        .zip(region.chunks_exact_mut(PAGE_SIZE))
        .enumerate()
    {
        let index = f.place.first + i as u64;
        let in_base = || match base_len {
            Some(len) if (index + 1) * PAGE_SIZE as u64 <= len => Ok(()),
            Some(_) => Err(DecodeError::Malformed(
                "a delta page beyond its base".into(),
            )),
            None => Err(DecodeError::NeedsBase(
                "a delta page in a full snapshot".into(),
            )),
        };
        match *class {
            Class::Zero => {
                if !ctx.zeroed {
                    page.fill(0);
                }
            }
            Class::Fill(word) => {
                for w in page.chunks_exact_mut(8) {
                    w.copy_from_slice(&word.to_le_bytes());
                }
            }
            Class::Same => in_base()?,
            Class::Dup { .. } => {}
            Class::Data => page.copy_from_slice(data.next().ok_or(DecodeError::Truncated)?),
            Class::Xor => {
                in_base()?;
                let delta = data.next().ok_or(DecodeError::Truncated)?;
                for (b, d) in page.iter_mut().zip(delta) {
                    *b ^= d;
                }
            }
        }
    }
    Ok(())
}

fn copy_page(
    dest: &mut [&mut [u8]],
    from: (u32, u64),
    to: (u32, u64),
    lengths: &[u64],
) -> Result<(), DecodeError> {
    if from >= to
        || from.0 as usize >= lengths.len()
        || from.1 >= lengths[from.0 as usize] / PAGE_SIZE as u64
    {
        return Err(DecodeError::Malformed(
            "a duplicate page that does not point to an earlier page".into(),
        ));
    }
    let (fm, fp) = (from.0 as usize, from.1 as usize * PAGE_SIZE);
    let (tm, tp) = (to.0 as usize, to.1 as usize * PAGE_SIZE);
    if fm == tm {
        dest[fm].copy_within(fp..fp + PAGE_SIZE, tp);
    } else {
        let (low, high) = dest.split_at_mut(tm);
        high[0][tp..tp + PAGE_SIZE].copy_from_slice(&low[fm][fp..fp + PAGE_SIZE]);
    }
    Ok(())
}

/// Decodes a whole snapshot held in memory: onto `base` (its id and
/// memories) for an incremental one, into fresh memories otherwise.
pub fn decode(
    bytes: &[u8],
    base: Option<(u64, Vec<Vec<u8>>)>,
    dictionaries: Dictionaries<'_>,
    limits: &DecodeLimits,
) -> Result<(SnapshotInfo, Vec<Vec<u8>>), DecodeError> {
    let (info, mut memories) = match base {
        Some((id, memories)) => (
            Some(BaseInfo {
                id,
                lengths: memories.iter().map(|m| m.len() as u64).collect(),
            }),
            memories,
        ),
        None => (None, Vec::new()),
    };
    let mut input = bytes;
    let snapshot = decode_into(
        &mut input,
        &mut memories,
        info.as_ref(),
        dictionaries,
        limits,
    )?;
    if !input.is_empty() {
        return Err(DecodeError::Malformed("bytes after the end".into()));
    }
    Ok((snapshot, memories))
}

/// Reads single pages out of a snapshot held in memory, decoding only the
/// frame that holds each.
pub struct PageReader<'a> {
    bytes: &'a [u8],
    index: Vec<(u64, FramePlace)>,
    dictionary: Option<DecoderDictionary<'static>>,
    info: SnapshotInfo,
}

impl<'a> PageReader<'a> {
    /// Checks the whole snapshot's checksum and reads its index.
    pub fn open(
        bytes: &'a [u8],
        dictionaries: Dictionaries<'_>,
        limits: &DecodeLimits,
    ) -> Result<Self, DecodeError> {
        if bytes.len() < 48 + TRAILER_LEN {
            return Err(DecodeError::Truncated);
        }
        let (body, trailer) = bytes.split_at(bytes.len() - 16);
        if &trailer[8..] != END_MAGIC {
            return Err(DecodeError::Malformed("bad end magic".into()));
        }
        if xxhash_rust::xxh3::xxh3_64(body).to_le_bytes() != trailer[..8] {
            return Err(DecodeError::Checksum("total"));
        }
        let head = parse_prelude(&bytes[..40])?;
        let rest = bytes
            .get(40..40 + head.memories * 8 + head.globals * 17)
            .ok_or(DecodeError::Truncated)?;
        let info = parse_prelude_rest(&head, rest, limits)?;
        let prelude_len = 40 + rest.len();
        let sum = bytes
            .get(prelude_len..prelude_len + 8)
            .ok_or(DecodeError::Truncated)?;
        if checksum(&bytes[..prelude_len]).to_le_bytes() != sum[..] {
            return Err(DecodeError::Checksum("prelude"));
        }
        let lengths = info.memory_lengths.clone();
        let mut r = Reader::new(&body[body.len() - 8..]);
        let index_offset = usize::try_from(r.u64()?).map_err(|_| DecodeError::Truncated)?;
        let index = body
            .get(index_offset..body.len() - 8)
            .ok_or(DecodeError::Truncated)?;
        let plan = crate::encode::frame_plan_of(&lengths);
        if index.len() != 8 + plan.len() * 24 + 8 {
            return Err(DecodeError::Malformed("bad index length".into()));
        }
        let (entries, sum) = index.split_at(index.len() - 8);
        if checksum(entries).to_le_bytes() != sum[..] {
            return Err(DecodeError::Checksum("index"));
        }
        let mut r = Reader::new(entries);
        if r.bytes(4)? != INDEX_MAGIC || r.u32()? as usize != plan.len() {
            return Err(DecodeError::Malformed("bad index".into()));
        }
        let mut out = Vec::with_capacity(plan.len());
        for place in &plan {
            let offset = r.u64()?;
            if r.u32()? != place.memory
                || r.u64()? != place.first
                || r.u32()? as usize != place.pages
            {
                return Err(DecodeError::Malformed(
                    "the index does not match the memories".into(),
                ));
            }
            out.push((offset, *place));
        }
        let dictionary = prepared_dictionary(info.dictionary_id, dictionaries)?;
        Ok(Self {
            bytes,
            index: out,
            dictionary,
            info,
        })
    }

    /// What the prelude says.
    pub fn info(&self) -> &SnapshotInfo {
        &self.info
    }

    /// The bytes of one page; `base` (the memories of the snapshot that
    /// `info().base_id` names) is needed for pages stored as deltas.
    pub fn page(
        &self,
        memory: u32,
        page: u64,
        base: Option<&[&[u8]]>,
    ) -> Result<Vec<u8>, DecodeError> {
        self.page_at_depth(memory, page, base, 0)
    }

    fn page_at_depth(
        &self,
        memory: u32,
        page: u64,
        base: Option<&[&[u8]]>,
        depth: u32,
    ) -> Result<Vec<u8>, DecodeError> {
        let at = self
            .index
            .partition_point(|(_, p)| (p.memory, p.first + p.pages as u64) <= (memory, page));
        let (offset, place) = *self
            .index
            .get(at)
            .filter(|(_, p)| p.memory == memory && p.first <= page)
            .ok_or_else(|| DecodeError::Limit(format!("no page {page} in memory {memory}")))?;
        let offset = usize::try_from(offset).map_err(|_| DecodeError::Truncated)?;
        let mut input = Hashing {
            inner: self.bytes.get(offset..).ok_or(DecodeError::Truncated)?,
            hash: Xxh3::new(),
            read: 0,
        };
        let frame = read_frame(&mut input, &place, self.info.mode)?;
        let block = unpack(
            frame.codec,
            &frame.payload,
            frame.raw_len,
            self.dictionary.as_ref(),
        )?;
        let i = (page - place.first) as usize;
        let data_index = frame.classes[..i].iter().filter(|c| c.has_data()).count();
        let data = || &block[data_index * PAGE_SIZE..(data_index + 1) * PAGE_SIZE];
        let base_page = || {
            base.and_then(|b| b.get(memory as usize))
                .and_then(|m| m.get(page as usize * PAGE_SIZE..(page as usize + 1) * PAGE_SIZE))
                .ok_or_else(|| DecodeError::NeedsBase("a delta page".into()))
        };
        Ok(match frame.classes[i] {
            Class::Zero => vec![0; PAGE_SIZE],
            Class::Fill(w) => w.to_le_bytes().repeat(PAGE_SIZE / 8),
            Class::Same => base_page()?.to_vec(),
            Class::Data => data().to_vec(),
            Class::Xor => base_page()?
                .iter()
                .zip(data())
                .map(|(a, b)| a ^ b)
                .collect(),
            Class::Dup { memory: m, page: p } => {
                if (m, p) >= (memory, page) || depth > 4 {
                    return Err(DecodeError::Malformed("bad duplicate reference".into()));
                }
                self.page_at_depth(m, p, base, depth + 1)?
            }
        })
    }
}

/// Kept for the frame reader's bounds: MAX_FRAME_PAGES pages at most.
const _: () = assert!(MAX_FRAME_PAGES * MAX_CLASS_ENTRY < u32::MAX as usize);

/// The id of an encoded snapshot ([`crate::EncodeSummary::id`]), read from
/// its trailer: what a delta of it names as its base. Only the trailer is
/// looked at; [`decode_into`] checks that it matches the contents.
pub fn snapshot_id(snapshot: &[u8]) -> Option<u64> {
    let trailer = snapshot.len().checked_sub(16).map(|at| &snapshot[at..])?;
    if &trailer[8..] != crate::format::END_MAGIC {
        return None;
    }
    Some(u64::from_le_bytes(trailer[..8].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_references_out_of_range_are_refused_not_panicked_on() {
        let mut a = vec![0u8; 2 * PAGE_SIZE];
        let mut b = vec![0u8; PAGE_SIZE];
        let mut dest: Vec<&mut [u8]> = vec![&mut a, &mut b];
        let lengths = [2 * PAGE_SIZE as u64, PAGE_SIZE as u64];
        for from in [(0, u64::MAX), (0, 2), (5, 0), (1, 0)] {
            assert!(
                copy_page(&mut dest, from, (1, 0), &lengths).is_err(),
                "{from:?}"
            );
        }
        assert!(copy_page(&mut dest, (0, 1), (1, 0), &lengths).is_ok());
    }
}
