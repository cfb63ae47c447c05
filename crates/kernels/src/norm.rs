//! Layer normalisation and RMS normalisation over the last axis, one pass
//! per row, rows spread over the threads of an [`Exec`](crate::Exec): the
//! arithmetic of `EbNorm`.

use rayon::prelude::*;

/// Which normalisation (attribute `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `(x - mean) / sqrt(var + eps) · scale (+ bias)` (`"layer"`).
    Layer,
    /// `x / sqrt(mean(x²) + eps) · scale (+ bias)` (`"rms"`).
    Rms,
}

/// Elements from which rows are spread over threads.
const PARALLEL_MIN: usize = 1 << 15;

/// Normalises each row of `d` values of `x` into `y`.
///
/// # Panics
/// When `scale` (or `bias`) does not hold `d` values or `x` and `y` differ in length.
pub fn normalize(
    kind: Kind,
    eps: f32,
    x: &[f32],
    scale: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    threads: usize,
) {
    let d = scale.len();
    assert!(
        d > 0 && bias.is_none_or(|b| b.len() == d),
        "scale and bias must hold d values"
    );
    assert_eq!(x.len(), y.len(), "x and y must have the same length");
    let rows = |x: &[f32], y: &mut [f32]| {
        for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
            row(kind, eps, xr, scale, bias, yr);
        }
    };
    if threads > 1 && x.len() >= PARALLEL_MIN {
        let n = x.len() / d;
        let per = n.div_ceil(threads * 4).max(1) * d;
        x.par_chunks(per)
            .zip(y.par_chunks_mut(per))
            .for_each(|(x, y)| rows(x, y));
    } else {
        rows(x, y);
    }
}

/// One row.
fn row(kind: Kind, eps: f32, x: &[f32], g: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
    let n = x.len() as f32;
    let (shift, inv) = match kind {
        Kind::Layer => {
            let mean = sum8(x, |v| v) / n;
            let var = sum8(x, |v| (v - mean) * (v - mean)) / n;
            (mean, 1.0 / (var + eps).sqrt())
        }
        Kind::Rms => (0.0, 1.0 / (sum8(x, |v| v * v) / n + eps).sqrt()),
    };
    match b {
        Some(b) => {
            for (((o, &v), &g), &b) in y.iter_mut().zip(x).zip(g).zip(b) {
                *o = (v - shift) * inv * g + b;
            }
        }
        None => {
            for ((o, &v), &g) in y.iter_mut().zip(x).zip(g) {
                *o = (v - shift) * inv * g;
            }
        }
    }
}

/// `Σ f(x)`, in 8 lanes so it vectorises.
#[inline(always)]
fn sum8(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for i in 0..8 {
            acc[i] += f(c[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}
