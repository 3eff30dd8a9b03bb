//! `caffe-prune train` (what `caffe train` does) and `caffe-prune retrain` (stage 4 of Deep Compression: prune,
//! then train with the pruned weights held at exactly zero). Glue over the `train` crate: reading the solver and
//! nets, finding the data, a progress bar, writing snapshots and the retrained model.

use crate::eval;
use crate::plot::{LineChart, Series};
use anyhow::{bail, Context, Result};
use caffe_proto::{NetParameter, SolverParameter};
use caffemodel::text::{self, Schema};
use caffemodel::ModelFile;
use comfy_table::{presets::UTF8_FULL_CONDENSED, CellAlignment, Table};
use indicatif::ProgressBar;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use train::{Control, DataOptions, IterationReport, Observer, ParamMask, Snapshot, Solver, SolverNets, TestReport};

/// Where the solver's nets read their data.
#[derive(clap::Args, Debug, Clone)]
pub struct DataArgs {
    /// Folder that relative Data-layer sources are resolved against (default: the first of the working
    /// directory, the net's folder and its parents where every source exists).
    #[arg(long, value_name = "DIR")]
    pub data_root: Option<PathBuf>,
    /// Replaces the TRAIN Data layer's source: a Caffe LMDB or LevelDB folder, or an IDX images file (labels found by name:
    /// images-idx3 -> labels-idx1); for an ImageData layer, a list of `path label` lines; for an HDF5Data layer, a
    /// list of .h5 files.
    #[arg(long, value_name = "PATH")]
    pub train_data: Option<PathBuf>,
    /// Replaces the TEST Data layers' source, as --train-data.
    #[arg(long, value_name = "PATH")]
    pub test_data: Option<PathBuf>,
    /// Adds a test net (a TEST-phase net prototxt), for a solver that has none or as one more.
    #[arg(long, value_name = "NET.prototxt", requires = "test_iter")]
    pub test_net: Option<PathBuf>,
    /// Batches the --test-net runs per test (its Data layer's batch_size times this should cover the test set).
    #[arg(long, value_name = "N", requires = "test_net", value_parser = clap::value_parser!(i32).range(1..))]
    pub test_iter: Option<i32>,
    /// Read the prototxts with this caffe.proto (a fork's schema).
    #[arg(long, value_name = "PATH")]
    pub proto: Option<PathBuf>,
}

/// Knowledge distillation from a teacher model while training.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DistillArgs {
    /// Distil at temperature T (Hinton et al.): a teacher (by default the model given as the starting weights)
    /// runs on every batch and a second loss pulls the net's softened class probabilities towards the teacher's.
    /// On a small training set the soft targets recover much more than the hard labels.
    #[arg(long, value_name = "T")]
    pub distill: Option<f32>,
    /// Weight of the soft loss beside the net's own loss.
    #[arg(long, value_name = "W", default_value_t = 1.0, requires = "distill")]
    pub distill_weight: f32,
    /// The teacher (default: the starting weights, e.g. the dense model before pruning).
    #[arg(long, value_name = "T.caffemodel", requires = "distill")]
    pub teacher: Option<PathBuf>,
    /// The logits blob the soft loss compares (default: the first bottom of the train net's SoftmaxWithLoss).
    #[arg(long, value_name = "BLOB", requires = "distill")]
    pub distill_blob: Option<String>,
}

impl DistillArgs {
    /// Sets the solver's teacher when --distill is given; `default_teacher` is used without --teacher.
    pub(crate) fn apply(&self, solver: &mut Solver, default_teacher: &Path) -> Result<()> {
        let Some(temperature) = self.distill else {
            return Ok(());
        };
        let blob = match &self.distill_blob {
            Some(blob) => blob.clone(),
            None => solver
                .net()
                .layers()
                .find(|l| l.layer_type == "SoftmaxWithLoss")
                .and_then(|l| l.bottoms.first().cloned())
                .context(
                    "--distill: the train net has no SoftmaxWithLoss layer; name the logits with --distill-blob",
                )?,
        };
        let teacher = self.teacher.as_deref().unwrap_or(default_teacher);
        let weights = weights_of(teacher)?;
        solver
            .set_teacher(Some((
                &weights,
                train::Distillation {
                    blob,
                    temperature,
                    weight: self.distill_weight,
                },
            )))
            .with_context(|| format!("--distill with teacher {}", teacher.display()))
    }
}

