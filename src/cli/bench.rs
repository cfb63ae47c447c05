//! `edgebench bench model`: speed and memory of one model on this machine,
//! printed as a table. Figures are measured in this run; the bandwidth bound
//! is computed from a bandwidth measured in the same run and labelled so.
//! `edgebench bench ops` lives in `bench_ops.rs`.

use super::{bad_input, failed, Failure};
use clap::{Args, Subcommand};
use edgebench::model::profile::{self as profiling, NodeTime};
use edgebench::model::{
    bert::TractEncoder, decoder::TractDecoder, manifest::ModelManifest, tiny, Model,
};
use edgebench::ops::quant::Lowering;
use edgebench::runtime::RuntimeOptions;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// Load time, prefill and decode speed (decoders) or sentences/s (encoders), memory.
    Model {
        /// Model directory or builtin:tiny.
        #[arg(long, default_value = "builtin:tiny")]
        model: String,
        /// Prompt length for the prefill measurement.
        #[arg(long, default_value_t = 128, value_parser = super::bounded(1..=*edgebench::model::manifest::CONTEXT.end()))]
        prompt_tokens: usize,
        /// Decode steps measured (at most the room the prompt leaves in the model's context).
        #[arg(long, default_value_t = 32, value_parser = super::bounded(0..=*edgebench::suite::MAX_TOKENS.end()))]
        decode_tokens: usize,
        /// Repeats of the prefill measurement.
        #[arg(long, default_value_t = 3, value_parser = super::bounded(1..=10_000))]
        repeats: usize,
        /// Print JSON lines ({"metric", "value", "unit"}) instead of a table.
        #[arg(long)]
        json: bool,
        /// Output root (for built-in models).
        #[arg(long, default_value = "reports")]
        out: PathBuf,
        /// Also load the model with this lowering of its quantized layers
        /// (`tract`: tract's Q4_0 block-quant matmul and f32 for other widths;
        /// `f32`: everything dequantized at load) and print speed ratios
        /// measured in the same run.
        #[arg(long)]
        compare_lowering: Option<String>,
        /// Also load the model without the load-time rewrites (attention
        /// fused into `EbAttention`, f32 linear layers on `EbDense`), as
        /// tract runs the graph as written, and print speed ratios measured
        /// in the same run.
        #[arg(long, conflicts_with = "compare_lowering")]
        compare_unfused: bool,
        /// llama.cpp's `llama-bench` binary: also run it on `--gguf` with the
        /// same thread count, prompt length and decode depth, and print
        /// ratios measured in the same run.
        #[arg(long, requires = "gguf")]
        llama_bench: Option<PathBuf>,
        /// The GGUF file the model was imported from (for `--llama-bench`;
        /// checked against the sha256 in the model's provenance).
        #[arg(long)]
        gguf: Option<PathBuf>,
        /// Also print where the time goes: per tract op and the slowest
        /// nodes, averaged over `--repeats` prefills and the decode steps
        /// after one more (decoders) or `--repeats` batches of 1 and of 32
        /// (encoders), after the timed runs.
        #[arg(long)]
        profile: bool,
    },
    /// Custom ops in tract: SCAR vs dense attention (n = 128, 512, 2048; k = 8, 16), quantized vs f32 linear.
    Ops {
        /// Small sizes only (seconds; for tests and smoke checks).
        #[arg(long)]
        quick: bool,
        /// Minimum timed runs of each graph (after one warm-up).
        #[arg(long, default_value_t = 5, value_parser = super::bounded(1..=10_000))]
        repeats: usize,
        /// Print JSON lines ({"metric", "value", "unit"}) instead of tables.
        #[arg(long)]
        json: bool,
    },
}

/// Peak resident set size (Linux); None elsewhere.
/// Percentile `p` of `v` (LoadGen's nearest rank), NaN for no samples.
fn pct(v: &[f64], p: f64) -> f64 {
    edgebench::util::stats::percentile(v, p).unwrap_or(f64::NAN)
}

fn peak_rss() -> Option<u64> {
    edgebench::perf::memory_now().1
}

