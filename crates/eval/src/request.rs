//! Requests: an [`Example`] becomes model calls, the way lm-evaluation-harness
//! does it (loglikelihood of each choice, greedy generation, rolling
//! loglikelihood), or embeddings for encoder-style scoring.

use crate::data::{Example, Gold};
use crate::suite::spec::{SuiteSpec, TaskKind};
use edgebench_runtime::model::{
    Capabilities, Generation, LogLikelihood, LoglikelihoodRequest, Model, ModelError, Rolling,
};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// One call to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    /// Loglikelihood of each continuation after `context`.
    Loglikelihood {
        context: String,
        continuations: Vec<String>,
    },
    /// Greedy generation.
    Generate {
        prompt: String,
        stop: Vec<String>,
        max_tokens: usize,
    },
    /// Rolling loglikelihood of `text`.
    Rolling { text: String },
    /// Embeddings of `texts`.
    Embed { texts: Vec<String> },
}

/// The model's answer to one [`Call`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Loglikelihood { results: Vec<LogLikelihood> },
    Generate { generation: Generation },
    Rolling { rolling: Rolling },
    Embed { embeddings: Vec<Vec<f32>> },
}

/// Which model capability a call needs.
pub fn capability_ok(call: &Call, caps: &Capabilities) -> bool {
    match call {
        Call::Loglikelihood { .. } => caps.loglikelihood,
        Call::Generate { .. } => caps.generate,
        Call::Rolling { .. } => caps.rolling,
        Call::Embed { .. } => caps.embed,
    }
}

/// How a suite is served by a model with `caps`, or why it cannot be.
pub fn strategy(spec: &SuiteSpec, caps: &Capabilities) -> Result<Strategy, String> {
    use TaskKind::*;
    let s = match spec.task {
        MultipleChoice | Classification if caps.loglikelihood => Strategy::Loglikelihood,
        MultipleChoice | Classification if caps.embed => Strategy::Embedding,
        MultiLabelClassification | ConditionalPerplexity if caps.loglikelihood => {
            Strategy::Loglikelihood
        }
        ExtractiveQa | GenerativeQa | TokenTagging | Ner | RelationExtraction | Coreference
        | Summarization | ResponseGeneration
            if caps.generate =>
        {
            Strategy::Generation
        }
        LanguageModeling if caps.rolling => Strategy::Rolling,
        Retrieval if caps.embed => Strategy::Embedding,
        _ => {
            return Err(format!(
                "task `{}` needs {}",
                spec.task.as_str(),
                match spec.task {
                    MultipleChoice | Classification => "loglikelihood or embeddings",
                    MultiLabelClassification | ConditionalPerplexity => "loglikelihood",
                    LanguageModeling => "rolling loglikelihood",
                    Retrieval => "embeddings",
                    _ => "generation",
                }
            ))
        }
    };
    Ok(s)
}

/// The request style chosen for a suite and model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Loglikelihood,
    Generation,
    Rolling,
    Embedding,
}

/// Renders the template with the example's variables, `{choices}` and `{labels}`.
pub fn render(spec: &SuiteSpec, ex: &Example) -> String {
    let mut out = spec.prompt.template.clone();
    for (k, v) in &ex.vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    if out.contains("{choices}") {
        let list = ex
            .choices
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{}. {c}", letter(i)))
            .collect::<Vec<_>>()
            .join("\n");
        out = out.replace("{choices}", &list);
    }
    if out.contains("{labels}") {
        out = out.replace("{labels}", &ex.choices.join(", "));
    }
    out
}

fn letter(i: usize) -> String {
    if i < 26 {
        ((b'A' + i as u8) as char).to_string()
    } else {
        (i + 1).to_string()
    }
}

