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

/// Weights per sampled run: one cache line. Sampling single weights at random positions cost a
/// TLB miss each (measured on 100 M weights: 14 to 22 ms of a 32 ms cut, page walks being slow
/// under virtualisation); runs of 16 cost one per 16 weights.
const SAMPLE_RUN: usize = 16;

/// A deterministic sample of about [`sample_len`] magnitudes of the concatenated `blobs` (`total`
/// weights, at least one): runs of [`SAMPLE_RUN`] consecutive weights (fewer if `total` is), one
/// from each of equal strides, at a scrambled offset within its stride so periodic layouts
/// (filters, channels) do not alias with the stride.
fn take_sample(blobs: &[&[f32]], total: usize) -> Vec<u32> {
    let run = SAMPLE_RUN.min(total);
    let runs = (sample_len(total) / run).max(1);
    // stride >= run because runs * run <= sample_len(total) <= total (or runs = 1).
    let stride = total / runs;
    let mut sample = Vec::with_capacity(runs * run);
    let (mut blob_index, mut blob_start) = (0, 0);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in 0..runs {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // (random 32 bits * span) >> 32: an offset below span without a division.
        let span = (stride - run + 1) as u64;
        let mut position = i * stride + (((state >> 32) * span) >> 32) as usize;
        let end = position + run;
        // A run may cross from one blob into the next ones.
        while position < end {
            while position >= blob_start + blobs[blob_index].len() {
                blob_start += blobs[blob_index].len();
                blob_index += 1;
            }
            let blob = blobs[blob_index];
            let upto = end.min(blob_start + blob.len());
            sample.extend(
                blob[position - blob_start..upto - blob_start]
                    .iter()
                    .map(|&w| magnitude_bits(w)),
            );
            position = upto;
        }
    }
    sample
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
    let sample = take_sample(blobs, total);
    let s = sample.len();
    if sample.iter().copied().max().unwrap_or(0) > INFINITY_BITS {
        return Err(first_nan(blobs));
    }
    // The answer's expected descending rank in the sample, and a bracket around it.
    let p = (k as f64 + 0.5) / total as f64;
    let centre = p * s as f64;
    let half = bracket_half_width(s, p) as f64;
    // Descending rank r is ascending index s - 1 - r.
    // Selecting hi leaves everything at or below it in front of it; lo is selected there.
    let mut sample = sample;
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
/// Taken 64 weights at a time: one branch-free pass counts them and builds the mask of those
/// inside, then the set bits of the mask (rare: the bracket holds well under 1 % of the weights)
/// are collected.
fn bracket_chunk(chunk: &[f32], lo: u32, hi: u32, limit: usize) -> BracketCounts {
    let (lo, hi) = (lo.min(MAGNITUDE_MASK), hi.min(MAGNITUDE_MASK));
    let mut counts = BracketCounts::default();
    let mut collect = |weights: &[f32], mut mask: u64| {
        if counts.overflow {
            return;
        }
        while mask != 0 {
            counts
                .inside
                .push(magnitude_bits(weights[mask.trailing_zeros() as usize]));
            mask &= mask - 1;
        }
        if counts.inside.len() > limit {
            counts.overflow = true;
            counts.inside = Vec::new();
        }
    };
    let mut words = chunk.chunks_exact(WORD);
    #[cfg(target_arch = "x86_64")]
    let mut tally = if has_avx2() {
        // SAFETY: the CPU has AVX2, checked just above.
        unsafe { bracket_words_avx2(&mut words, lo, hi, &mut collect) }
    } else {
        bracket_words(&mut words, lo, hi, &mut collect)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let mut tally = bracket_words(&mut words, lo, hi, &mut collect);
    let rest = words.remainder();
    let mask = rest.iter().enumerate().fold(0u64, |mask, (lane, &w)| {
        let m = magnitude_bits(w);
        tally.add(m, lo, hi);
        mask | u64::from((m > lo) & (m < hi)) << lane
    });
    if mask != 0 {
        collect(rest, mask);
    }
    counts.above = tally.above as usize;
    counts.at_hi = tally.at_hi as usize;
    counts.at_lo = tally.at_lo as usize;
    counts.max_bits = if tally.nans > 0 { u32::MAX } else { 0 };
    counts
}

/// Weights per mask word of [`bracket_chunk`].
const WORD: usize = 64;

/// Counts of [`bracket_chunk`] (u32: a chunk holds at most [`CHUNK_LEN`] weights).
#[derive(Default)]
struct Tally {
    above: u32,
    at_hi: u32,
    at_lo: u32,
    /// Nonzero when a NaN was seen (the SIMD kernels report 1, not a count).
    nans: u32,
}

impl Tally {
    /// Counts one magnitude.
    #[inline(always)]
    fn add(&mut self, m: u32, lo: u32, hi: u32) {
        self.above += u32::from(m > hi);
        self.at_hi += u32::from(m == hi);
        self.at_lo += u32::from(m == lo);
        self.nans += u32::from(m > INFINITY_BITS);
    }
}

/// Counts the weights of `words` (64 each) and calls `collect(word, mask)` with the mask of each
/// word's magnitudes strictly inside `(lo, hi)`, when it has any.
///
/// Magnitude bits are below 2^31, so SSE2's signed 32-bit comparisons order them. Counts are
/// kept per lane (a compare's all-ones lane is -1, so subtracting it adds 1; a chunk's
/// 2^20 weights cannot overflow a lane) and summed at the end.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn bracket_words<'a>(
    words: impl Iterator<Item = &'a [f32]>,
    lo: u32,
    hi: u32,
    mut collect: impl FnMut(&'a [f32], u64),
) -> Tally {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_and_si128, _mm_cmpeq_epi32, _mm_cmpgt_epi32, _mm_cvtsi128_si32, _mm_loadu_si128,
        _mm_movemask_epi8, _mm_or_si128, _mm_packs_epi16, _mm_packs_epi32, _mm_set1_epi32, _mm_setzero_si128,
        _mm_shuffle_epi32, _mm_sub_epi32,
    };
    // SAFETY: SSE2 is part of the x86_64 baseline; each word is checked to hold 64 values, and the
    // 16 unaligned 16-byte loads read those and nothing else.
    unsafe {
        let sign_off = _mm_set1_epi32(MAGNITUDE_MASK as i32);
        let (lo_v, hi_v, inf_v) = (
            _mm_set1_epi32(lo as i32),
            _mm_set1_epi32(hi as i32),
            _mm_set1_epi32(INFINITY_BITS as i32),
        );
        let zero = _mm_setzero_si128();
        let (mut above, mut at_hi, mut at_lo, mut nans) = (zero, zero, zero, zero);
        for word in words {
            assert_eq!(word.len(), WORD);
            let lanes = word.as_ptr().cast::<__m128i>();
            let mut step = |i: usize| {
                let m = _mm_and_si128(_mm_loadu_si128(lanes.add(i)), sign_off);
                above = _mm_sub_epi32(above, _mm_cmpgt_epi32(m, hi_v));
                at_hi = _mm_sub_epi32(at_hi, _mm_cmpeq_epi32(m, hi_v));
                at_lo = _mm_sub_epi32(at_lo, _mm_cmpeq_epi32(m, lo_v));
                nans = _mm_or_si128(nans, _mm_cmpgt_epi32(m, inf_v));
                _mm_and_si128(_mm_cmpgt_epi32(m, lo_v), _mm_cmpgt_epi32(hi_v, m))
            };
            let mut mask = 0u64;
            for quarter in 0..4 {
                let i = quarter * 4;
                let low = _mm_packs_epi32(step(i), step(i + 1));
                let high = _mm_packs_epi32(step(i + 2), step(i + 3));
                let bits = _mm_movemask_epi8(_mm_packs_epi16(low, high)) as u32;
                mask |= u64::from(bits) << (quarter * 16);
            }
            if mask != 0 {
                collect(word, mask);
            }
        }
        let sum = |v: __m128i| {
            let v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0b01_00_11_10));
            _mm_cvtsi128_si32(_mm_add_epi32(v, _mm_shuffle_epi32(v, 0b10_11_00_01))) as u32
        };
        Tally {
            above: sum(above),
            at_hi: sum(at_hi),
            at_lo: sum(at_lo),
            // All-ones lanes where a NaN was seen: any set lane is the answer.
            nans: u32::from(_mm_movemask_epi8(nans) != 0),
        }
    }
}

