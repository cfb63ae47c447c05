//! Writes a GEM graph: router -> 9 pathways (SCAR attention, per-pathway
//! precision) -> merge -> quantized LM head, with the paper's ablations.
//! [`build`] writes the dispatch the config names: sparse
//! ([`super::sparse`], the default) or the dense-masked reference here.
//!
//! Graph inputs/outputs: `input_ids` `[1, seq]` -> `logits` `[1, seq, vocab]`,
//! `hidden_states` `[1, seq, hidden]`, `route` `[1, seq]` (0..7 a domain, 8
//! general) and, with the router, `route_probs` `[1, seq, 8]`.
//!
//! Dense-masked dispatch: every pathway is evaluated on the whole sequence
//! with its attention restricted to the tokens routed to it (SCAR's `group`
//! input, which also clusters each group on its own, or the same mask in
//! dense attention), and each token keeps the output of its own pathway. For
//! the routed tokens that is exactly gathering them, running the pathway and
//! scattering back in order, at 9x the pathway compute; it has no KV cache.
//!
//! The router is causal, like the pathways: a token's route depends only on
//! itself and earlier tokens, so routes of a prefix never change when text is
//! appended and per-token likelihoods stay well defined.

use super::config::{GemConfig, DOMAINS};
use crate::onnx::layers::{self, i64s, HalfSplit};
use crate::onnx::{encode, Attr, Dim, Elem, GraphBuilder};
use crate::ops::quant::{QuantFormat, QuantMatrix};
use crate::ops::scar::ScarParams;
use rand::{Rng, SeedableRng};

/// Scale of the seeded domain head `W_r`.
const ROUTER_SCALE: f32 = 6.0;

/// Which graph to write: the full model or one of the paper's ablations (Table 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Router, SCAR, hybrid quantization.
    Full,
    /// Dense causal attention instead of SCAR.
    NoScar,
    /// Every layer in f32 (the same weights before quantization).
    NoQuant,
    /// No router: every token takes the general pathway.
    NoRouter,
}

impl Variant {
    /// All variants, full model first.
    pub const ALL: [Variant; 4] = [
        Variant::Full,
        Variant::NoScar,
        Variant::NoQuant,
        Variant::NoRouter,
    ];

    /// Suffix of the variant's directory and name.
    pub fn suffix(self) -> &'static str {
        match self {
            Variant::Full => "",
            Variant::NoScar => "-no-scar",
            Variant::NoQuant => "-no-quant",
            Variant::NoRouter => "-no-router",
        }
    }

    /// Parses `full`, `no-scar`, `no-quant`, `no-router`.
    pub fn parse(s: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| {
            v.suffix().trim_start_matches('-') == s || (s == "full" && *v == Variant::Full)
        })
    }
}

/// Source of weight matrices by name (`[out, in]` row-major).
///
/// Only `matrix` is required (seeded builds); a pretrained source also
/// supplies norm gains, matrices already quantized as stored, which tensors
/// are one and the same (shared between pathways), and a BERT router.
pub trait WeightSource {
    /// The f32 matrix `name` of shape `rows x cols`.
    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Vec<f32>;
    /// A fitted domain head `(W_r [8 x router hidden], b_r [8])`, if any.
    fn router_head(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        None
    }
    /// The gain vector `name` of an RMSNorm (default: ones).
    fn vector(&mut self, _name: &str, len: usize) -> Vec<f32> {
        vec![1.0; len]
    }
    /// `name` exactly as stored when the source keeps it block-quantized at
    /// `bits` in blocks of `block_size` (no re-quantization error).
    fn quantized(
        &mut self,
        _name: &str,
        _rows: usize,
        _cols: usize,
        _bits: usize,
        _block_size: usize,
    ) -> Option<QuantMatrix> {
        None
    }
    /// Quantize fresh matrices with per-block minimums (asymmetric blocks).
    fn asymmetric(&self) -> bool {
        false
    }
    /// Key of the stored tensor behind `name`: names with the same key and
    /// precision share one set of initializers in the graph.
    fn shared_key(&self, _name: &str) -> Option<String> {
        None
    }
    /// A BERT encoder to use as the router (instead of a seeded causal transformer).
    fn bert_router(&mut self) -> Option<&mut dyn BertRouter> {
        None
    }
}

