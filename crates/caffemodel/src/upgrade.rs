//! Upgrading legacy nets and solvers to the current layout, as Caffe does.
//!
//! A port of Caffe's `src/caffe/util/upgrade_proto.cpp` (BVLC master) over the
//! prost types of [`caffe_proto`]. [`upgrade_net`] runs the same steps, in the
//! same order and with the same effect on every field (including which
//! optional fields end up *present*, which decides the bytes written), as
//! Caffe's `UpgradeNetAsNeeded`:
//!
//! 1. V0 layers (`layers { layer { type: "conv" ... } }`) become V1 layers,
//!    with `padding` layers folded into the convolution or pooling they feed;
//! 2. legacy preprocessing fields of V1 data layers move to `transform_param`;
//! 3. V1 layers (`layers`, enum types) become current layers (`layer`, string
//!    types), `blobs_lr`/`weight_decay`/`param`/`blob_share_mode` becoming
//!    `ParamSpec`s; blobs move as stored, keeping their legacy 4-D shapes;
//! 4. the legacy net inputs (`input` with `input_dim` or `input_shape`) become
//!    an `Input` layer at the front;
//! 5. `BatchNorm` layers declaring the 3 old param specs lose them.
//!
//! What Caffe aborts on (`LOG(FATAL)`, `CHECK`) is an [`UpgradeError`], and
//! the net is then left unchanged: everything that can fail is checked before
//! anything is modified. What Caffe only logs (an upgrade "not fully
//! compatible", e.g. a V0 parameter that does not apply to the layer's type,
//! which is dropped) is kept going, as Caffe does, and noted in
//! [`UpgradeReport::warnings`].

use std::collections::HashMap;
use std::fmt;

use caffe_proto::{
    param_spec::DimCheckMode, pooling_parameter::PoolMethod, solver_parameter::SolverType, v0_layer_parameter,
    v1_layer_parameter::LayerType, BlobShape, InputParameter, LayerParameter, NetParameter, ParamSpec, SolverParameter,
    TransformationParameter, V0LayerParameter, V1LayerParameter,
};

/// What an upgrade did, step by step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpgradeReport {
    /// The steps applied, in order; empty when the input was already current.
    pub steps: Vec<UpgradeStep>,
    /// Problems Caffe also only warns about (the upgrade goes on, dropping what
    /// does not fit), one human-readable line each.
    pub warnings: Vec<String>,
}

impl UpgradeReport {
    /// Whether nothing had to be done.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

impl fmt::Display for UpgradeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return f.write_str("already in the current format; nothing to upgrade");
        }
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{step}")?;
        }
        for warning in &self.warnings {
            write!(f, "\nwarning: {warning}")?;
        }
        Ok(())
    }
}

/// One upgrade step (one of Caffe's `Upgrade*` functions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpgradeStep {
    /// V0 layers (one flat `V0LayerParameter` per layer) became V1 layers.
    V0ToV1,
    /// Legacy `scale`/`mean_file`/`crop_size`/`mirror` of data layers moved to
    /// `transform_param`.
    DataTransformation,
    /// V1 layers (`layers`, enum types) became current `layer`s.
    V1ToV2 {
        /// Number of layers converted.
        layers: usize,
    },
    /// The legacy top-level net inputs became an `Input` layer (or, with no
    /// shapes given, as in old caffemodels, were simply dropped).
    Input {
        /// Number of legacy inputs.
        inputs: usize,
    },
    /// `BatchNorm` layers dropped their 3 legacy `param` specs.
    BatchNorm {
        /// Number of layers changed.
        layers: usize,
    },
    /// The legacy `solver_type` enum became the `type` string.
    SolverType,
}

impl fmt::Display for UpgradeStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeStep::V0ToV1 => f.write_str("upgraded V0 layers to the V1 layout"),
            UpgradeStep::DataTransformation => {
                f.write_str("moved legacy data-layer scale/mean_file/crop_size/mirror into transform_param")
            }
            UpgradeStep::V1ToV2 { layers } => write!(
                f,
                "upgraded {layers} V1 layer(s) (`layers`, enum types) to `layer` with string types"
            ),
            UpgradeStep::Input { inputs } => write!(
                f,
                "replaced {inputs} legacy net input(s) (input/input_dim/input_shape) by an Input layer"
            ),
            UpgradeStep::BatchNorm { layers } => {
                write!(f, "dropped the 3 legacy param specs of {layers} BatchNorm layer(s)")
            }
            UpgradeStep::SolverType => f.write_str("replaced the legacy solver_type enum by the type string"),
        }
    }
}

/// A layer named in an error: its position in the net's layer list and its
/// name (empty if it has none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerRef {
    /// 0-based index in the list the layer came from (`layers` for V0/V1).
    pub index: usize,
    /// The layer's name.
    pub name: String,
}

impl fmt::Display for LayerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "layer {} ({:?})", self.index, self.name)
    }
}

