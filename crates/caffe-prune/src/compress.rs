//! `caffe-prune compress`: Deep Compression in one command. Prune and retrain with the mask held, share the
//! weights and fine-tune the shared values, code the result as a `.caffez`, with a row per stage.
//! Glue over `retrain` and `quantize`, whose reports it keeps.

use crate::quant::{QuantizeArgs, QuantizeReport, SharingArgs};
use crate::train::{DataArgs, DistillArgs, RetrainArgs, RetrainReport};
use anyhow::{bail, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, CellAlignment, Table};
use serde::Serialize;
use std::path::PathBuf;

/// `caffe-prune compress`.
#[derive(clap::Args, Debug, Clone)]
pub struct CompressArgs {
    /// The trained (dense) model.
    pub input: PathBuf,
    /// The solver that retrains the pruned net and fine-tunes the shared values (.prototxt).
    #[arg(long, value_name = "S.prototxt")]
    pub solver: PathBuf,
    /// Per-layer keep fractions, e.g. conv1=0.66,conv2=0.12,ip1=0.08,ip2=0.19.
    #[arg(long, value_name = "LAYER=T,...", value_delimiter = ',', required = true)]
    pub keep: Vec<String>,
    /// Retraining after pruning: rounds of --prune-steps iterations (the mask held).
    #[arg(long, default_value_t = 12)]
    pub prune_rounds: usize,
    /// Solver iterations per retraining round.
    #[arg(long, default_value_t = 500)]
    pub prune_steps: i32,
    /// Iterative pruning: the keep fraction of every layer for the first retraining rounds (see `retrain
    /// --schedule`); empty: prune to the final fractions at once.
    #[arg(long, value_name = "T,...", value_delimiter = ',')]
    pub schedule: Vec<f64>,
    /// Multiplies the solver's base_lr while retraining.
    #[arg(long, default_value_t = 1.0)]
    pub prune_lr_scale: f32,
    /// Fine-tuning of the shared values: rounds of --quantize-steps iterations.
    #[arg(long, default_value_t = 4)]
    pub quantize_rounds: usize,
    /// Solver iterations per fine-tuning round.
    #[arg(long, default_value_t = 500)]
    pub quantize_steps: i32,
    /// Multiplies the solver's base_lr while fine-tuning the shared values. Each shared value moves by the sum of
    /// its weights' gradients (the paper's rule), thousands of them for a large layer, hence a smaller rate.
    #[arg(long, default_value_t = 0.1)]
    pub quantize_lr_scale: f32,
    /// Re-cluster every R fine-tuning iterations (see `quantize --recluster`).
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(i32).range(5..))]
    pub recluster: Option<i32>,
    #[command(flatten)]
    pub sharing: SharingArgs,
    /// Also keep the stages: DIR/pruned.caffemodel (retrained) and DIR/quantized.caffemodel (what the .caffez
    /// gives back), for real Caffe or `eval`.
    #[arg(long, value_name = "DIR")]
    pub stages: Option<PathBuf>,
    /// The compressed model.
    #[arg(short, long, value_name = "OUT.caffez")]
    pub output: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data: DataArgs,
    /// How to train and share: `best` distils from the dense input in both training stages (soft targets at
    /// --distill T, weight --distill-weight), which is what lets a pruned LeNet recover on a 10k-image training set,
    /// and shares with ECSQ (--entropy 4 unless given); `tutorial` trains on the hard labels alone and shares with
    /// plain k-means, as the Deep Compression tutorial and paper do.
    #[arg(long, value_enum, default_value_t = Recipe::Best)]
    pub recipe: Recipe,
    /// With the best recipe: the distillation temperature.
    #[arg(long, value_name = "T", default_value_t = 4.0)]
    pub distill: f32,
    /// With the best recipe: the weight of the soft loss beside the net's own loss.
    #[arg(long, value_name = "W", default_value_t = 4.0)]
    pub distill_weight: f32,
}

