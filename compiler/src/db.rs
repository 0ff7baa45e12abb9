//! The incremental database: one salsa database that the CLI and the language server share.
//!
//! Inputs are the source files and the settings of a run; every stage of the compiler is a
//! tracked function over them, and diagnostics are accumulated as [`Reported`] values. Editing
//! one file re-runs the queries of that file, and the queries of other files only when what
//! they read of it (its names and label schema, see `semantics::index`) changed.

use std::path::PathBuf;
use std::sync::Arc;

use salsa::{Accumulator, Setter};

use crate::diagnostics::Diagnostic;
use crate::source::{FileId, SourceMap};
use crate::syntax::ast::Span;
use crate::syntax::{self, Parse, validate};

/// One source file: its id in the run's [`SourceMap`], its path and its text.
#[salsa::input(debug)]
pub struct SourceText {
    #[returns(copy)]
    pub id: FileId,
    #[returns(ref)]
    pub path: PathBuf,
    #[returns(ref)]
    pub text: Arc<str>,
}

/// What one run checks: its files, in order, the users files and manifests they name, and its
/// settings.
#[salsa::input(debug)]
pub struct Workspace {
    #[returns(ref)]
    pub files: Vec<SourceText>,
    #[returns(ref)]
    pub users_files: Vec<UsersFile>,
    /// The files of every `manifests` component, read when the workspace was loaded.
    #[returns(ref)]
    pub manifests: Vec<ManifestSet>,
    /// The local chart of every chart component that names one, looked at on disk when the
    /// workspace was loaded (and again by [`crate::check::refresh_charts`]).
    #[returns(ref)]
    pub charts: Vec<LocalChart>,
    #[returns(ref)]
    pub settings: Settings,
}

/// A file named by `users from "PATH"`, read by whoever builds the workspace (the database
/// does no I/O): its text, or why it could not be read.
#[salsa::input(debug)]
pub struct UsersFile {
    /// The `.apt` file and the span of the `users from` statement that names it.
    #[returns(copy)]
    pub declared_in: FileId,
    #[returns(copy)]
    pub span: Span,
    #[returns(ref)]
    pub path: PathBuf,
    #[returns(ref)]
    pub text: Result<Arc<str>, String>,
}

/// The files a `manifests "GLOB"` component names, read by whoever builds the workspace (the
/// database does no I/O): each file, or why the glob cannot be used (it matches nothing).
#[salsa::input(debug)]
pub struct ManifestSet {
    /// The `.apt` file of the component, and the glob as written there.
    #[returns(copy)]
    pub declared_in: FileId,
    #[returns(ref)]
    pub glob: String,
    #[returns(ref)]
    pub files: Result<Vec<ManifestFile>, String>,
}

/// The local chart a chart component names (`chart "./PATH"` without `repo`, by
/// [`aptc_core::ir::is_local_chart`]), looked at on disk by whoever builds the workspace (the
/// database does no I/O): what is at its path.
#[salsa::input(debug)]
pub struct LocalChart {
    /// The `.apt` file of the component, and the chart as written there.
    #[returns(copy)]
    pub declared_in: FileId,
    #[returns(ref)]
    pub chart: String,
    /// The chart's path: the declaring file's directory joined with the chart.
    #[returns(ref)]
    pub path: PathBuf,
    #[returns(ref)]
    pub on_disk: ChartOnDisk,
}

/// What is at a local chart's path ([`crate::workspace::probe_chart`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ChartOnDisk {
    /// A directory holding a `Chart.yaml` file: a chart Helm can read.
    Directory,
    /// A file named `*.tgz` or `*.tar.gz`: a packaged chart (its contents are not looked into).
    Archive,
    /// Nothing.
    Missing,
    /// A directory without a `Chart.yaml` file.
    NoChartYaml,
    /// A file that is not a packaged chart (`.tgz`).
    NotAChart,
    /// The path cannot be looked at (permissions, …): why.
    Unreadable(String),
}

impl ChartOnDisk {
    /// Whether Helm can be given it.
    pub fn is_usable(&self) -> bool {
        matches!(self, ChartOnDisk::Directory | ChartOnDisk::Archive)
    }
}

