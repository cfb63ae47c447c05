//! Reports of a run, computed from its directory alone: `summary.md`,
//! `metrics.csv`/`.parquet`, `domains.csv`/`.parquet`, lm-evaluation-harness
//! style `results.json`, and plots (PNG + SVG).

pub mod plots;

use crate::metrics::{self, frame, Bootstrap, DomainScore, Estimate, Robustness, SuiteScores};
use crate::record::{RecordError, RunDir, RunManifest, SuiteStatus};
use crate::suite::spec::{Domain, SuiteDomain, SuiteSpec};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use thiserror::Error;

/// Errors while reporting.
#[derive(Debug, Error)]
pub enum ReportError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("{path}: {message}")]
    Suite { path: PathBuf, message: String },
    #[error("writing tables failed: {0}")]
    Polars(#[from] polars::error::PolarsError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Everything computed for a run.
pub struct RunScores {
    pub manifest: RunManifest,
    pub specs: Vec<SuiteSpec>,
    pub suites: Vec<SuiteScores>,
    pub domains: Vec<DomainScore>,
    pub robustness: Robustness,
    /// GEM routing: tokens sent to each pathway (8 domains then general), per suite.
    pub routes: Vec<RouteCounts>,
    /// Records against the plan, per scored suite.
    pub integrity: Vec<SuiteIntegrity>,
}

impl RunScores {
    /// Every integrity problem of the run, one line each (`suite: ...`).
    pub fn integrity_problems(&self) -> Vec<String> {
        self.integrity
            .iter()
            .flat_map(|i| {
                i.problems()
                    .into_iter()
                    .map(move |p| format!("{}: {p}", i.suite))
            })
            .collect()
    }
}

/// Tokens a GEM router sent to each pathway over one suite's records.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteCounts {
    pub suite: String,
    pub domain: SuiteDomain,
    /// Index = pathway id: `gem::config::DOMAINS` order, then general.
    pub tokens: [u64; 9],
}

fn count_routes(records: &[crate::record::Record]) -> Option<[u64; 9]> {
    let mut t = [0u64; 9];
    let mut any = false;
    for r in records {
        for pass in &r.routes {
            for b in pass.bytes() {
                if let Some(slot) = t.get_mut((b.wrapping_sub(b'0')) as usize) {
                    *slot += 1;
                    any = true;
                }
            }
        }
    }
    any.then_some(t)
}

pub use crate::record::SUITE_SNAPSHOT;

/// How a suite's records stand against the run's plan.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SuiteIntegrity {
    pub suite: String,
    /// Examples the plan lists (`None`: a run made before plans were written).
    pub planned: Option<usize>,
    /// Planned examples with a record (the ones scored).
    pub scored: usize,
    /// Planned examples without a record.
    pub missing: usize,
    /// Records of an example already recorded (the first is scored).
    pub duplicated: usize,
    /// Records of examples the plan does not list (not scored).
    pub unplanned: usize,
    /// A torn last line, ignored (the writer died mid-write).
    pub torn_line: Option<usize>,
    /// Scored examples whose texts were cut to `data::MAX_TEXT_BYTES`.
    pub truncated: usize,
    /// Scored examples whose document was cut to fit the model's context.
    pub cut_to_context: usize,
    /// Tokens cut from those documents, in all.
    pub cut_tokens: usize,
}

impl SuiteIntegrity {
    /// What is wrong with the records beyond examples not yet run.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.duplicated > 0 {
            p.push(format!("{} duplicated record(s)", self.duplicated));
        }
        if self.unplanned > 0 {
            p.push(format!(
                "{} record(s) of examples not in the plan",
                self.unplanned
            ));
        }
        p
    }
}

