//! The model seam: one [`Model`] trait with declared [`Capabilities`], and the
//! loaders that turn a `--model` argument into a runnable model.

pub mod align;
pub mod bert;
pub mod checkpoint;
pub mod decoder;
pub mod gguf;
pub mod hf;
pub mod hub;
pub mod llama;
pub mod manifest;
pub mod mobilebert;
pub mod optimum;
pub mod profile;
pub mod tiny;
pub mod tokenizer;

use crate::options::RuntimeOptions;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

pub use manifest::ModelManifest;

/// Errors of model loading and execution.
#[derive(Debug, Error)]
pub enum ModelError {
    #[error("{path}: {message}")]
    BadModelDir { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("tract failed on {path}: {source:#}")]
    Tract {
        path: PathBuf,
        #[source]
        source: anyhow::Error,
    },
    #[error("{0}")]
    Runtime(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// [`ModelError::BadModelDir`] naming `path` (a file or folder of a model or checkpoint).
fn bad(path: &Path, m: impl Into<String>) -> ModelError {
    ModelError::BadModelDir {
        path: path.to_path_buf(),
        message: m.into(),
    }
}

/// [`ModelError::Io`] naming `path`, for `map_err`.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError {
    let path = path.to_path_buf();
    move |source| ModelError::Io { path, source }
}

/// What a model can be asked to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Loglikelihood of a continuation given a context.
    pub loglikelihood: bool,
    /// Greedy generation.
    pub generate: bool,
    /// Rolling loglikelihood of a whole text (perplexity).
    pub rolling: bool,
    /// Sentence embeddings.
    pub embed: bool,
}

impl Capabilities {
    /// Everything a causal decoder with a hidden-state output can do.
    pub fn all() -> Self {
        Capabilities {
            loglikelihood: true,
            generate: true,
            rolling: true,
            embed: true,
        }
    }
}

/// Result of scoring one continuation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogLikelihood {
    /// Sum of log-probabilities (natural log) of the continuation tokens.
    pub logprob: f64,
    /// Whether greedy decoding would have produced exactly this continuation.
    pub is_greedy: bool,
    /// Number of continuation tokens scored.
    pub tokens: usize,
}

/// Result of a greedy generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Generated text, cut before the first stop string.
    pub text: String,
    /// Number of generated tokens.
    pub tokens: usize,
    /// Prompt tokens actually fed to the model (after left truncation).
    pub prompt_tokens: usize,
}

/// Result of a rolling loglikelihood over a text.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rolling {
    /// Sum of natural-log probabilities of every token of the text.
    pub logprob: f64,
    /// Number of tokens scored.
    pub tokens: usize,
}

/// Identity of a loaded model, recorded in every run manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Human-readable name.
    pub name: String,
    /// Where it was loaded from.
    pub source: String,
    /// sha256 of the model graph file.
    pub sha256: String,
    /// Declared capabilities.
    pub capabilities: Capabilities,
    /// Maximum context in tokens.
    pub max_context: usize,
    /// How matrix products are lowered (e.g. `f32`).
    pub matmul: String,
    /// Parameter count, when known.
    pub parameters: Option<u64>,
    /// Where the weights came from (the manifest's provenance).
    #[serde(default)]
    pub provenance: String,
    /// How it was loaded and runs (`None` for outputs produced elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeOptions>,
}

/// One loglikelihood request: continuations scored after a context.
#[derive(Debug, Clone, Copy)]
pub struct LoglikelihoodRequest<'a> {
    pub context: &'a str,
    pub continuations: &'a [String],
}

