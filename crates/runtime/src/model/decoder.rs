//! A causal decoder (`architecture = "decoder"`) executed by tract.
//!
//! The graph takes `input_ids` `[1, seq]` (i64) and returns `logits`
//! `[1, seq, vocab]`, optionally `hidden_states` `[1, seq, d]` (mean-pooled
//! for embeddings), and, for graphs with a KV cache, `past_key_<i>` /
//! `past_value_<i>` inputs `[1, kv_heads, past, head_dim]` with matching
//! `present_*` outputs. With a cache, the context of a multiple-choice
//! question is computed once and each continuation reuses it, and generation
//! decodes one token per step. Graphs exported by Hugging Face optimum run
//! through the same passes, their inputs and outputs mapped by name
//! ([`super::optimum::DecoderIo`]).

use super::manifest::ModelManifest;
use super::optimum::DecoderIo;
use super::tokenizer::Tok;
use super::{Generation, LogLikelihood, Model, ModelError, ModelInfo, Rolling};
use crate::options::RuntimeOptions;
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::DimLike;

/// A decoder graph loaded, optimised and made runnable by tract.
pub struct TractDecoder {
    plan: Arc<TypedRunnableModel>,
    runner: super::Runner,
    tok: Tok,
    info: ModelInfo,
    manifest: ModelManifest,
    graph_path: PathBuf,
    has_hidden: bool,
    /// (layers, kv heads, head dim) when an optimum export has a KV cache.
    cache_shape: Option<(usize, usize, usize)>,
    /// The `past_*` inputs of EdgeBench's own graphs (empty without a cache).
    slots: Vec<Slot>,
    /// Reuse the context's KV cache across continuations (on by default).
    share_context: bool,
    /// The last context's tokens and KV cache, reused for a later context that
    /// starts the same way (few-shot prompts, one question per label).
    prefix: Option<(Vec<u32>, Cache)>,
    /// Heads of `prefix`'s cache that earlier passes started from, shortest
    /// first (graphs without a router): a context sharing exactly as many
    /// tokens starts from one instead of copying the cache again.
    heads: Vec<Cache>,
    /// How many heads are kept ([`KEPT_HEADS`]; 0 copies every head).
    kept_heads: usize,
    /// Index of the `route` output (GEM graphs), and the routes of each pass since the last `take_routes`.
    route_output: Option<usize>,
    routes: std::sync::Mutex<Vec<Vec<u8>>>,
    /// A vocabulary-sized buffer for log-softmax (allocating one per scored
    /// token cost page faults: it is larger than malloc's mmap threshold).
    scratch: std::sync::Mutex<Vec<f32>>,
    /// Second token stream for graphs with a BERT router (`router_ids`, `router_align`).
    router: Option<super::align::RouterAlign>,
    /// The inputs and outputs of an optimum export (`None`: EdgeBench's own names).
    io: Option<DecoderIo>,
}

/// Perplexity of a text in chunks ([`TractDecoder::perplexity_chunks`]).
#[derive(Debug, Clone, Copy)]
pub struct Perplexity {
    /// As scored (by cached decoding when asked).
    pub perplexity: f64,
    /// Of one forward pass per chunk.
    pub one_pass: f64,
    /// With cached decoding: the largest |logit| difference from one pass
    /// over the scored positions.
    pub max_logit_difference: Option<f32>,
    /// Tokens scored.
    pub tokens: usize,
}

/// Shortest shared prefix worth reusing, in tokens.
const MIN_PREFIX_REUSE: usize = 8;

/// Heads of the context cache kept for reuse (a document's label questions
/// share it up to one of a few lengths).
const KEPT_HEADS: usize = 2;

/// What a graph has cached after some tokens: per-layer keys and values
/// (and, for GEM, routes, router states and SCAR clusters).
#[derive(Clone)]
struct Cache {
    tensors: Vec<TValue>,
    len: usize,
    /// With a router: the tokens cached and the character end of each
    /// (GEM's router alignment); empty otherwise.
    ids: Vec<u32>,
    ends: Vec<usize>,
    /// The router tokens the router slots hold.
    router_ids: Vec<i64>,
}

impl Cache {
    /// The cache after its first `n` tokens (router slots are trimmed when
    /// the next pass knows its router tokens).
    fn head(&self, slots: &[Slot], n: usize) -> TractResult<Cache> {
        let tensors = match slots.is_empty() {
            // optimum exports: every tensor [1, kv, past, hd]
            true => self
                .tensors
                .iter()
                .map(|t| t.slice(2, 0, n).map(|t| t.into_tvalue()))
                .collect::<TractResult<_>>()?,
            false => self
                .tensors
                .iter()
                .zip(slots)
                .map(|(t, s)| match s.router {
                    true => Ok(t.clone()),
                    false => t.slice(s.axis, 0, n).map(|t| t.into_tvalue()),
                })
                .collect::<TractResult<_>>()?,
        };
        Ok(Cache {
            tensors,
            len: n,
            ids: self.ids[..n.min(self.ids.len())].to_vec(),
            ends: self.ends[..n.min(self.ends.len())].to_vec(),
            router_ids: self.router_ids.clone(),
        })
    }
}

