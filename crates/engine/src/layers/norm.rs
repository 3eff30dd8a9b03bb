//! BatchNorm, Scale and Bias.

use caffe_proto::{FillerParameter, LayerParameter, Phase};
use rayon::prelude::*;

use super::{canonical_axis, ensure_param_shape, expect_bottoms, Backward, Layer};
use crate::error::{LayerError, LayerResult};
use crate::filler::fill;
use crate::Tensor;

/// `BatchNorm`: `(x - mean_c) / sqrt(var_c + eps)` per channel (axis 1). With global statistics (TEST's default)
/// the mean and variance are the stored sums divided by the stored scale factor (blob 2; 0 means 0); otherwise they
/// are the batch's own, and the stored moving averages are updated as Caffe does.
pub(crate) struct BatchNorm {
    use_global_stats: bool,
    moving_average_fraction: f32,
    eps: f32,
    params: Vec<Tensor>,
    initialized: bool,
    /// (num, channels, spatial) from the last reshape.
    dims: (usize, usize, usize),
    /// Per-channel mean and variance used by the last forward (backward needs the variance).
    mean: Vec<f32>,
    variance: Vec<f32>,
    /// The normalized output of the last forward with batch statistics (backward needs it; a later in-place layer
    /// may overwrite the top, as Caffe's `x_norm_` guards against).
    x_norm: Vec<f32>,
}

impl BatchNorm {
    pub(crate) fn new(param: &LayerParameter, phase: Phase) -> LayerResult<Self> {
        let p = param.batch_norm_param.unwrap_or_default();
        let use_global_stats = p.use_global_stats.unwrap_or(phase == Phase::Test);
        if p.eps() < 0.0 {
            return Err(LayerError::Param(format!("eps must not be negative, got {}", p.eps())));
        }
        Ok(BatchNorm {
            use_global_stats,
            moving_average_fraction: p.moving_average_fraction(),
            eps: p.eps(),
            params: vec![Tensor::default(), Tensor::default(), Tensor::default()],
            initialized: false,
            dims: (0, 0, 0),
            mean: Vec::new(),
            variance: Vec::new(),
            x_norm: Vec::new(),
        })
    }

    fn statistics(&mut self, input: &[f32]) {
        let (num, channels, spatial) = self.dims;
        if self.use_global_stats {
            let stored = self.params[2].data()[0];
            let factor = if stored == 0.0 { 0.0 } else { 1.0 / stored };
            self.mean = self.params[0].data().iter().map(|m| m * factor).collect();
            self.variance = self.params[1].data().iter().map(|v| v * factor).collect();
            return;
        }
        let per_channel = (num * spatial) as f32;
        let mut mean = vec![0.0f32; channels];
        let mut variance = vec![0.0f32; channels];
        for c in 0..channels {
            let values = (0..num).flat_map(|n| &input[(n * channels + c) * spatial..(n * channels + c + 1) * spatial]);
            mean[c] = values.clone().sum::<f32>() / per_channel;
            variance[c] = values.map(|x| (x - mean[c]) * (x - mean[c])).sum::<f32>() / per_channel;
        }
        // Moving averages: factor = factor * maf + 1, mean = batch mean + maf * mean, variance likewise with the
        // unbiased (m / (m - 1)) batch variance.
        let maf = self.moving_average_fraction;
        let m = (input.len() / channels.max(1)) as f32;
        let correction = if m > 1.0 { m / (m - 1.0) } else { 1.0 };
        self.params[2].data_mut()[0] = self.params[2].data()[0] * maf + 1.0;
        for (stored, &batch) in self.params[0].data_mut().iter_mut().zip(&mean) {
            *stored = batch + maf * *stored;
        }
        for (stored, &batch) in self.params[1].data_mut().iter_mut().zip(&variance) {
            *stored = correction * batch + maf * *stored;
        }
        self.mean = mean;
        self.variance = variance;
    }

