//! Convolution and Deconvolution (Caffe's im2col + GEMM formulation, 2-D).

use caffe_proto::{ConvolutionParameter, LayerParameter};
use rayon::prelude::*;

use super::pooling::max_2x2_tiles;
use super::{canonical_axis, ensure_param_shape, Backward, Layer};
use crate::blas::{col2im, col2im_strided, im2col, par_sgemm_acc, sgemm, Window};
use crate::error::{LayerError, LayerResult};
use crate::filler::fill;
use crate::sparse::{ConvShape, Csr, SparseCache, CONV_CROSSOVER};
use crate::Tensor;

/// The spatial geometry of a convolution, parsed from `ConvolutionParameter` as Caffe's BaseConvolutionLayer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pad: [usize; 2],
    pub dilation: [usize; 2],
}

/// Reads a repeated field that may hold 0 values (`default`), 1 (both dims) or 2 (h, w), or the `_h`/`_w` pair.
fn spatial(
    what: &str,
    repeated: &[u32],
    h: Option<u32>,
    w: Option<u32>,
    default: Option<usize>,
) -> LayerResult<[usize; 2]> {
    if h.is_some() || w.is_some() {
        if !repeated.is_empty() {
            return Err(LayerError::Param(format!(
                "either {what} or {what}_h/{what}_w should be given, not both"
            )));
        }
        let (Some(h), Some(w)) = (h, w) else {
            return Err(LayerError::Param(format!(
                "{what}_h and {what}_w must be given together"
            )));
        };
        return Ok([h as usize, w as usize]);
    }
    match (repeated, default) {
        ([], Some(d)) => Ok([d, d]),
        ([], None) => Err(LayerError::Param(format!(
            "{what} is required (kernel_size, or kernel_h and kernel_w)"
        ))),
        ([v], _) => Ok([*v as usize, *v as usize]),
        ([h, w], _) => Ok([*h as usize, *w as usize]),
        (more, _) => Err(LayerError::Param(format!(
            "{what} has {} values; 2-D convolution takes 1 or 2",
            more.len()
        ))),
    }
}

impl Geometry {
    pub(crate) fn parse(p: &ConvolutionParameter) -> LayerResult<Self> {
        let kernel = spatial("kernel", &p.kernel_size, p.kernel_h, p.kernel_w, None)?;
        let stride = spatial("stride", &p.stride, p.stride_h, p.stride_w, Some(1))?;
        let pad = spatial("pad", &p.pad, p.pad_h, p.pad_w, Some(0))?;
        let dilation = match p.dilation.as_slice() {
            [] => [1, 1],
            [d] => [*d as usize, *d as usize],
            [h, w] => [*h as usize, *w as usize],
            more => {
                return Err(LayerError::Param(format!(
                    "dilation has {} values; 2-D convolution takes 1 or 2",
                    more.len()
                )))
            }
        };
        if kernel.contains(&0) {
            return Err(LayerError::Param(format!(
                "kernel dimensions must be positive, got {kernel:?}"
            )));
        }
        if stride.contains(&0) {
            return Err(LayerError::Param(format!("stride must be positive, got {stride:?}")));
        }
        if dilation.contains(&0) {
            return Err(LayerError::Param(format!(
                "dilation must be positive, got {dilation:?}"
            )));
        }
        Ok(Geometry {
            kernel,
            stride,
            pad,
            dilation,
        })
    }

    pub(crate) fn window(&self, channels: usize, height: usize, width: usize) -> Window {
        Window {
            channels,
            height,
            width,
            kernel_h: self.kernel[0],
            kernel_w: self.kernel[1],
            pad_h: self.pad[0],
            pad_w: self.pad[1],
            stride_h: self.stride[0],
            stride_w: self.stride[1],
            dilation_h: self.dilation[0],
            dilation_w: self.dilation[1],
        }
    }

    fn extent(&self, dim: usize) -> usize {
        self.dilation[dim] * (self.kernel[dim] - 1) + 1
    }

    fn is_1x1(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.pad == [0, 0]
    }
}

/// `Convolution` (and, with `transposed`, `Deconvolution`): weights `[out, in/group, kh, kw]` (Deconvolution:
/// `[in, out/group, kh, kw]`), optional bias `[out]`.
pub(crate) struct Convolution {
    name: String,
    weight_filler: caffe_proto::FillerParameter,
    bias_filler: caffe_proto::FillerParameter,
    transposed: bool,
    num_output: usize,
    group: usize,
    bias_term: bool,
    axis: i32,
    geometry: Geometry,
    params: Vec<Tensor>,
    initialized: bool,
    /// Set by reshape: (outer count, input channels, input h, w, output h, w).
    dims: Option<ConvDims>,
    /// Buffers of the backward pass, kept between calls.
    scratch: Scratch,
    /// The pruned weights' sparse form (see crate::sparse).
    sparse: SparseCache,
}

/// Backward buffers: the per-partition parameter gradient sums, and each partition's column / gather matrices.
#[derive(Default)]
struct Scratch {
    sums: Vec<f32>,
    work: Vec<Vec<f32>>,
}

impl Scratch {
    /// `sums` zeroed at `sums_len` values, and `parts` work buffers of `work_len` values (contents unspecified).
    fn prepare(&mut self, sums_len: usize, parts: usize, work_len: usize) -> (&mut [f32], &mut [Vec<f32>]) {
        self.sums.clear();
        self.sums.resize(sums_len, 0.0);
        self.work.resize_with(parts, Vec::new);
        for w in &mut self.work[..parts] {
            w.resize(work_len, 0.0);
        }
        (&mut self.sums, &mut self.work[..parts])
    }
}

#[derive(Clone, Copy, Debug)]
struct ConvDims {
    num: usize,
    channels: usize,
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
}