/// A `past_<x>` input of the graph and its `present_<x>` output.
#[derive(Debug, Clone)]
struct Slot {
    output: usize,
    /// The axis that grows (the one declared `past` or `rpast`).
    axis: usize,
    /// Whether it grows with router tokens (`rpast`) instead of pathway tokens.
    router: bool,
    /// Its shape with the growing axis at 0, and element type.
    empty: Vec<usize>,
    datum: DatumType,
}

/// The `past_*` inputs after the first `first` inputs, each with its `present_*` output.
fn cache_slots(model: &TypedModel, first: usize, path: &Path) -> Result<Vec<Slot>, ModelError> {
    let bad = |message: String| ModelError::BadModelDir {
        path: path.to_path_buf(),
        message,
    };
    let mut slots = vec![];
    for (ix, &inlet) in model.inputs.iter().enumerate().skip(first) {
        let name = &model.node(inlet.node).name;
        let Some(suffix) = name.strip_prefix("past_") else {
            return Err(bad(format!(
                "input {ix} `{name}` is not a cache input (`past_*`)"
            )));
        };
        let present = format!("present_{suffix}");
        let output = model
            .outputs
            .iter()
            .position(|&o| model.outlet_label(o) == Some(present.as_str()))
            .ok_or_else(|| bad(format!("cache input `{name}` has no output `{present}`")))?;
        let fact = model
            .input_fact(ix)
            .map_err(|e| bad(format!("cache input `{name}`: {e}")))?;
        let mut axis = None;
        let mut empty = Vec::with_capacity(fact.rank());
        for (a, d) in fact.shape.iter().enumerate() {
            match d.to_usize() {
                Ok(v) => empty.push(v),
                Err(_) => {
                    let sym = d.to_string();
                    if axis.is_some() || (sym != "past" && sym != "rpast") {
                        return Err(bad(format!(
                            "cache input `{name}` has shape {:?}: one axis must be `past` or `rpast`, the others fixed",
                            fact.shape
                        )));
                    }
                    axis = Some((a, sym == "rpast"));
                    empty.push(0);
                }
            }
        }
        let (axis, router) =
            axis.ok_or_else(|| bad(format!("cache input `{name}` has no `past` axis")))?;
        slots.push(Slot {
            output,
            axis,
            router,
            empty,
            datum: fact.datum_type,
        });
    }
    Ok(slots)
}

/// Outputs of one forward pass.
struct Forward {
    /// `[1, seq, vocab]` f32, checked in [`TractDecoder::forward`]; kept as
    /// the graph's own tensor (a copy of a prompt's logits was a 25 MB
    /// allocation and copy per pass).
    logits: TValue,
    hidden: Option<(Vec<f32>, usize)>,
    seq: usize,
    cache: Option<Cache>,
}

impl Forward {
    /// All logits, `seq` rows of `vocab`.
    fn logits_slice(&self) -> &[f32] {
        f32_data(&self.logits).expect("logits are plain f32: checked in TractDecoder::forward")
    }
}

/// A plain f32 tensor's values.
fn f32_data(t: &TValue) -> TractResult<&[f32]> {
    t.try_as_plain_ram()?.as_slice::<f32>()
}

