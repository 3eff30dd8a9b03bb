//! Sparsity figures of a blob in one pass: nonzeros, all-zero output rows, and the number of entries its
//! relative-index (gap) encoding stores, fillers included, without building the encoding.

/// Figures for one range of values, mergeable with the next range so a large blob can be split across threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Partial {
    /// Values in the range.
    pub len: u64,
    /// Values that are not zero (`v != 0.0`; NaN counts as nonzero, -0.0 as zero).
    pub nonzero: u64,
    /// Zeros before the first nonzero (all of them when there is none).
    lead: u64,
    /// Gap entries from the first nonzero to the last, fillers between them included.
    inner: u64,
    /// Zeros after the last nonzero.
    trail: u64,
}

/// Filler entries needed to skip `run` zeros before a stored value, with gaps of at most `max_gap`.
fn fillers(run: u64, max_gap: u64) -> u64 {
    run / (max_gap + 1)
}

impl Partial {
    /// Scans `values`; `max_gap` = 2^B - 1 for B index bits.
    pub fn scan(values: &[f32], max_gap: u64) -> Self {
        let mut p = Partial {
            len: values.len() as u64,
            ..Default::default()
        };
        let mut seen = false;
        let mut run = 0u64;
        // Blocks of 16 let the compiler vectorise the common cases: all nonzero (dense) or all zero (pruned).
        let mut blocks = values.chunks_exact(16);
        for block in &mut blocks {
            let nz = block.iter().filter(|v| **v != 0.0).count() as u64;
            if nz == 0 {
                run += 16;
            } else if nz == 16 {
                close_run(&mut p, &mut seen, run, max_gap);
                p.inner += 16;
                p.nonzero += 16;
                run = 0;
            } else {
                for &v in block {
                    step(&mut p, &mut seen, &mut run, v, max_gap);
                }
            }
        }
        for &v in blocks.remainder() {
            step(&mut p, &mut seen, &mut run, v, max_gap);
        }
        if seen {
            p.trail = run;
        } else {
            p.lead = run;
        }
        p
    }

    /// The figures of this range followed by `next`.
    pub fn then(self, next: Partial, max_gap: u64) -> Partial {
        let len = self.len + next.len;
        let nonzero = self.nonzero + next.nonzero;
        if self.nonzero == 0 {
            Partial {
                len,
                nonzero,
                lead: self.lead + next.lead,
                inner: next.inner,
                trail: next.trail,
            }
        } else if next.nonzero == 0 {
            Partial {
                len,
                nonzero,
                lead: self.lead,
                inner: self.inner,
                trail: self.trail + next.lead,
            }
        } else {
            Partial {
                len,
                nonzero,
                lead: self.lead,
                inner: self.inner + fillers(self.trail + next.lead, max_gap) + next.inner,
                trail: next.trail,
            }
        }
    }

    /// Entries the gap encoding of the whole blob stores: fillers before the first value, the values and fillers
    /// between them, and a trailing run closed by one (0.0, r - 1) entry after its fillers.
    pub fn gap_entries(&self, max_gap: u64) -> u64 {
        let period = max_gap + 1;
        if self.nonzero == 0 {
            return self.lead.div_ceil(period);
        }
        fillers(self.lead, max_gap) + self.inner + self.trail.div_ceil(period)
    }
}

#[inline]
fn close_run(p: &mut Partial, seen: &mut bool, run: u64, max_gap: u64) {
    if *seen {
        p.inner += fillers(run, max_gap);
    } else {
        p.lead = run;
        *seen = true;
    }
}

#[inline]
fn step(p: &mut Partial, seen: &mut bool, run: &mut u64, v: f32, max_gap: u64) {
    if v != 0.0 {
        close_run(p, seen, *run, max_gap);
        p.inner += 1;
        p.nonzero += 1;
        *run = 0;
    } else {
        *run += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoder's rule walked literally, element by element (the definition the fast scan must agree with).
    fn reference_entries(values: &[f32], max_gap: u64) -> u64 {
        let mut entries = 0;
        let mut run = 0;
        for &v in values {
            if v != 0.0 {
                entries += 1;
                run = 0;
            } else if run == max_gap {
                entries += 1; // filler
                run = 0;
            } else {
                run += 1;
            }
        }
        entries + u64::from(run > 0)
    }

    fn pseudo_random(n: usize, density_per_mille: u64, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|i| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if (state >> 33) % 1000 < density_per_mille {
                    (i % 7) as f32 - 3.5
                } else {
                    0.0
                }
            })
            .collect()
    }

    #[test]
    fn hand_worked_examples() {
        // B = 2 (max gap 3): [0,0,0,0,0,1] = filler after 3 skipped zeros, then 1 with gap 1: 2 entries.
        let v = [0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        assert_eq!(Partial::scan(&v, 3).gap_entries(3), 2);
        // Trailing 5 zeros after a value at B = 2: value, filler (gap 3), then (0.0, 0): 3 entries.
        let v = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(Partial::scan(&v, 3).gap_entries(3), 3);
        // Empty and all-zero blobs.
        assert_eq!(Partial::scan(&[], 255).gap_entries(255), 0);
        assert_eq!(Partial::scan(&[0.0; 4], 3).gap_entries(3), 1);
        assert_eq!(Partial::scan(&[0.0; 8], 3).gap_entries(3), 2);
        assert_eq!(Partial::scan(&[-0.0, 2.0], 3).nonzero, 1);
    }

    #[test]
    fn scan_and_merge_agree_with_the_literal_rule() {
        for (density, bits) in [(0, 2), (5, 3), (50, 4), (500, 8), (990, 8), (1000, 5), (3, 8)] {
            let max_gap = (1u64 << bits) - 1;
            let values = pseudo_random(5000, density, density + bits);
            let expected = reference_entries(&values, max_gap);
            assert_eq!(Partial::scan(&values, max_gap).gap_entries(max_gap), expected);
            for split in [0, 1, 17, 255, 256, 2500, 4999, 5000] {
                let (a, b) = values.split_at(split);
                let merged = Partial::scan(a, max_gap).then(Partial::scan(b, max_gap), max_gap);
                assert_eq!(merged.gap_entries(max_gap), expected, "density {density} split {split}");
                assert_eq!(merged.nonzero, values.iter().filter(|v| **v != 0.0).count() as u64);
            }
        }
    }
}
