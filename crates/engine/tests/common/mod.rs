//! Helpers shared by the tests against real Caffe: the fixtures folder, `.npy` and IDX readers, weight loading.
#![allow(dead_code)]

use std::io::Read;
use std::path::Path;

use engine::LayerWeights;

/// `../shared/fixtures`: one rule for every crate, in testkit.
#[allow(unused_imports)] // not every test file uses it
pub use testkit::fixtures;

/// A `.npy` array of little-endian f32 (`<f4`) or u8 (`|u1`), C order, widened to f32.
pub struct Npy {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Reads a numpy format 1.0 `.npy` file of `<f4` or `|u1` values (what real Caffe's golden files use).
pub fn read_npy(path: &Path) -> Npy {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}: not an npy file", path.display());
    assert_eq!(bytes[6], 1, "{}: only npy format 1.0 is expected", path.display());
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(
        header.contains("'fortran_order': False"),
        "{}: {header}",
        path.display()
    );
    let shape_text = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let payload = &bytes[10 + header_len..];
    let count: usize = shape.iter().product();
    let data: Vec<f32> = if header.contains("'descr': '<f4'") {
        assert_eq!(payload.len(), count * 4, "{}", path.display());
        payload
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else if header.contains("'descr': '|u1'") {
        assert_eq!(payload.len(), count, "{}", path.display());
        payload.iter().map(|&b| b as f32).collect()
    } else {
        panic!("{}: unexpected dtype in {header}", path.display());
    };
    Npy { shape, data }
}

/// A gzipped IDX file: (dimensions, bytes).
pub fn read_idx_gz(path: &Path) -> (Vec<usize>, Vec<u8>) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file).read_to_end(&mut bytes).unwrap();
    assert_eq!(&bytes[..2], &[0, 0], "{}: bad IDX magic", path.display());
    assert_eq!(bytes[2], 0x08, "{}: IDX payload must be uint8", path.display());
    let rank = bytes[3] as usize;
    let dims: Vec<usize> = (0..rank)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let payload = bytes[4 + 4 * rank..].to_vec();
    assert_eq!(payload.len(), dims.iter().product::<usize>(), "{}", path.display());
    (dims, payload)
}

/// MNIST images as the TEST net's transform makes them: pixel * 0.00390625, NCHW with C = 1.
pub fn mnist_images(path: &Path) -> (usize, Vec<f32>) {
    let (dims, pixels) = read_idx_gz(path);
    assert_eq!(&dims[1..], &[28, 28]);
    (dims[0], pixels.iter().map(|&p| p as f32 * 0.00390625).collect())
}

/// Every layer's blobs of a caffemodel (any generation), as plain data.
pub fn weights(path: &Path) -> Vec<LayerWeights> {
    let model = caffemodel::ModelFile::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    clikit::engine_weights(&model.net().unwrap())
}

/// A prototxt as a typed, upgraded (modern-layout) NetParameter.
pub fn read_prototxt(path: &Path) -> caffe_proto::NetParameter {
    caffemodel::text::read_net_upgraded(path, &caffemodel::text::Schema::builtin())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A prototxt exactly as written (no upgrade).
pub fn read_prototxt_raw(path: &Path) -> caffe_proto::NetParameter {
    caffemodel::text::read_net(path, &caffemodel::text::Schema::builtin())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The comparison metric of these tests (one definition, in testkit).
#[allow(unused_imports)] // not every test file uses it
pub use testkit::relative_error;
