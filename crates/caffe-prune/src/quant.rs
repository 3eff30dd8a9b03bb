//! `caffe-prune quantize`: weight sharing (Deep Compression stage 2) of a caffemodel, after training or trained
//! (the shared values fine-tuned by the solver), and what each stage of the compression stores. Glue:
//! `quantize` clusters, `train` fine-tunes, `sparse` counts the relative-index entries, `entropy` sizes the
//! paper's Huffman-coded streams, `caffez` codes the model, `caffemodel` rewrites the payloads.

use anyhow::{bail, Context, Result};
use caffemodel::ModelFile;
use comfy_table::{presets::UTF8_FULL_CONDENSED, CellAlignment, Table};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `caffe-prune quantize`.
#[derive(clap::Args, Debug, Clone)]
pub struct QuantizeArgs {
    /// The model to quantize (.caffemodel, any generation), usually pruned and retrained.
    #[arg(required_unless_present = "solver", conflicts_with = "solver")]
    pub input: Option<PathBuf>,
    /// Trained quantization: fine-tune the shared values with this solver (.prototxt) in --rounds of --steps
    /// iterations; each value moves by the summed gradients of its weights, by the solver's rule.
    #[arg(long, value_name = "S.prototxt", requires = "weights")]
    pub solver: Option<PathBuf>,
    /// With --solver: the model to quantize.
    #[arg(long, value_name = "W.caffemodel", requires = "solver")]
    pub weights: Option<PathBuf>,
    /// With --solver: rounds of fine-tuning, accuracy measured after each.
    #[arg(long, default_value_t = 4, requires = "solver")]
    pub rounds: usize,
    /// With --solver: solver iterations per round.
    #[arg(long, default_value_t = 500, requires = "solver")]
    pub steps: i32,
    /// With --solver: multiplies the solver's base_lr.
    #[arg(long, default_value_t = 1.0, requires = "solver")]
    pub lr_scale: f32,
    /// With --solver: re-cluster every R iterations, as the tutorial's quantize.py does: the last fifth of each
    /// period trains the weights themselves (the pruning mask held), then k-means shares them anew and the shared
    /// values train again.
    #[arg(long, value_name = "R", requires = "solver", value_parser = clap::value_parser!(i32).range(5..))]
    pub recluster: Option<i32>,
    #[command(flatten)]
    pub data: crate::train::DataArgs,
    #[command(flatten)]
    pub distill: crate::train::DistillArgs,
    #[command(flatten)]
    pub sharing: SharingArgs,
    /// The quantized model: a copy of the input with every quantized weight replaced by its shared value (only
    /// those payloads change); written as a .caffez when OUT ends so. Without -o, only the report.
    #[arg(short, long, value_name = "OUT.caffemodel|OUT.caffez")]
    pub output: Option<PathBuf>,
    /// With --solver: draw test accuracy (or, without a test net, the training loss) per round (SVG or PNG, by the file's extension).
    #[arg(long, value_name = "FILE.svg|png", requires = "solver")]
    pub plot: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How weights are shared: `quantize` and `compress` take the same flags.
#[derive(clap::Args, Debug, Clone)]
pub struct SharingArgs {
    /// Bits per layer, LAYER=B (1..8: at most 2^B - 1 shared nonzero values). Layers not named take the paper's
    /// LeNet setting by type: Convolution and Deconvolution 8, InnerProduct 5. Biases are left as they are.
    #[arg(long, value_name = "LAYER=B,...", value_delimiter = ',')]
    pub bits: Vec<String>,
    /// Where the k-means starts: linear (the paper's choice and the tutorial's scipy call), density (evenly
    /// spaced on the weights' CDF), random or kmeans++ (both seeded by --seed).
    #[arg(long, value_enum, default_value_t = InitArg::Linear)]
    pub init: InitArg,
    /// Seed of the random and kmeans++ starts.
    #[arg(long, default_value_t = 1701)]
    pub seed: u64,
    /// Entropy-constrained sharing (ECSQ, Choi et al. 2017): after k-means, each weight takes the value that
    /// minimises its squared error over the k-means mean squared error plus LAMBDA times the value's code length in
    /// bits, so codes cost fewer bits once coded for a little more error. 0 (quantize's default) is plain k-means; 3
    /// takes LeNet's retrained ip1 from 4.0 to 3.4 bits a code.
    #[arg(long, value_name = "LAMBDA")]
    pub entropy: Option<f64>,
    /// Bits per relative index, for the sizes after pruning and after quantization.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub index_bits: u8,
}

/// The k-means starts.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitArg {
    /// Evenly spaced between the smallest and largest nonzero weight.
    Linear,
    /// Evenly spaced on the weights' cumulative distribution.
    Density,
    /// Nonzero weights drawn at random.
    Random,
    /// k-means++ seeding.
    #[value(name = "kmeans++")]
    KMeansPlusPlus,
}

