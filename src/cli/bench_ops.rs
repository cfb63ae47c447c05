//! `edgebench bench ops`: EdgeBench's custom ops timed in tract on this machine.
//! SCAR (with and without sinks and a local window) against dense causal
//! attention as tract's unfused graph and as EdgeBench's fused
//! `EbAttention`; a linear layer in f32 on
//! tract's `MatMul` (the baseline) and on `EbDense`, and on `EbQuantLinear`
//! at 4, 5, 6 and 8 bits. Each graph is optimised by tract, run
//! once to warm up, then timed; the median is printed. Ratios compare figures
//! measured in the same run.

use super::{failed, Failure};
use edgebench::model::{ModelError, Runner};
use edgebench::ops::graphs::{self, AttnShape};
use edgebench::ops::scar::{self, ScarParams};
use edgebench::runtime::RuntimeOptions;
use rand::{Rng, SeedableRng};
use std::time::Instant;
use tract_onnx::prelude::*;

/// Sizes of one bench run.
struct Plan {
    heads: usize,
    head_dim: usize,
    ns: Vec<usize>,
    ks: Vec<usize>,
    /// SCAR's (sinks, window) settings.
    local: Vec<(usize, usize)>,
    /// Linear layer `[out, in]`.
    layer: (usize, usize),
    batches: Vec<usize>,
    /// Minimum timed repeats of each graph.
    repeats: usize,
    /// Keep repeating until this much time was spent on one graph (seconds).
    min_seconds: f64,
    /// How the graphs are loaded (each bench sets its rewrites and lowering).
    options: RuntimeOptions,
    /// Runs every pass (the threads of `options`).
    runner: Runner,
}

impl Plan {
    fn new(quick: bool, repeats: usize, options: &RuntimeOptions) -> Result<Plan, ModelError> {
        let (options, runner) = (*options, Runner::new(options.threads)?);
        Ok(if quick {
            Plan {
                heads: 2,
                head_dim: 16,
                ns: vec![32, 64],
                ks: vec![1, 16],
                local: vec![(0, 0), (4, 16)],
                layer: (256, 64),
                batches: vec![1, 4],
                repeats: repeats.clamp(1, 3),
                min_seconds: 0.0,
                options,
                runner,
            }
        } else {
            Plan {
                heads: 8,
                head_dim: 64,
                ns: vec![512, 2048],
                ks: vec![1, 8, 16],
                local: vec![(0, 0), (4, 0), (0, 64), (4, 64), (4, 256)],
                layer: (2048, 512),
                batches: vec![1, 32, 128],
                repeats: repeats.max(1),
                min_seconds: 0.5,
                options,
                runner,
            }
        })
    }

    /// The graphs as written: no load-time rewrites.
    fn as_written(&self) -> RuntimeOptions {
        RuntimeOptions {
            fuse_attention: false,
            dense: false,
            ..self.options
        }
    }

    /// Runs one pass of `plan` on `inputs`.
    fn run(&self, plan: &Arc<TypedRunnableModel>, inputs: &[Tensor]) -> TractResult<TVec<TValue>> {
        self.runner.run(
            plan,
            inputs.iter().map(|t| t.clone().into_tvalue()).collect(),
        )
    }
}

/// One output line: metric, value, unit.
type Row = (String, f64, String);

