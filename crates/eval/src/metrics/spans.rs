//! Span-level metrics for sequence labelling and set-valued extraction.
//!
//! Entity extraction reproduces `seqeval` 1.x:
//! * [`bio_spans_lenient`] — `seqeval.metrics.sequence_labeling.get_entities`,
//!   the default (conlleval-like) mode of `f1_score`.
//! * [`bio_spans_strict`] — `seqeval.scheme.Tokens(..., scheme=IOB2).entities`,
//!   i.e. `f1_score(..., mode="strict", scheme=IOB2)`.
//!
//! Spans are `(type, start, end)` with `end` **exclusive** (seqeval's
//! lenient extractor reports an inclusive end; it is shifted by one here).

use std::collections::HashSet;
use std::hash::Hash;
use std::iter;

/// Splits a tag the way `get_entities` does: the first character is the
/// chunk tag and the type is the text after the first `-` of the remainder
/// (the whole remainder if it has no `-`), or `_` if that is empty.
/// An empty string, where seqeval would raise, is read as `O`.
fn lenient_parts(chunk: &str) -> (char, &str) {
    let Some(tag) = chunk.chars().next() else {
        return ('O', "_");
    };
    let rest = &chunk[tag.len_utf8()..];
    let ty = rest.split_once('-').map_or(rest, |(_, after)| after);
    (tag, if ty.is_empty() { "_" } else { ty })
}

/// seqeval's `end_of_chunk`.
fn end_of_chunk(prev_tag: char, tag: char, prev_type: &str, ty: &str) -> bool {
    matches!(
        (prev_tag, tag),
        ('E' | 'S', _) | ('B' | 'I', 'B' | 'S' | 'O')
    ) || (prev_tag != 'O' && prev_tag != '.' && prev_type != ty)
}

/// seqeval's `start_of_chunk`.
fn start_of_chunk(prev_tag: char, tag: char, prev_type: &str, ty: &str) -> bool {
    matches!(tag, 'B' | 'S')
        || matches!((prev_tag, tag), ('E' | 'S' | 'O', 'E' | 'I'))
        || (tag != 'O' && tag != '.' && prev_type != ty)
}

/// `get_entities` over a tag stream (an `O` is appended, as seqeval does).
fn lenient_chunks<'a>(seq: impl Iterator<Item = &'a str>) -> Vec<(&'a str, usize, usize)> {
    let mut chunks = Vec::new();
    let mut prev_tag = 'O';
    let mut prev_type = "";
    let mut begin = 0;
    for (i, chunk) in seq.chain(iter::once("O")).enumerate() {
        let (tag, ty) = lenient_parts(chunk);
        if end_of_chunk(prev_tag, tag, prev_type, ty) {
            chunks.push((prev_type, begin, i));
        }
        if start_of_chunk(prev_tag, tag, prev_type, ty) {
            begin = i;
        }
        prev_tag = tag;
        prev_type = ty;
    }
    chunks
}

/// Entities of one tag sequence in seqeval's default (lenient,
/// conlleval-like) mode, as `(type, start, end_exclusive)`.
///
/// A stray `I-X` (after `O` or after another type) starts a new entity, a
/// change of type ends one, and IOBES `E-`/`S-` tags are understood. Any
/// other string is split like seqeval does (first character = tag, text after
/// the first `-` = type); an empty string is read as `O`.
pub fn bio_spans_lenient(tags: &[String]) -> Vec<(String, usize, usize)> {
    lenient_chunks(tags.iter().map(String::as_str))
        .into_iter()
        .map(|(ty, s, e)| (ty.to_owned(), s, e))
        .collect()
}

/// Prefix and type of a tag under seqeval's IOB2 scheme: the first character
/// is the prefix and the type is the remainder with `-` stripped from both
/// ends (`_` if empty). Prefixes other than `B`/`I`/`O` and empty strings,
/// for which seqeval raises an error, are read as `O` (they end entities).
fn strict_parts(token: &str) -> (char, &str) {
    let Some(prefix) = token.chars().next() else {
        return ('O', "_");
    };
    if !matches!(prefix, 'B' | 'I' | 'O') {
        return ('O', "_");
    }
    let ty = token[prefix.len_utf8()..].trim_matches('-');
    (prefix, if ty.is_empty() { "_" } else { ty })
}

