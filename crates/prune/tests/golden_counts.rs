//! The rank rule against real Caffe's pruned LeNets in the shared fixtures
//! (`golden/pruned/*/*/result.json`): for every layer, a blob of the same size with distinct
//! magnitudes, pruned at the same keep fraction, keeps exactly as many weights as the golden
//! run kept (its real weights had no ties at the cut), and `t = 1` layers stay untouched.
//! The golden cut values need the real weights; the caffemodel crate's tests check those.

use prune::{prune_in_place, Rule};
use serde_json::Value;

/// Distinct magnitudes (i + 1) * 2^-20, alternating signs, reversed so order is not sorted.
fn distinct_weights(len: usize) -> Vec<f32> {
    (0..len)
        .rev()
        .map(|i| {
            let m = (i + 1) as f32 / (1 << 20) as f32;
            if i % 2 == 0 {
                m
            } else {
                -m
            }
        })
        .collect()
}

#[test]
fn kept_counts_match_real_caffe_pruning_runs() {
    let Some(fixtures) = testkit::fixtures() else { return };
    let root = fixtures.join("golden/pruned");
    let models = std::fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let mut layers_checked = 0;
    for model in models {
        let model = model.unwrap().path();
        if !model.is_dir() {
            continue;
        }
        for setting in std::fs::read_dir(&model).unwrap() {
            let path = setting.unwrap().path().join("result.json");
            let text = std::fs::read_to_string(&path).unwrap();
            let result: Value = serde_json::from_str(&text).unwrap();
            let layers = result["layers"].as_object().expect("layers object");
            for (name, layer) in layers {
                let n = layer["N"].as_u64().unwrap() as usize;
                let t = layer["t"].as_f64().unwrap();
                let kept = layer["kept"].as_u64().unwrap() as usize;
                assert_eq!(layer["originally_zero"].as_u64(), Some(0));
                let mut w = distinct_weights(n);
                let report = prune_in_place(&mut w, Rule::KeepFraction(t)).unwrap();
                let context = format!("{} {name}", path.display());
                assert_eq!(report.kept, kept, "{context}");
                assert_eq!(w.iter().filter(|x| **x != 0.0).count(), kept, "{context}");
                match layer["k"].as_u64() {
                    // Distinct magnitudes: exactly k lie above the k-th largest.
                    Some(k) => assert_eq!(report.kept, k as usize, "{context}"),
                    None => assert_eq!(report.threshold, None, "{context}"),
                }
                layers_checked += 1;
            }
        }
    }
    // 3 models x 3 settings x 4 layers.
    assert_eq!(layers_checked, 36);
}
