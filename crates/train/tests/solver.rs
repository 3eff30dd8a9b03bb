//! The solver on a tiny net (Input -> InnerProduct -> EuclideanLoss, inputs fed by hand): every update rule against
//! an independent f64 implementation of Caffe's formulas, regularization, clipping, masks, resume, iter_size.

use std::sync::{Arc, Mutex};

use caffe_proto::{
    BlobShape, InnerProductParameter, InputParameter, LayerParameter, NetParameter, ParamSpec, SolverParameter,
};
use engine::{LayerWeights, Net, WeightBlob};
use train::{Control, FnFeeder, Observer, ParamMask, Snapshot, Solver, SolverNets};

const INPUTS: usize = 3;
const OUTPUTS: usize = 2;

fn layer(name: &str, kind: &str, bottom: &[&str], top: &[&str]) -> LayerParameter {
    LayerParameter {
        name: Some(name.into()),
        r#type: Some(kind.into()),
        bottom: bottom.iter().map(|s| s.to_string()).collect(),
        top: top.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// x [N, 3] -> ip (2 outputs; weights lr_mult 1 decay_mult 1, bias lr_mult 2 decay_mult 0) -> EuclideanLoss with y.
fn tiny_net(batch: i64) -> NetParameter {
    let mut input = layer("input", "Input", &[], &["x", "y"]);
    input.input_param = Some(InputParameter {
        shape: vec![
            BlobShape {
                dim: vec![batch, INPUTS as i64],
            },
            BlobShape {
                dim: vec![batch, OUTPUTS as i64],
            },
        ],
    });
    let mut ip = layer("ip", "InnerProduct", &["x"], &["p"]);
    ip.inner_product_param = Some(InnerProductParameter {
        num_output: Some(OUTPUTS as u32),
        ..Default::default()
    });
    ip.param = vec![
        ParamSpec {
            lr_mult: Some(1.0),
            decay_mult: Some(1.0),
            ..Default::default()
        },
        ParamSpec {
            lr_mult: Some(2.0),
            decay_mult: Some(0.0),
            ..Default::default()
        },
    ];
    NetParameter {
        name: Some("tiny".into()),
        layer: vec![input, ip, layer("loss", "EuclideanLoss", &["p", "y"], &["loss"])],
        ..Default::default()
    }
}

const W0: [f32; 6] = [0.5, -0.3, 0.2, 0.1, 0.4, -0.6];
const B0: [f32; 2] = [0.05, -0.1];

/// Sample `k` of an endless deterministic stream: x in [-1, 1], y a fixed linear map of x plus a wobble.
fn sample(k: usize) -> ([f32; INPUTS], [f32; OUTPUTS]) {
    let t = k as f32;
    let x = [(t * 0.37).sin(), (t * 0.11 + 1.0).cos(), ((t * 0.53).sin() * 0.5)];
    let y = [
        1.5 * x[0] - 0.5 * x[1] + 0.25 + 0.1 * (t * 0.7).cos(),
        -0.7 * x[2] + 0.3 * x[0] - 0.1,
    ];
    (x, y)
}

/// A feeder giving batches of `batch` samples, starting at batch number `first_batch`.
fn feeder(batch: usize, first_batch: usize) -> Box<dyn train::Feeder> {
    let mut next = first_batch * batch;
    Box::new(FnFeeder::new(vec![], move |net: &mut Net| {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for k in next..next + batch {
            let (a, b) = sample(k);
            x.extend(a);
            y.extend(b);
        }
        next += batch;
        net.set_input("x", &[batch, INPUTS], &x)?;
        net.set_input("y", &[batch, OUTPUTS], &y)
    }))
}

fn solver_param(kind: &str, edit: impl FnOnce(&mut SolverParameter)) -> SolverParameter {
    let mut p = SolverParameter {
        r#type: Some(kind.into()),
        base_lr: Some(0.05),
        lr_policy: Some("step".into()),
        gamma: Some(0.5),
        stepsize: Some(2),
        weight_decay: Some(0.01),
        max_iter: Some(100),
        ..Default::default()
    };
    edit(&mut p);
    p
}

fn solver(param: &SolverParameter, batch: usize) -> Solver {
    let mut param = param.clone();
    param.net_param = Some(tiny_net(batch as i64));
    let nets = SolverNets::resolve(&param, |_| Err::<NetParameter, _>("no files")).unwrap();
    let mut solver = Solver::with_feeders(&param, nets, feeder(batch, 0), vec![]).unwrap();
    solver
        .load_weights(&[LayerWeights {
            name: "ip".into(),
            blobs: vec![
                WeightBlob::new(vec![2, 3], W0.to_vec()),
                WeightBlob::new(vec![2], B0.to_vec()),
            ],
        }])
        .unwrap();
    solver
}

fn weights(solver: &Solver) -> (Vec<f32>, Vec<f32>) {
    let p = solver.net().params("ip").unwrap();
    (p[0].data().to_vec(), p[1].data().to_vec())
}

/// Caffe's formulas in f64, written from the Caffe sources independently of the crate.
struct Reference {
    kind: String,
    param: SolverParameter,
    w: Vec<f64>,
    b: Vec<f64>,
    /// history per parameter (weights, bias), second history per parameter.
    h: [Vec<f64>; 2],
    h2: [Vec<f64>; 2],
    iter: i32,
    /// Steps whose gradients were clipped.
    clipped: usize,
}

impl Reference {
    fn new(kind: &str, param: &SolverParameter) -> Self {
        Reference {
            kind: kind.into(),
            param: param.clone(),
            w: W0.iter().map(|&v| f64::from(v)).collect(),
            b: B0.iter().map(|&v| f64::from(v)).collect(),
            h: [vec![0.0; 6], vec![0.0; 2]],
            h2: [vec![0.0; 6], vec![0.0; 2]],
            iter: 0,
            clipped: 0,
        }
    }

    /// Gradients of the Euclidean loss 1/(2N) sum (Wx + b - y)^2 over the batch starting at sample `first`.
    fn gradients(&self, first: usize, batch: usize) -> (Vec<f64>, Vec<f64>) {
        let mut gw = vec![0.0; 6];
        let mut gb = vec![0.0; 2];
        for k in first..first + batch {
            let (x, y) = sample(k);
            for o in 0..OUTPUTS {
                let p: f64 = (0..INPUTS)
                    .map(|i| self.w[o * INPUTS + i] * f64::from(x[i]))
                    .sum::<f64>()
                    + self.b[o];
                let d = (p - f64::from(y[o])) / batch as f64;
                for i in 0..INPUTS {
                    gw[o * INPUTS + i] += d * f64::from(x[i]);
                }
                gb[o] += d;
            }
        }
        (gw, gb)
    }

    fn step(&mut self, first: usize, batch: usize) {
        let p = &self.param;
        let rate = f64::from(p.base_lr()) * f64::from(p.gamma()).powi(self.iter / p.stepsize());
        let (gw, gb) = self.gradients(first, batch);
        let mut grads = [gw, gb];
        // Clip by the global norm.
        if p.clip_gradients() >= 0.0 {
            let norm = grads.iter().flatten().map(|g| g * g).sum::<f64>().sqrt();
            if norm > f64::from(p.clip_gradients()) {
                self.clipped += 1;
                let s = f64::from(p.clip_gradients()) / norm;
                grads.iter_mut().flatten().for_each(|g| *g *= s);
            }
        }
        let lr_mult = [1.0, 2.0];
        let decay_mult = [1.0, 0.0];
        let (m, m2, delta, rms) = (
            f64::from(p.momentum()),
            f64::from(p.momentum2()),
            f64::from(p.delta()),
            f64::from(p.rms_decay()),
        );
        let t = f64::from(self.iter + 1);
        for which in 0..2 {
            let data = if which == 0 { &mut self.w } else { &mut self.b };
            let lr = rate * lr_mult[which];
            for j in 0..data.len() {
                let mut g = grads[which][j];
                let decay = f64::from(p.weight_decay()) * decay_mult[which];
                g += if p.regularization_type() == "L1" {
                    decay * data[j].signum() * f64::from(u8::from(data[j] != 0.0))
                } else {
                    decay * data[j]
                };
                let h = &mut self.h[which][j];
                let h2 = &mut self.h2[which][j];
                let update = match self.kind.as_str() {
                    "SGD" => {
                        *h = m * *h + lr * g;
                        *h
                    }
                    "Nesterov" => {
                        let old = *h;
                        *h = m * *h + lr * g;
                        (1.0 + m) * *h - m * old
                    }
                    "AdaGrad" => {
                        *h += g * g;
                        lr * g / (h.sqrt() + delta)
                    }
                    "RMSProp" => {
                        *h = rms * *h + (1.0 - rms) * g * g;
                        lr * g / (h.sqrt() + delta)
                    }
                    "AdaDelta" => {
                        *h = m * *h + (1.0 - m) * g * g;
                        let u = g * ((delta + *h2) / (delta + *h)).sqrt();
                        *h2 = m * *h2 + (1.0 - m) * u * u;
                        lr * u
                    }
                    "Adam" => {
                        *h = m * *h + (1.0 - m) * g;
                        *h2 = m2 * *h2 + (1.0 - m2) * g * g;
                        let correction = (1.0 - m2.powf(t)).sqrt() / (1.0 - m.powf(t));
                        lr * correction * *h / (h2.sqrt() + delta)
                    }
                    other => panic!("{other}"),
                };
                data[j] -= update;
            }
        }
        self.iter += 1;
    }
}

/// max |found - expected| over max |expected - start| (the change), per blob.
fn change_error(found: &[f32], expected: &[f64], start: &[f32]) -> f64 {
    let scale = expected
        .iter()
        .zip(start)
        .map(|(e, s)| (e - f64::from(*s)).abs())
        .fold(0.0, f64::max);
    let err = found
        .iter()
        .zip(expected)
        .map(|(f, e)| (f64::from(*f) - e).abs())
        .fold(0.0, f64::max);
    err / scale.max(1e-30)
}

/// Runs `steps` steps of the solver and of the reference; returns how many steps the reference clipped.
fn check_against_reference(kind: &str, param: &SolverParameter, steps: usize) -> usize {
    let batch = 8;
    let mut solver = solver(param, batch);
    let mut reference = Reference::new(kind, param);
    for s in 0..steps {
        solver.step(1, &mut ()).unwrap();
        reference.step(s * batch, batch);
        let (w, b) = weights(&solver);
        let (ew, eb) = (change_error(&w, &reference.w, &W0), change_error(&b, &reference.b, &B0));
        assert!(
            ew < 1e-5 && eb < 1e-5,
            "{kind} step {}: weight change error {ew:e}, bias {eb:e}\n{w:?}\n{:?}",
            s + 1,
            reference.w
        );
    }
    assert_eq!(solver.iter(), steps as i32);
    reference.clipped
}

#[test]
fn sgd_matches_caffe_formulas() {
    check_against_reference("SGD", &solver_param("SGD", |p| p.momentum = Some(0.9)), 5);
}

#[test]
fn sgd_l1_and_clipping_match_caffe_formulas() {
    let param = solver_param("SGD", |p| {
        p.momentum = Some(0.9);
        p.regularization_type = Some("L1".into());
        p.weight_decay = Some(0.05);
        p.clip_gradients = Some(0.1);
    });
    assert_eq!(
        check_against_reference("SGD", &param, 5),
        5,
        "clipping was not exercised"
    );
}

#[test]
fn nesterov_matches_caffe_formulas() {
    check_against_reference("Nesterov", &solver_param("Nesterov", |p| p.momentum = Some(0.9)), 5);
}

#[test]
fn adagrad_matches_caffe_formulas() {
    check_against_reference("AdaGrad", &solver_param("AdaGrad", |_| {}), 5);
}

#[test]
fn rmsprop_matches_caffe_formulas() {
    check_against_reference("RMSProp", &solver_param("RMSProp", |p| p.rms_decay = Some(0.9)), 5);
}

#[test]
fn adadelta_matches_caffe_formulas() {
    let param = solver_param("AdaDelta", |p| {
        p.momentum = Some(0.95);
        p.delta = Some(1e-6);
        p.base_lr = Some(1.0);
    });
    check_against_reference("AdaDelta", &param, 5);
}

#[test]
fn adam_matches_caffe_formulas() {
    let param = solver_param("Adam", |p| {
        p.momentum = Some(0.9);
        p.momentum2 = Some(0.999);
    });
    check_against_reference("Adam", &param, 5);
}

#[test]
fn legacy_solver_type_enum_selects_the_same_rule() {
    let mut param = solver_param("Adam", |p| {
        p.momentum = Some(0.9);
        p.momentum2 = Some(0.999);
    });
    param.r#type = None;
    param.solver_type = Some(5);
    check_against_reference("Adam", &param, 3);
}

#[test]
fn masked_weights_stay_exactly_zero() {
    let param = solver_param("SGD", |p| {
        p.momentum = Some(0.9);
        p.weight_decay = Some(0.0005);
        p.lr_policy = Some("fixed".into());
    });
    let mut solver = solver(&param, 8);
    let keep = vec![true, false, true, false, true, false];
    solver
        .set_masks(&[ParamMask {
            layer: "ip".into(),
            index: 0,
            keep: keep.clone(),
        }])
        .unwrap();
    let (w, _) = weights(&solver);
    for _ in 0..50 {
        solver.step(1, &mut ()).unwrap();
        let (now, _) = weights(&solver);
        for (v, &k) in now.iter().zip(&keep) {
            if !k {
                assert_eq!(v.to_bits(), 0, "a masked weight became {v}");
            }
        }
    }
    let (now, b) = weights(&solver);
    for ((v, w), &k) in now.iter().zip(&w).zip(&keep) {
        if k {
            assert!((v - w).abs() > 1e-3, "a kept weight did not train: {w} -> {v}");
        }
    }
    assert!((b[0] - B0[0]).abs() > 1e-3, "the bias did not train");
    // The masked history stays zero too (it is in the snapshot).
    let state = solver.snapshot().state;
    for (h, &k) in state.history[0].data.iter().zip(&keep) {
        if !k {
            assert_eq!(h.to_bits(), 0);
        }
    }
    // Bad masks are refused with the parameter named.
    let err = solver
        .set_masks(&[ParamMask {
            layer: "ip".into(),
            index: 0,
            keep: vec![true; 5],
        }])
        .unwrap_err();
    assert_eq!(err.to_string(), "mask for ip[0]: 5 entries for a parameter of 6 values");
    let err = solver
        .set_masks(&[ParamMask {
            layer: "nope".into(),
            index: 0,
            keep: vec![],
        }])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "mask for nope[0]: the train net has no such learnable parameter"
    );
}

#[derive(Default)]
struct Snapshots(Arc<Mutex<Vec<Snapshot>>>);

impl Observer for Snapshots {
    fn on_snapshot(&mut self, snapshot: Snapshot) -> Result<(), String> {
        self.0.lock().unwrap().push(snapshot);
        Ok(())
    }
}

#[test]
fn resume_from_snapshot_equals_uninterrupted_run() {
    for kind in ["SGD", "Adam", "AdaDelta"] {
        let param = solver_param(kind, |p| {
            p.momentum = Some(0.9);
            p.lr_policy = Some("multistep".into());
            p.stepvalue = vec![3, 7];
            p.snapshot = Some(5);
            p.snapshot_prefix = Some("out/tiny".into());
            p.max_iter = Some(10);
        });
        let mut full = solver(&param, 8);
        full.set_masks(&[ParamMask::from_nonzero("ip", 0, &[1.0, 0.0, 1.0, 1.0, 1.0, 1.0])])
            .unwrap();
        let mut observer = Snapshots::default();
        full.solve(&mut observer).unwrap();
        let snapshots = observer.0.lock().unwrap().clone();
        // Every 5 iterations; none extra at the end since 10 % 5 == 0.
        assert_eq!(snapshots.iter().map(|s| s.iter).collect::<Vec<_>>(), [5, 10]);
        let at5 = &snapshots[0];
        assert_eq!(at5.model_filename, "out/tiny_iter_5.caffemodel");
        assert_eq!(at5.state_filename, "out/tiny_iter_5.solverstate");
        assert_eq!(at5.state.learned_net(), "out/tiny_iter_5.caffemodel");
        assert_eq!(at5.state.current_step(), 1);
        assert_eq!(at5.state.history.len(), if kind == "SGD" { 2 } else { 4 });

        let mut resumed = solver(&param, 8);
        resumed
            .set_masks(&[ParamMask::from_nonzero("ip", 0, &[1.0, 0.0, 1.0, 1.0, 1.0, 1.0])])
            .unwrap();
        resumed.load_net_param(&at5.model).unwrap();
        resumed.restore(&at5.state).unwrap();
        assert_eq!((resumed.iter(), resumed.current_step()), (5, 1));
        // The data continues where it stopped (Caffe itself would restart its LMDB cursor).
        let mut resumed = rebuild_with_feeder(resumed, &param, 5);
        resumed.solve(&mut ()).unwrap();
        assert_eq!(weights(&resumed), weights(&full), "{kind}: resumed run differs");
        assert_eq!(resumed.history(), full.history(), "{kind}: history differs");
        assert_eq!(resumed.snapshot().state, snapshots[1].state);
    }
}

/// A solver restored like `from` but fed from batch `first_batch` on.
fn rebuild_with_feeder(from: Solver, param: &SolverParameter, first_batch: usize) -> Solver {
    let snapshot = from.snapshot();
    let mut param = param.clone();
    param.net_param = Some(tiny_net(8));
    let nets = SolverNets::resolve(&param, |_| Err::<NetParameter, _>("no files")).unwrap();
    let mut solver = Solver::with_feeders(&param, nets, feeder(8, first_batch), vec![]).unwrap();
    solver
        .set_masks(&[ParamMask::from_nonzero("ip", 0, &[1.0, 0.0, 1.0, 1.0, 1.0, 1.0])])
        .unwrap();
    solver.load_net_param(&snapshot.model).unwrap();
    solver.restore(&snapshot.state).unwrap();
    solver
}

#[test]
fn restore_refuses_mismatched_history() {
    let sgd = solver(&solver_param("SGD", |_| {}), 4);
    let state = sgd.snapshot().state;
    let mut adam = solver(&solver_param("Adam", |_| {}), 4);
    let err = adam.restore(&state).unwrap_err();
    assert_eq!(
        err.to_string(),
        "solver state: 2 history blobs, but this Adam solver over this net has 4"
    );
    let mut bad = state.clone();
    bad.history.swap(0, 1);
    let mut other = solver(&solver_param("SGD", |_| {}), 4);
    assert!(other
        .restore(&bad)
        .unwrap_err()
        .to_string()
        .contains("history blob 0 has shape [2]"));
}

#[test]
fn iter_size_two_at_half_batch_equals_full_batch() {
    let param = solver_param("SGD", |p| p.momentum = Some(0.9));
    let mut full = solver(&param, 16);
    let mut halves = solver(
        &SolverParameter {
            iter_size: Some(2),
            ..param.clone()
        },
        8,
    );
    struct Losses(Vec<f32>);
    impl Observer for Losses {
        fn on_iteration(&mut self, r: &train::IterationReport) -> Control {
            self.0.push(r.loss);
            Control::Continue
        }
    }
    let (mut l1, mut l2) = (Losses(vec![]), Losses(vec![]));
    full.step(6, &mut l1).unwrap();
    halves.step(6, &mut l2).unwrap();
    let (w1, b1) = weights(&full);
    let (w2, b2) = weights(&halves);
    for (a, b) in w1.iter().chain(&b1).zip(w2.iter().chain(&b2)) {
        assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "{a} vs {b}");
    }
    for (a, b) in l1.0.iter().zip(&l2.0) {
        assert!((a - b).abs() <= 1e-6 * a.abs(), "loss {a} vs {b}");
    }
}