/// A BERT checkpoint used as GEM's router encoder.
pub trait BertRouter {
    /// Its configuration.
    fn config(&self) -> &crate::model::bert::BertConfig;
    /// The f32 tensor `name` of `shape` (checked when the source was opened).
    fn tensor(&mut self, name: &str, shape: &[usize]) -> Vec<f32>;
}

/// Seeded uniform weights with variance `1 / cols` (embeddings: variance 1).
pub struct Seeded {
    seed: u64,
    head: Option<(Vec<f32>, Vec<f32>)>,
}

impl Seeded {
    /// Weights drawn from `seed`; each tensor's stream is keyed by its name,
    /// so a tensor does not change when another is added.
    pub fn new(seed: u64) -> Self {
        Seeded { seed, head: None }
    }

    /// The same weights with a fitted domain head.
    pub fn with_router_head(seed: u64, head: (Vec<f32>, Vec<f32>)) -> Self {
        Seeded {
            seed,
            head: Some(head),
        }
    }
}

impl WeightSource for Seeded {
    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Vec<f32> {
        let key = edgebench_util::hash::sha256_str(name);
        let salt = u64::from_str_radix(&key[..16], 16).unwrap_or(0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed ^ salt);
        let fan = if name.ends_with("embed") { 1 } else { cols };
        let a = (3.0 / fan as f32).sqrt();
        (0..rows * cols).map(|_| rng.random_range(-a..a)).collect()
    }

    fn router_head(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        self.head.clone()
    }
}

pub(super) struct Ctx<'a> {
    pub(super) g: GraphBuilder,
    pub(super) w: &'a mut dyn WeightSource,
    pub(super) block_size: usize,
    pub(super) quantize: bool,
    pub(super) weight_bytes: u64,
    /// Initializers already written, by shared key and precision.
    pub(super) shared: std::collections::HashMap<String, Vec<String>>,
}

/// A pathway or router matrix as written into the graph.
pub(super) enum Written {
    /// `EbQuantLinear` initializers ([`crate::ops::quant::write_initializers`]).
    Quant(QuantFormat, Vec<String>),
    /// An f32 initializer laid out `[in, out]` (an ONNX `MatMul` weight).
    F32(String),
}

impl<'a> Ctx<'a> {
    /// A graph named after `cfg`, quantized unless `variant` is `NoQuant`.
    pub(super) fn new(cfg: &GemConfig, variant: Variant, w: &'a mut dyn WeightSource) -> Self {
        Ctx {
            g: GraphBuilder::new(&cfg.name),
            w,
            block_size: cfg.pathways.block_size,
            quantize: variant != Variant::NoQuant,
            weight_bytes: 0,
            shared: Default::default(),
        }
    }

    /// The domain head `W_r` (fitted, or seeded and scaled) and
    /// `EbTokenRouter` over the router states `h`; names the `route_probs`
    /// output and returns the route.
    pub(super) fn route(&mut self, h: &str, r: &super::config::RouterConfig) -> String {
        let ndom = DOMAINS.len();
        // A seeded W_r is scaled so that logits spread by a few units and
        // tokens actually leave the general pathway (at unit scale every
        // probability stays near 1/8 < tau); a fitted head is used as is.
        let (wr, br) = match self.w.router_head() {
            Some(head) => head,
            None => (
                self.w
                    .matrix("router.w_r", ndom, r.hidden)
                    .iter()
                    .map(|v| v * ROUTER_SCALE)
                    .collect(),
                vec![0.0; ndom],
            ),
        };
        let wr = self
            .g
            .init_f32("router.w_r", &[ndom as i64, r.hidden as i64], &wr);
        let br = self.g.init_f32("router.b_r", &[ndom as i64], &br);
        let (route, probs) =
            crate::ops::router::write_node(&mut self.g, "router", h, &wr, Some(&br), r.tau);
        self.g.op("Identity", &[&probs], &[]);
        self.g.name_last_output("route_probs");
        route
    }

