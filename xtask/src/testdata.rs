//! testdata/: files the project's own code generates, from fixed seeds.
//!
//! The README's default model, `lenet.caffemodel`, is a LeNet this project trained itself: Caffe's lenet_solver
//! settings (seed 1701) on the fixtures' 10,000-image MNIST subset, by the `train` crate, saved in the deploy net
//! `lenet.prototxt` describes. `lenet_random.caffemodel` keeps uniform random weights (xavier rule, fixed seed) for
//! the tests that rely on their distribution.
//!
//! The training runs in [`engine::Arithmetic::Reproducible`]: every sum in a fixed order, so the model has the same
//! bytes on any x86-64 CPU (AVX-512, AVX2 or SSE2 only) and with any thread count, and `--check` compares bytes.
//! (Checking accuracy within a band instead would let a real change of the training go unnoticed.)

use anyhow::{bail, Context, Result};
use caffe_proto::{BlobProto, BlobShape, NetParameter};
use caffemodel::text::{self, Schema};
use prost::Message;
use std::path::Path;

/// The fixtures' MNIST LMDBs (written by Caffe's convert_mnist_data), relative to testdata/.
const TRAIN_LMDB: &str = "../../shared/fixtures/golden/data/mnist_train10k_lmdb";
const TEST_LMDB: &str = "../../shared/fixtures/golden/data/mnist_test_lmdb";

/// Iterations the default model is trained for (about 13 passes over the 10,000 images at batch 64).
const TRAIN_ITERATIONS: i32 = 2000;

/// The deploy LeNet with the weights of a trained net.
fn deploy_with_weights(net: &engine::Net) -> Result<NetParameter> {
    let mut deploy = crate::gen::lenet(1701, false);
    for layer in &mut deploy.layer {
        let Some(params) = net.params(layer.name()) else {
            continue;
        };
        layer.blobs = params
            .iter()
            .map(|t| BlobProto {
                shape: Some(BlobShape {
                    dim: t.shape().iter().map(|&d| d as i64).collect(),
                }),
                data: t.data().to_vec(),
                ..Default::default()
            })
            .collect();
    }
    Ok(deploy)
}

/// Trains LeNet as `testdata/lenet_solver.prototxt` says (no test passes), for [`TRAIN_ITERATIONS`]. `None`, with
/// a note, when the fixtures are missing outside CI (under `CI=true` that is an error).
fn trained_lenet(testdata: &Path) -> Result<Option<NetParameter>> {
    if !testdata.join(TRAIN_LMDB).join("data.mdb").is_file() {
        let message = format!(
            "the default model is trained on the fixtures' MNIST LMDB, missing at {}",
            testdata.join(TRAIN_LMDB).display()
        );
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            bail!(message);
        }
        eprintln!("note: {message}; lenet.caffemodel skipped");
        return Ok(None);
    }
    let mut param = crate::gen::lenet_solver("", TRAIN_ITERATIONS, "");
    param.net = None;
    param.net_param = Some(crate::gen::lenet_train_test(TRAIN_LMDB, TEST_LMDB));
    param.test_iter.clear();
    param.test_interval = Some(0);
    // Fixed-order arithmetic: the same bytes on every x86-64 CPU and thread count, so the check is byte for byte.
    engine::set_arithmetic(engine::Arithmetic::Reproducible);
    let nets = train::SolverNets::resolve(&param, |_| Err::<NetParameter, _>("no net files"))?;
    let mut solver = train::Solver::new(&param, nets, &train::DataOptions::new(testdata))?;
    solver.solve(&mut ())?;
    deploy_with_weights(solver.net()).map(Some)
}

/// (file name, bytes) of everything in testdata/.
pub fn files(testdata: &Path) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let schema = Schema::builtin();
    let mut files = Vec::new();
    if let Some(trained) = trained_lenet(testdata)? {
        files.push(("lenet.caffemodel", trained.encode_to_vec()));
    }
    files.extend([
        ("lenet_random.caffemodel", crate::gen::lenet(1701, true).encode_to_vec()),
        (
            "lenet.prototxt",
            text::to_text(&crate::gen::lenet(1701, false), &schema, "NetParameter").into_bytes(),
        ),
        (
            "lenet_train_test.prototxt",
            text::to_text(
                &crate::gen::lenet_train_test(TRAIN_LMDB, TEST_LMDB),
                &schema,
                "NetParameter",
            )
            .into_bytes(),
        ),
        (
            "lenet_solver.prototxt",
            text::to_text(
                &crate::gen::lenet_solver("lenet_train_test.prototxt", 10_000, "lenet"),
                &schema,
                "SolverParameter",
            )
            .into_bytes(),
        ),
    ]);
    Ok(files)
}

/// Writes testdata/, or with `check` compares it; returns whether everything is current.
pub fn run(check: bool) -> Result<bool> {
    let dir = crate::repo_root().join("testdata");
    std::fs::create_dir_all(&dir)?;
    let mut ok = true;
    for (name, bytes) in files(&dir).context("generating testdata/")? {
        let path = dir.join(name);
        if check {
            let current = std::fs::read(&path).unwrap_or_default();
            if current == bytes {
                continue;
            }
            eprintln!("{}: differs from what `cargo xtask testdata` generates", path.display());
            ok = false;
        } else {
            outfile::write_atomic(&path, |w| w.write_all(&bytes))?;
            println!("wrote {} ({} bytes)", path.display(), bytes.len());
        }
    }
    Ok(ok)
}
