//! The translation, layer by layer.

use std::collections::{BTreeSet, HashMap};

use caffe_proto::{
    eltwise_parameter::EltwiseOp, lrn_parameter::NormRegion, pooling_parameter::PoolMethod, LayerParameter,
    NetParameter,
};
use engine::Net;

use crate::error::ExportError;
use crate::graph::{value_info, Attr, Graph};
use crate::proto::{ModelProto, OperatorSetIdProto};

/// The operator set written unless asked otherwise: covers single-axis Softmax and Split with a `split` input (13),
/// and is read by every onnxruntime of the last years.
pub const DEFAULT_OPSET: i64 = 17;

/// How to export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions {
    /// The ONNX operator set version, 13 to 21.
    pub opset: i64,
    /// Also make every blob a graph output (under its Caffe name), not only the blobs no layer reads: for comparing
    /// each blob with Caffe's.
    pub every_blob: bool,
    /// Keep the codebook of quantized weight blobs (at most 256 distinct values, as weight sharing leaves them): the
    /// file holds a float codebook and one uint8 index per weight, and a Gather rebuilds the exact weights. Blobs
    /// with more distinct values stay dense.
    pub codebook: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            opset: DEFAULT_OPSET,
            every_blob: false,
            codebook: false,
        }
    }
}

/// The IR version that goes with an operator set (onnx's docs/Versioning.md).
fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

/// Translates `net` (built from `param` by the engine, weights loaded) into an ONNX model. `param` supplies each
/// layer's parameters; the engine supplies the shapes, the weights and which layers the phase keeps.
pub fn export(param: &NetParameter, net: &Net, options: &ExportOptions) -> Result<ModelProto> {
    if !(13..=21).contains(&options.opset) {
        return Err(ExportError::Opset(options.opset));
    }
    let by_name: HashMap<&str, &LayerParameter> = param.layer.iter().map(|l| (l.name(), l)).collect();
    let layers: Vec<_> = net.layers().cloned().collect();
    let outputs: BTreeSet<String> = if options.every_blob {
        net.blob_names().map(str::to_string).collect()
    } else {
        net.outputs().into_iter().map(str::to_string).collect()
    };
    // The last layer writing each blob: its version takes the blob's own name.
    let mut last_writer = HashMap::new();
    for (i, layer) in layers.iter().enumerate() {
        for top in &layer.tops {
            last_writer.insert(top.clone(), i);
        }
    }
    let mut x = Exporter {
        g: Graph::new(),
        net,
        opset: options.opset,
        codebook: options.codebook,
        outputs: &outputs,
        last_writer,
        inputs: Vec::new(),
        skip: BTreeSet::new(),
        dynamic: BTreeSet::new(),
    };
    for (i, info) in layers.iter().enumerate() {
        if x.skip.contains(&i) {
            continue;
        }
        let layer = Layer {
            index: i,
            name: &info.name,
            kind: &info.layer_type,
            bottoms: &info.bottoms,
            tops: &info.tops,
            param: by_name.get(info.name.as_str()).copied(),
        };
        x.layer(&layer, &layers)?;
    }
    let mut graph_outputs = Vec::new();
    for blob in &outputs {
        let Some(value) = x.g.value(blob) else { continue };
        if x.inputs.iter().any(|(name, _)| name == value) {
            continue;
        }
        let shape = net.blob(blob).map(|t| t.shape().to_vec()).unwrap_or_default();
        graph_outputs.push(value_info(value, &shape, x.dynamic.contains(blob)));
    }
    if graph_outputs.is_empty() {
        return Err(ExportError::NoOutputs);
    }
    let inputs = x
        .inputs
        .iter()
        .map(|(name, shape)| value_info(name, shape, false))
        .collect();
    let graph = x.g.finish(net.name(), inputs, graph_outputs);
    Ok(ModelProto {
        ir_version: ir_version(options.opset),
        producer_name: "caffe-convert".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: options.opset,
        }],
        ..Default::default()
    })
}

/// One layer of the built net.
struct Layer<'a> {
    index: usize,
    name: &'a str,
    kind: &'a str,
    bottoms: &'a [String],
    tops: &'a [String],
    /// `None` for the splits the engine inserted.
    param: Option<&'a LayerParameter>,
}

struct Exporter<'a> {
    g: Graph,
    net: &'a Net,
    opset: i64,
    codebook: bool,
    outputs: &'a BTreeSet<String>,
    last_writer: HashMap<String, usize>,
    /// Graph inputs: name and shape.
    inputs: Vec<(String, Vec<usize>)>,
    /// Layers already folded into an earlier one (a Scale into its BatchNorm).
    skip: BTreeSet<usize>,
    /// Blobs whose first axis depends on the data (Filter's tops): declared without a size.
    dynamic: BTreeSet<String>,
}

type Result<T> = std::result::Result<T, ExportError>;

