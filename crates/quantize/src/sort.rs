//! Sorting the nonzero weights: a radix sort over order-preserving keys of the f32 bits.
//!
//! The weights reaching here are finite and nonzero, so no two equal values have different bits
//! and any correct sort gives the same bytes: the radix sort is only faster than a comparison
//! sort, not different, and so is its parallel split (the thread count cannot change a bit).
//!
//! One most-significant-digit pass on the top 12 bits (sign, exponent and three mantissa bits)
//! scatters the keys straight from the weights into 4096 buckets, in parallel over fixed chunks of
//! the weights; each bucket, now small enough to stay in cache, is then sorted on its other 20
//! bits by two least-significant-digit passes, the buckets shared among the threads. Measured on
//! this project's 2-core machine at 10 M weights: 155 ms for the sequential three-pass LSD sort
//! this replaced, 284 ms for `sort_unstable_by(f32::total_cmp)`.

use rayon::prelude::*;

use crate::codes::count_nonzero_finite;
use crate::error::QuantizeError;

/// Below this many values `sort_unstable_by(f32::total_cmp)` wins over the counting passes.
const RADIX_MIN: usize = 1 << 12;
/// Bits of the first (most significant) digit: sign, exponent and 3 mantissa bits, so that a
/// bucket of a trained blob's weights (1/8 of a binade) and its scratch stay in a core's L2.
const TOP_BITS: u32 = 11;
/// The buckets holding the keys of NaN and infinities at each end (exponent bits all set).
const NON_FINITE: usize = 1 << (TOP_BITS - 9);
/// Bits of the two digits of the second stage (low, then high).
const LOW_BITS: u32 = (32 - TOP_BITS) / 2;
const HIGH_BITS: u32 = 32 - TOP_BITS - LOW_BITS;
const BUCKETS: usize = 1 << TOP_BITS;
/// Weights per parallel task of the first pass. Fixed, so the split depends on the data only.
const CHUNK: usize = 1 << 18;
/// Buckets this small are sorted by comparison.
const SMALL_BUCKET: usize = 256;

/// Maps f32 bits to u32 keys whose unsigned order is the numeric order (for non-NaN values).
#[inline]
pub(crate) fn key(x: f32) -> u32 {
    let bits = x.to_bits();
    // Negative: flip every bit; positive: set the sign bit. Branch-free: the arithmetic shift
    // spreads the sign over the word.
    bits ^ (((bits as i32) >> 31) as u32 | 0x8000_0000)
}

#[inline]
fn from_key(k: u32) -> f32 {
    if k & 0x8000_0000 != 0 {
        f32::from_bits(k & 0x7fff_ffff)
    } else {
        f32::from_bits(!k)
    }
}

/// The sorted values and their runs: `(start, summary)` for each, in order.
pub(crate) type SortedRuns<T> = (Vec<f32>, Vec<(usize, T)>);

/// The nonzero values of `weights`, sorted ascending, as consecutive nonempty runs (one for a
/// small blob, else the buckets of the first pass), each run summarised by `summarise` on the
/// thread that sorted it, while it is in cache. Refuses NaN and infinite weights, naming the
/// first.
pub(crate) fn sorted_nonzero<T, F>(weights: &[f32], summarise: F) -> Result<SortedRuns<T>, QuantizeError>
where
    T: Send,
    F: Fn(&[f32]) -> T + Sync,
{
    if weights.len() < RADIX_MIN {
        count_nonzero_finite(weights)?;
        let mut values: Vec<f32> = weights.iter().copied().filter(|&x| x != 0.0).collect();
        values.sort_unstable_by(f32::total_cmp);
        let runs = if values.is_empty() {
            Vec::new()
        } else {
            vec![(0, summarise(&values))]
        };
        return Ok((values, runs));
    }
    let chunks: Vec<&[f32]> = weights.chunks(CHUNK).collect();
    let counts: Vec<Vec<usize>> = chunks.par_iter().map(|chunk| count_chunk(chunk)).collect();
    // The counting pass doubles as the check for NaN and infinities: their keys, and only theirs,
    // have the first and last NON_FINITE digits (negative and positive; exponent bits all set).
    let non_finite = |count: &Vec<usize>| {
        count[..NON_FINITE]
            .iter()
            .chain(&count[BUCKETS - NON_FINITE..])
            .any(|&n| n > 0)
    };
    if counts.iter().any(non_finite) {
        // Names the first offending weight.
        count_nonzero_finite(weights)?;
        unreachable!("a NaN or infinite weight was counted but not found");
    }
    let (mut keys, sizes) = scatter_by_top_digit(&chunks, &counts);
    let mut buckets = Vec::with_capacity(BUCKETS);
    let mut rest: &mut [u32] = &mut keys;
    let mut start = 0;
    for &size in &sizes {
        let (bucket, tail) = rest.split_at_mut(size);
        if !bucket.is_empty() {
            buckets.push((start, bucket));
        }
        start += size;
        rest = tail;
    }
    let runs = buckets
        .into_par_iter()
        .map_init(Vec::new, |scratch, (start, bucket)| {
            sort_low_bits(bucket, scratch);
            for k in bucket.iter_mut() {
                *k = from_key(*k).to_bits();
            }
            (start, summarise(bytemuck::cast_slice(bucket)))
        })
        .collect();
    Ok((bytemuck::allocation::cast_vec(keys), runs))
}

