//! Bad input gets one clear error naming the file and the place; hand-made files, no fixtures needed.

use std::io::Write;
use std::path::Path;

use caffe_proto::{Datum, Phase, TransformationParameter};
use datasets::{
    write_lmdb, Batch, Batcher, Dataset, Error, IdxDataset, IdxImages, IdxLabels, LmdbDataset, LmdbWriter,
    RecordValues, Transformer,
};
use prost::Message;

/// An IDX file: big-endian magic and dimensions, then `data`.
fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = magic.to_be_bytes().to_vec();
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Two 2x3 images 0..12 and labels 4, 9.
fn small_idx() -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..12).collect();
    (idx(0x803, &[2, 2, 3], &pixels), idx(0x801, &[2], &[4, 9]))
}

#[test]
fn idx_files_read_raw_and_gzipped_alike() {
    let (images, labels) = small_idx();
    for (images, labels) in [(images.clone(), labels.clone()), (gzip(&images), gzip(&labels))] {
        let images = IdxImages::from_bytes("i", images).unwrap();
        assert_eq!((images.len(), images.rows(), images.cols()), (2, 2, 3));
        assert_eq!(images.image(1), Some(&[6, 7, 8, 9, 10, 11][..]));
        let labels = IdxLabels::from_bytes("l", labels).unwrap();
        assert_eq!(labels.labels(), [4, 9]);
        // Records in file order, the first again after the last.
        let dataset = IdxDataset::new(images, labels).unwrap();
        let mut reader = dataset.reader().unwrap();
        let expect = [(0, 4, 0u8), (1, 9, 6), (0, 4, 0), (1, 9, 6)];
        for (position, label, first_pixel) in expect {
            assert_eq!(reader.position(), position);
            let record = reader.next().unwrap();
            assert_eq!(
                (record.position(), record.label(), record.key()),
                (position, label, None)
            );
            assert_eq!(record.shape().to_string(), "1x2x3");
            assert_eq!(record.values().get(0), Some(f32::from(first_pixel)));
        }
    }
    // A gzip file made of two members (as `cat a.gz b.gz` makes) inflates as one stream.
    let (images, _) = small_idx();
    let two_members = [gzip(&images[..10]), gzip(&images[10..])].concat();
    assert_eq!(IdxImages::from_bytes("two", two_members).unwrap().pixels().len(), 12);
}

fn idx_error(bytes: Vec<u8>, labels: bool) -> String {
    let result = if labels {
        IdxLabels::from_bytes("f.idx", bytes).map(|_| ())
    } else {
        IdxImages::from_bytes("f.idx", bytes).map(|_| ())
    };
    let message = result.unwrap_err().to_string();
    assert!(message.starts_with("f.idx: "), "{message}");
    assert!(!message.contains('\n'), "{message}");
    message
}

