//! Figure 4: GEM's architecture drawn from a built model's `gem.toml`
//! (router -> 9 pathways -> SCAR -> quantized head), with the layer counts,
//! widths and bit widths of that build.

use super::figures::{human, Draw};
use edgebench_runtime::gem::{config::DOMAINS, GemConfig, VOCAB};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Figure 4 for one GEM configuration.
pub struct Architecture<'a> {
    /// The built model's configuration.
    pub config: &'a GemConfig,
}

/// Width and height of the figure, pixels.
pub const SIZE: (u32, u32) = (1400, 860);

/// The text lines of each box of Figure 4. Every number comes from the
/// configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Boxes {
    /// Input tokens.
    pub input: Vec<String>,
    /// The token router.
    pub router: Vec<String>,
    /// The 9 pathways: the 8 domains in `DOMAINS` order, then general.
    pub pathways: Vec<Vec<String>>,
    /// SCAR (or dense attention when disabled).
    pub scar: Vec<String>,
    /// The quantized output head.
    pub head: Vec<String>,
}

/// The boxes of Figure 4 for `c`.
pub fn box_lines(c: &GemConfig) -> Boxes {
    let r = &c.router;
    let p = &c.pathways;
    let input = vec![format!(
        "input tokens (byte-level, vocabulary {VOCAB}), context {}",
        c.max_context
    )];
    let router = vec![
        "Dynamic token router".to_owned(),
        format!(
            "{} layers, {} hidden, {} heads, FFN {}, {}-bit weights",
            r.layers, r.hidden, r.heads, r.ffn, r.bits
        ),
        format!(
            "P(d | x) = softmax(W_r h), W_r {} x {}; domain if max P > tau = {}, else general",
            DOMAINS.len(),
            r.hidden,
            r.tau
        ),
    ];
    let pathways = DOMAINS
        .iter()
        .map(|d| d.replace('_', "-"))
        .chain(std::iter::once("general".to_owned()))
        .enumerate()
        .map(|(i, name)| {
            let bits = if i < DOMAINS.len() {
                p.domain_bits
            } else {
                p.general_bits
            };
            vec![
                name,
                format!("{} layers", p.layers),
                format!("{} hidden", p.hidden),
                format!("{} heads", p.heads),
                format!("FFN {}", p.ffn),
                format!("{bits}-bit"),
            ]
        })
        .collect();
    let scar = if c.scar.enabled {
        vec![
            "SCAR: sparse cluster attention in every pathway layer".to_owned(),
            format!(
                "k-means (cosine distance) into k = {} clusters, {} iterations; attention only within a cluster",
                c.scar.k, c.scar.iterations
            ),
        ]
    } else {
        vec![
            "dense causal attention (SCAR disabled in this build)".to_owned(),
            String::new(),
        ]
    };
    let head = vec![
        format!("Quantized output head: {}-bit weights", c.output.bits),
        format!(
            "{} -> {VOCAB} logits; quantization blocks of {} weights",
            p.hidden, p.block_size
        ),
    ];
    Boxes {
        input,
        router,
        pathways,
        scar,
        head,
    }
}

fn err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> String {
    e.to_string()
}

