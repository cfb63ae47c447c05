//! Audit of the paper's own arithmetic: every number it derives from other
//! numbers it prints is recomputed from those inputs (the checks listed in
//! `claims.toml`, the inputs as transcribed in `reported.toml`) and compared
//! with the printed value.
//!
//! A printed number agrees when it lies within half a unit of its last
//! printed digit of the recomputed value (`0.5789` within 0.00005, `82`
//! within 0.5). A printed range agrees when both ends do; a printed number
//! checked against a recomputed range agrees when it lies inside it.
//! Claims the paper gives no inputs for are listed separately as not
//! recomputable.

use super::claims::{Check, Claim, Claims, Expr, Format, Func, Metric, Op, Segment, Template};
use super::reported::{printed_decimals, Reported, ReportedError, Value};
use edgebench_eval::metrics::robustness::{cdtr_matrix, dsi, generalization_gap};

/// Whether a printed value follows from its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Agrees within the printed precision.
    Ok,
    /// Does not follow; `recomputed` is the correct value.
    Mismatch,
}

/// One recomputed number.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Key of the audited entry in `reported.toml`.
    pub key: String,
    /// What was recomputed, and how.
    pub item: String,
    /// Where the printed value is (the entry's source).
    pub source: String,
    /// Unit of the printed value.
    pub unit: String,
    /// The printed value.
    pub reported: Value,
    /// The value its inputs give (the correct value for a mismatch).
    pub recomputed: Value,
    /// Whether they agree.
    pub status: Status,
    /// Explanation: the base, the convention, or why it differs.
    pub note: String,
}

/// A printed claim the paper gives no inputs for.
#[derive(Debug, Clone, PartialEq)]
pub struct NotRecomputable {
    /// Key of the entry in `reported.toml`.
    pub key: String,
    /// The printed value.
    pub reported: Value,
    /// Where it is printed.
    pub source: String,
    /// Why it cannot be recomputed, and any related observation.
    pub reason: String,
}

/// The audit's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    /// Every recomputed number, in the paper's order.
    pub findings: Vec<Finding>,
    /// Claims without inputs.
    pub not_recomputable: Vec<NotRecomputable>,
}

impl Audit {
    /// The findings whose printed value does not follow.
    pub fn mismatches(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.status == Status::Mismatch)
    }

    /// `audit.md`: a summary, the mismatches with their correct values, the
    /// consistent checks and the claims that cannot be recomputed.
    pub fn to_markdown(&self) -> String {
        let bad: Vec<&Finding> = self.mismatches().collect();
        let good: Vec<&Finding> = self
            .findings
            .iter()
            .filter(|f| f.status == Status::Ok)
            .collect();
        let mut out = String::from(
            "# Audit of the paper's derived numbers\n\n\
             Every number the paper derives from other numbers it prints, recomputed from \
             those inputs as transcribed in `reports/paper/reported.toml`. A printed value \
             agrees when it is within half a unit of its last printed digit of the \
             recomputed one.\n\n",
        );
        out.push_str(&format!(
            "**{} checks: {} consistent, {} mismatches; {} claims cannot be recomputed.**\n\n",
            self.findings.len(),
            good.len(),
            bad.len(),
            self.not_recomputable.len()
        ));
        let table = |title: &str, value_header: &str, rows: &[&Finding]| {
            let mut s = format!(
                "## {title}\n\n| # | Item | Source | Unit | Reported | {value_header} | Note |\n\
                 |---|---|---|---|---:|---:|---|\n"
            );
            for (i, f) in rows.iter().enumerate() {
                s.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} |\n",
                    i + 1,
                    md_cell(&f.item),
                    md_cell(&f.source),
                    md_cell(&f.unit),
                    md_cell(&f.reported.to_string()),
                    md_cell(&format_like(&f.recomputed, &f.reported)),
                    md_cell(&f.note)
                ));
            }
            s.push('\n');
            s
        };
        out.push_str(&table("Mismatches", "Correct", &bad));
        out.push_str(&table("Consistent", "Recomputed", &good));
        out.push_str(
            "## Not recomputable\n\n| Key | Reported | Source | Why |\n|---|---:|---|---|\n",
        );
        for n in &self.not_recomputable {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                n.key,
                md_cell(&n.reported.to_string()),
                md_cell(&n.source),
                md_cell(&n.reason)
            ));
        }
        out
    }
}

