//! The runs a paper report is built from: each run scored from its
//! directory, tagged with the role it plays in the paper (GEM, one of its
//! ablations, a MobileBERT-class or TinyLlama-class baseline), with its
//! per-example scores and routing decisions and its optional `perf.json`.
//!
//! A report publishes each run as [`RunSnapshot`] (`paper-inputs.json`,
//! beside the run's `run.json`, `metrics.csv` and `perf.json`): everything
//! the tables and figures read, without the records' prompts and outputs,
//! so that a published report can be rendered again from its own folder.

use super::PaperError;
use edgebench_device::perf::PerfSummary as Perf;
use edgebench_eval::metrics::{score, Bootstrap, DomainScore, Robustness, SuiteScores};
use edgebench_eval::record::{RecordError, RunDir, RunManifest};
use edgebench_eval::report::{self, RunScores};
use edgebench_eval::suite::spec::{Domain, Metric};
use edgebench_runtime::gem::{self, GemConfig, Variant};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// File name of a published run's [`RunSnapshot`].
pub const SNAPSHOT_FILE: &str = "paper-inputs.json";

/// The part a run plays in the paper's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// GEM (the full model or one of the ablations of Table 5).
    Gem(Variant),
    /// A MobileBERT-class baseline (Tables 3 and 4).
    MobileBert,
    /// A TinyLlama-class baseline (Table 3).
    TinyLlama,
    /// Any other model (shown in Table 2 and the figures only).
    Other,
}

impl Role {
    /// Names accepted in `--runs ROLE=RUN`.
    pub const NAMES: [&'static str; 7] = [
        "gem",
        "gem-no-scar",
        "gem-no-quant",
        "gem-no-router",
        "mobilebert",
        "tinyllama",
        "other",
    ];

    /// Parses one of [`Role::NAMES`].
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "gem" => Role::Gem(Variant::Full),
            "mobilebert" => Role::MobileBert,
            "tinyllama" => Role::TinyLlama,
            "other" => Role::Other,
            _ => Role::Gem(Variant::parse(s.strip_prefix("gem-")?)?),
        })
    }

    /// The role a model's name implies: GEM when the name starts with `gem`
    /// or its records carry routing decisions (ablations by their
    /// `-no-scar`, `-no-quant`, `-no-router` suffix), MobileBERT-class for
    /// BERT-family encoders (MobileBERT, MiniLM), TinyLlama-class for small
    /// Llama-family decoders (TinyLlama, SmolLM), else other.
    pub fn infer(model_name: &str, has_routes: bool) -> Role {
        let n = model_name.to_ascii_lowercase();
        if n.starts_with("gem") || has_routes {
            let variant = [Variant::NoScar, Variant::NoQuant, Variant::NoRouter]
                .into_iter()
                .find(|v| n.ends_with(v.suffix()))
                .unwrap_or(Variant::Full);
            return Role::Gem(variant);
        }
        if ["mobilebert", "minilm", "bert"]
            .iter()
            .any(|k| n.contains(k))
        {
            return Role::MobileBert;
        }
        if ["tinyllama", "smollm", "llama"]
            .iter()
            .any(|k| n.contains(k))
        {
            return Role::TinyLlama;
        }
        Role::Other
    }

    /// The name [`Role::parse`] reads back.
    pub fn name(self) -> String {
        match self {
            Role::Gem(Variant::Full) => "gem".into(),
            Role::Gem(v) => format!("gem{}", v.suffix()),
            Role::MobileBert => "mobilebert".into(),
            Role::TinyLlama => "tinyllama".into(),
            Role::Other => "other".into(),
        }
    }

    /// Display name, as in the paper's rows.
    pub fn label(self) -> &'static str {
        match self {
            Role::Gem(Variant::Full) => "GEM",
            Role::Gem(Variant::NoScar) => "GEM w/o SCAR",
            Role::Gem(Variant::NoQuant) => "GEM w/o quantization",
            Role::Gem(Variant::NoRouter) => "GEM w/o router",
            Role::MobileBert => "MobileBERT-class",
            Role::TinyLlama => "TinyLlama-class",
            Role::Other => "other",
        }
    }

    /// Whether this is GEM or one of its ablations.
    pub fn is_gem(self) -> bool {
        matches!(self, Role::Gem(_))
    }

    /// Whether this is one of GEM's ablations (Table 5 only).
    pub fn is_ablation(self) -> bool {
        matches!(self, Role::Gem(v) if v != Variant::Full)
    }
}

