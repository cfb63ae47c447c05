//! A self-contained reader (and a small writer) for GGUF files, the model format written by
//! llama.cpp.
//!
//! Supported: GGUF versions 2 and 3, little-endian. Every metadata value type, nested arrays
//! included, is parsed. Tensor infos are parsed for every ggml type whose block layout is known
//! (see [`GgmlType::block_size`]); dequantisation is implemented for F32, F16, BF16, Q4_0, Q4_1 and
//! Q8_0 only, and any other type gives an error naming the type and the tensor.
//!
//! Layout reminders for importers: a tensor's `dims` are ggml's `ne`, fastest-varying first, so a
//! 2-D weight with `dims == [ne0, ne1]` is a row-major matrix of shape `[ne1, ne0]` (ne1 rows of
//! ne0 values). For a linear layer `ne0` is the input size and `ne1` the output size, i.e. the
//! matrix is PyTorch's `weight` ([out, in]) as is, and `y = x · Wᵀ`.
//!
//! Only `std` and `half` are used. Parsing works on a byte slice (read or memory-mapped file) and
//! never panics on malformed input: every read is bounds-checked and reported with the byte offset
//! and what was being read.

use std::fmt;

use half::{bf16, f16};

/// Magic bytes at the start of every GGUF file.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Data-section alignment used when `general.alignment` is absent.
pub const GGUF_DEFAULT_ALIGNMENT: u64 = 32;
/// Most dimensions a ggml tensor can have (`GGML_MAX_DIMS`).
pub const GGML_MAX_DIMS: usize = 4;
/// Deepest array nesting accepted in metadata (guards the recursion against hostile files).
const MAX_ARRAY_DEPTH: usize = 32;
/// Most array elements the metadata may hold in all, nested arrays included. Each element is a
/// [`GgufValue`] of 32 bytes in memory whatever its size in the file (one byte for a `u8`), so
/// this bounds what a file's counts can make the parser allocate (256 MiB); real vocabularies
/// need a few hundred thousand (tokens, scores, token types, merges).
pub const MAX_METADATA_ELEMENTS: u64 = 1 << 23;

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

/// Smallest encoded size of one value of the given type (for sanity checks of array counts).
fn value_min_size(id: u32) -> u64 {
    match id {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        8 => 8,  // u64 length
        9 => 12, // u32 type + u64 count
        _ => 1,
    }
}

// ---------------------------------------------------------------------------------------------
// ggml tensor types
// ---------------------------------------------------------------------------------------------

/// A ggml tensor element type. Build it from a file id with [`GgmlType::from_id`], which maps the
/// named ids to their variants and everything else to `Other(id)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlType {
    /// id 0: 32-bit float.
    F32,
    /// id 1: IEEE half float.
    F16,
    /// id 2: blocks of 32: f16 d + 16 bytes of nibbles; w = (q - 8)·d.
    Q4_0,
    /// id 3: blocks of 32: f16 d, f16 m + 16 bytes of nibbles; w = q·d + m.
    Q4_1,
    /// id 8: blocks of 32: f16 d + 32 i8; w = q·d.
    Q8_0,
    /// id 30: bfloat16.
    BF16,
    /// Any other id (layout possibly known for sizes, but not dequantised here).
    Other(u32),
}