/// The keys of the nonzero weights ordered by their top [`TOP_BITS`] bits, and the number of
/// keys in each of the [`BUCKETS`] buckets.
/// `counts[c]` is [`count_chunk`] of `chunks[c]`.
fn scatter_by_top_digit(chunks: &[&[f32]], counts: &[Vec<usize>]) -> (Vec<u32>, Vec<usize>) {
    // Where each chunk's keys of each bucket start: buckets in order, chunks in order within.
    let mut offsets = vec![vec![0usize; BUCKETS]; chunks.len()];
    let mut sizes = vec![0usize; BUCKETS];
    let mut at = 0usize;
    for (b, size) in sizes.iter_mut().enumerate() {
        for (c, count) in counts.iter().enumerate() {
            offsets[c][b] = at;
            at += count[b];
            *size += count[b];
        }
    }
    let mut keys = vec![0u32; at];
    pages::advise_huge_pages(&mut keys);
    let out = SharedSlice(keys.as_mut_ptr());
    chunks.par_iter().zip(offsets.par_iter_mut()).for_each(|(chunk, next)| {
        // SAFETY: the slots `offsets[c][b] .. offsets[c][b] + counts[c][b]` are in bounds
        // (they sum to `keys.len()`) and disjoint between chunks and buckets;
        // each task writes only its own chunk's slots, `counts[c][b]` of them per bucket, as
        // it counted the same weights.
        unsafe { scatter_chunk(chunk, next, out) }
    });
    (keys, sizes)
}

/// Per bucket, the number of nonzero weights of `chunk` whose keys fall in it: branch-free (a
/// zero adds 0 to its own bucket), in four interleaved tables, since weights that follow each
/// other mostly share a bucket and one table would chain every increment on the last (3.5x
/// slower, measured).
#[inline(never)]
fn count_chunk(chunk: &[f32]) -> Vec<usize> {
    let mut tables = vec![[0u32; 4]; BUCKETS];
    let mut quads = chunk.chunks_exact(4);
    for quad in &mut quads {
        for (lane, &x) in quad.iter().enumerate() {
            tables[digit(key(x))][lane] += u32::from(x != 0.0);
        }
    }
    for &x in quads.remainder() {
        tables[digit(key(x))][0] += u32::from(x != 0.0);
    }
    tables.iter().map(|t| t.iter().map(|&c| c as usize).sum()).collect()
}

/// Writes the key of each nonzero weight of `chunk` to `out[next[b]]`, `b` its bucket, and
/// advances `next[b]`.
///
/// # Safety
/// For every bucket `b`, the next `count_chunk(chunk)[b]` slots from `next[b]` are in bounds of
/// `out` and written by no other thread.
#[inline(never)]
unsafe fn scatter_chunk(chunk: &[f32], next: &mut [usize], out: SharedSlice) {
    for &x in chunk {
        if x != 0.0 {
            let k = key(x);
            let slot = &mut next[digit(k)];
            // SAFETY: by the caller's promise, `*slot` is one of this bucket's own slots.
            unsafe { out.write(*slot, k) };
            *slot += 1;
        }
    }
}

/// The first-pass digit of a key: its top [`TOP_BITS`] bits.
#[inline]
fn digit(key: u32) -> usize {
    (key >> (32 - TOP_BITS)) as usize
}

/// A pointer into a buffer that tasks write at disjoint positions.
#[derive(Clone, Copy)]
struct SharedSlice(*mut u32);

// SAFETY: only used for writes to disjoint positions (see `scatter_by_top_digit`).
unsafe impl Send for SharedSlice {}
unsafe impl Sync for SharedSlice {}

impl SharedSlice {
    /// # Safety
    /// `index` is in bounds and no other thread reads or writes it meanwhile.
    #[inline]
    unsafe fn write(self, index: usize, value: u32) {
        unsafe { self.0.add(index).write(value) }
    }
}

