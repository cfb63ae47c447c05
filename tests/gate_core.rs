//! The CI gate's decision core on hand-made inputs whose answers are known:
//! paired tests, the noise rule for performance, output formats and rules.

use edgebench::gate::report::{GateReport, Row, Section};
use edgebench::gate::rules::{CheckKey, GateRules, PerfClass};
use edgebench::gate::verdict::{
    check_performance, check_quality, Evidence, PerfInput, QualityInput, Verdict,
};
use edgebench::gate::{check_identities, to_junit_xml, RunIdentity, EXIT_PASS, EXIT_REGRESSION};
use std::collections::BTreeMap;

/// 100 examples: `both` right in both runs, `losses` right only in the
/// baseline, `gains` right only in the candidate, the rest wrong in both.
fn records(n: usize, both: usize, losses: usize, gains: usize) -> Vec<(bool, bool)> {
    let mut v = Vec::with_capacity(n);
    v.extend(std::iter::repeat_n((true, true), both));
    v.extend(std::iter::repeat_n((true, false), losses));
    v.extend(std::iter::repeat_n((false, true), gains));
    v.resize(n, (false, false));
    // Interleave so that nothing depends on order.
    let mut shuffled = Vec::with_capacity(n);
    let (mut i, step) = (0usize, 37usize);
    for _ in 0..n {
        shuffled.push(v[i % n]);
        i += step;
    }
    assert_eq!(shuffled.len(), n);
    shuffled
}

fn defaults() -> GateRules {
    GateRules::default()
}

#[test]
fn twelve_more_errors_in_a_hundred_is_a_significant_regression() {
    // Baseline right on 70; the candidate loses 12 of those and gains none.
    let rules = defaults();
    let rule = rules
        .quality_rule(&CheckKey::suite("arc-easy", "stem", "acc"))
        .unwrap();
    let pairs = records(100, 58, 12, 0);
    let input = QualityInput::from_correctness(pairs);
    assert!((input.baseline - 0.70).abs() < 1e-12 && (input.candidate - 0.58).abs() < 1e-12);
    let chk = check_quality(&input, &rule);
    // b = 12, c = 0: p = 2 * 0.5^12 = 0.00048828125.
    let p = chk.p_value.unwrap();
    assert!((p - 0.00048828125).abs() < 1e-15, "{p}");
    assert!((chk.drop - 0.12).abs() < 1e-12);
    assert_eq!(chk.verdict, Verdict::Regression);
}

#[test]
fn two_flips_are_not_a_regression_even_above_the_threshold() {
    let rule = defaults()
        .quality_rule(&CheckKey::suite("s", "stem", "acc"))
        .unwrap();
    let chk = check_quality(
        &QualityInput::from_correctness(records(100, 68, 2, 0)),
        &rule,
    );
    // drop 0.02 > 0.01, but b = 2, c = 0 gives p = 0.5.
    assert!((chk.drop - 0.02).abs() < 1e-12);
    assert_eq!(chk.p_value, Some(0.5));
    assert!(matches!(chk.verdict, Verdict::Inconclusive(ref r) if r.contains("not significant")));
    assert!(!chk.verdict.fails());
}

#[test]
fn a_tiny_significant_drop_on_a_large_sample_passes() {
    let rule = defaults()
        .quality_rule(&CheckKey::suite("s", "stem", "acc"))
        .unwrap();
    // 10 000 examples, b = 60, c = 20: drop 0.004 < 0.01 although p = 8.6e-6.
    let chk = check_quality(
        &QualityInput::from_correctness(records(10_000, 7000, 60, 20)),
        &rule,
    );
    assert!((chk.drop - 0.004).abs() < 1e-12);
    let p = chk.p_value.unwrap();
    assert!((p - 8.580559867049611e-06).abs() < 1e-12, "{p}");
    assert_eq!(chk.verdict, Verdict::Pass);
}

/// Paired bootstrap replicates of mean(candidate) - mean(baseline), drawing
/// the same example indices for both runs (as the crate's metrics do).
fn paired_replicates(base: &[f64], cand: &[f64], resamples: usize, seed: u64) -> Vec<f64> {
    let n = base.len();
    let mut x = seed;
    let mut next = || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((x >> 33) as usize) % n
    };
    (0..resamples)
        .map(|_| {
            let mut d = 0.0;
            for _ in 0..n {
                let i = next();
                d += cand[i] - base[i];
            }
            d / n as f64
        })
        .collect()
}

