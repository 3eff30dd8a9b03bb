//! Matrix product and Caffe's im2col / col2im.

use rayon::prelude::*;

use crate::arith::{arithmetic, fixed_order_gemm, Arithmetic, Strided};

#[allow(clippy::too_many_arguments)]
/// `C (m x n, row stride ldc) = op(A) * op(B)`, or `C += op(A) * op(B)` with `accumulate`, on raw strided operands.
///
/// # Safety
/// Every element addressed through the strides must lie inside live allocations, and `c` must not overlap `a`/`b`
/// nor be written by anyone else during the call.
unsafe fn gemm_raw(m: usize, n: usize, k: usize, a: Strided, b: Strided, c: *mut f32, ldc: isize, accumulate: bool) {
    if m == 0 || n == 0 {
        return;
    }
    if arithmetic() == Arithmetic::Reproducible {
        // SAFETY: the caller's contract, which is the same.
        return unsafe { fixed_order_gemm(m, n, k, a, b, c, ldc, accumulate) };
    }
    // gemm computes dst = alpha * dst + beta * lhs * rhs, reading dst only when asked.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            ldc,
            accumulate,
            a.ptr,
            a.col_stride,
            a.row_stride,
            b.ptr,
            b.col_stride,
            b.row_stride,
            if accumulate { 1.0f32 } else { 0.0 },
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

fn operand(data: &[f32], transposed: bool, rows: usize, cols: usize) -> Strided {
    // Stored row-major as rows x cols, or as cols x rows when transposed.
    let (row_stride, col_stride) = if transposed {
        (1, rows as isize)
    } else {
        (cols as isize, 1)
    };
    Strided {
        ptr: data.as_ptr(),
        row_stride,
        col_stride,
    }
}

/// `C = op(A) * op(B)` (or `C += ...` with `accumulate`) over row-major matrices, Caffe's `caffe_cpu_gemm` with
/// alpha 1 and beta 0 or 1: `op(A)` is `m x k` (stored `k x m` when `trans_a`), `op(B)` is `k x n` (stored `n x k`
/// when `trans_b`), `C` is `m x n`. Without `accumulate`, `C` is not read (NaN in it does not propagate).
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    // These bounds make the raw call sound; callers derive all sizes from checked shapes.
    assert!(a.len() >= m * k, "sgemm: A holds {} values, needs {}", a.len(), m * k);
    assert!(b.len() >= k * n, "sgemm: B holds {} values, needs {}", b.len(), k * n);
    assert!(c.len() >= m * n, "sgemm: C holds {} values, needs {}", c.len(), m * n);
    // SAFETY: the asserts bound every addressed element; `c` is a unique borrow, so it overlaps neither input.
    unsafe {
        gemm_raw(
            m,
            n,
            k,
            operand(a, trans_a, m, k),
            operand(b, trans_b, k, n),
            c.as_mut_ptr(),
            n as isize,
            accumulate,
        )
    };
}

/// A pointer to disjoint parts of one output matrix, shared by the tasks that each write their own columns.
#[derive(Clone, Copy)]
struct SharedOutput(*mut f32);
// SAFETY: each task writes a disjoint set of columns of the matrix (see `par_sgemm`), so no element is written by
// two threads, and the borrow it came from outlives the parallel loop.
unsafe impl Send for SharedOutput {}
unsafe impl Sync for SharedOutput {}
#[derive(Clone, Copy)]
struct SharedInput(Strided);
// SAFETY: inputs are only read during the parallel loop, while their borrows are held.
unsafe impl Send for SharedInput {}
unsafe impl Sync for SharedInput {}

/// Multiply-adds below which a product runs on one thread.
const PARALLEL_GEMM_WORK: usize = 1 << 20;
/// Column blocks are multiples of this, so each task keeps whole SIMD tiles.
const COLUMN_ALIGN: usize = 32;

