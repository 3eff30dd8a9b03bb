//! A net's weights as NumPy files, and back.
//!
//! Key names follow the Deep Compression tutorial's sparse net dict: blob 0 of layer `L` is `L_W`, blob 1 is `L_b`,
//! blob k >= 2 is `L_blobk`. In the sparse layout the weight blob of a prunable layer (Convolution, InnerProduct,
//! Deconvolution) is stored in relative-index form as `L_W` (float32 values), `L_W_indx` (unsigned gaps, uint8 for up
//! to 8 index bits, else uint16) and `L_W_shape` (int64, the shape as stored); every other blob is dense in its stored
//! shape, so the file rebuilds the whole net's weights on its own. Layer names keep their '/' in npz keys.
//!
//! Values are exported as float32 (Caffe's nets store `data`; a `double_data` blob is rounded to float32). A -0.0
//! weight in a relative-index blob comes back as +0.0, since the format stores only nonzeros.

use crate::error::{Error, Result};
use crate::model::{is_prunable_type, output_rows, NetMessage};
use sparse::{CompressedMatrix, Csc, Csr, Gaps, GapsRef, NpzReader, NpzWriter};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// How an `.npz` stores the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Prunable weight blobs in relative-index form with `index_bits`-bit gaps, the rest dense.
    Sparse {
        /// Bits per gap, 1..=16.
        index_bits: u8,
    },
    /// Every blob dense in its stored shape.
    Dense,
    /// The tutorial's quantized dict: each prunable weight blob, whose nonzero values must be at most 255 shared
    /// values (a quantized model), as `L_codebook` (float32; index 0 holds 0.0, then the shared values ascending),
    /// `L_maskcode_W` (uint8 codes into the codebook) and `L_maskcode_indx` (uint8 gaps of the relative-index walk,
    /// fillers included, as the sparse layout's), plus `L_W_shape`; every other blob dense.
    /// `codebook[maskcode_W]` expanded with the gaps gives the blob exactly.
    Codebook {
        /// Bits per gap, 1..=8.
        index_bits: u8,
    },
}

/// The codebook of a quantized blob: +0.0, then its distinct nonzero values ascending (at most 255 of them).
fn codebook_of(values: &[f32]) -> std::result::Result<Vec<f32>, String> {
    let distinct: BTreeSet<u32> = values.iter().filter(|v| **v != 0.0).map(|v| v.to_bits()).collect();
    if distinct.len() > 255 {
        return Err(format!(
            "{} distinct nonzero values do not fit one-byte codes (at most 255): quantize the model first",
            distinct.len()
        ));
    }
    if let Some(bad) = values.iter().find(|v| v.is_nan()) {
        return Err(format!("{bad} cannot be a shared value"));
    }
    let mut codebook: Vec<f32> = distinct.into_iter().map(f32::from_bits).collect();
    codebook.sort_by(f32::total_cmp);
    codebook.insert(0, 0.0);
    Ok(codebook)
}

/// The npz key of blob `index` of layer `layer`.
pub fn blob_key(layer: &str, index: usize) -> String {
    match index {
        0 => format!("{layer}_W"),
        1 => format!("{layer}_b"),
        k => format!("{layer}_blob{k}"),
    }
}

/// What an export or import did, per blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobEntry {
    /// Layer name.
    pub layer: String,
    /// Blob index in the layer.
    pub blob: usize,
    /// Key in the npz (or file name for the scipy layout).
    pub key: String,
    /// Elements of the blob.
    pub count: usize,
    /// Stored entries (relative-index entries incl. fillers, nonzeros for CSC/CSR, `count` for dense).
    pub stored: usize,
}

fn dims_usize(path: &Path, layer: &str, dims: &[i64]) -> Result<Vec<usize>> {
    dims.iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| Error::invalid(path, format!("layer '{layer}': negative dimension {d}")))
        })
        .collect()
}

fn npz_error(path: &Path, e: sparse::NpzError) -> Error {
    match e {
        // Already names the target: prefixing the path again printed it twice.
        sparse::NpzError::Output(output) => Error::Output(output),
        e => Error::invalid(path, e.to_string()),
    }
}

/// Writes the net's weights to `out` as an npz in `layout`; returns what was written.
pub fn export_npz(net: &NetMessage<'_>, out: &Path, layout: Layout) -> Result<Vec<BlobEntry>> {
    export_npz_with(net, out, layout, |_| None)
}

