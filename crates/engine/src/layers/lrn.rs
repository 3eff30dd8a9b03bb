//! LRN, local response normalization, in both of Caffe's regions.

use caffe_proto::lrn_parameter::NormRegion;
use caffe_proto::LayerParameter;
use rayon::prelude::*;

use super::{expect_bottoms, Backward, Layer};
use crate::error::{LayerError, LayerResult};
use crate::math::powf;
use crate::Tensor;

/// `LRN`. ACROSS_CHANNELS: `x / (k + alpha/n * sum of x^2 over the n channels centred on c)^beta`.
/// WITHIN_CHANNEL: `x / (1 + alpha * mean of x^2 over the n x n window centred on (h, w))^beta`, the mean taken as
/// Caffe's AVE pooling takes it (zero padding counted in the divisor) and with 1, not `k`, as Caffe uses there.
pub(crate) struct Lrn {
    size: usize,
    alpha: f32,
    beta: f32,
    k: f32,
    region: NormRegion,
    dims: [usize; 4],
}

impl Lrn {
    pub(crate) fn new(param: &LayerParameter) -> LayerResult<Self> {
        let p = param.lrn_param.unwrap_or_default();
        let size = p.local_size() as usize;
        if size.is_multiple_of(2) {
            return Err(LayerError::Param(format!("local_size must be odd, got {size}")));
        }
        Ok(Lrn {
            size,
            alpha: p.alpha(),
            beta: p.beta(),
            k: p.k(),
            region: p.norm_region(),
            dims: [0; 4],
        })
    }

    /// One image, across channels, as Caffe's CPU code: a running sum over a zero-padded channel window.
    fn across_channels(&self, input: &[f32], output: &mut [f32], scale: &mut [f32], padded_square: &mut [f32]) {
        let [_, channels, height, width] = self.dims;
        let plane = height * width;
        let pre_pad = (self.size - 1) / 2;
        let alpha_over_size = self.alpha / self.size as f32;
        padded_square.fill(0.0);
        for (dst, &x) in padded_square[pre_pad * plane..(pre_pad + channels) * plane]
            .iter_mut()
            .zip(input)
        {
            *dst = x * x;
        }
        // Scale of channel 0: k plus the first `size` padded squares.
        scale[..plane].fill(self.k);
        for c in 0..self.size {
            let sq = &padded_square[c * plane..(c + 1) * plane];
            scale[..plane]
                .iter_mut()
                .zip(sq)
                .for_each(|(s, q)| *s += alpha_over_size * q);
        }
        for c in 1..channels {
            let (done, rest) = scale.split_at_mut(c * plane);
            let previous = &done[(c - 1) * plane..];
            let current = &mut rest[..plane];
            let head = &padded_square[(c + self.size - 1) * plane..(c + self.size) * plane];
            let tail = &padded_square[(c - 1) * plane..c * plane];
            for i in 0..plane {
                current[i] = previous[i] + alpha_over_size * head[i] - alpha_over_size * tail[i];
            }
        }
        for ((o, &x), &s) in output.iter_mut().zip(input).zip(scale.iter()) {
            *o = x * powf(s, -self.beta);
        }
    }

    /// One image, within each channel.
    fn within_channel(&self, input: &[f32], output: &mut [f32]) {
        let [_, channels, height, width] = self.dims;
        let plane = height * width;
        let pad = (self.size - 1) / 2;
        let (h_i, w_i, pad_i, size_i) = (height as isize, width as isize, pad as isize, self.size as isize);
        for c in 0..channels {
            let x = &input[c * plane..(c + 1) * plane];
            let out = &mut output[c * plane..(c + 1) * plane];
            for h in 0..height {
                // Stride 1, pad (size-1)/2: the window starts at h - pad and, as Caffe's AVE pooling, ends at most
                // at height + pad; the divisor counts the padding inside that range.
                let hstart = h as isize - pad_i;
                let hend = (hstart + size_i).min(h_i + pad_i);
                for w in 0..width {
                    let wstart = w as isize - pad_i;
                    let wend = (wstart + size_i).min(w_i + pad_i);
                    let pool_size = ((hend - hstart) * (wend - wstart)) as f32;
                    let mut sum = 0.0f32;
                    for hh in hstart.max(0)..hend.min(h_i) {
                        for ww in wstart.max(0)..wend.min(w_i) {
                            let v = x[hh as usize * width + ww as usize];
                            sum += v * v;
                        }
                    }
                    let mean = sum / pool_size;
                    out[h * width + w] = x[h * width + w] * powf(1.0 + self.alpha * mean, -self.beta);
                }
            }
        }
    }
}

