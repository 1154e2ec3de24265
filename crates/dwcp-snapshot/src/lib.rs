//! The snapshot codec of DWCP: the linear memories and globals of an
//! instance, bytes in, bytes out. Nothing here knows about wasmtime or the
//! store; the runtime captures memories and hands them over.
//!
//! - [`encode`] reads memories in place and writes a snapshot: zero pages,
//!   pages of one repeated word, pages unchanged since a base snapshot and
//!   duplicates of earlier pages cost a class byte; the rest is XOR-ed with
//!   the base (incremental snapshots) and compressed a frame (1 MiB) at a
//!   time, with lz4 ([`Mode::Fast`]) or zstd ([`Mode::Dense`], with a
//!   [`Dictionary`] trained per app).
//! - [`decode_into`] writes a snapshot straight into the destination
//!   memories, frames in parallel; [`decode`] is the same into vectors, and
//!   [`PageReader`] reads one page by decoding one frame.
//! - Every length is checked before it is used and every part has a
//!   checksum: a damaged or hostile snapshot is refused with a
//!   [`DecodeError`], never a panic or an unbounded allocation.
//!
//! The format, and why it is the way it is: `docs/snapshot-format.md`.

mod classify;
mod decode;
mod dict;
mod encode;
mod format;

pub use decode::{
    BaseInfo, DecodeError, DecodeLimits, Dictionaries, MemorySink, PageReader, SnapshotInfo,
    decode, decode_into, no_dictionaries, snapshot_id,
};
pub use dict::{DICTIONARY_SIZE, Dictionary};
pub use encode::{Base, EncodeOptions, EncodeSummary, PageCounts, encode, encode_tracked};
pub use format::{FORMAT_VERSION, Global, GlobalKind, MAX_FRAME_PAGES, Mode, PAGE_SIZE};