    /// The output norm and LM head over the pathways' result `h`, and the
    /// outputs every GEM graph has: `logits`, `hidden_states`, `route` and,
    /// with a router, `route_probs` and `router_hidden`.
    pub(super) fn head(
        &mut self,
        cfg: &GemConfig,
        vocab: usize,
        (h, route): (&str, &str),
        (two, eps): (&str, &str),
        router: bool,
    ) {
        let (d, ndom) = (cfg.pathways.hidden, DOMAINS.len() as i64);
        let gain = self.w.vector("output.norm", d);
        let gain = self.g.init_f32("output.norm", &[d as i64], &gain);
        let hn = layers::rms_norm(&mut self.g, h, &gain, two, eps);
        self.g.op("Identity", &[&hn], &[]);
        let hidden = self.g.name_last_output("hidden_states");
        let logits = self.linear("output.head", &hidden, vocab, d, cfg.output.bits);
        self.g.op("Identity", &[&logits], &[]);
        self.g.name_last_output("logits");
        self.g.op("Identity", &[route], &[]);
        self.g.name_last_output("route");
        let row = |last: i64| [Dim::Fixed(1), Dim::from("seq"), Dim::Fixed(last)];
        self.g.output("logits", Elem::F32, &row(vocab as i64));
        self.g.output("hidden_states", Elem::F32, &row(d as i64));
        self.g
            .output("route", Elem::I64, &[Dim::Fixed(1), Dim::from("seq")]);
        if router {
            self.g.output("route_probs", Elem::F32, &row(ndom));
            self.g
                .output("router_hidden", Elem::F32, &row(cfg.router.hidden as i64));
        }
    }

    /// The initializers of weight `name` `[out, in]` at `bits` (f32 when
    /// quantization is off), written once per shared key and precision.
    pub(super) fn weights(&mut self, name: &str, out: usize, inp: usize, bits: usize) -> Written {
        let f = QuantFormat {
            bits,
            block_size: self.block_size,
            k: inp,
            n: out,
        };
        let key = self
            .w
            .shared_key(name)
            .map(|k| format!("{k}@{}", if self.quantize { bits } else { 32 }));
        if let Some(inits) = key.as_ref().and_then(|k| self.shared.get(k)).cloned() {
            return if self.quantize {
                Written::Quant(f, inits)
            } else {
                Written::F32(inits[0].clone())
            };
        }
        let (written, inits) = if self.quantize {
            let q = match self.w.quantized(name, out, inp, bits, self.block_size) {
                Some(q) => q,
                None => {
                    let w = self.w.matrix(name, out, inp);
                    QuantMatrix::quantize(&w, f, self.w.asymmetric())
                        .expect("config validated the format")
                }
            };
            self.weight_bytes += q.bytes() as u64;
            let inits = crate::ops::quant::write_initializers(&mut self.g, name, &q);
            (Written::Quant(f, inits.clone()), inits)
        } else {
            let w = self.w.matrix(name, out, inp);
            self.weight_bytes += (4 * w.len()) as u64;
            let wt = self.g.init_f32(
                name,
                &[inp as i64, out as i64],
                &layers::transpose(&w, out, inp),
            );
            (Written::F32(wt.clone()), vec![wt])
        };
        if let Some(k) = key {
            self.shared.insert(k, inits);
        }
        written
    }

