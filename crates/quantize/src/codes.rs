//! Codes from a codebook and back: nearest-centroid assignment, reconstruction, centroid
//! gradients.

use rayon::prelude::*;

use crate::error::QuantizeError;
use crate::sort::key;

/// The largest f32 that goes to the lower of two neighbouring centroids `a < b`: a value `x`
/// takes `a` exactly when `x <= lower_limit(a, b)`, which is `x <= (a + b) / 2` decided exactly
/// (a value at the midpoint goes to the lower centroid, as scipy's `vq` gives a tie to the first
/// code).
///
/// `a + b` of two f32 values is exact in f64 unless their exponents are far apart; TwoSum gives
/// the rounding error `e` of `s = fl(a + b)`, and since no f64 lies strictly between `s / 2` and
/// the true midpoint, `x <= midpoint` is `x <= s / 2` when `e >= 0` and `x < s / 2` when `e < 0`.
/// The f64 threshold is then rounded down to the f32 grid, so that the searches compare f32s.
pub(crate) fn lower_limit(a: f32, b: f32) -> f32 {
    let (a, b) = (f64::from(a), f64::from(b));
    let s = a + b;
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    let half = s * 0.5;
    let limit = if e < 0.0 { half.next_down() } else { half };
    let mut t = limit as f32;
    if f64::from(t) > limit {
        t = t.next_down();
    }
    t
}

/// The lower limits between consecutive centroids (`centroids` strictly ascending).
pub(crate) fn limits(centroids: &[f32]) -> Vec<f32> {
    centroids.windows(2).map(|pair| lower_limit(pair[0], pair[1])).collect()
}

/// Nearest-centroid search for many weights.
///
/// A branchy binary search over the `k - 1` limits costs about 8 ns a weight at 31 centroids
/// (a branch-free one was measured slower: its loads form one dependency chain). For large
/// blobs a table over the top 16 bits of each weight's order-preserving key (a bucket is 1/128
/// of a binade) holds, per bucket, the code of the bucket's lowest weights and the at most two
/// limits that fall inside it, so the code is `base + (x > lo) + (x > hi)`, branch-free; only
/// buckets holding three or more limits fall back to the search (rare: even 255 centroids over
/// trained weights are spaced about as widely as the buckets where the weights lie). Zeros
/// are picked out by a select after the lookup (the buckets of `+0.0` and `-0.0` also hold tiny
/// nonzero weights).
pub(crate) struct SearchTable {
    limits: Vec<f32>,
    /// Per bucket `key >> 16`; empty for small blobs.
    buckets: Vec<Bucket>,
}

/// One key range of [`SearchTable`]: `code = base + (x > lo) + (x > hi)`, with `+inf` for an
/// absent limit; `base == SEARCH` when more limits fall inside.
#[derive(Clone, Copy)]
struct Bucket {
    lo: f32,
    hi: f32,
    base: u32,
}

/// Bucket base for "three or more limits lie inside this key range: search".
const SEARCH: u32 = u32::MAX;
/// Below this many weights the bucket table costs more to build than it saves.
const BUCKETS_MIN: usize = 1 << 15;
/// Weights per parallel task in [`assign_unchecked`].
const ASSIGN_CHUNK: usize = 1 << 16;

impl SearchTable {
    /// For `weights` weights against strictly ascending `centroids`.
    pub(crate) fn new(centroids: &[f32], weights: usize) -> Self {
        let limits = limits(centroids);
        let buckets = if weights >= BUCKETS_MIN {
            Self::buckets(&limits)
        } else {
            Vec::new()
        };
        Self { limits, buckets }
    }

    fn buckets(limits: &[f32]) -> Vec<Bucket> {
        let keys: Vec<u32> = limits.iter().map(|&t| key(t)).collect();
        let mut buckets = Vec::with_capacity(1 << 16);
        // below = number of limit keys < the bucket's first key.
        let mut below = 0usize;
        for b in 0..1u32 << 16 {
            let first = b << 16;
            let last = first | 0xffff;
            while below < keys.len() && keys[below] < first {
                below += 1;
            }
            // The limits inside are those with keys in [first, last): a limit at `last` (the
            // bucket's largest key) is not below any weight of the bucket.
            let inside = keys[below..].iter().take_while(|&&k| k < last).count();
            let base = (below + 1) as u32;
            let at = |i: usize| if i < inside { limits[below + i] } else { f32::INFINITY };
            buckets.push(match inside {
                0..=2 => Bucket {
                    lo: at(0),
                    hi: at(1),
                    base,
                },
                _ => Bucket {
                    lo: 0.0,
                    hi: 0.0,
                    base: SEARCH,
                },
            });
        }
        buckets
    }

