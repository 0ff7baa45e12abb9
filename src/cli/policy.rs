//! Loading a policy for the commands that resolve it: sources (checked, then lowered) or a built
//! IR file, through the compiler's front door; errors are printed here.

use std::path::PathBuf;

use aptc_compiler::host::{self, PolicyError};
use aptc_core::ir::Program;

/// The lowered policy at `paths`: one `.aptir` file, or `.apt` sources (which must check clean;
/// their errors are printed and the load fails).
pub fn load(paths: &[PathBuf], color: bool) -> anyhow::Result<Program> {
    host::load_program(paths, color).map_err(|error| {
        if let PolicyError::Invalid { rendered, .. } = &error {
            eprint!("{rendered}");
        }
        anyhow::Error::new(error)
    })
}
