//! Calls longer than the model's context: the example's document is cut at
//! its end, the same for every call, so every call fits and the calls keep
//! their shared prefix; `left` leaves the calls to the model. Real suite
//! files, the bundled fixtures and the bundled tiny model.

mod common;

use edgebench::data;
use edgebench::fit::{fit, Truncation};
use edgebench::model;
use edgebench::request::{self, Call};

fn contexts(calls: &[Call]) -> Vec<&str> {
    calls
        .iter()
        .map(|c| match c {
            Call::Loglikelihood { context, .. } => context.as_str(),
            other => panic!("a loglikelihood call, not {}", other.kind()),
        })
        .collect()
}

#[test]
fn a_long_document_is_cut_once_for_all_of_its_calls() {
    let repo = common::repo();
    let specs = edgebench::suite::load_dir(&repo.join("suites")).unwrap();
    let spec = specs.iter().find(|s| s.id == "lexglue-ecthr-a").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let m = model::load(
        "builtin:tiny",
        &tmp.path().join("models"),
        &common::runtime(),
    )
    .unwrap();
    let max = m.info().max_context;
    let fixtures = repo.join("fixtures");
    let examples = data::load_examples(spec, &fixtures).unwrap();
    let strategy = request::strategy(spec, &m.info().capabilities).unwrap();
    let mut cut_some = false;
    for ex in &examples {
        let built = request::build(spec, strategy, ex, &[]);
        let left = fit(spec, strategy, ex, &[], m.as_ref(), Truncation::Left).unwrap();
        assert_eq!(
            left.calls, built,
            "left truncation leaves the calls as built"
        );
        assert_eq!(left.cut_tokens, 0);

        let fitted = fit(spec, strategy, ex, &[], m.as_ref(), Truncation::Document).unwrap();
        let longest = |calls: &[Call]| -> usize {
            calls
                .iter()
                .map(|c| match c {
                    Call::Loglikelihood {
                        context,
                        continuations,
                    } => continuations
                        .iter()
                        .map(|x| m.count_tokens(&format!("{context}{x}")).unwrap())
                        .max()
                        .unwrap(),
                    _ => unreachable!(),
                })
                .max()
                .unwrap()
        };
        assert!(longest(&fitted.calls) <= max, "{}: every call fits", ex.id);
        if longest(&built) <= max {
            assert_eq!(
                fitted.calls, built,
                "{}: an example that fits is untouched",
                ex.id
            );
            assert_eq!(fitted.cut_tokens, 0);
            continue;
        }
        cut_some = true;
        // the document is cut at its end: what the calls keep is its head,
        // and every call starts with the same text up to its question
        let doc = &ex.vars["facts"];
        let ctx = contexts(&fitted.calls);
        let q = spec.prompt.label_question.as_deref().unwrap();
        let head_end = ctx[0]
            .find(&format!("\n{}", &q[..q.find('{').unwrap()]))
            .unwrap();
        for c in &ctx {
            assert_eq!(&c[..head_end], &ctx[0][..head_end], "{}: one prefix", ex.id);
        }
        let prompt = request::render(spec, ex);
        let doc_at = prompt.find(doc.as_str()).unwrap();
        let kept = &ctx[0][doc_at..head_end];
        assert!(
            doc.starts_with(kept.trim_end()) && kept.len() < doc.len(),
            "{}: the calls keep the document's head",
            ex.id
        );
        assert_eq!(
            fitted.cut_tokens,
            m.count_tokens(doc).unwrap() - m.count_tokens(kept.trim_end()).unwrap(),
            "{}: the cut is counted in tokens",
            ex.id
        );
        // as tight as a word boundary allows: one more word would not fit
        let next_word_end = doc[kept.trim_end().len()..]
            .trim_start()
            .find(char::is_whitespace)
            .map_or(doc.len(), |i| {
                doc.len() - doc[kept.trim_end().len()..].trim_start().len() + i
            });
        let mut longer = ex.clone();
        longer
            .vars
            .insert("facts".into(), doc[..next_word_end].to_string());
        assert!(
            longest(&request::build(spec, strategy, &longer, &[])) > max,
            "{}: the cut keeps as much as fits",
            ex.id
        );
    }
    assert!(
        cut_some,
        "the fixtures have a document longer than the tiny model's context"
    );
}
