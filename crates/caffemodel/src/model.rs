//! Opening Caffe binary files and borrowed views of their nets, layers and blobs.

use crate::error::{Error, Result};
use crate::tree::{Elem, Message, MessageKind, Node, Payload};
use crate::wire::{decode_varint, Fields, WireType};
use memmap2::Mmap;
use std::borrow::Cow;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What a Caffe binary file holds, decided by its extension the way Caffe's tools name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryKind {
    /// A `caffe.NetParameter`: `.caffemodel`, and legacy weight files without an extension.
    Net,
    /// A `caffe.SolverState`: `.solverstate`.
    SolverState,
    /// A `caffe.BlobProto`: `.binaryproto` (mean files).
    Blob,
}

impl BinaryKind {
    /// The kind implied by `path`'s extension; anything unrecognised is read as a net, since legacy weight files
    /// (`lenet_iter_10000`) have no extension at all.
    pub fn from_path(path: &Path) -> Self {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("solverstate") => Self::SolverState,
            Some("binaryproto") => Self::Blob,
            _ => Self::Net,
        }
    }

    /// The root message of this kind.
    pub fn message(self) -> MessageKind {
        match self {
            Self::Net => MessageKind::Net,
            Self::SolverState => MessageKind::SolverState,
            Self::Blob => MessageKind::Blob,
        }
    }
}

enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

/// A Caffe binary file held in memory: memory-mapped when opened from disk, so a 2 GB model costs no copy.
pub struct ModelFile {
    path: PathBuf,
    bytes: Bytes,
}

/// Signatures of formats people mistake for Caffe files, checked so the error can say what the file is.
const SIGNATURES: &[(&[u8], &str)] = &[
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a ZIP archive (an .npz?)"),
    (b"\x1f\x8b", "a gzip file"),
    (b"\x89HDF", "an HDF5 file"),
    (b"\x93NUMPY", "a NumPy .npy file"),
    (b"\x7fELF", "an ELF executable"),
    (b"%PDF", "a PDF document"),
    (
        b"\x89CAFFEZ\n",
        "a .caffez compressed model (`caffe-convert IN.caffez -o OUT.caffemodel` gives the caffemodel back)",
    ),
];

impl ModelFile {
    /// Opens and memory-maps `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::IsDirectory { path: path.into() });
        }
        if meta.len() == 0 {
            return Err(Error::Empty { path: path.into() });
        }
        // SAFETY: the map is read-only and private to us; like every memory-mapped reader we rely on nobody
        // truncating the file while it is open (writes of this crate replace files by rename, never in place).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Sequential);
        Self::checked(path.into(), Bytes::Mapped(map))
    }

    /// Wraps bytes already in memory; `path` names them in errors.
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self> {
        let path = path.into();
        if bytes.is_empty() {
            return Err(Error::Empty { path });
        }
        Self::checked(path, Bytes::Owned(bytes))
    }

    fn checked(path: PathBuf, bytes: Bytes) -> Result<Self> {
        let file = Self { path, bytes };
        let head = file.bytes();
        if let Some((_, what)) = SIGNATURES.iter().find(|(sig, _)| head.starts_with(sig)) {
            return Err(Error::ForeignFormat { path: file.path, what });
        }
        if looks_like_text(head) {
            return Err(Error::ForeignFormat {
                path: file.path,
                what: "protobuf text (a .prototxt), not binary",
            });
        }
        Ok(file)
    }

    /// The file's path as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Mapped(map) => map,
            Bytes::Owned(vec) => vec,
        }
    }

    /// Parses the file as a message of `kind` (lossless; payloads stay in the file).
    pub fn parse(&self, kind: MessageKind) -> Result<Message<'_>> {
        let message = Message::parse(kind, self.bytes(), 0).map_err(|error| Error::Wire {
            path: self.path.clone(),
            message: kind.proto_name(),
            error,
        })?;
        let mut numbers = Fields::new(self.bytes(), 0).map(|f| f.map(|f| f.number).unwrap_or(0));
        let first = numbers.next().unwrap_or(0);
        let any_known = std::iter::once(first).chain(numbers).any(|n| kind.defines_field(n));
        if !any_known {
            return Err(Error::NotCaffe {
                path: self.path.clone(),
                message: kind.proto_name(),
                first_field: first,
            });
        }
        Ok(message)
    }

    /// Parses the file as a net (`.caffemodel`).
    pub fn net(&self) -> Result<NetMessage<'_>> {
        let root = self.parse(MessageKind::Net)?;
        let net = NetMessage { path: &self.path, root };
        net.validate()?;
        Ok(net)
    }

    /// Parses the file as a solver state (`.solverstate`).
    pub fn solver_state(&self) -> Result<SolverStateView<'_>> {
        let root = self.parse(MessageKind::SolverState)?;
        let view = SolverStateView { path: &self.path, root };
        for (i, blob) in view.history().enumerate() {
            blob.check(&format!("history[{i}]"))
                .map_err(|message| Error::invalid(&self.path, message))?;
        }
        Ok(view)
    }

    /// Parses the file as a single blob (`.binaryproto`).
    pub fn blob(&self) -> Result<BlobFile<'_>> {
        let root = self.parse(MessageKind::Blob)?;
        let file = BlobFile { path: &self.path, root };
        file.view()
            .check("blob")
            .map_err(|message| Error::invalid(&self.path, message))?;
        Ok(file)
    }
}

