//! Replays the corpus of the `npz` fuzz target (crates/sparse/fuzz/corpus/npz, minimised with `cargo fuzz cmin`)
//! and its crash reproducers (fuzz/regressions/npz) through the same checks as the fuzzer (fuzz/checks.rs).

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

#[test]
fn npz_corpus_replays() {
    let scratch = tempfile::tempdir().unwrap();
    let mut counts = Vec::new();
    for kind in ["corpus", "regressions"] {
        let mut count = 0;
        if let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join("npz")) {
            for entry in entries {
                let data = std::fs::read(entry.unwrap().path()).unwrap();
                checks::check(&data, scratch.path());
                count += 1;
            }
        }
        counts.push(count);
    }
    assert!(counts[0] >= 5, "the npz corpus has only {} inputs", counts[0]);
}

/// Writes the seed corpus: small npz archives of every dtype (stored and deflated), a scipy sparse file, npy files.
/// Run by hand (`cargo test -p sparse --test fuzz_corpus -- --ignored`), then minimise with `cargo fuzz cmin`.
#[test]
#[ignore]
fn regenerate_seed_corpus() {
    use sparse::{write_npy, write_scipy_sparse, Csc, NpzWriter};
    let dir = fuzz_dir().join("corpus/npz");
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let keep = |name: &str, path: &Path| {
        let bytes = std::fs::read(path).unwrap();
        assert!(bytes.len() <= 4096, "{name} is {} bytes", bytes.len());
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    let all = tmp.path().join("all.npz");
    let mut writer = NpzWriter::create(&all).unwrap();
    writer
        .add("f32", &[2, 3], &[1.5f32, -0.0, f32::NAN, f32::INFINITY, 0.0, -7.25])
        .unwrap();
    writer.add("f64", &[2], &[1e300f64, -2.5]).unwrap();
    writer.add("conv1/W", &[1, 1, 3], &[0u8, 128, 255]).unwrap();
    writer.add("u16", &[3], &[0u16, 40_000, 65_535]).unwrap();
    writer.add("i32", &[], &[-5i32]).unwrap();
    writer.add("i64", &[0, 4], &[] as &[i64]).unwrap();
    writer.add_byte_strings("names", &[2], &[b"ab", b"c"]).unwrap();
    writer.finish().unwrap();
    keep("all-dtypes", &all);
    let one = tmp.path().join("one.npz");
    let mut writer = NpzWriter::create(&one).unwrap();
    writer.add("x", &[4], &[1.0f32, 0.0, 0.0, 2.0]).unwrap();
    writer.finish().unwrap();
    keep("one-f32", &one);
    let dense = [0.0f32, 1.0, 0.0, 2.0, 3.0, 0.0];
    let csc = Csc::from_dense(&dense, &[2, 3]).unwrap();
    let scipy = tmp.path().join("scipy.npz");
    write_scipy_sparse(&scipy, &csc).unwrap();
    keep("scipy-csc", &scipy);
    let npy = tmp.path().join("x.npy");
    write_npy(&npy, &[2, 2], &[1.0f32, 2.0, 3.0, 4.0]).unwrap();
    keep("npy-f32", &npy);
    write_npy(&npy, &[3], &[7u16, 8, 9]).unwrap();
    keep("npy-u16", &npy);
}