/// What Caffe refuses to upgrade (it aborts); the input is left unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    /// A V0 layer's type string must be one of the 24 V0 types Caffe knows
    /// (`conv`, `pool`, `innerproduct`, ...); `padding` layers are folded away
    /// first.
    #[error("{layer}: unknown V0 layer type {type_name:?}")]
    UnknownV0LayerType {
        /// The layer.
        layer: LayerRef,
        /// Its type string.
        type_name: String,
    },
    /// In a V0 net every bottom must be a net input or the top of an earlier
    /// layer (Caffe needs that to find padding layers).
    #[error("{layer}: bottom {blob:?} is neither a net input nor produced by an earlier layer")]
    UnknownBottom {
        /// The layer.
        layer: LayerRef,
        /// The unknown blob name.
        blob: String,
    },
    /// A V0 `padding` layer may only feed a `conv` or `pool` layer.
    #[error(
        "{layer}: a padding layer feeds this layer of type {type_name:?}; only conv and pool layers can absorb padding"
    )]
    PaddingIntoUnsupportedLayer {
        /// The layer fed by the padding layer.
        layer: LayerRef,
        /// Its V0 type.
        type_name: String,
    },
    /// A layer absorbing a V0 padding layer must have exactly one bottom.
    #[error("{layer}: takes padded input, so it must have exactly 1 bottom, not {bottoms}")]
    PaddedLayerBottoms {
        /// The layer fed by the padding layer.
        layer: LayerRef,
        /// Its number of bottoms.
        bottoms: usize,
    },
    /// A V0 padding layer must have exactly one bottom and one top.
    #[error("{layer}: a padding layer must have exactly 1 bottom and 1 top, not {bottoms} and {tops}")]
    PaddingLayerShape {
        /// The padding layer.
        layer: LayerRef,
        /// Its number of bottoms.
        bottoms: usize,
        /// Its number of tops.
        tops: usize,
    },
    /// A net uses either current `layer`s or legacy `layers`, never both.
    #[error("the net has both {layer} current `layer` entries and {layers} legacy `layers` entries; convert it to one layout by hand")]
    BothLayerAndLayers {
        /// Number of current layers.
        layer: usize,
        /// Number of legacy layers.
        layers: usize,
    },
    /// A V1 layer's type must be a value of the V1 `LayerType` enum.
    #[error("{layer}: V1 layer type number {value} is not a known V1 LayerType")]
    UnknownV1LayerType {
        /// The layer.
        layer: LayerRef,
        /// The raw enum number.
        value: i32,
    },
    /// A V1 layer's `blob_share_mode` entries must be STRICT (0) or
    /// PERMISSIVE (1).
    #[error("{layer}: blob_share_mode {value} is neither STRICT (0) nor PERMISSIVE (1)")]
    UnknownShareMode {
        /// The layer.
        layer: LayerRef,
        /// The raw enum number.
        value: i32,
    },
    /// With legacy `input_shape`, there is exactly one shape per `input`.
    #[error("the net has {inputs} legacy input(s) but {shapes} input_shape(s); there must be one shape per input")]
    InputShapeCount {
        /// Number of `input` names.
        inputs: usize,
        /// Number of `input_shape`s.
        shapes: usize,
    },
    /// With legacy `input_dim`, there are exactly 4 values per `input`.
    #[error("the net has {inputs} legacy input(s) but {dims} input_dim value(s); there must be 4 (num, channels, height, width) per input")]
    InputDimCount {
        /// Number of `input` names.
        inputs: usize,
        /// Number of `input_dim` values.
        dims: usize,
    },
    /// A solver sets its kind once: the legacy `solver_type` enum or the `type`
    /// string, not both.
    #[error("the solver sets both the legacy solver_type ({solver_type}) and type ({type_name:?}); keep only type")]
    SolverTypeConflict {
        /// The legacy enum value's name (or number, if unknown).
        solver_type: String,
        /// The `type` string.
        type_name: String,
    },
    /// The legacy `solver_type` must be a value of the `SolverType` enum.
    #[error("solver_type number {value} is not a known SolverType")]
    UnknownSolverType {
        /// The raw enum number.
        value: i32,
    },
}

/// Whether Caffe would upgrade this net (`NetNeedsUpgrade`): V0 or V1 layers,
/// legacy data-layer preprocessing, legacy inputs, or old BatchNorm params.
pub fn net_needs_upgrade(net: &NetParameter) -> bool {
    needs_v0_upgrade(net)
        || needs_data_upgrade(&net.layers)
        || !net.layers.is_empty()
        || !net.input.is_empty()
        || needs_batch_norm_upgrade(&net.layer)
}

/// Whether Caffe would upgrade this solver (`SolverNeedsTypeUpgrade`): it sets
/// the legacy `solver_type`.
pub fn solver_needs_upgrade(solver: &SolverParameter) -> bool {
    solver.solver_type.is_some()
}

