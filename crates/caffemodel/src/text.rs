//! Protobuf text format (`.prototxt`): parsing with line:column errors, and printing.
//!
//! Parsing goes through prost-reflect's text-format parser against a descriptor pool: our own schema by default, or
//! a fork's `caffe.proto` compiled at run time ([`Schema::from_proto_file`]), so nets with fork-only fields parse.

use crate::error::{Error, Result};
use crate::tree::{Message, Node};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
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
        Error::invalid(
            path,
            format!("not a text file: invalid UTF-8 at byte {column}"),
        )
    })
}

/// Reads a net `.prototxt` (modern, V1 or V0 layout) into the typed NetParameter. Fields only a fork's schema knows
/// are parsed (so the file is accepted) but have no place in the typed message.
pub fn read_net(path: &Path, schema: &Schema) -> Result<caffe_proto::NetParameter> {
    let text = read_text_file(path)?;
    let dynamic = parse(path, &text, schema, "NetParameter")?;
    transcode(path, &dynamic)
}

/// Reads a solver `.prototxt` into the typed SolverParameter.
pub fn read_solver(path: &Path, schema: &Schema) -> Result<caffe_proto::SolverParameter> {
    let text = read_text_file(path)?;
    let dynamic = parse(path, &text, schema, "SolverParameter")?;
    transcode(path, &dynamic)
}

fn transcode<T: prost::Message + Default>(path: &Path, dynamic: &DynamicMessage) -> Result<T> {
    T::decode(dynamic.encode_to_vec().as_slice()).map_err(|e| Error::invalid(path, e.to_string()))
}

/// Prints a typed message as protobuf text, the way `caffe.proto`'s field names spell it.
pub fn to_text<T: prost::Message>(message: &T, schema: &Schema, name: &str) -> String {
    let desc = schema.message(name).expect("the schema defines the message being printed");
    let dynamic = DynamicMessage::decode(desc, message.encode_to_vec().as_slice())
        .expect("a typed message re-decodes against its own schema");
    format_text(&dynamic)
}

/// Prints a parsed binary message tree as protobuf text. Without `with_values`, blob payloads (data, diff) are left
/// out and shapes kept, so two models can be diffed by structure; unknown fields print by number.
pub fn tree_to_text(path: &Path, tree: &Message<'_>, schema: &Schema, with_values: bool) -> Result<String> {
    let desc = schema
        .message(tree.kind.proto_name())
        .ok_or_else(|| Error::invalid(path, format!("the schema has no message caffe.{}", tree.kind.proto_name())))?;
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

fn format_text(message: &DynamicMessage) -> String {
    let mut text = message.to_text_format_with_options(&prost_reflect::text_format::FormatOptions::new().pretty(true));
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
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
    fn line_column_counts_lines_and_characters() {
        let text = "a: 1\nbé: 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 5), (2, 1));
        // 'é' is two bytes: byte 8 is the ':' after it, the third character.
        assert_eq!(line_column(text, 8), (2, 3));
    }
}
