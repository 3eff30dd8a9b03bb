//! Finding the keep-fraction cut (the k-th largest magnitude, counting from 0) and applying it.
//!
//! Magnitudes are compared as the bits of `|w|` (`w.to_bits() & 0x7fff_ffff`): for every non-NaN
//! f32 that integer order is exactly the order of `|w|`, and `-0.0` and `+0.0` both become 0.

use rayon::prelude::*;

use crate::PruneError;

/// Clears the sign bit.
const MAGNITUDE_MASK: u32 = 0x7fff_ffff;
/// Magnitude bits of infinity; anything above is a NaN.
pub(crate) const INFINITY_BITS: u32 = 0x7f80_0000;

/// Magnitude bits are 31 bits wide: the high 16 pick the first-level bin, the low 15 the second.
const LOW_BITS: u32 = 15;
const HIGH_BINS: usize = 1 << 16;
const LOW_BINS: usize = 1 << LOW_BITS;
const LOW_MASK: u32 = (1 << LOW_BITS) - 1;

/// Below this many weights one selection on a scratch copy is cheaper than clearing and walking
/// the 64 Ki-entry histogram (measured: equal near 24 Ki weights, histogram 2x faster at 400 Ki).
pub(crate) const HISTOGRAM_MIN_LEN: usize = 1 << 15;

/// Work is split into chunks of this many weights; each chunk's counts fit in u32.
const CHUNK_LEN: usize = 1 << 20;

/// From this many weights on, passes run on the rayon pool, one chunk per task (measured at
/// 100 M weights: 2 threads 123 ms against 1 thread 204 ms).
pub(crate) const PARALLEL_MIN_LEN: usize = 1 << 21;

/// `2^53`: the largest N for which `(N - 1) as f64` and the rank are exact.
const MAX_EXACT_LEN: u128 = 1 << 53;

/// The magnitude of `w` as ordered integer bits.
#[inline(always)]
pub(crate) fn magnitude_bits(w: f32) -> u32 {
    w.to_bits() & MAGNITUDE_MASK
}

/// Refuses keep fractions outside `[0, 1]` and NaN.
pub(crate) fn check_keep_fraction(t: f64) -> Result<(), PruneError> {
    if (0.0..=1.0).contains(&t) {
        Ok(())
    } else {
        Err(PruneError::InvalidKeepFraction(t))
    }
}

/// Total length of the blobs, refused above `2^53` where the f64 rank stops being exact.
pub(crate) fn total_len(lens: impl IntoIterator<Item = usize>) -> Result<usize, PruneError> {
    let total: u128 = lens.into_iter().map(|n| n as u128).sum();
    if total > MAX_EXACT_LEN {
        return Err(PruneError::TooManyWeights(total));
    }
    // Fits: total <= 2^53 and each slice length fits in usize, so their sum does on 64-bit targets;
    // on narrower targets the slices themselves could not sum past usize without aliasing.
    usize::try_from(total).map_err(|_| PruneError::TooManyWeights(total))
}

/// `k = floor((n - 1) * t)` in f64, for `n >= 1`, `t` in `[0, 1]`, `n <= 2^53`; always `k < n`.
pub(crate) fn cut_rank(n: usize, t: f64) -> usize {
    // (n - 1) * t <= n - 1 because t <= 1 and rounding is monotone, so k <= n - 1.
    ((n - 1) as f64 * t).floor() as usize
}

/// The error for the first NaN in `blobs` (called once a scan saw one).
pub(crate) fn first_nan(blobs: &[&[f32]]) -> PruneError {
    for (blob, weights) in blobs.iter().enumerate() {
        if let Some(index) = weights.iter().position(|w| w.is_nan()) {
            return PruneError::NanWeight { blob, index };
        }
    }
    // Only called after a scan found a magnitude above infinity; keep a sane answer regardless.
    PruneError::NanWeight { blob: 0, index: 0 }
}

