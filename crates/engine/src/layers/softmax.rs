//! Softmax and SoftmaxWithLoss.

use caffe_proto::loss_parameter::NormalizationMode;
use caffe_proto::LayerParameter;

use super::{canonical_axis, count, expect_bottoms, Backward, Layer};
use crate::error::{LayerError, LayerResult};
use crate::Tensor;

/// Softmax over `channels` values spaced `inner` apart, for every (outer, inner) position.
pub(crate) fn softmax(input: &[f32], output: &mut [f32], channels: usize, inner: usize) {
    if channels == 0 || inner == 0 {
        return;
    }
    for (inp, out) in input.chunks(channels * inner).zip(output.chunks_mut(channels * inner)) {
        for j in 0..inner {
            let max = (0..channels)
                .map(|c| inp[c * inner + j])
                .fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for c in 0..channels {
                let e = crate::math::exp(inp[c * inner + j] - max);
                out[c * inner + j] = e;
                sum += e;
            }
            for c in 0..channels {
                out[c * inner + j] /= sum;
            }
        }
    }
}

/// Splits a shape around `axis`: (outer count, axis length, inner count).
fn around(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (count(shape, 0, axis), shape[axis], count(shape, axis + 1, shape.len()))
}

/// `Softmax` along `axis` (default 1).
pub(crate) struct Softmax {
    axis: i32,
    dims: (usize, usize, usize),
}

impl Softmax {
    pub(crate) fn new(param: &LayerParameter) -> Self {
        Softmax {
            axis: param.softmax_param.as_ref().map_or(1, |p| p.axis()),
            dims: (0, 0, 0),
        }
    }
}

impl Layer for Softmax {
    fn type_name(&self) -> &'static str {
        "Softmax"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1)?;
        let axis = canonical_axis(self.axis, bottoms[0].len(), "axis")?;
        self.dims = around(bottoms[0], axis);
        Ok(vec![bottoms[0].to_vec()])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let (_, channels, inner) = self.dims;
        softmax(bottoms[0].data(), tops[0].data_mut(), channels, inner);
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if !ctx.propagate_down[0] {
            return Ok(());
        }
        // Caffe: bottom_diff = (top_diff - dot(top_diff, top) over the axis) * top.
        let (_, channels, inner) = self.dims;
        if channels == 0 || inner == 0 {
            return Ok(());
        }
        let (top, top_diff) = (ctx.tops[0].data(), ctx.top_diffs[0].data());
        let diff = ctx.bottom_diffs[0].data_mut();
        let block = channels * inner;
        for ((d, y), dy) in diff
            .chunks_mut(block)
            .zip(top.chunks(block))
            .zip(top_diff.chunks(block))
        {
            for j in 0..inner {
                let dot: f32 = (0..channels).map(|c| dy[c * inner + j] * y[c * inner + j]).sum();
                for c in 0..channels {
                    d[c * inner + j] = (dy[c * inner + j] - dot) * y[c * inner + j];
                }
            }
        }
        Ok(())
    }
}

/// The loss normalization Caffe applies, resolving the legacy `normalize` flag as Caffe does.
pub(crate) fn normalization(param: &LayerParameter) -> NormalizationMode {
    match &param.loss_param {
        Some(p) if p.normalization.is_none() && p.normalize.is_some() => {
            if p.normalize() {
                NormalizationMode::Valid
            } else {
                NormalizationMode::BatchSize
            }
        }
        Some(p) => p.normalization(),
        None => NormalizationMode::Valid,
    }
}

/// Caffe's `LossLayer::GetNormalizer`, never below 1.
pub(crate) fn normalizer(mode: NormalizationMode, outer: usize, inner: usize, valid: usize) -> f32 {
    let n = match mode {
        NormalizationMode::Full => (outer * inner) as f32,
        NormalizationMode::Valid => valid as f32,
        NormalizationMode::BatchSize => outer as f32,
        NormalizationMode::None => 1.0,
    };
    n.max(1.0)
}

/// Reads a label value as Caffe does (`static_cast<int>`, truncating) and checks it names a class.
pub(crate) fn class_of(label: f32, classes: usize, position: usize) -> LayerResult<usize> {
    let value = label as i64;
    if label.is_nan() || value < 0 || value >= classes as i64 {
        return Err(LayerError::Data(format!(
            "label {label} at position {position} is not a class index in [0, {classes})"
        )));
    }
    Ok(value as usize)
}