impl Recipe {
    /// The ECSQ trade-off the recipe shares with when --entropy is not given.
    fn entropy(self) -> f64 {
        match self {
            Recipe::Best => BEST_ENTROPY,
            Recipe::Tutorial => 0.0,
        }
    }
}

/// The best recipe's ECSQ trade-off: on LeNet at Deep Compression's rates, 42,211 bytes (40.9x) against 45,818
/// (37.6x) with plain k-means, at the same accuracy.
const BEST_ENTROPY: f64 = 4.0;

/// Training recipes of `compress`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Recipe {
    /// Knowledge distillation from the dense model while retraining and fine-tuning.
    Best,
    /// The tutorial's: hard labels only.
    Tutorial,
}

/// One stage of the pipeline.
#[derive(Serialize, Debug, Clone)]
pub struct StageRow {
    /// `dense`, `P`, `P+Q` or `P+Q+H`.
    pub stage: String,
    /// What was done.
    pub what: String,
    /// Test accuracy after the stage (`None`: no test net).
    pub accuracy: Option<f64>,
    /// Nonzero weights of the compressed layers.
    pub weights_kept: usize,
    /// Bytes of the model in this stage's form.
    pub bytes: u64,
    /// Dense bytes / `bytes`.
    pub ratio: f64,
}

/// What `compress` did: a row per stage, and the reports of its two training stages.
#[derive(Serialize, Debug)]
pub struct CompressReport {
    /// The training recipe.
    pub recipe: Recipe,
    /// The stages.
    pub stages: Vec<StageRow>,
    /// Pruning and retraining.
    pub retrain: RetrainReport,
    /// Sharing and fine-tuning.
    pub quantize: QuantizeReport,
    /// The `.caffez` written.
    pub output: String,
}

