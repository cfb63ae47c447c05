//! Writes GEM's sparse-dispatch graph, with a KV cache.
//!
//! Every weight-bearing layer of the pathways is one `EbRoutedLinear` node:
//! a token's row is multiplied by its own pathway's weights only (norm gains
//! are gathered by route), so each token runs through exactly its routed
//! pathway and shapes stay static. Attention is `EbScar` over the cached and
//! new tokens with the route as its group: a token sees only earlier tokens
//! of its own pathway (in its SCAR cluster, or a sink, or in its window).
//! For the tokens of one pathway this is running that pathway on their
//! subsequence and putting the outputs back in order, which the
//! dense-masked graph of [`super::build`] computes with 9x the work.
//!
//! Inputs: `input_ids` `[1, seq]` (the new tokens); with a BERT router,
//! `router_ids` `[1, rseq]` (router tokens not in the cache) and
//! `router_align` `[1, seq]` (each new token's row among the cached and new
//! router tokens); then the cache, each `past_<x>` with a `present_<x>`
//! output in the same order:
//!
//! | input | shape | |
//! |---|---|---|
//! | `past_route` | `[1, past]` i64 | routes of the cached tokens |
//! | `past_router_key_<l>`, `past_router_value_<l>` | `[1, heads, past or rpast, head_dim]` | router layers |
//! | `past_router_hidden` | `[1, rpast, hidden]` | BERT router: last states of the cached router tokens |
//! | `past_key_<l>`, `past_value_<l>` | `[1, kv_heads, past, head_dim]` | pathway layers (each row written by its token's pathway) |
//! | `past_scar_sums_<l>`, `past_clusters_<l>` | `[1, past, dx]`, `[1, past]` i64 | SCAR with `k > 1`, frozen centroids (`recluster_every = 0`): each token's running centroid sum, and the ids |
//! | `past_scar_x_<l>`, `past_clusters_<l>` | `[1, past, dx]`, `[1, past]` i64 | SCAR with `k > 1` that re-clusters: what was clustered, and the ids |
//!
//! Outputs: `logits` `[1, seq, vocab]`, `hidden_states`, `route` `[1, seq]`,
//! with a router `route_probs` `[1, seq, 8]` and `router_hidden`, then the
//! `present_*` tensors.

use super::build::{Built, Ctx, Variant, WeightSource, Written};
use super::config::{ClusterOn, GemConfig, DOMAINS};
use crate::onnx::layers::{self, i64s};
use crate::onnx::{encode, Attr, Dim, Elem, GraphBuilder};
use crate::ops::routed::{RoutedSet, SetWeights};
use crate::ops::scar::ScarParams;

/// Graph-wide values shared by the layers.
struct Shared {
    two: String,
    eps: String,
    one1: String,
    /// SCAR's cache inputs when `k = 1` (nothing to cluster, so nothing
    /// cached): zeros `[1, past, 1]` f32 and `[1, past]` i64, made once.
    zero_past: (String, String),
    /// The present outputs of the cache, in input order, with their types.
    cache: Vec<(String, Elem, Vec<Dim>)>,
}

impl Shared {
    /// Declares cache input `past_<name>` and returns (input, present output name).
    fn past(
        &mut self,
        g: &mut GraphBuilder,
        name: &str,
        elem: Elem,
        dims: Vec<Dim>,
        out: Vec<Dim>,
    ) -> (String, String) {
        let input = g.input(&format!("past_{name}"), elem, &dims);
        let present = format!("present_{name}");
        self.cache.push((present.clone(), elem, out));
        (input, present)
    }
}

/// Which weights one layer's linear maps use.
enum Weights<'a> {
    /// One weight per name: `<prefix>.<matrix>` at `bits`.
    Single { prefix: &'a str, bits: usize },
    /// One set per pathway `(route, prefix, bits)`, chosen per token by `route`.
    Routed {
        sets: &'a [(i64, String, usize)],
        route: &'a str,
    },
}

/// One cached transformer layer.
struct Layer<'a> {
    name: String,
    weights: Weights<'a>,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    ffn: usize,
    rope: &'a (String, String),
    /// The route of every cached and new token (the attention group).
    group: &'a str,
    params: ScarParams,
    cluster_on: ClusterOn,
    past_key: (String, String),
    past_value: (String, String),
    /// `past_scar_x` or `past_scar_sums`, `past_clusters` (and present
    /// names) when `k > 1`.
    scar_cache: Option<((String, String), (String, String))>,
}

