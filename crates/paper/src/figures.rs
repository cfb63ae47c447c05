//! Figures 1, 2, 3 and 5 of the paper redrawn from the runs (PNG and SVG,
//! plotters). Figure 4, the architecture, is in [`super::arch`].

use super::indomain::split;
use super::reported::{Reported, ReportedError};
use super::runs::PaperRun;
use edgebench_eval::report::plots::{ensure_font, PALETTE};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};

/// Something drawn the same way into a PNG and an SVG.
pub trait Draw {
    /// Draws onto `root` (already sized).
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static;
}

/// Writes `<stem>.png` and `<stem>.svg` of `size` pixels into `dir`.
pub fn write_both(
    dir: &Path,
    stem: &str,
    size: (u32, u32),
    fig: &impl Draw,
) -> Result<Vec<PathBuf>, String> {
    ensure_font()?;
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    fig.draw(BitMapBackend::new(&png, size).into_drawing_area())?;
    fig.draw(SVGBackend::new(&svg, size).into_drawing_area())?;
    Ok(vec![png, svg])
}

/// Turns a plotters drawing error into text.
fn err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> String {
    e.to_string()
}

/// Text style anchored at `h`, vertically centred.
fn anchored(size: u32, h: HPos) -> TextStyle<'static> {
    TextStyle::from(("sans-serif", size).into_font()).pos(Pos::new(h, VPos::Center))
}

/// A parameter count as `10 k`, `1.5 M`, `8 B`.
pub fn human(n: f64) -> String {
    let (v, unit) = if n >= 1e9 {
        (n / 1e9, "B")
    } else if n >= 1e6 {
        (n / 1e6, "M")
    } else if n >= 1e3 {
        (n / 1e3, "k")
    } else {
        (n, "")
    };
    let s = format!("{v:.1}");
    let s = s.strip_suffix(".0").unwrap_or(&s);
    format!("{s} {unit}").trim_end().to_owned()
}

/// One model on Figure 1.
#[derive(Debug, Clone, PartialEq)]
pub struct SizePoint {
    /// Year.
    pub year: f64,
    /// Parameters.
    pub params: f64,
    /// Label.
    pub label: String,
    /// Measured here (else a milestone the paper reports).
    pub measured: bool,
}

/// Figure 1: model size by year, log scale.
pub struct ModelSize {
    /// The points.
    pub points: Vec<SizePoint>,
}

