//! The layers: one type per Caffe layer type, built from its `LayerParameter`.
//!
//! A layer is told its bottom shapes ([`Layer::reshape`], which validates them, sizes its parameter blobs on the
//! first call and returns the top shapes), then computes its tops ([`Layer::forward`]) and, when training, the
//! gradients ([`Layer::backward`]: top diffs to bottom diffs, parameter gradients added to the parameter diffs the
//! net owns). Layers keep what backward needs from forward as fields (dropout mask, batch-norm normalized values,
//! eltwise argmax, the input of an in-place Scale / PReLU); max pooling recomputes its argmax from the unchanged
//! bottom, so the forward pass stays as fast as before.

use caffe_proto::{LayerParameter, Phase};

use crate::error::{LayerError, LayerResult};
use crate::Tensor;

mod activation;
mod conv;
mod conv_nd;
mod eltwise;
#[cfg(test)]
mod gradcheck;
mod inner_product;
mod loss;
mod losses;
mod lrn;
mod misc;
mod neuron;
mod norm;
mod output;
mod pooling;
mod recurrent;
mod softmax;
mod spatial;
mod structure;

/// One Caffe layer's computation (CPU, f32): forward, and backward for training.
pub trait Layer: Send {
    /// The Caffe type name (`"Convolution"`, ...).
    fn type_name(&self) -> &'static str;

    /// The learnable blobs in Caffe's order (e.g. weights then bias); empty for layers without parameters.
    fn params(&self) -> &[Tensor] {
        &[]
    }

    /// The learnable blobs, writable (weight loading, pruning).
    fn params_mut(&mut self) -> &mut [Tensor] {
        &mut []
    }

    /// Checks the bottom shapes against the parameters and each other, sizes the parameter blobs when first called,
    /// and returns the top shapes.
    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>>;

    /// Computes the tops from the bottoms. The tops have the shapes [`Layer::reshape`] returned for these bottoms;
    /// their previous contents are unspecified and must be overwritten. A layer whose top shape depends on the
    /// bottom data (Filter: the selected items) may reshape its tops here; the net then reshapes the layers after it.
    fn forward(&mut self, bottoms: &[&Tensor], tops: &mut [Tensor]) -> LayerResult<()>;

    /// Computes top 0 in place when it is the same blob as bottom 0 (Caffe's in-place layers, `top == bottom`):
    /// `data` holds bottom 0 on entry and top 0 on return, `other_bottoms` are bottoms 1.. . Returns `false` when the
    /// layer cannot work in place; the net then gives it a copy of the bottom instead.
    fn forward_in_place(&mut self, _data: &mut Tensor, _other_bottoms: &[&Tensor]) -> LayerResult<bool> {
        Ok(false)
    }

    /// True for loss layers, whose top 0 gets loss weight 1 unless `loss_weight` says otherwise (Caffe's
    /// LossLayer).
    fn is_loss(&self) -> bool {
        false
    }

    /// Caffe's `Backward_cpu`: from the top diffs (and the data of the last forward) computes the diffs of the
    /// bottoms whose `propagate_down` is set (overwriting them) and ADDS the parameter gradients to the parameter
    /// diffs whose `param_propagate_down` is set. For a top computed in place, `bottoms` holds the top's data (as in
    /// Caffe, where the two are one blob); layers that need their input keep it from forward themselves.
    fn backward(&mut self, _ctx: Backward<'_>) -> LayerResult<()> {
        Err(LayerError::Unsupported(format!(
            "{} has no backward pass",
            self.type_name()
        )))
    }

    /// Caffe's `AllowForceBackward`: whether `force_backward` may ask for the diff of bottom `bottom` (false for the
    /// labels of loss layers).
    fn allow_force_backward(&self, _bottom: usize) -> bool {
        true
    }

    /// Whether this layer's forward is, as of the last reshape, exactly MAX pooling of its one bottom by 2x2 windows
    /// that tile it (kernel 2, stride 2, no padding, even sizes) into one top: a pooling the layer below may compute
    /// itself (see [`Layer::forward_max_pool_2x2`]).
    fn is_max_pool_2x2_tiles(&self) -> bool {
        false
    }

