//! Caffe's `Solver` / `SGDSolver`: the training loop, tests, smoothing, snapshots and restores, and the update of
//! the learnable parameters in Caffe's order (clip, then per parameter normalize, regularize, compute the update
//! value, then `Net::Update`).

use caffe_proto::{
    BlobProto, BlobShape, LayerParameter, NetParameter, NetState, ParamSpec, SolverParameter, SolverState,
};
use engine::{CopyReport, LayerWeights, Net, NetOptions, Tensor, WeightBlob};

use crate::feeder::{net_state, DataFeeder, DataOptions, Feeder};
use crate::lr::LrPolicy;
use crate::update::{compute_update, Hyper, SolverKind};
use crate::{Distillation, Error};

/// The nets a solver trains and tests, resolved from a `SolverParameter` ([`SolverNets::resolve`]) or given
/// directly.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SolverNets {
    /// The train net's definition.
    pub train: NetParameter,
    /// The state the train net is built in: phase TRAIN merged with the net's own `state` and the solver's
    /// `train_state`, as Caffe's `InitTrainNet` merges them.
    pub train_state: NetState,
    /// The test nets, in Caffe's order.
    pub tests: Vec<TestNetSpec>,
}

/// One test net: its definition, the state it is built in, and how many batches a test runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TestNetSpec {
    /// The net's definition.
    pub param: NetParameter,
    /// Phase TEST merged with the net's own `state` and the matching `test_state`.
    pub state: NetState,
    /// `test_iter` for this net.
    pub iters: usize,
}

/// Protobuf `MergeFrom` of two `NetState`s: set scalars replace, stages append.
fn merge_state(into: &mut NetState, from: Option<&NetState>) {
    if let Some(from) = from {
        if from.phase.is_some() {
            into.phase = from.phase;
        }
        if from.level.is_some() {
            into.level = from.level;
        }
        into.stage.extend(from.stage.iter().cloned());
    }
}

impl SolverNets {
    /// Resolves the nets as Caffe's `InitTrainNet` and `InitTestNets` do: the train net from exactly one of
    /// `train_net_param`, `train_net`, `net_param`, `net`; test nets from `test_net_param`, then `test_net`, then one
    /// instance of the generic net (`net_param` / `net`) per remaining `test_iter`. `load` reads a net file named by
    /// the solver (resolving it relative to the solver file is the caller's business) into a modern
    /// `NetParameter`; it is called once per distinct use.
    pub fn resolve<E: std::fmt::Display>(
        param: &SolverParameter,
        mut load: impl FnMut(&str) -> Result<NetParameter, E>,
    ) -> Result<Self, Error> {
        let mut load = |path: &str| {
            load(path).map_err(|e| Error::NetLoad {
                path: path.to_string(),
                message: e.to_string(),
            })
        };
        let given = [
            param.train_net_param.is_some(),
            param.train_net.is_some(),
            param.net_param.is_some(),
            param.net.is_some(),
        ];
        let count = given.iter().filter(|&&g| g).count();
        if count == 0 {
            return Err(Error::NetSpec(
                "the solver must specify a train net using one of: net, net_param, train_net, train_net_param".into(),
            ));
        }
        if count > 1 {
            return Err(Error::NetSpec(
                "the solver must not give more than one of: net, net_param, train_net, train_net_param".into(),
            ));
        }
        let train = if let Some(p) = &param.train_net_param {
            p.clone()
        } else if let Some(f) = &param.train_net {
            load(f)?
        } else if let Some(p) = &param.net_param {
            p.clone()
        } else {
            load(param.net())?
        };
        let mut train_state = NetState {
            phase: Some(caffe_proto::Phase::Train as i32),
            ..Default::default()
        };
        merge_state(&mut train_state, train.state.as_ref());
        merge_state(&mut train_state, param.train_state.as_ref());

        let generic = usize::from(param.net_param.is_some() || param.net.is_some());
        let specific = param.test_net_param.len() + param.test_net.len();
        let iters = &param.test_iter;
        if (generic == 1 && iters.len() < specific) || (generic == 0 && iters.len() != specific) {
            return Err(Error::NetSpec(format!(
                "test_iter must be specified for each test network ({} test_iter values for {specific} test nets)",
                iters.len()
            )));
        }
        let instances = if generic == 1 { iters.len() } else { specific };
        if !param.test_state.is_empty() && param.test_state.len() != instances {
            return Err(Error::NetSpec(format!(
                "test_state must be unspecified or specified once per test net ({} given for {instances} test nets)",
                param.test_state.len()
            )));
        }
        let mut sources = Vec::with_capacity(instances);
        sources.extend(param.test_net_param.iter().cloned());
        for file in &param.test_net {
            sources.push(load(file)?);
        }
        if instances > specific {
            let generic_net = match &param.net_param {
                Some(p) => p.clone(),
                None => load(param.net())?,
            };
            sources.resize(instances, generic_net);
        }
        let mut tests = Vec::with_capacity(instances);
        for (i, net) in sources.into_iter().enumerate() {
            let mut state = NetState {
                phase: Some(caffe_proto::Phase::Test as i32),
                ..Default::default()
            };
            merge_state(&mut state, net.state.as_ref());
            merge_state(&mut state, param.test_state.get(i));
            let n = iters[i];
            let iters = usize::try_from(n).map_err(|_| Error::bad("test_iter", format!("{n} must be >= 0")))?;
            tests.push(TestNetSpec {
                param: net,
                state,
                iters,
            });
        }
        Ok(SolverNets {
            train,
            train_state,
            tests,
        })
    }
}

