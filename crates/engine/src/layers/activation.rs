//! Element-wise activations: ReLU, PReLU, Sigmoid, TanH, and Dropout.

use caffe_proto::{LayerParameter, Phase};
use rayon::prelude::*;

use super::{expect_bottoms, Backward, Layer};
use crate::error::{LayerError, LayerResult};
use crate::rng::SplitMix64;
use crate::Tensor;

/// Values per parallel task of the element-wise layers: below this a thread costs more than it saves.
const ELEMENTS_PER_TASK: usize = 1 << 15;

/// Applies `f` to every value, in parallel for large tensors.
fn map_in_place(data: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    data.par_chunks_mut(ELEMENTS_PER_TASK)
        .for_each(|chunk| chunk.iter_mut().for_each(|v| *v = f(*v)));
}

/// `out[i] = f(input[i])`, in parallel for large tensors.
fn map_into(input: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    out.par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(input.par_chunks(ELEMENTS_PER_TASK))
        .for_each(|(o, i)| o.iter_mut().zip(i).for_each(|(o, i)| *o = f(*i)));
}

/// Shape-preserving single-bottom layers share this reshape.
fn same_shape(bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
    expect_bottoms(bottoms, 1)?;
    Ok(vec![bottoms[0].to_vec()])
}

/// `ReLU`: `max(x, 0) + negative_slope * min(x, 0)`.
pub(crate) struct ReLU {
    negative_slope: f32,
}

impl ReLU {
    pub(crate) fn new(param: &LayerParameter) -> Self {
        ReLU {
            negative_slope: param.relu_param.as_ref().map_or(0.0, |p| p.negative_slope()),
        }
    }

    fn apply(&self) -> impl Fn(f32) -> f32 + Sync {
        let slope = self.negative_slope;
        move |x| x.max(0.0) + slope * x.min(0.0)
    }
}

impl Layer for ReLU {
    fn type_name(&self) -> &'static str {
        "ReLU"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        same_shape(bottoms)
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        map_into(bottoms[0].data(), tops[0].data_mut(), self.apply());
        Ok(())
    }
    fn forward_in_place(&mut self, data: &mut Tensor, _: &[&Tensor]) -> LayerResult<bool> {
        map_in_place(data.data_mut(), self.apply());
        Ok(true)
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if ctx.propagate_down[0] {
            let slope = self.negative_slope;
            // Caffe: top_diff * ((x > 0) + slope * (x <= 0)); in place, x is the output, of the same sign.
            zip_map(
                ctx.bottoms[0].data(),
                ctx.top_diffs[0].data(),
                ctx.bottom_diffs[0].data_mut(),
                |x, dy| {
                    if x > 0.0 {
                        dy
                    } else {
                        dy * slope
                    }
                },
            );
        }
        Ok(())
    }
}

/// `out[i] = f(a[i], b[i])`, in parallel chunks.
fn zip_map(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    out.par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(a.par_chunks(ELEMENTS_PER_TASK))
        .zip(b.par_chunks(ELEMENTS_PER_TASK))
        .for_each(|((o, a), b)| o.iter_mut().zip(a).zip(b).for_each(|((o, &a), &b)| *o = f(a, b)));
}

/// `PReLU`: `max(x, 0) + a_c * min(x, 0)` with a learned slope per channel (axis 1), or one shared slope.
pub(crate) struct PReLU {
    name: String,
    filler: caffe_proto::FillerParameter,
    channel_shared: bool,
    params: Vec<Tensor>,
    initialized: bool,
    /// (channels, values per channel and image) from the last reshape.
    dims: (usize, usize),
    /// The input of the last forward when it ran in place (backward needs it, as Caffe's `bottom_memory_`).
    saved_input: Option<Tensor>,
}

impl PReLU {
    pub(crate) fn new(param: &LayerParameter) -> LayerResult<Self> {
        let channel_shared = param.prelu_param.as_ref().is_some_and(|p| p.channel_shared());
        // Caffe's default filler for the slopes is the constant 0.25.
        let filler =
            param
                .prelu_param
                .as_ref()
                .and_then(|p| p.filler.clone())
                .unwrap_or(caffe_proto::FillerParameter {
                    r#type: Some("constant".into()),
                    value: Some(0.25),
                    ..Default::default()
                });
        Ok(PReLU {
            name: param.name().to_string(),
            filler,
            channel_shared,
            params: vec![Tensor::default()],
            initialized: false,
            dims: (0, 0),
            saved_input: None,
        })
    }