/// True when the first bytes are printable text with a `:` or `{` soon, as a prototxt would be.
fn looks_like_text(head: &[u8]) -> bool {
    let head = &head[..head.len().min(256)];
    let printable = head
        .iter()
        .all(|&b| b == b'\n' || b == b'\r' || b == b'\t' || (0x20..0x7f).contains(&b));
    printable && head.len() >= 4 && head.iter().any(|&b| b == b':' || b == b'{' || b == b'#')
}

/// The layout generation of a net, as Caffe's upgrade code distinguishes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generation {
    /// `layer` (field 100) with string types: Caffe since 2015.
    Modern,
    /// `layers` (field 2) with enum types and `blobs_lr`/`weight_decay`: 2014.
    V1,
    /// V1 `layers` each wrapping a V0 `layer` (string types, padding layers): before 2014.
    V0,
}

impl Generation {
    /// The short name used in reports and JSON: `V2` (modern), `V1`, `V0`, as the fixtures' MANIFEST names them.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Modern => "V2",
            Self::V1 => "V1",
            Self::V0 => "V0",
        }
    }
}

impl std::fmt::Display for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed `.caffemodel`: the lossless tree of a NetParameter, editable blob payloads, and encoding.
pub struct NetMessage<'f> {
    path: &'f Path,
    root: Message<'f>,
}

impl<'f> NetMessage<'f> {
    /// The file this net was read from.
    pub fn path(&self) -> &Path {
        self.path
    }

