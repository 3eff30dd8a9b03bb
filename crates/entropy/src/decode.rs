//! Table-driven decoding: one lookup on the next 12 bits (fewer for short streams) yields every whole code in
//! them, up to six symbols; longer codes take a canonical slow path (one comparison per length).

use crate::format::EncodedStream;
use crate::lengths::{first_codes, CodeLengths};
use crate::{DecodeError, MAX_CODE_LEN};

/// Bits looked up at once, at most: a 4096-entry table of 32 KiB stays in L1 (13 bits measured slower).
const MAX_FAST_BITS: u32 = 12;
/// Bits looked up at once, at least.
const MIN_FAST_BITS: u32 = 6;
/// Symbols a fast entry holds at most.
const FAST_SYMBOLS: u32 = 6;
/// Where a fast entry keeps its symbol count and its bit length.
const TAKEN_SHIFT: u32 = 48;
const USED_SHIFT: u32 = 56;
/// Bytes of output one fast entry writes (all of it; only the first `taken` count).
const ENTRY_BYTES: usize = 8;
/// Fast lookups per refill: a refill leaves at least 56 bits, enough for three entries and a slow-path code of
/// at most 15 bits (after which the loop refills), or four entries.
const LOOKUPS_PER_REFILL: usize = 4;

/// Decodes one serialized stream that makes up the whole of `bytes` (see [`EncodedStream`] for what is checked).
pub fn decode(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    EncodedStream::parse(bytes)?.decode()
}

/// Lookup tables for one code.
struct Tables {
    /// Indexed by the next `fast_bits` bits: symbols in bits 0..48 (first symbol lowest byte), their number in bits
    /// 48..52 (0: the first code is longer than `fast_bits` or no code matches; take the slow path), their total
    /// length in bits 56..60. Every entry's symbols are whole codes within the `fast_bits` bits.
    fast: Vec<u64>,
    fast_bits: u32,
    /// Canonical decoding by length: codes of length `l` are `first[l] .. first[l] + count[l]`, and belong to
    /// `sorted[index[l]..]`.
    first: [u32; MAX_CODE_LEN as usize + 1],
    count: [u32; MAX_CODE_LEN as usize + 1],
    index: [u32; MAX_CODE_LEN as usize + 1],
    /// Symbols with a code, by length then symbol value.
    sorted: [u8; 256],
    min_len: u32,
    max_len: u32,
}

impl Tables {
    /// The tables for decoding `symbols` symbols with `lengths`. Building the lookup table costs about 5 ns an
    /// entry, so a stream gets about one entry per 8 symbols (from 64 up to 4096 entries).
    fn new(lengths: &CodeLengths, symbols: usize) -> Self {
        let fast_bits = (usize::BITS - symbols.leading_zeros())
            .saturating_sub(3)
            .clamp(MIN_FAST_BITS, MAX_FAST_BITS);
        let first16 = first_codes(lengths.lengths());
        let mut count = [0u32; MAX_CODE_LEN as usize + 1];
        for &length in lengths.lengths() {
            count[length as usize] += 1;
        }
        count[0] = 0;
        let mut index = [0u32; MAX_CODE_LEN as usize + 1];
        for length in 1..=MAX_CODE_LEN as usize {
            index[length] = index[length - 1] + count[length - 1];
        }
        let mut sorted = [0u8; 256];
        let mut next = index;
        for (symbol, &length) in lengths.lengths().iter().enumerate() {
            if length > 0 {
                sorted[next[length as usize] as usize] = symbol as u8;
                next[length as usize] += 1;
            }
        }
        let first = first16.map(u32::from);

        // One symbol per entry first: every code of at most `fast_bits` fills the entries it prefixes. A
        // zero-filled index then answers "which code starts here" for any number of known leading bits, valid when
        // the code found is no longer than the bits known.
        let size = 1usize << fast_bits;
        let mut single = [(0u8, 0u8); 1 << MAX_FAST_BITS];
        let codes = lengths.canonical_codes();
        for (symbol, (&code, &length)) in codes.iter().zip(lengths.lengths()).enumerate() {
            if length == 0 || u32::from(length) > fast_bits {
                continue;
            }
            let start = (code as usize) << (fast_bits - u32::from(length));
            let span = 1usize << (fast_bits - u32::from(length));
            single[start..start + span].fill((symbol as u8, length));
        }
        let mut fast = vec![0u64; size];
        for (bits, entry) in fast.iter_mut().enumerate() {
            let (mut used, mut symbols, mut taken) = (0u32, 0u64, 0u32);
            while taken < FAST_SYMBOLS {
                let (symbol, length) = single[(bits << used) & (size - 1)];
                let length = u32::from(length);
                if length == 0 || used + length > fast_bits {
                    break;
                }
                symbols |= u64::from(symbol) << (8 * taken);
                taken += 1;
                used += length;
            }
            *entry = symbols | u64::from(taken) << TAKEN_SHIFT | u64::from(used) << USED_SHIFT;
        }
        Tables {
            fast,
            fast_bits,
            first,
            count,
            index,
            sorted,
            min_len: u32::from(lengths.min_length()),
            max_len: u32::from(lengths.max_length()),
        }
    }

