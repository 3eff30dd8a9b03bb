//! `npz::import_npz` promises that on any mismatch nothing is changed. Found while writing the npz_import fuzz
//! target (its fixed net has no data-less blob, so the fuzzer does not stop on this): a blob with a shape but no
//! data (count 0) accepted an array of any length in the planning pass, then `Net::set_blob_data` refused it after
//! the earlier blobs were already replaced, and the error named the net, not the npz. Planning now requires every
//! array to hold exactly the values the blob holds, as `set_blob_data` does.

use caffe_proto::{BlobProto, BlobShape, LayerParameter, NetParameter};
use prost::Message;

#[test]
fn a_failed_import_into_a_blob_without_data_changes_nothing() {
    let layer = |name: &str, data: Vec<f32>| LayerParameter {
        name: Some(name.into()),
        r#type: Some("Scale".into()),
        blobs: vec![BlobProto {
            shape: Some(BlobShape { dim: vec![2] }),
            data,
            ..Default::default()
        }],
        ..Default::default()
    };
    let bytes = NetParameter {
        layer: vec![layer("a", vec![1.0, 2.0]), layer("b", vec![])],
        ..Default::default()
    }
    .encode_to_vec();
    let dir = tempfile::tempdir().unwrap();
    let npz = dir.path().join("w.npz");
    let mut writer = sparse::NpzWriter::create(&npz).unwrap();
    writer.add("a_W", &[2], &[5.0f32, 6.0]).unwrap();
    writer.add("b_W", &[2], &[7.0f32, 8.0]).unwrap();
    writer.finish().unwrap();
    let file = caffemodel::ModelFile::from_bytes("n.caffemodel", bytes.clone()).unwrap();
    let mut net = file.net().unwrap();
    let error = caffemodel::npz::import_npz(&mut net, &npz).unwrap_err().to_string();
    assert!(
        net.to_bytes() == bytes,
        "the net changed although the import failed: {error}"
    );
    assert!(error.contains("w.npz"), "the error names the npz: {error}");
}
