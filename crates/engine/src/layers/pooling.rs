//! Pooling: MAX, AVE and STOCHASTIC, global or windowed, with Caffe's ceil-mode output size and clipping rules.

use caffe_proto::pooling_parameter::{PoolMethod, RoundMode};
use caffe_proto::{LayerParameter, Phase, PoolingParameter};
use rayon::prelude::*;

use super::{expect_bottoms, Backward, Layer};
use crate::error::{LayerError, LayerResult};
use crate::rng::SplitMix64;
use crate::simd::widest_vectors;
use crate::Tensor;

/// `Pooling` over the last two axes of a 4-D bottom. A second top (MAX only) receives the flat index (h * W + w)
/// of each maximum within its channel, as Caffe's mask top does.
pub(crate) struct Pooling {
    method: PoolMethod,
    global: bool,
    round_up: bool,
    /// Kernel, pad, stride as (h, w); for global pooling the kernel is set from the bottom at reshape.
    kernel: [usize; 2],
    pad: [usize; 2],
    stride: [usize; 2],
    /// 2 when the mask top is asked for.
    tops: usize,
    dims: Option<PoolDims>,
    /// STOCHASTIC pooling's phase (TRAIN samples, TEST takes the probability-weighted average).
    phase: Phase,
    /// STOCHASTIC in TRAIN: the sampling stream (seeded by the layer name) and, per output of the last forward, the
    /// chosen input's index within its plane (`usize::MAX` for an empty window).
    rng: SplitMix64,
    chosen: Vec<usize>,
}

#[derive(Clone, Copy, Debug)]
struct PoolDims {
    planes: usize,
    height: usize,
    width: usize,
    out_h: usize,
    out_w: usize,
    kernel: [usize; 2],
}

/// The kernel as Caffe reads it: `kernel_size`, or both `kernel_h` and `kernel_w`, never both forms.
fn kernel(what: &str, single: Option<u32>, h: Option<u32>, w: Option<u32>) -> LayerResult<Option<[usize; 2]>> {
    match (single, h, w) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(LayerError::Param(format!(
            "{what} is given both as {what} and as {what}_h/{what}_w"
        ))),
        (Some(v), None, None) => Ok(Some([v as usize, v as usize])),
        (None, Some(h), Some(w)) => Ok(Some([h as usize, w as usize])),
        (None, None, None) => Ok(None),
        _ => Err(LayerError::Param(format!(
            "{what}_h and {what}_w must be given together"
        ))),
    }
}

impl Pooling {
    /// A pooling layer for TEST (used inside other layers, e.g. SPP).
    pub(crate) fn new(param: &LayerParameter, tops: usize) -> LayerResult<Self> {
        Self::new_in(param, tops, Phase::Test)
    }

    /// A pooling layer for `phase`, which STOCHASTIC pooling depends on.
    pub(crate) fn new_in(param: &LayerParameter, tops: usize, phase: Phase) -> LayerResult<Self> {
        let p: PoolingParameter = param.pooling_param.unwrap_or_default();
        let method = p.pool();
        if tops > 1 && method != PoolMethod::Max {
            return Err(LayerError::Arity("only MAX pooling has a second (mask) top".into()));
        }
        let global = p.global_pooling();
        let kernel = kernel("kernel_size", p.kernel_size, p.kernel_h, p.kernel_w)?;
        let kernel = match (global, kernel) {
            (true, Some(_)) => {
                return Err(LayerError::Param(
                    "with global_pooling the kernel size cannot be given".into(),
                ))
            }
            (true, None) => [0, 0],
            (false, None) => {
                return Err(LayerError::Param(
                    "kernel_size (or kernel_h and kernel_w) is required".into(),
                ))
            }
            (false, Some(k)) => k,
        };
        if !global && kernel.contains(&0) {
            return Err(LayerError::Param(format!(
                "kernel dimensions must be positive, got {kernel:?}"
            )));
        }
        // As in Caffe, pad_h/pad_w (stride_h/stride_w) win over pad (stride) when pad_h (stride_h) is present.
        let pad = if p.pad_h.is_some() {
            [p.pad_h(), p.pad_w()]
        } else {
            [p.pad(); 2]
        }
        .map(|v| v as usize);
        let stride = if p.stride_h.is_some() {
            [p.stride_h(), p.stride_w()]
        } else {
            [p.stride(); 2]
        }
        .map(|v| v as usize);
        if stride.contains(&0) {
            return Err(LayerError::Param(format!("stride must be positive, got {stride:?}")));
        }
        if global && (pad != [0, 0] || stride != [1, 1]) {
            return Err(LayerError::Param(
                "with global_pooling, pad must be 0 and stride 1".into(),
            ));
        }
        if !global && (pad[0] >= kernel[0] || pad[1] >= kernel[1]) {
            return Err(LayerError::Param(format!(
                "pad {pad:?} must be smaller than the kernel {kernel:?}"
            )));
        }
        Ok(Pooling {
            method,
            global,
            round_up: p.round_mode() == RoundMode::Ceil,
            kernel,
            pad,
            stride,
            tops,
            dims: None,
            phase,
            rng: SplitMix64::from_name(param.name()),
            chosen: Vec::new(),
        })
    }

