//! Errors of net construction, weight loading and the forward pass.

use std::fmt;

/// Errors building a net, loading weights into it or running it. Every variant names the layer (and blob) at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Backward after a forward that left a blob unwritten ([`crate::NetOptions::fuse_pooling`]): a gradient
    /// needs every top of the forward.
    #[error(
        "the last forward left blob '{blob}' unwritten (NetOptions::fuse_pooling, for forward passes only); build \
         the net without it to run backward"
    )]
    ForwardOnly {
        /// The first blob left unwritten.
        blob: String,
    },
    /// The engine only reads the modern `layer` field; V1 `layers` must be upgraded first (Caffe's
    /// `upgrade_net_proto_*`, or `caffemodel::upgrade::upgrade_net`).
    #[error(
        "the net uses the legacy V1 `layers` field ({count} layers); upgrade it to `layer` first \
         (caffemodel::upgrade::upgrade_net or caffe-convert --upgrade)"
    )]
    LegacyLayers {
        /// Number of V1 layers found.
        count: usize,
    },
    /// The legacy top-level `input:` / `input_dim:` / `input_shape:` fields must be upgraded to an `Input` layer
    /// first, as Caffe's reader does before building a net.
    #[error(
        "the net uses the legacy top-level `input` fields (inputs {inputs:?}); upgrade them to an Input layer first \
         (caffemodel::upgrade::upgrade_net or caffe-convert --upgrade)"
    )]
    LegacyInputs {
        /// The legacy input blob names.
        inputs: Vec<String>,
    },
    /// A layer may restrict itself with `include` rules or with `exclude` rules, not both (Caffe's FilterNet).
    #[error("layer '{layer}': specify either include rules or exclude rules, not both")]
    IncludeAndExclude {
        /// The layer.
        layer: String,
    },
    /// Every bottom must name a blob produced by an earlier layer of the (filtered) net.
    #[error("layer '{layer}': unknown bottom blob '{bottom}' (bottom index {index}); no earlier layer produces it")]
    MissingBottom {
        /// The consuming layer.
        layer: String,
        /// The bottom blob name.
        bottom: String,
        /// Its position among the layer's bottoms.
        index: usize,
    },
    /// A blob name may be produced only once, except by an in-place layer (top j == bottom j).
    #[error("layer '{layer}': top blob '{top}' is already produced by an earlier layer and this is not in place")]
    DuplicateTop {
        /// The layer producing the blob a second time.
        layer: String,
        /// The blob name.
        top: String,
    },
    /// A layer type the engine does not implement.
    #[error("layer '{layer}': unsupported layer type '{layer_type}'")]
    UnsupportedLayer {
        /// The layer.
        layer: String,
        /// Its `type`.
        layer_type: String,
    },
    /// A layer's parameters or its bottom shapes are invalid, or its forward pass met invalid data.
    #[error("layer '{layer}' ({layer_type}): {source}")]
    Layer {
        /// The layer.
        layer: String,
        /// Its `type`.
        layer_type: String,
        /// What is wrong.
        source: LayerError,
    },
    /// A data layer's top shape is not fully known from its parameters and was not given in
    /// [`NetOptions::input_shapes`](crate::NetOptions::input_shapes).
    #[error(
        "layer '{layer}' ({layer_type}): the shape of its top '{blob}' is not known from its parameters \
         (known: {}); give it in NetOptions::input_shapes",
        DisplayDims(known)
    )]
    MissingInputShape {
        /// The data layer.
        layer: String,
        /// Its `type`.
        layer_type: String,
        /// The top blob.
        blob: String,
        /// The dimensions known from the parameters (`None` where unknown), or `None` when even the rank is unknown.
        known: Option<Vec<Option<usize>>>,
    },
    /// A shape in [`NetOptions::input_shapes`](crate::NetOptions::input_shapes) names no input blob.
    #[error("input shape given for '{blob}', which is not an input of the net (inputs: {inputs:?})")]
    NotAnInput {
        /// The name given.
        blob: String,
        /// The net's input blob names.
        inputs: Vec<String>,
    },
    /// [`Net::set_input`](crate::Net::set_input) data must hold exactly as many values as the shape describes.
    #[error("input '{blob}': shape {shape:?} holds {expected} values but {found} were given")]
    InputLength {
        /// The input blob.
        blob: String,
        /// The shape given.
        shape: Vec<usize>,
        /// Product of the shape.
        expected: usize,
        /// Length of the data given.
        found: usize,
    },
    /// A parameter shared by name (`param { name: ... }`) does not fit its owner (Caffe's `Net::AppendParam` checks).
    #[error("layer '{layer}': parameter {index} shares '{name}' with layer '{other}', but {what}")]
    SharedParam {
        /// The layer sharing a parameter.
        layer: String,
        /// The parameter index within it.
        index: usize,
        /// The ParamSpec name.
        name: String,
        /// The earlier layer owning that name.
        other: String,
        /// What does not match.
        what: String,
    },
    /// A layer gives more `param` specs than it has parameter blobs, or a `propagate_down` list whose length is not
    /// its number of bottoms.
    #[error("layer '{layer}': {what}: {given} given for {expected}")]
    SpecCount {
        /// The layer.
        layer: String,
        /// What is counted (`param specs`, `propagate_down values`).
        what: &'static str,
        /// How many were given.
        given: usize,
        /// How many the layer has.
        expected: usize,
    },
    /// A source layer's number of blobs must equal the net layer's number of parameter blobs
    /// (Caffe's CopyTrainedLayersFrom).
    #[error("layer '{layer}': incompatible number of blobs: the net layer has {expected}, the source has {found}")]
    WeightCount {
        /// The layer.
        layer: String,
        /// Parameter blobs of the net layer.
        expected: usize,
        /// Blobs in the source.
        found: usize,
    },
    /// An extra gradient given to [`crate::Net::backward_with`] must name a blob of the net and hold one value per
    /// element.
    #[error("extra gradient for blob '{blob}': {reason}")]
    ExtraGradient {
        /// The blob named.
        blob: String,
        /// What is wrong.
        reason: String,
    },
    /// A source blob's shape must equal the parameter's shape, or, for a legacy 4-D source shape, equal it once the
    /// parameter shape is padded on the left with 1s to 4-D (Caffe's Blob::ShapeEquals).
    #[error(
        "layer '{layer}': cannot copy parameter {index}: shape mismatch; source shape {}{}, net shape {}",
        DisplayShape(found), if *legacy { " (legacy num/channels/height/width)" } else { "" }, DisplayUsize(expected)
    )]
    WeightShape {
        /// The layer.
        layer: String,
        /// Index of the parameter blob.
        index: usize,
        /// The net's parameter shape.
        expected: Vec<usize>,
        /// The source shape.
        found: Vec<i64>,
        /// Whether the source shape is a legacy 4-D one.
        legacy: bool,
    },
    /// A source blob must carry exactly as many values as its shape describes.
    #[error(
        "layer '{layer}': parameter {index} has shape {} ({expected} values) but {found} values",
        DisplayShape(shape)
    )]
    WeightLength {
        /// The layer.
        layer: String,
        /// Index of the parameter blob.
        index: usize,
        /// The source shape.
        shape: Vec<i64>,
        /// Values the shape describes.
        expected: usize,
        /// Values given.
        found: usize,
    },
}

