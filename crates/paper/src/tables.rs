//! The paper's Tables 1-5 with the measured values of the given runs beside
//! the reported ones. Measured cells come from run scores and `perf.json`
//! only; a quantity no run measured is "not measured". A per-domain latency
//! or power cell reads that domain's own measurement (`perf --suites`),
//! never the host-wide figure.

use super::indomain::{Target, Transfer};
use super::reported::{Reported, ReportedError};
use super::runs::{mean, PaperRun, Role};
use super::table::{Cell, Row, Table};
use edgebench_device::perf::PerfSummary as Perf;
use edgebench_eval::metrics::Estimate;
use edgebench_eval::suite::spec::Domain;
use edgebench_runtime::gem::Variant;

/// What the tables are built from.
pub struct Inputs<'a> {
    /// The paper's numbers.
    pub reported: &'a Reported,
    /// The runs.
    pub runs: &'a [PaperRun],
    /// Table 1's in-domain domain.
    pub focus: Domain,
}

/// One metric of Table 1: label, key, in-domain value, out-of-domain value,
/// who measured it.
type Table1Metric<'s> = (
    &'static str,
    &'static str,
    Option<f64>,
    Option<f64>,
    &'s String,
);

/// A measured number (or none) and who measured it.
struct Sourced {
    cell: Cell,
    by: String,
}

/// A measured cell for a finite value, else "not measured".
fn cell(v: Option<f64>) -> Cell {
    v.filter(|x| x.is_finite())
        .map_or(Cell::NotMeasured, Cell::measured)
}

/// A cell from a bootstrap estimate, with its interval when it has one.
fn estimate_cell(e: Option<&Estimate>) -> Cell {
    match e {
        Some(e) if e.value.is_finite() => Cell::Measured {
            value: e.value,
            ci: (e.ci_low.is_finite() && e.ci_high.is_finite()).then_some((e.ci_low, e.ci_high)),
            estimated: false,
        },
        _ => Cell::NotMeasured,
    }
}

/// Device id (`devices/`) of a platform as the paper names it.
pub fn device_id(platform: &str) -> Option<&'static str> {
    match platform.to_ascii_lowercase().as_str() {
        "raspberry pi 4" => Some("raspberry-pi-4"),
        "pixel 6" => Some("pixel-6"),
        "iphone 13" => Some("iphone-13"),
        "custom npu" => Some("custom-npu"),
        _ => None,
    }
}

/// "Not measured" for a per-domain cell of a run whose `perf.json` has no
/// measurement on `domain`'s suites.
fn no_domain(run: &PaperRun, domain: Domain) -> Sourced {
    Sourced {
        cell: Cell::NotMeasured,
        by: format!(
            "{}, no perf run on {domain} (edgebench perf --suites {domain})",
            run.model()
        ),
    }
}

/// Latency per token of a run: the projection for `device` (estimated),
/// else the host measurement on `domain`'s suites (not measured without
/// one), else (no domain) the host median.
fn latency(run: Option<&PaperRun>, device: Option<&str>, domain: Option<Domain>) -> Sourced {
    let Some(run) = run else {
        return no_run();
    };
    let Some(perf) = &run.perf else {
        return no_perf(run);
    };
    if let Some(p) = device.and_then(|d| perf.projection(d)) {
        if let Some(ms) = p.ms_per_token {
            return Sourced {
                cell: Cell::Measured {
                    value: ms,
                    ci: None,
                    estimated: p.estimated,
                },
                by: format!("{}, projected for {}", run.model(), p.device),
            };
        }
    }
    let (value, what) = match domain {
        Some(d) => match perf.domain(d.as_str()) {
            Some(m) => (
                m.latency_ms_per_token.as_ref().and_then(|q| q.p50),
                format!("host p50 on {d}"),
            ),
            None => return no_domain(run, d),
        },
        None => (perf.latency_p50(), "host p50".to_owned()),
    };
    Sourced {
        cell: cell(value),
        by: format!("{}, {what}", run.model()),
    }
}