/// Sorts keys that share their top bits by their other bits: two LSD passes through `scratch`
/// ([`LOW_BITS`], then [`HIGH_BITS`]), one histogram pass for both, a pass skipped when its digit
/// is constant.
#[inline(never)]
fn sort_low_bits(keys: &mut [u32], scratch: &mut Vec<u32>) {
    const LOW_MASK: u32 = (1 << LOW_BITS) - 1;
    const HIGH_MASK: u32 = (1 << HIGH_BITS) - 1;
    let n = keys.len();
    // (u32 counters: a bucket of 2^32 keys, 16 GiB, would take the comparison sort.)
    if n < SMALL_BUCKET || u32::try_from(n).is_err() {
        keys.sort_unstable();
        return;
    }
    let mut low = [0u32; 1 << LOW_BITS];
    let mut high = [0u32; 1 << HIGH_BITS];
    for &k in keys.iter() {
        low[(k & LOW_MASK) as usize] += 1;
        high[((k >> LOW_BITS) & HIGH_MASK) as usize] += 1;
    }
    scratch.clear();
    scratch.resize(n, 0);
    let mut in_scratch = false;
    for (hist, shift, mask) in [(&mut low[..], 0, LOW_MASK), (&mut high[..], LOW_BITS, HIGH_MASK)] {
        if hist.iter().any(|&c| c as usize == n) {
            continue;
        }
        let mut offset = 0;
        for c in hist.iter_mut() {
            let here = *c;
            *c = offset;
            offset += here;
        }
        let (from, to): (&[u32], &mut [u32]) = if in_scratch {
            (&scratch[..], &mut keys[..])
        } else {
            (&keys[..], &mut scratch[..])
        };
        for &k in from {
            let digit = ((k >> shift) & mask) as usize;
            to[hist[digit] as usize] = k;
            hist[digit] += 1;
        }
        in_scratch = !in_scratch;
    }
    if in_scratch {
        keys.copy_from_slice(scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_preserve_order() {
        let xs = [
            f32::MIN,
            -1.5,
            -f32::MIN_POSITIVE,
            -1e-45,
            1e-45,
            f32::MIN_POSITIVE,
            1.0,
            f32::MAX,
        ];
        for pair in xs.windows(2) {
            assert!(key(pair[0]) < key(pair[1]), "{pair:?}");
        }
        for &x in &xs {
            assert_eq!(from_key(key(x)).to_bits(), x.to_bits());
        }
    }

    #[test]
    fn non_finite_weights_are_found_by_the_counting_pass() {
        // Large enough for the radix path; the extremes of the finite range and of the
        // subnormals sit in the digits next to the non-finite ones and must pass.
        let mut w: Vec<f32> = (0..3 * RADIX_MIN).map(|i| (i as f32 - 5000.0) * 1e-3).collect();
        w.extend([f32::MAX, -f32::MAX, f32::from_bits(1), -f32::from_bits(1), -0.0, 0.0]);
        assert_eq!(sorted_nonzero(&w, |_| ()).unwrap().0.len(), w.len() - 3);
        for (bad, index) in [
            (f32::NAN, 7000),
            (f32::INFINITY, 9),
            (f32::NEG_INFINITY, 12_000),
            (-f32::NAN, 1),
        ] {
            let mut v = w.clone();
            v[index] = bad;
            let expected = if bad.is_nan() {
                QuantizeError::NanWeight { index }
            } else {
                QuantizeError::InfiniteWeight { index }
            };
            assert_eq!(sorted_nonzero(&v, |_| ()).unwrap_err(), expected);
        }
    }

    #[test]
    fn radix_equals_comparison_sort() {
        let mut state = 1u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 32) as u32
        };
        // Random bit patterns (zeros, NaN and infinities replaced), duplicates, zeros of both
        // signs, and a narrow range where the top digit is shared.
        let mut weights: Vec<f32> = (0..20_000)
            .map(|i| {
                let x = f32::from_bits(next());
                if x.is_finite() {
                    x
                } else {
                    (i as f32 - 10_000.5) * 1e-3
                }
            })
            .collect();
        weights.extend((0..5_000).map(|i| 1.0 + (i % 7) as f32 * 1e-7));
        weights.extend([0.0, -0.0, 0.0]);
        let narrow: Vec<f32> = (0..10_000).map(|i| 2.0 + ((i * 7919) % 10_000) as f32 * 1e-6).collect();
        // Several first-pass chunks, with a run of zeros across a chunk boundary.
        let mut long: Vec<f32> = (0..3 * CHUNK / 2 + 17)
            .map(|i| ((i * 7919) % 100_003) as f32 * 1e-3 - 50.0)
            .collect();
        long[CHUNK - 5..CHUNK + 5].fill(0.0);
        for w in [weights, narrow, long, vec![1.5, 0.0, -2.0]] {
            let mut expected: Vec<f32> = w.iter().copied().filter(|&x| x != 0.0).collect();
            expected.sort_unstable_by(f32::total_cmp);
            let (sorted, runs) = sorted_nonzero(&w, <[f32]>::len).unwrap();
            assert_eq!(sorted, expected);
            // The runs tile the values.
            let mut at = 0;
            for (start, len) in runs {
                assert_eq!(start, at);
                assert!(len > 0);
                at += len;
            }
            assert_eq!(at, sorted.len());
        }
    }
}