fn random(rng: &mut rand_chacha::ChaCha8Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Loads `onnx` with EdgeBench's ops as model loading does (the rewrites
/// and lowering `options` ask for), optimised and runnable.
fn load(onnx: &[u8], options: &RuntimeOptions) -> TractResult<Arc<TypedRunnableModel>> {
    Ok(edgebench::model::plan_from_bytes(onnx, options)?.0)
}

/// A measured call.
type Job<'a> = Box<dyn FnMut() -> TractResult<()> + 'a>;

/// Median seconds of each job, with warm caches. The jobs run in rounds so
/// that drift in the host's speed affects all of them alike; in a round each
/// job is called once untimed (its weights and buffers back in cache after
/// the other jobs ran) and once timed. Rounds go on until `p.repeats` of
/// them and `p.min_seconds` of timed calls per job have passed.
fn time_all(p: &Plan, jobs: &mut [Job]) -> TractResult<Vec<f64>> {
    let mut times = vec![Vec::new(); jobs.len()];
    let budget = 2.0 * p.min_seconds * jobs.len() as f64;
    let start = Instant::now();
    while times[0].len() < p.repeats
        || (start.elapsed().as_secs_f64() < budget && times[0].len() < 10_000)
    {
        for (j, t) in jobs.iter_mut().zip(&mut times) {
            j()?;
            let s = Instant::now();
            j()?;
            t.push(s.elapsed().as_secs_f64());
        }
    }
    Ok(times
        .iter()
        .map(|t| edgebench::util::stats::median(t).unwrap_or(f64::NAN))
        .collect())
}

fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Sum over causal queries of the keys SCAR lets each see (one group):
/// same cluster, one of the first `sinks` tokens, or within `window`.
fn visible_pairs(clusters: &[i64], sinks: usize, window: usize) -> u64 {
    let mut before = std::collections::HashMap::<i64, u64>::new();
    let mut total = 0;
    for (i, &c) in clusters.iter().enumerate() {
        let same = before.entry(c).or_default();
        *same += 1;
        total += *same;
        let others = |j: &usize| clusters[*j] != c;
        let lo = (i + 1).saturating_sub(window).max(sinks.min(i + 1));
        total += (0..sinks.min(i + 1)).filter(others).count() as u64;
        total += (lo..=i).filter(others).count() as u64;
    }
    total
}

/// SCAR vs dense table rows (Markdown) and metric rows.
fn attention(p: &Plan, rows: &mut Vec<Row>) -> TractResult<Vec<String>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    let mut table = vec![
        "| n | k | sinks, window | SCAR ms (incl. k-means) | of which k-means ms | tract dense ms | EbAttention ms | vs tract dense | vs EbAttention | visible pairs SCAR / causal |".to_string(),
        "|---|---|---|---|---|---|---|---|---|---|".to_string(),
    ];
    for &n in &p.ns {
        let s = AttnShape {
            heads: p.heads,
            n,
            head_dim: p.head_dim,
        };
        let qkv_len = p.heads * n * p.head_dim;
        let shape = [1, p.heads, n, p.head_dim];
        let qkv: Vec<Tensor> = (0..3)
            .map(|_| Tensor::from_shape(&shape, &random(&mut rng, qkv_len)))
            .collect::<TractResult<_>>()?;
        let x = random(&mut rng, n * s.model_dim());
        let dense = load(&graphs::dense_attention(s), &p.as_written())?;
        let fused = load(&graphs::fused_attention(s), &p.as_written())?;
        let params: Vec<ScarParams> =
            p.ks.iter()
                .flat_map(|&k| {
                    p.local.iter().map(move |&(sinks, window)| ScarParams {
                        k,
                        sinks,
                        window,
                        ..ScarParams::default()
                    })
                })
                .collect();
        let scar_plans: Vec<_> = params
            .iter()
            .map(|sp| load(&graphs::scar_attention(s, sp), &p.as_written()))
            .collect::<TractResult<_>>()?;
        let mut scar_inputs = vec![Tensor::from_shape(&[1, n, s.model_dim()], &x)?];
        scar_inputs.extend(qkv.iter().cloned());
        // both dense baselines, then SCAR at each setting, then k-means
        // alone at each k, timed in rounds
        let mut jobs: Vec<Job> = vec![
            Box::new(|| p.run(&dense, &qkv).map(drop)),
            Box::new(|| p.run(&fused, &qkv).map(drop)),
        ];
        for plan in &scar_plans {
            let inputs = &scar_inputs;
            jobs.push(Box::new(move || p.run(plan, inputs).map(drop)));
        }
        for &k in &p.ks {
            let x = &x;
            let dim = s.model_dim();
            let iterations = ScarParams::default().iterations;
            jobs.push(Box::new(move || {
                std::hint::black_box(scar::kmeans_cosine(x, n, dim, k, iterations));
                Ok(())
            }));
        }
        let times = time_all(p, &mut jobs)?;
        drop(jobs);
        let (dense_s, fused_s) = (times[0], times[1]);
        rows.push((
            format!("dense_n{n}_ms"),
            dense_s * 1e3,
            "ms (median)".into(),
        ));
        rows.push((
            format!("ebattention_n{n}_ms"),
            fused_s * 1e3,
            "ms (median)".into(),
        ));
        let causal_pairs = (n * (n + 1) / 2) as u64;
        for (i, (sp, plan)) in params.iter().zip(&scar_plans).enumerate() {
            let (k, sinks, window) = (sp.k, sp.sinks, sp.window);
            let ki = p.ks.iter().position(|&x| x == k).unwrap_or(0);
            let (scar_s, kmeans_s) = (times[2 + i], times[2 + params.len() + ki]);
            let out = p.run(plan, &scar_inputs)?;
            let clusters: Vec<i64> = out[1]
                .to_plain_array_view::<i64>()?
                .iter()
                .copied()
                .collect();
            let pairs = visible_pairs(&clusters, sinks, window);
            table.push(format!(
                "| {n} | {k} | {sinks}, {window} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2}x | {:.2}x | {:.3} |",
                scar_s * 1e3,
                kmeans_s * 1e3,
                dense_s * 1e3,
                fused_s * 1e3,
                dense_s / scar_s,
                fused_s / scar_s,
                pairs as f64 / causal_pairs as f64,
            ));
            let m = |what: &str| {
                if sinks == 0 && window == 0 {
                    format!("scar_n{n}_k{k}_{what}")
                } else {
                    format!("scar_n{n}_k{k}_s{sinks}_w{window}_{what}")
                }
            };
            rows.push((
                m("ms"),
                scar_s * 1e3,
                "ms (median, k-means included)".into(),
            ));
            rows.push((m("kmeans_ms"), kmeans_s * 1e3, "ms (median)".into()));
            rows.push((
                m("speedup"),
                dense_s / scar_s,
                "tract dense ms / SCAR ms".into(),
            ));
            rows.push((
                m("speedup_vs_ebattention"),
                fused_s / scar_s,
                "EbAttention ms / SCAR ms".into(),
            ));
            rows.push((
                m("pair_reduction"),
                causal_pairs as f64 / pairs as f64,
                "causal pairs n(n+1)/2 / pairs SCAR lets queries see".into(),
            ));
            rows.push((
                m("paper_ops_reduction"),
                (n * n) as f64 / graphs::paper_scar_ops(n, k) as f64,
                "n^2 / (k n + n), the paper's claim".into(),
            ));
        }
    }
    Ok(table)
}

