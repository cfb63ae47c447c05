//! `edgebench bench model`: speed and memory of one model on this machine,
//! printed as a table. Figures are measured in this run; the bandwidth bound
//! is computed from a bandwidth measured in the same run and labelled so.
//! `edgebench bench ops` lives in `bench_ops.rs`.

use super::{bad_input, failed, Failure};
use clap::{Args, Subcommand};
use edgebench::device::bench::{self as rows_out, BenchRow};
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
        /// Print JSON lines ({"metric", "value", "unit"}) of every figure instead of tables.
        #[arg(long)]
        json: bool,
        /// Format of the speed rows (llama-bench style: pp<N>, tg<N>, mean ± sd):
        /// md (with the other figures below), csv or jsonl (the rows alone).
        #[arg(long, default_value = "md", value_parser = ["md", "csv", "jsonl"])]
        output: String,
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
        /// Another decoder timed in the same run after this one (e.g.
        /// SmolLM2 alone beside the GEM assembled from it): its load time,
        /// prefill and decode speed and memory, and this model's ratios over it.
        #[arg(long, conflicts_with_all = ["compare_lowering", "compare_unfused"])]
        beside: Option<PathBuf>,
    },
    /// Evaluation throughput on real suites: examples/s, tokens/s, model vs harness time.
    Eval(super::bench_eval::EvalBenchArgs),
    /// Custom ops in tract: SCAR (k = 1, 8, 16; sinks and window 0/0, 4/0, 0/64, 4/64, 4/256) vs dense attention in tract and EbAttention (n = 512, 2048), quantized vs f32 linear.
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

/// What `time_decoder` measured: each repetition's prefill seconds and its
/// decode step seconds.
struct DecodeTimes {
    prefill: Vec<f64>,
    steps: Vec<Vec<f64>>,
}

impl DecodeTimes {
    /// Median prefill seconds.
    fn prefill_p50(&self) -> f64 {
        pct(&self.prefill, 0.5)
    }

    /// Every decode step's seconds.
    fn all_steps(&self) -> Vec<f64> {
        self.steps.concat()
    }

    /// The `pp<n>` and `tg<steps>` rows of `template`.
    fn rows(&self, template: &BenchRow, n: usize) -> Vec<BenchRow> {
        let mut rows = vec![BenchRow::from_times(
            template,
            &format!("pp{n}"),
            n as f64,
            &self.prefill,
        )];
        let steps = self.steps.first().map_or(0, Vec::len);
        if steps > 0 {
            let totals: Vec<f64> = self.steps.iter().map(|s| s.iter().sum()).collect();
            rows.push(BenchRow::from_times(
                template,
                &format!("tg{steps}"),
                steps as f64,
                &totals,
            ));
        }
        rows
    }
}

/// Times `repeats` prefills of `prompt`, each followed by `decode_tokens` decode steps.
fn time_decoder(
    dec: &TractDecoder,
    prompt: &[u32],
    decode_tokens: usize,
    repeats: usize,
) -> Result<DecodeTimes, Failure> {
    let mut t = DecodeTimes {
        prefill: Vec::new(),
        steps: Vec::new(),
    };
    for _ in 0..repeats.max(1) {
        let (p, s) = dec.time_decode(prompt, decode_tokens).map_err(failed)?;
        t.prefill.push(p);
        t.steps.push(s);
    }
    Ok(t)
}

/// A model bench: what to load, how, and what to compare it with.
struct ModelBench<'a> {
    dir: PathBuf,
    manifest: ModelManifest,
    model: String,
    runtime: &'a RuntimeOptions,
    compare: Option<Baseline>,
    llama: Option<(PathBuf, PathBuf)>,
    /// Another model timed in the same run.
    beside: Option<(PathBuf, ModelManifest)>,
    prompt_tokens: usize,
    decode_tokens: usize,
    repeats: usize,
    profile: bool,
    graph_bytes: u64,
    /// CPU model, probed once.
    cpu: String,
}

