//! Choosing the layers and rules, applying them through the `prune` crate, writing the result, and the report.

use crate::Args;
use anyhow::{bail, Context, Result};
use caffemodel::NetMessage;
use comfy_table::{presets::UTF8_FULL_CONDENSED, CellAlignment, Table};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// What happened to one pruned layer.
#[derive(Serialize, Debug)]
pub struct LayerRow {
    /// Layer name.
    pub layer: String,
    /// Layer type (modern spelling).
    #[serde(rename = "type")]
    pub type_name: String,
    /// The rule, e.g. `keep 0.3`, `global keep 0.05`, `std x 0.7`, `filters keep 0.5`.
    pub rule: String,
    /// Keep fraction asked for (none for the std rule).
    pub requested_keep: Option<f64>,
    /// Nonzero weights after / weights.
    pub achieved_keep: f64,
    /// Weights in the blob.
    pub weights: usize,
    /// Nonzero weights before.
    pub nonzero_before: usize,
    /// Nonzero weights after.
    pub nonzero_after: usize,
    /// The magnitude threshold used (weights with |w| above it kept), if any.
    pub threshold: Option<f64>,
    /// Weight blob as dense float32.
    pub dense_bytes: u64,
    /// Weight blob in relative-index form (value + gap per entry, fillers included).
    pub sparse_bytes: u64,
    /// Output filters zeroed whole (with --filters).
    pub dropped_filters: Option<usize>,
}

/// The whole run.
#[derive(Serialize, Debug)]
pub struct Report {
    /// Input model.
    pub input: String,
    /// Pruned model written, if any.
    pub output: Option<String>,
    /// Sparse npz written, if any.
    pub npz: Option<String>,
    /// Bits per relative index.
    pub index_bits: u8,
    /// Pruned layers.
    pub layers: Vec<LayerRow>,
    /// Totals over pruned layers' weight blobs.
    pub total: Total,
}

/// Totals.
#[derive(Serialize, Debug)]
pub struct Total {
    /// Weights in pruned blobs.
    pub weights: usize,
    /// Nonzeros before.
    pub nonzero_before: usize,
    /// Nonzeros after.
    pub nonzero_after: usize,
    /// Dense bytes of the pruned blobs.
    pub dense_bytes: u64,
    /// Relative-index bytes of the pruned blobs.
    pub sparse_bytes: u64,
    /// dense / sparse over the pruned blobs.
    pub compression: f64,
    /// All blobs of the model dense, over: pruned weight blobs in relative-index form plus every other blob dense.
    pub model_compression: f64,
}

/// Parses `--keep` entries `LAYER=T`.
pub(crate) fn parse_keep(entries: &[String]) -> Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for entry in entries.iter().filter(|e| !e.is_empty()) {
        let (name, t) = entry
            .rsplit_once('=')
            .with_context(|| format!("--keep entry '{entry}' is not LAYER=FRACTION"))?;
        let t: f64 = t
            .trim()
            .parse()
            .with_context(|| format!("--keep entry '{entry}': '{t}' is not a number"))?;
        if !(0.0..=1.0).contains(&t) {
            bail!("--keep entry '{entry}': keep fraction must be in [0, 1]");
        }
        if out.insert(name.trim().to_string(), t).is_some() {
            bail!("--keep names layer '{name}' twice");
        }
    }
    Ok(out)
}

/// A layer chosen for pruning: (index in the net, name, modern type, weight shape).
struct Target {
    index: usize,
    name: String,
    type_name: String,
    dims: Vec<i64>,
}

fn select(net: &NetMessage<'_>, args: &Args, named: &BTreeMap<String, f64>) -> Result<Vec<Target>> {
    let layers = net.layers();
    for name in named.keys().chain(&args.layers) {
        let found = layers.iter().find(|l| l.name() == name.as_str());
        match found {
            None => bail!("{}: no layer named '{name}'", net.path().display()),
            Some(l) if l.blobs().is_empty() => bail!("{}: layer '{name}' has no weights", net.path().display()),
            Some(_) => {}
        }
    }
    let mut targets = Vec::new();
    for layer in &layers {
        let name = layer.name().to_string();
        let type_name = layer.modern_type_name();
        let blobs = layer.blobs();
        let Some(weights) = blobs.first() else { continue };
        let by_name = named.contains_key(&name) || args.layers.contains(&name);
        let by_type = args.layers.is_empty() && args.types.iter().any(|t| t == &type_name);
        if by_name || by_type {
            targets.push(Target {
                index: layer.index,
                name,
                type_name,
                dims: weights.shape().dims,
            });
        }
    }
    if targets.is_empty() {
        bail!("{}: no layer with weights matches the selection", net.path().display());
    }
    Ok(targets)
}