    /// Code of one weight: 0 for an exact zero, else 1 + the index of its nearest centroid,
    /// i.e. 1 + the number of limits below the weight.
    #[inline]
    pub(crate) fn code(&self, x: f32) -> u8 {
        if let Some(bucket) = self.buckets.get((key(x) >> 16) as usize) {
            if bucket.base != SEARCH {
                let code = bucket.base + u32::from(x > bucket.lo) + u32::from(x > bucket.hi);
                // A select, not a branch: pruned blobs mix zeros and nonzeros at random.
                return if x == 0.0 { 0 } else { code as u8 };
            }
        }
        self.search(x)
    }

    /// The codes of `weights` into `codes` (of the same length).
    #[inline(never)]
    fn codes(&self, weights: &[f32], codes: &mut [u8]) {
        for (code, &x) in codes.iter_mut().zip(weights) {
            *code = self.code(x);
        }
    }

    #[inline]
    fn search(&self, x: f32) -> u8 {
        if x == 0.0 {
            return 0;
        }
        let mut base = 0usize;
        let mut len = self.limits.len();
        while len > 0 {
            let half = len / 2;
            // x above the limit: x is past that midpoint, so it belongs higher up.
            if x > self.limits[base + half] {
                base += half + 1;
                len -= half + 1;
            } else {
                len = half;
            }
        }
        (base + 1) as u8
    }
}

/// Assigns codes for already validated weights and centroids, in parallel over fixed chunks
/// (each code depends on its weight alone, so the thread count cannot change a byte).
pub(crate) fn assign_unchecked(weights: &[f32], centroids: &[f32]) -> Vec<u8> {
    let table = SearchTable::new(centroids, weights.len());
    let mut codes = vec![0u8; weights.len()];
    pages::advise_huge_pages(&mut codes);
    codes
        .par_chunks_mut(ASSIGN_CHUNK)
        .zip(weights.par_chunks(ASSIGN_CHUNK))
        .for_each(|(codes, weights)| table.codes(weights, codes));
    codes
}

/// Checks a codebook's invariants: 1..=256 entries, `+0.0` first, then finite, nonzero,
/// strictly ascending centroids.
pub fn check_codebook(codebook: &[f32]) -> Result<(), QuantizeError> {
    if codebook.is_empty() || codebook.len() > 256 {
        return Err(QuantizeError::InvalidCodebookLength(codebook.len()));
    }
    if codebook[0].to_bits() != 0 {
        return Err(QuantizeError::NonZeroFirstEntry(codebook[0]));
    }
    for (index, &value) in codebook.iter().enumerate().skip(1) {
        if !value.is_finite() || value == 0.0 {
            return Err(QuantizeError::InvalidCentroid { index, value });
        }
        if index >= 2 && value <= codebook[index - 1] {
            return Err(QuantizeError::CentroidsNotAscending { index });
        }
    }
    Ok(())
}

/// Refuses NaN and infinite weights, naming the first one; otherwise counts the nonzero ones.
/// One branch-free pass (per 4 Ki chunk), then a second only to locate an offending weight.
pub(crate) fn count_nonzero_finite(weights: &[f32]) -> Result<usize, QuantizeError> {
    let mut count = 0usize;
    for chunk in weights.chunks(4096) {
        // u32 lanes so that the loop vectorizes (bool and usize accumulators did not: 3.6x
        // slower at 100 M weights, measured).
        let mut bad = 0u32;
        let mut nonzero = 0u32;
        for &x in chunk {
            let bits = x.to_bits();
            // Exponent all ones: NaN or infinity.
            bad |= u32::from(bits & 0x7f80_0000 == 0x7f80_0000);
            nonzero += u32::from(bits & 0x7fff_ffff != 0);
        }
        if bad != 0 {
            let index = weights.iter().position(|x| !x.is_finite()).unwrap_or_default();
            return Err(if weights[index].is_nan() {
                QuantizeError::NanWeight { index }
            } else {
                QuantizeError::InfiniteWeight { index }
            });
        }
        count += nonzero as usize;
    }
    Ok(count)
}

