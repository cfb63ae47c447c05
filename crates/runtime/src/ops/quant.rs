//! `EbQuantLinear`: `Y = X · Wᵀ` with `W` `[N, K]` stored block-quantized.
//!
//! Packing (one row of `W` after another, blocks of `block_size` weights
//! along K): each block is `block_size * bits / 8` bytes; weight `i` of a block
//! occupies bits `[i * bits, (i + 1) * bits)` of the block's little-endian bit
//! stream (least significant bit first), as an unsigned code `q` in
//! `0 .. 2^bits`. Dequantisation, per block with scale `s` and optional
//! minimum `m`:
//! - with `mins` (asymmetric): `w = q * s + m`;
//! - without (symmetric): `w = (q - 2^(bits-1)) * s`.
//!
//! Lowering (`EDGEBENCH_QUANT_LOWERING`, default `kernel`):
//! - `kernel`: [`QuantMatMul`], our fused dequantize-and-multiply kernels
//!   (`edgebench_kernels::qkernel`: AVX2 gemv for decoding, sgemm on dequantized panels for
//!   prefill); weights stay at their width in memory (a code per byte below
//!   8 bits except 4). Nodes reading the same initializers share one packed
//!   copy. Blocks of 16 weights (the K-quants' sub-blocks) and multiples of
//!   16 run there too, on rows whose length is a multiple of 32; other
//!   block sizes fall back to `tract`.
//! - `tract`: 4-bit blocks of 32 become tract's Q4_0 block-quant constant
//!   (dequantised inside the matmul packer); an asymmetric block adds the
//!   exact correction `(m + 8 s) · Σ_block x`, since
//!   `q s + m = (q - 8) s + (m + 8 s)`. Other widths are dequantised to f32
//!   once, at load.
//! - `f32`: every width dequantised to f32 at load.
//!
//! [`reference_matmul`] is the plain implementation tests compare against.

use edgebench_kernels::Exec;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::tract_linalg::block_quant::{BlockQuantFact, BlockQuantStorage, Q4_0};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::ops::math::add;
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer};
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::logic::wire_with_rank_broadcast;

/// Op type in the ONNX graph.
pub const OP_NAME: &str = "EbQuantLinear";
/// Supported bit widths.
pub const BITS: [usize; 6] = [2, 3, 4, 5, 6, 8];

/// Shape and format of a quantized matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantFormat {
    pub bits: usize,
    pub block_size: usize,
    /// Input features (K).
    pub k: usize,
    /// Output features (N).
    pub n: usize,
}

impl QuantFormat {
    /// Checks the format; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if !BITS.contains(&self.bits) {
            return Err(format!("bits = {} is not one of {BITS:?}", self.bits));
        }
        if self.block_size == 0 || !self.block_size.is_multiple_of(8) {
            return Err(format!(
                "block_size = {} must be a positive multiple of 8",
                self.block_size
            ));
        }
        if self.k == 0 || !self.k.is_multiple_of(self.block_size) {
            return Err(format!(
                "in_features = {} must be a multiple of block_size {}",
                self.k, self.block_size
            ));
        }
        if self.n == 0 {
            return Err("out_features must be positive".into());
        }
        Ok(())
    }
    /// Blocks per row.
    pub fn blocks(&self) -> usize {
        self.k / self.block_size
    }
    /// Bytes per block of packed codes.
    pub fn block_bytes(&self) -> usize {
        self.block_size * self.bits / 8
    }
    /// Total packed bytes.
    pub fn packed_len(&self) -> usize {
        self.n * self.blocks() * self.block_bytes()
    }
}

/// A quantized matrix: packed codes, per-block scales and optional minimums.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantMatrix {
    pub format: QuantFormat,
    pub packed: Vec<u8>,
    pub scales: Vec<f32>,
    pub mins: Option<Vec<f32>>,
}

/// Writes `codes` (each `< 2^bits`) LSB-first into `out`.
pub fn pack_codes(codes: &[u8], bits: usize, out: &mut [u8]) {
    out.iter_mut().for_each(|b| *b = 0);
    for (i, &q) in codes.iter().enumerate() {
        for b in 0..bits {
            if (q >> b) & 1 == 1 {
                let bit = i * bits + b;
                out[bit / 8] |= 1 << (bit % 8);
            }
        }
    }
}

