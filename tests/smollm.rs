//! SmolLM2-135M (GGUF, Q4_1) imported to ONNX and run by tract. Runs when
//! ../shared/models exists; skips with a message otherwise.

mod common;

use edgebench::model::decoder::TractDecoder;
use edgebench::model::gguf::Gguf;
use edgebench::model::manifest::ModelManifest;
use edgebench::model::{llama, LoglikelihoodRequest, Model};

const PARAGRAPH: &str = "The history of the city begins in the twelfth century, when a small market grew up around a bridge over the river. Merchants came from the surrounding villages to sell grain, wool and livestock, and by the end of the century the town had a church, a school and a town hall. Over the following centuries the city grew into an important centre of trade.";

#[test]
fn smollm2_imports_tokenizes_and_scores_english_with_a_low_perplexity() {
    let Some(path) = common::smollm2_gguf() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("smollm2");
    let manifest = llama::import_gguf(&path, &out, 512, true).expect("import");
    assert_eq!(manifest.vocab_size, 49152);
    assert_eq!(manifest.kv_cache_layers, Some(30));

    // tokenizer rebuilt from GGUF metadata
    let bytes = std::fs::read(&path).unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    let tok = tokenizers::Tokenizer::from_file(out.join("tokenizer.json")).unwrap();
    let sample = "Grüße aus Zürich! 東京は晴れ。 2024 × 3 = 6072 <|im_start|>user";
    let enc = tok.encode(sample, false).unwrap();
    let tokens = g.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap();
    for (id, piece) in enc.get_ids().iter().zip(enc.get_tokens()) {
        assert_eq!(
            tokens[*id as usize].as_str().unwrap(),
            piece,
            "id {id} must be the GGUF vocabulary's piece"
        );
    }
    assert_eq!(
        tok.decode(enc.get_ids(), false).unwrap(),
        sample,
        "byte-level round trip"
    );
    assert!(
        enc.get_ids().contains(&1),
        "<|im_start|> is the special token 1"
    );
    let digits = tok.encode("2024", false).unwrap();
    assert_eq!(
        digits.get_ids().len(),
        4,
        "smollm pre-tokenizer splits digits one by one"
    );

    let mut m = TractDecoder::load(
        &out,
        &ModelManifest::load(&out).unwrap(),
        "test",
        &common::runtime(),
    )
    .unwrap();
    assert!(m.has_kv_cache());
    let r = m.rolling_loglikelihood(PARAGRAPH).unwrap();
    let ppl = (-r.logprob / r.tokens as f64).exp();
    eprintln!(
        "SmolLM2 token perplexity on the paragraph: {ppl:.2} over {} tokens",
        r.tokens
    );
    assert!(
        ppl > 2.0 && ppl < 40.0,
        "perplexity {ppl}: a broken RoPE or tokenizer gives hundreds"
    );

    // the KV-cache path (context computed once) equals recomputing the context
    let ctx = "Question: What is the capital of France?\nAnswer:";
    let conts = vec![" Paris".to_string(), " Berlin and Rome".to_string()];
    let shared = m.loglikelihood(ctx, &conts).unwrap();
    m.set_share_context(false);
    let full = m.loglikelihood(ctx, &conts).unwrap();
    for (a, b) in shared.iter().zip(&full) {
        assert!(
            (a.logprob - b.logprob).abs() < 1e-3,
            "{} vs {}",
            a.logprob,
            b.logprob
        );
        assert_eq!(a.tokens, b.tokens);
    }
    assert!(shared[0].logprob > shared[1].logprob);
    m.set_share_context(true);
    let gen = m
        .generate("The capital of France is", &["\n".into()], 5)
        .unwrap();
    assert!(gen.tokens > 0 && gen.tokens <= 5);
}

#[test]
fn q4_1_graph_and_its_dequantized_twin_give_the_same_logits() {
    let Some(path) = common::smollm2_gguf() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (q, f) = (tmp.path().join("q"), tmp.path().join("f"));
    let mq = llama::import_gguf(&path, &q, 256, false).unwrap();
    llama::import_gguf(&path, &f, 256, true).unwrap();
    assert!(mq.matmul.contains("EbQuantLinear"));
    let size = |d: &std::path::Path| std::fs::metadata(d.join("model.onnx")).unwrap().len();
    assert!(
        size(&q) * 2 < size(&f),
        "quantized weights stay quantized in the file"
    );
    let dq = TractDecoder::load(
        &q,
        &ModelManifest::load(&q).unwrap(),
        "q",
        &common::runtime(),
    )
    .unwrap();
    let df = TractDecoder::load(
        &f,
        &ModelManifest::load(&f).unwrap(),
        "f",
        &common::runtime(),
    )
    .unwrap();
    let ids = dq
        .tokenize("The quick brown fox jumps over the lazy dog.")
        .unwrap();
    let (a, b) = (dq.logits(&ids).unwrap(), df.logits(&ids).unwrap());
    let max = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, common::worse);
    assert!(
        max < 1e-3,
        "quantized vs dequantized logits differ by {max}"
    );
}

