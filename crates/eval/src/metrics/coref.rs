//! Coreference metrics MUC and B³ as computed by the CoNLL-2011/2012
//! reference scorer (`reference-coreference-scorers`, `CorScorer.pm` v8.01).
//!
//! A cluster is a list of mention spans; `pred` is the response and `gold`
//! the key. Mentions are matched by exact span equality. Each mention should
//! appear at most once on each side; a repeated mention is ignored after its
//! first occurrence (the reference scorer drops repeated response mentions
//! too), and empty clusters are skipped.
//!
//! For corpus-level scores the reference scorer adds up numerators and
//! denominators over documents before dividing: use [`muc_counts`] /
//! [`b_cubed_counts`], accumulate with `+=`, then call [`CorefCounts::prf`].

use std::collections::{HashMap, HashSet};
use std::ops::AddAssign;

/// A mention span, e.g. `(start_token, end_token)`.
pub type Mention = (usize, usize);

/// Recall and precision numerators and denominators of one metric, the four
/// numbers that the reference scorer returns and sums across documents.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CorefCounts {
    /// Recall numerator.
    pub recall_num: f64,
    /// Recall denominator.
    pub recall_den: f64,
    /// Precision numerator.
    pub precision_num: f64,
    /// Precision denominator.
    pub precision_den: f64,
}

impl CorefCounts {
    /// `(precision, recall, f1)` as the scorer's `ShowRPF`: a ratio with a
    /// zero denominator is 0, and F1 is 0 when precision + recall is 0.
    pub fn prf(&self) -> (f64, f64, f64) {
        let ratio = |n: f64, d: f64| if d == 0.0 { 0.0 } else { n / d };
        let p = ratio(self.precision_num, self.precision_den);
        let r = ratio(self.recall_num, self.recall_den);
        let f = if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        };
        (p, r, f)
    }
}

impl AddAssign for CorefCounts {
    fn add_assign(&mut self, o: Self) {
        self.recall_num += o.recall_num;
        self.recall_den += o.recall_den;
        self.precision_num += o.precision_num;
        self.precision_den += o.precision_den;
    }
}

/// Drops repeated mentions (keeping the first occurrence) and empty clusters.
fn clean(clusters: &[Vec<Mention>]) -> Vec<Vec<Mention>> {
    let mut seen = HashSet::new();
    clusters
        .iter()
        .map(|c| c.iter().copied().filter(|m| seen.insert(*m)).collect())
        .filter(|c: &Vec<Mention>| !c.is_empty())
        .collect()
}

/// Mention -> index of the cluster that holds it.
fn index(clusters: &[Vec<Mention>]) -> HashMap<Mention, usize> {
    clusters
        .iter()
        .enumerate()
        .flat_map(|(i, c)| c.iter().map(move |&m| (m, i)))
        .collect()
}

/// Number of links `Σ (|C| - 1)` of a partition.
fn links(clusters: &[Vec<Mention>]) -> usize {
    clusters.iter().map(|c| c.len() - 1).sum()
}

/// MUC counts (Vilain et al., 1995).
///
/// The common numerator is `Σ_R (|R| - |p(R)|)` over response clusters R,
/// where `p(R)` partitions R by the key clusters and a mention absent from
/// the key is a part of its own; this equals `Σ_K (|K| - |p(K)|)` over key
/// clusters. Recall divides by `Σ_K (|K| - 1)`, precision by
/// `Σ_R (|R| - 1)`; singletons contribute nothing.
pub fn muc_counts(pred: &[Vec<Mention>], gold: &[Vec<Mention>]) -> CorefCounts {
    let key = clean(gold);
    let response = clean(pred);
    let key_of = index(&key);
    let correct: usize = response
        .iter()
        .map(|r| {
            let mut parts = HashSet::new();
            let mut unmatched = 0;
            for m in r {
                match key_of.get(m) {
                    Some(&k) => {
                        parts.insert(k);
                    }
                    None => unmatched += 1,
                }
            }
            r.len() - parts.len() - unmatched
        })
        .sum();
    CorefCounts {
        recall_num: correct as f64,
        recall_den: links(&key) as f64,
        precision_num: correct as f64,
        precision_den: links(&response) as f64,
    }
}

