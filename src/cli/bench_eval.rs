//! `edgebench bench eval`: evaluation throughput on a fixed slice of real
//! suites, one per task kind. Each suite is evaluated as an ordinary run
//! (under `<out>/bench/<stamp>/runs/`); the table gives examples/s, tokens/s
//! and the split of each example's time into the model's forward passes and
//! the harness (building and fitting calls, tokenising, scoring). Multi-label
//! suites are also set against one prefill of their longest context. With
//! `--baseline-truncation left` every suite also runs with the model's own
//! left truncation, in turns with the default, and the speed-up is printed.

use super::{bad_input, eval_failure, failed, Failure, Paths};
use clap::Args;
use edgebench::evaluate::{evaluate, Job};
use edgebench::fit::Truncation;
use edgebench::model::{self, Model};
use edgebench::record::Record;
use edgebench::request::Call;
use edgebench::runner::{Options, Settings};
use edgebench::runtime::RuntimeOptions;
use edgebench::suite::spec::TaskKind;
use serde::Serialize;
use std::time::Instant;

/// One suite with real data per task kind (retrieval needs an encoder-style
/// embedding and is left to `--suites`).
pub const DEFAULT_SLICE: &str = "commonsenseqa,dapt-imdb,lexglue-ecthr-a,xtreme-xquad,xtreme-panx,\
ectsum,dapt-lm-news,personachat-ppl,personachat-f1";

#[derive(Debug, Args)]
pub struct EvalBenchArgs {
    /// Model directory or builtin:tiny.
    #[arg(long, default_value = "builtin:tiny")]
    pub model: String,
    /// Comma-separated suite ids or domains (default: one suite per task kind).
    #[arg(long, default_value = DEFAULT_SLICE)]
    pub suites: String,
    /// Examples per suite (the same seeded sample as `run --limit`).
    #[arg(long, default_value_t = 3, value_parser = super::bounded(1..=100_000))]
    pub limit: usize,
    /// Also run every suite with this truncation, in turns, and print the speed-up.
    #[arg(long, value_parser = ["left", "document"])]
    pub baseline_truncation: Option<String>,
    /// Print the rows as JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub paths: Paths,
}

/// What one suite's run measured.
#[derive(Debug, Clone, Serialize)]
struct SuiteRow {
    suite: String,
    task: String,
    truncation: String,
    examples: usize,
    /// Prompt and output tokens of all examples.
    tokens: usize,
    /// Sum of the examples' wall times, seconds.
    wall_s: f64,
    /// Of which in the model's forward passes.
    model_s: f64,
    /// Scoring and report writing after the examples, seconds.
    scoring_s: f64,
    /// The whole run (examples, scoring, reports), seconds.
    run_s: f64,
    /// Tokens cut from documents to fit the context.
    cut_tokens: usize,
    /// One prefill of each example's longest context, seconds (multi-label suites).
    prefill_s: Option<f64>,
}

impl SuiteRow {
    /// Share of the examples' time outside the model's forward passes.
    fn harness_pct(&self) -> f64 {
        100.0 * (self.wall_s - self.model_s) / self.wall_s
    }
    /// Share of the whole run outside the model's forward passes.
    fn harness_run_pct(&self) -> f64 {
        100.0 * (self.run_s - self.model_s) / self.run_s
    }
}

