//! Deep Compression's relative-index ("gap") encoding of a pruned blob.
//!
//! See [`encode_gaps`] for the rule.

use rayon::prelude::*;

use crate::error::SparseError;
use std::mem::MaybeUninit;
use std::sync::Mutex;

use crate::scan::{is_nonzero, nonzero_masks, prune_masks, PART_LEN, PART_WORDS, WORD_LEN};
use pages::advise_huge_pages;

/// Smallest accepted number of index bits.
pub const MIN_INDEX_BITS: u8 = 1;
/// Largest accepted number of index bits.
pub const MAX_INDEX_BITS: u8 = 16;

/// Stored gaps, in the narrowest unsigned type that holds `2^B - 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gaps {
    /// Gaps for `B <= 8`.
    U8(Vec<u8>),
    /// Gaps for `9 <= B <= 16`.
    U16(Vec<u16>),
}

/// Borrowed view of [`Gaps`], the input of [`decode_gaps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapsRef<'a> {
    /// Gaps stored as `u8`.
    U8(&'a [u8]),
    /// Gaps stored as `u16`.
    U16(&'a [u16]),
}

impl Gaps {
    /// Number of stored gaps (equal to the number of stored values).
    pub fn len(&self) -> usize {
        match self {
            Gaps::U8(gaps) => gaps.len(),
            Gaps::U16(gaps) => gaps.len(),
        }
    }

    /// Whether no gap is stored (only for an empty blob).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Borrows the gaps.
    pub fn as_gaps_ref(&self) -> GapsRef<'_> {
        match self {
            Gaps::U8(gaps) => GapsRef::U8(gaps),
            Gaps::U16(gaps) => GapsRef::U16(gaps),
        }
    }
}

/// A blob in relative-index form: `values[i]` follows `gaps[i]` zeros.
#[derive(Debug, Clone, PartialEq)]
pub struct GapEncoded {
    /// Stored values: the nonzeros, plus 0.0 for fillers and the trailing entry.
    pub values: Vec<f32>,
    /// One gap per value.
    pub gaps: Gaps,
    /// The `B` the blob was encoded with.
    pub index_bits: u8,
    /// Length of the flat blob the entries rebuild.
    pub dense_len: usize,
}

impl GapEncoded {
    /// Number of stored values that are nonzero: the entries that are not fillers or the
    /// trailing entry, i.e. the nonzeros of the blob.
    pub fn nonzero_count(&self) -> usize {
        self.values.iter().map(|&v| usize::from(v != 0.0)).sum()
    }

    /// Rebuilds the flat blob (see [`decode_gaps`]).
    pub fn decode(&self) -> Result<Vec<f32>, SparseError> {
        decode_gaps(&self.values, self.gaps.as_gaps_ref(), self.dense_len)
    }
}

/// Size in bytes of one stored gap for `index_bits` (1 for `B <= 8`, else 2).
pub fn gap_width_bytes(index_bits: u8) -> Result<usize, SparseError> {
    validate_index_bits(index_bits)?;
    Ok(if index_bits <= 8 { 1 } else { 2 })
}

fn validate_index_bits(index_bits: u8) -> Result<(), SparseError> {
    if (MIN_INDEX_BITS..=MAX_INDEX_BITS).contains(&index_bits) {
        Ok(())
    } else {
        Err(SparseError::InvalidIndexBits { index_bits })
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2;

/// An unsigned gap type.
trait GapInt: Copy + Send + Sync + Into<usize> {
    /// Converts a gap known to be `<= 2^B - 1`, which fits `Self` by choice of type.
    fn from_gap(gap: usize) -> Self;
}

impl GapInt for u8 {
    #[inline(always)]
    fn from_gap(gap: usize) -> Self {
        debug_assert!(gap <= usize::from(u8::MAX));
        gap as u8
    }
}

impl GapInt for u16 {
    #[inline(always)]
    fn from_gap(gap: usize) -> Self {
        debug_assert!(gap <= usize::from(u16::MAX));
        gap as u16
    }
}

/// Stored entries, appended a part at a time into reserved, not yet initialised room (the
/// encoder writes about one entry per ten values; clearing room first would cost a pass of its
/// own).
struct Entries<G> {
    values: Vec<f32>,
    gaps: Vec<G>,
}

impl<G: GapInt> Entries<G> {
    fn new() -> Self {
        Entries {
            values: Vec::new(),
            gaps: Vec::new(),
        }
    }

    /// Room for exactly `capacity` entries, backed by huge pages when large (see the `pages` crate).
    fn with_capacity(capacity: usize) -> Self {
        let mut entries = Entries {
            values: Vec::with_capacity(capacity),
            gaps: Vec::with_capacity(capacity),
        };
        advise_huge_pages(&mut entries.values);
        advise_huge_pages(&mut entries.gaps);
        entries
    }

    /// Appends up to `room` entries: `fill` writes them into the two spare slices (of at least
    /// `room` slots each) and returns how many it wrote, all of them initialised.
    #[inline(always)]
    fn append(&mut self, room: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>], &mut [MaybeUninit<G>]) -> usize) {
        self.values.reserve(room);
        self.gaps.reserve(room);
        let written = fill(self.values.spare_capacity_mut(), self.gaps.spare_capacity_mut());
        let (values_len, gaps_len) = (self.values.len() + written, self.gaps.len() + written);
        assert!(values_len <= self.values.capacity() && gaps_len <= self.gaps.capacity());
        // SAFETY: `fill` initialised the first `written` spare slots of both vectors (its
        // contract; its writes are bounds-checked indexing, or in the AVX2 walk pointer writes
        // inside room it asserts first), and the new lengths are within capacity (asserted).
        unsafe {
            self.values.set_len(values_len);
            self.gaps.set_len(gaps_len);
        }
    }
}

