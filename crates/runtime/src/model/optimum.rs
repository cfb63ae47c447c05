//! ONNX files exported by Hugging Face `optimum` (`optimum-cli export onnx`), run as they are:
//! their inputs and outputs recognised by name, the manifest synthesized in memory from the
//! graph and `config.json`, and each pass's tensors put in the order the graph declares.
//!
//! Decoders (`text-generation[-with-past]`, merged or not): `input_ids`, `attention_mask`,
//! optional `position_ids`, `past_key_values.<i>.key|value` `[batch, kv_heads, past, head_dim]`
//! and `use_cache_branch` -> `logits` and `present.<i>.key|value`. Encoders
//! (`feature-extraction`): `input_ids`, `attention_mask`, optional `token_type_ids` ->
//! `last_hidden_state` (or sentence-transformers' `token_embeddings` / `sentence_embedding`).

use super::bad;
use super::manifest::{ModelManifest, CONTEXT};
use super::{Capabilities, ModelError};
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;

/// What the optimum layouts expect, for error messages.
const EXPECTED: &str = "expected an optimum decoder (inputs input_ids, attention_mask, optional \
     position_ids, past_key_values.<i>.key/value and use_cache_branch; outputs logits and \
     present.<i>.key/value) or encoder (inputs input_ids, attention_mask, optional token_type_ids; \
     output last_hidden_state, token_embeddings or sentence_embedding)";

/// The outputs an encoder export may have, the one read first.
const ENCODER_OUTPUTS: [&str; 3] = [
    "sentence_embedding",
    "last_hidden_state",
    "token_embeddings",
];

/// What a decoder input takes in each pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderInput {
    /// `input_ids` `[1, seq]` i64.
    Ids,
    /// `attention_mask` `[1, past + seq]` i64, all ones.
    Mask,
    /// `position_ids` `[1, seq]` i64: `past..past + seq`.
    Positions,
    /// `use_cache_branch` `[1]` bool: whether a past is fed (merged decoders).
    CacheBranch,
    /// Cache tensor `j` (`2 i` the keys, `2 i + 1` the values of layer `i`).
    Past(usize),
}

/// The inputs and outputs of an optimum decoder graph, by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoderIo {
    /// What each graph input takes, in graph order.
    pub inputs: Vec<DecoderInput>,
    /// Output index of `logits`.
    pub logits: usize,
    /// Output index of cache tensor `j`, for graphs with past inputs.
    pub present: Vec<usize>,
}

/// How token states become one embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the attention mask.
    Mean,
    /// The first token's (`[CLS]`) state.
    Cls,
    /// The graph's output is already one vector per text.
    Pooled,
}

/// What an encoder input takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderInput {
    /// `input_ids` `[batch, seq]` i64.
    Ids,
    /// `attention_mask` `[batch, seq]` i64.
    Mask,
    /// `token_type_ids` `[batch, seq]` i64, zeros.
    TokenTypes,
}

/// The inputs and output of an optimum encoder graph, by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderIo {
    /// What each graph input takes, in graph order.
    pub inputs: Vec<EncoderInput>,
    /// Output index of the states (or embedding) read.
    pub output: usize,
    /// How the output becomes one embedding per text.
    pub pooling: Pooling,
}

/// An optimum graph by its inputs and outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    Decoder(DecoderIo),
    Encoder(EncoderIo),
}

fn found(inputs: &[String], outputs: &[String]) -> String {
    format!(
        "found inputs [{}] and outputs [{}]",
        inputs.join(", "),
        outputs.join(", ")
    )
}

/// `past_key_values.<i>.key|value` -> cache tensor index; `present.<i>.key|value` likewise.
fn cache_index(name: &str, prefix: &str) -> Option<usize> {
    let rest = name.strip_prefix(prefix)?;
    let (layer, kind) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    match kind {
        "key" => Some(2 * layer),
        "value" => Some(2 * layer + 1),
        _ => None,
    }
}

/// Whether `names` are EdgeBench's own decoder inputs (`input_ids`, `past_key_<i>`,
/// `past_value_<i>`, `router_ids`, `router_align`).
fn edgebench_decoder_inputs(names: &[String]) -> bool {
    names.iter().all(|n| {
        // our caches are `past_<name>` (`past_key_<i>`, GEM's `past_route`, ...);
        // optimum's are `past_key_values.<i>.key`
        let cache = n.starts_with("past_") && !n.starts_with("past_key_values");
        cache || ["input_ids", "router_ids", "router_align"].contains(&n.as_str())
    })
}