fn push_rss(rows: &mut Vec<(String, f64, String)>) {
    match peak_rss() {
        Some(b) => rows.push((
            "peak_rss".into(),
            b as f64 / 1e6,
            "MB (before the bandwidth probe)".into(),
        )),
        None => rows.push((
            "peak_rss".into(),
            f64::NAN,
            "MB (not measurable on this OS)".into(),
        )),
    }
}

/// Single-thread read bandwidth over a buffer larger than the caches, bytes/s.
fn read_bandwidth() -> f64 {
    let buf: Vec<u64> = (0..(256usize << 20) / 8).map(|i| i as u64).collect();
    let mut best = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let s: u64 = buf.iter().fold(0u64, |a, x| a.wrapping_add(*x));
        std::hint::black_box(s);
        best = best.max((buf.len() * 8) as f64 / t.elapsed().as_secs_f64());
    }
    best
}

/// What `bench model` compares the model with, loaded again in the same run.
#[derive(Debug, Clone, Copy)]
enum Baseline {
    /// Another lowering of the quantized layers.
    Lowering(Lowering),
    /// The graph as written (no `EbAttention` or `EbDense` rewrites).
    Unfused,
}

/// Prefill seconds (p50) and decode step seconds of `dec` on `prompt`.
fn time_decoder(
    dec: &TractDecoder,
    prompt: &[u32],
    decode_tokens: usize,
    repeats: usize,
) -> Result<(f64, Vec<f64>), Failure> {
    let mut prefill = Vec::new();
    let mut steps = Vec::new();
    for _ in 0..repeats.max(1) {
        let (p, s) = dec.time_decode(prompt, decode_tokens).map_err(failed)?;
        prefill.push(p);
        steps.extend(s);
    }
    Ok((pct(&prefill, 0.5), steps))
}

