//! InnerProduct (fully connected).

use caffe_proto::LayerParameter;

use super::{canonical_axis, ensure_param_shape, expect_bottoms, Backward, Layer};
use rayon::prelude::*;

use crate::blas::{par_sgemm, par_sgemm_acc};
use crate::error::{LayerError, LayerResult};
use crate::filler::fill;
use crate::sparse::{Csr, SparseCache, INNER_PRODUCT_CROSSOVER};
use crate::Tensor;

/// Samples per task of the sparse product: two tasks per thread (a batch of 100 on two threads: four of 25, not
/// 32 + 32 + 32 + 4), between 8 and 64. Each sample's outputs are its own, so the split changes no bits.
fn sparse_rows(m: usize) -> usize {
    m.div_ceil(2 * rayon::current_num_threads()).clamp(8, 64)
}

/// `InnerProduct`: `top[m, n] = sum_k bottom[m, k] * W[n, k] + b[n]`, with `m` over the axes before `axis` and `k`
/// over the rest. Weights are `[N, K]`, or `[K, N]` with `transpose`; bias `[N]`.
pub(crate) struct InnerProduct {
    name: String,
    weight_filler: caffe_proto::FillerParameter,
    bias_filler: caffe_proto::FillerParameter,
    num_output: usize,
    bias_term: bool,
    transpose: bool,
    axis: i32,
    params: Vec<Tensor>,
    initialized: bool,
    /// (M, K) from the last reshape.
    dims: (usize, usize),
    /// The pruned weights' sparse form (see crate::sparse).
    sparse: SparseCache,
}

impl InnerProduct {
    pub(crate) fn new(param: &LayerParameter) -> LayerResult<Self> {
        let p = param.inner_product_param.clone().unwrap_or_default();
        let num_output = p.num_output() as usize;
        if num_output == 0 {
            return Err(LayerError::Param("num_output must be positive".into()));
        }
        let bias_term = p.bias_term();
        Ok(InnerProduct {
            name: param.name().to_string(),
            weight_filler: p.weight_filler.clone().unwrap_or_default(),
            bias_filler: p.bias_filler.clone().unwrap_or_default(),
            num_output,
            bias_term,
            transpose: p.transpose(),
            axis: p.axis(),
            params: vec![Tensor::default(); 1 + bias_term as usize],
            initialized: false,
            dims: (0, 0),
            sparse: SparseCache::default(),
        })
    }
}

/// The compressed rows of `weights` (`n x k`) when they are pruned below the crossover; a transposed layer's weights
/// (`k x n`) stay dense.
fn sparse_weights<'c>(
    cache: &'c mut SparseCache,
    weights: &[f32],
    transpose: bool,
    (n, k): (usize, usize),
) -> Option<&'c Csr> {
    if transpose {
        return None;
    }
    cache
        .groups(weights, 1, (n, k), INNER_PRODUCT_CROSSOVER)
        .first()
        .and_then(Option::as_ref)
}