/// `caffe-prune train`.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// The solver (.prototxt); its net paths are tried as given, then relative to the solver's folder.
    #[arg(long, value_name = "S.prototxt")]
    pub solver: PathBuf,
    /// Start from these weights (copied by layer name, as `caffe train --weights`).
    #[arg(long, value_name = "INIT.caffemodel", conflicts_with = "resume")]
    pub weights: Option<PathBuf>,
    /// Resume from a solver state (its learned_net weights, iteration, history).
    #[arg(long, value_name = "STATE.solverstate")]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Print the summary (tests, final loss, speed) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `caffe-prune retrain`.
#[derive(clap::Args, Debug, Clone)]
pub struct RetrainArgs {
    /// The solver (.prototxt). With a test net (test_iter, or --test-net) the rounds report its accuracy; the
    /// training loss is reported either way.
    #[arg(long, value_name = "S.prototxt")]
    pub solver: PathBuf,
    /// The trained model to prune and retrain.
    #[arg(long, value_name = "W.caffemodel")]
    pub weights: PathBuf,
    /// Final per-layer keep fractions, e.g. conv1=0.3,conv2=0.1,ip1=0.01,ip2=0.2.
    #[arg(long, value_name = "LAYER=T,...", value_delimiter = ',', required = true)]
    pub keep: Vec<String>,
    /// Rounds of training; the test accuracy is measured after each.
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    /// Solver iterations per round.
    #[arg(long, default_value_t = 500)]
    pub steps: i32,
    /// Multiplies the solver's base_lr (retraining usually wants a smaller rate than training from scratch).
    #[arg(long, default_value_t = 1.0)]
    pub lr_scale: f32,
    /// Iterative pruning: the keep fraction of every layer for the first rounds, one value per round (e.g.
    /// 0.5,0.25,0.1); a layer never keeps less than its final --keep, and later rounds use the final fractions.
    #[arg(long, value_name = "T,...", value_delimiter = ',')]
    pub schedule: Vec<f64>,
    /// The tutorial's variant for comparison: each round trains densely with a fresh solver (pruned weights grow
    /// back), then prunes again.
    #[arg(long, conflicts_with = "schedule")]
    pub regrow: bool,
    /// The retrained model: a copy of --weights with every trained blob's values replaced.
    #[arg(short, long, value_name = "OUT.caffemodel")]
    pub output: PathBuf,
    #[command(flatten)]
    pub distill: DistillArgs,
    /// Draw test accuracy per round (SVG or PNG, by the file's extension).
    #[arg(long, value_name = "FILE.svg|png")]
    pub plot: Option<PathBuf>,
    /// Print the rounds as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data: DataArgs,
}

/// Everything a solver needs, read from the files.
pub(crate) struct Setup {
    param: SolverParameter,
    nets: SolverNets,
    data: DataOptions,
}

/// A Data, ImageData or HDF5Data layer: name, source, phase-is-train, type.
type DataLayer = (String, Option<String>, bool, &'static str);

/// The Data, ImageData and HDF5Data layers of the nets as they will be built.
fn data_layers(nets: &SolverNets) -> Result<Vec<DataLayer>> {
    let mut out = Vec::new();
    let mut add = |param: &NetParameter, state: &caffe_proto::NetState, train: bool| -> Result<()> {
        for layer in engine::graph::filter_layers(param, state)? {
            match layer.r#type() {
                "Data" => {
                    let source = layer.data_param.as_ref().and_then(|p| p.source.clone());
                    out.push((layer.name().to_string(), source, train, "Data"));
                }
                "ImageData" => {
                    let source = layer.image_data_param.as_ref().and_then(|p| p.source.clone());
                    out.push((layer.name().to_string(), source, train, "ImageData"));
                }
                "HDF5Data" => {
                    let source = layer.hdf5_data_param.as_ref().and_then(|p| p.source.clone());
                    out.push((layer.name().to_string(), source, train, "HDF5Data"));
                }
                _ => {}
            }
        }
        Ok(())
    };
    add(&nets.train, &nets.train_state, true)?;
    for test in &nets.tests {
        add(&test.param, &test.state, false)?;
    }
    Ok(out)
}

