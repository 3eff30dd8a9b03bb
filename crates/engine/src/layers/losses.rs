//! More of Caffe's loss layers: ContrastiveLoss, HingeLoss, InfogainLoss, MultinomialLogisticLoss and
//! SigmoidCrossEntropyLoss, each as Caffe's CPU code computes it. Their top is a 0-axis scalar; the label bottom
//! takes no gradient.

use caffe_proto::hinge_loss_parameter::Norm;
use caffe_proto::loss_parameter::NormalizationMode;
use caffe_proto::LayerParameter;

use super::softmax::{class_of, normalizer};
use super::{count, expect_bottoms, Backward, Layer};
use crate::error::{LayerError, LayerResult};
use crate::{math, Tensor};

/// Caffe's `kLOG_THRESHOLD`: probabilities are clamped to it before `log` and division.
const LOG_THRESHOLD: f32 = 1e-20;

/// Caffe's `LossLayer::Reshape` check: data and labels agree on axis 0.
fn same_num(bottoms: &[&[usize]]) -> LayerResult<usize> {
    let (a, b) = (bottoms[0], bottoms[1]);
    if a.is_empty() || b.is_empty() || a[0] != b[0] {
        return Err(LayerError::Shape(format!(
            "the data {a:?} and the labels {b:?} must have the same first dimension"
        )));
    }
    Ok(a[0])
}

/// Checks that `shape` has one value per item (Caffe's `channels() == height() == width() == 1`).
fn one_per_item(shape: &[usize], what: &str) -> LayerResult<()> {
    if shape.len() > 4 || shape.iter().skip(1).any(|&d| d != 1) {
        return Err(LayerError::Shape(format!(
            "the {what} must hold one value per item (N, or N x 1 x 1 x 1), got {shape:?}"
        )));
    }
    Ok(())
}

/// Refuses a gradient into a label-like bottom that `force_backward` or `propagate_down` asked for.
fn no_label_gradient(ctx: &Backward<'_>, from: usize, layer: &str) -> LayerResult<()> {
    if ctx.propagate_down.iter().skip(from).any(|&p| p) {
        return Err(LayerError::Unsupported(format!(
            "{layer} cannot backpropagate to its label inputs"
        )));
    }
    Ok(())
}

/// `ContrastiveLoss`: over pairs `(a_i, b_i)` with similarity `sim_i`, the mean over `2 N` of `d_i^2` for similar
/// pairs and `max(margin - d_i, 0)^2` for dissimilar ones (`max(margin - d_i^2, 0)` with `legacy_version`).
pub(crate) struct ContrastiveLoss {
    margin: f32,
    legacy: bool,
    /// `a - b` and the squared distances of the last forward.
    diff: Vec<f32>,
    dist_sq: Vec<f32>,
    dims: (usize, usize),
}

impl ContrastiveLoss {
    pub(crate) fn new(param: &LayerParameter) -> Self {
        let p = param.contrastive_loss_param.unwrap_or_default();
        ContrastiveLoss {
            margin: p.margin(),
            legacy: p.legacy_version(),
            diff: Vec::new(),
            dist_sq: Vec::new(),
            dims: (0, 0),
        }
    }
}

