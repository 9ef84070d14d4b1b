//! The `postern` binary: parse the command line, run it, report a failure, exit with
//! its code (a closed standard output is no failure: see `cli::report`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match postern::cli::run(postern::cli::Cli::parse()) {
        Ok(code) => code,
        Err(failure) => postern::cli::report(&failure),
    }
}