impl ModelBench<'_> {
    /// The row fields of this model run by `engine` with `options`, in this
    /// build on this machine.
    fn row(&self, engine: &str, options: &RuntimeOptions) -> BenchRow {
        BenchRow {
            model: self.manifest.name.clone(),
            engine: engine.to_string(),
            test: String::new(),
            unit: "t/s".into(),
            mean: f64::NAN,
            sd: None,
            n: 0,
            threads: options.threads,
            lowering: options.lowering.name().into(),
            isa: options.isa().name().into(),
            commit: super::GIT_HASH.map(String::from),
            cpu: self.cpu.clone(),
        }
    }

    /// The options of the comparison's second load, in the same run.
    fn other_options(&self, b: Baseline) -> RuntimeOptions {
        match b {
            Baseline::Lowering(l) => RuntimeOptions {
                lowering: l,
                ..*self.runtime
            },
            Baseline::Unfused => RuntimeOptions {
                fuse_attention: false,
                dense: false,
                ..*self.runtime
            },
        }
    }
}

/// Everything a model bench measured.
#[derive(Default)]
struct Measured {
    /// Named figures (`prefill_128_tokens`, ratios, memory, bandwidth).
    figures: Vec<(String, f64, String)>,
    /// The llama-bench style speed rows.
    speed: Vec<BenchRow>,
    /// Per-node profiles by phase.
    profiles: Vec<(String, usize, Vec<NodeTime>)>,
    /// How the model's matrix products run.
    runtime_note: String,
}

pub fn bench(a: BenchArgs, runtime: &RuntimeOptions) -> Result<(), Failure> {
    let a = match a.what {
        BenchWhat::Eval(e) => return super::bench_eval::bench_eval(e, runtime),
        what => BenchArgs { what },
    };
    let BenchWhat::Model {
        model,
        prompt_tokens,
        decode_tokens,
        repeats,
        json,
        output,
        out,
        compare_lowering,
        compare_unfused,
        llama_bench,
        gguf,
        profile,
        beside,
    } = a.what
    else {
        let BenchWhat::Ops {
            quick,
            repeats,
            json,
        } = a.what
        else {
            unreachable!("eval returned above")
        };
        return super::bench_ops::bench_ops(quick, repeats, json, runtime);
    };
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
    let dir = match model.as_str() {
        "builtin:tiny" | "tiny" => tiny::materialize(&out.join("models/tiny")).map_err(failed)?,
        other => PathBuf::from(other),
    };
    let (dir, manifest) = edgebench::model::optimum::open(&dir).map_err(bad_input)?;
    let llama = llama_bench.zip(gguf);
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
    let beside = match beside {
        Some(p) => {
            let (d, m) = edgebench::model::optimum::open(&p).map_err(bad_input)?;
            if m.architecture != "decoder" || manifest.architecture != "decoder" {
                return Err(bad_input(anyhow::anyhow!(
                    "--beside compares two decoders; {} is an {} and {} an {}",
                    dir.display(),
                    manifest.architecture,
                    d.display(),
                    m.architecture
                )));
            }
            Some((d, m))
        }
        None => None,
    };
    let b = ModelBench {
        dir,
        manifest,
        model,
        runtime,
        compare,
        llama,
        beside,
        prompt_tokens,
        decode_tokens,
        repeats,
        profile,
        graph_bytes,
        cpu: edgebench::device::profile::Host::detect()
            .cpu_model
            .value()
            .cloned()
            .unwrap_or_else(|| "unknown CPU".into()),
    };
    let mut m = Measured::default();
    match b.manifest.architecture.as_str() {
        "decoder" => bench_decoder(&b, &mut m)?,
        "encoder" => bench_encoder(&b, &mut m)?,
        other => return Err(bad_input(anyhow::anyhow!("unknown architecture `{other}`"))),
    }
    m.figures.push((
        "graph_bytes".into(),
        b.graph_bytes as f64 / 1e6,
        "MB".into(),
    ));
    m.figures.push((
        "threads".into(),
        runtime.threads as f64,
        "matmul threads".into(),
    ));
    if !m.figures.iter().any(|r| r.0 == "peak_rss") {
        push_rss(&mut m.figures);
    }
    let format = rows_out::Output::parse(&output).expect("clap checked it");
    print_measured(&b, &m, json, format);
    Ok(())
}

