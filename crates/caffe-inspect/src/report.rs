//! Builds the inspection report of each kind of Caffe file, as tables or JSON.

use crate::stats::Partial;
use anyhow::{Context, Result};
use caffemodel::text::{self, Schema};
use caffemodel::{BinaryKind, BlobView, ModelFile, NetMessage};
use comfy_table::{presets::UTF8_FULL_CONDENSED, CellAlignment, Table};
use rayon::prelude::*;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// Runs the inspection of `file` and returns what to print.
pub fn run(file: &Path, prototxt: Option<&Path>, proto: Option<&Path>, json: bool, index_bits: u8) -> Result<String> {
    let schema = match proto {
        Some(p) => Schema::from_proto_file(p)?,
        None => Schema::builtin(),
    };
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ext == "prototxt" || ext == "pbtxt" {
        return net_structure(file, &schema, json);
    }
    let model = caffez::open_model(file)?;
    match BinaryKind::from_path(file) {
        BinaryKind::Net => {
            let net = model.net()?;
            let mut report = weights_report(&model, &net, index_bits);
            let stored = std::fs::metadata(file).map(|m| m.len()).unwrap_or(report.size);
            report.caffez_bytes = (stored != report.size).then_some(stored);
            let check = match prototxt {
                Some(p) => Some(net_check(&net, p, &schema)?),
                None => None,
            };
            let compression = crate::compression::compression_report(&model, index_bits)?;
            Ok(if json {
                let mut value = serde_json::to_value(&report)?;
                if let Some(check) = check {
                    value["prototxt_check"] = serde_json::to_value(check)?;
                }
                if let Some(compression) = compression {
                    value["compression"] = serde_json::to_value(compression)?;
                }
                serde_json::to_string_pretty(&value)? + "\n"
            } else {
                let mut out = report.to_text(index_bits);
                if let Some(compression) = compression {
                    out.push_str(&compression.to_text());
                }
                if let Some(check) = check {
                    out.push_str(&check.to_text());
                }
                out
            })
        }
        BinaryKind::SolverState => solver_state(&model, json),
        BinaryKind::Blob => mean_blob(&model, json),
    }
}

/// Figures of one blob.
#[derive(Serialize, Clone, Debug)]
pub struct BlobReport {
    /// Shape as stored.
    pub shape: Vec<i64>,
    /// Elements.
    pub count: u64,
    /// Nonzero elements.
    pub nonzero: u64,
    /// Rows (output filters) that are entirely zero, of `rows`.
    pub zero_rows: u64,
    /// Output rows the blob is viewed as.
    pub rows: u64,
    /// Bytes as stored (4 per f32, 8 per f64).
    pub dense_bytes: u64,
    /// Bytes in relative-index form: (4-byte value + gap) per stored entry, fillers included.
    pub sparse_bytes: u64,
    /// True when the blob also stores a gradient (diff).
    pub has_diff: bool,
}

/// Figures of one layer.
#[derive(Serialize, Clone, Debug)]
pub struct LayerReport {
    /// Layer name.
    pub name: String,
    /// Type as stored (V1 enum names stay as they are).
    #[serde(rename = "type")]
    pub type_name: String,
    /// Blobs in order.
    pub blobs: Vec<BlobReport>,
    /// Elements over all blobs.
    pub params: u64,
    /// Nonzeros over all blobs.
    pub nonzero: u64,
    /// Zero elements over all blobs, percent.
    pub sparsity: f64,
    /// All-zero output filters (rows) of the first blob, percent.
    pub filter_sparsity: f64,
    /// Dense bytes of all blobs.
    pub dense_bytes: u64,
    /// Relative-index bytes of all blobs.
    pub sparse_bytes: u64,
    /// dense / sparse.
    pub ratio: f64,
}

/// Totals over the net.
#[derive(Serialize, Clone, Debug)]
pub struct Total {
    /// Elements.
    pub params: u64,
    /// Nonzeros.
    pub nonzero: u64,
    /// Zero elements, percent.
    pub sparsity: f64,
    /// Dense bytes.
    pub dense_bytes: u64,
    /// Relative-index bytes.
    pub sparse_bytes: u64,
    /// dense / sparse.
    pub ratio: f64,
}