impl SolverNets {
    /// The `transform_param.mean_file` names the `Data` layers of every net use (train and test, every phase),
    /// sorted: decode these `.binaryproto` files into [`DataOptions::mean_files`].
    pub fn mean_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::iter::once(&self.train)
            .chain(self.tests.iter().map(|t| &t.param))
            .flat_map(|net| &net.layer)
            .filter(|l| l.r#type() == "Data")
            .filter_map(|l| l.transform_param.as_ref()?.mean_file.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// The options the engine builds a net in `state` with (the net's own stages are already in `param.state`).
fn options_for(param: &NetParameter, state: &NetState) -> NetOptions {
    let own = param.state.as_ref().map_or(0, |s| s.stage.len());
    NetOptions {
        phase: state.phase(),
        level: state.level(),
        stages: state.stage.iter().skip(own).cloned().collect(),
        input_shapes: Default::default(),
        fuse_pooling: false,
    }
}

/// A fixed pruning mask for one learnable parameter: `keep[i] == false` holds weight `i` at exactly `+0.0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamMask {
    /// The layer.
    pub layer: String,
    /// The blob index within the layer (0: weights, 1: bias).
    pub index: usize,
    /// One entry per value, C order: true where the weight is trained, false where it stays 0.
    pub keep: Vec<bool>,
}

impl ParamMask {
    /// Keeps exactly the non-zero values of `weights` (a pruned blob).
    pub fn from_nonzero(layer: impl Into<String>, index: usize, weights: &[f32]) -> Self {
        ParamMask {
            layer: layer.into(),
            index,
            keep: weights.iter().map(|&w| w != 0.0).collect(),
        }
    }
}

/// Shared weights for one learnable parameter (Deep Compression's trained quantization): weight `i` is
/// `codebook[codes[i]]`; code 0 is the pruned weights' `+0.0`, never trained.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamCodebook {
    /// The layer.
    pub layer: String,
    /// The blob index within the layer (0: weights).
    pub index: usize,
    /// One code per value, C order.
    pub codes: Vec<u8>,
    /// The shared values; entry 0 is `0.0`.
    pub codebook: Vec<f32>,
}

/// A parameter's codebook while training: the centroids are what the solver updates, with their own history.
#[derive(Clone, Debug)]
struct SharedWeights {
    layer: String,
    index: usize,
    codes: Vec<u8>,
    centroids: Vec<f32>,
    /// The centroids' gradient, then their update value.
    gradient: Vec<f32>,
    history: Vec<f32>,
    history2: Vec<f32>,
    scratch: Vec<f32>,
}

impl SharedWeights {
    /// `data[i] = centroids[codes[i]]`.
    fn expand(&self, data: &mut [f32]) {
        for (w, &c) in data.iter_mut().zip(&self.codes) {
            *w = self.centroids[usize::from(c)];
        }
    }
}

/// One value of an output blob (Caffe prints one line per value).
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// The output blob.
    pub blob: String,
    /// The value's index within the blob.
    pub index: usize,
    /// The value (a test: its mean over the test batches).
    pub value: f32,
    /// The blob's loss weight (0 for outputs that are not losses).
    pub loss_weight: f32,
}

/// What one training iteration did.
#[derive(Clone, Debug, PartialEq)]
pub struct IterationReport {
    /// The iteration as Caffe numbers it in its log (`Iteration N, loss = ...`): the number of updates done before
    /// this one. After the update the solver is at `iter + 1`.
    pub iter: i32,
    /// The loss of this iteration (mean over `iter_size` forward passes).
    pub loss: f32,
    /// The loss smoothed over the last `average_loss` iterations (what Caffe displays).
    pub smoothed_loss: f32,
    /// The learning rate of this update; `None` for the forward-only pass Caffe runs after the last iteration when
    /// `display` divides `max_iter`.
    pub lr: Option<f32>,
    /// Whether Caffe would display this iteration (`display` divides `iter`).
    pub display: bool,
    /// The train net's outputs after this iteration's (last) forward pass.
    pub outputs: Vec<Output>,
}

/// What one test pass measured.
#[derive(Clone, Debug, PartialEq)]
pub struct TestReport {
    /// The solver's iteration.
    pub iter: i32,
    /// Which test net.
    pub net: usize,
    /// Each output value's mean over the `test_iter` batches (Caffe's "Test net output #k").
    pub outputs: Vec<Output>,
    /// The mean loss when `test_compute_loss` is set.
    pub loss: Option<f32>,
}

/// A snapshot as Caffe writes it: the train net (`Net::ToProto`) and the solver state.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The iteration.
    pub iter: i32,
    /// Caffe's file name for the model: `snapshot_prefix + "_iter_" + iter + ".caffemodel"`.
    pub model_filename: String,
    /// Caffe's file name for the state: `snapshot_prefix + "_iter_" + iter + ".solverstate"`.
    pub state_filename: String,
    /// The trained net (every layer of the train net, blobs with `shape` and data).
    pub model: NetParameter,
    /// iter, learned_net (= `model_filename`), history, current_step.
    pub state: SolverState,
}

/// Whether the solver should go on after an observer call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    #[default]
    Continue,
    /// Stop after this iteration, as Caffe's SIGINT action `stop` (a final snapshot is still taken when
    /// `snapshot_after_train` is set).
    Stop,
}

