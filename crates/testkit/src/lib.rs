//! Test support: finding `../shared/fixtures` and the Python interop tools, with one rule for both: absent outside
//! CI, a test prints a note and skips; absent under `CI=true`, it fails, because CI always has them.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `../shared/fixtures` beside the repository, or `None` (with a note) when it is missing outside CI.
///
/// # Panics
/// When the fixtures are missing and `CI=true`.
pub fn fixtures() -> Option<PathBuf> {
    let dir = repo_root().join("../shared/fixtures");
    if dir.join("MANIFEST.json").is_file() {
        return Some(dir);
    }
    if under_ci() {
        panic!("fixtures missing at {} (CI=true requires them)", dir.display());
    }
    eprintln!("note: fixtures missing at {}; test skipped", dir.display());
    None
}

/// True when `python3` can import every module in `modules`; otherwise a note (or, under `CI=true`, a panic).
///
/// # Panics
/// When a module is missing and `CI=true`.
pub fn python_has(modules: &[&str]) -> bool {
    let import = format!("import {}", modules.join(", "));
    let ok = Command::new("python3")
        .args(["-c", &import])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if under_ci() {
            panic!("python3 with {} is required under CI=true", modules.join(", "));
        }
        eprintln!(
            "note: python3 with {} missing; interop test skipped",
            modules.join(", ")
        );
    }
    ok
}

/// The comparison metric of the tests against real Caffe: `max |found - golden| / max |golden|` (the scale floored
/// at 1e-12), in f64. Infinite when any difference is NaN (a NaN output must never pass a `<=` or a `>` check).
///
/// # Panics
/// When the lengths differ.
pub fn relative_error(found: &[f32], golden: &[f32]) -> f64 {
    assert_eq!(found.len(), golden.len(), "lengths differ");
    let mut max_diff = 0.0f64;
    for (&a, &b) in found.iter().zip(golden) {
        let diff = (f64::from(a) - f64::from(b)).abs();
        if diff.is_nan() {
            return f64::INFINITY;
        }
        max_diff = max_diff.max(diff);
    }
    let scale = golden
        .iter()
        .map(|b| f64::from(*b).abs())
        .fold(0.0, f64::max)
        .max(1e-12);
    max_diff / scale
}

#[cfg(test)]
mod tests {
    use super::relative_error;

    #[test]
    fn relative_error_is_relative_to_the_golden_scale_and_never_passes_nan() {
        assert_eq!(relative_error(&[1.0, 2.5], &[1.0, 2.0]), 0.25);
        assert_eq!(relative_error(&[0.0], &[0.0]), 0.0);
        assert_eq!(relative_error(&[f32::NAN, 1.0], &[1.0, 1.0]), f64::INFINITY);
        assert_eq!(relative_error(&[1.0], &[f32::NAN]), f64::INFINITY);
    }
}
