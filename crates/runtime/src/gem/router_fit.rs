//! Fits GEM's domain head `W_r` (paper section 3.1: `softmax(W_r . h)`) by
//! multinomial logistic regression on the router's per-token hidden states,
//! over domain-labelled sentences from the suites' data: every token of a
//! sentence takes its suite's domain as label. Sentences are split into
//! training and held-out sets by a hash of their id; routing accuracy is
//! reported on the held-out set only.

use crate::model::tokenizer::Tok;
use serde::Serialize;
use std::path::Path;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::DimLike;

/// A sentence and its domain index (`gem::config::DOMAINS` order).
#[derive(Debug, Clone)]
pub struct Labelled {
    pub id: String,
    pub text: String,
    pub domain: usize,
}

/// Whether a sentence is held out (about one in four, by id hash).
pub fn held_out(id: &str) -> bool {
    edgebench_util::hash::sha256_str(id).as_bytes()[0].is_multiple_of(4)
}

/// Tokens of a sentence fed to the router (below every GEM config's context).
pub const MAX_TOKENS: usize = 256;

/// Runs a GEM graph and returns the `router_hidden` rows of each token.
pub struct RouterFeatures {
    plan: Arc<TypedRunnableModel>,
    output: usize,
    tok: Tok,
    /// Token prepended to every sentence (a BERT router's `[CLS]`), whose row is dropped.
    cls: Option<i64>,
}

impl RouterFeatures {
    /// Loads `<dir>/model.onnx` (which must expose `router_hidden`) and its tokenizer.
    pub fn load(dir: &Path) -> TractResult<Self> {
        Self::load_graph(&dir.join("model.onnx"), &dir.join("tokenizer.json"), None)
    }

    /// Loads a graph whose only input is the router's token ids (a BERT
    /// router written by `pretrained::write_router_features`), prepending the
    /// token `cls` to every sentence.
    pub fn load_graph(path: &Path, tokenizer: &Path, cls: Option<&str>) -> TractResult<Self> {
        let path = path.to_path_buf();
        let model = crate::ops::onnx().model_for_path(&path)?.into_optimized()?;
        let output = model
            .outputs
            .iter()
            .position(|&o| model.outlet_label(o) == Some("router_hidden"))
            .ok_or_else(|| anyhow::anyhow!("{}: no router_hidden output", path.display()))?;
        let plan = model.into_runnable()?;
        let tok = Tok::load(tokenizer).map_err(|e| anyhow::anyhow!("{e}"))?;
        let cls = match cls {
            Some(t) => Some(
                tok.token_id(t)
                    .ok_or_else(|| anyhow::anyhow!("{}: no `{t}` token", tokenizer.display()))?
                    as i64,
            ),
            None => None,
        };
        Ok(RouterFeatures {
            plan,
            output,
            tok,
            cls,
        })
    }

    /// Per-token router hidden states of `text` (its first [`MAX_TOKENS`] tokens).
    pub fn of(&self, text: &str) -> TractResult<Vec<Vec<f32>>> {
        let mut ids: Vec<i64> = self
            .tok
            .encode(text)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .into_iter()
            .map(i64::from)
            .collect();
        ids.truncate(MAX_TOKENS);
        if ids.is_empty() {
            return Ok(vec![]);
        }
        if let Some(c) = self.cls {
            ids.insert(0, c);
        }
        let input = Tensor::from_shape(&[1, ids.len()], &ids)?;
        let mut inputs = tvec!(input.into_tvalue());
        // a GEM graph with a cache runs from an empty one: every `past_*`
        // input with its growing axis at 0
        let model = self.plan.model();
        for ix in 1..model.inputs.len() {
            let fact = model.input_fact(ix)?;
            let shape: Vec<usize> = fact
                .shape
                .iter()
                .map(|d| d.to_usize().unwrap_or(0))
                .collect();
            inputs.push(Tensor::zero_dt(fact.datum_type, &shape)?.into_tvalue());
        }
        let out = self.plan.run(inputs)?;
        let h = out[self.output].to_plain_array_view::<f32>()?;
        let d = *h.shape().last().unwrap_or(&0);
        Ok(h.iter()
            .copied()
            .collect::<Vec<f32>>()
            .chunks(d)
            .skip(self.cls.is_some() as usize)
            .map(<[f32]>::to_vec)
            .collect())
    }
}

/// A fitted domain head: `W_r` (`classes x dim`, row-major) and `b_r`.
pub type Head = (Vec<f32>, Vec<f32>);

/// Multinomial logistic regression by full-batch gradient descent with L2:
/// returns `W` (`classes x dim`, row-major) and `b`.
pub fn fit_softmax(
    x: &[Vec<f32>],
    y: &[usize],
    classes: usize,
    l2: f32,
    steps: usize,
    lr: f32,
) -> Head {
    let dim = x.first().map_or(0, Vec::len);
    let n = x.len().max(1) as f32;
    let mut w = vec![0f32; classes * dim];
    let mut b = vec![0f32; classes];
    let mut p = vec![0f32; classes];
    for _ in 0..steps {
        let mut gw = vec![0f32; classes * dim];
        let mut gb = vec![0f32; classes];
        for (row, &label) in x.iter().zip(y) {
            probs(&w, &b, row, &mut p);
            for c in 0..classes {
                let g = p[c] - (c == label) as u8 as f32;
                gb[c] += g;
                for (acc, v) in gw[c * dim..(c + 1) * dim].iter_mut().zip(row) {
                    *acc += g * v;
                }
            }
        }
        for (wi, gi) in w.iter_mut().zip(&gw) {
            *wi -= lr * (gi / n + l2 * *wi);
        }
        for (bi, gi) in b.iter_mut().zip(&gb) {
            *bi -= lr * gi / n;
        }
    }
    (w, b)
}

