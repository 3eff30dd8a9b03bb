//! Recurrent pieces: LSTMUnit (one LSTM step on precomputed gate inputs), as Caffe's CPU code computes it.

use super::{Backward, Layer};
use crate::error::{LayerError, LayerResult};
use crate::{math, Tensor};

/// Caffe's LSTM sigmoid, `1 / (1 + e^-x)`, evaluated in double as its `1. / (1. + exp(-x))` is.
fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + math::exp_f64(-x))
}

/// Caffe's LSTM tanh, `2 sigmoid(2x) - 1`.
fn tanh(x: f64) -> f64 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

/// The four gate activations of one unit: input, forget (0 where the sequence restarts), output, candidate.
fn gates(x: &[f32], hidden: usize, d: usize, cont: f32) -> [f32; 4] {
    let i = sigmoid(x[d] as f64) as f32;
    let f = if cont == 0.0 {
        0.0
    } else {
        cont * sigmoid(x[hidden + d] as f64) as f32
    };
    let o = sigmoid(x[2 * hidden + d] as f64) as f32;
    let g = tanh(x[3 * hidden + d] as f64) as f32;
    [i, f, o, g]
}

/// `LSTMUnit`: bottoms `c_prev` (1 x N x D), gate inputs (1 x N x 4D, ordered input, forget, output, candidate)
/// and `cont` (1 x N); tops `c = f c_prev + i g` and `h = o tanh(c)`. No gradient into `cont`.
pub(crate) struct LstmUnit {
    dims: (usize, usize),
}

impl LstmUnit {
    pub(crate) fn new() -> Self {
        LstmUnit { dims: (0, 0) }
    }
}

impl Layer for LstmUnit {
    fn type_name(&self) -> &'static str {
        "LSTMUnit"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        super::expect_bottoms(bottoms, 3)?;
        let (c, x, cont) = (bottoms[0], bottoms[1], bottoms[2]);
        if c.len() != 3 || c[0] != 1 {
            return Err(LayerError::Shape(format!("c_prev must be 1 x N x D, got {c:?}")));
        }
        let (num, hidden) = (c[1], c[2]);
        if x != [1, num, 4 * hidden] {
            return Err(LayerError::Shape(format!(
                "the gate inputs must be 1 x {num} x {} (4 x the {hidden} hidden units), got {x:?}",
                4 * hidden
            )));
        }
        if cont != [1, num] {
            return Err(LayerError::Shape(format!(
                "the sequence continuation indicators must be 1 x {num}, got {cont:?}"
            )));
        }
        self.dims = (num, hidden);
        Ok(vec![c.to_vec(), c.to_vec()])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let (num, hidden) = self.dims;
        let (c_prev, x, cont) = (bottoms[0].data(), bottoms[1].data(), bottoms[2].data());
        let [c_top, h_top] = tops else {
            return Err(LayerError::Arity("LSTMUnit takes 2 tops".into()));
        };
        let (c_out, h_out) = (c_top.data_mut(), h_top.data_mut());
        for n in 0..num {
            let xs = &x[n * 4 * hidden..(n + 1) * 4 * hidden];
            for d in 0..hidden {
                let [i, f, o, g] = gates(xs, hidden, d, cont[n]);
                let c = f * c_prev[n * hidden + d] + i * g;
                c_out[n * hidden + d] = c;
                h_out[n * hidden + d] = o * tanh(c as f64) as f32;
            }
        }
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if ctx.propagate_down[2] {
            return Err(LayerError::Unsupported(
                "LSTMUnit cannot backpropagate to the sequence indicators".into(),
            ));
        }
        if !ctx.propagate_down[0] && !ctx.propagate_down[1] {
            return Ok(());
        }
        let (num, hidden) = self.dims;
        let (c_prev, x, cont) = (ctx.bottoms[0].data(), ctx.bottoms[1].data(), ctx.bottoms[2].data());
        let c_top = ctx.tops[0].data();
        let (c_diff, h_diff) = (ctx.top_diffs[0].data(), ctx.top_diffs[1].data());
        // Both bottom diffs are computed together, as in Caffe; an unwanted one goes to a scratch buffer.
        let (mut scratch_c, mut scratch_x) = (Vec::new(), Vec::new());
        let (first, rest) = ctx.bottom_diffs.split_at_mut(1);
        let c_prev_diff: &mut [f32] = if ctx.propagate_down[0] {
            first[0].data_mut()
        } else {
            scratch_c.resize(num * hidden, 0.0);
            &mut scratch_c
        };
        let x_diff: &mut [f32] = if ctx.propagate_down[1] {
            rest[0].data_mut()
        } else {
            scratch_x.resize(num * 4 * hidden, 0.0);
            &mut scratch_x
        };
        for n in 0..num {
            let xs = &x[n * 4 * hidden..(n + 1) * 4 * hidden];
            let xd = &mut x_diff[n * 4 * hidden..(n + 1) * 4 * hidden];
            for d in 0..hidden {
                let k = n * hidden + d;
                let [i, f, o, g] = gates(xs, hidden, d, cont[n]);
                let tanh_c = tanh(c_top[k] as f64) as f32;
                let c_term = c_diff[k] + h_diff[k] * o * (1.0 - tanh_c * tanh_c);
                c_prev_diff[k] = c_term * f;
                xd[d] = c_term * g * i * (1.0 - i);
                xd[hidden + d] = c_term * c_prev[k] * f * (1.0 - f);
                xd[2 * hidden + d] = h_diff[k] * tanh_c * o * (1.0 - o);
                xd[3 * hidden + d] = c_term * i * (1.0 - g * g);
            }
        }
        Ok(())
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{check, uniform, Check};
    use crate::layers::testing::param;

    #[test]
    fn lstm_unit_gradients() {
        let mut p = param("LSTMUnit", |_| {});
        p.top = vec!["c".into(), "h".into()];
        let mut c = Check::new(
            p,
            vec![
                uniform(&[1, 3, 2], -1.0, 1.0, 1),
                uniform(&[1, 3, 8], -1.0, 1.0, 2),
                Tensor::new(&[1, 3], vec![1.0, 0.0, 1.0]),
            ],
        );
        c.check_bottoms = vec![true, true, false];
        check(&c);
    }
}