impl Setup {
    pub(crate) fn read(solver: &Path, data: &DataArgs) -> Result<Setup> {
        let schema = match &data.proto {
            Some(p) => Schema::from_proto_file(p)?,
            None => Schema::builtin(),
        };
        let mut param = text::read_solver(solver, &schema)?;
        if caffemodel::upgrade::solver_needs_upgrade(&param) {
            caffemodel::upgrade::upgrade_solver(&mut param)
                .with_context(|| format!("{}: upgrade", solver.display()))?;
        }
        // Caffe's UpgradeSnapshotPrefixProperty: no prefix means the solver file's name without extension; a folder
        // means that name inside it.
        let stem = solver.with_extension("");
        match param.snapshot_prefix.as_deref() {
            None => param.snapshot_prefix = Some(stem.display().to_string()),
            Some(dir) if Path::new(dir).is_dir() => {
                let name = stem
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                param.snapshot_prefix = Some(Path::new(dir).join(name).display().to_string());
            }
            Some(_) => {}
        }
        if let (Some(net), Some(iter)) = (&data.test_net, data.test_iter) {
            // As the solver's own test_net (paths as given, else beside the solver), with its test_iter.
            if !param.test_net_param.is_empty() || param.test_state.len() > param.test_net.len() {
                bail!(
                    "{}: --test-net cannot be added to a solver with inline test nets or test states",
                    solver.display()
                );
            }
            param.test_net.push(net.display().to_string());
            param.test_iter.push(iter);
        }
        let solver_dir = solver.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut net_dir = solver_dir.clone();
        let nets = SolverNets::resolve(&param, |name| {
            let path = eval::beside(name, &solver_dir);
            if let Some(dir) = path.parent() {
                net_dir = dir.to_path_buf();
            }
            text::read_net_upgraded(&path, &schema).map_err(|e| clikit::one_line(&e))
        })
        .with_context(|| solver.display().to_string())?;
        let layers = data_layers(&nets)?;
        let mut options = DataOptions::default();
        for (name, _, train, layer_type) in &layers {
            // TRAIN and TEST Data layers often share a name (BVLC's examples call both "mnist").
            let (given, sources) = if *train {
                (&data.train_data, &mut options.sources)
            } else {
                (&data.test_data, &mut options.test_sources)
            };
            if let Some(path) = given {
                sources.insert(name.clone(), eval::source_of(path, None, layer_type)?);
            }
        }
        let needed: Vec<PathBuf> = layers
            .iter()
            .filter(|(_, _, train, _)| {
                if *train {
                    data.train_data.is_none()
                } else {
                    data.test_data.is_none()
                }
            })
            .filter_map(|(_, source, _, _)| source.as_deref().map(PathBuf::from))
            .collect();
        options.base_dir = match &data.data_root {
            Some(root) => root.clone(),
            None => eval::data_root(&needed, &net_dir),
        };
        for mean in nets.mean_files() {
            let blob = eval::read_mean(&mean, &options.base_dir)?;
            options.mean_files.insert(mean, blob);
        }
        Ok(Setup {
            param,
            nets,
            data: options,
        })
    }

    /// The solver for training in rounds measured by the caller: base_lr scaled, no periodic tests or snapshots.
    pub(crate) fn for_rounds(solver: &Path, data: &DataArgs, lr_scale: f32) -> Result<Setup> {
        if !(lr_scale > 0.0 && lr_scale.is_finite()) {
            bail!("--lr-scale {lr_scale} must be a positive number");
        }
        let mut setup = Setup::read(solver, data)?;
        setup.param.base_lr = Some(setup.param.base_lr() * lr_scale);
        setup.param.test_interval = Some(0);
        setup.param.test_initialization = Some(false);
        setup.param.snapshot = Some(0);
        setup.param.snapshot_after_train = Some(false);
        Ok(setup)
    }

    pub(crate) fn solver(&self) -> Result<Solver> {
        Ok(Solver::new(&self.param, self.nets.clone(), &self.data)?)
    }
}

/// Weights of a caffemodel as the engine takes them.
pub(crate) fn weights_of(path: &Path) -> Result<Vec<engine::LayerWeights>> {
    eval::weights_of(&caffez::open_model(path)?)
}

/// Progress on stderr: a bar with iteration, loss, lr and ETA; test results as lines above it.
struct Progress {
    bar: ProgressBar,
    tests: Vec<TestReport>,
    written: Vec<String>,
    last_loss: Option<f32>,
    /// What the run read: no snapshot may replace one of them.
    inputs: Vec<PathBuf>,
}

