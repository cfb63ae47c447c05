//! Single-op ONNX graphs written with EdgeBench's writer, for
//! `edgebench bench ops`: SCAR against dense causal masked attention built
//! from standard ONNX ops and as one fused `EbAttention` node, and one linear layer in f32 or `EbQuantLinear`.
//! All shapes are fixed, so tract optimises each graph for its size.

use super::quant::{QuantFormat, QuantMatrix};
use super::scar::ScarParams;
use crate::onnx::layers;
use crate::onnx::{encode, Dim, Elem, GraphBuilder};

/// Attention shapes: heads, tokens, head dim; SCAR clusters `[n, heads * head_dim]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnShape {
    pub heads: usize,
    pub n: usize,
    pub head_dim: usize,
}

impl AttnShape {
    /// Width of SCAR's clustered representation `X` (the model dimension).
    pub fn model_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    fn qkv_dims(&self) -> [Dim; 4] {
        [
            1.into(),
            (self.heads as i64).into(),
            (self.n as i64).into(),
            (self.head_dim as i64).into(),
        ]
    }
}

/// Dense causal attention from standard ops: `MatMul(Q, K^T) * scale + mask`,
/// `Softmax`, `MatMul(., V)`. Inputs `q`, `k`, `v` `[1, h, n, d]`; output `y`.
/// The causal mask is a constant `[n, n]` of 0 and -inf.
pub fn dense_attention(s: AttnShape) -> Vec<u8> {
    let mut g = GraphBuilder::new("dense_attention");
    let dims = s.qkv_dims();
    for name in ["q", "k", "v"] {
        g.input(name, Elem::F32, &dims);
    }
    let n = s.n;
    let mask = g.init_f32("mask", &[n as i64, n as i64], &causal_mask(n));
    let scale = g.init_f32("scale", &[], &[1.0 / (s.head_dim as f32).sqrt()]);
    let scores = layers::scaled_scores(&mut g, "q", "k", 4, &scale);
    let p = layers::masked_softmax(&mut g, &scores, &mask);
    g.op("MatMul", &[&p, "v"], &[]);
    let y = g.name_last_output("y");
    g.output(&y, Elem::F32, &dims);
    encode(&g.finish("dense causal attention (bench ops)", &[]))
}

/// Dense causal attention as one `EbAttention` node (EdgeBench's fused
/// kernel, as `load_graph` puts it in place of the chain): inputs `q`, `k`,
/// `v` `[1, h, n, d]`, the constant `[n, n]` causal mask of 0 and -inf;
/// output `y`.
pub fn fused_attention(s: AttnShape) -> Vec<u8> {
    let mut g = GraphBuilder::new("fused_attention");
    let dims = s.qkv_dims();
    for name in ["q", "k", "v"] {
        g.input(name, Elem::F32, &dims);
    }
    let mask = g.init_f32("mask", &[s.n as i64, s.n as i64], &causal_mask(s.n));
    g.node_in_domain(
        crate::onnx::CUSTOM_DOMAIN,
        super::attention::OP_NAME,
        &["q", "k", "v", &mask],
        &["y"],
        &[(
            "scale",
            crate::onnx::Attr::Float(1.0 / (s.head_dim as f32).sqrt()),
        )],
    );
    g.output("y", Elem::F32, &dims);
    encode(&g.finish("fused causal attention (bench ops)", &[]))
}

/// `[n, n]` additive causal mask: 0 where `j <= i`, -inf above the diagonal.
fn causal_mask(n: usize) -> Vec<f32> {
    (0..n * n)
        .map(|ij| {
            if ij % n > ij / n {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect()
}

/// One `EbScar` node. Inputs `x` `[1, n, h * d]`, `q`, `k`, `v` `[1, h, n, d]`;
/// outputs `y` and `clusters` `[1, n]`.
pub fn scar_attention(s: AttnShape, p: &ScarParams) -> Vec<u8> {
    let mut g = GraphBuilder::new("scar_attention");
    let dims = s.qkv_dims();
    g.input(
        "x",
        Elem::F32,
        &[1.into(), (s.n as i64).into(), (s.model_dim() as i64).into()],
    );
    for name in ["q", "k", "v"] {
        g.input(name, Elem::F32, &dims);
    }
    let (y, c) = super::scar::write_node(&mut g, "scar", "x", "q", "k", "v", None, p);
    g.output(&y, Elem::F32, &dims);
    g.output(&c, Elem::I64, &[1.into(), (s.n as i64).into()]);
    encode(&g.finish("SCAR attention (bench ops)", &[]))
}

/// Paper section 3.3's operation count for SCAR: `k * n + n` (2,176 at
/// `n = 128, k = 16`), against `n^2` for dense attention.
pub fn paper_scar_ops(n: usize, k: usize) -> u64 {
    (k * n + n) as u64
}

/// A linear layer `x [batch, in] -> [batch, out]` and its weight bytes as stored.
pub struct LinearGraph {
    pub onnx: Vec<u8>,
    pub weight_bytes: usize,
}

/// `x . W^T` for `w` (`[out, in]` row-major): a plain f32 `MatMul` when
/// `bits` is `None`, else `EbQuantLinear` (symmetric blocks of `block_size`).
pub fn linear(
    w: &[f32],
    out: usize,
    inp: usize,
    batch: usize,
    bits: Option<usize>,
    block_size: usize,
) -> Result<LinearGraph, String> {
    let mut g = GraphBuilder::new("linear");
    g.input(
        "x",
        Elem::F32,
        &[(batch as i64).into(), (inp as i64).into()],
    );
    let weight_bytes = match bits {
        None => {
            layers::linear_f32(&mut g, "w", "x", w, (out, inp));
            4 * w.len()
        }
        Some(bits) => {
            let f = QuantFormat {
                bits,
                block_size,
                k: inp,
                n: out,
            };
            let q = QuantMatrix::quantize(w, f, false)?;
            super::quant::write_node(&mut g, "w", "x", &q);
            q.bytes()
        }
    };
    let y = g.name_last_output("y");
    g.output(&y, Elem::F32, &[(batch as i64).into(), (out as i64).into()]);
    Ok(LinearGraph {
        onnx: encode(&g.finish("linear layer (bench ops)", &[])),
        weight_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_claim_is_reproduced_by_the_formula() {
        assert_eq!(paper_scar_ops(128, 16), 2_176);
        assert_eq!(paper_scar_ops(128, 8), 1_152);
    }
}
