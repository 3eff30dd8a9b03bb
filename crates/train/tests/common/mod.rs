//! Shared helpers of the train crate's integration tests: fixtures, prototxt and caffemodel reading.
#![allow(dead_code)]

use std::path::Path;

use caffe_proto::{NetParameter, SolverParameter};
use engine::LayerWeights;

/// `../shared/fixtures`: one rule for every crate, in testkit.
#[allow(unused_imports)] // not every test file uses it
pub use testkit::fixtures;

/// Every layer's blobs of a caffemodel (any generation), as plain data.
pub fn weights(path: &Path) -> Vec<LayerWeights> {
    let model = caffemodel::ModelFile::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    model.net().unwrap().engine_weights()
}

/// A prototxt as an upgraded (modern-layout) NetParameter.
pub fn read_net(path: &Path) -> NetParameter {
    caffemodel::text::read_net_upgraded(path, &caffemodel::text::Schema::builtin())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A solver prototxt.
pub fn read_solver(path: &Path) -> SolverParameter {
    caffemodel::text::read_solver(path, &caffemodel::text::Schema::builtin())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// max |a - b| / max |b|.
pub fn relative_error(found: &[f32], golden: &[f32]) -> f64 {
    assert_eq!(found.len(), golden.len());
    let max_diff = found
        .iter()
        .zip(golden)
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
        .fold(0.0, f64::max);
    let scale = golden
        .iter()
        .map(|b| f64::from(*b).abs())
        .fold(0.0, f64::max)
        .max(1e-30);
    max_diff / scale
}
