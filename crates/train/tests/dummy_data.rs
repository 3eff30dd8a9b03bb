//! DataFeeder over DummyData layers: Caffe's shapes and fillers, constant tops filled once, random ones per pass.

use caffe_proto::{BlobShape, DummyDataParameter, FillerParameter, LayerParameter, NetParameter, NetState, Phase};
use train::{DataFeeder, DataOptions, Feeder as _};

fn net(tops: &[&str], param: DummyDataParameter) -> NetParameter {
    NetParameter {
        layer: vec![LayerParameter {
            name: Some("dummy".into()),
            r#type: Some("DummyData".into()),
            top: tops.iter().map(|t| t.to_string()).collect(),
            dummy_data_param: Some(param),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn filler(kind: &str) -> FillerParameter {
    FillerParameter {
        r#type: Some(kind.into()),
        ..Default::default()
    }
}

fn state() -> NetState {
    NetState {
        phase: Some(Phase::Train as i32),
        ..Default::default()
    }
}

/// The values of every top over `passes` forward passes.
fn passes(param: &NetParameter, passes: usize) -> Vec<Vec<Vec<f32>>> {
    let mut feeder = DataFeeder::new(param, &state(), &DataOptions::new(".")).unwrap();
    let mut options = engine::NetOptions::train();
    for (blob, shape) in feeder.input_shapes() {
        options = options.with_input_shape(&blob, &shape);
    }
    let mut engine_net = engine::Net::new(param, &options).unwrap();
    (0..passes)
        .map(|_| {
            feeder.feed(&mut engine_net).unwrap();
            param.layer[0]
                .top
                .iter()
                .map(|t| engine_net.blob(t).unwrap().data().to_vec())
                .collect()
        })
        .collect()
}

#[test]
fn shapes_and_fillers_per_top() {
    let param = net(
        &["data", "label"],
        DummyDataParameter {
            data_filler: vec![
                FillerParameter {
                    min: Some(-1.0),
                    max: Some(1.0),
                    ..filler("uniform")
                },
                FillerParameter {
                    value: Some(7.0),
                    ..filler("constant")
                },
            ],
            shape: vec![BlobShape { dim: vec![2, 3] }, BlobShape { dim: vec![2] }],
            ..Default::default()
        },
    );
    let feeder = DataFeeder::new(&param, &state(), &DataOptions::new(".")).unwrap();
    assert_eq!(
        feeder.input_shapes(),
        [("data".into(), vec![2, 3]), ("label".into(), vec![2])]
    );
    let run = passes(&param, 3);
    for pass in &run {
        assert_eq!(pass[1], [7.0, 7.0]);
        assert_eq!(pass[0].len(), 6);
        assert!(pass[0].iter().all(|v| (-1.0..=1.0).contains(v)), "{:?}", pass[0]);
    }
    // Uniform draws are refilled every pass, and the same on every run.
    assert_ne!(run[0][0], run[1][0]);
    assert_ne!(run[1][0], run[2][0]);
    assert_eq!(passes(&param, 3), run);
}

#[test]
fn legacy_dimensions_and_the_default_zero_filler() {
    let param = net(
        &["a", "b"],
        DummyDataParameter {
            num: vec![2],
            channels: vec![1, 2],
            height: vec![1],
            width: vec![3],
            ..Default::default()
        },
    );
    let feeder = DataFeeder::new(&param, &state(), &DataOptions::new(".")).unwrap();
    assert_eq!(
        feeder.input_shapes(),
        [("a".into(), vec![2, 1, 1, 3]), ("b".into(), vec![2, 2, 1, 3])]
    );
    let run = passes(&param, 2);
    assert_eq!(run[1], [vec![0.0; 6], vec![0.0; 12]]);
}

#[test]
fn caffes_checks_as_one_line_errors() {
    for (param, expected) in [
        (
            DummyDataParameter {
                shape: vec![BlobShape { dim: vec![1] }; 2],
                ..Default::default()
            },
            "2 shapes given for 3 tops; give 1 or one per top",
        ),
        (
            DummyDataParameter {
                data_filler: vec![filler("constant"); 2],
                shape: vec![BlobShape { dim: vec![1] }],
                ..Default::default()
            },
            "2 data_fillers given for 3 tops",
        ),
        (DummyDataParameter::default(), "no shape given"),
        (
            DummyDataParameter {
                shape: vec![BlobShape { dim: vec![-1] }],
                ..Default::default()
            },
            "top 'x': negative dimension -1",
        ),
    ] {
        let err = DataFeeder::new(&net(&["x", "y", "z"], param), &state(), &DataOptions::new("."))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(expected) && !err.contains('\n'), "{err}");
        assert!(err.contains("dummy"), "{err}");
    }
}
