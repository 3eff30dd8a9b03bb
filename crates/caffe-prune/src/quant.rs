//! `caffe-prune quantize`: post-training weight sharing (Deep Compression stage 2) of a caffemodel, and what each
//! stage of the compression would store. Glue: `quantize` clusters, `sparse` counts the relative-index entries,
//! `entropy` sizes the Huffman-coded streams, `caffemodel` rewrites the payloads.

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
    pub input: PathBuf,
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
    /// Bits per relative index, for the sizes after pruning and after quantization.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub index_bits: u8,
    /// The quantized model: a copy of the input with every quantized weight replaced by its shared value (only
    /// those payloads change). Without -o, only the report.
    #[arg(short, long, value_name = "OUT.caffemodel")]
    pub output: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
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

fn parse_bits(entries: &[String]) -> Result<BTreeMap<String, u32>> {
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
    /// Codes and gaps Huffman-coded (canonical, with their tables), plus the codebook (P+Q+H).
    pub coded_bytes: u64,
}

/// What `quantize` did.
#[derive(Serialize, Debug)]
pub struct QuantizeReport {
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
    /// See `model_pruned_bytes`.
    pub model_coded_bytes: u64,
    /// Where the quantized model was written.
    pub output: Option<String>,
}

/// Bytes of `bits` bits.
fn bytes_of_bits(bits: u64) -> u64 {
    bits.div_ceil(8)
}

/// Quantizes one blob; the row and the shared values.
fn quantize_layer(
    layer: &str,
    type_name: &str,
    values: &[f32],
    bits: u32,
    init: quantize::Init,
    index_bits: u8,
) -> Result<(LayerRow, Vec<f32>)> {
    let options = quantize::KMeansOptions::new(bits).with_init(init);
    let quantized = quantize::quantize(values, &options).with_context(|| format!("layer '{layer}'"))?;
    let shared = quantized.reconstruct();
    let scale = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    let max_error = values
        .iter()
        .zip(&shared)
        .map(|(w, q)| f64::from((w - q).abs()))
        .fold(0.0, f64::max)
        / f64::from(scale).max(f64::MIN_POSITIVE);
    let pruned = sparse::encode_gaps(values, index_bits).with_context(|| format!("layer '{layer}'"))?;
    let entries = sparse::encode_gaps(&shared, index_bits).with_context(|| format!("layer '{layer}'"))?;
    let codes = quantize::assign(&entries.values, &quantized.codebook).with_context(|| format!("layer '{layer}'"))?;
    let gaps: Vec<u8> = match &entries.gaps {
        sparse::Gaps::U8(g) => g.clone(),
        sparse::Gaps::U16(_) => bail!("layer '{layer}': index bits above 8 are not coded"),
    };
    let codebook_bytes = 4 * quantized.codebook.len() as u64;
    let entry_count = entries.values.len() as u64;
    let row = LayerRow {
        layer: layer.to_string(),
        type_name: type_name.to_string(),
        bits,
        weights: values.len(),
        nonzeros: values.iter().filter(|&&v| v != 0.0).count(),
        centroids: quantized.codebook.len() - 1,
        iterations: quantized.iterations,
        max_error,
        dense_bytes: 4 * values.len() as u64,
        pruned_bytes: pruned.values.len() as u64 * (4 + 1),
        quantized_bytes: bytes_of_bits(entry_count * u64::from(bits + u32::from(index_bits))) + codebook_bytes,
        coded_bytes: entropy::encoded_len(&codes) + entropy::encoded_len(&gaps) + codebook_bytes,
    };
    Ok((row, shared))
}