/// Which values of a run are stored: its nonzeros (read only), or the nonzeros a pruning rule
/// keeps once it has zeroed the others in place.
trait PartSource {
    /// Number of values.
    fn len(&self) -> usize;
    /// Calls `walk(part, masks, base)` for consecutive parts of at most [`PART_LEN`] values,
    /// `base` being the part's first index and bit `lane` of `masks[word]` telling whether
    /// `part[word * 64 + lane]` is stored. Returns the number of nonzero values seen before any
    /// rewrite.
    fn for_each_part(self, walk: impl FnMut(&[f32], &[u64; PART_WORDS], usize)) -> usize;
}

/// The nonzeros of a slice, read only.
struct ReadOnly<'a>(&'a [f32]);

impl PartSource for ReadOnly<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    #[inline(always)]
    fn for_each_part(self, mut walk: impl FnMut(&[f32], &[u64; PART_WORDS], usize)) -> usize {
        let mut masks = [0u64; PART_WORDS];
        let mut nonzeros = 0;
        for (index, part) in self.0.chunks(PART_LEN).enumerate() {
            nonzeros += nonzero_masks(part, &mut masks);
            walk(part, &masks, index * PART_LEN);
        }
        nonzeros
    }
}

/// The values of a slice whose magnitude bits are above a cut, the others being zeroed in the
/// same pass.
struct Pruned<'a>(&'a mut [f32], u32);

impl PartSource for Pruned<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    #[inline(always)]
    fn for_each_part(self, mut walk: impl FnMut(&[f32], &[u64; PART_WORDS], usize)) -> usize {
        let mut masks = [0u64; PART_WORDS];
        let mut nonzeros = 0;
        for (index, part) in self.0.chunks_mut(PART_LEN).enumerate() {
            nonzeros += prune_masks(part, self.1, &mut masks);
            walk(part, &masks, index * PART_LEN);
        }
        nonzeros
    }
}

/// The values of a slice whose magnitude bits are above a cut, the slice left as it is: each part
/// is pruned in a copy on the stack (4 KiB, so the walk still reads it from L1).
struct CutView<'a>(&'a [f32], u32);

impl PartSource for CutView<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    #[inline(always)]
    fn for_each_part(self, mut walk: impl FnMut(&[f32], &[u64; PART_WORDS], usize)) -> usize {
        let mut masks = [0u64; PART_WORDS];
        let mut copy = [0.0f32; PART_LEN];
        let mut nonzeros = 0;
        for (index, part) in self.0.chunks(PART_LEN).enumerate() {
            let copy = &mut copy[..part.len()];
            copy.copy_from_slice(part);
            nonzeros += prune_masks(copy, self.1, &mut masks);
            walk(copy, &masks, index * PART_LEN);
        }
        nonzeros
    }
}

/// The encoding walk over a whole blob, appending its entries to `out`; returns the number of
/// nonzero values seen before any rewrite.
///
/// A stored value at index `i` follows a raw run of `R = i - next` zeros, `next` being the index
/// after the previous stored value (0 at the start): the walk stores `R >> B` fillers
/// `(0.0, 2^B - 1)` (each stands for `2^B` zeros, itself included) and then
/// `(value, R & (2^B - 1))`. That equals the zero-by-zero rule of [`encode_gaps`], and it lets
/// chunks be walked apart: only a chunk's leading run depends on the chunks before it.
fn walk_whole<S: PartSource, G: GapInt>(source: S, index_bits: u8, out: &mut Entries<G>) -> usize {
    let len = source.len();
    let (next, nonzeros) = walk_run(source, index_bits, out);
    end_run(len - next, index_bits, out);
    nonzeros
}

/// Spare slots asked for beyond a part's entries, so the 8-lane walk (which writes up to 8 slots
/// past its last entry and wants a word's worth of room) runs to the end of a part.
const WALK_SLACK: usize = WORD_LEN + 8;

/// [`walk_whole`] without the end: appends the entries up to the last stored value (leading
/// fillers included) and returns the index after it (0 if none) and the nonzeros seen.
fn walk_run<S: PartSource, G: GapInt>(source: S, index_bits: u8, out: &mut Entries<G>) -> (usize, usize) {
    let mut next = 0usize;
    let nonzeros = source.for_each_part(|part, masks, base| {
        // At most one entry per value, plus the fillers of the zeros since `next` (a sum of
        // floor(run / 2^B) is at most the floor of the runs' sum).
        let room = part.len() + ((base + part.len() - next) >> index_bits);
        out.append(room + WALK_SLACK, |values, gaps| {
            let (written, after) = walk_part(part, masks, base, next, index_bits, values, gaps);
            next = after;
            written
        });
    });
    (next, nonzeros)
}

/// [`walk_whole`]'s inner loop over one part whose first value has index `base`: writes its
/// entries into `values` and `gaps` (room enough for them) given `next`; returns how many it wrote
/// and the new `next`. A function of its own so the walk's state lives in registers. With AVX2,
/// words dense enough are done 8 lanes at a time (see [`avx2`]).
#[inline(always)]
fn walk_part<G: GapInt>(
    part: &[f32],
    masks: &[u64; PART_WORDS],
    base: usize,
    next: usize,
    index_bits: u8,
    values: &mut [MaybeUninit<f32>],
    gaps: &mut [MaybeUninit<G>],
) -> (usize, usize) {
    #[cfg(target_arch = "x86_64")]
    if crate::scan::has_avx2() {
        // SAFETY: the CPU has AVX2, POPCNT, BMI1 and LZCNT, checked just above.
        return unsafe { avx2::walk_part(part, masks, base, next, index_bits, values, gaps) };
    }
    let mut cursor = Cursor { written: 0, next };
    for (word, &mask) in masks.iter().enumerate() {
        if mask != 0 {
            walk_word(part, word, mask, base, index_bits, values, gaps, &mut cursor);
        }
    }
    (cursor.written, cursor.next)
}