impl TractDecoder {
    /// Loads `<dir>/model.onnx` and `<dir>/tokenizer.json` as described by
    /// the manifest, to run as `options` say.
    pub fn load(
        dir: &Path,
        manifest: &ModelManifest,
        source: &str,
        options: &RuntimeOptions,
    ) -> Result<Self, ModelError> {
        let (graph, tok) = super::load_graph_and_tokenizer(dir, manifest, options)?;
        let (n_inputs, n_outputs) = graph.arity();
        let tract_err = |e: anyhow::Error| graph.error(e);
        let graph_path = graph.path.clone();
        let io = DecoderIo::of(graph.plan.model(), &graph_path)?;
        let past_dims = |ix: usize| -> Result<(usize, usize), ModelError> {
            let fact = graph.plan.model().input_fact(ix).map_err(tract_err)?;
            let dim = |i: usize| {
                fact.shape
                    .get(i)
                    .ok_or_else(|| {
                        anyhow::anyhow!("cache input {ix} has rank {}, not 4", fact.rank())
                    })?
                    .to_usize()
                    .map_err(|e| anyhow::anyhow!("cache input {ix}: {e:?}"))
            };
            Ok((dim(1).map_err(tract_err)?, dim(3).map_err(tract_err)?))
        };
        let cache_shape = match &io {
            Some(io) => match io.first_past() {
                Some(ix) => {
                    let (kv, hd) = past_dims(ix)?;
                    Some((io.layers(), kv, hd))
                }
                None => None,
            },
            None => None,
        };
        let token_inputs = if manifest.router_tokenizer.is_some() {
            3
        } else {
            1
        };
        let slots = match &io {
            Some(_) => vec![],
            None => cache_slots(graph.plan.model(), token_inputs.min(n_inputs), &graph_path)?,
        };
        if let Some(layers) = manifest.kv_cache_layers.filter(|&l| l > 0) {
            if io.is_none() && (slots.len() != 2 * layers || n_outputs != 2 + 2 * layers) {
                return Err(ModelError::BadModelDir {
                    path: graph_path.clone(),
                    message: format!(
                        "manifest says {layers} cached layers but the graph has {n_inputs} inputs and {n_outputs} outputs"
                    ),
                });
            }
        }
        let tok = tok?;
        if tok.vocab_size() > manifest.vocab_size {
            return Err(ModelError::Tokenizer {
                path: dir.join(&manifest.tokenizer),
                message: format!(
                    "tokenizer has {} tokens but the model's vocabulary is {}: wrong tokenizer for this model",
                    tok.vocab_size(),
                    manifest.vocab_size
                ),
            });
        }
        let router = match &manifest.router_tokenizer {
            Some(file) if n_inputs >= 3 && io.is_none() => Some(super::align::RouterAlign::load(
                &dir.join(file),
                manifest.router_max_tokens.unwrap_or(manifest.max_context),
            )?),
            Some(_) => {
                return Err(ModelError::BadModelDir {
                    path: graph_path.clone(),
                    message: format!(
                        "manifest names a router tokenizer but the graph has {n_inputs} inputs, not input_ids, router_ids and router_align"
                    ),
                })
            }
            None => None,
        };
        let model = graph.plan.model();
        let route_output = model
            .outputs
            .iter()
            .position(|&o| model.outlet_label(o) == Some("route"));
        let has_hidden = io.is_none() && n_outputs > 1 && route_output != Some(1);
        let info = ModelInfo {
            name: manifest.name.clone(),
            source: source.to_string(),
            sha256: graph.sha256.clone(),
            capabilities: super::Capabilities {
                embed: manifest.capabilities.embed && has_hidden,
                ..manifest.capabilities
            },
            max_context: manifest.max_context,
            matmul: format!(
                "{}; EbQuantLinear lowering: {}; {}; f32 kernels: {}; {} thread(s)",
                manifest.matmul,
                options.lowering.name(),
                graph.rewrites_note(),
                options.isa().name(),
                options.threads
            ),
            parameters: manifest.parameters,
            provenance: manifest.provenance.clone(),
            runtime: Some(*options),
        };
        let super::LoadedGraph { plan, runner, .. } = graph;
        Ok(TractDecoder {
            plan,
            runner,
            tok,
            info,
            manifest: manifest.clone(),
            graph_path,
            has_hidden,
            cache_shape,
            slots,
            share_context: true,
            prefix: None,
            heads: Vec::new(),
            kept_heads: KEPT_HEADS,
            route_output,
            routes: Default::default(),
            scratch: Default::default(),
            router,
            io,
        })
    }

