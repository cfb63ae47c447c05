//! A self-contained reader (and a small writer) for GGUF files, the model format written by
//! llama.cpp.
//!
//! Supported: GGUF versions 2 and 3, little-endian. Every metadata value type, nested arrays
//! included, is parsed. Tensor infos are parsed for every ggml type whose block layout is known
//! (see [`GgmlType::block_size`]); dequantisation is implemented for F32, F16, BF16, Q4_0, Q4_1,
//! Q5_0, Q5_1, Q8_0 and the K-quants Q2_K, Q3_K, Q4_K, Q5_K and Q6_K (bit for bit as the `gguf`
//! Python package computes it), and any other type gives an error naming the type and the tensor.
//!
//! Layout reminders for importers: a tensor's `dims` are ggml's `ne`, fastest-varying first, so a
//! 2-D weight with `dims == [ne0, ne1]` is a row-major matrix of shape `[ne1, ne0]` (ne1 rows of
//! ne0 values). For a linear layer `ne0` is the input size and `ne1` the output size, i.e. the
//! matrix is PyTorch's `weight` ([out, in]) as is, and `y = x · Wᵀ`.
//!
//! Only `std` and `half` are used. Parsing works on a byte slice (read or memory-mapped file) and
//! never panics on malformed input: every read is bounds-checked and reported with the byte offset
//! and what was being read.
//!
//! The types live here; [`Gguf::parse`] and the accessors in `read`, the block formats
//! (dequantisation, their `EbQuantLinear` form, quantisers) in `quant`, [`GgufWriter`] in
//! `write`, re-quantisation of whole files in [`requant`].

use std::fmt;

mod quant;
mod read;
pub mod requant;
mod write;

pub use quant::{
    dequantize_blocks, linear_blocks, linear_format, quantize_as, quantize_q2_k, quantize_q3_k,
    quantize_q4_0, quantize_q4_1, quantize_q4_k, quantize_q5_0, quantize_q5_1, quantize_q5_k,
    quantize_q6_k, quantize_q8_0, LinearBlocks,
};
pub use read::MAX_METADATA_ELEMENTS;
pub use write::GgufWriter;

/// Magic bytes at the start of every GGUF file.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Data-section alignment used when `general.alignment` is absent.
pub const GGUF_DEFAULT_ALIGNMENT: u64 = 32;
/// Most dimensions a ggml tensor can have (`GGML_MAX_DIMS`).
pub const GGML_MAX_DIMS: usize = 4;

/// An error while reading, validating or dequantising a GGUF file; `what` says what is wrong and,
/// for parse errors, at which byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufError {
    /// Human-readable description of the problem.
    pub what: String,
}

impl GgufError {
    /// Creates an error from a message.
    pub fn new(what: impl Into<String>) -> Self {
        GgufError { what: what.into() }
    }
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for GgufError {}

fn err<T>(what: impl Into<String>) -> Result<T, GgufError> {
    Err(GgufError::new(what))
}

// ---------------------------------------------------------------------------------------------
// Metadata values
// ---------------------------------------------------------------------------------------------

/// A metadata value. Arrays are homogeneous in the file (one element type per array) but may nest.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// Type 0.
    U8(u8),
    /// Type 1.
    I8(i8),
    /// Type 2.
    U16(u16),
    /// Type 3.
    I16(i16),
    /// Type 4.
    U32(u32),
    /// Type 5.
    I32(i32),
    /// Type 6.
    F32(f32),
    /// Type 7 (one byte, 0 or 1).
    Bool(bool),
    /// Type 8 (u64 length + UTF-8 bytes).
    Str(String),
    /// Type 9 (u32 element type + u64 count + elements).
    Array(Vec<GgufValue>),
    /// Type 10.
    U64(u64),
    /// Type 11.
    I64(i64),
    /// Type 12.
    F64(f64),
}

impl GgufValue {
    /// The GGUF value-type id of this value (0..=12).
    pub fn type_id(&self) -> u32 {
        match self {
            GgufValue::U8(_) => 0,
            GgufValue::I8(_) => 1,
            GgufValue::U16(_) => 2,
            GgufValue::I16(_) => 3,
            GgufValue::U32(_) => 4,
            GgufValue::I32(_) => 5,
            GgufValue::F32(_) => 6,
            GgufValue::Bool(_) => 7,
            GgufValue::Str(_) => 8,
            GgufValue::Array(_) => 9,
            GgufValue::U64(_) => 10,
            GgufValue::I64(_) => 11,
            GgufValue::F64(_) => 12,
        }
    }

    /// A short name of the value's type ("u32", "string", "array", ...), for messages.
    pub fn type_name(&self) -> &'static str {
        value_type_name(self.type_id())
    }

    /// The value as a `u64`, for any integer type holding a non-negative value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v as u64),
            GgufValue::U16(v) => Some(v as u64),
            GgufValue::U32(v) => Some(v as u64),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as an `f64`, for any integer or floating-point type (not bool).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::U8(v) => Some(v as f64),
            GgufValue::I8(v) => Some(v as f64),
            GgufValue::U16(v) => Some(v as f64),
            GgufValue::I16(v) => Some(v as f64),
            GgufValue::U32(v) => Some(v as f64),
            GgufValue::I32(v) => Some(v as f64),
            GgufValue::U64(v) => Some(v as f64),
            GgufValue::I64(v) => Some(v as f64),
            GgufValue::F32(v) => Some(v as f64),
            GgufValue::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a string slice, for `Str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a bool, for `Bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The elements, for `Array`.
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

