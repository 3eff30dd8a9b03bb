//! Adaptive arithmetic coding of a pruned, quantized weight chunk: one byte-sized code per weight, 0 for a
//! pruned weight. Deep Compression codes the positions as relative-index gaps and the codes as Huffman
//! symbols; coding both with adaptive binary contexts instead reaches their order-0 entropy within about 1%
//! (Huffman on LeNet's layers: 6% over), with no table to store.
//!
//! # The stream
//! For each kept weight (nonzero code), in position order:
//! 1. its **gap**, the number of pruned weights since the previous kept one (or since the chunk's start), as
//!    `v = gap + 1` written in two parts: the slot `s = floor(log2 v)` through a 5-bit context tree, then
//!    the `s` bits of `v - 2^s`, the top `min(s, 6)` of them through a context tree of their own per slot and
//!    the rest with probability 1/2;
//! 2. its **code**, `bits` bits through one context tree (code 0 is never coded, a kept weight has a
//!    nonzero code).
//!
//! Pruned weights after the last kept one are implied by the chunk's length. The number of kept weights is
//! stored by the container, beside the stream; a chunk with none has an empty stream. Contexts start at
//! P = 1/2 and adapt as [`crate::range`] describes. Decoding is total: any bytes either decode to the one
//! chunk whose encoding they are, or are refused with a [`DecodeError`].

use crate::range::{Bit, Decoder, Encoder, Finish};
use crate::{DecodeError, EncodeError};

/// The most positions one chunk may have: 2^24, so a chunk's output is at most 16 MiB of bytes (64 MiB as
/// f32) whatever a stream claims.
pub const MAX_CHUNK_LEN: usize = 1 << 24;

const SLOT_BITS: u32 = 5;
const MANTISSA_TREE_BITS: u32 = 6;

/// The contexts of one chunk.
struct Model {
    slot: [Bit; 1 << SLOT_BITS],
    /// Per slot, the tree of its top mantissa bits.
    mantissa: Vec<[Bit; 1 << MANTISSA_TREE_BITS]>,
    codes: [Bit; 256],
}

impl Model {
    fn new() -> Self {
        Self {
            slot: [Bit::default(); 1 << SLOT_BITS],
            mantissa: vec![[Bit::default(); 1 << MANTISSA_TREE_BITS]; 25],
            codes: [Bit::default(); 256],
        }
    }
}

fn check_bits(bits: u32) -> Result<(), u32> {
    if (1..=8).contains(&bits) {
        Ok(())
    } else {
        Err(bits)
    }
}

/// Where coded bits go: the range encoder, or a meter of their cost.
trait Sink {
    fn tree(&mut self, tree: &mut [Bit], depth: u32, value: u32);
    fn direct_bits(&mut self, value: u32, count: u32);
    /// The bits that follow belong to the gaps (`false`) or to the codes (`true`).
    fn part(&mut self, _codes: bool) {}
}

impl Sink for Encoder<'_> {
    fn tree(&mut self, tree: &mut [Bit], depth: u32, value: u32) {
        Encoder::tree(self, tree, depth, value)
    }
    fn direct_bits(&mut self, value: u32, count: u32) {
        Encoder::direct_bits(self, value, count)
    }
}

/// The ideal cost in bits (`-log2 p` of every coded bit) of the gaps and of the codes.
#[derive(Default)]
struct Meter {
    bits: [f64; 2],
    codes: bool,
}

impl Sink for Meter {
    fn tree(&mut self, tree: &mut [Bit], depth: u32, value: u32) {
        let mut node = 1usize;
        for shift in (0..depth).rev() {
            let bit = (value >> shift) & 1;
            self.bits[usize::from(self.codes)] += tree[node].cost(bit);
            tree[node].observe(bit);
            node = (node << 1) | bit as usize;
        }
    }
    fn direct_bits(&mut self, _value: u32, count: u32) {
        self.bits[usize::from(self.codes)] += f64::from(count);
    }
    fn part(&mut self, codes: bool) {
        self.codes = codes;
    }
}

fn check_chunk(codes: &[u8], bits: u32) -> Result<u64, EncodeError> {
    check_bits(bits).map_err(|bits| EncodeError::CodeWidth { bits })?;
    if codes.len() > MAX_CHUNK_LEN {
        return Err(EncodeError::ChunkTooLong { len: codes.len() });
    }
    if let Some(position) = codes.iter().position(|&c| u32::from(c) >> bits != 0) {
        return Err(EncodeError::CodeTooWide {
            code: codes[position],
            position,
            bits,
        });
    }
    Ok(codes.iter().filter(|&&c| c != 0).count() as u64)
}

/// Runs the model over a checked chunk.
fn code_chunk(codes: &[u8], bits: u32, sink: &mut impl Sink) {
    let mut model = Model::new();
    let mut previous_end = 0usize;
    for (position, &code) in codes.iter().enumerate() {
        if code == 0 {
            continue;
        }
        sink.part(false);
        let value = (position - previous_end + 1) as u32;
        let slot = 31 - value.leading_zeros();
        sink.tree(&mut model.slot, SLOT_BITS, slot);
        let tree_bits = slot.min(MANTISSA_TREE_BITS);
        let rest = slot - tree_bits;
        let mantissa = value - (1 << slot);
        sink.tree(&mut model.mantissa[slot as usize], tree_bits, mantissa >> rest);
        sink.direct_bits(mantissa & ((1 << rest) - 1), rest);
        sink.part(true);
        sink.tree(&mut model.codes, bits, u32::from(code));
        previous_end = position + 1;
    }
}

