//! The `.npy` format: header encoding and parsing, element conversion.
//!
//! Written headers are format 1.0 (2.0 is never needed: at most 64 dimensions),
//! `{'descr': ..., 'fortran_order': False, 'shape': (...), }`, padded with
//! spaces and a final newline so the data starts at a multiple of 64 bytes,
//! exactly as numpy 2 writes them (same bytes as `np.save`). Data is
//! little-endian, C order.

use std::fmt;
use std::io::Read;

use crate::error::NpzError;

/// The `.npy` magic string.
const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Digits numpy leaves room for in the first dimension (`GROWTH_AXIS_MAX_DIGITS`).
const GROWTH_AXIS_MAX_DIGITS: usize = 21;
/// numpy aligns the data start to this many bytes.
const ALIGN: usize = 64;
/// numpy's limit on the number of dimensions (`NPY_MAXDIMS` in numpy 2).
pub const MAX_DIMS: usize = 64;
/// Largest header this reader accepts. Headers of the dtypes supported here
/// are well under 1 KiB even with 64 dimensions; numpy itself refuses headers
/// over 10 000 bytes by default.
const MAX_HEADER_LEN: usize = 1 << 16;

/// Element type of an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// `<f4`
    F32,
    /// `<f8`
    F64,
    /// `|u1`
    U8,
    /// `<u2`
    U16,
    /// `<i4`
    I32,
    /// `<i8`
    I64,
    /// `|S<width>`: fixed-width byte strings, NUL-padded, `width >= 1`.
    Bytes(usize),
}

impl DType {
    /// numpy's `descr` string, e.g. `<f4` or `|S3`.
    pub fn descr(&self) -> String {
        match self {
            DType::F32 => "<f4".into(),
            DType::F64 => "<f8".into(),
            DType::U8 => "|u1".into(),
            DType::U16 => "<u2".into(),
            DType::I32 => "<i4".into(),
            DType::I64 => "<i8".into(),
            DType::Bytes(width) => format!("|S{width}"),
        }
    }

    /// Bytes per element.
    pub fn item_size(&self) -> usize {
        match self {
            DType::U8 => 1,
            DType::U16 => 2,
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::Bytes(width) => *width,
        }
    }

    /// Parses a `descr`; `None` for anything this crate does not read
    /// (big-endian, other kinds, structured dtypes, `|S0`).
    fn from_descr(descr: &str) -> Option<DType> {
        Some(match descr {
            "<f4" => DType::F32,
            "<f8" => DType::F64,
            "|u1" | "<u1" => DType::U8,
            "<u2" => DType::U16,
            "<i4" => DType::I32,
            "<i8" => DType::I64,
            _ => {
                let digits = descr.strip_prefix("|S")?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let width: usize = digits.parse().ok()?;
                if width == 0 {
                    return None;
                }
                DType::Bytes(width)
            }
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.descr())
    }
}

/// Dtype and shape of a stored array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// Element type.
    pub dtype: DType,
    /// Shape, C order; `[]` for a 0-d array (one element).
    pub shape: Vec<usize>,
}

/// A numeric array read from or written to a `.npy` member.
#[derive(Debug, Clone, PartialEq)]
pub struct Array<T> {
    /// Shape, C order; `[]` for a 0-d array.
    pub shape: Vec<usize>,
    /// Elements in C order; `data.len()` is the product of `shape`.
    pub data: Vec<T>,
}

/// A byte-string array (numpy `|S<width>`) read from a `.npy` member: one
/// buffer of `len * width` NUL-padded bytes, not one allocation per string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteStrings {
    /// Shape, C order; `[]` for a 0-d array.
    pub shape: Vec<usize>,
    /// Bytes per element, at least 1.
    pub(crate) width: usize,
    /// `len * width` bytes.
    pub(crate) bytes: Vec<u8>,
}

impl ByteStrings {
    /// Bytes per element (the `n` of `|Sn`).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of strings.
    pub fn len(&self) -> usize {
        self.bytes.len() / self.width
    }

