//! Text-overlap metrics that reproduce reference Python implementations.
//!
//! * [`squad_normalize`], [`squad_em`], [`squad_f1`]: the official SQuAD
//!   evaluation script (`normalize_answer`, `exact_match_score`, `f1_score`).
//! * [`unigram_f1`]: ParlAI's `F1Metric` (`parlai/core/metrics.py`).
//! * [`rouge_n`], [`rouge_l`]: Google's `rouge_score` package
//!   (`RougeScorer(..., use_stemmer=False)`), returning the F-measure.
//!
//! Python's `re` treats `\b` with Unicode semantics (a word character is one
//! for which `str.isalnum()` holds, or `_`) and `str.split()` splits on
//! `str.isspace()` characters. Both are reproduced here exactly (see
//! `is_py_word_char` and `is_py_space`) so that article removal and
//! tokenisation agree with the reference scripts on non-ASCII text too.
//! Lower-casing uses [`str::to_lowercase`], whose mappings (including the
//! Greek final-sigma rule) coincide with Python 3's `str.lower()`.

use std::collections::HashMap;

/// Python `str.isspace()`: Unicode `White_Space` plus the ASCII information
/// separators U+001C..=U+001F, which Python also treats as whitespace.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python `str.split()` with no argument: split on runs of whitespace and
/// drop empty pieces.
fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|t| !t.is_empty())
}

