//! The net: layers wired by blob name, inputs fed by the caller, one forward pass at a time.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use caffe_proto::{LayerParameter, NetParameter, NetState, Phase};

use crate::error::{Error, LayerError};
use crate::graph::{filter_layers, insert_splits};
use crate::layers::{self, Layer, DATA_SOURCE_TYPES};
use crate::weights::{shape_equals, CopyReport, LayerWeights, WeightBlob};
use crate::Tensor;

/// How to build a net: Caffe's phase, level and stages (which select layers by their include/exclude rules), and
/// the shapes of data-layer tops that the layers' parameters do not fix.
#[derive(Clone, Debug, PartialEq)]
pub struct NetOptions {
    /// The phase (TEST by default). It also sets the layers' behaviour: Dropout is the identity and BatchNorm uses
    /// its stored statistics in TEST.
    pub phase: Phase,
    /// The level compared with rules' `min_level` / `max_level`; replaces the net's own `state.level`, as Caffe's
    /// `Net(file, phase, level, stages)` does.
    pub level: i32,
    /// Stages added to the net's own `state.stage`.
    pub stages: Vec<String>,
    /// Shapes of input blobs by name. Needed for data-layer tops whose shape the parameters leave open (e.g. a
    /// `Data` layer knows its batch size but not C, H, W); overrides the declared shape of any input (like pycaffe's
    /// `net.blobs[name].reshape`).
    pub input_shapes: BTreeMap<String, Vec<usize>>,
    /// For forward passes only (evaluation): a layer whose top only a MAX pooling by 2x2 tiling windows reads (a
    /// pruned convolution on its direct sparse path) computes that pooling itself, image by image while its output
    /// is in cache; the pooling's top gets the same bits. The layer's own top is then left unwritten:
    /// [`Net::blob`] gives `None` for it, and [`Net::backward`] is refused. Off by default.
    pub fuse_pooling: bool,
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            phase: Phase::Test,
            level: 0,
            stages: Vec::new(),
            input_shapes: BTreeMap::new(),
            fuse_pooling: false,
        }
    }
}

impl NetOptions {
    /// TEST phase, level 0, no stages, no input shapes.
    pub fn test() -> Self {
        Self::default()
    }

    /// The state `param`'s layers are filtered with ([`crate::graph::filter_layers`]): the net's own `state`, with
    /// these options' phase and level and their stages added, as Caffe's `Net(file, phase, level, stages)`.
    pub fn state(&self, param: &NetParameter) -> NetState {
        let mut state: NetState = param.state.clone().unwrap_or_default();
        state.phase = Some(self.phase as i32);
        state.level = Some(self.level);
        state.stage.extend(self.stages.iter().cloned());
        state
    }

    /// TRAIN phase, level 0, no stages, no input shapes.
    pub fn train() -> Self {
        NetOptions {
            phase: Phase::Train,
            ..Self::default()
        }
    }

    /// The same options with the shape of input blob `blob` set.
    pub fn with_input_shape(mut self, blob: &str, shape: &[usize]) -> Self {
        self.input_shapes.insert(blob.to_string(), shape.to_vec());
        self
    }
}

/// Loss layer types that get an anonymous top when declared without one (Caffe's `LossLayer::AutoTopBlobs`).
const AUTO_TOP_TYPES: &[&str] = &[
    "SoftmaxWithLoss",
    "EuclideanLoss",
    "ContrastiveLoss",
    "HingeLoss",
    "InfogainLoss",
    "MultinomialLogisticLoss",
    "SigmoidCrossEntropyLoss",
];

/// The name Caffe's `Net::AppendTop` gives an anonymous top.
const ANONYMOUS_TOP: &str = "(automatic)";

/// A blob the caller feeds: a top of an `Input` layer or of a data-reading layer (`Data`, `ImageData`,
/// `HDF5Data`, `MemoryData`, `WindowData`, `DummyData`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalInput {
    /// The blob name.
    pub blob: String,
    /// The layer producing it.
    pub layer: String,
    /// That layer's type.
    pub layer_type: String,
    /// The shape the layer's parameters declare: `None` where a dimension is not fixed by them (e.g. a `Data`
    /// layer's C, H, W), or `None` as a whole when even the rank is open (`HDF5Data`).
    pub declared: Option<Vec<Option<usize>>>,
}

impl ExternalInput {
    /// The declared shape when every dimension is known.
    pub fn known_shape(&self) -> Option<Vec<usize>> {
        self.declared.as_ref()?.iter().copied().collect()
    }
}

/// Name, type and wiring of one layer of a built net.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerInfo {
    /// The layer name (Caffe's name for inserted splits).
    pub name: String,
    /// The layer type.
    pub layer_type: String,
    /// Bottom blob names.
    pub bottoms: Vec<String>,
    /// Top blob names.
    pub tops: Vec<String>,
    /// Loss weight of each top (0 for tops that are not losses).
    pub loss_weights: Vec<f32>,
}

struct Slot {
    info: LayerInfo,
    bottoms: Vec<usize>,
    tops: Vec<usize>,
    /// `None` for data sources, whose tops the caller feeds.
    compute: Option<Box<dyn Layer>>,
    /// `(lr_mult, decay_mult)` of each parameter blob (Caffe's ParamSpec, defaults 1 and 1): the layer's own, which
    /// decide its `param_propagate_down`.
    param_specs: Vec<(f32, f32)>,
    /// The multipliers the solver uses (Caffe's `params_lr` / `params_weight_decay`): the own ones, except that a
    /// sharer's explicit value fills in an owner's unset one.
    learn_specs: Vec<(f32, f32)>,
    /// The layer's `propagate_down` list (empty: decided by the net).
    propagate_down: Vec<bool>,
    /// Caffe's `layer_need_backward_`.
    need_backward: bool,
    /// Caffe's `bottom_need_backward_`.
    bottom_need_backward: Vec<bool>,
    /// Gradients of the parameter blobs (allocated on first use).
    param_diffs: Vec<Tensor>,
    /// For each parameter blob shared by name with an earlier one (Caffe's `param { name }`), the owner's (layer
    /// slot, blob index); such blobs mirror the owner's values and pass their gradient on to it.
    param_owners: Vec<Option<(usize, usize)>>,
}