    /// The net's `name`, if set.
    pub fn name(&self) -> Option<Cow<'f, str>> {
        raw_string(&self.root, 1)
    }

    /// The layout generation: modern `layer`, V1 `layers`, or V0 layers wrapped in V1 ones.
    pub fn generation(&self) -> Generation {
        let mut generation = Generation::Modern;
        for layer in self.root.children() {
            match layer.kind {
                MessageKind::V1Layer if layer.children().any(|c| c.kind == MessageKind::V0Layer) => {
                    return Generation::V0
                }
                MessageKind::V1Layer => generation = Generation::V1,
                _ => {}
            }
        }
        generation
    }

    /// The layers, `layer` and `layers` alike, in file order.
    pub fn layers(&self) -> Vec<LayerView<'_, 'f>> {
        self.root
            .children()
            .enumerate()
            .map(|(index, message)| LayerView { message, index })
            .collect()
    }

    /// The root message tree.
    pub fn message(&self) -> &Message<'f> {
        &self.root
    }

    fn validate(&self) -> Result<()> {
        for layer in self.layers() {
            for (b, blob) in layer.blobs().iter().enumerate() {
                blob.check(&format!("layer {} ('{}') blob {b}", layer.index, layer.name()))
                    .map_err(|message| Error::invalid(self.path, message))?;
            }
        }
        Ok(())
    }

    /// Replaces the float data of blob `blob` of layer `layer` (indices as in [`NetMessage::layers`]). The new values must
    /// have the blob's element count; they are written in the encoding the file used, so nothing else changes.
    pub fn set_blob_data(&mut self, layer: usize, blob: usize, values: Vec<f32>) -> Result<()> {
        let path = self.path;
        let layer_msg = self
            .root
            .children_mut()
            .nth(layer)
            .ok_or_else(|| Error::invalid(path, format!("no layer {layer}")))?;
        let blob_msg = blobs_mut(layer_msg)
            .into_iter()
            .nth(blob)
            .ok_or_else(|| Error::invalid(path, format!("layer {layer} has no blob {blob}")))?;
        let want = data_field(blob_msg);
        let data_len: usize = data_payloads(blob_msg).map(|(p, e)| p.len(e)).sum();
        if data_len != values.len() {
            return Err(Error::invalid(
                path,
                format!(
                    "layer {layer} blob {blob}: new data has {} values, the blob holds {data_len}",
                    values.len()
                ),
            ));
        }
        // The usual blob, one f32 payload, takes the new values without a copy.
        let single = data_payloads(blob_msg).count() == 1;
        let mut values = Some(values);
        let mut at = 0;
        for node in &mut blob_msg.nodes {
            if let Node::Values {
                number, elem, payload, ..
            } = node
            {
                // Only the payloads the blob's values are read from (a blob may hold both data and double_data).
                if *number != want {
                    continue;
                }
                let n = payload.len(*elem);
                // Keep the encoding the field has now (also after an earlier edit made it owned).
                let packed = payload.is_packed();
                *payload = match elem {
                    Elem::F32 if single => Payload::OwnedF32 {
                        values: values.take().unwrap_or_default(),
                        packed,
                    },
                    Elem::F32 => Payload::OwnedF32 {
                        values: values.as_deref().unwrap_or_default()[at..at + n].to_vec(),
                        packed,
                    },
                    // A double blob keeps its element type; f32 -> f64 is exact.
                    Elem::F64 => Payload::OwnedF64 {
                        values: values.as_deref().unwrap_or_default()[at..at + n]
                            .iter()
                            .map(|&v| f64::from(v))
                            .collect(),
                        packed,
                    },
                };
                at += n;
            }
        }
        Ok(())
    }

    /// Bytes the net takes when encoded.
    pub fn encoded_len(&self) -> u64 {
        self.root.encoded_len()
    }

    /// Encodes the net: identical to the input bytes when nothing was changed.
    pub fn encode_to<W: Write + ?Sized>(&self, out: &mut W) -> std::io::Result<()> {
        self.root.encode_to(out)
    }

    /// Encodes the net into a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len() as usize);
        self.encode_to(&mut out).expect("writing to a Vec cannot fail");
        out
    }
}

fn blobs_mut<'m, 'f>(layer: &'m mut Message<'f>) -> Vec<&'m mut Message<'f>> {
    let mut out = Vec::new();
    for child in layer.children_mut() {
        match child.kind {
            MessageKind::Blob => out.push(child),
            MessageKind::V0Layer => out.extend(child.children_mut().filter(|c| c.kind == MessageKind::Blob)),
            _ => {}
        }
    }
    out
}

/// The field a blob's values are read from, as Caffe's `Blob::FromProto` chooses: `double_data` (8) when it holds
/// any value, else `data` (5).
fn data_field(blob: &Message<'_>) -> u32 {
    let has_f64 = blob
        .nodes
        .iter()
        .any(|n| matches!(n, Node::Values { number: 8, payload, elem, .. } if !payload.is_empty(*elem)));
    if has_f64 {
        8
    } else {
        5
    }
}

