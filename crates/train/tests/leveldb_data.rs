//! DataFeeder over a Data layer whose source folder is a LevelDB (backend: LEVELDB).

use caffe_proto::{DataParameter, Datum, LayerParameter, NetParameter, NetState, Phase, TransformationParameter};
use prost::Message as _;
use train::{DataFeeder, DataOptions, Feeder as _, Source};

#[test]
fn a_leveldb_source_feeds_records_in_key_order() {
    let tmp = tempfile::tempdir().unwrap();
    let db_path = tmp.path().join("train_leveldb");
    let options = rusty_leveldb::Options {
        create_if_missing: true,
        ..Default::default()
    };
    let mut db = rusty_leveldb::DB::open(&db_path, options).unwrap();
    // Written out of key order: read back in key order.
    for k in [2u8, 0, 1] {
        let datum = Datum {
            channels: Some(1),
            height: Some(1),
            width: Some(2),
            data: Some(vec![10 * k, 10 * k + 1]),
            label: Some(i32::from(k)),
            ..Default::default()
        };
        db.put(format!("{k:08}").as_bytes(), &datum.encode_to_vec()).unwrap();
    }
    db.close().unwrap();
    let param = NetParameter {
        layer: vec![LayerParameter {
            name: Some("db".into()),
            r#type: Some("Data".into()),
            top: vec!["data".into(), "label".into()],
            transform_param: Some(TransformationParameter {
                scale: Some(0.5),
                ..Default::default()
            }),
            data_param: Some(DataParameter {
                source: Some("train_leveldb".into()),
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
    let run = |data: &DataOptions| {
        let mut feeder = DataFeeder::new(&param, &state, data).unwrap();
        let mut options = engine::NetOptions::train();
        for (blob, shape) in feeder.input_shapes() {
            options = options.with_input_shape(&blob, &shape);
        }
        let mut net = engine::Net::new(&param, &options).unwrap();
        (0..2)
            .map(|_| {
                feeder.feed(&mut net).unwrap();
                (
                    net.blob("data").unwrap().data().to_vec(),
                    net.blob("label").unwrap().data().to_vec(),
                )
            })
            .collect::<Vec<_>>()
    };
    let batches = run(&DataOptions::new(tmp.path()));
    assert_eq!(batches[0], (vec![0.0, 0.5, 5.0, 5.5], vec![0.0, 1.0]));
    assert_eq!(batches[1], (vec![10.0, 10.5, 0.0, 0.5], vec![2.0, 0.0]));
    // The same through an explicit override.
    let mut data = DataOptions::new("/nonexistent");
    data.sources.insert("db".into(), Source::Leveldb(db_path.clone()));
    assert_eq!(run(&data), batches);
}
