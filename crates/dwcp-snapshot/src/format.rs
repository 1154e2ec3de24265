//! The constants and small encodings of the format (docs/snapshot-format.md).

use crate::DecodeError;

/// Bytes per page: the unit of classification, deduplication and deltas.
pub const PAGE_SIZE: usize = 4096;
pub(crate) const PAGE_SHIFT: u8 = 12;
pub(crate) const MAGIC: &[u8; 8] = b"DWCPSNAP";
pub(crate) const END_MAGIC: &[u8; 8] = b"DWCPEND1";
pub(crate) const FRAME_MAGIC: &[u8; 4] = b"FRM1";
pub(crate) const INDEX_MAGIC: &[u8; 4] = b"IDX1";
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u16 = 2;
/// Pages per frame at most (1 MiB).
pub const MAX_FRAME_PAGES: usize = 256;
pub(crate) const MAX_MEMORIES: usize = 64;
pub(crate) const MAX_GLOBALS: usize = 65_536;
/// magic, memory, first page, page count, codec, class length, payload
/// length, decompressed length, checksum.
pub(crate) const FRAME_HEADER_LEN: usize = 4 + 4 + 8 + 4 + 1 + 4 + 4 + 4 + 8;
pub(crate) const TRAILER_LEN: usize = 8 + 8 + 8;
/// The longest class table entry: class byte and two 10-byte varints.
pub(crate) const MAX_CLASS_ENTRY: usize = 21;

/// How frames are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// lz4: fast both ways, for migration.
    Fast,
    /// zstd, with the app's dictionary when there is one: for the store.
    Dense,
}

/// What a frame's payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Stored = 0,
    Lz4 = 1,
    Zstd = 2,
    ZstdDict = 3,
}

impl Codec {
    pub(crate) fn from_byte(b: u8) -> Result<Self, DecodeError> {
        Ok(match b {
            0 => Codec::Stored,
            1 => Codec::Lz4,
            2 => Codec::Zstd,
            3 => Codec::ZstdDict,
            _ => return Err(DecodeError::Malformed(format!("unknown payload codec {b}"))),
        })
    }
}

/// The type of a global.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalKind {
    /// `i32`.
    I32 = 0,
    /// `i64`.
    I64 = 1,
    /// `f32`.
    F32 = 2,
    /// `f64`.
    F64 = 3,
    /// `v128`.
    V128 = 4,
}

/// A global's value: its kind and its bits, little-endian, zero-padded to 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Global {
    /// Its type.
    pub kind: GlobalKind,
    /// Its value's bits.
    pub bits: [u8; 16],
}

impl Global {
    pub(crate) fn kind_from_byte(b: u8) -> Result<GlobalKind, DecodeError> {
        Ok(match b {
            0 => GlobalKind::I32,
            1 => GlobalKind::I64,
            2 => GlobalKind::F32,
            3 => GlobalKind::F64,
            4 => GlobalKind::V128,
            _ => return Err(DecodeError::Malformed(format!("unknown global kind {b}"))),
        })
    }
}

/// A page's class (the table in docs/snapshot-format.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Zero,
    Fill(u64),
    Same,
    Dup { memory: u32, page: u64 },
    Data,
    Xor,
}

impl Class {
    /// Whether the page's bytes are in the payload.
    pub(crate) fn has_data(self) -> bool {
        matches!(self, Class::Data | Class::Xor)
    }

    pub(crate) fn write(self, out: &mut Vec<u8>) {
        match self {
            Class::Zero => out.push(0),
            Class::Fill(word) => {
                out.push(1);
                out.extend_from_slice(&word.to_le_bytes());
            }
            Class::Same => out.push(2),
            Class::Dup { memory, page } => {
                out.push(3);
                write_varint(out, u64::from(memory));
                write_varint(out, page);
            }
            Class::Data => out.push(4),
            Class::Xor => out.push(5),
        }
    }

    /// Writes a frame's class table: runs of `same` or `zero` pages as one
    /// entry (a delta of a large, mostly unchanged memory is mostly runs).
    pub(crate) fn write_table(classes: &[Class], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < classes.len() {
            let class = classes[i];
            let run = classes[i..].iter().take_while(|c| **c == class).count();
            match class {
                Class::Same if run > 1 => {
                    out.push(6);
                    write_varint(out, run as u64);
                }
                Class::Zero if run > 1 => {
                    out.push(7);
                    write_varint(out, run as u64);
                }
                _ => {
                    class.write(out);
                    i += 1;
                    continue;
                }
            }
            i += run;
        }
    }

    /// Reads one entry of a class table: a class and how many pages it
    /// covers (more than one for a run).
    pub(crate) fn read_run(cur: &mut Reader<'_>) -> Result<(Self, u64), DecodeError> {
        let run = |cur: &mut Reader<'_>, class| -> Result<(Self, u64), DecodeError> {
            match cur.varint()? {
                0 => Err(DecodeError::Malformed("empty run of pages".into())),
                n => Ok((class, n)),
            }
        };
        match cur.peek_u8()? {
            6 => {
                cur.u8()?;
                run(cur, Class::Same)
            }
            7 => {
                cur.u8()?;
                run(cur, Class::Zero)
            }
            _ => Ok((Self::read(cur)?, 1)),
        }
    }

    pub(crate) fn read(cur: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match cur.u8()? {
            0 => Class::Zero,
            1 => Class::Fill(cur.u64()?),
            2 => Class::Same,
            3 => {
                let memory = u32::try_from(cur.varint()?)
                    .map_err(|_| DecodeError::Malformed("dup memory out of range".into()))?;
                Class::Dup {
                    memory,
                    page: cur.varint()?,
                }
            }
            4 => Class::Data,
            5 => Class::Xor,
            c => return Err(DecodeError::Malformed(format!("unknown page class {c}"))),
        })
    }
}

pub(crate) fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Reads little-endian fields from a byte slice; running out is an error,
/// never a panic.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    /// The next byte, left unread.
    pub(crate) fn peek_u8(&self) -> Result<u8, DecodeError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(DecodeError::Truncated)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..10 {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            if i == 9 && bits > 1 {
                return Err(DecodeError::Malformed("varint overflows 64 bits".into()));
            }
            v |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Malformed("varint longer than 10 bytes".into()))
    }
}

/// The xxh3-64 checksum the format uses everywhere.
pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_overlong_ones_are_refused() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(Reader::new(&out).varint().unwrap(), v);
        }
        assert!(Reader::new(&[0xff; 11]).varint().is_err());
        assert!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
                .varint()
                .is_err()
        );
        assert!(Reader::new(&[0x80]).varint().is_err());
    }
}
