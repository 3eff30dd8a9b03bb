//! A finite-difference gradient checker in the manner of Caffe's `GradientChecker`: the objective is
//! `L = sum_t sum_i r_t[i] * top_t[i]` with fixed random `r` (the top diffs handed to backward), and every checked
//! bottom and parameter value is nudged by +-`step` to estimate `dL/dx` by central differences.

use caffe_proto::{LayerParameter, Phase};

use super::{create, Backward, Layer};
use crate::rng::SplitMix64;
use crate::Tensor;

/// What to check and how strictly.
pub struct Check {
    /// The layer's parameter.
    pub param: LayerParameter,
    /// The phase the layer is built for.
    pub phase: Phase,
    /// The bottoms.
    pub bottoms: Vec<Tensor>,
    /// Which bottoms to check (and propagate into).
    pub check_bottoms: Vec<bool>,
    /// Whether to check the parameter gradients (every parameter blob).
    pub check_params: bool,
    /// Parameter values to use instead of the fillers' (by blob index).
    pub params: Vec<Option<Vec<f32>>>,
    /// Central-difference step.
    pub step: f32,
    /// Relative threshold: `|analytic - numeric| <= threshold * max(|analytic|, |numeric|, 1)` (Caffe's rule).
    pub threshold: f32,
}

impl Check {
    /// A check of every bottom and every parameter, TRAIN phase, step 1e-2 and threshold 1e-3 (stricter than Caffe's
    /// usual 1e-2: the objective is summed in f64, and 1e-2 lets a 1% error in a small term through).
    pub fn new(param: LayerParameter, bottoms: Vec<Tensor>) -> Self {
        let n = bottoms.len();
        Check {
            param,
            phase: Phase::Train,
            bottoms,
            check_bottoms: vec![true; n],
            check_params: true,
            params: Vec::new(),
            step: 1e-2,
            threshold: 1e-3,
        }
    }
}

/// Deterministic uniform values in `[lo, hi)`.
pub fn uniform(shape: &[usize], lo: f32, hi: f32, seed: u64) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let n = shape.iter().product();
    Tensor::new(shape, (0..n).map(|_| lo + (hi - lo) * rng.next_f32()).collect())
}

/// Deterministic values at least `gap` away from 0 in `[-hi, -gap] U [gap, hi]` (away from ReLU's kink).
pub fn away_from_zero(shape: &[usize], gap: f32, hi: f32, seed: u64) -> Tensor {
    let mut t = uniform(shape, gap, hi, seed);
    let mut rng = SplitMix64::new(seed ^ 0x5555);
    t.data_mut().iter_mut().for_each(|v| {
        if rng.next_f32() < 0.5 {
            *v = -*v
        }
    });
    t
}

/// Distinct values (a shuffled ramp scaled by `spacing`, centred on 0): any two differ by at least `spacing`, so
/// max pooling / max eltwise have no ties within a central-difference step.
pub fn distinct(shape: &[usize], spacing: f32, seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    Tensor::new(
        shape,
        order.iter().map(|&k| (k as f32 - n as f32 / 2.0) * spacing).collect(),
    )
}

struct Run {
    layer: Box<dyn Layer>,
    tops: Vec<Tensor>,
}

