//! JUnit XML for CI systems: one `<testsuite>` for quality and one for
//! performance, one `<testcase>` per check; regressions carry a `<failure>`,
//! inconclusive checks a `<skipped>`.

use super::report::{GateReport, Row, Section};
use super::verdict::Verdict;

/// Escapes text for XML content and attribute values: `&`, `<`, `>`, `"`,
/// `'` become entities; control characters XML 1.0 forbids become U+FFFD.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn testcase(out: &mut String, section: Section, r: &Row) {
    let [metric, base, cand, change, threshold, _] = r.cells();
    let open = format!(
        "    <testcase classname=\"edgebench.gate.{}\" name=\"{}\"",
        section.as_str(),
        xml_escape(&metric)
    );
    let numbers =
        format!("baseline {base}, candidate {cand}, change {change}, threshold {threshold}");
    match &r.verdict {
        Verdict::Regression | Verdict::Retry => {
            out.push_str(&format!(
                "{open}>\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>\n",
                xml_escape(&r.detail),
                r.verdict.label().to_lowercase(),
                xml_escape(&numbers),
            ));
        }
        Verdict::Inconclusive(reason) => {
            out.push_str(&format!(
                "{open}>\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                xml_escape(reason)
            ));
        }
        Verdict::Pass | Verdict::Improvement => {
            out.push_str(&format!(
                "{open}>\n      <system-out>{}: {}</system-out>\n    </testcase>\n",
                xml_escape(r.verdict.label()),
                xml_escape(&format!("{numbers}; {}", r.detail)),
            ));
        }
    }
}

/// The report as a JUnit XML document (`<testsuites>` named `name`, always
/// with both test suites, possibly empty).
pub fn to_junit_xml(report: &GateReport, name: &str) -> String {
    let all = report.counts(None);
    let extra = report.failures.len();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\">\n",
        xml_escape(name),
        all.total() + extra,
        all.regression + extra,
        all.inconclusive
    ));
    if extra > 0 {
        out.push_str(&format!(
            "  <testsuite name=\"coverage\" tests=\"{extra}\" failures=\"{extra}\" errors=\"0\" skipped=\"0\">\n"
        ));
        for (i, f) in report.failures.iter().enumerate() {
            out.push_str(&format!(
                "    <testcase classname=\"coverage\" name=\"coverage-{i}\">\n      <failure message=\"{}\" type=\"coverage\"/>\n    </testcase>\n",
                xml_escape(f)
            ));
        }
        out.push_str("  </testsuite>\n");
    }
    for section in [Section::Quality, Section::Performance] {
        let c = report.counts(Some(section));
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\">\n",
            section.as_str(),
            c.total(),
            c.regression,
            c.inconclusive
        ));
        out.push_str(&format!(
            "    <properties>\n      <property name=\"baseline\" value=\"{}\"/>\n      \
             <property name=\"candidate\" value=\"{}\"/>\n    </properties>\n",
            xml_escape(&report.baseline),
            xml_escape(&report.candidate)
        ));
        for r in report.rows.iter().filter(|r| r.section == section) {
            testcase(&mut out, section, r);
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_five_entities_and_controls() {
        assert_eq!(
            xml_escape(r#"a&b<c>d"e'f"#),
            "a&amp;b&lt;c&gt;d&quot;e&apos;f"
        );
        assert_eq!(xml_escape("x\u{1}y\tz"), "x\u{FFFD}y\tz");
        assert_eq!(xml_escape("&amp;"), "&amp;amp;");
    }

    #[test]
    fn counts_in_suite_attributes() {
        let mut r = GateReport::new("b", "c");
        let row = |v: Verdict, s: Section| Row {
            section: s,
            metric: "m<1>".into(),
            baseline: 1.0,
            candidate: 1.0,
            change: 0.0,
            threshold: 0.01,
            alpha: Some(0.05),
            p_value: Some(1.0),
            noise: None,
            verdict: v,
            detail: "d".into(),
        };
        r.rows.push(row(Verdict::Regression, Section::Quality));
        r.rows
            .push(row(Verdict::Inconclusive("few".into()), Section::Quality));
        r.rows.push(row(Verdict::Pass, Section::Quality));
        let x = to_junit_xml(&r, "gate");
        assert!(x.contains(
            "<testsuites name=\"gate\" tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\">"
        ));
        assert!(x.contains(
            "<testsuite name=\"quality\" tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\">"
        ));
        assert!(x.contains("<testsuite name=\"performance\" tests=\"0\" failures=\"0\" errors=\"0\" skipped=\"0\">"));
        assert!(x.contains("name=\"m&lt;1&gt;\""));
        assert!(x.contains("<failure message=\"d\" type=\"regression\">"));
        assert!(x.contains("<skipped message=\"few\"/>"));
    }
}