fn data_payloads<'m, 'f>(blob: &'m Message<'f>) -> impl Iterator<Item = (&'m Payload<'f>, Elem)> + 'm {
    let want = data_field(blob);
    blob.nodes.iter().filter_map(move |n| match n {
        Node::Values {
            number, elem, payload, ..
        } if *number == want => Some((payload, *elem)),
        _ => None,
    })
}

fn raw_string<'f>(message: &Message<'f>, number: u32) -> Option<Cow<'f, str>> {
    message.last_raw(number).map(|f| String::from_utf8_lossy(f.value))
}

/// One layer of a [`NetMessage`], whatever its generation.
#[derive(Clone, Copy)]
pub struct LayerView<'n, 'f> {
    message: &'n Message<'f>,
    /// Position among the net's layers, in file order.
    pub index: usize,
}

impl<'n, 'f> LayerView<'n, 'f> {
    /// The wrapped V0 layer of a V0 net's V1 layer.
    fn v0(&self) -> Option<&'n Message<'f>> {
        self.message.children().find(|c| c.kind == MessageKind::V0Layer)
    }

    /// String field `number` of the wrapped V0 layer. A file may repeat the (singular) `layer` field; protobuf
    /// merges the occurrences, so the last value set in any of them counts.
    fn v0_string(&self, number: u32) -> Option<Cow<'f, str>> {
        self.message
            .children()
            .filter(|c| c.kind == MessageKind::V0Layer)
            .filter_map(|v0| raw_string(v0, number))
            .last()
    }

    /// The layer's generation.
    pub fn generation(&self) -> Generation {
        match self.message.kind {
            MessageKind::V1Layer if self.v0().is_some() => Generation::V0,
            MessageKind::V1Layer => Generation::V1,
            _ => Generation::Modern,
        }
    }

    /// The layer's name ("" when unset, as Caffe reads it).
    pub fn name(&self) -> Cow<'f, str> {
        let own = match self.message.kind {
            MessageKind::V1Layer => raw_string(self.message, 4),
            _ => raw_string(self.message, 1),
        };
        own.or_else(|| self.v0_string(1)).unwrap_or(Cow::Borrowed(""))
    }

    /// The layer's type as stored: a string for modern and V0 layers, the enum's name for V1 ones
    /// (`CONVOLUTION`), or its number when our schema does not know it.
    pub fn type_name(&self) -> Cow<'f, str> {
        match self.generation() {
            Generation::Modern => raw_string(self.message, 2).unwrap_or(Cow::Borrowed("")),
            Generation::V0 => self.v0_string(2).unwrap_or(Cow::Borrowed("")),
            Generation::V1 => {
                let value = self.message.last_raw(5).map(|f| f.varint()).unwrap_or(0);
                Cow::Owned(v1_type_name(value))
            }
        }
    }

    /// The layer's type in the modern spelling (`CONVOLUTION` and V0's `conv` become `Convolution`).
    pub fn modern_type_name(&self) -> String {
        crate::upgrade::modern_type_name(&self.type_name()).to_string()
    }

    /// The layer's blobs, in order.
    pub fn blobs(&self) -> Vec<BlobView<'n, 'f>> {
        let mut out = Vec::new();
        for child in self.message.children() {
            match child.kind {
                MessageKind::Blob => out.push(BlobView { message: child }),
                MessageKind::V0Layer => out.extend(
                    child
                        .children()
                        .filter(|c| c.kind == MessageKind::Blob)
                        .map(|message| BlobView { message }),
                ),
                _ => {}
            }
        }
        out
    }

    /// The layer's message tree.
    pub fn message(&self) -> &'n Message<'f> {
        self.message
    }
}

