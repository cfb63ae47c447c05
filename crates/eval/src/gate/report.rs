//! Gate output: one row per check, the overall result and exit code, a
//! plain-text table for the terminal and a Markdown summary.

use super::verdict::{PerfCheck, QualityCheck, Verdict};
use serde::Serialize;

/// Exit code: every check passed (inconclusive and improved checks included).
pub const EXIT_PASS: i32 = 0;
/// Exit code: at least one regression.
pub const EXIT_REGRESSION: i32 = 1;
/// Exit code for bad input (unreadable runs or rules, refused mismatch);
/// returned by the caller, never by [`GateReport::exit_code`].
pub const EXIT_BAD_INPUT: i32 = 2;

/// Which part of the gate a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    /// Suite metrics, domain scores, GG, DSI, CDTR (absolute changes).
    Quality,
    /// Latency, throughput, memory, energy (relative changes).
    Performance,
}

impl Section {
    /// Name used as a heading and JUnit test suite name.
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Quality => "quality",
            Section::Performance => "performance",
        }
    }
}

/// One row of the gate's table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Section.
    pub section: Section,
    /// Check id, e.g. `legal_contracts/acc`, `gg:legal`, `latency/decode_ms`.
    pub metric: String,
    /// Baseline value (median for performance).
    pub baseline: f64,
    /// Candidate value (median for performance).
    pub candidate: f64,
    /// Change: absolute for quality, relative for performance.
    pub change: f64,
    /// Threshold: `max_drop` for quality, `max(floor, k x noise)` for performance.
    pub threshold: f64,
    /// Significance level (quality only).
    pub alpha: Option<f64>,
    /// p-value (quality only, when computed).
    pub p_value: Option<f64>,
    /// Pooled relative noise (performance only).
    pub noise: Option<f64>,
    /// Verdict.
    pub verdict: Verdict,
    /// One sentence explaining the verdict.
    pub detail: String,
}

impl Row {
    /// A quality or robustness row.
    pub fn quality(metric: impl Into<String>, c: &QualityCheck) -> Self {
        Row {
            section: Section::Quality,
            metric: metric.into(),
            baseline: c.baseline,
            candidate: c.candidate,
            change: c.change,
            threshold: c.max_drop,
            alpha: Some(c.alpha),
            p_value: c.p_value,
            noise: None,
            verdict: c.verdict.clone(),
            detail: c.detail.clone(),
        }
    }

    /// A performance row.
    pub fn performance(metric: impl Into<String>, c: &PerfCheck) -> Self {
        Row {
            section: Section::Performance,
            metric: metric.into(),
            baseline: c.baseline,
            candidate: c.candidate,
            change: c.change,
            threshold: c.threshold,
            alpha: None,
            p_value: None,
            noise: Some(c.noise),
            verdict: c.verdict.clone(),
            detail: c.detail.clone(),
        }
    }

    /// The six displayed cells: metric, baseline, candidate, change,
    /// threshold, verdict (with the p-value or noise in parentheses).
    pub fn cells(&self) -> [String; 6] {
        let (change, threshold, note) = match self.section {
            Section::Quality => (
                signed(self.change, 4),
                match self.alpha {
                    Some(a) => format!("{:.4} @ a={a}", self.threshold),
                    None => format!("{:.4}", self.threshold),
                },
                self.p_value.map(|p| format!("p={}", fmt_p(p))),
            ),
            Section::Performance => (
                percent(self.change, true),
                percent(self.threshold, false),
                self.noise.map(|n| format!("noise {}", percent(n, false))),
            ),
        };
        let verdict = match note {
            Some(n) => format!("{} ({n})", self.verdict.label()),
            None => self.verdict.label().to_owned(),
        };
        [
            self.metric.clone(),
            value(self.baseline),
            value(self.candidate),
            change,
            threshold,
            verdict,
        ]
    }
}

fn signed(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:+.decimals$}")
    } else {
        "-".to_owned()
    }
}

fn percent(x: f64, sign: bool) -> String {
    match (x.is_finite(), sign) {
        (false, _) => "-".to_owned(),
        (true, true) => format!("{:+.1}%", 100.0 * x),
        (true, false) => format!("{:.1}%", 100.0 * x),
    }
}

