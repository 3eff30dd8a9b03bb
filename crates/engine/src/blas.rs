//! Matrix product and Caffe's im2col / col2im.

/// `C = alpha * op(A) * op(B) + beta * C` over row-major matrices, Caffe's `caffe_cpu_gemm`.
///
/// `op(A)` is `m x k` (stored as `k x m` when `trans_a`), `op(B)` is `k x n` (stored `n x k` when `trans_b`), `C` is
/// `m x n`. When `beta` is 0, `C` is overwritten without being read (NaN in it does not propagate).
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    // These bounds make the raw-pointer call below sound; callers derive all sizes from checked shapes.
    assert!(a.len() >= m * k, "sgemm: A holds {} values, needs {}", a.len(), m * k);
    assert!(b.len() >= k * n, "sgemm: B holds {} values, needs {}", b.len(), k * n);
    assert!(c.len() >= m * n, "sgemm: C holds {} values, needs {}", c.len(), m * n);
    if m == 0 || n == 0 {
        return;
    }
    let (rsa, csa) = if trans_a { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if trans_b { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the asserts above guarantee every element addressed by the strides lies inside the slices, and `c`
    // is borrowed mutably so it cannot alias `a` or `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
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
}

/// Caffe's `im2col_cpu`: `col[(c, kh, kw), (oh, ow)] = image[c, oh*stride - pad + kh*dil, ...]`, 0 outside.
pub(crate) fn im2col(image: &[f32], w: &Window, col: &mut [f32]) {
    let (out_h, out_w) = (w.output_h(), w.output_w());
    let plane = w.height * w.width;
    let mut row = 0;
    for c in 0..w.channels {
        let channel = &image[c * plane..(c + 1) * plane];
        for kh in 0..w.kernel_h {
            for kw in 0..w.kernel_w {
                let dst = &mut col[row * out_h * out_w..(row + 1) * out_h * out_w];
                row += 1;
                let col_offset = (kw * w.dilation_w) as isize - w.pad_w as isize;
                for oh in 0..out_h {
                    let ih = (oh * w.stride_h + kh * w.dilation_h) as isize - w.pad_h as isize;
                    let out_row = &mut dst[oh * out_w..(oh + 1) * out_w];
                    if ih < 0 || ih >= w.height as isize {
                        out_row.fill(0.0);
                        continue;
                    }
                    let src = &channel[ih as usize * w.width..(ih as usize + 1) * w.width];
                    if w.stride_w == 1 {
                        // Contiguous run: copy the part inside the image, zero the padded ends.
                        for (ow, out) in out_row.iter_mut().enumerate() {
                            let iw = ow as isize + col_offset;
                            *out = if iw >= 0 && iw < w.width as isize {
                                src[iw as usize]
                            } else {
                                0.0
                            };
                        }
                    } else {
                        for (ow, out) in out_row.iter_mut().enumerate() {
                            let iw = (ow * w.stride_w) as isize + col_offset;
                            *out = if iw >= 0 && iw < w.width as isize {
                                src[iw as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                }
            }
        }
    }
}

/// Caffe's `col2im_cpu`: the adjoint of [`im2col`], summing every column entry back into its image position.
/// `image` is overwritten.
pub(crate) fn col2im(col: &[f32], w: &Window, image: &mut [f32]) {
    let (out_h, out_w) = (w.output_h(), w.output_w());
    let plane = w.height * w.width;
    image[..w.channels * plane].fill(0.0);
    let mut row = 0;
    for c in 0..w.channels {
        let channel = &mut image[c * plane..(c + 1) * plane];
        for kh in 0..w.kernel_h {
            for kw in 0..w.kernel_w {
                let src = &col[row * out_h * out_w..(row + 1) * out_h * out_w];
                row += 1;
                let col_offset = (kw * w.dilation_w) as isize - w.pad_w as isize;
                for oh in 0..out_h {
                    let ih = (oh * w.stride_h + kh * w.dilation_h) as isize - w.pad_h as isize;
                    if ih < 0 || ih >= w.height as isize {
                        continue;
                    }
                    let dst = &mut channel[ih as usize * w.width..(ih as usize + 1) * w.width];
                    for ow in 0..out_w {
                        let iw = (ow * w.stride_w) as isize + col_offset;
                        if iw >= 0 && iw < w.width as isize {
                            dst[iw as usize] += src[oh * out_w + ow];
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
        sgemm(false, false, 2, 2, 3, 1.0, &a, &b, 0.0, &mut c);
        assert_eq!(c, [4.0, 5.0, 10.0, 11.0]);
        // A stored transposed (3x2) and B stored transposed (2x3) give the same product; beta accumulates.
        let a_t = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
        let b_t = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0];
        sgemm(true, true, 2, 2, 3, 2.0, &a_t, &b_t, 1.0, &mut c);
        assert_eq!(c, [12.0, 15.0, 30.0, 33.0]);
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
        im2col(&[1.0, 2.0, 3.0, 4.0], &w, &mut col);
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
        im2col(&[0.0, 1.0, 2.0, 3.0, 4.0], &w, &mut col);
        assert_eq!(col, [0.0, 2.0, 2.0, 4.0]);
    }
}
