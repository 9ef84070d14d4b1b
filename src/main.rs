//! The `postern` binary: parse the command line, run it, exit with its code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    postern::cli::main(postern::cli::Cli::parse())
}