    fn run(&self, data: &mut [f32], input: Option<&[f32]>) {
        let (channels, dim) = self.dims;
        let slopes = self.params[0].data();
        if channels == 0 || dim == 0 {
            return;
        }
        let image = channels * dim;
        let apply = |out: &mut [f32], inp: Option<&[f32]>| {
            for (c, out) in out.chunks_mut(dim).enumerate() {
                let a = if self.channel_shared { slopes[0] } else { slopes[c] };
                match inp {
                    Some(inp) => {
                        let inp = &inp[c * dim..(c + 1) * dim];
                        out.iter_mut()
                            .zip(inp)
                            .for_each(|(o, &x)| *o = x.max(0.0) + a * x.min(0.0));
                    }
                    None => out.iter_mut().for_each(|o| *o = o.max(0.0) + a * o.min(0.0)),
                }
            }
        };
        match input {
            Some(input) => data
                .par_chunks_mut(image)
                .zip(input.par_chunks(image))
                .for_each(|(out, inp)| apply(out, Some(inp))),
            None => data.par_chunks_mut(image).for_each(|out| apply(out, None)),
        }
    }
}

impl Layer for PReLU {
    fn type_name(&self) -> &'static str {
        "PReLU"
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
        if b.len() < 2 {
            return Err(LayerError::Shape(format!(
                "PReLU needs at least 2 axes (N, C, ...), got {b:?}"
            )));
        }
        let channels = b[1];
        // A shared slope is a 0-axis blob (one value, shape []), as Caffe's PReLULayer makes and saves it.
        let slopes: &[usize] = if self.channel_shared { &[] } else { &[channels] };
        super::ensure_param_shape(&mut self.params[0], slopes, self.initialized, "PReLU slopes")?;
        if !self.initialized {
            crate::filler::fill(&mut self.params[0], &self.filler, &format!("{}/0", self.name))?;
        }
        self.initialized = true;
        self.dims = (channels, b[2..].iter().product());
        Ok(vec![b.to_vec()])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        self.saved_input = None;
        self.run(tops[0].data_mut(), Some(bottoms[0].data()));
        Ok(())
    }
    fn forward_in_place(&mut self, data: &mut Tensor, _: &[&Tensor]) -> LayerResult<bool> {
        match &mut self.saved_input {
            Some(saved) => saved.copy_from(data),
            None => self.saved_input = Some(data.clone()),
        }
        self.run(data.data_mut(), None);
        Ok(true)
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        let (channels, dim) = self.dims;
        if channels == 0 || dim == 0 {
            return Ok(());
        }
        let input = self.saved_input.as_ref().unwrap_or(ctx.bottoms[0]).data();
        let top_diff = ctx.top_diffs[0].data();
        let image = channels * dim;
        let slope_of = |c: usize| if self.channel_shared { 0 } else { c };
        if ctx.param_propagate_down[0] {
            // Caffe: slope_diff[c] += sum of top_diff * x over x <= 0.
            let slope_diff = ctx.param_diffs[0].data_mut();
            for (img, dy) in input.chunks(image).zip(top_diff.chunks(image)) {
                for c in 0..channels {
                    let sum: f32 = img[c * dim..(c + 1) * dim]
                        .iter()
                        .zip(&dy[c * dim..(c + 1) * dim])
                        .map(|(&x, &g)| if x <= 0.0 { g * x } else { 0.0 })
                        .sum();
                    slope_diff[slope_of(c)] += sum;
                }
            }
        }
        if ctx.propagate_down[0] {
            let slopes = self.params[0].data();
            let diff = ctx.bottom_diffs[0].data_mut();
            diff.par_chunks_mut(image)
                .zip(input.par_chunks(image))
                .zip(top_diff.par_chunks(image))
                .for_each(|((d, x), dy)| {
                    for c in 0..channels {
                        let a = slopes[slope_of(c)];
                        for ((d, &x), &g) in d[c * dim..(c + 1) * dim]
                            .iter_mut()
                            .zip(&x[c * dim..(c + 1) * dim])
                            .zip(&dy[c * dim..(c + 1) * dim])
                        {
                            *d = if x > 0.0 { g } else { a * g };
                        }
                    }
                });
        }
        Ok(())
    }
}