    /// `x . W^T` for a fresh weight `name` `[out, in]` at `bits` (f32 when quantization is off).
    pub(super) fn linear(
        &mut self,
        name: &str,
        x: &str,
        out: usize,
        inp: usize,
        bits: usize,
    ) -> String {
        match self.weights(name, out, inp, bits) {
            Written::Quant(f, inits) => {
                crate::ops::quant::write_node_with(&mut self.g, name, x, f, &inits)
            }
            Written::F32(w) => self.g.op("MatMul", &[x, &w], &[]),
        }
    }
}

/// Shared graph values: positions, RoPE tables, causal mask.
struct Common {
    seq_ax: [String; 3],
    two: String,
    eps: String,
    future: String,
    neg: String,
    fzero: String,
}

struct Block<'a> {
    prefix: &'a str,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    ffn: usize,
    bits: usize,
    /// `route` values to restrict attention to the same pathway.
    group: Option<&'a str>,
    scar: Option<ScarParams>,
    rope: &'a (String, String),
}

fn rms(c: &mut Ctx, k: &Common, x: &str, name: &str, d: usize) -> String {
    let gain = c.w.vector(name, d);
    let w = c.g.init_f32(name, &[d as i64], &gain);
    layers::rms_norm(&mut c.g, x, &w, &k.two, &k.eps)
}

fn block(c: &mut Ctx, k: &Common, b: &Block, h: &str) -> String {
    let (d, heads) = (b.hidden, b.heads);
    let hd = d / heads;
    let p = |s: &str| format!("{}.{s}", b.prefix);
    let x = rms(c, k, h, &p("attn_norm"), d);
    let heads_shape = i64s(
        &mut c.g,
        &p("shape_heads"),
        &[0, 0, heads as i64, hd as i64],
    );
    let model_shape = i64s(&mut c.g, &p("shape_model"), &[0, 0, d as i64]);
    let split = |c: &mut Ctx, t: &str, shape: &str| layers::split_heads(&mut c.g, t, shape);
    let kv = b.kv_heads;
    let q = c.linear(&p("attn_q"), &x, d, d, b.bits);
    let kk = c.linear(&p("attn_k"), &x, kv * hd, d, b.bits);
    let v = c.linear(&p("attn_v"), &x, kv * hd, d, b.bits);
    let q = split(c, &q, &heads_shape);
    let (kk, v) = if kv == heads {
        (split(c, &kk, &heads_shape), split(c, &v, &heads_shape))
    } else {
        // grouped-query attention: query head h reads key/value head h / (heads / kv)
        let kv_shape = i64s(&mut c.g, &p("shape_kv"), &[0, 0, kv as i64, hd as i64]);
        let reps = i64s(&mut c.g, &p("kv_reps"), &[1, 1, (heads / kv) as i64, 1, 1]);
        let back = i64s(&mut c.g, &p("shape_rep"), &[0, heads as i64, -1, hd as i64]);
        let rep = |c: &mut Ctx, t: &str| {
            let t = split(c, t, &kv_shape);
            let t = c.g.op("Unsqueeze", &[&t, &k.seq_ax[2]], &[]);
            let t = c.g.op("Tile", &[&t, &reps], &[]);
            c.g.op("Reshape", &[&t, &back], &[])
        };
        (rep(c, &kk), rep(c, &v))
    };
    let q = rope_heads(c, &q, hd, b.rope);
    let kk = rope_heads(c, &kk, hd, b.rope);
    let o = match b.scar {
        Some(params) => {
            let (o, _clusters) = crate::ops::scar::write_node(
                &mut c.g,
                &p("scar"),
                &x,
                &q,
                &kk,
                &v,
                b.group,
                &params,
            );
            o
        }
        None => {
            let scale = c.g.init_f32(&p("scale"), &[], &[1.0 / (hd as f32).sqrt()]);
            let sc = layers::scaled_scores(&mut c.g, &q, &kk, 4, &scale);
            let blocked = match b.group {
                Some(route) => {
                    let gi = c.g.op("Unsqueeze", &[route, &k.seq_ax[2]], &[]);
                    let gj = c.g.op("Unsqueeze", &[route, &k.seq_ax[1]], &[]);
                    let same = c.g.op("Equal", &[&gi, &gj], &[]);
                    let other = c.g.op("Not", &[&same], &[]);
                    let any = c.g.op("Or", &[&k.future, &other], &[]);
                    c.g.op("Unsqueeze", &[&any, &k.seq_ax[1]], &[])
                }
                None => k.future.clone(),
            };
            let mask = layers::additive_mask(&mut c.g, &blocked, &k.neg, &k.fzero);
            let pr = layers::masked_softmax(&mut c.g, &sc, &mask);
            c.g.op("MatMul", &[&pr, &v], &[])
        }
    };
    let o = layers::merge_heads(&mut c.g, &o, &model_shape);
    let o = c.linear(&p("attn_output"), &o, d, d, b.bits);
    let h = c.g.op("Add", &[h, &o], &[]);
    let x = rms(c, k, &h, &p("ffn_norm"), d);
    let gate = c.linear(&p("ffn_gate"), &x, b.ffn, d, b.bits);
    let up = c.linear(&p("ffn_up"), &x, b.ffn, d, b.bits);
    let act = layers::swiglu(&mut c.g, &gate, &up);
    let down = c.linear(&p("ffn_down"), &act, d, b.ffn, b.bits);
    c.g.op("Add", &[&h, &down], &[])
}

