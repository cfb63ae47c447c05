//! ggml block formats: dequantisation of F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K,
//! Q3_K, Q4_K, Q5_K and Q6_K (bit for bit as the `gguf` Python package's numpy dequantizers), the
//! quantized types' blocks as codes with per-sub-block scales and mins ([`linear_blocks`]), and
//! quantisers (llama.cpp's reference ones for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0; round-to-nearest with
//! a scale (and min) search for the K-quants Q2_K .. Q6_K).

use half::{bf16, f16};

use super::{err, GgmlType, Gguf, GgufError, TensorInfo};

impl Gguf {
    /// Dequantises tensor `t` to f32, in storage order: row-major with `dims[0]` fastest, i.e. a
    /// 2-D tensor comes out with shape `[dims[1], dims[0]]`.
    pub fn dequantize(&self, bytes: &[u8], t: &TensorInfo) -> Result<Vec<f32>, GgufError> {
        let data = self.tensor_bytes(bytes, t)?;
        let n = usize::try_from(t.n_elements()).map_err(|_| {
            GgufError::new(format!(
                "tensor `{}` is too large for this platform",
                t.name
            ))
        })?;
        dequantize_blocks(t.ggml_type, data, n)
            .map_err(|e| GgufError::new(format!("{} for tensor {}", e.what, t.name)))
    }
}

#[inline]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Dequantises `n` elements of type `ty` from `data`, which must hold exactly `n` elements' worth
/// of blocks. Supports every type of [`GgmlType::SUPPORTED`].
pub fn dequantize_blocks(ty: GgmlType, data: &[u8], n: usize) -> Result<Vec<f32>, GgufError> {
    if !ty.can_dequantize() {
        return err(format!(
            "unsupported tensor type {} (id {})",
            ty.name(),
            ty.id()
        ));
    }
    let (bs, bb) = ty.layout().expect("supported types have a known layout");
    if !n.is_multiple_of(bs) {
        return err(format!(
            "{n} elements, not a multiple of block size {bs} of {}",
            ty.name()
        ));
    }
    let need = (n / bs).checked_mul(bb);
    if need != Some(data.len()) {
        return err(format!(
            "{} data has {} bytes, expected {} for {n} elements",
            ty.name(),
            data.len(),
            need.map_or("an overflowing number of".to_string(), |v| v.to_string()),
        ));
    }
    let mut out = Vec::with_capacity(n);
    match ty {
        GgmlType::F32 => out.extend(
            data.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        GgmlType::F16 => out.extend(
            data.chunks_exact(2)
                .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()),
        ),
        GgmlType::BF16 => out.extend(
            data.chunks_exact(2)
                .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()),
        ),
        GgmlType::Q4_0 => {
            for blk in data.chunks_exact(18) {
                let d = f16_at(blk, 0);
                let qs = &blk[2..18];
                out.extend(qs.iter().map(|&q| ((q & 0x0F) as i32 - 8) as f32 * d));
                out.extend(qs.iter().map(|&q| ((q >> 4) as i32 - 8) as f32 * d));
            }
        }
        GgmlType::Q4_1 => {
            for blk in data.chunks_exact(20) {
                let d = f16_at(blk, 0);
                let m = f16_at(blk, 2);
                let qs = &blk[4..20];
                out.extend(qs.iter().map(|&q| (q & 0x0F) as f32 * d + m));
                out.extend(qs.iter().map(|&q| (q >> 4) as f32 * d + m));
            }
        }
        GgmlType::Q8_0 => {
            for blk in data.chunks_exact(34) {
                let d = f16_at(blk, 0);
                out.extend(blk[2..34].iter().map(|&q| (q as i8) as f32 * d));
            }
        }
        GgmlType::Other(_) => unreachable!("checked by can_dequantize"),
        _ => {
            let lb = decode_blocks(ty, data);
            out.extend(lb.dequantize());
        }
    }
    debug_assert_eq!(out.len(), n);
    Ok(out)
}

/// A quantized ggml tensor as unsigned codes with per-sub-block scales and optional mins: the
/// `EbQuantLinear` form. Weight `i` (in storage order) is `codes[i] · s + m` with mins, else
/// `(codes[i] - 2^(bits-1)) · s`, where `s`, `m` are the values of sub-block `i / block_size`;
/// evaluated in f32 exactly so, this is bit for bit the type's dequantisation.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearBlocks {
    /// Bits per code.
    pub bits: usize,
    /// Weights per sub-block (16 or 32).
    pub block_size: usize,
    /// One code per weight, each `< 2^bits`.
    pub codes: Vec<u8>,
    /// One scale per sub-block.
    pub scales: Vec<f32>,
    /// One min per sub-block (asymmetric types only).
    pub mins: Option<Vec<f32>>,
}

impl LinearBlocks {
    /// The weights, `codes[i] · s + m` or `(codes[i] - 2^(bits-1)) · s` in f32.
    pub fn dequantize(&self) -> Vec<f32> {
        let half = (1u32 << (self.bits - 1)) as f32;
        let bs = self.block_size;
        let mut out = Vec::with_capacity(self.codes.len());
        for (j, c) in self.codes.chunks_exact(bs).enumerate() {
            let s = self.scales[j];
            match &self.mins {
                Some(m) => out.extend(c.iter().map(|&q| q as f32 * s + m[j])),
                None => out.extend(c.iter().map(|&q| (q as f32 - half) * s)),
            }
        }
        out
    }
}

