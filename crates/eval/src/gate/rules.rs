//! The `gate.toml` rules: thresholds and significance levels for quality and
//! robustness checks, noise rules for performance checks, and per-suite /
//! per-domain / per-metric overrides matched by exact id or glob.
//!
//! Every field has a default, so an empty file is valid. Unknown keys are
//! errors, and every error names the file and the field. The schema is
//! documented in `docs/gate.md`.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Why a rules file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The file.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for the schema (syntax, unknown key, type).
    #[error("{file}:{line}:{column}: {field}{message}")]
    Parse {
        /// The file.
        file: String,
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// 1-based column of the error (0 when unknown).
        column: usize,
        /// `field `path`: ` when the offending key could be located, else empty.
        field: String,
        /// The parser's message.
        message: String,
    },
    /// A value is out of range.
    #[error("{file}: {field}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// Dotted path of the field, e.g. `quality.override[1].alpha`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Default largest tolerated quality drop (absolute, in metric units).
pub const DEFAULT_MAX_DROP: f64 = 0.01;
/// Default significance level.
pub const DEFAULT_ALPHA: f64 = 0.05;

fn default_max_drop() -> f64 {
    DEFAULT_MAX_DROP
}
fn default_alpha() -> f64 {
    DEFAULT_ALPHA
}
fn default_true() -> bool {
    true
}

/// The whole rules file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateRules {
    /// Per-suite and per-domain score checks (`[quality]`).
    pub quality: QualityRules,
    /// GG, DSI and CDTR checks (`[robustness]`).
    pub robustness: RobustnessRules,
    /// Latency, throughput, memory and energy checks (`[performance]`).
    pub performance: PerformanceRules,
}

/// `[quality]`: defaults for suite metrics and domain scores, with overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityRules {
    /// Largest tolerated drop, absolute in the metric's units (a rise for
    /// lower-is-better metrics such as perplexity).
    #[serde(default = "default_max_drop")]
    pub max_drop: f64,
    /// Largest tolerated drop relative to the baseline's magnitude (0.01 =
    /// 1 %); the threshold is the larger of this and `max_drop`. 0 (the
    /// default) leaves thresholds absolute.
    #[serde(default)]
    pub max_rel_drop: f64,
    /// Significance level of the paired test.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Use McNemar's mid-p instead of the exact (conservative) p-value.
    #[serde(default)]
    pub mcnemar_mid_p: bool,
    /// Overrides, applied in file order; a later match wins field by field.
    #[serde(default, rename = "override", skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<QualityOverride>,
}

impl Default for QualityRules {
    fn default() -> Self {
        QualityRules {
            max_drop: DEFAULT_MAX_DROP,
            max_rel_drop: 0.0,
            alpha: DEFAULT_ALPHA,
            mcnemar_mid_p: false,
            overrides: Vec::new(),
        }
    }
}

/// `[[quality.override]]`: selectors (all given ones must match; exact id or
/// glob with `*` and `?`) and the fields they change.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityOverride {
    /// Suite id pattern (matches suite checks only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// Domain pattern (the suite's domain, or the domain of a domain score).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Metric pattern (`acc`, `*perplexity`; domain scores are `score`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// New `max_drop`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_drop: Option<f64>,
    /// New `max_rel_drop`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rel_drop: Option<f64>,
    /// New `alpha`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// `false` skips the matched checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Default largest tolerated GG increase.
pub const DEFAULT_GG_MAX_CHANGE: f64 = 0.02;
/// Default largest tolerated DSI decrease.
pub const DEFAULT_DSI_MAX_CHANGE: f64 = 0.05;
/// Default largest tolerated CDTR decrease.
pub const DEFAULT_CDTR_MAX_CHANGE: f64 = 0.05;

/// One robustness metric's rule (`[robustness.gg]`, `.dsi`, `.cdtr`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobustnessRule {
    /// Largest tolerated change in the worse direction (absolute); the
    /// metric's default (`DEFAULT_*_MAX_CHANGE`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_change: Option<f64>,
    /// Significance level; `[robustness] alpha` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// `false` skips this metric.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for RobustnessRule {
    fn default() -> Self {
        RobustnessRule {
            max_change: None,
            alpha: None,
            enabled: true,
        }
    }
}