/// Counts nonzero weights, refusing NaN.
pub(crate) fn count_nonzero_checked(blobs: &[&[f32]]) -> Result<Vec<usize>, PruneError> {
    let mut counts = Vec::with_capacity(blobs.len());
    let mut max_bits = 0;
    for weights in blobs {
        let (nonzeros, blob_max) = weights.iter().fold((0usize, 0u32), |(nz, max), &w| {
            let m = magnitude_bits(w);
            (nz + (m != 0) as usize, max.max(m))
        });
        counts.push(nonzeros);
        max_bits = max_bits.max(blob_max);
    }
    if max_bits > INFINITY_BITS {
        return Err(first_nan(blobs));
    }
    Ok(counts)
}

/// Magnitude bits of `sort(|W|, descending)[k]` over the concatenation of `blobs`, refusing NaN.
/// Requires `k < total length`.
///
/// Small groups: one selection on a stack copy. Larger ones: a sample brackets the answer and one
/// read pass counts what lies above the bracket and collects the few magnitudes inside it, so the
/// selection runs on those alone; when the bracket misses (adversarial or heavily tied data) the
/// two-pass histogram decides. Every path returns the exact k-th largest.
pub(crate) fn find_cut(blobs: &[&[f32]], k: usize) -> Result<u32, PruneError> {
    let total: usize = blobs.iter().map(|b| b.len()).sum();
    if total <= STACK_SELECT_MAX_LEN {
        return cut_on_stack(blobs, k);
    }
    if let Some(cut) = cut_by_bracket(blobs, k, total >= PARALLEL_MIN_LEN)? {
        return Ok(cut);
    }
    if total < HISTOGRAM_MIN_LEN {
        cut_by_selection(blobs, k)
    } else {
        cut_by_histogram(blobs, k, total >= PARALLEL_MIN_LEN)
    }
}

/// Up to this many weights the magnitudes are copied to the stack and selected there: no
/// allocation, no second pass.
pub(crate) const STACK_SELECT_MAX_LEN: usize = 1024;

/// Selection on a stack copy of the magnitude bits, for groups of at most [`STACK_SELECT_MAX_LEN`].
pub(crate) fn cut_on_stack(blobs: &[&[f32]], k: usize) -> Result<u32, PruneError> {
    let mut scratch = [0u32; STACK_SELECT_MAX_LEN];
    let mut n = 0;
    let mut max_bits = 0;
    for weights in blobs {
        for (slot, &w) in scratch[n..n + weights.len()].iter_mut().zip(weights.iter()) {
            let m = magnitude_bits(w);
            max_bits = max_bits.max(m);
            *slot = m;
        }
        n += weights.len();
    }
    if max_bits > INFINITY_BITS {
        return Err(first_nan(blobs));
    }
    // Ascending order: the k-th largest sits at n - 1 - k.
    let (_, cut, _) = scratch[..n].select_nth_unstable(n - 1 - k);
    Ok(*cut)
}

/// What one read pass found for a bracket `[lo, hi]` of magnitude bits.
#[derive(Default)]
struct BracketCounts {
    /// Magnitudes above `hi`.
    above: usize,
    /// Magnitudes equal to `hi`.
    at_hi: usize,
    /// Magnitudes equal to `lo`.
    at_lo: usize,
    /// Magnitudes strictly between `lo` and `hi`.
    inside: Vec<u32>,
    /// More than the allowed number were inside: the bracket is abandoned.
    overflow: bool,
    /// Above infinity when a NaN was seen.
    max_bits: u32,
}

/// Sample size for `n` weights: about `n^(2/3)`, so the sample and the bracket's contents cost
/// about the same and both are small beside `n`.
fn sample_len(n: usize) -> usize {
    ((n as f64).powf(2.0 / 3.0) as usize).clamp(256, 1 << 18).min(n)
}

/// Half-width of the bracket around the sample's estimate, in sample ranks: 4.5 standard deviations
/// of a sample quantile (a miss, about one in 10^5 on unstructured data, only costs the fallback,
/// never a wrong answer).
fn bracket_half_width(s: usize, p: f64) -> usize {
    (4.5 * (s as f64 * p * (1.0 - p)).sqrt()) as usize + 2
}

