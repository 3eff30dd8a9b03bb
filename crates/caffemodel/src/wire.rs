//! Protocol-buffer wire primitives with byte offsets.
//!
//! Only what a lossless reader needs: varints, tags, and field boundaries. Every length read from a file is checked
//! against the bytes that remain before anything is sliced, so a corrupt length can never cause a large allocation
//! or an out-of-bounds read.

use std::fmt;

/// The wire type in the low three bits of a field's tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireType {
    /// Type 0: a base-128 varint.
    Varint,
    /// Type 1: eight little-endian bytes.
    Fixed64,
    /// Type 2: a varint length, then that many bytes (strings, bytes, messages, packed repeated fields).
    LengthDelimited,
    /// Type 3: start of a (deprecated) group; ends at the matching type-4 tag.
    StartGroup,
    /// Type 4: end of a group.
    EndGroup,
    /// Type 5: four little-endian bytes.
    Fixed32,
}

impl WireType {
    fn from_bits(bits: u64) -> Option<Self> {
        Some(match bits {
            0 => Self::Varint,
            1 => Self::Fixed64,
            2 => Self::LengthDelimited,
            3 => Self::StartGroup,
            4 => Self::EndGroup,
            5 => Self::Fixed32,
            _ => return None,
        })
    }

    /// The three tag bits of this wire type.
    pub fn bits(self) -> u32 {
        match self {
            Self::Varint => 0,
            Self::Fixed64 => 1,
            Self::LengthDelimited => 2,
            Self::StartGroup => 3,
            Self::EndGroup => 4,
            Self::Fixed32 => 5,
        }
    }
}

impl fmt::Display for WireType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Varint => "varint",
            Self::Fixed64 => "fixed64",
            Self::LengthDelimited => "length-delimited",
            Self::StartGroup => "start-group",
            Self::EndGroup => "end-group",
            Self::Fixed32 => "fixed32",
        };
        f.write_str(name)
    }
}

/// What is wrong with the bytes at some offset; the offset itself lives in [`WireError`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireErrorKind {
    /// A varint must end within 10 bytes and within the message.
    #[error("truncated varint")]
    TruncatedVarint,
    /// A varint may encode at most 64 bits.
    #[error("varint longer than 64 bits")]
    VarintOverflow,
    /// Field numbers start at 1.
    #[error("field number 0 is invalid")]
    FieldNumberZero,
    /// Field numbers are at most 2^29 - 1.
    #[error("field number {0} is out of range")]
    FieldNumberTooLarge(u64),
    /// Wire types 6 and 7 do not exist.
    #[error("invalid wire type {0}")]
    InvalidWireType(u64),
    /// A fixed-width value or a length-delimited payload must fit in the bytes that remain.
    #[error("{what} needs {needed} bytes but only {available} remain")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes the field claims.
        needed: u64,
        /// Bytes left in the enclosing message.
        available: u64,
    },
    /// An end-group tag must close an open group of the same number.
    #[error("unexpected end-group tag for field {0}")]
    UnexpectedEndGroup(u32),
    /// A group must be closed before its enclosing message ends.
    #[error("group for field {0} is never closed")]
    UnclosedGroup(u32),
    /// Groups nest at most 64 deep (protobuf's own recursion limit is 100).
    #[error("groups nested too deeply")]
    GroupTooDeep,
    /// A known field must use the wire type the schema gives it.
    #[error("field {field} ({name}) has wire type {found}, expected {expected}")]
    WrongWireType {
        /// Field number.
        field: u32,
        /// Field name in the schema.
        name: &'static str,
        /// Wire type in the file.
        found: WireType,
        /// Wire type the schema implies.
        expected: &'static str,
    },
    /// A packed float/double payload must be a whole number of elements.
    #[error("packed {name} payload of {len} bytes is not a multiple of {elem}")]
    RaggedPacked {
        /// Field name.
        name: &'static str,
        /// Payload length.
        len: usize,
        /// Element size.
        elem: usize,
    },
    /// Strings in the schema are UTF-8.
    #[error("{0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    /// A value must fit the field's declared integer type.
    #[error("{name} value {value} does not fit its type")]
    OutOfRange {
        /// Field name.
        name: &'static str,
        /// The value found.
        value: u64,
    },
}

