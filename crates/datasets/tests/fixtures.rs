//! Against the shared fixtures: real MNIST IDX files, the LMDBs Caffe read in the golden runs, and the labels
//! Caffe's Data layer saw.

use std::path::{Path, PathBuf};

use caffe_proto::{Phase, TransformationParameter};
use datasets::{
    write_lmdb, Batch, Batcher, Dataset, IdxDataset, IdxImages, IdxLabels, LmdbDataset, RecordValues, Transformer,
};
use sha2::{Digest, Sha256};
use testkit::fixtures;

/// Fashion-MNIST from Debian's `dataset-fashion-mnist`, which the project's CI installs: required under CI=true.
fn fashion_mnist() -> Option<PathBuf> {
    let dir = PathBuf::from("/usr/share/datasets/fashion-mnist");
    if dir.join("t10k-images-idx3-ubyte.gz").is_file() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{} missing (CI installs dataset-fashion-mnist)", dir.display());
    }
    eprintln!(
        "note: {} missing (apt-get install dataset-fashion-mnist); test skipped",
        dir.display()
    );
    None
}

/// A 1-D uint8 `.npy` (format 1.0), read independently of the code under test.
fn read_npy_u8(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "{}", path.display());
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(
        header.contains("'descr': '|u1'") && header.contains("'fortran_order': False"),
        "{header}"
    );
    let data = bytes[10 + header_len..].to_vec();
    assert!(header.contains(&format!("'shape': ({},)", data.len())), "{header}");
    data
}

