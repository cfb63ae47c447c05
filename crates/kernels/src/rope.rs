//! Rotary position embedding in Hugging Face's `rotate_half` form,
//! `y = x · cos + rotate_half(x) · sin`, in one pass: the arithmetic of
//! `EbRope`.

/// `y = x · cos + rotate_half(x) · sin` over rows of width `d`:
/// `rotate_half(x) = [-x[d/2..], x[..d/2]]`. `x` holds whole rows; row `r`
/// uses table row `r % positions` (`cos` and `sin` hold `positions` rows of
/// `d`), so tables of one row broadcast over every row.
pub fn rotate(x: &[f32], cos: &[f32], sin: &[f32], d: usize, positions: usize, y: &mut [f32]) {
    for (r, (xr, yr)) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)).enumerate() {
        let p = (r % positions) * d;
        rotate_row(xr, &cos[p..p + d], &sin[p..p + d], yr);
    }
}

/// [`rotate`] from `x [b, s, h, d]` (a projection reshaped to heads) into
/// `y [b, h, s, d]`: the transpose to heads-first comes free with the pass.
/// Row `i` of each head uses table row `i % positions`.
pub fn rotate_to_heads(
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    [b, s, h, d]: [usize; 4],
    positions: usize,
    y: &mut [f32],
) {
    for bb in 0..b {
        for i in 0..s {
            let p = (i % positions) * d;
            let (c, sn) = (&cos[p..p + d], &sin[p..p + d]);
            for hh in 0..h {
                let src = ((bb * s + i) * h + hh) * d;
                let dst = ((bb * h + hh) * s + i) * d;
                rotate_row(&x[src..src + d], c, sn, &mut y[dst..dst + d]);
            }
        }
    }
}

/// One row; plain loops the compiler vectorises.
#[inline(always)]
fn rotate_row(x: &[f32], c: &[f32], s: &[f32], y: &mut [f32]) {
    let half = x.len() / 2;
    let (x1, x2) = x.split_at(half);
    let (y1, y2) = y.split_at_mut(half);
    let (c1, c2) = c.split_at(half);
    let (s1, s2) = s.split_at(half);
    for j in 0..half {
        y1[j] = x1[j] * c1[j] - x2[j] * s1[j];
        y2[j] = x2[j] * c2[j] + x1[j] * s2[j];
    }
}
