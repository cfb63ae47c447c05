//! The paper EdgeBench reproduces ("Fragile Mastery", GEM), as data.
//!
//! * [`reported`]: every number the paper reports, loaded from
//!   `reports/paper/reported.toml` with its source (table, row, column or
//!   section).
//! * [`audit`]: the paper's derived numbers recomputed from its own inputs;
//!   renders `audit.md`.
//! * [`table`]: "reported | measured | difference" tables in Markdown, CSV
//!   and LaTeX, which never show a reported number as measured.

pub mod audit;
pub mod reported;
pub mod table;
