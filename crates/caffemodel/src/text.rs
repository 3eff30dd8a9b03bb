//! Protobuf text format (`.prototxt`): parsing with line:column errors, and printing.
//!
//! Parsing goes through prost-reflect's text-format parser against a descriptor pool: our own schema by default, or
//! a fork's `caffe.proto` compiled at run time ([`Schema::from_proto_file`]), so nets with fork-only fields parse.

use crate::error::{Error, Result};
use crate::tree::{Message, Node};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, Value};
use std::path::Path;

/// The schema files are read against: ours, or a fork's.
#[derive(Clone, Debug)]
pub struct Schema {
    pool: DescriptorPool,
}

impl Default for Schema {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Schema {
    /// Our `caffe.proto`, compiled into the binary.
    pub fn builtin() -> Self {
        Self {
            pool: caffe_proto::descriptor_pool().clone(),
        }
    }

    /// A fork's `caffe.proto` (package `caffe`), compiled now.
    pub fn from_proto_file(path: &Path) -> Result<Self> {
        let pool = caffe_proto::compile_proto(path).map_err(|e| Error::invalid(path, e.to_string()))?;
        Ok(Self { pool })
    }

    /// The descriptor of `caffe.<name>`.
    pub fn message(&self, name: &str) -> Option<MessageDescriptor> {
        self.pool.get_message_by_name(&format!("caffe.{name}"))
    }

    /// The pool.
    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary_compat(offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, index: usize) -> usize;
}

impl FloorCharBoundary for str {
    fn floor_char_boundary_compat(&self, mut index: usize) -> usize {
        while !self.is_char_boundary(index) {
            index -= 1;
        }
        index
    }
}

/// Parses `text` (read from `path`) as a message `caffe.<message>` of `schema`.
pub fn parse(path: &Path, text: &str, schema: &Schema, message: &str) -> Result<DynamicMessage> {
    let desc = schema
        .message(message)
        .ok_or_else(|| Error::invalid(path, format!("the schema has no message caffe.{message}")))?;
    DynamicMessage::parse_text_format(desc, text).map_err(|e| {
        use miette::Diagnostic;
        let offset = e
            .labels()
            .and_then(|mut labels| labels.next())
            .map_or(0, |label| label.offset());
        let (line, column) = line_column(text, offset);
        Error::Text {
            path: path.into(),
            line,
            column,
            message: e.to_string(),
        }
    })
}

/// Reads a text file, refusing directories and binary content with clear errors.
pub fn read_text_file(path: &Path) -> Result<String> {
    if path.is_dir() {
        return Err(Error::IsDirectory { path: path.into() });
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let (line, column) = (0, e.utf8_error().valid_up_to());
        let _ = line;
        Error::invalid(path, format!("not a text file: invalid UTF-8 at byte {column}"))
    })
}

/// Reads a net `.prototxt` (modern, V1 or V0 layout) into the typed NetParameter. Fields only a fork's schema knows
/// are parsed (so the file is accepted) but have no place in the typed message.
pub fn read_net(path: &Path, schema: &Schema) -> Result<caffe_proto::NetParameter> {
    let text = read_text_file(path)?;
    let dynamic = parse(path, &text, schema, "NetParameter")?;
    to_typed(path, &dynamic)
}

/// Reads a net `.prototxt` and upgrades a V0/V1 or legacy-input layout to the modern one, as Caffe's
/// `ReadNetParamsFromTextFileOrDie` does before building a net.
pub fn read_net_upgraded(path: &Path, schema: &Schema) -> Result<caffe_proto::NetParameter> {
    let mut net = read_net(path, schema)?;
    if crate::upgrade::net_needs_upgrade(&net) {
        crate::upgrade::upgrade_net(&mut net).map_err(|e| Error::invalid(path, format!("upgrade: {e}")))?;
    }
    Ok(net)
}

/// Reads a solver `.prototxt` into the typed SolverParameter.
pub fn read_solver(path: &Path, schema: &Schema) -> Result<caffe_proto::SolverParameter> {
    let text = read_text_file(path)?;
    let dynamic = parse(path, &text, schema, "SolverParameter")?;
    to_typed(path, &dynamic)
}

