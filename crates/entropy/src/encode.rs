//! Encoding: one pass to count, the code built once, one pass writing through a 64-bit bit buffer.

use crate::format;
use crate::histogram::Histogram;
use crate::lengths::CodeLengths;
use crate::EncodeError;

/// Encodes `data` with its own length-limited Huffman code into a new vector (see the crate docs for the form).
///
/// # Panics
/// If `data` is longer than [`MAX_STREAM_LEN`](crate::MAX_STREAM_LEN).
pub fn encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(data, &mut out);
    out
}

/// Appends the encoding of `data` with its own length-limited Huffman code to `out`.
///
/// # Panics
/// If `data` is longer than [`MAX_STREAM_LEN`](crate::MAX_STREAM_LEN).
pub fn encode_into(data: &[u8], out: &mut Vec<u8>) {
    let histogram = Histogram::of(data);
    let lengths = histogram.code_lengths();
    write_stream(data, &histogram, &lengths, out);
}

/// Appends the encoding of `data` with the code `lengths` to `out` (the table is written as given, symbols `data`
/// does not use included); an error, and nothing appended, if a symbol of `data` has no code.
///
/// # Panics
/// If `data` is longer than [`MAX_STREAM_LEN`](crate::MAX_STREAM_LEN).
pub fn encode_with(data: &[u8], lengths: &CodeLengths, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let histogram = Histogram::of(data);
    if lengths.total_bits(&histogram).is_none() {
        let position = data
            .iter()
            .position(|&symbol| lengths.length(symbol) == 0)
            .expect("a symbol lacks a code");
        return Err(EncodeError::SymbolWithoutCode {
            symbol: data[position],
            position,
        });
    }
    write_stream(data, &histogram, lengths, out);
    Ok(())
}

/// The bytes [`encode`] writes for `data`, computed without writing.
pub fn encoded_len(data: &[u8]) -> u64 {
    Histogram::of(data).encoded_len()
}

/// Writes header, table and payload; every symbol of `data` has a code in `lengths`.
fn write_stream(data: &[u8], histogram: &Histogram, lengths: &CodeLengths, out: &mut Vec<u8>) {
    let payload_bits = lengths.total_bits(histogram).expect("every symbol has a code");
    let payload_bytes = payload_bits.div_ceil(8);
    format::write_header(out, data.len() as u64, payload_bytes, lengths);
    if data.is_empty() {
        return;
    }
    let start = out.len();
    let payload_len = usize::try_from(payload_bytes).expect("the payload of an in-memory stream fits in memory");
    // The writer stores 8 bytes at a time and may run up to 8 bytes past the payload; cut off after.
    out.resize(start + payload_len + SLACK, 0);
    let written = write_payload(data, lengths, &mut out[start..]);
    debug_assert_eq!(written, payload_len, "the payload is exactly the codes' bytes");
    out.truncate(start + payload_len);
}

/// Bytes the payload writer may store past the payload's end.
const SLACK: usize = 8;

/// Writes the codes of `data` MSB-first into `payload`, which has the bytes they need and [`SLACK`] more; returns
/// the bytes of codes written.
fn write_payload(data: &[u8], lengths: &CodeLengths, payload: &mut [u8]) -> usize {
    // Each symbol's code and length in one word: code << 4 | length.
    let codes = lengths.canonical_codes();
    let mut table = [0u32; 256];
    for (entry, (&code, &length)) in table.iter_mut().zip(codes.iter().zip(lengths.lengths())) {
        *entry = u32::from(code) << 4 | u32::from(length);
    }
    // The low `pending` bits of `bits` are the codes not yet written, oldest first. Three codes (45 bits at most)
    // join fewer than 8 pending bits, so at most 52 are live; then all 8 bytes from `at` are stored, the whole
    // bytes counted and the last partial byte kept pending (and stored again next time, with more bits).
    let mut bits = 0u64;
    let mut pending = 0u32;
    let mut at = 0usize;
    let push = |bits: &mut u64, pending: &mut u32, symbol: u8| {
        let entry = table[symbol as usize];
        let length = entry & 15;
        *bits = (*bits << length) | u64::from(entry >> 4);
        *pending += length;
    };
    let mut triples = data.chunks_exact(3);
    for triple in &mut triples {
        push(&mut bits, &mut pending, triple[0]);
        push(&mut bits, &mut pending, triple[1]);
        push(&mut bits, &mut pending, triple[2]);
        // pending >= 3: every code has at least one bit.
        payload[at..at + 8].copy_from_slice(&(bits << (64 - pending)).to_be_bytes());
        at += (pending / 8) as usize;
        pending %= 8;
    }
    for &symbol in triples.remainder() {
        push(&mut bits, &mut pending, symbol);
    }
    while pending >= 8 {
        pending -= 8;
        payload[at] = (bits >> pending) as u8;
        at += 1;
    }
    if pending > 0 {
        payload[at] = (bits << (8 - pending)) as u8;
        at += 1;
    }
    at
}
