//! The transcendental functions of the engine and the solvers, one implementation on every machine.
//!
//! `f32::exp` and friends call the C library, whose x86-64 builds pick an FMA variant at run time on CPUs that have
//! it; those round differently from the plain variant in a small share of cases. These wrappers use the `libm`
//! crate (a port of musl's functions, compiled for the baseline target, never fused), so a value computed here is
//! the same on every machine, as [`crate::Arithmetic::Reproducible`] requires. Square roots stay `f32::sqrt`: IEEE
//! rounds them exactly everywhere.

/// `e^x`.
#[inline]
pub fn exp(x: f32) -> f32 {
    libm::expf(x)
}

/// The natural logarithm.
#[inline]
pub fn ln(x: f32) -> f32 {
    libm::logf(x)
}

/// `x^y`.
#[inline]
pub fn powf(x: f32, y: f32) -> f32 {
    libm::powf(x, y)
}

/// The hyperbolic tangent.
#[inline]
pub fn tanh(x: f32) -> f32 {
    libm::tanhf(x)
}

/// `e^x` in double precision.
#[inline]
pub fn exp_f64(x: f64) -> f64 {
    libm::exp(x)
}

/// The natural logarithm in double precision.
#[inline]
pub fn ln_f64(x: f64) -> f64 {
    libm::log(x)
}

/// `x^y` in double precision.
#[inline]
pub fn pow_f64(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

/// The cosine in double precision.
#[inline]
pub fn cos_f64(x: f64) -> f64 {
    libm::cos(x)
}
