//! Eltwise: element-wise SUM (with coefficients), PROD and MAX of same-shaped bottoms.

use caffe_proto::eltwise_parameter::EltwiseOp;
use caffe_proto::LayerParameter;

use super::{Backward, Layer};
use crate::error::{LayerError, LayerResult};
use crate::Tensor;

/// `Eltwise`. SUM computes `sum_i coeff_i * x_i` (coefficients default to 1); MAX keeps the first bottom on ties.
pub(crate) struct Eltwise {
    op: EltwiseOp,
    coeffs: Vec<f32>,
    /// PROD: the gradient as the product of the other bottoms (Caffe's default) rather than top / bottom.
    stable_prod_grad: bool,
    /// MAX: which bottom gave each output in the last forward (Caffe's `max_idx_`).
    max_index: Vec<u32>,
}

impl Eltwise {
    pub(crate) fn new(param: &LayerParameter, n_bottoms: usize) -> LayerResult<Self> {
        let p = param.eltwise_param.clone().unwrap_or_default();
        let op = p.operation();
        if !p.coeff.is_empty() && op != EltwiseOp::Sum {
            return Err(LayerError::Param(
                "coefficients are only allowed with operation SUM".into(),
            ));
        }
        if !p.coeff.is_empty() && p.coeff.len() != n_bottoms {
            return Err(LayerError::Param(format!(
                "{} coefficients given for {n_bottoms} bottoms; give one per bottom or none",
                p.coeff.len()
            )));
        }
        let coeffs = if p.coeff.is_empty() {
            vec![1.0; n_bottoms]
        } else {
            p.coeff.clone()
        };
        Ok(Eltwise {
            op,
            coeffs,
            stable_prod_grad: p.stable_prod_grad(),
            max_index: Vec::new(),
        })
    }

    fn combine(&self, out: &mut [f32], rest: &[&Tensor]) {
        for (i, b) in rest.iter().enumerate() {
            let coeff = self.coeffs[i + 1];
            let b = b.data();
            match self.op {
                EltwiseOp::Sum => out.iter_mut().zip(b).for_each(|(o, x)| *o += coeff * x),
                EltwiseOp::Prod => out.iter_mut().zip(b).for_each(|(o, x)| *o *= x),
                EltwiseOp::Max => out.iter_mut().zip(b).for_each(|(o, &x)| {
                    if x > *o {
                        *o = x
                    }
                }),
            }
        }
    }
}

impl Layer for Eltwise {
    fn type_name(&self) -> &'static str {
        "Eltwise"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        for (i, b) in bottoms.iter().enumerate().skip(1) {
            if *b != bottoms[0] {
                return Err(LayerError::Shape(format!(
                    "all bottoms must have the same shape; bottom 0 is {:?}, bottom {i} is {b:?}",
                    bottoms[0]
                )));
            }
        }
        Ok(vec![bottoms[0].to_vec()])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        self.record_max_index(bottoms);
        let out = tops[0].data_mut();
        let first = bottoms[0].data();
        match self.op {
            EltwiseOp::Sum => out.iter_mut().zip(first).for_each(|(o, x)| *o = self.coeffs[0] * x),
            _ => out.copy_from_slice(first),
        }
        self.combine(out, &bottoms[1..]);
        Ok(())
    }
    fn forward_in_place(&mut self, data: &mut Tensor, other_bottoms: &[&Tensor]) -> LayerResult<bool> {
        if self.op == EltwiseOp::Sum && self.coeffs[0] != 1.0 {
            let c = self.coeffs[0];
            data.data_mut().iter_mut().for_each(|v| *v *= c);
        }
        if self.op == EltwiseOp::Max {
            let mut all: Vec<&Tensor> = vec![data];
            all.extend_from_slice(other_bottoms);
            self.record_max_index(&all);
        }
        self.combine(data.data_mut(), other_bottoms);
        Ok(true)
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        let top_diff = ctx.top_diffs[0].data();
        let top = ctx.tops[0].data();
        for i in 0..ctx.bottom_diffs.len() {
            if !ctx.propagate_down[i] {
                continue;
            }
            let diff = ctx.bottom_diffs[i].data_mut();
            match self.op {
                EltwiseOp::Sum => {
                    let c = self.coeffs[i];
                    diff.iter_mut().zip(top_diff).for_each(|(d, g)| *d = c * g);
                }
                EltwiseOp::Prod if self.stable_prod_grad => {
                    diff.fill(1.0);
                    for (j, other) in ctx.bottoms.iter().enumerate() {
                        if j != i {
                            diff.iter_mut().zip(other.data()).for_each(|(d, x)| *d *= x);
                        }
                    }
                    diff.iter_mut().zip(top_diff).for_each(|(d, g)| *d *= g);
                }
                EltwiseOp::Prod => {
                    let x = ctx.bottoms[i].data();
                    for (((d, &g), &y), &x) in diff.iter_mut().zip(top_diff).zip(top).zip(x) {
                        *d = g * y / x;
                    }
                }
                EltwiseOp::Max => {
                    for ((d, &g), &k) in diff.iter_mut().zip(top_diff).zip(&self.max_index) {
                        *d = if k as usize == i { g } else { 0.0 };
                    }
                }
            }
        }
        Ok(())
    }
}

