//! Element-wise "neuron" layers with a closed-form value and derivative: AbsVal, BNLL, Exp, Log, Power, ELU,
//! Threshold, Clip and Swish, each computed per element as Caffe's CPU code does (same operations, same order).

use caffe_proto::LayerParameter;
use rayon::prelude::*;

use super::{expect_bottoms, Backward, Layer};
use crate::error::{LayerError, LayerResult};
use crate::math;
use crate::Tensor;

/// Values per parallel task: below this a thread costs more than it saves.
const ELEMENTS_PER_TASK: usize = 1 << 15;

/// One element-wise function: its value and its derivative.
pub(crate) trait Op: Send + Sync {
    /// The Caffe type name.
    const NAME: &'static str;
    /// False for layers Caffe gives no backward (Threshold).
    const HAS_BACKWARD: bool = true;
    /// `y = f(x)`.
    fn forward(&self, x: f32) -> f32;
    /// `dL/dx` from the input `x`, the output `y` and `dL/dy`.
    fn backward(&self, x: f32, y: f32, dy: f32) -> f32;
}

/// A layer applying [`Op`] to every value. Works in place; the input is then kept for backward (Caffe reads the
/// bottom in backward, which an in-place top would have overwritten).
pub(crate) struct Neuron<O> {
    op: O,
    saved_input: Option<Tensor>,
}

impl<O: Op> Neuron<O> {
    pub(crate) fn new(op: O) -> Self {
        Neuron { op, saved_input: None }
    }
}

impl<O: Op> Layer for Neuron<O> {
    fn type_name(&self) -> &'static str {
        O::NAME
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1)?;
        Ok(vec![bottoms[0].to_vec()])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        self.saved_input = None;
        let op = &self.op;
        tops[0]
            .data_mut()
            .par_chunks_mut(ELEMENTS_PER_TASK)
            .zip(bottoms[0].data().par_chunks(ELEMENTS_PER_TASK))
            .for_each(|(y, x)| y.iter_mut().zip(x).for_each(|(y, &x)| *y = op.forward(x)));
        Ok(())
    }
    fn forward_in_place(&mut self, data: &mut Tensor, _: &[&Tensor]) -> LayerResult<bool> {
        if O::HAS_BACKWARD {
            match &mut self.saved_input {
                Some(saved) if saved.shape() == data.shape() => saved.copy_from(data),
                _ => self.saved_input = Some(data.clone()),
            }
        }
        let op = &self.op;
        data.data_mut()
            .par_chunks_mut(ELEMENTS_PER_TASK)
            .for_each(|v| v.iter_mut().for_each(|v| *v = op.forward(*v)));
        Ok(true)
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if !O::HAS_BACKWARD {
            return Err(LayerError::Unsupported(format!("{} has no backward pass", O::NAME)));
        }
        if !ctx.propagate_down[0] {
            return Ok(());
        }
        let x = self.saved_input.as_ref().unwrap_or(ctx.bottoms[0]).data();
        let y = ctx.tops[0].data();
        let dy = ctx.top_diffs[0].data();
        let op = &self.op;
        ctx.bottom_diffs[0]
            .data_mut()
            .par_chunks_mut(ELEMENTS_PER_TASK)
            .zip(x.par_chunks(ELEMENTS_PER_TASK))
            .zip(y.par_chunks(ELEMENTS_PER_TASK))
            .zip(dy.par_chunks(ELEMENTS_PER_TASK))
            .for_each(|(((dx, x), y), dy)| {
                for (((dx, &x), &y), &dy) in dx.iter_mut().zip(x).zip(y).zip(dy) {
                    *dx = op.backward(x, y, dy);
                }
            });
        Ok(())
    }
}

/// Caffe's `caffe_sign`: -1, 0 or 1.
fn sign(x: f32) -> f32 {
    ((0.0 < x) as i32 - (x < 0.0) as i32) as f32
}

/// `AbsVal`: `|x|`; the derivative is `sign(x)` (0 at 0).
pub(crate) struct AbsVal;

impl Op for AbsVal {
    const NAME: &'static str = "AbsVal";
    fn forward(&self, x: f32) -> f32 {
        x.abs()
    }
    fn backward(&self, x: f32, _: f32, dy: f32) -> f32 {
        sign(x) * dy
    }
}

/// `BNLL` (binomial normal log likelihood): `log(1 + e^x)`, written to avoid overflow for large `x`.
pub(crate) struct Bnll;

/// Caffe's `kBNLL_THRESHOLD`: the input is clamped to it before `exp` in backward.
const BNLL_THRESHOLD: f32 = 50.0;

