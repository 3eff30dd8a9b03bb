//! A lossless, borrowed parse of a Caffe protobuf file.
//!
//! Only the path to the weights is parsed into nodes: net -> layers -> blobs -> float payloads. Every other field,
//! known or unknown to our schema (forks add `*_param` fields and reuse BlobProto numbers 10 and up), is kept as the
//! exact bytes the file had, in the order it had them. Encoding writes the same field order with recomputed lengths,
//! so an untouched file encodes to identical bytes and an edited payload changes nothing else.
//!
//! Protobuf lets a writer spend more bytes than needed: a tag or a length as an overlong varint (`c1 00` for field 8,
//! fixed64), a packed field written element by element, one repeated field split over several runs, a zero-length
//! packed field. Caffe's C++ writer never does, but any protobuf reader accepts it, and so does this one. Raw fields
//! keep their bytes anyway; for the fields the tree parses (child messages and blob payloads) the tag and length
//! bytes the file had are kept where they differ from the shortest form ([`Node::Head`], the `head` of
//! [`Node::Values`]) and written back as long as they still describe the field, so such files roundtrip byte for
//! byte too. Only a field whose length an edit changed gets a freshly encoded (shortest) length.

use crate::wire::{self, Fields, RawField, WireError, WireErrorKind, WireType};
use std::io::{self, Write};

/// Which Caffe message a [`Message`] holds; it decides which fields are parsed into child nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// `caffe.NetParameter`, the root of a `.caffemodel`.
    Net,
    /// `caffe.LayerParameter` (NetParameter field 100, `layer`).
    Layer,
    /// `caffe.V1LayerParameter` (NetParameter field 2, `layers`).
    V1Layer,
    /// `caffe.V0LayerParameter` (V1LayerParameter field 1, `layer`).
    V0Layer,
    /// `caffe.BlobProto`, also the root of a `.binaryproto`.
    Blob,
    /// `caffe.SolverState`, the root of a `.solverstate`.
    SolverState,
    /// `caffe.BlobProtoVector`.
    BlobVector,
}

impl MessageKind {
    /// The schema name of this message.
    pub fn proto_name(self) -> &'static str {
        match self {
            Self::Net => "NetParameter",
            Self::Layer => "LayerParameter",
            Self::V1Layer => "V1LayerParameter",
            Self::V0Layer => "V0LayerParameter",
            Self::Blob => "BlobProto",
            Self::SolverState => "SolverState",
            Self::BlobVector => "BlobProtoVector",
        }
    }

    /// Whether our schema defines field `number` in this message: how a file is told apart from something that is
    /// not this message at all. The root messages' numbers are listed here (they are fixed in caffe.proto for good,
    /// and a test checks them against the schema), so reading a model needs no reflection over the schema.
    pub(crate) fn defines_field(self, number: u32) -> bool {
        match self {
            // name, layers, input, input_dim, force_backward, state, debug_info, input_shape, layer
            Self::Net => matches!(number, 1..=8 | 100),
            // num, channels, height, width, data, diff, shape, double_data, double_diff
            Self::Blob => matches!(number, 1..=9),
            // iter, learned_net, history, current_step
            Self::SolverState => matches!(number, 1..=4),
            // blobs
            Self::BlobVector => number == 1,
            Self::Layer | Self::V1Layer | Self::V0Layer => caffe_proto::descriptor_pool()
                .get_message_by_name(&format!("caffe.{}", self.proto_name()))
                .is_some_and(|message| message.get_field(number).is_some()),
        }
    }

    /// The child message kind stored in field `number`, if this kind descends into it.
    fn child(self, number: u32) -> Option<(MessageKind, &'static str)> {
        Some(match (self, number) {
            (Self::Net, 100) => (Self::Layer, "layer"),
            (Self::Net, 2) => (Self::V1Layer, "layers"),
            (Self::Layer, 7) => (Self::Blob, "blobs"),
            (Self::V1Layer, 6) => (Self::Blob, "blobs"),
            (Self::V1Layer, 1) => (Self::V0Layer, "layer"),
            (Self::V0Layer, 50) => (Self::Blob, "blobs"),
            (Self::SolverState, 3) => (Self::Blob, "history"),
            (Self::BlobVector, 1) => (Self::Blob, "blobs"),
            _ => return None,
        })
    }

    /// The value payload stored in field `number` of a BlobProto: (name, element type).
    fn values(self, number: u32) -> Option<(&'static str, Elem)> {
        match (self, number) {
            (Self::Blob, 5) => Some(("data", Elem::F32)),
            (Self::Blob, 6) => Some(("diff", Elem::F32)),
            (Self::Blob, 8) => Some(("double_data", Elem::F64)),
            (Self::Blob, 9) => Some(("double_diff", Elem::F64)),
            _ => None,
        }
    }

    /// Known scalar fields whose wire type we check, so a corrupt file is refused rather than misread.
    fn scalar(self, number: u32) -> Option<(&'static str, WireType)> {
        use WireType::*;
        Some(match (self, number) {
            (Self::Net, 1) => ("name", LengthDelimited),
            (Self::Layer, 1) => ("name", LengthDelimited),
            (Self::Layer, 2) => ("type", LengthDelimited),
            (Self::V1Layer, 4) => ("name", LengthDelimited),
            (Self::V1Layer, 5) => ("type", Varint),
            (Self::V0Layer, 1) => ("name", LengthDelimited),
            (Self::V0Layer, 2) => ("type", LengthDelimited),
            (Self::Blob, 1) => ("num", Varint),
            (Self::Blob, 2) => ("channels", Varint),
            (Self::Blob, 3) => ("height", Varint),
            (Self::Blob, 4) => ("width", Varint),
            (Self::Blob, 7) => ("shape", LengthDelimited),
            (Self::SolverState, 1) => ("iter", Varint),
            (Self::SolverState, 2) => ("learned_net", LengthDelimited),
            (Self::SolverState, 4) => ("current_step", Varint),
            _ => return None,
        })
    }
}

