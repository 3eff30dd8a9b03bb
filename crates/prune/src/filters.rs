//! Structured pruning: whole output filters ranked by L1 norm.

use crate::cut::{check_keep_fraction, count_nonzero_checked, cut_rank, total_len};
use crate::PruneError;

/// What [`prune_filters`] did to one blob.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterReport {
    /// The keep fraction asked for, over filters.
    pub requested_keep: f64,
    /// Number of output filters (`shape[0]`).
    pub filters: usize,
    /// Weights per filter (product of `shape[1..]`).
    pub filter_len: usize,
    /// The L1 norm at the cut: filters with a norm above it were kept. `None` when the blob was
    /// left untouched (keep fraction 1, or no weights).
    pub norm_cut: Option<f64>,
    /// Indices of the zeroed filters, ascending; zero the matching bias entries too.
    pub dropped: Vec<usize>,
    /// Nonzero weights before pruning.
    pub nonzeros_before: usize,
    /// Nonzero weights after pruning.
    pub nonzeros_after: usize,
}

impl FilterReport {
    /// Number of filters kept.
    pub fn kept_filters(&self) -> usize {
        self.filters - self.dropped.len()
    }

    /// Kept filters over all filters; 1 when there are no filters (nothing was removed).
    pub fn achieved_keep(&self) -> f64 {
        if self.filters == 0 {
            1.0
        } else {
            self.kept_filters() as f64 / self.filters as f64
        }
    }
}

/// Zeroes whole output filters of `weights`, viewed as a `[shape[0], rest]` matrix of rows.
///
/// Each row's L1 norm is summed in f64 in row order; with `F` filters and keep fraction `t`,
/// `k = floor((F - 1) * t)`, the cut is the k-th largest norm counting from 0, and rows whose
/// norm is strictly above it survive (ties at the cut are dropped). `t = 1` leaves the blob
/// untouched; a blob with no weights is left as it is.
pub fn prune_filters(weights: &mut [f32], shape: &[usize], t: f64) -> Result<FilterReport, PruneError> {
    check_keep_fraction(t)?;
    let Some((&filters, rest)) = shape.split_first() else {
        return Err(PruneError::EmptyShape);
    };
    let shape_len = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if shape_len != Some(weights.len()) {
        return Err(PruneError::ShapeMismatch {
            shape: shape.to_vec(),
            len: weights.len(),
        });
    }
    total_len([filters])?;
    let filter_len: usize = rest.iter().product();
    let nonzeros_before = count_nonzero_checked(&[weights])?[0];

    let untouched = FilterReport {
        requested_keep: t,
        filters,
        filter_len,
        norm_cut: None,
        dropped: Vec::new(),
        nonzeros_before,
        nonzeros_after: nonzeros_before,
    };
    if weights.is_empty() || t == 1.0 {
        return Ok(untouched);
    }

    let norms: Vec<f64> = weights
        .chunks(filter_len)
        .map(|row| row.iter().map(|&w| f64::from(w.abs())).sum())
        .collect();
    // Norms are >= 0 and not NaN (weights were checked), so their bits order like their values.
    let mut scratch: Vec<u64> = norms.iter().map(|n| n.to_bits()).collect();
    let k = cut_rank(filters, t);
    let (_, &mut cut_bits, _) = scratch.select_nth_unstable_by(k, |a, b| b.cmp(a));

    let mut dropped = Vec::new();
    for (index, (row, norm)) in weights.chunks_mut(filter_len).zip(&norms).enumerate() {
        if norm.to_bits() <= cut_bits {
            row.fill(0.0);
            dropped.push(index);
        }
    }
    let nonzeros_after = count_nonzero_checked(&[weights])?[0];
    Ok(FilterReport {
        norm_cut: Some(f64::from_bits(cut_bits)),
        dropped,
        nonzeros_after,
        ..untouched
    })
}