    /// Whether the array holds no string.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// String `index` without its trailing NULs (as numpy returns it), or
    /// `None` past the end.
    pub fn get(&self, index: usize) -> Option<&[u8]> {
        let start = index.checked_mul(self.width)?;
        let padded = self.bytes.get(start..start.checked_add(self.width)?)?;
        Some(trim_nuls(padded))
    }

    /// The strings in C order, trailing NULs removed.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.bytes.chunks_exact(self.width).map(trim_nuls)
    }
}

fn trim_nuls(padded: &[u8]) -> &[u8] {
    let end = padded.iter().rposition(|&b| b != 0).map_or(0, |last| last + 1);
    &padded[..end]
}

/// Element types that map to a little-endian numpy dtype.
///
/// Sealed: implemented for `f32`, `f64`, `u8`, `u16`, `i32` and `i64`.
pub trait NpyElement: Copy + sealed::Sealed {
    /// The dtype written for this type and required when reading it.
    const DTYPE: DType;
    /// Appends the little-endian bytes of `values` to `out`.
    fn extend_le_bytes(values: &[Self], out: &mut Vec<u8>);
    /// Appends the values whose little-endian bytes are `bytes` (a whole
    /// number of elements) to `out`.
    fn extend_from_le_bytes(bytes: &[u8], out: &mut Vec<Self>);
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! npy_element {
    ($($ty:ty => $dtype:expr),* $(,)?) => {$(
        impl sealed::Sealed for $ty {}
        impl NpyElement for $ty {
            const DTYPE: DType = $dtype;
            fn extend_le_bytes(values: &[Self], out: &mut Vec<u8>) {
                for value in values {
                    out.extend_from_slice(&value.to_le_bytes());
                }
            }
            fn extend_from_le_bytes(bytes: &[u8], out: &mut Vec<Self>) {
                const SIZE: usize = std::mem::size_of::<$ty>();
                out.extend(bytes.chunks_exact(SIZE).map(|chunk| {
                    <$ty>::from_le_bytes(chunk.try_into().expect("chunks_exact yields SIZE bytes"))
                }));
            }
        }
    )*};
}

npy_element! {
    f32 => DType::F32,
    f64 => DType::F64,
    u8 => DType::U8,
    u16 => DType::U16,
    i32 => DType::I32,
    i64 => DType::I64,
}

/// Product of `shape`, `None` on overflow.
pub(crate) fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// The full `.npy` preamble (magic, version, length, padded dict) for an
/// array of `dtype` and `shape`; `shape.len() <= MAX_DIMS` (callers check).
pub(crate) fn encode_header(dtype: &DType, shape: &[usize]) -> Vec<u8> {
    let shape_repr = match shape {
        [] => "()".to_string(),
        [only] => format!("({only},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
            format!("({})", dims.join(", "))
        }
    };
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_repr}, }}",
        dtype.descr()
    );
    // numpy reserves room for the first dimension to grow to 21 digits (so
    // headers can be rewritten in place); doing the same makes our members
    // byte-identical to np.save's.
    let growth = shape.first().map_or(0, |first| {
        GROWTH_AXIS_MAX_DIGITS.saturating_sub(first.to_string().len())
    });
    let total = (10 + dict.len() + growth + 1).next_multiple_of(ALIGN);
    // Format 1.0 holds headers up to 64 KiB; with at most MAX_DIMS dimensions
    // of at most 20 digits the dict stays under 2 KiB, so 2.0 is never needed.
    let header_len = u16::try_from(total - 10).expect("header of at most MAX_DIMS dims is under 64 KiB");
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