/// Element type of a blob payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    /// `repeated float`.
    F32,
    /// `repeated double`.
    F64,
}

impl Elem {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F64 => 8,
        }
    }

    fn unpacked_wire(self) -> WireType {
        match self {
            Self::F32 => WireType::Fixed32,
            Self::F64 => WireType::Fixed64,
        }
    }
}

/// A blob payload: borrowed from the file, or replaced by the caller.
#[derive(Clone, Debug)]
pub enum Payload<'a> {
    /// A packed field's payload (wire type 2): little-endian elements back to back.
    Packed {
        /// The payload bytes.
        bytes: &'a [u8],
        /// Absolute file offset of the payload.
        offset: u64,
    },
    /// A run of unpacked elements, each its own field with a one-or-more-byte tag, `stride` bytes apart.
    Unpacked {
        /// The bytes of the whole run, tags included.
        bytes: &'a [u8],
        /// Number of elements in the run.
        count: usize,
        /// Tag length plus element size.
        stride: usize,
        /// Absolute file offset of the run.
        offset: u64,
    },
    /// Values set by the caller, written in the encoding (packed or not) the file used.
    OwnedF32 {
        /// The values.
        values: Vec<f32>,
        /// Write as one packed field rather than a field per element.
        packed: bool,
    },
    /// Double values set by the caller.
    OwnedF64 {
        /// The values.
        values: Vec<f64>,
        /// Write as one packed field rather than a field per element.
        packed: bool,
    },
}