/// The gold answer as the model should write it (for few-shot demonstrations).
pub fn target_text(ex: &Example) -> String {
    match &ex.gold {
        Gold::Index { index } => ex.choices.get(*index).cloned().unwrap_or_default(),
        Gold::MaybeIndex { index } => index
            .and_then(|i| ex.choices.get(i).cloned())
            .or_else(|| ex.choices.last().cloned())
            .unwrap_or_default(),
        Gold::Indices { indices } => indices
            .iter()
            .filter_map(|i| ex.choices.get(*i).cloned())
            .collect::<Vec<_>>()
            .join(", "),
        Gold::Texts { texts } => texts.first().cloned().unwrap_or_default(),
        // spans as the scorer splits a generation (multispan::split_prediction)
        Gold::Answers { alternatives, .. } => alternatives
            .first()
            .map(|a| a.join("; "))
            .unwrap_or_default(),
        Gold::Number { value } => format_number(*value),
        Gold::Tags { tags, .. } => tags.join(" "),
        Gold::Triples { triples } => triples
            .iter()
            .map(|(h, r, t)| format!("{h} | {r} | {t}"))
            .collect::<Vec<_>>()
            .join("\n"),
        Gold::Clusters { clusters } => clusters
            .iter()
            .map(|c| c.join(" | "))
            .collect::<Vec<_>>()
            .join("\n"),
        Gold::Text { text } => text.clone(),
        Gold::Bitext { .. } | Gold::Pair { .. } => String::new(),
    }
}

fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Draws `k` demonstrations for `ex` from `pool` (never `ex` itself), seeded per example.
pub fn fewshot<'a>(spec: &SuiteSpec, ex: &Example, pool: &'a [Example]) -> Vec<&'a Example> {
    if spec.fewshot.k == 0 || pool.is_empty() {
        return vec![];
    }
    let seed = spec.fewshot.seed ^ fxhash(&ex.id);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut cands: Vec<&Example> = pool.iter().filter(|p| p.id != ex.id).collect();
    cands.shuffle(&mut rng);
    cands.truncate(spec.fewshot.k);
    cands
}

