//! The serialized form of one stream: header, code-length table, payload. Described in the crate docs.

use crate::lengths::CodeLengths;
use crate::{decode, DecodeError, ALPHABET_SIZE};

/// Appends `value` as an unsigned LEB128 varint: 7 bits a byte, least significant group first, high bit set on
/// every byte but the last.
pub fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Bytes [`write_varint`] writes for `value` (1 to 10).
pub fn varint_len(value: u64) -> u64 {
    u64::from((64 - (value | 1).leading_zeros()).div_ceil(7))
}

/// Reads the varint at `offset`: its value and the offset after it. Refuses overlong forms (a zero last byte after
/// the first) and values above `u64::MAX`, so every value has exactly one encoding.
pub fn read_varint(bytes: &[u8], offset: usize, what: &'static str) -> Result<(u64, usize), DecodeError> {
    let mut value = 0u64;
    for index in 0..10 {
        let Some(&byte) = bytes.get(offset + index) else {
            return Err(DecodeError::Truncated {
                what,
                offset,
                needed: index as u64 + 1,
                available: bytes.len().saturating_sub(offset),
            });
        };
        if index == 9 && byte > 1 {
            return Err(DecodeError::BadVarint {
                what,
                offset,
                reason: "the value exceeds 2^64 - 1",
            });
        }
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            if byte == 0 && index > 0 {
                return Err(DecodeError::BadVarint {
                    what,
                    offset,
                    reason: "overlong: the last byte is zero",
                });
            }
            return Ok((value, offset + index + 1));
        }
    }
    Err(DecodeError::BadVarint {
        what,
        offset,
        reason: "longer than 10 bytes",
    })
}

/// Bytes of the 4-bit table for symbols `0..=max_symbol`.
fn table_len(max_symbol: u8) -> usize {
    max_symbol as usize / 2 + 1
}

/// The serialized size of a stream of `count` symbols whose codes take `payload_bits` bits under `lengths`.
pub(crate) fn encoded_len(count: u64, payload_bits: u64, lengths: &CodeLengths) -> u64 {
    if count == 0 {
        return varint_len(0);
    }
    let payload_bytes = payload_bits.div_ceil(8);
    let max_symbol = lengths.max_symbol().expect("a nonempty stream has codes");
    varint_len(count) + varint_len(payload_bytes) + 1 + table_len(max_symbol) as u64 + payload_bytes
}

/// Appends the header and table of a stream of `count` symbols with `payload_bytes` bytes of payload.
pub(crate) fn write_header(out: &mut Vec<u8>, count: u64, payload_bytes: u64, lengths: &CodeLengths) {
    write_varint(out, count);
    if count == 0 {
        return;
    }
    write_varint(out, payload_bytes);
    let max_symbol = lengths.max_symbol().expect("a nonempty stream has codes");
    out.push(max_symbol);
    let used = &lengths.lengths()[..=max_symbol as usize];
    for pair in used.chunks(2) {
        out.push(pair[0] << 4 | pair.get(1).copied().unwrap_or(0));
    }
}

/// One serialized stream, parsed and checked, its payload borrowed from the input.
///
/// Parsing checks everything but the payload's bits: the header, the table (a valid code), the payload's presence,
/// and that the symbol count fits the payload (at least `min_len` bits each, and the last payload byte within
/// reach of `max_len` bits each). So [`EncodedStream::symbol_count`] is at most 8 times the payload length, and
/// the output [`EncodedStream::decode`] allocates is justified by the input. Decoding checks the rest: every code
/// inside the payload, no unused payload byte, zero padding bits.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedStream<'a> {
    count: u64,
    lengths: CodeLengths,
    payload: &'a [u8],
    encoded_len: usize,
}