/// A text-parsed message as its typed counterpart (e.g. `caffe_proto::NetParameter`); `path` names the file in errors.
pub fn to_typed<T: prost::Message + Default>(path: &Path, dynamic: &DynamicMessage) -> Result<T> {
    T::decode(dynamic.encode_to_vec().as_slice()).map_err(|e| Error::invalid(path, e.to_string()))
}

/// Prints a typed message as protobuf text, the way `caffe.proto`'s field names spell it.
pub fn to_text<T: prost::Message>(message: &T, schema: &Schema, name: &str) -> String {
    let desc = schema
        .message(name)
        .expect("the schema defines the message being printed");
    let dynamic = DynamicMessage::decode(desc, message.encode_to_vec().as_slice())
        .expect("a typed message re-decodes against its own schema");
    format_text(&dynamic)
}

/// Prints a parsed binary message tree as protobuf text. Without `with_values`, blob payloads (data, diff) are left
/// out and shapes kept, so two models can be diffed by structure; unknown fields print by number.
pub fn tree_to_text(path: &Path, tree: &Message<'_>, schema: &Schema, with_values: bool) -> Result<String> {
    let desc = schema.message(tree.kind.proto_name()).ok_or_else(|| {
        Error::invalid(
            path,
            format!("the schema has no message caffe.{}", tree.kind.proto_name()),
        )
    })?;
    let mut bytes = Vec::new();
    let stripped;
    let tree = if with_values {
        tree
    } else {
        stripped = without_values(tree);
        &stripped
    };
    tree.encode_to(&mut bytes).expect("writing to a Vec cannot fail");
    let dynamic = DynamicMessage::decode(desc, bytes.as_slice()).map_err(|e| Error::invalid(path, e.to_string()))?;
    Ok(format_text(&dynamic))
}

/// Prints `message` the way Caffe writes prototxt (protobuf's C++ `TextFormat::Print`): fields in number order,
/// one line per repeated element, `name { ... }` blocks indented by two spaces, enums by name, floats in C++'s
/// shortest round-trip form (`1`, `0.00390625`, `1e-05`), strings C-escaped with octal for non-ASCII bytes.
pub fn format_text(message: &DynamicMessage) -> String {
    let mut out = String::new();
    print_message(&mut out, message, 0);
    out
}

fn print_message(out: &mut String, message: &DynamicMessage, depth: usize) {
    let mut fields: Vec<_> = message.fields().collect();
    fields.sort_by_key(|(f, _)| f.number());
    let indent = "  ".repeat(depth);
    for (field, value) in fields {
        let name = if field.is_group() {
            field
                .kind()
                .as_message()
                .map_or_else(|| field.name().to_string(), |m| m.name().to_string())
        } else {
            field.name().to_string()
        };
        match value {
            Value::List(items) => {
                for item in items {
                    print_value(out, &indent, &name, item, &field.kind(), depth);
                }
            }
            other => print_value(out, &indent, &name, other, &field.kind(), depth),
        }
    }
    for unknown in message.unknown_fields() {
        let mut bytes = Vec::new();
        unknown.encode(&mut bytes);
        for f in crate::wire::Fields::new(&bytes, 0).flatten() {
            let value = match f.wire {
                crate::wire::WireType::Varint => f.varint().to_string(),
                crate::wire::WireType::Fixed32 => {
                    format!("0x{:08x}", u32::from_le_bytes(f.value.try_into().unwrap_or([0; 4])))
                }
                crate::wire::WireType::Fixed64 => {
                    format!("0x{:016x}", u64::from_le_bytes(f.value.try_into().unwrap_or([0; 8])))
                }
                _ => format!("\"{}\"", c_escape(f.value)),
            };
            out.push_str(&format!("{indent}{}: {value}\n", f.number));
        }
    }
}

