//! Audit of the paper's own arithmetic: every number it derives from other
//! numbers it prints is recomputed from those inputs (as transcribed in
//! `reported.toml`) and compared with the printed value.
//!
//! A printed number agrees when it lies within half a unit of its last
//! printed digit of the recomputed value (`0.5789` within 0.00005, `82`
//! within 0.5). A printed range agrees when both ends do; a printed number
//! checked against a recomputed range agrees when it lies inside it.
//! Claims the paper gives no inputs for are listed separately as not
//! recomputable.

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

/// Gathers findings while reading inputs from the reported numbers.
struct Ctx<'a> {
    r: &'a Reported,
    findings: Vec<Finding>,
    not_recomputable: Vec<NotRecomputable>,
}

impl Ctx<'_> {
    fn n(&self, key: &str) -> Result<f64, ReportedError> {
        self.r.number(key)
    }

    /// Records a finding for `key` with the status `agrees` gives.
    fn check(
        &mut self,
        key: &str,
        item: impl Into<String>,
        recomputed: Value,
        note: impl Into<String>,
    ) -> Result<Status, ReportedError> {
        let e = self.r.entry(key)?;
        let status = if agrees(&e.value, &recomputed) {
            Status::Ok
        } else {
            Status::Mismatch
        };
        self.findings.push(Finding {
            key: key.to_owned(),
            item: item.into(),
            source: e.source.clone(),
            unit: e.unit.clone(),
            reported: e.value.clone(),
            recomputed,
            status,
            note: note.into(),
        });
        Ok(status)
    }

    /// [`Ctx::check`] of a single number; `None` (undefined) never agrees.
    fn num(
        &mut self,
        key: &str,
        item: impl Into<String>,
        recomputed: Option<f64>,
        note: impl Into<String>,
    ) -> Result<Status, ReportedError> {
        let v = recomputed.map_or_else(|| Value::Text("undefined".into()), Value::Number);
        self.check(key, item, v, note)
    }

    /// An upper bound: `key`'s number must exceed `value`.
    fn below(
        &mut self,
        key: &str,
        item: &str,
        value: f64,
        note: &str,
    ) -> Result<Status, ReportedError> {
        let e = self.r.entry(key)?;
        let bound = self.r.number(key)?;
        let status = if value < bound {
            Status::Ok
        } else {
            Status::Mismatch
        };
        self.findings.push(Finding {
            key: key.to_owned(),
            item: item.to_owned(),
            source: e.source.clone(),
            unit: e.unit.clone(),
            reported: e.value.clone(),
            recomputed: Value::Number(value),
            status,
            note: note.to_owned(),
        });
        Ok(status)
    }

    /// A number printed twice: `key` against the entry `other`.
    fn same(&mut self, key: &str, other: &str, note: &str) -> Result<Status, ReportedError> {
        let v = self.n(other)?;
        let item = format!("same quantity as `{other}` ({v})");
        self.num(key, item, Some(v), note)
    }

    /// A claim with no inputs.
    fn unverifiable(&mut self, key: &str, reason: &str) -> Result<(), ReportedError> {
        let e = self.r.entry(key)?;
        self.not_recomputable.push(NotRecomputable {
            key: key.to_owned(),
            reported: e.value.clone(),
            source: e.source.clone(),
            reason: reason.to_owned(),
        });
        Ok(())
    }
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

/// Table 4's domain rows.
const TABLE4_DOMAINS: [&str; 5] = ["healthcare", "legal", "finance", "stem", "general"];

/// Recomputes every derived number of the paper from its own inputs.
pub fn audit(r: &Reported) -> Result<Audit, ReportedError> {
    let mut c = Ctx {
        r,
        findings: Vec::new(),
        not_recomputable: Vec::new(),
    };
    table1(&mut c)?;
    case_study_memory(&mut c)?;
    table2(&mut c)?;
    metrics_examples(&mut c)?;
    gem_architecture(&mut c)?;
    results(&mut c)?;
    text_claims(&mut c)?;
    unverifiable(&mut c)?;
    Ok(Audit {
        findings: c.findings,
        not_recomputable: c.not_recomputable,
    })
}

/// The content of `audit.md` for the reported numbers.
pub fn audit_markdown(r: &Reported) -> Result<String, ReportedError> {
    Ok(audit(r)?.to_markdown())
}

