//! A read-only view of an ONNX graph for EdgeBench's load-time rewrites
//! (`attention`, `rope`, `norm` and `dense`'s `fuse_graph`): producers, consumers,
//! outputs and initializers by tensor name, and the node replacement they share.

use std::collections::HashMap;
use tract_onnx::pb;
use tract_onnx::pb::NodeProto;

/// Producers, use counts and initializers of a graph, by tensor name.
pub(crate) struct GraphView<'a> {
    pub(crate) g: &'a pb::GraphProto,
    pub(crate) producer: HashMap<&'a str, usize>,
    pub(crate) consumers: HashMap<&'a str, Vec<usize>>,
    pub(crate) outputs: std::collections::HashSet<&'a str>,
    pub(crate) inits: HashMap<&'a str, &'a pb::TensorProto>,
}

impl<'a> GraphView<'a> {
    pub(crate) fn new(g: &'a pb::GraphProto) -> Self {
        let mut producer = HashMap::new();
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, n) in g.node.iter().enumerate() {
            for o in &n.output {
                producer.insert(o.as_str(), i);
            }
            for x in &n.input {
                consumers.entry(x.as_str()).or_default().push(i);
            }
        }
        GraphView {
            g,
            producer,
            consumers,
            outputs: g.output.iter().map(|o| o.name.as_str()).collect(),
            inits: g.initializer.iter().map(|t| (t.name.as_str(), t)).collect(),
        }
    }

    /// The node producing `name` if it has type `op` and `n_in` inputs, and
    /// `name` is used only once and is not a graph output.
    pub(crate) fn only_use(&self, name: &str, op: &str, n_in: usize) -> Option<usize> {
        let i = *self.producer.get(name)?;
        let n = &self.g.node[i];
        let single =
            self.consumers.get(name).is_some_and(|c| c.len() == 1) && !self.outputs.contains(name);
        (single && n.op_type == op && n.input.len() == n_in && n.output.len() == 1).then_some(i)
    }

    /// The single consumer of `name` (of type `op`), if `name` has exactly one use.
    pub(crate) fn single_consumer(&self, name: &str, op: &str) -> Option<usize> {
        let c = self.consumers.get(name)?;
        let i = *c.first()?;
        (c.len() == 1 && !self.outputs.contains(name) && self.g.node[i].op_type == op).then_some(i)
    }

    pub(crate) fn ints(&self, name: &str) -> Option<Vec<i64>> {
        let t = self.inits.get(name)?;
        if t.data_type != pb::tensor_proto::DataType::Int64 as i32 {
            return None;
        }
        if !t.raw_data.is_empty() {
            return Some(
                t.raw_data
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
            );
        }
        Some(t.int64_data.clone())
    }

    pub(crate) fn scalar_f32(&self, name: &str) -> Option<f32> {
        let t = self.inits.get(name)?;
        if t.data_type != pb::tensor_proto::DataType::Float as i32
            || t.dims.iter().product::<i64>() != 1
        {
            return None;
        }
        if t.raw_data.len() == 4 {
            return Some(f32::from_le_bytes(t.raw_data[..4].try_into().ok()?));
        }
        t.float_data.first().copied()
    }

    pub(crate) fn int_attr(&self, node: usize, name: &str) -> Option<Vec<i64>> {
        let a = self.g.node[node]
            .attribute
            .iter()
            .find(|a| a.name == name)?;
        Some(if a.ints.is_empty() {
            vec![a.i]
        } else {
            a.ints.clone()
        })
    }
}

/// One fused node to put in place of `nodes`: it goes where `last` was and
/// keeps `last`'s output, and is named after node `named_after`.
pub(crate) struct Fused {
    pub(crate) nodes: Vec<usize>,
    pub(crate) last: usize,
    pub(crate) named_after: usize,
    pub(crate) inputs: Vec<String>,
    pub(crate) attributes: Vec<pb::AttributeProto>,
}

/// Replaces the nodes of each of `matches` with one `op_type` node of
/// EdgeBench's domain, named `<name>.<suffix>` (`<suffix>_<n>` for an
/// unnamed node); returns how many it put in place.
pub(crate) fn replace_all(
    graph: &mut pb::GraphProto,
    op_type: &str,
    suffix: &str,
    matches: Vec<Fused>,
) -> usize {
    let count = matches.len();
    let mut removed = vec![false; graph.node.len()];
    let mut at: HashMap<usize, NodeProto> = HashMap::new();
    for (n, f) in matches.into_iter().enumerate() {
        for &i in &f.nodes {
            removed[i] = true;
        }
        let named = &graph.node[f.named_after].name;
        let name = if named.is_empty() {
            format!("{suffix}_{n}")
        } else {
            format!("{named}.{suffix}")
        };
        at.insert(
            f.last,
            NodeProto {
                name,
                op_type: op_type.into(),
                domain: crate::onnx::CUSTOM_DOMAIN.into(),
                input: f.inputs,
                output: vec![graph.node[f.last].output[0].clone()],
                attribute: f.attributes,
                ..Default::default()
            },
        );
    }
    splice(graph, &removed, at);
    count
}

/// A string attribute.
pub(crate) fn string_attr(name: &str, value: &str) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::String as i32,
        s: value.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// A float attribute.
pub(crate) fn float_attr(name: &str, value: f32) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Float as i32,
        f: value,
        ..Default::default()
    }
}

/// Rebuilds `graph.node` without the `removed` nodes, putting each
/// replacement of `at` where the node of that index was.
fn splice(graph: &mut pb::GraphProto, removed: &[bool], mut at: HashMap<usize, NodeProto>) {
    let old = std::mem::take(&mut graph.node);
    for (i, node) in old.into_iter().enumerate() {
        if let Some(fused) = at.remove(&i) {
            graph.node.push(fused);
        } else if !removed[i] {
            graph.node.push(node);
        }
    }
}

/// An integer attribute.
pub(crate) fn int_attr(name: &str, value: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}
