//! Input limits: model files whose metadata disagrees with their tensors are
//! refused before anything is allocated from them, generation always ends
//! inside the model's context window, and numeric model-facing settings
//! (`prompt.max_tokens`, `--ctx`, token counts, threads) have bounds; each
//! bad value is named with its allowed range and exits 2.

mod common;

use common::synth_llama::synthetic_gguf;
use edgebench::model::gguf::{Gguf, GgufValue, GgufWriter};
use edgebench::model::manifest::ModelManifest;
use edgebench::model::{self, bert, llama};
use std::path::Path;

/// The synthetic Llama GGUF with metadata `key` set to `v` (removed when `None`).
fn with_key(key: &str, v: Option<GgufValue>) -> Vec<u8> {
    let bytes = synthetic_gguf(true);
    let g = Gguf::parse(&bytes).unwrap();
    let mut w = GgufWriter::new();
    let mut seen = false;
    for (k, old) in &g.metadata {
        if k == key {
            seen = true;
            if let Some(v) = &v {
                w.kv(k, v.clone());
            }
        } else {
            w.kv(k, old.clone());
        }
    }
    if let (false, Some(v)) = (seen, v) {
        w.kv(key, v);
    }
    for t in &g.tensors {
        let data = g.tensor_bytes(&bytes, t).unwrap().to_vec();
        w.tensor(&t.name, &t.dims, t.ggml_type, data);
    }
    w.finish()
}

/// The import error of `bytes` written as a file.
fn import_error(bytes: &[u8]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.gguf");
    std::fs::write(&path, bytes).unwrap();
    let e = llama::import_gguf(&path, &tmp.path().join("out"), 64, false)
        .expect_err("the import must fail");
    let msg = e.to_string();
    assert!(
        msg.contains("bad.gguf"),
        "the message names the file: {msg}"
    );
    msg
}

#[test]
fn an_embedding_length_contradicting_the_tensors_is_refused_before_allocating() {
    // 2^20 values per token: token_embd.weight is [64, 257]
    let msg = import_error(&with_key(
        "llama.embedding_length",
        Some(GgufValue::U32(1 << 20)),
    ));
    assert!(
        msg.contains("`llama.embedding_length` = 1048576")
            && msg.contains("`token_embd.weight`")
            && msg.contains("[64, 257]"),
        "{msg}"
    );
}

#[test]
fn every_hyper_parameter_is_checked_against_the_tensors() {
    let u = |v: u32| Some(GgufValue::U32(v));
    for (key, v, expect) in [
        (
            "llama.feed_forward_length",
            u(1 << 30),
            "`llama.feed_forward_length` = 1073741824 contradicts tensor `blk.0.ffn_gate.weight` of shape [64, 96]",
        ),
        (
            "llama.attention.head_count_kv",
            u(1),
            "`llama.attention.head_count_kv` = 1 (x head dim 16) contradicts tensor `blk.0.attn_k.weight` of shape [64, 32]",
        ),
        (
            "llama.attention.head_count",
            u(64),
            "inconsistent heads",
        ),
        ("llama.block_count", u(0), "`llama.block_count` = 0: must be at least 1"),
        (
            "llama.block_count",
            u(1),
            "`llama.block_count` = 1 but the file has tensor `blk.1.",
        ),
        (
            "llama.block_count",
            u(u32::MAX),
            "tensor `blk.2.attn_norm.weight` not found in the GGUF file (`llama.block_count` = 4294967295)",
        ),
        ("llama.context_length", u(0), "`llama.context_length` = 0"),
        (
            "llama.rope.dimension_count",
            u(8),
            "`llama.rope.dimension_count` = 8 but",
        ),
        (
            "llama.vocab_size",
            u(1 << 31),
            "`llama.vocab_size` = 2147483648 but `tokenizer.ggml.tokens` holds 257 tokens",
        ),
        (
            "tokenizer.ggml.eos_token_id",
            u(257),
            "`tokenizer.ggml.eos_token_id` = 257 is outside the vocabulary of 257 tokens",
        ),
        (
            "llama.rope.freq_base",
            Some(GgufValue::F32(f32::NAN)),
            "`llama.rope.freq_base` = NaN",
        ),
        (
            "tokenizer.ggml.tokens",
            Some(GgufValue::Array(vec![GgufValue::Str("a".into())])),
            "`tokenizer.ggml.tokens` (1 tokens) contradicts tensor `token_embd.weight` of shape [64, 257]",
        ),
    ] {
        let msg = import_error(&with_key(key, v));
        assert!(msg.contains(expect), "{key}: {msg}");
    }
}

