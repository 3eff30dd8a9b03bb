//! Symbol counts, the Shannon bound, and the encoded size computed without writing.

use crate::format;
use crate::lengths::CodeLengths;
use crate::ALPHABET_SIZE;

/// The longest stream this crate counts or encodes: 2^60 symbols, so that a payload's bit count
/// (at most [`MAX_CODE_LEN`](crate::MAX_CODE_LEN) bits a symbol) always fits a `u64`.
pub const MAX_STREAM_LEN: u64 = 1 << 60;

/// How often each of the 256 byte symbols occurs in a stream.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Histogram {
    counts: [u64; ALPHABET_SIZE],
    total: u64,
}

impl Histogram {
    /// Counts the symbols of `data`.
    ///
    /// # Panics
    /// If `data` is longer than [`MAX_STREAM_LEN`] (more than an exabyte).
    pub fn of(data: &[u8]) -> Self {
        assert!(
            data.len() as u64 <= MAX_STREAM_LEN,
            "streams are limited to 2^60 symbols"
        );
        // Four interleaved tables: consecutive equal symbols (common in skewed streams) do not wait on each
        // other's increments.
        let mut tables = [[0u64; ALPHABET_SIZE]; 4];
        let mut quads = data.chunks_exact(4);
        for quad in &mut quads {
            tables[0][quad[0] as usize] += 1;
            tables[1][quad[1] as usize] += 1;
            tables[2][quad[2] as usize] += 1;
            tables[3][quad[3] as usize] += 1;
        }
        for &symbol in quads.remainder() {
            tables[0][symbol as usize] += 1;
        }
        let mut counts = [0u64; ALPHABET_SIZE];
        for (symbol, count) in counts.iter_mut().enumerate() {
            *count = tables.iter().map(|table| table[symbol]).sum();
        }
        Histogram {
            counts,
            total: data.len() as u64,
        }
    }

    /// A histogram from counts, or `None` if they add up to more than [`MAX_STREAM_LEN`].
    pub fn from_counts(counts: [u64; ALPHABET_SIZE]) -> Option<Self> {
        let total = counts.iter().try_fold(0u64, |sum, &count| sum.checked_add(count))?;
        (total <= MAX_STREAM_LEN).then_some(Histogram { counts, total })
    }

    /// The count of every symbol, indexed by symbol.
    pub fn counts(&self) -> &[u64; ALPHABET_SIZE] {
        &self.counts
    }

    /// How often `symbol` occurs.
    pub fn count(&self, symbol: u8) -> u64 {
        self.counts[symbol as usize]
    }

    /// The stream's length in symbols.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// How many distinct symbols occur.
    pub fn distinct(&self) -> usize {
        self.counts.iter().filter(|&&count| count > 0).count()
    }

    /// The Shannon bound of the stream in bits: `sum over symbols of count * log2(total / count)`, the fewest bits
    /// any coder that codes each symbol independently with one fixed model (order 0) can spend on average. 0 for
    /// empty and one-symbol streams.
    pub fn entropy_bits(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let total = self.total as f64;
        self.counts
            .iter()
            .filter(|&&count| count > 0)
            .map(|&count| {
                let count = count as f64;
                count * (total / count).log2()
            })
            .sum()
    }

    /// The length-limited Huffman code for these counts: [`CodeLengths::from_histogram`].
    pub fn code_lengths(&self) -> CodeLengths {
        CodeLengths::from_histogram(self)
    }

    /// The bytes [`encode`](crate::encode) writes for a stream with these counts, computed without writing.
    pub fn encoded_len(&self) -> u64 {
        self.size_report().encoded_bytes
    }

    /// Sizes for a report: the encoded size beside the Shannon bound.
    pub fn size_report(&self) -> SizeReport {
        let lengths = self.code_lengths();
        let payload_bits = lengths.total_bits(self).expect("every counted symbol has a code");
        SizeReport {
            symbols: self.total,
            distinct: self.distinct(),
            entropy_bits: self.entropy_bits(),
            payload_bits,
            encoded_bytes: format::encoded_len(self.total, payload_bits, &lengths),
        }
    }
}

impl std::fmt::Debug for Histogram {
    /// Only the symbols that occur, as `symbol: count`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.counts.iter().enumerate().filter(|(_, &count)| count > 0))
            .finish()
    }
}

/// The sizes of one stream's encoding beside its Shannon bound, for reports ("after coding: X bytes, Y% above the
/// entropy bound").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizeReport {
    /// Symbols in the stream.
    pub symbols: u64,
    /// Distinct symbols in the stream.
    pub distinct: usize,
    /// The order-0 Shannon bound of the stream in bits ([`Histogram::entropy_bits`]).
    pub entropy_bits: f64,
    /// Bits of Huffman codes in the payload (before padding to a byte).
    pub payload_bits: u64,
    /// The whole serialized stream in bytes: header, code-length table and padded payload.
    pub encoded_bytes: u64,
}

impl SizeReport {
    /// Average payload bits a symbol (0 for an empty stream).
    pub fn bits_per_symbol(&self) -> f64 {
        if self.symbols == 0 {
            0.0
        } else {
            self.payload_bits as f64 / self.symbols as f64
        }
    }

    /// Average Shannon-bound bits a symbol (0 for an empty stream).
    pub fn entropy_per_symbol(&self) -> f64 {
        if self.symbols == 0 {
            0.0
        } else {
            self.entropy_bits / self.symbols as f64
        }
    }

    /// The Shannon bound in bytes, rounded up: what an ideal order-0 coder's payload would take, without any header.
    pub fn entropy_bytes(&self) -> u64 {
        (self.entropy_bits / 8.0).ceil() as u64
    }
}
