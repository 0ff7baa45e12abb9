//! The server's state: the policies of the workspace folders, each with a compiler database of
//! its own holding its `.apt` files, and which of them are open.
//!
//! A policy is a directory holding `aptc.toml` (its include/exclude globs say which files under
//! it belong to it; a directory below with an `aptc.toml` of its own is another policy), found
//! under the workspace folders or above one. The `.apt` files under the folders that no
//! `aptc.toml` governs form one more policy, as every file did before policy roots (so do files
//! opened from elsewhere, and files their root excludes, while they are open).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aptc_compiler::check::load_workspace;
use aptc_compiler::db::{Database, Settings, SourceText, Workspace};
use aptc_compiler::source::{FileId, SourceMap};
use aptc_compiler::workspace::{PolicyConfig, find_apt_files, find_policy_roots};
use salsa::Setter;
use tower_lsp_server::ls_types::{Diagnostic, Uri};

/// How files are known: by id (the compiler's name), by key (the path of a `file:` URI, or
/// the URI itself), with the URI to tell the client.
#[derive(Clone, Default)]
pub struct FileTable {
    by_id: HashMap<FileId, (SourceText, Option<Uri>)>,
    by_key: HashMap<PathBuf, FileId>,
}

impl FileTable {
    pub fn input(&self, id: FileId) -> Option<SourceText> {
        self.by_id.get(&id).map(|(input, _)| *input)
    }

    pub fn uri(&self, id: FileId) -> Option<&Uri> {
        self.by_id.get(&id).and_then(|(_, uri)| uri.as_ref())
    }

    pub fn id_of(&self, uri: &Uri) -> Option<FileId> {
        self.by_key.get(&key(uri)).copied()
    }
}

/// The key of a URI: its path for `file:` URIs (so that differently escaped URIs of one file
/// agree), else the URI itself.
pub fn key(uri: &Uri) -> PathBuf {
    if uri.as_str().starts_with("file:")
        && let Some(path) = uri.to_file_path()
    {
        return path.into_owned();
    }
    PathBuf::from(uri.as_str())
}

/// One policy: its database and files, and which of them are open.
pub struct Policy {
    /// Its `aptc.toml`, or `None` for the files no `aptc.toml` governs.
    pub config: Option<PolicyConfig>,
    pub db: Database,
    pub ws: Workspace,
    pub files: Arc<FileTable>,
    /// Open documents and their versions.
    pub open: HashMap<FileId, i32>,
    /// Of each open document, the diagnostics of the whole-policy checks (duplicates, cycles,
    /// unused objects, access) as the last workspace pass found them, moved along with the edits
    /// since: an edit's first pass checks only the document, and publishes these with its own.
    pub whole_policy: HashMap<FileId, Vec<Diagnostic>>,
    /// Why its `aptc.toml` cannot be read (the file, the error): shown on that file, while the
    /// policy takes every file under its root.
    pub config_error: Option<(PathBuf, String)>,
    /// What verifying the assertions found when a file was last saved (violated and undecided
    /// ones, proved ones as hints), by file; an edit clears it (it was about the saved text).
    pub assertions: HashMap<FileId, Vec<Diagnostic>>,
    next_id: u32,
}

/// What a request reads: a clone of the database (sharing its storage) and the file table,
/// as they were when the request arrived.
pub struct Snapshot {
    pub db: Database,
    pub ws: Workspace,
    pub files: Arc<FileTable>,
    /// Versions of the open documents.
    pub open: HashMap<FileId, i32>,
    /// As [`State::whole_policy`].
    pub whole_policy: HashMap<FileId, Vec<Diagnostic>>,
    /// As [`Policy::config_error`].
    pub config_error: Option<(PathBuf, String)>,
    /// As [`Policy::assertions`].
    pub assertions: HashMap<FileId, Vec<Diagnostic>>,
}

impl Snapshot {
    /// The file of a URI, if the workspace has it.
    pub fn file(&self, uri: &Uri) -> Option<SourceText> {
        self.files.input(self.files.id_of(uri)?)
    }

    pub fn text(&self, file: SourceText) -> Arc<str> {
        file.text(&self.db).clone()
    }
}