/// Receives progress, tests and snapshots; the library prints nothing. Every method has a do-nothing default.
pub trait Observer {
    /// After every iteration's update.
    fn on_iteration(&mut self, _report: &IterationReport) -> Control {
        Control::Continue
    }

    /// After every test pass of one test net.
    fn on_test(&mut self, _report: &TestReport) -> Control {
        Control::Continue
    }

    /// When Caffe would snapshot: every `snapshot` iterations and at the end of [`Solver::solve`]. An error stops
    /// the solver with [`Error::Observer`].
    fn on_snapshot(&mut self, _snapshot: Snapshot) -> Result<(), String> {
        Ok(())
    }
}

/// An observer that ignores everything.
impl Observer for () {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Regularization {
    L2,
    L1,
}

struct TestNet {
    net: Net,
    feeder: Box<dyn Feeder>,
    iters: usize,
}

/// A Caffe solver over a train net and its test nets.
///
/// Typical use: [`SolverNets::resolve`] the nets, [`Solver::new`] (or [`Solver::with_feeders`]), then
/// [`Solver::load_weights`], [`Solver::set_masks`] for retraining a pruned net, optionally [`Solver::restore`], and
/// [`Solver::solve`] with an [`Observer`] that draws progress and writes the [`Snapshot`]s.
///
/// # Randomness
/// `random_seed` (when >= 0) seeds the data transformers' MT19937 (mirror, random crop). Parameters not loaded
/// from weights are filled by the engine's fillers, which are deterministic per layer name and take no seed; Caffe's
/// own random draws (fillers, transformer seeds, Dropout masks) are not reproduced number for number, so bit-level
/// equality with Caffe holds from given weights on data without random transforms (as in the golden LeNet runs).
///
/// # Resuming
/// Caffe restarts its data readers at the first record when it resumes from a solver state; [`DataFeeder`] does the
/// same unless told to [`DataFeeder::skip_batches`].
pub struct Solver {
    param: SolverParameter,
    kind: SolverKind,
    hyper: Hyper,
    policy: LrPolicy,
    regularization: Regularization,
    /// The train net's layers as Caffe's Net holds them (filtered, splits inserted, phase set), for `ToProto`.
    train_layers: Vec<LayerParameter>,
    net: Net,
    feeder: Box<dyn Feeder>,
    tests: Vec<TestNet>,
    /// Caffe's `history_`: one blob per learnable parameter, twice for AdaDelta and Adam.
    history: Vec<Vec<f32>>,
    /// Shapes of the learnable parameters, in order.
    param_shapes: Vec<Vec<usize>>,
    scratch: Vec<f32>,
    masks: Vec<Option<Vec<bool>>>,
    /// Shared weights per learnable parameter (trained quantization).
    shared: Vec<Option<SharedWeights>>,
    /// The train net's definition and state, to build a teacher like it.
    train_spec: (NetParameter, NetState),
    /// Knowledge distillation, when set.
    teacher: Option<crate::distill::Teacher>,
    iter: i32,
    current_step: i32,
    losses: Vec<f32>,
    smoothed_loss: f32,
}

impl std::fmt::Debug for Solver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Solver")
            .field("kind", &self.kind)
            .field("policy", &self.policy)
            .field("iter", &self.iter)
            .field("net", &self.net)
            .finish()
    }
}

fn build_net(
    param: &NetParameter,
    state: &NetState,
    feeder: &dyn Feeder,
    label: &str,
) -> Result<(Net, Vec<LayerParameter>), Error> {
    let mut options = options_for(param, state);
    for (blob, shape) in feeder.input_shapes() {
        options = options.with_input_shape(&blob, &shape);
    }
    let net = Net::new(param, &options).map_err(|e| Error::engine(label, e))?;
    let filtered =
        engine::graph::filter_layers(param, &net_state(param, &options)).map_err(|e| Error::engine(label, e))?;
    let layers = engine::graph::insert_splits(&filtered).map_err(|e| Error::engine(label, e))?;
    Ok((net, layers))
}

/// The weights of every layer with parameters, as plain data.
fn net_weights(net: &Net) -> Vec<LayerWeights> {
    let names: Vec<String> = net.layers().map(|l| l.name.clone()).collect();
    names
        .iter()
        .filter_map(|name| {
            let params = net.params(name)?;
            (!params.is_empty()).then(|| LayerWeights {
                name: name.clone(),
                blobs: params
                    .iter()
                    .map(|t| WeightBlob::new(t.shape().iter().map(|&d| d as i64).collect(), t.data().to_vec()))
                    .collect(),
            })
        })
        .collect()
}

fn blob_proto(shape: &[usize], data: &[f32]) -> BlobProto {
    BlobProto {
        shape: Some(BlobShape {
            dim: shape.iter().map(|&d| d as i64).collect(),
        }),
        data: data.to_vec(),
        ..Default::default()
    }
}

fn outputs_of(net: &Net) -> Vec<Output> {
    let mut weights = std::collections::HashMap::new();
    for layer in net.layers() {
        for (top, &w) in layer.tops.iter().zip(&layer.loss_weights) {
            weights.insert(top.clone(), w);
        }
    }
    let mut out = Vec::new();
    for blob in net.outputs() {
        let loss_weight = weights.get(blob).copied().unwrap_or(0.0);
        if let Some(t) = net.blob(blob) {
            for (index, &value) in t.data().iter().enumerate() {
                out.push(Output {
                    blob: blob.to_string(),
                    index,
                    value,
                    loss_weight,
                });
            }
        }
    }
    out
}