/// True for layer types whose first blob is a weight tensor that magnitude pruning applies to: Convolution,
/// InnerProduct and Deconvolution, under their modern, V1 and V0 names.
pub fn is_prunable_type(type_name: &str) -> bool {
    matches!(
        crate::upgrade::modern_type_name(type_name),
        "Convolution" | "InnerProduct" | "Deconvolution"
    )
}

/// Output rows (filters) of a layer's weight blob, for viewing it as a 2-D (outputs x rest) matrix: InnerProduct
/// weights are (outputs x inputs), also when stored 4-D as (1, 1, outputs, inputs); every other layer's blobs have
/// their outputs on the first axis. Returns 0 for an empty blob.
pub fn output_rows(type_name: &str, dims: &[i64], count: u64) -> u64 {
    if count == 0 {
        return 0;
    }
    let inner_product = crate::upgrade::modern_type_name(type_name) == "InnerProduct";
    let rows = if inner_product && dims.len() >= 2 {
        dims[..dims.len() - 1].iter().map(|&d| d.max(0) as u64).product::<u64>()
    } else {
        dims.first().map_or(1, |&d| d.max(0) as u64)
    };
    // A ragged legacy shape cannot make rows exceed the count.
    rows.clamp(1, count)
}

/// The name of V1LayerParameter.LayerType value `value`, from our schema.
pub fn v1_type_name(value: u64) -> String {
    caffe_proto::descriptor_pool()
        .get_enum_by_name("caffe.V1LayerParameter.LayerType")
        .and_then(|e| i32::try_from(value).ok().and_then(|v| e.get_value(v)))
        .map(|v| v.name().to_string())
        .unwrap_or_else(|| format!("UNKNOWN_{value}"))
}

/// A blob's shape as stored, chosen as Caffe's `Blob::FromProto` does: the legacy 4-D num/channels/height/width
/// when any of them is present (a missing one is 0), else `shape` (no `shape` either: 0-D).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobShape {
    /// The dimensions.
    pub dims: Vec<i64>,
    /// True when the shape came from the legacy num/channels/height/width fields.
    pub legacy: bool,
}

impl BlobShape {
    /// Number of elements the shape describes (1 for a 0-D shape, as in Caffe), or `None` on a negative dimension or
    /// overflow.
    pub fn count(&self) -> Option<u64> {
        self.dims
            .iter()
            .try_fold(1u64, |acc, &d| u64::try_from(d).ok().and_then(|d| acc.checked_mul(d)))
    }
}

impl std::fmt::Display for BlobShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dims: Vec<String> = self.dims.iter().map(i64::to_string).collect();
        write!(f, "{}", dims.join("x"))
    }
}

/// One blob (`caffe.BlobProto`) of a layer, a solver state or a `.binaryproto`.
#[derive(Clone, Copy)]
pub struct BlobView<'n, 'f> {
    message: &'n Message<'f>,
}