/// The whole weights report.
#[derive(Serialize, Clone, Debug)]
pub struct WeightsReport {
    /// The file as given.
    pub file: String,
    /// Size of the caffemodel in bytes.
    pub size: u64,
    /// Size of the file when it is a `.caffez` (then `size` is the caffemodel it gives back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caffez_bytes: Option<u64>,
    /// `modern`, `V1` or `V0`.
    pub format: &'static str,
    /// Net name.
    pub name: String,
    /// Number of layers (with or without blobs).
    pub layer_count: usize,
    /// Every layer, in file order.
    pub layers: Vec<LayerReport>,
    /// Totals.
    pub total: Total,
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn ratio(dense: u64, sparse: u64) -> f64 {
    if sparse == 0 {
        0.0
    } else {
        dense as f64 / sparse as f64
    }
}

/// Values per parallel task: large enough to amortise scheduling, small enough to split a VGG fc6 blob 100 ways.
const TASK_VALUES: u64 = 1 << 20;

/// Scans one blob (in parallel chunks of whole rows): its figures.
fn blob_report(blob: &BlobView<'_, '_>, type_name: &str, max_gap: u64, gap_bytes: u64) -> BlobReport {
    let shape = blob.shape();
    let values = blob.data();
    let count = values.len() as u64;
    let rows = caffemodel::output_rows(type_name, &shape.dims, count);
    let row_len = count.checked_div(rows).unwrap_or(0).max(1);
    let rows_per_task = (TASK_VALUES / row_len).max(1);
    let tasks = rows.div_ceil(rows_per_task);
    let borrowed = values.as_f32_slice();
    let parts: Vec<(Partial, u64)> = (0..tasks)
        .into_par_iter()
        .map(|task| {
            let first_row = task * rows_per_task;
            let last_row = ((task + 1) * rows_per_task).min(rows);
            let mut buf = Vec::new();
            let mut part = Partial::default();
            let mut zero_rows = 0;
            for row in first_row..last_row {
                let start = (row * row_len) as usize;
                // The last row takes any remainder when count is not rows x row_len (a ragged legacy shape).
                let end = if row + 1 == rows {
                    count as usize
                } else {
                    start + row_len as usize
                };
                let slice: &[f32] = match borrowed {
                    Some(all) => &all[start..end],
                    None => {
                        buf.resize(end - start, 0.0);
                        values.read_f32(start, &mut buf);
                        &buf
                    }
                };
                let row_part = Partial::scan(slice, max_gap);
                zero_rows += u64::from(row_part.nonzero == 0 && !slice.is_empty());
                part = part.then(row_part, max_gap);
            }
            (part, zero_rows)
        })
        .collect();
    let (part, zero_rows) = parts.into_iter().fold((Partial::default(), 0), |(acc, z), (p, pz)| {
        (acc.then(p, max_gap), z + pz)
    });
    let elem_size = values.elem().size() as u64;
    BlobReport {
        shape: shape.dims.clone(),
        count,
        nonzero: part.nonzero,
        zero_rows,
        rows,
        dense_bytes: count * elem_size,
        sparse_bytes: part.gap_entries(max_gap) * (4 + gap_bytes),
        has_diff: blob.has_diff(),
    }
}

/// Computes the per-layer figures of a net.
pub fn weights_report(model: &ModelFile, net: &NetMessage<'_>, index_bits: u8) -> WeightsReport {
    let max_gap = (1u64 << index_bits) - 1;
    let gap_bytes = u64::from(index_bits).div_ceil(8);
    let layers: Vec<LayerReport> = net
        .layers()
        .iter()
        .map(|layer| {
            let type_name = layer.type_name().into_owned();
            let blobs: Vec<BlobReport> = layer
                .blobs()
                .iter()
                .map(|b| blob_report(b, &type_name, max_gap, gap_bytes))
                .collect();
            let params = blobs.iter().map(|b| b.count).sum();
            let nonzero = blobs.iter().map(|b| b.nonzero).sum();
            let dense_bytes = blobs.iter().map(|b| b.dense_bytes).sum();
            let sparse_bytes = blobs.iter().map(|b| b.sparse_bytes).sum();
            let filter_sparsity = blobs.first().map_or(0.0, |b| percent(b.zero_rows, b.rows));
            LayerReport {
                name: layer.name().into_owned(),
                type_name,
                params,
                nonzero,
                sparsity: percent(params - nonzero, params),
                filter_sparsity,
                dense_bytes,
                sparse_bytes,
                ratio: ratio(dense_bytes, sparse_bytes),
                blobs,
            }
        })
        .collect();
    let params = layers.iter().map(|l| l.params).sum();
    let nonzero = layers.iter().map(|l| l.nonzero).sum();
    let dense_bytes = layers.iter().map(|l| l.dense_bytes).sum();
    let sparse_bytes = layers.iter().map(|l| l.sparse_bytes).sum();
    WeightsReport {
        file: model.path().display().to_string(),
        size: model.bytes().len() as u64,
        caffez_bytes: None,
        format: net.generation().as_str(),
        name: net.name().map(|n| n.into_owned()).unwrap_or_default(),
        layer_count: layers.len(),
        layers,
        total: Total {
            params,
            nonzero,
            sparsity: percent(params - nonzero, params),
            dense_bytes,
            sparse_bytes,
            ratio: ratio(dense_bytes, sparse_bytes),
        },
    }
}

pub(crate) fn new_table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(header.to_vec());
    table
}