/// One learnable parameter blob with its gradient, as a solver sees it (Caffe's `learnable_params()` entry).
#[derive(Debug)]
pub struct LearnableParam<'a> {
    /// The layer name.
    pub layer: &'a str,
    /// The blob index within the layer (0 weights, 1 bias, ...).
    pub index: usize,
    /// The ParamSpec `lr_mult` (default 1; 0 for BatchNorm's statistics).
    pub lr_mult: f32,
    /// The ParamSpec `decay_mult` (default 1).
    pub decay_mult: f32,
    /// The values.
    pub data: &'a mut Tensor,
    /// The gradient, same shape as `data`.
    pub diff: &'a mut Tensor,
}

/// A Caffe net built for one phase, with its blobs: set the inputs, run [`Net::forward`], read any blob by name.
pub struct Net {
    name: String,
    phase: Phase,
    slots: Vec<Slot>,
    blob_names: Vec<String>,
    blobs: Vec<Tensor>,
    blob_index: HashMap<String, usize>,
    layer_index: HashMap<String, usize>,
    inputs: Vec<ExternalInput>,
    input_blobs: Vec<usize>,
    outputs: Vec<usize>,
    /// Blob diffs, one per blob (empty until the first backward).
    diffs: Vec<Tensor>,
    force_backward: bool,
    /// With [`NetOptions::fuse_pooling`]: (layer slot, pooling slot) pairs where the pooling alone reads the layer's
    /// one top, so the layer may compute the pooling itself.
    fusions: Vec<(usize, usize)>,
    /// Per blob: left unwritten by the last forward (the top of a layer that computed its pooling itself).
    unwritten: Vec<bool>,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("name", &self.name)
            .field("phase", &self.phase)
            .field("layers", &self.slots.iter().map(|s| &s.info.name).collect::<Vec<_>>())
            .finish()
    }
}

/// The shape a data-reading layer's parameters declare for its top `index`.
fn declared_shape(param: &LayerParameter, layer_type: &str, index: usize) -> Option<Vec<Option<usize>>> {
    let crop = param.transform_param.as_ref().map_or(0, |t| t.crop_size()) as usize;
    let crop_hw = |h: Option<usize>, w: Option<usize>| if crop > 0 { (Some(crop), Some(crop)) } else { (h, w) };
    match layer_type {
        "Input" => {
            let shapes = &param.input_param.as_ref()?.shape;
            // One shape for every top, or one per top (Caffe's InputLayer).
            let shape = if shapes.len() == 1 {
                shapes.first()
            } else {
                shapes.get(index)
            }?;
            Some(shape.dim.iter().map(|&d| usize::try_from(d).ok()).collect())
        }
        "Data" => {
            let batch = param.data_param.as_ref().map(|p| p.batch_size() as usize);
            if index == 0 {
                let (h, w) = crop_hw(None, None);
                Some(vec![batch, None, h, w])
            } else {
                Some(vec![batch])
            }
        }
        "ImageData" => {
            let p = param.image_data_param.clone().unwrap_or_default();
            let batch = Some(p.batch_size() as usize);
            if index == 0 {
                let channels = if p.is_color() { 3 } else { 1 };
                let (h, w) = if p.new_height() > 0 && p.new_width() > 0 {
                    (Some(p.new_height() as usize), Some(p.new_width() as usize))
                } else {
                    (None, None)
                };
                let (h, w) = crop_hw(h, w);
                Some(vec![batch, Some(channels), h, w])
            } else {
                Some(vec![batch])
            }
        }
        "MemoryData" => {
            let p = param.memory_data_param.unwrap_or_default();
            let batch = Some(p.batch_size() as usize);
            if index == 0 {
                Some(vec![
                    batch,
                    Some(p.channels() as usize),
                    Some(p.height() as usize),
                    Some(p.width() as usize),
                ])
            } else {
                Some(vec![batch])
            }
        }
        "WindowData" => {
            let p = param.window_data_param.clone().unwrap_or_default();
            let batch = Some(p.batch_size() as usize);
            if index == 0 {
                let crop = if crop > 0 { crop } else { p.crop_size() as usize };
                let hw = (crop > 0).then_some(crop);
                Some(vec![batch, Some(3), hw, hw])
            } else {
                Some(vec![batch])
            }
        }
        "HDF5Data" => None,
        "DummyData" => {
            let p = param.dummy_data_param.clone().unwrap_or_default();
            if let Some(shape) = p.shape.get(if p.shape.len() == 1 { 0 } else { index }) {
                return Some(shape.dim.iter().map(|&d| usize::try_from(d).ok()).collect());
            }
            let pick = |v: &[u32]| v.get(if v.len() == 1 { 0 } else { index }).map(|&d| d as usize);
            let dims = [pick(&p.num), pick(&p.channels), pick(&p.height), pick(&p.width)];
            dims.iter().all(Option::is_some).then(|| dims.to_vec())
        }
        _ => None,
    }
}

