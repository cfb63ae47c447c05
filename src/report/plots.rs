//! Plots with plotters, written as PNG and SVG: grouped bars with
//! confidence-interval whiskers.

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
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

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
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperMiddle)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)?;
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
