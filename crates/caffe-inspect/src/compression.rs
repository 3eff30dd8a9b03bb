//! Deep Compression's Table 3 for a quantized model: per layer the weights kept, the bits per weight and per
//! index after pruning and quantization (P+Q) and after entropy coding (P+Q+H), and the bytes.

use crate::stats::Partial;
use caffemodel::ModelFile;
use serde::Serialize;
use std::fmt::Write as _;

/// One coded weight blob.
#[derive(Serialize, Clone, Debug)]
pub struct CompressionRow {
    /// Layer name.
    pub layer: String,
    /// Weights in the blob.
    pub weights: u64,
    /// Kept (nonzero) weights, percent.
    pub kept_percent: f64,
    /// Code width after quantization (P+Q).
    pub weight_bits_pq: u32,
    /// Bits per kept weight spent on its code in the `.caffez` (P+Q+H).
    pub weight_bits_pqh: f64,
    /// Index bits per stored entry in the relative-index form (P+Q), `--index-bits`.
    pub index_bits_pq: u8,
    /// Bits per kept weight spent on its position in the `.caffez` (P+Q+H).
    pub index_bits_pqh: f64,
    /// Bytes in the relative-index form with codes: entries (fillers included) x (code bits + index bits), plus
    /// the codebook at 32 bits a value.
    pub bytes_pq: u64,
    /// Bytes of the blob's section in the `.caffez` (codebook, streams, framing).
    pub bytes_pqh: u64,
    /// `bytes_pqh` as a percentage of the dense blob.
    pub percent_of_dense: f64,
    /// Dense bytes / `bytes_pq`.
    pub ratio_pq: f64,
    /// Dense bytes / `bytes_pqh`.
    pub ratio_pqh: f64,
}

/// The whole table.
#[derive(Serialize, Clone, Debug)]
pub struct CompressionReport {
    /// Bytes of the caffemodel.
    pub model_bytes: u64,
    /// Bytes of its `.caffez`.
    pub caffez_bytes: u64,
    /// Bytes of the `.caffez` spent on the rest of the model (layer definitions, biases, uncoded blobs).
    pub skeleton_bytes: u64,
    /// `model_bytes / caffez_bytes`.
    pub ratio: f64,
    /// Layers whose weights are not quantized (more than 255 distinct values), stored as they are.
    pub not_quantized: Vec<String>,
    /// The coded weight blobs, in net order.
    pub layers: Vec<CompressionRow>,
}

/// The table for `model`, or `None` when no weight blob is quantized.
pub fn compression_report(model: &ModelFile, index_bits: u8) -> anyhow::Result<Option<CompressionReport>> {
    let compressed = match caffez::compress(model) {
        Ok(c) => c,
        Err(caffez::CompressError::NothingQuantized { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let net = model.net()?;
    let layers = net.layers();
    let max_gap = (1u64 << index_bits) - 1;
    let mut rows = Vec::new();
    for blob in compressed.blobs.iter().filter(|b| b.bits.is_some()) {
        let (Some(bits), Some((gap_bits, code_bits))) = (blob.bits, blob.cost_bits) else {
            continue;
        };
        let values = layers
            .iter()
            .find(|l| l.name() == blob.layer.as_str())
            .and_then(|l| l.blobs().into_iter().next())
            .map(|b| b.data().to_vec_f32())
            .unwrap_or_default();
        let entries = Partial::scan(&values, max_gap).gap_entries(max_gap);
        let dense = 4 * blob.count;
        let bytes_pq = (entries * u64::from(bits + u32::from(index_bits))).div_ceil(8) + 4 * blob.distinct;
        let per_kept = |bits: f64| if blob.kept == 0 { 0.0 } else { bits / blob.kept as f64 };
        rows.push(CompressionRow {
            layer: blob.layer.clone(),
            weights: blob.count,
            kept_percent: 100.0 * blob.kept as f64 / blob.count.max(1) as f64,
            weight_bits_pq: bits,
            weight_bits_pqh: per_kept(code_bits),
            index_bits_pq: index_bits,
            index_bits_pqh: per_kept(gap_bits),
            bytes_pq,
            bytes_pqh: blob.bytes,
            percent_of_dense: 100.0 * blob.bytes as f64 / dense.max(1) as f64,
            ratio_pq: dense as f64 / bytes_pq.max(1) as f64,
            ratio_pqh: dense as f64 / blob.bytes.max(1) as f64,
        });
    }
    Ok(Some(CompressionReport {
        model_bytes: compressed.model_len,
        caffez_bytes: compressed.bytes.len() as u64,
        skeleton_bytes: compressed.skeleton_bytes,
        ratio: compressed.model_len as f64 / compressed.bytes.len() as f64,
        not_quantized: compressed
            .blobs
            .iter()
            .filter(|b| b.bits.is_none())
            .map(|b| b.layer.clone())
            .collect(),
        layers: rows,
    }))
}

impl CompressionReport {
    /// The table and the whole-model line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut table = crate::report::new_table(&[
            "layer",
            "weights",
            "kept (P)",
            "weight bits P+Q",
            "weight bits P+Q+H",
            "index bits P+Q",
            "index bits P+Q+H",
            "bytes P+Q",
            "bytes P+Q+H",
            "% of dense",
            "ratio P+Q",
            "ratio P+Q+H",
        ]);
        for r in &self.layers {
            table.add_row(vec![
                r.layer.clone(),
                r.weights.to_string(),
                format!("{:.1}%", r.kept_percent),
                r.weight_bits_pq.to_string(),
                format!("{:.2}", r.weight_bits_pqh),
                r.index_bits_pq.to_string(),
                format!("{:.2}", r.index_bits_pqh),
                r.bytes_pq.to_string(),
                r.bytes_pqh.to_string(),
                format!("{:.2}%", r.percent_of_dense),
                format!("{:.1}x", r.ratio_pq),
                format!("{:.1}x", r.ratio_pqh),
            ]);
        }
        crate::report::right_align(&mut table, 1);
        let _ = writeln!(
            out,
            "\nDeep Compression (P: pruned, Q: quantized, H: entropy-coded as .caffez):\n{table}"
        );
        let _ = writeln!(
            out,
            "whole model: {} bytes as .caffez ({} of them the rest of the net: layer definitions, biases), {:.1}x \
             smaller than the {}-byte caffemodel",
            self.caffez_bytes, self.skeleton_bytes, self.ratio, self.model_bytes
        );
        if !self.not_quantized.is_empty() {
            let _ = writeln!(
                out,
                "not quantized (stored as they are): {}",
                self.not_quantized.join(", ")
            );
        }
        out
    }
}
