//! Sparse weights: pruned layers multiply only their nonzero weights.
//!
//! A layer whose weight matrix is mostly zeros (Deep Compression keeps 1-30% per layer) builds a compressed-row
//! copy of it and multiplies that instead of running the dense product: each nonzero weight adds its multiple of
//! one row of the other operand to one output row; a convolution goes straight over the image, without the column
//! matrix. Below a measured density ([`CONV_CROSSOVER`], [`INNER_PRODUCT_CROSSOVER`]) this beats the dense
//! GEMM (measured: `cargo bench -p engine --bench sparse`). The compressed copy is kept between forwards
//! and dropped whenever the layer hands out its parameters for writing (loading, pruning, a solver step), so it is
//! always the weights' own.
//!
//! Each output element sums its terms in the order of the nonzeros, one multiply and one add each (no fused
//! multiply-add), so the result is the same on every CPU and with any thread count.

use crate::simd::widest_vectors;
use std::sync::atomic::{AtomicU64, Ordering};

/// Weight density (nonzeros / all) below which a Convolution multiplies sparsely. Measured on this project's 2-core
/// machine with `cargo bench -p engine --bench sparse` (batch 100, one thread, against the AVX-512 GEMM): the
/// direct sparse convolution of LeNet's conv2 wins up to about 60% nonzeros (2.47 ms at 33% against 3.72 ms dense;
/// 0.28 ms at 2%), conv1's at every density measured (0.62 ms at 60% against 0.74 ms).
pub const CONV_CROSSOVER: f64 = 0.5;

/// Weight density below which an InnerProduct multiplies sparsely. Same bench: LeNet's ip1 wins up to about 12%
/// with two threads (0.34 ms at 10%, 0.58 ms at 20%, against 0.43 ms dense; 0.16 ms at 2%).
pub const INNER_PRODUCT_CROSSOVER: f64 = 0.12;

/// A process-wide override of both crossovers (f64 bits; NaN: none).
static OVERRIDE: AtomicU64 = AtomicU64::new(u64::MAX);

/// The density below which a layer multiplies sparsely: `default` ([`CONV_CROSSOVER`] or
/// [`INNER_PRODUCT_CROSSOVER`]) unless [`set_sparse_crossover`] overrides it.
pub fn sparse_crossover(default: f64) -> f64 {
    let value = f64::from_bits(OVERRIDE.load(Ordering::Relaxed));
    if value.is_nan() {
        default
    } else {
        value
    }
}

/// Overrides the crossover density of every layer for the whole process: `Some(0.0)` always takes the dense
/// product, `Some(2.0)` always the sparse one (benchmarks compare the two this way), `None` restores the measured
/// defaults.
pub fn set_sparse_crossover(density: Option<f64>) {
    OVERRIDE.store(density.unwrap_or(f64::NAN).to_bits(), Ordering::Relaxed);
}

/// A row-major `rows x cols` matrix in compressed-row form.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Csr {
    rows: usize,
    cols: usize,
    /// `row_start[r]..row_start[r + 1]` are row r's entries.
    row_start: Vec<u32>,
    col: Vec<u32>,
    value: Vec<f32>,
}

impl Csr {
    /// The compressed copy of `dense` (`rows x cols`, row-major) when its density is below `max_density`. One pass
    /// that gives up as soon as the nonzeros pass the limit, so dense weights cost a fraction of a scan.
    pub(crate) fn build_if_sparse(dense: &[f32], rows: usize, cols: usize, max_density: f64) -> Option<Csr> {
        debug_assert_eq!(dense.len(), rows * cols);
        if dense.is_empty() || u32::try_from(dense.len()).is_err() {
            return None;
        }
        // Strictly fewer nonzeros than this.
        let limit = (max_density * dense.len() as f64).ceil().min(dense.len() as f64 + 1.0) as usize;
        let mut csr = Csr {
            rows,
            cols,
            row_start: Vec::with_capacity(rows + 1),
            col: Vec::new(),
            value: Vec::new(),
        };
        csr.row_start.push(0);
        for row in dense.chunks(cols) {
            for (c, &w) in row.iter().enumerate() {
                if w != 0.0 {
                    csr.col.push(c as u32);
                    csr.value.push(w);
                }
            }
            if csr.col.len() >= limit {
                return None;
            }
            csr.row_start.push(csr.col.len() as u32);
        }
        Some(csr)
    }