fn build(check: &Check, params: &[Tensor], bottoms: &[Tensor]) -> Run {
    let p = &check.param;
    let mut layer = create(p, p.r#type(), check.phase, bottoms.len(), p.top.len().max(1))
        .expect("layer parameters are valid")
        .expect("layer type is implemented");
    let shapes: Vec<&[usize]> = bottoms.iter().map(|b| b.shape()).collect();
    let top_shapes = layer.reshape(&shapes).expect("shapes are valid");
    for (dst, src) in layer.params_mut().iter_mut().zip(params) {
        dst.data_mut().copy_from_slice(src.data());
    }
    let mut tops: Vec<Tensor> = top_shapes.iter().map(|s| Tensor::zeros(s)).collect();
    let refs: Vec<&Tensor> = bottoms.iter().collect();
    layer.forward(&refs, &mut tops).expect("forward runs");
    Run { layer, tops }
}

fn objective(tops: &[Tensor], weights: &[Tensor]) -> f64 {
    tops.iter()
        .zip(weights)
        .map(|(t, w)| {
            t.data()
                .iter()
                .zip(w.data())
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>()
        })
        .sum()
}

/// Runs the check; panics naming the first value whose gradients disagree. Returns how many values were checked.
pub fn check(check: &Check) -> usize {
    // The parameters as the layer's fillers make them, overridden where asked.
    let mut params: Vec<Tensor> = {
        let p = &check.param;
        let mut layer = create(p, p.r#type(), check.phase, check.bottoms.len(), p.top.len().max(1))
            .unwrap()
            .unwrap();
        let shapes: Vec<&[usize]> = check.bottoms.iter().map(|b| b.shape()).collect();
        layer.reshape(&shapes).unwrap();
        layer.params().to_vec()
    };
    for (i, values) in check.params.iter().enumerate() {
        if let Some(values) = values {
            params[i].data_mut().copy_from_slice(values);
        }
    }
    let mut base = build(check, &params, &check.bottoms);
    let weights: Vec<Tensor> = base
        .tops
        .iter()
        .enumerate()
        .map(|(i, t)| uniform(t.shape(), -1.0, 1.0, 1000 + i as u64))
        .collect();
    let mut bottom_diffs: Vec<Tensor> = check.bottoms.iter().map(|b| Tensor::zeros(b.shape())).collect();
    let mut param_diffs: Vec<Tensor> = params.iter().map(|p| Tensor::zeros(p.shape())).collect();
    let param_down = vec![check.check_params; params.len()];
    {
        let tops: Vec<&Tensor> = base.tops.iter().collect();
        let top_diffs: Vec<&Tensor> = weights.iter().collect();
        let bottoms: Vec<&Tensor> = check.bottoms.iter().collect();
        base.layer
            .backward(Backward {
                tops: &tops,
                top_diffs: &top_diffs,
                bottoms: &bottoms,
                propagate_down: &check.check_bottoms,
                bottom_diffs: &mut bottom_diffs,
                param_propagate_down: &param_down,
                param_diffs: &mut param_diffs,
            })
            .expect("backward runs");
    }
    let step = check.step as f64;
    let compare = |what: &str, i: usize, analytic: f32, plus: f64, minus: f64| {
        let numeric = (plus - minus) / (2.0 * step);
        let scale = (analytic.abs() as f64).max(numeric.abs()).max(1.0);
        assert!(
            (analytic as f64 - numeric).abs() <= check.threshold as f64 * scale,
            "{} ({}): {what} element {i}: analytic {analytic} vs numeric {numeric}",
            check.param.name(),
            check.param.r#type()
        );
    };
    let mut checked = 0;
    for (b, &on) in check.check_bottoms.iter().enumerate() {
        if !on {
            continue;
        }
        for i in 0..check.bottoms[b].len() {
            let mut bottoms = check.bottoms.clone();
            let x = bottoms[b].data()[i];
            bottoms[b].data_mut()[i] = x + check.step;
            let plus = objective(&build(check, &params, &bottoms).tops, &weights);
            bottoms[b].data_mut()[i] = x - check.step;
            let minus = objective(&build(check, &params, &bottoms).tops, &weights);
            compare(&format!("bottom {b}"), i, bottom_diffs[b].data()[i], plus, minus);
            checked += 1;
        }
    }
    if check.check_params {
        for p in 0..params.len() {
            for i in 0..params[p].len() {
                let x = params[p].data()[i];
                params[p].data_mut()[i] = x + check.step;
                let plus = objective(&build(check, &params, &check.bottoms).tops, &weights);
                params[p].data_mut()[i] = x - check.step;
                let minus = objective(&build(check, &params, &check.bottoms).tops, &weights);
                params[p].data_mut()[i] = x;
                compare(&format!("param {p}"), i, param_diffs[p].data()[i], plus, minus);
                checked += 1;
            }
        }
    }
    checked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::param;
    use caffe_proto::pooling_parameter::PoolMethod;
    use caffe_proto::{
        ConvolutionParameter, FillerParameter, InnerProductParameter, LossParameter, PoolingParameter, ReLuParameter,
    };

    fn gaussian(std: f32) -> Option<FillerParameter> {
        Some(FillerParameter {
            r#type: Some("gaussian".into()),
            std: Some(std),
            ..Default::default()
        })
    }

    fn with_tops(mut p: LayerParameter, n: usize) -> LayerParameter {
        p.top = (0..n).map(|i| format!("top{i}")).collect();
        p
    }

    fn conv(kind: &str, edit: impl FnOnce(&mut ConvolutionParameter)) -> LayerParameter {
        param(kind, |l| {
            let mut c = ConvolutionParameter {
                weight_filler: gaussian(0.5),
                bias_filler: gaussian(0.5),
                ..Default::default()
            };
            edit(&mut c);
            l.convolution_param = Some(c);
            l.top = vec!["top".into()];
        })
    }

    #[test]
    fn convolution_gradients() {
        // Group 2, pad, stride 2, bias; then dilation 2 without bias; a 1x1 kernel; two bottoms.
        let cases: Vec<(LayerParameter, Vec<usize>)> = vec![
            (
                conv("Convolution", |c| {
                    c.num_output = Some(4);
                    c.kernel_size = vec![3];
                    c.pad = vec![1];
                    c.stride = vec![2];
                    c.group = Some(2);
                }),
                vec![2, 4, 5, 6],
            ),
            (
                conv("Convolution", |c| {
                    c.num_output = Some(3);
                    c.kernel_h = Some(2);
                    c.kernel_w = Some(3);
                    c.dilation = vec![2];
                    c.bias_term = Some(false);
                }),
                vec![2, 2, 6, 7],
            ),
            (
                conv("Convolution", |c| {
                    c.num_output = Some(3);
                    c.kernel_size = vec![1];
                }),
                vec![3, 2, 3, 3],
            ),
        ];
        for (p, shape) in cases {
            let bottom = uniform(&shape, -1.0, 1.0, 7);
            assert!(check(&Check::new(p, vec![bottom])) > 0);
        }
        // Small spatial outputs are batched several images per product (5 images: a ragged last batch).
        let p = conv("Convolution", |c| {
            c.num_output = Some(2);
            c.kernel_size = vec![2];
        });
        let mut c = Check::new(p, vec![uniform(&[5, 2, 3, 3], -1.0, 1.0, 8)]);
        c.step = 1e-2;
        check(&c);
        let mut two = conv("Convolution", |c| {
            c.num_output = Some(2);
            c.kernel_size = vec![2];
        });
        two.top = vec!["a".into(), "b".into()];
        check(&Check::new(
            two,
            vec![
                uniform(&[2, 2, 3, 4], -1.0, 1.0, 9),
                uniform(&[2, 2, 3, 4], -1.0, 1.0, 10),
            ],
        ));
    }

    #[test]
    fn deconvolution_gradients() {
        let cases: Vec<(LayerParameter, Vec<usize>)> = vec![
            (
                conv("Deconvolution", |c| {
                    c.num_output = Some(4);
                    c.kernel_size = vec![3];
                    c.pad = vec![1];
                    c.stride = vec![2];
                    c.group = Some(2);
                }),
                vec![2, 2, 3, 3],
            ),
            (
                conv("Deconvolution", |c| {
                    c.num_output = Some(2);
                    c.kernel_size = vec![2];
                    c.bias_term = Some(false);
                }),
                vec![1, 3, 2, 3],
            ),
        ];
        for (p, shape) in cases {
            check(&Check::new(p, vec![uniform(&shape, -1.0, 1.0, 11)]));
        }
    }

    #[test]
    fn inner_product_gradients() {
        for transpose in [false, true] {
            for axis in [1, 2] {
                let p = param("InnerProduct", |l| {
                    l.inner_product_param = Some(InnerProductParameter {
                        num_output: Some(3),
                        transpose: Some(transpose),
                        axis: Some(axis),
                        weight_filler: gaussian(0.5),
                        bias_filler: gaussian(0.5),
                        ..Default::default()
                    });
                    l.top = vec!["top".into()];
                });
                check(&Check::new(p, vec![uniform(&[2, 3, 2, 2], -1.0, 1.0, 12)]));
            }
        }
    }

    #[test]
    fn pooling_gradients() {
        let pool = |method: PoolMethod, edit: fn(&mut PoolingParameter)| {
            with_tops(
                param("Pooling", |l| {
                    let mut p = PoolingParameter {
                        pool: Some(method as i32),
                        ..Default::default()
                    };
                    edit(&mut p);
                    l.pooling_param = Some(p);
                }),
                1,
            )
        };
        let edits: [fn(&mut PoolingParameter); 3] = [
            |p| {
                p.kernel_size = Some(2);
                p.stride = Some(2);
            },
            |p| {
                p.kernel_size = Some(3);
                p.stride = Some(2);
                p.pad = Some(1);
            },
            |p| {
                p.kernel_h = Some(3);
                p.kernel_w = Some(2);
                p.stride_h = Some(1);
                p.stride_w = Some(2);
            },
        ];
        for edit in edits {
            // Distinct values 0.05 apart: no tie within the step of 1e-2.
            check(&Check::new(
                pool(PoolMethod::Max, edit),
                vec![distinct(&[2, 2, 5, 5], 0.05, 13)],
            ));
            check(&Check::new(
                pool(PoolMethod::Ave, edit),
                vec![uniform(&[2, 2, 5, 5], -1.0, 1.0, 14)],
            ));
        }
        let global = pool(PoolMethod::Ave, |p| p.global_pooling = Some(true));
        check(&Check::new(global, vec![uniform(&[2, 3, 3, 4], -1.0, 1.0, 15)]));
        let global = pool(PoolMethod::Max, |p| p.global_pooling = Some(true));
        check(&Check::new(global, vec![distinct(&[2, 3, 3, 4], 0.05, 16)]));
    }

    #[test]
    fn relu_gradients() {
        for slope in [0.0, 0.1] {
            let p = with_tops(
                param("ReLU", |l| {
                    l.relu_param = Some(ReLuParameter {
                        negative_slope: Some(slope),
                        ..Default::default()
                    })
                }),
                1,
            );
            check(&Check::new(p, vec![away_from_zero(&[2, 3, 4], 0.05, 1.0, 17)]));
        }
    }

    fn labels(n: usize, classes: usize, seed: u64) -> Tensor {
        let mut rng = SplitMix64::new(seed);
        Tensor::new(&[n], (0..n).map(|_| (rng.next_u64() % classes as u64) as f32).collect())
    }

    #[test]
    fn softmax_with_loss_gradients() {
        use caffe_proto::loss_parameter::NormalizationMode as M;
        for (mode, ignore) in [
            (Some(M::Valid), Some(2)),
            (Some(M::BatchSize), None),
            (Some(M::Full), Some(0)),
            (Some(M::None), None),
            (None, None),
        ] {
            let p = with_tops(
                param("SoftmaxWithLoss", |l| {
                    l.loss_param = Some(LossParameter {
                        normalization: mode.map(|m| m as i32),
                        ignore_label: ignore,
                        ..Default::default()
                    })
                }),
                1,
            );
            // Spatial positions too: 3 items x 4 classes x 2 positions, labels per (item, position).
            let mut c = Check::new(p, vec![uniform(&[3, 4, 2], -2.0, 2.0, 18), labels(6, 4, 19)]);
            c.bottoms[1].reshape(&[3, 2]);
            c.check_bottoms = vec![true, false];
            check(&c);
        }
        // Legacy normalize: false means BATCH_SIZE.
        let p = with_tops(
            param("SoftmaxWithLoss", |l| {
                l.loss_param = Some(LossParameter {
                    normalize: Some(false),
                    ..Default::default()
                })
            }),
            1,
        );
        let mut c = Check::new(p, vec![uniform(&[4, 5], -2.0, 2.0, 20), labels(4, 5, 21)]);
        c.check_bottoms = vec![true, false];
        check(&c);
    }

    #[test]
    fn split_gradients() {
        let p = with_tops(param("Split", |_| {}), 3);
        check(&Check::new(p, vec![uniform(&[2, 3], -1.0, 1.0, 22)]));
    }

    fn one_top(kind: &str, edit: impl FnOnce(&mut LayerParameter)) -> LayerParameter {
        with_tops(param(kind, edit), 1)
    }

    #[test]
    fn sigmoid_tanh_softmax_gradients() {
        for kind in ["Sigmoid", "TanH"] {
            check(&Check::new(
                one_top(kind, |_| {}),
                vec![uniform(&[2, 3, 4], -2.0, 2.0, 30)],
            ));
        }
        for axis in [1, 2, -1] {
            let p = one_top("Softmax", |l| {
                l.softmax_param = Some(caffe_proto::SoftmaxParameter {
                    axis: Some(axis),
                    ..Default::default()
                })
            });
            check(&Check::new(p, vec![uniform(&[2, 3, 4], -2.0, 2.0, 31)]));
        }
    }

    #[test]
    fn prelu_gradients() {
        for shared in [false, true] {
            let p = one_top("PReLU", |l| {
                l.prelu_param = Some(caffe_proto::PReLuParameter {
                    channel_shared: Some(shared),
                    ..Default::default()
                })
            });
            let mut c = Check::new(p, vec![away_from_zero(&[2, 3, 2, 2], 0.05, 1.0, 32)]);
            c.params = vec![Some(if shared { vec![0.3] } else { vec![0.1, -0.2, 0.4] })];
            check(&c);
        }
    }

    #[test]
    fn dropout_gradients() {
        // TRAIN: the same mask for every evaluation (each check builds the layer afresh from the same seed).
        let p = one_top("Dropout", |l| {
            l.dropout_param = Some(caffe_proto::DropoutParameter {
                dropout_ratio: Some(0.3),
            })
        });
        check(&Check::new(p.clone(), vec![uniform(&[4, 5], -1.0, 1.0, 33)]));
        let mut test = Check::new(p, vec![uniform(&[4, 5], -1.0, 1.0, 33)]);
        test.phase = Phase::Test;
        check(&test);
    }

    #[test]
    fn euclidean_loss_gradients() {
        let p = one_top("EuclideanLoss", |_| {});
        check(&Check::new(
            p,
            vec![uniform(&[3, 2, 2], -1.0, 1.0, 34), uniform(&[3, 4], -1.0, 1.0, 35)],
        ));
    }

    #[test]
    fn lrn_gradients() {
        use caffe_proto::lrn_parameter::NormRegion;
        for (region, size) in [
            (NormRegion::AcrossChannels, 3),
            (NormRegion::AcrossChannels, 5),
            (NormRegion::WithinChannel, 3),
        ] {
            let p = one_top("LRN", |l| {
                l.lrn_param = Some(caffe_proto::LrnParameter {
                    local_size: Some(size),
                    alpha: Some(0.5),
                    beta: Some(0.75),
                    k: Some(1.5),
                    norm_region: Some(region as i32),
                    ..Default::default()
                })
            });
            check(&Check::new(p, vec![uniform(&[2, 7, 3, 3], -1.5, 1.5, 36)]));
        }
    }

    #[test]
    fn batch_norm_gradients() {
        // TRAIN: batch statistics (the stored statistics blobs get no gradient, as in Caffe).
        let p = one_top("BatchNorm", |l| {
            l.batch_norm_param = Some(caffe_proto::BatchNormParameter {
                eps: Some(1e-3),
                ..Default::default()
            })
        });
        let mut c = Check::new(p.clone(), vec![uniform(&[3, 2, 2, 3], -1.0, 1.0, 37)]);
        c.check_params = false;
        c.step = 1e-3;
        check(&c);
        // 2-D input (channels on axis 1, no spatial axes).
        let mut c = Check::new(p.clone(), vec![uniform(&[5, 3], -1.0, 1.0, 38)]);
        c.check_params = false;
        c.step = 1e-3;
        check(&c);
        // Global statistics.
        let mut c = Check::new(p, vec![uniform(&[2, 2, 3], -1.0, 1.0, 39)]);
        c.phase = Phase::Test;
        c.check_params = false;
        c.params = vec![Some(vec![0.5, -1.0]), Some(vec![2.0, 0.5]), Some(vec![2.0])];
        check(&c);
    }

    #[test]
    fn scale_and_bias_gradients() {
        for (axis, num_axes, bias) in [(1, 1, true), (1, 2, false), (0, -1, true), (2, 0, true)] {
            let p = one_top("Scale", |l| {
                l.scale_param = Some(caffe_proto::ScaleParameter {
                    axis: Some(axis),
                    num_axes: Some(num_axes),
                    bias_term: Some(bias),
                    filler: gaussian(1.0),
                    bias_filler: gaussian(1.0),
                })
            });
            check(&Check::new(p, vec![uniform(&[2, 3, 2, 2], -1.0, 1.0, 40)]));
            let p = one_top("Bias", |l| {
                l.bias_param = Some(caffe_proto::BiasParameter {
                    axis: Some(axis),
                    num_axes: Some(num_axes),
                    filler: gaussian(1.0),
                })
            });
            check(&Check::new(p, vec![uniform(&[2, 3, 2, 2], -1.0, 1.0, 41)]));
        }
        // Two-bottom forms: the operand is bottom 1 (its diff is overwritten, not accumulated).
        let p = one_top("Scale", |l| {
            l.scale_param = Some(caffe_proto::ScaleParameter {
                bias_term: Some(true),
                bias_filler: gaussian(1.0),
                ..Default::default()
            })
        });
        check(&Check::new(
            p,
            vec![uniform(&[2, 3, 2], -1.0, 1.0, 42), uniform(&[3, 2], -1.0, 1.0, 43)],
        ));
        let p = one_top("Bias", |_| {});
        check(&Check::new(
            p,
            vec![uniform(&[2, 3, 2], -1.0, 1.0, 44), uniform(&[3], -1.0, 1.0, 45)],
        ));
    }

    #[test]
    fn eltwise_gradients() {
        use caffe_proto::eltwise_parameter::EltwiseOp;
        let eltwise = |op: EltwiseOp, coeff: Vec<f32>, stable: bool| {
            one_top("Eltwise", |l| {
                l.eltwise_param = Some(caffe_proto::EltwiseParameter {
                    operation: Some(op as i32),
                    coeff,
                    stable_prod_grad: Some(stable),
                })
            })
        };
        let bottoms = |seed: u64| {
            vec![
                uniform(&[2, 3, 2], 0.2, 1.5, seed),
                uniform(&[2, 3, 2], -1.5, -0.2, seed + 1),
                uniform(&[2, 3, 2], 0.2, 1.5, seed + 2),
            ]
        };
        check(&Check::new(eltwise(EltwiseOp::Sum, vec![], true), bottoms(50)));
        check(&Check::new(
            eltwise(EltwiseOp::Sum, vec![0.5, -2.0, 1.5], true),
            bottoms(53),
        ));
        check(&Check::new(eltwise(EltwiseOp::Prod, vec![], true), bottoms(56)));
        check(&Check::new(eltwise(EltwiseOp::Prod, vec![], false), bottoms(59)));
        // MAX over interleaved distinct values: every bottom wins somewhere.
        let all = distinct(&[3, 2, 3, 2], 0.05, 62);
        let max_bottoms: Vec<Tensor> = all
            .data()
            .chunks(12)
            .map(|c| Tensor::new(&[2, 3, 2], c.to_vec()))
            .collect();
        check(&Check::new(eltwise(EltwiseOp::Max, vec![], true), max_bottoms));
    }

    #[test]
    fn concat_slice_flatten_reshape_silence_gradients() {
        for axis in [0, 1, 2] {
            let p = one_top("Concat", |l| {
                l.concat_param = Some(caffe_proto::ConcatParameter {
                    axis: Some(axis),
                    ..Default::default()
                })
            });
            let mut shape_b = vec![2, 3, 2];
            shape_b[axis as usize] = 1;
            check(&Check::new(
                p,
                vec![uniform(&[2, 3, 2], -1.0, 1.0, 70), uniform(&shape_b, -1.0, 1.0, 71)],
            ));
        }
        let p = with_tops(
            param("Slice", |l| {
                l.slice_param = Some(caffe_proto::SliceParameter {
                    axis: Some(1),
                    slice_point: vec![1, 3],
                    ..Default::default()
                })
            }),
            3,
        );
        check(&Check::new(p, vec![uniform(&[2, 4, 2], -1.0, 1.0, 72)]));
        check(&Check::new(
            one_top("Flatten", |_| {}),
            vec![uniform(&[2, 3, 2], -1.0, 1.0, 73)],
        ));
        let p = one_top("Reshape", |l| {
            l.reshape_param = Some(caffe_proto::ReshapeParameter {
                shape: Some(caffe_proto::BlobShape { dim: vec![0, -1] }),
                ..Default::default()
            })
        });
        check(&Check::new(p, vec![uniform(&[2, 3, 2], -1.0, 1.0, 74)]));
    }
}