impl Layer for Lrn {
    fn type_name(&self) -> &'static str {
        "LRN"
    }
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1)?;
        let b = bottoms[0];
        let &[n, c, h, w] = b else {
            return Err(LayerError::Shape(format!(
                "LRN takes a 4-D (N, C, H, W) bottom, got {b:?}"
            )));
        };
        self.dims = [n, c, h, w];
        Ok(vec![b.to_vec()])
    }
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let [_, channels, height, width] = self.dims;
        let image = channels * height * width;
        if image == 0 {
            return Ok(());
        }
        let input = bottoms[0].data();
        let output = tops[0].data_mut();
        match self.region {
            NormRegion::AcrossChannels => {
                let plane = height * width;
                output.par_chunks_mut(image).zip(input.par_chunks(image)).for_each_init(
                    || (vec![0.0f32; image], vec![0.0f32; (channels + self.size - 1) * plane]),
                    |(scale, padded), (out, inp)| self.across_channels(inp, out, scale, padded),
                );
            }
            NormRegion::WithinChannel => output
                .par_chunks_mut(image)
                .zip(input.par_chunks(image))
                .for_each(|(out, inp)| self.within_channel(inp, out)),
        }
        Ok(())
    }
    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if !ctx.propagate_down[0] {
            return Ok(());
        }
        let [_, channels, height, width] = self.dims;
        let image = channels * height * width;
        if image == 0 {
            return Ok(());
        }
        let (input, top, top_diff) = (ctx.bottoms[0].data(), ctx.tops[0].data(), ctx.top_diffs[0].data());
        let diff = ctx.bottom_diffs[0].data_mut();
        let plane = height * width;
        match self.region {
            NormRegion::AcrossChannels => diff
                .par_chunks_mut(image)
                .zip(input.par_chunks(image))
                .zip(top.par_chunks(image).zip(top_diff.par_chunks(image)))
                .for_each_init(
                    || {
                        (
                            vec![0.0f32; image],
                            vec![0.0f32; image],
                            vec![0.0f32; (channels + self.size - 1) * plane],
                        )
                    },
                    |(scale, scratch, padded), ((d, x), (y, dy))| {
                        // The scale of the forward pass, recomputed from the unchanged bottom.
                        self.across_channels(x, scratch, scale, padded);
                        self.across_channels_backward(x, y, dy, scale, padded, d);
                    },
                ),
            NormRegion::WithinChannel => diff
                .par_chunks_mut(image)
                .zip(input.par_chunks(image))
                .zip(top_diff.par_chunks(image))
                .for_each(|((d, x), dy)| self.within_channel_backward(x, dy, d)),
        }
        Ok(())
    }
}

impl Lrn {
    /// Caffe's `CrossChannelBackward_cpu` for one image: `dx = dy * scale^-beta - (2 alpha beta / n) * x * (sum over
    /// the channel window of dy * y / scale)`.
    fn across_channels_backward(
        &self,
        x: &[f32],
        y: &[f32],
        dy: &[f32],
        scale: &[f32],
        padded_ratio: &mut [f32],
        diff: &mut [f32],
    ) {
        let [_, channels, height, width] = self.dims;
        let plane = height * width;
        let pre_pad = self.size - self.size.div_ceil(2);
        let cache_ratio = 2.0 * self.alpha * self.beta / self.size as f32;
        for ((d, &g), &s) in diff.iter_mut().zip(dy).zip(scale) {
            *d = powf(s, -self.beta) * g;
        }
        padded_ratio.fill(0.0);
        for (i, r) in padded_ratio[pre_pad * plane..(pre_pad + channels) * plane]
            .iter_mut()
            .enumerate()
        {
            *r = dy[i] * y[i] / scale[i];
        }
        let mut accum = vec![0.0f32; plane];
        for c in 0..self.size - 1 {
            accum
                .iter_mut()
                .zip(&padded_ratio[c * plane..(c + 1) * plane])
                .for_each(|(a, r)| *a += r);
        }
        for c in 0..channels {
            let head = &padded_ratio[(c + self.size - 1) * plane..(c + self.size) * plane];
            accum.iter_mut().zip(head).for_each(|(a, r)| *a += r);
            let range = c * plane..(c + 1) * plane;
            for ((d, &xv), &a) in diff[range.clone()].iter_mut().zip(&x[range]).zip(&accum) {
                *d -= cache_ratio * a * xv;
            }
            let tail = &padded_ratio[c * plane..(c + 1) * plane];
            accum.iter_mut().zip(tail).for_each(|(a, r)| *a -= r);
        }
    }