impl Solver {
    /// A solver whose `Data` layers read their sources through [`DataFeeder`]s (TRAIN phase for the train net, TEST
    /// for the test nets). `random_seed >= 0` seeds the transformers unless `data.seed` is set.
    pub fn new(param: &SolverParameter, nets: SolverNets, data: &DataOptions) -> Result<Self, Error> {
        let mut data = data.clone();
        if data.seed.is_none() && param.random_seed() >= 0 {
            data.seed = Some(param.random_seed() as u32);
        }
        let train: Box<dyn Feeder> = Box::new(DataFeeder::new(&nets.train, &nets.train_state, &data)?);
        let mut tests: Vec<Box<dyn Feeder>> = Vec::new();
        for spec in &nets.tests {
            tests.push(Box::new(DataFeeder::new(&spec.param, &spec.state, &data)?));
        }
        Self::with_feeders(param, nets, train, tests)
    }

    /// A solver whose nets are fed by the given feeders (one per test net, in order). Checks the solver
    /// parameters, builds the nets (input shapes from the feeders) and zeroes the history (Caffe's `PreSolve`).
    /// Parameters start as the nets' fillers (or blobs embedded in the definitions) leave them; load trained
    /// weights with [`Solver::load_weights`].
    pub fn with_feeders(
        param: &SolverParameter,
        nets: SolverNets,
        feeder: Box<dyn Feeder>,
        test_feeders: Vec<Box<dyn Feeder>>,
    ) -> Result<Self, Error> {
        let kind = SolverKind::from_param(param)?;
        let hyper = Hyper::from_param(param, kind)?;
        let policy = LrPolicy::from_param(param)?;
        let regularization = match param.regularization_type() {
            "L2" => Regularization::L2,
            "L1" => Regularization::L1,
            other => return Err(Error::UnknownRegularization(other.to_string())),
        };
        if param.average_loss() < 1 {
            return Err(Error::bad(
                "average_loss",
                format!("{} must be >= 1", param.average_loss()),
            ));
        }
        if param.iter_size() < 1 {
            return Err(Error::bad("iter_size", format!("{} must be >= 1", param.iter_size())));
        }
        for (name, value) in [
            ("display", param.display()),
            ("test_interval", param.test_interval()),
            ("snapshot", param.snapshot()),
        ] {
            if value < 0 {
                return Err(Error::bad(name, format!("{value} must be >= 0")));
            }
        }
        if test_feeders.len() != nets.tests.len() {
            return Err(Error::NetSpec(format!(
                "{} test feeders given for {} test nets",
                test_feeders.len(),
                nets.tests.len()
            )));
        }
        let (mut net, train_layers) = build_net(&nets.train, &nets.train_state, feeder.as_ref(), "train")?;
        let mut tests = Vec::new();
        for (i, (spec, feeder)) in nets.tests.iter().zip(test_feeders).enumerate() {
            let (net, _) = build_net(&spec.param, &spec.state, feeder.as_ref(), &format!("test #{i}"))?;
            tests.push(TestNet {
                net,
                feeder,
                iters: spec.iters,
            });
        }
        let param_shapes: Vec<Vec<usize>> = net
            .learnable_params_mut()
            .iter()
            .map(|p| p.data.shape().to_vec())
            .collect();
        let sizes: Vec<usize> = param_shapes.iter().map(|s| s.iter().product()).collect();
        let history = (0..kind.history_sets())
            .flat_map(|_| sizes.iter().map(|&n| vec![0.0; n]))
            .collect();
        let scratch = vec![0.0; sizes.iter().copied().max().unwrap_or(0)];
        Ok(Solver {
            param: param.clone(),
            train_spec: (nets.train.clone(), nets.train_state.clone()),
            teacher: None,
            kind,
            hyper,
            policy,
            regularization,
            train_layers,
            masks: vec![None; sizes.len()],
            shared: vec![None; sizes.len()],
            net,
            feeder,
            tests,
            history,
            param_shapes,
            scratch,
            iter: 0,
            current_step: 0,
            losses: Vec::new(),
            smoothed_loss: 0.0,
        })
    }

    /// The solver type.
    pub fn kind(&self) -> SolverKind {
        self.kind
    }

    /// The learning-rate policy.
    pub fn policy(&self) -> &LrPolicy {
        &self.policy
    }

    /// The solver parameters.
    pub fn param(&self) -> &SolverParameter {
        &self.param
    }

    /// Updates done so far (Caffe's `iter_`).
    pub fn iter(&self) -> i32 {
        self.iter
    }

    /// Caffe's `current_step_` (step and multistep policies).
    pub fn current_step(&self) -> i32 {
        self.current_step
    }

    /// The smoothed loss of the current [`Solver::step`] / [`Solver::solve`] run.
    pub fn smoothed_loss(&self) -> f32 {
        self.smoothed_loss
    }

    /// The train net.
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// The train net, writable (e.g. to set weights by hand; keep masked weights at zero).
    pub fn net_mut(&mut self) -> &mut Net {
        &mut self.net
    }

    /// The test nets (their weights are the train net's as of the last test).
    pub fn test_nets(&self) -> impl Iterator<Item = &Net> {
        self.tests.iter().map(|t| &t.net)
    }

    /// Caffe's history blobs in learnable-parameter order (for AdaDelta and Adam, all first-moment blobs, then all
    /// second ones).
    pub fn history(&self) -> &[Vec<f32>] {
        &self.history
    }

