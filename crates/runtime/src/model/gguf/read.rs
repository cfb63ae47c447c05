//! Parsing a GGUF file: header, metadata and tensor infos, each checked against the file's
//! bytes and bounded against hostile counts; the metadata and tensor accessors.

use super::{
    err, value_type_name, GgmlType, Gguf, GgufError, GgufValue, TensorInfo, GGML_MAX_DIMS,
    GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC,
};

/// Deepest array nesting accepted in metadata (guards the recursion against hostile files).
const MAX_ARRAY_DEPTH: usize = 32;
/// Most array elements the metadata may hold in all, nested arrays included. Each element is a
/// [`GgufValue`] of 32 bytes in memory whatever its size in the file (one byte for a `u8`), so
/// this bounds what a file's counts can make the parser allocate (256 MiB); real vocabularies
/// need a few hundred thousand (tokens, scores, token types, merges).
pub const MAX_METADATA_ELEMENTS: u64 = 1 << 23;

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
                     whose block layout this reader does not know (supported: {})",
                    ggml_type.name(),
                    GgmlType::supported_names()
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
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{h, rand_vec};
    use super::super::{quantize_q4_0, quantize_q4_1, quantize_q8_0, GgufWriter};
    use super::*;
    use std::path::{Path, PathBuf};

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
            GgmlType::Other(15),
            vec![0; 2 * 292],
        );
        let bytes = w.finish();
        let g = Gguf::parse(&bytes).unwrap();
        let t = g.tensor("blk.0.attn_q.weight").unwrap();
        assert_eq!(t.n_bytes, 584);
        assert_eq!(g.tensor_bytes(&bytes, t).unwrap().len(), 584);
        let e = g.dequantize(&bytes, t).unwrap_err();
        assert_eq!(
            e.what,
            "unsupported tensor type Q8_K (id 15) for tensor blk.0.attn_q.weight"
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

    const SMOLLM: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

    /// `models/<rel>` in `../shared` beside the repository root (two levels above this crate),
    /// or `None` with a message when `../shared` is absent.
    fn shared_model(rel: &str) -> Option<PathBuf> {
        let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
        if shared.is_dir() {
            Some(shared.join("models").join(rel))
        } else {
            eprintln!("skipping: ../shared not found (the real models live there)");
            None
        }
    }

    #[test]
    fn real_smollm2_file() {
        let Some(path) = shared_model(SMOLLM) else {
            return;
        };
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
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
