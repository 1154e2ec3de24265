//! The trained model and its file format (`model/ask.model`, built by
//! `cargo xtask ask-model` and committed; a test rebuilds it and checks that
//! the bytes are the same).
//!
//! Layout, little-endian: the magic `DWCPASK` and a format byte; the none
//! threshold (f32); the vocabulary (strings); the classifier (class names,
//! feature keys u64, weights f32 row by row); the tagger (labels, feature
//! keys, offsets u32, entries u8 label + f32 weight). A string is a u32 length
//! and UTF-8 bytes; a list is a u32 count and its items.

use crate::classifier::Classifier;
use crate::tagger::Tagger;

const MAGIC: &[u8; 8] = b"DWCPASK\x01";

/// Everything the engine needs, trained.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Below this probability the best intent is not trusted: `none`.
    pub none_threshold: f32,
    /// The phrasings' own words (lowercased, sorted).
    pub vocabulary: Vec<String>,
    /// Sentence → intent.
    pub classifier: Classifier,
    /// Word → slot.
    pub tagger: Tagger,
}

/// A model file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("the ask model is damaged or of another version: {0} (rebuild it: cargo xtask ask-model)")]
pub struct ModelError(&'static str);

impl Model {
    /// The model in its file format.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.none_threshold.to_le_bytes());
        strings(&mut out, &self.vocabulary);
        let c = &self.classifier;
        strings(&mut out, &c.classes);
        sparse(&mut out, &c.keys, &c.offsets, &c.entries);
        let t = &self.tagger;
        strings(&mut out, &t.labels);
        sparse(&mut out, &t.keys, &t.offsets, &t.entries);
        out
    }

    /// Reads a model file; refuses one that is cut short, of another
    /// format, or inconsistent.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(8)? != MAGIC {
            return Err(ModelError("not an ask model of this format"));
        }
        let none_threshold = r.f32()?;
        let vocabulary = r.strings()?;
        let classes = r.strings()?;
        let (keys, offsets, entries) = r.sparse(classes.len())?;
        let labels = r.strings()?;
        let (tag_keys, tag_offsets, tag_entries) = r.sparse(labels.len())?;
        if r.at != bytes.len() {
            return Err(ModelError("trailing bytes"));
        }
        Ok(Model {
            none_threshold,
            vocabulary,
            classifier: Classifier {
                classes,
                keys,
                offsets,
                entries,
            },
            tagger: Tagger {
                labels,
                keys: tag_keys,
                offsets: tag_offsets,
                entries: tag_entries,
            },
        })
    }
}

/// Sorted keys, offsets and `(index, weight)` entries.
fn sparse(out: &mut Vec<u8>, keys: &[u64], offsets: &[u32], entries: &[(u8, f32)]) {
    u32s(out, &[keys.len() as u32]);
    keys.iter()
        .for_each(|k| out.extend_from_slice(&k.to_le_bytes()));
    u32s(out, offsets);
    for (index, weight) in entries {
        out.push(*index);
        out.extend_from_slice(&weight.to_le_bytes());
    }
}

fn u32s(out: &mut Vec<u8>, values: &[u32]) {
    values
        .iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
}

fn strings(out: &mut Vec<u8>, values: &[String]) {
    u32s(out, &[values.len() as u32]);
    for v in values {
        u32s(out, &[v.len() as u32]);
        out.extend_from_slice(v.as_bytes());
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ModelError> {
        let end = self.at.checked_add(n).ok_or(ModelError("size"))?;
        let out = self
            .bytes
            .get(self.at..end)
            .ok_or(ModelError("cut short"))?;
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, ModelError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f32(&mut self) -> Result<f32, ModelError> {
        Ok(f32::from_bits(self.u32()?))
    }

    fn u32s(&mut self, n: usize) -> Result<Vec<u32>, ModelError> {
        self.check(n, 4)?;
        (0..n).map(|_| self.u32()).collect()
    }

    fn u64s(&mut self, n: usize) -> Result<Vec<u64>, ModelError> {
        self.check(n, 8)?;
        (0..n)
            .map(|_| {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Ok(u64::from_le_bytes(a))
            })
            .collect()
    }

    fn strings(&mut self) -> Result<Vec<String>, ModelError> {
        let n = self.u32()? as usize;
        self.check(n, 4)?;
        (0..n)
            .map(|_| {
                let len = self.u32()? as usize;
                let b = self.take(len)?;
                String::from_utf8(b.to_vec()).map_err(|_| ModelError("a string is not UTF-8"))
            })
            .collect()
    }

    /// Keys, offsets and entries whose indices are below `width`.
    #[allow(clippy::type_complexity)]
    fn sparse(&mut self, width: usize) -> Result<(Vec<u64>, Vec<u32>, Vec<(u8, f32)>), ModelError> {
        let n = self.u32()? as usize;
        let keys = self.u64s(n)?;
        let offsets = self.u32s(n.checked_add(1).ok_or(ModelError("size"))?)?;
        let total = *offsets.last().ok_or(ModelError("offsets"))? as usize;
        self.check(total, 5)?;
        let mut entries = Vec::with_capacity(total);
        for _ in 0..total {
            let index = self.take(1)?[0];
            if index as usize >= width {
                return Err(ModelError("a weight for an unknown class or label"));
            }
            entries.push((index, self.f32()?));
        }
        if offsets.windows(2).any(|w| w[0] > w[1]) || offsets[0] != 0 || !keys.is_sorted() {
            return Err(ModelError("unsorted keys or offsets"));
        }
        Ok((keys, offsets, entries))
    }

    /// Refuses a count the remaining bytes cannot hold, before allocating.
    fn check(&self, n: usize, each: usize) -> Result<(), ModelError> {
        let need = n.checked_mul(each).ok_or(ModelError("size"))?;
        if need > self.bytes.len() - self.at {
            return Err(ModelError("cut short"));
        }
        Ok(())
    }
}
