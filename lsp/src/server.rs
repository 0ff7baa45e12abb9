//! The language server: LSP requests mapped to `aptc_compiler::ide` queries.
//!
//! Notifications that change documents update the database synchronously, in the order they
//! arrive (the transport starts handlers in order, and these never wait before updating).
//! Requests take a snapshot of the database when they arrive and run the query on a thread of
//! its own with a large stack ([`QUERY_STACK`]), inside `catch_unwind`: a panic becomes an error response (and a log line), and a
//! query cancelled by a newer edit (salsa unwinds with `Cancelled`) answers "content
//! modified". Diagnostics come in two passes, each published per file and only where they
//! changed: an edit's document at once (its syntax and its own checks, which salsa redoes
//! incrementally, plus the whole-policy diagnostics of the last workspace pass moved along with
//! the edit), then, after [`DEBOUNCE`] without edits, the whole workspace. Clients that pull them
//! (`textDocument/diagnostic`) pull those of open documents, and are asked to pull again when the
//! workspace pass changes them.

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aptc_compiler::db::{Reported, check_syntax};
use aptc_compiler::semantics::charts::check_charts;
use aptc_compiler::semantics::file::check_file;
use aptc_compiler::source::FileId;
use aptc_compiler::{diagnostics, ide};
use salsa::Database as _;
use tower_lsp_server::jsonrpc::{Error, ErrorCode, Result};
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer};

use crate::convert::{self, LineIndex};
use crate::state::{Snapshot, State};

/// How long the workspace pass of diagnostics waits for the next edit. Checking the whole policy
/// takes ~100 ms at 100,000 lines, longer than between two keystrokes, and what it adds to the
/// edited document's own pass (other files, whole-policy checks) can wait for a pause.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// The files the client is asked to watch: policy files, the YAML (or JSON) of manifest
/// templates and users files, local charts (a chart directory appears or goes with its
/// `Chart.yaml`, a packaged chart is a `.tgz`) and `aptc.toml` files, which say what belongs to
/// which policy.
const WATCHED: [&str; 6] = ["**/*.apt", "**/*.yaml", "**/*.yml", "**/*.json", "**/*.tgz", "**/aptc.toml"];

/// Options of a server.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// For tests of the server's robustness: the request method (e.g. `textDocument/hover`)
    /// whose query panics, as a bug in the compiler would.
    pub panic_in: Option<String>,
}

/// The server.
pub struct Backend {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    options: Options,
    state: Mutex<Option<State>>,
    /// Bumped by every change of the state (under its lock); a diagnostics pass publishes only
    /// if it is still the latest.
    generation: AtomicU64,
    /// Held from checking the generation to publishing, so that an older pass never publishes
    /// after a newer one.
    publishing: tokio::sync::Mutex<()>,
    /// What the client shows for each file: the diagnostics last published there (files whose
    /// diagnostics did not change are not published again).
    published: Mutex<HashMap<Uri, Vec<Diagnostic>>>,
    /// Whether the client pulls the diagnostics of open documents (`textDocument/diagnostic`):
    /// then only other files' diagnostics are pushed, so that none is shown twice.
    pull: AtomicBool,
    /// Whether the client pulls again when asked (`workspace/diagnostic/refresh`).
    pull_refresh: AtomicBool,
    /// Whether the client can watch files for us ([`WATCHED`]).
    watch_files: AtomicBool,
}

impl Inner {
    /// A snapshot of the policies and the generation they are of.
    fn snapshots(&self) -> Option<(Vec<Snapshot>, u64)> {
        let guard = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Some((guard.as_ref()?.snapshots(), self.generation.load(Ordering::SeqCst)))
    }

    /// The first pass after an edit: the document's own diagnostics with the whole-policy ones
    /// it had, published at once (unless the client pulls them, or a newer edit came).
    async fn publish_document(&self, generation: u64, (policy, id): (usize, FileId)) {
        if self.pull.load(Ordering::Relaxed) {
            return;
        }
        let Some((mut snapshots, seen)) = self.snapshots() else { return };
        if seen != generation || policy >= snapshots.len() {
            return;
        }
        let snapshot = snapshots.swap_remove(policy);
        // An error is a check cancelled by a newer edit (which publishes its own), or a bug (logged).
        let Ok(Some((uri, version, diagnostics))) =
            on_query_thread("diagnostics", move || document_report(&snapshot, id)).await
        else {
            return;
        };
        let _publishing = self.publishing.lock().await;
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        {
            let mut published = self.published.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if published.get(&uri) == Some(&diagnostics) {
                return;
            }
            published.insert(uri.clone(), diagnostics.clone());
        }
        self.client.publish_diagnostics(uri, diagnostics, version).await;
    }