/// Escapes `|` and flattens newlines for a Markdown table cell.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// `x` with at least `min_decimals` decimals and about four significant
/// digits, trailing zeros beyond `min_decimals` trimmed.
fn format_number(x: f64, min_decimals: usize) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let magnitude = if x == 0.0 {
        0
    } else {
        x.abs().log10().floor() as i32
    };
    let wanted = (3 - magnitude).clamp(0, 10) as usize;
    let decimals = wanted.max(min_decimals).min(12);
    let mut s = format!("{x:.decimals$}");
    if decimals > min_decimals {
        let keep = s.len() - (decimals - min_decimals);
        while s.len() > keep && s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    s
}

/// A recomputed value formatted at least as precisely as the printed one.
fn format_like(recomputed: &Value, reported: &Value) -> String {
    let min = match reported {
        Value::Number(x) => printed_decimals(*x),
        Value::Range { low, high } => printed_decimals(*low).max(printed_decimals(*high)),
        Value::Text(_) => 0,
    };
    match recomputed {
        Value::Number(x) => format_number(*x, min),
        Value::Range { low, high } => {
            format!(
                "{} to {}",
                format_number(*low, min),
                format_number(*high, min)
            )
        }
        Value::Text(t) => t.clone(),
    }
}

/// Half a unit of the last printed digit of `x`, plus float slack.
fn tolerance(x: f64) -> f64 {
    0.5 * 10f64.powi(-(printed_decimals(x) as i32)) * (1.0 + 1e-9) + 1e-12
}

/// Whether a printed value agrees with a recomputed one (see the module
/// documentation for the rule).
pub fn agrees(reported: &Value, recomputed: &Value) -> bool {
    let near = |p: f64, r: f64| (p - r).abs() <= tolerance(p);
    match (reported, recomputed) {
        (Value::Number(p), Value::Number(r)) => near(*p, *r),
        (Value::Range { low, high }, Value::Range { low: l, high: h }) => {
            near(*low, *l) && near(*high, *h)
        }
        (Value::Number(p), Value::Range { low, high }) => {
            *p >= low - tolerance(*p) && *p <= high + tolerance(*p)
        }
        (Value::Range { low, high }, Value::Number(r)) => {
            *r >= low - tolerance(*low) && *r <= high + tolerance(*high)
        }
        (Value::Text(a), Value::Text(b)) => a == b,
        _ => false,
    }
}

/// The values a claim's expressions and templates read: its inputs (looked
/// up on use), its `let` values and, for a `per_domain` claim, its scores.
struct Scope<'a> {
    r: &'a Reported,
    claim: &'a Claim,
    lets: Vec<Option<f64>>,
    scores: Vec<f64>,
}

impl<'a> Scope<'a> {
    fn new(r: &'a Reported, claim: &'a Claim) -> Result<Self, ReportedError> {
        for (_, key) in &claim.inputs {
            r.entry(key)?;
        }
        let mut scope = Scope {
            r,
            claim,
            lets: Vec::with_capacity(claim.lets.len()),
            scores: Vec::new(),
        };
        for e in &claim.lets {
            let v = scope.eval(e)?;
            scope.lets.push(v);
        }
        if let Check::PerDomain { scores, .. } = &claim.check {
            scope.scores = scores
                .iter()
                .map(|k| r.number(k))
                .collect::<Result<_, _>>()?;
        }
        Ok(scope)
    }

