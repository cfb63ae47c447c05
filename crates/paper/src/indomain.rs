//! What "in-domain" means for each model (Table 1, Table 2, Figures 2 and
//! 3; documented in `reports/paper/README.md`).
//!
//! The paper's metrics compare `Perf(M_D, D)`, a domain-D model on its own
//! domain, with `Perf(M_D, D')` on the other domains. [`Transfer`] holds
//! those scores for one run:
//!
//! * GEM (a run whose records carry routing decisions): `M_D` is the
//!   pathway the router chose. An example is in-domain for D when its
//!   suite's domain is D and the router sent most of its tokens to D's
//!   pathway; `Perf(M_D, D')` is the score on D'-examples the router sent to
//!   D's pathway. Examples routed to the general pathway belong to no `M_D`.
//! * Any other model (no declared training domain here): the model itself
//!   plays `M_D` for every D, so `Perf(M_D, D') = Perf(M, D')`, the
//!   domain's score (as `metrics::robustness` uses).
//!
//! Out-of-domain for D is the mean of `Perf(M_D, D')` over the other
//! domains D' that have a score; GG, DSI and CDTR follow the paper's
//! formulas from these.
//!
//! Per example (Figures 2 and 3), [`side`] labels each example: for GEM,
//! in-domain when routed to its own domain's pathway, out-of-domain
//! otherwise (another domain's pathway or the general one); for other
//! models, in-domain when its suite is in the focus domain.

use super::runs::{mean, ExampleScore, PaperRun, Pathway};
use edgebench_eval::metrics::robustness::generalization_gap;
use edgebench_eval::suite::spec::Domain;
use std::collections::BTreeMap;

/// A CDTR target: a domain, or the paper's "general" (the mean of the
/// other domains).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One domain.
    Domain(Domain),
    /// The out-of-domain mean.
    General,
}

impl Target {
    /// Parses a target as the paper names it (`general`, `legal`, ...).
    pub fn parse(s: &str) -> Option<Target> {
        match s.to_ascii_lowercase().as_str() {
            "general" => Some(Target::General),
            other => Domain::parse(other).map(Target::Domain),
        }
    }
}

/// `Perf(M_D, D')` for one run, keyed `(D, D')`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transfer {
    cells: BTreeMap<(Domain, Domain), f64>,
}

impl Transfer {
    /// The scores of `run` under its model's in-domain definition.
    pub fn of(run: &PaperRun) -> Transfer {
        if run.role.is_gem() && run.has_routes() {
            Transfer::routed(&run.examples)
        } else {
            Transfer::by_domain(run)
        }
    }

    /// The domain-level view of any run (the model plays every `M_D`), as
    /// Table 1 uses for every model.
    pub fn by_domain(run: &PaperRun) -> Transfer {
        let scores: Vec<(Domain, f64)> = run
            .domains()
            .into_iter()
            .filter_map(|d| Some((d, run.domain_score(d)?)))
            .collect();
        Transfer::uniform(&scores)
    }

    /// One model for every domain: `Perf(M_D, D') = score(D')`.
    pub fn uniform(scores: &[(Domain, f64)]) -> Transfer {
        let mut cells = BTreeMap::new();
        for &(model, _) in scores {
            for &(data, s) in scores {
                cells.insert((model, data), s);
            }
        }
        Transfer { cells }
    }

    /// GEM's pathways: `Perf(M_D, D')` is the mean over D'-suites of the
    /// mean score of the suite's examples routed to D's pathway (suites
    /// weigh equally, as in domain scores).
    pub fn routed(examples: &[ExampleScore]) -> Transfer {
        let mut by_suite: BTreeMap<(Domain, Domain, &str), Vec<f64>> = BTreeMap::new();
        for e in examples {
            if let Some(Pathway::Domain(model)) = e.route {
                by_suite
                    .entry((model, e.domain, e.suite.as_str()))
                    .or_default()
                    .push(e.score);
            }
        }
        let mut by_pair: BTreeMap<(Domain, Domain), Vec<f64>> = BTreeMap::new();
        for ((model, data, _), scores) in by_suite {
            if let Some(m) = mean(scores) {
                by_pair.entry((model, data)).or_default().push(m);
            }
        }
        let cells = by_pair
            .into_iter()
            .filter_map(|(k, v)| Some((k, mean(v)?)))
            .collect();
        Transfer { cells }
    }

    /// `Perf(M_model, data)`.
    pub fn perf(&self, model: Domain, data: Domain) -> Option<f64> {
        self.cells.get(&(model, data)).copied()
    }

    /// In-domain score of D: `Perf(M_D, D)`.
    pub fn in_domain(&self, d: Domain) -> Option<f64> {
        self.perf(d, d)
    }

    /// Out-of-domain score of D: the mean of `Perf(M_D, D')` over the
    /// other domains with a score.
    pub fn out_of_domain(&self, d: Domain) -> Option<f64> {
        mean(
            self.cells
                .iter()
                .filter(|((m, data), _)| *m == d && *data != d)
                .map(|(_, &v)| v),
        )
    }

    /// `GG = (in - out) / in`.
    pub fn gg(&self, d: Domain) -> Option<f64> {
        generalization_gap(self.in_domain(d)?, self.out_of_domain(d)?)
    }

