//! Where the dashboard's data comes from. The pages read only what a [`Source`] gives: today the
//! local policy files and revision store ([`LocalSource`]); the controller's state later, behind
//! the same trait, so both serve the same pages.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aptc_compiler::db::Settings;
use aptc_compiler::host::{Analysis, PolicyError};
use aptc_core::ir::Program;
use aptc_core::resolve::{Chains, DeployedNames, DesiredState, Options, resolve_with};
use aptc_runtime::store::{self, DriftRecord, Location, Store, StoreError};
use aptc_runtime::watch::Snapshot;

/// A policy as the dashboard shows it: the program, its desired state (secrets redacted, no
/// decision chains: a claim's chain is computed when asked for) and the text of its files.
pub struct Loaded {
    /// For the decision chains, resolved again per claim when asked.
    pub program: Program,
    /// Redacted: nothing in it is a secret's value.
    pub state: DesiredState,
    /// `(path as origins name it, text)` of every policy file.
    pub files: Vec<(String, Arc<str>)>,
}

/// The policy now: loaded, or why it could not be (the rendered diagnostics).
pub type Policy = Result<Loaded, String>;

/// What the dashboard reads. Implementations cache: the server asks on every request.
pub trait Source: Send + Sync + 'static {
    /// The policy as it is now.
    fn policy(&self) -> Arc<Policy>;
    /// The revision store, read-only (`None`: nothing deployed yet).
    fn store(&self) -> Result<Option<Box<dyn Store>>, StoreError>;
    /// Where the store is (a file, or a namespace of a cluster).
    fn state(&self) -> &Location;
    /// A stamp that changes whenever the policy files or the store change (live updates poll it).
    fn generation(&self) -> String;
    /// The last drift check kept in the store (`aptc deploy --refresh`, `aptc watch`); `None`:
    /// none recorded yet. By default read from [`Source::store`].
    fn last_drift(&self) -> Result<Option<DriftRecord>, StoreError> {
        match self.store()? {
            Some(store) => store.last_drift(),
            None => Ok(None),
        }
    }
}

/// The local policy files and a revision store (`aptc ui PATHS --state DB`, or a Kubernetes
/// store): the policy is loaded again when a file of it changes (the same poll as `aptc watch`).
pub struct LocalSource {
    paths: Vec<PathBuf>,
    state: Location,
    /// The files as last seen, the policy loaded from them, and how many times it was loaded.
    cache: Mutex<(Snapshot, Arc<Policy>, u64)>,
}

impl LocalSource {
    /// The policy at `paths` (files or directories), its revisions in `state`.
    pub fn new(paths: Vec<PathBuf>, state: Location) -> LocalSource {
        let snapshot = snapshot(&paths);
        let policy = Arc::new(load(&paths));
        LocalSource { paths, state, cache: Mutex::new((snapshot, policy, 1)) }
    }
}

fn snapshot(paths: &[PathBuf]) -> Snapshot {
    Snapshot::of(aptc_compiler::workspace::find_apt_files(paths))
}

/// Loads, checks, lowers and resolves the policy at `paths`.
fn load(paths: &[PathBuf]) -> Policy {
    let mut analysis = Analysis::open(paths, Settings::default()).map_err(|e| e.to_string())?;
    let program = analysis.program(false).map_err(|error| match error {
        PolicyError::Invalid { rendered, .. } => rendered,
        other => other.to_string(),
    })?;
    let files = analysis
        .sources()
        .iter()
        .map(|(_, file)| (file.path.to_string_lossy().into_owned(), file.text.clone()))
        .collect();
    let mut state = resolve_with(&program, &Options { deployed: &DeployedNames::new(), chains: Chains::None });
    state.redact();
    Ok(Loaded { program, state, files })
}

impl Source for LocalSource {
    fn policy(&self) -> Arc<Policy> {
        let now = snapshot(&self.paths);
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !cache.0.changes(&now).is_empty() {
            tracing::info!("policy files changed: loading the policy again");
            let loads = cache.2 + 1;
            *cache = (now, Arc::new(load(&self.paths)), loads);
        }
        cache.1.clone()
    }

    fn store(&self) -> Result<Option<Box<dyn Store>>, StoreError> {
        store::open_read(&self.state)
    }

    fn state(&self) -> &Location {
        &self.state
    }

    fn generation(&self) -> String {
        self.policy();
        let loads = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).2;
        format!("{loads}:{}", self.state.stamp())
    }
}
