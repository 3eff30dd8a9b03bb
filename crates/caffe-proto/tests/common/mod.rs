//! Locating the shared fixtures (real Caffe files, never copied into the repo).

/// `../shared/fixtures` (`None`: skip; missing under `CI=true`: a failure): one rule for every crate, in testkit.
pub use testkit::fixtures as fixtures_dir;

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