    /// Caffe's pooled size: ceil (or floor) of (in + 2 pad - kernel) / stride, plus one; with padding, a last window
    /// starting in the padding is dropped.
    fn pooled(&self, input: usize, dim: usize, kernel: usize) -> LayerResult<usize> {
        let span = input + 2 * self.pad[dim];
        if span < kernel {
            return Err(LayerError::Shape(format!(
                "input extent {input} (padded by {}) is smaller than the kernel {kernel}",
                self.pad[dim]
            )));
        }
        let steps = span - kernel;
        let stride = self.stride[dim];
        let mut out = if self.round_up {
            steps.div_ceil(stride)
        } else {
            steps / stride
        } + 1;
        if self.pad[dim] > 0 && (out - 1) * stride >= input + self.pad[dim] {
            out -= 1;
        }
        Ok(out)
    }
}

impl Layer for Pooling {
    fn type_name(&self) -> &'static str {
        "Pooling"
    }

    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        expect_bottoms(bottoms, 1)?;
        let b = bottoms[0];
        if b.len() != 4 {
            return Err(LayerError::Shape(format!(
                "pooling takes a 4-D (N, C, H, W) bottom, got {b:?}"
            )));
        }
        let kernel = if self.global { [b[2], b[3]] } else { self.kernel };
        let out_h = self.pooled(b[2], 0, kernel[0])?;
        let out_w = self.pooled(b[3], 1, kernel[1])?;
        self.dims = Some(PoolDims {
            planes: b[0] * b[1],
            height: b[2],
            width: b[3],
            out_h,
            out_w,
            kernel,
        });
        Ok(vec![vec![b[0], b[1], out_h, out_w]; self.tops])
    }

    fn is_max_pool_2x2_tiles(&self) -> bool {
        self.dims.is_some_and(|d| {
            let ranges = (
                self.max_ranges(0, d.height, d.out_h, d.kernel[0]),
                self.max_ranges(1, d.width, d.out_w, d.kernel[1]),
            );
            self.method == PoolMethod::Max && self.tops == 1 && tiles_2x2(&d, &ranges)
        })
    }

    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()> {
        let d = self.dims.expect("reshape runs before forward");
        let in_plane = d.height * d.width;
        let out_plane = d.out_h * d.out_w;
        if out_plane == 0 || d.planes == 0 {
            return Ok(());
        }
        let input = bottoms[0].data();
        let (first, rest) = tops.split_at_mut(1);
        let output = first[0].data_mut();
        let planes_per_task = (1usize << 14).div_ceil(in_plane.max(1));
        if self.method == PoolMethod::Stochastic {
            self.stochastic_forward(&d, input, output);
            return Ok(());
        }
        // The windows, once per pass (not per plane).
        let ranges = (
            self.max_ranges(0, d.height, d.out_h, d.kernel[0]),
            self.max_ranges(1, d.width, d.out_w, d.kernel[1]),
        );
        match (self.method, rest.first_mut()) {
            (PoolMethod::Max, Some(mask)) => output
                .par_chunks_mut(out_plane)
                .zip(mask.data_mut().par_chunks_mut(out_plane))
                .zip(input.par_chunks(in_plane))
                .with_min_len(planes_per_task)
                .for_each(|((out, mask), plane)| max_plane(&d, &ranges, plane, out, Some(mask))),
            (PoolMethod::Max, None) if tiles_2x2(&d, &ranges) => output
                .par_chunks_mut(out_plane * planes_per_task)
                .zip(input.par_chunks(in_plane * planes_per_task))
                .for_each_init(Vec::new, |pairs, (out, planes)| {
                    max_2x2_tiles(d.out_w, planes, out, pairs)
                }),
            (PoolMethod::Max, None) => output
                .par_chunks_mut(out_plane)
                .zip(input.par_chunks(in_plane))
                .with_min_len(planes_per_task)
                .for_each(|(out, plane)| max_plane(&d, &ranges, plane, out, None)),
            _ => output
                .par_chunks_mut(out_plane)
                .zip(input.par_chunks(in_plane))
                .with_min_len(planes_per_task)
                .for_each(|(out, plane)| self.ave_plane(&d, plane, out)),
        }
        Ok(())
    }

    fn backward(&mut self, ctx: Backward<'_>) -> LayerResult<()> {
        if !ctx.propagate_down[0] {
            return Ok(());
        }
        let d = self.dims.expect("reshape runs before backward");
        let in_plane = d.height * d.width;
        let out_plane = d.out_h * d.out_w;
        let bottom_diff = ctx.bottom_diffs[0].data_mut();
        if out_plane == 0 || in_plane == 0 || d.planes == 0 {
            bottom_diff.fill(0.0);
            return Ok(());
        }
        let input = ctx.bottoms[0].data();
        let top_diff = ctx.top_diffs[0].data();
        if self.method == PoolMethod::Stochastic {
            if self.phase != Phase::Train || self.chosen.len() != top_diff.len() {
                return Err(LayerError::Unsupported(
                    "STOCHASTIC pooling has a backward pass only after a TRAIN-phase forward".into(),
                ));
            }
            // Each output's diff goes to the input it sampled.
            bottom_diff.fill(0.0);
            for ((plane, diff), top) in self
                .chosen
                .chunks(out_plane)
                .zip(bottom_diff.chunks_mut(in_plane))
                .zip(top_diff.chunks(out_plane))
            {
                for (&i, &g) in plane.iter().zip(top) {
                    if i != usize::MAX {
                        diff[i] += g;
                    }
                }
            }
            return Ok(());
        }
        let planes_per_task = (1usize << 14).div_ceil(in_plane);
        let ranges = (
            self.max_ranges(0, d.height, d.out_h, d.kernel[0]),
            self.max_ranges(1, d.width, d.out_w, d.kernel[1]),
        );
        if self.method == PoolMethod::Max && tiles_2x2(&d, &ranges) {
            // Every input is in exactly one window: each diff is written once, no zero fill first.
            bottom_diff
                .par_chunks_mut(in_plane * planes_per_task)
                .zip(input.par_chunks(in_plane * planes_per_task))
                .zip(top_diff.par_chunks(out_plane * planes_per_task))
                .for_each(|((diff, planes), top)| max_2x2_tiles_backward(d.out_w, planes, top, diff));
            return Ok(());
        }
        bottom_diff
            .par_chunks_mut(in_plane)
            .zip(input.par_chunks(in_plane))
            .zip(top_diff.par_chunks(out_plane))
            .with_min_len(planes_per_task)
            .for_each(|((diff, plane), top)| {
                diff.fill(0.0);
                match self.method {
                    PoolMethod::Max => max_plane_backward(&d, &ranges, plane, top, diff),
                    _ => self.ave_plane_backward(&d, top, diff),
                }
            });
        Ok(())
    }
}

