//! Replays the corpora of the `idx` and `datum` fuzz targets (crates/datasets/fuzz/corpus/<target>, minimised with
//! `cargo fuzz cmin`) and their crash reproducers (fuzz/regressions/<target>) through the same checks as the
//! fuzzer (fuzz/checks.rs).

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn replay(target: &str, min: usize, mut check: impl FnMut(&[u8])) {
    let mut counts = Vec::new();
    for kind in ["corpus", "regressions"] {
        let mut count = 0;
        if let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) {
            for entry in entries {
                check(&std::fs::read(entry.unwrap().path()).unwrap());
                count += 1;
            }
        }
        counts.push(count);
    }
    assert!(counts[0] >= min, "the {target} corpus has only {} inputs", counts[0]);
}

#[test]
fn idx_corpus_replays() {
    replay("idx", 5, checks::idx);
}

#[test]
fn datum_corpus_replays() {
    let scratch = tempfile::tempdir().unwrap();
    replay("datum", 5, |data| checks::datum(data, scratch.path()));
}

/// Writes the seed corpora: tiny IDX files (plain and gzipped), the first MNIST test images and labels, a cut gzip
/// stream, and Datum records (the first of the fixtures' MNIST LMDB, float, encoded, empty) each after a transform
/// byte. Run by hand (`cargo test -p datasets --test fuzz_corpus -- --ignored`), then minimise with `cargo fuzz cmin`.
#[test]
#[ignore]
fn regenerate_seed_corpus() {
    use caffe_proto::Datum;
    use prost::Message;
    use std::io::Write;
    let corpus = fuzz_dir().join("corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        assert!(bytes.len() <= 4096, "{target}/{name} is {} bytes", bytes.len());
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    let gzip = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    };
    let images = |n: u32, rows: u32, cols: u32, pixels: &[u8]| {
        let mut f = vec![0, 0, 8, 3];
        for d in [n, rows, cols] {
            f.extend_from_slice(&d.to_be_bytes());
        }
        f.extend_from_slice(pixels);
        f
    };
    let tiny = images(2, 2, 3, &[0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255]);
    write("idx", "images-2x2x3", &tiny);
    write("idx", "images-2x2x3.gz", &gzip(&tiny));
    write("idx", "images-empty", &images(0, 28, 28, &[]));
    let mut labels = vec![0, 0, 8, 1, 0, 0, 0, 3];
    labels.extend_from_slice(&[7, 2, 1]);
    write("idx", "labels-3", &labels);
    write("idx", "labels-3.gz", &gzip(&labels));
    let mut first_datum = None;
    if let Some(fixtures) = testkit::fixtures() {
        let test_images = datasets::IdxImages::open(fixtures.join("mnist/t10k-images-idx3-ubyte.gz")).unwrap();
        let pixels: Vec<u8> = (0..3).flat_map(|i| test_images.image(i).unwrap().to_vec()).collect();
        let three = images(3, 28, 28, &pixels);
        write("idx", "mnist-t10k-3-images.gz", &gzip(&three));
        let real = std::fs::read(fixtures.join("mnist/t10k-labels-idx1-ubyte.gz")).unwrap();
        write("idx", "mnist-t10k-labels-head.gz", &real[..1024]);
        let lmdb = datasets::LmdbDataset::open_unlocked(fixtures.join("golden/data/mnist_test_lmdb")).unwrap();
        let mut raw = lmdb.raw_reader().unwrap();
        first_datum = raw.next().unwrap().map(|r| r.value.to_vec());
    }
    let mut datums: Vec<(&str, Vec<u8>)> = vec![
        (
            "bytes-1x2x3",
            Datum {
                channels: Some(1),
                height: Some(2),
                width: Some(3),
                data: Some(vec![0, 10, 20, 30, 40, 50]),
                label: Some(4),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "floats-3x2x2",
            Datum {
                channels: Some(3),
                height: Some(2),
                width: Some(2),
                float_data: (0..12).map(|i| i as f32 * 0.25 - 1.0).collect(),
                label: Some(-1),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "encoded",
            Datum {
                channels: Some(1),
                height: Some(1),
                width: Some(1),
                data: Some(b"\x89PNG".to_vec()),
                encoded: Some(true),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        ("empty", Vec::new()),
    ];
    if let Some(first) = first_datum {
        datums.push(("mnist-test-first", first));
    }
    for (flags, suffix) in [
        (0u8, "plain"),
        (0x1a, "crop2-mirror-train-mean1"),
        (0x71, "crop1-mean3-scale"),
    ] {
        for (name, value) in &datums {
            let mut input = vec![flags];
            input.extend_from_slice(value);
            write("datum", &format!("{name}-{suffix}"), &input);
        }
    }
}
