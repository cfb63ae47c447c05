//! Layer pieces shared by the graph builders (positions, masks, RoPE, RMSNorm,
//! linear layers, attention heads and scores, gated FFN), each written as
//! standard ONNX ops into a [`GraphBuilder`] in a fixed order.

use super::{Attr, GraphBuilder};

/// A 1-D i64 initializer `name` holding `values`.
pub fn i64s(g: &mut GraphBuilder, name: &str, values: &[i64]) -> String {
    g.init_i64(name, &[values.len() as i64], values)
}

/// Rows of `table` picked by the indices `idx`: one `Gather` on axis 0.
pub fn gather_rows(g: &mut GraphBuilder, table: &str, idx: &str) -> String {
    g.op("Gather", &[table, idx], &[("axis", Attr::Int(0))])
}

/// Positions `0..seq` of the i64 tensor `ids` `[batch, seq]`: `Shape`,
/// `Gather` (dimension 1), `Range`; `s0`, `s1` are i64 scalars 0 and 1.
pub fn positions(g: &mut GraphBuilder, ids: &str, s0: &str, s1: &str) -> String {
    let shape = g.op("Shape", &[ids], &[]);
    let seq = gather_rows(g, &shape, s1);
    g.op("Range", &[s0, &seq, s1], &[])
}

/// Booleans `[n, n]`, true where key `j` comes after query `i`
/// (`pos[j] > pos[i]`): `Unsqueeze` (rows, `ax1`), `Unsqueeze` (columns,
/// `ax0`), `Greater`; `ax0`, `ax1` are 1-D i64 `[0]` and `[1]`.
pub fn causal_future(g: &mut GraphBuilder, pos: &str, ax0: &str, ax1: &str) -> String {
    let rows = g.op("Unsqueeze", &[pos, ax1], &[]);
    let cols = g.op("Unsqueeze", &[pos, ax0], &[]);
    g.op("Greater", &[&cols, &rows], &[])
}

/// Additive attention mask: `neg` where `blocked` is true, `zero` elsewhere
/// (one `Where`).
pub fn additive_mask(g: &mut GraphBuilder, blocked: &str, neg: &str, zero: &str) -> String {
    g.op("Where", &[blocked, neg, zero], &[])
}

/// RoPE tables in the rotate-half layout for positions `0..ctx`: f32
/// initializers `cos_name` and `sin_name`, `[ctx, head_dim]`.
pub fn rope_tables(
    g: &mut GraphBuilder,
    (cos_name, sin_name): (&str, &str),
    ctx: usize,
    head_dim: usize,
    base: f64,
) -> (String, String) {
    let half = head_dim / 2;
    let mut cos = vec![0f32; ctx * head_dim];
    let mut sin = vec![0f32; ctx * head_dim];
    for p in 0..ctx {
        for i in 0..half {
            let a = p as f64 * base.powf(-(2.0 * i as f64) / head_dim as f64);
            for j in [i, i + half] {
                cos[p * head_dim + j] = a.cos() as f32;
                sin[p * head_dim + j] = a.sin() as f32;
            }
        }
    }
    let dims = [ctx as i64, head_dim as i64];
    (
        g.init_f32(cos_name, &dims, &cos),
        g.init_f32(sin_name, &dims, &sin),
    )
}

/// 1-D i64 initializers that cut the last axis in halves for [`rope`]:
/// `[0]`, `[head_dim / 2]`, `[head_dim]` and the axis `[-1]`.
pub struct HalfSplit<'a> {
    pub start: &'a str,
    pub mid: &'a str,
    pub end: &'a str,
    pub axis: &'a str,
}

/// Rotary embedding, rotate-half layout, `x * cos + concat(-x2, x1) * sin`:
/// `Slice`, `Slice`, `Neg`, `Concat`, `Mul`, `Mul`, `Add`.
pub fn rope(g: &mut GraphBuilder, x: &str, split: &HalfSplit, cos: &str, sin: &str) -> String {
    let a = g.op("Slice", &[x, split.start, split.mid, split.axis], &[]);
    let b = g.op("Slice", &[x, split.mid, split.end, split.axis], &[]);
    let nb = g.op("Neg", &[&b], &[]);
    let rot = g.op("Concat", &[&nb, &a], &[("axis", Attr::Int(-1))]);
    let xc = g.op("Mul", &[x, cos], &[]);
    let rs = g.op("Mul", &[&rot, sin], &[]);
    g.op("Add", &[&xc, &rs], &[])
}

