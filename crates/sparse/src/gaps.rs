//! Deep Compression's relative-index ("gap") encoding of a pruned blob.
//!
//! See [`encode_gaps`] for the rule.

use rayon::prelude::*;

use crate::error::SparseError;
use crate::scan::{for_each_kept, for_each_nonzero, rewrite_counting};

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

/// Receives the entries of the walk; lets counting and encoding share it.
trait EntrySink {
    /// One entry `(value, gap)`.
    fn entry(&mut self, value: f32, gap: usize);
    /// `count` fillers `(0.0, max_gap)`.
    fn fillers(&mut self, count: usize, max_gap: usize);
}

/// Counts entries without storing them.
struct EntryCounter(usize);

impl EntrySink for EntryCounter {
    #[inline(always)]
    fn entry(&mut self, _value: f32, _gap: usize) {
        self.0 += 1;
    }
    #[inline(always)]
    fn fillers(&mut self, count: usize, _max_gap: usize) {
        self.0 += count;
    }
}

/// An unsigned gap type.
trait GapInt: Copy {
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

/// Stores entries.
struct EntryStore<G> {
    values: Vec<f32>,
    gaps: Vec<G>,
}

impl<G> EntryStore<G> {
    fn with_capacity(capacity: usize) -> Self {
        EntryStore {
            values: Vec::with_capacity(capacity),
            gaps: Vec::with_capacity(capacity),
        }
    }
}

impl<G: GapInt> EntrySink for EntryStore<G> {
    #[inline(always)]
    fn entry(&mut self, value: f32, gap: usize) {
        self.values.push(value);
        self.gaps.push(G::from_gap(gap));
    }
    #[inline(always)]
    fn fillers(&mut self, count: usize, max_gap: usize) {
        self.values.resize(self.values.len() + count, 0.0);
        self.gaps.resize(self.gaps.len() + count, G::from_gap(max_gap));
    }
}

/// A source of the nonzero entries of one run of values, in increasing index order.
trait Scan {
    /// Number of values scanned.
    fn len(&self) -> usize;
    /// Calls `visit(index, value)` for every value to store; returns the number of nonzero values
    /// seen before any rewrite.
    fn scan<F: FnMut(usize, f32)>(self, visit: F) -> usize;
}

/// The nonzeros of a slice, read only.
struct ReadOnly<'a>(&'a [f32]);

impl Scan for ReadOnly<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.0.len()
    }
    #[inline(always)]
    fn scan<F: FnMut(usize, f32)>(self, mut visit: F) -> usize {
        let mut nonzeros = 0;
        for_each_nonzero(self.0, |index, value| {
            nonzeros += 1;
            visit(index, value);
        });
        nonzeros
    }
}

/// The kept nonzeros of a slice whose rejected values are zeroed in the same pass.
struct Where<'a, K>(&'a mut [f32], &'a K);

impl<K: Fn(f32) -> bool> Scan for Where<'_, K> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.0.len()
    }
    #[inline(always)]
    fn scan<F: FnMut(usize, f32)>(self, visit: F) -> usize {
        for_each_kept(self.0, self.1, visit)
    }
}

/// What a walk saw besides the entries it stored.
#[derive(Debug, Clone, Copy)]
struct WalkEnds {
    /// Whether a nonzero was stored.
    started: bool,
    /// Zeros before the first stored nonzero (all values when there is none).
    lead: usize,
    /// Zeros after the last stored nonzero (all values when there is none).
    trail: usize,
    /// Nonzero values seen (before any rewrite).
    nonzeros: usize,
}