impl ModelSize {
    /// The paper's milestones (`figure1.*` in `reported.toml`) and every
    /// run whose manifest gives a parameter count, at the run's year.
    pub fn new(reported: &Reported, runs: &[PaperRun]) -> Result<ModelSize, ReportedError> {
        let mut ids: Vec<&str> = Vec::new();
        for e in reported.table("figure1") {
            let id = e.key.split('.').nth(1).unwrap_or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let mut points = Vec::new();
        for id in ids {
            let params = reported.number(&format!("figure1.{id}.params_m"))? * 1e6;
            let year = reported.number(&format!("figure1.{id}.year"))?;
            let model = reported.text(&format!("figure1.{id}.model"))?;
            points.push(SizePoint {
                year,
                params,
                label: format!("{year} {model}, {}", human(params)),
                measured: false,
            });
        }
        let mut seen = Vec::new();
        for r in runs {
            let (Some(p), Some(y)) = (r.parameters(), r.year()) else {
                continue;
            };
            if seen.contains(&r.model()) {
                continue;
            }
            seen.push(r.model());
            points.push(SizePoint {
                year: f64::from(y),
                params: p as f64,
                label: format!("{} (measured here), {}", r.model(), human(p as f64)),
                measured: true,
            });
        }
        Ok(ModelSize { points })
    }
}

impl Draw for ModelSize {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(err)?;
        let years = self.points.iter().map(|p| p.year);
        let x0 = years.clone().fold(f64::INFINITY, f64::min).min(2005.0) - 1.0;
        let x1 = years.fold(f64::NEG_INFINITY, f64::max).max(2025.0) + 1.0;
        let decade = |p: f64| p.log10();
        let lo = self
            .points
            .iter()
            .map(|p| decade(p.params).floor())
            .fold(3.0, f64::min);
        let hi = self
            .points
            .iter()
            .map(|p| decade(p.params).ceil())
            .fold(9.0, f64::max);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Figure 1: edge model size by year (log scale)",
                ("sans-serif", 24),
            )
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, (10f64.powf(lo)..10f64.powf(hi)).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("year")
            .y_desc("parameters")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| human(*y))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        let paper: Vec<&SizePoint> = self.points.iter().filter(|p| !p.measured).collect();
        let blue = PALETTE[0];
        let red = PALETTE[3];
        chart
            .draw_series(LineSeries::new(
                paper.iter().map(|p| (p.year, p.params)),
                blue.stroke_width(2),
            ))
            .map_err(err)?
            .label("reported by the paper (Section 1.1)")
            .legend(move |(x, y)| Circle::new((x + 6, y), 5, blue.filled()));
        // Labels go right of early points; later ones (near the right
        // edge) go left, above a rising line and below a falling one.
        let (left, right) = (anchored(14, HPos::Left), anchored(14, HPos::Right));
        chart
            .draw_series(paper.iter().enumerate().map(|(i, p)| {
                let falling = i > 0 && paper[i - 1].params > p.params;
                let (style, offset) = if p.year < 2019.0 {
                    (left.clone(), (10, 12))
                } else if falling {
                    (right.clone(), (-10, 16))
                } else {
                    (right.clone(), (-10, -14))
                };
                EmptyElement::at((p.year, p.params))
                    + Circle::new((0, 0), 6, blue.filled())
                    + Text::new(p.label.clone(), offset, style)
            }))
            .map_err(err)?;
        let mut measured: Vec<&SizePoint> = self.points.iter().filter(|p| p.measured).collect();
        measured.sort_by(|a, b| b.params.total_cmp(&a.params));
        chart
            .draw_series(measured.iter().enumerate().map(|(i, p)| {
                EmptyElement::at((p.year, p.params))
                    + TriangleMarker::new((0, 0), 8, red.filled())
                    + Text::new(p.label.clone(), (-12, 18 * i as i32 - 6), right.clone())
            }))
            .map_err(err)?
            .label("measured here (parameters from the run's manifest)")
            .legend(move |(x, y)| TriangleMarker::new((x + 6, y), 6, red.filled()));
        edgebench_eval::report::plots::series_legend(
            &mut chart,
            SeriesLabelPosition::UpperLeft,
            14,
        )?;
        root.present().map_err(err)
    }
}

/// One panel of Figure 2.
#[derive(Debug, Clone, PartialEq)]
pub struct DensityPanel {
    /// Model and in-domain definition.
    pub title: String,
    /// In-domain per-example scores.
    pub inside: Vec<f64>,
    /// Out-of-domain per-example scores.
    pub outside: Vec<f64>,
}

/// Figure 2: density of per-example scores, in- vs out-of-domain, one
/// panel per run.
pub struct Density {
    /// The panels.
    pub panels: Vec<DensityPanel>,
}

/// Bins of the Figure 2 histograms over [0, 1].
pub const BINS: usize = 10;

/// Histogram density of `xs` over [0, 1] (values clamped; 1.0 falls in the
/// last bin): each bin's share divided by the bin width, so the bars
/// integrate to 1.
pub fn histogram_density(xs: &[f64]) -> Vec<f64> {
    let mut counts = [0usize; BINS];
    for &x in xs.iter().filter(|x| x.is_finite()) {
        let i = ((x.clamp(0.0, 1.0) * BINS as f64) as usize).min(BINS - 1);
        counts[i] += 1;
    }
    let n = xs.iter().filter(|x| x.is_finite()).count().max(1) as f64;
    counts.iter().map(|&c| c as f64 / n * BINS as f64).collect()
}