#[test]
fn token_types_longer_than_the_tokens_are_an_error_not_a_panic() {
    // 300 types for 257 tokens: types past the last token indexed the token list
    let types = vec![GgufValue::I32(3); 300];
    let bytes = with_key("tokenizer.ggml.token_type", Some(GgufValue::Array(types)));
    let g = Gguf::parse(&bytes).unwrap();
    let e = llama::tokenizer_from_gguf(&g, Path::new("t.gguf")).expect_err("must fail");
    assert!(
        e.to_string()
            .contains("`tokenizer.ggml.token_type` is 300 entries but `tokenizer.ggml.tokens` holds 257 tokens"),
        "{e}"
    );
}

#[test]
fn the_cli_reports_a_contradicting_gguf_as_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bad.gguf");
    std::fs::write(
        &file,
        with_key("llama.embedding_length", Some(GgufValue::U32(1 << 20))),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let o = common::edgebench(
        tmp.path(),
        &[
            "import",
            "gguf",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    assert!(
        common::text(&o).contains("`llama.embedding_length` = 1048576"),
        "{}",
        common::text(&o)
    );
    // a GGUF file is not a model directory: `run` refuses it the same way
    let o = common::edgebench(
        tmp.path(),
        &[
            "run",
            "--model",
            file.to_str().unwrap(),
            "--suites",
            "finqa",
            "--limit",
            "1",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    assert!(
        common::text(&o).contains("bad.gguf"),
        "{}",
        common::text(&o)
    );
}

#[test]
fn a_bert_config_contradicting_its_tensors_names_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("ckpt");
    common::synth_bert::write_checkpoint(&ckpt, &common::synth_bert::tensors());
    let cfg_path = ckpt.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    for (key, v, expect) in [
        (
            "hidden_size",
            serde_json::json!(1 << 20),
            "`hidden_size` = 1048576 contradicts tensor `embeddings.word_embeddings.weight` of shape [12, 32]",
        ),
        (
            "num_hidden_layers",
            serde_json::json!(1),
            "`num_hidden_layers` = 1 but the checkpoint has tensor `encoder.layer.1.",
        ),
        (
            "num_hidden_layers",
            serde_json::json!(1u64 << 40),
            "tensor `encoder.layer.2.attention.self.query.weight` is missing (`num_hidden_layers` = 1099511627776)",
        ),
        (
            "max_position_embeddings",
            serde_json::json!(1),
            "`max_position_embeddings` = 1: must be at least 2",
        ),
    ] {
        let mut c = cfg.clone();
        c[key] = v;
        std::fs::write(&cfg_path, c.to_string()).unwrap();
        let e = bert::import_bert(&ckpt, &tmp.path().join("out"))
            .expect_err("must fail");
        let msg = e.to_string();
        assert!(
            msg.contains(expect) && msg.contains("config.json"),
            "{key}: {msg}"
        );
    }
    cfg["layer_norm_eps"] = serde_json::json!(-1.0);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let e = bert::import_bert(&ckpt, &tmp.path().join("out")).err();
    assert!(e.unwrap().to_string().contains("`layer_norm_eps` = -1"));
}

#[test]
fn manifest_numbers_and_files_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model::tiny::materialize(&tmp.path().join("tiny")).unwrap();
    let base = std::fs::read_to_string(dir.join("edgebench-model.toml")).unwrap();
    for (from, to, expect) in [
        (
            "max_context = 512",
            "max_context = 9223372036854775807",
            "max_context = 9223372036854775807 is outside the allowed 2..=131072 tokens",
        ),
        (
            "max_context = 512",
            "max_context = 1",
            "max_context = 1 is outside",
        ),
        (
            "vocab_size = 257",
            "vocab_size = 0",
            "vocab_size = 0 is outside the allowed 1..=16777216",
        ),
        (
            "eos_token_id = 256",
            "eos_token_id = 4000000000",
            "eos_token_id = 4000000000 is outside the vocabulary (vocab_size = 257)",
        ),
        (
            "graph = \"model.onnx\"",
            "graph = \"../../model.onnx\"",
            "graph = \"../../model.onnx\" must name a file inside the model directory",
        ),
        (
            "tokenizer = \"tokenizer.json\"",
            "tokenizer = \"/etc/passwd\"",
            "tokenizer = \"/etc/passwd\" must name a file inside",
        ),
        (
            "max_context = 512",
            "kv_cache_layers = 100000\nmax_context = 512",
            "kv_cache_layers = 100000 is above the allowed 4096",
        ),
    ] {
        assert!(base.contains(from), "{base}");
        std::fs::write(dir.join("edgebench-model.toml"), base.replace(from, to)).unwrap();
        let e = ModelManifest::load(&dir).expect_err("must fail");
        let msg = e.to_string();
        assert!(
            msg.contains(expect) && msg.contains("edgebench-model.toml"),
            "{to}: {msg}"
        );
    }
}

#[test]
fn generation_ends_at_the_end_of_the_context_window() {
    // the synthetic Llama (KV cache, context 64, no EOS) and the tiny model
    // (no cache, context 512): neither stops by itself, and a request for
    // 10^12 tokens used to recompute a full window per token forever
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("synthetic.gguf");
    std::fs::write(&src, synthetic_gguf(true)).unwrap();
    let llama_dir = tmp.path().join("llama");
    llama::import_gguf(&src, &llama_dir, 64, false).unwrap();
    let tiny_dir = model::tiny::materialize(&tmp.path().join("tiny")).unwrap();
    for (dir, window) in [(llama_dir, 64), (tiny_dir, model::tiny::MAX_CONTEXT)] {
        let mut m = model::load(dir.to_str().unwrap(), tmp.path(), &common::runtime()).unwrap();
        assert_eq!(m.info().max_context, window);
        let prompt = "edge bench ".repeat(100);
        let t = std::time::Instant::now();
        let g = m.generate(&prompt, &[], 1_000_000_000_000).unwrap();
        // the prompt keeps the last half of the window, the answer gets the rest
        assert_eq!(g.prompt_tokens, window / 2, "{}", dir.display());
        assert!(
            g.prompt_tokens + g.tokens <= window,
            "{}: {} prompt + {} generated tokens",
            dir.display(),
            g.prompt_tokens,
            g.tokens
        );
        assert!(t.elapsed().as_secs() < 60);
        // a short prompt leaves more room, and max_tokens still caps the answer
        let g = m.generate("edge", &[], 1_000_000_000_000).unwrap();
        assert!(g.prompt_tokens + g.tokens <= window);
        let g = m.generate("edge", &[], 3).unwrap();
        assert!(g.tokens <= 3);
    }
    // the synthetic Llama has no EOS, so it fills the window exactly
    let mut m = model::load(
        tmp.path().join("llama").to_str().unwrap(),
        tmp.path(),
        &common::runtime(),
    )
    .unwrap();
    let g = m.generate("edge", &[], usize::MAX).unwrap();
    assert_eq!(g.prompt_tokens + g.tokens, 64, "{g:?}");
}

#[test]
fn a_suite_asking_for_too_many_tokens_is_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let suites = tmp.path().join("suites");
    std::fs::create_dir_all(&suites).unwrap();
    let text = std::fs::read_to_string(common::repo().join("suites/finqa.toml")).unwrap();
    assert!(text.contains("max_tokens = 16"));
    let bad = suites.join("finqa.toml");
    std::fs::write(
        &bad,
        text.replace("max_tokens = 16", "max_tokens = 1000000000000"),
    )
    .unwrap();
    let o = common::edgebench(
        tmp.path(),
        &[
            "run",
            "--suites-dir",
            suites.to_str().unwrap(),
            "--suites",
            "finqa",
            "--limit",
            "1",
        ],
    );
    let t = common::text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("prompt.max_tokens = 1000000000000 is outside the allowed 1..=8192")
            && t.contains("finqa.toml"),
        "{t}"
    );
    std::fs::write(&bad, text.replace("max_tokens = 16", "max_tokens = 0")).unwrap();
    let e = edgebench::suite::load_file(&bad).err().unwrap().to_string();
    assert!(e.contains("prompt.max_tokens = 0 is outside"), "{e}");
}