impl<'a> EncodedStream<'a> {
    /// Parses `bytes` as exactly one stream; bytes after it are refused ([`DecodeError::TrailingBytes`]).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let (stream, rest) = Self::parse_prefix(bytes)?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes {
                offset: stream.encoded_len,
                extra: rest.len(),
            });
        }
        Ok(stream)
    }

    /// Parses the stream at the start of `bytes`, for containers that store streams back to back: the stream and
    /// the bytes after it.
    pub fn parse_prefix(bytes: &'a [u8]) -> Result<(Self, &'a [u8]), DecodeError> {
        let (count, offset) = read_varint(bytes, 0, "symbol count")?;
        if count == 0 {
            let stream = EncodedStream {
                count,
                lengths: CodeLengths::empty(),
                payload: &[],
                encoded_len: offset,
            };
            return Ok((stream, &bytes[offset..]));
        }
        let (payload_bytes, offset) = read_varint(bytes, offset, "payload length")?;
        let Some(&max_symbol) = bytes.get(offset) else {
            return Err(DecodeError::Truncated {
                what: "highest symbol",
                offset,
                needed: 1,
                available: 0,
            });
        };
        let table_start = offset + 1;
        let table_end = table_start + table_len(max_symbol);
        let Some(table) = bytes.get(table_start..table_end) else {
            return Err(DecodeError::Truncated {
                what: "code-length table",
                offset: table_start,
                needed: table_len(max_symbol) as u64,
                available: bytes.len().saturating_sub(table_start),
            });
        };
        let mut lengths = [0u8; ALPHABET_SIZE];
        for (index, &byte) in table.iter().enumerate() {
            lengths[2 * index] = byte >> 4;
            if 2 * index < max_symbol as usize {
                lengths[2 * index + 1] = byte & 0x0f;
            } else if byte & 0x0f != 0 {
                return Err(DecodeError::TablePadding { nibble: byte & 0x0f });
            }
        }
        if lengths[max_symbol as usize] == 0 {
            return Err(DecodeError::UntrimmedTable { max_symbol });
        }
        let lengths = CodeLengths::new(lengths)?;
        let available = bytes.len() - table_end;
        let payload_end = match usize::try_from(payload_bytes) {
            Ok(len) if len <= available => table_end + len,
            _ => {
                return Err(DecodeError::TruncatedPayload {
                    offset: table_end,
                    needed: payload_bytes,
                    available,
                });
            }
        };
        // In u128, nothing here can overflow: count < 2^64, lengths <= 15, payload bytes < 2^64.
        let payload_bits = u128::from(payload_bytes) * 8;
        let (min_len, max_len) = (lengths.min_length(), lengths.max_length());
        if u128::from(count) * u128::from(min_len) > payload_bits {
            return Err(DecodeError::CountExceedsPayload {
                count,
                min_len,
                payload_bytes,
            });
        }
        // min_len >= 1, so payload_bytes >= 1 here.
        if u128::from(count) * u128::from(max_len) <= payload_bits - 8 {
            return Err(DecodeError::PayloadTooLong {
                count,
                max_len,
                payload_bytes,
            });
        }
        if usize::try_from(count).is_err() {
            return Err(DecodeError::CountTooLarge { count });
        }
        let stream = EncodedStream {
            count,
            lengths,
            payload: &bytes[table_end..payload_end],
            encoded_len: payload_end,
        };
        Ok((stream, &bytes[payload_end..]))
    }

    /// How many symbols the stream holds (at most 8 per payload byte).
    pub fn symbol_count(&self) -> u64 {
        self.count
    }

    /// The stream's code (empty for the empty stream).
    pub fn code_lengths(&self) -> &CodeLengths {
        &self.lengths
    }

    /// The payload: the codes, MSB-first, zero-padded to a byte.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Bytes the stream occupies in the input: header, table and payload.
    pub fn encoded_len(&self) -> usize {
        self.encoded_len
    }

    /// Decodes the symbols into a new vector of [`EncodedStream::symbol_count`] bytes.
    pub fn decode(&self) -> Result<Vec<u8>, DecodeError> {
        // Parsing checked that the count fits in usize and is at most 8 times the payload length.
        let mut out = vec![0u8; self.count as usize];
        self.decode_into(&mut out)?;
        Ok(out)
    }

    /// Decodes the symbols into `out`, which must hold exactly [`EncodedStream::symbol_count`] bytes. On an error,
    /// `out` holds unspecified bytes.
    pub fn decode_into(&self, out: &mut [u8]) -> Result<(), DecodeError> {
        if out.len() as u64 != self.count {
            return Err(DecodeError::OutputLength {
                expected: self.count,
                got: out.len(),
            });
        }
        if self.count == 0 {
            return Ok(());
        }
        decode::decode_payload(&self.lengths, self.payload, out)
    }
}

impl std::fmt::Debug for EncodedStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedStream")
            .field("count", &self.count)
            .field("lengths", &self.lengths)
            .field("payload_bytes", &self.payload.len())
            .field("encoded_len", &self.encoded_len)
            .finish()
    }
}