impl Convolution {
    pub(crate) fn new(param: &LayerParameter, transposed: bool) -> LayerResult<Self> {
        let p = param.convolution_param.clone().unwrap_or_default();
        let geometry = Geometry::parse(&p)?;
        let num_output = p.num_output() as usize;
        if num_output == 0 {
            return Err(LayerError::Param("num_output must be positive".into()));
        }
        let group = p.group() as usize;
        if group == 0 {
            return Err(LayerError::Param("group must be positive".into()));
        }
        if !num_output.is_multiple_of(group) {
            return Err(LayerError::Param(format!(
                "num_output {num_output} is not a multiple of group {group}"
            )));
        }
        let bias_term = p.bias_term();
        let params = if bias_term {
            vec![Tensor::default(), Tensor::default()]
        } else {
            vec![Tensor::default()]
        };
        Ok(Convolution {
            name: param.name().to_string(),
            weight_filler: p.weight_filler.clone().unwrap_or_default(),
            bias_filler: p.bias_filler.clone().unwrap_or_default(),
            transposed,
            num_output,
            group,
            bias_term,
            axis: p.axis(),
            geometry,
            params,
            initialized: false,
            dims: None,
            scratch: Scratch::default(),
            sparse: SparseCache::default(),
        })
    }
}

impl Layer for Convolution {
    fn type_name(&self) -> &'static str {
        if self.transposed {
            "Deconvolution"
        } else {
            "Convolution"
        }
    }

    fn params(&self) -> &[Tensor] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [Tensor] {
        self.sparse.invalidate();
        &mut self.params
    }

    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        let first = bottoms[0];
        for (i, b) in bottoms.iter().enumerate().skip(1) {
            if *b != first {
                return Err(LayerError::Shape(format!(
                    "all bottoms must have the same shape; bottom 0 is {first:?}, bottom {i} is {b:?}"
                )));
            }
        }
        let axis = canonical_axis(self.axis, first.len(), "axis")?;
        if first.len() != axis + 3 {
            return Err(LayerError::Shape(format!(
                "only 2-D convolution is supported: the bottom {first:?} has {} spatial axes after channel axis {axis}",
                first.len() - axis - 1
            )));
        }
        let channels = first[axis];
        if !channels.is_multiple_of(self.group) {
            return Err(LayerError::Shape(format!(
                "input channels {channels} are not a multiple of group {}",
                self.group
            )));
        }
        let (in_h, in_w) = (first[axis + 1], first[axis + 2]);
        let g = &self.geometry;
        let (out_h, out_w) = if self.transposed {
            let out = |dim: usize, input: usize| {
                (g.stride[dim] * (input.max(1) - 1) + g.extent(dim)).checked_sub(2 * g.pad[dim])
            };
            match (out(0, in_h), out(1, in_w)) {
                (Some(h), Some(w)) if h > 0 && w > 0 && in_h > 0 && in_w > 0 => (h, w),
                _ => {
                    return Err(LayerError::Shape(format!(
                    "input {in_h}x{in_w} gives an empty deconvolution output with kernel {:?}, stride {:?}, pad {:?}",
                    g.kernel, g.stride, g.pad
                )))
                }
            }
        } else {
            let window = g.window(channels, in_h, in_w);
            if in_h + 2 * g.pad[0] < g.extent(0) || in_w + 2 * g.pad[1] < g.extent(1) {
                return Err(LayerError::Shape(format!(
                    "input {in_h}x{in_w} (padded by {:?}) is smaller than the kernel extent {}x{}",
                    g.pad,
                    g.extent(0),
                    g.extent(1)
                )));
            }
            (window.output_h(), window.output_w())
        };
        let weight_shape = if self.transposed {
            vec![channels, self.num_output / self.group, g.kernel[0], g.kernel[1]]
        } else {
            vec![self.num_output, channels / self.group, g.kernel[0], g.kernel[1]]
        };
        ensure_param_shape(
            &mut self.params[0],
            &weight_shape,
            self.initialized,
            "convolution kernel",
        )?;
        if self.bias_term {
            ensure_param_shape(
                &mut self.params[1],
                &[self.num_output],
                self.initialized,
                "convolution bias",
            )?;
        }
        if !self.initialized {
            fill(&mut self.params[0], &self.weight_filler, &format!("{}/0", self.name))?;
            if self.bias_term {
                fill(&mut self.params[1], &self.bias_filler, &format!("{}/1", self.name))?;
            }
        }
        self.initialized = true;
        self.dims = Some(ConvDims {
            num: first[..axis].iter().product(),
            channels,
            in_h,
            in_w,
            out_h,
            out_w,
        });
        let mut top = first[..axis].to_vec();
        top.extend([self.num_output, out_h, out_w]);
        Ok(vec![top; bottoms.len()])
    }

    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let d = self.dims.expect("reshape runs before forward");
        let weights = self.params[0].data();
        let bias = self.bias_term.then(|| self.params[1].data());
        let m = self.num_output / self.group;
        let kernel_dim = d.channels / self.group * self.geometry.kernel[0] * self.geometry.kernel[1];
        let sparse = if self.transposed {
            &[]
        } else {
            self.sparse.groups(weights, self.group, (m, kernel_dim), CONV_CROSSOVER)
        };
        for (bottom, top) in bottoms.iter().zip(tops.iter_mut()) {
            if self.transposed {
                deconv_forward(
                    &self.geometry,
                    self.group,
                    self.num_output,
                    &d,
                    weights,
                    bias,
                    bottom.data(),
                    top.data_mut(),
                );
            } else {
                conv_forward(
                    &self.geometry,
                    self.group,
                    self.num_output,
                    &d,
                    weights,
                    sparse,
                    bias,
                    bottom.data(),
                    top.data_mut(),
                );
            }
        }
        Ok(())
    }

    fn forward_max_pool_2x2(&mut self, bottoms: &[&Tensor], pooled: &mut Tensor) -> LayerResult<bool> {
        let d = self.dims.expect("reshape runs before forward");
        let pooled_len = d.num * self.num_output * (d.out_h / 2) * (d.out_w / 2);
        if self.transposed
            || bottoms.len() != 1
            || !d.out_h.is_multiple_of(2)
            || !d.out_w.is_multiple_of(2)
            || pooled.len() != pooled_len
            || pooled_len == 0
        {
            return Ok(false);
        }
        let weights = self.params[0].data();
        let bias = self.bias_term.then(|| self.params[1].data());
        let m = self.num_output / self.group;
        let kernel_dim = d.channels / self.group * self.geometry.kernel[0] * self.geometry.kernel[1];
        let sparse = self.sparse.groups(weights, self.group, (m, kernel_dim), CONV_CROSSOVER);
        if !direct_sparse(&self.geometry, self.group, sparse) {
            return Ok(false);
        }
        let output = DirectOutput::MaxPool2x2(pooled.data_mut());
        conv_forward_direct(
            &self.geometry,
            self.group,
            self.num_output,
            &d,
            sparse,
            bias,
            bottoms[0].data(),
            output,
        );
        Ok(true)
    }

    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        let d = self.dims.expect("reshape runs before backward");
        let weight_grad = ctx.param_propagate_down[0];
        let bias_grad = self.bias_term && ctx.param_propagate_down.get(1).copied().unwrap_or(false);
        let (weight_diff, bias_diff) = match ctx.param_diffs {
            [w, b, ..] => (w, Some(b)),
            [w] => (w, None),
            [] => unreachable!("a convolution has a weight blob"),
        };
        let mut weight_diff = weight_grad.then(|| weight_diff.data_mut());
        let mut bias_diff = bias_diff.filter(|_| bias_grad).map(|b| b.data_mut());
        for (i, ((bottom, top_diff), bottom_diff)) in ctx
            .bottoms
            .iter()
            .zip(ctx.top_diffs)
            .zip(ctx.bottom_diffs.iter_mut())
            .enumerate()
        {
            let bottom_diff = ctx.propagate_down[i].then(|| bottom_diff.data_mut());
            let weights = self.params[0].data();
            // A pruned layer's bottom gradient multiplies only its nonzero weights, as its forward does.
            let sparse = if self.transposed || bottom_diff.is_none() {
                &[]
            } else {
                let m = self.num_output / self.group;
                let kernel_dim = d.channels / self.group * self.geometry.kernel[0] * self.geometry.kernel[1];
                self.sparse.groups(weights, self.group, (m, kernel_dim), CONV_CROSSOVER)
            };
            let job = ConvBackward {
                g: &self.geometry,
                group: self.group,
                num_output: self.num_output,
                d: &d,
                weights,
                sparse,
                input: bottom.data(),
                top_diff: top_diff.data(),
            };
            let diffs = (bottom_diff, weight_diff.as_deref_mut(), bias_diff.as_deref_mut());
            if self.transposed {
                job.deconv(diffs, &mut self.scratch);
            } else {
                job.conv(diffs, &mut self.scratch);
            }
        }
        Ok(())
    }
}