/// Table 1: energy = power x latency, the changes and their percentages,
/// and the FLOPs formula.
fn table1(c: &mut Ctx) -> Result<(), ReportedError> {
    for side in ["in_domain", "out_of_domain"] {
        let p = c.n(&format!("table1.power.{side}"))?;
        let ms = c.n(&format!("table1.latency.{side}"))?;
        c.num(
            &format!("table1.energy.{side}"),
            format!(
                "Table 1 energy per token ({side}) = power x latency = {p} W x {} s",
                ms / 1000.0
            ),
            Some(p * ms / 1000.0),
            "",
        )?;
    }
    for row in ["f1", "latency", "perplexity", "power", "energy", "flops"] {
        let a = c.n(&format!("table1.{row}.in_domain"))?;
        let b = c.n(&format!("table1.{row}.out_of_domain"))?;
        c.num(
            &format!("table1.{row}.change"),
            format!("Table 1 {row}: absolute change = out-of-domain - in-domain = {b} - {a}"),
            Some(b - a),
            "",
        )?;
        c.num(
            &format!("table1.{row}.relative_pct"),
            format!("Table 1 {row}: relative change = ({b} - {a}) / {a} x 100"),
            Some((b - a) / a * 100.0),
            format!("base: the in-domain value {a}"),
        )?;
    }
    let layers = c.n("case_study.model.layers")?;
    let hidden = c.n("case_study.model.hidden")?;
    let params = c.n("case_study.model.params_m")? * 1e6;
    for side in ["in_domain", "out_of_domain"] {
        c.num(
            &format!("table1.flops.{side}"),
            format!("Table 1 FLOPs per token ({side}) by the paper's formula layers x hidden^2 x 2 = {layers} x {hidden}^2 x 2"),
            Some(layers * hidden * hidden * 2.0),
            "arithmetic of the formula only; see the check against 2 x parameters",
        )?;
    }
    let per_layer = 12.0 * hidden * hidden;
    c.num(
        "table1.flops.in_domain",
        format!("Table 1 FLOPs per token vs 2 FLOPs per parameter: 2 x {} M", params / 1e6),
        Some(2.0 * params),
        format!(
            "a dense decoder does one multiply-add per weight per token. The formula counts one h x h \
             matrix per layer; a standard transformer layer has 12 h^2 weights (4 h^2 attention, 8 h^2 MLP), \
             so its {layers} layers alone cost 2 x {layers} x 12 x {hidden}^2 = {}; the other {} M \
             parameters are embeddings, whose output projection over the vocabulary costs 2 FLOPs per weight too",
            2.0 * layers * per_layer,
            format_number((params - layers * per_layer) / 1e6, 2)
        ),
    )?;
    Ok(())
}

/// Section 1.2's memory arithmetic for the 10.5 M-parameter chatbot.
fn case_study_memory(c: &mut Ctx) -> Result<(), ReportedError> {
    let params = c.n("case_study.model.params_m")? * 1e6;
    let fp32 = c.n("case_study.quant.fp32_bytes")?;
    let int4 = c.n("case_study.quant.int4_bytes")?;
    let bits = c.n("case_study.model.weight_bits")?;
    c.num(
        "case_study.quant.int4_bytes",
        format!("bytes per {bits}-bit weight = {bits} / 8"),
        Some(bits / 8.0),
        "",
    )?;
    c.num(
        "case_study.quant.compression_ratio",
        format!("compression ratio = {fp32} B / {int4} B"),
        Some(fp32 / int4),
        "",
    )?;
    let fp32_mb = params * fp32 / 1e6;
    let int4_mb = params * int4 / 1e6;
    c.num(
        "case_study.quant.savings_from_mb",
        format!("32-bit weight memory = {} M x {fp32} B", params / 1e6),
        Some(fp32_mb),
        format!(
            "the formula multiplies the 8:1 ratio into the 32-bit size instead of dividing by it: \
             the saving is {fp32_mb} MB -> {int4_mb} MB"
        ),
    )?;
    c.num(
        "case_study.quant.savings_to_mb",
        format!("4-bit weight memory = {} M x {int4} B", params / 1e6),
        Some(int4_mb),
        format!("{fp32_mb} MB is the 32-bit size, not the 4-bit one"),
    )?;
    let total = c.n("case_study.model.memory_mb")?;
    c.num(
        "case_study.model.memory_mb",
        format!("memory of the 4-bit model = {} M x {int4} B", params / 1e6),
        Some(int4_mb),
        format!(
            "the paper attributes the other {} MB ({:.0} % of {total} MB) to overhead such as \
             embeddings and buffers, but the embeddings are among the 10.5 M parameters already; \
             nothing in the paper accounts for it",
            format_number(total - int4_mb, 2),
            (total - int4_mb) / total * 100.0
        ),
    )?;
    Ok(())
}

