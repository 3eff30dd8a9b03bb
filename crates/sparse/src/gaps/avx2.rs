//! The walk's inner loop with AVX2.
//!
//! A word (64 values) whose entries need no fillers and that holds enough stored values is written
//! 8 lanes at a time: the stored lanes of each 8 are packed to the front by a permutation looked up
//! from their mask byte (AVX2 has no compress instruction), written as a whole, and the write
//! position moves on by their count. The gaps come from the same permutation of the lane indices.
//! Sparse words, words with a gap that needs fillers, a part's short last word and the last slots
//! of the room go value by value as on other CPUs ([`walk_word`]). The 8-lane path costs the same
//! whatever a word holds, so it only pays from about 24 values a word: measured on a 256 Ki-value
//! blob, encoding at 45 % density took 1.38 ns a value instead of 1.81 and at 95 % 2.75 instead of
//! 3.85, while at 10 % (words of about 6 values) both walks take 0.48. The output is the same to
//! the bit (tested against the value-by-value walk in `tests` below).

use std::arch::x86_64::{
    __m128i, __m256i, _mm256_add_epi32, _mm256_blend_epi32, _mm256_castsi256_si128, _mm256_loadu_ps,
    _mm256_loadu_si256, _mm256_packus_epi32, _mm256_permute4x64_epi64, _mm256_permutevar8x32_epi32,
    _mm256_permutevar8x32_ps, _mm256_set1_epi32, _mm256_setr_epi32, _mm256_setr_epi8, _mm256_shuffle_epi8,
    _mm256_storeu_ps, _mm256_sub_epi32, _mm_storel_epi64, _mm_storeu_si128,
};
use std::mem::MaybeUninit;

use super::{has_inner_zero_run, walk_word, Cursor, GapInt};
use crate::scan::{PART_WORDS, WORD_LEN};

/// Words with at least this many stored values take the 8-lane path; sparser ones are as cheap
/// or cheaper value by value (the 8-lane path costs the same for any count).
const DENSE_MIN: u32 = 24;

/// Slots the 8-lane path may write past a word's last entry (garbage, overwritten later or left
/// as never-read spare room).
const OVERWRITE: usize = 8;

/// For each mask byte, the indices of its set lanes in increasing order, then zeros.
static COMPRESS: [[u32; 8]; 256] = compress_table();

const fn compress_table() -> [[u32; 8]; 256] {
    let mut table = [[0u32; 8]; 256];
    let mut mask = 0;
    while mask < 256 {
        let (mut lane, mut packed) = (0, 0);
        while lane < 8 {
            if mask >> lane & 1 == 1 {
                table[mask][packed] = lane as u32;
                packed += 1;
            }
            lane += 1;
        }
        mask += 1;
    }
    table
}

/// [`super::walk_part`] with AVX2.
///
/// # Safety
/// The CPU must have AVX2, POPCNT, BMI1 and LZCNT ([`crate::scan::has_avx2`]).
#[target_feature(enable = "avx2,popcnt,bmi1,lzcnt")]
pub(super) unsafe fn walk_part<G: GapInt>(
    part: &[f32],
    masks: &[u64; PART_WORDS],
    base: usize,
    next: usize,
    index_bits: u8,
    values: &mut [MaybeUninit<f32>],
    gaps: &mut [MaybeUninit<G>],
) -> (usize, usize) {
    let max_gap = (1usize << index_bits) - 1;
    let room = values.len().min(gaps.len());
    let mut cursor = Cursor { written: 0, next };
    for (word, &mask) in masks.iter().enumerate() {
        if mask == 0 {
            continue;
        }
        let start = base + word * WORD_LEN;
        let dense = mask.count_ones() >= DENSE_MIN
            && (word + 1) * WORD_LEN <= part.len()
            && cursor.written + WORD_LEN + OVERWRITE <= room
            && start + mask.trailing_zeros() as usize - cursor.next <= max_gap
            && !has_inner_zero_run(mask, index_bits);
        if dense {
            dense_word(
                &part[word * WORD_LEN..][..WORD_LEN],
                mask,
                start,
                values,
                gaps,
                &mut cursor,
            );
        } else {
            walk_word(part, word, mask, base, index_bits, values, gaps, &mut cursor);
        }
    }
    (cursor.written, cursor.next)
}

