//! The self-contained HTML report: `report.md` converted to HTML with its
//! images embedded as base64 data URIs, so the file needs nothing else.
//!
//! The converter covers the Markdown the paper report writes: `#` headings,
//! paragraphs, `> ` quotes, `- ` lists, pipe tables (`---:` right-aligns),
//! fenced code, `**bold**`, `` `code` `` and a line holding only
//! `![caption](relative/path.png)`. Links are not supported, and an image
//! that is not a local PNG or SVG file is an error: the output never refers
//! to anything outside itself.

use base64::Engine as _;
use std::path::Path;
use thiserror::Error;

/// Why the HTML could not be produced.
#[derive(Debug, Error)]
pub enum HtmlError {
    /// An image is not a local PNG/SVG file.
    #[error("image `{0}`: only local .png and .svg files can be embedded")]
    External(String),
    /// An image file could not be read.
    #[error("image `{path}`: {source}")]
    Io {
        /// The path as written in the Markdown.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

const STYLE: &str = "body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #bbb;padding:3px 7px;vertical-align:top}\
th{background:#eee}td.r,th.r{text-align:right}blockquote{border-left:4px solid #c33;background:#fff4f4;margin:1em 0;padding:.5em 1em}\
figure{margin:1.5em 0}img{max-width:100%;border:1px solid #ddd}figcaption{font-size:14px;color:#444}\
code{background:#f3f3f3;padding:0 3px}pre{background:#f3f3f3;padding:.7em;overflow-x:auto}";

/// Escapes `& < > "` for HTML text and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// Inline Markdown: `code` spans, then `**bold**` in the rest.
fn inline(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{}</code>", escape(part)));
        } else {
            for (j, piece) in escape(part).split("**").enumerate() {
                if j > 0 {
                    out.push_str(if j % 2 == 1 { "<strong>" } else { "</strong>" });
                }
                out.push_str(piece);
            }
            if escape(part).matches("**").count() % 2 == 1 {
                out.push_str("</strong>");
            }
        }
    }
    out
}

/// Cells of a pipe-table line (`\|` is a literal bar).
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                out.last_mut().expect("one cell").push('|');
                chars.next();
            }
            '|' => out.push(String::new()),
            _ => out.last_mut().expect("one cell").push(c),
        }
    }
    out.into_iter().map(|c| c.trim().to_owned()).collect()
}