    /// Number of stored (nonzero) entries.
    #[cfg(test)]
    pub(crate) fn nonzeros(&self) -> usize {
        self.value.len()
    }

    /// `out (rows x ld) = self (rows x cols) * b (cols x ld)`, `b` and `out` row-major with row stride `ld`
    /// (overwritten, not accumulated).
    pub(crate) fn times_dense(&self, b: &[f32], ld: usize, out: &mut [f32]) {
        debug_assert!(b.len() >= self.cols * ld && out.len() >= self.rows * ld);
        times_dense(self, b, ld, out);
    }

    /// `out (cols x ld) = self^T (cols x rows) * b (rows x ld)`, `b` and `out` row-major with row stride `ld`
    /// (overwritten): the backward product of a pruned layer, each nonzero weight adding its multiple of one row of
    /// `b` to one output row. Each output sums its terms in the order of the weight rows.
    pub(crate) fn transpose_times_dense(&self, b: &[f32], ld: usize, out: &mut [f32]) {
        debug_assert!(b.len() >= self.rows * ld && out.len() >= self.cols * ld);
        transpose_times_dense(self, b, ld, out);
    }

    /// `out (m x cols) = a (m x rows) * self` (an InnerProduct's bottom gradient, `a` its top gradient): the
    /// transposed form of [`Csr::transpose_times_dense`] through `scratch`, as [`Csr::dense_times_transpose`].
    pub(crate) fn dense_times(&self, a: &[f32], m: usize, out: &mut [f32], scratch: &mut Vec<f32>) {
        debug_assert!(a.len() >= m * self.rows && out.len() >= m * self.cols);
        scratch.clear();
        scratch.resize((self.rows + self.cols) * m, 0.0);
        let (at, product) = scratch.split_at_mut(self.rows * m);
        transpose(&a[..m * self.rows], m, self.rows, at);
        self.transpose_times_dense(at, m, product);
        transpose(product, self.cols, m, &mut out[..m * self.cols]);
    }

    /// `out (m x rows) = a (m x cols) * self^T` (an InnerProduct with weights `rows x cols`): `a` is transposed
    /// into `scratch` so that each nonzero weight scales one contiguous row of `m` inputs, and the `rows x m`
    /// product is transposed into `out`. Each output sums its terms in the order of its row's nonzeros.
    pub(crate) fn dense_times_transpose(&self, a: &[f32], m: usize, out: &mut [f32], scratch: &mut Vec<f32>) {
        debug_assert!(a.len() >= m * self.cols && out.len() >= m * self.rows);
        scratch.clear();
        scratch.resize((self.cols + self.rows) * m, 0.0);
        let (at, product) = scratch.split_at_mut(self.cols * m);
        transpose(&a[..m * self.cols], m, self.cols, at);
        self.times_dense(at, m, product);
        transpose(product, self.rows, m, &mut out[..m * self.rows]);
    }
}

/// A layer's sparse form of its weights, kept between forwards: built at the first forward after the weights could
/// have changed (the layer drops it whenever it hands out its parameters for writing) or after the crossover moved.
#[derive(Debug, Default)]
pub(crate) struct SparseCache {
    /// The crossover it was built for, and per group the compressed weights (`None`: that group stays dense).
    built: Option<(f64, Vec<Option<Csr>>)>,
}

impl SparseCache {
    /// Forgets the sparse form (the weights are about to change).
    pub(crate) fn invalidate(&mut self) {
        self.built = None;
    }