    /// The workspace pass: every file's diagnostics, published where they changed; the
    /// whole-policy part of each open document's is kept for the edits' first passes.
    async fn publish_workspace(&self, generation: u64) {
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        let Some((snapshots, seen)) = self.snapshots() else { return };
        if seen != generation {
            return;
        }
        // Each policy on its own; a file is in one policy only.
        let Ok((by_file, whole_policy)) = on_query_thread("diagnostics", move || {
            let mut by_file = Vec::new();
            let mut whole_policy = Vec::new();
            for snapshot in &snapshots {
                let found = diagnostics_by_file(snapshot);
                whole_policy.push(whole_policy_diagnostics(snapshot, &found));
                by_file.extend(found);
            }
            (by_file, whole_policy)
        })
        .await
        else {
            return;
        };
        let _publishing = self.publishing.lock().await;
        let pulled_changed = {
            let mut guard = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if self.generation.load(Ordering::SeqCst) != generation {
                return;
            }
            let Some(state) = guard.as_mut() else { return };
            let mut changed = false;
            for (policy, whole_policy) in state.policies.iter_mut().zip(whole_policy) {
                changed |= policy.whole_policy != whole_policy;
                policy.whole_policy = whole_policy;
            }
            changed
        };
        let pull = self.pull.load(Ordering::Relaxed);
        if pull && pulled_changed && self.pull_refresh.load(Ordering::Relaxed) {
            // What other files do changed what open documents show: the client pulls them again.
            if let Err(error) = self.client.workspace_diagnostic_refresh().await {
                tracing::warn!("asking the client to pull diagnostics again: {error}");
            }
        }
        let by_file = by_file.into_iter().filter(|(_, version, _)| !(pull && version.is_some()));
        let changes = {
            let mut published = self.published.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            changed_diagnostics(&mut published, by_file.collect())
        };
        for (uri, version, diagnostics) in changes {
            self.client.publish_diagnostics(uri, diagnostics, version).await;
        }
    }
}

impl Backend {
    pub fn new(client: Client, options: Options) -> Backend {
        Backend {
            inner: Arc::new(Inner {
                client,
                options,
                state: Mutex::new(None),
                generation: AtomicU64::new(0),
                publishing: tokio::sync::Mutex::new(()),
                published: Mutex::new(HashMap::new()),
                pull: AtomicBool::new(false),
                pull_refresh: AtomicBool::new(false),
                watch_files: AtomicBool::new(false),
            }),
        }
    }

    /// Runs `f` on the state, if the workspace is loaded.
    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> Option<T> {
        let mut guard = self.inner.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.as_mut().map(f)
    }

    /// Runs a query on a snapshot of the policy of `uri` taken now, on a blocking thread; panics
    /// and cancellation become error responses. Answers stay within that policy.
    async fn query<T: Send + 'static>(
        &self,
        method: &'static str,
        uri: &Uri,
        f: impl FnOnce(&Snapshot) -> Option<T> + Send + 'static,
    ) -> Result<Option<T>> {
        let Some(snapshot) = self.with_state(|state| state.snapshot_for(uri)).flatten() else { return Ok(None) };
        let inject = self.inner.options.panic_in.as_deref() == Some(method);
        on_query_thread(method, move || {
            if inject {
                panic!("injected panic in {method}");
            }
            f(&snapshot)
        })
        .await
    }

    /// A change of the state that needs diagnostics again: `f` runs on the state and the
    /// generation is bumped under the same lock (so a pass's snapshot and generation agree);
    /// then the passes are scheduled, the document's first when `f` returns one.
    fn change<T>(&self, f: impl FnOnce(&mut State) -> Option<((usize, FileId), T)>) -> Option<T> {
        let (generation, edited) = {
            let mut guard = self.inner.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let edited = guard.as_mut().and_then(f);
            (self.inner.generation.fetch_add(1, Ordering::SeqCst) + 1, edited)
        };
        let inner = self.inner.clone();
        let document = edited.as_ref().map(|(id, _)| *id);
        tokio::spawn(async move {
            if let Some(id) = document {
                inner.publish_document(generation, id).await;
            }
            tokio::time::sleep(DEBOUNCE).await;
            inner.publish_workspace(generation).await;
        });
        edited.map(|(_, value)| value)
    }

    /// Verifies the assertions of the policy of a saved file, keeps what was found for its
    /// diagnostics, and publishes them; dropped when an edit came meanwhile (it was about the
    /// saved text).
    async fn verify_saved(&self, uri: Uri) {
        let generation = self.inner.generation.load(Ordering::SeqCst);
        let Some(snapshot) = self.with_state(|state| state.snapshot_for(&uri)).flatten() else { return };
        let Ok(found) = on_query_thread("verify", move || assertion_diagnostics(&snapshot)).await else { return };
        self.change(|state| {
            if self.inner.generation.load(Ordering::SeqCst) == generation
                && let Some((i, _)) = state.find(&uri)
            {
                state.policies[i].assertions = found;
            }
            None::<((usize, FileId), ())>
        });
    }

    /// Schedules the workspace pass of diagnostics.
    fn schedule_diagnostics(&self) {
        self.change(|_| None::<((usize, FileId), ())>);
    }

    async fn publish_empty(&self, uri: Uri) {
        let shown = self.inner.published.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&uri);
        if shown.is_none_or(|diagnostics| diagnostics.is_empty()) {
            return;
        }
        self.inner.client.publish_diagnostics(uri, Vec::new(), None).await;
    }
}

/// Of the diagnostics of every file to show (`now`), those the client does not show yet, with
/// empty lists for files it shows diagnostics for that are no longer there; `published` becomes
/// what the client shows then.
fn changed_diagnostics(
    published: &mut HashMap<Uri, Vec<Diagnostic>>,
    now: Vec<(Uri, Option<i32>, Vec<Diagnostic>)>,
) -> Vec<(Uri, Option<i32>, Vec<Diagnostic>)> {
    let current: HashSet<&Uri> = now.iter().map(|(uri, _, _)| uri).collect();
    let gone: Vec<Uri> = published.keys().filter(|uri| !current.contains(uri)).cloned().collect();
    let mut changes = Vec::new();
    for uri in gone {
        if published.remove(&uri).is_some_and(|shown| !shown.is_empty()) {
            changes.push((uri, None, Vec::new()));
        }
    }
    for (uri, version, diagnostics) in now {
        if published.get(&uri) != Some(&diagnostics) {
            published.insert(uri.clone(), diagnostics.clone());
            changes.push((uri, version, diagnostics));
        }
    }
    changes
}

