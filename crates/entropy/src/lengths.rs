//! Code lengths: length-limited Huffman lengths by package-merge, their validation, canonical codes.

use crate::histogram::Histogram;
use crate::{DecodeError, ALPHABET_SIZE, MAX_CODE_LEN};

/// The Kraft sum of a complete code, in units of 2^-[`MAX_CODE_LEN`].
pub(crate) const KRAFT_ONE: u32 = 1 << MAX_CODE_LEN;

/// A valid code-length table over the 256 byte symbols: the only thing a canonical Huffman code needs.
///
/// Length 0 means the symbol has no code. The lengths are at most [`MAX_CODE_LEN`] and form a complete prefix code
/// (Kraft sum exactly 1) when two or more symbols have a code; a lone symbol has length 1 (its code is a single 0
/// bit); an empty table (no symbol has a code) serves only the empty stream.
///
/// Canonical codes follow from the lengths alone, as in DEFLATE (RFC 1951, 3.2.2): shorter codes first, and
/// within one length, codes increase with the symbol value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CodeLengths {
    lengths: [u8; ALPHABET_SIZE],
}

impl CodeLengths {
    /// The optimal code for `histogram` with lengths at most [`MAX_CODE_LEN`] (see [`CodeLengths::limited`]).
    pub fn from_histogram(histogram: &Histogram) -> Self {
        Self::limited(histogram, MAX_CODE_LEN).expect("2^15 codes cover 256 symbols")
    }

    /// The code with lengths at most `max_len` that spends the fewest payload bits on `histogram`, by package-merge
    /// (Larmore and Hirschberg 1990); `None` if `max_len` is not in `1..=MAX_CODE_LEN` or `2^max_len` is less than
    /// the number of distinct symbols.
    ///
    /// Package-merge is exact: among all prefix codes within the limit it finds one of least total length, and when
    /// the limit does not bind its total equals Huffman's. (The usual heuristics, such as zlib's rebalancing of an
    /// overflowing Huffman tree or JPEG's Annex K.3 adjustment, only find some code within the limit.) For 256
    /// symbols and 15 levels it handles at most 15 lists of 511 items.
    ///
    /// Deterministic: symbols with equal counts are ordered by descending symbol value before merging, so among
    /// equal counts a lower symbol never gets a longer code than a higher one; and a package that weighs the same
    /// as a leaf is placed after it, which picks the flatter of the optimal codes (counts 7, 3, 2, 6, 4, 5 get
    /// lengths 2, 3, 3, 2, 3, 3, not 2, 4, 4, 2, 3, 2). A lone symbol gets length 1; an empty histogram gives the
    /// empty table.
    pub fn limited(histogram: &Histogram, max_len: u8) -> Option<Self> {
        if !(1..=MAX_CODE_LEN).contains(&max_len) {
            return None;
        }
        let mut leaves: Vec<(u64, u8)> = (0..=u8::MAX)
            .map(|symbol| (histogram.count(symbol), symbol))
            .filter(|&(count, _)| count > 0)
            .collect();
        let mut lengths = [0u8; ALPHABET_SIZE];
        match leaves.len() {
            0 => return Some(CodeLengths { lengths }),
            1 => {
                lengths[leaves[0].1 as usize] = 1;
                return Some(CodeLengths { lengths });
            }
            n if n > 1usize << max_len => return None,
            _ => {}
        }
        leaves.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        package_merge(&leaves, max_len, &mut lengths);
        Some(CodeLengths { lengths })
    }

    /// Checks a table: every length at most [`MAX_CODE_LEN`], and a complete prefix code (Kraft sum exactly 1) over
    /// two or more symbols, or a lone symbol of length 1, or no symbol at all.
    pub fn new(lengths: [u8; ALPHABET_SIZE]) -> Result<Self, DecodeError> {
        if let Some(symbol) = lengths.iter().position(|&length| length > MAX_CODE_LEN) {
            return Err(DecodeError::LengthTooLong {
                symbol: symbol as u8,
                length: lengths[symbol],
            });
        }
        let symbols = lengths.iter().filter(|&&length| length > 0).count();
        let kraft = kraft_sum(&lengths);
        match symbols {
            0 => {}
            1 if kraft == KRAFT_ONE / 2 => {}
            1 => return Err(DecodeError::Incomplete { kraft, symbols }),
            _ if kraft > KRAFT_ONE => return Err(DecodeError::OverSubscribed { kraft }),
            _ if kraft < KRAFT_ONE => return Err(DecodeError::Incomplete { kraft, symbols }),
            _ => {}
        }
        Ok(CodeLengths { lengths })
    }

    /// The length of every symbol's code, indexed by symbol (0: no code).
    pub fn lengths(&self) -> &[u8; ALPHABET_SIZE] {
        &self.lengths
    }

    /// The length of `symbol`'s code (0: no code).
    pub fn length(&self, symbol: u8) -> u8 {
        self.lengths[symbol as usize]
    }

    /// How many symbols have a code.
    pub fn symbols(&self) -> usize {
        self.lengths.iter().filter(|&&length| length > 0).count()
    }

    /// The highest symbol with a code, `None` for the empty table.
    pub fn max_symbol(&self) -> Option<u8> {
        self.lengths
            .iter()
            .rposition(|&length| length > 0)
            .map(|symbol| symbol as u8)
    }

    /// The shortest code length (0 for the empty table).
    pub fn min_length(&self) -> u8 {
        self.lengths
            .iter()
            .copied()
            .filter(|&length| length > 0)
            .min()
            .unwrap_or(0)
    }

