//! Fast search for nonzero entries in a dense `f32` slice.
//!
//! Both the gap codec and the CSR builder spend nearly all their time looking
//! at zeros, so they share this one scanner. It tests 16 values at a time with
//! a vectorised OR of their bits (one branch per block: at 1 % density 85 % of
//! blocks are skipped outright), and in the other blocks builds a bit mask of
//! the nonzero lanes and visits only those. Measured on 100 M values at 1 %
//! density this beat 64-value masks (2x) and matched explicit SSE2.

/// Values tested per block.
const LANES: usize = 16;

/// Whether `value` counts as nonzero: `value != 0.0`, computed on the bits so
/// it vectorises. Shifting out the sign bit maps both +0.0 and -0.0 to 0; NaN
/// (nonzero exponent) stays nonzero, exactly like `!=`.
#[inline(always)]
pub(crate) fn is_nonzero(value: f32) -> bool {
    value.to_bits() << 1 != 0
}

/// Whether any value of `block` is nonzero (OR of the sign-less bits).
#[inline(always)]
fn any_nonzero(block: &[f32; LANES]) -> bool {
    block.iter().fold(0u32, |acc, value| acc | (value.to_bits() << 1)) != 0
}

/// Bit `lane` of the result is set iff `block[lane]` is nonzero.
#[inline(always)]
fn nonzero_mask(block: &[f32; LANES]) -> u32 {
    let mut mask = 0u32;
    for (lane, &value) in block.iter().enumerate() {
        mask |= u32::from(is_nonzero(value)) << lane;
    }
    mask
}

/// Calls `visit(index, value)` for every nonzero `value` of `flat`, in
/// increasing index order.
#[inline(always)]
pub(crate) fn for_each_nonzero<F: FnMut(usize, f32)>(flat: &[f32], mut visit: F) {
    let mut blocks = flat.chunks_exact(LANES);
    let mut base = 0usize;
    for block in &mut blocks {
        let block: &[f32; LANES] = block.try_into().expect("chunks_exact yields LANES values");
        if !any_nonzero(block) {
            base += LANES;
            continue;
        }
        let mut mask = nonzero_mask(block);
        while mask != 0 {
            let lane = mask.trailing_zeros() as usize;
            visit(base + lane, block[lane]);
            mask &= mask - 1;
        }
        base += LANES;
    }
    for (offset, &value) in blocks.remainder().iter().enumerate() {
        if is_nonzero(value) {
            visit(base + offset, value);
        }
    }
}

/// Values rewritten at a time by [`for_each_kept`] before they are scanned: 4 KiB, so the scan
/// reads them from L1.
const REWRITE_LEN: usize = 1024;

/// Like [`for_each_nonzero`], but first sets every value `keep` rejects to `+0.0` (in place) and
/// visits only the kept nonzero values. The blob is taken 1024 values at a time: a branch-free
/// (vectorised) rewrite, then the nonzero scan of those values while they are still in L1, so
/// memory sees one read and one write of `flat`. Returns the number of nonzero values before the
/// rewrite.
#[inline(always)]
pub(crate) fn for_each_kept<K, F>(flat: &mut [f32], keep: &K, mut visit: F) -> usize
where
    K: Fn(f32) -> bool,
    F: FnMut(usize, f32),
{
    let mut nonzeros = 0usize;
    for (index, part) in flat.chunks_mut(REWRITE_LEN).enumerate() {
        nonzeros += rewrite(part, keep) as usize;
        let base = index * REWRITE_LEN;
        for_each_nonzero(part, |offset, value| visit(base + offset, value));
    }
    nonzeros
}

/// Sets every value of `flat` that `keep` rejects to `+0.0`, branch-free; returns the nonzero
/// counts before and after.
pub(crate) fn rewrite_counting<K: Fn(f32) -> bool>(flat: &mut [f32], keep: &K) -> (usize, usize) {
    let (mut before, mut after) = (0usize, 0usize);
    for part in flat.chunks_mut(REWRITE_LEN) {
        let (mut b, mut a) = (0u32, 0u32);
        for value in part {
            let v = *value;
            let w = if keep(v) { v } else { 0.0 };
            b += u32::from(is_nonzero(v));
            a += u32::from(is_nonzero(w));
            *value = w;
        }
        before += b as usize;
        after += a as usize;
    }
    (before, after)
}

/// Sets the values `keep` rejects to `+0.0`; returns how many values were nonzero before.
#[inline(always)]
fn rewrite<K: Fn(f32) -> bool>(part: &mut [f32], keep: &K) -> u32 {
    let mut nonzeros = 0u32;
    for value in part {
        let v = *value;
        nonzeros += u32::from(is_nonzero(v));
        *value = if keep(v) { v } else { 0.0 };
    }
    nonzeros
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(flat: &[f32]) -> Vec<(usize, u32)> {
        let mut found = Vec::new();
        for_each_nonzero(flat, |index, value| found.push((index, value.to_bits())));
        found
    }

    #[test]
    fn finds_nonzeros_across_block_boundaries_and_in_the_tail() {
        let mut flat = vec![0.0f32; 150];
        flat[0] = 1.0;
        flat[63] = -2.0;
        flat[64] = f32::NAN;
        flat[127] = f32::MIN_POSITIVE / 2.0; // subnormal: nonzero
        flat[128] = -0.0; // zero
        flat[149] = 3.0; // in the 6-value tail
        let expected = vec![
            (0, 1.0f32.to_bits()),
            (63, (-2.0f32).to_bits()),
            (64, f32::NAN.to_bits()),
            (127, (f32::MIN_POSITIVE / 2.0).to_bits()),
            (149, 3.0f32.to_bits()),
        ];
        assert_eq!(collect(&flat), expected);
    }

    #[test]
    fn kept_scan_rewrites_rejected_values_and_visits_kept_nonzeros() {
        let mut flat: Vec<f32> = (0..37)
            .map(|i| if i % 3 == 0 { 0.0 } else { i as f32 - 18.5 })
            .collect();
        flat[4] = -0.0;
        let original = flat.clone();
        let mut found = Vec::new();
        let keep = |v: f32| v.abs() > 10.0 || v.to_bits() == (-0.0f32).to_bits();
        let nonzeros = for_each_kept(&mut flat, &keep, |index, value| found.push((index, value.to_bits())));
        assert_eq!(nonzeros, original.iter().filter(|v| **v != 0.0).count());
        let expected: Vec<(usize, u32)> = original
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != 0.0 && keep(**v))
            .map(|(i, v)| (i, v.to_bits()))
            .collect();
        assert_eq!(found, expected);
        for (&before, &after) in original.iter().zip(&flat) {
            let want = if keep(before) { before } else { 0.0 };
            assert_eq!(after.to_bits(), want.to_bits());
        }
    }

    #[test]
    fn zero_and_negative_zero_are_not_visited() {
        assert!(collect(&[0.0, -0.0, 0.0]).is_empty());
        assert!(collect(&[]).is_empty());
        assert!(!is_nonzero(-0.0));
        assert!(is_nonzero(f32::NAN));
        assert!(is_nonzero(-f32::INFINITY));
    }
}