    fn tract_err(&self) -> impl Fn(anyhow::Error) -> ModelError + '_ {
        move |e| ModelError::Tract {
            path: self.graph_path.clone(),
            source: e,
        }
    }

    fn empty_cache(&self) -> Option<Cache> {
        let tensors = match self.cache_shape {
            Some((layers, kv, hd)) => {
                let t = Tensor::zero::<f32>(&[1, kv, 0, hd]).ok()?.into_tvalue();
                vec![t; 2 * layers]
            }
            None if !self.slots.is_empty() => self
                .slots
                .iter()
                .map(|s| Tensor::zero_dt(s.datum, &s.empty).map(|t| t.into_tvalue()))
                .collect::<TractResult<_>>()
                .ok()?,
            None => return None,
        };
        Some(Cache {
            tensors,
            len: 0,
            ids: vec![],
            ends: vec![],
            router_ids: vec![],
        })
    }

    /// Whether the graph carries a cache (an optimum export's or our own).
    fn cached(&self) -> bool {
        self.cache_shape.is_some() || !self.slots.is_empty()
    }

    /// Runs `ids` after the cached tokens (or from scratch without a cache).
    fn forward(&self, ids: &[u32], cache: Option<&Cache>) -> Result<Forward, ModelError> {
        let seq = ids.len();
        let vocab = self.manifest.vocab_size;
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= vocab) {
            return Err(ModelError::Runtime(format!(
                "{}: token id {bad} is outside the model's vocabulary of {vocab}: the tokenizer does not match the model",
                self.graph_path.display()
            )));
        }
        let data: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let err = self.tract_err();
        let empty;
        let cache = match cache {
            Some(c) => Some(c),
            None if self.cached() => {
                empty = self.empty_cache();
                empty.as_ref()
            }
            None => None,
        };
        // what the router's alignment needs next time (kept for router graphs only)
        let (mut all_ids, mut router_ids, mut ends) = (vec![], vec![], vec![]);
        let inputs: TVec<TValue> = match &self.io {
            Some(io) => {
                let (past, tensors) = cache.map_or((0, &[][..]), |c| (c.len, &c.tensors[..]));
                io.feed(&data, past, tensors).map_err(&err)?
            }
            None => {
                let input = Tensor::from_shape(&[1, seq], &data).map_err(&err)?;
                let mut inputs: TVec<TValue> = tvec!(input.into_tvalue());
                // router slots keep the rows of the router tokens this pass shares
                let mut router_keep = None;
                if let Some(router) = &self.router {
                    let (known, before, cached_rids): (&[u32], &[usize], &[i64]) = match cache {
                        Some(c) => (&c.ids, &c.ends, &c.router_ids),
                        None => (&[], &[], &[]),
                    };
                    let all: Vec<u32> = known.iter().chain(ids).copied().collect();
                    let (a, e) = router.align_after(&self.tok, &all, before)?;
                    // the router reruns at least its last token, so no pass is empty
                    let shared = cached_rids
                        .iter()
                        .zip(&a.router_ids)
                        .take_while(|(x, y)| x == y)
                        .count()
                        .min(a.router_ids.len() - 1);
                    let new = &a.router_ids[shared..];
                    let r = Tensor::from_shape(&[1, new.len()], new).map_err(&err)?;
                    let al =
                        Tensor::from_shape(&[1, seq], &a.align[known.len()..]).map_err(&err)?;
                    inputs.push(r.into_tvalue());
                    inputs.push(al.into_tvalue());
                    router_keep = Some(shared);
                    router_ids = a.router_ids;
                    ends = e;
                    all_ids = all;
                }
                if let Some(c) = cache {
                    for (t, s) in c.tensors.iter().zip(&self.slots) {
                        inputs.push(match (s.router, router_keep) {
                            (true, Some(r)) if t.shape()[s.axis] > r => {
                                t.slice(s.axis, 0, r).map_err(&err)?.into_tvalue()
                            }
                            _ => t.clone(),
                        });
                    }
                }
                inputs
            }
        };
        let out = self.runner.run(&self.plan, inputs).map_err(&err)?;
        let logits = out[self.io.as_ref().map_or(0, |io| io.logits)].clone();
        let n = f32_data(&logits).map_err(&err)?.len();
        if n != seq * vocab {
            return Err(ModelError::Runtime(format!(
                "{}: logits have {n} values, expected seq {seq} x vocab {vocab}",
                self.graph_path.display(),
            )));
        }
        let hidden = if self.has_hidden {
            let h = out[1].to_plain_array_view::<f32>().map_err(&err)?;
            let d = *h.shape().last().unwrap_or(&0);
            Some((h.iter().copied().collect(), d))
        } else {
            None
        };
        if let Some(ix) = self.route_output {
            let r = out[ix].to_plain_array_view::<i64>().map_err(&err)?;
            let r: Vec<u8> = r.iter().map(|&v| v.clamp(0, 9) as u8).collect();
            self.routes.lock().expect("routes lock").push(r);
        }
        let cache = cache.map(|c| Cache {
            tensors: match &self.io {
                Some(io) => io.present.iter().map(|&i| out[i].clone()).collect(),
                None => self.slots.iter().map(|s| out[s.output].clone()).collect(),
            },
            len: c.len + seq,
            ids: all_ids,
            ends,
            router_ids,
        });
        Ok(Forward {
            logits,
            hidden,
            seq,
            cache,
        })
    }

    /// log-softmax of `row` at `target`, and the row's argmax: `e^(x - max)`
    /// and its sum by the kernels' vectorised `e^x` in f32, as the reference
    /// implementations' float32 `log_softmax`. A row holding NaN gives NaN.
    fn log_softmax_at(&self, row: &[f32], target: usize) -> (f64, usize) {
        let (mut max, mut argmax, mut nan) = (f32::NEG_INFINITY, 0, false);
        for (i, &v) in row.iter().enumerate() {
            if v > max {
                max = v;
                argmax = i;
            }
            nan |= v.is_nan();
        }
        if nan {
            return (f64::NAN, argmax);
        }
        let mut e = self.scratch.lock().expect("scratch lock");
        e.clear();
        e.extend_from_slice(row);
        let sum = edgebench_kernels::softmax::exp_row(&mut e, None, self.isa());
        ((row[target] - max) as f64 - (sum as f64).ln(), argmax)
    }

    /// The widest instructions the kernels may use for this model.
    fn isa(&self) -> edgebench_kernels::Isa {
        self.info
            .runtime
            .map_or(edgebench_kernels::Isa::Portable, |o| o.isa())
    }

    fn bos(&self) -> u32 {
        self.manifest
            .bos_token_id
            .or(self.manifest.eos_token_id)
            .unwrap_or(0)
    }

    fn row<'a>(&self, f: &'a Forward, pos: usize) -> &'a [f32] {
        let v = self.manifest.vocab_size;
        &f.logits_slice()[pos * v..(pos + 1) * v]
    }

    /// Runs a context through the model, reusing the KV cache of the longest
    /// prefix it shares with the previous context; returns the last logits row
    /// and the cache after the whole context.
    fn context_state(&mut self, ctx: &[u32]) -> Result<(Vec<f32>, Cache), ModelError> {
        let shared = self
            .prefix
            .as_ref()
            .map(|(ids, _)| ids.iter().zip(ctx).take_while(|(a, b)| a == b).count())
            .unwrap_or(0)
            .min(ctx.len() - 1);
        let f = match &self.prefix {
            Some((_, cache)) if shared >= MIN_PREFIX_REUSE => {
                // a kept head is the cache's first tokens, the same values a copy would hold
                while self.heads.last().is_some_and(|h| h.len > shared) {
                    self.heads.pop();
                }
                let head = match self.heads.last() {
                    Some(h) if h.len == shared => h.clone(),
                    _ => {
                        let head = cache.head(&self.slots, shared).map_err(self.tract_err())?;
                        if self.router.is_none() && self.kept_heads > 0 {
                            if self.heads.len() >= self.kept_heads {
                                self.heads.pop();
                            }
                            self.heads.push(head.clone());
                        }
                        head
                    }
                };
                self.forward(&ctx[shared..], Some(&head))?
            }
            _ => {
                self.heads.clear();
                self.forward(ctx, None)?
            }
        };
        let last = self.row(&f, f.seq - 1).to_vec();
        let cache = f.cache.expect("cached graph");
        self.prefix = Some((ctx.to_vec(), cache.clone()));
        Ok((last, cache))
    }

    /// Scores the last `n_targets` tokens of `all`, with left truncation to the context window.
    fn score_tail(&self, all: &[u32], n_targets: usize) -> Result<LogLikelihood, ModelError> {
        let max = self.manifest.max_context;
        let start = all.len().saturating_sub(max + 1);
        let window = &all[start..];
        let input = &window[..window.len() - 1];
        let f = self.forward(input, None)?;
        let n = n_targets.min(window.len() - 1);
        let mut logprob = 0.0;
        let mut greedy = true;
        for k in 0..n {
            let pos = input.len() - n + k;
            let (lp, argmax) = self.log_softmax_at(self.row(&f, pos), window[pos + 1] as usize);
            logprob += lp;
            greedy &= argmax == window[pos + 1] as usize;
        }
        Ok(LogLikelihood {
            logprob,
            is_greedy: greedy,
            tokens: n,
        })
    }

    /// Scores one context's continuations (the cache of a shared prefix reused).
    fn score_request(
        &mut self,
        context: &str,
        continuations: &[String],
    ) -> Result<Vec<LogLikelihood>, ModelError> {
        let mut ctx = self.tok.encode_shared(context)?;
        if ctx.is_empty() {
            ctx.push(self.bos());
        }
        let splits: Vec<(Vec<u32>, usize)> = continuations
            .iter()
            .map(|c| self.split(&ctx, context, c))
            .collect::<Result<_, _>>()?;
        let max = self.manifest.max_context;
        // Share the context's computation when every continuation extends the same prefix and fits.
        let shared = self.cached()
            && self.share_context
            && splits.iter().all(|(all, n)| {
                all.len() <= max && all.len() - n == ctx.len() && all[..ctx.len()] == ctx[..]
            });
        if !shared {
            return splits
                .iter()
                .map(|(all, n)| {
                    if *n == 0 {
                        Ok(LogLikelihood {
                            logprob: 0.0,
                            is_greedy: true,
                            tokens: 0,
                        })
                    } else {
                        self.score_tail(all, *n)
                    }
                })
                .collect();
        }
        let (last, cache) = self.context_state(&ctx)?;
        splits
            .iter()
            .map(|(all, n)| {
                let cont = &all[ctx.len()..];
                if *n == 0 {
                    return Ok(LogLikelihood {
                        logprob: 0.0,
                        is_greedy: true,
                        tokens: 0,
                    });
                }
                let (mut logprob, first_arg) = self.log_softmax_at(&last, cont[0] as usize);
                let mut greedy = first_arg == cont[0] as usize;
                if cont.len() > 1 {
                    let f = self.forward(&cont[..cont.len() - 1], Some(&cache))?;
                    for (k, &t) in cont.iter().enumerate().skip(1) {
                        let (lp, a) = self.log_softmax_at(self.row(&f, k - 1), t as usize);
                        logprob += lp;
                        greedy &= a == t as usize;
                    }
                }
                Ok(LogLikelihood {
                    logprob,
                    is_greedy: greedy,
                    tokens: cont.len(),
                })
            })
            .collect()
    }

    /// Splits context and continuation tokens the lm-eval way. The
    /// context's tokens are reused for the whole's ([`Tok::encode_shared`]).
    fn split(
        &self,
        ctx: &[u32],
        context: &str,
        cont: &str,
    ) -> Result<(Vec<u32>, usize), ModelError> {
        let whole = self.tok.encode_shared(&format!("{context}{cont}"))?;
        if !context.is_empty() && whole.len() > ctx.len() && whole[..ctx.len()] == ctx[..] {
            let n = whole.len() - ctx.len();
            return Ok((whole, n));
        }
        let c = self.tok.encode(cont)?;
        let n = c.len();
        let mut all = ctx.to_vec();
        all.extend(c);
        Ok((all, n))
    }
}

