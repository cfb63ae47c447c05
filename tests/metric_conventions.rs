//! The conventions of `acc_norm` and `f1_macro`, checked against the
//! reference libraries on hand-built records that go through the real call
//! builder and scorer.
//!
//! Expected values come from a venv with the references
//! (`python -m venv /tmp/refenv && /tmp/refenv/bin/pip install lm-eval==0.4.13
//! scikit-learn==1.9.1`). lm-evaluation-harness's own scorer is run on one
//! document by this script (`lmeval_accnorm.py CHOICES LLS GOLD`):
//!
//! ```python
//! import json, sys, logging
//! logging.disable(logging.CRITICAL)
//! from lm_eval.api.task import ConfigurableTask
//! choices, lls, gold = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
//! with open("/tmp/doc.jsonl", "w") as f:
//!     f.write(json.dumps({"q": "Q", "choices": choices, "gold": gold}) + "\n")
//! task = ConfigurableTask(config={
//!     "task": "ref", "dataset_path": "json",
//!     "dataset_kwargs": {"data_files": {"test": "/tmp/doc.jsonl"}},
//!     "test_split": "test", "output_type": "multiple_choice",
//!     "doc_to_text": "{{q}}", "doc_to_choice": "{{choices}}", "doc_to_target": "{{gold}}",
//!     "target_delimiter": " ",
//!     "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}, {"metric": "acc_bytes"}]})
//! doc = next(iter(task.test_docs()))
//! print(task.process_results(doc, [(ll, False) for ll in lls]))
//! ```
//!
//! Its `acc_norm` divides by `len(choice)` of the bare choice (characters, no
//! delimiter); `acc_bytes` divides by the UTF-8 byte length.

mod common;

use edgebench::data::{self, Example, Gold};
use edgebench::metrics::{score_suite, Bootstrap, SuiteScores};
use edgebench::model::{Generation, LogLikelihood};
use edgebench::record::Record;
use edgebench::request::{self, Call, Reply, Strategy};
use edgebench::suite::{
    self,
    spec::{Metric, SuiteSpec, TaskKind},
};
use std::collections::BTreeMap;

fn spec(id: &str) -> SuiteSpec {
    suite::load_file(&common::repo().join("suites").join(format!("{id}.toml")))
        .unwrap_or_else(|e| panic!("{id}: {e}"))
}

fn example(id: &str, choices: &[&str], gold: Gold) -> Example {
    Example {
        id: id.to_string(),
        vars: BTreeMap::new(),
        choices: choices.iter().map(|c| c.to_string()).collect(),
        gold,
        truncated_bytes: 0,
        group: None,
    }
}

fn lls(v: &[f64]) -> Reply {
    Reply::Loglikelihood {
        results: v
            .iter()
            .map(|&logprob| LogLikelihood {
                logprob,
                is_greedy: false,
                tokens: 1,
            })
            .collect(),
    }
}

/// A record as the runner writes it: calls from the real builder, then `replies`.
fn record(spec: &SuiteSpec, strategy: Strategy, ex: &Example, replies: Vec<Reply>) -> Record {
    let calls = request::build(spec, strategy, ex, &[]);
    assert_eq!(calls.len(), replies.len(), "one reply per call");
    Record::new(&spec.id, ex, strategy, calls, replies)
}

fn score(spec: &SuiteSpec, mut records: Vec<Record>) -> (SuiteScores, Vec<Record>) {
    let boot = Bootstrap {
        resamples: 0,
        seed: 1,
    };
    let s = score_suite(spec, &mut records, &boot);
    (s, records)
}

fn value(s: &SuiteScores, m: Metric) -> f64 {
    s.metrics
        .iter()
        .find(|(x, _)| *x == m)
        .unwrap_or_else(|| panic!("{} not scored", m.as_str()))
        .1
        .value
}