/// A word character for Python's Unicode-aware `re` (`\w`): `_` or a
/// character for which `str.isalnum()` holds, i.e. general category L* or N*.
///
/// Rust's [`char::is_alphanumeric`] additionally accepts `Other_Alphabetic`
/// marks and symbols (categories Mn, Mc, So, e.g. Devanagari vowel signs or
/// circled letters such as `ⓑ`); those are excluded via a table.
fn is_py_word_char(c: char) -> bool {
    if c == '_' {
        return true;
    }
    if !c.is_alphanumeric() {
        return false;
    }
    if c.is_ascii() {
        return true;
    }
    let u = u32::from(c);
    NON_WORD_ALPHANUMERIC
        .binary_search_by(|&(lo, hi)| {
            if hi < u {
                std::cmp::Ordering::Less
            } else if lo > u {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_err()
}

/// `re.sub(r'\b(a|an|the)\b', ' ', text)`: every maximal run of word
/// characters equal to `a`, `an` or `the` is replaced by one space.
pub(crate) fn remove_articles(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if is_py_word_char(c) {
            let end = rest
                .char_indices()
                .find(|&(_, ch)| !is_py_word_char(ch))
                .map_or(rest.len(), |(i, _)| i);
            let word = &rest[..end];
            if matches!(word, "a" | "an" | "the") {
                out.push(' ');
            } else {
                out.push_str(word);
            }
            rest = &rest[end..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// `' '.join(text.split())`.
pub(crate) fn white_space_fix(text: &str) -> String {
    py_split(text).collect::<Vec<_>>().join(" ")
}

/// SQuAD v1.1 `normalize_answer`: lower-case, delete ASCII punctuation
/// (Python's `string.punctuation`), replace the whole words `a`, `an`, `the`
/// by a space, then collapse whitespace — in exactly that order.
///
/// Non-ASCII punctuation (e.g. `’`, `،`, `。`) is kept, as in the reference.
pub fn squad_normalize(s: &str) -> String {
    let lowered = s.to_lowercase();
    let no_punc: String = lowered
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    white_space_fix(&remove_articles(&no_punc))
}

/// ParlAI `normalize_answer`: like [`squad_normalize`] except that ASCII
/// punctuation is replaced by a space instead of being deleted
/// (`"don't"` becomes `"don t"`, not `"dont"`).
fn parlai_normalize(s: &str) -> String {
    let lowered = s.to_lowercase();
    let spaced: String = lowered
        .chars()
        .map(|c| if c.is_ascii_punctuation() { ' ' } else { c })
        .collect();
    white_space_fix(&remove_articles(&spaced))
}

/// `sum((Counter(a) & Counter(b)).values())`: multiset intersection size.
fn common_count(a: &[&str], b: &[&str]) -> usize {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for &t in a {
        *counts.entry(t).or_insert(0) += 1;
    }
    let mut same = 0;
    for &t in b {
        if let Some(n) = counts.get_mut(t) {
            if *n > 0 {
                *n -= 1;
                same += 1;
            }
        }
    }
    same
}

/// Token F1 from the reference scripts, with their operation order.
fn token_f1(pred: &[&str], gold: &[&str]) -> f64 {
    let num_same = common_count(pred, gold);
    if num_same == 0 {
        return 0.0;
    }
    let precision = num_same as f64 / pred.len() as f64;
    let recall = num_same as f64 / gold.len() as f64;
    (2.0 * precision * recall) / (precision + recall)
}

/// SQuAD token-level F1 between a prediction and one gold answer.
///
/// Follows the official `f1_score` (tokens of [`squad_normalize`], bag
/// intersection). Empty token lists follow the SQuAD **v2.0** script: the
/// score is 1.0 when both are empty and 0.0 when only one is. (The v1.1
/// script would give 0.0 for two empty answers; it only differs there.)
pub fn squad_f1(pred: &str, gold: &str) -> f64 {
    let p = squad_normalize(pred);
    let g = squad_normalize(gold);
    let pt: Vec<&str> = py_split(&p).collect();
    let gt: Vec<&str> = py_split(&g).collect();
    if pt.is_empty() || gt.is_empty() {
        return if pt == gt { 1.0 } else { 0.0 };
    }
    token_f1(&pt, &gt)
}

/// SQuAD exact match: 1.0 if the normalized strings are equal, else 0.0.
pub fn squad_em(pred: &str, gold: &str) -> f64 {
    if squad_normalize(pred) == squad_normalize(gold) {
        1.0
    } else {
        0.0
    }
}

/// `metric_max_over_ground_truths`: the best score of `pred` against any
/// gold answer; 0.0 when `golds` is empty (Python would raise).
pub fn max_over_golds(pred: &str, golds: &[String], f: fn(&str, &str) -> f64) -> f64 {
    golds
        .iter()
        .map(|g| f(pred, g))
        .fold(None, |best: Option<f64>, s| {
            Some(best.map_or(s, |b| b.max(s)))
        })
        .unwrap_or(0.0)
}

/// ParlAI's unigram F1 (`F1Metric.compute` against a single answer).
///
/// Normalisation is ParlAI's `normalize_answer`, which differs from SQuAD's
/// in one point: punctuation becomes a space rather than being deleted.
/// As in ParlAI, the score is 0.0 whenever no token is shared, including
/// when both sides are empty.
pub fn unigram_f1(pred: &str, gold: &str) -> f64 {
    let p = parlai_normalize(pred);
    let g = parlai_normalize(gold);
    let pt: Vec<&str> = py_split(&p).collect();
    let gt: Vec<&str> = py_split(&g).collect();
    token_f1(&pt, &gt)
}

/// `rouge_score.tokenize.tokenize(text, stemmer=None)`.
///
/// Lower-cases, turns every character outside `[a-z0-9]` into a separator
/// and splits. Non-ASCII letters are therefore dropped: `"Zürich"` yields
/// `["z", "rich"]` and a CJK or Arabic string yields no tokens at all.
fn rouge_tokenize(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `rouge_score.scoring.fmeasure`.
fn fmeasure(precision: f64, recall: f64) -> f64 {
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

/// Counts of the n-grams of `tokens`.
fn ngram_counts(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    for gram in tokens.windows(n) {
        *counts.entry(gram).or_insert(0) += 1;
    }
    counts
}

/// ROUGE-N F-measure of `pred` against `reference`, as `rouge_score`'s
/// `rouge{n}` with `use_stemmer=False`: clipped n-gram overlap, precision and
/// recall each divided by `max(count, 1)`, F = 0 when there is no overlap.
/// `n == 0` (not accepted by `rouge_score`) returns 0.0.
pub fn rouge_n(pred: &str, reference: &str, n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let pt = rouge_tokenize(pred);
    let rt = rouge_tokenize(reference);
    let pc = ngram_counts(&pt, n);
    let rc = ngram_counts(&rt, n);
    let overlap: usize = rc
        .iter()
        .map(|(g, &c)| c.min(pc.get(g).copied().unwrap_or(0)))
        .sum();
    let pred_total: usize = pc.values().sum();
    let ref_total: usize = rc.values().sum();
    let precision = overlap as f64 / pred_total.max(1) as f64;
    let recall = overlap as f64 / ref_total.max(1) as f64;
    fmeasure(precision, recall)
}

/// Length of the longest common subsequence of two token lists.
fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Sentence-level ROUGE-L F-measure (`rouge_score`'s `rougeL`, not
/// `rougeLsum`): LCS length over prediction / reference length; 0.0 when
/// either side has no tokens.
pub fn rouge_l(pred: &str, reference: &str) -> f64 {
    let pt = rouge_tokenize(pred);
    let rt = rouge_tokenize(reference);
    if pt.is_empty() || rt.is_empty() {
        return 0.0;
    }
    let lcs = lcs_len(&rt, &pt) as f64;
    fmeasure(lcs / pt.len() as f64, lcs / rt.len() as f64)
}

/// Inclusive code-point ranges of characters that Rust's
/// `char::is_alphanumeric` accepts but Python's `str.isalnum()` rejects
/// (general categories Mn, Mc and So carrying `Other_Alphabetic`).
/// Generated from the Unicode 18.0 character database; sorted, disjoint.
#[rustfmt::skip]
const NON_WORD_ALPHANUMERIC: &[(u32, u32)] = &[
    (0x345, 0x345), (0x363, 0x36f), (0x5b0, 0x5bd), (0x5bf, 0x5bf),
    (0x5c1, 0x5c2), (0x5c4, 0x5c5), (0x5c7, 0x5c7), (0x610, 0x61a),
    (0x64b, 0x657), (0x659, 0x65f), (0x670, 0x670), (0x6d6, 0x6dc),
    (0x6e1, 0x6e4), (0x6e7, 0x6e8), (0x6ed, 0x6ed), (0x711, 0x711),
    (0x730, 0x73f), (0x7a6, 0x7b0), (0x816, 0x817), (0x81b, 0x823),
    (0x825, 0x827), (0x829, 0x82c), (0x897, 0x897), (0x8d4, 0x8df),
    (0x8e3, 0x8e9), (0x8f0, 0x903), (0x93a, 0x93b), (0x93e, 0x94c),
    (0x94e, 0x94f), (0x955, 0x957), (0x962, 0x963), (0x981, 0x983),
    (0x9be, 0x9c4), (0x9c7, 0x9c8), (0x9cb, 0x9cc), (0x9d7, 0x9d7),
    (0x9e2, 0x9e3), (0xa01, 0xa03), (0xa3e, 0xa42), (0xa47, 0xa48),
    (0xa4b, 0xa4c), (0xa51, 0xa51), (0xa70, 0xa71), (0xa75, 0xa75),
    (0xa81, 0xa83), (0xabe, 0xac5), (0xac7, 0xac9), (0xacb, 0xacc),
    (0xae2, 0xae3), (0xafa, 0xafc), (0xb01, 0xb03), (0xb3e, 0xb44),
    (0xb47, 0xb48), (0xb4b, 0xb4c), (0xb56, 0xb57), (0xb62, 0xb63),
    (0xb82, 0xb82), (0xbbe, 0xbc2), (0xbc6, 0xbc8), (0xbca, 0xbcc),
    (0xbd7, 0xbd7), (0xc00, 0xc04), (0xc3e, 0xc44), (0xc46, 0xc48),
    (0xc4a, 0xc4c), (0xc55, 0xc56), (0xc62, 0xc63), (0xc81, 0xc83),
    (0xcbe, 0xcc4), (0xcc6, 0xcc8), (0xcca, 0xccc), (0xcd5, 0xcd6),
    (0xce2, 0xce3), (0xcf3, 0xcf3), (0xd00, 0xd03), (0xd3e, 0xd44),
    (0xd46, 0xd48), (0xd4a, 0xd4c), (0xd57, 0xd57), (0xd62, 0xd63),
    (0xd81, 0xd83), (0xdcf, 0xdd4), (0xdd6, 0xdd6), (0xdd8, 0xddf),
    (0xdf2, 0xdf3), (0xe31, 0xe31), (0xe34, 0xe3a), (0xe4d, 0xe4d),
    (0xeb1, 0xeb1), (0xeb4, 0xeb9), (0xebb, 0xebc), (0xecd, 0xecd),
    (0xf71, 0xf83), (0xf8d, 0xf97), (0xf99, 0xfbc), (0x102b, 0x1036),
    (0x1038, 0x1038), (0x103b, 0x103e), (0x1056, 0x1059), (0x105e, 0x1060),
    (0x1062, 0x1064), (0x1067, 0x106d), (0x1071, 0x1074), (0x1082, 0x108d),
    (0x108f, 0x108f), (0x109a, 0x109d), (0x1712, 0x1713), (0x1732, 0x1733),
    (0x1752, 0x1753), (0x1772, 0x1773), (0x17b6, 0x17c8), (0x1885, 0x1886),
    (0x18a9, 0x18a9), (0x1920, 0x192b), (0x1930, 0x1938), (0x1a17, 0x1a1b),
    (0x1a55, 0x1a5e), (0x1a61, 0x1a74), (0x1abf, 0x1ac0), (0x1acc, 0x1ace),
    (0x1b00, 0x1b04), (0x1b35, 0x1b43), (0x1b80, 0x1b82), (0x1ba1, 0x1ba9),
    (0x1bac, 0x1bad), (0x1be7, 0x1bf1), (0x1c24, 0x1c36), (0x1dd3, 0x1df4),
    (0x24b6, 0x24e9), (0x2de0, 0x2dff), (0xa674, 0xa67b), (0xa69e, 0xa69f),
    (0xa802, 0xa802), (0xa80b, 0xa80b), (0xa823, 0xa827), (0xa880, 0xa881),
    (0xa8b4, 0xa8c3), (0xa8c5, 0xa8c5), (0xa8ff, 0xa8ff), (0xa926, 0xa92a),
    (0xa947, 0xa952), (0xa980, 0xa983), (0xa9b4, 0xa9bf), (0xa9e5, 0xa9e5),
    (0xaa29, 0xaa36), (0xaa43, 0xaa43), (0xaa4c, 0xaa4d), (0xaa7b, 0xaa7d),
    (0xaab0, 0xaab0), (0xaab2, 0xaab4), (0xaab7, 0xaab8), (0xaabe, 0xaabe),
    (0xaaeb, 0xaaef), (0xaaf5, 0xaaf5), (0xabe3, 0xabea), (0xfb1e, 0xfb1e),
    (0x10376, 0x1037a), (0x10a01, 0x10a03), (0x10a05, 0x10a06), (0x10a0c, 0x10a0f),
    (0x10d24, 0x10d27), (0x10d69, 0x10d69), (0x10eab, 0x10eac), (0x10efa, 0x10efc),
    (0x11000, 0x11002), (0x11038, 0x11045), (0x11073, 0x11074), (0x11080, 0x11082),
    (0x110b0, 0x110b8), (0x110c2, 0x110c2), (0x11100, 0x11102), (0x11127, 0x11132),
    (0x11145, 0x11146), (0x11180, 0x11182), (0x111b3, 0x111bf), (0x111ce, 0x111cf),
    (0x1122c, 0x11234), (0x11237, 0x11237), (0x1123e, 0x1123e), (0x11241, 0x11241),
    (0x112df, 0x112e8), (0x11300, 0x11303), (0x1133e, 0x11344), (0x11347, 0x11348),
    (0x1134b, 0x1134c), (0x11357, 0x11357), (0x11362, 0x11363), (0x113b8, 0x113c0),
    (0x113c2, 0x113c2), (0x113c5, 0x113c5), (0x113c7, 0x113ca), (0x113cc, 0x113cd),
    (0x11435, 0x11441), (0x11443, 0x11445), (0x114b0, 0x114c1), (0x115af, 0x115b5),
    (0x115b8, 0x115be), (0x115dc, 0x115dd), (0x11630, 0x1163e), (0x11640, 0x11640),
    (0x116ab, 0x116b5), (0x1171d, 0x1172a), (0x1182c, 0x11838), (0x11930, 0x11935),
    (0x11937, 0x11938), (0x1193b, 0x1193c), (0x11940, 0x11940), (0x11942, 0x11942),
    (0x119d1, 0x119d7), (0x119da, 0x119df), (0x119e4, 0x119e4), (0x11a01, 0x11a0a),
    (0x11a35, 0x11a39), (0x11a3b, 0x11a3e), (0x11a51, 0x11a5b), (0x11a8a, 0x11a97),
    (0x11b60, 0x11b67), (0x11c2f, 0x11c36), (0x11c38, 0x11c3e), (0x11c92, 0x11ca7),
    (0x11ca9, 0x11cb6), (0x11d31, 0x11d36), (0x11d3a, 0x11d3a), (0x11d3c, 0x11d3d),
    (0x11d3f, 0x11d41), (0x11d43, 0x11d43), (0x11d47, 0x11d47), (0x11d8a, 0x11d8e),
    (0x11d90, 0x11d91), (0x11d93, 0x11d96), (0x11ef3, 0x11ef6), (0x11f00, 0x11f01),
    (0x11f03, 0x11f03), (0x11f34, 0x11f3a), (0x11f3e, 0x11f40), (0x1611e, 0x1612e),
    (0x16f4f, 0x16f4f), (0x16f51, 0x16f87), (0x16f8f, 0x16f92), (0x16ff0, 0x16ff1),
    (0x1bc9e, 0x1bc9e), (0x1e000, 0x1e006), (0x1e008, 0x1e018), (0x1e01b, 0x1e021),
    (0x1e023, 0x1e024), (0x1e026, 0x1e02a), (0x1e08f, 0x1e08f), (0x1e6e3, 0x1e6e3),
    (0x1e6e6, 0x1e6e6), (0x1e6ee, 0x1e6ef), (0x1e6f5, 0x1e6f5), (0x1e947, 0x1e947),
    (0x1f130, 0x1f149), (0x1f150, 0x1f169), (0x1f170, 0x1f189),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn normalize_lower_punct_articles_space() {
        assert_eq!(squad_normalize("The  Cat, sat!"), "cat sat");
        assert_eq!(squad_normalize("U.S.A."), "usa");
        assert_eq!(squad_normalize("don't"), "dont");
        assert_eq!(squad_normalize("an apple a day"), "apple day");
        // Articles only as whole words.
        assert_eq!(squad_normalize("Theater and Anna"), "theater and anna");
        // Punctuation is removed before articles: "a-b" -> "ab" stays.
        assert_eq!(squad_normalize("a-b"), "ab");
        // "the_x": '_' is punctuation, removed first, giving "thex".
        assert_eq!(squad_normalize("the_x"), "thex");
        assert_eq!(squad_normalize("A"), "");
        assert_eq!(squad_normalize("  \t\n "), "");
        // U+001C..U+001F are whitespace for Python's str.split().
        assert_eq!(squad_normalize("cat\u{1c}sat"), "cat sat");
    }

    #[test]
    fn normalize_unicode_word_boundaries() {
        assert_eq!(squad_normalize("Zürich"), "zürich");
        // 'ç' is a word character, so "ça" is not the article "a".
        assert_eq!(squad_normalize("ça"), "ça");
        // '’' is neither ASCII punctuation nor a word character: \b applies.
        assert_eq!(squad_normalize("l’a"), "l’");
        // Combining acute (Mn) is not a word character for Python's re.
        assert_eq!(squad_normalize("a\u{301} b"), "\u{301} b");
        // Circled letters (So, Other_Alphabetic) are alphabetic for Rust but
        // not word characters for Python: "aⓑ" loses its article.
        assert_eq!(squad_normalize("A\u{24B7}"), "\u{24d1}");
        // Non-ASCII punctuation survives.
        assert_eq!(squad_normalize("القاهرة،"), "القاهرة،");
        assert_eq!(squad_normalize("北京。"), "北京。");
        // Final sigma, as Python's str.lower().
        assert_eq!(squad_normalize("ΟΔΟΣ"), "οδος");
    }

    #[test]
    fn squad_f1_and_em() {
        // Both normalise to "cat sat on mat".
        assert_eq!(squad_f1("the cat sat on the mat", "a cat sat on mat"), 1.0);
        assert_eq!(squad_em("the cat sat on the mat", "a cat sat on mat"), 1.0);
        // pred [cat, sat], gold [cat, sat, on, mat]: p = 1, r = 1/2,
        // F1 = 2 * 1 * 0.5 / 1.5 = 2/3.
        assert!(close(
            squad_f1("the cat sat", "cat sat on the mat"),
            2.0 / 3.0
        ));
        assert_eq!(squad_em("the cat sat", "cat sat on the mat"), 0.0);
        // Bag intersection: pred [x, x], gold [x]: same = 1,
        // p = 1/2, r = 1, F1 = 2/3.
        assert!(close(squad_f1("x x", "x"), 2.0 / 3.0));
        // Punctuation-only differences vanish.
        assert_eq!(squad_f1("Paris.", "paris"), 1.0);
        // Empty prediction.
        assert_eq!(squad_f1("", "cat"), 0.0);
        assert_eq!(squad_f1("cat", ""), 0.0);
        // Both empty after normalisation: v2 convention gives 1.0.
        assert_eq!(squad_f1("the", "a"), 1.0);
        assert_eq!(squad_em("", "the"), 1.0);
    }

    #[test]
    fn squad_unicode_answers() {
        assert_eq!(squad_em("Zürich", "zürich"), 1.0);
        assert_eq!(squad_f1("Zürich", "zürich"), 1.0);
        // Arabic comma is kept, so the tokens differ.
        assert_eq!(squad_f1("القاهرة،", "القاهرة"), 0.0);
        // CJK without spaces is one token.
        assert_eq!(squad_f1("北京大学", "北京"), 0.0);
        // pred [北京, 大学], gold [北京]: p = 1/2, r = 1, F1 = 2/3.
        assert!(close(squad_f1("北京 大学", "北京"), 2.0 / 3.0));
    }

    #[test]
    fn max_over_golds_picks_best() {
        let golds = vec!["dog".to_string(), "the cat".to_string()];
        assert_eq!(max_over_golds("cat", &golds, squad_f1), 1.0);
        assert_eq!(max_over_golds("cat", &[], squad_f1), 0.0);
        assert_eq!(max_over_golds("Dog!", &golds, squad_em), 1.0);
    }

    #[test]
    fn parlai_unigram_f1() {
        // ParlAI turns punctuation into spaces: "don't" -> [don, t].
        // pred [don, t], gold [dont]: no overlap.
        assert_eq!(unigram_f1("don't", "dont"), 0.0);
        assert_eq!(squad_f1("don't", "dont"), 1.0);
        // pred [cat, sat], gold [cat, sat, on, mat]: F1 = 2/3.
        assert!(close(
            unigram_f1("The cat sat.", "a cat sat on the mat"),
            2.0 / 3.0
        ));
        // No shared token (including both empty) gives 0 in ParlAI.
        assert_eq!(unigram_f1("", ""), 0.0);
        assert_eq!(unigram_f1("the", "a"), 0.0);
    }

    #[test]
    fn rouge_tokenizer() {
        assert_eq!(
            rouge_tokenize("Hello, World-2!"),
            vec!["hello", "world", "2"]
        );
        assert_eq!(rouge_tokenize("Zürich café"), vec!["z", "rich", "caf"]);
        assert!(rouge_tokenize("北京大学 القاهرة").is_empty());
        // 'İ' lowers to "i\u{307}"; the 'i' survives.
        assert_eq!(rouge_tokenize("İ"), vec!["i"]);
    }

    #[test]
    fn rouge_hand_checked() {
        // pred [the cat sat on the mat], ref [the cat is on the mat]
        // ROUGE-1: overlap the:2 cat:1 on:1 mat:1 = 5 of 6 each side:
        //   P = R = 5/6, F = 5/6.
        let (p, r) = ("the cat sat on the mat", "The cat is on the mat.");
        assert!(close(rouge_n(p, r, 1), 5.0 / 6.0));
        // ROUGE-2: ref bigrams {the cat, cat is, is on, on the, the mat};
        //   shared: the cat, on the, the mat = 3 of 5: F = 3/5.
        assert!(close(rouge_n(p, r, 2), 0.6));
        // ROUGE-L: LCS "the cat on the mat" = 5: P = R = 5/6.
        assert!(close(rouge_l(p, r), 5.0 / 6.0));
        // LCS of [a b c d] and [a c b d] is 3: P = R = 3/4.
        assert!(close(rouge_l("a b c d", "a c b d"), 0.75));
        // Clipping: pred [x x x], ref [x]: overlap 1, P = 1/3, R = 1,
        // F = 2 * (1/3) / (4/3) = 1/2.
        assert!(close(rouge_n("x x x", "x", 1), 0.5));
        // Different lengths: pred [a b], ref [a b c d]: P = 1, R = 1/2,
        // F = 2/3; ROUGE-2 shares "a b": P = 1, R = 1/3, F = 1/2.
        assert!(close(rouge_n("a b", "a b c d", 1), 2.0 / 3.0));
        assert!(close(rouge_n("a b", "a b c d", 2), 0.5));
    }

    #[test]
    fn rouge_degenerate() {
        assert_eq!(rouge_n("", "cat", 1), 0.0);
        assert_eq!(rouge_n("cat", "cat", 2), 0.0); // no bigrams
        assert_eq!(rouge_n("cat", "cat", 0), 0.0);
        assert_eq!(rouge_l("", ""), 0.0);
        assert_eq!(rouge_l("北京", "北京"), 0.0); // no ASCII tokens
        assert_eq!(rouge_n("cat", "cat", 1), 1.0);
        assert_eq!(rouge_l("Cat!", "cat"), 1.0);
    }

    #[test]
    fn word_char_table_is_sorted_and_disjoint() {
        for w in NON_WORD_ALPHANUMERIC.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 < w[1].0);
        }
        assert!(is_py_word_char('é') && is_py_word_char('北') && is_py_word_char('_'));
        assert!(is_py_word_char('٣') && is_py_word_char('½'));
        assert!(!is_py_word_char('\u{93e}') && !is_py_word_char('\u{24d1}'));
    }
}
