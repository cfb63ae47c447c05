//! Classification metrics matching scikit-learn (`accuracy_score`,
//! `f1_score`, `precision_recall_fscore_support`) with default arguments.
//!
//! Conventions reproduced from scikit-learn >= 1.3:
//! * `labels=None`: the label set is the sorted union of the labels present
//!   in the gold and predicted vectors.
//! * `zero_division="warn"`: a ratio whose denominator is zero is 0.0.
//! * Per-class F1 is computed from counts, `2·tp / (2·tp + fp + fn)`, which is
//!   what scikit-learn does since 1.3 (older releases combined the rounded
//!   precision and recall and can differ in the last bit).
//! * Macro averages use NumPy's pairwise summation (`numpy_mean`) so that
//!   results agree bit for bit with `np.mean`.
//!
//! Multi-label functions keep indicator semantics for every width. With a
//! single column scikit-learn instead reinterprets the `(n, 1)` matrix as
//! binary class labels (`type_of_target` gives `"binary"`) and averages over
//! the classes {0, 1}; results agree for two or more columns.
//!
//! Empty inputs (where scikit-learn raises or returns NaN with a warning)
//! yield `f64::NAN` here. Inputs of unequal length are a caller bug and
//! panic, like scikit-learn's `ValueError`.

use std::collections::BTreeMap;

/// Precision, recall, F1 and support of one label, as returned by
/// `precision_recall_fscore_support(average=None)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassPrf {
    /// The label index.
    pub label: usize,
    /// `tp / (tp + fp)`, 0.0 if the label is never predicted.
    pub precision: f64,
    /// `tp / (tp + fn)`, 0.0 if the label never occurs in gold.
    pub recall: f64,
    /// `2·tp / (2·tp + fp + fn)`.
    pub f1: f64,
    /// Number of gold occurrences of the label.
    pub support: usize,
}

/// Counts of one label: true positives, predictions and gold occurrences.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    tp: usize,
    pred: usize,
    gold: usize,
}

/// `_prf_divide` with `zero_division="warn"`: 0.0 on a zero denominator.
fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// F1 from counts as scikit-learn computes it: `(1+β²)·tp / (β²·true + pred)`.
fn f1_from_counts(c: Counts) -> f64 {
    ratio(2.0 * c.tp as f64, c.gold as f64 + c.pred as f64)
}

/// NumPy's `pairwise_sum` for contiguous `float64` data (blocks of 128,
/// eight-way unrolled accumulation), as used by `np.sum` / `np.mean`.
fn numpy_pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        a.iter().fold(0.0, |acc, &x| acc + x)
    } else if n <= 128 {
        let body = n - n % 8;
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        for chunk in a[8..body].chunks_exact(8) {
            for (acc, &x) in r.iter_mut().zip(chunk) {
                *acc += x;
            }
        }
        let head = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        a[body..].iter().fold(head, |acc, &x| acc + x)
    } else {
        let half = n / 2;
        let split = half - half % 8;
        numpy_pairwise_sum(&a[..split]) + numpy_pairwise_sum(&a[split..])
    }
}

/// `np.mean` of a `float64` vector; NaN when empty.
fn numpy_mean(a: &[f64]) -> f64 {
    if a.is_empty() {
        return f64::NAN;
    }
    numpy_pairwise_sum(a) / a.len() as f64
}

/// Per-label counts over the sorted union of gold and predicted labels.
fn label_counts(pred: &[usize], gold: &[usize]) -> BTreeMap<usize, Counts> {
    assert_eq!(
        pred.len(),
        gold.len(),
        "pred and gold must have the same length"
    );
    let mut counts: BTreeMap<usize, Counts> = BTreeMap::new();
    for (&p, &g) in pred.iter().zip(gold) {
        counts.entry(p).or_default().pred += 1;
        let c = counts.entry(g).or_default();
        c.gold += 1;
        if p == g {
            c.tp += 1;
        }
    }
    counts
}

/// Fraction of positions where `pred` equals `gold` (`accuracy_score`).
///
/// Returns `f64::NAN` for empty input. Panics if the lengths differ.
pub fn accuracy(pred: &[usize], gold: &[usize]) -> f64 {
    assert_eq!(
        pred.len(),
        gold.len(),
        "pred and gold must have the same length"
    );
    if gold.is_empty() {
        return f64::NAN;
    }
    let correct = pred.iter().zip(gold).filter(|(p, g)| p == g).count();
    correct as f64 / gold.len() as f64
}

/// Per-label precision, recall, F1 and support, sorted by label, over the
/// union of gold and predicted labels (`precision_recall_fscore_support`
/// with `average=None`). Panics if the lengths differ.
pub fn per_class_prf(pred: &[usize], gold: &[usize]) -> Vec<ClassPrf> {
    label_counts(pred, gold)
        .into_iter()
        .map(|(label, c)| ClassPrf {
            label,
            precision: ratio(c.tp as f64, c.pred as f64),
            recall: ratio(c.tp as f64, c.gold as f64),
            f1: f1_from_counts(c),
            support: c.gold,
        })
        .collect()
}

