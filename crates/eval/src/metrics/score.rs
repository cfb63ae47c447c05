//! Scoring records: each example yields, per metric, a vector of additive
//! statistics (counts, sums); a metric's value is a function of their sum over
//! examples. That makes corpus-level metrics (macro F1, span F1, perplexity)
//! and their bootstrap resamples exact and cheap.

use super::{classification, coref, multispan, numbers, spans, text};
use crate::data::Gold;
use crate::record::Record;
use crate::request::Reply;
use crate::suite::spec::{Metric, SuiteSpec, TaskKind};
use std::collections::BTreeMap;

/// Per-example statistics of one metric.
pub type Stats = Vec<f64>;

/// Width of one class's block in `f1_macro` statistics, and its slots.
const CLASS: usize = 4;
const TP: usize = 0;
const FP: usize = 1;
const FN: usize = 2;
/// Positive when the class is in the label set averaged over.
const IN_LABELS: usize = 3;

/// Macro F1 over per-class blocks `(tp, fp, fn, in_labels)`: the mean F1 of
/// the classes whose summed `in_labels` is positive. Each example marks the
/// classes scikit-learn's `f1_score(average="macro")` averages over, so the
/// label set of any (re)sample is a sum like the counts: single-label, its gold
/// and predicted class (`labels=None`: the labels present); multi-label, every
/// column of the indicator matrix; tagging, every tag of the tag set
/// (`labels=tagset`). A class in the set with tp = fp = fn = 0 scores 0.
fn macro_f1(sums: &[f64]) -> f64 {
    let f1s: Vec<f64> = sums
        .chunks(CLASS)
        .filter(|c| c.len() == CLASS && c[IN_LABELS] > 0.0)
        .map(|c| classification::f1(c[TP], c[FP], c[FN]))
        .collect();
    if f1s.is_empty() {
        0.0
    } else {
        classification::numpy_mean(&f1s)
    }
}

/// Per-class `f1_macro` blocks of one example.
struct ClassCounts(Vec<f64>);

impl ClassCounts {
    fn new(classes: usize) -> Self {
        ClassCounts(vec![0.0; CLASS * classes])
    }

    /// Adds one to `slot` (`TP`, `FP`, `FN`, `IN_LABELS`) of class `c`.
    fn add(&mut self, c: usize, slot: usize) {
        if self.0.len() < CLASS * (c + 1) {
            self.0.resize(CLASS * (c + 1), 0.0);
        }
        self.0[CLASS * c + slot] += 1.0;
    }

    /// Summed `(tp, fp, fn)` of the classes in the label set (`f1_micro`).
    fn micro(&self) -> Stats {
        let mut s = vec![0.0; 3];
        for c in self.0.chunks(CLASS).filter(|c| c[IN_LABELS] > 0.0) {
            for (a, v) in s.iter_mut().zip(&c[TP..=FN]) {
                *a += v;
            }
        }
        s
    }
}

fn prf(num_r: f64, den_r: f64, num_p: f64, den_p: f64) -> f64 {
    let r = if den_r > 0.0 { num_r / den_r } else { 0.0 };
    let p = if den_p > 0.0 { num_p / den_p } else { 0.0 };
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// A metric's value from the summed statistics of `n` examples.
pub fn aggregate(metric: Metric, sums: &[f64], n: usize) -> f64 {
    use Metric::*;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    match metric {
        Acc | AccNorm | SquadF1 | ExactMatch | Rouge1 | Rouge2 | RougeL | UnigramF1
        | RetrievalAcc => ratio(sums[0], n as f64),
        NumericAcc => ratio(sums[0], sums[1]),
        F1Micro | SpanF1 | RelationF1 | MiningF1 => classification::f1(sums[0], sums[1], sums[2]),
        F1Macro => macro_f1(sums),
        TokenAcc => ratio(sums[0], sums[1]),
        Perplexity | WordPerplexity => ratio(-sums[0], sums[1]).exp(),
        BitsPerByte => ratio(-sums[0], sums[1]) / std::f64::consts::LN_2,
        MucF1 | B3F1 => prf(sums[0], sums[1], sums[2], sums[3]),
        PassageF1 => prf(sums[0], sums[2], sums[0], sums[1]),
    }
}

/// Index of the largest value (first on ties, as `np.argmax`).
fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64) * (*y as f64))
        .sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// The choice an LL or embedding reply picks: (raw argmax, length-normalised