/// Where a walk stands within the room it writes to.
#[derive(Clone, Copy)]
struct Cursor {
    /// Entries written so far.
    written: usize,
    /// Index after the last stored value.
    next: usize,
}

/// Writes the entries of word `word` of `part` (`mask`, nonzero, marks its stored values), one
/// value at a time, fillers included.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn walk_word<G: GapInt>(
    part: &[f32],
    word: usize,
    mut mask: u64,
    base: usize,
    index_bits: u8,
    values: &mut [MaybeUninit<f32>],
    gaps: &mut [MaybeUninit<G>],
    cursor: &mut Cursor,
) {
    let max_gap = (1usize << index_bits) - 1;
    let Cursor { mut written, mut next } = *cursor;
    while mask != 0 {
        let offset = word * WORD_LEN + mask.trailing_zeros() as usize;
        mask &= mask - 1;
        let run = base + offset - next;
        if run > max_gap {
            for _ in 0..run >> index_bits {
                values[written].write(0.0);
                gaps[written].write(G::from_gap(max_gap));
                written += 1;
            }
        }
        values[written].write(part[offset]);
        gaps[written].write(G::from_gap(run & max_gap));
        written += 1;
        next = base + offset + 1;
    }
    *cursor = Cursor { written, next };
}

/// Ends a whole blob's walk after `trailing` zeros: `trailing >> B` fillers, then `(0.0, r - 1)`
/// for the `r = trailing & (2^B - 1)` zeros left, if any.
fn end_run<G: GapInt>(trailing: usize, index_bits: u8, out: &mut Entries<G>) {
    let max_gap = (1usize << index_bits) - 1;
    let (fillers, rest) = (trailing >> index_bits, trailing & max_gap);
    out.values.resize(out.values.len() + fillers, 0.0);
    out.gaps.resize(out.gaps.len() + fillers, G::from_gap(max_gap));
    if rest > 0 {
        out.values.push(0.0);
        out.gaps.push(G::from_gap(rest - 1));
    }
}

/// Blobs of at least this many values are encoded in parallel chunks on the rayon pool.
const PARALLEL_MIN_LEN: usize = 1 << 21;
/// Values per chunk of the parallel encoder (1 MiB of f32).
const PARALLEL_CHUNK_LEN: usize = 1 << 18;

/// Counts what the walk of `flat` stores up to its last nonzero, leading fillers included, storing
/// nothing; also returns the index after that nonzero (0 if none).
fn count_walk(flat: &[f32], index_bits: u8) -> (usize, usize) {
    let (mut next, mut entries) = (0usize, 0usize);
    ReadOnly(flat).for_each_part(|_, masks, base| {
        for (word, &mask) in masks.iter().enumerate() {
            if mask == 0 {
                continue;
            }
            let start = base + word * WORD_LEN;
            let lowest = start + mask.trailing_zeros() as usize;
            // One entry per stored value, the fillers before the word's first one, and those of
            // the zero runs between its values: none unless a run reaches 2^B, which the word's
            // bits tell without visiting its values one by one.
            entries += mask.count_ones() as usize + ((lowest - next) >> index_bits);
            if has_inner_zero_run(mask, index_bits) {
                let mut rest = mask & (mask - 1);
                let mut previous = lowest;
                while rest != 0 {
                    let index = start + rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    entries += (index - previous - 1) >> index_bits;
                    previous = index;
                }
            }
            next = start + WORD_LEN - mask.leading_zeros() as usize;
        }
    });
    (entries, next)
}

/// Whether `mask` (nonzero) has a run of at least `2^index_bits` zero bits between two set bits.
#[inline(always)]
fn has_inner_zero_run(mask: u64, index_bits: u8) -> bool {
    // Runs between set bits of a 64-bit word are at most 62 long.
    if index_bits >= 6 {
        return false;
    }
    // The zeros from the lowest set bit to the highest.
    let mut run = !mask & (u64::MAX >> mask.leading_zeros()) & (u64::MAX << mask.trailing_zeros());
    // After step k, bit i is set iff bits i .. i + 2^(k+1) - 1 all were.
    for step in 0..index_bits {
        run &= run >> (1u32 << step);
    }
    run != 0
}

/// One chunk's walk, as [`encode_chunks`] records it.
struct ChunkWalk {
    /// The arena holding the chunk's entries, and where they start in it.
    arena: usize,
    start: usize,
    /// Entries the walk stored, leading fillers included.
    stored: usize,
    /// Values in the chunk.
    len: usize,
    /// Index after the chunk's last stored value (0 if none).
    next: usize,
    /// Nonzero values seen before any rewrite.
    nonzeros: usize,
}