/// Image ranges whose parameter gradients are summed separately and then added in order. A fixed number (not the
/// thread count) so results do not depend on the machine.
const GRADIENT_PARTS: usize = 8;

/// The bottom, weight and bias diffs one backward call writes (`None`: not wanted).
type Diffs<'a> = (Option<&'a mut [f32]>, Option<&'a mut [f32]>, Option<&'a mut [f32]>);

/// The inputs of one bottom's backward pass.
struct ConvBackward<'a> {
    g: &'a Geometry,
    group: usize,
    num_output: usize,
    d: &'a ConvDims,
    weights: &'a [f32],
    /// Per group, the weights' sparse form when the group is pruned below the crossover (empty: all dense).
    sparse: &'a [Option<Csr>],
    input: &'a [f32],
    top_diff: &'a [f32],
}

/// [`sgemm`]'s signature.
type Gemm = fn(bool, bool, usize, usize, usize, &[f32], &[f32], &mut [f32], bool);

/// The product used inside the image partitions: with fewer partitions than threads (small batches), each product
/// is itself split across the threads.
fn backward_gemm(parts: usize) -> Gemm {
    if parts < rayon::current_num_threads() {
        par_sgemm_acc
    } else {
        sgemm
    }
}

/// `parts` consecutive pieces of `len` values of `v` (fewer values: empty pieces at the end; empty `v`: all empty).
fn split_parts(v: &mut [f32], len: usize, parts: usize) -> Vec<&mut [f32]> {
    let mut pieces: Vec<&mut [f32]> = if v.is_empty() || len == 0 {
        Vec::new()
    } else {
        v.chunks_mut(len).collect()
    };
    pieces.resize_with(parts, || &mut [][..]);
    pieces
}

/// Adds `parts` (each `target.len()` long, laid end to end) into `target`, in order.
fn add_parts(target: &mut [f32], parts: &[f32]) {
    for part in parts.chunks(target.len()) {
        target.iter_mut().zip(part).for_each(|(t, p)| *t += p);
    }
}

/// Adds each channel's sum of `diff` (channels x spatial) to `bias_diff`.
fn add_bias_grad(bias_diff: &mut [f32], diff: &[f32], spatial: usize) {
    for (b, row) in bias_diff.iter_mut().zip(diff.chunks(spatial)) {
        *b += lane_sum(row);
    }
}

/// The sum of `values` as 16 running sums (sum `i` takes values `i`, `i + 16`, ...) added pairwise at the end: one
/// fixed order, so the same bits on every CPU, which the compiler can still keep in vector registers (a single
/// running sum waits on each add in turn).
fn lane_sum(values: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut sums = [0.0f32; LANES];
    let mut blocks = values.chunks_exact(LANES);
    for block in &mut blocks {
        for (sum, v) in sums.iter_mut().zip(block) {
            *sum += v;
        }
    }
    for (sum, v) in sums.iter_mut().zip(blocks.remainder()) {
        *sum += v;
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            sums[i] += sums[i + width];
        }
    }
    sums[0]
}

