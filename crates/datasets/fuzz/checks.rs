//! The bodies of the `idx` and `datum` fuzz targets, shared with `tests/fuzz_corpus.rs`.
//!
//! - `idx`: any bytes (plain or gzipped) as an IDX images file and as an IDX labels file: a located error naming
//!   the file, or a file whose accessors agree with its header; images paired with labels read as records of the
//!   right shape, wrapping as Caffe's Data layer does.
//! - `datum`: any bytes as the value of an LMDB record, read back through [`datasets::LmdbDataset`] (the Datum
//!   record parser and its checks; the LMDB itself is written by this crate and always well formed), then batched
//!   and transformed with a `transform_param` chosen by the first input byte. A record that reads says what prost
//!   decodes from the same bytes; one that does not fails with a Datum error.

use caffe_proto::{Datum, Phase, TransformationParameter};
use datasets::{
    Batch, Batcher, Dataset, Error, IdxDataset, IdxImages, IdxLabels, LmdbDataset, LmdbWriter, RecordValues,
};
use prost::Message;
use std::path::Path;

const NAME: &str = "fuzz-input";

fn check_error(error: &Error) {
    let text = error.to_string();
    assert!(text.contains(NAME), "an error names the file: {text}");
}

/// The `idx` target.
pub fn idx(data: &[u8]) {
    match IdxLabels::from_bytes(NAME, data.to_vec()) {
        Ok(labels) => assert_eq!(labels.labels().len(), labels.len()),
        Err(e) => check_error(&e),
    }
    let images = match IdxImages::from_bytes(NAME, data.to_vec()) {
        Ok(images) => images,
        Err(e) => {
            check_error(&e);
            return;
        }
    };
    let (n, rows, cols) = (images.len(), images.rows(), images.cols());
    let size = rows.checked_mul(cols).expect("the header's product fits");
    assert_eq!(
        Some(images.pixels().len()),
        n.checked_mul(size),
        "pixels hold n x rows x cols bytes"
    );
    for i in 0..n.min(64) {
        assert_eq!(images.image(i).map(<[u8]>::len), Some(size));
    }
    if size > 0 {
        assert!(images.image(n).is_none(), "no image past the end");
    }
    // Labels to pair with: as many as there are images (bounded: zero-sized images can be numerous).
    if n > 1 << 16 {
        return;
    }
    let mut label_file = vec![0, 0, 8, 1];
    label_file.extend_from_slice(&(n as u32).to_be_bytes());
    label_file.extend((0..n).map(|i| (i % 10) as u8));
    let labels = IdxLabels::from_bytes("labels", label_file).expect("a valid labels file");
    let dataset = IdxDataset::new(images, labels).expect("equal counts pair");
    let len = dataset.len();
    assert_eq!(len, if size == 0 { 0 } else { n });
    if len == 0 {
        return;
    }
    let mut reader = dataset.reader().expect("an IDX reader");
    for step in 0..(2 * len).min(20) {
        let record = reader.next().expect("a record");
        let position = step % len;
        assert_eq!(record.position(), position);
        assert_eq!(record.label(), (position % 10) as i32);
        let shape = record.shape();
        assert_eq!((shape.channels(), shape.height(), shape.width()), (1, rows, cols));
        assert_eq!(
            record.values(),
            RecordValues::Bytes(dataset.images().image(position).unwrap())
        );
    }
}

/// The `datum` target: `data[0]` chooses the transform, `data[1..]` is the record's value. `scratch` is a folder of
/// this process for the LMDB.
pub fn datum(data: &[u8], scratch: &Path) {
    let Some((&flags, value)) = data.split_first() else {
        return;
    };
    let db = scratch.join(NAME);
    if db.exists() {
        std::fs::remove_dir_all(&db).expect("remove the last LMDB");
    }
    let mut writer = LmdbWriter::create(&db).expect("create an LMDB");
    writer.put(b"00000000", value).expect("put the record");
    assert_eq!(writer.finish().expect("commit"), 1);
    let dataset = LmdbDataset::open_unlocked(&db).expect("open the LMDB just written");
    assert_eq!(dataset.len(), 1);
    let expected = Datum::decode(value);
    {
        let mut reader = dataset.reader().expect("a reader");
        match reader.next() {
            Ok(record) => {
                let d = expected.as_ref().expect("a record that reads is a Datum prost decodes");
                if d.encoded.unwrap_or(false) {
                    // A decodable image: its own shape, 8-bit pixels filling it.
                    assert!(matches!(record.values(), RecordValues::Bytes(_)));
                    assert_eq!(record.values().len(), record.shape().count());
                    assert_eq!(record.label(), d.label.unwrap_or(0));
                    return;
                }
                let shape = record.shape();
                let dims = [shape.channels(), shape.height(), shape.width()];
                let stored = [d.channels, d.height, d.width].map(|v| v.unwrap_or(0) as usize);
                assert_eq!(dims, stored);
                assert_eq!(record.label(), d.label.unwrap_or(0));
                let values = match d.data.as_deref() {
                    Some(bytes) if !bytes.is_empty() => RecordValues::Bytes(bytes),
                    _ => RecordValues::Floats(&d.float_data),
                };
                let same = match (record.values(), values) {
                    (RecordValues::Bytes(a), RecordValues::Bytes(b)) => a == b,
                    (RecordValues::Floats(a), RecordValues::Floats(b)) => {
                        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
                    }
                    _ => false,
                };
                assert!(same, "the record's values are the Datum's");
                assert_eq!(record.values().len(), shape.count());
            }
            Err(e) => {
                check_error_in_db(&e);
                match e {
                    Error::DatumDecode { .. } => assert!(expected.is_err(), "prost decodes what was refused: {e}"),
                    Error::DatumInvalid { .. } | Error::ImageDecode { .. } => {
                        assert!(expected.is_ok(), "prost refuses what was decoded: {e}")
                    }
                    other => panic!("a bad record is a Datum error, not: {other}"),
                }
            }
        }
    }
    // Batches of two (the one record, then again after wrapping) through Caffe's transformer.
    let param = TransformationParameter {
        crop_size: Some(u32::from(flags & 3)),
        mirror: Some(flags & 4 != 0),
        scale: (flags & 64 != 0).then_some(0.5),
        mean_value: [1.0, 2.0, 3.0][..usize::from((flags >> 4) & 3)].to_vec(),
        ..Default::default()
    };
    let phase = if flags & 8 != 0 { Phase::Train } else { Phase::Test };
    if let Ok(transformer) = datasets::Transformer::new(&param, phase, None) {
        let reader = dataset.reader().expect("a reader");
        let mut batcher = Batcher::new(reader, 2, transformer).expect("batch size 2");
        let mut batch = Batch::default();
        match batcher.next_batch(&mut batch) {
            Ok(()) => {
                let [n, c, h, w] = batch.shape;
                assert_eq!(n, 2);
                assert_eq!(batch.data.len(), n * c * h * w);
                assert_eq!(batch.labels.len(), 2);
                assert!(flags & 3 == 0 || (h, w) == (usize::from(flags & 3), usize::from(flags & 3)));
            }
            Err(e) => check_error_in_db(&e),
        }
    }
    drop(dataset);
    std::fs::remove_dir_all(&db).expect("remove the LMDB");
}

fn check_error_in_db(error: &Error) {
    let text = error.to_string();
    assert!(text.contains(NAME), "an error names the LMDB: {text}");
}
