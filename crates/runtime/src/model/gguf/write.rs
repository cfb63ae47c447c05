//! [`GgufWriter`]: builds GGUF v3 files (tests, fixtures, synthetic models).

use super::{GgmlType, GgufValue, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "homogeneous")]
    fn writer_rejects_mixed_arrays() {
        GgufWriter::new().kv(
            "m",
            GgufValue::Array(vec![GgufValue::U8(1), GgufValue::I8(1)]),
        );
    }
}
