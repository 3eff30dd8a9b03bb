//! testdata/: files the project's own code generates, from fixed seeds.
//!
//! The README's default model, `lenet.caffemodel`, is a LeNet this project trained itself: Caffe's lenet_solver
//! settings (seed 1701) on the fixtures' 10,000-image MNIST subset, by the `train` crate, saved in the deploy net
//! `lenet.prototxt` describes. `lenet_random.caffemodel` keeps uniform random weights (xavier rule, fixed seed) for
//! the tests that rely on their distribution.

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

/// The largest difference between two models' blob values, relative to the largest magnitude of each blob, or
/// `None` when their structure differs.
fn float_distance(a: &[u8], b: &[u8]) -> Option<f32> {
    let (a, b) = (NetParameter::decode(a).ok()?, NetParameter::decode(b).ok()?);
    if a.layer.len() != b.layer.len() {
        return None;
    }
    let mut worst = 0f32;
    for (la, lb) in a.layer.iter().zip(&b.layer) {
        let (mut la, mut lb) = (la.clone(), lb.clone());
        let (ba, bb) = (std::mem::take(&mut la.blobs), std::mem::take(&mut lb.blobs));
        if la != lb || ba.len() != bb.len() {
            return None;
        }
        for (x, y) in ba.iter().zip(&bb) {
            if x.shape != y.shape || x.data.len() != y.data.len() {
                return None;
            }
            let scale = x.data.iter().fold(0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE);
            let diff = x.data.iter().zip(&y.data).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            worst = worst.max(diff / scale);
        }
    }
    Some(worst)
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
            // Training sums floats in an order that is fixed for a machine, but the GEMM kernels chosen for another
            // CPU (AVX2, AVX-512) round differently: accept a trained model within float noise of this machine's.
            match (name.ends_with(".caffemodel"), float_distance(&current, &bytes)) {
                (true, Some(d)) if name == "lenet.caffemodel" && d <= 1e-3 => {
                    eprintln!(
                        "{}: within {d:.1e} of this machine's training (not bit-identical)",
                        path.display()
                    );
                }
                _ => {
                    eprintln!("{}: differs from what `cargo xtask testdata` generates", path.display());
                    ok = false;
                }
            }
        } else {
            caffemodel::write_atomic(&path, |w| w.write_all(&bytes))?;
            println!("wrote {} ({} bytes)", path.display(), bytes.len());
        }
    }
    Ok(ok)
}
