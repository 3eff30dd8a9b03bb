//! How the engine's arithmetic is carried out: fast, or the same bits on every x86-64 CPU and thread count.
//!
//! The fast matrix product (the `gemm` crate) picks its kernel (AVX-512, FMA, scalar) and its blocking (from the
//! CPU's cache sizes) on the machine it runs on, so a sum over `k` is rounded differently on another CPU. Over
//! thousands of SGD steps those last-bit differences grow into a visibly different model. [`Arithmetic::Reproducible`]
//! replaces it with a product whose every output is `((0 + a0*b0) + a1*b1) + ...` in order of `k`, a multiply and an
//! add each rounded on their own (never fused): the vector width only decides how many outputs are computed side by
//! side, so the portable kernel and the AVX one give identical bits, whatever the blocking or the split across
//! threads. It is slower than the fast product (LeNet training: about 1.3x the time on an AVX-512 machine). The
//! engine's other arithmetic is already fixed-order, and its transcendental functions come from [`crate::math`], one
//! implementation on every machine.
//!
//! Setting the environment variable `CAFFE_RS_PORTABLE=1` makes `Reproducible` the default and keeps it to the
//! x86-64 baseline (SSE2) instructions: the test suite runs once that way, as a CPU without wide vectors would.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// The engine's arithmetic, process-wide (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arithmetic {
    /// The fastest kernels this CPU has; results may differ in the last bits from another CPU's.
    Fast,
    /// Fixed-order sums: the same inputs give the same bits on every x86-64 CPU and with any thread count.
    Reproducible,
}

/// Unset: the default applies (see [`arithmetic`]).
const UNSET: u8 = 0;
const FAST: u8 = 1;
const REPRODUCIBLE: u8 = 2;
static MODE: AtomicU8 = AtomicU8::new(UNSET);

/// Whether `CAFFE_RS_PORTABLE=1` asks for the portable paths only (read once).
pub(crate) fn portable_forced() -> bool {
    static FORCED: OnceLock<bool> = OnceLock::new();
    *FORCED.get_or_init(|| std::env::var_os("CAFFE_RS_PORTABLE").is_some_and(|v| v == "1"))
}

/// Chooses the arithmetic of every net in this process from now on (for example before training a model that must
/// come out with the same bytes on any machine). It applies to each matrix product as it starts.
pub fn set_arithmetic(arithmetic: Arithmetic) {
    let value = match arithmetic {
        Arithmetic::Fast => FAST,
        Arithmetic::Reproducible => REPRODUCIBLE,
    };
    MODE.store(value, Ordering::Relaxed);
}

/// The arithmetic in force: what [`set_arithmetic`] chose last, else `Reproducible` under `CAFFE_RS_PORTABLE=1`,
/// else `Fast`.
pub fn arithmetic() -> Arithmetic {
    match MODE.load(Ordering::Relaxed) {
        FAST => Arithmetic::Fast,
        REPRODUCIBLE => Arithmetic::Reproducible,
        _ if portable_forced() => Arithmetic::Reproducible,
        _ => Arithmetic::Fast,
    }
}

/// A matrix operand: a pointer and its row and column strides (in elements).
#[derive(Clone, Copy)]
pub(crate) struct Strided {
    pub ptr: *const f32,
    pub row_stride: isize,
    pub col_stride: isize,
}

impl Strided {
    /// Element (row, col).
    ///
    /// # Safety
    /// The element must lie inside the operand's allocation.
    #[inline(always)]
    unsafe fn at(self, row: usize, col: usize) -> f32 {
        unsafe {
            *self
                .ptr
                .offset(row as isize * self.row_stride + col as isize * self.col_stride)
        }
    }
}

/// The widest vectors the reproducible product may use on this CPU (only the amount of parallel work differs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Width {
    /// Plain Rust: 4 rows x 8 columns (the compiler's baseline vectors).
    Portable,
    /// AVX: 6 rows x 16 columns, in 12 ymm accumulators.
    #[cfg(target_arch = "x86_64")]
    Avx,
}

