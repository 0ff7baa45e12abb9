//! `check`: everything the compiler can say about a set of files, in one call.
//!
//! A thin front over the incremental [`Database`]: it loads the files (and the embedded
//! standard library, unless the files declare `namespace std` themselves) and runs
//! [`semantics::check_workspace`]. The language server keeps a database alive instead.

use salsa::{Database as _, Setter};
use serde::Serialize;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::db::{
    Database, LocalChart, ManifestFile, ManifestSet, Reported, Settings, SourceText, UsersFile, Workspace, parse_file,
};
use crate::diagnostics::{Diagnostic, Severity};
use crate::semantics::{self, index::file_summary};
use crate::source::{FileId, SourceMap};
use crate::syntax::ast::{ComponentSource, ItemKind, Span};
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

/// A workspace of `sources`, plus the embedded prelude when no file declares `namespace std`,
/// plus the users files that `users from` statements name, the files of `manifests` components
/// and what is at the path of each local chart (read from disk here). Every file's syntax tree
/// stays in the database, for the checks and the editor's queries that read them next.
pub fn load_workspace(db: &mut Database, sources: &SourceMap, settings: Settings) -> Workspace {
    load(db, sources, settings, Trees::Kept)
}

/// [`load_workspace`] for a database that lowers once ([`lower_file_by_file`]): each file's
/// syntax tree is freed (`salsa::Database::trigger_lru_eviction`, down to the trees the database
/// keeps: [`crate::db::keep_trees`]) once what loading reads of it is read, so the trees of all
/// files are never held at once. Lowering parses each file again in turn, as it would anyway,
/// so this costs no parse; `aptc check` reads every tree again right after loading, and so keeps
/// them. (At 100,000 claims the trees held at the end of loading were `plan`'s peak.)
pub fn load_workspace_to_lower(db: &mut Database, sources: &SourceMap, settings: Settings) -> Workspace {
    load(db, sources, settings, Trees::FreedFileByFile)
}

/// Whether loading keeps the files' syntax trees ([`load_workspace`], [`load_workspace_to_lower`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trees {
    Kept,
    FreedFileByFile,
}

fn load(db: &mut Database, sources: &SourceMap, settings: Settings, trees: Trees) -> Workspace {
    let ws = db.workspace(sources, settings);
    let mut files = ws.files(db).clone();
    let (mut declares_std, mut users_files, mut manifests, mut charts) = (false, Vec::new(), Vec::new(), Vec::new());
    // The manifest files are numbered after the run's files and the prelude.
    let mut next_manifest = sources.len() as u32 + 1;
    // File by file, everything loading reads of a file's tree, in the files' order.
    for &file in &files {
        declares_std |= file_summary(db, file).namespace.as_deref() == Some(STD_NAMESPACE);
        users_files.extend(read_users_files(db, &[file], &[]));
        manifests.extend(load_manifests(db, &[file], &mut next_manifest));
        charts.extend(look_at_charts(db, &[file], &[]));
        if trees == Trees::FreedFileByFile {
            db.trigger_lru_eviction();
        }
    }
    if !declares_std {
        files.push(SourceText::new(db, FileId(sources.len() as u32), PRELUDE_PATH.into(), PRELUDE.into()));
    }
    let settings = ws.settings(db).clone();
    Workspace::new(db, files, users_files, manifests, charts, settings)
}

/// The local charts that the chart components of `files` name, each looked at on disk; one of
/// `known` for the same file and chart is reused (what is on disk set only if it changed).
fn look_at_charts(db: &mut Database, files: &[SourceText], known: &[LocalChart]) -> Vec<LocalChart> {
    let mut seen = HashSet::new();
    let mut charts = Vec::new();
    for &file in files {
        let id = file.id(db);
        let named = semantics::charts::local_charts(&parse_file(db, file).file);
        for (_, chart) in named {
            if !seen.insert((id, chart.clone())) {
                continue;
            }
            let path = semantics::charts::chart_path(file.path(db), &chart);
            let on_disk = crate::workspace::probe_chart(&path);
            let same = known.iter().find(|c| c.declared_in(db) == id && *c.chart(db) == chart).copied();
            charts.push(match same {
                Some(local) => {
                    if *local.path(db) != path {
                        drop(local.set_path(db).to(path));
                    }
                    if *local.on_disk(db) != on_disk {
                        drop(local.set_on_disk(db).to(on_disk));
                    }
                    local
                }
                None => LocalChart::new(db, id, chart, path, on_disk),
            });
        }
    }
    charts
}

