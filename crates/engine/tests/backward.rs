//! The net's backward pass as a whole: Caffe's planning (which layers and bottoms run backward), in-place layers and
//! splits checked against finite differences of the net's loss, accumulation of parameter gradients, ParamSpecs and
//! shared parameters.

use caffe_proto::NetParameter;
use engine::{Error, Net, NetOptions};

/// A net from prototxt text.
fn net_param(name: &str, text: &str) -> NetParameter {
    let path = std::env::temp_dir().join(format!("engine-backward-{name}-{}.prototxt", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let param = caffemodel::text::read_net(&path, &caffemodel::text::Schema::builtin()).unwrap();
    std::fs::remove_file(&path).ok();
    param
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// conv -> BatchNorm, Scale, ReLU all in place on the conv blob -> two pooling branches (a split) -> concat ->
/// InnerProduct -> PReLU and Sigmoid in place -> EuclideanLoss against a target; force_backward sends a diff into
/// the data.
const IN_PLACE_NET: &str = r#"
name: "inplace"
force_backward: true
layer { name: "input" type: "Input" top: "data" top: "target"
        input_param { shape { dim: 2 dim: 2 dim: 6 dim: 6 } shape { dim: 2 dim: 5 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 3 kernel_size: 3 pad: 1
                            weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" batch_norm_param { eps: 0.001 } }
layer { name: "scale" type: "Scale" bottom: "conv" top: "conv"
        scale_param { bias_term: true filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" std: 1 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" relu_param { negative_slope: 0.1 } }
layer { name: "ave" type: "Pooling" bottom: "conv" top: "ave" pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "max" type: "Pooling" bottom: "conv" top: "max" pooling_param { pool: MAX kernel_size: 3 stride: 3 } }
layer { name: "flat" type: "Flatten" bottom: "max" top: "flat" }
layer { name: "flat_ave" type: "Flatten" bottom: "ave" top: "flat_ave" }
layer { name: "cat" type: "Concat" bottom: "flat_ave" bottom: "flat" top: "cat" }
layer { name: "ip" type: "InnerProduct" bottom: "cat" top: "ip"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.3 }
                              bias_filler { type: "gaussian" std: 0.3 } } }
layer { name: "prelu" type: "PReLU" bottom: "ip" top: "ip" prelu_param { filler { type: "gaussian" std: 0.5 } } }
layer { name: "sig" type: "Sigmoid" bottom: "ip" top: "ip" }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "target" top: "loss" loss_weight: 3 }
"#;

/// Whether a gradient agrees with the central difference `(plus - minus) / (2 step)`.
fn agrees(analytic: f32, plus: f64, minus: f64, step: f32) -> bool {
    let numeric = (plus - minus) / (2.0 * step as f64);
    (analytic as f64 - numeric).abs() <= 1e-2 * (analytic.abs() as f64).max(numeric.abs()) + 1e-4
}

/// Checks `analytic` against central differences of `loss_with(x)` around `x`: at step 1e-2, or else at 1e-3. The
/// loss is computed in f32 (at step 1e-3 its rounding is ~1e-4 of a gradient) and BatchNorm couples every value,
/// so a step may move some other value across the ReLU kink; a wrong gradient fails at both steps.
fn check_value(what: &str, analytic: f32, x: f32, mut loss_with: impl FnMut(f32) -> f64) {
    let mut seen = Vec::new();
    for step in [1e-2f32, 1e-3] {
        let (plus, minus) = (loss_with(x + step), loss_with(x - step));
        if agrees(analytic, plus, minus, step) {
            return;
        }
        seen.push((plus - minus) / (2.0 * step as f64));
    }
    panic!("{what}: analytic {analytic} vs numeric {seen:?} (steps 1e-2, 1e-3)");
}

#[test]
fn in_place_layers_and_splits_match_finite_differences_of_the_loss() {
    let mut net = Net::new(&net_param("inplace", IN_PLACE_NET), &NetOptions::train()).unwrap();
    assert!(net.layers().any(|l| l.layer_type == "Split"), "conv feeds two layers");
    let data = values(2 * 2 * 6 * 6, 1);
    let target = values(10, 2);
    net.set_input("data", &[2, 2, 6, 6], &data).unwrap();
    net.set_input("target", &[2, 5], &target).unwrap();
    net.clear_param_diffs();
    net.forward_backward().unwrap();
    let data_diff = net.blob_diff("data").unwrap().data().to_vec();
    assert!(data_diff.iter().any(|&v| v != 0.0));
    for i in 0..data.len() {
        check_value(&format!("data[{i}]"), data_diff[i], data[i], |v| {
            let mut shifted = data.clone();
            shifted[i] = v;
            net.set_input("data", &[2, 2, 6, 6], &shifted).unwrap();
            net.forward().unwrap() as f64
        });
    }
    net.set_input("data", &[2, 2, 6, 6], &data).unwrap();
    let learnable: Vec<(String, usize, Vec<f32>)> = net
        .learnable_params_mut()
        .into_iter()
        .map(|p| (p.layer.to_string(), p.index, p.diff.data().to_vec()))
        .collect();
    let mut checked = 0;
    for (layer, index, diff) in learnable {
        if layer == "bn" {
            assert!(diff.iter().all(|&v| v == 0.0), "BatchNorm statistics get no gradient");
            continue;
        }
        for (i, &analytic) in diff.iter().enumerate() {
            let original = net.params(&layer).unwrap()[index].data()[i];
            check_value(&format!("{layer}/{index}[{i}]"), analytic, original, |v| {
                net.params_mut(&layer).unwrap()[index].data_mut()[i] = v;
                net.forward().unwrap() as f64
            });
            net.params_mut(&layer).unwrap()[index].data_mut()[i] = original;
            checked += 1;
        }
    }
    assert_eq!(checked, 54 + 3 + 3 + 3 + 195 + 5 + 5);
}

#[test]
fn parameter_gradients_accumulate_until_cleared() {
    let mut net = Net::new(&net_param("accumulate", IN_PLACE_NET), &NetOptions::train()).unwrap();
    net.set_input("data", &[2, 2, 6, 6], &values(144, 3)).unwrap();
    net.set_input("target", &[2, 5], &values(10, 4)).unwrap();
    net.clear_param_diffs();
    net.forward_backward().unwrap();
    let once: Vec<Vec<f32>> = net
        .learnable_params_mut()
        .iter()
        .map(|p| p.diff.data().to_vec())
        .collect();
    net.forward_backward().unwrap();
    for (p, first) in net.learnable_params_mut().iter().zip(&once) {
        for (&twice, &one) in p.diff.data().iter().zip(first) {
            assert!(
                (twice - 2.0 * one).abs() <= 1e-5 * one.abs().max(1.0),
                "{}/{}",
                p.layer,
                p.index
            );
        }
    }
    net.clear_param_diffs();
    assert!(net
        .learnable_params_mut()
        .iter()
        .all(|p| p.diff.data().iter().all(|&v| v == 0.0)));
}

#[test]
fn learnable_params_come_in_caffe_order_with_their_param_specs() {
    let mut net = Net::new(&net_param("specs", IN_PLACE_NET), &NetOptions::train()).unwrap();
    let listed: Vec<(String, usize, f32, f32, Vec<usize>)> = net
        .learnable_params_mut()
        .iter()
        .map(|p| {
            (
                p.layer.to_string(),
                p.index,
                p.lr_mult,
                p.decay_mult,
                p.data.shape().to_vec(),
            )
        })
        .collect();
    let expected = [
        ("conv", 0, 1.0, 1.0, vec![3, 2, 3, 3]),
        ("conv", 1, 1.0, 1.0, vec![3]),
        // BatchNormLayer::LayerSetUp adds `param { lr_mult: 0 }` for its statistics (decay_mult keeps its default).
        ("bn", 0, 0.0, 1.0, vec![3]),
        ("bn", 1, 0.0, 1.0, vec![3]),
        ("bn", 2, 0.0, 1.0, vec![1]),
        ("scale", 0, 1.0, 1.0, vec![3]),
        ("scale", 1, 1.0, 1.0, vec![3]),
        ("ip", 0, 1.0, 1.0, vec![5, 39]),
        ("ip", 1, 1.0, 1.0, vec![5]),
        ("prelu", 0, 1.0, 1.0, vec![5]),
    ];
    assert_eq!(listed.len(), expected.len());
    for (found, (layer, index, lr, decay, shape)) in listed.iter().zip(expected) {
        assert_eq!(found, &(layer.to_string(), index, lr, decay, shape));
    }
    for p in net.learnable_params_mut() {
        assert_eq!(p.diff.shape(), p.data.shape());
    }
}

/// LeNet-like: lr_mult 0 on the first conv, propagate_down false into ip, an Accuracy beside the loss.
const PLANNED_NET: &str = r#"
name: "planned"
layer { name: "input" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 4 dim: 1 dim: 6 dim: 6 } shape { dim: 4 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        param { lr_mult: 0 } param { lr_mult: 0 }
        convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
        param { lr_mult: 1 decay_mult: 0.5 } param { lr_mult: 2 decay_mult: 0 }
        convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "frozen" type: "InnerProduct" bottom: "conv2" top: "frozen" propagate_down: false
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "frozen" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "frozen" bottom: "label" top: "accuracy" }
"#;

#[test]
fn backward_planning_follows_caffe() {
    let mut net = Net::new(&net_param("planned", PLANNED_NET), &NetOptions::train()).unwrap();
    // conv1: no learnable parameter and no bottom needing backward: skipped entirely.
    assert_eq!(net.layer_needs_backward("conv1"), Some((false, &[false][..])));
    // frozen: propagate_down false stops the diff at its bottom; its parameters still get gradients.
    assert_eq!(net.layer_needs_backward("frozen"), Some((true, &[false][..])));
    // conv2 has learnable parameters, but its only top skips backpropagation, so Caffe's Net::Init drops its
    // backward altogether (and its parameters get no gradient).
    assert_eq!(net.layer_needs_backward("conv2"), Some((false, &[false][..])));
    // Loss: into the scores, never into the labels. Accuracy contributes no loss: not run.
    assert_eq!(net.layer_needs_backward("loss").unwrap().1, &[true, false]);
    let accuracy = net.layers().position(|l| l.name == "accuracy").unwrap();
    let split = net
        .layers()
        .find(|l| l.layer_type == "Split" && l.bottoms == ["frozen"])
        .unwrap()
        .name
        .clone();
    assert!(accuracy > 0);
    assert_eq!(net.layer_needs_backward("accuracy"), Some((false, &[false, false][..])));
    assert!(net.layer_needs_backward(&split).unwrap().0);

    net.set_input("data", &[4, 1, 6, 6], &values(144, 5)).unwrap();
    net.set_input("label", &[4], &[0.0, 1.0, 2.0, 1.0]).unwrap();
    net.clear_param_diffs();
    net.forward_backward().unwrap();
    let diffs: Vec<(String, usize, f32, f32, bool)> = net
        .learnable_params_mut()
        .iter()
        .map(|p| {
            (
                p.layer.to_string(),
                p.index,
                p.lr_mult,
                p.decay_mult,
                p.diff.data().iter().any(|&v| v != 0.0),
            )
        })
        .collect();
    assert_eq!(
        diffs,
        [
            ("conv1".to_string(), 0, 0.0, 1.0, false),
            ("conv1".to_string(), 1, 0.0, 1.0, false),
            ("conv2".to_string(), 0, 1.0, 0.5, false),
            ("conv2".to_string(), 1, 2.0, 0.0, false),
            ("frozen".to_string(), 0, 1.0, 1.0, true),
            ("frozen".to_string(), 1, 1.0, 1.0, true),
        ]
    );
    assert!(net.blob_diff("conv2").unwrap().data().iter().all(|&v| v == 0.0));
}

#[test]
fn force_backward_reaches_the_data_but_never_the_labels() {
    let forced = PLANNED_NET.replace("name: \"planned\"", "name: \"planned\" force_backward: true");
    let mut net = Net::new(&net_param("forced", &forced), &NetOptions::train()).unwrap();
    assert_eq!(net.layer_needs_backward("conv1"), Some((true, &[true][..])));
    // propagate_down: false is kept (force only adds), the label stays out.
    assert_eq!(net.layer_needs_backward("loss").unwrap().1, &[true, false]);
    net.set_input("data", &[4, 1, 6, 6], &values(144, 6)).unwrap();
    net.set_input("label", &[4], &[0.0, 1.0, 2.0, 1.0]).unwrap();
    net.forward_backward().unwrap_err(); // Accuracy is forced too and has no gradient, as in Caffe.
}

/// Two InnerProducts sharing weights and bias by name (a siamese pair), each with its own loss.
const SHARED_NET: &str = r#"
name: "shared"
layer { name: "input" type: "Input" top: "x1" top: "x2" top: "t1" top: "t2"
        input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 3 }
                      shape { dim: 2 dim: 4 } shape { dim: 2 dim: 4 } } }
layer { name: "a" type: "InnerProduct" bottom: "x1" top: "a" param { name: "w" } param { name: "b" lr_mult: 2 }
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 1 }
                              bias_filler { type: "gaussian" std: 1 } } }