impl Net {
    /// Builds the net Caffe would build from `param` for `options` (phase TEST by default): layers filtered by
    /// their include/exclude rules, Split layers inserted where a blob has several readers, every layer checked
    /// and shaped, parameters filled by their fillers (constant 0 unless the prototxt says otherwise) and then
    /// overwritten by any blobs embedded in `param` (as Caffe's layer constructor does).
    ///
    /// The net must be in the modern layout (`layer`, not V1 `layers`; no top-level `input` fields).
    pub fn new(param: &NetParameter, options: &NetOptions) -> Result<Net, Error> {
        if !param.layers.is_empty() {
            return Err(Error::LegacyLayers {
                count: param.layers.len(),
            });
        }
        if !param.input.is_empty() || !param.input_dim.is_empty() || !param.input_shape.is_empty() {
            return Err(Error::LegacyInputs {
                inputs: param.input.clone(),
            });
        }
        let layers = insert_splits(&filter_layers(param, &options.state(param))?)?;

        let mut net = Net {
            name: param.name().to_string(),
            phase: options.phase,
            slots: Vec::with_capacity(layers.len()),
            blob_names: Vec::new(),
            blobs: Vec::new(),
            blob_index: HashMap::new(),
            layer_index: HashMap::new(),
            inputs: Vec::new(),
            input_blobs: Vec::new(),
            outputs: Vec::new(),
            diffs: Vec::new(),
            force_backward: param.force_backward(),
            fusions: Vec::new(),
            unwritten: Vec::new(),
        };
        let mut unconsumed = BTreeSet::new();
        for layer in &layers {
            net.add_layer(layer, options.phase, &mut unconsumed)?;
        }
        net.outputs = unconsumed.iter().map(|name: &String| net.blob_index[name]).collect();
        net.plan_backward();
        if options.fuse_pooling {
            net.fusions = net.pooling_fusions();
        }

        let input_names: Vec<String> = net.inputs.iter().map(|i| i.blob.clone()).collect();
        if let Some(unknown) = options.input_shapes.keys().find(|k| !input_names.contains(k)) {
            return Err(Error::NotAnInput {
                blob: unknown.clone(),
                inputs: input_names,
            });
        }
        for (input, &blob) in net.inputs.iter().zip(&net.input_blobs) {
            let shape = match options.input_shapes.get(&input.blob) {
                Some(shape) => shape.clone(),
                None => input.known_shape().ok_or_else(|| Error::MissingInputShape {
                    layer: input.layer.clone(),
                    layer_type: input.layer_type.clone(),
                    blob: input.blob.clone(),
                    known: input.declared.clone(),
                })?,
            };
            net.blobs[blob] = Tensor::zeros(&shape);
        }
        net.reshape()?;
        for (slot, layer) in net.slots.iter_mut().zip(&layers) {
            if layer.blobs.is_empty() {
                continue;
            }
            let blobs: Vec<WeightBlob> = layer.blobs.iter().map(WeightBlob::from_proto).collect();
            copy_layer(slot, &blobs)?;
        }
        net.resolve_shared_params(&layers)?;
        net.sync_shared_params();
        Ok(net)
    }

    fn add_layer(
        &mut self,
        param: &LayerParameter,
        phase: Phase,
        unconsumed: &mut BTreeSet<String>,
    ) -> Result<(), Error> {
        let name = param.name().to_string();
        let layer_type = param.r#type().to_string();
        let layer_error = |source: LayerError| Error::Layer {
            layer: name.clone(),
            layer_type: layer_type.clone(),
            source,
        };
        let mut bottoms = Vec::with_capacity(param.bottom.len());
        for (j, bottom) in param.bottom.iter().enumerate() {
            let Some(&index) = self.blob_index.get(bottom) else {
                return Err(Error::MissingBottom {
                    layer: name.clone(),
                    bottom: bottom.clone(),
                    index: j,
                });
            };
            bottoms.push(index);
            unconsumed.remove(bottom);
        }
        let mut tops = Vec::with_capacity(param.top.len());
        for (j, top) in param.top.iter().enumerate() {
            let in_place = param.bottom.get(j) == Some(top);
            let index = if in_place {
                bottoms[j]
            } else if self.blob_index.contains_key(top) {
                return Err(Error::DuplicateTop {
                    layer: name.clone(),
                    top: top.clone(),
                });
            } else {
                self.blob_names.push(top.clone());
                self.blobs.push(Tensor::default());
                self.blob_index.insert(top.clone(), self.blobs.len() - 1);
                self.blobs.len() - 1
            };
            tops.push(index);
            unconsumed.insert(top.clone());
        }
        let mut top_names = param.top.clone();
        if top_names.is_empty() && AUTO_TOP_TYPES.contains(&layer_type.as_str()) {
            // Caffe's AutoTopBlobs: a loss layer declared without a top (common in 2014 nets) gets an anonymous one
            // that carries the loss; it is no net output and no other layer can name it.
            top_names.push(ANONYMOUS_TOP.to_string());
            self.blob_names.push(ANONYMOUS_TOP.to_string());
            self.blobs.push(Tensor::default());
            self.blob_index
                .entry(ANONYMOUS_TOP.to_string())
                .or_insert(self.blobs.len() - 1);
            tops.push(self.blobs.len() - 1);
        }
        let compute = if DATA_SOURCE_TYPES.contains(&layer_type.as_str()) {
            if !param.bottom.is_empty() {
                return Err(layer_error(LayerError::Arity(format!(
                    "a data layer takes no bottoms, got {}",
                    param.bottom.len()
                ))));
            }
            if param.top.is_empty() {
                return Err(layer_error(LayerError::Arity(
                    "a data layer needs at least one top".into(),
                )));
            }
            for (j, top) in param.top.iter().enumerate() {
                self.inputs.push(ExternalInput {
                    blob: top.clone(),
                    layer: name.clone(),
                    layer_type: layer_type.clone(),
                    declared: declared_shape(param, &layer_type, j),
                });
                self.input_blobs.push(tops[j]);
            }
            None
        } else {
            match layers::create(param, &layer_type, phase, bottoms.len(), tops.len()).map_err(layer_error)? {
                Some(layer) => Some(layer),
                None => {
                    return Err(Error::UnsupportedLayer {
                        layer: name,
                        layer_type,
                    })
                }
            }
        };
        let loss_weights = if !param.loss_weight.is_empty() {
            if param.loss_weight.len() != top_names.len() {
                return Err(layer_error(LayerError::Param(format!(
                    "loss_weight must be unspecified or given once per top: {} weights for {} tops",
                    param.loss_weight.len(),
                    top_names.len()
                ))));
            }
            param.loss_weight.clone()
        } else {
            let is_loss = compute.as_ref().is_some_and(|l| l.is_loss());
            (0..tops.len())
                .map(|j| if is_loss && j == 0 { 1.0 } else { 0.0 })
                .collect()
        };
        let n_params = compute.as_ref().map_or(0, |l| l.params().len());
        if param.param.len() > n_params {
            return Err(Error::SpecCount {
                layer: name,
                what: "param specs",
                given: param.param.len(),
                expected: n_params,
            });
        }
        if !param.propagate_down.is_empty() && param.propagate_down.len() != bottoms.len() {
            return Err(Error::SpecCount {
                layer: name,
                what: "propagate_down values",
                given: param.propagate_down.len(),
                expected: bottoms.len(),
            });
        }
        let is_batch_norm = layer_type == "BatchNorm";
        let param_specs = (0..n_params)
            .map(|i| match param.param.get(i) {
                Some(spec) => (spec.lr_mult(), spec.decay_mult()),
                // BatchNormLayer::LayerSetUp adds `param { lr_mult: 0 }` for each statistics blob.
                None if is_batch_norm => (0.0, 1.0),
                None => (1.0, 1.0),
            })
            .collect::<Vec<_>>();
        if is_batch_norm && param_specs.iter().any(|&(lr, _)| lr != 0.0) {
            return Err(layer_error(LayerError::Param(
                "cannot configure batch normalization statistics as layer parameters (lr_mult must be 0)".into(),
            )));
        }
        // Caffe's name index keeps the last layer of a name; weight loading follows it.
        self.layer_index.insert(name.clone(), self.slots.len());
        self.slots.push(Slot {
            info: LayerInfo {
                name,
                layer_type,
                bottoms: param.bottom.clone(),
                tops: top_names,
                loss_weights,
            },
            bottoms,
            tops,
            compute,
            learn_specs: param_specs.clone(),
            param_specs,
            propagate_down: param.propagate_down.clone(),
            need_backward: false,
            bottom_need_backward: Vec::new(),
            param_diffs: Vec::new(),
            param_owners: vec![None; n_params],
        });
        Ok(())
    }

