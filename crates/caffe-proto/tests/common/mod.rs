//! Locating the shared fixtures (real Caffe files, never copied into the repo).

use std::path::PathBuf;

/// The fixtures folder, `../shared/fixtures` relative to the repository root.
///
/// When it is missing, a test must fail under CI (`CI=true`) and otherwise
/// print a note and skip; `None` means "skip".
pub fn fixtures_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures");
    if dir.join("FILES.json").is_file() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("fixtures missing at {} (required when CI=true)", dir.display());
    }
    eprintln!("note: fixtures not found at {}; skipping", dir.display());
    None
}

/// Every file listed in the fixtures' FILES.json, as paths relative to the
/// fixtures folder, sorted.
pub fn listed_files(dir: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("FILES.json")).expect("read FILES.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("FILES.json is JSON");
    let files = json["files"].as_object().expect("FILES.json has a files object");
    let mut names: Vec<String> = files.keys().cloned().collect();
    names.sort();
    names
}
