//! "Reported | measured | difference" tables rendered to Markdown, CSV and
//! LaTeX.
//!
//! Each row is one quantity: the label cells (one per [`Table::columns`]
//! entry), the paper's value and EdgeBench's. The difference is shown only
//! when both exist, and a quantity nobody measured reads "not measured":
//! the reported value is never printed in the measured column.

use super::reported::printed_decimals;

/// Text of a measured cell that has no measurement.
pub const NOT_MEASURED: &str = "not measured";
/// Text of a reported cell for a quantity the paper does not report.
pub const NOT_REPORTED: &str = "not reported";

/// One value cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell {
    /// A number the paper printed.
    Reported(f64),
    /// A number EdgeBench measured (or projected, when `estimated`).
    Measured {
        /// Point estimate.
        value: f64,
        /// 95 % confidence interval, when there is one.
        ci: Option<(f64, f64)>,
        /// Projected for a device rather than measured on it.
        estimated: bool,
    },
    /// Nobody measured it.
    NotMeasured,
}

impl Cell {
    /// A plain measurement without interval.
    pub fn measured(value: f64) -> Self {
        Cell::Measured {
            value,
            ci: None,
            estimated: false,
        }
    }

    /// The measured value, only for [`Cell::Measured`].
    pub fn measured_value(&self) -> Option<f64> {
        match *self {
            Cell::Measured { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The cell as text: a reported number as printed, a measurement with
    /// `decimals` decimals, its interval as `[low, high]` and an
    /// `(estimated)` mark, or "not measured".
    pub fn render(&self, decimals: usize) -> String {
        match *self {
            Cell::Reported(v) => format!("{v}"),
            Cell::Measured {
                value,
                ci,
                estimated,
            } => {
                let mut s = fixed(value, decimals);
                if let Some((lo, hi)) = ci {
                    s.push_str(&format!(
                        " [{}, {}]",
                        fixed(lo, decimals),
                        fixed(hi, decimals)
                    ));
                }
                if estimated {
                    s.push_str(" (estimated)");
                }
                s
            }
            Cell::NotMeasured => NOT_MEASURED.to_owned(),
        }
    }
}

/// `x` with `decimals` decimals, without a negative zero.
fn fixed(x: f64, decimals: usize) -> String {
    let s = format!("{x:.decimals$}");
    if s.starts_with('-') && s[1..].bytes().all(|b| b == b'0' || b == b'.') {
        s[1..].to_owned()
    } else {
        s
    }
}

/// A difference for CSV: 12 decimals with trailing zeros trimmed, which
/// drops the noise of subtracting two decimal floats (`15.27`, not
/// `15.27000000000001`).
fn csv_difference(x: f64) -> String {
    // `fixed` always prints a point, so trimming zeros stops at it.
    fixed(x, 12)
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_owned()
}

/// One quantity of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Label cells, one per [`Table::columns`] entry.
    pub labels: Vec<String>,
    /// The paper's value, if it reports one.
    pub reported: Option<f64>,
    /// EdgeBench's value: [`Cell::Measured`] or [`Cell::NotMeasured`]. A
    /// [`Cell::Reported`] here is treated as not measured.
    pub measured: Cell,
}

impl Row {
    /// A row from its labels, the paper's value and EdgeBench's.
    pub fn new(labels: &[&str], reported: Option<f64>, measured: Cell) -> Self {
        Row {
            labels: labels.iter().map(|s| (*s).to_owned()).collect(),
            reported,
            measured,
        }
    }

    /// Decimals for the measured value and the difference: one more than
    /// the paper printed (at most 6), or 3 when it reports nothing.
    pub fn decimals(&self) -> usize {
        self.reported
            .map_or(3, |r| (printed_decimals(r) + 1).min(6))
    }

    /// `measured - reported`, when both exist.
    pub fn difference(&self) -> Option<f64> {
        Some(self.measured.measured_value()? - self.reported?)
    }

    /// Rendered reported, measured and difference cells.
    fn value_cells(&self) -> [String; 3] {
        let d = self.decimals();
        let reported = self
            .reported
            .map_or_else(|| NOT_REPORTED.to_owned(), |r| Cell::Reported(r).render(d));
        let measured = match self.measured {
            Cell::Reported(_) => Cell::NotMeasured.render(d),
            m => m.render(d),
        };
        let difference = self.difference().map_or_else(String::new, |x| {
            let s = fixed(x, d);
            if s.starts_with('-') {
                s
            } else {
                format!("+{s}")
            }
        });
        [reported, measured, difference]
    }
}

/// A titled table of reported, measured and difference values.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Caption.
    pub title: String,
    /// Headers of the label columns (the value columns are fixed).
    pub columns: Vec<String>,
    /// The quantities, in display order.
    pub rows: Vec<Row>,
}

/// Headers of the three value columns.
const VALUE_COLUMNS: [&str; 3] = ["Reported", "Measured", "Difference"];

impl Table {
    /// An empty table with the given caption and label-column headers.
    pub fn new(title: &str, columns: &[&str]) -> Self {
        Table {
            title: title.to_owned(),
            columns: columns.iter().map(|s| (*s).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// Label cells of `row`, padded or cut to the number of label columns.
    fn labels<'a>(&self, row: &'a Row) -> impl Iterator<Item = &'a str> + 'a {
        let n = self.columns.len();
        row.labels
            .iter()
            .map(String::as_str)
            .chain(std::iter::repeat(""))
            .take(n)
    }

    /// GitHub-flavoured Markdown: the title in bold, then the table (`|`
    /// in cells escaped).
    pub fn to_markdown(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|");
        let header: Vec<String> = self
            .columns
            .iter()
            .map(|c| esc(c))
            .chain(VALUE_COLUMNS.iter().map(|c| (*c).to_owned()))
            .collect();
        let mut out = format!("**{}**\n\n| {} |\n|", esc(&self.title), header.join(" | "));
        out.push_str(&"---|".repeat(self.columns.len()));
        out.push_str(&"---:|".repeat(VALUE_COLUMNS.len()));
        out.push('\n');
        for row in &self.rows {
            let cells: Vec<String> = self
                .labels(row)
                .map(esc)
                .chain(row.value_cells().iter().map(|c| esc(c)))
                .collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out
    }

    /// CSV (RFC 4180 quoting) with machine-readable value columns:
    /// `reported, measured, ci_low, ci_high, estimated, difference`, the
    /// numbers at full precision (the difference to 12 decimals);
    /// `measured` reads "not measured" when nobody measured the quantity.
    pub fn to_csv(&self) -> String {
        fn quote(s: &str) -> String {
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_owned()
            }
        }
        let mut header: Vec<String> = self.columns.iter().map(|c| quote(c)).collect();
        header.extend(
            [
                "reported",
                "measured",
                "ci_low",
                "ci_high",
                "estimated",
                "difference",
            ]
            .map(str::to_owned),
        );
        let mut out = header.join(",");
        out.push('\n');
        for row in &self.rows {
            let mut cells: Vec<String> = self.labels(row).map(quote).collect();
            cells.push(row.reported.map_or_else(String::new, |r| r.to_string()));
            match row.measured {
                Cell::Measured {
                    value,
                    ci,
                    estimated,
                } => {
                    cells.push(value.to_string());
                    cells.push(ci.map_or_else(String::new, |c| c.0.to_string()));
                    cells.push(ci.map_or_else(String::new, |c| c.1.to_string()));
                    cells.push(estimated.to_string());
                }
                Cell::Reported(_) | Cell::NotMeasured => {
                    cells.push(NOT_MEASURED.to_owned());
                    cells.extend([String::new(), String::new(), String::new()]);
                }
            }
            cells.push(row.difference().map_or_else(String::new, csv_difference));
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }

    /// A LaTeX `table` float with a `tabular` (label columns left-aligned,
    /// value columns right-aligned) and the title as caption; LaTeX's
    /// special characters in text are escaped.
    pub fn to_latex(&self) -> String {
        let spec = format!(
            "{}{}",
            "l".repeat(self.columns.len()),
            "r".repeat(VALUE_COLUMNS.len())
        );
        let header: Vec<String> = self
            .columns
            .iter()
            .map(|c| latex_escape(c))
            .chain(VALUE_COLUMNS.iter().map(|c| (*c).to_owned()))
            .collect();
        let mut out = format!(
            "\\begin{{table}}[ht]\n\\centering\n\\caption{{{}}}\n\\begin{{tabular}}{{{spec}}}\n\\hline\n{} \\\\\n\\hline\n",
            latex_escape(&self.title),
            header.join(" & ")
        );
        for row in &self.rows {
            let cells: Vec<String> = self
                .labels(row)
                .map(latex_escape)
                .chain(row.value_cells().iter().map(|c| latex_escape(c)))
                .collect();
            out.push_str(&cells.join(" & "));
            out.push_str(" \\\\\n");
        }
        out.push_str("\\hline\n\\end{tabular}\n\\end{table}\n");
        out
    }
}

/// Escapes LaTeX's special characters (`% _ & # $ { } ~ ^ \ |`) for text
/// mode.
pub fn latex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' | '_' | '&' | '#' | '$' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '|' => out.push_str("\\textbar{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '\\' => out.push_str("\\textbackslash{}"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four rows covering every case: measured with CI, estimated, not
    /// measured, and measured without a reported value.
    fn sample() -> Table {
        let mut t = Table::new("Table 4: F1 & latency_ms (100%)", &["Domain", "Metric"]);
        t.push(Row::new(
            &["Healthcare", "GEM F1"],
            Some(0.92),
            Cell::Measured {
                value: 0.8734,
                ci: Some((0.85, 0.89)),
                estimated: false,
            },
        ));
        t.push(Row::new(
            &["Legal", "GEM latency (ms)"],
            Some(80.1),
            Cell::Measured {
                value: 95.37,
                ci: None,
                estimated: true,
            },
        ));
        t.push(Row::new(
            &["Finance", "power (W)"],
            Some(2.9),
            Cell::NotMeasured,
        ));
        t.push(Row::new(&["STEM", "a|b, \"c\""], None, Cell::measured(0.5)));
        t
    }

    #[test]
    fn markdown_golden() {
        let want = "\
**Table 4: F1 & latency_ms (100%)**

| Domain | Metric | Reported | Measured | Difference |
|---|---|---:|---:|---:|
| Healthcare | GEM F1 | 0.92 | 0.873 [0.850, 0.890] | -0.047 |
| Legal | GEM latency (ms) | 80.1 | 95.37 (estimated) | +15.27 |
| Finance | power (W) | 2.9 | not measured |  |
| STEM | a\\|b, \"c\" | not reported | 0.500 |  |
";
        assert_eq!(sample().to_markdown(), want);
    }

    #[test]
    fn csv_golden() {
        let want = "\
Domain,Metric,reported,measured,ci_low,ci_high,estimated,difference
Healthcare,GEM F1,0.92,0.8734,0.85,0.89,false,-0.0466
Legal,GEM latency (ms),80.1,95.37,,,true,15.27
Finance,power (W),2.9,not measured,,,,
STEM,\"a|b, \"\"c\"\"\",,0.5,,,false,
";
        assert_eq!(sample().to_csv(), want);
    }

    #[test]
    fn latex_golden() {
        let want = "\
\\begin{table}[ht]
\\centering
\\caption{Table 4: F1 \\& latency\\_ms (100\\%)}
\\begin{tabular}{llrrr}
\\hline
Domain & Metric & Reported & Measured & Difference \\\\
\\hline
Healthcare & GEM F1 & 0.92 & 0.873 [0.850, 0.890] & -0.047 \\\\
Legal & GEM latency (ms) & 80.1 & 95.37 (estimated) & +15.27 \\\\
Finance & power (W) & 2.9 & not measured &  \\\\
STEM & a\\textbar{}b, \"c\" & not reported & 0.500 &  \\\\
\\hline
\\end{tabular}
\\end{table}
";
        assert_eq!(sample().to_latex(), want);
    }

    #[test]
    fn reported_value_never_shows_as_measured() {
        let row = Row::new(&["x"], Some(0.92), Cell::Reported(0.92));
        assert_eq!(row.difference(), None);
        let mut t = Table::new("t", &["q"]);
        t.push(row);
        for out in [t.to_markdown(), t.to_csv(), t.to_latex()] {
            assert!(out.contains(NOT_MEASURED), "{out}");
            assert_eq!(out.matches("0.92").count(), 1, "{out}");
        }
    }

    #[test]
    fn difference_only_when_both_exist_and_no_negative_zero() {
        let r = Row::new(&[], Some(1800.0), Cell::measured(1799.96));
        assert_eq!(r.decimals(), 1);
        assert_eq!(r.value_cells()[2], "+0.0");
        assert_eq!(Row::new(&[], None, Cell::measured(1.0)).difference(), None);
        assert_eq!(
            Row::new(&[], Some(1.0), Cell::NotMeasured).difference(),
            None
        );
        assert_eq!(fixed(-0.0001, 2), "0.00");
        assert_eq!(csv_difference(21e6 - 393216.0), "20606784");
        assert_eq!(csv_difference(0.1 + 0.2 - 0.3), "0");
        assert_eq!(csv_difference(-1e-13), "0");
    }

    #[test]
    fn escapes_every_latex_special() {
        assert_eq!(
            latex_escape(r"50% a_b & #1 $x {y} ~ ^ \ |"),
            r"50\% a\_b \& \#1 \$x \{y\} \textasciitilde{} \textasciicircum{} \textbackslash{} \textbar{}"
        );
    }
}