/// Prints the speed rows alone (csv, jsonl), every figure as JSON lines
/// (`--json`), or the rows, the figures and the profiles as tables.
fn print_measured(b: &ModelBench, m: &Measured, json: bool, format: rows_out::Output) {
    if !json && format != rows_out::Output::Md {
        print!("{}", rows_out::render(&m.speed, format));
        return;
    }
    if json {
        for (name, v, u) in &m.figures {
            let v = if v.is_finite() {
                serde_json::json!(v)
            } else {
                serde_json::Value::Null
            };
            println!(
                "{}",
                serde_json::json!({"metric": name, "value": v, "unit": u})
            );
        }
    } else {
        println!(
            "model: {} ({})\nruntime: {}\n",
            b.manifest.name,
            b.dir.display(),
            m.runtime_note
        );
        println!("{}", rows_out::render(&m.speed, rows_out::Output::Md));
        println!("{:<28} {:>12}  unit", "metric", "value");
        for (name, v, u) in &m.figures {
            println!("{name:<28} {v:>12.3}  {u}");
        }
    }
    for (phase, passes, nodes) in &m.profiles {
        print_profile(phase, *passes, nodes, json);
    }
}

/// Times `--beside`'s model after this one (loaded after this one was dropped)
/// and pushes its figures and this model's ratios over it.
fn bench_beside(
    b: &ModelBench,
    m: &mut Measured,
    dir: &std::path::Path,
    manifest: &ModelManifest,
    prompt: &[u32],
    (prefill, steps): (f64, &[f64]),
    growth: Option<u64>,
) -> Result<(), Failure> {
    let n = prompt.len();
    let rss_before = edgebench::perf::memory_now().0;
    let t = Instant::now();
    let name = dir.display().to_string();
    let other = TractDecoder::load(dir, manifest, &name, b.runtime).map_err(bad_input)?;
    let load = t.elapsed().as_secs_f64();
    // the same number of tokens, drawn from its own vocabulary
    let theirs: Vec<u32> = prompt
        .iter()
        .map(|&i| i % manifest.vocab_size as u32)
        .collect();
    let times = time_decoder(&other, &theirs, b.decode_tokens, b.repeats)?;
    let other_growth = rss_before
        .zip(edgebench::perf::memory_now().0)
        .map(|(a, z)| z.saturating_sub(a));
    let template = BenchRow {
        model: manifest.name.clone(),
        ..b.row("edgebench", b.runtime)
    };
    m.speed.extend(times.rows(&template, n));
    let label = &manifest.name;
    let (p_other, s_other) = (times.prefill_p50(), times.all_steps());
    m.figures.push((
        format!("load_and_optimise_{label}"),
        load * 1e3,
        "ms".into(),
    ));
    m.figures.push((
        format!("prefill_{n}_tokens_{label}"),
        n as f64 / p_other,
        "tokens/s (p50, model only)".into(),
    ));
    m.figures.push((
        format!("prefill_time_over_{label}"),
        prefill / p_other,
        "ratio (this model's time over the other's, same run)".into(),
    ));
    if !steps.is_empty() && !s_other.is_empty() {
        m.figures.push((
            format!("decode_p50_{label}"),
            pct(&s_other, 0.5) * 1e3,
            "ms/token (model only)".into(),
        ));
        m.figures.push((
            format!("decode_time_over_{label}"),
            pct(steps, 0.5) / pct(&s_other, 0.5),
            "ratio (this model's time per token over the other's, same run)".into(),
        ));
    }
    if let (Some(a), Some(o)) = (growth, other_growth) {
        // loaded after this model was dropped, it may reuse pages this one
        // freed: its growth is a lower bound, and so the ratio an upper one
        m.figures.push((
            format!("rss_growth_{label}"),
            o as f64 / 1e6,
            "MB (lower bound: loaded second, it may reuse freed pages)".into(),
        ));
        m.figures.push((
            format!("rss_growth_over_{label}"),
            a as f64 / o.max(1) as f64,
            "ratio (upper bound; bench each model alone for exact growth)".into(),
        ));
    }
    Ok(())
}

