//! The container: header, sections, their checksums; parsed into borrowed views, written from parts.

use crate::FormatError;
use entropy::varint;

/// The first eight bytes of every `.caffez` file.
pub const MAGIC: [u8; 8] = *b"\x89CAFFEZ\n";
/// The format version this crate writes and reads.
pub const VERSION: u16 = 1;
/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 32;
/// A reader refuses a file whose model would exceed 64 MiB plus this many times the file's own size: a chunk of
/// 2^24 pruned weights takes two bytes, so without a bound a tiny file could ask for gigabytes. Real models stay
/// far below it (LeNet at 1.8% of its weights: about 110 times).
pub const MAX_EXPANSION: u64 = 1 << 16;

/// Section kinds.
pub(crate) const KIND_SKELETON: u8 = 1;
pub(crate) const KIND_BLOB: u8 = 2;
/// Kind byte, body length, CRC: the bytes a section takes beyond its body.
const SECTION_OVERHEAD: u64 = 1 + 8 + 4;
/// The most a deflate stream can expand (RFC 1951: 258-byte matches coded in at least 2 bits ... 1032:1),
/// plus room for tiny inputs.
const DEFLATE_MAX_RATIO: u64 = 1032;

/// How the skeleton is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// As it is.
    Stored = 0,
    /// Raw deflate (RFC 1951), no zlib or gzip wrapper.
    Deflate = 1,
}

/// The model's bytes with the coded weight payloads cut out.
#[derive(Clone, Debug)]
pub struct Skeleton<'a> {
    /// How `data` is stored.
    pub method: Method,
    /// Bytes of the skeleton once inflated.
    pub raw_len: u64,
    /// The stored bytes.
    pub data: &'a [u8],
    /// File offset of `data`.
    pub data_offset: u64,
    /// File offset of the section.
    pub offset: u64,
}

/// One coded chunk of a blob: `kept` nonzero codes among its positions, in `stream`.
#[derive(Clone, Debug)]
pub struct Chunk<'a> {
    /// Kept (nonzero) weights in the chunk.
    pub kept: u64,
    /// The range-coded stream ([`entropy::sparse`]).
    pub stream: &'a [u8],
    /// File offset of the stream.
    pub offset: u64,
}

/// One quantized weight blob.
#[derive(Clone, Debug)]
pub struct BlobSection<'a> {
    /// Position among the file's sections.
    pub section: usize,
    /// File offset of the section.
    pub offset: u64,
    /// The layer's name.
    pub layer: &'a str,
    /// The blob's index in its layer.
    pub blob: u64,
    /// Where in the skeleton the blob's payload goes.
    pub insert_at: u64,
    /// Number of f32 values.
    pub count: u64,
    /// Code width in bits (1..=8).
    pub bits: u32,
    /// The nonzero shared values, ascending by IEEE total order (stored as steps between their order keys).
    pub codebook: Vec<f32>,
    /// Positions per chunk (the last chunk may be shorter).
    pub chunk_len: u64,
    /// The chunks, in order.
    pub chunks: Vec<Chunk<'a>>,
}

impl BlobSection<'_> {
    /// The section's name in messages: `section 3 (ip1 blob 0)`.
    pub fn describe(&self) -> String {
        describe_blob(self.section, self.layer, self.blob)
    }

    /// Kept weights over all chunks.
    pub fn kept(&self) -> u64 {
        self.chunks.iter().map(|c| c.kept).sum()
    }

    /// Bytes of the coded streams.
    pub fn stream_bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.stream.len() as u64).sum()
    }
}

fn describe_blob(section: usize, layer: &str, blob: u64) -> String {
    format!("section {section} ({layer} blob {blob})")
}

/// A parsed `.caffez` file: every size and rule checked, the coded streams borrowed, nothing decoded yet.
#[derive(Clone, Debug)]
pub struct CaffezFile<'a> {
    /// Bytes of the model the file gives back.
    pub output_len: u64,
    /// CRC-32 of the model the file gives back.
    pub output_crc: u32,
    /// The model without its coded payloads.
    pub skeleton: Skeleton<'a>,
    /// The coded blobs, in the order of their place in the model.
    pub blobs: Vec<BlobSection<'a>>,
    /// Bytes of the whole file.
    pub file_len: u64,
}

