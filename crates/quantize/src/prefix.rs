//! Running f64 sums over the sorted weights, stored every [`BLOCK`] values.
//!
//! A full prefix array costs 8 bytes per weight, twice the weights themselves, and on the
//! project's VM fresh memory is expensive (first-touch page faults measured at about 0.5 ms per
//! MB). Storing the running sum at every 16th position and finishing a query by adding the at
//! most 15 values after it costs 0.5 byte per weight.
//!
//! The sorted weights come in *runs* (the radix sort's buckets, see [`crate::sort`]) and the sums
//! restart at every run: each run is summed by the thread that just sorted it, while it is still
//! in cache, and a query adds its run's offset (the sum of the runs before it, accumulated in
//! order). The runs depend on the weights only, so the bits do not depend on the thread count.

use rayon::prelude::*;

/// Positions between stored running sums.
const BLOCK: usize = 16;

/// One run's running sums: `blocks[j]` is the sum over `run[..j * BLOCK]` for `j <= len / BLOCK`,
/// `total` the sum over the whole run, each accumulated left to right in f64.
pub(crate) struct RunSums {
    blocks: Vec<f64>,
    total: f64,
}

impl RunSums {
    /// The running sums of `f(x)` over `run`, `f` the identity or (with `square`) the square.
    pub(crate) fn of(run: &[f32], square: bool) -> Self {
        let mut blocks = Vec::with_capacity(run.len() / BLOCK + 1);
        let mut acc = 0.0f64;
        let mut chunks = run.chunks_exact(BLOCK);
        for chunk in &mut chunks {
            blocks.push(acc);
            for &x in chunk {
                acc += term(x, square);
            }
        }
        blocks.push(acc);
        for &x in chunks.remainder() {
            acc += term(x, square);
        }
        Self { blocks, total: acc }
    }
}

/// `at(i)` = the sum of `f(sorted[j])` for `j < i`, for `f` the identity or the square: the sum
/// of the whole runs before `i`'s run plus the running sum over `i`'s run up to `i`.
pub(crate) struct Prefix {
    /// Where each run starts in `sorted` (ascending, the first 0); empty for no values.
    starts: Vec<usize>,
    /// Each run's sums, as the threads made them (not copied into one array: that would be
    /// 0.5 byte per weight of fresh memory for nothing).
    runs: Vec<RunSums>,
    /// The sum over the runs before each run, and over all of them at the end.
    offsets: Vec<f64>,
    square: bool,
}

impl Prefix {
    /// From the runs of a sorted slice: `(start, sums)` in order, the first at 0, each run's
    /// sums made with the same `square`.
    pub(crate) fn from_runs(runs: Vec<(usize, RunSums)>, square: bool) -> Self {
        let mut offsets = Vec::with_capacity(runs.len() + 1);
        let mut total = 0.0f64;
        for (_, run) in &runs {
            offsets.push(total);
            total += run.total;
        }
        offsets.push(total);
        let (starts, runs) = runs.into_iter().unzip();
        Self {
            starts,
            runs,
            offsets,
            square,
        }
    }

    /// The same runs over the same sorted values, summing squares: in parallel, one run a task.
    pub(crate) fn squares_of(&self, sorted: &[f32]) -> Self {
        let runs = (0..self.starts.len())
            .into_par_iter()
            .map(|g| {
                let end = self.starts.get(g + 1).copied().unwrap_or(sorted.len());
                (self.starts[g], RunSums::of(&sorted[self.starts[g]..end], true))
            })
            .collect();
        Self::from_runs(runs, true)
    }

    /// The sum over `sorted[..i]` (`sorted` the slice this was built from, `i <= len`).
    #[inline]
    pub(crate) fn at(&self, sorted: &[f32], i: usize) -> f64 {
        // The last run starting at or before i (at the end: the last run, or none).
        let g = self.starts.partition_point(|&s| s <= i);
        if g == 0 {
            return 0.0;
        }
        let g = g - 1;
        let local = i - self.starts[g];
        let mut acc = self.runs[g].blocks[local / BLOCK];
        for &x in &sorted[i - local % BLOCK..i] {
            acc += term(x, self.square);
        }
        self.offsets[g] + acc
    }

    /// The sum over `sorted[l..r]`, as the difference of two running sums.
    #[inline]
    pub(crate) fn range(&self, sorted: &[f32], l: usize, r: usize) -> f64 {
        self.at(sorted, r) - self.at(sorted, l)
    }
}

#[inline]
fn term(x: f32, square: bool) -> f64 {
    let x = f64::from(x);
    if square {
        x * x
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one position at a time.
    fn reference(sorted: &[f32], starts: &[usize], i: usize, square: bool) -> f64 {
        let mut total = 0.0f64;
        for (g, &start) in starts.iter().enumerate() {
            let end = starts.get(g + 1).copied().unwrap_or(sorted.len());
            let mut acc = 0.0f64;
            for &x in &sorted[start..end.min(i)] {
                acc += term(x, square);
            }
            if i < end || g + 1 == starts.len() {
                return total + acc;
            }
            total += acc;
        }
        0.0
    }

    fn runs(sorted: &[f32], starts: &[usize], square: bool) -> Prefix {
        let runs = starts
            .iter()
            .enumerate()
            .map(|(g, &start)| {
                let end = starts.get(g + 1).copied().unwrap_or(sorted.len());
                (start, RunSums::of(&sorted[start..end], square))
            })
            .collect();
        Prefix::from_runs(runs, square)
    }

    #[test]
    fn equals_the_definition_bit_for_bit() {
        let layouts: [(usize, &[usize]); 6] = [
            (0, &[]),
            (1, &[0]),
            (16, &[0]),
            (1000, &[0]),
            (1000, &[0, 1, 17, 32, 33, 500, 999]),
            (4096, &[0, 16, 2048, 4080]),
        ];
        for (len, starts) in layouts {
            let sorted: Vec<f32> = (0..len).map(|i| ((i * 7919) % 1000) as f32 * 1.37e-3 - 0.6).collect();
            let sums = runs(&sorted, starts, false);
            let squares = sums.squares_of(&sorted);
            assert_eq!(squares.starts, starts);
            for i in 0..=len {
                let (s, q) = (sums.at(&sorted, i), squares.at(&sorted, i));
                assert_eq!(s.to_bits(), reference(&sorted, starts, i, false).to_bits(), "{len} {i}");
                assert_eq!(q.to_bits(), reference(&sorted, starts, i, true).to_bits(), "{len} {i}");
            }
        }
    }
}
