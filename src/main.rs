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
            eprintln!("error: {:#}", e.error);
            std::process::ExitCode::from(e.code)
        }
    }
}
