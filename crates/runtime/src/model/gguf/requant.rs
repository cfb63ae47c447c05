//! Rewrites a llama GGUF file at another quantization: metadata copied, 1-D tensors F32, every
//! matrix re-quantized from its dequantized f32 (llama.cpp's mixes Q4_K_M and Q5_K_M included).

use super::{quantize_as, GgmlType, Gguf, GgufError, GgufValue, GgufWriter, TensorInfo};

/// What `edgebench quantize` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every matrix of one type (with the K-quant fallbacks of [`fallback`]).
    Type(GgmlType),
    /// llama.cpp's `_M` mix over `base` (Q4_K or Q5_K): Q6_K for the output head and token
    /// embedding and for the attention values and feed-forward down projections of the layers
    /// llama.cpp's `use_more_bits` picks (the first and last eighth and every third in between),
    /// `base` for the other matrices.
    Mix(GgmlType),
}

impl Target {
    /// Every name [`Target::parse`] takes.
    pub const NAMES: [&'static str; 12] = [
        "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_K_M",
        "Q5_K_M",
    ];

    /// Parses a name of [`Target::NAMES`] (any case).
    pub fn parse(s: &str) -> Option<Target> {
        let up = s.to_ascii_uppercase();
        match up.as_str() {
            "Q4_K_M" => Some(Target::Mix(GgmlType::Q4_K)),
            "Q5_K_M" => Some(Target::Mix(GgmlType::Q5_K)),
            _ => GgmlType::from_name(&up)
                .filter(|t| quantize_as(*t, &[]).is_some())
                .map(Target::Type),
        }
    }

    /// llama.cpp's `general.file_type` (`llama_ftype`) of the result.
    pub fn file_type(&self) -> u32 {
        match *self {
            Target::Type(GgmlType::Q4_0) => 2,
            Target::Type(GgmlType::Q4_1) => 3,
            Target::Type(GgmlType::Q8_0) => 7,
            Target::Type(GgmlType::Q5_0) => 8,
            Target::Type(GgmlType::Q5_1) => 9,
            Target::Type(GgmlType::Q2_K) => 10,
            Target::Type(GgmlType::Q3_K) => 11, // Q3_K_S
            Target::Type(GgmlType::Q4_K) => 14, // Q4_K_S
            Target::Type(GgmlType::Q5_K) => 16, // Q5_K_S
            Target::Type(GgmlType::Q6_K) => 18,
            Target::Mix(GgmlType::Q5_K) => 17,
            _ => 15, // Q4_K_M
        }
    }
}

/// The type written for a matrix with rows of `row` values when `want` does not fit: the
/// K-quants need rows of whole 256-value super-blocks, and fall back as llama.cpp does
/// (Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0; Q2_K and Q3_K to Q4_0, where llama.cpp now
/// writes IQ4_NL, which EdgeBench does not read); `None` when not even blocks of 32 fit.
pub fn fallback(want: GgmlType, row: usize) -> Option<GgmlType> {
    let bs = want.block_size()?;
    if row.is_multiple_of(bs) {
        return Some(want);
    }
    let next = match want {
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::Q4_0,
        _ => return None,
    };
    fallback(next, row)
}

/// llama.cpp's `use_more_bits(i_layer, n_layers)`.
fn use_more_bits(layer: usize, layers: usize) -> bool {
    layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2
}

/// The type `target` gives matrix `name` (before the row-length fallback).
fn wanted(target: Target, name: &str, layers: usize) -> GgmlType {
    let base = match target {
        Target::Type(t) => return t,
        Target::Mix(base) => base,
    };
    if name == "output.weight" || name == "token_embd.weight" {
        return GgmlType::Q6_K;
    }
    let layer = name
        .strip_prefix("blk.")
        .and_then(|r| r.split('.').next())
        .and_then(|l| l.parse::<usize>().ok());
    match layer {
        Some(l)
            if (name.ends_with(".attn_v.weight") || name.ends_with(".ffn_down.weight"))
                && use_more_bits(l, layers.max(1)) =>
        {
            GgmlType::Q6_K
        }
        _ => base,
    }
}