/// Table 2: GG, CDTR and DSI of each row from the table's own columns.
fn table2(c: &mut Ctx) -> Result<(), ReportedError> {
    // The Section 1.3 score that reproduces the printed CDTR, where given.
    let rows = [
        (
            "healthcare",
            "Healthcare Chatbot",
            Some("metrics_examples.healthcare.general"),
        ),
        (
            "finance",
            "Finance Model",
            Some("metrics_examples.finance.legal"),
        ),
        ("legal", "Legal Model", None),
    ];
    for (row, name, text_score) in rows {
        let k = |col: &str| format!("table2.{row}.{col}");
        let inn = c.n(&k("in_domain"))?;
        let out = c.n(&k("out_of_domain_avg"))?;
        let target = c.r.text(&k("cdtr_target"))?.to_owned();

        let gg = generalization_gap(inn, out);
        let printed = c.n(&k("gg"))?;
        let note = if agrees(
            &Value::Number(printed),
            &Value::Number(gg.unwrap_or(f64::NAN)),
        ) {
            String::new()
        } else {
            format!(
                "the printed {printed} implies an out-of-domain score of {} = {inn} x (1 - {printed}), \
                 not the average {out} printed beside it; GG's definition uses the mean over the \
                 out-of-domain tasks",
                format_number(inn * (1.0 - printed), 4)
            )
        };
        c.num(
            &k("gg"),
            format!("Table 2 {name}: GG = (in - out) / in = ({inn} - {out}) / {inn}"),
            gg,
            note,
        )?;

        let cdtr = cdtr_matrix(&[inn, out])[0][1];
        let printed = c.n(&k("cdtr"))?;
        let note = if agrees(
            &Value::Number(printed),
            &Value::Number(cdtr.unwrap_or(f64::NAN)),
        ) {
            String::new()
        } else {
            let mut s = format!(
                "the table shows no separate {target} score, only the out-of-domain average; \
                 {printed} needs a {target} score of {}",
                format_number(printed * inn, 4)
            );
            if let Some(key) = text_score {
                let v = c.n(key)?;
                s.push_str(&format!(
                    ", which Section 1.3 states ({v} / {inn} = {}): the cell follows from an input \
                     the table omits",
                    format_number(v / inn, 4)
                ));
            }
            s
        };
        c.num(
            &k("cdtr"),
            format!(
                "Table 2 {name}: CDTR ({target}) = target / source from the table's columns = {out} / {inn}"
            ),
            cdtr,
            note,
        )?;

        c.num(
            &k("dsi"),
            format!("Table 2 {name}: DSI = in / mean out-of-domain = {inn} / {out}"),
            dsi(&[inn, out], 0),
            "",
        )?;
    }
    Ok(())
}

/// Section 1.3's worked examples.
fn metrics_examples(c: &mut Ctx) -> Result<(), ReportedError> {
    let h_in = c.n("metrics_examples.healthcare.in_domain")?;
    let h_gen = c.n("metrics_examples.healthcare.general")?;
    let ood = [
        c.n("metrics_examples.healthcare.ood_a")?,
        c.n("metrics_examples.healthcare.ood_b")?,
        c.n("metrics_examples.healthcare.ood_c")?,
    ];
    let mean = ood.iter().sum::<f64>() / ood.len() as f64;
    c.num(
        "metrics_examples.healthcare.ood_mean",
        format!("({} + {} + {}) / 3", ood[0], ood[1], ood[2]),
        Some(mean),
        "",
    )?;
    let gg = generalization_gap(h_in, h_gen);
    c.num(
        "metrics_examples.healthcare.gg",
        format!("healthcare GG example ({h_in} - {h_gen}) / {h_in}"),
        gg,
        format!(
            "arithmetic right, but it takes the general score alone as out-of-domain; with the mean \
             {} of the same model's three out-of-domain scores (DSI example) GG is {}",
            format_number(mean, 2),
            format_number(generalization_gap(h_in, mean).unwrap_or(f64::NAN), 4)
        ),
    )?;
    c.num(
        "metrics_examples.healthcare.gg_pct",
        "healthcare GG as a percentage",
        gg.map(|g| g * 100.0),
        "",
    )?;
    let cdtr = cdtr_matrix(&[h_in, h_gen])[0][1];
    c.num(
        "metrics_examples.healthcare.cdtr",
        format!("healthcare -> general CDTR = {h_gen} / {h_in}"),
        cdtr,
        "",
    )?;
    c.num(
        "metrics_examples.healthcare.cdtr_pct",
        "healthcare CDTR as a percentage",
        cdtr.map(|x| x * 100.0),
        "",
    )?;
    let mut scores = vec![h_in];
    scores.extend(ood);
    c.num(
        "metrics_examples.healthcare.dsi",
        format!(
            "healthcare DSI = {h_in} / mean({}, {}, {})",
            ood[0], ood[1], ood[2]
        ),
        dsi(&scores, 0),
        "",
    )?;

    let l_in = c.n("metrics_examples.legal.in_domain")?;
    let l_out = c.n("metrics_examples.legal.out_of_domain")?;
    let gg = generalization_gap(l_in, l_out);
    c.num(
        "metrics_examples.legal.gg",
        format!("legal GG example ({l_in} - {l_out}) / {l_in}"),
        gg,
        "",
    )?;
    c.num(
        "metrics_examples.legal.gg_pct",
        "legal GG as a percentage",
        gg.map(|g| g * 100.0),
        "",
    )?;

    let f_in = c.n("metrics_examples.finance.in_domain")?;
    let f_legal = c.n("metrics_examples.finance.legal")?;
    let cdtr = cdtr_matrix(&[f_in, f_legal])[0][1];
    c.num(
        "metrics_examples.finance.cdtr",
        format!("finance -> legal CDTR = {f_legal} / {f_in}"),
        cdtr,
        "",
    )?;
    c.num(
        "metrics_examples.finance.retention_pct",
        "performance retained at CDTR 0.6667 = CDTR x 100",
        cdtr.map(|x| x * 100.0),
        "a CDTR of 0.6667 retains 66.67 % of the source-domain performance; 33.33 % is the loss",
    )?;
    let f_mean = c.n("metrics_examples.finance.ood_mean")?;
    c.num(
        "metrics_examples.finance.dsi",
        format!("finance DSI = {f_in} / {f_mean}"),
        dsi(&[f_in, f_mean], 0),
        "",
    )?;
    Ok(())
}