#[test]
fn acc_norm_divides_by_the_bare_choice_length_in_characters() {
    let spec = spec("commonsenseqa");
    assert_eq!(spec.prompt.target_delimiter, " ");
    let recs = vec![
        // lmeval_accnorm.py '["ab","abcd"]' '[-3.0,-5.2]' 1
        //   -> {'acc': 0.0, 'acc_norm': 1.0, 'acc_bytes': 1.0}
        // (-3/2 < -5.2/4; with the delimiter counted, -3/3 > -5.2/5 would pick 0)
        record(
            &spec,
            Strategy::Loglikelihood,
            &example("a", &["ab", "abcd"], Gold::Index { index: 1 }),
            vec![lls(&[-3.0, -5.2])],
        ),
        // lmeval_accnorm.py '["été","summer"]' '[-4.0,-7.0]' 1
        //   -> {'acc': 0.0, 'acc_norm': 1.0, 'acc_bytes': 0.0}
        // (characters: -4/3 < -7/6; bytes: -4/5 > -7/6)
        record(
            &spec,
            Strategy::Loglikelihood,
            &example("b", &["été", "summer"], Gold::Index { index: 1 }),
            vec![lls(&[-4.0, -7.0])],
        ),
    ];
    match &recs[0].calls[0] {
        Call::Loglikelihood { continuations, .. } => assert_eq!(continuations, &[" ab", " abcd"]),
        c => panic!("unexpected call {c:?}"),
    }
    let (s, recs) = score(&spec, recs);
    for r in &recs {
        assert_eq!(r.scores["acc"], 0.0, "{}", r.example_id);
        assert_eq!(r.scores["acc_norm"], 1.0, "{}", r.example_id);
    }
    assert_eq!(value(&s, Metric::Acc), 0.0);
    assert_eq!(value(&s, Metric::AccNorm), 1.0);
}