/// One tensor of the rewritten file: its name, its type and why (for the report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// Tensor name.
    pub name: String,
    /// Type in the source file.
    pub from: GgmlType,
    /// Type written.
    pub to: GgmlType,
}

/// Re-quantizes the GGUF file `bytes` (parsed as `g`) to `target`: returns the new file and what
/// each tensor became. Errors name the tensor (the caller adds the file).
pub fn requantize(
    g: &Gguf,
    bytes: &[u8],
    target: Target,
) -> Result<(Vec<u8>, Vec<Rewritten>), GgufError> {
    let layers = g
        .get("llama.block_count")
        .and_then(GgufValue::as_u64)
        .unwrap_or(0) as usize;
    let mut w = GgufWriter::new();
    let mut typed = false;
    for (k, v) in &g.metadata {
        match k.as_str() {
            "general.file_type" => {
                w.kv(k, GgufValue::U32(target.file_type()));
                typed = true;
            }
            "general.quantization_version" => {}
            _ => w.kv(k, v.clone()),
        }
    }
    if !typed {
        w.kv("general.file_type", GgufValue::U32(target.file_type()));
    }
    w.kv("general.quantization_version", GgufValue::U32(2));
    let mut report = Vec::with_capacity(g.tensors.len());
    for t in &g.tensors {
        let (ty, data) = rewrite(g, bytes, t, target, layers)?;
        report.push(Rewritten {
            name: t.name.clone(),
            from: t.ggml_type,
            to: ty,
        });
        w.tensor(&t.name, &t.dims, ty, data);
    }
    Ok((w.finish(), report))
}

fn rewrite(
    g: &Gguf,
    bytes: &[u8],
    t: &TensorInfo,
    target: Target,
    layers: usize,
) -> Result<(GgmlType, Vec<u8>), GgufError> {
    let values = g.dequantize(bytes, t)?;
    let f32_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    if t.dims.len() != 2 || t.dims[1] == 1 {
        return Ok((GgmlType::F32, f32_bytes(&values)));
    }
    let row = t.dims[0] as usize;
    let want = wanted(target, &t.name, layers);
    match fallback(want, row) {
        Some(ty) => Ok((ty, quantize_as(ty, &values).expect("a quantizable type"))),
        None => Ok((GgmlType::F32, f32_bytes(&values))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fallbacks_and_layer_choice() {
        assert_eq!(Target::parse("q4_k_m"), Some(Target::Mix(GgmlType::Q4_K)));
        assert_eq!(Target::parse("Q6_K"), Some(Target::Type(GgmlType::Q6_K)));
        assert_eq!(Target::parse("Q3_K"), Some(Target::Type(GgmlType::Q3_K)));
        assert_eq!(Target::parse("Q8_K"), None);
        assert_eq!(Target::parse("F16"), None);
        for n in Target::NAMES {
            assert!(Target::parse(n).is_some(), "{n}");
        }
        assert_eq!(fallback(GgmlType::Q4_K, 512), Some(GgmlType::Q4_K));
        assert_eq!(fallback(GgmlType::Q4_K, 576), Some(GgmlType::Q5_0));
        assert_eq!(fallback(GgmlType::Q6_K, 576), Some(GgmlType::Q8_0));
        assert_eq!(fallback(GgmlType::Q5_K, 96), Some(GgmlType::Q5_1));
        assert_eq!(fallback(GgmlType::Q6_K, 100), None);
        // 30 layers: llama.cpp gives Q6_K to layers 0-2, 26-29 and every third from 5
        let more: Vec<usize> = (0..30).filter(|&l| use_more_bits(l, 30)).collect();
        assert_eq!(more, [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]);
        let t = Target::Mix(GgmlType::Q4_K);
        assert_eq!(wanted(t, "blk.5.ffn_down.weight", 30), GgmlType::Q6_K);
        assert_eq!(wanted(t, "blk.6.ffn_down.weight", 30), GgmlType::Q4_K);
        assert_eq!(wanted(t, "blk.5.attn_q.weight", 30), GgmlType::Q4_K);
        assert_eq!(wanted(t, "token_embd.weight", 30), GgmlType::Q6_K);
        assert_eq!(wanted(t, "output.weight", 30), GgmlType::Q6_K);
    }
}