impl Op for Bnll {
    const NAME: &'static str = "BNLL";
    fn forward(&self, x: f32) -> f32 {
        // Caffe adds in double (`1. + exp(..)`) and logs that.
        if x > 0.0 {
            (x as f64 + math::ln_f64(1.0 + math::exp(-x) as f64)) as f32
        } else {
            math::ln_f64(1.0 + math::exp(x) as f64) as f32
        }
    }
    fn backward(&self, x: f32, _: f32, dy: f32) -> f32 {
        let e = math::exp(x.min(BNLL_THRESHOLD));
        (dy as f64 * e as f64 / (e as f64 + 1.0)) as f32
    }
}

/// `Exp`: `base^(shift + scale x)` (base -1 means e), as `outer_scale * exp(inner_scale * x)`.
pub(crate) struct Exp {
    inner_scale: f32,
    outer_scale: f32,
}

impl Exp {
    pub(crate) fn new(param: &LayerParameter) -> LayerResult<Self> {
        let p = param.exp_param.unwrap_or_default();
        let (base, scale, shift) = (p.base(), p.scale(), p.shift());
        if base != -1.0 && base <= 0.0 {
            return Err(LayerError::Param(format!(
                "exp_param base must be strictly positive (or -1 for e), got {base}"
            )));
        }
        let log_base = if base == -1.0 { 1.0 } else { math::ln(base) };
        let outer_scale = if shift == 0.0 {
            1.0
        } else if base != -1.0 {
            math::powf(base, shift)
        } else {
            math::exp(shift)
        };
        Ok(Exp {
            inner_scale: log_base * scale,
            outer_scale,
        })
    }
}

impl Op for Exp {
    const NAME: &'static str = "Exp";
    fn forward(&self, x: f32) -> f32 {
        let e = if self.inner_scale == 1.0 {
            math::exp(x)
        } else {
            math::exp(self.inner_scale * x)
        };
        if self.outer_scale == 1.0 {
            e
        } else {
            self.outer_scale * e
        }
    }
    fn backward(&self, _: f32, y: f32, dy: f32) -> f32 {
        // Caffe: top_data * top_diff, then scaled by inner_scale.
        let d = y * dy;
        if self.inner_scale == 1.0 {
            d
        } else {
            d * self.inner_scale
        }
    }
}

/// `Log`: `log_base(shift + scale x)` (base -1 means e).
pub(crate) struct Log {
    base_scale: f32,
    input_scale: f32,
    input_shift: f32,
    backward_num_scale: f32,
}

impl Log {
    pub(crate) fn new(param: &LayerParameter) -> LayerResult<Self> {
        let p = param.log_param.unwrap_or_default();
        let (base, scale, shift) = (p.base(), p.scale(), p.shift());
        if base != -1.0 && base <= 0.0 {
            return Err(LayerError::Param(format!(
                "log_param base must be strictly positive (or -1 for e), got {base}"
            )));
        }
        let log_base = if base == -1.0 { 1.0 } else { math::ln(base) };
        Ok(Log {
            base_scale: 1.0 / log_base,
            input_scale: scale,
            input_shift: shift,
            backward_num_scale: scale / log_base,
        })
    }

    /// `shift + scale x`, skipping the operations Caffe skips.
    fn inner(&self, x: f32) -> f32 {
        let mut v = x;
        if self.input_scale != 1.0 {
            v *= self.input_scale;
        }
        if self.input_shift != 0.0 {
            v += self.input_shift;
        }
        v
    }
}

impl Op for Log {
    const NAME: &'static str = "Log";
    fn forward(&self, x: f32) -> f32 {
        let y = math::ln(self.inner(x));
        if self.base_scale == 1.0 {
            y
        } else {
            y * self.base_scale
        }
    }
    fn backward(&self, x: f32, _: f32, dy: f32) -> f32 {
        // Caffe: (shift + scale x)^-1, times backward_num_scale, times top_diff.
        let mut d = 1.0 / self.inner(x);
        if self.backward_num_scale != 1.0 {
            d *= self.backward_num_scale;
        }
        dy * d
    }
}

/// `Power`: `(shift + scale x)^power`.
pub(crate) struct Power {
    power: f32,
    scale: f32,
    shift: f32,
    diff_scale: f32,
}

impl Power {
    pub(crate) fn new(param: &LayerParameter) -> Self {
        let p = param.power_param.unwrap_or_default();
        Power {
            power: p.power(),
            scale: p.scale(),
            shift: p.shift(),
            diff_scale: p.power() * p.scale(),
        }
    }
}