    /// WITHIN_CHANNEL for one image. With `s = 1 + alpha * mean(x^2 over the window)` and `y = x * s^-beta`:
    /// `dx_i = dy_i * s_i^-beta + 2 x_i * sum over windows j containing i of (-alpha beta dy_j x_j s_j^(-beta-1)) /
    /// pool_size_j` (what Caffe's split / power / AVE pooling / product composition computes).
    fn within_channel_backward(&self, x: &[f32], dy: &[f32], diff: &mut [f32]) {
        let [_, channels, height, width] = self.dims;
        let plane = height * width;
        let pad = (self.size - 1) / 2;
        let (h_i, w_i, pad_i, size_i) = (height as isize, width as isize, pad as isize, self.size as isize);
        let window = |p: usize, extent: isize| {
            let start = p as isize - pad_i;
            let end = (start + size_i).min(extent + pad_i);
            (start, end)
        };
        let mut spread = vec![0.0f32; plane];
        for c in 0..channels {
            let x = &x[c * plane..(c + 1) * plane];
            let dy = &dy[c * plane..(c + 1) * plane];
            let d = &mut diff[c * plane..(c + 1) * plane];
            spread.fill(0.0);
            for h in 0..height {
                let (hstart, hend) = window(h, h_i);
                for w in 0..width {
                    let (wstart, wend) = window(w, w_i);
                    let pool_size = ((hend - hstart) * (wend - wstart)) as f32;
                    let mut sum = 0.0f32;
                    for hh in hstart.max(0)..hend.min(h_i) {
                        for ww in wstart.max(0)..wend.min(w_i) {
                            let v = x[hh as usize * width + ww as usize];
                            sum += v * v;
                        }
                    }
                    let s = 1.0 + self.alpha * (sum / pool_size);
                    let i = h * width + w;
                    d[i] = dy[i] * powf(s, -self.beta);
                    let t = -self.alpha * self.beta * dy[i] * x[i] * powf(s, -self.beta - 1.0) / pool_size;
                    for hh in hstart.max(0)..hend.min(h_i) {
                        for ww in wstart.max(0)..wend.min(w_i) {
                            spread[hh as usize * width + ww as usize] += t;
                        }
                    }
                }
            }
            for ((d, &xv), &t) in d.iter_mut().zip(x).zip(&spread) {
                *d += 2.0 * xv * t;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::{assert_close, param, run};
    use caffe_proto::LrnParameter;

    fn lrn(edit: impl FnOnce(&mut LrnParameter)) -> Lrn {
        Lrn::new(&param("LRN", |p| {
            let mut lp = LrnParameter::default();
            edit(&mut lp);
            p.lrn_param = Some(lp);
        }))
        .unwrap()
    }

    #[test]
    fn across_channels_by_hand() {
        // 3 channels of one pixel: 1, 2, 3; size 3, alpha 3 (alpha/size = 1), beta 0.5, k 1.
        // Channel 0: 1 + (0 + 1 + 4) = 6; channel 1: 1 + (1 + 4 + 9) = 15; channel 2: 1 + (4 + 9 + 0) = 14.
        let mut layer = lrn(|p| {
            p.local_size = Some(3);
            p.alpha = Some(3.0);
            p.beta = Some(0.5);
        });
        let out = run(&mut layer, &[Tensor::new(&[1, 3, 1, 1], vec![1.0, 2.0, 3.0])]).unwrap();
        assert_close(
            out[0].data(),
            &[1.0 / 6f32.sqrt(), 2.0 / 15f32.sqrt(), 3.0 / 14f32.sqrt()],
            1e-6,
        );
    }

    #[test]
    fn across_channels_defaults_on_a_wide_image() {
        // Defaults: size 5, alpha 1, beta 0.75, k 1. Two channels of two pixels, each pixel normalized on its own:
        // pixel 0 sees squares 4 and 16 (sum 20), pixel 1 sees 1 and 0.
        let mut layer = lrn(|_| {});
        let out = run(&mut layer, &[Tensor::new(&[1, 2, 1, 2], vec![2.0, 1.0, 4.0, 0.0])]).unwrap();
        let s0 = (1.0f32 + 20.0 / 5.0).powf(-0.75);
        let s1 = (1.0f32 + 1.0 / 5.0).powf(-0.75);
        assert_close(out[0].data(), &[2.0 * s0, 1.0 * s1, 4.0 * s0, 0.0], 1e-6);
    }

    #[test]
    fn within_channel_counts_padding_in_the_mean() {
        // One 1x2 channel [2, 4], size 3, alpha 1, beta 1: pad 1; every window spans 3x3 = 9 (padding counted),
        // and both windows hold both pixels: mean of squares (4 + 16) / 9.
        let mut layer = lrn(|p| {
            p.local_size = Some(3);
            p.beta = Some(1.0);
            p.norm_region = Some(NormRegion::WithinChannel as i32);
            p.k = Some(7.0); // ignored by WITHIN_CHANNEL, as in Caffe
        });
        let out = run(&mut layer, &[Tensor::new(&[1, 1, 1, 2], vec![2.0, 4.0])]).unwrap();
        let d = 1.0 + 20.0 / 9.0;
        assert_close(out[0].data(), &[2.0 / d, 4.0 / d], 1e-6);
        assert!(Lrn::new(&param("LRN", |p| p.lrn_param = Some(LrnParameter {
            local_size: Some(4),
            ..Default::default()
        })))
        .is_err());
    }
}