impl Progress {
    fn new(first: i32, last: i32, inputs: Vec<PathBuf>) -> Progress {
        let bar = clikit::progress_bar(
            u64::try_from(last.max(first)).unwrap_or(0),
            "[{bar:30}] iter {pos}/{len} {msg} ({per_sec}, ETA {eta})",
        );
        bar.set_position(u64::try_from(first).unwrap_or(0));
        Progress {
            bar,
            tests: Vec::new(),
            written: Vec::new(),
            last_loss: None,
            inputs,
        }
    }
}

/// A line above the progress bar, or on stderr as it is when the bar is hidden (stderr not a terminal, e.g. a log).
pub(crate) fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        clikit::note(line);
    } else {
        bar.println(line);
    }
}

fn describe_outputs(outputs: &[train::Output]) -> String {
    outputs
        .iter()
        .map(|o| format!("{} = {:.6}", o.blob, o.value))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Observer for Progress {
    fn on_iteration(&mut self, report: &IterationReport) -> Control {
        self.last_loss = Some(report.smoothed_loss);
        if let Some(lr) = report.lr {
            self.bar
                .set_message(format!("loss {:.6} lr {:.6}", report.smoothed_loss, lr));
            self.bar.inc(1);
        }
        Control::Continue
    }

    fn on_test(&mut self, report: &TestReport) -> Control {
        say(
            &self.bar,
            format!(
                "iteration {} test net #{}: {}",
                report.iter,
                report.net,
                describe_outputs(&report.outputs)
            ),
        );
        self.tests.push(report.clone());
        Control::Continue
    }

    fn on_snapshot(&mut self, snapshot: Snapshot) -> std::result::Result<(), String> {
        // Caffe's snapshot names, relative to the working directory as in Caffe.
        let inputs: Vec<&Path> = self.inputs.iter().map(PathBuf::as_path).collect();
        let write = |name: &str, bytes: Vec<u8>| {
            let path = PathBuf::from(name);
            outfile::check_outputs(&[&path], &inputs).map_err(|e| e.to_string())?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            outfile::write_atomic(&path, |out| out.write_all(&bytes)).map_err(|e| e.to_string())?;
            Ok::<_, String>(path.display().to_string())
        };
        let model = write(&snapshot.model_filename, caffemodel::encode(&snapshot.model))?;
        let state = write(&snapshot.state_filename, caffemodel::encode(&snapshot.state))?;
        say(&self.bar, format!("snapshot: {model}, {state}"));
        self.written.extend([model, state]);
        Ok(())
    }
}

/// What `train` did.
#[derive(Serialize, Debug)]
pub struct TrainReport {
    /// The iteration reached.
    pub iterations: i32,
    /// The smoothed training loss at the end.
    pub final_loss: Option<f32>,
    /// Every test pass: iteration, test net, output values.
    pub tests: Vec<TestRow>,
    /// Snapshot files written.
    pub snapshots: Vec<String>,
    /// Training iterations per second (tests and snapshots included).
    pub iterations_per_s: f64,
}

/// One test pass.
#[derive(Serialize, Debug)]
pub struct TestRow {
    /// The solver's iteration.
    pub iter: i32,
    /// Which test net.
    pub net: usize,
    /// Output blob values by name (`accuracy`, `loss`, ...).
    pub outputs: BTreeMap<String, f32>,
}

fn test_row(report: &TestReport) -> TestRow {
    TestRow {
        iter: report.iter,
        net: report.net,
        outputs: report
            .outputs
            .iter()
            .map(|o| {
                let name = if o.index == 0 {
                    o.blob.clone()
                } else {
                    format!("{}[{}]", o.blob, o.index)
                };
                (name, o.value)
            })
            .collect(),
    }
}

/// Runs `train`.
pub fn train(args: &TrainArgs) -> Result<TrainReport> {
    let setup = Setup::read(&args.solver, &args.data)?;
    let mut solver = setup.solver()?;
    let mut inputs: Vec<PathBuf> = [Some(&args.solver), args.weights.as_ref(), args.resume.as_ref()]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    if let Some(weights) = &args.weights {
        solver.load_weights(&weights_of(weights)?)?;
    }
    if let Some(state_path) = &args.resume {
        let file = ModelFile::open(state_path)?;
        let state = caffemodel::decode_solver_state(&file)?;
        let learned = state
            .learned_net
            .as_deref()
            .context("the solver state names no learned_net to resume from")?;
        let learned = eval::beside(learned, state_path.parent().unwrap_or(Path::new(".")));
        inputs.push(learned.clone());
        let model = ModelFile::open(&learned)?;
        solver.load_weights(&eval::weights_of(&model)?)?;
        solver.restore(&state)?;
    }
    let start_iter = solver.iter();
    let mut progress = Progress::new(start_iter, setup.param.max_iter(), inputs);
    let start = Instant::now();
    solver.solve(&mut progress)?;
    let seconds = start.elapsed().as_secs_f64();
    progress.bar.finish_and_clear();
    Ok(TrainReport {
        iterations: solver.iter(),
        final_loss: progress.last_loss,
        tests: progress.tests.iter().map(test_row).collect(),
        snapshots: progress.written,
        iterations_per_s: f64::from(solver.iter() - start_iter) / seconds.max(1e-9),
    })
}

impl TrainReport {
    /// Human-readable summary.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "trained to iteration {} ({:.1} iterations/s), final smoothed loss {}\n",
            self.iterations,
            self.iterations_per_s,
            self.final_loss.map_or_else(|| "-".to_string(), |l| format!("{l:.6}"))
        );
        if let Some(last) = self.tests.iter().rev().find(|t| t.net == 0) {
            let values: Vec<String> = last.outputs.iter().map(|(k, v)| format!("{k} = {v:.6}")).collect();
            text.push_str(&format!("last test (iteration {}): {}\n", last.iter, values.join(", ")));
        }
        for file in &self.snapshots {
            text.push_str(&format!("wrote {file}\n"));
        }
        text
    }
}