impl Op for Power {
    const NAME: &'static str = "Power";
    fn forward(&self, x: f32) -> f32 {
        if self.diff_scale == 0.0 {
            // A constant: Caffe fills 1 for power 0, shift^power otherwise.
            return if self.power == 0.0 {
                1.0
            } else {
                math::powf(self.shift, self.power)
            };
        }
        let mut v = x;
        if self.scale != 1.0 {
            v *= self.scale;
        }
        if self.shift != 0.0 {
            v += self.shift;
        }
        if self.power != 1.0 {
            v = math::powf(v, self.power);
        }
        v
    }
    fn backward(&self, x: f32, y: f32, dy: f32) -> f32 {
        // Caffe's special cases, each with its own operation order.
        if self.diff_scale == 0.0 {
            return 0.0;
        }
        let d = if self.power == 1.0 {
            self.diff_scale
        } else if self.power == 2.0 {
            let mut d = self.diff_scale * self.scale * x;
            if self.shift != 0.0 {
                d += self.diff_scale * self.shift;
            }
            d
        } else if self.shift == 0.0 {
            y / x * self.power
        } else {
            let mut v = x;
            if self.scale != 1.0 {
                v *= self.scale;
            }
            v += self.shift;
            let mut d = y / v;
            if self.diff_scale != 1.0 {
                d *= self.diff_scale;
            }
            d
        };
        dy * d
    }
}

/// `ELU`: `x` for `x > 0`, `alpha (e^x - 1)` otherwise.
pub(crate) struct Elu {
    alpha: f32,
}

impl Elu {
    pub(crate) fn new(param: &LayerParameter) -> Self {
        Elu {
            alpha: param.elu_param.unwrap_or_default().alpha(),
        }
    }
}

impl Op for Elu {
    const NAME: &'static str = "ELU";
    fn forward(&self, x: f32) -> f32 {
        x.max(0.0) + self.alpha * (math::exp(x.min(0.0)) - 1.0)
    }
    fn backward(&self, x: f32, y: f32, dy: f32) -> f32 {
        let pos = (x > 0.0) as i32 as f32;
        let neg = (x <= 0.0) as i32 as f32;
        dy * (pos + (self.alpha + y) * neg)
    }
}

/// `Threshold`: 1 where `x > threshold`, else 0. No backward (Caffe has none).
pub(crate) struct Threshold {
    threshold: f32,
}

impl Threshold {
    pub(crate) fn new(param: &LayerParameter) -> Self {
        Threshold {
            threshold: param.threshold_param.unwrap_or_default().threshold(),
        }
    }
}

impl Op for Threshold {
    const NAME: &'static str = "Threshold";
    const HAS_BACKWARD: bool = false;
    fn forward(&self, x: f32) -> f32 {
        if x > self.threshold {
            1.0
        } else {
            0.0
        }
    }
    fn backward(&self, _: f32, _: f32, _: f32) -> f32 {
        0.0
    }
}

/// `Clip`: `max(min, min(max, x))`; the gradient passes where `min <= x <= max`.
pub(crate) struct Clip {
    min: f32,
    max: f32,
}

impl Clip {
    pub(crate) fn new(param: &LayerParameter) -> LayerResult<Self> {
        // Both bounds are required fields in caffe.proto.
        let p = param
            .clip_param
            .ok_or_else(|| LayerError::Param("Clip needs clip_param { min max }".into()))?;
        if p.min.is_nan() || p.max.is_nan() || p.min > p.max {
            return Err(LayerError::Param(format!(
                "clip_param min {} must not exceed max {}",
                p.min, p.max
            )));
        }
        Ok(Clip { min: p.min, max: p.max })
    }
}

impl Op for Clip {
    const NAME: &'static str = "Clip";
    fn forward(&self, x: f32) -> f32 {
        self.min.max(x.min(self.max))
    }
    fn backward(&self, x: f32, _: f32, dy: f32) -> f32 {
        if x >= self.min && x <= self.max {
            dy
        } else {
            0.0
        }
    }
}

/// `Swish`: `x sigmoid(beta x)` (sigmoid as Caffe's SigmoidLayer computes it, `0.5 tanh(0.5 v) + 0.5`).
pub(crate) struct Swish {
    beta: f32,
}

impl Swish {
    pub(crate) fn new(param: &LayerParameter) -> Self {
        Swish {
            beta: param.swish_param.unwrap_or_default().beta(),
        }
    }

    fn sigmoid(&self, x: f32) -> f32 {
        0.5 * math::tanh(0.5 * (self.beta * x)) + 0.5
    }
}

