//! Every case of the layer zoo (golden/layers): real Caffe's forward and backward of one layer at a time, replayed
//! through the public API as a user would (build the net from its prototxt, copy the caffemodel, feed the bottoms,
//! forward, seed the top diffs, backward) and compared blob by blob.
//!
//! Metric, per array: max |ours - Caffe's| / max(max |Caffe's|, 1e-12); tops within 1e-4, bottom and parameter
//! diffs within 1e-3. Cases the engine cannot run yet are listed in [`NOT_YET`]; the test fails both when a case
//! outside the list fails and when a listed case passes, so the list can only shrink.

mod common;

use std::path::Path;

use common::{fixtures, read_npy, read_prototxt, relative_error, weights};
use engine::{Net, NetOptions};
use serde_json::Value;

const TOP_TOLERANCE: f64 = 1e-4;
const DIFF_TOLERANCE: f64 = 1e-3;

/// Cases (folder names) the engine does not pass yet. Only shrinks: a listed case that passes fails the test.
const NOT_YET: &[&str] = &[];

/// The name of the layer under test in every case's net.
const LAYER: &str = "L";

/// One compared array: what it is and its relative error.
struct Check {
    what: String,
    error: f64,
    tolerance: f64,
}

impl Check {
    fn ok(&self) -> bool {
        // NaN counts as bad.
        self.error <= self.tolerance
    }
}

fn json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Compares `ours` (shape and values) with the golden `.npy` at `file`.
fn compare(what: String, ours: Option<&engine::Tensor>, file: &Path, tolerance: f64) -> Result<Check, String> {
    let golden = read_npy(file);
    let ours = ours.ok_or_else(|| format!("{what}: missing"))?;
    if ours.shape() != golden.shape.as_slice() {
        return Err(format!("{what}: shape {:?}, Caffe's {:?}", ours.shape(), golden.shape));
    }
    Ok(Check {
        what,
        error: relative_error(ours.data(), &golden.data),
        tolerance,
    })
}

/// Runs one case; `Err` when the net cannot be built or run, otherwise every comparison made.
fn run_case(case: &Path) -> Result<Vec<Check>, String> {
    let info = json(&case.join("case.json"))?;
    let options = match info["phase"].as_str() {
        Some("TEST") => NetOptions::test(),
        _ => NetOptions::train(),
    };
    let mut param = read_prototxt(&case.join("net.prototxt"));
    // Paths inside the prototxt are relative to the case folder; Caffe reads them relative to the working directory.
    for layer in &mut param.layer {
        if let Some(source) = layer.infogain_loss_param.as_mut().and_then(|p| p.source.as_mut()) {
            *source = case.join(&*source).to_string_lossy().into_owned();
        }
    }
    let mut net = Net::new(&param, &options).map_err(|e| e.to_string())?;
    net.copy_from(&weights(&case.join("weights.caffemodel")))
        .map_err(|e| e.to_string())?;
    for bottom in strings(&info["bottoms"]) {
        let npy = read_npy(&case.join("bottom").join(format!("{bottom}.npy")));
        net.set_input(&bottom, &npy.shape, &npy.data)
            .map_err(|e| e.to_string())?;
    }
    net.forward().map_err(|e| format!("forward: {e}"))?;

    let mut checks = Vec::new();
    let tops = strings(&info["tops"]);
    for top in &tops {
        let file = case.join("top").join(format!("{top}.npy"));
        checks.push(compare(format!("top {top}"), net.blob(top), &file, TOP_TOLERANCE)?);
    }
    if info["backward"].as_bool() != Some(true) || !case.join("top_diff").is_dir() {
        return Ok(checks);
    }

    // A loss layer's top gets its loss weight from the net itself, as in Caffe. Any other top is seeded with Caffe's
    // diff: the net fills a top that has a loss weight (Embed's case) with that weight first, so the extra gradient
    // is the difference.
    let is_loss = info["loss"].as_bool() == Some(true);
    let loss_weights = net
        .layers()
        .find(|l| l.name == LAYER)
        .map(|l| l.tops.iter().cloned().zip(l.loss_weights.clone()).collect::<Vec<_>>())
        .ok_or("the net has no layer L")?;
    let seeds: Vec<(String, Vec<f32>)> = if is_loss {
        Vec::new()
    } else {
        tops.iter()
            .map(|top| {
                let weight = loss_weights.iter().find(|(t, _)| t == top).map_or(0.0, |(_, w)| *w);
                let npy = read_npy(&case.join("top_diff").join(format!("{top}.npy")));
                (top.clone(), npy.data.iter().map(|d| d - weight).collect())
            })
            .collect()
    };
    let extra: Vec<(&str, &[f32])> = seeds.iter().map(|(t, d)| (t.as_str(), d.as_slice())).collect();
    net.backward_with(&extra).map_err(|e| format!("backward: {e}"))?;

    for bottom in strings(&info["bottoms"]) {
        let file = case.join("bottom_diff").join(format!("{bottom}.npy"));
        if file.is_file() {
            checks.push(compare(
                format!("bottom diff {bottom}"),
                net.blob_diff(&bottom),
                &file,
                DIFF_TOLERANCE,
            )?);
        }
    }
    let n_params = info["params"].as_array().map_or(0, Vec::len);
    let param_diffs = net.param_diffs(LAYER).unwrap_or(&[]);
    for i in 0..n_params {
        let file = case.join("param_diff").join(format!("{i}.npy"));
        if file.is_file() {
            checks.push(compare(
                format!("param diff {i}"),
                param_diffs.get(i),
                &file,
                DIFF_TOLERANCE,
            )?);
        }
    }
    Ok(checks)
}