/// Reads `n` codes of `bits` bits LSB-first.
pub fn unpack_codes(data: &[u8], bits: usize, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| {
            let mut q = 0u8;
            for b in 0..bits {
                let bit = i * bits + b;
                q |= ((data[bit / 8] >> (bit % 8)) & 1) << b;
            }
            q
        })
        .collect()
}

impl QuantMatrix {
    /// Quantizes a row-major `[n, k]` matrix (round to nearest; asymmetric
    /// blocks use min/max, symmetric ones the largest magnitude).
    pub fn quantize(w: &[f32], format: QuantFormat, asymmetric: bool) -> Result<Self, String> {
        format.validate()?;
        if w.len() != format.n * format.k {
            return Err(format!(
                "{} weights for a {} x {} matrix",
                w.len(),
                format.n,
                format.k
            ));
        }
        let levels = (1u32 << format.bits) - 1;
        let mut packed = vec![0u8; format.packed_len()];
        let mut scales = Vec::with_capacity(format.n * format.blocks());
        let mut mins = Vec::new();
        let mut codes = vec![0u8; format.block_size];
        for (bi, block) in w.chunks(format.block_size).enumerate() {
            if asymmetric {
                let lo = block.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let s = if hi > lo {
                    f16::from_f32((hi - lo) / levels as f32).to_f32()
                } else {
                    0.0
                };
                for (c, &x) in codes.iter_mut().zip(block) {
                    *c = if s > 0.0 {
                        ((x - lo) / s).round().clamp(0.0, levels as f32) as u8
                    } else {
                        0
                    };
                }
                scales.push(s);
                mins.push(lo);
            } else {
                let half = (1i32 << (format.bits - 1)) as f32;
                let amax = block.iter().fold(0f32, |a, x| a.max(x.abs()));
                let s = if amax > 0.0 {
                    f16::from_f32(amax / (half - 1.0).max(1.0)).to_f32()
                } else {
                    0.0
                };
                for (c, &x) in codes.iter_mut().zip(block) {
                    let q = if s > 0.0 {
                        (x / s).round() + half
                    } else {
                        half
                    };
                    *c = q.clamp(0.0, levels as f32) as u8;
                }
                scales.push(s);
            }
            let bb = format.block_bytes();
            pack_codes(&codes, format.bits, &mut packed[bi * bb..(bi + 1) * bb]);
            // scales are kept at f16 precision, as GGUF stores them and tract's Q4_0 packs them
            let last = scales.len() - 1;
            scales[last] = f16::from_f32(scales[last]).to_f32();
        }
        Ok(QuantMatrix {
            format,
            packed,
            scales,
            mins: asymmetric.then_some(mins),
        })
    }

    /// Dequantizes to a row-major `[n, k]` f32 matrix.
    pub fn dequantize(&self) -> Vec<f32> {
        let f = self.format;
        let half = (1i32 << (f.bits - 1)) as f32;
        let bb = f.block_bytes();
        let mut out = Vec::with_capacity(f.n * f.k);
        for b in 0..f.n * f.blocks() {
            let codes = unpack_codes(&self.packed[b * bb..(b + 1) * bb], f.bits, f.block_size);
            let s = self.scales[b];
            match &self.mins {
                Some(m) => out.extend(codes.iter().map(|&q| q as f32 * s + m[b])),
                None => out.extend(codes.iter().map(|&q| (q as f32 - half) * s)),
            }
        }
        out
    }

    /// Reorders rows: row `r` of the result is row `from(r)` of `self`.
    pub fn permute_rows(&self, from: impl Fn(usize) -> usize) -> QuantMatrix {
        let f = self.format;
        let (rb, nb) = (f.blocks() * f.block_bytes(), f.blocks());
        let mut out = self.clone();
        for r in 0..f.n {
            let s = from(r);
            out.packed[r * rb..(r + 1) * rb].copy_from_slice(&self.packed[s * rb..(s + 1) * rb]);
            out.scales[r * nb..(r + 1) * nb].copy_from_slice(&self.scales[s * nb..(s + 1) * nb]);
            if let (Some(o), Some(m)) = (out.mins.as_mut(), self.mins.as_ref()) {
                o[r * nb..(r + 1) * nb].copy_from_slice(&m[s * nb..(s + 1) * nb]);
            }
        }
        out
    }

