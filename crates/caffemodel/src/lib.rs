//! Caffe's files, read and written exactly.
//!
//! - Binary files (`.caffemodel` of every generation, `.solverstate`, `.binaryproto`) are memory-mapped
//!   ([`ModelFile`]) and parsed losslessly into a small tree ([`Message`]) that descends only to the weights: layer
//!   and blob views borrow their payloads from the file, so statistics need no copy and values are copied at most
//!   once. Fields unknown to our schema are kept byte for byte, and encoding an untouched file gives identical bytes.
//! - Typed access for tools that need every parameter goes through `caffe_proto`'s prost types ([`decode_net`]).
//! - Text files (`.prototxt`) are parsed with a real protobuf text-format parser ([`text`]), against our schema or a
//!   fork's `caffe.proto` loaded at run time.
//! - [`upgrade`] turns V0/V1 nets and old solvers into the modern layout the way Caffe's own upgrade tools do.
//!
//! Every error names the file and the place (byte offset or line:column).

#![warn(missing_docs)]

pub mod error;
/// The fuzz targets' bodies, for `fuzz/` and the corpus-replaying tests (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod han;
pub mod model;
pub mod npz;
pub mod text;
mod tree;
pub mod upgrade;
mod wire;

pub use error::{Error, Result};
pub use model::{
    is_prunable_type, output_rows, BinaryKind, BlobFile, BlobShape, BlobValues, BlobView, Generation, LayerView,
    ModelFile, NetMessage, SolverStateView,
};
pub use tree::{Elem, Message, MessageKind, ParseError};

/// Decodes the whole file as a typed `caffe_proto::NetParameter` (every parameter, values copied once into vectors).
pub fn decode_net(file: &ModelFile) -> Result<caffe_proto::NetParameter> {
    // The lossless parse first: it gives errors with offsets and message paths, which prost's errors lack.
    file.net()?;
    decode_checked(file)
}

/// Decodes the whole file as a typed `caffe_proto::SolverState` (a `.solverstate`).
pub fn decode_solver_state(file: &ModelFile) -> Result<caffe_proto::SolverState> {
    file.solver_state()?;
    decode_checked(file)
}

/// Decodes the whole file as a typed `caffe_proto::BlobProto` (a `.binaryproto`, e.g. a mean file).
pub fn decode_blob(file: &ModelFile) -> Result<caffe_proto::BlobProto> {
    file.blob()?;
    decode_checked(file)
}

fn decode_checked<M: prost::Message + Default>(file: &ModelFile) -> Result<M> {
    M::decode(file.bytes()).map_err(|e| Error::invalid(file.path(), e.to_string()))
}

/// The protobuf bytes of a typed message (a net, solver, solver state) or a text-parsed one, as Caffe writes them.
pub fn encode(message: &impl prost::Message) -> Vec<u8> {
    message.encode_to_vec()
}
