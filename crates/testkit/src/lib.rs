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