impl Exporter<'_> {
    fn shape(&self, blob: &str) -> Vec<usize> {
        self.net.blob(blob).map(|t| t.shape().to_vec()).unwrap_or_default()
    }

    fn input(&self, l: &Layer, i: usize) -> Result<String> {
        let blob = &l.bottoms[i];
        self.g
            .value(blob)
            .map(str::to_string)
            .ok_or_else(|| ExportError::layer(l.name, l.kind, format!("bottom '{blob}' has no value")))
    }

    /// The name for the value layer `l` writes as top `top`: the blob's own name for its last version, else a fresh
    /// one; assigned to the blob.
    fn output(&mut self, l: &Layer, top: usize) -> String {
        let blob = &l.tops[top];
        let value = if self.last_writer.get(blob) == Some(&l.index) && self.g.reserve(blob) {
            blob.clone()
        } else {
            self.g.unique(&format!("{blob}/{}", l.name))
        };
        self.g.assign(blob, value.clone());
        value
    }

    /// A layer's weight blob: a float initializer, or (with the codebook option, for a blob of at most 256 distinct
    /// values) a codebook and uint8 indices gathered back into the same floats.
    fn weight(&mut self, l: &Layer, w: &engine::Tensor) -> String {
        if self.codebook {
            if let Some((codebook, indices)) = codebook_of(w.data()) {
                let table = self.g.floats(l.name, "codebook", &[codebook.len()], &codebook);
                let codes = self.g.bytes(l.name, "codes", w.shape(), indices);
                let index = self
                    .g
                    .step(l.name, "index", "Cast", &[&codes], vec![("to", Attr::Int(7))]);
                return self.g.step(
                    l.name,
                    "weight",
                    "Gather",
                    &[&table, &index],
                    vec![("axis", Attr::Int(0))],
                );
            }
        }
        self.g.floats(l.name, "weight", w.shape(), w.data())
    }

    fn params(&self, l: &Layer) -> &[engine::Tensor] {
        self.net.params(l.name).unwrap_or(&[])
    }

    fn unsupported(l: &Layer, why: impl Into<String>) -> ExportError {
        ExportError::layer(l.name, l.kind, why)
    }

    /// A unary operator from bottom 0 to top 0.
    fn unary(&mut self, l: &Layer, op: &str, attrs: Vec<(&str, Attr)>) -> Result<()> {
        let x = self.input(l, 0)?;
        let y = self.output(l, 0);
        self.g.node(l.name, op, &[&x], &[&y], attrs);
        Ok(())
    }

    /// Top `i` is bottom `i` (Split, Dropout at test time): an alias, or an Identity when the top is a graph output
    /// and so needs its own name.
    fn alias(&mut self, l: &Layer, bottom: usize, top: usize) -> Result<()> {
        let x = self.input(l, bottom)?;
        if self.outputs.contains(&l.tops[top]) {
            let y = self.output(l, top);
            self.g.node(l.name, "Identity", &[&x], &[&y], vec![]);
        } else {
            self.g.assign(&l.tops[top], x);
        }
        Ok(())
    }

    fn layer(&mut self, l: &Layer, all: &[engine::LayerInfo]) -> Result<()> {
        let p = l.param;
        match l.kind {
            "Input" => {
                for top in l.tops {
                    let shape = self.shape(top);
                    if !self.g.reserve(top) {
                        return Err(Self::unsupported(l, format!("input blob '{top}' is defined twice")));
                    }
                    self.g.assign(top, top.clone());
                    self.inputs.push((top.clone(), shape));
                }
                Ok(())
            }
            "Split" => (0..l.tops.len()).try_for_each(|t| self.alias(l, 0, t)),
            "Dropout" => self.alias(l, 0, 0),
            "Silence" => Ok(()),
            "Convolution" | "Deconvolution" => self.convolution(l),
            "InnerProduct" => self.inner_product(l),
            "Pooling" => self.pooling(l),
            "ReLU" => {
                let slope = p
                    .and_then(|p| p.relu_param.as_ref())
                    .map_or(0.0, |r| r.negative_slope());
                if slope == 0.0 {
                    self.unary(l, "Relu", vec![])
                } else {
                    self.unary(l, "LeakyRelu", vec![("alpha", Attr::Float(slope))])
                }
            }
            "Sigmoid" => self.unary(l, "Sigmoid", vec![]),
            "TanH" => self.unary(l, "Tanh", vec![]),
            "AbsVal" => self.unary(l, "Abs", vec![]),
            "BNLL" => self.unary(l, "Softplus", vec![]),
            "ELU" => {
                let alpha = p.and_then(|p| p.elu_param.as_ref()).map_or(1.0, |e| e.alpha());
                self.unary(l, "Elu", vec![("alpha", Attr::Float(alpha))])
            }
            "Softmax" => {
                let axis = p.and_then(|p| p.softmax_param.as_ref()).map_or(1, |s| s.axis());
                let rank = self.shape(&l.bottoms[0]).len() as i32;
                let axis = canonical_axis(l, axis, rank)?;
                self.unary(l, "Softmax", vec![("axis", Attr::Int(axis as i64))])
            }
            "LRN" => self.lrn(l),
            "BatchNorm" => self.batch_norm(l, all),
            "Scale" => self.scale(l),
            "Bias" => self.bias(l),
            "Eltwise" => self.eltwise(l),
            "Concat" => {
                let axis = p.and_then(|p| p.concat_param.as_ref()).map_or(1, |c| {
                    if c.concat_dim.is_some() && c.axis.is_none() {
                        c.concat_dim() as i32
                    } else {
                        c.axis()
                    }
                });
                let rank = self.shape(&l.bottoms[0]).len() as i32;
                let axis = canonical_axis(l, axis, rank)?;
                let xs = (0..l.bottoms.len())
                    .map(|i| self.input(l, i))
                    .collect::<Result<Vec<_>>>()?;
                let y = self.output(l, 0);
                let refs: Vec<&str> = xs.iter().map(String::as_str).collect();
                self.g
                    .node(l.name, "Concat", &refs, &[&y], vec![("axis", Attr::Int(axis as i64))]);
                Ok(())
            }
            "Slice" => self.slice(l),
            "Flatten" | "Reshape" => self.reshape_to_top(l),
            "Crop" => self.crop(l),
            "PReLU" => self.prelu(l),
            "Power" => self.power(l),
            "Exp" => self.exp(l),
            "Log" => self.log(l),
            "Threshold" => {
                let t = p
                    .and_then(|p| p.threshold_param.as_ref())
                    .map_or(0.0, |t| t.threshold());
                let x = self.input(l, 0)?;
                let c = self.g.scalar(l.name, "threshold", t);
                let above = self.g.step(l.name, "above", "Greater", &[&x, &c], vec![]);
                let y = self.output(l, 0);
                self.g
                    .node(l.name, "Cast", &[&above], &[&y], vec![("to", Attr::Int(1))]);
                Ok(())
            }
            "Clip" => {
                let (min, max) = p
                    .and_then(|p| p.clip_param.as_ref())
                    .map_or((0.0, 0.0), |c| (c.min, c.max));
                let x = self.input(l, 0)?;
                let lo = self.g.scalar(l.name, "min", min);
                let hi = self.g.scalar(l.name, "max", max);
                let y = self.output(l, 0);
                self.g.node(l.name, "Clip", &[&x, &lo, &hi], &[&y], vec![]);
                Ok(())
            }
            "Swish" => {
                let beta = p.and_then(|p| p.swish_param.as_ref()).map_or(1.0, |s| s.beta());
                let x = self.input(l, 0)?;
                let scaled = if beta == 1.0 {
                    x.clone()
                } else {
                    let b = self.g.scalar(l.name, "beta", beta);
                    self.g.step(l.name, "scaled", "Mul", &[&x, &b], vec![])
                };
                let s = self.g.step(l.name, "sigmoid", "Sigmoid", &[&scaled], vec![]);
                let y = self.output(l, 0);
                self.g.node(l.name, "Mul", &[&x, &s], &[&y], vec![]);
                Ok(())
            }
            "ArgMax" => self.argmax(l),
            "SPP" => self.spp(l),
            "LSTMUnit" => self.lstm_unit(l),
            "LSTM" | "RNN" => self.recurrent(l),
            "Im2col" => self.im2col(l),
            "Filter" => self.filter(l),
            "Reduction" => self.reduction(l),
            "MVN" => self.mvn(l),
            "Tile" => {
                let p = p.and_then(|p| p.tile_param).unwrap_or_default();
                let rank = self.shape(&l.bottoms[0]).len();
                let axis = canonical_axis(l, p.axis(), rank as i32)? as usize;
                let mut repeats = vec![1i64; rank];
                repeats[axis] = i64::from(p.tiles());
                let x = self.input(l, 0)?;
                let r = self.g.ints(l.name, "repeats", &repeats);
                let y = self.output(l, 0);
                self.g.node(l.name, "Tile", &[&x, &r], &[&y], vec![]);
                Ok(())
            }
            "Embed" => {
                let params = self.params(l).to_vec();
                let x = self.input(l, 0)?;
                // Caffe reads each index as static_cast<int>: truncation, as Cast does.
                let index = self.g.step(l.name, "index", "Cast", &[&x], vec![("to", Attr::Int(7))]);
                let w = self.weight(l, &params[0]);
                let bias = p.and_then(|p| p.embed_param.as_ref()).is_none_or(|e| e.bias_term()) && params.len() > 1;
                if bias {
                    let rows = self
                        .g
                        .step(l.name, "rows", "Gather", &[&w, &index], vec![("axis", Attr::Int(0))]);
                    let b = self.g.floats(l.name, "bias", &[params[1].len()], params[1].data());
                    let y = self.output(l, 0);
                    self.g.node(l.name, "Add", &[&rows, &b], &[&y], vec![]);
                } else {
                    let y = self.output(l, 0);
                    self.g
                        .node(l.name, "Gather", &[&w, &index], &[&y], vec![("axis", Attr::Int(0))]);
                }
                Ok(())
            }
            "BatchReindex" => {
                let x = self.input(l, 0)?;
                let i = self.input(l, 1)?;
                let index = self.g.step(l.name, "index", "Cast", &[&i], vec![("to", Attr::Int(7))]);
                let y = self.output(l, 0);
                self.g
                    .node(l.name, "Gather", &[&x, &index], &[&y], vec![("axis", Attr::Int(0))]);
                Ok(())
            }
            "Parameter" => {
                let params = self.params(l).to_vec();
                let c = self.g.floats(l.name, "value", params[0].shape(), params[0].data());
                let y = self.output(l, 0);
                self.g.node(l.name, "Identity", &[&c], &[&y], vec![]);
                Ok(())
            }
            other => Err(Self::unsupported(
                l,
                format!("no ONNX translation for '{other}' layers (the README lists the layers that export)"),
            )),
        }
    }

    fn convolution(&mut self, l: &Layer) -> Result<()> {
        let p = l.param.and_then(|p| p.convolution_param.clone()).unwrap_or_default();
        if p.axis() != 1 {
            return Err(Self::unsupported(l, "only axis 1 (channels) is supported"));
        }
        let rank = self.shape(&l.bottoms[0]).len();
        let spatial = rank.saturating_sub(2);
        let dims = |name: &str, list: &[u32], h: Option<u32>, w: Option<u32>, default: u32| -> Result<Vec<i64>> {
            if h.is_some() || w.is_some() {
                if spatial != 2 {
                    return Err(Self::unsupported(l, format!("{name}_h/{name}_w need 2 spatial axes")));
                }
                return Ok(vec![h.unwrap_or(default) as i64, w.unwrap_or(default) as i64]);
            }
            match list.len() {
                0 => Ok(vec![default as i64; spatial]),
                1 => Ok(vec![list[0] as i64; spatial]),
                n if n == spatial => Ok(list.iter().map(|&v| v as i64).collect()),
                n => Err(Self::unsupported(
                    l,
                    format!("{n} {name} values for {spatial} spatial axes"),
                )),
            }
        };
        let kernel = dims("kernel", &p.kernel_size, p.kernel_h, p.kernel_w, 1)?;
        let stride = dims("stride", &p.stride, p.stride_h, p.stride_w, 1)?;
        let pad = dims("pad", &p.pad, p.pad_h, p.pad_w, 0)?;
        let dilation = dims("dilation", &p.dilation, None, None, 1)?;
        let params = self.params(l).to_vec();
        let x = self.input(l, 0)?;
        let w = self.weight(l, &params[0]);
        let mut inputs = vec![x, w];
        if p.bias_term() && params.len() > 1 {
            inputs.push(self.g.floats(l.name, "bias", &[params[1].len()], params[1].data()));
        }
        let y = self.output(l, 0);
        let op = if l.kind == "Convolution" {
            "Conv"
        } else {
            "ConvTranspose"
        };
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let pads = pad.iter().chain(&pad).copied().collect();
        self.g.node(
            l.name,
            op,
            &refs,
            &[&y],
            vec![
                ("kernel_shape", Attr::Ints(kernel)),
                ("strides", Attr::Ints(stride)),
                ("pads", Attr::Ints(pads)),
                ("dilations", Attr::Ints(dilation)),
                ("group", Attr::Int(p.group() as i64)),
            ],
        );
        Ok(())
    }

    fn inner_product(&mut self, l: &Layer) -> Result<()> {
        let p = l.param.and_then(|p| p.inner_product_param.clone()).unwrap_or_default();
        let in_shape = self.shape(&l.bottoms[0]);
        let axis = canonical_axis(l, p.axis(), in_shape.len() as i32)? as usize;
        let params = self.params(l).to_vec();
        let x = self.input(l, 0)?;
        let flat = self
            .g
            .step(l.name, "flat", "Flatten", &[&x], vec![("axis", Attr::Int(axis as i64))]);
        let w = self.weight(l, &params[0]);
        let mut inputs = vec![flat, w];
        if p.bias_term() && params.len() > 1 {
            inputs.push(self.g.floats(l.name, "bias", &[params[1].len()], params[1].data()));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let attrs = vec![("transB", Attr::Int(i64::from(!p.transpose())))];
        if axis == 1 {
            let y = self.output(l, 0);
            self.g.node(l.name, "Gemm", &refs, &[&y], attrs);
        } else {
            let product = self.g.step(l.name, "gemm", "Gemm", &refs, attrs);
            let top = self.shape(&l.tops[0]);
            let shape = self
                .g
                .ints(l.name, "shape", &top.iter().map(|&d| d as i64).collect::<Vec<_>>());
            let y = self.output(l, 0);
            self.g.node(l.name, "Reshape", &[&product, &shape], &[&y], vec![]);
        }
        Ok(())
    }

    fn pooling(&mut self, l: &Layer) -> Result<()> {
        let p = l.param.and_then(|p| p.pooling_param).unwrap_or_default();
        let in_shape = self.shape(&l.bottoms[0]);
        let out_shape = self.shape(&l.tops[0]);
        if in_shape.len() != 4 || out_shape.len() != 4 {
            return Err(Self::unsupported(l, "pooling needs 4-D blobs"));
        }
        let method = p.pool();
        if method == PoolMethod::Stochastic {
            return Err(Self::unsupported(l, "STOCHASTIC pooling has no ONNX operator"));
        }
        if l.tops.len() > 1 && (method != PoolMethod::Max || p.global_pooling()) {
            return Err(Self::unsupported(
                l,
                "a second top exists only for MAX pooling (its mask)",
            ));
        }
        let x = self.input(l, 0)?;
        if p.global_pooling() {
            let y = self.output(l, 0);
            let op = if method == PoolMethod::Max {
                "GlobalMaxPool"
            } else {
                "GlobalAveragePool"
            };
            self.g.node(l.name, op, &[&x], &[&y], vec![]);
            return Ok(());
        }
        let kernel = if p.kernel_h.is_some() {
            [p.kernel_h(), p.kernel_w()]
        } else {
            [p.kernel_size(); 2]
        };
        let stride = if p.stride_h.is_some() {
            [p.stride_h(), p.stride_w()]
        } else {
            [p.stride(); 2]
        };
        let pad = if p.pad_h.is_some() {
            [p.pad_h(), p.pad_w()]
        } else {
            [p.pad(); 2]
        };
        let window = Window { kernel, stride, pad };
        let out_hw = [out_shape[2], out_shape[3]];
        let y = self.output(l, 0);
        if l.tops.len() == 1 {
            return self.pool_2d(l, x, &in_shape, out_hw, window, method, &y, None);
        }
        // Caffe's mask: the argmax as a float index within its (unpadded) plane, h * W + w. ONNX's indices count
        // over the whole tensor, so the plane's offset is taken off.
        let indices = self.g.unique(&format!("{}/indices", l.name));
        self.pool_2d(l, x, &in_shape, out_hw, window, method, &y, Some(&indices))?;
        let plane = self.g.ints(l.name, "plane", &[(in_shape[2] * in_shape[3]) as i64]);
        let within = self.g.step(l.name, "within", "Mod", &[&indices, &plane], vec![]);
        let mask = self.output(l, 1);
        self.g
            .node(l.name, "Cast", &[&within], &[&mask], vec![("to", Attr::Int(1))]);
        Ok(())
    }

    /// Caffe's 2-D pooling of `x` (shape `in_shape`) to `out_hw` into value `y` (and MAX's flat indices into
    /// `indices`): `ceil_mode = 0` with the end padding that yields Caffe's output size; AVE over a zero-padded
    /// input with `count_include_pad = 0`, which divides as Caffe does (padding counted, overhang not).
    #[allow(clippy::too_many_arguments)]
    fn pool_2d(
        &mut self,
        l: &Layer,
        x: String,
        in_shape: &[usize],
        out_hw: [usize; 2],
        window: Window,
        method: PoolMethod,
        y: &str,
        indices: Option<&str>,
    ) -> Result<()> {
        let Window { kernel, stride, pad } = window;
        let mut end = [0i64; 2];
        for d in 0..2 {
            let (h, o) = (in_shape[2 + d] as i64, out_hw[d] as i64);
            let (k, s, pd) = (kernel[d] as i64, stride[d] as i64, pad[d] as i64);
            end[d] = ((o - 1) * s + k - (h + 2 * pd)).max(0);
            if pd + end[d] >= k {
                return Err(Self::unsupported(
                    l,
                    format!(
                        "padding {} at the end of axis {} would reach the kernel size {k}",
                        pd + end[d],
                        2 + d
                    ),
                ));
            }
        }
        let geometry = |pads: Vec<i64>| {
            vec![
                ("kernel_shape", Attr::Ints(kernel.iter().map(|&k| k as i64).collect())),
                ("strides", Attr::Ints(stride.iter().map(|&s| s as i64).collect())),
                ("pads", Attr::Ints(pads)),
            ]
        };
        let (ph, pw) = (pad[0] as i64, pad[1] as i64);
        if method == PoolMethod::Max {
            let pads = geometry(vec![ph, pw, ph + end[0], pw + end[1]]);
            match indices {
                None => self.g.node(l.name, "MaxPool", &[&x], &[y], pads),
                Some(indices) => self.g.node(l.name, "MaxPool", &[&x], &[y, indices], pads),
            }
            return Ok(());
        }
        let padded = if ph > 0 || pw > 0 {
            let pads = self.g.ints(l.name, "pads", &[0, 0, ph, pw, 0, 0, ph, pw]);
            self.g.step(
                l.name,
                "padded",
                "Pad",
                &[&x, &pads],
                vec![("mode", Attr::Str("constant"))],
            )
        } else {
            x
        };
        let mut attrs = geometry(vec![0, 0, end[0], end[1]]);
        attrs.push(("count_include_pad", Attr::Int(0)));
        self.g.node(l.name, "AveragePool", &[&padded], &[y], attrs);
        Ok(())
    }

    /// Caffe's SPP: for level i of the pyramid, pooling into 2^i x 2^i bins (kernel ceil(H / bins), padding half
    /// the remainder, stride the kernel), each level flattened, then concatenated; one level is the pooling alone.
    fn spp(&mut self, l: &Layer) -> Result<()> {
        use caffe_proto::spp_parameter::PoolMethod as SppMethod;
        let p = l.param.and_then(|p| p.spp_param).unwrap_or_default();
        let method = match p.pool() {
            SppMethod::Max => PoolMethod::Max,
            SppMethod::Ave => PoolMethod::Ave,
            SppMethod::Stochastic => return Err(Self::unsupported(l, "STOCHASTIC pooling has no ONNX operator")),
        };
        let in_shape = self.shape(&l.bottoms[0]);
        if in_shape.len() != 4 {
            return Err(Self::unsupported(l, "SPP needs a 4-D bottom"));
        }
        let x = self.input(l, 0)?;
        let levels = p.pyramid_height();
        let mut flat = Vec::new();
        for level in 0..levels {
            let bins = 1u32 << level;
            let mut window = Window {
                kernel: [0; 2],
                stride: [0; 2],
                pad: [0; 2],
            };
            let mut out_hw = [0usize; 2];
            for d in 0..2 {
                let size = in_shape[2 + d] as u32;
                let kernel = size.div_ceil(bins);
                let pad = (kernel * bins - size).div_ceil(2);
                window.kernel[d] = kernel;
                window.stride[d] = kernel;
                window.pad[d] = pad;
                out_hw[d] = caffe_pooled_size(size as usize, kernel as usize, kernel as usize, pad as usize);
            }
            if levels == 1 {
                let y = self.output(l, 0);
                return self.pool_2d(l, x, &in_shape, out_hw, window, method, &y, None);
            }
            let pooled = self.g.unique(&format!("{}/level{level}", l.name));
            self.pool_2d(l, x.clone(), &in_shape, out_hw, window, method, &pooled, None)?;
            let f = self.g.step(
                l.name,
                &format!("flat{level}"),
                "Flatten",
                &[&pooled],
                vec![("axis", Attr::Int(1))],
            );
            flat.push(f);
        }
        let refs: Vec<&str> = flat.iter().map(String::as_str).collect();
        let y = self.output(l, 0);
        self.g
            .node(l.name, "Concat", &refs, &[&y], vec![("axis", Attr::Int(1))]);
        Ok(())
    }

    /// Caffe's LSTMUnit: gates i, f, o, g from the four slices of the input; c = cont * f * c_prev + i * g,
    /// h = o * tanh(c).
    fn lstm_unit(&mut self, l: &Layer) -> Result<()> {
        let c_prev = self.input(l, 0)?;
        let gates = self.input(l, 1)?;
        let cont = self.input(l, 2)?;
        let hidden = self.shape(&l.bottoms[0]).last().copied().unwrap_or(0) as i64;
        let (c, h) = self.lstm_step(l, "", &c_prev, &gates, &cont, hidden);
        let c_out = self.output(l, 0);
        self.g.node(l.name, "Identity", &[&c], &[&c_out], vec![]);
        let h_out = self.output(l, 1);
        self.g.node(l.name, "Identity", &[&h], &[&h_out], vec![]);
        Ok(())
    }

    /// One LSTM cell step on gate pre-activations `gates` ([1, N, 4H] or [N, 4H], last axis i, f, o, g) and
    /// sequence flags `cont` (same leading axes, no last one): returns the values of c and h.
    fn lstm_step(
        &mut self,
        l: &Layer,
        tag: &str,
        c_prev: &str,
        gates: &str,
        cont: &str,
        hidden: i64,
    ) -> (String, String) {
        let split = self.g.ints(l.name, "gate_sizes", &[hidden; 4]);
        let names: Vec<String> = ["i", "f", "o", "g"]
            .iter()
            .map(|g| self.g.unique(&format!("{}/{tag}{g}_raw", l.name)))
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        self.g
            .node(l.name, "Split", &[gates, &split], &refs, vec![("axis", Attr::Int(-1))]);
        let i = self.g.step(l.name, &format!("{tag}i"), "Sigmoid", &[&names[0]], vec![]);
        let f = self.g.step(l.name, &format!("{tag}f"), "Sigmoid", &[&names[1]], vec![]);
        let o = self.g.step(l.name, &format!("{tag}o"), "Sigmoid", &[&names[2]], vec![]);
        let g = self.g.step(l.name, &format!("{tag}g"), "Tanh", &[&names[3]], vec![]);
        let last = self.g.ints(l.name, "last_axis", &[-1]);
        let cont = self
            .g
            .step(l.name, &format!("{tag}cont"), "Unsqueeze", &[cont, &last], vec![]);
        let kept = self
            .g
            .step(l.name, &format!("{tag}f_cont"), "Mul", &[&cont, &f], vec![]);
        let carried = self
            .g
            .step(l.name, &format!("{tag}carried"), "Mul", &[&kept, c_prev], vec![]);
        let fresh = self.g.step(l.name, &format!("{tag}fresh"), "Mul", &[&i, &g], vec![]);
        let c = self
            .g
            .step(l.name, &format!("{tag}c"), "Add", &[&carried, &fresh], vec![]);
        let squashed = self.g.step(l.name, &format!("{tag}tanh_c"), "Tanh", &[&c], vec![]);
        let h = self.g.step(l.name, &format!("{tag}h"), "Mul", &[&o, &squashed], vec![]);
        (c, h)
    }

    /// `x` ([.., K]) times the transpose of `w` ([M, K]): a MatMul against the transposed weights.
    fn times_transposed(&mut self, l: &Layer, what: &str, x: &str, w: &engine::Tensor) -> String {
        let (m, k) = (w.shape()[0], w.len() / w.shape()[0].max(1));
        let mut t = vec![0.0f32; w.len()];
        for (row, values) in w.data().chunks(k).enumerate() {
            for (col, &v) in values.iter().enumerate() {
                t[col * m + row] = v;
            }
        }
        let wt = self.g.floats(l.name, &format!("{what}_t"), &[k, m], &t);
        self.g.step(l.name, what, "MatMul", &[x, &wt], vec![])
    }

    /// Caffe's LSTM and RNN, unrolled over the (static) number of time steps as Caffe unrolls them: the input
    /// transform of every step at once, then per step the previous state times `cont`, the recurrent product, and
    /// the cell (LSTMUnit for LSTM; tanh, then the tanh output layer for RNN). The state starts at zero, as in
    /// Caffe's first forward (Caffe then carries the last state into its next forward; a graph run does not), or
    /// comes from the extra bottoms with `expose_hidden`, which also gives the final state as extra tops.
    fn recurrent(&mut self, l: &Layer) -> Result<()> {
        let lstm = l.kind == "LSTM";
        let p = l.param.and_then(|p| p.recurrent_param.clone()).unwrap_or_default();
        let expose = p.expose_hidden();
        let states = if lstm { 2 } else { 1 };
        let extra = l.bottoms.len().saturating_sub(2 + if expose { states } else { 0 });
        if extra > 1 {
            return Err(Self::unsupported(l, "unexpected bottoms"));
        }
        let has_static = extra == 1;
        let params = self.params(l).to_vec();
        let x_shape = self.shape(&l.bottoms[0]);
        let (steps, batch) = (x_shape[0], x_shape[1]);
        let hidden = params[0].shape()[0] / if lstm { 4 } else { 1 };
        let x = self.input(l, 0)?;
        let cont = self.input(l, 1)?;
        // Input transform of every step: [T * N, I] x W^T + b, back to [T, N, G].
        let width = params[0].shape()[0];
        let rows = self.g.ints(l.name, "rows", &[(steps * batch) as i64, -1]);
        let x2 = self.g.step(l.name, "x_rows", "Reshape", &[&x, &rows], vec![]);
        let w = self.g.floats(l.name, "w_x", params[0].shape(), params[0].data());
        let b = self.g.floats(l.name, "b_x", &[params[1].len()], params[1].data());
        let xw2 = self.g.step(
            l.name,
            "xw_rows",
            "Gemm",
            &[&x2, &w, &b],
            vec![("transB", Attr::Int(1))],
        );
        let seq = self.g.ints(l.name, "seq", &[steps as i64, batch as i64, width as i64]);
        let xw = self.g.step(l.name, "xw", "Reshape", &[&xw2, &seq], vec![]);
        let mut next_param = 2;
        let static_w = if has_static {
            let xs = self.input(l, 2)?;
            let flat = self
                .g
                .step(l.name, "static_flat", "Flatten", &[&xs], vec![("axis", Attr::Int(1))]);
            let product = self.times_transposed(l, "static", &flat, &params[2]);
            next_param = 3;
            Some(product)
        } else {
            None
        };
        let w_h = params[next_param].clone();
        let ones = self.g.ints(l.name, "ones", &vec![1i64; steps]);
        let step_names = |g: &mut Graph, what: &str| -> Vec<String> {
            (0..steps).map(|t| g.unique(&format!("{}/{what}{t}", l.name))).collect()
        };
        let xw_t = step_names(&mut self.g, "xw_");
        let cont_t = step_names(&mut self.g, "cont_");
        let refs: Vec<&str> = xw_t.iter().map(String::as_str).collect();
        self.g
            .node(l.name, "Split", &[&xw, &ones], &refs, vec![("axis", Attr::Int(0))]);
        let refs: Vec<&str> = cont_t.iter().map(String::as_str).collect();
        self.g
            .node(l.name, "Split", &[&cont, &ones], &refs, vec![("axis", Attr::Int(0))]);
        let state_shape = [1, batch, hidden];
        let first_state = 2 + usize::from(has_static);
        let (mut h, mut c) = if expose {
            let h0 = self.input(l, first_state)?;
            let c0 = if lstm {
                Some(self.input(l, first_state + 1)?)
            } else {
                None
            };
            (h0, c0)
        } else {
            let zeros = vec![0.0f32; batch * hidden];
            let h0 = self.g.floats(l.name, "h0", &state_shape, &zeros);
            let c0 = lstm.then(|| self.g.floats(l.name, "c0", &state_shape, &zeros));
            (h0, c0)
        };
        let last = self.g.ints(l.name, "state_axis", &[-1]);
        let mut outputs = Vec::with_capacity(steps);
        for t in 0..steps {
            let tag = format!("t{t}_");
            let flags = self.g.step(
                l.name,
                &format!("{tag}flags"),
                "Unsqueeze",
                &[&cont_t[t], &last],
                vec![],
            );
            let conted = self
                .g
                .step(l.name, &format!("{tag}h_cont"), "Mul", &[&h, &flags], vec![]);
            let recurrent = self.times_transposed(l, &format!("{tag}hw"), &conted, &w_h);
            let mut input = self
                .g
                .step(l.name, &format!("{tag}in"), "Add", &[&recurrent, &xw_t[t]], vec![]);
            if let Some(sw) = &static_w {
                input = self
                    .g
                    .step(l.name, &format!("{tag}in_static"), "Add", &[&input, sw], vec![]);
            }
            if lstm {
                let c_prev = c.clone().unwrap_or_default();
                let (c_t, h_t) = self.lstm_step(l, &tag, &c_prev, &input, &cont_t[t], hidden as i64);
                c = Some(c_t);
                h = h_t;
                outputs.push(h.clone());
            } else {
                h = self.g.step(l.name, &format!("{tag}h"), "Tanh", &[&input], vec![]);
                let (w_o, b_o) = (&params[next_param + 1], &params[next_param + 2]);
                let product = self.times_transposed(l, &format!("{tag}ho"), &h, w_o);
                let b = self.g.floats(l.name, &format!("{tag}b_o"), &[b_o.len()], b_o.data());
                let pre = self
                    .g
                    .step(l.name, &format!("{tag}o_in"), "Add", &[&product, &b], vec![]);
                let o = self.g.step(l.name, &format!("{tag}o"), "Tanh", &[&pre], vec![]);
                outputs.push(o);
            }
        }
        let refs: Vec<&str> = outputs.iter().map(String::as_str).collect();
        let y = self.output(l, 0);
        self.g
            .node(l.name, "Concat", &refs, &[&y], vec![("axis", Attr::Int(0))]);
        if expose {
            let h_out = self.output(l, 1);
            self.g.node(l.name, "Identity", &[&h], &[&h_out], vec![]);
            if let Some(c) = c {
                let c_out = self.output(l, 2);
                self.g.node(l.name, "Identity", &[&c], &[&c_out], vec![]);
            }
        }
        Ok(())
    }

    /// Caffe's Im2col as a grouped convolution with one-hot kernels: output channel (c, i, j) picks input channel c
    /// at kernel offset (i, j), Caffe's column order.
    fn im2col(&mut self, l: &Layer) -> Result<()> {
        let p = l.param.and_then(|p| p.convolution_param.clone()).unwrap_or_default();
        let in_shape = self.shape(&l.bottoms[0]);
        if in_shape.len() != 4 || p.axis() != 1 {
            return Err(Self::unsupported(l, "only 2-D Im2col over axis 1 is supported"));
        }
        let two = |list: &[u32], h: Option<u32>, w: Option<u32>, default: u32| -> [u32; 2] {
            if h.is_some() || w.is_some() {
                [h.unwrap_or(default), w.unwrap_or(default)]
            } else {
                match list {
                    [] => [default; 2],
                    [v] => [*v; 2],
                    [a, b, ..] => [*a, *b],
                }
            }
        };
        let kernel = two(&p.kernel_size, p.kernel_h, p.kernel_w, 1);
        let stride = two(&p.stride, p.stride_h, p.stride_w, 1);
        let pad = two(&p.pad, p.pad_h, p.pad_w, 0);
        let dilation = two(&p.dilation, None, None, 1);
        let channels = in_shape[1];
        let taps = (kernel[0] * kernel[1]) as usize;
        let mut weights = vec![0.0f32; channels * taps * taps];
        for c in 0..channels {
            for t in 0..taps {
                // Output channel c * taps + t, its only input channel, tap t.
                weights[(c * taps + t) * taps + t] = 1.0;
            }
        }
        let x = self.input(l, 0)?;
        let w = self.g.floats(
            l.name,
            "one_hot",
            &[channels * taps, 1, kernel[0] as usize, kernel[1] as usize],
            &weights,
        );
        let y = self.output(l, 0);
        let ints = |v: [u32; 2]| Attr::Ints(v.iter().map(|&x| x as i64).collect());
        self.g.node(
            l.name,
            "Conv",
            &[&x, &w],
            &[&y],
            vec![
                ("kernel_shape", ints(kernel)),
                ("strides", ints(stride)),
                (
                    "pads",
                    Attr::Ints(vec![pad[0] as i64, pad[1] as i64, pad[0] as i64, pad[1] as i64]),
                ),
                ("dilations", ints(dilation)),
                ("group", Attr::Int(channels as i64)),
            ],
        );
        Ok(())
    }

    /// Caffe's Filter: the items (axis 0) of each bottom whose selector (the last bottom) is not 0, as Compress.
    fn filter(&mut self, l: &Layer) -> Result<()> {
        let n = l.bottoms.len();
        if n < 2 {
            return Err(Self::unsupported(l, "Filter needs data bottoms and a selector"));
        }
        let selector = self.input(l, n - 1)?;
        let flat_shape = self.g.ints(l.name, "flat", &[-1]);
        let flat = self
            .g
            .step(l.name, "selector", "Reshape", &[&selector, &flat_shape], vec![]);
        let zero = self.g.scalar(l.name, "zero", 0.0);
        let is_zero = self.g.step(l.name, "is_zero", "Equal", &[&flat, &zero], vec![]);
        let keep = self.g.step(l.name, "keep", "Not", &[&is_zero], vec![]);
        for t in 0..l.tops.len() {
            let x = self.input(l, t)?;
            let y = self.output(l, t);
            self.g
                .node(l.name, "Compress", &[&x, &keep], &[&y], vec![("axis", Attr::Int(0))]);
            self.dynamic.insert(l.tops[t].clone());
        }
        Ok(())
    }

    fn lrn(&mut self, l: &Layer) -> Result<()> {
        let p = l.param.and_then(|p| p.lrn_param).unwrap_or_default();
        let size = p.local_size() as i64;
        if p.norm_region() == NormRegion::AcrossChannels {
            return self.unary(
                l,
                "LRN",
                vec![
                    ("alpha", Attr::Float(p.alpha())),
                    ("beta", Attr::Float(p.beta())),
                    ("bias", Attr::Float(p.k())),
                    ("size", Attr::Int(size)),
                ],
            );
        }
        // WITHIN_CHANNEL, as Caffe composes it: x * (1 + alpha * avg_{n x n}(x^2))^-beta, the average over a window
        // padded by (n - 1) / 2 with zeros counted.
        let x = self.input(l, 0)?;
        let square = self.g.step(l.name, "square", "Mul", &[&x, &x], vec![]);
        let half = (size - 1) / 2;
        let mean = self.g.step(
            l.name,
            "mean",
            "AveragePool",
            &[&square],
            vec![
                ("kernel_shape", Attr::Ints(vec![size, size])),
                ("strides", Attr::Ints(vec![1, 1])),
                ("pads", Attr::Ints(vec![half, half, half, half])),
                ("count_include_pad", Attr::Int(1)),
            ],
        );
        let alpha = self.g.scalar(l.name, "alpha", p.alpha());
        let scaled = self.g.step(l.name, "scaled", "Mul", &[&mean, &alpha], vec![]);
        let one = self.g.scalar(l.name, "one", 1.0);
        let base = self.g.step(l.name, "base", "Add", &[&scaled, &one], vec![]);
        let exponent = self.g.scalar(l.name, "exponent", -p.beta());
        let factor = self.g.step(l.name, "factor", "Pow", &[&base, &exponent], vec![]);
        let y = self.output(l, 0);
        self.g.node(l.name, "Mul", &[&x, &factor], &[&y], vec![]);
        Ok(())
    }

    /// The shape a per-channel parameter of `len` values takes to broadcast over `blob` from `axis` on.
    fn broadcast_shape(&self, blob: &str, axis: usize, param_shape: &[usize]) -> Vec<usize> {
        let rank = self.shape(blob).len();
        let mut shape = param_shape.to_vec();
        shape.resize(rank - axis, 1);
        shape
    }

    fn batch_norm(&mut self, l: &Layer, all: &[engine::LayerInfo]) -> Result<()> {
        let p = l.param.and_then(|p| p.batch_norm_param).unwrap_or_default();
        if p.use_global_stats.is_some_and(|g| !g) {
            return Err(Self::unsupported(
                l,
                "use_global_stats: false normalises with each batch's own statistics, which an inference graph cannot",
            ));
        }
        let params = self.params(l).to_vec();
        if params.len() < 3 {
            return Err(Self::unsupported(
                l,
                "BatchNorm needs its mean, variance and scale-factor blobs",
            ));
        }
        let stored = params[2].data().first().copied().unwrap_or(0.0);
        let factor = if stored == 0.0 { 0.0 } else { 1.0 / stored };
        let mean: Vec<f32> = params[0].data().iter().map(|&m| m * factor).collect();
        let var: Vec<f32> = params[1].data().iter().map(|&v| v * factor).collect();
        let channels = mean.len();
        let shape = self.shape(&l.bottoms[0]);
        if shape.len() < 2 || shape[1] != channels {
            return Err(Self::unsupported(l, "the channel axis must be axis 1"));
        }
        // A Scale that alone reads this layer's output (one bottom: its own gamma, optionally beta) is folded in.
        let folded = self.scale_after(l, all);
        let (gamma, beta, scale_layer) = match folded {
            Some((index, gamma, beta)) => (gamma, beta, Some(index)),
            None => (vec![1.0; channels], vec![0.0; channels], None),
        };
        let x = self.input(l, 0)?;
        let inputs = [
            x,
            self.g.floats(l.name, "gamma", &[channels], &gamma),
            self.g.floats(l.name, "beta", &[channels], &beta),
            self.g.floats(l.name, "mean", &[channels], &mean),
            self.g.floats(l.name, "var", &[channels], &var),
        ];
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let attrs = vec![("epsilon", Attr::Float(p.eps()))];
        match scale_layer {
            None => {
                let y = self.output(l, 0);
                self.g.node(l.name, "BatchNormalization", &refs, &[&y], attrs);
            }
            Some(index) => {
                // This layer's version of its top is never seen: the Scale's output replaces it.
                let scale = &all[index];
                let as_scale = Layer {
                    index,
                    name: &scale.name,
                    kind: &scale.layer_type,
                    bottoms: &scale.bottoms,
                    tops: &scale.tops,
                    param: None,
                };
                let y = self.output(&as_scale, 0);
                self.g.node(l.name, "BatchNormalization", &refs, &[&y], attrs);
                self.skip.insert(index);
            }
        }
        Ok(())
    }

    /// The Scale layer (index, gamma, beta) that is the only reader of BatchNorm `l`'s output, if any.
    fn scale_after(&self, l: &Layer, all: &[engine::LayerInfo]) -> Option<(usize, Vec<f32>, Vec<f32>)> {
        let top = &l.tops[0];
        if self.outputs.contains(top) && self.last_writer.get(top) == Some(&l.index) {
            return None;
        }
        // Readers of this version: the layers after l that read `top` before anyone writes it again.
        let mut readers = Vec::new();
        for (i, info) in all.iter().enumerate().skip(l.index + 1) {
            if info.bottoms.iter().any(|b| b == top) {
                readers.push(i);
            }
            if info.tops.iter().any(|t| t == top) {
                break;
            }
        }
        let [index] = readers[..] else { return None };
        let info = &all[index];
        if info.layer_type != "Scale" || info.bottoms.len() != 1 {
            return None;
        }
        // Caffe's Scale: axis 1, one axis by default.
        let p = self.net.params(&info.name)?;
        let gamma = p.first()?.data().to_vec();
        if gamma.len() != l_channels(self, l) {
            return None;
        }
        let beta = p.get(1).map_or_else(|| vec![0.0; gamma.len()], |b| b.data().to_vec());
        Some((index, gamma, beta))
    }

    fn scale(&mut self, l: &Layer) -> Result<()> {
        let p = l.param.and_then(|p| p.scale_param.clone()).unwrap_or_default();
        let rank = self.shape(&l.bottoms[0]).len() as i32;
        let axis = canonical_axis(l, p.axis(), rank)? as usize;
        let x = self.input(l, 0)?;
        let params = self.params(l).to_vec();
        let (scaled, bias) = if l.bottoms.len() > 1 {
            // The scale is bottom 1, of shape x.shape[axis..axis + k]: trailing ones let it broadcast.
            let s_shape = self.shape(&l.bottoms[1]);
            let target = self.broadcast_shape(&l.bottoms[0], axis, &s_shape);
            let s = self.input(l, 1)?;
            let shape = self.g.ints(
                l.name,
                "scale_shape",
                &target.iter().map(|&d| d as i64).collect::<Vec<_>>(),
            );
            let s = self.g.step(l.name, "scale", "Reshape", &[&s, &shape], vec![]);
            (s, params.first().cloned())
        } else {
            let gamma = &params[0];
            let target = self.broadcast_shape(&l.bottoms[0], axis, gamma.shape());
            (
                self.g.floats(l.name, "scale", &target, gamma.data()),
                params.get(1).cloned(),
            )
        };
        match bias {
            Some(b) => {
                let product = self.g.step(l.name, "product", "Mul", &[&x, &scaled], vec![]);
                let target = self.broadcast_shape(&l.bottoms[0], axis, b.shape());
                let b = self.g.floats(l.name, "bias", &target, b.data());
                let y = self.output(l, 0);
                self.g.node(l.name, "Add", &[&product, &b], &[&y], vec![]);
            }
            None => {
                let y = self.output(l, 0);
                self.g.node(l.name, "Mul", &[&x, &scaled], &[&y], vec![]);
            }
        }
        Ok(())
    }

    fn bias(&mut self, l: &Layer) -> Result<()> {
        let p = l.param.and_then(|p| p.bias_param.clone()).unwrap_or_default();
        let rank = self.shape(&l.bottoms[0]).len() as i32;
        let axis = canonical_axis(l, p.axis(), rank)? as usize;
        let x = self.input(l, 0)?;
        let b = if l.bottoms.len() > 1 {
            let b_shape = self.shape(&l.bottoms[1]);
            let target = self.broadcast_shape(&l.bottoms[0], axis, &b_shape);
            let b = self.input(l, 1)?;
            let shape = self.g.ints(
                l.name,
                "bias_shape",
                &target.iter().map(|&d| d as i64).collect::<Vec<_>>(),
            );
            self.g.step(l.name, "bias", "Reshape", &[&b, &shape], vec![])
        } else {
            let params = self.params(l).to_vec();
            let target = self.broadcast_shape(&l.bottoms[0], axis, params[0].shape());
            self.g.floats(l.name, "bias", &target, params[0].data())
        };
        let y = self.output(l, 0);
        self.g.node(l.name, "Add", &[&x, &b], &[&y], vec![]);
        Ok(())
    }

    fn eltwise(&mut self, l: &Layer) -> Result<()> {
        let p = l.param.and_then(|p| p.eltwise_param.clone()).unwrap_or_default();
        let mut xs = (0..l.bottoms.len())
            .map(|i| self.input(l, i))
            .collect::<Result<Vec<_>>>()?;
        let op = match p.operation() {
            EltwiseOp::Sum => {
                if !p.coeff.is_empty() {
                    if p.coeff.len() != xs.len() {
                        return Err(Self::unsupported(l, "coeff needs one value per bottom"));
                    }
                    for (i, x) in xs.iter_mut().enumerate() {
                        if p.coeff[i] != 1.0 {
                            let c = self.g.scalar(l.name, &format!("coeff{i}"), p.coeff[i]);
                            *x = self.g.step(l.name, &format!("scaled{i}"), "Mul", &[x, &c], vec![]);
                        }
                    }
                }
                "Sum"
            }
            EltwiseOp::Max => "Max",
            EltwiseOp::Prod => {
                // Mul is binary: a chain, in Caffe's order.
                let mut acc = xs[0].clone();
                for (i, x) in xs.iter().enumerate().skip(1).take(xs.len().saturating_sub(2)) {
                    acc = self.g.step(l.name, &format!("product{i}"), "Mul", &[&acc, x], vec![]);
                }
                let y = self.output(l, 0);
                let last = xs.last().cloned().unwrap_or_default();
                self.g.node(l.name, "Mul", &[&acc, &last], &[&y], vec![]);
                return Ok(());
            }
        };
        let refs: Vec<&str> = xs.iter().map(String::as_str).collect();
        let y = self.output(l, 0);
        self.g.node(l.name, op, &refs, &[&y], vec![]);
        Ok(())
    }

    fn slice(&mut self, l: &Layer) -> Result<()> {
        let p = l.param.and_then(|p| p.slice_param.clone()).unwrap_or_default();
        let rank = self.shape(&l.bottoms[0]).len() as i32;
        let axis = if p.slice_dim.is_some() && p.axis.is_none() {
            p.slice_dim() as i32
        } else {
            p.axis()
        };
        let axis = canonical_axis(l, axis, rank)? as usize;
        let sizes: Vec<i64> = l.tops.iter().map(|t| self.shape(t)[axis] as i64).collect();
        let x = self.input(l, 0)?;
        let split = self.g.ints(l.name, "split", &sizes);
        let ys: Vec<String> = (0..l.tops.len()).map(|t| self.output(l, t)).collect();
        let refs: Vec<&str> = ys.iter().map(String::as_str).collect();
        self.g.node(
            l.name,
            "Split",
            &[&x, &split],
            &refs,
            vec![("axis", Attr::Int(axis as i64))],
        );
        Ok(())
    }

    /// Flatten and Reshape: the top's shape, as the engine computed it, is static.
    fn reshape_to_top(&mut self, l: &Layer) -> Result<()> {
        let top = self.shape(&l.tops[0]);
        let x = self.input(l, 0)?;
        let shape = self
            .g
            .ints(l.name, "shape", &top.iter().map(|&d| d as i64).collect::<Vec<_>>());
        let y = self.output(l, 0);
        self.g.node(l.name, "Reshape", &[&x, &shape], &[&y], vec![]);
        Ok(())
    }

    fn crop(&mut self, l: &Layer) -> Result<()> {
        let p = l.param.and_then(|p| p.crop_param.clone()).unwrap_or_default();
        let in_shape = self.shape(&l.bottoms[0]);
        let out_shape = self.shape(&l.tops[0]);
        let axis = canonical_axis(l, p.axis(), in_shape.len() as i32)? as usize;
        let (mut starts, mut ends, mut axes) = (Vec::new(), Vec::new(), Vec::new());
        for (d, &size) in out_shape.iter().enumerate().skip(axis) {
            let offset = match p.offset.len() {
                0 => 0,
                1 => p.offset[0],
                _ => *p
                    .offset
                    .get(d - axis)
                    .ok_or_else(|| Self::unsupported(l, "fewer offsets than cropped axes"))?,
            } as i64;
            starts.push(offset);
            ends.push(offset + size as i64);
            axes.push(d as i64);
        }
        let x = self.input(l, 0)?;
        let starts = self.g.ints(l.name, "starts", &starts);
        let ends = self.g.ints(l.name, "ends", &ends);
        let axes = self.g.ints(l.name, "axes", &axes);
        let y = self.output(l, 0);
        self.g
            .node(l.name, "Slice", &[&x, &starts, &ends, &axes], &[&y], vec![]);
        Ok(())
    }

    fn prelu(&mut self, l: &Layer) -> Result<()> {
        let params = self.params(l).to_vec();
        let slope = &params[0];
        let rank = self.shape(&l.bottoms[0]).len();
        // [C] -> [C, 1, 1]: a bare [C] would broadcast against the last axis.
        let mut shape = vec![slope.len()];
        shape.resize(rank.saturating_sub(1).max(1), 1);
        let x = self.input(l, 0)?;
        let s = self.g.floats(l.name, "slope", &shape, slope.data());
        let y = self.output(l, 0);
        self.g.node(l.name, "PRelu", &[&x, &s], &[&y], vec![]);
        Ok(())
    }

    /// `(shift + scale * x)`, with the steps Caffe takes (none when scale is 1 or shift 0).
    fn affine(&mut self, l: &Layer, x: String, scale: f32, shift: f32) -> String {
        let mut v = x;
        if scale != 1.0 {
            let c = self.g.scalar(l.name, "scale", scale);
            v = self.g.step(l.name, "scaled", "Mul", &[&v, &c], vec![]);
        }
        if shift != 0.0 {
            let c = self.g.scalar(l.name, "shift", shift);
            v = self.g.step(l.name, "shifted", "Add", &[&v, &c], vec![]);
        }
        v
    }

    fn power(&mut self, l: &Layer) -> Result<()> {
        let p = l.param.and_then(|p| p.power_param).unwrap_or_default();
        let x = self.input(l, 0)?;
        let base = self.affine(l, x.clone(), p.scale(), p.shift());
        let y = self.output(l, 0);
        if p.power() == 1.0 {
            self.g.node(l.name, "Identity", &[&base], &[&y], vec![]);
        } else {
            let e = self.g.scalar(l.name, "power", p.power());
            self.g.node(l.name, "Pow", &[&base, &e], &[&y], vec![]);
        }
        Ok(())
    }

    fn exp(&mut self, l: &Layer) -> Result<()> {
        let p = l.param.and_then(|p| p.exp_param).unwrap_or_default();
        // Caffe: y = exp(shift ln b) * exp(scale ln b * x), with ln b = 1 for base -1 (e).
        let ln_base = if p.base() == -1.0 { 1.0 } else { p.base().ln() };
        if p.base() != -1.0 && p.base() <= 0.0 {
            return Err(Self::unsupported(l, "base must be positive or -1"));
        }
        let inner = ln_base * p.scale();
        let outer = (p.shift() * ln_base).exp();
        let x = self.input(l, 0)?;
        let v = self.affine(l, x, inner, 0.0);
        if outer == 1.0 {
            let y = self.output(l, 0);
            self.g.node(l.name, "Exp", &[&v], &[&y], vec![]);
        } else {
            let e = self.g.step(l.name, "exp", "Exp", &[&v], vec![]);
            let c = self.g.scalar(l.name, "outer", outer);
            let y = self.output(l, 0);
            self.g.node(l.name, "Mul", &[&e, &c], &[&y], vec![]);
        }
        Ok(())
    }

    fn log(&mut self, l: &Layer) -> Result<()> {
        let p = l.param.and_then(|p| p.log_param).unwrap_or_default();
        if p.base() != -1.0 && p.base() <= 0.0 {
            return Err(Self::unsupported(l, "base must be positive or -1"));
        }
        // Caffe: y = ln(shift + scale x) / ln b (ln b = 1 for base -1).
        let base_scale = if p.base() == -1.0 { 1.0 } else { 1.0 / p.base().ln() };
        let x = self.input(l, 0)?;
        let v = self.affine(l, x, p.scale(), p.shift());
        if base_scale == 1.0 {
            let y = self.output(l, 0);
            self.g.node(l.name, "Log", &[&v], &[&y], vec![]);
        } else {
            let ln = self.g.step(l.name, "ln", "Log", &[&v], vec![]);
            let c = self.g.scalar(l.name, "base_scale", base_scale);
            let y = self.output(l, 0);
            self.g.node(l.name, "Mul", &[&ln, &c], &[&y], vec![]);
        }
        Ok(())
    }

    fn argmax(&mut self, l: &Layer) -> Result<()> {
        let p = l.param.and_then(|p| p.argmax_param).unwrap_or_default();
        let k = p.top_k() as i64;
        let x = self.input(l, 0)?;
        let kk = self.g.ints(l.name, "k", &[k]);
        let top_k = |g: &mut Graph, input: &str, axis: i64| -> (String, String) {
            let values = g.unique(&format!("{}/values", l.name));
            let indices = g.unique(&format!("{}/indices", l.name));
            g.node(
                l.name,
                "TopK",
                &[input, &kk],
                &[&values, &indices],
                vec![
                    ("axis", Attr::Int(axis)),
                    ("largest", Attr::Int(1)),
                    ("sorted", Attr::Int(1)),
                ],
            );
            (values, indices)
        };
        if let Some(axis) = p.axis {
            let rank = self.shape(&l.bottoms[0]).len() as i32;
            let axis = canonical_axis(l, axis, rank)? as i64;
            let (values, indices) = top_k(&mut self.g, &x, axis);
            let y = self.output(l, 0);
            if p.out_max_val() {
                self.g.node(l.name, "Identity", &[&values], &[&y], vec![]);
            } else {
                self.g
                    .node(l.name, "Cast", &[&indices], &[&y], vec![("to", Attr::Int(1))]);
            }
            return Ok(());
        }
        // No axis: per sample over everything, top (N, 1, k) of indices, or (N, 2, k) of indices then values.
        let flat = self
            .g
            .step(l.name, "flat", "Flatten", &[&x], vec![("axis", Attr::Int(1))]);
        let (values, indices) = top_k(&mut self.g, &flat, 1);
        let as_float = self
            .g
            .step(l.name, "index", "Cast", &[&indices], vec![("to", Attr::Int(1))]);
        let one = self.g.ints(l.name, "axis1", &[1]);
        let idx3 = self.g.step(l.name, "index3", "Unsqueeze", &[&as_float, &one], vec![]);
        let y = self.output(l, 0);
        if p.out_max_val() {
            let val3 = self.g.step(l.name, "values3", "Unsqueeze", &[&values, &one], vec![]);
            self.g
                .node(l.name, "Concat", &[&idx3, &val3], &[&y], vec![("axis", Attr::Int(1))]);
        } else {
            self.g.node(l.name, "Identity", &[&idx3], &[&y], vec![]);
        }
        Ok(())
    }
}

