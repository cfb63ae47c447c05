//! The fault-and-bad-input suite: each case runs the real binary against a
//! bad suite file, data file, model, flag, replay file, gate input, or a
//! concurrent or killed process, and asserts the exit code (2 bad input,
//! 1 failure of what was asked) and that the message names the place (file,
//! line, field). `docs/reliability.md` lists every case.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A scratch folder with `data/` (a copy of the commonsenseqa fixture),
/// `suites/` (its suite file) and `out/`.
struct Sandbox {
    dir: tempfile::TempDir,
}

const MC: &str = "commonsenseqa";

impl Sandbox {
    fn new() -> Sandbox {
        let s = Sandbox {
            dir: tempfile::tempdir().unwrap(),
        };
        let repo = common::repo();
        let data = s.path("data/commonsense-commonsenseqa");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::copy(
            repo.join("fixtures/commonsense-commonsenseqa/validation.jsonl"),
            data.join("validation.jsonl"),
        )
        .unwrap();
        std::fs::create_dir_all(s.path("suites")).unwrap();
        std::fs::copy(
            repo.join("suites/commonsenseqa.toml"),
            s.path("suites/commonsenseqa.toml"),
        )
        .unwrap();
        s
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: impl AsRef<[u8]>) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    /// The commonsenseqa suite file with `from` replaced by `to`.
    fn edit_suite(&self, from: &str, to: &str) {
        let text =
            std::fs::read_to_string(common::repo().join("suites/commonsenseqa.toml")).unwrap();
        assert!(text.contains(from), "suite file has no `{from}`");
        self.write("suites/commonsenseqa.toml", text.replacen(from, to, 1));
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_edgebench"));
        c.current_dir(self.dir.path()).env_remove("EDGEBENCH_DATA");
        c
    }