/// `[robustness]`: GG (higher is worse), DSI (lower is worse) and CDTR
/// (lower is worse), per domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobustnessRules {
    /// Default significance level of the three metrics.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Generalization gap; default `max_change = 0.02`.
    #[serde(default)]
    pub gg: RobustnessRule,
    /// Domain specificity index; default `max_change = 0.05`.
    #[serde(default)]
    pub dsi: RobustnessRule,
    /// Cross-domain transfer ratio; default `max_change = 0.05`.
    #[serde(default)]
    pub cdtr: RobustnessRule,
    /// Overrides, applied in file order; a later match wins field by field.
    #[serde(default, rename = "override", skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<RobustnessOverride>,
}

impl Default for RobustnessRules {
    fn default() -> Self {
        RobustnessRules {
            alpha: DEFAULT_ALPHA,
            gg: RobustnessRule::default(),
            dsi: RobustnessRule::default(),
            cdtr: RobustnessRule::default(),
            overrides: Vec::new(),
        }
    }
}

/// `[[robustness.override]]`: selectors and the fields they change.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobustnessOverride {
    /// `gg`, `dsi`, `cdtr` or a glob over them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Domain pattern (the source domain for CDTR).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Target domain pattern (CDTR only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// New `max_change`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_change: Option<f64>,
    /// New `alpha`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// `false` skips the matched checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// One performance class's rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerfClassRule {
    /// Smallest relative worsening that can fail (0.05 = 5 %); the class's
    /// default ([`PerfClass::default_floor`]) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<f64>,
    /// Noise multiplier for this class; `[performance] k` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<f64>,
    /// `false` skips this class.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for PerfClassRule {
    fn default() -> Self {
        PerfClassRule {
            floor: None,
            k: None,
            enabled: true,
        }
    }
}

/// `[performance]`: noise rule and one table per class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerformanceRules {
    /// Noise multiplier: fail only beyond `k x noise` (and the floor).
    #[serde(default = "PerformanceRules::default_k")]
    pub k: f64,
    /// Measurements per side (the gate reruns a performance run N times).
    #[serde(default = "PerformanceRules::default_repeats")]
    pub repeats: u32,
    /// Re-measure a would-be failure once before failing.
    #[serde(default = "default_true")]
    pub retry_once: bool,
    /// Latency (lower is better); default floor 5 %.
    #[serde(default)]
    pub latency: PerfClassRule,
    /// Throughput (higher is better); default floor 3 %.
    #[serde(default)]
    pub throughput: PerfClassRule,
    /// Peak memory (lower is better); default floor 2 %.
    #[serde(default)]
    pub memory: PerfClassRule,
    /// Energy (lower is better); default floor 5 %.
    #[serde(default)]
    pub energy: PerfClassRule,
}

impl PerformanceRules {
    fn default_k() -> f64 {
        3.0
    }
    fn default_repeats() -> u32 {
        3
    }
}

impl Default for PerformanceRules {
    fn default() -> Self {
        PerformanceRules {
            k: Self::default_k(),
            repeats: Self::default_repeats(),
            retry_once: true,
            latency: PerfClassRule::default(),
            throughput: PerfClassRule::default(),
            memory: PerfClassRule::default(),
            energy: PerfClassRule::default(),
        }
    }
}

/// What kind of quantity a check compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// One metric of one suite.
    Suite,
    /// A domain's mean headline score.
    Domain,
    /// Generalization gap of a domain (higher is worse).
    Gg,
    /// Domain specificity index of a domain (lower is worse).
    Dsi,
    /// Cross-domain transfer ratio source -> target (lower is worse).
    Cdtr,
}

/// Identifies one quality or robustness check, for rule lookup and output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckKey {
    /// Kind of quantity.
    pub kind: CheckKind,
    /// Suite id (suite checks only).
    pub suite: Option<String>,
    /// Domain (the suite's domain; the source domain for CDTR).
    pub domain: Option<String>,
    /// Target domain (CDTR only).
    pub target: Option<String>,
    /// Metric name: the suite metric, `score`, `gg`, `dsi` or `cdtr`.
    pub metric: String,
}

impl CheckKey {
    /// A metric of a suite, e.g. `("legal_contracts", "legal", "acc")`.
    pub fn suite(suite: &str, domain: &str, metric: &str) -> Self {
        CheckKey {
            kind: CheckKind::Suite,
            suite: Some(suite.to_owned()),
            domain: Some(domain.to_owned()),
            target: None,
            metric: metric.to_owned(),
        }
    }