impl Density {
    /// Per-example scores of each run split by [`super::indomain::side`].
    pub fn new(runs: &[PaperRun], focus: edgebench_eval::suite::spec::Domain) -> Density {
        let panels = runs
            .iter()
            .map(|r| {
                let (inside, outside) = split(r, focus);
                let how = if r.role.is_gem() && r.has_routes() {
                    "in = routed to its own domain's pathway".to_owned()
                } else {
                    format!("in = {focus}")
                };
                DensityPanel {
                    title: format!("{} [{}]: {how}", r.model(), r.role.label()),
                    inside,
                    outside,
                }
            })
            .collect();
        Density { panels }
    }
}

impl Draw for Density {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(err)?;
        let root = root
            .titled(
                "Figure 2: density of per-example scores, in-domain vs out-of-domain (histogram, 10 bins)",
                ("sans-serif", 22),
            )
            .map_err(err)?;
        let n = self.panels.len().max(1);
        let cols = n.min(2);
        let rows = n.div_ceil(cols);
        let areas = root.split_evenly((rows, cols));
        for (panel, area) in self.panels.iter().zip(areas) {
            let dens_in = histogram_density(&panel.inside);
            let dens_out = histogram_density(&panel.outside);
            let top = dens_in
                .iter()
                .chain(&dens_out)
                .fold(1.0f64, |a, &b| a.max(b))
                * 1.25;
            let mut chart = ChartBuilder::on(&area)
                .caption(&panel.title, ("sans-serif", 15))
                .margin(10)
                .x_label_area_size(34)
                .y_label_area_size(44)
                .build_cartesian_2d(0f64..1f64, 0f64..top)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("per-example score")
                .y_desc("density")
                .label_style(("sans-serif", 12))
                .draw()
                .map_err(err)?;
            let width = 1.0 / BINS as f64;
            for (dens, color, name, k, shift) in [
                (&dens_in, PALETTE[0], "in-domain", panel.inside.len(), 0.0),
                (
                    &dens_out,
                    PALETTE[1],
                    "out-of-domain",
                    panel.outside.len(),
                    0.5,
                ),
            ] {
                let bars = dens.iter().enumerate().map(move |(i, &d)| {
                    let x = i as f64 * width + shift * width;
                    Rectangle::new(
                        [(x + 0.05 * width, 0.0), (x + 0.5 * width, d)],
                        color.filled(),
                    )
                });
                chart
                    .draw_series(bars)
                    .map_err(err)?
                    .label(format!("{name} (n = {k})"))
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                    });
            }
            edgebench_eval::report::plots::series_legend(
                &mut chart,
                SeriesLabelPosition::UpperMiddle,
                13,
            )?;
        }
        root.present().map_err(err)
    }
}

/// One model's bars on Figure 3: mean score and example count per side.
#[derive(Debug, Clone, PartialEq)]
pub struct InOut {
    /// Model name.
    pub model: String,
    /// In-domain mean and count.
    pub inside: (Option<f64>, usize),
    /// Out-of-domain mean and count.
    pub outside: (Option<f64>, usize),
}

/// Figure 3: mean in- and out-of-domain score per model (the example sets
/// of Figure 2), each bar labelled with its value and count.
pub struct InVsOut {
    /// One entry per run.
    pub models: Vec<InOut>,
}

impl InVsOut {
    /// The means of each run's Figure 2 sets.
    pub fn new(runs: &[PaperRun], focus: edgebench_eval::suite::spec::Domain) -> InVsOut {
        let side = |v: &[f64]| (super::runs::mean(v.iter().copied()), v.len());
        let models = runs
            .iter()
            .map(|r| {
                let (i, o) = split(r, focus);
                InOut {
                    model: r.model().to_owned(),
                    inside: side(&i),
                    outside: side(&o),
                }
            })
            .collect();
        InVsOut { models }
    }
}

