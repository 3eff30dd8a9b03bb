//! Writing a model as `.caffez` and giving it back.

use crate::format::{self, BlobSection, CaffezFile, Method, KIND_BLOB, KIND_SKELETON};
use crate::{CompressError, FormatError};
use caffemodel::ModelFile;
use entropy::{sparse, varint};
use rayon::prelude::*;

/// Positions per chunk the writer uses: 2^20, so large layers decode on several threads, while a chunk's
/// contexts learn for long enough that their warm-up costs under 0.2%.
pub const CHUNK_LEN: usize = 1 << 20;

/// What became of one weight blob.
#[derive(Clone, Debug, PartialEq)]
pub struct BlobReport {
    /// The layer's name.
    pub layer: String,
    /// The layer's type (modern name).
    pub type_name: String,
    /// The blob's index in the layer (0: the weights).
    pub blob: usize,
    /// Values in the blob.
    pub count: u64,
    /// Nonzero values (+0.0 is pruned; every other bit pattern is kept).
    pub kept: u64,
    /// Code width in bits, when coded.
    pub bits: Option<u32>,
    /// Distinct kept values (the codebook's length when coded).
    pub distinct: u64,
    /// Bytes the blob takes in the file: its section when coded, its raw payload when stored in the skeleton.
    pub bytes: u64,
    /// Ideal bits spent on positions (gaps) and on codes, when coded ([`entropy::sparse::cost_split`]).
    pub cost_bits: Option<(f64, f64)>,
}

/// A model written as `.caffez`.
#[derive(Clone, Debug)]
pub struct Compressed {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// Bytes of the model it gives back.
    pub model_len: u64,
    /// Every weight blob of a Convolution, InnerProduct or Deconvolution layer, coded or not.
    pub blobs: Vec<BlobReport>,
    /// Bytes of the skeleton section (everything not coded: layer definitions, biases, other blobs).
    pub skeleton_bytes: u64,
}

/// Writes `model` as a `.caffez` file.
///
/// Every weight blob (blob 0 of a Convolution, InnerProduct or Deconvolution layer) stored as one packed
/// f32 payload with at most 255 distinct values besides `+0.0` is coded: its distinct values become the
/// codebook (ascending), `+0.0` is code 0, and the codes are range-coded in chunks. Everything else stays
/// in the skeleton as it was. Deterministic: the same model gives the same bytes.
pub fn compress(model: &ModelFile) -> Result<Compressed, CompressError> {
    let bytes = model.bytes();
    let net = model.net()?;
    let mut coded = Vec::new();
    let mut blobs = Vec::new();
    for layer in net.layers() {
        let type_name = layer.modern_type_name();
        if !caffemodel::is_prunable_type(&type_name) {
            continue;
        }
        let Some(weights) = layer.blobs().into_iter().next() else {
            continue;
        };
        let data = weights.data();
        let values = data.to_vec_f32();
        let mut report = BlobReport {
            layer: layer.name().into_owned(),
            type_name,
            blob: 0,
            count: values.len() as u64,
            kept: values.iter().filter(|v| v.to_bits() != 0).count() as u64,
            bits: None,
            distinct: 0,
            bytes: 4 * values.len() as u64,
            cost_bits: None,
        };
        let mut codebook: Vec<f32> = values.iter().copied().filter(|v| v.to_bits() != 0).collect();
        codebook.sort_unstable_by(f32::total_cmp);
        codebook.dedup_by(|a, b| a.to_bits() == b.to_bits());
        report.distinct = codebook.len() as u64;
        let range = data.packed_f32_range();
        if let (Some(range), true) = (range, codebook.len() <= 255 && !values.is_empty()) {
            let section = code_blob(&report, &values, &codebook)?;
            report.bits = Some(code_bits(codebook.len()));
            report.bytes = section.len() + 13;
            report.cost_bits = Some(section.cost_bits);
            coded.push((range, section));
        }
        blobs.push(report);
    }
    if coded.is_empty() {
        return Err(CompressError::NothingQuantized {
            path: model.path().display().to_string(),
        });
    }
    coded.sort_by_key(|(range, _)| range.start);

    let mut skeleton = Vec::with_capacity(bytes.len());
    let mut from = 0usize;
    for (range, section) in &mut coded {
        skeleton.extend_from_slice(&bytes[from..range.start as usize]);
        from = range.end as usize;
        section.insert_at = skeleton.len() as u64;
    }
    skeleton.extend_from_slice(&bytes[from..]);

    let mut sections = Vec::new();
    let mut body = Vec::new();
    let deflated = miniz_oxide::deflate::compress_to_vec(&skeleton, 10);
    let (method, data) = if deflated.len() < skeleton.len() {
        (Method::Deflate, &deflated[..])
    } else {
        (Method::Stored, &skeleton[..])
    };
    body.push(method as u8);
    varint::write(&mut body, skeleton.len() as u64);
    body.extend_from_slice(data);
    format::write_section(&mut sections, KIND_SKELETON, &body);
    let skeleton_bytes = sections.len() as u64;
    for (_, section) in &coded {
        format::write_section(&mut sections, KIND_BLOB, &section.finish());
    }
    let mut out = Vec::with_capacity(format::HEADER_LEN + sections.len());
    let section_count = u32::try_from(coded.len() + 1).expect("fewer sections than layers");
    out.extend_from_slice(&format::header(
        section_count,
        bytes.len() as u64,
        crc32fast::hash(bytes),
    ));
    out.extend_from_slice(&sections);
    Ok(Compressed {
        bytes: out,
        model_len: bytes.len() as u64,
        blobs,
        skeleton_bytes,
    })
}