/// Whether these are the inputs and output of EdgeBench's own encoder (`import bert`).
fn edgebench_encoder(inputs: &[String], outputs: &[String]) -> bool {
    inputs == ["input_ids", "attention_mask"] && outputs == ["sentence_embedding"]
}

/// Checks that cache indices `0..2 L` each appear exactly once; returns `L`'s tensors.
fn complete(indices: &[(usize, usize)], what: &str) -> Result<Vec<usize>, String> {
    let n = indices.len();
    let mut by_index = vec![None; n];
    for &(j, pos) in indices {
        match by_index.get_mut(j) {
            Some(slot @ None) => *slot = Some(pos),
            _ => {
                return Err(format!(
                    "{what}: layer {} {} is duplicated or out of order (expected layers 0..{} with a key and a value each)",
                    j / 2,
                    ["key", "value"][j % 2],
                    n.div_ceil(2)
                ))
            }
        }
    }
    if n % 2 == 1 {
        let missing = by_index.iter().position(Option::is_none).unwrap_or(n);
        return Err(format!(
            "{what}: layer {} has a key or a value without the other",
            missing / 2
        ));
    }
    Ok(by_index.into_iter().map(|p| p.expect("filled")).collect())
}

impl Layout {
    /// Recognises an optimum layout from the graph's input and output names (in graph order);
    /// the error lists what was found and what was expected.
    pub fn from_names(inputs: &[String], outputs: &[String]) -> Result<Layout, String> {
        let bad = |why: String| format!("{why}; {}; {EXPECTED}", found(inputs, outputs));
        if !inputs.iter().any(|n| n == "input_ids") {
            return Err(bad("no `input_ids` input".into()));
        }
        if let Some(logits) = outputs.iter().position(|n| n == "logits") {
            let mut kinds = Vec::new();
            let mut past = Vec::new();
            for (pos, n) in inputs.iter().enumerate() {
                kinds.push(match n.as_str() {
                    "input_ids" => DecoderInput::Ids,
                    "attention_mask" => DecoderInput::Mask,
                    "position_ids" => DecoderInput::Positions,
                    "use_cache_branch" => DecoderInput::CacheBranch,
                    _ => match cache_index(n, "past_key_values.") {
                        Some(j) => {
                            past.push((j, pos));
                            DecoderInput::Past(j)
                        }
                        None => return Err(bad(format!("unexpected decoder input `{n}`"))),
                    },
                });
            }
            let mut present = Vec::new();
            for (pos, n) in outputs.iter().enumerate() {
                if pos == logits {
                    continue;
                }
                match cache_index(n, "present.") {
                    Some(j) => present.push((j, pos)),
                    None => return Err(bad(format!("unexpected decoder output `{n}`"))),
                }
            }
            complete(&past, "past_key_values inputs").map_err(bad)?;
            let present = complete(&present, "present outputs").map_err(bad)?;
            let present = match (past.len(), present.len()) {
                // a first-pass decoder: its present outputs are not needed
                (0, _) => Vec::new(),
                (p, q) if p == q => present,
                (p, q) => return Err(bad(format!("{} cached layers in but {} out", p / 2, q / 2))),
            };
            if past.is_empty() && kinds.contains(&DecoderInput::CacheBranch) {
                return Err(bad(
                    "`use_cache_branch` without past_key_values inputs".into()
                ));
            }
            return Ok(Layout::Decoder(DecoderIo {
                inputs: kinds,
                logits,
                present,
            }));
        }
        let output = ENCODER_OUTPUTS
            .iter()
            .find_map(|want| outputs.iter().position(|n| n == want));
        let Some(output) = output else {
            return Err(bad("no `logits`, `last_hidden_state`, `token_embeddings` or `sentence_embedding` output".into()));
        };
        if let Some(n) = outputs
            .iter()
            .find(|n| !ENCODER_OUTPUTS.contains(&n.as_str()))
        {
            return Err(bad(format!("unexpected encoder output `{n}`")));
        }
        let inputs = inputs
            .iter()
            .map(|n| match n.as_str() {
                "input_ids" => Ok(EncoderInput::Ids),
                "attention_mask" => Ok(EncoderInput::Mask),
                "token_type_ids" => Ok(EncoderInput::TokenTypes),
                other => Err(bad(format!("unexpected encoder input `{other}`"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pooling = match outputs[output].as_str() {
            "sentence_embedding" => Pooling::Pooled,
            _ => Pooling::Mean,
        };
        Ok(Layout::Encoder(EncoderIo {
            inputs,
            output,
            pooling,
        }))
    }
}

/// Input and output names of a tract model, in graph order.
pub fn names(model: &TypedModel) -> (Vec<String>, Vec<String>) {
    let inputs = model
        .inputs
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect();
    let outputs = model
        .outputs
        .iter()
        .map(|&o| model.outlet_label(o).unwrap_or_default().to_string())
        .collect();
    (inputs, outputs)
}

/// Checks that input `ix` of `model` holds `want` values.
fn check_type(
    model: &TypedModel,
    ix: usize,
    name: &str,
    want: DatumType,
    path: &Path,
) -> Result<(), ModelError> {
    let fact = model
        .input_fact(ix)
        .map_err(|e| bad(path, format!("input `{name}`: {e}")))?;
    if fact.datum_type != want {
        return Err(bad(
            path,
            format!(
                "input `{name}` is {:?}; EdgeBench feeds {want:?} (export the model in float32 with int64 ids)",
                fact.datum_type
            ),
        ));
    }
    Ok(())
}

impl DecoderIo {
    /// The layout of a decoder graph: `None` for EdgeBench's own input names, else the optimum
    /// layout, its input types checked; errors name the graph.
    pub fn of(model: &TypedModel, path: &Path) -> Result<Option<DecoderIo>, ModelError> {
        let (inputs, outputs) = names(model);
        if edgebench_decoder_inputs(&inputs) {
            return Ok(None);
        }
        let io = match Layout::from_names(&inputs, &outputs).map_err(|m| bad(path, m))? {
            Layout::Decoder(io) => io,
            Layout::Encoder(_) => {
                return Err(bad(
                    path,
                    format!(
                        "an encoder graph (no `logits` output) loaded as a decoder; {}",
                        found(&inputs, &outputs)
                    ),
                ))
            }
        };
        for (ix, (kind, name)) in io.inputs.iter().zip(&inputs).enumerate() {
            let want = match kind {
                DecoderInput::Past(_) => DatumType::F32,
                DecoderInput::CacheBranch => DatumType::Bool,
                _ => DatumType::I64,
            };
            check_type(model, ix, name, want, path)?;
        }
        Ok(Some(io))
    }

    /// Cached layers (0 without past inputs).
    pub fn layers(&self) -> usize {
        self.present.len() / 2
    }

    /// Graph input index of the first cache tensor.
    pub fn first_past(&self) -> Option<usize> {
        self.inputs
            .iter()
            .position(|k| matches!(k, DecoderInput::Past(_)))
    }

    /// The inputs of one pass of `ids` after `past` cached tokens, whose tensors are `cache`.
    pub fn feed(&self, ids: &[i64], past: usize, cache: &[TValue]) -> TractResult<TVec<TValue>> {
        let seq = ids.len();
        self.inputs
            .iter()
            .map(|k| {
                Ok(match *k {
                    DecoderInput::Ids => Tensor::from_shape(&[1, seq], ids)?.into_tvalue(),
                    DecoderInput::Mask => {
                        Tensor::from_shape(&[1, past + seq], &vec![1i64; past + seq])?.into_tvalue()
                    }
                    DecoderInput::Positions => {
                        let pos: Vec<i64> = (past..past + seq).map(|p| p as i64).collect();
                        Tensor::from_shape(&[1, seq], &pos)?.into_tvalue()
                    }
                    DecoderInput::CacheBranch => {
                        Tensor::from_shape(&[1], &[past > 0])?.into_tvalue()
                    }
                    DecoderInput::Past(j) => cache
                        .get(j)
                        .cloned()
                        .ok_or_else(|| anyhow::anyhow!("no cache tensor {j}"))?,
                })
            })
            .collect()
    }
}

impl EncoderIo {
    /// The layout of an encoder graph: `None` for EdgeBench's own (`input_ids`,
    /// `attention_mask` -> `sentence_embedding`), else the optimum layout, its input types
    /// checked and its pooling read from `<dir>/1_Pooling/config.json` when there is one.
    pub fn of(
        model: &TypedModel,
        dir: &Path,
        path: &Path,
    ) -> Result<Option<EncoderIo>, ModelError> {
        let (inputs, outputs) = names(model);
        if edgebench_encoder(&inputs, &outputs) {
            return Ok(None);
        }
        let mut io = match Layout::from_names(&inputs, &outputs).map_err(|m| bad(path, m))? {
            Layout::Encoder(io) => io,
            Layout::Decoder(_) => {
                return Err(bad(
                    path,
                    format!(
                        "a decoder graph (`logits` output) loaded as an encoder; {}",
                        found(&inputs, &outputs)
                    ),
                ))
            }
        };
        for (ix, name) in inputs.iter().enumerate() {
            check_type(model, ix, name, DatumType::I64, path)?;
        }
        if io.pooling == Pooling::Mean {
            io.pooling = sentence_transformers_pooling(dir)?;
        }
        Ok(Some(io))
    }
}

/// The pooling a sentence-transformers `1_Pooling/config.json` in `dir` asks for (mean
/// without one).
pub fn sentence_transformers_pooling(dir: &Path) -> Result<Pooling, ModelError> {
    let path = dir.join("1_Pooling").join("config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(Pooling::Mean);
    };
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| bad(&path, format!("not a valid JSON file: {e}")))?;
    let on = |k: &str| v.get(k).and_then(|b| b.as_bool()).unwrap_or(false);
    let modes: Vec<&str> = [
        "pooling_mode_cls_token",
        "pooling_mode_mean_tokens",
        "pooling_mode_max_tokens",
        "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens",
        "pooling_mode_lasttoken",
    ]
    .into_iter()
    .filter(|k| on(k))
    .collect();
    match modes.as_slice() {
        ["pooling_mode_cls_token"] => Ok(Pooling::Cls),
        ["pooling_mode_mean_tokens"] => Ok(Pooling::Mean),
        other => Err(bad(
            &path,
            format!(
                "pooling {other:?} is not supported: set exactly one of pooling_mode_cls_token or pooling_mode_mean_tokens"
            ),
        )),
    }
}

/// One L2-normalised embedding per text from the encoder's output `out` (`[batch, seq, d]`
/// states, or `[batch, d]` already pooled) and the attention `mask` (`[batch, seq]`).
pub fn pool(
    out: &tract_ndarray::ArrayViewD<'_, f32>,
    mask: &[i64],
    seq: usize,
    pooling: Pooling,
) -> Vec<Vec<f32>> {
    let shape = out.shape();
    let batch = shape[0];
    let d = *shape.last().unwrap_or(&0);
    let flat: Vec<f32> = out.iter().copied().collect();
    (0..batch)
        .map(|b| {
            let v: Vec<f32> = match pooling {
                Pooling::Pooled => flat[b * d..(b + 1) * d].to_vec(),
                Pooling::Cls => flat[b * seq * d..b * seq * d + d].to_vec(),
                Pooling::Mean => {
                    let mut sum = vec![0f64; d];
                    let mut n = 0f64;
                    for t in 0..seq {
                        let m = mask[b * seq + t] as f64;
                        if m == 0.0 {
                            continue;
                        }
                        n += m;
                        let row = &flat[(b * seq + t) * d..(b * seq + t + 1) * d];
                        for (s, &x) in sum.iter_mut().zip(row) {
                            *s += m * x as f64;
                        }
                    }
                    sum.iter().map(|s| (s / n.max(1e-9)) as f32).collect()
                }
            };
            let norm = v
                .iter()
                .map(|&x| (x as f64) * (x as f64))
                .sum::<f64>()
                .sqrt()
                .max(1e-12);
            v.iter().map(|&x| (x as f64 / norm) as f32).collect()
        })
        .collect()
}

/// Whether a parsed graph is an optimum export (its inputs and outputs those of
/// [`Layout::from_names`], not EdgeBench's own); if so, readies it for tract:
///
/// - a decoder's `batch_size` dim is pinned to 1 in it and its subgraphs: EdgeBench runs one
///   sequence at a time, and tract's `Flatten` (which transformers' mask building uses)
///   refuses a shape with two symbols (`batch_size x sequence_length`);
/// - a merged decoder's `If` on `use_cache_branch` is replaced by its decoder with past (the
///   `then` branch), which runs a first pass on an empty past as well, and the input becomes
///   the constant `true`: tract cannot type an `If` whose branches return caches of
///   different symbolic lengths (`past + sequence_length` and `sequence_length`). Its
///   `attention_mask`, declared `[batch_size, sequence_length]` as the first pass's, is
///   declared to cover the past too, as the decoder with past's.
pub fn prepare(graph: &mut tract_onnx::pb::GraphProto) -> bool {
    let init: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<String> = graph
        .input
        .iter()
        .filter(|i| !init.contains(i.name.as_str()))
        .map(|i| i.name.clone())
        .collect();
    let outputs: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    if edgebench_decoder_inputs(&inputs) || edgebench_encoder(&inputs, &outputs) {
        return false;
    }
    match Layout::from_names(&inputs, &outputs) {
        Ok(Layout::Decoder(_)) => {
            pin_batch(graph);
            if let Some(ix) = graph
                .input
                .iter()
                .position(|i| i.name == "use_cache_branch")
            {
                inline_cache_branch(graph);
                cover_past(graph, "attention_mask", 1);
                let input = graph.input.remove(ix);
                graph.initializer.push(tract_onnx::pb::TensorProto {
                    name: input.name,
                    dims: vec![1],
                    data_type: tract_onnx::pb::tensor_proto::DataType::Bool as i32,
                    int32_data: vec![1],
                    ..Default::default()
                });
            }
            true
        }
        Ok(Layout::Encoder(_)) => true,
        Err(_) => false,
    }
}

/// tract's declutter and codegen passes for an optimum export, without `FoldUniformMask`:
/// in tract 0.23.9 it folds the causal mask of a decoder without past (`kv <= q` over
/// the same `sequence_length`) into a constant of the traced length, and the first pass of
/// another length fails ("Can not broadcast 7 against 2").
pub fn optimize(model: InferenceModel) -> TractResult<TypedModel> {
    use tract_onnx::tract_hir::infer::InferenceModelExt;
    let mut typed = model.into_typed()?;
    let mut declutter = tract_onnx::tract_core::optim::Optimizer::declutter();
    declutter
        .passes
        .retain(|p| !format!("{p:?}").starts_with("FoldUniformMask"));
    declutter.session().optimize(&mut typed)?;
    typed.optimize()?;
    Ok(typed)
}

/// Replaces each `If` on `use_cache_branch` by the nodes and initializers of its `then`
/// branch (whose outputs bear the `If`'s output names, as optimum's `merge_decoders` writes).
fn inline_cache_branch(graph: &mut tract_onnx::pb::GraphProto) {
    let mut nodes = Vec::with_capacity(graph.node.len());
    for node in std::mem::take(&mut graph.node) {
        let then = (node.op_type == "If"
            && node.input.first().is_some_and(|c| c == "use_cache_branch"))
        .then(|| {
            node.attribute
                .iter()
                .find(|a| a.name == "then_branch")
                .and_then(|a| a.g.clone())
        })
        .flatten()
        .filter(|g| g.output.iter().map(|o| &o.name).eq(node.output.iter()));
        match then {
            Some(g) => {
                nodes.extend(g.node);
                graph.initializer.extend(g.initializer);
            }
            None => nodes.push(node),
        }
    }
    graph.node = nodes;
}

/// Declares dim `axis` of input `name` `past_sequence_length + sequence_length` where it
/// was `sequence_length`.
fn cover_past(graph: &mut tract_onnx::pb::GraphProto, name: &str, axis: usize) {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value;
    let dim = graph
        .input
        .iter_mut()
        .find(|i| i.name == name)
        .and_then(|i| match i.r#type.as_mut()?.value.as_mut()? {
            tract_onnx::pb::type_proto::Value::TensorType(t) => t.shape.as_mut()?.dim.get_mut(axis),
        });
    if let Some(d) = dim {
        if matches!(&d.value, Some(Value::DimParam(p)) if p == "sequence_length") {
            d.value = Some(Value::DimParam(
                "past_sequence_length + sequence_length".into(),
            ));
        }
    }
}

fn pin_batch(graph: &mut tract_onnx::pb::GraphProto) -> bool {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value;
    let mut changed = false;
    let infos = graph
        .input
        .iter_mut()
        .chain(graph.output.iter_mut())
        .chain(graph.value_info.iter_mut());
    for info in infos {
        let Some(tract_onnx::pb::type_proto::Value::TensorType(t)) =
            info.r#type.as_mut().and_then(|t| t.value.as_mut())
        else {
            continue;
        };
        for d in t.shape.iter_mut().flat_map(|s| s.dim.iter_mut()) {
            if matches!(&d.value, Some(Value::DimParam(p)) if p == "batch_size") {
                d.value = Some(Value::DimValue(1));
                changed = true;
            }
        }
    }
    for node in &mut graph.node {
        for a in &mut node.attribute {
            for g in a.g.iter_mut().chain(a.graphs.iter_mut()) {
                changed |= pin_batch(g);
            }
        }
    }
    changed
}

/// Graph inputs and outputs, read without decoding the weights.
mod light {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Model {
        #[prost(message, optional, tag = "7")]
        pub graph: Option<Graph>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Graph {
        #[prost(message, repeated, tag = "5")]
        pub initializer: Vec<Named>,
        #[prost(message, repeated, tag = "11")]
        pub input: Vec<tract_onnx::pb::ValueInfoProto>,
        #[prost(message, repeated, tag = "12")]
        pub output: Vec<tract_onnx::pb::ValueInfoProto>,
    }
    /// A `TensorProto`'s name (its data skipped).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Named {
        #[prost(string, tag = "8")]
        pub name: String,
    }
}

/// A graph file's input and output names (initializers listed as inputs left out).
struct GraphIo {
    inputs: Vec<String>,
    outputs: Vec<String>,
    /// The last dim of `logits`, when it is fixed.
    logits_vocab: Option<usize>,
}

/// Reads a graph file's [`GraphIo`].
fn graph_io(path: &Path) -> Result<GraphIo, ModelError> {
    use prost::Message;
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: only read, and dropped before this returns (as `load_graph`).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    let model = light::Model::decode(&map[..]).map_err(|e| {
        bad(
            path,
            format!("not a loadable ONNX graph (corrupt or truncated file?): {e}"),
        )
    })?;
    let g = model
        .graph
        .ok_or_else(|| bad(path, "not a loadable ONNX graph: it has no graph"))?;
    let init: std::collections::HashSet<&str> =
        g.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs = g
        .input
        .iter()
        .filter(|i| !init.contains(i.name.as_str()))
        .map(|i| i.name.clone())
        .collect();
    let outputs: Vec<String> = g.output.iter().map(|o| o.name.clone()).collect();
    let vocab = g.output.iter().find(|o| o.name == "logits").and_then(|o| {
        let tract_onnx::pb::type_proto::Value::TensorType(t) = o.r#type.as_ref()?.value.as_ref()?;
        match t.shape.as_ref()?.dim.last()?.value.as_ref()? {
            tract_onnx::pb::tensor_shape_proto::dimension::Value::DimValue(v) => {
                usize::try_from(*v).ok()
            }
            _ => None,
        }
    });
    Ok(GraphIo {
        inputs,
        outputs,
        logits_vocab: vocab,
    })
}

/// A JSON file of the export folder, `None` when absent.
fn read_json(path: &Path) -> Result<Option<serde_json::Value>, ModelError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| bad(path, format!("not a valid JSON file: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ModelError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A token id field: a number, or the first of a list (`eos_token_id: [1, 2]`).
fn token_id(v: Option<&serde_json::Value>) -> Option<u32> {
    let v = v?;
    let v = v.as_array().and_then(|a| a.first()).unwrap_or(v);
    v.as_u64().and_then(|x| u32::try_from(x).ok())
}

/// The manifest of the optimum export `<dir>/<graph>` (with `tokenizer.json` and
/// `config.json` beside it), synthesized from the graph's inputs and outputs and the config;
/// nothing is written. Errors name the file and what it lacks.
pub fn synthesize(dir: &Path, graph: &str) -> Result<ModelManifest, ModelError> {
    let path = dir.join(graph);
    let GraphIo {
        inputs,
        outputs,
        logits_vocab,
    } = graph_io(&path)?;
    let layout = Layout::from_names(&inputs, &outputs).map_err(|m| {
        bad(
            &path,
            format!(
                "no {} beside it, and its inputs and outputs are not an optimum export's: {m}",
                super::manifest::MANIFEST_FILE
            ),
        )
    })?;
    let tok = dir.join("tokenizer.json");
    if !tok.is_file() {
        return Err(bad(
            &tok,
            format!(
                "missing: the ONNX export {} needs its tokenizer.json beside it (optimum-cli export onnx writes one; copy the model's tokenizer.json there)",
                path.display()
            ),
        ));
    }
    let cfg_path = dir.join("config.json");
    let cfg = read_json(&cfg_path)?.ok_or_else(|| {
        bad(
            &cfg_path,
            format!(
                "missing: the ONNX export {} needs the model's config.json beside it (context length, vocabulary, special tokens; optimum-cli export onnx writes one)",
                path.display()
            ),
        )
    })?;
    let gen = read_json(&dir.join("generation_config.json"))?;
    let tok_cfg = read_json(&dir.join("tokenizer_config.json"))?;
    let field = |k: &str| {
        gen.as_ref()
            .and_then(|g| token_id(g.get(k)))
            .or_else(|| token_id(cfg.get(k)))
    };
    let usize_of = |v: &serde_json::Value, keys: &[&str]| {
        keys.iter().find_map(|k| v.get(*k).and_then(|x| x.as_u64()))
    };
    let model_type = cfg
        .get("model_type")
        .and_then(|t| t.as_str())
        .unwrap_or("unknown model type")
        .to_string();
    let encoder = matches!(layout, Layout::Encoder(_));
    let st = match encoder {
        true => read_json(&dir.join("sentence_bert_config.json"))?,
        false => None,
    };
    let context_keys = [
        "max_position_embeddings",
        "n_positions",
        "n_ctx",
        "max_sequence_length",
        "seq_length",
    ];
    let ctx = st
        .as_ref()
        .and_then(|s| usize_of(s, &["max_seq_length"]))
        .or_else(|| usize_of(&cfg, &context_keys))
        .ok_or_else(|| {
            bad(
                &cfg_path,
                format!("has no context length (one of {})", context_keys.join(", ")),
            )
        })?;
    let max_context = (ctx as usize).min(*CONTEXT.end());
    let cfg_vocab = usize_of(&cfg, &["vocab_size"]).map(|v| v as usize);
    let vocab_size = match (logits_vocab, cfg_vocab) {
        (Some(v), _) => v,
        (None, Some(v)) => v,
        (None, None) => {
            return Err(bad(
                &cfg_path,
                "has no `vocab_size`, and the graph's logits do not fix it",
            ))
        }
    };
    let name = match graph {
        "model.onnx" => dir.file_name(),
        _ => Path::new(graph).file_stem(),
    }
    .map(|s| s.to_string_lossy().into_owned())
    .unwrap_or_else(|| "onnx-export".into());
    let (architecture, capabilities, kv_cache_layers) = match &layout {
        Layout::Decoder(io) => (
            "decoder",
            Capabilities {
                loglikelihood: true,
                generate: true,
                rolling: true,
                embed: false,
            },
            Some(io.layers()).filter(|&l| l > 0),
        ),
        Layout::Encoder(_) => (
            "encoder",
            Capabilities {
                embed: true,
                ..Default::default()
            },
            None,
        ),
    };
    let manifest = ModelManifest {
        name,
        architecture: architecture.into(),
        graph: graph.into(),
        tokenizer: "tokenizer.json".into(),
        router_tokenizer: None,
        router_max_tokens: None,
        capabilities,
        max_context,
        vocab_size,
        bos_token_id: field("bos_token_id").filter(|_| !encoder),
        eos_token_id: field("eos_token_id").filter(|_| !encoder),
        add_bos: tok_cfg
            .as_ref()
            .and_then(|t| t.get("add_bos_token"))
            .and_then(|b| b.as_bool()),
        parameters: None,
        kv_cache_layers,
        matmul: "as exported".into(),
        provenance: format!(
            "optimum ONNX export {} ({model_type}); manifest synthesized by EdgeBench from its inputs and outputs and config.json",
            path.display()
        ),
    };
    manifest
        .check()
        .map_err(|m| bad(&cfg_path, format!("gives an unusable manifest: {m}")))?;
    Ok(manifest)
}

/// The model directory and manifest of a `--model` path: a directory with
/// `edgebench-model.toml`; an optimum export folder (`model.onnx` without a manifest); or an
/// `.onnx` file (its folder's manifest when that names it, else synthesized).
pub fn open(path: &Path) -> Result<(PathBuf, ModelManifest), ModelError> {
    use super::manifest::MANIFEST_FILE;
    if path.is_file() && path.extension().is_some_and(|e| e == "onnx") {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file = path
            .file_name()
            .expect("a file has a name")
            .to_string_lossy()
            .into_owned();
        if dir.join(MANIFEST_FILE).is_file() {
            let m = ModelManifest::load(&dir)?;
            if m.graph == file {
                return Ok((dir, m));
            }
        }
        let m = synthesize(&dir, &file)?;
        return Ok((dir, m));
    }
    if path.is_dir() && !path.join(MANIFEST_FILE).exists() && path.join("model.onnx").is_file() {
        return Ok((path.to_path_buf(), synthesize(path, "model.onnx")?));
    }
    Ok((path.to_path_buf(), ModelManifest::load(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn decoder_with_past_maps_cache_tensors_by_layer() {
        let l = Layout::from_names(
            &s(&[
                "input_ids",
                "attention_mask",
                "position_ids",
                "past_key_values.0.key",
                "past_key_values.0.value",
                "past_key_values.1.key",
                "past_key_values.1.value",
            ]),
            &s(&[
                "logits",
                "present.0.key",
                "present.0.value",
                "present.1.key",
                "present.1.value",
            ]),
        )
        .unwrap();
        let Layout::Decoder(io) = l else {
            panic!("a decoder")
        };
        assert_eq!(io.layers(), 2);
        assert_eq!(io.present, vec![1, 2, 3, 4]);
        assert_eq!(io.inputs[4], DecoderInput::Past(1));
        assert_eq!(io.first_past(), Some(3));
    }

    #[test]
    fn missing_value_and_unknown_names_are_refused_with_what_was_found() {
        let e = Layout::from_names(
            &s(&["input_ids", "past_key_values.0.key"]),
            &s(&["logits", "present.0.key"]),
        )
        .unwrap_err();
        assert!(
            e.contains("layer 0 has a key or a value without the other"),
            "{e}"
        );
        let e =
            Layout::from_names(&s(&["input_ids", "pixel_values"]), &s(&["logits"])).unwrap_err();
        assert!(e.contains("unexpected decoder input `pixel_values`"), "{e}");
        assert!(e.contains("found inputs [input_ids, pixel_values]"), "{e}");
        assert!(e.contains("expected an optimum decoder"), "{e}");
        let e = Layout::from_names(&s(&["input_ids"]), &s(&["pooler_output"])).unwrap_err();
        assert!(e.contains("no `logits`"), "{e}");
    }

    #[test]
    fn encoder_prefers_the_pooled_output() {
        let l = Layout::from_names(
            &s(&["input_ids", "attention_mask", "token_type_ids"]),
            &s(&["token_embeddings", "sentence_embedding"]),
        )
        .unwrap();
        assert_eq!(
            l,
            Layout::Encoder(EncoderIo {
                inputs: vec![
                    EncoderInput::Ids,
                    EncoderInput::Mask,
                    EncoderInput::TokenTypes
                ],
                output: 1,
                pooling: Pooling::Pooled,
            })
        );
    }

    #[test]
    fn edgebench_names_are_left_to_the_native_path() {
        assert!(edgebench_decoder_inputs(&s(&[
            "input_ids",
            "past_key_0",
            "past_value_0"
        ])));
        assert!(edgebench_decoder_inputs(&s(&[
            "input_ids",
            "router_ids",
            "router_align"
        ])));
        assert!(!edgebench_decoder_inputs(&s(&[
            "input_ids",
            "attention_mask"
        ])));
    }
}