/// Tries the sample-bracket selection; `None` when the bracket does not hold the k-th largest.
pub(crate) fn cut_by_bracket(blobs: &[&[f32]], k: usize, parallel: bool) -> Result<Option<u32>, PruneError> {
    let total: usize = blobs.iter().map(|b| b.len()).sum();
    let s = sample_len(total);
    // A deterministic sample: one weight from each of s equal strides, at a scrambled offset
    // within its stride so periodic layouts (filters, channels) do not alias with the stride.
    let stride = total / s;
    let mut sample = Vec::with_capacity(s);
    let mut blob_index = 0;
    let mut blob_start = 0;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in 0..s {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // (random 32 bits * stride) >> 32: an offset below stride without a division.
        let position = i * stride + (((state >> 32) * stride as u64) >> 32) as usize;
        while position >= blob_start + blobs[blob_index].len() {
            blob_start += blobs[blob_index].len();
            blob_index += 1;
        }
        sample.push(magnitude_bits(blobs[blob_index][position - blob_start]));
    }
    if sample.iter().copied().max().unwrap_or(0) > INFINITY_BITS {
        return Err(first_nan(blobs));
    }
    // The answer's expected descending rank in the sample, and a bracket around it.
    let p = (k as f64 + 0.5) / total as f64;
    let centre = p * s as f64;
    let half = bracket_half_width(s, p) as f64;
    // Descending rank r is ascending index s - 1 - r.
    // Selecting hi leaves everything at or below it in front of it; lo is selected there.
    let (hi, below_hi) = if centre - half < 0.0 {
        (MAGNITUDE_MASK, s)
    } else {
        let index = s - 1 - (centre - half) as usize;
        (*sample.select_nth_unstable(index).1, index)
    };
    let lo = if centre + half >= (s - 1) as f64 {
        0
    } else {
        // r_lo > r_hi, so this ascending index is below hi's.
        let index = s - 1 - (centre + half).ceil() as usize;
        *sample[..below_hi].select_nth_unstable(index).1
    };
    drop(sample);

    // Room for the bracket's contents: the expected count times a wide margin.
    let expected_inside = (2.0 * half / s as f64 * total as f64) as usize;
    let limit = expected_inside * 4 + 1024;
    let counts = count_bracket(blobs, lo, hi, limit, parallel);
    if counts.max_bits > INFINITY_BITS {
        return Err(first_nan(blobs));
    }
    if counts.overflow {
        return Ok(None);
    }
    let BracketCounts {
        above,
        at_hi,
        at_lo,
        mut inside,
        ..
    } = counts;
    // Descending: above hi, at hi, strictly inside, at lo, below lo.
    let Some(mut r) = k.checked_sub(above) else {
        return Ok(None);
    };
    if r < at_hi {
        return Ok(Some(hi));
    }
    if lo == hi {
        return Ok(None);
    }
    r -= at_hi;
    if r < inside.len() {
        let n = inside.len();
        return Ok(Some(*inside.select_nth_unstable(n - 1 - r).1));
    }
    r -= inside.len();
    Ok((r < at_lo).then_some(lo))
}

/// One read pass (in parallel chunks when `parallel`) counting the magnitudes above, at and below
/// the bracket's ends and collecting those strictly inside, up to `limit` of them.
fn count_bracket(blobs: &[&[f32]], lo: u32, hi: u32, limit: usize, parallel: bool) -> BracketCounts {
    let chunks: Vec<&[f32]> = blobs.iter().flat_map(|b| b.chunks(CHUNK_LEN)).collect();
    let count = |chunk: &[f32]| bracket_chunk(chunk, lo, hi, limit);
    let merge = |mut a: BracketCounts, b: BracketCounts| {
        a.above += b.above;
        a.at_hi += b.at_hi;
        a.at_lo += b.at_lo;
        a.max_bits = a.max_bits.max(b.max_bits);
        a.overflow |= b.overflow || a.inside.len() + b.inside.len() > limit;
        if a.overflow {
            a.inside = Vec::new();
        } else if a.inside.is_empty() {
            // Take the other side's collection instead of copying it.
            a.inside = b.inside;
        } else {
            a.inside.extend_from_slice(&b.inside);
        }
        a
    };
    if parallel {
        chunks
            .par_iter()
            .map(|c| count(c))
            .reduce(BracketCounts::default, merge)
    } else {
        chunks.iter().map(|c| count(c)).fold(BracketCounts::default(), merge)
    }
}