/// argmax). The normalised pick is lm-evaluation-harness's `acc_norm`: each
/// loglikelihood divided by the length in characters (Unicode code points,
/// Python's `len`) of the bare choice, without the target delimiter, taken from
/// the record's `choices` (`usize::MAX` when they do not match the replies).
pub fn choice_prediction(r: &Record) -> Option<(usize, usize)> {
    match r.replies.first()? {
        Reply::Loglikelihood { results } => {
            let raw: Vec<f64> = results.iter().map(|x| x.logprob).collect();
            let norm = if r.choices.len() == raw.len() {
                let norm: Vec<f64> = raw
                    .iter()
                    .zip(&r.choices)
                    .map(|(lp, c)| lp / c.chars().count() as f64)
                    .collect();
                argmax(&norm)
            } else {
                usize::MAX
            };
            Some((argmax(&raw), norm))
        }
        Reply::Embed { embeddings } if embeddings.len() > 1 => {
            let q = &embeddings[0];
            let sims: Vec<f64> = embeddings[1..].iter().map(|e| cosine(q, e)).collect();
            let i = argmax(&sims);
            Some((i, i))
        }
        _ => None,
    }
}

/// The generated text of a record (first generation call).
pub fn generated_text(r: &Record) -> Option<&str> {
    r.replies.iter().find_map(|x| match x {
        Reply::Generate { generation } => Some(generation.text.as_str()),
        _ => None,
    })
}

/// Parses generated tags: whitespace-separated, `word/TAG` reduced to `TAG`.
pub fn parse_tags(out: &str, n: usize, pad: &str) -> Vec<String> {
    let mut tags: Vec<String> = out
        .split_whitespace()
        .map(|t| t.rsplit('/').next().unwrap_or(t).to_string())
        .take(n)
        .collect();
    tags.resize(n, pad.to_string());
    tags
}

/// Parses `head | RELATION | tail` lines (or `;`-separated) into normalised triples.
pub fn parse_triples(out: &str) -> Vec<(String, String, String)> {
    out.split(['\n', ';'])
        .filter_map(|l| {
            let p: Vec<&str> = l.split('|').map(str::trim).collect();
            (p.len() == 3 && p.iter().all(|x| !x.is_empty())).then(|| {
                (
                    p[0].to_lowercase(),
                    p[1].to_uppercase(),
                    p[2].to_lowercase(),
                )
            })
        })
        .collect()
}

