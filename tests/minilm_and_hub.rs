//! all-MiniLM-L6-v2 imported from safetensors and run by tract (when
//! ../shared/models exists), and `hf:` resolution from an offline cache.

mod common;

use edgebench::model::{self, bert, hub, tiny};
use std::path::PathBuf;

fn minilm_dir() -> Option<PathBuf> {
    let p = common::repo().join("../shared/models/all-minilm-l6-v2");
    if p.join("model.safetensors").is_file() {
        Some(p)
    } else {
        eprintln!("skipping: {} not found", p.display());
        None
    }
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn minilm_matches_sentence_transformers_reference_similarities() {
    let Some(src) = minilm_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("minilm");
    let m = bert::import_bert(&src, &out).unwrap();
    assert_eq!(m.architecture, "encoder");
    let mut enc = model::load(out.to_str().unwrap(), tmp.path(), &common::runtime()).unwrap();
    assert!(enc.info().capabilities.embed && !enc.info().capabilities.loglikelihood);
    let texts: Vec<String> = [
        "The weather is lovely today.",
        "It's so sunny outside!",
        "He drove to the stadium.",
    ]
    .map(String::from)
    .to_vec();
    let e = enc.embed(&texts).unwrap();
    // sbert.net quick-start values (sentence-transformers, fp32)
    assert!(
        (cos(&e[0], &e[1]) - 0.6660).abs() < 2e-3,
        "{}",
        cos(&e[0], &e[1])
    );
    assert!(
        (cos(&e[0], &e[2]) - 0.1046).abs() < 2e-3,
        "{}",
        cos(&e[0], &e[2])
    );
    assert!(
        (cos(&e[1], &e[2]) - 0.1411).abs() < 2e-3,
        "{}",
        cos(&e[1], &e[2])
    );
    let para = enc
        .embed(&[
            "A man is playing a guitar.".into(),
            "A man plays the guitar.".into(),
        ])
        .unwrap();
    assert!(cos(&para[0], &para[1]) > 0.8);
    // batching pads to the longest sentence and must not change an embedding
    let alone = enc.embed(&texts[2..3]).unwrap();
    let d = alone[0]
        .iter()
        .zip(&e[2])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, common::worse);
    assert!(d < 1e-5, "batched vs alone differ by {d}");
}

#[test]
fn a_wrong_tokenizer_is_refused() {
    let Some(src) = minilm_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("ckpt");
    std::fs::create_dir_all(&fake).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::os::unix::fs::symlink(src.join(f), fake.join(f)).unwrap();
    }
    edgebench::model::tokenizer::write_byte_tokenizer(&fake.join("tokenizer.json")).unwrap();
    let err = bert::import_bert(&fake, &tmp.path().join("out")).expect_err("must refuse");
    assert!(err.to_string().contains("wrong tokenizer"), "{err}");
}

#[test]
fn hf_models_resolve_offline_from_a_local_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let repo_dir = cache.join("models--edgebench--tiny");
    let rev = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::write(repo_dir.join("refs/main"), rev).unwrap();
    tiny::materialize(&repo_dir.join("snapshots").join(rev)).unwrap();
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let dir = hub::resolve("hf:edgebench/tiny", Some(&cache), tmp.path()).unwrap();
    assert!(dir.ends_with(rev));
    let by_rev = hub::resolve(
        &format!("hf:edgebench/tiny@{rev}"),
        Some(&cache),
        tmp.path(),
    )
    .unwrap();
    assert_eq!(dir, by_rev);
    let mut m = model::load(dir.to_str().unwrap(), tmp.path(), &common::runtime()).unwrap();
    assert!(m.rolling_loglikelihood("hello world").unwrap().tokens > 0);
    let missing =
        hub::resolve("hf:nobody/nothing", Some(&cache), tmp.path()).expect_err("not cached");
    assert!(missing.to_string().contains("HF_HUB_OFFLINE"), "{missing}");
}

/// Lays `src`'s files out as revision `rev` of `owner/name` in the Hugging Face cache `cache`
/// (refs/main naming the snapshot, as the hub's cache does).
fn cache_repo(cache: &std::path::Path, id: &str, rev: &str, src: &std::path::Path) {
    let repo_dir = cache.join(format!("models--{}", id.replace('/', "--")));
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::write(repo_dir.join("refs/main"), rev).unwrap();
    let snap = repo_dir.join("snapshots").join(rev);
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    };
    if src.is_file() {
        copy(src, &snap.join(src.file_name().unwrap()));
        return;
    }
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            copy(&p, &snap.join(p.file_name().unwrap()));
        } else {
            for f in std::fs::read_dir(&p).unwrap() {
                let f = f.unwrap().path();
                copy(
                    &f,
                    &snap
                        .join(p.file_name().unwrap())
                        .join(f.file_name().unwrap()),
                );
            }
        }
    }
}

