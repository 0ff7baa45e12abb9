//! The server's state: one compiler database with a workspace of every `.apt` file under
//! the workspace folders (plus files opened from elsewhere), and which of them are open.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aptc_compiler::check::load_workspace;
use aptc_compiler::db::{Database, Settings, SourceText, Workspace};
use aptc_compiler::source::{FileId, SourceMap};
use aptc_compiler::workspace::find_apt_files;
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

/// The mutable state, behind the server's lock.
pub struct State {
    pub db: Database,
    pub ws: Workspace,
    pub files: Arc<FileTable>,
    /// Open documents and their versions.
    pub open: HashMap<FileId, i32>,
    /// The workspace folders.
    pub roots: Vec<PathBuf>,
    /// Of each open document, the diagnostics of the whole-policy checks (duplicates, cycles,
    /// unused objects, access) as the last workspace pass found them, moved along with the edits
    /// since: an edit's first pass checks only the document, and publishes these with its own.
    pub whole_policy: HashMap<FileId, Vec<Diagnostic>>,
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

impl State {
    /// A workspace of every `.apt` file under `roots` (unreadable files are skipped and logged).
    pub fn load(roots: Vec<PathBuf>) -> State {
        let found = find_apt_files(&roots).unwrap_or_else(|error| {
            tracing::warn!("finding .apt files: {error}");
            Vec::new()
        });
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
        tracing::info!("loaded {} .apt files from {} folders", sources.len(), roots.len());
        State { db, ws, files: Arc::new(files), open: HashMap::new(), roots, whole_policy: HashMap::new(), next_id }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            db: self.db.clone(),
            ws: self.ws,
            files: self.files.clone(),
            open: self.open.clone(),
            whole_policy: self.whole_policy.clone(),
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
    pub fn close(&mut self, uri: &Uri) -> Option<Uri> {
        let id = self.files.id_of(uri)?;
        self.open.remove(&id);
        self.whole_policy.remove(&id);
        let path = key(uri);
        if self.in_roots(&path)
            && let Ok(text) = std::fs::read_to_string(&path)
        {
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
    pub fn changed_on_disk(&mut self, uri: &Uri, deleted: bool) {
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
                    None if self.in_roots(&path) => {
                        self.add(uri, &text);
                    }
                    None => {}
                }
            }
        }
    }

    /// The workspace folders changed: files under folders that were added join the workspace,
    /// files no longer under any folder leave it (unless open).
    pub fn set_roots(&mut self, roots: Vec<PathBuf>) {
        self.roots = roots;
        let found = find_apt_files(&self.roots).unwrap_or_else(|error| {
            tracing::warn!("finding .apt files: {error}");
            Vec::new()
        });
        let gone: Vec<(FileId, PathBuf)> = self
            .files
            .by_key
            .iter()
            .filter(|(path, id)| !self.open.contains_key(id) && !self.in_roots(path))
            .map(|(path, id)| (*id, path.clone()))
            .collect();
        for (id, path) in gone {
            self.remove(id, &path);
        }
        for path in found {
            if let Some(uri) = Uri::from_file_path(&path)
                && self.files.id_of(&uri).is_none()
            {
                self.changed_on_disk(&uri, false);
            }
        }
        self.refresh_referenced();
    }

    fn in_roots(&self, path: &Path) -> bool {
        path.extension().is_some_and(|e| e == "apt") && self.roots.iter().any(|root| path.starts_with(root))
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