/// [`count_bracket`] over one chunk (at most [`CHUNK_LEN`] weights, so u32 counts fit).
/// Taken 1024 weights at a time: a branch-free (vectorised) count, then, while they are in L1, a
/// scan that tests 16 at a time for a magnitude inside and walks only the blocks that hold one.
/// Magnitude bits are below 2^31, so signed comparisons (which SSE2 has) order them.
fn bracket_chunk(chunk: &[f32], lo: u32, hi: u32, limit: usize) -> BracketCounts {
    const PART: usize = 1024;
    const BLOCK: usize = 16;
    let (lo, hi) = (lo.min(MAGNITUDE_MASK) as i32, hi.min(MAGNITUDE_MASK) as i32);
    let infinity = INFINITY_BITS as i32;
    let magnitude = |w: f32| magnitude_bits(w) as i32;
    let is_inside = |w: f32| (magnitude(w) > lo) & (magnitude(w) < hi);
    let mut counts = BracketCounts::default();
    let (mut above, mut at_hi, mut at_lo, mut nans) = (0u32, 0u32, 0u32, 0u32);
    let mut filled = 0;
    for part in chunk.chunks(PART) {
        for &w in part {
            let m = magnitude(w);
            above += u32::from(m > hi);
            at_hi += u32::from(m == hi);
            at_lo += u32::from(m == lo);
            nans += u32::from(m > infinity);
        }
        if counts.overflow {
            continue;
        }
        // Compaction into room for a whole part (grown by doubling, so clearing it costs about
        // what it holds): a 16-lane mask per block, then one step per magnitude inside.
        if counts.inside.len() < filled + PART {
            let grown = (2 * counts.inside.len()).max(filled + PART);
            counts.inside.resize(grown, 0);
        }
        let room = &mut counts.inside[filled..];
        let mut written = 0;
        for block in part.chunks(BLOCK) {
            let mut mask = block
                .iter()
                .enumerate()
                .fold(0u32, |mask, (lane, &w)| mask | (u32::from(is_inside(w)) << lane));
            while mask != 0 {
                room[written] = magnitude_bits(block[mask.trailing_zeros() as usize]);
                written += 1;
                mask &= mask - 1;
            }
        }
        filled += written;
        counts.overflow = filled > limit;
    }
    counts.inside.truncate(filled);
    counts.above = above as usize;
    counts.at_hi = at_hi as usize;
    counts.at_lo = at_lo as usize;
    counts.max_bits = if nans > 0 { u32::MAX } else { 0 };
    counts
}

/// Selection on a scratch copy of the magnitude bits: O(N) expected, one allocation of N u32.
pub(crate) fn cut_by_selection(blobs: &[&[f32]], k: usize) -> Result<u32, PruneError> {
    let total: usize = blobs.iter().map(|b| b.len()).sum();
    let mut scratch: Vec<u32> = Vec::with_capacity(total);
    for weights in blobs {
        scratch.extend(weights.iter().map(|&w| magnitude_bits(w)));
    }
    if scratch.iter().copied().max().unwrap_or(0) > INFINITY_BITS {
        return Err(first_nan(blobs));
    }
    // Descending order: position k holds the k-th largest.
    let (_, cut, _) = scratch.select_nth_unstable_by(k, |a, b| b.cmp(a));
    Ok(*cut)
}

/// Two-level radix selection: a histogram of the high 16 magnitude bits finds the bin holding the
/// k-th largest, a histogram of the low 15 bits of that bin's members finds the exact value.
/// Two read-only passes, no O(N) scratch memory.
pub(crate) fn cut_by_histogram(blobs: &[&[f32]], k: usize, parallel: bool) -> Result<u32, PruneError> {
    let chunks: Vec<&[f32]> = blobs.iter().flat_map(|b| b.chunks(CHUNK_LEN)).collect();

    let (high, max_bits) = summed_histogram::<HIGH_BINS>(&chunks, parallel, high_histogram);
    if max_bits > INFINITY_BITS {
        return Err(first_nan(blobs));
    }
    let (high_bin, rank_in_bin) = high.locate_descending(k as u64);

    let high_bits = high_bin as u32;
    let (low, _) = summed_histogram::<LOW_BINS>(&chunks, parallel, |chunk, hist| low_histogram(chunk, high_bits, hist));
    let (low_bin, _) = low.locate_descending(rank_in_bin);
    Ok((high_bits << LOW_BITS) | low_bin as u32)
}

