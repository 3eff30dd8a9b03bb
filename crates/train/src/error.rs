//! Errors of solver setup, data feeding, training steps, snapshots and restores.

use std::path::PathBuf;

/// Everything that can go wrong building or running a solver. Each message is one line naming the value at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `type` names no solver Caffe registers (names are case-sensitive, as in Caffe's registry).
    #[error("unknown solver type '{0}' (known: SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam)")]
    UnknownSolverType(String),
    /// Both the legacy `solver_type` enum and the `type` string are set (Caffe's UpgradeSolverType refuses this).
    #[error("solver_type ({legacy}) and type ('{given}') are both set; give only one")]
    BothSolverTypes {
        /// The legacy enum value, as Caffe's type name.
        legacy: &'static str,
        /// The `type` string.
        given: String,
    },
    /// The legacy `solver_type` field holds a number outside the enum.
    #[error("solver_type {0} is not a known SolverType enum value (0..=5)")]
    BadSolverTypeEnum(i32),
    /// `lr_policy` names no policy Caffe computes.
    #[error("unknown lr_policy '{0}' (known: fixed, step, exp, inv, multistep, poly, sigmoid)")]
    UnknownLrPolicy(String),
    /// `regularization_type` is neither L2 nor L1.
    #[error("unknown regularization_type '{0}' (known: L2, L1)")]
    UnknownRegularization(String),
    /// A solver parameter is out of the range Caffe CHECKs.
    #[error("solver parameter {name}: {message}")]
    BadParam {
        /// The field.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The solver names no train net, or more than one.
    #[error("{0}")]
    NetSpec(String),
    /// The caller's loader failed to read a net file named by the solver.
    #[error("net file '{path}': {message}")]
    NetLoad {
        /// The name as the solver gives it.
        path: String,
        /// The loader's message.
        message: String,
    },
    /// Building or running a net failed.
    #[error("{net} net: {source}")]
    Engine {
        /// Which net ("train", "test #0", ...).
        net: String,
        /// The engine's error (boxed: it is large).
        source: Box<engine::Error>,
    },
    /// Reading or transforming data failed.
    #[error("data layer '{layer}': {source}")]
    Data {
        /// The Data layer.
        layer: String,
        /// The datasets crate's error (boxed: it is large).
        source: Box<datasets::Error>,
    },
    /// A data layer cannot be fed by [`DataFeeder`](crate::DataFeeder).
    #[error("data layer '{layer}' ({layer_type}): {message}")]
    DataLayer {
        /// The layer.
        layer: String,
        /// Its type.
        layer_type: String,
        /// What is wrong.
        message: String,
    },
    /// A data source does not exist.
    #[error("data layer '{layer}': source '{}' not found", path.display())]
    MissingSource {
        /// The layer.
        layer: String,
        /// The resolved path.
        path: PathBuf,
    },
    /// A mask names a parameter the net does not learn.
    #[error("mask for {layer}[{index}]: the train net has no such learnable parameter")]
    MaskTarget {
        /// The layer.
        layer: String,
        /// The blob index.
        index: usize,
    },
    /// A mask's length differs from its parameter's.
    #[error("mask for {layer}[{index}]: {found} entries for a parameter of {expected} values")]
    MaskLength {
        /// The layer.
        layer: String,
        /// The blob index.
        index: usize,
        /// Values of the parameter.
        expected: usize,
        /// Entries in the mask.
        found: usize,
    },
    /// A codebook does not fit its parameter: unknown parameter, length, a code past the codebook, or a first
    /// entry that is not 0.0 (code 0 holds the pruned weights).
    #[error("codebook for {layer}[{index}]: {problem}")]
    Codebook {
        /// The layer.
        layer: String,
        /// The blob index.
        index: usize,
        /// What is wrong.
        problem: String,
    },
    /// A solver state does not fit this solver's net.
    #[error("solver state: {0}")]
    State(String),
    /// An observer asked to stop with an error (e.g. a snapshot could not be written).
    #[error("{0}")]
    Observer(String),
}

impl Error {
    pub(crate) fn engine(net: &str, source: engine::Error) -> Self {
        Error::Engine {
            net: net.to_string(),
            source: Box::new(source),
        }
    }

    pub(crate) fn bad(name: &'static str, message: impl Into<String>) -> Self {
        Error::BadParam {
            name,
            message: message.into(),
        }
    }
}