/// Reads as many bytes as `buf` holds unless the stream ends first; returns
/// the count read.
pub(crate) fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads and validates the preamble of member `key`, whose declared size is
/// `member_size`. Returns the header and the number of bytes it occupied.
pub(crate) fn read_header<R: Read>(reader: &mut R, key: &str, member_size: u64) -> Result<(NpyHeader, u64), NpzError> {
    let header_error = |offset: usize, reason: String| NpzError::Header {
        key: key.to_string(),
        offset,
        reason,
    };
    let io_error = |source| NpzError::MemberIo {
        key: key.to_string(),
        source,
    };

    let mut start = [0u8; 8];
    let got = read_full(reader, &mut start).map_err(io_error)?;
    if got < 8 {
        return Err(header_error(
            got,
            format!("member ends after {got} bytes, inside the 8-byte magic and version"),
        ));
    }
    if &start[..6] != MAGIC {
        return Err(header_error(
            0,
            "missing the \\x93NUMPY magic: not an .npy member".into(),
        ));
    }
    let (major, minor) = (start[6], start[7]);
    let len_bytes = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => {
            return Err(header_error(
                6,
                format!("unsupported .npy format version {major}.{minor}"),
            ))
        }
    };
    let mut len_buf = [0u8; 4];
    let got = read_full(reader, &mut len_buf[..len_bytes]).map_err(io_error)?;
    if got < len_bytes {
        return Err(header_error(
            8 + got,
            "member ends inside the header length field".into(),
        ));
    }
    let header_len = u32::from_le_bytes(len_buf) as usize;
    let prefix = 8 + len_bytes;
    if header_len > MAX_HEADER_LEN {
        return Err(header_error(
            8,
            format!("header length {header_len} exceeds the {MAX_HEADER_LEN}-byte limit"),
        ));
    }
    let header_end = (prefix + header_len) as u64;
    if header_end > member_size {
        return Err(header_error(
            8,
            format!("header length {header_len} runs past the member's {member_size} bytes"),
        ));
    }
    let mut text = vec![0u8; header_len];
    let got = read_full(reader, &mut text).map_err(io_error)?;
    if got < header_len {
        return Err(header_error(
            prefix + got,
            format!("member ends inside the {header_len}-byte header"),
        ));
    }

    let dict = parse_dict(&text, prefix).map_err(|(offset, reason)| header_error(offset, reason))?;
    if dict.fortran_order {
        return Err(NpzError::FortranOrder { key: key.to_string() });
    }
    let dtype = DType::from_descr(&dict.descr).ok_or_else(|| NpzError::UnsupportedDtype {
        key: key.to_string(),
        descr: dict.descr.clone(),
    })?;
    Ok((
        NpyHeader {
            dtype,
            shape: dict.shape,
        },
        header_end,
    ))
}

/// The three keys of an `.npy` header dict.
struct HeaderDict {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A parsed Python literal of the kinds numpy writes in headers.
enum Literal {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// Cursor over the header text; errors are `(absolute byte offset, reason)`.
struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
    base: usize,
}

type ParseResult<T> = Result<T, (usize, String)>;

impl Parser<'_> {
    fn error<T>(&self, reason: impl Into<String>) -> ParseResult<T> {
        Err((self.base + self.pos, reason.into()))
    }

    fn skip_space(&mut self) {
        while self.pos < self.text.len() && matches!(self.text[self.pos], b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8) -> ParseResult<()> {
        self.skip_space();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            self.error(format!("expected '{}', found {}", byte as char, self.describe_here()))
        }
    }

    fn describe_here(&self) -> String {
        match self.peek() {
            None => "end of header".into(),
            Some(b) if b.is_ascii_graphic() => format!("'{}'", b as char),
            Some(b) => format!("byte 0x{b:02x}"),
        }
    }