#[test]
fn records_hold_the_bare_choices_their_continuations_were_built_from() {
    // acc_norm reads the choice text from the record, so rescoring an old run
    // needs `choices[i]` to be what followed the delimiter in the request.
    let root = common::repo().join("fixtures");
    let specs = suite::load_dir(&common::repo().join("suites")).expect("valid suites");
    let mut checked = 0;
    for s in specs
        .iter()
        .filter(|s| matches!(s.task, TaskKind::MultipleChoice | TaskKind::Classification))
    {
        let exs = data::load_examples(s, &root).unwrap_or_else(|e| panic!("{}: {e}", s.id));
        for ex in &exs {
            let calls = request::build(s, Strategy::Loglikelihood, ex, &exs);
            let rec = Record::new(&s.id, ex, Strategy::Loglikelihood, calls, vec![]);
            let Call::Loglikelihood { continuations, .. } = &rec.calls[0] else {
                panic!("{}: not a loglikelihood call", s.id)
            };
            let delim = &s.prompt.target_delimiter;
            let expected: Vec<String> = rec.choices.iter().map(|c| format!("{delim}{c}")).collect();
            assert_eq!(continuations, &expected, "{} {}", s.id, ex.id);
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} examples checked");
}

#[test]
fn multi_label_f1_macro_counts_every_label_column() {
    // import numpy as np; from sklearn.metrics import f1_score
    // Y_true = np.zeros((3, 10), int); Y_pred = np.zeros((3, 10), int)
    // for r, (g, p) in enumerate([({0, 3}, {0}), (set(), {5}), ({3, 7}, {3, 7, 8})]):
    //     Y_true[r, list(g)] = 1; Y_pred[r, list(p)] = 1
    // f1_score(Y_true, Y_pred, average="macro")  # 0.26666666666666666
    // f1_score(Y_true, Y_pred, average="micro")  # 0.6666666666666666
    // (columns 1, 2, 4, 6, 9 are never gold nor predicted and score 0)
    let spec = spec("lexglue-ecthr-a");
    assert_eq!(spec.task, TaskKind::MultiLabelClassification);
    assert_eq!(spec.labels.values.len(), 10);
    let words: Vec<&str> = spec.labels.words.iter().map(String::as_str).collect();
    let cases: [(&[usize], &[usize]); 3] = [(&[0, 3], &[0]), (&[], &[5]), (&[3, 7], &[3, 7, 8])];
    let recs: Vec<Record> = cases
        .iter()
        .enumerate()
        .map(|(i, (gold, pred))| {
            let ex = example(
                &format!("c{i}"),
                &words,
                Gold::Indices {
                    indices: gold.to_vec(),
                },
            );
            // per label: loglikelihood of " yes" then " no"
            let replies = (0..words.len())
                .map(|l| {
                    if pred.contains(&l) {
                        lls(&[-0.5, -2.0])
                    } else {
                        lls(&[-2.0, -0.5])
                    }
                })
                .collect();
            record(&spec, Strategy::Loglikelihood, &ex, replies)
        })
        .collect();
    let (s, _) = score(&spec, recs);
    assert_eq!(value(&s, Metric::F1Macro), 0.266_666_666_666_666_66);
    assert_eq!(value(&s, Metric::F1Micro), 0.666_666_666_666_666_6);
}

#[test]
fn single_label_f1_macro_averages_over_the_labels_present() {
    // scikit-learn's f1_score docstring example, on a 13-label suite: the 10
    // labels neither gold nor predicted are left out (labels=None).
    // from sklearn.metrics import f1_score
    // y_true = [0, 1, 2, 0, 1, 2]; y_pred = [0, 2, 1, 0, 0, 1]
    // f1_score(y_true, y_pred, average="macro")  # 0.26666666666666666
    // f1_score(y_true, y_pred, average="micro")  # 0.3333333333333333
    let spec = spec("dapt-chemprot");
    assert_eq!(spec.task, TaskKind::Classification);
    let words: Vec<&str> = spec.labels.words.iter().map(String::as_str).collect();
    assert_eq!(words.len(), 13);
    let recs: Vec<Record> = [(0, 0), (1, 2), (2, 1), (0, 0), (1, 0), (2, 1)]
        .iter()
        .enumerate()
        .map(|(i, &(gold, pred))| {
            let scores: Vec<f64> = (0..words.len())
                .map(|c| if c == pred { -1.0 } else { -9.0 })
                .collect();
            let ex = example(&format!("e{i}"), &words, Gold::Index { index: gold });
            record(&spec, Strategy::Loglikelihood, &ex, vec![lls(&scores)])
        })
        .collect();
    let (s, _) = score(&spec, recs);
    assert_eq!(value(&s, Metric::F1Macro), 0.266_666_666_666_666_66);
    assert_eq!(value(&s, Metric::F1Micro), 0.333_333_333_333_333_3);
}

#[test]
fn udpos_f1_is_over_the_17_upos_tags() {
    // Gold and generated tags, aligned by position: "FOO" is outside the tag
    // set, "" a missing tag, and a tag after the last token is dropped.
    // from sklearn.metrics import f1_score
    // UPOS = ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART",
    //         "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X"]
    // gold = ["DET", "NOUN", "VERB", "PUNCT", "PRON", "AUX", "ADJ", "NUM", "NOUN"]
    // pred = ["DET", "NOUN", "NOUN", "FOO",   "PRON", "AUX", "",    "NUM", "NOUN"]
    // f1_score(gold, pred, labels=UPOS, average="macro")  # 0.2823529411764706
    // f1_score(gold, pred, labels=UPOS, average="micro")  # 0.75
    // (labels absent from both sides score 0: zero_division default)
    let mut spec = spec("xtreme-udpos");
    assert_eq!(spec.task, TaskKind::TokenTagging);
    assert_eq!(spec.labels.values.len(), 17);
    spec.metrics.push(Metric::F1Micro);
    let tagset: Vec<&str> = spec.labels.values.iter().map(String::as_str).collect();
    let cases = [
        ("DET NOUN VERB PUNCT", "DET NOUN NOUN FOO"),
        ("PRON AUX ADJ", "PRON AUX"),
        ("NUM NOUN", "two/NUM dogs/NOUN ./PUNCT"),
    ];
    let recs: Vec<Record> = cases
        .iter()
        .enumerate()
        .map(|(i, (gold, out))| {
            let tags: Vec<String> = gold.split(' ').map(String::from).collect();
            let ex = example(
                &format!("s{i}"),
                &tagset,
                Gold::Tags {
                    tokens: vec!["w".into(); tags.len()],
                    tags,
                },
            );
            let reply = Reply::Generate {
                generation: Generation {
                    text: out.to_string(),
                    tokens: 0,
                    prompt_tokens: 0,
                },
            };
            record(&spec, Strategy::Generation, &ex, vec![reply])
        })
        .collect();
    let (s, _) = score(&spec, recs);
    assert_eq!(value(&s, Metric::F1Macro), 0.282_352_941_176_470_6);
    assert_eq!(value(&s, Metric::F1Micro), 0.75);
    assert_eq!(value(&s, Metric::TokenAcc), 6.0 / 9.0);
}