/// Whether [`bracket_words_avx2`] may run: the CPU has AVX2, and `CAFFE_RS_PORTABLE=1` in the environment does not
/// ask for the x86-64 baseline only (the test suite runs once that way, as on a CPU without AVX2).
#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        std::env::var_os("CAFFE_RS_PORTABLE").is_none_or(|v| v != "1") && std::is_x86_feature_detected!("avx2")
    })
}

/// [`bracket_words`] with 256-bit AVX2: 8 lanes per instruction instead of SSE2's 4.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn bracket_words_avx2<'a>(
    words: impl Iterator<Item = &'a [f32]>,
    lo: u32,
    hi: u32,
    mut collect: impl FnMut(&'a [f32], u64),
) -> Tally {
    use std::arch::x86_64::{
        __m256i, _mm256_and_si256, _mm256_castsi256_ps, _mm256_cmpeq_epi32, _mm256_cmpgt_epi32, _mm256_loadu_si256,
        _mm256_movemask_ps, _mm256_or_si256, _mm256_set1_epi32, _mm256_setzero_si256, _mm256_storeu_si256,
        _mm256_sub_epi32,
    };
    let sign_off = _mm256_set1_epi32(MAGNITUDE_MASK as i32);
    let (lo_v, hi_v, inf_v) = (
        _mm256_set1_epi32(lo as i32),
        _mm256_set1_epi32(hi as i32),
        _mm256_set1_epi32(INFINITY_BITS as i32),
    );
    let zero = _mm256_setzero_si256();
    let (mut above, mut at_hi, mut at_lo, mut nans) = (zero, zero, zero, zero);
    for word in words {
        assert_eq!(word.len(), WORD);
        let lanes = word.as_ptr().cast::<__m256i>();
        let mut mask = 0u64;
        for eighth in 0..WORD / 8 {
            // SAFETY: the word holds 64 values (asserted); the 8 unaligned 32-byte loads read
            // those and nothing else.
            let m = _mm256_and_si256(unsafe { _mm256_loadu_si256(lanes.add(eighth)) }, sign_off);
            above = _mm256_sub_epi32(above, _mm256_cmpgt_epi32(m, hi_v));
            at_hi = _mm256_sub_epi32(at_hi, _mm256_cmpeq_epi32(m, hi_v));
            at_lo = _mm256_sub_epi32(at_lo, _mm256_cmpeq_epi32(m, lo_v));
            nans = _mm256_or_si256(nans, _mm256_cmpgt_epi32(m, inf_v));
            let inside = _mm256_and_si256(_mm256_cmpgt_epi32(m, lo_v), _mm256_cmpgt_epi32(hi_v, m));
            mask |= u64::from(_mm256_movemask_ps(_mm256_castsi256_ps(inside)) as u8) << (8 * eighth);
        }
        if mask != 0 {
            collect(word, mask);
        }
    }
    let sum = |v: __m256i| {
        let mut lanes = [0u32; 8];
        // SAFETY: stores 32 bytes into the 32-byte array.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), v) };
        lanes.iter().sum::<u32>()
    };
    Tally {
        above: sum(above),
        at_hi: sum(at_hi),
        at_lo: sum(at_lo),
        // All-ones lanes where a NaN was seen: any set lane is the answer (summing them overflows).
        nans: u32::from(_mm256_movemask_ps(_mm256_castsi256_ps(nans)) != 0),
    }
}