    /// `DSI = in / out` (the score on D over the mean of the others).
    pub fn dsi(&self, d: Domain) -> Option<f64> {
        ratio(self.in_domain(d)?, self.out_of_domain(d)?)
    }

    /// `CDTR(D -> target) = Perf(M_D, target) / Perf(M_D, D)`; the general
    /// target uses the out-of-domain mean.
    pub fn cdtr(&self, d: Domain, target: Target) -> Option<f64> {
        let to = match target {
            Target::Domain(t) => self.perf(d, t)?,
            Target::General => self.out_of_domain(d)?,
        };
        ratio(to, self.in_domain(d)?)
    }
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b != 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

/// In- or out-of-domain, for one example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// In-domain.
    In,
    /// Out-of-domain.
    Out,
}

/// The side of `e` for `run` (module documentation); `None` for a GEM
/// example without routing decisions.
pub fn side(run: &PaperRun, e: &ExampleScore, focus: Domain) -> Option<Side> {
    if run.role.is_gem() && run.has_routes() {
        let route = e.route?;
        Some(if route == Pathway::Domain(e.domain) {
            Side::In
        } else {
            Side::Out
        })
    } else if e.domain == focus {
        Some(Side::In)
    } else {
        Some(Side::Out)
    }
}

/// The per-example scores of `run` on each side.
pub fn split(run: &PaperRun, focus: Domain) -> (Vec<f64>, Vec<f64>) {
    let mut inside = Vec::new();
    let mut outside = Vec::new();
    for e in &run.examples {
        match side(run, e, focus) {
            Some(Side::In) => inside.push(e.score),
            Some(Side::Out) => outside.push(e.score),
            None => {}
        }
    }
    (inside, outside)
}

/// The focus domain of Table 1 and of Figures 2 and 3 for models without
/// routing: `requested`, else healthcare (the paper's case study) when a
/// run scored it, else the first of the paper's domains a run scored.
pub fn focus_domain(runs: &[PaperRun], requested: Option<Domain>) -> Domain {
    requested.unwrap_or_else(|| {
        let scored = |d: Domain| runs.iter().any(|r| r.domain_score(d).is_some());
        std::iter::once(Domain::Healthcare)
            .chain(Domain::ALL)
            .find(|&d| scored(d))
            .unwrap_or(Domain::Healthcare)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgebench_eval::metrics::robustness::dsi;
    use edgebench_eval::suite::spec::Metric;

    fn ex(suite: &str, domain: Domain, route: Option<Pathway>, score: f64) -> ExampleScore {
        ExampleScore {
            suite: suite.into(),
            domain,
            metric: Metric::Acc,
            score,
            route,
        }
    }

    #[test]
    fn uniform_matches_the_paper_formulas() {
        // The paper's healthcare example with three other domains.
        let t = Transfer::uniform(&[
            (Domain::Healthcare, 0.95),
            (Domain::Legal, 0.40),
            (Domain::Finance, 0.45),
            (Domain::Stem, 0.50),
        ]);
        let h = Domain::Healthcare;
        assert_eq!(t.in_domain(h), Some(0.95));
        assert!((t.out_of_domain(h).unwrap() - 0.45).abs() < 1e-12);
        assert!((t.gg(h).unwrap() - 0.5263157894736842).abs() < 1e-12);
        let want_dsi = dsi(&[0.95, 0.40, 0.45, 0.50], 0).unwrap();
        assert!((t.dsi(h).unwrap() - want_dsi).abs() < 1e-12);
        assert!((t.cdtr(h, Target::Domain(Domain::Legal)).unwrap() - 0.40 / 0.95).abs() < 1e-12);
        assert!((t.cdtr(h, Target::General).unwrap() - 0.45 / 0.95).abs() < 1e-12);
        assert_eq!(t.in_domain(Domain::Multilingual), None);
    }

    #[test]
    fn routed_uses_the_chosen_pathway_and_balances_suites() {
        let h = Some(Pathway::Domain(Domain::Healthcare));
        let g = Some(Pathway::General);
        let t = Transfer::routed(&[
            // healthcare pathway on healthcare data: suite a mean 1.0, suite b mean 0.0
            ex("a", Domain::Healthcare, h, 1.0),
            ex("a", Domain::Healthcare, h, 1.0),
            ex("a", Domain::Healthcare, h, 1.0),
            ex("b", Domain::Healthcare, h, 0.0),
            // legal data sent to the healthcare pathway
            ex("c", Domain::Legal, h, 0.25),
            // general pathway: no M_D
            ex("a", Domain::Healthcare, g, 0.0),
            ex("c", Domain::Legal, None, 0.0),
        ]);
        let hc = Domain::Healthcare;
        assert_eq!(t.in_domain(hc), Some(0.5));
        assert_eq!(t.out_of_domain(hc), Some(0.25));
        assert_eq!(t.gg(hc), Some(0.5));
        assert_eq!(t.dsi(hc), Some(2.0));
        assert_eq!(t.cdtr(hc, Target::Domain(Domain::Legal)), Some(0.5));
        assert_eq!(t.in_domain(Domain::Legal), None);
        assert_eq!(t.gg(Domain::Legal), None);
    }

    #[test]
    fn targets_parse_as_printed() {
        assert_eq!(Target::parse("general"), Some(Target::General));
        assert_eq!(Target::parse("Legal"), Some(Target::Domain(Domain::Legal)));
        assert_eq!(Target::parse("nowhere"), None);
    }
}