impl Policy {
    /// A policy of the files `found` (unreadable files are skipped and logged).
    fn load(config: Option<PolicyConfig>, found: Vec<PathBuf>) -> Policy {
        let mut sources = SourceMap::new();
        for path in found {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    sources.add(path, text);
                }
                Err(error) => tracing::warn!("skipping {}: {error}", path.display()),
            }
        }
        let mut db = Database::default();
        let ws = load_workspace(&mut db, &sources, Settings::default());
        let mut files = FileTable::default();
        for &input in ws.files(&db) {
            let id = input.id(&db);
            let path = input.path(&db).clone();
            let uri = if (id.0 as usize) < sources.len() { Uri::from_file_path(&path) } else { None };
            if uri.is_some() {
                files.by_key.insert(path, id);
            }
            files.by_id.insert(id, (input, uri));
        }
        // Manifest files have ids of their own too (after the prelude's).
        let manifest_ids = ws.manifests(&db).iter().flat_map(|set| set.files(&db).iter().flatten()).map(|f| f.id.0 + 1);
        let next_id = ws.files(&db).iter().map(|f| f.id(&db).0 + 1).chain(manifest_ids).max().unwrap_or(0);
        let root = config.as_ref().map_or_else(|| "no aptc.toml".to_string(), |c| c.root.display().to_string());
        tracing::info!("loaded the policy of {root}: {} .apt files", sources.len());
        Policy {
            config,
            db,
            ws,
            files: Arc::new(files),
            open: HashMap::new(),
            whole_policy: HashMap::new(),
            assertions: HashMap::new(),
            config_error: None,
            next_id,
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            db: self.db.clone(),
            ws: self.ws,
            files: self.files.clone(),
            open: self.open.clone(),
            whole_policy: self.whole_policy.clone(),
            config_error: self.config_error.clone(),
            assertions: self.assertions.clone(),
        }
    }

    /// Opens a document: its text replaces what was read from disk; a file from outside the
    /// workspace is added to it.
    pub fn open(&mut self, uri: &Uri, text: &str, version: i32) -> FileId {
        let id = match self.files.id_of(uri) {
            Some(id) => {
                // Publish to the URI as the client spells it.
                let table = Arc::make_mut(&mut self.files);
                if let Some(entry) = table.by_id.get_mut(&id) {
                    entry.1 = Some(uri.clone());
                }
                self.set_text(id, text);
                id
            }
            None => self.add(uri, text),
        };
        self.open.insert(id, version);
        id
    }

    fn add(&mut self, uri: &Uri, text: &str) -> FileId {
        let id = FileId(self.next_id);
        self.next_id += 1;
        let path = key(uri);
        let input = SourceText::new(&self.db, id, path.clone(), Arc::from(text));
        let mut files = self.ws.files(&self.db).clone();
        files.push(input);
        self.ws.set_files(&mut self.db).to(files);
        let table = Arc::make_mut(&mut self.files);
        table.by_id.insert(id, (input, Some(uri.clone())));
        table.by_key.insert(path, id);
        id
    }

    /// Replaces the text of a file (salsa cancels queries running on older snapshots, and
    /// waits for them to let go).
    pub fn set_text(&mut self, id: FileId, text: &str) {
        let Some(input) = self.files.input(id) else { return };
        if **input.text(&self.db) != *text {
            self.db.set_text(input, Arc::from(text));
        }
    }

    /// Closes a document: a file of the workspace goes back to its text on disk; a file from
    /// elsewhere leaves the workspace. Returns the URI to clear, for a file that left.
    fn close(&mut self, uri: &Uri, member: bool) -> Option<Uri> {
        let id = self.files.id_of(uri)?;
        self.open.remove(&id);
        self.whole_policy.remove(&id);
        let path = key(uri);
        if member && let Ok(text) = std::fs::read_to_string(&path) {
            self.set_text(id, &text);
            return None;
        }
        self.remove(id, &path)
    }

    /// Takes a file out of the workspace; returns its URI.
    fn remove(&mut self, id: FileId, path: &Path) -> Option<Uri> {
        let input = self.files.input(id)?;
        let files: Vec<SourceText> = self.ws.files(&self.db).iter().copied().filter(|f| *f != input).collect();
        self.ws.set_files(&mut self.db).to(files);
        let table = Arc::make_mut(&mut self.files);
        let (_, uri) = table.by_id.remove(&id)?;
        table.by_key.remove(path);
        uri
    }

    /// A file changed on disk (the client watches them for us): a `.apt` file under the
    /// workspace folders that was created or changed is read (unless it is open: the editor's
    /// text wins), one that was deleted leaves the workspace (unless it is open). Call
    /// [`State::refresh_referenced`] after a batch of these.
    fn changed_on_disk(&mut self, uri: &Uri, deleted: bool, member: bool) {
        let path = key(uri);
        if path.extension().is_none_or(|e| e != "apt") {
            return;
        }
        let known = self.files.id_of(uri);
        if known.is_some_and(|id| self.open.contains_key(&id)) {
            return;
        }
        match (known, deleted) {
            (Some(id), true) => {
                self.remove(id, &path);
            }
            (None, true) => {}
            (known, false) => {
                let Ok(text) = std::fs::read_to_string(&path) else {
                    tracing::warn!("{} changed on disk but cannot be read", path.display());
                    return;
                };
                match known {
                    Some(id) => self.set_text(id, &text),
                    None if member => {
                        self.add(uri, &text);
                    }
                    None => {}
                }
            }
        }
    }

    /// Reads the files the policy refers to from disk again, users files and manifest templates,
    /// and looks at its local charts again (one was saved, created or changed on disk, or a `users
    /// from` statement, a `manifests` or a chart component was added or changed); only what
    /// changed is re-checked.
    pub fn refresh_referenced(&mut self) {
        aptc_compiler::check::refresh_users_files(&mut self.db, self.ws);
        aptc_compiler::check::refresh_manifests(&mut self.db, self.ws, &mut self.next_id);
        aptc_compiler::check::refresh_charts(&mut self.db, self.ws);
    }

    /// The current text of an open file, for applying incremental changes.
    pub fn text_of(&self, id: FileId) -> Option<String> {
        Some(self.files.input(id)?.text(&self.db).to_string())
    }
}