/// sha256 of every key followed by its value, in key order (GOLDEN.md section A's record-level identity).
fn record_digest(lmdb: &LmdbDataset) -> String {
    let mut sha = Sha256::new();
    let mut raw = lmdb.raw_reader().unwrap();
    while let Some(record) = raw.next().unwrap() {
        sha.update(record.key);
        sha.update(record.value);
    }
    sha.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

const MNIST_TEST_DIGEST: &str = "59cd19dd306b99878c72aeca2593fc486560b83bd5e484c278580da23899020a";
const MNIST_TRAIN10K_DIGEST: &str = "76d1c268f9d9a52917435a2edfb4bc00ec4ff1691db8346e21328dd5cf8603b2";
const FASHION_TEST_DIGEST: &str = "8de0e48dd9efdac2321b9d7224258409e219e3720e5272b27ff29ea5dd02ccf7";

#[test]
fn mnist_t10k_idx_facts() {
    let Some(dir) = fixtures() else { return };
    let images = IdxImages::open(dir.join("mnist/t10k-images-idx3-ubyte.gz")).unwrap();
    let labels = IdxLabels::open(dir.join("mnist/t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!((images.len(), images.rows(), images.cols()), (10_000, 28, 28));
    assert_eq!(images.pixels().len(), 10_000 * 784);
    assert_eq!(labels.len(), 10_000);
    // The first test digit is a 7; the per-digit counts of the MNIST test set are published facts.
    assert_eq!(labels.labels()[..10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    let mut counts = [0usize; 10];
    for &label in labels.labels() {
        counts[label as usize] += 1;
    }
    assert_eq!(counts, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    assert_eq!(counts.iter().sum::<usize>(), 10_000);
    // Pixels are 0..=255 with a black border: the corners of every image are 0.
    for i in 0..images.len() {
        let image = images.image(i).unwrap();
        assert_eq!([image[0], image[27], image[756], image[783]], [0; 4], "image {i}");
    }
    assert!(images.image(10_000).is_none());

    // The 10,000-image training subset, with the labels Caffe's Data layer read from its LMDB.
    let train = IdxDataset::open(
        dir.join("mnist/train-10k-images-idx3-ubyte.gz"),
        dir.join("mnist/train-10k-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    assert_eq!(
        (train.len(), train.images().rows(), train.images().cols()),
        (10_000, 28, 28)
    );
    let caffe_labels = read_npy_u8(&dir.join("golden/lenet/lenet_mnist_v2_on_train10k/labels.npy"));
    assert_eq!(train.labels().labels(), &caffe_labels[..]);
}

#[test]
fn the_mnist_test_lmdb_holds_the_idx_pixels_and_the_labels_caffe_read() {
    let Some(dir) = fixtures() else { return };
    let idx = IdxDataset::open(
        dir.join("mnist/t10k-images-idx3-ubyte.gz"),
        dir.join("mnist/t10k-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    let caffe_labels = read_npy_u8(&dir.join("golden/lenet/lenet_mnist_v2/labels.npy"));
    assert_eq!(caffe_labels.len(), 10_000);
    assert_eq!(idx.labels().labels(), &caffe_labels[..]);

    // Unlocked: the test must not write the shared fixtures' lock.mdb.
    let lmdb = LmdbDataset::open_unlocked(dir.join("golden/data/mnist_test_lmdb")).unwrap();
    assert!(!lmdb.is_locked());
    assert_eq!(lmdb.len(), 10_000);
    let mut reader = lmdb.reader().unwrap();
    for (i, &label) in caffe_labels.iter().enumerate() {
        assert_eq!(reader.position(), i);
        let record = reader.next().unwrap();
        assert_eq!(record.position(), i);
        assert_eq!(record.key(), Some(format!("{i:08}").as_bytes()));
        assert_eq!(record.shape().to_string(), "1x28x28");
        assert_eq!(record.label(), i32::from(label), "record {i}");
        assert_eq!(
            record.values(),
            RecordValues::Bytes(idx.images().image(i).unwrap()),
            "record {i}"
        );
    }
    // After the last record comes the first again, as in Caffe's Data layer.
    assert_eq!(reader.position(), 0);
    let again = reader.next().unwrap();
    assert_eq!((again.position(), again.key()), (0, Some(&b"00000000"[..])));
    assert_eq!(again.label(), 7);
}

#[test]
fn golden_lmdbs_have_golden_record_digests() {
    let Some(dir) = fixtures() else { return };
    for (name, digest) in [
        ("mnist_test_lmdb", MNIST_TEST_DIGEST),
        ("mnist_train10k_lmdb", MNIST_TRAIN10K_DIGEST),
        ("fashion_mnist_test_lmdb", FASHION_TEST_DIGEST),
    ] {
        let lmdb = LmdbDataset::open_unlocked(dir.join("golden/data").join(name)).unwrap();
        assert_eq!(lmdb.len(), 10_000, "{name}");
        assert_eq!(record_digest(&lmdb), digest, "{name}");
    }
}

/// Every key and value of two LMDBs, in key order, byte for byte.
fn assert_same_records(ours: &LmdbDataset, theirs: &LmdbDataset) {
    let (mut a, mut b) = (ours.raw_reader().unwrap(), theirs.raw_reader().unwrap());
    let mut n = 0;
    loop {
        match (a.next().unwrap(), b.next().unwrap()) {
            (None, None) => break,
            (Some(x), Some(y)) => assert!(x == y, "record {n} differs: key {:?} vs {:?}", x.key, y.key),
            (x, y) => panic!("record {n}: one LMDB ended first ({} / {})", x.is_some(), y.is_some()),
        }
        n += 1;
    }
    assert_eq!(n, 10_000);
}

#[test]
fn writing_mnist_idx_gives_convert_mnist_datas_records() {
    let Some(dir) = fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for (images, labels, golden, digest) in [
        (
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
            "mnist_test_lmdb",
            MNIST_TEST_DIGEST,
        ),
        (
            "train-10k-images-idx3-ubyte.gz",
            "train-10k-labels-idx1-ubyte.gz",
            "mnist_train10k_lmdb",
            MNIST_TRAIN10K_DIGEST,
        ),
    ] {
        let idx = IdxDataset::open(dir.join("mnist").join(images), dir.join("mnist").join(labels)).unwrap();
        let out = tmp.path().join(golden);
        assert_eq!(write_lmdb(&idx, &out).unwrap(), 10_000);
        // Opened with locks: the folder is ours and writable.
        let ours = LmdbDataset::open(&out).unwrap();
        assert!(ours.is_locked());
        let theirs = LmdbDataset::open_unlocked(dir.join("golden/data").join(golden)).unwrap();
        assert_same_records(&ours, &theirs);
        assert_eq!(record_digest(&ours), digest, "{golden}");
    }
}

#[test]
fn caffe_lenet_test_batches_are_pixels_times_scale_in_key_order() {
    let Some(dir) = fixtures() else { return };
    let idx = IdxImages::open(dir.join("mnist/t10k-images-idx3-ubyte.gz")).unwrap();
    let labels = read_npy_u8(&dir.join("golden/lenet/lenet_mnist_v2/labels.npy"));
    let lmdb = LmdbDataset::open_unlocked(dir.join("golden/data/mnist_test_lmdb")).unwrap();
    // lenet_train_test.prototxt's TEST layer: batch 100, transform_param { scale: 0.00390625 }.
    let param = TransformationParameter {
        scale: Some(0.00390625),
        ..Default::default()
    };
    let transformer = Transformer::new(&param, Phase::Test, None).unwrap();
    assert!(!transformer.uses_rng());
    let mut batcher = Batcher::new(lmdb.reader().unwrap(), 100, transformer).unwrap();
    let mut batch = Batch::default();
    // `caffe test -iterations 100` reads each record once; the 101st batch starts over at record 0.
    for iteration in 0..101 {
        batcher.next_batch(&mut batch).unwrap();
        let first = (iteration * 100) % 10_000;
        assert_eq!(batch.first_position, first);
        assert_eq!(batch.shape, [100, 1, 28, 28]);
        let pixels = &idx.pixels()[first * 784..(first + 100) * 784];
        for (i, (&value, &pixel)) in batch.data.iter().zip(pixels).enumerate() {
            assert_eq!(
                value.to_bits(),
                (f32::from(pixel) * 0.00390625).to_bits(),
                "batch {iteration} value {i}"
            );
        }
        let expected: Vec<f32> = labels[first..first + 100].iter().map(|&l| f32::from(l)).collect();
        assert_eq!(batch.labels, expected, "batch {iteration}");
    }
    assert_eq!(batcher.position(), 100);
}

#[test]
fn fashion_mnist_from_debian() {
    let Some(fashion) = fashion_mnist() else { return };
    let test = IdxDataset::open(
        fashion.join("t10k-images-idx3-ubyte.gz"),
        fashion.join("t10k-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    assert_eq!(
        (test.len(), test.images().rows(), test.images().cols()),
        (10_000, 28, 28)
    );
    // Fashion-MNIST is balanced: 1,000 test and 6,000 training images per class.
    let mut counts = [0usize; 10];
    for &label in test.labels().labels() {
        counts[label as usize] += 1;
    }
    assert_eq!(counts, [1000; 10]);
    let train = IdxLabels::open(fashion.join("train-labels-idx1-ubyte.gz")).unwrap();
    let mut counts = [0usize; 10];
    for &label in train.labels() {
        counts[label as usize] += 1;
    }
    assert_eq!(counts, [6000; 10]);

    let Some(dir) = fixtures() else { return };
    let caffe_labels = read_npy_u8(&dir.join("golden/lenet/lenet_fashion/labels.npy"));
    assert_eq!(test.labels().labels(), &caffe_labels[..]);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("fashion_mnist_test_lmdb");
    write_lmdb(&test, &out).unwrap();
    let ours = LmdbDataset::open(&out).unwrap();
    let theirs = LmdbDataset::open_unlocked(dir.join("golden/data/fashion_mnist_test_lmdb")).unwrap();
    assert_same_records(&ours, &theirs);
    assert_eq!(record_digest(&ours), FASHION_TEST_DIGEST);
}
