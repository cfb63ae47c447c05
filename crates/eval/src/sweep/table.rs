//! Sweep rows from scored runs: bits against each suite's headline metric,
//! mean F1, perplexity, and the brittleness metrics, as Markdown and CSV,
//! and the answer the rows give to "does brittleness grow with compression?".
//!
//! GG and DSI are per domain (`RunScores.robustness`); per width the row keeps
//! the domain with the largest GG, the model's strongest domain against the
//! mean of the others. Per domain `GG = 1 - 1 / DSI`, so that domain also has
//! the largest DSI; both are shown because the paper reports both.

use crate::metrics::Estimate;
use crate::report::RunScores;
use crate::suite::spec::{Domain, Metric};
use edgebench_util::stats::mean;
use std::fmt::Write as _;

/// One suite's headline (first) metric at one width; `None` when not scored.
#[derive(Debug, Clone)]
pub struct SuiteCell {
    pub suite: String,
    pub metric: Metric,
    pub estimate: Option<Estimate>,
}

/// Everything the sweep reports for one width.
#[derive(Debug, Clone)]
pub struct SweepRow {
    pub bits: usize,
    pub run_id: String,
    /// Size of the graph file (weights as stored).
    pub graph_bytes: u64,
    /// Fewest examples scored in any suite.
    pub min_examples: usize,
    pub suites: Vec<SuiteCell>,
    /// Mean over suites of their first F1-type metric.
    pub mean_f1: Option<f64>,
    /// Mean of the higher-is-better headline metrics.
    pub mean_score: Option<f64>,
    /// Mean token perplexity over perplexity suites.
    pub perplexity: Option<f64>,
    /// Domains with a usable headline score.
    pub domains: usize,
    /// Largest GG over domains, with its domain.
    pub gg: Option<(Domain, Estimate)>,
    /// DSI of the same domain.
    pub dsi: Option<(Domain, Estimate)>,
}

impl SweepRow {
    /// Summarises the scored run of one width.
    pub fn from_scores(bits: usize, graph_bytes: u64, s: &RunScores) -> SweepRow {
        let suites: Vec<SuiteCell> = s
            .specs
            .iter()
            .filter_map(|spec| {
                let metric = *spec.metrics.first()?;
                let estimate = s
                    .suites
                    .iter()
                    .find(|x| x.suite == spec.id)
                    .and_then(|x| x.metrics.iter().find(|m| m.0 == metric))
                    .map(|m| m.1);
                Some(SuiteCell {
                    suite: spec.id.clone(),
                    metric,
                    estimate,
                })
            })
            .collect();
        let f1: Vec<f64> = s
            .suites
            .iter()
            .filter_map(|x| {
                x.metrics
                    .iter()
                    .find(|m| m.0.as_str().contains("f1"))
                    .map(|m| m.1.value)
            })
            .filter(|v| v.is_finite())
            .collect();
        let headline: Vec<f64> = s
            .suites
            .iter()
            .filter_map(|x| x.headline().map(|h| h.1.value))
            .collect();
        let ppl: Vec<f64> = s
            .suites
            .iter()
            .filter_map(|x| {
                x.metrics
                    .iter()
                    .find(|m| m.0 == Metric::Perplexity)
                    .map(|m| m.1.value)
            })
            .filter(|v| v.is_finite())
            .collect();
        let gg = s
            .robustness
            .gg
            .iter()
            .filter(|g| g.1.value.is_finite())
            .max_by(|a, b| a.1.value.total_cmp(&b.1.value))
            .copied();
        let dsi = gg.and_then(|(d, _)| s.robustness.dsi.iter().find(|x| x.0 == d).copied());
        SweepRow {
            bits,
            run_id: s.manifest.run_id.clone(),
            graph_bytes,
            min_examples: s.suites.iter().map(|x| x.n).min().unwrap_or(0),
            suites,
            mean_f1: mean(f1.iter().copied()),
            mean_score: mean(headline.iter().copied()),
            perplexity: mean(ppl.iter().copied()),
            domains: s.domains.len(),
            gg,
            dsi,
        }
    }
}

fn num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.4}"),
        _ => "n/a".into(),
    }
}

fn est(e: Option<&Estimate>) -> String {
    match e {
        Some(e) if e.value.is_finite() && e.ci_low.is_finite() => {
            format!("{:.4} [{:.4}, {:.4}]", e.value, e.ci_low, e.ci_high)
        }
        Some(e) => num(Some(e.value)),
        None => "n/a".into(),
    }
}

fn by_domain(x: Option<&(Domain, Estimate)>) -> String {
    match x {
        Some((d, e)) => format!("{} ({d})", est(Some(e))),
        None => "n/a".into(),
    }
}