    /// The value of `e`; `None` where a metric is undefined (a zero or
    /// non-finite base), which propagates.
    fn eval(&self, e: &Expr) -> Result<Option<f64>, ReportedError> {
        Ok(match e {
            Expr::Num(x) => Some(*x),
            Expr::Input(i) => Some(self.r.number(&self.claim.inputs[*i].1)?),
            Expr::Let(i) => self.lets[*i],
            Expr::Neg(a) => self.eval(a)?.map(|x| -x),
            Expr::Bin(op, a, b) => {
                let (a, b) = (self.eval(a)?, self.eval(b)?);
                a.zip(b).map(|(a, b)| match op {
                    Op::Add => a + b,
                    Op::Sub => a - b,
                    Op::Mul => a * b,
                    Op::Div => a / b,
                })
            }
            Expr::Pow(a, n) => self.eval(a)?.map(|x| x.powi(*n)),
            Expr::Call(f, args) => {
                let mut xs = Vec::with_capacity(args.len());
                for a in args {
                    match self.eval(a)? {
                        Some(x) => xs.push(x),
                        None => return Ok(None),
                    }
                }
                match f {
                    Func::Gg => generalization_gap(xs[0], xs[1]),
                    Func::Cdtr => cdtr_matrix(&[xs[0], xs[1]])[0][1],
                    Func::Dsi => dsi(&xs, 0),
                    Func::Mean => Some(xs.iter().sum::<f64>() / xs.len() as f64),
                    Func::Min => Some(xs.iter().copied().fold(f64::INFINITY, f64::min)),
                    Func::Max => Some(xs.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                    Func::Round => Some(xs[0].round()),
                }
            }
        })
    }

    /// The text of `t` (an undefined number prints as `NaN`).
    fn render(&self, t: &Template) -> Result<String, ReportedError> {
        let mut out = String::new();
        for s in &t.0 {
            match s {
                Segment::Text(text) => out.push_str(text),
                Segment::Input(i) => {
                    out.push_str(&self.r.entry(&self.claim.inputs[*i].1)?.value.to_string())
                }
                Segment::Scores => {
                    let list: Vec<String> = self.scores.iter().map(|s| s.to_string()).collect();
                    out.push_str(&list.join(", "));
                }
                Segment::Number(e, format) => {
                    let x = self.eval(e)?.unwrap_or(f64::NAN);
                    out.push_str(&match *format {
                        Format::Shortest => format!("{x}"),
                        Format::Fixed(d) => format!("{x:.d$}"),
                        Format::Approx(d) => format_number(x, d),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// A recomputed number, or `undefined`.
fn number_or_undefined(x: Option<f64>) -> Value {
    x.map_or_else(|| Value::Text("undefined".into()), Value::Number)
}

/// The smallest and largest of `xs` as a range (`undefined` when a value
/// is missing).
fn span(xs: &[Option<f64>]) -> Value {
    let vals: Option<Vec<f64>> = xs.iter().copied().collect();
    match vals {
        Some(v) if !v.is_empty() => Value::Range {
            low: v.iter().copied().fold(f64::INFINITY, f64::min),
            high: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        },
        _ => Value::Text("undefined".into()),
    }
}

/// Per-domain DSI and GG of one model's scores, each domain in turn taken
/// as in-domain against the mean of the others.
fn per_domain(scores: &[f64]) -> (Vec<Option<f64>>, Vec<Option<f64>>) {
    let n = scores.len();
    let total: f64 = scores.iter().sum();
    let dsis = (0..n).map(|d| dsi(scores, d)).collect();
    let ggs = (0..n)
        .map(|d| generalization_gap(scores[d], (total - scores[d]) / (n - 1) as f64))
        .collect();
    (dsis, ggs)
}

/// Recomputes every derived number of the paper from its own inputs, as
/// listed in `reports/paper/claims.toml`.
pub fn audit(r: &Reported) -> Result<Audit, ReportedError> {
    audit_claims(r, &Claims::embedded())
}

/// Checks `claims` against the reported numbers, in the claims' order.
pub fn audit_claims(r: &Reported, claims: &Claims) -> Result<Audit, ReportedError> {
    let mut audit = Audit {
        findings: Vec::new(),
        not_recomputable: Vec::new(),
    };
    for claim in claims.claims() {
        let e = r.entry(&claim.key)?;
        if let Check::Unverifiable { reason } = &claim.check {
            audit.not_recomputable.push(NotRecomputable {
                key: claim.key.clone(),
                reported: e.value.clone(),
                source: e.source.clone(),
                reason: reason.clone(),
            });
            continue;
        }
        let scope = Scope::new(r, claim)?;
        let agreement = |v: &Value| {
            if agrees(&e.value, v) {
                Status::Ok
            } else {
                Status::Mismatch
            }
        };
        let (recomputed, status) = match &claim.check {
            Check::Formula(x) => {
                let v = number_or_undefined(scope.eval(x)?);
                let s = agreement(&v);
                (v, s)
            }
            Check::Same { of } => {
                let v = Value::Number(r.number(of)?);
                let s = agreement(&v);
                (v, s)
            }
            Check::Range { low, high } => {
                let v = match (scope.eval(low)?, scope.eval(high)?) {
                    (Some(low), Some(high)) => Value::Range { low, high },
                    _ => Value::Text("undefined".into()),
                };
                let s = agreement(&v);
                (v, s)
            }
            Check::PerDomain { metric, .. } => {
                let (dsis, ggs) = per_domain(&scope.scores);
                let v = span(match metric {
                    Metric::Dsi => &dsis,
                    Metric::Gg => &ggs,
                });
                let s = agreement(&v);
                (v, s)
            }
            Check::Below(x) => {
                let bound = r.number(&claim.key)?;
                match scope.eval(x)? {
                    Some(v) if v < bound => (Value::Number(v), Status::Ok),
                    v => (number_or_undefined(v), Status::Mismatch),
                }
            }
            Check::Unverifiable { .. } => unreachable!("handled above"),
        };
        let item = match (&claim.item, &claim.check) {
            (Some(t), _) => scope.render(t)?,
            (None, Check::Same { of }) => format!("same quantity as `{of}` ({recomputed})"),
            (None, _) => String::new(),
        };
        let note = match (&claim.mismatch_note, status) {
            (Some(t), Status::Mismatch) => scope.render(t)?,
            _ => scope.render(&claim.note)?,
        };
        audit.findings.push(Finding {
            key: claim.key.clone(),
            item,
            source: e.source.clone(),
            unit: e.unit.clone(),
            reported: e.value.clone(),
            recomputed,
            status,
            note,
        });
    }
    Ok(audit)
}

/// The content of `audit.md` for the reported numbers.
pub fn audit_markdown(r: &Reported) -> Result<String, ReportedError> {
    Ok(audit(r)?.to_markdown())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_follows_printed_precision() {
        let n = Value::Number;
        assert!(agrees(&n(0.5789), &n(0.578947)));
        assert!(!agrees(&n(0.5789), &n(0.526316)));
        assert!(agrees(&n(82.0), &n(82.4)));
        assert!(!agrees(&n(82.4), &n(82.0)));
        assert!(agrees(&n(2176.0), &n(2176.0)));
        assert!(!agrees(&n(1.0), &Value::Text("undefined".into())));
        let r = |low, high| Value::Range { low, high };
        assert!(agrees(&r(2.6, 2.9), &r(2.6, 2.9)));
        assert!(!agrees(&r(1.5, 2.1), &r(0.98, 1.03)));
        assert!(agrees(&n(0.10), &r(0.05, 0.2)));
        assert!(!agrees(&n(0.10), &r(-0.02, 0.03)));
        assert!(agrees(&r(30.0, 45.0), &n(40.0)));
    }

    #[test]
    fn numbers_format_with_four_significant_digits() {
        assert_eq!(format_number(0.526315789, 4), "0.5263");
        assert_eq!(format_number(5.25, 0), "5.25");
        assert_eq!(format_number(21e6, 0), "21000000");
        assert_eq!(format_number(233.890, 1), "233.9");
        assert_eq!(format_number(0.0575575, 0), "0.05756");
        assert_eq!(format_number(0.5789473684, 9), "0.578947368");
        assert_eq!(format_number(3.0, 1), "3.0");
        assert_eq!(format_number(0.0, 0), "0");
        assert_eq!(
            format_like(
                &Value::Range {
                    low: 0.98343,
                    high: 1.02507
                },
                &Value::Range {
                    low: 1.5,
                    high: 2.1
                }
            ),
            "0.9834 to 1.025"
        );
    }
}