/// One round of `retrain`.
#[derive(Serialize, Debug, Clone)]
pub struct RoundRow {
    /// The round (0: pruned, before any training).
    pub round: usize,
    /// Solver iterations done so far.
    pub iterations: i64,
    /// The keep fractions in force (for --regrow: those re-applied at the end of the round).
    pub keep: BTreeMap<String, f64>,
    /// Nonzero weights of the pruned layers at the measurement.
    pub kept_weights: usize,
    /// Fraction of the pruned layers' weights that are nonzero.
    pub kept_fraction: f64,
    /// Test accuracy (`None`: no test net).
    pub accuracy: Option<f64>,
    /// Test loss.
    pub loss: Option<f64>,
    /// The training loss at the end of the round (smoothed over the solver's average_loss iterations; `None` in
    /// round 0, before any training).
    pub train_loss: Option<f64>,
    /// For --regrow: test accuracy after the dense steps, before pruning again.
    pub accuracy_before_reprune: Option<f64>,
    /// For --regrow: nonzero weights of the pruned layers after the dense steps.
    pub kept_weights_before_reprune: Option<usize>,
}

/// What `retrain` did.
#[derive(Serialize, Debug)]
pub struct RetrainReport {
    /// `fixed mask`, `gradual (schedule ...)` or `regrow (dense steps, then re-prune)`.
    pub mode: String,
    /// The unpruned model's test accuracy (`None`: no test net).
    pub dense_accuracy: Option<f64>,
    /// Weights in the pruned layers.
    pub weights: usize,
    /// Round 0 (pruned, untrained) and every round after.
    pub rounds: Vec<RoundRow>,
    /// The retrained model.
    pub output: String,
    /// Training iterations per second over all rounds (tests excluded).
    pub iterations_per_s: f64,
}

/// The first test net's accuracy (the output named `accuracy`, else the first) and loss; `None` without a test net.
pub(crate) fn accuracy_of(reports: &[TestReport]) -> Result<(Option<f64>, Option<f64>)> {
    let Some(report) = reports.first() else {
        return Ok((None, None));
    };
    let accuracy = report
        .outputs
        .iter()
        .find(|o| o.blob.contains("accuracy") && o.index == 0)
        .or_else(|| report.outputs.iter().find(|o| o.loss_weight == 0.0))
        .context("the test net has no accuracy output")?;
    let loss = report
        .outputs
        .iter()
        .find(|o| o.loss_weight != 0.0)
        .map(|o| f64::from(o.value * o.loss_weight));
    Ok((Some(f64::from(accuracy.value)), loss))
}

/// Prunes the named layers' weight blobs of the solver's net in place to `keep`; returns the masks.
fn prune_net(solver: &mut Solver, keep: &BTreeMap<String, f64>) -> Result<Vec<ParamMask>> {
    let mut masks = Vec::with_capacity(keep.len());
    for (layer, &t) in keep {
        let weights = solver
            .net_mut()
            .params_mut(layer)
            .and_then(|p| p.first_mut())
            .with_context(|| format!("the train net has no layer '{layer}' with weights"))?;
        prune::prune_in_place(weights.data_mut(), prune::Rule::KeepFraction(t))
            .with_context(|| format!("pruning layer '{layer}'"))?;
        masks.push(ParamMask::from_nonzero(layer.clone(), 0, weights.data()));
    }
    Ok(masks)
}

