//! Bounded fuzzing of the model-file readers: the GGUF reader and the Llama
//! import, the safetensors reader behind the BERT import, the model manifest
//! (`edgebench-model.toml`), the tokenizer loader (`tokenizer.json`) and the
//! run-records reader. Real files are mutated, as bytes (bit flips, random
//! bytes, truncation, length and count fields set to huge or zero values,
//! splices, numbers in text swapped for extreme ones) or as parsed structure
//! written back (metadata values of other values or types, tensors of other
//! shapes, JSON and TOML nodes replaced, moved or dropped), and every case
//! must end in `Ok` or `Err` within [`CASE_LIMIT`], without a panic and
//! without allocating more than [`guard::LIMIT`] bytes on its thread.
//!
//! The seed and the case counts are fixed, so every run tries the same inputs.
//! A longer run (every reader's count scaled by N / 1000):
//!
//! ```text
//! EDGEBENCH_FUZZ_CASES=100000 cargo test --release --test fuzz_readers -- --nocapture
//! ```
//!
//! Another seed: `EDGEBENCH_FUZZ_SEED=<u64>`. A failing case prints its reader,
//! seed and index; `EDGEBENCH_FUZZ_CASE=<index>` (with the same seed) replays
//! that case alone.

mod common;

use common::{synth_bert, synth_llama};
use edgebench::model::bert::{self, BertConfig};
use edgebench::model::gguf::{GgmlType, Gguf, GgufValue, GgufWriter};
use edgebench::model::llama::{self, LlamaConfig};
use edgebench::model::manifest::ModelManifest;
use edgebench::model::tokenizer::{write_byte_tokenizer, Tok};
use edgebench::record::RunDir;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest a single case may run.
const CASE_LIMIT: Duration = Duration::from_secs(10);
/// Seed of every run unless `EDGEBENCH_FUZZ_SEED` says otherwise.
const SEED: u64 = 0x5eed_edb0_f022_2024;
/// The `EDGEBENCH_FUZZ_CASES` the default counts stand for.
const BASE_CASES: usize = 1000;

#[global_allocator]
static ALLOC: guard::Guard = guard::Guard;

/// A global allocator that counts the bytes each fuzz case holds on its own
/// thread and refuses (null: the case fails) an allocation past [`LIMIT`].
mod guard {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// Most bytes a case may hold at once on its thread.
    pub const LIMIT: isize = 1 << 30;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static ON: Cell<bool> = const { Cell::new(false) };
        static BREACHED: Cell<usize> = const { Cell::new(0) };
    }

    /// Starts counting on this thread.
    pub fn start() {
        LIVE.with(|l| l.set(0));
        BREACHED.with(|b| b.set(0));
        ON.with(|o| o.set(true));
    }

    /// Stops counting; the size of a refused allocation, if there was one.
    pub fn stop() -> Option<usize> {
        ON.with(|o| o.set(false));
        Some(BREACHED.with(|b| b.get())).filter(|&n| n > 0)
    }

    fn charge(n: usize) -> bool {
        let over = ON.try_with(|on| on.get()).unwrap_or(false)
            && LIVE
                .try_with(|l| l.get().saturating_add(n as isize) > LIMIT)
                .unwrap_or(false);
        if over {
            let _ = BREACHED.try_with(|b| b.set(n));
            // the process may abort on the null that follows: say why first
            let msg = b"fuzz_readers: a case asked for more than 1 GiB on its thread \
                        (the case is named in the test output above)\n";
            // SAFETY: writes a static buffer to stderr; no allocation.
            unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
            return false;
        }
        let _ = LIVE.try_with(|l| l.set(l.get().saturating_add(n as isize)));
        true
    }

    fn credit(n: usize) {
        let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(n as isize)));
    }

    pub struct Guard;

    // SAFETY: every call is forwarded to the system allocator unchanged, or
    // answered with null (allowed: allocation failure).
    unsafe impl GlobalAlloc for Guard {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            if !charge(l.size()) {
                return std::ptr::null_mut();
            }
            System.alloc(l)
        }
        unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
            if !charge(l.size()) {
                return std::ptr::null_mut();
            }
            System.alloc_zeroed(l)
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            credit(l.size());
            System.dealloc(p, l)
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
            if new > l.size() {
                if !charge(new - l.size()) {
                    return std::ptr::null_mut();
                }
            } else {
                credit(l.size() - new);
            }
            System.realloc(p, l, new)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a whole number"))
    })
}