fn widest() -> Width {
    static WIDTH: OnceLock<Width> = OnceLock::new();
    *WIDTH.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if !portable_forced() && std::is_x86_feature_detected!("avx") {
            return Width::Avx;
        }
        Width::Portable
    })
}

/// `C (m x n, row stride ldc) = A * B` (or `C += A * B` with `accumulate`) with every output summed in order of `k`
/// from +0, one rounding per multiply and per add; `C += ` adds the finished sum. Bit-identical for any vector
/// width, blocking or column split.
///
/// # Safety
/// As [`crate::blas`]'s raw product: every addressed element inside live allocations, `c` overlapping neither input.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn fixed_order_gemm(
    m: usize,
    n: usize,
    k: usize,
    a: Strided,
    b: Strided,
    c: *mut f32,
    ldc: isize,
    accumulate: bool,
) {
    // SAFETY: the caller's contract; the AVX kernel runs only where AVX was detected.
    unsafe { drive_width(widest(), m, n, k, a, b, c, ldc, accumulate) }
}

/// [`fixed_order_gemm`] with the given kernel width.
#[allow(clippy::too_many_arguments)]
unsafe fn drive_width(
    w: Width,
    m: usize,
    n: usize,
    k: usize,
    a: Strided,
    b: Strided,
    c: *mut f32,
    ldc: isize,
    acc: bool,
) {
    // SAFETY: passed on from the callers.
    unsafe {
        match w {
            Width::Portable => drive::<4, 8>(m, n, k, a, b, c, ldc, acc, portable_tile::<4, 8>),
            #[cfg(target_arch = "x86_64")]
            Width::Avx => drive::<6, 16>(m, n, k, a, b, c, ldc, acc, avx::tile),
        }
    }
}

/// Bytes of packed `B` one column block aims at (about an L2 cache; any value gives the same bits).
const B_BLOCK_BYTES: usize = 256 << 10;

/// A micro-kernel: `out[r][j] = sum over p < k, in order, of a[p * MR + r] * b[p * NR + j]`, from +0.
///
/// # Safety
/// `a` and `b` hold at least `k * MR` and `k * NR` values; the kernel's instructions exist on this CPU.
type Tile<const MR: usize, const NR: usize> = unsafe fn(usize, &[f32], &[f32], &mut [[f32; NR]; MR]);

