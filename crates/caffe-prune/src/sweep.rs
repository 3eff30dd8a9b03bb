//! `caffe-prune sweep`: prune one layer at a time over a grid of keep fractions and measure the accuracy of each
//! setting, to choose per-layer fractions (stage 3 of Deep Compression); `--budget` turns the measurements into a
//! suggestion and checks it.

use crate::eval::{NetArgs, NetSpec, Preloaded, TestArgs, TestSet};
use crate::plot::{LineChart, Series};
use anyhow::{bail, Context, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, CellAlignment, Table};
use indicatif::ProgressBar;
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `caffe-prune sweep`.
#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {
    /// The net definition (.prototxt; V1 and legacy-input nets are upgraded on the fly). With --merge only for
    /// --budget.
    #[arg(long, value_name = "NET.prototxt", required_unless_present = "merge")]
    pub net: Option<PathBuf>,
    /// The weights (.caffemodel, any generation). With --merge only for --budget.
    #[arg(long, value_name = "W.caffemodel", required_unless_present = "merge")]
    pub weights: Option<PathBuf>,
    /// Read the prototxt with this caffe.proto (a fork's schema).
    #[arg(long, value_name = "PATH")]
    pub proto: Option<PathBuf>,
    /// The test data and the TEST net's stages and level.
    #[command(flatten)]
    pub test: TestArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The layers to sweep, each alone with the others unpruned (default: the layers named by --grid, else every
    /// Convolution, InnerProduct and Deconvolution layer with weights).
    #[arg(long, value_name = "NAMES", value_delimiter = ',', conflicts_with = "merge")]
    pub layers: Vec<String>,
    /// Keep fractions of a layer: LAYER=T1,T2,... or LAYER=START:STOP:COUNT (evenly spaced, both ends included).
    /// Repeat for several layers. Default: the tutorial's, 0.3:0.7:5 for the first swept layer and 0.05:0.3:5 for
    /// the others.
    #[arg(long, value_name = "LAYER=GRID", conflicts_with = "merge")]
    pub grid: Vec<String>,
    /// Write every measurement as CSV (layer, keep, sparsity, top1, top5, loss). With --shard, the shard's CSV for
    /// --merge (exact values and the sweep's identity on every row).
    #[arg(long, value_name = "FILE.csv")]
    pub csv: Option<PathBuf>,
    /// Draw top-1 accuracy against keep fraction, one line per layer (SVG or PNG, by the file's extension).
    #[arg(long, value_name = "FILE.svg|png")]
    pub plot: Option<PathBuf>,
    /// Suggest per-layer keep fractions that keep the fewest weights while the single-layer top-1 drops add up to at
    /// most this many percentage points, and check the combination with one more evaluation (re-splitting a smaller
    /// budget while the measured drop is over). With --merge it needs --net, --weights and the data.
    #[arg(long, value_name = "POINTS", requires = "net", requires = "weights")]
    pub budget: Option<f64>,
    /// Evaluate only shard I of N (0-based, 0/N to N-1/N, as Kubernetes' JOB_COMPLETION_INDEX): the settings in
    /// sweep order dealt round-robin, setting k to shard k mod N; every shard also measures the unpruned net. Needs
    /// --csv; join the shards' CSVs with --merge (see docs/sharded-sweeps.md).
    #[arg(long, value_name = "I/N", value_parser = parse_shard, requires = "csv", conflicts_with = "merge")]
    pub shard: Option<Shard>,
    /// Join the CSVs of every shard of one sweep (--shard I/N) into the whole sweep's table, --csv, --plot and
    /// --budget suggestion, as one unsharded run gives them.
    #[arg(long, value_name = "SHARD.csv", num_args = 1..)]
    pub merge: Vec<PathBuf>,
}

/// One share of a sweep: shard `index` of `count`, 0-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This shard, 0 to `count - 1`.
    pub index: usize,
    /// How many shards the sweep is split into.
    pub count: usize,
}

