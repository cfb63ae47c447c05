//! `edgebench quantize`: rewrites a llama GGUF file at another quantization.

use super::{bad_input, failed, Failure};
use anyhow::anyhow;
use clap::Args;
use edgebench::model::gguf::requant::{requantize, Target};
use edgebench::model::gguf::Gguf;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// The source .gguf file (any tensor types EdgeBench reads).
    pub file: PathBuf,
    /// Target: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, or llama.cpp's mixes
    /// Q4_K_M, Q5_K_M (K-quant matrices whose rows are not a multiple of 256 fall back to
    /// Q4_0 / Q5_0 / Q5_1 / Q8_0).
    #[arg(long = "type", value_parser = parse_target)]
    pub target: Target,
    /// The .gguf file to write (through a temporary file, renamed when complete).
    #[arg(long)]
    pub out: PathBuf,
}

fn parse_target(s: &str) -> Result<Target, String> {
    Target::parse(s).ok_or_else(|| format!("`{s}` is not one of {}", Target::NAMES.join(", ")))
}

pub fn quantize(a: QuantizeArgs) -> Result<(), Failure> {
    let t = std::time::Instant::now();
    let bytes = std::fs::read(&a.file)
        .map_err(|e| bad_input(anyhow!("{}: cannot read: {e}", a.file.display())))?;
    let g = Gguf::parse(&bytes)
        .map_err(|e| bad_input(anyhow!("{}: not a valid GGUF file: {e}", a.file.display())))?;
    let (out, report) = requantize(&g, &bytes, a.target)
        .map_err(|e| bad_input(anyhow!("{}: {e}", a.file.display())))?;
    let name = a
        .out
        .file_name()
        .ok_or_else(|| bad_input(anyhow!("--out {}: not a file name", a.out.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = a.out.with_file_name(tmp_name);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &a.out)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(failed(anyhow!("{}: cannot write: {e}", a.out.display())));
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for r in &report {
        let name = r.to.name();
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => counts.push((name, 1)),
        }
    }
    let counts: Vec<String> = counts.iter().map(|(n, c)| format!("{c} {n}")).collect();
    println!(
        "wrote {} ({} tensors: {}; {:.1} MB) in {:.1}s",
        a.out.display(),
        report.len(),
        counts.join(", "),
        out.len() as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