/// A folder removed when dropped (the stages when --stages is not given).
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `compress`.
pub fn compress(args: &CompressArgs) -> Result<CompressReport> {
    outfile::check_outputs(&[&args.output], &[&args.input, &args.solver])?;
    // Every argument checked before the first stage starts.
    crate::plan::parse_keep(&args.keep)?;
    crate::quant::parse_bits(&args.sharing.bits)?;
    let extension = args.output.extension().and_then(|e| e.to_str());
    if extension != Some("caffez") {
        bail!(
            "{}: the compressed model is written as .caffez: give a .caffez file name",
            args.output.display()
        );
    }
    let (dir, _scratch) = match &args.stages {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
            (dir.clone(), None)
        }
        None => {
            let dir = std::env::temp_dir().join(format!("caffe-prune-compress-{}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
            (dir.clone(), Some(ScratchDir(dir)))
        }
    };
    let pruned = dir.join("pruned.caffemodel");
    let quantized = dir.join("quantized.caffemodel");
    outfile::check_outputs(&[&pruned, &quantized], &[&args.input, &args.solver, &args.output])?;
    let distill = DistillArgs {
        distill: (args.recipe == Recipe::Best).then_some(args.distill),
        distill_weight: args.distill_weight,
        teacher: Some(args.input.clone()),
        distill_blob: None,
    };
    clikit::note("stage P: pruning, then retraining with the mask held");
    let retrain = crate::train::retrain(&RetrainArgs {
        solver: args.solver.clone(),
        weights: args.input.clone(),
        keep: args.keep.clone(),
        rounds: args.prune_rounds,
        steps: args.prune_steps,
        lr_scale: args.prune_lr_scale,
        schedule: args.schedule.clone(),
        regrow: false,
        output: pruned.clone(),
        plot: None,
        json: false,
        data: args.data.clone(),
        distill: distill.clone(),
    })?;
    clikit::note("stage P+Q: sharing the weights, then fine-tuning the shared values");
    let quantize = crate::quant::quantize_model(&QuantizeArgs {
        input: None,
        solver: Some(args.solver.clone()),
        weights: Some(pruned.clone()),
        rounds: args.quantize_rounds,
        steps: args.quantize_steps,
        lr_scale: args.quantize_lr_scale,
        recluster: args.recluster,
        data: args.data.clone(),
        distill,
        sharing: SharingArgs {
            entropy: Some(args.sharing.entropy.unwrap_or(args.recipe.entropy())),
            ..args.sharing.clone()
        },
        output: Some(quantized.clone()),
        plot: None,
        json: false,
    })?;
    let model = caffemodel::ModelFile::open(&quantized)?;
    let compressed = caffez::compress(&model)?;
    outfile::write_atomic(&args.output, |w| std::io::Write::write_all(w, &compressed.bytes))?;

    let dense_bytes = std::fs::metadata(&args.input)
        .map(|m| m.len())
        .unwrap_or(quantize.model_dense_bytes);
    let ratio = |bytes: u64| dense_bytes as f64 / bytes.max(1) as f64;
    let kept = retrain.rounds.last().map_or(0, |r| r.kept_weights);
    let last_accuracy = |rounds: Option<Option<f64>>| rounds.flatten();
    let pruned_accuracy = last_accuracy(retrain.rounds.last().map(|r| r.accuracy));
    let quantized_accuracy = last_accuracy(quantize.rounds.last().map(|r| r.accuracy));
    let how = match args.recipe {
        Recipe::Best => " distilled from the dense model",
        Recipe::Tutorial => "",
    };
    let stages = vec![
        StageRow {
            stage: "dense".into(),
            what: "the input".into(),
            accuracy: retrain.dense_accuracy,
            weights_kept: retrain.weights,
            bytes: dense_bytes,
            ratio: 1.0,
        },
        StageRow {
            stage: "P".into(),
            what: format!(
                "pruned, retrained {}x{} iterations{how}; 32-bit values, {}-bit indices",
                args.prune_rounds, args.prune_steps, args.sharing.index_bits
            ),
            accuracy: pruned_accuracy,
            weights_kept: kept,
            bytes: quantize.model_pruned_bytes,
            ratio: ratio(quantize.model_pruned_bytes),
        },
        StageRow {
            stage: "P+Q".into(),
            what: format!(
                "shared, fine-tuned {}x{} iterations{how}; codes and {}-bit indices",
                args.quantize_rounds, args.quantize_steps, args.sharing.index_bits
            ),
            accuracy: quantized_accuracy,
            weights_kept: kept,
            bytes: quantize.model_quantized_bytes,
            ratio: ratio(quantize.model_quantized_bytes),
        },
        StageRow {
            stage: "P+Q+H".into(),
            what: format!("{} (arithmetic-coded)", args.output.display()),
            accuracy: quantized_accuracy,
            weights_kept: kept,
            bytes: compressed.bytes.len() as u64,
            ratio: ratio(compressed.bytes.len() as u64),
        },
    ];
    Ok(CompressReport {
        recipe: args.recipe,
        stages,
        retrain,
        quantize,
        output: args.output.display().to_string(),
    })
}

impl CompressReport {
    /// The stage table, after the two training stages' own tables.
    pub fn to_text(&self) -> String {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(["stage", "accuracy %", "weights kept", "bytes", "ratio", "what"]);
        for s in &self.stages {
            table.add_row([
                s.stage.clone(),
                s.accuracy
                    .map_or_else(|| "-".to_string(), |a| format!("{:.2}", a * 100.0)),
                s.weights_kept.to_string(),
                s.bytes.to_string(),
                format!("{:.1}x", s.ratio),
                s.what.clone(),
            ]);
        }
        for column in 1..5 {
            if let Some(c) = table.column_mut(column) {
                c.set_cell_alignment(CellAlignment::Right);
            }
        }
        format!(
            "{}\n{}\n{table}\nwrote {}\n",
            self.retrain.to_text(),
            self.quantize.to_text(),
            self.output
        )
    }
}