/// Runs `quantize`.
pub fn quantize_model(args: &QuantizeArgs) -> Result<QuantizeReport> {
    let named = parse_bits(&args.bits)?;
    if let Some(output) = &args.output {
        outfile::check_outputs(&[output], &[&args.input])?;
    }
    let model = ModelFile::open(&args.input)?;
    let mut net = model.net()?;
    let layers = net.layers();
    for name in named.keys() {
        match layers.iter().find(|l| l.name() == name.as_str()) {
            None => bail!("{}: no layer named '{name}'", args.input.display()),
            Some(l) if !caffemodel::is_prunable_type(&l.type_name()) || l.blobs().is_empty() => {
                bail!(
                    "{}: layer '{name}' ({}) has no weight blob to share",
                    args.input.display(),
                    l.modern_type_name()
                )
            }
            Some(_) => {}
        }
    }
    let init = args.init.with_seed(args.seed);
    let mut rows = Vec::new();
    let mut updates = Vec::new();
    let mut model_dense = 0u64;
    let mut others = 0u64;
    for layer in &layers {
        let blobs = layer.blobs();
        let dense: u64 = blobs.iter().map(|b| 4 * b.data().len() as u64).sum();
        model_dense += dense;
        let name = layer.name().to_string();
        let type_name = layer.modern_type_name();
        let Some(weights) = blobs.first().filter(|_| caffemodel::is_prunable_type(&type_name)) else {
            others += dense;
            continue;
        };
        let bits = named.get(&name).copied().unwrap_or_else(|| default_bits(&type_name));
        let values = weights.data().to_vec_f32();
        others += dense - 4 * values.len() as u64;
        let (row, shared) = quantize_layer(&name, &type_name, &values, bits, init, args.index_bits)?;
        rows.push(row);
        updates.push((layer.index, shared));
    }
    drop(layers);
    if rows.is_empty() {
        bail!(
            "{}: no Convolution, InnerProduct or Deconvolution layer with weights",
            args.input.display()
        );
    }
    if let Some(output) = &args.output {
        for (index, shared) in updates {
            net.set_blob_data(index, 0, shared)?;
        }
        outfile::write_atomic(output, |w| net.encode_to(w))?;
    }
    let sum = |f: fn(&LayerRow) -> u64| others + rows.iter().map(f).sum::<u64>();
    Ok(QuantizeReport {
        input: args.input.display().to_string(),
        init: format!("{:?}", args.init).to_lowercase(),
        index_bits: args.index_bits,
        model_dense_bytes: model_dense,
        model_pruned_bytes: sum(|r| r.pruned_bytes),
        model_quantized_bytes: sum(|r| r.quantized_bytes),
        model_coded_bytes: sum(|r| r.coded_bytes),
        layers: rows,
        output: args.output.as_deref().map(|p| Path::new(p).display().to_string()),
    })
}

impl QuantizeReport {
    /// The table: a row per layer, then the whole model's bytes and ratio at each stage.
    pub fn to_text(&self) -> String {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header([
            "layer", "type", "bits", "weights", "nonzeros", "shared", "iters", "max err", "dense B", "P B", "P+Q B",
            "P+Q+H B", "ratio",
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
                r.coded_bytes.to_string(),
                format!("{:.1}x", r.dense_bytes as f64 / r.coded_bytes.max(1) as f64),
            ]);
        }
        for column in 2..13 {
            if let Some(c) = table.column_mut(column) {
                c.set_cell_alignment(CellAlignment::Right);
            }
        }
        let ratio = |b: u64| self.model_dense_bytes as f64 / b.max(1) as f64;
        let mut text = format!("{table}\n");
        text.push_str(&format!(
            "model: {} bytes dense; pruned (P) {} ({:.1}x); + quantized (P+Q) {} ({:.1}x); + Huffman (P+Q+H) {} \
             ({:.1}x); index bits {}, init {}\n",
            self.model_dense_bytes,
            self.model_pruned_bytes,
            ratio(self.model_pruned_bytes),
            self.model_quantized_bytes,
            ratio(self.model_quantized_bytes),
            self.model_coded_bytes,
            ratio(self.model_coded_bytes),
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
        let (row, shared) = quantize_layer("l", "InnerProduct", &values, 1, quantize::Init::Linear, 5).unwrap();
        // One centroid for 1 bit: the mean of the nonzeros is 0, so the zero rule picks a side.
        assert_eq!(row.centroids, 1);
        assert_eq!(row.nonzeros, 4);
        assert!(shared.iter().zip(&values).all(|(q, w)| (*q == 0.0) == (*w == 0.0)));
        // 4 entries in the gap form (gaps 1, 2, 1, 2; nothing trails the last nonzero): 5 bytes each with float
        // values and 5-bit gaps stored in a byte; 1-bit codes + 5-bit gaps = 24 bits, plus a 2-entry codebook.
        assert_eq!(row.pruned_bytes, 4 * 5);
        assert_eq!(row.quantized_bytes, 3 + 8);
        assert_eq!(row.dense_bytes, 40);
    }
}