/// B³ counts (Bagga & Baldwin, 1998) as the reference scorer's `BCUBED`.
///
/// For every response mention m in cluster R whose key cluster is K:
/// precision gains `|R ∩ K| / |R|` and recall gains `|R ∩ K| / |K|`. A
/// response mention missing from the key adds 0 to precision; a key mention
/// missing from the response adds 0 to recall. The denominators are the
/// numbers of response and key mentions, singletons included. Terms are
/// accumulated in the scorer's order (response clusters, then mentions).
pub fn b_cubed_counts(pred: &[Vec<Mention>], gold: &[Vec<Mention>]) -> CorefCounts {
    let key = clean(gold);
    let response = clean(pred);
    let key_of = index(&key);
    let mut counts = CorefCounts {
        recall_den: key.iter().map(Vec::len).sum::<usize>() as f64,
        precision_den: response.iter().map(Vec::len).sum::<usize>() as f64,
        ..CorefCounts::default()
    };
    for r in &response {
        let mut overlap: HashMap<usize, usize> = HashMap::new();
        for m in r {
            if let Some(&k) = key_of.get(m) {
                *overlap.entry(k).or_insert(0) += 1;
            }
        }
        for m in r {
            if let Some(&k) = key_of.get(m) {
                let common = overlap[&k] as f64;
                counts.precision_num += common / r.len() as f64;
                counts.recall_num += common / key[k].len() as f64;
            }
        }
    }
    counts
}

/// MUC recall `(numerator, denominator)` of `pred` against `gold`, i.e.
/// `(recall_num, recall_den)` of [`muc_counts`]. Swapping the arguments
/// gives the precision pair.
pub fn muc_recall_counts(pred: &[Vec<Mention>], gold: &[Vec<Mention>]) -> (f64, f64) {
    let c = muc_counts(pred, gold);
    (c.recall_num, c.recall_den)
}

/// B³ recall `(sum, number of gold mentions)` of `pred` against `gold`, i.e.
/// `(recall_num, recall_den)` of [`b_cubed_counts`]. Swapping the arguments
/// gives the precision pair with the same value up to floating-point
/// summation order; [`b_cubed_counts`] sums in the reference scorer's order.
pub fn b_cubed_recall_sums(pred: &[Vec<Mention>], gold: &[Vec<Mention>]) -> (f64, f64) {
    let c = b_cubed_counts(pred, gold);
    (c.recall_num, c.recall_den)
}

/// MUC `(precision, recall, f1)` for one document; see [`muc_counts`].
pub fn muc(pred: &[Vec<Mention>], gold: &[Vec<Mention>]) -> (f64, f64, f64) {
    muc_counts(pred, gold).prf()
}