impl Op for Swish {
    const NAME: &'static str = "Swish";
    fn forward(&self, x: f32) -> f32 {
        x * self.sigmoid(x)
    }
    fn backward(&self, x: f32, y: f32, dy: f32) -> f32 {
        // Caffe: top_diff * (beta y + sigmoid(beta x) (1 - beta y)).
        let s = self.sigmoid(x);
        dy * (self.beta * y + s * (1.0 - self.beta * y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{away_from_zero, check, uniform, Check};
    use crate::layers::testing::{assert_close, param, run};
    use caffe_proto::{ClipParameter, ExpParameter, LogParameter, PowerParameter, SwishParameter};

    fn clip(min: f32, max: f32) -> LayerParameter {
        param("Clip", |p| p.clip_param = Some(ClipParameter { min, max }))
    }

    #[test]
    fn clip_values_and_gradients() {
        let mut layer = Neuron::new(Clip::new(&clip(-1.0, 0.5)).unwrap());
        let input = Tensor::new(&[5], vec![-3.0, -1.0, 0.25, 0.5, 2.0]);
        assert_close(
            run(&mut layer, &[input]).unwrap()[0].data(),
            &[-1.0, -1.0, 0.25, 0.5, 0.5],
            0.0,
        );
        // Away from the bounds the gradient is 1 inside, 0 outside.
        let bottom = Tensor::new(&[2, 3], vec![-2.0, -0.5, 0.0, 0.3, 0.9, 1.5]);
        check(&Check::new(clip(-1.0, 0.5), vec![bottom]));
        assert!(Clip::new(&clip(1.0, 0.0)).is_err());
        assert!(Clip::new(&param("Clip", |_| {})).is_err());
    }

    #[test]
    fn swish_values_and_gradients() {
        for beta in [1.0, 0.5, 2.0] {
            let p = param("Swish", |l| l.swish_param = Some(SwishParameter { beta: Some(beta) }));
            let mut layer = Neuron::new(Swish::new(&p));
            let xs = [-3.0f32, -0.5, 0.0, 0.7, 4.0];
            let expected: Vec<f32> = xs.iter().map(|&x| x / (1.0 + (-beta * x).exp())).collect();
            let out = run(&mut layer, &[Tensor::new(&[5], xs.to_vec())]).unwrap();
            assert_close(out[0].data(), &expected, 1e-6);
            check(&Check::new(p, vec![uniform(&[2, 3, 4], -3.0, 3.0, 11)]));
        }
    }

    #[test]
    fn closed_form_gradients() {
        let x = away_from_zero(&[2, 3, 4], 0.1, 2.0, 5);
        let positive = uniform(&[2, 3, 4], 0.5, 2.0, 6);
        let cases = [
            (param("AbsVal", |_| {}), x.clone()),
            (param("BNLL", |_| {}), x.clone()),
            (param("ELU", |_| {}), x.clone()),
            (
                param("Exp", |l| {
                    l.exp_param = Some(ExpParameter {
                        base: Some(2.0),
                        scale: Some(0.5),
                        shift: Some(0.3),
                    })
                }),
                x.clone(),
            ),
            (
                param("Log", |l| {
                    l.log_param = Some(LogParameter {
                        base: Some(10.0),
                        scale: Some(2.0),
                        shift: Some(0.5),
                    })
                }),
                positive.clone(),
            ),
            (
                param("Power", |l| {
                    l.power_param = Some(PowerParameter {
                        power: Some(2.5),
                        scale: Some(0.7),
                        shift: Some(0.2),
                    })
                }),
                positive.clone(),
            ),
            (
                param("Power", |l| {
                    l.power_param = Some(PowerParameter {
                        power: Some(2.0),
                        scale: Some(-0.7),
                        shift: Some(0.2),
                    })
                }),
                x.clone(),
            ),
            (
                param("Power", |l| {
                    l.power_param = Some(PowerParameter {
                        power: Some(3.0),
                        scale: Some(1.5),
                        shift: Some(0.0),
                    })
                }),
                x.clone(),
            ),
        ];
        for (p, bottom) in cases {
            check(&Check::new(p, vec![bottom]));
        }
    }

    #[test]
    fn bad_bases_are_refused() {
        let exp = param("Exp", |l| {
            l.exp_param = Some(ExpParameter {
                base: Some(-2.0),
                ..Default::default()
            })
        });
        assert!(Exp::new(&exp).is_err());
        let log = param("Log", |l| {
            l.log_param = Some(LogParameter {
                base: Some(0.0),
                ..Default::default()
            })
        });
        assert!(Log::new(&log).is_err());
    }

    #[test]
    fn in_place_backward_uses_the_saved_input() {
        let mut layer = Neuron::new(AbsVal);
        let mut data = Tensor::new(&[3], vec![-2.0, 0.0, 3.0]);
        assert!(layer.forward_in_place(&mut data, &[]).unwrap());
        let dy = Tensor::new(&[3], vec![1.0, 1.0, 1.0]);
        let mut diffs = vec![Tensor::zeros(&[3])];
        layer
            .backward(Backward {
                tops: &[&data],
                top_diffs: &[&dy],
                bottoms: &[&data],
                propagate_down: &[true],
                bottom_diffs: &mut diffs,
                param_propagate_down: &[],
                param_diffs: &mut [],
            })
            .unwrap();
        assert_eq!(diffs[0].data(), &[-1.0, 0.0, 1.0]);
    }
}