#[test]
fn numeric_model_flags_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("m.gguf");
    std::fs::write(&gguf, synthetic_gguf(true)).unwrap();
    let g = gguf.to_str().unwrap();
    let out = tmp.path().join("out");
    let o = out.to_str().unwrap();
    for (args, expect) in [
        (
            vec!["import", "gguf", g, "--out", o, "--ctx", "0"],
            "0 is outside the allowed 2..=131072",
        ),
        (
            vec![
                "import",
                "gguf",
                g,
                "--out",
                o,
                "--ctx",
                "99999999999999999999999",
            ],
            "99999999999999999999999 is outside the allowed 2..=131072",
        ),
        (
            vec!["perplexity", "--model", o, "--text", g, "--ctx", "1"],
            "1 is outside the allowed 2..=131072",
        ),
        (
            vec![
                "sweep", "bits", "--model", g, "--suites", "finqa", "--ctx", "1000000",
            ],
            "1000000 is outside the allowed 2..=131072",
        ),
        (
            vec!["perf", "--gen-tokens", "100000"],
            "100000 is outside the allowed 0..=8192",
        ),
        (
            vec!["perf", "--prompt-tokens", "0"],
            "0 is outside the allowed 1..=131072",
        ),
        (
            vec!["bench", "model", "--decode-tokens=-1"],
            "-1 is not a whole number",
        ),
        (
            vec!["bench", "model", "--repeats", "0"],
            "0 is outside the allowed 1..=10000",
        ),
        (
            vec!["--threads", "0", "suites", "list"],
            "0 is outside the allowed 1..=1024",
        ),
    ] {
        let r = common::edgebench(tmp.path(), &args);
        let t = common::text(&r);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {t}");
        assert!(t.contains(expect), "{args:?}: {t}");
    }
    // in range: the import runs, at the file's own context when asked for more
    let r = common::edgebench(
        tmp.path(),
        &["import", "gguf", g, "--out", o, "--ctx", "131072"],
    );
    assert!(r.status.success(), "{}", common::text(&r));
    assert_eq!(ModelManifest::load(&out).unwrap().max_context, 64);
}

#[test]
fn deeply_nested_files_are_errors_not_stack_overflows() {
    let deep = "[".repeat(200_000);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("edgebench-model.toml"),
        format!("name = {deep}"),
    )
    .unwrap();
    assert!(ModelManifest::load(tmp.path()).is_err());
    let tok = tmp.path().join("tokenizer.json");
    std::fs::write(&tok, format!("{{\"model\": {deep}")).unwrap();
    let e = edgebench::model::tokenizer::Tok::load(&tok).err().unwrap();
    assert!(e.to_string().contains("recursion limit"), "{e}");
    let run = edgebench::record::RunDir::new(tmp.path(), "deep").unwrap();
    std::fs::create_dir_all(run.root.join("records")).unwrap();
    std::fs::write(run.records_path("s"), format!("{deep}\n{{}}\n")).unwrap();
    assert!(run.load_records("s").is_err());
}