/// B³ `(precision, recall, f1)` for one document; see [`b_cubed_counts`].
pub fn b_cubed(pred: &[Vec<Mention>], gold: &[Vec<Mention>]) -> (f64, f64, f64) {
    b_cubed_counts(pred, gold).prf()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Single-token mentions `(i, i)` for each id.
    fn clusters(ids: &[&[usize]]) -> Vec<Vec<Mention>> {
        ids.iter()
            .map(|c| c.iter().map(|&i| (i, i)).collect())
            .collect()
    }

    fn close(a: (f64, f64, f64), b: (f64, f64, f64)) -> bool {
        (a.0 - b.0).abs() < 1e-12 && (a.1 - b.1).abs() < 1e-12 && (a.2 - b.2).abs() < 1e-12
    }

    #[test]
    fn vilain_split_chain() {
        // Key {A B C D}, response {A B} {C D}.
        // MUC: R = (4 - 2) / 3 = 2/3, P = (1 + 1) / 2 = 1, F = 0.8.
        // B³: every key mention sees 2 of its 4 -> R = 1/2; P = 1;
        //     F = 2 * 0.5 / 1.5 = 2/3.
        let key = clusters(&[&[1, 2, 3, 4]]);
        let resp = clusters(&[&[1, 2], &[3, 4]]);
        assert!(close(muc(&resp, &key), (1.0, 2.0 / 3.0, 0.8)));
        assert!(close(b_cubed(&resp, &key), (1.0, 0.5, 2.0 / 3.0)));
    }

    #[test]
    fn bagga_baldwin_example() {
        // Key {1..5} {6 7} {8..12}.
        let key = clusters(&[&[1, 2, 3, 4, 5], &[6, 7], &[8, 9, 10, 11, 12]]);
        // Response 1 merges {6 7} and {8..12}.
        // MUC: R = 9/9; P: (5 - 1) + (7 - 2) = 9 of 10 links -> 0.9,
        //      F = 1.8 / 1.9 = 18/19.
        // B³ P: 5 * 5/5 + 2 * 2/7 + 5 * 5/7 = 64/7 over 12 = 16/21; R = 1;
        //      F = 2 * (16/21) / (37/21) = 32/37.
        let r1 = clusters(&[&[1, 2, 3, 4, 5], &[6, 7, 8, 9, 10, 11, 12]]);
        assert!(close(muc(&r1, &key), (0.9, 1.0, 18.0 / 19.0)));
        assert!(close(b_cubed(&r1, &key), (16.0 / 21.0, 1.0, 32.0 / 37.0)));
        // Response 2 merges {1..5} and {8..12}: same MUC, worse B³.
        // B³ P: 10 * 5/10 + 2 * 2/2 = 7 over 12 = 7/12; F = 14/19.
        let r2 = clusters(&[&[1, 2, 3, 4, 5, 8, 9, 10, 11, 12], &[6, 7]]);
        assert!(close(muc(&r2, &key), (0.9, 1.0, 18.0 / 19.0)));
        assert!(close(b_cubed(&r2, &key), (7.0 / 12.0, 1.0, 14.0 / 19.0)));
    }

    #[test]
    fn twinless_mentions() {
        // Key {a b c}; response {a b} {d e} with d, e not in the key.
        // MUC: correct = (2 - 1) + (2 - 2) = 1; R = 1/2, P = 1/2.
        // B³ P: a, b: 2/2 each; d, e: 0 -> 2/4 = 1/2.
        //    R: a, b: 2/3 each; c missing: 0 -> (4/3)/3 = 4/9.
        //    F = 2 * (1/2)(4/9) / (17/18) = 8/17.
        let key = clusters(&[&[1, 2, 3]]);
        let resp = clusters(&[&[1, 2], &[4, 5]]);
        assert!(close(muc(&resp, &key), (0.5, 0.5, 0.5)));
        assert!(close(b_cubed(&resp, &key), (0.5, 4.0 / 9.0, 8.0 / 17.0)));
    }

    #[test]
    fn singletons_and_empty() {
        // Singletons have no MUC links but count for B³.
        let key = clusters(&[&[1], &[2]]);
        assert_eq!(muc(&key, &key), (0.0, 0.0, 0.0));
        assert_eq!(b_cubed(&key, &key), (1.0, 1.0, 1.0));
        assert_eq!(muc(&[], &[]), (0.0, 0.0, 0.0));
        assert_eq!(b_cubed(&[], &key), (0.0, 0.0, 0.0));
        // Empty clusters and repeated mentions are ignored.
        let messy = vec![vec![], vec![(1, 1), (2, 2), (1, 1)]];
        let clean = clusters(&[&[1, 2]]);
        assert_eq!(muc(&messy, &clean), (1.0, 1.0, 1.0));
        assert_eq!(b_cubed(&messy, &clean), (1.0, 1.0, 1.0));
    }

    #[test]
    fn recall_pairs_swap_to_precision() {
        // Bagga & Baldwin response 1: MUC P = 9/10, B³ P = (64/7)/12.
        let key = clusters(&[&[1, 2, 3, 4, 5], &[6, 7], &[8, 9, 10, 11, 12]]);
        let resp = clusters(&[&[1, 2, 3, 4, 5], &[6, 7, 8, 9, 10, 11, 12]]);
        assert_eq!(muc_recall_counts(&resp, &key), (9.0, 9.0));
        assert_eq!(muc_recall_counts(&key, &resp), (9.0, 10.0));
        let (num, den) = b_cubed_recall_sums(&key, &resp);
        assert_eq!(den, 12.0);
        assert!((num - 64.0 / 7.0).abs() < 1e-12);
        assert_eq!(b_cubed_recall_sums(&resp, &key), (12.0, 12.0));
    }

    #[test]
    fn corpus_counts_accumulate() {
        // Doc 1: MUC correct 2 of 3 key links, 2 response links.
        // Doc 2: perfect, 1 link. Totals: R = 3/4, P = 3/3.
        let mut total = CorefCounts::default();
        total += muc_counts(&clusters(&[&[1, 2], &[3, 4]]), &clusters(&[&[1, 2, 3, 4]]));
        total += muc_counts(&clusters(&[&[1, 2]]), &clusters(&[&[1, 2]]));
        assert_eq!(total.recall_num, 3.0);
        assert_eq!(total.recall_den, 4.0);
        let (p, r, f) = total.prf();
        assert_eq!((p, r), (1.0, 0.75));
        assert!((f - 6.0 / 7.0).abs() < 1e-12);
    }
}