/// Packs `A` into `MR`-row panels (`k` columns each, zero past `m`) and `B` in blocks of `NR`-column panels (`k`
/// rows each, zero past `n`), then runs the micro-kernel over each `MR x NR` tile of `C`.
#[allow(clippy::too_many_arguments)]
unsafe fn drive<const MR: usize, const NR: usize>(
    m: usize,
    n: usize,
    k: usize,
    a: Strided,
    b: Strided,
    c: *mut f32,
    ldc: isize,
    accumulate: bool,
    tile: Tile<MR, NR>,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // Empty sums: +0, added or stored.
        for i in 0..m {
            for j in 0..n {
                // SAFETY: row i < m, column j < n of C.
                unsafe {
                    let out = c.offset(i as isize * ldc).add(j);
                    *out = if accumulate { *out + 0.0 } else { 0.0 };
                }
            }
        }
        return;
    }
    let row_panels = m.div_ceil(MR);
    let mut a_pack = vec![0f32; row_panels * k * MR];
    for (panel, dst) in a_pack.chunks_exact_mut(k * MR).enumerate() {
        let row0 = panel * MR;
        for (r, row) in (row0..(row0 + MR).min(m)).enumerate() {
            for p in 0..k {
                // SAFETY: row < m and p < k lie inside A.
                dst[p * MR + r] = unsafe { a.at(row, p) };
            }
        }
    }
    let panels_per_block = (B_BLOCK_BYTES / (4 * NR * k.max(1))).max(1);
    let block_cols = panels_per_block * NR;
    let mut b_pack = vec![0f32; k * block_cols.min(n.next_multiple_of(NR))];
    let mut sums = [[0f32; NR]; MR];
    let mut col0 = 0;
    while col0 < n {
        let cols = block_cols.min(n - col0);
        let panels = cols.div_ceil(NR);
        for (panel, dst) in b_pack.chunks_exact_mut(k * NR).take(panels).enumerate() {
            let first = col0 + panel * NR;
            let width = NR.min(n - first);
            if width < NR {
                dst.fill(0.0);
            }
            for p in 0..k {
                for j in 0..width {
                    // SAFETY: p < k and first + j < n lie inside B.
                    dst[p * NR + j] = unsafe { b.at(p, first + j) };
                }
            }
        }
        for (row_panel, a_panel) in a_pack.chunks_exact(k * MR).enumerate() {
            let row0 = row_panel * MR;
            let rows = MR.min(m - row0);
            for (panel, b_panel) in b_pack.chunks_exact(k * NR).take(panels).enumerate() {
                // SAFETY: the panels hold k * MR and k * NR values; the caller chose a kernel this CPU runs.
                unsafe { tile(k, a_panel, b_panel, &mut sums) };
                let first = col0 + panel * NR;
                let width = NR.min(n - first);
                for (r, row_sums) in sums.iter().enumerate().take(rows) {
                    // SAFETY: row row0 + r < m, columns first..first + width <= n of C (row stride ldc).
                    let out = unsafe { c.offset((row0 + r) as isize * ldc).add(first) };
                    for (j, &sum) in row_sums.iter().enumerate().take(width) {
                        // SAFETY: as above; C is written by this call alone.
                        unsafe { *out.add(j) = if accumulate { *out.add(j) + sum } else { sum } };
                    }
                }
            }
        }
        col0 += cols;
    }
}

