//! The CI regression gate's pure core: paired statistics, the `gate.toml`
//! rules, verdicts, mismatch policy and output formats (terminal table,
//! Markdown, JUnit XML), and [`runs::compare`], which applies them to two
//! scored runs. See `docs/gate.md`.
//!
//! Flow for one gate run:
//! 1. [`identity::check_identities`] on the two runs' suite and data hashes
//!    (refused -> exit [`report::EXIT_BAD_INPUT`]).
//! 2. For each compared quantity, [`rules::GateRules::quality_rule`] or
//!    [`rules::GateRules::perf_rule`] (`None`: skip), then
//!    [`verdict::check_quality`] or [`verdict::check_performance`]; on
//!    [`verdict::Verdict::Retry`] re-measure the candidate and check again
//!    with `retried = true`.
//! 3. Collect [`report::Row`]s in a [`report::GateReport`], print
//!    [`report::GateReport::render_table`], write
//!    [`report::GateReport::render_markdown`] and [`junit::to_junit_xml`],
//!    exit with [`report::GateReport::exit_code`].

pub mod identity;
pub mod junit;
pub mod report;
pub mod rules;
pub mod runs;
pub mod stats;
pub mod verdict;

pub use identity::{check_identities, compare_identities, Mismatch, MismatchRefused, RunIdentity};
pub use junit::to_junit_xml;
pub use report::{GateReport, Overall, Row, Section, EXIT_BAD_INPUT, EXIT_PASS, EXIT_REGRESSION};
pub use rules::{CheckKey, CheckKind, GateRules, PerfClass, PerfRule, QualityRule, RulesError};
pub use verdict::{
    check_performance, check_quality, Evidence, PerfCheck, PerfInput, QualityCheck, QualityInput,
    TestKind, Verdict,
};