    /// Per group (`groups` blocks of `rows x cols` in `weights`), the compressed weights of the groups below the
    /// crossover density (`default_crossover` unless overridden).
    pub(crate) fn groups(
        &mut self,
        weights: &[f32],
        groups: usize,
        (rows, cols): (usize, usize),
        default_crossover: f64,
    ) -> &[Option<Csr>] {
        let crossover = sparse_crossover(default_crossover);
        if self.built.as_ref().is_none_or(|(c, _)| *c != crossover) {
            let block = rows * cols;
            let csrs = (0..groups)
                .map(|g| Csr::build_if_sparse(&weights[g * block..(g + 1) * block], rows, cols, crossover))
                .collect();
            self.built = Some((crossover, csrs));
        }
        self.built.as_ref().map_or(&[], |(_, csrs)| csrs)
    }
}

/// The geometry of a 2-D convolution for [`Csr::convolve`]: input channels and size, output size, kernel, stride,
/// padding and dilation (per axis: height, width).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvShape {
    pub channels: usize,
    pub input: [usize; 2],
    pub output: [usize; 2],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pad: [usize; 2],
    pub dilation: [usize; 2],
}

/// Where each nonzero filter tap reads, worked out once per forward for [`Csr::convolve`].
pub(crate) struct ConvPlan {
    shape: ConvShape,
    /// Stride 1 on both axes: each tap is one long multiply-add over the (padded) image.
    wide: bool,
    /// Padded input size.
    padded: [usize; 2],
    /// Per nonzero: with `wide`, its offset in the padded image (channel, row and column of the tap); otherwise
    /// its channel, kernel row and kernel column packed as `(c * kh + ki) * kw + kj` (the filter column itself).
    offsets: Vec<usize>,
}

impl ConvPlan {
    /// Values each stride-1 tap multiplies: `(OH - 1) * Wp + OW`, the output on rows as wide as the padded input.
    fn run(&self) -> usize {
        let [oh, ow] = self.shape.output;
        (oh - 1) * self.padded[1] + ow
    }
}

impl Csr {
    /// The reading plan of these filters (`outputs x (channels * kh * kw)`, Caffe's layout) over images of shape `s`.
    pub(crate) fn conv_plan(&self, s: &ConvShape) -> ConvPlan {
        let wide = s.stride == [1, 1];
        let padded = [s.input[0] + 2 * s.pad[0], s.input[1] + 2 * s.pad[1]];
        let taps = s.kernel[0] * s.kernel[1];
        let offsets = self
            .col
            .iter()
            .map(|&col| {
                let col = col as usize;
                if !wide {
                    return col;
                }
                let (c, tap) = (col / taps, col % taps);
                let (ki, kj) = (tap / s.kernel[1], tap % s.kernel[1]);
                (c * padded[0] + ki * s.dilation[0]) * padded[1] + kj * s.dilation[1]
            })
            .collect();
        ConvPlan {
            shape: *s,
            wide,
            padded,
            offsets,
        }
    }

    /// A direct convolution of one image by sparse filters: `image` is `channels x H x W`, `out` is
    /// `outputs x OH x OW` (overwritten); no column matrix is built. Each output sums its taps in the order of the
    /// filter's nonzeros, one multiply and one add each, which gives the bits of the definition (a padded zero adds
    /// +0 or -0 to a sum that is never -0).
    ///
    /// With stride 1 each tap is a single multiply-add of `(OH - 1) * Wp + OW` values: the output is computed on
    /// rows as wide as the padded input (the extra columns are never read back), so that the input under a tap is
    /// one contiguous run. Other strides go row by row. `bias` (one per output) is added to each finished sum, as
    /// Caffe adds it after the product.
    pub(crate) fn convolve(
        &self,
        plan: &ConvPlan,
        image: &[f32],
        bias: Option<&[f32]>,
        out: &mut [f32],
        scratch: &mut Vec<f32>,
    ) {
        let s = &plan.shape;
        if !plan.wide {
            convolve_strided(self, s, image, bias, out);
            return;
        }
        let [hp, wp] = plan.padded;
        let run = plan.run();
        // The image in a zeroed buffer with its padding around it and a few zeros after it, so that every tap may
        // read whole blocks of LANES values (the extra sums land in columns that are never read back).
        let source_len = s.channels * hp * wp + (run.next_multiple_of(LANES) - run);
        scratch.clear();
        scratch.resize(source_len + run.next_multiple_of(LANES), 0.0);
        let (source, wide) = scratch.split_at_mut(source_len);
        let [h, w] = s.input;
        for c in 0..s.channels {
            for y in 0..h {
                let at = (c * hp + y + s.pad[0]) * wp + s.pad[1];
                source[at..at + w].copy_from_slice(&image[(c * h + y) * w..(c * h + y + 1) * w]);
            }
        }
        convolve_wide(self, plan, source, bias, wide, out);
    }
}

