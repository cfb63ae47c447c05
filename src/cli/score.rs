//! `edgebench score`: the replay backend. Outputs produced elsewhere are
//! matched to the suite's examples by id and scored with the same metrics.
//!
//! Predictions file (JSONL), one object per example, with `id` and one of:
//! - `"replies": [...]` exactly as in EdgeBench records;
//! - `"text": "..."` for generation tasks;
//! - `"loglikelihoods": [..]` (one per choice / label) for multiple choice and classification;
//! - `"embeddings": [[..], ..]` for retrieval (the texts of the request, in order).

use super::{bad_input, failed, Failure, Paths};
use clap::Args;
use edgebench::data;
use edgebench::metrics::Bootstrap;
use edgebench::model::{Capabilities, Generation, LogLikelihood, ModelInfo};
use edgebench::record::{sha256_file, Record, RunDir, RunManifest, SuiteStatus};
use edgebench::report;
use edgebench::request::{self, Reply, Strategy};
use edgebench::runner;
use edgebench::suite;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Suite id.
    #[arg(long)]
    pub suite: String,
    /// JSONL predictions file.
    #[arg(long)]
    pub predictions: PathBuf,
    /// Name of the run to write (default: replay-<suite>-<timestamp>).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    #[command(flatten)]
    pub paths: Paths,
}