layer { name: "b" type: "InnerProduct" bottom: "x2" top: "b" param { name: "w" lr_mult: 3 } param { name: "b" }
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 5 } } } # sharer
layer { name: "tanh" type: "TanH" bottom: "b" top: "b" }
layer { name: "loss_a" type: "EuclideanLoss" bottom: "a" bottom: "t1" top: "loss_a" }
layer { name: "loss_b" type: "EuclideanLoss" bottom: "b" bottom: "t2" top: "loss_b" }
"#;

#[test]
fn shared_parameters_are_one_blob_learned_through_their_owner() {
    let mut net = Net::new(&net_param("shared", SHARED_NET), &NetOptions::train()).unwrap();
    // The sharer takes the owner's values (its own filler is overridden).
    assert_eq!(net.params("a").unwrap()[0].data(), net.params("b").unwrap()[0].data());
    for (blob, seed) in [("x1", 10), ("x2", 11)] {
        net.set_input(blob, &[2, 3], &values(6, seed)).unwrap();
    }
    for (blob, seed) in [("t1", 12), ("t2", 13)] {
        net.set_input(blob, &[2, 4], &values(8, seed)).unwrap();
    }
    net.clear_param_diffs();
    net.forward_backward().unwrap();
    // Owners only, with the lr_mult a sharer gave where the owner left it unset ("w": 3), the owner's where set.
    let listed: Vec<(String, usize, f32)> = net
        .learnable_params_mut()
        .iter()
        .map(|p| (p.layer.to_string(), p.index, p.lr_mult))
        .collect();
    assert_eq!(listed, [("a".to_string(), 0, 3.0), ("a".to_string(), 1, 2.0)]);
    let diffs: Vec<Vec<f32>> = net
        .learnable_params_mut()
        .iter()
        .map(|p| p.diff.data().to_vec())
        .collect();
    assert!(net
        .param_diffs("b")
        .unwrap()
        .iter()
        .all(|d| d.data().iter().all(|&v| v == 0.0)));
    // The owner's gradient is the derivative of the total loss through both layers.
    for (index, diff) in diffs.iter().enumerate() {
        for (i, &analytic) in diff.iter().enumerate() {
            let original = net.params("a").unwrap()[index].data()[i];
            check_value(&format!("a/{index}[{i}]"), analytic, original, |v| {
                net.params_mut("a").unwrap()[index].data_mut()[i] = v;
                net.forward().unwrap() as f64
            });
            net.params_mut("a").unwrap()[index].data_mut()[i] = original;
        }
    }
    // A solver-style update of the owner reaches the sharer at the next forward.
    for p in net.learnable_params_mut() {
        p.data.data_mut().iter_mut().for_each(|v| *v += 0.5);
    }
    net.forward().unwrap();
    assert_eq!(net.params("a").unwrap()[1].data(), net.params("b").unwrap()[1].data());
}