    /// Caffe's `Net::AppendParam` for named parameters: the first blob of a name owns it, later ones share it. Shapes
    /// must agree (or only the counts, with `share_mode: PERMISSIVE`); an explicit `lr_mult` / `decay_mult` of a
    /// sharer sets the owner's when the owner left it unset, and must match it otherwise.
    fn resolve_shared_params(&mut self, layers: &[LayerParameter]) -> Result<(), Error> {
        use caffe_proto::param_spec::DimCheckMode;
        // name -> (slot, blob, lr_mult given, decay_mult given)
        let mut owners: HashMap<&str, (usize, usize, bool, bool)> = HashMap::new();
        for (s, layer) in layers.iter().enumerate() {
            for (index, spec) in layer.param.iter().enumerate() {
                let name = spec.name();
                if name.is_empty() {
                    continue;
                }
                let Some(&(o, j, has_lr, has_decay)) = owners.get(name) else {
                    owners.insert(name, (s, index, spec.lr_mult.is_some(), spec.decay_mult.is_some()));
                    continue;
                };
                let owner_shape = self.slots[o].compute.as_ref().map_or(&[][..], |l| l.params())[j]
                    .shape()
                    .to_vec();
                let shape = self.slots[s].compute.as_ref().map_or(&[][..], |l| l.params())[index]
                    .shape()
                    .to_vec();
                let permissive = spec.share_mode() == DimCheckMode::Permissive;
                let compatible = if permissive {
                    shape.iter().product::<usize>() == owner_shape.iter().product::<usize>()
                } else {
                    shape == owner_shape
                };
                let owner_name = self.slots[o].info.name.clone();
                let error = |what: String| Error::SharedParam {
                    layer: layer.name().to_string(),
                    index,
                    name: name.to_string(),
                    other: owner_name.clone(),
                    what,
                };
                if !compatible {
                    return Err(error(format!(
                        "its shape {shape:?} does not match the owner's {owner_shape:?}{}",
                        if permissive { " in count" } else { "" }
                    )));
                }
                let (own_lr, own_decay) = self.slots[o].learn_specs[j];
                let mut updated = (own_lr, own_decay, has_lr, has_decay);
                if let Some(lr) = spec.lr_mult {
                    if has_lr && lr != own_lr {
                        return Err(error(format!("lr_mult {lr} differs from the owner's {own_lr}")));
                    }
                    (updated.0, updated.2) = (lr, true);
                }
                if let Some(decay) = spec.decay_mult {
                    if has_decay && decay != own_decay {
                        return Err(error(format!(
                            "decay_mult {decay} differs from the owner's {own_decay}"
                        )));
                    }
                    (updated.1, updated.3) = (decay, true);
                }
                self.slots[o].learn_specs[j] = (updated.0, updated.1);
                owners.insert(name, (o, j, updated.2, updated.3));
                self.slots[s].param_owners[index] = Some((o, j));
            }
        }
        Ok(())
    }

    /// Copies each shared parameter's owner values into the blobs that share it (in Caffe they are one blob).
    fn sync_shared_params(&mut self) {
        for s in 0..self.slots.len() {
            for index in 0..self.slots[s].param_owners.len() {
                let Some((o, j)) = self.slots[s].param_owners[index] else {
                    continue;
                };
                let Some(owner) = self.slots[o].compute.as_ref() else {
                    continue;
                };
                let values = owner.params()[j].data().to_vec();
                if let Some(layer) = self.slots[s].compute.as_mut() {
                    layer.params_mut()[index].data_mut().copy_from_slice(&values);
                }
            }
        }
    }

