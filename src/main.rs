//! `aptc`: the command-line face of the .apt toolchain. It parses arguments, calls the
//! compiler library and prints; it holds no policy logic of its own.

mod cli;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Run by the loader before mimalloc's own constructor (priority 101): see [`tune_allocator`].
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array.00100")]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

/// mimalloc's defaults keep the memory a phase frees committed for later (a purge delay of
/// 10 s, and arenas committed eagerly on Linux, whose purge only resets pages), so the front
/// end's peak stays in `plan`'s resident set while the resolver allocates beside it: 71 MiB at
/// 10,000 claims where the heap holds 42 (docs/performance.md). Purging at once, with arenas
/// committed on demand, returns freed pages to the system. The options must be set before
/// mimalloc reserves its first arena, which happens before `main`; `MIMALLOC_PURGE_DELAY` and
/// `MIMALLOC_ARENA_EAGER_COMMIT` in the environment still override them.
#[cfg(target_os = "linux")]
extern "C" fn tune_allocator() {
    // SAFETY: these only write mimalloc's option table, which it reads from its constructor on.
    unsafe {
        libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, 0);
        libmimalloc_sys::mi_option_set_default(MI_OPTION_ARENA_EAGER_COMMIT, 0);
    }
}

/// mimalloc 3's `mi_option_t` values (`mimalloc.h`); `libmimalloc-sys` names only version 2's.
#[cfg(target_os = "linux")]
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
#[cfg(target_os = "linux")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

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