impl Exporter<'_> {
    /// A reduction over `axes`, without kept dimensions unless `keep`: the axes are an input from opset 13 for
    /// ReduceSum and from 18 for the others, an attribute before.
    fn reduce(&mut self, l: &Layer, what: &str, op: &str, x: &str, axes: &[i64], keep: bool) -> String {
        let keep = ("keepdims", Attr::Int(i64::from(keep)));
        if op == "ReduceSum" || self.opset >= 18 {
            let a = self.g.ints(l.name, "axes", axes);
            self.g.step(l.name, what, op, &[x, &a], vec![keep])
        } else {
            self.g
                .step(l.name, what, op, &[x], vec![keep, ("axes", Attr::Ints(axes.to_vec()))])
        }
    }

    fn reduction(&mut self, l: &Layer) -> Result<()> {
        use caffe_proto::reduction_parameter::ReductionOp;
        let p = l.param.and_then(|p| p.reduction_param).unwrap_or_default();
        let rank = self.shape(&l.bottoms[0]).len();
        let axis = canonical_axis(l, p.axis(), rank as i32)? as usize;
        let axes: Vec<i64> = (axis as i64..rank as i64).collect();
        let x = self.input(l, 0)?;
        let op = match p.operation() {
            ReductionOp::Sum => "ReduceSum",
            ReductionOp::Asum => "ReduceL1",
            ReductionOp::Sumsq => "ReduceSumSquare",
            ReductionOp::Mean => "ReduceMean",
        };
        let reduced = self.reduce(l, "reduced", op, &x, &axes, false);
        let y = self.output(l, 0);
        if p.coeff() == 1.0 {
            self.g.node(l.name, "Identity", &[&reduced], &[&y], vec![]);
        } else {
            let c = self.g.scalar(l.name, "coeff", p.coeff());
            self.g.node(l.name, "Mul", &[&reduced, &c], &[&y], vec![]);
        }
        Ok(())
    }

    /// Caffe's MVN: x - E[x] over each sample (or each channel), then, with normalize_variance, divided by
    /// sqrt(E[(x - E[x])^2]) + eps.
    fn mvn(&mut self, l: &Layer) -> Result<()> {
        let p = l.param.and_then(|p| p.mvn_param).unwrap_or_default();
        let rank = self.shape(&l.bottoms[0]).len() as i64;
        let first = if p.across_channels() { 1 } else { 2 };
        let axes: Vec<i64> = (first..rank).collect();
        let x = self.input(l, 0)?;
        let mean = self.reduce(l, "mean", "ReduceMean", &x, &axes, true);
        if !p.normalize_variance() {
            let y = self.output(l, 0);
            self.g.node(l.name, "Sub", &[&x, &mean], &[&y], vec![]);
            return Ok(());
        }
        let centred = self.g.step(l.name, "centred", "Sub", &[&x, &mean], vec![]);
        let square = self.g.step(l.name, "square", "Mul", &[&centred, &centred], vec![]);
        let var = self.reduce(l, "variance", "ReduceMean", &square, &axes, true);
        let std = self.g.step(l.name, "std", "Sqrt", &[&var], vec![]);
        let eps = self.g.scalar(l.name, "eps", p.eps());
        let denominator = self.g.step(l.name, "denominator", "Add", &[&std, &eps], vec![]);
        let y = self.output(l, 0);
        self.g.node(l.name, "Div", &[&centred, &denominator], &[&y], vec![]);
        Ok(())
    }
}