pub fn bench(a: BenchArgs, runtime: &RuntimeOptions) -> Result<(), Failure> {
    if let BenchWhat::Ops {
        quick,
        repeats,
        json,
    } = a.what
    {
        return super::bench_ops::bench_ops(quick, repeats, json, runtime);
    }
    let BenchWhat::Model {
        model,
        prompt_tokens,
        decode_tokens,
        repeats,
        json,
        out,
        compare_lowering,
        compare_unfused,
        llama_bench,
        gguf,
        profile,
    } = a.what
    else {
        unreachable!("bench ops returned above")
    };
    let llama = llama_bench.zip(gguf);
    let compare = match (compare_lowering, compare_unfused) {
        (Some(name), _) => Some(Baseline::Lowering(Lowering::parse(&name).ok_or_else(
            || {
                bad_input(anyhow::anyhow!(
                    "--compare-lowering: unknown lowering `{name}`; use kernel, tract or f32"
                ))
            },
        )?)),
        (None, true) => Some(Baseline::Unfused),
        (None, false) => None,
    };
    let lowering = runtime.lowering;
    // the options of the comparison's second load, in the same run
    let other_options = |b: Baseline| match b {
        Baseline::Lowering(l) => RuntimeOptions {
            lowering: l,
            ..*runtime
        },
        Baseline::Unfused => RuntimeOptions {
            fuse_attention: false,
            dense: false,
            ..*runtime
        },
    };
    let dir = match model.as_str() {
        "builtin:tiny" | "tiny" => tiny::materialize(&out.join("models/tiny")).map_err(failed)?,
        other => PathBuf::from(other),
    };
    let manifest = ModelManifest::load(&dir).map_err(bad_input)?;
    if let Some((_, gguf)) = &llama {
        if manifest.architecture != "decoder" {
            return Err(bad_input(anyhow::anyhow!(
                "--llama-bench compares decoders; {} is an {}",
                dir.display(),
                manifest.architecture
            )));
        }
        super::llama_cpp::check_source(gguf, &manifest.provenance).map_err(bad_input)?;
    }
    let graph_bytes = std::fs::metadata(dir.join(&manifest.graph))
        .map(|m| m.len())
        .unwrap_or(0);
    let mut rows: Vec<(String, f64, String)> = Vec::new();
    let mut profiles: Vec<(String, usize, Vec<NodeTime>)> = Vec::new();
    let runtime_note: String;
    let t = Instant::now();
    match manifest.architecture.as_str() {
        "decoder" => {
            let dec = TractDecoder::load(&dir, &manifest, &model, runtime).map_err(bad_input)?;
            rows.push((
                "load_and_optimise".into(),
                t.elapsed().as_secs_f64() * 1e3,
                "ms".into(),
            ));
            let n = prompt_tokens
                .min(manifest.max_context.saturating_sub(decode_tokens + 1))
                .max(1);
            let prompt: Vec<u32> = (0..n)
                .map(|i| (i as u32 * 7919 + 13) % manifest.vocab_size as u32)
                .collect();
            let (prefill, steps) = time_decoder(&dec, &prompt, decode_tokens, repeats)?;
            let kv_cache = dec.has_kv_cache();
            runtime_note = dec.info().matmul.clone();
            if profile {
                let passes = repeats.max(1);
                let (p, d) = dec
                    .profile_decode(&prompt, passes, decode_tokens)
                    .map_err(failed)?;
                profiles.push((format!("prefill of {n} tokens"), passes, p));
                profiles.push((format!("decode step after {n} tokens"), decode_tokens, d));
            }
            let packed = edgebench::ops::quant::live_packed_bytes();
            drop(dec);
            rows.push((
                format!("prefill_{n}_tokens"),
                n as f64 / prefill,
                "tokens/s (p50, model only)".into(),
            ));
            if !steps.is_empty() {
                rows.push((
                    "decode_p50".into(),
                    pct(&steps, 0.5) * 1e3,
                    "ms/token (model only)".into(),
                ));
                rows.push((
                    "decode_p90".into(),
                    pct(&steps, 0.9) * 1e3,
                    "ms/token (model only)".into(),
                ));
                push_rss(&mut rows);
                let bw = read_bandwidth();
                rows.push((
                    "read_bandwidth".into(),
                    bw / 1e9,
                    "GB/s (measured, 1 thread)".into(),
                ));
                // bytes read per token: every weight matrix once, one embedding row
                let count = edgebench::perf::count_graph(&dir.join(&manifest.graph)).ok();
                let stored = count
                    .as_ref()
                    .map_or(graph_bytes as f64, |c| c.weight_bytes_per_token);
                rows.push((
                    "weight_bytes_per_token".into(),
                    stored / 1e6,
                    "MB (as stored in the graph)".into(),
                ));
                // the fused kernels read their packed copies (binary16 block
                // parameters where exact) instead of the stored quantized layers
                let per_token = match &count {
                    Some(c) if packed > 0 && c.quant_bytes_per_token > 0.0 => {
                        let read = stored - c.quant_bytes_per_token + packed as f64;
                        rows.push((
                            "weight_bytes_read_per_token".into(),
                            read / 1e6,
                            "MB (as the kernels read them: packed layers + f32 weights)".into(),
                        ));
                        read
                    }
                    _ => stored,
                };
                let bound = per_token / bw;
                rows.push((
                    "bandwidth_bound_decode".into(),
                    bound * 1e3,
                    "ms/token (estimated: weight bytes per token / bandwidth)".into(),
                ));
                rows.push((
                    "decode_vs_bound".into(),
                    pct(&steps, 0.5) / bound,
                    "ratio".into(),
                ));
            }
            if let Some(other) = compare {
                let t = Instant::now();
                let (name, ours) = match other {
                    Baseline::Lowering(l) => (l.name(), lowering.name()),
                    Baseline::Unfused => ("unfused", "fused"),
                };
                let base = TractDecoder::load(&dir, &manifest, &model, &other_options(other));
                let load_other = t.elapsed().as_secs_f64();
                let base = base.map_err(bad_input)?;
                let (p_other, s_other) = time_decoder(&base, &prompt, decode_tokens, repeats)?;
                rows.push((
                    format!("load_and_optimise_{name}"),
                    load_other * 1e3,
                    "ms".into(),
                ));
                rows.push((
                    format!("prefill_{n}_tokens_{name}"),
                    n as f64 / p_other,
                    "tokens/s (p50, model only)".into(),
                ));
                rows.push((
                    format!("prefill_speedup_vs_{name}"),
                    p_other / prefill,
                    format!("ratio ({ours} over {name}, same run)"),
                ));
                if !steps.is_empty() && !s_other.is_empty() {
                    let (a, b) = (pct(&steps, 0.5), pct(&s_other, 0.5));
                    rows.push((
                        format!("decode_p50_{name}"),
                        b * 1e3,
                        "ms/token (model only)".into(),
                    ));
                    rows.push((
                        format!("decode_speedup_vs_{name}"),
                        b / a,
                        format!("ratio ({ours} over {name}, same run)"),
                    ));
                }
            }
            if let Some((bin, gguf)) = &llama {
                let theirs = super::llama_cpp::run(
                    bin,
                    gguf,
                    runtime.threads,
                    n,
                    decode_tokens.max(1),
                    repeats,
                )
                .map_err(failed)?;
                rows.push((
                    format!("llama_cpp_prefill_{n}_tokens"),
                    theirs.prefill_tokens_per_s,
                    "tokens/s (llama-bench, same run)".into(),
                ));
                rows.push((
                    "prefill_vs_llama_cpp".into(),
                    n as f64 / prefill / theirs.prefill_tokens_per_s,
                    "ratio (ours over llama.cpp's tokens/s; >= 1: no slower)".into(),
                ));
                if !steps.is_empty() {
                    let mean = steps.iter().sum::<f64>() / steps.len() as f64 * 1e3;
                    rows.push((
                        "llama_cpp_decode".into(),
                        theirs.decode_ms,
                        format!("ms/token (llama-bench, mean, after {n} tokens)"),
                    ));
                    rows.push((
                        "decode_mean".into(),
                        mean,
                        format!("ms/token (model only, mean, after {n} tokens)"),
                    ));
                    rows.push((
                        "decode_vs_llama_cpp".into(),
                        mean / theirs.decode_ms,
                        "ratio (our mean over llama.cpp's; <= 1: no slower)".into(),
                    ));
                }
            }
            rows.push(("kv_cache".into(), kv_cache as u8 as f64, "1 = yes".into()));
        }
        "encoder" => {
            let mut enc =
                TractEncoder::load(&dir, &manifest, &model, runtime).map_err(bad_input)?;
            runtime_note = enc.info().matmul.clone();
            rows.push((
                "load_and_optimise".into(),
                t.elapsed().as_secs_f64() * 1e3,
                "ms".into(),
            ));
            // 126 words + [CLS] and [SEP] = 128 tokens for WordPiece vocabularies (as in benches/ort_bench.py)
            let sentence = "the ".repeat(126);
            let tokens = enc.count_tokens(&sentence).map_err(failed)?;
            // sentences/s, p50: the model alone on token ids (as onnxruntime
            // is timed in benches/ort_bench.py), or with tokenisation
            let time =
                |enc: &mut TractEncoder, batch: usize, end_to_end: bool| -> Result<f64, Failure> {
                    let texts = vec![sentence.clone(); batch];
                    let ids = enc.tokenize(&sentence).map_err(failed)?;
                    let ids = vec![ids.as_slice(); batch];
                    let mut pass = || -> Result<(), Failure> {
                        if end_to_end {
                            enc.embed(&texts).map_err(failed)?;
                        } else {
                            enc.embed_ids(&ids).map_err(failed)?;
                        }
                        Ok(())
                    };
                    pass()?; // warm-up
                    let mut times = Vec::new();
                    for _ in 0..repeats.max(1) {
                        let t = Instant::now();
                        pass()?;
                        times.push(t.elapsed().as_secs_f64());
                    }
                    Ok(batch as f64 / pct(&times, 0.5))
                };
            let mut base = match compare {
                Some(Baseline::Unfused) => Some(
                    TractEncoder::load(&dir, &manifest, &model, &other_options(Baseline::Unfused))
                        .map_err(bad_input)?,
                ),
                Some(Baseline::Lowering(_)) => {
                    return Err(bad_input(anyhow::anyhow!(
                        "--compare-lowering applies to quantized decoders; {} is an encoder",
                        dir.display()
                    )))
                }
                None => None,
            };
            for batch in [1usize, 32] {
                let ours = time(&mut enc, batch, false)?;
                rows.push((
                    format!("batch_{batch}_x_{tokens}_tokens"),
                    ours,
                    "sentences/s (p50, model only)".into(),
                ));
                rows.push((
                    format!("batch_{batch}_end_to_end"),
                    time(&mut enc, batch, true)?,
                    "sentences/s (p50, with tokenisation)".into(),
                ));
                if let Some(base) = base.as_mut() {
                    let theirs = time(base, batch, false)?;
                    rows.push((
                        format!("batch_{batch}_x_{tokens}_tokens_unfused"),
                        theirs,
                        "sentences/s (p50, model only)".into(),
                    ));
                    rows.push((
                        format!("batch_{batch}_speedup_vs_unfused"),
                        ours / theirs,
                        "ratio (fused over unfused, same run)".into(),
                    ));
                }
            }
            for batch in [1usize, 32].into_iter().filter(|_| profile) {
                let texts = vec![sentence.clone(); batch];
                let passes = repeats.max(1);
                let times = enc.profile_embed(&texts, passes).map_err(failed)?;
                profiles.push((format!("batch of {batch} x {tokens} tokens"), passes, times));
            }
        }
        other => return Err(bad_input(anyhow::anyhow!("unknown architecture `{other}`"))),
    }
    rows.push(("graph_bytes".into(), graph_bytes as f64 / 1e6, "MB".into()));
    rows.push((
        "threads".into(),
        runtime.threads as f64,
        "matmul threads".into(),
    ));
    if !rows.iter().any(|r| r.0 == "peak_rss") {
        push_rss(&mut rows);
    }
    if json {
        for (m, v, u) in &rows {
            let v = if v.is_finite() {
                serde_json::json!(v)
            } else {
                serde_json::Value::Null
            };
            println!(
                "{}",
                serde_json::json!({"metric": m, "value": v, "unit": u})
            );
        }
    } else {
        println!(
            "model: {} ({})\nruntime: {runtime_note}",
            manifest.name,
            dir.display(),
        );
        println!("{:<28} {:>12}  unit", "metric", "value");
        for (m, v, u) in &rows {
            println!("{m:<28} {v:>12.3}  {u}");
        }
    }
    for (phase, passes, nodes) in &profiles {
        print_profile(phase, *passes, nodes, json);
    }
    Ok(())
}

