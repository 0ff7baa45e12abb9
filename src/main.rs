//! `aptc`: the command-line face of the .apt toolchain. It parses arguments, calls the
//! compiler library and prints; it holds no policy logic of its own.

mod cli;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    restore_default_sigpipe();
    let args = cli::Cli::parse();
    cli::init_logging();
    match cli::run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", cli::error_message(&error));
            ExitCode::from(cli::exit_code_of(&error))
        }
    }
}

/// Rust ignores SIGPIPE, so `aptc check | head` would panic on the closed pipe; a command-line tool
/// should instead end quietly, as `cat` does.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
