//! Storing a model: one protobuf file, or (past protobuf's 2 GiB limit) the graph in the file and the weights in
//! an external data file beside it, as ONNX's external-data convention describes.

use std::path::{Path, PathBuf};

use prost::Message;

use crate::error::ExportError;
use crate::proto::{tensor_proto::DataLocation, ModelProto, StringStringEntryProto};

/// Initializer bytes above which the weights go to an external file: protobuf refuses messages of 2 GiB and more,
/// and the graph needs room beside the weights.
pub const EXTERNAL_THRESHOLD: u64 = (2 << 30) - (64 << 20);

/// External tensors start at multiples of this (the convention's advice, so that readers can map them).
const ALIGN: u64 = 4096;

/// What [`write()`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Bytes of the model file.
    pub model_bytes: u64,
    /// The external data file and its bytes, when the weights went there.
    pub external: Option<(PathBuf, u64)>,
}

/// Writes `model` to `path` (atomically). When its initializers hold more than `threshold` bytes (normally
/// [`EXTERNAL_THRESHOLD`]), their bytes go to `<path>.data` instead, each at a 4 KiB-aligned offset, and the
/// tensors name that file (relative to the model, as the convention requires), the offset and the length.
pub fn write(mut model: ModelProto, path: &Path, threshold: u64) -> Result<Written, ExportError> {
    let raw: u64 = model
        .graph
        .iter()
        .flat_map(|g| &g.initializer)
        .map(|t| t.raw_data.len() as u64)
        .sum();
    let mut external = None;
    if raw > threshold {
        let data_path = PathBuf::from(format!("{}.data", path.display()));
        let location = data_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut offset = 0u64;
        let tensors = model.graph.iter_mut().flat_map(|g| &mut g.initializer);
        let mut moved = Vec::new();
        for t in tensors {
            let start = offset.next_multiple_of(ALIGN);
            let bytes = std::mem::take(&mut t.raw_data);
            t.data_location = DataLocation::External as i32;
            t.external_data = vec![
                entry("location", &location),
                entry("offset", &start.to_string()),
                entry("length", &bytes.len().to_string()),
            ];
            offset = start + bytes.len() as u64;
            moved.push((start, bytes));
        }
        outfile::write_atomic(&data_path, |w| {
            let mut at = 0u64;
            for (start, bytes) in &moved {
                w.write_all(&vec![0u8; (start - at) as usize])?;
                w.write_all(bytes)?;
                at = start + bytes.len() as u64;
            }
            Ok(())
        })?;
        external = Some((data_path, offset));
    }
    let mut bytes = Vec::with_capacity(model.encoded_len());
    pages::advise_huge_pages(&mut bytes);
    model
        .encode(&mut bytes)
        .expect("a Vec with the encoded length reserved has room");
    outfile::write_atomic(path, |w| w.write_all(&bytes))?;
    Ok(Written {
        model_bytes: bytes.len() as u64,
        external,
    })
}

fn entry(key: &str, value: &str) -> StringStringEntryProto {
    StringStringEntryProto {
        key: key.into(),
        value: value.into(),
    }
}
