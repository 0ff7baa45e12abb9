//! The compiler's front door for one-shot runs: a policy loaded from paths (or texts), checked
//! and lowered, with the source map its diagnostics render against. The CLI, the benches and the
//! tests use only this; the language server keeps its own long-lived [`Database`].

use std::path::{Path, PathBuf};

use aptc_core::ir::{self, Program, SYSTEM_NAMESPACE};
use thiserror::Error;

use crate::check::{CheckResult, load_workspace, load_workspace_to_lower, shown, summarize};
use crate::db::{Database, Settings, Workspace};
use crate::diagnostics::{Diagnostic, render};
use crate::source::{FileId, SourceMap};
use crate::syntax::ast::{ItemKind, Span};
use crate::workspace::{self, LoadError};

/// Why a policy could not be turned into a program.
#[derive(Debug, Error)]
pub enum PolicyError {
    /// The files could not be read.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A built `.aptir` file could not be read or is of another version.
    #[error("{path}: {source}")]
    Ir { path: PathBuf, source: IrReadError },
    /// The sources do not check clean; `rendered` shows every error.
    #[error("the policy has {count} error(s); fix them first (`aptc check`)")]
    Invalid { count: usize, rendered: String },
}

/// Reading a `.aptir` file.
#[derive(Debug, Error)]
pub enum IrReadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Format(#[from] ir::LoadError),
}

/// Policies of up to this much text keep every file's syntax tree until they are lowered
/// ([`Analysis::open_to_lower`]), rather than parse each file twice (for loading, then for
/// lowering): a twentieth of `aptc plan`'s instructions at 10,000 claims of Aptomi's engine shape
/// (1.5 MB of text), whose trees (~4 MiB) stay well below the resolver's peak. Larger policies
/// free each tree once read, so that all of their trees are never held at once.
pub const TREES_KEPT_UP_TO: usize = 4 << 20;

/// A policy in one database: its sources, the workspace over them, and the settings it was
/// checked with.
pub struct Analysis {
    db: Database,
    ws: Workspace,
    sources: SourceMap,
    /// How many of `sources` are the policy's own `.apt` files (the rest are added for rendering).
    files: usize,
}

impl Analysis {
    /// The `.apt` files under `paths` (directories searched recursively), loaded.
    pub fn open(paths: &[PathBuf], settings: Settings) -> Result<Analysis, LoadError> {
        let files = workspace::find_apt_files(paths)?;
        Ok(Analysis::of_sources(workspace::load(&files)?, settings))
    }

    /// [`Analysis::open`] for a caller that only lowers ([`Analysis::program`]: `aptc plan`,
    /// `build`, `graph`). A policy of more than [`TREES_KEPT_UP_TO`] bytes of text keeps no file's
    /// syntax tree past loading ([`load_workspace_to_lower`]), since lowering parses each file
    /// again, one at a time ([`Analysis::check`] works as well, but parses every file again); a
    /// smaller one keeps its trees from loading to lowering, and is parsed once.
    pub fn open_to_lower(paths: &[PathBuf], settings: Settings) -> Result<Analysis, LoadError> {
        Analysis::open_to_lower_keeping(paths, settings, TREES_KEPT_UP_TO)
    }

    /// [`Analysis::open_to_lower`] keeping the trees of a policy of at most `kept_up_to` bytes
    /// of text (0: of none), for tests of both ways.
    pub fn open_to_lower_keeping(
        paths: &[PathBuf],
        settings: Settings,
        kept_up_to: usize,
    ) -> Result<Analysis, LoadError> {
        let files = workspace::find_apt_files(paths)?;
        let sources = workspace::load(&files)?;
        let text: usize = sources.iter().map(|(_, file)| file.text.len()).sum();
        if text <= kept_up_to {
            // 0: every tree.
            return Ok(Analysis::loaded(sources, settings, load_workspace, 0));
        }
        Ok(Analysis::loaded(sources, settings, load_workspace_to_lower, 1))
    }

    /// A policy of files already in memory (named as diagnostics should name them).
    pub fn of_sources(sources: SourceMap, settings: Settings) -> Analysis {
        Analysis::loaded(sources, settings, load_workspace, 1)
    }