/// Counts the high 16 magnitude bits of `chunk` into `hist`; returns the largest magnitude bits.
fn high_histogram(chunk: &[f32], hist: &mut [u32; HIGH_BINS]) -> u32 {
    let mut max_bits = 0;
    for &w in chunk {
        let m = magnitude_bits(w);
        max_bits = max_bits.max(m);
        hist[(m >> LOW_BITS) as usize] += 1;
    }
    max_bits
}

/// Counts the low 15 magnitude bits of the members of first-level bin `high` into `hist`.
/// Members are rare, so blocks are first tested for any member with a branch-free (vectorised)
/// test and only blocks holding one are counted element by element.
fn low_histogram(chunk: &[f32], high: u32, hist: &mut [u32; LOW_BINS]) -> u32 {
    const BLOCK: usize = 16;
    let is_member = |w: f32| magnitude_bits(w) >> LOW_BITS == high;
    let mut count_block = |block: &[f32]| {
        for &w in block {
            if is_member(w) {
                hist[(magnitude_bits(w) & LOW_MASK) as usize] += 1;
            }
        }
    };
    let mut blocks = chunk.chunks_exact(BLOCK);
    for block in &mut blocks {
        if block.iter().fold(false, |any, &w| any | is_member(w)) {
            count_block(block);
        }
    }
    count_block(blocks.remainder());
    0
}

/// Bin counts: u32 when they are known to fit, which halves the memory to clear and walk.
enum Counts<const BINS: usize> {
    /// Fewer than 2^32 weights were counted.
    Narrow(Box<[u32; BINS]>),
    /// Any number of weights.
    Wide(Vec<u64>),
}

impl<const BINS: usize> Counts<BINS> {
    fn locate_descending(&self, k: u64) -> (usize, u64) {
        match self {
            Counts::Narrow(hist) => locate_descending(&hist[..], k),
            Counts::Wide(hist) => locate_descending(hist, k),
        }
    }
}

/// Histogram of all `chunks` by `kernel`, plus the largest value the kernel reported.
/// Sequentially one u32 histogram; in parallel (or past 2^32 weights), per-chunk u32 histograms
/// (a chunk never exceeds u32 counts) summed into u64. Integer sums: identical whatever the split.
fn summed_histogram<const BINS: usize>(
    chunks: &[&[f32]],
    parallel: bool,
    kernel: impl Fn(&[f32], &mut [u32; BINS]) -> u32 + Sync,
) -> (Counts<BINS>, u32) {
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    if !parallel && u32::try_from(total).is_ok() {
        let mut hist = Box::new([0; BINS]);
        let max = chunks.iter().fold(0, |max, chunk| max.max(kernel(chunk, &mut hist)));
        return (Counts::Narrow(hist), max);
    }

    struct Acc<const B: usize> {
        total: Vec<u64>,
        scratch: Box<[u32; B]>,
        max: u32,
    }
    let new_acc = || Acc::<BINS> {
        total: vec![0; BINS],
        scratch: Box::new([0; BINS]),
        max: 0,
    };
    let add_chunk = |mut acc: Acc<BINS>, chunk: &&[f32]| {
        acc.scratch.fill(0);
        acc.max = acc.max.max(kernel(chunk, &mut acc.scratch));
        for (t, &c) in acc.total.iter_mut().zip(acc.scratch.iter()) {
            *t += u64::from(c);
        }
        acc
    };
    let (total, max) = chunks
        .par_iter()
        .fold(new_acc, add_chunk)
        .map(|acc| (acc.total, acc.max))
        .reduce(
            || (vec![0; BINS], 0),
            |(mut a, a_max), (b, b_max)| {
                for (x, y) in a.iter_mut().zip(&b) {
                    *x += y;
                }
                (a, a_max.max(b_max))
            },
        );
    (Counts::Wide(total), max)
}