/// Sections 3.2 and 5: router cost, SCAR's operation counts, hybrid
/// quantization memory, parameter and FLOP totals.
fn gem_architecture(c: &mut Ctx) -> Result<(), ReportedError> {
    // Router FLOPs.
    let rl = c.n("gem.router.layers")?;
    let rh = c.n("gem.router.hidden")?;
    let rp = c.n("gem.router.params_m")?;
    let router_layer_weights = rl * 12.0 * rh * rh;
    c.num(
        "gem.router.flops_m",
        format!(
            "router FLOPs per token by the paper's formula {rl} x {rh}^2 x 12 x 2, against 2 x its {rp} M parameters"
        ),
        Some(2.0 * router_layer_weights / 1e6),
        format!(
            "the formula is 2 FLOPs per weight of {rl} standard layers of 12 h^2 weights each \
             ({} M; the 12 is the per-layer 12 h^2, not the 12 heads, which do not change the count). \
             2 x all {rp} M parameters = {} M would also count the embeddings, which are looked up, not \
             multiplied, so 9.4 M is consistent if {} M of the {rp} M are embeddings",
            format_number(router_layer_weights / 1e6, 2),
            format_number(2.0 * rp, 1),
            format_number(rp - router_layer_weights / 1e6, 2)
        ),
    )?;

    // SCAR.
    let k = c.n("gem.scar.k")?;
    let n = c.n("gem.scar.n")?;
    let k8 = c.n("gem.scar.k_small")?;
    let full = n * n;
    let ops = k * n + n;
    let ops8 = k8 * n + n;
    c.num(
        "gem.scar.full_ops",
        format!("full attention scores = n^2 = {n}^2"),
        Some(full),
        "",
    )?;
    c.num(
        "gem.scar.ops",
        format!("SCAR operations by the paper's formula k.n + n = {k} x {n} + {n}"),
        Some(ops),
        "",
    )?;
    c.num(
        "gem.scar.reduction",
        format!("reduction = 1 - {ops} / {full}"),
        Some(1.0 - ops / full),
        "",
    )?;
    c.num(
        "gem.scar.reduction_pct",
        "reduction as a percentage",
        Some((1.0 - ops / full) * 100.0),
        "",
    )?;
    c.num(
        "gem.scar.k_small_ops",
        format!("SCAR operations for k = {k8}: {k8} x {n} + {n}"),
        Some(ops8),
        "",
    )?;
    c.num(
        "gem.scar.k_small_reduction",
        format!("further reduction from k = {k} to k = {k8} = 1 - {ops8} / {ops}"),
        Some(1.0 - ops8 / ops),
        "the paper's 'a further 47 %'",
    )?;
    c.num(
        "gem.scar.k_small_flops_drop_pct",
        format!("FLOP drop from k = {k} to k = {k8} = (1 - {ops8} / {ops}) x 100"),
        Some((1.0 - ops8 / ops) * 100.0),
        "the same paragraph computes the reduction as 0.4706",
    )?;
    c.num(
        "gem.scar.ops",
        format!("attention scores kept by the cluster mask, k = {k}, n = {n}, balanced clusters: n^2 / k"),
        Some(full / k),
        format!(
            "the mask M_ij = 1 iff tokens i and j share a cluster keeps sum |C|^2 scores: n^2 / k = {} \
             with clusters of n / k = {} tokens (up to n^2 = {full} when clustering is unbalanced). \
             k.n + n counts token-to-centroid distances plus one assignment per token, i.e. the \
             clustering step, not the attention",
            full / k,
            n / k
        ),
    )?;
    c.num(
        "gem.scar.k_small_ops",
        format!("attention scores kept by the cluster mask, k = {k8}: n^2 / k"),
        Some(full / k8),
        format!(
            "fewer clusters are larger clusters: the masked attention doubles from k = {k} to k = {k8} \
             ({} -> {}), the opposite of the claimed saving",
            full / k,
            full / k8
        ),
    )?;

    // Hybrid quantization memory.
    let groups = [
        ("domain", c.n("gem.quant.domain_bits")?),
        ("general", c.n("gem.quant.general_bits")?),
        ("router", c.n("gem.quant.router_bits")?),
    ];
    let mut weights_mb = 0.0;
    let mut params_sum = 0.0;
    let mut terms = Vec::new();
    for (g, bits) in groups {
        let bytes_key = format!("gem.quant.{g}_bytes");
        c.num(
            &bytes_key,
            format!("bytes per {g} weight at {bits} bits = {bits} / 8"),
            Some(bits / 8.0),
            "",
        )?;
        let p = c.n(&format!("gem.quant.{g}_params_m"))?;
        let b = c.n(&bytes_key)?;
        weights_mb += p * b;
        params_sum += p;
        terms.push(format!("{p} M x {b} B"));
    }
    c.num(
        "gem.quant.weights_mb",
        format!("hybrid-quantized weight memory = {}", terms.join(" + ")),
        Some(weights_mb),
        "",
    )?;
    let total_params = c.n("gem.total.params_m")?;
    c.num(
        "gem.total.params_m",
        "parameters of the three precision groups of Section 3.2.3 = 40 + 20 + 20 M",
        Some(params_sum),
        "",
    )?;
    let total_mb = c.n("gem.quant.total_mb")?;
    c.num(
        "gem.quant.total_mb",
        format!("memory of the {total_params} M hybrid-quantized weights vs the {total_mb} MB total"),
        Some(weights_mb),
        format!(
            "'55 MB + overhead = 1800 MB' leaves {} MB ({:.0} % of the total, {:.0}x the weights) to an \
             overhead the paper never breaks down; {total_mb} MB is {} bytes per parameter, more than \
             32-bit floats take",
            total_mb - weights_mb,
            (total_mb - weights_mb) / total_mb * 100.0,
            (total_mb - weights_mb) / weights_mb,
            format_number(total_mb / total_params, 1)
        ),
    )?;
    let router_bytes = c.n("gem.quant.router_bytes")?;
    c.num(
        "gem.quant.router_params_m",
        "parameters budgeted at the router's precision vs the router's size (Section 3.2.1)",
        Some(rp),
        format!(
            "the router has {rp} M parameters, {} MB at {router_bytes} B each",
            format_number(rp * router_bytes, 2)
        ),
    )?;
    let router_bits_elsewhere = c.n("gem.router.bits")?;
    c.num(
        "gem.quant.router_bits",
        "router bit width: Section 3.2.3 against Sections 3.1, 3.2.1 and Appendix A.2",
        Some(router_bits_elsewhere),
        "the router is a '4-bit BERT' in Sections 3.1, 3.2.1 and A.2 but 6-bit in Sections 3.2.3 and 5.1",
    )?;

    // Parameter total from the architecture.
    let pl = c.n("gem.pathways.layers")?;
    let ph = c.n("gem.pathways.hidden")?;
    let pathways = c.n("gem.pathways.domains")? + c.n("gem.pathways.general")?;
    let per_pathway = pl * 12.0 * ph * ph / 1e6;
    c.num(
        "gem.total.params_m",
        format!(
            "router + {pathways} pathways ({} domains + general) x {pl} layers x 12 x {ph}^2 weights",
            pathways - 1.0
        ),
        Some(rp + pathways * per_pathway),
        format!(
            "a standard transformer layer of hidden size h has 12 h^2 weights (4 h^2 attention, 8 h^2 MLP \
             with a 4h inner size): {} M per layer, {} M per pathway, without embeddings; {total_params} M \
             holds the router and only {:.1} pathways",
            format_number(12.0 * ph * ph / 1e6, 2),
            format_number(per_pathway, 2),
            (total_params - rp) / per_pathway
        ),
    )?;

    // FLOPs per inference.
    let gflops = c.n("gem.total.gflops")?;
    let rpi = c.n("devices.rpi4.gflops")?;
    let latency = c.n("table5.full_gem.latency_ms")?;
    let per_token = 2.0 * total_params * 1e6;
    let routed = 2.0 * router_layer_weights + 2.0 * per_pathway * 1e6;
    c.num(
        "gem.total.gflops",
        format!("FLOPs per token of a dense {total_params} M-parameter model = 2 x {total_params} M, in GFLOPs"),
        Some(per_token / 1e9),
        format!(
            "{gflops} GFLOPs is {} tokens' worth, a count the paper never states; with routing one token \
             costs about {} MFLOPs (router + one pathway). If an inference is one token (latency is \
             reported per token), the Raspberry Pi 4's {rpi} GFLOP/s peak needs {:.0} ms for it, {:.1}x the \
             {latency} ms of Table 5",
            format_number(gflops * 1e9 / per_token, 1),
            (routed / 1e6).round(),
            gflops / rpi * 1000.0,
            gflops / rpi * 1000.0 / latency
        ),
    )?;
    let epochs = c.n("gem.training.epochs")?;
    c.num(
        "gem.training.epochs_s4_2",
        "GEM training epochs: Section 4.2 against Appendix A.2",
        Some(epochs),
        "Section 4.2 trains 'over 20 epochs', Appendix A.2 'for an average of 10 epochs'",
    )?;
    Ok(())
}

