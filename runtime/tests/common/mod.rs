//! Shared helpers of the resolver tests: policies on disk → IR.

use std::path::{Path, PathBuf};

use aptc_compiler::check::load_workspace;
use aptc_compiler::db::{Database, Settings};
use aptc_compiler::ir::{Program, lower::lower};
use aptc_compiler::source::SourceMap;

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
    let mut sources = SourceMap::new();
    for file in files {
        let name = file.strip_prefix(&root).unwrap_or(&file).to_string_lossy().into_owned();
        sources.add(name, std::fs::read_to_string(&file).unwrap());
    }
    let mut db = Database::default();
    let ws = load_workspace(&mut db, &sources, Settings::default());
    lower(&db, ws).unwrap_or_else(|errors| panic!("{} does not check clean: {errors:#?}", path.display()))
}