/// Reads fields from a section body, naming the section and absolute offsets in errors.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    base: u64,
    what: String,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.base + self.at as u64
    }

    fn varint(&mut self, field: &'static str) -> Result<u64, FormatError> {
        let at = self.offset();
        let (value, next) = varint::read(self.bytes, self.at, field).map_err(|e| match e {
            entropy::DecodeError::Truncated { needed, available, .. } => FormatError::Truncated {
                what: format!("{}, {field}", self.what),
                offset: at,
                needed,
                available: available as u64,
            },
            other => FormatError::invalid(format!("{}, {field}", self.what), at, other.to_string()),
        })?;
        self.at = next;
        Ok(value)
    }

    fn take(&mut self, len: u64, field: &'static str) -> Result<&'a [u8], FormatError> {
        let available = (self.bytes.len() - self.at) as u64;
        if len > available {
            return Err(FormatError::Truncated {
                what: format!("{}, {field}", self.what),
                offset: self.offset(),
                needed: len,
                available,
            });
        }
        let slice = &self.bytes[self.at..self.at + len as usize];
        self.at += len as usize;
        Ok(slice)
    }

    fn invalid(&self, field: &str, at: u64, reason: impl Into<String>) -> FormatError {
        FormatError::invalid(format!("{}, {field}", self.what), at, reason)
    }

    fn end(&self) -> Result<(), FormatError> {
        if self.at != self.bytes.len() {
            return Err(FormatError::invalid(
                self.what.clone(),
                self.offset(),
                format!("{} bytes follow the last field", self.bytes.len() - self.at),
            ));
        }
        Ok(())
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

impl<'a> CaffezFile<'a> {
    /// Parses and checks `bytes` as a whole `.caffez` file.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        if !bytes.starts_with(&MAGIC) {
            return Err(FormatError::BadMagic);
        }
        if bytes.len() < HEADER_LEN {
            return Err(FormatError::Truncated {
                what: "header".into(),
                offset: 0,
                needed: HEADER_LEN as u64,
                available: bytes.len() as u64,
            });
        }
        let header_crc = u32_at(bytes, 28);
        let found = crc32fast::hash(&bytes[..28]);
        if found != header_crc {
            return Err(FormatError::Checksum {
                what: "header".into(),
                offset: 0,
                stored: header_crc,
                found,
            });
        }
        let version = u16_at(bytes, 8);
        if version != VERSION {
            return Err(FormatError::Version { version });
        }
        let flags = u16_at(bytes, 10);
        if flags != 0 {
            return Err(FormatError::invalid(
                "header, flags",
                10,
                format!("flags {flags:#06x}, must be 0"),
            ));
        }
        let section_count = u64::from(u32_at(bytes, 12));
        let output_len = u64_at(bytes, 16);
        let output_crc = u32_at(bytes, 24);
        let rest = (bytes.len() - HEADER_LEN) as u64;
        if section_count == 0 || section_count > rest / SECTION_OVERHEAD {
            return Err(FormatError::invalid(
                "header, section count",
                12,
                format!("{section_count} sections cannot fit in the {rest} bytes after the header"),
            ));
        }

        let mut at = HEADER_LEN;
        let mut skeleton = None;
        let mut blobs: Vec<BlobSection<'a>> = Vec::new();
        for section in 0..section_count as usize {
            let start = at as u64;
            let what = format!("section {section}");
            let available = (bytes.len() - at) as u64;
            if available < SECTION_OVERHEAD {
                return Err(FormatError::Truncated {
                    what,
                    offset: start,
                    needed: SECTION_OVERHEAD,
                    available,
                });
            }
            let kind = bytes[at];
            let body_len = u64_at(bytes, at + 1);
            if body_len > available - SECTION_OVERHEAD {
                return Err(FormatError::Truncated {
                    what: format!("{what} body"),
                    offset: start + 9,
                    needed: body_len.saturating_add(4),
                    available: available - 9,
                });
            }
            let body_start = at + 9;
            let body_end = body_start + body_len as usize;
            let stored = u32_at(bytes, body_end);
            let found = crc32fast::hash(&bytes[at..body_end]);
            if stored != found {
                return Err(FormatError::Checksum {
                    what,
                    offset: start,
                    stored,
                    found,
                });
            }
            let mut cursor = Cursor {
                bytes: &bytes[body_start..body_end],
                at: 0,
                base: body_start as u64,
                what: what.clone(),
            };
            match (section, kind) {
                (0, KIND_SKELETON) => {
                    cursor.what = format!("{what} (skeleton)");
                    skeleton = Some(parse_skeleton(&mut cursor, start)?);
                }
                (0, _) => {
                    return Err(FormatError::invalid(
                        what,
                        start,
                        format!("kind {kind}: the first section must be the skeleton (kind 1)"),
                    ))
                }
                (_, KIND_BLOB) => {
                    let skeleton = skeleton.as_ref().expect("section 0 is the skeleton");
                    let blob = parse_blob(&mut cursor, section, start, skeleton, blobs.last())?;
                    blobs.push(blob);
                }
                (_, KIND_SKELETON) => {
                    return Err(FormatError::invalid(what, start, "a second skeleton section"));
                }
                (_, _) => {
                    return Err(FormatError::invalid(
                        what,
                        start,
                        format!("unknown section kind {kind}"),
                    ));
                }
            }
            at = body_end + 4;
        }
        if at != bytes.len() {
            return Err(FormatError::invalid(
                "end of file",
                at as u64,
                format!("{} bytes follow the last section", bytes.len() - at),
            ));
        }
        let skeleton = skeleton.expect("section 0 was parsed");
        let total = blobs.iter().try_fold(skeleton.raw_len, |sum, b| {
            b.count.checked_mul(4).and_then(|n| sum.checked_add(n))
        });
        if total != Some(output_len) {
            return Err(FormatError::invalid(
                "header, output length",
                16,
                format!(
                    "{output_len} bytes, but the skeleton and the blobs make {}",
                    total.map_or("more than 2^64".to_string(), |t| t.to_string())
                ),
            ));
        }
        let limit = (64 << 20) + MAX_EXPANSION.saturating_mul(bytes.len() as u64);
        if output_len > limit {
            return Err(FormatError::invalid(
                "header, output length",
                16,
                format!(
                    "{output_len} bytes from a {}-byte file: more than a reader allows (64 MiB + 65,536 x the file)",
                    bytes.len()
                ),
            ));
        }
        Ok(Self {
            output_len,
            output_crc,
            skeleton,
            blobs,
            file_len: bytes.len() as u64,
        })
    }
}