/// `(bits, sub-block size, asymmetric)` of the quantized types [`linear_blocks`] handles.
pub fn linear_format(ty: GgmlType) -> Option<(usize, usize, bool)> {
    Some(match ty {
        GgmlType::Q4_0 => (4, 32, false),
        GgmlType::Q4_1 => (4, 32, true),
        GgmlType::Q5_0 => (5, 32, false),
        GgmlType::Q5_1 => (5, 32, true),
        GgmlType::Q8_0 => (8, 32, false),
        GgmlType::Q2_K => (2, 16, true),
        GgmlType::Q3_K => (3, 16, false),
        GgmlType::Q4_K => (4, 32, true),
        GgmlType::Q5_K => (5, 32, true),
        GgmlType::Q6_K => (6, 16, false),
        _ => return None,
    })
}

/// The blocks of a quantized tensor (`n` elements of `ty` in `data`) in `EbQuantLinear` form;
/// `Ok(None)` for the float types. Mins are the negated `dmin · m` of the K-quants and scales
/// the products `d · sc`, both computed in f32 as the dequantizer does.
pub fn linear_blocks(
    ty: GgmlType,
    data: &[u8],
    n: usize,
) -> Result<Option<LinearBlocks>, GgufError> {
    if linear_format(ty).is_none() {
        return Ok(None);
    }
    let (bs, bb) = ty.layout().expect("quantized types have a layout");
    if !n.is_multiple_of(bs) || (n / bs).checked_mul(bb) != Some(data.len()) {
        return err(format!(
            "{} data has {} bytes, not {n} elements' worth",
            ty.name(),
            data.len()
        ));
    }
    Ok(Some(decode_blocks(ty, data)))
}

