//! `aptc test`: run the policy's `test` blocks (docs/language.md §18).
//!
//! Each PATH is one policy: a file, a directory (every `.apt` file under it), or one `.aptir`
//! file. A directory that holds no `.apt` file itself, but subdirectories that each declare
//! `namespace system` (`examples/`: quickstart, guestbook, twitter-analytics), is a collection of
//! policies: each such subdirectory is tested on its own, since their global rules would
//! otherwise govern each other's claims. One summary line counts every test run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use aptc_compiler::check::{load_workspace, shown};
use aptc_compiler::db::{Database, Settings};
use aptc_compiler::diagnostics::render;
use aptc_compiler::source::FileId;
use aptc_compiler::syntax::ast::ItemKind;
use aptc_compiler::workspace;
use aptc_core::ir::SYSTEM_NAMESPACE;
use aptc_core::testing::{TestReport, run_tests};
use clap::Args;
use {aptc_compiler::lower::lower, aptc_core::ir::Program};

use super::EXIT_FINDINGS;
use aptc_compiler::host::paths_or_cwd;

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Policies: each a file, a directory, or one `.aptir` file (a directory of complete
    /// policies, each with its own `namespace system`, runs each). Default: the current directory.
    paths: Vec<PathBuf>,
}

pub fn run(args: TestArgs, color: bool) -> anyhow::Result<ExitCode> {
    let mut policies = Vec::new();
    for path in paths_or_cwd(&args.paths) {
        policies.extend(split(&path)?);
    }
    let (mut passed, mut failed, mut broken) = (0, 0, 0);
    for (i, policy) in policies.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let Some(program) = load(policy, color)? else {
            broken += 1;
            continue;
        };
        let reports = run_tests(&program);
        let plural = if reports.len() == 1 { "" } else { "s" };
        println!("running {} test{plural} in {}", reports.len(), policy.display());
        for report in &reports {
            print!("{}", show(report, color));
            if report.passed() {
                passed += 1;
            } else {
                failed += 1;
            }
        }
    }
    println!();
    println!("{passed} passed, {failed} failed");
    Ok(if failed > 0 || broken > 0 { ExitCode::from(EXIT_FINDINGS) } else { ExitCode::SUCCESS })
}

/// A test's line, and under it, when it failed, each expectation that does not hold.
fn show(report: &TestReport, color: bool) -> String {
    let paint = |text: &str, code: &str| if color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() };
    if report.passed() {
        return format!("test {} ... {}\n", report.test, paint("ok", "32"));
    }
    let mut out = format!("test {} ... {}  ({})\n", report.test, paint("FAILED", "31;1"), report.origin);
    for failure in &report.failures {
        out.push_str(&format!("    {}  ({})\n", failure.expectation, failure.origin));
        out.push_str(&format!("      {}\n", failure.message));
    }
    out
}

/// The policy at `path`, lowered; `None` (its errors printed) when it does not check clean.
fn load(path: &Path, color: bool) -> anyhow::Result<Option<Program>> {
    if path.extension().is_some_and(|e| e == "aptir") {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(Some(Program::from_json(&text).with_context(|| format!("loading {}", path.display()))?));
    }
    let files = workspace::find_apt_files(&[path.to_path_buf()])?;
    let mut sources = workspace::load(&files)?;
    let mut db = Database::default();
    let ws = load_workspace(&mut db, &sources, Settings::default());
    match lower(&db, ws) {
        Ok(program) => Ok(Some(program)),
        Err(errors) => {
            let shown = shown(&db, ws, &mut sources, errors);
            eprint!("{}", render::render(&sources, &shown, color));
            eprintln!(
                "error: {}: the policy has {} error(s), so its tests did not run (`aptc check` shows them)",
                path.display(),
                shown.len().max(1)
            );
            Ok(None)
        }
    }
}

/// The policies at `path`: itself, or, for a directory of complete policies, each of them.
fn split(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", path.display()))?;
    entries.sort();
    if entries.iter().any(|p| p.is_file() && p.extension().is_some_and(|e| e == "apt")) {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut policies = Vec::new();
    for dir in entries.into_iter().filter(|p| p.is_dir()) {
        // Skipped as `find_apt_files` skips them.
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        let files = workspace::find_apt_files(std::slice::from_ref(&dir))?;
        if files.is_empty() {
            continue;
        }
        if !declares_system(&files) {
            return Ok(vec![path.to_path_buf()]);
        }
        policies.extend(split(&dir)?);
    }
    Ok(if policies.is_empty() { vec![path.to_path_buf()] } else { policies })
}

/// Whether one of `files` declares `namespace system`.
fn declares_system(files: &[PathBuf]) -> bool {
    files.iter().any(|file| {
        let Ok(text) = std::fs::read_to_string(file) else { return false };
        let parsed = aptc_compiler::syntax::parse(FileId(0), &text);
        parsed
            .file
            .items
            .iter()
            .any(|item| matches!(&item.kind, ItemKind::Namespace(ns) if ns.name.text == SYSTEM_NAMESPACE))
    })
}