    /// Copies trained weights into the train net by layer name (Caffe's `CopyTrainedLayersFrom`), then re-applies
    /// the masks.
    pub fn load_weights(&mut self, weights: &[LayerWeights]) -> Result<CopyReport, Error> {
        let report = self.net.copy_from(weights).map_err(|e| Error::engine("train", e))?;
        self.apply_masks(true);
        Ok(report)
    }

    /// [`Solver::load_weights`] from a decoded model (e.g. a snapshot's `model`; V1 models must be upgraded first).
    pub fn load_net_param(&mut self, model: &NetParameter) -> Result<CopyReport, Error> {
        let weights: Vec<LayerWeights> = model
            .layer
            .iter()
            .map(|l| LayerWeights {
                name: l.name().to_string(),
                blobs: l.blobs.iter().map(WeightBlob::from_proto).collect(),
            })
            .collect();
        self.load_weights(&weights)
    }

    /// Sets fixed masks (replacing earlier ones); parameters without a mask train freely. Masked weights are set to
    /// `+0.0` now and after every update; their gradient is zeroed before clipping and regularization, and their
    /// history and update value after each update, so they stay exactly `+0.0` and take no part in the gradient
    /// norm.
    pub fn set_masks(&mut self, masks: &[ParamMask]) -> Result<(), Error> {
        let mut new = vec![None; self.masks.len()];
        {
            let params = self.net.learnable_params_mut();
            for mask in masks {
                let Some(position) = params
                    .iter()
                    .position(|p| p.layer == mask.layer && p.index == mask.index)
                else {
                    return Err(Error::MaskTarget {
                        layer: mask.layer.clone(),
                        index: mask.index,
                    });
                };
                let expected = params[position].data.len();
                if mask.keep.len() != expected {
                    return Err(Error::MaskLength {
                        layer: mask.layer.clone(),
                        index: mask.index,
                        expected,
                        found: mask.keep.len(),
                    });
                }
                new[position] = Some(mask.keep.clone());
            }
        }
        self.masks = new;
        self.apply_masks(true);
        Ok(())
    }

    /// Shares weights (trained quantization, replacing earlier codebooks): each named parameter becomes
    /// `codebook[codes]` now and after every update. An update sums the gradients of the weights sharing a value
    /// (Han et al.'s rule), adds the value's weight decay, and moves the value by the solver's own rule with its own
    /// history (momentum, AdaGrad, Adam, ...), scaled by the parameter's `lr_mult`; code 0 (the pruned weights' 0.0)
    /// never moves. The codebooks' history is not part of snapshots.
    pub fn set_codebooks(&mut self, codebooks: &[ParamCodebook]) -> Result<(), Error> {
        let sets = self.kind.history_sets();
        let mut new = vec![None; self.shared.len()];
        {
            let mut params = self.net.learnable_params_mut();
            for book in codebooks {
                let problem = |problem: String| Error::Codebook {
                    layer: book.layer.clone(),
                    index: book.index,
                    problem,
                };
                let Some(position) = params
                    .iter()
                    .position(|p| p.layer == book.layer && p.index == book.index)
                else {
                    return Err(problem("the train net has no such learnable parameter".into()));
                };
                let expected = params[position].data.len();
                if book.codes.len() != expected {
                    return Err(problem(format!("{} codes for {expected} values", book.codes.len())));
                }
                if book.codebook.first() != Some(&0.0) {
                    return Err(problem("entry 0 must be 0.0 (the pruned weights)".into()));
                }
                let k = book.codebook.len();
                if let Some(code) = book.codes.iter().find(|&&c| usize::from(c) >= k) {
                    return Err(problem(format!("code {code} past the codebook's {k} entries")));
                }
                let shared = SharedWeights {
                    layer: book.layer.clone(),
                    index: book.index,
                    codes: book.codes.clone(),
                    centroids: book.codebook.clone(),
                    gradient: vec![0.0; k],
                    history: vec![0.0; k],
                    history2: vec![0.0; if sets > 1 { k } else { 0 }],
                    scratch: vec![0.0; k],
                };
                shared.expand(params[position].data.data_mut());
                new[position] = Some(shared);
            }
        }
        self.shared = new;
        Ok(())
    }

    /// Knowledge distillation from a teacher: a copy of the train net holding `weights` (copied by layer name, as
    /// [`Solver::load_weights`] does) runs on every batch, and a soft loss on `distillation.blob` joins the net's
    /// own (see [`Distillation`]). The reported loss includes it. `None` stops distilling.
    pub fn set_teacher(&mut self, teacher: Option<(&[LayerWeights], Distillation)>) -> Result<(), Error> {
        let Some((weights, spec)) = teacher else {
            self.teacher = None;
            return Ok(());
        };
        if !(spec.temperature > 0.0 && spec.temperature.is_finite() && spec.weight.is_finite() && spec.weight >= 0.0) {
            return Err(Error::bad(
                "distillation",
                format!(
                    "temperature {} and weight {} must be positive numbers",
                    spec.temperature, spec.weight
                ),
            ));
        }
        let (param, state) = &self.train_spec;
        let (mut net, _) = build_net(param, state, self.feeder.as_ref(), "teacher")?;
        net.copy_from(weights).map_err(|e| Error::engine("teacher", e))?;
        if net.blob(&spec.blob).is_none() {
            return Err(Error::NetSpec(format!(
                "distillation: the train net has no blob '{}'",
                spec.blob
            )));
        }
        self.teacher = Some(crate::distill::Teacher {
            net,
            spec,
            gradient: Vec::new(),
        });
        Ok(())
    }