    fn normalize(&self, data: &mut [f32], input: Option<&[f32]>) {
        let (_, channels, spatial) = self.dims;
        if spatial == 0 || channels == 0 {
            return;
        }
        let std_dev: Vec<f32> = self.variance.iter().map(|v| (v + self.eps).sqrt()).collect();
        let image = channels * spatial;
        let run = |out: &mut [f32], inp: Option<&[f32]>| {
            for (c, out) in out.chunks_mut(spatial).enumerate() {
                let (mean, std) = (self.mean[c], std_dev[c]);
                match inp {
                    Some(inp) => out
                        .iter_mut()
                        .zip(&inp[c * spatial..(c + 1) * spatial])
                        .for_each(|(o, x)| *o = (x - mean) / std),
                    None => out.iter_mut().for_each(|o| *o = (*o - mean) / std),
                }
            }
        };
        match input {
            Some(input) => data
                .par_chunks_mut(image)
                .zip(input.par_chunks(image))
                .for_each(|(o, i)| run(o, Some(i))),
            None => data.par_chunks_mut(image).for_each(|o| run(o, None)),
        }
    }
}

impl Layer for BatchNorm {
    fn type_name(&self) -> &'static str {
        "BatchNorm"
    }
    fn params(&self) -> &[Tensor] {
        &self.params
    }
    fn params_mut(&mut self) -> &mut [Tensor] {
        &mut self.params
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1)?;
        let b = bottoms[0];
        if b.is_empty() {
            return Err(LayerError::Shape("BatchNorm needs at least one axis".into()));
        }
        let channels = if b.len() == 1 { 1 } else { b[1] };
        let initialized = self.initialized;
        ensure_param_shape(&mut self.params[0], &[channels], initialized, "BatchNorm mean")?;
        ensure_param_shape(&mut self.params[1], &[channels], initialized, "BatchNorm variance")?;
        ensure_param_shape(&mut self.params[2], &[1], initialized, "BatchNorm scale factor")?;
        self.initialized = true;
        let num = b[0];
        let spatial = b.iter().product::<usize>().checked_div(num * channels).unwrap_or(0);
        self.dims = (num, channels, spatial);
        Ok(vec![b.to_vec()])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        self.statistics(bottoms[0].data());
        self.normalize(tops[0].data_mut(), Some(bottoms[0].data()));
        self.keep_x_norm(tops[0].data());
        Ok(())
    }
    fn forward_in_place(&mut self, data: &mut Tensor, _: &[&Tensor]) -> LayerResult<bool> {
        self.statistics(data.data());
        self.normalize(data.data_mut(), None);
        self.keep_x_norm(data.data());
        Ok(true)
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if !ctx.propagate_down[0] {
            return Ok(());
        }
        let (num, channels, spatial) = self.dims;
        let top_diff = ctx.top_diffs[0].data();
        let diff = ctx.bottom_diffs[0].data_mut();
        if channels == 0 || spatial == 0 || num == 0 {
            return Ok(());
        }
        let std_dev: Vec<f32> = self.variance.iter().map(|v| (v + self.eps).sqrt()).collect();
        let image = channels * spatial;
        if self.use_global_stats {
            diff.par_chunks_mut(image)
                .zip(top_diff.par_chunks(image))
                .for_each(|(d, dy)| {
                    for (c, (d, dy)) in d.chunks_mut(spatial).zip(dy.chunks(spatial)).enumerate() {
                        d.iter_mut().zip(dy).for_each(|(d, g)| *d = g / std_dev[c]);
                    }
                });
            return Ok(());
        }
        // Caffe: dx = (dy - mean(dy) - mean(dy * y) * y) / sqrt(var + eps), means over all but the channel axis.
        let y = &self.x_norm;
        let mut sum_dy = vec![0.0f32; channels];
        let mut sum_dy_y = vec![0.0f32; channels];
        for (img_y, img_dy) in y.chunks(image).zip(top_diff.chunks(image)) {
            for c in 0..channels {
                let (ys, dys) = (
                    &img_y[c * spatial..(c + 1) * spatial],
                    &img_dy[c * spatial..(c + 1) * spatial],
                );
                sum_dy[c] += dys.iter().sum::<f32>();
                sum_dy_y[c] += ys.iter().zip(dys).map(|(a, b)| a * b).sum::<f32>();
            }
        }
        let inv_m = 1.0 / (num * spatial) as f32;
        diff.par_chunks_mut(image)
            .zip(top_diff.par_chunks(image))
            .zip(y.par_chunks(image))
            .for_each(|((d, dy), y)| {
                for c in 0..channels {
                    let range = c * spatial..(c + 1) * spatial;
                    let (a, b, s) = (sum_dy_y[c] * inv_m, sum_dy[c] * inv_m, std_dev[c]);
                    for ((d, &g), &y) in d[range.clone()].iter_mut().zip(&dy[range.clone()]).zip(&y[range]) {
                        *d = (g - b - a * y) / s;
                    }
                }
            });
        Ok(())
    }
}

