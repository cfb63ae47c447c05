//! Bringing your own dataset, through the real binary: suites added from a
//! temporary folder beside the 47 built-in ones, in their datasets' own
//! layouts. A TAT-QA-like numeric set mixes number, text and span-list golds
//! with a per-record scale; a DROP-like set has multi-span answers with
//! alternatives; a multilingual SQuAD-layout set is grouped by language.
//! Gold predictions replayed through `edgebench score` score 1.0; known-wrong
//! ones score the values worked out by hand in the comments. A suite of a
//! domain outside the paper's eight is reported under its own name and
//! leaves the paper's domain scores alone unless it names a `paper_domain`.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A scratch folder holding `suites/`, `data/` and `out/`.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    fn eb(&self, args: &[&str]) -> Output {
        common::edgebench(self.dir.path(), args)
    }

    /// Replays `preds` (one `{"id", "text"}` per line) for `suite` (found
    /// in `suites/`) as run `run_id`; returns its `results.json`.
    fn replay(&self, suite: &str, run_id: &str, preds: &[(&str, &str)]) -> Value {
        let lines: String = preds
            .iter()
            .map(|(id, t)| format!("{}\n", serde_json::json!({"id": id, "text": t})))
            .collect();
        self.write(&format!("{run_id}.jsonl"), &lines);
        let o = self.eb(&[
            "score",
            "--suite",
            suite,
            "--predictions",
            &format!("{run_id}.jsonl"),
            "--suites-dir",
            "suites",
            "--data-dir",
            "data",
            "--out",
            "out",
            "--run-id",
            run_id,
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
        serde_json::from_str(&self.read(&format!("out/runs/{run_id}/results.json"))).unwrap()
    }
}

fn value(results: &Value, key: &str, metric: &str) -> f64 {
    results["results"][key][format!("{metric},none")]
        .as_f64()
        .unwrap_or_else(|| panic!("no {metric} for {key} in {results}"))
}

fn assert_close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() < 1e-9, "{what}: {got} != {want}");
}

// ------------------------------------------------------------ TAT-QA-like

/// TAT-QA question objects (`uid`, `question`, `answer`, `answer_type`,
/// `scale`), one per line: arithmetic answers are numbers, span answers
/// lists of strings (or a bare string), scales as TAT-QA writes them.
const TATQA: &str = r#"{"uid": "t1", "question": "What was the revenue in 2019?", "answer": 1496.5, "answer_type": "arithmetic", "scale": "thousand"}
{"uid": "t2", "question": "What was the change in gross margin?", "answer": -2.5, "answer_type": "arithmetic", "scale": "percent"}
{"uid": "t3", "question": "What was the cost of sales?", "answer": ["$1,234"], "answer_type": "span", "scale": "million"}
{"uid": "t4", "question": "Did revenue increase?", "answer": "yes", "answer_type": "span", "scale": ""}
{"uid": "t5", "question": "Which segments grew?", "answer": ["Americas", "Europe"], "answer_type": "multi-span", "scale": ""}
{"uid": "t6", "question": "What was the operating loss?", "answer": "(3,200)", "answer_type": "span", "scale": "thousand"}
"#;

const TATQA_SUITE: &str = r#"id = "tatqa-like"
domain = "finance"
dataset = "TAT-QA-like questions"
citation = "Zhu et al. 2021. TAT-QA. ACL 2021."
task = "generative_qa"
metrics = ["numeric_acc", "exact_match", "squad_f1"]

[data]
dir = "tatqa"
eval = "dev.jsonl"
format = "jsonl"

[fields]
id = "uid"
answer = "answer"
answer_format = "spans"
scale = "scale"

[fields.inputs]
question = "question"

[prompt]
template = "Question: {question}\nAnswer:"
stop = ["\n"]
"#;

fn tatqa() -> Scratch {
    let s = Scratch::new();
    s.write("data/tatqa/dev.jsonl", TATQA);
    s.write("suites/tatqa-like.toml", TATQA_SUITE);
    s
}