/// `Sigmoid`: `1 / (1 + exp(-x))`, computed as Caffe does: `0.5 * tanh(0.5 x) + 0.5`.
pub(crate) struct Sigmoid;

fn sigmoid(x: f32) -> f32 {
    0.5 * crate::math::tanh(0.5 * x) + 0.5
}

impl Layer for Sigmoid {
    fn type_name(&self) -> &'static str {
        "Sigmoid"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        same_shape(bottoms)
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        map_into(bottoms[0].data(), tops[0].data_mut(), sigmoid);
        Ok(())
    }
    fn forward_in_place(&mut self, data: &mut Tensor, _: &[&Tensor]) -> LayerResult<bool> {
        map_in_place(data.data_mut(), sigmoid);
        Ok(true)
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if ctx.propagate_down[0] {
            zip_map(
                ctx.tops[0].data(),
                ctx.top_diffs[0].data(),
                ctx.bottom_diffs[0].data_mut(),
                |y, dy| dy * y * (1.0 - y),
            );
        }
        Ok(())
    }
}

/// `TanH`.
pub(crate) struct TanH;

impl Layer for TanH {
    fn type_name(&self) -> &'static str {
        "TanH"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        same_shape(bottoms)
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        map_into(bottoms[0].data(), tops[0].data_mut(), f32::tanh);
        Ok(())
    }
    fn forward_in_place(&mut self, data: &mut Tensor, _: &[&Tensor]) -> LayerResult<bool> {
        map_in_place(data.data_mut(), f32::tanh);
        Ok(true)
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if ctx.propagate_down[0] {
            zip_map(
                ctx.tops[0].data(),
                ctx.top_diffs[0].data(),
                ctx.bottom_diffs[0].data_mut(),
                |y, dy| dy * (1.0 - y * y),
            );
        }
        Ok(())
    }
}

/// `Dropout`: identity in TEST; in TRAIN each value is kept with probability `1 - dropout_ratio` and scaled by
/// `1 / (1 - dropout_ratio)`, else zeroed. The TRAIN mask comes from a SplitMix64 stream seeded by the layer name.
pub(crate) struct Dropout {
    train: bool,
    ratio: f32,
    rng: SplitMix64,
    /// The last TRAIN mask (1 kept, 0 dropped), which backward will need.
    mask: Vec<bool>,
}

impl Dropout {
    pub(crate) fn new(param: &LayerParameter, phase: Phase) -> LayerResult<Self> {
        let ratio = param.dropout_param.as_ref().map_or(0.5, |p| p.dropout_ratio());
        if !(0.0..1.0).contains(&ratio) {
            return Err(LayerError::Param(format!(
                "dropout_ratio must be in [0, 1), got {ratio}"
            )));
        }
        Ok(Dropout {
            train: phase == Phase::Train,
            ratio,
            rng: SplitMix64::from_name(param.name()),
            mask: Vec::new(),
        })
    }

    fn draw_mask(&mut self, len: usize) {
        let keep = 1.0 - self.ratio;
        self.mask.clear();
        self.mask.extend((0..len).map(|_| self.rng.next_f32() < keep));
    }
}