/// Encodes `chunks`, consecutive chunks of one blob, in parallel and stitches their entries into
/// exactly what the sequential walk stores.
///
/// Each chunk is walked as if it started the blob (zeroing pruned values on the way, for
/// [`Pruned`]), its entries appended to its thread's arena: one growing buffer per pool thread,
/// so memory is faulted in once per thread rather than once per chunk (faults dominated when
/// every chunk had a vector of its own). The output is then allocated once at its exact size and
/// filled in parallel: a chunk's own leading fillers and first gap are redone with the zeros
/// carried over from the chunks before it. Returns the entries and the number of nonzero values
/// seen before any rewrite.
fn encode_chunks<S: PartSource + Send, G: GapInt>(chunks: Vec<S>, index_bits: u8) -> (Entries<G>, usize) {
    let max_gap = (1usize << index_bits) - 1;
    // One arena per pool thread, and one for a caller outside the pool.
    let arenas_len = rayon::current_num_threads() + 1;
    let blob_len: usize = chunks.iter().map(|chunk| chunk.len()).sum();
    // A first guess of a thread's share at 1 in 8 values stored; arenas grow past it if need be.
    let guess = blob_len / 8 / arenas_len + PART_LEN;
    let arenas: Vec<Mutex<Option<Entries<G>>>> = (0..arenas_len).map(|_| Mutex::new(None)).collect();
    let walks: Vec<ChunkWalk> = chunks
        .into_par_iter()
        .map(|chunk| {
            let arena = rayon::current_thread_index().map_or(arenas_len - 1, |i| i.min(arenas_len - 2));
            // Only this thread uses this arena, so the lock is never contended (nor poisoned:
            // a panic here unwinds out of the whole encode).
            let mut guard = arenas[arena].lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let entries = guard.get_or_insert_with(|| Entries::with_capacity(guess));
            let start = entries.values.len();
            let len = chunk.len();
            let (next, nonzeros) = walk_run(chunk, index_bits, entries);
            ChunkWalk {
                arena,
                start,
                stored: entries.values.len() - start,
                len,
                next,
                nonzeros,
            }
        })
        .collect();
    let arenas: Vec<Option<Entries<G>>> = arenas
        .into_iter()
        .map(|arena| arena.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner()))
        .collect();

    // For each chunk with a stored value: its own leading fillers, the raw run before its first
    // value in the whole blob, and how many entries it has in the output.
    let mut carry = 0usize;
    let mut total = 0usize;
    let mut placed = Vec::with_capacity(walks.len());
    for walk in &walks {
        if walk.next == 0 {
            carry += walk.len;
            continue;
        }
        let entries = arenas[walk.arena].as_ref().expect("a chunk's arena exists");
        let values = &entries.values[walk.start..walk.start + walk.stored];
        let gaps = &entries.gaps[walk.start..walk.start + walk.stored];
        let own_fillers = values.iter().take_while(|v| !is_nonzero(**v)).count();
        let lead = (own_fillers << index_bits) + gaps[own_fillers].into();
        let run = carry + lead;
        let stored = (run >> index_bits) + walk.stored - own_fillers;
        placed.push((&values[own_fillers..], &gaps[own_fillers..], run, stored));
        total += stored;
        carry = walk.len - walk.next;
    }
    let (tail_fillers, tail_rest) = (carry >> index_bits, carry & max_gap);
    total += tail_fillers + usize::from(tail_rest > 0);

    let mut out = Entries::with_capacity(total);
    out.append(total, |values, gaps| {
        let (mut values_rest, mut gaps_rest) = (&mut values[..total], &mut gaps[..total]);
        let mut pieces = Vec::with_capacity(placed.len());
        for &(own_values, own_gaps, run, stored) in &placed {
            let (v, vr) = std::mem::take(&mut values_rest).split_at_mut(stored);
            let (g, gr) = std::mem::take(&mut gaps_rest).split_at_mut(stored);
            (values_rest, gaps_rest) = (vr, gr);
            pieces.push((v, g, own_values, own_gaps, run));
        }
        pieces.into_par_iter().for_each(|(v, g, own_values, own_gaps, run)| {
            let fillers = run >> index_bits;
            let (v_fillers, v_own) = v.split_at_mut(fillers);
            let (g_fillers, g_own) = g.split_at_mut(fillers);
            v_fillers.fill(MaybeUninit::new(0.0));
            g_fillers.fill(MaybeUninit::new(G::from_gap(max_gap)));
            write_slice(v_own, own_values);
            write_slice(g_own, own_gaps);
            g_own[0] = MaybeUninit::new(G::from_gap(run & max_gap));
        });
        values_rest[..tail_fillers].fill(MaybeUninit::new(0.0));
        gaps_rest[..tail_fillers].fill(MaybeUninit::new(G::from_gap(max_gap)));
        if tail_rest > 0 {
            values_rest[tail_fillers] = MaybeUninit::new(0.0);
            gaps_rest[tail_fillers] = MaybeUninit::new(G::from_gap(tail_rest - 1));
        }
        total
    });
    let nonzeros = walks.iter().map(|walk| walk.nonzeros).sum();
    (out, nonzeros)
}

/// Copies `src` into `dst` (of the same length), initialising it.
fn write_slice<T: Copy>(dst: &mut [MaybeUninit<T>], src: &[T]) {
    for (slot, &value) in dst.iter_mut().zip(src) {
        slot.write(value);
    }
}

/// Encodes one blob given as `sources` (its consecutive chunks, or one source for all of it),
/// sequentially or in parallel. Returns the entries and the number of nonzero values seen.
fn encode_any<S: PartSource + Send, G: GapInt>(mut sources: Vec<S>, index_bits: u8) -> (Entries<G>, usize) {
    if sources.len() == 1 {
        let source = sources.pop().expect("one source");
        let mut entries = Entries::new();
        let nonzeros = walk_whole(source, index_bits, &mut entries);
        (entries, nonzeros)
    } else {
        encode_chunks(sources, index_bits)
    }
}

