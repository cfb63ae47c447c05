//! The `edgebench` command line. Exit codes: 0 ok, 1 failure of what was
//! asked, 2 bad input.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {:#}", e.error);
            std::process::ExitCode::from(e.code)
        }
    }
}
