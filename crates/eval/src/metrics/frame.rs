//! Tabular views of scores with polars: the per-suite metrics table, the
//! per-domain aggregation, and their CSV / Parquet files.

use super::SuiteScores;
use polars::prelude::*;
use std::path::Path;

/// One row per (suite, metric): estimates with intervals, then one column per
/// `(name, value)` of `provenance` (the same on every row).
pub fn metrics_frame(
    model: &str,
    suites: &[SuiteScores],
    provenance: &[(&str, String)],
) -> PolarsResult<DataFrame> {
    let rows: Vec<(&SuiteScores, usize)> = suites
        .iter()
        .flat_map(|s| (0..s.metrics.len()).map(move |i| (s, i)))
        .collect();
    let text = |f: &dyn Fn(&SuiteScores, usize) -> String| {
        rows.iter().map(|(s, i)| f(s, *i)).collect::<Vec<_>>()
    };
    let num = |f: &dyn Fn(&SuiteScores, usize) -> f64| {
        rows.iter().map(|(s, i)| f(s, *i)).collect::<Vec<_>>()
    };
    let mut df = df!(
        "model" => vec![model.to_string(); rows.len()],
        "suite" => text(&|s, _| s.suite.clone()),
        "domain" => text(&|s, _| s.domain.as_str().to_string()),
        "task" => text(&|s, _| s.task.clone()),
        "metric" => text(&|s, i| s.metrics[i].0.as_str().to_string()),
        "value" => num(&|s, i| s.metrics[i].1.value),
        "ci_low" => num(&|s, i| s.metrics[i].1.ci_low),
        "ci_high" => num(&|s, i| s.metrics[i].1.ci_high),
        "stderr" => num(&|s, i| s.metrics[i].1.stderr),
        "n" => rows.iter().map(|(s, _)| s.n as u32).collect::<Vec<_>>(),
        "higher_is_better" => rows.iter().map(|(s, i)| s.metrics[*i].0.higher_is_better()).collect::<Vec<_>>(),
        "headline" => rows.iter().map(|(_, i)| *i == 0).collect::<Vec<_>>(),
    )?;
    for (name, value) in provenance {
        df.with_column(Column::new((*name).into(), vec![value.clone(); rows.len()]))?;
    }
    Ok(df)
}

/// Mean headline score per domain (higher-is-better headlines only), by polars.
pub fn domain_frame(metrics: &DataFrame) -> PolarsResult<DataFrame> {
    metrics
        .clone()
        .lazy()
        .filter(
            col("headline")
                .and(col("higher_is_better"))
                .and(col("value").is_not_nan()),
        )
        .group_by([col("model"), col("domain")])
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