impl Layer for ContrastiveLoss {
    fn type_name(&self) -> &'static str {
        "ContrastiveLoss"
    }
    fn is_loss(&self) -> bool {
        true
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 3)?;
        let (a, b, sim) = (bottoms[0], bottoms[1], bottoms[2]);
        // Caffe: N x C x 1 x 1 features, one similarity per pair.
        let features = |s: &[usize]| s.len() >= 2 && s.len() <= 4 && s.iter().skip(2).all(|&d| d == 1);
        if !features(a) || a != b {
            return Err(LayerError::Shape(format!(
                "the two feature blobs must both be N x C (x 1 x 1), got {a:?} and {b:?}"
            )));
        }
        one_per_item(sim, "similarity blob")?;
        same_num(&[a, sim])?;
        self.dims = (a[0], a[1]);
        Ok(vec![vec![]])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let (num, channels) = self.dims;
        let (a, b, sim) = (bottoms[0].data(), bottoms[1].data(), bottoms[2].data());
        self.diff.clear();
        self.diff.extend(a.iter().zip(b).map(|(x, y)| x - y));
        self.dist_sq.clear();
        let mut loss = 0.0f32;
        for (i, &similar) in sim.iter().enumerate().take(num) {
            let d = &self.diff[i * channels..(i + 1) * channels];
            let dist_sq: f32 = d.iter().map(|v| v * v).sum();
            self.dist_sq.push(dist_sq);
            // Caffe reads the similarity with static_cast<int>.
            if similar as i32 != 0 {
                loss += dist_sq;
            } else if self.legacy {
                loss += (self.margin - dist_sq).max(0.0);
            } else {
                let dist = (self.margin - dist_sq.sqrt()).max(0.0);
                loss += dist * dist;
            }
        }
        tops[0].data_mut()[0] = loss / num.max(1) as f32 / 2.0;
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        no_label_gradient(&ctx, 2, "ContrastiveLoss")?;
        let (num, channels) = self.dims;
        let sim = ctx.bottoms[2].data();
        let top_diff = ctx.top_diffs[0].data()[0];
        for (i, sign) in [(0usize, 1.0f32), (1, -1.0)] {
            if !ctx.propagate_down[i] {
                continue;
            }
            let alpha = sign * top_diff / num as f32;
            let out = ctx.bottom_diffs[i].data_mut();
            for j in 0..num {
                let d = &self.diff[j * channels..(j + 1) * channels];
                let out = &mut out[j * channels..(j + 1) * channels];
                if sim[j] as i32 != 0 {
                    out.iter_mut().zip(d).for_each(|(o, &v)| *o = alpha * v);
                    continue;
                }
                let (mdist, beta) = if self.legacy {
                    (self.margin - self.dist_sq[j], -alpha)
                } else {
                    let dist = self.dist_sq[j].sqrt();
                    let mdist = self.margin - dist;
                    (mdist, -alpha * mdist / (dist + 1e-4))
                };
                if mdist > 0.0 {
                    out.iter_mut().zip(d).for_each(|(o, &v)| *o = beta * v);
                } else {
                    out.fill(0.0);
                }
            }
        }
        Ok(())
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 2
    }
}

/// `HingeLoss`: one-vs-all hinge over `dim = count / N` scores per item, `sum max(0, 1 - t_ij x_ij)` with
/// `t = +1` for the label and -1 otherwise, summed (L1) or squared and summed (L2), over N.
pub(crate) struct HingeLoss {
    norm: Norm,
    /// `max(0, 1 - t x)` of the last forward.
    margins: Vec<f32>,
    dims: (usize, usize),
}

impl HingeLoss {
    pub(crate) fn new(param: &LayerParameter) -> Self {
        HingeLoss {
            norm: param.hinge_loss_param.unwrap_or_default().norm(),
            margins: Vec::new(),
            dims: (0, 0),
        }
    }
}

impl Layer for HingeLoss {
    fn type_name(&self) -> &'static str {
        "HingeLoss"
    }
    fn is_loss(&self) -> bool {
        true
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 2)?;
        let num = same_num(bottoms)?;
        one_per_item(bottoms[1], "label blob")?;
        self.dims = (num, count(bottoms[0], 1, bottoms[0].len()));
        Ok(vec![vec![]])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let (num, dim) = self.dims;
        let labels = bottoms[1].data();
        self.margins.clear();
        self.margins.extend_from_slice(bottoms[0].data());
        for (i, &label) in labels.iter().enumerate().take(num) {
            let label = class_of(label, dim, i)?;
            self.margins[i * dim + label] *= -1.0;
        }
        self.margins.iter_mut().for_each(|v| *v = (1.0 + *v).max(0.0));
        let loss: f32 = match self.norm {
            Norm::L1 => self.margins.iter().map(|v| v.abs()).sum(),
            Norm::L2 => self.margins.iter().map(|v| v * v).sum(),
        };
        tops[0].data_mut()[0] = loss / num.max(1) as f32;
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        no_label_gradient(&ctx, 1, "HingeLoss")?;
        if !ctx.propagate_down[0] {
            return Ok(());
        }
        let (num, dim) = self.dims;
        let labels = ctx.bottoms[1].data();
        let dx = ctx.bottom_diffs[0].data_mut();
        dx.copy_from_slice(&self.margins);
        for i in 0..num {
            let label = class_of(labels[i], dim, i)?;
            dx[i * dim + label] *= -1.0;
        }
        let loss_weight = ctx.top_diffs[0].data()[0];
        match self.norm {
            Norm::L1 => {
                let scale = loss_weight / num as f32;
                dx.iter_mut()
                    .for_each(|v| *v = scale * ((0.0 < *v) as i32 - (*v < 0.0) as i32) as f32);
            }
            Norm::L2 => {
                let scale = loss_weight * 2.0 / num as f32;
                dx.iter_mut().for_each(|v| *v *= scale);
            }
        }
        Ok(())
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 1
    }
}