#[test]
fn bad_parameters_are_errors_naming_the_value() {
    let param = |edit: fn(&mut SolverParameter)| {
        let mut p = solver_param("SGD", |_| {});
        edit(&mut p);
        p.net_param = Some(tiny_net(4));
        let nets = SolverNets::resolve(&p, |_| Err::<NetParameter, _>("no files")).unwrap();
        Solver::with_feeders(&p, nets, feeder(4, 0), vec![])
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        param(|p| p.r#type = Some("Momentum".into())),
        "unknown solver type 'Momentum' (known: SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam)"
    );
    assert_eq!(
        param(|p| p.lr_policy = Some("cosine".into())),
        "unknown lr_policy 'cosine' (known: fixed, step, exp, inv, multistep, poly, sigmoid)"
    );
    assert_eq!(
        param(|p| p.regularization_type = Some("L3".into())),
        "unknown regularization_type 'L3' (known: L2, L1)"
    );
    assert_eq!(
        param(|p| p.average_loss = Some(0)),
        "solver parameter average_loss: 0 must be >= 1"
    );
    assert_eq!(
        param(|p| {
            p.r#type = Some("AdaGrad".into());
            p.momentum = Some(0.9);
        }),
        "solver parameter momentum: 0.9 given, but momentum cannot be used with AdaGrad"
    );
    // Net resolution.
    let none = SolverParameter::default();
    assert!(SolverNets::resolve(&none, |_| Err::<NetParameter, _>("x"))
        .unwrap_err()
        .to_string()
        .starts_with("the solver must specify a train net"));
    let file = SolverParameter {
        net: Some("missing.prototxt".into()),
        ..Default::default()
    };
    assert_eq!(
        SolverNets::resolve(&file, |_| Err::<NetParameter, _>("No such file"))
            .unwrap_err()
            .to_string(),
        "net file 'missing.prototxt': No such file"
    );
    let tests = SolverParameter {
        net_param: Some(tiny_net(4)),
        test_net_param: vec![tiny_net(4)],
        ..Default::default()
    };
    assert!(SolverNets::resolve(&tests, |_| Err::<NetParameter, _>("x"))
        .unwrap_err()
        .to_string()
        .starts_with("test_iter must be specified for each test network"));
}

#[test]
fn generic_net_gives_one_test_net_per_test_iter_with_its_state() {
    let param = SolverParameter {
        net_param: Some(tiny_net(4)),
        test_net_param: vec![tiny_net(2)],
        test_iter: vec![3, 5, 7],
        test_state: vec![
            Default::default(),
            caffe_proto::NetState {
                stage: vec!["val".into()],
                ..Default::default()
            },
            Default::default(),
        ],
        train_state: Some(caffe_proto::NetState {
            level: Some(2),
            ..Default::default()
        }),
        ..Default::default()
    };
    let nets = SolverNets::resolve(&param, |_| Err::<NetParameter, _>("x")).unwrap();
    assert_eq!(nets.train_state.phase(), caffe_proto::Phase::Train);
    assert_eq!(nets.train_state.level(), 2);
    assert_eq!(nets.tests.iter().map(|t| t.iters).collect::<Vec<_>>(), [3, 5, 7]);
    assert_eq!(nets.tests[0].param, tiny_net(2));
    assert_eq!(nets.tests[1].param, tiny_net(4));
    assert_eq!(nets.tests[1].state.stage, ["val"]);
    assert!(nets.tests.iter().all(|t| t.state.phase() == caffe_proto::Phase::Test));
}

#[test]
fn shared_weights_move_by_the_summed_gradients_of_their_weights() {
    use train::ParamCodebook;
    let codes = vec![1u8, 2, 1, 0, 1, 2];
    let codebook = vec![0.0f32, 0.3, -0.2];
    let expanded: Vec<f32> = codes.iter().map(|&c| codebook[usize::from(c)]).collect();
    // Plain SGD, no momentum or decay: one step of a twin solver without sharing gives each weight's gradient.
    let param = solver_param("SGD", |p| {
        p.weight_decay = Some(0.0);
        p.lr_policy = Some("fixed".into());
    });
    let mut twin = solver(&param, 4);
    twin.load_weights(&[LayerWeights {
        name: "ip".into(),
        blobs: vec![
            WeightBlob::new(vec![2, 3], expanded.clone()),
            WeightBlob::new(vec![2], B0.to_vec()),
        ],
    }])
    .unwrap();
    twin.step(1, &mut ()).unwrap();
    let moved: Vec<f32> = expanded.iter().zip(weights(&twin).0).map(|(a, b)| a - b).collect();
    let mut shared = solver(&param, 4);
    let book = ParamCodebook {
        layer: "ip".into(),
        index: 0,
        codes: codes.clone(),
        codebook: codebook.clone(),
    };
    shared.set_codebooks(std::slice::from_ref(&book)).unwrap();
    assert_eq!(weights(&shared).0, expanded);
    shared.step(1, &mut ()).unwrap();
    let (w, b) = weights(&shared);
    // Each value moved by the sum of its weights' steps (lr * gradient); code 0 did not move.
    for (i, &c) in codes.iter().enumerate() {
        let expected = codebook[usize::from(c)]
            - codes
                .iter()
                .zip(&moved)
                .filter(|(&k, _)| k == c && c != 0)
                .map(|(_, m)| m)
                .sum::<f32>();
        assert!((w[i] - expected).abs() < 1e-6, "weight {i}: {} vs {expected}", w[i]);
    }
    assert_eq!(w[3], 0.0);
    // The bias trained as usual, as in the twin.
    assert_eq!(b, weights(&twin).1);
    let after = shared.codebooks();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].codes, codes);
    assert!(w
        .iter()
        .zip(&codes)
        .all(|(v, &c)| *v == after[0].codebook[usize::from(c)]));

    // With momentum and decay over several steps the sharing holds exactly.
    let param = solver_param("SGD", |p| p.momentum = Some(0.9));
    let mut shared = solver(&param, 4);
    shared.set_codebooks(&[book]).unwrap();
    shared.step(5, &mut ()).unwrap();
    let w = weights(&shared).0;
    assert_eq!((w[0], w[2], w[3]), (w[4], w[4], 0.0));
    assert_eq!(w[1], w[5]);

    // Codebooks that do not fit are refused.
    for (codes, codebook, problem) in [
        (vec![1u8; 5], vec![0.0, 1.0], "5 codes for 6 values"),
        (vec![3u8; 6], vec![0.0, 1.0], "past the codebook"),
        (vec![1u8; 6], vec![0.5, 1.0], "entry 0 must be 0.0"),
    ] {
        let err = shared
            .set_codebooks(&[ParamCodebook {
                layer: "ip".into(),
                index: 0,
                codes,
                codebook,
            }])
            .unwrap_err();
        assert!(err.to_string().contains(problem), "{err}");
    }
}