/// The graph's doc string: what was built, from which config.
pub(super) fn describe(
    cfg: &GemConfig,
    variant: Variant,
    how: &str,
    pathways: usize,
    scar: &str,
) -> String {
    let (r, p) = (&cfg.router, &cfg.pathways);
    format!(
        "GEM architecture ({variant:?}{how}) built by EdgeBench from config `{}`: router {}x{} at {} bits, {} pathways of {}x{} (domain {} bits, general {} bits), SCAR {}",
        cfg.name,
        r.layers,
        r.hidden,
        r.bits,
        pathways,
        p.layers,
        p.hidden,
        p.domain_bits,
        p.general_bits,
        scar
    )
}

/// RoPE (`rotate_half` form) on heads `t` `[.., head_dim]` with the tables
/// gathered by [`rope_tables`].
/// Block length of [`exact_q8`].
const EMBED_BLOCK: usize = 32;

/// Symmetric 8-bit codes (offset by 128) and one scale per block of
/// [`EMBED_BLOCK`] of a row-major table of rows of `cols`, when they give
/// back every value exactly (`(code - 128) * scale`, in f32): a table
/// dequantized from Q8_0, as SmolLM2's GGUF token embeddings are.
pub fn exact_q8(table: &[f32], cols: usize) -> Option<(Vec<u8>, Vec<f32>)> {
    if cols == 0 || !cols.is_multiple_of(EMBED_BLOCK) {
        return None;
    }
    let mut codes = Vec::with_capacity(table.len());
    let mut scales = Vec::with_capacity(table.len() / EMBED_BLOCK);
    for block in table.chunks(EMBED_BLOCK) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = amax / 127.0;
        for &v in block {
            let q = if scale > 0.0 {
                (v / scale).round()
            } else {
                0.0
            };
            if !(-128.0..=127.0).contains(&q) {
                return None;
            }
            let code = (q as i16 + 128) as u8;
            // what the graph computes, to the bit
            if ((code as f32 - 128.0) * scale).to_bits() != v.to_bits() {
                return None;
            }
            codes.push(code);
        }
        scales.push(scale);
    }
    Some((codes, scales))
}

