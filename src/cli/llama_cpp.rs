//! `bench model --llama-bench`: runs llama.cpp's `llama-bench` on the GGUF
//! file a model was imported from, in the same run as EdgeBench's own
//! measurement, so the speed targets are ratios measured on one host with
//! one file and one thread count.

use anyhow::{bail, Context};
use std::path::Path;
use std::process::Command;

/// llama-bench's figures for one model, same prompt length and decode depth as ours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LlamaCpp {
    /// Prompt processing of `prompt` tokens from an empty context.
    pub prefill_tokens_per_s: f64,
    /// Mean time per generated token, `decode` tokens after a `prompt`-token context.
    pub decode_ms: f64,
}

/// Runs `bin` twice (prefill at depth 0, then decode at depth `prompt`) and
/// reads its JSON lines.
pub fn run(
    bin: &Path,
    gguf: &Path,
    threads: usize,
    prompt: usize,
    decode: usize,
    repeats: usize,
) -> anyhow::Result<LlamaCpp> {
    let call = |p: usize, n: usize, depth: usize| -> anyhow::Result<f64> {
        let out = Command::new(bin)
            .arg("-m")
            .arg(gguf)
            .args(["-t", &threads.to_string()])
            .args(["-p", &p.to_string(), "-n", &n.to_string()])
            .args(["-d", &depth.to_string(), "-r", &repeats.max(1).to_string()])
            .args(["-o", "jsonl"])
            .output()
            .with_context(|| {
                format!(
                    "cannot run llama-bench `{}`: build llama.cpp's llama-bench target and pass its path, or leave out --llama-bench",
                    bin.display()
                )
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(5).collect();
            bail!(
                "llama-bench `{}` failed on {} ({}): {}",
                bin.display(),
                gguf.display(),
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        }
        avg_ns(&stdout, p, n).with_context(|| {
            format!(
                "llama-bench `{}` printed no result for {p} prompt / {n} generated tokens (is it llama.cpp's llama-bench with -o jsonl?)",
                bin.display()
            )
        })
    };
    let prefill_ns = call(prompt, 0, 0)?;
    let decode_ns = call(0, decode, prompt)?;
    Ok(LlamaCpp {
        prefill_tokens_per_s: prompt as f64 / (prefill_ns / 1e9),
        decode_ms: decode_ns / 1e6 / decode as f64,
    })
}

/// `avg_ns` of the JSON line with `n_prompt` and `n_gen`.
pub fn avg_ns(jsonl: &str, n_prompt: usize, n_gen: usize) -> Option<f64> {
    jsonl
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["n_prompt"].as_u64() == Some(n_prompt as u64)
                && v["n_gen"].as_u64() == Some(n_gen as u64)
        })
        .and_then(|v| v["avg_ns"].as_f64())
}

/// Checks that `gguf` is the file the model was imported from, when its
/// provenance records a sha256.
pub fn check_source(gguf: &Path, provenance: &str) -> anyhow::Result<()> {
    let Some(want) = provenance
        .split("sha256 ")
        .nth(1)
        .map(|s| {
            s.chars()
                .take_while(char::is_ascii_hexdigit)
                .collect::<String>()
        })
        .filter(|s| s.len() == 64)
    else {
        return Ok(());
    };
    let got = edgebench::record::sha256_file(gguf)
        .with_context(|| format!("cannot read --gguf {}", gguf.display()))?;
    if got != want {
        bail!(
            "--gguf {} (sha256 {got}) is not the file this model was imported from (sha256 {want}): the comparison would not be on the same weights",
            gguf.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // two lines as llama-bench b7000-era prints them with -o jsonl (fields cut)
    const OUT: &str = r#"{"build_commit": "unknown", "model_size": 96576768, "n_threads": 1, "n_prompt": 128, "n_gen": 0, "n_depth": 0, "avg_ns": 947602636, "stddev_ns": 39988439, "avg_ts": 135.2}
{"build_commit": "unknown", "model_size": 96576768, "n_threads": 1, "n_prompt": 0, "n_gen": 32, "n_depth": 128, "avg_ns": 665067573, "stddev_ns": 9481221, "avg_ts": 48.1}
"#;

    #[test]
    fn reads_the_line_of_each_test() {
        assert_eq!(avg_ns(OUT, 128, 0), Some(947602636.0));
        assert_eq!(avg_ns(OUT, 0, 32), Some(665067573.0));
        assert_eq!(avg_ns(OUT, 64, 0), None);
        assert_eq!(avg_ns("| model | size |\n", 128, 0), None);
    }

    #[test]
    fn a_missing_binary_is_named() {
        let err = run(
            Path::new("/nonexistent/llama-bench"),
            Path::new("x.gguf"),
            1,
            8,
            4,
            1,
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("/nonexistent/llama-bench") && msg.contains("llama-bench target"),
            "{msg}"
        );
    }

    #[test]
    fn another_gguf_than_the_imported_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("other.gguf");
        std::fs::write(&f, b"GGUF").unwrap();
        let prov = format!(
            "imported from a.gguf (sha256 {}) by edgebench import gguf",
            "ab".repeat(32)
        );
        let msg = format!("{:#}", check_source(&f, &prov).unwrap_err());
        assert!(
            msg.contains("not the file this model was imported from"),
            "{msg}"
        );
        // no recorded hash: nothing to check
        check_source(&f, "built by hand").unwrap();
        let same = format!("(sha256 {})", edgebench::record::sha256_file(&f).unwrap());
        check_source(&f, &same).unwrap();
    }
}
