//! Error types: [`DecodeError`] for code-length tables and encoded streams read from untrusted bytes,
//! [`EncodeError`] for encoding with a caller-supplied code.

use crate::MAX_CODE_LEN;

/// Why a code-length table or an encoded stream was refused.
///
/// Each variant names the invariant it guards. Together they make decoding total: every input either decodes
/// to the one symbol stream whose encoding it is, byte for byte, or is refused with one of these (never a panic,
/// never an output larger than eight symbols per input byte).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Guards that every header field and the code-length table lie inside the input: `what`, at byte `offset`,
    /// needs `needed` bytes and only `available` remain.
    #[error("{what} at byte {offset} needs {needed} bytes, only {available} remain")]
    Truncated {
        /// The field that is cut short.
        what: &'static str,
        /// Where the field starts.
        offset: usize,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left in the input from `offset`.
        available: usize,
    },

    /// Guards that a LEB128 number has exactly one encoding and fits a `u64`: no zero final byte after the
    /// first (an overlong form), at most 10 bytes, and a 10th byte of 0 or 1.
    #[error("{what} at byte {offset} is a malformed varint: {reason}")]
    BadVarint {
        /// The field.
        what: &'static str,
        /// Where the varint starts.
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// Guards the limit on code lengths ([`MAX_CODE_LEN`]); only a table built in memory can break it, the 4-bit
    /// serialized table cannot.
    #[error("symbol {symbol} has code length {length}, above the limit {MAX_CODE_LEN}")]
    LengthTooLong {
        /// The symbol.
        symbol: u8,
        /// Its length.
        length: u8,
    },

    /// Guards that the serialized table is trimmed: it ends at the highest symbol with a code, so the symbol the
    /// header names as the highest must have a nonzero length (one table, one encoding).
    #[error("the code-length table ends at symbol {max_symbol}, which has no code")]
    UntrimmedTable {
        /// The highest symbol the header names.
        max_symbol: u8,
    },

    /// Guards that the unused low nibble of a table with an odd number of entries is zero.
    #[error("the code-length table's padding nibble is {nibble}, not 0")]
    TablePadding {
        /// The nibble found.
        nibble: u8,
    },

    /// Guards that the lengths form a prefix code: the Kraft sum `sum 2^-len`, given as `kraft / 2^15`, exceeds 1,
    /// so some code would be a prefix of another.
    #[error("the code lengths are over-subscribed (Kraft sum {kraft}/32768 > 1): not a prefix code")]
    OverSubscribed {
        /// The Kraft sum times 2^15.
        kraft: u32,
    },

    /// Guards that the code is complete, so every bit pattern decodes and the code is one Huffman's algorithm can
    /// produce: with two or more symbols the Kraft sum must be exactly 1; a lone symbol must have length 1 (Kraft
    /// sum 1/2, the one incomplete code allowed); a stream of one or more symbols needs at least one code.
    #[error("the code lengths are incomplete (Kraft sum {kraft}/32768 over {symbols} symbols)")]
    Incomplete {
        /// The Kraft sum times 2^15.
        kraft: u32,
        /// How many symbols have a code.
        symbols: usize,
    },

    /// Guards that the payload bytes the header announces are present: the payload starts at `offset`, claims
    /// `needed` bytes and only `available` remain.
    #[error("the payload at byte {offset} claims {needed} bytes, only {available} remain")]
    TruncatedPayload {
        /// Where the payload starts.
        offset: usize,
        /// Its claimed length in bytes.
        needed: u64,
        /// Bytes left in the input from `offset`.
        available: usize,
    },

    /// Guards that the symbol count is one the payload can hold: `count` symbols of at least `min_len` bits each
    /// need more than the payload's `payload_bytes * 8` bits. This is what bounds the output allocation by the input
    /// size (every code is at least one bit), before anything is allocated.
    #[error("{count} symbols of at least {min_len} bits cannot fit in a payload of {payload_bytes} bytes")]
    CountExceedsPayload {
        /// The claimed symbol count.
        count: u64,
        /// The shortest code length in the table.
        min_len: u8,
        /// The payload length in bytes.
        payload_bytes: u64,
    },

    /// Guards against padding bytes inside the payload: `count` symbols of at most `max_len` bits each cannot reach
    /// the last of the payload's `payload_bytes` bytes.
    #[error("{count} symbols of at most {max_len} bits cannot reach the end of a payload of {payload_bytes} bytes")]
    PayloadTooLong {
        /// The claimed symbol count.
        count: u64,
        /// The longest code length in the table.
        max_len: u8,
        /// The payload length in bytes.
        payload_bytes: u64,
    },

    /// Guards that the decoded stream fits in memory (only reachable where `usize` is narrower than 64 bits).
    #[error("{count} symbols do not fit in memory")]
    CountTooLarge {
        /// The claimed symbol count.
        count: u64,
    },

    /// Guards that the codes end inside the payload: decoding `count` symbols needs at least `needed_bits` bits and
    /// the payload holds `payload_bits`.
    #[error(
        "the payload ends early: {count} symbols need at least {needed_bits} bits, the payload holds {payload_bits}"
    )]
    PayloadExhausted {
        /// The symbol count.
        count: u64,
        /// Bits consumed when decoding stopped.
        needed_bits: u64,
        /// Bits in the payload.
        payload_bits: u64,
    },

    /// Guards that every code read is in the table; only an incomplete code (a lone symbol, whose code is a single
    /// 0 bit) leaves bit patterns unassigned.
    #[error("no code matches the bits at payload bit {bit_offset}")]
    InvalidCode {
        /// Offset of the first bit of the unmatched pattern, from the start of the payload.
        bit_offset: u64,
    },

    /// Guards that the payload ends with the last code: the symbols used `used_bytes` of its `payload_bytes` bytes.
    #[error("the symbols use {used_bytes} of the payload's {payload_bytes} bytes")]
    UnusedPayload {
        /// Bytes the codes reach into.
        used_bytes: u64,
        /// The payload length.
        payload_bytes: u64,
    },

    /// Guards that the bits after the last code, up to the byte boundary, are zero.
    #[error("the {bits} padding bits after the last code are not zero")]
    NonZeroPadding {
        /// How many padding bits there are.
        bits: u32,
    },

    /// Guards that a whole-input decode ends where the stream ends: `extra` bytes follow it from `offset`.
    #[error("{extra} bytes of trailing garbage after the stream's end at byte {offset}")]
    TrailingBytes {
        /// Where the stream ends.
        offset: usize,
        /// Bytes after it.
        extra: usize,
    },

    /// Guards that a caller's output buffer has exactly one byte per encoded symbol.
    #[error("the stream holds {expected} symbols but the output buffer has {got} bytes")]
    OutputLength {
        /// The stream's symbol count.
        expected: u64,
        /// The buffer's length.
        got: usize,
    },

    /// Guards that a sparse chunk's codes are 1 to 8 bits wide.
    #[error("a code width of {bits} bits (must be 1 to 8)")]
    CodeWidth {
        /// The width given.
        bits: u32,
    },

    /// Guards that a sparse chunk keeps no more weights than it has positions, and has at most
    /// [`crate::sparse::MAX_CHUNK_LEN`] positions.
    #[error("{kept} kept weights claimed in a chunk of {len} positions")]
    KeptExceedsChunk {
        /// The claimed count of kept weights.
        kept: u64,
        /// The chunk's positions.
        len: u64,
    },

    /// Guards that every decoded gap lands inside the chunk.
    #[error("the gap of kept weight {entry} runs past the chunk's {len} positions")]
    GapPastEnd {
        /// The index of the kept weight.
        entry: u64,
        /// The chunk's positions.
        len: u64,
    },

    /// Guards that a kept weight has a nonzero code (code 0 is the pruned weight, never coded).
    #[error("kept weight {entry} decodes to code 0")]
    ZeroCode {
        /// The index of the kept weight.
        entry: u64,
    },

    /// Guards that a range-coded stream holds every byte its symbols need.
    #[error("the stream ends {missing} bytes early")]
    StreamOverrun {
        /// Bytes missing.
        missing: u64,
    },

    /// Guards that a range-coded stream ends with its last symbol (one chunk, one length).
    #[error("{unused} bytes of the stream are left after its last symbol")]
    StreamUnused {
        /// Bytes never read.
        unused: usize,
    },

    /// Guards that a range-coded stream starts with a zero byte and ends in the state the encoder's flush
    /// leaves (so a damaged stream of the right length is still refused, mostly).
    #[error("the stream's start or end state is not one an encoder writes")]
    StreamState,
}

/// Why a stream could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// Guards that every symbol of the stream has a code: `symbol`, first at `position`, has length 0.
    #[error("symbol {symbol} (first at position {position}) has no code")]
    SymbolWithoutCode {
        /// The symbol.
        symbol: u8,
        /// Its first position in the stream.
        position: usize,
    },

    /// Guards that a sparse chunk's codes are 1 to 8 bits wide.
    #[error("a code width of {bits} bits (must be 1 to 8)")]
    CodeWidth {
        /// The width given.
        bits: u32,
    },

    /// Guards that every code fits the chunk's width.
    #[error("code {code} at position {position} does not fit in {bits} bits")]
    CodeTooWide {
        /// The code.
        code: u8,
        /// Where it is.
        position: usize,
        /// The width.
        bits: u32,
    },

    /// Guards the chunk length limit [`crate::sparse::MAX_CHUNK_LEN`].
    #[error("a chunk of {len} positions exceeds the limit of 2^24")]
    ChunkTooLong {
        /// The chunk's length.
        len: usize,
    },
}