/// Encodes `flat` (a row-major flattened blob) with `index_bits`-bit gaps, in one pass (in
/// parallel chunks from 2 Mi values on, stitched into exactly the sequential output).
///
/// # The rule
///
/// Walk the row-major flattened blob. An entry `(value, gap)` is stored when
///
/// * the value is nonzero (`v != 0.0`; NaN is nonzero, and **-0.0 is a zero**,
///   so it decodes as +0.0), or
/// * the value is zero and the run of zeros since the last stored entry has
///   reached `2^B - 1`, the largest gap `B` bits hold: a *filler* `(0.0, 2^B - 1)`.
///
/// An entry's gap is the number of zeros skipped before it. A trailing run of
/// `z` zeros (after the last filler) ends with one entry `(0.0, z - 1)`, so the
/// decoder "for each entry: emit `gap` zeros, then the value" rebuilds the flat
/// blob exactly, length included.
///
/// Gaps are unsigned: `u8` for `B <= 8`, `u16` for `9 <= B <= 16`.
///
/// ```
/// use sparse::{encode_gaps, Gaps};
/// // B = 2: gaps hold at most 3.
/// let flat = [0.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0];
/// let encoded = encode_gaps(&flat, 2).unwrap();
/// assert_eq!(encoded.values, [0.0, 5.0, 0.0]);
/// assert_eq!(encoded.gaps, Gaps::U8(vec![3, 0, 1]));
/// assert_eq!(encoded.decode().unwrap(), flat);
/// ```
///
/// # Errors
/// [`SparseError::InvalidIndexBits`] unless `1 <= index_bits <= 16`.
pub fn encode_gaps(flat: &[f32], index_bits: u8) -> Result<GapEncoded, SparseError> {
    validate_index_bits(index_bits)?;
    let sources: Vec<ReadOnly<'_>> = if flat.len() >= PARALLEL_MIN_LEN {
        flat.chunks(PARALLEL_CHUNK_LEN).map(ReadOnly).collect()
    } else {
        vec![ReadOnly(flat)]
    };
    let (encoded, _) = encode_sources(sources, index_bits, flat.len());
    Ok(encoded)
}

/// Encodes `sources` (the blob's consecutive chunks) with the gap type `index_bits` calls for;
/// also returns the number of nonzero values seen.
fn encode_sources<S: PartSource + Send>(sources: Vec<S>, index_bits: u8, dense_len: usize) -> (GapEncoded, usize) {
    let (values, gaps, nonzeros) = if index_bits <= 8 {
        let (entries, nonzeros) = encode_any::<S, u8>(sources, index_bits);
        (entries.values, Gaps::U8(entries.gaps), nonzeros)
    } else {
        let (entries, nonzeros) = encode_any::<S, u16>(sources, index_bits);
        (entries.values, Gaps::U16(entries.gaps), nonzeros)
    };
    let encoded = GapEncoded {
        values,
        gaps,
        index_bits,
        dense_len,
    };
    (encoded, nonzeros)
}

/// What [`encode_gaps_pruned`] did to the blob besides encoding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneCounts {
    /// Nonzero values before the pass.
    pub nonzeros_before: usize,
    /// Nonzero values after it, the ones kept: exactly the stored entries that are not fillers or
    /// the trailing entry.
    pub nonzeros_after: usize,
}

/// Prunes `flat` at magnitude `cut` and gap-encodes the result, in one pass over the blob (in
/// parallel chunks from 2 Mi values on).
///
/// Every value with `|w| <= cut` becomes `+0.0`; the others (`|w| > cut`, NaN included, since NaN
/// counts as nonzero in this crate) are left as they are. The output is exactly
/// `encode_gaps(&flat_after, index_bits)`. This is how a magnitude pruning rule (a cut from the
/// `prune` crate) and its sparse export become one pass: the same as `prune::prune_in_place` then
/// [`encode_gaps`], reading and writing the blob once instead of twice.
///
/// ```
/// use sparse::{encode_gaps, encode_gaps_pruned, Gaps};
/// let mut flat = [0.5f32, -0.1, 0.3, -0.7, 0.2];
/// let (encoded, counts) = encode_gaps_pruned(&mut flat, 8, 0.3).unwrap();
/// assert_eq!(flat, [0.5, 0.0, 0.0, -0.7, 0.0]);
/// assert_eq!(encoded, encode_gaps(&flat, 8).unwrap());
/// assert_eq!(encoded.values, [0.5, -0.7, 0.0]);
/// assert_eq!(encoded.gaps, Gaps::U8(vec![0, 2, 0]));
/// assert_eq!((counts.nonzeros_before, counts.nonzeros_after), (5, 2));
/// ```
///
/// # Errors
/// [`SparseError::InvalidIndexBits`] unless `1 <= index_bits <= 16`, [`SparseError::InvalidCut`]
/// for a negative or NaN `cut`; `flat` is then unchanged.
pub fn encode_gaps_pruned(
    flat: &mut [f32],
    index_bits: u8,
    cut: f32,
) -> Result<(GapEncoded, PruneCounts), SparseError> {
    let cut = checked_cut(index_bits, cut)?;
    let dense_len = flat.len();
    let sources: Vec<Pruned<'_>> = if dense_len >= PARALLEL_MIN_LEN {
        flat.chunks_mut(PARALLEL_CHUNK_LEN).map(|c| Pruned(c, cut)).collect()
    } else {
        vec![Pruned(flat, cut)]
    };
    Ok(encode_counted(sources, index_bits, dense_len))
}

/// What [`encode_gaps_pruned`] returns, leaving `flat` as it is: the encoding of `flat` pruned at
/// magnitude `cut`, for when only the encoding is wanted (a sparse export of weights read from a
/// file, say), without a writable copy of the blob.
///
/// ```
/// use sparse::{encode_gaps_cut, encode_gaps_pruned};
/// let flat = [0.5f32, -0.1, 0.3, -0.7, 0.2];
/// let (encoded, counts) = encode_gaps_cut(&flat, 8, 0.3).unwrap();
/// assert_eq!(flat, [0.5, -0.1, 0.3, -0.7, 0.2]);
/// assert_eq!((encoded, counts), encode_gaps_pruned(&mut flat.clone(), 8, 0.3).unwrap());
/// ```
///
/// # Errors
/// As [`encode_gaps_pruned`].
pub fn encode_gaps_cut(flat: &[f32], index_bits: u8, cut: f32) -> Result<(GapEncoded, PruneCounts), SparseError> {
    let cut = checked_cut(index_bits, cut)?;
    let dense_len = flat.len();
    let sources: Vec<CutView<'_>> = if dense_len >= PARALLEL_MIN_LEN {
        flat.chunks(PARALLEL_CHUNK_LEN).map(|c| CutView(c, cut)).collect()
    } else {
        vec![CutView(flat, cut)]
    };
    Ok(encode_counted(sources, index_bits, dense_len))
}