/// [`linear_blocks`] for data whose length was checked.
fn decode_blocks(ty: GgmlType, data: &[u8]) -> LinearBlocks {
    let (bits, sub, asym) = linear_format(ty).expect("a quantized type");
    let (bs, bb) = ty.layout().expect("quantized types have a layout");
    let nblk = data.len() / bb;
    let mut codes = Vec::with_capacity(nblk * bs);
    let mut scales = Vec::with_capacity(nblk * bs / sub);
    let mut mins = Vec::with_capacity(if asym { nblk * bs / sub } else { 0 });
    let mut q = [0u8; 256];
    for blk in data.chunks_exact(bb) {
        match ty {
            GgmlType::Q4_0 | GgmlType::Q4_1 => {
                let qs = &blk[bb - 16..];
                for j in 0..16 {
                    q[j] = qs[j] & 0x0F;
                    q[j + 16] = qs[j] >> 4;
                }
                scales.push(f16_at(blk, 0));
                if asym {
                    mins.push(f16_at(blk, 2));
                }
            }
            GgmlType::Q5_0 | GgmlType::Q5_1 => {
                let at = if asym { 4 } else { 2 };
                let qh = u32::from_le_bytes([blk[at], blk[at + 1], blk[at + 2], blk[at + 3]]);
                let qs = &blk[at + 4..];
                for j in 0..16 {
                    q[j] = (qs[j] & 0x0F) | ((((qh >> j) & 1) as u8) << 4);
                    q[j + 16] = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
                }
                scales.push(f16_at(blk, 0));
                if asym {
                    mins.push(f16_at(blk, 2));
                }
            }
            GgmlType::Q8_0 => {
                for (c, &b) in q.iter_mut().zip(&blk[2..34]) {
                    *c = (b as i8 as i16 + 128) as u8;
                }
                scales.push(f16_at(blk, 0));
            }
            GgmlType::Q2_K => {
                let (sc, qs) = (&blk[..16], &blk[16..80]);
                let (d, dmin) = (f16_at(blk, 80), f16_at(blk, 82));
                for (i, qi) in q.iter_mut().enumerate() {
                    let (h, s, l) = (i / 128, (i / 32) % 4, i % 32);
                    *qi = (qs[h * 32 + l] >> (2 * s)) & 3;
                }
                for &c in sc {
                    scales.push(d * (c & 0x0F) as f32);
                    mins.push(-(dmin * (c >> 4) as f32));
                }
            }
            GgmlType::Q3_K => {
                let (hmask, qs, sc) = (&blk[..32], &blk[32..96], &blk[96..108]);
                let d = f16_at(blk, 108);
                for (i, qi) in q.iter_mut().enumerate() {
                    let (h, s, l) = (i / 128, (i / 32) % 4, i % 32);
                    let lo = (qs[h * 32 + l] >> (2 * s)) & 3;
                    let hi = (hmask[l] >> (i / 32)) & 1;
                    *qi = lo | (hi << 2);
                }
                for j in 0..16 {
                    let lo = if j < 8 { sc[j] & 0x0F } else { sc[j - 8] >> 4 };
                    let hi = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
                    let v = ((lo | (hi << 4)) as i8).wrapping_sub(32);
                    scales.push(d * v as f32);
                }
            }
            GgmlType::Q4_K | GgmlType::Q5_K => {
                let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
                let sc = &blk[4..16];
                let (qh, qs) = if ty == GgmlType::Q5_K {
                    (Some(&blk[16..48]), &blk[48..176])
                } else {
                    (None, &blk[16..144])
                };
                for (i, qi) in q.iter_mut().enumerate() {
                    let (j, l) = (i / 32, i % 32);
                    let lo = (qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 0x0F;
                    *qi = lo | qh.map_or(0, |qh| ((qh[l] >> j) & 1) << 4);
                }
                for j in 0..8 {
                    let (s, m) = k_scale_min(sc, j);
                    scales.push(d * s as f32);
                    mins.push(-(dmin * m as f32));
                }
            }
            GgmlType::Q6_K => {
                let (ql, qh, sc) = (&blk[..128], &blk[128..192], &blk[192..208]);
                let d = f16_at(blk, 208);
                for (i, qi) in q.iter_mut().enumerate() {
                    let h = i / 128;
                    let r = i % 128;
                    let lo = (ql[h * 64 + r % 64] >> (4 * (r / 64))) & 0x0F;
                    let hi = (qh[h * 32 + r % 32] >> (2 * (r / 32))) & 3;
                    *qi = lo | (hi << 4);
                }
                scales.extend(sc.iter().map(|&c| d * (c as i8) as f32));
            }
            _ => unreachable!("linear_format lists the quantized types"),
        }
        codes.extend_from_slice(&q[..bs]);
    }
    LinearBlocks {
        bits,
        block_size: sub,
        codes,
        scales,
        mins: asym.then_some(mins),
    }
}

/// Sub-block `j`'s 6-bit scale and min of a Q4_K / Q5_K block's 12 packed bytes.
fn k_scale_min(sc: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (sc[j] & 63, sc[j + 4] & 63)
    } else {
        (
            (sc[j + 4] & 0x0F) | ((sc[j - 4] >> 2) & 0x30),
            (sc[j + 4] >> 4) | ((sc[j] >> 2) & 0x30),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Reference quantisers (llama.cpp quantize_row_*_ref)
// ---------------------------------------------------------------------------------------------

fn check_blocks(w: &[f32], what: &str) {
    assert!(
        w.len().is_multiple_of(32),
        "{what}: {} values, not a multiple of the block size 32",
        w.len()
    );
}

/// The value of largest magnitude, the first one on ties (llama.cpp's `max` of the symmetric
/// reference quantizers).
fn signed_absmax(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// Quantises to Q4_0 exactly like llama.cpp's `quantize_row_q4_0_ref`.
///
/// # Panics
/// If `w.len()` is not a multiple of 32.
pub fn quantize_q4_0(w: &[f32]) -> Vec<u8> {
    check_blocks(w, "quantize_q4_0");
    let mut out = Vec::with_capacity(w.len() / 32 * 18);
    for x in w.chunks_exact(32) {
        let max = signed_absmax(x);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        for j in 0..16 {
            let x0 = x[j] * id;
            let x1 = x[16 + j] * id;
            // C: MIN(15, (int8_t)(x + 8.5f)); `as i8` truncates toward zero like the C cast.
            let xi0 = ((x0 + 8.5) as i8).min(15) as u8;
            let xi1 = ((x1 + 8.5) as i8).min(15) as u8;
            out.push(xi0 | (xi1 << 4));
        }
    }
    out
}

/// Quantises to Q4_1 exactly like llama.cpp's `quantize_row_q4_1_ref`.
///
/// # Panics
/// If `w.len()` is not a multiple of 32.
pub fn quantize_q4_1(w: &[f32]) -> Vec<u8> {
    check_blocks(w, "quantize_q4_1");
    let mut out = Vec::with_capacity(w.len() / 32 * 20);
    for x in w.chunks_exact(32) {
        let mut min = f32::MAX;
        let mut max = -f32::MAX;
        for &v in x {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        out.extend_from_slice(&f16::from_f32(min).to_bits().to_le_bytes());
        for j in 0..16 {
            let x0 = (x[j] - min) * id;
            let x1 = (x[16 + j] - min) * id;
            let xi0 = ((x0 + 0.5) as i8).min(15) as u8;
            let xi1 = ((x1 + 0.5) as i8).min(15) as u8;
            out.push(xi0 | (xi1 << 4));
        }
    }
    out
}

/// Quantises to Q8_0 exactly like llama.cpp's `quantize_row_q8_0_ref`.
///
/// # Panics
/// If `w.len()` is not a multiple of 32.
pub fn quantize_q8_0(w: &[f32]) -> Vec<u8> {
    check_blocks(w, "quantize_q8_0");
    let mut out = Vec::with_capacity(w.len() / 32 * 34);
    for x in w.chunks_exact(32) {
        let amax = x.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        // C: roundf (half away from zero), then the implicit float -> int8 conversion.
        out.extend(x.iter().map(|&v| ((v * id).round() as i8) as u8));
    }
    out
}

/// Quantises to Q5_0 exactly like llama.cpp's `quantize_row_q5_0_ref`.
///
/// # Panics
/// If `w.len()` is not a multiple of 32.
pub fn quantize_q5_0(w: &[f32]) -> Vec<u8> {
    check_blocks(w, "quantize_q5_0");
    let mut out = Vec::with_capacity(w.len() / 32 * 22);
    for x in w.chunks_exact(32) {
        let max = signed_absmax(x);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        // C: MIN(31, (int8_t)(x + 16.5f)); `as i8` truncates toward zero like the C cast.
        let q: Vec<u8> = x
            .iter()
            .map(|&v| ((v * id + 16.5) as i8).min(31) as u8)
            .collect();
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        push_q5_codes(&mut out, &q);
    }
    out
}

/// Quantises to Q5_1 exactly like llama.cpp's `quantize_row_q5_1_ref`.
///
/// # Panics
/// If `w.len()` is not a multiple of 32.
pub fn quantize_q5_1(w: &[f32]) -> Vec<u8> {
    check_blocks(w, "quantize_q5_1");
    let mut out = Vec::with_capacity(w.len() / 32 * 24);
    for x in w.chunks_exact(32) {
        let min = x.iter().copied().fold(f32::MAX, f32::min);
        let max = x.iter().copied().fold(-f32::MAX, f32::max);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q: Vec<u8> = x
            .iter()
            .map(|&v| (((v - min) * id + 0.5) as i8).min(31) as u8)
            .collect();
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        out.extend_from_slice(&f16::from_f32(min).to_bits().to_le_bytes());
        push_q5_codes(&mut out, &q);
    }
    out
}

/// The 32 5-bit codes of a Q5_0 / Q5_1 block: u32 of high bits, then nibbles (low nibbles hold
/// codes 0..16, high nibbles 16..32).
fn push_q5_codes(out: &mut Vec<u8>, q: &[u8]) {
    let qh = q
        .iter()
        .enumerate()
        .fold(0u32, |h, (j, &c)| h | (((c >> 4) as u32 & 1) << j));
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend((0..16).map(|j| (q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4)));
}

fn check_super_blocks(w: &[f32], what: &str) {
    assert!(
        w.len().is_multiple_of(256),
        "{what}: {} values, not a multiple of the super-block size 256",
        w.len()
    );
}

/// `v` rounded to binary16 and back, kept finite.
fn f16_round(v: f32) -> f32 {
    f16::from_f32(v.clamp(-65504.0, 65504.0)).to_f32()
}

/// Scale `a` and min `m >= 0` with `x ≈ a·q - m`, `q` in `0..=nmax`: min/max, then a few
/// least-squares refits of `a` and `m` to the rounded codes while the squared error drops.
fn fit_scale_min(x: &[f32], nmax: u8) -> (f32, f32) {
    let lo = x.iter().copied().fold(f32::MAX, f32::min).min(0.0);
    let hi = x.iter().copied().fold(-f32::MAX, f32::max);
    if hi <= lo {
        return (0.0, -lo);
    }
    let nm = nmax as f32;
    let err = |a: f32, m: f32| -> f32 {
        let ia = if a > 0.0 { 1.0 / a } else { 0.0 };
        x.iter()
            .map(|&v| {
                let q = ((v + m) * ia).round().clamp(0.0, nm);
                (a * q - m - v).powi(2)
            })
            .sum()
    };
    let (mut a, mut m) = ((hi - lo) / nm, -lo);
    let mut best = err(a, m);
    for _ in 0..4 {
        let ia = 1.0 / a;
        let (mut n, mut sq, mut sqq, mut sx, mut sqx) = (0f64, 0f64, 0f64, 0f64, 0f64);
        for &v in x {
            let q = ((v + m) * ia).round().clamp(0.0, nm) as f64;
            n += 1.0;
            sq += q;
            sqq += q * q;
            sx += v as f64;
            sqx += q * v as f64;
        }
        let det = n * sqq - sq * sq;
        if det <= 0.0 {
            break;
        }
        let mut na = (n * sqx - sq * sx) / det;
        let mut nb = (sqq * sx - sq * sqx) / det; // x ≈ na·q + nb
        if nb > 0.0 {
            nb = 0.0;
            na = sqx / sqq;
        }
        if na <= 0.0 {
            break;
        }
        let (ca, cm) = (na as f32, -nb as f32);
        let e = err(ca, cm);
        if e >= best {
            break;
        }
        (a, m, best) = (ca, cm, e);
    }
    (a, m)
}

/// Scale `s` with `x ≈ s·q`, `q` in `-half..half`: the largest-magnitude value mapped near code
/// `-half` (19 candidate mappings, as llama.cpp's `make_qx_quants` tries), each candidate's codes
/// refitted by least squares, the one of least squared error kept.
fn fit_symmetric_scale(x: &[f32], half: f32) -> f32 {
    let max = x
        .iter()
        .copied()
        .fold(0f32, |a, v| if v.abs() > a.abs() { v } else { a });
    if max == 0.0 {
        return 0.0;
    }
    let (mut best, mut best_err) = (max / -half, f32::INFINITY);
    for step in -9..=9 {
        let iscale = -(half + 0.1 * step as f32) / max;
        let (mut sxl, mut sll) = (0f32, 0f32);
        for &v in x {
            let l = (iscale * v).round().clamp(-half, half - 1.0);
            sxl += v * l;
            sll += l * l;
        }
        if sll == 0.0 {
            continue;
        }
        let s = sxl / sll;
        let is = 1.0 / s;
        let err: f32 = x
            .iter()
            .map(|&v| (v - s * (v * is).round().clamp(-half, half - 1.0)).powi(2))
            .sum();
        if err < best_err {
            (best, best_err) = (s, err);
        }
    }
    best
}

/// The Q4_K / Q5_K block of 256 values `x` with `bits` (4 or 5) per code: f16 d and dmin, the 12
/// bytes of 6-bit scales and mins, then (Q5_K) 32 bytes of 5th bits and 128 bytes of nibbles.
fn push_k_block_with_min(out: &mut Vec<u8>, x: &[f32], bits: u32) {
    let nmax = ((1u32 << bits) - 1) as u8;
    let fits: Vec<(f32, f32)> = x.chunks_exact(32).map(|c| fit_scale_min(c, nmax)).collect();
    let max_a = fits.iter().fold(0f32, |a, f| a.max(f.0));
    let max_m = fits.iter().fold(0f32, |a, f| a.max(f.1));
    let d = f16_round(max_a / 63.0);
    let dmin = f16_round(max_m / 63.0);
    let to6 = |v: f32, unit: f32| {
        if unit > 0.0 {
            (v / unit).round().clamp(0.0, 63.0) as u8
        } else {
            0
        }
    };
    let sc: Vec<u8> = fits.iter().map(|f| to6(f.0, d)).collect();
    let mn: Vec<u8> = fits.iter().map(|f| to6(f.1, dmin)).collect();
    let mut packed = [0u8; 12];
    for j in 0..4 {
        packed[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
        packed[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
        packed[j + 8] = (sc[j + 4] & 0x0F) | ((mn[j + 4] & 0x0F) << 4);
    }
    let mut q = [0u8; 256];
    for (j, (c, qj)) in x.chunks_exact(32).zip(q.chunks_exact_mut(32)).enumerate() {
        // the scale and min exactly as the dequantizer computes them
        let a = d * sc[j] as f32;
        let m = dmin * mn[j] as f32;
        let ia = if a != 0.0 { 1.0 / a } else { 0.0 };
        for (o, &v) in qj.iter_mut().zip(c) {
            *o = ((v + m) * ia).round().clamp(0.0, nmax as f32) as u8;
        }
    }
    out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
    out.extend_from_slice(&f16::from_f32(dmin).to_bits().to_le_bytes());
    out.extend_from_slice(&packed);
    if bits == 5 {
        out.extend((0..32).map(|l| (0..8).fold(0u8, |h, j| h | (((q[32 * j + l] >> 4) & 1) << j))));
    }
    for c in 0..4 {
        out.extend((0..32).map(|l| (q[64 * c + l] & 0x0F) | ((q[64 * c + 32 + l] & 0x0F) << 4)));
    }
}

/// Quantises to Q4_K: per sub-block of 32 a scale and min fitted to the values (min/max, then
/// least-squares refits), both rounded to 6 bits of the super-block's f16 `d` and `dmin`, codes
/// rounded to nearest. Readable by any Q4_K dequantizer (gguf's, llama.cpp's).
///
/// # Panics
/// If `w.len()` is not a multiple of 256.
pub fn quantize_q4_k(w: &[f32]) -> Vec<u8> {
    check_super_blocks(w, "quantize_q4_k");
    let mut out = Vec::with_capacity(w.len() / 256 * 144);
    for x in w.chunks_exact(256) {
        push_k_block_with_min(&mut out, x, 4);
    }
    out
}

/// Quantises to Q5_K, as [`quantize_q4_k`] with 5-bit codes.
///
/// # Panics
/// If `w.len()` is not a multiple of 256.
pub fn quantize_q5_k(w: &[f32]) -> Vec<u8> {
    check_super_blocks(w, "quantize_q5_k");
    let mut out = Vec::with_capacity(w.len() / 256 * 176);
    for x in w.chunks_exact(256) {
        push_k_block_with_min(&mut out, x, 5);
    }
    out
}

/// Symmetric sub-blocks of 16 (Q6_K, Q3_K): each sub-block's scale fitted for codes
/// `-half..half`, rounded to a signed multiple in `sc_lo..=sc_hi` of the super-block's f16 `d`
/// (`d` maps the largest scale to `sc_hi`); returns `d`, the multiples and the codes offset by
/// `half`.
fn symmetric_sub_blocks(x: &[f32], half: f32, sc_lo: f32, sc_hi: f32) -> (f32, Vec<i8>, [u8; 256]) {
    let scales: Vec<f32> = x
        .chunks_exact(16)
        .map(|c| fit_symmetric_scale(c, half))
        .collect();
    let amax = scales.iter().fold(0f32, |a, s| a.max(s.abs()));
    let d = f16_round(amax / sc_hi);
    let sc: Vec<i8> = scales
        .iter()
        .map(|&s| {
            if d > 0.0 {
                (s / d).round().clamp(sc_lo, sc_hi) as i8
            } else {
                0
            }
        })
        .collect();
    let mut q = [0u8; 256];
    for (j, (c, qj)) in x.chunks_exact(16).zip(q.chunks_exact_mut(16)).enumerate() {
        let s = d * sc[j] as f32;
        let is = if s != 0.0 { 1.0 / s } else { 0.0 };
        for (o, &v) in qj.iter_mut().zip(c) {
            *o = ((v * is).round().clamp(-half, half - 1.0) + half) as u8;
        }
    }
    (d, sc, q)
}

/// Quantises to Q6_K: per sub-block of 16 a scale searched around the one that maps the
/// largest-magnitude value to code -32, rounded to a signed 8-bit multiple of the super-block's
/// f16 `d`; codes rounded to nearest in -32..=31.
///
/// # Panics
/// If `w.len()` is not a multiple of 256.
pub fn quantize_q6_k(w: &[f32]) -> Vec<u8> {
    check_super_blocks(w, "quantize_q6_k");
    let mut out = Vec::with_capacity(w.len() / 256 * 210);
    for x in w.chunks_exact(256) {
        let (d, sc, q) = symmetric_sub_blocks(x, 32.0, -127.0, 127.0);
        let mut ql = [0u8; 128];
        let mut qh = [0u8; 64];
        for (i, &c) in q.iter().enumerate() {
            let (h, r) = (i / 128, i % 128);
            ql[h * 64 + r % 64] |= (c & 0x0F) << (4 * (r / 64));
            qh[h * 32 + r % 32] |= (c >> 4) << (2 * (r / 32));
        }
        out.extend_from_slice(&ql);
        out.extend_from_slice(&qh);
        out.extend(sc.iter().map(|&v| v as u8));
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
    }
    out
}

/// Quantises to Q3_K: per sub-block of 16 a scale searched as for Q6_K (codes -4..=3), rounded
/// to a signed 6-bit multiple of the super-block's f16 `d`; codes rounded to nearest.
///
/// # Panics
/// If `w.len()` is not a multiple of 256.
pub fn quantize_q3_k(w: &[f32]) -> Vec<u8> {
    check_super_blocks(w, "quantize_q3_k");
    let mut out = Vec::with_capacity(w.len() / 256 * 110);
    for x in w.chunks_exact(256) {
        let (d, sc, q) = symmetric_sub_blocks(x, 4.0, -32.0, 31.0);
        let mut hmask = [0u8; 32];
        let mut qs = [0u8; 64];
        for (i, &q) in q.iter().enumerate() {
            let (h, sh, ll) = (i / 128, (i / 32) % 4, i % 32);
            qs[h * 32 + ll] |= (q & 3) << (2 * sh);
            hmask[ll] |= ((q >> 2) & 1) << (i / 32);
        }
        let mut packed = [0u8; 12];
        for (j, &v) in sc.iter().enumerate() {
            let u = (v as i16 + 32) as u8; // 0..64
            if j < 8 {
                packed[j] |= u & 0x0F;
            } else {
                packed[j - 8] |= (u & 0x0F) << 4;
            }
            packed[8 + j % 4] |= (u >> 4) << (2 * (j / 4));
        }
        out.extend_from_slice(&hmask);
        out.extend_from_slice(&qs);
        out.extend_from_slice(&packed);
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
    }
    out
}

/// Quantises to Q2_K: per sub-block of 16 a scale and min fitted as for Q4_K (codes 0..=3),
/// rounded to 4-bit multiples of the super-block's f16 `d` and `dmin`; codes rounded to nearest.
///
/// # Panics
/// If `w.len()` is not a multiple of 256.
pub fn quantize_q2_k(w: &[f32]) -> Vec<u8> {
    check_super_blocks(w, "quantize_q2_k");
    let mut out = Vec::with_capacity(w.len() / 256 * 84);
    for x in w.chunks_exact(256) {
        let fits: Vec<(f32, f32)> = x.chunks_exact(16).map(|c| fit_scale_min(c, 3)).collect();
        let max_a = fits.iter().fold(0f32, |a, f| a.max(f.0));
        let max_m = fits.iter().fold(0f32, |a, f| a.max(f.1));
        let d = f16_round(max_a / 15.0);
        let dmin = f16_round(max_m / 15.0);
        let to4 = |v: f32, unit: f32| {
            if unit > 0.0 {
                (v / unit).round().clamp(0.0, 15.0) as u8
            } else {
                0
            }
        };
        let mut scales = [0u8; 16];
        let mut qs = [0u8; 64];
        for (j, (c, f)) in x.chunks_exact(16).zip(&fits).enumerate() {
            let (sc, mn) = (to4(f.0, d), to4(f.1, dmin));
            scales[j] = sc | (mn << 4);
            let a = d * sc as f32;
            let m = dmin * mn as f32;
            let ia = if a != 0.0 { 1.0 / a } else { 0.0 };
            for (l, &v) in c.iter().enumerate() {
                let i = 16 * j + l;
                let q = ((v + m) * ia).round().clamp(0.0, 3.0) as u8;
                qs[(i / 128) * 32 + i % 32] |= q << (2 * ((i / 32) % 4));
            }
        }
        out.extend_from_slice(&scales);
        out.extend_from_slice(&qs);
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        out.extend_from_slice(&f16::from_f32(dmin).to_bits().to_le_bytes());
    }
    out
}

/// Quantises `w` (a whole number of rows whose length suits `ty`'s block size) to `ty` with this
/// module's quantisers; `None` for a type without one (the float types).
///
/// # Panics
/// If `w.len()` is not a multiple of `ty`'s block size.
pub fn quantize_as(ty: GgmlType, w: &[f32]) -> Option<Vec<u8>> {
    Some(match ty {
        GgmlType::Q4_0 => quantize_q4_0(w),
        GgmlType::Q4_1 => quantize_q4_1(w),
        GgmlType::Q5_0 => quantize_q5_0(w),
        GgmlType::Q5_1 => quantize_q5_1(w),
        GgmlType::Q8_0 => quantize_q8_0(w),
        GgmlType::Q2_K => quantize_q2_k(w),
        GgmlType::Q3_K => quantize_q3_k(w),
        GgmlType::Q4_K => quantize_q4_k(w),
        GgmlType::Q5_K => quantize_q5_k(w),
        GgmlType::Q6_K => quantize_q6_k(w),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{h, rand_vec};
    use super::*;

    #[test]
    fn dequantize_q4_0_hand_made() {
        let mut blk = h(0.5).to_vec();
        let mut qs = [0x88u8; 16];
        qs[0] = 0x0F; // elem 0: q=15 -> 3.5 ; elem 16: q=0 -> -4.0
        qs[1] = 0x9A; // elem 1: q=10 -> 1.0 ; elem 17: q=9 -> 0.5
        qs[15] = 0x71; // elem 15: q=1 -> -3.5 ; elem 31: q=7 -> -0.5
        blk.extend_from_slice(&qs);
        let v = dequantize_blocks(GgmlType::Q4_0, &blk, 32).unwrap();
        let mut want = [0.0f32; 32];
        want[0] = 3.5;
        want[16] = -4.0;
        want[1] = 1.0;
        want[17] = 0.5;
        want[15] = -3.5;
        want[31] = -0.5;
        assert_eq!(v, want);
    }

    #[test]
    fn dequantize_q4_1_hand_made() {
        let mut blk = h(0.25).to_vec();
        blk.extend_from_slice(&h(-1.0));
        let mut qs = [0x44u8; 16]; // q=4 -> 4*0.25-1 = 0
        qs[0] = 0x4A; // elem 0: 10 -> 1.5 ; elem 16: 4 -> 0.0
        qs[2] = 0xF0; // elem 2: 0 -> -1.0 ; elem 18: 15 -> 2.75
        blk.extend_from_slice(&qs);
        let v = dequantize_blocks(GgmlType::Q4_1, &blk, 32).unwrap();
        let mut want = [0.0f32; 32];
        want[0] = 1.5;
        want[2] = -1.0;
        want[18] = 2.75;
        assert_eq!(v, want);
    }

    #[test]
    fn dequantize_q8_0_hand_made() {
        let mut data = Vec::new();
        for (d, first) in [
            (0.125f32, [-128i8, 127, 0, 1, -1]),
            (2.0, [3, -3, 64, -64, 0]),
        ] {
            data.extend_from_slice(&h(d));
            let mut qs = [0i8; 32];
            qs[..5].copy_from_slice(&first);
            qs[31] = 5;
            data.extend(qs.iter().map(|&q| q as u8));
        }
        let v = dequantize_blocks(GgmlType::Q8_0, &data, 64).unwrap();
        assert_eq!(&v[..5], &[-16.0, 15.875, 0.0, 0.125, -0.125]);
        assert_eq!(v[31], 0.625);
        assert_eq!(&v[32..37], &[6.0, -6.0, 128.0, -128.0, 0.0]);
        assert_eq!(v[63], 10.0);
    }

    #[test]
    fn dequantize_f16_bf16_f32_hand_made() {
        let bits: [u16; 6] = [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00, 0x3555];
        let data: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
        let v = dequantize_blocks(GgmlType::F16, &data, 6).unwrap();
        assert_eq!(
            &v[..5],
            &[1.0, -2.0, 65504.0, 5.960_464_5e-8, f32::INFINITY]
        );
        assert!((v[5] - 0.333_251_95).abs() < 1e-7);
        let bits: [u16; 3] = [0x3F80, 0xC040, 0x4049];
        let data: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
        assert_eq!(
            dequantize_blocks(GgmlType::BF16, &data, 3).unwrap(),
            vec![1.0, -3.0, 3.140625]
        );
        let data: Vec<u8> = [0.5f32, -7.25]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(
            dequantize_blocks(GgmlType::F32, &data, 2).unwrap(),
            vec![0.5, -7.25]
        );
    }

    #[test]
    fn dequantize_size_errors() {
        let e = dequantize_blocks(GgmlType::Q4_0, &[0; 18 * 4], 100).unwrap_err();
        assert!(
            e.what
                .contains("100 elements, not a multiple of block size 32"),
            "{e}"
        );
        let e = dequantize_blocks(GgmlType::Q8_0, &[0; 33], 32).unwrap_err();
        assert!(e.what.contains("33 bytes, expected 34"), "{e}");
        let e = dequantize_blocks(GgmlType::Other(15), &[0; 292], 256).unwrap_err();
        assert_eq!(e.what, "unsupported tensor type Q8_K (id 15)");
    }

    #[test]
    fn quantizers_exact_cases() {
        // Q4_0: max-magnitude element -8 -> d = 1, id = 1; q = trunc(x + 8.5) clamped to 15.
        let mut x = [0.0f32; 32];
        x[0] = -8.0;
        x[1] = 3.0;
        x[17] = 7.9; // 16.4 -> 16 -> clamped to 15 -> 7.0
        x[18] = -2.6; // 5.9 -> 5 -> -3.0
        let q = quantize_q4_0(&x);
        assert_eq!(&q[..2], &h(1.0));
        assert_eq!(q[2], 8 << 4); // elem 0 -> 0, elem 16 -> 8
        let v = dequantize_blocks(GgmlType::Q4_0, &q, 32).unwrap();
        assert_eq!(
            (v[0], v[1], v[17], v[18], v[5]),
            (-8.0, 3.0, 7.0, -3.0, 0.0)
        );

        // Q4_1: values 0..=15 -> d = 1, m = 0, exact.
        let x: Vec<f32> = (0..32)
            .map(|i| (if i < 16 { i } else { 31 - i }) as f32)
            .collect();
        let q = quantize_q4_1(&x);
        assert_eq!(&q[..4], &[h(1.0), h(0.0)].concat()[..]);
        assert_eq!(dequantize_blocks(GgmlType::Q4_1, &q, 32).unwrap(), x);

        // Q8_0: amax 127 -> d = 1; rounding half away from zero.
        let mut x = [0.0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -2.5;
        x[3] = -127.0;
        let q = quantize_q8_0(&x);
        assert_eq!(&q[..2], &h(1.0));
        assert_eq!(&q[2..6], &[127u8, 3, (-3i8) as u8, (-127i8) as u8]);

        // All-zero blocks quantise to zeros.
        for (ty, q) in [
            (GgmlType::Q4_0, quantize_q4_0(&[0.0; 64])),
            (GgmlType::Q4_1, quantize_q4_1(&[0.0; 64])),
            (GgmlType::Q8_0, quantize_q8_0(&[0.0; 64])),
        ] {
            assert_eq!(dequantize_blocks(ty, &q, 64).unwrap(), vec![0.0; 64]);
        }
    }

    /// The new quantisers against their own dequantisation (which equals gguf's numpy
    /// dequantizer bit for bit: tests/kquant.rs): relative RMS error per type, round trips of
    /// exactly representable values, zeros.
    #[test]
    fn new_quantizers_round_trip_within_their_precision() {
        // (type, rms error bound relative to the values' rms)
        let cases = [
            (GgmlType::Q5_0, 0.06),
            (GgmlType::Q5_1, 0.05),
            (GgmlType::Q2_K, 0.45),
            (GgmlType::Q3_K, 0.22),
            (GgmlType::Q4_K, 0.09),
            (GgmlType::Q5_K, 0.045),
            (GgmlType::Q6_K, 0.025),
        ];
        for seed in 0..6u64 {
            let scale = [1e-3f32, 0.05, 1.0][seed as usize % 3];
            let mut x = rand_vec(256 * 8, seed + 101, scale);
            if seed % 2 == 1 {
                for v in x.iter_mut().take(700) {
                    *v = v.abs() + scale; // all-positive super-blocks exercise the mins
                }
            }
            let xr = (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
            for (ty, bound) in cases {
                let q = quantize_as(ty, &x).unwrap();
                assert_eq!(
                    q.len(),
                    x.len() / ty.block_size().unwrap() * ty.block_bytes().unwrap()
                );
                let y = dequantize_blocks(ty, &q, x.len()).unwrap();
                let rms = (y.iter().zip(&x).map(|(a, b)| (a - b).powi(2)).sum::<f32>()
                    / x.len() as f32)
                    .sqrt();
                assert!(rms < bound * xr, "{ty} seed {seed}: rms {rms} vs {xr}");
            }
        }
        for ty in [
            GgmlType::Q2_K,
            GgmlType::Q3_K,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
        ] {
            let q = quantize_as(ty, &[0.0; 512]).unwrap();
            assert_eq!(
                dequantize_blocks(ty, &q, 512).unwrap(),
                vec![0.0; 512],
                "{ty}"
            );
        }
        // integers -16..=15 are exact in Q5_0 (d = 1) and 0..=31 in Q5_1
        let x: Vec<f32> = (0..32).map(|i| (i as f32) - 16.0).collect();
        assert_eq!(
            dequantize_blocks(GgmlType::Q5_0, &quantize_q5_0(&x), 32).unwrap(),
            x
        );
        let x: Vec<f32> = (0..32).map(|i| ((i * 7) % 32) as f32).collect();
        assert_eq!(
            dequantize_blocks(GgmlType::Q5_1, &quantize_q5_1(&x), 32).unwrap(),
            x
        );
    }

    #[test]
    fn quantize_dequantize_error_bounds() {
        for seed in 0..20u64 {
            let scale = [1e-3f32, 0.05, 1.0, 30.0][seed as usize % 4];
            let mut x = rand_vec(32 * 16, seed + 7, scale);
            if seed % 5 == 0 {
                for v in x.iter_mut() {
                    *v = v.abs() + scale; // all-positive blocks exercise Q4_1's min
                }
            }
            let q8 = dequantize_blocks(GgmlType::Q8_0, &quantize_q8_0(&x), x.len()).unwrap();
            let q40 = dequantize_blocks(GgmlType::Q4_0, &quantize_q4_0(&x), x.len()).unwrap();
            let q41 = dequantize_blocks(GgmlType::Q4_1, &quantize_q4_1(&x), x.len()).unwrap();
            for b in 0..x.len() / 32 {
                let xs = &x[b * 32..(b + 1) * 32];
                let amax = xs.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                let min = xs.iter().cloned().fold(f32::MAX, f32::min);
                let max = xs.iter().cloned().fold(-f32::MAX, f32::max);
                // Half-step rounding + f16 rounding of d (and m), relative (2^-11) or, for
                // subnormal f16 scales, absolute (2^-25 times up to 127 quanta: below 2^-17).
                let sub = 2f32.powi(-17);
                let tol8 = amax / 254.0 * 1.001 + amax * 2f32.powi(-10) + sub;
                let tol40 = amax / 8.0 * 1.001 + amax * 2f32.powi(-9) + sub;
                let tol41 =
                    (max - min) / 30.0 * 1.001 + (min.abs() + (max - min)) * 2f32.powi(-10) + sub;
                for j in 0..32 {
                    let i = b * 32 + j;
                    assert!(
                        (q8[i] - x[i]).abs() <= tol8,
                        "q8_0 seed {seed} i {i}: {} vs {}",
                        q8[i],
                        x[i]
                    );
                    assert!(
                        (q40[i] - x[i]).abs() <= tol40,
                        "q4_0 seed {seed} i {i}: {} vs {}",
                        q40[i],
                        x[i]
                    );
                    assert!(
                        (q41[i] - x[i]).abs() <= tol41,
                        "q4_1 seed {seed} i {i}: {} vs {}",
                        q41[i],
                        x[i]
                    );
                }
            }
            // Mean error well below the worst case.
            let rms = |y: &[f32]| {
                (y.iter().zip(&x).map(|(a, b)| (a - b).powi(2)).sum::<f32>() / x.len() as f32)
                    .sqrt()
            };
            let xr = (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
            assert!(rms(&q8) < 0.01 * xr, "seed {seed}");
            assert!(rms(&q41) < 0.15 * xr, "seed {seed}");
            assert!(rms(&q40) < 0.2 * xr, "seed {seed}");
        }
    }
}
