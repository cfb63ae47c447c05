//! The paper's derived numbers as data: a loader for
//! `reports/paper/claims.toml` (layout documented in
//! `reports/paper/README.md`), which says for each number the paper derives
//! from other printed numbers how to recompute it from entries of
//! `reported.toml`.
//!
//! A claim is one of a few kinds: an arithmetic `formula` over named
//! entries (`p * ms / 1000`, `gg(inn, out)`), the `same` quantity printed
//! elsewhere, a `range`, the `per_domain` DSI or GG of Table 4, an upper
//! bound (`below`), or `unverifiable`. Its texts are templates over the same
//! names. Loading parses every expression and template and resolves every
//! name, so [`crate::audit`] can only fail on `reported.toml` itself.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Where the file lives, relative to the repository root.
pub const DEFAULT_PATH: &str = "reports/paper/claims.toml";

/// The file's content, built into the crate.
pub const EMBEDDED: &str = include_str!("../../../reports/paper/claims.toml");

/// Why the claims could not be loaded.
#[derive(Debug, Error)]
pub enum ClaimsError {
    /// The file is not valid TOML or does not have the expected layout.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A claim breaks a rule of the layout.
    #[error("{}: claim `{id}`: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The offending claim's id.
        id: String,
        /// What is wrong.
        message: String,
    },
}

/// Which per-domain metric a `per_domain` claim spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Domain specificity index.
    Dsi,
    /// Generalization gap.
    Gg,
}

/// An arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

/// A function an expression may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    /// `gg(in, out)`: generalization gap.
    Gg,
    /// `cdtr(source, target)`: cross-domain transfer ratio.
    Cdtr,
    /// `dsi(in, out, ...)`: domain specificity index of the first score.
    Dsi,
    /// `mean(x, ...)`, summed left to right.
    Mean,
    /// `min(x, ...)`.
    Min,
    /// `max(x, ...)`.
    Max,
    /// `round(x)`: to the nearest integer.
    Round,
}

impl Func {
    fn parse(name: &str) -> Option<(Func, usize, bool)> {
        // (function, least arguments, whether more are allowed)
        Some(match name {
            "gg" => (Func::Gg, 2, false),
            "cdtr" => (Func::Cdtr, 2, false),
            "dsi" => (Func::Dsi, 2, true),
            "mean" => (Func::Mean, 1, true),
            "min" => (Func::Min, 1, true),
            "max" => (Func::Max, 1, true),
            "round" => (Func::Round, 1, false),
            _ => return None,
        })
    }
}

/// A parsed expression; names are resolved to the claim's inputs and
/// `let` values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Num(f64),
    /// Index into [`Claim::inputs`].
    Input(usize),
    /// Index into the claim's `let` values.
    Let(usize),
    Neg(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
    /// Integer power (`x^2`).
    Pow(Box<Expr>, i32),
    Call(Func, Vec<Expr>),
}

/// How a template prints a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `{x}`: the shortest exact form.
    Shortest,
    /// `{x:.N}`: N decimals.
    Fixed(usize),
    /// `{x:~N}`: about four significant digits, at least N decimals.
    Approx(usize),
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Segment {
    Text(String),
    /// An input's printed value as is (a number or a text).
    Input(usize),
    Number(Expr, Format),
    /// A `per_domain` claim's scores, comma-separated.
    Scores,
}

/// A text with `{...}` placeholders.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Template(pub(crate) Vec<Segment>);

/// How a claim's value is recomputed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Check {
    /// A number from an expression.
    Formula(Expr),
    /// The number printed under another key.
    Same { of: String },
    /// A range from two expressions.
    Range { low: Expr, high: Expr },
    /// The span of a per-domain metric, each score in turn taken as
    /// in-domain against the mean of the others.
    PerDomain { metric: Metric, scores: Vec<String> },
    /// A number the printed value must exceed.
    Below(Expr),
    /// Nothing to recompute.
    Unverifiable { reason: String },
}

/// One claim: a printed value and how to check it.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// Unique name of the check.
    pub id: String,
    /// Key of the audited entry in `reported.toml`.
    pub key: String,
    /// Named entries of `reported.toml`, sorted by name.
    pub inputs: Vec<(String, String)>,
    pub(crate) lets: Vec<Expr>,
    pub(crate) check: Check,
    pub(crate) item: Option<Template>,
    pub(crate) note: Template,
    pub(crate) mismatch_note: Option<Template>,
}