/// IOB2 strict extraction over one sentence's tags.
fn strict_chunks<'a>(seq: impl Iterator<Item = &'a str>) -> Vec<(&'a str, usize, usize)> {
    let parts: Vec<(char, &str)> = seq.map(strict_parts).collect();
    let mut chunks = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let (prefix, ty) = parts[i];
        if prefix == 'B' {
            let end = parts[i + 1..]
                .iter()
                .position(|&(p, t)| !(p == 'I' && t == ty))
                .map_or(parts.len(), |k| i + 1 + k);
            chunks.push((ty, i, end));
            i = end;
        } else {
            i += 1;
        }
    }
    chunks
}

/// Entities of one tag sequence under seqeval `mode="strict"`,
/// `scheme=IOB2`, as `(type, start, end_exclusive)`.
///
/// An entity starts at `B-X` and extends over following `I-X` of the same
/// type; an `I-X` not continuing a `B-X`/`I-X` of type X is not an entity.
/// `O`, another `B-`, an `I-` of another type, or a malformed tag (prefix
/// not `B`/`I`/`O`, where seqeval raises) ends the entity.
pub fn bio_spans_strict(tags: &[String]) -> Vec<(String, usize, usize)> {
    strict_chunks(tags.iter().map(String::as_str))
        .into_iter()
        .map(|(ty, s, e)| (ty.to_owned(), s, e))
        .collect()
}

/// The tags of predicted sentence `i`, cut or padded with `O` to `len`.
fn conformed(pred: &[Vec<String>], i: usize, len: usize) -> impl Iterator<Item = &str> {
    let row = pred.get(i).map_or(&[][..], Vec::as_slice);
    (0..len).map(move |j| row.get(j).map_or("O", String::as_str))
}

/// `_prf_divide` with `zero_division="warn"`.
fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Micro precision, recall and F1 from true-positive, predicted and gold
/// counts; each ratio is 0.0 when undefined.
fn prf(tp: usize, n_pred: usize, n_gold: usize) -> (f64, f64, f64) {
    let p = ratio(tp, n_pred);
    let r = ratio(tp, n_gold);
    let f = if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    };
    (p, r, f)
}

/// Strict entities of several sentences, keyed by sentence index.
fn strict_entities<'a, I>(
    sentences: impl Iterator<Item = I>,
) -> HashSet<(usize, &'a str, usize, usize)>
where
    I: Iterator<Item = &'a str>,
{
    sentences
        .enumerate()
        .flat_map(|(i, s)| {
            strict_chunks(s)
                .into_iter()
                .map(move |(t, a, b)| (i, t, a, b))
        })
        .collect()
}

/// Micro precision, recall and F1 over entity spans, as seqeval's
/// `precision_score`/`recall_score`/`f1_score` with `average="micro"`;
/// `strict` selects `mode="strict", scheme=IOB2`, otherwise the default mode.
///
/// Gold defines the shape: predicted sentence `i` is cut or padded with `O`
/// to the length of gold sentence `i`, a missing predicted sentence is all
/// `O`, and extra predicted sentences are ignored (seqeval raises on any
/// length mismatch). In the default mode the sentences are concatenated with
/// an `O` between them, exactly as seqeval flattens nested lists.
pub fn span_f1(pred: &[Vec<String>], gold: &[Vec<String>], strict: bool) -> (f64, f64, f64) {
    let (tp, n_pred, n_gold) = if strict {
        let g = strict_entities(gold.iter().map(|s| s.iter().map(String::as_str)));
        let p = strict_entities(
            gold.iter()
                .enumerate()
                .map(|(i, s)| conformed(pred, i, s.len())),
        );
        (p.intersection(&g).count(), p.len(), g.len())
    } else {
        let flat_gold = gold
            .iter()
            .flat_map(|s| s.iter().map(String::as_str).chain(iter::once("O")));
        let flat_pred = gold
            .iter()
            .enumerate()
            .flat_map(|(i, s)| conformed(pred, i, s.len()).chain(iter::once("O")));
        let g: HashSet<_> = lenient_chunks(flat_gold).into_iter().collect();
        let p: HashSet<_> = lenient_chunks(flat_pred).into_iter().collect();
        (p.intersection(&g).count(), p.len(), g.len())
    };
    prf(tp, n_pred, n_gold)
}

/// Token-level accuracy: the share of gold tokens whose predicted tag (same
/// sentence, same position) is identical. Missing predicted tokens or
/// sentences count as wrong; extra ones are ignored. Returns `f64::NAN`
/// when gold has no tokens (seqeval would divide by zero).
pub fn token_accuracy(pred: &[Vec<String>], gold: &[Vec<String>]) -> f64 {
    let total: usize = gold.iter().map(Vec::len).sum();
    if total == 0 {
        return f64::NAN;
    }
    let correct: usize = gold
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let p = pred.get(i).map_or(&[][..], Vec::as_slice);
            g.iter().zip(p).filter(|(a, b)| a == b).count()
        })
        .sum();
    correct as f64 / total as f64
}