fn sparse_bytes(values: &[f32], bits: u8) -> Result<u64> {
    entry_bytes(sparse::gap_entry_count(values, bits)?, bits)
}

/// Bytes of `entries` relative-index entries: a float32 value and a gap each.
fn entry_bytes(entries: usize, bits: u8) -> Result<u64> {
    Ok((entries * (4 + sparse::gap_width_bytes(bits)?)) as u64)
}

/// A blob pruned by keep fraction: a writable copy, zeroed where pruned, or the values where they lie (in the
/// mapped file), left as they are when only their encoding is wanted.
enum Weights<'a> {
    Writable(&'a mut [f32]),
    ReadOnly(&'a [f32]),
}

/// Prunes `weights` to keep fraction `keep` and gap-encodes the result in one pass over the blob
/// (`sparse::encode_gaps_pruned` or, read only, `sparse::encode_gaps_cut`): what `prune::prune_in_place` then
/// `sparse::encode_gaps` give, with the same report, reading the blob twice instead of five times.
fn prune_and_encode(weights: Weights<'_>, keep: f64, bits: u8) -> Result<(prune::BlobReport, sparse::GapEncoded)> {
    let rule = prune::Rule::KeepFraction(keep);
    let values: &[f32] = match &weights {
        Weights::Writable(w) => w,
        Weights::ReadOnly(w) => w,
    };
    let len = values.len();
    Ok(match prune::keep_fraction_cut(values, keep)? {
        Some(cut) => {
            let (gaps, counts) = match weights {
                Weights::Writable(w) => sparse::encode_gaps_pruned(w, bits, cut)?,
                Weights::ReadOnly(w) => sparse::encode_gaps_cut(w, bits, cut)?,
            };
            let kept = (counts.nonzeros_before, counts.nonzeros_after);
            (prune::BlobReport::pruned(rule, len, f64::from(cut), kept), gaps)
        }
        None => {
            // keep_fraction_cut has refused NaN, so every weight compares.
            let nonzeros = values.iter().filter(|w| **w != 0.0).count();
            let report = prune::BlobReport::untouched(rule, len, nonzeros);
            (report, sparse::encode_gaps(values, bits)?)
        }
    })
}

/// Runs the whole job described by `args`.
pub fn prune_model(args: &Args) -> Result<Report> {
    let named = parse_keep(&args.keep)?;
    if named.is_empty() && args.keep_all.is_none() && args.global_keep.is_none() && args.std.is_none() {
        bail!("no rule given: use --keep LAYER=T,..., --keep-all T, --global-keep F or --std Q");
    }
    if let Some(t) = args.keep_all.or(args.global_keep) {
        if !(0.0..=1.0).contains(&t) {
            bail!("keep fraction {t} must be in [0, 1]");
        }
    }
    let input = args.input.as_deref().context("no input model given")?;
    let outputs: Vec<&Path> = [args.output.as_deref(), args.npz.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    outfile::check_outputs(&outputs, &[input])?;
    let model = caffez::open_model(input)?;
    let mut net = model.net()?;
    let mut targets = select(&net, args, &named)?;
    // With only --keep, layers not named stay untouched: prune exactly what was asked.
    if args.keep_all.is_none() && args.global_keep.is_none() && args.std.is_none() {
        targets.retain(|t| named.contains_key(&t.name));
    }
    let keep_of = |t: &Target| named.get(&t.name).copied().or(args.keep_all).unwrap_or(1.0);
    let blob_error = |t: &Target| format!("layer '{}'", t.name);
    let mut rows = Vec::new();
    // Per target, its weights' sparse encoding when pruning produced it on the way.
    let mut encoded: Vec<Option<sparse::GapEncoded>> = targets.iter().map(|_| None).collect();
    // Only the encodings are written (keep fractions, no -o): the weights are read where they lie, with no
    // writable copy of the blobs and nothing set back in the net.
    let encodings_only = args.output.is_none() && args.global_keep.is_none() && args.std.is_none() && !args.filters;
    let layers = net.layers();
    let mut weights: Vec<Vec<f32>> = targets
        .iter()
        .filter(|_| !encodings_only)
        .map(|t| layers[t.index].blobs()[0].data().to_vec_f32())
        .collect();
    let mut biases: Vec<Option<Vec<f32>>> = targets
        .iter()
        .map(|t| {
            args.filters
                .then(|| layers[t.index].blobs().get(1).map(|b| b.data().to_vec_f32()))
                .flatten()
        })
        .collect();
    if encodings_only {
        for (i, t) in targets.iter().enumerate() {
            let keep = keep_of(t);
            let data = layers[t.index].blobs()[0].data();
            let (r, gaps) = prune_and_encode(Weights::ReadOnly(&data.f32s()), keep, args.index_bits)
                .with_context(|| blob_error(t))?;
            rows.push(row(t, format!("keep {keep}"), Some(keep), &r, None));
            encoded[i] = Some(gaps);
        }
    } else if let Some(f) = args.global_keep {
        let mut slices: Vec<&mut [f32]> = weights.iter_mut().map(|w| w.as_mut_slice()).collect();
        let reports = prune::prune_global_in_place(&mut slices, f)?;
        for (t, r) in targets.iter().zip(reports) {
            rows.push(row(t, format!("global keep {f}"), Some(f), &r, None));
        }
    } else {
        for (i, t) in targets.iter().enumerate() {
            let w = &mut weights[i];
            if let Some(q) = args.std {
                let r = prune::prune_in_place(w, prune::Rule::StdMultiple(q)).with_context(|| blob_error(t))?;
                rows.push(row(t, format!("std x {q}"), None, &r, None));
                continue;
            }
            let keep = keep_of(t);
            if args.filters {
                let rows_n = caffemodel::output_rows(&t.type_name, &t.dims, w.len() as u64) as usize;
                let view = [rows_n, w.len().checked_div(rows_n).unwrap_or(0)];
                let r = prune::prune_filters(w, &view, keep).with_context(|| blob_error(t))?;
                if let Some(Some(bias)) = biases.get_mut(i) {
                    for &f in &r.dropped {
                        if let Some(b) = bias.get_mut(f) {
                            *b = 0.0;
                        }
                    }
                }
                let blob = prune::BlobReport {
                    rule: prune::Rule::KeepFraction(keep),
                    len: w.len(),
                    threshold: r.norm_cut,
                    kept: r.nonzeros_after,
                    nonzeros_before: r.nonzeros_before,
                    nonzeros_after: r.nonzeros_after,
                };
                rows.push(row(
                    t,
                    format!("filters keep {keep}"),
                    Some(keep),
                    &blob,
                    Some(r.dropped.len()),
                ));
            } else {
                let (r, gaps) =
                    prune_and_encode(Weights::Writable(w), keep, args.index_bits).with_context(|| blob_error(t))?;
                rows.push(row(t, format!("keep {keep}"), Some(keep), &r, None));
                encoded[i] = Some(gaps);
            }
        }
    }
    for (i, row) in rows.iter_mut().enumerate() {
        row.sparse_bytes = match &encoded[i] {
            Some(gaps) => entry_bytes(gaps.values.len(), args.index_bits)?,
            None => sparse_bytes(&weights[i], args.index_bits)?,
        };
    }
    // Whole-model figure: every blob dense, against pruned weights sparse and the rest dense.
    let all_dense: u64 = net
        .layers()
        .iter()
        .flat_map(|l| l.blobs().into_iter().map(|b| b.data().len() as u64 * 4))
        .sum();
    drop(layers);
    // Empty when only the encodings are written: the net keeps its weights.
    for ((t, w), bias) in targets.iter().zip(weights).zip(biases) {
        net.set_blob_data(t.index, 0, w)?;
        if let Some(bias) = bias {
            net.set_blob_data(t.index, 1, bias)?;
        }
    }
    if let Some(out) = &args.output {
        outfile::write_atomic(out, |w| net.encode_to(w))?;
    }
    if let Some(npz) = &args.npz {
        let layout = caffemodel::npz::Layout::Sparse {
            index_bits: args.index_bits,
        };
        let mut by_layer: BTreeMap<usize, sparse::GapEncoded> = targets
            .iter()
            .zip(encoded)
            .filter_map(|(t, gaps)| Some((t.index, gaps?)))
            .collect();
        caffemodel::npz::export_npz_with(&net, npz, layout, |layer| by_layer.remove(&layer))?;
    }
    let total_dense: u64 = rows.iter().map(|r| r.dense_bytes).sum();
    let total_sparse: u64 = rows.iter().map(|r| r.sparse_bytes).sum();
    let total = Total {
        weights: rows.iter().map(|r| r.weights).sum(),
        nonzero_before: rows.iter().map(|r| r.nonzero_before).sum(),
        nonzero_after: rows.iter().map(|r| r.nonzero_after).sum(),
        dense_bytes: total_dense,
        sparse_bytes: total_sparse,
        compression: ratio(total_dense, total_sparse),
        model_compression: ratio(all_dense, all_dense - total_dense + total_sparse),
    };
    Ok(Report {
        input: input.display().to_string(),
        output: args.output.as_ref().map(|p| p.display().to_string()),
        npz: args.npz.as_ref().map(|p| p.display().to_string()),
        index_bits: args.index_bits,
        layers: rows,
        total,
    })
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn row(t: &Target, rule: String, requested: Option<f64>, r: &prune::BlobReport, dropped: Option<usize>) -> LayerRow {
    LayerRow {
        layer: t.name.clone(),
        type_name: t.type_name.clone(),
        rule,
        requested_keep: requested,
        achieved_keep: if r.len == 0 {
            1.0
        } else {
            r.nonzeros_after as f64 / r.len as f64
        },
        weights: r.len,
        nonzero_before: r.nonzeros_before,
        nonzero_after: r.nonzeros_after,
        threshold: r.threshold,
        dense_bytes: r.len as u64 * 4,
        sparse_bytes: 0,
        dropped_filters: dropped,
    }
}

impl Report {
    /// The report as a table.
    pub fn to_text(&self) -> String {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
            "layer",
            "rule",
            "requested keep",
            "achieved keep",
            "weights",
            "nonzero before",
            "nonzero after",
            "dense bytes",
            "sparse bytes",
        ]);
        for r in &self.layers {
            table.add_row(vec![
                r.layer.clone(),
                r.rule.clone(),
                r.requested_keep.map_or("-".into(), |k| format!("{k}")),
                format!("{:.4}", r.achieved_keep),
                r.weights.to_string(),
                r.nonzero_before.to_string(),
                r.nonzero_after.to_string(),
                r.dense_bytes.to_string(),
                r.sparse_bytes.to_string(),
            ]);
        }
        let t = &self.total;
        table.add_row(vec![
            "total".into(),
            String::new(),
            String::new(),
            format!(
                "{:.4}",
                if t.weights == 0 {
                    1.0
                } else {
                    t.nonzero_after as f64 / t.weights as f64
                }
            ),
            t.weights.to_string(),
            t.nonzero_before.to_string(),
            t.nonzero_after.to_string(),
            t.dense_bytes.to_string(),
            t.sparse_bytes.to_string(),
        ]);
        for i in 2..table.column_count() {
            if let Some(c) = table.column_mut(i) {
                c.set_cell_alignment(CellAlignment::Right);
            }
        }
        let mut out = format!("{table}\n");
        let _ = writeln!(
            out,
            "pruned weights: {:.2}x smaller in relative-index form ({}-bit gaps); whole model: {:.2}x",
            t.compression, self.index_bits, t.model_compression
        );
        if let Some(o) = &self.output {
            let _ = writeln!(out, "wrote {o}");
        }
        if let Some(n) = &self.npz {
            let _ = writeln!(out, "wrote {n}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass prune and encode gives the weights, the report and the encoding of `prune::prune_in_place`
    /// followed by `sparse::encode_gaps`, for blobs with ties, zeros, -0.0 and long zero runs, at every keep
    /// fraction from none to all.
    #[test]
    fn prune_and_encode_is_prune_in_place_then_encode_gaps() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for len in [0, 1, 2, 7, 300, 5_000] {
            let blob: Vec<f32> = (0..len)
                .map(|i| match next() % 7 {
                    0 => 0.0,
                    1 => -0.0,
                    2 => 0.25,
                    3 if i % 500 < 300 => 0.0,
                    _ => (next() % 2001) as f32 / 1000.0 - 1.0,
                })
                .collect();
            for keep in [0.0, 0.01, 0.1, 0.3, 0.5, 0.999, 1.0] {
                for bits in [1, 3, 8, 12] {
                    let mut fused = blob.clone();
                    let (report, gaps) = prune_and_encode(Weights::Writable(&mut fused), keep, bits).unwrap();
                    let (read_report, read_gaps) = prune_and_encode(Weights::ReadOnly(&blob), keep, bits).unwrap();
                    let mut stepwise = blob.clone();
                    let expected = prune::prune_in_place(&mut stepwise, prune::Rule::KeepFraction(keep)).unwrap();
                    let case = format!("len {len}, keep {keep}, bits {bits}");
                    assert_eq!(report, expected, "{case}");
                    let bits_of = |v: &[f32]| v.iter().map(|w| w.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits_of(&fused), bits_of(&stepwise), "{case}");
                    assert_eq!(gaps, sparse::encode_gaps(&stepwise, bits).unwrap(), "{case}");
                    assert_eq!((read_report, read_gaps), (report, gaps), "{case}, read only");
                }
            }
        }
    }

    #[test]
    fn prune_and_encode_refuses_nan_and_leaves_the_blob() {
        let mut blob = vec![0.5, f32::NAN, -0.1];
        for keep in [0.5, 1.0] {
            assert!(prune_and_encode(Weights::Writable(&mut blob), keep, 8).is_err());
            assert!(prune_and_encode(Weights::ReadOnly(&blob), keep, 8).is_err());
        }
        assert_eq!(blob[0], 0.5);
        assert_eq!(blob[2], -0.1);
    }
}