/// Prefill and decode speed, memory, the bandwidth bound, and the comparisons.
fn bench_decoder(b: &ModelBench, m: &mut Measured) -> Result<(), Failure> {
    let rss_before = edgebench::perf::memory_now().0;
    let t = Instant::now();
    let dec = TractDecoder::load(&b.dir, &b.manifest, &b.model, b.runtime).map_err(bad_input)?;
    m.figures.push((
        "load_and_optimise".into(),
        t.elapsed().as_secs_f64() * 1e3,
        "ms".into(),
    ));
    let n = b
        .prompt_tokens
        .min(b.manifest.max_context.saturating_sub(b.decode_tokens + 1))
        .max(1);
    let prompt: Vec<u32> = (0..n)
        .map(|i| (i as u32 * 7919 + 13) % b.manifest.vocab_size as u32)
        .collect();
    let times = time_decoder(&dec, &prompt, b.decode_tokens, b.repeats)?;
    m.speed
        .extend(times.rows(&b.row("edgebench", b.runtime), n));
    let (prefill, steps) = (times.prefill_p50(), times.all_steps());
    let kv_cache = dec.has_kv_cache();
    m.runtime_note = dec.info().matmul.clone();
    if b.profile {
        let passes = b.repeats.max(1);
        let (p, d) = dec
            .profile_decode(&prompt, passes, b.decode_tokens)
            .map_err(failed)?;
        m.profiles
            .push((format!("prefill of {n} tokens"), passes, p));
        m.profiles
            .push((format!("decode step after {n} tokens"), b.decode_tokens, d));
    }
    let packed = edgebench::ops::quant::live_packed_bytes();
    let growth = rss_before
        .zip(edgebench::perf::memory_now().0)
        .map(|(a, z)| z.saturating_sub(a));
    drop(dec);
    if let Some(g) = growth {
        m.figures.push((
            "rss_growth".into(),
            g as f64 / 1e6,
            "MB (resident set after load and timing, minus before load)".into(),
        ));
    }
    if let Some((dir, manifest)) = &b.beside {
        bench_beside(b, m, dir, manifest, &prompt, (prefill, &steps), growth)?;
    }
    m.figures.push((
        format!("prefill_{n}_tokens"),
        n as f64 / prefill,
        "tokens/s (p50, model only)".into(),
    ));
    if !steps.is_empty() {
        m.figures.push((
            "decode_p50".into(),
            pct(&steps, 0.5) * 1e3,
            "ms/token (model only)".into(),
        ));
        m.figures.push((
            "decode_p90".into(),
            pct(&steps, 0.9) * 1e3,
            "ms/token (model only)".into(),
        ));
        push_rss(&mut m.figures);
        let bw = read_bandwidth();
        m.figures.push((
            "read_bandwidth".into(),
            bw / 1e9,
            "GB/s (measured, 1 thread)".into(),
        ));
        // bytes read per token: every weight matrix once, one embedding row
        let count = edgebench::perf::count_graph(&b.dir.join(&b.manifest.graph)).ok();
        let stored = count
            .as_ref()
            .map_or(b.graph_bytes as f64, |c| c.weight_bytes_per_token);
        m.figures.push((
            "weight_bytes_per_token".into(),
            stored / 1e6,
            "MB (as stored in the graph)".into(),
        ));
        // the fused kernels read their packed copies (binary16 block
        // parameters where exact) instead of the stored quantized layers
        let per_token = match &count {
            Some(c) if packed > 0 && c.quant_bytes_per_token > 0.0 => {
                let read = stored - c.quant_bytes_per_token + packed as f64;
                m.figures.push((
                    "weight_bytes_read_per_token".into(),
                    read / 1e6,
                    "MB (as the kernels read them: packed layers + f32 weights)".into(),
                ));
                read
            }
            _ => stored,
        };
        let bound = per_token / bw;
        m.figures.push((
            "bandwidth_bound_decode".into(),
            bound * 1e3,
            "ms/token (estimated: weight bytes per token / bandwidth)".into(),
        ));
        m.figures.push((
            "decode_vs_bound".into(),
            pct(&steps, 0.5) / bound,
            "ratio".into(),
        ));
    }
    if let Some(other) = b.compare {
        let t = Instant::now();
        let (name, ours) = match other {
            Baseline::Lowering(l) => (l.name(), b.runtime.lowering.name()),
            Baseline::Unfused => ("unfused", "fused"),
        };
        let base = TractDecoder::load(&b.dir, &b.manifest, &b.model, &b.other_options(other));
        let load_other = t.elapsed().as_secs_f64();
        let base = base.map_err(bad_input)?;
        let other_times = time_decoder(&base, &prompt, b.decode_tokens, b.repeats)?;
        let engine = format!("edgebench ({name})");
        let template = b.row(&engine, &b.other_options(other));
        m.speed.extend(other_times.rows(&template, n));
        let (p_other, s_other) = (other_times.prefill_p50(), other_times.all_steps());
        m.figures.push((
            format!("load_and_optimise_{name}"),
            load_other * 1e3,
            "ms".into(),
        ));
        m.figures.push((
            format!("prefill_{n}_tokens_{name}"),
            n as f64 / p_other,
            "tokens/s (p50, model only)".into(),
        ));
        m.figures.push((
            format!("prefill_speedup_vs_{name}"),
            p_other / prefill,
            format!("ratio ({ours} over {name}, same run)"),
        ));
        if !steps.is_empty() && !s_other.is_empty() {
            let (a, b) = (pct(&steps, 0.5), pct(&s_other, 0.5));
            m.figures.push((
                format!("decode_p50_{name}"),
                b * 1e3,
                "ms/token (model only)".into(),
            ));
            m.figures.push((
                format!("decode_speedup_vs_{name}"),
                b / a,
                format!("ratio ({ours} over {name}, same run)"),
            ));
        }
    }
    if let Some((bin, gguf)) = &b.llama {
        let theirs = super::llama_cpp::run(
            bin,
            gguf,
            b.runtime.threads,
            n,
            b.decode_tokens.max(1),
            b.repeats,
        )
        .map_err(failed)?;
        let template = BenchRow {
            lowering: "-".into(),
            isa: "-".into(),
            commit: None,
            n: b.repeats.max(1),
            ..b.row("llama.cpp", b.runtime)
        };
        m.speed.push(BenchRow {
            test: format!("pp{n}"),
            mean: theirs.prefill_tokens_per_s,
            ..template.clone()
        });
        m.speed.push(BenchRow {
            test: format!("tg{}", b.decode_tokens.max(1)),
            mean: 1e3 / theirs.decode_ms,
            ..template
        });
        m.figures.push((
            format!("llama_cpp_prefill_{n}_tokens"),
            theirs.prefill_tokens_per_s,
            "tokens/s (llama-bench, same run)".into(),
        ));
        m.figures.push((
            "prefill_vs_llama_cpp".into(),
            n as f64 / prefill / theirs.prefill_tokens_per_s,
            "ratio (ours over llama.cpp's tokens/s; >= 1: no slower)".into(),
        ));
        if !steps.is_empty() {
            let mean = steps.iter().sum::<f64>() / steps.len() as f64 * 1e3;
            m.figures.push((
                "llama_cpp_decode".into(),
                theirs.decode_ms,
                format!("ms/token (llama-bench, mean, after {n} tokens)"),
            ));
            m.figures.push((
                "decode_mean".into(),
                mean,
                format!("ms/token (model only, mean, after {n} tokens)"),
            ));
            m.figures.push((
                "decode_vs_llama_cpp".into(),
                mean / theirs.decode_ms,
                "ratio (our mean over llama.cpp's; <= 1: no slower)".into(),
            ));
        }
    }
    m.figures
        .push(("kv_cache".into(), kv_cache as u8 as f64, "1 = yes".into()));
    Ok(())
}