    /// Bytes this matrix takes: codes plus f32 scales (and minimums).
    pub fn bytes(&self) -> usize {
        self.packed.len() + 4 * self.scales.len() + self.mins.as_ref().map_or(0, |m| 4 * m.len())
    }
}

/// Plain reference: `x` `[rows, k]` times the dequantized `W` transposed -> `[rows, n]`.
pub fn reference_matmul(x: &[f32], rows: usize, w: &QuantMatrix) -> Vec<f32> {
    let (k, n) = (w.format.k, w.format.n);
    let deq = w.dequantize();
    let mut y = vec![0f32; rows * n];
    for r in 0..rows {
        for o in 0..n {
            let mut acc = 0f64;
            for i in 0..k {
                acc += x[r * k + i] as f64 * deq[o * k + i] as f64;
            }
            y[r * n + o] = acc as f32;
        }
    }
    y
}

/// Adds an `EbQuantLinear` node to an ONNX graph; returns its output.
pub fn write_node(
    g: &mut crate::onnx::GraphBuilder,
    name: &str,
    x: &str,
    w: &QuantMatrix,
) -> String {
    let inits = write_initializers(g, name, w);
    write_node_with(g, name, x, w.format, &inits)
}

/// Writes a quantized matrix's initializers (`<name>.qweight`, `.scales` and,
/// when asymmetric, `.mins`); several nodes may then share them.
pub fn write_initializers(
    g: &mut crate::onnx::GraphBuilder,
    name: &str,
    w: &QuantMatrix,
) -> Vec<String> {
    let f = w.format;
    let packed = g.init_u8(
        &format!("{name}.qweight"),
        &[f.n as i64, (f.blocks() * f.block_bytes()) as i64],
        &w.packed,
    );
    let scales = g.init_f32(
        &format!("{name}.scales"),
        &[f.n as i64, f.blocks() as i64],
        &w.scales,
    );
    let mut inits = vec![packed, scales];
    if let Some(m) = &w.mins {
        inits.push(g.init_f32(&format!("{name}.mins"), &[f.n as i64, f.blocks() as i64], m));
    }
    inits
}

/// Adds an `EbQuantLinear` node over initializers written by [`write_initializers`].
pub fn write_node_with(
    g: &mut crate::onnx::GraphBuilder,
    name: &str,
    x: &str,
    f: QuantFormat,
    inits: &[String],
) -> String {
    use crate::onnx::{Attr, CUSTOM_DOMAIN};
    let out = format!("{name}.out");
    let mut refs: Vec<&str> = vec![x];
    refs.extend(inits.iter().map(String::as_str));
    g.node_in_domain(
        CUSTOM_DOMAIN,
        OP_NAME,
        &refs,
        &[&out],
        &[
            ("bits", Attr::Int(f.bits as i64)),
            ("block_size", Attr::Int(f.block_size as i64)),
            ("in_features", Attr::Int(f.k as i64)),
            ("out_features", Attr::Int(f.n as i64)),
        ],
    );
    out
}

/// Parses an `EbQuantLinear` node (registered in the tract-onnx op registry).
pub fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let format = QuantFormat {
        bits: node.get_attr::<i64>("bits")? as usize,
        block_size: node.get_attr::<i64>("block_size")? as usize,
        k: node.get_attr::<i64>("in_features")? as usize,
        n: node.get_attr::<i64>("out_features")? as usize,
    };
    format
        .validate()
        .map_err(|e| anyhow!("{OP_NAME} node `{}`: {e}", node.name))?;
    let has_mins = super::has_input(node, 3);
    let lowering = match node.get_attr_opt::<&str>("lowering")? {
        None => Lowering::Kernel,
        Some(l) => Lowering::parse(l).ok_or_else(|| {
            anyhow!(
                "{OP_NAME} node `{}`: attribute lowering {l:?} is not kernel, tract or f32",
                node.name
            )
        })?,
    };
    let exec = super::exec_of(node)?;
    Ok((
        expand(QuantLinear {
            format,
            has_mins,
            lowering,
            exec,
        }),
        vec![],
    ))
}