/// A language model EdgeBench can evaluate.
pub trait Model {
    /// Identity and capabilities.
    fn info(&self) -> &ModelInfo;
    /// Scores each request's continuations after its context, as
    /// lm-evaluation-harness's `LM.loglikelihood` takes its whole list: a
    /// backend may reorder the requests (to share prefixes, to batch); the
    /// results come back in request order.
    fn loglikelihood_requests(
        &mut self,
        requests: &[LoglikelihoodRequest<'_>],
    ) -> Result<Vec<Vec<LogLikelihood>>, ModelError>;
    /// Scores each continuation after one context.
    fn loglikelihood(
        &mut self,
        context: &str,
        continuations: &[String],
    ) -> Result<Vec<LogLikelihood>, ModelError> {
        let mut out = self.loglikelihood_requests(&[LoglikelihoodRequest {
            context,
            continuations,
        }])?;
        Ok(out.pop().unwrap_or_default())
    }
    /// Greedy generation until a stop string or EOS, of at most
    /// `min(max_tokens, max_context - prompt tokens)` tokens: the prompt
    /// (left-truncated to leave room for `min(max_tokens, max_context / 2)`
    /// tokens) and the answer together never exceed the context window, which
    /// never slides, so every call ends however large `max_tokens` is.
    /// Encoders refuse to generate.
    fn generate(
        &mut self,
        prompt: &str,
        stop: &[String],
        max_tokens: usize,
    ) -> Result<Generation, ModelError>;
    /// Rolling loglikelihood of a whole text.
    fn rolling_loglikelihood(&mut self, text: &str) -> Result<Rolling, ModelError>;
    /// One L2-normalised embedding per text.
    fn embed(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError>;
    /// Token count of a text under this model's tokenizer.
    fn count_tokens(&self, text: &str) -> Result<usize, ModelError>;
    /// Per-token routing decisions of the forward passes since the last call
    /// (GEM graphs with a `route` output), one string of pathway ids per pass,
    /// passes that are a prefix of a later pass left out. Empty for other models.
    fn take_routes(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// Time spent in the model's forward passes since the last call; `None`
    /// when the model does not measure it.
    fn take_model_time(&mut self) -> Option<std::time::Duration> {
        None
    }
    /// One timed performance query on `prompt` cut to `prompt_tokens` tokens,
    /// generating `gen_tokens` (decoders) or embedding it (encoders).
    fn perf_query(
        &mut self,
        prompt: &str,
        prompt_tokens: usize,
        gen_tokens: usize,
    ) -> Result<QueryTiming, ModelError> {
        let _ = (prompt, prompt_tokens, gen_tokens);
        Err(ModelError::Runtime(format!(
            "{}: this model does not support performance queries",
            self.info().name
        )))
    }
}

/// Timing of one performance query, milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryTiming {
    /// Time to the first output (first token's logits; the embedding for encoders).
    pub ttft_ms: f64,
    /// Time of each later output token, measured from the previous one.
    pub token_gaps_ms: Vec<f64>,
    /// Prompt tokens fed.
    pub prompt_tokens: usize,
    /// `true`: graph execution only (tokenisation and sampling outside the
    /// clock); `false`: end to end.
    pub model_only: bool,
}

/// A graph file read and parsed by tract-onnx (with EdgeBench's ops), not yet optimised.
pub struct LoadedGraph {
    pub plan: std::sync::Arc<tract_onnx::prelude::TypedRunnableModel>,
    pub sha256: String,
    pub path: PathBuf,
    /// What the load-time rewrites replaced.
    pub rewrites: Rewrites,
    /// Runs the plan's passes (the model's thread pool and profiler).
    pub runner: Runner,
    /// How it was loaded and runs.
    pub options: RuntimeOptions,
}

/// Counts of what the load-time rewrites put in place (all zero when they
/// are off): see `docs/ops.md`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rewrites {
    /// Attention chains replaced by `EbAttention` ([`crate::ops::attention::fuse_graph`]).
    pub attention: usize,
    /// RoPE chains replaced by `EbRope` ([`crate::ops::rope::fuse_graph`]).
    pub rope: usize,
    /// Layer and RMS normalisations replaced by `EbNorm` ([`crate::ops::norm::fuse_graph`]).
    pub norm: usize,
    /// f32 `MatMul`s with constant weights run by `EbDense` ([`crate::ops::dense::fuse_graph`]).
    pub dense: usize,
}

impl Rewrites {
    /// Runs the rewrites `options` switch on over `graph`.
    pub fn apply(graph: &mut tract_onnx::pb::GraphProto, options: &RuntimeOptions) -> Self {
        let mut r = Rewrites::default();
        if options.fuse_attention {
            r.attention = crate::ops::attention::fuse_graph(graph);
            r.rope = crate::ops::rope::fuse_graph(graph);
            r.norm = crate::ops::norm::fuse_graph(graph);
        }
        if options.dense {
            r.dense = crate::ops::dense::fuse_graph(graph);
        }
        r
    }
}

impl LoadedGraph {
    /// Graph inputs and outputs.
    pub fn arity(&self) -> (usize, usize) {
        let m = self.plan.model();
        (m.inputs.len(), m.outputs.len())
    }