impl<'n, 'f> BlobView<'n, 'f> {
    /// The blob's shape as stored (legacy 4-D shapes stay 4-D), by Caffe's rule: legacy fields first, see
    /// [`BlobShape`].
    pub fn shape(&self) -> BlobShape {
        let mut dims = Vec::new();
        let mut legacy = [0i64; 4];
        let mut has_legacy = false;
        for field in self.message.raw_fields() {
            match field.number {
                7 => {
                    // BlobShape.dim (1) is packed int64; repeated occurrences concatenate, as protobuf merges them.
                    for dim in Fields::new(field.value, field.value_offset).flatten() {
                        if dim.number != 1 {
                            continue;
                        }
                        match dim.wire {
                            WireType::Varint => dims.push(dim.varint() as i64),
                            WireType::LengthDelimited => {
                                let mut rest = dim.value;
                                while let Ok((v, n)) = decode_varint(rest) {
                                    dims.push(v as i64);
                                    rest = &rest[n..];
                                    if rest.is_empty() {
                                        break;
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                n @ 1..=4 => {
                    has_legacy = true;
                    // int32 fields are sign-extended to 64 bits on the wire.
                    legacy[n as usize - 1] = field.varint() as i64 as i32 as i64;
                }
                _ => {}
            }
        }
        if has_legacy {
            BlobShape {
                dims: legacy.to_vec(),
                legacy: true,
            }
        } else {
            BlobShape { dims, legacy: false }
        }
    }

    /// The blob's data: `double_data` when it holds any value, else `data` (Caffe's `Blob::FromProto`).
    pub fn data(&self) -> BlobValues<'n, 'f> {
        let segments: Vec<_> = data_payloads(self.message).collect();
        let len = segments.iter().map(|(p, e)| p.len(*e)).sum();
        BlobValues { segments, len }
    }

    /// True when the blob carries a gradient (`diff` or `double_diff`).
    pub fn has_diff(&self) -> bool {
        self.message
            .nodes
            .iter()
            .any(|n| matches!(n, Node::Values { number: 6 | 9, payload, elem, .. } if !payload.is_empty(*elem)))
    }

    /// Absolute file offset of the blob message.
    pub fn offset(&self) -> u64 {
        self.message.offset
    }

    /// Checks that the shape is valid and the data, when present, has as many values as the shape says.
    pub fn check(&self, what: &str) -> Result<(), String> {
        let shape = self.shape();
        let count = shape
            .count()
            .ok_or_else(|| format!("{what} at byte {}: invalid shape {shape}", self.offset()))?;
        let len = self.data().len() as u64;
        if len != 0 && len != count {
            return Err(format!(
                "{what} at byte {}: shape {shape} holds {count} values but the data has {len}",
                self.offset()
            ));
        }
        Ok(())
    }
}

/// The values of a blob, possibly split over several fields; read without copying the whole payload.
pub struct BlobValues<'n, 'f> {
    segments: Vec<(&'n Payload<'f>, Elem)>,
    len: usize,
}

impl BlobValues<'_, '_> {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the blob has no values.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element type of the stored values (of the first segment).
    pub fn elem(&self) -> Elem {
        self.segments.first().map(|(_, e)| *e).unwrap_or(Elem::F32)
    }

    /// The values as an `&[f32]` straight from the file when they are one packed little-endian f32 payload at an
    /// aligned address: no copy at all.
    pub fn as_f32_slice(&self) -> Option<&[f32]> {
        if cfg!(target_endian = "big") || self.segments.len() != 1 {
            return None;
        }
        match self.segments[0] {
            (Payload::Packed { bytes, .. }, Elem::F32) => {
                // SAFETY: f32 has no invalid bit patterns; alignment and length are checked by align_to.
                let (head, body, tail) = unsafe { bytes.align_to::<f32>() };
                (head.is_empty() && tail.is_empty()).then_some(body)
            }
            (Payload::OwnedF32 { values, .. }, _) => Some(values),
            _ => None,
        }
    }

    /// Where the values lie in the file when they are one packed little-endian f32 payload: the byte range of
    /// the payload (its field's tag and length come just before). `None` for doubles, unpacked or split values,
    /// and values set in memory.
    pub fn packed_f32_range(&self) -> Option<std::ops::Range<u64>> {
        match self.segments.as_slice() {
            [(Payload::Packed { bytes, offset }, Elem::F32)] => Some(*offset..*offset + bytes.len() as u64),
            _ => None,
        }
    }

    /// Copies values `start..start + out.len()` into `out` (doubles are rounded to f32).
    pub fn read_f32(&self, mut start: usize, mut out: &mut [f32]) {
        for (payload, elem) in &self.segments {
            if out.is_empty() {
                break;
            }
            let n = payload.len(*elem);
            if start >= n {
                start -= n;
                continue;
            }
            let take = (n - start).min(out.len());
            let (head, tail) = out.split_at_mut(take);
            payload.read_f32(*elem, start, head);
            out = tail;
            start = 0;
        }
    }

    /// All values as f32: borrowed when [`BlobValues::as_f32_slice`] can lend them, else copied once.
    pub fn f32s(&self) -> std::borrow::Cow<'_, [f32]> {
        match self.as_f32_slice() {
            Some(slice) => std::borrow::Cow::Borrowed(slice),
            None => std::borrow::Cow::Owned(self.to_vec_f32()),
        }
    }

    /// All values as f32, copied once. A large copy's pages are faulted in ahead, a range per system call
    /// rather than a fault per page: this copy's 480 faults took about 0.7 ms of a 5 ms LeNet prune.
    pub fn to_vec_f32(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.len);
        pages::prefault_for_writing(&mut out);
        if let Some(slice) = self.as_f32_slice() {
            pages::prefault_for_reading(slice);
            out.extend_from_slice(slice);
        } else {
            out.resize(self.len, 0.0);
            self.read_f32(0, &mut out);
        }
        out
    }

    /// All values as f64 (exact for both element types).
    pub fn to_vec_f64(&self) -> Vec<f64> {
        let mut out = vec![0.0; self.len];
        let mut at = 0;
        for (payload, elem) in &self.segments {
            let n = payload.len(*elem);
            payload.read_f64(*elem, 0, &mut out[at..at + n]);
            at += n;
        }
        out
    }

    /// Calls `f` with consecutive chunks of at most `chunk` values, borrowing from the file where possible and
    /// otherwise through one reused buffer.
    pub fn for_each_chunk(&self, chunk: usize, mut f: impl FnMut(&[f32])) {
        let chunk = chunk.max(1);
        if let Some(slice) = self.as_f32_slice() {
            slice.chunks(chunk).for_each(f);
            return;
        }
        let mut buf = vec![0.0f32; chunk.min(self.len)];
        let mut start = 0;
        while start < self.len {
            let n = chunk.min(self.len - start);
            self.read_f32(start, &mut buf[..n]);
            f(&buf[..n]);
            start += n;
        }
    }
}

/// A parsed `.binaryproto`: one BlobProto.
pub struct BlobFile<'f> {
    path: &'f Path,
    root: Message<'f>,
}

impl<'f> BlobFile<'f> {
    /// The file.
    pub fn path(&self) -> &Path {
        self.path
    }

    /// The blob.
    pub fn view(&self) -> BlobView<'_, 'f> {
        BlobView { message: &self.root }
    }

    /// Encodes the blob (identical bytes when unchanged).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.root.encoded_len() as usize);
        self.root.encode_to(&mut out).expect("writing to a Vec cannot fail");
        out
    }
}

/// A parsed `.solverstate`.
pub struct SolverStateView<'f> {
    path: &'f Path,
    root: Message<'f>,
}

impl<'f> SolverStateView<'f> {
    /// The file.
    pub fn path(&self) -> &Path {
        self.path
    }

    /// The iteration the state was saved at.
    pub fn iter(&self) -> Option<i64> {
        self.root.last_raw(1).map(|f| f.varint() as i64 as i32 as i64)
    }

    /// The snapshot's weights file, as the solver recorded it.
    pub fn learned_net(&self) -> Option<Cow<'f, str>> {
        raw_string(&self.root, 2)
    }

    /// The learning-rate step (for the `multistep` policy).
    pub fn current_step(&self) -> Option<i64> {
        self.root.last_raw(4).map(|f| f.varint() as i64 as i32 as i64)
    }

    /// The solver's history blobs (momentum and the like), in order.
    pub fn history(&self) -> impl Iterator<Item = BlobView<'_, 'f>> + '_ {
        self.root
            .children()
            .filter(|c| c.kind == MessageKind::Blob)
            .map(|message| BlobView { message })
    }

    /// Encodes the state (identical bytes when unchanged).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.root.encoded_len() as usize);
        self.root.encode_to(&mut out).expect("writing to a Vec cannot fail");
        out
    }
}