/// (name, block size, block bytes) of the ggml types without their own variant.
fn other_type_layout(id: u32) -> (Option<&'static str>, Option<(usize, usize)>) {
    let (name, layout) = match id {
        6 => ("Q5_0", Some((32, 22))),
        7 => ("Q5_1", Some((32, 24))),
        9 => ("Q8_1", Some((32, 36))),
        10 => ("Q2_K", Some((256, 84))),
        11 => ("Q3_K", Some((256, 110))),
        12 => ("Q4_K", Some((256, 144))),
        13 => ("Q5_K", Some((256, 176))),
        14 => ("Q6_K", Some((256, 210))),
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
            8 => GgmlType::Q8_0,
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
            GgmlType::Q8_0 => 8,
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
            GgmlType::Q8_0 => Some((32, 34)),
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

    /// The type's name as in llama.cpp, upper-cased ("F32", "Q4_1", "Q5_K", ...), or "unknown".
    pub fn name(&self) -> String {
        match *self {
            GgmlType::F32 => "F32".into(),
            GgmlType::F16 => "F16".into(),
            GgmlType::Q4_0 => "Q4_0".into(),
            GgmlType::Q4_1 => "Q4_1".into(),
            GgmlType::Q8_0 => "Q8_0".into(),
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

/// Bounds-checked little-endian reader over the file bytes.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    /// Metadata array elements read so far, and how many may be read.
    elements: u64,
    max_elements: u64,
}

type Ctx<'c> = &'c dyn Fn() -> String;

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64, what: Ctx<'_>) -> Result<&'a [u8], GgufError> {
        let avail = self.b.len() - self.pos;
        if n > avail as u64 {
            return err(format!(
                "truncated at byte {} while reading {}: need {} bytes, only {} left (file size {})",
                self.pos,
                what(),
                n,
                avail,
                self.b.len()
            ));
        }
        let n = n as usize;
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: Ctx<'_>) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, what: Ctx<'_>) -> Result<u8, GgufError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: Ctx<'_>) -> Result<u16, GgufError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: Ctx<'_>) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: Ctx<'_>) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: Ctx<'_>) -> Result<String, GgufError> {
        let start = self.pos;
        let len = self.u64(&|| format!("{} (string length)", what()))?;
        let bytes = self.take(len, &|| format!("{} (string of {} bytes)", what(), len))?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => err(format!(
                "invalid UTF-8 at byte {} in {} (string starting at byte {})",
                start + 8 + e.valid_up_to(),
                what(),
                start
            )),
        }
    }

    fn remaining(&self) -> u64 {
        (self.b.len() - self.pos) as u64
    }

    fn value(&mut self, ty: u32, depth: usize, what: Ctx<'_>) -> Result<GgufValue, GgufError> {
        let start = self.pos;
        Ok(match ty {
            0 => GgufValue::U8(self.u8(what)?),
            1 => GgufValue::I8(self.u8(what)? as i8),
            2 => GgufValue::U16(self.u16(what)?),
            3 => GgufValue::I16(self.u16(what)? as i16),
            4 => GgufValue::U32(self.u32(what)?),
            5 => GgufValue::I32(self.u32(what)? as i32),
            6 => GgufValue::F32(f32::from_bits(self.u32(what)?)),
            7 => match self.u8(what)? {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                v => {
                    return err(format!(
                        "invalid bool value {v} at byte {start} in {}",
                        what()
                    ))
                }
            },
            8 => GgufValue::Str(self.string(what)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return err(format!(
                        "arrays nested deeper than {MAX_ARRAY_DEPTH} at byte {start} in {}",
                        what()
                    ));
                }
                let ety_pos = self.pos;
                let ety = self.u32(&|| format!("{} (array element type)", what()))?;
                if ety > 12 {
                    return err(format!(
                        "unknown array element type {ety} at byte {ety_pos} in {}",
                        what()
                    ));
                }
                let count_pos = self.pos;
                let count = self.u64(&|| format!("{} (array count)", what()))?;
                let min = count.saturating_mul(value_min_size(ety));
                if min > self.remaining() {
                    return err(format!(
                        "truncated at byte {} while reading {}: array of {} {} elements needs at \
                         least {} bytes, only {} left (count at byte {}, file size {})",
                        self.pos,
                        what(),
                        count,
                        value_type_name(ety),
                        min,
                        self.remaining(),
                        count_pos,
                        self.b.len()
                    ));
                }
                self.elements = self.elements.saturating_add(count);
                if self.elements > self.max_elements {
                    return err(format!(
                        "array of {count} {} elements at byte {count_pos} in {} takes the \
                         metadata past {} array elements in all",
                        value_type_name(ety),
                        what(),
                        self.max_elements
                    ));
                }
                let mut items = Vec::with_capacity(count as usize);
                for i in 0..count {
                    let ctx = || format!("{} element {}", what(), i);
                    items.push(self.value(ety, depth + 1, &ctx)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(self.u64(what)?),
            11 => GgufValue::I64(self.u64(what)? as i64),
            12 => GgufValue::F64(f64::from_bits(self.u64(what)?)),
            other => {
                return err(format!(
                    "unknown metadata value type {other} at byte {start} in {}",
                    what()
                ))
            }
        })
    }
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    x.checked_add(a - 1).map(|v| v / a * a)
}

impl Gguf {
    /// Parses the header, metadata and tensor infos of a GGUF file and validates every tensor's
    /// type, shape, alignment and byte range against `bytes`. Never panics on malformed input.
    pub fn parse(bytes: &[u8]) -> Result<Gguf, GgufError> {
        Self::parse_bounded(bytes, MAX_METADATA_ELEMENTS)
    }

    fn parse_bounded(bytes: &[u8], max_elements: u64) -> Result<Gguf, GgufError> {
        let mut r = Reader {
            b: bytes,
            pos: 0,
            elements: 0,
            max_elements,
        };
        let magic = r.array::<4>(&|| "header (magic)".to_string())?;
        if magic != GGUF_MAGIC {
            return err(format!(
                "bad magic: not a GGUF file (first bytes at byte 0 are {:02x?}, expected \"GGUF\")",
                magic
            ));
        }
        let version = r.u32(&|| "header (version)".to_string())?;
        match version {
            2 | 3 => {}
            1 => {
                return err(
                    "unsupported GGUF version 1 at byte 4 (only versions 2 and 3 are supported)",
                )
            }
            v if matches!(v.swap_bytes(), 2 | 3) => {
                return err(format!(
                    "unsupported GGUF version {v} at byte 4: this looks like a big-endian GGUF \
                     (version {}), only little-endian files are supported",
                    v.swap_bytes()
                ))
            }
            v => {
                return err(format!(
                    "unsupported GGUF version {v} at byte 4 (only versions 2 and 3 are supported)"
                ))
            }
        }
        let n_tensors = r.u64(&|| "header (tensor_count)".to_string())?;
        let n_kv = r.u64(&|| "header (metadata_kv_count)".to_string())?;

        // Metadata.
        let mut metadata: Vec<(String, GgufValue)> =
            Vec::with_capacity(n_kv.min(r.remaining() / 13) as usize);
        let mut keys = std::collections::HashSet::new();
        for i in 0..n_kv {
            let kv_pos = r.pos;
            let key = r.string(&|| format!("metadata kv {i} (key)"))?;
            if !keys.insert(key.clone()) {
                return err(format!(
                    "duplicate metadata key `{key}` (metadata kv {i} at byte {kv_pos})"
                ));
            }
            let ty_pos = r.pos;
            let ty = r.u32(&|| format!("metadata kv {i} `{key}` (value type)"))?;
            if ty > 12 {
                return err(format!(
                    "unknown metadata value type {ty} at byte {ty_pos} for metadata kv {i} `{key}`"
                ));
            }
            let value = r.value(ty, 0, &|| format!("metadata kv {i} `{key}` (value)"))?;
            metadata.push((key, value));
        }

        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => GGUF_DEFAULT_ALIGNMENT,
            Some((_, v)) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => {
                    return err(format!(
                        "invalid general.alignment {v:?}: must be a power-of-two integer"
                    ))
                }
            },
        };

        // Tensor infos.
        struct Raw {
            name: String,
            dims: Vec<u64>,
            ggml_type: GgmlType,
            rel_offset: u64,
            n_bytes: u64,
            info_pos: usize,
        }
        let mut raws: Vec<Raw> = Vec::with_capacity(n_tensors.min(r.remaining() / 24) as usize);
        let mut names = std::collections::HashSet::new();
        for i in 0..n_tensors {
            let info_pos = r.pos;
            let name = r.string(&|| format!("tensor info {i} (name)"))?;
            if !names.insert(name.clone()) {
                return err(format!(
                    "duplicate tensor name `{name}` (tensor info {i} at byte {info_pos})"
                ));
            }
            let nd_pos = r.pos;
            let n_dims = r.u32(&|| format!("tensor info {i} `{name}` (n_dims)"))?;
            if n_dims as usize > GGML_MAX_DIMS {
                return err(format!(
                    "tensor `{name}` (tensor info {i}) has {n_dims} dimensions at byte {nd_pos}, \
                     at most {GGML_MAX_DIMS} are allowed"
                ));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(r.u64(&|| format!("tensor info {i} `{name}` (dim {d})"))?);
            }
            let ty_pos = r.pos;
            let ty_id = r.u32(&|| format!("tensor info {i} `{name}` (ggml type)"))?;
            let rel_offset = r.u64(&|| format!("tensor info {i} `{name}` (offset)"))?;

            let ggml_type = GgmlType::from_id(ty_id);
            let (Some(bs), Some(bb)) = (ggml_type.block_size(), ggml_type.block_bytes()) else {
                return err(format!(
                    "tensor `{name}` (tensor info {i}) has ggml type {} (id {ty_id}) at byte {ty_pos}, \
                     whose block layout this reader does not know",
                    ggml_type.name()
                ));
            };
            let mut n_el: u64 = 1;
            for &d in &dims {
                n_el = match n_el.checked_mul(d) {
                    Some(v) if v <= i64::MAX as u64 => v,
                    _ => {
                        return err(format!(
                        "tensor `{name}` (tensor info {i} at byte {info_pos}) has dims {dims:?} \
                             whose element count overflows"
                    ))
                    }
                };
            }
            let ne0 = dims.first().copied().unwrap_or(1);
            if ne0 % bs as u64 != 0 {
                return err(format!(
                    "tensor `{name}` (tensor info {i} at byte {info_pos}) has {ne0} elements per row \
                     (dims {dims:?}), not a multiple of the {} block size {bs}",
                    ggml_type.name()
                ));
            }
            // n_el is a multiple of ne0 and so of bs; n_el <= i64::MAX, bb <= 292: may still overflow.
            let Some(n_bytes) = (n_el / bs as u64).checked_mul(bb as u64) else {
                return err(format!(
                    "tensor `{name}` (tensor info {i}) byte size overflows"
                ));
            };
            raws.push(Raw {
                name,
                dims,
                ggml_type,
                rel_offset,
                n_bytes,
                info_pos,
            });
        }

        let end_of_infos = r.pos as u64;
        let data_offset = align_up(end_of_infos, alignment)
            .ok_or_else(|| GgufError::new("data section offset overflows"))?;
        let file_len = bytes.len() as u64;

        let mut tensors = Vec::with_capacity(raws.len());
        for (i, t) in raws.into_iter().enumerate() {
            if t.rel_offset % alignment != 0 {
                return err(format!(
                    "tensor `{}` (tensor info {i} at byte {}) has data offset {} (relative to the \
                     data section at byte {data_offset}), not a multiple of the alignment {alignment}",
                    t.name, t.info_pos, t.rel_offset
                ));
            }
            let start = data_offset.checked_add(t.rel_offset);
            let end = start.and_then(|s| s.checked_add(t.n_bytes));
            match (start, end) {
                (Some(start), Some(end)) if end <= file_len => tensors.push(TensorInfo {
                    name: t.name,
                    dims: t.dims,
                    ggml_type: t.ggml_type,
                    offset: start,
                    n_bytes: t.n_bytes,
                }),
                _ => {
                    return err(format!(
                        "tensor `{}` data [{}, {}) lies outside the file (size {file_len}) \
                         (tensor info {i} at byte {}: data section at byte {data_offset} + offset {}, \
                         {} bytes of {})",
                        t.name,
                        data_offset as u128 + t.rel_offset as u128,
                        data_offset as u128 + t.rel_offset as u128 + t.n_bytes as u128,
                        t.info_pos,
                        t.rel_offset,
                        t.n_bytes,
                        t.ggml_type.name()
                    ))
                }
            }
        }

        Ok(Gguf {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
        })
    }

    /// The metadata value stored under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn require(&self, key: &str) -> Result<&GgufValue, GgufError> {
        self.get(key)
            .ok_or_else(|| GgufError::new(format!("metadata key `{key}` is missing")))
    }

    /// A non-negative integer metadata value; errors if the key is missing or not such an integer.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self.require(key)?;
        v.as_u64().ok_or_else(|| {
            GgufError::new(format!(
                "metadata key `{key}` has type {} ({v:?}), expected a non-negative integer",
                v.type_name()
            ))
        })
    }

    /// A numeric metadata value as f64; errors if the key is missing or not a number.
    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        let v = self.require(key)?;
        v.as_f64().ok_or_else(|| {
            GgufError::new(format!(
                "metadata key `{key}` has type {}, expected a number",
                v.type_name()
            ))
        })
    }

    /// A string metadata value; errors if the key is missing or not a string.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| {
            GgufError::new(format!(
                "metadata key `{key}` has type {}, expected a string",
                v.type_name()
            ))
        })
    }

    /// The tensor info named `name`; errors if there is none.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| GgufError::new(format!("tensor `{name}` not found in the GGUF file")))
    }

    /// The raw data bytes of tensor `t` within `bytes` (the whole file the infos were parsed from).
    pub fn tensor_bytes<'a>(&self, bytes: &'a [u8], t: &TensorInfo) -> Result<&'a [u8], GgufError> {
        let start = t.offset;
        match start.checked_add(t.n_bytes) {
            Some(end) if end <= bytes.len() as u64 => Ok(&bytes[start as usize..end as usize]),
            _ => err(format!(
                "tensor `{}` data [{}, {}) lies outside the file (size {})",
                t.name,
                start,
                start as u128 + t.n_bytes as u128,
                bytes.len()
            )),
        }
    }

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

