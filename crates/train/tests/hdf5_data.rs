//! DataFeeder over an HDF5Data layer (files written with h5py; skipped without it, except under CI=true).

use caffe_proto::{Hdf5DataParameter, LayerParameter, NetParameter, NetState, Phase};
use train::{DataFeeder, DataOptions, Feeder as _, Source};

#[test]
fn hdf5_rows_feed_every_top_in_order() {
    if !testkit::python_has(&["h5py", "numpy"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let script = r#"
import h5py, numpy as np
with h5py.File("a.h5", "w") as f:
    f["data"] = np.arange(6, dtype=np.float32).reshape(3, 2)
    f["target"] = np.array([[0.5], [1.5], [2.5]], dtype=np.float64)
open("files.txt", "w").write("a.h5\n")
"#;
    let out = std::process::Command::new("python3")
        .current_dir(tmp.path())
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let param = NetParameter {
        layer: vec![LayerParameter {
            name: Some("h5".into()),
            r#type: Some("HDF5Data".into()),
            top: vec!["data".into(), "target".into()],
            hdf5_data_param: Some(Hdf5DataParameter {
                source: Some("files.txt".into()),
                batch_size: Some(2),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let state = NetState {
        phase: Some(Phase::Train as i32),
        ..Default::default()
    };
    let mut feeder = DataFeeder::new(&param, &state, &DataOptions::new(tmp.path())).unwrap();
    assert_eq!(
        feeder.input_shapes(),
        [("data".into(), vec![2, 2]), ("target".into(), vec![2, 1])]
    );
    let mut options = engine::NetOptions::train();
    for (blob, shape) in feeder.input_shapes() {
        options = options.with_input_shape(&blob, &shape);
    }
    let mut net = engine::Net::new(&param, &options).unwrap();
    feeder.feed(&mut net).unwrap();
    assert_eq!(net.blob("data").unwrap().data(), [0.0, 1.0, 2.0, 3.0]);
    assert_eq!(net.blob("target").unwrap().data(), [0.5, 1.5]);
    feeder.feed(&mut net).unwrap();
    assert_eq!(net.blob("data").unwrap().data(), [4.0, 5.0, 0.0, 1.0]);
    assert_eq!(net.blob("target").unwrap().data(), [2.5, 0.5]);

    // Another kind of source for an HDF5Data layer is refused; a missing dataset is named.
    let mut data = DataOptions::new(tmp.path());
    data.sources.insert("h5".into(), Source::Lmdb(tmp.path().into()));
    let err = DataFeeder::new(&param, &state, &data).err().unwrap().to_string();
    assert!(err.contains("an HDF5Data layer reads a list of .h5 files"), "{err}");
    let mut wrong = param.clone();
    wrong.layer[0].top[1] = "label".into();
    let err = DataFeeder::new(&wrong, &state, &DataOptions::new(tmp.path()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("a.h5: dataset 'label'") && !err.contains('\n'), "{err}");
}
