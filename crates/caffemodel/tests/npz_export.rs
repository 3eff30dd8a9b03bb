//! `export_npz_with`: encodings handed over by a caller that pruned while encoding.

use caffemodel::npz::{export_npz, export_npz_with, Layout};
use caffemodel::ModelFile;
use std::path::Path;

fn lenet() -> ModelFile {
    ModelFile::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/lenet.caffemodel")).unwrap()
}

#[test]
fn an_encoding_of_the_pruned_weights_writes_what_the_pruned_net_writes() {
    let file = lenet();
    let net = file.net().unwrap();
    let ip1 = net.layers().iter().position(|l| l.name() == "ip1").unwrap();
    let weights = net.layers()[ip1].blobs()[0].data().to_vec_f32();
    let (encoded, _) = sparse::encode_gaps_cut(&weights, 5, 0.05).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let handed = tmp.path().join("handed.npz");
    let mut given = Some(encoded);
    export_npz_with(&net, &handed, Layout::Sparse { index_bits: 5 }, |layer| {
        (layer == ip1).then(|| given.take()).flatten()
    })
    .unwrap();

    let mut pruned_net = file.net().unwrap();
    let pruned: Vec<f32> = weights.iter().map(|&w| if w.abs() > 0.05 { w } else { 0.0 }).collect();
    pruned_net.set_blob_data(ip1, 0, pruned).unwrap();
    let expected = tmp.path().join("expected.npz");
    export_npz(&pruned_net, &expected, Layout::Sparse { index_bits: 5 }).unwrap();
    assert!(std::fs::read(&handed).unwrap() == std::fs::read(&expected).unwrap());
}

#[test]
fn an_encoding_that_does_not_fit_the_blob_is_refused() {
    let file = lenet();
    let net = file.net().unwrap();
    let ip1 = net.layers().iter().position(|l| l.name() == "ip1").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for (len, bits) in [(10, 5), (400_000, 8)] {
        let (encoded, _) = sparse::encode_gaps_cut(&vec![1.0; len], bits, 0.5).unwrap();
        let out = tmp.path().join("bad.npz");
        let mut given = Some(encoded);
        let err = export_npz_with(&net, &out, Layout::Sparse { index_bits: 5 }, |layer| {
            (layer == ip1).then(|| given.take()).flatten()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("layer 'ip1'") && err.contains("bad.npz"), "{err}");
        assert!(!out.exists(), "nothing written on error");
    }
}

#[test]
fn an_output_that_cannot_be_created_is_named_once() {
    let file = lenet();
    let net = file.net().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("missing/folder.npz");
    let err = export_npz(&net, &out, Layout::Sparse { index_bits: 5 })
        .unwrap_err()
        .to_string();
    assert_eq!(err.matches("folder.npz:").count(), 1, "{err}");
    assert!(err.contains("create a temporary file beside"), "{err}");
}
