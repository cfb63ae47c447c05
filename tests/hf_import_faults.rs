//! Bad Hugging Face folders and GGUF files through the real binary: each case damages a copy
//! of a reference checkpoint (tests/fixtures/reference-models/decoders/) and asserts exit 2,
//! a message naming the file and the field, and that nothing was written (no model folder,
//! no temporary folder left, an earlier model in place untouched).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

fn fixtures() -> PathBuf {
    common::repo().join("tests/fixtures/reference-models/decoders")
}

/// A scratch folder holding a copy of the checkpoint folder `name` as `ck/`.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let s = Scratch {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir(s.path("ck")).unwrap();
        for e in std::fs::read_dir(fixtures().join(name)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), s.path("ck").join(e.file_name())).unwrap();
        }
        s
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn edit(&self, rel: &str, f: impl FnOnce(Vec<u8>) -> Vec<u8>) {
        let p = self.path(rel);
        std::fs::write(&p, f(std::fs::read(&p).unwrap())).unwrap();
    }

    fn edit_json(&self, rel: &str, f: impl FnOnce(&mut serde_json::Value)) {
        self.edit(rel, |b| {
            let mut v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            f(&mut v);
            serde_json::to_vec_pretty(&v).unwrap()
        });
    }

    fn import(&self, args: &[&str]) -> Output {
        let mut all = vec!["import"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--out", "out"]);
        common::edgebench(self.dir.path(), &all)
    }

    /// `import hf ck`: exit 2 naming every needle, and nothing written.
    #[track_caller]
    fn refused(&self, extra: &[&str], needles: &[&str]) {
        let mut args = vec!["hf", "ck"];
        args.extend_from_slice(extra);
        let o = self.import(&args);
        expect_refused(&o, self.dir.path(), needles);
    }
}

#[track_caller]
fn expect_refused(o: &Output, dir: &Path, needles: &[&str]) {
    let t = common::text(o);
    assert_eq!(o.status.code(), Some(2), "exit code; output:\n{t}");
    assert!(!t.contains("panicked"), "panic:\n{t}");
    for n in needles {
        assert!(t.contains(n), "output does not name `{n}`:\n{t}");
    }
    assert!(!dir.join("out").exists(), "nothing written:\n{t}");
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temporary folders left: {left:?}");
}

/// Rewrites a safetensors file with `keep`'s tensors only.
fn rewrite_safetensors(path: &Path, keep: impl Fn(&str) -> bool) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let views: Vec<(String, safetensors::tensor::TensorView)> =
        st.tensors().into_iter().filter(|(n, _)| keep(n)).collect();
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(path, out).unwrap();
}

#[test]
fn a_truncated_shard() {
    let s = Scratch::new("llama3-tied");
    let shard = "ck/model-00002-of-00003.safetensors";
    s.edit(shard, |b| b[..b.len() / 2].to_vec());
    s.refused(
        &[],
        &[
            "model-00002-of-00003.safetensors",
            "not a valid safetensors file",
        ],
    );
}

#[test]
fn a_config_naming_an_unknown_class() {
    let s = Scratch::new("qwen2-tied");
    s.edit_json("ck/config.json", |v| {
        v["architectures"] = serde_json::json!(["GPT2LMHeadModel"])
    });
    s.refused(
        &[],
        &[
            "config.json",
            "`architectures`",
            "GPT2LMHeadModel",
            "LlamaForCausalLM",
            "Qwen2ForCausalLM",
            "BertModel",
        ],
    );
}

#[test]
fn a_config_without_architectures() {
    let s = Scratch::new("qwen2-tied");
    s.edit_json("ck/config.json", |v| {
        v.as_object_mut().unwrap().remove("architectures");
    });
    s.refused(&[], &["config.json", "`architectures`"]);
}

#[test]
fn a_safetensors_header_lying_about_sizes() {
    // the embedding's shape grows in the header, its bytes do not
    let s = Scratch::new("qwen2-untied");
    s.edit("ck/model.safetensors", |b| {
        let text = String::from_utf8_lossy(&b[..200]).into_owned();
        let at = text.find("\"shape\":[272,32]").expect("embedding header");
        let mut b = b;
        b[at..at + 16].copy_from_slice(b"\"shape\":[272,64]");
        b
    });
    s.refused(&[], &["model.safetensors", "not a valid safetensors file"]);
}