impl Pooling {
    /// STOCHASTIC pooling as Caffe's GPU kernels compute it (Caffe has no CPU version). Windows start at
    /// `p * stride` and are clipped to the input; padding is not applied. TRAIN: with `r` uniform in [0, 1), the
    /// first input (row-major) at which the running sum reaches `r * sum(window)` is taken (inputs are expected
    /// non-negative, e.g. after a ReLU; if the sum is never reached the last input is taken). TEST: the
    /// probability-weighted average `sum x^2 / sum x`, the sum starting from `FLT_MIN` as in Caffe.
    fn stochastic_forward(&mut self, d: &PoolDims, input: &[f32], output: &mut [f32]) {
        let (in_plane, out_plane) = (d.height * d.width, d.out_h * d.out_w);
        let train = self.phase == Phase::Train;
        self.chosen.clear();
        for (plane, out) in input.chunks(in_plane).zip(output.chunks_mut(out_plane)) {
            for ph in 0..d.out_h {
                let h0 = (ph * self.stride[0]).min(d.height);
                let h1 = (h0 + d.kernel[0]).min(d.height);
                for pw in 0..d.out_w {
                    let w0 = (pw * self.stride[1]).min(d.width);
                    let w1 = (w0 + d.kernel[1]).min(d.width);
                    let window = (h0..h1).flat_map(|h| (w0..w1).map(move |w| h * d.width + w));
                    let o = &mut out[ph * d.out_w + pw];
                    if !train {
                        let (mut sum, mut squares) = (f32::MIN_POSITIVE, 0.0f32);
                        for i in window {
                            sum += plane[i];
                            squares += plane[i] * plane[i];
                        }
                        *o = squares / sum;
                        continue;
                    }
                    let total: f32 = window.clone().map(|i| plane[i]).sum();
                    let threshold = self.rng.next_f32() * total;
                    let mut running = 0.0f32;
                    let mut pick = usize::MAX;
                    for i in window {
                        running += plane[i];
                        pick = i;
                        if running >= threshold {
                            break;
                        }
                    }
                    *o = if pick == usize::MAX { 0.0 } else { plane[pick] };
                    self.chosen.push(pick);
                }
            }
        }
    }