impl Eltwise {
    /// MAX: which bottom is the maximum at each position, by Caffe's rule (bottom 1 wins a tie with bottom 0; later
    /// bottoms must be strictly larger).
    fn record_max_index(&mut self, bottoms: &[&Tensor]) {
        if self.op != EltwiseOp::Max {
            return;
        }
        let (a, b) = (bottoms[0].data(), bottoms[1].data());
        self.max_index.clear();
        self.max_index
            .extend(a.iter().zip(b).map(|(x, y)| if x > y { 0 } else { 1 }));
        let mut best: Vec<f32> = a.iter().zip(b).map(|(&x, &y)| if x > y { x } else { y }).collect();
        for (k, bottom) in bottoms.iter().enumerate().skip(2) {
            for ((m, v), &x) in self.max_index.iter_mut().zip(best.iter_mut()).zip(bottom.data()) {
                if x > *v {
                    *v = x;
                    *m = k as u32;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::{assert_close, param, run};
    use caffe_proto::EltwiseParameter;

    fn eltwise(op: EltwiseOp, coeff: Vec<f32>, n: usize) -> LayerResult<Eltwise> {
        Eltwise::new(
            &param("Eltwise", |l| {
                l.eltwise_param = Some(EltwiseParameter {
                    operation: Some(op as i32),
                    coeff,
                    ..Default::default()
                })
            }),
            n,
        )
    }

    #[test]
    fn sum_with_coefficients_prod_and_max() {
        let a = Tensor::new(&[3], vec![1.0, -2.0, 3.0]);
        let b = Tensor::new(&[3], vec![4.0, 5.0, -6.0]);
        let out = run(
            &mut eltwise(EltwiseOp::Sum, vec![], 2).unwrap(),
            &[a.clone(), b.clone()],
        )
        .unwrap();
        assert_close(out[0].data(), &[5.0, 3.0, -3.0], 0.0);
        let out = run(
            &mut eltwise(EltwiseOp::Sum, vec![1.0, -1.0], 2).unwrap(),
            &[a.clone(), b.clone()],
        )
        .unwrap();
        assert_close(out[0].data(), &[-3.0, -7.0, 9.0], 0.0);
        let out = run(
            &mut eltwise(EltwiseOp::Prod, vec![], 2).unwrap(),
            &[a.clone(), b.clone()],
        )
        .unwrap();
        assert_close(out[0].data(), &[4.0, -10.0, -18.0], 0.0);
        let out = run(
            &mut eltwise(EltwiseOp::Max, vec![], 2).unwrap(),
            &[a.clone(), b.clone()],
        )
        .unwrap();
        assert_close(out[0].data(), &[4.0, 5.0, 3.0], 0.0);
        // In place on bottom 0 with coefficients.
        let mut layer = eltwise(EltwiseOp::Sum, vec![2.0, 0.5], 2).unwrap();
        layer.reshape(&[a.shape(), b.shape()]).unwrap();
        let mut data = a.clone();
        layer.forward_in_place(&mut data, &[&b]).unwrap();
        assert_close(data.data(), &[4.0, -1.5, 3.0], 0.0);
    }

    #[test]
    fn invalid_coefficients_and_shapes() {
        assert!(eltwise(EltwiseOp::Prod, vec![1.0, 1.0], 2).is_err());
        assert!(eltwise(EltwiseOp::Sum, vec![1.0], 2).is_err());
        let mut layer = eltwise(EltwiseOp::Sum, vec![], 2).unwrap();
        assert!(matches!(layer.reshape(&[&[2, 3], &[3, 2]]), Err(LayerError::Shape(_))));
    }
}