/// The op as an expansion, lowered when the model is typed.
#[derive(Debug, Clone)]
struct QuantLinear {
    format: QuantFormat,
    has_mins: bool,
    lowering: Lowering,
    exec: Exec,
}

fn konst_f32(model: &TypedModel, o: OutletId, what: &str) -> TractResult<Vec<f32>> {
    let k = model
        .outlet_fact(o)?
        .konst
        .clone()
        .with_context(|| format!("{OP_NAME}: {what} must be a constant initializer"))?;
    let k = k.cast_to::<f32>()?;
    Ok(k.try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
}

impl Expansion for QuantLinear {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 3 + self.has_mins as usize)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
        let n = self.format.n.to_dim();
        s.given(&inputs[0].rank, move |s, rank| {
            let rank = rank as usize;
            s.equals(&outputs[0].rank, rank as i64)?;
            for ax in 0..rank - 1 {
                s.equals(&outputs[0].shape[ax], &inputs[0].shape[ax])?;
            }
            s.equals(&outputs[0].shape[rank - 1], n.clone())
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let f = self.format;
        let packed_k = model
            .outlet_fact(inputs[1])?
            .konst
            .clone()
            .context("EbQuantLinear: packed weights must be a constant initializer")?;
        let packed = packed_k.try_as_plain_ram()?.as_slice::<u8>()?.to_vec();
        ensure!(
            packed.len() == f.packed_len(),
            "{OP_NAME}: {} packed bytes, expected {}",
            packed.len(),
            f.packed_len()
        );
        let scales = konst_f32(model, inputs[2], "scales")?;
        ensure!(
            scales.len() == f.n * f.blocks(),
            "{OP_NAME}: {} scales, expected {}",
            scales.len(),
            f.n * f.blocks()
        );
        let mins = if self.has_mins {
            Some(konst_f32(model, inputs[3], "mins")?)
        } else {
            None
        };
        let m = QuantMatrix {
            format: f,
            packed,
            scales,
            mins,
        };
        let rank = model.outlet_fact(inputs[0])?.rank();
        let lead: String = "abcdefgh".chars().take(rank - 1).collect();
        let x = inputs[0];
        let lowering = self.lowering;
        let kernel_ok =
            super::qkernel::supports_block(f.block_size) && f.k.is_multiple_of(super::qkernel::QB);
        if lowering == Lowering::Kernel && kernel_ok {
            let key: Vec<Option<Arc<Tensor>>> = inputs[1..]
                .iter()
                .map(|&o| model.outlet_fact(o).map(|f| f.konst.clone()))
                .collect::<TractResult<_>>()?;
            let w = shared_packed(&key, || {
                super::qkernel::PackedMatrix::from_blocks(
                    f.bits,
                    f.block_size,
                    f.n,
                    f.k,
                    &m.packed,
                    &m.scales,
                    m.mins.as_deref(),
                )
                .map_err(|e| anyhow!("{OP_NAME}: {e}"))
            })?;
            let op = QuantMatMul { w, exec: self.exec };
            return model.wire_node(prefix, op, &[x]);
        }
        if f.bits == 4 && f.block_size == 32 && lowering == Lowering::Tract {
            // Q4_0 computes (q - 8) * s with s rounded to f16.
            let bq = Q4_0.pack_prequantized_nibbles(&m.packed, &m.scales, f.n, f.k)?;
            let storage = BlockQuantStorage::new(Box::new(Q4_0), f.n, f.k, Arc::new(bq))?;
            let fact = Box::new(BlockQuantFact::new(Box::new(Q4_0), tvec!(1, f.n, f.k)));
            let w = model.wire_node(
                format!("{prefix}.q4_0"),
                Const::new_with_exotic_fact(
                    Arc::new(storage.into_tensor_with_shape(f32::datum_type(), &[1, f.n, f.k])),
                    fact,
                )?,
                &[],
            )?[0];
            let axes = AxesMapping::from_strs(
                &[format!("{lead}k"), "gnk".to_string()],
                &[format!("{lead}n")],
            )?;
            let y = model.wire_node(
                format!("{prefix}.matmul"),
                EinSum::new(axes, f32::datum_type()),
                &[x, w],
            )?[0];
            // Offsets: asymmetric blocks add (m + 8 s~); symmetric blocks (q - 8) s match Q4_0 up to the f16 scale.
            let offsets: Vec<f32> = match &m.mins {
                Some(mins) => mins
                    .iter()
                    .zip(&m.scales)
                    .map(|(mn, s)| mn + 8.0 * f16::from_f32(*s).to_f32())
                    .collect(),
                None => vec![],
            };
            if offsets.is_empty() {
                return Ok(tvec!(y));
            }
            let nb = f.blocks();
            let offsets = model.add_const(
                format!("{prefix}.offsets"),
                Tensor::from_shape(&[f.n, nb], &offsets)?,
            )?;
            let blocked = model.wire_node(
                format!("{prefix}.x_blocked"),
                AxisOp::Reshape(
                    rank - 1,
                    tvec![f.k.to_dim()],
                    tvec![nb.to_dim(), f.block_size.to_dim()],
                ),
                &[x],
            )?[0];
            let sums = model.wire_node(
                format!("{prefix}.x_block_sums"),
                Reduce::new(tvec![rank], Reducer::Sum),
                &[blocked],
            )?[0];
            let sums = model.wire_node(format!("{prefix}.x_sums"), AxisOp::Rm(rank), &[sums])?[0];
            let axes = AxesMapping::from_strs(
                &[format!("{lead}z"), "nz".to_string()],
                &[format!("{lead}n")],
            )?;
            let corr = model.wire_node(
                format!("{prefix}.correction"),
                EinSum::new(axes, f32::datum_type()),
                &[sums, offsets],
            )?[0];
            return wire_with_rank_broadcast(format!("{prefix}.sum"), model, add(), &[y, corr]);
        }
        // Other widths: dequantize once, at load.
        // laid out [K, N] like an ONNX MatMul's weight
        let w = crate::model::llama::transpose(&m.dequantize(), f.n, f.k);
        let w = model.add_const(
            format!("{prefix}.weight"),
            Tensor::from_shape(&[f.k, f.n], &w)?,
        )?;
        let axes = AxesMapping::from_strs(
            &[format!("{lead}k"), "kn".to_string()],
            &[format!("{lead}n")],
        )?;
        model.wire_node(
            format!("{prefix}.matmul"),
            EinSum::new(axes, f32::datum_type()),
            &[x, w],
        )
    }
}

/// How `EbQuantLinear` is lowered (the node's `lowering` attribute, which
/// `RuntimeOptions` sets at load).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lowering {
    /// EdgeBench's fused kernels ([`QuantMatMul`]), the default.
    Kernel,
    /// tract's Q4_0 block-quant matmul for 4-bit blocks of 32, f32 otherwise.
    Tract,
    /// Every width dequantised to f32 at load.
    F32,
}