/// Upgrades a legacy net in place to the current layout, as Caffe's
/// `UpgradeNetAsNeeded` (and so `upgrade_net_proto_text` /
/// `upgrade_net_proto_binary`) does. A current net is left as it is, with an
/// empty report.
///
/// # Errors
/// What Caffe aborts on; see [`UpgradeError`]. The net is then unchanged.
pub fn upgrade_net(net: &mut NetParameter) -> Result<UpgradeReport, UpgradeError> {
    let mut report = UpgradeReport::default();

    // Plan every step without touching `net` (blobs are moved only at the
    // end), so that an error leaves it as it was.
    let v0 = if needs_v0_upgrade(net) {
        Some(plan_v0_upgrade(&net.layers, &net.input, &mut report.warnings)?)
    } else {
        None
    };
    let v1_layers: &[V1LayerParameter] = match &v0 {
        Some(plan) => &plan.layers,
        None => &net.layers,
    };
    let data_upgrade = needs_data_upgrade(v1_layers);
    // The V0 upgrade rebuilds the net and so clears `layer` and `input_shape`.
    let (current_layers, input_shape): (&[LayerParameter], &[BlobShape]) = match &v0 {
        Some(_) => (&[], &[]),
        None => (&net.layer, &net.input_shape),
    };
    let v1 = if v1_layers.is_empty() {
        None
    } else {
        if !current_layers.is_empty() {
            return Err(UpgradeError::BothLayerAndLayers {
                layer: current_layers.len(),
                layers: v1_layers.len(),
            });
        }
        let mut converted = v1_layers
            .iter()
            .enumerate()
            .map(|(index, layer)| convert_v1_layer(layer, index, &mut report.warnings))
            .collect::<Result<Vec<_>, _>>()?;
        if data_upgrade {
            // Caffe moves these fields within the V1 layers just before
            // converting them; the conversion copies the parameter messages
            // as they are, so doing it on the converted layers is the same.
            converted.iter_mut().for_each(move_data_transformation);
        }
        Some(converted)
    };
    let input_layer = if net.input.is_empty() {
        None
    } else {
        Some(plan_input_layer(
            &net.input,
            input_shape,
            &net.input_dim,
            &mut report.warnings,
        )?)
    };

    // Apply: nothing below can fail.
    if let Some(plan) = v0 {
        let V0Plan { mut layers, sources } = plan;
        for (layer, &source) in layers.iter_mut().zip(&sources) {
            if let Some(v0_layer) = net.layers[source].layer.as_mut() {
                layer.blobs = std::mem::take(&mut v0_layer.blobs);
            }
        }
        // UpgradeV0Net starts from an empty net and copies these only.
        *net = NetParameter {
            name: net.name.take(),
            input: std::mem::take(&mut net.input),
            input_dim: std::mem::take(&mut net.input_dim),
            force_backward: net.force_backward,
            layers,
            ..NetParameter::default()
        };
        report.steps.push(UpgradeStep::V0ToV1);
    }
    if data_upgrade {
        report.steps.push(UpgradeStep::DataTransformation);
    }
    if let Some(mut converted) = v1 {
        for (layer, old) in converted.iter_mut().zip(net.layers.iter_mut()) {
            layer.blobs = std::mem::take(&mut old.blobs);
        }
        report.steps.push(UpgradeStep::V1ToV2 {
            layers: converted.len(),
        });
        net.layers.clear();
        net.layer = converted;
    }
    if let Some(layer) = input_layer {
        let inputs = net.input.len();
        if let Some(layer) = layer {
            // Caffe appends it and swaps it to the front, keeping the order of
            // the others.
            net.layer.insert(0, layer);
        }
        net.input.clear();
        net.input_shape.clear();
        net.input_dim.clear();
        report.steps.push(UpgradeStep::Input { inputs });
    }
    if needs_batch_norm_upgrade(&net.layer) {
        let mut layers = 0;
        for layer in &mut net.layer {
            if is_legacy_batch_norm(layer) {
                layer.param.clear();
                layers += 1;
            }
        }
        report.steps.push(UpgradeStep::BatchNorm { layers });
    }
    Ok(report)
}

/// Upgrades a legacy solver in place, as Caffe's `UpgradeSolverAsNeeded` (and
/// so `upgrade_solver_proto_text`) does: the `solver_type` enum becomes the
/// `type` string. Nets given inline are left alone, as Caffe does.
///
/// # Errors
/// [`UpgradeError::SolverTypeConflict`] if both `solver_type` and `type` are
/// set; [`UpgradeError::UnknownSolverType`] for an enum number outside
/// `SolverType`. The solver is then unchanged.
pub fn upgrade_solver(solver: &mut SolverParameter) -> Result<UpgradeReport, UpgradeError> {
    let mut report = UpgradeReport::default();
    let Some(value) = solver.solver_type else {
        return Ok(report);
    };
    let known = SolverType::try_from(value).ok();
    if let Some(type_name) = &solver.r#type {
        return Err(UpgradeError::SolverTypeConflict {
            solver_type: known.map_or_else(|| value.to_string(), |t| t.as_str_name().to_owned()),
            type_name: type_name.clone(),
        });
    }
    let type_name = match known {
        Some(SolverType::Sgd) => "SGD",
        Some(SolverType::Nesterov) => "Nesterov",
        Some(SolverType::Adagrad) => "AdaGrad",
        Some(SolverType::Rmsprop) => "RMSProp",
        Some(SolverType::Adadelta) => "AdaDelta",
        Some(SolverType::Adam) => "Adam",
        None => return Err(UpgradeError::UnknownSolverType { value }),
    };
    solver.r#type = Some(type_name.to_owned());
    solver.solver_type = None;
    report.steps.push(UpgradeStep::SolverType);
    Ok(report)
}

// ---------------------------------------------------------------------------
// Detection (Caffe's NetNeeds*Upgrade).

fn needs_v0_upgrade(net: &NetParameter) -> bool {
    net.layers.iter().any(|layer| layer.layer.is_some())
}

fn needs_data_upgrade(layers: &[V1LayerParameter]) -> bool {
    layers.iter().any(|layer| match layer.r#type.map(LayerType::try_from) {
        Some(Ok(LayerType::Data)) => layer
            .data_param
            .as_ref()
            .is_some_and(|p| p.scale.is_some() || p.mean_file.is_some() || p.crop_size.is_some() || p.mirror.is_some()),
        Some(Ok(LayerType::ImageData)) => layer
            .image_data_param
            .as_ref()
            .is_some_and(|p| p.scale.is_some() || p.mean_file.is_some() || p.crop_size.is_some() || p.mirror.is_some()),
        Some(Ok(LayerType::WindowData)) => layer
            .window_data_param
            .as_ref()
            .is_some_and(|p| p.scale.is_some() || p.mean_file.is_some() || p.crop_size.is_some() || p.mirror.is_some()),
        _ => false,
    })
}

