//! `aptc`: the command-line face of the .apt toolchain. It parses arguments, calls the
//! compiler library and prints; it holds no policy logic of its own.

mod allocator;
mod cli;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: allocator::Mimalloc = allocator::Mimalloc;

/// Run by the loader before mimalloc's own constructor (priority 101; the linker orders
/// `.init_array.NNNNN` entries by priority): see [`commit_arenas_on_demand`].
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array.00100")]
static BEFORE_MIMALLOC: extern "C" fn() = commit_arenas_on_demand;

/// On Linux mimalloc commits its arenas eagerly by default, and purging memory in such an arena
/// only resets its pages (they stay in the resident set). Committed on demand, a purge returns
/// them, so what the front end frees before the resolver's peak (`cli::policy::load` purges it)
/// leaves `plan`'s resident set: 63 MiB at 10,000 claims instead of 71 (docs/performance.md).
/// It must be set before mimalloc reserves its first arena, which happens before `main`;
/// `MIMALLOC_ARENA_EAGER_COMMIT` in the environment still overrides it.
#[cfg(target_os = "linux")]
extern "C" fn commit_arenas_on_demand() {
    // SAFETY: this only writes mimalloc's option table, which its constructor reads after it.
    unsafe { libmimalloc_sys::mi_option_set_default(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

/// `mi_option_arena_eager_commit` in mimalloc 3's `mi_option_t` (`mimalloc.h`): `libmimalloc-sys`
/// names only version 2's options. A CLI test reads mimalloc's report of its options by name.
#[cfg(target_os = "linux")]
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

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