impl BatchNorm {
    /// Keeps the normalized values for backward when they came from batch statistics.
    fn keep_x_norm(&mut self, top: &[f32]) {
        if !self.use_global_stats {
            self.x_norm.clear();
            self.x_norm.extend_from_slice(top);
        }
    }
}

/// Where a Scale or Bias operand lies in bottom 0: blocks of `dim x inner` values, operand value `d` applying to
/// the `d`-th run of `inner` values in each block.
#[derive(Clone, Copy, Debug, Default)]
struct Broadcast {
    dim: usize,
    inner: usize,
}

/// Caffe's Scale/Bias setup: the operand covers `num_axes` axes of bottom 0 from `axis` (-1: to the end).
fn operand_shape(bottom: &[usize], axis: i32, num_axes: i32) -> LayerResult<Vec<usize>> {
    if num_axes < -1 {
        return Err(LayerError::Param(format!(
            "num_axes must be non-negative, or -1 to extend to the end of bottom 0; got {num_axes}"
        )));
    }
    // A scalar operand (num_axes 0) works with any bottom, even 0-D, as in Caffe.
    if num_axes == 0 {
        return Ok(vec![]);
    }
    let axis = canonical_axis(axis, bottom.len(), "axis")?;
    let end = if num_axes == -1 {
        bottom.len()
    } else {
        axis + num_axes as usize
    };
    if end > bottom.len() {
        return Err(LayerError::Shape(format!(
            "bottom {bottom:?} has fewer than axis {axis} + num_axes {num_axes} axes"
        )));
    }
    Ok(bottom[axis..end].to_vec())
}

/// Checks that `operand` matches bottom 0 from `axis` and gives the broadcast dimensions.
fn broadcast(bottom: &[usize], operand: &[usize], axis: i32) -> LayerResult<Broadcast> {
    let axis = if operand.is_empty() {
        0
    } else {
        canonical_axis(axis, bottom.len(), "axis")?
    };
    if bottom.len() < axis + operand.len() || bottom[axis..axis + operand.len()] != *operand {
        return Err(LayerError::Shape(format!(
            "the operand shape {operand:?} must equal bottom 0's shape {bottom:?} from axis {axis}"
        )));
    }
    Ok(Broadcast {
        dim: operand.iter().product(),
        inner: bottom[axis + operand.len()..].iter().product(),
    })
}

/// `out = x * scale[d] + bias[d]` (or `x + bias[d]`) over the broadcast layout; `input: None` works in place.
fn apply(b: Broadcast, data: &mut [f32], input: Option<&[f32]>, scale: Option<&[f32]>, bias: Option<&[f32]>) {
    if b.inner == 0 || b.dim == 0 {
        return;
    }
    let block = b.dim * b.inner;
    let run = |out: &mut [f32], inp: Option<&[f32]>| {
        for (d, out) in out.chunks_mut(b.inner).enumerate() {
            let s = scale.map_or(1.0, |s| s[d]);
            let t = bias.map_or(0.0, |t| t[d]);
            let src = inp.map(|i| &i[d * b.inner..(d + 1) * b.inner]);
            match (src, scale.is_some(), bias.is_some()) {
                (Some(src), true, true) => out.iter_mut().zip(src).for_each(|(o, x)| *o = x * s + t),
                (Some(src), true, false) => out.iter_mut().zip(src).for_each(|(o, x)| *o = x * s),
                (Some(src), false, _) => out.iter_mut().zip(src).for_each(|(o, x)| *o = x + t),
                (None, true, true) => out.iter_mut().for_each(|o| *o = *o * s + t),
                (None, true, false) => out.iter_mut().for_each(|o| *o *= s),
                (None, false, _) => out.iter_mut().for_each(|o| *o += t),
            }
        }
    };
    match input {
        Some(input) => data
            .par_chunks_mut(block)
            .zip(input.par_chunks(block))
            .for_each(|(o, i)| run(o, Some(i))),
        None => data.par_chunks_mut(block).for_each(|o| run(o, None)),
    }
}

