//! `aptc`: the command-line face of the .apt toolchain. It parses arguments, calls the
//! compiler library and prints; it holds no policy logic of its own.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging();
    match cli::run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(cli::EXIT_USAGE)
        }
    }
}
