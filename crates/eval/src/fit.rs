//! Fits an example's calls into the model's context window. When a call would
//! not fit, the example's document (its longest text in the prompt, the part
//! that every call of the example shares) is cut at its end, the same way for
//! every call, so the calls keep their common prefix and a backend can reuse
//! it. The model's own left truncation, which cuts each call at a different
//! token, then never applies.

use crate::data::Example;
use crate::request::{self, Call, Strategy};
use crate::suite::spec::SuiteSpec;
use edgebench_runtime::model::{Model, ModelError};
use serde::{Deserialize, Serialize};

/// How calls longer than the context are cut, recorded in `run.json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Truncation {
    /// Cut the end of the example's document, the same for every call.
    #[default]
    Document,
    /// Leave each call to the model (EdgeBench's decoders keep its last
    /// tokens: left truncation; replayed outputs did what their model did).
    Left,
}

impl Truncation {
    /// What a `run.json` without the field was made with.
    pub fn unrecorded() -> Self {
        Truncation::Left
    }

    /// The name used on the command line and in `run.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Truncation::Document => "document",
            Truncation::Left => "left",
        }
    }

    /// Parses [`Truncation::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "document" => Some(Truncation::Document),
            "left" => Some(Truncation::Left),
            _ => None,
        }
    }
}

/// An example's calls, fitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    pub calls: Vec<Call>,
    /// Tokens cut from the end of the document (0 when everything fits).
    pub cut_tokens: usize,
    /// Each call's context tokens where fitting counted them (loglikelihood
    /// calls under [`Truncation::Document`]), so they are not counted again.
    pub context_tokens: Vec<Option<usize>>,
}

/// Builds the calls of `ex` and, under [`Truncation::Document`], cuts its
/// document until every call fits `model`'s context: a loglikelihood call's
/// context with its longest continuation, a generation's prompt with the room
/// the model keeps for its answer (`min(max_tokens, max_context / 2)`).
/// Rolling loglikelihoods (scored in windows) and embeddings (cut by the
/// encoder at their end) are left as built. When even an empty document
/// does not fit, the model's left truncation handles what remains.
pub fn fit(
    spec: &SuiteSpec,
    strategy: Strategy,
    ex: &Example,
    pool: &[Example],
    model: &dyn Model,
    mode: Truncation,
) -> Result<Fitted, ModelError> {
    let calls = request::build(spec, strategy, ex, pool);
    let mut uncut = Fitted {
        context_tokens: vec![None; calls.len()],
        calls,
        cut_tokens: 0,
    };
    if mode == Truncation::Left {
        return Ok(uncut);
    }
    let max = model.info().max_context;
    let (mut over, counted) = overflow(&uncut.calls, model, max)?;
    uncut.context_tokens = counted;
    if over == 0 {
        return Ok(uncut);
    }
    let Some(key) = document_var(spec, ex) else {
        return Ok(uncut);
    };
    let doc = &ex.vars[&key];
    let doc_tokens = model.count_tokens(doc)?;
    let mut keep = doc_tokens.saturating_sub(over);
    let mut cut = ex.clone();
    loop {
        let head = head_of(doc, keep, model)?;
        cut.vars.insert(key.clone(), head.to_string());
        let calls = request::build(spec, strategy, &cut, pool);
        let (now, counted) = overflow(&calls, model, max)?;
        over = now;
        if over == 0 || keep == 0 {
            let kept = model.count_tokens(head)?;
            return Ok(Fitted {
                calls,
                cut_tokens: doc_tokens.saturating_sub(kept),
                context_tokens: counted,
            });
        }
        // token merges at the cut can differ from the estimate: cut a little more
        keep = keep.saturating_sub(over.max(4));
    }
}

/// Slack for tokens merged or split where a context meets its continuation.
const SEAM: usize = 4;

/// Tokens by which the longest call exceeds `max` (0 when all fit), and
/// each loglikelihood call's context tokens.
fn overflow(
    calls: &[Call],
    model: &dyn Model,
    max: usize,
) -> Result<(usize, Vec<Option<usize>>), ModelError> {
    let mut over = 0;
    let mut counted = vec![None; calls.len()];
    for (c, counted) in calls.iter().zip(&mut counted) {
        let need = match c {
            Call::Loglikelihood {
                context,
                continuations,
            } => {
                let ctx = model.count_tokens(context)?;
                *counted = Some(ctx);
                let mut cont_max = 0;
                for cont in continuations {
                    cont_max = cont_max.max(model.count_tokens(cont)?);
                }
                // the parts' counts bound the whole's within a token or two
                // at the seam; only a call near the limit is counted whole
                if ctx + cont_max + SEAM <= max {
                    ctx + cont_max
                } else {
                    let mut longest = ctx;
                    for cont in continuations {
                        longest = longest.max(model.count_tokens(&format!("{context}{cont}"))?);
                    }
                    longest
                }
            }
            Call::Generate {
                prompt, max_tokens, ..
            } => model.count_tokens(prompt)? + (*max_tokens).min(max / 2),
            Call::Rolling { .. } | Call::Embed { .. } => 0,
        };
        over = over.max(need.saturating_sub(max));
    }
    Ok((over, counted))
}

/// The example's document: its longest non-empty variable that the template uses.
fn document_var(spec: &SuiteSpec, ex: &Example) -> Option<String> {
    ex.vars
        .iter()
        .filter(|(k, v)| !v.is_empty() && spec.prompt.template.contains(&format!("{{{k}}}")))
        .max_by_key(|(k, v)| (v.len(), std::cmp::Reverse(k.as_str())))
        .map(|(k, _)| k.clone())
}

/// The longest head of `text` ending at a word boundary whose token count
/// is at most `keep` (binary search over the boundaries).
fn head_of<'t>(text: &'t str, keep: usize, model: &dyn Model) -> Result<&'t str, ModelError> {
    if keep == 0 {
        return Ok("");
    }
    // cut points: just before each whitespace run, and the whole text
    let mut ends: Vec<usize> = text
        .char_indices()
        .zip(text.chars().skip(1))
        .filter(|((_, c), next)| !c.is_whitespace() && next.is_whitespace())
        .map(|((i, c), _)| i + c.len_utf8())
        .collect();
    ends.push(text.len());
    let (mut lo, mut hi) = (0usize, ends.len());
    // invariant: heads ending before `lo` fit; heads ending at `hi` and later do not
    while lo < hi {
        let mid = (lo + hi) / 2;
        if model.count_tokens(&text[..ends[mid]])? <= keep {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(if lo == 0 { "" } else { &text[..ends[lo - 1]] })
}