#[test]
fn every_layer_case_matches_caffe() {
    let Some(dir) = fixtures() else { return };
    let root = dir.join("golden/layers");
    let index = json(&root.join("INDEX.json")).unwrap();
    let cases = strings(&index["cases"]);
    assert!(!cases.is_empty(), "INDEX.json lists no cases");
    for listed in NOT_YET {
        assert!(
            cases.iter().any(|c| c == listed),
            "NOT_YET names unknown case '{listed}'"
        );
    }

    let mut problems = Vec::new();
    let (mut passed, mut not_yet) = (0, 0);
    for case in &cases {
        let outcome = run_case(&root.join(case));
        let listed = NOT_YET.contains(&case.as_str());
        let failure = match &outcome {
            Err(e) => Some(e.clone()),
            Ok(checks) => {
                let bad: Vec<String> = checks
                    .iter()
                    .filter(|c| !c.ok())
                    .map(|c| format!("{} {:.3e} > {:.0e}", c.what, c.error, c.tolerance))
                    .collect();
                (!bad.is_empty()).then(|| bad.join("; "))
            }
        };
        let detail = match &outcome {
            Ok(checks) => checks
                .iter()
                .map(|c| format!("{} {:.1e}", c.what, c.error))
                .collect::<Vec<_>>()
                .join(", "),
            Err(_) => String::new(),
        };
        match (&failure, listed) {
            (None, false) => {
                passed += 1;
                eprintln!("pass     {case}: {detail}");
            }
            (Some(why), true) => {
                not_yet += 1;
                eprintln!("not yet  {case}: {why}");
            }
            (None, true) => {
                eprintln!("PASSES   {case} but is in NOT_YET: {detail}");
                problems.push(format!("{case} passes now: remove it from NOT_YET"));
            }
            (Some(why), false) => {
                eprintln!("FAIL     {case}: {why}");
                problems.push(format!("{case}: {why}"));
            }
        }
    }
    eprintln!(
        "{passed} cases pass, {not_yet} not yet supported, {} problems",
        problems.len()
    );
    assert!(problems.is_empty(), "golden layer cases:\n{}", problems.join("\n"));
}