impl InitArg {
    fn with_seed(self, seed: u64) -> quantize::Init {
        match self {
            InitArg::Linear => quantize::Init::Linear,
            InitArg::Density => quantize::Init::Density,
            InitArg::Random => quantize::Init::Random { seed },
            InitArg::KMeansPlusPlus => quantize::Init::KMeansPlusPlus { seed },
        }
    }
}

/// The paper's LeNet-5 setting by layer type: 8 bits for convolutions, 5 for fully connected layers.
fn default_bits(type_name: &str) -> u32 {
    match type_name {
        "InnerProduct" => 5,
        _ => 8,
    }
}

pub(crate) fn parse_bits(entries: &[String]) -> Result<BTreeMap<String, u32>> {
    let mut out = BTreeMap::new();
    for entry in entries.iter().filter(|e| !e.is_empty()) {
        let (name, bits) = entry
            .rsplit_once('=')
            .with_context(|| format!("--bits entry '{entry}' is not LAYER=B"))?;
        let bits: u32 = bits
            .trim()
            .parse()
            .ok()
            .filter(|b| (1..=8).contains(b))
            .with_context(|| format!("--bits entry '{entry}': B must be a whole number in 1..8"))?;
        if out.insert(name.trim().to_string(), bits).is_some() {
            bail!("--bits names layer '{name}' twice");
        }
    }
    Ok(out)
}

/// One quantized layer.
#[derive(Serialize, Debug, Clone)]
pub struct LayerRow {
    /// The layer.
    pub layer: String,
    /// Its modern type.
    pub type_name: String,
    /// Bits per code.
    pub bits: u32,
    /// Weights in the blob.
    pub weights: usize,
    /// Nonzero weights (kept by pruning; sharing keeps exactly these).
    pub nonzeros: usize,
    /// Shared nonzero values (at most 2^bits - 1; empty clusters are dropped).
    pub centroids: usize,
    /// k-means iterations.
    pub iterations: u32,
    /// Largest |w - shared(w)| over the blob, relative to max |w|.
    pub max_error: f64,
    /// Bytes of the blob dense (float32).
    pub dense_bytes: u64,
    /// Relative-index form with float values (after pruning: stage P).
    pub pruned_bytes: u64,
    /// Relative-index form with `bits`-bit codes and `index_bits`-bit gaps, plus the float32 codebook (P+Q).
    pub quantized_bytes: u64,
    /// Codes and gaps Huffman-coded as the paper does (canonical, with their tables), plus the codebook.
    pub huffman_bytes: u64,
    /// The blob's section in the `.caffez` file: codebook, codes and positions arithmetic-coded (P+Q+H).
    pub coded_bytes: u64,
}

/// One round of trained quantization.
#[derive(Serialize, Debug, Clone)]
pub struct QuantRound {
    /// The round (0: shared values as clustered, before fine-tuning).
    pub round: usize,
    /// Solver iterations so far.
    pub iterations: i64,
    /// Test accuracy (`None`: no test net).
    pub accuracy: Option<f64>,
    /// Test loss.
    pub loss: Option<f64>,
    /// Smoothed training loss at the end of the round.
    pub train_loss: Option<f64>,
}

