//! A fixed keep-mask, held constant while the surviving weights are retrained.

use crate::PruneError;

const WORD_BITS: usize = 64;

/// Which weights of one blob survive pruning: one bit per weight, set = kept.
///
/// Retraining updates every weight and then re-applies the mask, so pruned weights stay zero.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mask {
    /// Bit `i % 64` of word `i / 64` is weight `i`; bits past `len` are always clear.
    words: Vec<u64>,
    len: usize,
}

impl Mask {
    /// Keeps exactly the weights that are not zero (`-0.0` counts as zero; NaN counts as kept).
    /// Built from a pruned blob this is the kept set, since every rule keeps only `|w| > cut >= 0`.
    pub fn from_nonzero(weights: &[f32]) -> Mask {
        let words = weights
            .chunks(WORD_BITS)
            .map(|group| {
                group
                    .iter()
                    .enumerate()
                    .fold(0u64, |word, (bit, &w)| word | (u64::from(w != 0.0) << bit))
            })
            .collect();
        Mask {
            words,
            len: weights.len(),
        }
    }

    /// Sets every masked-out weight to `+0.0` and leaves kept weights as they are.
    /// Refuses a blob whose length differs from the mask's.
    pub fn apply(&self, weights: &mut [f32]) -> Result<(), PruneError> {
        if weights.len() != self.len {
            return Err(PruneError::MaskLengthMismatch {
                mask_len: self.len,
                len: weights.len(),
            });
        }
        for (group, &word) in weights.chunks_mut(WORD_BITS).zip(&self.words) {
            for (bit, w) in group.iter_mut().enumerate() {
                let keep = (word >> bit) & 1 == 1;
                *w = if keep { *w } else { 0.0 };
            }
        }
        Ok(())
    }

    /// How many weights the mask keeps.
    pub fn count_kept(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// How many weights the mask covers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mask covers no weights.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether weight `index` is kept; `None` past the end.
    pub fn is_kept(&self, index: usize) -> Option<bool> {
        (index < self.len).then(|| (self.words[index / WORD_BITS] >> (index % WORD_BITS)) & 1 == 1)
    }
}