/// Quantized linear vs f32 table rows (Markdown) and metric rows.
fn quant(p: &Plan, rows: &mut Vec<Row>) -> TractResult<Vec<String>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let (out, inp) = p.layer;
    let a = (3.0 / inp as f32).sqrt();
    let w: Vec<f32> = random(&mut rng, out * inp).iter().map(|v| v * a).collect();
    let mut table = vec![
        format!("Linear layer {inp} -> {out} (weight [{out}, {inp}], symmetric blocks of 32):"),
        String::new(),
        "| batch | weights | ms | time vs f32 | weight bytes | bytes vs f32 |".to_string(),
        "|---|---|---|---|---|---|".to_string(),
    ];
    for &batch in &p.batches {
        let x = Tensor::from_shape(&[batch, inp], &random(&mut rng, batch * inp))?;
        use edgebench::ops::quant::Lowering;
        // f32 on tract's MatMul (the baseline) and on EbDense; each width on
        // EdgeBench's kernels, and 8/4 bits on tract's own lowering
        let formats = [
            (None, Lowering::Tract),
            (None, Lowering::Kernel),
            (Some(8), Lowering::Kernel),
            (Some(6), Lowering::Kernel),
            (Some(5), Lowering::Kernel),
            (Some(4), Lowering::Kernel),
            (Some(8), Lowering::Tract),
            (Some(4), Lowering::Tract),
        ];
        let graphs: Vec<graphs::LinearGraph> = formats
            .iter()
            .map(|&(bits, _)| graphs::linear(&w, out, inp, batch, bits, 32))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!(e))?;
        let plans: Vec<_> = graphs
            .iter()
            .zip(&formats)
            .map(|(g, &(bits, lowering))| {
                // f32 on EbDense where the kernel is asked for, else as written
                let options = RuntimeOptions {
                    lowering,
                    dense: bits.is_none() && lowering == Lowering::Kernel,
                    ..p.as_written()
                };
                load(&g.onnx, &options)
            })
            .collect::<TractResult<_>>()?;
        let mut jobs: Vec<Job> = plans
            .iter()
            .map(|plan| {
                let x = &x;
                Box::new(move || p.run(plan, std::slice::from_ref(x)).map(drop)) as Job
            })
            .collect();
        let times = time_all(p, &mut jobs)?;
        drop(jobs);
        let (t0, b0) = (times[0], graphs[0].weight_bytes);
        for ((&(bits, lowering), g), secs) in formats.iter().zip(&graphs).zip(times) {
            let name = match (bits, lowering) {
                (None, Lowering::Kernel) => "f32-dense".to_string(),
                (None, _) => "f32".to_string(),
                (Some(b), Lowering::Kernel) => format!("{b}-bit"),
                (Some(b), _) => format!("{b}-bit-tract"),
            };
            let lowering = match (bits, lowering) {
                (None, Lowering::Kernel) => " (EbDense, EdgeBench kernel)",
                (None, _) => " (tract's MatMul)",
                (Some(_), Lowering::Kernel) => " (EdgeBench kernel)",
                (Some(4), _) => " (tract's Q4_0 block-quant matmul)",
                (Some(_), _) => " (tract: f32 after load)",
            };
            table.push(format!(
                "| {batch} | {name}{lowering} | {:.3} | {:.2}x | {} | {:.3}x |",
                secs * 1e3,
                secs / t0,
                thousands(g.weight_bytes as u64),
                g.weight_bytes as f64 / b0 as f64,
            ));
            let m = |what: &str| format!("linear_{name}_batch{batch}_{what}");
            rows.push((m("ms"), secs * 1e3, "ms (median)".into()));
            rows.push((m("time_vs_f32"), secs / t0, "ratio".into()));
            rows.push((
                m("weight_bytes"),
                g.weight_bytes as f64,
                "bytes as stored".into(),
            ));
            rows.push((
                m("bytes_vs_f32"),
                g.weight_bytes as f64 / b0 as f64,
                "ratio".into(),
            ));
        }
    }
    Ok(table)
}

