//! What a page is, before deduplication: zero, one word repeated, the same
//! as the base's page, or something to store.

use crate::format::PAGE_SIZE;

/// A page's class as far as its own bytes (and the base's) tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prelim {
    Zero,
    Fill(u64),
    Same,
    Other,
}

/// Classifies one page. Against a base, equality comes first (a delta's
/// pages are mostly unchanged). The zero test reads the page as words,
/// OR-ing blocks of them so that it vectorizes: most of a heap is zero, and
/// this is the loop that sees every byte of a full snapshot.
pub(crate) fn classify(page: &[u8], base: Option<&[u8]>) -> Prelim {
    debug_assert_eq!(page.len(), PAGE_SIZE);
    // Unchanged first: in a delta most pages are, and then the copy the
    // caller keeps of the memory need not be touched for them.
    if base == Some(page) {
        return Prelim::Same;
    }
    let first = word(page, 0);
    if repeats(page, first) {
        return if first == 0 {
            Prelim::Zero
        } else {
            Prelim::Fill(first)
        };
    }
    Prelim::Other
}

fn word(page: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&page[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Whether the page is `w` repeated: XOR every word with it, OR the
/// results of a 64-byte block, stop at the first block that differs.
fn repeats(page: &[u8], w: u64) -> bool {
    page.chunks_exact(64).all(|block| {
        block.chunks_exact(8).fold(0u64, |acc, c| {
            acc | (u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ w)
        }) == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let zero = vec![0u8; PAGE_SIZE];
        assert_eq!(classify(&zero, None), Prelim::Zero);
        let fill: Vec<u8> = (0..PAGE_SIZE).map(|i| (i % 8) as u8 + 1).collect();
        assert!(matches!(classify(&fill, None), Prelim::Fill(_)));
        let mut other = zero.clone();
        other[PAGE_SIZE - 1] = 1;
        assert_eq!(classify(&other, None), Prelim::Other);
        assert_eq!(classify(&other, Some(&other.clone())), Prelim::Same);
        // Zero stays zero even against a different base: no payload either way.
        assert_eq!(classify(&zero, Some(&other)), Prelim::Zero);
    }
}
