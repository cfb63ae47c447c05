//! The `edgebench` command line. Exit codes: 0 ok, 1 failure of what was
//! asked, 2 bad input.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // A closed pipe (`edgebench suites list | head`) ends the process quietly,
    // as in other Unix tools, instead of panicking inside println!.
    #[cfg(unix)]
    // SAFETY: called first in main, before any thread starts; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", message(&e.error));
            std::process::ExitCode::from(e.code)
        }
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