/// A value with enough digits for both scores in [0, 1] and raw measurements.
fn value(x: f64) -> String {
    let a = x.abs();
    if !x.is_finite() {
        "-".to_owned()
    } else if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

fn fmt_p(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

/// Overall result of the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Overall {
    /// No check failed.
    Pass,
    /// At least one regression (or unresolved retry).
    Fail,
}

impl Overall {
    /// `PASS` or `FAIL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Overall::Pass => "PASS",
            Overall::Fail => "FAIL",
        }
    }
}

/// Every checked row of one gate run, with labels for the two runs.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct GateReport {
    /// Baseline label (run id or file).
    pub baseline: String,
    /// Candidate label.
    pub candidate: String,
    /// Rows in display order.
    pub rows: Vec<Row>,
    /// Notes shown under the summary line (e.g. allowed mismatches).
    pub notes: Vec<String>,
    /// What fails the gate besides its rows: examples or suites missing or
    /// duplicated on either side, an incomplete candidate.
    pub failures: Vec<String>,
}

/// Verdict counts of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Counts {
    /// Passed.
    pub pass: usize,
    /// Regressions (unresolved retries included).
    pub regression: usize,
    /// Improvements.
    pub improvement: usize,
    /// Inconclusive.
    pub inconclusive: usize,
}

impl Counts {
    /// All rows.
    pub fn total(&self) -> usize {
        self.pass + self.regression + self.improvement + self.inconclusive
    }
}

impl GateReport {
    /// An empty report comparing `candidate` against `baseline`.
    pub fn new(baseline: impl Into<String>, candidate: impl Into<String>) -> Self {
        GateReport {
            baseline: baseline.into(),
            candidate: candidate.into(),
            ..Default::default()
        }
    }

    /// Verdict counts over the rows of `section` (all rows for `None`).
    pub fn counts(&self, section: Option<Section>) -> Counts {
        let mut c = Counts::default();
        for r in self
            .rows
            .iter()
            .filter(|r| section.is_none_or(|s| r.section == s))
        {
            match r.verdict {
                Verdict::Pass => c.pass += 1,
                Verdict::Regression | Verdict::Retry => c.regression += 1,
                Verdict::Improvement => c.improvement += 1,
                Verdict::Inconclusive(_) => c.inconclusive += 1,
            }
        }
        c
    }

    /// FAIL when any row fails ([`Verdict::fails`]), when there is a
    /// failure outside the rows, or when nothing was checked (a gate that
    /// compared nothing has shown nothing).
    pub fn overall(&self) -> Overall {
        if self.rows.is_empty()
            || !self.failures.is_empty()
            || self.rows.iter().any(|r| r.verdict.fails())
        {
            Overall::Fail
        } else {
            Overall::Pass
        }
    }

    /// [`EXIT_PASS`] or [`EXIT_REGRESSION`]; bad input ([`EXIT_BAD_INPUT`])
    /// is the caller's to return before a report exists.
    pub fn exit_code(&self) -> i32 {
        match self.overall() {
            Overall::Pass => EXIT_PASS,
            Overall::Fail => EXIT_REGRESSION,
        }
    }

    /// `gate: PASS (12 checks: 11 pass, 1 inconclusive)`.
    pub fn summary_line(&self) -> String {
        let c = self.counts(None);
        let mut parts = Vec::new();
        for (n, what) in [
            (c.regression, "regression"),
            (c.improvement, "improvement"),
            (c.inconclusive, "inconclusive"),
            (c.pass, "pass"),
        ] {
            if n > 0 {
                let plural = if n > 1 && what != "pass" && what != "inconclusive" {
                    "s"
                } else {
                    ""
                };
                parts.push(format!("{n} {what}{plural}"));
            }
        }
        if !self.failures.is_empty() {
            parts.push(format!(
                "{} coverage failure{}",
                self.failures.len(),
                if self.failures.len() == 1 { "" } else { "s" }
            ));
        }
        let checks = if c.total() == 1 { "check" } else { "checks" };
        if c.total() == 0 {
            format!(
                "gate: {} (0 checks{})",
                self.overall().as_str(),
                if parts.is_empty() {
                    String::new()
                } else {
                    format!(", {}", parts.join(", "))
                }
            )
        } else {
            format!(
                "gate: {} ({} {checks}: {})",
                self.overall().as_str(),
                c.total(),
                parts.join(", ")
            )
        }
    }