/// Runs the benchmark and prints a Markdown report or JSON lines.
pub fn bench_ops(
    quick: bool,
    repeats: usize,
    json: bool,
    options: &RuntimeOptions,
) -> Result<(), Failure> {
    let p = Plan::new(quick, repeats, options).map_err(failed)?;
    let mut rows: Vec<Row> = Vec::new();
    let attn = attention(&p, &mut rows).map_err(failed)?;
    let lin = quant(&p, &mut rows).map_err(failed)?;
    let threads = p.options.threads;
    rows.push(("threads".into(), threads as f64, "matmul threads".into()));
    if json {
        for (m, v, u) in &rows {
            println!(
                "{}",
                serde_json::json!({"metric": m, "value": v, "unit": u})
            );
        }
        return Ok(());
    }
    println!(
        "# bench ops{} ({threads} matmul thread(s); tract, optimised graphs; median of at least {} interleaved rounds, each timed call right after an untimed warm-up call)\n",
        if quick { " --quick" } else { "" },
        p.repeats
    );
    println!(
        "## SCAR vs dense causal attention ({} heads x {}, random inputs, one group; SCAR clusters X [n, {}] with k-means of {} iterations, k-means time included in SCAR's)\n",
        p.heads,
        p.head_dim,
        p.heads * p.head_dim,
        ScarParams::default().iterations
    );
    for l in attn {
        println!("{l}");
    }
    println!(
        "\nDense baselines, same run: tract's graph MatMul(Q, K^T) * scale + constant causal mask, \
         Softmax, MatMul(., V); EbAttention, EdgeBench's fused kernel, with the same mask. \
         Ratios are dense ms / SCAR ms. Visible pairs: keys SCAR lets the queries see \
         (same cluster, sink or window, causal) over the n(n+1)/2 of causal attention; \
         SCAR computes causal clusters in tiles of 64 query rows, masked within the tile.\n"
    );
    println!("## Linear layers: f32 on tract and on EbDense, quantized on EbQuantLinear\n");
    for l in lin {
        println!("{l}");
    }
    println!(
        "\nWeight bytes are as stored in the graph (codes + f32 scales). In memory, EdgeBench's \
         kernel keeps 4-bit codes at 4 bits and other widths at one byte per weight; tract's \
         lowering keeps 4-bit blocks at 4 bits and dequantizes 6- and 8-bit weights to f32 at load."
    );
    Ok(())
}