/// `MultinomialLogisticLoss`: `-mean_i log(max(p_i[label_i], 1e-20))` over probabilities `p` of `dim = count / N`
/// classes per item.
pub(crate) struct MultinomialLogisticLoss {
    dims: (usize, usize),
}

impl MultinomialLogisticLoss {
    pub(crate) fn new() -> Self {
        MultinomialLogisticLoss { dims: (0, 0) }
    }
}

impl Layer for MultinomialLogisticLoss {
    fn type_name(&self) -> &'static str {
        "MultinomialLogisticLoss"
    }
    fn is_loss(&self) -> bool {
        true
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 2)?;
        let num = same_num(bottoms)?;
        one_per_item(bottoms[1], "label blob")?;
        self.dims = (num, count(bottoms[0], 1, bottoms[0].len()));
        Ok(vec![vec![]])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let (num, dim) = self.dims;
        let (p, labels) = (bottoms[0].data(), bottoms[1].data());
        let mut loss = 0.0f32;
        for i in 0..num {
            let label = class_of(labels[i], dim, i)?;
            loss -= math::ln(p[i * dim + label].max(LOG_THRESHOLD));
        }
        tops[0].data_mut()[0] = loss / num.max(1) as f32;
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        no_label_gradient(&ctx, 1, "MultinomialLogisticLoss")?;
        if !ctx.propagate_down[0] {
            return Ok(());
        }
        let (num, dim) = self.dims;
        let (p, labels) = (ctx.bottoms[0].data(), ctx.bottoms[1].data());
        let scale = -ctx.top_diffs[0].data()[0] / num as f32;
        let dx = ctx.bottom_diffs[0].data_mut();
        dx.fill(0.0);
        for i in 0..num {
            let label = class_of(labels[i], dim, i)?;
            dx[i * dim + label] = scale / p[i * dim + label].max(LOG_THRESHOLD);
        }
        Ok(())
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 1
    }
}

/// `InfogainLoss`: `-mean_i sum_j H[label_i, j] log(max(p_ij, 1e-20))` with the `dim x dim` infogain matrix `H`
/// from a third bottom or from the BlobProto file `infogain_loss_param.source`, read when the layer is built. Like
/// Caffe's `ReadProtoFromBinaryFile`, a relative `source` is resolved against the working directory.
pub(crate) struct InfogainLoss {
    /// H from `source` (`None` when it comes as bottom 2).
    stored: Option<Vec<f32>>,
    dims: (usize, usize),
}

impl InfogainLoss {
    pub(crate) fn new(param: &LayerParameter, n_bottoms: usize) -> LayerResult<Self> {
        let p = param.infogain_loss_param.clone().unwrap_or_default();
        if p.axis() != 1 {
            return Err(LayerError::Param(format!(
                "infogain_loss_param axis {} is not supported (probabilities run along axis 1)",
                p.axis()
            )));
        }
        let stored = if n_bottoms >= 3 {
            None
        } else {
            let source = p.source.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| {
                LayerError::Param("the infogain matrix needs a third bottom or infogain_loss_param.source".into())
            })?;
            let bytes =
                std::fs::read(source).map_err(|e| LayerError::Param(format!("infogain matrix '{source}': {e}")))?;
            let proto = <caffe_proto::BlobProto as prost::Message>::decode(bytes.as_slice())
                .map_err(|e| LayerError::Param(format!("infogain matrix '{source}' is not a BlobProto: {e}")))?;
            Some(crate::WeightBlob::from_proto(&proto).data)
        };
        Ok(InfogainLoss { stored, dims: (0, 0) })
    }
}