/// A result id for pulled diagnostics: equal ids, equal diagnostics.
fn result_id(diagnostics: &[Diagnostic]) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(diagnostics).unwrap_or_default().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// The stack of the threads that run queries. The compiler recurses over the syntax tree, and
/// deeply nested input (thousands of `not not …` in one file) must not overflow the stack: that
/// aborts the whole process, which no `catch_unwind` prevents. The parser bounds nesting too;
/// this is the defence for the passes after it. Only the pages used are ever committed.
const QUERY_STACK: usize = 256 << 20;

/// Runs `f` (which owns its snapshot, so the snapshot is let go when it ends) on a thread of
/// its own with [`QUERY_STACK`], inside `catch_unwind`: panics and cancellation become errors.
async fn on_query_thread<T: Send + 'static>(method: &'static str, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let (send, receive) = tokio::sync::oneshot::channel();
    let spawned =
        std::thread::Builder::new().name(format!("aptc-lsp {method}")).stack_size(QUERY_STACK).spawn(move || {
            let _ = send.send(catch_unwind(AssertUnwindSafe(f)));
        });
    if let Err(error) = spawned {
        tracing::error!("{method}: no thread for the query: {error}");
        return Err(Error::internal_error());
    }
    match receive.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(payload)) => Err(failure(method, payload)),
        Err(_) => {
            tracing::error!("{method}: the query thread ended without an answer");
            Err(Error::internal_error())
        }
    }
}

/// The error for a query that panicked: "content modified" when salsa cancelled it because
/// of a newer edit; otherwise an internal error, logged with the panic's message.
fn failure(method: &str, payload: Box<dyn std::any::Any + Send>) -> Error {
    if payload.downcast_ref::<salsa::Cancelled>().is_some() {
        tracing::debug!("{method}: cancelled by a newer edit");
        return Error::new(ErrorCode::ContentModified);
    }
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!("{method}: the query panicked: {message}; the server goes on");
    let mut error = Error::internal_error();
    error.message = format!("aptc failed on this request ({message}); the server goes on").into();
    error
}

/// Every diagnostic of the workspace, grouped by file, for the files to publish: open
/// documents (even when clean) and files that have diagnostics.
///
/// File by file: each file's own checks are queries of their own, and salsa sees a newer edit
/// at each query, so an edit cancels the pass between files instead of waiting for the whole
/// policy (issue #13). The whole-policy checks come last (the access checks look for
/// cancellation between subjects and files too), then the conversion, which looks between files.
fn diagnostics_by_file(s: &Snapshot) -> Vec<(Uri, Option<i32>, Vec<Diagnostic>)> {
    for &file in s.ws.files(&s.db) {
        check_syntax(&s.db, file);
        check_file(&s.db, s.ws, file);
    }
    let mut by_file = to_lsp(s, &aptc_compiler::check::diagnostics(&s.db, s.ws));
    for (id, found) in &s.assertions {
        let Some(uri) = s.files.uri(*id) else { continue };
        by_file.entry(*id).or_insert_with(|| (uri.clone(), Vec::new())).1.extend(found.iter().cloned());
    }
    for id in s.open.keys() {
        if let Some(uri) = s.files.uri(*id) {
            by_file.entry(*id).or_insert_with(|| (uri.clone(), Vec::new()));
        }
    }
    let mut found: Vec<(Uri, Option<i32>, Vec<Diagnostic>)> = by_file
        .into_iter()
        .map(|(id, (uri, mut diagnostics))| {
            sort(&mut diagnostics);
            (uri, s.open.get(&id).copied(), diagnostics)
        })
        .collect();
    found.extend(config_diagnostic(s));
    found
}

/// The policy's assertions verified (`compiler::assertions`), by file: violated ones as errors,
/// undecided ones as warnings, proved ones as hints at the assertion's name (editors show a hint
/// faintly, with its message on hover). Nothing for a policy with errors.
fn assertion_diagnostics(s: &Snapshot) -> HashMap<FileId, Vec<Diagnostic>> {
    let Some(verified) = aptc_compiler::assertions::verify_workspace(&s.db, s.ws) else { return HashMap::new() };
    let mut found: HashMap<FileId, Vec<Diagnostic>> =
        to_lsp(s, &verified.diagnostics).into_iter().map(|(id, (_, d))| (id, d)).collect();
    for (file, span, message) in verified.proved {
        let Some(input) = s.files.input(file) else { continue };
        let text = s.text(input);
        found.entry(file).or_default().push(Diagnostic {
            range: LineIndex::new(&text).range(span),
            severity: Some(DiagnosticSeverity::HINT),
            source: Some("aptc".into()),
            message,
            ..Diagnostic::default()
        });
    }
    found
}

/// The error of a policy's `aptc.toml` that cannot be read, on that file (its first line: the
/// message says where in it).
fn config_diagnostic(s: &Snapshot) -> Option<(Uri, Option<i32>, Vec<Diagnostic>)> {
    let (file, message) = s.config_error.as_ref()?;
    let uri = Uri::from_file_path(file)?;
    let diagnostic = Diagnostic {
        range: Range::default(),
        severity: Some(DiagnosticSeverity::ERROR),
        source: Some("aptc".into()),
        message: message.clone(),
        ..Diagnostic::default()
    };
    Some((uri, None, vec![diagnostic]))
}