#[test]
fn mismatched_shared_parameters_are_errors() {
    let wider = SHARED_NET.replace(
        "num_output: 4 weight_filler { type: \"gaussian\" std: 5 } } } # sharer",
        "num_output: 5 }}",
    );
    assert_ne!(wider, SHARED_NET);
    let wider = wider.replace("shape { dim: 2 dim: 4 } }", "shape { dim: 2 dim: 5 } }");
    let err = Net::new(&net_param("wider", &wider), &NetOptions::train()).unwrap_err();
    assert!(
        matches!(&err, Error::SharedParam { layer, name, other, .. } if layer == "b" && name == "w" && other == "a")
    );
    assert!(err.to_string().contains("does not match the owner's"), "{err}");
    let lr = SHARED_NET.replace("param { name: \"b\" }\n", "param { name: \"b\" lr_mult: 1 }\n");
    assert_ne!(lr, SHARED_NET);
    let err = Net::new(&net_param("lr", &lr), &NetOptions::train()).unwrap_err();
    assert!(
        err.to_string().contains("lr_mult 1 differs from the owner's 2"),
        "{err}"
    );
}

#[test]
fn too_many_param_specs_and_bad_propagate_down_are_errors() {
    let too_many = r#"
layer { name: "input" type: "Input" top: "data" input_param { shape { dim: 1 dim: 4 } } }
layer { name: "a" type: "InnerProduct" bottom: "data" top: "a" param { } param { } param { }
        inner_product_param { num_output: 4 } }
"#;
    let err = Net::new(&net_param("many", too_many), &NetOptions::train()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::SpecCount {
                given: 3,
                expected: 2,
                ..
            }
        ),
        "{err}"
    );
    let bad_down = r#"