/// Values per block of [`convolve_wide`]: one AVX-512 vector (two AVX2 ones, four SSE2 ones), so that no sum is
/// left to a narrower remainder loop.
const LANES: usize = 16;

/// The innermost step of [`convolve_wide`] in one instruction set: `B` blocks of [`LANES`] sums, each
/// `((0 + w[0] * x[at[0] + i]) + w[1] * x[at[1] + i]) + ...` over all of an output's taps in order, a multiply and
/// an add each (never fused), so every set gives the same bits. The `B` sums of a block stay in registers through
/// all the taps, and the `B` blocks are independent chains, so the adds do not wait on each other. (Written with
/// intrinsics: the compiler, given plain loops over fixed-size blocks, vectorises across blocks with gathers.)
trait TapKernel {
    /// Writes the `B * LANES` sums for positions `first..first + B * LANES` of the run to `out`.
    ///
    /// # Safety
    /// The CPU has the kernel's instructions; `source` holds `at[k] + first + B * LANES` values for every `k`, `out`
    /// holds `B * LANES`, and `w` and `at` have the same length.
    unsafe fn sums<const B: usize>(w: &[f32], at: &[usize], source: *const f32, first: usize, out: *mut f32);
}

/// Plain Rust (the baseline's 4-wide vectors).
struct PortableTaps;

impl TapKernel for PortableTaps {
    #[inline(always)]
    unsafe fn sums<const B: usize>(w: &[f32], at: &[usize], source: *const f32, first: usize, out: *mut f32) {
        let mut sums = [[0.0f32; LANES]; B];
        for (&w, &at) in w.iter().zip(at) {
            for (j, block) in sums.iter_mut().enumerate() {
                // SAFETY: the caller's promise on `source`.
                let x = unsafe { &*(source.add(at + first + j * LANES) as *const [f32; LANES]) };
                for i in 0..LANES {
                    block[i] += w * x[i];
                }
            }
        }
        // SAFETY: the caller's promise on `out`.
        unsafe { std::ptr::copy_nonoverlapping(sums.as_ptr() as *const f32, out, B * LANES) };
    }
}

/// One 512-bit vector per block.
#[cfg(target_arch = "x86_64")]
struct Avx512Taps;

#[cfg(target_arch = "x86_64")]
impl TapKernel for Avx512Taps {
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn sums<const B: usize>(w: &[f32], at: &[usize], source: *const f32, first: usize, out: *mut f32) {
        use std::arch::x86_64::*;
        // SAFETY: the addresses are the caller's promise; AVX-512F too.
        unsafe {
            let mut sums = [_mm512_setzero_ps(); B];
            for (&w, &at) in w.iter().zip(at) {
                let w = _mm512_set1_ps(w);
                let x = source.add(at + first);
                for (j, sum) in sums.iter_mut().enumerate() {
                    *sum = _mm512_add_ps(*sum, _mm512_mul_ps(w, _mm512_loadu_ps(x.add(j * LANES))));
                }
            }
            for (j, sum) in sums.iter().enumerate() {
                _mm512_storeu_ps(out.add(j * LANES), *sum);
            }
        }
    }
}

/// Two 256-bit vectors per block.
#[cfg(target_arch = "x86_64")]
struct Avx2Taps;