    /// Forward followed by MAX pooling of top 0 by 2x2 tiling windows, written to `pooled` (shaped as that pooling's
    /// top) while each image's output is still in cache; the layer's own top is not written. The bits are those of
    /// [`Layer::forward`] then the pooling layer's forward. Returns `false`, having written nothing, when the layer
    /// has no such path for its current weights and shapes.
    fn forward_max_pool_2x2(&mut self, _bottoms: &[&Tensor], _pooled: &mut Tensor) -> LayerResult<bool> {
        Ok(false)
    }
}

/// What [`Layer::backward`] reads and writes. All slices are in the layer's bottom / top / parameter order.
pub struct Backward<'a> {
    /// Top data of the last forward.
    pub tops: &'a [&'a Tensor],
    /// Top diffs (the gradient of the loss with respect to each top).
    pub top_diffs: &'a [&'a Tensor],
    /// Bottom data of the last forward (for an in-place top, its output).
    pub bottoms: &'a [&'a Tensor],
    /// Which bottoms need their diff.
    pub propagate_down: &'a [bool],
    /// Bottom diffs, shaped as the bottoms, to overwrite where `propagate_down` is set (others may be empty).
    pub bottom_diffs: &'a mut [Tensor],
    /// Which parameter blobs need their gradient (Caffe's `param_propagate_down`: `lr_mult != 0`).
    pub param_propagate_down: &'a [bool],
    /// Parameter diffs, shaped as [`Layer::params`], to which the gradients are added.
    pub param_diffs: &'a mut [Tensor],
}

/// Layer types whose tops are read from outside the net (files, memory): the net makes their tops inputs the caller
/// feeds, and builds no [`Layer`] for them.
pub(crate) const DATA_SOURCE_TYPES: &[&str] = &[
    "Input",
    "Data",
    "ImageData",
    "HDF5Data",
    "MemoryData",
    "WindowData",
    "DummyData",
];

/// How many bottoms and tops a layer type takes (inclusive bounds; `usize::MAX` for no upper bound).
struct Arity {
    bottoms: (usize, usize),
    tops: (usize, usize),
}

const fn arity(bottoms: (usize, usize), tops: (usize, usize)) -> Arity {
    Arity { bottoms, tops }
}

const MANY: usize = usize::MAX;

/// Every compute layer type `create` builds, in the order of its table (data-source types are in
/// [`crate::DATA_LAYER_TYPES`]). The README lists these; a test keeps both in step with the table.
pub const LAYER_TYPES: &[&str] = &[
    "Convolution",
    "Deconvolution",
    "Pooling",
    "InnerProduct",
    "ReLU",
    "PReLU",
    "Sigmoid",
    "TanH",
    "Dropout",
    "Softmax",
    "SoftmaxWithLoss",
    "Accuracy",
    "EuclideanLoss",
    "LRN",
    "BatchNorm",
    "Scale",
    "Bias",
    "Eltwise",
    "Concat",
    "Slice",
    "Split",
    "Flatten",
    "Reshape",
    "Silence",
    "AbsVal",
    "BNLL",
    "Exp",
    "Log",
    "Power",
    "ELU",
    "Threshold",
    "Clip",
    "Tile",
    "ArgMax",
    "Reduction",
    "MVN",
    "Parameter",
    "BatchReindex",
    "Embed",
    "Crop",
    "ContrastiveLoss",
    "HingeLoss",
    "InfogainLoss",
    "MultinomialLogisticLoss",
    "SigmoidCrossEntropyLoss",
    "Im2col",
    "SPP",
    "LSTMUnit",
    "LSTM",
    "RNN",
    "Filter",
    "Swish",
    "HDF5Output",
];

