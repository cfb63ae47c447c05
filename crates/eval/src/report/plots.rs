//! Plots with plotters, written as PNG and SVG: grouped bars with
//! confidence-interval whiskers, and stacked panels of lines over shared x
//! values (the bits sweep).

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Font files tried in order (after `$EDGEBENCH_FONT`).
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/system/fonts/Roboto-Regular.ttf",
];

/// Registers a sans-serif TTF font for plotters once; the error says how to get one.
pub fn ensure_font() -> Result<(), String> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let mut paths: Vec<PathBuf> = std::env::var_os("EDGEBENCH_FONT").map(PathBuf::from).into_iter().collect();
        paths.extend(FONT_CANDIDATES.iter().map(PathBuf::from));
        for p in paths {
            if let Ok(bytes) = std::fs::read(&p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        Err("no TrueType font found for plots: install fonts-dejavu-core or set EDGEBENCH_FONT to a .ttf file".into())
    })
    .clone()
}

/// A series of bars: name, colour, and per-category (value, ci_low, ci_high).
pub struct Series {
    pub name: String,
    pub color: RGBColor,
    pub values: Vec<Option<(f64, f64, f64)>>,
}

/// A grouped bar chart description.
pub struct BarChart {
    pub title: String,
    pub y_label: String,
    pub categories: Vec<String>,
    pub series: Vec<Series>,
    pub y_max: Option<f64>,
}

/// Palette for series.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Draws a chart's series legend the one way every EdgeBench figure does
/// (white, slightly translucent box with a black border) at `position`.
pub fn series_legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
    font_size: u32,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", font_size))
        .draw()
        .map_err(|e| e.to_string())
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, c: &BarChart) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let n = c.categories.len().max(1);
    let top = c.y_max.unwrap_or_else(|| {
        c.series
            .iter()
            .flat_map(|s| s.values.iter().flatten().map(|v| v.2.max(v.0)))
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max)
            * 1.15
    });
    let top = if top > 0.0 { top } else { 1.0 };
    let bottom = -0.09 * top;
    let mut chart = ChartBuilder::on(&root)
        .caption(&c.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(10)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n as f64, bottom..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .x_labels(0)
        .light_line_style(WHITE)
        .y_desc(c.y_label.as_str())
        .y_label_formatter(&|y| {
            if *y < 0.0 {
                String::new()
            } else {
                format!("{y:.2}")
            }
        })
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    // Category names under the bars, in data coordinates below zero.
    let label_style =
        TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
    chart
        .draw_series(c.categories.iter().enumerate().map(|(i, name)| {
            Text::new(
                name.clone(),
                (i as f64 + 0.5, bottom / 2.0),
                label_style.clone(),
            )
        }))
        .map_err(err)?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 0.0), (n as f64, 0.0)],
            BLACK,
        )))
        .map_err(err)?;
    let k = c.series.len().max(1) as f64;
    let width = 0.8 / k;
    for (si, s) in c.series.iter().enumerate() {
        let color = s.color;
        let bars = s.values.iter().enumerate().filter_map(|(i, v)| {
            let (val, _, _) = (*v)?;
            let x0 = i as f64 + 0.1 + si as f64 * width;
            Some(Rectangle::new(
                [(x0, 0.0), (x0 + width * 0.9, val.max(0.0))],
                color.filled(),
            ))
        });
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(s.name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        let whiskers = s.values.iter().enumerate().filter_map(|(i, v)| {
            let (_, lo, hi) = (*v)?;
            (lo.is_finite() && hi.is_finite()).then(|| {
                let xm = i as f64 + 0.1 + si as f64 * width + width * 0.45;
                PathElement::new(vec![(xm, lo), (xm, hi)], BLACK.stroke_width(2))
            })
        });
        chart.draw_series(whiskers).map_err(err)?;
    }
    series_legend(&mut chart, SeriesLabelPosition::UpperMiddle, 14)?;
    root.present().map_err(err)
}

/// Writes `<stem>.png` and `<stem>.svg` into `dir`; returns the two paths.
pub fn write_bar_chart(dir: &Path, stem: &str, chart: &BarChart) -> Result<Vec<PathBuf>, String> {
    ensure_font()?;
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    let size = (1100u32, 560u32);
    draw(BitMapBackend::new(&png, size).into_drawing_area(), chart)?;
    draw(SVGBackend::new(&svg, size).into_drawing_area(), chart)?;
    Ok(vec![png, svg])
}

