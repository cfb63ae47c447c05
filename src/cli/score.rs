//! `edgebench score`: the replay backend. Outputs produced elsewhere are
//! matched to the suite's examples by id and scored with the same metrics.
//!
//! Predictions file (JSONL), one object per example, with `id` and one of:
//! - `"replies": [...]` exactly as in EdgeBench records;
//! - `"text": "..."` for generation tasks;
//! - `"loglikelihoods": [..]` (one per choice / label) for multiple choice and classification;
//! - `"embeddings": [[..], ..]` for retrieval (the texts of the request, in order).

use super::{bad_input, failed, record_failure, Failure, Paths};
use clap::Args;
use edgebench::data;
use edgebench::metrics::Bootstrap;
use edgebench::model::{Capabilities, Generation, LogLikelihood, ModelInfo};
use edgebench::record::{
    check_run_id, sha256_file, FileHash, Leg, Record, RunDir, RunManifest, SuiteStatus,
};
use edgebench::report;
use edgebench::request::{self, Reply, Strategy};
use edgebench::runner;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Suite id (see `edgebench suites list`).
    #[arg(long)]
    pub suite: String,
    /// JSONL predictions file.
    #[arg(long)]
    pub predictions: PathBuf,
    /// Name of the run to write (default: replay-<suite>-<timestamp>); must not exist yet.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Accept predictions for only some of the suite's examples (the run is
    /// then marked incomplete); by default every example needs one.
    #[arg(long)]
    pub allow_missing: bool,
    #[command(flatten)]
    pub paths: Paths,
}