    /// What the load-time rewrites did, for the runtime line of a model.
    pub(crate) fn rewrites_note(&self) -> String {
        let r = self.rewrites;
        let mut attention = match r.attention {
            0 => "as written".to_string(),
            n => format!("{n} layers fused into EbAttention"),
        };
        for (n, what) in [
            (r.rope, "RoPE chains into EbRope"),
            (r.norm, "norms into EbNorm"),
        ] {
            if n > 0 {
                attention += &format!(", {n} {what}");
            }
        }
        match r.dense {
            0 => format!("attention: {attention}"),
            n => format!("attention: {attention}; {n} f32 MatMuls on EbDense"),
        }
    }

    /// Wraps a tract error with the graph's path.
    pub fn error(&self, source: anyhow::Error) -> ModelError {
        ModelError::Tract {
            path: self.path.clone(),
            source,
        }
    }
}

/// Reads `<dir>/<manifest.graph>`, hashes it, rewrites it as `options`
/// say, parses it (with EdgeBench's ops, which take their threads,
/// instructions and lowering from `options`), optimises it and makes it
/// runnable; errors name the file.
pub fn load_graph(
    dir: &Path,
    manifest: &ModelManifest,
    options: &RuntimeOptions,
) -> Result<LoadedGraph, ModelError> {
    use prost::Message;
    use sha2::{Digest, Sha256};
    let path = dir.join(&manifest.graph);
    let io = |source| ModelError::Io {
        path: path.clone(),
        source,
    };
    let file = std::fs::File::open(&path).map_err(io)?;
    // Mapped rather than read: reading copied the file twice (into our
    // buffer, then into tract's) before protobuf decoding copied it once
    // more, 1.6 GB of copies and page faults for SmolLM2 in f32.
    // SAFETY: the map is only read, and dropped before this returns; a
    // process truncating the file meanwhile could fault us, as it could
    // tract's own `proto_model_for_path`, which maps too.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    let tract = |source: anyhow::Error| ModelError::Tract {
        path: path.clone(),
        source,
    };
    let not_onnx = |e: anyhow::Error| {
        tract(e.context("not a loadable ONNX graph (corrupt or truncated file?)"))
    };
    // the hash reads the map on the other core while the graph decodes
    let (sha256, proto) = std::thread::scope(|s| {
        let hash = s.spawn(|| hex::encode(Sha256::digest(&map[..])));
        let proto = tract_onnx::pb::ModelProto::decode(&map[..]);
        (hash.join(), proto)
    });
    let sha256 = sha256.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    let proto = proto.map_err(|e| not_onnx(e.into()))?;
    drop(map);
    let (plan, rewrites) = plan_from_proto(proto, options).map_err(tract)?;
    let runner = Runner::new(options.threads)?;
    Ok(LoadedGraph {
        plan,
        sha256,
        path,
        rewrites,
        runner,
        options: *options,
    })
}

/// Rewrites a parsed graph as `options` say, writes them into EdgeBench's
/// nodes, and parses, optimises and plans it with EdgeBench's ops.
pub fn plan_from_proto(
    mut proto: tract_onnx::pb::ModelProto,
    options: &RuntimeOptions,
) -> anyhow::Result<(
    std::sync::Arc<tract_onnx::prelude::TypedRunnableModel>,
    Rewrites,
)> {
    use tract_onnx::prelude::*;
    let export = proto.graph.as_mut().is_some_and(optimum::prepare);
    let rewrites = match proto.graph.as_mut() {
        Some(g) => {
            let r = Rewrites::apply(g, options);
            options.annotate(g);
            r
        }
        None => Rewrites::default(),
    };
    let model = crate::ops::onnx().model_for_proto_model(&proto)?;
    drop(proto);
    bound_symbols(&model.symbols)?;
    let model = match export {
        true => optimum::optimize(model)?,
        false => model.into_optimized()?,
    };
    let plan = model.into_runnable()?;
    edgebench_kernels::release_freed_memory();
    Ok((plan, rewrites))
}