impl Claim {
    /// Every key of `reported.toml` the claim names: the audited one, its
    /// inputs, and the entries a `same` or `per_domain` claim reads.
    pub fn keys(&self) -> Vec<&str> {
        let mut keys = vec![self.key.as_str()];
        keys.extend(self.inputs.iter().map(|(_, k)| k.as_str()));
        match &self.check {
            Check::Same { of } => keys.push(of),
            Check::PerDomain { scores, .. } => keys.extend(scores.iter().map(String::as_str)),
            _ => {}
        }
        keys
    }

    /// Whether the claim has nothing to recompute.
    pub fn is_unverifiable(&self) -> bool {
        matches!(self.check, Check::Unverifiable { .. })
    }
}

/// Every claim, in the file's (the paper's) order.
#[derive(Debug, Clone)]
pub struct Claims {
    claims: Vec<Claim>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    claim: Vec<RawClaim>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Formula,
    Same,
    Range,
    PerDomain,
    Below,
    Unverifiable,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaim {
    id: String,
    key: Option<String>,
    kind: Kind,
    #[serde(default)]
    inputs: BTreeMap<String, String>,
    #[serde(default, rename = "let")]
    lets: Vec<String>,
    value: Option<String>,
    low: Option<String>,
    high: Option<String>,
    of: Option<String>,
    metric: Option<Metric>,
    scores: Option<Vec<String>>,
    item: Option<String>,
    note: Option<String>,
    mismatch_note: Option<String>,
    reason: Option<String>,
}

/// Whether `s` is a name: `[a-z_][a-z0-9_]*`.
fn is_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase() || c == b'_')
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// The names visible to an expression: the inputs and the `let` values
/// defined so far.
struct Names<'a> {
    inputs: &'a [(String, String)],
    lets: &'a [String],
    scores: bool,
}

impl Names<'_> {
    fn resolve(&self, name: &str) -> Option<Expr> {
        if let Some(i) = self.lets.iter().position(|n| n == name) {
            return Some(Expr::Let(i));
        }
        self.inputs
            .iter()
            .position(|(n, _)| n == name)
            .map(Expr::Input)
    }

    fn expr(&self, src: &str) -> Result<Expr, String> {
        let mut p = ExprParser {
            s: src.as_bytes(),
            pos: 0,
            names: self,
        };
        let e = p.sum()?;
        p.skip_space();
        if p.pos < p.s.len() {
            return Err(p.error("unexpected text"));
        }
        Ok(e)
    }

    fn template(&self, src: &str) -> Result<Template, String> {
        let mut out = Vec::new();
        let mut rest = src;
        while !rest.is_empty() {
            let open = rest.find('{').unwrap_or(rest.len());
            let text = &rest[..open];
            if text.contains('}') {
                return Err(format!("`}}` without `{{` in `{src}`"));
            }
            if !text.is_empty() {
                out.push(Segment::Text(text.to_owned()));
            }
            rest = &rest[open..];
            if rest.is_empty() {
                break;
            }
            let close = rest
                .find('}')
                .ok_or_else(|| format!("`{{` without `}}` in `{src}`"))?;
            let inner = &rest[1..close];
            rest = &rest[close + 1..];
            let (expr, format) = match inner.split_once(':') {
                None => (inner.trim(), Format::Shortest),
                Some((e, spec)) => {
                    let digits = |d: &str| {
                        d.parse::<usize>()
                            .map_err(|_| format!("bad format `{spec}` in `{{{inner}}}`"))
                    };
                    let format = if let Some(d) = spec.strip_prefix('.') {
                        Format::Fixed(digits(d)?)
                    } else if let Some(d) = spec.strip_prefix('~') {
                        Format::Approx(digits(d)?)
                    } else {
                        return Err(format!(
                            "bad format `{spec}` in `{{{inner}}}`: use .N or ~N"
                        ));
                    };
                    (e.trim(), format)
                }
            };
            let segment = match (format, self.resolve(expr)) {
                (Format::Shortest, _) if self.scores && expr == "scores" => Segment::Scores,
                (Format::Shortest, Some(Expr::Input(i))) => Segment::Input(i),
                _ => Segment::Number(
                    self.expr(expr)
                        .map_err(|e| format!("in `{{{inner}}}`: {e}"))?,
                    format,
                ),
            };
            out.push(segment);
        }
        Ok(Template(out))
    }
}

/// Recursive-descent parser of `+ - * / ^`, parentheses, numbers, names
/// and calls.
struct ExprParser<'a> {
    s: &'a [u8],
    pos: usize,
    names: &'a Names<'a>,
}