    /// Adds the gradients of sharing blobs into their owners' diffs and clears them (Caffe's shared diff).
    fn gather_shared_diffs(&mut self) {
        for s in 0..self.slots.len() {
            for index in 0..self.slots[s].param_owners.len() {
                let Some((o, j)) = self.slots[s].param_owners[index] else {
                    continue;
                };
                let Some(diff) = self.slots[s].param_diffs.get_mut(index) else {
                    continue;
                };
                let values = diff.data().to_vec();
                diff.data_mut().fill(0.0);
                if let Some(owner) = self.slots[o].param_diffs.get_mut(j) {
                    owner.data_mut().iter_mut().zip(&values).for_each(|(d, v)| *d += v);
                }
            }
        }
    }

    /// Decides which layers and bottoms take part in backward, as Caffe's `Net::Init`: a layer needs backward when
    /// a bottom blob does or a parameter has `lr_mult != 0` (its tops then need backward); `propagate_down`
    /// overrides per bottom; layers whose tops reach no loss, or whose tops all skip backpropagation, are dropped;
    /// `force_backward` turns everything on where the layer allows it.
    fn plan_backward(&mut self) {
        let mut blob_need_backward = vec![false; self.blobs.len()];
        for slot in &mut self.slots {
            let mut need = false;
            slot.bottom_need_backward.clear();
            for (j, &b) in slot.bottoms.iter().enumerate() {
                need |= blob_need_backward[b];
                let bottom_need = slot.propagate_down.get(j).copied().unwrap_or(blob_need_backward[b]);
                slot.bottom_need_backward.push(bottom_need);
            }
            need |= slot.param_specs.iter().any(|&(lr, _)| lr != 0.0);
            slot.need_backward = need && slot.compute.is_some();
            if slot.need_backward {
                for &t in &slot.tops {
                    blob_need_backward[t] = true;
                }
            }
        }
        let mut under_loss = vec![false; self.blobs.len()];
        let mut skip_backprop = vec![false; self.blobs.len()];
        for slot in self.slots.iter_mut().rev() {
            let contributes = slot
                .tops
                .iter()
                .zip(&slot.info.loss_weights)
                .any(|(&t, &w)| w != 0.0 || under_loss[t]);
            let skip_propagate = slot.tops.iter().all(|&t| skip_backprop[t]);
            if slot.need_backward && skip_propagate {
                slot.need_backward = false;
                slot.bottom_need_backward.iter_mut().for_each(|b| *b = false);
            }
            if !contributes {
                slot.need_backward = false;
            }
            for (j, &b) in slot.bottoms.iter().enumerate() {
                if contributes {
                    under_loss[b] = true;
                } else {
                    slot.bottom_need_backward[j] = false;
                }
                if !slot.bottom_need_backward[j] {
                    skip_backprop[b] = true;
                }
            }
        }
        if self.force_backward {
            for slot in &mut self.slots {
                let Some(layer) = slot.compute.as_ref() else { continue };
                slot.need_backward = true;
                for (j, need) in slot.bottom_need_backward.iter_mut().enumerate() {
                    *need = *need || layer.allow_force_backward(j);
                }
            }
        }
    }

    /// Propagates shapes from the inputs through every layer, resizing the blobs.
    fn reshape(&mut self) -> Result<(), Error> {
        self.reshape_from(0)
    }

    /// Propagates shapes through the layers from index `start` on (after a layer whose top shape depends on its
    /// data, like Filter, changed it in forward).
    fn reshape_from(&mut self, start: usize) -> Result<(), Error> {
        for slot in self.slots.iter_mut().skip(start) {
            let Some(layer) = slot.compute.as_mut() else { continue };
            let bottom_shapes: Vec<Vec<usize>> = slot.bottoms.iter().map(|&b| self.blobs[b].shape().to_vec()).collect();
            let refs: Vec<&[usize]> = bottom_shapes.iter().map(Vec::as_slice).collect();
            let err = |source: LayerError| Error::Layer {
                layer: slot.info.name.clone(),
                layer_type: slot.info.layer_type.clone(),
                source,
            };
            let top_shapes = layer.reshape(&refs).map_err(err)?;
            // Internal contract of the Layer trait: one shape per top.
            assert_eq!(
                top_shapes.len(),
                slot.tops.len(),
                "layer {} returned a wrong number of top shapes",
                slot.info.name
            );
            for (j, (&top, shape)) in slot.tops.iter().zip(&top_shapes).enumerate() {
                if slot.bottoms.get(j) == Some(&top) && bottom_shapes[j] != *shape {
                    return Err(err(LayerError::Shape(format!(
                        "computed in place on '{}', but its output shape {shape:?} differs from the input {:?}",
                        slot.info.tops[j], bottom_shapes[j]
                    ))));
                }
                self.blobs[top].reshape(shape);
            }
        }
        Ok(())
    }

    /// The net's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The phase the net was built for.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The layers in execution order, with Caffe's inserted splits.
    pub fn layers(&self) -> impl Iterator<Item = &LayerInfo> {
        self.slots.iter().map(|s| &s.info)
    }

    /// The blobs the caller feeds, in layer order.
    pub fn inputs(&self) -> &[ExternalInput] {
        &self.inputs
    }

    /// Blobs no layer reads (the net's outputs), sorted by name as Caffe lists them.
    pub fn outputs(&self) -> Vec<&str> {
        self.outputs.iter().map(|&i| self.blob_names[i].as_str()).collect()
    }

    /// Every blob name, in creation order.
    pub fn blob_names(&self) -> impl Iterator<Item = &str> {
        self.blob_names.iter().map(String::as_str)
    }

    /// A blob's current contents (after the last forward), by name; `None` for a blob the last forward left
    /// unwritten (see [`NetOptions::fuse_pooling`]).
    pub fn blob(&self, name: &str) -> Option<&Tensor> {
        let &i = self.blob_index.get(name)?;
        (!self.unwritten.get(i).copied().unwrap_or(false)).then(|| &self.blobs[i])
    }