/// [`plan_from_proto`] of an ONNX file's bytes.
pub fn plan_from_bytes(
    onnx: &[u8],
    options: &RuntimeOptions,
) -> anyhow::Result<(
    std::sync::Arc<tract_onnx::prelude::TypedRunnableModel>,
    Rewrites,
)> {
    use prost::Message;
    plan_from_proto(tract_onnx::pb::ModelProto::decode(onnx)?, options)
}

/// [`load_graph`], with the model's tokenizer loaded on another thread
/// meanwhile (SmolLM2's takes 40-50 ms, a fifth of MiniLM's whole load).
/// A failed graph load is reported first.
pub(crate) fn load_graph_and_tokenizer(
    dir: &Path,
    manifest: &ModelManifest,
    options: &RuntimeOptions,
) -> Result<(LoadedGraph, Result<tokenizer::Tok, ModelError>), ModelError> {
    let (graph, tok) = std::thread::scope(|s| {
        let tok = s.spawn(|| tokenizer::Tok::load(&dir.join(&manifest.tokenizer)));
        let graph = load_graph(dir, manifest, options);
        let tok = tok
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (graph, tok)
    });
    Ok((graph?, tok))
}

/// Bounds of the symbolic dims EdgeBench's graphs (and optimum's exports) declare, as assertions
/// tract's optimiser can use (unknown names are left alone).
///
/// Without them tract cannot prove that a `[batch, seq, 1536]` tensor holds
/// more than a handful of elements, so it keeps every element-wise `Mul` and
/// `Add` on its generic path (one indirect call per element) instead of its
/// vectorised by-scalar and unicast kernels. Our runtimes never feed an empty
/// batch or sequence; `past` is empty on a first pass.
const SYMBOL_BOUNDS: [(&str, i64, i64); 8] = [
    ("batch", 1, 1 << 16),
    ("seq", 1, 1 << 20),
    ("rseq", 1, 1 << 20),
    ("past", 0, 1 << 20),
    ("total", 1, 1 << 20),
    ("batch_size", 1, 1 << 16),
    ("sequence_length", 1, 1 << 20),
    ("past_sequence_length", 0, 1 << 20),
];

fn bound_symbols(scope: &tract_onnx::prelude::SymbolScope) -> anyhow::Result<()> {
    for (name, lo, hi) in SYMBOL_BOUNDS {
        if scope.get(name).is_some() {
            scope.add_assertion(format!("{name}>={lo}"))?;
            scope.add_assertion(format!("{name}<={hi}"))?;
        }
    }
    Ok(())
}

/// Runs a model's graph passes: on the calling thread for one thread, else
/// on a rayon pool of the model's own, which tract's ops (through a scoped
/// executor) and EdgeBench's kernels share, so they never compete with a
/// second set of spinning workers. Holds the model's [`profile::Profiler`].
#[derive(Debug)]
pub struct Runner {
    threads: usize,
    pool: Option<std::sync::Arc<rayon::ThreadPool>>,
    profiler: profile::Profiler,
    /// Nanoseconds spent in passes since [`Runner::take_busy`] last read it.
    busy_ns: std::sync::atomic::AtomicU64,
}

