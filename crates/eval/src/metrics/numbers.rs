//! Reading numbers out of answer texts for `numeric_acc`, and comparing them.
//!
//! A number may carry thousand separators (`1,234`), a currency sign
//! (`$ € £ ¥ ₹`), a sign (`-`, `−`, `+`), accounting parentheses for a
//! negative (`(1,234)`), and a scale: `%`, `percent`, `thousand`, `million`,
//! `billion`. A gold is read from its whole text (plus the record's `scale`
//! field when the text names none); a prediction from its first number.
//! Values are compared with [`RELATIVE_TOLERANCE`] (docs/metrics.md).

use regex::Regex;
use std::sync::LazyLock;

/// Two values match when they differ by at most this fraction of the gold
/// (0.1 %); a gold of zero needs a prediction of zero.
pub const RELATIVE_TOLERANCE: f64 = 1e-3;

/// The scale a number is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Thousand,
    Million,
    Billion,
    Percent,
}

impl Scale {
    /// Reads a scale name as datasets write it (`thousand`, `Millions`,
    /// `percent`, `%`): `Ok(None)` for an empty name or `none`, `Err` for a
    /// name it does not know.
    pub fn parse(s: &str) -> Result<Option<Scale>, String> {
        let t = s.trim().to_lowercase();
        Ok(Some(match t.as_str() {
            "" | "none" => return Ok(None),
            "thousand" | "thousands" => Scale::Thousand,
            "million" | "millions" => Scale::Million,
            "billion" | "billions" => Scale::Billion,
            "percent" | "percentage" | "per cent" | "%" => Scale::Percent,
            _ => {
                return Err(format!(
                    "scale `{s}` is not one of thousand, million, billion, percent"
                ))
            }
        }))
    }

    /// What one unit of this scale is worth.
    pub fn factor(self) -> f64 {
        match self {
            Scale::Thousand => 1e3,
            Scale::Million => 1e6,
            Scale::Billion => 1e9,
            Scale::Percent => 1e-2,
        }
    }
}

/// A number as written (sign included) and the scale it is written in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantity {
    pub number: f64,
    pub scale: Option<Scale>,
}

impl Quantity {
    /// The value in plain units (`12.5 %` is 0.125, `3 million` is 3e6).
    pub fn value(&self) -> f64 {
        self.number * self.scale.map_or(1.0, Scale::factor)
    }
}

static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
        (?P<open>\(\s*)?
        (?P<sign>[-−+]\s*)?
        (?P<cur>[$€£¥₹]\s*)?
        (?P<sign2>[-−]\s*)?
        (?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)
        (?:\s*(?P<scale>%|per\s*cent\b|percent\b|thousands?\b|millions?\b|billions?\b))?
        (?P<close>\s*\))?
        (?:\s*(?P<scale2>%|per\s*cent\b|percent\b|thousands?\b|millions?\b|billions?\b))?",
    )
    .expect("valid regex")
});

fn quantity(c: &regex::Captures<'_>) -> Option<Quantity> {
    let digits = c.name("num")?.as_str().replace(',', "");
    let mut number: f64 = digits.parse().ok()?;
    let minus = |g: &str| c.name(g).is_some_and(|m| m.as_str().trim() != "+");
    if minus("sign") || minus("sign2") {
        number = -number;
    }
    if c.name("open").is_some() && c.name("close").is_some() {
        number = -number.abs();
    }
    let scale = match c.name("scale").or_else(|| c.name("scale2")) {
        Some(m) => Scale::parse(&m.as_str().split_whitespace().collect::<Vec<_>>().join(" "))
            .ok()
            .flatten(),
        None => None,
    };
    number.is_finite().then_some(Quantity { number, scale })
}

/// The first number of a text (a prediction), with its scale if one follows it.
pub fn first_number(text: &str) -> Option<Quantity> {
    NUMBER.captures_iter(text).find_map(|c| quantity(&c))
}

/// A gold text that is one number and nothing else (a trailing full stop and
/// surrounding space allowed), with the record's `scale` applied when the
/// text names none. `None` for text that is not a number (`yes`, `2019 and 2020`).
pub fn read_gold(text: &str, record_scale: Option<Scale>) -> Option<Quantity> {
    let t = text.trim().trim_end_matches('.').trim();
    let c = NUMBER.captures(t)?;
    let whole = c.get(0)?;
    if whole.start() != 0 || whole.end() != t.len() {
        return None;
    }
    let mut q = quantity(&c)?;
    if q.scale.is_none() {
        q.scale = record_scale;
    }
    Some(q)
}

fn close(pred: f64, gold: f64) -> bool {
    (pred - gold).abs() <= RELATIVE_TOLERANCE * gold.abs()
}