    /// A domain's score.
    pub fn domain(domain: &str) -> Self {
        Self::per_domain(CheckKind::Domain, domain, "score")
    }

    /// The generalization gap of a domain.
    pub fn gg(domain: &str) -> Self {
        Self::per_domain(CheckKind::Gg, domain, "gg")
    }

    /// The domain specificity index of a domain.
    pub fn dsi(domain: &str) -> Self {
        Self::per_domain(CheckKind::Dsi, domain, "dsi")
    }

    /// The cross-domain transfer ratio from `source` to `target`.
    pub fn cdtr(source: &str, target: &str) -> Self {
        CheckKey {
            target: Some(target.to_owned()),
            ..Self::per_domain(CheckKind::Cdtr, source, "cdtr")
        }
    }

    fn per_domain(kind: CheckKind, domain: &str, metric: &str) -> Self {
        CheckKey {
            kind,
            suite: None,
            domain: Some(domain.to_owned()),
            target: None,
            metric: metric.to_owned(),
        }
    }

    /// Display id: `suite/metric`, `domain:D`, `gg:D`, `dsi:D`, `cdtr:S->T`.
    pub fn id(&self) -> String {
        let d = self.domain.as_deref().unwrap_or("?");
        match self.kind {
            CheckKind::Suite => format!("{}/{}", self.suite.as_deref().unwrap_or("?"), self.metric),
            CheckKind::Domain => format!("domain:{d}"),
            CheckKind::Gg => format!("gg:{d}"),
            CheckKind::Dsi => format!("dsi:{d}"),
            CheckKind::Cdtr => format!("cdtr:{d}->{}", self.target.as_deref().unwrap_or("?")),
        }
    }

    /// The fixed direction of domain scores and robustness metrics; `None`
    /// for suite metrics (the caller knows: `Metric::higher_is_better`).
    pub fn higher_is_better(&self) -> Option<bool> {
        match self.kind {
            CheckKind::Suite => None,
            CheckKind::Domain | CheckKind::Dsi | CheckKind::Cdtr => Some(true),
            CheckKind::Gg => Some(false),
        }
    }
}

/// The rule that applies to one quality or robustness check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QualityRule {
    /// Largest tolerated worsening (absolute).
    pub max_drop: f64,
    /// Largest tolerated worsening relative to the baseline's magnitude.
    pub max_rel_drop: f64,
    /// Significance level.
    pub alpha: f64,
    /// Use McNemar's mid-p.
    pub mid_p: bool,
}

impl QualityRule {
    /// The threshold on the drop from `baseline`: the larger of the absolute
    /// and the relative tolerance.
    pub fn threshold(&self, baseline: f64) -> f64 {
        let relative = self.max_rel_drop * baseline.abs();
        if relative.is_finite() {
            self.max_drop.max(relative)
        } else {
            self.max_drop
        }
    }
}

/// The rule that applies to one performance class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PerfRule {
    /// Smallest relative worsening that can fail.
    pub floor: f64,
    /// Noise multiplier.
    pub k: f64,
    /// Measurements per side.
    pub repeats: u32,
    /// Re-measure a would-be failure once.
    pub retry_once: bool,
}

/// A performance class; its direction is fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PerfClass {
    /// Time per request or token (lower is better).
    Latency,
    /// Tokens or requests per second (higher is better).
    Throughput,
    /// Peak memory (lower is better).
    Memory,
    /// Energy per request or token (lower is better).
    Energy,
}

impl PerfClass {
    /// All classes.
    pub const ALL: [PerfClass; 4] = [
        PerfClass::Latency,
        PerfClass::Throughput,
        PerfClass::Memory,
        PerfClass::Energy,
    ];

    /// Whether larger values are better (throughput only).
    pub fn higher_is_better(self) -> bool {
        matches!(self, PerfClass::Throughput)
    }

    /// Default floor: 5 % latency, 3 % throughput, 2 % memory, 5 % energy.
    pub fn default_floor(self) -> f64 {
        match self {
            PerfClass::Latency | PerfClass::Energy => 0.05,
            PerfClass::Throughput => 0.03,
            PerfClass::Memory => 0.02,
        }
    }

