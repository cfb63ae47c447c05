//! Multi-span answers scored as sets of spans, by the convention of the DROP
//! evaluation script (`drop_eval.py`, `get_metrics`; TAT-QA's `tatqa_metric.py`
//! keeps it): exact match when the normalised spans are the same set of the
//! same size; F1 by aligning gold and predicted spans one to one so that the
//! sum of their token F1s is largest, averaging over the larger of the two
//! span counts, rounded to two decimals. A pair whose gold span holds
//! numbers scores 0 unless the predicted span holds one of them.

use super::text::{remove_articles, white_space_fix};
use std::collections::BTreeSet;

/// Splits a generated answer into spans: at line breaks, `;`, `|`, and a
/// comma followed by white space (so `1,234` stays one number).
pub fn split_prediction(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for piece in text.split(['\n', ';', '|']) {
        let mut rest = piece;
        while let Some(i) = rest
            .char_indices()
            .find(|&(i, c)| c == ',' && rest[i + 1..].starts_with(char::is_whitespace))
            .map(|(i, _)| i)
        {
            out.push(rest[..i].trim().to_string());
            rest = &rest[i + 1..];
        }
        out.push(rest.trim().to_string());
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Python's `float(text)` succeeds (DROP's `_is_number`).
fn is_number(t: &str) -> bool {
    t.parse::<f64>().is_ok()
}

/// DROP's `_normalize_answer`: split at spaces and hyphens; per token, lower
/// case, drop ASCII punctuation unless it is a number, write a number in one
/// canonical form, remove articles, collapse white space; join the non-empty
/// tokens with one space.
pub fn normalize(text: &str) -> String {
    text.split([' ', '-'])
        .map(|token| {
            let lower = token.to_lowercase();
            let t = if is_number(&lower) {
                lower
            } else {
                lower
                    .chars()
                    .filter(|c| !c.is_ascii_punctuation())
                    .collect()
            };
            let t = match t.parse::<f64>() {
                Ok(v) => format!("{v}"),
                Err(_) => t,
            };
            white_space_fix(&remove_articles(&t))
        })
        .filter(|p| !p.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

type Bag = BTreeSet<String>;

fn bags(spans: &[String]) -> (Vec<String>, Vec<Bag>) {
    let norm: Vec<String> = spans.iter().map(|s| normalize(s)).collect();
    let bags = norm
        .iter()
        .map(|n| n.split_whitespace().map(String::from).collect())
        .collect();
    (norm, bags)
}

/// DROP's `_compute_f1` over two token sets (an empty set has precision or
/// recall 1).
fn bag_f1(pred: &Bag, gold: &Bag) -> f64 {
    let inter = gold.intersection(pred).count() as f64;
    let p = if pred.is_empty() {
        1.0
    } else {
        inter / pred.len() as f64
    };
    let r = if gold.is_empty() {
        1.0
    } else {
        inter / gold.len() as f64
    };
    if p == 0.0 && r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// DROP's `_match_numbers_if_present`.
fn numbers_agree(gold: &Bag, pred: &Bag) -> bool {
    let g: Vec<&String> = gold.iter().filter(|w| is_number(w)).collect();
    g.is_empty() || g.iter().any(|w| pred.contains(*w))
}

/// The largest sum of `w[i][j]` over one-to-one pairs of rows and columns
/// (`scipy.optimize.linear_sum_assignment` on `-w`, weights >= 0), by
/// dynamic programming over the subsets of the shorter side.
fn best_alignment(w: &[Vec<f64>]) -> f64 {
    let rows = w.len();
    let cols = w.first().map_or(0, Vec::len);
    if rows == 0 || cols == 0 {
        return 0.0;
    }
    if cols > rows {
        let t: Vec<Vec<f64>> = (0..cols)
            .map(|j| (0..rows).map(|i| w[i][j]).collect())
            .collect();
        return best_alignment(&t);
    }
    // cols <= rows; more than 16 spans on both sides is out of reach of the
    // exact search, and greedy pairing stands in.
    if cols > 16 {
        let mut used = vec![false; rows];
        let mut total = 0.0;
        (0..cols).for_each(|j| {
            if let Some((i, v)) = (0..rows)
                .filter(|&i| !used[i])
                .map(|i| (i, w[i][j]))
                .max_by(|a, b| a.1.total_cmp(&b.1))
            {
                used[i] = true;
                total += v;
            }
        });
        return total;
    }
    // best[mask]: best sum with the columns in `mask` taken by the rows seen so far
    let mut best = vec![f64::NEG_INFINITY; 1 << cols];
    best[0] = 0.0;
    for row in w {
        let mut next = best.clone();
        for (mask, &b) in best.iter().enumerate() {
            if b == f64::NEG_INFINITY {
                continue;
            }
            for (j, &v) in row.iter().enumerate() {
                if mask & (1 << j) == 0 {
                    let m = mask | (1 << j);
                    if b + v > next[m] {
                        next[m] = b + v;
                    }
                }
            }
        }
        best = next;
    }
    best.into_iter().fold(0.0, f64::max)
}

/// DROP's exact match and F1 of predicted spans against gold spans.
pub fn em_f1(pred: &[String], gold: &[String]) -> (f64, f64) {
    let (pn, pb) = bags(pred);
    let (gn, gb) = bags(gold);
    let same: BTreeSet<&String> = pn.iter().collect();
    let em = (same == gn.iter().collect::<BTreeSet<_>>() && pn.len() == gn.len()) as u8 as f64;
    let w: Vec<Vec<f64>> = gb
        .iter()
        .map(|g| {
            pb.iter()
                .map(|p| {
                    if numbers_agree(g, p) {
                        bag_f1(p, g)
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    let slots = pb.len().max(gb.len());
    let f1 = if slots == 0 {
        0.0
    } else {
        best_alignment(&w) / slots as f64
    };
    (em, (f1 * 100.0).round_ties_even() / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn splits_predictions_at_separators_but_not_inside_numbers() {
        assert_eq!(
            split_prediction("Alice, Bob; Carol\n1,234 | x"),
            v(&["Alice", "Bob", "Carol", "1,234", "x"])
        );
    }

    #[test]
    fn normalises_like_drop() {
        assert_eq!(normalize("The Cat-Sat."), "cat sat");
        assert_eq!(normalize("5.0 yards"), "5 yards");
        assert_eq!(normalize("an apple"), "apple");
    }

    #[test]
    fn scores_span_sets_with_the_best_alignment() {
        // same set in another order
        assert_eq!(em_f1(&v(&["y", "x"]), &v(&["x", "y"])), (1.0, 1.0));
        // one of two gold spans: slots = 2, aligned sum 1 -> 0.5
        assert_eq!(em_f1(&v(&["x"]), &v(&["x", "y"])), (0.0, 0.5));
        // an extra wrong span costs as much: slots = 3, sum 2 -> 0.666.. -> 0.67
        assert_eq!(em_f1(&v(&["x", "y", "z"]), &v(&["x", "y"])), (0.0, 0.67));
        // gold {new york}, {paris}; pred {york}, {paris}: f1(york, new york)
        // = 2 * 1 * 0.5 / 1.5 = 2/3, paris 1; (2/3 + 1) / 2 = 0.8333 -> 0.83
        assert_eq!(
            em_f1(&v(&["York", "Paris"]), &v(&["New York", "Paris"])),
            (0.0, 0.83)
        );
        // gold "x y z", "x y"; pred "x y", "y z". f1(x y, x y z) = f1(y z, x y z)
        // = 2 * 1 * 2/3 / (5/3) = 0.8, f1(x y, x y) = 1, f1(y z, x y) = 0.5.
        // Pairing in order gives (0.8 + 0.5) / 2; the best alignment (1 + 0.8) / 2 = 0.9
        assert_eq!(
            em_f1(&v(&["x y", "y z"]), &v(&["x y z", "x y"])),
            (0.0, 0.9)
        );
        // a gold span with a number needs that number in the prediction
        assert_eq!(em_f1(&v(&["7 yards"]), &v(&["3 yards"])), (0.0, 0.0));
        assert_eq!(em_f1(&v(&["3.0 yards"]), &v(&["3 yards"])), (1.0, 1.0));
    }

    #[test]
    fn alignment_is_exact_on_rectangles() {
        let w = vec![vec![0.1, 0.9, 0.0], vec![0.8, 0.85, 0.0]];
        assert!((best_alignment(&w) - 1.7).abs() < 1e-12);
    }
}