/// Runs `case` `default_cases` times (scaled by `EDGEBENCH_FUZZ_CASES`), each
/// on its own thread with its own generator, failing on a panic, a refused
/// allocation or a case longer than [`CASE_LIMIT`]. Each case names its
/// outcome (`"ok"` when the reader accepted the input, how it refused it
/// otherwise); a run of the full count must see both kinds, so the mutations
/// reach past the first checks without always breaking the file.
fn run_cases(
    reader: &'static str,
    default_cases: usize,
    case: impl Fn(&mut ChaCha8Rng) -> &'static str + Send + Sync + 'static,
) {
    let seed = env_u64("EDGEBENCH_FUZZ_SEED").unwrap_or(SEED);
    let n = match env_u64("EDGEBENCH_FUZZ_CASES") {
        Some(n) => (n as usize * default_cases / BASE_CASES).max(1),
        None => default_cases,
    };
    let cases: Vec<usize> = match env_u64("EDGEBENCH_FUZZ_CASE") {
        Some(i) => vec![i as usize],
        None => (0..n).collect(),
    };
    let case = Arc::new(case);
    let replay = |i: usize| {
        format!(
            "replay: EDGEBENCH_FUZZ_SEED={seed} EDGEBENCH_FUZZ_CASE={i} cargo test --release \
             --test fuzz_readers {reader} -- --nocapture"
        )
    };
    let t0 = Instant::now();
    let mut outcomes = std::collections::BTreeMap::<&str, usize>::new();
    for &i in &cases {
        let (tx, rx) = mpsc::channel();
        let c = case.clone();
        let worker = std::thread::Builder::new()
            .name(format!("{reader}-{i}"))
            .spawn(move || {
                let mut rng = case_rng(seed, reader, i);
                guard::start();
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c(&mut rng)));
                let refused = guard::stop();
                let r = match (r, refused) {
                    (Err(p), _) => Err(panic_text(p)),
                    (Ok(_), Some(n)) => Err(format!("an allocation of {n} bytes was refused")),
                    (Ok(outcome), None) => Ok(outcome),
                };
                let _ = tx.send(r);
            })
            .expect("spawn a case thread");
        match rx.recv_timeout(CASE_LIMIT) {
            Ok(Ok(outcome)) => {
                worker.join().expect("case thread");
                *outcomes.entry(outcome).or_default() += 1;
            }
            Ok(Err(why)) => panic!(
                "{reader}: case {i} (seed {seed}) failed: {why}\n{}",
                replay(i)
            ),
            Err(_) => panic!(
                "{reader}: case {i} (seed {seed}) ran longer than {CASE_LIMIT:?}\n{}",
                replay(i)
            ),
        }
    }
    eprintln!(
        "{reader}: {} cases in {:.1} s (seed {seed}): {outcomes:?}",
        cases.len(),
        t0.elapsed().as_secs_f64()
    );
    if cases.len() >= default_cases {
        assert!(
            outcomes.contains_key("ok") && outcomes.len() > 1,
            "{reader}: the mutations should both keep and break some inputs: {outcomes:?}"
        );
    }
}

fn case_rng(seed: u64, reader: &str, i: usize) -> ChaCha8Rng {
    // FNV-1a over the reader's name, so readers draw independent streams
    let h = reader.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    ChaCha8Rng::seed_from_u64(seed ^ h ^ (i as u64).wrapping_mul(0x9e3779b97f4a7c15))
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

// ---------------------------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------------------------

/// An integer field of a binary file (a length, count, dim, type or offset).
#[derive(Clone, Copy, Debug)]
struct Field {
    at: usize,
    width: usize,
}

/// What a mutation may aim at: integer fields in groups (one group drawn
/// uniformly, so a few header counts weigh as much as 49 152 token lengths),
/// and whether the bytes are text.
#[derive(Clone, Default)]
struct Shape {
    fields: Vec<Vec<Field>>,
    text: bool,
}

fn interesting(rng: &mut ChaCha8Rng, len: usize) -> u64 {
    const V: [u64; 18] = [
        0,
        1,
        2,
        3,
        7,
        8,
        0x7f,
        0x80,
        0xff,
        0xffff,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
        1 << 32,
        1 << 40,
        1 << 62,
        i64::MAX as u64,
        u64::MAX,
    ];
    match rng.random_range(0..4) {
        0 => (len as u64 + rng.random_range(0..3)).wrapping_sub(1),
        1 => rng.random(),
        _ => V[rng.random_range(0..V.len())],
    }
}

const TEXT_NUMBERS: [&str; 20] = [
    "0",
    "-1",
    "1",
    "2",
    "255",
    "65536",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999",
    "1e308",
    "-1e308",
    "1.5",
    "NaN",
    "\"\"",
    "null",
    "[]",
    "{}",
];

/// One to three mutations of `base`.
fn mutate(rng: &mut ChaCha8Rng, base: &[u8], shape: &Shape) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..rng.random_range(1..=3) {
        if b.is_empty() {
            break;
        }
        let pos = rng.random_range(0..b.len());
        match rng.random_range(0..10) {
            // bit flips
            0 => {
                for _ in 0..rng.random_range(1..=8) {
                    let p = rng.random_range(0..b.len());
                    b[p] ^= 1 << rng.random_range(0..8);
                }
            }
            // random bytes
            1 => {
                let n = rng.random_range(1..=16).min(b.len() - pos);
                rng.fill(&mut b[pos..pos + n]);
            }
            // truncation
            2 => b.truncate(pos),
            // a known integer field set to an extreme value
            3 | 4 if !shape.fields.is_empty() => {
                let group = &shape.fields[rng.random_range(0..shape.fields.len())];
                if group.is_empty() {
                    continue;
                }
                let f = group[rng.random_range(0..group.len())];
                let v = interesting(rng, base.len()).to_le_bytes();
                if f.at + f.width <= b.len() {
                    b[f.at..f.at + f.width].copy_from_slice(&v[..f.width]);
                }
            }
            // an extreme integer anywhere
            3 | 4 => {
                let v = interesting(rng, base.len()).to_le_bytes();
                let w = if rng.random() { 4 } else { 8 }.min(b.len() - pos);
                b[pos..pos + w].copy_from_slice(&v[..w]);
            }
            // splice: a chunk copied over another place, or inserted
            5 => {
                let from = rng.random_range(0..b.len());
                let n = rng.random_range(1..=256).min(b.len() - from);
                let chunk = b[from..from + n].to_vec();
                if rng.random() {
                    let n = n.min(b.len() - pos);
                    b[pos..pos + n].copy_from_slice(&chunk[..n]);
                } else {
                    b.splice(pos..pos, chunk);
                }
            }
            // a range deleted
            6 => {
                let n = rng.random_range(1..=64).min(b.len() - pos);
                b.drain(pos..pos + n);
            }
            // a number in text swapped for an extreme one
            7 | 8 if shape.text => {
                let digits: Vec<usize> = (0..b.len())
                    .filter(|&i| b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_digit()))
                    .collect();
                if digits.is_empty() {
                    continue;
                }
                let s = digits[rng.random_range(0..digits.len())];
                let e = (s..b.len())
                    .find(|&i| !b[i].is_ascii_digit())
                    .unwrap_or(b.len());
                let v = TEXT_NUMBERS[rng.random_range(0..TEXT_NUMBERS.len())];
                b.splice(s..e, v.bytes());
            }
            // a line duplicated, dropped or moved
            9 if shape.text => {
                let text = String::from_utf8_lossy(&b).into_owned();
                let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
                let i = rng.random_range(0..lines.len());
                match rng.random_range(0..3) {
                    0 => lines.insert(i, lines[i]),
                    1 => {
                        lines.remove(i);
                    }
                    _ => {
                        let l = lines.remove(i);
                        let j = rng.random_range(0..=lines.len());
                        lines.insert(j, l);
                    }
                }
                b = lines.concat().into_bytes();
            }
            // random bytes inserted
            _ => {
                let mut chunk = vec![0u8; rng.random_range(1..=16)];
                rng.fill(&mut chunk[..]);
                b.splice(pos..pos, chunk);
            }
        }
    }
    b
}

