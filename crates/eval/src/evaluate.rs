//! One entry point for an evaluation, as lm-evaluation-harness's
//! `simple_evaluate`: start or resume a run, score it from its records and
//! write its reports. `edgebench run`, `edgebench sweep` and library users
//! all call [`evaluate`].

use crate::metrics::Bootstrap;
use crate::record::SuiteStatus;
use crate::record::{RunDir, RunLock};
use crate::report::{self, ReportError, RunScores};
use crate::runner::{self, Options, Requested, RunError, Settings};
use crate::suite::spec::SuiteSpec;
use crate::suite::Registry;
use edgebench_runtime::model::Model;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// What to evaluate.
pub enum Job<'a> {
    /// A new run of `model` (already loaded) over `specs`, taken from `suites`.
    New {
        /// Run id (default: the time stamp and the model's name).
        id: Option<String>,
        settings: Settings,
        specs: Vec<&'a SuiteSpec>,
        suites: &'a Registry,
        model: &'a mut dyn Model,
    },
    /// The continuation of run `id` with the settings its `run.json` records.
    Resume {
        id: String,
        /// Settings the caller gave explicitly (refused where they differ).
        requested: Requested,
        /// Take `requested` where it differs, as a new leg.
        force_new_leg: bool,
        /// Where built-in models are materialised.
        model_cache: PathBuf,
    },
}

/// An evaluation that ran: its folder (still locked), scores and reports.
pub struct Evaluation {
    pub dir: RunDir,
    pub scores: RunScores,
    /// The report files written.
    pub reports: Vec<PathBuf>,
    _lock: RunLock,
}

impl Evaluation {
    /// Whether every planned example has a record.
    pub fn is_complete(&self) -> bool {
        self.scores.manifest.state == "complete"
    }

    /// The suites whose data failed to load, with the reason.
    pub fn failed_suites(&self) -> Vec<(String, String)> {
        self.scores
            .manifest
            .status
            .iter()
            .filter_map(|(id, s)| match s {
                SuiteStatus::Failed { reason } => Some((id.clone(), reason.clone())),
                _ => None,
            })
            .collect()
    }
}

/// Why an evaluation stopped.
#[derive(Debug, Error)]
pub enum EvalError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Report(#[from] ReportError),
}

impl EvalError {
    /// Whether the error is bad input (exit 2) rather than a failure (exit 1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            EvalError::Run(e) => e.is_bad_input(),
            EvalError::Report(_) => false,
        }
    }
}

/// Runs (or resumes) an evaluation under `out`, then scores it from its
/// records and writes its reports. An interrupted run is scored and
/// reported too ([`Evaluation::is_complete`] says which).
pub fn evaluate(out: &Path, job: Job<'_>, opts: &Options) -> Result<Evaluation, EvalError> {
    let (dir, lock) = match job {
        Job::New {
            id,
            settings,
            specs,
            suites,
            model,
        } => runner::start(out, id.as_deref(), &settings, &specs, suites, model, opts)?,
        Job::Resume {
            id,
            requested,
            force_new_leg,
            model_cache,
        } => runner::resume(out, &id, &requested, force_new_leg, &model_cache, opts)?,
    };
    let manifest = dir.load_manifest().map_err(RunError::from)?;
    let boot = Bootstrap {
        resamples: manifest.bootstrap,
        seed: manifest.seed,
    };
    let scores = report::score_run(&dir, &boot)?;
    let reports = report::write_reports(&dir, &scores)?;
    Ok(Evaluation {
        dir,
        scores,
        reports,
        _lock: lock,
    })
}