impl Layer for Dropout {
    fn type_name(&self) -> &'static str {
        "Dropout"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        same_shape(bottoms)
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        tops[0].data_mut().copy_from_slice(bottoms[0].data());
        self.forward_in_place(&mut tops[0], &[])?;
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if !ctx.propagate_down[0] {
            return Ok(());
        }
        let (top_diff, diff) = (ctx.top_diffs[0].data(), ctx.bottom_diffs[0].data_mut());
        if self.train {
            // The mask and scale of the last forward (Caffe: top_diff * mask * scale).
            let scale = 1.0 / (1.0 - self.ratio);
            for ((d, &dy), &keep) in diff.iter_mut().zip(top_diff).zip(&self.mask) {
                *d = if keep { dy * scale } else { 0.0 };
            }
        } else {
            diff.copy_from_slice(top_diff);
        }
        Ok(())
    }
    fn forward_in_place(&mut self, data: &mut Tensor, _: &[&Tensor]) -> LayerResult<bool> {
        if self.train {
            self.draw_mask(data.len());
            let scale = 1.0 / (1.0 - self.ratio);
            for (v, &keep) in data.data_mut().iter_mut().zip(&self.mask) {
                *v = if keep { *v * scale } else { 0.0 };
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::{assert_close, param, run};
    use caffe_proto::{DropoutParameter, PReLuParameter, ReLuParameter};

    #[test]
    fn relu_with_and_without_leak() {
        let input = Tensor::new(&[1, 4], vec![-2.0, -0.5, 0.0, 3.0]);
        let mut relu = ReLU::new(&param("ReLU", |_| {}));
        assert_close(
            run(&mut relu, std::slice::from_ref(&input)).unwrap()[0].data(),
            &[0.0, 0.0, 0.0, 3.0],
            0.0,
        );
        let mut leaky = ReLU::new(&param("ReLU", |p| {
            p.relu_param = Some(ReLuParameter {
                negative_slope: Some(0.1),
                ..Default::default()
            })
        }));
        let mut data = input.clone();
        assert!(leaky.forward_in_place(&mut data, &[]).unwrap());
        assert_close(data.data(), &[-0.2, -0.05, 0.0, 3.0], 1e-7);
    }

    #[test]
    fn prelu_per_channel_and_shared() {
        // N=1, C=2, 2 values per channel; slopes default to 0.25 until loaded.
        let input = Tensor::new(&[1, 2, 2], vec![-4.0, 4.0, -4.0, 1.0]);
        let mut prelu = PReLU::new(&param("PReLU", |_| {})).unwrap();
        prelu.reshape(&[input.shape()]).unwrap();
        assert_eq!(prelu.params()[0].data(), &[0.25, 0.25]);
        prelu.params_mut()[0].data_mut().copy_from_slice(&[0.5, 2.0]);
        assert_close(
            run(&mut prelu, std::slice::from_ref(&input)).unwrap()[0].data(),
            &[-2.0, 4.0, -8.0, 1.0],
            0.0,
        );
        let mut shared = PReLU::new(&param("PReLU", |p| {
            p.prelu_param = Some(PReLuParameter {
                channel_shared: Some(true),
                ..Default::default()
            })
        }))
        .unwrap();
        shared.reshape(&[input.shape()]).unwrap();
        assert_eq!(shared.params()[0].shape(), &[] as &[usize]);
        assert_eq!(shared.params()[0].len(), 1);
        let mut data = input.clone();
        shared.forward_in_place(&mut data, &[]).unwrap();
        assert_close(data.data(), &[-1.0, 4.0, -1.0, 1.0], 0.0);
    }

    #[test]
    fn sigmoid_and_tanh_values() {
        let input = Tensor::new(&[3], vec![0.0, 2.0, -1.0]);
        let s = run(&mut Sigmoid, std::slice::from_ref(&input)).unwrap();
        assert_close(s[0].data(), &[0.5, 0.880_797_1, 0.268_941_43], 1e-6);
        let t = run(&mut TanH, &[input]).unwrap();
        assert_close(t[0].data(), &[0.0, 0.964_027_6, -0.761_594_2], 1e-6);
    }

    #[test]
    fn dropout_is_identity_in_test_and_scales_kept_values_in_train() {
        let p = param("Dropout", |l| {
            l.dropout_param = Some(DropoutParameter {
                dropout_ratio: Some(0.75),
            })
        });
        let input = Tensor::new(&[1000], vec![2.0; 1000]);
        let mut test = Dropout::new(&p, Phase::Test).unwrap();
        assert_eq!(run(&mut test, std::slice::from_ref(&input)).unwrap()[0], input);
        let mut train = Dropout::new(&p, Phase::Train).unwrap();
        let out = run(&mut train, &[input]).unwrap();
        assert!(out[0].data().iter().all(|&v| v == 0.0 || v == 8.0));
        let kept = out[0].data().iter().filter(|&&v| v == 8.0).count();
        assert!((200..300).contains(&kept), "kept {kept} of 1000 at keep rate 0.25");
        let bad = param("Dropout", |l| {
            l.dropout_param = Some(DropoutParameter {
                dropout_ratio: Some(1.0),
            })
        });
        assert!(Dropout::new(&bad, Phase::Test).is_err());
    }
}