/// [`export_npz`], for a caller that has already gap-encoded some weight blobs (pruning and encoding in one pass,
/// `sparse::encode_gaps_pruned` or `sparse::encode_gaps_cut`): in the sparse layout, `encoded(i)` may hand over the
/// encoding to write for blob 0 of the net's layer `i`, at the layout's index bits, in place of the blob's own values
/// (which may still be the unpruned ones: a prune that writes only the npz leaves the net as it was); `None` encodes
/// the blob's values here. An encoding of another length or width than the blob's is an error.
pub fn export_npz_with(
    net: &NetMessage<'_>,
    out: &Path,
    layout: Layout,
    mut encoded: impl FnMut(usize) -> Option<sparse::GapEncoded>,
) -> Result<Vec<BlobEntry>> {
    let mut writer = NpzWriter::create(out).map_err(|e| npz_error(out, e))?;
    let mut entries = Vec::new();
    for (layer_index, layer) in net.layers().iter().enumerate() {
        let name = layer.name();
        let type_name = layer.type_name();
        for (index, blob) in layer.blobs().iter().enumerate() {
            let key = blob_key(&name, index);
            let dims = blob.shape().dims;
            let shape = dims_usize(net.path(), &name, &dims)?;
            let data = blob.data();
            let values = data.f32s();
            let add = |w: &mut NpzWriter, key: &str, shape: &[usize], v: &[f32]| {
                w.add(key, shape, v).map_err(|e| npz_error(out, e))
            };
            match layout {
                Layout::Codebook { index_bits } if index == 0 && is_prunable_type(&type_name) => {
                    let bad = |e: String| Error::invalid(out, format!("layer '{name}': {e}"));
                    if index_bits > 8 {
                        return Err(bad(format!(
                            "{index_bits} index bits do not fit uint8 gaps (at most 8)"
                        )));
                    }
                    let codebook = codebook_of(&values).map_err(bad)?;
                    let encoded = sparse::encode_gaps(&values, index_bits).map_err(|e| bad(e.to_string()))?;
                    let codes: Vec<u8> = encoded
                        .values
                        .iter()
                        .map(|v| match codebook.binary_search_by(|c| c.total_cmp(v)) {
                            Ok(code) => code as u8,
                            // Fillers and -0.0 store 0.0, code 0.
                            Err(_) => 0,
                        })
                        .collect();
                    let Gaps::U8(gaps) = &encoded.gaps else {
                        return Err(bad("uint8 gaps expected".into()));
                    };
                    let n = codes.len();
                    let stem = format!("{name}_maskcode");
                    add(&mut writer, &format!("{name}_codebook"), &[codebook.len()], &codebook)?;
                    writer
                        .add(&format!("{stem}_W"), &[n], &codes)
                        .and_then(|()| writer.add(&format!("{stem}_indx"), &[n], gaps))
                        .and_then(|()| writer.add(&format!("{key}_shape"), &[dims.len()], &dims))
                        .map_err(|e| npz_error(out, e))?;
                    entries.push(BlobEntry {
                        layer: name.to_string(),
                        blob: index,
                        key: format!("{stem}_W"),
                        count: values.len(),
                        stored: n,
                    });
                }
                Layout::Sparse { index_bits } if index == 0 && is_prunable_type(&type_name) => {
                    let encoded = match encoded(layer_index) {
                        Some(given) if given.dense_len == values.len() && given.index_bits == index_bits => given,
                        Some(given) => {
                            return Err(Error::invalid(
                                out,
                                format!(
                                    "layer '{name}': an encoding of {} values at {} index bits given for {} values at {index_bits}",
                                    given.dense_len,
                                    given.index_bits,
                                    values.len()
                                ),
                            ))
                        }
                        None => sparse::encode_gaps(&values, index_bits)
                            .map_err(|e| Error::invalid(out, format!("layer '{name}': {e}")))?,
                    };
                    let n = encoded.values.len();
                    add(&mut writer, &key, &[n], &encoded.values)?;
                    let indx = format!("{key}_indx");
                    match &encoded.gaps {
                        Gaps::U8(g) => writer.add(&indx, &[n], g),
                        Gaps::U16(g) => writer.add(&indx, &[n], g),
                    }
                    .map_err(|e| npz_error(out, e))?;
                    writer
                        .add(&format!("{key}_shape"), &[dims.len()], &dims)
                        .map_err(|e| npz_error(out, e))?;
                    entries.push(BlobEntry {
                        layer: name.to_string(),
                        blob: index,
                        key,
                        count: values.len(),
                        stored: n,
                    });
                }
                _ => {
                    add(&mut writer, &key, &shape, &values)?;
                    entries.push(BlobEntry {
                        layer: name.to_string(),
                        blob: index,
                        key,
                        count: values.len(),
                        stored: values.len(),
                    });
                }
            }
        }
    }
    writer.finish().map_err(|e| npz_error(out, e))?;
    Ok(entries)
}

