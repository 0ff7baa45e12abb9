//! Shared helpers of the core's tests: policies on disk → IR.
#![allow(dead_code)] // each test binary uses some of the helpers

use std::path::{Path, PathBuf};

use aptc_compiler::host::Analysis;
use aptc_core::ir::Program;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

/// Lowers a policy (a path absolute or relative to the repository root); its files are named
/// relative to the root, and the current directory is the root (as `aptc` run there).
pub fn lower_path(path: &Path) -> Program {
    let root = root();
    std::env::set_current_dir(&root).unwrap();
    let files = aptc_compiler::workspace::find_apt_files(&[root.join(path)]).unwrap();
    let named = files.iter().map(|file| {
        let name = file.strip_prefix(&root).unwrap_or(file).to_path_buf();
        (name, std::fs::read_to_string(file).unwrap())
    });
    let mut analysis = Analysis::of_texts(named);
    analysis
        .lower()
        .unwrap_or_else(|errors| panic!("{} does not check clean: {}", path.display(), analysis.render(&errors, false)))
}

/// Lowers a policy of `(name, text)` files, panicking with the rendered errors if it does not check clean.
pub fn compile(files: &[(&str, &str)]) -> Program {
    let mut analysis = Analysis::of_texts(files.iter().copied());
    match analysis.lower() {
        Ok(program) => program,
        Err(errors) => panic!("{}", analysis.render(&errors, false)),
    }
}