    /// Plain-text table for the terminal: one block per non-empty section,
    /// columns padded to width, numbers right-aligned, summary line last.
    pub fn render_table(&self) -> String {
        const HEAD: [&str; 6] = [
            "metric",
            "baseline",
            "candidate",
            "change",
            "threshold",
            "verdict",
        ];
        let mut out = String::new();
        for section in [Section::Quality, Section::Performance] {
            let rows: Vec<[String; 6]> = self
                .rows
                .iter()
                .filter(|r| r.section == section)
                .map(Row::cells)
                .collect();
            if rows.is_empty() {
                continue;
            }
            let mut width = HEAD.map(|h| h.chars().count());
            for r in &rows {
                for (w, cell) in width.iter_mut().zip(r) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            out.push_str(section.as_str());
            out.push('\n');
            let line = |cells: &[String]| {
                let mut s = String::new();
                for (i, (cell, w)) in cells.iter().zip(width).enumerate() {
                    if i > 0 {
                        s.push_str("  ");
                    }
                    let pad = " ".repeat(w - cell.chars().count());
                    // Metric and verdict left-aligned, numbers right-aligned.
                    if i == 0 || i == 5 {
                        s.push_str(cell);
                        if i == 0 {
                            s.push_str(&pad);
                        }
                    } else {
                        s.push_str(&pad);
                        s.push_str(cell);
                    }
                }
                s.push('\n');
                s
            };
            out.push_str(&line(&HEAD.map(String::from)));
            let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&line(&rule));
            for r in &rows {
                out.push_str(&line(r));
            }
            out.push('\n');
        }
        for f in &self.failures {
            out.push_str(&format!("FAIL: {f}\n"));
        }
        out.push_str(&self.summary_line());
        out.push('\n');
        out
    }

    /// Markdown summary: the overall PASS/FAIL line first, then notes, one
    /// table per non-empty section, and the reasons of failed and
    /// inconclusive checks.
    pub fn render_markdown(&self) -> String {
        let c = self.counts(None);
        let mut out = format!(
            "**Gate: {}** ({} regression(s), {} improvement(s), {} inconclusive, {} pass) \
             for candidate `{}` against baseline `{}`\n",
            self.overall().as_str(),
            c.regression,
            c.improvement,
            c.inconclusive,
            c.pass,
            md_code(&self.candidate),
            md_code(&self.baseline),
        );
        if !self.failures.is_empty() {
            out.push_str("\n### Coverage\n\n");
            for f in &self.failures {
                out.push_str(&format!("- **FAIL** {}\n", md_cell(f)));
            }
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                out.push_str(&format!("- {}\n", md_cell(n)));
            }
        }
        for section in [Section::Quality, Section::Performance] {
            let rows: Vec<&Row> = self.rows.iter().filter(|r| r.section == section).collect();
            if rows.is_empty() {
                continue;
            }
            let title = match section {
                Section::Quality => "Quality",
                Section::Performance => "Performance",
            };
            out.push_str(&format!("\n### {title}\n\n"));
            out.push_str("| metric | baseline | candidate | change | threshold | verdict |\n");
            out.push_str("|---|---:|---:|---:|---:|---|\n");
            for r in &rows {
                let mut cells = r.cells().map(|c| md_cell(&c));
                if r.verdict.fails() {
                    cells[5] = format!("**{}**", cells[5]);
                }
                out.push_str(&format!("| {} |\n", cells.join(" | ")));
            }
        }
        let explained: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.verdict.fails() || matches!(r.verdict, Verdict::Inconclusive(_)))
            .collect();
        if !explained.is_empty() {
            out.push_str("\n### Details\n\n");
            for r in explained {
                out.push_str(&format!(
                    "- `{}` {}: {}\n",
                    md_code(&r.metric),
                    r.verdict.label(),
                    md_cell(&r.detail)
                ));
            }
        }
        out
    }
}