/// The code width of a codebook of `entries` nonzero values: room for them and code 0.
fn code_bits(entries: usize) -> u32 {
    (usize::BITS - entries.leading_zeros()).max(1)
}

/// A blob section being written: everything but the insert offset, which is known once all blobs are cut.
struct BlobBody {
    head: Vec<u8>,
    body: Vec<u8>,
    insert_at: u64,
    cost_bits: (f64, f64),
}

impl BlobBody {
    /// Bytes of the finished body (the insert offset counted at its final width, which the cut decides:
    /// at most 10 bytes, at least 1).
    fn len(&self) -> u64 {
        (self.head.len() + self.body.len()) as u64 + varint::len(self.insert_at)
    }

    fn finish(&self) -> Vec<u8> {
        let mut out = self.head.clone();
        varint::write(&mut out, self.insert_at);
        out.extend_from_slice(&self.body);
        out
    }
}

fn code_blob(report: &BlobReport, values: &[f32], codebook: &[f32]) -> Result<BlobBody, CompressError> {
    let bits = code_bits(codebook.len());
    let mut head = Vec::new();
    varint::write(&mut head, report.layer.len() as u64);
    head.extend_from_slice(report.layer.as_bytes());
    varint::write(&mut head, report.blob as u64);
    let mut body = Vec::new();
    varint::write(&mut body, values.len() as u64);
    body.push(bits as u8);
    varint::write(&mut body, codebook.len() as u64);
    let mut previous = None;
    for &value in codebook {
        let key = format::key_of_float(value);
        varint::write(&mut body, previous.map_or(key, |p: u32| key - p - 1).into());
        previous = Some(key);
    }
    varint::write(&mut body, CHUNK_LEN as u64);
    let code_of = |v: f32| -> u8 {
        if v.to_bits() == 0 {
            0
        } else {
            let index = codebook
                .binary_search_by(|c| c.total_cmp(&v))
                .expect("every value is in the codebook");
            index as u8 + 1
        }
    };
    let encoded: Vec<(u64, Vec<u8>, (f64, f64))> = values
        .par_chunks(CHUNK_LEN)
        .map(|chunk| {
            let codes: Vec<u8> = chunk.iter().map(|&v| code_of(v)).collect();
            let mut stream = Vec::new();
            let kept = sparse::encode_sparse(&codes, bits, &mut stream)?;
            let cost = sparse::cost_split(&codes, bits)?;
            Ok((kept, stream, cost))
        })
        .collect::<Result<_, entropy::EncodeError>>()
        .map_err(|source| CompressError::Encode {
            layer: report.layer.clone(),
            blob: report.blob,
            source,
        })?;
    let mut cost_bits = (0.0, 0.0);
    for (kept, stream, cost) in &encoded {
        varint::write(&mut body, *kept);
        varint::write(&mut body, stream.len() as u64);
        body.extend_from_slice(stream);
        cost_bits.0 += cost.0;
        cost_bits.1 += cost.1;
    }
    Ok(BlobBody {
        head,
        body,
        insert_at: 0,
        cost_bits,
    })
}