/// `(tp, n_pred, n_gold)` between one predicted and one gold set.
fn set_overlap<T: Eq + Hash>(pred: &[T], gold: &[T]) -> (usize, usize, usize) {
    let g: HashSet<&T> = gold.iter().collect();
    let p: HashSet<&T> = pred.iter().collect();
    (p.intersection(&g).count(), p.len(), g.len())
}

/// True-positive, false-positive and false-negative counts of one example's
/// predicted set against its gold set, duplicates counted once; the
/// per-example statistics that [`set_prf`] sums.
pub fn set_counts<T: Eq + Hash>(pred: &[T], gold: &[T]) -> (f64, f64, f64) {
    let (tp, n_pred, n_gold) = set_overlap(pred, gold);
    (tp as f64, (n_pred - tp) as f64, (n_gold - tp) as f64)
}

/// Micro precision, recall and F1 over per-example sets (e.g. relation
/// triples): example `i` of `pred` is compared with example `i` of `gold`,
/// duplicates inside an example count once, a missing predicted example is
/// empty and extra predicted examples are ignored. Ratios with a zero
/// denominator are 0.0.
pub fn set_prf<T: Eq + Hash>(pred: &[Vec<T>], gold: &[Vec<T>]) -> (f64, f64, f64) {
    let (mut tp, mut n_pred, mut n_gold) = (0, 0, 0);
    for (i, g) in gold.iter().enumerate() {
        let p = pred.get(i).map_or(&[][..], Vec::as_slice);
        let (t, np, ng) = set_overlap(p, g);
        tp += t;
        n_pred += np;
        n_gold += ng;
    }
    prf(tp, n_pred, n_gold)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn sents(rows: &[&str]) -> Vec<Vec<String>> {
        rows.iter().map(|r| tags(r)).collect()
    }

    fn span(t: &str, s: usize, e: usize) -> (String, usize, usize) {
        (t.to_owned(), s, e)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn seqeval_readme_example() {
        // Gold: MISC [3,6), PER [0,2); pred: MISC [2,6), PER [0,2).
        // tp = 1 of 2 predicted and 2 gold -> P = R = F = 0.5.
        let gold = sents(&["O O O B-MISC I-MISC I-MISC O", "B-PER I-PER O"]);
        let pred = sents(&["O O B-MISC I-MISC I-MISC I-MISC O", "B-PER I-PER O"]);
        assert_eq!(span_f1(&pred, &gold, false), (0.5, 0.5, 0.5));
        assert_eq!(span_f1(&pred, &gold, true), (0.5, 0.5, 0.5));
        // 8 of 10 tokens agree.
        assert_eq!(token_accuracy(&pred, &gold), 0.8);
    }

    #[test]
    fn strict_vs_lenient_stray_inside() {
        // seqeval README: y_true [B-NP I-NP O], y_pred [I-NP I-NP O]:
        // default f1 = 1.0, strict IOB2 f1 = 0.0.
        let gold = sents(&["B-NP I-NP O"]);
        let pred = sents(&["I-NP I-NP O"]);
        assert_eq!(bio_spans_lenient(&pred[0]), vec![span("NP", 0, 2)]);
        assert!(bio_spans_strict(&pred[0]).is_empty());
        assert_eq!(span_f1(&pred, &gold, false), (1.0, 1.0, 1.0));
        assert_eq!(span_f1(&pred, &gold, true), (0.0, 0.0, 0.0));
    }

    #[test]
    fn type_change_and_iobes() {
        let t = tags("B-PER I-LOC I-LOC O");
        assert_eq!(
            bio_spans_lenient(&t),
            vec![span("PER", 0, 1), span("LOC", 1, 3)]
        );
        assert_eq!(bio_spans_strict(&t), vec![span("PER", 0, 1)]);
        let t = tags("S-PER B-LOC E-LOC B-ORG");
        assert_eq!(
            bio_spans_lenient(&t),
            vec![span("PER", 0, 1), span("LOC", 1, 3), span("ORG", 3, 4)]
        );
        // Adjacent B- tags are separate entities in both modes.
        let t = tags("B-X B-X I-X");
        let both = vec![span("X", 0, 1), span("X", 1, 3)];
        assert_eq!(bio_spans_lenient(&t), both);
        assert_eq!(bio_spans_strict(&t), both);
    }

    #[test]
    fn strict_malformed_tags_end_entities() {
        // E- is not an IOB2 prefix (seqeval raises); read as O.
        let t = tags("B-PER E-PER I-PER B-LOC I-LOC");
        assert_eq!(
            bio_spans_strict(&t),
            vec![span("PER", 0, 1), span("LOC", 3, 5)]
        );
        // Types are stripped of '-' in strict mode only.
        assert_eq!(bio_spans_strict(&tags("B--X- I-X")), vec![span("X", 0, 2)]);
        assert_eq!(bio_spans_lenient(&tags("B--X")), vec![span("-X", 0, 1)]);
        // A bare "B" has type "_".
        assert_eq!(bio_spans_strict(&tags("B I")), vec![span("_", 0, 2)]);
        assert_eq!(bio_spans_lenient(&tags("B I")), vec![span("_", 0, 2)]);
        assert!(bio_spans_strict(&[String::new()]).is_empty());
    }

    #[test]
    fn unequal_lengths_pad_with_o() {
        // Pred cut short: PER found, LOC missed. P = 1, R = 1/2, F = 2/3.
        let gold = sents(&["B-PER I-PER O B-LOC"]);
        let pred = sents(&["B-PER I-PER"]);
        for strict in [false, true] {
            let (p, r, f) = span_f1(&pred, &gold, strict);
            assert_eq!((p, r), (1.0, 0.5));
            assert!(close(f, 2.0 / 3.0));
        }
        // Extra predicted tokens and sentences are ignored.
        let gold = sents(&["B-PER I-PER"]);
        let pred = sents(&["B-PER I-PER B-LOC", "B-ORG"]);
        assert_eq!(span_f1(&pred, &gold, true), (1.0, 1.0, 1.0));
        assert_eq!(span_f1(&pred, &gold, false), (1.0, 1.0, 1.0));
        // A missing predicted sentence is all O.
        let gold = sents(&["B-PER", "B-LOC"]);
        let pred = sents(&["B-PER"]);
        assert_eq!(span_f1(&pred, &gold, false), (1.0, 0.5, 2.0 / 3.0));
        // No entities anywhere.
        let gold = sents(&["O O"]);
        assert_eq!(span_f1(&gold, &gold, true), (0.0, 0.0, 0.0));
    }

    #[test]
    fn token_accuracy_missing_tokens() {
        // 2 of 4 gold tokens matched (the missing ones count wrong).
        let gold = sents(&["O B-X I-X", "O"]);
        let pred = sents(&["O B-X"]);
        assert_eq!(token_accuracy(&pred, &gold), 0.5);
        assert!(token_accuracy(&pred, &[]).is_nan());
    }

    #[test]
    fn set_prf_relation_triples() {
        // Pred sets {(a,r,b), (c,r,d)} and {}; gold {(a,r,b)} and {(x,r,y)}.
        // tp = 1, |pred| = 2 (duplicate counted once), |gold| = 2.
        let pred = vec![
            vec![("a", "r", "b"), ("a", "r", "b"), ("c", "r", "d")],
            vec![],
        ];
        let gold = vec![vec![("a", "r", "b")], vec![("x", "r", "y")]];
        assert_eq!(set_prf(&pred, &gold), (0.5, 0.5, 0.5));
        // Missing predicted example = empty set; extra ones ignored.
        assert_eq!(set_prf(&pred[..1], &gold), (0.5, 0.5, 0.5));
        let none: Vec<Vec<u8>> = vec![vec![]];
        assert_eq!(set_prf(&none, &none), (0.0, 0.0, 0.0));
        // Per-example counts: tp 1, fp 1 (duplicate once), fn 0.
        assert_eq!(set_counts(&pred[0], &gold[0]), (1.0, 1.0, 0.0));
        assert_eq!(set_counts(&pred[1], &gold[1]), (0.0, 0.0, 1.0));
    }
}
