//! A causal decoder (`architecture = "decoder"`) executed by tract.
//!
//! The graph takes `input_ids` `[1, seq]` (i64) and returns `logits`
//! `[1, seq, vocab]` and, optionally, `hidden_states` `[1, seq, d]` as its
//! second output (mean-pooled for embeddings).

use super::manifest::ModelManifest;
use super::tokenizer::Tok;
use super::{Generation, LogLikelihood, Model, ModelError, ModelInfo, Rolling};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;

/// A decoder graph loaded, optimised and made runnable by tract.
pub struct TractDecoder {
    plan: Arc<TypedRunnableModel>,
    tok: Tok,
    info: ModelInfo,
    manifest: ModelManifest,
    graph_path: PathBuf,
    has_hidden: bool,
}

/// Outputs of one forward pass.
struct Forward {
    logits: Vec<f32>,
    hidden: Option<(Vec<f32>, usize)>,
    seq: usize,
}

impl TractDecoder {
    /// Loads `<dir>/model.onnx` and `<dir>/tokenizer.json` as described by the manifest.
    pub fn load(dir: &Path, manifest: &ModelManifest, source: &str) -> Result<Self, ModelError> {
        let graph_path = dir.join(&manifest.graph);
        let bytes = std::fs::read(&graph_path).map_err(|source| ModelError::Io {
            path: graph_path.clone(),
            source,
        })?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let tract_err = |source: anyhow::Error| ModelError::Tract {
            path: graph_path.clone(),
            source,
        };
        let model = tract_onnx::onnx()
            .model_for_read(&mut bytes.as_slice())
            .map_err(|e| {
                tract_err(e.context("not a loadable ONNX graph (corrupt or truncated file?)"))
            })?;
        let n_outputs = model.outputs.len();
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(tract_err)?;
        let tok = Tok::load(&dir.join(&manifest.tokenizer))?;
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
        let info = ModelInfo {
            name: manifest.name.clone(),
            source: source.to_string(),
            sha256,
            capabilities: super::Capabilities {
                embed: manifest.capabilities.embed && n_outputs > 1,
                ..manifest.capabilities
            },
            max_context: manifest.max_context,
            matmul: manifest.matmul.clone(),
            parameters: manifest.parameters,
        };
        Ok(TractDecoder {
            plan,
            tok,
            info,
            manifest: manifest.clone(),
            graph_path,
            has_hidden: n_outputs > 1,
        })
    }

    fn forward(&self, ids: &[u32]) -> Result<Forward, ModelError> {
        let seq = ids.len();
        let data: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let err = |e: anyhow::Error| ModelError::Tract {
            path: self.graph_path.clone(),
            source: e,
        };
        let input = Tensor::from_shape(&[1, seq], &data).map_err(err)?;
        let out = self.plan.run(tvec!(input.into_tvalue())).map_err(err)?;
        let logits = out[0]
            .to_plain_array_view::<f32>()
            .map_err(err)?
            .iter()
            .copied()
            .collect::<Vec<f32>>();
        let vocab = self.manifest.vocab_size;
        if logits.len() != seq * vocab {
            return Err(ModelError::Runtime(format!(
                "{}: logits have {} values, expected seq {seq} x vocab {vocab}",
                self.graph_path.display(),
                logits.len()
            )));
        }
        let hidden = if self.has_hidden {
            let h = out[1].to_plain_array_view::<f32>().map_err(err)?;
            let d = *h.shape().last().unwrap_or(&0);
            Some((h.iter().copied().collect(), d))
        } else {
            None
        };
        Ok(Forward {
            logits,
            hidden,
            seq,
        })
    }

    fn bos(&self) -> u32 {
        self.manifest
            .bos_token_id
            .or(self.manifest.eos_token_id)
            .unwrap_or(0)
    }

    /// Scores `targets`, the last tokens of `all`, with left truncation to the context window.
    fn score_tail(&self, all: &[u32], n_targets: usize) -> Result<LogLikelihood, ModelError> {
        let max = self.manifest.max_context;
        let start = (all.len()).saturating_sub(max + 1);
        let window = &all[start..];
        let input = &window[..window.len() - 1];
        let f = self.forward(input)?;
        let vocab = self.manifest.vocab_size;
        let mut logprob = 0.0;
        let mut greedy = true;
        let n = n_targets.min(window.len() - 1);
        for k in 0..n {
            let pos = input.len() - n + k;
            let row = &f.logits[pos * vocab..(pos + 1) * vocab];
            let target = window[pos + 1] as usize;
            let (lp, argmax) = log_softmax_at(row, target);
            logprob += lp;
            greedy &= argmax == target;
        }
        Ok(LogLikelihood {
            logprob,
            is_greedy: greedy,
            tokens: n,
        })
    }
}

/// log-softmax of `row` at `target`, and the row's argmax.
fn log_softmax_at(row: &[f32], target: usize) -> (f64, usize) {
    let mut max = f32::NEG_INFINITY;
    let mut argmax = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > max {
            max = v;
            argmax = i;
        }
    }
    let sum: f64 = row.iter().map(|&v| ((v - max) as f64).exp()).sum();
    ((row[target] - max) as f64 - sum.ln(), argmax)
}

impl Model for TractDecoder {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn loglikelihood(
        &mut self,
        context: &str,
        continuations: &[String],
    ) -> Result<Vec<LogLikelihood>, ModelError> {
        let mut ctx = self.tok.encode(context)?;
        if ctx.is_empty() {
            ctx.push(self.bos());
        }
        continuations
            .iter()
            .map(|cont| {
                // lm-eval: encode the whole string and split at the context's length.
                let whole = self.tok.encode(&format!("{context}{cont}"))?;
                let (all, n) = if !context.is_empty()
                    && whole.len() > ctx.len()
                    && whole[..ctx.len()] == ctx[..]
                {
                    let n = whole.len() - ctx.len();
                    (whole, n)
                } else {
                    let c = self.tok.encode(cont)?;
                    let n = c.len();
                    let mut all = ctx.clone();
                    all.extend(c);
                    (all, n)
                };
                if n == 0 {
                    return Ok(LogLikelihood {
                        logprob: 0.0,
                        is_greedy: true,
                        tokens: 0,
                    });
                }
                self.score_tail(&all, n)
            })
            .collect()
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
        let prompt_tokens = ids.len().min(max);
        let vocab = self.manifest.vocab_size;
        let mut generated: Vec<u32> = Vec::new();
        let mut text = String::new();
        for _ in 0..max_tokens {
            let start = ids.len().saturating_sub(max);
            let f = self.forward(&ids[start..])?;
            let row = &f.logits[(f.seq - 1) * vocab..f.seq * vocab];
            let (_, next) = log_softmax_at(row, 0);
            let next = next as u32;
            if Some(next) == self.manifest.eos_token_id {
                break;
            }
            ids.push(next);
            generated.push(next);
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
                let f = self.forward(&ids)?;
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

    fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
        Ok(self.tok.encode(text)?.len())
    }
}