impl Layer for InfogainLoss {
    fn type_name(&self) -> &'static str {
        "InfogainLoss"
    }
    fn is_loss(&self) -> bool {
        true
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        let num = same_num(bottoms)?;
        one_per_item(bottoms[1], "label blob")?;
        let dim = count(bottoms[0], 1, bottoms[0].len());
        let h_count = match (&self.stored, bottoms.get(2)) {
            (Some(h), _) => h.len(),
            (None, Some(h)) => h.iter().product(),
            (None, None) => return Err(LayerError::Arity("the infogain matrix bottom is missing".into())),
        };
        if h_count != dim * dim {
            return Err(LayerError::Shape(format!(
                "the infogain matrix must be {dim} x {dim} for {dim} classes, it holds {h_count} values"
            )));
        }
        self.dims = (num, dim);
        Ok(vec![vec![]])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let (num, dim) = self.dims;
        let (p, labels) = (bottoms[0].data(), bottoms[1].data());
        let h = self.stored.as_deref().unwrap_or_else(|| bottoms[2].data());
        let mut loss = 0.0f32;
        for i in 0..num {
            let label = class_of(labels[i], dim, i)?;
            for j in 0..dim {
                let prob = p[i * dim + j].max(LOG_THRESHOLD);
                loss -= h[label * dim + j] * math::ln(prob);
            }
        }
        tops[0].data_mut()[0] = loss / num.max(1) as f32;
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        no_label_gradient(&ctx, 1, "InfogainLoss")?;
        if !ctx.propagate_down[0] {
            return Ok(());
        }
        let (num, dim) = self.dims;
        let (p, labels) = (ctx.bottoms[0].data(), ctx.bottoms[1].data());
        let h = self.stored.as_deref().unwrap_or_else(|| ctx.bottoms[2].data());
        let scale = -ctx.top_diffs[0].data()[0] / num as f32;
        let dx = ctx.bottom_diffs[0].data_mut();
        for i in 0..num {
            let label = class_of(labels[i], dim, i)?;
            for j in 0..dim {
                let prob = p[i * dim + j].max(LOG_THRESHOLD);
                dx[i * dim + j] = scale * h[label * dim + j] / prob;
            }
        }
        Ok(())
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom == 0
    }
}

/// `SigmoidCrossEntropyLoss`: cross-entropy of `sigmoid(x)` against targets in [0, 1], written stably; targets equal
/// to `ignore_label` are skipped; normalized by `loss_param.normalization` (default BATCH_SIZE for this layer).
pub(crate) struct SigmoidCrossEntropyLoss {
    ignore_label: Option<i32>,
    normalization: NormalizationMode,
    /// `sigmoid(x)` of the last forward, and the normalizer used.
    sigmoid: Vec<f32>,
    normalizer: f32,
    dims: (usize, usize),
}

impl SigmoidCrossEntropyLoss {
    pub(crate) fn new(param: &LayerParameter) -> Self {
        let p = param.loss_param.unwrap_or_default();
        // Unlike SoftmaxWithLoss, this layer defaults to BATCH_SIZE when neither field is given.
        let normalization = match (p.normalization, p.normalize) {
            (Some(_), _) => p.normalization(),
            (None, Some(true)) => NormalizationMode::Valid,
            (None, _) => NormalizationMode::BatchSize,
        };
        SigmoidCrossEntropyLoss {
            ignore_label: p.ignore_label,
            normalization,
            sigmoid: Vec::new(),
            normalizer: 1.0,
            dims: (0, 0),
        }
    }

    fn ignored(&self, target: f32) -> bool {
        self.ignore_label.is_some_and(|l| target as i32 == l)
    }
}