/// `sum over blocks and inner positions of f(i)` for each operand index `d` (`i` the flat index into bottom 0).
fn reduce(b: Broadcast, len: usize, f: impl Fn(usize) -> f32) -> Vec<f32> {
    let mut sums = vec![0.0f32; b.dim];
    if b.inner == 0 || b.dim == 0 {
        return sums;
    }
    let block = b.dim * b.inner;
    for start in (0..len).step_by(block) {
        for (d, sum) in sums.iter_mut().enumerate() {
            let base = start + d * b.inner;
            *sum += (base..base + b.inner).map(&f).sum::<f32>();
        }
    }
    sums
}

/// Writes `sums` into an operand diff: added for a parameter (Caffe accumulates), overwritten for a bottom.
fn store(diff: &mut [f32], sums: &[f32], accumulate: bool) {
    for (d, s) in diff.iter_mut().zip(sums) {
        if accumulate {
            *d += s;
        } else {
            *d = *s;
        }
    }
}

fn constant(value: f32) -> FillerParameter {
    FillerParameter {
        r#type: Some("constant".into()),
        value: Some(value),
        ..Default::default()
    }
}

/// `Scale`: `x * s (+ b)`, `s` a learned blob over `num_axes` axes from `axis`, or bottom 1 when given; with
/// `bias_term` a learned bias of `s`'s shape follows (blobs: `[scale, bias]`, or `[bias]` with two bottoms).
pub(crate) struct Scale {
    name: String,
    axis: i32,
    num_axes: i32,
    bias_term: bool,
    two_bottoms: bool,
    filler: FillerParameter,
    bias_filler: FillerParameter,
    params: Vec<Tensor>,
    initialized: bool,
    layout: Broadcast,
    /// TRAIN phase: an in-place forward keeps its input (Caffe's `temp_`) for the scale gradient.
    train: bool,
    /// Whether the last forward ran in place, and its input when kept.
    in_place: bool,
    saved_input: Vec<f32>,
}

impl Scale {
    pub(crate) fn new(param: &LayerParameter, n_bottoms: usize, phase: Phase) -> Self {
        let p = param.scale_param.clone().unwrap_or_default();
        let two_bottoms = n_bottoms > 1;
        let blobs = usize::from(!two_bottoms) + usize::from(p.bias_term());
        Scale {
            name: param.name().to_string(),
            axis: p.axis(),
            num_axes: p.num_axes(),
            bias_term: p.bias_term(),
            two_bottoms,
            // Caffe's default scale filler is the constant 1 (identity), the bias filler's the constant 0.
            filler: p.filler.clone().unwrap_or_else(|| constant(1.0)),
            bias_filler: p.bias_filler.clone().unwrap_or_else(|| constant(0.0)),
            params: vec![Tensor::default(); blobs],
            initialized: false,
            layout: Broadcast::default(),
            train: phase == Phase::Train,
            in_place: false,
            saved_input: Vec::new(),
        }
    }

    fn bias_index(&self) -> usize {
        usize::from(!self.two_bottoms)
    }
}