#[test]
fn bad_idx_files_are_named_and_located() {
    let (images, labels) = small_idx();
    // Truncated data, raw and gzipped.
    let msg = idx_error(images[..images.len() - 1].to_vec(), false);
    assert!(
        msg.contains("dimensions [2, 2, 3] need 12 data bytes after the 16-byte header, but 11 follow"),
        "{msg}"
    );
    let msg = idx_error(gzip(&images[..images.len() - 1]), false);
    assert!(
        msg.contains("need 12 data bytes after the 16-byte header, but 11 follow"),
        "{msg}"
    );
    // Trailing bytes: exact for raw files, a bound for gzip (inflating stops one byte past the announced end).
    let msg = idx_error([&images[..], &[0; 5]].concat(), false);
    assert!(msg.contains("but 17 follow"), "{msg}");
    let msg = idx_error(gzip(&[&images[..], &[0; 5]].concat()), false);
    assert!(msg.contains("but at least 13 follow"), "{msg}");
    // A cut gzip stream.
    let gz = gzip(&images);
    let msg = idx_error(gz[..gz.len() - 6].to_vec(), false);
    assert!(msg.contains("broken gzip stream after"), "{msg}");
    // The wrong kind of file, and not an IDX file at all.
    let msg = idx_error(labels.clone(), false);
    assert!(
        msg.contains("magic number 0x00000801 at byte 0 (IDX unsigned bytes, 1 dimension); expected 0x00000803"),
        "{msg}"
    );
    let msg = idx_error(images.clone(), true);
    assert!(
        msg.contains("0x00000803 at byte 0 (IDX unsigned bytes, 3 dimensions); expected 0x00000801"),
        "{msg}"
    );
    let msg = idx_error(b"\x89PNG\r\n\x1a\n0000000000".to_vec(), false);
    assert!(
        msg.contains("not an IDX file: its first two bytes are not zero"),
        "{msg}"
    );
    let msg = idx_error(idx(0xd03, &[1, 1, 1], &[0; 4]), false);
    assert!(msg.contains("(IDX 32-bit floats, 3 dimensions)"), "{msg}");
    // Header cut short, and empty files.
    let msg = idx_error(images[..10].to_vec(), false);
    assert!(
        msg.contains("10 bytes is too short for an IDX header (16 bytes)"),
        "{msg}"
    );
    let msg = idx_error(Vec::new(), true);
    assert!(
        msg.contains("0 bytes is too short for an IDX header (8 bytes)"),
        "{msg}"
    );
    // Dimensions whose product is far beyond the file: refused before any allocation.
    let msg = idx_error(idx(0x803, &[u32::MAX, u32::MAX, u32::MAX], &[]), false);
    assert!(msg.contains("multiply past what this machine can address"), "{msg}");
    let msg = idx_error(gzip(&idx(0x803, &[60_000, 28_000, 28_000], &[1, 2, 3])), false);
    assert!(
        msg.contains("need 47040000000000 data bytes after the 16-byte header, but 3 follow"),
        "{msg}"
    );
    // Files that disagree on the item count.
    let labels3 = IdxLabels::from_bytes("three", idx(0x801, &[3], &[1, 2, 3])).unwrap();
    let images2 = IdxImages::from_bytes("two", images).unwrap();
    let msg = IdxDataset::new(images2, labels3).err().unwrap().to_string();
    assert_eq!(msg, "two holds 2 images but three holds 3 labels");
    // A missing file names itself.
    let msg = IdxImages::open("/nonexistent/t10k.gz").err().unwrap().to_string();
    assert!(
        msg.starts_with("/nonexistent/t10k.gz: ") && msg.contains("No such file"),
        "{msg}"
    );
}

/// A raw-pixel Datum as convert_mnist_data makes it.
fn datum(c: i32, h: i32, w: i32, data: &[u8], label: i32) -> Datum {
    Datum {
        channels: Some(c),
        height: Some(h),
        width: Some(w),
        data: Some(data.to_vec()),
        label: Some(label),
        ..Default::default()
    }
}

fn lmdb_with(dir: &Path, values: &[Vec<u8>]) -> LmdbDataset {
    let path = dir.join("db");
    let mut writer = LmdbWriter::create(&path).unwrap();
    for (i, value) in values.iter().enumerate() {
        writer.put(format!("{i:08}").as_bytes(), value).unwrap();
    }
    assert_eq!(writer.finish().unwrap(), values.len());
    LmdbDataset::open(&path).unwrap()
}

fn first_error(lmdb: &LmdbDataset, skip: usize) -> String {
    let mut reader = lmdb.reader().unwrap();
    for _ in 0..skip {
        reader.next().unwrap();
    }
    let message = reader.next().err().unwrap().to_string();
    assert!(!message.contains('\n'), "{message}");
    message
}