/// Tables 3-5 against each other and the per-domain metrics Table 4 implies.
fn results(c: &mut Ctx) -> Result<(), ReportedError> {
    let pairs = [
        ("table3.gem.f1_general", "table4.general.gem_f1", ""),
        ("table5.full_gem.f1", "table4.general.gem_f1", ""),
        ("claims.gem.cross_domain_f1", "table3.gem.f1_general", ""),
        ("table3.gem.latency_ms", "table5.full_gem.latency_ms", "Table 3 rounds to whole ms"),
        ("table5.full_gem.latency_ms", "table4.general.gem_latency_ms", ""),
        ("table5.full_gem.power_w", "table4.general.power_w", ""),
        ("table3.gem.memory_mb", "table5.full_gem.memory_mb", ""),
        ("table3.gem.params_m", "gem.total.params_m", ""),
        ("figure1.gem_2025.params_m", "gem.total.params_m", ""),
        ("figure1.gem_2025.memory_mb", "table3.gem.memory_mb", ""),
        ("figure1.mobilebert_2020.params_m", "table3.mobilebert.params_m", ""),
        ("figure1.mobilebert_2020.memory_mb", "table3.mobilebert.memory_mb", ""),
        ("figure1.tinyllama_2023.params_m", "table3.tinyllama.params_m", ""),
        ("figure1.tinyllama_2023.memory_mb", "table3.tinyllama.memory_mb", ""),
        ("table3.mobilebert.f1_general", "table4.general.mobilebert_f1", ""),
        (
            "table3.mobilebert.latency_ms",
            "table4.general.mobilebert_latency_ms",
            "Table 3 and Sections 5.4 and 6 set GEM's 82 ms against MobileBERT's 45 ms; Table 4's \
             general row (Raspberry Pi 4, where GEM takes 82.4 ms) gives MobileBERT 60 ms, and 45 ms \
             is its healthcare row",
        ),
        ("claims.gem.gg", "table5.full_gem.gg", ""),
        ("claims.deployment.healthcare_f1", "table4.healthcare.gem_f1", ""),
        ("claims.deployment.general_f1", "table4.general.gem_f1", ""),
        ("claims.deployment.mobilebert_f1", "table4.healthcare.mobilebert_f1", ""),
        ("claims.deployment.token_latency_ms", "table5.full_gem.latency_ms", ""),
        ("claims.deployment.tinyllama_latency_ms", "table3.tinyllama.latency_ms", ""),
        ("claims.limits.gem_latency_ms", "table5.full_gem.latency_ms", ""),
        ("claims.limits.mobilebert_latency_ms", "table3.mobilebert.latency_ms", ""),
        ("related.tinyllama.latency_ms", "table3.tinyllama.latency_ms", ""),
    ];
    for (key, other, note) in pairs {
        c.same(key, other, note)?;
    }
    let gflops = c.n("gem.total.gflops")?;
    c.num(
        "figure1.gem_2025.flops",
        format!("same quantity as `gem.total.gflops` ({gflops} GFLOPs)"),
        Some(gflops * 1e9),
        "",
    )?;

    // Per-domain DSI / GG of GEM and MobileBERT from Table 4.
    for (model, col) in [("gem", "gem_f1"), ("mobilebert", "mobilebert_f1")] {
        let scores: Vec<f64> = TABLE4_DOMAINS
            .iter()
            .map(|d| c.n(&format!("table4.{d}.{col}")))
            .collect::<Result<_, _>>()?;
        let (dsis, ggs) = per_domain(&scores);
        let list = scores
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let name = if model == "gem" { "GEM" } else { "MobileBERT" };
        let basis = format!(
            "Table 4 is the only per-domain F1 the paper gives for {name} ({list}); each domain is taken \
             in turn as in-domain against the mean of the other four (platforms differ per row, F1 does not \
             depend on them)"
        );
        c.check(
            &format!("claims.{model}.dsi"),
            format!("{name} DSI per domain from Table 4's {name} F1"),
            span(&dsis),
            format!("{basis}; the paper points to Table 2 / Figure 5 instead"),
        )?;
        c.check(
            &format!("claims.{model}.gg"),
            format!("{name} GG per domain from Table 4's {name} F1"),
            span(&ggs),
            basis,
        )?;
    }

    // Upper bounds: sub-100 ms, the Raspberry Pi's thermal limit.
    let latencies: Vec<f64> = TABLE4_DOMAINS
        .iter()
        .map(|d| c.n(&format!("table4.{d}.gem_latency_ms")))
        .chain(
            [
                "full_gem",
                "no_scar",
                "no_quantization",
                "no_knowledge_preservation",
            ]
            .iter()
            .map(|a| c.n(&format!("table5.{a}.latency_ms"))),
        )
        .collect::<Result<_, _>>()?;
    let worst = latencies.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    c.below(
        "claims.gem.latency_bound_ms",
        "slowest GEM latency of Tables 4 and 5, against the claimed upper bound",
        worst,
        "",
    )?;
    Ok(())
}

