//! Caffe LevelDBs: one written by the C++ LevelDB (tests/leveldb/make.py), and ones this test writes.

use std::path::Path;

use caffe_proto::{Datum, Phase, TransformationParameter};
use datasets::{Batch, Batcher, ColorMode, Dataset, Error, LeveldbDataset, RecordValues, Transformer};
use prost::Message as _;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn a_cpp_leveldb_reads_in_key_order_across_table_and_log() {
    // Opening writes to the folder (lock, log recovery): work on a copy.
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/leveldb/mnist_like_leveldb"),
        &db,
    );
    let dataset = LeveldbDataset::open(&db).unwrap();
    assert_eq!(dataset.len(), 200);
    let mut reader = dataset.reader().unwrap();
    for k in 0..201usize {
        let record = reader.next().unwrap();
        let k = k % 200;
        assert_eq!(record.position(), k);
        assert_eq!(record.key(), Some(format!("{k:08}").as_bytes()));
        assert_eq!(record.label(), (k % 10) as i32);
        assert_eq!(record.shape().to_string(), "1x4x5");
        let expected: Vec<u8> = (0..4)
            .flat_map(|y| (0..5).map(move |x| ((k + 7 * y + x) % 256) as u8))
            .collect();
        assert_eq!(record.values(), RecordValues::Bytes(&expected));
    }
    // Through Caffe's transform into batches, as a Data layer with backend: LEVELDB.
    let param = TransformationParameter {
        scale: Some(0.5),
        ..Default::default()
    };
    let t = Transformer::new(&param, Phase::Test, None).unwrap();
    let mut batcher = Batcher::new(dataset.reader().unwrap(), 3, t).unwrap();
    let mut batch = Batch::default();
    batcher.next_batch(&mut batch).unwrap();
    assert_eq!(batch.shape, [3, 1, 4, 5]);
    assert_eq!(batch.labels, [0.0, 1.0, 2.0]);
    assert_eq!(batch.data[20], 0.5); // record 1, pixel (0, 0) = 1
                                     // Opening again (now that the log was compacted) reads the same records.
    let again = LeveldbDataset::open(&db).unwrap();
    assert_eq!(again.records(), dataset.records());
}

fn write_leveldb(path: &Path, records: &[(&[u8], Vec<u8>)]) {
    let options = rusty_leveldb::Options {
        create_if_missing: true,
        ..Default::default()
    };
    let mut db = rusty_leveldb::DB::open(path, options).unwrap();
    for (key, value) in records {
        db.put(key, value).unwrap();
    }
    db.close().unwrap();
}

#[test]
fn encoded_datums_and_bad_records_in_a_leveldb() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let mut png = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png, 2, 1);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.write_header().unwrap().write_image_data(&[9, 200]).unwrap();
    }
    let encoded = Datum {
        data: Some(png),
        encoded: Some(true),
        label: Some(4),
        ..Default::default()
    };
    write_leveldb(
        &db,
        &[
            (b"b_bad", b"\xff\xff\xff".to_vec()),
            (b"a_png", encoded.encode_to_vec()),
        ],
    );
    let dataset = LeveldbDataset::open(&db).unwrap().with_color(ColorMode::Color);
    let mut reader = dataset.reader().unwrap();
    let record = reader.next().unwrap();
    assert_eq!(record.key(), Some(&b"a_png"[..]));
    assert_eq!(record.shape().to_string(), "3x1x2");
    assert_eq!(record.values(), RecordValues::Bytes(&[9, 200, 9, 200, 9, 200]));
    assert_eq!(record.label(), 4);
    let err = reader.next().map(|_| ()).unwrap_err();
    assert!(matches!(err, Error::DatumDecode { .. }));
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "{}: record 1 (key 'b_bad'): value of 3 bytes is not a caffe.Datum",
            db.display()
        )),
        "{msg}"
    );
}

#[test]
fn folders_that_are_not_leveldbs_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let msg = LeveldbDataset::open(&missing).err().unwrap().to_string();
    assert_eq!(
        msg,
        format!("{}: not a readable LevelDB: no such folder", missing.display())
    );
    let msg = LeveldbDataset::open(tmp.path()).err().unwrap().to_string();
    assert_eq!(
        msg,
        format!(
            "{}: not a readable LevelDB: no CURRENT file in the folder",
            tmp.path().display()
        )
    );
    std::fs::write(tmp.path().join("CURRENT"), "MANIFEST-000009\n").unwrap();
    let msg = LeveldbDataset::open(tmp.path()).err().unwrap().to_string();
    assert!(
        msg.starts_with(&format!("{}: not a readable LevelDB: ", tmp.path().display())),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}
