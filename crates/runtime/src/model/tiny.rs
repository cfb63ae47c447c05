//! The bundled tiny reference model: a real one-layer attention decoder over
//! bytes, written as ONNX by our own writer and executed by tract.
//!
//! It is small enough to build at start-up and honest enough to score: the
//! output head is a byte-bigram language model fitted (Dirichlet-smoothed
//! counts) on `fixtures/tiny-model/corpus.txt`, and one attention head works
//! as an induction head: position `t` attends to earlier positions whose
//! previous byte equals the current byte and copies what followed there. The
//! residual stream (one-hot byte + attention output) is exposed as
//! `hidden_states`, so mean pooling gives a bag-of-bytes sentence embedding.

use super::manifest::ModelManifest;
use super::tokenizer::write_byte_tokenizer;
use super::{Capabilities, ModelError};
use crate::onnx::layers::{self, i64s};
use crate::onnx::{encode, Attr, Dim, Elem, GraphBuilder};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Vocabulary: 256 bytes plus the end-of-text token.
pub const VOCAB: usize = 257;
/// End-of-text id.
pub const EOT: u32 = 256;
/// Context window in bytes.
pub const MAX_CONTEXT: usize = 512;
/// Attention sharpness for matching previous bytes.
const GAMMA: f32 = 6.0;
/// Weight of the induction head's copy distribution in the logits.
const BETA: f32 = 2.5;
/// Dirichlet smoothing mass towards the unigram distribution.
const SMOOTHING: f64 = 4.0;

/// The text the bigram head is fitted on (written for EdgeBench).
pub const CORPUS: &str = include_str!("../../../../fixtures/tiny-model/corpus.txt");

/// Log-probability table `B[prev][next]` of the smoothed byte bigram model.
pub fn bigram_logprobs(corpus: &str) -> Vec<f32> {
    let bytes = corpus.as_bytes();
    let mut uni = vec![1.0f64; VOCAB];
    let mut big = vec![0.0f64; VOCAB * VOCAB];
    let mut prev = EOT as usize;
    for &b in bytes {
        uni[b as usize] += 1.0;
        big[prev * VOCAB + b as usize] += 1.0;
        prev = b as usize;
    }
    let total: f64 = uni.iter().sum();
    let mut out = vec![0f32; VOCAB * VOCAB];
    for i in 0..VOCAB {
        let row = &big[i * VOCAB..(i + 1) * VOCAB];
        let n: f64 = row.iter().sum();
        for j in 0..VOCAB {
            let p = (row[j] + SMOOTHING * uni[j] / total) / (n + SMOOTHING);
            out[i * VOCAB + j] = p.ln() as f32;
        }
    }
    out
}

/// Builds the ONNX graph of the tiny model.
pub fn build_graph() -> Vec<u8> {
    build_graph_perturbed(0.0, 0)
}