/// The Markdown table, one row per width in the given order.
pub fn markdown(rows: &[SweepRow]) -> String {
    let mut out = String::from("| bits | graph MB |");
    let mut rule = String::from("|---|---|");
    if let Some(first) = rows.first() {
        for c in &first.suites {
            let _ = write!(out, " {} ({}) |", c.suite, c.metric.as_str());
            rule.push_str("---|");
        }
    }
    out.push_str(
        " mean F1 | mean score | perplexity | GG, strongest domain | DSI, same domain |\n",
    );
    rule.push_str("---|---|---|---|---|\n");
    out.push_str(&rule);
    for r in rows {
        let _ = write!(out, "| {} | {:.3} |", r.bits, r.graph_bytes as f64 / 1e6);
        for c in &r.suites {
            let _ = write!(out, " {} |", est(c.estimate.as_ref()));
        }
        let _ = writeln!(
            out,
            " {} | {} | {} | {} | {} |",
            num(r.mean_f1),
            num(r.mean_score),
            num(r.perplexity),
            by_domain(r.gg.as_ref()),
            by_domain(r.dsi.as_ref())
        );
    }
    out
}

/// The CSV table (one row per width; suite columns are `<suite>:<metric>`).
pub fn csv(rows: &[SweepRow]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = ["bits", "graph_bytes", "run_id", "min_examples"]
        .map(String::from)
        .to_vec();
    if let Some(first) = rows.first() {
        header.extend(
            first
                .suites
                .iter()
                .map(|c| format!("{}:{}", c.suite, c.metric.as_str())),
        );
    }
    header.extend(
        [
            "mean_f1",
            "mean_score",
            "perplexity",
            "domains",
            "gg_max",
            "gg_ci_low",
            "gg_ci_high",
            "gg_domain",
            "dsi",
            "dsi_ci_low",
            "dsi_ci_high",
            "dsi_domain",
        ]
        .map(String::from),
    );
    w.write_record(&header)?;
    let cell = |v: Option<f64>| {
        v.filter(|v| v.is_finite())
            .map_or(String::new(), |v| v.to_string())
    };
    for r in rows {
        let mut rec = vec![
            r.bits.to_string(),
            r.graph_bytes.to_string(),
            r.run_id.clone(),
            r.min_examples.to_string(),
        ];
        rec.extend(r.suites.iter().map(|c| cell(c.estimate.map(|e| e.value))));
        rec.extend([cell(r.mean_f1), cell(r.mean_score), cell(r.perplexity)]);
        rec.push(r.domains.to_string());
        for x in [&r.gg, &r.dsi] {
            match x {
                Some((d, e)) => rec.extend([
                    cell(Some(e.value)),
                    cell(Some(e.ci_low)),
                    cell(Some(e.ci_high)),
                    d.to_string(),
                ]),
                None => rec.extend([String::new(), String::new(), String::new(), String::new()]),
            }
        }
        w.write_record(&rec)?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes).expect("CSV of UTF-8 strings"))
}

/// How a metric moved from the least to the most compressed width.
fn trend(
    name: &str,
    hi: &SweepRow,
    lo: &SweepRow,
    pick: fn(&SweepRow) -> Option<&(Domain, Estimate)>,
) -> String {
    let (Some((dh, a)), Some((dl, b))) = (pick(hi), pick(lo)) else {
        return format!("{name}: not defined at every width");
    };
    for (r, e) in [(hi, a), (lo, b)] {
        if !e.value.is_finite() {
            return format!(
                "{name} is undefined at {} bits (a score it divides by is zero)",
                r.bits
            );
        }
    }
    let overlap = a.ci_low.is_finite()
        && b.ci_low.is_finite()
        && a.ci_low <= b.ci_high
        && b.ci_low <= a.ci_high;
    let no_ci = !a.ci_low.is_finite() || !b.ci_low.is_finite();
    let verdict = if no_ci {
        if b.value > a.value {
            "is higher (no bootstrap interval to judge noise)"
        } else {
            "is not higher (no bootstrap interval to judge noise)"
        }
    } else if overlap {
        "does not change beyond the 95 % bootstrap intervals"
    } else if b.value > a.value {
        "grows"
    } else {
        "shrinks"
    };
    format!(
        "{name} {verdict}: {} at {} bits ({dh}) -> {} at {} bits ({dl})",
        est(Some(a)),
        hi.bits,
        est(Some(b)),
        lo.bits
    )
}

