//! testdata/: files the project's own code generates, from fixed seeds.

use anyhow::Result;
use caffemodel::text::{self, Schema};
use prost::Message;

/// The fixtures' MNIST LMDBs (written by Caffe's convert_mnist_data), relative to testdata/.
const TRAIN_LMDB: &str = "../../shared/fixtures/golden/data/mnist_train10k_lmdb";
const TEST_LMDB: &str = "../../shared/fixtures/golden/data/mnist_test_lmdb";

/// (file name, bytes) of everything in testdata/.
pub fn files() -> Vec<(&'static str, Vec<u8>)> {
    let schema = Schema::builtin();
    vec![
        ("lenet.caffemodel", crate::gen::lenet(1701, true).encode_to_vec()),
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
    ]
}

/// Writes testdata/, or with `check` compares it; returns whether everything is current.
pub fn run(check: bool) -> Result<bool> {
    let dir = crate::repo_root().join("testdata");
    std::fs::create_dir_all(&dir)?;
    let mut ok = true;
    for (name, bytes) in files() {
        let path = dir.join(name);
        if check {
            let current = std::fs::read(&path).unwrap_or_default();
            if current != bytes {
                eprintln!("{}: differs from what `cargo xtask testdata` generates", path.display());
                ok = false;
            }
        } else {
            caffemodel::write_atomic(&path, |w| w.write_all(&bytes))?;
            println!("wrote {} ({} bytes)", path.display(), bytes.len());
        }
    }
    Ok(ok)
}
