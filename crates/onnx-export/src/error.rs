//! What can go wrong in an export.

/// Why a net could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A layer ONNX cannot express exactly (or that this exporter does not translate): never dropped silently.
    #[error("layer '{layer}' ({kind}): {why}")]
    Layer {
        /// The layer's name.
        layer: String,
        /// The layer's type.
        kind: String,
        /// What stands in the way.
        why: String,
    },
    /// The requested operator set is outside the range the exporter writes (13: single-axis Softmax, Split with a
    /// `split` input; up to 21, the newest it was checked against).
    #[error("opset {0} is not supported: choose 13 to 21 (default 17)")]
    Opset(i64),
    /// Every blob the net computes is read by another layer or silenced: an ONNX graph needs an output.
    #[error("the net has no output: every blob is consumed (e.g. by Silence)")]
    NoOutputs,
    /// The net itself could not be built (unknown layer type, shapes that do not fit, weights that do not match).
    #[error(transparent)]
    Net(#[from] engine::Error),
    /// Writing the model (or its external data) failed.
    #[error(transparent)]
    Output(#[from] outfile::OutputError),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl ExportError {
    pub(crate) fn layer(layer: &str, kind: &str, why: impl Into<String>) -> Self {
        Self::Layer {
            layer: layer.to_string(),
            kind: kind.to_string(),
            why: why.into(),
        }
    }
}