/// Index of the largest value of `row` (the first of equals; NaN never wins).
fn argmax(row: &[f32]) -> usize {
    let mut max = f32::NEG_INFINITY;
    let mut argmax = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > max {
            max = v;
            argmax = i;
        }
    }
    argmax
}

impl Model for TractDecoder {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Requests in the order of their contexts, so that contexts sharing a
    /// prefix (one document with several questions, one few-shot prompt) run
    /// one after the other and reuse its cache; results in request order.
    fn loglikelihood_requests(
        &mut self,
        requests: &[super::LoglikelihoodRequest<'_>],
    ) -> Result<Vec<Vec<LogLikelihood>>, ModelError> {
        let mut order: Vec<usize> = (0..requests.len()).collect();
        order.sort_by(|&a, &b| requests[a].context.cmp(requests[b].context));
        let mut out = vec![Vec::new(); requests.len()];
        for i in order {
            out[i] = self.score_request(requests[i].context, requests[i].continuations)?;
        }
        Ok(out)
    }

    fn generate(
        &mut self,
        prompt: &str,
        stop: &[String],
        max_tokens: usize,
    ) -> Result<Generation, ModelError> {
        let mut ids = self.tok.encode(prompt)?;
        if ids.is_empty() {
            ids.push(self.bos());
        }
        let max = self.manifest.max_context;
        // keep room for the answer inside the window
        let keep = max.saturating_sub(max_tokens.min(max / 2)).max(1);
        if ids.len() > keep {
            ids.drain(..ids.len() - keep);
        }
        let prompt_tokens = ids.len();
        // the window never slides: prompt and answer together fit in it
        let budget = max_tokens.min(max.saturating_sub(prompt_tokens));
        let mut generated: Vec<u32> = Vec::new();
        let mut text = String::new();
        let mut cache: Option<Cache> = None;
        let mut next_input: Vec<u32> = ids.clone();
        for _ in 0..budget {
            let f = match self.cached() {
                true => self.forward(&next_input, cache.as_ref())?,
                false => self.forward(&ids, None)?,
            };
            let next = argmax(self.row(&f, f.seq - 1));
            cache = f.cache;
            let next = next as u32;
            if Some(next) == self.manifest.eos_token_id {
                break;
            }
            ids.push(next);
            generated.push(next);
            next_input = vec![next];
            text = self.tok.decode(&generated)?;
            if let Some(cut) = stop
                .iter()
                .filter(|s| !s.is_empty())
                .filter_map(|s| text.find(s.as_str()))
                .min()
            {
                text.truncate(cut);
                break;
            }
        }
        Ok(Generation {
            text,
            tokens: generated.len(),
            prompt_tokens,
        })
    }

    fn rolling_loglikelihood(&mut self, text: &str) -> Result<Rolling, ModelError> {
        // lm-eval's rolling windows with context_len 1: disjoint windows of
        // max_context predicted tokens, the first one conditioned on BOS.
        let tokens = self.tok.encode(text)?;
        let max = self.manifest.max_context;
        let mut logprob = 0.0;
        let mut start = 0;
        while start < tokens.len() {
            let end = (start + max).min(tokens.len());
            let mut window = Vec::with_capacity(end - start + 1);
            window.push(if start == 0 {
                self.bos()
            } else {
                tokens[start - 1]
            });
            window.extend_from_slice(&tokens[start..end]);
            logprob += self.score_tail(&window, end - start)?.logprob;
            start = end;
        }
        Ok(Rolling {
            logprob,
            tokens: tokens.len(),
        })
    }

    fn embed(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        if !self.has_hidden {
            return Err(ModelError::Runtime(format!(
                "{}: the graph has no hidden_states output, so it cannot embed",
                self.graph_path.display()
            )));
        }
        texts
            .iter()
            .map(|t| {
                let mut ids = self.tok.encode(t)?;
                ids.truncate(self.manifest.max_context);
                if ids.is_empty() {
                    ids.push(self.bos());
                }
                let f = self.forward(&ids, None)?;
                let (h, d) = f.hidden.expect("checked above");
                let mut mean = vec![0f32; d];
                for row in h.chunks(d) {
                    for (m, v) in mean.iter_mut().zip(row) {
                        *m += v;
                    }
                }
                let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                Ok(mean.into_iter().map(|v| v / norm).collect())
            })
            .collect()
    }

    fn perf_query(
        &mut self,
        prompt: &str,
        prompt_tokens: usize,
        gen_tokens: usize,
    ) -> Result<super::QueryTiming, ModelError> {
        let mut ids = self.tokenize(prompt)?;
        ids.truncate(prompt_tokens.clamp(
            1,
            self.manifest.max_context.saturating_sub(gen_tokens).max(1),
        ));
        if ids.is_empty() {
            ids.push(self.bos());
        }
        let (prefill, gaps) = self.time_decode(&ids, gen_tokens.saturating_sub(1))?;
        self.routes.lock().expect("routes lock").clear();
        Ok(super::QueryTiming {
            ttft_ms: prefill * 1e3,
            token_gaps_ms: gaps.iter().map(|s| s * 1e3).collect(),
            prompt_tokens: ids.len(),
            model_only: true,
        })
    }

    fn take_routes(&mut self) -> Vec<String> {
        let passes = std::mem::take(&mut *self.routes.lock().expect("routes lock"));
        let kept: Vec<&Vec<u8>> = passes
            .iter()
            .enumerate()
            .filter(|(i, p)| !passes[i + 1..].iter().any(|q| q.starts_with(p)))
            .map(|(_, p)| p)
            .collect();
        kept.iter()
            .map(|p| p.iter().map(|&r| char::from(b'0' + r)).collect())
            .collect()
    }

    /// Fitting counts a document's calls and its cut heads: the tokens of
    /// the text they share are reused ([`Tok::encode_shared`]).
    fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
        Ok(self.tok.encode_shared(text)?.len())
    }