/// [`sgemm`] split across rayon's threads by blocks of output columns (each task reads all of `A` and its own
/// columns of `B`, and writes its own columns of `C`). Every element is computed by the same sequence of operations
/// whatever the split, so results do not depend on the thread count.
#[allow(clippy::too_many_arguments)]
pub(crate) fn par_sgemm(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
) {
    par_sgemm_acc(trans_a, trans_b, m, n, k, a, b, c, false)
}

/// [`par_sgemm`] with Caffe's beta: `C += op(A) * op(B)` with `accumulate` (parameter gradients).
#[allow(clippy::too_many_arguments)]
pub(crate) fn par_sgemm_acc(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    let threads = rayon::current_num_threads();
    let block = n.div_ceil(threads).next_multiple_of(COLUMN_ALIGN);
    if threads == 1 || m * n * k < PARALLEL_GEMM_WORK || block >= n {
        return sgemm(trans_a, trans_b, m, n, k, a, b, c, accumulate);
    }
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "par_sgemm: operand too short"
    );
    let a_op = SharedInput(operand(a, trans_a, m, k));
    let b_op = SharedInput(operand(b, trans_b, k, n));
    let out = SharedOutput(c.as_mut_ptr());
    (0..n.div_ceil(block)).into_par_iter().for_each(|i| {
        let (a_op, b_op, out) = (a_op, b_op, out);
        let start = i * block;
        let width = block.min(n - start);
        let b_part = Strided {
            // SAFETY: start < n, so the offset stays inside B.
            ptr: unsafe { b_op.0.ptr.offset(start as isize * b_op.0.col_stride) },
            ..b_op.0
        };
        // SAFETY: columns start..start+width of C (row stride n) belong to this task alone; the asserts above bound
        // all three operands.
        unsafe { gemm_raw(m, width, k, a_op.0, b_part, out.0.add(start), n as isize, accumulate) };
    });
}

/// Geometry of a 2-D convolution window over one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    /// Input channels covered (per group).
    pub channels: usize,
    /// Input height and width.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Kernel height and width.
    pub kernel_h: usize,
    /// Kernel width.
    pub kernel_w: usize,
    /// Zero padding on each side.
    pub pad_h: usize,
    /// Zero padding left and right.
    pub pad_w: usize,
    /// Step between windows.
    pub stride_h: usize,
    /// Horizontal step.
    pub stride_w: usize,
    /// Spacing of kernel taps.
    pub dilation_h: usize,
    /// Horizontal tap spacing.
    pub dilation_w: usize,
}

impl Window {
    /// Output height as Caffe computes it (floor division).
    pub fn output_h(&self) -> usize {
        let extent = self.dilation_h * (self.kernel_h - 1) + 1;
        (self.height + 2 * self.pad_h).saturating_sub(extent) / self.stride_h + 1
    }

    /// Output width as Caffe computes it.
    pub fn output_w(&self) -> usize {
        let extent = self.dilation_w * (self.kernel_w - 1) + 1;
        (self.width + 2 * self.pad_w).saturating_sub(extent) / self.stride_w + 1
    }

    /// Rows of the column matrix: channels x kernel taps.
    pub fn col_rows(&self) -> usize {
        self.channels * self.kernel_h * self.kernel_w
    }

    /// For kernel column `kw`: the output columns `ow0..ow1` whose input column lies inside the image, and the input
    /// column of `ow0` (every other output column reads padding).
    fn inside_columns(&self, kw: usize) -> (usize, usize, usize) {
        let out_w = self.output_w();
        let offset = (kw * self.dilation_w) as isize - self.pad_w as isize;
        let ow0 = if offset >= 0 {
            0
        } else {
            ((-offset) as usize).div_ceil(self.stride_w).min(out_w)
        };
        let ow1 = if (self.width as isize) <= offset {
            0
        } else {
            ((self.width as isize - offset) as usize)
                .div_ceil(self.stride_w)
                .min(out_w)
        };
        let ow1 = ow1.max(ow0);
        let iw0 = ((ow0 * self.stride_w) as isize + offset).max(0) as usize;
        (ow0, ow1, iw0)
    }
}