/// Where GEM's router sent an example: one of the 8 domain pathways or the
/// general one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pathway {
    /// A domain pathway (ids 0-7, `gem::config::DOMAINS` order).
    Domain(Domain),
    /// The general pathway (id 8).
    General,
}

/// The pathway that received most of an example's tokens over all its
/// forward passes (`routes` strings of pathway ids); ties go to the lowest
/// id. `None` when there are no routing decisions.
pub fn majority_route(routes: &[String]) -> Option<Pathway> {
    let mut counts = [0usize; 9];
    for b in routes.iter().flat_map(|r| r.bytes()) {
        if let Some(i) = b.checked_sub(b'0').filter(|&i| i <= 8) {
            counts[i as usize] += 1;
        }
    }
    let (best, &n) = counts
        .iter()
        .enumerate()
        .rev()
        .max_by_key(|&(_, n)| *n)
        .expect("nine counters");
    (n > 0).then(|| {
        Domain::ALL
            .get(best)
            .map_or(Pathway::General, |&d| Pathway::Domain(d))
    })
}

/// One scored example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleScore {
    /// Suite id.
    pub suite: String,
    /// The suite's domain.
    pub domain: Domain,
    /// The metric scored (the suite's first higher-is-better metric with a
    /// per-example value).
    pub metric: Metric,
    /// The example's score on it.
    #[serde(deserialize_with = "edgebench_eval::metrics::f64_or_nan")]
    pub score: f64,
    /// GEM's majority route, when the record has routing decisions.
    pub route: Option<Pathway>,
}

/// A run ready for the paper's tables and figures.
pub struct PaperRun {
    /// Its directory.
    pub dir: RunDir,
    /// The part it plays.
    pub role: Role,
    /// Every metric recomputed from its records.
    pub scores: RunScores,
    /// Per-example scores (suites whose metrics have per-example values).
    pub examples: Vec<ExampleScore>,
    /// `perf.json`, when the run has one that parses.
    pub perf: Option<Perf>,
    /// GEM's configuration (`gem.toml` of the model directory), for GEM runs
    /// whose model directory is still there.
    pub gem: Option<GemConfig>,
    /// Problems that did not stop the report (unreadable `perf.json`, ...).
    pub warnings: Vec<String>,
}

impl PaperRun {
    /// Scores the run in `dir` (records are not rewritten) and tags it with
    /// `role`, or the role its model name implies.
    pub fn load(dir: RunDir, role: Option<Role>) -> Result<PaperRun, PaperError> {
        let manifest = dir.load_manifest()?;
        let boot = Bootstrap {
            resamples: manifest.bootstrap,
            seed: manifest.seed,
        };
        let scores = report::score_run(&dir, &boot)?;
        let mut examples = Vec::new();
        for s in &scores.suites {
            examples.extend(suite_examples(&dir, s)?);
        }
        let has_routes = examples.iter().any(|e| e.route.is_some());
        let role = role.unwrap_or_else(|| Role::infer(&manifest.model.name, has_routes));
        let mut warnings = Vec::new();
        let perf = load_perf(&dir.root, &mut warnings);
        let gem = if role.is_gem() {
            gem_config(&manifest).unwrap_or_else(|e| {
                warnings.push(e);
                None
            })
        } else {
            None
        };
        Ok(PaperRun {
            dir,
            role,
            scores,
            examples,
            perf,
            gem,
            warnings,
        })
    }

    /// What the tables and figures read from this run, for publishing.
    pub fn snapshot(&self) -> RunSnapshot {
        RunSnapshot {
            role: self.role.name(),
            manifest: self.scores.manifest.clone(),
            suites: self.scores.suites.clone(),
            domains: self.scores.domains.clone(),
            robustness: self.scores.robustness.clone(),
            examples: self.examples.clone(),
            gem: self.gem.clone(),
        }
    }

    /// A run folder as it comes: scored from its records, or, when it has
    /// none, a published run ([`PaperRun::load_published`]).
    pub fn open(dir: RunDir, role: Option<Role>) -> Result<PaperRun, PaperError> {
        if !dir.root.join("records").exists() && dir.root.join(SNAPSHOT_FILE).is_file() {
            PaperRun::load_published(dir, role)
        } else {
            PaperRun::load(dir, role)
        }
    }