impl ConvBackward<'_> {
    /// Convolution: `dW[g] += top_diff[g] * col[g]^T`, `db += sum(top_diff)`, `bottom_diff = col2im(W^T top_diff)`,
    /// images split into [`GRADIENT_PARTS`] ranges run in parallel (small outputs batched, [`BACKWARD_COLUMNS`]).
    fn conv(&self, (bottom_diff, weight_diff, bias_diff): Diffs<'_>, scratch: &mut Scratch) {
        let (g, d) = (self.g, self.d);
        let window = g.window(d.channels, d.in_h, d.in_w);
        let in_len = d.channels * d.in_h * d.in_w;
        let spatial = d.out_h * d.out_w;
        let out_len = self.num_output * spatial;
        let kernel_dim = d.channels / self.group * g.kernel[0] * g.kernel[1];
        let m = self.num_output / self.group;
        if out_len == 0 || d.num == 0 || in_len == 0 {
            return;
        }
        let need_w = weight_diff.is_some();
        let need_b = bias_diff.is_some();
        let w_len = self.weights.len();
        let batch = BACKWARD_COLUMNS.div_ceil(spatial).min(d.num);
        let parts = d.num.div_ceil(batch).min(GRADIENT_PARTS);
        let per_part = d.num.div_ceil(parts);
        let gemm = backward_gemm(parts);
        let mut empty: Vec<f32> = Vec::new();
        let bottom_diff: &mut [f32] = match bottom_diff {
            Some(b) => b,
            None => &mut empty,
        };
        let need_bottom = !bottom_diff.is_empty();
        let width = batch * spatial;
        let col_len = window.col_rows() * width;
        let work_len = col_len + if batch > 1 { self.num_output * width } else { 0 };
        let w_total = if need_w { w_len * parts } else { 0 };
        let b_total = if need_b { self.num_output * parts } else { 0 };
        let (sums, work) = scratch.prepare(w_total + b_total, parts, work_len);
        let (w_parts, b_parts) = sums.split_at_mut(w_total);
        // The dense groups' weights transposed once, (kernel_dim x m) each: the product below packs a plain matrix
        // faster than it gathers a transposed one, image range after image range.
        let mut transposed = Vec::new();
        let dense_group = |gi: usize| self.sparse.get(gi).and_then(Option::as_ref).is_none();
        if need_bottom && (0..self.group).any(dense_group) {
            transposed.resize(self.weights.len(), 0.0);
            for (w, t) in self
                .weights
                .chunks(m * kernel_dim)
                .zip(transposed.chunks_mut(m * kernel_dim))
            {
                for (o, row) in w.chunks(kernel_dim).enumerate() {
                    for (k, &v) in row.iter().enumerate() {
                        t[k * m + o] = v;
                    }
                }
            }
        }
        let bottom_chunks = split_parts(bottom_diff, per_part * in_len, parts);
        let w_chunks = split_parts(w_parts, w_len, parts);
        let b_chunks = split_parts(b_parts, self.num_output, parts);
        w_chunks
            .into_par_iter()
            .zip(b_chunks)
            .zip(bottom_chunks)
            .zip(work)
            .enumerate()
            .for_each(|(p, (((w_part, b_part), bottom_part), buffer))| {
                let first = p * per_part;
                let last = ((p + 1) * per_part).min(d.num);
                if first >= last {
                    return;
                }
                let (col, gathered) = buffer.split_at_mut(col_len);
                let mut start = first;
                while start < last {
                    let images = batch.min(last - start);
                    let ld = images * spatial;
                    let top = &self.top_diff[start * out_len..(start + images) * out_len];
                    if need_b {
                        for img in top.chunks(out_len) {
                            add_bias_grad(b_part, img, spatial);
                        }
                    }
                    if !need_w && !need_bottom {
                        start += images;
                        continue;
                    }
                    // The top diffs of these images as one (out x images*spatial) matrix, like the forward product.
                    let td: &[f32] = if images == 1 {
                        top
                    } else {
                        for (b, img) in top.chunks(out_len).enumerate() {
                            for (o, row) in img.chunks(spatial).enumerate() {
                                gathered[o * ld + b * spatial..o * ld + (b + 1) * spatial].copy_from_slice(row);
                            }
                        }
                        &*gathered
                    };
                    if need_w {
                        for (b, image) in self.input[start * in_len..(start + images) * in_len]
                            .chunks(in_len)
                            .enumerate()
                        {
                            im2col(image, &window, &mut col[b * spatial..], ld);
                        }
                        for gi in 0..self.group {
                            gemm(
                                false,
                                true,
                                m,
                                kernel_dim,
                                ld,
                                &td[gi * m * ld..],
                                &col[gi * kernel_dim * ld..],
                                &mut w_part[gi * m * kernel_dim..],
                                true,
                            );
                        }
                    }
                    if need_bottom {
                        // Column diffs of all these images at once, W^T * top_diff, then col2im image by image.
                        for gi in 0..self.group {
                            match self.sparse.get(gi).and_then(Option::as_ref) {
                                Some(csr) => {
                                    csr.transpose_times_dense(&td[gi * m * ld..], ld, &mut col[gi * kernel_dim * ld..])
                                }
                                None => gemm(
                                    false,
                                    false,
                                    kernel_dim,
                                    ld,
                                    m,
                                    &transposed[gi * m * kernel_dim..],
                                    &td[gi * m * ld..],
                                    &mut col[gi * kernel_dim * ld..],
                                    false,
                                ),
                            }
                        }
                        for b in 0..images {
                            let offset = (start - first + b) * in_len;
                            col2im_strided(
                                &col[b * spatial..],
                                &window,
                                &mut bottom_part[offset..offset + in_len],
                                ld,
                            );
                        }
                    }
                    start += images;
                }
            });
        let (w_parts, b_parts) = scratch.sums.split_at(w_total);
        if let Some(weight_diff) = weight_diff {
            add_parts(weight_diff, w_parts);
        }
        if let Some(bias_diff) = bias_diff {
            add_parts(bias_diff, b_parts);
        }
    }

    /// Deconvolution (Caffe's DeconvolutionLayer::Backward_cpu): `col = im2col(top_diff)` on the output grid,
    /// `dW[g] += bottom[g] * col[g]^T`, `bottom_diff[g] = W[g] * col[g]`, `db += sum(top_diff)`.
    fn deconv(&self, (bottom_diff, weight_diff, bias_diff): Diffs<'_>, scratch: &mut Scratch) {
        let (g, d) = (self.g, self.d);
        let window = g.window(self.num_output, d.out_h, d.out_w);
        let in_spatial = d.in_h * d.in_w;
        let in_len = d.channels * in_spatial;
        let out_spatial = d.out_h * d.out_w;
        let out_len = self.num_output * out_spatial;
        let kernel_dim = self.num_output / self.group * g.kernel[0] * g.kernel[1];
        let in_per_group = d.channels / self.group;
        if out_len == 0 || d.num == 0 || in_len == 0 {
            return;
        }
        let need_w = weight_diff.is_some();
        let need_b = bias_diff.is_some();
        let w_len = self.weights.len();
        let parts = d.num.min(GRADIENT_PARTS);
        let per_part = d.num.div_ceil(parts);
        let gemm = backward_gemm(parts);
        let mut empty: Vec<f32> = Vec::new();
        let bottom_diff: &mut [f32] = match bottom_diff {
            Some(b) => b,
            None => &mut empty,
        };
        let need_bottom = !bottom_diff.is_empty();
        let work_len = if need_w || need_bottom {
            window.col_rows() * in_spatial
        } else {
            0
        };
        let w_total = if need_w { w_len * parts } else { 0 };
        let b_total = if need_b { self.num_output * parts } else { 0 };
        let (sums, work) = scratch.prepare(w_total + b_total, parts, work_len);
        let (w_parts, b_parts) = sums.split_at_mut(w_total);
        let bottom_chunks = split_parts(bottom_diff, per_part * in_len, parts);
        let w_chunks = split_parts(w_parts, w_len, parts);
        let b_chunks = split_parts(b_parts, self.num_output, parts);
        w_chunks
            .into_par_iter()
            .zip(b_chunks)
            .zip(bottom_chunks)
            .zip(work)
            .enumerate()
            .for_each(|(p, (((w_part, b_part), bottom_part), col))| {
                let first = p * per_part;
                let last = ((p + 1) * per_part).min(d.num);

                for n in first..last {
                    let top = &self.top_diff[n * out_len..(n + 1) * out_len];
                    if need_b {
                        add_bias_grad(b_part, top, out_spatial);
                    }
                    if !need_w && !need_bottom {
                        continue;
                    }
                    im2col(top, &window, col, in_spatial);
                    if need_w {
                        let image = &self.input[n * in_len..(n + 1) * in_len];
                        for gi in 0..self.group {
                            gemm(
                                false,
                                true,
                                in_per_group,
                                kernel_dim,
                                in_spatial,
                                &image[gi * in_per_group * in_spatial..],
                                &col[gi * kernel_dim * in_spatial..],
                                &mut w_part[gi * in_per_group * kernel_dim..],
                                true,
                            );
                        }
                    }
                    if need_bottom {
                        let offset = (n - first) * in_len;
                        let out = &mut bottom_part[offset..offset + in_len];
                        for gi in 0..self.group {
                            gemm(
                                false,
                                false,
                                in_per_group,
                                in_spatial,
                                kernel_dim,
                                &self.weights[gi * in_per_group * kernel_dim..],
                                &col[gi * kernel_dim * in_spatial..],
                                &mut out[gi * in_per_group * in_spatial..],
                                false,
                            );
                        }
                    }
                }
            });
        let (w_parts, b_parts) = scratch.sums.split_at(w_total);
        if let Some(weight_diff) = weight_diff {
            add_parts(weight_diff, w_parts);
        }
        if let Some(bias_diff) = bias_diff {
            add_parts(bias_diff, b_parts);
        }
    }
}