pub(crate) fn right_align(table: &mut Table, from: usize) {
    let n = table.column_count();
    for i in from..n {
        if let Some(col) = table.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
}

fn shape_text(dims: &[i64]) -> String {
    if dims.is_empty() {
        "scalar".into()
    } else {
        dims.iter().map(i64::to_string).collect::<Vec<_>>().join("x")
    }
}

impl WeightsReport {
    fn to_text(&self, index_bits: u8) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "file:    {}", self.file);
        match self.caffez_bytes {
            Some(stored) => {
                let _ = writeln!(
                    out,
                    "size:    {stored} bytes (.caffez; the caffemodel it gives back: {} bytes)",
                    self.size
                );
            }
            None => {
                let _ = writeln!(out, "size:    {} bytes", self.size);
            }
        }
        let _ = writeln!(out, "format:  {}", self.format);
        let _ = writeln!(
            out,
            "net:     {}",
            if self.name.is_empty() { "(unnamed)" } else { &self.name }
        );
        let with_blobs = self.layers.iter().filter(|l| !l.blobs.is_empty()).count();
        let _ = writeln!(out, "layers:  {} ({} with weights)", self.layer_count, with_blobs);
        let mut table = new_table(&[
            "layer",
            "type",
            "blobs",
            "params",
            "nonzero",
            "sparsity %",
            "filter sparsity %",
            "dense bytes",
            "sparse bytes",
            "ratio",
        ]);
        for l in self.layers.iter().filter(|l| !l.blobs.is_empty()) {
            let shapes: Vec<String> = l.blobs.iter().map(|b| shape_text(&b.shape)).collect();
            table.add_row(vec![
                l.name.clone(),
                l.type_name.clone(),
                shapes.join(", "),
                l.params.to_string(),
                l.nonzero.to_string(),
                format!("{:.2}", l.sparsity),
                format!("{:.2}", l.filter_sparsity),
                l.dense_bytes.to_string(),
                l.sparse_bytes.to_string(),
                format!("{:.2}x", l.ratio),
            ]);
        }
        let t = &self.total;
        table.add_row(vec![
            "total".into(),
            String::new(),
            String::new(),
            t.params.to_string(),
            t.nonzero.to_string(),
            format!("{:.2}", t.sparsity),
            String::new(),
            t.dense_bytes.to_string(),
            t.sparse_bytes.to_string(),
            format!("{:.2}x", t.ratio),
        ]);
        right_align(&mut table, 3);
        let _ = writeln!(out, "{table}");
        let _ = writeln!(
            out,
            "sparse bytes: relative-index form, a 4-byte value and a gap of {index_bits} bits per stored entry, fillers counted"
        );
        out
    }
}

/// How the weights file matches a net definition.
#[derive(Serialize, Debug)]
pub struct NetCheck {
    /// The prototxt.
    pub prototxt: String,
    /// Layers of the net that have parameters in the weights file (by name).
    pub matched: Vec<String>,
    /// Layers of the net with no weights in the file (Caffe leaves them at their fillers).
    pub missing: Vec<String>,
    /// Layers of the weights file the net does not have (Caffe ignores them).
    pub unused: Vec<String>,
}

impl NetCheck {
    fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\nchecked against {}:", self.prototxt);
        let _ = writeln!(out, "  layers given weights: {}", self.matched.join(", "));
        if !self.missing.is_empty() {
            let _ = writeln!(out, "  layers with no weights in the file: {}", self.missing.join(", "));
        }
        if !self.unused.is_empty() {
            let _ = writeln!(out, "  weights the net does not use: {}", self.unused.join(", "));
        }
        out
    }
}

fn upgraded_net(path: &Path, schema: &Schema) -> Result<(caffe_proto::NetParameter, bool)> {
    let mut net = text::read_net(path, schema)?;
    let needed = caffemodel::upgrade::net_needs_upgrade(&net);
    if needed {
        caffemodel::upgrade::upgrade_net(&mut net).with_context(|| format!("{}: upgrading the net", path.display()))?;
    }
    Ok((net, needed))
}