#[test]
fn numeric_golds_mixed_with_words_and_spans_score_by_their_scale() {
    let s = tatqa();
    let gold = s.replay(
        "tatqa-like",
        "gold",
        &[
            ("t1", "1496.5"),
            ("t2", "-2.5"),
            ("t3", "$1,234"),
            ("t4", "yes"),
            ("t5", "Americas; Europe"),
            ("t6", "(3,200)"),
        ],
    );
    for m in ["numeric_acc", "exact_match", "squad_f1"] {
        assert_close(value(&gold, "tatqa-like", m), 1.0, m);
    }
    // "yes" and the two-span answer are not numbers: numeric_acc leaves them
    // out (4 examples scored) and says so in every report
    assert_eq!(gold["results"]["tatqa-like"]["numeric_acc_unread,none"], 2);
    let summary = s.read("out/runs/gold/summary.md");
    assert!(
        summary.contains(
            "`tatqa-like`: numeric_acc cannot read the gold of 2 example(s), left out of it: t4, t5"
        ),
        "{summary}"
    );

    let wrong = s.replay(
        "tatqa-like",
        "wrong",
        &[
            ("t1", "1496.5 million"),
            ("t2", "2.5"),
            ("t3", "1,234 million"),
            ("t4", "no"),
            ("t5", "Americas"),
            ("t6", "3,200"),
        ],
    );
    // numeric_acc over t1, t2, t3, t6:
    //   t1 1496.5 million = 1.4965e9 vs 1496.5 thousand = 1.4965e6: wrong
    //   t2 2.5 vs -2.5 percent: flipped sign, wrong
    //   t3 1,234 million = 1.234e9 vs $1,234 million: right
    //   t6 3,200 vs (3,200) thousand: flipped sign, wrong       -> 1/4
    assert_close(
        value(&wrong, "tatqa-like", "numeric_acc"),
        0.25,
        "numeric_acc",
    );
    // exact_match (SQuAD normalisation drops punctuation, so "-2.5" and
    // "2.5" are both "25", "(3,200)" and "3,200" both "3200"):
    //   t1 "14965 million" vs "14965": 0; t2 1; t3 "1234 million" vs "1234": 0;
    //   t4 0; t5 span sets {americas} vs {americas, europe}: 0; t6 1 -> 2/6
    assert_close(
        value(&wrong, "tatqa-like", "exact_match"),
        2.0 / 6.0,
        "exact_match",
    );
    // squad_f1: t1 p = 1/2, r = 1 -> 2/3; t2 1; t3 2/3; t4 0;
    //   t5 DROP bag F1: one of two gold spans -> 1/2; t6 1
    //   (2/3 + 1 + 2/3 + 0 + 1/2 + 1) / 6 = 23/36
    assert_close(
        value(&wrong, "tatqa-like", "squad_f1"),
        23.0 / 36.0,
        "squad_f1",
    );
}

#[test]
fn a_word_among_number_golds_no_longer_aborts() {
    let s = tatqa();
    s.write(
        "suites/tatqa-like.toml",
        &TATQA_SUITE
            .replace(r#"answer_format = "spans""#, r#"answer_format = "number""#)
            .replace("scale = \"scale\"\n", ""),
    );
    s.write(
        "data/tatqa/dev.jsonl",
        r#"{"uid": "n1", "question": "How much?", "answer": 1.5}
{"uid": "n2", "question": "How much?", "answer": "2,000"}
{"uid": "n3", "question": "Did it grow?", "answer": "yes"}
"#,
    );
    let r = s.replay(
        "tatqa-like",
        "number",
        &[("n1", "1.5"), ("n2", "It was 2000."), ("n3", "yes")],
    );
    // n1 and n2 are read and right, n3 is left out of numeric_acc
    assert_close(value(&r, "tatqa-like", "numeric_acc"), 1.0, "numeric_acc");
    assert_eq!(r["results"]["tatqa-like"]["numeric_acc_unread,none"], 1);
    // exact match: "15" = "15"; "it was 2000" != "2000"; "yes" = "yes" -> 2/3
    assert_close(
        value(&r, "tatqa-like", "exact_match"),
        2.0 / 3.0,
        "exact_match",
    );
}

#[test]
fn validate_warns_about_golds_numeric_acc_cannot_read() {
    let s = tatqa();
    let o = s.eb(&[
        "suites",
        "validate",
        "--suites-dir",
        "suites",
        "--data-dir",
        "data",
    ]);
    let t = common::text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("warning: tatqa-like: numeric_acc cannot read the gold of 2 example(s) and leaves them out: t4, t5"),
        "{t}"
    );
}