    /// The symbol whose code starts the 15 bits `peek` (first bit highest) and its length, `None` if no code does.
    #[inline]
    fn slow(&self, peek: u32) -> Option<(u8, u32)> {
        for length in self.min_len..=self.max_len {
            let code = peek >> (MAX_CODE_LEN as u32 - length);
            let offset = code.wrapping_sub(self.first[length as usize]);
            if offset < self.count[length as usize] {
                return Some((self.sorted[(self.index[length as usize] + offset) as usize], length));
            }
        }
        None
    }
}

/// An MSB-first bit reader over the payload. Past the payload's end it reads zeros; [`BitReader::consumed`] then
/// exceeds the payload's bits, which the caller checks once at the end (the symbol count, at most 8 per payload
/// byte, bounds the work done on such bits).
struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte to load; counts the zero bytes read past the end too.
    pos: usize,
    /// The next `avail` bits of the stream in the top bits; the rest are zeros or the stream's next bits.
    buf: u64,
    avail: u32,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            buf: 0,
            avail: 0,
        }
    }

    /// Tops up to at least 56 bits.
    #[inline(always)]
    fn refill(&mut self) {
        if let Some(chunk) = self.data.get(self.pos..self.pos + 8) {
            // Loads 8 bytes; counts only the whole bytes that fit (the rest are loaded again next time).
            let word = u64::from_be_bytes(chunk.try_into().expect("8 bytes"));
            self.buf |= word >> self.avail;
            self.pos += (63 - self.avail as usize) >> 3;
            self.avail |= 56;
        } else {
            self.refill_slow();
        }
    }

    #[cold]
    fn refill_slow(&mut self) {
        while self.avail < 56 {
            let byte = self.data.get(self.pos).copied().unwrap_or(0);
            self.buf |= u64::from(byte) << (56 - self.avail);
            self.avail += 8;
            self.pos += 1;
        }
    }

    /// The next `n` bits (`n` at most the available bits), first bit highest.
    #[inline(always)]
    fn peek(&self, n: u32) -> usize {
        (self.buf >> (64 - n)) as usize
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        debug_assert!(n <= self.avail);
        self.buf <<= n;
        self.avail -= n;
    }

    /// Bits consumed from the start of the payload.
    fn consumed(&self) -> u64 {
        self.pos as u64 * 8 - u64::from(self.avail)
    }
}

/// Decodes `out.len()` symbols (at least 1) from `payload` with the code `lengths`, checking that the codes end
/// in the payload's last byte and that the padding bits after them are zero.
pub(crate) fn decode_payload(lengths: &CodeLengths, payload: &[u8], out: &mut [u8]) -> Result<(), DecodeError> {
    let tables = Tables::new(lengths, out.len());
    let mut reader = BitReader::new(payload);
    let n = out.len();
    let mut at = 0usize;
    let invalid = |reader: &BitReader| DecodeError::InvalidCode {
        bit_offset: reader.consumed(),
    };

    // Each entry writes ENTRY_BYTES and advances by at most FAST_SYMBOLS: this much room covers a refill's lookups.
    const ROOM: usize = (LOOKUPS_PER_REFILL - 1) * FAST_SYMBOLS as usize + ENTRY_BYTES;
    'fast: while at + ROOM <= n {
        reader.refill();
        for _ in 0..LOOKUPS_PER_REFILL {
            let entry = tables.fast[reader.peek(tables.fast_bits)];
            let taken = (entry >> TAKEN_SHIFT) as usize & 15;
            if taken == 0 {
                let (symbol, length) = tables
                    .slow(reader.peek(MAX_CODE_LEN as u32) as u32)
                    .ok_or_else(|| invalid(&reader))?;
                out[at] = symbol;
                at += 1;
                reader.consume(length);
                continue 'fast;
            }
            out[at..at + ENTRY_BYTES].copy_from_slice(&entry.to_le_bytes());
            at += taken;
            reader.consume((entry >> USED_SHIFT) as u32);
        }
    }
    // The last symbols one at a time, so the bits consumed are exactly those of `n` codes.
    while at < n {
        reader.refill();
        let (symbol, length) = tables
            .slow(reader.peek(MAX_CODE_LEN as u32) as u32)
            .ok_or_else(|| invalid(&reader))?;
        out[at] = symbol;
        at += 1;
        reader.consume(length);
    }

    let consumed = reader.consumed();
    let payload_bits = payload.len() as u64 * 8;
    if consumed > payload_bits {
        return Err(DecodeError::PayloadExhausted {
            count: n as u64,
            needed_bits: consumed,
            payload_bits,
        });
    }
    let used_bytes = consumed.div_ceil(8);
    if used_bytes < payload.len() as u64 {
        return Err(DecodeError::UnusedPayload {
            used_bytes,
            payload_bytes: payload.len() as u64,
        });
    }
    let padding = (8 - (consumed % 8) as u32) % 8;
    if padding > 0 && payload[payload.len() - 1] & ((1u8 << padding) - 1) != 0 {
        return Err(DecodeError::NonZeroPadding { bits: padding });
    }
    Ok(())
}