/// The mutable state, behind the server's lock: the policies of the workspace folders.
pub struct State {
    /// The workspace folders.
    pub roots: Vec<PathBuf>,
    /// The policies with an `aptc.toml`, then the one of the files no `aptc.toml` governs.
    pub policies: Vec<Policy>,
}

/// Where a file belongs.
enum Owner {
    /// To the policy of this index.
    Policy(usize),
    /// To none: the root above it excludes it.
    Excluded,
}

impl State {
    /// The policies of the `.apt` files under `roots` (the workspace folders).
    pub fn load(roots: Vec<PathBuf>) -> State {
        let mut found_roots = find_policy_roots(&roots);
        // A folder inside a policy: the policy is the whole policy, not the folder (unless the
        // policy leaves the folder out, as this repository's root leaves out `target/`).
        found_roots.extend(roots.iter().filter_map(|folder| {
            let config = PolicyConfig::find(folder)?.ok()?;
            let folder = std::fs::canonicalize(folder).unwrap_or_else(|_| folder.clone());
            (config.root == folder || config.contains(&folder)).then_some(config.root)
        }));
        found_roots.sort();
        found_roots.dedup();
        let mut policies = Vec::new();
        for root in found_roots {
            let (config, config_error) = match PolicyConfig::read(&root) {
                Ok(config) => (config, None),
                Err(error) => {
                    // A broken aptc.toml still marks the root, so its files are not checked with others'.
                    tracing::warn!("{error}; the policy at {} takes every file under it", root.display());
                    let file = root.join(aptc_compiler::workspace::POLICY_ROOT_FILE);
                    let empty = PolicyConfig::parse(&root, "").expect("an empty aptc.toml is valid");
                    (
                        empty,
                        Some((
                            file,
                            format!(
                                "{error}; until it is fixed, the policy takes every .apt file under {}",
                                root.display()
                            ),
                        )),
                    )
                }
            };
            let files = config.files().unwrap_or_else(|error| {
                tracing::warn!("finding .apt files: {error}");
                Vec::new()
            });
            let mut policy = Policy::load(Some(config), files);
            policy.config_error = config_error;
            policies.push(policy);
        }
        let mut state = State { roots, policies: Vec::new() };
        let loose: Vec<PathBuf> = find_apt_files(&state.roots)
            .unwrap_or_else(|error| {
                tracing::warn!("finding .apt files: {error}");
                Vec::new()
            })
            .into_iter()
            .filter(|path| !policies.iter().any(|p| p.config.as_ref().is_some_and(|c| path.starts_with(&c.root))))
            .collect();
        policies.push(Policy::load(None, loose));
        state.policies = policies;
        state
    }

