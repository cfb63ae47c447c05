//! `edgebench paper` end to end: two quick runs of the bundled models, then
//! the report built from them, checked file by file (tables, figures,
//! audit, self-contained HTML, and a headless-Chromium screenshot when a
//! Chromium is installed).

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_edgebench");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn edgebench(args: &[&str], cwd: &Path) -> String {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("EDGEBENCH_DATA")
        .output()
        .expect("edgebench runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "edgebench {args:?} failed:\n{text}");
    text
}

/// Runs both bundled models on a few fast suites from three of the paper's
/// domains plus two general ones, then `edgebench paper`; returns the
/// temp dir and the report folder.
fn build_report() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("reports");
    let suites = root().join("suites");
    let data = root().join("fixtures");
    for (model, id) in [("builtin:tiny", "tiny"), ("builtin:gem-tiny", "gem")] {
        edgebench(
            &[
                "run",
                "--model",
                model,
                "--suites",
                "healthcare,finqa,lexglue-casehold,commonsense,conversational",
                "--limit",
                "3",
                "--bootstrap",
                "100",
                "--run-id",
                id,
                "--quiet",
                "--out",
                out.to_str().unwrap(),
                "--suites-dir",
                suites.to_str().unwrap(),
                "--data-dir",
                data.to_str().unwrap(),
            ],
            tmp.path(),
        );
    }
    // A perf run's output for GEM: host latency, no power sensor, and a
    // projection for the paper's Raspberry Pi 4.
    std::fs::write(
        out.join("runs/gem/perf.json"),
        r#"{"model": "gem-tiny", "latency_ms_per_token": {"p50": 3.5},
            "power_w": null, "power_null_reason": "no power sensor on this host",
            "projections": [{"device": "raspberry-pi-4", "ms_per_token": 95.25}]}"#,
    )
    .unwrap();
    let report = tmp.path().join("paper-out");
    let printed = edgebench(
        &[
            "paper",
            "--runs",
            "tiny",
            "gem",
            "--runs-root",
            out.to_str().unwrap(),
            "--out",
            report.to_str().unwrap(),
            "--reported",
            root().join("reports/paper/reported.toml").to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(printed.contains("not the paper's trained GEM"), "{printed}");
    assert!(
        printed.contains("GEM "),
        "the gem run is tagged GEM:\n{printed}"
    );
    (tmp, report)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89PNG\r\n\x1a\n")
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn paper_report_from_two_runs() {
    let (_tmp, report) = build_report();

    // Tables 1-5 in three formats; measured cells never copy reported ones.
    for n in 1..=5 {
        for ext in ["md", "csv", "tex"] {
            let p = report.join(format!("tables/table{n}.{ext}"));
            assert!(read(&p).contains("eported"), "{}", p.display());
        }
        let csv = read(&report.join(format!("tables/table{n}.csv")));
        let mut rdr = csv::Reader::from_reader(csv.as_bytes());
        let headers = rdr.headers().unwrap().clone();
        let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
        let (rep, mea, by) = (col("reported"), col("measured"), col("Measured by"));
        let mut measured = 0;
        for row in rdr.records() {
            let row = row.unwrap();
            let by = &row[by];
            if by == "no run" || by.ends_with("no perf.json") || by.starts_with("training-only") {
                assert_eq!(&row[mea], "not measured", "table{n}: {row:?}");
            }
            if row[mea] != *"not measured" {
                measured += 1;
                if !row[rep].is_empty() {
                    let (r, m): (f64, f64) = (row[rep].parse().unwrap(), row[mea].parse().unwrap());
                    assert_ne!(r, m, "table{n}: measured equals reported: {row:?}");
                }
            }
        }
        // Tables 1-3 and 5 have score-based cells the runs measure; Table 4
        // needs the MobileBERT-class run or GEM on healthcare/finance/legal.
        assert!(measured > 0, "table{n} has no measured cell:\n{csv}");
    }
    let t3 = read(&report.join("tables/table3.md"));
    assert!(
        t3.contains("| MobileBERT | Parameters (M) | no run | 25.1 | not measured |  |"),
        "{t3}"
    );
    let t2 = read(&report.join("tables/table2.md"));
    assert!(t2.contains("healthcare pathway (router)"), "{t2}");
    let t5 = read(&report.join("tables/table5.md"));
    // perf.json: the projection is marked estimated, the host value is not,
    // and what perf.json lacks stays unmeasured.
    assert!(
        t5.contains("| Full GEM | Latency (ms/token) | gem-tiny, projected for raspberry-pi-4 | 82.4 | 95.25 (estimated) | +12.85 |"),
        "{t5}"
    );
    assert!(
        t5.contains(
            "| Full GEM | Memory (MB) | gem-tiny, host peak RSS | 1800 | not measured |  |"
        ),
        "{t5}"
    );
    assert!(t5.contains("| Full GEM | Power (W) | gem-tiny, host: no power sensor on this host | 2.8 | not measured |  |"), "{t5}");
    assert!(
        t5.contains("| w/o SCAR | F1 (mean over domains) | no run | 0.83 | not measured |  |"),
        "{t5}"
    );
    assert!(
        t3.contains("| GEM | Latency (ms/token) | gem-tiny, host p50 | 82 | 3.5 | -78.5 |"),
        "{t3}"
    );
    assert!(
        t5.contains("| w/o knowledge preservation | F1 (mean over domains) | training-only"),
        "{t5}"
    );

    // Figures: valid PNG of the drawn size and SVG.
    for stem in [
        "figure1_model_size",
        "figure2_score_density",
        "figure3_in_vs_out",
        "figure4_gem_architecture",
        "figure5_dsi_vs_gg",
    ] {
        let png = std::fs::read(report.join(format!("figures/{stem}.png"))).unwrap();
        assert!(is_png(&png) && png.len() > 10_000, "{stem}.png");
        let (w, h) = png_size(&png);
        assert!(w >= 1000 && h >= 350, "{stem}.png is {w}x{h}");
        let svg = read(&report.join(format!("figures/{stem}.svg")));
        assert!(
            svg.contains("<svg") && svg.trim_end().ends_with("</svg>"),
            "{stem}.svg"
        );
    }
    let arch = read(&report.join("figures/figure4_gem_architecture.svg"));
    for text in [
        "gem-tiny",
        "k = 4 clusters",
        "6-bit",
        "general",
        "Quantized output head: 8-bit",
    ] {
        assert!(arch.contains(text), "Figure 4 lacks `{text}`");
    }
    let sizes = read(&report.join("figures/figure1_model_size.svg"));
    assert!(sizes.contains("TinyLlama") && sizes.contains("gem-tiny (measured here)"));

    // The audit lists Table 2's healthcare GG as a mismatch.
    let audit = read(&report.join("audit.md"));
    let mismatches = audit
        .split("## Consistent")
        .next()
        .unwrap()
        .split("## Mismatches")
        .nth(1)
        .expect("a Mismatches section");
    assert!(
        mismatches.contains("Table 2, row Healthcare Chatbot, column GG"),
        "{mismatches}"
    );
    assert!(mismatches.contains("0.5263"), "{mismatches}");

    // report.md and the self-contained report.html.
    let md = read(&report.join("report.md"));
    assert!(md.contains("not the paper's trained GEM"));
    assert!(md.contains("![Figure 4"));
    let html = read(&report.join("report.html"));
    assert!(html.contains("not the paper's trained GEM"));
    for attr in ["src=", "href="] {
        for (i, _) in html.match_indices(attr) {
            let value = &html[i + attr.len()..(i + attr.len() + 40).min(html.len())];
            assert!(
                !value.contains("http:") && !value.contains("https:") && !value.starts_with("\"//"),
                "external reference: {value}"
            );
        }
    }
    assert!(!html.contains("url(http"));
    assert_eq!(html.matches("<img src=\"data:image/png;base64,").count(), 5);
    assert_eq!(
        html.matches("<table>").count(),
        5 + 1 + 3,
        "5 tables, runs, 3 audit tables"
    );
    assert!(html.contains("<td class=\"r\">not measured</td>"));

    screenshot(&report.join("report.html"));
}

/// The first Chromium on PATH.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// Opens the report in headless Chromium and checks the screenshot.
fn screenshot(html: &Path) {
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED: no chromium, chromium-browser or google-chrome on PATH; report.html was not rendered (Debian: apt-get install chromium)");
        return;
    };
    let shot = html.with_file_name("report-screenshot.png");
    let profile = tempfile::tempdir().unwrap();
    let status = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,2000",
            &format!("file://{}", html.canonicalize().unwrap().display()),
        ])
        .output()
        .expect("chromium starts");
    assert!(
        status.status.success(),
        "{} failed: {}",
        browser.display(),
        String::from_utf8_lossy(&status.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(is_png(&png), "screenshot is a PNG");
    assert_eq!(png_size(&png), (1200, 2000));
    // A blank page compresses to a few kilobytes; text, tables and plots do not.
    assert!(
        png.len() > 50_000,
        "screenshot looks blank: {} bytes",
        png.len()
    );
    if let Some(keep) = std::env::var_os("EDGEBENCH_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