#[test]
fn paired_bootstrap_flags_a_consistent_drop_and_passes_a_rerun() {
    let rule = defaults()
        .quality_rule(&CheckKey::suite("squad", "general", "squad_f1"))
        .unwrap();
    // Per-example F1 of 400 examples of varied difficulty.
    let base: Vec<f64> = (0..400)
        .map(|i| ((i * 7919) % 101) as f64 / 100.0)
        .collect();
    // The candidate loses 0.1 on every other example: mean drop 0.05.
    let cand: Vec<f64> = base
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if i % 2 == 0 {
                (b - 0.1f64).max(0.0)
            } else {
                *b
            }
        })
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let reps = paired_replicates(&base, &cand, 999, 42);
    // Every paired resample can only lose, so no replicate is >= 0.
    assert!(reps.iter().all(|r| *r < 0.0));
    let input = QualityInput {
        baseline: mean(&base),
        candidate: mean(&cand),
        higher_is_better: true,
        n: 400,
        evidence: Evidence::Bootstrap(reps),
    };
    let chk = check_quality(&input, &rule);
    assert_eq!(chk.p_value, Some(1.0 / 1000.0));
    assert_eq!(chk.verdict, Verdict::Regression);

    // Rerunning the same model: identical scores, difference 0, p = 1.
    let same = QualityInput {
        baseline: mean(&base),
        candidate: mean(&base),
        higher_is_better: true,
        n: 400,
        evidence: Evidence::Bootstrap(paired_replicates(&base, &base, 999, 42)),
    };
    let chk = check_quality(&same, &rule);
    assert_eq!((chk.p_value, chk.verdict), (Some(1.0), Verdict::Pass));
}

fn perf(class: PerfClass, base: &[f64], cand: &[f64], retried: bool) -> edgebench::gate::PerfCheck {
    let rule = defaults().perf_rule(class).unwrap();
    check_performance(
        &PerfInput {
            class,
            baseline: base.to_vec(),
            candidate: cand.to_vec(),
            retried,
        },
        &rule,
    )
}

#[test]
fn a_noisy_baseline_does_not_cry_wolf() {
    // Baseline [80, 100, 125] ms: median 100, MAD 20 -> relative noise 29.7 %;
    // candidate [106, 112, 118]: 1.4826 * 6 / 112 = 7.9 %; pooled 21.7 %.
    // The median is 12 % slower but the threshold is 3 x 21.7 % = 65.1 %.
    let p = perf(
        PerfClass::Latency,
        &[100.0, 80.0, 125.0],
        &[112.0, 118.0, 106.0],
        false,
    );
    assert!((p.change - 0.12).abs() < 1e-12);
    assert!(
        (p.threshold - 0.6511891074531613).abs() < 1e-12,
        "{}",
        p.threshold
    );
    assert_eq!(p.verdict, Verdict::Pass);
    // One slow outlier in the candidate does not move the median.
    let p = perf(
        PerfClass::Latency,
        &[100.0, 101.0, 99.0],
        &[100.0, 160.0, 101.0],
        false,
    );
    assert_eq!(p.verdict, Verdict::Pass);
}

#[test]
fn a_clean_ten_percent_slowdown_fails_after_one_retry() {
    let base = [100.0, 101.0, 99.5];
    let first = perf(PerfClass::Latency, &base, &[110.0, 111.0, 109.5], false);
    assert!((first.change - 0.10).abs() < 1e-12);
    // noise ~ 1.5 %: threshold is the 5 % floor.
    assert_eq!(first.threshold, 0.05);
    assert_eq!(first.verdict, Verdict::Retry);
    assert!(first.verdict.fails());
    // The rerun is still slow: regression.
    let second = perf(PerfClass::Latency, &base, &[110.5, 109.0, 110.0], true);
    assert_eq!(second.verdict, Verdict::Regression);
    // The rerun was a fluke: pass.
    let second = perf(PerfClass::Latency, &base, &[100.5, 101.5, 99.0], true);
    assert_eq!(second.verdict, Verdict::Pass);
    // Without retry_once the first failure is final.
    let mut rules = defaults();
    rules.performance.retry_once = false;
    let rule = rules.perf_rule(PerfClass::Latency).unwrap();
    let input = PerfInput {
        class: PerfClass::Latency,
        baseline: base.to_vec(),
        candidate: vec![110.0, 111.0, 109.5],
        retried: false,
    };
    assert_eq!(
        check_performance(&input, &rule).verdict,
        Verdict::Regression
    );
}