// Structured mutations: the file parsed, one to three values changed, written
// back. The result is well-formed but wrong (a count that disagrees, a key of
// another type, a tensor with other dims), so it gets past the syntax checks.

fn odd_json(rng: &mut ChaCha8Rng) -> serde_json::Value {
    use serde_json::json;
    match rng.random_range(0..14) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(u64::MAX),
        3 => json!(i64::MIN),
        4 => json!(1e300),
        5 => json!(0.5),
        6 => json!(""),
        7 => json!("x".repeat(rng.random_range(1..5000))),
        8 => json!(null),
        9 => json!(true),
        10 => json!([]),
        11 => json!({}),
        12 => json!([0, "a", null]),
        _ => json!(1u64 << rng.random_range(0..64)),
    }
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A JSON pointer to a node of `v` reached by descending from the root into
/// random children, stopping at each level with probability 1/3.
fn random_pointer(rng: &mut ChaCha8Rng, v: &serde_json::Value) -> String {
    let mut p = String::new();
    let mut node = v;
    loop {
        let stop = !p.is_empty() && rng.random_range(0..3) == 0;
        let next = match node {
            serde_json::Value::Object(m) if !m.is_empty() && !stop => {
                let (k, child) = m.iter().nth(rng.random_range(0..m.len())).unwrap();
                Some((escape_pointer(k), child))
            }
            serde_json::Value::Array(a) if !a.is_empty() && !stop => {
                let i = rng.random_range(0..a.len());
                Some((i.to_string(), &a[i]))
            }
            _ => None,
        };
        match next {
            Some((k, child)) => {
                p = format!("{p}/{k}");
                node = child;
            }
            None => return p,
        }
    }
}

/// One to three structured changes of a JSON document.
fn mutate_json(rng: &mut ChaCha8Rng, base: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let mut v = base.clone();
    for _ in 0..rng.random_range(1..=3) {
        let p = random_pointer(rng, &v);
        match rng.random_range(0..6) {
            0 | 1 => {
                if let Some(n) = v.pointer_mut(&p) {
                    *n = odd_json(rng);
                }
            }
            // another node's value spliced in
            2 => {
                let q = random_pointer(rng, &v);
                if let Some(x) = v.pointer(&q).cloned() {
                    if let Some(n) = v.pointer_mut(&p) {
                        *n = x;
                    }
                }
            }
            // the node removed from its parent
            3 => {
                let Some((parent, key)) = p.rsplit_once('/') else {
                    continue;
                };
                let key = key.replace("~1", "/").replace("~0", "~");
                match v.pointer_mut(parent) {
                    Some(Value::Object(m)) => {
                        m.remove(&key);
                    }
                    Some(Value::Array(a)) => {
                        if let Ok(i) = key.parse::<usize>() {
                            if i < a.len() {
                                a.remove(i);
                            }
                        }
                    }
                    _ => {}
                }
            }
            // a container grown, shrunk or reordered
            4 => match v.pointer_mut(&p) {
                Some(Value::Array(a)) if !a.is_empty() => match rng.random_range(0..3) {
                    0 => {
                        let x = a[rng.random_range(0..a.len())].clone();
                        a.push(x);
                    }
                    1 => a.truncate(rng.random_range(0..a.len())),
                    _ => a.reverse(),
                },
                Some(Value::Object(m)) => {
                    m.insert("unexpected".into(), odd_json(rng));
                }
                _ => {}
            },
            // a number nudged
            _ => {
                if let Some(n) = v.pointer_mut(&p) {
                    if let Some(x) = n.as_i64() {
                        let d = [1, -1, 2, 1 << 20][rng.random_range(0..4)];
                        *n = serde_json::json!(x.saturating_add(d));
                    } else if let Some(x) = n.as_f64() {
                        *n = serde_json::json!(-x);
                    }
                }
            }
        }
    }
    v
}

fn odd_toml(rng: &mut ChaCha8Rng) -> toml::Value {
    use toml::Value;
    match rng.random_range(0..10) {
        0 => Value::Integer(0),
        1 => Value::Integer(-1),
        2 => Value::Integer(i64::MAX),
        3 => Value::Integer(1 << rng.random_range(0..63)),
        4 => Value::Float(f64::NAN),
        5 => Value::String(String::new()),
        6 => Value::String("../".repeat(rng.random_range(1..4)) + "x"),
        7 => Value::Boolean(true),
        8 => Value::Array(vec![Value::Integer(1)]),
        _ => Value::Table(Default::default()),
    }
}