/// Codes of `weights` against a fixed codebook: an exact zero (`+0.0` or `-0.0`) gets code 0,
/// every other weight the code of its nearest centroid, a weight exactly halfway between two
/// centroids the lower one (scipy's `vq` gives a tie to the first code). Distances are compared
/// exactly, not in rounded arithmetic.
///
/// Use it to re-assign weights to a codebook that was fine-tuned, or to quantize a blob with a
/// codebook found elsewhere. The codebook must satisfy [`check_codebook`]'s invariants.
///
/// ```
/// // Midpoint of -1 and 0.5 is -0.25: a tie, so it goes to the lower centroid (code 1).
/// let codes = quantize::assign(&[0.0, -0.9, -0.25, 0.25, -0.0, 3.0], &[0.0, -1.0, 0.5])?;
/// assert_eq!(codes, [0, 1, 1, 2, 0, 2]);
/// # Ok::<(), quantize::QuantizeError>(())
/// ```
pub fn assign(weights: &[f32], codebook: &[f32]) -> Result<Vec<u8>, QuantizeError> {
    check_codebook(codebook)?;
    count_nonzero_finite(weights)?;
    let centroids = &codebook[1..];
    if centroids.is_empty() {
        if weights.iter().any(|&x| x != 0.0) {
            return Err(QuantizeError::NoCentroids);
        }
        return Ok(vec![0; weights.len()]);
    }
    Ok(assign_unchecked(weights, centroids))
}

/// Rebuilds a blob from its codebook and codes: `out[i] = codebook[codes[i]]`.
///
/// The codebook needs 1..=256 entries with `+0.0` first (so code 0 gives back the pruned zeros
/// as `+0.0`); its other entries are taken as they are, so a codebook whose centroids were moved
/// by training rebuilds too. Every code must index the codebook.
pub fn reconstruct(codebook: &[f32], codes: &[u8]) -> Result<Vec<f32>, QuantizeError> {
    let mut out = vec![0.0f32; codes.len()];
    reconstruct_into(codebook, codes, &mut out)?;
    Ok(out)
}

/// [`reconstruct`] into a slice of the codes' length (for example a network's weight blob).
/// `out` is left untouched when an error is returned.
pub fn reconstruct_into(codebook: &[f32], codes: &[u8], out: &mut [f32]) -> Result<(), QuantizeError> {
    check_table(codebook)?;
    if out.len() != codes.len() {
        return Err(QuantizeError::LengthMismatch {
            codes: codes.len(),
            values: out.len(),
        });
    }
    check_codes(codes, codebook.len())?;
    let mut table = [0.0f32; 256];
    table[..codebook.len()].copy_from_slice(codebook);
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = table[usize::from(c)];
    }
    Ok(())
}

/// Han et al.'s gradient of each shared value: the sum of the gradients of the weights that
/// share it, `grad[k] = sum of weight_grads[i] over codes[i] == k`, accumulated in f64 in index
/// order (so the result does not depend on the machine) and rounded once to f32.
///
/// Entry 0 (the pruned zeros) gets no gradient and is always `0.0`: the zeros stay zero. The
/// result has `codebook_len` entries, matching the codebook it updates; a centroid no weight
/// uses gets `0.0`. Non-finite gradients are not refused: they reach their centroid's sum, as
/// they would reach the weights in dense training.
pub fn centroid_gradients(codes: &[u8], weight_grads: &[f32], codebook_len: usize) -> Result<Vec<f32>, QuantizeError> {
    if codebook_len == 0 || codebook_len > 256 {
        return Err(QuantizeError::InvalidCodebookLength(codebook_len));
    }
    if codes.len() != weight_grads.len() {
        return Err(QuantizeError::LengthMismatch {
            codes: codes.len(),
            values: weight_grads.len(),
        });
    }
    check_codes(codes, codebook_len)?;
    let mut sums = [0.0f64; 256];
    for (&c, &g) in codes.iter().zip(weight_grads) {
        sums[usize::from(c)] += f64::from(g);
    }
    sums[0] = 0.0;
    Ok(sums[..codebook_len].iter().map(|&s| s as f32).collect())
}

fn check_table(codebook: &[f32]) -> Result<(), QuantizeError> {
    if codebook.is_empty() || codebook.len() > 256 {
        return Err(QuantizeError::InvalidCodebookLength(codebook.len()));
    }
    if codebook[0].to_bits() != 0 {
        return Err(QuantizeError::NonZeroFirstEntry(codebook[0]));
    }
    Ok(())
}

