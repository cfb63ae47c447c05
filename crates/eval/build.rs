//! Compiles the repository's `suites/*.toml` into the crate as the built-in
//! suite table, so an installed binary has them without the source tree.
use std::io::Write;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let dir = manifest.join("../../suites");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("builtin_suites.rs");
    let mut f = std::fs::File::create(&out).expect("OUT_DIR is writable");
    writeln!(
        f,
        "/// (file name, text) of every built-in suite, sorted by name."
    )
    .unwrap();
    writeln!(f, "pub const BUILTIN: &[(&str, &str)] = &[").unwrap();
    for p in &files {
        let name = p.file_name().expect("a file").to_string_lossy();
        let abs = p.canonicalize().expect("listed file exists");
        writeln!(
            f,
            "    ({name:?}, include_str!({:?})),",
            abs.display().to_string()
        )
        .unwrap();
    }
    writeln!(f, "];").unwrap();
}