pub fn bench_eval(a: EvalBenchArgs, runtime: &RuntimeOptions) -> Result<(), Failure> {
    let registry = a.paths.registry()?;
    let selected = super::select(&registry, &a.suites, "--suites")?;
    let cache = a.paths.out.join("models");
    let mut model = model::load(&a.model, &cache, runtime).map_err(bad_input)?;
    let (stamp, _) = edgebench::runner::now_utc();
    let root = a.paths.out.join("bench").join(format!("eval-{stamp}"));
    let mut modes = vec![Truncation::Document];
    if let Some(b) = &a.baseline_truncation {
        let b = Truncation::parse(b).expect("clap checked it");
        if b != Truncation::Document {
            modes.push(b);
        }
    }
    let opts = Options {
        quiet: true,
        git_hash: super::GIT_HASH.map(String::from),
        runtime: *runtime,
        ..Options::default()
    };
    let mut rows = Vec::new();
    for spec in &selected {
        for &mode in &modes {
            let settings = Settings {
                model: a.model.clone(),
                suites: vec![spec.id.clone()],
                data_dir: a.paths.data(),
                limit: Some(a.limit),
                seed: 1234,
                bootstrap: 100,
                truncation: mode,
                shard: None,
                costs_from: None,
            };
            let id = format!("{}-{}", spec.id, mode.as_str());
            let start = Instant::now();
            let e = match evaluate(
                &root,
                Job::New {
                    id: Some(id),
                    settings,
                    specs: vec![*spec],
                    suites: &registry,
                    model: model.as_mut(),
                },
                &opts,
            ) {
                Ok(e) => e,
                Err(err) if err.is_bad_input() => {
                    eprintln!("{}: skipped: {err}", spec.id);
                    continue;
                }
                Err(err) => return Err(eval_failure(err)),
            };
            let total = start.elapsed().as_secs_f64();
            let records = e.dir.load_records(&spec.id).map_err(failed)?;
            if records.is_empty() {
                eprintln!(
                    "{}: skipped: {:?}",
                    spec.id,
                    e.scores.manifest.status.get(&spec.id)
                );
                continue;
            }
            let prefill_s = match spec.task {
                TaskKind::MultiLabelClassification => {
                    Some(longest_prefills(model.as_mut(), &records)?)
                }
                _ => None,
            };
            rows.push(row(
                spec.id.clone(),
                spec.task,
                mode,
                &records,
                total,
                prefill_s,
            ));
        }
    }
    print(&rows, &modes, a.json);
    let json = serde_json::to_string_pretty(&rows).map_err(failed)?;
    std::fs::write(root.join("bench-eval.json"), json + "\n").map_err(failed)?;
    eprintln!("runs and bench-eval.json: {}", root.display());
    Ok(())
}

fn row(
    suite: String,
    task: TaskKind,
    mode: Truncation,
    records: &[Record],
    total_s: f64,
    prefill_s: Option<f64>,
) -> SuiteRow {
    let wall_s = records.iter().map(|r| r.latency_ms).sum::<f64>() / 1e3;
    SuiteRow {
        suite,
        task: task.as_str().to_string(),
        truncation: mode.as_str().to_string(),
        examples: records.len(),
        tokens: records
            .iter()
            .map(|r| r.prompt_tokens + r.output_tokens)
            .sum(),
        wall_s,
        model_s: records.iter().filter_map(|r| r.model_ms).sum::<f64>() / 1e3,
        scoring_s: (total_s - wall_s).max(0.0),
        run_s: total_s,
        cut_tokens: records.iter().map(|r| r.truncated_tokens).sum(),
        prefill_s,
    }
}

/// One cold prefill of each record's longest loglikelihood context, seconds in all.
fn longest_prefills(model: &mut dyn Model, records: &[Record]) -> Result<f64, Failure> {
    let mut total = 0.0;
    for r in records {
        let longest = r
            .calls
            .iter()
            .filter_map(|c| match c {
                Call::Loglikelihood { context, .. } => Some(context),
                _ => None,
            })
            .max_by_key(|c| c.len());
        if let Some(ctx) = longest {
            let n = model.count_tokens(ctx).map_err(failed)?;
            total += model.perf_query(ctx, n, 0).map_err(failed)?.ttft_ms / 1e3;
        }
    }
    Ok(total)
}

fn print(rows: &[SuiteRow], modes: &[Truncation], json: bool) {
    if json {
        for r in rows {
            println!("{}", serde_json::to_string(r).expect("rows serialise"));
        }
        return;
    }
    println!(
        "| suite | task | truncation | examples | tokens | wall s | model s | harness % | examples/s | tokens/s | cut tokens | scoring s | harness % of run | x one prefill |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.1} | {:.3} | {:.1} | {} | {:.2} | {:.1} | {} |",
            r.suite,
            r.task,
            r.truncation,
            r.examples,
            r.tokens,
            r.wall_s,
            r.model_s,
            r.harness_pct(),
            r.examples as f64 / r.wall_s,
            r.tokens as f64 / r.wall_s,
            r.cut_tokens,
            r.scoring_s,
            r.harness_run_pct(),
            r.prefill_s
                .map_or("".into(), |p| format!("{:.2}", r.wall_s / p)),
        );
    }
    if modes.len() > 1 {
        println!(
            "\n| suite | {} wall s | {} wall s | speed-up |",
            modes[1].as_str(),
            modes[0].as_str()
        );
        println!("|---|---:|---:|---:|");
        for r in rows.iter().filter(|r| r.truncation == modes[0].as_str()) {
            if let Some(b) = rows
                .iter()
                .find(|b| b.suite == r.suite && b.truncation == modes[1].as_str())
            {
                println!(
                    "| {} | {:.2} | {:.2} | {:.2}x |",
                    r.suite,
                    b.wall_s,
                    r.wall_s,
                    b.wall_s / r.wall_s
                );
            }
        }
    }
}