/// The tiny model with uniform noise in `[-noise, noise]` added to every
/// bigram log-probability: a deliberately degraded twin (for gate tests).
pub fn build_graph_perturbed(noise: f32, seed: u64) -> Vec<u8> {
    let v = VOCAB as i64;
    let mut g = GraphBuilder::new("edgebench-tiny");
    let ids = g.input("input_ids", Elem::I64, &[Dim::Fixed(1), Dim::from("seq")]);
    let mut eye = vec![0f32; VOCAB * VOCAB];
    for i in 0..VOCAB {
        eye[i * VOCAB + i] = 1.0;
    }
    let onehot = g.init_f32("onehot", &[v, v], &eye);
    let mut table = bigram_logprobs(CORPUS);
    if noise > 0.0 {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for x in table.iter_mut() {
            *x += rng.random_range(-noise..noise);
        }
    }
    let bigram = g.init_f32("bigram_logprobs", &[v, v], &table);
    let pad = g.init_i64("pad_id", &[1, 1], &[EOT as i64]);
    let zero = i64s(&mut g, "zero", &[0]);
    let minus_one = i64s(&mut g, "minus_one", &[-1]);
    let one_axis = i64s(&mut g, "axis_one", &[1]);
    let axis0 = i64s(&mut g, "axis_zero", &[0]);
    let gamma = g.init_f32("gamma", &[], &[GAMMA]);
    let beta = g.init_f32("beta", &[], &[BETA]);
    let neg = g.init_f32("neg_inf", &[], &[-1e9]);
    let fzero = g.init_f32("fzero", &[], &[0.0]);
    let s0 = g.init_i64("scalar_zero", &[], &[0]);
    let s1 = g.init_i64("scalar_one", &[], &[1]);

    // Query stream: one-hot of the current byte; key stream: one-hot of the previous byte.
    let h = layers::gather_rows(&mut g, &onehot, &ids);
    let head = g.op("Slice", &[&ids, &zero, &minus_one, &one_axis], &[]);
    let prev = g.op("Concat", &[&pad, &head], &[("axis", Attr::Int(1))]);
    let hk = layers::gather_rows(&mut g, &onehot, &prev);
    let scores = layers::scaled_scores(&mut g, &h, &hk, 3, &gamma);
    // Causal mask from positions.
    let pos = layers::positions(&mut g, &ids, &s0, &s1);
    let future = layers::causal_future(&mut g, &pos, &axis0, &one_axis);
    let mask = layers::additive_mask(&mut g, &future, &neg, &fzero);
    let attn = layers::masked_softmax(&mut g, &scores, &mask);
    let copied = g.op("MatMul", &[&attn, &h], &[]);
    // Output head: bigram log-probabilities plus the induction head's copy distribution.
    let bl = layers::gather_rows(&mut g, &bigram, &ids);
    let boost = g.op("Mul", &[&copied, &beta], &[]);
    g.op("Add", &[&bl, &boost], &[]);
    let logits = g.name_last_output("logits");
    let _ = logits;
    g.op("Add", &[&h, &copied], &[]);
    g.name_last_output("hidden_states");
    let seqd = || Dim::from("seq");
    g.output("logits", Elem::F32, &[Dim::Fixed(1), seqd(), Dim::Fixed(v)]);
    g.output(
        "hidden_states",
        Elem::F32,
        &[Dim::Fixed(1), seqd(), Dim::Fixed(v)],
    );
    let model = g.finish(
        "EdgeBench tiny reference model: byte bigram head + one induction attention head",
        &[("edgebench.model", "tiny".to_string())],
    );
    encode(&model)
}

/// The manifest of the tiny model.
pub fn manifest() -> ModelManifest {
    ModelManifest {
        name: "edgebench-tiny".into(),
        architecture: "decoder".into(),
        graph: "model.onnx".into(),
        tokenizer: "tokenizer.json".into(),
        router_tokenizer: None,
        router_max_tokens: None,
        capabilities: Capabilities::all(),
        max_context: MAX_CONTEXT,
        vocab_size: VOCAB,
        bos_token_id: Some(EOT),
        eos_token_id: Some(EOT),
        add_bos: Some(true),
        parameters: Some(2 * (VOCAB * VOCAB) as u64),
        kv_cache_layers: None,
        matmul: "f32".into(),
        provenance: "built by EdgeBench: byte-bigram head fitted on fixtures/tiny-model/corpus.txt, induction attention head with fixed weights".into(),
    }
}

/// Writes the tiny model directory (idempotent: rewritten only when the graph changed).
pub fn materialize(dir: &Path) -> Result<PathBuf, ModelError> {
    write_dir(dir, build_graph(), manifest())
}

/// Writes the perturbed twin of the tiny model (see [`build_graph_perturbed`]).
pub fn materialize_perturbed(dir: &Path, noise: f32, seed: u64) -> Result<PathBuf, ModelError> {
    let m = ModelManifest {
        name: format!("edgebench-tiny-perturbed-{noise}"),
        provenance: format!(
            "the tiny model with uniform noise +-{noise} (seed {seed}) on its bigram head"
        ),
        ..manifest()
    };
    write_dir(dir, build_graph_perturbed(noise, seed), m)
}

fn write_dir(dir: &Path, graph: Vec<u8>, manifest: ModelManifest) -> Result<PathBuf, ModelError> {
    let fresh = std::fs::read(dir.join("model.onnx"))
        .map(|old| Sha256::digest(&old) == Sha256::digest(&graph))
        .unwrap_or(false)
        && ModelManifest::load(dir).is_ok()
        && dir.join("tokenizer.json").is_file();
    if !fresh {
        super::write_dir_atomically(dir, |tmp| {
            let graph_path = tmp.join("model.onnx");
            std::fs::write(&graph_path, &graph).map_err(|source| ModelError::Io {
                path: graph_path,
                source,
            })?;
            write_byte_tokenizer(&tmp.join("tokenizer.json"))?;
            manifest.save(tmp)
        })?;
    }
    Ok(dir.to_path_buf())
}