impl Runner {
    /// A runner for `threads` threads (its pool is started here).
    pub fn new(threads: usize) -> Result<Self, ModelError> {
        let threads = threads.max(1);
        let pool = if threads > 1 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("edgebench-{i}"))
                .build()
                .map_err(|e| ModelError::Runtime(format!("cannot start {threads} threads: {e}")))?;
            Some(std::sync::Arc::new(pool))
        } else {
            None
        };
        Ok(Runner {
            threads,
            pool,
            profiler: profile::Profiler::default(),
            busy_ns: Default::default(),
        })
    }

    /// Threads of its passes.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The per-node timer of its passes.
    pub fn profiler(&self) -> &profile::Profiler {
        &self.profiler
    }

    /// Time spent in passes since the last call (the model's share of a
    /// request; the rest is the harness's).
    pub fn take_busy(&self) -> std::time::Duration {
        let ns = self.busy_ns.swap(0, std::sync::atomic::Ordering::Relaxed);
        std::time::Duration::from_nanos(ns)
    }

    /// Runs one pass of `plan` (timed node by node while profiling).
    ///
    /// With several threads the pass runs on a worker of the model's pool,
    /// so the kernels' splits are work-stealing joins on a warm pool instead
    /// of one cross-thread hand-off per matrix product.
    pub fn run(
        &self,
        plan: &std::sync::Arc<tract_onnx::prelude::TypedRunnableModel>,
        inputs: tract_onnx::prelude::TVec<tract_onnx::prelude::TValue>,
    ) -> tract_onnx::prelude::TractResult<tract_onnx::prelude::TVec<tract_onnx::prelude::TValue>>
    {
        let start = std::time::Instant::now();
        let out = self.pass(plan, inputs);
        let ns = start.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        self.busy_ns
            .fetch_add(ns, std::sync::atomic::Ordering::Relaxed);
        out
    }

    fn pass(
        &self,
        plan: &std::sync::Arc<tract_onnx::prelude::TypedRunnableModel>,
        inputs: tract_onnx::prelude::TVec<tract_onnx::prelude::TValue>,
    ) -> tract_onnx::prelude::TractResult<tract_onnx::prelude::TVec<tract_onnx::prelude::TValue>>
    {
        use tract_onnx::prelude::tract_linalg::multithread::{multithread_tract_scope, Executor};
        let Some(pool) = &self.pool else {
            return self.profiler.run(plan, inputs);
        };
        let executor = Executor::MultiThread(pool.clone());
        pool.install(|| {
            multithread_tract_scope(executor, || match self.threads {
                // The other worker waits for the pass's splits in a loop
                // instead of going to sleep between them (onnxruntime's pool
                // spins too): a sleeping worker is woken through the kernel,
                // and a pass has hundreds of splits with single-threaded ops
                // in between.
                2 => {
                    let done = std::sync::atomic::AtomicBool::new(false);
                    let done = &done;
                    rayon::scope(move |s| {
                        let pass_thread = rayon::current_thread_index();
                        s.spawn(move |_| spin_for_work(done, pass_thread));
                        // ends the spin even if the pass panics (the scope waits for it)
                        struct Done<'a>(&'a std::sync::atomic::AtomicBool);
                        impl Drop for Done<'_> {
                            fn drop(&mut self) {
                                self.0.store(true, std::sync::atomic::Ordering::Release);
                            }
                        }
                        let _done = Done(done);
                        self.profiler.run(plan, inputs)
                    })
                }
                _ => self.profiler.run(plan, inputs),
            })
        })
    }
}

/// Runs the pool's pending jobs until `done`, spinning between them.
///
/// Only with two threads, and never on the pass's own thread: there it
/// would sit above the pass on the stack and wait for it forever. With two
/// threads the other worker can only pick this job up when it is idle
/// (nothing of the pass below it), so nothing it runs waits on it.
fn spin_for_work(done: &std::sync::atomic::AtomicBool, pass_thread: Option<usize>) {
    if rayon::current_thread_index() == pass_thread {
        return;
    }
    while !done.load(std::sync::atomic::Ordering::Acquire) {
        if rayon::yield_now() != Some(rayon::Yield::Executed) {
            std::hint::spin_loop();
        }
    }
}