/// Builds the layer for `param` (whose `type` is `layer_type`) in `phase`, after checking its bottom and top
/// counts. `Ok(None)` means the type is not implemented. Data-source types are the net's business, not this.
pub(crate) fn create(
    param: &LayerParameter,
    layer_type: &str,
    phase: Phase,
    n_bottoms: usize,
    n_tops: usize,
) -> LayerResult<Option<Box<dyn Layer>>> {
    // The table below is the list: a type missing from LAYER_TYPES is not built (its tests then fail).
    if !LAYER_TYPES.contains(&layer_type) {
        return Ok(None);
    }
    let (layer, arity): (Box<dyn Layer>, Arity) = match layer_type {
        "Convolution" => (
            Box::new(conv_nd::AnyConvolution::new(param, false)?),
            arity((1, MANY), (1, MANY)),
        ),
        "Deconvolution" => (
            Box::new(conv_nd::AnyConvolution::new(param, true)?),
            arity((1, MANY), (1, MANY)),
        ),
        "Pooling" => (
            Box::new(pooling::Pooling::new_in(param, n_tops, phase)?),
            arity((1, 1), (1, 2)),
        ),
        "InnerProduct" => (
            Box::new(inner_product::InnerProduct::new(param)?),
            arity((1, 1), (1, 1)),
        ),
        "ReLU" => (Box::new(activation::ReLU::new(param)), arity((1, 1), (1, 1))),
        "PReLU" => (Box::new(activation::PReLU::new(param)?), arity((1, 1), (1, 1))),
        "Sigmoid" => (Box::new(activation::Sigmoid), arity((1, 1), (1, 1))),
        "TanH" => (Box::new(activation::TanH), arity((1, 1), (1, 1))),
        "Dropout" => (Box::new(activation::Dropout::new(param, phase)?), arity((1, 1), (1, 1))),
        "Softmax" => (Box::new(softmax::Softmax::new(param)), arity((1, 1), (1, 1))),
        "SoftmaxWithLoss" => (
            Box::new(softmax::SoftmaxWithLoss::new(param, n_tops)),
            arity((2, 2), (1, 2)),
        ),
        "Accuracy" => (Box::new(loss::Accuracy::new(param, n_tops)?), arity((2, 2), (1, 2))),
        "EuclideanLoss" => (Box::new(loss::EuclideanLoss), arity((2, 2), (1, 1))),
        "LRN" => (Box::new(lrn::Lrn::new(param)?), arity((1, 1), (1, 1))),
        "BatchNorm" => (Box::new(norm::BatchNorm::new(param, phase)?), arity((1, 1), (1, 1))),
        "Scale" => (
            Box::new(norm::Scale::new(param, n_bottoms, phase)),
            arity((1, 2), (1, 1)),
        ),
        "Bias" => (Box::new(norm::Bias::new(param, n_bottoms)), arity((1, 2), (1, 1))),
        "Eltwise" => (
            Box::new(eltwise::Eltwise::new(param, n_bottoms)?),
            arity((2, MANY), (1, 1)),
        ),
        "Concat" => (Box::new(structure::Concat::new(param)), arity((1, MANY), (1, 1))),
        "Slice" => (Box::new(structure::Slice::new(param)), arity((1, 1), (1, MANY))),
        "Split" => (Box::new(structure::Split { tops: n_tops }), arity((1, 1), (1, MANY))),
        "Flatten" => (Box::new(structure::Flatten::new(param)), arity((1, 1), (1, 1))),
        "Reshape" => (Box::new(structure::Reshape::new(param)?), arity((1, 1), (1, 1))),
        "Silence" => (Box::new(structure::Silence), arity((1, MANY), (0, 0))),
        "AbsVal" => (Box::new(neuron::Neuron::new(neuron::AbsVal)), arity((1, 1), (1, 1))),
        "BNLL" => (Box::new(neuron::Neuron::new(neuron::Bnll)), arity((1, 1), (1, 1))),
        "Exp" => (
            Box::new(neuron::Neuron::new(neuron::Exp::new(param)?)),
            arity((1, 1), (1, 1)),
        ),
        "Log" => (
            Box::new(neuron::Neuron::new(neuron::Log::new(param)?)),
            arity((1, 1), (1, 1)),
        ),
        "Power" => (
            Box::new(neuron::Neuron::new(neuron::Power::new(param))),
            arity((1, 1), (1, 1)),
        ),
        "ELU" => (
            Box::new(neuron::Neuron::new(neuron::Elu::new(param))),
            arity((1, 1), (1, 1)),
        ),
        "Threshold" => (
            Box::new(neuron::Neuron::new(neuron::Threshold::new(param))),
            arity((1, 1), (1, 1)),
        ),
        "Clip" => (
            Box::new(neuron::Neuron::new(neuron::Clip::new(param)?)),
            arity((1, 1), (1, 1)),
        ),
        "Tile" => (Box::new(misc::Tile::new(param)?), arity((1, 1), (1, 1))),
        "ArgMax" => (Box::new(misc::ArgMax::new(param)?), arity((1, 1), (1, 1))),
        "Reduction" => (Box::new(misc::Reduction::new(param)), arity((1, 1), (1, 1))),
        "MVN" => (Box::new(misc::Mvn::new(param)?), arity((1, 1), (1, 1))),
        "Parameter" => (Box::new(misc::Parameter::new(param)?), arity((0, 0), (1, 1))),
        "BatchReindex" => (Box::new(misc::BatchReindex::new()), arity((2, 2), (1, 1))),
        "Embed" => (Box::new(misc::Embed::new(param)?), arity((1, 1), (1, 1))),
        "Crop" => (Box::new(misc::Crop::new(param)), arity((2, 2), (1, 1))),
        "ContrastiveLoss" => (Box::new(losses::ContrastiveLoss::new(param)), arity((3, 3), (1, 1))),
        "HingeLoss" => (Box::new(losses::HingeLoss::new(param)), arity((2, 2), (1, 1))),
        "InfogainLoss" => (
            Box::new(losses::InfogainLoss::new(param, n_bottoms)?),
            arity((2, 3), (1, 1)),
        ),
        "MultinomialLogisticLoss" => (Box::new(losses::MultinomialLogisticLoss::new()), arity((2, 2), (1, 1))),
        "SigmoidCrossEntropyLoss" => (
            Box::new(losses::SigmoidCrossEntropyLoss::new(param)),
            arity((2, 2), (1, 1)),
        ),
        "Im2col" => (Box::new(spatial::Im2col::new(param)?), arity((1, 1), (1, 1))),
        "SPP" => (Box::new(spatial::Spp::new(param)?), arity((1, 1), (1, 1))),
        "LSTMUnit" => (Box::new(recurrent::LstmUnit::new()), arity((3, 3), (2, 2))),
        "LSTM" => (
            Box::new(recurrent::Lstm::new(param, n_bottoms, n_tops)?),
            arity((2, 5), (1, 3)),
        ),
        "RNN" => (
            Box::new(recurrent::Rnn::new(param, n_bottoms, n_tops)?),
            arity((2, 4), (1, 2)),
        ),
        "Filter" => (Box::new(misc::Filter::new(n_bottoms)), arity((2, MANY), (1, MANY))),
        "Swish" => (
            Box::new(neuron::Neuron::new(neuron::Swish::new(param))),
            arity((1, 1), (1, 1)),
        ),
        "HDF5Output" => (Box::new(output::Hdf5Output::new(param)?), arity((2, 2), (0, 0))),
        _ => return Ok(None),
    };
    check_count("bottom", n_bottoms, arity.bottoms)?;
    check_count("top", n_tops, arity.tops)?;
    if layer_type == "Filter" && n_tops + 1 != n_bottoms {
        return Err(LayerError::Arity(format!(
            "takes one top per bottom besides the selector (the last bottom), got {n_bottoms} bottoms and {n_tops} tops"
        )));
    }
    if matches!(layer_type, "Convolution" | "Deconvolution") && n_bottoms != n_tops {
        return Err(LayerError::Arity(format!(
            "takes as many tops as bottoms (one output per input), got {n_bottoms} bottoms and {n_tops} tops"
        )));
    }
    Ok(Some(layer))
}