impl Lowering {
    /// Every lowering.
    pub const ALL: [Lowering; 3] = [Lowering::Kernel, Lowering::Tract, Lowering::F32];

    /// Parses `kernel`, `tract` or `f32`.
    pub fn parse(s: &str) -> Option<Self> {
        Lowering::ALL.into_iter().find(|l| l.name() == s)
    }

    /// Its name, as `--lowering` and `EDGEBENCH_QUANT_LOWERING` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Lowering::Kernel => "kernel",
            Lowering::Tract => "tract",
            Lowering::F32 => "f32",
        }
    }
}

type PackedEntry = (
    Vec<Option<std::sync::Weak<Tensor>>>,
    std::sync::Weak<super::qkernel::PackedMatrix>,
);

/// Packed matrices by the initializers they were made from: graphs whose
/// nodes share initializers (GEM's pathways at one precision) share one
/// packed copy. Entries hold weak references only.
static PACKED: std::sync::Mutex<Vec<PackedEntry>> = std::sync::Mutex::new(Vec::new());

/// Bytes of the packed matrices alive now (graphs loaded with the `kernel`
/// lowering): what their decode steps read, each matrix once per token.
pub fn live_packed_bytes() -> u64 {
    PACKED.lock().map_or(0, |cache| {
        cache
            .iter()
            .filter_map(|(_, w)| w.upgrade())
            .map(|m| m.bytes() as u64)
            .sum()
    })
}