/// The encoding walk, shared by [`encode_gaps`], [`encode_gaps_where`] and [`gap_entry_count`].
///
/// `pending` is the run of zeros since the last stored entry; it stays
/// `<= max_gap` because a zero arriving when it equals `max_gap` is stored as a
/// filler. Adding `k` zeros at once to a run of `r` therefore stores
/// `(r + k) >> B` fillers and leaves `(r + k) & max_gap` pending. Equivalently, a
/// raw run of `R` zeros before an entry stores `R >> B` fillers and leaves gap
/// `R & max_gap`, which is what lets chunks be encoded apart and stitched.
///
/// `whole`: the values are the whole blob (leading fillers and the trailing entry
/// are stored). Otherwise they are one chunk of it: the first nonzero is stored with
/// gap 0 and no fillers before it, and nothing is stored after the last nonzero;
/// [`WalkEnds`] gives the runs the stitching needs.
#[inline(always)]
fn walk<S: Scan, K: EntrySink>(scan: S, index_bits: u8, sink: &mut K, whole: bool) -> WalkEnds {
    let len = scan.len();
    let max_gap = (1usize << index_bits) - 1;
    #[inline(always)]
    fn add_zeros<K: EntrySink>(pending: &mut usize, zeros: usize, index_bits: u8, sink: &mut K) {
        let max_gap = (1usize << index_bits) - 1;
        // Cannot overflow: pending <= 65535 and zeros <= flat.len() <= isize::MAX.
        let total = *pending + zeros;
        if total > max_gap {
            sink.fillers(total >> index_bits, max_gap);
            *pending = total & max_gap;
        } else {
            *pending = total;
        }
    }
    let mut pending = 0usize;
    let mut next = 0usize;
    let mut started = whole;
    let mut lead = 0usize;
    let nonzeros = scan.scan(|index, value| {
        if started {
            add_zeros(&mut pending, index - next, index_bits, sink);
            sink.entry(value, pending);
        } else {
            started = true;
            lead = index;
            sink.entry(value, 0);
        }
        pending = 0;
        next = index + 1;
    });
    if whole {
        add_zeros(&mut pending, len - next, index_bits, sink);
        if pending > 0 {
            sink.entry(0.0, pending - 1);
        }
        debug_assert!(pending <= max_gap);
    }
    let started = if whole { next > 0 } else { started };
    WalkEnds {
        started,
        lead: if started { lead } else { len },
        trail: len - next,
        nonzeros,
    }
}

/// Up to this many values (256 KiB, cache-resident) [`encode_gaps_where`] zeroes the blob first and
/// then encodes it into exactly pre-sized vectors; above, it does both in one pass.
const PRESIZED_MAX_LEN: usize = 1 << 16;

/// Blobs of at least this many values are encoded in parallel chunks on the rayon pool.
const PARALLEL_MIN_LEN: usize = 1 << 21;
/// Values per chunk of the parallel encoder (1 MiB of f32).
const PARALLEL_CHUNK_LEN: usize = 1 << 18;

/// Encodes `scans`, consecutive chunks of one blob, in parallel and stitches their entries into
/// exactly what the sequential walk stores: the zero run is carried across chunk boundaries,
/// so a chunk's leading fillers and first gap are decided once the runs before it are known.
/// Returns the values, the gaps and the number of nonzero values seen.
fn encode_chunks<S: Scan + Send, G: GapInt + Send + Sync>(scans: Vec<S>, index_bits: u8) -> (Vec<f32>, Vec<G>, usize) {
    let max_gap = (1usize << index_bits) - 1;
    let parts: Vec<(EntryStore<G>, WalkEnds, usize)> = scans
        .into_par_iter()
        .map(|scan| {
            let len = scan.len();
            let mut store = EntryStore::with_capacity(len / 16);
            let ends = walk(scan, index_bits, &mut store, false);
            (store, ends, len)
        })
        .collect();

    // Where each chunk's entries go: the raw run of zeros before its first nonzero decides its
    // leading fillers (run >> B) and its first gap (run & max_gap).
    let mut carry = 0usize;
    let mut total = 0usize;
    let mut runs = Vec::with_capacity(parts.len());
    for (store, ends, len) in &parts {
        if ends.started {
            let run = carry + ends.lead;
            runs.push(Some(run));
            total += (run >> index_bits) + store.values.len();
            carry = ends.trail;
        } else {
            runs.push(None);
            carry += len;
        }
    }
    let tail_fillers = carry >> index_bits;
    let tail_rest = carry & max_gap;
    total += tail_fillers + usize::from(tail_rest > 0);

    // Zeroed allocations are fresh zero pages: no pass is spent clearing them.
    let mut values = vec![0.0f32; total];
    let mut gaps = vec![G::from_gap(0); total];
    let mut pieces = Vec::with_capacity(parts.len());
    let (mut values_rest, mut gaps_rest) = (values.as_mut_slice(), gaps.as_mut_slice());
    for ((store, _, _), run) in parts.iter().zip(&runs) {
        if let Some(run) = *run {
            let n = (run >> index_bits) + store.values.len();
            let (v, vr) = std::mem::take(&mut values_rest).split_at_mut(n);
            let (g, gr) = std::mem::take(&mut gaps_rest).split_at_mut(n);
            (values_rest, gaps_rest) = (vr, gr);
            pieces.push((v, g, store, run));
        }
    }
    pieces.into_par_iter().for_each(|(v, g, store, run)| {
        let fillers = run >> index_bits;
        // Filler values are the zeros already there.
        g[..fillers].fill(G::from_gap(max_gap));
        v[fillers..].copy_from_slice(&store.values);
        g[fillers..].copy_from_slice(&store.gaps);
        g[fillers] = G::from_gap(run & max_gap);
    });
    gaps_rest[..tail_fillers].fill(G::from_gap(max_gap));
    if tail_rest > 0 {
        gaps_rest[tail_fillers] = G::from_gap(tail_rest - 1);
    }
    let nonzeros = parts.iter().map(|(_, ends, _)| ends.nonzeros).sum();
    (values, gaps, nonzeros)
}