    /// A published run: `paper-inputs.json` and the optional `perf.json` in
    /// `dir`, with `role` overriding the one it was published with.
    pub fn load_published(dir: RunDir, role: Option<Role>) -> Result<PaperRun, PaperError> {
        let path = dir.root.join(SNAPSHOT_FILE);
        let invalid = |e: String| RecordError::Invalid(format!("{}: {e}", path.display()));
        let text = std::fs::read_to_string(&path).map_err(|e| invalid(e.to_string()))?;
        let snap: RunSnapshot = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let role = match role {
            Some(r) => r,
            None => Role::parse(&snap.role)
                .ok_or_else(|| invalid(format!("unknown role `{}`", snap.role)))?,
        };
        let mut warnings = Vec::new();
        let perf = load_perf(&dir.root, &mut warnings);
        Ok(PaperRun {
            dir,
            role,
            scores: RunScores {
                manifest: snap.manifest,
                specs: Vec::new(),
                suites: snap.suites,
                domains: snap.domains,
                robustness: snap.robustness,
                routes: Vec::new(),
                integrity: Vec::new(),
            },
            examples: snap.examples,
            perf,
            gem: snap.gem,
            warnings,
        })
    }

    /// The run's manifest.
    pub fn manifest(&self) -> &RunManifest {
        &self.scores.manifest
    }

    /// The model's name.
    pub fn model(&self) -> &str {
        &self.manifest().model.name
    }

    /// `model (run id)`.
    pub fn label(&self) -> String {
        format!("{} (run {})", self.model(), self.manifest().run_id)
    }

    /// Parameter count from the model's manifest.
    pub fn parameters(&self) -> Option<u64> {
        self.manifest().model.parameters
    }

    /// Year the run was made (from its `created` timestamp).
    pub fn year(&self) -> Option<i32> {
        self.manifest().created.get(..4)?.parse().ok()
    }

    /// Whether the run's per-example records carry GEM routing decisions.
    pub fn has_routes(&self) -> bool {
        self.examples.iter().any(|e| e.route.is_some())
    }

    /// Domains the run scored, in the paper's order.
    pub fn domains(&self) -> Vec<Domain> {
        self.scores.domains.iter().map(|d| d.domain).collect()
    }

    /// The model's score on `domain`: the mean of the domain's suites'
    /// headline scores.
    pub fn domain_score(&self, domain: Domain) -> Option<f64> {
        self.scores
            .domains
            .iter()
            .find(|d| d.domain == domain)
            .map(|d| d.score.value)
            .filter(|v| v.is_finite())
    }

    /// "General" score: the mean over every domain the run scored (the
    /// paper's cross-domain F1).
    pub fn general_score(&self) -> Option<f64> {
        mean(self.scores.domains.iter().map(|d| d.score.value))
    }

    /// The model's GG: the mean over domains of GG per domain (each domain
    /// in-domain, the mean of the others out-of-domain).
    pub fn mean_gg(&self) -> Option<f64> {
        mean(self.scores.robustness.gg.iter().map(|(_, e)| e.value))
    }

    /// Mean token perplexity of each domain's perplexity suites.
    pub fn perplexity_by_domain(&self) -> BTreeMap<Domain, f64> {
        let mut parts: BTreeMap<Domain, Vec<f64>> = BTreeMap::new();
        for s in &self.scores.suites {
            if let Some((_, e)) = s.metrics.iter().find(|(m, _)| *m == Metric::Perplexity) {
                if let (true, Some(d)) = (e.value.is_finite(), s.paper_domain) {
                    parts.entry(d).or_default().push(e.value);
                }
            }
        }
        parts
            .into_iter()
            .filter_map(|(d, v)| Some((d, mean(v)?)))
            .collect()
    }
}

pub use edgebench_util::stats::mean;

/// The run's `perf.json`, if any; one that does not parse is a warning.
fn load_perf(root: &Path, warnings: &mut Vec<String>) -> Option<Perf> {
    Perf::load(root).unwrap_or_else(|e| {
        warnings.push(format!("perf.json ignored: {e}"));
        None
    })
}

/// Everything the tables and figures read from one run (`paper-inputs.json`
/// of a published run): its manifest, each suite's and domain's estimates,
/// GG/DSI/CDTR with their intervals, per-example scores with GEM's routes,
/// and GEM's configuration. Example ids, prompts and outputs stay in the
/// run's records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSnapshot {
    /// The role's name ([`Role::name`]).
    pub role: String,
    /// `run.json`.
    pub manifest: RunManifest,
    /// Per-suite estimates.
    pub suites: Vec<SuiteScores>,
    /// Per-domain estimates.
    pub domains: Vec<DomainScore>,
    /// GG, DSI and CDTR.
    pub robustness: Robustness,
    /// Per-example scores and routes.
    pub examples: Vec<ExampleScore>,
    /// GEM's configuration, for GEM runs.
    pub gem: Option<GemConfig>,
}