/// Writes a model directory through a temporary sibling folder that is
/// renamed into place, so an interrupted write never leaves a half-written
/// model behind (an existing `dir` is replaced whole).
pub fn write_dir_atomically(
    dir: &Path,
    write: impl FnOnce(&Path) -> Result<(), ModelError>,
) -> Result<(), ModelError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Io { path, source }
    };
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    // replace a model directory (complete or cut short), never anything else
    const MODEL_FILES: [&str; 4] = [
        manifest::MANIFEST_FILE,
        "model.onnx",
        "tokenizer.json",
        "gem.toml",
    ];
    if dir.is_dir() {
        let foreign = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| !MODEL_FILES.contains(&n.as_str()));
        if let Some(f) = foreign {
            return Err(ModelError::BadModelDir {
                path: dir.to_path_buf(),
                message: format!(
                    "holds `{f}`, which is not part of a model directory: not replaced; choose an empty or new folder"
                ),
            });
        }
    }
    let tmp = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir(&tmp).map_err(io(&tmp))?;
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dir.exists() {
        let old = parent.join(format!(".{name}.{}.old", std::process::id()));
        std::fs::rename(dir, &old).map_err(io(dir))?;
        let _ = std::fs::remove_dir_all(&old);
    }
    match std::fs::rename(&tmp, dir) {
        Ok(()) => Ok(()),
        // another process published the same model first: keep theirs
        Err(_) if dir.join(manifest::MANIFEST_FILE).is_file() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => Err(io(dir)(e)),
    }
}

/// Resolves a `--model` argument: `builtin:tiny` (or `tiny`), `builtin:gem-tiny`, `hf:<repo>[@rev]`,
/// a model directory, or an ONNX export by Hugging Face optimum (its folder or its `.onnx` file,
/// see [`optimum`]).
///
/// `cache` is where built-in models are materialised; `options` say how
/// the model is loaded and run.
pub fn load(
    spec: &str,
    cache: &Path,
    options: &RuntimeOptions,
) -> Result<Box<dyn Model>, ModelError> {
    let (dir, manifest) = optimum::open(&resolve(spec, cache)?)?;
    match manifest.architecture.as_str() {
        "decoder" => Ok(Box::new(decoder::TractDecoder::load(
            &dir, &manifest, spec, options,
        )?)),
        "encoder" => Ok(Box::new(bert::TractEncoder::load(
            &dir, &manifest, spec, options,
        )?)),
        other => Err(ModelError::BadModelDir {
            path: dir.join(manifest::MANIFEST_FILE),
            message: format!(
                "unknown architecture `{other}`; expected `decoder` or `encoder` (re-import the model with `edgebench import`)"
            ),
        }),
    }
}

/// The graph file a `--model` argument resolves to (after [`load`] materialised it).
pub fn graph_path(spec: &str, cache: &Path) -> Option<PathBuf> {
    let (dir, manifest) = optimum::open(&resolve(spec, cache).ok()?).ok()?;
    Some(dir.join(manifest.graph))
}

/// Runs `f` (which writes the directory `dir` when it is stale) holding an
/// exclusive lock beside `dir`, so processes sharing a cache (shards of a
/// run on one volume) never read a directory another is replacing.
fn exclusively<T>(dir: &Path, f: impl FnOnce() -> Result<T, ModelError>) -> Result<T, ModelError> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = parent.join(format!(".{name}.lock"));
    let io = |source| ModelError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(parent).map_err(io)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    lock.lock().map_err(io)?;
    f()
}

/// The model path of a `--model` argument (a directory, or an `.onnx` file), materialising
/// built-in models; [`optimum::open`] finds its manifest.
pub fn resolve(spec: &str, cache: &Path) -> Result<PathBuf, ModelError> {
    Ok(match spec {
        "builtin:tiny" | "tiny" | "builtin" => {
            let dir = cache.join("tiny");
            exclusively(&dir, || tiny::materialize(&dir))?
        }
        "builtin:gem-tiny" | "gem-tiny" => {
            let dir = cache.join("gem-tiny");
            exclusively(&dir, || {
                crate::gem::materialize_seeded(
                    &crate::gem::tiny_config(),
                    crate::gem::Variant::Full,
                    &dir,
                )
            })?;
            dir
        }
        hf if hf.starts_with("hf:") => hub::resolve(hf, None, cache)?,
        other => PathBuf::from(other),
    })
}