impl Payload<'_> {
    /// Number of elements.
    pub fn len(&self, elem: Elem) -> usize {
        match self {
            Self::Packed { bytes, .. } => bytes.len() / elem.size(),
            Self::Unpacked { count, .. } => *count,
            Self::OwnedF32 { values, .. } => values.len(),
            Self::OwnedF64 { values, .. } => values.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self, elem: Elem) -> bool {
        self.len(elem) == 0
    }

    /// True when the payload is (or will be written as) one packed field rather than a field per element.
    pub fn is_packed(&self) -> bool {
        match self {
            Self::Packed { .. } => true,
            Self::Unpacked { .. } => false,
            Self::OwnedF32 { packed, .. } | Self::OwnedF64 { packed, .. } => *packed,
        }
    }

    /// Element `i` as raw little-endian bytes (4 or 8 of them), for borrowed payloads.
    fn borrowed_elem(&self, i: usize, elem: Elem) -> Option<&[u8]> {
        let n = elem.size();
        match self {
            Self::Packed { bytes, .. } => bytes.get(i * n..i * n + n),
            Self::Unpacked { bytes, stride, .. } => {
                let end = (i + 1) * stride;
                bytes.get(end - n..end)
            }
            _ => None,
        }
    }

    /// Copies elements `start..start + out.len()` into `out`, converting doubles to f32.
    pub fn read_f32(&self, elem: Elem, start: usize, out: &mut [f32]) {
        match self {
            Self::OwnedF32 { values, .. } => out.copy_from_slice(&values[start..start + out.len()]),
            Self::OwnedF64 { values, .. } => {
                for (o, v) in out.iter_mut().zip(&values[start..]) {
                    *o = *v as f32;
                }
            }
            Self::Packed { bytes, .. } if elem == Elem::F32 => {
                let src = &bytes[start * 4..(start + out.len()) * 4];
                for (o, b) in out.iter_mut().zip(src.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            _ => {
                for (k, o) in out.iter_mut().enumerate() {
                    let b = self.borrowed_elem(start + k, elem).unwrap_or(&[0; 8]);
                    *o = match elem {
                        Elem::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                        Elem::F64 => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
                    };
                }
            }
        }
    }

    /// Copies elements `start..start + out.len()` into `out` as f64 (exact for both element types).
    pub fn read_f64(&self, elem: Elem, start: usize, out: &mut [f64]) {
        match self {
            Self::OwnedF64 { values, .. } => out.copy_from_slice(&values[start..start + out.len()]),
            Self::OwnedF32 { values, .. } => {
                for (o, v) in out.iter_mut().zip(&values[start..]) {
                    *o = f64::from(*v);
                }
            }
            _ => {
                for (k, o) in out.iter_mut().enumerate() {
                    let b = self.borrowed_elem(start + k, elem).unwrap_or(&[0; 8]);
                    *o = match elem {
                        Elem::F32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                        Elem::F64 => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
                    };
                }
            }
        }
    }

    /// Absolute file offset of the first element's bytes, for borrowed payloads.
    pub fn file_offset(&self) -> Option<u64> {
        match self {
            Self::Packed { offset, .. } | Self::Unpacked { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

/// One node of a parsed message, in file order.
#[derive(Clone, Debug)]
pub enum Node<'a> {
    /// One or more consecutive fields kept byte for byte.
    Raw {
        /// The fields' bytes.
        bytes: &'a [u8],
        /// Absolute file offset of the first byte.
        offset: u64,
    },
    /// A sub-message parsed into nodes.
    Message {
        /// Field number in the parent.
        number: u32,
        /// The sub-message.
        message: Message<'a>,
    },
    /// A blob's float or double payload.
    Values {
        /// Field number in the BlobProto (5, 6, 8 or 9).
        number: u32,
        /// Element type.
        elem: Elem,
        /// The elements.
        payload: Payload<'a>,
        /// The field's head as the file had it, when that was not the shortest encoding: the tag and length of a
        /// packed field, or the tag every element of an unpacked run repeats. Written back while it still fits
        /// (same number, wire type and, when packed, length); `None` writes the shortest form.
        head: Option<&'a [u8]>,
    },
    /// Only ever the first node of a message whose tag or length in its parent was not the shortest encoding (a
    /// valid but overlong varint): those bytes as the file had them. It encodes to nothing itself; the parent
    /// writes it in place of the shortest tag and length while it still gives the message's length.
    Head {
        /// The tag and length bytes of this message's field in its parent.
        bytes: &'a [u8],
    },
}

/// A parsed message: its kind, where it starts in the file, and its nodes in file order.
#[derive(Clone, Debug)]
pub struct Message<'a> {
    /// What the message is.
    pub kind: MessageKind,
    /// Absolute file offset of the message's first byte.
    pub offset: u64,
    /// The message's fields in file order (after a `Node::Head` when its own head in the parent was overlong).
    pub nodes: Vec<Node<'a>>,
}

/// A parse error: the wire error plus the path of messages down to it (e.g. `layer[3].blobs[0]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The wire-level problem and its offset.
    pub error: WireError,
    /// Field path from the root, outermost first.
    pub path: Vec<(&'static str, usize)>,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)?;
        if !self.path.is_empty() {
            f.write_str(" (in ")?;
            for (i, (name, index)) in self.path.iter().enumerate() {
                if i > 0 {
                    f.write_str(".")?;
                }
                write!(f, "{name}[{index}]")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl<'a> Message<'a> {
    /// Parses `buf` (found at absolute offset `offset` in its file) as a message of `kind`.
    pub fn parse(kind: MessageKind, buf: &'a [u8], offset: u64) -> Result<Self, ParseError> {
        let mut nodes: Vec<Node<'a>> = Vec::new();
        let mut child_counts = [0usize; 4];
        // A run of consecutive raw fields becomes one node; `raw_start` is where the open run began in `buf`.
        let mut raw_start: Option<usize> = None;
        let at = |field: &RawField<'_>| (field.offset - offset) as usize;
        let err = |error: WireError| ParseError {
            error,
            path: Vec::new(),
        };
        for field in Fields::new(buf, offset) {
            let field = field.map_err(err)?;
            let start = at(&field);
            if let Some((child, name)) = kind.child(field.number) {
                if field.wire != WireType::LengthDelimited {
                    return Err(err(wrong_wire(&field, name, "length-delimited")));
                }
                flush_raw(&mut nodes, &mut raw_start, buf, offset, start);
                let slot = match child {
                    MessageKind::Blob => 0,
                    MessageKind::Layer => 1,
                    MessageKind::V1Layer => 2,
                    _ => 3,
                };
                let index = child_counts[slot];
                child_counts[slot] += 1;
                let mut message = Message::parse(child, field.value, field.value_offset).map_err(|mut e| {
                    e.path.insert(0, (name, index));
                    e
                })?;
                if let Some(head) = overlong_head(&field, Some(field.value.len() as u64)) {
                    message.nodes.insert(0, Node::Head { bytes: head });
                }
                nodes.push(Node::Message {
                    number: field.number,
                    message,
                });
            } else if let Some((name, elem)) = kind.values(field.number) {
                flush_raw(&mut nodes, &mut raw_start, buf, offset, start);
                push_values(&mut nodes, buf, offset, &field, name, elem).map_err(err)?;
            } else {
                if let Some((name, expected)) = kind.scalar(field.number) {
                    if field.wire != expected {
                        let expected = match expected {
                            WireType::Varint => "varint",
                            _ => "length-delimited",
                        };
                        return Err(err(wrong_wire(&field, name, expected)));
                    }
                    if expected == WireType::LengthDelimited
                        && name != "shape"
                        && std::str::from_utf8(field.value).is_err()
                    {
                        return Err(err(WireError {
                            offset: field.value_offset,
                            kind: WireErrorKind::InvalidUtf8(name),
                        }));
                    }
                }
                raw_start.get_or_insert(start);
            }
        }
        flush_raw(&mut nodes, &mut raw_start, buf, offset, buf.len());
        Ok(Message { kind, offset, nodes })
    }

    /// The raw fields of this message (its own, not its children's), in file order.
    pub fn raw_fields(&self) -> impl Iterator<Item = RawField<'a>> + '_ {
        self.nodes.iter().flat_map(|node| match node {
            // Raw spans were validated when parsed, so re-reading them cannot fail.
            Node::Raw { bytes, offset } => Fields::new(bytes, *offset).filter_map(Result::ok).collect::<Vec<_>>(),
            _ => Vec::new(),
        })
    }

    /// The last value of a scalar raw field (protobuf's rule for repeated occurrences of a singular field).
    pub fn last_raw(&self, number: u32) -> Option<RawField<'a>> {
        self.raw_fields().filter(|f| f.number == number).last()
    }

    /// Child messages in file order.
    pub fn children(&self) -> impl Iterator<Item = &Message<'a>> + '_ {
        self.nodes.iter().filter_map(|node| match node {
            Node::Message { message, .. } => Some(message),
            _ => None,
        })
    }

    /// Child messages in file order, mutable.
    pub fn children_mut(&mut self) -> impl Iterator<Item = &mut Message<'a>> + '_ {
        self.nodes.iter_mut().filter_map(|node| match node {
            Node::Message { message, .. } => Some(message),
            _ => None,
        })
    }

    /// Bytes this message's fields take when encoded (without its own tag and length).
    pub fn encoded_len(&self) -> u64 {
        self.nodes.iter().map(node_len).sum()
    }

    /// The tag and length this message had in its parent, when the file used more bytes for them than needed.
    pub fn kept_head(&self) -> Option<&'a [u8]> {
        match self.nodes.first() {
            Some(Node::Head { bytes }) => Some(bytes),
            _ => None,
        }
    }

    /// Appends the encoded fields of this message.
    pub fn encode_to<W: Write + ?Sized>(&self, out: &mut W) -> io::Result<()> {
        for node in &self.nodes {
            match node {
                Node::Raw { bytes, .. } => out.write_all(bytes)?,
                Node::Message { number, message } => {
                    let mut head = Vec::with_capacity(16);
                    let len = Some(message.encoded_len());
                    put_head(&mut head, message.kept_head(), *number, WireType::LengthDelimited, len);
                    out.write_all(&head)?;
                    message.encode_to(out)?;
                }
                Node::Values {
                    number,
                    elem,
                    payload,
                    head,
                } => encode_values(out, *number, *elem, payload, *head)?,
                Node::Head { .. } => {}
            }
        }
        Ok(())
    }
}

/// The head (tag, and length for `len: Some`) of `field` when it is longer than the shortest encoding.
fn overlong_head<'a>(field: &RawField<'a>, len: Option<u64>) -> Option<&'a [u8]> {
    let head = &field.bytes[..(field.value_offset - field.offset) as usize];
    let shortest = wire::tag_len(field.number) + len.map_or(0, wire::varint_len);
    (head.len() != shortest).then_some(head)
}

/// Appends the head to write before a field: `kept` (the file's own, possibly overlong, bytes) while it still says
/// `number`, `wire` and `len`, else the shortest encoding.
fn put_head(out: &mut Vec<u8>, kept: Option<&[u8]>, number: u32, wire: WireType, len: Option<u64>) {
    match kept {
        Some(kept) if wire::decode_head(kept) == Some((number, wire, len)) => out.extend_from_slice(kept),
        _ => {
            wire::put_tag(out, number, wire);
            if let Some(len) = len {
                wire::put_varint(out, len);
            }
        }
    }
}

/// Length of what [`put_head`] appends.
fn head_len(kept: Option<&[u8]>, number: u32, wire: WireType, len: Option<u64>) -> usize {
    match kept {
        Some(kept) if wire::decode_head(kept) == Some((number, wire, len)) => kept.len(),
        _ => wire::tag_len(number) + len.map_or(0, wire::varint_len),
    }
}

fn wrong_wire(field: &RawField<'_>, name: &'static str, expected: &'static str) -> WireError {
    WireError {
        offset: field.offset,
        kind: WireErrorKind::WrongWireType {
            field: field.number,
            name,
            found: field.wire,
            expected,
        },
    }
}

fn flush_raw<'a>(nodes: &mut Vec<Node<'a>>, raw_start: &mut Option<usize>, buf: &'a [u8], base: u64, end: usize) {
    if let Some(start) = raw_start.take() {
        nodes.push(Node::Raw {
            bytes: &buf[start..end],
            offset: base + start as u64,
        });
    }
}

fn push_values<'a>(
    nodes: &mut Vec<Node<'a>>,
    buf: &'a [u8],
    base: u64,
    field: &RawField<'a>,
    name: &'static str,
    elem: Elem,
) -> Result<(), WireError> {
    if field.wire == WireType::LengthDelimited {
        if !field.value.len().is_multiple_of(elem.size()) {
            return Err(WireError {
                offset: field.value_offset,
                kind: WireErrorKind::RaggedPacked {
                    name,
                    len: field.value.len(),
                    elem: elem.size(),
                },
            });
        }
        nodes.push(Node::Values {
            number: field.number,
            elem,
            payload: Payload::Packed {
                bytes: field.value,
                offset: field.value_offset,
            },
            head: overlong_head(field, Some(field.value.len() as u64)),
        });
        return Ok(());
    }
    if field.wire != elem.unpacked_wire() {
        let expected = match elem {
            Elem::F32 => "fixed32 or packed",
            Elem::F64 => "fixed64 or packed",
        };
        return Err(wrong_wire(field, name, expected));
    }
    // Extend the previous run when this element directly follows it with the same tag (the same number, wire type
    // and tag length: a varint of a given value and length has one encoding, so the same tag bytes).
    if let Some(Node::Values {
        number,
        payload:
            Payload::Unpacked {
                bytes,
                count,
                stride,
                offset,
            },
        ..
    }) = nodes.last_mut()
    {
        let run_start = (*offset - base) as usize;
        let field_start = (field.offset - base) as usize;
        if *number == field.number && *stride == field.bytes.len() && run_start + bytes.len() == field_start {
            *bytes = &buf[run_start..field_start + field.bytes.len()];
            *count += 1;
            return Ok(());
        }
    }
    nodes.push(Node::Values {
        number: field.number,
        elem,
        payload: Payload::Unpacked {
            bytes: field.bytes,
            count: 1,
            stride: field.bytes.len(),
            offset: field.offset,
        },
        head: overlong_head(field, None),
    });
    Ok(())
}

fn node_len(node: &Node<'_>) -> u64 {
    match node {
        Node::Raw { bytes, .. } => bytes.len() as u64,
        Node::Message { number, message } => {
            let len = message.encoded_len();
            head_len(message.kept_head(), *number, WireType::LengthDelimited, Some(len)) as u64 + len
        }
        Node::Values {
            number,
            elem,
            payload,
            head,
        } => {
            let n = payload.len(*elem) as u64;
            let size = elem.size() as u64;
            if payload.is_packed() {
                let len = n * size;
                head_len(*head, *number, WireType::LengthDelimited, Some(len)) as u64 + len
            } else {
                n * (head_len(*head, *number, elem.unpacked_wire(), None) as u64 + size)
            }
        }
        Node::Head { .. } => 0,
    }
}

fn encode_values<W: Write + ?Sized>(
    out: &mut W,
    number: u32,
    elem: Elem,
    payload: &Payload<'_>,
    kept: Option<&[u8]>,
) -> io::Result<()> {
    let n = payload.len(elem);
    let mut head = Vec::with_capacity(16);
    // A packed payload's tag and length are written once, before it; an unpacked one's tag before every element.
    let tag: &[u8] = if payload.is_packed() {
        put_head(
            &mut head,
            kept,
            number,
            WireType::LengthDelimited,
            Some((n * elem.size()) as u64),
        );
        out.write_all(&head)?;
        &[]
    } else {
        put_head(&mut head, kept, number, elem.unpacked_wire(), None);
        &head
    };
    match payload {
        // A borrowed packed payload is its elements' little-endian bytes, which is exactly their encoding.
        Payload::Packed { bytes, .. } => out.write_all(bytes),
        Payload::Unpacked { .. } => {
            let mut buf = Vec::with_capacity(tag.len() + 8);
            for i in 0..n {
                buf.clear();
                buf.extend_from_slice(tag);
                buf.extend_from_slice(payload.borrowed_elem(i, elem).unwrap_or(&[]));
                out.write_all(&buf)?;
            }
            Ok(())
        }
        Payload::OwnedF32 { values, .. } => write_elems(out, values.iter().map(|v| v.to_le_bytes()), tag),
        Payload::OwnedF64 { values, .. } => write_elems(out, values.iter().map(|v| v.to_le_bytes()), tag),
    }
}

/// Writes each element after `tag` (empty for a packed payload, whose head is already written).
fn write_elems<W: Write + ?Sized, const N: usize>(
    out: &mut W,
    elems: impl Iterator<Item = [u8; N]>,
    tag: &[u8],
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(64 * 1024);
    for bytes in elems {
        buf.extend_from_slice(tag);
        buf.extend_from_slice(&bytes);
        if buf.len() >= 60 * 1024 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)
}

#[cfg(test)]
mod tests {
    use super::MessageKind;

    #[test]
    fn the_listed_field_numbers_are_the_schemas() {
        let pool = caffe_proto::descriptor_pool();
        for kind in [
            MessageKind::Net,
            MessageKind::Layer,
            MessageKind::V1Layer,
            MessageKind::V0Layer,
            MessageKind::Blob,
            MessageKind::SolverState,
            MessageKind::BlobVector,
        ] {
            let message = pool
                .get_message_by_name(&format!("caffe.{}", kind.proto_name()))
                .expect("the schema defines every kind");
            for number in 0..=1000 {
                assert_eq!(
                    kind.defines_field(number),
                    message.get_field(number).is_some(),
                    "{} field {number}",
                    kind.proto_name()
                );
            }
        }
    }
}