/// Per-example scores of one suite, with the routes of its records.
fn suite_examples(dir: &RunDir, s: &SuiteScores) -> Result<Vec<ExampleScore>, PaperError> {
    let per_example: Vec<BTreeMap<String, f64>> =
        s.stats.iter().map(score::per_example_scores).collect();
    let Some(metric) =
        s.metrics.iter().map(|(m, _)| *m).find(|m| {
            m.higher_is_better() && per_example.iter().any(|p| p.contains_key(m.as_str()))
        })
    else {
        return Ok(Vec::new());
    };
    let routes: BTreeMap<String, Vec<String>> = dir
        .load_records(&s.suite)?
        .into_iter()
        .map(|r| (r.example_id, r.routes))
        .collect();
    Ok(s.example_ids
        .iter()
        .zip(&per_example)
        .filter_map(|(id, p)| {
            Some(ExampleScore {
                suite: s.suite.clone(),
                domain: s.paper_domain?,
                metric,
                score: *p.get(metric.as_str())?,
                route: routes.get(id).and_then(|r| majority_route(r)),
            })
        })
        .collect())
}

/// GEM's configuration for a run: the bundled tiny GEM's, or `gem.toml` in
/// the model directory the run was made from. `Ok(None)` when the directory
/// is gone; `Err` (a warning) when its `gem.toml` is unreadable.
fn gem_config(m: &RunManifest) -> Result<Option<GemConfig>, String> {
    let source = m.model.source.as_str();
    if matches!(source, "builtin:gem-tiny" | "gem-tiny") {
        return Ok(Some(gem::tiny_config()));
    }
    let path = Path::new(source).join("gem.toml");
    if !path.is_file() {
        return Ok(None);
    }
    GemConfig::load(&path)
        .map(Some)
        .map_err(|e| format!("GEM config ignored: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_from_names_and_overrides() {
        assert_eq!(Role::infer("gem-paper", false), Role::Gem(Variant::Full));
        assert_eq!(
            Role::infer("gem-tiny-no-scar", false),
            Role::Gem(Variant::NoScar)
        );
        assert_eq!(
            Role::infer("gem-paper-no-quant", false),
            Role::Gem(Variant::NoQuant)
        );
        assert_eq!(
            Role::infer("custom-no-router", true),
            Role::Gem(Variant::NoRouter)
        );
        assert_eq!(Role::infer("all-MiniLM-L6-v2", false), Role::MobileBert);
        // `edgebench import mobilebert` names its models so
        assert_eq!(Role::infer("mobilebert-uncased", false), Role::MobileBert);
        assert_eq!(
            Role::infer("SmolLM2-135M-Instruct.Q4_1", false),
            Role::TinyLlama
        );
        assert_eq!(Role::infer("edgebench-tiny", false), Role::Other);
        for name in Role::NAMES {
            let r = Role::parse(name).unwrap();
            assert!(r.label().len() > 1);
        }
        assert_eq!(
            Role::parse("gem-no-router"),
            Some(Role::Gem(Variant::NoRouter))
        );
        assert_eq!(Role::parse("gem-full"), Some(Role::Gem(Variant::Full)));
        assert_eq!(Role::parse("bert"), None);
        assert!(
            Role::Gem(Variant::NoScar).is_ablation() && !Role::Gem(Variant::Full).is_ablation()
        );
    }

    #[test]
    fn majority_route_counts_every_pass_and_breaks_ties_low() {
        let r = |v: &[&str]| majority_route(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(r(&["0088", "8"]), Some(Pathway::General));
        assert_eq!(r(&["3313", "38"]), Some(Pathway::Domain(Domain::Stem)));
        assert_eq!(r(&["1122"]), Some(Pathway::Domain(Domain::Legal)));
        assert_eq!(r(&["7"]), Some(Pathway::Domain(Domain::DomainAdaptive)));
        assert_eq!(r(&[]), None);
        assert_eq!(r(&["x"]), None);
    }

    #[test]
    fn pathway_ids_follow_gem_domain_order() {
        for (d, name) in Domain::ALL.iter().zip(gem::config::DOMAINS) {
            assert_eq!(d.as_str(), name.replace('_', "-"));
        }
    }

    #[test]
    fn mean_skips_non_finite() {
        assert_eq!(mean([1.0, f64::NAN, 3.0]), Some(2.0));
        assert_eq!(mean([f64::NAN]), None);
    }
}