fn value_type_name(id: u32) -> &'static str {
    match id {
        0 => "u8",
        1 => "i8",
        2 => "u16",
        3 => "i16",
        4 => "u32",
        5 => "i32",
        6 => "f32",
        7 => "bool",
        8 => "string",
        9 => "array",
        10 => "u64",
        11 => "i64",
        12 => "f64",
        _ => "unknown",
    }
}

// ---------------------------------------------------------------------------------------------
// ggml tensor types
// ---------------------------------------------------------------------------------------------

/// A ggml tensor element type. Build it from a file id with [`GgmlType::from_id`], which maps the
/// named ids to their variants and everything else to `Other(id)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)] // llama.cpp's names: Q4_K, Q6_K, ...
pub enum GgmlType {
    /// id 0: 32-bit float.
    F32,
    /// id 1: IEEE half float.
    F16,
    /// id 2: blocks of 32: f16 d + 16 bytes of nibbles; w = (q - 8)·d.
    Q4_0,
    /// id 3: blocks of 32: f16 d, f16 m + 16 bytes of nibbles; w = q·d + m.
    Q4_1,
    /// id 6: blocks of 32: f16 d, u32 of 5th bits + 16 bytes of nibbles; w = (q - 16)·d.
    Q5_0,
    /// id 7: blocks of 32: f16 d, f16 m, u32 of 5th bits + 16 bytes of nibbles; w = q·d + m.
    Q5_1,
    /// id 8: blocks of 32: f16 d + 32 i8; w = q·d.
    Q8_0,
    /// id 10: super-blocks of 256 in 16 sub-blocks of 16: 4-bit scale and min per sub-block,
    /// 2-bit codes, f16 d and dmin; w = d·sc·q - dmin·m.
    Q2_K,
    /// id 11: super-blocks of 256 in 16 sub-blocks of 16: 6-bit scales, 3-bit codes (2 low bits
    /// plus a high-bit mask), f16 d; w = d·(sc - 32)·(q - 4).
    Q3_K,
    /// id 12: super-blocks of 256 in 8 sub-blocks of 32: 6-bit scale and min per sub-block,
    /// 4-bit codes, f16 d and dmin; w = d·sc·q - dmin·m.
    Q4_K,
    /// id 13: as Q4_K with a 5th bit per code from a high-bit mask.
    Q5_K,
    /// id 14: super-blocks of 256 in 16 sub-blocks of 16: i8 scale per sub-block, 6-bit codes
    /// (4 low bits, 2 high bits), f16 d; w = d·sc·(q - 32).
    Q6_K,
    /// id 30: bfloat16.
    BF16,
    /// Any other id (layout possibly known for sizes, but not dequantised here).
    Other(u32),
}

/// (name, block size, block bytes) of the ggml types without their own variant.
fn other_type_layout(id: u32) -> (Option<&'static str>, Option<(usize, usize)>) {
    let (name, layout) = match id {
        9 => ("Q8_1", Some((32, 36))),
        15 => ("Q8_K", Some((256, 292))),
        16 => ("IQ2_XXS", Some((256, 66))),
        17 => ("IQ2_XS", Some((256, 74))),
        18 => ("IQ3_XXS", Some((256, 98))),
        19 => ("IQ1_S", Some((256, 50))),
        20 => ("IQ4_NL", Some((32, 18))),
        21 => ("IQ3_S", Some((256, 110))),
        22 => ("IQ2_S", Some((256, 82))),
        23 => ("IQ4_XS", Some((256, 136))),
        24 => ("I8", Some((1, 1))),
        25 => ("I16", Some((1, 2))),
        26 => ("I32", Some((1, 4))),
        27 => ("I64", Some((1, 8))),
        28 => ("F64", Some((1, 8))),
        29 => ("IQ1_M", Some((256, 56))),
        34 => ("TQ1_0", Some((256, 54))),
        35 => ("TQ2_0", Some((256, 66))),
        39 => ("MXFP4", Some((32, 17))),
        // Newer ids whose block layout this reader does not know.
        4 => ("Q4_2", None),
        5 => ("Q4_3", None),
        31 => ("Q4_0_4_4", None),
        32 => ("Q4_0_4_8", None),
        33 => ("Q4_0_8_8", None),
        36 => ("IQ4_NL_4_4", None),
        37 => ("IQ4_NL_4_8", None),
        38 => ("IQ4_NL_8_8", None),
        40 => ("NVFP4", None),
        41 => ("Q1_0", None),
        _ => return (None, None),
    };
    (Some(name), layout)
}