/// The replies a prediction line gives for `calls`, or why it cannot answer them.
fn reply_from(v: &Value, calls: &[request::Call]) -> Result<Vec<Reply>, String> {
    let replies = if let Some(r) = v.get("replies") {
        serde_json::from_value(r.clone()).map_err(|e| format!("field `replies`: {e}"))?
    } else if let Some(t) = v.get("text") {
        let text = t.as_str().ok_or("field `text` is not a string")?;
        vec![Reply::Generate {
            generation: Generation {
                text: text.to_string(),
                tokens: 0,
                prompt_tokens: 0,
            },
        }]
    } else if let Some(l) = v.get("loglikelihoods") {
        let results = l
            .as_array()
            .ok_or("field `loglikelihoods` is not a list")?
            .iter()
            .enumerate()
            .map(|(i, x)| {
                x.as_f64()
                    .map(|lp| LogLikelihood {
                        logprob: lp,
                        is_greedy: false,
                        tokens: 0,
                    })
                    .ok_or(format!("field `loglikelihoods[{i}]` is not a number"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        vec![Reply::Loglikelihood { results }]
    } else if let Some(e) = v.get("embeddings") {
        let embeddings: Vec<Vec<f32>> =
            serde_json::from_value(e.clone()).map_err(|e| format!("field `embeddings`: {e}"))?;
        vec![Reply::Embed { embeddings }]
    } else {
        return Err("no `replies`, `text`, `loglikelihoods` or `embeddings` field".into());
    };
    if replies.len() != calls.len() {
        return Err(format!(
            "{} repl{} for this suite's {} request(s) per example; give `replies` with one per request",
            replies.len(),
            if replies.len() == 1 { "y" } else { "ies" },
            calls.len()
        ));
    }
    for (c, r) in calls.iter().zip(&replies) {
        r.check(c)?;
    }
    Ok(replies)
}

pub fn score(a: ScoreArgs) -> Result<(), Failure> {
    let registry = a.paths.registry()?;
    let entry = registry.get(&a.suite).ok_or_else(|| {
        bad_input(anyhow::anyhow!(
            "--suite `{}` is not a suite id (see `edgebench suites list`)",
            a.suite,
        ))
    })?;
    let spec = &entry.spec;
    let run_id = match &a.run_id {
        Some(id) => id.clone(),
        None => format!("replay-{}-{}", spec.id, runner::now_utc().0),
    };
    check_run_id(&run_id).map_err(bad_input)?;
    let root = a.paths.data();
    let examples = data::load_examples(spec, &root).map_err(bad_input)?;
    let pool = data::load_fewshot(spec, &root).map_err(bad_input)?;
    let pred_path = a.predictions.display();
    let text = std::fs::read_to_string(&a.predictions)
        .map_err(|e| bad_input(anyhow::anyhow!("{pred_path}: {e}")))?;
    let by_id: HashMap<&str, &edgebench::data::Example> =
        examples.iter().map(|e| (e.id.as_str(), e)).collect();
    let mut preds: HashMap<String, (usize, Value)> = HashMap::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = |m: String| bad_input(anyhow::anyhow!("{pred_path}:{}: {m}", i + 1));
        let v: Value = serde_json::from_str(line).map_err(|e| at(format!("invalid JSON: {e}")))?;
        let id = match v.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(at("field `id` is neither a string nor a number".into())),
            None => return Err(at("missing field `id`".into())),
        };
        if !by_id.contains_key(id.as_str()) {
            return Err(at(format!(
                "id `{id}` is not an example of suite `{}` (ids look like `{}`)",
                spec.id,
                examples.first().map(|e| e.id.as_str()).unwrap_or("?")
            )));
        }
        if let Some((first, _)) = preds.get(&id) {
            return Err(at(format!("id `{id}` was already given on line {first}")));
        }
        preds.insert(id, (i + 1, v));
    }
    let missing: Vec<&str> = examples
        .iter()
        .map(|e| e.id.as_str())
        .filter(|id| !preds.contains_key(*id))
        .collect();
    if preds.is_empty() || (!missing.is_empty() && !a.allow_missing) {
        return Err(bad_input(anyhow::anyhow!(
            "{pred_path}: {} of the {} examples of suite `{}` have no prediction: {}{} (pass --allow-missing to score the others)",
            missing.len(),
            examples.len(),
            spec.id,
            missing.iter().take(10).copied().collect::<Vec<_>>().join(", "),
            if missing.len() > 10 { ", ..." } else { "" }
        )));
    }
    // Generation for generative tasks, loglikelihood for choice tasks, embeddings for retrieval.
    let caps = Capabilities {
        loglikelihood: true,
        generate: true,
        rolling: true,
        embed: true,
    };
    let strategy = request::strategy(spec, &caps).unwrap_or(Strategy::Generation);
    let mut records = Vec::new();
    for ex in &examples {
        let Some((line, v)) = preds.get(&ex.id) else {
            continue;
        };
        let calls = request::build(spec, strategy, ex, &pool);
        let replies = reply_from(v, &calls)
            .map_err(|e| bad_input(anyhow::anyhow!("{pred_path}:{line}: {e}")))?;
        records.push(Record::new(&spec.id, ex, strategy, calls, replies));
    }
    let created = runner::now_utc().1;
    let dir = RunDir::create(&a.paths.out, &run_id).map_err(record_failure)?;
    let _lock = dir.lock("score").map_err(record_failure)?;
    let suite_hash = dir.snapshot_suite(&spec.id, &entry.text).map_err(failed)?;
    let plan = BTreeMap::from([(
        spec.id.clone(),
        examples.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
    )]);
    let mut files = match data::locate(spec, &root).map_err(bad_input)? {
        data::DataStatus::Found(f) => f,
        data::DataStatus::Missing(_) => vec![],
    };
    files.extend(data::locate_fewshot(spec, &root).map_err(bad_input)?);
    let data_hashes = files
        .iter()
        .map(|f| {
            Ok(FileHash {
                path: f.display().to_string(),
                sha256: sha256_file(f)?,
            })
        })
        .collect::<Result<Vec<_>, edgebench::record::RecordError>>()
        .map_err(failed)?;
    let pred_hash = sha256_file(&a.predictions).map_err(failed)?;
    let complete = missing.is_empty();
    let manifest = RunManifest {
        run_id: run_id.clone(),
        edgebench_version: env!("CARGO_PKG_VERSION").into(),
        git_hash: super::GIT_HASH.map(String::from),
        created: created.clone(),
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
            runtime: None,
        },
        data_dir: root
            .canonicalize()
            .unwrap_or(root.clone())
            .display()
            .to_string(),
        truncation: edgebench::fit::Truncation::Left,
        seed: a.seed,
        limit: None,
        suites: vec![spec.id.clone()],
        suite_hashes: BTreeMap::from([(spec.id.clone(), suite_hash)]),
        data_hashes: BTreeMap::from([(spec.id.clone(), data_hashes)]),
        status: BTreeMap::from([(
            spec.id.clone(),
            if complete {
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
        state: if complete {
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
        plan_sha256: Some(dir.save_plan(&plan).map_err(failed)?),
        legs: vec![Leg {
            started: created,
            kind: "replay".into(),
            host: runner::host_info().hostname,
            runtime: None,
            changes: vec![],
        }],
        shard: None,
        merged_from: vec![],
    };
    dir.save_manifest(&manifest).map_err(failed)?;
    let mut app = dir.appender(&spec.id).map_err(failed)?;
    for r in &records {
        app.append(r).map_err(failed)?;
    }
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
    if !complete {
        eprintln!(
            "warning: {} example(s) of `{}` have no prediction; the run is marked incomplete",
            missing.len(),
            spec.id
        );
    }
    println!("run: {} ({} files)", dir.root.display(), written.len());
    Ok(())
}
