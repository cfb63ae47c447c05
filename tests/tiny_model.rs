//! The bundled tiny model is a real ONNX graph written by our writer and run
//! by tract: it loads, gives the same numbers before and after optimisation,
//! and behaves like a language model (low perplexity on English, induction).

mod common;

use edgebench::model::{self, tiny};
use tract_onnx::prelude::*;

fn run_graph(model: TypedModel, ids: &[i64]) -> Vec<Vec<f32>> {
    let plan = model.into_runnable().unwrap();
    let input = Tensor::from_shape(&[1, ids.len()], ids).unwrap();
    let out = plan.run(tvec!(input.into_tvalue())).unwrap();
    out.iter()
        .map(|t| {
            t.to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect()
        })
        .collect()
}

#[test]
fn graph_gives_the_same_outputs_before_and_after_optimisation() {
    let bytes = tiny::build_graph();
    let ids: Vec<i64> = "the cat sat on the mat".bytes().map(|b| b as i64).collect();
    let m = tract_onnx::onnx()
        .model_for_read(&mut bytes.as_slice())
        .unwrap();
    let plain = run_graph(m.clone().into_typed().unwrap(), &ids);
    let optimised = run_graph(m.into_optimized().unwrap(), &ids);
    assert_eq!(plain.len(), 2, "logits and hidden_states");
    for (a, b) in plain.iter().zip(&optimised) {
        assert_eq!(a.len(), b.len());
        let max = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, common::worse);
        assert!(max < 1e-4, "optimisation changed outputs by {max}");
    }
}

#[test]
fn logits_match_a_plain_reference_forward_pass() {
    let ids: Vec<u8> = b"abcab".to_vec();
    let bytes = tiny::build_graph();
    let m = tract_onnx::onnx()
        .model_for_read(&mut bytes.as_slice())
        .unwrap();
    let out = run_graph(
        m.into_optimized().unwrap(),
        &ids.iter().map(|&b| b as i64).collect::<Vec<_>>(),
    );
    let bigram = tiny::bigram_logprobs(tiny::CORPUS);
    let v = tiny::VOCAB;
    // reference: attention t -> j (j <= t) with score 6 * [prev(j) == x_t], value onehot(x_j)
    for t in 0..ids.len() {
        let prev = |j: usize| {
            if j == 0 {
                tiny::EOT as usize
            } else {
                ids[j - 1] as usize
            }
        };
        let w: Vec<f64> = (0..=t)
            .map(|j| {
                if prev(j) == ids[t] as usize {
                    6f64.exp()
                } else {
                    1.0
                }
            })
            .collect();
        let z: f64 = w.iter().sum();
        for k in 0..v {
            let copied: f64 = (0..=t)
                .filter(|&j| ids[j] as usize == k)
                .map(|j| w[j] / z)
                .sum();
            let expect = bigram[ids[t] as usize * v + k] as f64 + 2.5 * copied;
            let got = out[0][t * v + k] as f64;
            assert!(
                (expect - got).abs() < 1e-4,
                "t {t} k {k}: {expect} vs {got}"
            );
        }
    }
}

#[test]
fn tiny_model_scores_english_better_than_noise_and_uses_its_induction_head() {
    let tmp = tempfile::tempdir().unwrap();
    let mut m = model::load("builtin:tiny", tmp.path(), &common::runtime()).unwrap();
    let text = "The doctor ordered a blood test and the results were normal.";
    let r = m.rolling_loglikelihood(text).unwrap();
    let ppl = (-r.logprob / r.tokens as f64).exp();
    assert!(
        ppl < 20.0,
        "byte perplexity {ppl} on English should be far below 257"
    );
    let noise = "qz#v~8Kx!pW0^jL&3r@f*Y";
    let rn = m.rolling_loglikelihood(noise).unwrap();
    assert!((-rn.logprob / rn.tokens as f64).exp() > ppl * 3.0);
    // second occurrence of a rare string is far more likely than the first
    let rare = " zqxjv";
    let first = m.loglikelihood("hello", &[rare.to_string()]).unwrap()[0].logprob;
    let second = m
        .loglikelihood(&format!("hello{rare} and again"), &[rare.to_string()])
        .unwrap()[0]
        .logprob;
    assert!(second > first + 3.0, "induction: {first} -> {second}");
}