fn is_legacy_batch_norm(layer: &LayerParameter) -> bool {
    layer.r#type.as_deref() == Some("BatchNorm") && layer.param.len() == 3
}

fn needs_batch_norm_upgrade(layers: &[LayerParameter]) -> bool {
    layers.iter().any(is_legacy_batch_norm)
}

fn layer_ref(index: usize, name: Option<&str>) -> LayerRef {
    LayerRef {
        index,
        name: name.unwrap_or_default().to_owned(),
    }
}

// ---------------------------------------------------------------------------
// V0 -> V1 (UpgradeV0Net, UpgradeV0PaddingLayers, UpgradeV0LayerParameter).

/// The V1 layers a V0 net becomes, without their blobs, and for each the index
/// of the V0 layer its blobs come from.
struct V0Plan {
    layers: Vec<V1LayerParameter>,
    sources: Vec<usize>,
}

fn v0_name(layer: &V1LayerParameter) -> Option<&str> {
    layer.layer.as_ref().and_then(|v0| v0.name.as_deref())
}

fn v0_type(layer: &V1LayerParameter) -> &str {
    layer
        .layer
        .as_ref()
        .and_then(|v0| v0.r#type.as_deref())
        .unwrap_or_default()
}

fn plan_v0_upgrade(
    layers: &[V1LayerParameter],
    inputs: &[String],
    warnings: &mut Vec<String>,
) -> Result<V0Plan, UpgradeError> {
    // Padding layers first: drop them, giving their pad to the conv or pool
    // layer they feed and rewiring its bottom to the padding layer's input.
    // Each kept layer is (bottoms, pad override, source index).
    let mut kept: Vec<(Vec<String>, Option<u32>, usize)> = Vec::with_capacity(layers.len());
    // For each blob, the index of the last layer producing it (None: a net
    // input).
    let mut last_producer: HashMap<&str, Option<usize>> = inputs.iter().map(|name| (name.as_str(), None)).collect();
    for (index, layer) in layers.iter().enumerate() {
        let this_type = v0_type(layer);
        let keep = this_type != "padding";
        let mut bottoms = layer.bottom.clone();
        let mut pad = None;
        for (j, blob) in layer.bottom.iter().enumerate() {
            let Some(&producer) = last_producer.get(blob.as_str()) else {
                return Err(UpgradeError::UnknownBottom {
                    layer: layer_ref(index, v0_name(layer)),
                    blob: blob.clone(),
                });
            };
            let Some(source_index) = producer else {
                continue;
            };
            let source = &layers[source_index];
            if v0_type(source) != "padding" {
                continue;
            }
            if this_type != "conv" && this_type != "pool" {
                return Err(UpgradeError::PaddingIntoUnsupportedLayer {
                    layer: layer_ref(index, v0_name(layer)),
                    type_name: this_type.to_owned(),
                });
            }
            if layer.bottom.len() != 1 {
                return Err(UpgradeError::PaddedLayerBottoms {
                    layer: layer_ref(index, v0_name(layer)),
                    bottoms: layer.bottom.len(),
                });
            }
            if source.bottom.len() != 1 || source.top.len() != 1 {
                return Err(UpgradeError::PaddingLayerShape {
                    layer: layer_ref(source_index, v0_name(source)),
                    bottoms: source.bottom.len(),
                    tops: source.top.len(),
                });
            }
            pad = Some(source.layer.as_ref().map_or(0, V0LayerParameter::pad));
            bottoms[j] = source.bottom[0].clone();
        }
        if keep {
            kept.push((bottoms, pad, index));
        }
        for top in &layer.top {
            last_producer.insert(top.as_str(), Some(index));
        }
    }

    let mut plan = V0Plan {
        layers: Vec::with_capacity(kept.len()),
        sources: Vec::with_capacity(kept.len()),
    };
    for (bottom, pad, source) in kept {
        let connection = &layers[source];
        let mut upgraded = V1LayerParameter {
            bottom,
            top: connection.top.clone(),
            ..V1LayerParameter::default()
        };
        if let Some(v0) = &connection.layer {
            let mut v0 = v0.clone();
            v0.blobs = Vec::new(); // moved later, not copied
            if pad.is_some() {
                v0.pad = pad;
            }
            convert_v0_layer(&v0, source, &mut upgraded, warnings)?;
        }
        plan.layers.push(upgraded);
        plan.sources.push(source);
    }
    Ok(plan)
}

/// The V1 type of a V0 type string (UpgradeV0LayerType).
fn v0_layer_type(type_name: &str) -> Option<LayerType> {
    Some(match type_name {
        "accuracy" => LayerType::Accuracy,
        "bnll" => LayerType::Bnll,
        "concat" => LayerType::Concat,
        "conv" => LayerType::Convolution,
        "data" => LayerType::Data,
        "dropout" => LayerType::Dropout,
        "euclidean_loss" => LayerType::EuclideanLoss,
        "flatten" => LayerType::Flatten,
        "hdf5_data" => LayerType::Hdf5Data,
        "hdf5_output" => LayerType::Hdf5Output,
        "im2col" => LayerType::Im2col,
        "images" => LayerType::ImageData,
        "infogain_loss" => LayerType::InfogainLoss,
        "innerproduct" => LayerType::InnerProduct,
        "lrn" => LayerType::Lrn,
        "multinomial_logistic_loss" => LayerType::MultinomialLogisticLoss,
        "pool" => LayerType::Pooling,
        "relu" => LayerType::Relu,
        "sigmoid" => LayerType::Sigmoid,
        "softmax" => LayerType::Softmax,
        "softmax_loss" => LayerType::SoftmaxLoss,
        "split" => LayerType::Split,
        "tanh" => LayerType::Tanh,
        "window_data" => LayerType::WindowData,
        _ => return None,
    })
}

/// Moves one V0 layer's settings into the V1 layer `out` (which already has
/// its bottoms and tops), as UpgradeV0LayerParameter does: each V0 field goes
/// to the parameter message of the layer types it applies to; for any other
/// type it is dropped with a warning.
fn convert_v0_layer(
    v0: &V0LayerParameter,
    index: usize,
    out: &mut V1LayerParameter,
    warnings: &mut Vec<String>,
) -> Result<(), UpgradeError> {
    let type_name = v0.r#type.as_deref().unwrap_or_default();
    let here = || layer_ref(index, v0.name.as_deref());
    // A macro, not a closure: the pool method check below warns too.
    macro_rules! dropped {
        ($field:expr) => {
            warnings.push(format!(
                "{}: V0 parameter {} does not apply to layer type {type_name:?}; dropped",
                here(),
                $field
            ))
        };
    }
    if v0.name.is_some() {
        out.name.clone_from(&v0.name);
    }
    if v0.r#type.is_some() {
        let Some(layer_type) = v0_layer_type(type_name) else {
            return Err(UpgradeError::UnknownV0LayerType {
                layer: here(),
                type_name: type_name.to_owned(),
            });
        };
        out.r#type = Some(layer_type as i32);
    }
    out.blobs.clone_from(&v0.blobs);
    out.blobs_lr.clone_from(&v0.blobs_lr);
    out.weight_decay.clone_from(&v0.weight_decay);

    let is = |name: &str| type_name == name;
    if let Some(num_output) = v0.num_output {
        if is("conv") {
            out.convolution_param.get_or_insert_with(Default::default).num_output = Some(num_output);
        } else if is("innerproduct") {
            out.inner_product_param.get_or_insert_with(Default::default).num_output = Some(num_output);
        } else {
            dropped!("num_output");
        }
    }
    if let Some(biasterm) = v0.biasterm {
        if is("conv") {
            out.convolution_param.get_or_insert_with(Default::default).bias_term = Some(biasterm);
        } else if is("innerproduct") {
            out.inner_product_param.get_or_insert_with(Default::default).bias_term = Some(biasterm);
        } else {
            dropped!("biasterm");
        }
    }
    if let Some(filler) = &v0.weight_filler {
        if is("conv") {
            out.convolution_param.get_or_insert_with(Default::default).weight_filler = Some(filler.clone());
        } else if is("innerproduct") {
            out.inner_product_param
                .get_or_insert_with(Default::default)
                .weight_filler = Some(filler.clone());
        } else {
            dropped!("weight_filler");
        }
    }
    if let Some(filler) = &v0.bias_filler {
        if is("conv") {
            out.convolution_param.get_or_insert_with(Default::default).bias_filler = Some(filler.clone());
        } else if is("innerproduct") {
            out.inner_product_param.get_or_insert_with(Default::default).bias_filler = Some(filler.clone());
        } else {
            dropped!("bias_filler");
        }
    }
    if let Some(pad) = v0.pad {
        if is("conv") {
            out.convolution_param.get_or_insert_with(Default::default).pad.push(pad);
        } else if is("pool") {
            out.pooling_param.get_or_insert_with(Default::default).pad = Some(pad);
        } else {
            dropped!("pad");
        }
    }
    if let Some(kernel_size) = v0.kernelsize {
        if is("conv") {
            out.convolution_param
                .get_or_insert_with(Default::default)
                .kernel_size
                .push(kernel_size);
        } else if is("pool") {
            out.pooling_param.get_or_insert_with(Default::default).kernel_size = Some(kernel_size);
        } else {
            dropped!("kernelsize");
        }
    }
    if let Some(group) = v0.group {
        if is("conv") {
            out.convolution_param.get_or_insert_with(Default::default).group = Some(group);
        } else {
            dropped!("group");
        }
    }
    if let Some(stride) = v0.stride {
        if is("conv") {
            out.convolution_param
                .get_or_insert_with(Default::default)
                .stride
                .push(stride);
        } else if is("pool") {
            out.pooling_param.get_or_insert_with(Default::default).stride = Some(stride);
        } else {
            dropped!("stride");
        }
    }
    if let Some(pool) = v0.pool {
        if is("pool") {
            let method = match v0_layer_parameter::PoolMethod::try_from(pool) {
                Ok(v0_layer_parameter::PoolMethod::Max) => Some(PoolMethod::Max),
                Ok(v0_layer_parameter::PoolMethod::Ave) => Some(PoolMethod::Ave),
                Ok(v0_layer_parameter::PoolMethod::Stochastic) => Some(PoolMethod::Stochastic),
                Err(_) => None,
            };
            match method {
                Some(method) => {
                    out.pooling_param.get_or_insert_with(Default::default).pool = Some(method as i32);
                }
                None => warnings.push(format!("{}: unknown V0 pool method {pool}; dropped", here())),
            }
        } else {
            dropped!("pool");
        }
    }
    if let Some(ratio) = v0.dropout_ratio {
        if is("dropout") {
            out.dropout_param.get_or_insert_with(Default::default).dropout_ratio = Some(ratio);
        } else {
            dropped!("dropout_ratio");
        }
    }
    if let Some(local_size) = v0.local_size {
        if is("lrn") {
            out.lrn_param.get_or_insert_with(Default::default).local_size = Some(local_size);
        } else {
            dropped!("local_size");
        }
    }
    if let Some(alpha) = v0.alpha {
        if is("lrn") {
            out.lrn_param.get_or_insert_with(Default::default).alpha = Some(alpha);
        } else {
            dropped!("alpha");
        }
    }
    if let Some(beta) = v0.beta {
        if is("lrn") {
            out.lrn_param.get_or_insert_with(Default::default).beta = Some(beta);
        } else {
            dropped!("beta");
        }
    }
    if let Some(k) = v0.k {
        if is("lrn") {
            out.lrn_param.get_or_insert_with(Default::default).k = Some(k);
        } else {
            dropped!("k");
        }
    }
    if let Some(source) = &v0.source {
        let source = Some(source.clone());
        if is("data") {
            out.data_param.get_or_insert_with(Default::default).source = source;
        } else if is("hdf5_data") {
            out.hdf5_data_param.get_or_insert_with(Default::default).source = source;
        } else if is("images") {
            out.image_data_param.get_or_insert_with(Default::default).source = source;
        } else if is("window_data") {
            out.window_data_param.get_or_insert_with(Default::default).source = source;
        } else if is("infogain_loss") {
            out.infogain_loss_param.get_or_insert_with(Default::default).source = source;
        } else {
            dropped!("source");
        }
    }
    // Preprocessing applies to any type: it goes to transform_param as is.
    if let Some(scale) = v0.scale {
        out.transform_param.get_or_insert_with(Default::default).scale = Some(scale);
    }
    if let Some(mean_file) = &v0.meanfile {
        out.transform_param.get_or_insert_with(Default::default).mean_file = Some(mean_file.clone());
    }
    if let Some(batch_size) = v0.batchsize {
        if is("data") {
            out.data_param.get_or_insert_with(Default::default).batch_size = Some(batch_size);
        } else if is("hdf5_data") {
            out.hdf5_data_param.get_or_insert_with(Default::default).batch_size = Some(batch_size);
        } else if is("images") {
            out.image_data_param.get_or_insert_with(Default::default).batch_size = Some(batch_size);
        } else if is("window_data") {
            out.window_data_param.get_or_insert_with(Default::default).batch_size = Some(batch_size);
        } else {
            dropped!("batchsize");
        }
    }
    if let Some(crop_size) = v0.cropsize {
        out.transform_param.get_or_insert_with(Default::default).crop_size = Some(crop_size);
    }
    if let Some(mirror) = v0.mirror {
        out.transform_param.get_or_insert_with(Default::default).mirror = Some(mirror);
    }
    if let Some(rand_skip) = v0.rand_skip {
        if is("data") {
            out.data_param.get_or_insert_with(Default::default).rand_skip = Some(rand_skip);
        } else if is("images") {
            out.image_data_param.get_or_insert_with(Default::default).rand_skip = Some(rand_skip);
        } else {
            dropped!("rand_skip");
        }
    }
    if let Some(shuffle) = v0.shuffle_images {
        if is("images") {
            out.image_data_param.get_or_insert_with(Default::default).shuffle = Some(shuffle);
        } else {
            dropped!("shuffle_images");
        }
    }
    if let Some(new_height) = v0.new_height {
        if is("images") {
            // V0 stores it as int32, ImageDataParameter as uint32; Caffe's
            // implicit conversion reinterprets the bits.
            out.image_data_param.get_or_insert_with(Default::default).new_height = Some(new_height as u32);
        } else {
            dropped!("new_height");
        }
    }
    if let Some(new_width) = v0.new_width {
        if is("images") {
            out.image_data_param.get_or_insert_with(Default::default).new_width = Some(new_width as u32);
        } else {
            dropped!("new_width");
        }
    }
    if let Some(concat_dim) = v0.concat_dim {
        if is("concat") {
            out.concat_param.get_or_insert_with(Default::default).concat_dim = Some(concat_dim);
        } else {
            dropped!("concat_dim");
        }
    }
    if let Some(threshold) = v0.det_fg_threshold {
        if is("window_data") {
            out.window_data_param.get_or_insert_with(Default::default).fg_threshold = Some(threshold);
        } else {
            dropped!("det_fg_threshold");
        }
    }
    if let Some(threshold) = v0.det_bg_threshold {
        if is("window_data") {
            out.window_data_param.get_or_insert_with(Default::default).bg_threshold = Some(threshold);
        } else {
            dropped!("det_bg_threshold");
        }
    }
    if let Some(fraction) = v0.det_fg_fraction {
        if is("window_data") {
            out.window_data_param.get_or_insert_with(Default::default).fg_fraction = Some(fraction);
        } else {
            dropped!("det_fg_fraction");
        }
    }
    if let Some(context_pad) = v0.det_context_pad {
        if is("window_data") {
            out.window_data_param.get_or_insert_with(Default::default).context_pad = Some(context_pad);
        } else {
            dropped!("det_context_pad");
        }
    }
    if let Some(crop_mode) = &v0.det_crop_mode {
        if is("window_data") {
            out.window_data_param.get_or_insert_with(Default::default).crop_mode = Some(crop_mode.clone());
        } else {
            dropped!("det_crop_mode");
        }
    }
    if let Some(param) = &v0.hdf5_output_param {
        if is("hdf5_output") {
            out.hdf5_output_param = Some(param.clone());
        } else {
            dropped!("hdf5_output_param");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Data transformation (UpgradeNetDataTransformation).

/// Moves legacy preprocessing of a (converted) data layer into
/// `transform_param`. Like Caffe, both parameter messages become present for
/// every layer of these types, even when nothing moves.
fn move_data_transformation(layer: &mut LayerParameter) {
    macro_rules! move_fields {
        ($param:ident) => {{
            let param = layer.$param.get_or_insert_with(Default::default);
            let transform = layer
                .transform_param
                .get_or_insert_with(TransformationParameter::default);
            if let Some(scale) = param.scale.take() {
                transform.scale = Some(scale);
            }
            if let Some(mean_file) = param.mean_file.take() {
                transform.mean_file = Some(mean_file);
            }
            if let Some(crop_size) = param.crop_size.take() {
                transform.crop_size = Some(crop_size);
            }
            if let Some(mirror) = param.mirror.take() {
                transform.mirror = Some(mirror);
            }
        }};
    }
    match layer.r#type.as_deref() {
        Some("Data") => move_fields!(data_param),
        Some("ImageData") => move_fields!(image_data_param),
        Some("WindowData") => move_fields!(window_data_param),
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// V1 -> current (UpgradeV1Net, UpgradeV1LayerParameter, UpgradeV1LayerType).

/// The current type string of a V1 layer type.
fn v1_layer_type_name(layer_type: LayerType) -> &'static str {
    match layer_type {
        LayerType::None => "",
        LayerType::Absval => "AbsVal",
        LayerType::Accuracy => "Accuracy",
        LayerType::Argmax => "ArgMax",
        LayerType::Bnll => "BNLL",
        LayerType::Concat => "Concat",
        LayerType::ContrastiveLoss => "ContrastiveLoss",
        LayerType::Convolution => "Convolution",
        LayerType::Deconvolution => "Deconvolution",
        LayerType::Data => "Data",
        LayerType::Dropout => "Dropout",
        LayerType::DummyData => "DummyData",
        LayerType::EuclideanLoss => "EuclideanLoss",
        LayerType::Eltwise => "Eltwise",
        LayerType::Exp => "Exp",
        LayerType::Flatten => "Flatten",
        LayerType::Hdf5Data => "HDF5Data",
        LayerType::Hdf5Output => "HDF5Output",
        LayerType::HingeLoss => "HingeLoss",
        LayerType::Im2col => "Im2col",
        LayerType::ImageData => "ImageData",
        LayerType::InfogainLoss => "InfogainLoss",
        LayerType::InnerProduct => "InnerProduct",
        LayerType::Lrn => "LRN",
        LayerType::MemoryData => "MemoryData",
        LayerType::MultinomialLogisticLoss => "MultinomialLogisticLoss",
        LayerType::Mvn => "MVN",
        LayerType::Pooling => "Pooling",
        LayerType::Power => "Power",
        LayerType::Relu => "ReLU",
        LayerType::Sigmoid => "Sigmoid",
        LayerType::SigmoidCrossEntropyLoss => "SigmoidCrossEntropyLoss",
        LayerType::Silence => "Silence",
        LayerType::Softmax => "Softmax",
        LayerType::SoftmaxLoss => "SoftmaxWithLoss",
        LayerType::Split => "Split",
        LayerType::Slice => "Slice",
        LayerType::Tanh => "TanH",
        LayerType::WindowData => "WindowData",
        LayerType::Threshold => "Threshold",
    }
}

/// The param spec `i` of `params`, created (empty) with any missing before it.
fn param_at(params: &mut Vec<ParamSpec>, i: usize) -> &mut ParamSpec {
    if params.len() <= i {
        params.resize_with(i + 1, ParamSpec::default);
    }
    &mut params[i]
}

/// Converts one V1 layer, except its blobs (moved by the caller once every
/// layer converted), as UpgradeV1LayerParameter does.
fn convert_v1_layer(
    v1: &V1LayerParameter,
    index: usize,
    warnings: &mut Vec<String>,
) -> Result<LayerParameter, UpgradeError> {
    let here = || layer_ref(index, v1.name.as_deref());
    let mut layer = LayerParameter {
        bottom: v1.bottom.clone(),
        top: v1.top.clone(),
        name: v1.name.clone(),
        include: v1.include.clone(),
        exclude: v1.exclude.clone(),
        ..LayerParameter::default()
    };
    if let Some(value) = v1.r#type {
        let layer_type =
            LayerType::try_from(value).map_err(|_| UpgradeError::UnknownV1LayerType { layer: here(), value })?;
        layer.r#type = Some(v1_layer_type_name(layer_type).to_owned());
    }
    for (i, name) in v1.param.iter().enumerate() {
        param_at(&mut layer.param, i).name = Some(name.clone());
    }
    for (i, &mode) in v1.blob_share_mode.iter().enumerate() {
        // V1 and ParamSpec number the two modes alike.
        let mode = match caffe_proto::v1_layer_parameter::DimCheckMode::try_from(mode) {
            Ok(caffe_proto::v1_layer_parameter::DimCheckMode::Strict) => DimCheckMode::Strict,
            Ok(caffe_proto::v1_layer_parameter::DimCheckMode::Permissive) => DimCheckMode::Permissive,
            Err(_) => {
                return Err(UpgradeError::UnknownShareMode {
                    layer: here(),
                    value: mode,
                })
            }
        };
        param_at(&mut layer.param, i).share_mode = Some(mode as i32);
    }
    for (i, &lr) in v1.blobs_lr.iter().enumerate() {
        param_at(&mut layer.param, i).lr_mult = Some(lr);
    }
    for (i, &decay) in v1.weight_decay.iter().enumerate() {
        param_at(&mut layer.param, i).decay_mult = Some(decay);
    }
    layer.loss_weight.clone_from(&v1.loss_weight);
    layer.accuracy_param.clone_from(&v1.accuracy_param);
    layer.argmax_param.clone_from(&v1.argmax_param);
    layer.concat_param.clone_from(&v1.concat_param);
    layer.contrastive_loss_param.clone_from(&v1.contrastive_loss_param);
    layer.convolution_param.clone_from(&v1.convolution_param);
    layer.data_param.clone_from(&v1.data_param);
    layer.dropout_param.clone_from(&v1.dropout_param);
    layer.dummy_data_param.clone_from(&v1.dummy_data_param);
    layer.eltwise_param.clone_from(&v1.eltwise_param);
    layer.exp_param.clone_from(&v1.exp_param);
    layer.hdf5_data_param.clone_from(&v1.hdf5_data_param);
    layer.hdf5_output_param.clone_from(&v1.hdf5_output_param);
    layer.hinge_loss_param.clone_from(&v1.hinge_loss_param);
    layer.image_data_param.clone_from(&v1.image_data_param);
    layer.infogain_loss_param.clone_from(&v1.infogain_loss_param);
    layer.inner_product_param.clone_from(&v1.inner_product_param);
    layer.lrn_param.clone_from(&v1.lrn_param);
    layer.memory_data_param.clone_from(&v1.memory_data_param);
    layer.mvn_param.clone_from(&v1.mvn_param);
    layer.pooling_param.clone_from(&v1.pooling_param);
    layer.power_param.clone_from(&v1.power_param);
    layer.relu_param.clone_from(&v1.relu_param);
    layer.sigmoid_param.clone_from(&v1.sigmoid_param);
    layer.softmax_param.clone_from(&v1.softmax_param);
    layer.slice_param.clone_from(&v1.slice_param);
    layer.tanh_param.clone_from(&v1.tanh_param);
    layer.threshold_param.clone_from(&v1.threshold_param);
    layer.window_data_param.clone_from(&v1.window_data_param);
    layer.transform_param.clone_from(&v1.transform_param);
    layer.loss_param.clone_from(&v1.loss_param);
    if v1.layer.is_some() {
        warnings.push(format!("{}: has a V0 layer inside a V1 layer; ignored", here()));
    }
    Ok(layer)
}

// ---------------------------------------------------------------------------
// Legacy inputs (UpgradeNetInput).

/// The Input layer replacing the legacy inputs, or `None` when they carry no
/// shapes (old caffemodels), in which case Caffe just drops them.
fn plan_input_layer(
    inputs: &[String],
    input_shape: &[BlobShape],
    input_dim: &[i32],
    warnings: &mut Vec<String>,
) -> Result<Option<LayerParameter>, UpgradeError> {
    let shapes: Vec<BlobShape> = if !input_shape.is_empty() {
        if input_shape.len() != inputs.len() {
            return Err(UpgradeError::InputShapeCount {
                inputs: inputs.len(),
                shapes: input_shape.len(),
            });
        }
        if !input_dim.is_empty() {
            warnings.push(format!(
                "the net gives both input_shape and {} input_dim value(s); input_dim is ignored, as Caffe does",
                input_dim.len()
            ));
        }
        input_shape.to_vec()
    } else if !input_dim.is_empty() {
        if inputs.len().checked_mul(4) != Some(input_dim.len()) {
            return Err(UpgradeError::InputDimCount {
                inputs: inputs.len(),
                dims: input_dim.len(),
            });
        }
        input_dim
            .chunks_exact(4)
            .map(|dims| BlobShape {
                dim: dims.iter().map(|&d| i64::from(d)).collect(),
            })
            .collect()
    } else {
        return Ok(None);
    };
    Ok(Some(LayerParameter {
        name: Some("input".to_owned()),
        r#type: Some("Input".to_owned()),
        top: inputs.to_vec(),
        input_param: Some(InputParameter { shape: shapes }),
        ..LayerParameter::default()
    }))
}

/// The modern type string of a layer type as stored in any generation: a V1 enum name (`INNER_PRODUCT`) or a V0
/// string (`innerproduct`) maps as Caffe's upgrade maps it (`InnerProduct`); a modern or unknown string is returned
/// as it is.
pub fn modern_type_name(stored: &str) -> &str {
    if let Some(v1) = LayerType::from_str_name(stored) {
        return v1_layer_type_name(v1);
    }
    match v0_layer_type(stored) {
        Some(v1) => v1_layer_type_name(v1),
        None => stored,
    }
}
