//! The paper EdgeBench reproduces ("Fragile Mastery", GEM), as data, and
//! `edgebench paper`'s report of it.
//!
//! * [`reported`]: every number the paper reports, loaded from
//!   `reports/paper/reported.toml` with its source (table, row, column or
//!   section).
//! * [`claims`]: the paper's derived numbers and how each is recomputed,
//!   loaded from `reports/paper/claims.toml`.
//! * [`audit`]: the paper's derived numbers recomputed from its own inputs;
//!   renders `audit.md`.
//! * [`table`]: "reported | measured | difference" tables in Markdown, CSV
//!   and LaTeX, which never show a reported number as measured.
//! * [`runs`]: the runs a report is built from, tagged with their
//!   role, and their optional `perf.json` (read as `edgebench_device::perf::PerfSummary`).
//! * [`indomain`]: what "in-domain" means for GEM and for other models.
//! * [`tables`], [`figures`], [`arch`]: Tables 1-5 and Figures 1-5.
//! * [`html`], [`output`]: `report.md`, the self-contained `report.html`
//!   and the output folder.

pub mod arch;
pub mod audit;
pub mod claims;
pub mod figures;
pub mod html;
pub mod indomain;
pub mod output;
pub mod reported;
pub mod runs;
pub mod table;
pub mod tables;

use std::path::PathBuf;
use thiserror::Error;

/// Why a paper report could not be built.
#[derive(Debug, Error)]
pub enum PaperError {
    /// The reported numbers are missing or malformed.
    #[error(transparent)]
    Reported(#[from] reported::ReportedError),
    /// A run directory could not be read.
    #[error(transparent)]
    Record(#[from] edgebench_eval::record::RecordError),
    /// A run could not be scored.
    #[error(transparent)]
    Score(#[from] edgebench_eval::report::ReportError),
    /// A figure could not be drawn.
    #[error("figure {figure}: {message}")]
    Figure {
        /// Which figure.
        figure: String,
        /// What went wrong.
        message: String,
    },
    /// The HTML report could not embed its images.
    #[error("report.html: {0}")]
    Html(#[from] html::HtmlError),
    /// An output file could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No run was given.
    #[error("no runs: pass at least one run id or run directory")]
    NoRuns,
}