    fn string(&mut self) -> ParseResult<String> {
        self.skip_space();
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return self.error(format!("expected a quoted string, found {}", self.describe_here())),
        };
        self.pos += 1;
        let start = self.pos;
        loop {
            match self.peek() {
                None => return self.error("unterminated string"),
                Some(b'\\') => return self.error("escape sequences are not supported in header strings"),
                Some(b) if b == quote => break,
                Some(_) => self.pos += 1,
            }
        }
        let content = String::from_utf8_lossy(&self.text[start..self.pos]).into_owned();
        self.pos += 1;
        Ok(content)
    }

    fn integer(&mut self) -> ParseResult<usize> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.pos == start {
            return self.error(format!("expected a dimension, found {}", self.describe_here()));
        }
        let digits = std::str::from_utf8(&self.text[start..self.pos]).expect("ASCII digits");
        let value = digits.parse::<usize>().or_else(|_| {
            self.pos = start;
            self.error(format!("dimension {digits} does not fit in usize"))
        })?;
        // Python 2 era numpy wrote long integers as `3L`.
        if self.peek() == Some(b'L') {
            self.pos += 1;
        }
        Ok(value)
    }

    fn tuple(&mut self) -> ParseResult<Vec<usize>> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        let mut trailing_comma = false;
        loop {
            self.skip_space();
            if self.peek() == Some(b')') {
                self.pos += 1;
                break;
            }
            if !dims.is_empty() && !trailing_comma {
                return self.error(format!("expected ',' or ')' in shape, found {}", self.describe_here()));
            }
            dims.push(self.integer()?);
            self.skip_space();
            trailing_comma = self.peek() == Some(b',');
            if trailing_comma {
                self.pos += 1;
            }
        }
        if dims.len() == 1 && !trailing_comma {
            return self.error("a one-element shape needs a trailing comma, like (3,)");
        }
        Ok(dims)
    }

    fn literal(&mut self) -> ParseResult<Literal> {
        self.skip_space();
        match self.peek() {
            Some(b'\'' | b'"') => self.string().map(Literal::Str),
            Some(b'(') => self.tuple().map(Literal::Tuple),
            _ if self.text[self.pos..].starts_with(b"True") => {
                self.pos += 4;
                Ok(Literal::Bool(true))
            }
            _ if self.text[self.pos..].starts_with(b"False") => {
                self.pos += 5;
                Ok(Literal::Bool(false))
            }
            _ => self.error(format!(
                "expected a string, True, False or a shape tuple, found {}",
                self.describe_here()
            )),
        }
    }
}