fn parse_skeleton<'a>(cursor: &mut Cursor<'a>, offset: u64) -> Result<Skeleton<'a>, FormatError> {
    let at = cursor.offset();
    let method = match cursor.take(1, "method")?[0] {
        0 => Method::Stored,
        1 => Method::Deflate,
        other => return Err(cursor.invalid("method", at, format!("method {other} (0 stored, 1 deflate)"))),
    };
    let at = cursor.offset();
    let raw_len = cursor.varint("raw length")?;
    let data_offset = cursor.offset();
    let data = cursor.take((cursor.bytes.len() - cursor.at) as u64, "data")?;
    let possible = match method {
        Method::Stored => raw_len == data.len() as u64,
        Method::Deflate => raw_len <= (data.len() as u64).saturating_mul(DEFLATE_MAX_RATIO),
    };
    if !possible {
        return Err(cursor.invalid(
            "raw length",
            at,
            format!("{raw_len} bytes cannot come from {} stored bytes", data.len()),
        ));
    }
    Ok(Skeleton {
        method,
        raw_len,
        data,
        data_offset,
        offset,
    })
}

fn parse_blob<'a>(
    cursor: &mut Cursor<'a>,
    section: usize,
    offset: u64,
    skeleton: &Skeleton<'_>,
    previous: Option<&BlobSection<'_>>,
) -> Result<BlobSection<'a>, FormatError> {
    let at = cursor.offset();
    let name_len = cursor.varint("layer name length")?;
    let name = cursor.take(name_len, "layer name")?;
    let layer = std::str::from_utf8(name).map_err(|_| cursor.invalid("layer name", at, "not UTF-8"))?;
    let blob = cursor.varint("blob index")?;
    cursor.what = describe_blob(section, layer, blob);
    let at = cursor.offset();
    let insert_at = cursor.varint("insert offset")?;
    if insert_at > skeleton.raw_len || previous.is_some_and(|p| insert_at <= p.insert_at) {
        return Err(cursor.invalid(
            "insert offset",
            at,
            format!(
                "{insert_at}: offsets must increase from blob to blob and lie within the skeleton's {} bytes",
                skeleton.raw_len
            ),
        ));
    }
    let at = cursor.offset();
    let count = cursor.varint("value count")?;
    if count == 0 {
        return Err(cursor.invalid("value count", at, "0 values"));
    }
    let width_at = cursor.offset();
    let at = width_at;
    let bits = u32::from(cursor.take(1, "code width")?[0]);
    if !(1..=8).contains(&bits) {
        return Err(cursor.invalid("code width", at, format!("{bits} bits (must be 1 to 8)")));
    }
    let at = cursor.offset();
    let entries = cursor.varint("codebook length")?;
    if entries >= 1 << bits {
        return Err(cursor.invalid(
            "codebook length",
            at,
            format!("{entries} values do not fit {bits}-bit codes (code 0 is the pruned weight)"),
        ));
    }
    // The values ascend in IEEE total order, so their order keys ascend: the first key, then each step minus one.
    let at = cursor.offset();
    if entries > (cursor.bytes.len() - cursor.at) as u64 {
        return Err(FormatError::Truncated {
            what: format!("{}, codebook", cursor.what),
            offset: at,
            needed: entries,
            available: (cursor.bytes.len() - cursor.at) as u64,
        });
    }
    let mut codebook = Vec::with_capacity(entries as usize);
    let mut key = 0u64;
    for i in 0..entries {
        let at = cursor.offset();
        let step = cursor.varint("codebook")?;
        key = if i == 0 {
            Some(step)
        } else {
            key.checked_add(step).and_then(|k| k.checked_add(1))
        }
        .filter(|&k| k <= u64::from(u32::MAX))
        .ok_or_else(|| cursor.invalid("codebook", at, format!("value {i} steps past the last float")))?;
        let value = float_of_key(key as u32);
        if value.to_bits() == 0 {
            return Err(cursor.invalid("codebook", at, "+0.0 is code 0, never a codebook value"));
        }
        codebook.push(value);
    }
    if bits != (u64::BITS - entries.leading_zeros()).max(1) {
        return Err(cursor.invalid(
            "code width",
            width_at,
            format!("{bits} bits for {entries} values: a writer uses the smallest width that holds them and code 0"),
        ));
    }
    let at = cursor.offset();
    let chunk_len = cursor.varint("chunk length")?;
    if chunk_len == 0 || chunk_len > entropy::sparse::MAX_CHUNK_LEN as u64 {
        return Err(cursor.invalid("chunk length", at, format!("{chunk_len} (must be 1 to 2^24)")));
    }
    let chunk_count = count.div_ceil(chunk_len);
    // Each chunk takes at least two bytes (two varints), which bounds the list by the body.
    let left = (cursor.bytes.len() - cursor.at) as u64;
    if chunk_count > left / 2 {
        return Err(FormatError::Truncated {
            what: format!("{}, chunks", cursor.what),
            offset: cursor.offset(),
            needed: chunk_count.saturating_mul(2),
            available: left,
        });
    }
    let mut chunks = Vec::with_capacity(chunk_count as usize);
    for index in 0..chunk_count {
        let len = chunk_len.min(count - index * chunk_len);
        let at = cursor.offset();
        let kept = cursor.varint("kept count")?;
        if kept > len {
            return Err(cursor.invalid(
                "kept count",
                at,
                format!("chunk {index}: {kept} kept of {len} positions"),
            ));
        }
        if kept > 0 && codebook.is_empty() {
            return Err(cursor.invalid("kept count", at, format!("chunk {index}: kept weights but no codebook")));
        }
        let stream_len = cursor.varint("stream length")?;
        let offset = cursor.offset();
        let stream = cursor.take(stream_len, "stream")?;
        chunks.push(Chunk { kept, stream, offset });
    }
    cursor.end()?;
    Ok(BlobSection {
        section,
        offset,
        layer,
        blob,
        insert_at,
        count,
        bits,
        codebook,
        chunk_len,
        chunks,
    })
}

/// The order key of an f32: unsigned integers that ascend as the floats do in IEEE total order (negative
/// values have every bit flipped, the others their sign bit set).
pub fn key_of_float(value: f32) -> u32 {
    let bits = value.to_bits();
    if bits >> 31 == 1 {
        !bits
    } else {
        bits | 1 << 31
    }
}

/// The f32 whose order key is `key` (the inverse of [`key_of_float`]).
pub fn float_of_key(key: u32) -> f32 {
    f32::from_bits(if key >> 31 == 1 { key & !(1 << 31) } else { !key })
}

/// Appends one section: kind, body length, body, CRC-32 of the three.
pub(crate) fn write_section(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    let start = out.len();
    out.push(kind);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The fixed header.
pub(crate) fn header(section_count: u32, output_len: u64, output_crc: u32) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(&MAGIC);
    header[8..10].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&section_count.to_le_bytes());
    header[16..24].copy_from_slice(&output_len.to_le_bytes());
    header[24..28].copy_from_slice(&output_crc.to_le_bytes());
    let crc = crc32fast::hash(&header[..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    header
}