/// Appends the stream of one chunk to `out` and returns how many weights it keeps (nonzero codes).
///
/// `codes[i]` is the code of position `i`: 0 for a pruned weight, `1..2^bits` for a kept one. `bits` is
/// `1..=8`; `codes` holds at most [`MAX_CHUNK_LEN`] positions. Deterministic: the same chunk gives the same
/// bytes.
pub fn encode_sparse(codes: &[u8], bits: u32, out: &mut Vec<u8>) -> Result<u64, EncodeError> {
    let kept = check_chunk(codes, bits)?;
    if kept > 0 {
        let mut encoder = Encoder::new(out);
        code_chunk(codes, bits, &mut encoder);
        encoder.finish();
    }
    Ok(kept)
}

/// What the stream of a chunk spends on positions and on codes: the ideal cost in bits of its gap parts and
/// of its code parts. Their sum is the stream's length in bits to within the coder's few bytes of flush and
/// rounding; reports use the split to give index and weight bits separately, as Deep Compression's tables do.
pub fn cost_split(codes: &[u8], bits: u32) -> Result<(f64, f64), EncodeError> {
    check_chunk(codes, bits)?;
    let mut meter = Meter::default();
    code_chunk(codes, bits, &mut meter);
    Ok((meter.bits[0], meter.bits[1]))
}

/// Decodes one chunk's `stream`, which keeps `kept` weights, into `out` (one code per position; `out.len()`
/// is the chunk's length and is at most [`MAX_CHUNK_LEN`]).
pub fn decode_sparse(stream: &[u8], bits: u32, kept: u64, out: &mut [u8]) -> Result<(), DecodeError> {
    out.fill(0);
    let len = out.len();
    decode_sparse_with(stream, bits, kept, len, |position, code| out[position] = code)
}

/// Decodes one chunk of `len` positions and calls `kept(position, code)` for each kept weight, in position
/// order: for callers that write values straight into their own (zeroed) output. The checks are
/// [`decode_sparse`]'s; on an error some calls may already have been made.
pub fn decode_sparse_with(
    stream: &[u8],
    bits: u32,
    kept: u64,
    len: usize,
    mut on_kept: impl FnMut(usize, u8),
) -> Result<(), DecodeError> {
    check_bits(bits).map_err(|bits| DecodeError::CodeWidth { bits })?;
    if len > MAX_CHUNK_LEN || kept > len as u64 {
        return Err(DecodeError::KeptExceedsChunk { kept, len: len as u64 });
    }
    if kept == 0 {
        return match stream.len() {
            0 => Ok(()),
            unused => Err(DecodeError::StreamUnused { unused }),
        };
    }
    let mut model = Model::new();
    let mut decoder = Decoder::new(stream);
    let mut next = 0u64;
    for entry in 0..kept {
        let slot = decoder.tree(&mut model.slot, SLOT_BITS);
        if slot > 24 {
            return Err(DecodeError::GapPastEnd { entry, len: len as u64 });
        }
        let tree_bits = slot.min(MANTISSA_TREE_BITS);
        let rest = slot - tree_bits;
        let top = decoder.tree(&mut model.mantissa[slot as usize], tree_bits);
        let low = decoder.direct_bits(rest);
        let value = (1u64 << slot) + (u64::from(top) << rest) + u64::from(low);
        let position = next + value - 1;
        if position >= len as u64 {
            return Err(DecodeError::GapPastEnd { entry, len: len as u64 });
        }
        let code = decoder.tree(&mut model.codes, bits);
        if code == 0 {
            return Err(DecodeError::ZeroCode { entry });
        }
        on_kept(position as usize, code as u8);
        next = position + 1;
        if decoder.overran() {
            break;
        }
    }
    decoder.finish().map_err(|finish| match finish {
        Finish::Overrun { missing } => DecodeError::StreamOverrun { missing },
        Finish::Unused { unused } => DecodeError::StreamUnused { unused },
        Finish::BadState => DecodeError::StreamState,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(codes: &[u8], bits: u32) -> Vec<u8> {
        let mut stream = Vec::new();
        let kept = encode_sparse(codes, bits, &mut stream).unwrap();
        let mut back = vec![0xAA; codes.len()];
        decode_sparse(&stream, bits, kept, &mut back).unwrap();
        assert_eq!(back, codes);
        stream
    }

    #[test]
    fn chunks_roundtrip() {
        roundtrip(&[], 1);
        assert!(roundtrip(&[0, 0, 0], 3).is_empty());
        roundtrip(&[1], 1);
        roundtrip(&[0, 0, 255, 0, 1, 1, 0, 0, 0, 7], 8);
        let mut long = vec![0u8; 1 << 20];
        long[(1 << 20) - 1] = 3;
        long[0] = 1;
        roundtrip(&long, 2);
    }

    #[test]
    fn bad_arguments_are_refused() {
        let mut out = Vec::new();
        assert_eq!(
            encode_sparse(&[4], 2, &mut out),
            Err(EncodeError::CodeTooWide {
                code: 4,
                position: 0,
                bits: 2
            })
        );
        assert_eq!(
            encode_sparse(&[1], 9, &mut out),
            Err(EncodeError::CodeWidth { bits: 9 })
        );
        let stream = roundtrip(&[0, 1, 0, 2], 2);
        let mut back = [0u8; 4];
        assert!(decode_sparse(&stream, 2, 5, &mut back).is_err());
        assert!(decode_sparse(&stream, 2, 1, &mut back).is_err());
        assert!(decode_sparse(&stream[..stream.len() - 1], 2, 2, &mut back).is_err());
        let mut short = [0u8; 2];
        assert!(decode_sparse(&stream, 2, 2, &mut short).is_err());
        assert_eq!(
            decode_sparse(&[0], 2, 0, &mut back),
            Err(DecodeError::StreamUnused { unused: 1 })
        );
    }
}