#[test]
fn bad_datum_records_are_named_by_position_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let good = datum(1, 2, 2, &[1, 2, 3, 4], 3).encode_to_vec();
    let db = tmp.path().join("db");
    let at = |position: usize| format!("{}: record {position} (key '{position:08}'): ", db.display());

    // Field 1 (channels) as a length-delimited field of 5 bytes with only 1 present.
    let lmdb = lmdb_with(tmp.path(), &[good.clone(), vec![0x0a, 0x05, 0x01]]);
    let msg = first_error(&lmdb, 1);
    assert!(
        msg.starts_with(&at(1)) && msg.contains("value of 3 bytes is not a caffe.Datum"),
        "{msg}"
    );
    drop(lmdb);

    for (value, expected) in [
        (
            Datum {
                encoded: Some(true),
                ..datum(3, 2, 2, b"\x89PNG", 0)
            },
            "4 bytes that are neither PNG nor JPEG (they start with 89504e47)",
        ),
        (
            datum(1, 2, 2, &[0; 3], 0),
            "channels x height x width = 1x2x2 = 4 but the Datum holds 3 bytes of data",
        ),
        (
            datum(0, 2, 2, &[], 0),
            "channels 0, height 2, width 2: every dimension must be at least 1",
        ),
        (datum(-1, 2, 2, &[0; 4], 0), "channels -1, height 2, width 2"),
        (
            datum(1, 1, 2, &[], 0),
            "holds 0 values: neither data nor float_data is set",
        ),
        (
            Datum {
                float_data: vec![1.0; 3],
                ..datum(1, 1, 2, &[], 0)
            },
            "= 2 but the Datum holds 3 values in float_data",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("db");
        let lmdb = lmdb_with(tmp.path(), &[value.encode_to_vec()]);
        let msg = first_error(&lmdb, 0);
        let at = format!("{}: record 0 (key '00000000'): ", db.display());
        assert!(msg.starts_with(&at) && msg.contains(expected), "{msg}");
    }
}

#[test]
fn float_datums_and_missing_labels_read_as_caffe_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let floats = Datum {
        channels: Some(1),
        height: Some(1),
        width: Some(2),
        float_data: vec![0.5, -2.0],
        label: None, // Caffe's default: 0
        ..Default::default()
    };
    // An empty `data` with float_data present: Caffe reads float_data.
    let empty_data = Datum {
        data: Some(Vec::new()),
        ..floats.clone()
    };
    let lmdb = lmdb_with(tmp.path(), &[floats.encode_to_vec(), empty_data.encode_to_vec()]);
    let mut reader = lmdb.reader().unwrap();
    for _ in 0..2 {
        let record = reader.next().unwrap();
        assert_eq!(record.values(), RecordValues::Floats(&[0.5, -2.0]));
        assert_eq!(record.label(), 0);
    }
    // Copying the dataset writes the floats back (no `data` field) with the label Caffe read: 0.
    let copy = tmp.path().join("copy");
    write_lmdb(&lmdb, &copy).unwrap();
    let copy = LmdbDataset::open(&copy).unwrap();
    let mut raw = copy.raw_reader().unwrap();
    let record = raw.next().unwrap().unwrap();
    assert_eq!(record.key, b"00000000");
    assert_eq!(
        Datum::decode(record.value).unwrap(),
        Datum {
            label: Some(0),
            ..floats
        }
    );
}

#[test]
fn not_an_lmdb() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file.mdb");
    std::fs::write(&file, b"x").unwrap();
    let msg = LmdbDataset::open(&file).err().unwrap().to_string();
    assert!(
        msg.contains("not a Caffe LMDB: it is a file; a Caffe LMDB is a folder"),
        "{msg}"
    );

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let msg = LmdbDataset::open(&empty).err().unwrap().to_string();
    assert_eq!(
        msg,
        format!("{}: not a Caffe LMDB: the folder has no data.mdb", empty.display())
    );

    let leveldb = tmp.path().join("leveldb");
    std::fs::create_dir(&leveldb).unwrap();
    std::fs::write(leveldb.join("CURRENT"), b"MANIFEST-000001\n").unwrap();
    let msg = LmdbDataset::open(&leveldb).err().unwrap().to_string();
    assert!(msg.contains("LevelDB folder"), "{msg}");

    // A data.mdb of garbage (two pages of it), and an empty one.
    let garbage = tmp.path().join("garbage");
    std::fs::create_dir(&garbage).unwrap();
    std::fs::write(garbage.join("data.mdb"), vec![0xab; 8192]).unwrap();
    let msg = LmdbDataset::open_unlocked(&garbage).err().unwrap().to_string();
    assert!(
        msg.contains("not a Caffe LMDB: data.mdb is not an LMDB data file"),
        "{msg}"
    );
    let zero = tmp.path().join("zero");
    std::fs::create_dir(&zero).unwrap();
    std::fs::write(zero.join("data.mdb"), b"").unwrap();
    let msg = LmdbDataset::open_unlocked(&zero).err().unwrap().to_string();
    assert!(
        msg.starts_with(&format!("{}: not a Caffe LMDB", zero.display())),
        "{msg}"
    );

    let missing = tmp.path().join("missing");
    let msg = LmdbDataset::open(&missing).err().unwrap().to_string();
    assert!(
        msg.starts_with(&missing.display().to_string()) && msg.contains("No such file"),
        "{msg}"
    );
}

