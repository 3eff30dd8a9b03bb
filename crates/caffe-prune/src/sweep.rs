//! `caffe-prune sweep`: prune one layer at a time over a grid of keep fractions and measure the accuracy of each
//! setting, to choose per-layer fractions (stage 3 of Deep Compression); `--budget` turns the measurements into a
//! suggestion and checks it.

use crate::eval::{EvalArgs, Preloaded, TestSet};
use crate::plot::{LineChart, Series};
use anyhow::{bail, Context, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, CellAlignment, Table};
use indicatif::ProgressBar;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// `caffe-prune sweep`.
#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {
    #[command(flatten)]
    pub eval: EvalArgs,
    /// The layers to sweep, each alone with the others unpruned (default: the layers named by --grid, else every
    /// Convolution, InnerProduct and Deconvolution layer with weights).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub layers: Vec<String>,
    /// Keep fractions of a layer: LAYER=T1,T2,... or LAYER=START:STOP:COUNT (evenly spaced, both ends included).
    /// Repeat for several layers. Default: the tutorial's, 0.3:0.7:5 for the first swept layer and 0.05:0.3:5 for
    /// the others.
    #[arg(long, value_name = "LAYER=GRID")]
    pub grid: Vec<String>,
    /// Write every measurement as CSV (layer, keep, sparsity, top1, top5, loss).
    #[arg(long, value_name = "FILE.csv")]
    pub csv: Option<PathBuf>,
    /// Draw top-1 accuracy against keep fraction, one line per layer (SVG or PNG, by the file's extension).
    #[arg(long, value_name = "FILE.svg|png")]
    pub plot: Option<PathBuf>,
    /// Suggest per-layer keep fractions that keep the fewest weights while the single-layer top-1 drops add up to at
    /// most this many percentage points, and check the combination with one more evaluation (re-splitting a smaller
    /// budget while the measured drop is over).
    #[arg(long, value_name = "POINTS")]
    pub budget: Option<f64>,
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

/// Runs the sweep.
pub fn sweep(args: &SweepArgs) -> Result<Report> {
    if args.eval.predictions.is_some() {
        return Err(clikit::usage_error(
            "--predictions does not apply to sweep (eval writes them)",
        ));
    }
    let outputs: Vec<&std::path::Path> = args.csv.iter().chain(&args.plot).map(PathBuf::as_path).collect();
    outfile::check_outputs(&outputs, &args.eval.inputs())?;
    if let Some(plot) = &args.plot {
        crate::plot::check_plot_name(plot)?;
    }
    if let Some(b) = args.budget {
        if !(b >= 0.0 && b.is_finite()) {
            bail!("--budget {b}: give a non-negative number of percentage points");
        }
    }
    let set = TestSet::open(&args.eval)?;
    let mut probe = set.spec.build_net()?;
    let grid = grid(args, &prunable_layers(&probe))?;
    let evaluator = Evaluator { data: set.preload()? };
    let images = evaluator.data.images;
    let (dense, _) = evaluator.evaluate(&mut probe, &[])?;

    let settings: Vec<(String, f64)> = grid
        .iter()
        .flat_map(|(layer, values)| values.iter().map(move |&t| (layer.clone(), t)))
        .collect();
    let bar = progress(settings.len());
    // One net per worker, reused across its settings; the engine parallelises inside each forward as well.
    let results: Vec<Result<(Score, Vec<f64>)>> = settings
        .par_iter()
        .map_init(
            || evaluator.data.spec.build_net(),
            |net, setting| {
                let net = net.as_mut().map_err(|e| anyhow::anyhow!("{e:#}"))?;
                let result = evaluator.evaluate(net, std::slice::from_ref(setting));
                bar.inc(1);
                result
            },
        )
        .collect();
    bar.finish_and_clear();
    let mut rows = Vec::with_capacity(settings.len());
    for ((layer, keep), result) in settings.into_iter().zip(results) {
        let (score, sparsity) = result?;
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
        let rows = std::iter::once(["layer", "keep", "sparsity", "top1", "top5", "loss"].map(String::from)).chain(
            self.rows.iter().map(|r| {
                [
                    r.layer.clone(),
                    r.keep.to_string(),
                    format!("{:.6}", r.sparsity),
                    format!("{:.6}", r.score.top1),
                    opt(r.score.top5),
                    opt(r.score.loss),
                ]
            }),
        );
        for row in rows {
            out.write_record(&row).expect("writing to memory cannot fail");
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