#[cfg(target_arch = "x86_64")]
impl TapKernel for Avx2Taps {
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn sums<const B: usize>(w: &[f32], at: &[usize], source: *const f32, first: usize, out: *mut f32) {
        use std::arch::x86_64::*;
        // SAFETY: the addresses are the caller's promise; AVX2 too.
        unsafe {
            let mut sums = [[_mm256_setzero_ps(); 2]; B];
            for (&w, &at) in w.iter().zip(at) {
                let w = _mm256_set1_ps(w);
                let x = source.add(at + first);
                for (j, sum) in sums.iter_mut().enumerate() {
                    for (h, half) in sum.iter_mut().enumerate() {
                        let v = _mm256_loadu_ps(x.add(j * LANES + h * 8));
                        *half = _mm256_add_ps(*half, _mm256_mul_ps(w, v));
                    }
                }
            }
            for (j, sum) in sums.iter().enumerate() {
                for (h, half) in sum.iter().enumerate() {
                    _mm256_storeu_ps(out.add(j * LANES + h * 8), *half);
                }
            }
        }
    }
}

/// The stride-1 accumulation of [`Csr::convolve`]: per output plane, each tap's multiple of its run of `source`
/// added into `wide` (`OH` rows as wide as the padded input, rounded up to whole blocks of [`LANES`]), then the
/// plane's columns copied out with the bias added. Runs the widest [`TapKernel`] the CPU has.
fn convolve_wide(csr: &Csr, plan: &ConvPlan, source: &[f32], bias: Option<&[f32]>, wide: &mut [f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512(c: &Csr, p: &ConvPlan, s: &[f32], b: Option<&[f32]>, w: &mut [f32], o: &mut [f32]) {
            // SAFETY: this function's own promise.
            unsafe { convolve_wide_with::<Avx512Taps>(c, p, s, b, w, o) }
        }
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(c: &Csr, p: &ConvPlan, s: &[f32], b: Option<&[f32]>, w: &mut [f32], o: &mut [f32]) {
            // SAFETY: this function's own promise.
            unsafe { convolve_wide_with::<Avx2Taps>(c, p, s, b, w, o) }
        }
        match crate::simd::widest() {
            // SAFETY: the CPU has AVX-512F (detected at run time).
            crate::simd::Vectors::Avx512 => return unsafe { avx512(csr, plan, source, bias, wide, out) },
            // SAFETY: the CPU has AVX2 (detected at run time).
            crate::simd::Vectors::Avx2 => return unsafe { avx2(csr, plan, source, bias, wide, out) },
            crate::simd::Vectors::Baseline => {}
        }
    }
    // SAFETY: the portable kernel needs nothing.
    unsafe { convolve_wide_with::<PortableTaps>(csr, plan, source, bias, wide, out) }
}

/// [`convolve_wide`] with the kernel `K`.
///
/// # Safety
/// The CPU has `K`'s instructions.
#[inline(always)]
unsafe fn convolve_wide_with<K: TapKernel>(
    csr: &Csr,
    plan: &ConvPlan,
    source: &[f32],
    bias: Option<&[f32]>,
    wide: &mut [f32],
    out: &mut [f32],
) {
    let [oh, ow] = plan.shape.output;
    let wp = plan.padded[1];
    let len = plan.run().next_multiple_of(LANES);
    // Every tap reads `len` values from its offset: checked once here for the kernels' unchecked loads.
    assert!(plan.offsets.iter().all(|&at| at + len <= source.len()) && wide.len() >= len);
    for (o, plane) in out.chunks_mut(oh * ow).take(csr.rows).enumerate() {
        let (start, end) = (csr.row_start[o] as usize, csr.row_start[o + 1] as usize);
        let (at, w) = (&plan.offsets[start..end], &csr.value[start..end]);
        let (source, acc) = (source.as_ptr(), wide.as_mut_ptr());
        // Eight blocks at a time, then what is left four, two, one at a time.
        let mut first = 0;
        // SAFETY: the caller's CPU has K's instructions; `first + B * LANES <= len` in each call, and the
        // assertion above covers the reads.
        unsafe {
            while first + 8 * LANES <= len {
                K::sums::<8>(w, at, source, first, acc.add(first));
                first += 8 * LANES;
            }
            if first + 4 * LANES <= len {
                K::sums::<4>(w, at, source, first, acc.add(first));
                first += 4 * LANES;
            }
            if first + 2 * LANES <= len {
                K::sums::<2>(w, at, source, first, acc.add(first));
                first += 2 * LANES;
            }
            if first < len {
                K::sums::<1>(w, at, source, first, acc.add(first));
            }
        }
        let acc = &wide[..len];
        let b = bias.map(|b| b[o]);
        for (oy, row) in plane.chunks_mut(ow).enumerate() {
            let sums = &acc[oy * wp..oy * wp + ow];
            match b {
                Some(b) => row.iter_mut().zip(sums).for_each(|(r, &x)| *r = x + b),
                None => row.copy_from_slice(sums),
            }
        }
    }
}

