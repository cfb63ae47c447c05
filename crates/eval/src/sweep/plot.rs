//! The sweep's line plot (PNG + SVG): task scores, perplexity when a
//! perplexity suite was run, and GG / DSI of the strongest domain, each
//! against bits per weight, with 95 % bootstrap whiskers.

use super::table::SweepRow;
use crate::report::plots::{self, LineChart, LinePanel, Series, PALETTE};
use std::path::{Path, PathBuf};

fn point(e: &crate::metrics::Estimate) -> Option<(f64, f64, f64)> {
    Some((e.value, e.ci_low, e.ci_high))
}

fn plain(v: Option<f64>) -> Option<(f64, f64, f64)> {
    v.map(|v| (v, f64::NAN, f64::NAN))
}

/// Writes `<stem>.png` and `<stem>.svg` into `dir` for `rows` (any order).
pub fn write(
    dir: &Path,
    stem: &str,
    model: &str,
    rows: &[SweepRow],
) -> Result<Vec<PathBuf>, String> {
    let mut rows: Vec<&SweepRow> = rows.iter().collect();
    rows.sort_by_key(|r| r.bits);
    let color = |i: usize| PALETTE[i % PALETTE.len()];
    let mut scores: Vec<Series> = Vec::new();
    let mut ppl: Vec<Series> = Vec::new();
    if let Some(first) = rows.first() {
        for (i, c) in first.suites.iter().enumerate() {
            let values = rows
                .iter()
                .map(|r| {
                    r.suites
                        .get(i)
                        .and_then(|c| c.estimate.as_ref())
                        .and_then(point)
                })
                .collect();
            let s = Series {
                name: format!("{} ({})", c.suite, c.metric.as_str()),
                color: color(i),
                values,
            };
            if c.metric.higher_is_better() {
                scores.push(s);
            } else {
                ppl.push(s);
            }
        }
    }
    if rows.iter().any(|r| r.mean_f1.is_some()) {
        scores.push(Series {
            name: "mean F1".into(),
            color: plotters::style::BLACK,
            values: rows.iter().map(|r| plain(r.mean_f1)).collect(),
        });
    }
    let mut panels = vec![LinePanel {
        title: "task scores (headline metric per suite)".into(),
        y_label: "score".into(),
        series: scores,
    }];
    if !ppl.is_empty() {
        panels.push(LinePanel {
            title: "perplexity suites (lower is better)".into(),
            y_label: "perplexity".into(),
            series: ppl,
        });
    }
    panels.push(LinePanel {
        title: "brittleness: GG and DSI of the strongest domain".into(),
        y_label: "GG, DSI".into(),
        series: vec![
            Series {
                name: "GG (strongest domain)".into(),
                color: PALETTE[3],
                values: rows
                    .iter()
                    .map(|r| r.gg.as_ref().and_then(|g| point(&g.1)))
                    .collect(),
            },
            Series {
                name: "DSI (same domain)".into(),
                color: PALETTE[4],
                values: rows
                    .iter()
                    .map(|r| r.dsi.as_ref().and_then(|g| point(&g.1)))
                    .collect(),
            },
        ],
    });
    let chart = LineChart {
        title: format!("{model}: compression sweep"),
        x_label: "bits per weight (fewer = more compressed)".into(),
        x: rows.iter().map(|r| r.bits as f64).collect(),
        panels,
    };
    plots::write_line_chart(dir, stem, &chart)
}