    /// The (layer slot, pooling slot) pairs of [`NetOptions::fuse_pooling`]: a layer with one top, not computed in
    /// place, not an output of the net and without loss weight, whose only reader is a Pooling layer with that top
    /// as its one bottom and one top of its own, without loss weight. Whether the pooling is MAX by 2x2 tiles, and
    /// whether the layer can compute it, is asked at each forward.
    fn pooling_fusions(&self) -> Vec<(usize, usize)> {
        let no_loss = |slot: &Slot| slot.info.loss_weights.iter().all(|&w| w == 0.0);
        let mut pairs = Vec::new();
        for (index, slot) in self.slots.iter().enumerate() {
            let [top] = slot.tops[..] else { continue };
            if slot.compute.is_none() || slot.bottoms.contains(&top) || self.outputs.contains(&top) || !no_loss(slot) {
                continue;
            }
            let mut readers = self.slots.iter().enumerate().filter(|(_, s)| s.bottoms.contains(&top));
            let (Some((pool, reader)), None) = (readers.next(), readers.next()) else {
                continue;
            };
            let plain = reader.bottoms == [top] && reader.tops.len() == 1 && reader.tops[0] != top;
            if reader.info.layer_type == "Pooling" && plain && no_loss(reader) {
                pairs.push((index, pool));
            }
        }
        pairs
    }

    /// A layer's parameter blobs (`None` when the net has no layer of that name).
    pub fn params(&self, layer: &str) -> Option<&[Tensor]> {
        let slot = &self.slots[*self.layer_index.get(layer)?];
        Some(slot.compute.as_ref().map_or(&[], |l| l.params()))
    }

    /// A layer's parameter blobs, writable (e.g. to prune them). Their shapes must not be changed. A blob shared by
    /// name with an earlier layer takes that owner's values again at the next forward: write the owner's.
    pub fn params_mut(&mut self, layer: &str) -> Option<&mut [Tensor]> {
        let index = *self.layer_index.get(layer)?;
        Some(self.slots[index].compute.as_mut().map_or(&mut [], |l| l.params_mut()))
    }

    /// Copies trained weights into the layers of the same name, as Caffe's `Net::CopyTrainedLayersFrom`: a source
    /// layer absent from the net is ignored; otherwise the blob count must equal the layer's and every blob must
    /// match its parameter's shape ([`shape_equals`], with Caffe's legacy 4-D rule) and carry as many values.
    /// Layers are checked before anything is copied into them, so a failing layer is left unchanged.
    pub fn copy_from(&mut self, layers: &[LayerWeights]) -> Result<CopyReport, Error> {
        let mut report = CopyReport::default();
        for source in layers {
            let Some(&index) = self.layer_index.get(&source.name) else {
                report.ignored.push(source.name.clone());
                continue;
            };
            copy_layer(&mut self.slots[index], &source.blobs)?;
            if !source.blobs.is_empty() {
                report.copied.push(source.name.clone());
            }
        }
        Ok(report)
    }

    /// Copies `data` (C order, `shape`) into input blob `blob`. A new shape reshapes the net on the next forward,
    /// like pycaffe's `blob.reshape` then `net.reshape`.
    pub fn set_input(&mut self, blob: &str, shape: &[usize], data: &[f32]) -> Result<(), Error> {
        let Some(position) = self.inputs.iter().position(|i| i.blob == blob) else {
            return Err(Error::NotAnInput {
                blob: blob.to_string(),
                inputs: self.inputs.iter().map(|i| i.blob.clone()).collect(),
            });
        };
        let expected: usize = shape.iter().product();
        if expected != data.len() {
            return Err(Error::InputLength {
                blob: blob.to_string(),
                shape: shape.to_vec(),
                expected,
                found: data.len(),
            });
        }
        let tensor = &mut self.blobs[self.input_blobs[position]];
        tensor.reshape(shape);
        tensor.data_mut().copy_from_slice(data);
        Ok(())
    }

    /// Runs every layer once on the current inputs and returns the total loss: the sum over tops of loss weight x
    /// the sum of the top's values (Caffe's `Net::Forward`). Shapes are propagated first, so inputs may change
    /// shape between calls.
    pub fn forward(&mut self) -> Result<f32, Error> {
        self.reshape()?;
        self.sync_shared_params();
        self.unwritten.clear();
        self.unwritten.resize(self.blobs.len(), false);
        let mut pooled_already = vec![false; self.slots.len()];
        let mut loss = 0.0f32;
        for index in 0..self.slots.len() {
            if pooled_already[index] {
                continue;
            }
            // The pooling this layer may compute itself (checked per forward: the shapes may have changed).
            let fused = self
                .fusions
                .iter()
                .find(|&&(layer, _)| layer == index)
                .map(|&(_, pool)| pool)
                .filter(|&pool| {
                    self.slots[pool]
                        .compute
                        .as_ref()
                        .is_some_and(|l| l.is_max_pool_2x2_tiles())
                })
                .map(|pool| (pool, self.slots[pool].tops[0]));
            let slot = &mut self.slots[index];
            let Some(layer) = slot.compute.as_mut() else { continue };
            let err = |source: LayerError| Error::Layer {
                layer: slot.info.name.clone(),
                layer_type: slot.info.layer_type.clone(),
                source,
            };
            if let Some((pool, pool_top)) = fused {
                let mut pooled = std::mem::take(&mut self.blobs[pool_top]);
                let inputs: Vec<&Tensor> = slot.bottoms.iter().map(|&b| &self.blobs[b]).collect();
                let done = layer.forward_max_pool_2x2(&inputs, &mut pooled);
                self.blobs[pool_top] = pooled;
                if done.map_err(err)? {
                    // Neither top carries a loss weight (see pooling_fusions), and neither changes shape.
                    self.unwritten[slot.tops[0]] = true;
                    pooled_already[pool] = true;
                    continue;
                }
            }
            let shapes_before: Vec<Vec<usize>> = slot.tops.iter().map(|&t| self.blobs[t].shape().to_vec()).collect();
            run_layer(layer.as_mut(), &slot.bottoms, &slot.tops, &mut self.blobs).map_err(err)?;
            for (&top, &weight) in slot.tops.iter().zip(&slot.info.loss_weights) {
                if weight != 0.0 {
                    loss += weight * self.blobs[top].data().iter().sum::<f32>();
                }
            }
            // A layer whose top shape depends on its data (Filter) reshapes its tops in forward, as Caffe's
            // reshape-before-forward would: the layers after it are reshaped again.
            let changed = slot
                .tops
                .iter()
                .zip(&shapes_before)
                .any(|(&t, before)| self.blobs[t].shape() != before.as_slice());
            if changed {
                self.reshape_from(index + 1)?;
            }
        }
        Ok(loss)
    }