/// Escapes a Markdown table cell (pipes, newlines).
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Keeps text inside single backticks.
fn md_code(s: &str) -> String {
    s.replace('`', "'").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(section: Section, metric: &str, verdict: Verdict) -> Row {
        Row {
            section,
            metric: metric.into(),
            baseline: 0.5,
            candidate: 0.4,
            change: -0.1,
            threshold: 0.01,
            alpha: (section == Section::Quality).then_some(0.05),
            p_value: (section == Section::Quality).then_some(0.003),
            noise: (section == Section::Performance).then_some(0.015),
            verdict,
            detail: "why | because".into(),
        }
    }

    #[test]
    fn cells_format_quality_and_performance() {
        let q = row(Section::Quality, "legal/acc", Verdict::Regression);
        assert_eq!(
            q.cells(),
            [
                "legal/acc",
                "0.5000",
                "0.4000",
                "-0.1000",
                "0.0100 @ a=0.05",
                "REGRESSION (p=0.0030)"
            ]
            .map(String::from)
        );
        let mut p = row(Section::Performance, "latency/ms", Verdict::Pass);
        (p.baseline, p.candidate, p.change, p.threshold) = (120.0, 123.0, 0.025, 0.05);
        assert_eq!(
            p.cells(),
            [
                "latency/ms",
                "120.00",
                "123.00",
                "+2.5%",
                "5.0%",
                "pass (noise 1.5%)"
            ]
            .map(String::from)
        );
    }

    #[test]
    fn overall_and_exit_codes() {
        let mut r = GateReport::new("base", "cand");
        // a gate that checked nothing fails closed
        assert_eq!(
            (r.overall(), r.exit_code()),
            (Overall::Fail, EXIT_REGRESSION)
        );
        assert_eq!(r.summary_line(), "gate: FAIL (0 checks)");
        r.rows.push(row(
            Section::Quality,
            "a/acc",
            Verdict::Inconclusive("n".into()),
        ));
        r.rows
            .push(row(Section::Quality, "b/acc", Verdict::Improvement));
        assert_eq!(r.exit_code(), EXIT_PASS);
        r.failures.push("suite `x`: 1 duplicated record(s)".into());
        assert_eq!(r.exit_code(), EXIT_REGRESSION);
        assert_eq!(
            r.summary_line(),
            "gate: FAIL (2 checks: 1 improvement, 1 inconclusive, 1 coverage failure)"
        );
        r.failures.clear();
        r.rows
            .push(row(Section::Performance, "latency", Verdict::Retry));
        assert_eq!(
            (r.overall(), r.exit_code()),
            (Overall::Fail, EXIT_REGRESSION)
        );
        assert_eq!(
            r.summary_line(),
            "gate: FAIL (3 checks: 1 regression, 1 improvement, 1 inconclusive)"
        );
    }

    #[test]
    fn table_and_markdown_layout() {
        let mut r = GateReport::new("base", "cand");
        r.rows.push(row(
            Section::Quality,
            "legal_contracts/acc",
            Verdict::Regression,
        ));
        r.rows
            .push(row(Section::Quality, "gg:legal", Verdict::Pass));
        r.notes.push("suite x: data hash differs (allowed)".into());
        let t = r.render_table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "quality");
        assert!(lines[1].starts_with("metric               baseline"), "{t}");
        // All rows of the block have the same width up to the verdict column.
        let at = lines[1].find("verdict").unwrap();
        assert!(lines[3..5]
            .iter()
            .all(|l| l.len() >= at && l.is_char_boundary(at)));
        assert_eq!(&lines[3][at..at + 10], "REGRESSION");
        assert!(!t.contains("performance"));
        assert_eq!(
            *lines.last().unwrap(),
            "gate: FAIL (2 checks: 1 regression, 1 pass)"
        );

        let md = r.render_markdown();
        assert!(md.starts_with("**Gate: FAIL** (1 regression(s)"), "{md}");
        assert!(md.contains("| legal_contracts/acc | 0.5000 | 0.4000 | -0.1000 | 0.0100 @ a=0.05 | **REGRESSION (p=0.0030)** |"), "{md}");
        assert!(
            md.contains("- `legal_contracts/acc` REGRESSION: why \\| because"),
            "{md}"
        );
        assert!(md.contains("- suite x: data hash differs (allowed)"));
    }
}