/// Macro-averaged F1 (`f1_score(average="macro")`): the unweighted mean of
/// per-label F1 over the union of gold and predicted labels. A label that is
/// never predicted, or only predicted, contributes 0.0.
///
/// Returns `f64::NAN` for empty input. Panics if the lengths differ.
pub fn f1_macro(pred: &[usize], gold: &[usize]) -> f64 {
    let f1s: Vec<f64> = label_counts(pred, gold)
        .into_values()
        .map(f1_from_counts)
        .collect();
    numpy_mean(&f1s)
}

/// Micro-averaged F1 (`f1_score(average="micro")`): F1 of the summed counts.
/// For single-label multiclass data this equals [`accuracy`].
///
/// Returns `f64::NAN` for empty input. Panics if the lengths differ.
pub fn f1_micro(pred: &[usize], gold: &[usize]) -> f64 {
    let counts = label_counts(pred, gold);
    if counts.is_empty() {
        return f64::NAN;
    }
    f1_from_counts(sum_counts(counts.into_values()))
}

/// Adds up per-label counts (micro averaging).
fn sum_counts(it: impl Iterator<Item = Counts>) -> Counts {
    it.fold(Counts::default(), |a, c| Counts {
        tp: a.tp + c.tp,
        pred: a.pred + c.pred,
        gold: a.gold + c.gold,
    })
}

/// Per-column counts of a multi-label indicator matrix. The number of
/// columns is the longest row; shorter rows are read as `false`.
fn column_counts(pred: &[Vec<bool>], gold: &[Vec<bool>]) -> Vec<Counts> {
    assert_eq!(
        pred.len(),
        gold.len(),
        "pred and gold must have the same number of rows"
    );
    let width = pred.iter().chain(gold).map(Vec::len).max().unwrap_or(0);
    let mut counts = vec![Counts::default(); width];
    for (p_row, g_row) in pred.iter().zip(gold) {
        for (j, c) in counts.iter_mut().enumerate() {
            let p = p_row.get(j).copied().unwrap_or(false);
            let g = g_row.get(j).copied().unwrap_or(false);
            c.pred += usize::from(p);
            c.gold += usize::from(g);
            c.tp += usize::from(p && g);
        }
    }
    counts
}

/// Micro-averaged F1 on multi-label indicator rows (`f1_score` on a
/// `multilabel-indicator` matrix, `average="micro"`): F1 of the counts summed
/// over all columns; 0.0 when nothing is predicted or gold anywhere
/// (`zero_division="warn"`).
///
/// Returns `f64::NAN` when there are no rows or no columns. Panics if the
/// row counts differ; rows shorter than the widest are padded with `false`.
pub fn multilabel_f1_micro(pred: &[Vec<bool>], gold: &[Vec<bool>]) -> f64 {
    let counts = column_counts(pred, gold);
    if counts.is_empty() || gold.is_empty() {
        return f64::NAN;
    }
    f1_from_counts(sum_counts(counts.into_iter()))
}