    /// The clipped input range `[start, end)` each output position along one axis reads (MAX pooling's windows).
    fn max_ranges(&self, dim: usize, input: usize, outputs: usize, kernel: usize) -> Vec<(usize, usize)> {
        (0..outputs)
            .map(|p| {
                let start = (p * self.stride[dim]) as isize - self.pad[dim] as isize;
                let end = (start + kernel as isize).min(input as isize);
                (start.max(0) as usize, end.max(0) as usize)
            })
            .collect()
    }

    /// AVE backward: each output's diff, divided by its window's pool size, is added to every input it averaged.
    fn ave_plane_backward(&self, d: &PoolDims, top: &[f32], diff: &mut [f32]) {
        let (height, width) = (d.height as isize, d.width as isize);
        let (pad_h, pad_w) = (self.pad[0] as isize, self.pad[1] as isize);
        for ph in 0..d.out_h {
            let hstart = (ph * self.stride[0]) as isize - pad_h;
            let hend = (hstart + d.kernel[0] as isize).min(height + pad_h);
            for pw in 0..d.out_w {
                let wstart = (pw * self.stride[1]) as isize - pad_w;
                let wend = (wstart + d.kernel[1] as isize).min(width + pad_w);
                let pool_size = ((hend - hstart) * (wend - wstart)) as f32;
                let (h0, h1) = (hstart.max(0) as usize, hend.min(height) as usize);
                let (w0, w1) = (wstart.max(0) as usize, wend.min(width) as usize);
                let g = top[ph * d.out_w + pw] / pool_size;
                for h in h0..h1 {
                    diff[h * d.width + w0..h * d.width + w1]
                        .iter_mut()
                        .for_each(|v| *v += g);
                }
            }
        }
    }

    fn ave_plane(&self, d: &PoolDims, plane: &[f32], out: &mut [f32]) {
        let (height, width) = (d.height as isize, d.width as isize);
        let (pad_h, pad_w) = (self.pad[0] as isize, self.pad[1] as isize);
        for ph in 0..d.out_h {
            let hstart = (ph * self.stride[0]) as isize - pad_h;
            let hend = (hstart + d.kernel[0] as isize).min(height + pad_h);
            for pw in 0..d.out_w {
                let wstart = (pw * self.stride[1]) as isize - pad_w;
                let wend = (wstart + d.kernel[1] as isize).min(width + pad_w);
                // The divisor counts padding inside the window but not what lies beyond the padding.
                let pool_size = ((hend - hstart) * (wend - wstart)) as f32;
                let (h0, h1) = (hstart.max(0) as usize, hend.min(height) as usize);
                let (w0, w1) = (wstart.max(0) as usize, wend.min(width) as usize);
                let mut sum = 0.0f32;
                for h in h0..h1 {
                    for w in w0..w1 {
                        sum += plane[h * d.width + w];
                    }
                }
                out[ph * d.out_w + pw] = sum / pool_size;
            }
        }
    }
}

widest_vectors! {
    /// MAX forward of one plane over the windows `(rows, cols)` (each clipped to the input): the maximum, and with a
    /// mask the index of its first strict occurrence.
    fn max_plane(d: &PoolDims, ranges: &WindowRanges, plane: &[f32], out: &mut [f32], mask: Option<&mut [f32]>) {
        let (rows, cols) = ranges;
        let mut mask = mask;
        let pairs = w1_is_pairs(cols);
        for (ph, &(h0, h1)) in rows.iter().enumerate() {
            let out_row = &mut out[ph * d.out_w..(ph + 1) * d.out_w];
            match mask.as_deref_mut() {
                None if pairs && h1 == h0 + 2 => {
                    // 2x2 windows tiling the rows (the usual 2x2, stride 2): the same maxima in the same order, as
                    // straight loops over the two input rows.
                    let w0 = cols[0].0;
                    let r0 = &plane[h0 * d.width + w0..h0 * d.width + w0 + 2 * out_row.len()];
                    let r1 = &plane[(h0 + 1) * d.width + w0..(h0 + 1) * d.width + w0 + 2 * out_row.len()];
                    for ((o, a), b) in out_row.iter_mut().zip(r0.chunks_exact(2)).zip(r1.chunks_exact(2)) {
                        *o = [a[0], a[1], b[0], b[1]].into_iter().fold(-f32::MAX, strict_max);
                    }
                }
                None if pairs => {
                    // 2-wide windows side by side: the same maxima in the same order, without the inner loop's
                    // bookkeeping.
                    for (o, &(w0, _)) in out_row.iter_mut().zip(cols) {
                        let mut best = -f32::MAX;
                        for h in h0..h1 {
                            let at = h * d.width + w0;
                            best = strict_max(strict_max(best, plane[at]), plane[at + 1]);
                        }
                        *o = best;
                    }
                }
                None => {
                    for (o, &(w0, w1)) in out_row.iter_mut().zip(cols) {
                        // Caffe starts from -FLT_MAX and keeps strict maxima.
                        let mut best = -f32::MAX;
                        for h in h0..h1 {
                            for &v in &plane[h * d.width + w0..h * d.width + w1] {
                                best = strict_max(best, v);
                            }
                        }
                        *o = best;
                    }
                }
                Some(mask) => {
                    let mask_row = &mut mask[ph * d.out_w..(ph + 1) * d.out_w];
                    for ((o, m), &(w0, w1)) in out_row.iter_mut().zip(mask_row).zip(cols) {
                        // Index -1 when the window is empty, and the first strict maximum otherwise, as Caffe.
                        let mut best = -f32::MAX;
                        let mut best_index: isize = -1;
                        for h in h0..h1 {
                            for (w, &v) in plane[h * d.width + w0..h * d.width + w1].iter().enumerate() {
                                if v > best {
                                    best = v;
                                    best_index = (h * d.width + w0 + w) as isize;
                                }
                            }
                        }
                        *o = best;
                        *m = best_index as f32;
                    }
                }
            }
        }
    }
}