/// Parses clusters: one per line, mentions separated by `|`.
pub fn parse_clusters(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| {
            l.split('|')
                .map(|m| m.trim().to_lowercase())
                .filter(|m| !m.is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|c| !c.is_empty())
        .collect()
}

/// The numbers `numeric_acc` reads from a gold, one per alternative that is
/// a number (empty when none is: the gold is left out of `numeric_acc` and
/// reported); `None` for a gold that is no answer text at all.
pub fn numeric_golds(gold: &Gold) -> Option<Vec<numbers::Quantity>> {
    Some(match gold {
        Gold::Number { value } => vec![numbers::Quantity {
            number: *value,
            scale: None,
        }],
        Gold::Texts { texts } => texts
            .iter()
            .filter_map(|t| numbers::read_gold(t, None))
            .collect(),
        Gold::Answers {
            alternatives,
            scale,
        } => {
            let scale = scale
                .as_deref()
                .and_then(|s| numbers::Scale::parse(s).ok().flatten());
            alternatives
                .iter()
                .filter(|a| a.len() == 1)
                .filter_map(|a| numbers::read_gold(&a[0], scale))
                .collect()
        }
        _ => return None,
    })
}

/// Per metric of `spec`, the ids of the examples whose gold it cannot read
/// (for `suites validate`; scoring leaves them out and reports them).
pub fn unreadable_golds(
    spec: &SuiteSpec,
    examples: &[crate::data::Example],
) -> Vec<(Metric, Vec<String>)> {
    spec.metrics
        .iter()
        .filter(|m| **m == Metric::NumericAcc)
        .map(|m| {
            let ids = examples
                .iter()
                .filter(|e| numeric_golds(&e.gold).is_some_and(|g| g.is_empty()))
                .map(|e| e.id.clone())
                .collect();
            (*m, ids)
        })
        .filter(|(_, ids): &(Metric, Vec<String>)| !ids.is_empty())
        .collect()
}

/// Whether `metric` left this example out because it could not read the
/// gold (`numeric_acc` of a gold that is not a number).
pub fn unreadable(metric: Metric, stats: &[f64]) -> bool {
    metric == Metric::NumericAcc && stats.get(1) == Some(&0.0)
}

/// SQuAD F1 or exact match of a generation against QA answers: one-text
/// alternatives by the SQuAD script on the first line, span sets by
/// [`multispan::em_f1`] on the whole text split into spans.
fn answers_score(metric: Metric, generated: &str, alternatives: &[Vec<String>]) -> f64 {
    let full = generated.trim();
    let first = full.lines().next().unwrap_or("");
    if alternatives.is_empty() {
        // no gold answer: correct only when the model abstains
        return text::squad_normalize(first).is_empty() as u8 as f64;
    }
    alternatives
        .iter()
        .map(|alt| match alt.as_slice() {
            [] => text::squad_normalize(first).is_empty() as u8 as f64,
            [one] if metric == Metric::SquadF1 => text::squad_f1(first, one),
            [one] => text::squad_em(first, one),
            spans => {
                let (em, f1) = multispan::em_f1(&multispan::split_prediction(full), spans);
                if metric == Metric::SquadF1 {
                    f1
                } else {
                    em
                }
            }
        })
        .fold(0.0, f64::max)
}

/// Number of whitespace-separated words (lm-eval's `word_perplexity` unit).
fn words(s: &str) -> usize {
    s.split_whitespace().count().max(1)
}

/// Coreference counts (MUC and B-cubed numerators and denominators) over mention strings.
fn coref_stats(pred: &[Vec<String>], gold: &[Vec<String>]) -> (Stats, Stats) {
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut intern = |c: &[Vec<String>]| -> Vec<Vec<(usize, usize)>> {
        c.iter()
            .map(|cl| {
                let mut v: Vec<(usize, usize)> = cl
                    .iter()
                    .map(|m| {
                        let n = ids.len();
                        let id = *ids.entry(m.clone()).or_insert(n);
                        (id, id)
                    })
                    .collect();
                v.sort();
                v.dedup();
                v
            })
            .collect()
    };
    let p = intern(pred);
    let g = intern(gold);
    let (mr, mrd) = coref::muc_recall_counts(&p, &g);
    let (mp, mpd) = coref::muc_recall_counts(&g, &p);
    let (br, brd) = coref::b_cubed_recall_sums(&p, &g);
    let (bp, bpd) = coref::b_cubed_recall_sums(&g, &p);
    (vec![mr, mrd, mp, mpd], vec![br, brd, bp, bpd])
}

/// Statistics of every requested metric for every record of a suite (same order).
pub fn suite_stats(spec: &SuiteSpec, records: &[Record]) -> Vec<BTreeMap<Metric, Stats>> {
    let mut out: Vec<BTreeMap<Metric, Stats>> =
        records.iter().map(|r| example_stats(spec, r)).collect();
    if spec.task == TaskKind::Retrieval {
        retrieval_stats(spec, records, &mut out);
    }
    out
}

fn example_stats(spec: &SuiteSpec, r: &Record) -> BTreeMap<Metric, Stats> {
    use Metric::*;
    let mut m = BTreeMap::new();
    let n_classes = r.choices.len();
    for &metric in &spec.metrics {
        let s: Option<Stats> = match (metric, &r.gold) {
            (Acc | AccNorm | F1Macro | F1Micro, Gold::Index { index }) => {
                let (raw, norm) = choice_prediction(r).unwrap_or((usize::MAX, usize::MAX));
                let pred = if metric == AccNorm { norm } else { raw };
                let ok = (pred == *index) as u8 as f64;
                Some(match metric {
                    F1Macro => {
                        // labels=None: the gold and the predicted class
                        let mut c = ClassCounts::new(n_classes);
                        c.add(*index, IN_LABELS);
                        if pred == *index {
                            c.add(*index, TP);
                        } else {
                            c.add(*index, FN);
                            if pred < n_classes {
                                c.add(pred, FP);
                                c.add(pred, IN_LABELS);
                            }
                        }
                        c.0
                    }
                    F1Micro => vec![ok, 1.0 - ok, 1.0 - ok],
                    _ => vec![ok],
                })
            }
            (PassageF1 | Acc, Gold::MaybeIndex { index }) => {
                let (raw, _) = choice_prediction(r).unwrap_or((usize::MAX, usize::MAX));
                let none = n_classes.saturating_sub(1);
                let pred = (raw != none && raw < n_classes).then_some(raw);
                Some(if metric == Acc {
                    vec![(pred == *index) as u8 as f64]
                } else {
                    let correct = (pred.is_some() && pred == *index) as u8 as f64;
                    vec![
                        correct,
                        pred.is_some() as u8 as f64,
                        index.is_some() as u8 as f64,
                    ]
                })
            }
            (F1Micro | F1Macro | Acc, Gold::Indices { indices }) => {
                let pred: Vec<bool> = r
                    .replies
                    .iter()
                    .map(|x| match x {
                        Reply::Loglikelihood { results } if results.len() == 2 => {
                            results[0].logprob > results[1].logprob
                        }
                        _ => false,
                    })
                    .collect();
                let gold: Vec<bool> = (0..n_classes).map(|i| indices.contains(&i)).collect();
                // indicator matrix: every label column is in the label set
                let mut c = ClassCounts::new(n_classes);
                for (i, &g) in gold.iter().enumerate() {
                    c.add(i, IN_LABELS);
                    match (pred.get(i).copied().unwrap_or(false), g) {
                        (true, true) => c.add(i, TP),
                        (true, false) => c.add(i, FP),
                        (false, true) => c.add(i, FN),
                        _ => {}
                    }
                }
                Some(match metric {
                    F1Macro => c.0,
                    F1Micro => c.micro(),
                    _ => vec![(pred.len() == gold.len() && pred == gold) as u8 as f64],
                })
            }
            (SquadF1 | ExactMatch, Gold::Texts { texts }) => {
                let pred = generated_text(r).unwrap_or("").trim();
                let pred = pred.lines().next().unwrap_or("");
                let f = if metric == SquadF1 {
                    text::squad_f1
                } else {
                    text::squad_em
                };
                Some(vec![if texts.is_empty() {
                    // no gold answer: correct only when the model abstains
                    text::squad_normalize(pred).is_empty() as u8 as f64
                } else {
                    text::max_over_golds(pred, texts, f)
                }])
            }
            (UnigramF1, Gold::Texts { texts }) => {
                let pred = generated_text(r).unwrap_or("").trim();
                Some(vec![text::max_over_golds(pred, texts, text::unigram_f1)])
            }
            (Rouge1 | Rouge2 | RougeL, Gold::Texts { texts }) => {
                let pred = generated_text(r).unwrap_or("");
                let f = |p: &str, g: &str| match metric {
                    Rouge1 => text::rouge_n(p, g, 1),
                    Rouge2 => text::rouge_n(p, g, 2),
                    _ => text::rouge_l(p, g),
                };
                Some(vec![texts.iter().map(|g| f(pred, g)).fold(0.0, f64::max)])
            }
            (SquadF1 | ExactMatch, Gold::Answers { alternatives, .. }) => {
                Some(vec![answers_score(
                    metric,
                    generated_text(r).unwrap_or(""),
                    alternatives,
                )])
            }
            (SquadF1 | ExactMatch, Gold::Number { value }) => Some(vec![answers_score(
                metric,
                generated_text(r).unwrap_or(""),
                &[vec![format!("{value}")]],
            )]),
            (UnigramF1 | Rouge1 | Rouge2 | RougeL, Gold::Answers { alternatives, .. }) => {
                let pred = generated_text(r).unwrap_or("").trim();
                let golds: Vec<String> = alternatives.iter().map(|a| a.join(" ")).collect();
                Some(vec![golds
                    .iter()
                    .map(|g| match metric {
                        UnigramF1 => text::unigram_f1(pred, g),
                        Rouge1 => text::rouge_n(pred, g, 1),
                        Rouge2 => text::rouge_n(pred, g, 2),
                        _ => text::rouge_l(pred, g),
                    })
                    .fold(0.0, f64::max)])
            }
            (NumericAcc, gold) if numeric_golds(gold).is_some() => {
                let golds = numeric_golds(gold).unwrap_or_default();
                if golds.is_empty() {
                    Some(vec![0.0, 0.0])
                } else {
                    let pred = generated_text(r).and_then(numbers::first_number);
                    let ok = pred.is_some_and(|p| golds.iter().any(|g| numbers::matches(&p, g)));
                    Some(vec![ok as u8 as f64, 1.0])
                }
            }
            (TokenAcc | F1Macro | F1Micro | SpanF1, Gold::Tags { tags, .. }) => {
                let out = generated_text(r).unwrap_or("");
                let pad = if spec.task == TaskKind::Ner { "O" } else { "" };
                let pred = parse_tags(out, tags.len(), pad);
                Some(match metric {
                    TokenAcc => vec![
                        pred.iter().zip(tags).filter(|(p, g)| p == g).count() as f64,
                        tags.len() as f64,
                    ],
                    SpanF1 => {
                        let gs = spans::bio_spans_strict(tags);
                        let ps = spans::bio_spans_strict(&pred);
                        let tp = ps.iter().filter(|s| gs.contains(s)).count() as f64;
                        vec![tp, ps.len() as f64 - tp, gs.len() as f64 - tp]
                    }
                    _ => {
                        // labels=tagset: a tag outside the set (or a missing
                        // one) is an error of the gold tag but no class's fp
                        let mut c = ClassCounts::new(r.choices.len());
                        for i in 0..r.choices.len() {
                            c.add(i, IN_LABELS);
                        }
                        let idx = |t: &String| r.choices.iter().position(|c| c == t);
                        for (p, g) in pred.iter().zip(tags) {
                            match (idx(p), idx(g)) {
                                (pi, Some(gi)) if pi == Some(gi) => c.add(gi, TP),
                                (pi, gi) => {
                                    if let Some(gi) = gi {
                                        c.add(gi, FN);
                                    }
                                    if let Some(pi) = pi {
                                        c.add(pi, FP);
                                    }
                                }
                            }
                        }
                        if metric == F1Micro {
                            c.micro()
                        } else {
                            c.0
                        }
                    }
                })
            }
            (RelationF1, Gold::Triples { triples }) => {
                let pred = parse_triples(generated_text(r).unwrap_or(""));
                let gold: Vec<(String, String, String)> = triples
                    .iter()
                    .map(|(h, l, t)| (h.to_lowercase(), l.to_uppercase(), t.to_lowercase()))
                    .collect();
                let (tp, fp, fn_) = spans::set_counts(&pred, &gold);
                Some(vec![tp, fp, fn_])
            }
            (MucF1 | B3F1, Gold::Clusters { clusters }) => {
                let pred = parse_clusters(generated_text(r).unwrap_or(""));
                let gold: Vec<Vec<String>> = clusters
                    .iter()
                    .map(|c| c.iter().map(|m| m.to_lowercase()).collect())
                    .collect();
                let (muc, b3) = coref_stats(&pred, &gold);
                Some(if metric == MucF1 { muc } else { b3 })
            }
            (Perplexity | WordPerplexity | BitsPerByte, gold) => {
                let (lp, tokens, unit_text) = match (r.replies.first(), gold) {
                    (Some(Reply::Rolling { rolling }), Gold::Text { text }) => {
                        (rolling.logprob, rolling.tokens, text.clone())
                    }
                    (Some(Reply::Loglikelihood { results }), _) if !results.is_empty() => {
                        let cont = match r.calls.first() {
                            Some(crate::request::Call::Loglikelihood { continuations, .. }) => {
                                continuations.first().cloned().unwrap_or_default()
                            }
                            _ => String::new(),
                        };
                        (results[0].logprob, results[0].tokens, cont)
                    }
                    _ => (f64::NAN, 0, String::new()),
                };
                Some(match metric {
                    Perplexity => vec![lp, tokens as f64],
                    WordPerplexity => vec![lp, words(&unit_text) as f64],
                    _ => vec![lp, unit_text.len() as f64],
                })
            }
            (RetrievalAcc | MiningF1, _) => None, // filled by retrieval_stats
            _ => None,
        };
        if let Some(s) = s {
            m.insert(metric, s);
        }
    }
    m
}

fn embeddings(r: &Record) -> &[Vec<f32>] {
    match r.replies.first() {
        Some(Reply::Embed { embeddings }) => embeddings,
        _ => &[],
    }
}

fn retrieval_stats(spec: &SuiteSpec, records: &[Record], out: &mut [BTreeMap<Metric, Stats>]) {
    if spec.metrics.contains(&Metric::RetrievalAcc) {
        // Tatoeba: each source's nearest target among all targets must be its own.
        let targets: Vec<Option<&Vec<f32>>> =
            records.iter().map(|r| embeddings(r).get(1)).collect();
        for (i, r) in records.iter().enumerate() {
            let ok = embeddings(r).first().is_some_and(|src| {
                let sims: Vec<f64> = targets
                    .iter()
                    .map(|t| t.map_or(f64::NEG_INFINITY, |t| cosine(src, t)))
                    .collect();
                argmax(&sims) == i
            });
            out[i].insert(Metric::RetrievalAcc, vec![ok as u8 as f64]);
        }
    }
    if spec.metrics.contains(&Metric::MiningF1) {
        // BUCC: mutual nearest neighbours between the two languages are mined pairs.
        let info: Vec<(String, String, Option<String>)> = records
            .iter()
            .map(|r| match &r.gold {
                Gold::Bitext { key, lang, partner } => (key.clone(), lang.clone(), partner.clone()),
                _ => (r.example_id.clone(), String::new(), None),
            })
            .collect();
        let target_lang = "en";
        let src: Vec<usize> = (0..records.len())
            .filter(|&i| info[i].1 != target_lang)
            .collect();
        let tgt: Vec<usize> = (0..records.len())
            .filter(|&i| info[i].1 == target_lang)
            .collect();
        let emb = |i: usize| embeddings(&records[i]).first();
        let nearest = |from: usize, pool: &[usize]| -> Option<usize> {
            let e = emb(from)?;
            pool.iter()
                .filter_map(|&j| emb(j).map(|f| (j, cosine(e, f))))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|x| x.0)
        };
        for o in out.iter_mut() {
            o.insert(Metric::MiningF1, vec![0.0, 0.0, 0.0]);
        }
        for &s in &src {
            let mined = nearest(s, &tgt).filter(|&t| nearest(t, &src) == Some(s));
            let gold = info[s].2.clone();
            let (tp, fp) = match mined {
                Some(t) if Some(&info[t].0) == gold.as_ref() => (1.0, 0.0),
                Some(_) => (0.0, 1.0),
                None => (0.0, 0.0),
            };
            let fn_ = if gold.is_some() && tp == 0.0 {
                1.0
            } else {
                0.0
            };
            out[s].insert(Metric::MiningF1, vec![tp, fp, fn_]);
        }
    }
}

