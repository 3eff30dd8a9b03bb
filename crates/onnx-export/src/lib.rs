//! Caffe nets as ONNX models.
//!
//! [`export`] translates a net the engine has built (so every blob's shape is known, exactly as Caffe computes it)
//! into an ONNX [`ModelProto`](proto::ModelProto): the graph input is named after the net's input blob, with its
//! shape; the graph outputs are the blobs no layer reads, named after them; the weights are initializers
//! (little-endian `raw_data`, not listed as graph inputs). [`write()`] stores the model, moving the weights to an
//! external data file when the model would pass protobuf's 2 GiB limit.
//!
//! Each layer becomes the ONNX operators that compute what Caffe's CPU code computes, and a layer that ONNX cannot
//! express that way is an error naming the layer and the reason, never dropped. The places where a naive
//! translation goes wrong, and what is done instead:
//! - Pooling: the output size is Caffe's (ceil, then a last window starting in the right padding dropped), taken
//!   from the engine; ONNX gets `ceil_mode = 0` with the extra end padding that yields that size. MAX windows are
//!   clipped to the input (ONNX ignores padding for MaxPool). AVE divides by the window clipped at the padded edge,
//!   counting padding: a zero `Pad`, then `AveragePool(count_include_pad = 0)` over the padded input, which is exact
//!   in every opset (onnxruntime's own AveragePool agrees with Caffe only from opset 19).
//! - LRN: ACROSS_CHANNELS is ONNX's LRN with `bias = k`; WITHIN_CHANNEL is built from Mul, AveragePool, Pow as
//!   Caffe builds it (its `k` is unused there).
//! - BatchNorm: mean and variance divided by the stored scale factor (0 stays 0), Caffe's `eps`; a Scale layer that
//!   alone reads its output is folded in as gamma and beta (found through the blobs, not the file order).
//! - InnerProduct: Flatten(axis) + Gemm, reshaped back when `axis != 1`; Softmax over one axis (opset >= 13).
//! - Eltwise SUM with `coeff`: each input scaled first.
#![warn(missing_docs)]

mod error;
mod export;
mod graph;
mod write;

/// The ONNX schema subset this crate writes (`proto/onnx.proto`), as prost types.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub use error::ExportError;
pub use export::{export, ExportOptions, DEFAULT_OPSET};
pub use write::{write, Written, EXTERNAL_THRESHOLD};