/// One manifest file: a template checked and lowered with its component (docs/language.md §5.2).
/// It has a [`FileId`] of its own, so diagnostics can point into it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ManifestFile {
    pub id: FileId,
    pub path: PathBuf,
    /// The path relative to the directory of the declaring file, `/`-separated.
    pub relative: String,
    /// Its text, or why it could not be read.
    pub text: Result<Arc<str>, String>,
}

impl Workspace {
    /// The manifest files of the component in `file` whose glob is `glob`; `None` when they were
    /// not loaded (a component added in an editor after the workspace was read).
    pub fn manifests_of<'db>(
        self,
        db: &'db dyn salsa::Database,
        file: FileId,
        glob: &str,
    ) -> Option<&'db Result<Vec<ManifestFile>, String>> {
        self.manifests(db)
            .iter()
            .find(|set| set.declared_in(db) == file && set.glob(db) == glob)
            .map(|set| set.files(db))
    }

    /// The local chart `chart` of a component in `file`; `None` when it was not looked at (a
    /// component added in an editor since the charts were last looked at).
    pub fn chart_of(self, db: &dyn salsa::Database, file: FileId, chart: &str) -> Option<LocalChart> {
        self.charts(db).iter().find(|c| c.declared_in(db) == file && c.chart(db) == chart).copied()
    }
}

/// Options that change what the checker reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Settings {
    /// Check the policy as this user would change it (`aptc check --as USER`).
    pub acting_user: Option<String>,
}

/// A diagnostic reported by a tracked function.
#[salsa::accumulator]
pub struct Reported(pub Diagnostic);

/// Reports a diagnostic from inside a tracked function.
pub fn report(db: &dyn salsa::Database, diagnostic: Diagnostic) {
    Reported(diagnostic).accumulate(db);
}

/// The database. Cheap to clone (clones share storage), as the language server needs.
#[salsa::db]
#[derive(Clone, Default)]
pub struct Database {
    storage: salsa::Storage<Self>,
}

#[salsa::db]
impl salsa::Database for Database {}

impl Database {
    /// A database whose storage calls `on_event` for every salsa event (for tests and tracing).
    pub fn with_event_hook(on_event: impl Fn(salsa::Event) + Send + Sync + 'static) -> Database {
        Database { storage: salsa::Storage::new(Some(Box::new(on_event))) }
    }

    /// A workspace holding every file of `sources`, in order.
    pub fn workspace(&mut self, sources: &SourceMap, settings: Settings) -> Workspace {
        let files =
            sources.iter().map(|(id, file)| SourceText::new(self, id, file.path.clone(), file.text.clone())).collect();
        Workspace::new(self, files, Vec::new(), Vec::new(), Vec::new(), settings)
    }

    /// Replaces the text of one file (an editor change); only what depends on it re-runs.
    pub fn set_text(&mut self, file: SourceText, text: Arc<str>) {
        file.set_text(self).to(text);
    }
}

/// The syntax tree of a file, with its syntax diagnostics. Evictable: unbounded unless the
/// database's owner sets a capacity (`host::Analysis` keeps one once its checks pass).
#[salsa::tracked(returns(ref), lru = 0)]
pub fn parse_file(db: &dyn salsa::Database, file: SourceText) -> Parse {
    syntax::parse(file.id(db), file.text(db))
}

/// Lets the database keep at most `trees` syntax trees (the most recently used) when it evicts
/// (`salsa::Database::trigger_lru_eviction`); 0, the default, keeps every tree.
pub fn keep_trees(db: &mut Database, trees: usize) {
    parse_file::set_lru_capacity(db, trees);
}

/// Reports the syntax and structural diagnostics of a file.
#[salsa::tracked]
pub fn check_syntax(db: &dyn salsa::Database, file: SourceText) {
    let parse = parse_file(db, file);
    for diagnostic in parse.diagnostics.iter().cloned().chain(validate::validate(file.id(db), &parse.file)) {
        report(db, diagnostic);
    }
}
