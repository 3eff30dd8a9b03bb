//! Finding the values the encoders store.
//!
//! The gap codec and the CSR builder spend most of their time looking at
//! zeros. [`nonzero_masks`] and [`prune_masks`] turn a part of up to 1024
//! values into 64-bit masks of the lanes to store (SSE2 on every x86_64, AVX2
//! when the CPU has it, plain Rust elsewhere; [`prune_masks`] also zeroes the
//! pruned values in the same pass), so a walk visits only set bits and pays
//! one mispredicted loop exit per 64 values. [`for_each_nonzero`] is the
//! visitor form the CSR builder uses: it tests 16 values at a time with a
//! vectorised OR of their bits and walks only the blocks holding a nonzero.

/// Values tested per block.
pub(crate) const LANES: usize = 16;

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

/// Values the encoder masks (and, when pruning, rewrites) at a time before walking their
/// entries: 4 KiB, so the walk reads them from L1.
pub(crate) const PART_LEN: usize = 1024;
/// Values per mask word.
pub(crate) const WORD_LEN: usize = 64;
/// Mask words in a part.
pub(crate) const PART_WORDS: usize = PART_LEN / WORD_LEN;

/// Bit `lane` of the result is set iff `word[lane]` is nonzero.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn nonzero_mask64(word: &[f32; WORD_LEN]) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi32, _mm_loadu_si128, _mm_movemask_epi8, _mm_packs_epi16, _mm_packs_epi32,
        _mm_setzero_si128, _mm_slli_epi32,
    };
    let mut zeros = 0u64;
    for (quarter, block) in word.chunks_exact(LANES).enumerate() {
        let lanes = block.as_ptr().cast::<__m128i>();
        // SAFETY: SSE2 is part of the x86_64 baseline; the four unaligned 16-byte loads read
        // `block`'s 16 values and nothing else.
        let block_zeros = unsafe {
            let zero = _mm_setzero_si128();
            // -1 in each 32-bit lane whose value is +-0.0 (sign bit shifted out).
            let is_zero = |i: usize| _mm_cmpeq_epi32(_mm_slli_epi32(_mm_loadu_si128(lanes.add(i)), 1), zero);
            let low = _mm_packs_epi32(is_zero(0), is_zero(1));
            let high = _mm_packs_epi32(is_zero(2), is_zero(3));
            _mm_movemask_epi8(_mm_packs_epi16(low, high)) as u32
        };
        zeros |= u64::from(block_zeros) << (quarter * LANES);
    }
    !zeros
}

/// Bit `lane` of the result is set iff `word[lane]` is nonzero.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn nonzero_mask64(word: &[f32; WORD_LEN]) -> u64 {
    word.chunks_exact(LANES).enumerate().fold(0, |mask, (quarter, block)| {
        let block = block.try_into().expect("chunks_exact yields LANES values");
        mask | u64::from(nonzero_mask(block)) << (quarter * LANES)
    })
}

/// Fills `masks[w]` with the nonzero lanes of values `64 w .. 64 w + 64` of `part` (at most
/// [`PART_LEN`] values; words past the end get 0). Returns the number of nonzeros. Walking 64-bit
/// words rather than 16-bit ones costs the walk a quarter of the mispredicted loop exits.
#[inline(always)]
pub(crate) fn nonzero_masks(part: &[f32], masks: &mut [u64; PART_WORDS]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2, POPCNT, BMI1 and LZCNT, checked just above.
        return unsafe { avx2::nonzero_masks(part, masks) };
    }
    nonzero_masks_with(part, masks, nonzero_mask64)
}

/// [`nonzero_masks`] with `word_mask` for the full words.
#[inline(always)]
fn nonzero_masks_with(
    part: &[f32],
    masks: &mut [u64; PART_WORDS],
    word_mask: impl Fn(&[f32; WORD_LEN]) -> u64,
) -> usize {
    debug_assert!(part.len() <= PART_LEN);
    let mut count = 0;
    let mut words = part.chunks_exact(WORD_LEN);
    let mut slots = masks.iter_mut();
    for (word, slot) in (&mut words).zip(&mut slots) {
        let mask = word_mask(word.try_into().expect("chunks_exact yields WORD_LEN values"));
        count += mask.count_ones();
        *slot = mask;
    }
    for slot in slots {
        *slot = 0;
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mask = rest.iter().enumerate().fold(0u64, |mask, (lane, &value)| {
            mask | (u64::from(is_nonzero(value)) << lane)
        });
        count += mask.count_ones();
        masks[part.len() / WORD_LEN] = mask;
    }
    count as usize
}