/// Power of a run: the projection for `device` (estimated), else the host
/// measurement on `domain`'s suites (not measured without one), else (no
/// domain) the host measurement.
fn power(run: Option<&PaperRun>, device: Option<&str>, domain: Option<Domain>) -> Sourced {
    let Some(run) = run else {
        return no_run();
    };
    let Some(perf) = &run.perf else {
        return no_perf(run);
    };
    if let Some(p) = device.and_then(|d| perf.projection(d)) {
        if let Some(w) = p.power_w {
            return Sourced {
                cell: Cell::Measured {
                    value: w,
                    ci: None,
                    estimated: p.estimated,
                },
                by: format!("{}, projected for {}", run.model(), p.device),
            };
        }
    }
    let (watts, reason, host) = match domain {
        Some(d) => match perf.domain(d.as_str()) {
            Some(m) => (
                m.power_w,
                m.power_null_reason.as_ref(),
                format!("host on {d}"),
            ),
            None => return no_domain(run, d),
        },
        None => (
            perf.power_w,
            perf.power_null_reason.as_ref(),
            "host".to_owned(),
        ),
    };
    let why = match (watts, reason) {
        (None, Some(reason)) => format!("{host}: {reason}"),
        _ => host,
    };
    Sourced {
        cell: cell(watts),
        by: format!("{}, {why}", run.model()),
    }
}

/// Peak host memory of a run in MB (10^6 bytes, the paper's unit).
fn memory(run: Option<&PaperRun>) -> Sourced {
    let Some(run) = run else {
        return no_run();
    };
    let Some(perf) = &run.perf else {
        return no_perf(run);
    };
    Sourced {
        cell: cell(perf.peak_rss_bytes.map(|b| b as f64 / 1e6)),
        by: format!("{}, host peak RSS", run.model()),
    }
}

fn no_run() -> Sourced {
    Sourced {
        cell: Cell::NotMeasured,
        by: "no run".into(),
    }
}

fn no_perf(run: &PaperRun) -> Sourced {
    Sourced {
        cell: Cell::NotMeasured,
        by: format!("{}, no perf.json", run.model()),
    }
}

/// A score-based measurement of `run`, or "no run".
fn scored(run: Option<&PaperRun>, value: impl FnOnce(&PaperRun) -> Cell) -> Sourced {
    match run {
        Some(r) => Sourced {
            cell: value(r),
            by: r.label(),
        },
        None => no_run(),
    }
}

/// The runs with `role`, or a single `None` when there is none (so the
/// table still shows the reported row).
fn with_role(runs: &[PaperRun], role: Role) -> Vec<Option<&PaperRun>> {
    let found: Vec<Option<&PaperRun>> = runs.iter().filter(|r| r.role == role).map(Some).collect();
    if found.is_empty() {
        vec![None]
    } else {
        found
    }
}

/// The run Table 1 describes: the full GEM, else the first run.
pub fn primary(runs: &[PaperRun]) -> Option<&PaperRun> {
    runs.iter()
        .find(|r| r.role == Role::Gem(Variant::Full))
        .or_else(|| runs.first())
}

impl<'a> Inputs<'a> {
    fn num(&self, key: &str) -> Result<Option<f64>, ReportedError> {
        self.reported.number(key).map(Some)
    }

    fn row(&self, labels: &[&str], key: &str, m: Sourced) -> Result<Row, ReportedError> {
        let mut all: Vec<&str> = labels.to_vec();
        all.push(&m.by);
        Ok(Row::new(&all, self.num(key)?, m.cell))
    }

    /// All five tables, in order, with a file stem each.
    pub fn all(&self) -> Result<Vec<(&'static str, Table)>, ReportedError> {
        Ok(vec![
            ("table1", self.table1()?),
            ("table2", self.table2()?),
            ("table3", self.table3()?),
            ("table4", self.table4()?),
            ("table5", self.table5()?),
        ])
    }