impl Layer for Scale {
    fn type_name(&self) -> &'static str {
        "Scale"
    }
    fn params(&self) -> &[Tensor] {
        &self.params
    }
    fn params_mut(&mut self) -> &mut [Tensor] {
        &mut self.params
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        let bottom = bottoms[0];
        let operand = if self.two_bottoms {
            bottoms[1].to_vec()
        } else {
            let shape = operand_shape(bottom, self.axis, self.num_axes)?;
            ensure_param_shape(&mut self.params[0], &shape, self.initialized, "scale")?;
            shape
        };
        self.layout = broadcast(bottom, &operand, self.axis)?;
        if self.bias_term {
            let i = self.bias_index();
            ensure_param_shape(&mut self.params[i], &operand, self.initialized, "bias")?;
        }
        if !self.initialized {
            if !self.two_bottoms {
                fill(&mut self.params[0], &self.filler, &format!("{}/0", self.name))?;
            }
            if self.bias_term {
                let i = self.bias_index();
                fill(&mut self.params[i], &self.bias_filler, &format!("{}/{i}", self.name))?;
            }
        }
        self.initialized = true;
        Ok(vec![bottom.to_vec()])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let scale = if self.two_bottoms {
            bottoms[1].data()
        } else {
            self.params[0].data()
        };
        let bias = self.bias_term.then(|| self.params[self.bias_index()].data());
        apply(
            self.layout,
            tops[0].data_mut(),
            Some(bottoms[0].data()),
            Some(scale),
            bias,
        );
        self.in_place = false;
        Ok(())
    }
    fn forward_in_place(&mut self, data: &mut Tensor, other_bottoms: &[&Tensor]) -> LayerResult<bool> {
        let scale = if self.two_bottoms {
            other_bottoms[0].data()
        } else {
            self.params[0].data()
        };
        self.in_place = true;
        self.saved_input.clear();
        if self.train {
            self.saved_input.extend_from_slice(data.data());
        }
        let bias = self.bias_term.then(|| self.params[self.bias_index()].data());
        apply(self.layout, data.data_mut(), None, Some(scale), bias);
        Ok(true)
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        let b = self.layout;
        let top_diff = ctx.top_diffs[0].data();
        let len = top_diff.len();
        let bias_index = self.bias_index();
        if self.bias_term && ctx.param_propagate_down[bias_index] {
            let sums = reduce(b, len, |i| top_diff[i]);
            store(ctx.param_diffs[bias_index].data_mut(), &sums, true);
        }
        let scale_grad = if self.two_bottoms {
            ctx.propagate_down[1]
        } else {
            ctx.param_propagate_down[0]
        };
        if scale_grad {
            let input: &[f32] = if !self.in_place {
                ctx.bottoms[0].data()
            } else if self.saved_input.len() == len {
                &self.saved_input
            } else {
                return Err(LayerError::Unsupported(
                    "the scale gradient of an in-place Scale needs its input, kept only in the TRAIN phase".into(),
                ));
            };
            let sums = reduce(b, len, |i| top_diff[i] * input[i]);
            if self.two_bottoms {
                store(ctx.bottom_diffs[1].data_mut(), &sums, false);
            } else {
                store(ctx.param_diffs[0].data_mut(), &sums, true);
            }
        }
        if ctx.propagate_down[0] {
            let scale = if self.two_bottoms {
                ctx.bottoms[1].data()
            } else {
                self.params[0].data()
            };
            let diff = ctx.bottom_diffs[0].data_mut();
            diff.copy_from_slice(top_diff);
            apply(b, diff, None, Some(scale), None);
        }
        Ok(())
    }
}

/// `Bias`: `x + b`, `b` a learned blob over `num_axes` axes from `axis`, or bottom 1 when given.
pub(crate) struct Bias {
    name: String,
    axis: i32,
    num_axes: i32,
    two_bottoms: bool,
    filler: FillerParameter,
    params: Vec<Tensor>,
    initialized: bool,
    layout: Broadcast,
}

impl Bias {
    pub(crate) fn new(param: &LayerParameter, n_bottoms: usize) -> Self {
        let p = param.bias_param.clone().unwrap_or_default();
        let two_bottoms = n_bottoms > 1;
        Bias {
            name: param.name().to_string(),
            axis: p.axis(),
            num_axes: p.num_axes(),
            two_bottoms,
            filler: p.filler.clone().unwrap_or_else(|| constant(0.0)),
            params: vec![Tensor::default(); usize::from(!two_bottoms)],
            initialized: false,
            layout: Broadcast::default(),
        }
    }
}