/// A wire-level decoding error at an absolute byte offset in the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {offset}")]
pub struct WireError {
    /// Absolute offset in the file where the bad item starts.
    pub offset: u64,
    /// What is wrong.
    pub kind: WireErrorKind,
}

/// One field as found in a message: its number, wire type and where its bytes are.
#[derive(Clone, Copy, Debug)]
pub struct RawField<'a> {
    /// Field number.
    pub number: u32,
    /// Wire type.
    pub wire: WireType,
    /// The whole field, tag included.
    pub bytes: &'a [u8],
    /// The value: for varints the varint bytes; for length-delimited fields the payload without its length prefix;
    /// fixed-width values their bytes; groups their contents without the end tag.
    pub value: &'a [u8],
    /// Absolute file offset of the tag.
    pub offset: u64,
    /// Absolute file offset of `value`.
    pub value_offset: u64,
}

impl RawField<'_> {
    /// The varint value of a varint field.
    pub fn varint(&self) -> u64 {
        // `value` was validated as a complete varint when the field was read.
        decode_varint(self.value).map(|(v, _)| v).unwrap_or(0)
    }
}

/// Decodes a varint at the start of `buf`: the value and its length in bytes.
pub fn decode_varint(buf: &[u8]) -> Result<(u64, usize), WireErrorKind> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        let low = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return Err(WireErrorKind::VarintOverflow);
        }
        value |= low << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    if buf.len() >= 10 {
        Err(WireErrorKind::VarintOverflow)
    } else {
        Err(WireErrorKind::TruncatedVarint)
    }
}

/// Appends the canonical (shortest) varint encoding of `value`.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Length of the canonical varint encoding of `value`.
pub fn varint_len(value: u64) -> usize {
    // 1 + floor(log2(value) / 7), with 0 taking one byte.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// What a field's head (its tag, and for a length-delimited field the length after it) says: field number, wire
/// type and length. `None` unless `head` is exactly one valid tag, plus one length varint when the wire type is
/// length-delimited, with nothing left over. Used to check that a head kept from a file, which may use longer
/// varints than needed, still fits the field it would be written before.
pub fn decode_head(head: &[u8]) -> Option<(u32, WireType, Option<u64>)> {
    let (tag, n) = decode_varint(head).ok()?;
    let number = tag >> 3;
    if number == 0 || number > MAX_FIELD_NUMBER {
        return None;
    }
    let wire = WireType::from_bits(tag & 7)?;
    let rest = &head[n..];
    if wire != WireType::LengthDelimited {
        return rest.is_empty().then_some((number as u32, wire, None));
    }
    let (len, m) = decode_varint(rest).ok()?;
    (m == rest.len()).then_some((number as u32, wire, Some(len)))
}

/// Appends a field tag.
pub fn put_tag(out: &mut Vec<u8>, number: u32, wire: WireType) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire.bits()));
}

/// Length of a field tag.
pub fn tag_len(number: u32) -> usize {
    varint_len(u64::from(number) << 3)
}

const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;
const MAX_GROUP_DEPTH: usize = 64;

/// Iterates over the fields of one message held in `buf`, which starts at absolute file offset `base`.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
    failed: bool,
}

impl<'a> Fields<'a> {
    /// Fields of the message `buf`, found at absolute offset `base` in its file.
    pub fn new(buf: &'a [u8], base: u64) -> Self {
        Self {
            buf,
            pos: 0,
            base,
            failed: false,
        }
    }

    fn err(&self, at: usize, kind: WireErrorKind) -> WireError {
        WireError {
            offset: self.base + at as u64,
            kind,
        }
    }