/// `SoftmaxWithLoss`: mean (by the normalization mode) of `-log(softmax(x)[label])` over the non-ignored
/// positions; the optional second top is the softmax itself.
pub(crate) struct SoftmaxWithLoss {
    axis: i32,
    ignore_label: Option<i32>,
    normalization: NormalizationMode,
    /// 2 when the probabilities are asked for as a second top.
    tops: usize,
    /// The probabilities of the last forward (backward needs them).
    prob: Tensor,
    dims: (usize, usize, usize),
}

impl SoftmaxWithLoss {
    pub(crate) fn new(param: &LayerParameter, tops: usize) -> Self {
        SoftmaxWithLoss {
            tops,
            axis: param.softmax_param.as_ref().map_or(1, |p| p.axis()),
            ignore_label: param.loss_param.as_ref().and_then(|p| p.ignore_label),
            normalization: normalization(param),
            prob: Tensor::default(),
            dims: (0, 0, 0),
        }
    }
}

impl Layer for SoftmaxWithLoss {
    fn type_name(&self) -> &'static str {
        "SoftmaxWithLoss"
    }
    fn is_loss(&self) -> bool {
        true
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 2)?;
        let axis = canonical_axis(self.axis, bottoms[0].len(), "axis")?;
        let (outer, channels, inner) = around(bottoms[0], axis);
        let labels: usize = bottoms[1].iter().product();
        if outer * inner != labels {
            return Err(LayerError::Shape(format!(
                "number of labels must match number of predictions: predictions {:?} with softmax axis {axis} need \
                 {} labels, the label blob {:?} holds {labels}",
                bottoms[0],
                outer * inner,
                bottoms[1]
            )));
        }
        self.dims = (outer, channels, inner);
        self.prob.reshape(bottoms[0]);
        Ok([vec![], bottoms[0].to_vec()].into_iter().take(self.tops).collect())
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let (outer, channels, inner) = self.dims;
        softmax(bottoms[0].data(), self.prob.data_mut(), channels, inner);
        let prob = self.prob.data();
        let labels = bottoms[1].data();
        let mut loss = 0.0f32;
        let mut valid = 0usize;
        for i in 0..outer {
            for j in 0..inner {
                let label = labels[i * inner + j];
                if self.ignore_label.is_some_and(|ignore| label as i32 == ignore) {
                    continue;
                }
                let class = class_of(label, channels, i * inner + j)?;
                loss -= crate::math::ln(prob[(i * channels + class) * inner + j].max(f32::MIN_POSITIVE));
                valid += 1;
            }
        }
        tops[0].data_mut()[0] = loss / normalizer(self.normalization, outer, inner, valid);
        if let Some(top) = tops.get_mut(1) {
            top.data_mut().copy_from_slice(prob);
        }
        Ok(())
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 1
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if ctx.propagate_down.get(1).copied().unwrap_or(false) {
            return Err(LayerError::Unsupported(
                "SoftmaxWithLoss cannot backpropagate to its label input".into(),
            ));
        }
        if !ctx.propagate_down[0] {
            return Ok(());
        }
        let (outer, channels, inner) = self.dims;
        let labels = ctx.bottoms[1].data();
        let diff = ctx.bottom_diffs[0].data_mut();
        diff.copy_from_slice(self.prob.data());
        let mut valid = 0usize;
        for i in 0..outer {
            for j in 0..inner {
                let label = labels[i * inner + j];
                if self.ignore_label.is_some_and(|ignore| label as i32 == ignore) {
                    for c in 0..channels {
                        diff[(i * channels + c) * inner + j] = 0.0;
                    }
                    continue;
                }
                let class = class_of(label, channels, i * inner + j)?;
                diff[(i * channels + class) * inner + j] -= 1.0;
                valid += 1;
            }
        }
        let scale = ctx.top_diffs[0].data()[0] / normalizer(self.normalization, outer, inner, valid);
        diff.iter_mut().for_each(|v| *v *= scale);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::{assert_close, param, run};
    use caffe_proto::{LossParameter, SoftmaxParameter};

    #[test]
    fn softmax_along_channels_and_along_a_later_axis() {
        // exp(0), exp(ln 3) -> 1/4, 3/4 for any shift of the inputs.
        let input = Tensor::new(&[1, 2], vec![100.0, 100.0 + 3f32.ln()]);
        let out = run(&mut Softmax::new(&param("Softmax", |_| {})), &[input]).unwrap();
        assert_close(out[0].data(), &[0.25, 0.75], 1e-6);
        // axis 2 of a 1x2x2 blob: each row of two normalizes on its own.
        let mut layer = Softmax::new(&param("Softmax", |p| {
            p.softmax_param = Some(SoftmaxParameter {
                axis: Some(-1),
                ..Default::default()
            })
        }));
        let out = run(&mut layer, &[Tensor::new(&[1, 2, 2], vec![0.0, 0.0, 0.0, 2f32.ln()])]).unwrap();
        assert_close(out[0].data(), &[0.5, 0.5, 1.0 / 3.0, 2.0 / 3.0], 1e-6);
    }

    fn loss_layer(edit: impl FnOnce(&mut LossParameter)) -> SoftmaxWithLoss {
        SoftmaxWithLoss::new(
            &param("SoftmaxWithLoss", |p| {
                let mut lp = LossParameter::default();
                edit(&mut lp);
                p.loss_param = Some(lp);
            }),
            2,
        )
    }

    #[test]
    fn softmax_loss_by_hand_with_ignore_label_and_normalizations() {
        // Two samples over 2 classes with probabilities (1/4, 3/4): labels 1 and 0 cost -ln(3/4) and -ln(1/4).
        let scores = Tensor::new(&[3, 2], vec![0.0, 3f32.ln(), 0.0, 3f32.ln(), 5.0, 1.0]);
        let labels = Tensor::new(&[3], vec![1.0, 0.0, 7.0]);
        let l1 = -(0.75f32).ln();
        let l0 = -(0.25f32).ln();
        let cases = [
            (NormalizationMode::Valid, (l1 + l0) / 2.0),
            (NormalizationMode::BatchSize, (l1 + l0) / 3.0),
            (NormalizationMode::Full, (l1 + l0) / 3.0),
            (NormalizationMode::None, l1 + l0),
        ];
        for (mode, expected) in cases {
            let mut layer = loss_layer(|p| {
                p.ignore_label = Some(7);
                p.normalization = Some(mode as i32);
            });
            let out = run(&mut layer, &[scores.clone(), labels.clone()]).unwrap();
            assert_eq!(out[0].shape(), &[] as &[usize]);
            assert_close(out[0].data(), &[expected], 1e-6);
            assert_close(&out[1].data()[..4], &[0.25, 0.75, 0.25, 0.75], 1e-6);
        }
        // The legacy flag normalize: false means BATCH_SIZE.
        let mut legacy = loss_layer(|p| {
            p.ignore_label = Some(7);
            p.normalize = Some(false);
        });
        let out = run(&mut legacy, &[scores.clone(), labels.clone()]).unwrap();
        assert_close(out[0].data(), &[(l1 + l0) / 3.0], 1e-6);
        // Without ignore_label the label 7 is out of range: an error, not a panic.
        let mut strict = loss_layer(|_| {});
        let err = run(&mut strict, &[scores, labels]).unwrap_err();
        assert!(err.to_string().contains("label 7"), "{err}");
    }

    #[test]
    fn spatial_softmax_loss_counts_every_position() {
        // N=1, C=2, 2 positions; the label blob 1x1x2 must hold N*H*W = 2 labels.
        let scores = Tensor::new(&[1, 2, 2], vec![0.0, 0.0, 3f32.ln(), 0.0]);
        let labels = Tensor::new(&[1, 1, 2], vec![1.0, 0.0]);
        let mut layer = loss_layer(|_| {});
        let out = run(&mut layer, &[scores, labels]).unwrap();
        assert_close(out[0].data(), &[(-(0.75f32).ln() - (0.5f32).ln()) / 2.0], 1e-6);
        assert!(layer.reshape(&[&[1, 2, 2], &[3]]).is_err());
    }
}