/// The packed matrix made from the initializers `key` (`make`'s result,
/// made once while any holder keeps it alive).
pub(crate) fn shared_packed(
    key: &[Option<Arc<Tensor>>],
    make: impl FnOnce() -> TractResult<super::qkernel::PackedMatrix>,
) -> TractResult<Arc<super::qkernel::PackedMatrix>> {
    let same = |stored: &[Option<std::sync::Weak<Tensor>>]| {
        stored.len() == key.len()
            && stored.iter().zip(key).all(|(a, b)| match (a, b) {
                // the weak reference is alive, so the address is still this tensor's
                (Some(a), Some(b)) => a.upgrade().is_some_and(|a| Arc::ptr_eq(&a, b)),
                _ => false,
            })
    };
    let mut cache = PACKED
        .lock()
        .map_err(|_| anyhow!("packed-weight cache poisoned"))?;
    cache.retain(|(_, w)| w.strong_count() > 0);
    if let Some(w) = cache
        .iter()
        .find(|(k, _)| same(k))
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(w);
    }
    let w = Arc::new(make()?);
    cache.push((
        key.iter().map(|k| k.as_ref().map(Arc::downgrade)).collect(),
        Arc::downgrade(&w),
    ));
    Ok(w)
}

/// `EbQuantLinear` lowered onto EdgeBench's fused kernels: `x [.., k]` ->
/// `x · Wᵀ [.., n]`.
#[derive(Debug, Clone)]
pub struct QuantMatMul {
    w: Arc<super::qkernel::PackedMatrix>,
    exec: Exec,
}

impl PartialEq for QuantMatMul {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.w, &other.w) && self.exec == other.exec
    }
}

impl Eq for QuantMatMul {}

impl Op for QuantMatMul {
    fn name(&self) -> StaticName {
        "EbQuantLinear(kernel)".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} x {} at {} bits, {} bytes",
            self.w.n(),
            self.w.k(),
            self.w.bits(),
            self.w.bytes()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for QuantMatMul {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let dims = (self.w.k(), self.w.n());
        super::eval_linear(OP_NAME, &inputs[0], dims, |x, _, y| {
            self.w.matmul(x, y, self.exec)
        })
    }
}

impl TypedOp for QuantMatMul {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        super::linear_facts(OP_NAME, inputs[0], self.w.n())
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_for_every_width() {
        for bits in BITS {
            let codes: Vec<u8> = (0..64).map(|i| (i * 7 % (1 << bits)) as u8).collect();
            let mut buf = vec![0u8; 64 * bits / 8];
            pack_codes(&codes, bits, &mut buf);
            assert_eq!(unpack_codes(&buf, bits, 64), codes, "bits {bits}");
        }
    }

    #[test]
    fn four_bit_layout_is_low_nibble_first() {
        let mut buf = [0u8; 1];
        pack_codes(&[0x3, 0xA], 4, &mut buf);
        assert_eq!(buf[0], 0xA3);
    }

    #[test]
    fn quantization_error_shrinks_with_bits() {
        let w: Vec<f32> = (0..4 * 64)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let mut last = f32::INFINITY;
        for bits in BITS {
            let f = QuantFormat {
                bits,
                block_size: 32,
                k: 64,
                n: 4,
            };
            let q = QuantMatrix::quantize(&w, f, true).unwrap();
            let err = q
                .dequantize()
                .iter()
                .zip(&w)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, crate::ops::test_util::worse);
            assert!(err <= last + 1e-6, "bits {bits}: {err} > {last}");
            last = err;
        }
        assert!(last < 0.01);
    }

    #[test]
    fn bad_formats_name_the_field() {
        let f = QuantFormat {
            bits: 7,
            block_size: 32,
            k: 64,
            n: 4,
        };
        assert!(f.validate().unwrap_err().contains("bits"));
        let f = QuantFormat {
            bits: 4,
            block_size: 32,
            k: 40,
            n: 4,
        };
        assert!(f.validate().unwrap_err().contains("in_features"));
    }
}