/// Gives back the model `bytes` (a whole `.caffez` file) was written from, byte for byte.
pub fn decompress(bytes: &[u8]) -> Result<Vec<u8>, FormatError> {
    CaffezFile::parse(bytes)?.decompress()
}

impl CaffezFile<'_> {
    /// Decodes every section and gives back the model, checked against its CRC-32.
    pub fn decompress(&self) -> Result<Vec<u8>, FormatError> {
        let skeleton = self.inflate_skeleton()?;
        let len = usize::try_from(self.output_len).map_err(|_| FormatError::OutOfMemory { bytes: self.output_len })?;
        let mut out = Vec::new();
        out.try_reserve_exact(len)
            .map_err(|_| FormatError::OutOfMemory { bytes: self.output_len })?;
        let mut from = 0usize;
        for blob in &self.blobs {
            let at = blob.insert_at as usize;
            out.extend_from_slice(&skeleton[from..at]);
            from = at;
            let start = out.len();
            out.resize(start + 4 * blob.count as usize, 0);
            decode_blob(blob, &mut out[start..])?;
        }
        out.extend_from_slice(&skeleton[from..]);
        let found = crc32fast::hash(&out);
        if found != self.output_crc {
            return Err(FormatError::Checksum {
                what: "the model given back".into(),
                offset: 24,
                stored: self.output_crc,
                found,
            });
        }
        Ok(out)
    }

    /// The skeleton's bytes.
    pub fn inflate_skeleton(&self) -> Result<std::borrow::Cow<'_, [u8]>, FormatError> {
        let skeleton = &self.skeleton;
        match skeleton.method {
            Method::Stored => Ok(std::borrow::Cow::Borrowed(skeleton.data)),
            Method::Deflate => {
                use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
                use miniz_oxide::inflate::TINFLStatus;
                // raw_len is at most 1032 times the stored bytes (checked when parsing).
                let len = usize::try_from(skeleton.raw_len).map_err(|_| FormatError::OutOfMemory {
                    bytes: skeleton.raw_len,
                })?;
                let mut data = vec![0u8; len];
                let (status, consumed, written) = decompress(
                    &mut DecompressorOxide::new(),
                    skeleton.data,
                    &mut data,
                    0,
                    inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
                );
                let problem = match status {
                    TINFLStatus::Done if written != len => {
                        Some(format!("inflates to {written} bytes, the section says {len}"))
                    }
                    TINFLStatus::Done if consumed != skeleton.data.len() => Some(format!(
                        "{} bytes follow the deflate stream",
                        skeleton.data.len() - consumed
                    )),
                    TINFLStatus::Done => None,
                    TINFLStatus::HasMoreOutput => Some(format!("inflates to more than the section's {len} bytes")),
                    other => Some(format!("deflate stream: {other:?}")),
                };
                if let Some(reason) = problem {
                    return Err(FormatError::invalid(
                        "section 0 (skeleton), data",
                        skeleton.data_offset,
                        reason,
                    ));
                }
                Ok(std::borrow::Cow::Owned(data))
            }
        }
    }
}

/// Decodes a blob's chunks into its payload bytes (little-endian f32, `out` zeroed: the pruned weights are
/// already +0.0), chunks in parallel, each kept weight's value written straight into place.
fn decode_blob(blob: &BlobSection<'_>, out: &mut [u8]) -> Result<(), FormatError> {
    let mut table = [[0u8; 4]; 256];
    for (entry, value) in table[1..].iter_mut().zip(&blob.codebook) {
        *entry = value.to_le_bytes();
    }
    let entries = blob.codebook.len();
    out.par_chunks_mut(4 * blob.chunk_len as usize)
        .zip(blob.chunks.par_iter())
        .enumerate()
        .try_for_each(|(index, (out, chunk))| {
            let what = || format!("{}, chunk {index}", blob.describe());
            // The largest code seen, checked once at the end (cheaper than a branch per weight).
            let mut largest = 0u8;
            sparse::decode_sparse_with(chunk.stream, blob.bits, chunk.kept, out.len() / 4, |position, code| {
                largest = largest.max(code);
                out[4 * position..4 * position + 4].copy_from_slice(&table[usize::from(code)]);
            })
            .map_err(|source| FormatError::Stream {
                what: what(),
                offset: chunk.offset,
                source,
            })?;
            if usize::from(largest) > entries {
                return Err(FormatError::invalid(
                    what(),
                    chunk.offset,
                    format!("code {largest} beyond the codebook's {entries} values"),
                ));
            }
            Ok(())
        })
}