/// Macro-averaged F1 on multi-label indicator rows (`average="macro"`): the
/// mean over **all** columns. A column with `tp + fp + fn = 0` (never gold,
/// never predicted) scores 0.0, as scikit-learn does with the default
/// `zero_division="warn"` (it warns and uses 0.0; only
/// `zero_division=np.nan` would drop such columns from the mean).
///
/// Returns `f64::NAN` when there are no rows or no columns. Panics if the
/// row counts differ; rows shorter than the widest are padded with `false`.
pub fn multilabel_f1_macro(pred: &[Vec<bool>], gold: &[Vec<bool>]) -> f64 {
    let counts = column_counts(pred, gold);
    if gold.is_empty() {
        return f64::NAN;
    }
    let f1s: Vec<f64> = counts.into_iter().map(f1_from_counts).collect();
    numpy_mean(&f1s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn sklearn_docstring_example() {
        // sklearn f1_score docs: y_true = [0, 1, 2, 0, 1, 2],
        // y_pred = [0, 2, 1, 0, 0, 1] -> macro 0.26666666666666666,
        // micro 0.3333333333333333.
        // Class 0: tp 2, pred 3, gold 2 -> 4/5; classes 1, 2: tp 0 -> 0.
        let gold = [0, 1, 2, 0, 1, 2];
        let pred = [0, 2, 1, 0, 0, 1];
        assert_eq!(f1_macro(&pred, &gold), 0.266_666_666_666_666_66);
        assert_eq!(f1_micro(&pred, &gold), 0.333_333_333_333_333_3);
        assert_eq!(accuracy(&pred, &gold), f1_micro(&pred, &gold));
    }

    #[test]
    fn class_never_predicted() {
        // Class 0: tp 2, pred 4, gold 2 -> F1 4/6; class 1: tp 0, pred 0,
        // gold 2 -> 0/2 = 0. Macro = 1/3, micro = accuracy = 1/2.
        let gold = [0, 0, 1, 1];
        let pred = [0, 0, 0, 0];
        assert!(close(f1_macro(&pred, &gold), 1.0 / 3.0));
        assert_eq!(f1_micro(&pred, &gold), 0.5);
        let prf = per_class_prf(&pred, &gold);
        assert_eq!(prf.len(), 2);
        assert_eq!(prf[0].precision, 0.5);
        assert_eq!(prf[0].recall, 1.0);
        assert_eq!(prf[1].precision, 0.0); // zero_division -> 0
        assert_eq!(prf[1].recall, 0.0);
        assert_eq!(prf[1].support, 2);
    }

    #[test]
    fn label_only_in_predictions() {
        // Labels {0, 1, 2}; class 0: tp 1, pred 1, gold 2 -> 2/3;
        // class 1: tp 1, pred 1, gold 1 -> 1; class 2: tp 0, pred 1, gold 0
        // -> 0. Macro = (2/3 + 1 + 0) / 3 = 5/9; micro = 2/3.
        let gold = [0, 0, 1];
        let pred = [0, 2, 1];
        assert!(close(f1_macro(&pred, &gold), 5.0 / 9.0));
        assert!(close(f1_micro(&pred, &gold), 2.0 / 3.0));
        let prf = per_class_prf(&pred, &gold);
        assert_eq!(prf.iter().map(|c| c.label).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(prf[2].support, 0);
        assert_eq!(prf[2].recall, 0.0);
    }

    #[test]
    fn all_correct_and_empty() {
        let y = [3, 1, 4, 1, 5];
        assert_eq!(accuracy(&y, &y), 1.0);
        assert_eq!(f1_macro(&y, &y), 1.0);
        assert_eq!(f1_micro(&y, &y), 1.0);
        assert!(accuracy(&[], &[]).is_nan());
        assert!(f1_macro(&[], &[]).is_nan());
        assert!(f1_micro(&[], &[]).is_nan());
    }

    #[test]
    #[should_panic(expected = "same length")]
    fn length_mismatch_panics() {
        accuracy(&[0, 1], &[0]);
    }

    #[test]
    fn multilabel_hand_checked() {
        // Column 0: tp 1, pred 1, gold 1 -> 1; column 1: tp 0, pred 0,
        // gold 1 -> 0; column 2: never gold nor predicted -> 0.
        // Macro = 1/3. Micro: tp 1, pred 1, gold 2 -> 2/3.
        let gold = vec![
            vec![true, false, false],
            vec![false, true, false],
            vec![false, false, false],
        ];
        let pred = vec![
            vec![true, false, false],
            vec![false, false, false],
            vec![false, false, false],
        ];
        assert!(close(multilabel_f1_macro(&pred, &gold), 1.0 / 3.0));
        assert!(close(multilabel_f1_micro(&pred, &gold), 2.0 / 3.0));
    }

    #[test]
    fn multilabel_rows_without_labels() {
        // Nothing anywhere: every ratio hits zero_division -> 0.0.
        let empty = vec![vec![false; 3]; 2];
        assert_eq!(multilabel_f1_micro(&empty, &empty), 0.0);
        assert_eq!(multilabel_f1_macro(&empty, &empty), 0.0);
        // Short rows are padded with false.
        let gold = vec![vec![true, true], vec![]];
        let pred = vec![vec![true], vec![false, false]];
        // Column 0: 1; column 1: tp 0, gold 1 -> 0. Macro 1/2; micro: tp 1,
        // pred 1, gold 2 -> 2/3.
        assert_eq!(multilabel_f1_macro(&pred, &gold), 0.5);
        assert!(close(multilabel_f1_micro(&pred, &gold), 2.0 / 3.0));
        assert!(multilabel_f1_macro(&[], &[]).is_nan());
        assert!(multilabel_f1_micro(&[vec![]], &[vec![]]).is_nan());
    }

    #[test]
    fn pairwise_sum_blocks() {
        // Small sizes are plain left-to-right sums.
        assert_eq!(numpy_pairwise_sum(&[0.1, 0.2, 0.3]), 0.1 + 0.2 + 0.3);
        // 0.1 added 10 times: numpy gives 1.0 (pairwise), a naive loop
        // gives 0.9999999999999999.
        assert_eq!(numpy_pairwise_sum(&[0.1; 10]), 1.0);
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(numpy_pairwise_sum(&v), 500_500.0);
        assert!(numpy_mean(&[]).is_nan());
    }
}