    /// The codebooks as they stand (after training: the fine-tuned shared values).
    pub fn codebooks(&self) -> Vec<ParamCodebook> {
        self.shared
            .iter()
            .flatten()
            .map(|s| ParamCodebook {
                layer: s.layer.clone(),
                index: s.index,
                codes: s.codes.clone(),
                codebook: s.centroids.clone(),
            })
            .collect()
    }

    /// Zeroes masked entries of the diffs and history, and of the data when `data` is set.
    fn apply_masks(&mut self, data: bool) {
        let n = self.masks.len();
        let mut params = self.net.learnable_params_mut();
        for (i, (param, mask)) in params.iter_mut().zip(&self.masks).enumerate() {
            let Some(keep) = mask else { continue };
            let zero = |values: &mut [f32]| {
                for (v, &k) in values.iter_mut().zip(keep) {
                    if !k {
                        *v = 0.0;
                    }
                }
            };
            zero(param.diff.data_mut());
            if data {
                zero(param.data.data_mut());
            }
            for set in 0..self.kind.history_sets() {
                zero(&mut self.history[set * n + i]);
            }
        }
    }

    /// Runs `iters` iterations (Caffe's `Solver::Step`): per iteration, a test pass when due, `iter_size` forward and
    /// backward passes, the smoothed loss, the update, and a snapshot when due. Returns [`Control::Stop`] when an
    /// observer asked to stop.
    pub fn step(&mut self, iters: i32, observer: &mut dyn Observer) -> Result<Control, Error> {
        let start_iter = self.iter;
        let stop_iter = self.iter + iters;
        let average_loss = self.param.average_loss() as usize;
        self.losses.clear();
        self.smoothed_loss = 0.0;
        let test_interval = self.param.test_interval();
        let display = self.param.display();
        let iter_size = self.param.iter_size();
        while self.iter < stop_iter {
            self.net.clear_param_diffs();
            if test_interval > 0
                && self.iter % test_interval == 0
                && (self.iter > 0 || self.param.test_initialization())
                && self.test_all_inner(observer)? == Control::Stop
            {
                return Ok(Control::Stop);
            }
            let mut loss = 0.0f32;
            for _ in 0..iter_size {
                self.feeder.feed(&mut self.net)?;
                loss += match &mut self.teacher {
                    None => self.net.forward_backward().map_err(|e| Error::engine("train", e))?,
                    Some(teacher) => {
                        let hard = self.net.forward().map_err(|e| Error::engine("train", e))?;
                        let soft = teacher.soft_loss(&self.net)?;
                        self.net
                            .backward_with(&[(&teacher.spec.blob, &teacher.gradient)])
                            .map_err(|e| Error::engine("train", e))?;
                        hard + soft
                    }
                };
            }
            loss /= iter_size as f32;
            self.update_smoothed_loss(loss, start_iter, average_loss);
            let rate = self.apply_update();
            let report = IterationReport {
                iter: self.iter,
                loss,
                smoothed_loss: self.smoothed_loss,
                lr: Some(rate),
                display: display > 0 && self.iter % display == 0,
                outputs: outputs_of(&self.net),
            };
            self.iter += 1;
            let control = observer.on_iteration(&report);
            let snapshot = self.param.snapshot();
            if snapshot > 0 && self.iter % snapshot == 0 {
                observer.on_snapshot(self.snapshot()).map_err(Error::Observer)?;
            }
            if control == Control::Stop {
                return Ok(Control::Stop);
            }
        }
        Ok(Control::Continue)
    }

    /// Trains to `max_iter` from the current iteration (Caffe's `Solver::Solve`; call [`Solver::restore`] first to
    /// resume): [`Solver::step`], a final snapshot when `snapshot_after_train` is set and the last one was not just
    /// taken, then (unless stopped) Caffe's extra forward pass for the display and a final test when due.
    pub fn solve(&mut self, observer: &mut dyn Observer) -> Result<Control, Error> {
        let start_iter = self.iter;
        let control = self.step(self.param.max_iter() - self.iter, observer)?;
        let snapshot = self.param.snapshot();
        if self.param.snapshot_after_train() && (snapshot == 0 || self.iter % snapshot != 0) {
            observer.on_snapshot(self.snapshot()).map_err(Error::Observer)?;
        }
        if control == Control::Stop {
            return Ok(control);
        }
        let display = self.param.display();
        if display > 0 && self.iter % display == 0 {
            self.feeder.feed(&mut self.net)?;
            let loss = self.net.forward().map_err(|e| Error::engine("train", e))?;
            self.update_smoothed_loss(loss, start_iter, self.param.average_loss() as usize);
            let report = IterationReport {
                iter: self.iter,
                loss,
                smoothed_loss: self.smoothed_loss,
                lr: None,
                display: true,
                outputs: outputs_of(&self.net),
            };
            if observer.on_iteration(&report) == Control::Stop {
                return Ok(Control::Stop);
            }
        }
        let interval = self.param.test_interval();
        if interval > 0 && self.iter % interval == 0 {
            return self.test_all_inner(observer);
        }
        Ok(Control::Continue)
    }

    /// Caffe's `UpdateSmoothedLoss`.
    fn update_smoothed_loss(&mut self, loss: f32, start_iter: i32, average_loss: usize) {
        if self.losses.len() < average_loss {
            self.losses.push(loss);
            let size = self.losses.len() as f32;
            self.smoothed_loss = (self.smoothed_loss * (size - 1.0) + loss) / size;
        } else {
            let idx = (self.iter - start_iter) as usize % average_loss;
            self.smoothed_loss += (loss - self.losses[idx]) / average_loss as f32;
            self.losses[idx] = loss;
        }
    }