/// The rows `ids` of an embedding table `[rows, cols]`: stored as 8-bit
/// codes and block scales and dequantized per gathered row when
/// [`exact_q8`] finds them exact (a quarter of the bytes, same values),
/// else as the f32 table.
pub fn embedding(
    g: &mut GraphBuilder,
    name: &str,
    table: &[f32],
    cols: usize,
    ids: &str,
) -> String {
    let rows = (table.len() / cols.max(1)) as i64;
    let Some((codes, scales)) = exact_q8(table, cols) else {
        let t = g.init_f32(name, &[rows, cols as i64], table);
        return layers::gather_rows(g, &t, ids);
    };
    let blocks = (cols / EMBED_BLOCK) as i64;
    let codes = g.init_u8(&format!("{name}.codes"), &[rows, cols as i64], &codes);
    let scales = g.init_f32(&format!("{name}.scales"), &[rows, blocks, 1], &scales);
    let offset = g.init_f32(&format!("{name}.offset"), &[], &[128.0]);
    let by_block = layers::i64s(
        g,
        &format!("{name}.by_block"),
        &[0, 0, blocks, EMBED_BLOCK as i64],
    );
    let by_row = layers::i64s(g, &format!("{name}.by_row"), &[0, 0, cols as i64]);
    let c = layers::gather_rows(g, &codes, ids);
    let c = g.op("Cast", &[&c], &[("to", Attr::Int(1))]);
    let c = g.op("Sub", &[&c, &offset], &[]);
    let c = g.op("Reshape", &[&c, &by_block], &[]);
    let s = layers::gather_rows(g, &scales, ids);
    let x = g.op("Mul", &[&c, &s], &[]);
    g.op("Reshape", &[&x, &by_row], &[])
}

pub(super) fn rope_heads(c: &mut Ctx, t: &str, hd: usize, (cos, sin): &(String, String)) -> String {
    let half = i64s(&mut c.g, &format!("{t}.half"), &[hd as i64 / 2]);
    let full = i64s(&mut c.g, &format!("{t}.full"), &[hd as i64]);
    let zero = i64s(&mut c.g, &format!("{t}.zero"), &[0]);
    let last = i64s(&mut c.g, &format!("{t}.last"), &[-1]);
    let split = HalfSplit {
        start: &zero,
        mid: &half,
        end: &full,
        axis: &last,
    };
    layers::rope(&mut c.g, t, &split, cos, sin)
}

/// RoPE cos/sin tables gathered at `pos`, shaped `[seq, head_dim]`.
pub(super) fn rope_tables(
    c: &mut Ctx,
    name: &str,
    ctx: usize,
    hd: usize,
    base: f64,
    pos: &str,
) -> (String, String) {
    let (ct, st) = layers::rope_tables(
        &mut c.g,
        (&format!("{name}.cos"), &format!("{name}.sin")),
        ctx,
        hd,
        base,
    );
    (
        layers::gather_rows(&mut c.g, &ct, pos),
        layers::gather_rows(&mut c.g, &st, pos),
    )
}

/// Writes a BERT router over the `router_ids` input `[1, rseq]` with causal
/// attention (a token sees itself and earlier tokens only, so no route
/// depends on text after it); returns its hidden states `[1, rseq, hidden]`.
fn bert_router_hidden(
    g: &mut GraphBuilder,
    br: &mut dyn BertRouter,
    bits: Option<usize>,
) -> String {
    let rids = g.input("router_ids", Elem::I64, &[Dim::Fixed(1), Dim::from("rseq")]);
    let z = g.init_i64("router.c_z", &[], &[0]);
    let one = g.init_i64("router.c_one_i", &[], &[1]);
    let a0 = i64s(g, "router.c_a0", &[0]);
    let a1 = i64s(g, "router.c_a1", &[1]);
    let neg = g.init_f32("router.c_neg", &[], &[-1e9]);
    let fz = g.init_f32("router.c_fz", &[], &[0.0]);
    let pos = layers::positions(g, &rids, &z, &one);
    let future = layers::causal_future(g, &pos, &a0, &a1);
    let mask = layers::additive_mask(g, &future, &neg, &fz);
    let cfg = br.config().clone();
    let mut tensor = |name: &str, shape: &[usize]| Ok(br.tensor(name, shape));
    let io = crate::model::bert::EncoderIo {
        ids: &rids,
        add_mask: &mask,
        prefix: "router.",
        bits,
        positions: None,
        cache: None,
    };
    crate::model::bert::write_encoder(g, &cfg, &mut tensor, &io)
        .expect("the BERT router's tensors were checked when its source was opened")
}