fn fxhash(s: &str) -> u64 {
    // FNV-1a: stable across platforms and releases (unlike std's hasher).
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// The full prompt: few-shot demonstrations, then the rendered example.
pub fn prompt(spec: &SuiteSpec, ex: &Example, pool: &[Example]) -> String {
    let mut parts: Vec<String> = fewshot(spec, ex, pool)
        .into_iter()
        .map(|d| {
            format!(
                "{}{}{}",
                render(spec, d),
                spec.prompt.target_delimiter,
                target_text(d)
            )
        })
        .collect();
    parts.push(render(spec, ex));
    parts.join(&spec.prompt.fewshot_delimiter)
}

/// Builds the calls for one example.
pub fn build(spec: &SuiteSpec, strategy: Strategy, ex: &Example, pool: &[Example]) -> Vec<Call> {
    let delim = &spec.prompt.target_delimiter;
    let p = prompt(spec, ex, pool);
    match (spec.task, strategy) {
        (TaskKind::LanguageModeling, _) => vec![Call::Rolling {
            text: match &ex.gold {
                Gold::Text { text } => text.clone(),
                _ => p,
            },
        }],
        (TaskKind::Retrieval, _) => vec![Call::Embed {
            texts: match &ex.gold {
                Gold::Pair { source, target } => vec![source.clone(), target.clone()],
                _ => vec![ex.vars.get("sentence").cloned().unwrap_or_default()],
            },
        }],
        (TaskKind::MultiLabelClassification, _) => {
            let q = spec.prompt.label_question.clone().unwrap_or_default();
            ex.choices
                .iter()
                .map(|label| Call::Loglikelihood {
                    context: format!("{p}\n{}", q.replace("{label}", label)),
                    continuations: vec![format!("{delim}yes"), format!("{delim}no")],
                })
                .collect()
        }
        (TaskKind::ConditionalPerplexity, _) => vec![Call::Loglikelihood {
            context: p,
            continuations: vec![format!("{delim}{}", target_text(ex))],
        }],
        (_, Strategy::Loglikelihood) => vec![Call::Loglikelihood {
            context: p,
            continuations: ex.choices.iter().map(|c| format!("{delim}{c}")).collect(),
        }],
        (_, Strategy::Embedding) => {
            let mut texts = vec![p];
            texts.extend(ex.choices.iter().cloned());
            vec![Call::Embed { texts }]
        }
        _ => vec![Call::Generate {
            prompt: p,
            stop: spec.prompt.stop.clone(),
            max_tokens: spec.prompt.max_tokens,
        }],
    }
}

/// sha256 of the serialised calls: a record's `prompt_hash`, checked on resume.
pub fn prompt_hash(calls: &[Call]) -> String {
    crate::record::sha256_str(&serde_json::to_string(calls).expect("calls serialise"))
}

/// Executes an example's calls: its loglikelihood calls go to the model
/// as one list (so the backend can order them, share their prefix, batch),
/// the others one by one; replies in call order.
pub fn execute_all(model: &mut dyn Model, calls: &[Call]) -> Result<Vec<Reply>, ModelError> {
    let scored: Vec<(usize, LoglikelihoodRequest<'_>)> = calls
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c {
            Call::Loglikelihood {
                context,
                continuations,
            } => Some((
                i,
                LoglikelihoodRequest {
                    context,
                    continuations,
                },
            )),
            _ => None,
        })
        .collect();
    let mut replies: Vec<Option<Reply>> = vec![None; calls.len()];
    if !scored.is_empty() {
        let requests: Vec<LoglikelihoodRequest<'_>> = scored.iter().map(|(_, r)| *r).collect();
        let results = model.loglikelihood_requests(&requests)?;
        if results.len() != requests.len() {
            return Err(ModelError::Runtime(format!(
                "{} results for {} loglikelihood requests",
                results.len(),
                requests.len()
            )));
        }
        for ((i, _), results) in scored.iter().zip(results) {
            replies[*i] = Some(Reply::Loglikelihood { results });
        }
    }
    for (i, c) in calls.iter().enumerate() {
        if replies[i].is_none() {
            replies[i] = Some(execute(model, c)?);
        }
    }
    Ok(replies
        .into_iter()
        .map(|r| r.expect("every call answered"))
        .collect())
}

/// Executes one call on a model.
pub fn execute(model: &mut dyn Model, call: &Call) -> Result<Reply, ModelError> {
    Ok(match call {
        Call::Loglikelihood {
            context,
            continuations,
        } => Reply::Loglikelihood {
            results: model.loglikelihood(context, continuations)?,
        },
        Call::Generate {
            prompt,
            stop,
            max_tokens,
        } => Reply::Generate {
            generation: model.generate(prompt, stop, *max_tokens)?,
        },
        Call::Rolling { text } => Reply::Rolling {
            rolling: model.rolling_loglikelihood(text)?,
        },
        Call::Embed { texts } => Reply::Embed {
            embeddings: model.embed(texts)?,
        },
    })
}

impl Reply {
    /// Checks that this reply answers `call`: the same kind, one value per
    /// continuation or text, and finite numbers only. The message names the
    /// offending value.
    pub fn check(&self, call: &Call) -> Result<(), String> {
        let finite = |what: &str, v: f64| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(format!("{what} is {v}, not a finite number"))
            }
        };
        match (call, self) {
            (Call::Loglikelihood { continuations, .. }, Reply::Loglikelihood { results }) => {
                if results.len() != continuations.len() {
                    return Err(format!(
                        "{} loglikelihoods for {} continuations",
                        results.len(),
                        continuations.len()
                    ));
                }
                for (i, r) in results.iter().enumerate() {
                    finite(&format!("the loglikelihood of continuation {i}"), r.logprob)?;
                }
                Ok(())
            }
            (Call::Generate { .. }, Reply::Generate { .. }) => Ok(()),
            (Call::Rolling { .. }, Reply::Rolling { rolling }) => {
                finite("the rolling loglikelihood", rolling.logprob)
            }
            (Call::Embed { texts }, Reply::Embed { embeddings }) => {
                if embeddings.len() != texts.len() {
                    return Err(format!(
                        "{} embeddings for {} texts",
                        embeddings.len(),
                        texts.len()
                    ));
                }
                for (i, e) in embeddings.iter().enumerate() {
                    if let Some(j) = e.iter().position(|x| !x.is_finite()) {
                        return Err(format!(
                            "embedding {i} has {} at position {j}, not a finite number",
                            e[j]
                        ));
                    }
                }
                Ok(())
            }
            (c, r) => Err(format!(
                "a `{}` reply answers a `{}` call",
                r.kind(),
                c.kind()
            )),
        }
    }

    /// The reply's kind as written in records.
    pub fn kind(&self) -> &'static str {
        match self {
            Reply::Loglikelihood { .. } => "loglikelihood",
            Reply::Generate { .. } => "generate",
            Reply::Rolling { .. } => "rolling",
            Reply::Embed { .. } => "embed",
        }
    }
}

impl Call {
    /// The call's kind as written in records.
    pub fn kind(&self) -> &'static str {
        match self {
            Call::Loglikelihood { .. } => "loglikelihood",
            Call::Generate { .. } => "generate",
            Call::Rolling { .. } => "rolling",
            Call::Embed { .. } => "embed",
        }
    }
}