impl Layer for SigmoidCrossEntropyLoss {
    fn type_name(&self) -> &'static str {
        "SigmoidCrossEntropyLoss"
    }
    fn is_loss(&self) -> bool {
        true
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 2)?;
        let num = same_num(bottoms)?;
        let (x, t): (usize, usize) = (bottoms[0].iter().product(), bottoms[1].iter().product());
        if x != t {
            return Err(LayerError::Shape(format!(
                "the inputs {:?} and the targets {:?} must have the same count",
                bottoms[0], bottoms[1]
            )));
        }
        self.dims = (num, x.checked_div(num).unwrap_or(0));
        Ok(vec![vec![]])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let (x, t) = (bottoms[0].data(), bottoms[1].data());
        // Caffe's SigmoidLayer: 0.5 tanh(0.5 x) + 0.5.
        self.sigmoid.clear();
        self.sigmoid.extend(x.iter().map(|&v| 0.5 * math::tanh(0.5 * v) + 0.5));
        let mut loss = 0.0f32;
        let mut valid = 0usize;
        for (&x, &t) in x.iter().zip(t) {
            if self.ignored(t) {
                continue;
            }
            let pos = (x >= 0.0) as i32 as f32;
            loss -= x * (t - pos) - math::ln(1.0 + math::exp(x - 2.0 * x * pos));
            valid += 1;
        }
        let (outer, inner) = self.dims;
        self.normalizer = normalizer(self.normalization, outer, inner, valid);
        tops[0].data_mut()[0] = loss / self.normalizer;
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        no_label_gradient(&ctx, 1, "SigmoidCrossEntropyLoss")?;
        if !ctx.propagate_down[0] {
            return Ok(());
        }
        let t = ctx.bottoms[1].data();
        let scale = ctx.top_diffs[0].data()[0] / self.normalizer;
        let dx = ctx.bottom_diffs[0].data_mut();
        for ((d, &s), &t) in dx.iter_mut().zip(&self.sigmoid).zip(t) {
            let g = if self.ignored(t) { 0.0 } else { s - t };
            *d = g * scale;
        }
        Ok(())
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{check, uniform, Check};
    use crate::layers::testing::param;
    use caffe_proto::{ContrastiveLossParameter, HingeLossParameter, LossParameter};

    fn labels(values: &[f32]) -> Tensor {
        Tensor::new(&[values.len()], values.to_vec())
    }

    #[test]
    fn contrastive_gradients_both_versions() {
        for legacy in [false, true] {
            let p = param("ContrastiveLoss", |l| {
                l.contrastive_loss_param = Some(ContrastiveLossParameter {
                    margin: Some(1.5),
                    legacy_version: Some(legacy),
                })
            });
            let mut c = Check::new(
                p,
                vec![
                    uniform(&[4, 3], -0.5, 0.5, 1),
                    uniform(&[4, 3], -0.5, 0.5, 2),
                    labels(&[1.0, 0.0, 0.0, 1.0]),
                ],
            );
            c.check_bottoms = vec![true, true, false];
            check(&c);
        }
    }

    #[test]
    fn hinge_gradients_l1_and_l2() {
        for norm in [Norm::L1, Norm::L2] {
            let p = param("HingeLoss", |l| {
                l.hinge_loss_param = Some(HingeLossParameter {
                    norm: Some(norm as i32),
                })
            });
            // Scores 0.3 away from the hinge's kinks at +-1.
            let x = Tensor::new(&[2, 3], vec![0.2, -0.5, 2.0, -2.2, 0.4, 0.0]);
            let mut c = Check::new(p, vec![x, labels(&[0.0, 2.0])]);
            c.check_bottoms = vec![true, false];
            check(&c);
        }
    }

    #[test]
    fn multinomial_and_sigmoid_cross_entropy_gradients() {
        let mut c = Check::new(
            param("MultinomialLogisticLoss", |_| {}),
            vec![uniform(&[3, 4], 0.2, 1.0, 3), labels(&[1.0, 3.0, 0.0])],
        );
        c.check_bottoms = vec![true, false];
        c.step = 1e-3;
        check(&c);
        let p = param("SigmoidCrossEntropyLoss", |l| {
            l.loss_param = Some(LossParameter {
                ignore_label: Some(-1),
                normalization: Some(NormalizationMode::Valid as i32),
                ..Default::default()
            })
        });
        let t = Tensor::new(&[2, 3], vec![1.0, 0.0, -1.0, 0.3, 1.0, 0.0]);
        let mut c = Check::new(p, vec![uniform(&[2, 3], -2.0, 2.0, 4), t]);
        c.check_bottoms = vec![true, false];
        check(&c);
    }

    #[test]
    fn infogain_from_a_bottom() {
        let h = Tensor::new(&[3, 3], vec![1.0, 0.5, 0.0, 0.2, 1.0, 0.1, 0.0, 0.3, 2.0]);
        let mut c = Check::new(
            param("InfogainLoss", |_| {}),
            vec![uniform(&[2, 3], 0.2, 1.0, 5), labels(&[2.0, 0.0]), h],
        );
        c.check_bottoms = vec![true, false, false];
        c.step = 1e-3;
        check(&c);
        let missing = param("InfogainLoss", |_| {});
        assert!(InfogainLoss::new(&missing, 2).is_err());
    }
}
