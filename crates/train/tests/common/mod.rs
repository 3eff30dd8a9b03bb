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
    clikit::engine_weights(&model.net().unwrap())
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

/// The comparison metric of these tests (one definition, in testkit).
#[allow(unused_imports)] // not every test file uses it
pub use testkit::relative_error;