layer { name: "input" type: "Input" top: "data" input_param { shape { dim: 1 dim: 4 } } }
layer { name: "a" type: "ReLU" bottom: "data" top: "a" propagate_down: true propagate_down: false }
"#;
    let err = Net::new(&net_param("down", bad_down), &NetOptions::train()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::SpecCount {
                given: 2,
                expected: 1,
                ..
            }
        ),
        "{err}"
    );
    let bn_lr = r#"
layer { name: "input" type: "Input" top: "data" input_param { shape { dim: 2 dim: 4 } } }
layer { name: "bn" type: "BatchNorm" bottom: "data" top: "data" param { lr_mult: 1 } }
"#;
    let err = Net::new(&net_param("bn", bn_lr), &NetOptions::train()).unwrap_err();
    assert!(err.to_string().contains("batch normalization statistics"), "{err}");
}

#[test]
fn accuracy_and_silence_have_no_gradient_to_give() {
    let text = r#"
name: "silent"
force_backward: true
layer { name: "input" type: "Input" top: "x" top: "label"
        input_param { shape { dim: 3 dim: 4 } shape { dim: 3 } } }
layer { name: "split" type: "Split" bottom: "x" top: "a" top: "b" top: "c" }
layer { name: "loss" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "loss" }
layer { name: "silence" type: "Silence" bottom: "c" }
"#;
    let mut net = Net::new(&net_param("silent", text), &NetOptions::train()).unwrap();
    net.set_input("x", &[3, 4], &values(12, 7)).unwrap();
    net.set_input("label", &[3], &[0.0, 1.0, 2.0]).unwrap();
    net.forward_backward().unwrap();
    // Silence writes a zero diff (Caffe's SilenceLayer), so x's diff is the two loss inputs' diffs, which cancel.
    assert!(net.blob_diff("c").unwrap().data().iter().all(|&v| v == 0.0));
    assert!(net.blob_diff("x").unwrap().data().iter().all(|&v| v.abs() < 1e-7));
    let with_accuracy = text.replace(
        r#"layer { name: "silence" type: "Silence" bottom: "c" }"#,
        r#"layer { name: "acc" type: "Accuracy" bottom: "c" bottom: "label" top: "acc" }"#,
    );
    let mut net = Net::new(&net_param("accuracy", &with_accuracy), &NetOptions::train()).unwrap();
    net.set_input("x", &[3, 4], &values(12, 7)).unwrap();
    net.set_input("label", &[3], &[0.0, 1.0, 2.0]).unwrap();
    let err = net.forward_backward().unwrap_err();
    assert!(err.to_string().contains("Accuracy has no gradient"), "{err}");
}