/// Prints one phase's profile: time per tract op, then the slowest nodes.
fn print_profile(phase: &str, passes: usize, nodes: &[NodeTime], json: bool) {
    let passes = passes.max(1) as f64;
    let total: f64 = nodes.iter().map(|n| n.total.as_secs_f64()).sum();
    let ops = profiling::by_op(nodes);
    if json {
        for (op, t, calls) in &ops {
            println!(
                "{}",
                serde_json::json!({"profile": phase, "op": op, "ms": t.as_secs_f64() * 1e3 / passes,
                    "share": t.as_secs_f64() / total, "calls": *calls as f64 / passes})
            );
        }
        return;
    }
    println!(
        "\nprofile: {phase} ({:.3} ms per pass in nodes, timed node by node)",
        total * 1e3 / passes
    );
    println!(
        "{:<26} {:>10} {:>7} {:>7}  slowest node (output shape)",
        "op", "ms/pass", "share", "calls"
    );
    for (op, t, calls) in &ops {
        // nodes are sorted slowest first
        let slowest = nodes.iter().find(|n| &n.op == op);
        println!(
            "{op:<26} {:>10.3} {:>6.1}% {:>7.1}  {}",
            t.as_secs_f64() * 1e3 / passes,
            100.0 * t.as_secs_f64() / total,
            *calls as f64 / passes,
            slowest.map_or(String::new(), |n| format!("{} {:?}", n.node, n.shape))
        );
    }
    println!("slowest nodes:");
    for n in nodes.iter().take(8) {
        println!(
            "  {:<44} {:<14} {:>10.3} ms/pass  {:>5.1}%  {:?}",
            n.node,
            n.op,
            n.total.as_secs_f64() * 1e3 / passes,
            100.0 * n.total.as_secs_f64() / total,
            n.shape
        );
    }
}