    /// Sizes the blob and parameter diffs like their data; new or reshaped diffs start at zero (Caffe's blobs are
    /// zero-filled when created).
    fn ensure_diffs(&mut self) {
        self.diffs.resize_with(self.blobs.len(), Tensor::default);
        for (diff, blob) in self.diffs.iter_mut().zip(&self.blobs) {
            if diff.shape() != blob.shape() || diff.len() != blob.len() {
                *diff = Tensor::zeros(blob.shape());
            }
        }
        for slot in &mut self.slots {
            let Some(layer) = slot.compute.as_ref() else { continue };
            let params = layer.params();
            if slot.param_diffs.len() != params.len() {
                slot.param_diffs = params.iter().map(|p| Tensor::zeros(p.shape())).collect();
            }
            for (diff, param) in slot.param_diffs.iter_mut().zip(params) {
                if diff.shape() != param.shape() {
                    *diff = Tensor::zeros(param.shape());
                }
            }
        }
    }

    /// Caffe's `Net::Backward()` after a [`Net::forward`]: seeds each loss top's diff with its loss weight, then runs
    /// the layers from the last to the first, only those that need it, into the bottoms that need it. Parameter
    /// gradients are ADDED to the parameter diffs (clear them with [`Net::clear_param_diffs`]); blob diffs are
    /// overwritten.
    pub fn backward(&mut self) -> Result<(), Error> {
        self.backward_with(&[])
    }

    /// [`Net::backward`] with extra gradients on named blobs, as if a loss outside the net produced them (e.g.
    /// knowledge distillation on the logits): each is added to its blob's diff just before the last layer that
    /// writes the blob runs backward, when every consumer has contributed, so it flows into everything below.
    pub fn backward_with(&mut self, extra: &[(&str, &[f32])]) -> Result<(), Error> {
        if let Some(blob) = self.unwritten.iter().position(|&u| u) {
            return Err(Error::ForwardOnly {
                blob: self.blob_names[blob].clone(),
            });
        }
        self.ensure_diffs();
        let mut pending = Vec::with_capacity(extra.len());
        for &(name, gradient) in extra {
            let blob = self.blob_index.get(name).copied().ok_or_else(|| Error::ExtraGradient {
                blob: name.to_string(),
                reason: "the net has no such blob".into(),
            })?;
            if gradient.len() != self.blobs[blob].len() {
                return Err(Error::ExtraGradient {
                    blob: name.to_string(),
                    reason: format!("{} values for a blob of {}", gradient.len(), self.blobs[blob].len()),
                });
            }
            let producer = self.slots.iter().rposition(|slot| slot.tops.contains(&blob));
            pending.push((blob, gradient, producer));
        }
        for slot in &self.slots {
            for (&top, &weight) in slot.tops.iter().zip(&slot.info.loss_weights) {
                if weight != 0.0 {
                    self.diffs[top].data_mut().fill(weight);
                }
            }
        }
        let force = self.force_backward;
        for (index, slot) in self.slots.iter_mut().enumerate().rev() {
            for &(blob, gradient, _) in pending.iter().filter(|p| p.2 == Some(index)) {
                for (d, g) in self.diffs[blob].data_mut().iter_mut().zip(gradient) {
                    *d += g;
                }
            }
            if !slot.need_backward {
                continue;
            }
            let Some(layer) = slot.compute.as_mut() else { continue };
            let mut bottom_diffs: Vec<Tensor> = slot
                .bottoms
                .iter()
                .zip(&slot.bottom_need_backward)
                .map(|(&b, &need)| {
                    if need {
                        std::mem::take(&mut self.diffs[b])
                    } else {
                        Tensor::default()
                    }
                })
                .collect();
            // A top computed in place shares its diff with the bottom: the layer reads a copy and overwrites the blob.
            let in_place_copies: Vec<Option<Tensor>> = slot
                .tops
                .iter()
                .map(|t| {
                    let j = slot.bottoms.iter().position(|b| b == t)?;
                    slot.bottom_need_backward[j].then(|| bottom_diffs[j].clone())
                })
                .collect();
            let top_diffs: Vec<&Tensor> = slot
                .tops
                .iter()
                .zip(&in_place_copies)
                .map(|(&t, copy)| copy.as_ref().unwrap_or(&self.diffs[t]))
                .collect();
            let tops: Vec<&Tensor> = slot.tops.iter().map(|&t| &self.blobs[t]).collect();
            let bottoms: Vec<&Tensor> = slot.bottoms.iter().map(|&b| &self.blobs[b]).collect();
            let param_propagate_down: Vec<bool> = slot.param_specs.iter().map(|&(lr, _)| force || lr != 0.0).collect();
            let result = layer.backward(crate::layers::Backward {
                tops: &tops,
                top_diffs: &top_diffs,
                bottoms: &bottoms,
                propagate_down: &slot.bottom_need_backward,
                bottom_diffs: &mut bottom_diffs,
                param_propagate_down: &param_propagate_down,
                param_diffs: &mut slot.param_diffs,
            });
            for ((&b, &need), diff) in slot.bottoms.iter().zip(&slot.bottom_need_backward).zip(bottom_diffs) {
                if need {
                    self.diffs[b] = diff;
                }
            }
            result.map_err(|source| Error::Layer {
                layer: slot.info.name.clone(),
                layer_type: slot.info.layer_type.clone(),
                source,
            })?;
        }
        self.gather_shared_diffs();
        Ok(())
    }