#[test]
fn an_index_naming_a_missing_shard() {
    let s = Scratch::new("llama3-tied");
    s.edit_json("ck/model.safetensors.index.json", |v| {
        v["weight_map"]["model.norm.weight"] = "model-00004-of-00003.safetensors".into()
    });
    s.refused(
        &[],
        &[
            "model.safetensors.index.json",
            "`weight_map.model.norm.weight`",
            "model-00004-of-00003.safetensors",
        ],
    );
}

#[test]
fn an_index_placing_a_tensor_in_the_wrong_shard() {
    let s = Scratch::new("llama3-tied");
    s.edit_json("ck/model.safetensors.index.json", |v| {
        v["weight_map"]["model.norm.weight"] = "model-00001-of-00003.safetensors".into()
    });
    s.refused(
        &[],
        &["model-00001-of-00003.safetensors", "`model.norm.weight`"],
    );
}

#[test]
fn an_index_naming_a_shard_outside_the_folder() {
    let s = Scratch::new("llama3-tied");
    s.edit_json("ck/model.safetensors.index.json", |v| {
        v["weight_map"]["model.norm.weight"] = "../model-00003-of-00003.safetensors".into()
    });
    s.refused(
        &[],
        &[
            "model.safetensors.index.json",
            "`weight_map.model.norm.weight`",
        ],
    );
}

#[test]
fn a_missing_tensor() {
    let s = Scratch::new("qwen2-tied");
    let gone = "model.layers.1.self_attn.k_proj.bias";
    rewrite_safetensors(&s.path("ck/model.safetensors"), |n| n != gone);
    s.refused(
        &[],
        &[
            "model.safetensors",
            gone,
            "missing",
            "`num_hidden_layers` = 2",
        ],
    );
}

#[test]
fn an_untied_config_without_its_head() {
    let s = Scratch::new("qwen2-tied");
    s.edit_json("ck/config.json", |v| {
        v["tie_word_embeddings"] = false.into()
    });
    s.refused(
        &[],
        &[
            "model.safetensors",
            "`lm_head.weight`",
            "`tie_word_embeddings`",
        ],
    );
}

#[test]
fn a_wrong_shape() {
    let s = Scratch::new("llama-gqa");
    s.edit_json("ck/config.json", |v| v["intermediate_size"] = 96.into());
    s.refused(
        &[],
        &[
            "model.safetensors",
            "mlp.gate_proj.weight",
            "[64, 32]",
            "`intermediate_size`",
        ],
    );
}

#[test]
fn more_layers_in_the_checkpoint_than_the_config() {
    let s = Scratch::new("llama-gqa");
    s.edit_json("ck/config.json", |v| v["num_hidden_layers"] = 1.into());
    s.refused(
        &[],
        &["config.json", "`num_hidden_layers` = 1", "model.layers.1."],
    );
}

#[test]
fn an_unsupported_rope_scaling() {
    let s = Scratch::new("llama3-tied");
    s.edit_json("ck/config.json", |v| {
        v["rope_scaling"]["rope_type"] = "yarn".into()
    });
    s.refused(&[], &["config.json", "`rope_scaling.rope_type` = \"yarn\""]);
}

#[test]
fn an_unsupported_dtype() {
    let s = Scratch::new("qwen2-untied");
    let p = s.path("ck/model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let norm = "model.norm.weight";
    let ints = vec![0u8; 32 * 4];
    let mut views: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != norm)
        .collect();
    views.push((
        norm.into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::I32, vec![32], &ints).unwrap(),
    ));
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(&p, out).unwrap();
    s.refused(&[], &["model.safetensors", "`model.norm.weight`", "I32"]);
}