impl Shard {
    /// Whether setting `k` (its position in the whole sweep's ordered list) is this shard's: round-robin, so the
    /// split depends only on the list and the shard count, and the shards' sizes differ by at most one.
    pub fn owns(&self, k: usize) -> bool {
        k % self.count == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Serialize for Shard {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `I/N`: shard I of N, 0-based (the value parser of --shard, and of the shard column of a shard's CSV).
pub fn parse_shard(text: &str) -> std::result::Result<Shard, String> {
    let malformed = || format!("'{text}' is not I/N, shard I of N counted from 0 (e.g. 0/4 to 3/4)");
    let (index, count) = text.split_once('/').ok_or_else(malformed)?;
    let number = |s: &str| {
        s.trim()
            .parse::<usize>()
            .ok()
            .filter(|_| s.trim().bytes().all(|b| b.is_ascii_digit()))
    };
    let (index, count) = (
        number(index).ok_or_else(malformed)?,
        number(count).ok_or_else(malformed)?,
    );
    if count == 0 {
        return Err(format!("'{text}': the shard count N must be at least 1"));
    }
    if index >= count {
        return Err(format!(
            "'{text}': shard {index} does not exist, shards are counted from 0 (0/{count} to {}/{count})",
            count - 1
        ));
    }
    Ok(Shard { index, count })
}

/// The accuracy of one weight setting.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Score {
    /// Top-1 accuracy.
    pub top1: f64,
    /// Top-5 accuracy, when there are at least 5 classes.
    pub top5: Option<f64>,
    /// Mean loss, when the net has a SoftmaxWithLoss layer.
    pub loss: Option<f64>,
}

/// One measured setting: `layer` pruned to `keep`, every other layer as trained.
#[derive(Serialize, Debug, Clone)]
pub struct Row {
    /// The pruned layer.
    pub layer: String,
    /// The keep fraction asked for.
    pub keep: f64,
    /// Fraction of the layer's weights that are zero after pruning.
    pub sparsity: f64,
    /// The accuracy.
    #[serde(flatten)]
    pub score: Score,
    /// Top-1 drop from the unpruned net, in percentage points.
    pub drop_points: f64,
}

/// The `--budget` suggestion.
#[derive(Serialize, Debug)]
pub struct Suggestion {
    /// The budget, in top-1 percentage points.
    pub budget_points: f64,
    /// Keep fraction per swept layer (1 = unpruned).
    pub keep: BTreeMap<String, f64>,
    /// The combination's accuracy, measured.
    #[serde(flatten)]
    pub score: Score,
    /// Its top-1 drop, in percentage points.
    pub drop_points: f64,
    /// Whether the drop is within the budget.
    pub within_budget: bool,
    /// Fraction of the swept layers' weights kept.
    pub kept_fraction: f64,
    /// Evaluations made to find it (one, plus one per re-split when layers interact).
    pub evaluations: usize,
}

/// The whole sweep.
#[derive(Serialize, Debug)]
pub struct Report {
    /// Images per evaluation.
    pub images: usize,
    /// The unpruned net.
    pub dense: Score,
    /// One row per setting, grouped by layer in sweep order.
    pub rows: Vec<Row>,
    /// The `--budget` suggestion.
    pub suggestion: Option<Suggestion>,
    /// With --shard: which shard these rows are (the whole sweep has more).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

/// Keep fractions per layer, in sweep order.
type Grid = Vec<(String, Vec<f64>)>;

/// `START:STOP:COUNT` or `T1,T2,...`.
fn parse_values(spec: &str, entry: &str) -> Result<Vec<f64>> {
    let number = |s: &str| -> Result<f64> {
        let v: f64 = s
            .trim()
            .parse()
            .with_context(|| format!("--grid '{entry}': '{s}' is not a number"))?;
        if !(0.0..=1.0).contains(&v) {
            bail!("--grid '{entry}': keep fraction {v} is not in [0, 1]");
        }
        Ok(v)
    };
    let values = if let [start, stop, count] = spec.split(':').collect::<Vec<_>>()[..] {
        let (start, stop) = (number(start)?, number(stop)?);
        let count: usize = count
            .trim()
            .parse()
            .ok()
            .filter(|&c| c >= 1)
            .with_context(|| format!("--grid '{entry}': COUNT '{count}' is not a positive integer"))?;
        linspace(start, stop, count)
    } else {
        spec.split(',').map(number).collect::<Result<_>>()?
    };
    if values.is_empty() {
        bail!("--grid '{entry}' gives no keep fraction");
    }
    Ok(values)
}

/// `count` evenly spaced values from `start` to `stop`, both included (numpy's linspace), rounded to 12 decimals so
/// that 0.3 + 0.1 shows as 0.4 in tables and CSV.
fn linspace(start: f64, stop: f64, count: usize) -> Vec<f64> {
    if count == 1 {
        return vec![start];
    }
    let step = (stop - start) / (count - 1) as f64;
    (0..count)
        .map(|i| {
            if i == count - 1 {
                stop
            } else {
                ((start + step * i as f64) * 1e12).round() / 1e12
            }
        })
        .collect()
}

/// The swept layers and their grids: explicit `--grid` entries, and the tutorial's default for the rest.
fn grid(args: &SweepArgs, prunable: &[String]) -> Result<Grid> {
    let mut explicit: Vec<(String, Vec<f64>)> = Vec::new();
    for entry in &args.grid {
        let (layer, spec) = entry
            .split_once('=')
            .with_context(|| format!("--grid '{entry}' is not LAYER=T1,T2,... or LAYER=START:STOP:COUNT"))?;
        if explicit.iter().any(|(l, _)| l == layer) {
            bail!("--grid names layer '{layer}' twice");
        }
        explicit.push((layer.to_string(), parse_values(spec, entry)?));
    }
    let layers: Vec<String> = if !args.layers.is_empty() {
        args.layers.clone()
    } else if !explicit.is_empty() {
        explicit.iter().map(|(l, _)| l.clone()).collect()
    } else {
        prunable.to_vec()
    };
    for layer in layers.iter().chain(explicit.iter().map(|(l, _)| l)) {
        if !prunable.contains(layer) {
            bail!(
                "layer '{layer}' is not a prunable layer with weights in the TEST net (prunable: {})",
                prunable.join(", ")
            );
        }
    }
    if layers.is_empty() {
        bail!("the net has no Convolution, InnerProduct or Deconvolution layer with weights to sweep");
    }
    Ok(layers
        .iter()
        .enumerate()
        .map(|(i, layer)| {
            let values = explicit
                .iter()
                .find(|(l, _)| l == layer)
                .map(|(_, v)| v.clone())
                // The tutorial: the first layer is the most sensitive, so it keeps more.
                .unwrap_or_else(|| {
                    if i == 0 {
                        linspace(0.3, 0.7, 5)
                    } else {
                        linspace(0.05, 0.3, 5)
                    }
                });
            (layer.clone(), values)
        })
        .collect())
}

/// Weight-blob layers of the TEST net that the pruning rules apply to, in net order.
fn prunable_layers(net: &engine::Net) -> Vec<String> {
    net.layers()
        .filter(|l| caffemodel::is_prunable_type(&l.layer_type))
        .filter(|l| net.params(&l.name).is_some_and(|p| !p.is_empty()))
        .map(|l| l.name.clone())
        .collect()
}

/// Evaluates one net with some layers pruned.
struct Evaluator {
    data: Preloaded,
}

impl Evaluator {
    /// A fresh net with the trained weights, `keep` applied (layer -> fraction); returns the score and each pruned
    /// layer's zero fraction.
    fn evaluate(&self, net: &mut engine::Net, keep: &[(String, f64)]) -> Result<(Score, Vec<f64>)> {
        net.copy_from(&self.data.spec.loaded.weights)?;
        let mut sparsity = Vec::with_capacity(keep.len());
        for (layer, t) in keep {
            let weights = net
                .params_mut(layer)
                .and_then(|p| p.first_mut())
                .with_context(|| format!("layer '{layer}' has no weights"))?;
            let report = prune::prune_in_place(weights.data_mut(), prune::Rule::KeepFraction(*t))
                .with_context(|| format!("pruning layer '{layer}'"))?;
            sparsity.push(1.0 - report.nonzeros_after as f64 / report.len.max(1) as f64);
        }
        let report = self.data.evaluate(net)?.report(1.0);
        Ok((
            Score {
                top1: report.top1,
                top5: report.top5,
                loss: report.loss,
            },
            sparsity,
        ))
    }
}

fn progress(len: usize) -> ProgressBar {
    let bar = clikit::progress_bar(
        len as u64,
        "{prefix} [{bar:30}] {pos}/{len} settings, {elapsed} elapsed, ETA {eta}",
    );
    bar.set_prefix("sweep");
    bar
}

/// The net, weights and schema as [`crate::eval::load`] takes them (clap asks for --net and --weights whenever they
/// are needed).
fn net_args(args: &SweepArgs) -> Result<NetArgs> {
    match (&args.net, &args.weights) {
        (Some(net), Some(weights)) => Ok(NetArgs {
            net: net.clone(),
            weights: weights.clone(),
            proto: args.proto.clone(),
        }),
        _ => Err(clikit::usage_error("give --net and --weights")),
    }
}

/// Every file the command reads, as given on the command line: the shards' CSVs, the net, the weights, the data.
fn inputs(args: &SweepArgs) -> Vec<&Path> {
    args.merge
        .iter()
        .map(PathBuf::as_path)
        .chain(args.net.as_deref())
        .chain(args.weights.as_deref())
        .chain(args.proto.as_deref())
        .chain(args.test.data.as_deref())
        .chain(args.test.labels.as_deref())
        .collect()
}

/// Everything about the arguments that can be checked before any work: flags that do not apply, the output names,
/// and no output over an input.
fn check_arguments(args: &SweepArgs) -> Result<()> {
    if args.shard.is_some() {
        if args.budget.is_some() {
            return Err(clikit::usage_error(
                "--budget needs the whole sweep: give it to `sweep --merge` with every shard's CSV, not to a shard",
            ));
        }
        if args.plot.is_some() {
            return Err(clikit::usage_error(
                "--plot draws the whole sweep: give it to `sweep --merge` with every shard's CSV, not to a shard",
            ));
        }
    }
    if !args.merge.is_empty() && args.budget.is_none() {
        let given = [
            ("--net", args.net.is_some()),
            ("--weights", args.weights.is_some()),
            ("--proto", args.proto.is_some()),
            ("--data", args.test.data.is_some()),
            ("--labels", args.test.labels.is_some()),
            ("--batch", args.test.batch.is_some()),
            ("--stage", !args.test.stage.is_empty()),
            ("--level", args.test.level != 0),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
            return Err(clikit::usage_error(format!(
                "{flag} applies to --merge only with --budget (the one evaluation it makes); the shards' CSVs hold \
                 everything else"
            )));
        }
    }
    let outputs: Vec<&Path> = args.csv.iter().chain(&args.plot).map(PathBuf::as_path).collect();
    outfile::check_outputs(&outputs, &inputs(args))?;
    if let Some(plot) = &args.plot {
        crate::plot::check_plot_name(plot)?;
    }
    if let Some(b) = args.budget {
        if !(b >= 0.0 && b.is_finite()) {
            bail!("--budget {b}: give a non-negative number of percentage points");
        }
    }
    Ok(())
}

/// Runs the sweep: the whole of it, one shard of it (`--shard`), or the join of its shards (`--merge`).
pub fn sweep(args: &SweepArgs) -> Result<Report> {
    check_arguments(args)?;
    if !args.merge.is_empty() {
        return merge(args);
    }
    let set = TestSet::open(&net_args(args)?, &args.test)?;
    let mut probe = set.spec.build_net()?;
    let grid = grid(args, &prunable_layers(&probe))?;
    let evaluator = Evaluator { data: set.preload()? };
    let images = evaluator.data.images;
    let settings = settings_of(&grid);
    // The settings this run measures: all of them, or the shard's share.
    let mine: Vec<usize> = (0..settings.len())
        .filter(|&k| args.shard.is_none_or(|shard| shard.owns(k)))
        .collect();
    // Every shard measures the unpruned net too: each shard's table is complete, and --merge checks they agree.
    let (dense, _) = evaluator.evaluate(&mut probe, &[])?;

    let bar = progress(mine.len());
    // One net per worker, reused across its settings; the engine parallelises inside each forward as well.
    let results: Vec<Result<(Score, Vec<f64>)>> = mine
        .par_iter()
        .map_init(
            || evaluator.data.spec.build_net(),
            |net, &k| {
                let net = net.as_mut().map_err(|e| anyhow::anyhow!("{e:#}"))?;
                let result = evaluator.evaluate(net, std::slice::from_ref(&settings[k]));
                bar.inc(1);
                result
            },
        )
        .collect();
    bar.finish_and_clear();
    let mut rows = Vec::with_capacity(mine.len());
    for (&k, result) in mine.iter().zip(results) {
        let (score, sparsity) = result?;
        let (layer, keep) = settings[k].clone();
        rows.push(Row {
            layer,
            keep,
            sparsity: sparsity[0],
            drop_points: (dense.top1 - score.top1) * 100.0,
            score,
        });
    }
    let suggestion = match args.budget {
        Some(budget) => Some(suggest(&evaluator, &mut probe, &grid, &rows, &dense, budget)?),
        None => None,
    };
    let report = Report {
        images,
        dense,
        rows,
        suggestion,
        shard: args.shard,
    };
    if let Some(path) = &args.csv {
        let csv = match args.shard {
            Some(shard) => {
                let sweep = SweepId {
                    shards: shard.count,
                    settings: settings.len(),
                    images,
                    arithmetic: arithmetic_name().to_string(),
                    inputs: Digests::of(&evaluator.data, &args.test),
                    grid: grid_digest(&settings),
                };
                report.to_shard_csv(shard, &sweep, &mine)
            }
            None => report.to_csv(),
        };
        outfile::write_atomic(path, |out| out.write_all(&csv))?;
    }
    if let Some(path) = &args.plot {
        crate::plot::write(path, &report.chart())?;
    }
    Ok(report)
}

/// The settings of a grid in sweep order: layer by layer, each layer's keep fractions in the order given.
fn settings_of(grid: &Grid) -> Vec<(String, f64)> {
    grid.iter()
        .flat_map(|(layer, values)| values.iter().map(move |&t| (layer.clone(), t)))
        .collect()
}

/// The grid back from its settings (consecutive settings of one layer form its entry; a layer is swept once).
fn grid_of(settings: &[(String, f64)]) -> Grid {
    let mut grid: Grid = Vec::new();
    for (layer, keep) in settings {
        match grid.last_mut() {
            Some((last, values)) if last == layer => values.push(*keep),
            _ => grid.push((layer.clone(), vec![*keep])),
        }
    }
    grid
}

/// The engine's arithmetic as a shard's CSV records it.
fn arithmetic_name() -> &'static str {
    match engine::arithmetic() {
        engine::Arithmetic::Fast => "fast",
        engine::Arithmetic::Reproducible => "reproducible",
    }
}

/// SHA-256 of what a sweep evaluates, in lowercase hex: equal on every machine that reads the same net, weights and
/// data, wherever the files are mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Digests {
    /// The TEST net: its definition as upgraded and encoded, the --stage names and the --level.
    net: String,
    /// Every weight blob: layer names, shapes and values.
    weights: String,
    /// The test batches as the net is fed them: shapes (so the batch size), values, labels.
    data: String,
}

fn hash_bytes(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

fn hash_floats(hasher: &mut Sha256, values: &[f32]) {
    hasher.update((values.len() as u64).to_le_bytes());
    let mut buffer = Vec::with_capacity(4 * 4096);
    for chunk in values.chunks(4096) {
        buffer.clear();
        for v in chunk {
            buffer.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        hasher.update(&buffer);
    }
}

fn hex(hasher: Sha256) -> String {
    hasher.finalize().iter().fold(String::with_capacity(64), |mut text, b| {
        let _ = write!(text, "{b:02x}");
        text
    })
}

impl Digests {
    /// The digests of a loaded test set and the TEST net's state.
    fn of(data: &Preloaded, test: &TestArgs) -> Digests {
        let (net, weights) = net_digests(&data.spec, test);
        Digests {
            net,
            weights,
            data: data_digest(data),
        }
    }
}

/// The net's and the weights' digests (see [`Digests`]): known before the test set is read.
fn net_digests(spec: &NetSpec, test: &TestArgs) -> (String, String) {
    let mut net = Sha256::new();
    hash_bytes(&mut net, &caffemodel::encode(&spec.loaded.param));
    net.update((test.stage.len() as u64).to_le_bytes());
    for stage in &test.stage {
        hash_bytes(&mut net, stage.as_bytes());
    }
    net.update(test.level.to_le_bytes());
    let mut weights = Sha256::new();
    weights.update((spec.loaded.weights.len() as u64).to_le_bytes());
    for layer in &spec.loaded.weights {
        hash_bytes(&mut weights, layer.name.as_bytes());
        weights.update((layer.blobs.len() as u64).to_le_bytes());
        for blob in &layer.blobs {
            weights.update((blob.shape.len() as u64).to_le_bytes());
            for d in &blob.shape {
                weights.update(d.to_le_bytes());
            }
            weights.update([u8::from(blob.legacy)]);
            hash_floats(&mut weights, &blob.data);
        }
    }
    (hex(net), hex(weights))
}

/// The test data's digest (see [`Digests`]).
fn data_digest(data: &Preloaded) -> String {
    let mut batches = Sha256::new();
    batches.update((data.images as u64).to_le_bytes());
    for (pass, take) in data.batches() {
        batches.update((take as u64).to_le_bytes());
        for (name, shape, values) in &pass.inputs {
            batches.update((name.len() as u64).to_le_bytes());
            batches.update(name.as_bytes());
            for &d in shape {
                batches.update((d as u64).to_le_bytes());
            }
            hash_floats(&mut batches, values);
        }
        hash_floats(&mut batches, &pass.labels);
    }
    hex(batches)
}

/// SHA-256 of the whole sweep's settings in order (layer names and the keep fractions' bits).
fn grid_digest(settings: &[(String, f64)]) -> String {
    let mut hasher = Sha256::new();
    hasher.update((settings.len() as u64).to_le_bytes());
    for (layer, keep) in settings {
        hash_bytes(&mut hasher, layer.as_bytes());
        hasher.update(keep.to_bits().to_le_bytes());
    }
    hex(hasher)
}

/// What every row of a shard's CSV says about the sweep it belongs to; --merge checks all shards say the same.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SweepId {
    /// Shards the sweep is split into.
    shards: usize,
    /// Settings in the whole sweep.
    settings: usize,
    /// Images per evaluation.
    images: usize,
    /// `fast` or `reproducible` (--deterministic).
    arithmetic: String,
    /// The net, weights and data.
    inputs: Digests,
    /// The whole sweep's settings.
    grid: String,
}

impl SweepId {
    /// What differs between two shards' sweeps, the first difference found, or None.
    fn difference(&self, other: &SweepId) -> Option<String> {
        if self.shards != other.shards {
            return Some(format!(
                "its sweep is split into {} shards, not {}",
                other.shards, self.shards
            ));
        }
        if self.settings != other.settings {
            return Some(format!(
                "its sweep has {} settings, not {}",
                other.settings, self.settings
            ));
        }
        if self.images != other.images {
            return Some(format!("it evaluated {} images, not {}", other.images, self.images));
        }
        if self.arithmetic != other.arithmetic {
            return Some(format!(
                "it ran with {} arithmetic, not {} (give --deterministic to every shard or to none)",
                other.arithmetic, self.arithmetic
            ));
        }
        let digests = [
            ("net (net_sha256)", &self.inputs.net, &other.inputs.net),
            ("weights (weights_sha256)", &self.inputs.weights, &other.inputs.weights),
            ("test data (data_sha256)", &self.inputs.data, &other.inputs.data),
            ("swept settings (grid_sha256)", &self.grid, &other.grid),
        ];
        digests
            .iter()
            .find(|(_, a, b)| a != b)
            .map(|(what, _, _)| format!("its {what} differ"))
    }
}

/// The columns of a whole sweep's CSV.
const CSV_COLUMNS: [&str; 6] = ["layer", "keep", "sparsity", "top1", "top5", "loss"];

/// The columns of a shard's CSV: a whole sweep's, in exact form (shortest round-trip decimals), then where the row
/// sits in the sweep and which sweep that is. The row with an empty `setting` is the unpruned net.
const SHARD_COLUMNS: [&str; 15] = [
    "layer",
    "keep",
    "sparsity",
    "top1",
    "top5",
    "loss",
    "setting",
    "shard",
    "settings",
    "images",
    "arithmetic",
    "net_sha256",
    "weights_sha256",
    "data_sha256",
    "grid_sha256",
];

/// A value as the shortest decimal that reads back as the same `f64`.
fn exact(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

/// One shard's CSV, read back.
struct ShardFile {
    path: PathBuf,
    shard: Shard,
    sweep: SweepId,
    dense: Score,
    /// (setting, row) with `drop_points` still to be computed from the merged baseline.
    rows: Vec<(usize, Row)>,
}

/// Reads and checks one shard's CSV: its columns, one row for the unpruned net, the same sweep on every row, each of
/// its settings once.
fn read_shard(path: &Path) -> Result<ShardFile> {
    let name = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("{name}: reading a shard's CSV"))?;
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let header = reader.headers().with_context(|| format!("{name}: not CSV"))?.clone();
    if header != SHARD_COLUMNS[..] {
        if header == CSV_COLUMNS[..] {
            bail!("{name}: the CSV of a whole sweep, not of a shard (write shards with sweep --shard I/N --csv)");
        }
        bail!(
            "{name}: not the CSV of a `caffe-prune sweep --shard` run (its columns are not {})",
            SHARD_COLUMNS.join(",")
        );
    }
    let mut file: Option<(Shard, SweepId)> = None;
    let mut dense: Option<Score> = None;
    let mut rows: Vec<(usize, Row)> = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{name}: not a shard's CSV"))?;
        let line = record.position().map_or(0, |p| p.line());
        let at = |what: String| anyhow::anyhow!("{name}: line {line}: {what}");
        let field = |i: usize| record.get(i).unwrap_or_default();
        let number = |i: usize| -> Result<Option<f64>> {
            let text = field(i);
            if text.is_empty() {
                return Ok(None);
            }
            text.parse()
                .map(Some)
                .map_err(|_| at(format!("{} '{text}' is not a number", SHARD_COLUMNS[i])))
        };
        let required =
            |i: usize| -> Result<f64> { number(i)?.ok_or_else(|| at(format!("no {} value", SHARD_COLUMNS[i]))) };
        let count = |i: usize| -> Result<usize> {
            field(i)
                .parse()
                .map_err(|_| at(format!("{} '{}' is not a count", SHARD_COLUMNS[i], field(i))))
        };
        let shard = parse_shard(field(7)).map_err(|e| at(format!("shard {e}")))?;
        let sweep = SweepId {
            shards: shard.count,
            settings: count(8)?,
            images: count(9)?,
            arithmetic: field(10).to_string(),
            inputs: Digests {
                net: field(11).to_string(),
                weights: field(12).to_string(),
                data: field(13).to_string(),
            },
            grid: field(14).to_string(),
        };
        match &file {
            None => file = Some((shard, sweep.clone())),
            Some((first_shard, first)) => {
                if *first_shard != shard || *first != sweep {
                    return Err(at("its shard and sweep columns differ from the first row's".into()));
                }
            }
        }
        let score = Score {
            top1: required(3)?,
            top5: number(4)?,
            loss: number(5)?,
        };
        if field(6).is_empty() {
            if dense.is_some() {
                return Err(at("a second row for the unpruned net (empty setting)".into()));
            }
            dense = Some(score);
            continue;
        }
        let k = count(6)?;
        if k >= sweep.settings {
            return Err(at(format!(
                "setting {k} is past the sweep's {} settings",
                sweep.settings
            )));
        }
        if rows.iter().any(|(j, _)| *j == k) {
            return Err(at(format!("setting {k} appears twice")));
        }
        rows.push((
            k,
            Row {
                layer: field(0).to_string(),
                keep: required(1)?,
                sparsity: required(2)?,
                score,
                drop_points: 0.0,
            },
        ));
    }
    let Some((shard, sweep)) = file else {
        bail!("{name}: no rows (a shard's CSV has at least the unpruned net's)");
    };
    let dense = dense.with_context(|| format!("{name}: no row for the unpruned net (empty setting)"))?;
    Ok(ShardFile {
        path: path.to_path_buf(),
        shard,
        sweep,
        dense,
        rows,
    })
}

/// `--merge`: the whole sweep from its shards' CSVs, checked complete and consistent, then its CSV, plot and
/// `--budget` suggestion as an unsharded run writes them.
fn merge(args: &SweepArgs) -> Result<Report> {
    let files = args.merge.iter().map(|p| read_shard(p)).collect::<Result<Vec<_>>>()?;
    let first = files.first().context("--merge needs the shards' CSVs")?;
    for file in &files[1..] {
        if let Some(what) = first.sweep.difference(&file.sweep) {
            bail!(
                "{}: not from the same sweep as {}: {what}",
                file.path.display(),
                first.path.display()
            );
        }
    }
    let (shards, settings) = (first.sweep.shards, first.sweep.settings);
    let mut by_shard: Vec<Option<&ShardFile>> = vec![None; shards];
    for file in &files {
        if let Some(other) = by_shard[file.shard.index] {
            bail!(
                "{}: shard {} given twice (also {})",
                file.path.display(),
                file.shard,
                other.path.display()
            );
        }
        by_shard[file.shard.index] = Some(file);
    }
    let mut owner: Vec<Option<(&ShardFile, &Row)>> = vec![None; settings];
    for file in &files {
        for (k, row) in &file.rows {
            if let Some((other, _)) = owner[*k] {
                bail!(
                    "setting {k} ({} keep {}) is in both {} and {}: the shards overlap",
                    row.layer,
                    row.keep,
                    other.path.display(),
                    file.path.display()
                );
            }
            owner[*k] = Some((file, row));
        }
    }
    for file in &files {
        if let Some((k, row)) = file.rows.iter().find(|(k, _)| !file.shard.owns(*k)) {
            bail!(
                "{}: setting {k} ({} keep {}) is shard {}/{shards}'s, not this file's {}",
                file.path.display(),
                row.layer,
                row.keep,
                k % shards,
                file.shard
            );
        }
    }
    if let Some(missing) = by_shard.iter().position(Option::is_none) {
        bail!(
            "shard {missing}/{shards} is missing: give the CSVs of all {shards} shards, 0/{shards} to {}/{shards}",
            shards - 1
        );
    }
    if let Some(k) = owner.iter().position(Option::is_none) {
        let file = by_shard[k % shards].map_or_else(String::new, |f| f.path.display().to_string());
        bail!(
            "{file}: setting {k} of the sweep's {settings} is missing from shard {}/{shards}",
            k % shards
        );
    }
    // Shard 0's baseline is the sweep's; the others measured the same top-1 and top-5 (the loss may differ in its
    // last bits between machines with fast arithmetic).
    let base = by_shard[0].unwrap_or(first);
    for file in &files {
        if file.dense.top1 != base.dense.top1 || file.dense.top5 != base.dense.top5 {
            bail!(
                "{}: the unpruned net scores top-1 {} there and {} in {}: the shards did not evaluate the same way",
                file.path.display(),
                file.dense.top1,
                base.dense.top1,
                base.path.display()
            );
        }
    }
    let dense = base.dense.clone();
    let rows: Vec<Row> = owner
        .iter()
        .flatten()
        .map(|(_, row)| Row {
            drop_points: (dense.top1 - row.score.top1) * 100.0,
            ..(*row).clone()
        })
        .collect();
    let swept: Vec<(String, f64)> = rows.iter().map(|r| (r.layer.clone(), r.keep)).collect();
    if grid_digest(&swept) != first.sweep.grid {
        bail!("the shards' rows do not give the settings their grid_sha256 names: a shard's CSV was edited");
    }
    let suggestion = match args.budget {
        Some(budget) => {
            let set = TestSet::open(&net_args(args)?, &args.test)?;
            // The net and weights are checked before the test set is read (ImageNet's takes minutes).
            check_same_net(args, &first.sweep, &net_digests(&set.spec, &args.test))?;
            let mut probe = set.spec.build_net()?;
            let evaluator = Evaluator { data: set.preload()? };
            if data_digest(&evaluator.data) != first.sweep.inputs.data {
                bail!("the test data given (--data, --batch) are not the shards' (data_sha256 differs)");
            }
            Some(suggest(
                &evaluator,
                &mut probe,
                &grid_of(&swept),
                &rows,
                &dense,
                budget,
            )?)
        }
        None => None,
    };
    let report = Report {
        images: first.sweep.images,
        dense,
        rows,
        suggestion,
        shard: None,
    };
    if let Some(path) = &args.csv {
        let csv = report.to_csv();
        outfile::write_atomic(path, |out| out.write_all(&csv))?;
    }
    if let Some(path) = &args.plot {
        crate::plot::write(path, &report.chart())?;
    }
    Ok(report)
}

/// For `--merge --budget`: the net, weights and arithmetic given are the ones the shards swept (and then the data,
/// once read), so the suggestion is the one an unsharded run makes.
fn check_same_net(args: &SweepArgs, sweep: &SweepId, (net, weights): &(String, String)) -> Result<()> {
    let shown = |p: &Option<PathBuf>| p.as_deref().map_or_else(String::new, |p| p.display().to_string());
    if *net != sweep.inputs.net {
        bail!(
            "--net {}: not the net the shards swept (net_sha256 differs; --proto, --stage and --level count too)",
            shown(&args.net)
        );
    }
    if *weights != sweep.inputs.weights {
        bail!(
            "--weights {}: not the weights the shards swept (weights_sha256 differs)",
            shown(&args.weights)
        );
    }
    if arithmetic_name() != sweep.arithmetic {
        bail!(
            "the shards ran with {} arithmetic and this merge with {}: give --deterministic to every shard and the \
             merge, or to none",
            sweep.arithmetic,
            arithmetic_name()
        );
    }
    Ok(())
}

/// One choice for one layer: its keep fraction, the top-1 drop it caused alone, and the weights it keeps.
#[derive(Clone, Copy, Debug)]
struct Choice {
    keep: f64,
    drop_points: f64,
    kept_weights: f64,
}

/// Hundredths of a point: the resolution of the budget split.
const UNITS_PER_POINT: f64 = 100.0;

/// The choice per layer that keeps the fewest weights while the single-layer drops add up to at most `budget`
/// points (a multiple-choice knapsack over the drop, solved exactly by dynamic programming). Every layer can
/// always take its last choice, keep 1 with no drop, so there is always an answer.
fn fewest_weights_within(options: &[Vec<Choice>], budget: f64) -> Vec<usize> {
    let capacity = (budget * UNITS_PER_POINT).floor().max(0.0) as usize;
    // best[c] = (kept weights, choices) using at most c units; filled layer by layer.
    let mut best: Vec<Option<(f64, Vec<usize>)>> = vec![Some((0.0, Vec::new())); capacity + 1];
    for choices in options {
        let mut next: Vec<Option<(f64, Vec<usize>)>> = vec![None; capacity + 1];
        for (c, slot) in next.iter_mut().enumerate() {
            for (i, choice) in choices.iter().enumerate() {
                // Accuracy gains count as no drop: the drops are noisy and only their sum is bounded.
                let cost = (choice.drop_points.max(0.0) * UNITS_PER_POINT).ceil() as usize;
                if cost > c {
                    continue;
                }
                if let Some((kept, picks)) = &best[c - cost] {
                    let total = kept + choice.kept_weights;
                    if slot.as_ref().is_none_or(|(k, _)| total < *k) {
                        let mut picks = picks.clone();
                        picks.push(i);
                        *slot = Some((total, picks));
                    }
                }
            }
        }
        best = next;
    }
    best.pop()
        .flatten()
        .map(|(_, picks)| picks)
        .unwrap_or_else(|| options.iter().map(|c| c.len() - 1).collect())
}

/// Suggests per-layer keep fractions for a top-1 drop budget: the combination keeping the fewest weights whose
/// single-layer drops sum to at most the budget; it is then measured, and while the measured drop is over the
/// budget (layers interact) the split is redone with a smaller assumed budget.
fn suggest(
    evaluator: &Evaluator,
    net: &mut engine::Net,
    grid: &Grid,
    rows: &[Row],
    dense: &Score,
    budget: f64,
) -> Result<Suggestion> {
    let options: Vec<Vec<Choice>> = grid
        .iter()
        .map(|(layer, _)| {
            let len = net_len(evaluator, layer) as f64;
            let mut choices: Vec<Choice> = rows
                .iter()
                .filter(|r| &r.layer == layer)
                .map(|r| Choice {
                    keep: r.keep,
                    drop_points: r.drop_points,
                    kept_weights: (1.0 - r.sparsity) * len,
                })
                .collect();
            choices.push(Choice {
                keep: 1.0,
                drop_points: 0.0,
                kept_weights: len,
            });
            choices
        })
        .collect();
    let total: f64 = options.iter().map(|c| c.last().map_or(0.0, |c| c.kept_weights)).sum();
    let mut assumed = budget;
    let mut evaluations = 0;
    loop {
        let picks = fewest_weights_within(&options, assumed);
        let keep: Vec<(String, f64)> = grid
            .iter()
            .zip(&options)
            .zip(&picks)
            .map(|(((layer, _), choices), &i)| (layer.clone(), choices[i].keep))
            .collect();
        let (score, sparsity) = evaluator.evaluate(net, &keep)?;
        evaluations += 1;
        let drop_points = (dense.top1 - score.top1) * 100.0;
        let within_budget = drop_points <= budget + 1e-9;
        // Every layer unpruned is the dense net: nothing left to give back.
        let all_dense = picks.iter().zip(&options).all(|(&i, c)| i == c.len() - 1);
        if within_budget || all_dense {
            let kept: f64 = keep
                .iter()
                .zip(&sparsity)
                .map(|((l, _), s)| (1.0 - s) * net_len(evaluator, l) as f64)
                .sum();
            return Ok(Suggestion {
                budget_points: budget,
                keep: keep.into_iter().collect(),
                score,
                drop_points,
                within_budget,
                kept_fraction: kept / total.max(1.0),
                evaluations,
            });
        }
        // Shrink the assumed budget by the measured excess (at least a hundredth of a point).
        assumed = (assumed - (drop_points - budget).max(1.0 / UNITS_PER_POINT)).max(0.0);
    }
}

/// Weights in a layer's weight blob.
fn net_len(evaluator: &Evaluator, layer: &str) -> usize {
    evaluator
        .data
        .spec
        .loaded
        .weights
        .iter()
        .find(|w| w.name == layer)
        .and_then(|w| w.blobs.first())
        .map_or(0, |b| b.data.len())
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{v:.6}"))
}

impl Report {
    /// The measurements as CSV.
    pub fn to_csv(&self) -> Vec<u8> {
        // The csv crate quotes what needs quoting: a layer named `fc,1` or `a "b"` comes back as it was.
        let mut out = csv::Writer::from_writer(Vec::new());
        let rows = std::iter::once(CSV_COLUMNS.map(String::from)).chain(self.rows.iter().map(|r| {
            [
                r.layer.clone(),
                r.keep.to_string(),
                format!("{:.6}", r.sparsity),
                format!("{:.6}", r.score.top1),
                opt(r.score.top5),
                opt(r.score.loss),
            ]
        }));
        for row in rows {
            out.write_record(&row).expect("writing to memory cannot fail");
        }
        out.into_inner().expect("writing to memory cannot fail")
    }

    /// One shard's measurements as CSV for `--merge`: the unpruned net's row (empty setting), then each of the
    /// shard's rows, `settings[i]` being the position of `rows[i]` in the whole sweep; values exact, and on every row
    /// the shard and the sweep's identity.
    fn to_shard_csv(&self, shard: Shard, sweep: &SweepId, settings: &[usize]) -> Vec<u8> {
        let mut out = csv::Writer::from_writer(Vec::new());
        let identity = [
            shard.to_string(),
            sweep.settings.to_string(),
            sweep.images.to_string(),
            sweep.arithmetic.clone(),
            sweep.inputs.net.clone(),
            sweep.inputs.weights.clone(),
            sweep.inputs.data.clone(),
            sweep.grid.clone(),
        ];
        let dense = [
            String::new(),
            "1".to_string(),
            "0".to_string(),
            exact(Some(self.dense.top1)),
            exact(self.dense.top5),
            exact(self.dense.loss),
            String::new(),
        ];
        let rows = self.rows.iter().zip(settings).map(|(r, k)| {
            [
                r.layer.clone(),
                exact(Some(r.keep)),
                exact(Some(r.sparsity)),
                exact(Some(r.score.top1)),
                exact(r.score.top5),
                exact(r.score.loss),
                k.to_string(),
            ]
        });
        let header = SHARD_COLUMNS.map(String::from);
        let records = std::iter::once(header.to_vec()).chain(
            std::iter::once(dense)
                .chain(rows)
                .map(|row| row.iter().chain(&identity).cloned().collect()),
        );
        for record in records {
            out.write_record(&record).expect("writing to memory cannot fail");
        }
        out.into_inner().expect("writing to memory cannot fail")
    }

    /// Top-1 accuracy against keep fraction, one line per layer.
    pub fn chart(&self) -> LineChart {
        let mut series: Vec<Series> = Vec::new();
        for r in &self.rows {
            if series.last().is_none_or(|s| s.name != r.layer) {
                series.push(Series {
                    name: r.layer.clone(),
                    points: Vec::new(),
                });
            }
            if let Some(s) = series.last_mut() {
                s.points.push((r.keep, r.score.top1 * 100.0));
            }
        }
        LineChart {
            title: format!(
                "Top-1 accuracy, one layer pruned at a time (unpruned: {:.2}%)",
                self.dense.top1 * 100.0
            ),
            x_label: "keep fraction".into(),
            y_label: "top-1 accuracy (%)".into(),
            series,
        }
    }

    /// The table, and the suggestion if any.
    pub fn to_text(&self) -> String {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(vec![
            "layer",
            "keep",
            "sparsity %",
            "top-1 %",
            "top-5 %",
            "loss",
            "drop (points)",
        ]);
        let pct = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{:.2}", v * 100.0));
        table.add_row(vec![
            "(none)".to_string(),
            "1".to_string(),
            "0.00".to_string(),
            pct(Some(self.dense.top1)),
            pct(self.dense.top5),
            self.dense.loss.map_or_else(|| "-".into(), |l| format!("{l:.4}")),
            "0.00".to_string(),
        ]);
        for r in &self.rows {
            table.add_row(vec![
                r.layer.clone(),
                format!("{}", (r.keep * 1e6).round() / 1e6),
                format!("{:.2}", r.sparsity * 100.0),
                pct(Some(r.score.top1)),
                pct(r.score.top5),
                r.score.loss.map_or_else(|| "-".into(), |l| format!("{l:.4}")),
                format!("{:.2}", r.drop_points),
            ]);
        }
        for column in 1..7 {
            if let Some(c) = table.column_mut(column) {
                c.set_cell_alignment(CellAlignment::Right);
            }
        }
        let mut text = format!("{} images per evaluation\n{table}\n", self.images);
        if let Some(shard) = self.shard {
            let _ = writeln!(
                text,
                "shard {shard}: its share of the settings only; join every shard's CSV with `caffe-prune sweep --merge`"
            );
        }
        if let Some(s) = &self.suggestion {
            let keep: Vec<String> = s
                .keep
                .iter()
                .map(|(l, t)| format!("{l}={}", (t * 1e6).round() / 1e6))
                .collect();
            let _ = writeln!(
                text,
                "budget {:.2} points: --keep {}\n  measured top-1 {:.2}% (drop {:.2} points, {}), {:.2}% of the swept weights kept, {} evaluation(s)",
                s.budget_points,
                keep.join(","),
                s.score.top1 * 100.0,
                s.drop_points,
                if s.within_budget { "within budget" } else { "over budget" },
                s.kept_fraction * 100.0,
                s.evaluations
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_keeps_layer_names_with_commas_and_quotes() {
        let score = Score {
            top1: 0.5,
            top5: None,
            loss: Some(1.25),
        };
        let names = ["fc,1", "conv \"a\"", "plain", "line\nbreak"];
        let report = Report {
            images: 1,
            dense: score.clone(),
            rows: names
                .iter()
                .map(|name| Row {
                    layer: name.to_string(),
                    keep: 0.1,
                    sparsity: 0.9,
                    score: score.clone(),
                    drop_points: 0.0,
                })
                .collect(),
            suggestion: None,
            shard: None,
        };
        let csv = report.to_csv();
        let mut reader = csv::Reader::from_reader(csv.as_slice());
        assert_eq!(
            reader.headers().unwrap(),
            vec!["layer", "keep", "sparsity", "top1", "top5", "loss"]
        );
        let back: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(back.len(), names.len());
        for (record, name) in back.iter().zip(names) {
            assert_eq!(&record[0], name);
            assert_eq!(&record[1], "0.1");
            assert_eq!(&record[4], "");
            assert_eq!(&record[5], "1.250000");
        }
    }

    #[test]
    fn shards_are_0_based_i_of_n() {
        assert_eq!(parse_shard("0/1"), Ok(Shard { index: 0, count: 1 }));
        assert_eq!(parse_shard("2/3"), Ok(Shard { index: 2, count: 3 }));
        assert_eq!(parse_shard("2/3").unwrap().to_string(), "2/3");
        for bad in ["3/3", "1/0", "0", "a/2", "-1/2", "+1/2", "1/2/3", "", "1 /2x"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
        assert!(parse_shard("3/3").unwrap_err().contains("counted from 0 (0/3 to 2/3)"));
    }

    #[test]
    fn the_round_robin_split_is_balanced_and_covers_every_setting_once() {
        for settings in 0..20 {
            for count in 1..7 {
                let sizes: Vec<usize> = (0..count)
                    .map(|index| (0..settings).filter(|&k| Shard { index, count }.owns(k)).count())
                    .collect();
                assert_eq!(sizes.iter().sum::<usize>(), settings);
                assert!(
                    sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
                    "{sizes:?}"
                );
            }
        }
    }

    #[test]
    fn the_grid_comes_back_from_its_settings() {
        let grid: Grid = vec![("conv2".into(), vec![0.1, 0.3, 0.3]), ("ip1".into(), vec![0.05])];
        assert_eq!(grid_of(&settings_of(&grid)), grid);
    }

    /// A made-up whole sweep of `n` settings over two layers, with values that need every digit.
    fn made_up(n: usize) -> (Vec<(String, f64)>, Report) {
        let settings: Vec<(String, f64)> = (0..n)
            .map(|k| {
                let layer = if k < n / 2 { "conv,2 \"a\"" } else { "ip1" };
                (layer.to_string(), 0.1 + 0.2 * k as f64 / 3.0)
            })
            .collect();
        let dense = Score {
            top1: 0.9914,
            top5: Some(1.0),
            loss: Some(0.027_269_260_839_693_74),
        };
        let rows = settings
            .iter()
            .enumerate()
            .map(|(k, (layer, keep))| {
                let top1 = 0.9 - k as f64 / 7.0 / 100.0;
                Row {
                    layer: layer.clone(),
                    keep: *keep,
                    sparsity: 1.0 - keep + 1e-7 / 3.0,
                    score: Score {
                        top1,
                        top5: (k % 2 == 0).then_some(0.99 + 1.0 / 3e4),
                        loss: Some(0.1 / 3.0 + k as f64),
                    },
                    drop_points: (dense.top1 - top1) * 100.0,
                }
            })
            .collect();
        let report = Report {
            images: 10_000,
            dense,
            rows,
            suggestion: None,
            shard: None,
        };
        (settings, report)
    }

    fn made_up_id(settings: &[(String, f64)], shards: usize) -> SweepId {
        SweepId {
            shards,
            settings: settings.len(),
            images: 10_000,
            arithmetic: "fast".into(),
            inputs: Digests {
                net: "11".repeat(32),
                weights: "22".repeat(32),
                data: "33".repeat(32),
            },
            grid: grid_digest(settings),
        }
    }

    /// Each shard's CSV of the made-up sweep, as `--shard I/N --csv` writes it.
    fn write_shards(dir: &Path, settings: &[(String, f64)], whole: &Report, count: usize) -> Vec<PathBuf> {
        let id = made_up_id(settings, count);
        (0..count)
            .map(|index| {
                let shard = Shard { index, count };
                let mine: Vec<usize> = (0..settings.len()).filter(|&k| shard.owns(k)).collect();
                let report = Report {
                    rows: mine.iter().map(|&k| whole.rows[k].clone()).collect(),
                    shard: Some(shard),
                    dense: whole.dense.clone(),
                    images: whole.images,
                    suggestion: None,
                };
                let path = dir.join(format!("shard-{index}-of-{count}.csv"));
                std::fs::write(&path, report.to_shard_csv(shard, &id, &mine)).unwrap();
                path
            })
            .collect()
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        sweep: SweepArgs,
    }

    fn merged<P: AsRef<Path>>(files: &[P], extra: &[&str]) -> Result<Report> {
        use clap::Parser as _;
        let mut argv: Vec<String> = vec!["sweep".into(), "--merge".into()];
        argv.extend(files.iter().map(|f| f.as_ref().display().to_string()));
        argv.extend(extra.iter().map(|s| s.to_string()));
        merge(&Cli::try_parse_from(argv).unwrap().sweep)
    }

    #[test]
    fn merged_shards_give_the_whole_sweep_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (settings, whole) = made_up(7);
        for count in [1, 2, 3, 7, 9] {
            let mut files = write_shards(dir.path(), &settings, &whole, count);
            files.reverse();
            let report = merged(&files, &[]).unwrap();
            assert_eq!(report.to_csv(), whole.to_csv(), "{count} shards");
            assert_eq!(report.dense, whole.dense);
            assert_eq!(
                serde_json::to_string(&report).unwrap(),
                serde_json::to_string(&whole).unwrap()
            );
            assert_eq!(report.chart().to_svg(), whole.chart().to_svg());
        }
        // A shard with no settings still says which sweep it is part of.
        let files = write_shards(dir.path(), &settings, &whole, 9);
        let text = std::fs::read_to_string(&files[8]).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text
            .lines()
            .nth(1)
            .unwrap()
            .starts_with(",1,0,0.9914,1,0.02726926083969374,,8/9,7,10000,fast,"));
    }

    #[test]
    fn merge_refuses_missing_duplicate_mismatched_and_overlapping_shards() {
        let dir = tempfile::tempdir().unwrap();
        let (settings, whole) = made_up(5);
        let two = write_shards(dir.path(), &settings, &whole, 2);
        let three = write_shards(dir.path(), &settings, &whole, 3);
        fn error<P: AsRef<Path>>(files: &[P]) -> String {
            format!("{:#}", merged(files, &[]).expect_err("an error"))
        }
        let named = |path: &PathBuf| path.display().to_string();

        let e = error(&three[..2]);
        assert!(e.contains("shard 2/3 is missing"), "{e}");
        let e = error(&[&three[0], &three[1], &three[1], &three[2]]);
        assert!(e.contains("shard 1/3 given twice"), "{e}");
        let e = error(&[&two[0], &three[1], &three[2]]);
        assert!(
            e.contains("not from the same sweep") && e.contains("split into 3 shards, not 2"),
            "{e}"
        );

        // Another sweep's weights.
        let other = dir.path().join("other.csv");
        let text = std::fs::read_to_string(&two[1]).unwrap();
        std::fs::write(&other, text.replace(&"22".repeat(32), &"44".repeat(32))).unwrap();
        let e = error(&[&two[0], &other]);
        assert!(e.contains("its weights (weights_sha256) differ"), "{e}");

        // Shard 1 also holding shard 0's first row: overlapping rows.
        let zero = std::fs::read_to_string(&two[0]).unwrap();
        let stolen = zero.lines().nth(2).unwrap().replace(",0/2,", ",1/2,");
        std::fs::write(&other, format!("{text}{stolen}\n")).unwrap();
        let e = error(&[&two[0], &other]);
        assert!(
            e.contains("setting 0 (conv,2 \"a\" keep 0.1) is in both") && e.contains("overlap"),
            "{e}"
        );
        // ... and alone, a row that is another shard's.
        let e = error(&[&other]);
        assert!(
            e.contains("setting 0") && e.contains("is shard 0/2's, not this file's 1/2"),
            "{e}"
        );

        // A shard with a row missing, and one with an edited row.
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&other, format!("{}\n", lines[..lines.len() - 1].join("\n"))).unwrap();
        let e = error(&[&two[0], &other]);
        assert!(
            e.contains(&named(&other)) && e.contains("setting 3 of the sweep's 5 is missing from shard 1/2"),
            "{e}"
        );
        std::fs::write(&other, text.replace("ip1,", "ip2,")).unwrap();
        let e = error(&[&two[0], &other]);
        assert!(e.contains("was edited"), "{e}");

        // Not a shard's CSV.
        std::fs::write(&other, whole.to_csv()).unwrap();
        assert!(error(&[&other]).contains("the CSV of a whole sweep, not of a shard"));
        std::fs::write(&other, "a,b\n1,2\n").unwrap();
        assert!(error(&[&other]).contains("not the CSV of a `caffe-prune sweep --shard` run"));
        std::fs::write(&other, zero.replacen("0.9914", "x", 1)).unwrap();
        let e = error(&[&other]);
        assert!(e.contains("line 2: top1 'x' is not a number"), "{e}");
        // A baseline measured differently.
        std::fs::write(&other, text.replacen("0.9914", "0.9915", 1)).unwrap();
        let e = error(&[&two[0], &other]);
        assert!(
            e.contains("the unpruned net scores top-1 0.9915 there and 0.9914"),
            "{e}"
        );
    }

    #[test]
    fn linspace_includes_both_ends() {
        assert_eq!(linspace(0.3, 0.7, 5).len(), 5);
        assert_eq!(linspace(0.3, 0.7, 5), vec![0.3, 0.4, 0.5, 0.6, 0.7]);
        assert!((linspace(0.05, 0.3, 5)[1] - 0.1125).abs() < 1e-12);
        assert_eq!(linspace(0.5, 0.9, 1), vec![0.5]);
    }

    #[test]
    fn budget_split_keeps_the_fewest_weights() {
        let c = |keep: f64, drop_points: f64, kept_weights: f64| Choice {
            keep,
            drop_points,
            kept_weights,
        };
        // A small layer with a costly drop and a big layer with a cheap one: the budget goes to the big layer.
        let options = vec![
            vec![c(0.3, 0.4, 150.0), c(0.6, 0.1, 300.0), c(1.0, 0.0, 500.0)],
            vec![c(0.05, 0.45, 20_000.0), c(0.1, 0.2, 40_000.0), c(1.0, 0.0, 400_000.0)],
        ];
        assert_eq!(fewest_weights_within(&options, 0.5), vec![2, 0]);
        assert_eq!(fewest_weights_within(&options, 0.55), vec![1, 0]);
        assert_eq!(fewest_weights_within(&options, 0.3), vec![1, 1]);
        assert_eq!(fewest_weights_within(&options, 0.0), vec![2, 2]);
        // Accuracy gains cost nothing.
        let gains = vec![vec![c(0.2, -0.1, 10.0), c(1.0, 0.0, 50.0)]];
        assert_eq!(fewest_weights_within(&gains, 0.0), vec![0]);
    }

    #[test]
    fn grid_values_parse_and_reject_bad_input() {
        assert_eq!(parse_values("0.1,0.2", "x").unwrap(), vec![0.1, 0.2]);
        assert_eq!(parse_values("0:1:3", "x").unwrap(), vec![0.0, 0.5, 1.0]);
        assert!(parse_values("0.1,1.5", "x")
            .unwrap_err()
            .to_string()
            .contains("not in [0, 1]"));
        assert!(parse_values("0:1:0", "x")
            .unwrap_err()
            .to_string()
            .contains("positive integer"));
        assert!(parse_values("abc", "x")
            .unwrap_err()
            .to_string()
            .contains("not a number"));
    }
}