    fn take_model_time(&mut self) -> Option<std::time::Duration> {
        Some(self.runner.take_busy())
    }
}

impl TractDecoder {
    /// Turns context sharing off (every continuation recomputes its context); for tests.
    pub fn set_share_context(&mut self, on: bool) {
        self.share_context = on;
    }

    /// Turns keeping heads of the context cache off (every shared prefix is
    /// copied from the last context's cache); for tests.
    pub fn set_keep_heads(&mut self, on: bool) {
        self.kept_heads = if on { KEPT_HEADS } else { 0 };
        self.heads.clear();
    }

    /// Logits `[ids.len() x vocab]` of one forward pass from an empty cache.
    pub fn logits(&self, ids: &[u32]) -> Result<Vec<f32>, ModelError> {
        Ok(self.forward(ids, None)?.logits_slice().to_vec())
    }

    /// Logits `[ids.len() x vocab]` of a prefill of `ids[..prefill]` then one
    /// decode step per later token on the KV cache (as [`Self::logits`]
    /// without a cache).
    pub fn logits_stepwise(&self, ids: &[u32], prefill: usize) -> Result<Vec<f32>, ModelError> {
        if !self.cached() {
            return self.logits(ids);
        }
        let prefill = prefill.clamp(1, ids.len().max(1));
        let f = self.forward(&ids[..prefill], None)?;
        let mut all = f.logits_slice().to_vec();
        let mut cache = f.cache;
        for &t in &ids[prefill..] {
            let f = self.forward(&[t], cache.as_ref())?;
            all.extend_from_slice(f.logits_slice());
            cache = f.cache;
        }
        Ok(all)
    }