/// Encodes one blob given as `scans` (its consecutive chunks, or one scan of it all), sequentially
/// or in parallel. Returns the values, gaps and the number of nonzero values seen.
fn encode_any<S: Scan + Send, G: GapInt + Send + Sync>(
    mut scans: Vec<S>,
    index_bits: u8,
    capacity: usize,
) -> (Vec<f32>, Vec<G>, usize) {
    if scans.len() == 1 {
        let scan = scans.pop().expect("one scan");
        let mut store = EntryStore::with_capacity(capacity);
        let ends = walk(scan, index_bits, &mut store, true);
        (store.values, store.gaps, ends.nonzeros)
    } else {
        encode_chunks(scans, index_bits)
    }
}

/// Encodes `flat` (a row-major flattened blob) with `index_bits`-bit gaps,
/// in one pass with no per-element allocation.
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
    let scans: Vec<ReadOnly<'_>> = if flat.len() >= PARALLEL_MIN_LEN {
        flat.chunks(PARALLEL_CHUNK_LEN).map(ReadOnly).collect()
    } else {
        vec![ReadOnly(flat)]
    };
    let (encoded, _) = encode_scans(scans, index_bits, flat.len(), 0);
    Ok(encoded)
}

/// Encodes `scans` (the blob's consecutive chunks) with the gap type `index_bits` calls for;
/// also returns the number of nonzero values seen.
fn encode_scans<S: Scan + Send>(
    scans: Vec<S>,
    index_bits: u8,
    dense_len: usize,
    capacity: usize,
) -> (GapEncoded, usize) {
    let (values, gaps, nonzeros) = if index_bits <= 8 {
        let (values, gaps, nonzeros) = encode_any::<S, u8>(scans, index_bits, capacity);
        (values, Gaps::U8(gaps), nonzeros)
    } else {
        let (values, gaps, nonzeros) = encode_any::<S, u16>(scans, index_bits, capacity);
        (values, Gaps::U16(gaps), nonzeros)
    };
    let encoded = GapEncoded {
        values,
        gaps,
        index_bits,
        dense_len,
    };
    (encoded, nonzeros)
}

/// What [`encode_gaps_where`] did to the blob besides encoding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WhereCounts {
    /// Nonzero values before the pass.
    pub nonzeros_before: usize,
    /// Nonzero values after it: the values `keep` accepted that are nonzero, which are exactly the
    /// stored entries that are not fillers or the trailing entry.
    pub nonzeros_after: usize,
}