/// The diagnostics of one file's own checks (syntax, and the file against the index), which
/// salsa redoes only for what an edit touched: its URI, version, and diagnostics.
fn document_diagnostics(s: &Snapshot, id: FileId) -> Option<(Uri, Option<i32>, Vec<Diagnostic>)> {
    let input = s.files.input(id)?;
    let reported = check_syntax::accumulated::<Reported>(&s.db, input);
    let checked = check_file::accumulated::<Reported>(&s.db, s.ws, input);
    let charts = check_charts::accumulated::<Reported>(&s.db, s.ws, input);
    let mut own: Vec<_> = reported
        .into_iter()
        .chain(checked)
        .chain(charts)
        .map(|r| r.0.clone())
        .filter(|d| d.primary.file == id)
        .collect();
    diagnostics::sort(&mut own);
    own.dedup();
    let mut diagnostics = to_lsp(s, &own).remove(&id).map(|(_, d)| d).unwrap_or_default();
    sort(&mut diagnostics);
    Some((s.files.uri(id)?.clone(), s.open.get(&id).copied(), diagnostics))
}

/// What an open document shows: its own diagnostics and the whole-policy ones it had.
fn document_report(s: &Snapshot, id: FileId) -> Option<(Uri, Option<i32>, Vec<Diagnostic>)> {
    let (uri, version, mut diagnostics) = document_diagnostics(s, id)?;
    diagnostics.extend(s.whole_policy.get(&id).into_iter().flatten().cloned());
    sort(&mut diagnostics);
    Some((uri, version, diagnostics))
}

/// Of each open document's diagnostics in `by_file` (a workspace pass), those its own checks
/// did not report: the whole-policy ones.
fn whole_policy_diagnostics(
    s: &Snapshot,
    by_file: &[(Uri, Option<i32>, Vec<Diagnostic>)],
) -> HashMap<FileId, Vec<Diagnostic>> {
    let all: HashMap<&Uri, &Vec<Diagnostic>> = by_file.iter().map(|(uri, _, d)| (uri, d)).collect();
    let mut whole_policy = HashMap::new();
    for &id in s.open.keys() {
        let Some((uri, _, own)) = document_diagnostics(s, id) else { continue };
        let mut own: Vec<&Diagnostic> = own.iter().collect();
        let mut rest = Vec::new();
        for d in all.get(&uri).copied().into_iter().flatten() {
            match own.iter().position(|o| *o == d) {
                Some(i) => {
                    own.swap_remove(i);
                }
                None => rest.push(d.clone()),
            }
        }
        if !rest.is_empty() {
            whole_policy.insert(id, rest);
        }
    }
    whole_policy
}

/// The order diagnostics are published in, whichever pass found them (so that equal sets
/// compare equal): by position, then message.
fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| (a.range.start, a.range.end, &a.message).cmp(&(b.range.start, b.range.end, &b.message)));
}

/// Compiler diagnostics as LSP ones, grouped by the file they are in (with its URI; policy
/// files and manifest templates); those in files without a URI are left out.
fn to_lsp(s: &Snapshot, all: &[aptc_compiler::diagnostics::Diagnostic]) -> HashMap<FileId, (Uri, Vec<Diagnostic>)> {
    // Manifest files (read when the workspace was loaded), which diagnostics may point into too.
    let manifests: HashMap<FileId, (Uri, Arc<str>)> =
        s.ws.manifests(&s.db)
            .iter()
            .flat_map(|set| set.files(&s.db).iter().flatten())
            .filter_map(|file| Some((file.id, (Uri::from_file_path(&file.path)?, file.text.clone().ok()?))))
            .collect();
    let uri = |file: FileId| s.files.uri(file).or_else(|| manifests.get(&file).map(|(uri, _)| uri));
    // The texts of the files the diagnostics point into, then one line index for each.
    let mut texts: HashMap<FileId, Arc<str>> = HashMap::new();
    for d in all {
        s.db.unwind_if_revision_cancelled();
        for file in d.labels.iter().map(|l| l.file).chain([d.primary.file]) {
            if texts.contains_key(&file) || uri(file).is_none() {
                continue;
            }
            if let Some(input) = s.files.input(file) {
                texts.insert(file, s.text(input));
            } else if let Some((_, text)) = manifests.get(&file) {
                texts.insert(file, text.clone());
            }
        }
    }
    let lines: HashMap<FileId, LineIndex> = texts
        .iter()
        .map(|(id, text)| {
            s.db.unwind_if_revision_cancelled();
            (*id, LineIndex::new(text))
        })
        .collect();
    let locate = |file: FileId, span| {
        let uri = uri(file)?.clone();
        Some(Location { uri, range: lines.get(&file)?.range(span) })
    };
    let mut by_file: HashMap<FileId, (Uri, Vec<Diagnostic>)> = HashMap::new();
    for d in all {
        let (Some(primary), Some(uri)) = (lines.get(&d.primary.file), uri(d.primary.file)) else { continue };
        let range = primary.range(d.primary.span);
        let entry = by_file.entry(d.primary.file).or_insert_with(|| (uri.clone(), Vec::new()));
        entry.1.push(convert::diagnostic(d, range, &locate));
    }
    by_file
}

/// The workspace folders of an `initialize` request.
fn roots(params: &InitializeParams) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = params
        .workspace_folders
        .iter()
        .flatten()
        .filter_map(|folder| folder.uri.to_file_path().map(|p| p.into_owned()))
        .collect();
    #[allow(deprecated)] // older clients send only `rootUri`
    if roots.is_empty()
        && let Some(root) = params.root_uri.as_ref().and_then(|uri| uri.to_file_path())
    {
        roots.push(root.into_owned());
    }
    roots
}

fn location(s: &Snapshot, place: ide::FileSpan) -> Option<Location> {
    let uri = s.files.uri(place.file)?.clone();
    let input = s.files.input(place.file)?;
    let text = s.text(input);
    Some(Location { uri, range: LineIndex::new(&text).range(place.span) })
}

