//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod synth_bert;
pub mod synth_llama;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/data` when present.
pub fn shared_data() -> Option<PathBuf> {
    let p = repo().join("../shared/data");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("skipping: ../shared/data not found (the real samples live there)");
        None
    }
}

/// Runs the edgebench binary in `cwd` with `args`.
pub fn edgebench(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgebench"))
        .args(args)
        .current_dir(cwd)
        .env_remove("EDGEBENCH_DATA")
        .output()
        .expect("edgebench runs")
}

/// stdout + stderr as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
