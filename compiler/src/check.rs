//! `check`: everything the compiler can say about a set of files, in one call.

use serde::Serialize;

use crate::diagnostics::{self, Diagnostic, Severity};
use crate::source::{FileId, SourceMap};
use crate::syntax::ast::ItemKind;
use crate::syntax::{self, Parse, validate};

/// The outcome of checking a set of files.
#[derive(Debug)]
pub struct CheckResult {
    /// Each file's syntax tree, in `SourceMap` order.
    pub parses: Vec<(FileId, Parse)>,
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
    pub errors: usize,
    pub warnings: usize,
}

impl CheckResult {
    /// Counts of objects and diagnostics.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary { files: self.parses.len(), ..Summary::default() };
        for item in self.parses.iter().flat_map(|(_, parse)| &parse.file.items) {
            match item.kind {
                ItemKind::Service(_) => summary.services += 1,
                ItemKind::Contract(_) => summary.contracts += 1,
                ItemKind::Rule(_) => summary.rules += 1,
                ItemKind::Cluster(_) => summary.clusters += 1,
                ItemKind::Claim(_) => summary.claims += 1,
                _ => {}
            }
        }
        for diagnostic in &self.diagnostics {
            match diagnostic.severity {
                Severity::Error => summary.errors += 1,
                Severity::Warning => summary.warnings += 1,
            }
        }
        summary
    }
}

/// Parses and checks every file in `sources`.
pub fn check(sources: &SourceMap) -> CheckResult {
    let mut parses = Vec::with_capacity(sources.len());
    let mut all = Vec::new();
    for (id, file) in sources.iter() {
        let parse = syntax::parse(id, &file.text);
        all.extend(parse.diagnostics.iter().cloned());
        all.extend(validate::validate(id, &parse.file));
        parses.push((id, parse));
    }
    diagnostics::sort(&mut all);
    CheckResult { parses, diagnostics: all }
}