/// One to three structured changes of a TOML document.
fn mutate_toml(rng: &mut ChaCha8Rng, base: &toml::Table) -> Vec<u8> {
    let mut t = base.clone();
    for _ in 0..rng.random_range(1..=3) {
        // a key at the top level or in a table below it
        let keys: Vec<String> = t.keys().cloned().collect();
        let k = &keys[rng.random_range(0..keys.len())];
        let table = match t.get_mut(k) {
            Some(toml::Value::Table(sub)) if !sub.is_empty() && rng.random() => sub,
            _ => &mut t,
        };
        let keys: Vec<String> = table.keys().cloned().collect();
        let k = keys[rng.random_range(0..keys.len())].clone();
        match rng.random_range(0..4) {
            0 => {
                table.remove(&k);
            }
            1 => {
                table.insert(format!("{k}_extra"), odd_toml(rng));
            }
            _ => {
                table.insert(k, odd_toml(rng));
            }
        }
    }
    toml::to_string(&t).unwrap_or_default().into_bytes()
}

/// An extreme value of the same type as `old` (arrays are homogeneous).
fn same_type(rng: &mut ChaCha8Rng, old: &GgufValue) -> GgufValue {
    let n = interesting(rng, 0);
    let f = [f64::NAN, f64::INFINITY, -1.0, 0.0, 1e30][rng.random_range(0..5)];
    match old {
        GgufValue::U8(_) => GgufValue::U8(n as u8),
        GgufValue::I8(_) => GgufValue::I8(n as i8),
        GgufValue::U16(_) => GgufValue::U16(n as u16),
        GgufValue::I16(_) => GgufValue::I16(n as i16),
        GgufValue::U32(_) => GgufValue::U32(n as u32),
        GgufValue::I32(_) => GgufValue::I32(n as i32),
        GgufValue::U64(_) => GgufValue::U64(n),
        GgufValue::I64(_) => GgufValue::I64(n as i64),
        GgufValue::F32(_) => GgufValue::F32(f as f32),
        GgufValue::F64(_) => GgufValue::F64(f),
        GgufValue::Bool(b) => GgufValue::Bool(!b),
        GgufValue::Str(s) => GgufValue::Str(match rng.random_range(0..4) {
            0 => String::new(),
            1 => s.replace(' ', ""),
            2 => format!("{s} {s}"),
            _ => s.repeat(rng.random_range(2..50)),
        }),
        GgufValue::Array(a) => GgufValue::Array(a.iter().rev().cloned().collect()),
    }
}

fn odd_gguf_value(rng: &mut ChaCha8Rng, old: &GgufValue) -> GgufValue {
    let n = interesting(rng, 0);
    match old {
        // same element type, so the writer can write it
        GgufValue::Array(items) if !items.is_empty() && rng.random_range(0..3) > 0 => {
            let mut items = items.clone();
            let i = rng.random_range(0..items.len());
            match rng.random_range(0..4) {
                0 => items.truncate(i),
                1 => {
                    let x = items[i].clone();
                    items.extend(std::iter::repeat_n(x, rng.random_range(1..100)));
                }
                2 => {
                    let j = rng.random_range(0..items.len());
                    items.swap(i, j)
                }
                _ => items[i] = same_type(rng, &items[i]),
            }
            GgufValue::Array(items)
        }
        _ if rng.random() => same_type(rng, old),
        _ => match rng.random_range(0..9) {
            0 => GgufValue::U32(n as u32),
            1 => GgufValue::U64(n),
            2 => GgufValue::I32(-((n % 1000) as i32) - 1),
            3 => GgufValue::I64(n as i64),
            4 => GgufValue::F32([f32::NAN, f32::INFINITY, -1.0, 0.0, 1e30][rng.random_range(0..5)]),
            5 => GgufValue::Bool(rng.random()),
            6 => GgufValue::U8(n as u8),
            7 => GgufValue::Str(String::new()),
            _ => GgufValue::Array(vec![]),
        },
    }
}

/// One to three structured changes of a parsed GGUF file, written back:
/// metadata values of other values or types, keys dropped, tensors with other
/// dims, types or names, or dropped. Without `bytes` the tensors are written
/// without data (every offset 0): a header to parse against a longer file.
fn mutate_gguf_values(rng: &mut ChaCha8Rng, g: &Gguf, bytes: Option<&[u8]>) -> Vec<u8> {
    let mut kvs = g.metadata.clone();
    let mut tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)> = g
        .tensors
        .iter()
        .map(|t| {
            let data = bytes.map_or(vec![], |b| g.tensor_bytes(b, t).unwrap().to_vec());
            (t.name.clone(), t.dims.clone(), t.ggml_type, data)
        })
        .collect();
    for _ in 0..rng.random_range(1..=3) {
        if kvs.is_empty() || tensors.is_empty() {
            break;
        }
        let k = rng.random_range(0..kvs.len());
        let t = rng.random_range(0..tensors.len());
        match rng.random_range(0..8) {
            0..=2 => kvs[k].1 = odd_gguf_value(rng, &kvs[k].1),
            3 => {
                kvs.remove(k);
            }
            4 if !tensors[t].1.is_empty() => {
                let dims = &mut tensors[t].1;
                let d = rng.random_range(0..dims.len());
                dims[d] = match rng.random_range(0..5) {
                    0 => 0,
                    1 => dims[d] * 2,
                    2 => (dims[d] / 2).max(1),
                    3 => dims[d] + 32,
                    _ => 1,
                };
            }
            5 => {
                let dims = &mut tensors[t].1;
                match rng.random_range(0..3) {
                    0 => dims.reverse(),
                    1 => dims.push(1),
                    _ => {
                        dims.pop();
                    }
                }
            }
            6 => tensors[t].2 = GgmlType::from_id([0, 1, 2, 3, 8, 30, 12][rng.random_range(0..7)]),
            _ => match rng.random_range(0..3) {
                0 => {
                    tensors.remove(t);
                }
                1 => tensors[t].0 = tensors[t].0.replace("blk.0", "blk.9"),
                _ => tensors[t].0 = tensors[rng.random_range(0..tensors.len())].0.clone() + ".x",
            },
        }
    }
    let mut w = GgufWriter::new();
    for (k, v) in kvs {
        w.kv(&k, v);
    }
    for (name, dims, ty, data) in tensors {
        w.tensor(&name, &dims, ty, data);
    }
    w.finish()
}