/// Looks at the local charts of `ws` on disk again (a chart directory was created or removed,
/// or a chart component was added or changed); only what changed is set, so only the files
/// whose charts changed are checked again.
pub fn refresh_charts(db: &mut Database, ws: Workspace) {
    let old = ws.charts(db).clone();
    let files = ws.files(db).clone();
    let charts = look_at_charts(db, &files, &old);
    if charts != old {
        ws.set_charts(db).to(charts);
    }
}

/// The users files that the `users from` statements of `files` name, read from disk; one of
/// `known` with the same statement and path is reused (its text set only if it changed).
fn read_users_files(db: &mut Database, files: &[SourceText], known: &[UsersFile]) -> Vec<UsersFile> {
    let mut users_files = Vec::new();
    for &file in files {
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
            let same = known
                .iter()
                .find(|u| u.declared_in(db) == file.id(db) && u.span(db) == span && *u.path(db) == path)
                .copied();
            users_files.push(match same {
                Some(users) => {
                    if *users.text(db) != text {
                        drop(users.set_text(db).to(text));
                    }
                    users
                }
                None => UsersFile::new(db, file.id(db), span, path, text),
            });
        }
    }
    users_files
}

/// Reads the users files of `ws` again (one changed on disk, or a `users from` statement was
/// added, removed or edited); only what changed is set.
pub fn refresh_users_files(db: &mut Database, ws: Workspace) {
    let old = ws.users_files(db).clone();
    let files = ws.files(db).clone();
    let users_files = read_users_files(db, &files, &old);
    if users_files != old {
        ws.set_users_files(db).to(users_files);
    }
}

/// The manifest files of every `manifests "GLOB"` component of `files` (read from disk here),
/// numbered from `next` on (which moves on).
fn load_manifests(db: &mut Database, files: &[SourceText], next: &mut u32) -> Vec<ManifestSet> {
    let mut sets = Vec::new();
    for (file, glob) in manifest_globs(db, files) {
        let found = read_manifests(db, file, &glob, &HashMap::new(), next);
        sets.push(ManifestSet::new(db, file.id(db), glob, found));
    }
    sets
}

/// Reads the manifest files of `ws` again (an editor saved a template, or a component was added
/// or changed): a file read before keeps its id, a new one gets `next` (which moves on). Only
/// what changed is set, so unchanged templates are not checked again.
pub fn refresh_manifests(db: &mut Database, ws: Workspace, next: &mut u32) {
    let old: Vec<ManifestSet> = ws.manifests(db).clone();
    let known: HashMap<PathBuf, FileId> =
        old.iter().flat_map(|set| set.files(db).iter().flatten()).map(|f| (f.path.clone(), f.id)).collect();
    let files = ws.files(db).clone();
    let mut sets = Vec::new();
    for (file, glob) in manifest_globs(db, &files) {
        let found = read_manifests(db, file, &glob, &known, next);
        let same = old.iter().find(|set| set.declared_in(db) == file.id(db) && *set.glob(db) == glob).copied();
        match same {
            Some(set) => {
                if *set.files(db) != found {
                    drop(set.set_files(db).to(found));
                }
                sets.push(set);
            }
            None => sets.push(ManifestSet::new(db, file.id(db), glob, found)),
        }
    }
    if sets != old {
        ws.set_manifests(db).to(sets);
    }
}

/// Each file's `manifests "GLOB"` globs, in order, without repeats.
fn manifest_globs(db: &Database, files: &[SourceText]) -> Vec<(SourceText, String)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for &file in files {
        let globs: Vec<String> = parse_file(db, file)
            .file
            .components()
            .filter_map(|component| match &component.source.node {
                ComponentSource::Manifests(glob) => glob.as_plain(),
                _ => None,
            })
            .collect();
        for glob in globs {
            if seen.insert((file.id(db), glob.clone())) {
                out.push((file, glob));
            }
        }
    }
    out
}

/// The files `glob` matches beside `file`, read; a path in `known` keeps its id, others are
/// numbered from `next`.
fn read_manifests(
    db: &Database,
    file: SourceText,
    glob: &str,
    known: &HashMap<PathBuf, FileId>,
    next: &mut u32,
) -> Result<Vec<ManifestFile>, String> {
    let base = file.path(db).parent().map(Path::to_path_buf).unwrap_or_default();
    crate::workspace::manifest_files(&base, glob).map(|matched| {
        matched
            .into_iter()
            .map(|(path, relative)| {
                let text = crate::workspace::read_referenced(&path);
                let id = known.get(&path).copied().unwrap_or_else(|| {
                    *next += 1;
                    FileId(*next - 1)
                });
                ManifestFile { id, path, relative, text }
            })
            .collect()
    })
}