/// True when the windows are 2x2 squares tiling each plane exactly (kernel 2, stride 2, no padding, even sizes):
/// then consecutive planes form one long run of row pairs, which [`max_2x2_tiles`] pools in two flat passes.
fn tiles_2x2(d: &PoolDims, (rows, cols): &WindowRanges) -> bool {
    let tiled = |ranges: &[(usize, usize)], size: usize| {
        ranges
            .iter()
            .enumerate()
            .all(|(i, &(lo, hi))| lo == 2 * i && hi == 2 * i + 2)
            && size == 2 * ranges.len()
    };
    tiled(rows, d.height) && tiled(cols, d.width)
}

widest_vectors! {
    /// MAX pooling of whole planes (`planes`, any number of them back to back) by 2x2 windows that tile them, `ow`
    /// outputs per row: first the maximum of each horizontal pair over the whole run, then of each vertical pair of
    /// those. Each window keeps its first strict maximum in Caffe's order (row by row; -FLT_MAX when all are NaN):
    /// the first strict maximum of a sequence is that of its first half unless its second half's is greater.
    pub(crate) fn max_2x2_tiles(ow: usize, planes: &[f32], out: &mut [f32], pairs: &mut Vec<f32>) {
        let half = planes.len() / 2;
        if pairs.len() < half {
            pairs.resize(half, 0.0);
        }
        let pairs = &mut pairs[..half];
        for (p, x) in pairs.iter_mut().zip(planes.chunks_exact(2)) {
            *p = strict_max(strict_max(-f32::MAX, x[0]), x[1]);
        }
        for (o, rows) in out.chunks_exact_mut(ow).zip(pairs.chunks_exact(2 * ow)) {
            let (upper, lower) = rows.split_at(ow);
            for ((o, &u), &l) in o.iter_mut().zip(upper).zip(lower) {
                *o = strict_max(u, l);
            }
        }
    }
}

/// MAX backward of one plane (`diff` zeroed): each output's diff goes to the first strict maximum of its window
/// (the argmax forward found; recomputed from the unchanged bottom, as Caffe's mask would give it).
fn max_plane_backward(d: &PoolDims, (rows, cols): &WindowRanges, plane: &[f32], top: &[f32], diff: &mut [f32]) {
    for (ph, &(h0, h1)) in rows.iter().enumerate() {
        for (pw, &(w0, w1)) in cols.iter().enumerate() {
            let mut best = -f32::MAX;
            let mut best_index = usize::MAX;
            for h in h0..h1 {
                for (w, &v) in plane[h * d.width + w0..h * d.width + w1].iter().enumerate() {
                    if v > best {
                        best = v;
                        best_index = h * d.width + w0 + w;
                    }
                }
            }
            if best_index != usize::MAX {
                diff[best_index] += top[ph * d.out_w + pw];
            }
        }
    }
}

widest_vectors! {
    /// MAX backward over 2x2 windows that tile whole planes (see [`max_2x2_tiles`]; `top` holds `ow` diffs per
    /// output row): every input of a window gets +0.0 but its first strict maximum, which gets `0.0 + diff` (what
    /// Caffe's zero fill and `+=` give, a -0.0 diff included); a window of NaN and -inf passes nothing on.
    fn max_2x2_tiles_backward(ow: usize, planes: &[f32], top: &[f32], diff: &mut [f32]) {
        let rows = planes.chunks_exact(4 * ow).zip(diff.chunks_exact_mut(4 * ow)).zip(top.chunks_exact(ow));
        for ((x, dx), t) in rows {
            let (upper, lower) = x.split_at(2 * ow);
            let (d_upper, d_lower) = dx.split_at_mut(2 * ow);
            let windows = upper.chunks_exact(2).zip(lower.chunks_exact(2));
            let diffs = d_upper.chunks_exact_mut(2).zip(d_lower.chunks_exact_mut(2));
            for (((u, l), (du, dl)), &g) in windows.zip(diffs).zip(t) {
                // Selections as bit masks, not branches: which input wins depends on the data.
                let take_a = u[0] > -f32::MAX;
                let best = select(take_a, u[0], -f32::MAX);
                let take_b = u[1] > best;
                let best = select(take_b, u[1], best);
                let take_c = l[0] > best;
                let best = select(take_c, l[0], best);
                let take_e = l[1] > best;
                let g = 0.0 + g;
                du[0] = select(take_a & !take_b & !take_c & !take_e, g, 0.0);
                du[1] = select(take_b & !take_c & !take_e, g, 0.0);
                dl[0] = select(take_c & !take_e, g, 0.0);
                dl[1] = select(take_e, g, 0.0);
            }
        }
    }
}