fn check_codes(codes: &[u8], codebook_len: usize) -> Result<(), QuantizeError> {
    if codebook_len >= 256 {
        return Ok(());
    }
    let max = codes.iter().copied().max().unwrap_or(0);
    if usize::from(max) < codebook_len {
        return Ok(());
    }
    let index = codes
        .iter()
        .position(|&c| usize::from(c) >= codebook_len)
        .unwrap_or_default();
    Err(QuantizeError::CodeOutOfRange {
        index,
        code: codes[index],
        codebook_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midpoint_goes_to_the_lower_centroid() {
        assert_eq!(lower_limit(1.0, 3.0), 2.0);
        let table = SearchTable::new(&[1.0, 3.0], 0);
        assert_eq!(table.code(2.0), 1);
        assert_eq!(table.code(2.0f32.next_up()), 2);
    }

    #[test]
    fn far_apart_centroids_are_decided_exactly() {
        // Centroids -2^-100 and 1: the true midpoint is 0.5 - 2^-101, so 0.5 is nearer to 1
        // (distance 0.5) than to -2^-100 (distance 0.5 + 2^-100), though the f64 sum rounds
        // the midpoint to 0.5 exactly.
        let a = -(2.0f32.powi(-100));
        let t = lower_limit(a, 1.0);
        assert!(t < 0.5);
        let table = SearchTable::new(&[a, 1.0], 0);
        assert_eq!(table.code(0.5), 2);
        assert_eq!(table.code(0.5f32.next_down()), 1);
        // And the other way: centroids 2^-100 and 1, midpoint 0.5 + 2^-101: 0.5 goes lower.
        assert_eq!(lower_limit(2.0f32.powi(-100), 1.0), 0.5);
        assert_eq!(SearchTable::new(&[2.0f32.powi(-100), 1.0], 0).code(0.5), 1);
    }

    #[test]
    fn the_search_counts_the_limits_below() {
        // Every table size from 1 to 20 centroids, with and without buckets: centroids 1, 2, ...,
        // each value, each midpoint, values just around them.
        for m in 1..=20usize {
            let centroids: Vec<f32> = (1..=m).map(|i| i as f32).collect();
            for weights in [0, BUCKETS_MIN] {
                let table = SearchTable::new(&centroids, weights);
                for i in 1..=m {
                    let x = i as f32;
                    assert_eq!(table.code(x), i as u8);
                    assert_eq!(table.code(x + 0.5), i as u8, "a tie goes lower");
                    assert_eq!(table.code((x + 0.5).next_up()), (i + 1).min(m) as u8);
                    assert_eq!(table.code(-x), 1);
                }
                assert_eq!(table.code(f32::MAX), m as u8);
                assert_eq!(table.code(0.0), 0);
                assert_eq!(table.code(-0.0), 0);
                assert_eq!(table.code(f32::from_bits(1)), 1);
            }
        }
    }

    #[test]
    fn buckets_agree_with_the_search_everywhere() {
        // Centroids around zero, tiny and huge; every 2^12-th f32 bit pattern.
        let centroids = [-3e30f32, -1.0, -1e-3, -1e-40, 2e-45, 1e-20, 0.5, 0.51, 7.0, f32::MAX];
        let table = SearchTable::new(&centroids, BUCKETS_MIN);
        assert!(!table.buckets.is_empty());
        for bits in (0..=u32::MAX).step_by(1 << 12).chain([0x8000_0000, 1, 0x8000_0001]) {
            let x = f32::from_bits(bits);
            if x.is_finite() {
                assert_eq!(table.code(x), table.search(x), "{x:e}");
            }
        }
    }

    #[test]
    fn buckets_with_one_two_and_many_limits_agree_with_the_search() {
        // Spacing growing from 2^-14 to 2^-7.3 around 1.0, where a bucket is 2^-7 wide: buckets
        // holding many, three, two, one and no limits, and limits on bucket edges.
        let mut centroids: Vec<f32> = (0..64).map(|i| 1.0 + (i * i) as f32 * 2f32.powi(-14)).collect();
        centroids.extend([1.5 - 2f32.powi(-23), 1.5, 1.5 + 2f32.powi(-7)]);
        centroids.sort_by(f32::total_cmp);
        centroids.dedup();
        let table = SearchTable::new(&centroids, BUCKETS_MIN);
        let counts = table.buckets[(key(1.0) >> 16) as usize..(key(2.0) >> 16) as usize]
            .iter()
            .map(|b| {
                if b.base == SEARCH {
                    3
                } else {
                    usize::from(b.lo.is_finite()) + usize::from(b.hi.is_finite())
                }
            })
            .fold([0usize; 4], |mut n, c| {
                n[c] += 1;
                n
            });
        assert!(counts.iter().all(|&n| n > 0), "bucket kinds covered: {counts:?}");
        let mut x = 0.9f32;
        while x < 2.1 {
            assert_eq!(table.code(x), table.search(x), "{x:e}");
            x = f32::from_bits(x.to_bits() + 37);
        }
        for &c in &centroids {
            for t in [c, c.next_up(), c.next_down()] {
                assert_eq!(table.code(t), table.search(t), "{t:e}");
            }
        }
        for t in limits(&centroids) {
            for t in [t, t.next_up()] {
                assert_eq!(table.code(t), table.search(t), "{t:e}");
            }
        }
    }

    #[test]
    fn extreme_centroids_do_not_overflow() {
        let t = lower_limit(f32::MAX.next_down(), f32::MAX);
        assert!(t >= f32::MAX.next_down() && t < f32::MAX);
        let t = lower_limit(-f32::MAX, f32::MAX);
        assert_eq!(t, 0.0);
    }
}