/// The integer fields of a well-formed GGUF header, in groups, and the end of
/// its tensor infos (a test-side walk, independent of the reader under test).
fn gguf_fields(b: &[u8]) -> (Vec<Vec<Field>>, usize) {
    let u32_at = |p: usize| u32::from_le_bytes(b[p..p + 4].try_into().unwrap());
    let u64_at = |p: usize| u64::from_le_bytes(b[p..p + 8].try_into().unwrap()) as usize;
    let f = |at, width| Field { at, width };
    let (counts, mut keys, mut scalars, mut arrays, mut strings) = (
        vec![f(8, 8), f(16, 8), f(4, 4)],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    let (mut names, mut dims, mut types, mut offsets) = (vec![], vec![], vec![], vec![]);
    let n_tensors = u64_at(8);
    let n_kv = u64_at(16);
    let mut p = 24;
    fn value(
        b: &[u8],
        p: &mut usize,
        ty: u32,
        scalars: &mut Vec<Field>,
        arrays: &mut Vec<Field>,
        strings: &mut Vec<Field>,
    ) {
        let width = match ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            8 => {
                strings.push(Field { at: *p, width: 8 });
                let n = u64::from_le_bytes(b[*p..*p + 8].try_into().unwrap()) as usize;
                *p += 8 + n;
                return;
            }
            9 => {
                let ety = u32::from_le_bytes(b[*p..*p + 4].try_into().unwrap());
                arrays.push(Field { at: *p, width: 4 });
                arrays.push(Field {
                    at: *p + 4,
                    width: 8,
                });
                let n = u64::from_le_bytes(b[*p + 4..*p + 12].try_into().unwrap());
                *p += 12;
                for _ in 0..n {
                    value(b, p, ety, scalars, arrays, strings);
                }
                return;
            }
            _ => panic!("base file has value type {ty}"),
        };
        scalars.push(Field {
            at: *p,
            width: width.min(8),
        });
        *p += width;
    }
    for _ in 0..n_kv {
        keys.push(f(p, 8));
        p += 8 + u64_at(p);
        let ty = u32_at(p);
        keys.push(f(p, 4));
        p += 4;
        value(b, &mut p, ty, &mut scalars, &mut arrays, &mut strings);
    }
    for _ in 0..n_tensors {
        names.push(f(p, 8));
        p += 8 + u64_at(p);
        let nd = u32_at(p) as usize;
        dims.push(f(p, 4));
        p += 4;
        for _ in 0..nd {
            dims.push(f(p, 8));
            p += 8;
        }
        types.push(f(p, 4));
        offsets.push(f(p + 4, 8));
        p += 12;
    }
    let groups = vec![
        counts, keys, scalars, arrays, strings, names, dims, types, offsets,
    ];
    (groups, p)
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// A buffer as long as a real file, holding only its first bytes (the rest
/// zeros, never touched): a mutated header parsed against the real file size
/// without reading the whole file per case.
struct HeadOnly {
    head: Vec<u8>,
    len: usize,
    buf: Mutex<Vec<u8>>,
}

impl HeadOnly {
    fn read(path: &Path, head_len: usize) -> HeadOnly {
        use std::io::Read;
        let len = std::fs::metadata(path).unwrap().len() as usize;
        let mut head = vec![0u8; head_len.min(len)];
        std::fs::File::open(path)
            .unwrap()
            .read_exact(&mut head)
            .unwrap();
        let mut buf = vec![0u8; len];
        buf[..head.len()].copy_from_slice(&head);
        HeadOnly {
            head,
            len,
            buf: Mutex::new(buf),
        }
    }

    /// Runs `f` on the file with its header replaced by `mutated` and cut
    /// to `cut` bytes (when given); restores the header after.
    fn with<R>(&self, mutated: &[u8], cut: Option<usize>, f: impl FnOnce(&[u8]) -> R) -> R {
        let mut buf = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        let n = mutated.len().min(buf.len());
        buf[..n].copy_from_slice(&mutated[..n]);
        let end = cut.unwrap_or(buf.len()).min(buf.len());
        let r = f(&buf[..end]);
        let touched = n.max(self.head.len());
        buf[..self.head.len()].copy_from_slice(&self.head);
        buf[self.head.len()..touched].fill(0);
        r
    }
}

/// Whatever a parsed GGUF leads to in the importer short of writing files:
/// the checked configuration, the tokenizer and (for small files) every
/// tensor dequantised.
fn use_gguf(bytes: &[u8], dequantize: bool) -> &'static str {
    let Ok(g) = Gguf::parse(bytes) else {
        return "not a GGUF file";
    };
    let cfg = LlamaConfig::read(&g);
    let tok = llama::tokenizer_from_gguf(&g, Path::new("fuzz.gguf"));
    if dequantize && cfg.is_ok() {
        for t in &g.tensors {
            let _ = g.dequantize(bytes, t);
        }
    }
    match (cfg, tok) {
        (Ok(_), Ok(_)) => "ok",
        (Err(_), _) => "bad configuration",
        (_, Err(_)) => "bad tokenizer",
    }
}