fn linear(c: &mut Ctx, l: &Layer, m: &str, x: &str, out: usize, inp: usize) -> String {
    match &l.weights {
        Weights::Single { prefix, bits } => c.linear(&format!("{prefix}.{m}"), x, out, inp, *bits),
        Weights::Routed { sets, route } => {
            let written: Vec<(i64, Written)> = sets
                .iter()
                .map(|(r, prefix, bits)| (*r, c.weights(&format!("{prefix}.{m}"), out, inp, *bits)))
                .collect();
            let sets: Vec<RoutedSet> = written
                .iter()
                .map(|(r, w)| RoutedSet {
                    route: *r,
                    weights: match w {
                        Written::Quant(format, inits) => SetWeights::Quant {
                            format: *format,
                            inits,
                        },
                        Written::F32(weight) => SetWeights::F32 { weight },
                    },
                })
                .collect();
            crate::ops::routed::write_node(&mut c.g, &format!("{}.{m}", l.name), x, route, &sets)
        }
    }
}

/// RMSNorm with the gain of each token's pathway (one shared gain when all
/// pathways have the same, so the norm fuses into `EbNorm`).
fn norm(c: &mut Ctx, k: &Shared, l: &Layer, m: &str, x: &str) -> String {
    let d = l.hidden;
    let gain = match &l.weights {
        Weights::Single { prefix, .. } => {
            let name = format!("{prefix}.{m}");
            let v = c.w.vector(&name, d);
            c.g.init_f32(&name, &[d as i64], &v)
        }
        Weights::Routed { sets, route } => {
            let gains: Vec<(i64, Vec<f32>)> = sets
                .iter()
                .map(|(r, prefix, _)| (*r, c.w.vector(&format!("{prefix}.{m}"), d)))
                .collect();
            if gains.iter().all(|(_, g)| *g == gains[0].1) {
                c.g.init_f32(&format!("{}.{m}", l.name), &[d as i64], &gains[0].1)
            } else {
                // a table indexed by route value
                let rows = gains.iter().map(|(r, _)| *r).max().unwrap_or(0) as usize + 1;
                let mut table = vec![0f32; rows * d];
                for (r, g) in &gains {
                    table[*r as usize * d..(*r as usize + 1) * d].copy_from_slice(g);
                }
                let t =
                    c.g.init_f32(&format!("{}.{m}", l.name), &[rows as i64, d as i64], &table);
                layers::gather_rows(&mut c.g, &t, route)
            }
        }
    };
    layers::rms_norm(&mut c.g, x, &gain, &k.two, &k.eps)
}