/// Validates the arguments of a pruning encoder; returns the cut's magnitude bits.
fn checked_cut(index_bits: u8, cut: f32) -> Result<u32, SparseError> {
    validate_index_bits(index_bits)?;
    // -0.0 passes (it equals 0.0) and is taken as +0.0 by its magnitude bits.
    if cut.is_nan() || cut < 0.0 {
        return Err(SparseError::InvalidCut {
            cut_bits: cut.to_bits(),
        });
    }
    Ok(cut.to_bits() & 0x7fff_ffff)
}

/// Encodes pruning sources; the counts of nonzeros before and after.
fn encode_counted<S: PartSource + Send>(
    sources: Vec<S>,
    index_bits: u8,
    dense_len: usize,
) -> (GapEncoded, PruneCounts) {
    let (encoded, nonzeros_before) = encode_sources(sources, index_bits, dense_len);
    let counts = PruneCounts {
        nonzeros_before,
        nonzeros_after: encoded.nonzero_count(),
    };
    (encoded, counts)
}

/// Number of entries (including fillers and the trailing entry) that
/// [`encode_gaps`] would store, computed without allocating.
///
/// The sparse size in bytes is `count * (4 + gap_width_bytes(index_bits))`.
///
/// # Errors
/// [`SparseError::InvalidIndexBits`] unless `1 <= index_bits <= 16`.
pub fn gap_entry_count(flat: &[f32], index_bits: u8) -> Result<usize, SparseError> {
    validate_index_bits(index_bits)?;
    let (entries, next) = count_walk(flat, index_bits);
    let trailing = flat.len() - next;
    let max_gap = (1usize << index_bits) - 1;
    Ok(entries + (trailing >> index_bits) + usize::from(trailing & max_gap > 0))
}

/// Rebuilds a flat blob of `dense_len` elements: for each entry, `gap` zeros
/// then the value.
///
/// The entries are validated in a first pass, before the output is allocated.
/// Any gap width is accepted (the decoder does not need `B`).
///
/// # Errors
/// * [`SparseError::ValuesGapsLengthMismatch`] when `values` and `gaps` differ in length;
/// * [`SparseError::GapOverrun`] when an entry would land at or past `dense_len`;
/// * [`SparseError::DecodedTooShort`] when the entries cover fewer than `dense_len` elements.
pub fn decode_gaps(values: &[f32], gaps: GapsRef<'_>, dense_len: usize) -> Result<Vec<f32>, SparseError> {
    validate_entries(values, gaps, dense_len)?;
    // Justified: dense_len <= sum(gap + 1) over the given entries. A zeroed allocation is fresh,
    // untouched memory, so the advice still applies to all of it.
    let mut dense = vec![0.0f32; dense_len];
    advise_huge_pages(&mut dense);
    scatter_entries(values, gaps, &mut dense);
    Ok(dense)
}

/// Like [`decode_gaps`], into a caller's buffer of the blob's length (which
/// spares the page faults of a fresh allocation when decoding many blobs).
/// `out` is left untouched when the entries are invalid.
///
/// # Errors
/// As [`decode_gaps`] with `dense_len = out.len()`.
pub fn decode_gaps_into(values: &[f32], gaps: GapsRef<'_>, out: &mut [f32]) -> Result<(), SparseError> {
    validate_entries(values, gaps, out.len())?;
    out.fill(0.0);
    scatter_entries(values, gaps, out);
    Ok(())
}

fn validate_entries(values: &[f32], gaps: GapsRef<'_>, dense_len: usize) -> Result<(), SparseError> {
    match gaps {
        GapsRef::U8(gaps) => validate_typed(values, gaps, dense_len),
        GapsRef::U16(gaps) => validate_typed(values, gaps, dense_len),
    }
}

fn validate_typed<G: Copy + Into<usize>>(values: &[f32], gaps: &[G], dense_len: usize) -> Result<(), SparseError> {
    if values.len() != gaps.len() {
        return Err(SparseError::ValuesGapsLengthMismatch {
            values: values.len(),
            gaps: gaps.len(),
        });
    }
    let mut position = 0usize;
    for (entry, &gap) in gaps.iter().enumerate() {
        let gap: usize = gap.into();
        // position + gap is the entry's own index; it must be < dense_len.
        match position.checked_add(gap) {
            Some(index) if index < dense_len => position = index + 1,
            _ => {
                return Err(SparseError::GapOverrun {
                    entry,
                    gap,
                    position,
                    dense_len,
                })
            }
        }
    }
    if position != dense_len {
        return Err(SparseError::DecodedTooShort {
            decoded: position,
            dense_len,
        });
    }
    Ok(())
}