/// Bins are walked a block at a time: a block's sum vectorises, so the mostly empty 64 Ki bins
/// cost little; only the block holding the answer is walked bin by bin.
const LOCATE_BLOCK: usize = 64;

/// Walking bins from the largest down, the bin holding the element of descending rank `k`, and
/// that element's rank among the bin's members. Requires `k < sum(hist)` and a length that is a
/// multiple of [`LOCATE_BLOCK`].
fn locate_descending<T: Copy + Into<u64>>(hist: &[T], k: u64) -> (usize, u64) {
    let mut above = 0u64;
    for (block_index, block) in hist.chunks_exact(LOCATE_BLOCK).enumerate().rev() {
        let block_count: u64 = block.iter().map(|&c| c.into()).sum();
        if above + block_count <= k {
            above += block_count;
            continue;
        }
        for (offset, &count) in block.iter().enumerate().rev() {
            let count: u64 = count.into();
            if above + count > k {
                return (block_index * LOCATE_BLOCK + offset, k - above);
            }
            above += count;
        }
    }
    // Unreachable while k < sum(hist); bin 0 is the only consistent answer.
    (0, k.saturating_sub(above))
}

/// Zeroes (to +0.0) every weight whose magnitude bits are not above `cut`.
/// Returns (nonzeros before, weights kept).
pub(crate) fn apply_cut(weights: &mut [f32], cut: u32) -> (usize, usize) {
    if weights.len() >= PARALLEL_MIN_LEN {
        weights
            .par_chunks_mut(CHUNK_LEN)
            .map(|chunk| apply_cut_chunk(chunk, cut))
            .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    } else {
        apply_cut_chunk(weights, cut)
    }
}