/// Loads a run's records and recomputes every metric (no model needed). The
/// run folder is only read: a torn last line is reported in the integrity
/// counts and left as it is.
pub fn score_run(dir: &RunDir, boot: &Bootstrap) -> Result<RunScores, ReportError> {
    let manifest = dir.load_manifest()?;
    let plan = dir.load_plan()?;
    let mut specs = Vec::new();
    let mut suites = Vec::new();
    let mut routes = Vec::new();
    let mut integrity = Vec::new();
    for id in &manifest.suites {
        let path = dir.root.join(SUITE_SNAPSHOT).join(format!("{id}.toml"));
        let spec = crate::suite::load_file(&path).map_err(|e| ReportError::Suite {
            path: e.path,
            message: e.message,
        })?;
        let planned = plan.as_ref().map(|p| p.get(id));
        let scorable = match planned {
            Some(p) => p.is_some(),
            None => matches!(
                manifest.status.get(id),
                Some(SuiteStatus::Complete { .. } | SuiteStatus::Partial { .. })
            ),
        };
        if scorable {
            let file = dir.read_records(id)?;
            let mut check = SuiteIntegrity {
                suite: id.clone(),
                planned: planned.flatten().map(Vec::len),
                torn_line: file.torn_line,
                ..Default::default()
            };
            let wanted: Option<std::collections::HashSet<&str>> = planned
                .flatten()
                .map(|p| p.iter().map(String::as_str).collect());
            let mut seen = std::collections::HashSet::new();
            let mut records = Vec::new();
            for (_, r) in file.records {
                if wanted
                    .as_ref()
                    .is_some_and(|w| !w.contains(r.example_id.as_str()))
                {
                    check.unplanned += 1;
                } else if !seen.insert(r.example_id.clone()) {
                    check.duplicated += 1;
                } else {
                    records.push(r);
                }
            }
            check.scored = records.len();
            check.truncated = records.iter().filter(|r| r.truncated_bytes > 0).count();
            check.cut_to_context = records.iter().filter(|r| r.truncated_tokens > 0).count();
            check.cut_tokens = records.iter().map(|r| r.truncated_tokens).sum();
            check.missing = check.planned.map_or(0, |p| p - records.len());
            integrity.push(check);
            if let Some(tokens) = count_routes(&records) {
                routes.push(RouteCounts {
                    suite: id.clone(),
                    domain: spec.domain.clone(),
                    tokens,
                });
            }
            if !records.is_empty() {
                suites.push(metrics::score_suite(&spec, &mut records, boot));
            }
        }
        specs.push(spec);
    }
    let domains = metrics::domain_scores(&suites);
    let robustness = metrics::robustness(&domains);
    Ok(RunScores {
        manifest,
        specs,
        suites,
        domains,
        robustness,
        routes,
        integrity,
    })
}

fn fmt(v: f64) -> String {
    if v.is_finite() {
        if v.abs() >= 100.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.4}")
        }
    } else {
        "n/a".into()
    }
}

fn fmt_est(e: &Estimate) -> String {
    if e.ci_low.is_finite() {
        format!("{} [{}, {}]", fmt(e.value), fmt(e.ci_low), fmt(e.ci_high))
    } else {
        fmt(e.value)
    }
}

/// The formatted estimate of `domain` in a per-domain list (empty when absent).
fn by_domain(list: &[(Domain, Estimate)], domain: Domain) -> String {
    list.iter()
        .find(|x| x.0 == domain)
        .map(|x| fmt_est(&x.1))
        .unwrap_or_default()
}

fn status_text(s: Option<&SuiteStatus>) -> String {
    match s {
        Some(SuiteStatus::Complete { examples }) => format!("complete ({examples})"),
        Some(SuiteStatus::Partial { done, total }) => format!("PARTIAL {done}/{total}"),
        Some(SuiteStatus::Unsupported { reason }) => reason.clone(),
        Some(SuiteStatus::Missing { reason }) => format!("missing: {reason}"),
        Some(SuiteStatus::Failed { reason }) => format!("failed: {reason}"),
        None => "not run".into(),
    }
}