fn net_check(net: &NetMessage<'_>, prototxt: &Path, schema: &Schema) -> Result<NetCheck> {
    let (def, _) = upgraded_net(prototxt, schema)?;
    let with_weights: Vec<String> = net
        .layers()
        .iter()
        .filter(|l| !l.blobs().is_empty())
        .map(|l| l.name().into_owned())
        .collect();
    let mut check = NetCheck {
        prototxt: prototxt.display().to_string(),
        matched: Vec::new(),
        missing: Vec::new(),
        unused: Vec::new(),
    };
    for layer in &def.layer {
        let name = layer.name().to_string();
        if with_weights.contains(&name) {
            check.matched.push(name);
        } else if layer_has_params(layer.r#type()) {
            check.missing.push(name);
        }
    }
    for name in with_weights {
        if !def.layer.iter().any(|l| l.name() == name) {
            check.unused.push(name);
        }
    }
    Ok(check)
}

/// Layer types that own learnable or stored blobs.
fn layer_has_params(type_name: &str) -> bool {
    matches!(
        type_name,
        "Convolution"
            | "Deconvolution"
            | "InnerProduct"
            | "BatchNorm"
            | "Scale"
            | "Bias"
            | "PReLU"
            | "Embed"
            | "LSTM"
            | "RNN"
    )
}

/// A one-line summary of a layer's main parameters.
fn key_params(layer: &caffe_proto::LayerParameter) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &layer.convolution_param {
        parts.push(format!("num_output {}", c.num_output()));
        let k: Vec<String> = c.kernel_size.iter().map(u32::to_string).collect();
        if !k.is_empty() {
            parts.push(format!("kernel {}", k.join("x")));
        } else if c.kernel_h.is_some() {
            parts.push(format!("kernel {}x{}", c.kernel_h(), c.kernel_w()));
        }
        if !c.stride.is_empty() {
            parts.push(format!(
                "stride {}",
                c.stride.iter().map(u32::to_string).collect::<Vec<_>>().join("x")
            ));
        }
        if !c.pad.is_empty() {
            parts.push(format!(
                "pad {}",
                c.pad.iter().map(u32::to_string).collect::<Vec<_>>().join("x")
            ));
        }
        if c.group() != 1 {
            parts.push(format!("group {}", c.group()));
        }
    }
    if let Some(p) = &layer.pooling_param {
        let method = format!("{:?}", p.pool()).to_ascii_lowercase();
        if p.global_pooling() {
            parts.push(format!("{method} global"));
        } else {
            parts.push(format!("{method} {}/{}", p.kernel_size(), p.stride()));
        }
    }
    if let Some(p) = &layer.inner_product_param {
        parts.push(format!("num_output {}", p.num_output()));
    }
    if let Some(p) = &layer.dropout_param {
        parts.push(format!("ratio {}", p.dropout_ratio()));
    }
    if let Some(p) = &layer.lrn_param {
        parts.push(format!(
            "local_size {} alpha {} beta {}",
            p.local_size(),
            p.alpha(),
            p.beta()
        ));
    }
    if let Some(p) = &layer.input_param {
        for s in &p.shape {
            parts.push(format!("shape {}", shape_text(&s.dim)));
        }
    }
    if let Some(p) = &layer.data_param {
        parts.push(format!("source {} batch {}", p.source(), p.batch_size()));
    }
    for rule in &layer.include {
        if let Some(phase) = rule.phase {
            parts.push(format!("phase {}", if phase == 0 { "TRAIN" } else { "TEST" }));
        }
    }
    parts.join(", ")
}

#[derive(Serialize)]
struct StructureLayer {
    name: String,
    #[serde(rename = "type")]
    type_name: String,
    bottom: Vec<String>,
    top: Vec<String>,
    params: String,
}

fn net_structure(path: &Path, schema: &Schema, json: bool) -> Result<String> {
    let (net, upgraded) = upgraded_net(path, schema)?;
    let layers: Vec<StructureLayer> = net
        .layer
        .iter()
        .map(|l| StructureLayer {
            name: l.name().to_string(),
            type_name: l.r#type().to_string(),
            bottom: l.bottom.clone(),
            top: l.top.clone(),
            params: key_params(l),
        })
        .collect();
    if json {
        let value = serde_json::json!({
            "file": path.display().to_string(),
            "name": net.name(),
            "upgraded_from_legacy": upgraded,
            "layer_count": layers.len(),
            "layers": layers,
        });
        return Ok(serde_json::to_string_pretty(&value)? + "\n");
    }
    let mut out = String::new();
    let _ = writeln!(out, "file:    {}", path.display());
    let _ = writeln!(out, "net:     {}", net.name());
    let _ = writeln!(
        out,
        "layers:  {}{}",
        layers.len(),
        if upgraded {
            " (legacy layout, shown upgraded)"
        } else {
            ""
        }
    );
    let mut table = new_table(&["layer", "type", "bottom", "top", "parameters"]);
    for l in &layers {
        table.add_row(vec![
            l.name.clone(),
            l.type_name.clone(),
            l.bottom.join(", "),
            l.top.join(", "),
            l.params.clone(),
        ]);
    }
    let _ = writeln!(out, "{table}");
    Ok(out)
}