#[test]
fn a_vocab_size_contradicting_the_embedding() {
    let s = Scratch::new("qwen2-tied");
    s.edit_json("ck/config.json", |v| v["vocab_size"] = 200.into());
    s.refused(
        &[],
        &[
            "model.safetensors",
            "`model.embed_tokens.weight`",
            "200 (`vocab_size`)",
        ],
    );
}

#[test]
fn a_tokenizer_larger_than_the_vocabulary() {
    let s = Scratch::new("qwen2-tied");
    s.edit_json("ck/tokenizer.json", |v| {
        let added = v["added_tokens"].as_array_mut().unwrap();
        for id in [272, 273] {
            added.push(serde_json::json!({"id": id, "content": format!("<x{id}>"),
                "single_word": false, "lstrip": false, "rstrip": false, "normalized": false,
                "special": true}));
        }
    });
    s.refused(&[], &["tokenizer.json", "274 tokens", "`vocab_size` = 272"]);
}

#[test]
fn no_weights_at_all() {
    let s = Scratch::new("qwen2-tied");
    std::fs::remove_file(s.path("ck/model.safetensors")).unwrap();
    s.refused(&[], &["model.safetensors.index.json", "neither"]);
}

#[test]
fn an_unknown_quantize_value_names_the_choices() {
    let s = Scratch::new("qwen2-tied");
    let o = s.import(&["hf", "ck", "--quantize", "q5_1"]);
    expect_refused(&o, s.dir.path(), &["q5_1", "q4_0", "q4_k", "q8_0"]);
}

#[test]
fn an_encoder_is_not_quantized_at_import() {
    let s = Scratch::new("qwen2-tied");
    s.edit_json("ck/config.json", |v| {
        v["architectures"] = serde_json::json!(["MobileBertForMaskedLM"])
    });
    s.refused(
        &["--quantize", "q8_0"],
        &["config.json", "MobileBertForMaskedLM", "--quantize q8_0"],
    );
}

#[test]
fn a_gguf_of_another_architecture() {
    // every `qwen2` in the file (architecture and key prefix) becomes `gemma`
    let s = Scratch::new("qwen2-tied");
    let mut b = std::fs::read(fixtures().join("qwen2-tied.gguf")).unwrap();
    let mut i = 0;
    while let Some(at) = b[i..].windows(5).position(|w| w == b"qwen2") {
        b[i + at..i + at + 5].copy_from_slice(b"gemma");
        i += at + 5;
    }
    std::fs::write(s.path("m.gguf"), b).unwrap();
    let o = s.import(&["gguf", "m.gguf"]);
    expect_refused(
        &o,
        s.dir.path(),
        &[
            "m.gguf",
            "`general.architecture` = `gemma`",
            "`llama` and `qwen2`",
        ],
    );
}

#[test]
fn a_qwen2_gguf_without_a_bias() {
    // rename one bias: the file parses, the tensor the config implies is absent
    let s = Scratch::new("qwen2-tied");
    let mut b = std::fs::read(fixtures().join("qwen2-tied.gguf")).unwrap();
    let name = b"blk.1.attn_v.bias";
    let at = b.windows(name.len()).position(|w| w == name).unwrap();
    b[at..at + name.len()].copy_from_slice(b"blk.1.attn_v.bia_");
    std::fs::write(s.path("m.gguf"), b).unwrap();
    let o = s.import(&["gguf", "m.gguf"]);
    expect_refused(
        &o,
        s.dir.path(),
        &["m.gguf", "`blk.1.attn_v.bias`", "`qwen2.block_count` = 2"],
    );
}

#[test]
fn a_failed_import_leaves_the_earlier_model_in_place() {
    let s = Scratch::new("qwen2-tied");
    let o = s.import(&["hf", "ck"]);
    assert!(o.status.success(), "{}", common::text(&o));
    let before = std::fs::read(s.path("out/model.onnx")).unwrap();
    s.edit("ck/model.safetensors", |b| b[..b.len() - 7].to_vec());
    let o = s.import(&["hf", "ck"]);
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    assert_eq!(std::fs::read(s.path("out/model.onnx")).unwrap(), before);
    assert!(s.path("out/edgebench-model.toml").is_file());
}
