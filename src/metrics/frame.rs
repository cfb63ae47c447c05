//! Tabular views of scores with polars: the per-suite metrics table, the
//! per-domain aggregation, and their CSV / Parquet files.

use super::SuiteScores;
use polars::prelude::*;
use std::path::Path;

/// One row per (suite, metric): estimates with intervals.
pub fn metrics_frame(model: &str, suites: &[SuiteScores]) -> PolarsResult<DataFrame> {
    let mut cols: (
        Vec<String>,
        Vec<String>,
        Vec<String>,
        Vec<String>,
        Vec<String>,
    ) = Default::default();
    let mut nums: (
        Vec<f64>,
        Vec<f64>,
        Vec<f64>,
        Vec<f64>,
        Vec<u32>,
        Vec<bool>,
        Vec<bool>,
    ) = Default::default();
    for s in suites {
        for (i, (m, e)) in s.metrics.iter().enumerate() {
            cols.0.push(model.to_string());
            cols.1.push(s.suite.clone());
            cols.2.push(s.domain.as_str().to_string());
            cols.3.push(s.task.clone());
            cols.4.push(m.as_str().to_string());
            nums.0.push(e.value);
            nums.1.push(e.ci_low);
            nums.2.push(e.ci_high);
            nums.3.push(e.stderr);
            nums.4.push(s.n as u32);
            nums.5.push(m.higher_is_better());
            nums.6.push(i == 0);
        }
    }
    df!(
        "model" => cols.0,
        "suite" => cols.1,
        "domain" => cols.2,
        "task" => cols.3,
        "metric" => cols.4,
        "value" => nums.0,
        "ci_low" => nums.1,
        "ci_high" => nums.2,
        "stderr" => nums.3,
        "n" => nums.4,
        "higher_is_better" => nums.5,
        "headline" => nums.6,
    )
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