    fn eb(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// `edgebench run` over the sandbox's suites and data.
    fn run(&self, extra: &[&str]) -> Output {
        let mut args = vec![
            "run",
            "--suites-dir",
            "suites",
            "--data-dir",
            "data",
            "--out",
            "out",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        if !extra.contains(&"--bootstrap") {
            args.extend_from_slice(&["--bootstrap", "20"]);
        }
        if !extra.contains(&"--suites") && !extra.contains(&"--resume") {
            args.extend_from_slice(&["--suites", MC]);
        }
        self.eb(&args)
    }
}

/// Asserts the exit code and that the output names each needle; a panic is
/// never an acceptable answer.
#[track_caller]
fn expect(o: &Output, code: i32, needles: &[&str]) {
    let t = common::text(o);
    assert_eq!(o.status.code(), Some(code), "exit code; output:\n{t}");
    assert!(!t.contains("panicked"), "panic:\n{t}");
    for n in needles {
        assert!(t.contains(n), "output does not name `{n}`:\n{t}");
    }
}

fn suite_case(from: &str, to: &str, needles: &[&str]) {
    let s = Sandbox::new();
    s.edit_suite(from, to);
    let mut all = vec!["commonsenseqa.toml"];
    all.extend_from_slice(needles);
    expect(&s.run(&[]), 2, &all);
}

#[test]
fn suite_file_malformed_toml() {
    suite_case("[data]", "[data", &["line"]);
}

#[test]
fn suite_file_unknown_field() {
    suite_case("[prompt]", "[prompt]\ntemperature = 2", &["temperature"]);
}

#[test]
fn suite_file_metric_not_for_task() {
    suite_case(
        r#"metrics = ["acc", "acc_norm"]"#,
        r#"metrics = ["rouge1"]"#,
        &["rouge1", "multiple_choice"],
    );
}

#[test]
fn suite_file_data_dir_leaves_the_data_root() {
    suite_case(
        r#"dir = "commonsense-commonsenseqa""#,
        r#"dir = "../../etc""#,
        &["data.dir", "../../etc"],
    );
}

#[test]
fn suite_file_absolute_eval_path() {
    suite_case(
        r#"eval = "validation.jsonl""#,
        r#"eval = "/etc/passwd""#,
        &["data.eval"],
    );
}

#[test]
fn suite_file_fewshot_path_leaves_the_data_root() {
    suite_case(
        r#"eval = "validation.jsonl""#,
        "eval = \"validation.jsonl\"\nfewshot = \"../x/*.jsonl\"",
        &["data.fewshot"],
    );
}

#[test]
fn suite_file_id_differs_from_file_name() {
    suite_case(r#"id = "commonsenseqa""#, r#"id = "other""#, &["other"]);
}

#[test]
fn suite_file_unknown_adapter() {
    suite_case(
        r#"format = "jsonl""#,
        "format = \"jsonl\"\nadapter = \"nope\"",
        &["data.adapter", "nope"],
    );
}

#[test]
fn suite_file_template_names_unknown_variable() {
    suite_case("{question}", "{questoin}", &["questoin"]);
}

#[test]
fn suite_file_malformed_domain() {
    // a domain outside the paper's eight is allowed (reported apart); a name
    // that is not lower-case kebab-case is not
    suite_case(
        r#"domain = "commonsense""#,
        r#"domain = "Astrology Today""#,
        &["Astrology Today", "kebab-case"],
    );
}

#[test]
fn suite_file_paper_domain_outside_the_eight() {
    suite_case(
        r#"domain = "commonsense""#,
        "domain = \"astrology\"\npaper_domain = \"astrology\"",
        &["paper_domain", "astrology"],
    );
}

#[test]
fn suite_file_unknown_answer_format() {
    suite_case(
        r#"answer_format = "label_of:choices.label""#,
        r#"answer_format = "roman""#,
        &["answer_format", "roman"],
    );
}

// ---------------------------------------------------------------- data files

fn data_case(rel: &str, content: &[u8], code: i32, needles: &[&str]) {
    let s = Sandbox::new();
    s.write(rel, content);
    expect(&s.run(&[]), code, needles);
    assert!(
        !s.path("out/runs").exists() || std::fs::read_dir(s.path("out/runs")).unwrap().count() == 0,
        "bad input must not leave a run folder"
    );
}

const CSQA: &str = "data/commonsense-commonsenseqa/validation.jsonl";

#[test]
fn data_dir_does_not_exist() {
    let s = Sandbox::new();
    let o = s.eb(&[
        "run",
        "--suites-dir",
        "suites",
        "--data-dir",
        "no-such-dir",
        "--out",
        "out",
        "--suites",
        MC,
    ]);
    expect(&o, 2, &["no-such-dir", "does not exist"]);
}

#[test]
fn data_dir_from_environment_does_not_exist() {
    let s = Sandbox::new();
    let o = s
        .cmd()
        .args([
            "run",
            "--suites-dir",
            "suites",
            "--out",
            "out",
            "--suites",
            MC,
        ])
        .env("EDGEBENCH_DATA", "typo-data")
        .output()
        .unwrap();
    expect(&o, 2, &["typo-data", "does not exist"]);
}

#[test]
fn every_selected_suite_missing() {
    let s = Sandbox::new();
    std::fs::remove_file(s.path(CSQA)).unwrap();
    expect(&s.run(&[]), 2, &["none of the 1 selected suite", "data"]);
}

#[test]
fn data_file_empty() {
    data_case(CSQA, b"", 2, &["validation.jsonl", "no record"]);
}

#[test]
fn data_file_blank_lines_only() {
    data_case(CSQA, b"\n\n  \n", 2, &["validation.jsonl", "no record"]);
}

#[test]
fn data_file_invalid_json_line() {
    let mut text =
        std::fs::read(common::repo().join("fixtures/commonsense-commonsenseqa/validation.jsonl"))
            .unwrap();
    text.extend_from_slice(b"{\"id\": \"x\", oops\n");
    data_case(CSQA, &text, 2, &["validation.jsonl:5", "invalid JSON"]);
}

#[test]
fn data_file_line_missing_a_field() {
    data_case(
        CSQA,
        br#"{"id": "a", "choices": {"label": ["A"], "text": ["x"]}, "answerKey": "A"}"#,
        2,
        &["validation.jsonl:1", "question"],
    );
}

#[test]
fn data_file_gold_not_among_the_labels() {
    data_case(
        CSQA,
        br#"{"id": "a", "question": "q", "choices": {"label": ["A", "B"], "text": ["x", "y"]}, "answerKey": "Z"}"#,
        2,
        &["validation.jsonl:1"],
    );
}

#[test]
fn data_file_invalid_utf8() {
    data_case(CSQA, b"{\"id\": \"\xff\xfe\"}\n", 2, &["validation.jsonl"]);
}

#[test]
fn data_file_duplicate_ids() {
    let line = r#"{"id": "same", "question": "q", "choices": {"label": ["A", "B"], "text": ["x", "y"]}, "answerKey": "A"}"#;
    data_case(
        CSQA,
        format!("{line}\n{line}\n").as_bytes(),
        2,
        &["validation.jsonl", "duplicate example id `same`"],
    );
}

#[test]
fn data_file_is_a_fifo() {
    let s = Sandbox::new();
    std::fs::remove_file(s.path(CSQA)).unwrap();
    let st = Command::new("mkfifo").arg(s.path(CSQA)).status();
    if !st.is_ok_and(|s| s.success()) {
        eprintln!("skipping: mkfifo is not available");
        return;
    }
    expect(&s.run(&[]), 2, &["validation.jsonl", "not a regular file"]);
}

#[cfg(unix)]
#[test]
fn data_file_is_a_symlink_to_dev_zero() {
    let s = Sandbox::new();
    std::fs::remove_file(s.path(CSQA)).unwrap();
    std::os::unix::fs::symlink("/dev/zero", s.path(CSQA)).unwrap();
    expect(&s.run(&[]), 2, &["/dev/zero", "outside the data directory"]);
}

#[cfg(unix)]
#[test]
fn data_file_is_a_symlink_out_of_the_data_root() {
    let s = Sandbox::new();
    s.write(
        "elsewhere/secret.jsonl",
        std::fs::read(s.path(CSQA)).unwrap(),
    );
    std::fs::remove_file(s.path(CSQA)).unwrap();
    std::os::unix::fs::symlink(s.path("elsewhere/secret.jsonl"), s.path(CSQA)).unwrap();
    expect(
        &s.run(&[]),
        2,
        &["secret.jsonl", "outside the data directory", "data.eval"],
    );
}

#[test]
fn data_file_glob_matches_a_directory() {
    let s = Sandbox::new();
    std::fs::remove_file(s.path(CSQA)).unwrap();
    std::fs::create_dir_all(s.path(CSQA)).unwrap();
    expect(&s.run(&[]), 2, &["validation.jsonl", "not a regular file"]);
}

#[test]
fn data_file_csv_with_the_wrong_columns() {
    let s = Sandbox::new();
    s.write(
        "suites/tickets.toml",
        r#"id = "tickets"
domain = "finance"
dataset = "test"
citation = "test"
task = "classification"
metrics = ["acc"]
[data]
dir = "tickets"
eval = "test.csv"
format = "csv"
[fields]
answer = "label"
answer_format = "label"
[fields.inputs]
text = "text"
[labels]
values = ["a", "b"]
[prompt]
template = "{text}\nLabel:"
"#,
    );
    s.write("data/tickets/test.csv", "title,category\nhello,a\n");
    expect(
        &s.run(&["--suites", "tickets"]),
        2,
        &["test.csv:2", "missing field"],
    );
}

fn numbers_suite(s: &Sandbox, answers: &[&str]) {
    s.write(
        "suites/numbers.toml",
        r#"id = "numbers"
domain = "finance"
dataset = "test"
citation = "test"
task = "generative_qa"
metrics = ["numeric_acc"]
[data]
dir = "numbers"
eval = "test.jsonl"
format = "jsonl"
[fields]
answer = "answer"
answer_format = "number"
[fields.inputs]
question = "question"
[prompt]
template = "Q: {question}\nA:"
stop = ["\n"]
max_tokens = 4
"#,
    );
    let lines: String = answers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            format!("{{\"id\": \"q{i}\", \"question\": \"how much?\", \"answer\": {a}}}\n")
        })
        .collect();
    s.write("data/numbers/test.jsonl", lines);
}

#[test]
fn data_numeric_answer_nan() {
    let s = Sandbox::new();
    numbers_suite(&s, &["\"1.5\"", "\"NaN\""]);
    expect(
        &s.run(&["--suites", "numbers"]),
        2,
        &["test.jsonl:2", "answer", "not a finite number"],
    );
}

#[test]
fn data_numeric_answer_infinite() {
    let s = Sandbox::new();
    numbers_suite(&s, &["\"inf\""]);
    expect(
        &s.run(&["--suites", "numbers"]),
        2,
        &["test.jsonl:1", "not a finite number"],
    );
}

#[test]
fn data_scierc_span_outside_the_sentence_names_the_real_offsets() {
    let s = Sandbox::new();
    let repo = common::repo();
    std::fs::copy(
        repo.join("suites/scierc-ner.toml"),
        s.path("suites/scierc-ner.toml"),
    )
    .unwrap();
    // a span that starts before the sentence's first document token
    s.write(
        "data/stem-scierc/test.jsonl",
        r#"{"doc_key": "d1", "sentences": [["a", "b"], ["c", "d"]], "ner": [[], [[0, 1, "Task"]]], "relations": [[], []], "clusters": []}"#.to_owned() + "\n",
    );
    let o = s.run(&["--suites", "scierc-ner"]);
    expect(
        &o,
        2,
        &["test.jsonl:1", "span [0, 1]", "outside the sentence"],
    );
    assert!(
        !common::text(&o).contains("18446744073709551"),
        "wrapped integer"
    );
}

#[test]
fn data_text_longer_than_the_cap_is_cut_and_counted() {
    let s = Sandbox::new();
    let long = "word ".repeat(300_000); // 1.5 MB, over the 1 MiB cap
    s.write(
        CSQA,
        format!(
            "{{\"id\": \"long\", \"question\": \"{long}\", \"choices\": {{\"label\": [\"A\", \"B\"], \"text\": [\"x\", \"y\"]}}, \"answerKey\": \"A\"}}\n"
        ),
    );
    let o = s.run(&["--run-id", "long"]);
    expect(&o, 0, &[]);
    let rec = s.read("out/runs/long/records/commonsenseqa.jsonl");
    assert!(
        rec.contains("\"truncated_bytes\":451424"),
        "cut counted in the record"
    );
    assert!(s
        .read("out/runs/long/summary.md")
        .contains("1 example(s) had a text cut to 1 MiB"));
}

#[test]
fn a_missing_suite_beside_a_present_one_is_reported_not_fatal() {
    let s = Sandbox::new();
    std::fs::copy(
        common::repo().join("suites/socialiqa.toml"),
        s.path("suites/socialiqa.toml"),
    )
    .unwrap();
    let o = s.run(&["--suites", "commonsenseqa,socialiqa", "--run-id", "m"]);
    expect(&o, 0, &[]);
    assert!(s.read("out/runs/m/summary.md").contains("missing: put"));
}

// ---------------------------------------------------------------- models

#[test]
fn model_directory_does_not_exist() {
    let s = Sandbox::new();
    expect(&s.run(&["--model", "no/such/model"]), 2, &["no/such/model"]);
}

#[test]
fn model_manifest_malformed() {
    let s = Sandbox::new();
    s.write("model/edgebench-model.toml", "name = [");
    expect(&s.run(&["--model", "model"]), 2, &["edgebench-model.toml"]);
}

#[test]
fn model_graph_truncated() {
    let s = Sandbox::new();
    expect(&s.run(&["--run-id", "warm"]), 0, &[]);
    let dir = s.path("out/models/tiny");
    let graph = std::fs::read(dir.join("model.onnx")).unwrap();
    s.write("cut/model.onnx", &graph[..graph.len() / 3]);
    for f in ["tokenizer.json", "edgebench-model.toml"] {
        std::fs::copy(dir.join(f), s.path("cut").join(f)).unwrap();
    }
    expect(&s.run(&["--model", "cut"]), 2, &["model.onnx"]);
}

/// The optimum export `llama-nopast` of `tests/fixtures/reference-models/onnx` (made by
/// `python3 tools/make-reference-onnx.py`) copied to `<to>/`, without `skip`.
fn optimum_export(s: &Sandbox, to: &str, skip: &str) {
    let src = common::repo().join("tests/fixtures/reference-models/onnx/llama-nopast");
    for f in ["model.onnx", "tokenizer.json", "config.json"] {
        if f != skip {
            s.write(&format!("{to}/{f}"), std::fs::read(src.join(f)).unwrap());
        }
    }
}

#[test]
fn onnx_export_with_unexpected_inputs() {
    let s = Sandbox::new();
    optimum_export(&s, "renamed", "");
    // `position_ids` renamed `token_positions`, in the graph's inputs and in its nodes
    use tract_onnx::prelude::Framework;
    let onnx = edgebench::ops::onnx();
    let mut proto = onnx
        .proto_model_for_path(s.path("renamed/model.onnx"))
        .unwrap();
    let g = proto.graph.as_mut().unwrap();
    for i in g.input.iter_mut().filter(|i| i.name == "position_ids") {
        i.name = "token_positions".into();
    }
    for n in &mut g.node {
        for i in n.input.iter_mut().filter(|i| *i == "position_ids") {
            *i = "token_positions".into();
        }
    }
    s.write("renamed/model.onnx", edgebench::onnx::encode(&proto));
    let needles = [
        "renamed/model.onnx",
        "unexpected decoder input `token_positions`",
        "found inputs [input_ids, attention_mask, token_positions] and outputs [logits]",
        "expected an optimum decoder (inputs input_ids, attention_mask",
        "edgebench-model.toml",
    ];
    expect(&s.run(&["--model", "renamed"]), 2, &needles);
    // the file itself, as --model
    expect(&s.run(&["--model", "renamed/model.onnx"]), 2, &needles);
}

#[test]
fn onnx_export_without_tokenizer_or_config() {
    let s = Sandbox::new();
    optimum_export(&s, "notok", "tokenizer.json");
    expect(
        &s.run(&["--model", "notok"]),
        2,
        &["notok/tokenizer.json", "missing", "optimum-cli export onnx"],
    );
    optimum_export(&s, "nocfg", "config.json");
    expect(
        &s.run(&["--model", "nocfg"]),
        2,
        &["nocfg/config.json", "missing", "context length"],
    );
    assert!(
        !s.path("notok/edgebench-model.toml").exists(),
        "nothing written into the export"
    );
}

#[test]
fn gguf_file_truncated() {
    let s = Sandbox::new();
    let bytes = common::synth_llama::synthetic_gguf(true);
    s.write("m.gguf", &bytes[..bytes.len() / 2]);
    expect(
        &s.eb(&["import", "gguf", "m.gguf", "--out", "imported"]),
        2,
        &["m.gguf"],
    );
    assert!(
        !s.path("imported/edgebench-model.toml").exists(),
        "nothing half-written"
    );
}

#[test]
fn a_half_written_builtin_model_cache_is_rebuilt() {
    let s = Sandbox::new();
    expect(&s.run(&["--run-id", "a"]), 0, &[]);
    // a process killed while writing the cache left the graph without its manifest
    std::fs::remove_file(s.path("out/models/tiny/edgebench-model.toml")).unwrap();
    expect(&s.run(&["--run-id", "b"]), 0, &[]);
    assert!(s.path("out/models/tiny/edgebench-model.toml").is_file());
}

#[test]
fn model_that_outputs_nan_is_a_model_error_and_writes_no_record() {
    use edgebench::model::gguf::Gguf;
    let s = Sandbox::new();
    let mut bytes = common::synth_llama::synthetic_gguf(false);
    let g = Gguf::parse(&bytes).unwrap();
    let t = g.tensor("output_norm.weight").unwrap();
    let at = g.tensor_bytes(&bytes, t).unwrap().as_ptr() as usize - bytes.as_ptr() as usize;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    s.write("nan.gguf", &bytes);
    expect(
        &s.eb(&["import", "gguf", "nan.gguf", "--out", "nan"]),
        0,
        &[],
    );
    let o = s.run(&["--model", "nan", "--run-id", "nan"]);
    expect(
        &o,
        1,
        &["suite `commonsenseqa`", "example `", "not a finite number"],
    );
    let rec = s.path("out/runs/nan/records/commonsenseqa.jsonl");
    assert!(
        !rec.exists() || std::fs::read_to_string(&rec).unwrap().is_empty(),
        "no record of a failed example"
    );
}

// ---------------------------------------------------------------- flags

#[test]
fn run_id_with_parent_components() {
    let s = Sandbox::new();
    expect(&s.run(&["--run-id", "../.."]), 2, &["run id `../..`"]);
    assert!(!s.path("run.json").exists() && !s.path("out/run.json").exists());
}

#[test]
fn run_id_absolute() {
    let s = Sandbox::new();
    let abs = s.path("abs").display().to_string();
    expect(&s.run(&["--run-id", &abs]), 2, &["run id"]);
    assert!(!s.path("abs").exists());
}

#[test]
fn run_id_empty() {
    let s = Sandbox::new();
    expect(&s.run(&["--run-id", ""]), 2, &["run id"]);
}

#[test]
fn run_id_that_exists() {
    let s = Sandbox::new();
    expect(&s.run(&["--run-id", "x"]), 0, &[]);
    expect(
        &s.run(&["--run-id", "x"]),
        2,
        &["already exists", "--resume x"],
    );
}

#[test]
fn bootstrap_too_large() {
    let s = Sandbox::new();
    expect(
        &s.run(&["--bootstrap", "10000000000"]),
        2,
        &["--bootstrap", "100000"],
    );
    assert!(
        !s.path("out/runs").exists() || std::fs::read_dir(s.path("out/runs")).unwrap().count() == 0
    );
}

#[test]
fn bootstrap_not_a_number() {
    let s = Sandbox::new();
    expect(&s.run(&["--bootstrap", "1e10"]), 2, &["--bootstrap"]);
}

#[test]
fn limit_too_large() {
    let s = Sandbox::new();
    expect(&s.run(&["--limit", "99999999999"]), 2, &["--limit"]);
}

#[test]
fn unknown_suite() {
    let s = Sandbox::new();
    expect(&s.run(&["--suites", "nope"]), 2, &["nope"]);
}

#[test]
fn force_new_leg_without_resume() {
    let s = Sandbox::new();
    expect(&s.run(&["--force-new-leg"]), 2, &["--resume"]);
}

#[test]
fn resume_of_a_run_that_does_not_exist() {
    let s = Sandbox::new();
    expect(&s.run(&["--resume", "ghost"]), 2, &["ghost", "run.json"]);
}

#[test]
fn perf_run_id_with_parent_components() {
    let s = Sandbox::new();
    expect(
        &s.eb(&[
            "perf",
            "--run-id",
            "../x",
            "--out",
            "out",
            "--min-queries",
            "1",
        ]),
        2,
        &["run id `../x`"],
    );
}

// ---------------------------------------------------------------- resume

/// A run of commonsenseqa stopped after 2 of its 4 examples.
fn interrupted(s: &Sandbox, id: &str) {
    let o = s.run(&["--run-id", id, "--stop-after", "2", "--limit", "4"]);
    expect(&o, 1, &["incomplete"]);
}

fn resume_refused(extra: &[&str], needles: &[&str]) {
    let s = Sandbox::new();
    interrupted(&s, "r");
    let mut args = vec!["--resume", "r"];
    args.extend_from_slice(extra);
    let o = s.run(&args);
    expect(&o, 2, needles);
    assert!(common::text(&o).contains("--force-new-leg"));
}

#[test]
fn resume_with_another_limit() {
    resume_refused(
        &["--limit", "3"],
        &["--limit: the run has 4, this command gives 3"],
    );
}

#[test]
fn resume_with_another_seed() {
    resume_refused(
        &["--seed", "9"],
        &["--seed: the run has 1234, this command gives 9"],
    );
}

#[test]
fn resume_with_other_suites() {
    let s = Sandbox::new();
    std::fs::copy(
        common::repo().join("suites/socialiqa.toml"),
        s.path("suites/socialiqa.toml"),
    )
    .unwrap();
    interrupted(&s, "r");
    expect(
        &s.run(&["--resume", "r", "--suites", "commonsenseqa,socialiqa"]),
        2,
        &["--suites: the run has commonsenseqa"],
    );
}

#[test]
fn resume_with_another_data_dir() {
    let s = Sandbox::new();
    interrupted(&s, "r");
    std::fs::create_dir_all(s.path("data2")).unwrap();
    expect(
        &s.eb(&[
            "run",
            "--resume",
            "r",
            "--out",
            "out",
            "--data-dir",
            "data2",
        ]),
        2,
        &["--data-dir: the run has"],
    );
}

#[test]
fn resume_with_another_bootstrap() {
    resume_refused(&["--bootstrap", "7"], &["--bootstrap: the run has 20"]);
}

#[test]
fn resume_after_the_data_changed() {
    let s = Sandbox::new();
    interrupted(&s, "r");
    let mut text = s.read(CSQA);
    text = text.replace("Where would you keep milk", "Where would you keep juice");
    s.write(CSQA, text);
    expect(
        &s.run(&["--resume", "r"]),
        2,
        &[
            "data of suite `commonsenseqa`",
            "validation.jsonl",
            "changed",
        ],
    );
}

#[test]
fn resume_after_the_suite_file_changed() {
    let s = Sandbox::new();
    interrupted(&s, "r");
    s.edit_suite("Answer:", "A:");
    expect(
        &s.eb(&[
            "run",
            "--resume",
            "r",
            "--out",
            "out",
            "--suites-dir",
            "suites",
        ]),
        2,
        &["commonsenseqa.toml", "changed since the run started"],
    );
}

#[test]
fn resume_takes_the_runs_settings_not_the_defaults() {
    // the run is over real-looking data with a limit; a bare resume must not
    // fall back to the bundled fixtures, all suites or the suite default limit
    let s = Sandbox::new();
    interrupted(&s, "r");
    let o = s.eb(&["run", "--resume", "r", "--out", "out", "--quiet"]);
    expect(&o, 0, &[]);
    let m: serde_json::Value = serde_json::from_str(&s.read("out/runs/r/run.json")).unwrap();
    assert_eq!(m["suites"], serde_json::json!(["commonsenseqa"]));
    assert_eq!(m["limit"], 4);
    assert_eq!(m["legs"].as_array().unwrap().len(), 2);
    assert_eq!(m["legs"][1]["kind"], "resume");
    assert_eq!(
        s.read("out/runs/r/records/commonsenseqa.jsonl")
            .lines()
            .count(),
        4
    );
}

#[test]
fn resume_with_force_new_leg_records_the_change() {
    let s = Sandbox::new();
    interrupted(&s, "r");
    let o = s.run(&["--resume", "r", "--force-new-leg", "--seed", "9"]);
    expect(&o, 0, &[]);
    let m: serde_json::Value = serde_json::from_str(&s.read("out/runs/r/run.json")).unwrap();
    assert_eq!(m["seed"], 9);
    let leg = &m["legs"][1];
    assert_eq!(leg["kind"], "new-leg");
    assert!(leg["changes"][0].as_str().unwrap().contains("--seed"));
    let records = s.read("out/runs/r/records/commonsenseqa.jsonl");
    let ids: std::collections::HashSet<String> = records
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["example_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), records.lines().count(), "one record per example");
}

fn tamper_and_resume(edit: impl Fn(&str) -> String, needles: &[&str]) {
    let s = Sandbox::new();
    interrupted(&s, "r");
    let path = "out/runs/r/records/commonsenseqa.jsonl";
    s.write(path, edit(&s.read(path)));
    expect(&s.run(&["--resume", "r"]), 2, needles);
}

#[test]
fn resume_with_a_record_of_an_unplanned_example() {
    tamper_and_resume(
        |t| {
            let first = t.lines().next().unwrap();
            let v: serde_json::Value = serde_json::from_str(first).unwrap();
            let id = v["example_id"].as_str().unwrap();
            format!("{t}{}\n", first.replace(id, "stranger"))
        },
        &[
            "commonsenseqa.jsonl:3",
            "`stranger` is not in the run's plan",
        ],
    );
}

#[test]
fn resume_with_a_duplicated_record() {
    tamper_and_resume(
        |t| format!("{t}{}\n", t.lines().next().unwrap()),
        &["commonsenseqa.jsonl:3", "recorded a second time"],
    );
}

#[test]
fn resume_with_a_record_whose_calls_do_not_match_its_prompt_hash() {
    tamper_and_resume(
        |t| t.replacen("Answer:", "Reply:", 1),
        &["commonsenseqa.jsonl:1", "prompt_hash"],
    );
}

#[test]
fn resume_with_a_record_whose_prompt_differs_from_the_runs() {
    tamper_and_resume(
        |t| {
            let first = t.lines().next().unwrap();
            let mut r: edgebench::record::Record = serde_json::from_str(first).unwrap();
            if let edgebench::request::Call::Loglikelihood { context, .. } = &mut r.calls[0] {
                *context = context.replace("Answer:", "Reply:");
            }
            r.prompt_hash = edgebench::request::prompt_hash(&r.calls);
            t.replacen(first, &serde_json::to_string(&r).unwrap(), 1)
        },
        &["commonsenseqa.jsonl:1", "prompt that differs"],
    );
}

#[test]
fn resume_cuts_a_torn_last_line_and_completes() {
    let s = Sandbox::new();
    interrupted(&s, "r");
    let path = "out/runs/r/records/commonsenseqa.jsonl";
    let t = s.read(path);
    s.write(path, format!("{t}{{\"suite\": \"commonsenseqa\", \"exam"));
    let o = s.run(&["--resume", "r"]);
    expect(&o, 0, &["line 3 was cut short"]);
    assert_eq!(s.read(path).lines().count(), 4);
}

// ---------------------------------------------------------------- records read by rescore and gate

fn complete(s: &Sandbox, id: &str) {
    expect(&s.run(&["--run-id", id]), 0, &[]);
}

#[test]
fn rescore_reads_records_without_writing_them() {
    let s = Sandbox::new();
    complete(&s, "r");
    let path = "out/runs/r/records/commonsenseqa.jsonl";
    let torn = format!("{}{{\"suite\": \"comm", s.read(path));
    s.write(path, &torn);
    expect(&s.eb(&["rescore", "r", "--out", "out"]), 0, &[]);
    assert_eq!(s.read(path), torn, "rescore left the records as they were");
    assert!(s
        .read("out/runs/r/summary.md")
        .contains("torn last line 5 ignored"));
}

#[test]
fn rescore_of_a_record_with_an_out_of_range_gold() {
    let s = Sandbox::new();
    complete(&s, "r");
    let path = "out/runs/r/records/commonsenseqa.jsonl";
    let t = s.read(path);
    let v: serde_json::Value = serde_json::from_str(t.lines().next().unwrap()).unwrap();
    let i = v["gold"]["index"].as_u64().unwrap();
    s.write(
        path,
        t.replacen(
            &format!("\"gold\":{{\"type\":\"index\",\"index\":{i}}}"),
            "\"gold\":{\"type\":\"index\",\"index\":99}",
            1,
        ),
    );
    expect(
        &s.eb(&["rescore", "r", "--out", "out"]),
        2,
        &["commonsenseqa.jsonl:1", "gold", "index 99"],
    );
}

#[test]
fn rescore_of_a_record_with_a_null_loglikelihood() {
    let s = Sandbox::new();
    complete(&s, "r");
    let path = "out/runs/r/records/commonsenseqa.jsonl";
    let t = s.read(path);
    let first = t.lines().next().unwrap();
    let at = first.find("\"logprob\":").unwrap() + "\"logprob\":".len();
    let end = at + first[at..].find(',').unwrap();
    let bad = format!("{}null{}", &first[..at], &first[end..]);
    s.write(path, t.replacen(first, &bad, 1));
    expect(
        &s.eb(&["rescore", "r", "--out", "out"]),
        2,
        &["commonsenseqa.jsonl:1", "malformed record"],
    );
}

#[test]
fn rescore_of_a_record_with_the_wrong_number_of_loglikelihoods() {
    let s = Sandbox::new();
    complete(&s, "r");
    let path = "out/runs/r/records/commonsenseqa.jsonl";
    let t = s.read(path);
    let first = t.lines().next().unwrap();
    let mut v: serde_json::Value = serde_json::from_str(first).unwrap();
    v["replies"][0]["results"].as_array_mut().unwrap().pop();
    s.write(path, t.replacen(first, &v.to_string(), 1));
    expect(
        &s.eb(&["rescore", "r", "--out", "out"]),
        2,
        &[
            "commonsenseqa.jsonl:1",
            "replies[0]",
            "loglikelihoods for 5 continuations",
        ],
    );
}

#[test]
fn rescore_with_duplicated_records_is_refused() {
    let s = Sandbox::new();
    complete(&s, "r");
    let path = "out/runs/r/records/commonsenseqa.jsonl";
    let t = s.read(path);
    s.write(path, format!("{t}{}\n", t.lines().next().unwrap()));
    expect(
        &s.eb(&["rescore", "r", "--out", "out"]),
        2,
        &["1 duplicated record"],
    );
}

#[test]
fn rescore_of_a_manifest_with_a_huge_bootstrap() {
    let s = Sandbox::new();
    complete(&s, "r");
    let m = s
        .read("out/runs/r/run.json")
        .replace("\"bootstrap\": 20", "\"bootstrap\": 10000000000");
    s.write("out/runs/r/run.json", m);
    expect(
        &s.eb(&["rescore", "r", "--out", "out"]),
        2,
        &["run.json", "bootstrap"],
    );
}

#[test]
fn rescore_bootstrap_flag_too_large() {
    let s = Sandbox::new();
    complete(&s, "r");
    expect(
        &s.eb(&["rescore", "r", "--out", "out", "--bootstrap", "999999999"]),
        2,
        &["--bootstrap"],
    );
}

// ---------------------------------------------------------------- gate

fn gate(s: &Sandbox, baseline: &str, candidate: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "gate",
        "--baseline",
        baseline,
        "--candidate",
        candidate,
        "--out",
        "out",
    ];
    args.extend_from_slice(extra);
    s.eb(&args)
}

#[test]
fn gate_passes_identical_runs() {
    let s = Sandbox::new();
    complete(&s, "a");
    complete(&s, "b");
    expect(&gate(&s, "a", "b", &[]), 0, &["PASS"]);
}

#[test]
fn gate_fails_a_candidate_whose_records_were_deleted() {
    let s = Sandbox::new();
    complete(&s, "a");
    complete(&s, "b");
    std::fs::remove_file(s.path("out/runs/b/records/commonsenseqa.jsonl")).unwrap();
    expect(
        &gate(&s, "a", "b", &[]),
        1,
        &[
            "FAIL",
            "4 of 4 planned example(s) have no record",
            "none in the candidate",
        ],
    );
}

#[test]
fn gate_fails_a_candidate_with_a_duplicated_record() {
    let s = Sandbox::new();
    complete(&s, "a");
    complete(&s, "b");
    let path = "out/runs/b/records/commonsenseqa.jsonl";
    let t = s.read(path);
    s.write(path, format!("{t}{}\n", t.lines().next().unwrap()));
    expect(&gate(&s, "a", "b", &[]), 1, &["1 duplicated record"]);
}

#[test]
fn gate_fails_a_baseline_with_a_missing_example() {
    let s = Sandbox::new();
    complete(&s, "a");
    complete(&s, "b");
    let path = "out/runs/a/records/commonsenseqa.jsonl";
    let t = s.read(path);
    let rest: Vec<&str> = t.lines().skip(1).collect();
    s.write(path, rest.join("\n") + "\n");
    expect(
        &gate(&s, "a", "b", &[]),
        1,
        &["baseline a", "1 of 4 planned"],
    );
}

#[test]
fn gate_fails_an_incomplete_candidate_unless_partial_is_allowed() {
    let s = Sandbox::new();
    complete(&s, "a");
    interrupted(&s, "b");
    expect(&gate(&s, "a", "b", &[]), 1, &["candidate b is incomplete"]);
    let o = gate(&s, "a", "b", &["--allow-partial"]);
    let t = common::text(&o);
    assert!(t.contains("allowed: candidate b is incomplete"), "{t}");
    assert_ne!(o.status.code(), Some(2), "{t}");
}

#[test]
fn gate_reads_a_torn_baseline_without_shortening_it() {
    let s = Sandbox::new();
    complete(&s, "a");
    complete(&s, "b");
    let path = "out/runs/a/records/commonsenseqa.jsonl";
    let torn = format!("{}{{\"suite\":", s.read(path));
    s.write(path, &torn);
    let o = gate(&s, "a", "b", &[]);
    expect(&o, 0, &["torn last line 5"]);
    assert_eq!(s.read(path), torn);
}

#[test]
fn gate_with_nothing_to_compare_fails() {
    let s = Sandbox::new();
    complete(&s, "a");
    complete(&s, "b");
    s.write(
        "rules.toml",
        "[[quality.override]]\nmetric = \"*\"\nenabled = false\n\n[[quality.override]]\ndomain = \"*\"\nenabled = false\n\n[robustness.gg]\nenabled = false\n[robustness.dsi]\nenabled = false\n[robustness.cdtr]\nenabled = false\n",
    );
    expect(
        &gate(&s, "a", "b", &["--rules", "rules.toml"]),
        1,
        &["FAIL (0 checks)"],
    );
}

#[test]
fn gate_update_baseline_refuses_a_folder_that_is_not_a_baseline() {
    let s = Sandbox::new();
    complete(&s, "b");
    let o = s.eb(&[
        "gate",
        "--update-baseline",
        "--baseline",
        ".",
        "--candidate",
        "b",
        "--out",
        "out",
    ]);
    expect(&o, 2, &["neither empty nor a baseline folder"]);
    assert!(
        s.path("suites/commonsenseqa.toml").is_file(),
        "nothing deleted"
    );
    assert!(s.path("data").is_dir());
}

#[test]
fn gate_update_baseline_writes_a_new_baseline_and_gates_against_it() {
    let s = Sandbox::new();
    complete(&s, "b");
    let o = s.eb(&[
        "gate",
        "--update-baseline",
        "--baseline",
        "base",
        "--candidate",
        "b",
        "--out",
        "out",
    ]);
    expect(&o, 0, &[]);
    assert!(s.path("base/plan.json").is_file() && s.path("base/run.json").is_file());
    complete(&s, "c");
    expect(&gate(&s, "base", "c", &[]), 0, &["PASS"]);
    // a baseline folder can be replaced again
    let o = s.eb(&[
        "gate",
        "--update-baseline",
        "--baseline",
        "base",
        "--candidate",
        "c",
        "--out",
        "out",
    ]);
    expect(&o, 0, &[]);
}

#[test]
fn gate_update_baseline_refuses_an_incomplete_run() {
    let s = Sandbox::new();
    interrupted(&s, "b");
    let o = s.eb(&[
        "gate",
        "--update-baseline",
        "--baseline",
        "base",
        "--candidate",
        "b",
        "--out",
        "out",
    ]);
    expect(&o, 2, &["cannot become a baseline", "interrupted"]);
}

// ---------------------------------------------------------------- replay

fn replay(s: &Sandbox, preds: &str, extra: &[&str]) -> Output {
    s.write("preds.jsonl", preds);
    let mut args = vec![
        "score",
        "--suite",
        MC,
        "--predictions",
        "preds.jsonl",
        "--out",
        "out",
        "--suites-dir",
        "suites",
        "--data-dir",
        "data",
    ];
    args.extend_from_slice(extra);
    s.eb(&args)
}

fn ids(s: &Sandbox) -> Vec<String> {
    s.read(CSQA)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn preds(ids: &[String], ll: &str) -> String {
    ids.iter()
        .map(|id| format!("{{\"id\": \"{id}\", \"loglikelihoods\": {ll}}}\n"))
        .collect()
}

#[test]
fn replay_of_every_example_scores() {
    let s = Sandbox::new();
    let p = preds(&ids(&s), "[-1, -2, -3, -4, -5]");
    expect(&replay(&s, &p, &["--run-id", "rp"]), 0, &["acc"]);
}

#[test]
fn replay_duplicate_id() {
    let s = Sandbox::new();
    let i = ids(&s);
    let p = preds(&i, "[-1, -2, -3, -4, -5]") + &preds(&i[..1], "[-1, -2, -3, -4, -5]");
    expect(
        &replay(&s, &p, &[]),
        2,
        &["preds.jsonl:5", "already given on line 1"],
    );
}

#[test]
fn replay_unknown_id() {
    let s = Sandbox::new();
    let mut p = preds(&ids(&s), "[-1, -2, -3, -4, -5]");
    p.push_str("{\"id\": \"nobody\", \"loglikelihoods\": [-1, -2, -3, -4, -5]}\n");
    expect(
        &replay(&s, &p, &[]),
        2,
        &["preds.jsonl:5", "`nobody` is not an example"],
    );
}

#[test]
fn replay_missing_ids_are_listed() {
    let s = Sandbox::new();
    let i = ids(&s);
    let p = preds(&i[..2], "[-1, -2, -3, -4, -5]");
    expect(
        &replay(&s, &p, &[]),
        2,
        &["2 of the 4 examples", &i[2], "--allow-missing"],
    );
    let o = replay(&s, &p, &["--allow-missing", "--run-id", "part"]);
    expect(&o, 0, &["marked incomplete"]);
}

#[test]
fn replay_wrong_number_of_loglikelihoods() {
    let s = Sandbox::new();
    let p = preds(&ids(&s), "[-1, -2]");
    expect(
        &replay(&s, &p, &[]),
        2,
        &["preds.jsonl:1", "2 loglikelihoods for 5 continuations"],
    );
}

#[test]
fn replay_empty_loglikelihoods() {
    let s = Sandbox::new();
    let p = preds(&ids(&s), "[]");
    expect(
        &replay(&s, &p, &[]),
        2,
        &["preds.jsonl:1", "0 loglikelihoods"],
    );
}

#[test]
fn replay_loglikelihood_not_a_number() {
    let s = Sandbox::new();
    let p = preds(&ids(&s), "[\"NaN\", -2, -3, -4, -5]");
    expect(
        &replay(&s, &p, &[]),
        2,
        &["preds.jsonl:1", "loglikelihoods[0]"],
    );
}

#[test]
fn replay_wrong_kind_of_value() {
    let s = Sandbox::new();
    let p: String = ids(&s)
        .iter()
        .map(|id| format!("{{\"id\": \"{id}\", \"embeddings\": [[1.0]]}}\n"))
        .collect();
    expect(
        &replay(&s, &p, &[]),
        2,
        &[
            "preds.jsonl:1",
            "`embed` reply answers a `loglikelihood` call",
        ],
    );
}

#[test]
fn replay_invalid_json() {
    let s = Sandbox::new();
    expect(
        &replay(&s, "{\"id\": \n", &[]),
        2,
        &["preds.jsonl:1", "invalid JSON"],
    );
}

#[test]
fn replay_suite_given_as_a_path() {
    let s = Sandbox::new();
    let p = preds(&ids(&s), "[-1, -2, -3, -4, -5]");
    s.write("preds.jsonl", &p);
    let o = s.eb(&[
        "score",
        "--suite",
        "../suites/commonsenseqa",
        "--predictions",
        "preds.jsonl",
        "--out",
        "out",
        "--suites-dir",
        "suites",
        "--data-dir",
        "data",
    ]);
    expect(
        &o,
        2,
        &["--suite `../suites/commonsenseqa` is not a suite id"],
    );
}

#[test]
fn replay_into_an_existing_run_id() {
    let s = Sandbox::new();
    let p = preds(&ids(&s), "[-1, -2, -3, -4, -5]");
    expect(&replay(&s, &p, &["--run-id", "rp"]), 0, &[]);
    expect(&replay(&s, &p, &["--run-id", "rp"]), 2, &["already exists"]);
}

// ---------------------------------------------------------------- concurrency and kills

fn spawn_slow(s: &Sandbox, id: &str) -> std::process::Child {
    s.cmd()
        .args([
            "run",
            "--suites-dir",
            "suites",
            "--data-dir",
            "data",
            "--out",
            "out",
            "--quiet",
            "--suites",
            MC,
            "--run-id",
            id,
            "--throttle-ms",
            "700",
            "--bootstrap",
            "20",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until the run has written at least `n` records.
fn wait_for_records(s: &Sandbox, id: &str, n: usize) {
    let path = s.path(&format!("out/runs/{id}/records/commonsenseqa.jsonl"));
    for _ in 0..600 {
        if std::fs::read_to_string(&path).is_ok_and(|t| t.lines().count() >= n) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the run wrote no {n} records in 30 s");
}

#[test]
fn a_second_writer_is_refused_naming_the_holder() {
    let s = Sandbox::new();
    let mut child = spawn_slow(&s, "busy");
    wait_for_records(&s, "busy", 1);
    let pid = child.id().to_string();
    let o = s.run(&["--resume", "busy"]);
    expect(&o, 2, &["in use by another EdgeBench process", &pid]);
    let o = s.eb(&["rescore", "busy", "--out", "out"]);
    expect(&o, 2, &["in use", &pid]);
    assert!(child.wait().unwrap().success());
    let records = s.read("out/runs/busy/records/commonsenseqa.jsonl");
    assert_eq!(records.lines().count(), 4, "no duplicate records");
}

#[test]
fn two_runs_claiming_one_id_at_once() {
    let s = Sandbox::new();
    complete(&s, "warm"); // the model cache, so both start at once
    let claim = || {
        s.cmd()
            .args([
                "run",
                "--suites-dir",
                "suites",
                "--data-dir",
                "data",
                "--out",
                "out",
                "--quiet",
                "--suites",
                MC,
                "--run-id",
                "same",
                "--bootstrap",
                "20",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (claim(), claim());
    let mut codes: Vec<(Option<i32>, String)> = [a, b]
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            (o.status.code(), common::text(&o))
        })
        .collect();
    codes.sort();
    assert_eq!(codes[0].0, Some(0), "{codes:?}");
    assert_eq!(codes[1].0, Some(2), "{codes:?}");
    assert!(codes[1].1.contains("already exists"), "{codes:?}");
    assert_eq!(
        s.read("out/runs/same/records/commonsenseqa.jsonl")
            .lines()
            .count(),
        4
    );
}

#[cfg(unix)]
#[test]
fn a_killed_run_is_rescored_and_gated_as_incomplete_then_resumed() {
    let s = Sandbox::new();
    complete(&s, "base");
    let mut child = spawn_slow(&s, "killed");
    wait_for_records(&s, "killed", 2);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    expect(&s.eb(&["rescore", "killed", "--out", "out"]), 0, &[]);
    assert!(s
        .read("out/runs/killed/summary.md")
        .contains("INCOMPLETE RUN"));
    expect(
        &gate(&s, "base", "killed", &[]),
        1,
        &["candidate killed is incomplete"],
    );
    expect(&s.run(&["--resume", "killed"]), 0, &[]);
    expect(&gate(&s, "base", "killed", &[]), 0, &["PASS"]);
    let a = s.read("out/runs/base/metrics.csv");
    let b = s.read("out/runs/killed/metrics.csv");
    assert_eq!(a, b, "resumed metrics equal the uninterrupted run's");
}

/// A disk that fills up mid-run: a small tmpfs in a private mount namespace
/// (`unshare`); skipped where user namespaces are not available.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_a_failure_naming_the_file() {
    let s = Sandbox::new();
    complete(&s, "warm"); // materialise the tiny model outside the small disk
    std::fs::create_dir_all(s.path("small")).unwrap();
    let exe = env!("CARGO_BIN_EXE_edgebench");
    let script = format!(
        "mount -t tmpfs -o size=12k none small || exit 77; \
         {exe} run --model out/models/tiny --suites-dir suites --data-dir data --out small --quiet \
         --suites {MC} --run-id full --bootstrap 20; echo \"exit=$?\""
    );
    let o = Command::new("unshare")
        .args(["-rm", "sh", "-c", &script])
        .current_dir(s.dir.path())
        .env_remove("EDGEBENCH_DATA")
        .output();
    let Ok(o) = o else {
        eprintln!("skipping: unshare is not available");
        return;
    };
    if o.status.code() == Some(77) || !o.status.success() {
        eprintln!("skipping: cannot mount a tmpfs here ({})", common::text(&o));
        return;
    }
    let t = common::text(&o);
    // the suite snapshot and run.json fit; the records or reports do not
    assert!(t.contains("exit=1"), "{t}");
    assert!(t.contains("No space left on device"), "{t}");
    assert!(t.contains("small/runs/full"), "names the file: {t}");
    assert!(!t.contains("panicked"), "{t}");
}

#[test]
fn fault_suite_has_at_least_sixty_cases() {
    let text = std::fs::read_to_string(common::repo().join("tests/faults.rs")).unwrap();
    let marker = concat!("#[", "test]");
    let n = text.matches(marker).count() - 1;
    assert!(n >= 60, "{n} cases");
    let doc = std::fs::read_to_string(common::repo().join("docs/reliability.md")).unwrap();
    for name in text
        .split(marker)
        .skip(1)
        .filter_map(|chunk| chunk.split("fn ").nth(1))
        .filter_map(|rest| rest.split('(').next())
        .filter(|n| *n != "fault_suite_has_at_least_sixty_cases")
    {
        assert!(
            doc.contains(&format!("`{name}`")),
            "docs/reliability.md does not list `{name}`"
        );
    }
}