#[test]
fn generation_stops_at_stop_strings_and_max_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let mut m = model::load("builtin:tiny", tmp.path(), &common::runtime()).unwrap();
    let g = m
        .generate("Question: what is it?\nAnswer:", &["\n".into()], 12)
        .unwrap();
    assert!(g.tokens <= 12);
    assert!(!g.text.contains('\n'));
    let e = m
        .embed(&[
            "same text".into(),
            "same text".into(),
            "other words entirely".into(),
        ])
        .unwrap();
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    assert!((dot(&e[0], &e[1]) - 1.0).abs() < 1e-5);
    assert!(dot(&e[0], &e[2]) < 0.999);
}

#[test]
fn a_corrupt_graph_is_a_clear_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny::materialize(&tmp.path().join("tiny")).unwrap();
    let graph = dir.join("model.onnx");
    let bytes = std::fs::read(&graph).unwrap();
    // truncated, empty (the file is mapped: an empty map must not panic), missing
    for cut in [bytes.len() / 3, 0] {
        std::fs::write(&graph, &bytes[..cut]).unwrap();
        let err = model::load(dir.to_str().unwrap(), tmp.path(), &common::runtime())
            .err()
            .expect("must fail");
        let msg = err.to_string();
        assert!(msg.contains("model.onnx"), "{cut} bytes: {msg}");
    }
    std::fs::remove_file(&graph).unwrap();
    let msg = model::load(dir.to_str().unwrap(), tmp.path(), &common::runtime())
        .err()
        .expect("must fail")
        .to_string();
    assert!(msg.contains("model.onnx"), "{msg}");
}

#[test]
fn evaluate_from_the_library_equals_the_command_line_run() {
    use edgebench::evaluate::{evaluate, Job};
    use edgebench::runner::{Options, Settings};
    let tmp = tempfile::tempdir().unwrap();
    let repo = common::repo();
    let out = tmp.path().to_str().unwrap();
    let cli = common::edgebench(
        &repo,
        &[
            "run",
            "--suites",
            "commonsenseqa,xtreme-xquad",
            "--bootstrap",
            "50",
            "--quiet",
            "--out",
            out,
            "--run-id",
            "cli",
        ],
    );
    assert!(cli.status.success(), "{}", common::text(&cli));
    let cli_run = edgebench::record::RunDir::open(tmp.path(), "cli").unwrap();
    let registry = edgebench::suite::Registry::builtin();
    let selected = registry.select("commonsenseqa,xtreme-xquad").unwrap();
    let mut m = model::load(
        "builtin:tiny",
        &tmp.path().join("models"),
        &common::runtime(),
    )
    .unwrap();
    let settings = Settings {
        model: "builtin:tiny".into(),
        suites: selected.iter().map(|s| s.id.clone()).collect(),
        data_dir: repo.join("fixtures"),
        limit: None,
        seed: 1234,
        bootstrap: 50,
        truncation: Default::default(),
        shard: None,
        costs_from: None,
    };
    let job = Job::New {
        id: Some("lib".into()),
        settings,
        specs: selected,
        suites: &registry,
        model: m.as_mut(),
    };
    // the build the binary reports, so the two tables can be compared whole
    let opts = Options {
        git_hash: cli_run.load_manifest().unwrap().git_hash,
        ..Options::default()
    };
    let e = evaluate(tmp.path(), job, &opts).unwrap();
    assert!(e.is_complete());
    assert_eq!(e.scores.suites.len(), 2);
    assert!(e.reports.iter().any(|p| p.ends_with("summary.md")));
    let csv = |id: &str| {
        std::fs::read_to_string(tmp.path().join("runs").join(id).join("metrics.csv")).unwrap()
    };
    assert_eq!(
        csv("lib"),
        csv("cli"),
        "the command line runs what evaluate() runs"
    );
}