    /// [`Net::forward`] then [`Net::backward`]; returns the loss (Caffe's `ForwardBackward`).
    pub fn forward_backward(&mut self) -> Result<f32, Error> {
        let loss = self.forward()?;
        self.backward()?;
        Ok(loss)
    }

    /// Zeroes every parameter diff (Caffe's `ClearParamDiffs`).
    pub fn clear_param_diffs(&mut self) {
        self.ensure_diffs();
        for slot in &mut self.slots {
            for diff in &mut slot.param_diffs {
                diff.data_mut().fill(0.0);
            }
        }
    }

    /// The learnable parameters in Caffe's `learnable_params()` order (layers in order, then their blobs), with
    /// their ParamSpec multipliers and gradients. A blob shared by `param { name }` appears once, at its owner (the
    /// first layer naming it), with the gradients of every layer using it; the sharers take the owner's values at the
    /// next forward.
    pub fn learnable_params_mut(&mut self) -> Vec<LearnableParam<'_>> {
        self.ensure_diffs();
        let mut out = Vec::new();
        for slot in &mut self.slots {
            let Some(layer) = slot.compute.as_mut() else { continue };
            let name = slot.info.name.as_str();
            for (index, (((data, diff), &(lr_mult, decay_mult)), owner)) in layer
                .params_mut()
                .iter_mut()
                .zip(slot.param_diffs.iter_mut())
                .zip(&slot.learn_specs)
                .zip(&slot.param_owners)
                .enumerate()
            {
                if owner.is_some() {
                    // A shared blob is learned through its owner (Caffe's learnable_params() lists owners only).
                    continue;
                }
                out.push(LearnableParam {
                    layer: name,
                    index,
                    lr_mult,
                    decay_mult,
                    data,
                    diff,
                });
            }
        }
        out
    }

    /// A blob's diff after [`Net::backward`], by name (`None` for an unknown name or before the first backward).
    pub fn blob_diff(&self, name: &str) -> Option<&Tensor> {
        self.blob_index.get(name).and_then(|&i| self.diffs.get(i))
    }

    /// A layer's parameter diffs (`None` when the net has no layer of that name; empty before the first backward).
    pub fn param_diffs(&self, layer: &str) -> Option<&[Tensor]> {
        Some(&self.slots[*self.layer_index.get(layer)?].param_diffs)
    }

    /// Whether Caffe would run the backward pass of layer `layer` (its `layer_need_backward`), and for each bottom
    /// whether its diff is computed (`bottom_need_backward`). `None` for an unknown layer name.
    pub fn layer_needs_backward(&self, layer: &str) -> Option<(bool, &[bool])> {
        let slot = &self.slots[*self.layer_index.get(layer)?];
        Some((slot.need_backward, &slot.bottom_need_backward))
    }
}

/// Runs one layer, moving its tops out of the blob list for the call; in-place tops go through
/// [`Layer::forward_in_place`] or, if the layer cannot work in place, through a copy of the bottom.
fn run_layer(layer: &mut dyn Layer, bottoms: &[usize], tops: &[usize], blobs: &mut [Tensor]) -> Result<(), LayerError> {
    let in_place = tops.iter().any(|t| bottoms.contains(t));
    if in_place && tops.len() == 1 && bottoms[0] == tops[0] && !bottoms[1..].contains(&tops[0]) {
        let mut data = std::mem::take(&mut blobs[tops[0]]);
        let others: Vec<&Tensor> = bottoms[1..].iter().map(|&b| &blobs[b]).collect();
        let result = match layer.forward_in_place(&mut data, &others) {
            Ok(true) => Ok(()),
            Ok(false) => {
                let input = data.clone();
                let mut all: Vec<&Tensor> = vec![&input];
                all.extend(others);
                layer.forward(&all, std::slice::from_mut(&mut data))
            }
            Err(e) => Err(e),
        };
        blobs[tops[0]] = data;
        return result;
    }
    // Bottoms that are also tops are copied before the tops are taken out.
    let copies: Vec<Option<Tensor>> = bottoms
        .iter()
        .map(|b| tops.contains(b).then(|| blobs[*b].clone()))
        .collect();
    let mut outputs: Vec<Tensor> = tops.iter().map(|&t| std::mem::take(&mut blobs[t])).collect();
    let inputs: Vec<&Tensor> = bottoms
        .iter()
        .zip(&copies)
        .map(|(&b, copy)| copy.as_ref().unwrap_or(&blobs[b]))
        .collect();
    let result = layer.forward(&inputs, &mut outputs);
    for (&t, tensor) in tops.iter().zip(outputs) {
        blobs[t] = tensor;
    }
    result
}

/// Checks `blobs` against a layer's parameters, then copies them in.
fn copy_layer(slot: &mut Slot, blobs: &[WeightBlob]) -> Result<(), Error> {
    let name = &slot.info.name;
    let params: &mut [Tensor] = slot.compute.as_mut().map_or(&mut [], |l| l.params_mut());
    if params.len() != blobs.len() {
        return Err(Error::WeightCount {
            layer: name.clone(),
            expected: params.len(),
            found: blobs.len(),
        });
    }
    for (index, (param, blob)) in params.iter().zip(blobs).enumerate() {
        if !shape_equals(param.shape(), &blob.shape, blob.legacy) {
            return Err(Error::WeightShape {
                layer: name.clone(),
                index,
                expected: param.shape().to_vec(),
                found: blob.shape.clone(),
                legacy: blob.legacy,
            });
        }
        if blob.data.len() != param.len() {
            return Err(Error::WeightLength {
                layer: name.clone(),
                index,
                shape: blob.shape.clone(),
                expected: param.len(),
                found: blob.data.len(),
            });
        }
    }
    for (param, blob) in params.iter_mut().zip(blobs) {
        param.data_mut().copy_from_slice(&blob.data);
    }
    Ok(())
}