/// A minimal well-formedness check (std only): one root element, balanced and
/// properly nested tags, quoted attributes without `<`, unique attribute
/// names, and only the five predefined or numeric entities.
fn assert_well_formed(xml: &str) {
    fn entity_ok(s: &str) -> bool {
        let mut rest = s;
        while let Some(i) = rest.find('&') {
            let tail = &rest[i + 1..];
            let Some(end) = tail.find(';') else {
                return false;
            };
            let name = &tail[..end];
            let ok = matches!(name, "amp" | "lt" | "gt" | "quot" | "apos")
                || name
                    .strip_prefix("#x")
                    .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
                || name
                    .strip_prefix('#')
                    .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
            if !ok {
                return false;
            }
            rest = &tail[end + 1..];
        }
        true
    }
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        .expect("prolog");
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut rest = body;
    while let Some(lt) = rest.find('<') {
        let text = &rest[..lt];
        assert!(entity_ok(text), "bad entity in text {text:?}");
        assert!(
            !stack.is_empty() || text.trim().is_empty(),
            "text outside the root: {text:?}"
        );
        let after = &rest[lt + 1..];
        // Find the tag's end, skipping '>' inside quoted attribute values.
        let mut in_quote = false;
        let mut end = None;
        for (i, c) in after.char_indices() {
            match c {
                '"' => in_quote = !in_quote,
                '>' if !in_quote => {
                    end = Some(i);
                    break;
                }
                '<' => panic!("'<' inside a tag: {after:.60}"),
                _ => {}
            }
        }
        let end = end.expect("unterminated tag");
        let tag = &after[..end];
        rest = &after[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.trim()),
                "mismatched </{name}>"
            );
            continue;
        }
        let (tag, self_closing) = match tag.strip_suffix('/') {
            Some(t) => (t, true),
            None => (tag, false),
        };
        let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
        let name = &tag[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "bad element name {name:?}"
        );
        // Attributes: name="value" pairs.
        let mut attrs = &tag[name_end..];
        let mut seen = Vec::new();
        loop {
            attrs = attrs.trim_start();
            if attrs.is_empty() {
                break;
            }
            let eq = attrs.find('=').expect("attribute without =");
            let aname = attrs[..eq].trim();
            assert!(!seen.contains(&aname), "duplicate attribute {aname}");
            seen.push(aname);
            let v = attrs[eq + 1..]
                .strip_prefix('"')
                .expect("unquoted attribute");
            let close = v.find('"').expect("unterminated attribute");
            assert!(
                entity_ok(&v[..close]),
                "bad entity in attribute {:?}",
                &v[..close]
            );
            attrs = &v[close + 1..];
        }
        if stack.is_empty() {
            roots += 1;
        }
        if !self_closing {
            stack.push(name.to_owned());
        }
    }
    assert!(rest.trim().is_empty(), "trailing text");
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    assert_eq!(roots, 1);
}

fn sample_report() -> GateReport {
    let rules = defaults();
    let mut report = GateReport::new("baseline <v1>", "cand & \"q4\"");
    let mut add_q = |key: CheckKey, pairs: Vec<(bool, bool)>| {
        let rule = rules.quality_rule(&key).unwrap();
        let chk = check_quality(&QualityInput::from_correctness(pairs), &rule);
        report.rows.push(Row::quality(key.id(), &chk));
    };
    add_q(
        CheckKey::suite("legal_<contracts>&'x'", "legal", "acc"),
        records(100, 58, 12, 0),
    );
    add_q(
        CheckKey::suite("stem-\"quotes\"", "stem", "acc"),
        records(100, 68, 2, 0),
    );
    add_q(
        CheckKey::suite("med", "healthcare", "acc"),
        records(100, 70, 0, 0),
    );
    let p = perf(PerfClass::Memory, &[1000.0; 3], &[1010.0; 3], false);
    report.rows.push(Row::performance("memory/peak_rss", &p));
    report
}

