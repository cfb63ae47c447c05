//! Safetensors checkpoints as Hugging Face saves them: one `model.safetensors`, or
//! `model.safetensors.index.json` and the shards its `weight_map` names, memory-mapped and
//! checked (headers against file sizes, each tensor in the shard the index names), with
//! tensors read as f32 from F32, F16 or BF16.

use super::ModelError;
use super::{bad, io};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

fn map(path: &Path) -> Result<memmap2::Mmap, ModelError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    // SAFETY: read-only mapping of a checkpoint file we do not modify.
    unsafe { memmap2::Mmap::map(&file) }.map_err(io(path))
}

/// Where one tensor of a checkpoint lies.
struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Range<usize>,
}

/// The safetensors files of a checkpoint folder, mapped, with every tensor's place.
pub struct Checkpoint {
    /// `model.safetensors`, or the index naming the shards.
    pub path: PathBuf,
    files: Vec<(PathBuf, memmap2::Mmap)>,
    tensors: BTreeMap<String, Entry>,
}

impl Checkpoint {
    /// Opens `model.safetensors`, else `model.safetensors.index.json` and every shard its
    /// `weight_map` names; each file's header is checked against its size, and each tensor
    /// must be in the shard the index names.
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let mut ck = Checkpoint {
            path: single.clone(),
            files: Vec::new(),
            tensors: BTreeMap::new(),
        };
        if !single.exists() && !index.exists() {
            return Err(bad(
                dir,
                "has neither model.safetensors nor model.safetensors.index.json (a PyTorch .bin \
                 checkpoint must be saved as safetensors first)",
            ));
        }
        if single.exists() {
            ck.add(&single)?;
            return Ok(ck);
        }
        ck.path = index.clone();
        let text = std::fs::read_to_string(&index).map_err(io(&index))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| bad(&index, format!("not a valid safetensors index: {e}")))?;
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| bad(&index, "`weight_map` is missing or not an object"))?;
        let mut shards: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, file) in map {
            let file = file.as_str().ok_or_else(|| {
                bad(
                    &index,
                    format!("`weight_map.{name}` = {file}: expected a file name"),
                )
            })?;
            let plain = Path::new(file).file_name().map(|f| f == file) == Some(true);
            if !plain || file.starts_with('.') {
                return Err(bad(
                    &index,
                    format!(
                        "`weight_map.{name}` = \"{file}\": a shard must be a file in the folder"
                    ),
                ));
            }
            shards.entry(file).or_default().push(name);
        }
        for (file, names) in shards {
            let path = dir.join(file);
            if !path.is_file() {
                return Err(bad(
                    &index,
                    format!(
                        "`weight_map.{}` names shard `{file}`, which does not exist",
                        names[0]
                    ),
                ));
            }
            let first = ck.files.len();
            ck.add(&path)?;
            for name in names {
                match ck.tensors.get(name) {
                    Some(e) if e.file == first => {}
                    _ => {
                        return Err(bad(
                            &path,
                            format!(
                                "has no tensor `{name}`, which `weight_map` in {} places there",
                                index.display()
                            ),
                        ))
                    }
                }
            }
        }
        Ok(ck)
    }

    /// Maps one safetensors file and records its tensors.
    fn add(&mut self, path: &Path) -> Result<(), ModelError> {
        let bytes = map(path)?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(path, format!("not a valid safetensors file: {e}")))?;
        let base = bytes.as_ptr() as usize;
        let file = self.files.len();
        for (name, t) in st.tensors() {
            let start = t.data().as_ptr() as usize - base;
            let entry = Entry {
                file,
                dtype: t.dtype(),
                shape: t.shape().to_vec(),
                bytes: start..start + t.data().len(),
            };
            if self.tensors.insert(name.clone(), entry).is_some() {
                return Err(bad(
                    path,
                    format!("tensor `{name}` is also in another file of the checkpoint"),
                ));
            }
        }
        drop(st);
        self.files.push((path.to_path_buf(), bytes));
        Ok(())
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// A tensor's shape, when present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|e| e.shape.as_slice())
    }

    /// The file holding `name` (the checkpoint's own path when absent).
    pub fn file_of(&self, name: &str) -> &Path {
        self.tensors
            .get(name)
            .map_or(&self.path, |e| &self.files[e.file].0)
    }

    /// The weight file dtypes, sorted and deduplicated (`F32`, `F16`, `BF16`, ...).
    pub fn dtypes(&self) -> Vec<String> {
        let mut d: Vec<String> = self
            .tensors
            .values()
            .map(|e| format!("{:?}", e.dtype))
            .collect();
        d.sort();
        d.dedup();
        d
    }

    /// Total element count.
    pub fn parameters(&self) -> u64 {
        self.tensors
            .values()
            .map(|e| e.shape.iter().product::<usize>() as u64)
            .sum()
    }

    /// sha256 of each weight file, `name sha256` joined by `, `.
    pub fn hashes(&self) -> Result<String, ModelError> {
        let mut parts = Vec::new();
        for (path, _) in &self.files {
            let h = edgebench_util::hash::sha256_file(path).map_err(io(path))?;
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            parts.push(format!("{name} sha256 {h}"));
        }
        Ok(parts.join(", "))
    }

    /// Checks that `name` is present, of `want` shape (each dim with the config field it comes
    /// from) and of a float dtype EdgeBench converts.
    pub fn check(&self, name: &str, want: &[(usize, &str)], why: &str) -> Result<(), ModelError> {
        let e = self
            .tensors
            .get(name)
            .ok_or_else(|| bad(&self.path, format!("tensor `{name}` is missing{why}")))?;
        let path = &self.files[e.file].0;
        if e.shape.len() != want.len() || e.shape.iter().zip(want).any(|(got, (w, _))| got != w) {
            let expected: Vec<String> = want.iter().map(|(v, k)| format!("{v} (`{k}`)")).collect();
            return Err(bad(
                path,
                format!(
                    "tensor `{name}` has shape {:?}, config.json implies [{}]",
                    e.shape,
                    expected.join(", ")
                ),
            ));
        }
        if !matches!(e.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(bad(
                path,
                format!(
                    "tensor `{name}` is {:?}; supported: F32, F16, BF16",
                    e.dtype
                ),
            ));
        }
        Ok(())
    }

    /// The tensor's values as f32 (F16 and BF16 widened exactly).
    pub fn f32(&self, name: &str) -> Result<Vec<f32>, ModelError> {
        let e = self
            .tensors
            .get(name)
            .ok_or_else(|| bad(&self.path, format!("tensor `{name}` is missing")))?;
        let (path, bytes) = &self.files[e.file];
        let data = &bytes[e.bytes.clone()];
        Ok(match e.dtype {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(bad(
                    path,
                    format!("tensor `{name}` is {other:?}; supported: F32, F16, BF16"),
                ))
            }
        })
    }
}

/// The layer index of tensor `name` (`[<model>.]<layers><i>.…`, e.g. `model.layers.3.mlp…`).
pub fn layer_of(name: &str, model: &str, layers: &str) -> Option<usize> {
    name.trim_start_matches(model)
        .strip_prefix(layers)
        .and_then(|r| r.split('.').next())
        .and_then(|i| i.parse().ok())
}

/// The first tensor, by name, of a layer at or beyond `n_layers`: a checkpoint with more layers
/// than its config declares (see [`layer_of`]).
pub fn tensor_beyond<'a>(
    names: impl IntoIterator<Item = &'a str>,
    model: &str,
    layers: &str,
    n_layers: usize,
) -> Option<&'a str> {
    names
        .into_iter()
        .filter(|n| layer_of(n, model, layers).is_some_and(|i| i >= n_layers))
        .min()
}