/// Of the diagnostics of a workspace loaded from `sources` ([`load_workspace`]), those to show:
/// not the prelude's. `sources` gains the files they may point into (manifests), so that the
/// renderers can show them.
pub fn shown(db: &Database, ws: Workspace, sources: &mut SourceMap, diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let prelude = FileId(sources.len() as u32);
    add_referenced_sources(db, ws, sources);
    diagnostics
        .into_iter()
        .filter(|d| d.primary.file != prelude && (d.primary.file.0 as usize) < sources.len())
        .collect()
}

/// Adds to `sources` the files that diagnostics of a workspace loaded from it may point into
/// besides its own: the prelude, then every manifest file (in the order their ids were given).
fn add_referenced_sources(db: &Database, ws: Workspace, sources: &mut SourceMap) {
    sources.add(PRELUDE_PATH, PRELUDE);
    let files = ws.manifests(db).iter().filter_map(|set| set.files(db).as_ref().ok()).flatten();
    for file in files {
        // Ids were given in this order from just after the prelude; a map that was changed since
        // would point diagnostics at the wrong file, so stop rather than guess.
        if file.id.0 as usize != sources.len() {
            break;
        }
        let text = file.text.clone().unwrap_or_else(|_| Arc::from(""));
        sources.add(file.path.clone(), text);
    }
}

pub(crate) fn summarize(db: &Database, ws: Workspace, files: usize, diagnostics: &[Diagnostic]) -> Summary {
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

/// Every diagnostic of the workspace, sorted: the semantic checks and the access checks (which
/// lower the grants and ask the core, so they sit above lowering).
pub fn diagnostics(db: &dyn salsa::Database, ws: Workspace) -> Vec<Diagnostic> {
    let mut all = checked(db, ws);
    all.extend(crate::lints::engine_lints::accumulated::<Reported>(db, ws).into_iter().map(|r| r.0.clone()));
    crate::diagnostics::sort(&mut all);
    all.dedup();
    all
}

/// The semantic and access checks' diagnostics (all but the engine's lints, which need a policy
/// that lowers), sorted.
pub(crate) fn checked(db: &dyn salsa::Database, ws: Workspace) -> Vec<Diagnostic> {
    let mut all = semantics::diagnostics(db, ws);
    all.extend(crate::access::check_acl::accumulated::<Reported>(db, ws).into_iter().map(|r| r.0.clone()));
    crate::diagnostics::sort(&mut all);
    all.dedup();
    all
}

/// Lowers the workspace, or returns its errors (warnings do not stop lowering).
pub fn lower(db: &dyn salsa::Database, ws: Workspace) -> Result<aptc_core::ir::Program, Vec<Diagnostic>> {
    errors(db, ws)?;
    Ok(crate::lower::lower_clean(db, ws))
}

/// Checks and lowers the workspace a file at a time, for a database that lowers once and is then
/// dropped (`host::Analysis`, the CLI's, which keeps one syntax tree when it evicts). The trees
/// loading parsed are freed first; then each file's checks ([`semantics::check_one_file`]) and
/// lowering run while its tree is alive, and the tree is freed before the next, so the trees are
/// never all held beside the checks' facts (at 100,000 claims they were `plan`'s peak). The
/// whole-policy checks read only what the per-file queries kept. The program, built as the files
/// are checked, is dropped if the workspace has errors; the file checks are freed before it is
/// returned.
pub fn lower_file_by_file(db: &mut Database, ws: Workspace) -> Result<aptc_core::ir::Program, Vec<Diagnostic>> {
    db.trigger_lru_eviction();
    // Every file's facts stay until the whole-policy checks have read them.
    semantics::file::keep_checks(db, 0);
    let mut lowering = crate::lower::FileByFile::new(db, ws);
    for file in ws.files(db).clone() {
        semantics::check_one_file(db, ws, file);
        lowering.file(db, ws, file);
        db.trigger_lru_eviction();
    }
    let checked = errors(db, ws);
    semantics::file::keep_checks(db, 1);
    db.trigger_lru_eviction();
    checked.map(|()| lowering.finish(db, ws))
}

/// The workspace's errors, if it has any: what stops lowering (warnings do not).
pub(crate) fn errors(db: &dyn salsa::Database, ws: Workspace) -> Result<(), Vec<Diagnostic>> {
    let errors: Vec<Diagnostic> = checked(db, ws).into_iter().filter(Diagnostic::is_error).collect();
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}