fn solver_state(model: &ModelFile, json: bool) -> Result<String> {
    let state = model.solver_state()?;
    let history: Vec<(Vec<i64>, u64, u64)> = state
        .history()
        .map(|b| {
            let values = b.data();
            let mut nonzero = 0u64;
            values.for_each_chunk(1 << 16, |c| nonzero += c.iter().filter(|v| **v != 0.0).count() as u64);
            (b.shape().dims, values.len() as u64, nonzero)
        })
        .collect();
    if json {
        let value = serde_json::json!({
            "file": model.path().display().to_string(),
            "size": model.bytes().len(),
            "iter": state.iter(),
            "learned_net": state.learned_net(),
            "current_step": state.current_step(),
            "history": history.iter().map(|(s, c, n)| serde_json::json!({"shape": s, "count": c, "nonzero": n})).collect::<Vec<_>>(),
        });
        return Ok(serde_json::to_string_pretty(&value)? + "\n");
    }
    let mut out = String::new();
    let _ = writeln!(out, "file:          {}", model.path().display());
    let _ = writeln!(out, "size:          {} bytes", model.bytes().len());
    let _ = writeln!(out, "kind:          solver state");
    let _ = writeln!(
        out,
        "iteration:     {}",
        state.iter().map_or("-".into(), |i| i.to_string())
    );
    let _ = writeln!(out, "learned net:   {}", state.learned_net().unwrap_or_default());
    let _ = writeln!(
        out,
        "current step:  {}",
        state.current_step().map_or("-".into(), |i| i.to_string())
    );
    let _ = writeln!(out, "history blobs: {}", history.len());
    let mut table = new_table(&["#", "shape", "count", "nonzero"]);
    for (i, (s, c, n)) in history.iter().enumerate() {
        table.add_row(vec![i.to_string(), shape_text(s), c.to_string(), n.to_string()]);
    }
    right_align(&mut table, 2);
    let _ = writeln!(out, "{table}");
    Ok(out)
}

fn mean_blob(model: &ModelFile, json: bool) -> Result<String> {
    let file = model.blob()?;
    let blob = file.view();
    let shape = blob.shape();
    let values = blob.data().to_vec_f64();
    // Per-channel means of a (N, C, H, W) or (C, H, W) mean image; channel = axis len-3.
    let dims = &shape.dims;
    let channels = if dims.len() >= 3 {
        dims[dims.len() - 3].max(1) as usize
    } else {
        1
    };
    let plane = if dims.len() >= 3 {
        (dims[dims.len() - 2] * dims[dims.len() - 1]).max(1) as usize
    } else {
        values.len().max(1)
    };
    let mut channel_means = vec![0.0f64; channels];
    if !values.is_empty() {
        for (i, v) in values.iter().enumerate() {
            channel_means[(i / plane) % channels] += v;
        }
        let per_channel = (values.len() / channels).max(1) as f64;
        channel_means.iter_mut().for_each(|m| *m /= per_channel);
    }
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let mean = if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    };
    if json {
        let value = serde_json::json!({
            "file": model.path().display().to_string(),
            "size": model.bytes().len(),
            "shape": dims,
            "count": values.len(),
            "min": min, "max": max, "mean": mean,
            "channel_means": channel_means,
        });
        return Ok(serde_json::to_string_pretty(&value)? + "\n");
    }
    let mut out = String::new();
    let _ = writeln!(out, "file:   {}", model.path().display());
    let _ = writeln!(out, "size:   {} bytes", model.bytes().len());
    let _ = writeln!(
        out,
        "kind:   blob (binaryproto{})",
        if shape.legacy { ", legacy 4-D shape" } else { "" }
    );
    let _ = writeln!(out, "shape:  {}", shape_text(dims));
    let _ = writeln!(
        out,
        "values: {} (min {min:.4}, max {max:.4}, mean {mean:.4})",
        values.len()
    );
    let means: Vec<String> = channel_means.iter().map(|m| format!("{m:.4}")).collect();
    let _ = writeln!(out, "channel means: {}", means.join(", "));
    Ok(out)
}