fn check_count(what: &str, found: usize, (min, max): (usize, usize)) -> LayerResult<()> {
    if found >= min && found <= max {
        return Ok(());
    }
    let expected = match (min, max) {
        (min, max) if min == max => format!("exactly {min}"),
        (min, MANY) => format!("at least {min}"),
        (min, max) => format!("{min} to {max}"),
    };
    Err(LayerError::Arity(format!(
        "takes {expected} {what} blob(s), got {found}"
    )))
}

/// Caffe's `CanonicalAxisIndex`: `axis` in `[-rank, rank)`, negative counting from the end.
pub(crate) fn canonical_axis(axis: i32, rank: usize, what: &str) -> LayerResult<usize> {
    let rank_i = rank as i64;
    let axis_i = axis as i64;
    if axis_i < -rank_i || axis_i >= rank_i {
        return Err(LayerError::Param(format!(
            "{what} {axis} is out of range for a {rank}-D blob (allowed: {} to {})",
            -rank_i,
            rank_i - 1
        )));
    }
    Ok(if axis_i < 0 {
        (axis_i + rank_i) as usize
    } else {
        axis_i as usize
    })
}

/// Product of `shape[start..end]` (Caffe's `count(start, end)`).
pub(crate) fn count(shape: &[usize], start: usize, end: usize) -> usize {
    shape[start..end].iter().product()
}