/// The router alone (`router_ids` -> `router_hidden` per router token), for
/// fitting `W_r` without running the pathways; `None` for seeded routers.
pub fn build_router_features(cfg: &GemConfig, weights: &mut dyn WeightSource) -> Option<Vec<u8>> {
    let br = weights.bert_router()?;
    let mut g = GraphBuilder::new(&format!("{}-router", cfg.name));
    let h = bert_router_hidden(&mut g, br, Some(cfg.router.bits));
    g.op("Identity", &[&h], &[]);
    g.name_last_output("router_hidden");
    g.output(
        "router_hidden",
        Elem::F32,
        &[
            Dim::Fixed(1),
            Dim::from("rseq"),
            Dim::Fixed(cfg.router.hidden as i64),
        ],
    );
    Some(encode(&g.finish("GEM router features", &[])))
}

/// A built graph and what it holds.
pub struct Built {
    /// ONNX bytes.
    pub onnx: Vec<u8>,
    /// Bytes of all linear-layer weights as stored (quantized or f32).
    pub weight_bytes: u64,
}

/// Builds the GEM graph of `cfg` over a vocabulary of `vocab` tokens, with
/// the dispatch `cfg.dispatch` names.
pub fn build(
    cfg: &GemConfig,
    vocab: usize,
    variant: Variant,
    weights: &mut dyn WeightSource,
) -> Built {
    match cfg.dispatch {
        super::config::Dispatch::Sparse => super::sparse::build(cfg, vocab, variant, weights),
        super::config::Dispatch::Dense => build_dense(cfg, vocab, variant, weights),
    }
}