    /// The name used in `gate.toml` and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            PerfClass::Latency => "latency",
            PerfClass::Throughput => "throughput",
            PerfClass::Memory => "memory",
            PerfClass::Energy => "energy",
        }
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters
/// (also none) and `?` exactly one; without wildcards this is equality.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Position of the last `*` and of the text when it was taken.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            // Let the last `*` swallow one more character and retry.
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A selector matches when it is absent, or present and matching a present value.
fn selects(pattern: &Option<String>, value: &Option<String>) -> bool {
    match (pattern, value) {
        (None, _) => true,
        (Some(p), Some(v)) => glob_match(p, v),
        (Some(_), None) => false,
    }
}

impl GateRules {
    /// Parses a rules file's text; `file` names it in errors.
    pub fn from_toml_str(text: &str, file: &str) -> Result<Self, RulesError> {
        let rules: GateRules = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start);
            let (line, column) = offset.map_or((0, 0), |o| line_col(text, o));
            let field = offset
                .and_then(|o| field_at(text, o))
                .map_or_else(String::new, |f| format!("field `{f}`: "));
            RulesError::Parse {
                file: file.to_owned(),
                line,
                column,
                field,
                message: e.message().trim().to_owned(),
            }
        })?;
        rules.validate(file)?;
        Ok(rules)
    }

    /// Reads and parses a rules file.
    pub fn load(path: &Path) -> Result<Self, RulesError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Io {
            file: file.clone(),
            source,
        })?;
        Self::from_toml_str(&text, &file)
    }

    /// Checks ranges: alpha in (0, 1), thresholds finite and >= 0, k >= 0,
    /// repeats >= 1, overrides with at least one non-empty selector.
    pub fn validate(&self, file: &str) -> Result<(), RulesError> {
        let err = |field: String, message: String| RulesError::Invalid {
            file: file.to_owned(),
            field,
            message,
        };
        let alpha = |field: &str, a: f64| {
            if a.is_finite() && a > 0.0 && a < 1.0 {
                Ok(())
            } else {
                Err(err(
                    field.to_owned(),
                    format!("must lie in (0, 1), got {a}"),
                ))
            }
        };
        let non_negative = |field: &str, x: f64| {
            if x.is_finite() && x >= 0.0 {
                Ok(())
            } else {
                Err(err(
                    field.to_owned(),
                    format!("must be a finite number >= 0, got {x}"),
                ))
            }
        };
        let selectors = |field: &str, sel: &[(&str, &Option<String>)]| {
            if sel.iter().all(|(_, s)| s.is_none()) {
                let names: Vec<&str> = sel.iter().map(|(n, _)| *n).collect();
                return Err(err(
                    field.to_owned(),
                    format!("needs at least one of {}", names.join(", ")),
                ));
            }
            for (name, s) in sel {
                if s.as_deref().is_some_and(|p| p.trim().is_empty()) {
                    return Err(err(format!("{field}.{name}"), "is empty".to_owned()));
                }
            }
            Ok(())
        };

        let q = &self.quality;
        non_negative("quality.max_drop", q.max_drop)?;
        non_negative("quality.max_rel_drop", q.max_rel_drop)?;
        alpha("quality.alpha", q.alpha)?;
        for (i, o) in q.overrides.iter().enumerate() {
            let f = format!("quality.override[{i}]");
            selectors(
                &f,
                &[
                    ("suite", &o.suite),
                    ("domain", &o.domain),
                    ("metric", &o.metric),
                ],
            )?;
            if let Some(x) = o.max_drop {
                non_negative(&format!("{f}.max_drop"), x)?;
            }
            if let Some(x) = o.max_rel_drop {
                non_negative(&format!("{f}.max_rel_drop"), x)?;
            }
            if let Some(a) = o.alpha {
                alpha(&format!("{f}.alpha"), a)?;
            }
        }

        let r = &self.robustness;
        alpha("robustness.alpha", r.alpha)?;
        for (name, rule) in [("gg", &r.gg), ("dsi", &r.dsi), ("cdtr", &r.cdtr)] {
            if let Some(x) = rule.max_change {
                non_negative(&format!("robustness.{name}.max_change"), x)?;
            }
            if let Some(a) = rule.alpha {
                alpha(&format!("robustness.{name}.alpha"), a)?;
            }
        }
        for (i, o) in r.overrides.iter().enumerate() {
            let f = format!("robustness.override[{i}]");
            selectors(
                &f,
                &[
                    ("metric", &o.metric),
                    ("domain", &o.domain),
                    ("target", &o.target),
                ],
            )?;
            if let Some(m) = &o.metric {
                if !["gg", "dsi", "cdtr"].iter().any(|k| glob_match(m, k)) {
                    return Err(err(
                        format!("{f}.metric"),
                        format!("`{m}` matches none of gg, dsi, cdtr"),
                    ));
                }
            }
            if let Some(x) = o.max_change {
                non_negative(&format!("{f}.max_change"), x)?;
            }
            if let Some(a) = o.alpha {
                alpha(&format!("{f}.alpha"), a)?;
            }
        }

        let p = &self.performance;
        non_negative("performance.k", p.k)?;
        if p.repeats == 0 {
            return Err(err(
                "performance.repeats".to_owned(),
                "must be >= 1".to_owned(),
            ));
        }
        for c in PerfClass::ALL {
            let rule = self.perf_class(c);
            if let Some(f) = rule.floor {
                non_negative(&format!("performance.{}.floor", c.as_str()), f)?;
            }
            if let Some(k) = rule.k {
                non_negative(&format!("performance.{}.k", c.as_str()), k)?;
            }
        }
        Ok(())
    }

    fn perf_class(&self, class: PerfClass) -> &PerfClassRule {
        let p = &self.performance;
        match class {
            PerfClass::Latency => &p.latency,
            PerfClass::Throughput => &p.throughput,
            PerfClass::Memory => &p.memory,
            PerfClass::Energy => &p.energy,
        }
    }

    /// The rule for a quality or robustness check after overrides; `None`
    /// when the check is disabled.
    pub fn quality_rule(&self, key: &CheckKey) -> Option<QualityRule> {
        let mid_p = self.quality.mcnemar_mid_p;
        match key.kind {
            CheckKind::Suite | CheckKind::Domain => {
                let q = &self.quality;
                let (mut max_drop, mut max_rel_drop) = (q.max_drop, q.max_rel_drop);
                let (mut alpha, mut enabled) = (q.alpha, true);
                for o in &q.overrides {
                    // A suite selector never matches a domain score.
                    if selects(&o.suite, &key.suite)
                        && selects(&o.domain, &key.domain)
                        && selects(&o.metric, &Some(key.metric.clone()))
                    {
                        max_drop = o.max_drop.unwrap_or(max_drop);
                        max_rel_drop = o.max_rel_drop.unwrap_or(max_rel_drop);
                        alpha = o.alpha.unwrap_or(alpha);
                        enabled = o.enabled.unwrap_or(enabled);
                    }
                }
                enabled.then_some(QualityRule {
                    max_drop,
                    max_rel_drop,
                    alpha,
                    mid_p,
                })
            }
            CheckKind::Gg | CheckKind::Dsi | CheckKind::Cdtr => {
                let r = &self.robustness;
                let (base, default_max) = match key.kind {
                    CheckKind::Gg => (&r.gg, DEFAULT_GG_MAX_CHANGE),
                    CheckKind::Dsi => (&r.dsi, DEFAULT_DSI_MAX_CHANGE),
                    _ => (&r.cdtr, DEFAULT_CDTR_MAX_CHANGE),
                };
                let mut max_drop = base.max_change.unwrap_or(default_max);
                let mut alpha = base.alpha.unwrap_or(r.alpha);
                let mut enabled = base.enabled;
                for o in &r.overrides {
                    if selects(&o.metric, &Some(key.metric.clone()))
                        && selects(&o.domain, &key.domain)
                        && selects(&o.target, &key.target)
                    {
                        max_drop = o.max_change.unwrap_or(max_drop);
                        alpha = o.alpha.unwrap_or(alpha);
                        enabled = o.enabled.unwrap_or(enabled);
                    }
                }
                enabled.then_some(QualityRule {
                    max_drop,
                    max_rel_drop: 0.0,
                    alpha,
                    mid_p,
                })
            }
        }
    }

    /// The rule for a performance class; `None` when the class is disabled.
    pub fn perf_rule(&self, class: PerfClass) -> Option<PerfRule> {
        let c = self.perf_class(class);
        c.enabled.then(|| PerfRule {
            floor: c.floor.unwrap_or(class.default_floor()),
            k: c.k.unwrap_or(self.performance.k),
            repeats: self.performance.repeats,
            retry_once: self.performance.retry_once,
        })
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The dotted path of the key whose line holds `offset`: the nearest table
/// header above it (arrays of tables numbered from 0) plus the key before `=`.
fn field_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = &text[line_start..line_end];
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut table = String::new();
    for l in text[..line_start].lines() {
        let l = l.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_owned();
            let i = match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => {
                    *c += 1;
                    *c - 1
                }
                None => {
                    counts.push((name.clone(), 1));
                    0
                }
            };
            table = format!("{name}[{i}]");
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = name.trim().to_owned();
        }
    }
    let key = line.split_once('=').map(|(k, _)| k.trim())?;
    if key.is_empty() || key.starts_with('#') || key.starts_with('[') {
        return None;
    }
    Some(if table.is_empty() {
        key.to_owned()
    } else {
        format!("{table}.{key}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_semantics() {
        assert!(glob_match("legal_*", "legal_contracts"));
        assert!(glob_match("legal_*", "legal_"));
        assert!(!glob_match("legal_*", "legal"));
        assert!(glob_match("*perplexity", "word_perplexity"));
        assert!(glob_match("*perplexity", "perplexity"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("f1_?acro", "f1_macro"));
        assert!(glob_match("acc", "acc"));
        assert!(!glob_match("acc", "acc_norm"));
        assert!(glob_match("*", ""));
        assert!(glob_match("**a", "ba"));
        assert!(!glob_match("", "a"));
    }

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let r = GateRules::from_toml_str("", "gate.toml").unwrap();
        assert_eq!(r, GateRules::default());
        let q = r
            .quality_rule(&CheckKey::suite("s", "legal", "acc"))
            .unwrap();
        assert_eq!((q.max_drop, q.alpha, q.mid_p), (0.01, 0.05, false));
        let g = r.quality_rule(&CheckKey::gg("legal")).unwrap();
        assert_eq!((g.max_drop, g.alpha), (0.02, 0.05));
        let lat = r.perf_rule(PerfClass::Latency).unwrap();
        assert_eq!(
            (lat.floor, lat.k, lat.repeats, lat.retry_once),
            (0.05, 3.0, 3, true)
        );
        assert_eq!(r.perf_rule(PerfClass::Throughput).unwrap().floor, 0.03);
        assert_eq!(r.perf_rule(PerfClass::Memory).unwrap().floor, 0.02);
        assert_eq!(r.perf_rule(PerfClass::Energy).unwrap().floor, 0.05);
    }

    #[test]
    fn overrides_apply_in_order_field_by_field() {
        let text = r#"
[quality]
max_drop = 0.02

[[quality.override]]
suite = "legal_*"
max_drop = 0.05

[[quality.override]]
domain = "legal"
metric = "f1_*"
alpha = 0.01

[[quality.override]]
suite = "legal_noisy"
enabled = false

[[quality.override]]
metric = "*perplexity"
max_drop = 0.5
max_rel_drop = 0.01

[[robustness.override]]
metric = "cdtr"
domain = "multilingual"
max_change = 0.2
"#;
        let r = GateRules::from_toml_str(text, "gate.toml").unwrap();
        let rule = |k: CheckKey| r.quality_rule(&k).map(|q| (q.max_drop, q.alpha));
        assert_eq!(
            rule(CheckKey::suite("legal_x", "legal", "acc")),
            Some((0.05, 0.05))
        );
        assert_eq!(
            rule(CheckKey::suite("legal_x", "legal", "f1_macro")),
            Some((0.05, 0.01))
        );
        assert_eq!(
            rule(CheckKey::suite("med_x", "healthcare", "acc")),
            Some((0.02, 0.05))
        );
        assert_eq!(rule(CheckKey::suite("legal_noisy", "legal", "acc")), None);
        // A suite selector does not match the domain score; a domain one does.
        assert_eq!(rule(CheckKey::domain("legal")), Some((0.02, 0.05)));
        assert_eq!(
            rule(CheckKey::cdtr("multilingual", "legal")),
            Some((0.2, 0.05))
        );
        assert_eq!(
            rule(CheckKey::cdtr("legal", "multilingual")),
            Some((0.05, 0.05))
        );
        assert_eq!(rule(CheckKey::dsi("multilingual")), Some((0.05, 0.05)));
        // Relative tolerance: only where an override sets it.
        let rel = |k: CheckKey| r.quality_rule(&k).map(|q| q.max_rel_drop);
        assert_eq!(
            rel(CheckKey::suite("wiki", "stem", "word_perplexity")),
            Some(0.01)
        );
        assert_eq!(rel(CheckKey::suite("wiki", "stem", "acc")), Some(0.0));
        assert_eq!(rel(CheckKey::cdtr("legal", "stem")), Some(0.0));
        let q = r
            .quality_rule(&CheckKey::suite("wiki", "stem", "word_perplexity"))
            .unwrap();
        assert_eq!((q.threshold(20.0), q.threshold(1e6)), (0.5, 1e4));
    }

    #[test]
    fn integers_are_accepted_where_numbers_are_expected() {
        let r = GateRules::from_toml_str("[performance]\nk = 4\n[quality]\nmax_drop = 0\n", "g")
            .unwrap();
        assert_eq!((r.performance.k, r.quality.max_drop), (4.0, 0.0));
    }

    #[test]
    fn disabled_classes_and_class_k() {
        let text = "[performance.energy]\nfloor = 0.1\nenabled = false\n\
                    [performance.latency]\nfloor = 0.08\nk = 4.0\n";
        let r = GateRules::from_toml_str(text, "g").unwrap();
        assert_eq!(r.perf_rule(PerfClass::Energy), None);
        let l = r.perf_rule(PerfClass::Latency).unwrap();
        assert_eq!((l.floor, l.k), (0.08, 4.0));
        assert_eq!(r.perf_rule(PerfClass::Memory).unwrap().k, 3.0);
    }

    fn error(text: &str) -> String {
        GateRules::from_toml_str(text, "rules/gate.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_file_and_field() {
        let e = error("[quality]\nmax_dropp = 0.1\n");
        assert!(
            e.starts_with("rules/gate.toml:2:1: field `quality.max_dropp`: unknown field"),
            "{e}"
        );
        let e = error("[[quality.override]]\nsuite = \"a\"\n[[quality.override]]\nsuite = 3\n");
        assert!(
            e.contains("field `quality.override[1].suite`: invalid type"),
            "{e}"
        );
        let e = error("[quality]\nalpha = 1.0\n");
        assert_eq!(
            e,
            "rules/gate.toml: quality.alpha: must lie in (0, 1), got 1"
        );
        let e = error("[quality]\nalpha = 0.0\n");
        assert!(e.contains("quality.alpha"), "{e}");
        let e = error("[[quality.override]]\nsuite = \"a\"\n[[quality.override]]\nsuite = \"b\"\nmax_drop = -0.1\n");
        assert_eq!(
            e,
            "rules/gate.toml: quality.override[1].max_drop: must be a finite number >= 0, got -0.1"
        );
        let e = error("[[quality.override]]\nmetric = \"ppl\"\nmax_rel_drop = -0.01\n");
        assert_eq!(
            e,
            "rules/gate.toml: quality.override[0].max_rel_drop: must be a finite number >= 0, got -0.01"
        );
        let e = error("[[quality.override]]\nmax_drop = 0.1\n");
        assert!(
            e.contains("quality.override[0]: needs at least one of suite, domain, metric"),
            "{e}"
        );
        let e = error("[performance.latency]\nfloor = -0.05\n");
        assert!(e.contains("performance.latency.floor"), "{e}");
        let e = error("[performance]\nrepeats = 0\n");
        assert!(e.contains("performance.repeats: must be >= 1"), "{e}");
        let e = error("[robustness.gg]\nmax_change = 0.1\nalpha = 2\n");
        assert!(e.contains("robustness.gg"), "{e}");
        let e = error("[[robustness.override]]\nmetric = \"acc\"\n");
        assert!(e.contains("robustness.override[0].metric"), "{e}");
        // A type error names the field even though the parser does not.
        let e = error("[quality]\nmax_drop = 0.1\nalpha = \"high\"\n");
        assert!(e.starts_with("rules/gate.toml:3:"), "{e}");
        assert!(e.contains("quality.alpha"), "{e}");
        let e = error("[quality\n");
        assert!(e.starts_with("rules/gate.toml:1:"), "{e}");
    }
}