/// Branch-free so it vectorises.
fn apply_cut_chunk(weights: &mut [f32], cut: u32) -> (usize, usize) {
    let mut nonzeros = 0;
    let mut kept = 0;
    for w in weights {
        let m = magnitude_bits(*w);
        let keep = m > cut;
        nonzeros += (m != 0) as usize;
        kept += keep as usize;
        *w = if keep { *w } else { 0.0 };
    }
    (nonzeros, kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// numpy's definition: sort the magnitudes descending, take position k.
    fn sorted_cut(blobs: &[&[f32]], k: usize) -> f32 {
        let mut magnitudes: Vec<f32> = blobs.iter().flat_map(|b| b.iter().map(|w| w.abs())).collect();
        magnitudes.sort_by(|a, b| b.partial_cmp(a).expect("no NaN in these inputs"));
        magnitudes[k]
    }

    /// Any non-NaN f32: bit patterns cover zeros, subnormals, every exponent and infinity, so
    /// magnitudes fall into many first-level bins and sometimes share one.
    fn any_weight() -> impl Strategy<Value = f32> {
        prop_oneof![
            any::<u32>()
                .prop_map(f32::from_bits)
                .prop_filter("not NaN", |w| !w.is_nan()),
            // A small pool so ties (and -0.0 against +0.0) are common.
            prop::sample::select(vec![0.0f32, -0.0, 0.25, -0.25, 1.0, -1.0, 1.0e-40, f32::INFINITY]),
            // Magnitudes within one first-level bin, differing in the low 15 bits.
            (0u32..1 << 15).prop_map(|low| f32::from_bits(0x3f00_0000 | low)),
        ]
    }

    fn blobs_and_rank() -> impl Strategy<Value = (Vec<Vec<f32>>, usize)> {
        prop::collection::vec(prop::collection::vec(any_weight(), 0..80), 1..4)
            .prop_filter("some weights", |blobs| blobs.iter().any(|b| !b.is_empty()))
            .prop_flat_map(|blobs| {
                let total = blobs.iter().map(|b| b.len()).sum::<usize>();
                (Just(blobs), 0..total)
            })
    }

    proptest! {
        #[test]
        fn both_strategies_match_sorting((blobs, k) in blobs_and_rank()) {
            let views: Vec<&[f32]> = blobs.iter().map(|b| b.as_slice()).collect();
            let expected = sorted_cut(&views, k).to_bits();
            prop_assert_eq!(cut_by_selection(&views, k)?, expected);
            prop_assert_eq!(cut_by_histogram(&views, k, false)?, expected);
            prop_assert_eq!(cut_by_histogram(&views, k, true)?, expected);
            prop_assert_eq!(cut_on_stack(&views, k)?, expected);
            prop_assert_eq!(find_cut(&views, k)?, expected);
            for parallel in [false, true] {
                if let Some(cut) = cut_by_bracket(&views, k, parallel)? {
                    prop_assert_eq!(cut, expected);
                }
            }
        }

        #[test]
        fn applying_keeps_exactly_the_magnitudes_above(
            weights in prop::collection::vec(any_weight(), 0..200),
            cut in prop_oneof![
                0u32..=INFINITY_BITS,
                Just(0u32),
                Just(0.25f32.to_bits()),
                Just(1.0f32.to_bits()),
            ],
        ) {
            let mut pruned = weights.clone();
            let (nonzeros, kept) = apply_cut(&mut pruned, cut);
            let cut_value = f32::from_bits(cut);
            for (&before, &after) in weights.iter().zip(&pruned) {
                let expected = if before.abs() > cut_value { before } else { 0.0 };
                prop_assert_eq!(after.to_bits(), expected.to_bits());
            }
            prop_assert_eq!(nonzeros, weights.iter().filter(|w| **w != 0.0).count());
            prop_assert_eq!(kept, weights.iter().filter(|w| w.abs() > cut_value).count());
        }
    }

    /// Mid-sized groups (past the stack selection) of weights drawn from pools that make the
    /// bracket's awkward cases common: many zeros (re-pruning a pruned blob), huge ties, and
    /// magnitudes a few ulps apart.
    fn mid_blobs_and_rank() -> impl Strategy<Value = (Vec<Vec<f32>>, usize)> {
        let pool = prop_oneof![
            // Roughly normal, as trained weights.
            Just(0u8),
            // Mostly zeros.
            Just(1u8),
            // Four values only.
            Just(2u8),
            // One first-level bin: magnitudes differing in the low bits.
            Just(3u8),
        ];
        (pool, prop::collection::vec(1100usize..6000, 1..3), any::<u64>())
            .prop_map(|(pool, lens, seed)| {
                let mut state = seed;
                let mut next = move || {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    state >> 33
                };
                lens.iter()
                    .map(|&len| {
                        (0..len)
                            .map(|_| {
                                let r = next();
                                match pool {
                                    0 => ((r % 20_000) as f32 - 10_000.0) * 1e-5 * if r % 3 == 0 { 0.1 } else { 1.0 },
                                    1 if r % 10 != 0 => 0.0,
                                    1 => (r % 1000) as f32 * 1e-3 - 0.5,
                                    2 => [0.0f32, -0.5, 0.25, 1.0][(r % 4) as usize],
                                    _ => {
                                        f32::from_bits(0x3f00_0000 | (r as u32 & 0x3f))
                                            * if r % 2 == 0 { 1.0 } else { -1.0 }
                                    }
                                }
                            })
                            .collect::<Vec<f32>>()
                    })
                    .collect::<Vec<_>>()
            })
            .prop_flat_map(|blobs| {
                let total = blobs.iter().map(|b| b.len()).sum::<usize>();
                (
                    Just(blobs),
                    prop_oneof![0..total, Just(0), Just(total - 1), Just(total / 10)],
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn bracket_and_find_cut_match_sorting_on_mid_sized_groups((blobs, k) in mid_blobs_and_rank()) {
            let views: Vec<&[f32]> = blobs.iter().map(|b| b.as_slice()).collect();
            let expected = sorted_cut(&views, k).to_bits();
            prop_assert_eq!(find_cut(&views, k)?, expected);
            for parallel in [false, true] {
                if let Some(cut) = cut_by_bracket(&views, k, parallel)? {
                    prop_assert_eq!(cut, expected);
                }
            }
        }
    }

    #[test]
    fn bracket_answers_on_trained_like_weights() {
        // The fast path must not silently decline on ordinary weights (LeNet's sizes and rules).
        for (len, t, seed) in [(1_500, 0.3, 1), (25_000, 0.1, 2), (400_000, 0.01, 3), (5_000, 0.2, 4)] {
            let weights = crate::synthetic::weights(len, seed);
            let k = cut_rank(len, t);
            let expected = sorted_cut(&[&weights], k).to_bits();
            assert_eq!(
                cut_by_bracket(&[&weights], k, false).unwrap(),
                Some(expected),
                "len {len}"
            );
            assert_eq!(
                cut_by_bracket(&[&weights], k, true).unwrap(),
                Some(expected),
                "len {len}"
            );
        }
    }

    #[test]
    fn bracket_handles_ties_at_its_ends_and_zero_heavy_blobs() {
        // 90 % zeros: the cut at t = 0.5 is 0, at t = 0.05 a nonzero.
        let weights: Vec<f32> = (0..50_000)
            .map(|i| if i % 10 == 0 { (i % 997) as f32 + 1.0 } else { 0.0 })
            .collect();
        for k in [0, 100, 2_499, 4_999, 5_000, 25_000, 49_999] {
            let expected = sorted_cut(&[&weights], k).to_bits();
            assert_eq!(find_cut(&[&weights], k).unwrap(), expected, "k={k}");
            // The bracket either answers exactly or declines.
            if let Some(cut) = cut_by_bracket(&[&weights], k, false).unwrap() {
                assert_eq!(cut, expected, "k={k}");
            }
        }
        // All equal: every rank is that value.
        let same = vec![-0.75f32; 4_000];
        for k in [0, 1_999, 3_999] {
            assert_eq!(find_cut(&[&same], k).unwrap(), 0.75f32.to_bits());
        }
    }

    #[test]
    fn nan_is_found_by_both_strategies() {
        let first = [1.0f32, 2.0];
        let second = [3.0f32, 0.5, f32::NAN, f32::NAN];
        let blobs: [&[f32]; 2] = [&first, &second];
        let expected = PruneError::NanWeight { blob: 1, index: 2 };
        assert_eq!(cut_by_selection(&blobs, 1), Err(expected.clone()));
        assert_eq!(cut_by_histogram(&blobs, 1, false), Err(expected.clone()));
        assert_eq!(cut_by_histogram(&blobs, 1, true), Err(expected.clone()));
        assert_eq!(cut_on_stack(&blobs, 1), Err(expected.clone()));
        assert_eq!(find_cut(&blobs, 1), Err(expected.clone()));
        // Past the stack selection, a NaN the sample misses is still found by the pass.
        let mut large = vec![0.5f32; 5_000];
        large[4_321] = f32::NAN;
        let expected = PruneError::NanWeight { blob: 0, index: 4_321 };
        assert_eq!(find_cut(&[&large], 10), Err(expected.clone()));
        assert_eq!(cut_by_bracket(&[&large], 10, true), Err(expected));
    }

    #[test]
    fn rank_is_floor_of_n_minus_one_times_t() {
        // By hand: 499 * 0.3 = 149.7, 24999 * 0.1 = 2499.9, 399999 * 0.01 = 3999.99, 4999 * 0.2 = 999.8.
        assert_eq!(cut_rank(500, 0.3), 149);
        assert_eq!(cut_rank(25_000, 0.1), 2499);
        assert_eq!(cut_rank(400_000, 0.01), 3999);
        assert_eq!(cut_rank(5_000, 0.2), 999);
        assert_eq!(cut_rank(1, 0.7), 0);
        assert_eq!(cut_rank(10, 0.0), 0);
        assert_eq!(cut_rank(10, 1.0), 9);
    }

    #[test]
    fn too_many_weights_are_refused() {
        assert_eq!(total_len([1 << 52, 1 << 52]), Ok(1 << 53));
        assert_eq!(total_len([1 << 53, 1]), Err(PruneError::TooManyWeights((1 << 53) + 1)));
    }
}
