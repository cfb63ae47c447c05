//! `edgebench import gguf|hf|bert|mobilebert` and `edgebench perplexity`.

use super::{bad_input, failed, Failure};
use clap::{Args, Subcommand};
use edgebench::model::{self, hf, llama, manifest};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub format: ImportFormat,
}

#[derive(Debug, Subcommand)]
pub enum ImportFormat {
    /// Import a `llama` or `qwen2` GGUF file (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K tensors).
    Gguf {
        /// The .gguf file.
        file: PathBuf,
        /// Output model directory.
        #[arg(long)]
        out: PathBuf,
        /// Write f32 weights instead of keeping quantized tensors quantized.
        #[arg(long)]
        dequantize: bool,
        /// Context window of the imported model (RoPE tables are built for it), at most the file's own.
        #[arg(long, default_value_t = manifest::DEFAULT_CONTEXT, value_parser = super::bounded(manifest::CONTEXT))]
        ctx: usize,
    },
    /// Import a Hugging Face checkpoint folder (config.json, safetensors, tokenizer.json):
    /// LlamaForCausalLM, Qwen2ForCausalLM or BertModel.
    Hf {
        /// The checkpoint folder, or `hf:<owner/name>[@revision]` (through hf-hub; HF_HUB_OFFLINE=1: the local cache only).
        dir: String,
        /// Output model directory.
        #[arg(long)]
        out: PathBuf,
        /// Block-quantize a decoder's matrices at import: q4_0, q4_k or q8_0 (default: f32).
        #[arg(long, value_parser = parse_quantize)]
        quantize: Option<hf::Quantize>,
        /// Context window of an imported decoder (RoPE tables are built for it), at most the config's own.
        #[arg(long, default_value_t = manifest::DEFAULT_CONTEXT, value_parser = super::bounded(manifest::CONTEXT))]
        ctx: usize,
    },
    /// Import a BERT checkpoint directory (config.json, model.safetensors, tokenizer.json) as a sentence encoder.
    Bert {
        /// The checkpoint directory.
        dir: PathBuf,
        /// Output model directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Import a MobileBERT checkpoint directory (config.json, model.safetensors, tokenizer.json) as a sentence encoder.
    Mobilebert {
        /// The checkpoint directory.
        dir: PathBuf,
        /// Output model directory.
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_quantize(s: &str) -> Result<hf::Quantize, String> {
    hf::Quantize::parse(s).ok_or_else(|| {
        let all: Vec<&str> = hf::Quantize::ALL.iter().map(|q| q.name()).collect();
        format!("`{s}` is not one of {}", all.join(", "))
    })
}

pub fn import(a: ImportArgs) -> Result<(), Failure> {
    match a.format {
        ImportFormat::Gguf {
            file,
            out,
            dequantize,
            ctx,
        } => {
            let t = std::time::Instant::now();
            let m = llama::import_gguf(&file, &out, ctx, dequantize).map_err(bad_input)?;
            println!(
                "imported {} ({} parameters, vocab {}, context {}) into {} in {:.1}s",
                m.name,
                m.parameters.unwrap_or(0),
                m.vocab_size,
                m.max_context,
                out.display(),
                t.elapsed().as_secs_f64()
            );
            Ok(())
        }
        ImportFormat::Hf {
            dir,
            out,
            quantize,
            ctx,
        } => {
            let t = std::time::Instant::now();
            let opts = hf::HfOptions {
                max_context: ctx,
                quantize,
            };
            let dir = match dir.strip_prefix("hf:") {
                Some(_) => model::hub::checkpoint_dir(&dir, None).map_err(bad_input)?,
                None => PathBuf::from(dir),
            };
            let m = hf::import_hf(&dir, &out, opts).map_err(bad_input)?;
            println!(
                "imported {} ({} parameters, vocab {}, context {}, {}) into {} in {:.1}s",
                m.name,
                m.parameters.unwrap_or(0),
                m.vocab_size,
                m.max_context,
                m.matmul,
                out.display(),
                t.elapsed().as_secs_f64()
            );
            Ok(())
        }
        ImportFormat::Bert { dir, out } => {
            let m = model::bert::import_bert(&dir, &out).map_err(bad_input)?;
            println!(
                "imported {} ({} parameters) into {}",
                m.name,
                m.parameters.unwrap_or(0),
                out.display()
            );
            Ok(())
        }
        ImportFormat::Mobilebert { dir, out } => {
            let m = model::mobilebert::import_mobilebert(&dir, &out).map_err(bad_input)?;
            println!(
                "imported {} ({} parameters) into {}",
                m.name,
                m.parameters.unwrap_or(0),
                out.display()
            );
            Ok(())
        }
    }
}

#[derive(Debug, Args)]
pub struct PerplexityArgs {
    /// Model directory (or an optimum ONNX export: its folder or its .onnx file).
    #[arg(long)]
    pub model: PathBuf,
    /// Text file.
    #[arg(long)]
    pub text: PathBuf,
    /// Chunk length in tokens (llama-perplexity's -c), at most the model's context.
    #[arg(long, default_value_t = 512, value_parser = super::bounded(manifest::CONTEXT))]
    pub ctx: usize,
    /// Score each chunk's second half by decoding one token per step on the
    /// KV cache (after a prefill of the first half), and print the one-pass
    /// perplexity and the largest logit difference beside it.
    #[arg(long)]
    pub cached: bool,
    /// Score only the first N chunks.
    #[arg(long, value_parser = super::bounded(1..=1_000_000))]
    pub chunks: Option<usize>,
}

pub fn perplexity(
    a: PerplexityArgs,
    runtime: &edgebench::runtime::RuntimeOptions,
) -> Result<(), Failure> {
    let (dir, manifest) = model::optimum::open(&a.model).map_err(bad_input)?;
    let source = a.model.display().to_string();
    let dec =
        model::decoder::TractDecoder::load(&dir, &manifest, &source, runtime).map_err(bad_input)?;
    let text = std::fs::read_to_string(&a.text)
        .map_err(|e| bad_input(anyhow::anyhow!("{}: {e}", a.text.display())))?;
    let p = dec
        .perplexity_chunks(&text, a.ctx, a.chunks, a.cached)
        .map_err(failed)?;
    println!(
        "perplexity {:.4} over {} scored tokens (chunks of {}, second half scored, llama-perplexity convention)",
        p.perplexity, p.tokens, a.ctx
    );
    if let Some(d) = p.max_logit_difference {
        println!(
            "scored by cached decoding (one token per step); one pass: perplexity {:.4}; largest |logit difference| {d:.4}",
            p.one_pass
        );
    }
    Ok(())
}