#[test]
fn a_truncated_gguf_is_a_clear_error() {
    let Some(path) = common::smollm2_gguf() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cut = tmp.path().join("cut.gguf");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&cut, &bytes[..1_000_000]).unwrap();
    let err = llama::import_gguf(&cut, &tmp.path().join("out"), 512, false).expect_err("must fail");
    let msg = err.to_string();
    assert!(msg.contains("cut.gguf"), "{msg}");
}

/// SmolLM2 imported with a 512-token context into `dir` and loaded, when
/// `../shared` has it.
fn decoder_512(dir: &std::path::Path) -> Option<TractDecoder> {
    let path = common::smollm2_gguf()?;
    let out = dir.join("smollm2");
    llama::import_gguf(&path, &out, 512, true).expect("import");
    let manifest = ModelManifest::load(&out).unwrap();
    Some(TractDecoder::load(&out, &manifest, "test", &common::runtime()).unwrap())
}

/// An example's loglikelihood requests scored as one list (ordered by
/// context, the document's cache shared across its questions) give what
/// scoring each request alone from scratch gives.
#[test]
fn a_list_of_requests_scores_as_each_request_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut m) = decoder_512(tmp.path()) else {
        return;
    };
    let doc = format!("{PARAGRAPH}\n{PARAGRAPH}");
    let contexts: Vec<String> = ["trade", "the church", "wool", "a bridge", "the school"]
        .iter()
        .map(|l| format!("{doc}\nIs the text about {l}? Answer:"))
        .chain(["Question: What is the capital of France?\nAnswer:".to_string()])
        .collect();
    let conts = vec![
        " yes".to_string(),
        " no".to_string(),
        " Paris, I think".to_string(),
    ];
    // out of context order, so the backend's reordering is exercised
    let order = [3, 0, 5, 1, 4, 2];
    let requests: Vec<LoglikelihoodRequest<'_>> = order
        .iter()
        .map(|&i| LoglikelihoodRequest {
            context: &contexts[i],
            continuations: &conts,
        })
        .collect();
    let listed = m.loglikelihood_requests(&requests).unwrap();
    m.set_share_context(false);
    let mut worst = 0f64;
    for (r, got) in requests.iter().zip(&listed) {
        let alone = m.loglikelihood(r.context, r.continuations).unwrap();
        for (a, b) in got.iter().zip(&alone) {
            assert_eq!((a.tokens, a.is_greedy), (b.tokens, b.is_greedy));
            worst = worst.max((a.logprob - b.logprob).abs() / b.logprob.abs().max(1.0));
        }
    }
    eprintln!("largest relative difference: {worst:e}");
    assert!(worst < 1e-5, "largest relative difference {worst:e}");
}

/// A document's label questions score exactly alike whether a pass starts
/// from a kept head of the document's cache or from a fresh copy of it, and
/// each continuation scores the tokens lm-eval's split of whole encodings
/// gives (context, then context + continuation).
#[test]
fn label_questions_score_the_same_from_a_kept_head_as_from_a_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut m) = decoder_512(tmp.path()) else {
        return;
    };
    // EUR-Lex's question, its concept ids tokenized digit by digit, so that
    // neighbouring questions share different numbers of tokens
    let doc = format!("EU law:\n{PARAGRAPH}\n\n");
    let contexts: Vec<String> = [
        "100170", "100171", "100179", "1002", "100171", "2001", "200",
    ]
    .iter()
    .map(|c| format!("{doc}\nIs this law annotated with EuroVoc concept {c}? Answer yes or no."))
    .collect();
    let conts = vec![" yes".to_string(), " no".to_string()];
    let requests: Vec<LoglikelihoodRequest<'_>> = contexts
        .iter()
        .map(|c| LoglikelihoodRequest {
            context: c,
            continuations: &conts,
        })
        .collect();
    let kept = m.loglikelihood_requests(&requests).unwrap();
    m.set_keep_heads(false);
    let copied = m.loglikelihood_requests(&requests).unwrap();
    for (i, (a, b)) in kept.iter().zip(&copied).enumerate() {
        for (j, (x, y)) in a.iter().zip(b).enumerate() {
            assert_eq!(
                (x.logprob.to_bits(), x.is_greedy, x.tokens),
                (y.logprob.to_bits(), y.is_greedy, y.tokens),
                "question {i}, continuation {j}: {} against {}",
                x.logprob,
                y.logprob
            );
            let ctx = m.tokenize(&contexts[i]).unwrap();
            let whole = m.tokenize(&format!("{}{}", contexts[i], conts[j])).unwrap();
            assert_eq!(whole[..ctx.len()], ctx[..]);
            assert_eq!(x.tokens, whole.len() - ctx.len());
        }
    }
}