/// The micro-kernel in plain Rust (see [`Tile`]).
///
/// # Safety
/// None beyond [`Tile`]'s lengths, which it checks.
unsafe fn portable_tile<const MR: usize, const NR: usize>(k: usize, a: &[f32], b: &[f32], out: &mut [[f32; NR]; MR]) {
    let mut sums = [[0f32; NR]; MR];
    for (a_col, b_row) in a[..k * MR].chunks_exact(MR).zip(b[..k * NR].chunks_exact(NR)) {
        for (sum_row, &x) in sums.iter_mut().zip(a_col) {
            for (s, &y) in sum_row.iter_mut().zip(b_row) {
                *s += x * y;
            }
        }
    }
    *out = sums;
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    /// The 6 x 16 micro-kernel (see [`super::Tile`]): per step of `k`, one broadcast of each `A` value, a separate
    /// multiply and add per 8 columns (no FMA, whose single rounding would differ from the portable kernel).
    ///
    /// # Safety
    /// The CPU has AVX; `a` and `b` hold at least `k * 6` and `k * 16` values.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn tile(k: usize, a: &[f32], b: &[f32], out: &mut [[f32; 16]; 6]) {
        assert!(a.len() >= k * 6 && b.len() >= k * 16);
        let mut lo = [_mm256_setzero_ps(); 6];
        let mut hi = [_mm256_setzero_ps(); 6];
        let (mut pa, mut pb) = (a.as_ptr(), b.as_ptr());
        for _ in 0..k {
            // SAFETY: the assert bounds 6 reads of A and 16 of B per step, k steps.
            unsafe {
                let b0 = _mm256_loadu_ps(pb);
                let b1 = _mm256_loadu_ps(pb.add(8));
                for r in 0..6 {
                    let x = _mm256_broadcast_ss(&*pa.add(r));
                    lo[r] = _mm256_add_ps(lo[r], _mm256_mul_ps(x, b0));
                    hi[r] = _mm256_add_ps(hi[r], _mm256_mul_ps(x, b1));
                }
                pa = pa.add(6);
                pb = pb.add(16);
            }
        }
        for r in 0..6 {
            // SAFETY: each row of `out` holds 16 values.
            unsafe {
                _mm256_storeu_ps(out[r].as_mut_ptr(), lo[r]);
                _mm256_storeu_ps(out[r].as_mut_ptr().add(8), hi[r]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition: each output summed in order of k from +0, then stored or added.
    fn reference(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32], accumulate: bool) {
        for i in 0..m {
            for j in 0..n {
                let mut sum = 0f32;
                for p in 0..k {
                    sum += a[i * k + p] * b[p * n + j];
                }
                c[i * n + j] = if accumulate { c[i * n + j] + sum } else { sum };
            }
        }
    }

    /// Values whose products and sums round (so a different order would show).
    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state as f32 / u32::MAX as f32 - 0.5) * 3.7
            })
            .collect()
    }

    fn widths() -> Vec<Width> {
        let mut widths = vec![Width::Portable];
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx") {
            widths.push(Width::Avx);
        } else {
            eprintln!("note: no AVX on this CPU; only the portable product is compared with the reference");
        }
        widths
    }

    #[allow(clippy::too_many_arguments)]
    fn run(width: Width, m: usize, n: usize, k: usize, a: Strided, b: Strided, c: &mut [f32], ldc: usize, acc: bool) {
        // SAFETY: the tests size every operand for the strides they pass; AVX only where detected.
        unsafe { drive_width(width, m, n, k, a, b, c.as_mut_ptr(), ldc as isize, acc) }
    }

    #[test]
    fn every_vector_width_gives_the_reference_bits() {
        let shapes = [
            (1, 1, 1),
            (3, 5, 7),
            (7, 33, 129),
            (13, 100, 500),
            (50, 17, 4096),
            (6, 64, 0),
        ];
        for (s, &(m, n, k)) in shapes.iter().enumerate() {
            let a = values(m * k, s as u32);
            let b = values(k * n, 100 + s as u32);
            let start = values(m * n, 200 + s as u32);
            for accumulate in [false, true] {
                let mut expected = start.clone();
                reference(m, n, k, &a, &b, &mut expected, accumulate);
                for width in widths() {
                    let mut c = start.clone();
                    let a_op = Strided {
                        ptr: a.as_ptr(),
                        row_stride: k as isize,
                        col_stride: 1,
                    };
                    let b_op = Strided {
                        ptr: b.as_ptr(),
                        row_stride: n as isize,
                        col_stride: 1,
                    };
                    run(width, m, n, k, a_op, b_op, &mut c, n, accumulate);
                    let same = c.iter().zip(&expected).all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(
                        same,
                        "{width:?} differs from the reference at m={m} n={n} k={k} acc={accumulate}"
                    );
                }
            }
        }
    }

    #[test]
    fn transposed_operands_and_column_splits_give_the_same_bits() {
        let (m, n, k) = (11, 75, 300);
        let a = values(m * k, 7);
        let b = values(k * n, 8);
        let mut expected = vec![0f32; m * n];
        reference(m, n, k, &a, &b, &mut expected, false);
        // A stored k x m and B stored n x k.
        let a_t: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let b_t: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let a_op = Strided {
            ptr: a_t.as_ptr(),
            row_stride: 1,
            col_stride: m as isize,
        };
        for width in widths() {
            let mut c = vec![f32::NAN; m * n];
            // Columns in three uneven parts, each its own call, as the parallel product splits them.
            for (start, end) in [(0, 7), (7, 40), (40, n)] {
                let b_op = Strided {
                    ptr: b_t[start * k..].as_ptr(),
                    row_stride: 1,
                    col_stride: k as isize,
                };
                run(width, m, end - start, k, a_op, b_op, &mut c[start..], n, false);
            }
            assert!(
                c.iter().zip(&expected).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{width:?}"
            );
        }
    }
}
