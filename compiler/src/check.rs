//! `check`: everything the compiler can say about a set of files, in one call.
//!
//! A thin front over the incremental [`Database`]: it loads the files (and the embedded
//! standard library, unless the files declare `namespace std` themselves) and runs
//! [`semantics::check_workspace`]. The language server keeps a database alive instead.

use serde::Serialize;

use std::path::Path;

use crate::db::{Database, Settings, SourceText, UsersFile, Workspace, parse_file};
use crate::diagnostics::{Diagnostic, Severity};
use crate::semantics::{self, index::file_summary};
use crate::source::{FileId, SourceMap};
use crate::syntax::ast::{ItemKind, Span};
use crate::syntax::validate::STD_NAMESPACE;

/// The standard library's signatures, embedded (docs/language.md §12).
pub const PRELUDE: &str = include_str!("../../stdlib/prelude.apt");

/// The path the embedded prelude is known by.
pub const PRELUDE_PATH: &str = "<std>/prelude.apt";

/// The outcome of checking a set of files.
#[derive(Debug)]
pub struct CheckResult {
    pub summary: Summary,
    /// Every diagnostic, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
}

/// Counts for the summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub files: usize,
    pub services: usize,
    pub contracts: usize,
    pub rules: usize,
    pub clusters: usize,
    pub claims: usize,
    /// `test` blocks (`aptc test` runs them).
    pub tests: usize,
    pub errors: usize,
    pub warnings: usize,
}

/// Parses and checks every file in `sources`.
pub fn check(sources: &SourceMap) -> CheckResult {
    check_with(sources, Settings::default())
}

/// [`check`], with settings such as the acting user of `aptc check --as`.
pub fn check_with(sources: &SourceMap, settings: Settings) -> CheckResult {
    let mut db = Database::default();
    let ws = load_workspace(&mut db, sources, settings);
    let diagnostics: Vec<Diagnostic> =
        semantics::diagnostics(&db, ws).into_iter().filter(|d| (d.primary.file.0 as usize) < sources.len()).collect();
    let summary = summarize(&db, ws, sources.len(), &diagnostics);
    CheckResult { summary, diagnostics }
}

/// A workspace of `sources`, plus the embedded prelude when no file declares `namespace std`,
/// plus the users files that `users from` statements name (read from disk here).
pub fn load_workspace(db: &mut Database, sources: &SourceMap, settings: Settings) -> Workspace {
    let ws = db.workspace(sources, settings);
    let mut files = ws.files(db).clone();
    let declares_std = files.iter().any(|&f| file_summary(db, f).namespace.as_deref() == Some(STD_NAMESPACE));
    if !declares_std {
        files.push(SourceText::new(db, FileId(sources.len() as u32), PRELUDE_PATH.into(), PRELUDE.into()));
    }
    let mut users_files = Vec::new();
    for &file in ws.files(db) {
        let base = file.path(db).parent().map(Path::to_path_buf).unwrap_or_default();
        let named: Vec<(Span, String)> = parse_file(db, file)
            .file
            .items
            .iter()
            .filter_map(|item| match &item.kind {
                ItemKind::UsersFrom(from) => Some((from.path.span, from.path.as_plain()?)),
                _ => None,
            })
            .collect();
        for (span, relative) in named {
            let path = base.join(&relative);
            let text = crate::workspace::read_referenced(&path);
            users_files.push(UsersFile::new(db, file.id(db), span, path, text));
        }
    }
    let settings = ws.settings(db).clone();
    Workspace::new(db, files, users_files, settings)
}

fn summarize(db: &Database, ws: Workspace, files: usize, diagnostics: &[Diagnostic]) -> Summary {
    let mut summary = Summary { files, ..Summary::default() };
    for &file in ws.files(db).iter().take(files) {
        for item in &parse_file(db, file).file.items {
            match item.kind {
                ItemKind::Service(_) => summary.services += 1,
                ItemKind::Contract(_) => summary.contracts += 1,
                ItemKind::Rule(_) => summary.rules += 1,
                ItemKind::Cluster(_) => summary.clusters += 1,
                ItemKind::Claim(_) => summary.claims += 1,
                ItemKind::Test(_) => summary.tests += 1,
                _ => {}
            }
        }
    }
    for diagnostic in diagnostics {
        match diagnostic.severity {
            Severity::Error => summary.errors += 1,
            Severity::Warning => summary.warnings += 1,
        }
    }
    summary
}