    /// The longest code length (0 for the empty table).
    pub fn max_length(&self) -> u8 {
        self.lengths.iter().copied().max().unwrap_or(0)
    }

    /// The Kraft sum `sum 2^-len` over the symbols with a code, times 2^15: 32768 for a complete code, 16384 for a
    /// lone symbol, 0 for the empty table.
    pub fn kraft_sum(&self) -> u32 {
        kraft_sum(&self.lengths)
    }

    /// The payload bits of a stream with these counts, `sum count * len`; `None` if a symbol that occurs has no code.
    pub fn total_bits(&self, histogram: &Histogram) -> Option<u64> {
        let mut bits = 0u64;
        for (&count, &length) in histogram.counts().iter().zip(&self.lengths) {
            if count > 0 && length == 0 {
                return None;
            }
            // Cannot overflow: counts add up to at most 2^60 and lengths are at most 15.
            bits += count * u64::from(length);
        }
        Some(bits)
    }

    /// The canonical code of every symbol, right-aligned in the `u16` (the code's first bit is bit `len - 1`), 0
    /// where the symbol has no code.
    pub fn canonical_codes(&self) -> [u16; ALPHABET_SIZE] {
        let mut codes = [0u16; ALPHABET_SIZE];
        let mut next = first_codes(&self.lengths);
        for (code, &length) in codes.iter_mut().zip(&self.lengths) {
            if length > 0 {
                *code = next[length as usize];
                next[length as usize] += 1;
            }
        }
        codes
    }

    /// The empty table, for the empty stream.
    pub(crate) fn empty() -> Self {
        CodeLengths {
            lengths: [0; ALPHABET_SIZE],
        }
    }
}

impl std::fmt::Debug for CodeLengths {
    /// Only the symbols with a code, as `symbol: length`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.lengths.iter().enumerate().filter(|(_, &length)| length > 0))
            .finish()
    }
}

/// `sum 2^(15 - len)` over the nonzero lengths (all at most 15): at most 256 * 2^14, no overflow.
fn kraft_sum(lengths: &[u8; ALPHABET_SIZE]) -> u32 {
    lengths
        .iter()
        .filter(|&&length| length > 0)
        .map(|&length| 1u32 << (MAX_CODE_LEN - length))
        .sum()
}

/// The first canonical code of each length (RFC 1951's `next_code`), indexed by length.
pub(crate) fn first_codes(lengths: &[u8; ALPHABET_SIZE]) -> [u16; MAX_CODE_LEN as usize + 1] {
    let mut per_length = [0u16; MAX_CODE_LEN as usize + 1];
    for &length in lengths {
        per_length[length as usize] += 1;
    }
    per_length[0] = 0;
    let mut first = [0u16; MAX_CODE_LEN as usize + 1];
    let mut code = 0u16;
    for length in 1..=MAX_CODE_LEN as usize {
        code = (code + per_length[length - 1]) << 1;
        first[length] = code;
    }
    first
}

/// One item of a package-merge list: a leaf (a symbol's coin) or a package of two items of the level below.
#[derive(Clone, Copy)]
struct Item {
    weight: u128,
    leaf: Option<u8>,
}

/// Package-merge over `leaves` (count, symbol), sorted by the caller, at least two, at most `2^max_len`: adds to
/// each symbol's length the number of selected items it appears in.
///
/// List `k` holds the leaves merged with the packages of list `k - 1` (pairs of its items, front to back); the
/// last list's first `2n - 2` items are selected. Packages keep their order through a merge, so the selected
/// packages of a list are its first `p` and they are made of the first `2p` items of the list below: walking the
/// lists down, each list's selection is a prefix, and each selected leaf adds 1 to its symbol's length.
fn package_merge(leaves: &[(u64, u8)], max_len: u8, lengths: &mut [u8; ALPHABET_SIZE]) {
    let leaf_items: Vec<Item> = leaves
        .iter()
        .map(|&(count, symbol)| Item {
            weight: u128::from(count),
            leaf: Some(symbol),
        })
        .collect();
    let mut lists: Vec<Vec<Item>> = Vec::with_capacity(max_len as usize);
    lists.push(leaf_items.clone());
    for _ in 1..max_len {
        let below = lists.last().expect("one list at least");
        let packages: Vec<Item> = below
            .chunks_exact(2)
            .map(|pair| Item {
                weight: pair[0].weight + pair[1].weight,
                leaf: None,
            })
            .collect();
        let mut merged = Vec::with_capacity(leaf_items.len() + packages.len());
        let (mut l, mut p) = (0, 0);
        while l < leaf_items.len() || p < packages.len() {
            // A leaf goes first when it weighs no more than the package.
            let take_leaf = p == packages.len() || (l < leaf_items.len() && leaf_items[l].weight <= packages[p].weight);
            if take_leaf {
                merged.push(leaf_items[l]);
                l += 1;
            } else {
                merged.push(packages[p]);
                p += 1;
            }
        }
        lists.push(merged);
    }
    let mut take = 2 * leaves.len() - 2;
    for list in lists.iter().rev() {
        let mut packages = 0;
        for item in &list[..take] {
            match item.leaf {
                Some(symbol) => lengths[symbol as usize] += 1,
                None => packages += 1,
            }
        }
        take = 2 * packages;
    }
    debug_assert_eq!(take, 0, "the deepest list holds only leaves");
}
