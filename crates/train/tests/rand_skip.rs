//! `data_param.rand_skip`: a TRAIN Data layer starts a seeded random number of records in; TEST starts at the first.

use caffe_proto::{DataParameter, Datum, LayerParameter, NetParameter, NetState, Phase};
use train::{rand_skip_count, DataFeeder, DataOptions, Feeder as _};

/// An LMDB of `n` one-value records, record k holding value k and label k.
fn lmdb(dir: &std::path::Path, n: u8) {
    let mut writer = datasets::LmdbWriter::create(dir.join("db")).unwrap();
    for k in 0..n {
        let datum = Datum {
            channels: Some(1),
            height: Some(1),
            width: Some(1),
            data: Some(vec![k]),
            label: Some(i32::from(k)),
            ..Default::default()
        };
        writer.put_datum(format!("{k:08}").as_bytes(), &datum).unwrap();
    }
    assert_eq!(writer.finish().unwrap(), usize::from(n));
}

fn net(rand_skip: u32) -> NetParameter {
    NetParameter {
        layer: vec![LayerParameter {
            name: Some("db".into()),
            r#type: Some("Data".into()),
            top: vec!["data".into(), "label".into()],
            data_param: Some(DataParameter {
                source: Some("db".into()),
                batch_size: Some(2),
                rand_skip: Some(rand_skip),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn state(phase: Phase) -> NetState {
    NetState {
        phase: Some(phase as i32),
        ..Default::default()
    }
}

/// The labels of the first batch the feeder gives.
fn first_labels(param: &NetParameter, phase: Phase, data: &DataOptions) -> Vec<f32> {
    let mut feeder = DataFeeder::new(param, &state(phase), data).unwrap();
    let mut options = if phase == Phase::Train {
        engine::NetOptions::train()
    } else {
        engine::NetOptions::test()
    };
    for (blob, shape) in feeder.input_shapes() {
        options = options.with_input_shape(&blob, &shape);
    }
    let mut net = engine::Net::new(param, &options).unwrap();
    feeder.feed(&mut net).unwrap();
    net.blob("label").unwrap().data().to_vec()
}

#[test]
fn the_skip_is_caffes_draw_from_the_seeded_generator() {
    // boost::mt19937's first output at its default seed 5489 is 3499211612, and 3499211612 % 7 = 1.
    assert_eq!(rand_skip_count(7, None, 0, 10), 1);
    assert_eq!(rand_skip_count(7, Some(5489), 0, 10), 1);
    // The layer's index moves the seed; a skip past the records wraps; no rand_skip, no skip.
    assert_eq!(rand_skip_count(7, Some(5488), 1, 10), 1);
    assert!((0..50).all(|seed| rand_skip_count(25, Some(seed), 0, 10) < 10));
    assert_eq!(rand_skip_count(0, Some(3), 0, 10), 0);
    let skips: std::collections::BTreeSet<usize> = (0..50).map(|seed| rand_skip_count(7, Some(seed), 0, 10)).collect();
    assert!(skips.len() > 3 && skips.iter().all(|&s| s < 7), "{skips:?}");
}

#[test]
fn a_train_data_layer_starts_rand_skip_records_in_and_a_test_one_at_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    lmdb(tmp.path(), 10);
    for seed in [None, Some(1), Some(2), Some(3), Some(1701)] {
        let mut data = DataOptions::new(tmp.path());
        data.seed = seed;
        let skip = rand_skip_count(7, seed, 0, 10);
        let expected = vec![skip as f32, ((skip + 1) % 10) as f32];
        assert_eq!(first_labels(&net(7), Phase::Train, &data), expected, "seed {seed:?}");
        // Deterministic: the same seed, the same start.
        assert_eq!(first_labels(&net(7), Phase::Train, &data), expected, "seed {seed:?}");
        assert_eq!(first_labels(&net(7), Phase::Test, &data), [0.0, 1.0], "seed {seed:?}");
        assert_eq!(first_labels(&net(0), Phase::Train, &data), [0.0, 1.0], "seed {seed:?}");
    }
    // A skip larger than the source wraps around, as Caffe's cursor did.
    let mut data = DataOptions::new(tmp.path());
    data.seed = Some(4);
    let skip = rand_skip_count(1000, Some(4), 0, 10);
    assert_eq!(first_labels(&net(1000), Phase::Train, &data)[0], skip as f32);
}
