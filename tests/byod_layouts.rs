//! Bringing your own dataset, exactly as `docs/suites.md` tells it: the data
//! and suite files of that page are written out, added with `--suites-dir` /
//! `--suite-file` beside the 47 built-in suites, and scored by `edgebench
//! score` with gold predictions (1.0) and with known-wrong ones (values
//! worked out by hand below, SQuAD v1.1 / seqeval / scikit-learn
//! conventions); the other layouts of the page are checked prompt by prompt;
//! bad data exits 2 naming the file, line or record, field and suite file.

mod common;

use edgebench::data::{self, Gold};
use edgebench::request;
use edgebench::suite;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;

const BUILT_IN: usize = 47;

/// The files `docs/suites.md` shows, each block preceded by `<!-- file: PATH -->`.
fn doc_files() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(common::repo().join("docs/suites.md")).unwrap();
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(l) = lines.next() {
        let Some(path) = l
            .strip_prefix("<!-- file: ")
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            continue;
        };
        assert!(
            lines.next().unwrap().starts_with("```"),
            "{path}: no code block"
        );
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        out.push((path.to_string(), body.join("\n") + "\n"));
    }
    out
}

/// A working folder holding every file of the page.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let files = doc_files();
    assert_eq!(
        files.len(),
        12,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (rel, text) in files {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

fn eb(dir: &Path, args: &[&str]) -> Output {
    common::edgebench(dir, args)
}

/// Replays `preds` (one JSON object per example) for `suite`; returns results.json's row.
fn score(dir: &Path, suite: &str, run: &str, preds: &[Value]) -> Value {
    let file = dir.join(format!("{run}.jsonl"));
    let text: String = preds.iter().map(|p| format!("{p}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let o = eb(
        dir,
        &[
            "score",
            "--suites-dir",
            "my-suites",
            "--data-dir",
            "data",
            "--out",
            "out",
            "--suite",
            suite,
            "--predictions",
            file.to_str().unwrap(),
            "--run-id",
            run,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("out/runs").join(run).join("results.json")).unwrap(),
    )
    .unwrap();
    results["results"][suite].clone()
}

fn metric(row: &Value, name: &str) -> f64 {
    row[format!("{name},none")]
        .as_f64()
        .unwrap_or_else(|| panic!("{name} in {row}"))
}

fn close(got: f64, want: f64) {
    assert!((got - want).abs() < 1e-9, "got {got}, want {want}");
}

/// Loads a suite of the page through the library, as the binary does.
fn load(dir: &Path, id: &str) -> (suite::spec::SuiteSpec, Vec<data::Example>) {
    let path: PathBuf = dir.join("my-suites").join(format!("{id}.toml"));
    let spec = suite::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let ex = data::load_examples(&spec, &dir.join("data")).unwrap_or_else(|e| panic!("{e}"));
    (spec, ex)
}

#[test]
fn the_pages_suites_join_the_built_in_ones() {
    let dir = workdir();
    let o = eb(
        dir.path(),
        &["suites", "list", "--json", "--suites-dir", "my-suites"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    let list: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.len(), BUILT_IN + 6);
    for id in [
        "fin-sentiment",
        "news-ner",
        "science-squad",
        "fin-tableqa",
        "support-turns",
        "copa-mini",
        "commonsenseqa",
    ] {
        assert!(list.iter().any(|v| v["id"] == id), "{id}");
    }
    // a single file the same way
    let o = eb(
        dir.path(),
        &[
            "suites",
            "list",
            "--json",
            "--suite-file",
            "my-suites/news-ner.toml",
        ],
    );
    let list: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.len(), BUILT_IN + 1);
    let o = eb(
        dir.path(),
        &[
            "suites",
            "validate",
            "--suites-dir",
            "my-suites",
            "--data-dir",
            "data",
        ],
    );
    let t = common::text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("53 suite files valid, 6 with data under data loaded"),
        "{t}"
    );
}

#[test]
fn flat_jsonl_classification_scores_by_replay() {
    let dir = workdir();
    let (_, ex) = load(dir.path(), "fin-sentiment");
    let ids: Vec<&str> = ex.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        ["test-1", "test-2", "test-3", "test-4", "test-5", "test-6"]
    );
    let gold = [2, 0, 1, 2, 1, 0];
    let ll = |i: usize| {
        let mut v = vec![-3.0, -3.0, -3.0];
        v[i] = -1.0;
        json!(v)
    };
    let preds = |p: &[usize]| -> Vec<Value> {
        p.iter()
            .enumerate()
            .map(|(k, i)| json!({"id": format!("test-{}", k + 1), "loglikelihoods": ll(*i)}))
            .collect()
    };
    let row = score(dir.path(), "fin-sentiment", "gold", &preds(&gold));
    close(metric(&row, "acc"), 1.0);
    close(metric(&row, "f1_macro"), 1.0);
    // predicted [2, 0, 2, 2, 1, 1] against gold [2, 0, 1, 2, 1, 0]: 4 of 6 right,
    // acc = 4/6. Per class (tp, fp, fn): negative (1, 0, 1) F1 = 2/3; neutral
    // (1, 1, 1) F1 = 1/2; positive (2, 1, 0) F1 = 2*(2/3)*1/(2/3+1) = 4/5.
    // f1_macro = (2/3 + 1/2 + 4/5) / 3 = 0.6555...
    // (sklearn.metrics.f1_score(gold, pred, average="macro") = 0.6555555555555556)
    let row = score(
        dir.path(),
        "fin-sentiment",
        "wrong",
        &preds(&[2, 0, 2, 2, 1, 1]),
    );
    close(metric(&row, "acc"), 4.0 / 6.0);
    close(metric(&row, "f1_macro"), (2.0 / 3.0 + 0.5 + 0.8) / 3.0);
}

#[test]
fn conll_ner_file_scores_by_replay() {
    let dir = workdir();
    let (spec, ex) = load(dir.path(), "news-ner");
    let ids: Vec<&str> = ex.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["test-3", "test-12", "test-27"]);
    let Gold::Tags { tokens, tags } = &ex[1].gold else {
        panic!("{:?}", ex[1].gold)
    };
    // `"` is a token, not a quote: the sentence ends at its closing quote
    assert_eq!(tokens.len(), 12);
    assert_eq!((tokens[6].as_str(), tokens[11].as_str()), ("\"", "\""));
    assert_eq!(tags[2..4], ["B-PER", "I-PER"]);
    assert_eq!(
        request::render(&spec, &ex[0]),
        "Tag each token with its entity (BIO).\nTokens: Nokia shares rose in Helsinki on Monday .\nTags:"
    );
    let text = |e: &data::Example| match &e.gold {
        Gold::Tags { tags, .. } => tags.join(" "),
        g => panic!("{g:?}"),
    };
    let gold: Vec<Value> = ex
        .iter()
        .map(|e| json!({"id": e.id, "text": text(e)}))
        .collect();
    let row = score(dir.path(), "news-ner", "gold", &gold);
    close(metric(&row, "span_f1"), 1.0);
    close(metric(&row, "token_acc"), 1.0);
    // gold entities: ORG Nokia, LOC Helsinki | PER Anna Virtanen | ORG European
    // Commission, ORG Intel, LOC Brussels (6). Predicted: Helsinki as PER (1 tp,
    // 1 fp, 1 fn); nothing in sentence 2 (1 fn); European Commission cut to
    // `European` (ORG 1-2 is a fp, ORG 1-3 a fn) with Intel and Brussels right
    // (2 tp). tp = 3, fp = 2, fn = 3: P = 3/5, R = 3/6, F1 = 2*0.6*0.5/1.1 = 6/11.
    // token_acc: 7/8 + 10/12 + 7/8 right = 24/28 = 6/7.
    let wrong = [
        "B-ORG O O O B-PER O O O",
        "O O O O O O O O O O O O",
        "O B-ORG O O B-ORG O B-LOC O",
    ];
    let preds: Vec<Value> = ex
        .iter()
        .zip(wrong)
        .map(|(e, t)| json!({"id": e.id, "text": t}))
        .collect();
    let row = score(dir.path(), "news-ner", "wrong", &preds);
    close(metric(&row, "span_f1"), 6.0 / 11.0);
    close(metric(&row, "token_acc"), 24.0 / 28.0);
}