/// The route distribution of a GEM run, per suite and per domain.
pub fn routes_markdown(routes: &[RouteCounts]) -> String {
    let names: Vec<&str> = edgebench_runtime::gem::config::DOMAINS
        .iter()
        .copied()
        .chain(["general"])
        .collect();
    let mut s = format!(
        "\n## GEM routing (share of tokens per pathway)\n\n| suite | domain | tokens | {} |\n|---|---|---|{}\n",
        names.join(" | "),
        "---|".repeat(names.len())
    );
    let row = |label: &str, domain: &str, t: &[u64; 9]| {
        let total: u64 = t.iter().sum();
        let cells: Vec<String> = t
            .iter()
            .map(|c| format!("{:.1} %", 100.0 * *c as f64 / total.max(1) as f64))
            .collect();
        format!("| {label} | {domain} | {total} | {} |\n", cells.join(" | "))
    };
    for r in routes {
        s += &row(&r.suite, r.domain.as_str(), &r.tokens);
    }
    for d in Domain::ALL {
        let mut t = [0u64; 9];
        for r in routes.iter().filter(|r| r.domain == d) {
            for (a, b) in t.iter_mut().zip(r.tokens) {
                *a += b;
            }
        }
        if t.iter().sum::<u64>() > 0 {
            s += &row("**domain total**", d.as_str(), &t);
        }
    }
    s
}