    /// Tests every test net once (Caffe's `TestAll`), returning a report per net.
    pub fn test_all(&mut self) -> Result<Vec<TestReport>, Error> {
        struct Collect(Vec<TestReport>);
        impl Observer for Collect {
            fn on_test(&mut self, report: &TestReport) -> Control {
                self.0.push(report.clone());
                Control::Continue
            }
        }
        let mut collect = Collect(Vec::new());
        self.test_all_inner(&mut collect)?;
        Ok(collect.0)
    }

    fn test_all_inner(&mut self, observer: &mut dyn Observer) -> Result<Control, Error> {
        if self.tests.is_empty() {
            return Ok(Control::Continue);
        }
        let weights = net_weights(&self.net);
        for id in 0..self.tests.len() {
            let report = self.test(id, &weights)?;
            if observer.on_test(&report) == Control::Stop {
                return Ok(Control::Stop);
            }
        }
        Ok(Control::Continue)
    }

    /// Caffe's `Test(test_net_id)`: the train net's weights shared into the test net, `test_iter` forward passes,
    /// each output value summed in `float` and divided by `test_iter`.
    fn test(&mut self, id: usize, weights: &[LayerWeights]) -> Result<TestReport, Error> {
        let label = format!("test #{id}");
        let compute_loss = self.param.test_compute_loss();
        let test = &mut self.tests[id];
        test.net.copy_from(weights).map_err(|e| Error::engine(&label, e))?;
        let mut scores: Vec<Output> = Vec::new();
        let mut loss = 0.0f32;
        for i in 0..test.iters {
            test.feeder.feed(&mut test.net)?;
            let iter_loss = test.net.forward().map_err(|e| Error::engine(&label, e))?;
            if compute_loss {
                loss += iter_loss;
            }
            let outputs = outputs_of(&test.net);
            if i == 0 {
                scores = outputs;
            } else {
                for (score, output) in scores.iter_mut().zip(outputs) {
                    score.value += output.value;
                }
            }
        }
        let iters = test.iters as f32;
        for score in &mut scores {
            score.value /= iters;
        }
        Ok(TestReport {
            iter: self.iter,
            net: id,
            outputs: scores,
            loss: compute_loss.then(|| loss / iters),
        })
    }

    /// Caffe's `SGDSolver::ApplyUpdate`; returns the learning rate used.
    fn apply_update(&mut self) -> f32 {
        let rate = self.policy.rate(self.iter, &mut self.current_step);
        let n = self.masks.len();
        let iter = self.iter;
        let iter_size = self.param.iter_size();
        let weight_decay = self.param.weight_decay();
        let clip = self.param.clip_gradients();
        let (kind, hyper, regularization) = (self.kind, self.hyper, self.regularization);
        let mut params = self.net.learnable_params_mut();
        // Masked gradients are zero before anything reads them.
        for (param, mask) in params.iter_mut().zip(&self.masks) {
            if let Some(keep) = mask {
                for (d, &k) in param.diff.data_mut().iter_mut().zip(keep) {
                    if !k {
                        *d = 0.0;
                    }
                }
            }
        }
        // ClipGradients: by the global L2 norm of all diffs, before Normalize (Caffe's order).
        if clip >= 0.0 {
            let sumsq: f32 = params
                .iter()
                .map(|p| p.diff.data().iter().map(|&d| f64::from(d) * f64::from(d)).sum::<f64>() as f32)
                .sum();
            let norm = sumsq.sqrt();
            if norm > clip {
                let scale = clip / norm;
                for p in params.iter_mut() {
                    p.diff.data_mut().iter_mut().for_each(|d| *d *= scale);
                }
            }
        }
        let (first, second) = self.history.split_at_mut(n);
        for (i, param) in params.iter_mut().enumerate() {
            let diff = param.diff.data_mut();
            let data = param.data.data();
            // Normalize
            if iter_size != 1 {
                let norm = 1.0f32 / iter_size as f32;
                diff.iter_mut().for_each(|d| *d *= norm);
            }
            let local_decay = weight_decay * param.decay_mult;
            let local_rate = rate * param.lr_mult;
            if let Some(shared) = &mut self.shared[i] {
                // Trained quantization: one gradient per shared value, the sum over its weights; then the solver's
                // rule on the values; the weights are re-derived after the update.
                let SharedWeights {
                    codes,
                    centroids,
                    layer: _,
                    index: _,
                    gradient,
                    history,
                    history2,
                    scratch,
                } = shared;
                gradient.fill(0.0);
                for (&c, &d) in codes.iter().zip(diff.iter()) {
                    gradient[usize::from(c)] += d;
                }
                gradient[0] = 0.0;
                if local_decay != 0.0 {
                    for (g, &c) in gradient.iter_mut().zip(centroids.iter()).skip(1) {
                        *g += match regularization {
                            Regularization::L2 => local_decay * c,
                            Regularization::L1 => {
                                local_decay * (f32::from(u8::from(0.0 < c)) - f32::from(u8::from(c < 0.0)))
                            }
                        };
                    }
                }
                compute_update(kind, &hyper, local_rate, iter, gradient, history, history2, scratch);
                for (c, &u) in centroids.iter_mut().zip(gradient.iter()).skip(1) {
                    *c -= u;
                }
                diff.fill(0.0);
                continue;
            }
            // Regularize
            if local_decay != 0.0 {
                match regularization {
                    Regularization::L2 => {
                        for (d, &w) in diff.iter_mut().zip(data) {
                            *d += local_decay * w;
                        }
                    }
                    Regularization::L1 => {
                        for (d, &w) in diff.iter_mut().zip(data) {
                            // caffe_cpu_sign: (0 < x) - (x < 0)
                            let sign = f32::from(u8::from(0.0 < w)) - f32::from(u8::from(w < 0.0));
                            *d += local_decay * sign;
                        }
                    }
                }
            }
            // ComputeUpdateValue
            let history2: &mut [f32] = match second.get_mut(i) {
                Some(h) => h,
                None => &mut [],
            };
            let scratch = &mut self.scratch[..diff.len()];
            compute_update(kind, &hyper, local_rate, iter, diff, &mut first[i], history2, scratch);
        }
        // Net::Update: data -= diff.
        for param in params.iter_mut() {
            let diff = param.diff.data();
            for (w, &d) in param.data.data_mut().iter_mut().zip(diff) {
                *w -= d;
            }
        }
        for (param, shared) in params.iter_mut().zip(&self.shared) {
            if let Some(shared) = shared {
                shared.expand(param.data.data_mut());
            }
        }
        drop(params);
        self.apply_masks(true);
        rate
    }

