//! The `edgebench` command line. Exit codes: 0 ok, 1 failure of what was
//! asked, 2 bad input.

mod cli;

use clap::Parser;

#[global_allocator]
static ALLOC: edgebench::alloc::HugePageAlloc = edgebench::alloc::HugePageAlloc;

fn main() -> std::process::ExitCode {
    // A closed pipe (`edgebench suites list | head`) ends the process quietly,
    // as in other Unix tools, instead of panicking inside println!.
    #[cfg(unix)]
    // SAFETY: called first in main, before any thread starts; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    keep_freed_memory();
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", message(&e.error));
            std::process::ExitCode::from(e.code)
        }
    }
}

/// Tells glibc's malloc to keep freed memory for reuse instead of giving it
/// back to the kernel. By default a block above 128 KiB (rising with use, up
/// to 32 MiB) is its own `mmap` and every free `munmap`s it, so each forward
/// pass page-faults its large tensors in afresh: a 128-token prompt's 25 MB
/// of logits alone is 6 000 faults, and the faults were 10-13 % of a
/// SmolLM2 prefill here. Blocks up to 32 MiB (glibc's ceiling for this
/// setting) now come from the heap, and the heap is trimmed only above
/// 1 GiB free. Peak RSS is unchanged: freed memory is reused, not added to.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's parameters; called in main
    // before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// The error and its causes, `: `-separated, leaving out a cause that the
/// message so far already ends with (our error types print their source).
fn message(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.ends_with(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}