#[test]
fn squad_v1_nested_questions_become_one_example_each() {
    let dir = workdir();
    let (spec, ex) = load(dir.path(), "science-squad");
    let ids: Vec<&str> = ex.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["ps-001", "ps-002", "ps-003", "pt-001", "pt-002"]);
    assert_eq!(
        ex[2].gold,
        Gold::Texts {
            texts: vec!["RuBisCO".into(), "The enzyme RuBisCO".into()]
        }
    );
    let p = request::render(&spec, &ex[2]);
    assert!(
        p.starts_with("Title: Photosynthesis\nContext: The light reactions capture energy")
            && p.ends_with(
                "\nQuestion: Which enzyme catalyses the first step of carbon fixation?\nAnswer:"
            ),
        "{p}"
    );
    let gold: Vec<Value> = ex
        .iter()
        .map(|e| match &e.gold {
            Gold::Texts { texts } => json!({"id": e.id, "text": texts[0]}),
            g => panic!("{g:?}"),
        })
        .collect();
    let row = score(dir.path(), "science-squad", "gold", &gold);
    close(metric(&row, "squad_f1"), 1.0);
    close(metric(&row, "exact_match"), 1.0);
    // SQuAD v1.1 (lower-case, drop punctuation and a/an/the; max over answers):
    //   ps-001 "leaf cells" vs "the chloroplasts of leaf cells" (4 tokens):
    //          2 common, P = 1, R = 1/2, F1 = 2/3 (the best of three); EM 0
    //   ps-002 "oxygen": F1 1, EM 1
    //   ps-003 "carbon dioxide": F1 0, EM 0
    //   pt-001 "A few centimetres per year." normalises to the answer: F1 1, EM 1
    //   pt-002 "new crust forms at ridges" vs "at midocean ridges": 2 common,
    //          P = 2/5, R = 2/3, F1 = 1/2; EM 0
    // squad_f1 = (2/3 + 1 + 0 + 1 + 1/2) / 5 = 0.6333..., exact_match = 2/5
    let wrong = [
        "leaf cells",
        "oxygen",
        "carbon dioxide",
        "A few centimetres per year.",
        "new crust forms at ridges",
    ];
    let preds: Vec<Value> = ex
        .iter()
        .zip(wrong)
        .map(|(e, t)| json!({"id": e.id, "text": t}))
        .collect();
    let row = score(dir.path(), "science-squad", "wrong", &preds);
    close(
        metric(&row, "squad_f1"),
        (2.0 / 3.0 + 1.0 + 0.0 + 1.0 + 0.5) / 5.0,
    );
    close(metric(&row, "exact_match"), 0.4);
}

