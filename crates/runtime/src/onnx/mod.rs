//! ONNX writer: a small graph builder over tract's public prost types.
//!
//! Every model EdgeBench produces (the bundled tiny model, importers, the GEM
//! builder) is assembled here and encoded with `prost`, so the files we write
//! are plain ONNX (opset 17, plus our custom domain [`CUSTOM_DOMAIN`]).

pub mod layers;

use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;

/// ONNX domain of EdgeBench's custom ops.
pub const CUSTOM_DOMAIN: &str = "ai.edgebench";
/// Default ONNX opset of the graphs we write.
pub const OPSET: i64 = 17;

/// A tensor dimension in a graph input or output.
#[derive(Debug, Clone, PartialEq)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A symbolic size (`dim_param`), e.g. `"seq"`.
    Sym(String),
}

impl From<i64> for Dim {
    fn from(v: i64) -> Self {
        Dim::Fixed(v)
    }
}

impl From<&str> for Dim {
    fn from(v: &str) -> Self {
        Dim::Sym(v.to_string())
    }
}

/// Element types we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    F32,
    I64,
    U8,
}

impl Elem {
    fn data_type(self) -> i32 {
        match self {
            Elem::F32 => DataType::Float as i32,
            Elem::I64 => DataType::Int64 as i32,
            Elem::U8 => DataType::Uint8 as i32,
        }
    }
}

/// A node attribute value.
#[derive(Debug, Clone)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Str(String),
}

/// Builds one ONNX graph; node outputs get unique names automatically.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    graph: pb::GraphProto,
    counter: usize,
    uses_custom_domain: bool,
}

fn value_info(name: &str, elem: Elem, dims: &[Dim]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            denotation: String::new(),
            value: Some(match d {
                Dim::Fixed(v) => Value::DimValue(*v),
                Dim::Sym(s) => Value::DimParam(s.clone()),
            }),
        })
        .collect();
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem.data_type(),
                shape: Some(pb::TensorShapeProto { dim }),
            })),
        }),
        doc_string: String::new(),
    }
}

impl GraphBuilder {
    /// An empty graph called `name`.
    pub fn new(name: &str) -> Self {
        GraphBuilder {
            graph: pb::GraphProto {
                name: name.to_string(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, elem: Elem, dims: &[Dim]) -> String {
        self.graph.input.push(value_info(name, elem, dims));
        name.to_string()
    }

    /// Declares a graph output (the value must be produced by a node).
    pub fn output(&mut self, name: &str, elem: Elem, dims: &[Dim]) {
        self.graph.output.push(value_info(name, elem, dims));
    }

    /// Adds an f32 initializer (row-major `data`, little-endian raw bytes).
    pub fn init_f32(&mut self, name: &str, dims: &[i64], data: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<i64>() as usize, data.len());
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_init(name, dims, Elem::F32, raw)
    }

    /// Adds an i64 initializer.
    pub fn init_i64(&mut self, name: &str, dims: &[i64], data: &[i64]) -> String {
        debug_assert_eq!(dims.iter().product::<i64>() as usize, data.len());
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_init(name, dims, Elem::I64, raw)
    }

    /// Adds a u8 initializer (packed quantized weights).
    pub fn init_u8(&mut self, name: &str, dims: &[i64], data: &[u8]) -> String {
        debug_assert_eq!(dims.iter().product::<i64>() as usize, data.len());
        self.push_init(name, dims, Elem::U8, data.to_vec())
    }

    /// Dimensions of the initializer `name`, if the graph has one.
    pub fn init_dims(&self, name: &str) -> Option<&[i64]> {
        self.graph
            .initializer
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.dims.as_slice())
    }

    fn push_init(&mut self, name: &str, dims: &[i64], elem: Elem, raw: Vec<u8>) -> String {
        self.graph.initializer.push(pb::TensorProto {
            dims: dims.to_vec(),
            data_type: elem.data_type(),
            name: name.to_string(),
            raw_data: raw,
            ..Default::default()
        });
        name.to_string()
    }

    /// Adds a standard-domain node with one output and returns the output's name.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        self.counter += 1;
        let out = format!("{}_{}", op_type.to_lowercase(), self.counter);
        self.node_in_domain("", op_type, inputs, &[out.as_str()], attrs);
        out
    }

    /// Adds a node with explicit outputs in `domain` ("" for the standard one).
    pub fn node_in_domain(
        &mut self,
        domain: &str,
        op_type: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: &[(&str, Attr)],
    ) {
        if domain == CUSTOM_DOMAIN {
            self.uses_custom_domain = true;
        }
        self.counter += 1;
        self.graph.node.push(pb::NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: format!("{}_{}", op_type, self.counter),
            op_type: op_type.to_string(),
            domain: domain.to_string(),
            attribute: attrs.iter().map(|(n, a)| attribute(n, a)).collect(),
            doc_string: String::new(),
        });
    }

    /// Renames the last node's single output to `name` (to expose it as a graph output).
    pub fn name_last_output(&mut self, name: &str) -> String {
        let node = self.graph.node.last_mut().expect("no node to rename");
        node.output[0] = name.to_string();
        name.to_string()
    }

    /// Finishes the model with the opset imports and producer metadata.
    pub fn finish(self, doc: &str, metadata: &[(&str, String)]) -> pb::ModelProto {
        let mut opset_import = vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }];
        if self.uses_custom_domain {
            opset_import.push(pb::OperatorSetIdProto {
                domain: CUSTOM_DOMAIN.to_string(),
                version: 1,
            });
        }
        pb::ModelProto {
            ir_version: 8,
            opset_import,
            producer_name: "edgebench".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.into(),
            graph: Some(self.graph),
            metadata_props: metadata
                .iter()
                .map(|(k, v)| pb::StringStringEntryProto {
                    key: k.to_string(),
                    value: v.clone(),
                })
                .collect(),
            ..Default::default()
        }
    }
}

fn attribute(name: &str, a: &Attr) -> pb::AttributeProto {
    let mut p = pb::AttributeProto {
        name: name.to_string(),
        ..Default::default()
    };
    match a {
        Attr::Int(v) => {
            p.r#type = AttributeType::Int as i32;
            p.i = *v;
        }
        Attr::Float(v) => {
            p.r#type = AttributeType::Float as i32;
            p.f = *v;
        }
        Attr::Ints(v) => {
            p.r#type = AttributeType::Ints as i32;
            p.ints = v.clone();
        }
        Attr::Floats(v) => {
            p.r#type = AttributeType::Floats as i32;
            p.floats = v.clone();
        }
        Attr::Str(v) => {
            p.r#type = AttributeType::String as i32;
            p.s = v.as_bytes().to_vec();
        }
    }
    p
}

/// Encodes a model to ONNX protobuf bytes.
pub fn encode(model: &pb::ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}