/// Checks that a layer got exactly `n` bottoms (the factory already did; reshape relies on it).
pub(crate) fn expect_bottoms(bottoms: &[&[usize]], n: usize) -> LayerResult<()> {
    if bottoms.len() != n {
        return Err(LayerError::Arity(format!(
            "takes {n} bottom blob(s), got {}",
            bottoms.len()
        )));
    }
    Ok(())
}

/// Sets a parameter blob's shape the first time and afterwards checks the shape is unchanged (a parameter blob's
/// shape is fixed once the net is built, as in Caffe; e.g. the input channels of a convolution may not change).
pub(crate) fn ensure_param_shape(
    param: &mut Tensor,
    shape: &[usize],
    initialized: bool,
    what: &str,
) -> LayerResult<()> {
    if !initialized {
        param.reshape(shape);
        return Ok(());
    }
    if param.shape() != shape {
        return Err(LayerError::Shape(format!(
            "input size incompatible with the {what}: it needs shape {:?} for these bottoms but has {:?}",
            shape,
            param.shape()
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod testing {
    //! Running a single layer on hand-made tensors.
    use super::*;

    /// A `LayerParameter` of the given type with `edit` applied.
    pub fn param(layer_type: &str, edit: impl FnOnce(&mut LayerParameter)) -> LayerParameter {
        let mut p = LayerParameter {
            name: Some("test".into()),
            r#type: Some(layer_type.into()),
            ..Default::default()
        };
        edit(&mut p);
        p
    }

    /// Reshapes and runs `layer` on `bottoms`, returning its tops.
    pub fn run(layer: &mut dyn Layer, bottoms: &[Tensor]) -> LayerResult<Vec<Tensor>> {
        let shapes: Vec<&[usize]> = bottoms.iter().map(|b| b.shape()).collect();
        let top_shapes = layer.reshape(&shapes)?;
        let mut tops: Vec<Tensor> = top_shapes.iter().map(|s| Tensor::zeros(s)).collect();
        let refs: Vec<&Tensor> = bottoms.iter().collect();
        layer.forward(&refs, &mut tops)?;
        Ok(tops)
    }

    /// Asserts two slices agree within `tol` absolute, with a readable message.
    pub fn assert_close(found: &[f32], expected: &[f32], tol: f32) {
        assert_eq!(found.len(), expected.len(), "lengths differ: {found:?} vs {expected:?}");
        for (i, (a, b)) in found.iter().zip(expected).enumerate() {
            assert!(
                (a - b).abs() <= tol,
                "element {i}: {a} vs expected {b}\nfound    {found:?}\nexpected {expected:?}"
            );
        }
    }
}

#[cfg(test)]
mod robustness {
    //! The layers added for "every Caffe layer" on arbitrary bottom shapes and data: reshape either refuses the
    //! shapes with an error or the layer runs forward and backward; nothing panics.
    use super::testing::param;
    use super::*;
    use crate::layers::gradcheck::uniform;
    use caffe_proto::*;

    fn cases() -> Vec<(LayerParameter, usize, usize)> {
        let filler = || {
            Some(FillerParameter {
                r#type: Some("uniform".into()),
                ..Default::default()
            })
        };
        vec![
            (param("AbsVal", |_| {}), 1, 1),
            (param("BNLL", |_| {}), 1, 1),
            (param("Exp", |_| {}), 1, 1),
            (param("Log", |_| {}), 1, 1),
            (
                param("Power", |l| {
                    l.power_param = Some(PowerParameter {
                        power: Some(0.5),
                        ..Default::default()
                    })
                }),
                1,
                1,
            ),
            (param("ELU", |_| {}), 1, 1),
            (param("Threshold", |_| {}), 1, 1),
            (
                param("Clip", |l| l.clip_param = Some(ClipParameter { min: -0.5, max: 0.5 })),
                1,
                1,
            ),
            (param("Swish", |_| {}), 1, 1),
            (
                param("Tile", |l| {
                    l.tile_param = Some(TileParameter {
                        axis: Some(-1),
                        tiles: Some(2),
                    })
                }),
                1,
                1,
            ),
            (
                param("ArgMax", |l| {
                    l.argmax_param = Some(ArgMaxParameter {
                        top_k: Some(2),
                        ..Default::default()
                    })
                }),
                1,
                1,
            ),
            (
                param("Reduction", |l| {
                    l.reduction_param = Some(ReductionParameter {
                        axis: Some(1),
                        ..Default::default()
                    })
                }),
                1,
                1,
            ),
            (param("MVN", |_| {}), 1, 1),
            (param("BatchReindex", |_| {}), 2, 1),
            (param("Filter", |_| {}), 2, 1),
            (
                param("Embed", |l| {
                    l.embed_param = Some(EmbedParameter {
                        num_output: Some(3),
                        input_dim: Some(4),
                        weight_filler: filler(),
                        ..Default::default()
                    })
                }),
                1,
                1,
            ),
            (param("Crop", |_| {}), 2, 1),
            (param("ContrastiveLoss", |_| {}), 3, 1),
            (param("HingeLoss", |_| {}), 2, 1),
            (param("InfogainLoss", |_| {}), 3, 1),
            (param("MultinomialLogisticLoss", |_| {}), 2, 1),
            (param("SigmoidCrossEntropyLoss", |_| {}), 2, 1),
            (
                param("Im2col", |l| {
                    l.convolution_param = Some(ConvolutionParameter {
                        kernel_size: vec![2],
                        ..Default::default()
                    })
                }),
                1,
                1,
            ),
            (
                param("SPP", |l| {
                    l.spp_param = Some(SppParameter {
                        pyramid_height: Some(2),
                        ..Default::default()
                    })
                }),
                1,
                1,
            ),
            (param("LSTMUnit", |_| {}), 3, 2),
            (
                param("LSTM", |l| {
                    l.recurrent_param = Some(RecurrentParameter {
                        num_output: Some(2),
                        weight_filler: filler(),
                        ..Default::default()
                    })
                }),
                2,
                1,
            ),
            (
                param("RNN", |l| {
                    l.recurrent_param = Some(RecurrentParameter {
                        num_output: Some(2),
                        weight_filler: filler(),
                        ..Default::default()
                    })
                }),
                2,
                1,
            ),
            (
                param("Convolution", |l| {
                    l.convolution_param = Some(ConvolutionParameter {
                        num_output: Some(2),
                        kernel_size: vec![2, 1, 2],
                        weight_filler: filler(),
                        ..Default::default()
                    })
                }),
                1,
                1,
            ),
            (
                param("Pooling", |l| {
                    l.pooling_param = Some(PoolingParameter {
                        pool: Some(pooling_parameter::PoolMethod::Stochastic as i32),
                        kernel_size: Some(2),
                        ..Default::default()
                    })
                }),
                1,
                1,
            ),
        ]
    }

    #[test]
    fn arbitrary_shapes_and_data_never_panic() {
        let shapes: Vec<Vec<usize>> = vec![
            vec![],
            vec![0],
            vec![1],
            vec![2],
            vec![1, 2],
            vec![1, 2, 2],
            vec![2, 1],
            vec![2, 3],
            vec![1, 2, 8],
            vec![2, 0, 3],
            vec![2, 3, 4],
            vec![2, 3, 3, 4],
            vec![2, 1, 1, 1],
            vec![2, 2, 3, 3, 2],
        ];
        let mut ran = std::collections::BTreeMap::new();
        for (p, n_bottoms, n_tops) in cases() {
            let shapes = &shapes;
            let combos: Vec<Vec<&Vec<usize>>> = match n_bottoms {
                1 => shapes.iter().map(|s| vec![s]).collect(),
                2 => shapes
                    .iter()
                    .flat_map(|a| shapes.iter().map(move |b| vec![a, b]))
                    .collect(),
                _ => shapes
                    .iter()
                    .flat_map(|a| {
                        shapes
                            .iter()
                            .flat_map(move |b| shapes.iter().map(move |c| vec![a, b, c]))
                    })
                    .collect(),
            };
            for (seed, combo) in combos.into_iter().enumerate() {
                for phase in [Phase::Train, Phase::Test] {
                    let mut layer = create(&p, p.r#type(), phase, n_bottoms, n_tops)
                        .unwrap_or_else(|e| panic!("{}: {e}", p.r#type()))
                        .unwrap();
                    let refs: Vec<&[usize]> = combo.iter().map(|s| s.as_slice()).collect();
                    let Ok(top_shapes) = layer.reshape(&refs) else { continue };
                    // Values in [-1, 3): some valid as indices and labels, some not.
                    let bottoms: Vec<Tensor> = combo
                        .iter()
                        .enumerate()
                        .map(|(i, s)| {
                            let mut t = uniform(s, -1.0, 3.0, (seed * 4 + i) as u64);
                            t.data_mut()
                                .iter_mut()
                                .for_each(|v| *v = if i > 0 { v.floor() } else { *v });
                            t
                        })
                        .collect();
                    let mut tops: Vec<Tensor> = top_shapes.iter().map(|s| Tensor::zeros(s)).collect();
                    let inputs: Vec<&Tensor> = bottoms.iter().collect();
                    if layer.forward(&inputs, &mut tops).is_err() {
                        continue;
                    }
                    *ran.entry(p.r#type().to_string()).or_insert(0) += 1;
                    let top_diffs: Vec<Tensor> = tops
                        .iter()
                        .map(|t| Tensor::new(t.shape(), vec![1.0; t.len()]))
                        .collect();
                    let mut bottom_diffs: Vec<Tensor> = bottoms.iter().map(|b| Tensor::zeros(b.shape())).collect();
                    let mut param_diffs: Vec<Tensor> =
                        layer.params().iter().map(|p| Tensor::zeros(p.shape())).collect();
                    let n_params = param_diffs.len();
                    let propagate: Vec<bool> = (0..n_bottoms).map(|j| layer.allow_force_backward(j)).collect();
                    let _ = layer.backward(Backward {
                        tops: &tops.iter().collect::<Vec<_>>(),
                        top_diffs: &top_diffs.iter().collect::<Vec<_>>(),
                        bottoms: &inputs,
                        propagate_down: &propagate,
                        bottom_diffs: &mut bottom_diffs,
                        param_propagate_down: &vec![true; n_params],
                        param_diffs: &mut param_diffs,
                    });
                }
            }
        }
        // Every layer ran on some shapes.
        assert_eq!(ran.len(), cases().len(), "layers that never ran forward: {ran:?}");
    }
}

#[cfg(test)]
mod registry_tests {
    use super::*;

    #[test]
    fn every_listed_type_is_built_and_no_other() {
        for &kind in LAYER_TYPES {
            let param = LayerParameter {
                r#type: Some(kind.into()),
                ..Default::default()
            };
            // Default parameters may be refused (num_output 0, ...), but never as an unknown type.
            let built = create(&param, kind, Phase::Test, 2, 1);
            assert!(!matches!(built, Ok(None)), "{kind} is listed but not built");
        }
        let mut sorted = LAYER_TYPES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), LAYER_TYPES.len(), "listed twice");
        for kind in ["Python", "Data", "Convolution3D", ""] {
            let param = LayerParameter::default();
            assert!(matches!(create(&param, kind, Phase::Test, 1, 1), Ok(None)), "{kind}");
        }
    }
}