/// `hf:` resolves every format `import` reads, offline from the cache: a sharded decoder
/// checkpoint and a MobileBERT folder (imported as `import hf` does), an optimum export (used
/// as it is) and one GGUF file of a repository (`:file.gguf`, imported as `import gguf` does).
#[test]
fn hf_references_resolve_checkpoints_exports_and_gguf_files() {
    let fixtures = common::repo().join("tests/fixtures/reference-models");
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let rev = "89abcdef0123456789abcdef0123456789abcdef";
    cache_repo(
        &cache,
        "tiny/llama3",
        rev,
        &fixtures.join("decoders/llama3-tied"),
    );
    cache_repo(
        &cache,
        "tiny/mobilebert",
        rev,
        &fixtures.join("encoders/mobilebert-nonorm"),
    );
    cache_repo(
        &cache,
        "tiny/llama-onnx",
        rev,
        &fixtures.join("onnx/llama-past"),
    );
    cache_repo(
        &cache,
        "tiny/gguf",
        rev,
        &fixtures.join("decoders/llama-gqa.gguf"),
    );
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let work = tmp.path().join("work");
    let same_graph = |spec: &str, import: &[&str]| {
        let dir = hub::resolve(spec, Some(&cache), &work).unwrap();
        let out = tmp.path().join(spec.replace(['/', ':', '.'], "_"));
        let mut args = import.to_vec();
        args.extend(["--out", out.to_str().unwrap()]);
        let o = common::edgebench(&common::repo(), &args);
        assert!(o.status.success(), "{}", common::text(&o));
        assert!(
            std::fs::read(dir.join("model.onnx")).unwrap()
                == std::fs::read(out.join("model.onnx")).unwrap(),
            "{spec}: the graph differs from `edgebench {}`",
            import.join(" ")
        );
        dir
    };
    let fx = |rel: &str| fixtures.join(rel).to_str().unwrap().to_string();
    let llama3 = fx("decoders/llama3-tied");
    let dir = same_graph("hf:tiny/llama3", &["import", "hf", &llama3]);
    assert!(dir.starts_with(&work));
    let mut m = model::load(dir.to_str().unwrap(), tmp.path(), &common::runtime()).unwrap();
    assert!(m.rolling_loglikelihood("hello world").unwrap().tokens > 0);
    // `import hf` takes the same reference, from the cache HF_HOME names
    let by_ref = tmp.path().join("by-ref");
    let o = common::edgebench_command()
        .args([
            "import",
            "hf",
            "hf:tiny/llama3",
            "--out",
            by_ref.to_str().unwrap(),
        ])
        .env("HF_HOME", tmp.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::text(&o));
    assert!(
        std::fs::read(by_ref.join("model.onnx")).unwrap()
            == std::fs::read(dir.join("model.onnx")).unwrap()
    );
    let mobilebert = fx("encoders/mobilebert-nonorm");
    same_graph("hf:tiny/mobilebert", &["import", "hf", &mobilebert]);
    let gguf = fx("decoders/llama-gqa.gguf");
    same_graph("hf:tiny/gguf:llama-gqa.gguf", &["import", "gguf", &gguf]);
    // an optimum export is the snapshot itself, loaded as it is
    let onnx = hub::resolve(&format!("hf:tiny/llama-onnx@{rev}"), Some(&cache), &work).unwrap();
    assert!(onnx.ends_with(rev));
    let mut m = model::load(onnx.to_str().unwrap(), tmp.path(), &common::runtime()).unwrap();
    assert!(m.rolling_loglikelihood("hello world").unwrap().tokens > 0);
    // a repository without any of them names what it looked for
    cache_repo(
        &cache,
        "tiny/empty",
        rev,
        &fixtures.join("decoders/tokenizer.json"),
    );
    let e = hub::resolve("hf:tiny/empty", Some(&cache), &work).expect_err("nothing to load");
    for needle in ["optimum", "config.json", "model.safetensors"] {
        assert!(e.to_string().contains(needle), "{e}");
    }
}