/// What `quantize` did.
#[derive(Serialize, Debug)]
pub struct QuantizeReport {
    /// With --solver: the model's test accuracy before sharing.
    pub dense_accuracy: Option<f64>,
    /// With --solver: accuracy per round of fine-tuning (round 0: right after clustering).
    pub rounds: Vec<QuantRound>,
    /// The input model.
    pub input: String,
    /// k-means start.
    pub init: String,
    /// Bits per relative index used for the sizes.
    pub index_bits: u8,
    /// A row per quantized layer.
    pub layers: Vec<LayerRow>,
    /// Every blob of the model dense (float32), quantized or not.
    pub model_dense_bytes: u64,
    /// The model with the quantized layers at each stage and every other blob dense: P, P+Q, P+Q+H.
    pub model_pruned_bytes: u64,
    /// See `model_pruned_bytes`.
    pub model_quantized_bytes: u64,
    /// The whole `.caffez` file (P+Q+H): every byte of the model, coded or not.
    pub model_coded_bytes: u64,
    /// The model with the quantized layers Huffman-coded as the paper does and every other blob dense.
    pub model_huffman_bytes: u64,
    /// Where the quantized model was written.
    pub output: Option<String>,
}

/// Bytes of `bits` bits.
fn bytes_of_bits(bits: u64) -> u64 {
    bits.div_ceil(8)
}

/// The row of one shared blob: `original` before sharing, `quantized` after (codebook and codes).
fn layer_row(
    layer: &str,
    type_name: &str,
    bits: u32,
    original: &[f32],
    quantized: &quantize::Quantized,
    index_bits: u8,
) -> Result<LayerRow> {
    let context = || format!("layer '{layer}'");
    let shared = quantized.reconstruct();
    let scale = original.iter().fold(0f32, |m, v| m.max(v.abs()));
    let max_error = original
        .iter()
        .zip(&shared)
        .map(|(w, q)| f64::from((w - q).abs()))
        .fold(0.0, f64::max)
        / f64::from(scale).max(f64::MIN_POSITIVE);
    let pruned_entries = sparse::gap_entry_count(original, index_bits).with_context(context)?;
    let entries = sparse::encode_gaps(&shared, index_bits).with_context(context)?;
    // Codes of the stored entries by value (fine-tuned codebooks need not stay ascending; fillers hold 0.0).
    let code_of: std::collections::HashMap<u32, u8> = quantized
        .codebook
        .iter()
        .enumerate()
        .map(|(code, v)| (v.to_bits(), code as u8))
        .collect();
    let codes: Vec<u8> = entries
        .values
        .iter()
        .map(|v| code_of.get(&v.to_bits()).copied().unwrap_or(0))
        .collect();
    let sparse::Gaps::U8(gaps) = &entries.gaps else {
        bail!("layer '{layer}': index bits above 8 are not coded");
    };
    let codebook_bytes = 4 * quantized.codebook.len() as u64;
    let entry_count = entries.values.len() as u64;
    Ok(LayerRow {
        layer: layer.to_string(),
        type_name: type_name.to_string(),
        bits,
        weights: original.len(),
        nonzeros: shared.iter().filter(|&&v| v != 0.0).count(),
        centroids: quantized.codebook.len() - 1,
        iterations: quantized.iterations,
        max_error,
        dense_bytes: 4 * original.len() as u64,
        pruned_bytes: pruned_entries as u64 * (4 + 1),
        quantized_bytes: bytes_of_bits(entry_count * u64::from(bits + u32::from(index_bits))) + codebook_bytes,
        huffman_bytes: entropy::encoded_len(&codes) + entropy::encoded_len(gaps) + codebook_bytes,
        coded_bytes: 0,
    })
}

/// Clusters one blob.
fn share(layer: &str, values: &[f32], bits: u32, init: quantize::Init, entropy: f64) -> Result<quantize::Quantized> {
    let options = quantize::KMeansOptions::new(bits).with_init(init);
    let shared = quantize::quantize(values, &options).with_context(|| format!("layer '{layer}'"))?;
    quantize::entropy_constrained(values, &shared, entropy).with_context(|| format!("layer '{layer}'"))
}