#[test]
fn an_unknown_scale_names_file_line_and_field() {
    let s = tatqa();
    s.write(
        "data/tatqa/dev.jsonl",
        &TATQA.replace(r#""scale": "million""#, r#""scale": "dozen""#),
    );
    let o = s.eb(&[
        "suites",
        "validate",
        "--suites-dir",
        "suites",
        "--data-dir",
        "data",
    ]);
    let t = common::text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("dev.jsonl:3"), "{t}");
    assert!(
        t.contains("field `scale` ([fields].scale of suite `tatqa-like`): scale `dozen` is not one of thousand, million, billion, percent"),
        "{t}"
    );
}

// ------------------------------------------------------------- DROP-like

/// DROP-style records: several validated answers, each a list of spans.
const DROP: &str = r#"{"query_id": "d1", "passage": "Brady threw to Manning.", "question": "Which quarterbacks played?", "validated_answers": [{"spans": ["Tom Brady", "Peyton Manning"]}, {"spans": ["Brady", "Manning"]}]}
{"query_id": "d2", "passage": "The game was in Denver.", "question": "Where was the game?", "validated_answers": [{"spans": ["Denver"]}]}
{"query_id": "d3", "passage": "Field goals of 2, 7 and 12 yards.", "question": "Which field goals were kicked?", "validated_answers": [{"spans": ["2 yards", "7 yards", "12 yards"]}]}
"#;

const DROP_SUITE: &str = r#"id = "drop-like"
domain = "reading"
dataset = "DROP-like multi-span questions"
citation = "Dua et al. 2019. DROP. NAACL 2019."
task = "generative_qa"
metrics = ["squad_f1", "exact_match"]

[data]
dir = "drop"
eval = "dev.jsonl"
format = "jsonl"

[fields]
id = "query_id"
answer = "validated_answers[].spans"
answer_format = "spans"

[fields.inputs]
passage = "passage"
question = "question"

[prompt]
template = "{passage}\nQuestion: {question}\nAnswer:"
stop = ["\n"]
"#;

#[test]
fn multi_span_answers_are_scored_as_sets() {
    let s = Scratch::new();
    s.write("data/drop/dev.jsonl", DROP);
    s.write("suites/drop-like.toml", DROP_SUITE);
    let gold = s.replay(
        "drop-like",
        "gold",
        &[
            ("d1", "Peyton Manning; Tom Brady"),
            ("d2", "Denver"),
            ("d3", "2 yards, 7 yards, 12 yards"),
        ],
    );
    assert_close(value(&gold, "drop-like", "squad_f1"), 1.0, "squad_f1");
    assert_close(value(&gold, "drop-like", "exact_match"), 1.0, "exact_match");
    let wrong = s.replay(
        "drop-like",
        "wrong",
        &[
            ("d1", "Brady"),
            ("d2", "Denver Broncos"),
            ("d3", "2 yards; 7 yards; 9 yards"),
        ],
    );
    // d1: against {tom brady, peyton manning}: f1(brady, tom brady) = 2/3 over
    //     2 slots = 0.33; against {brady, manning}: 1 over 2 slots = 0.5 -> 0.5
    // d2: one span, SQuAD F1: p = 1/2, r = 1 -> 2/3
    // d3: 2 and 7 yards align exactly; "9 yards" lacks the gold's 12 -> 0:
    //     2/3 -> 0.67 (DROP rounds to two decimals)
    // (0.5 + 2/3 + 0.67) / 3
    assert_close(
        value(&wrong, "drop-like", "squad_f1"),
        (0.5 + 2.0 / 3.0 + 0.67) / 3.0,
        "squad_f1",
    );
    assert_close(
        value(&wrong, "drop-like", "exact_match"),
        0.0,
        "exact_match",
    );
    // the first span alone used to count as the answer: it no longer does
    let first_only = s.replay(
        "drop-like",
        "first",
        &[("d1", "Tom Brady"), ("d2", "Denver"), ("d3", "2 yards")],
    );
    // d1 1/2 (best over both alternatives), d2 1, d3 1/3 = 0.33
    assert_close(
        value(&first_only, "drop-like", "squad_f1"),
        (0.5 + 1.0 + 0.33) / 3.0,
        "squad_f1",
    );
}