/// Counts the weights of `words` (64 each) and calls `collect(word, mask)` with the mask of each
/// word's magnitudes strictly inside `(lo, hi)`, when it has any.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn bracket_words<'a>(
    words: impl Iterator<Item = &'a [f32]>,
    lo: u32,
    hi: u32,
    mut collect: impl FnMut(&'a [f32], u64),
) -> Tally {
    let mut tally = Tally::default();
    for word in words {
        let mask = word.iter().enumerate().fold(0u64, |mask, (lane, &w)| {
            let m = magnitude_bits(w);
            tally.add(m, lo, hi);
            mask | u64::from((m > lo) & (m < hi)) << lane
        });
        if mask != 0 {
            collect(word, mask);
        }
    }
    tally
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

    /// A bracket kernel's counts (above, at hi, at lo, any NaN) and the (first index, mask) of
    /// every word it reported.
    type KernelRun = ((u32, u32, u32, u32), Vec<(usize, u64)>);

    /// Runs one bracket kernel over the full words of `weights`.
    fn run_kernel(
        weights: &[f32],
        kernel: impl FnOnce(std::slice::ChunksExact<'_, f32>, &mut dyn FnMut(&[f32], u64)) -> Tally,
    ) -> KernelRun {
        let mut reported = Vec::new();
        let start = weights.as_ptr() as usize;
        let mut collect = |word: &[f32], mask: u64| reported.push(((word.as_ptr() as usize - start) / 4, mask));
        let tally = kernel(weights.chunks_exact(WORD), &mut collect);
        ((tally.above, tally.at_hi, tally.at_lo, tally.nans.min(1)), reported)
    }

    proptest! {
        /// The AVX2 bracket kernel counts and marks exactly what the baseline one does, and the
        /// baseline does what the scalar rule says (NaN, infinities, ties at both ends included).
        #[test]
        fn bracket_kernels_agree(weights in prop::collection::vec(any_weight_or_nan(), 0..700), ends in (0usize..700, 0usize..700)) {
            let magnitudes: Vec<u32> = weights.iter().map(|&w| magnitude_bits(w).min(MAGNITUDE_MASK)).collect();
            let pick = |i: usize| magnitudes.get(i).copied().unwrap_or(0);
            let (lo, hi) = (pick(ends.0).min(pick(ends.1)), pick(ends.0).max(pick(ends.1)));
            let full = weights.len() / WORD * WORD;
            let mut expected = ((0, 0, 0, 0), Vec::new());
            for (w, word) in weights[..full].chunks_exact(WORD).enumerate() {
                let mut mask = 0u64;
                for (lane, &x) in word.iter().enumerate() {
                    let m = magnitude_bits(x);
                    expected.0 .0 += u32::from(m > hi);
                    expected.0 .1 += u32::from(m == hi);
                    expected.0 .2 += u32::from(m == lo);
                    expected.0 .3 = expected.0 .3.max(u32::from(m > INFINITY_BITS));
                    mask |= u64::from(m > lo && m < hi) << lane;
                }
                if mask != 0 {
                    expected.1.push((w * WORD, mask));
                }
            }
            let baseline = run_kernel(&weights, |words, collect| bracket_words(words, lo, hi, collect));
            prop_assert_eq!(&baseline, &expected);
            #[cfg(target_arch = "x86_64")]
            if has_avx2() {
                // SAFETY: the CPU has AVX2, checked just above.
                let avx2 = run_kernel(&weights, |words, collect| unsafe { bracket_words_avx2(words, lo, hi, collect) });
                prop_assert_eq!(&avx2, &expected);
            }
        }
    }

    /// Any f32 bit pattern, NaN included.
    fn any_weight_or_nan() -> impl Strategy<Value = f32> {
        prop_oneof![
            any_weight(),
            Just(f32::NAN),
            Just(-f32::NAN),
            Just(0.0f32),
            Just(-0.0f32)
        ]
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
