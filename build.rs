//! Records the git commit EdgeBench was built from (for run manifests) and
//! the target triple (for the tests, which launch the binary through the
//! target's cargo runner when one is set).
fn main() {
    if let Ok(target) = std::env::var("TARGET") {
        println!("cargo:rustc-env=EDGEBENCH_TARGET={target}");
    }
    let hash = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(h) = hash {
        let dirty = std::process::Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=no"])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false);
        println!(
            "cargo:rustc-env=EDGEBENCH_GIT_HASH={h}{}",
            if dirty { "-dirty" } else { "" }
        );
    }
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
}