/// Writes the entries of `word` (64 values whose first has index `start`; `mask` marks the stored
/// ones) 8 lanes at a time. The caller guarantees every gap fits `B` bits: the first run since
/// `cursor.next` and every run between stored values are below `2^B`.
#[target_feature(enable = "avx2,popcnt,bmi1,lzcnt")]
#[inline]
fn dense_word<G: GapInt>(
    word: &[f32],
    mask: u64,
    start: usize,
    values: &mut [MaybeUninit<f32>],
    gaps: &mut [MaybeUninit<G>],
    cursor: &mut Cursor,
) {
    assert!(word.len() == WORD_LEN && cursor.written + WORD_LEN + OVERWRITE <= values.len().min(gaps.len()));
    assert!(start - cursor.next <= usize::from(u16::MAX) + 1 && cursor.next <= start + WORD_LEN);
    let values_out = values.as_mut_ptr().cast::<f32>();
    let gaps_out = gaps.as_mut_ptr().cast::<G>();
    let mut written = cursor.written;
    // Indices relative to `start`: `next` lies at most 2^16 before it (asserted), so they fit i32.
    let mut next = cursor.next as i64 - start as i64;
    let one = _mm256_set1_epi32(1);
    let previous_lane = _mm256_setr_epi32(0, 0, 1, 2, 3, 4, 5, 6);
    for group in 0..WORD_LEN / 8 {
        let bits = (mask >> (8 * group)) as u8;
        // SAFETY: the table row is 8 u32 (32 bytes); the 8 values read are word[8 group ..][..8],
        // inside the word (64 values, asserted).
        let (lanes, loaded) = unsafe {
            (
                _mm256_loadu_si256(COMPRESS[usize::from(bits)].as_ptr().cast::<__m256i>()),
                _mm256_loadu_ps(word.as_ptr().add(8 * group)),
            )
        };
        let packed = _mm256_permutevar8x32_ps(loaded, lanes);
        // Each stored lane's index, and the index after the stored lane before it (`next` for the
        // first): the gap is their difference.
        let index = _mm256_add_epi32(lanes, _mm256_set1_epi32(8 * group as i32));
        let after_previous = _mm256_permutevar8x32_epi32(_mm256_add_epi32(index, one), previous_lane);
        let after_previous = _mm256_blend_epi32::<1>(after_previous, _mm256_set1_epi32(next as i32));
        let gap = _mm256_sub_epi32(index, after_previous);
        // SAFETY: written <= cursor.written + 8 * group <= cursor.written + 56, so these 8-slot
        // writes end within the room asserted above.
        unsafe {
            _mm256_storeu_ps(values_out.add(written), packed);
            store_gaps(gaps_out.add(written), gap);
        }
        if bits != 0 {
            next = (8 * group + 8) as i64 - i64::from(bits.leading_zeros());
        }
        written += bits.count_ones() as usize;
    }
    *cursor = Cursor {
        written,
        next: start + WORD_LEN - mask.leading_zeros() as usize,
    };
}

/// Stores the 8 lanes of `gap` (each in `0 ..= G::MAX`) as 8 `G`s at `out`.
///
/// # Safety
/// `out` must be valid for writing 8 `G`s.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn store_gaps<G: GapInt>(out: *mut G, gap: __m256i) {
    if size_of::<G>() == 1 {
        // The low byte of each lane to the front of its 128-bit half, then the halves together.
        let bytes = _mm256_shuffle_epi8(
            gap,
            _mm256_setr_epi8(
                0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, //
                0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
            ),
        );
        let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0));
        // SAFETY: 8 bytes to `out`, valid for 8 one-byte gaps (the caller's contract).
        unsafe { _mm_storel_epi64(out.cast::<__m128i>(), _mm256_castsi256_si128(bytes)) };
    } else {
        // Gaps are below 2^16, so the saturating pack keeps them; it packs within 128-bit halves.
        let words = _mm256_permute4x64_epi64::<0b00_00_10_00>(_mm256_packus_epi32(gap, gap));
        // SAFETY: 16 bytes to `out`, valid for 8 two-byte gaps (the caller's contract).
        unsafe { _mm_storeu_si128(out.cast::<__m128i>(), _mm256_castsi256_si128(words)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks `part` with the AVX2 loop and value by value; both must write the same entries.
    fn both_walks<G: GapInt + PartialEq + std::fmt::Debug>(part: &[f32], next: usize, base: usize, bits: u8) {
        let mut masks = [0u64; PART_WORDS];
        crate::scan::nonzero_masks(part, &mut masks);
        let room = part.len() + ((base + part.len() - next) >> bits) + WORD_LEN + OVERWRITE;
        let run = |avx2: bool| {
            let mut values = vec![MaybeUninit::<f32>::uninit(); room];
            let mut gaps = vec![MaybeUninit::<G>::uninit(); room];
            let (written, after) = if avx2 {
                // SAFETY: only called when the CPU has AVX2 (checked by the caller).
                unsafe { walk_part(part, &masks, base, next, bits, &mut values, &mut gaps) }
            } else {
                let mut cursor = Cursor { written: 0, next };
                for (word, &mask) in masks.iter().enumerate() {
                    if mask != 0 {
                        walk_word(part, word, mask, base, bits, &mut values, &mut gaps, &mut cursor);
                    }
                }
                (cursor.written, cursor.next)
            };
            // SAFETY: both walks initialise the first `written` slots.
            let values: Vec<u32> = values[..written]
                .iter()
                .map(|v| unsafe { v.assume_init() }.to_bits())
                .collect();
            let gaps: Vec<G> = gaps[..written].iter().map(|g| unsafe { g.assume_init() }).collect();
            (values, gaps, after)
        };
        assert_eq!(
            run(true),
            run(false),
            "bits {bits}, next {next}, base {base}, len {}",
            part.len()
        );
    }

    #[test]
    fn eight_lane_walk_writes_what_the_value_walk_writes() {
        if !crate::scan::has_avx2() {
            // The portable run (CAFFE_RS_PORTABLE=1, or a CPU without AVX2) covers the value walk alone.
            eprintln!("note: AVX2 off (no AVX2, or CAFFE_RS_PORTABLE=1): the 8-lane walk is not compared here");
            return;
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 33
        };
        for density in [2, 5, 10, 30, 60, 100] {
            for len in [64, 100, 1000, 1024] {
                let part: Vec<f32> = (0..len)
                    .map(|_| {
                        if random() % 100 < density {
                            (random() % 2000) as f32 - 999.5
                        } else {
                            0.0
                        }
                    })
                    .collect();
                for bits in [1, 2, 3, 4, 5, 6, 8] {
                    for (next, base) in [(0, 0), (0, 70), (40, 47), (1000, 1030), (5, 4096)] {
                        both_walks::<u8>(&part, next, base, bits);
                    }
                }
                for bits in [9, 12, 16] {
                    both_walks::<u16>(&part, 100, 40_000, bits);
                }
            }
        }
    }
}