fn layer(c: &mut Ctx, k: &Shared, l: &Layer, h: &str) -> String {
    let (d, heads, kv) = (l.hidden, l.heads, l.kv_heads);
    let hd = d / heads;
    let n = |s: &str| format!("{}.{s}", l.name);
    let x = norm(c, k, l, "attn_norm", h);
    let q = linear(c, l, "attn_q", &x, d, d);
    let kp = linear(c, l, "attn_k", &x, kv * hd, d);
    let v = linear(c, l, "attn_v", &x, kv * hd, d);
    let q_shape = i64s(&mut c.g, &n("shape_q"), &[0, 0, heads as i64, hd as i64]);
    let kv_shape = i64s(&mut c.g, &n("shape_kv"), &[0, 0, kv as i64, hd as i64]);
    let q = layers::split_heads(&mut c.g, &q, &q_shape);
    let kk = layers::split_heads(&mut c.g, &kp, &kv_shape);
    let v = layers::split_heads(&mut c.g, &v, &kv_shape);
    let q = super::build::rope_heads(c, &q, hd, l.rope);
    let kk = super::build::rope_heads(c, &kk, hd, l.rope);
    let cat = |c: &mut Ctx, past: &str, new: &str, out: &str, axis: i64| {
        c.g.node_in_domain(
            "",
            "Concat",
            &[past, new],
            &[out],
            &[("axis", Attr::Int(axis))],
        );
        out.to_string()
    };
    let kall = cat(c, &l.past_key.0, &kk, &l.past_key.1, 2);
    let vall = cat(c, &l.past_value.0, &v, &l.past_value.1, 2);
    // frozen centroids carry running sums instead of what was clustered
    let sums = l.params.recluster_every == 0;
    let (sx, past_x, past_clusters) = match &l.scar_cache {
        Some(((px, px_out), (pc, _))) => {
            let sx = match l.cluster_on {
                ClusterOn::Hidden => x.clone(),
                ClusterOn::Keys => kp.clone(),
            };
            if !sums {
                cat(c, px, &sx, px_out, 1);
            }
            (sx, px.clone(), pc.clone())
        }
        None => {
            // k = 1: every token is in cluster 0, whatever is clustered; the
            // op still takes the inputs, so give it one zero column
            let sx = {
                let starts = i64s(&mut c.g, &n("sx_start"), &[0]);
                let axes = i64s(&mut c.g, &n("sx_axes"), &[2]);
                c.g.op("Slice", &[&x, &starts, &k.one1, &axes], &[])
            };
            (sx, k.zero_past.0.clone(), k.zero_past.1.clone())
        }
    };
    let (o, clusters) = match (&l.scar_cache, sums) {
        (Some(((ps, ps_out), _)), true) => {
            let (o, clusters, new_sums) = crate::ops::scar::write_node_sums(
                &mut c.g,
                &n("scar"),
                &sx,
                &q,
                &kall,
                &vall,
                l.group,
                &past_x,
                &past_clusters,
                &l.params,
            );
            cat(c, ps, &new_sums, ps_out, 1);
            (o, clusters)
        }
        _ => crate::ops::scar::write_node_cached(
            &mut c.g,
            &n("scar"),
            &sx,
            &q,
            &kall,
            &vall,
            l.group,
            &past_x,
            &past_clusters,
            &l.params,
        ),
    };
    if let Some((_, (_, pc_out))) = &l.scar_cache {
        c.g.node_in_domain("", "Identity", &[&clusters], &[pc_out], &[]);
    }
    let model_shape = i64s(&mut c.g, &n("shape_model"), &[0, 0, d as i64]);
    let o = layers::merge_heads(&mut c.g, &o, &model_shape);
    let o = linear(c, l, "attn_output", &o, d, d);
    let h = c.g.op("Add", &[h, &o], &[]);
    let x = norm(c, k, l, "ffn_norm", &h);
    let gate = linear(c, l, "ffn_gate", &x, l.ffn, d);
    let up = linear(c, l, "ffn_up", &x, l.ffn, d);
    let act = layers::swiglu(&mut c.g, &gate, &up);
    let down = linear(c, l, "ffn_down", &act, d, l.ffn);
    c.g.op("Add", &[&h, &down], &[])
}

fn kv_dims(kv: usize, hd: usize, past: &str) -> Vec<Dim> {
    vec![
        Dim::Fixed(1),
        Dim::Fixed(kv as i64),
        Dim::from(past),
        Dim::Fixed(hd as i64),
    ]
}