/// A filled box with centred lines of text (the first in bold size).
fn text_box<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (x0, y0, x1, y1): (i32, i32, i32, i32),
    fill: RGBColor,
    lines: &[String],
    size: u32,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.draw(&Rectangle::new([(x0, y0), (x1, y1)], fill.filled()))
        .map_err(err)?;
    root.draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(2)))
        .map_err(err)?;
    let style = |s: u32| {
        TextStyle::from(("sans-serif", s).into_font()).pos(Pos::new(HPos::Center, VPos::Center))
    };
    let step = (size + 8) as i32;
    let n = lines.len() as i32;
    let top = (y0 + y1) / 2 - (n - 1) * step / 2;
    for (i, line) in lines.iter().enumerate() {
        let s = if i == 0 { size + 2 } else { size };
        root.draw(&Text::new(
            line.clone(),
            ((x0 + x1) / 2, top + i as i32 * step),
            style(s),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// A line from `a` to `b` with a head at `b`.
fn arrow<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    a: (i32, i32),
    b: (i32, i32),
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.draw(&PathElement::new(vec![a, b], BLACK.stroke_width(2)))
        .map_err(err)?;
    let (dx, dy) = ((b.0 - a.0) as f64, (b.1 - a.1) as f64);
    let len = (dx * dx + dy * dy).sqrt().max(1.0);
    let (ux, uy) = (dx / len, dy / len);
    let back = |s: f64, side: f64| {
        (
            (b.0 as f64 - 12.0 * ux + side * s * -uy) as i32,
            (b.1 as f64 - 12.0 * uy + side * s * ux) as i32,
        )
    };
    root.draw(&Polygon::new(
        vec![b, back(6.0, 1.0), back(6.0, -1.0)],
        BLACK.filled(),
    ))
    .map_err(err)
}

impl Draw for Architecture<'_> {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        let c = self.config;
        root.fill(&WHITE).map_err(err)?;
        let (w, _) = root.dim_in_pixel();
        let w = w as i32;
        let Boxes {
            input,
            router,
            pathways,
            scar,
            head,
        } = box_lines(c);
        let title = format!(
            "Figure 4: GEM as built here: {} ({} parameters; seeded weights, not the paper's trained GEM)",
            c.name,
            human(c.parameters(VOCAB) as f64)
        );
        root.draw(&Text::new(
            title,
            (w / 2, 24),
            TextStyle::from(("sans-serif", 22).into_font())
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(err)?;
        let grey = RGBColor(235, 235, 235);
        let router_fill = RGBColor(198, 219, 239);
        let domain_fill = RGBColor(253, 208, 162);
        let general_fill = RGBColor(199, 233, 192);
        let scar_fill = RGBColor(218, 218, 235);
        let margin = 40;
        text_box(&root, (w / 2 - 330, 60, w / 2 + 330, 100), grey, &input, 15)?;
        arrow(&root, (w / 2, 100), (w / 2, 135))?;
        text_box(
            &root,
            (margin + 120, 135, w - margin - 120, 245),
            router_fill,
            &router,
            15,
        )?;
        let gap = 10;
        let n = pathways.len() as i32;
        let bw = (w - 2 * margin - (n - 1) * gap) / n;
        let (py0, py1) = (330, 530);
        for (i, lines) in pathways.iter().enumerate() {
            let x0 = margin + i as i32 * (bw + gap);
            let fill = if i + 1 == pathways.len() {
                general_fill
            } else {
                domain_fill
            };
            arrow(&root, (w / 2, 245), (x0 + bw / 2, py0))?;
            text_box(&root, (x0, py0, x0 + bw, py1), fill, lines, 13)?;
            arrow(&root, (x0 + bw / 2, py1), (x0 + bw / 2, 595))?;
        }
        text_box(&root, (margin, 595, w - margin, 675), scar_fill, &scar, 15)?;
        arrow(&root, (w / 2, 675), (w / 2, 720))?;
        text_box(&root, (w / 2 - 360, 720, w / 2 + 360, 800), grey, &head, 15)?;
        root.draw(&Text::new(
            "each token takes one pathway: the router's choice (the general pathway when no domain is confident)",
            (w / 2, 830),
            TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(err)?;
        root.present().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_box_shows_the_configured_numbers() {
        let cfg: GemConfig =
            toml::from_str(include_str!("../../../fixtures/gem/gem-paper.toml")).unwrap();
        let Boxes {
            input,
            router,
            pathways,
            scar,
            head,
        } = box_lines(&cfg);
        assert!(input[0].contains("context 512"));
        assert!(
            router[1].contains("6 layers, 256 hidden, 8 heads, FFN 1024, 6-bit"),
            "{router:?}"
        );
        assert!(router[2].contains("W_r 8 x 256") && router[2].contains("tau = 0.7"));
        assert_eq!(pathways.len(), 9);
        assert_eq!(pathways[0][0], "healthcare");
        assert_eq!(pathways[7][0], "domain-adaptive");
        assert_eq!(pathways[0][5], "4-bit");
        assert_eq!(
            pathways[8],
            [
                "general",
                "8 layers",
                "512 hidden",
                "8 heads",
                "FFN 2048",
                "8-bit"
            ]
        );
        assert!(scar[1].contains("k = 16 clusters, 10 iterations"));
        assert!(head[0].contains("8-bit") && head[1].contains("512 -> 257"));
        let mut dense = cfg.clone();
        dense.scar.enabled = false;
        assert!(box_lines(&dense).scar[0].contains("dense"));
    }
}