widest_vectors! {
    /// [`Csr::convolve`] for strides other than 1: each tap adds to the output rows it reaches.
    fn convolve_strided(csr: &Csr, s: &ConvShape, image: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
        let [h, w] = s.input;
        let [oh, ow] = s.output;
        let taps = s.kernel[0] * s.kernel[1];
        for (o, plane) in out.chunks_mut(oh * ow).take(csr.rows).enumerate() {
            plane.fill(0.0);
            let (start, end) = (csr.row_start[o] as usize, csr.row_start[o + 1] as usize);
            for (&col, &wt) in csr.col[start..end].iter().zip(&csr.value[start..end]) {
                let col = col as usize;
                let (c, tap) = (col / taps, col % taps);
                let (ki, kj) = (tap / s.kernel[1], tap % s.kernel[1]);
                let channel = &image[c * h * w..(c + 1) * h * w];
                // Output columns whose input column ox * stride - pad + kj * dilation lies inside [0, W).
                let shift_x = (kj * s.dilation[1]) as isize - s.pad[1] as isize;
                let (x_lo, x_hi) = valid_range(shift_x, s.stride[1], w, ow);
                if x_lo >= x_hi {
                    continue;
                }
                let shift_y = (ki * s.dilation[0]) as isize - s.pad[0] as isize;
                let (y_lo, y_hi) = valid_range(shift_y, s.stride[0], h, oh);
                for oy in y_lo..y_hi {
                    let iy = (oy * s.stride[0]) as isize + shift_y;
                    let in_row = &channel[iy as usize * w..(iy as usize + 1) * w];
                    let ix0 = ((x_lo * s.stride[1]) as isize + shift_x) as usize;
                    for (i, o) in plane[oy * ow + x_lo..oy * ow + x_hi].iter_mut().enumerate() {
                        *o += wt * in_row[ix0 + i * s.stride[1]];
                    }
                }
            }
            if let Some(bias) = bias {
                plane.iter_mut().for_each(|v| *v += bias[o]);
            }
        }
    }
}

widest_vectors! {
    /// [`Csr::times_dense`].
    fn times_dense(csr: &Csr, b: &[f32], ld: usize, out: &mut [f32]) {
        for (r, out_row) in out.chunks_mut(ld).take(csr.rows).enumerate() {
            out_row.fill(0.0);
            let (start, end) = (csr.row_start[r] as usize, csr.row_start[r + 1] as usize);
            for (&c, &w) in csr.col[start..end].iter().zip(&csr.value[start..end]) {
                let b_row = &b[c as usize * ld..(c as usize + 1) * ld];
                for (o, &x) in out_row.iter_mut().zip(b_row) {
                    *o += w * x;
                }
            }
        }
    }
}

widest_vectors! {
    /// [`Csr::transpose_times_dense`].
    fn transpose_times_dense(csr: &Csr, b: &[f32], ld: usize, out: &mut [f32]) {
        out[..csr.cols * ld].fill(0.0);
        for (r, b_row) in b.chunks(ld).take(csr.rows).enumerate() {
            let (start, end) = (csr.row_start[r] as usize, csr.row_start[r + 1] as usize);
            for (&c, &w) in csr.col[start..end].iter().zip(&csr.value[start..end]) {
                let out_row = &mut out[c as usize * ld..(c as usize + 1) * ld];
                for (o, &x) in out_row.iter_mut().zip(b_row) {
                    *o += w * x;
                }
            }
        }
        }
}