    /// The train net as Caffe's `Net::ToProto` writes it (without diffs): the net name and every layer of the train
    /// net as built (phase set, inserted splits included, and what Caffe's layer setup adds to its parameters:
    /// `loss_weight: 1` on loss layers that set none, BatchNorm's `lr_mult: 0` specs), each with its current
    /// parameter blobs (`shape` and `data`).
    pub fn to_proto(&self) -> NetParameter {
        let layer = self
            .train_layers
            .iter()
            .map(|l| {
                let mut l = l.clone();
                if l.phase.is_none() {
                    l.phase = Some(self.net.phase() as i32);
                }
                // LossLayer::LayerSetUp gives a loss layer without loss_weight a weight of 1.
                if l.r#type().ends_with("Loss") && l.loss_weight.is_empty() {
                    l.loss_weight.push(1.0);
                }
                let params = self.net.params(l.name()).unwrap_or(&[]);
                if l.r#type() == "BatchNorm" {
                    while l.param.len() < params.len() {
                        l.param.push(ParamSpec {
                            lr_mult: Some(0.0),
                            ..Default::default()
                        });
                    }
                }
                l.blobs = params
                    .iter()
                    .map(|t: &Tensor| blob_proto(t.shape(), t.data()))
                    .collect();
                l
            })
            .collect();
        NetParameter {
            name: Some(self.net.name().to_string()),
            layer,
            ..Default::default()
        }
    }

    /// Caffe's snapshot file name for `extension` (`snapshot_prefix + "_iter_" + iter + extension`).
    pub fn snapshot_filename(&self, extension: &str) -> String {
        format!("{}_iter_{}{}", self.param.snapshot_prefix(), self.iter, extension)
    }

    /// The current solver state (`SnapshotSolverStateToBinaryProto`), naming `learned_net`.
    pub fn state(&self, learned_net: &str) -> SolverState {
        let shapes = &self.param_shapes;
        let n = shapes.len().max(1);
        SolverState {
            iter: Some(self.iter),
            learned_net: Some(learned_net.to_string()),
            history: self
                .history
                .iter()
                .enumerate()
                .map(|(i, h)| blob_proto(shapes.get(i % n).map_or(&[][..], |s| s), h))
                .collect(),
            current_step: Some(self.current_step),
        }
    }

    /// A snapshot as Caffe's `Snapshot()` would write it now.
    pub fn snapshot(&self) -> Snapshot {
        let model_filename = self.snapshot_filename(".caffemodel");
        Snapshot {
            iter: self.iter,
            state_filename: self.snapshot_filename(".solverstate"),
            model: self.to_proto(),
            state: self.state(&model_filename),
            model_filename,
        }
    }

    /// Restores iteration, current step and history from a solver state (Caffe's `RestoreSolverStateFromBinaryProto`;
    /// the weights of `learned_net` are the caller's to load with [`Solver::load_net_param`]). The history must hold
    /// one blob per learnable parameter (two for AdaDelta and Adam), each of its parameter's shape (legacy 4-D
    /// shapes accepted as Caffe accepts them).
    pub fn restore(&mut self, state: &SolverState) -> Result<(), Error> {
        if state.history.len() != self.history.len() {
            return Err(Error::State(format!(
                "{} history blobs, but this {} solver over this net has {}",
                state.history.len(),
                self.kind.caffe_name(),
                self.history.len()
            )));
        }
        let shapes = &self.param_shapes;
        let n = shapes.len().max(1);
        let mut history = Vec::with_capacity(self.history.len());
        for (i, blob) in state.history.iter().enumerate() {
            let blob = WeightBlob::from_proto(blob);
            let shape = &shapes[i % n];
            if !engine::shape_equals(shape, &blob.shape, blob.legacy) || blob.data.len() != self.history[i].len() {
                return Err(Error::State(format!(
                    "history blob {i} has shape {:?} ({} values), the parameter has shape {shape:?}",
                    blob.shape,
                    blob.data.len()
                )));
            }
            history.push(blob.data);
        }
        self.history = history;
        self.iter = state.iter();
        self.current_step = state.current_step();
        self.apply_masks(false);
        Ok(())
    }
}