/// The distinct values of a blob (compared by bits, so +0.0 and -0.0 stay apart), in the order of their bits, and
/// each value's index; `None` past 256 distinct values.
fn codebook_of(values: &[f32]) -> Option<(Vec<f32>, Vec<u8>)> {
    let mut distinct: Vec<u32> = Vec::new();
    for &v in values {
        if let Err(at) = distinct.binary_search(&v.to_bits()) {
            if distinct.len() == 256 {
                return None;
            }
            distinct.insert(at, v.to_bits());
        }
    }
    let indices = values
        .iter()
        .map(|v| distinct.binary_search(&v.to_bits()).map_or(0, |i| i as u8))
        .collect();
    Some((distinct.into_iter().map(f32::from_bits).collect(), indices))
}

/// A 2-D pooling window.
#[derive(Clone, Copy)]
struct Window {
    kernel: [u32; 2],
    stride: [u32; 2],
    pad: [u32; 2],
}

/// Caffe's pooled size of one axis: ceil((size + 2 pad - kernel) / stride) + 1, less a last window that would start
/// in the padding.
fn caffe_pooled_size(size: usize, kernel: usize, stride: usize, pad: usize) -> usize {
    let mut out = (size + 2 * pad - kernel).div_ceil(stride) + 1;
    if pad > 0 && (out - 1) * stride >= size + pad {
        out -= 1;
    }
    out
}

/// The number of channels of a BatchNorm's input (axis 1).
fn l_channels(x: &Exporter, l: &Layer) -> usize {
    x.shape(&l.bottoms[0]).get(1).copied().unwrap_or(0)
}

/// A Caffe axis (negative counts from the end) as an index below `rank`.
fn canonical_axis(l: &Layer, axis: i32, rank: i32) -> Result<i32> {
    let a = if axis < 0 { axis + rank } else { axis };
    if !(0..rank).contains(&a) {
        return Err(Exporter::unsupported(
            l,
            format!("axis {axis} is out of range for {rank} axes"),
        ));
    }
    Ok(a)
}