#[test]
fn writer_refuses_existing_folders_and_bad_keys_and_empty_lmdbs_cannot_feed_batches() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(matches!(LmdbWriter::create(tmp.path()), Err(Error::Exists { .. })));
    let path = tmp.path().join("db");
    let mut writer = LmdbWriter::create(&path).unwrap();
    writer.put(b"a", b"").unwrap();
    let msg = writer.put(&[b'k'; 512], b"v").unwrap_err().to_string();
    assert!(
        msg.ends_with("record 1: key of 512 bytes; LMDB keys hold 1 to 511 bytes"),
        "{msg}"
    );
    assert!(matches!(writer.put(b"", b"v"), Err(Error::Key { len: 0, .. })));
    drop(writer); // without finish: the pending record is abandoned

    let lmdb = LmdbDataset::open(&path).unwrap();
    assert_eq!(lmdb.len(), 0);
    assert!(lmdb.is_empty());
    let msg = first_error(&lmdb, 0);
    assert_eq!(msg, format!("{}: the dataset holds no record", path.display()));
}

#[test]
fn batches_wrap_around_in_key_order_and_keep_one_shape() {
    let tmp = tempfile::tempdir().unwrap();
    // Keys put out of order: records come back in key order.
    let path = tmp.path().join("db");
    let mut writer = LmdbWriter::create(&path).unwrap();
    for (key, label) in [(b"c", 2), (b"a", 0), (b"b", 1)] {
        writer
            .put_datum(key, &datum(1, 1, 2, &[label as u8, 10], label))
            .unwrap();
    }
    writer.finish().unwrap();
    let lmdb = LmdbDataset::open(&path).unwrap();
    let param = TransformationParameter {
        scale: Some(0.5),
        ..Default::default()
    };
    let transformer = Transformer::new(&param, Phase::Test, None).unwrap();
    let mut batcher = Batcher::new(lmdb.reader().unwrap(), 2, transformer).unwrap();
    let mut batch = Batch::default();
    for (first, labels) in [(0, [0.0, 1.0]), (2, [2.0, 0.0]), (1, [1.0, 2.0])] {
        batcher.next_batch(&mut batch).unwrap();
        assert_eq!(batch.first_position, first);
        assert_eq!(batch.shape, [2, 1, 1, 2]);
        assert_eq!(batch.labels, labels);
        assert_eq!(batch.data, [labels[0] * 0.5, 5.0, labels[1] * 0.5, 5.0]);
    }

    // A record of another shape in the middle of a batch is refused, naming it.
    let tmp = tempfile::tempdir().unwrap();
    let lmdb = lmdb_with(
        tmp.path(),
        &[
            datum(1, 1, 2, &[0, 0], 0).encode_to_vec(),
            datum(1, 2, 1, &[0, 0], 0).encode_to_vec(),
        ],
    );
    let transformer = Transformer::new(&param, Phase::Test, None).unwrap();
    let mut batcher = Batcher::new(lmdb.reader().unwrap(), 2, transformer).unwrap();
    let msg = batcher.next_batch(&mut batch).unwrap_err().to_string();
    assert!(
        msg.ends_with(
            "record 1 (key '00000001'): transforms to 1x2x1 but the batch's first record transforms to 1x1x2"
        ),
        "{msg}"
    );
    let transformer = Transformer::new(&param, Phase::Test, None).unwrap();
    assert!(matches!(
        Batcher::new(lmdb.reader().unwrap(), 0, transformer),
        Err(Error::BatchSize)
    ));
}