impl Draw for InVsOut {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(err)?;
        let n = self.models.len().max(1) as f64;
        let bottom = -0.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Figure 3: mean per-example score, in-domain vs out-of-domain, per model",
                ("sans-serif", 22),
            )
            .margin(14)
            .x_label_area_size(10)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n, bottom..1.12)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_x_axis()
            .x_labels(0)
            .y_desc("mean per-example score")
            .y_label_formatter(&|y| {
                if *y < 0.0 {
                    String::new()
                } else {
                    format!("{y:.1}")
                }
            })
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, 0.0), (n, 0.0)],
                BLACK,
            )))
            .map_err(err)?;
        let center = anchored(13, HPos::Center);
        chart
            .draw_series(self.models.iter().enumerate().map(|(i, m)| {
                Text::new(
                    m.model.clone(),
                    (i as f64 + 0.5, bottom / 2.0),
                    center.clone(),
                )
            }))
            .map_err(err)?;
        for (k, name) in ["in-domain", "out-of-domain"].into_iter().enumerate() {
            let color = PALETTE[k];
            let x0 = |i: usize| i as f64 + 0.1 + 0.4 * k as f64;
            let value = |m: &InOut| if k == 0 { m.inside } else { m.outside };
            chart
                .draw_series(self.models.iter().enumerate().filter_map(|(i, m)| {
                    let v = value(m).0?;
                    Some(Rectangle::new(
                        [(x0(i), 0.0), (x0(i) + 0.38, v.clamp(0.0, 1.0))],
                        color.filled(),
                    ))
                }))
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
            chart
                .draw_series(self.models.iter().enumerate().map(|(i, m)| {
                    let (v, count) = value(m);
                    let text = match v {
                        Some(v) => format!("{v:.2} (n={count})"),
                        None => "no examples".to_owned(),
                    };
                    let y = v.unwrap_or(0.0).clamp(0.0, 1.0) + 0.03;
                    Text::new(text, (x0(i) + 0.19, y), anchored(12, HPos::Center))
                }))
                .map_err(err)?;
        }
        edgebench_eval::report::plots::series_legend(
            &mut chart,
            SeriesLabelPosition::UpperRight,
            14,
        )?;
        root.present().map_err(err)
    }
}

/// A reported region of Figure 5: GG and DSI ranges the paper claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// Whose claim.
    pub label: String,
    /// GG range.
    pub gg: (f64, f64),
    /// DSI range.
    pub dsi: (f64, f64),
}

/// One model's points on Figure 5.
#[derive(Debug, Clone, PartialEq)]
pub struct Scatter {
    /// Model label.
    pub label: String,
    /// `(domain, GG, DSI)` per domain.
    pub points: Vec<(String, f64, f64)>,
}

/// Figure 5: DSI against GG per domain, one series per model, with the
/// paper's claimed regions.
pub struct DsiGg {
    /// Measured series.
    pub series: Vec<Scatter>,
    /// The paper's claims.
    pub claims: Vec<Claim>,
}

/// Two-letter-ish short name of a domain for point labels.
fn short(domain: &str) -> String {
    match domain {
        "domain-adaptive" => "dapt".into(),
        "conversational" => "conv".into(),
        "multilingual" => "multi".into(),
        "commonsense" => "cs".into(),
        "healthcare" => "health".into(),
        other => other.into(),
    }
}

impl DsiGg {
    /// Every run's per-domain GG and DSI (`metrics::robustness`: each
    /// domain against the mean of the others) and the paper's claims for
    /// GEM and MobileBERT (Section 5.2).
    pub fn new(reported: &Reported, runs: &[PaperRun]) -> Result<DsiGg, ReportedError> {
        let series = runs
            .iter()
            .map(|r| {
                let rob = &r.scores.robustness;
                let points = rob
                    .gg
                    .iter()
                    .filter_map(|(d, gg)| {
                        let dsi = rob.dsi.iter().find(|(x, _)| x == d)?.1.value;
                        (gg.value.is_finite() && dsi.is_finite())
                            .then(|| (short(d.as_str()), gg.value, dsi))
                    })
                    .collect();
                Scatter {
                    label: format!("{} [{}]", r.model(), r.role.label()),
                    points,
                }
            })
            .collect();
        let gem_gg = reported.number("claims.gem.gg")?;
        let claims = vec![
            Claim {
                label: "paper: GEM (GG 0.10, DSI 1.5-2.1)".into(),
                gg: (gem_gg, gem_gg),
                dsi: reported.range("claims.gem.dsi")?,
            },
            Claim {
                label: "paper: MobileBERT (GG 0.20-0.55, DSI 2.3-3.0)".into(),
                gg: reported.range("claims.mobilebert.gg")?,
                dsi: reported.range("claims.mobilebert.dsi")?,
            },
        ];
        Ok(DsiGg { series, claims })
    }
}