    /// Table 1: the case study, in- vs out-of-domain on the focus domain
    /// (domain-level for every model: the focus domain's score against the
    /// mean of the other domains').
    pub fn table1(&self) -> Result<Table, ReportedError> {
        let run = primary(self.runs);
        let d = self.focus;
        let title = format!(
            "Table 1: in-domain ({d}) vs out-of-domain, reported for the paper's healthcare chatbot on Raspberry Pi 4"
        );
        let mut t = Table::new(&title, &["Metric", "Column", "Measured by"]);
        // Table 1 is the case study's "in-domain data vs other data" for
        // every model, like its perplexity rows.
        let t1 = run.map(Transfer::by_domain);
        let ppl = run.map(|r| r.perplexity_by_domain()).unwrap_or_default();
        let ppl_out = mean(ppl.iter().filter(|(k, _)| **k != d).map(|(_, v)| *v));
        let perf: Option<&Perf> = run.and_then(|r| r.perf.as_ref());
        let lat_in = perf.and_then(|p| p.domain_latency_p50(d.as_str()));
        let lat_out = perf.and_then(|p| {
            mean(
                p.domains
                    .keys()
                    .filter(|k| k.as_str() != d.as_str())
                    .filter_map(|k| p.domain_latency_p50(k)),
            )
        });
        let pow_in = perf.and_then(|p| p.domain_power(d.as_str()));
        let pow_out = perf.and_then(|p| {
            mean(
                p.domains
                    .keys()
                    .filter(|k| k.as_str() != d.as_str())
                    .filter_map(|k| p.domain_power(k)),
            )
        });
        let energy = |w: Option<f64>, ms: Option<f64>| Some(w? * ms? / 1000.0);
        let flops = perf.and_then(|p| p.flops_per_token);
        let model = run.map_or("no run".to_owned(), PaperRun::label);
        let by_scores = format!("{model}, {d} vs the other domains");
        let by_perf = match (run, perf) {
            (None, _) => "no run".to_owned(),
            (Some(r), None) => format!("{}, no perf.json", r.model()),
            (Some(r), Some(_)) => format!("{}, perf.json (host)", r.model()),
        };
        // Latency, power and energy per domain: only the domains' own
        // measurements, never the host-wide figure.
        let by_domains = match (run, perf) {
            (Some(r), Some(p)) if p.domains.is_empty() => format!(
                "{}, perf.json has no per-domain run (edgebench perf --suites)",
                r.model()
            ),
            (Some(r), Some(p)) => {
                let others: Vec<&str> = p
                    .domains
                    .keys()
                    .map(String::as_str)
                    .filter(|k| *k != d.as_str())
                    .collect();
                format!(
                    "{}, perf.json per domain (host): {d}{} vs {}",
                    r.model(),
                    if p.domain(d.as_str()).is_some() {
                        ""
                    } else {
                        " not measured"
                    },
                    if others.is_empty() {
                        "no other domain measured".to_owned()
                    } else {
                        others.join(", ")
                    }
                )
            }
            _ => by_perf.clone(),
        };
        let metrics: [Table1Metric; 6] = [
            (
                "F1 (headline score)",
                "f1",
                t1.as_ref().and_then(|t| t.in_domain(d)),
                t1.as_ref().and_then(|t| t.out_of_domain(d)),
                &by_scores,
            ),
            (
                "Latency (ms/token)",
                "latency",
                lat_in,
                lat_out,
                &by_domains,
            ),
            (
                "Perplexity",
                "perplexity",
                ppl.get(&d).copied(),
                ppl_out,
                &by_scores,
            ),
            ("Power (W)", "power", pow_in, pow_out, &by_domains),
            (
                "Energy (J/token) = W x s",
                "energy",
                energy(pow_in, lat_in),
                energy(pow_out, lat_out),
                &by_domains,
            ),
            ("FLOPs (per token)", "flops", flops, flops, &by_perf),
        ];
        for (label, key, i, o, by) in metrics {
            let change = i.zip(o).map(|(i, o)| o - i);
            let relative = change
                .zip(i)
                .and_then(|(c, i)| (i != 0.0).then(|| 100.0 * c / i));
            for (column, suffix, v) in [
                ("In-domain", "in_domain", i),
                ("Out-of-domain", "out_of_domain", o),
                ("Absolute change", "change", change),
                ("Relative change (%)", "relative_pct", relative),
            ] {
                let m = Sourced {
                    cell: cell(v),
                    by: by.clone(),
                };
                t.push(self.row(&[label, column], &format!("table1.{key}.{suffix}"), m)?);
            }
        }
        Ok(t)
    }

