//! Caffe's forward and backward passes in pure Rust (CPU, f32), stages 3 and 4 of the Deep Compression workflow.
//!
//! A [`Net`] is built from a modern `caffe_proto::NetParameter` as Caffe builds it for a phase: layers are chosen
//! by their include/exclude rules ([`graph::filter_layers`]), Split layers are inserted where a blob has several
//! readers ([`graph::insert_splits`], Caffe's names), in-place layers share their blob, and data-reading layers
//! (`Input`, `Data`, `HDF5Data`, ...) become [`ExternalInput`]s the caller feeds. Weights come in as plain data
//! ([`LayerWeights`]) and are matched by layer name with Caffe's shape rules; the engine reads no file
//! except the one a layer's own parameters name (InfogainLoss's `infogain_loss_param.source`, read as Caffe reads it:
//! relative to the working directory).
//!
//! ```
//! use caffe_proto::{InputParameter, BlobShape, InnerProductParameter, LayerParameter, NetParameter};
//! use engine::{LayerWeights, Net, NetOptions, WeightBlob};
//!
//! let layer = |name: &str, kind: &str| LayerParameter { name: Some(name.into()), r#type: Some(kind.into()), ..Default::default() };
//! let mut input = layer("data", "Input");
//! input.top = vec!["data".into()];
//! input.input_param = Some(InputParameter { shape: vec![BlobShape { dim: vec![1, 2] }] });
//! let mut ip = layer("ip", "InnerProduct");
//! ip.bottom = vec!["data".into()];
//! ip.top = vec!["ip".into()];
//! ip.inner_product_param = Some(InnerProductParameter { num_output: Some(1), ..Default::default() });
//! let param = NetParameter { layer: vec![input, ip], ..Default::default() };
//!
//! let mut net = Net::new(&param, &NetOptions::test())?;
//! net.copy_from(&[LayerWeights {
//!     name: "ip".into(),
//!     blobs: vec![WeightBlob::new(vec![1, 2], vec![3.0, 4.0]), WeightBlob::new(vec![1], vec![0.5])],
//! }])?;
//! net.set_input("data", &[1, 2], &[1.0, 2.0])?;
//! net.forward()?;
//! assert_eq!(net.blob("ip").unwrap().data(), &[11.5]);
//! # Ok::<(), engine::Error>(())
//! ```
//!
//! For training, [`Net::backward`] runs Caffe's backward pass (loss weights seed the loss tops' diffs, only the
//! layers Caffe would run backward are run, parameter gradients accumulate until [`Net::clear_param_diffs`]) and
//! [`Net::learnable_params_mut`] hands a solver the parameters with their `lr_mult` / `decay_mult` and gradients.
//! Caffe's rules carry over: no diff goes into data-layer tops unless `force_backward` asks (never into loss labels);
//! a layer runs backward only if a bottom or a parameter (`lr_mult != 0`) needs it and one of its tops leads to a
//! loss without being cut by `propagate_down: false`; in-place layers share one diff between top and bottom; Split
//! layers sum their tops' diffs; BatchNorm's three statistics blobs get `lr_mult 0` (decay_mult keeps its default,
//! as BVLC's `BatchNormLayer::LayerSetUp` leaves it). Parameters shared by `param { name }` act as one blob: the
//! first layer naming it owns it, the others take its values at each forward and add their gradients to its diff.
//! The gradients are checked against finite differences for every layer and against real Caffe's LeNet SGD steps.

#![warn(missing_docs)]

mod arith;
mod blas;
pub mod error;
mod filler;
pub mod graph;
mod layers;
pub mod math;
mod net;
mod rng;
mod simd;
mod sparse;
mod tensor;
mod weights;

pub use arith::{arithmetic, set_arithmetic, Arithmetic};
pub use error::{Error, LayerError};
pub use filler::filled;
pub use layers::{Backward, Layer, LAYER_TYPES};
pub use net::{ExternalInput, LayerInfo, LearnableParam, Net, NetOptions};
pub use sparse::{set_sparse_crossover, sparse_crossover, CONV_CROSSOVER, INNER_PRODUCT_CROSSOVER};
pub use tensor::Tensor;
pub use weights::{shape_equals, CopyReport, LayerWeights, WeightBlob};

/// Layer types whose tops become [`ExternalInput`]s.
pub const DATA_LAYER_TYPES: &[&str] = layers::DATA_SOURCE_TYPES;