impl Layer for Bias {
    fn type_name(&self) -> &'static str {
        "Bias"
    }
    fn params(&self) -> &[Tensor] {
        &self.params
    }
    fn params_mut(&mut self) -> &mut [Tensor] {
        &mut self.params
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        let bottom = bottoms[0];
        let operand = if self.two_bottoms {
            bottoms[1].to_vec()
        } else {
            let shape = operand_shape(bottom, self.axis, self.num_axes)?;
            ensure_param_shape(&mut self.params[0], &shape, self.initialized, "bias")?;
            if !self.initialized {
                fill(&mut self.params[0], &self.filler, &format!("{}/0", self.name))?;
            }
            shape
        };
        self.layout = broadcast(bottom, &operand, self.axis)?;
        self.initialized = true;
        Ok(vec![bottom.to_vec()])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let bias = if self.two_bottoms {
            bottoms[1].data()
        } else {
            self.params[0].data()
        };
        apply(
            self.layout,
            tops[0].data_mut(),
            Some(bottoms[0].data()),
            None,
            Some(bias),
        );
        Ok(())
    }
    fn forward_in_place(&mut self, data: &mut Tensor, other_bottoms: &[&Tensor]) -> LayerResult<bool> {
        let bias = if self.two_bottoms {
            other_bottoms[0].data()
        } else {
            self.params[0].data()
        };
        apply(self.layout, data.data_mut(), None, None, Some(bias));
        Ok(true)
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        let top_diff = ctx.top_diffs[0].data();
        if ctx.propagate_down[0] {
            ctx.bottom_diffs[0].data_mut().copy_from_slice(top_diff);
        }
        let (wanted, accumulate) = if self.two_bottoms {
            (ctx.propagate_down[1], false)
        } else {
            (ctx.param_propagate_down[0], true)
        };
        if wanted {
            let sums = reduce(self.layout, top_diff.len(), |i| top_diff[i]);
            let diff = if self.two_bottoms {
                ctx.bottom_diffs[1].data_mut()
            } else {
                ctx.param_diffs[0].data_mut()
            };
            store(diff, &sums, accumulate);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::{assert_close, param, run};
    use caffe_proto::{BatchNormParameter, BiasParameter, ScaleParameter};

    #[test]
    fn batch_norm_global_stats_divide_by_the_scale_factor() {
        // Stored sums: mean [2, 4], variance [8, 0.5], factor 2 -> mean [1, 2], variance [4, 0.25]; eps 0 makes
        // the result exact: channel 0 (x - 1) / 2, channel 1 (x - 2) / 0.5.
        let p = param("BatchNorm", |l| {
            l.batch_norm_param = Some(BatchNormParameter {
                eps: Some(0.0),
                ..Default::default()
            })
        });
        let mut bn = BatchNorm::new(&p, Phase::Test).unwrap();
        bn.reshape(&[&[1, 2, 2]]).unwrap();
        bn.params_mut()[0].data_mut().copy_from_slice(&[2.0, 4.0]);
        bn.params_mut()[1].data_mut().copy_from_slice(&[8.0, 0.5]);
        bn.params_mut()[2].data_mut()[0] = 2.0;
        let out = run(&mut bn, &[Tensor::new(&[1, 2, 2], vec![1.0, 5.0, 2.0, 3.0])]).unwrap();
        assert_close(out[0].data(), &[0.0, 2.0, 0.0, 2.0], 0.0);
        // A zero scale factor means mean and variance 0: x / sqrt(eps).
        bn.params_mut()[2].data_mut()[0] = 0.0;
        bn.eps = 0.25;
        let mut data = Tensor::new(&[1, 2, 2], vec![1.0, -1.0, 0.5, 2.0]);
        bn.forward_in_place(&mut data, &[]).unwrap();
        assert_close(data.data(), &[2.0, -2.0, 1.0, 4.0], 0.0);
    }

    #[test]
    fn batch_norm_batch_stats_and_moving_averages() {
        // TRAIN: channel 0 holds 1, 3 (mean 2, variance 1), channel 1 holds 5, 5 (mean 5, variance 0); eps 0.
        let p = param("BatchNorm", |l| {
            l.batch_norm_param = Some(BatchNormParameter {
                eps: Some(0.0),
                moving_average_fraction: Some(0.5),
                ..Default::default()
            })
        });
        let mut bn = BatchNorm::new(&p, Phase::Train).unwrap();
        let input = Tensor::new(&[2, 2, 1], vec![1.0, 5.0, 3.0, 5.0]);
        let out = run(&mut bn, &[input]).unwrap();
        assert_close(&[out[0].data()[0], out[0].data()[2]], &[-1.0, 1.0], 0.0);
        assert!(out[0].data()[1].is_nan(), "0/0 as in Caffe with eps 0");
        // m = 2 values per channel: unbiased variance 2 and 0; stored = batch + 0.5 * 0; factor = 0 * 0.5 + 1.
        assert_eq!(bn.params()[0].data(), &[2.0, 5.0]);
        assert_eq!(bn.params()[1].data(), &[2.0, 0.0]);
        assert_eq!(bn.params()[2].data(), &[1.0]);
    }

    #[test]
    fn scale_with_bias_axis_and_num_axes() {
        // Bottom 2x2x2; scale over axis 1 (one per channel) with bias.
        let p = param("Scale", |l| {
            l.scale_param = Some(ScaleParameter {
                bias_term: Some(true),
                ..Default::default()
            })
        });
        let mut scale = Scale::new(&p, 1, Phase::Test);
        scale.reshape(&[&[2, 2, 2]]).unwrap();
        assert_eq!(scale.params()[0].data(), &[1.0, 1.0], "default filler is 1");
        assert_eq!(scale.params()[1].data(), &[0.0, 0.0], "default bias filler is 0");
        scale.params_mut()[0].data_mut().copy_from_slice(&[2.0, -1.0]);
        scale.params_mut()[1].data_mut().copy_from_slice(&[0.5, 1.0]);
        let x = Tensor::new(&[2, 2, 2], (0..8).map(|v| v as f32).collect());
        let out = run(&mut scale, &[x]).unwrap();
        assert_close(out[0].data(), &[0.5, 2.5, -1.0, -2.0, 8.5, 10.5, -5.0, -6.0], 0.0);
        // num_axes -1 from axis 1: one scale per (c, h); num_axes 0: a scalar.
        let p = param("Scale", |l| {
            l.scale_param = Some(ScaleParameter {
                num_axes: Some(-1),
                ..Default::default()
            })
        });
        let mut all = Scale::new(&p, 1, Phase::Test);
        all.reshape(&[&[3, 2, 2]]).unwrap();
        assert_eq!(all.params()[0].shape(), &[2, 2]);
        let p = param("Scale", |l| {
            l.scale_param = Some(ScaleParameter {
                num_axes: Some(0),
                ..Default::default()
            })
        });
        let mut scalar = Scale::new(&p, 1, Phase::Test);
        scalar.reshape(&[&[3, 2]]).unwrap();
        assert_eq!(scalar.params()[0].shape(), &[] as &[usize]);
        assert_eq!(scalar.params()[0].len(), 1);
    }

    #[test]
    fn scale_and_bias_from_a_second_bottom() {
        let mut scale = Scale::new(&param("Scale", |_| {}), 2, Phase::Test);
        let x = Tensor::new(&[1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let s = Tensor::new(&[2], vec![10.0, -1.0]);
        let out = run(&mut scale, &[x.clone(), s.clone()]).unwrap();
        assert_close(out[0].data(), &[10.0, 20.0, -3.0, -4.0], 0.0);
        assert!(scale.params().is_empty());
        let mut bias = Bias::new(&param("Bias", |_| {}), 2);
        let out = run(&mut bias, &[x.clone(), s.clone()]).unwrap();
        assert_close(out[0].data(), &[11.0, 12.0, 2.0, 3.0], 0.0);
        // The operand must match bottom 0 from the axis.
        let mut bad = Scale::new(&param("Scale", |_| {}), 2, Phase::Test);
        assert!(matches!(bad.reshape(&[&[1, 2, 2], &[3]]), Err(LayerError::Shape(_))));
        // A learned bias over axis 2.
        let mut learned = Bias::new(
            &param("Bias", |l| {
                l.bias_param = Some(BiasParameter {
                    axis: Some(2),
                    ..Default::default()
                })
            }),
            1,
        );
        learned.reshape(&[&[1, 2, 2]]).unwrap();
        learned.params_mut()[0].data_mut().copy_from_slice(&[100.0, 200.0]);
        let mut data = x;
        learned.forward_in_place(&mut data, &[]).unwrap();
        assert_close(data.data(), &[101.0, 202.0, 103.0, 204.0], 0.0);
    }
}