impl ExprParser<'_> {
    fn error(&self, what: &str) -> String {
        format!(
            "{what} at column {} of `{}`",
            self.pos + 1,
            String::from_utf8_lossy(self.s)
        )
    }

    fn skip_space(&mut self) {
        while self
            .s
            .get(self.pos)
            .is_some_and(|c| c.is_ascii_whitespace())
        {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_space();
        if self.s.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn sum(&mut self) -> Result<Expr, String> {
        let mut e = self.product()?;
        loop {
            let op = if self.eat(b'+') {
                Op::Add
            } else if self.eat(b'-') {
                Op::Sub
            } else {
                return Ok(e);
            };
            e = Expr::Bin(op, Box::new(e), Box::new(self.product()?));
        }
    }

    fn product(&mut self) -> Result<Expr, String> {
        let mut e = self.unary()?;
        loop {
            let op = if self.eat(b'*') {
                Op::Mul
            } else if self.eat(b'/') {
                Op::Div
            } else {
                return Ok(e);
            };
            e = Expr::Bin(op, Box::new(e), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat(b'-') {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        let base = self.primary()?;
        if self.eat(b'^') {
            self.skip_space();
            let start = self.pos;
            while self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
                self.pos += 1;
            }
            let n = std::str::from_utf8(&self.s[start..self.pos])
                .ok()
                .and_then(|d| d.parse::<i32>().ok())
                .ok_or_else(|| self.error("expected a whole exponent"))?;
            return Ok(Expr::Pow(Box::new(base), n));
        }
        Ok(base)
    }

    fn primary(&mut self) -> Result<Expr, String> {
        if self.eat(b'(') {
            let e = self.sum()?;
            if !self.eat(b')') {
                return Err(self.error("expected `)`"));
            }
            return Ok(e);
        }
        self.skip_space();
        let s = self.s;
        let start = self.pos;
        match s.get(self.pos) {
            Some(c) if c.is_ascii_digit() || *c == b'.' => {
                while let Some(&c) = self.s.get(self.pos) {
                    let exponent_sign = (c == b'+' || c == b'-')
                        && matches!(self.s.get(self.pos - 1), Some(b'e' | b'E'));
                    if c.is_ascii_digit() || c == b'.' || c == b'e' || c == b'E' || exponent_sign {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                let text = std::str::from_utf8(&s[start..self.pos]).unwrap_or_default();
                text.parse::<f64>()
                    .map(Expr::Num)
                    .map_err(|_| self.error(&format!("bad number `{text}`")))
            }
            Some(c) if c.is_ascii_lowercase() || *c == b'_' => {
                while self
                    .s
                    .get(self.pos)
                    .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
                {
                    self.pos += 1;
                }
                let name = std::str::from_utf8(&s[start..self.pos]).unwrap_or_default();
                if self.eat(b'(') {
                    let (func, least, more) = Func::parse(name)
                        .ok_or_else(|| self.error(&format!("unknown function `{name}`")))?;
                    let mut args = vec![self.sum()?];
                    while self.eat(b',') {
                        args.push(self.sum()?);
                    }
                    if !self.eat(b')') {
                        return Err(self.error("expected `,` or `)`"));
                    }
                    if args.len() < least || (!more && args.len() > least) {
                        return Err(self.error(&format!(
                            "`{name}` takes {least}{} arguments, not {}",
                            if more { " or more" } else { "" },
                            args.len()
                        )));
                    }
                    Ok(Expr::Call(func, args))
                } else {
                    self.names.resolve(name).ok_or_else(|| {
                        self.error(&format!("unknown name `{name}` (not an input or let)"))
                    })
                }
            }
            _ => Err(self.error("expected a number, a name or `(`")),
        }
    }
}

impl RawClaim {
    fn into_claim(self, path: &Path) -> Result<Claim, ClaimsError> {
        let invalid = |message: String| ClaimsError::Invalid {
            path: path.to_path_buf(),
            id: self.id.clone(),
            message,
        };
        if self.id.trim().is_empty() {
            return Err(invalid("empty `id`".into()));
        }
        // Fields each kind reads; any other field present is an error.
        let uses: &[&str] = match self.kind {
            Kind::Formula => &["value", "item"],
            Kind::Same => &["of"],
            Kind::Range => &["low", "high", "item"],
            Kind::PerDomain => &["metric", "scores", "item"],
            Kind::Below => &["value", "item"],
            Kind::Unverifiable => &["reason"],
        };
        let optional: &[&str] = match self.kind {
            Kind::Unverifiable => &[],
            Kind::Same => &["item", "note", "mismatch_note", "inputs", "let"],
            Kind::PerDomain => &["note", "mismatch_note"],
            _ => &["note", "mismatch_note", "inputs", "let"],
        };
        let present = [
            ("value", self.value.is_some()),
            ("low", self.low.is_some()),
            ("high", self.high.is_some()),
            ("of", self.of.is_some()),
            ("metric", self.metric.is_some()),
            ("scores", self.scores.is_some()),
            ("item", self.item.is_some()),
            ("note", self.note.is_some()),
            ("mismatch_note", self.mismatch_note.is_some()),
            ("reason", self.reason.is_some()),
            ("inputs", !self.inputs.is_empty()),
            ("let", !self.lets.is_empty()),
        ];
        for (field, here) in present {
            let used = uses.contains(&field);
            if used && !here {
                return Err(invalid(format!("this kind needs `{field}`")));
            }
            if here && !used && !optional.contains(&field) {
                return Err(invalid(format!("this kind has no `{field}`")));
            }
        }

        let inputs: Vec<(String, String)> = self.inputs.into_iter().collect();
        if let Some((name, _)) = inputs.iter().find(|(n, _)| !is_name(n)) {
            return Err(invalid(format!(
                "input name `{name}` is not [a-z_][a-z0-9_]*"
            )));
        }
        let mut let_names: Vec<String> = Vec::new();
        let mut lets = Vec::new();
        for l in &self.lets {
            let (name, src) = l
                .split_once('=')
                .ok_or_else(|| invalid(format!("`let` entry `{l}` is not `name = expression`")))?;
            let name = name.trim();
            if !is_name(name) {
                return Err(invalid(format!(
                    "let name `{name}` is not [a-z_][a-z0-9_]*"
                )));
            }
            if let_names.iter().any(|n| n == name) || inputs.iter().any(|(n, _)| n == name) {
                return Err(invalid(format!("name `{name}` is defined twice")));
            }
            let names = Names {
                inputs: &inputs,
                lets: &let_names,
                scores: false,
            };
            lets.push(
                names
                    .expr(src)
                    .map_err(|e| invalid(format!("let `{name}`: {e}")))?,
            );
            let_names.push(name.to_owned());
        }
        let names = Names {
            inputs: &inputs,
            lets: &let_names,
            scores: self.kind == Kind::PerDomain,
        };
        let expr = |field: &str, src: &Option<String>| {
            names
                .expr(src.as_deref().unwrap_or_default())
                .map_err(|e| invalid(format!("`{field}`: {e}")))
        };
        let template = |field: &str, src: &str| {
            names
                .template(src)
                .map_err(|e| invalid(format!("`{field}`: {e}")))
        };
        let check = match self.kind {
            Kind::Formula => Check::Formula(expr("value", &self.value)?),
            Kind::Same => Check::Same {
                of: self.of.clone().unwrap_or_default(),
            },
            Kind::Range => Check::Range {
                low: expr("low", &self.low)?,
                high: expr("high", &self.high)?,
            },
            Kind::PerDomain => {
                let scores = self.scores.clone().unwrap_or_default();
                if scores.len() < 2 {
                    return Err(invalid("`scores` needs two or more keys".into()));
                }
                Check::PerDomain {
                    metric: self.metric.unwrap_or(Metric::Dsi),
                    scores,
                }
            }
            Kind::Below => Check::Below(expr("value", &self.value)?),
            Kind::Unverifiable => {
                let reason = self.reason.clone().unwrap_or_default();
                if reason.trim().is_empty() {
                    return Err(invalid("empty `reason`".into()));
                }
                Check::Unverifiable { reason }
            }
        };
        let item = self
            .item
            .as_deref()
            .map(|t| template("item", t))
            .transpose()?;
        let note = template("note", self.note.as_deref().unwrap_or_default())?;
        let mismatch_note = self
            .mismatch_note
            .as_deref()
            .map(|t| template("mismatch_note", t))
            .transpose()?;
        Ok(Claim {
            key: self.key.clone().unwrap_or_else(|| self.id.clone()),
            id: self.id,
            inputs,
            lets,
            check,
            item,
            note,
            mismatch_note,
        })
    }
}

impl Claims {
    /// The claims built into the crate ([`EMBEDDED`]); the crate's tests
    /// check that they load.
    pub fn embedded() -> Self {
        Self::parse(EMBEDDED, DEFAULT_PATH).expect("the embedded claims.toml loads")
    }

    /// Parses and validates `text`; `path` is only used to name the file in
    /// errors.
    pub fn parse(text: &str, path: impl Into<PathBuf>) -> Result<Self, ClaimsError> {
        let path = path.into();
        let raw: RawFile = toml::from_str(text).map_err(|e| ClaimsError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let mut claims: Vec<Claim> = Vec::with_capacity(raw.claim.len());
        for r in raw.claim {
            let claim = r.into_claim(&path)?;
            if claims.iter().any(|c| c.id == claim.id) {
                return Err(ClaimsError::Invalid {
                    path,
                    id: claim.id,
                    message: "duplicate id".into(),
                });
            }
            claims.push(claim);
        }
        Ok(Claims { claims })
    }

    /// Every claim, in file order.
    pub fn claims(&self) -> &[Claim] {
        &self.claims
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reported::Reported;
    use std::collections::BTreeSet;

    fn reported() -> Reported {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../",
            "reports/paper/reported.toml"
        );
        Reported::load(path).expect("reported.toml loads")
    }

    #[test]
    fn embedded_claims_parse_with_unique_ids_and_known_keys() {
        let claims = Claims::parse(EMBEDDED, DEFAULT_PATH).expect("claims.toml parses");
        assert!(claims.claims().len() > 100, "{}", claims.claims().len());
        let mut ids = BTreeSet::new();
        for c in claims.claims() {
            assert!(ids.insert(c.id.as_str()), "duplicate claim id `{}`", c.id);
        }
        let r = reported();
        for c in claims.claims() {
            for key in c.keys() {
                assert!(
                    r.get(key).is_some(),
                    "claim `{}` names `{key}`, which reported.toml lacks",
                    c.id
                );
            }
        }
        // Every claim evaluates against the checked-in numbers.
        crate::audit::audit_claims(&r, &claims).expect("every claim evaluates");
    }

    fn invalid(body: &str) -> String {
        Claims::parse(&format!("[[claim]]\nid = \"c\"\n{body}\n"), "mem.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn rejects_malformed_claims() {
        let e = invalid("kind = \"formula\"\nvalue = \"x + 1\"\nitem = \"i\"");
        assert!(e.contains("unknown name `x`"), "{e}");
        let e =
            invalid("kind = \"formula\"\ninputs = { x = \"a.b\" }\nvalue = \"x +\"\nitem = \"i\"");
        assert!(e.starts_with("mem.toml: claim `c`: `value`: "), "{e}");
        let e = invalid("kind = \"formula\"\nvalue = \"1\"");
        assert!(e.contains("needs `item`"), "{e}");
        let e = invalid("kind = \"unverifiable\"\nreason = \"r\"\nnote = \"n\"");
        assert!(e.contains("has no `note`"), "{e}");
        let e = invalid("kind = \"formula\"\nvalue = \"gg(1)\"\nitem = \"i\"");
        assert!(e.contains("takes 2 arguments, not 1"), "{e}");
        let e = invalid("kind = \"formula\"\nvalue = \"1\"\nitem = \"{2:%3}\"");
        assert!(e.contains("bad format"), "{e}");
        let e = invalid("kind = \"formula\"\nvalue = \"1\"\nitem = \"a {b\"");
        assert!(e.contains("without"), "{e}");
        let e = invalid("kind = \"formula\"\ninputs = { x = \"a.b\" }\nlet = [\"x = 2\"]\nvalue = \"x\"\nitem = \"i\"");
        assert!(e.contains("defined twice"), "{e}");
        let e = invalid("kind = \"guess\"");
        assert!(e.starts_with("mem.toml: ") && e.contains("guess"), "{e}");
        let dup = "[[claim]]\nid = \"c\"\nkind = \"unverifiable\"\nreason = \"r\"\n";
        let e = Claims::parse(&format!("{dup}{dup}"), "mem.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "mem.toml: claim `c`: duplicate id");
    }

    #[test]
    fn expressions_keep_precedence_and_resolve_names() {
        let inputs = vec![("a".to_owned(), "g.a".to_owned())];
        let lets = vec!["b".to_owned()];
        let names = Names {
            inputs: &inputs,
            lets: &lets,
            scores: false,
        };
        let e = names.expr("a - b * 2 ^ 3 / -1e-3").unwrap();
        let bin = |op, l, r| Expr::Bin(op, Box::new(l), Box::new(r));
        let want = bin(
            Op::Sub,
            Expr::Input(0),
            bin(
                Op::Div,
                bin(
                    Op::Mul,
                    Expr::Let(0),
                    Expr::Pow(Box::new(Expr::Num(2.0)), 3),
                ),
                Expr::Neg(Box::new(Expr::Num(1e-3))),
            ),
        );
        assert_eq!(e, want);
        let t = names.template("x {a} y {b:.2} {a / 2:~4}").unwrap();
        assert_eq!(t.0.len(), 6);
        assert_eq!(t.0[1], Segment::Input(0));
        assert_eq!(t.0[3], Segment::Number(Expr::Let(0), Format::Fixed(2)));
    }
}
