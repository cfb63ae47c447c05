//! Tabular views of scores with polars: the per-suite metrics table, the
//! per-domain aggregation, and their CSV / Parquet files.

use super::SuiteScores;
use polars::prelude::*;
use std::path::Path;

/// One row per (suite, metric): estimates with intervals, then one column per
/// `(name, value)` of `provenance` (the same on every row). The rows of the
/// suites' groups follow those of all suites, their suite named
/// `<suite>/<field>=<value>` and never the headline.
pub fn metrics_frame(
    model: &str,
    suites: &[SuiteScores],
    provenance: &[(&str, String)],
) -> PolarsResult<DataFrame> {
    let whole = suites.iter().map(|s| (s.suite.clone(), s, false));
    let groups = suites.iter().flat_map(|s| {
        s.groups
            .iter()
            .map(move |(g, gs)| (format!("{}/{g}", s.suite), gs, true))
    });
    let rows: Vec<(String, &SuiteScores, usize, bool)> = whole
        .chain(groups)
        .flat_map(|(label, s, group)| {
            (0..s.metrics.len()).map(move |i| (label.clone(), s, i, group))
        })
        .collect();
    let text = |f: &dyn Fn(&SuiteScores, usize) -> String| {
        rows.iter().map(|(_, s, i, _)| f(s, *i)).collect::<Vec<_>>()
    };
    let num = |f: &dyn Fn(&SuiteScores, usize) -> f64| {
        rows.iter().map(|(_, s, i, _)| f(s, *i)).collect::<Vec<_>>()
    };
    let mut df = df!(
        "model" => vec![model.to_string(); rows.len()],
        "suite" => rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        "domain" => text(&|s, _| s.domain.as_str().to_string()),
        "task" => text(&|s, _| s.task.clone()),
        "metric" => text(&|s, i| s.metrics[i].0.as_str().to_string()),
        "value" => num(&|s, i| s.metrics[i].1.value),
        "ci_low" => num(&|s, i| s.metrics[i].1.ci_low),
        "ci_high" => num(&|s, i| s.metrics[i].1.ci_high),
        "stderr" => num(&|s, i| s.metrics[i].1.stderr),
        "n" => rows.iter().map(|(_, s, _, _)| s.n as u32).collect::<Vec<_>>(),
        "higher_is_better" => rows.iter().map(|(_, s, i, _)| s.metrics[*i].0.higher_is_better()).collect::<Vec<_>>(),
        "headline" => rows.iter().map(|(_, _, i, group)| *i == 0 && !group).collect::<Vec<_>>(),
    )?;
    for (name, value) in provenance {
        df.with_column(Column::new((*name).into(), vec![value.clone(); rows.len()]))?;
    }
    Ok(df)
}

/// Mean headline score per paper domain (higher-is-better headlines only), by
/// polars. A row enters the domain that [`SuiteScores::paper_domain`] of its
/// suite names; rows of suites outside the paper's domains are left out.
pub fn domain_frame(metrics: &DataFrame, suites: &[SuiteScores]) -> PolarsResult<DataFrame> {
    let paper: Vec<Option<&str>> = metrics
        .column("suite")?
        .str()?
        .into_iter()
        .map(|name| {
            let s = suites.iter().find(|s| Some(s.suite.as_str()) == name)?;
            s.paper_domain.map(|d| d.as_str())
        })
        .collect();
    let mut with_paper = metrics.clone();
    with_paper.with_column(Column::new("paper_domain".into(), paper))?;
    with_paper
        .lazy()
        .filter(
            col("headline")
                .and(col("higher_is_better"))
                .and(col("value").is_not_nan())
                .and(col("paper_domain").is_not_null()),
        )
        .group_by([col("model"), col("paper_domain").alias("domain")])
        .agg([
            col("value").mean().alias("score"),
            col("suite").count().alias("suites"),
            col("n").sum().alias("examples"),
        ])
        .sort(["model", "domain"], Default::default())
        .collect()
}

/// Writes a frame as CSV and Parquet next to each other (`<stem>.csv`, `<stem>.parquet`).
pub fn write_frame(df: &mut DataFrame, dir: &Path, stem: &str) -> PolarsResult<()> {
    let csv = std::fs::File::create(dir.join(format!("{stem}.csv")))?;
    CsvWriter::new(csv).finish(df)?;
    let pq = std::fs::File::create(dir.join(format!("{stem}.parquet")))?;
    ParquetWriter::new(pq).finish(df)?;
    Ok(())
}