/// Sets every value of `part` whose magnitude bits (`to_bits() & 0x7fff_ffff`) are at most `cut`
/// to `+0.0` and fills `masks` with the lanes kept, which are exactly the nonzeros left (a kept
/// magnitude is above `cut >= 0`). Returns the number of nonzeros before. One pass: on x86_64
/// SSE2 (AVX2 when the CPU has it) does 4 (8) lanes per instruction; comparisons on magnitude bits
/// are signed-safe, those being below 2^31. The rest of a short part is done lane by lane.
#[inline(always)]
pub(crate) fn prune_masks(part: &mut [f32], cut: u32, masks: &mut [u64; PART_WORDS]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2, POPCNT, BMI1 and LZCNT, checked just above.
        return unsafe { avx2::prune_masks(part, cut, masks) };
    }
    prune_masks_with(part, cut, masks, prune_word)
}

/// [`prune_masks`] with `prune_word` for the full words.
#[inline(always)]
fn prune_masks_with(
    part: &mut [f32],
    cut: u32,
    masks: &mut [u64; PART_WORDS],
    prune_word: impl Fn(&mut [f32; WORD_LEN], u32) -> (u64, u32),
) -> usize {
    debug_assert!(part.len() <= PART_LEN);
    let mut before = 0;
    let mut words = part.chunks_exact_mut(WORD_LEN);
    let mut slots = masks.iter_mut();
    for (word, slot) in (&mut words).zip(&mut slots) {
        let (kept, nonzeros) = prune_word(word.try_into().expect("chunks_exact yields WORD_LEN values"), cut);
        before += nonzeros;
        *slot = kept;
    }
    for slot in slots {
        *slot = 0;
    }
    let rest = words.into_remainder();
    if !rest.is_empty() {
        let mut kept = 0u64;
        for (lane, value) in rest.iter_mut().enumerate() {
            let magnitude = value.to_bits() & 0x7fff_ffff;
            before += u32::from(magnitude != 0);
            let keep = magnitude > cut;
            kept |= u64::from(keep) << lane;
            *value = if keep { *value } else { 0.0 };
        }
        masks[part.len() / WORD_LEN] = kept;
    }
    before as usize
}

/// [`prune_masks`] on one full word: returns the mask of kept lanes and the nonzeros before.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prune_word(word: &mut [f32; WORD_LEN], cut: u32) -> (u64, u32) {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_and_si128, _mm_cmpgt_epi32, _mm_cvtsi128_si32, _mm_loadu_si128, _mm_movemask_epi8,
        _mm_packs_epi16, _mm_packs_epi32, _mm_set1_epi32, _mm_setzero_si128, _mm_shuffle_epi32, _mm_storeu_si128,
        _mm_sub_epi32,
    };
    let lanes = word.as_mut_ptr().cast::<__m128i>();
    // SAFETY: SSE2 is part of the x86_64 baseline; the 16 unaligned 16-byte loads and stores
    // touch `word`'s 64 values and nothing else, through the unique borrow of it.
    unsafe {
        let sign_off = _mm_set1_epi32(0x7fff_ffff);
        let cut_v = _mm_set1_epi32(cut as i32);
        let zero = _mm_setzero_si128();
        let mut nonzeros = zero;
        let mut step = |i: usize| {
            let value = _mm_loadu_si128(lanes.add(i));
            let magnitude = _mm_and_si128(value, sign_off);
            let keep = _mm_cmpgt_epi32(magnitude, cut_v);
            _mm_storeu_si128(lanes.add(i), _mm_and_si128(value, keep));
            nonzeros = _mm_sub_epi32(nonzeros, _mm_cmpgt_epi32(magnitude, zero));
            keep
        };
        let mut kept = 0u64;
        for quarter in 0..4 {
            let i = quarter * 4;
            let low = _mm_packs_epi32(step(i), step(i + 1));
            let high = _mm_packs_epi32(step(i + 2), step(i + 3));
            let bits = _mm_movemask_epi8(_mm_packs_epi16(low, high)) as u32;
            kept |= u64::from(bits) << (quarter * LANES);
        }
        let sum = _mm_add_epi32(nonzeros, _mm_shuffle_epi32(nonzeros, 0b01_00_11_10));
        let sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0b10_11_00_01));
        (kept, _mm_cvtsi128_si32(sum) as u32)
    }
}

/// [`prune_masks`] on one full word: returns the mask of kept lanes and the nonzeros before.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn prune_word(word: &mut [f32; WORD_LEN], cut: u32) -> (u64, u32) {
    let (mut kept, mut nonzeros) = (0u64, 0u32);
    for (lane, value) in word.iter_mut().enumerate() {
        let magnitude = value.to_bits() & 0x7fff_ffff;
        nonzeros += u32::from(magnitude != 0);
        let keep = magnitude > cut;
        kept |= u64::from(keep) << lane;
        *value = if keep { *value } else { 0.0 };
    }
    (kept, nonzeros)
}