/// `if take { a } else { b }` as bit operations, so the compiler emits no branch for it.
#[inline(always)]
fn select(take: bool, a: f32, b: f32) -> f32 {
    let mask = (take as u32).wrapping_neg();
    f32::from_bits((a.to_bits() & mask) | (b.to_bits() & !mask))
}

/// Caffe's step of a MAX window, `if (v > best) best = v`: NaN never wins, and of equal values (+0 and -0) the
/// first stays.
#[inline(always)]
fn strict_max(best: f32, v: f32) -> f32 {
    if v > best {
        v
    } else {
        best
    }
}

/// Clipped window ranges along the rows and along the columns.
type WindowRanges = (Vec<(usize, usize)>, Vec<(usize, usize)>);

/// True when the column windows are two wide and side by side (stride 2, no clipping).
fn w1_is_pairs(cols: &[(usize, usize)]) -> bool {
    cols.iter().all(|&(w0, w1)| w1 == w0 + 2) && cols.windows(2).all(|p| p[1].0 == p[0].0 + 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::{assert_close, param, run};

    fn pool(edit: impl FnOnce(&mut PoolingParameter)) -> Pooling {
        let p = param("Pooling", |l| {
            let mut pp = PoolingParameter::default();
            edit(&mut pp);
            l.pooling_param = Some(pp);
        });
        Pooling::new(&p, 1).unwrap()
    }

    fn ramp(shape: &[usize]) -> Tensor {
        let n = shape.iter().product::<usize>();
        Tensor::new(shape, (1..=n).map(|v| v as f32).collect())
    }

    #[test]
    fn ceil_mode_adds_a_partial_last_window() {
        // 5x5 input, kernel 2, stride 2: ceil((5-2)/2)+1 = 3 (floor mode would give 2); the last row/column window
        // holds one input row/column.
        let mut layer = pool(|p| {
            p.pool = Some(PoolMethod::Max as i32);
            p.kernel_size = Some(2);
            p.stride = Some(2);
        });
        let out = run(&mut layer, &[ramp(&[1, 1, 5, 5])]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1, 3, 3]);
        assert_close(
            out[0].data(),
            &[7.0, 9.0, 10.0, 17.0, 19.0, 20.0, 22.0, 24.0, 25.0],
            0.0,
        );
        let mut floor = pool(|p| {
            p.kernel_size = Some(2);
            p.stride = Some(2);
            p.round_mode = Some(RoundMode::Floor as i32);
        });
        assert_eq!(floor.reshape(&[&[1, 1, 5, 5]]).unwrap()[0], vec![1, 1, 2, 2]);
    }

    #[test]
    fn average_divides_by_the_padded_window_clipped_at_the_padding() {
        // 3x3 input 1..9, kernel 3, stride 2, pad 1: ceil((3+2-3)/2)+1 = 2; no window starts in the padding.
        // Window (0,0) covers rows -1..2, cols -1..2: size 9 (3x3, all inside image+pad), sum 1+2+4+5 = 12.
        // Window (0,1) covers cols 1..4 clipped to 1..4 (width + pad = 4): size 9, sum 2+3+5+6 = 16.
        // Window (1,1): rows/cols 1..4: size 9, sum 5+6+8+9 = 28.
        let mut layer = pool(|p| {
            p.pool = Some(PoolMethod::Ave as i32);
            p.kernel_size = Some(3);
            p.stride = Some(2);
            p.pad = Some(1);
        });
        let out = run(&mut layer, &[ramp(&[1, 1, 3, 3])]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1, 2, 2]);
        assert_close(out[0].data(), &[12.0 / 9.0, 16.0 / 9.0, 24.0 / 9.0, 28.0 / 9.0], 1e-6);
    }

    #[test]
    fn a_window_starting_in_the_padding_is_dropped_and_the_divisor_clips() {
        // 4x4 input, kernel 2, stride 2, pad 1: ceil((4+2-2)/2)+1 = 3, and the 3rd window starts at 3 < 4+1, kept.
        // AVE windows along one axis: [-1,1) size 2, [1,3) size 2, [3,5) size 2 (5 = 4 + pad, not clipped).
        // So every divisor is 4 even though corner windows hold only one real pixel.
        let mut layer = pool(|p| {
            p.pool = Some(PoolMethod::Ave as i32);
            p.kernel_size = Some(2);
            p.stride = Some(2);
            p.pad = Some(1);
        });
        let out = run(&mut layer, &[ramp(&[1, 1, 4, 4])]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1, 3, 3]);
        let expected = [
            1.0,
            2.0 + 3.0,
            4.0,
            5.0 + 9.0,
            6.0 + 7.0 + 10.0 + 11.0,
            8.0 + 12.0,
            13.0,
            14.0 + 15.0,
            16.0,
        ];
        let expected: Vec<f32> = expected.iter().map(|v| v / 4.0).collect();
        assert_close(out[0].data(), &expected, 1e-6);
        // 3x3 input, kernel 2, stride 2, pad 1: ceil((3+2-2)/2)+1 = 3 but the 3rd window would start at 4 >= 3+1,
        // inside the padding only, so Caffe drops it: 2x2.
        let mut layer = pool(|p| {
            p.kernel_size = Some(2);
            p.stride = Some(2);
            p.pad = Some(1);
        });
        assert_eq!(layer.reshape(&[&[1, 1, 3, 3]]).unwrap()[0], vec![1, 1, 2, 2]);
    }

    #[test]
    fn global_pooling_and_the_max_mask() {
        let mut ave = pool(|p| {
            p.pool = Some(PoolMethod::Ave as i32);
            p.global_pooling = Some(true);
        });
        let out = run(&mut ave, &[ramp(&[1, 2, 2, 3])]).unwrap();
        assert_eq!(out[0].shape(), &[1, 2, 1, 1]);
        assert_close(out[0].data(), &[3.5, 9.5], 1e-6);
        // Max with a mask top: ties keep the first maximum.
        let mut max = Pooling::new(
            &param("Pooling", |l| {
                l.pooling_param = Some(PoolingParameter {
                    kernel_size: Some(2),
                    stride: Some(2),
                    ..Default::default()
                })
            }),
            2,
        )
        .unwrap();
        max.reshape(&[&[1, 1, 2, 2]]).unwrap();
        let input = Tensor::new(&[1, 1, 2, 2], vec![1.0, 5.0, 5.0, -2.0]);
        let mut tops = vec![Tensor::zeros(&[1, 1, 1, 1]), Tensor::zeros(&[1, 1, 1, 1])];
        max.forward(&[&input], &mut tops).unwrap();
        assert_eq!((tops[0].data()[0], tops[1].data()[0]), (5.0, 1.0));
    }

    #[test]
    fn stochastic_pooling_test_average_and_train_samples() {
        let p = param("Pooling", |l| {
            l.pooling_param = Some(PoolingParameter {
                pool: Some(PoolMethod::Stochastic as i32),
                kernel_size: Some(2),
                stride: Some(2),
                ..Default::default()
            })
        });
        let input = Tensor::new(&[1, 1, 2, 4], vec![1.0, 3.0, 0.0, 0.0, 2.0, 4.0, 0.0, 5.0]);
        let mut test = Pooling::new_in(&p, 1, Phase::Test).unwrap();
        let out = run(&mut test, std::slice::from_ref(&input)).unwrap();
        // (1 + 9 + 4 + 16) / (1 + 3 + 2 + 4) = 3; (25) / (5) = 5.
        assert_close(out[0].data(), &[3.0, 5.0], 1e-6);
        let mut train = Pooling::new_in(&p, 1, Phase::Train).unwrap();
        // The second window has one non-zero value: it is always the one sampled.
        let mut counts = [0usize; 4];
        for _ in 0..400 {
            let out = run(&mut train, std::slice::from_ref(&input)).unwrap();
            assert_eq!(out[0].data()[1], 5.0);
            let v = out[0].data()[0];
            counts[[1.0, 3.0, 2.0, 4.0].iter().position(|&x| x == v).unwrap()] += 1;
        }
        // Sampled in proportion to the values 1 : 3 : 2 : 4 (of 400: about 40, 120, 80, 160).
        assert!(
            counts.iter().zip([40, 120, 80, 160]).all(|(&c, e)| c.abs_diff(e) < 45),
            "{counts:?}"
        );
        // Backward sends each output's diff to the sampled input.
        let top_diff = Tensor::new(&[1, 1, 1, 2], vec![1.0, 2.0]);
        let out = run(&mut train, std::slice::from_ref(&input)).unwrap();
        let mut diffs = vec![Tensor::zeros(input.shape())];
        train
            .backward(Backward {
                tops: &[&out[0]],
                top_diffs: &[&top_diff],
                bottoms: &[&input],
                propagate_down: &[true],
                bottom_diffs: &mut diffs,
                param_propagate_down: &[],
                param_diffs: &mut [],
            })
            .unwrap();
        assert_eq!(diffs[0].data()[7], 2.0);
        assert_eq!(diffs[0].data().iter().sum::<f32>(), 3.0);
    }

    #[test]
    fn tiled_2x2_max_keeps_caffes_first_strict_maximum() {
        // NaN never wins, -FLT_MAX when a window is all NaN, and of +0 and -0 the first one stays, as Caffe's
        // `if (v > top)` loop gives; two planes of 4x6 back to back.
        let values = [f32::NAN, -0.0, 0.0, 1.0, -1.0, 1.0, -0.0, f32::NAN, 2.5, -f32::MAX];
        let mut planes: Vec<f32> = (0..48).map(|i| values[(i * 7 + i / 5) % values.len()]).collect();
        let (height, width) = (4, 6);
        for i in [24, 25, 30, 31] {
            planes[i] = f32::NAN; // the second plane's first window
        }
        let mut expected = Vec::new();
        for plane in planes.chunks(height * width) {
            for ph in 0..height / 2 {
                for pw in 0..width / 2 {
                    let mut best = -f32::MAX;
                    for h in 2 * ph..2 * ph + 2 {
                        for w in 2 * pw..2 * pw + 2 {
                            if plane[h * width + w] > best {
                                best = plane[h * width + w];
                            }
                        }
                    }
                    expected.push(best);
                }
            }
        }
        let mut out = vec![f32::NAN; expected.len()];
        max_2x2_tiles(width / 2, &planes, &mut out, &mut Vec::new());
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&out), bits(&expected));
        assert!(
            expected.iter().any(|v| v.to_bits() == (-0.0f32).to_bits()),
            "the data has a -0 maximum"
        );
        assert!(expected.contains(&-f32::MAX), "the data has an all-NaN window");
    }

    #[test]
    fn tiled_2x2_max_backward_is_caffes_zero_fill_and_add() {
        // Caffe: bottom_diff = 0, then bottom_diff[argmax] += top_diff, the argmax being the first strict maximum
        // from -FLT_MAX (none for a window of NaN and -inf). Two planes of 4x6 with NaN, -inf, +-0 and ties, and
        // -0.0 among the diffs (0.0 + -0.0 is +0.0).
        let values = [
            f32::NAN,
            -0.0,
            0.0,
            1.0,
            -1.0,
            1.0,
            f32::NEG_INFINITY,
            f32::NAN,
            2.5,
            -f32::MAX,
        ];
        let mut planes: Vec<f32> = (0..48).map(|i| values[(i * 7 + i / 5) % values.len()]).collect();
        let (height, width) = (4, 6);
        for (i, v) in [(24, f32::NAN), (25, f32::NEG_INFINITY), (30, f32::NAN), (31, f32::NAN)] {
            planes[i] = v; // the second plane's first window passes nothing on
        }
        let top: Vec<f32> = (0..12)
            .map(|i| if i % 5 == 2 { -0.0 } else { i as f32 - 5.5 })
            .collect();
        let mut expected = vec![0.0f32; planes.len()];
        for (p, plane) in planes.chunks(height * width).enumerate() {
            for ph in 0..height / 2 {
                for pw in 0..width / 2 {
                    let (mut best, mut at) = (-f32::MAX, None);
                    for h in 2 * ph..2 * ph + 2 {
                        for w in 2 * pw..2 * pw + 2 {
                            if plane[h * width + w] > best {
                                best = plane[h * width + w];
                                at = Some(h * width + w);
                            }
                        }
                    }
                    if let Some(at) = at {
                        expected[p * height * width + at] += top[p * 6 + ph * 3 + pw];
                    }
                }
            }
        }
        let mut diff = vec![f32::NAN; planes.len()];
        max_2x2_tiles_backward(width / 2, &planes, &top, &mut diff);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&diff), bits(&expected));
        assert_eq!(
            expected[24..26],
            [0.0, 0.0],
            "the NaN and -inf window passes nothing on"
        );
    }

    #[test]
    fn invalid_settings_are_errors() {
        for edit in [
            (|p: &mut PoolingParameter| p.stride = Some(1)) as fn(&mut PoolingParameter),
            |p| {
                p.kernel_size = Some(2);
                p.pad = Some(2);
            },
            |p| {
                p.global_pooling = Some(true);
                p.kernel_size = Some(2);
            },
            |p| {
                p.kernel_size = Some(2);
                p.kernel_h = Some(2);
            },
        ] {
            let p = param("Pooling", |l| {
                let mut pp = PoolingParameter::default();
                edit(&mut pp);
                l.pooling_param = Some(pp);
            });
            assert!(matches!(Pooling::new(&p, 1), Err(LayerError::Param(_))));
        }
    }
}