/// What is wrong inside one layer; [`Error::Layer`] adds the layer's name and type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LayerError {
    /// A parameter of the layer is out of range or inconsistent with another (e.g. a zero kernel, a group that does
    /// not divide the channels, coefficients that do not match the bottoms).
    #[error("invalid parameter: {0}")]
    Param(String),
    /// The number of bottoms or tops is not what the layer type takes.
    #[error("{0}")]
    Arity(String),
    /// The bottom shapes are incompatible with the parameters or with each other (e.g. input channels that differ
    /// from the weights', concatenated blobs that differ off the concat axis).
    #[error("bad bottom shape: {0}")]
    Shape(String),
    /// The data met during forward is invalid (e.g. a label outside [0, classes)).
    #[error("invalid data: {0}")]
    Data(String),
    /// The layer cannot do what is asked (e.g. a backward pass it does not have, or into its label bottom).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A file the layer writes (HDF5Output) could not be written; the message names it.
    #[error("{0}")]
    Output(String),
}

/// Formats a shape as `[a, b, c]`.
struct DisplayShape<'a>(&'a [i64]);
impl fmt::Display for DisplayShape<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Formats a shape as `[a, b, c]`.
struct DisplayUsize<'a>(&'a [usize]);
impl fmt::Display for DisplayUsize<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Formats partially known dimensions as `[100, ?, ?, ?]`, or `nothing` when the rank is unknown too.
struct DisplayDims<'a>(&'a Option<Vec<Option<usize>>>);
impl fmt::Display for DisplayDims<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("nothing"),
            Some(dims) => {
                let parts: Vec<String> = dims
                    .iter()
                    .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
                    .collect();
                write!(f, "[{}]", parts.join(", "))
            }
        }
    }
}

/// Result of layer-internal checks.
pub type LayerResult<T> = std::result::Result<T, LayerError>;