/// Sentences per second at batch 1 and 32, with and without tokenisation.
fn bench_encoder(b: &ModelBench, m: &mut Measured) -> Result<(), Failure> {
    let t = Instant::now();
    let mut enc =
        TractEncoder::load(&b.dir, &b.manifest, &b.model, b.runtime).map_err(bad_input)?;
    m.runtime_note = enc.info().matmul.clone();
    m.figures.push((
        "load_and_optimise".into(),
        t.elapsed().as_secs_f64() * 1e3,
        "ms".into(),
    ));
    // 126 words + [CLS] and [SEP] = 128 tokens for WordPiece vocabularies (as in benches/ort_bench.py)
    let sentence = "the ".repeat(126);
    let tokens = enc.count_tokens(&sentence).map_err(failed)?;
    // seconds per batch of each repetition: the model alone on token
    // ids (as onnxruntime is timed in benches/ort_bench.py), or with
    // tokenisation
    let time =
        |enc: &mut TractEncoder, batch: usize, end_to_end: bool| -> Result<Vec<f64>, Failure> {
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
            for _ in 0..b.repeats.max(1) {
                let t = Instant::now();
                pass()?;
                times.push(t.elapsed().as_secs_f64());
            }
            Ok(times)
        };
    let per_s = |batch: usize, times: &[f64]| batch as f64 / pct(times, 0.5);
    let seq_rows = |engine: &str, options: &RuntimeOptions| BenchRow {
        unit: "seq/s".into(),
        lowering: "-".into(),
        ..b.row(engine, options)
    };
    let mut base = match b.compare {
        Some(Baseline::Unfused) => Some(
            TractEncoder::load(
                &b.dir,
                &b.manifest,
                &b.model,
                &b.other_options(Baseline::Unfused),
            )
            .map_err(bad_input)?,
        ),
        Some(Baseline::Lowering(_)) => {
            return Err(bad_input(anyhow::anyhow!(
                "--compare-lowering applies to quantized decoders; {} is an encoder",
                b.dir.display()
            )))
        }
        None => None,
    };
    for batch in [1usize, 32] {
        let times = time(&mut enc, batch, false)?;
        let test = format!("b{batch}x{tokens}");
        m.speed.push(BenchRow::from_times(
            &seq_rows("edgebench", b.runtime),
            &test,
            batch as f64,
            &times,
        ));
        let ours = per_s(batch, &times);
        m.figures.push((
            format!("batch_{batch}_x_{tokens}_tokens"),
            ours,
            "sentences/s (p50, model only)".into(),
        ));
        m.figures.push((
            format!("batch_{batch}_end_to_end"),
            per_s(batch, &time(&mut enc, batch, true)?),
            "sentences/s (p50, with tokenisation)".into(),
        ));
        if let Some(base) = base.as_mut() {
            let times = time(base, batch, false)?;
            m.speed.push(BenchRow::from_times(
                &seq_rows("edgebench (unfused)", &b.other_options(Baseline::Unfused)),
                &test,
                batch as f64,
                &times,
            ));
            let theirs = per_s(batch, &times);
            m.figures.push((
                format!("batch_{batch}_x_{tokens}_tokens_unfused"),
                theirs,
                "sentences/s (p50, model only)".into(),
            ));
            m.figures.push((
                format!("batch_{batch}_speedup_vs_unfused"),
                ours / theirs,
                "ratio (fused over unfused, same run)".into(),
            ));
        }
    }
    for batch in [1usize, 32].into_iter().filter(|_| b.profile) {
        let texts = vec![sentence.clone(); batch];
        let passes = b.repeats.max(1);
        let times = enc.profile_embed(&texts, passes).map_err(failed)?;
        m.profiles
            .push((format!("batch of {batch} x {tokens} tokens"), passes, times));
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