    fn read_tag(&self, at: usize) -> Result<(u32, WireType, usize), WireError> {
        let (tag, len) = decode_varint(&self.buf[at..]).map_err(|k| self.err(at, k))?;
        let number = tag >> 3;
        if number == 0 {
            return Err(self.err(at, WireErrorKind::FieldNumberZero));
        }
        if number > MAX_FIELD_NUMBER {
            return Err(self.err(at, WireErrorKind::FieldNumberTooLarge(number)));
        }
        let wire = WireType::from_bits(tag & 7).ok_or_else(|| self.err(at, WireErrorKind::InvalidWireType(tag & 7)))?;
        Ok((number as u32, wire, len))
    }

    /// Reads the value of a field whose tag starts at `start` and ends at `at`; returns (value start, value end,
    /// field end). A value that overruns the message is reported at the field's tag.
    fn read_value(
        &self,
        number: u32,
        wire: WireType,
        start: usize,
        at: usize,
        depth: usize,
    ) -> Result<(usize, usize, usize), WireError> {
        let remaining = self.buf.len() - at;
        let fixed = |n: usize, what: &'static str| {
            if remaining < n {
                Err(self.err(
                    start,
                    WireErrorKind::Truncated {
                        what,
                        needed: n as u64,
                        available: remaining as u64,
                    },
                ))
            } else {
                Ok((at, at + n, at + n))
            }
        };
        match wire {
            WireType::Varint => {
                let (_, len) = decode_varint(&self.buf[at..]).map_err(|k| self.err(at, k))?;
                Ok((at, at + len, at + len))
            }
            WireType::Fixed64 => fixed(8, "fixed64 value"),
            WireType::Fixed32 => fixed(4, "fixed32 value"),
            WireType::LengthDelimited => {
                let (len, len_len) = decode_varint(&self.buf[at..]).map_err(|k| self.err(at, k))?;
                let payload = at + len_len;
                let available = (self.buf.len() - payload) as u64;
                if len > available {
                    return Err(self.err(
                        start,
                        WireErrorKind::Truncated {
                            what: "length-delimited field",
                            needed: len,
                            available,
                        },
                    ));
                }
                let end = payload + len as usize;
                Ok((payload, end, end))
            }
            WireType::StartGroup => {
                if depth >= MAX_GROUP_DEPTH {
                    return Err(self.err(at, WireErrorKind::GroupTooDeep));
                }
                let mut pos = at;
                loop {
                    if pos >= self.buf.len() {
                        return Err(self.err(at, WireErrorKind::UnclosedGroup(number)));
                    }
                    let (n, w, tag_len) = self.read_tag(pos)?;
                    if w == WireType::EndGroup {
                        if n != number {
                            return Err(self.err(pos, WireErrorKind::UnexpectedEndGroup(n)));
                        }
                        return Ok((at, pos, pos + tag_len));
                    }
                    let (_, _, end) = self.read_value(n, w, pos, pos + tag_len, depth + 1)?;
                    pos = end;
                }
            }
            WireType::EndGroup => Err(self.err(at, WireErrorKind::UnexpectedEndGroup(number))),
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<RawField<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        let result = self.read_tag(start).and_then(|(number, wire, tag_len)| {
            let (value_start, value_end, end) = self.read_value(number, wire, start, start + tag_len, 0)?;
            Ok((
                RawField {
                    number,
                    wire,
                    bytes: &self.buf[start..end],
                    value: &self.buf[value_start..value_end],
                    offset: self.base + start as u64,
                    value_offset: self.base + value_start as u64,
                },
                end,
            ))
        });
        match result {
            Ok((field, end)) => {
                self.pos = end;
                Some(Ok(field))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_the_protobuf_spec_examples() {
        // From the protobuf encoding guide: 1 -> 01, 150 -> 96 01, 300 -> ac 02.
        assert_eq!(decode_varint(&[0x01]), Ok((1, 1)));
        assert_eq!(decode_varint(&[0x96, 0x01]), Ok((150, 2)));
        assert_eq!(decode_varint(&[0xac, 0x02, 0xff]), Ok((300, 2)));
        let mut out = Vec::new();
        put_varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(127), 1);
        assert_eq!(varint_len(128), 2);
        assert_eq!(varint_len(u64::MAX), 10);
    }

    #[test]
    fn heads_decode_whole_or_not_at_all() {
        // Field 100, length-delimited, length 3: shortest a2 06 03; overlong a2 86 00 83 00 says the same.
        let lens = Some(3);
        assert_eq!(
            decode_head(&[0xa2, 0x06, 0x03]),
            Some((100, WireType::LengthDelimited, lens))
        );
        assert_eq!(
            decode_head(&[0xa2, 0x86, 0x00, 0x83, 0x00]),
            Some((100, WireType::LengthDelimited, lens))
        );
        // Field 8, fixed64: c1 00 (the fuzzer's overlong tag).
        assert_eq!(decode_head(&[0xc1, 0x00]), Some((8, WireType::Fixed64, None)));
        // Missing length, bytes left over, field 0, wire type 7.
        assert_eq!(decode_head(&[0xa2, 0x06]), None);
        assert_eq!(decode_head(&[0x08, 0x00]), None);
        assert_eq!(decode_head(&[0x02, 0x00]), None);
        assert_eq!(decode_head(&[0x0f]), None);
    }

    #[test]
    fn bad_varints_are_errors() {
        assert_eq!(decode_varint(&[0x80, 0x80]), Err(WireErrorKind::TruncatedVarint));
        assert_eq!(decode_varint(&[0xff; 11]), Err(WireErrorKind::VarintOverflow));
        // u64::MAX is ten bytes ending in 0x01; 0x02 in the tenth byte overflows.
        let mut max = vec![0xff; 9];
        max.push(0x01);
        assert_eq!(decode_varint(&max), Ok((u64::MAX, 10)));
        max[9] = 0x02;
        assert_eq!(decode_varint(&max), Err(WireErrorKind::VarintOverflow));
    }

    #[test]
    fn fields_report_offsets_and_truncation() {
        // field 1 varint 150; field 2 length 3 "abc"; field 3 claims 100 bytes.
        let buf = [0x08, 0x96, 0x01, 0x12, 0x03, b'a', b'b', b'c', 0x1a, 0x64, 0x00];
        let mut it = Fields::new(&buf, 1000);
        let f1 = it.next().unwrap().unwrap();
        assert_eq!((f1.number, f1.wire, f1.varint()), (1, WireType::Varint, 150));
        let f2 = it.next().unwrap().unwrap();
        assert_eq!(
            (f2.number, f2.value, f2.offset, f2.value_offset),
            (2, &b"abc"[..], 1003, 1005)
        );
        let err = it.next().unwrap().unwrap_err();
        assert_eq!(err.offset, 1008);
        assert!(matches!(
            err.kind,
            WireErrorKind::Truncated {
                needed: 100,
                available: 1,
                ..
            }
        ));
        assert!(it.next().is_none());
    }

    #[test]
    fn groups_are_skipped_whole() {
        // field 5 start-group { field 1 varint 7 } field 5 end-group, then field 2 varint 1.
        let buf = [0x2b, 0x08, 0x07, 0x2c, 0x10, 0x01];
        let fields: Vec<_> = Fields::new(&buf, 0).collect::<Result<_, _>>().unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0].value, &[0x08, 0x07]);
        assert_eq!(fields[0].bytes.len(), 4);
        let unclosed = [0x2b, 0x08, 0x07];
        let err = Fields::new(&unclosed, 0).next().unwrap().unwrap_err();
        assert_eq!(err.kind, WireErrorKind::UnclosedGroup(5));
    }
}
