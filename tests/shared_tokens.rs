//! `Tok::encode_shared` (the tokens of a text that starts like one encoded
//! before, reused up to a pre-tokenizer piece) gives exactly the ids of
//! encoding the text whole, on SmolLM2's real tokenizer (rebuilt from the
//! shared GGUF) over the real ECtHR and EUR-Lex label questions, the heads
//! fitting cuts, and texts that differ right at whitespace runs, digits,
//! added tokens and multi-byte characters. Skips with a message when
//! ../shared is absent.

mod common;

use edgebench::data;
use edgebench::model::gguf::Gguf;
use edgebench::model::llama;
use edgebench::model::tokenizer::Tok;
use edgebench::request::{self, Call, Strategy};
use std::time::Instant;

/// SmolLM2's tokenizer as `edgebench import gguf` writes it.
fn smollm2_tok(dir: &std::path::Path) -> Option<Tok> {
    let gguf = common::smollm2_gguf()?;
    let bytes = std::fs::read(&gguf).unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    let path = dir.join("tokenizer.json");
    llama::tokenizer_from_gguf(&g, &gguf)
        .unwrap()
        .save(&path, false)
        .unwrap();
    Some(Tok::load(&path).unwrap())
}

/// The largest character boundary of `s` at or before `i`.
fn floor(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Asserts that `encode_shared` of each text, in order, equals `encode`;
/// returns the seconds each took in all (whole, shared).
fn check_in_order(tok: &Tok, texts: &[String]) -> (f64, f64) {
    let (mut t_whole, mut t_shared) = (0.0, 0.0);
    for (i, t) in texts.iter().enumerate() {
        let start = Instant::now();
        let whole = tok.encode(t).unwrap();
        t_whole += start.elapsed().as_secs_f64();
        let start = Instant::now();
        let shared = tok.encode_shared(t).unwrap();
        t_shared += start.elapsed().as_secs_f64();
        assert_eq!(
            shared,
            whole,
            "text {i} ({} bytes, ending {:?})",
            t.len(),
            &t[floor(t, t.len().saturating_sub(60))..]
        );
    }
    (t_whole, t_shared)
}

#[test]
fn label_questions_and_fitted_heads_tokenize_as_whole_texts() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(tok) = smollm2_tok(tmp.path()) else {
        return;
    };
    let Some(data_dir) = common::shared_data() else {
        return;
    };
    assert!(
        tok.reuses_prefixes(),
        "SmolLM2's byte-level BPE qualifies for reuse"
    );
    let repo = common::repo();
    let specs = edgebench::suite::load_dir(&repo.join("suites")).unwrap();
    let (mut checked, mut t_whole, mut t_shared) = (0, 0.0, 0.0);
    for id in ["lexglue-ecthr-a", "lexglue-eurlex"] {
        let spec = specs.iter().find(|s| s.id == id).unwrap();
        let examples = data::load_examples(spec, &data_dir).unwrap();
        for ex in examples.iter().take(3) {
            let calls = request::build(spec, Strategy::Loglikelihood, ex, &[]);
            let mut texts = Vec::new();
            // fitting: every call's context, then heads of the document
            // (binary search order), then the calls of the cut document
            for c in &calls {
                let Call::Loglikelihood { context, .. } = c else {
                    panic!("label questions are loglikelihood calls")
                };
                texts.push(context.clone());
            }
            let doc = ex.vars.values().max_by_key(|v| v.len()).unwrap();
            let (mut lo, mut hi) = (0, doc.len());
            while hi - lo > 64 {
                let mid = floor(doc, (lo + hi) / 2);
                texts.push(doc[..mid].to_string());
                if mid.is_multiple_of(3) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            // scoring: contexts in sorted order, each with its continuations
            let mut scored: Vec<(&String, &Vec<String>)> = calls
                .iter()
                .map(|c| match c {
                    Call::Loglikelihood {
                        context,
                        continuations,
                    } => (context, continuations),
                    _ => unreachable!(),
                })
                .collect();
            scored.sort();
            for (context, conts) in scored {
                texts.push(context.clone());
                texts.extend(conts.iter().map(|x| format!("{context}{x}")));
            }
            let (w, s) = check_in_order(&tok, &texts);
            (t_whole, t_shared) = (t_whole + w, t_shared + s);
            checked += texts.len();
        }
    }
    eprintln!(
        "{checked} texts tokenized alike; encoded whole in {:.1} ms, shared in {:.1} ms",
        t_whole * 1e3,
        t_shared * 1e3
    );
    assert!(checked > 200, "only {checked} texts checked");
}

#[test]
fn texts_differing_at_awkward_seams_tokenize_as_whole_texts() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(tok) = smollm2_tok(tmp.path()) else {
        return;
    };
    let base = "The applicant, Mr Müller, was born in 1961 and lives in Zürich. \
        On 3 March 2004 the court (東京) dismissed his appeal;  he paid 1,250.75 euros.\n\n\
        \tIt's the applicant's view that they'd   been wronged.\r\n"
        .repeat(8);
    let seams = [
        "",
        " ",
        "  ",
        "   x",
        "\n",
        "\n\n",
        "\n\nIs",
        "\r\n",
        "\t",
        "1",
        "12",
        "2024",
        "'s",
        "'ll",
        "<|im_start|>",
        "<|im_",
        "start|>",
        "<|endoftext|>x",
        "é",
        "東京",
        "\u{200b}",
        " yes",
        " no",
        ".",
        "...",
        "!?",
        "x",
        "xyz",
    ];
    let mut texts = Vec::new();
    // cut points over the whole text, every seam at each, in turns
    let cuts: Vec<usize> = (0..base.len())
        .step_by(37)
        .map(|i| floor(&base, i))
        .chain([base.len()])
        .collect();
    for (k, &cut) in cuts.iter().enumerate() {
        for s in [seams[k % seams.len()], seams[(k * 7 + 3) % seams.len()]] {
            texts.push(format!("{}{s}", &base[..cut]));
            texts.push(format!("{}{s}{}", &base[..cut], &base[cut..]));
        }
    }
    // the same text with its end cut and extended again, byte by byte near whitespace runs
    let end = base.find("they'd   been").unwrap() + 12;
    for i in end - 10..end + 6 {
        let i = floor(&base, i);
        for s in ["", " ", "  been", "\n", "9"] {
            texts.push(format!("{}{s}", &base[..i]));
        }
    }
    let (w, s) = check_in_order(&tok, &texts);
    eprintln!(
        "{} texts tokenized alike; encoded whole in {:.1} ms, shared in {:.1} ms",
        texts.len(),
        w * 1e3,
        s * 1e3
    );
}

#[test]
fn tokenizers_outside_the_rule_are_encoded_whole() {
    let tmp = tempfile::tempdir().unwrap();
    // the bundled tiny model's byte-level tokenizer takes the whole text as one piece
    let bytes = tmp.path().join("bytes.json");
    edgebench::model::tokenizer::write_byte_tokenizer(&bytes).unwrap();
    let tok = Tok::load(&bytes).unwrap();
    assert!(!tok.reuses_prefixes());
    let text = "a b c ".repeat(200);
    assert_eq!(
        tok.encode_shared(&text).unwrap(),
        tok.encode(&text).unwrap()
    );
    // MiniLM's WordPiece (a normaliser that lower-cases and strips accents)
    if let Some(dir) = common::shared_model("all-minilm-l6-v2") {
        let tok = Tok::load(&dir.join("tokenizer.json")).unwrap();
        assert!(!tok.reuses_prefixes());
    }
}