fn nonzero(solver: &Solver, layers: &BTreeMap<String, f64>) -> usize {
    layers
        .keys()
        .filter_map(|l| solver.net().params(l).and_then(|p| p.first()))
        .map(|w| w.data().iter().filter(|v| **v != 0.0).count())
        .sum()
}

/// Rounds' progress on stderr.
pub(crate) struct RoundProgress {
    pub(crate) bar: ProgressBar,
    pub(crate) last_loss: Option<f32>,
    /// The first iteration whose loss was not finite.
    pub(crate) diverged: Option<i32>,
}

impl RoundProgress {
    pub(crate) fn new(bar: ProgressBar) -> Self {
        Self {
            bar,
            last_loss: None,
            diverged: None,
        }
    }

    /// Runs `steps` solver iterations, refusing to go on once the loss or a weight is not finite (NaN or infinite
    /// weights help nobody, and every later round would report 0% accuracy).
    pub(crate) fn step(&mut self, solver: &mut Solver, steps: i32) -> Result<()> {
        solver.step(steps, self)?;
        let finite = |solver: &Solver| {
            let net = solver.net();
            let names: Vec<&str> = net.layers().map(|l| l.name.as_str()).collect();
            names
                .iter()
                .filter_map(|name| net.params(name))
                .all(|params| params.iter().all(|p| p.data().iter().all(|v| v.is_finite())))
        };
        if self.diverged.is_none() && !finite(solver) {
            self.diverged = Some(solver.iter());
        }
        if let Some(iter) = self.diverged {
            self.bar.finish_and_clear();
            bail!(
                "training diverged: the loss or the weights are not finite by iteration {iter}; lower the learning rate \
                 (--lr-scale, or compress's --prune-lr-scale / --quantize-lr-scale)"
            );
        }
        Ok(())
    }
}

impl Observer for RoundProgress {
    fn on_iteration(&mut self, report: &IterationReport) -> Control {
        if !report.loss.is_finite() {
            self.diverged = Some(report.iter);
            return Control::Stop;
        }
        self.last_loss = Some(report.smoothed_loss);
        if report.lr.is_some() {
            self.bar.set_message(format!("loss {:.6}", report.smoothed_loss));
            self.bar.inc(1);
        }
        Control::Continue
    }
}