/// Numbers the text derives: Sections 2.1, 5.1-5.4.
fn text_claims(c: &mut Ctx) -> Result<(), ReportedError> {
    // Section 2.1.
    let qp = c.n("related.quantization.example_params_m")?;
    let wb = c.n("related.quantization.weight_bits")?;
    c.num(
        "related.quantization.example_memory_mb",
        format!("{qp} M parameters x {wb} / 8 bytes"),
        Some(qp * wb / 8.0),
        "",
    )?;
    c.num(
        "related.quantization.memory_reduction_pct",
        format!("memory saved going from 32-bit to {wb}-bit = (1 - {wb} / 32) x 100"),
        Some((1.0 - wb / 32.0) * 100.0),
        "75 % is the saving of 32-bit -> 8-bit",
    )?;

    // Section 5.1.
    let lo = c.n("gem.quant.domain_bits")?;
    let hi = c.n("gem.quant.general_bits")?;
    let ratio = (lo / hi).powi(2);
    c.num(
        "claims.hardware.alu_energy_ratio",
        format!("ALU energy ratio ({lo} / {hi})^2"),
        Some(ratio),
        "",
    )?;
    c.num(
        "claims.hardware.alu_energy_cut_pct",
        "ALU energy cut = (1 - ratio) x 100",
        Some((1.0 - ratio) * 100.0),
        "",
    )?;

    // Section 5.2: memory shares on the Raspberry Pi 4 (GB taken as 1000 MB,
    // the paper's own convention: 1 GB = 1000 MB in Table 3).
    let ram_mb = c.n("devices.rpi4.ram_gb")? * 1000.0;
    let gem_mb = c.n("gem.quant.total_mb")?;
    let mb_mb = c.n("table3.mobilebert.memory_mb")?;
    let sys = c.n("claims.memory.system_overhead_mb")?;
    c.num(
        "claims.memory.rpi_share_pct",
        format!("GEM's share of the Raspberry Pi 4's RAM = {gem_mb} / {ram_mb} x 100"),
        Some(gem_mb / ram_mb * 100.0),
        "4 GB taken as 4000 MB (the paper's decimal convention); of 4096 MiB it would be 43.9 %",
    )?;
    c.num(
        "claims.memory.rpi_free_gb",
        format!("RAM left = ({ram_mb} - {sys} - {gem_mb}) / 1000"),
        Some((ram_mb - sys - gem_mb) / 1000.0),
        "",
    )?;
    c.num(
        "claims.memory.mobilebert_share_pct",
        format!("MobileBERT's share = {mb_mb} / {ram_mb} x 100"),
        Some(mb_mb / ram_mb * 100.0),
        "",
    )?;

    // Section 5.3: one 10-token query.
    let tokens = c.n("claims.deployment.tokens_per_query")?;
    let tok_ms = c.n("claims.deployment.token_latency_ms")?;
    let tok_j = c.n("claims.deployment.token_energy_j")?;
    c.num(
        "claims.deployment.query_latency_ms",
        format!("{tokens} tokens x {tok_ms} ms"),
        Some(tokens * tok_ms),
        "",
    )?;
    c.num(
        "claims.deployment.query_energy_j",
        format!("{tokens} tokens x {tok_j} J"),
        Some(tokens * tok_j),
        "",
    )?;
    let p = c.n("table5.full_gem.power_w")?;
    let ms = c.n("table5.full_gem.latency_ms")?;
    let hp = c.n("table4.healthcare.power_w")?;
    let hms = c.n("table4.healthcare.gem_latency_ms")?;
    c.num(
        "claims.deployment.token_energy_j",
        format!("energy per token = power x latency of full GEM (Tables 4 general and 5) = {p} W x {} s", ms / 1000.0),
        Some(p * ms / 1000.0),
        format!(
            "consistent; the Section 5.3 scenario is the healthcare deployment, whose Table 4 row gives \
             {hp} W x {} s = {} J",
            hms / 1000.0,
            format_number(hp * hms / 1000.0, 4)
        ),
    )?;
    let mb_ms = c.n("table4.healthcare.mobilebert_latency_ms")?;
    c.num(
        "claims.deployment.mobilebert_query_latency_ms",
        format!("{tokens} tokens x MobileBERT's {mb_ms} ms (Table 4, healthcare)"),
        Some(tokens * mb_ms),
        "",
    )?;
    let query_j = c.n("claims.deployment.query_energy_j")?;
    let mah = c.n("claims.deployment.battery_mah")?;
    const LI_ION_VOLTS: f64 = 3.7;
    let battery_j = mah / 1000.0 * LI_ION_VOLTS * 3600.0;
    c.num(
        "claims.deployment.battery_share_pct",
        format!("{query_j} J as a share of a {mah} mAh battery at {LI_ION_VOLTS} V nominal"),
        Some(query_j / battery_j * 100.0),
        format!(
            "the battery stores {battery_j:.0} J; 1 % of it is {:.0} J, about {:.0} queries. The voltage is \
             an assumption; any Li-ion cell voltage (3.0-4.2 V) gives 0.05-0.07 %",
            battery_j / 100.0,
            battery_j / 100.0 / query_j
        ),
    )?;

    // Section 5.4.
    let flops = c.n("gem.router.flops_m")?;
    let rp = c.n("gem.router.params_m")?;
    let pruned = c.n("claims.limits.pruned_router_params_m")?;
    let new_flops = flops * pruned / rp;
    c.num(
        "claims.limits.pruned_router_flops_m",
        format!("pruned router FLOPs = {flops} x ({pruned} / {rp})"),
        Some(new_flops),
        "",
    )?;
    c.num(
        "claims.limits.pruned_router_flops_cut_pct",
        format!("FLOPs cut = (1 - {pruned} / {rp}) x 100"),
        Some((1.0 - pruned / rp) * 100.0),
        "",
    )?;
    let rpi = c.n("devices.rpi4.gflops")?;
    let saved_ms = (flops - new_flops) * 1e6 / (rpi * 1e9) * 1000.0;
    let target = c.n("claims.limits.pruned_router_latency_ms")?;
    let needed_rate = (flops - new_flops) * 1e6 / ((ms - target) / 1000.0);
    c.num(
        "claims.limits.pruned_router_latency_ms",
        format!(
            "latency after pruning the router = {ms} ms - the time of the {} MFLOPs removed at the \
             Raspberry Pi 4's {rpi} GFLOP/s peak",
            format_number(flops - new_flops, 2)
        ),
        Some(ms - saved_ms),
        format!(
            "the removed FLOPs take {saved_ms:.2} ms at peak; saving {:.1} ms would need the router to run \
             at {:.0} MFLOP/s ({:.1} % of peak), at which its {flops} MFLOPs alone would take {:.0} ms of \
             the {ms} ms",
            ms - target,
            needed_rate / 1e6,
            needed_rate / (rpi * 1e9) * 100.0,
            flops * 1e6 / needed_rate * 1000.0
        ),
    )?;
    let ram = c.n("devices.iphone13.ram_gb")?;
    c.num(
        "claims.limits.iphone_free_gb",
        format!(
            "RAM left on the iPhone 13 = {ram} GB - {} GB",
            gem_mb / 1000.0
        ),
        Some(ram - gem_mb / 1000.0),
        "",
    )?;
    let powers: Vec<f64> = TABLE4_DOMAINS
        .iter()
        .map(|d| c.n(&format!("table4.{d}.power_w")))
        .collect::<Result<_, _>>()?;
    let pmin = powers.iter().copied().fold(f64::INFINITY, f64::min);
    let pmax = powers.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    c.check(
        "claims.limits.power_w",
        "range of Table 4's power column",
        Value::Range {
            low: pmin,
            high: pmax,
        },
        "",
    )?;
    let mbp = c.n("claims.limits.mobilebert_power_w")?;
    c.check(
        "claims.limits.power_increase_pct",
        format!("increase over MobileBERT's {mbp} W = ({pmin}..{pmax} / {mbp} - 1) x 100"),
        Value::Range {
            low: (pmin / mbp - 1.0) * 100.0,
            high: (pmax / mbp - 1.0) * 100.0,
        },
        "",
    )?;
    let rpi_max = [
        "full_gem",
        "no_scar",
        "no_quantization",
        "no_knowledge_preservation",
    ]
    .iter()
    .map(|a| c.n(&format!("table5.{a}.power_w")))
    .collect::<Result<Vec<_>, _>>()?
    .into_iter()
    .fold(f64::NEG_INFINITY, f64::max);
    c.below(
        "devices.rpi4.thermal_w",
        "highest Raspberry Pi 4 power of Table 5, against the thermal limit",
        rpi_max,
        "",
    )?;
    Ok(())
}

