//! Caffe's solvers in pure Rust, stage 4 of the Deep Compression workflow (retraining), with Caffe's semantics so
//! a run equals real Caffe's step by step.
//!
//! * [`Solver`]: `SGD` (momentum), `Nesterov`, `AdaGrad`, `RMSProp`, `AdaDelta`, `Adam` ([`SolverKind`]), from a
//!   `caffe_proto::SolverParameter`; per iteration `iter_size` forward/backward passes, then Caffe's `ApplyUpdate`:
//!   the learning rate ([`LrPolicy`]), gradient clipping by the global L2 norm, and per learnable parameter
//!   `Normalize` (1 / iter_size), `Regularize` (L2 or L1, `weight_decay x decay_mult`), `ComputeUpdateValue`
//!   (`local_rate = rate x lr_mult`, history blobs), then `data -= diff`. Test nets, `average_loss` smoothing,
//!   snapshots (`Net::ToProto` as a `NetParameter`, a `SolverState`) and restores.
//! * Fixed masks ([`ParamMask`], [`Solver::set_masks`]): pruned weights stay exactly `+0.0` while the rest retrain.
//! * Data ([`DataFeeder`]): `Data` layers read an LMDB (or an IDX pair) in Caffe's order with `transform_param`;
//!   any other feeding through the [`Feeder`] trait.
//! * Progress ([`Observer`]): per iteration, per test, per snapshot; the library prints nothing and writes no file.
//!
//! The crate knows no file format: it takes `caffe_proto` messages, reads datasets through the `datasets` crate and
//! returns snapshots as messages for the caller to encode and write.
//!
//! ```
//! use caffe_proto::{BlobShape, InputParameter, InnerProductParameter, LayerParameter, NetParameter, SolverParameter};
//! use train::{FnFeeder, Solver, SolverNets};
//!
//! let layer = |name: &str, kind: &str, bottom: &[&str], top: &[&str]| LayerParameter {
//!     name: Some(name.into()),
//!     r#type: Some(kind.into()),
//!     bottom: bottom.iter().map(|s| s.to_string()).collect(),
//!     top: top.iter().map(|s| s.to_string()).collect(),
//!     ..Default::default()
//! };
//! let mut input = layer("input", "Input", &[], &["x", "y"]);
//! input.input_param = Some(InputParameter { shape: vec![BlobShape { dim: vec![4, 1] }] });
//! let mut ip = layer("ip", "InnerProduct", &["x"], &["p"]);
//! ip.inner_product_param = Some(InnerProductParameter { num_output: Some(1), ..Default::default() });
//! let loss = layer("loss", "EuclideanLoss", &["p", "y"], &["loss"]);
//! let net = NetParameter { layer: vec![input, ip, loss], ..Default::default() };
//! let param = SolverParameter {
//!     net_param: Some(net),
//!     base_lr: Some(0.1),
//!     lr_policy: Some("fixed".into()),
//!     max_iter: Some(200),
//!     ..Default::default()
//! };
//! let nets = SolverNets::resolve(&param, |_| Err::<NetParameter, _>("no files"))?;
//! // y = 2x: feed the same batch every iteration.
//! let feeder = FnFeeder::new(vec![], |net: &mut engine::Net| {
//!     net.set_input("x", &[4, 1], &[1.0, 2.0, 3.0, 4.0])?;
//!     net.set_input("y", &[4, 1], &[2.0, 4.0, 6.0, 8.0])
//! });
//! let mut solver = Solver::with_feeders(&param, nets, Box::new(feeder), vec![])?;
//! solver.solve(&mut ())?;
//! let w = solver.net().params("ip").unwrap()[0].data()[0];
//! assert!((w - 2.0).abs() < 0.05, "{w}");
//! # Ok::<(), train::Error>(())
//! ```

#![warn(missing_docs)]

mod distill;
mod error;
mod feeder;
mod lr;
mod solver;
mod update;

pub use distill::Distillation;
pub use error::Error;
pub use feeder::{rand_skip_count, DataFeeder, DataOptions, Feeder, FnFeeder, Source};
pub use lr::LrPolicy;
pub use solver::{
    Control, IterationReport, Observer, Output, ParamCodebook, ParamMask, Snapshot, Solver, SolverNets, TestNetSpec,
    TestReport,
};
pub use update::SolverKind;