/// Builds the sparse-dispatch GEM graph of `cfg` over `vocab` tokens.
pub fn build(
    cfg: &GemConfig,
    vocab: usize,
    variant: Variant,
    weights: &mut dyn WeightSource,
) -> Built {
    let mut c = Ctx::new(cfg, variant, weights);
    let quantize = c.quantize;
    let ids =
        c.g.input("input_ids", Elem::I64, &[Dim::Fixed(1), Dim::from("seq")]);
    let bert = variant != Variant::NoRouter && c.w.bert_router().is_some();
    let (rids, align) = if bert {
        (
            Some(c.g.input("router_ids", Elem::I64, &[Dim::Fixed(1), Dim::from("rseq")])),
            Some(c.g.input(
                "router_align",
                Elem::I64,
                &[Dim::Fixed(1), Dim::from("seq")],
            )),
        )
    } else {
        (None, None)
    };
    let s0 = c.g.init_i64("c_s0", &[], &[0]);
    let s1 = c.g.init_i64("c_s1", &[], &[1]);
    let ax0 = i64s(&mut c.g, "c_ax0", &[0]);
    let ax1 = i64s(&mut c.g, "c_ax1", &[1]);
    let one1 = i64s(&mut c.g, "c_one1", &[1]);
    let mut k = Shared {
        two: c.g.init_f32("c_two", &[], &[2.0]),
        eps: c.g.init_f32("c_eps", &[], &[1e-5]),
        one1: one1.clone(),
        zero_past: Default::default(),
        cache: vec![],
    };
    let (past_route, present_route) = k.past(
        &mut c.g,
        "route",
        Elem::I64,
        vec![Dim::Fixed(1), Dim::from("past")],
        vec![Dim::Fixed(1), Dim::from("total")],
    );
    // positions past .. past + seq
    let ids_shape = c.g.op("Shape", &[&ids], &[]);
    let two1 = i64s(&mut c.g, "c_two1", &[2]);
    let seq1 = c.g.op("Slice", &[&ids_shape, &one1, &two1], &[]);
    let past_shape = c.g.op("Shape", &[&past_route], &[]);
    let past1 = c.g.op("Slice", &[&past_shape, &one1, &two1], &[]);
    let total1 = c.g.op("Add", &[&past1, &seq1], &[]);
    let past = c.g.op("Squeeze", &[&past1, &ax0], &[]);
    let total = c.g.op("Squeeze", &[&total1, &ax0], &[]);
    let pos = c.g.op("Range", &[&past, &total, &s1], &[]);
    let izero2 = c.g.init_i64("c_izero2", &[1, 1], &[0]);
    let zeros = |c: &mut Ctx, len: &str, elem_zero: &str, last: &[&str]| {
        let mut dims = vec![one1.as_str(), len];
        dims.extend(last);
        let shape = c.g.op("Concat", &dims, &[("axis", Attr::Int(0))]);
        c.g.op("Expand", &[elem_zero, &shape], &[])
    };
    let fzero3 = c.g.init_f32("c_fzero3", &[1, 1, 1], &[0.0]);
    k.zero_past = (
        zeros(&mut c, &past1, &fzero3, &[&one1]),
        zeros(&mut c, &past1, &izero2, &[]),
    );
    let ndom = DOMAINS.len();
    let general = ndom as i64;
    let r = &cfg.router;

    // Router -> route [1, seq] of the new tokens.
    let route = if variant == Variant::NoRouter {
        let zero = c.g.op("Mul", &[&ids, &s0], &[]);
        let gen = c.g.init_i64("c_general", &[], &[general]);
        c.g.op("Add", &[&zero, &gen], &[])
    } else {
        let h = match (&rids, &align) {
            (Some(rids), Some(align)) => {
                let bcfg = c.w.bert_router().expect("checked above").config().clone();
                let rh = bcfg.hidden_size;
                let rheads = bcfg.num_attention_heads;
                let caches: Vec<crate::model::bert::LayerCache> = (0..bcfg.num_hidden_layers)
                    .map(|l| {
                        let dims = kv_dims(rheads, rh / rheads, "rpast");
                        let out = kv_dims(rheads, rh / rheads, "rtotal");
                        let (pk, ck) = k.past(
                            &mut c.g,
                            &format!("router_key_{l}"),
                            Elem::F32,
                            dims.clone(),
                            out.clone(),
                        );
                        let (pv, cv) =
                            k.past(&mut c.g, &format!("router_value_{l}"), Elem::F32, dims, out);
                        crate::model::bert::LayerCache {
                            past_key: pk,
                            past_value: pv,
                            present_key: ck,
                            present_value: cv,
                        }
                    })
                    .collect();
                let (ph, ch) = k.past(
                    &mut c.g,
                    "router_hidden",
                    Elem::F32,
                    vec![Dim::Fixed(1), Dim::from("rpast"), Dim::Fixed(rh as i64)],
                    vec![Dim::Fixed(1), Dim::from("rtotal"), Dim::Fixed(rh as i64)],
                );
                // router positions rpast .. rpast + rseq, causal over all router tokens
                let rshape = c.g.op("Shape", &[rids], &[]);
                let rseq = c.g.op("Gather", &[&rshape, &s1], &[("axis", Attr::Int(0))]);
                let pshape = c.g.op("Shape", &[&ph], &[]);
                let rpast = c.g.op("Gather", &[&pshape, &s1], &[("axis", Attr::Int(0))]);
                let rtotal = c.g.op("Add", &[&rpast, &rseq], &[]);
                let rpos = c.g.op("Range", &[&rpast, &rtotal, &s1], &[]);
                let rows = c.g.op("Unsqueeze", &[&rpos, &ax1], &[]);
                let all = c.g.op("Range", &[&s0, &rtotal, &s1], &[]);
                let cols = c.g.op("Unsqueeze", &[&all, &ax0], &[]);
                let future = c.g.op("Greater", &[&cols, &rows], &[]);
                let neg = c.g.init_f32("router.c_neg", &[], &[-1e9]);
                let fz = c.g.init_f32("router.c_fz", &[], &[0.0]);
                let mask = layers::additive_mask(&mut c.g, &future, &neg, &fz);
                let bits = quantize.then_some(r.bits);
                let new_hidden = {
                    let Ctx { g, w, .. } = &mut c;
                    let br = w.bert_router().expect("checked above");
                    let mut tensor = |name: &str, shape: &[usize]| Ok(br.tensor(name, shape));
                    let io = crate::model::bert::EncoderIo {
                        ids: rids,
                        add_mask: &mask,
                        prefix: "router.",
                        bits,
                        positions: Some(&rpos),
                        cache: Some(&caches),
                    };
                    crate::model::bert::write_encoder(g, &bcfg, &mut tensor, &io)
                        .expect("the BERT router's tensors were checked when its source was opened")
                };
                c.g.node_in_domain(
                    "",
                    "Concat",
                    &[&ph, &new_hidden],
                    &[&ch],
                    &[("axis", Attr::Int(1))],
                );
                let flat = i64s(&mut c.g, "router.flat", &[-1]);
                let al = c.g.op("Reshape", &[align, &flat], &[]);
                c.g.op("Gather", &[&ch, &al], &[("axis", Attr::Int(1))])
            }
            _ => {
                // seeded router: a small causal transformer over the pathway tokens
                let emb = c.w.matrix("router.embed", vocab, r.hidden);
                let emb =
                    c.g.init_f32("router.embed", &[vocab as i64, r.hidden as i64], &emb);
                let mut h = layers::gather_rows(&mut c.g, &emb, &ids);
                let rope = super::build::rope_tables(
                    &mut c,
                    "router.rope",
                    cfg.max_context,
                    r.hidden / r.heads,
                    cfg.pathways.rope_base,
                    &pos,
                );
                let zeros = zeros(&mut c, &total1, &izero2, &[]);
                let hd = r.hidden / r.heads;
                for l in 0..r.layers {
                    let prefix = format!("router.blk{l}");
                    let past_key = k.past(
                        &mut c.g,
                        &format!("router_key_{l}"),
                        Elem::F32,
                        kv_dims(r.heads, hd, "past"),
                        kv_dims(r.heads, hd, "total"),
                    );
                    let past_value = k.past(
                        &mut c.g,
                        &format!("router_value_{l}"),
                        Elem::F32,
                        kv_dims(r.heads, hd, "past"),
                        kv_dims(r.heads, hd, "total"),
                    );
                    let spec = Layer {
                        name: prefix.clone(),
                        weights: Weights::Single {
                            prefix: &prefix,
                            bits: r.bits,
                        },
                        hidden: r.hidden,
                        heads: r.heads,
                        kv_heads: r.heads,
                        ffn: r.ffn,
                        rope: &rope,
                        group: &zeros,
                        params: dense_params(),
                        cluster_on: ClusterOn::Hidden,
                        past_key,
                        past_value,
                        scar_cache: None,
                    };
                    h = layer(&mut c, &k, &spec, &h);
                }
                let gain = c.w.vector("router.norm", r.hidden);
                let gain = c.g.init_f32("router.norm", &[r.hidden as i64], &gain);
                layers::rms_norm(&mut c.g, &h, &gain, &k.two, &k.eps)
            }
        };
        c.g.op("Identity", &[&h], &[]);
        c.g.name_last_output("router_hidden");
        c.route(&h, r)
    };
    c.g.node_in_domain(
        "",
        "Concat",
        &[&past_route, &route],
        &[&present_route],
        &[("axis", Attr::Int(1))],
    );

    // Pathways: one routed stack.
    let p = &cfg.pathways;
    let emb = c.w.matrix("pathway.embed", vocab, p.hidden);
    let mut h = super::build::embedding(&mut c.g, "pathway.embed", &emb, p.hidden, &ids);
    let rope = super::build::rope_tables(
        &mut c,
        "pathway.rope",
        cfg.max_context,
        p.hidden / p.heads,
        p.rope_base,
        &pos,
    );
    let scar_on = cfg.scar.enabled && variant != Variant::NoScar;
    let params = if scar_on {
        cfg.scar.params()
    } else {
        dense_params()
    };
    let pathways: Vec<usize> = if variant == Variant::NoRouter {
        vec![ndom]
    } else {
        (0..=ndom).collect()
    };
    let hd = p.hidden / p.heads;
    let kv = p.kv_heads();
    let dx = match cfg.scar.cluster_on {
        ClusterOn::Hidden => p.hidden,
        ClusterOn::Keys => kv * hd,
    };
    for l in 0..p.layers {
        let sets: Vec<(i64, String, usize)> = pathways
            .iter()
            .map(|&pw| {
                let (name, bits) = if pw == ndom {
                    ("general", p.general_bits)
                } else {
                    (DOMAINS[pw], p.domain_bits)
                };
                (pw as i64, format!("pathway.{name}.blk{l}"), bits)
            })
            .collect();
        let past_key = k.past(
            &mut c.g,
            &format!("key_{l}"),
            Elem::F32,
            kv_dims(kv, hd, "past"),
            kv_dims(kv, hd, "total"),
        );
        let past_value = k.past(
            &mut c.g,
            &format!("value_{l}"),
            Elem::F32,
            kv_dims(kv, hd, "past"),
            kv_dims(kv, hd, "total"),
        );
        let scar_cache = (params.k > 1).then(|| {
            let rows = match params.recluster_every {
                0 => "scar_sums",
                _ => "scar_x",
            };
            let x = k.past(
                &mut c.g,
                &format!("{rows}_{l}"),
                Elem::F32,
                vec![Dim::Fixed(1), Dim::from("past"), Dim::Fixed(dx as i64)],
                vec![Dim::Fixed(1), Dim::from("total"), Dim::Fixed(dx as i64)],
            );
            let ids = k.past(
                &mut c.g,
                &format!("clusters_{l}"),
                Elem::I64,
                vec![Dim::Fixed(1), Dim::from("past")],
                vec![Dim::Fixed(1), Dim::from("total")],
            );
            (x, ids)
        });
        let spec = Layer {
            name: format!("pathway.blk{l}"),
            weights: Weights::Routed {
                sets: &sets,
                route: &route,
            },
            hidden: p.hidden,
            heads: p.heads,
            kv_heads: kv,
            ffn: p.ffn,
            rope: &rope,
            group: &present_route,
            params,
            cluster_on: cfg.scar.cluster_on,
            past_key,
            past_value,
            scar_cache,
        };
        h = layer(&mut c, &k, &spec, &h);
    }
    c.head(
        cfg,
        vocab,
        (&h, &route),
        (&k.two, &k.eps),
        variant != Variant::NoRouter,
    );
    for (present, elem, out) in &k.cache {
        c.g.output(present, *elem, out);
    }
    let weight_bytes = c.weight_bytes;
    let scar_text = match scar_on {
        true => format!(
            "k={} sinks={} window={} on {:?}",
            params.k, params.sinks, params.window, cfg.scar.cluster_on
        ),
        false => "off".into(),
    };
    let doc = super::build::describe(
        cfg,
        variant,
        ", sparse dispatch, KV cache",
        pathways.len(),
        &scar_text,
    );
    let onnx = encode(&c.g.finish(
        &doc,
        &[
            ("edgebench.gem.variant", format!("{variant:?}")),
            ("edgebench.gem.dispatch", "sparse".into()),
        ],
    ));
    Built { onnx, weight_bytes }
}

/// Dense causal attention as SCAR with one cluster.
fn dense_params() -> ScarParams {
    ScarParams {
        k: 1,
        iterations: 0,
        causal: true,
        scale: None,
        sinks: 0,
        window: 0,
        recluster_every: 1,
    }
}
