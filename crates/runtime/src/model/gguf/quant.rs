//! ggml block formats: dequantisation of F32, F16, BF16, Q4_0, Q4_1 and Q8_0, and llama.cpp's
//! reference quantisers for the three block types.

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
/// of blocks. Supports F32, F16, BF16, Q4_0, Q4_1 and Q8_0.
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
    }
    debug_assert_eq!(out.len(), n);
    Ok(out)
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

/// Quantises to Q4_0 exactly like llama.cpp's `quantize_row_q4_0_ref`.
///
/// # Panics
/// If `w.len()` is not a multiple of 32.
pub fn quantize_q4_0(w: &[f32]) -> Vec<u8> {
    check_blocks(w, "quantize_q4_0");
    let mut out = Vec::with_capacity(w.len() / 32 * 18);
    for x in w.chunks_exact(32) {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
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
        let e = dequantize_blocks(GgmlType::Other(13), &[0; 176], 256).unwrap_err();
        assert_eq!(e.what, "unsupported tensor type Q5_K (id 13)");
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