/// Blob 0 of layer `name` from the codebook layout's arrays (see [`Layout::Codebook`]), every key checked.
fn read_codebook_blob(
    reader: &mut NpzReader,
    unused: &mut BTreeSet<String>,
    input: &Path,
    name: &str,
    key: &str,
    dims: &[i64],
    count: usize,
) -> Result<Vec<f32>> {
    let (codes_key, indx_key, shape_key) = (
        format!("{name}_maskcode_W"),
        format!("{name}_maskcode_indx"),
        format!("{key}_shape"),
    );
    for k in [&codes_key, &indx_key, &shape_key] {
        if !unused.remove(k) {
            return Err(Error::invalid(
                input,
                format!("'{name}_codebook' has no matching '{k}'"),
            ));
        }
    }
    let read_err = |e| npz_error(input, e);
    let stored_shape = reader.read::<i64>(&shape_key).map_err(read_err)?.data;
    if stored_shape != dims {
        return Err(Error::invalid(
            input,
            format!("'{shape_key}' is {stored_shape:?} but layer '{name}' blob 0 has shape {dims:?}"),
        ));
    }
    let codebook = reader.read::<f32>(&format!("{name}_codebook")).map_err(read_err)?.data;
    let codes = reader.read::<u8>(&codes_key).map_err(read_err)?.data;
    let gaps = reader.read::<u8>(&indx_key).map_err(read_err)?.data;
    let values = codes
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            codebook.get(usize::from(c)).copied().ok_or_else(|| {
                Error::invalid(
                    input,
                    format!(
                        "'{codes_key}'[{i}] = {c} is past the codebook's {} entries",
                        codebook.len()
                    ),
                )
            })
        })
        .collect::<Result<Vec<f32>>>()?;
    sparse::decode_gaps(&values, GapsRef::U8(&gaps), count)
        .map_err(|e| Error::invalid(input, format!("'{codes_key}': {e}")))
}

/// Compressed sparse format for [`export_scipy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScipyFormat {
    /// Compressed sparse column (scipy's `csc_matrix`).
    Csc,
    /// Compressed sparse row (scipy's `csr_matrix`).
    Csr,
}

/// The file name of a layer's scipy npz: '/' in layer names becomes '__'.
pub fn scipy_file_name(layer: &str) -> String {
    format!("{}.npz", layer.replace('/', "__"))
}

/// The files [`export_scipy`] writes into `dir`, one per layer with a prunable weight blob.
pub fn scipy_files(net: &NetMessage<'_>, dir: &Path) -> Vec<PathBuf> {
    net.layers()
        .into_iter()
        .filter(|layer| is_prunable_type(&layer.type_name()) && !layer.blobs().is_empty())
        .map(|layer| dir.join(scipy_file_name(&layer.name())))
        .collect()
}

/// Writes one `scipy.sparse.load_npz`-readable file per prunable weight blob into the folder `dir` (created if
/// missing), the blob viewed as 2-D (outputs x rest).
pub fn export_scipy(net: &NetMessage<'_>, dir: &Path, format: ScipyFormat) -> Result<Vec<BlobEntry>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut entries = Vec::new();
    let mut names = BTreeSet::new();
    for layer in net.layers() {
        let type_name = layer.type_name();
        let blobs = layer.blobs();
        let Some(blob) = blobs.first().filter(|_| is_prunable_type(&type_name)) else {
            continue;
        };
        let name = layer.name();
        let file = scipy_file_name(&name);
        if !names.insert(file.clone()) {
            return Err(Error::invalid(
                dir,
                format!("two layers map to the same file name {file}"),
            ));
        }
        let data = blob.data();
        let values = data.f32s();
        let count = values.len() as u64;
        let rows = output_rows(&type_name, &blob.shape().dims, count) as usize;
        let shape = [rows, values.len().checked_div(rows).unwrap_or(0)];
        let path = dir.join(&file);
        let bad = |e: sparse::SparseError| Error::invalid(&path, format!("layer '{name}': {e}"));
        let stored = match format {
            ScipyFormat::Csc => {
                let m = Csc::from_dense(&values, &shape).map_err(bad)?;
                sparse::write_scipy_sparse(&path, &m).map_err(|e| npz_error(&path, e))?;
                m.nnz()
            }
            ScipyFormat::Csr => {
                let m = Csr::from_dense(&values, &shape).map_err(bad)?;
                sparse::write_scipy_sparse(&path, &m).map_err(|e| npz_error(&path, e))?;
                m.nnz()
            }
        };
        entries.push(BlobEntry {
            layer: name.to_string(),
            blob: 0,
            key: file,
            count: values.len(),
            stored,
        });
    }
    Ok(entries)
}