/// Writes the values at their positions in a zeroed `dense`; the entries were validated.
fn scatter_entries(values: &[f32], gaps: GapsRef<'_>, dense: &mut [f32]) {
    fn scatter<G: Copy + Into<usize>>(values: &[f32], gaps: &[G], dense: &mut [f32]) {
        let mut position = 0usize;
        for (&value, &gap) in values.iter().zip(gaps) {
            position += gap.into();
            dense[position] = value;
            position += 1;
        }
    }
    match gaps {
        GapsRef::U8(gaps) => scatter(values, gaps, dense),
        GapsRef::U16(gaps) => scatter(values, gaps, dense),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The rule applied one element at a time, straight from the spec, as an
    /// independent reference for the block-wise walk.
    fn reference_encode(flat: &[f32], index_bits: u8) -> (Vec<u32>, Vec<usize>) {
        let max_gap = (1usize << index_bits) - 1;
        let (mut values, mut gaps) = (Vec::new(), Vec::new());
        let mut run = 0usize;
        for &value in flat {
            if value != 0.0 {
                values.push(value.to_bits());
                gaps.push(run);
                run = 0;
            } else if run == max_gap {
                values.push(0);
                gaps.push(max_gap);
                run = 0;
            } else {
                run += 1;
            }
        }
        if run > 0 {
            values.push(0);
            gaps.push(run - 1);
        }
        (values, gaps)
    }

    fn gaps_as_usize(gaps: &Gaps) -> Vec<usize> {
        match gaps {
            Gaps::U8(g) => g.iter().map(|&x| usize::from(x)).collect(),
            Gaps::U16(g) => g.iter().map(|&x| usize::from(x)).collect(),
        }
    }

    #[test]
    fn block_walk_matches_the_element_rule_on_mixed_runs() {
        // Runs of zeros of many lengths crossing 64-value block boundaries.
        let mut flat = Vec::new();
        for run in [0usize, 1, 2, 3, 4, 5, 63, 64, 65, 127, 128, 129, 255, 256, 300, 1000] {
            flat.extend(std::iter::repeat_n(0.0f32, run));
            flat.push(run as f32 + 0.5);
        }
        flat.extend(std::iter::repeat_n(0.0f32, 777));
        for bits in MIN_INDEX_BITS..=MAX_INDEX_BITS {
            let encoded = encode_gaps(&flat, bits).unwrap();
            let (values, gaps) = reference_encode(&flat, bits);
            let got: Vec<u32> = encoded.values.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, values, "B={bits}");
            assert_eq!(gaps_as_usize(&encoded.gaps), gaps, "B={bits}");
            assert_eq!(gap_entry_count(&flat, bits).unwrap(), values.len(), "B={bits}");
        }
    }

    /// Index bits (small ones weighted, so runs pass 2^B - 1 often) and a blob of zero runs
    /// around the gap limit and random values, some of them -0.0 or tiny.
    fn runs_blob() -> impl Strategy<Value = (u8, Vec<f32>)> {
        prop_oneof![3 => 1u8..=6, 1 => 7u8..=16].prop_flat_map(|bits| {
            let period = 1usize << bits;
            let cap = (3 * period + 2).min(3000);
            let zeros = prop_oneof![
                Just(0usize),
                Just(period.saturating_sub(2)),
                Just(period - 1),
                Just(period),
                Just(period + 1),
                Just(2 * period),
                0..cap,
            ];
            let value = prop_oneof![
                4 => -1.0f32..1.0,
                1 => Just(-0.0f32),
                1 => Just(f32::NAN),
                1 => Just(f32::from_bits(1)),
            ];
            (Just(bits), prop::collection::vec((zeros, value), 0..12), 0..cap).prop_map(|(bits, segments, trailing)| {
                let mut flat = Vec::new();
                for (zeros, v) in segments {
                    flat.extend(std::iter::repeat_n(0.0f32, zeros));
                    flat.push(v);
                }
                flat.extend(std::iter::repeat_n(0.0f32, trailing));
                (bits, flat)
            })
        })
    }

    fn encoded_bits(encoded: &GapEncoded) -> (Vec<u32>, Vec<usize>) {
        (
            encoded.values.iter().map(|v| v.to_bits()).collect(),
            gaps_as_usize(&encoded.gaps),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Chunks of any length (so runs cross chunk boundaries, fill whole chunks, and end on
        /// them) stitch into exactly the element-by-element rule.
        #[test]
        fn chunked_encoding_equals_the_sequential_rule((bits, flat) in runs_blob(), chunk_len in 1usize..400) {
            let scans: Vec<ReadOnly<'_>> = flat.chunks(chunk_len).map(ReadOnly).collect();
            let (encoded, nonzeros) = encode_sources(scans, bits, flat.len());
            prop_assert_eq!(encoded_bits(&encoded), reference_encode(&flat, bits));
            prop_assert_eq!(encoded_bits(&encoded), encoded_bits(&encode_gaps(&flat, bits).unwrap()));
            prop_assert_eq!(nonzeros, flat.iter().filter(|v| **v != 0.0).count());
        }

        /// The fused pass, chunked or not, leaves the blob as zeroing then encoding does, and
        /// encodes it the same; the read-only pass encodes it the same and leaves it alone.
        #[test]
        fn fused_chunked_pass_equals_zeroing_then_encoding(
            (bits, flat) in runs_blob(),
            chunk_len in 1usize..400,
            cut in prop_oneof![Just(0.0f32), 0.0f32..1.0],
        ) {
            // The rule as the prune crate states it: keep |w| > cut; NaN is kept.
            let keep = move |w: f32| w.is_nan() || w.abs() > cut;
            let zeroed: Vec<f32> = flat.iter().map(|&w| if keep(w) { w } else { 0.0 }).collect();
            let expected = reference_encode(&zeroed, bits);

            let mut chunked = flat.clone();
            let scans: Vec<Pruned<'_>> = chunked.chunks_mut(chunk_len).map(|c| Pruned(c, cut.to_bits())).collect();
            let (encoded, nonzeros) = encode_sources(scans, bits, flat.len());
            prop_assert_eq!(encoded_bits(&encoded), expected.clone());
            prop_assert_eq!(nonzeros, flat.iter().filter(|v| **v != 0.0).count());
            let same_bits = |a: &[f32], b: &[f32]| a.iter().map(|v| v.to_bits()).eq(b.iter().map(|v| v.to_bits()));
            prop_assert!(same_bits(&chunked, &zeroed));

            let views: Vec<CutView<'_>> = flat.chunks(chunk_len).map(|c| CutView(c, cut.to_bits())).collect();
            let (encoded, nonzeros) = encode_sources(views, bits, flat.len());
            prop_assert_eq!(encoded_bits(&encoded), expected.clone());
            prop_assert_eq!(nonzeros, flat.iter().filter(|v| **v != 0.0).count());
            let (viewed, view_counts) = encode_gaps_cut(&flat, bits, cut).unwrap();

            let mut whole = flat.clone();
            let (encoded, counts) = encode_gaps_pruned(&mut whole, bits, cut).unwrap();
            prop_assert_eq!(encoded_bits(&encoded), expected);
            prop_assert!(same_bits(&whole, &zeroed));
            prop_assert_eq!(counts.nonzeros_before, flat.iter().filter(|v| **v != 0.0).count());
            prop_assert_eq!(counts.nonzeros_after, zeroed.iter().filter(|v| **v != 0.0).count());
            prop_assert_eq!(encoded_bits(&viewed), encoded_bits(&encoded));
            prop_assert_eq!(view_counts, counts);
        }
    }

    #[test]
    fn chunks_of_only_zeros_carry_the_run() {
        // B = 2 (max gap 3): a value, 10 zeros spread over chunks of 3, a value, 5 zeros.
        let mut flat = vec![1.0f32];
        flat.extend([0.0; 10]);
        flat.push(2.0);
        flat.extend([0.0; 5]);
        for chunk_len in 1..=flat.len() + 1 {
            let scans: Vec<ReadOnly<'_>> = flat.chunks(chunk_len).map(ReadOnly).collect();
            let (encoded, _) = encode_sources(scans, 2, flat.len());
            // 10 zeros: the 4th and 8th are fillers, 2 remain: gap 2. 5 zeros: the 4th is a
            // filler, 1 remains: the trailing (0, 0).
            assert_eq!(encoded.values, [1.0, 0.0, 0.0, 2.0, 0.0, 0.0], "chunk {chunk_len}");
            assert_eq!(encoded.gaps, Gaps::U8(vec![0, 3, 3, 2, 3, 0]), "chunk {chunk_len}");
        }
    }

    #[test]
    fn parallel_sized_blobs_equal_the_sequential_rule() {
        // Past PARALLEL_MIN_LEN, with zero runs crossing the 256 Ki chunk boundaries.
        let len = PARALLEL_MIN_LEN + 3 * PARALLEL_CHUNK_LEN / 2 + 7;
        let mut state = 7u64;
        let mut flat: Vec<f32> = (0..len)
            .map(|i| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                // Dense stretches, a long empty stretch across a chunk boundary, sparse elsewhere.
                let empty = (PARALLEL_CHUNK_LEN - 1000..2 * PARALLEL_CHUNK_LEN + 5).contains(&i);
                if !empty && (state >> 40).is_multiple_of(23) {
                    (state >> 41) as f32 / (1u64 << 23) as f32 - 0.5
                } else {
                    0.0
                }
            })
            .collect();
        flat[len - 1] = 0.0;
        for bits in [1, 5, 8, 9, 16] {
            let encoded = encode_gaps(&flat, bits).unwrap();
            assert_eq!(encoded_bits(&encoded), reference_encode(&flat, bits), "B={bits}");
            let mut pruned = flat.clone();
            let (fused, counts) = encode_gaps_pruned(&mut pruned, bits, 0.25).unwrap();
            let zeroed: Vec<f32> = flat.iter().map(|&w| if w.abs() > 0.25 { w } else { 0.0 }).collect();
            assert_eq!(encoded_bits(&fused), reference_encode(&zeroed, bits), "B={bits}");
            assert_eq!(pruned, zeroed);
            assert_eq!(counts.nonzeros_after, fused.nonzero_count());
            assert_eq!(encode_gaps_cut(&flat, bits, 0.25).unwrap(), (fused, counts), "B={bits}");
        }
        // Pools of other sizes (arenas per thread), entered from inside one of their tasks.
        let expected = encode_gaps(&flat, 5).unwrap();
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let encoded = pool.install(|| encode_gaps(&flat, 5).unwrap());
            assert_eq!(encoded, expected, "{threads} threads");
        }
    }

    proptest! {
        /// The bit trick agrees with measuring every gap between consecutive set bits.
        #[test]
        fn inner_zero_runs_are_found(mask in prop_oneof![any::<u64>(), any::<u64>().prop_map(|m| m & m.rotate_left(17) & m.rotate_left(40))], bits in 1u8..=8) {
            prop_assume!(mask != 0);
            let set: Vec<u32> = (0..64).filter(|&i| mask >> i & 1 == 1).collect();
            let longest = set.windows(2).map(|w| w[1] - w[0] - 1).max().unwrap_or(0);
            prop_assert_eq!(has_inner_zero_run(mask, bits), longest >= 1 << bits);
        }
    }

    #[test]
    fn cuts_that_are_not_magnitudes_are_refused_and_change_nothing() {
        let mut flat = [0.5f32, -0.1];
        for cut in [-0.1f32, f32::NAN, f32::NEG_INFINITY] {
            assert_eq!(
                encode_gaps_pruned(&mut flat, 8, cut),
                Err(SparseError::InvalidCut {
                    cut_bits: cut.to_bits()
                })
            );
        }
        assert_eq!(flat, [0.5, -0.1]);
        for cut in [-0.1f32, f32::NAN] {
            let refused = Err(SparseError::InvalidCut {
                cut_bits: cut.to_bits(),
            });
            assert_eq!(encode_gaps_cut(&flat, 8, cut), refused);
        }
        let (encoded, _) = encode_gaps_pruned(&mut flat, 8, -0.0).unwrap();
        assert_eq!(encoded.values, [0.5, -0.1]);
    }

    #[test]
    fn gap_type_follows_index_bits() {
        assert!(matches!(encode_gaps(&[1.0], 8).unwrap().gaps, Gaps::U8(_)));
        assert!(matches!(encode_gaps(&[1.0], 9).unwrap().gaps, Gaps::U16(_)));
        assert_eq!(gap_width_bytes(1), Ok(1));
        assert_eq!(gap_width_bytes(16), Ok(2));
    }
}