/// Whether this CPU runs the crate's AVX2 code: AVX2 itself and the bit instructions compiled in
/// with it (POPCNT, BMI1's TZCNT, LZCNT). Every AVX2 CPU has those, but a virtual machine may
/// hide any CPUID bit, and LZCNT run where it is missing silently computes BSR instead.
/// `CAFFE_RS_PORTABLE=1` in the environment answers no: the x86-64 baseline only, as on a CPU
/// without AVX2 (the test suite runs once that way).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_avx2() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        std::env::var_os("CAFFE_RS_PORTABLE").is_none_or(|v| v != "1")
            && std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("popcnt")
            && std::is_x86_feature_detected!("bmi1")
            && std::is_x86_feature_detected!("lzcnt")
    })
}

/// The word kernels with 256-bit AVX2 (and POPCNT), for CPUs that have them ([`has_avx2`]): 8 lanes
/// per instruction instead of SSE2's 4.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256i, _mm256_and_si256, _mm256_castsi256_ps, _mm256_cmpeq_epi32, _mm256_cmpgt_epi32, _mm256_loadu_si256,
        _mm256_movemask_ps, _mm256_set1_epi32, _mm256_setzero_si256, _mm256_slli_epi32, _mm256_storeu_si256,
    };

    use super::{nonzero_masks_with, prune_masks_with, PART_WORDS, WORD_LEN};

    /// [`super::nonzero_masks`] with AVX2.
    ///
    /// # Safety
    /// The CPU must have AVX2 and POPCNT ([`super::has_avx2`]).
    #[target_feature(enable = "avx2,popcnt")]
    pub(super) unsafe fn nonzero_masks(part: &[f32], masks: &mut [u64; PART_WORDS]) -> usize {
        nonzero_masks_with(part, masks, |word| nonzero_word(word))
    }

    /// [`super::prune_masks`] with AVX2.
    ///
    /// # Safety
    /// The CPU must have AVX2 and POPCNT ([`super::has_avx2`]).
    #[target_feature(enable = "avx2,popcnt")]
    pub(super) unsafe fn prune_masks(part: &mut [f32], cut: u32, masks: &mut [u64; PART_WORDS]) -> usize {
        prune_masks_with(part, cut, masks, |word, cut| prune_word(word, cut))
    }

    /// Bit `lane` of the result is set iff `word[lane]` is nonzero.
    #[target_feature(enable = "avx2,popcnt")]
    #[inline]
    fn nonzero_word(word: &[f32; WORD_LEN]) -> u64 {
        let lanes = word.as_ptr().cast::<__m256i>();
        let mut zeros = 0u64;
        for eighth in 0..WORD_LEN / 8 {
            // SAFETY: the 8 unaligned 32-byte loads read `word`'s 64 values and nothing else.
            let value = unsafe { _mm256_loadu_si256(lanes.add(eighth)) };
            // -1 in each lane whose value is +-0.0 (sign bit shifted out).
            let is_zero = _mm256_cmpeq_epi32(_mm256_slli_epi32(value, 1), _mm256_setzero_si256());
            zeros |= u64::from(_mm256_movemask_ps(_mm256_castsi256_ps(is_zero)) as u8) << (8 * eighth);
        }
        !zeros
    }

    /// Zeroes the lanes of `word` whose magnitude bits are at most `cut`; returns the mask of
    /// the lanes kept and the number of nonzeros before.
    #[target_feature(enable = "avx2,popcnt")]
    #[inline]
    fn prune_word(word: &mut [f32; WORD_LEN], cut: u32) -> (u64, u32) {
        let lanes = word.as_mut_ptr().cast::<__m256i>();
        let sign_off = _mm256_set1_epi32(0x7fff_ffff);
        let cut = _mm256_set1_epi32(cut as i32);
        let zero = _mm256_setzero_si256();
        let (mut kept, mut nonzero) = (0u64, 0u64);
        for eighth in 0..WORD_LEN / 8 {
            // SAFETY: the 8 unaligned 32-byte loads and stores touch `word`'s 64 values and
            // nothing else, through the unique borrow of it.
            let value = unsafe { _mm256_loadu_si256(lanes.add(eighth)) };
            let magnitude = _mm256_and_si256(value, sign_off);
            let keep = _mm256_cmpgt_epi32(magnitude, cut);
            // SAFETY: as above.
            unsafe { _mm256_storeu_si256(lanes.add(eighth), _mm256_and_si256(value, keep)) };
            let is_zero = _mm256_cmpeq_epi32(magnitude, zero);
            kept |= u64::from(_mm256_movemask_ps(_mm256_castsi256_ps(keep)) as u8) << (8 * eighth);
            nonzero |= u64::from(!(_mm256_movemask_ps(_mm256_castsi256_ps(is_zero)) as u8)) << (8 * eighth);
        }
        (kept, nonzero.count_ones())
    }
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

    /// The (index, bits) pairs `masks` marks in `part`.
    fn marked(part: &[f32], masks: &[u64; PART_WORDS]) -> Vec<(usize, u32)> {
        (0..part.len())
            .filter(|&i| masks[i / WORD_LEN] >> (i % WORD_LEN) & 1 == 1)
            .map(|i| (i, part[i].to_bits()))
            .collect()
    }

    type NonzeroMasks = fn(&[f32], &mut [u64; PART_WORDS]) -> usize;
    type PruneMasks = fn(&mut [f32], u32, &mut [u64; PART_WORDS]) -> usize;

    /// Every implementation of the mask kernels this machine runs: the baseline (SSE2 on x86_64)
    /// and, when the CPU has it, AVX2; the dispatching entry points pick one of them.
    fn implementations() -> Vec<(&'static str, NonzeroMasks, PruneMasks)> {
        let mut all: Vec<(&'static str, NonzeroMasks, PruneMasks)> = vec![(
            "baseline",
            |part, masks| nonzero_masks_with(part, masks, nonzero_mask64),
            |part, cut, masks| prune_masks_with(part, cut, masks, prune_word),
        )];
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            all.push((
                "avx2",
                // SAFETY: the CPU has what the AVX2 kernels need, checked just above.
                |part, masks| unsafe { avx2::nonzero_masks(part, masks) },
                // SAFETY: as above.
                |part, cut, masks| unsafe { avx2::prune_masks(part, cut, masks) },
            ));
        }
        all.push(("dispatch", nonzero_masks, prune_masks));
        all
    }

    #[test]
    fn masks_mark_exactly_the_nonzeros_of_full_and_short_parts() {
        for (name, nonzero_masks, _) in implementations() {
            masks_mark_exactly_the_nonzeros(name, nonzero_masks);
        }
    }

    fn masks_mark_exactly_the_nonzeros(name: &str, nonzero_masks: NonzeroMasks) {
        for len in [0, 1, 15, 16, 17, 37, PART_LEN - 1, PART_LEN] {
            let part: Vec<f32> = (0..len)
                .map(|i| match i % 5 {
                    0 => 0.0,
                    1 => -0.0,
                    2 => f32::NAN,
                    _ => i as f32,
                })
                .collect();
            let mut masks = [u64::MAX; PART_WORDS];
            let count = nonzero_masks(&part, &mut masks);
            assert_eq!(marked(&part, &masks), collect(&part), "{name}, len {len}");
            assert_eq!(count, collect(&part).len(), "{name}, len {len}");
            assert!(
                masks[len.div_ceil(WORD_LEN)..].iter().all(|&m| m == 0),
                "{name}, len {len}"
            );
        }
    }

    #[test]
    fn prune_masks_zero_small_magnitudes_and_mark_the_rest() {
        for (name, _, prune_masks) in implementations() {
            prune_masks_zero_small_magnitudes(name, prune_masks);
        }
    }

    fn prune_masks_zero_small_magnitudes(name: &str, prune_masks: PruneMasks) {
        let cut = 10.0f32.to_bits();
        for len in [0, 5, 16, 37, 64, 100, PART_LEN - 3, PART_LEN] {
            let mut part: Vec<f32> = (0..len)
                .map(|i| match i % 7 {
                    0 => 0.0,
                    1 => -0.0,
                    2 => f32::NAN,
                    3 => -10.0,
                    4 => 10.0f32.next_up(),
                    _ => i as f32 - 18.5,
                })
                .collect();
            let original = part.clone();
            let kept_by_rule = |v: f32| v.to_bits() & 0x7fff_ffff > cut;
            let mut masks = [u64::MAX; PART_WORDS];
            let before = prune_masks(&mut part, cut, &mut masks);
            assert_eq!(
                before,
                original.iter().filter(|v| **v != 0.0).count(),
                "{name}, len {len}"
            );
            for (&was, &now) in original.iter().zip(&part) {
                let want = if kept_by_rule(was) { was } else { 0.0 };
                assert_eq!(now.to_bits(), want.to_bits(), "{name}, len {len}");
            }
            let expected: Vec<(usize, u32)> = original
                .iter()
                .enumerate()
                .filter(|(_, v)| kept_by_rule(**v))
                .map(|(i, v)| (i, v.to_bits()))
                .collect();
            assert_eq!(marked(&part, &masks), expected, "{name}, len {len}");
            assert_eq!(
                marked(&part, &masks),
                collect(&part),
                "{name}: kept lanes are the nonzeros left, len {len}"
            );
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
