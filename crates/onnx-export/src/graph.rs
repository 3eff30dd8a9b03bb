//! Building an ONNX graph: nodes with unique names, constant tensors, and the mapping from Caffe's
//! blob names (which in-place layers reuse) to ONNX's single-assignment value names.

use std::collections::{HashMap, HashSet};

use crate::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, type_proto, AttributeProto, GraphProto, NodeProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// An attribute value, as the node builders give it.
pub(crate) enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Str(&'static str),
}

/// The graph being built.
pub(crate) struct Graph {
    pub(crate) nodes: Vec<NodeProto>,
    pub(crate) initializers: Vec<TensorProto>,
    /// Every value, node and initializer name used so far (ONNX wants them unique in a graph).
    used: HashSet<String>,
    /// The ONNX value currently holding each Caffe blob.
    current: HashMap<String, String>,
}

impl Graph {
    pub(crate) fn new() -> Self {
        Self {
            nodes: Vec::new(),
            initializers: Vec::new(),
            used: HashSet::new(),
            current: HashMap::new(),
        }
    }

    /// `base`, or `base_2`, `base_3`, ... : the first name not used yet, now used.
    pub(crate) fn unique(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut n = 2;
        while self.used.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.used.insert(name.clone());
        name
    }

    /// Reserves a name exactly (a graph input or output named after its blob). False when taken.
    pub(crate) fn reserve(&mut self, name: &str) -> bool {
        self.used.insert(name.to_string())
    }

    /// The ONNX value holding Caffe blob `blob` now.
    pub(crate) fn value(&self, blob: &str) -> Option<&str> {
        self.current.get(blob).map(String::as_str)
    }

    /// From now on, Caffe blob `blob` is ONNX value `value`.
    pub(crate) fn assign(&mut self, blob: &str, value: String) {
        self.current.insert(blob.to_string(), value);
    }

    /// Adds a node `op` named after `layer` (made unique) reading `inputs` and writing `outputs`.
    pub(crate) fn node(&mut self, layer: &str, op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<(&str, Attr)>) {
        let name = self.unique(&format!("{layer}/{op}"));
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name,
            op_type: op.to_string(),
            attribute: attrs.into_iter().map(|(name, value)| attribute(name, value)).collect(),
            ..Default::default()
        });
    }

    /// A node with one output, a fresh value named `{layer}/{what}`; returns that value.
    pub(crate) fn step(
        &mut self,
        layer: &str,
        what: &str,
        op: &str,
        inputs: &[&str],
        attrs: Vec<(&str, Attr)>,
    ) -> String {
        let out = self.unique(&format!("{layer}/{what}"));
        self.node(layer, op, inputs, &[&out], attrs);
        out
    }

    /// A float32 constant named `{layer}/{what}` (made unique); returns its name.
    pub(crate) fn floats(&mut self, layer: &str, what: &str, dims: &[usize], values: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len());
        let name = self.unique(&format!("{layer}/{what}"));
        let mut raw = Vec::with_capacity(values.len() * 4);
        pages::advise_huge_pages(&mut raw);
        if cfg!(target_endian = "little") {
            raw.extend_from_slice(bytemuck::cast_slice(values));
        } else {
            raw.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        }
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            name: name.clone(),
            raw_data: raw,
            ..Default::default()
        });
        name
    }

    /// A uint8 constant of the given shape.
    pub(crate) fn bytes(&mut self, layer: &str, what: &str, dims: &[usize], values: Vec<u8>) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len());
        let name = self.unique(&format!("{layer}/{what}"));
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Uint8 as i32,
            name: name.clone(),
            raw_data: values,
            ..Default::default()
        });
        name
    }

    /// A one-element float32 constant (broadcasts against anything).
    pub(crate) fn scalar(&mut self, layer: &str, what: &str, value: f32) -> String {
        self.floats(layer, what, &[], &[value])
    }

    /// An int64 constant (shapes, axes, split sizes, pads).
    pub(crate) fn ints(&mut self, layer: &str, what: &str, values: &[i64]) -> String {
        let name = self.unique(&format!("{layer}/{what}"));
        let mut raw = Vec::with_capacity(values.len() * 8);
        for v in values {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: DataType::Int64 as i32,
            name: name.clone(),
            raw_data: raw,
            ..Default::default()
        });
        name
    }

    /// The finished graph.
    pub(crate) fn finish(self, name: &str, inputs: Vec<ValueInfoProto>, outputs: Vec<ValueInfoProto>) -> GraphProto {
        GraphProto {
            node: self.nodes,
            name: name.to_string(),
            initializer: self.initializers,
            input: inputs,
            output: outputs,
            ..Default::default()
        }
    }
}

fn attribute(name: &str, value: Attr) -> AttributeProto {
    let mut a = AttributeProto {
        name: name.to_string(),
        ..Default::default()
    };
    match value {
        Attr::Int(i) => {
            a.r#type = AttributeType::Int as i32;
            a.i = i;
        }
        Attr::Float(f) => {
            a.r#type = AttributeType::Float as i32;
            a.f = f;
        }
        Attr::Ints(ints) => {
            a.r#type = AttributeType::Ints as i32;
            a.ints = ints;
        }
        Attr::Str(s) => {
            a.r#type = AttributeType::String as i32;
            a.s = s.as_bytes().to_vec();
        }
    }
    a
}

/// A float32 tensor value of a known shape (graph inputs and outputs); with `dynamic_first`, the first axis is left
/// unsized (its size depends on the data).
pub(crate) fn value_info(name: &str, shape: &[usize], dynamic_first: bool) -> ValueInfoProto {
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto {
                    dim: shape
                        .iter()
                        .enumerate()
                        .map(|(axis, &d)| crate::proto::tensor_shape_proto::Dimension {
                            value: Some(if axis == 0 && dynamic_first {
                                crate::proto::tensor_shape_proto::dimension::Value::DimParam("selected".into())
                            } else {
                                crate::proto::tensor_shape_proto::dimension::Value::DimValue(d as i64)
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
