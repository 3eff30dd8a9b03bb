//! Compiling a loop for the widest vectors the CPU has, without changing its bits.
//!
//! The crate is built for the x86-64 baseline (SSE2: 4 floats per vector), so the compiler's vectorised loops use
//! a quarter of what an AVX-512 core can do. [`widest_vectors!`] compiles one body three times (baseline, AVX2,
//! AVX-512F) and picks the widest at run time. The wide copies carry out the same operations in the same order per
//! element: a vectorised loop only computes more elements side by side, and no fused multiply-add is enabled, so
//! every width gives identical bits. `CAFFE_RS_PORTABLE=1` keeps the baseline copy (the test suite's portable run).

use std::sync::OnceLock;

/// The vector instructions a [`widest_vectors!`] function runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Vectors {
    /// SSE2, every x86-64 CPU (and any other architecture's baseline).
    Baseline,
    /// 256-bit AVX2.
    Avx2,
    /// 512-bit AVX-512F.
    Avx512,
}

/// The widest vectors this CPU has (detected once), or [`Vectors::Baseline`] under `CAFFE_RS_PORTABLE=1`.
pub(crate) fn widest() -> Vectors {
    static WIDEST: OnceLock<Vectors> = OnceLock::new();
    *WIDEST.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if !crate::arith::portable_forced() {
            if std::is_x86_feature_detected!("avx512f") {
                return Vectors::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") {
                return Vectors::Avx2;
            }
        }
        Vectors::Baseline
    })
}

/// Defines a function whose body is compiled for the baseline, AVX2 and AVX-512F, and runs the widest copy the CPU
/// supports (see the module docs). Arguments are plain `name: Type` pairs.
macro_rules! widest_vectors {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                match $crate::simd::widest() {
                    // SAFETY: the CPU has AVX-512F (detected at run time).
                    $crate::simd::Vectors::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: the CPU has AVX2 (detected at run time).
                    $crate::simd::Vectors::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::simd::Vectors::Baseline => {}
                }
            }
            body($($arg),*)
        }
    };
}

pub(crate) use widest_vectors;
