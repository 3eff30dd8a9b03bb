//! Deep Compression's relative-index ("gap") encoding of a pruned blob.
//!
//! See [`encode_gaps`] for the rule.

use crate::error::SparseError;
use crate::scan::for_each_nonzero;

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

/// The encoding walk, shared by [`encode_gaps`] and [`gap_entry_count`].
///
/// `pending` is the run of zeros since the last stored entry; it stays
/// `<= max_gap` because a zero arriving when it equals `max_gap` is stored as a
/// filler. Adding `k` zeros at once to a run of `r` therefore stores
/// `(r + k) >> B` fillers and leaves `(r + k) & max_gap` pending.
#[inline(always)]
fn walk<S: EntrySink>(flat: &[f32], index_bits: u8, sink: &mut S) {
    let max_gap = (1usize << index_bits) - 1;
    let mut pending = 0usize;
    let add_zeros = |pending: &mut usize, zeros: usize, sink: &mut S| {
        // Cannot overflow: pending <= 65535 and zeros <= flat.len() <= isize::MAX.
        let total = *pending + zeros;
        if total > max_gap {
            sink.fillers(total >> index_bits, max_gap);
            *pending = total & max_gap;
        } else {
            *pending = total;
        }
    };
    let mut next = 0usize;
    for_each_nonzero(flat, |index, value| {
        add_zeros(&mut pending, index - next, sink);
        sink.entry(value, pending);
        pending = 0;
        next = index + 1;
    });
    add_zeros(&mut pending, flat.len() - next, sink);
    if pending > 0 {
        sink.entry(0.0, pending - 1);
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
    fn run<G: GapInt>(flat: &[f32], index_bits: u8) -> (Vec<f32>, Vec<G>) {
        let mut store = EntryStore {
            values: Vec::new(),
            gaps: Vec::new(),
        };
        walk(flat, index_bits, &mut store);
        (store.values, store.gaps)
    }
    let (values, gaps) = if index_bits <= 8 {
        let (values, gaps) = run::<u8>(flat, index_bits);
        (values, Gaps::U8(gaps))
    } else {
        let (values, gaps) = run::<u16>(flat, index_bits);
        (values, Gaps::U16(gaps))
    };
    Ok(GapEncoded {
        values,
        gaps,
        index_bits,
        dense_len: flat.len(),
    })
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
    walk(flat, index_bits, &mut counter);
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

    #[test]
    fn gap_type_follows_index_bits() {
        assert!(matches!(encode_gaps(&[1.0], 8).unwrap().gaps, Gaps::U8(_)));
        assert!(matches!(encode_gaps(&[1.0], 9).unwrap().gaps, Gaps::U16(_)));
        assert_eq!(gap_width_bytes(1), Ok(1));
        assert_eq!(gap_width_bytes(16), Ok(2));
    }
}