/// Renders `summary.md`.
pub fn summary_markdown(r: &RunScores) -> String {
    let m = &r.manifest;
    let mut s = String::new();
    let _ = writeln!(s, "# EdgeBench run `{}`\n", m.run_id);
    if m.state != "complete" {
        let how = if m.merged_from.is_empty() {
            format!("resume with `edgebench run --resume {}`", m.run_id)
        } else {
            "finish the shards with `edgebench run --resume <shard run>` and merge again".into()
        };
        let _ = writeln!(
            s,
            "> **INCOMPLETE RUN** (state: {}). Numbers below cover only the records written so far; {how}.\n",
            m.state
        );
    }
    if let Some(sh) = &m.shard {
        let _ = writeln!(
            s,
            "> **Shard {} of {}** of a split run: the numbers below cover this shard's examples only; `edgebench merge` puts the shards together.\n",
            sh.index, sh.count
        );
    }

    let _ = writeln!(
        s,
        "- model: **{}** (`{}`, sha256 `{}`), matmul {}, max context {}\n- EdgeBench {} (git {}), created {}\n- data: `{}`; seed {}; limit {}; bootstrap {} resamples, 95 % percentile intervals\n- host: {} ({} cores, {:.1} GiB), {} {}\n",
        m.model.name,
        m.model.source,
        &m.model.sha256[..m.model.sha256.len().min(16)],
        m.model.matmul,
        m.model.max_context,
        m.edgebench_version,
        m.git_hash.as_deref().unwrap_or("unknown"),
        m.created,
        m.data_dir,
        m.seed,
        m.limit.map_or("suite defaults".into(), |l| l.to_string()),
        m.bootstrap,
        m.host.cpu,
        m.host.cores,
        m.host.memory_bytes as f64 / (1u64 << 30) as f64,
        m.host.os,
        m.host.arch,
    );
    if !m.model.provenance.is_empty() {
        let _ = writeln!(s, "- weights: {}\n", m.model.provenance);
    }
    if m.model.name == "edgebench-tiny" {
        let _ = writeln!(
            s,
            "> The bundled tiny model is a byte-level bigram + induction-head decoder built by EdgeBench. Its scores test the pipeline; they say nothing about any real model.\n"
        );
    }
    let _ = writeln!(s, "## Suites\n\n| suite | domain | task | n | metric | value [95 % CI] | status |\n|---|---|---|---|---|---|---|");
    for spec in &r.specs {
        let st = status_text(m.status.get(&spec.id));
        match r.suites.iter().find(|x| x.suite == spec.id) {
            Some(sc) => {
                for (i, (metric, e)) in sc.metrics.iter().enumerate() {
                    let _ = writeln!(
                        s,
                        "| {} | {} | {} | {} | {} | {} | {} |",
                        if i == 0 { spec.id.as_str() } else { "" },
                        if i == 0 { spec.domain.as_str() } else { "" },
                        if i == 0 { spec.task.as_str() } else { "" },
                        if i == 0 {
                            sc.n.to_string()
                        } else {
                            String::new()
                        },
                        metric.as_str(),
                        fmt_est(e),
                        if i == 0 { st.as_str() } else { "" },
                    );
                }
                for (g, gs) in &sc.groups {
                    for (i, (metric, e)) in gs.metrics.iter().enumerate() {
                        let _ = writeln!(
                            s,
                            "| {} | | | {} | {} | {} | |",
                            if i == 0 {
                                format!("{}/{g}", spec.id)
                            } else {
                                String::new()
                            },
                            if i == 0 {
                                gs.n.to_string()
                            } else {
                                String::new()
                            },
                            metric.as_str(),
                            fmt_est(e),
                        );
                    }
                }
            }
            None => {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | 0 | | | {} |",
                    spec.id,
                    spec.domain,
                    spec.task.as_str(),
                    st
                );
            }
        }
    }
    let notes: Vec<String> = r
        .integrity
        .iter()
        .flat_map(|i| {
            let mut n = i.problems();
            if i.missing > 0 {
                n.push(format!("{} planned example(s) not run yet", i.missing));
            }
            if let Some(line) = i.torn_line {
                n.push(format!("torn last line {line} ignored"));
            }
            if i.truncated > 0 {
                n.push(format!(
                    "{} example(s) had a text cut to {} MiB",
                    i.truncated,
                    crate::data::MAX_TEXT_BYTES >> 20
                ));
            }
            if i.cut_to_context > 0 {
                n.push(format!(
                    "{} example(s) had the end of their document cut to fit the model's context ({} tokens in all)",
                    i.cut_to_context, i.cut_tokens
                ));
            }
            n.into_iter().map(move |x| format!("- `{}`: {x}", i.suite))
        })
        .collect();
    let unread = r.suites.iter().flat_map(|sc| {
        sc.unread.iter().map(move |(m, ids)| {
            let shown: Vec<&str> = ids.iter().take(5).map(String::as_str).collect();
            format!(
                "- `{}`: {} cannot read the gold of {} example(s), left out of it: {}{} (`edgebench suites validate` lists them)",
                sc.suite,
                m.as_str(),
                ids.len(),
                shown.join(", "),
                if ids.len() > shown.len() { ", ..." } else { "" }
            )
        })
    });
    let notes: Vec<String> = notes.into_iter().chain(unread).collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "\n## Records\n\n{}", notes.join("\n"));
    }
    let _ = writeln!(
        s,
        "\n## Domains\n\nDomain score = mean of the suites' headline metric (higher-is-better headlines only; perplexity suites are reported above but not averaged).\n\n| domain | suites | score [95 % CI] | DSI [95 % CI] | GG if in-domain [95 % CI] |\n|---|---|---|---|---|"
    );
    for d in &r.domains {
        let dsi = by_domain(&r.robustness.dsi, d.domain);
        let gg = by_domain(&r.robustness.gg, d.domain);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            d.domain,
            d.suites,
            fmt_est(&d.score),
            dsi,
            gg
        );
    }
    let others = metrics::other_domain_scores(&r.suites);
    if !others.is_empty() {
        let _ = writeln!(
            s,
            "\n## Other domains\n\nSuites of domains outside the paper's eight (without `paper_domain`): mean headline score, kept out of the domain scores, DSI, GG and CDTR above.\n\n| domain | suites | score [95 % CI] |\n|---|---|---|"
        );
        for (d, n, e) in &others {
            let _ = writeln!(s, "| {d} | {n} | {} |", fmt_est(e));
        }
    }
    if !r.robustness.cdtr.is_empty() {
        let _ = writeln!(
            s,
            "\n## CDTR (row = source domain D_i, column = target D_j; Perf(D_j) / Perf(D_i))\n"
        );
        let cols: Vec<Domain> = r.robustness.cdtr.iter().map(|x| x.0).collect();
        let _ = writeln!(
            s,
            "| source \\ target | {} |",
            cols.iter()
                .map(|d| d.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(s, "|---|{}", "---|".repeat(cols.len()));
        for (src, row) in &r.robustness.cdtr {
            let cells: Vec<String> = row
                .iter()
                .map(|(_, v)| v.map_or("n/a".into(), fmt))
                .collect();
            let _ = writeln!(s, "| {} | {} |", src, cells.join(" | "));
        }
    }
    if !r.routes.is_empty() {
        s += &routes_markdown(&r.routes);
    }
    let _ = writeln!(
        s,
        "\nDefinitions (docs/metrics.md): DSI(D) = Perf(D) / mean over D' != D of Perf(D'); GG = (in - out) / in with D as in-domain and the mean of the other domains as out-of-domain; CDTR(i, j) = Perf(D_j) / Perf(D_i). Intervals come from a seeded bootstrap over examples within each suite."
    );
    s
}

/// lm-evaluation-harness style `results.json`.
pub fn results_json(r: &RunScores) -> Value {
    let mut results = serde_json::Map::new();
    let mut configs = serde_json::Map::new();
    let mut versions = serde_json::Map::new();
    let mut nshot = serde_json::Map::new();
    let mut nsamples = serde_json::Map::new();
    let entry = |alias: &str, sc: &SuiteScores| {
        let mut t = serde_json::Map::new();
        t.insert("alias".into(), json!(alias));
        for (m, e) in &sc.metrics {
            t.insert(format!("{},none", m.as_str()), json!(finite(e.value)));
            t.insert(
                format!("{}_stderr,none", m.as_str()),
                json!(finite(e.stderr)),
            );
            t.insert(
                format!("{}_ci95,none", m.as_str()),
                json!([finite(e.ci_low), finite(e.ci_high)]),
            );
        }
        for (m, ids) in &sc.unread {
            t.insert(format!("{}_unread,none", m.as_str()), json!(ids.len()));
        }
        t
    };
    for sc in &r.suites {
        results.insert(sc.suite.clone(), Value::Object(entry(&sc.suite, sc)));
        for (g, gs) in &sc.groups {
            let name = format!("{}/{g}", sc.suite);
            let mut t = entry(&name, gs);
            t.insert("n".into(), json!(gs.n));
            results.insert(name, Value::Object(t));
        }
        if let Some(spec) = r.specs.iter().find(|s| s.id == sc.suite) {
            configs.insert(
                sc.suite.clone(),
                serde_json::to_value(spec).unwrap_or(Value::Null),
            );
            nshot.insert(sc.suite.clone(), json!(spec.fewshot.k));
            let total = match r.manifest.status.get(&sc.suite) {
                Some(SuiteStatus::Complete { examples }) => *examples,
                Some(SuiteStatus::Partial { total, .. }) => *total,
                _ => sc.n,
            };
            nsamples.insert(
                sc.suite.clone(),
                json!({"original": total, "effective": sc.n}),
            );
        }
        versions.insert(sc.suite.clone(), json!(1.0));
    }
    let domains: BTreeMap<String, Value> = r
        .domains
        .iter()
        .map(|d| {
            (
                d.domain.to_string(),
                json!({"score": finite(d.score.value), "ci95": [finite(d.score.ci_low), finite(d.score.ci_high)], "suites": d.suites}),
            )
        })
        .collect();
    let others: BTreeMap<String, Value> = metrics::other_domain_scores(&r.suites)
        .into_iter()
        .map(|(d, n, e)| {
            (
                d.to_string(),
                json!({"score": finite(e.value), "ci95": [finite(e.ci_low), finite(e.ci_high)], "suites": n}),
            )
        })
        .collect();
    let m = &r.manifest;
    let mut out = json!({
        "results": results,
        "configs": configs,
        "versions": versions,
        "n-shot": nshot,
        "n-samples": nsamples,
        "config": {"model": m.model.name, "model_source": m.model.source, "model_sha256": m.model.sha256, "seed": m.seed, "limit": m.limit, "bootstrap_iters": m.bootstrap},
        "git_hash": m.git_hash,
        "date": m.created,
        "edgebench": {
            "run_id": m.run_id,
            "state": m.state,
            "status": m.status,
            "domains": domains,
            "robustness": r.robustness,
        }
    });
    if !others.is_empty() {
        out["edgebench"]["other_domains"] = json!(others);
    }
    out
}

fn finite(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

/// Writes every report file of a run; returns the written paths.
pub fn write_reports(dir: &RunDir, r: &RunScores) -> Result<Vec<PathBuf>, ReportError> {
    let root = &dir.root;
    let mut written = Vec::new();
    let m = &r.manifest;
    let provenance = [
        ("device", m.provenance.device.clone()),
        ("cpu", m.host.cpu.clone()),
        ("threads", m.provenance.threads.to_string()),
        ("edgebench_version", m.edgebench_version.clone()),
        ("git_hash", m.git_hash.clone().unwrap_or_default()),
        ("model_sha256", m.model.sha256.clone()),
        (
            "governor",
            m.provenance.governor.clone().unwrap_or_default(),
        ),
    ];
    let mut mf = frame::metrics_frame(&m.model.name, &r.suites, &provenance)?;
    frame::write_frame(&mut mf, root, "metrics")?;
    let mut df = frame::domain_frame(&mf, &r.suites)?;
    frame::write_frame(&mut df, root, "domains")?;
    written.extend(
        [
            "metrics.csv",
            "metrics.parquet",
            "domains.csv",
            "domains.parquet",
        ]
        .map(|f| root.join(f)),
    );
    let summary = root.join("summary.md");
    std::fs::write(&summary, summary_markdown(r))?;
    written.push(summary);
    if !r.routes.is_empty() {
        let path = root.join("routes.csv");
        let mut w =
            csv::Writer::from_path(&path).map_err(|e| std::io::Error::other(e.to_string()))?;
        let names: Vec<&str> = edgebench_runtime::gem::config::DOMAINS
            .iter()
            .copied()
            .chain(["general"])
            .collect();
        let header: Vec<&str> = ["suite", "domain"].into_iter().chain(names).collect();
        w.write_record(&header)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        for rc in &r.routes {
            let row: Vec<String> = [rc.suite.clone(), rc.domain.as_str().to_string()]
                .into_iter()
                .chain(rc.tokens.iter().map(|t| t.to_string()))
                .collect();
            w.write_record(&row)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        w.flush()?;
        written.push(path);
    }
    let results = root.join("results.json");
    std::fs::write(
        &results,
        serde_json::to_string_pretty(&results_json(r)).expect("json"),
    )?;
    written.push(results);
    let plot_dir = root.join("plots");
    std::fs::create_dir_all(&plot_dir)?;
    match write_plots(&plot_dir, r) {
        Ok(p) => written.extend(p),
        Err(e) => eprintln!("warning: plots not written: {e}"),
    }
    Ok(written)
}

fn write_plots(dir: &std::path::Path, r: &RunScores) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let name = &r.manifest.model.name;
    let cats: Vec<String> = r.domains.iter().map(|d| d.domain.to_string()).collect();
    let domain_chart = plots::BarChart {
        title: format!("{name}: mean headline score per domain (95 % CI)"),
        y_label: "score".into(),
        categories: cats.clone(),
        series: vec![plots::Series {
            name: name.clone(),
            color: plots::PALETTE[0],
            values: r
                .domains
                .iter()
                .map(|d| Some((d.score.value, d.score.ci_low, d.score.ci_high)))
                .collect(),
        }],
        y_max: Some(1.0),
    };
    out.extend(plots::write_bar_chart(dir, "domain_scores", &domain_chart)?);
    // In-domain vs out-of-domain: each domain against the mean of the others.
    let out_vals: Vec<Option<(f64, f64, f64)>> = r
        .domains
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let others: Vec<&DomainScore> = r
                .domains
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|x| x.1)
                .collect();
            if others.is_empty() {
                return None;
            }
            let mean = |f: &dyn Fn(&DomainScore) -> f64| {
                others.iter().map(|d| f(d)).sum::<f64>() / others.len() as f64
            };
            let k = others.iter().map(|d| d.replicates.len()).min().unwrap_or(0);
            let reps: Vec<f64> = (0..k).map(|b| mean(&|d| d.replicates[b])).collect();
            let e = metrics::interval(mean(&|d| d.score.value), &reps);
            Some((e.value, e.ci_low, e.ci_high))
        })
        .collect();
    let io_chart = plots::BarChart {
        title: format!("{name}: in-domain vs out-of-domain (mean of the other domains)"),
        y_label: "score".into(),
        categories: cats,
        series: vec![
            plots::Series {
                name: "in-domain".into(),
                color: plots::PALETTE[0],
                values: r
                    .domains
                    .iter()
                    .map(|d| Some((d.score.value, d.score.ci_low, d.score.ci_high)))
                    .collect(),
            },
            plots::Series {
                name: "out-of-domain".into(),
                color: plots::PALETTE[1],
                values: out_vals,
            },
        ],
        y_max: Some(1.0),
    };
    out.extend(plots::write_bar_chart(
        dir,
        "in_vs_out_of_domain",
        &io_chart,
    )?);
    Ok(out)
}