/// Sets every value of `flat` that `keep` rejects to `+0.0` (in place; accepted values are left
/// as they are), and gap-encodes the result, in one pass over the blob (blobs of up to 64 Ki values are
/// zeroed first and encoded from cache, into vectors sized once).
///
/// The output is exactly `encode_gaps(&flat_after, index_bits)`, and `flat` ends exactly as
/// `for w in flat { if !keep(*w) { *w = 0.0 } }` leaves it; the pass just reads and writes each
/// value once instead of twice. This is how a pruning rule (say `|w| > cut`, from the `prune`
/// crate) and its sparse export become one pass. `keep` is called once per value, in no
/// particular order and possibly from several threads (large blobs are done in parallel chunks).
///
/// ```
/// use sparse::{encode_gaps, encode_gaps_where, Gaps};
/// let mut flat = [0.5f32, -0.1, 0.3, -0.7, 0.2];
/// let (encoded, counts) = encode_gaps_where(&mut flat, 8, |w| w.abs() > 0.3).unwrap();
/// assert_eq!(flat, [0.5, 0.0, 0.0, -0.7, 0.0]);
/// assert_eq!(encoded, encode_gaps(&flat, 8).unwrap());
/// assert_eq!(encoded.values, [0.5, -0.7, 0.0]);
/// assert_eq!(encoded.gaps, Gaps::U8(vec![0, 2, 0]));
/// assert_eq!((counts.nonzeros_before, counts.nonzeros_after), (5, 2));
/// ```
///
/// # Errors
/// [`SparseError::InvalidIndexBits`] unless `1 <= index_bits <= 16`; `flat` is then unchanged.
pub fn encode_gaps_where<K>(flat: &mut [f32], index_bits: u8, keep: K) -> Result<(GapEncoded, WhereCounts), SparseError>
where
    K: Fn(f32) -> bool + Sync,
{
    validate_index_bits(index_bits)?;
    let dense_len = flat.len();
    if dense_len <= PRESIZED_MAX_LEN {
        // A cache-resident blob: zero it first, then encode into vectors sized once from the kept
        // count (entries <= kept + zeros >> B + 1: each filler stands for 2^B zeros).
        let (nonzeros_before, nonzeros_after) = rewrite_counting(flat, &keep);
        let capacity = nonzeros_after + (dense_len >> index_bits) + 1;
        let (encoded, _) = encode_scans(vec![ReadOnly(flat)], index_bits, dense_len, capacity);
        let counts = WhereCounts {
            nonzeros_before,
            nonzeros_after,
        };
        return Ok((encoded, counts));
    }
    let scans: Vec<Where<'_, K>> = if dense_len >= PARALLEL_MIN_LEN {
        flat.chunks_mut(PARALLEL_CHUNK_LEN).map(|c| Where(c, &keep)).collect()
    } else {
        vec![Where(flat, &keep)]
    };
    // Entries are not known before the pass; a sixteenth of the values covers typical pruning.
    let capacity = dense_len / 16;
    let (encoded, nonzeros_before) = encode_scans(scans, index_bits, dense_len, capacity);
    let nonzeros_after = encoded.nonzero_count();
    let counts = WhereCounts {
        nonzeros_before,
        nonzeros_after,
    };
    Ok((encoded, counts))
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
    let mut counter = EntryCounter(0);
    walk(ReadOnly(flat), index_bits, &mut counter, true);
    Ok(counter.0)
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
    // Justified: dense_len <= sum(gap + 1) over the given entries.
    let mut dense = vec![0.0f32; dense_len];
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
            let (encoded, nonzeros) = encode_scans(scans, bits, flat.len(), 0);
            prop_assert_eq!(encoded_bits(&encoded), reference_encode(&flat, bits));
            prop_assert_eq!(encoded_bits(&encoded), encoded_bits(&encode_gaps(&flat, bits).unwrap()));
            prop_assert_eq!(nonzeros, flat.iter().filter(|v| **v != 0.0).count());
        }

        /// The fused pass, chunked or not, leaves the blob as zeroing then encoding does, and
        /// encodes it the same.
        #[test]
        fn fused_chunked_pass_equals_zeroing_then_encoding(
            (bits, flat) in runs_blob(),
            chunk_len in 1usize..400,
            cut in 0.0f32..1.0,
        ) {
            let keep = move |w: f32| w.abs() > cut;
            let zeroed: Vec<f32> = flat.iter().map(|&w| if keep(w) { w } else { 0.0 }).collect();
            let expected = reference_encode(&zeroed, bits);

            let mut chunked = flat.clone();
            let scans: Vec<Where<'_, _>> = chunked.chunks_mut(chunk_len).map(|c| Where(c, &keep)).collect();
            let (encoded, nonzeros) = encode_scans(scans, bits, flat.len(), 0);
            prop_assert_eq!(encoded_bits(&encoded), expected.clone());
            prop_assert_eq!(nonzeros, flat.iter().filter(|v| **v != 0.0).count());
            let same_bits = |a: &[f32], b: &[f32]| a.iter().map(|v| v.to_bits()).eq(b.iter().map(|v| v.to_bits()));
            prop_assert!(same_bits(&chunked, &zeroed));

            let mut whole = flat.clone();
            let (encoded, counts) = encode_gaps_where(&mut whole, bits, keep).unwrap();
            prop_assert_eq!(encoded_bits(&encoded), expected);
            prop_assert!(same_bits(&whole, &zeroed));
            prop_assert_eq!(counts.nonzeros_before, flat.iter().filter(|v| **v != 0.0).count());
            prop_assert_eq!(counts.nonzeros_after, zeroed.iter().filter(|v| **v != 0.0).count());
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
            let (encoded, _) = encode_scans(scans, 2, flat.len(), 0);
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
            let (fused, counts) = encode_gaps_where(&mut pruned, bits, |w| w.abs() > 0.25).unwrap();
            let zeroed: Vec<f32> = flat.iter().map(|&w| if w.abs() > 0.25 { w } else { 0.0 }).collect();
            assert_eq!(encoded_bits(&fused), reference_encode(&zeroed, bits), "B={bits}");
            assert_eq!(pruned, zeroed);
            assert_eq!(counts.nonzeros_after, fused.nonzero_count());
        }
    }

    #[test]
    fn gap_type_follows_index_bits() {
        assert!(matches!(encode_gaps(&[1.0], 8).unwrap().gaps, Gaps::U8(_)));
        assert!(matches!(encode_gaps(&[1.0], 9).unwrap().gaps, Gaps::U16(_)));
        assert_eq!(gap_width_bytes(1), Ok(1));
        assert_eq!(gap_width_bytes(16), Ok(2));
    }
}