    /// `sources` loaded by `load` into a database that keeps `trees` syntax trees when it evicts
    /// ([`crate::db::keep_trees`]: 0 keeps every tree).
    fn loaded(
        sources: SourceMap,
        settings: Settings,
        load: fn(&mut Database, &SourceMap, Settings) -> Workspace,
        trees: usize,
    ) -> Analysis {
        let mut db = Database::default();
        // Lowering frees what only checking needs ([`Analysis::lower`]); the language server's
        // database keeps everything.
        crate::db::keep_trees(&mut db, trees);
        crate::semantics::file::keep_checks(&mut db, 1);
        let ws = load(&mut db, &sources, settings);
        let files = sources.len();
        Analysis { db, ws, sources, files }
    }

    /// A policy of `(name, text)` pairs, for tools and tests that generate policies.
    pub fn of_texts<N: Into<PathBuf>, T: Into<String>>(files: impl IntoIterator<Item = (N, T)>) -> Analysis {
        let mut sources = SourceMap::new();
        for (name, text) in files {
            sources.add(name.into(), text.into());
        }
        Analysis::of_sources(sources, Settings::default())
    }

    /// Every diagnostic of the policy (sorted by file and position) and the counts of the summary
    /// line.
    pub fn check(&mut self) -> CheckResult {
        let diagnostics = self.shown(crate::check::diagnostics(&self.db, self.ws));
        let summary = summarize(&self.db, self.ws, self.files, &diagnostics);
        CheckResult { summary, diagnostics }
    }

    /// The resolution IR of a policy that checks clean, or its errors (ready to render). Each
    /// file is checked and lowered while its syntax tree is alive, and the tree freed before the
    /// next (`check::lower_file_by_file`); the file checks are freed at the end. What was freed is
    /// computed again if asked for later.
    pub fn lower(&mut self) -> Result<Program, Vec<Diagnostic>> {
        crate::check::lower_file_by_file(&mut self.db, self.ws).map_err(|errors| self.shown(errors))
    }

    /// What roles are computed from (namespaces and owners, labels, users, teams, grants), as the
    /// checker lowers it even from a policy with errors; `aptc_core::access::Access` over it gives
    /// the roles `aptc check` reports with.
    pub fn access_program(&self) -> Program {
        crate::lower::access_program(&self.db, self.ws)
    }

    /// [`Analysis::lower`], with the errors rendered for people.
    pub fn program(&mut self, color: bool) -> Result<Program, PolicyError> {
        self.lower().map_err(|errors| PolicyError::Invalid {
            count: errors.len().max(1),
            rendered: render::render(&self.sources, &errors, color),
        })
    }

    /// The files diagnostics point into: the policy's, then the ones added for rendering.
    pub fn sources(&self) -> &SourceMap {
        &self.sources
    }

    /// The source map, for callers that keep rendering after the analysis is gone.
    pub fn into_sources(self) -> SourceMap {
        self.sources
    }

    /// Diagnostics rendered for a terminal.
    pub fn render(&self, diagnostics: &[Diagnostic], color: bool) -> String {
        render::render(&self.sources, diagnostics, color)
    }

    /// The database, for queries beyond checking and lowering (the IDE queries, the parse tree).
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// The workspace input of the database.
    pub fn workspace(&self) -> Workspace {
        self.ws
    }

    fn shown(&mut self, diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
        // `shown` adds the prelude and manifest files once; later calls must not add them again.
        self.sources.truncate(self.files);
        shown(&self.db, self.ws, &mut self.sources, diagnostics)
    }
}

impl Analysis {
    /// The changes from `base` to this policy that `user` may not make under `base`'s roles
    /// (docs/language.md §11.3: the check a deploy makes, for a pull request before it merges),
    /// each an error at the declaration of the changed object's namespace. Empty when this policy
    /// has errors of its own (they fail the check already).
    pub fn change_check(&mut self, base: &Program, user: &str) -> Vec<Diagnostic> {
        use crate::diagnostics::codes;
        let Ok(program) = self.lower() else { return Vec::new() };
        let refusals = aptc_core::changes::refusals(base, &program, user);
        let first = self.sources.iter().next().map(|(id, _)| id);
        refusals
            .into_iter()
            .filter_map(|refusal| {
                let (code, namespace) = match &refusal {
                    aptc_core::changes::Refusal::NotAUser { .. } => (codes::UNKNOWN_ACTING_USER, SYSTEM_NAMESPACE),
                    aptc_core::changes::Refusal::Change { change, .. } => {
                        (codes::MAY_NOT_MANAGE, change.namespace.as_str())
                    }
                };
                let (file, span) = namespace_declaration(&self.sources, namespace).or(first.map(|f| (f, Span::new(0, 0))))?;
                let message = format!("user `{user}` {refusal}");
                Some(
                    Diagnostic::new(code, file, span, message)
                        .with_primary_message(format!("a change to namespace `{namespace}`"))
                        .with_help("roles come from the base policy, so a change cannot grant itself the rights it needs: ask someone with the role to make it"),
                )
            })
            .collect()
    }
}