fn probs(w: &[f32], b: &[f32], row: &[f32], out: &mut [f32]) {
    let dim = row.len();
    for (c, o) in out.iter_mut().enumerate() {
        *o = b[c]
            + w[c * dim..(c + 1) * dim]
                .iter()
                .zip(row)
                .map(|(a, v)| a * v)
                .sum::<f32>();
    }
    let max = out.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let total: f32 = out.iter().map(|l| (l - max).exp()).sum();
    for o in out.iter_mut() {
        *o = (*o - max).exp() / total;
    }
}

/// Routing quality on the held-out sentences.
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    pub train_sentences: usize,
    pub train_tokens: usize,
    pub heldout_sentences: usize,
    pub heldout_tokens: usize,
    /// Tokens whose argmax domain is the sentence's domain.
    pub token_accuracy: f64,
    /// Sentences whose majority argmax over tokens is their domain.
    pub sentence_accuracy: f64,
    /// Accuracy of always answering the most frequent held-out domain.
    pub majority_baseline: f64,
    /// Tokens whose top probability exceeds tau (routed to a domain, not general).
    pub routed_share: f64,
    /// Of those, the share routed to the right domain.
    pub routed_precision: f64,
    pub tau: f32,
    /// Held-out sentence accuracy per domain: (domain, sentences, accuracy).
    pub per_domain: Vec<(String, usize, f64)>,
}

/// Fits the head on the training sentences and evaluates on the held-out ones.
pub fn fit(
    features: &RouterFeatures,
    data: &[Labelled],
    tau: f32,
    tokens_per_sentence: usize,
) -> TractResult<(Head, FitReport)> {
    let classes = super::config::DOMAINS.len();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let mut heldout: Vec<(usize, Vec<Vec<f32>>)> = Vec::new();
    let mut train_sentences = 0;
    for s in data {
        let f = features.of(&s.text)?;
        if held_out(&s.id) {
            heldout.push((s.domain, f));
        } else {
            train_sentences += 1;
            let step = (f.len() / tokens_per_sentence.max(1)).max(1);
            for row in f.into_iter().step_by(step) {
                x.push(row);
                y.push(s.domain);
            }
        }
    }
    let head = fit_softmax(&x, &y, classes, 1e-3, 300, 1.0);
    let mut p = vec![0f32; classes];
    let (mut tok_ok, mut tok_n, mut sent_ok, mut routed, mut routed_ok) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut per: Vec<(usize, usize)> = vec![(0, 0); classes];
    let mut freq = vec![0usize; classes];
    for (label, rows) in &heldout {
        let mut votes = vec![0usize; classes];
        for row in rows {
            probs(&head.0, &head.1, row, &mut p);
            let (best, top) =
                p.iter().enumerate().fold(
                    (0, f32::NEG_INFINITY),
                    |a, (i, &v)| if v > a.1 { (i, v) } else { a },
                );
            votes[best] += 1;
            tok_n += 1;
            tok_ok += (best == *label) as usize;
            if top > tau {
                routed += 1;
                routed_ok += (best == *label) as usize;
            }
        }
        let majority = votes
            .iter()
            .enumerate()
            .max_by_key(|(i, v)| (**v, usize::MAX - i))
            .map_or(0, |(i, _)| i);
        let ok = (majority == *label) as usize;
        sent_ok += ok;
        per[*label].0 += 1;
        per[*label].1 += ok;
        freq[*label] += 1;
    }
    let ratio = |a: usize, b: usize| {
        if b == 0 {
            f64::NAN
        } else {
            a as f64 / b as f64
        }
    };
    let report = FitReport {
        train_sentences,
        train_tokens: x.len(),
        heldout_sentences: heldout.len(),
        heldout_tokens: tok_n,
        token_accuracy: ratio(tok_ok, tok_n),
        sentence_accuracy: ratio(sent_ok, heldout.len()),
        majority_baseline: ratio(freq.iter().copied().max().unwrap_or(0), heldout.len()),
        routed_share: ratio(routed, tok_n),
        routed_precision: ratio(routed_ok, routed),
        tau,
        per_domain: super::config::DOMAINS
            .iter()
            .zip(&per)
            .map(|(d, (n, ok))| (d.to_string(), *n, ratio(*ok, *n)))
            .collect(),
    };
    Ok((head, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_regression_separates_separable_classes() {
        // class = which coordinate is largest
        let x: Vec<Vec<f32>> = (0..60)
            .map(|i| {
                let mut v = vec![0.1f32; 3];
                v[i % 3] = 1.0 + (i as f32) * 0.01;
                v
            })
            .collect();
        let y: Vec<usize> = (0..60).map(|i| i % 3).collect();
        let (w, b) = fit_softmax(&x, &y, 3, 0.0, 400, 1.0);
        let mut p = vec![0f32; 3];
        for (row, label) in x.iter().zip(&y) {
            probs(&w, &b, row, &mut p);
            let best = (0..3).max_by(|&i, &j| p[i].total_cmp(&p[j])).unwrap();
            assert_eq!(best, *label);
        }
    }
}