#[test]
fn a_table_with_its_questions_renders_the_table_per_question() {
    let dir = workdir();
    let (spec, ex) = load(dir.path(), "fin-tableqa");
    let ids: Vec<&str> = ex.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["q-01", "q-02"]);
    assert_eq!(
        request::render(&spec, &ex[0]),
        " | 2019 | 2018\nRevenue | 1,200 | 1,050\nOperating costs | 900 | 860\n\
         Revenue grew on higher volumes in Europe.\nQuestion: What was the revenue in 2019?\nAnswer:"
    );
    // the page shows this prompt: keep them the same
    let doc = std::fs::read_to_string(common::repo().join("docs/suites.md")).unwrap();
    assert!(doc.contains(&format!("```text\n{}\n```", request::render(&spec, &ex[0]))));
    assert_eq!(
        ex[1].gold,
        Gold::Texts {
            texts: vec!["860".into()]
        }
    );
}

#[test]
fn a_dialogue_gives_one_example_per_turn_with_the_turns_before() {
    let dir = workdir();
    let (spec, ex) = load(dir.path(), "support-turns");
    let ids: Vec<&str> = ex.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["d-01#0", "d-01#1", "d-01#2", "d-01#3"]);
    assert_eq!(
        request::render(&spec, &ex[2]),
        "My order has not arrived.\nSorry to hear that. What is the order number?\nuser:"
    );
    assert_eq!(request::render(&spec, &ex[0]), "\nuser:");
    assert_eq!(
        ex[3].gold,
        Gold::Texts {
            texts: vec!["Thanks, it left the warehouse today.".into()]
        }
    );
}