fn workspace_edit(s: &Snapshot, edits: Vec<ide::Edit>) -> Option<WorkspaceEdit> {
    let mut changes: HashMap<Uri, Vec<TextEdit>> = HashMap::new();
    let mut texts: HashMap<FileId, Arc<str>> = HashMap::new();
    for edit in edits {
        let uri = s.files.uri(edit.file)?.clone();
        let text = match texts.get(&edit.file) {
            Some(text) => text.clone(),
            None => {
                let text = s.text(s.files.input(edit.file)?);
                texts.insert(edit.file, text.clone());
                text
            }
        };
        let range = LineIndex::new(&text).range(edit.span);
        changes.entry(uri).or_default().push(TextEdit { range, new_text: edit.text });
    }
    Some(WorkspaceEdit { changes: Some(changes), ..WorkspaceEdit::default() })
}

impl LanguageServer for Backend {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        let roots = roots(&params);
        let watches = params
            .capabilities
            .workspace
            .as_ref()
            .and_then(|w| w.did_change_watched_files.as_ref())
            .and_then(|w| w.dynamic_registration)
            .unwrap_or(false);
        self.inner.watch_files.store(watches, Ordering::Relaxed);
        let pull = params.capabilities.text_document.as_ref().is_some_and(|t| t.diagnostic.is_some());
        self.inner.pull.store(pull, Ordering::Relaxed);
        let refresh = params.capabilities.workspace.as_ref().and_then(|w| w.diagnostics.as_ref());
        self.inner.pull_refresh.store(refresh.and_then(|d| d.refresh_support).unwrap_or(false), Ordering::Relaxed);
        let state = State::load(roots);
        let policies = state.policies.iter().filter(|p| p.config.is_some()).count();
        tracing::info!("{policies} policies with an aptc.toml under {} folders", state.roots.len());
        *self.inner.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(state);
        let capabilities = ServerCapabilities {
            text_document_sync: Some(TextDocumentSyncCapability::Options(TextDocumentSyncOptions {
                open_close: Some(true),
                change: Some(TextDocumentSyncKind::INCREMENTAL),
                save: Some(TextDocumentSyncSaveOptions::Supported(true)),
                ..TextDocumentSyncOptions::default()
            })),
            completion_provider: Some(CompletionOptions {
                trigger_characters: Some([".", "{", "\""].map(String::from).to_vec()),
                ..CompletionOptions::default()
            }),
            hover_provider: Some(HoverProviderCapability::Simple(true)),
            signature_help_provider: Some(SignatureHelpOptions {
                trigger_characters: Some(vec!["(".into(), ",".into()]),
                retrigger_characters: None,
                work_done_progress_options: WorkDoneProgressOptions::default(),
            }),
            definition_provider: Some(OneOf::Left(true)),
            references_provider: Some(OneOf::Left(true)),
            document_highlight_provider: Some(OneOf::Left(true)),
            rename_provider: Some(OneOf::Right(RenameOptions {
                prepare_provider: Some(true),
                work_done_progress_options: WorkDoneProgressOptions::default(),
            })),
            document_symbol_provider: Some(OneOf::Left(true)),
            workspace_symbol_provider: Some(OneOf::Left(true)),
            document_formatting_provider: Some(OneOf::Left(true)),
            semantic_tokens_provider: Some(SemanticTokensServerCapabilities::SemanticTokensOptions(
                SemanticTokensOptions {
                    legend: convert::legend(),
                    full: Some(SemanticTokensFullOptions::Bool(true)),
                    range: None,
                    work_done_progress_options: WorkDoneProgressOptions::default(),
                },
            )),
            folding_range_provider: Some(FoldingRangeProviderCapability::Simple(true)),
            code_action_provider: Some(CodeActionProviderCapability::Options(CodeActionOptions {
                code_action_kinds: Some(vec![CodeActionKind::QUICKFIX]),
                ..CodeActionOptions::default()
            })),
            inlay_hint_provider: Some(OneOf::Left(true)),
            diagnostic_provider: pull.then(|| {
                DiagnosticServerCapabilities::Options(DiagnosticOptions {
                    identifier: Some("aptc".to_string()),
                    inter_file_dependencies: true,
                    workspace_diagnostics: false,
                    work_done_progress_options: WorkDoneProgressOptions::default(),
                })
            }),
            workspace: Some(WorkspaceServerCapabilities {
                workspace_folders: Some(WorkspaceFoldersServerCapabilities {
                    supported: Some(true),
                    change_notifications: Some(OneOf::Left(true)),
                }),
                file_operations: None,
            }),
            ..ServerCapabilities::default()
        };
        Ok(InitializeResult {
            capabilities,
            server_info: Some(ServerInfo { name: "aptc".to_string(), version: Some(env!("CARGO_PKG_VERSION").into()) }),
            ..InitializeResult::default()
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        // Files change on disk behind the editor's back (git checkout, generators, other tools),
        // and manifest templates and users files are files the editor does not send us: ask it
        // to tell us about them (when it can), so that the checks stay current.
        if self.inner.watch_files.load(Ordering::Relaxed) {
            let watchers = WATCHED
                .map(|glob| FileSystemWatcher { glob_pattern: GlobPattern::String(glob.to_string()), kind: None })
                .to_vec();
            let options = DidChangeWatchedFilesRegistrationOptions { watchers };
            let registration = Registration {
                id: "aptc-files".to_string(),
                method: "workspace/didChangeWatchedFiles".to_string(),
                register_options: serde_json::to_value(options).ok(),
            };
            if let Err(error) = self.inner.client.register_capability(vec![registration]).await {
                tracing::warn!("the client refused to watch files: {error}");
            }
        }
        // Problems of the whole workspace, not only of the documents that get opened.
        self.schedule_diagnostics();
    }

    async fn did_save(&self, params: DidSaveTextDocumentParams) {
        // A saved policy file may add or change a `manifests` component or a `users from`.
        self.with_state(State::refresh_referenced);
        self.schedule_diagnostics();
        // Then its policy's assertions, off this handler (proving may take a moment).
        let backend = Backend { inner: self.inner.clone() };
        tokio::spawn(async move { backend.verify_saved(params.text_document.uri).await });
    }

    async fn did_change_watched_files(&self, params: DidChangeWatchedFilesParams) {
        self.with_state(|state| {
            let mut roots_changed = false;
            for change in &params.changes {
                roots_changed |= state.changed_on_disk(&change.uri, change.typ == FileChangeType::DELETED);
            }
            if roots_changed {
                // An aptc.toml came, went or changed: what belongs to which policy may have.
                state.reload(state.roots.clone());
            } else {
                state.refresh_referenced();
            }
        });
        self.schedule_diagnostics();
    }

    async fn did_change_workspace_folders(&self, params: DidChangeWorkspaceFoldersParams) {
        let paths = |folders: &[WorkspaceFolder]| -> Vec<PathBuf> {
            folders.iter().filter_map(|f| f.uri.to_file_path().map(|p| p.into_owned())).collect()
        };
        let (added, removed) = (paths(&params.event.added), paths(&params.event.removed));
        self.with_state(|state| {
            let mut roots: Vec<PathBuf> = state.roots.iter().filter(|r| !removed.contains(r)).cloned().collect();
            roots.extend(added.into_iter().filter(|r| !state.roots.contains(r)));
            state.reload(roots);
        });
        self.schedule_diagnostics();
    }

    async fn shutdown(&self) -> Result<()> {
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        let document = params.text_document;
        self.change(|state| Some((state.open(&document.uri, &document.text, document.version), ())));
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        let uri = params.text_document.uri;
        let version = params.text_document.version;
        let applied = self.change(|state| {
            let (policy, id) = state.find(&uri)?;
            let state = &mut state.policies[policy];
            let mut text = state.text_of(id)?;
            for change in &params.content_changes {
                convert::apply_change(&mut text, change);
            }
            state.set_text(id, &text);
            state.open.insert(id, version);
            state.assertions.clear();
            if let Some(whole_policy) = state.whole_policy.get_mut(&id) {
                let moved = std::mem::take(whole_policy).into_iter().filter_map(|mut d| {
                    let shift = |range| params.content_changes.iter().try_fold(range, convert::shift_range);
                    d.range = shift(d.range)?;
                    for related in d.related_information.iter_mut().flatten().filter(|r| r.location.uri == uri) {
                        related.location.range = shift(related.location.range)?;
                    }
                    Some(d)
                });
                *whole_policy = moved.collect();
            }
            Some(((policy, id), ()))
        });
        if applied.is_none() {
            tracing::warn!("didChange for a document that is not open: {}", uri.as_str());
        }
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        let left = self.with_state(|state| state.close(&params.text_document.uri)).flatten();
        if let Some(uri) = left {
            self.publish_empty(uri).await;
        }
        self.schedule_diagnostics();
    }

    async fn diagnostic(&self, params: DocumentDiagnosticParams) -> Result<DocumentDiagnosticReportResult> {
        let wanted = crate::state::key(&params.text_document.uri);
        let previous = params.previous_result_id;
        let items = self
            .query("textDocument/diagnostic", &params.text_document.uri.clone(), move |s| {
                // An open document's are quick to get; another file's need the workspace pass.
                let open =
                    s.file(&params.text_document.uri).map(|file| file.id(&s.db)).filter(|id| s.open.contains_key(id));
                if let Some(id) = open {
                    return Some(document_report(s, id).map(|(_, _, diagnostics)| diagnostics).unwrap_or_default());
                }
                let by_file = diagnostics_by_file(s);
                let found = by_file.into_iter().find(|(uri, _, _)| crate::state::key(uri) == wanted);
                Some(found.map(|(_, _, diagnostics)| diagnostics).unwrap_or_default())
            })
            .await?
            .unwrap_or_default();
        let id = result_id(&items);
        let report = if previous.as_deref() == Some(id.as_str()) {
            DocumentDiagnosticReport::Unchanged(RelatedUnchangedDocumentDiagnosticReport {
                related_documents: None,
                unchanged_document_diagnostic_report: UnchangedDocumentDiagnosticReport { result_id: id },
            })
        } else {
            DocumentDiagnosticReport::Full(RelatedFullDocumentDiagnosticReport {
                related_documents: None,
                full_document_diagnostic_report: FullDocumentDiagnosticReport { result_id: Some(id), items },
            })
        };
        Ok(DocumentDiagnosticReportResult::Report(report))
    }

    async fn completion(&self, params: CompletionParams) -> Result<Option<CompletionResponse>> {
        let TextDocumentPositionParams { text_document, position } = params.text_document_position;
        self.query("textDocument/completion", &text_document.uri.clone(), move |s| {
            let file = s.file(&text_document.uri)?;
            let text = s.text(file);
            let lines = LineIndex::new(&text);
            let found = ide::completions(&s.db, s.ws, file, lines.offset(position));
            let range = lines.range(found.replace);
            let items = found.items.into_iter().map(|item| convert::completion(item, range)).collect();
            Some(CompletionResponse::Array(items))
        })
        .await
    }

    async fn hover(&self, params: HoverParams) -> Result<Option<Hover>> {
        let TextDocumentPositionParams { text_document, position } = params.text_document_position_params;
        self.query("textDocument/hover", &text_document.uri.clone(), move |s| {
            let file = s.file(&text_document.uri)?;
            let text = s.text(file);
            let lines = LineIndex::new(&text);
            let hover = ide::hover(&s.db, s.ws, file, lines.offset(position))?;
            Some(Hover {
                contents: HoverContents::Markup(MarkupContent { kind: MarkupKind::Markdown, value: hover.markdown }),
                range: Some(lines.range(hover.span)),
            })
        })
        .await
    }

    async fn signature_help(&self, params: SignatureHelpParams) -> Result<Option<SignatureHelp>> {
        let TextDocumentPositionParams { text_document, position } = params.text_document_position_params;
        self.query("textDocument/signatureHelp", &text_document.uri.clone(), move |s| {
            let file = s.file(&text_document.uri)?;
            let offset = LineIndex::new(&s.text(file)).offset(position);
            let help = ide::signature_help(&s.db, s.ws, file, offset)?;
            let parameters = help
                .parameters
                .iter()
                .map(|&(start, end)| ParameterInformation {
                    label: ParameterLabel::LabelOffsets([
                        help.label[..start as usize].encode_utf16().count() as u32,
                        help.label[..end as usize].encode_utf16().count() as u32,
                    ]),
                    documentation: None,
                })
                .collect();
            let documentation = help
                .docs
                .map(|docs| Documentation::MarkupContent(MarkupContent { kind: MarkupKind::Markdown, value: docs }));
            Some(SignatureHelp {
                signatures: vec![SignatureInformation {
                    label: help.label,
                    documentation,
                    parameters: Some(parameters),
                    active_parameter: Some(help.active),
                }],
                active_signature: Some(0),
                active_parameter: Some(help.active),
            })
        })
        .await
    }

    async fn goto_definition(&self, params: GotoDefinitionParams) -> Result<Option<GotoDefinitionResponse>> {
        let TextDocumentPositionParams { text_document, position } = params.text_document_position_params;
        self.query("textDocument/definition", &text_document.uri.clone(), move |s| {
            let file = s.file(&text_document.uri)?;
            let offset = LineIndex::new(&s.text(file)).offset(position);
            let mut found: Vec<Location> =
                ide::definition_at(&s.db, s.ws, file, offset).into_iter().filter_map(|d| location(s, d)).collect();
            match found.len() {
                0 => None,
                1 => found.pop().map(GotoDefinitionResponse::Scalar),
                _ => Some(GotoDefinitionResponse::Array(found)),
            }
        })
        .await
    }

    async fn references(&self, params: ReferenceParams) -> Result<Option<Vec<Location>>> {
        let TextDocumentPositionParams { text_document, position } = params.text_document_position;
        let include = params.context.include_declaration;
        self.query("textDocument/references", &text_document.uri.clone(), move |s| {
            let file = s.file(&text_document.uri)?;
            let offset = LineIndex::new(&s.text(file)).offset(position);
            let found = ide::references(&s.db, s.ws, file, offset, include);
            Some(found.into_iter().filter_map(|r| location(s, r)).collect())
        })
        .await
    }

    async fn document_highlight(&self, params: DocumentHighlightParams) -> Result<Option<Vec<DocumentHighlight>>> {
        let TextDocumentPositionParams { text_document, position } = params.text_document_position_params;
        self.query("textDocument/documentHighlight", &text_document.uri.clone(), move |s| {
            let file = s.file(&text_document.uri)?;
            let text = s.text(file);
            let lines = LineIndex::new(&text);
            let id = file.id(&s.db);
            let found = ide::references(&s.db, s.ws, file, lines.offset(position), true);
            Some(
                found
                    .into_iter()
                    .filter(|r| r.file == id)
                    .map(|r| DocumentHighlight { range: lines.range(r.span), kind: Some(DocumentHighlightKind::TEXT) })
                    .collect(),
            )
        })
        .await
    }

    async fn prepare_rename(&self, params: TextDocumentPositionParams) -> Result<Option<PrepareRenameResponse>> {
        let TextDocumentPositionParams { text_document, position } = params;
        let answer = self
            .query("textDocument/prepareRename", &text_document.uri.clone(), move |s| {
                let file = s.file(&text_document.uri)?;
                let text = s.text(file);
                let lines = LineIndex::new(&text);
                Some(
                    ide::prepare_rename(&s.db, s.ws, file, lines.offset(position))
                        .map(|(span, _)| PrepareRenameResponse::Range(lines.range(span))),
                )
            })
            .await?;
        match answer {
            Some(Ok(range)) => Ok(Some(range)),
            Some(Err(refused)) => Err(Error::invalid_params(refused.to_string())),
            None => Ok(None),
        }
    }

    async fn rename(&self, params: RenameParams) -> Result<Option<WorkspaceEdit>> {
        let TextDocumentPositionParams { text_document, position } = params.text_document_position;
        let new_name = params.new_name;
        let answer = self
            .query("textDocument/rename", &text_document.uri.clone(), move |s| {
                let file = s.file(&text_document.uri)?;
                let offset = LineIndex::new(&s.text(file)).offset(position);
                Some(ide::rename(&s.db, s.ws, file, offset, &new_name).map(|edits| workspace_edit(s, edits)))
            })
            .await?;
        match answer {
            Some(Ok(edit)) => Ok(edit),
            Some(Err(refused)) => Err(Error::invalid_params(refused.to_string())),
            None => Ok(None),
        }
    }

    async fn document_symbol(&self, params: DocumentSymbolParams) -> Result<Option<DocumentSymbolResponse>> {
        self.query("textDocument/documentSymbol", &params.text_document.uri.clone(), move |s| {
            let file = s.file(&params.text_document.uri)?;
            let text = s.text(file);
            let lines = LineIndex::new(&text);
            let symbols = ide::document_symbols(&s.db, file);
            Some(DocumentSymbolResponse::Nested(
                symbols.into_iter().map(|symbol| convert::document_symbol(symbol, &lines)).collect(),
            ))
        })
        .await
    }

    async fn symbol(&self, params: WorkspaceSymbolParams) -> Result<Option<WorkspaceSymbolResponse>> {
        // Every policy's symbols.
        let Some(snapshots) = self.with_state(|state| state.snapshots()) else { return Ok(None) };
        let inject = self.inner.options.panic_in.as_deref() == Some("workspace/symbol");
        on_query_thread("workspace/symbol", move || {
            if inject {
                panic!("injected panic in workspace/symbol");
            }
            #[allow(deprecated)] // `SymbolInformation::deprecated` must be set, to `None`
            let symbols = snapshots
                .iter()
                .flat_map(|s| ide::workspace_symbols(&s.db, s.ws, &params.query, 500).into_iter().map(move |w| (s, w)))
                .take(500)
                .filter_map(|(s, w)| {
                    let location = location(s, ide::FileSpan { file: w.file, span: w.symbol.selection })?;
                    Some(SymbolInformation {
                        name: w.symbol.name,
                        kind: convert::symbol_kind(w.symbol.kind),
                        tags: None,
                        deprecated: None,
                        location,
                        container_name: w.container,
                    })
                })
                .collect();
            Some(WorkspaceSymbolResponse::Flat(symbols))
        })
        .await
    }

    async fn formatting(&self, params: DocumentFormattingParams) -> Result<Option<Vec<TextEdit>>> {
        self.query("textDocument/formatting", &params.text_document.uri.clone(), move |s| {
            let file = s.file(&params.text_document.uri)?;
            let text = s.text(file);
            // A file with syntax errors is left as it is (as `aptc fmt` does).
            let formatted = ide::format(&s.db, file)?;
            if *formatted == *text {
                return Some(Vec::new());
            }
            Some(vec![TextEdit { range: LineIndex::new(&text).everything(), new_text: formatted }])
        })
        .await
    }

    async fn semantic_tokens_full(&self, params: SemanticTokensParams) -> Result<Option<SemanticTokensResult>> {
        self.query("textDocument/semanticTokens/full", &params.text_document.uri.clone(), move |s| {
            let file = s.file(&params.text_document.uri)?;
            let text = s.text(file);
            let tokens = ide::semantic_tokens(&s.db, s.ws, file);
            let data = convert::semantic_tokens(&tokens, &LineIndex::new(&text));
            Some(SemanticTokensResult::Tokens(SemanticTokens { result_id: None, data }))
        })
        .await
    }

    async fn folding_range(&self, params: FoldingRangeParams) -> Result<Option<Vec<FoldingRange>>> {
        self.query("textDocument/foldingRange", &params.text_document.uri.clone(), move |s| {
            let file = s.file(&params.text_document.uri)?;
            let text = s.text(file);
            let lines = LineIndex::new(&text);
            let folds = ide::folding_ranges(&s.db, file);
            Some(folds.into_iter().filter_map(|fold| convert::folding_range(fold, &lines)).collect())
        })
        .await
    }

    async fn code_action(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        self.query("textDocument/codeAction", &params.text_document.uri.clone(), move |s| {
            let file = s.file(&params.text_document.uri)?;
            let text = s.text(file);
            let lines = LineIndex::new(&text);
            let actions = ide::code_actions(&s.db, s.ws, file, lines.span(params.range));
            let locate = |file: FileId, span| location(s, ide::FileSpan { file, span });
            let response = actions
                .into_iter()
                .filter_map(|action| {
                    let diagnostics = action
                        .diagnostic
                        .as_ref()
                        .map(|d| vec![convert::diagnostic(d, lines.range(d.primary.span), &locate)]);
                    Some(CodeActionOrCommand::CodeAction(CodeAction {
                        title: action.title,
                        kind: Some(CodeActionKind::QUICKFIX),
                        diagnostics,
                        edit: Some(workspace_edit(s, action.edits)?),
                        is_preferred: Some(action.preferred),
                        ..CodeAction::default()
                    }))
                })
                .collect();
            Some(response)
        })
        .await
    }

    async fn inlay_hint(&self, params: InlayHintParams) -> Result<Option<Vec<InlayHint>>> {
        self.query("textDocument/inlayHint", &params.text_document.uri.clone(), move |s| {
            let file = s.file(&params.text_document.uri)?;
            let text = s.text(file);
            let lines = LineIndex::new(&text);
            let hints = ide::inlay_hints(&s.db, s.ws, file, lines.span(params.range));
            Some(
                hints
                    .into_iter()
                    .map(|hint| InlayHint {
                        position: lines.position(hint.offset),
                        label: InlayHintLabel::String(hint.label),
                        kind: Some(match hint.kind {
                            ide::InlayHintKind::Type => InlayHintKind::TYPE,
                            ide::InlayHintKind::Parameter => InlayHintKind::PARAMETER,
                        }),
                        text_edits: None,
                        tooltip: None,
                        padding_left: None,
                        padding_right: Some(true),
                        data: None,
                    })
                    .collect(),
            )
        })
        .await
    }
}