// ----------------------------------------------------- grouped by language

/// SQuAD / Hugging Face layout with a `language` field (as MLQA and TyDi
/// GoldP records carry one).
const MULTI: &str = r#"{"id": "m1", "language": "en", "context": "Paris is the capital of France.", "question": "What is the capital of France?", "answers": {"text": ["Paris"], "answer_start": [0]}}
{"id": "m2", "language": "en", "context": "The tower was finished in 1889.", "question": "When was the tower finished?", "answers": {"text": ["1889"], "answer_start": [26]}}
{"id": "m3", "language": "de", "context": "Berlin ist die Hauptstadt.", "question": "Was ist die Hauptstadt?", "answers": {"text": ["Berlin"], "answer_start": [0]}}
{"id": "m4", "language": "de", "context": "Der Rhein fliesst durch Köln.", "question": "Welcher Fluss fliesst durch Köln?", "answers": {"text": ["Rhein", "der Rhein"], "answer_start": [4, 0]}}
{"id": "m5", "language": "sw", "context": "Nairobi ni mji mkuu wa Kenya.", "question": "Mji mkuu wa Kenya ni upi?", "answers": {"text": ["Nairobi"], "answer_start": [0]}}
"#;

const MULTI_SUITE: &str = r#"id = "mlqa-like"
domain = "multilingual"
dataset = "Multilingual extractive QA"
citation = "Lewis et al. 2020. MLQA. ACL 2020."
task = "extractive_qa"
metrics = ["squad_f1", "exact_match"]
group_by = "language"

[data]
dir = "mlqa"
eval = "test.jsonl"
format = "jsonl"

[fields]
answer = "answers.text"

[fields.inputs]
context = "context"
question = "question"

[prompt]
template = "Context: {context}\nQuestion: {question}\nAnswer:"
stop = ["\n"]
"#;

#[test]
fn groups_are_scored_beside_the_suite_in_every_report() {
    let s = Scratch::new();
    s.write("data/mlqa/test.jsonl", MULTI);
    s.write("suites/mlqa-like.toml", MULTI_SUITE);
    let gold = s.replay(
        "mlqa-like",
        "gold",
        &[
            ("m1", "Paris"),
            ("m2", "1889"),
            ("m3", "Berlin"),
            ("m4", "der Rhein"),
            ("m5", "Nairobi"),
        ],
    );
    for key in [
        "mlqa-like",
        "mlqa-like/language=de",
        "mlqa-like/language=en",
        "mlqa-like/language=sw",
    ] {
        assert_close(value(&gold, key, "squad_f1"), 1.0, key);
        assert_close(value(&gold, key, "exact_match"), 1.0, key);
    }
    let wrong = s.replay(
        "mlqa-like",
        "wrong",
        &[
            ("m1", "Paris"),
            ("m2", "1890"),
            ("m3", "Berlin"),
            ("m4", "Donau"),
            ("m5", "Nairobi city"),
        ],
    );
    // m1 1/1, m2 0/0, m3 1/1, m4 0/0, m5 EM 0, F1 p = 1/2, r = 1 -> 2/3
    assert_close(value(&wrong, "mlqa-like", "exact_match"), 0.4, "all EM");
    assert_close(
        value(&wrong, "mlqa-like", "squad_f1"),
        (2.0 + 2.0 / 3.0) / 5.0,
        "all F1",
    );
    assert_close(
        value(&wrong, "mlqa-like/language=en", "squad_f1"),
        0.5,
        "en",
    );
    assert_close(
        value(&wrong, "mlqa-like/language=de", "squad_f1"),
        0.5,
        "de",
    );
    assert_close(
        value(&wrong, "mlqa-like/language=sw", "squad_f1"),
        2.0 / 3.0,
        "sw",
    );
    assert_close(
        value(&wrong, "mlqa-like/language=sw", "exact_match"),
        0.0,
        "sw EM",
    );
    assert_eq!(wrong["results"]["mlqa-like/language=de"]["n"], 2);

    // metrics.csv: the suite's rows first, as without groups; the group rows
    // after them, never the headline, so the domain score is the suite's
    let csv = s.read("out/runs/wrong/metrics.csv");
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    let col = |name: &str| rows[0].iter().position(|c| *c == name).unwrap();
    let (suite, metric, headline, n) = (col("suite"), col("metric"), col("headline"), col("n"));
    let listed: Vec<(&str, &str, &str, &str)> = rows[1..]
        .iter()
        .map(|r| (r[suite], r[metric], r[headline], r[n]))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("mlqa-like", "squad_f1", "true", "5"),
            ("mlqa-like", "exact_match", "false", "5"),
            ("mlqa-like/language=de", "squad_f1", "false", "2"),
            ("mlqa-like/language=de", "exact_match", "false", "2"),
            ("mlqa-like/language=en", "squad_f1", "false", "2"),
            ("mlqa-like/language=en", "exact_match", "false", "2"),
            ("mlqa-like/language=sw", "squad_f1", "false", "1"),
            ("mlqa-like/language=sw", "exact_match", "false", "1"),
        ]
    );
    let domains = s.read("out/runs/wrong/domains.csv");
    let line = domains.lines().nth(1).unwrap();
    assert!(
        line.contains(",multilingual,") && line.ends_with(",1,5"),
        "{domains}"
    );
    let summary = s.read("out/runs/wrong/summary.md");
    assert!(
        summary.contains("| mlqa-like/language=sw | | | 1 | squad_f1 | 0.6667"),
        "{summary}"
    );
}