impl GgmlType {
    /// The type for a ggml type id as stored in a tensor info.
    pub fn from_id(id: u32) -> GgmlType {
        match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            10 => GgmlType::Q2_K,
            11 => GgmlType::Q3_K,
            12 => GgmlType::Q4_K,
            13 => GgmlType::Q5_K,
            14 => GgmlType::Q6_K,
            30 => GgmlType::BF16,
            other => GgmlType::Other(other),
        }
    }

    /// The ggml type id.
    pub fn id(&self) -> u32 {
        match *self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q2_K => 10,
            GgmlType::Q3_K => 11,
            GgmlType::Q4_K => 12,
            GgmlType::Q5_K => 13,
            GgmlType::Q6_K => 14,
            GgmlType::BF16 => 30,
            GgmlType::Other(id) => id,
        }
    }

    fn layout(&self) -> Option<(usize, usize)> {
        match *self {
            GgmlType::F32 => Some((1, 4)),
            GgmlType::F16 | GgmlType::BF16 => Some((1, 2)),
            GgmlType::Q4_0 => Some((32, 18)),
            GgmlType::Q4_1 => Some((32, 20)),
            GgmlType::Q5_0 => Some((32, 22)),
            GgmlType::Q5_1 => Some((32, 24)),
            GgmlType::Q8_0 => Some((32, 34)),
            GgmlType::Q2_K => Some((256, 84)),
            GgmlType::Q3_K => Some((256, 110)),
            GgmlType::Q4_K => Some((256, 144)),
            GgmlType::Q5_K => Some((256, 176)),
            GgmlType::Q6_K => Some((256, 210)),
            GgmlType::Other(id) => match GgmlType::from_id(id) {
                GgmlType::Other(_) => other_type_layout(id).1,
                named => named.layout(),
            },
        }
    }

    /// Elements per block (1 for plain float types), or `None` if the layout is unknown.
    pub fn block_size(&self) -> Option<usize> {
        self.layout().map(|(n, _)| n)
    }

    /// Bytes per block, or `None` if the layout is unknown.
    pub fn block_bytes(&self) -> Option<usize> {
        self.layout().map(|(_, b)| b)
    }

    /// Whether [`dequantize_blocks`] supports this type.
    pub fn can_dequantize(&self) -> bool {
        !matches!(self, GgmlType::Other(_))
    }

    /// Every type [`dequantize_blocks`] supports, in id order.
    pub const SUPPORTED: [GgmlType; 13] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::BF16,
    ];

    /// The names of [`GgmlType::SUPPORTED`], comma-separated, for messages.
    pub fn supported_names() -> String {
        GgmlType::SUPPORTED
            .iter()
            .map(GgmlType::name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The type named `name` (llama.cpp's spelling, any case), among the named variants.
    pub fn from_name(name: &str) -> Option<GgmlType> {
        GgmlType::SUPPORTED
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// The type's name as in llama.cpp, upper-cased ("F32", "Q4_1", "Q5_K", ...), or "unknown".
    pub fn name(&self) -> String {
        match *self {
            GgmlType::F32 => "F32".into(),
            GgmlType::F16 => "F16".into(),
            GgmlType::Q4_0 => "Q4_0".into(),
            GgmlType::Q4_1 => "Q4_1".into(),
            GgmlType::Q5_0 => "Q5_0".into(),
            GgmlType::Q5_1 => "Q5_1".into(),
            GgmlType::Q8_0 => "Q8_0".into(),
            GgmlType::Q2_K => "Q2_K".into(),
            GgmlType::Q3_K => "Q3_K".into(),
            GgmlType::Q4_K => "Q4_K".into(),
            GgmlType::Q5_K => "Q5_K".into(),
            GgmlType::Q6_K => "Q6_K".into(),
            GgmlType::BF16 => "BF16".into(),
            GgmlType::Other(id) => match GgmlType::from_id(id) {
                GgmlType::Other(_) => other_type_layout(id).0.unwrap_or("unknown").into(),
                named => named.name(),
            },
        }
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

// ---------------------------------------------------------------------------------------------
// Parsed file
// ---------------------------------------------------------------------------------------------

/// One tensor's description, validated against the file it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// ggml `ne`: `dims[0]` is the fastest-varying (row length); a 2-D tensor has shape
    /// `[dims[1], dims[0]]` in row-major terms.
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the tensor data in the file (data section start + stored offset).
    pub offset: u64,
    /// Size of the tensor data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of elements (product of `dims`; 1 for a 0-D tensor).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file: header, metadata and tensor infos (the tensor data stays in the bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct Gguf {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata key/value pairs in file order.
    pub metadata: Vec<(String, GgufValue)>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    /// Data-section alignment (`general.alignment`, default 32).
    pub alignment: u64,
    /// Absolute byte offset of the data section.
    pub data_offset: u64,
}

/// Helpers of this module's tests.
#[cfg(test)]
mod test_util {
    use half::f16;

    /// `x` rounded to binary16, as its little-endian bytes.
    pub(super) fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_bits().to_le_bytes()
    }

    /// Deterministic pseudo-random floats (xorshift), roughly N(0, scale)-ish.
    pub(super) fn rand_vec(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                let mut acc = 0.0f32;
                for _ in 0..4 {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    acc += (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                }
                acc * scale * 1.7
            })
            .collect()
    }
}