/// Where `namespace NAME` is declared: the first such line of `sources`.
fn namespace_declaration(sources: &SourceMap, namespace: &str) -> Option<(FileId, Span)> {
    sources.iter().find_map(|(id, file)| {
        let mut offset = 0;
        for line in file.text.split_inclusive('\n') {
            let words: Vec<&str> = line.split_whitespace().take(2).collect();
            if words == ["namespace", namespace] {
                return Some((id, Span::new(offset, offset + line.trim_end().len())));
            }
            offset += line.len();
        }
        None
    })
}

/// Parses and checks every file in `sources`. The files the policy refers to that diagnostics
/// may point into (manifests) are added to `sources`, for rendering.
pub fn check(sources: &mut SourceMap) -> CheckResult {
    check_with(sources, Settings::default())
}

/// [`check`], with settings such as the acting user of `aptc check --as`.
pub fn check_with(sources: &mut SourceMap, settings: Settings) -> CheckResult {
    let mut analysis = Analysis::of_sources(std::mem::take(sources), settings);
    let result = analysis.check();
    *sources = analysis.into_sources();
    result
}

/// The program at `paths`: one built `.aptir` file, or `.apt` sources that check clean.
pub fn load_program(paths: &[PathBuf], color: bool) -> Result<Program, PolicyError> {
    if let [single] = paths
        && single.extension().is_some_and(|e| e == "aptir")
    {
        return read_ir(single).map_err(|source| PolicyError::Ir { path: single.clone(), source });
    }
    Analysis::open_to_lower(paths, Settings::default())?.program(color)
}

fn read_ir(path: &Path) -> Result<Program, IrReadError> {
    Ok(Program::from_json(&std::fs::read_to_string(path)?)?)
}

/// The paths a command was given; with none, the files of the policy of the current directory
/// ([`policy_of_cwd`]), or the current directory itself when no `aptc.toml` is found.
pub fn paths_or_cwd(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    if !paths.is_empty() {
        return Ok(paths.to_vec());
    }
    match policy_of_cwd() {
        Some(policy) => Ok(policy?.1),
        None => Ok(vec![PathBuf::from(".")]),
    }
}

/// The policy of the current directory, given no paths: the nearest `aptc.toml` from here up
/// marks its root, and its `include`/`exclude` globs say which `.apt` files under the root belong
/// to it (docs/language.md §3.1): the root and those files. `None` without an `aptc.toml`, and
/// for a root whose globs take no file of its own (a folder of policies, such as this
/// repository's root, whose `aptc.toml` only keeps editors out of its test cases): there, as
/// without one, the current directory.
pub fn policy_of_cwd() -> Option<Result<(PathBuf, Vec<PathBuf>), LoadError>> {
    let config = match workspace::PolicyConfig::find(Path::new("."))? {
        Ok(config) => config,
        Err(error) => return Some(Err(error)),
    };
    match config.files() {
        Ok(files) if files.is_empty() => None,
        Ok(files) => Some(Ok((config.root, files))),
        Err(error) => Some(Err(error)),
    }
}

/// The policies at `path`: itself, or, for a directory of complete policies (subdirectories that
/// each declare `namespace system`, such as `examples/`), each of them, since their global rules
/// would otherwise govern each other's claims.
pub fn policies_under(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let io = |source| LoadError::Io { path: path.to_path_buf(), source };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
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
        policies.extend(policies_under(&dir)?);
    }
    Ok(if policies.is_empty() { vec![path.to_path_buf()] } else { policies })
}

/// Whether one of `files` declares `namespace system`.
fn declares_system(files: &[PathBuf]) -> bool {
    files.iter().any(|file| {
        let Ok(text) = std::fs::read_to_string(file) else { return false };
        let parsed = crate::syntax::parse(FileId(0), &text);
        parsed
            .file
            .items
            .iter()
            .any(|item| matches!(&item.kind, ItemKind::Namespace(ns) if ns.name.text == SYSTEM_NAMESPACE))
    })
}
