//! Canonical Huffman coding of byte-symbol streams: Deep Compression's third stage.
//!
//! This crate knows nothing of Caffe or of any file around its streams: it turns a `&[u8]` of symbols (the codes of
//! a quantized blob, the gaps of its sparse index) into a self-describing byte string and back.
//!
//! * [`encode`] / [`encode_into`]: count the symbols, build the optimal code with lengths at most
//!   [`MAX_CODE_LEN`] = 15 bits by package-merge ([`CodeLengths::limited`]), write the stream.
//!   Deterministic: the same input gives the same bytes (ties among equal counts are broken by symbol value).
//! * [`decode`] / [`EncodedStream`]: parse and check a stream from untrusted bytes with a borrowed view, then
//!   decode with a lookup table on the next 12 bits (fewer for short streams) that yields every whole code in
//!   them, up to six symbols a lookup; longer codes take a canonical slow path.
//! * [`sparse::encode_sparse`] / [`sparse::decode_sparse`]: a pruned, quantized chunk (a code per weight, 0 =
//!   pruned) coded with an adaptive binary range coder ([`range`]): gaps and codes within about 1% of their
//!   entropy, no table stored. This is what `.caffez` files use.
//! * [`encoded_len`], [`Histogram::size_report`]: the encoded size without writing, beside the Shannon bound
//!   ([`Histogram::entropy_bits`]), so reports can say how close Huffman gets.
//!
//! ```
//! // The 5-bit codes of a pruned, quantized layer: code 0 (the fillers) dominates.
//! let codes = [0u8, 0, 17, 0, 3, 0, 0, 17, 21, 0, 0, 0];
//! let bytes = entropy::encode(&codes);
//! assert_eq!(bytes.len() as u64, entropy::encoded_len(&codes));
//! assert_eq!(entropy::decode(&bytes)?, codes);
//!
//! let report = entropy::Histogram::of(&codes).size_report();
//! assert!(report.payload_bits as f64 >= report.entropy_bits);
//! # Ok::<(), entropy::DecodeError>(())
//! ```
//!
//! # The serialized form of one stream
//!
//! | field | bytes | meaning |
//! |---|---|---|
//! | `count` | varint, 1-10 | number of symbols `N`; if 0, the stream ends here (the empty stream is the single byte `00`) |
//! | `payload_len` | varint, 1-10 | payload bytes `P` |
//! | `max_symbol` | 1 | the highest symbol `M` with a code |
//! | table | `M / 2 + 1` | code lengths of symbols `0..=M`, 4 bits each: symbol `2i` in the high nibble of byte `i`, `2i + 1` in its low nibble; 0 = no code; when `M` is even the last low nibble is 0 |
//! | payload | `P` | the `N` codes in stream order, each MSB-first (its first bit is the highest), packed from the most significant bit of each byte; the last byte is padded with zero bits |
//!
//! Varints are unsigned LEB128 (7 bits a byte, least significant group first, high bit set on all bytes but the
//! last) in their shortest form. Codes are canonical (as in DEFLATE, RFC 1951 3.2.2): ordered by length, then by
//! symbol; the first code of each length is `(first code of the previous length + codes of that length) << 1`,
//! starting at 0 for length 1.
//!
//! A valid stream has exactly one encoding, which is what the decoder checks: the table is trimmed (`M` has a
//! code) and its lengths are a complete prefix code (Kraft sum exactly 1) over two or more symbols, or a lone
//! symbol of length 1; `N` codes end in the payload's last byte; the padding bits are zero; nothing follows.
//!
//! Choices, and why:
//! * **Lengths at most 15**, so the table fits 4 bits a symbol; 2^15 codes cover any 256 symbols, and the limit
//!   binds only for very skewed counts (Fibonacci-like, over 17 or more symbols), where package-merge loses
//!   the least possible.
//! * **A 4-bit table up to the highest symbol**: a `B`-bit quantized layer uses symbols `0..2^B`, so a 5-bit layer's
//!   table is 16 bytes and an 8-bit layer's 128, with no decoding work beyond a shift; a run-length or
//!   delta-coded table would save a few bytes on small alphabets at the cost of a second code to validate.
//! * **A lone symbol gets a 1-bit code** (the payload is `N` zero bits) rather than a zero-bit one: then every
//!   symbol costs at least one bit, `N <= 8 P` holds for every stream, and the decoder can refuse a claimed count
//!   the input cannot back before allocating anything. A container that knows a stream is constant can leave it
//!   out instead.
//! * **The payload length is stored**, 1-3 bytes for realistic streams: the header alone tells where a stream
//!   ends (streams can sit back to back, [`EncodedStream::parse_prefix`]) and whether its count is plausible.
//!
//! # Safety against hostile input
//!
//! Decoding never panics and never allocates more than the input justifies: the header is checked before
//! anything is allocated (a claimed count of 2^60 in a 20-byte input is refused as [`DecodeError::CountExceedsPayload`]),
//! all arithmetic on values read from the input is checked or done in `u128`, and decoding allocates only the
//! output, at most 8 bytes per payload byte, and a lookup table of at most 32 KiB (512 bytes to 2 bytes per symbol,
//! sized to the stream). Every way a stream can be malformed has its own [`DecodeError`] variant. The crate has no
//! `unsafe`.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod decode;
mod encode;
mod error;
mod format;
/// The fuzz targets' bodies, for `fuzz/` and the corpus-replaying tests (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod histogram;
mod lengths;
pub mod range;
pub mod sparse;

pub mod varint {
    //! Unsigned LEB128 numbers in their shortest form, as the stream headers write them; for containers that
    //! hold streams.
    pub use crate::format::{read_varint as read, varint_len as len, write_varint as write};
}

pub use decode::decode;
pub use encode::{encode, encode_into, encode_with, encoded_len};
pub use error::{DecodeError, EncodeError};
pub use format::EncodedStream;
pub use histogram::{Histogram, SizeReport, MAX_STREAM_LEN};
pub use lengths::CodeLengths;

/// The longest code: 15 bits, so a code length fits the table's 4-bit entries.
pub const MAX_CODE_LEN: u8 = 15;

/// The number of symbols: every byte value.
pub const ALPHABET_SIZE: usize = 256;

/// The order-0 Shannon bound of `data` in bits ([`Histogram::entropy_bits`]).
pub fn entropy_bits(data: &[u8]) -> f64 {
    Histogram::of(data).entropy_bits()
}
