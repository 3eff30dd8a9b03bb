//! Running f64 sums over the sorted weights, stored every [`BLOCK`] values.
//!
//! A full prefix array costs 8 bytes per weight, twice the weights themselves, and on the
//! project's VM fresh memory is expensive (first-touch page faults measured at about 0.5 ms per
//! MB). Storing the running sum at every 16th position and finishing a query by adding the at
//! most 15 values after it costs 0.5 byte per weight and gives **the same bits** as the full
//! array: the additions are the same, in the same order.

/// Positions between stored running sums.
const BLOCK: usize = 16;

/// `sum(i)` = `f(sorted[0]) + f(sorted[1]) + ... + f(sorted[i - 1])`, accumulated left to right
/// in f64, for `f` the identity or the square.
pub(crate) struct Prefix {
    /// `blocks[b]` is the running sum over `sorted[..b * BLOCK]`.
    blocks: Vec<f64>,
    square: bool,
}

impl Prefix {
    /// Running sums of the values.
    pub(crate) fn sums(sorted: &[f32]) -> Self {
        Self::new(sorted, false)
    }

    /// Running sums of the squared values.
    pub(crate) fn squares(sorted: &[f32]) -> Self {
        Self::new(sorted, true)
    }

    fn new(sorted: &[f32], square: bool) -> Self {
        let mut blocks = Vec::with_capacity(sorted.len() / BLOCK + 1);
        let mut acc = 0.0f64;
        blocks.push(acc);
        for chunk in sorted.chunks(BLOCK) {
            for &x in chunk {
                acc += term(x, square);
            }
            if chunk.len() == BLOCK {
                blocks.push(acc);
            }
        }
        Self { blocks, square }
    }

    /// The running sum over `sorted[..i]` (`sorted` the slice this was built from, `i <= len`).
    #[inline]
    pub(crate) fn at(&self, sorted: &[f32], i: usize) -> f64 {
        let b = i / BLOCK;
        let mut acc = self.blocks[b];
        for &x in &sorted[b * BLOCK..i] {
            acc += term(x, self.square);
        }
        acc
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

    #[test]
    fn equals_the_full_prefix_array_bit_for_bit() {
        let sorted: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1000) as f32 * 1.37e-3 - 0.6).collect();
        let sums = Prefix::sums(&sorted);
        let squares = Prefix::squares(&sorted);
        let (mut acc, mut acc2) = (0.0f64, 0.0f64);
        for i in 0..=sorted.len() {
            assert_eq!(sums.at(&sorted, i).to_bits(), acc.to_bits(), "{i}");
            assert_eq!(squares.at(&sorted, i).to_bits(), acc2.to_bits(), "{i}");
            if let Some(&x) = sorted.get(i) {
                acc += f64::from(x);
                acc2 += f64::from(x) * f64::from(x);
            }
        }
        assert_eq!(Prefix::sums(&[]).at(&[], 0), 0.0);
    }
}