#[test]
fn mapped_values_fill_the_prompt() {
    let dir = workdir();
    let (spec, ex) = load(dir.path(), "copa-mini");
    assert_eq!(
        request::render(&spec, &ex[0]),
        "The street lights came on. because"
    );
    assert_eq!(
        request::render(&spec, &ex[1]),
        "She dropped the glass on the tiles. therefore"
    );
    // a value the map does not list names the line, the field and the map
    let f = dir.path().join("data/commonsense-copa/val.jsonl");
    let text = std::fs::read_to_string(&f)
        .unwrap()
        .replacen("\"effect\"", "\"result\"", 1);
    std::fs::write(&f, text).unwrap();
    let e = data::load_examples(&spec, &dir.path().join("data")).unwrap_err();
    assert_eq!(e.line, 2);
    let m = e.to_string();
    assert!(
        m.contains("val.jsonl:2: field `question` holds `result`, which [maps.connective] of ")
            && m.contains("my-suites/copa-mini.toml does not list"),
        "{m}"
    );
}

/// The error messages `docs/suites.md` shows.
fn doc_errors() -> Vec<String> {
    let doc = std::fs::read_to_string(common::repo().join("docs/suites.md")).unwrap();
    let section = doc.split("## When the data does not fit").nth(1).unwrap();
    let block = section.split("```text\n").nth(1).unwrap();
    block
        .split("\n```")
        .next()
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// `score` on broken data: exit 2 and the message.
fn refused(dir: &Path, suite: &str) -> String {
    let o = eb(
        dir,
        &[
            "score",
            "--suites-dir",
            "my-suites",
            "--data-dir",
            "data",
            "--out",
            "out",
            "--suite",
            suite,
            "--predictions",
            "none.jsonl",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn data_errors_name_file_line_field_and_suite_file() {
    let dir = workdir();
    let d = dir.path();
    let shown = doc_errors();
    assert_eq!(shown.len(), 3);
    // a question without its text: the record, the item and the field
    let f = d.join("data/science-squad/dev.json");
    let text = std::fs::read_to_string(&f).unwrap().replacen(
        "\"question\": \"What gas is released as a by-product?\", ",
        "",
        1,
    );
    std::fs::write(&f, text).unwrap();
    let m = refused(d, "science-squad");
    assert!(m.contains(&shown[0]), "{m}");

    // a token line short of a column
    let f = d.join("data/news-conll/test.txt");
    let text = std::fs::read_to_string(&f).unwrap().replacen(
        "Virtanen NNP I-NP I-PER",
        "Virtanen I-NP I-PER",
        1,
    );
    std::fs::write(&f, text).unwrap();
    let m = refused(d, "news-ner");
    assert!(m.contains(&shown[1]), "{m}");

    // the same id in two files: both places
    let dup = d.join("data/finance-sentiment");
    std::fs::write(
        dup.join("a.jsonl"),
        "{\"id\": \"s-1\", \"sentence\": \"Sales rose.\", \"label\": 2}\n\
         {\"id\": \"s-7\", \"sentence\": \"Costs fell.\", \"label\": 2}\n",
    )
    .unwrap();
    std::fs::write(
        dup.join("b.jsonl"),
        "{\"id\": \"s-2\", \"sentence\": \"Orders fell.\", \"label\": 0}\n\
         {\"id\": \"s-7\", \"sentence\": \"Orders fell again.\", \"label\": 0}\n",
    )
    .unwrap();
    let s = d.join("my-suites/fin-sentiment.toml");
    let text = std::fs::read_to_string(&s)
        .unwrap()
        .replace("eval = \"test.jsonl\"", "eval = \"[ab].jsonl\"");
    std::fs::write(&s, text).unwrap();
    let m = refused(d, "fin-sentiment");
    assert!(m.contains(&shown[2]), "{m}");
}