impl Draw for DsiGg {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(err)?;
        let all = self.series.iter().flat_map(|s| s.points.iter());
        let gx = all.clone().map(|p| p.1);
        let dy = all.map(|p| p.2);
        let x0 = gx.clone().fold(-0.1f64, f64::min) - 0.05;
        let x1 = gx.fold(0.6f64, f64::max) + 0.05;
        let y0 = dy.clone().fold(0.8f64, f64::min) - 0.1;
        let y1 = dy.fold(3.2f64, f64::max) + 0.2;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Figure 5: DSI vs GG per domain (measured points, the paper's claimed regions)",
                ("sans-serif", 22),
            )
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("GG = (in - out) / in")
            .y_desc("DSI = in / mean of other domains")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        // With out = the mean of the other domains, DSI = 1 / (1 - GG).
        let curve: Vec<(f64, f64)> = (0..=400)
            .map(|i| x0 + (x1 - x0) * i as f64 / 400.0)
            .filter(|g| *g < 1.0)
            .map(|g| (g, 1.0 / (1.0 - g)))
            .filter(|(_, d)| *d >= y0 && *d <= y1)
            .collect();
        let grey = RGBColor(150, 150, 150);
        chart
            .draw_series(LineSeries::new(curve, grey.stroke_width(2)))
            .map_err(err)?
            .label("DSI = 1 / (1 - GG): both from the same two scores")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 14, y)], grey.stroke_width(2))
            });
        for (k, c) in self.claims.iter().enumerate() {
            let color = PALETTE[4 + k % 2];
            let pad = 0.006;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(c.gg.0 - pad, c.dsi.0), (c.gg.1 + pad, c.dsi.1)],
                    color.mix(0.25).filled(),
                )))
                .map_err(err)?
                .label(c.label.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.mix(0.4).filled())
                });
        }
        let label_style = anchored(12, HPos::Left);
        for (k, s) in self.series.iter().enumerate() {
            let color = PALETTE[k % 4];
            chart
                .draw_series(s.points.iter().map(|(d, gg, dsi)| {
                    EmptyElement::at((*gg, *dsi))
                        + Circle::new((0, 0), 6, color.filled())
                        + Text::new(d.clone(), (8, -8), label_style.clone())
                }))
                .map_err(err)?
                .label(s.label.clone())
                .legend(move |(x, y)| Circle::new((x + 6, y), 5, color.filled()));
        }
        edgebench_eval::report::plots::series_legend(
            &mut chart,
            SeriesLabelPosition::LowerRight,
            13,
        )?;
        root.present().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_counts() {
        assert_eq!(human(10_000.0), "10 k");
        assert_eq!(human(25_100_000.0), "25.1 M");
        assert_eq!(human(8.4e9), "8.4 B");
        assert_eq!(human(500.0), "500");
    }

    #[test]
    fn histogram_integrates_to_one_and_keeps_one_in_the_last_bin() {
        let d = histogram_density(&[0.0, 1.0, 1.0, 0.55, f64::NAN]);
        assert_eq!(d.len(), BINS);
        let area: f64 = d.iter().sum::<f64>() / BINS as f64;
        assert!((area - 1.0).abs() < 1e-12);
        assert_eq!(d[0], 2.5);
        assert_eq!(d[5], 2.5);
        assert_eq!(d[9], 5.0);
        assert!(histogram_density(&[]).iter().all(|&x| x == 0.0));
    }
}