fn reply_from(v: &Value, calls: &[request::Call]) -> Option<Vec<Reply>> {
    if let Some(r) = v.get("replies") {
        return serde_json::from_value(r.clone()).ok();
    }
    if let Some(t) = v.get("text").and_then(Value::as_str) {
        return Some(vec![Reply::Generate {
            generation: Generation {
                text: t.to_string(),
                tokens: 0,
                prompt_tokens: 0,
            },
        }]);
    }
    if let Some(l) = v.get("loglikelihoods").and_then(Value::as_array) {
        let results = l
            .iter()
            .map(|x| {
                x.as_f64().map(|lp| LogLikelihood {
                    logprob: lp,
                    is_greedy: false,
                    tokens: 0,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        return (calls.len() == 1).then_some(vec![Reply::Loglikelihood { results }]);
    }
    if let Some(e) = v.get("embeddings") {
        let embeddings: Vec<Vec<f32>> = serde_json::from_value(e.clone()).ok()?;
        return Some(vec![Reply::Embed { embeddings }]);
    }
    None
}

pub fn score(a: ScoreArgs) -> Result<(), Failure> {
    let suites_dir = a.paths.suites();
    let spec =
        suite::load_file(&suites_dir.join(format!("{}.toml", a.suite))).map_err(bad_input)?;
    let root = a.paths.data();
    let examples = data::load_examples(&spec, &root).map_err(bad_input)?;
    let pool = data::load_fewshot(&spec, &root).map_err(bad_input)?;
    let text = std::fs::read_to_string(&a.predictions)
        .map_err(|e| bad_input(anyhow::anyhow!("{}: {e}", a.predictions.display())))?;
    let mut preds: HashMap<String, (usize, Value)> = HashMap::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line).map_err(|e| {
            bad_input(anyhow::anyhow!(
                "{}:{}: invalid JSON: {e}",
                a.predictions.display(),
                i + 1
            ))
        })?;
        let id = v
            .get("id")
            .map(|x| {
                x.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| x.to_string())
            })
            .ok_or_else(|| {
                bad_input(anyhow::anyhow!(
                    "{}:{}: missing field `id`",
                    a.predictions.display(),
                    i + 1
                ))
            })?;
        preds.insert(id, (i + 1, v));
    }
    // Generation for generative tasks, loglikelihood for choice tasks, embeddings for retrieval.
    let caps = Capabilities {
        loglikelihood: true,
        generate: true,
        rolling: true,
        embed: true,
    };
    let strategy = request::strategy(&spec, &caps).unwrap_or(Strategy::Generation);
    let (stamp, created) = runner::now_utc();
    let run_id = a
        .run_id
        .clone()
        .unwrap_or_else(|| format!("replay-{}-{stamp}", spec.id));
    let dir = RunDir::new(&a.paths.out, &run_id);
    let mut records = Vec::new();
    for ex in &examples {
        let Some((line, v)) = preds.get(&ex.id) else {
            continue;
        };
        let calls = request::build(&spec, strategy, ex, &pool);
        let replies = reply_from(v, &calls).ok_or_else(|| {
            bad_input(anyhow::anyhow!(
                "{}:{line}: no usable `replies`, `text`, `loglikelihoods` or `embeddings` for this suite's requests ({} call(s))",
                a.predictions.display(),
                calls.len()
            ))
        })?;
        records.push(Record::new(&spec.id, ex, strategy, calls, replies));
    }
    if records.is_empty() {
        return Err(bad_input(anyhow::anyhow!(
            "{}: no prediction id matches an example of suite `{}` (ids look like `{}`)",
            a.predictions.display(),
            spec.id,
            examples.first().map(|e| e.id.as_str()).unwrap_or("?")
        )));
    }
    let missing = examples.len() - records.len();
    let pred_hash = sha256_file(&a.predictions).map_err(failed)?;
    let manifest = RunManifest {
        run_id: run_id.clone(),
        edgebench_version: env!("CARGO_PKG_VERSION").into(),
        git_hash: option_env!("EDGEBENCH_GIT_HASH").map(String::from),
        created,
        model: ModelInfo {
            name: format!(
                "replay:{}",
                a.predictions
                    .file_name()
                    .map(|f| f.to_string_lossy().to_string())
                    .unwrap_or_default()
            ),
            source: a.predictions.display().to_string(),
            sha256: pred_hash,
            capabilities: caps,
            max_context: 0,
            matmul: "n/a (outputs produced elsewhere)".into(),
            parameters: None,
            provenance: "outputs produced elsewhere and replayed".into(),
        },
        data_dir: root.display().to_string(),
        seed: a.seed,
        limit: None,
        suites: vec![spec.id.clone()],
        suite_hashes: BTreeMap::new(),
        data_hashes: BTreeMap::new(),
        status: BTreeMap::from([(
            spec.id.clone(),
            if missing == 0 {
                SuiteStatus::Complete {
                    examples: records.len(),
                }
            } else {
                SuiteStatus::Partial {
                    done: records.len(),
                    total: examples.len(),
                }
            },
        )]),
        host: runner::host_info(),
        state: if missing == 0 {
            "complete".into()
        } else {
            "interrupted".into()
        },
        bootstrap: 1000,
        // the outputs were produced elsewhere: only the scoring host is known
        provenance: edgebench::record::RunProvenance {
            device: "replay (outputs produced on another device)".into(),
            ..Default::default()
        },
    };
    dir.save_manifest(&manifest).map_err(failed)?;
    let mut app = dir.appender(&spec.id).map_err(failed)?;
    for r in &records {
        app.append(r).map_err(failed)?;
    }
    report::snapshot_suites(&dir, &[&spec], &suites_dir).map_err(failed)?;
    let scores = report::score_run(
        &dir,
        &Bootstrap {
            resamples: 1000,
            seed: a.seed,
        },
    )
    .map_err(failed)?;
    let written = report::write_reports(&dir, &scores).map_err(failed)?;
    for sc in &scores.suites {
        for (m, e) in &sc.metrics {
            println!(
                "{:<28} {:<16} {:.4} [{:.4}, {:.4}] (n={})",
                sc.suite,
                m.as_str(),
                e.value,
                e.ci_low,
                e.ci_high,
                sc.n
            );
        }
    }
    if missing > 0 {
        eprintln!(
            "warning: {missing} example(s) of `{}` have no prediction; the run is marked partial",
            spec.id
        );
    }
    println!("run: {} ({} files)", dir.root.display(), written.len());
    Ok(())
}