/// Parses the header dict; `base` is the offset of `text` within the member.
fn parse_dict(text: &[u8], base: usize) -> ParseResult<HeaderDict> {
    let mut parser = Parser { text, pos: 0, base };
    let mut descr = None;
    let mut fortran_order = None;
    let mut shape = None;
    parser.expect(b'{')?;
    loop {
        parser.skip_space();
        if parser.peek() == Some(b'}') {
            parser.pos += 1;
            break;
        }
        let key_offset = parser.pos;
        let key = parser.string()?;
        parser.expect(b':')?;
        let value_offset = parser.pos;
        let value = parser.literal()?;
        let wrong_type = |what: &str| Err((base + value_offset, format!("'{key}' must be {what}")));
        let slot_taken = match (key.as_str(), value) {
            ("descr", Literal::Str(s)) => descr.replace(s).is_some(),
            ("fortran_order", Literal::Bool(b)) => fortran_order.replace(b).is_some(),
            ("shape", Literal::Tuple(t)) => shape.replace(t).is_some(),
            ("descr", _) => return wrong_type("a string"),
            ("fortran_order", _) => return wrong_type("True or False"),
            ("shape", _) => return wrong_type("a tuple of integers"),
            _ => return Err((base + key_offset, format!("unexpected key '{key}'"))),
        };
        if slot_taken {
            return Err((base + key_offset, format!("key '{key}' appears twice")));
        }
        parser.skip_space();
        match parser.peek() {
            Some(b',') => parser.pos += 1,
            Some(b'}') => {}
            _ => return parser.error(format!("expected ',' or '}}', found {}", parser.describe_here())),
        }
    }
    parser.skip_space();
    if parser.pos != text.len() {
        return parser.error(format!("unexpected {} after the header dict", parser.describe_here()));
    }
    let end = base + text.len();
    Ok(HeaderDict {
        descr: descr.ok_or((end, "missing key 'descr'".to_string()))?,
        fortran_order: fortran_order.ok_or((end, "missing key 'fortran_order'".to_string()))?,
        shape: shape.ok_or((end, "missing key 'shape'".to_string()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ParseResult<HeaderDict> {
        parse_dict(text.as_bytes(), 10)
    }

    #[test]
    fn header_bytes_by_hand() {
        let header = encode_header(&DType::F32, &[3, 4]);
        let dict = b"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";
        // numpy 2.4 writes exactly these 128 bytes for np.zeros((3, 4), np.float32):
        // 10-byte preamble, 59-byte dict, 58 spaces, newline.
        assert_eq!(header.len(), 128);
        assert_eq!(&header[..8], b"\x93NUMPY\x01\x00");
        assert_eq!(u16::from_le_bytes([header[8], header[9]]), 118);
        assert_eq!(&header[10..10 + dict.len()], dict);
        assert!(header[10 + dict.len()..127].iter().all(|&b| b == b' '));
        assert_eq!(header[127], b'\n');
        let one_d = encode_header(&DType::Bytes(3), &[]);
        assert!(one_d.windows(11).any(|w| w == b"'shape': ()"));
        assert!(one_d.windows(13).any(|w| w == b"'descr': '|S3"));
        // np.save(np.zeros((1,) * 20, np.uint8)) has a 192-byte header: the
        // 21-digit growth room for the first dimension pushes it past 128.
        assert_eq!(encode_header(&DType::U8, &[1; 20]).len(), 192);
        assert_eq!(encode_header(&DType::U8, &[2, 3, 4, 5, 6, 7, 8, 9, 10, 11]).len(), 128);
        let single = encode_header(&DType::U8, &[7]);
        assert!(single.windows(15).any(|w| w == b"'shape': (7,), "));
    }

    #[test]
    fn parses_numpy_style_and_python2_style_headers() {
        let d = parse("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }   \n").unwrap();
        assert_eq!((d.descr.as_str(), d.fortran_order, d.shape), ("<f4", false, vec![3, 4]));
        let d = parse("{\"shape\": (2L,3L), \"fortran_order\": True, \"descr\": \"|S5\"}").unwrap();
        assert_eq!((d.descr.as_str(), d.fortran_order, d.shape), ("|S5", true, vec![2, 3]));
        assert_eq!(
            parse("{'descr':'<i8','fortran_order':False,'shape':()}").unwrap().shape,
            Vec::<usize>::new()
        );
    }

    #[test]
    fn header_errors_name_the_offset() {
        let err = |t: &str| parse(t).err().unwrap();
        assert_eq!(
            err("{'descr': '<f4', 'fortran_order': False, 'shape': (3), }").1,
            "a one-element shape needs a trailing comma, like (3,)"
        );
        let (offset, reason) = err("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 'y'}");
        assert_eq!((offset, reason.as_str()), (10 + 56, "unexpected key 'x'"));
        assert_eq!(err("{'descr': '<f4', 'shape': (3,)}").1, "missing key 'fortran_order'");
        assert_eq!(err("{'descr': '<f4', 'descr': '<f4'}").1, "key 'descr' appears twice");
        assert_eq!(err("{'descr': True}").1, "'descr' must be a string");
        assert_eq!(err("{'shape': (-1,)}").1, "expected a dimension, found '-'");
        assert_eq!(
            err("{'shape': (99999999999999999999999,)}").1,
            "dimension 99999999999999999999999 does not fit in usize"
        );
        assert_eq!(
            err("{'descr': 'a\\'b'}").1,
            "escape sequences are not supported in header strings"
        );
        assert_eq!(err("{} x").0, 10 + 3);
        assert_eq!(err("").1, "expected '{', found end of header");
    }

    #[test]
    fn descr_parsing() {
        assert_eq!(DType::from_descr("|S3"), Some(DType::Bytes(3)));
        assert_eq!(DType::from_descr("|u1"), Some(DType::U8));
        for bad in [">f4", "<f2", "|S0", "|S", "|S+3", "<U3", "O", "<c8", "|b1"] {
            assert_eq!(DType::from_descr(bad), None, "{bad}");
        }
    }
}