/// Whether a predicted quantity matches a gold one: their plain values agree
/// within [`RELATIVE_TOLERANCE`], or, for a prediction that names no scale
/// and a gold that does, the prediction's number agrees with the gold's
/// number (the answer given in the gold's unit: `12.5` for `12.5 %`, `3` for
/// `3 million`). Nothing else: a flipped sign or a moved decimal point is wrong.
pub fn matches(pred: &Quantity, gold: &Quantity) -> bool {
    close(pred.value(), gold.value())
        || (pred.scale.is_none() && gold.scale.is_some() && close(pred.number, gold.number))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(number: f64, scale: Option<Scale>) -> Quantity {
        Quantity { number, scale }
    }

    #[test]
    fn reads_every_written_form() {
        assert_eq!(read_gold("1,234.5", None), Some(q(1234.5, None)));
        assert_eq!(read_gold("$1,234", None), Some(q(1234.0, None)));
        assert_eq!(read_gold("€ 12.50", None), Some(q(12.5, None)));
        assert_eq!(read_gold("(1,234)", None), Some(q(-1234.0, None)));
        assert_eq!(read_gold("($3.5)", None), Some(q(-3.5, None)));
        assert_eq!(read_gold("-$3.5", None), Some(q(-3.5, None)));
        assert_eq!(read_gold("$-3.5", None), Some(q(-3.5, None)));
        assert_eq!(read_gold("−7", None), Some(q(-7.0, None)));
        assert_eq!(read_gold("+7", None), Some(q(7.0, None)));
        assert_eq!(read_gold(".5", None), Some(q(0.5, None)));
        assert_eq!(
            read_gold("12.5%", None),
            Some(q(12.5, Some(Scale::Percent)))
        );
        assert_eq!(
            read_gold("12.5 percent", None),
            Some(q(12.5, Some(Scale::Percent)))
        );
        assert_eq!(
            read_gold("(2.1%)", None),
            Some(q(-2.1, Some(Scale::Percent)))
        );
        assert_eq!(
            read_gold("3 Million", None),
            Some(q(3.0, Some(Scale::Million)))
        );
        assert_eq!(
            read_gold("4 billion", None),
            Some(q(4.0, Some(Scale::Billion)))
        );
        assert_eq!(
            read_gold("5 thousand.", None),
            Some(q(5.0, Some(Scale::Thousand)))
        );
        // the record's scale applies when the text names none
        assert_eq!(
            read_gold("1,500", Some(Scale::Thousand)),
            Some(q(1500.0, Some(Scale::Thousand)))
        );
        assert_eq!(
            read_gold("20%", Some(Scale::Million)),
            Some(q(20.0, Some(Scale::Percent)))
        );
        // not a number: words, several numbers, a number inside a sentence
        assert_eq!(read_gold("yes", None), None);
        assert_eq!(read_gold("2019 and 2020", None), None);
        assert_eq!(read_gold("about 5", None), None);
        assert_eq!(read_gold("", None), None);
    }

    #[test]
    fn prediction_is_its_first_number() {
        assert_eq!(
            first_number("The answer is 1,234.5 million dollars"),
            Some(q(1234.5, Some(Scale::Million)))
        );
        assert_eq!(
            first_number("It fell by (2.5)%."),
            Some(q(-2.5, Some(Scale::Percent)))
        );
        assert_eq!(first_number("about -0.3 or 4"), Some(q(-0.3, None)));
        assert_eq!(first_number("no number"), None);
    }

    #[test]
    fn scales_parse_and_reject() {
        assert_eq!(Scale::parse(""), Ok(None));
        assert_eq!(Scale::parse("none"), Ok(None));
        assert_eq!(Scale::parse("Million"), Ok(Some(Scale::Million)));
        assert_eq!(Scale::parse("percent"), Ok(Some(Scale::Percent)));
        assert!(Scale::parse("dozen").is_err());
    }

    #[test]
    fn compares_within_the_relative_tolerance_only() {
        let g = |t: &str, s: Option<Scale>| read_gold(t, s).unwrap();
        let p = |t: &str| first_number(t).unwrap();
        // 0.1 % of 1234 is 1.234: 1235 is in, 1236 is out
        assert!(matches(&p("1235"), &g("1234", None)));
        assert!(!matches(&p("1236"), &g("1234", None)));
        // zero needs zero
        assert!(matches(&p("0"), &g("0", None)));
        assert!(!matches(&p("0.0001"), &g("0", None)));
        // a flipped sign is wrong, at any size
        assert!(!matches(&p("-5"), &g("5", None)));
        assert!(!matches(&p("0.002"), &g("-0.002", None)));
        assert!(!matches(&p("1234"), &g("(1,234)", None)));
        // a moved decimal point is wrong
        assert!(!matches(&p("12.3"), &g("1.23", None)));
        assert!(!matches(&p("0.001"), &g("0.01", None)));
        assert!(!matches(&p("5.644"), &g("0.05644", None)));
        assert!(!matches(&p("1250"), &g("12.5%", None)));
        assert!(!matches(&p("0.03"), &g("3", Some(Scale::Million))));
        // the same quantity in another writing is right
        assert!(matches(&p("5.644%"), &g("0.05644", None)));
        assert!(matches(&p("12.5"), &g("12.5%", None)));
        assert!(matches(&p("0.125"), &g("12.5", Some(Scale::Percent))));
        assert!(matches(&p("3"), &g("3", Some(Scale::Million))));
        assert!(matches(&p("3,000,000"), &g("3", Some(Scale::Million))));
        assert!(matches(&p("3 million"), &g("3,000", Some(Scale::Thousand))));
        assert!(matches(&p("$(1,234)"), &g("-1234", None)));
        // a stated scale is taken at its word
        assert!(!matches(&p("3 thousand"), &g("3", Some(Scale::Million))));
    }
}