/// The answer the rows give to "does brittleness (GG, DSI) grow with compression?".
pub fn brittleness_answer(rows: &[SweepRow]) -> String {
    let usable: Vec<&SweepRow> = rows.iter().filter(|r| r.gg.is_some()).collect();
    let widest = rows.iter().map(|r| r.domains).max().unwrap_or(0);
    if usable.len() < 2 {
        let why = if rows.len() < 2 {
            "a sweep needs two or more widths to compare".to_string()
        } else if widest < 2 {
            format!("they need headline scores in at least two domains and these suites give {widest}; choose suites from several domains")
        } else {
            "they are ratios of domain scores (GG divides by the in-domain score, DSI by the mean of the other domains), and the scores here are zero or missing; run more examples or other suites".to_string()
        };
        return format!(
            "Cannot answer from these runs: GG and DSI are defined at fewer than two widths: {why}."
        );
    }
    let hi = usable.iter().max_by_key(|r| r.bits).expect("two rows");
    let lo = usable.iter().min_by_key(|r| r.bits).expect("two rows");
    let gg = trend("GG (strongest domain)", hi, lo, |r| r.gg.as_ref());
    let dsi = trend("DSI (same domain)", hi, lo, |r| r.dsi.as_ref());
    let score = match (hi.mean_score, lo.mean_score) {
        (Some(a), Some(b)) => format!(
            " Mean headline score: {a:.4} at {} bits -> {b:.4} at {} bits.",
            hi.bits, lo.bits
        ),
        _ => String::new(),
    };
    let n = rows.iter().map(|r| r.min_examples).min().unwrap_or(0);
    format!(
        "Does brittleness grow with compression? In these runs: {gg}; {dsi}.{score} \
         Measured on at least {n} example(s) per suite over {widest} domain(s); \
         the strongest domain is chosen at each width."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(value: f64, lo: f64, hi: f64) -> Estimate {
        Estimate {
            value,
            ci_low: lo,
            ci_high: hi,
            stderr: 0.0,
        }
    }

    fn row(bits: usize, gg: Option<Estimate>, dsi: Option<Estimate>) -> SweepRow {
        SweepRow {
            bits,
            run_id: format!("r{bits}"),
            graph_bytes: 1000 * bits as u64,
            min_examples: 50,
            suites: vec![SuiteCell {
                suite: "mathqa".into(),
                metric: Metric::Acc,
                estimate: Some(e(0.5, 0.4, 0.6)),
            }],
            mean_f1: None,
            mean_score: Some(0.5),
            perplexity: None,
            domains: 2,
            gg: gg.map(|g| (Domain::Stem, g)),
            dsi: dsi.map(|d| (Domain::Stem, d)),
        }
    }

    #[test]
    fn answer_follows_the_intervals() {
        let grows = [
            row(8, Some(e(0.1, 0.05, 0.15)), Some(e(1.1, 1.0, 1.2))),
            row(2, Some(e(0.5, 0.4, 0.6)), Some(e(2.0, 1.7, 2.3))),
        ];
        let a = brittleness_answer(&grows);
        assert!(a.contains("GG (strongest domain) grows"), "{a}");
        assert!(a.contains("DSI (same domain) grows"), "{a}");
        let flat = [
            row(8, Some(e(0.1, -0.5, 0.6)), Some(e(1.1, 0.6, 2.0))),
            row(2, Some(e(0.3, -0.2, 0.7)), Some(e(1.4, 0.8, 2.5))),
        ];
        assert!(brittleness_answer(&flat).contains("does not change beyond"));
        let shrinks = [
            row(8, Some(e(0.5, 0.4, 0.6)), Some(e(2.0, 1.7, 2.3))),
            row(2, Some(e(0.1, 0.05, 0.15)), Some(e(1.1, 1.0, 1.2))),
        ];
        assert!(brittleness_answer(&shrinks).contains("GG (strongest domain) shrinks"));
        let undefined = [
            row(8, Some(e(0.5, 0.4, 0.6)), Some(e(2.0, 1.7, 2.3))),
            row(
                2,
                Some(e(1.0, 1.0, 1.0)),
                Some(e(f64::NAN, f64::NAN, f64::NAN)),
            ),
        ];
        assert!(brittleness_answer(&undefined).contains("undefined at 2 bits"));
        let mut one = row(8, None, None);
        one.domains = 1;
        assert!(brittleness_answer(&[one.clone(), one]).contains("at least two domains"));
        assert!(brittleness_answer(&grows[..1]).contains("two or more widths"));
    }

    #[test]
    fn markdown_and_csv_have_one_row_per_width() {
        let rows = [row(8, None, None), row(4, None, None)];
        let md = markdown(&rows);
        assert_eq!(md.lines().count(), 4, "{md}");
        assert!(md.contains("| mathqa (acc) |") && md.contains("| 4 | 0.004 |"));
        let csv = csv(&rows).unwrap();
        assert_eq!(csv.lines().count(), 3);
        assert!(csv.starts_with("bits,graph_bytes,run_id,min_examples,mathqa:acc,"));
    }
}