fn outcome<T, E>(r: Result<T, E>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(_) => "error",
    }
}

// ---------------------------------------------------------------------------------------------
// GGUF
// ---------------------------------------------------------------------------------------------

/// The synthetic Llama GGUF (quantized and f32), parsed, with its fields.
type GgufBase = (Vec<u8>, Gguf, Shape);

fn synthetic_ggufs() -> Arc<Vec<GgufBase>> {
    Arc::new(
        [true, false]
            .map(|q| {
                let b = synth_llama::synthetic_gguf(q);
                let g = Gguf::parse(&b).unwrap();
                let (fields, _) = gguf_fields(&b);
                (
                    b,
                    g,
                    Shape {
                        fields,
                        text: false,
                    },
                )
            })
            .into(),
    )
}

/// A byte-level or a structured mutation of one of `bases`.
fn mutate_gguf(rng: &mut ChaCha8Rng, bases: &[GgufBase]) -> Vec<u8> {
    let (bytes, g, shape) = &bases[rng.random_range(0..bases.len())];
    match rng.random_range(0..3) {
        0 => mutate_gguf_values(rng, g, Some(bytes)),
        _ => mutate(rng, bytes, shape),
    }
}

#[test]
fn gguf_reader_on_the_synthetic_llama() {
    let bases = synthetic_ggufs();
    run_cases("gguf_reader_on_the_synthetic_llama", 6000, move |rng| {
        use_gguf(&mutate_gguf(rng, &bases), true)
    });
}

#[test]
fn gguf_import_of_the_synthetic_llama() {
    let bases = synthetic_ggufs();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run_cases("gguf_import_of_the_synthetic_llama", 600, move |rng| {
        let file = dir.join("m.gguf");
        write(&file, &mutate_gguf(rng, &bases));
        let ctx = [2, 16, 64, 4096][rng.random_range(0..4)];
        let out = dir.join("out");
        outcome(match rng.random_range(0..4) {
            0 => {
                llama::import_gguf_requantized(&file, &out, ctx, [2, 4, 8][rng.random_range(0..3)])
            }
            n => llama::import_gguf(&file, &out, ctx, n == 1),
        })
    });
}

#[test]
fn gguf_reader_on_the_smollm2_header() {
    let Some(path) = common::smollm2_gguf() else {
        return;
    };
    let probe = HeadOnly::read(&path, 8 << 20);
    let (fields, end) = gguf_fields(&probe.head);
    let data_offset = end.div_ceil(32) * 32;
    let file = Arc::new(HeadOnly::read(&path, data_offset));
    let parsed = file.with(&[], None, |b| Gguf::parse(b).unwrap());
    let shape = Shape {
        fields,
        text: false,
    };
    run_cases("gguf_reader_on_the_smollm2_header", 60, move |rng| {
        let mutated = match rng.random_range(0..3) {
            0 => mutate_gguf_values(rng, &parsed, None),
            _ => mutate(rng, &file.head, &shape),
        };
        let cut = rng.random_bool(0.15).then(|| rng.random_range(0..file.len));
        file.with(&mutated, cut, |bytes| use_gguf(bytes, false))
    });
}

// ---------------------------------------------------------------------------------------------
// safetensors (BERT import)
// ---------------------------------------------------------------------------------------------

/// The header-length field and, as text, the JSON header of a safetensors file.
fn safetensors_shape() -> Shape {
    Shape {
        fields: vec![vec![Field { at: 0, width: 8 }]],
        text: true,
    }
}

/// A safetensors file with its JSON header changed structurally (padded with
/// spaces to its old length when shorter, so the data stays in place).
fn mutate_safetensors_header(rng: &mut ChaCha8Rng, bytes: &[u8]) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut h = serde_json::to_vec(&mutate_json(rng, &header)).unwrap();
    if h.len() < n {
        h.resize(n, b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[(8 + n).min(bytes.len())..]);
    out
}

#[test]
fn bert_import_of_the_synthetic_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    synth_bert::write_checkpoint(tmp.path(), &synth_bert::tensors());
    let read = |f: &str| std::fs::read(tmp.path().join(f)).unwrap();
    let files = Arc::new([
        read("model.safetensors"),
        read("config.json"),
        read("tokenizer.json"),
    ]);
    let config: Arc<serde_json::Value> = Arc::new(serde_json::from_slice(&files[1]).unwrap());
    let text = Shape {
        fields: vec![],
        text: true,
    };
    let dir = tmp.path().join("cases");
    let ckpt = dir.join("ckpt");
    std::fs::create_dir_all(&ckpt).unwrap();
    run_cases(
        "bert_import_of_the_synthetic_checkpoint",
        1000,
        move |rng| {
            let (mut st, mut cfg) = (files[0].clone(), files[1].clone());
            match rng.random_range(0..10) {
                0..=3 => st = mutate(rng, &st, &safetensors_shape()),
                4..=6 => st = mutate_safetensors_header(rng, &st),
                7 => cfg = mutate(rng, &cfg, &text),
                _ => cfg = serde_json::to_vec(&mutate_json(rng, &config)).unwrap(),
            }
            write(&ckpt.join("model.safetensors"), &st);
            write(&ckpt.join("config.json"), &cfg);
            write(&ckpt.join("tokenizer.json"), &files[2]);
            outcome(bert::import_bert(&ckpt, &dir.join("out")))
        },
    );
}