/// Readable per-example scores (only metrics that are meaningful per example).
pub fn per_example_scores(stats: &BTreeMap<Metric, Stats>) -> BTreeMap<String, f64> {
    use Metric::*;
    stats
        .iter()
        .filter_map(|(m, s)| match m {
            Acc | AccNorm | SquadF1 | ExactMatch | Rouge1 | Rouge2 | RougeL | UnigramF1
            | RetrievalAcc => Some((m.as_str().to_string(), s[0])),
            TokenAcc | NumericAcc => Some((m.as_str().to_string(), aggregate(*m, s, 1))),
            SpanF1 | RelationF1 => Some((m.as_str().to_string(), aggregate(*m, s, 1))),
            Perplexity => Some((m.as_str().to_string(), aggregate(*m, s, 1))),
            _ => None,
        })
        .filter(|(_, v)| v.is_finite())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_f1_averages_over_the_classes_in_the_label_set() {
        // Four classes, y_true = [0, 0, 1, 2], y_pred = [0, 1, 1, 1]; class 3
        // has no counts. from sklearn.metrics import f1_score
        // f1_score([0,0,1,2], [0,1,1,1], average="macro")                  # 0.38888888888888884
        // f1_score([0,0,1,2], [0,1,1,1], labels=[0,1,2,3], average="macro") # 0.29166666666666663
        let mut c = ClassCounts::new(4);
        for (g, p) in [(0usize, 0usize), (0, 1), (1, 1), (2, 1)] {
            if g == p {
                c.add(g, TP);
            } else {
                c.add(g, FN);
                c.add(p, FP);
            }
        }
        for k in 0..3 {
            c.add(k, IN_LABELS);
        }
        assert_eq!(
            aggregate(Metric::F1Macro, &c.0, 4),
            0.388_888_888_888_888_84
        );
        c.add(3, IN_LABELS);
        assert_eq!(
            aggregate(Metric::F1Macro, &c.0, 4),
            0.291_666_666_666_666_63
        );
    }

    #[test]
    fn parses_generated_structures() {
        assert_eq!(parse_tags("DET/DET NOUN", 3, "O"), vec!["DET", "NOUN", "O"]);
        assert_eq!(
            parse_triples("a | used-for | b\nbad line; c|PART-OF|D"),
            vec![
                ("a".into(), "USED-FOR".into(), "b".into()),
                ("c".into(), "PART-OF".into(), "d".into())
            ]
        );
    }

    #[test]
    fn a_gold_passage_past_the_shown_ones_is_a_miss() {
        // TyDi SelectP shows the first 8 candidates then "none"; gold is
        // candidate 75 (0-based). tydi_eval counts it: the prediction
        // (passage 1) is a false positive and the gold a false negative.
        let spec = crate::suite::Registry::builtin()
            .get("tydiqa-selectp")
            .expect("built-in suite")
            .spec
            .clone();
        let mut choices: Vec<String> = (1..=8).map(|i| i.to_string()).collect();
        choices.push("none".into());
        let results: Vec<_> = (0..9)
            .map(|i| serde_json::json!({"logprob": -1.0 - i as f64, "is_greedy": false, "tokens": 1}))
            .collect();
        let calls = serde_json::json!([{"call": "loglikelihood", "context": "Q", "continuations": choices}]);
        let record: Record = serde_json::from_value(serde_json::json!({
            "suite": "tydiqa-selectp", "example_id": "x",
            "prompt_hash": crate::request::prompt_hash(
                &serde_json::from_value::<Vec<crate::request::Call>>(calls.clone()).unwrap()
            ),
            "strategy": "loglikelihood", "calls": calls,
            "replies": [{"reply": "loglikelihood", "results": results}],
            "choices": choices, "gold": {"type": "maybe_index", "index": 75},
            "prompt_tokens": 1, "output_tokens": 9, "latency_ms": 0.0,
        }))
        .unwrap();
        assert_eq!(record.check(), Ok(()));
        let stats = suite_stats(&spec, &[record]);
        assert_eq!(stats[0][&Metric::PassageF1], vec![0.0, 1.0, 1.0]);
        assert_eq!(stats[0][&Metric::Acc], vec![0.0]);
    }

    #[test]
    fn perplexity_aggregates_over_tokens_not_examples() {
        // two texts: logprob -2 over 1 token and -8 over 3 tokens => ppl exp(10/4)
        let v = aggregate(Metric::Perplexity, &[-10.0, 4.0], 2);
        assert!((v - (2.5f64).exp()).abs() < 1e-12);
        let bpb = aggregate(Metric::BitsPerByte, &[-10.0, 4.0], 2);
        assert!((bpb - 2.5 / std::f64::consts::LN_2).abs() < 1e-12);
    }
}