#[test]
fn junit_xml_is_well_formed_and_counts_outcomes() {
    let report = sample_report();
    let xml = to_junit_xml(&report, "edgebench gate");
    assert_well_formed(&xml);
    assert!(
        xml.contains(r#"<testsuite name="quality" tests="3" failures="1" errors="0" skipped="1">"#),
        "{xml}"
    );
    assert!(xml.contains(
        r#"<testsuite name="performance" tests="1" failures="0" errors="0" skipped="0">"#
    ));
    assert!(
        xml.contains(r#"name="legal_&lt;contracts&gt;&amp;&apos;x&apos;/acc""#),
        "{xml}"
    );
    assert!(xml.contains(r#"name="stem-&quot;quotes&quot;/acc""#));
    assert!(xml.contains(r#"value="cand &amp; &quot;q4&quot;""#));
    assert_eq!(xml.matches("<failure ").count(), 1);
    assert_eq!(xml.matches("<skipped ").count(), 1);
    assert_eq!(xml.matches("<testcase ").count(), 4);

    // The checker itself rejects broken documents.
    let bad = [
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<a><b></a></b>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<a x=\"1 & 2\"/>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<a><b/>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<a/><a/>",
    ];
    for b in bad {
        assert!(
            std::panic::catch_unwind(|| assert_well_formed(b)).is_err(),
            "accepted {b}"
        );
    }
}

#[test]
fn report_exit_code_and_summaries() {
    let mut report = sample_report();
    assert_eq!(report.exit_code(), EXIT_REGRESSION);
    let md = report.render_markdown();
    assert!(
        md.lines().next().unwrap().starts_with("**Gate: FAIL**"),
        "{md}"
    );
    assert!(md.contains("### Quality") && md.contains("### Performance"));
    let table = report.render_table();
    assert!(
        table.ends_with("gate: FAIL (4 checks: 1 regression, 1 inconclusive, 2 pass)\n"),
        "{table}"
    );
    assert!(table.contains("memory/peak_rss"));
    report.rows.retain(|r| !r.verdict.fails());
    assert_eq!(report.exit_code(), EXIT_PASS);
    assert!(report.render_markdown().starts_with("**Gate: PASS**"));
    assert!(report
        .rows
        .iter()
        .any(|r| r.section == Section::Performance));
}

fn temp_rules(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn rules_file_errors_name_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_rules(
        &dir,
        "typo.toml",
        "[quality]\nmax_drop = 0.02\nalfa = 0.05\n",
    );
    let e = GateRules::load(&path).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}:3:1: ", path.display())), "{e}");
    assert!(e.contains("alfa"), "{e}");

    let path = temp_rules(
        &dir,
        "alpha.toml",
        "[[quality.override]]\nsuite = \"legal_*\"\nalpha = 1.5\n",
    );
    let e = GateRules::load(&path).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: quality.override[0].alpha: must lie in (0, 1), got 1.5",
            path.display()
        )
    );

    let path = temp_rules(
        &dir,
        "neg.toml",
        "[performance.throughput]\nfloor = -0.03\n",
    );
    let e = GateRules::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("performance.throughput.floor: must be a finite number >= 0"),
        "{e}"
    );

    let missing = path.with_file_name("missing.toml");
    let e = GateRules::load(&missing).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}: cannot read", missing.display())),
        "{e}"
    );
}

#[test]
fn the_shipped_rules_file_is_the_defaults_plus_perplexity_overrides() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("reports/baselines/gate.toml");
    let rules = GateRules::load(&path).unwrap();
    let acc = rules
        .quality_rule(&CheckKey::suite("commonsenseqa", "commonsense", "acc"))
        .unwrap();
    assert_eq!((acc.max_drop, acc.alpha), (0.01, 0.05));
    assert_eq!(acc.max_rel_drop, 0.0);
    let ppl = rules
        .quality_rule(&CheckKey::suite(
            "dapt-lm-news",
            "domain-adaptive",
            "word_perplexity",
        ))
        .unwrap();
    assert!(ppl.max_drop > 0.01);
    // 0.5 or 1 % of the baseline, whichever is larger (word perplexities
    // of the tiny model reach 1e11)
    assert_eq!((ppl.max_drop, ppl.max_rel_drop), (0.5, 0.01));
    // Apart from that override, the file spells out the built-in defaults.
    let d = GateRules::default();
    for key in [
        CheckKey::suite("finqa", "finance", "numeric_acc"),
        CheckKey::domain("legal"),
        CheckKey::gg("legal"),
        CheckKey::dsi("stem"),
        CheckKey::cdtr("legal", "finance"),
    ] {
        assert_eq!(
            rules.quality_rule(&key),
            d.quality_rule(&key),
            "{}",
            key.id()
        );
    }
    for class in PerfClass::ALL {
        assert_eq!(
            rules.perf_rule(class),
            d.perf_rule(class),
            "{}",
            class.as_str()
        );
    }
}

#[test]
fn mismatched_runs_are_refused_unless_allowed() {
    let ident = |data: &str| RunIdentity {
        suite_hashes: BTreeMap::from([("finqa".to_owned(), "s1".to_owned())]),
        data_hashes: BTreeMap::from([("finqa".to_owned(), data.to_owned())]),
    };
    assert!(check_identities(&ident("d1"), &ident("d1"), false)
        .unwrap()
        .is_empty());
    let err = check_identities(&ident("d1"), &ident("d2"), false).unwrap_err();
    assert_eq!(err.suites, ["finqa"]);
    let allowed = check_identities(&ident("d1"), &ident("d2"), true).unwrap();
    assert_eq!(
        allowed[0].to_string(),
        "finqa: data hash differs (d1 vs d2)"
    );
}