/// Claims the paper gives no inputs for.
fn unverifiable(c: &mut Ctx) -> Result<(), ReportedError> {
    let list = [
        ("claims.gem.forgetting_reduction_pct", "no forgetting measurement or baseline score is given"),
        ("claims.gem.gpt4_lite_gain_pct", "'GPT-4 Lite' is never described or scored"),
        (
            "claims.tinyllama.gg",
            "the paper gives TinyLlama's general F1 (0.81, Table 3) and finance F1 (0.58, Section 5.3) \
             only, no in-/out-of-domain split",
        ),
        (
            "claims.gem.cdtr",
            "no GEM source/target scores are given; 0.67 equals Table 2's finance-model CDTR (0.6667) rounded",
        ),
        (
            "claims.tinyllama.cdtr",
            "no TinyLlama source/target scores are given; 0.42 equals Table 2's healthcare-chatbot CDTR \
             (0.4211) rounded",
        ),
        (
            "table5.no_scar.latency_ms",
            "ablation measurement. Removing SCAR makes GEM faster (78.6 vs 82.4 ms) and cheaper (2.5 vs \
             2.8 W), although SCAR is claimed to cut attention operations by 86.7 %",
        ),
        (
            "table5.no_quantization.memory_mb",
            "ablation measurement; the paper gives no unquantized weight size or overhead breakdown",
        ),
        ("claims.hardware.cache_latency_ms", "the share of latency spent on memory access is not given"),
        ("claims.hardware.pixel6_mixed_power_w", "no per-component power breakdown is given"),
        ("gem.scar.k_small_power_w", "no per-component power breakdown is given"),
        ("claims.limits.offload_active_mb", "no per-pathway memory figures are given"),
        (
            "benchmarks.total.count",
            "the text names 15 datasets (29 counting LexGLUE's 7 and XTREME's 9 tasks separately) and \
             never lists 47 benchmarks",
        ),
    ];
    for (key, reason) in list {
        c.unverifiable(key, reason)?;
    }
    Ok(())
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