    /// Table 2: GG, CDTR and DSI of each model (ablations excluded) on the
    /// paper's three domains, under each model's in-domain definition.
    pub fn table2(&self) -> Result<Table, ReportedError> {
        let mut t = Table::new(
            "Table 2: metric calculations (in-domain per model: see the definitions)",
            &["Paper row", "Quantity", "Measured by"],
        );
        let models: Vec<Option<&PaperRun>> = {
            let v: Vec<_> = self
                .runs
                .iter()
                .filter(|r| !r.role.is_ablation())
                .map(Some)
                .collect();
            if v.is_empty() {
                vec![None]
            } else {
                v
            }
        };
        for (row, name, domain) in [
            ("healthcare", "Healthcare chatbot", Domain::Healthcare),
            ("finance", "Finance model", Domain::Finance),
            ("legal", "Legal model", Domain::Legal),
        ] {
            let target_name = self.reported.text(&format!("table2.{row}.cdtr_target"))?;
            let target = Target::parse(target_name).unwrap_or(Target::General);
            for run in &models {
                let tr = run.map(Transfer::of);
                let routed = run.is_some_and(|r| r.role.is_gem() && r.has_routes());
                let by = match run {
                    None => "no run".to_owned(),
                    Some(r) if routed => format!("{}: {domain} pathway (router)", r.label()),
                    Some(r) => format!("{}: {domain} vs the other domains", r.label()),
                };
                // Bootstrap intervals exist for the domain-level definition.
                let rob = run.filter(|_| !routed).map(|r| &r.scores);
                let find = |list: &'a [(Domain, Estimate)]| {
                    list.iter().find(|(d, _)| *d == domain).map(|(_, e)| e)
                };
                let in_cell = match rob {
                    Some(s) => estimate_cell(
                        s.domains
                            .iter()
                            .find(|x| x.domain == domain)
                            .map(|x| &x.score),
                    ),
                    None => cell(tr.as_ref().and_then(|t| t.in_domain(domain))),
                };
                let gg_cell = match rob {
                    Some(s) => estimate_cell(find(&s.robustness.gg)),
                    None => cell(tr.as_ref().and_then(|t| t.gg(domain))),
                };
                let dsi_cell = match rob {
                    Some(s) => estimate_cell(find(&s.robustness.dsi)),
                    None => cell(tr.as_ref().and_then(|t| t.dsi(domain))),
                };
                let cdtr_label = format!("CDTR ({target_name})");
                for (quantity, key, c) in [
                    ("In-domain", "in_domain", in_cell),
                    (
                        "Out-of-domain (avg)",
                        "out_of_domain_avg",
                        cell(tr.as_ref().and_then(|t| t.out_of_domain(domain))),
                    ),
                    ("GG", "gg", gg_cell),
                    (
                        cdtr_label.as_str(),
                        "cdtr",
                        cell(tr.as_ref().and_then(|t| t.cdtr(domain, target))),
                    ),
                    ("DSI", "dsi", dsi_cell),
                ] {
                    let m = Sourced {
                        cell: c,
                        by: by.clone(),
                    };
                    t.push(self.row(&[name, quantity], &format!("table2.{row}.{key}"), m)?);
                }
            }
        }
        Ok(t)
    }

    /// Table 3: size, memory, latency and general score of GEM and the two
    /// baseline classes.
    pub fn table3(&self) -> Result<Table, ReportedError> {
        let mut t = Table::new(
            "Table 3: comparison of related models (latency and memory on this machine)",
            &["Model", "Quantity", "Measured by"],
        );
        for (name, key, role) in [
            ("MobileBERT", "mobilebert", Role::MobileBert),
            ("TinyLlama", "tinyllama", Role::TinyLlama),
            ("GEM", "gem", Role::Gem(Variant::Full)),
        ] {
            for run in with_role(self.runs, role) {
                let rows = [
                    (
                        "Parameters (M)",
                        "params_m",
                        scored(run, |r| cell(r.parameters().map(|p| p as f64 / 1e6))),
                    ),
                    ("Memory (MB)", "memory_mb", memory(run)),
                    ("Latency (ms/token)", "latency_ms", latency(run, None, None)),
                    (
                        "F1 general (mean over domains)",
                        "f1_general",
                        scored(run, |r| cell(r.general_score())),
                    ),
                ];
                for (quantity, k, m) in rows {
                    t.push(self.row(&[name, quantity], &format!("table3.{key}.{k}"), m)?);
                }
            }
        }
        Ok(t)
    }

    /// Table 4: per-domain scores of GEM and the MobileBERT-class model,
    /// with latency and power on the paper's platform of each row.
    pub fn table4(&self) -> Result<Table, ReportedError> {
        let mut t = Table::new(
            "Table 4: domain-specific performance across platforms",
            &["Domain", "Quantity", "Measured by"],
        );
        let gem = self
            .runs
            .iter()
            .find(|r| r.role == Role::Gem(Variant::Full));
        let mobilebert = self.runs.iter().find(|r| r.role == Role::MobileBert);
        for (row, name, domain) in [
            ("healthcare", "Healthcare", Some(Domain::Healthcare)),
            ("legal", "Legal", Some(Domain::Legal)),
            ("finance", "Finance", Some(Domain::Finance)),
            ("stem", "STEM", Some(Domain::Stem)),
            ("general", "General", None),
        ] {
            let platform = self.reported.text(&format!("table4.{row}.platform"))?;
            let device = device_id(platform);
            let score = |r: &PaperRun| {
                cell(match domain {
                    Some(d) => r.domain_score(d),
                    None => r.general_score(),
                })
            };
            let rows = [
                ("GEM F1", "gem_f1", scored(gem, score)),
                ("MobileBERT F1", "mobilebert_f1", scored(mobilebert, score)),
                (
                    "GEM latency (ms/token)",
                    "gem_latency_ms",
                    latency(gem, device, domain),
                ),
                (
                    "MobileBERT latency (ms/token)",
                    "mobilebert_latency_ms",
                    latency(mobilebert, device, domain),
                ),
                ("Power (W)", "power_w", power(gem, device, domain)),
            ];
            let label = format!("{name} ({platform})");
            for (quantity, k, m) in rows {
                t.push(self.row(&[&label, quantity], &format!("table4.{row}.{k}"), m)?);
            }
        }
        Ok(t)
    }

    /// Table 5: the ablations, latency and power projected for Raspberry
    /// Pi 4 when `perf.json` has the projection.
    pub fn table5(&self) -> Result<Table, ReportedError> {
        let mut t = Table::new(
            "Table 5: ablation study (paper: Raspberry Pi 4)",
            &["Configuration", "Quantity", "Measured by"],
        );
        let device = Some("raspberry-pi-4");
        for (name, key, role) in [
            ("Full GEM", Some("full_gem"), Some(Role::Gem(Variant::Full))),
            (
                "w/o SCAR",
                Some("no_scar"),
                Some(Role::Gem(Variant::NoScar)),
            ),
            (
                "w/o quantization",
                Some("no_quantization"),
                Some(Role::Gem(Variant::NoQuant)),
            ),
            (
                "w/o knowledge preservation",
                Some("no_knowledge_preservation"),
                None,
            ),
            (
                "w/o router (EdgeBench ablation)",
                None,
                Some(Role::Gem(Variant::NoRouter)),
            ),
        ] {
            let runs = match role {
                Some(role) => with_role(self.runs, role),
                None => vec![None],
            };
            for run in runs {
                let mut rows = [
                    (
                        "F1 (mean over domains)",
                        "f1",
                        scored(run, |r| cell(r.general_score())),
                    ),
                    (
                        "Latency (ms/token)",
                        "latency_ms",
                        latency(run, device, None),
                    ),
                    ("Memory (MB)", "memory_mb", memory(run)),
                    ("Power (W)", "power_w", power(run, device, None)),
                    (
                        "GG (mean over domains)",
                        "gg",
                        scored(run, |r| cell(r.mean_gg())),
                    ),
                ];
                if role.is_none() {
                    for (_, _, m) in &mut rows {
                        m.by = "training-only loss term; seeded weights have no training to ablate"
                            .into();
                    }
                }
                for (quantity, k, m) in rows {
                    let reported = match key {
                        Some(key) => self.num(&format!("table5.{key}.{k}"))?,
                        None => None,
                    };
                    t.push(Row::new(&[name, quantity, &m.by], reported, m.cell));
                }
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_map_to_device_profiles() {
        for (p, id) in [
            ("Raspberry Pi 4", "raspberry-pi-4"),
            ("Pixel 6", "pixel-6"),
            ("iPhone 13", "iphone-13"),
            ("Custom NPU", "custom-npu"),
        ] {
            assert_eq!(device_id(p), Some(id));
            // the repository's devices/ folder, two levels above this crate
            let profile = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../devices")
                .join(format!("{id}.toml"));
            assert!(profile.is_file(), "{}", profile.display());
        }
        assert_eq!(device_id("Jetson"), None);
    }

    #[test]
    fn cells_never_hold_non_finite_values() {
        assert_eq!(cell(Some(f64::NAN)), Cell::NotMeasured);
        assert_eq!(cell(None), Cell::NotMeasured);
        assert_eq!(cell(Some(0.5)), Cell::measured(0.5));
        let e = Estimate {
            value: 0.5,
            ci_low: f64::NAN,
            ci_high: f64::NAN,
            stderr: f64::NAN,
        };
        assert_eq!(estimate_cell(Some(&e)), Cell::measured(0.5));
    }
}