impl Layer for InnerProduct {
    fn type_name(&self) -> &'static str {
        "InnerProduct"
    }

    fn params(&self) -> &[Tensor] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [Tensor] {
        self.sparse.invalidate();
        &mut self.params
    }

    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1)?;
        let b = bottoms[0];
        let axis = canonical_axis(self.axis, b.len(), "axis")?;
        let k: usize = b[axis..].iter().product();
        let m: usize = b[..axis].iter().product();
        let weight_shape = if self.transpose {
            [k, self.num_output]
        } else {
            [self.num_output, k]
        };
        ensure_param_shape(
            &mut self.params[0],
            &weight_shape,
            self.initialized,
            "inner product parameters",
        )?;
        if self.bias_term {
            ensure_param_shape(
                &mut self.params[1],
                &[self.num_output],
                self.initialized,
                "inner product bias",
            )?;
        }
        if !self.initialized {
            fill(&mut self.params[0], &self.weight_filler, &format!("{}/0", self.name))?;
            if self.bias_term {
                fill(&mut self.params[1], &self.bias_filler, &format!("{}/1", self.name))?;
            }
        }
        self.initialized = true;
        self.dims = (m, k);
        let mut top = b[..axis].to_vec();
        top.push(self.num_output);
        Ok(vec![top])
    }

    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let (_, k) = self.dims;
        let n = self.num_output;
        let weights = self.params[0].data();
        let bias = self.bias_term.then(|| self.params[1].data());
        let input = bottoms[0].data();
        let output = tops[0].data_mut();
        if output.is_empty() {
            return Ok(());
        }
        if k == 0 {
            // An empty input row: the product is 0 and only the bias remains.
            for row in output.chunks_mut(n) {
                row.iter_mut()
                    .enumerate()
                    .for_each(|(i, v)| *v = bias.map_or(0.0, |b| b[i]));
            }
            return Ok(());
        }
        let m = output.len() / n;
        // A pruned layer multiplies only its nonzero weights (see crate::sparse), rows of samples in parallel.
        let sparse = sparse_weights(&mut self.sparse, weights, self.transpose, (n, k));
        match sparse {
            Some(csr) => {
                output
                    .par_chunks_mut(sparse_rows(m) * n)
                    .zip(input.par_chunks(sparse_rows(m) * k))
                    .for_each_init(Vec::new, |scratch, (out, a)| {
                        csr.dense_times_transpose(a, out.len() / n, out, scratch)
                    });
            }
            // Without transpose W is N x K, so the product takes it transposed.
            None => par_sgemm(false, !self.transpose, m, n, k, input, weights, output),
        }
        if let Some(bias) = bias {
            for row in output.chunks_mut(n) {
                row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
            }
        }
        Ok(())
    }

    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        let (m, k) = self.dims;
        let n = self.num_output;
        let top_diff = ctx.top_diffs[0].data();
        let input = ctx.bottoms[0].data();
        if m == 0 {
            return Ok(());
        }
        if ctx.param_propagate_down[0] && k > 0 {
            let weight_diff = ctx.param_diffs[0].data_mut();
            if self.transpose {
                // dW (K x N) += bottom^T (K x M) * top_diff (M x N).
                par_sgemm_acc(true, false, k, n, m, input, top_diff, weight_diff, true);
            } else {
                // dW (N x K) += top_diff^T (N x M) * bottom (M x K).
                par_sgemm_acc(true, false, n, k, m, top_diff, input, weight_diff, true);
            }
        }
        if self.bias_term && ctx.param_propagate_down.get(1).copied().unwrap_or(false) {
            let bias_diff = ctx.param_diffs[1].data_mut();
            for row in top_diff.chunks(n) {
                bias_diff.iter_mut().zip(row).for_each(|(d, t)| *d += t);
            }
        }
        if ctx.propagate_down[0] && k > 0 {
            // bottom_diff (M x K) = top_diff (M x N) * W (N x K), W stored K x N with transpose; a pruned W
            // multiplies only its nonzeros, as in forward.
            let weights = self.params[0].data();
            let sparse = sparse_weights(&mut self.sparse, weights, self.transpose, (n, k));
            let bottom_diff = ctx.bottom_diffs[0].data_mut();
            match sparse {
                Some(csr) => bottom_diff
                    .par_chunks_mut(sparse_rows(m) * k)
                    .zip(top_diff.par_chunks(sparse_rows(m) * n))
                    .for_each_init(Vec::new, |scratch, (out, a)| {
                        csr.dense_times(a, out.len() / k, out, scratch)
                    }),
                None => par_sgemm(false, self.transpose, m, k, n, top_diff, weights, bottom_diff),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::{assert_close, param, run};
    use caffe_proto::InnerProductParameter;

    fn ip(edit: impl FnOnce(&mut InnerProductParameter)) -> InnerProduct {
        let p = param("InnerProduct", |l| {
            let mut ipp = InnerProductParameter {
                num_output: Some(2),
                ..Default::default()
            };
            edit(&mut ipp);
            l.inner_product_param = Some(ipp);
        });
        InnerProduct::new(&p).unwrap()
    }

    #[test]
    fn flattens_trailing_axes_and_adds_bias() {
        // Bottom 2x1x3 (K = 3): W = [[1,0,-1],[2,2,2]], b = [10, 0].
        let mut layer = ip(|_| {});
        layer.reshape(&[&[2, 1, 3]]).unwrap();
        layer.params_mut()[0]
            .data_mut()
            .copy_from_slice(&[1.0, 0.0, -1.0, 2.0, 2.0, 2.0]);
        layer.params_mut()[1].data_mut().copy_from_slice(&[10.0, 0.0]);
        let out = run(
            &mut layer,
            &[Tensor::new(&[2, 1, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])],
        )
        .unwrap();
        assert_eq!(out[0].shape(), &[2, 2]);
        assert_close(out[0].data(), &[8.0, 12.0, 8.0, 30.0], 0.0);
    }

    #[test]
    fn transpose_and_axis() {
        // axis 2 on a 1x2x2 bottom: M = 2 rows of K = 2; transposed weights are K x N = [[1,2],[3,4]].
        let mut layer = ip(|p| {
            p.transpose = Some(true);
            p.axis = Some(2);
            p.bias_term = Some(false);
        });
        let shapes = layer.reshape(&[&[1, 2, 2]]).unwrap();
        assert_eq!(shapes[0], vec![1, 2, 2]);
        assert_eq!(layer.params()[0].shape(), &[2, 2]);
        layer.params_mut()[0].data_mut().copy_from_slice(&[1.0, 2.0, 3.0, 4.0]);
        let out = run(&mut layer, &[Tensor::new(&[1, 2, 2], vec![1.0, 1.0, 0.0, 2.0])]).unwrap();
        assert_close(out[0].data(), &[4.0, 6.0, 6.0, 8.0], 0.0);
    }

    #[test]
    fn changed_input_size_is_an_error() {
        let mut layer = ip(|_| {});
        layer.reshape(&[&[4, 10]]).unwrap();
        assert!(layer.reshape(&[&[7, 10]]).is_ok(), "a new batch size is fine");
        assert!(matches!(layer.reshape(&[&[4, 11]]), Err(LayerError::Shape(_))));
    }
}