/// `dst (cols x rows) = src (rows x cols)` transposed, both row-major, in square tiles so that the rows being read
/// and the rows being written both stay in the first-level cache.
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const TILE: usize = 16;
    debug_assert!(src.len() == rows * cols && dst.len() == rows * cols);
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}

/// The outputs `lo..hi` (of `outputs`) whose input coordinate `out * stride + shift` lies in `[0, size)`.
fn valid_range(shift: isize, stride: usize, size: usize, outputs: usize) -> (usize, usize) {
    let stride = stride as isize;
    // First output with out * stride + shift >= 0.
    let lo = if shift >= 0 { 0 } else { (-shift + stride - 1) / stride };
    // Outputs with out * stride + shift <= size - 1.
    let last = size as isize - 1 - shift;
    let hi = if last < 0 { 0 } else { last / stride + 1 };
    (lo.max(0) as usize, (hi as usize).min(outputs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense_product(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; m * n];
        for i in 0..m {
            for p in 0..k {
                for j in 0..n {
                    out[i * n + j] += a[i * k + p] * b[p * n + j];
                }
            }
        }
        out
    }

    fn pruned(len: usize, keep_every: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let v = ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / (1 << 24) as f32 - 0.5;
                if i % keep_every == 0 {
                    v
                } else {
                    0.0
                }
            })
            .collect()
    }

    #[test]
    fn backward_products_equal_the_dense_ones() {
        // W (rows x cols) at about 1 in 7 nonzero; b (rows x ld); a (m x rows).
        let (rows, cols, ld, m) = (9, 13, 5, 4);
        let w = pruned(rows * cols, 7, 3);
        let csr = Csr::build_if_sparse(&w, rows, cols, 0.5).expect("sparse enough");
        let b: Vec<f32> = (0..rows * ld).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut wt = vec![0.0; cols * rows];
        for r in 0..rows {
            for c in 0..cols {
                wt[c * rows + r] = w[r * cols + c];
            }
        }
        let mut out = vec![f32::NAN; cols * ld];
        csr.transpose_times_dense(&b, ld, &mut out);
        let expected = dense_product(&wt, &b, cols, rows, ld);
        for (o, e) in out.iter().zip(&expected) {
            assert!((o - e).abs() <= 1e-6, "{o} against {e}");
        }
        let a: Vec<f32> = (0..m * rows).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut out = vec![f32::NAN; m * cols];
        csr.dense_times(&a, m, &mut out, &mut Vec::new());
        let expected = dense_product(&a, &w, m, rows, cols);
        for (o, e) in out.iter().zip(&expected) {
            assert!((o - e).abs() <= 1e-6, "{o} against {e}");
        }
    }

    #[test]
    fn products_equal_the_dense_ones_in_the_same_order() {
        let (rows, cols, ld) = (7, 13, 9);
        let w = pruned(rows * cols, 5, 1);
        let b = pruned(cols * ld, 1, 2);
        let csr = Csr::build_if_sparse(&w, rows, cols, 0.5).expect("sparse enough");
        assert_eq!(csr.nonzeros(), w.iter().filter(|&&x| x != 0.0).count());
        let mut out = vec![f32::NAN; rows * ld];
        csr.times_dense(&b, ld, &mut out);
        // Same terms in the same order (zeros add exactly nothing), so the same bits.
        assert_eq!(out, dense_product(&w, &b, rows, cols, ld));

        let m = 4;
        let a = pruned(m * cols, 1, 3);
        let mut out = vec![f32::NAN; m * rows];
        csr.dense_times_transpose(&a, m, &mut out, &mut Vec::new());
        let wt: Vec<f32> = (0..cols * rows).map(|i| w[(i % rows) * cols + i / rows]).collect();
        assert_eq!(out, dense_product(&a, &wt, m, cols, rows));
    }

    /// The convolution by definition, taps in filter order.
    fn reference_conv(weights: &[f32], outputs: usize, s: &ConvShape, image: &[f32]) -> Vec<f32> {
        let [h, w] = s.input;
        let [oh, ow] = s.output;
        let mut out = vec![0.0f32; outputs * oh * ow];
        for o in 0..outputs {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut sum = 0.0f32;
                    for c in 0..s.channels {
                        for ki in 0..s.kernel[0] {
                            for kj in 0..s.kernel[1] {
                                let iy = (oy * s.stride[0] + ki * s.dilation[0]) as isize - s.pad[0] as isize;
                                let ix = (ox * s.stride[1] + kj * s.dilation[1]) as isize - s.pad[1] as isize;
                                let wt = weights[((o * s.channels + c) * s.kernel[0] + ki) * s.kernel[1] + kj];
                                if wt != 0.0 && iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    sum += wt * image[(c * h + iy as usize) * w + ix as usize];
                                }
                            }
                        }
                    }
                    out[(o * oh + oy) * ow + ox] = sum;
                }
            }
        }
        out
    }

    #[test]
    fn direct_sparse_convolution_equals_the_definition() {
        // Strides, padding, dilation, rectangular kernels, taps falling wholly outside the image.
        for (kernel, stride, pad, dilation) in [
            ([5, 5], [1, 1], [0, 0], [1, 1]),
            ([3, 2], [2, 1], [1, 2], [1, 1]),
            ([3, 3], [1, 3], [4, 1], [2, 1]),
            ([1, 1], [2, 2], [0, 0], [1, 1]),
            ([3, 3], [1, 1], [2, 1], [2, 1]),
            ([2, 4], [1, 1], [0, 3], [1, 2]),
        ] {
            for input in [[9, 7], [23, 19]] {
                check_convolution(kernel, stride, pad, dilation, input);
            }
        }
        assert_eq!(valid_range(-3, 2, 10, 10), (2, 7));
        assert_eq!(valid_range(20, 1, 10, 5), (0, 0));
    }

    /// The direct sparse convolution, with a bias, against the definition, bit for bit.
    fn check_convolution(
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
        dilation: [usize; 2],
        input: [usize; 2],
    ) {
        {
            let (channels, outputs) = (3, 4);
            let out_size = |d: usize| (input[d] + 2 * pad[d] - (dilation[d] * (kernel[d] - 1) + 1)) / stride[d] + 1;
            let s = ConvShape {
                channels,
                input,
                output: [out_size(0), out_size(1)],
                kernel,
                stride,
                pad,
                dilation,
            };
            let cols = channels * kernel[0] * kernel[1];
            let weights = pruned(outputs * cols, 3, 5);
            let image = pruned(channels * input[0] * input[1], 1, 6);
            let csr = Csr::build_if_sparse(&weights, outputs, cols, 0.5).unwrap();
            let plane = s.output[0] * s.output[1];
            let mut out = vec![f32::NAN; outputs * plane];
            let plan = csr.conv_plan(&s);
            let bias = [0.25, -1.5, 0.0, 3.0];
            csr.convolve(&plan, &image, Some(&bias), &mut out, &mut Vec::new());
            let mut expected = reference_conv(&weights, outputs, &s, &image);
            for (row, b) in expected.chunks_mut(plane).zip(bias) {
                row.iter_mut().for_each(|v| *v += b);
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&out), bits(&expected), "{s:?}");
        }
    }

    #[test]
    fn dense_weights_are_left_to_the_gemm() {
        let w = pruned(100, 2, 4);
        assert!(Csr::build_if_sparse(&w, 10, 10, 0.25).is_none());
        assert!(Csr::build_if_sparse(&w, 10, 10, 0.75).is_some());
        assert!(Csr::build_if_sparse(&[], 0, 0, 1.0).is_none());
        let zeros = vec![0.0f32; 12];
        let csr = Csr::build_if_sparse(&zeros, 3, 4, 0.25).unwrap();
        let mut out = vec![1.0f32; 3 * 2];
        csr.times_dense(&[1.0; 8], 2, &mut out);
        assert_eq!(out, [0.0; 6]);
    }
}