/// The dense-masked reference graph: every pathway on every token.
fn build_dense(
    cfg: &GemConfig,
    vocab: usize,
    variant: Variant,
    weights: &mut dyn WeightSource,
) -> Built {
    let mut c = Ctx::new(cfg, variant, weights);
    let ids =
        c.g.input("input_ids", Elem::I64, &[Dim::Fixed(1), Dim::from("seq")]);
    let s0 = c.g.init_i64("c_s0", &[], &[0]);
    let s1 = c.g.init_i64("c_s1", &[], &[1]);
    let ax: Vec<String> = (0..3)
        .map(|i| i64s(&mut c.g, &format!("c_ax{i}"), &[i]))
        .collect();
    let k = Common {
        seq_ax: [ax[0].clone(), ax[1].clone(), ax[2].clone()],
        two: c.g.init_f32("c_two", &[], &[2.0]),
        eps: c.g.init_f32("c_eps", &[], &[1e-5]),
        neg: c.g.init_f32("c_neg", &[], &[f32::NEG_INFINITY]),
        fzero: c.g.init_f32("c_fzero", &[], &[0.0]),
        future: String::new(),
    };
    let pos = layers::positions(&mut c.g, &ids, &s0, &s1);
    let future = layers::causal_future(&mut c.g, &pos, &ax[0], &ax[1]);
    let k = Common { future, ..k };
    let ndom = DOMAINS.len();
    let general = ndom as i64;

    // Router -> route [1, seq] (and probabilities).
    let r = &cfg.router;
    let route = if variant == Variant::NoRouter {
        let zero = c.g.op("Mul", &[&ids, &s0], &[]);
        let gen = c.g.init_i64("c_general", &[], &[general]);
        c.g.op("Add", &[&zero, &gen], &[])
    } else {
        let bert = {
            let Ctx { g, w, quantize, .. } = &mut c;
            w.bert_router()
                .map(|br| bert_router_hidden(g, br, quantize.then_some(r.bits)))
        };
        let h = match bert {
            Some(token_hidden) => {
                // one router row per pathway token: the last router token that
                // ends at or before the pathway token's end (see model::align)
                let align = c.g.input(
                    "router_align",
                    Elem::I64,
                    &[Dim::Fixed(1), Dim::from("seq")],
                );
                let flat = i64s(&mut c.g, "router.flat", &[-1]);
                let al = c.g.op("Reshape", &[&align, &flat], &[]);
                c.g.op("Gather", &[&token_hidden, &al], &[("axis", Attr::Int(1))])
            }
            None => {
                let emb = c.w.matrix("router.embed", vocab, r.hidden);
                let emb =
                    c.g.init_f32("router.embed", &[vocab as i64, r.hidden as i64], &emb);
                let mut h = layers::gather_rows(&mut c.g, &emb, &ids);
                let rope = rope_tables(
                    &mut c,
                    "router.rope",
                    cfg.max_context,
                    r.hidden / r.heads,
                    cfg.pathways.rope_base,
                    &pos,
                );
                for l in 0..r.layers {
                    let prefix = format!("router.blk{l}");
                    let b = Block {
                        prefix: &prefix,
                        hidden: r.hidden,
                        heads: r.heads,
                        kv_heads: r.heads,
                        ffn: r.ffn,
                        bits: r.bits,
                        group: None,
                        scar: None,
                        rope: &rope,
                    };
                    h = block(&mut c, &k, &b, &h);
                }
                rms(&mut c, &k, &h, "router.norm", r.hidden)
            }
        };
        c.g.op("Identity", &[&h], &[]);
        c.g.name_last_output("router_hidden");
        c.route(&h, r)
    };

    // Pathways, merged by route.
    let p = &cfg.pathways;
    let emb = c.w.matrix("pathway.embed", vocab, p.hidden);
    let h0 = embedding(&mut c.g, "pathway.embed", &emb, p.hidden, &ids);
    let rope = rope_tables(
        &mut c,
        "pathway.rope",
        cfg.max_context,
        p.hidden / p.heads,
        p.rope_base,
        &pos,
    );
    let scar = (cfg.scar.enabled && variant != Variant::NoScar).then(|| cfg.scar.params());
    let route3 = c.g.op("Unsqueeze", &[&route, &ax[2]], &[]);
    let pathways: Vec<usize> = if variant == Variant::NoRouter {
        vec![ndom]
    } else {
        (0..=ndom).collect()
    };
    let mut merged: Option<String> = None;
    for &pw in pathways.iter().rev() {
        let name = if pw == ndom { "general" } else { DOMAINS[pw] };
        let bits = if pw == ndom {
            p.general_bits
        } else {
            p.domain_bits
        };
        let mut h = h0.clone();
        for l in 0..p.layers {
            let prefix = format!("pathway.{name}.blk{l}");
            let b = Block {
                prefix: &prefix,
                hidden: p.hidden,
                heads: p.heads,
                kv_heads: p.kv_heads(),
                ffn: p.ffn,
                bits,
                group: Some(&route),
                scar,
                rope: &rope,
            };
            h = block(&mut c, &k, &b, &h);
        }
        merged = Some(match merged {
            None => h,
            Some(m) => {
                let id = c.g.init_i64(&format!("c_route_{pw}"), &[], &[pw as i64]);
                let sel = c.g.op("Equal", &[&route3, &id], &[]);
                c.g.op("Where", &[&sel, &h, &m], &[])
            }
        });
    }
    let merged = merged.expect("at least one pathway");
    c.head(
        cfg,
        vocab,
        (&merged, &route),
        (&k.two, &k.eps),
        variant != Variant::NoRouter,
    );
    let weight_bytes = c.weight_bytes;
    let scar_text = match scar {
        Some(_) => format!("k={} on", cfg.scar.k),
        None => format!("k={} off", cfg.scar.k),
    };
    let doc = describe(cfg, variant, "", pathways.len(), &scar_text);
    let onnx = encode(&c.g.finish(&doc, &[("edgebench.gem.variant", format!("{variant:?}"))]));
    Built { onnx, weight_bytes }
}
