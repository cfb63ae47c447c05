//! The `acc_norm` convention, checked against lm-evaluation-harness on
//! hand-built records that go through the real call builder and scorer.
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
use edgebench::model::LogLikelihood;
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