fn print_value(out: &mut String, indent: &str, name: &str, value: &Value, kind: &Kind, depth: usize) {
    match value {
        Value::Message(m) => {
            out.push_str(&format!("{indent}{name} {{\n"));
            print_message(out, m, depth + 1);
            out.push_str(&format!("{indent}}}\n"));
        }
        other => out.push_str(&format!("{indent}{name}: {}\n", scalar_text(other, kind))),
    }
}

fn scalar_text(value: &Value, kind: &Kind) -> String {
    match value {
        Value::Bool(b) => b.to_string(),
        Value::I32(v) => v.to_string(),
        Value::I64(v) => v.to_string(),
        Value::U32(v) => v.to_string(),
        Value::U64(v) => v.to_string(),
        Value::F32(v) => format_float(f64::from(*v), true),
        Value::F64(v) => format_float(*v, false),
        Value::String(s) => format!("\"{}\"", c_escape(s.as_bytes())),
        Value::Bytes(b) => format!("\"{}\"", c_escape(b)),
        Value::EnumNumber(n) => kind
            .as_enum()
            .and_then(|e| e.get_value(*n))
            .map_or_else(|| n.to_string(), |v| v.name().to_string()),
        Value::Message(_) | Value::List(_) | Value::Map(_) => String::new(),
    }
}

/// C's `%.{precision}g`.
fn format_g(value: f64, precision: usize) -> String {
    let sci = format!("{:.*e}", precision - 1, value);
    let (mantissa, exponent) = sci.split_once('e').expect("{:e} output has an exponent");
    let exponent: i32 = exponent.parse().expect("{:e} exponent is an integer");
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if exponent < -4 || exponent >= precision as i32 {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exponent.abs())
    } else {
        let decimals = (precision as i32 - 1 - exponent).max(0) as usize;
        trim(&format!("{value:.decimals$}"))
    }
}

/// protobuf's SimpleFtoa / SimpleDtoa: the short `%g` form when it reads back exactly, else the long one.
fn format_float(value: f64, single: bool) -> String {
    if value.is_nan() {
        return "nan".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let (short, long) = if single { (6, 9) } else { (15, 17) };
    let text = format_g(value, short);
    let exact = if single {
        text.parse::<f32>().ok() == Some(value as f32)
    } else {
        text.parse::<f64>().ok() == Some(value)
    };
    if exact {
        text
    } else {
        format_g(value, long)
    }
}

/// C-style escaping as protobuf's CEscape: \n \r \t \" \' \\, other bytes outside printable ASCII as octal.
fn c_escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b'"' => out.push_str("\\\""),
            b'\'' => out.push_str("\\'"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out
}

/// A copy of `tree` with every blob payload removed.
fn without_values<'a>(tree: &Message<'a>) -> Message<'a> {
    Message {
        kind: tree.kind,
        offset: tree.offset,
        nodes: tree
            .nodes
            .iter()
            .filter_map(|node| match node {
                Node::Values { .. } => None,
                Node::Message { number, message } => Some(Node::Message {
                    number: *number,
                    message: without_values(message),
                }),
                raw => Some(raw.clone()),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_cpp_simple_ftoa() {
        // Expected strings are what C's printf("%.6g") / ("%.9g") give for these values.
        let cases: [(f32, &str); 9] = [
            (1.0, "1"),
            (0.00390625, "0.00390625"),
            (0.0001, "0.0001"),
            (1e-5, "1e-05"),
            (0.9, "0.9"),
            (0.1, "0.1"),
            (1234567.0, "1234567"),
            (-2.5e10, "-2.5e+10"),
            (0.333_333_34, "0.333333343"),
        ];
        for (v, text) in cases {
            assert_eq!(format_float(f64::from(v), true), text, "{v}");
        }
        assert_eq!(format_float(0.1, false), "0.1");
        assert_eq!(format_float(f64::NAN, true), "nan");
        assert_eq!(c_escape("a\"b\n\u{e9}".as_bytes()), "a\\\"b\\n\\303\\251");
    }

    #[test]
    fn line_column_counts_lines_and_characters() {
        let text = "a: 1\nbé: 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 5), (2, 1));
        // 'é' is two bytes: byte 8 is the ':' after it, the third character.
        assert_eq!(line_column(text, 8), (2, 3));
    }
}