    /// Token ids of a text under this model's tokenizer.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.tok.encode(text)
    }

    /// Times a prefill of `prompt` tokens and then `steps` single-token decode
    /// steps on the KV cache (model only: no tokenisation, no sampling), fewer
    /// when the context window ends first (the rule of [`Model::generate`]).
    /// Returns (prefill seconds, per-step seconds).
    pub fn time_decode(&self, prompt: &[u32], steps: usize) -> Result<(f64, Vec<f64>), ModelError> {
        self.decode_loop(prompt, steps, || {})
    }

    /// Per-node times (see [`super::profile`]) of `passes` prefills of
    /// `prompt` and of `steps` greedy decode steps after one more:
    /// `(prefill, decode)`, each summed over its passes.
    pub fn profile_decode(
        &self,
        prompt: &[u32],
        passes: usize,
        steps: usize,
    ) -> Result<(Vec<super::profile::NodeTime>, Vec<super::profile::NodeTime>), ModelError> {
        let profiler = self.runner.profiler();
        profiler.set(true);
        let r = (0..passes)
            .try_for_each(|_| self.forward(prompt, None).map(drop))
            .map(|()| profiler.take())
            .and_then(|prefill| {
                // the decode steps' own prefill is left out
                self.decode_loop(prompt, steps, || drop(profiler.take()))?;
                Ok((prefill, profiler.take()))
            });
        profiler.set(false);
        r
    }

    /// Prefill then `steps` greedy steps; `after_prefill` runs between them.
    fn decode_loop(
        &self,
        prompt: &[u32],
        steps: usize,
        mut after_prefill: impl FnMut(),
    ) -> Result<(f64, Vec<f64>), ModelError> {
        let t = std::time::Instant::now();
        let mut f = self.forward(prompt, None)?;
        let prefill = t.elapsed().as_secs_f64();
        after_prefill();
        // as in generation, the prompt and the decoded tokens fit in the window
        let steps = steps.min(self.manifest.max_context.saturating_sub(prompt.len() + 1));
        let mut times = Vec::with_capacity(steps);
        let mut ids = prompt.to_vec();
        for _ in 0..steps {
            let next = argmax(self.row(&f, f.seq - 1));
            ids.push(next as u32);
            let t = std::time::Instant::now();
            f = match &f.cache {
                Some(c) => self.forward(&[next as u32], Some(c))?,
                // without a cache every step recomputes the whole sequence
                None => self.forward(&ids, None)?,
            };
            times.push(t.elapsed().as_secs_f64());
        }
        Ok((prefill, times))
    }

    /// Whether the graph has an explicit KV cache.
    pub fn has_kv_cache(&self) -> bool {
        self.cached()
    }

    /// Perplexity of `text` with llama.cpp's `llama-perplexity` convention:
    /// consecutive chunks of `ctx` tokens (BOS first when the model adds one),
    /// each scoring only its second half. Returns (perplexity, tokens scored).
    pub fn perplexity_llama_cpp(&self, text: &str, ctx: usize) -> Result<(f64, usize), ModelError> {
        let p = self.perplexity_chunks(text, ctx, None, false)?;
        Ok((p.perplexity, p.tokens))
    }

    /// [`Self::perplexity_llama_cpp`] over the first `chunks` chunks (all
    /// when `None`), scored by cached decoding when `cached`: each chunk's
    /// first half is one prefill and its second half one token per step on
    /// the KV cache, beside the one-pass scores of the same positions.
    pub fn perplexity_chunks(
        &self,
        text: &str,
        ctx: usize,
        chunks: Option<usize>,
        cached: bool,
    ) -> Result<Perplexity, ModelError> {
        let tokens = self.tok.encode(text)?;
        let ctx = ctx.min(self.manifest.max_context).max(2);
        let add_bos = self.manifest.add_bos.unwrap_or(false);
        let all_chunks = tokens.len() / ctx;
        if all_chunks == 0 {
            return Err(ModelError::Runtime(format!(
                "text has {} tokens, fewer than one chunk of {ctx}: use a longer text or a smaller --ctx",
                tokens.len()
            )));
        }
        let n_chunks = chunks.map_or(all_chunks, |c| c.clamp(1, all_chunks));
        let v = self.manifest.vocab_size;
        let (mut nll, mut nll_cached, mut count, mut worst) = (0.0, 0.0, 0usize, 0f32);
        for c in 0..n_chunks {
            let mut chunk = tokens[c * ctx..(c + 1) * ctx].to_vec();
            if add_bos {
                chunk[0] = self.bos();
            }
            let f = self.forward(&chunk, None)?;
            let stepwise = match cached {
                true => Some(self.logits_stepwise(&chunk[..ctx - 1], ctx / 2)?),
                false => None,
            };
            for pos in ctx / 2..ctx - 1 {
                let target = chunk[pos + 1] as usize;
                nll -= self.log_softmax_at(self.row(&f, pos), target).0;
                if let Some(s) = &stepwise {
                    let row = &s[pos * v..(pos + 1) * v];
                    nll_cached -= self.log_softmax_at(row, target).0;
                    worst = self
                        .row(&f, pos)
                        .iter()
                        .zip(row)
                        .map(|(a, b)| (a - b).abs())
                        .fold(worst, |w, d| {
                            if d.is_nan() || w.is_nan() {
                                f32::NAN
                            } else {
                                w.max(d)
                            }
                        });
                }
            }
            count += ctx - 1 - ctx / 2;
        }
        let ppl = |nll: f64| (nll / count as f64).exp();
        Ok(Perplexity {
            perplexity: if cached { ppl(nll_cached) } else { ppl(nll) },
            one_pass: ppl(nll),
            max_logit_difference: cached.then_some(worst),
            tokens: count,
        })
    }
}
