//! Loading a policy for the commands that resolve it: sources (checked, then lowered) or a built
//! IR file, through the compiler's front door; errors are printed here.

use std::path::PathBuf;

use aptc_compiler::host::{self, PolicyError};
use aptc_core::ir::Program;

/// The lowered policy at `paths`: one `.aptir` file, or `.apt` sources (which must check clean;
/// their errors are printed and the load fails).
///
/// The front end runs without transparent huge pages, as `aptc check` does (see [`huge_pages`]),
/// and they are allowed again before the caller resolves: the front end's trees and tables are
/// touched once, so 2 MiB pages only cost zeroing and resident memory there (at 100,000 claims
/// they made the front end's peak the peak of the whole `plan`), while the resolver, which reads
/// its state again and again, gains from them.
pub fn load(paths: &[PathBuf], color: bool) -> anyhow::Result<Program> {
    huge_pages(false);
    let loaded = host::load_program(paths, color);
    huge_pages(true);
    release_freed_memory();
    loaded.map_err(|error| {
        if let PolicyError::Invalid { rendered, .. } = &error {
            eprint!("{rendered}");
        }
        anyhow::Error::new(error)
    })
}

/// Returns to the system the memory freed so far (the front end's, once the program is lowered)
/// instead of keeping it for up to mimalloc's purge delay: the resolver's threads would not reuse
/// all of it, and `plan`'s peak would hold both (see `commit_arenas_on_demand` in `main.rs`).
fn release_freed_memory() {
    // SAFETY: `mi_collect` only frees and purges mimalloc's own free memory.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Allows or forbids transparent huge pages for this process's memory touched from now on. The
/// allocator asks for them, and the kernel then zeroes 2 MiB at the first touch of each: the front
/// end builds many trees and tables touched once, and at 100,000 claims that zeroing was a quarter
/// of `aptc check`'s CPU (docs/performance.md). Only the process's own flag changes; on other
/// systems, nothing.
pub fn huge_pages(allowed: bool) {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and changes only this process's flag.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, libc::c_ulong::from(!allowed), 0, 0, 0);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = allowed;
}
