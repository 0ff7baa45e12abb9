//! Loading a policy for the commands that resolve it: sources (checked, then lowered) or a
//! built IR file.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use aptc_compiler::check::{load_workspace, shown};
use aptc_compiler::db::{Database, Settings};
use aptc_compiler::diagnostics::render;
use aptc_compiler::ir::{Program, lower::lower};
use aptc_compiler::workspace;

/// The lowered policy at `paths`: one `.aptir` file, or `.apt` sources (which must check clean;
/// their errors are printed and the load fails).
pub fn load(paths: &[PathBuf], color: bool) -> anyhow::Result<Program> {
    if let [single] = paths
        && single.extension().is_some_and(|e| e == "aptir")
    {
        let text = std::fs::read_to_string(single).with_context(|| format!("reading {}", single.display()))?;
        return Program::from_json(&text).with_context(|| format!("loading {}", single.display()));
    }
    let files = workspace::find_apt_files(paths)?;
    let mut sources = workspace::load(&files)?;
    let mut db = Database::default();
    let ws = load_workspace(&mut db, &sources, Settings::default());
    match lower(&db, ws) {
        Ok(program) => Ok(program),
        Err(errors) => {
            let shown = shown(&db, ws, &mut sources, errors);
            eprint!("{}", render::render(&sources, &shown, color));
            bail!("the policy has {} error(s); fix them first (`aptc check`)", shown.len().max(1))
        }
    }
}

/// The paths, or the current directory.
pub fn paths_or_cwd(paths: &[PathBuf]) -> Vec<PathBuf> {
    if paths.is_empty() { vec![Path::new(".").to_path_buf()] } else { paths.to_vec() }
}