/// One panel of a [`LineChart`]: series whose values line up with the chart's x values.
pub struct LinePanel {
    pub title: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

/// Line panels stacked vertically over the same x values; `(value, ci_low,
/// ci_high)` points get whiskers where the interval is finite.
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub x: Vec<f64>,
    pub panels: Vec<LinePanel>,
}

/// Finite y extent of a panel's values and intervals, padded; `(0, 1)` when empty.
fn y_range(p: &LinePanel) -> (f64, f64) {
    let vals: Vec<f64> = p
        .series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .flat_map(|&(v, lo, hi)| [v, lo, hi])
        .filter(|v| v.is_finite())
        .collect();
    let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = if hi > lo { hi - lo } else { hi.abs().max(0.5) };
    (lo - 0.1 * span, hi + 0.1 * span)
}

/// A legend drawn beside a panel: a short line and the name of each series.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Series],
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let style =
        TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, s) in series.iter().enumerate() {
        let y = 48 + 22 * i as i32;
        area.draw(&PathElement::new(
            vec![(4, y), (26, y)],
            s.color.stroke_width(3),
        ))
        .map_err(err)?;
        area.draw(&Text::new(s.name.clone(), (32, y), style.clone()))
            .map_err(err)?;
    }
    Ok(())
}

fn draw_lines<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, c: &LineChart) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(&c.title, ("sans-serif", 22)).map_err(err)?;
    let xmin = c.x.iter().copied().fold(f64::INFINITY, f64::min);
    let xmax = c.x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (xmin, xmax) = if xmin.is_finite() {
        (xmin - 0.5, xmax + 0.5)
    } else {
        (0.0, 1.0)
    };
    let ticks = (xmax - xmin).round().max(1.0) as usize + 1;
    for (area, panel) in root
        .split_evenly((c.panels.len().max(1), 1))
        .iter()
        .zip(&c.panels)
    {
        let (ylo, yhi) = y_range(panel);
        let width = area.dim_in_pixel().0;
        let (plot_area, legend_area) = area.split_horizontally(width.saturating_sub(260));
        draw_legend(&legend_area, &panel.series)?;
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(&panel.title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(xmin..xmax, ylo..yhi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(ticks)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.2}"))
            .x_desc(c.x_label.as_str())
            .y_desc(panel.y_label.as_str())
            .light_line_style(WHITE)
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        let ns = panel.series.len() as f64;
        for (si, s) in panel.series.iter().enumerate() {
            let color = s.color;
            // series are nudged apart along x so equal values and whiskers stay visible
            let dodge = (si as f64 - (ns - 1.0) / 2.0) * 0.04;
            let pts: Vec<(f64, (f64, f64, f64))> =
                c.x.iter()
                    .zip(&s.values)
                    .filter_map(|(&x, v)| v.filter(|v| v.0.is_finite()).map(|v| (x + dodge, v)))
                    .collect();
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|&(x, v)| (x, v.0)),
                    color.stroke_width(2),
                ))
                .map_err(err)?;
            chart
                .draw_series(
                    pts.iter()
                        .map(|&(x, v)| Circle::new((x, v.0), 4, color.filled())),
                )
                .map_err(err)?;
            chart
                .draw_series(
                    pts.iter()
                        .filter(|(_, v)| v.1.is_finite() && v.2.is_finite())
                        .map(|&(x, v)| {
                            PathElement::new(vec![(x, v.1), (x, v.2)], color.stroke_width(1))
                        }),
                )
                .map_err(err)?;
        }
    }
    root.present().map_err(err)
}

/// Writes `<stem>.png` and `<stem>.svg` into `dir`; returns the two paths.
pub fn write_line_chart(dir: &Path, stem: &str, chart: &LineChart) -> Result<Vec<PathBuf>, String> {
    ensure_font()?;
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    let size = (1200u32, 40 + 320 * chart.panels.len().max(1) as u32);
    draw_lines(BitMapBackend::new(&png, size).into_drawing_area(), chart)?;
    draw_lines(SVGBackend::new(&svg, size).into_drawing_area(), chart)?;
    Ok(vec![png, svg])
}