#[test]
fn group_by_file_names_the_source_file() {
    let s = Scratch::new();
    let (en, rest): (Vec<&str>, Vec<&str>) = MULTI
        .lines()
        .partition(|l| l.contains(r#""language": "en""#));
    s.write("data/mlqa/test.en.jsonl", &(en.join("\n") + "\n"));
    s.write("data/mlqa/test.xx.jsonl", &(rest.join("\n") + "\n"));
    s.write(
        "suites/mlqa-like.toml",
        &MULTI_SUITE
            .replace(r#"group_by = "language""#, r#"group_by = "file""#)
            .replace(r#"eval = "test.jsonl""#, r#"eval = "test.*.jsonl""#),
    );
    let r = s.replay(
        "mlqa-like",
        "files",
        &[
            ("m1", "Paris"),
            ("m2", "1890"),
            ("m3", "Berlin"),
            ("m4", "Donau"),
            ("m5", "Nairobi"),
        ],
    );
    assert_close(
        value(&r, "mlqa-like/file=test.en.jsonl", "exact_match"),
        0.5,
        "en",
    );
    // m3 1, m4 0, m5 1
    assert_close(
        value(&r, "mlqa-like/file=test.xx.jsonl", "exact_match"),
        2.0 / 3.0,
        "xx",
    );
}

// ------------------------------------------------------------------ domains

const BIOMED_SUITE: &str = r#"id = "biomed-qa"
domain = "biomed"
dataset = "Biomedical factoid questions"
citation = "Tsatsaronis et al. 2015. BioASQ."
task = "generative_qa"
metrics = ["squad_f1"]

[data]
dir = "biomed"
eval = "test.jsonl"
format = "jsonl"

[fields]
answer = "exact_answer"

[fields.inputs]
body = "body"

[prompt]
template = "Question: {body}\nAnswer:"
stop = ["\n"]
max_tokens = 4
"#;

const BIOMED: &str = r#"{"id": "b1", "body": "Which gene is mutated in cystic fibrosis?", "exact_answer": ["CFTR"]}
{"id": "b2", "body": "Which organ produces insulin?", "exact_answer": ["pancreas", "the pancreas"]}
"#;

/// A data root with the commonsenseqa fixture and the biomedical set.
fn domain_scratch() -> Scratch {
    let s = Scratch::new();
    let to = s.path("data/commonsense-commonsenseqa");
    std::fs::create_dir_all(&to).unwrap();
    std::fs::copy(
        common::repo().join("fixtures/commonsense-commonsenseqa/validation.jsonl"),
        to.join("validation.jsonl"),
    )
    .unwrap();
    s.write("data/biomed/test.jsonl", BIOMED);
    s
}

fn run(s: &Scratch, run_id: &str, suites: &str, suite_file: Option<&Path>) -> Value {
    let mut args = vec![
        "run",
        "--suites",
        suites,
        "--data-dir",
        "data",
        "--out",
        "out",
        "--quiet",
        "--bootstrap",
        "20",
        "--run-id",
        run_id,
    ];
    let file;
    if let Some(f) = suite_file {
        file = f.display().to_string();
        args.extend(["--suite-file", file.as_str()]);
    }
    let o = s.eb(&args);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    serde_json::from_str(&s.read(&format!("out/runs/{run_id}/results.json"))).unwrap()
}

#[test]
fn a_domain_outside_the_papers_is_reported_apart_unless_it_names_a_paper_domain() {
    let s = domain_scratch();
    let alone = run(&s, "alone", "commonsenseqa", None);
    let file = s.write("suites/biomed-qa.toml", BIOMED_SUITE);
    // selected by its own domain name
    let apart = run(&s, "apart", "commonsenseqa,biomed", Some(&file));
    assert!(apart["results"]["biomed-qa"]["squad_f1,none"].is_number());
    assert_eq!(apart["configs"]["biomed-qa"]["domain"], "biomed");
    assert_eq!(
        apart["edgebench"]["other_domains"]["biomed"]["suites"], 1,
        "{apart}"
    );
    // the paper's domain scores, DSI, GG and CDTR are those of the run without it
    assert_eq!(
        s.read("out/runs/apart/domains.csv"),
        s.read("out/runs/alone/domains.csv")
    );
    for key in ["domains", "robustness"] {
        assert_eq!(apart["edgebench"][key], alone["edgebench"][key], "{key}");
    }
    assert!(apart["edgebench"]["domains"].get("biomed").is_none());
    let summary = s.read("out/runs/apart/summary.md");
    assert!(
        summary.contains("| biomed-qa | biomed | generative_qa | 2 |"),
        "{summary}"
    );
    assert!(summary.contains("## Other domains"), "{summary}");
    assert!(summary.contains("| biomed | 1 |"), "{summary}");

    // with paper_domain it joins healthcare, and is no longer apart
    let joined_file = s.write(
        "joined/biomed-qa.toml",
        &BIOMED_SUITE.replace(
            "domain = \"biomed\"\n",
            "domain = \"biomed\"\npaper_domain = \"healthcare\"\n",
        ),
    );
    let joined = run(&s, "joined", "commonsenseqa,biomed-qa", Some(&joined_file));
    assert_eq!(joined["edgebench"]["domains"]["healthcare"]["suites"], 1);
    assert_eq!(
        joined["edgebench"]["domains"]["healthcare"]["score"],
        joined["results"]["biomed-qa"]["squad_f1,none"]
    );
    assert!(joined["edgebench"].get("other_domains").is_none());
    assert!(s
        .read("out/runs/joined/domains.csv")
        .lines()
        .any(|l| l.contains(",healthcare,")));
    assert_eq!(joined["configs"]["biomed-qa"]["domain"], "biomed");
    assert_eq!(joined["configs"]["biomed-qa"]["paper_domain"], "healthcare");
}

#[test]
fn paper_domain_must_agree_with_a_paper_domain_name() {
    let s = Scratch::new();
    s.write(
        "suites/biomed-qa.toml",
        &BIOMED_SUITE.replace(
            "domain = \"biomed\"\n",
            "domain = \"legal\"\npaper_domain = \"healthcare\"\n",
        ),
    );
    let o = s.eb(&[
        "suites",
        "validate",
        "--suites-dir",
        "suites",
        "--data-dir",
        "data",
    ]);
    let t = common::text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("biomed-qa.toml: paper_domain `healthcare` differs from domain `legal`"),
        "{t}"
    );
}