/// Runs `retrain`.
pub fn retrain(args: &RetrainArgs) -> Result<RetrainReport> {
    let inputs = [args.weights.as_path(), args.solver.as_path()];
    let outputs: Vec<&Path> = std::iter::once(args.output.as_path())
        .chain(args.plot.as_deref())
        .collect();
    outfile::check_outputs(&outputs, &inputs)?;
    if let Some(plot) = &args.plot {
        crate::plot::check_plot_name(plot)?;
    }
    if args.rounds == 0 || args.steps <= 0 {
        bail!("--rounds and --steps must be positive");
    }
    if let Some(bad) = args.schedule.iter().find(|t| !(0.0..=1.0).contains(*t)) {
        bail!("--schedule value {bad} is not a keep fraction in [0, 1]");
    }
    let keep: BTreeMap<String, f64> = crate::plan::parse_keep(&args.keep)?;
    let setup = Setup::for_rounds(&args.solver, &args.data, args.lr_scale)?;
    let trained = weights_of(&args.weights)?;
    let mut solver = setup.solver()?;
    solver.load_weights(&trained)?;
    args.distill.apply(&mut solver, &args.weights)?;
    let (dense_accuracy, _) = accuracy_of(&solver.test_all()?)?;
    let weights: usize = keep
        .keys()
        .map(|l| {
            solver
                .net()
                .params(l)
                .and_then(|p| p.first())
                .map(|w| w.len())
                .with_context(|| format!("the train net has no layer '{l}' with weights"))
        })
        .sum::<Result<usize>>()?;
    let keep_for_round = |round: usize| -> BTreeMap<String, f64> {
        match args.schedule.get(round) {
            Some(&s) => keep.iter().map(|(l, &t)| (l.clone(), t.max(s))).collect(),
            None => keep.clone(),
        }
    };
    let bar = clikit::progress_bar(
        args.rounds as u64 * args.steps as u64,
        "[{bar:30}] iter {pos}/{len} {prefix} {msg} ({per_sec}, ETA {eta})",
    );
    let mut progress = RoundProgress::new(bar);
    let row = |round: usize, solver: &mut Solver, keep: &BTreeMap<String, f64>, iterations: i64| -> Result<RoundRow> {
        let (accuracy, loss) = accuracy_of(&solver.test_all()?)?;
        let kept_weights = nonzero(solver, keep);
        Ok(RoundRow {
            round,
            iterations,
            keep: keep.clone(),
            kept_weights,
            kept_fraction: kept_weights as f64 / weights.max(1) as f64,
            accuracy,
            loss,
            train_loss: None,
            accuracy_before_reprune: None,
            kept_weights_before_reprune: None,
        })
    };
    let mut rounds = Vec::with_capacity(args.rounds + 1);
    let first_keep = keep_for_round(0);
    let masks = prune_net(&mut solver, &first_keep)?;
    solver.set_masks(&masks)?;
    rounds.push(row(0, &mut solver, &first_keep, 0)?);
    let mut train_seconds = 0.0;
    let mut iterations: i64 = 0;
    for round in 1..=args.rounds {
        progress.bar.set_prefix(format!("round {round}/{}", args.rounds));
        if args.regrow {
            // The tutorial: a fresh solver from the current (pruned) weights, dense steps, then prune again.
            let current = solver.to_proto();
            solver = setup.solver()?;
            solver.load_net_param(&current)?;
            args.distill.apply(&mut solver, &args.weights)?;
            let start = Instant::now();
            progress.step(&mut solver, args.steps)?;
            train_seconds += start.elapsed().as_secs_f64();
            iterations += i64::from(args.steps);
            let (before, _) = accuracy_of(&solver.test_all()?)?;
            let grown = nonzero(&solver, &keep);
            prune_net(&mut solver, &keep)?;
            let mut r = row(round, &mut solver, &keep, iterations)?;
            r.train_loss = progress.last_loss.map(f64::from);
            r.accuracy_before_reprune = before;
            r.kept_weights_before_reprune = Some(grown);
            rounds.push(r);
        } else {
            let round_keep = keep_for_round(round - 1);
            if round > 1 && round_keep != keep_for_round(round - 2) {
                let masks = prune_net(&mut solver, &round_keep)?;
                solver.set_masks(&masks)?;
            }
            let start = Instant::now();
            progress.step(&mut solver, args.steps)?;
            train_seconds += start.elapsed().as_secs_f64();
            iterations += i64::from(args.steps);
            let mut r = row(round, &mut solver, &round_keep, iterations)?;
            r.train_loss = progress.last_loss.map(f64::from);
            rounds.push(r);
        }
        if let Some(r) = rounds.last() {
            let measured = match r.accuracy {
                Some(a) => format!("accuracy {a:.4}"),
                None => format!("training loss {:.4}", r.train_loss.unwrap_or(f64::NAN)),
            };
            say(
                &progress.bar,
                format!("round {round}: {measured}, {} weights kept", r.kept_weights),
            );
        }
    }
    progress.bar.finish_and_clear();
    // A schedule still above the final fractions after the last round: prune to them for the output.
    if !args.regrow && keep_for_round(args.rounds - 1) != keep {
        let masks = prune_net(&mut solver, &keep)?;
        solver.set_masks(&masks)?;
        let mut r = row(args.rounds + 1, &mut solver, &keep, iterations)?;
        r.train_loss = progress.last_loss.map(f64::from);
        rounds.push(r);
    }
    write_model(&args.weights, &args.output, &solver)?;
    let mode = if args.regrow {
        "regrow (dense steps with a fresh solver, then re-prune)".to_string()
    } else if args.schedule.is_empty() {
        "fixed mask".to_string()
    } else {
        format!(
            "gradual (schedule {})",
            args.schedule.iter().map(f64::to_string).collect::<Vec<_>>().join(",")
        )
    };
    let report = RetrainReport {
        mode,
        dense_accuracy,
        weights,
        rounds,
        output: args.output.display().to_string(),
        iterations_per_s: iterations as f64 / train_seconds.max(1e-9),
    };
    if let Some(plot) = &args.plot {
        crate::plot::write(plot, &report.chart())?;
    }
    Ok(report)
}

