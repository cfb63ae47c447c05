//! A synthetic BERT checkpoint (safetensors + config.json + tokenizer.json) shared by tests.

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::collections::BTreeMap;

pub const D: usize = 32;
pub const H: usize = 4;
pub const FF: usize = 64;
pub const LAYERS: usize = 2;
pub const POS: usize = 16;
pub const WORDS: [&str; 12] = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "on", "mat", "a", "dog", "##s",
];

pub fn tensors() -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut state = 0x2545f4914f6cdd1du64;
    let mut rnd = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state % 20001) as f32 / 10000.0 - 1.0) * 0.4
            })
            .collect()
    };
    let mut t = BTreeMap::new();
    let mut add = |name: &str, shape: Vec<usize>, ln_gain: bool| {
        let n = shape.iter().product();
        let v = if ln_gain {
            rnd(n).iter().map(|x| 1.0 + x).collect()
        } else {
            rnd(n)
        };
        t.insert(name.to_string(), (shape, v));
    };
    add(
        "embeddings.word_embeddings.weight",
        vec![WORDS.len(), D],
        false,
    );
    add("embeddings.position_embeddings.weight", vec![POS, D], false);
    add("embeddings.token_type_embeddings.weight", vec![2, D], false);
    add("embeddings.LayerNorm.weight", vec![D], true);
    add("embeddings.LayerNorm.bias", vec![D], false);
    for l in 0..LAYERS {
        let p = |s: &str| format!("encoder.layer.{l}.{s}");
        for m in [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ] {
            add(&p(&format!("{m}.weight")), vec![D, D], false);
            add(&p(&format!("{m}.bias")), vec![D], false);
        }
        add(&p("attention.output.LayerNorm.weight"), vec![D], true);
        add(&p("attention.output.LayerNorm.bias"), vec![D], false);
        add(&p("intermediate.dense.weight"), vec![FF, D], false);
        add(&p("intermediate.dense.bias"), vec![FF], false);
        add(&p("output.dense.weight"), vec![D, FF], false);
        add(&p("output.dense.bias"), vec![D], false);
        add(&p("output.LayerNorm.weight"), vec![D], true);
        add(&p("output.LayerNorm.bias"), vec![D], false);
    }
    t
}

pub fn write_checkpoint(dir: &std::path::Path, t: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) {
    std::fs::create_dir_all(dir).unwrap();
    let bytes: BTreeMap<&String, Vec<u8>> = t
        .iter()
        .map(|(k, (_, v))| (k, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, TensorView)> = t
        .iter()
        .map(|(k, (s, _))| {
            (
                k.clone(),
                TensorView::new(Dtype::F32, s.clone(), &bytes[k]).unwrap(),
            )
        })
        .collect();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::tensor::serialize(views, None).unwrap(),
    )
    .unwrap();
    let config = serde_json::json!({"model_type": "bert", "hidden_size": D, "num_hidden_layers": LAYERS, "num_attention_heads": H,
        "intermediate_size": FF, "max_position_embeddings": POS, "vocab_size": WORDS.len(), "layer_norm_eps": 1e-12, "hidden_act": "gelu"});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let vocab: serde_json::Map<String, serde_json::Value> = WORDS
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), i.into()))
        .collect();
    let special = |id: usize| serde_json::json!({"id": id, "content": WORDS[id], "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true});
    let tok = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(0), special(1), special(2), special(3)],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]}, "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": vocab}
    });
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
}
