//! ONNX files exported by Hugging Face optimum, run as they are (no `edgebench-model.toml`),
//! against what transformers computes with torch for the same weights and inputs.
//!
//! The references in `tests/fixtures/reference-models/onnx/` (a tiny random GQA Llama exported
//! with and without past and as a merged decoder, a tiny random BERT exported for feature
//! extraction beside its safetensors checkpoint, and `llama.json` / `bert.json` with torch's
//! outputs) are made by
//! `python3 tools/make-reference-onnx.py` (torch, transformers 4.57, optimum-onnx).

mod common;

use edgebench::model::bert::{import_bert, TractEncoder};
use edgebench::model::decoder::TractDecoder;
use edgebench::model::{self, optimum, tokenizer::Tok, Model};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    common::repo().join("tests/fixtures/reference-models/onnx")
}

fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(name)).unwrap()).unwrap()
}

fn u32s(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn f32s(v: &serde_json::Value) -> Vec<f32> {
    match v.as_array() {
        Some(a) => a.iter().flat_map(f32s).collect(),
        None => vec![v.as_f64().unwrap() as f32],
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

fn decoder(name: &str) -> TractDecoder {
    let (dir, manifest) = optimum::open(&fixtures().join(name)).unwrap();
    assert_eq!(manifest.architecture, "decoder");
    TractDecoder::load(&dir, &manifest, name, &common::runtime()).unwrap()
}

/// The export's logits equal torch's to 1e-4, decoding on the KV cache equals recomputing
/// the whole sequence, and greedy decoding picks torch's tokens while their margin is clear.
fn check_decoder(name: &str, cached: bool) {
    let r = json("llama.json");
    let ids = u32s(&r["ids"]);
    let vocab = r["vocab_size"].as_u64().unwrap() as usize;
    let dec = decoder(name);
    assert_eq!(dec.has_kv_cache(), cached, "{name}: KV cache");
    assert_eq!(dec.tokenize(r["prompt"].as_str().unwrap()).unwrap(), ids);
    let got = dec.logits(&ids).unwrap();
    let err = max_diff(&got, &f32s(&r["logits"]));
    assert!(err < 1e-4, "{name}: logits differ from torch by {err}");
    // a prefill of 5 tokens, then one decode step per token on the cache
    let stepwise = dec.logits_stepwise(&ids, 5).unwrap();
    let err = max_diff(&stepwise, &got);
    assert!(
        err < 1e-4,
        "{name}: cached decode differs from recompute by {err}"
    );
    // greedy: full recompute and the cache both follow torch while the margin is clear
    let greedy = u32s(&r["greedy"]);
    let margins = f32s(&r["greedy_margins"]);
    let clear = margins.iter().take_while(|&&m| m > 1e-2).count();
    assert!(clear >= 4, "the reference has {clear} clear greedy steps");
    let mut seq = ids.clone();
    for (step, &want) in greedy.iter().take(clear).enumerate() {
        let full = dec.logits(&seq).unwrap();
        let cached = dec.logits_stepwise(&seq, ids.len()).unwrap();
        let last = |l: &[f32]| argmax(&l[(seq.len() - 1) * vocab..]);
        assert_eq!(last(&full), want, "{name}: greedy step {step} (recompute)");
        assert_eq!(last(&cached), want, "{name}: greedy step {step} (cache)");
        seq.push(want);
    }
}

#[test]
fn decoder_with_past_matches_torch() {
    check_decoder("llama-past", true);
}

#[test]
fn decoder_without_past_matches_torch() {
    check_decoder("llama-nopast", false);
}

#[test]
fn merged_decoder_matches_torch() {
    check_decoder("llama-merged", true);
}

#[test]
fn generation_and_scoring_agree_across_the_three_exports() {
    let r = json("llama.json");
    let greedy = u32s(&r["greedy"]);
    let margins = f32s(&r["greedy_margins"]);
    let clear = margins.iter().take_while(|&&m| m > 1e-2).count();
    let tok = Tok::load(&fixtures().join("llama-past/tokenizer.json")).unwrap();
    let want = tok.decode(&greedy[..clear]).unwrap();
    let prompt = r["prompt"].as_str().unwrap();
    let conts = vec![" jumps".to_string(), " over the lazy dog".to_string()];
    let mut scores = Vec::new();
    for name in ["llama-past", "llama-nopast", "llama-merged"] {
        let mut m = model::load(
            fixtures().join(name).to_str().unwrap(),
            Path::new("unused"),
            &common::runtime(),
        )
        .unwrap();
        let caps = m.info().capabilities;
        assert!(caps.generate && caps.loglikelihood && caps.rolling && !caps.embed);
        assert_eq!(
            m.info().max_context,
            64,
            "config.json max_position_embeddings"
        );
        let g = m.generate(prompt, &[], clear).unwrap();
        assert_eq!(g.tokens, clear, "{name}");
        assert_eq!(g.text, want, "{name}: greedy text");
        // the context's cache shared by both continuations (decoders with past)
        let ll = m.loglikelihood("the quick brown fox", &conts).unwrap();
        scores.push((name, ll));
    }
    let (_, base) = &scores[0];
    for (name, ll) in &scores {
        for (a, b) in ll.iter().zip(base) {
            assert_eq!(a.tokens, b.tokens);
            assert!(
                (a.logprob - b.logprob).abs() < 1e-4,
                "{name}: {} vs llama-past {}",
                a.logprob,
                b.logprob
            );
        }
    }
    // and sharing the context's cache equals recomputing it
    let mut dec = decoder("llama-past");
    let shared = dec.loglikelihood("the quick brown fox", &conts).unwrap();
    dec.set_share_context(false);
    let full = dec.loglikelihood("the quick brown fox", &conts).unwrap();
    for (a, b) in shared.iter().zip(&full) {
        assert!((a.logprob - b.logprob).abs() < 1e-4, "{a:?} vs {b:?}");
    }
}

/// torch's `last_hidden_state` pooled the way `pooling` says, L2-normalised.
fn reference_embedding(states: &[f32], d: usize, cls: bool) -> Vec<f32> {
    let rows: Vec<&[f32]> = states.chunks(d).collect();
    let v: Vec<f64> = match cls {
        true => rows[0].iter().map(|&x| x as f64).collect(),
        false => (0..d)
            .map(|j| rows.iter().map(|r| r[j] as f64).sum::<f64>() / rows.len() as f64)
            .collect(),
    };
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter().map(|x| (x / n) as f32).collect()
}

#[test]
fn encoder_export_matches_torch_and_import_bert() {
    let r = json("bert.json");
    let d = r["hidden_size"].as_u64().unwrap() as usize;
    let rows = r["texts"].as_array().unwrap();
    let texts: Vec<String> = rows
        .iter()
        .map(|t| t["text"].as_str().unwrap().to_string())
        .collect();
    let dir = fixtures().join("bert");
    let (_, manifest) = optimum::open(&dir).unwrap();
    assert_eq!(manifest.architecture, "encoder");
    assert_eq!(manifest.max_context, 64);
    let mut enc = TractEncoder::load(&dir, &manifest, "bert", &common::runtime()).unwrap();
    for (t, row) in texts.iter().zip(rows) {
        assert_eq!(enc.tokenize(t).unwrap(), u32s(&row["ids"]), "{t}");
    }
    // several texts in one padded batch: mean pooling over the mask
    let got = enc.embed(&texts).unwrap();
    for (e, row) in got.iter().zip(rows) {
        let want = reference_embedding(&f32s(&row["last_hidden_state"]), d, false);
        let err = max_diff(e, &want);
        assert!(err < 1e-5, "mean pooling differs from torch by {err}");
    }
    // `edgebench import bert` of the same checkpoint embeds the same
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("imported");
    import_bert(&dir, &out).unwrap();
    let mut imported = model::load(out.to_str().unwrap(), tmp.path(), &common::runtime()).unwrap();
    let theirs = imported.embed(&texts).unwrap();
    let mut worst = 0f32;
    for (a, b) in got.iter().zip(&theirs) {
        worst = worst.max(max_diff(a, b));
    }
    assert!(worst < 1e-5, "export and import bert differ by {worst}");
    // a sentence-transformers pooling config asking for the [CLS] state
    let cls = tmp.path().join("cls");
    std::fs::create_dir_all(cls.join("1_Pooling")).unwrap();
    for f in ["model.onnx", "config.json", "tokenizer.json"] {
        std::fs::copy(dir.join(f), cls.join(f)).unwrap();
    }
    std::fs::write(
        cls.join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension": 32, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
    )
    .unwrap();
    let mut m = model::load(cls.to_str().unwrap(), tmp.path(), &common::runtime()).unwrap();
    for (e, row) in m.embed(&texts).unwrap().iter().zip(rows) {
        let want = reference_embedding(&f32s(&row["last_hidden_state"]), d, true);
        let err = max_diff(e, &want);
        assert!(err < 1e-5, "CLS pooling differs from torch by {err}");
    }
}

#[test]
fn the_onnx_file_itself_loads_and_nothing_is_written_beside_it() {
    let dir = fixtures().join("llama-past");
    let before: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let file = dir.join("model.onnx");
    let m = model::load(
        file.to_str().unwrap(),
        Path::new("unused"),
        &common::runtime(),
    )
    .unwrap();
    assert_eq!(m.info().name, "llama-past");
    assert!(
        m.info().provenance.contains("optimum ONNX export"),
        "{}",
        m.info().provenance
    );
    assert_eq!(
        model::graph_path(file.to_str().unwrap(), Path::new("unused")),
        Some(file.clone())
    );
    let after: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        before, after,
        "a reader writes nothing into the model folder"
    );
}

#[test]
fn edgebench_runs_the_exports_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let ppl_text = tmp.path().join("text.txt");
    std::fs::write(
        &ppl_text,
        "the quick brown fox jumps over the lazy dog ".repeat(8),
    )
    .unwrap();
    let dec = fixtures().join("llama-past");
    let o = common::edgebench(
        tmp.path(),
        &[
            "perplexity",
            "--model",
            dec.to_str().unwrap(),
            "--text",
            ppl_text.to_str().unwrap(),
            "--ctx",
            "32",
        ],
    );
    assert!(o.status.success(), "{}", common::text(&o));
    assert!(
        common::text(&o).contains("perplexity "),
        "{}",
        common::text(&o)
    );
    // a multiple-choice suite and a retrieval suite over the bundled fixtures
    for (m, suite) in [("llama-merged", "commonsenseqa"), ("bert", "xtreme-bucc")] {
        let model = fixtures().join(m);
        let o = common::edgebench(
            tmp.path(),
            &[
                "run",
                "--model",
                model.to_str().unwrap(),
                "--suites",
                suite,
                "--data-dir",
                common::repo().join("fixtures").to_str().unwrap(),
                "--out",
                "out",
                "--run-id",
                m,
            ],
        );
        assert!(o.status.success(), "{m}: {}", common::text(&o));
        let run =
            std::fs::read_to_string(tmp.path().join("out/runs").join(m).join("run.json")).unwrap();
        assert!(
            run.contains("optimum ONNX export"),
            "{m}: run.json names the export"
        );
    }
}

/// all-MiniLM-L6-v2 exported by optimum (not in CI: it needs torch) embeds as `edgebench import
/// bert` of the same checkpoint. Made and run by
/// ```sh
/// optimum-cli export onnx --model ../shared/models/all-minilm-l6-v2 --task feature-extraction /tmp/minilm-onnx
/// EDGEBENCH_MINILM_ONNX=/tmp/minilm-onnx cargo test --release --test onnx_exports minilm -- --nocapture
/// ```
#[test]
fn minilm_export_embeds_as_import_bert() {
    let (Some(export), src) = (
        std::env::var_os("EDGEBENCH_MINILM_ONNX").map(PathBuf::from),
        common::repo().join("../shared/models/all-minilm-l6-v2"),
    ) else {
        eprintln!("skipping: set EDGEBENCH_MINILM_ONNX to an optimum export of all-MiniLM-L6-v2");
        return;
    };
    let texts: Vec<String> = [
        "The weather is lovely today.",
        "It's so sunny outside!",
        "He drove to the stadium.",
        "A man is playing a guitar.",
        "Edge devices run small language models for healthcare, legal and financial questions, \
         where a wrong answer costs more than a slow one; the benchmark measures both.",
        "ok",
    ]
    .map(String::from)
    .to_vec();
    let tmp = tempfile::tempdir().unwrap();
    let mut onnx = model::load(export.to_str().unwrap(), tmp.path(), &common::runtime()).unwrap();
    let out = tmp.path().join("imported");
    import_bert(&src, &out).unwrap();
    let mut imported = model::load(out.to_str().unwrap(), tmp.path(), &common::runtime()).unwrap();
    let (a, b) = (onnx.embed(&texts).unwrap(), imported.embed(&texts).unwrap());
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| max_diff(x, y))
        .fold(0f32, f32::max);
    eprintln!("all-MiniLM-L6-v2: optimum export vs import bert, max |diff| {worst:e}");
    assert!(worst < 1e-5, "export and import bert differ by {worst}");
}