#[test]
fn in_place_dropout_sends_the_gradient_through_the_kept_units_scaled() {
    let text = r#"
name: "dropout"
layer { name: "input" type: "Input" top: "x" top: "target"
        input_param { shape { dim: 4 dim: 6 } shape { dim: 4 dim: 50 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
        inner_product_param { num_output: 50 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "drop" type: "Dropout" bottom: "ip" top: "ip" dropout_param { dropout_ratio: 0.4 } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "target" top: "loss" }
"#;
    let mut net = Net::new(&net_param("dropout", text), &NetOptions::train()).unwrap();
    net.set_input("x", &[4, 6], &values(24, 8)).unwrap();
    let target = values(200, 9);
    net.set_input("target", &[4, 50], &target).unwrap();
    net.forward_backward().unwrap();
    let output = net.blob("ip").unwrap().data().to_vec();
    let diff = net.blob_diff("ip").unwrap().data().to_vec();
    let scale = 1.0 / (1.0 - 0.4);
    let dropped = output.iter().filter(|&&v| v == 0.0).count();
    assert!((40..=120).contains(&dropped), "{dropped} of 200 dropped at ratio 0.4");
    for ((&y, &t), &d) in output.iter().zip(&target).zip(&diff) {
        // The loss's diff (y - t) / N, through the mask and scale; zero where the unit was dropped.
        let expected = if y == 0.0 { 0.0 } else { scale * (y - t) / 4.0 };
        assert!((d - expected).abs() <= 1e-6, "{d} vs {expected}");
    }
}

#[test]
fn an_extra_gradient_on_a_blob_acts_as_a_second_loss_on_it() {
    // The in-place blob `ip` (PReLU and Sigmoid write it in place) gets, as an extra gradient, exactly what the
    // EuclideanLoss sends it: loss_weight / N * (ip - target). Every gradient below must then double.
    let mut net = Net::new(&net_param("extra", IN_PLACE_NET), &NetOptions::train()).unwrap();
    let target = values(10, 6);
    net.set_input("data", &[2, 2, 6, 6], &values(144, 5)).unwrap();
    net.set_input("target", &[2, 5], &target).unwrap();
    net.clear_param_diffs();
    net.forward_backward().unwrap();
    let once: Vec<Vec<f32>> = net
        .learnable_params_mut()
        .iter()
        .map(|p| p.diff.data().to_vec())
        .collect();
    let data_once = net.blob_diff("data").unwrap().data().to_vec();
    let ip = net.blob("ip").unwrap().data().to_vec();
    let extra: Vec<f32> = ip.iter().zip(&target).map(|(y, t)| 3.0 / 2.0 * (y - t)).collect();
    net.clear_param_diffs();
    net.forward().unwrap();
    net.backward_with(&[("ip", &extra)]).unwrap();
    for (p, first) in net.learnable_params_mut().iter().zip(&once) {
        for (&twice, &one) in p.diff.data().iter().zip(first) {
            assert!(
                (twice - 2.0 * one).abs() <= 1e-5 * one.abs().max(1e-3),
                "{}: {twice} vs 2 x {one}",
                p.layer
            );
        }
    }
    for (&twice, &one) in net.blob_diff("data").unwrap().data().iter().zip(&data_once) {
        assert!((twice - 2.0 * one).abs() <= 1e-5 * one.abs().max(1e-3));
    }
    // A wrong name or length is refused.
    assert!(net.backward_with(&[("nosuch", &extra)]).is_err());
    assert!(net.backward_with(&[("ip", &extra[..3])]).is_err());
}