/// Caffe's `im2col_cpu`: `col[(c, kh, kw), (oh, ow)] = image[c, oh*stride - pad + kh*dil, ...]`, 0 outside. Row
/// `r` of the column matrix starts at `col[r * row_stride]` (`row_stride >= out_h * out_w`), so several images can
/// be laid side by side.
pub(crate) fn im2col(image: &[f32], w: &Window, col: &mut [f32], row_stride: usize) {
    let (out_h, out_w) = (w.output_h(), w.output_w());
    if out_h * out_w == 0 {
        return;
    }
    let plane = w.height * w.width;
    let mut row = 0;
    for c in 0..w.channels {
        let channel = &image[c * plane..(c + 1) * plane];
        for kh in 0..w.kernel_h {
            for kw in 0..w.kernel_w {
                let dst = &mut col[row * row_stride..row * row_stride + out_h * out_w];
                row += 1;
                // Each output row: padding, a run read from the image, padding; the run is one copy at stride 1.
                let (ow0, ow1, iw0) = w.inside_columns(kw);
                for (oh, out_row) in dst.chunks_exact_mut(out_w).enumerate() {
                    let ih = (oh * w.stride_h + kh * w.dilation_h) as isize - w.pad_h as isize;
                    if ih < 0 || ih >= w.height as isize || ow0 == ow1 {
                        out_row.fill(0.0);
                        continue;
                    }
                    let src = &channel[ih as usize * w.width..(ih as usize + 1) * w.width];
                    out_row[..ow0].fill(0.0);
                    out_row[ow1..].fill(0.0);
                    let run = &mut out_row[ow0..ow1];
                    if w.stride_w == 1 {
                        copy_short(run, &src[iw0..iw0 + run.len()]);
                    } else {
                        for (i, out) in run.iter_mut().enumerate() {
                            *out = src[iw0 + i * w.stride_w];
                        }
                    }
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for the short runs of im2col (a LeNet conv2 row is 8 values): whole 8-value blocks
/// moved by [`copy8`], where `copy_from_slice` (or a plain loop of block copies, which LLVM turns back into it)
/// calls `memcpy` for each run.
#[inline]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    let mut blocks = dst.chunks_exact_mut(8);
    let mut from = src.chunks_exact(8);
    for (d, s) in (&mut blocks).zip(&mut from) {
        let d: &mut [f32; 8] = d.try_into().expect("chunks of 8");
        let s: &[f32; 8] = s.try_into().expect("chunks of 8");
        copy8(d, s);
    }
    for (d, s) in blocks.into_remainder().iter_mut().zip(from.remainder()) {
        *d = *s;
    }
}

/// `*dst = *src` as two 16-byte moves the optimiser cannot see through: a loop of plain copies becomes one `memcpy`
/// call per run, which costs more than the copy for runs this short.
#[inline(always)]
fn copy8(dst: &mut [f32; 8], src: &[f32; 8]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: both operands are 32 valid bytes; SSE is part of x86-64.
    unsafe {
        std::arch::asm!(
            "movups {t}, xmmword ptr [{s}]",
            "movups xmmword ptr [{d}], {t}",
            "movups {t}, xmmword ptr [{s} + 16]",
            "movups xmmword ptr [{d} + 16], {t}",
            s = in(reg) src.as_ptr(),
            d = in(reg) dst.as_mut_ptr(),
            t = out(xmm_reg) _,
            options(nostack, preserves_flags),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        *dst = *src;
    }
}

/// Caffe's `col2im_cpu`: the adjoint of [`im2col`], summing every column entry back into its image position.
/// `image` is overwritten.
pub(crate) fn col2im(col: &[f32], w: &Window, image: &mut [f32]) {
    col2im_strided(col, w, image, w.output_h() * w.output_w());
}

/// [`col2im`] reading row `r` of the column matrix from `col[r * row_stride..]` (images laid side by side, as
/// [`im2col`] writes them).
pub(crate) fn col2im_strided(col: &[f32], w: &Window, image: &mut [f32], row_stride: usize) {
    let (out_h, out_w) = (w.output_h(), w.output_w());
    let plane = w.height * w.width;
    image[..w.channels * plane].fill(0.0);
    let mut row = 0;
    for c in 0..w.channels {
        let channel = &mut image[c * plane..(c + 1) * plane];
        for kh in 0..w.kernel_h {
            for kw in 0..w.kernel_w {
                let src = &col[row * row_stride..row * row_stride + out_h * out_w];
                row += 1;
                let (ow0, ow1, iw0) = w.inside_columns(kw);
                if ow0 >= ow1 {
                    continue;
                }
                for oh in 0..out_h {
                    let ih = (oh * w.stride_h + kh * w.dilation_h) as isize - w.pad_h as isize;
                    if ih < 0 || ih >= w.height as isize {
                        continue;
                    }
                    let dst = &mut channel[ih as usize * w.width..(ih as usize + 1) * w.width];
                    let src_row = &src[oh * out_w + ow0..oh * out_w + ow1];
                    if w.stride_w == 1 {
                        dst[iw0..iw0 + src_row.len()]
                            .iter_mut()
                            .zip(src_row)
                            .for_each(|(d, s)| *d += s);
                    } else {
                        for (i, s) in src_row.iter().enumerate() {
                            dst[iw0 + i * w.stride_w] += s;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgemm_with_and_without_transposes_matches_hand_products() {
        // A = [[1,2,3],[4,5,6]] (2x3), B = [[1,0],[0,1],[1,1]] (3x2): A*B = [[4,5],[10,11]].
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let mut c = [f32::NAN; 4];
        sgemm(false, false, 2, 2, 3, &a, &b, &mut c, false);
        assert_eq!(c, [4.0, 5.0, 10.0, 11.0]);
        // A stored transposed (3x2) and B stored transposed (2x3) give the same product; accumulate adds it.
        let a_t = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
        let b_t = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0];
        sgemm(true, true, 2, 2, 3, &a_t, &b_t, &mut c, true);
        assert_eq!(c, [8.0, 10.0, 20.0, 22.0]);
    }

    #[test]
    fn parallel_gemm_equals_the_single_call_bit_for_bit() {
        // Large enough to split (m*n*k >= 2^20), with a ragged last column block, both B layouts.
        let (m, n, k) = (37, 301, 129);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 31 % 97) as f32 - 48.0) / 17.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 13 % 89) as f32 - 44.0) / 23.0).collect();
        for trans_b in [false, true] {
            let mut single = vec![0.0; m * n];
            sgemm(false, trans_b, m, n, k, &a, &b, &mut single, false);
            let mut parallel = vec![f32::NAN; m * n];
            rayon::ThreadPoolBuilder::new()
                .num_threads(3)
                .build()
                .unwrap()
                .install(|| par_sgemm(false, trans_b, m, n, k, &a, &b, &mut parallel));
            assert_eq!(single, parallel);
            // Accumulating into C (parameter gradients): C + A*B, the same bits split or not.
            let start: Vec<f32> = (0..m * n).map(|i| (i % 7) as f32 - 3.0).collect();
            let mut single_acc = start.clone();
            sgemm(false, trans_b, m, n, k, &a, &b, &mut single_acc, true);
            let mut parallel_acc = start.clone();
            rayon::ThreadPoolBuilder::new()
                .num_threads(3)
                .build()
                .unwrap()
                .install(|| par_sgemm_acc(false, trans_b, m, n, k, &a, &b, &mut parallel_acc, true));
            assert_eq!(single_acc, parallel_acc);
            assert!((single_acc[7] - start[7] - single[7]).abs() < 1e-3);
            // And a direct check of one element.
            let (i, j) = (5, 200);
            let direct: f64 = (0..k)
                .map(|t| a[i * k + t] as f64 * if trans_b { b[j * k + t] } else { b[t * n + j] } as f64)
                .sum();
            assert!((single[i * n + j] as f64 - direct).abs() < 1e-3);
        }
    }

    #[test]
    fn im2col_pads_with_zeros_and_col2im_sums_overlaps() {
        // One 2x2 channel [[1,2],[3,4]], kernel 2x2, pad 1, stride 1: a 3x3 output.
        let w = Window {
            channels: 1,
            height: 2,
            width: 2,
            kernel_h: 2,
            kernel_w: 2,
            pad_h: 1,
            pad_w: 1,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
        };
        assert_eq!((w.output_h(), w.output_w()), (3, 3));
        let mut col = vec![f32::NAN; 4 * 9];
        im2col(&[1.0, 2.0, 3.0, 4.0], &w, &mut col, 9);
        // Tap (0,0) sees image[oh-1][ow-1].
        assert_eq!(&col[0..9], &[0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 3.0, 4.0]);
        // Tap (1,1) sees image[oh][ow].
        assert_eq!(&col[27..36], &[1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]);
        // Every pixel appears in all 4 taps, so col2im of the column matrix is 4x the image.
        let mut image = [f32::NAN; 4];
        col2im(&col, &w, &mut image);
        assert_eq!(image, [4.0, 8.0, 12.0, 16.0]);
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), y> == <x, col2im(y)> for padded, strided, dilated windows, with side-by-side column rows.
        for (stride, pad, dilation) in [(1, 0, 1), (2, 1, 1), (1, 2, 2), (3, 1, 2)] {
            let w = Window {
                channels: 2,
                height: 5,
                width: 7,
                kernel_h: 3,
                kernel_w: 2,
                pad_h: pad,
                pad_w: pad,
                stride_h: stride,
                stride_w: stride,
                dilation_h: dilation,
                dilation_w: dilation,
            };
            let spatial = w.output_h() * w.output_w();
            let stride_cols = spatial + 3;
            let x: Vec<f32> = (0..2 * 5 * 7).map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0).collect();
            let y: Vec<f32> = (0..w.col_rows() * stride_cols)
                .map(|i| ((i * 17 % 29) as f32 - 14.0) / 9.0)
                .collect();
            let mut col = vec![0.0; w.col_rows() * stride_cols];
            im2col(&x, &w, &mut col, stride_cols);
            let lhs: f64 = (0..w.col_rows())
                .flat_map(|r| (0..spatial).map(move |j| r * stride_cols + j))
                .map(|i| col[i] as f64 * y[i] as f64)
                .sum();
            let mut back = vec![f32::NAN; x.len()];
            col2im_strided(&y, &w, &mut back, stride_cols);
            let rhs: f64 = x.iter().zip(&back).map(|(&a, &b)| a as f64 * b as f64).sum();
            assert!(
                (lhs - rhs).abs() < 1e-4,
                "stride {stride} pad {pad} dilation {dilation}: {lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn dilation_and_stride_pick_the_spaced_taps() {
        // A 1x5 row 0..5, kernel 1x2 dilated by 2, stride 2: windows at columns (0,2) and (2,4).
        let w = Window {
            channels: 1,
            height: 1,
            width: 5,
            kernel_h: 1,
            kernel_w: 2,
            pad_h: 0,
            pad_w: 0,
            stride_h: 1,
            stride_w: 2,
            dilation_h: 1,
            dilation_w: 2,
        };
        assert_eq!((w.output_h(), w.output_w()), (1, 2));
        let mut col = vec![0.0; 4];
        im2col(&[0.0, 1.0, 2.0, 3.0, 4.0], &w, &mut col, 2);
        assert_eq!(col, [0.0, 2.0, 2.0, 4.0]);
    }
}