/// RMSNorm over the last axis, `x / sqrt(mean(x^2) + eps) * gain`: `Pow`,
/// `ReduceMean`, `Add`, `Sqrt`, `Div`, `Mul`; `two` and `eps` are f32 scalars.
pub fn rms_norm(g: &mut GraphBuilder, x: &str, gain: &str, two: &str, eps: &str) -> String {
    let sq = g.op("Pow", &[x, two], &[]);
    let mean = g.op(
        "ReduceMean",
        &[&sq],
        &[("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(1))],
    );
    let var = g.op("Add", &[&mean, eps], &[]);
    let sd = g.op("Sqrt", &[&var], &[]);
    let n = g.op("Div", &[x, &sd], &[]);
    g.op("Mul", &[&n, gain], &[])
}

/// Transposes a row-major `[rows, cols]` matrix.
pub fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = w[r * cols + c];
        }
    }
    out
}

/// `x · Wᵀ` for `w` `[out, inp]` row-major: `Wᵀ` as the f32 initializer
/// `name` `[inp, out]` and one `MatMul`.
pub fn linear_f32(
    g: &mut GraphBuilder,
    name: &str,
    x: &str,
    w: &[f32],
    (out, inp): (usize, usize),
) -> String {
    let wt = g.init_f32(name, &[inp as i64, out as i64], &transpose(w, out, inp));
    g.op("MatMul", &[x, &wt], &[])
}

/// `[batch, seq, heads * head_dim]` to `[batch, heads, seq, head_dim]`:
/// `Reshape` to `shape` (`[0, 0, heads, head_dim]`), `Transpose` (0, 2, 1, 3).
pub fn split_heads(g: &mut GraphBuilder, x: &str, shape: &str) -> String {
    let y = g.op("Reshape", &[x, shape], &[]);
    g.op(
        "Transpose",
        &[&y],
        &[("perm", Attr::Ints(vec![0, 2, 1, 3]))],
    )
}

/// `[batch, heads, seq, head_dim]` back to `[batch, seq, model]`:
/// `Transpose` (0, 2, 1, 3), `Reshape` to `shape` (`[0, 0, model]`).
pub fn merge_heads(g: &mut GraphBuilder, x: &str, shape: &str) -> String {
    let y = g.op("Transpose", &[x], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
    g.op("Reshape", &[&y, shape], &[])
}

/// Attention scores `q · kᵀ * scale` for keys `k` of rank `rank`:
/// `Transpose` (last two axes swapped), `MatMul`, `Mul`.
pub fn scaled_scores(g: &mut GraphBuilder, q: &str, k: &str, rank: usize, scale: &str) -> String {
    let mut perm: Vec<i64> = (0..rank as i64).collect();
    perm.swap(rank - 2, rank - 1);
    let kt = g.op("Transpose", &[k], &[("perm", Attr::Ints(perm))]);
    let sc = g.op("MatMul", &[q, &kt], &[]);
    g.op("Mul", &[&sc, scale], &[])
}

/// Attention probabilities `softmax(scores + mask)` over the last axis:
/// `Add`, `Softmax`.
pub fn masked_softmax(g: &mut GraphBuilder, scores: &str, mask: &str) -> String {
    let sc = g.op("Add", &[scores, mask], &[]);
    g.op("Softmax", &[&sc], &[("axis", Attr::Int(-1))])
}

/// Gated SiLU activation of a feed-forward layer, `gate * sigmoid(gate) * up`:
/// `Sigmoid`, `Mul`, `Mul`.
pub fn swiglu(g: &mut GraphBuilder, gate: &str, up: &str) -> String {
    let sg = g.op("Sigmoid", &[gate], &[]);
    let silu = g.op("Mul", &[gate, &sg], &[]);
    g.op("Mul", &[&silu, up], &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_swaps_rows_and_columns() {
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