/// Columns of the im2col matrix one GEMM aims for: small outputs (e.g. 8x8) are batched over several images so the
/// product is wide enough to run at full speed, while the column matrix stays about L2-sized.
const TARGET_COLUMNS: usize = 256;

/// [`TARGET_COLUMNS`] for the backward pass, which keeps a second product's columns (`W^T * top_diff`, then col2im)
/// in cache as well: LeNet's conv2 backward at batch 100 runs 4% faster with 2 images per product than with 4.
const BACKWARD_COLUMNS: usize = 128;

/// Whether [`conv_forward`] takes the direct sparse path: every group pruned below the crossover, and not 1x1.
fn direct_sparse(g: &Geometry, group: usize, sparse: &[Option<Csr>]) -> bool {
    (0..group).all(|gi| sparse.get(gi).is_some_and(Option::is_some)) && !g.is_1x1()
}

/// Where the direct sparse path writes.
enum DirectOutput<'a> {
    /// The layer's top.
    Top(&'a mut [f32]),
    /// The top MAX-pooled by 2x2 tiling windows (even output sizes): each image is convolved into a buffer of the
    /// thread's and pooled from there, while it is in cache.
    MaxPool2x2(&'a mut [f32]),
}

/// The direct sparse path of [`conv_forward`] (see [`direct_sparse`]): per image, each group's nonzero filter taps
/// straight over the image, no column matrix.
#[allow(clippy::too_many_arguments)]
fn conv_forward_direct(
    g: &Geometry,
    group: usize,
    num_output: usize,
    d: &ConvDims,
    sparse: &[Option<Csr>],
    bias: Option<&[f32]>,
    input: &[f32],
    output: DirectOutput<'_>,
) {
    let in_len = d.channels * d.in_h * d.in_w;
    let spatial = d.out_h * d.out_w;
    let out_len = num_output * spatial;
    let m = num_output / group;
    let channels = d.channels / group;
    let shape = ConvShape {
        channels,
        input: [d.in_h, d.in_w],
        output: [d.out_h, d.out_w],
        kernel: g.kernel,
        stride: g.stride,
        pad: g.pad,
        dilation: g.dilation,
    };
    let plane = d.in_h * d.in_w;
    let plans: Vec<_> = sparse
        .iter()
        .flatten()
        .map(|csr| (csr, csr.conv_plan(&shape)))
        .collect();
    let convolve = |scratch: &mut Vec<f32>, image: &[f32], out: &mut [f32]| {
        for (gi, (csr, plan)) in plans.iter().enumerate() {
            let image = &image[gi * channels * plane..(gi + 1) * channels * plane];
            let bias = bias.map(|b| &b[gi * m..(gi + 1) * m]);
            csr.convolve(
                plan,
                image,
                bias,
                &mut out[gi * m * spatial..(gi + 1) * m * spatial],
                scratch,
            );
        }
    };
    match output {
        DirectOutput::Top(output) => output
            .par_chunks_mut(out_len)
            .zip(input.par_chunks(in_len))
            .for_each_init(Vec::new, |scratch, (out, image)| convolve(scratch, image, out)),
        DirectOutput::MaxPool2x2(pooled) => pooled
            .par_chunks_mut(out_len / 4)
            .zip(input.par_chunks(in_len))
            .for_each_init(
                || (Vec::new(), vec![0.0; out_len], Vec::new()),
                |(scratch, out, pairs), (pooled, image)| {
                    convolve(scratch, image, out);
                    max_2x2_tiles(d.out_w / 2, out, pooled, pairs);
                },
            ),
    }
}

#[allow(clippy::too_many_arguments)]
fn conv_forward(
    g: &Geometry,
    group: usize,
    num_output: usize,
    d: &ConvDims,
    weights: &[f32],
    sparse: &[Option<Csr>],
    bias: Option<&[f32]>,
    input: &[f32],
    output: &mut [f32],
) {
    let window = g.window(d.channels, d.in_h, d.in_w);
    let in_len = d.channels * d.in_h * d.in_w;
    let spatial = d.out_h * d.out_w;
    let out_len = num_output * spatial;
    let kernel_dim = d.channels / group * g.kernel[0] * g.kernel[1];
    let m = num_output / group;
    if out_len == 0 || d.num == 0 {
        return;
    }
    let add_bias = |out: &mut [f32]| {
        if let Some(bias) = bias {
            for (row, b) in out.chunks_mut(spatial).zip(bias) {
                row.iter_mut().for_each(|v| *v += b);
            }
        }
    };
    // A pruned group multiplies only its nonzero weights (`sparse`, one entry per group; see crate::sparse).
    let sparse_group = |gi: usize| sparse.get(gi).and_then(Option::as_ref);
    if direct_sparse(g, group, sparse) {
        conv_forward_direct(g, group, num_output, d, sparse, bias, input, DirectOutput::Top(output));
        return;
    }
    if g.is_1x1() {
        // The image is its own column matrix (Caffe skips im2col here too).
        output
            .par_chunks_mut(out_len)
            .zip(input.par_chunks(in_len))
            .for_each(|(out, image)| {
                for gi in 0..group {
                    let (b, out) = (&image[gi * kernel_dim * spatial..], &mut out[gi * m * spatial..]);
                    match sparse_group(gi) {
                        Some(csr) => csr.times_dense(b, spatial, out),
                        None => sgemm(
                            false,
                            false,
                            m,
                            spatial,
                            kernel_dim,
                            &weights[gi * m * kernel_dim..],
                            b,
                            out,
                            false,
                        ),
                    }
                }
                add_bias(out);
            });
        return;
    }
    // `batch` images side by side: column matrix (group*kernel_dim) x (batch*spatial).
    let batch = TARGET_COLUMNS.div_ceil(spatial).min(d.num);
    let width = batch * spatial;
    output
        .par_chunks_mut(out_len * batch)
        .zip(input.par_chunks(in_len * batch))
        .for_each_init(
            || {
                (
                    vec![0.0f32; window.col_rows() * width],
                    vec![0.0f32; if batch > 1 { num_output * width } else { 0 }],
                )
            },
            |(col, product), (out_images, in_images)| {
                let images = out_images.len() / out_len;
                let ld = images * spatial;
                for (b, image) in in_images.chunks(in_len).enumerate() {
                    im2col(image, &window, &mut col[b * spatial..], ld);
                }
                // One image writes straight into the output; several go through `product` ((out x images*spatial)),
                // then are scattered to N, C, H, W.
                let target: &mut [f32] = if images == 1 { out_images } else { product };
                for gi in 0..group {
                    let (b, out) = (&col[gi * kernel_dim * ld..], &mut target[gi * m * ld..]);
                    match sparse_group(gi) {
                        Some(csr) => csr.times_dense(b, ld, out),
                        None => sgemm(
                            false,
                            false,
                            m,
                            ld,
                            kernel_dim,
                            &weights[gi * m * kernel_dim..],
                            b,
                            out,
                            false,
                        ),
                    }
                }
                if images > 1 {
                    for (b, out) in out_images.chunks_mut(out_len).enumerate() {
                        for (o, row) in out.chunks_mut(spatial).enumerate() {
                            row.copy_from_slice(&product[o * ld + b * spatial..o * ld + (b + 1) * spatial]);
                        }
                    }
                }
                out_images.chunks_mut(out_len).for_each(add_bias);
            },
        );
}

#[allow(clippy::too_many_arguments)]
fn deconv_forward(
    g: &Geometry,
    group: usize,
    num_output: usize,
    d: &ConvDims,
    weights: &[f32],
    bias: Option<&[f32]>,
    input: &[f32],
    output: &mut [f32],
) {
    // The output image is what a convolution would read: its window maps the output back to the input grid.
    let window = g.window(num_output, d.out_h, d.out_w);
    let in_spatial = d.in_h * d.in_w;
    let in_len = d.channels * in_spatial;
    let out_spatial = d.out_h * d.out_w;
    let out_len = num_output * out_spatial;
    let kernel_dim = num_output / group * g.kernel[0] * g.kernel[1];
    let in_per_group = d.channels / group;
    if out_len == 0 || d.num == 0 {
        return;
    }
    output
        .par_chunks_mut(out_len)
        .zip(input.par_chunks(in_len))
        .for_each_init(
            || vec![0.0f32; window.col_rows() * in_spatial],
            |col, (out_images, in_images)| {
                for (out, image) in out_images.chunks_mut(out_len).zip(in_images.chunks(in_len)) {
                    for gi in 0..group {
                        // col[g] = W[g]^T * input[g], W[g] being (in/group) x kernel_dim.
                        sgemm(
                            true,
                            false,
                            kernel_dim,
                            in_spatial,
                            in_per_group,
                            &weights[gi * in_per_group * kernel_dim..],
                            &image[gi * in_per_group * in_spatial..],
                            &mut col[gi * kernel_dim * in_spatial..],
                            false,
                        );
                    }
                    col2im(col, &window, out);
                    if let Some(bias) = bias {
                        for (row, b) in out.chunks_mut(out_spatial).zip(bias) {
                            row.iter_mut().for_each(|v| *v += b);
                        }
                    }
                }
            },
        );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::{assert_close, param, run};

    fn conv_param(edit: impl FnOnce(&mut ConvolutionParameter)) -> LayerParameter {
        param("Convolution", |p| {
            let mut c = ConvolutionParameter::default();
            edit(&mut c);
            p.convolution_param = Some(c);
        })
    }

    #[test]
    fn lane_sum_adds_in_its_stated_order() {
        // Sum i of 16 takes values i, i + 16, ...; then sums i and i + 8 are added, then i and i + 4, and so on.
        for len in [0, 1, 15, 16, 17, 64, 576, 1000] {
            let values: Vec<f32> = (0..len).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
            let mut lanes = [0.0f32; 16];
            for (i, v) in values.iter().enumerate() {
                lanes[i % 16] += v;
            }
            for width in [8, 4, 2, 1] {
                for i in 0..width {
                    lanes[i] += lanes[i + width];
                }
            }
            assert_eq!(lane_sum(&values).to_bits(), lanes[0].to_bits(), "{len} values");
            let exact: f64 = values.iter().map(|&v| v as f64).sum();
            assert!((lane_sum(&values) as f64 - exact).abs() < 1e-4, "{len} values");
        }
    }

    #[test]
    fn padded_strided_convolution_by_hand() {
        // Input 1x1x3x3 = 1..9, kernel 2x2 of ones, pad 1, stride 2: output 2x2, each a sum of a padded window.
        // Windows (top-left at -1,-1), (-1,1), (1,-1), (1,1): {1}, {2,3}, {4,7}, {5,6,8,9}.
        let p = conv_param(|c| {
            c.num_output = Some(1);
            c.kernel_size = vec![2];
            c.pad = vec![1];
            c.stride = vec![2];
            c.bias_term = Some(false);
        });
        let mut layer = Convolution::new(&p, false).unwrap();
        layer.reshape(&[&[1, 1, 3, 3]]).unwrap();
        layer.params_mut()[0].data_mut().fill(1.0);
        let input = Tensor::new(&[1, 1, 3, 3], (1..=9).map(|v| v as f32).collect());
        let out = run(&mut layer, &[input]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1, 2, 2]);
        assert_close(out[0].data(), &[1.0, 5.0, 11.0, 28.0], 0.0);
    }

    #[test]
    fn grouped_convolution_keeps_groups_apart() {
        // 2 input channels, 2 groups, 1x1 kernels: output c = w_c * input c + b_c, never mixing channels.
        let p = conv_param(|c| {
            c.num_output = Some(2);
            c.kernel_size = vec![1];
            c.group = Some(2);
        });
        let mut layer = Convolution::new(&p, false).unwrap();
        layer.reshape(&[&[1, 2, 1, 2]]).unwrap();
        assert_eq!(layer.params()[0].shape(), &[2, 1, 1, 1]);
        layer.params_mut()[0].data_mut().copy_from_slice(&[2.0, -1.0]);
        layer.params_mut()[1].data_mut().copy_from_slice(&[0.5, 10.0]);
        let input = Tensor::new(&[1, 2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let out = run(&mut layer, &[input]).unwrap();
        assert_close(out[0].data(), &[2.5, 4.5, 7.0, 6.0], 0.0);
    }

    #[test]
    fn grouped_3x3_convolution_matches_a_direct_sum() {
        // 4 in, 6 out, group 2, kernel 3x2 (kernel_h/kernel_w form), pad_h 1, stride_w 2, dilation 1: compare
        // with a direct nested-loop convolution written independently of im2col.
        let p = conv_param(|c| {
            c.num_output = Some(6);
            c.kernel_h = Some(3);
            c.kernel_w = Some(2);
            c.pad_h = Some(1);
            c.pad_w = Some(0);
            c.stride_h = Some(1);
            c.stride_w = Some(2);
            c.group = Some(2);
        });
        let mut layer = Convolution::new(&p, false).unwrap();
        let (n, c, h, w) = (2, 4, 5, 6);
        let shapes = layer.reshape(&[&[n, c, h, w]]).unwrap();
        let (oh, ow) = (5, 3);
        assert_eq!(shapes[0], vec![n, 6, oh, ow]);
        let weights: Vec<f32> = (0..6 * 2 * 3 * 2).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0).collect();
        let bias: Vec<f32> = (0..6).map(|i| i as f32 * 0.25).collect();
        layer.params_mut()[0].data_mut().copy_from_slice(&weights);
        layer.params_mut()[1].data_mut().copy_from_slice(&bias);
        let input: Vec<f32> = (0..n * c * h * w).map(|i| ((i * 5 % 13) as f32 - 6.0) / 3.0).collect();
        let out = run(&mut layer, &[Tensor::new(&[n, c, h, w], input.clone())]).unwrap();
        let mut expected = vec![0.0f32; n * 6 * oh * ow];
        for img in 0..n {
            for o in 0..6 {
                let gi = o / 3;
                for y in 0..oh {
                    for x in 0..ow {
                        let mut acc = bias[o];
                        for ci in 0..2 {
                            let cin = gi * 2 + ci;
                            for ky in 0..3 {
                                for kx in 0..2 {
                                    let iy = y as isize - 1 + ky as isize;
                                    let ix = (x * 2 + kx) as isize;
                                    if iy >= 0 && iy < h as isize && ix < w as isize {
                                        acc += weights[((o * 2 + ci) * 3 + ky) * 2 + kx]
                                            * input[((img * c + cin) * h + iy as usize) * w + ix as usize];
                                    }
                                }
                            }
                        }
                        expected[((img * 6 + o) * oh + y) * ow + x] = acc;
                    }
                }
            }
        }
        assert_close(out[0].data(), &expected, 1e-5);
    }

    #[test]
    fn batched_images_equal_one_image_at_a_time() {
        // 8x8 outputs are batched 4 images per product; 5 images leave a last batch of one.
        let p = conv_param(|c| {
            c.num_output = Some(3);
            c.kernel_size = vec![3];
        });
        let (n, c, h, w) = (5, 2, 10, 10);
        let input: Vec<f32> = (0..n * c * h * w).map(|i| ((i * 7 % 19) as f32 - 9.0) / 5.0).collect();
        let mut whole = Convolution::new(&p, false).unwrap();
        whole.reshape(&[&[n, c, h, w]]).unwrap();
        let weights: Vec<f32> = (0..3 * c * 9).map(|i| ((i * 3 % 7) as f32 - 3.0) / 2.0).collect();
        whole.params_mut()[0].data_mut().copy_from_slice(&weights);
        whole.params_mut()[1].data_mut().copy_from_slice(&[1.0, 2.0, 3.0]);
        let all = run(&mut whole, &[Tensor::new(&[n, c, h, w], input.clone())]).unwrap();
        let image = c * h * w;
        for i in 0..n {
            let one = run(
                &mut whole,
                &[Tensor::new(&[1, c, h, w], input[i * image..(i + 1) * image].to_vec())],
            )
            .unwrap();
            assert_eq!(one[0].data(), &all[0].data()[i * 3 * 64..(i + 1) * 3 * 64], "image {i}");
        }
    }

    #[test]
    fn deconvolution_scatters_each_input_through_the_kernel() {
        // 1x1x2x2 input [[1,2],[3,4]], kernel 2x2 [[1,10],[100,1000]], stride 2: each input pixel paints its own
        // 2x2 block of the 4x4 output, scaled by the kernel.
        let p = param("Deconvolution", |l| {
            l.convolution_param = Some(ConvolutionParameter {
                num_output: Some(1),
                kernel_size: vec![2],
                stride: vec![2],
                bias_term: Some(false),
                ..Default::default()
            })
        });
        let mut layer = Convolution::new(&p, true).unwrap();
        let shapes = layer.reshape(&[&[1, 1, 2, 2]]).unwrap();
        assert_eq!(shapes[0], vec![1, 1, 4, 4]);
        layer.params_mut()[0]
            .data_mut()
            .copy_from_slice(&[1.0, 10.0, 100.0, 1000.0]);
        let out = run(&mut layer, &[Tensor::new(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0])]).unwrap();
        #[rustfmt::skip]
        let expected = [
            1.0, 10.0, 2.0, 20.0,
            100.0, 1000.0, 200.0, 2000.0,
            3.0, 30.0, 4.0, 40.0,
            300.0, 3000.0, 400.0, 4000.0,
        ];
        assert_close(out[0].data(), &expected, 0.0);
    }

    #[test]
    fn overlapping_deconvolution_sums_and_crops_padding() {
        // 1-channel 1x2 input [1, 2], kernel 1x3 of [1, 1, 1], stride 1, pad 1: full output 1x4 is
        // [1, 3, 3, 2]; pad 1 crops one column each side, leaving [3, 3]; plus bias 0.5.
        let p = param("Deconvolution", |l| {
            l.convolution_param = Some(ConvolutionParameter {
                num_output: Some(1),
                kernel_h: Some(1),
                kernel_w: Some(3),
                pad_h: Some(0),
                pad_w: Some(1),
                ..Default::default()
            })
        });
        let mut layer = Convolution::new(&p, true).unwrap();
        let shapes = layer.reshape(&[&[1, 1, 1, 2]]).unwrap();
        assert_eq!(shapes[0], vec![1, 1, 1, 2]);
        layer.params_mut()[0].data_mut().fill(1.0);
        layer.params_mut()[1].data_mut().fill(0.5);
        let out = run(&mut layer, &[Tensor::new(&[1, 1, 1, 2], vec![1.0, 2.0])]).unwrap();
        assert_close(out[0].data(), &[3.5, 3.5], 0.0);
    }

    #[test]
    fn bad_parameters_and_shapes_are_errors() {
        let no_kernel = conv_param(|c| c.num_output = Some(1));
        assert!(matches!(Convolution::new(&no_kernel, false), Err(LayerError::Param(_))));
        let both = conv_param(|c| {
            c.num_output = Some(1);
            c.kernel_size = vec![3];
            c.kernel_h = Some(3);
            c.kernel_w = Some(3);
        });
        assert!(matches!(Convolution::new(&both, false), Err(LayerError::Param(_))));
        let bad_group = conv_param(|c| {
            c.num_output = Some(3);
            c.kernel_size = vec![1];
            c.group = Some(2);
        });
        assert!(matches!(Convolution::new(&bad_group, false), Err(LayerError::Param(_))));
        let ok = conv_param(|c| {
            c.num_output = Some(2);
            c.kernel_size = vec![3];
        });
        let mut layer = Convolution::new(&ok, false).unwrap();
        assert!(
            matches!(layer.reshape(&[&[1, 1, 2, 2]]), Err(LayerError::Shape(_))),
            "input smaller than kernel"
        );
        let mut layer = Convolution::new(&ok, false).unwrap();
        layer.reshape(&[&[1, 3, 5, 5]]).unwrap();
        let err = layer.reshape(&[&[1, 4, 5, 5]]).unwrap_err();
        assert!(err.to_string().contains("incompatible"), "{err}");
    }
}