// ---------------------------------------------------------------------------------------------
// Dequantisation
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

/// Writer for tests and for our own synthetic files: builds a valid GGUF v3 byte vector.
///
/// Alignment is 32 unless a `general.alignment` key is added, in which case its value is used
/// (the key is written only if added). Tensor data is written as given, each tensor padded to the
/// alignment, so a deliberately wrong data length produces a file the parser will reject.
#[derive(Debug, Clone, Default)]
pub struct GgufWriter {
    kvs: Vec<(String, GgufValue)>,
    tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

fn check_writable(key: &str, v: &GgufValue) {
    if let GgufValue::Array(items) = v {
        if let Some(first) = items.first() {
            for it in items {
                assert!(
                    it.type_id() == first.type_id(),
                    "GgufWriter: array `{key}` mixes {} and {} elements; GGUF arrays are homogeneous",
                    first.type_name(),
                    it.type_name()
                );
                check_writable(key, it);
            }
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &GgufValue) {
    match v {
        GgufValue::U8(x) => out.push(*x),
        GgufValue::I8(x) => out.push(*x as u8),
        GgufValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Bool(x) => out.push(*x as u8),
        GgufValue::Str(s) => put_str(out, s),
        GgufValue::Array(items) => {
            // An empty array's element type is not representable in GgufValue; write u8.
            let ety = items.first().map_or(0, GgufValue::type_id);
            out.extend_from_slice(&ety.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                put_value(out, it);
            }
        }
        GgufValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

impl GgufWriter {
    /// An empty writer (no metadata, no tensors).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metadata key/value pair (in order).
    ///
    /// # Panics
    /// If an array (at any depth) mixes element types, which GGUF cannot represent.
    pub fn kv(&mut self, key: &str, v: GgufValue) {
        check_writable(key, &v);
        self.kvs.push((key.to_string(), v));
    }

    /// Adds a tensor with ggml dims (`dims[0]` fastest) and its raw data bytes (in order).
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: GgmlType, data: Vec<u8>) {
        self.tensors
            .push((name.to_string(), dims.to_vec(), ty, data));
    }

    /// Serialises everything into a GGUF v3 file.
    pub fn finish(&self) -> Vec<u8> {
        let alignment = self
            .kvs
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .filter(|a| *a > 0)
            .unwrap_or(GGUF_DEFAULT_ALIGNMENT) as usize;
        let pad = |len: usize| len.div_ceil(alignment) * alignment;

        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.kvs.len() as u64).to_le_bytes());
        for (k, v) in &self.kvs {
            put_str(&mut out, k);
            out.extend_from_slice(&v.type_id().to_le_bytes());
            put_value(&mut out, v);
        }
        let mut rel = 0usize;
        for (name, dims, ty, data) in &self.tensors {
            put_str(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ty.id().to_le_bytes());
            out.extend_from_slice(&(rel as u64).to_le_bytes());
            rel += pad(data.len());
        }
        out.resize(pad(out.len()), 0);
        for (_, _, _, data) in &self.tensors {
            out.extend_from_slice(data);
            out.resize(pad(out.len()), 0);
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_bits().to_le_bytes()
    }

    /// Deterministic pseudo-random floats (xorshift), roughly N(0, scale)-ish.
    fn rand_vec(n: usize, seed: u64, scale: f32) -> Vec<f32> {
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

    fn all_values() -> Vec<(&'static str, GgufValue)> {
        use GgufValue::*;
        vec![
            ("t.u8", U8(200)),
            ("t.i8", I8(-100)),
            ("t.u16", U16(60000)),
            ("t.i16", I16(-30000)),
            ("t.u32", U32(4_000_000_000)),
            ("t.i32", I32(-2_000_000_000)),
            ("t.f32", F32(1.5e-5)),
            ("t.bool_t", Bool(true)),
            ("t.bool_f", Bool(false)),
            ("t.str", Str("héllo ✓ 世界".into())),
            ("t.empty_str", Str(String::new())),
            ("t.u64", U64(u64::MAX - 1)),
            ("t.i64", I64(i64::MIN + 3)),
            ("t.f64", F64(-1.0e300)),
            (
                "t.arr_str",
                Array(vec![Str("a".into()), Str("".into()), Str("ccc".into())]),
            ),
            (
                "t.arr_f32",
                Array(vec![F32(1.0), F32(-2.5), F32(f32::INFINITY)]),
            ),
            ("t.arr_i32", Array(vec![I32(-1), I32(7)])),
            ("t.arr_bool", Array(vec![Bool(true), Bool(false)])),
            ("t.arr_empty", Array(vec![])),
            (
                "t.nested",
                Array(vec![
                    Array(vec![U8(1), U8(2)]),
                    Array(vec![Str("x".into())]),
                    Array(vec![Array(vec![F64(0.25)]), Array(vec![])]),
                ]),
            ),
        ]
    }

    fn sample_file() -> Vec<u8> {
        let mut w = GgufWriter::new();
        w.kv("general.architecture", GgufValue::Str("llama".into()));
        for (k, v) in all_values() {
            w.kv(k, v);
        }
        let q: Vec<f32> = rand_vec(64, 1, 0.1);
        w.tensor("a.q4_0", &[32, 2], GgmlType::Q4_0, quantize_q4_0(&q));
        w.tensor(
            "b.f32",
            &[3],
            GgmlType::F32,
            [1.0f32, 2.0, 3.0]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        );
        w.tensor("c.q8_0", &[32], GgmlType::Q8_0, quantize_q8_0(&q[..32]));
        w.finish()
    }

    #[test]
    fn round_trip_all_value_types() {
        let bytes = sample_file();
        let g = Gguf::parse(&bytes).unwrap();
        assert_eq!(g.version, 3);
        assert_eq!(g.alignment, 32);
        assert_eq!(g.data_offset % 32, 0);
        assert_eq!(bytes.len() % 32, 0);
        assert_eq!(g.metadata.len(), all_values().len() + 1);
        for (k, v) in all_values() {
            let got = g.get(k).unwrap_or_else(|| panic!("missing {k}"));
            assert_eq!(got, &v, "{k}");
        }
        assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
        assert_eq!(g.get_u64("t.u32").unwrap(), 4_000_000_000);
        assert_eq!(g.get_u64("t.u8").unwrap(), 200);
        assert!(g.get_u64("t.i8").unwrap_err().what.contains("i8"));
        assert!(g
            .get_u64("t.str")
            .unwrap_err()
            .what
            .contains("has type string"));
        assert!(g
            .get_u64("nope")
            .unwrap_err()
            .what
            .contains("`nope` is missing"));
        assert_eq!(g.get_f64("t.i32").unwrap(), -2e9);
        assert_eq!(g.get_f64("t.f32").unwrap(), 1.5e-5f32 as f64);
        assert!(g.get_f64("t.bool_t").is_err());
        assert!(g
            .get_str("t.u8")
            .unwrap_err()
            .what
            .contains("expected a string"));
        assert_eq!(
            g.get("t.nested").unwrap().as_array().unwrap()[2]
                .as_array()
                .unwrap()[0],
            GgufValue::Array(vec![GgufValue::F64(0.25)])
        );

        assert_eq!(g.tensors.len(), 3);
        let t = g.tensor("a.q4_0").unwrap();
        assert_eq!(t.dims, vec![32, 2]);
        assert_eq!(t.ggml_type, GgmlType::Q4_0);
        assert_eq!(t.n_elements(), 64);
        assert_eq!(t.n_bytes, 36);
        assert_eq!(t.offset, g.data_offset);
        let b = g.tensor("b.f32").unwrap();
        assert_eq!(b.offset, g.data_offset + 64);
        assert_eq!(g.dequantize(&bytes, b).unwrap(), vec![1.0, 2.0, 3.0]);
        let c = g.tensor("c.q8_0").unwrap();
        assert_eq!(c.offset, g.data_offset + 96);
        assert_eq!(g.tensor_bytes(&bytes, c).unwrap().len(), 34);
        assert!(g
            .tensor("zzz")
            .unwrap_err()
            .what
            .contains("`zzz` not found"));
    }

    #[test]
    fn custom_alignment_and_version_2() {
        let mut w = GgufWriter::new();
        w.kv("general.alignment", GgufValue::U32(64));
        w.tensor(
            "x",
            &[2, 3],
            GgmlType::F16,
            (0..6).flat_map(|i| h(i as f32)).collect(),
        );
        w.tensor("y", &[1], GgmlType::F32, 5.0f32.to_le_bytes().to_vec());
        let mut bytes = w.finish();
        let g = Gguf::parse(&bytes).unwrap();
        assert_eq!(g.alignment, 64);
        assert_eq!(g.data_offset % 64, 0);
        assert_eq!(g.tensors[1].offset, g.data_offset + 64);
        // Row-major, ne[0] fastest: shape [3, 2] as written.
        assert_eq!(
            g.dequantize(&bytes, &g.tensors[0]).unwrap(),
            vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        );
        bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(Gguf::parse(&bytes).unwrap().version, 2);
    }

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

    #[test]
    fn truncated_files_are_errors() {
        let bytes = sample_file();
        let g = Gguf::parse(&bytes).unwrap();
        let data_end = g
            .tensors
            .iter()
            .map(|t| t.offset + t.n_bytes)
            .max()
            .unwrap() as usize;
        for cut in 0..bytes.len() {
            let r = Gguf::parse(&bytes[..cut]);
            if cut < data_end {
                let e = r.expect_err(&format!("cut at {cut} parsed"));
                assert!(
                    e.what.contains("truncated at byte")
                        || e.what.contains("lies outside the file"),
                    "cut {cut}: {e}"
                );
            } else {
                // Only the padding after the last tensor is missing.
                assert!(r.is_ok(), "cut {cut}");
            }
        }
        let e = Gguf::parse(&bytes[..30]).unwrap_err();
        assert!(
            e.what
                .contains("truncated at byte 24 while reading metadata kv 0 (key)"),
            "{e}"
        );
        let e = Gguf::parse(&bytes[..g.data_offset as usize + 10]).unwrap_err();
        assert!(e.what.starts_with("tensor `a.q4_0` data ["), "{e}");
        assert!(e.what.contains("lies outside the file (size"), "{e}");
        assert!(Gguf::parse(&[])
            .unwrap_err()
            .what
            .contains("header (magic)"));
    }

    #[test]
    fn truncation_inside_tensor_info_names_the_field() {
        let bytes = sample_file();
        let pos = find(&bytes, b"b.f32") + 5 + 4; // inside dims of tensor info 1
        let e = Gguf::parse(&bytes[..pos + 3]).unwrap_err();
        assert_eq!(
            e.what,
            format!(
                "truncated at byte {pos} while reading tensor info 1 `b.f32` (dim 0): need 8 bytes, \
                 only 3 left (file size {})",
                pos + 3
            )
        );
    }

    #[test]
    fn corrupted_files_never_panic() {
        let bytes = sample_file();
        let mut s = 0x1234_5678_9ABC_DEF1u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut n_ok = 0;
        for _ in 0..3000 {
            let mut b = bytes.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() % b.len() as u64) as usize;
                b[i] = match next() % 4 {
                    0 => 0xFF,
                    1 => 0,
                    _ => next() as u8,
                };
            }
            if let Ok(g) = Gguf::parse(&b) {
                n_ok += 1;
                for t in &g.tensors {
                    let _ = g.dequantize(&b, t);
                }
            }
        }
        assert!(n_ok > 0);
    }

    #[test]
    fn huge_counts_are_errors_not_allocations() {
        let mut w = GgufWriter::new();
        w.kv("arr", GgufValue::Array(vec![GgufValue::U64(1)]));
        let mut bytes = w.finish();
        // header 24 + key (8 + 3) + type 4 + elem type 4 -> count at 43
        bytes[43..51].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = Gguf::parse(&bytes).unwrap_err();
        assert!(
            e.what.contains("truncated") && e.what.contains("metadata kv 0 `arr`"),
            "{e}"
        );
        let mut bytes = w.finish();
        bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // tensor_count
        assert!(Gguf::parse(&bytes)
            .unwrap_err()
            .what
            .contains("tensor info 0 (name)"));
    }

    #[test]
    fn metadata_arrays_are_bounded_in_all() {
        // each u8 element is one byte in the file but a 32-byte value in memory
        assert_eq!(std::mem::size_of::<GgufValue>(), 32);
        assert_eq!(MAX_METADATA_ELEMENTS * 32, 256 << 20);
        let mut w = GgufWriter::new();
        w.kv("a", GgufValue::Array(vec![GgufValue::U8(1); 600]));
        w.kv(
            "b",
            GgufValue::Array(vec![GgufValue::Array(vec![GgufValue::U8(2); 399])]),
        );
        let bytes = w.finish();
        assert!(Gguf::parse_bounded(&bytes, 1000).is_ok());
        let e = Gguf::parse_bounded(&bytes, 999).unwrap_err();
        assert!(
            e.what.contains("array of 399 u8 elements")
                && e.what.contains("metadata kv 1 `b` (value) element 0")
                && e.what.contains("past 999 array elements in all"),
            "{e}"
        );
    }

    #[test]
    fn bad_magic() {
        let mut bytes = sample_file();
        bytes[..4].copy_from_slice(b"GGML");
        let e = Gguf::parse(&bytes).unwrap_err();
        assert!(e.what.starts_with("bad magic: not a GGUF file"), "{e}");
    }

    #[test]
    fn unsupported_versions() {
        for (v, needle) in [
            (1u32, "version 1"),
            (4, "version 4"),
            (0x0300_0000, "big-endian"),
        ] {
            let mut bytes = sample_file();
            bytes[4..8].copy_from_slice(&v.to_le_bytes());
            let e = Gguf::parse(&bytes).unwrap_err();
            assert!(
                e.what.contains("unsupported GGUF") && e.what.contains(needle),
                "{e}"
            );
        }
    }

    fn find(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len())
            .position(|w| w == needle)
            .expect("needle")
    }

    #[test]
    fn misaligned_and_out_of_range_offsets() {
        let mut w = GgufWriter::new();
        w.tensor("first", &[4], GgmlType::F32, vec![0; 16]);
        w.tensor("misaligned_tensor", &[8], GgmlType::F32, vec![0; 32]);
        let good = w.finish();
        Gguf::parse(&good).unwrap();
        let off_pos = find(&good, b"misaligned_tensor") + 17 + 4 + 8 + 4;
        assert_eq!(
            u64::from_le_bytes(good[off_pos..off_pos + 8].try_into().unwrap()),
            32
        );

        let mut bad = good.clone();
        bad[off_pos..off_pos + 8].copy_from_slice(&36u64.to_le_bytes());
        let e = Gguf::parse(&bad).unwrap_err();
        assert!(
            e.what.contains("`misaligned_tensor`")
                && e.what.contains("not a multiple of the alignment 32"),
            "{e}"
        );

        let mut bad = good.clone();
        bad[off_pos..off_pos + 8].copy_from_slice(&(1u64 << 20).to_le_bytes());
        let e = Gguf::parse(&bad).unwrap_err();
        let g = Gguf::parse(&good).unwrap();
        let start = g.data_offset + (1 << 20);
        assert!(
            e.what.starts_with(&format!(
                "tensor `misaligned_tensor` data [{start}, {}) lies outside the file (size {})",
                start + 32,
                good.len()
            )),
            "{e}"
        );

        let mut bad = good.clone();
        bad[off_pos..off_pos + 8].copy_from_slice(&(u64::MAX - 31).to_le_bytes());
        assert!(Gguf::parse(&bad)
            .unwrap_err()
            .what
            .contains("lies outside the file"));
    }

    #[test]
    fn tensor_type_checks() {
        // Known layout, not dequantisable: parses, fails at dequantisation naming type and tensor.
        let mut w = GgufWriter::new();
        w.tensor(
            "blk.0.attn_q.weight",
            &[256, 2],
            GgmlType::Other(13),
            vec![0; 2 * 176],
        );
        let bytes = w.finish();
        let g = Gguf::parse(&bytes).unwrap();
        let t = g.tensor("blk.0.attn_q.weight").unwrap();
        assert_eq!(t.n_bytes, 352);
        assert_eq!(g.tensor_bytes(&bytes, t).unwrap().len(), 352);
        let e = g.dequantize(&bytes, t).unwrap_err();
        assert_eq!(
            e.what,
            "unsupported tensor type Q5_K (id 13) for tensor blk.0.attn_q.weight"
        );

        // Unknown layout: a parse error naming the id.
        let mut w = GgufWriter::new();
        w.tensor("weird", &[32], GgmlType::Other(999), vec![0; 32]);
        let e = Gguf::parse(&w.finish()).unwrap_err();
        assert!(
            e.what.contains("`weird`") && e.what.contains("id 999"),
            "{e}"
        );

        // Row length not a multiple of the block size.
        let mut w = GgufWriter::new();
        w.tensor("odd", &[100, 1], GgmlType::Q4_0, vec![0; 18 * 4]);
        let e = Gguf::parse(&w.finish()).unwrap_err();
        assert!(
            e.what.contains("tensor `odd`") && e.what.contains("100 elements per row"),
            "{e}"
        );

        // Too many dims.
        let mut w = GgufWriter::new();
        w.tensor("5d", &[1, 1, 1, 1, 1], GgmlType::F32, vec![0; 4]);
        assert!(Gguf::parse(&w.finish())
            .unwrap_err()
            .what
            .contains("5 dimensions"));

        // Names and ids.
        assert_eq!(GgmlType::from_id(3), GgmlType::Q4_1);
        assert_eq!(GgmlType::Other(3).name(), "Q4_1");
        assert_eq!(GgmlType::from_id(30).block_bytes(), Some(2));
        assert_eq!(GgmlType::from_id(14).name(), "Q6_K");
        assert_eq!(GgmlType::from_id(14).block_bytes(), Some(210));
        assert_eq!(GgmlType::from_id(12345).name(), "unknown");
        assert_eq!(GgmlType::from_id(12345).block_size(), None);
    }

    #[test]
    fn duplicate_keys_and_names_are_errors() {
        let mut w = GgufWriter::new();
        w.kv("k", GgufValue::U8(1));
        w.kv("k", GgufValue::U8(2));
        assert!(Gguf::parse(&w.finish())
            .unwrap_err()
            .what
            .contains("duplicate metadata key `k`"));
        let mut w = GgufWriter::new();
        w.tensor("t", &[1], GgmlType::F32, vec![0; 4]);
        w.tensor("t", &[1], GgmlType::F32, vec![0; 4]);
        assert!(Gguf::parse(&w.finish())
            .unwrap_err()
            .what
            .contains("duplicate tensor name `t`"));
    }

    #[test]
    #[should_panic(expected = "homogeneous")]
    fn writer_rejects_mixed_arrays() {
        GgufWriter::new().kv(
            "m",
            GgufValue::Array(vec![GgufValue::U8(1), GgufValue::I8(1)]),
        );
    }

    const SMOLLM: &str = "shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

    #[test]
    fn real_smollm2_file() {
        let candidates = [format!("../{SMOLLM}"), format!("/work/{SMOLLM}")];
        let Some(path) = candidates.iter().find(|p| std::path::Path::new(p).exists()) else {
            println!("skipping real_smollm2_file: {SMOLLM} not found (tried {candidates:?})");
            return;
        };
        let bytes = std::fs::read(path).unwrap();
        let g = Gguf::parse(&bytes).unwrap();
        assert_eq!(g.version, 3);
        assert_eq!(g.tensors.len(), 272);
        assert_eq!(g.metadata.len(), 33);
        assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
        assert_eq!(g.get_u64("llama.block_count").unwrap(), 30);
        assert_eq!(g.get_u64("llama.embedding_length").unwrap(), 576);
        assert_eq!(g.get_u64("llama.attention.head_count").unwrap(), 9);
        assert_eq!(g.get_u64("llama.attention.head_count_kv").unwrap(), 3);
        assert_eq!(g.get_f64("llama.rope.freq_base").unwrap(), 100000.0);
        let toks = g.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap();
        assert_eq!(toks.len(), 49152);
        assert!(toks.iter().all(|t| t.as_str().is_some()));
        assert_eq!(toks[1].as_str(), Some("<|im_start|>"));
        let emb = g.tensor("token_embd.weight").unwrap();
        assert_eq!(emb.ggml_type, GgmlType::Q8_0);
        assert_eq!(emb.dims, vec![576, 49152]);
        assert_eq!(
            g.tensors
                .iter()
                .filter(|t| t.ggml_type == GgmlType::Q4_1)
                .count(),
            210
        );
        assert_eq!(
            g.tensors
                .iter()
                .filter(|t| t.ggml_type == GgmlType::F32)
                .count(),
            61
        );
        assert!(g.tensor("output.weight").is_err()); // tied embeddings
        assert_eq!(g.tensors.iter().map(|t| t.n_bytes).sum::<u64>(), 96_576_768);
        assert_eq!(
            g.tensors.iter().map(|t| t.n_elements()).sum::<u64>(),
            134_515_008
        );

        let q = g.tensor("blk.0.attn_q.weight").unwrap();
        assert_eq!(q.ggml_type, GgmlType::Q4_1);
        assert_eq!(q.dims, vec![576, 576]);
        let w = g.dequantize(&bytes, q).unwrap();
        assert_eq!(w.len(), 576 * 576);
        assert!(w.iter().all(|v| v.is_finite()));
        let mean = w.iter().map(|&v| v as f64).sum::<f64>() / w.len() as f64;
        let std =
            (w.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        assert!((0.001..1.0).contains(&std), "std {std}");

        // Our reference quantisers reproduce llama.cpp's bytes exactly: re-quantising the
        // dequantised weights gives back the file's blocks bit for bit.
        assert_eq!(quantize_q4_1(&w), g.tensor_bytes(&bytes, q).unwrap());
        let e = g.dequantize(&bytes, emb).unwrap();
        assert_eq!(quantize_q8_0(&e), g.tensor_bytes(&bytes, emb).unwrap());
        drop(e);

        // Every tensor dequantises to finite values.
        for t in &g.tensors {
            let v = g.dequantize(&bytes, t).unwrap();
            assert_eq!(v.len() as u64, t.n_elements());
            assert!(v.iter().all(|x| x.is_finite()), "{}", t.name);
        }
        let norm = g
            .dequantize(&bytes, g.tensor("output_norm.weight").unwrap())
            .unwrap();
        assert_eq!(norm.len(), 576);
    }
}