/// A data URI for the image at `src` (relative to `base`).
fn data_uri(src: &str, base: &Path) -> Result<String, HtmlError> {
    let lower = src.to_ascii_lowercase();
    let mime = if lower.ends_with(".png") {
        "image/png"
    } else if lower.ends_with(".svg") {
        "image/svg+xml"
    } else {
        return Err(HtmlError::External(src.into()));
    };
    if lower.contains("://") || lower.starts_with("//") || Path::new(src).is_absolute() {
        return Err(HtmlError::External(src.into()));
    }
    let bytes = std::fs::read(base.join(src)).map_err(|source| HtmlError::Io {
        path: src.into(),
        source,
    })?;
    Ok(format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// `![alt](src)` on a line of its own.
fn image(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim().strip_prefix("![")?;
    let (alt, rest) = rest.split_once("](")?;
    let src = rest.strip_suffix(')')?;
    Some((alt, src))
}

/// Converts `md` to a complete HTML document titled `title`; images are
/// read relative to `base` and embedded.
pub fn to_html(md: &str, title: &str, base: &Path) -> Result<String, HtmlError> {
    let mut body = String::new();
    let lines: Vec<&str> = md.lines().collect();
    let mut i = 0;
    let mut paragraph: Vec<&str> = Vec::new();
    let flush = |p: &mut Vec<&str>, body: &mut String| {
        if !p.is_empty() {
            body.push_str(&format!("<p>{}</p>\n", inline(&p.join(" "))));
            p.clear();
        }
    };
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim_start();
        if t.is_empty() {
            flush(&mut paragraph, &mut body);
            i += 1;
        } else if t.starts_with("```") {
            flush(&mut paragraph, &mut body);
            let mut text = Vec::new();
            i += 1;
            while i < lines.len() && !lines[i].trim_start().starts_with("```") {
                text.push(lines[i]);
                i += 1;
            }
            body.push_str(&format!(
                "<pre><code>{}</code></pre>\n",
                escape(&text.join("\n"))
            ));
            i += 1;
        } else if t.starts_with('#') {
            flush(&mut paragraph, &mut body);
            let level = t.chars().take_while(|&c| c == '#').count().min(6);
            let text = t[level..].trim();
            body.push_str(&format!("<h{level}>{}</h{level}>\n", inline(text)));
            i += 1;
        } else if let Some((alt, src)) = image(t) {
            flush(&mut paragraph, &mut body);
            body.push_str(&format!(
                "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>\n",
                data_uri(src, base)?,
                escape(alt),
                inline(alt)
            ));
            i += 1;
        } else if t.starts_with('>') {
            flush(&mut paragraph, &mut body);
            let mut quote = Vec::new();
            while i < lines.len() && lines[i].trim_start().starts_with('>') {
                quote.push(lines[i].trim_start()[1..].trim());
                i += 1;
            }
            body.push_str(&format!(
                "<blockquote>{}</blockquote>\n",
                inline(&quote.join(" "))
            ));
        } else if t.starts_with("- ") {
            flush(&mut paragraph, &mut body);
            body.push_str("<ul>\n");
            while i < lines.len() && lines[i].trim_start().starts_with("- ") {
                body.push_str(&format!(
                    "<li>{}</li>\n",
                    inline(&lines[i].trim_start()[2..])
                ));
                i += 1;
            }
            body.push_str("</ul>\n");
        } else if t.starts_with('|')
            && lines.get(i + 1).is_some_and(|n| {
                n.trim_start().starts_with("|-") || n.trim_start().starts_with("|:")
            })
        {
            flush(&mut paragraph, &mut body);
            let header = cells(t);
            let right: Vec<bool> = cells(lines[i + 1])
                .iter()
                .map(|c| c.ends_with(':'))
                .collect();
            let class = |k: usize| {
                if right.get(k).copied().unwrap_or(false) {
                    " class=\"r\""
                } else {
                    ""
                }
            };
            body.push_str("<table>\n<tr>");
            for (k, h) in header.iter().enumerate() {
                body.push_str(&format!("<th{}>{}</th>", class(k), inline(h)));
            }
            body.push_str("</tr>\n");
            i += 2;
            while i < lines.len() && lines[i].trim_start().starts_with('|') {
                body.push_str("<tr>");
                for (k, c) in cells(lines[i]).iter().enumerate() {
                    body.push_str(&format!("<td{}>{}</td>", class(k), inline(c)));
                }
                body.push_str("</tr>\n");
                i += 1;
            }
            body.push_str("</table>\n");
        } else {
            paragraph.push(t);
            i += 1;
        }
    }
    flush(&mut paragraph, &mut body);
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_1X1: &[u8] = &[
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52,
    ];

    #[test]
    fn converts_every_supported_block() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("figures")).unwrap();
        std::fs::write(dir.path().join("figures/a.png"), PNG_1X1).unwrap();
        let md = "# Title <x>\n\n> GEM **seeded**\n> weights\n\nsome `a|b` text\nand more\n\n- one\n- two\n\n| q | v |\n|---|---:|\n| a\\|b | 1 |\n\n![Figure 1: size](figures/a.png)\n\n```\nx < y\n```\n";
        let html = to_html(md, "T & co", dir.path()).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<title>T &amp; co</title>"));
        assert!(html.contains("<h1>Title &lt;x&gt;</h1>"));
        assert!(html.contains("<blockquote>GEM <strong>seeded</strong> weights</blockquote>"));
        assert!(html.contains("<p>some <code>a|b</code> text and more</p>"));
        assert!(html.contains("<li>one</li>\n<li>two</li>"));
        assert!(html.contains("<th>q</th><th class=\"r\">v</th>"));
        assert!(html.contains("<td>a|b</td><td class=\"r\">1</td>"));
        assert!(html.contains("<img src=\"data:image/png;base64,iVBORw0KGgo"));
        assert!(html.contains("<figcaption>Figure 1: size</figcaption>"));
        assert!(html.contains("<pre><code>x &lt; y</code></pre>"));
    }

    #[test]
    fn refuses_anything_but_local_images() {
        let dir = tempfile::tempdir().unwrap();
        for src in [
            "https://example.com/a.png",
            "//cdn/a.png",
            "/etc/a.png",
            "a.gif",
        ] {
            let e = to_html(&format!("![x]({src})"), "t", dir.path()).unwrap_err();
            assert!(matches!(e, HtmlError::External(_)), "{src}: {e}");
        }
        let e = to_html("![x](missing.png)", "t", dir.path()).unwrap_err();
        assert!(matches!(e, HtmlError::Io { .. }));
    }

    #[test]
    fn unbalanced_bold_is_closed() {
        assert_eq!(inline("a **b"), "a <strong>b</strong>");
    }
}