    /// Loads the policies again (an `aptc.toml` was created, changed or deleted, or the folders
    /// changed), keeping the open documents' texts.
    pub fn reload(&mut self, roots: Vec<PathBuf>) {
        let open: Vec<(Uri, String, i32)> = self
            .policies
            .iter()
            .flat_map(|p| {
                p.open.iter().filter_map(|(id, version)| Some((p.files.uri(*id)?.clone(), p.text_of(*id)?, *version)))
            })
            .collect();
        *self = State::load(roots);
        for (uri, text, version) in open {
            self.open(&uri, &text, version);
        }
    }

    /// The policy `path` belongs to, by where it is.
    fn owner(&self, path: &Path) -> Owner {
        let governing = self
            .policies
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i, p.config.as_ref()?)))
            .filter(|(_, c)| path.starts_with(&c.root))
            .max_by_key(|(_, c)| c.root.components().count());
        match governing {
            Some((i, config)) if config.contains(path) => Owner::Policy(i),
            Some(_) => Owner::Excluded,
            None => Owner::Policy(self.policies.len() - 1),
        }
    }

    /// Whether `path` is a file of a policy by where it is (not only while open).
    fn member(&self, path: &Path) -> Option<usize> {
        if path.extension().is_none_or(|e| e != "apt") {
            return None;
        }
        match self.owner(path) {
            Owner::Policy(i) if self.policies[i].config.is_some() => Some(i),
            Owner::Policy(i) => self.roots.iter().any(|root| path.starts_with(root)).then_some(i),
            Owner::Excluded => None,
        }
    }

    /// The policy that has the file of `uri`, with the file's id.
    pub fn find(&self, uri: &Uri) -> Option<(usize, FileId)> {
        self.policies.iter().enumerate().find_map(|(i, p)| Some((i, p.files.id_of(uri)?)))
    }

    /// A snapshot of the policy that has the file of `uri`.
    pub fn snapshot_for(&self, uri: &Uri) -> Option<Snapshot> {
        let (i, _) = self.find(uri)?;
        Some(self.policies[i].snapshot())
    }

    /// Opens a document (see [`Policy::open`]): in the policy that has it, else the one it
    /// belongs to by where it is; a file from outside the folders joins the policy of the first
    /// folder (as it joined the workspace before policy roots); one its root excludes is checked
    /// with the files no `aptc.toml` governs, never with its root's.
    pub fn open(&mut self, uri: &Uri, text: &str, version: i32) -> (usize, FileId) {
        let path = key(uri);
        let loose = self.policies.len() - 1;
        let i = match self.find(uri) {
            Some((i, _)) => i,
            None => match self.owner(&path) {
                Owner::Policy(i) if i == loose && !self.roots.iter().any(|root| path.starts_with(root)) => {
                    let first = self.roots.first().and_then(|folder| {
                        self.policies[..loose]
                            .iter()
                            .position(|p| p.config.as_ref().is_some_and(|c| folder.starts_with(&c.root)))
                    });
                    first.unwrap_or(loose)
                }
                Owner::Policy(i) => i,
                Owner::Excluded => loose,
            },
        };
        (i, self.policies[i].open(uri, text, version))
    }

    /// Closes a document (see [`Policy::close`]).
    pub fn close(&mut self, uri: &Uri) -> Option<Uri> {
        let (i, _) = self.find(uri)?;
        let member = self.member(&key(uri)) == Some(i);
        self.policies[i].close(uri, member)
    }

    /// A file changed on disk (see [`Policy::changed_on_disk`]). Returns whether it was an
    /// `aptc.toml`, after which the policies must be loaded again ([`State::reload`]).
    pub fn changed_on_disk(&mut self, uri: &Uri, deleted: bool) -> bool {
        let path = key(uri);
        if path.file_name().is_some_and(|n| n == aptc_compiler::workspace::POLICY_ROOT_FILE) {
            return true;
        }
        match self.find(uri) {
            Some((i, _)) => {
                let member = self.member(&path) == Some(i);
                self.policies[i].changed_on_disk(uri, deleted, member);
            }
            None => {
                if let Some(i) = self.member(&path) {
                    self.policies[i].changed_on_disk(uri, deleted, true);
                }
            }
        }
        false
    }

    /// See [`Policy::refresh_referenced`], for every policy.
    pub fn refresh_referenced(&mut self) {
        for policy in &mut self.policies {
            policy.refresh_referenced();
        }
    }

    /// Snapshots of every policy.
    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.policies.iter().map(Policy::snapshot).collect()
    }
}