#[test]
fn safetensors_reader_on_the_minilm_header() {
    let Some(dir) = common::shared_model("all-minilm-l6-v2") else {
        return;
    };
    let path = dir.join("model.safetensors");
    let probe = HeadOnly::read(&path, 8);
    let n = u64::from_le_bytes(probe.head[..8].try_into().unwrap()) as usize;
    let file = Arc::new(HeadOnly::read(&path, 8 + n));
    let cfg: BertConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    run_cases(
        "safetensors_reader_on_the_minilm_header",
        1500,
        move |rng| {
            let mutated = match rng.random_range(0..2) {
                0 => mutate_safetensors_header(rng, &file.head),
                _ => mutate(rng, &file.head, &safetensors_shape()),
            };
            let cut = rng.random_bool(0.1).then(|| rng.random_range(0..file.len));
            file.with(
                &mutated,
                cut,
                |bytes| match safetensors::SafeTensors::deserialize(bytes) {
                    Ok(st) => outcome(cfg.check(&st)),
                    Err(_) => "not a safetensors file",
                },
            )
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Manifest, tokenizer, records
// ---------------------------------------------------------------------------------------------

/// Model directories made by the importers from the synthetic checkpoints, and the tiny model.
fn model_dirs(tmp: &Path) -> Vec<PathBuf> {
    let gguf = tmp.join("synthetic.gguf");
    write(&gguf, &synth_llama::synthetic_gguf(true));
    let llama_dir = tmp.join("llama");
    llama::import_gguf(&gguf, &llama_dir, 64, false).unwrap();
    let ckpt = tmp.join("bert-ckpt");
    synth_bert::write_checkpoint(&ckpt, &synth_bert::tensors());
    let bert_dir = tmp.join("bert");
    bert::import_bert(&ckpt, &bert_dir).unwrap();
    let tiny_dir = edgebench::model::tiny::materialize(&tmp.join("tiny")).unwrap();
    vec![llama_dir, bert_dir, tiny_dir]
}

#[test]
fn model_manifest_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let bases: Arc<Vec<(Vec<u8>, toml::Table)>> = Arc::new(
        model_dirs(tmp.path())
            .iter()
            .map(|d| {
                // the same text every run: the temporary folder out of the provenance
                let text = std::fs::read_to_string(d.join("edgebench-model.toml")).unwrap();
                let text = text.replace(tmp.path().to_str().unwrap(), "/models");
                let t = toml::from_str(&text).unwrap();
                (text.into_bytes(), t)
            })
            .collect(),
    );
    let text = Shape {
        fields: vec![],
        text: true,
    };
    let dir = tmp.path().join("cases");
    std::fs::create_dir_all(&dir).unwrap();
    run_cases("model_manifest_reader", 2000, move |rng| {
        let (bytes, table) = &bases[rng.random_range(0..bases.len())];
        let mutated = match rng.random_range(0..2) {
            0 => mutate_toml(rng, table),
            _ => mutate(rng, bytes, &text),
        };
        write(&dir.join("edgebench-model.toml"), &mutated);
        outcome(ModelManifest::load(&dir))
    });
}

#[test]
fn tokenizer_loader() {
    let tmp = tempfile::tempdir().unwrap();
    let mut small: Vec<Vec<u8>> = model_dirs(tmp.path())
        .iter()
        .map(|d| std::fs::read(d.join("tokenizer.json")).unwrap())
        .collect();
    let byte = tmp.path().join("byte.json");
    write_byte_tokenizer(&byte).unwrap();
    small.push(std::fs::read(&byte).unwrap());
    let real =
        common::shared_model("all-minilm-l6-v2/tokenizer.json").map(|p| std::fs::read(p).unwrap());
    let parse = |b: &Vec<u8>| (b.clone(), serde_json::from_slice(b).unwrap());
    let small: Arc<Vec<(Vec<u8>, serde_json::Value)>> = Arc::new(small.iter().map(parse).collect());
    let real = Arc::new(real.as_ref().map(parse));
    let text = Shape {
        fields: vec![],
        text: true,
    };
    let path = tmp.path().join("tokenizer.json");
    run_cases("tokenizer_loader", 1000, move |rng| {
        // one case in twenty mutates the real 466 kB MiniLM tokenizer, when present
        let (bytes, json) = match real.as_ref() {
            Some(r) if rng.random_bool(0.05) => r,
            _ => &small[rng.random_range(0..small.len())],
        };
        let mutated = match rng.random_range(0..2) {
            0 => serde_json::to_vec(&mutate_json(rng, json)).unwrap(),
            _ => mutate(rng, bytes, &text),
        };
        write(&path, &mutated);
        let Ok(tok) = Tok::load(&path) else {
            return "error";
        };
        let sample = "The cat sat on the mat, 1234 times: naïve café ab [CLS] <|endoftext|>";
        if let Ok(ids) = tok.encode(sample) {
            let _ = tok.decode(&ids);
        }
        let _ = tok.encode_with_specials(sample);
        let _ = tok.encode_with_char_offsets(sample);
        "ok"
    });
}

#[test]
fn run_records_reader() {
    let mut lines = Vec::new();
    for suite in [
        "commonsenseqa",
        "scierc-ner",
        "personachat-ppl",
        "xtreme-tatoeba",
        "finqa",
        "lexglue-eurlex",
    ] {
        let p = common::repo()
            .join("reports/baselines/default/records")
            .join(format!("{suite}.jsonl"));
        let text = std::fs::read_to_string(&p).unwrap();
        lines.extend(text.lines().take(2).map(String::from));
    }
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let base = Arc::new((lines, parsed));
    let text = Shape {
        fields: vec![],
        text: true,
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = RunDir::new(tmp.path(), "fuzz").unwrap();
    std::fs::create_dir_all(run.root.join("records")).unwrap();
    run_cases("run_records_reader", 1500, move |rng| {
        let (lines, parsed) = base.as_ref();
        let mut lines = lines.clone();
        let mutated = match rng.random_range(0..2) {
            0 => {
                let i = rng.random_range(0..lines.len());
                lines[i] = mutate_json(rng, &parsed[i]).to_string();
                (lines.join("\n") + "\n").into_bytes()
            }
            _ => mutate(rng, (lines.join("\n") + "\n").as_bytes(), &text),
        };
        write(&run.records_path("s"), &mutated);
        outcome(run.load_records("s"))
    });
}

// ---------------------------------------------------------------------------------------------
// Regressions: inputs the fuzzer found, each fixed
// ---------------------------------------------------------------------------------------------

/// The byte-level tokenizer's JSON with `section` replaced by `raw` (written as is).
fn byte_tokenizer_with(section: &str, raw: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("t.json");
    write_byte_tokenizer(&path).unwrap();
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v[section] = serde_json::json!("@@RAW@@");
    v.to_string().replace("\"@@RAW@@\"", raw)
}

#[test]
fn a_syntax_error_inside_the_decoder_is_an_error_not_a_panic() {
    // tokenizers `expect`s its decoder sub-parser to succeed
    let text = byte_tokenizer_with("decoder", r#"{"type":"ByteLevel","add_prefix_space":tru}"#);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tokenizer.json");
    write(&path, text.as_bytes());
    let e = Tok::load(&path).err().expect("must fail").to_string();
    assert!(
        e.contains("tokenizer.json") && e.contains("expected ident at line 1 column"),
        "{e}"
    );
}

#[test]
fn a_precompiled_normalizer_with_a_bad_charsmap_is_an_error_not_a_panic() {
    // well-formed JSON, but tokenizers `expect`s the charsmap to decode
    let text = byte_tokenizer_with(
        "normalizer",
        r#"{"type":"Precompiled","precompiled_charsmap":"!!"}"#,
    );
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tokenizer.json");
    write(&path, text.as_bytes());
    let e = Tok::load(&path).err().expect("must fail").to_string();
    assert!(
        e.contains("tokenizer.json") && e.contains("normalizer: Precompiled: Invalid byte 33"),
        "{e}"
    );
    // a charsmap that decodes (an empty trie) loads
    let text = byte_tokenizer_with(
        "normalizer",
        r#"{"type":"Precompiled","precompiled_charsmap":"AAAAAA=="}"#,
    );
    write(&path, text.as_bytes());
    assert!(Tok::load(&path).is_ok());
}

/// The synthetic BERT tokenizer (a `TemplateProcessing` post-processor) changed by `edit`.
fn bert_tokenizer_with(edit: impl Fn(&mut serde_json::Value)) -> Result<Tok, String> {
    let tmp = tempfile::tempdir().unwrap();
    synth_bert::write_checkpoint(tmp.path(), &synth_bert::tensors());
    let path = tmp.path().join("tokenizer.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    write(&path, v.to_string().as_bytes());
    Tok::load(&path).map_err(|e| e.to_string())
}

#[test]
fn a_template_naming_an_undefined_special_token_is_refused_at_load() {
    // tokenizers read it, then panicked ("no entry found for key") encoding with specials
    let tok = bert_tokenizer_with(|_| {}).unwrap();
    assert_eq!(
        tok.encode_with_specials("the cat").unwrap(),
        vec![2, 4, 5, 3]
    );
    let e = bert_tokenizer_with(|v| {
        v["post_processor"]["special_tokens"]
            .as_object_mut()
            .unwrap()
            .remove("[SEP]");
    })
    .err()
    .expect("must fail");
    assert!(
        e.contains(
            "template `single` names special token `[SEP]`, which `special_tokens` does not define"
        ),
        "{e}"
    );
    let e = bert_tokenizer_with(|v| {
        v["post_processor"]["special_tokens"]["[CLS]"]["ids"] = serde_json::json!([2, 2]);
    })
    .err()
    .expect("must fail");
    assert!(
        e.contains("special token `[CLS]` has Some(2) ids but Some(1) tokens"),
        "{e}"
    );
    // the single-sequence template indexed a second sequence that is never there
    let e = bert_tokenizer_with(|v| {
        v["post_processor"]["single"][1] =
            serde_json::json!({"Sequence": {"id": "B", "type_id": 0}});
    })
    .err()
    .expect("must fail");
    assert!(
        e.contains("template `single` uses a second sequence ($B)"),
        "{e}"
    );
}

#[test]
fn a_template_is_checked_whatever_its_type_says() {
    // tokenizers does not check the tag of an untagged post-processor: a
    // template with another "type" is read as a template all the same
    let e = bert_tokenizer_with(|v| {
        v["post_processor"]["type"] = serde_json::json!("TemplateProcessinG");
        v["post_processor"]["special_tokens"]
            .as_object_mut()
            .unwrap()
            .remove("[CLS]");
    })
    .err()
    .expect("must fail");
    assert!(e.contains("names special token `[CLS]`"), "{e}");
}

#[test]
fn a_merge_shorter_than_the_subword_prefix_is_an_error_not_a_panic() {
    // tokenizers cut "##" off the merge's second token "b" by length
    let text = r###"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
        "normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,
        "model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":"##",
        "end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,
        "vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}}"###;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tokenizer.json");
    write(&path, text.as_bytes());
    let e = Tok::load(&path).err().expect("must fail").to_string();
    assert!(
        e.contains(
            "merge 0 (\"a b\"): `b` does not start with a whole continuing_subword_prefix `##`"
        ),
        "{e}"
    );
    // the same model with the merge's second token long enough loads
    let ok = text.replace(
        r###""ab":2},"merges":["a b"]"###,
        r###""ab":2,"##b":3},"merges":["a ##b"]"###,
    );
    write(&path, ok.as_bytes());
    assert!(Tok::load(&path).is_ok());
}