/// Checks `--bits` against the layers (name, modern type, has weights) of the net.
fn check_named(named: &BTreeMap<String, u32>, layers: &[(String, String, bool)], source: &Path) -> Result<()> {
    for name in named.keys() {
        match layers.iter().find(|(n, _, _)| n == name) {
            None => bail!("{}: no layer named '{name}'", source.display()),
            Some((_, type_name, has_weights)) if !caffemodel::is_prunable_type(type_name) || !has_weights => {
                bail!(
                    "{}: layer '{name}' ({type_name}) has no weight blob to share",
                    source.display()
                )
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Runs `quantize`.
pub fn quantize_model(args: &QuantizeArgs) -> Result<QuantizeReport> {
    let named = parse_bits(&args.sharing.bits)?;
    let (input, solver_path) = match (&args.input, &args.solver, &args.weights) {
        (Some(input), None, _) => (input.as_path(), None),
        (None, Some(solver), Some(weights)) => (weights.as_path(), Some(solver.as_path())),
        _ => bail!("give the model to quantize, or --solver S --weights W"),
    };
    let inputs: Vec<&Path> = std::iter::once(input).chain(solver_path).collect();
    let outputs: Vec<&Path> = args.output.iter().chain(&args.plot).map(PathBuf::as_path).collect();
    outfile::check_outputs(&outputs, &inputs)?;
    if let Some(plot) = &args.plot {
        crate::plot::check_plot_name(plot)?;
    }
    if args.rounds == 0 || args.steps <= 0 {
        bail!("--rounds and --steps must be positive");
    }
    let model = caffez::open_model(input)?;
    let mut net = model.net()?;
    let layers = net.layers();
    let summary: Vec<(String, String, bool)> = layers
        .iter()
        .map(|l| (l.name().to_string(), l.modern_type_name(), !l.blobs().is_empty()))
        .collect();
    check_named(&named, &summary, input)?;
    let init = args.sharing.init.with_seed(args.sharing.seed);
    let mut targets: Vec<Target> = Vec::new();
    let mut model_dense = 0u64;
    let mut others = 0u64;
    for layer in &layers {
        let blobs = layer.blobs();
        let dense: u64 = blobs.iter().map(|b| 4 * b.data().len() as u64).sum();
        model_dense += dense;
        let type_name = layer.modern_type_name();
        let Some(weights) = blobs.first().filter(|_| caffemodel::is_prunable_type(&type_name)) else {
            others += dense;
            continue;
        };
        let name = layer.name().to_string();
        let bits = named.get(&name).copied().unwrap_or_else(|| default_bits(&type_name));
        let values = weights.data().to_vec_f32();
        others += dense - 4 * values.len() as u64;
        targets.push((layer.index, name, type_name, bits, values));
    }
    drop(layers);
    if targets.is_empty() {
        bail!(
            "{}: no Convolution, InnerProduct or Deconvolution layer with weights",
            input.display()
        );
    }
    let mut shared: Vec<quantize::Quantized> = targets
        .iter()
        .map(|(_, name, _, bits, values)| share(name, values, *bits, init, args.sharing.entropy.unwrap_or(0.0)))
        .collect::<Result<_>>()?;
    let (mut dense_accuracy, mut rounds) = (None, Vec::new());
    let quantized_model = if let Some(solver_path) = solver_path {
        let tuned = fine_tune(args, solver_path, input, &targets, &mut shared)?;
        dense_accuracy = tuned.dense_accuracy;
        rounds = tuned.rounds;
        crate::train::model_bytes(input, &tuned.solver)?
    } else {
        for ((index, ..), quantized) in targets.iter().zip(&shared) {
            net.set_blob_data(*index, 0, quantized.reconstruct())?;
        }
        net.to_bytes()
    };
    let quantized_model = ModelFile::from_bytes(input, quantized_model)?;
    let compressed = caffez::compress(&quantized_model)?;
    if let Some(output) = &args.output {
        let bytes = if is_caffez_path(output) {
            &compressed.bytes
        } else {
            quantized_model.bytes()
        };
        outfile::write_atomic(output, |w| std::io::Write::write_all(w, bytes))?;
    }
    let mut rows: Vec<LayerRow> = targets
        .iter()
        .zip(&shared)
        .map(|((_, name, type_name, bits, values), q)| {
            layer_row(name, type_name, *bits, values, q, args.sharing.index_bits)
        })
        .collect::<Result<_>>()?;
    for row in &mut rows {
        row.coded_bytes = compressed
            .blobs
            .iter()
            .find(|b| b.layer == row.layer)
            .map_or(row.dense_bytes, |b| b.bytes);
    }
    let sum = |f: fn(&LayerRow) -> u64| others + rows.iter().map(f).sum::<u64>();
    let report = QuantizeReport {
        dense_accuracy,
        rounds,
        input: input.display().to_string(),
        init: format!("{:?}", args.sharing.init).to_lowercase(),
        index_bits: args.sharing.index_bits,
        model_dense_bytes: model_dense,
        model_pruned_bytes: sum(|r| r.pruned_bytes),
        model_quantized_bytes: sum(|r| r.quantized_bytes),
        model_coded_bytes: compressed.bytes.len() as u64,
        model_huffman_bytes: sum(|r| r.huffman_bytes),
        layers: rows,
        output: args.output.as_deref().map(|p| Path::new(p).display().to_string()),
    };
    if let Some(plot) = &args.plot {
        crate::plot::write(plot, &report.chart())?;
    }
    Ok(report)
}

/// What fine-tuning the shared values gave.
struct Tuned {
    dense_accuracy: Option<f64>,
    rounds: Vec<QuantRound>,
    solver: train::Solver,
}

/// The solver's codebooks from `shared`, in the order of the targets.
fn codebooks(targets: &[Target], shared: &[quantize::Quantized]) -> Vec<train::ParamCodebook> {
    targets
        .iter()
        .zip(shared)
        .map(|((_, name, ..), q)| train::ParamCodebook {
            layer: name.clone(),
            index: 0,
            codes: q.codes.clone(),
            codebook: q.codebook.clone(),
        })
        .collect()
}

/// A quantized weight blob: (layer index, name, type, bits, values before sharing).
type Target = (usize, String, String, u32, Vec<f32>);

/// Trained quantization: the solver's net starts from the weights, takes the codebooks, and trains them;
/// `shared` ends with the fine-tuned codebooks (and, with --recluster, the last clustering's codes).
fn fine_tune(
    args: &QuantizeArgs,
    solver_path: &Path,
    weights: &Path,
    targets: &[Target],
    shared: &mut [quantize::Quantized],
) -> Result<Tuned> {
    use crate::train::{accuracy_of, say, RoundProgress, Setup};
    let setup = Setup::for_rounds(solver_path, &args.data, args.lr_scale)?;
    let mut solver = setup.solver()?;
    solver.load_weights(&crate::train::weights_of(weights)?)?;
    args.distill.apply(&mut solver, weights)?;
    let (dense_accuracy, _) = accuracy_of(&solver.test_all()?)?;
    solver
        .set_codebooks(&codebooks(targets, shared))
        .context("the solver's train net does not match the model")?;
    let mut progress = RoundProgress::new(clikit::progress_bar(
        args.rounds as u64 * args.steps as u64,
        "[{bar:30}] iter {pos}/{len} {prefix} {msg} ({per_sec}, ETA {eta})",
    ));
    let mut rounds = Vec::with_capacity(args.rounds + 1);
    let mut iterations = 0i64;
    // Iterations into the current re-clustering period.
    let mut in_period = 0i32;
    for round in 0..=args.rounds {
        if round > 0 {
            progress.bar.set_prefix(format!("round {round}/{}", args.rounds));
            match args.recluster {
                None => {
                    progress.step(&mut solver, args.steps)?;
                }
                Some(period) => {
                    let mut left = args.steps;
                    while left > 0 {
                        let shared_steps = period - period / 5;
                        let phase_end = if in_period < shared_steps { shared_steps } else { period };
                        let n = (phase_end - in_period).min(left);
                        progress.step(&mut solver, n)?;
                        (left, in_period) = (left - n, in_period + n);
                        if in_period == shared_steps {
                            // The free phase: the weights train themselves, the pruned ones held at zero.
                            store_codebooks(&solver, targets, shared)?;
                            let masks: Vec<train::ParamMask> = targets
                                .iter()
                                .zip(shared.iter())
                                .map(|((_, name, ..), q)| train::ParamMask {
                                    layer: name.clone(),
                                    index: 0,
                                    keep: q.codes.iter().map(|&c| c != 0).collect(),
                                })
                                .collect();
                            solver.set_codebooks(&[])?;
                            solver.set_masks(&masks)?;
                        } else if in_period == period {
                            recluster(&mut solver, args, targets, shared)?;
                            in_period = 0;
                        }
                    }
                }
            }
            iterations += i64::from(args.steps);
        }
        let (accuracy, loss) = accuracy_of(&solver.test_all()?)?;
        let train_loss = if round > 0 {
            progress.last_loss.map(f64::from)
        } else {
            None
        };
        if let Some(a) = accuracy {
            say(&progress.bar, format!("round {round}: accuracy {a:.4}"));
        }
        rounds.push(QuantRound {
            round,
            iterations,
            accuracy,
            loss,
            train_loss,
        });
    }
    progress.bar.finish_and_clear();
    let in_free_phase = args.recluster.is_some_and(|period| in_period >= period - period / 5);
    if in_free_phase {
        // Stopped in a free phase: share the weights once more, so the output is quantized.
        recluster(&mut solver, args, targets, shared)?;
        let (accuracy, loss) = accuracy_of(&solver.test_all()?)?;
        rounds.push(QuantRound {
            round: args.rounds + 1,
            iterations,
            accuracy,
            loss,
            train_loss: progress.last_loss.map(f64::from),
        });
    } else {
        store_codebooks(&solver, targets, shared)?;
    }
    Ok(Tuned {
        dense_accuracy,
        rounds,
        solver,
    })
}

/// Copies the solver's fine-tuned codebooks into `shared`.
fn store_codebooks(solver: &train::Solver, targets: &[Target], shared: &mut [quantize::Quantized]) -> Result<()> {
    let tuned = solver.codebooks();
    for ((_, name, ..), quantized) in targets.iter().zip(shared.iter_mut()) {
        quantized.codebook = tuned
            .iter()
            .find(|b| &b.layer == name)
            .map(|b| b.codebook.clone())
            .with_context(|| format!("layer '{name}' lost its codebook"))?;
    }
    Ok(())
}

/// k-means over the solver's current weights (the mask held: pruned weights are +0.0), and the new codebooks
/// take over.
fn recluster(
    solver: &mut train::Solver,
    args: &QuantizeArgs,
    targets: &[Target],
    shared: &mut [quantize::Quantized],
) -> Result<()> {
    let init = args.sharing.init.with_seed(args.sharing.seed);
    for ((_, name, _, bits, _), quantized) in targets.iter().zip(shared.iter_mut()) {
        let values = solver
            .net()
            .params(name)
            .and_then(|p| p.first())
            .with_context(|| format!("the train net has no layer '{name}' with weights"))?
            .data()
            .to_vec();
        *quantized = share(name, &values, *bits, init, args.sharing.entropy.unwrap_or(0.0))?;
    }
    solver.set_masks(&[])?;
    solver.set_codebooks(&codebooks(targets, shared))?;
    Ok(())
}

/// True when `path` names a `.caffez` file.
fn is_caffez_path(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("caffez"))
}

impl QuantizeReport {
    /// Test accuracy per round of fine-tuning, or the training loss when there is no test net.
    pub fn chart(&self) -> crate::plot::LineChart {
        let with_accuracy = self.rounds.iter().any(|r| r.accuracy.is_some());
        let points = self
            .rounds
            .iter()
            .filter_map(|r| {
                let y = if with_accuracy {
                    r.accuracy.map(|a| a * 100.0)
                } else {
                    r.train_loss
                };
                y.map(|y| (r.round as f64, y))
            })
            .collect();
        crate::plot::LineChart {
            title: "Trained quantization".into(),
            x_label: "round".into(),
            y_label: if with_accuracy {
                "test accuracy (%)"
            } else {
                "training loss"
            }
            .into(),
            series: vec![crate::plot::Series {
                name: "shared weights".into(),
                points,
            }],
        }
    }

    /// The table: a row per layer, then the whole model's bytes and ratio at each stage.
    pub fn to_text(&self) -> String {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header([
            "layer",
            "type",
            "bits",
            "weights",
            "nonzeros",
            "shared",
            "iters",
            "max err",
            "dense B",
            "P B",
            "P+Q B",
            "Huffman B",
            "P+Q+H B",
            "ratio",
        ]);
        for r in &self.layers {
            table.add_row([
                r.layer.clone(),
                r.type_name.clone(),
                r.bits.to_string(),
                r.weights.to_string(),
                r.nonzeros.to_string(),
                r.centroids.to_string(),
                r.iterations.to_string(),
                format!("{:.2e}", r.max_error),
                r.dense_bytes.to_string(),
                r.pruned_bytes.to_string(),
                r.quantized_bytes.to_string(),
                r.huffman_bytes.to_string(),
                r.coded_bytes.to_string(),
                format!("{:.1}x", r.dense_bytes as f64 / r.coded_bytes.max(1) as f64),
            ]);
        }
        for column in 2..14 {
            if let Some(c) = table.column_mut(column) {
                c.set_cell_alignment(CellAlignment::Right);
            }
        }
        let ratio = |b: u64| self.model_dense_bytes as f64 / b.max(1) as f64;
        let mut text = String::new();
        if !self.rounds.is_empty() {
            let mut rounds = Table::new();
            rounds.load_preset(UTF8_FULL_CONDENSED);
            rounds.set_header(["round", "iterations", "accuracy %", "test loss", "train loss"]);
            let opt = |v: Option<f64>, scale: f64, digits: usize| {
                v.map_or_else(|| "-".to_string(), |v| format!("{:.digits$}", v * scale))
            };
            for r in &self.rounds {
                rounds.add_row([
                    r.round.to_string(),
                    r.iterations.to_string(),
                    opt(r.accuracy, 100.0, 2),
                    opt(r.loss, 1.0, 4),
                    opt(r.train_loss, 1.0, 4),
                ]);
            }
            let dense = self.dense_accuracy.map_or_else(
                || "no test net".to_string(),
                |a| format!("accuracy before sharing {:.2}%", a * 100.0),
            );
            text.push_str(&format!(
                "trained quantization ({dense}; round 0: shared values as clustered)\n{rounds}\n"
            ));
        }
        text.push_str(&format!("{table}\n"));
        text.push_str(&format!(
            "model: {} bytes dense; pruned (P) {} ({:.1}x); + quantized (P+Q) {} ({:.1}x); + coded as .caffez \
             (P+Q+H) {} ({:.1}x; Huffman as the paper: {}, {:.1}x); index bits {}, init {}\n",
            self.model_dense_bytes,
            self.model_pruned_bytes,
            ratio(self.model_pruned_bytes),
            self.model_quantized_bytes,
            ratio(self.model_quantized_bytes),
            self.model_coded_bytes,
            ratio(self.model_coded_bytes),
            self.model_huffman_bytes,
            ratio(self.model_huffman_bytes),
            self.index_bits,
            self.init,
        ));
        if let Some(out) = &self.output {
            text.push_str(&format!("wrote {out}\n"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_entries_are_checked() {
        assert_eq!(parse_bits(&["conv1=8".into(), "ip1 = 5".into()]).unwrap()["ip1"], 5);
        for bad in ["conv1", "conv1=0", "conv1=9", "conv1=x", "conv1=2.5"] {
            assert!(parse_bits(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(parse_bits(&["a=2".into(), "a=3".into()]).is_err());
    }

    #[test]
    fn sizes_follow_the_streams() {
        // 10 weights, 4 nonzero, two distinct values: 1-bit codes.
        let values = [0.0, 0.5, 0.0, 0.0, -0.5, 0.0, 0.5, 0.0, 0.0, -0.5];
        let quantized = share("l", &values, 1, quantize::Init::Linear, 0.0).unwrap();
        let row = layer_row("l", "InnerProduct", 1, &values, &quantized, 5).unwrap();
        // One centroid for 1 bit: the mean of the nonzeros is 0, so the zero rule picks a side.
        assert_eq!(row.centroids, 1);
        assert_eq!(row.nonzeros, 4);
        let shared = quantized.reconstruct();
        assert!(shared.iter().zip(&values).all(|(q, w)| (*q == 0.0) == (*w == 0.0)));
        // 4 entries in the gap form (gaps 1, 2, 1, 2; nothing trails the last nonzero): 5 bytes each with float
        // values and 5-bit gaps stored in a byte; 1-bit codes + 5-bit gaps = 24 bits, plus a 2-entry codebook.
        assert_eq!(row.pruned_bytes, 4 * 5);
        assert_eq!(row.quantized_bytes, 3 + 8);
        assert_eq!(row.dense_bytes, 40);
    }
}
