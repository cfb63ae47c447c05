//! `edgebench suites list|validate`.

use super::{bad_input, Failure, Paths};
use clap::{Args, Subcommand};
use edgebench::data::{self, DataStatus};

#[derive(Debug, Args)]
pub struct SuitesArgs {
    #[command(subcommand)]
    pub action: SuitesAction,
    #[command(flatten)]
    pub paths: Paths,
}

#[derive(Debug, Subcommand)]
pub enum SuitesAction {
    /// Print every suite (built-in and added) with domain, task, metrics, data status and source.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check every suite file, built-in and added (and that its data, where present, loads).
    Validate,
}

pub fn suites(a: SuitesArgs) -> Result<(), Failure> {
    let registry = a.paths.registry()?;
    let root = a.paths.data();
    match a.action {
        SuitesAction::List { json } => {
            super::warn(&registry);
            let specs = registry.specs();
            let rows: Vec<(String, String, String, String, String)> = specs
                .iter()
                .map(|s| {
                    let status = match data::locate(s, &root) {
                        Ok(DataStatus::Found(f)) => format!(
                            "found ({} file{})",
                            f.len(),
                            if f.len() == 1 { "" } else { "s" }
                        ),
                        Ok(DataStatus::Missing(m)) => format!("missing: {m}"),
                        Err(e) => format!("invalid: {e}"),
                    };
                    (
                        s.id.clone(),
                        s.domain.to_string(),
                        s.task.as_str().to_string(),
                        s.metrics
                            .iter()
                            .map(|m| m.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                        status,
                    )
                })
                .collect();
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|r| serde_json::json!({"id": r.0, "domain": r.1, "task": r.2, "metrics": r.3.split(',').collect::<Vec<_>>(), "data": r.4, "source": registry.get(&r.0).map(|e| e.source.to_string())}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v).expect("json"));
            } else {
                println!(
                    "{:<28} {:<16} {:<27} {:<38} data ({})",
                    "suite",
                    "domain",
                    "task",
                    "metrics",
                    root.display()
                );
                for r in &rows {
                    println!("{:<28} {:<16} {:<27} {:<38} {}", r.0, r.1, r.2, r.3, r.4);
                }
                let domains: std::collections::BTreeSet<&str> =
                    rows.iter().map(|r| r.1.as_str()).collect();
                println!("{} suites in {} domains", rows.len(), domains.len());
            }
            Ok(())
        }
        SuitesAction::Validate => {
            let (ok, errs) = (registry.specs(), registry.broken());
            let mut problems: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            let mut loaded = 0;
            for s in ok {
                match data::locate(s, &root) {
                    Ok(DataStatus::Found(_)) => match data::load_examples(s, &root) {
                        Ok(examples) => {
                            loaded += 1;
                            for (m, ids) in
                                edgebench::metrics::score::unreadable_golds(s, &examples)
                            {
                                let shown: Vec<&str> =
                                    ids.iter().take(10).map(String::as_str).collect();
                                eprintln!(
                                    "warning: {}: {} cannot read the gold of {} example(s) and leaves them out: {}{}",
                                    s.id,
                                    m.as_str(),
                                    ids.len(),
                                    shown.join(", "),
                                    if ids.len() > shown.len() { ", ..." } else { "" }
                                );
                            }
                        }
                        Err(e) => problems.push(format!("{}: {e}", s.id)),
                    },
                    Ok(DataStatus::Missing(_)) => {}
                    Err(e) => problems.push(format!("{}: {e}", s.id)),
                }
            }
            println!(
                "{} suite files valid, {} with data under {} loaded",
                ok.len(),
                loaded,
                root.display()
            );
            if problems.is_empty() {
                Ok(())
            } else {
                for p in &problems {
                    eprintln!("{p}");
                }
                Err(bad_input(anyhow::anyhow!(
                    "{} problem(s) found",
                    problems.len()
                )))
            }
        }
    }
}