/// Reads weights from the npz `input` (either layout) into `net`, blob by blob. Every blob of `net` must be in the
/// file with its shape, and every array of the file must belong to a blob of `net`; on any mismatch nothing is changed.
pub fn import_npz(net: &mut NetMessage<'_>, input: &Path) -> Result<Vec<BlobEntry>> {
    let mut reader = NpzReader::open(input).map_err(|e| npz_error(input, e))?;
    let mut unused: BTreeSet<String> = reader.keys().iter().cloned().collect();
    let mut planned = Vec::new();
    for layer in net.layers() {
        let name = layer.name();
        for (index, blob) in layer.blobs().iter().enumerate() {
            let key = blob_key(&name, index);
            let dims = blob.shape().dims;
            let shape = dims_usize(net.path(), &name, &dims)?;
            let count = blob.data().len();
            let codebook_key = format!("{name}_codebook");
            if index == 0 && unused.remove(&codebook_key) {
                let values = read_codebook_blob(&mut reader, &mut unused, input, &name, &key, &dims, count)?;
                planned.push((layer.index, index, format!("{name}_maskcode_W"), values));
                continue;
            }
            if !unused.remove(&key) {
                return Err(Error::invalid(
                    input,
                    format!("missing array '{key}' for layer '{name}' blob {index}"),
                ));
            }
            let indx = format!("{key}_indx");
            let values = if unused.remove(&indx) {
                let shape_key = format!("{key}_shape");
                if !unused.remove(&shape_key) {
                    return Err(Error::invalid(input, format!("'{indx}' has no matching '{shape_key}'")));
                }
                let stored_shape = reader.read::<i64>(&shape_key).map_err(|e| npz_error(input, e))?.data;
                if stored_shape != dims {
                    return Err(Error::invalid(
                        input,
                        format!("'{shape_key}' is {stored_shape:?} but layer '{name}' blob {index} has shape {dims:?}"),
                    ));
                }
                let values = reader.read::<f32>(&key).map_err(|e| npz_error(input, e))?.data;
                let header = reader.header(&indx).map_err(|e| npz_error(input, e))?;
                let decoded = match header.dtype {
                    sparse::DType::U16 => {
                        let gaps = reader.read::<u16>(&indx).map_err(|e| npz_error(input, e))?.data;
                        sparse::decode_gaps(&values, GapsRef::U16(&gaps), count)
                    }
                    _ => {
                        let gaps = reader.read::<u8>(&indx).map_err(|e| npz_error(input, e))?.data;
                        sparse::decode_gaps(&values, GapsRef::U8(&gaps), count)
                    }
                };
                decoded.map_err(|e| Error::invalid(input, format!("'{key}': {e}")))?
            } else {
                let array = reader.read::<f32>(&key).map_err(|e| npz_error(input, e))?;
                if array.shape != shape {
                    return Err(Error::invalid(
                        input,
                        format!(
                            "'{key}' has shape {:?} but layer '{name}' blob {index} has shape {dims:?}",
                            array.shape
                        ),
                    ));
                }
                array.data
            };
            if values.len() != count {
                return Err(Error::invalid(
                    input,
                    format!(
                        "'{key}' holds {} values, layer '{name}' blob {index} holds {count}",
                        values.len()
                    ),
                ));
            }
            planned.push((layer.index, index, key, values));
        }
    }
    if !unused.is_empty() {
        let list: Vec<_> = unused.into_iter().collect();
        return Err(Error::invalid(
            input,
            format!("arrays that match no blob of the net: {}", list.join(", ")),
        ));
    }
    let mut entries = Vec::new();
    for (layer, blob, key, values) in planned {
        let count = values.len();
        let name = net.layers()[layer].name().to_string();
        net.set_blob_data(layer, blob, values)?;
        entries.push(BlobEntry {
            layer: name,
            blob,
            key,
            count,
            stored: count,
        });
    }
    Ok(entries)
}