/// A copy of `input` with the payload of every blob the solver trained replaced by its current values.
pub(crate) fn write_model(input: &Path, output: &Path, solver: &Solver) -> Result<()> {
    let bytes = model_bytes(input, solver)?;
    outfile::write_atomic(output, |out| out.write_all(&bytes))?;
    Ok(())
}

/// The bytes [`write_model`] writes.
pub(crate) fn model_bytes(input: &Path, solver: &Solver) -> Result<Vec<u8>> {
    let file = caffez::open_model(input)?;
    let mut net = file.net()?;
    let names: Vec<String> = net.layers().iter().map(|l| l.name().to_string()).collect();
    for (index, name) in names.iter().enumerate() {
        let Some(params) = solver.net().params(name) else {
            continue;
        };
        for (blob, tensor) in params.iter().enumerate() {
            net.set_blob_data(index, blob, tensor.data().to_vec())?;
        }
    }
    Ok(net.to_bytes())
}

impl RetrainReport {
    /// Test accuracy per round, one line (two with --regrow); the training loss without a test net.
    pub fn chart(&self) -> LineChart {
        if self.dense_accuracy.is_none() {
            return LineChart {
                title: format!(
                    "Retraining, {} (no test net)",
                    self.mode.split(" (").next().unwrap_or_default()
                ),
                x_label: "round".into(),
                y_label: "training loss".into(),
                series: vec![Series {
                    name: "pruned".into(),
                    points: self
                        .rounds
                        .iter()
                        .filter_map(|r| r.train_loss.map(|l| (r.round as f64, l)))
                        .collect(),
                }],
            };
        }
        let mut series = vec![Series {
            name: "pruned".into(),
            points: self
                .rounds
                .iter()
                .filter_map(|r| r.accuracy.map(|a| (r.round as f64, a * 100.0)))
                .collect(),
        }];
        if self.rounds.iter().any(|r| r.accuracy_before_reprune.is_some()) {
            series.push(Series {
                name: "before re-prune".into(),
                points: self
                    .rounds
                    .iter()
                    .filter_map(|r| r.accuracy_before_reprune.map(|a| (r.round as f64, a * 100.0)))
                    .collect(),
            });
        }
        LineChart {
            title: format!(
                "Retraining, {} (unpruned: {:.2}%)",
                self.mode.split(" (").next().unwrap_or_default(),
                self.dense_accuracy.unwrap_or(f64::NAN) * 100.0
            ),
            x_label: "round".into(),
            y_label: "test accuracy (%)".into(),
            series,
        }
    }

    /// The table.
    pub fn to_text(&self) -> String {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        let regrow = self.rounds.iter().any(|r| r.accuracy_before_reprune.is_some());
        let mut header = vec![
            "round",
            "iterations",
            "kept weights",
            "kept %",
            "accuracy %",
            "loss",
            "train loss",
        ];
        if regrow {
            header.extend(["dense accuracy %", "dense kept weights"]);
        }
        table.set_header(header);
        for r in &self.rounds {
            let mut cells = vec![
                r.round.to_string(),
                r.iterations.to_string(),
                r.kept_weights.to_string(),
                format!("{:.3}", r.kept_fraction * 100.0),
                r.accuracy.map_or_else(|| "-".into(), |a| format!("{:.2}", a * 100.0)),
                r.loss.map_or_else(|| "-".into(), |l| format!("{l:.4}")),
                r.train_loss.map_or_else(|| "-".into(), |l| format!("{l:.4}")),
            ];
            if regrow {
                cells.push(
                    r.accuracy_before_reprune
                        .map_or_else(|| "-".into(), |a| format!("{:.2}", a * 100.0)),
                );
                cells.push(
                    r.kept_weights_before_reprune
                        .map_or_else(|| "-".into(), |k| k.to_string()),
                );
            }
            table.add_row(cells);
        }
        for column in 0..9 {
            if let Some(c) = table.column_mut(column) {
                c.set_cell_alignment(CellAlignment::Right);
            }
        }
        let dense = match self.dense_accuracy {
            Some(a) => format!("unpruned accuracy {:.2}%", a * 100.0),
            None => "no test net: training loss only".to_string(),
        };
        format!(
            "{}; {dense}; {} weights in the pruned layers\n{table}\n{:.1} iterations/s; wrote {}\n",
            self.mode, self.weights, self.iterations_per_s, self.output
        )
    }
}
